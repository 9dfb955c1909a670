//! The one shape every protocol machine has: inputs in, outputs polled, deadlines exposed.

use crate::http::ReceivedRequest;
use crate::{Bytes, Checkpoint, Event, Log, Millis, Now, Status, StatusChange};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one WebSocket connection attempt. Fresh for every attempt, so input that arrives for
/// an old connection is recognisably stale.
///
/// ```
/// use openflume_proto::{ConnId, IdCounter};
/// let mut ids = IdCounter::default();
/// let old = ConnId(ids.next());
/// let current = ConnId(ids.next()); // after a reconnect
/// assert_ne!(old, current); // input for `old` is stale
/// assert_eq!(serde_json::to_string(&current).unwrap(), "2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

/// Identifies one HTTP request. Fresh for every request.
///
/// ```
/// use openflume_proto::{Input, ReqId};
/// let line = r#"{"request_failed":{"req":7,"error":"timed out"}}"#;
/// let input: Input = serde_json::from_str(line).unwrap();
/// assert_eq!(input, Input::RequestFailed { req: ReqId(7), error: "timed out".into() });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReqId(pub u64);

/// Identifies one emitted event that the machine waits to see confirmed before acknowledging it
/// upstream (a Slack ack, GitHub validators).
///
/// ```
/// use openflume_proto::{DeliveryId, Input};
/// let input = Input::Delivered { delivery: DeliveryId(4) };
/// assert_eq!(serde_json::to_string(&input).unwrap(), r#"{"delivered":{"delivery":4}}"#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub u64);

/// Hands out increasing ids of one kind.
///
/// ```
/// use openflume_proto::{ConnId, IdCounter};
/// let mut ids = IdCounter::default();
/// assert_eq!(ConnId(ids.next()), ConnId(1));
/// assert_eq!(ConnId(ids.next()), ConnId(2));
/// ```
#[derive(Clone, Debug, Default)]
pub struct IdCounter(u64);

impl IdCounter {
    /// The next id, starting at 1.
    ///
    /// ```
    /// use openflume_proto::IdCounter;
    /// let mut ids = IdCounter::default();
    /// let first = ids.next();
    /// assert_eq!(first, 1);
    /// assert!(ids.next() > first);
    /// ```
    #[allow(clippy::should_implement_trait)] // an endless counter, not an iterator
    pub fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// A WebSocket message.
///
/// ```
/// use openflume_proto::Frame;
/// let ping = Frame::Ping("hi".into());
/// assert_eq!(serde_json::to_string(&ping).unwrap(), r#"{"ping":"hi"}"#);
/// // Debug output hides tokens, so frames can be logged.
/// let identify = Frame::Text(r#"{"op":2,"d":{"token":"Bot.secret"}}"#.into());
/// assert!(!format!("{identify:?}").contains("secret"));
/// ```
///
/// `#[non_exhaustive]`: a driver's match ends in a wildcard arm (a frame kind it cannot put on
/// the wire is logged and dropped, as the `openflume` drivers do).
///
/// ```compile_fail,E0004
/// # use openflume_proto::Frame;
/// fn is_text(frame: &Frame) -> bool {
///     match frame { Frame::Text(_) => true, Frame::Binary(_) | Frame::Ping(_) | Frame::Pong(_) => false }
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message (Discord's zlib-stream).
    Binary(Bytes),
    /// A ping (Slack liveness); the driver sends it, and reports received pings for visibility.
    Ping(Bytes),
    /// A pong: the peer's answer to a ping.
    Pong(Bytes),
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Text(text) => write!(f, "Text({:?})", crate::redact::json_secrets(text)),
            Frame::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
            Frame::Ping(bytes) => write!(f, "Ping({bytes:?})"),
            Frame::Pong(bytes) => write!(f, "Pong({bytes:?})"),
        }
    }
}

/// An HTTP request for the driver to send.
///
/// ```
/// use openflume_proto::HttpRequest;
/// let req = HttpRequest::new("GET", "https://api.github.com/user").header("Accept", "text/plain");
/// // An empty body is left out of recorded transcripts.
/// assert_eq!(
///     serde_json::to_string(&req).unwrap(),
///     r#"{"method":"GET","url":"https://api.github.com/user","headers":[["Accept","text/plain"]]}"#,
/// );
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header fields in order, without `Host` and `Content-Length` (the codec adds them).
    pub headers: Vec<(String, String)>,
    /// Request body; empty for none.
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub body: Bytes,
}

