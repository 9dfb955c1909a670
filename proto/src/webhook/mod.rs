//! # Verified webhook ingress, sans-IO
//!
//! Slack's Events API (events, interactions, slash commands), GitHub webhooks and signed custom
//! webhooks, served over HTTP/1.1 and turned into the same events as the Socket Mode and polling
//! sources. The machine takes the bytes of each accepted connection and the time, and returns the
//! bytes to write back, the connections to close and the events; the driver owns the listener and
//! the sockets.
//!
//! Each request is judged in the order a careful server would:
//! 1. The head, before any body byte is read: unknown path 404 (`/channels/{name}` alone too),
//!    wrong method 405 with `Allow`, wrong content type 415, a declared body over the channel's
//!    limit 413 (and the body is not read: the connection closes).
//! 2. The body: bounded by the channel's limit (413), all bodies together by
//!    [`WebhookConfig::max_buffered_bytes`] (503).
//! 3. The signature over the exact raw bytes, in constant time, with the timestamp window: 401,
//!    logged as a warn that names the reason, never the signature.
//! 4. The payload: 400 when malformed. Handshakes (`url_verification`, GitHub's `ping`) are
//!    answered 200 and emit nothing.
//! 5. The event is emitted with a confirmation, and the **200 goes out only on
//!    [`Input::Delivered`]**: once every back-pressure consumer holds it (and, with a durable log,
//!    once it is committed). The sender's retry is the safety net, so nothing is acknowledged
//!    that could still be lost. A redelivery (same `event_id`, delivery id or `webhook-id`) is
//!    not emitted again; it is answered when the first copy is held.
//!
//! A request for one of [`WebhookConfig::handoff_paths`] is not judged at all: once its head and
//! body (at most [`HANDOFF_BODY_LIMIT`] bytes) are read, the machine emits
//! [`Output::Handoff`] with the request and every byte read after it, and forgets the
//! connection; the driver gives the stream to whoever serves that path (`serve`'s hub and health
//! endpoints share the port this way, with no second HTTP parser in the driver).
//!
//! Never a 500 for bad input. Deadlines: a head within
//! [`head_timeout_ms`](WebhookConfig::head_timeout_ms) of the connection opening or the previous
//! response (408, or a quiet close of an idle keep-alive connection), a body within
//! [`body_timeout_ms`](WebhookConfig::body_timeout_ms) (408), a consumer's hold within
//! [`delivery_timeout_ms`](WebhookConfig::delivery_timeout_ms) (503: the event goes on, the
//! sender retries and the retry is recognised). On `Input::Shutdown` idle connections close at
//! once, requests in flight get [`SHUTDOWN_ANSWER_MS`] to be answered (503 after that), then the
//! machine finishes.
//!
//! ```
//! use openflume_proto::webhook::{WebhookConfig, WebhookIngress, sign_github};
//! use openflume_proto::{Bytes, ConnId, DeliveryId, Input, Machine, Millis, Now, Output, UnixMillis};
//!
//! let config = WebhookConfig { github_secret: Some("hush".into()), ..WebhookConfig::default() };
//! let mut ingress = WebhookIngress::new(config)?;
//! let now = Now { mono: Millis(0), wall: UnixMillis(1_764_000_000_000) };
//! ingress.handle_input(now, Input::Start)?;
//! ingress.handle_input(now, Input::Opened { conn: ConnId(1) })?;
//! let body = br#"{"action":"opened","issue":{"number":7},"repository":{"full_name":"octo/app"}}"#;
//! let wire = format!(
//!     "POST /channels/github/webhook HTTP/1.1\r\nContent-Type: application/json\r\n\
//!      X-GitHub-Event: issues\r\nX-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: {}\r\n\
//!      Content-Length: {}\r\n\r\n{}",
//!     sign_github(b"hush", body), body.len(), std::str::from_utf8(body).unwrap());
//! ingress.handle_input(now, Input::Received { conn: ConnId(1), bytes: Bytes::from(wire) })?;
//! let outputs: Vec<Output> = std::iter::from_fn(|| ingress.poll_output()).collect();
//! let Some(Output::Emit { event, confirm: Some(delivery) }) = outputs.iter().find(|o| matches!(o, Output::Emit { .. })) else { panic!() };
//! assert_eq!((event.source.as_ref(), event.event_type.as_str()), ("github", "issues"));
//! assert_eq!(event.meta["conversation_key"], "github:v1:owner:octo:repo:app:issue:7");
//! // Nothing is answered until the event is held.
//! assert!(!outputs.iter().any(|o| matches!(o, Output::Transmit { .. })));
//! ingress.handle_input(now, Input::Delivered { delivery: *delivery })?;
//! let Some(Output::Transmit { bytes, .. }) = ingress.poll_output() else { panic!() };
//! assert!(bytes.as_slice().starts_with(b"HTTP/1.1 200 OK\r\n"));
//! # Ok::<(), openflume_proto::Misuse>(())
//! ```

