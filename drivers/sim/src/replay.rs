//! Serving a recording: what Discord, Slack and GitHub sent in a recorded session
//! (`openflume listen --record FILE`), played back to a live client, so the whole stack (drivers
//! included) runs against real recorded traffic.
//!
//! The recording holds the inputs of the client's machines, not the server's side. To know what
//! the client asked and when, each section is first replayed (its machine fed its recorded
//! inputs, `openflume_proto::recording`): the replay gives every request the machine made
//! and every frame it sent, interleaved with what came back. From that:
//!
//! - **HTTP** (Discord's `GET /gateway/bot`, Slack's `apps.connections.open` and `auth.test`,
//!   GitHub's notifications): each method and path answers its recorded responses in order (a
//!   request that failed in the recording drops the connection); once they run out, the last
//!   one again.
//! - **WebSockets** (Discord's Gateway, Slack's Socket Mode): the n-th connection the client
//!   opens plays the n-th recorded connection. Its frames are sent at their recorded spacing,
//!   but a frame that came after the client sent one waits for the client's frame of that kind
//!   (Discord's op code; a Slack ack), so a HEARTBEAT_ACK answers a heartbeat and READY an
//!   IDENTIFY. A recorded close by the server is sent with its code; one the client started is
//!   waited for. A recorded connection that failed refuses the upgrade with 503; a connection
//!   beyond the recording is refused the same way.
//! - **Addresses**: every origin the recorded machine connected to or requested (the service's
//!   API, gateway and resume URLs) is rewritten to this simulator's in everything served, inside
//!   zlib-stream too (each payload is inflated and deflated again into the connection's own
//!   stream, or sent as text when the client asks for no compression).
//!
//! What it cannot reproduce: the exact timing of anything that depends on the client's own seed
//! (the live client's heartbeat jitter and backoff differ from the recorded one's, and an answer
//! waits for them); a live client configured differently from the recorded one (other intents,
//! another connection count); and anything the client would ask beyond the recording.

