//! # Discord Gateway v10
//!
//! [`DiscordShard`] is one Gateway shard as a sans-IO [`Machine`]: it asks the driver for
//! `GET /gateway/bot` (unless a gateway URL is configured), opens the WebSocket, heartbeats,
//! identifies or resumes, emits every dispatch as an [`Event`], and recovers from
//! everything the Gateway does: op 7 and op 9, zombie connections, each close code, compression
//! errors and garbage frames. [`DiscordGateway`] runs several shards under one `/gateway/bot` call
//! and one shared IDENTIFY limiter.
//!
//! The rules come from Discord's Gateway documentation (pages Gateway, Gateway Events, Opcodes
//! and Status Codes). The choices it leaves open:
//!
//! - Every reconnect waits for the [`Backoff`] (equal jitter, reset on READY or RESUMED).
//! - Closes for a reconnect use 4000, so the session stays resumable; only a shutdown without
//!   `keep_session` sends 1000, which ends the session.
//! - A zombie (heartbeat due, the previous one un-ACKed) is closed and abandoned at once; other
//!   closes wait for the server's close frame, at most `close_timeout_ms`.
//! - 4003, 4007 and 4009, and op 9 `false`, start a new session directly (no doomed RESUME);
//!   three failed RESUMEs in a row do too; 4004 and 4010–4014 are fatal. See [`close_action`].
//! - After op 9 `false` the IDENTIFY waits a random 1–5 s and for the identify bucket.
//! - Received op 1 is answered at once (never a zombie check) and restarts the interval.
//!
//! The drain rule holds: after each `handle_input`, call `poll_output` until `None`.
//!
//! ```
//! use openflume_proto::discord::{DiscordConfig, DiscordShard};
//! use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
//!
//! let mut shard = DiscordShard::new(DiscordConfig::new("my.bot.token"), 7).unwrap();
//! let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
//! shard.handle_input(now, Input::Start).unwrap();
//! let outputs: Vec<Output> = std::iter::from_fn(|| shard.poll_output()).collect();
//! assert!(outputs.iter().any(|out| matches!(out,
//!     Output::Request { request, .. } if request.url == "https://discord.com/api/v10/gateway/bot")));
//! ```

mod close_codes;
mod config;
mod gateway;
mod gateway_bot;
mod heartbeat;
mod identify;
mod inflate;
mod ratelimit;
mod session;
mod wire;

pub use close_codes::{CloseAction, CloseVerdict, close_action};
pub use config::{DiscordConfig, intents};
pub use gateway::{DiscordGateway, DiscordGatewayConfig, MAX_SHARDS};
pub use heartbeat::Liveness;
pub use identify::{IDENTIFY_SPACING_MS, IdentifyLimiter, IdentifyWait, SessionStartLimit};
pub use inflate::{InflateError, ZlibStream};
pub use ratelimit::{MAX_PAYLOAD_BYTES, SENDS_PER_WINDOW, SendClass, SendLimiter, WINDOW_MS};
pub use session::ResumeState;

use crate::{
    Backoff, ConnId, Event, Frame, HttpResponse, IdCounter, Input, Level, Log, Machine, Millis,
    Misuse, MonotonicGuard, Now, Output, RawJson, ReqId, Status, StatusTracker, TimerKind, Timers,
    redact,
};
use heartbeat::Heartbeat;
use session::Session;
use std::collections::VecDeque;
use wire::{DispatchMeta, Envelope, op};

/// The source name on every item a Discord machine produces.
pub const SOURCE: &str = "discord";

/// Close code for every close that should leave the session resumable.
const CLOSE_RESUMABLE: u16 = 4000;
/// Close code that ends the session: final shutdown only.
const CLOSE_NORMAL: u16 = 1000;

/// Random wait before a fresh IDENTIFY after op 9 `false`, in ms.
const INVALID_SESSION_WAIT_MS: std::ops::RangeInclusive<u64> = 1_000..=5_000;

/// The shard's deadlines, in firing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// The server never answered our close frame.
    CloseTimeout,
    /// No HELLO (or no handshake) in time.
    HelloTimeout,
    /// No READY or RESUMED in time.
    ReadyTimeout,
    /// The next heartbeat is due.
    Heartbeat,
    /// A deferred answer to op 1 may go now.
    SendRetry,
    /// The identify limiter may have a permit now.
    IdentifyPermit,
    /// Open the next connection (or retry `/gateway/bot`).
    Reconnect,
}