impl HttpRequest {
    /// A request with no headers and no body.
    ///
    /// ```
    /// use openflume_proto::HttpRequest;
    /// let req = HttpRequest::new("GET", "https://api.github.com/notifications")
    ///     .header("Authorization", "Bearer secret");
    /// assert!(!format!("{req:?}").contains("secret"));
    /// ```
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::default(),
        }
    }

    /// Adds a header. Headers keep their order, and a repeated name adds a second field.
    ///
    /// ```
    /// use openflume_proto::HttpRequest;
    /// let req = HttpRequest::new("GET", "https://example.com/")
    ///     .header("Accept", "text/plain")
    ///     .header("Accept", "application/json");
    /// assert_eq!(req.headers.len(), 2);
    /// assert_eq!(req.headers[1], ("Accept".to_owned(), "application/json".to_owned()));
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// use openflume_proto::HttpRequest;
    /// let req = HttpRequest::new("POST", "https://slack.com/api/apps.connections.open")
    ///     .header("Content-Type", "application/json")
    ///     .body("{}");
    /// assert_eq!(req.body.as_str(), Some("{}"));
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> HttpRequest {
        self.body = body.into();
        self
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), crate::redact::header_value(name, value)))
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &crate::redact::url(&self.url))
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// An HTTP response as the driver received it.
///
/// ```
/// use openflume_proto::HttpResponse;
/// let line = r#"{"status":200,"headers":[["Content-Type","application/json"]],"body":"[]"}"#;
/// let res: HttpResponse = serde_json::from_str(line).unwrap();
/// assert_eq!(res.status, 200);
/// assert_eq!(res.header("content-type"), Some("application/json"));
/// assert_eq!(res.body.as_str(), Some("[]"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, String)>,
    /// The whole body, de-chunked.
    #[serde(default)]
    pub body: Bytes,
}

impl HttpResponse {
    /// A response from borrowed parts (tests, simulators, examples).
    ///
    /// ```
    /// use openflume_proto::HttpResponse;
    /// let res = HttpResponse::new(304, &[("ETag", "\"a\"")], "");
    /// assert_eq!((res.status, res.header("etag")), (304, Some("\"a\"")));
    /// ```
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.into(),
        }
    }

    /// The first header with this name, compared case-insensitively.
    ///
    /// ```
    /// use openflume_proto::HttpResponse;
    /// let res = HttpResponse { status: 200, headers: vec![("ETag".into(), "\"a\"".into())], body: Default::default() };
    /// assert_eq!(res.header("etag"), Some("\"a\""));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Something the world tells a machine. Owned and serialisable, so a session records as JSON Lines.
