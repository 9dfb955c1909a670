//! What a recorder does to each input before it is written: secrets out, message contents out
//! when asked, the rest exactly as fed.
//!
//! - Every configured secret (a token, a signing secret) is replaced wherever it shows, by its
//!   [`placeholder`](super::placeholder).
//! - Slack's single-use Socket Mode tickets (`ticket=…` in a `wss` URL) become
//!   `ticket=REDACTED`, wherever a URL shows (a response body, an error text).
//! - Request heads received by the webhook ingress lose the values of `Authorization`,
//!   `Proxy-Authorization` and `Cookie`; response heads the values of `Set-Cookie`. Signature
//!   headers are kept: a replay checks them again with the secrets given back.
//! - With contents dropped: Discord's `content` strings (inside zlib-stream too, re-encoded),
//!   Slack's `text` strings and GitHub's notification `subject.title` become empty strings; the
//!   structure around them is kept. Webhook request bodies are kept as received: their
//!   signatures cover every byte.

use super::{MachineKind, Step};
use crate::{ConnId, Frame, Input, Secret};
use std::borrow::Cow;
use std::collections::HashMap;

/// What replaces a scrubbed header value or ticket.
pub const REDACTED: &str = "REDACTED";

/// Request headers whose values a recording never keeps.
const SECRET_REQUEST_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];
/// Response headers whose values a recording never keeps.
const SECRET_RESPONSE_HEADERS: &[&str] = &["set-cookie", "authorization"];

/// Turns one machine's inputs into recording lines. It keeps a little state per connection (a
/// request head read in chunks, a compressed stream), so one scrubber sees all of one
/// section's inputs, in order.
///
/// ```
/// use openflume_proto::recording::scrub::Scrubber;
/// use openflume_proto::recording::{MachineKind, Step};
/// use openflume_proto::{ConnId, Frame, Input, Millis, Secret};
/// let secrets = vec![(Secret::new("xapp-1-SECRET-token"), "${SLACK_APP_TOKEN}".to_owned())];
/// let mut scrubber = Scrubber::new(MachineKind::Slack, secrets, true);
/// let frame = r#"{"type":"events_api","payload":{"event":{"text":"hello xapp-1-SECRET-token"}}}"#;
/// let step = Step { at: Millis(5), wall: None, input: Input::Frame { conn: ConnId(1), frame: Frame::Text(frame.into()), arrived: None } };
/// let line = scrubber.line(step).unwrap();
/// assert!(line.contains(r#"\"text\":\"\""#), "{line}");
/// assert!(!line.contains("SECRET"), "{line}");
/// ```
#[derive(Debug)]
pub struct Scrubber {
    kind: MachineKind,
    /// Each secret as it appears inside a JSON string, and its placeholder.
    secrets: Vec<(String, String)>,
    drop_content: bool,
    heads: HashMap<ConnId, HeadScrub>,
    #[cfg(feature = "discord")]
    streams: HashMap<ConnId, super::zlib::Recompress>,
}

impl Scrubber {
    /// A scrubber for a `kind` machine configured with `secrets` (each with its placeholder, as
    /// [`MachineConfig::redacted`](super::MachineConfig::redacted) returns them).
    ///
    /// ```
    /// use openflume_proto::recording::scrub::Scrubber;
    /// use openflume_proto::recording::MachineKind;
    /// use openflume_proto::Secret;
    /// let scrubber = Scrubber::new(MachineKind::Github, vec![(Secret::new("ghp_0123456789"), "${GITHUB_TOKEN}".into())], false);
    /// assert_eq!(scrubber.scrub_text("token ghp_0123456789"), "token ${GITHUB_TOKEN}");
    /// ```
    pub fn new(kind: MachineKind, secrets: Vec<(Secret, String)>, drop_content: bool) -> Scrubber {
        let secrets = secrets
            .into_iter()
            // A secret of a character or two would mangle the whole recording; no real one is.
            .filter(|(secret, _)| secret.expose().len() >= 4)
            .map(|(secret, name)| {
                let quoted = serde_json::to_string(secret.expose()).unwrap_or_default();
                let escaped = quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or_default()
                    .to_owned();
                (escaped, name)
            })
            .collect();
        Scrubber {
            kind,
            secrets,
            drop_content,
            heads: HashMap::new(),
            #[cfg(feature = "discord")]
            streams: HashMap::new(),
        }
    }