impl TimerKind for Timer {
    const ALL: &'static [Timer] = &[
        Timer::CloseTimeout,
        Timer::HelloTimeout,
        Timer::ReadyTimeout,
        Timer::Heartbeat,
        Timer::SendRetry,
        Timer::IdentifyPermit,
        Timer::Reconnect,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// Where a connection is in its handshake.
#[derive(Debug)]
enum Stage {
    /// `Connect` sent, not opened yet.
    Connecting,
    /// Open, waiting for HELLO.
    AwaitingHello,
    /// HELLO seen; the IDENTIFY waits for the identify limiter.
    WaitingPermit,
    /// IDENTIFY sent, waiting for READY.
    Identifying,
    /// RESUME sent, waiting for RESUMED; counts replayed dispatches.
    Resuming { replayed: u64 },
    /// READY or RESUMED seen.
    Ready,
    /// Close frame sent; waiting for the server's.
    Closing { then: AfterClose },
}

/// What follows the end of a connection the machine closed.
#[derive(Debug)]
enum AfterClose {
    /// Reconnect, after at least `min_delay` ms.
    Reconnect { reason: String, min_delay: u64 },
    /// Finish as disconnected.
    Stop { reason: String },
}

/// One WebSocket connection.
#[derive(Debug)]
struct Conn {
    id: ConnId,
    /// Opened on the session's resume URL (so a failure falls back to the original URL).
    via_resume_url: bool,
    stage: Stage,
    /// Present from HELLO on.
    heartbeat: Option<Heartbeat>,
    limiter: SendLimiter,
    /// An answer to the server's op 1 waits for a send permit.
    reply_pending: bool,
    /// The zlib-stream context when compression is on.
    inflate: Option<ZlibStream>,
}

#[derive(Debug)]
enum Phase {
    /// Before `Start`.
    Idle,
    /// Waiting for `GET /gateway/bot`.
    Requesting { req: ReqId },
    /// No connection; the reconnect timer is armed.
    Waiting,
    /// A connection exists.
    Live(Box<Conn>),
    /// Shut down or failed.
    Finished,
}

/// Why a frame was not sent.
enum SendError {
    TooLarge,
    RateLimited(Millis),
}

/// One Discord Gateway shard: one session, one connection at a time. See the [module
/// docs](self) for the behaviour.
///
/// ```
/// use openflume_proto::discord::{DiscordConfig, DiscordShard};
/// use openflume_proto::{ConnId, Frame, Input, Machine, Millis, Now, Output, UnixMillis};
///
/// let config = DiscordConfig {
///     gateway_url: Some("wss://gateway.discord.gg".into()),
///     compress: false,
///     ..DiscordConfig::new("my.bot.token")
/// };
/// let mut shard = DiscordShard::new(config, 7).unwrap();
/// let mut now = Now { mono: Millis(0), wall: UnixMillis(0) };
/// let mut step = |shard: &mut DiscordShard, now: Now, input: Input| {
///     shard.handle_input(now, input).unwrap();
///     std::iter::from_fn(|| shard.poll_output()).collect::<Vec<_>>()
/// };
/// let out = step(&mut shard, now, Input::Start);
/// assert!(out.iter().any(|o| matches!(o, Output::Connect { url, .. }
///     if url == "wss://gateway.discord.gg/?v=10&encoding=json")));
/// step(&mut shard, now, Input::Opened { conn: ConnId(1) });
/// let hello = r#"{"op":10,"d":{"heartbeat_interval":41250}}"#;
/// let out = step(&mut shard, now, Input::Frame { conn: ConnId(1), frame: Frame::Text(hello.into()) });
/// assert!(out.iter().any(|o| matches!(o, Output::Send { frame: Frame::Text(text), .. } if text.contains(r#""op":2"#))));
/// assert!(shard.poll_timeout().is_some()); // the first heartbeat
/// ```
#[derive(Debug)]
pub struct DiscordShard {
    config: DiscordConfig,
    rng: fastrand::Rng,
    out: VecDeque<Output>,
    timers: Timers<Timer>,
    clock: MonotonicGuard,
    status: StatusTracker,
    backoff: Backoff,
    conn_ids: IdCounter,
    req_ids: IdCounter,
    /// The shard's own IDENTIFY limiter; a [`DiscordGateway`] lends a shared one instead.
    limiter: IdentifyLimiter,
    session: Session,
    /// The Gateway URL without query, from the configuration or `/gateway/bot`.
    gateway_url: Option<String>,
    phase: Phase,
    /// Round trip of the last acknowledged heartbeat, in ms.
    heartbeat_rtt: Option<u64>,
    /// `"shard 1/4: "` when there are several shards, so their logs stay apart.
    log_prefix: String,
}

impl DiscordShard {
    /// A shard for `config`, its RNG seeded with `seed`. Fails with [`Misuse::Config`] when the
    /// configuration cannot work (no token, shard id out of range, …).
    pub fn new(config: DiscordConfig, seed: u64) -> Result<DiscordShard, Misuse> {
        config.validate()?;
        let session = config
            .resume
            .clone()
            .map(Session::restore)
            .unwrap_or_default();
        let log_prefix = if config.shard_count > 1 {
            format!("shard {}/{}: ", config.shard_id, config.shard_count)
        } else {
            String::new()
        };
        Ok(DiscordShard {
            rng: fastrand::Rng::with_seed(seed),
            out: VecDeque::new(),
            timers: Timers::new(),
            clock: MonotonicGuard::default(),
            status: StatusTracker::default(),
            backoff: Backoff::new(config.reconnect),
            conn_ids: IdCounter::default(),
            req_ids: IdCounter::default(),
            limiter: IdentifyLimiter::new(config.max_concurrency),
            session,
            gateway_url: config.gateway_url.clone(),
            phase: Phase::Idle,
            heartbeat_rtt: None,
            log_prefix,
            config,
        })
    }

    /// The session as it stands: after `Shutdown { keep_session: true }` the one to put in
    /// [`DiscordConfig::resume`] on the next start. `None` when there is nothing resumable
    /// (no READY yet, a READY without `session_id`, or a shutdown that ended the session).
    pub fn session(&self) -> Option<ResumeState> {
        self.session.resume_state()
    }

    /// Round trip of the last acknowledged heartbeat, in ms.
    pub fn heartbeat_rtt(&self) -> Option<u64> {
        self.heartbeat_rtt
    }

    /// This shard's `[shard_id, shard_count]`.
    pub fn shard(&self) -> [u32; 2] {
        [self.config.shard_id, self.config.shard_count]
    }

    /// The configuration.
    pub fn config(&self) -> &DiscordConfig {
        &self.config
    }

    /// Applies one input, taking IDENTIFY permits from `limiter`: the shard's own when it runs
    /// alone, the shared one under a [`DiscordGateway`].
    pub(crate) fn handle(
        &mut self,
        now: Now,
        input: Input,
        limiter: &mut IdentifyLimiter,
    ) -> Result<(), Misuse> {
        if matches!(self.phase, Phase::Finished) {
            return Err(Misuse::Finished);
        }
        let now = self.clock.observe(now);
        match input {
            Input::Start => {
                if !matches!(self.phase, Phase::Idle) {
                    return Err(Misuse::AlreadyStarted);
                }
                self.set_status(Status::Connecting, None);
                self.open_next(now, limiter);
            }
            _ if matches!(self.phase, Phase::Idle) => return Err(Misuse::NotStarted),
            Input::Timer => self.on_timer(now, limiter),
            Input::Opened { conn } => self.on_opened(now, conn),
            Input::Frame { conn, frame } => self.on_frame(now, conn, frame, limiter),
            Input::Closed { conn, code, reason } => self.on_closed(now, conn, code, &reason),
            Input::ConnectFailed { conn, error } => {
                if self.is_current(conn) {
                    self.connect_failed(now, &error);
                } else {
                    self.stale(now, "connect.failed", conn);
                }
            }
            Input::Response { req, response } => self.on_response(now, req, response, limiter),
            Input::RequestFailed { req, error } => {
                if matches!(self.phase, Phase::Requesting { req: current } if current == req) {
                    self.log(
                        now,
                        Level::Warn,
                        "gateway.bot.error",
                        format!("GET /gateway/bot failed: {error}"),
                    );
                    self.schedule_reconnect(now, format!("GET /gateway/bot failed: {error}"), 0);
                } else {
                    self.log(
                        now,
                        Level::Debug,
                        "http.stale",
                        format!("ignored the failure of an old request {}", req.0),
                    );
                }
            }
            Input::Delivered { delivery } => return Err(Misuse::UnknownDelivery(delivery)),
            Input::Shutdown { keep_session } => self.on_shutdown(now, keep_session),
        }
        Ok(())
    }