///
/// ```
/// use openflume_proto::{ConnId, Input};
/// let input = Input::Closed { conn: ConnId(1), code: Some(4000), reason: String::new() };
/// let line = serde_json::to_string(&input).unwrap();
/// assert_eq!(line, r#"{"closed":{"conn":1,"code":4000,"reason":""}}"#);
/// assert_eq!(serde_json::from_str::<Input>(&line).unwrap(), input);
/// // Unit variants are plain strings, and missing defaults are filled in.
/// assert_eq!(serde_json::from_str::<Input>(r#""start""#).unwrap(), Input::Start);
/// let shutdown: Input = serde_json::from_str(r#"{"shutdown":{}}"#).unwrap();
/// assert_eq!(shutdown, Input::Shutdown { keep_session: false });
/// ```
///
/// `#[non_exhaustive]`: later versions may add inputs; a match outside this crate ends in a
/// wildcard arm.
///
/// ```
/// # use openflume_proto::Input;
/// fn is_timer(input: &Input) -> bool {
///     match input {
///         Input::Timer => true,
///         _ => false,
///     }
/// }
/// assert!(is_timer(&Input::Timer));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Input {
    /// Begin: issue the first request or connection.
    Start,
    /// A deadline from `poll_timeout` passed (or the driver woke early: machines check).
    Timer,
    /// The WebSocket handshake on `conn` completed; for a machine that serves (the webhook
    /// ingress), the driver accepted a client's connection and named it `conn`.
    Opened {
        /// Connection.
        conn: ConnId,
    },
    /// A message arrived on `conn`.
    ///
    /// ```
    /// use openflume_proto::{ConnId, Frame, Input, Millis};
    /// // Recordings without `arrived` read as before, and a frame without it records without it.
    /// let line = r#"{"frame":{"conn":1,"frame":{"text":"{}"}}}"#;
    /// let input: Input = serde_json::from_str(line).unwrap();
    /// assert_eq!(input, Input::Frame { conn: ConnId(1), frame: Frame::Text("{}".into()), arrived: None });
    /// assert_eq!(serde_json::to_string(&input).unwrap(), line);
    /// let queued = Input::Frame { conn: ConnId(1), frame: Frame::Text("{}".into()), arrived: Some(Millis(40)) };
    /// assert!(serde_json::to_string(&queued).unwrap().ends_with(r#""arrived":40}}"#));
    /// ```
    Frame {
        /// Connection.
        conn: ConnId,
        /// The message.
        frame: Frame,
        /// When the driver read the frame, on the same monotonic clock as `now`. Under
        /// back-pressure a frame already read waits in the driver's queue before it is handed
        /// over, so machines measure peer-facing deadlines (Slack's 3 s ack window) from this,
        /// not from `now`. Never later than the `now` it is handed over with (a later one is
        /// read as `now`); `None` when unknown (recordings, tests): then it arrived at `now`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arrived: Option<Millis>,
    },
    /// `conn` closed; `code` is absent when the transport dropped without a close frame.
    Closed {
        /// Connection.
        conn: ConnId,
        /// Close code from the peer's close frame.
        #[serde(default)]
        code: Option<u16>,
        /// Close reason or transport error text.
        #[serde(default)]
        reason: String,
    },
    /// Bytes arrived on the byte stream `conn` of a machine that serves (the webhook ingress),
    /// exactly as read from the socket, split anywhere.
    Received {
        /// Connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Opening `conn` failed (DNS, TCP, TLS or the WebSocket handshake).
    ConnectFailed {
        /// Connection.
        conn: ConnId,
        /// Readable cause.
        error: String,
    },
    /// The response to `req`.
    Response {
        /// Request.
        req: ReqId,
        /// The response.
        response: HttpResponse,
    },
    /// `req` failed before a full response arrived.
    RequestFailed {
        /// Request.
        req: ReqId,
        /// Readable cause.
        error: String,
    },
    /// The driver stopped reading this machine's connections and responses because a consumer
    /// is full (back-pressure). What arrives meanwhile waits unread in the transport, so a
    /// deadline that waits for something to be read (HELLO, READY, a heartbeat ACK, a pong) is
    /// suspended until [`Input::ReadingResumed`]: this process chose not to read, the peer is
    /// not at fault. Timers that send (heartbeats, pings) keep running.
    ReadingPaused,
    /// The driver reads again; suspended deadlines resume with the time they had left.
    ReadingResumed,
    /// Every consumer that must not lose events holds the event emitted with this delivery id;
    /// acknowledge it upstream now.
    Delivered {
        /// The id from `Output::Emit`.
        delivery: DeliveryId,
    },
    /// An external identify queue lets Discord shard `shard` send its IDENTIFY now: the answer to
    /// its [`Output::IdentifyRequest`] (see [`IdentifyQueue`](crate::discord::IdentifyQueue)).
    ///
    /// ```
    /// use openflume_proto::Input;
    /// let line = r#"{"identify_granted":{"shard":3}}"#;
    /// assert_eq!(serde_json::from_str::<Input>(line).unwrap(), Input::IdentifyGranted { shard: 3 });
    /// ```
    IdentifyGranted {
        /// The shard id of the request.
        shard: u32,
    },
    /// An external identify queue holds Discord shard `shard`'s IDENTIFY back, and says why and
    /// until about when: the shard logs it (a spent daily budget as a warning). The grant still
    /// comes as [`Input::IdentifyGranted`]; the queue may say this again, or never.
    ///
    /// ```
    /// use openflume_proto::discord::IdentifyWait;
    /// use openflume_proto::{Input, Millis};
    /// let line = r#"{"identify_waiting":{"shard":3,"wait":{"budget":{"until":90000}}}}"#;
    /// assert_eq!(
    ///     serde_json::from_str::<Input>(line).unwrap(),
    ///     Input::IdentifyWaiting { shard: 3, wait: IdentifyWait::Budget { until: Millis(90_000) } }
    /// );
    /// ```
    #[cfg(feature = "discord")]
    IdentifyWaiting {
        /// The shard id of the request.
        shard: u32,
        /// Why, and until when on the clock of `now`.
        wait: crate::discord::IdentifyWait,
    },
    /// Stop. `keep_session` asks to leave a resumable session behind (Discord closes with 4000).
    Shutdown {
        /// Keep the upstream session resumable.
        #[serde(default)]
        keep_session: bool,
    },
}

