//! # Signed webhook delivery, sans-IO: one forwarding target's outbox
//!
//! `openflume serve --forward URL` POSTs every matching event of the durable log to `URL`,
//! signed. One [`Outbox`] per target decides everything: which event goes next, when, how it is
//! signed, what a response means, when to retry, when to give up, what to persist. The driver
//! reads the log when asked, sends the requests, stores the state and keeps the clock.
//!
//! ```text
//! → Start { state (persisted, or none for a new target), committed }
//! ← ReadLog { after, limit }                      the events after the cursor
//! → Read { items, up_to }
//! ← Send { req, event_id, request }               one in flight, in event_id order
//! → Response { req, status } | RequestFailed | Timer (the request's deadline)
//! ← Persist(state), Log(…)                        after every outcome, before the next send
//! ```
//!
//! **Outcomes.** A 2xx means delivered: the cursor moves past the event and the next one goes at
//! once. 410 Gone disables the target for good (persisted; an error log says so): the receiver
//! asked for nothing more. Anything else (another status, a connection error, no response within
//! [`OutboxConfig::request_timeout_ms`]) is retried with exponential backoff and jitter
//! (`retry.rs`), the same event again, so order is kept. A delivery still failing
//! [`OutboxConfig::max_age_ms`] after its **first attempt** is given up, with an error log naming
//! the target and the event, and the next event goes.
//!
//! **Who holds an event, and when it may be forgotten.** The log holds every event; the outbox
//! holds only a cursor (`delivered_through`) and the head event's attempts ([`TargetState`]).
//! The cursor moves past an event only after the receiver answered 2xx (or the delivery was
//! given up), and the driver persists each state before it performs the next output. A crash:
//! - before the request or while it is in flight: the event is still after the persisted
//!   cursor; it is sent again after the restart (its attempt count may miss that one attempt);
//! - after the 2xx, before the state is stored: the event is sent again: **at least once**, never
//!   lost; receivers deduplicate by `webhook-id`, the event's id in the log;
//! - during a backoff: the persisted `next_attempt_at` is honoured after the restart;
//! - between a give-up's (or a 410's) error log and its state: the log comes first, so the
//!   event is tried once more after the restart; nothing is dropped without a log.
//!
//! A new target starts after the last committed event (it forwards what comes from now on) and
//! persists that starting point first, so a crash before its first delivery cannot move it.
//!
//! **Positions.** An outbox over the SQLite log counts in its integer ids ([`Outbox::new`]). One
//! over a Redis Stream (`serve --sink redis://…`) counts in the stream's entry ids
//! ([`Outbox::counting`] with [`StreamId`](crate::hub::StreamId)): the same rules, since they
//! only compare positions; `webhook-id` is the position as text (`42`, or `1764100000000-0`),
//! and the persisted state carries stream ids as strings. The bound is the hub's
//! [`HubPosition`].
//!
//! **The drain rule**, as for every machine here: one input, then [`Outbox::poll_output`] until
//! `None` (performing each output in order: a `Persist` is stored before the `Send` after it),
//! then wait for the next input or [`Outbox::poll_timeout`].
//!
//! ```
//! use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput, OutboxOutput, Pending};
//! use openflume_proto::{Millis, Now, ReqId, UnixMillis};
//!
//! let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
//! let config = OutboxConfig::new("https://hooks.example/in", "s3cret");
//! let mut outbox = Outbox::new(config, 7).unwrap();
//! let mut drain = |outbox: &mut Outbox| std::iter::from_fn(|| outbox.poll_output()).collect::<Vec<_>>();
//!
//! // A new target starts after event 3, the last committed; then event 4 is committed.
//! outbox.handle_input(now, OutboxInput::Start { state: None, committed: 3 }).unwrap();
//! assert!(matches!(&drain(&mut outbox)[0], OutboxOutput::Persist(s) if s.delivered_through == 3));
//! outbox.handle_input(now, OutboxInput::Committed { last_id: 4 }).unwrap();
//! assert_eq!(drain(&mut outbox), [OutboxOutput::ReadLog { after: 3, limit: 64 }]);
//! let body = r#"{"event_id":4,"kind":"event","event":{}}"#.to_owned();
//! outbox.handle_input(now, OutboxInput::Read { items: vec![Pending { event_id: 4, body }], up_to: 4 }).unwrap();
//! let [OutboxOutput::Send { req, event_id: 4, request }] = &drain(&mut outbox)[..] else { panic!() };
//! assert!(request.headers.iter().any(|(name, _)| name == "webhook-signature"));
//! outbox.handle_input(now, OutboxInput::Response { req: *req, status: 204 }).unwrap();
//! assert!(matches!(&drain(&mut outbox)[0], OutboxOutput::Persist(s) if s.delivered_through == 4));
//! ```