    // ---- output helpers ----

    fn emit(&mut self, output: Output) {
        self.out.push_back(output);
    }

    fn log(&mut self, now: Now, level: Level, action: &str, message: String) {
        self.log_with(now, level, action, message, None);
    }

    fn log_with(
        &mut self,
        now: Now,
        level: Level,
        action: &str,
        message: String,
        detail: Option<serde_json::Value>,
    ) {
        let mut log = Log::new(
            level,
            SOURCE,
            action,
            format!("{}{message}", self.log_prefix),
            now.wall,
        );
        log.detail = detail;
        self.emit(Output::Log(log));
    }

    fn set_status(&mut self, to: Status, reason: Option<String>) {
        if let Some(change) = self.status.set(to, reason) {
            self.emit(Output::Status(change));
        }
    }

    fn stale(&mut self, now: Now, what: &str, conn: ConnId) {
        self.log(
            now,
            Level::Debug,
            "ws.stale",
            format!("ignored {what} for old connection {}", conn.0),
        );
    }

    fn arm(&mut self, timer: Timer, now: Now, after_ms: u64) {
        self.timers.arm(timer, now.mono + after_ms);
    }

    fn arm_at(&mut self, timer: Timer, now: Now, at: Millis) {
        self.timers.arm(timer, at.max(now.mono));
    }

    fn conn(&mut self) -> Option<&mut Conn> {
        match &mut self.phase {
            Phase::Live(conn) => Some(conn),
            _ => None,
        }
    }

    fn is_current(&self, id: ConnId) -> bool {
        matches!(&self.phase, Phase::Live(conn) if conn.id == id)
    }

    // ---- opening connections ----

    /// Fetches the gateway URL when unknown, else opens a connection, once IDENTIFY may go.
    fn open_next(&mut self, now: Now, limiter: &IdentifyLimiter) {
        let Some(gateway_url) = self.gateway_url.clone() else {
            self.request_gateway(now);
            return;
        };
        if !self.session.is_resumable()
            && let Some(wait) = limiter.wait(self.config.shard_id, now.mono)
        {
            let ms = wait.until() - now.mono;
            match wait {
                IdentifyWait::Budget { .. } => self.log_with(
                    now,
                    Level::Warn,
                    "identify.budget",
                    format!(
                        "the daily session-start budget is spent: waiting {ms} ms for Discord to refill it before identifying"
                    ),
                    Some(serde_json::json!({ "waitMs": ms })),
                ),
                _ => self.log_with(
                    now,
                    Level::Info,
                    "identify.wait",
                    format!(
                        "waiting {ms} ms for identify bucket {} before connecting",
                        limiter.bucket(self.config.shard_id)
                    ),
                    Some(serde_json::json!({ "waitMs": ms })),
                ),
            }
            self.phase = Phase::Waiting;
            self.arm_at(Timer::Reconnect, now, wait.until());
            return;
        }
        self.connect(now, &gateway_url);
    }

    fn request_gateway(&mut self, now: Now) {
        let req = ReqId(self.req_ids.next());
        let request = gateway_bot::request(&self.config.api_base, self.config.bare_token());
        self.log(
            now,
            Level::Debug,
            "gateway.request",
            format!("GET {}", request.url),
        );
        self.phase = Phase::Requesting { req };
        self.emit(Output::Request { req, request });
    }

    fn on_response(
        &mut self,
        now: Now,
        req: ReqId,
        response: HttpResponse,
        limiter: &mut IdentifyLimiter,
    ) {
        if !matches!(self.phase, Phase::Requesting { req: current } if current == req) {
            self.log(
                now,
                Level::Debug,
                "http.stale",
                format!("ignored the response to an old request {}", req.0),
            );
            return;
        }
        match gateway_bot::outcome(&response, self.config.compress) {
            gateway_bot::Outcome::Ready(body) => {
                if let Some(limit) = body.session_start_limit {
                    limiter.set_session_start_limit(limit, now.mono);
                }
                let (message, detail) = gateway_bot::describe(&body);
                self.log_with(now, Level::Info, "gateway.bot", message, Some(detail));
                self.gateway_url = Some(body.url);
                self.open_next(now, limiter);
            }
            gateway_bot::Outcome::Retry { why, after_ms } => {
                self.log(now, Level::Warn, "gateway.bot.error", why.clone());
                self.schedule_reconnect(now, why, after_ms);
            }
            gateway_bot::Outcome::Fatal(why) => self.fail(now, "gateway.bot.error", why),
        }
    }

    /// Opens a connection: to the resume URL when resuming, else to the gateway URL.
    fn connect(&mut self, now: Now, gateway_url: &str) {
        let resume_url = if self.session.is_resumable() {
            self.session.resume_url().map(str::to_owned)
        } else {
            None
        };
        let mut target = None;
        if let Some(resume_url) = resume_url {
            match wire::connect_url(&resume_url, self.config.compress) {
                Ok(url) => target = Some((url, true)),
                Err(error) => {
                    self.log(
                        now,
                        Level::Warn,
                        "session.resume_url",
                        format!("unusable resume_gateway_url ({error}): resuming through the gateway URL"),
                    );
                    self.session.resume_url_failed();
                }
            }
        }
        let (url, via_resume_url) = match target {
            Some(target) => target,
            None => match wire::connect_url(gateway_url, self.config.compress) {
                Ok(url) => (url, false),
                Err(error) => {
                    self.fail(
                        now,
                        "connect.failed",
                        format!("unusable gateway URL: {error}"),
                    );
                    return;
                }
            },
        };
        let id = ConnId(self.conn_ids.next());
        let inflate = self
            .config
            .compress
            .then(|| ZlibStream::new(self.config.max_message_bytes));
        self.phase = Phase::Live(Box::new(Conn {
            id,
            via_resume_url,
            stage: Stage::Connecting,
            heartbeat: None,
            limiter: SendLimiter::new(),
            reply_pending: false,
            inflate,
        }));
        self.arm(Timer::HelloTimeout, now, self.config.hello_timeout_ms);
        self.log(
            now,
            Level::Info,
            "connect.start",
            format!("connecting to {}", redact::url(&url)),
        );
        self.emit(Output::Connect { conn: id, url });
    }