/// Something a machine asks the driver to do, or reports.
///
/// ```
/// use openflume_proto::{ConnId, Event, Output, RawJson, UnixMillis};
/// let connect = Output::Connect { conn: ConnId(1), url: "wss://gateway.discord.gg/?v=10".into() };
/// let line = serde_json::to_string(&connect).unwrap();
/// assert_eq!(line, r#"{"connect":{"conn":1,"url":"wss://gateway.discord.gg/?v=10"}}"#);
/// // An emit without `confirm` needs no `Input::Delivered`, and records without the field.
/// let event = Event::new("time", "tick", RawJson::null(), UnixMillis(0));
/// let tick = Output::Emit { event, confirm: None };
/// assert!(!serde_json::to_string(&tick).unwrap().contains("confirm"));
/// // Debug hides single-use credentials in URLs (a Slack ticket).
/// let slack = Output::Connect { conn: ConnId(2), url: "wss://x.slack.com/link/?ticket=tkt-1".into() };
/// assert!(!format!("{slack:?}").contains("tkt-1"));
/// ```
///
/// `#[non_exhaustive]`: later versions add outputs (a new protocol feature must not break
/// every driver's build), so a driver's match ends in a wildcard arm. An output a driver does
/// not know is one it was never built to carry out: log it and ignore it.
///
/// ```
/// # use openflume_proto::Output;
/// fn perform(output: Output) {
///     match output {
///         Output::Emit { event, .. } => println!("{}", event.event_type),
///         Output::Log(log) => eprintln!("{}", log.message),
///         // Connect, Send, Request, … and whatever later versions add.
///         other => eprintln!("ignored: {other:?}"),
///     }
/// }
/// # let _ = perform;
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Output {
    /// Open a WebSocket to `url` and report it as `conn`.
    Connect {
        /// Connection id for every later input and output about it.
        conn: ConnId,
        /// `ws://` or `wss://` URL.
        url: String,
    },
    /// Send a message on `conn`.
    Send {
        /// Connection.
        conn: ConnId,
        /// The message.
        frame: Frame,
    },
    /// Close `conn` with this code.
    Close {
        /// Connection.
        conn: ConnId,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Write these bytes to the byte stream `conn` (a machine that serves), in order.
    Transmit {
        /// Connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close the byte stream `conn` once what was transmitted before has been written. The
    /// machine has forgotten `conn`: nothing more is fed about it.
    Hangup {
        /// Connection.
        conn: ConnId,
    },
    /// A machine that serves routed this request elsewhere (the webhook ingress's
    /// `handoff_paths`: `serve`'s hub and health endpoints on the same port): take the byte
    /// stream `conn` back from the machine, which has forgotten it and answers nothing on it,
    /// and hand it to whoever serves `request.target`. `leftover` holds the bytes the client sent
    /// after the request (a WebSocket client's first frames): they come before anything still
    /// unread on the stream.
    ///
    /// ```
    /// use openflume_proto::http::ReceivedRequest;
    /// use openflume_proto::{Bytes, ConnId, Output};
    /// let request = ReceivedRequest {
    ///     method: "GET".into(),
    ///     target: "/healthz".into(),
    ///     headers: vec![("Authorization".into(), "Bearer hub-secret".into())],
    ///     body: Bytes::default(),
    /// };
    /// let handoff = Output::Handoff { conn: ConnId(3), request, leftover: Bytes::default() };
    /// // Debug names the request, never its header values (a bearer token).
    /// assert!(!format!("{handoff:?}").contains("hub-secret"));
    /// ```
    Handoff {
        /// Connection.
        conn: ConnId,
        /// The request, read whole (head and body).
        request: ReceivedRequest,
        /// Bytes read after the request.
        leftover: Bytes,
    },
    /// Send an HTTP request and report its outcome as `req`.
    Request {
        /// Request id.
        req: ReqId,
        /// The request.
        request: HttpRequest,
    },
    /// Hand an event to the firehose. With `confirm`, feed `Input::Delivered` once the firehose
    /// has accepted it; the machine acknowledges upstream only then.
    Emit {
        /// The event.
        event: Event,
        /// Delivery id to confirm, when the machine waits for confirmation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm: Option<DeliveryId>,
    },
    /// A log line for the firehose.
    Log(Log),
    /// The source's status changed; the driver reports it as a `status` log.
    Status(StatusChange),
    /// State a restart needs that no item shows (GitHub's validators, the notifications
    /// recorded at bootstrap), valid once everything emitted before it is held: it takes its
    /// place in the firehose after those items, and replaces the source's cursor where they are
    /// stored (see [`Cursors`](crate::Cursors)).
    Checkpoint(Checkpoint),
    /// A part of the source with a status of its own changed status: a shard of a Discord
    /// gateway, named `"ID/COUNT"`. The source's own [`Output::Status`] is the aggregate; the
    /// driver keeps the parts' statuses beside it, for a reader to see which part is down.
    ///
    /// ```
    /// use openflume_proto::{Output, Status};
    /// let part = Output::PartStatus { part: "3/8".into(), status: Status::Connected, reason: None };
    /// assert_eq!(
    ///     serde_json::to_string(&part).unwrap(),
    ///     r#"{"part_status":{"part":"3/8","status":"connected","reason":null}}"#
    /// );
    /// ```
    PartStatus {
        /// The part's name.
        part: String,
        /// Its new status.
        status: Status,
        /// Why, when there is a reason.
        reason: Option<String>,
    },
    /// A Discord shard with an external identify queue asks for leave to IDENTIFY; answer with
    /// [`Input::IdentifyGranted`] when the coordinator grants it (see
    /// [`IdentifyQueue`](crate::discord::IdentifyQueue) for the contract).
    #[cfg(feature = "discord")]
    IdentifyRequest(crate::discord::IdentifyRequest),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Connect { conn, url } => f
                .debug_struct("Connect")
                .field("conn", conn)
                .field("url", &crate::redact::url(url))
                .finish(),
            Output::Send { conn, frame } => f
                .debug_struct("Send")
                .field("conn", conn)
                .field("frame", frame)
                .finish(),
            Output::Close { conn, code, reason } => f
                .debug_struct("Close")
                .field("conn", conn)
                .field("code", code)
                .field("reason", reason)
                .finish(),
            Output::Transmit { conn, bytes } => f
                .debug_struct("Transmit")
                .field("conn", conn)
                .field("bytes", &bytes.len())
                .finish(),
            Output::Hangup { conn } => f.debug_struct("Hangup").field("conn", conn).finish(),
            Output::Handoff {
                conn,
                request,
                leftover,
            } => f
                .debug_struct("Handoff")
                .field("conn", conn)
                .field("method", &request.method)
                .field("target", &crate::redact::url(&request.target))
                .field("headers", &request.headers.len())
                .field("body", &request.body.len())
                .field("leftover", &leftover.len())
                .finish(),
            Output::Request { req, request } => f
                .debug_struct("Request")
                .field("req", req)
                .field("request", request)
                .finish(),
            Output::Emit { event, confirm } => f
                .debug_struct("Emit")
                .field("event", event)
                .field("confirm", confirm)
                .finish(),
            Output::Log(log) => f.debug_tuple("Log").field(log).finish(),
            Output::Status(change) => f.debug_tuple("Status").field(change).finish(),
            Output::Checkpoint(checkpoint) => {
                f.debug_tuple("Checkpoint").field(checkpoint).finish()
            }
            Output::PartStatus {
                part,
                status,
                reason,
            } => f
                .debug_struct("PartStatus")
                .field("part", part)
                .field("status", status)
                .field("reason", reason)
                .finish(),
            #[cfg(feature = "discord")]
            Output::IdentifyRequest(request) => {
                f.debug_tuple("IdentifyRequest").field(request).finish()
            }
        }
    }
}