mod config;
mod encoding;
mod payload;
mod route;
mod seen;
mod signature;

pub use config::{CustomSender, HANDOFF_BODY_LIMIT, WebhookConfig};
pub use encoding::base64_encode;
// The outbox signs what it forwards with the same HMAC and decodes `whsec_` secrets the same way.
pub(crate) use encoding::base64_decode;
pub(crate) use signature::sign as hmac_sha256;

use crate::core::{Core, answered_by_core};
use crate::http::{HttpError, Limits, ReadRequest, RequestReader, encode_response};
use crate::{
    Bytes, ConnId, DeliveryId, IdCounter, Input, Level, Machine, Millis, Misuse, Now, Output,
    Status, TimerKind,
};
use payload::{Arrival, Malformed};
use route::{Channel, Refusal};
use seen::{Seen, Sighting};
use signature::{Rejection, StandardHeaders};
use std::collections::{BTreeMap, HashMap};

/// How long requests in flight at shutdown get to be answered.
pub const SHUTDOWN_ANSWER_MS: u64 = 1_000;
/// Bytes a connection may send ahead (pipelining) while its response waits; more closes it.
const MAX_AHEAD: usize = 64 * 1024;

/// The `source` of the ingress's own logs and status; its events carry their provider's.
pub const SOURCE: &str = "webhooks";

/// The key a sender's redelivery of `event` is recognised by: Slack's `event_id`, GitHub's
/// delivery id (`X-GitHub-Delivery`), a custom sender's `webhook-id`; `None` for an event
/// without one (each copy is then emitted). Stored with the cursors, it lets a restarted
/// ingress answer a redelivery of a kept event without emitting it again
/// ([`WebhookConfig::resume`]).
///
/// ```
/// use openflume_proto::webhook::redelivery_key;
/// use openflume_proto::{Event, RawJson, UnixMillis};
/// let mut event = Event::new("github", "push", RawJson::null(), UnixMillis(0));
/// assert_eq!(redelivery_key(&event), None);
/// event.meta.insert("delivery_id".into(), "72d3162e".into());
/// assert_eq!(redelivery_key(&event).as_deref(), Some("github:72d3162e"));
/// ```
pub fn redelivery_key(event: &crate::Event) -> Option<String> {
    let meta = |key: &str| event.meta.get(key);
    match event.source.as_ref() {
        "slack" => meta("event_id").map(|id| format!("slack:{id}")),
        "github" => meta("delivery_id").map(|id| format!("github:{id}")),
        "custom" => meta("delivery_id").map(|id| format!("custom:{}:{id}", event.event_type)),
        _ => None,
    }
}

/// `sha256=<hex>` of `body` under `secret`: the `X-Hub-Signature-256` (and `X-Signature-256`)
/// value a sender computes. For tests and for senders written in Rust.
///
/// ```
/// use openflume_proto::webhook::sign_github;
/// assert_eq!(
///     sign_github(b"It's a Secret to Everybody", b"Hello, World!"),
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::bytes::to_hex(&signature::sign(secret, &[body]))
    )
}

/// `v0=<hex>`: the `X-Slack-Signature` of `body` sent at `timestamp` (Unix seconds).
///
/// ```
/// use openflume_proto::webhook::sign_slack;
/// let signature = sign_slack(b"8f742231b10e8888abcd99yyyzzz85a5", 1531420618, b"token=x");
/// assert!(signature.starts_with("v0=") && signature.len() == 67);
/// ```
pub fn sign_slack(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let tag = signature::sign(secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    format!("v0={}", crate::bytes::to_hex(&tag))
}

/// `v1,<base64>`: the Standard Webhooks `webhook-signature` of `body` with this id and
/// timestamp, under a `whsec_…` secret (or a plain one, as its bytes).
///
/// ```
/// use openflume_proto::webhook::sign_standard;
/// let signature = sign_standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 1614265330, b"{}");
/// assert!(signature.starts_with("v1,"));
/// ```
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = signature::standard_key(secret);
    let timestamp = timestamp.to_string();
    let tag = signature::sign(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", base64_encode(&tag))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IngressTimer {
    /// The earliest deadline among the connections.
    Connections,
}

impl TimerKind for IngressTimer {
    const ALL: &'static [IngressTimer] = &[IngressTimer::Connections];
    fn index(self) -> usize {
        0
    }
    fn name(self) -> &'static str {
        "connections"
    }
}