mod retry;
mod signing;
mod state;
#[cfg(test)]
mod tests;

pub use signing::{
    SIGNATURE_HEADER, SigningKey, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, body_signature,
    standard_signature,
};
pub use state::TargetState;

use crate::hub::HubPosition;
use crate::{
    ConfigError, HttpRequest, IdCounter, Level, Log, Millis, Misuse, MonotonicGuard, Now, ReqId,
    Secret,
};
use retry::{AfterFailure, RetrySchedule};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// The `source` of the outbox's logs.
///
/// ```
/// assert_eq!(openflume_proto::outbox::SOURCE, "forward");
/// ```
pub const SOURCE: &str = "forward";

/// One target: where, with which secret, and how patiently.
///
/// `Debug` hides the secret; it serialises as given (fixtures use a constant test secret).
///
/// ```
/// use openflume_proto::outbox::OutboxConfig;
/// let config = OutboxConfig::new("https://hooks.example/in", "s3cret");
/// assert_eq!(config.max_age_ms, 24 * 3600 * 1000);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// The `http://` or `https://` URL deliveries are POSTed to.
    pub url: String,
    /// The signing secret (see [`SigningKey::from_secret`] for the `whsec_` form).
    pub secret: Secret,
    /// A delivery still failing this long after its first attempt is given up. Default 24 h.
    pub max_age_ms: u64,
    /// The first retry's delay bound. Default 1 s.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts. Default 5 min.
    pub retry_max_ms: u64,
    /// No response this long after the request went out is a failed attempt. Default 30 s.
    pub request_timeout_ms: u64,
    /// Events asked of the log at once. Default 64.
    pub page: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            url: String::new(),
            secret: Secret::default(),
            max_age_ms: 24 * 3600 * 1000,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            request_timeout_ms: 30_000,
            page: 64,
        }
    }
}

impl OutboxConfig {
    /// Defaults, for `url` signed with `secret`.
    ///
    /// ```
    /// use openflume_proto::outbox::OutboxConfig;
    /// let config = OutboxConfig { max_age_ms: 60_000, ..OutboxConfig::new("http://127.0.0.1:9000/", "k") };
    /// assert_eq!(config.page, 64);
    /// ```
    pub fn new(url: impl Into<String>, secret: impl Into<Secret>) -> OutboxConfig {
        OutboxConfig {
            url: url.into(),
            secret: secret.into(),
            ..OutboxConfig::default()
        }
    }

    /// The target's name in logs: its URL with credential query parameters hidden. The secret
    /// is never part of it.
    ///
    /// ```
    /// use openflume_proto::outbox::OutboxConfig;
    /// let config = OutboxConfig::new("https://hooks.example/in?token=abc", "k");
    /// assert_eq!(config.target_name(), "https://hooks.example/in?token=[redacted]");
    /// ```
    pub fn target_name(&self) -> String {
        crate::redact::url(&self.url).into_owned()
    }

    fn check(&self) -> Result<SigningKey, ConfigError> {
        let url = crate::url::Url::parse(&self.url).map_err(|error| ConfigError::Url {
            field: "url",
            reason: error.to_string(),
        })?;
        if !matches!(url.scheme.as_str(), "http" | "https") {
            return Err(ConfigError::NotHttp {
                field: "url",
                schemes: "http or https",
            });
        }
        for (field, value) in [
            ("max_age_ms", self.max_age_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("page", self.page as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Minimum { field, min: 1 });
            }
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err(ConfigError::AtLeast {
                field: "retry_max_ms",
                min: self.retry_base_ms,
                value: self.retry_max_ms,
            });
        }
        SigningKey::from_secret(self.secret.expose())
    }
}