    /// The line to write for `step`; `None` while a compressed payload is incomplete with
    /// contents dropped (its message is written whole, once complete).
    ///
    /// ```
    /// use openflume_proto::recording::scrub::Scrubber;
    /// use openflume_proto::recording::{MachineKind, Step};
    /// use openflume_proto::{Bytes, ConnId, Input, Millis};
    /// let mut scrubber = Scrubber::new(MachineKind::Webhooks, Vec::new(), false);
    /// let bytes = Bytes::from("POST /channels/custom/x HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n");
    /// let step = Step { at: Millis(1), wall: None, input: Input::Received { conn: ConnId(1), bytes } };
    /// let line = scrubber.line(step).unwrap();
    /// assert!(line.contains("Authorization: REDACTED") && !line.contains("abc"), "{line}");
    /// ```
    pub fn line(&mut self, mut step: Step) -> Option<String> {
        self.scrub_input(&mut step.input)?;
        let line = serde_json::to_string(&step).ok()?;
        Some(self.scrub_text(&line).into_owned())
    }

    /// `text` with every secret and ticket replaced.
    ///
    /// ```
    /// use openflume_proto::recording::scrub::Scrubber;
    /// use openflume_proto::recording::MachineKind;
    /// let scrubber = Scrubber::new(MachineKind::Slack, Vec::new(), false);
    /// let url = "wss://wss-primary.slack.com/link/?ticket=tkt-1a2b&app_id=A1";
    /// assert_eq!(scrubber.scrub_text(url), "wss://wss-primary.slack.com/link/?ticket=REDACTED&app_id=A1");
    /// ```
    pub fn scrub_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = redact_tickets(text);
        for (secret, name) in &self.secrets {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), name));
            }
        }
        text
    }

    /// Changes the input in place; `None` to leave it out (for now).
    fn scrub_input(&mut self, input: &mut Input) -> Option<()> {
        match input {
            Input::Received { conn, bytes } => {
                let head = self.heads.entry(*conn).or_default();
                let scrubbed = head.scrub(bytes.as_slice());
                *bytes = crate::Bytes::from(scrubbed);
            }
            Input::Response { response, .. } => {
                for (name, value) in &mut response.headers {
                    if SECRET_RESPONSE_HEADERS
                        .iter()
                        .any(|secret| name.eq_ignore_ascii_case(secret))
                    {
                        *value = REDACTED.to_owned();
                    }
                }
                if self.drop_content && self.kind == MachineKind::Github {
                    let body = std::str::from_utf8(response.body.as_slice()).ok();
                    if let Some(changed) = body.and_then(drop_github_titles) {
                        response.body = crate::Bytes::from(changed.into_bytes());
                    }
                }
            }
            Input::Frame { conn, frame, .. } => {
                // Slack puts the app's legacy verification token in every payload (`token`).
                if self.kind == MachineKind::Slack
                    && let Frame::Text(text) = frame
                    && let Cow::Owned(redacted) = redact_json_strings(text, "token")
                {
                    *text = redacted;
                }
                if self.drop_content {
                    return self.drop_frame_content(*conn, frame);
                }
            }
            Input::Closed { conn, .. } | Input::ConnectFailed { conn, .. } => {
                self.heads.remove(conn);
                #[cfg(feature = "discord")]
                self.streams.remove(conn);
            }
            _ => {}
        }
        Some(())
    }

    fn drop_frame_content(&mut self, conn: ConnId, frame: &mut Frame) -> Option<()> {
        let key = match self.kind {
            MachineKind::Discord | MachineKind::DiscordGateway => "content",
            MachineKind::Slack => "text",
            _ => return Some(()),
        };
        match frame {
            Frame::Text(text) => {
                if let Some(changed) = drop_strings(text, key) {
                    *text = changed;
                }
            }
            #[cfg(feature = "discord")]
            Frame::Binary(bytes)
                if matches!(
                    self.kind,
                    MachineKind::Discord | MachineKind::DiscordGateway
                ) =>
            {
                let stream = self.streams.entry(conn).or_default();
                let edit = |payload: Vec<u8>| match std::str::from_utf8(&payload)
                    .ok()
                    .and_then(|text| drop_strings(text, key))
                {
                    Some(changed) => changed.into_bytes(),
                    None => payload,
                };
                match stream.push(bytes.as_slice(), edit) {
                    Ok(Some(message)) => *bytes = crate::Bytes::from(message),
                    Ok(None) => return None,
                    // Corrupt for the shard too, which drops the connection: kept as it came.
                    Err(_) => {
                        self.streams.remove(&conn);
                    }
                }
            }
            _ => {}
        }
        let _ = conn;
        Some(())
    }
}