    fn on_opened(&mut self, now: Now, id: ConnId) {
        if !self.is_current(id) {
            self.stale(now, "open", id);
            return;
        }
        let hello_timeout = self.config.hello_timeout_ms;
        if let Some(conn) = self.conn()
            && matches!(conn.stage, Stage::Connecting)
        {
            conn.stage = Stage::AwaitingHello;
            self.arm(Timer::HelloTimeout, now, hello_timeout);
        }
    }

    fn connect_failed(&mut self, now: Now, error: &str) {
        let via_resume_url = self.conn().is_some_and(|conn| conn.via_resume_url);
        self.leave_connection();
        if via_resume_url {
            self.session.resume_url_failed();
            self.log(
                now,
                Level::Warn,
                "connect.failed",
                format!(
                    "could not connect to the resume URL ({error}): resuming through the gateway URL next"
                ),
            );
        } else {
            self.log(
                now,
                Level::Warn,
                "connect.failed",
                format!("could not connect: {error}"),
            );
        }
        self.schedule_reconnect(now, format!("connect failed: {error}"), 0);
    }

    // ---- inbound frames ----

    fn on_frame(&mut self, now: Now, id: ConnId, frame: Frame, limiter: &mut IdentifyLimiter) {
        if !self.is_current(id) {
            self.stale(now, "a frame", id);
            return;
        }
        let Some(conn) = self.conn() else { return };
        if let Some(heartbeat) = &mut conn.heartbeat {
            heartbeat.frame_received(now.mono);
        }
        match frame {
            Frame::Text(text) => self.on_payload(now, &text, limiter),
            Frame::Binary(bytes) => {
                let Some(inflate) = conn.inflate.as_mut() else {
                    self.log(
                        now,
                        Level::Warn,
                        "ws.binary.unexpected",
                        format!(
                            "skipped a {}-byte binary frame: compression is off",
                            bytes.len()
                        ),
                    );
                    return;
                };
                match inflate.push(bytes.as_slice()) {
                    Ok(None) => {}
                    Ok(Some(payload)) => match String::from_utf8(payload) {
                        Ok(text) => self.on_payload(now, &text, limiter),
                        Err(_) => self.log(
                            now,
                            Level::Warn,
                            "ws.parse.error",
                            "skipped an inflated payload that is not UTF-8".to_owned(),
                        ),
                    },
                    Err(error) => {
                        self.log(
                            now,
                            Level::Warn,
                            "inflate.error",
                            format!("zlib-stream broken ({error}): reconnecting"),
                        );
                        self.close(
                            now,
                            CLOSE_RESUMABLE,
                            "decompression error",
                            AfterClose::Reconnect {
                                reason: format!("decompression error: {error}"),
                                min_delay: 0,
                            },
                        );
                    }
                }
            }
            Frame::Ping(_) | Frame::Pong(_) => {}
        }
    }