/// An event waiting to be forwarded, as read from the log, at position `P`.
///
/// ```
/// use openflume_proto::outbox::Pending;
/// let line = r#"{"event_id":9,"kind":"event","event":{}}"#;
/// let pending: Pending = Pending { event_id: 9, body: line.to_owned() };
/// assert_eq!(serde_json::to_value(&pending).unwrap()["event_id"], 9);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "P: HubPosition")]
pub struct Pending<P = u64> {
    /// Its id in the log.
    pub event_id: P,
    /// The request body, sent byte for byte: the line `openflume log tail` prints (the item as
    /// `listen` prints it, with a top-level `"event_id"` first).
    pub body: String,
}

/// What the driver tells an outbox.
///
/// ```
/// use openflume_proto::outbox::OutboxInput;
/// use openflume_proto::ReqId;
/// let input: OutboxInput = serde_json::from_str(r#"{"response":{"req":3,"status":500}}"#).unwrap();
/// assert_eq!(input, OutboxInput::Response { req: ReqId(3), status: 500 });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", bound = "P: HubPosition")]
#[non_exhaustive]
pub enum OutboxInput<P = u64> {
    /// Begin, with the state persisted for this target (`None` for a new one) and the log's
    /// last committed id.
    Start {
        /// The stored state.
        state: Option<TargetState<P>>,
        /// The last committed id.
        committed: P,
    },
    /// The log committed up to this id.
    Committed {
        /// The last committed id.
        last_id: P,
    },
    /// The answer to [`OutboxOutput::ReadLog`]: the matching events, ids ascending, and the
    /// highest id the read covered (beyond the last event when the rest did not match).
    Read {
        /// Events to forward.
        items: Vec<Pending<P>>,
        /// Every id up to this one was looked at.
        up_to: P,
    },
    /// The target answered `req` with this status.
    Response {
        /// The request.
        req: ReqId,
        /// The HTTP status.
        status: u16,
    },
    /// `req` got no response: DNS, connect, TLS, a reset, a timeout in the driver.
    RequestFailed {
        /// The request.
        req: ReqId,
        /// Readable cause (never a header value).
        error: String,
    },
    /// A deadline from [`Outbox::poll_timeout`] passed (early or spurious calls are harmless).
    Timer,
}

/// What an outbox asks of the driver, in order.
///
/// ```
/// use openflume_proto::outbox::{OutboxOutput, TargetState};
/// let persist = OutboxOutput::Persist(TargetState::starting_after(2));
/// assert!(serde_json::to_string(&persist).unwrap().starts_with(r#"{"persist":{"delivered_through":2"#));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", bound = "P: HubPosition")]
#[non_exhaustive]
pub enum OutboxOutput<P = u64> {
    /// Read up to `limit` matching events with ids above `after` and answer with
    /// [`OutboxInput::Read`].
    ReadLog {
        /// Exclusive lower bound.
        after: P,
        /// Most events.
        limit: usize,
    },
    /// POST this delivery and answer with [`OutboxInput::Response`] or
    /// [`OutboxInput::RequestFailed`]. An earlier request still running (one the outbox timed
    /// out) can be dropped: its answer would be ignored.
    Send {
        /// Request id, fresh for each attempt.
        req: ReqId,
        /// The event delivered.
        event_id: P,
        /// The request, signed.
        request: HttpRequest,
    },
    /// Store this state for the target, durably, before performing the next output.
    Persist(TargetState<P>),
    /// A log line for the firehose.
    Log(Log),
}

/// Where the current head event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// Nothing scheduled: send the head as soon as there is one.
    Idle,
    /// Backing off until this instant.
    Waiting { until: Millis },
    /// A request is out.
    InFlight { req: ReqId, deadline: Millis },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    /// 410 Gone: sticky.
    Disabled,
}

/// One target's outbox, counting in positions `P` (the SQLite log's ids unless said otherwise,
/// see [Positions](self#positions)). See the [module docs](self) for the protocol and the
/// guarantees.
pub struct Outbox<P = u64> {
    config: OutboxConfig,
    key: SigningKey,
    target: String,
    retry: RetrySchedule,
    rng: fastrand::Rng,
    phase: Phase,
    state: TargetState<P>,
    /// Events read and not yet delivered, head first.
    queue: VecDeque<Pending<P>>,
    /// Every id up to this one has been read (queued or passed over).
    read_up_to: P,
    committed: P,
    reading: bool,
    attempt: Attempt,
    requests: IdCounter,
    clock: MonotonicGuard,
    out: VecDeque<OutboxOutput<P>>,
}