/// `text` with every `ticket=` query value replaced by [`REDACTED`].
fn redact_tickets(text: &str) -> Cow<'_, str> {
    const TICKET: &str = "ticket=";
    if !text.contains(TICKET) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TICKET) {
        let (before, after) = rest.split_at(at + TICKET.len());
        out.push_str(before);
        let end = after
            .find(['&', '"', '\\', ' ', '#', '\r', '\n', '\t', '\''])
            .unwrap_or(after.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = after.split_at(end).1;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The JSON `text` with the string value of every `"key":` replaced by [`REDACTED`], in place:
/// the rest of the text, its key order included, stays byte for byte.
fn redact_json_strings<'a>(text: &'a str, key: &str) -> Cow<'a, str> {
    let pattern = format!("\"{key}\":\"");
    if !text.contains(&pattern) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        let (before, after) = rest.split_at(at + pattern.len());
        out.push_str(before);
        // The value ends at the first quote no backslash escapes.
        let mut end = after.len();
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The JSON `text` with every string under a `key` key emptied, if there was one to empty.
fn drop_strings(text: &str, key: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    empty_strings(&mut value, key).then(|| value.to_string())
}

fn empty_strings(value: &mut serde_json::Value, key: &str) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut changed = false;
            for (name, inner) in map.iter_mut() {
                match inner {
                    serde_json::Value::String(s) if name == key && !s.is_empty() => {
                        s.clear();
                        changed = true;
                    }
                    _ => changed |= empty_strings(inner, key),
                }
            }
            changed
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| empty_strings(item, key) | changed),
        _ => false,
    }
}

/// A notifications page with every `subject.title` emptied, if there was one to empty.
fn drop_github_titles(body: &str) -> Option<String> {
    let mut page: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut changed = false;
    for thread in page.as_array_mut()? {
        if let Some(serde_json::Value::String(title)) = thread.pointer_mut("/subject/title")
            && !title.is_empty()
        {
            title.clear();
            changed = true;
        }
    }
    changed.then(|| page.to_string())
}

/// Most bytes of one head line kept to recognise its header (longer lines are read through).
const MAX_LINE: usize = 256;

/// The request heads on one served connection, read as they come in chunks: the values of
/// secret headers are replaced, bodies (`Content-Length` long) are passed through untouched. A
/// chunked body ends the scrubbing of that connection (webhook senders send lengths).
#[derive(Debug, Default)]
struct HeadScrub {
    /// Body bytes still to pass through before the next head.
    body_left: u64,
    /// The current head line so far (up to [`MAX_LINE`] bytes).
    line: Vec<u8>,
    /// A colon was seen on this line: the rest is the value.
    in_value: bool,
    /// This line's value is being dropped.
    dropping: bool,
    content_length: u64,
    chunked: bool,
    given_up: bool,
}