/// The caller used a machine wrongly. Remote faults are never this: they become logs and status changes.
///
/// ```
/// use openflume_proto::{DeliveryId, Misuse};
/// let err = Misuse::NotStarted;
/// assert_eq!(err.to_string(), "the machine has not been started: send Input::Start first");
/// let err = Misuse::UnknownDelivery(DeliveryId(9));
/// assert_eq!(err.to_string(), "unknown delivery id DeliveryId(9)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// Input after the machine finished.
    #[error("the machine has finished and takes no more input")]
    Finished,
    /// Input other than `Start` before `Start`.
    #[error("the machine has not been started: send Input::Start first")]
    NotStarted,
    /// `Start` twice.
    #[error("the machine was already started")]
    AlreadyStarted,
    /// `Received` for a machine that opens connections but serves none.
    #[error("this machine reads no byte streams: Input::Received is for a machine that serves")]
    NotServing,
    /// An `IdentifyGranted` (or `IdentifyWaiting`) for a shard this machine does not run, or to
    /// a machine that asks for no IDENTIFY grants.
    #[error("no identify request of shard {0}: this machine does not run it, or paces itself")]
    NoIdentifyRequest(u32),
    /// A `Delivered` for an id the machine never handed out.
    #[error("unknown delivery id {0:?}")]
    UnknownDelivery(DeliveryId),
    /// The configuration cannot work: which field, and why.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::ConfigError),
}