/// Where one connection is.
#[derive(Debug)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Part of a head is in.
    Head,
    /// The head was accepted for this channel; reading the body.
    Body(Channel),
    /// The head is for a handoff path; reading its (small) body before handing it off.
    HandoffBody,
    /// The request was accepted; its answer waits for a delivery (its own or the first copy's).
    Waiting,
}

#[derive(Debug)]
struct Connection {
    reader: RequestReader,
    phase: Phase,
    /// When the current phase runs out.
    deadline: Millis,
    /// The connection closes after the pending answer.
    close_after: bool,
    /// Bytes sent ahead while the answer waits.
    ahead: Vec<u8>,
}

impl Connection {
    /// The deadline runs against this process (an answer waiting for consumers), not the client:
    /// it runs on while reading is paused.
    fn waits_on_us(&self) -> bool {
        matches!(self.phase, Phase::Waiting)
    }
}

/// The webhook ingress machine. See the [module docs](self).
#[derive(Debug)]
pub struct WebhookIngress {
    core: Core<IngressTimer>,
    config: WebhookConfig,
    /// The custom senders' Standard Webhooks keys, by index.
    standard_keys: Vec<Vec<u8>>,
    limits: Limits,
    connections: BTreeMap<ConnId, Connection>,
    deliveries: IdCounter,
    /// Emitted events waiting for `Input::Delivered`: the connection that asked and the key.
    awaiting: HashMap<DeliveryId, (ConnId, Option<String>)>,
    seen: Seen,
    stopping: bool,
    /// Since when the driver reads nothing (back-pressure): the clients' head and body deadlines
    /// stand still meanwhile, since it is this process that does not read.
    paused_since: Option<Millis>,
}

/// A response about to go out.
struct Answer {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    close: bool,
}

