//! A recorded source made ready to serve: the section replayed to learn what the client asked
//! and sent, then the HTTP answers by method and path and one script per WebSocket connection.

use super::ReplaySimError;
use crate::server::Reply;
use openflume_proto::recording::{MachineConfig, MachineKind, Played, Section};
use openflume_proto::{ConnId, Frame, Input, Output, ReqId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// One recorded source, ready to be played back.
#[derive(Debug)]
pub(super) struct Playback {
    pub(super) kind: MachineKind,
    /// Recorded origins and what replaces them, escaped forms included.
    origins: Vec<(String, String)>,
    http: Mutex<HashMap<(String, String), Answers>>,
    http_left: AtomicUsize,
    pub(super) scripts: Vec<Script>,
    /// The next recorded connection to play.
    pub(super) next_conn: AtomicUsize,
    /// Connections played to their end.
    pub(super) finished: AtomicUsize,
}

/// What one recorded request got: a response, or a failure (the connection is dropped).
#[derive(Clone, Debug)]
pub(super) enum HttpAnswer {
    Reply(Reply),
    Drop,
}

/// One recorded WebSocket connection.
#[derive(Debug, Default)]
pub(super) struct Script {
    /// The connection failed in the recording.
    pub(super) refused: bool,
    pub(super) steps: Vec<(u64, ScriptStep)>,
}

#[derive(Debug)]
pub(super) enum ScriptStep {
    /// The server sent this frame.
    Send(Frame),
    /// The client sent a frame of this kind.
    Await(String),
    /// The client closed.
    ClientClose,
    /// The connection ended; with the server's close code when the client did not close first.
    End(Option<u16>),
}

impl Playback {
    pub(super) fn from_section(
        section: &Section,
        config: &MachineConfig,
        addr: SocketAddr,
    ) -> Result<Playback, ReplaySimError> {
        let kind = config.kind();
        let mut machine =
            config
                .clone()
                .build(section.header.seed)
                .map_err(|e| ReplaySimError::Build {
                    source_name: section.source().to_owned(),
                    reason: e.to_string(),
                })?;
        let played = section.replay(&mut machine);
        let mut requests: HashMap<ReqId, (String, String)> = HashMap::new();
        let mut http: HashMap<(String, String), Answers> = HashMap::new();
        let mut conns: HashMap<ConnId, usize> = HashMap::new();
        let mut scripts: Vec<Script> = Vec::new();
        let mut origins: Vec<String> = Vec::new();
        let mut client_closed: HashMap<ConnId, bool> = HashMap::new();
        let mut note_origin = |url: &str| {
            if let Some(origin) = origin(url)
                && !origins.iter().any(|o| o == origin)
            {
                origins.push(origin.to_owned());
            }
        };
        match config {
            MachineConfig::Discord(c) => {
                note_origin(&c.api_base);
                if let Some(gateway) = &c.gateway_url {
                    note_origin(gateway);
                }
            }
            MachineConfig::Slack(c) => note_origin(&c.api_base),
            MachineConfig::Github(c) => note_origin(&c.api_url),
            _ => {}
        }
        for entry in played {
            match entry {
                Played::Out { output, now } => match output {
                    Output::Request { req, request } => {
                        note_origin(&request.url);
                        let path = path_of(&request.url).to_owned();
                        requests.insert(req, (request.method.clone(), path));
                    }
                    Output::Connect { conn, url } => {
                        note_origin(&url);
                        conns.insert(conn, scripts.len());
                        scripts.push(Script::default());
                    }
                    Output::Send { conn, frame } => {
                        if let (Some(script), Some(key)) =
                            (script_of(&mut scripts, &conns, conn), frame_key(&frame))
                        {
                            script.steps.push((now.mono.0, ScriptStep::Await(key)));
                        }
                    }
                    Output::Close { conn, .. } => {
                        client_closed.insert(conn, true);
                        if let Some(script) = script_of(&mut scripts, &conns, conn) {
                            script.steps.push((now.mono.0, ScriptStep::ClientClose));
                        }
                    }
                    _ => {}
                },
                Played::In { input, now } => match input {
                    Input::Response { req, response } => {
                        if let Some(key) = requests.remove(&req) {
                            let reply = Reply {
                                status: response.status,
                                headers: response.headers,
                                body: response.body.as_slice().to_vec(),
                            };
                            http.entry(key)
                                .or_default()
                                .answers
                                .push(HttpAnswer::Reply(reply));
                        }
                    }
                    Input::RequestFailed { req, .. } => {
                        if let Some(key) = requests.remove(&req) {
                            http.entry(key).or_default().answers.push(HttpAnswer::Drop);
                        }
                    }
                    Input::ConnectFailed { conn, .. } => {
                        if let Some(script) = script_of(&mut scripts, &conns, conn) {
                            script.refused = true;
                        }
                    }
                    Input::Frame { conn, frame, .. } => {
                        if let Some(script) = script_of(&mut scripts, &conns, conn) {
                            script.steps.push((now.mono.0, ScriptStep::Send(frame)));
                        }
                    }
                    Input::Closed { conn, code, .. } => {
                        let by_client = client_closed.get(&conn).copied().unwrap_or(false);
                        if let Some(script) = script_of(&mut scripts, &conns, conn) {
                            let code = if by_client { None } else { code.or(Some(1006)) };
                            script.steps.push((now.mono.0, ScriptStep::End(code)));
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let origins = origins
            .into_iter()
            .flat_map(|from| {
                let scheme = if from.starts_with("ws") { "ws" } else { "http" };
                let to = format!("{scheme}://{addr}");
                [
                    (from.replace('/', "\\/"), to.replace('/', "\\/")),
                    (from, to),
                ]
            })
            .collect();
        let http_left = http.values().map(|a| a.answers.len()).sum();
        Ok(Playback {
            kind,
            origins,
            http: Mutex::new(http),
            http_left: AtomicUsize::new(http_left),
            scripts,
            next_conn: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        })
    }

    /// `text` with every recorded origin replaced by this simulator's.
    pub(super) fn rewrite(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (from, to) in &self.origins {
            if text.contains(from.as_str()) {
                text = text.replace(from.as_str(), to);
            }
        }
        text
    }

    pub(super) fn played_out(&self) -> bool {
        self.http_left.load(Ordering::Relaxed) == 0
            && self.finished.load(Ordering::Relaxed) >= self.scripts.len()
    }

    /// The next recorded answer for `method` and `path`; beyond the recording, the last one.
    pub(super) fn answer(&self, method: &str, path: &str) -> Option<HttpAnswer> {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        let answers = http.get_mut(&(method.to_owned(), path.to_owned()))?;
        let answer = answers
            .answers
            .get(answers.next)
            .or(answers.answers.last())?
            .clone();
        if answers.next < answers.answers.len() {
            answers.next += 1;
            self.http_left.fetch_sub(1, Ordering::Relaxed);
        }
        Some(answer)
    }
}

/// The recorded answers of one method and path, and the next one to give.
#[derive(Debug, Default)]
struct Answers {
    answers: Vec<HttpAnswer>,
    next: usize,
}

fn script_of<'a>(
    scripts: &'a mut [Script],
    conns: &HashMap<ConnId, usize>,
    conn: ConnId,
) -> Option<&'a mut Script> {
    scripts.get_mut(*conns.get(&conn)?)
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> Option<&str> {
    let rest_at = url.find("://")? + 3;
    let rest = url.get(rest_at..)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    url.get(..rest_at + end)
}

/// The path of a URL (no query).
fn path_of(url: &str) -> &str {
    let after = origin(url).map_or(url, |o| url.get(o.len()..).unwrap_or_default());
    let end = after.find(['?', '#']).unwrap_or(after.len());
    match after.get(..end) {
        Some("") | None => "/",
        Some(path) => path,
    }
}

/// What kind of frame a client sent, to match it in the live session: Discord's op code, a
/// Slack ack, a `type`; `None` for control frames (pings are answered by the WebSocket layer).
fn frame_key(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Text(text) => Some(text_key(text)),
        Frame::Binary(_) => Some("binary".to_owned()),
        _ => None,
    }
}

pub(super) fn text_key(text: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if let Some(op) = value.get("op").and_then(serde_json::Value::as_u64) {
        format!("op:{op}")
    } else if value.get("envelope_id").is_some() {
        "ack".to_owned()
    } else if let Some(kind) = value.get("type").and_then(serde_json::Value::as_str) {
        format!("type:{kind}")
    } else {
        "text".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_paths() {
        assert_eq!(
            origin("wss://gateway.discord.gg/?v=10"),
            Some("wss://gateway.discord.gg")
        );
        assert_eq!(
            origin("http://127.0.0.1:9/api/v10"),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(origin("ws://h:1"), Some("ws://h:1"));
        assert_eq!(origin("nothing"), None);
        assert_eq!(
            path_of("https://api.github.com/notifications?all=false"),
            "/notifications"
        );
        assert_eq!(path_of("wss://h/?v=10"), "/");
        assert_eq!(path_of("https://h"), "/");
    }

    #[test]
    fn client_frames_are_matched_by_kind() {
        assert_eq!(text_key(r#"{"op":1,"d":5}"#), "op:1");
        assert_eq!(text_key(r#"{"envelope_id":"e1"}"#), "ack");
        assert_eq!(text_key(r#"{"type":"x"}"#), "type:x");
        assert_eq!(text_key("garbage"), "text");
    }
}
