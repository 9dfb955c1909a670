//! [`DiscordShard`]: one Gateway session over one connection at a time.
//!
//! This file holds the state, the input dispatch and the opening of connections; `inbound`
//! reads what arrives on a connection (HELLO, dispatches, op 1/7/9/11) and writes the handshake,
//! `lifecycle` handles deadlines, closes, reconnects and shutdown.

mod inbound;
mod lifecycle;

use super::heartbeat::Heartbeat;
use super::session::Session;
use super::transport::Decompressor;
use super::{
    DiscordConfig, IdentifyLimiter, IdentifyQueue, IdentifyWait, ResumeState, SOURCE, SendLimiter,
    gateway_bot, wire,
};
use crate::core::{Core, answered_by_core};
use crate::{
    Backoff, ConnId, HttpResponse, IdCounter, Input, Level, Machine, Millis, Misuse, Now, Output,
    ReqId, Status, TimerKind, redact,
};

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

/// The deadlines that wait for the server to say something: they stand still while the driver
/// does not read (`Input::ReadingPaused`), since the answer may be waiting unread.
const AWAIT_SERVER: &[Timer] = &[
    Timer::CloseTimeout,
    Timer::HelloTimeout,
    Timer::ReadyTimeout,
];

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
    fn name(self) -> &'static str {
        match self {
            Timer::CloseTimeout => "close_timeout",
            Timer::HelloTimeout => "hello_timeout",
            Timer::ReadyTimeout => "ready_timeout",
            Timer::Heartbeat => "heartbeat",
            Timer::SendRetry => "send_retry",
            Timer::IdentifyPermit => "identify_permit",
            Timer::Reconnect => "reconnect",
        }
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
    /// The zlib-stream or zstd-stream context when compression is on.
    decompress: Option<Decompressor>,
}

/// Where the shard is between connections; before `Start` and once finished it is `Waiting`
/// with nothing armed (the core's lifecycle tells those apart).
#[derive(Debug)]
enum Phase {
    /// Waiting for `GET /gateway/bot`.
    Requesting { req: ReqId },
    /// No connection; the reconnect timer is armed.
    Waiting,
    /// A connection exists.
    Live(Box<Conn>),
}

/// Why a frame was not sent.
enum SendError {
    TooLarge,
    RateLimited(Millis),
}