impl<P: HubPosition> fmt::Debug for Outbox<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("target", &self.target)
            .field("phase", &self.phase)
            .field("state", &self.state)
            .field("queued", &self.queue.len())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox for one target, counting in the SQLite log's integer ids; `seed` drives the
    /// retry jitter. Fails with [`Misuse::Config`] for a URL that is not http(s), an empty or
    /// malformed secret, or a zero limit.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// assert!(Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).is_ok());
    /// let refused = Outbox::new(OutboxConfig::new("ftp://hooks.example/in", "k"), 1).unwrap_err();
    /// assert_eq!(refused.to_string(), "invalid configuration: forward: url: unsupported scheme \"ftp\" (expected http, https, ws or wss)");
    /// assert!(Outbox::new(OutboxConfig::new("https://hooks.example/in", ""), 1).is_err());
    /// ```
    pub fn new(config: OutboxConfig, seed: u64) -> Result<Outbox, Misuse> {
        Outbox::counting(config, seed)
    }

    /// The forward queue depth: events read and not yet delivered, plus the committed ids not
    /// read yet. Exact once the outbox has read up to the end of the log; until then an upper
    /// bound, since unread ids count whether or not the target's filter will match them.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let mut outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// outbox.handle_input(now, OutboxInput::Start { state: None, committed: 10 }).unwrap();
    /// outbox.handle_input(now, OutboxInput::Committed { last_id: 13 }).unwrap();
    /// assert_eq!(outbox.queue_depth(), 3); // 11, 12 and 13, unread
    /// outbox.handle_input(now, OutboxInput::Read { items: vec![], up_to: 13 }).unwrap();
    /// assert_eq!(outbox.queue_depth(), 0); // none of them matched
    /// ```
    pub fn queue_depth(&self) -> u64 {
        let unread = self.committed.saturating_sub(self.read_up_to);
        unread.saturating_add(self.queue.len() as u64)
    }
}

impl<P: HubPosition> Outbox<P> {
    /// An outbox for one target counting in positions `P`: `u64` for the SQLite log (as
    /// [`new`](Outbox::new)), [`StreamId`](crate::hub::StreamId) for a Redis Stream, whose ids
    /// then make `webhook-id` (`1764100000000-0`). Fails as [`new`](Outbox::new) does.
    ///
    /// ```
    /// use openflume_proto::hub::StreamId;
    /// use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput, OutboxOutput, Pending};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
    /// let config = OutboxConfig::new("https://hooks.example/in", "s3cret");
    /// let mut outbox = Outbox::<StreamId>::counting(config, 7).unwrap();
    /// let id = |text: &str| text.parse::<StreamId>().unwrap();
    /// let start = OutboxInput::Start { state: None, committed: id("1764100000000-0") };
    /// outbox.handle_input(now, start).unwrap();
    /// outbox.handle_input(now, OutboxInput::Committed { last_id: id("1764100000005-1") }).unwrap();
    /// while outbox.poll_output().is_some() {}
    /// let body = r#"{"event_id":"1764100000005-1","kind":"event","event":{}}"#.to_owned();
    /// let items = vec![Pending { event_id: id("1764100000005-1"), body }];
    /// outbox.handle_input(now, OutboxInput::Read { items, up_to: id("1764100000005-1") }).unwrap();
    /// let Some(OutboxOutput::Send { request, .. }) = outbox.poll_output() else { panic!() };
    /// assert!(request.headers.contains(&("webhook-id".into(), "1764100000005-1".into())));
    /// ```
    pub fn counting(config: OutboxConfig, seed: u64) -> Result<Outbox<P>, Misuse> {
        let key = config
            .check()
            .map_err(|error| Misuse::Config(error.in_scope(SOURCE)))?;
        Ok(Outbox {
            target: config.target_name(),
            retry: RetrySchedule {
                base_ms: config.retry_base_ms,
                max_ms: config.retry_max_ms,
                max_age_ms: config.max_age_ms,
            },
            key,
            config,
            rng: fastrand::Rng::with_seed(seed),
            phase: Phase::NotStarted,
            state: TargetState::default(),
            queue: VecDeque::new(),
            read_up_to: P::default(),
            committed: P::default(),
            reading: false,
            attempt: Attempt::Idle,
            requests: IdCounter::default(),
            clock: MonotonicGuard::default(),
            out: VecDeque::new(),
        })
    }