    fn on_payload(&mut self, now: Now, text: &str, limiter: &mut IdentifyLimiter) {
        let envelope = match Envelope::parse(text) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.log_with(
                    now,
                    Level::Warn,
                    "ws.parse.error",
                    format!("skipped a frame that is not a Gateway payload: {error}"),
                    Some(serde_json::json!({ "bytes": text.len() })),
                );
                return;
            }
        };
        let Some(opcode) = envelope.op else {
            self.log_with(
                now,
                Level::Warn,
                "ws.parse.error",
                "skipped a frame without op".to_owned(),
                Some(serde_json::json!({ "bytes": text.len() })),
            );
            return;
        };
        let closing = matches!(
            self.conn().map(|conn| &conn.stage),
            Some(Stage::Closing { .. })
        );
        if closing && opcode != op::DISPATCH {
            self.log(
                now,
                Level::Debug,
                "ws.closing",
                format!("ignored op {opcode} while closing"),
            );
            return;
        }
        match opcode {
            op::DISPATCH => self.on_dispatch(now, &envelope),
            op::HEARTBEAT => {
                self.log(
                    now,
                    Level::Debug,
                    "heartbeat.requested",
                    "the server asked for a heartbeat".to_owned(),
                );
                self.send_heartbeat_reply(now);
            }
            op::RECONNECT => self.on_reconnect_request(now),
            op::INVALID_SESSION => self.on_invalid_session(now, envelope.data()),
            op::HELLO => self.on_hello(now, envelope.data(), limiter),
            op::HEARTBEAT_ACK => self.on_heartbeat_ack(now),
            other => self.log(
                now,
                Level::Warn,
                "ws.op.unknown",
                format!("skipped a frame with unknown op {other}"),
            ),
        }
    }

    fn on_hello(&mut self, now: Now, d: &str, limiter: &mut IdentifyLimiter) {
        let Some(conn) = self.conn() else { return };
        if !matches!(conn.stage, Stage::Connecting | Stage::AwaitingHello) {
            self.log(
                now,
                Level::Debug,
                "gateway.hello",
                "ignored a second HELLO".to_owned(),
            );
            return;
        }
        let interval = match serde_json::from_str::<wire::Hello>(d) {
            Ok(hello) if hello.heartbeat_interval > 0 => hello.heartbeat_interval,
            _ => {
                self.log(
                    now,
                    Level::Warn,
                    "gateway.hello.invalid",
                    "HELLO without a usable heartbeat_interval: reconnecting".to_owned(),
                );
                self.close(
                    now,
                    CLOSE_RESUMABLE,
                    "invalid hello",
                    AfterClose::Reconnect {
                        reason: "invalid HELLO".to_owned(),
                        min_delay: 0,
                    },
                );
                return;
            }
        };
        let (heartbeat, first) = Heartbeat::start(interval, &mut self.rng);
        if let Some(conn) = self.conn() {
            conn.heartbeat = Some(heartbeat);
            conn.limiter.set_heartbeat_interval(interval);
            conn.stage = Stage::WaitingPermit;
        }
        self.timers.cancel(Timer::HelloTimeout);
        self.arm(Timer::Heartbeat, now, first);
        self.log_with(
            now,
            Level::Debug,
            "gateway.hello",
            format!("heartbeat every {interval} ms, the first in {first} ms"),
            Some(serde_json::json!({ "intervalMs": interval, "firstMs": first })),
        );
        if self.session.is_resumable() {
            self.send_resume(now, limiter);
        } else {
            // A session that cannot be resumed has nothing left worth keeping, not even `seq`.
            self.session.clear();
            self.try_identify(now, limiter);
        }
    }

    fn try_identify(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        match limiter.try_acquire(self.config.shard_id, now.mono) {
            Ok(()) => self.send_identify(now),
            Err(wait) => {
                let ms = wait.until() - now.mono;
                self.log_with(
                    now,
                    Level::Info,
                    "identify.wait",
                    format!("waiting {ms} ms for an identify permit"),
                    Some(serde_json::json!({ "waitMs": ms })),
                );
                if let Some(conn) = self.conn() {
                    conn.stage = Stage::WaitingPermit;
                }
                self.arm_at(Timer::IdentifyPermit, now, wait.until());
            }
        }
    }

    fn send_identify(&mut self, now: Now) {
        self.session.clear();
        let frame = self.config.identify_frame();
        let preview: serde_json::Value =
            serde_json::from_str(&redact::json_secrets(&frame)).unwrap_or_default();
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => {
                if let Some(conn) = self.conn() {
                    conn.stage = Stage::Identifying;
                }
                self.arm(Timer::ReadyTimeout, now, self.config.ready_timeout_ms);
                self.log_with(
                    now,
                    Level::Info,
                    "gateway.identify",
                    format!("identifying with intents {}", self.config.intents),
                    Some(serde_json::json!({ "payload": preview })),
                );
            }
            // The configuration was checked to fit, so this cannot happen; fail loudly if it does.
            Err(SendError::TooLarge) => self.fail(
                now,
                "ws.send.too_large",
                "the IDENTIFY payload exceeds 4096 bytes".to_owned(),
            ),
            Err(SendError::RateLimited(at)) => self.essential_denied(now, "IDENTIFY", at),
        }
    }

    fn send_resume(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        let Some(state) = self.session.resume_state() else {
            self.try_identify(now, limiter);
            return;
        };
        let frame = wire::resume(self.config.bare_token(), &state.session_id, state.seq);
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => {
                self.session.resume_sent();
                if let Some(conn) = self.conn() {
                    conn.stage = Stage::Resuming { replayed: 0 };
                }
                self.arm(Timer::ReadyTimeout, now, self.config.ready_timeout_ms);
                let preview: serde_json::Value =
                    serde_json::from_str(&wire::resume("[redacted]", "[redacted]", state.seq))
                        .unwrap_or_default();
                self.log_with(
                    now,
                    Level::Info,
                    "gateway.resume",
                    format!("resuming the session from seq {}", state.seq),
                    Some(serde_json::json!({ "payload": preview })),
                );
            }
            Err(SendError::TooLarge) => {
                self.log(
                    now,
                    Level::Warn,
                    "session.reset",
                    "the RESUME payload would exceed 4096 bytes (an oversized session_id): identifying instead".to_owned(),
                );
                self.session.clear();
                self.try_identify(now, limiter);
            }
            Err(SendError::RateLimited(at)) => self.essential_denied(now, "RESUME", at),
        }
    }

    /// The reserve kept for essential sends ran out, which the reserve sizing rules out; the
    /// ready timeout or the next heartbeat recovers.
    fn essential_denied(&mut self, now: Now, what: &str, at: Millis) {
        self.log(
            now,
            Level::Warn,
            "ratelimit.exhausted",
            format!(
                "{what} not sent: the send budget is spent for another {} ms",
                at - now.mono
            ),
        );
    }

    /// Sends `text` on the current connection if it fits the size and rate limits.
    fn send(&mut self, now: Now, class: SendClass, text: String) -> Result<(), SendError> {
        let Phase::Live(conn) = &mut self.phase else {
            return Err(SendError::RateLimited(now.mono));
        };
        if text.len() > MAX_PAYLOAD_BYTES {
            let opcode = Envelope::parse(&text).ok().and_then(|e| e.op);
            let size = text.len();
            self.log_with(
                now,
                Level::Error,
                "ws.send.too_large",
                format!(
                    "not sent: an op {} payload of {size} bytes exceeds Discord's {MAX_PAYLOAD_BYTES}-byte limit",
                    opcode.map_or("?".to_owned(), |op| op.to_string())
                ),
                Some(serde_json::json!({ "bytes": size, "op": opcode })),
            );
            return Err(SendError::TooLarge);
        }
        conn.limiter
            .try_acquire(class, now.mono)
            .map_err(SendError::RateLimited)?;
        let id = conn.id;
        self.emit(Output::Send {
            conn: id,
            frame: Frame::Text(text),
        });
        Ok(())
    }

    fn on_dispatch(&mut self, now: Now, envelope: &Envelope<'_>) {
        if let Some(s) = envelope.s {
            self.session.observe_seq(s);
        }
        let Some(event_type) = envelope.t.as_deref() else {
            self.log(
                now,
                Level::Warn,
                "ws.parse.error",
                "skipped a dispatch without t".to_owned(),
            );
            return;
        };
        let closing = match self.conn() {
            Some(conn) => match &mut conn.stage {
                Stage::Closing { .. } => true,
                Stage::Resuming { replayed } if event_type != "RESUMED" => {
                    *replayed = replayed.saturating_add(1);
                    false
                }
                _ => false,
            },
            None => true,
        };
        if !closing {
            match event_type {
                "READY" => self.on_ready(now, envelope.data()),
                "RESUMED" => self.on_resumed(now),
                _ => {}
            }
        }
        let wanted = self
            .config
            .events
            .as_ref()
            .is_none_or(|events| events.contains(event_type));
        if wanted {
            let data = envelope
                .d
                .map_or_else(RawJson::null, |d| RawJson::from_raw(d.to_owned()));
            let meta = DispatchMeta::extract(data.get());
            let mut event =
                Event::new(SOURCE, event_type, data, now.wall).with_meta("event_type", event_type);
            for (key, value) in [
                ("channel_id", meta.channel_id),
                ("guild_id", meta.guild_id),
                ("user_id", meta.user_id),
            ] {
                if let Some(value) = value {
                    event = event.with_meta(key, value);
                }
            }
            self.emit(Output::Emit {
                event,
                confirm: None,
            });
        }
    }

    fn on_ready(&mut self, now: Now, d: &str) {
        let ready: wire::Ready = serde_json::from_str(d).unwrap_or_default();
        self.session
            .ready(ready.session_id, ready.resume_gateway_url);
        self.connected(now);
        if self.session.is_resumable() {
            self.log(now, Level::Info, "gateway.ready", "ready".to_owned());
        } else {
            self.log(
                now,
                Level::Warn,
                "gateway.ready",
                "ready, but READY lacks session_id or resume_gateway_url: this session cannot be resumed".to_owned(),
            );
        }
    }

    fn on_resumed(&mut self, now: Now) {
        let replayed = match self.conn().map(|conn| &conn.stage) {
            Some(Stage::Resuming { replayed }) => Some(*replayed),
            _ => None,
        };
        self.session.resumed();
        self.connected(now);
        match replayed {
            Some(replayed) => self.log_with(
                now,
                Level::Info,
                "gateway.resumed",
                format!("resumed, {replayed} missed event(s) replayed"),
                Some(serde_json::json!({ "replayed": replayed })),
            ),
            None => self.log(
                now,
                Level::Debug,
                "gateway.resumed",
                "RESUMED without a RESUME in flight".to_owned(),
            ),
        }
    }

    fn connected(&mut self, _now: Now) {
        if let Some(conn) = self.conn() {
            conn.stage = Stage::Ready;
        }
        self.timers.cancel(Timer::ReadyTimeout);
        self.backoff.reset();
        self.set_status(Status::Connected, None);
    }

    fn on_heartbeat_ack(&mut self, now: Now) {
        let rtt = self
            .conn()
            .and_then(|conn| conn.heartbeat.as_mut())
            .and_then(|heartbeat| heartbeat.acked(now.mono));
        match rtt {
            Some(rtt) => {
                self.heartbeat_rtt = Some(rtt);
                self.log_with(
                    now,
                    Level::Debug,
                    "heartbeat.ack",
                    format!("heartbeat acknowledged in {rtt} ms"),
                    Some(serde_json::json!({ "rttMs": rtt })),
                );
            }
            None => self.log(
                now,
                Level::Debug,
                "heartbeat.ack",
                "an ACK without a heartbeat in flight".to_owned(),
            ),
        }
    }

    /// Answers op 1 (or retries a deferred answer): a heartbeat now, which restarts the interval.
    fn send_heartbeat_reply(&mut self, now: Now) {
        let frame = wire::heartbeat(self.session.seq());
        match self.send(now, SendClass::Other, frame) {
            Ok(()) => {
                let mut interval = None;
                if let Some(conn) = self.conn() {
                    conn.reply_pending = false;
                    if let Some(heartbeat) = &mut conn.heartbeat {
                        heartbeat.sent(now.mono);
                        interval = Some(heartbeat.interval_ms());
                    }
                }
                self.timers.cancel(Timer::SendRetry);
                if let Some(interval) = interval {
                    self.arm(Timer::Heartbeat, now, interval);
                }
            }
            Err(SendError::RateLimited(at)) => {
                let first = self.conn().is_some_and(|conn| {
                    let first = !conn.reply_pending;
                    conn.reply_pending = true;
                    first
                });
                if first {
                    self.log_with(
                        now,
                        Level::Warn,
                        "ratelimit.deferred",
                        format!(
                            "send budget spent ({SENDS_PER_WINDOW} per {WINDOW_MS} ms, some kept for heartbeats): the heartbeat the server asked for goes in {} ms",
                            at - now.mono
                        ),
                        Some(serde_json::json!({ "waitMs": at - now.mono })),
                    );
                }
                self.arm_at(Timer::SendRetry, now, at);
            }
            Err(SendError::TooLarge) => {}
        }
    }

    fn on_reconnect_request(&mut self, now: Now) {
        let message = if self.session.is_resumable() {
            "the server asked to reconnect (op 7): resuming"
        } else {
            "the server asked to reconnect (op 7) before a resumable session: identifying again"
        };
        self.log(
            now,
            Level::Info,
            "ws.reconnect.requested",
            message.to_owned(),
        );
        self.close(
            now,
            CLOSE_RESUMABLE,
            "reconnect requested",
            AfterClose::Reconnect {
                reason: "reconnect requested (op 7)".to_owned(),
                min_delay: 0,
            },
        );
    }

    fn on_invalid_session(&mut self, now: Now, d: &str) {
        let resumable = wire::invalid_session_resumable(d);
        if resumable && self.session.is_resumable() {
            self.log(
                now,
                Level::Warn,
                "session.invalid",
                "invalid session (op 9, resumable): reconnecting to resume".to_owned(),
            );
            self.close(
                now,
                CLOSE_RESUMABLE,
                "invalid session",
                AfterClose::Reconnect {
                    reason: "invalid session (op 9, resumable)".to_owned(),
                    min_delay: 0,
                },
            );
        } else {
            let wait = self.rng.u64(INVALID_SESSION_WAIT_MS);
            self.session.clear();
            self.log_with(
                now,
                Level::Warn,
                "session.invalid",
                format!(
                    "invalid session (op 9): starting a new session in {wait} ms at the earliest"
                ),
                Some(serde_json::json!({ "resumable": resumable, "waitMs": wait })),
            );
            self.close(
                now,
                CLOSE_RESUMABLE,
                "invalid session",
                AfterClose::Reconnect {
                    reason: "invalid session (op 9)".to_owned(),
                    min_delay: wait,
                },
            );
        }
    }

    // ---- timers ----

    fn on_timer(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        for timer in self.timers.take_expired(now.mono) {
            // An earlier timer in this batch may have ended the machine.
            if matches!(self.phase, Phase::Finished) {
                return;
            }
            match timer {
                Timer::CloseTimeout => self.on_close_timeout(now),
                Timer::HelloTimeout => self.on_hello_timeout(now),
                Timer::ReadyTimeout => self.on_ready_timeout(now),
                Timer::Heartbeat => self.on_heartbeat_due(now),
                Timer::SendRetry => {
                    if self.conn().is_some_and(|conn| conn.reply_pending) {
                        self.send_heartbeat_reply(now);
                    }
                }
                Timer::IdentifyPermit => {
                    if matches!(
                        self.conn().map(|conn| &conn.stage),
                        Some(Stage::WaitingPermit)
                    ) {
                        self.try_identify(now, limiter);
                    }
                }
                Timer::Reconnect => {
                    if matches!(self.phase, Phase::Waiting) {
                        self.open_next(now, limiter);
                    }
                }
            }
        }
    }

    fn on_close_timeout(&mut self, now: Now) {
        let Some(conn) = self.conn() else { return };
        if !matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let stage = std::mem::replace(&mut conn.stage, Stage::Connecting);
        let close_timeout = self.config.close_timeout_ms;
        self.log(
            now,
            Level::Warn,
            "ws.close.timeout",
            format!(
                "the server did not answer the close frame within {close_timeout} ms: treating the connection as closed"
            ),
        );
        if let Stage::Closing { then } = stage {
            self.after_close(now, then);
        }
    }

    fn on_hello_timeout(&mut self, now: Now) {
        let stage = self
            .conn()
            .map(|conn| matches!(conn.stage, Stage::Connecting));
        let timeout = self.config.hello_timeout_ms;
        match stage {
            Some(true) => {
                // Abort the attempt at the driver, then handle it as a failed connect.
                if let Some(id) = self.conn().map(|conn| conn.id) {
                    self.emit(Output::Close {
                        conn: id,
                        code: CLOSE_RESUMABLE,
                        reason: "connect timeout".to_owned(),
                    });
                }
                self.connect_failed(now, &format!("no connection within {timeout} ms"));
            }
            Some(false)
                if matches!(
                    self.conn().map(|conn| &conn.stage),
                    Some(Stage::AwaitingHello)
                ) =>
            {
                self.log(
                    now,
                    Level::Warn,
                    "hello.timeout",
                    format!("no HELLO within {timeout} ms: the connection is dead"),
                );
                self.abandon(
                    now,
                    "hello timeout",
                    format!("no HELLO within {timeout} ms"),
                );
            }
            _ => {}
        }
    }

    fn on_ready_timeout(&mut self, now: Now) {
        let (waiting, what) = match self.conn().map(|conn| &conn.stage) {
            Some(Stage::Identifying) => (true, "READY"),
            Some(Stage::Resuming { .. }) => (true, "RESUMED"),
            _ => (false, ""),
        };
        if !waiting {
            return;
        }
        let timeout = self.config.ready_timeout_ms;
        let why = format!("no {what} within {timeout} ms");
        self.log(
            now,
            Level::Warn,
            "ready.timeout",
            format!("{why}: reconnecting"),
        );
        self.close(
            now,
            CLOSE_RESUMABLE,
            "ready timeout",
            AfterClose::Reconnect {
                reason: why,
                min_delay: 0,
            },
        );
    }

    fn on_heartbeat_due(&mut self, now: Now) {
        let liveness = self.config.liveness;
        let Some(conn) = self.conn() else { return };
        if matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let Some(heartbeat) = &conn.heartbeat else {
            return;
        };
        if heartbeat.is_zombie(liveness) {
            let interval = heartbeat.interval_ms();
            let silence = match liveness {
                Liveness::Ack => "no ACK",
                Liveness::AnyFrame => "no ACK and no other frame",
            };
            self.log(
                now,
                Level::Warn,
                "heartbeat.zombie",
                format!(
                    "{silence} within {interval} ms of the last heartbeat: dropping the zombie connection to resume"
                ),
            );
            self.abandon(
                now,
                "zombie connection",
                "zombie connection (heartbeat not acknowledged)".to_owned(),
            );
            return;
        }
        let frame = wire::heartbeat(self.session.seq());
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => {
                let mut interval = 0;
                if let Some(conn) = self.conn() {
                    // A beat answers any op 1 still waiting for a permit too.
                    conn.reply_pending = false;
                    if let Some(heartbeat) = &mut conn.heartbeat {
                        heartbeat.sent(now.mono);
                        interval = heartbeat.interval_ms();
                    }
                }
                self.timers.cancel(Timer::SendRetry);
                self.arm(Timer::Heartbeat, now, interval);
            }
            Err(SendError::RateLimited(at)) => {
                self.essential_denied(now, "a heartbeat", at);
                self.arm_at(Timer::Heartbeat, now, at);
            }
            Err(SendError::TooLarge) => {}
        }
    }

    // ---- closing ----

    /// Sends a close frame and waits, at most `close_timeout_ms`, for the server's. A connection
    /// already closing keeps its first close (and its deadline).
    fn close(&mut self, now: Now, code: u16, reason: &str, then: AfterClose) {
        let Some(conn) = self.conn() else { return };
        if matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let id = conn.id;
        conn.stage = Stage::Closing { then };
        conn.heartbeat = None;
        conn.reply_pending = false;
        self.cancel_connection_timers();
        self.arm(Timer::CloseTimeout, now, self.config.close_timeout_ms);
        self.emit(Output::Close {
            conn: id,
            code,
            reason: reason.to_owned(),
        });
    }

    /// Closes with 4000 and forgets the connection at once: a dead peer never answers.
    fn abandon(&mut self, now: Now, close_reason: &str, reason: String) {
        if let Some(id) = self.conn().map(|conn| conn.id) {
            self.emit(Output::Close {
                conn: id,
                code: CLOSE_RESUMABLE,
                reason: close_reason.to_owned(),
            });
        }
        self.leave_connection();
        self.schedule_reconnect(now, reason, 0);
    }

    fn after_close(&mut self, now: Now, then: AfterClose) {
        self.leave_connection();
        match then {
            AfterClose::Reconnect { reason, min_delay } => {
                self.schedule_reconnect(now, reason, min_delay);
            }
            AfterClose::Stop { reason } => self.finish(Status::Disconnected, reason),
        }
    }

    fn cancel_connection_timers(&mut self) {
        for timer in [
            Timer::CloseTimeout,
            Timer::HelloTimeout,
            Timer::ReadyTimeout,
            Timer::Heartbeat,
            Timer::SendRetry,
            Timer::IdentifyPermit,
        ] {
            self.timers.cancel(timer);
        }
    }

    fn leave_connection(&mut self) {
        self.cancel_connection_timers();
        self.phase = Phase::Waiting;
    }

    fn on_closed(&mut self, now: Now, id: ConnId, code: Option<u16>, reason: &str) {
        if !self.is_current(id) {
            self.stale(now, "a close", id);
            return;
        }
        let Some(conn) = self.conn() else { return };
        let code_text = code.map_or_else(
            || "no close code".to_owned(),
            |code| format!("close {code}"),
        );
        let detail = serde_json::json!({ "code": code, "reason": reason });
        match std::mem::replace(&mut conn.stage, Stage::Connecting) {
            Stage::Closing { then } => {
                self.log_with(
                    now,
                    Level::Debug,
                    "ws.close",
                    format!("closed ({code_text})"),
                    Some(detail),
                );
                self.after_close(now, then);
            }
            Stage::Connecting => {
                self.connect_failed(now, &format!("closed before opening ({code_text})"))
            }
            _ => {
                let verdict = close_action(code);
                let why = format!("{code_text}: {}", verdict.cause);
                match verdict.action {
                    CloseAction::Fatal => {
                        self.leave_connection();
                        self.log_with(
                            now,
                            Level::Error,
                            "ws.close.fatal",
                            format!("connection closed ({why}): not reconnecting"),
                            Some(detail),
                        );
                        self.finish(Status::Failed, why);
                    }
                    CloseAction::NewSession => {
                        self.log_with(
                            now,
                            Level::Warn,
                            "ws.close",
                            format!("connection closed ({why}): starting a new session"),
                            Some(detail),
                        );
                        self.session.clear();
                        self.leave_connection();
                        self.schedule_reconnect(now, why, 0);
                    }
                    CloseAction::Resume => {
                        let level = if matches!(code, Some(4001 | 4002 | 4005 | 4008)) {
                            Level::Error
                        } else {
                            Level::Warn
                        };
                        self.log_with(
                            now,
                            level,
                            "ws.close",
                            format!("connection closed ({why})"),
                            Some(detail),
                        );
                        self.leave_connection();
                        self.schedule_reconnect(now, why, 0);
                    }
                }
            }
        }
    }

    /// Plans the next connection after the backoff (and at least `min_delay` ms).
    fn schedule_reconnect(&mut self, now: Now, reason: String, min_delay: u64) {
        if self.session.is_resumable() && self.session.resumes_exhausted() {
            self.log(
                now,
                Level::Warn,
                "session.reset",
                format!(
                    "{} RESUMEs in a row failed: starting a new session",
                    session::MAX_FAILED_RESUMES
                ),
            );
            self.session.clear();
        }
        let Some(delay) = self.backoff.next_delay(&mut self.rng) else {
            let attempts = self.backoff.attempts();
            self.fail(
                now,
                "reconnect.exhausted",
                format!("gave up after {attempts} reconnect attempts ({reason})"),
            );
            return;
        };
        let delay = delay.max(min_delay);
        self.set_status(Status::Reconnecting, Some(reason));
        let attempt = self.backoff.attempts();
        let resume = self.session.is_resumable();
        let next = match (&self.gateway_url, resume) {
            (None, _) => "to ask /gateway/bot again",
            (Some(_), true) => "to resume",
            (Some(_), false) => "to identify",
        };
        self.log_with(
            now,
            Level::Info,
            "reconnect.scheduled",
            format!("reconnecting in {delay} ms {next}"),
            Some(serde_json::json!({ "attempt": attempt, "delayMs": delay, "resume": resume })),
        );
        self.phase = Phase::Waiting;
        self.arm(Timer::Reconnect, now, delay);
    }

    fn on_shutdown(&mut self, now: Now, keep_session: bool) {
        let keep = keep_session && self.session.is_resumable();
        if keep_session && !keep {
            self.log(
                now,
                Level::Info,
                "session.keep",
                "no resumable session to keep".to_owned(),
            );
        }
        let reason = if keep {
            "shutdown, session kept for resuming"
        } else {
            "shutdown"
        };
        if !keep {
            // Closing with 1000 ends the session on Discord's side.
            self.session.clear();
        }
        let (code, close_reason) = if keep {
            (CLOSE_RESUMABLE, "shutting down, session kept")
        } else {
            (CLOSE_NORMAL, "shutting down")
        };
        let Some(conn) = self.conn() else {
            self.finish(Status::Disconnected, reason.to_owned());
            return;
        };
        match &mut conn.stage {
            Stage::Connecting => {
                let id = conn.id;
                self.emit(Output::Close {
                    conn: id,
                    code,
                    reason: close_reason.to_owned(),
                });
                self.finish(Status::Disconnected, reason.to_owned());
            }
            Stage::Closing { then } => {
                // The close frame is already out; finish when it completes.
                *then = AfterClose::Stop {
                    reason: reason.to_owned(),
                };
            }
            _ => self.close(
                now,
                code,
                close_reason,
                AfterClose::Stop {
                    reason: reason.to_owned(),
                },
            ),
        }
    }

    /// Stops for good after an error the shard cannot recover from.
    fn fail(&mut self, now: Now, action: &str, why: String) {
        self.log(now, Level::Error, action, why.clone());
        self.finish(Status::Failed, why);
    }

    fn finish(&mut self, status: Status, reason: String) {
        self.timers.cancel_all();
        self.phase = Phase::Finished;
        self.set_status(status, Some(reason));
    }
}

impl Machine for DiscordShard {
    fn source(&self) -> &str {
        SOURCE
    }

    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let mut limiter = std::mem::take(&mut self.limiter);
        let result = self.handle(now, input, &mut limiter);
        self.limiter = limiter;
        result
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next_deadline()
    }

    fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    fn status(&self) -> Status {
        self.status.current()
    }
}