use crate::server::{Answer, Reply, Server, Service, Shutdown, Ws, split_target};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::StreamExt;
use openflume_proto::http::ReceivedRequest;
use openflume_proto::recording::zlib::{Deflater, Recompress};
use openflume_proto::recording::{MachineConfig, MachineKind, Played, Recording, Section};
use openflume_proto::{ConnId, Frame, Input, Output, ReqId};
use smol::net::TcpListener;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest wait for a client frame a recorded frame answered, before it is sent anyway.
const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for the client's close that the recording shows it started.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why a recording cannot be served.
///
/// ```
/// use openflume_proto::recording::Recording;
/// use openflume_sim::replay::{ReplaySimError, ReplaySims};
/// // A cron recording: nothing a simulator serves.
/// let recording = Recording::parse("{\"source\":\"time\",\"machine\":\"cron\"}\n")?;
/// let refused = smol::block_on(ReplaySims::start(&recording, [127, 0, 0, 1].into())).unwrap_err();
/// assert!(matches!(refused, ReplaySimError::Nothing));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaySimError {
    /// A section's machine cannot be built from its configuration.
    #[error("{0}")]
    Recording(#[from] openflume_proto::recording::RecordingError),
    /// A machine refuses the recorded configuration.
    #[error("source {source_name}: {reason}")]
    Build {
        /// The section's source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// Nothing to serve: no Discord, Slack or GitHub section.
    #[error("the recording has no Discord, Slack or GitHub source to serve")]
    Nothing,
    /// Binding failed.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// The simulators serving one recording: one per recorded Discord, Slack and GitHub source.
/// Stops when dropped.
///
/// ```
/// use openflume_proto::recording::Recording;
/// use openflume_sim::replay::ReplaySims;
///
/// let text = r#"{"format":1,"source":"github","machine":"github","seed":1,"start":{"mono":0,"wall":1764100000000},"config":{"token":"${GITHUB_TOKEN}","api_url":"https://api.github.com"},"auto_confirm":false,"recorded_timers":true}
/// {"at":0,"input":"start"}
/// {"at":80,"input":{"response":{"req":1,"response":{"status":502,"headers":[],"body":"bad gateway"}}}}
/// "#;
/// let recording = Recording::parse(text)?;
/// smol::block_on(async {
///     let sims = ReplaySims::start(&recording, [127, 0, 0, 1].into()).await?;
///     let env = sims.env();
///     let url = &env.iter().find(|(name, _)| *name == "OPENFLUME_GITHUB_API_URL").unwrap().1;
///     assert!(url.starts_with("http://127.0.0.1:"));
///     sims.stop().await;
///     Ok::<(), openflume_sim::replay::ReplaySimError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReplaySims {
    served: Vec<Served>,
}

#[derive(Debug)]
struct Served {
    source: String,
    config: MachineConfig,
    server: Server,
    playback: Arc<Playback>,
}

impl ReplaySims {
    /// Starts a simulator on a free port of `bind` for each Discord, Slack and GitHub section
    /// of `recording` (the others are not served: cron needs none, webhooks come from senders).
    /// See [`ReplaySims`] for an example.
    ///
    /// # Errors
    ///
    /// A section that cannot be replayed, no section to serve, or a port that cannot be bound.
    pub async fn start(recording: &Recording, bind: IpAddr) -> Result<ReplaySims, ReplaySimError> {
        let mut served = Vec::new();
        for section in &recording.sections {
            let kind = section.header.machine;
            if !matches!(
                kind,
                Some(MachineKind::Discord | MachineKind::Slack | MachineKind::Github)
            ) {
                continue;
            }
            let config = MachineConfig::from_section(section)?;
            let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await?;
            let addr = listener.local_addr()?;
            let playback = Arc::new(Playback::from_section(section, &config, addr)?);
            let server = Server::serve(listener, Arc::new(ReplayService(playback.clone())))?;
            served.push(Served {
                source: section.source().to_owned(),
                config,
                server,
                playback,
            });
        }
        if served.is_empty() {
            return Err(ReplaySimError::Nothing);
        }
        Ok(ReplaySims { served })
    }

    /// Each served source's name and the address it listens on.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// for (source, addr) in sims.addresses() {
    ///     println!("{source}: {addr}");
    /// }
    /// # }
    /// ```
    pub fn addresses(&self) -> Vec<(&str, SocketAddr)> {
        self.served
            .iter()
            .map(|s| (s.source.as_str(), s.server.local_addr()))
            .collect()
    }

    /// The environment that points `openflume listen` at these simulators, configured as the
    /// recorded sources were (API and gateway URLs, compression, connection count, poll interval)
    /// with stand-in tokens: the simulators accept any.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// for (name, value) in sims.env() {
    ///     println!("export {name}={value}");
    /// }
    /// # }
    /// ```
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        for served in &self.served {
            let rewrite = |url: &str| served.playback.rewrite(url);
            match &served.config {
                MachineConfig::Discord(config) => {
                    env.push(("DISCORD_BOT_TOKEN", "replayed.discord.token".to_owned()));
                    env.push(("OPENFLUME_DISCORD_API_URL", rewrite(&config.api_base)));
                    if let Some(gateway) = &config.gateway_url {
                        env.push(("OPENFLUME_DISCORD_GATEWAY_URL", rewrite(gateway)));
                    }
                    let compress = if config.compress {
                        "zlib-stream"
                    } else {
                        "none"
                    };
                    env.push(("OPENFLUME_DISCORD_COMPRESS", compress.to_owned()));
                }
                MachineConfig::Slack(config) => {
                    env.push(("SLACK_APP_TOKEN", "xapp-1-REPLAYED-token".to_owned()));
                    if config.bot_token.is_some() {
                        env.push(("SLACK_BOT_TOKEN", "xoxb-REPLAYED-token".to_owned()));
                    }
                    env.push(("OPENFLUME_SLACK_API_URL", rewrite(&config.api_base)));
                    env.push((
                        "OPENFLUME_SLACK_CONNECTIONS",
                        config.connections.to_string(),
                    ));
                    let ping = (config.ping_interval_ms / 1000).max(1);
                    env.push(("OPENFLUME_SLACK_PING_INTERVAL", ping.to_string()));
                }
                MachineConfig::Github(config) => {
                    env.push(("GITHUB_TOKEN", "ghp_REPLAYED_token".to_owned()));
                    env.push(("OPENFLUME_GITHUB_API_URL", rewrite(&config.api_url)));
                    let interval = (config.interval_ms / 1000).max(1);
                    env.push(("OPENFLUME_GITHUB_INTERVAL", interval.to_string()));
                    let bootstrap = match config.bootstrap {
                        openflume_proto::github::Bootstrap::Emit => "emit",
                        _ => "skip",
                    };
                    env.push(("OPENFLUME_GITHUB_BOOTSTRAP", bootstrap.to_owned()));
                    env.push((
                        "OPENFLUME_GITHUB_PARTICIPATING",
                        config.participating.to_string(),
                    ));
                }
                _ => {}
            }
        }
        env
    }

    /// True once every recorded connection was played to its end and every recorded HTTP
    /// answer was given.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// if sims.played_out() {
    ///     println!("the whole recording was served");
    /// }
    /// # }
    /// ```
    pub fn played_out(&self) -> bool {
        self.served.iter().all(|s| s.playback.played_out())
    }

    /// Stops every simulator (open connections get a close frame first).
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// let addresses: Vec<_> = sims.addresses().into_iter().map(|(_, addr)| addr).collect();
    /// sims.stop().await;
    /// assert!(addresses.iter().all(|addr| std::net::TcpStream::connect(addr).is_err()));
    /// # }
    /// ```
    pub async fn stop(self) {
        for served in self.served {
            served.server.stop().await;
        }
    }
}