impl HeadScrub {
    fn scrub(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for &byte in chunk {
            if self.given_up {
                out.push(byte);
                continue;
            }
            if self.body_left > 0 {
                self.body_left -= 1;
                out.push(byte);
                continue;
            }
            if byte == b'\n' || byte == b'\r' {
                self.dropping = false;
                if byte == b'\n' {
                    self.end_line();
                }
                out.push(byte);
                continue;
            }
            if self.dropping {
                continue;
            }
            out.push(byte);
            if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
            if byte == b':' && !self.in_value {
                self.in_value = true;
                let name = self.line.get(..self.line.len() - 1).unwrap_or_default();
                if SECRET_REQUEST_HEADERS
                    .iter()
                    .any(|secret| name.eq_ignore_ascii_case(secret.as_bytes()))
                {
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(REDACTED.as_bytes());
                    self.dropping = true;
                }
            }
        }
        out
    }

    /// A head line ended: note the body's framing; an empty line ends the head.
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.in_value = false;
        if line.is_empty() {
            if self.chunked {
                self.given_up = true;
            }
            self.body_left = std::mem::take(&mut self.content_length);
            self.chunked = false;
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            self.content_length = value.trim().parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            self.chunked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_lose_their_values_wherever_the_chunks_split() {
        let request = "POST /channels/custom/deploys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-SECRET-1\r\n\
                       Content-Length: 33\r\nX-Signature-256: sha256=ab\r\n\r\n{\"a\":\"Authorization: keep-this\"}\n\
                       GET /x HTTP/1.1\r\ncookie: c=SECRET\r\n\r\n";
        let expected = request
            .replace("Bearer tok-SECRET-1", "REDACTED")
            .replace("cookie: c=SECRET", "cookie: REDACTED");
        for split in 0..request.len() {
            let (a, b) = request.as_bytes().split_at(split);
            let mut head = HeadScrub::default();
            let mut out = head.scrub(a);
            out.extend(head.scrub(b));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn slack_s_verification_token_is_redacted_and_nothing_else_moves() {
        let frame = r#"{"envelope_id":"e1","payload":{"token":"XXYYZZ\"q","team_id":"T1","event":{"text":"hi"}},"type":"events_api"}"#;
        let redacted = redact_json_strings(frame, "token");
        assert!(!redacted.contains("XXYYZZ"), "{redacted}");
        assert_eq!(
            redacted,
            frame.replace(r#"XXYYZZ\"q"#, REDACTED),
            "the rest byte for byte"
        );
        assert!(matches!(
            redact_json_strings("{}", "token"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn tickets_are_redacted_in_escaped_json_too() {
        let line =
            r#"{"body":"{\"url\":\"wss:\\/\\/x.slack.com\\/link\\/?ticket=abc-123&app_id=A\"}"}"#;
        let out = redact_tickets(line);
        assert!(!out.contains("abc-123"), "{out}");
        assert!(out.contains("ticket=REDACTED&app_id=A"), "{out}");
        assert_eq!(redact_tickets("no tickets"), "no tickets");
        assert_eq!(redact_tickets("ticket="), "ticket=");
    }

    #[test]
    fn contents_are_emptied_and_the_structure_kept() {
        let discord = r#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"secret plans","embeds":[{"description":"x"}],"referenced_message":{"content":"older"}}}"#;
        let out: serde_json::Value =
            serde_json::from_str(&drop_strings(discord, "content").unwrap()).unwrap();
        assert_eq!(out["d"]["content"], "");
        assert_eq!(out["d"]["referenced_message"]["content"], "");
        assert_eq!(out["d"]["embeds"][0]["description"], "x");
        assert_eq!(drop_strings(r#"{"op":11}"#, "content"), None);
        let github = r#"[{"id":"1","subject":{"title":"Fix the leak","type":"Issue"}}]"#;
        let out: serde_json::Value =
            serde_json::from_str(&drop_github_titles(github).unwrap()).unwrap();
        assert_eq!(out[0]["subject"]["title"], "");
        assert_eq!(out[0]["subject"]["type"], "Issue");
    }
}