/// A sans-IO protocol machine. Discord, Slack, GitHub, cron and custom sources all implement it, so
/// one driver loop and one test harness serve them all.
///
/// The drain rule: after every `handle_input`, call `poll_output` until it returns `None` before the
/// next input. Then wait until `poll_timeout` (if any) or the next input, whichever comes first.
///
/// ```
/// use openflume_proto::{Machine, Input, Output, Millis, Now, UnixMillis, Status, Misuse};
/// use std::collections::VecDeque;
///
/// /// A source that emits nothing and finishes on shutdown.
/// #[derive(Default)]
/// struct Quiet { out: VecDeque<Output>, done: bool }
///
/// impl Machine for Quiet {
///     fn source(&self) -> &str { "quiet" }
///     fn handle_input(&mut self, _now: Now, input: Input) -> Result<(), Misuse> {
///         if self.done { return Err(Misuse::Finished); }
///         if let Input::Shutdown { .. } = input { self.done = true; }
///         Ok(())
///     }
///     fn poll_output(&mut self) -> Option<Output> { self.out.pop_front() }
///     fn poll_timeout(&self) -> Option<Millis> { None }
///     fn is_finished(&self) -> bool { self.done }
///     fn status(&self) -> Status { if self.done { Status::Disconnected } else { Status::Connected } }
/// }
///
/// let mut m = Quiet::default();
/// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
/// m.handle_input(now, Input::Shutdown { keep_session: false }).unwrap();
/// assert!(m.is_finished());
/// assert_eq!(m.handle_input(now, Input::Timer), Err(Misuse::Finished));
/// ```
pub trait Machine {
    /// The source name stamped on this machine's items (`discord`, `slack`, …).
    fn source(&self) -> &str;

    /// Apply exactly one input. `Err` only for caller misuse, never for anything the peer did.
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse>;

    /// The next queued output; call until `None` after every `handle_input`.
    fn poll_output(&mut self) -> Option<Output>;

    /// The earliest armed deadline on the monotonic clock; `None` when nothing is scheduled.
    fn poll_timeout(&self) -> Option<Millis>;

    /// The timer `poll_timeout` waits for, in snake_case (`heartbeat`, `poll`), so a transcript
    /// can say which timer fired. `None` when nothing is armed, or for a machine that does not say.
    ///
    /// ```
    /// use openflume_proto::github::{GithubConfig, GithubMachine};
    /// use openflume_proto::{Input, Machine, Millis, Now, UnixMillis};
    /// let config = GithubConfig::new("ghp_example");
    /// let mut github = GithubMachine::new(config, 7).unwrap();
    /// assert_eq!(github.next_timer(), None);
    /// github.handle_input(Now { mono: Millis(0), wall: UnixMillis(0) }, Input::Start).unwrap();
    /// // The first page is in flight: the deadline is its timeout.
    /// assert_eq!(github.next_timer(), Some("request_timeout"));
    /// ```
    fn next_timer(&self) -> Option<&'static str> {
        None
    }

    /// True once no further output can come (shut down, or failed for good).
    fn is_finished(&self) -> bool;

    /// The current status.
    fn status(&self) -> Status;

    /// What a later run needs to carry on where this one stopped, when there is something (a
    /// Discord session to resume). Asked for after the machine shut down with
    /// `keep_session: true`; `None` by default.
    fn checkpoint(&self) -> Option<Checkpoint> {
        None
    }
}

impl<M: Machine + ?Sized> Machine for Box<M> {
    fn source(&self) -> &str {
        (**self).source()
    }
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        (**self).handle_input(now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        (**self).poll_output()
    }
    fn poll_timeout(&self) -> Option<Millis> {
        (**self).poll_timeout()
    }
    fn next_timer(&self) -> Option<&'static str> {
        (**self).next_timer()
    }
    fn is_finished(&self) -> bool {
        (**self).is_finished()
    }
    fn status(&self) -> Status {
        (**self).status()
    }
    fn checkpoint(&self) -> Option<Checkpoint> {
        (**self).checkpoint()
    }
}