/// One recorded source, ready to be played back.
#[derive(Debug)]
struct Playback {
    kind: MachineKind,
    /// Recorded origins and what replaces them, escaped forms included.
    origins: Vec<(String, String)>,
    http: Mutex<HashMap<(String, String), Answers>>,
    http_left: AtomicUsize,
    scripts: Vec<Script>,
    /// The next recorded connection to play.
    next_conn: AtomicUsize,
    /// Connections played to their end.
    finished: AtomicUsize,
}

#[derive(Clone, Debug)]
enum HttpAnswer {
    Reply(Reply),
    Drop,
}

/// One recorded WebSocket connection.
#[derive(Debug, Default)]
struct Script {
    /// The connection failed in the recording.
    refused: bool,
    steps: Vec<(u64, ScriptStep)>,
}

#[derive(Debug)]
enum ScriptStep {
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
    fn from_section(
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
    fn rewrite(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (from, to) in &self.origins {
            if text.contains(from.as_str()) {
                text = text.replace(from.as_str(), to);
            }
        }
        text
    }

    fn played_out(&self) -> bool {
        self.http_left.load(Ordering::Relaxed) == 0
            && self.finished.load(Ordering::Relaxed) >= self.scripts.len()
    }

    /// The next recorded answer for `method` and `path`; beyond the recording, the last one.
    fn answer(&self, method: &str, path: &str) -> Option<HttpAnswer> {
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

fn text_key(text: &str) -> String {
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

struct ReplayService(Arc<Playback>);

impl Service for ReplayService {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        match self.0.answer(&request.method, path) {
            Some(HttpAnswer::Reply(reply)) => Answer::Reply(self.served_reply(reply)),
            Some(HttpAnswer::Drop) => Answer::Drop,
            None => Answer::Reply(Reply::json(
                404,
                r#"{"message":"Not Found in the recording"}"#,
            )),
        }
    }

    fn check_upgrade(&self, _request: &ReceivedRequest) -> Result<(), Reply> {
        let playback = &self.0;
        let refused = || Reply::json(503, r#"{"message":"Service Unavailable"}"#);
        let next = playback.next_conn.load(Ordering::Relaxed);
        match playback.scripts.get(next) {
            None => Err(refused()),
            Some(script) if script.refused => {
                playback.next_conn.fetch_add(1, Ordering::Relaxed);
                playback.finished.fetch_add(1, Ordering::Relaxed);
                Err(refused())
            }
            Some(_) => Ok(()),
        }
    }

    async fn websocket(&self, request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        let playback = &self.0;
        let index = playback.next_conn.fetch_add(1, Ordering::Relaxed);
        let Some(script) = playback.scripts.get(index) else {
            return;
        };
        let compress = request.target.contains("compress=zlib-stream");
        let mut connection = Connection {
            playback,
            ws,
            compress,
            inflater: Recompress::default(),
            deflater: Deflater::default(),
            received: HashMap::new(),
            client_gone: false,
        };
        let ended = futures_lite::future::or(
            async {
                connection.play(script).await;
                true
            },
            async {
                shutdown.wait().await;
                false
            },
        )
        .await;
        if !ended {
            let _ = connection
                .ws
                .close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "simulator stopping".into(),
                }))
                .await;
        }
        playback.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReplayService {
    /// A recorded response as this simulator sends it: recorded addresses rewritten, the
    /// framing headers left to the encoder.
    fn served_reply(&self, reply: Reply) -> Reply {
        const FRAMING: &[&str] = &[
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "date",
            "content-encoding",
        ];
        let headers = reply
            .headers
            .into_iter()
            .filter(|(name, _)| !FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)))
            .map(|(name, value)| {
                let value = self.0.rewrite(&value);
                (name, value)
            })
            .collect();
        let body = match String::from_utf8(reply.body) {
            Ok(text) => self.0.rewrite(&text).into_bytes(),
            Err(binary) => binary.into_bytes(),
        };
        Reply {
            status: reply.status,
            headers,
            body,
        }
    }
}

/// One live connection playing a recorded one.
struct Connection<'a> {
    playback: &'a Playback,
    ws: Ws,
    compress: bool,
    /// The recorded zlib-stream, inflated.
    inflater: Recompress,
    /// The live connection's own stream.
    deflater: Deflater,
    /// Client frames received and not matched yet, by kind.
    received: HashMap<String, usize>,
    client_gone: bool,
}