impl Answer {
    fn new(status: u16, reason: &'static str) -> Answer {
        Answer {
            status,
            reason,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// An error answer: a short plain-text body, and the connection closes after it.
    fn error(status: u16, reason: &'static str, text: &str) -> Answer {
        let mut answer = Answer::new(status, reason);
        answer
            .headers
            .push(("Content-Type", "text/plain; charset=utf-8".into()));
        answer.body = format!("{text}\n").into_bytes();
        answer.close = true;
        answer
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    fn encode(&self) -> Vec<u8> {
        let mut headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if self.close {
            headers.push(("Connection", "close"));
        }
        // Every part is this module's own text, so encoding cannot fail; a bare 500 if it did.
        encode_response(self.status, self.reason, &headers, &self.body)
            .unwrap_or_else(|_| b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec())
    }
}

/// Peer-controlled text made safe and short for a log line.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

impl WebhookIngress {
    /// A machine for `config`; fails when no secret is set or a sender is malformed.
    ///
    /// ```
    /// use openflume_proto::webhook::{WebhookConfig, WebhookIngress};
    /// assert!(WebhookIngress::new(WebhookConfig::default()).is_err());
    /// let config = WebhookConfig { slack_signing_secret: Some("s".into()), ..WebhookConfig::default() };
    /// assert!(WebhookIngress::new(config).is_ok());
    /// ```
    pub fn new(config: WebhookConfig) -> Result<WebhookIngress, Misuse> {
        let config = config.validated()?;
        let standard_keys = config
            .senders
            .iter()
            .map(|s| signature::standard_key(s.secret.expose()))
            .collect();
        let largest = [
            config.slack_body_limit,
            config.github_body_limit,
            config.custom_body_limit,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let mut seen = Seen::default();
        for key in &config.resume {
            seen.restore(key);
        }
        Ok(WebhookIngress {
            core: Core::new(SOURCE),
            standard_keys,
            limits: Limits {
                max_body_bytes: largest,
                ..Limits::default()
            },
            config,
            connections: BTreeMap::new(),
            deliveries: IdCounter::default(),
            awaiting: HashMap::new(),
            seen,
            stopping: false,
            paused_since: None,
        })
    }

    /// Connections open right now.
    ///
    /// ```
    /// use openflume_proto::webhook::{WebhookConfig, WebhookIngress};
    /// let config = WebhookConfig { github_secret: Some("s".into()), ..WebhookConfig::default() };
    /// assert_eq!(WebhookIngress::new(config)?.connections(), 0);
    /// # Ok::<(), openflume_proto::Misuse>(())
    /// ```
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    fn on_opened(&mut self, now: Now, conn: ConnId) {
        if self.stopping || self.connections.len() >= self.config.max_connections {
            let why = if self.stopping {
                "shutting down"
            } else {
                "too many connections"
            };
            self.core.log(
                now,
                Level::Warn,
                "webhook.refused",
                format!("connection {} refused: {why}", conn.0),
            );
            let answer = Answer::error(503, "Service Unavailable", why).header("Retry-After", "5");
            self.core.emit(Output::Transmit {
                conn,
                bytes: Bytes(answer.encode()),
            });
            self.core.emit(Output::Hangup { conn });
            return;
        }
        self.connections.insert(
            conn,
            Connection {
                reader: RequestReader::new(self.limits),
                phase: Phase::Idle,
                deadline: now.mono + self.config.head_timeout_ms,
                close_after: false,
                ahead: Vec::new(),
            },
        );
    }

    /// Reads what `conn` sent, request after request, until it needs more or must wait.
    fn on_bytes(&mut self, now: Now, conn: ConnId, mut input: Vec<u8>) {
        loop {
            let Some(c) = self.connections.get_mut(&conn) else {
                return;
            };
            match c.phase {
                Phase::Waiting => {
                    if c.ahead.len() + input.len() > MAX_AHEAD {
                        self.core.log(
                            now,
                            Level::Warn,
                            "webhook.pipelining",
                            format!(
                                "connection {} sent more than {MAX_AHEAD} bytes ahead of its answer; closed",
                                conn.0
                            ),
                        );
                        self.hang_up(conn);
                    } else {
                        c.ahead.extend_from_slice(&input);
                    }
                    return;
                }
                Phase::Idle | Phase::Head => {
                    if input.is_empty() {
                        return;
                    }
                    let used = match c.reader.feed_head(&input) {
                        Ok(used) => used,
                        Err(error) => return self.bad_http(now, conn, &error),
                    };
                    input.drain(..used.min(input.len()));
                    let Some(head) = c.reader.head() else {
                        if c.reader.buffered_bytes() > 0 {
                            c.phase = Phase::Head;
                        }
                        return;
                    };
                    let (method, target) = (head.method().to_owned(), head.target().to_owned());
                    if route::is_handoff(&self.config, &target) {
                        if let Err(error) = c.reader.limit_body(HANDOFF_BODY_LIMIT) {
                            return self.bad_http(now, conn, &error);
                        }
                        c.phase = Phase::HandoffBody;
                        c.deadline = now.mono + self.config.body_timeout_ms;
                        continue;
                    }
                    match route::route(&self.config, &method, &target, head.header("content-type"))
                    {
                        Ok(channel) => {
                            if let Err(error) =
                                c.reader.limit_body(channel.body_limit(&self.config))
                            {
                                return self.bad_http(now, conn, &error);
                            }
                            c.phase = Phase::Body(channel);
                            c.deadline = now.mono + self.config.body_timeout_ms;
                        }
                        Err(refusal) => return self.refuse(now, conn, &method, &target, refusal),
                    }
                }
                Phase::HandoffBody => match c.reader.feed(&input) {
                    Err(error) => return self.bad_http(now, conn, &error),
                    Ok(None) => return,
                    Ok(Some(read)) => {
                        // Forgotten here, not hung up: the driver takes the stream back.
                        self.connections.remove(&conn);
                        self.core.emit(Output::Handoff {
                            conn,
                            request: read.request,
                            leftover: Bytes(read.leftover),
                        });
                        return;
                    }
                },
                Phase::Body(channel) => match c.reader.feed(&input) {
                    Err(error) => return self.bad_http(now, conn, &error),
                    Ok(None) => {
                        let buffered: usize = self
                            .connections
                            .values()
                            .map(|c| c.reader.buffered_bytes())
                            .sum();
                        if buffered > self.config.max_buffered_bytes {
                            self.core.log(
                                now,
                                Level::Warn,
                                "webhook.overloaded",
                                format!(
                                    "{buffered} request bytes buffered across connections, over {}; connection {} answered 503",
                                    self.config.max_buffered_bytes, conn.0
                                ),
                            );
                            let answer = Answer::error(503, "Service Unavailable", "overloaded")
                                .header("Retry-After", "5");
                            self.answer(now, conn, answer);
                        }
                        return;
                    }
                    Ok(Some(read)) => {
                        let ReadRequest {
                            request,
                            persistence,
                            leftover,
                            ..
                        } = read;
                        c.reader = RequestReader::new(self.limits);
                        c.close_after = !persistence.is_keep_alive();
                        input = leftover;
                        self.on_request(now, conn, channel, &request);
                    }
                },
            }
        }
    }

    /// A complete request for `channel`: verify, read, emit (or answer a handshake).
    fn on_request(
        &mut self,
        now: Now,
        conn: ConnId,
        channel: Channel,
        request: &crate::http::ReceivedRequest,
    ) {
        let path = channel.path(&self.config);
        if let Err(rejection) = self.verify(channel, request, now) {
            self.core.log_with(
                now,
                Level::Warn,
                "webhook.rejected",
                format!("{path}: {rejection}; answered 401"),
                serde_json::json!({ "path": path, "conn": conn.0, "reason": rejection.to_string() }),
            );
            let text = match rejection {
                Rejection::Stale { .. } => "stale timestamp",
                _ => "invalid signature",
            };
            return self.answer(now, conn, Answer::error(401, "Unauthorized", text));
        }
        let sender = match channel {
            Channel::Custom(index) => self.config.senders.get(index).map_or("", |s| &s.name),
            _ => "",
        };
        match payload::arrival(channel, sender, request, now.wall) {
            Err(Malformed(why)) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "webhook.malformed",
                    format!("{path}: {why}; answered 400"),
                    serde_json::json!({ "path": path, "conn": conn.0 }),
                );
                self.answer(now, conn, Answer::error(400, "Bad Request", &why));
            }
            Ok(Arrival::Handshake { body, what }) => {
                self.core.log(
                    now,
                    Level::Info,
                    "webhook.handshake",
                    format!("{what} answered"),
                );
                let mut answer = Answer::new(200, "OK");
                if !body.is_empty() {
                    answer = answer.header("Content-Type", "application/json");
                    answer.body = body.into_bytes();
                }
                self.answer(now, conn, answer);
            }
            Ok(Arrival::Event { event, dedup }) => {
                let sighting = dedup
                    .as_deref()
                    .map_or(Sighting::First, |key| self.seen.sight(key, conn));
                match sighting {
                    Sighting::First => {
                        let delivery = DeliveryId(self.deliveries.next());
                        if let Some(key) = &dedup {
                            self.seen.first(key, delivery);
                        }
                        self.awaiting.insert(delivery, (conn, dedup));
                        self.core.emit_event(event, Some(delivery));
                        self.wait(now, conn);
                    }
                    Sighting::Waiting => {
                        self.redelivery(now, &path, dedup.as_deref(), "waits for the first copy");
                        self.wait(now, conn);
                    }
                    Sighting::Held => {
                        self.redelivery(now, &path, dedup.as_deref(), "answered 200");
                        self.answer(now, conn, Answer::new(200, "OK"));
                    }
                }
            }
        }
    }

    fn redelivery(&mut self, now: Now, path: &str, key: Option<&str>, outcome: &str) {
        self.core.log(
            now,
            Level::Debug,
            "webhook.redelivery",
            format!(
                "{path}: {} seen before, not emitted again; {outcome}",
                shown(key.unwrap_or_default())
            ),
        );
    }

    fn verify(
        &self,
        channel: Channel,
        request: &crate::http::ReceivedRequest,
        now: Now,
    ) -> Result<(), Rejection> {
        let now_s = now.wall.0.div_euclid(1000);
        let tolerance = i64::try_from(self.config.timestamp_tolerance_s).unwrap_or(i64::MAX);
        let body = request.body.as_slice();
        let secret = |s: &Option<crate::Secret>| {
            s.as_ref()
                .map(|s| s.expose().as_bytes().to_vec())
                .unwrap_or_default()
        };
        match channel {
            Channel::SlackEvents | Channel::SlackInteractions | Channel::SlackCommands => {
                signature::slack_v0(
                    &secret(&self.config.slack_signing_secret),
                    request.header("X-Slack-Request-Timestamp"),
                    request.header("X-Slack-Signature"),
                    body,
                    now_s,
                    tolerance,
                )
            }
            Channel::Github => signature::sha256_hex(
                &secret(&self.config.github_secret),
                "X-Hub-Signature-256",
                request.header("X-Hub-Signature-256"),
                body,
            ),
            Channel::Custom(index) => {
                let sender = self.config.senders.get(index);
                let plain = sender
                    .map(|s| s.secret.expose().as_bytes())
                    .unwrap_or_default();
                if request.header("webhook-signature").is_some() {
                    let key = self.standard_keys.get(index).map(Vec::as_slice);
                    let headers = StandardHeaders {
                        id: request.header("webhook-id"),
                        timestamp: request.header("webhook-timestamp"),
                        signature: request.header("webhook-signature"),
                    };
                    signature::standard(key.unwrap_or_default(), &headers, body, now_s, tolerance)
                } else {
                    signature::sha256_hex(
                        plain,
                        "X-Signature-256",
                        request.header("X-Signature-256"),
                        body,
                    )
                }
            }
        }
    }

    fn wait(&mut self, now: Now, conn: ConnId) {
        if let Some(c) = self.connections.get_mut(&conn) {
            c.phase = Phase::Waiting;
            c.deadline = now.mono + self.config.delivery_timeout_ms;
        }
    }

    /// Refuses a head before reading its body; the connection closes (the body stays unread).
    fn refuse(&mut self, now: Now, conn: ConnId, method: &str, target: &str, refusal: Refusal) {
        let answer = match refusal {
            Refusal::NotFound => Answer::error(404, "Not Found", "no such channel"),
            Refusal::MethodNotAllowed => {
                Answer::error(405, "Method Not Allowed", "use POST").header("Allow", "POST")
            }
            Refusal::UnsupportedMediaType { expected } => Answer::error(
                415,
                "Unsupported Media Type",
                &format!("Content-Type must be {expected}"),
            ),
        };
        self.core.log(
            now,
            Level::Info,
            "webhook.refused",
            format!(
                "{} {}: answered {}",
                shown(method),
                shown(target),
                answer.status
            ),
        );
        self.answer(now, conn, answer);
    }

    /// The bytes are not HTTP the server accepts: answer what fits, then close.
    fn bad_http(&mut self, now: Now, conn: ConnId, error: &HttpError) {
        let answer = match error {
            HttpError::BodyTooLarge { limit } => Answer::error(
                413,
                "Content Too Large",
                &format!("body larger than {limit} bytes"),
            ),
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => Answer::error(
                431,
                "Request Header Fields Too Large",
                "request head too large",
            ),
            _ => Answer::error(400, "Bad Request", "malformed HTTP request"),
        };
        self.core.log(
            now,
            Level::Warn,
            "webhook.bad_request",
            format!("connection {}: {error}; answered {}", conn.0, answer.status),
        );
        self.answer(now, conn, answer);
    }

    /// Writes `answer` on `conn`; then closes it, or reads its next request.
    fn answer(&mut self, now: Now, conn: ConnId, answer: Answer) {
        let Some(c) = self.connections.get_mut(&conn) else {
            return;
        };
        let close = answer.close || c.close_after || self.stopping;
        let answer = Answer { close, ..answer };
        self.core.emit(Output::Transmit {
            conn,
            bytes: Bytes(answer.encode()),
        });
        if close {
            return self.hang_up(conn);
        }
        c.phase = Phase::Idle;
        c.reader = RequestReader::new(self.limits);
        c.deadline = now.mono + self.config.head_timeout_ms;
        let ahead = std::mem::take(&mut c.ahead);
        self.on_bytes(now, conn, ahead);
    }

    fn hang_up(&mut self, conn: ConnId) {
        if self.connections.remove(&conn).is_some() {
            self.core.emit(Output::Hangup { conn });
        }
    }

    fn on_delivered(&mut self, now: Now, delivery: DeliveryId) -> Result<(), Misuse> {
        let (conn, key) = self
            .awaiting
            .remove(&delivery)
            .ok_or(Misuse::UnknownDelivery(delivery))?;
        let followers = key
            .map(|key| self.seen.held(&key, delivery))
            .unwrap_or_default();
        for waiting in std::iter::once(conn).chain(followers) {
            if self
                .connections
                .get(&waiting)
                .is_some_and(|c| matches!(c.phase, Phase::Waiting))
            {
                self.answer(now, waiting, Answer::new(200, "OK"));
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, now: Now) {
        let paused = self.paused_since.is_some();
        let due: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.deadline <= now.mono && (!paused || c.waits_on_us()))
            .map(|(id, _)| *id)
            .collect();
        for conn in due {
            let Some(c) = self.connections.get(&conn) else {
                continue;
            };
            let answer = match c.phase {
                Phase::Idle => {
                    self.hang_up(conn);
                    continue;
                }
                Phase::Head | Phase::Body(_) | Phase::HandoffBody => {
                    let part = if matches!(c.phase, Phase::Head) {
                        "head"
                    } else {
                        "body"
                    };
                    self.core.log(
                        now,
                        Level::Warn,
                        "webhook.timeout",
                        format!(
                            "connection {}: request {part} not complete in time; answered 408",
                            conn.0
                        ),
                    );
                    Answer::error(408, "Request Timeout", "request not complete in time")
                }
                Phase::Waiting => {
                    self.core.log(
                        now,
                        Level::Warn,
                        "webhook.slow",
                        format!(
                            "connection {}: the event is not held by every consumer yet; answered 503 so the sender retries",
                            conn.0
                        ),
                    );
                    Answer::error(503, "Service Unavailable", "not yet delivered")
                        .header("Retry-After", "5")
                }
            };
            self.answer(now, conn, answer);
        }
    }

    fn on_shutdown(&mut self, now: Now) {
        self.stopping = true;
        let last = now.mono + SHUTDOWN_ANSWER_MS;
        let idle: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Idle))
            .map(|(id, _)| *id)
            .collect();
        for conn in idle {
            self.hang_up(conn);
        }
        for c in self.connections.values_mut() {
            c.deadline = c.deadline.min(last);
        }
    }

    /// Arms the earliest connection deadline; finishes a shutdown once nothing is in flight.
    fn after_input(&mut self) {
        if self.stopping && self.connections.is_empty() && !self.core.is_finished() {
            self.core.finish(Status::Disconnected, None);
            return;
        }
        let paused = self.paused_since.is_some();
        let next = self
            .connections
            .values()
            .filter(|c| !paused || c.waits_on_us())
            .map(|c| c.deadline)
            .min();
        match next {
            Some(at) if !self.core.is_finished() => {
                self.core.timers.arm(IngressTimer::Connections, at)
            }
            _ => self.core.timers.cancel(IngressTimer::Connections),
        }
    }
}

impl Machine for WebhookIngress {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => self
                .core
                .set_status(Status::Connected, Some("listening".into())),
            Input::Timer => self.on_timer(now),
            Input::Opened { conn } => self.on_opened(now, conn),
            Input::Received { conn, bytes } => self.on_bytes(now, conn, bytes.0),
            Input::Closed { conn, .. } | Input::ConnectFailed { conn, .. } => {
                if let Some(c) = self.connections.remove(&conn)
                    && matches!(c.phase, Phase::Head | Phase::Body(_) | Phase::HandoffBody)
                {
                    self.core.log(
                        now,
                        Level::Debug,
                        "webhook.cut",
                        format!("connection {} closed in the middle of a request", conn.0),
                    );
                }
            }
            Input::Delivered { delivery } => self.on_delivered(now, delivery)?,
            Input::IdentifyGranted { shard } => return Err(Misuse::NoIdentifyRequest(shard)),
            #[cfg(feature = "discord")]
            Input::IdentifyWaiting { shard, .. } => return Err(Misuse::NoIdentifyRequest(shard)),
            Input::Shutdown { .. } => self.on_shutdown(now),
            Input::ReadingPaused => {
                self.paused_since.get_or_insert(now.mono);
            }
            Input::ReadingResumed => {
                if let Some(since) = self.paused_since.take() {
                    let paused_for = now.mono - since;
                    for c in self.connections.values_mut() {
                        if !c.waits_on_us() {
                            c.deadline = c.deadline + paused_for;
                        }
                    }
                }
            }
            Input::Frame { .. } | Input::Response { .. } | Input::RequestFailed { .. } => {
                self.core.log(
                    now,
                    Level::Debug,
                    "input.unexpected",
                    "ignored a client-side input: the webhook ingress only serves",
                )
            }
        }
        self.after_input();
        Ok(())
    }

    answered_by_core!();
}