    /// The next thing to do, until `None`.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// let mut outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// assert_eq!(outbox.poll_output(), None); // nothing before Start
    /// ```
    pub fn poll_output(&mut self) -> Option<OutboxOutput<P>> {
        self.out.pop_front()
    }

    /// When to feed [`OutboxInput::Timer`]: the request's deadline or the end of a backoff.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// let outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// assert_eq!(outbox.poll_timeout(), None);
    /// ```
    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.phase, self.attempt) {
            (Phase::Running, Attempt::Waiting { until }) => Some(until),
            (Phase::Running, Attempt::InFlight { deadline, .. }) => Some(deadline),
            _ => None,
        }
    }

    /// True once the target is disabled (it answered 410): no more output, ever.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// let outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// assert!(!outbox.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Disabled
    }

    /// The request the outbox waits for, if one is out. A driver drops a request that is no
    /// longer this one (timed out by the outbox).
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// let outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// assert_eq!(outbox.in_flight(), None);
    /// ```
    pub fn in_flight(&self) -> Option<ReqId> {
        match self.attempt {
            Attempt::InFlight { req, .. } => Some(req),
            _ => None,
        }
    }

    /// The target's state as last persisted or about to be.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig};
    /// let outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// assert_eq!(outbox.state().delivered_through, 0);
    /// ```
    pub fn state(&self) -> &TargetState<P> {
        &self.state
    }

    /// Events read and not yet delivered: the part of the queue depth any position can count.
    /// (A stream id is no count: a driver over a Redis Stream counts what is not read yet
    /// itself; over the SQLite log, [`queue_depth`](Outbox::queue_depth) adds it.)
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput, Pending};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let mut outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// outbox.handle_input(now, OutboxInput::Start { state: None, committed: 3 }).unwrap();
    /// outbox.handle_input(now, OutboxInput::Committed { last_id: 5 }).unwrap();
    /// let items = (4..=5).map(|event_id| Pending { event_id, body: "{}".into() }).collect();
    /// outbox.handle_input(now, OutboxInput::Read { items, up_to: 5 }).unwrap();
    /// assert_eq!(outbox.queued(), 2); // 4 in flight, 5 behind it
    /// ```
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Handles one input at `now`. `Err` only for misuse: input before `Start`, a second
    /// `Start`, or input after the target was disabled. What the target answers is never an
    /// error: it becomes retries, logs and state.
    ///
    /// ```
    /// use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput};
    /// use openflume_proto::{Millis, Misuse, Now, UnixMillis};
    /// let mut outbox = Outbox::new(OutboxConfig::new("https://hooks.example/in", "k"), 1).unwrap();
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// assert_eq!(outbox.handle_input(now, OutboxInput::Timer), Err(Misuse::NotStarted));
    /// ```
    pub fn handle_input(&mut self, now: Now, input: OutboxInput<P>) -> Result<(), Misuse> {
        let now = self.clock.observe(now);
        match (self.phase, input) {
            (Phase::NotStarted, OutboxInput::Start { state, committed }) => {
                self.start(now, state, committed);
            }
            (Phase::NotStarted, _) => return Err(Misuse::NotStarted),
            (Phase::Disabled, _) => return Err(Misuse::Finished),
            (Phase::Running, OutboxInput::Start { .. }) => return Err(Misuse::AlreadyStarted),
            (Phase::Running, OutboxInput::Committed { last_id }) => {
                self.committed = self.committed.max(last_id);
            }
            (Phase::Running, OutboxInput::Read { items, up_to }) => self.on_read(items, up_to),
            (Phase::Running, OutboxInput::Response { req, status }) => {
                if self.take_request(now, req) {
                    self.on_status(now, status);
                }
            }
            (Phase::Running, OutboxInput::RequestFailed { req, error }) => {
                if self.take_request(now, req) {
                    self.on_failure(now, error);
                }
            }
            (Phase::Running, OutboxInput::Timer) => self.on_timer(now),
        }
        self.advance(now);
        Ok(())
    }

    fn start(&mut self, now: Now, state: Option<TargetState<P>>, committed: P) {
        self.phase = Phase::Running;
        self.committed = committed;
        match state {
            Some(state) => {
                let message = match state.head {
                    Some(head) if !state.is_idle() => format!(
                        "forwarding to {} after event {}; event {head} pending after {} attempts",
                        self.target, state.delivered_through, state.attempts
                    ),
                    _ => format!(
                        "forwarding to {} after event {}",
                        self.target, state.delivered_through
                    ),
                };
                self.state = state;
                // Before the disabled return too: the queue depth a disabled target reports
                // counts from its cursor, not from the log's first id.
                self.read_up_to = self.state.delivered_through;
                if self.state.disabled {
                    self.phase = Phase::Disabled;
                    let message = format!(
                        "{} is disabled (it answered 410 Gone); events after {} wait in the log",
                        self.target, self.state.delivered_through
                    );
                    let detail = self.detail(self.state.head);
                    return self.log(now, Level::Error, "forward.disabled", message, detail);
                }
                let detail = self.detail(self.state.head);
                self.log(now, Level::Info, "forward.start", message, detail);
            }
            None => {
                // Stored before anything is sent, so a crash cannot move a new target's start.
                self.state = TargetState::starting_after(committed);
                self.out
                    .push_back(OutboxOutput::Persist(self.state.clone()));
                let message = format!(
                    "forwarding to {} (a new target) the events after {committed}",
                    self.target
                );
                let detail = self.detail(None);
                self.log(now, Level::Info, "forward.start", message, detail);
                self.read_up_to = self.state.delivered_through;
            }
        }
    }

    fn on_read(&mut self, items: Vec<Pending<P>>, up_to: P) {
        self.reading = false;
        for item in items {
            // A read overlapping what was read already changes nothing.
            if item.event_id > self.read_up_to {
                self.read_up_to = item.event_id;
                self.queue.push_back(item);
            }
        }
        self.read_up_to = self.read_up_to.max(up_to);
        self.committed = self.committed.max(self.read_up_to);
    }

    /// True when `req` is the request in flight (it is then no longer in flight).
    fn take_request(&mut self, now: Now, req: ReqId) -> bool {
        match self.attempt {
            Attempt::InFlight { req: current, .. } if current == req => {
                self.attempt = Attempt::Idle;
                true
            }
            _ => {
                let message = format!(
                    "{}: ignored the late answer to request {}",
                    self.target, req.0
                );
                let detail = self.detail(None);
                self.log(now, Level::Debug, "forward.stale", message, detail);
                false
            }
        }
    }

    fn on_status(&mut self, now: Now, status: u16) {
        match status {
            200..=299 => self.done(now, status),
            410 => self.disable(now),
            _ => self.on_failure(now, format!("HTTP {status}")),
        }
    }

    fn on_timer(&mut self, now: Now) {
        match self.attempt {
            Attempt::InFlight { deadline, .. } if deadline <= now.mono => {
                self.attempt = Attempt::Idle;
                let error = format!("no response within {} ms", self.config.request_timeout_ms);
                self.on_failure(now, error);
            }
            Attempt::Waiting { until } if until <= now.mono => self.attempt = Attempt::Idle,
            // Early or spurious: nothing is due.
            _ => {}
        }
    }

    /// The head was delivered (2xx): the cursor moves past it.
    fn done(&mut self, now: Now, status: u16) {
        let Some(head) = self.queue.pop_front() else {
            return;
        };
        let attempts = self.state.attempts;
        self.state.delivered_through = head.event_id;
        self.state.clear_attempts();
        self.out
            .push_back(OutboxOutput::Persist(self.state.clone()));
        let message = format!(
            "{}: delivered event {} (HTTP {status}, attempt {attempts})",
            self.target, head.event_id
        );
        let detail = self.detail(Some(head.event_id));
        self.log(now, Level::Debug, "forward.delivered", message, detail);
    }

    /// 410 Gone. The log goes first: a crash before the state is stored leaves a target that
    /// tries once more, never one disabled without a word.
    fn disable(&mut self, now: Now) {
        let head = self.state.head;
        let message = format!(
            "{} answered 410 Gone to event {}: the target is disabled, nothing more is sent to it",
            self.target,
            head.unwrap_or_default()
        );
        let detail = self.detail(head);
        self.log(now, Level::Error, "forward.disabled", message, detail);
        self.state.disabled = true;
        self.phase = Phase::Disabled;
        // The events read and dropped wait in the log again: counted as after a restart.
        self.queue.clear();
        self.read_up_to = self.state.delivered_through;
        self.out
            .push_back(OutboxOutput::Persist(self.state.clone()));
    }

    fn on_failure(&mut self, now: Now, error: String) {
        let Some(head) = self.queue.front().map(|p| p.event_id) else {
            return;
        };
        let first = self.state.first_attempt_at.unwrap_or(now.wall);
        let attempts = self.state.attempts;
        match self
            .retry
            .after_failure(attempts, first, now.wall, &mut self.rng)
        {
            AfterFailure::RetryAt(at) => {
                self.state.next_attempt_at = Some(at);
                self.out
                    .push_back(OutboxOutput::Persist(self.state.clone()));
                let wait_ms = at.0.saturating_sub(now.wall.0).max(0) as u64;
                self.attempt = Attempt::Waiting {
                    until: now.mono + wait_ms,
                };
                let message = format!(
                    "{}: event {head} failed (attempt {attempts}); retrying in {wait_ms} ms",
                    self.target
                );
                let mut detail = self.detail(Some(head));
                if let Some(detail) = detail.as_mut() {
                    detail["retryInMs"] = wait_ms.into();
                }
                self.log_error(now, Level::Warn, "forward.retry", message, detail, error);
            }
            AfterFailure::GiveUp => {
                // The log goes before the state: a crash between the two tries the event once
                // more rather than dropping it without a word.
                let message = format!(
                    "{}: gave up on event {head} after {attempts} attempts over {} ms",
                    self.target,
                    now.wall.0.saturating_sub(first.0)
                );
                let mut detail = self.detail(Some(head));
                if let Some(detail) = detail.as_mut() {
                    detail["attempts"] = attempts.into();
                }
                self.log_error(now, Level::Error, "forward.gave_up", message, detail, error);
                self.queue.pop_front();
                self.state.delivered_through = head;
                self.state.clear_attempts();
                self.out
                    .push_back(OutboxOutput::Persist(self.state.clone()));
            }
        }
    }

    /// Sends the head when nothing else is under way; reads the log when nothing is queued.
    fn advance(&mut self, now: Now) {
        if self.phase != Phase::Running || self.attempt != Attempt::Idle {
            return;
        }
        let Some(head) = self.queue.front() else {
            if !self.reading && self.committed > self.read_up_to {
                self.reading = true;
                self.out.push_back(OutboxOutput::ReadLog {
                    after: self.read_up_to,
                    limit: self.config.page,
                });
            }
            return;
        };
        let event_id = head.event_id;
        if self.state.head != Some(event_id) {
            // Another event than the one the stored attempts were about: it starts afresh.
            self.state.clear_attempts();
            self.state.head = Some(event_id);
        }
        if let Some(at) = self.state.next_attempt_at
            && at > now.wall
        {
            self.attempt = Attempt::Waiting {
                until: now.mono_at(at),
            };
            return;
        }
        self.send(now);
    }

    fn send(&mut self, now: Now) {
        let Some(head) = self.queue.front() else {
            return;
        };
        let req = ReqId(self.requests.next());
        self.state.attempts = self.state.attempts.saturating_add(1);
        self.state.first_attempt_at.get_or_insert(now.wall);
        self.state.next_attempt_at = None;
        let request = signing::request(
            &self.config.url,
            &self.key,
            head.event_id,
            now.wall.as_secs(),
            &head.body,
        );
        self.attempt = Attempt::InFlight {
            req,
            deadline: now.mono + self.config.request_timeout_ms,
        };
        self.out.push_back(OutboxOutput::Send {
            req,
            event_id: head.event_id,
            request,
        });
    }

    /// The logs' detail: the target, and the event (a number, or a stream id's string).
    fn detail(&self, event_id: Option<P>) -> Option<serde_json::Value> {
        let mut detail = serde_json::json!({ "target": self.target });
        if let Some(event_id) = event_id {
            detail["event_id"] = serde_json::to_value(event_id).unwrap_or_default();
        }
        Some(detail)
    }

    fn log(
        &mut self,
        now: Now,
        level: Level,
        action: &str,
        message: String,
        detail: Option<serde_json::Value>,
    ) {
        let mut log = Log::new(level, SOURCE, action, message, now.wall);
        log.detail = detail;
        self.out.push_back(OutboxOutput::Log(log));
    }

    fn log_error(
        &mut self,
        now: Now,
        level: Level,
        action: &str,
        message: String,
        detail: Option<serde_json::Value>,
        error: String,
    ) {
        let mut log = Log::new(level, SOURCE, action, message, now.wall).with_error(error);
        log.detail = detail;
        self.out.push_back(OutboxOutput::Log(log));
    }
}