impl Connection<'_> {
    async fn play(&mut self, script: &Script) {
        let mut last_at: Option<u64> = None;
        let mut last_done = Instant::now();
        for (at, step) in &script.steps {
            if self.client_gone {
                return;
            }
            let gap = last_at.map_or(0, |last| at.saturating_sub(last));
            let due = last_done + Duration::from_millis(gap);
            match step {
                ScriptStep::Send(frame) => {
                    self.read_until(due).await;
                    if let Some(message) = self.message(frame)
                        && self.ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
                ScriptStep::Await(key) => {
                    let deadline = Instant::now() + ANSWER_WAIT;
                    while !self.take(key) && !self.client_gone && Instant::now() < deadline {
                        self.read_one(deadline).await;
                    }
                }
                ScriptStep::ClientClose => {
                    let deadline = Instant::now() + CLOSE_WAIT;
                    while !self.client_gone && Instant::now() < deadline {
                        self.read_one(deadline).await;
                    }
                    return;
                }
                ScriptStep::End(code) => {
                    self.read_until(due).await;
                    // A recorded drop, or a close the client started: nothing to send.
                    if let Some(code) = code {
                        let _ = self
                            .ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(*code),
                                reason: "".into(),
                            }))
                            .await;
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while !self.client_gone && Instant::now() < deadline {
                            self.read_one(deadline).await;
                        }
                    }
                    return;
                }
            }
            last_at = Some(*at);
            last_done = Instant::now();
        }
        // The recording ended with the connection open: keep it so, until the client leaves.
        while !self.client_gone {
            self.read_one(Instant::now() + Duration::from_secs(3600))
                .await;
        }
    }

    /// Takes one received client frame of kind `key`, if one came.
    fn take(&mut self, key: &str) -> bool {
        match self.received.get_mut(key) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    /// Reads client frames until `due`.
    async fn read_until(&mut self, due: Instant) {
        while !self.client_gone && Instant::now() < due {
            self.read_one(due).await;
        }
    }

    /// Reads one client frame, or returns at `deadline`.
    async fn read_one(&mut self, deadline: Instant) {
        let read = futures_lite::future::or(async { Some(self.ws.next().await) }, async {
            async_io::Timer::at(deadline).await;
            None
        })
        .await;
        match read {
            None => {}
            Some(Some(Ok(Message::Text(text)))) => {
                *self.received.entry(text_key(text.as_str())).or_default() += 1;
            }
            Some(Some(Ok(Message::Binary(_)))) => {
                *self.received.entry("binary".to_owned()).or_default() += 1;
            }
            Some(Some(Ok(Message::Close(_)))) | Some(Some(Err(_))) | Some(None) => {
                self.client_gone = true;
            }
            Some(Some(Ok(_))) => {}
        }
    }

    /// The recorded frame as this connection sends it, or `None` for a part of a compressed
    /// payload (sent whole once complete) and for control frames.
    fn message(&mut self, frame: &Frame) -> Option<Message> {
        let text = match frame {
            Frame::Text(text) => text.clone(),
            Frame::Binary(bytes) => {
                let payload = self.inflater.inflate(bytes.as_slice()).ok()??;
                String::from_utf8(payload).ok()?
            }
            _ => return None,
        };
        let text = self.playback.rewrite(&text);
        Some(
            if self.compress && self.playback.kind == MachineKind::Discord {
                Message::Binary(WsBytes::from(self.deflater.deflate(text.as_bytes())))
            } else {
                Message::text(text)
            },
        )
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