/// One Discord Gateway shard: one session, one connection at a time. See the [module
/// docs](crate::discord) for the behaviour.
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
/// let out = step(&mut shard, now, Input::Frame { conn: ConnId(1), frame: Frame::Text(hello.into()), arrived: None });
/// assert!(out.iter().any(|o| matches!(o, Output::Send { frame: Frame::Text(text), .. } if text.contains(r#""op":2"#))));
/// assert!(shard.poll_timeout().is_some()); // the first heartbeat
/// ```
#[derive(Debug)]
pub struct DiscordShard {
    config: DiscordConfig,
    rng: fastrand::Rng,
    /// Log messages start `"shard 1/4: "` when there are several shards, so their logs stay apart.
    core: Core<Timer>,
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
    /// With an external identify queue: an `IdentifyRequest` is out and not yet granted.
    identify_requested: bool,
    /// `meta.shard` of every event, `"ID/COUNT"`, when the bot has several shards.
    shard_label: Option<String>,
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
        let shard_label =
            (config.shard_count > 1).then(|| format!("{}/{}", config.shard_id, config.shard_count));
        let log_prefix = shard_label
            .as_ref()
            .map(|label| format!("shard {label}: "))
            .unwrap_or_default();
        Ok(DiscordShard {
            rng: fastrand::Rng::with_seed(seed),
            core: Core::new(SOURCE).with_log_prefix(log_prefix),
            backoff: Backoff::new(config.reconnect),
            conn_ids: IdCounter::default(),
            req_ids: IdCounter::default(),
            limiter: IdentifyLimiter::new(config.max_concurrency),
            session,
            gateway_url: config.gateway_url.clone(),
            phase: Phase::Waiting,
            heartbeat_rtt: None,
            identify_requested: false,
            shard_label,
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

    /// The shard's first timer to fire, for the gateway that merges its shards' deadlines.
    pub(crate) fn next_timer_at(&self) -> Option<(&'static str, Millis)> {
        self.core.next_timer_at()
    }

    /// Applies one input, taking IDENTIFY permits from `limiter`: the shard's own when it runs
    /// alone, the shared one under a [`DiscordGateway`].
    pub(crate) fn handle(
        &mut self,
        now: Now,
        input: Input,
        limiter: &mut IdentifyLimiter,
    ) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => {
                self.core.set_status(Status::Connecting, None);
                self.open_next(now, limiter);
            }
            Input::Timer => self.on_timer(now, limiter),
            Input::Opened { conn } => self.on_opened(now, conn),
            // Discord has no deadline that runs from a frame's arrival: `arrived` is not needed.
            Input::Frame { conn, frame, .. } => self.on_frame(now, conn, frame, limiter),
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
                    self.core.log(
                        now,
                        Level::Warn,
                        "gateway.bot.error",
                        format!("GET /gateway/bot failed: {error}"),
                    );
                    self.schedule_reconnect(now, format!("GET /gateway/bot failed: {error}"), 0);
                } else {
                    self.core.log(
                        now,
                        Level::Debug,
                        "http.stale",
                        format!("ignored the failure of an old request {}", req.0),
                    );
                }
            }
            Input::ReadingPaused => self.core.timers.pause(AWAIT_SERVER, now.mono),
            Input::ReadingResumed => self.on_reading_resumed(now),
            Input::Delivered { delivery } => return Err(Misuse::UnknownDelivery(delivery)),
            Input::Received { .. } => return Err(Misuse::NotServing),
            Input::IdentifyGranted { shard } => self.on_identify_granted(now, shard)?,
            Input::IdentifyWaiting { shard, wait } => self.on_identify_waiting(now, shard, wait)?,
            Input::Shutdown { keep_session } => self.on_shutdown(now, keep_session),
        }
        Ok(())
    }

    // ---- output helpers ----

    fn stale(&mut self, now: Now, what: &str, conn: ConnId) {
        self.core.log(
            now,
            Level::Debug,
            "ws.stale",
            format!("ignored {what} for old connection {}", conn.0),
        );
    }

    fn arm(&mut self, timer: Timer, now: Now, after_ms: u64) {
        self.core.timers.arm(timer, now.mono + after_ms);
    }

    fn arm_at(&mut self, timer: Timer, now: Now, at: Millis) {
        self.core.timers.arm(timer, at.max(now.mono));
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
        // An external queue paces by its grants, after HELLO.
        if !self.session.is_resumable()
            && self.config.identify_queue == IdentifyQueue::InProcess
            && let Some(wait) = limiter.wait(self.config.shard_id, now.mono)
        {
            let ms = wait.until() - now.mono;
            match wait {
                IdentifyWait::Budget { .. } => self.core.log_with(now, Level::Warn, "identify.budget", format!(
                        "the daily session-start budget is spent: waiting {ms} ms for Discord to refill it before identifying"
                    ), serde_json::json!({ "waitMs": ms })),
                _ => self.core.log_with(now, Level::Info, "identify.wait", format!(
                        "waiting {ms} ms for identify bucket {} before connecting",
                        limiter.bucket(self.config.shard_id)
                    ), serde_json::json!({ "waitMs": ms })),
            }
            self.phase = Phase::Waiting;
            self.arm_at(Timer::Reconnect, now, wait.until());
            return;
        }
        self.connect(now, &gateway_url);
    }

    fn request_gateway(&mut self, now: Now) {
        let req = ReqId(self.req_ids.next());
        let (api_base, token) = (&self.config.api_base, self.config.bare_token());
        gateway_bot::send(&mut self.core, now, req, api_base, token);
        self.phase = Phase::Requesting { req };
    }

    fn on_response(
        &mut self,
        now: Now,
        req: ReqId,
        response: HttpResponse,
        limiter: &mut IdentifyLimiter,
    ) {
        let awaited = matches!(self.phase, Phase::Requesting { req: current } if current == req);
        let compress = self.config.transport();
        let read = gateway_bot::read(
            &mut self.core,
            now,
            req,
            &response,
            awaited,
            compress,
            limiter,
        );
        let Some(outcome) = read else {
            return;
        };
        match outcome {
            gateway_bot::Outcome::Ready(body) => {
                self.gateway_url = Some(body.url);
                self.open_next(now, limiter);
            }
            gateway_bot::Outcome::Retry { why, after_ms } => {
                self.core
                    .log(now, Level::Warn, "gateway.bot.error", why.clone());
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
            match wire::connect_url(&resume_url, self.config.transport()) {
                Ok(url) => target = Some((url, true)),
                Err(error) => {
                    self.core.log(
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
            None => match wire::connect_url(gateway_url, self.config.transport()) {
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
        let decompress = self
            .config
            .transport()
            .map(|kind| Decompressor::new(kind, self.config.max_message_bytes));
        self.phase = Phase::Live(Box::new(Conn {
            id,
            via_resume_url,
            stage: Stage::Connecting,
            heartbeat: None,
            limiter: SendLimiter::new(),
            reply_pending: false,
            decompress,
        }));
        self.arm(Timer::HelloTimeout, now, self.config.hello_timeout_ms);
        self.core.log(
            now,
            Level::Info,
            "connect.start",
            format!("connecting to {}", redact::url(&url)),
        );
        self.core.emit(Output::Connect { conn: id, url });
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
            self.core.log(
                now,
                Level::Warn,
                "connect.failed",
                format!(
                    "could not connect to the resume URL ({error}): resuming through the gateway URL next"
                ),
            );
        } else {
            self.core.log(
                now,
                Level::Warn,
                "connect.failed",
                format!("could not connect: {error}"),
            );
        }
        self.schedule_reconnect(now, format!("connect failed: {error}"), 0);
    }
}

impl Machine for DiscordShard {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let mut limiter = std::mem::take(&mut self.limiter);
        let result = self.handle(now, input, &mut limiter);
        self.limiter = limiter;
        result
    }

    answered_by_core!();

    fn checkpoint(&self) -> Option<crate::Checkpoint> {
        self.session().map(crate::Checkpoint::DiscordSession)
    }
}
