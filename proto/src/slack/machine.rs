//! The Socket Mode machine itself (the `slack` feature); the module docs are in `slack/mod.rs`.

use super::acks::PendingAcks;
use super::api::{ApiOutcome, Identity};
use super::connections::{Due, Phase, Pool};
use super::*;
use crate::core::{Core, answered_by_core};
use crate::{
    Backoff, ConnId, Frame, HttpResponse, IdCounter, Input, Level, Machine, Millis, Misuse, Now,
    Output, ReqId, Secret, Status, TimerKind,
};
use serde_json::json;
use std::ops::RangeInclusive;

/// After `too_many_websockets`, wait a random time in this range (ms) before opening another
/// connection: long enough for ghost registrations to matter less, jittered so several
/// processes of one app do not retry in step.
pub const TOO_MANY_WEBSOCKETS_WAIT_MS: RangeInclusive<u64> = 60_000..=90_000;

/// Close code for every close this machine starts: the ordinary "done with it".
pub(super) const CLOSE_NORMAL: u16 = 1000;

/// The machine's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlackTimer {
    /// Backoff, rate-limit or `too_many_websockets` wait before the next Web API call.
    Retry,
    /// The earliest hello timeout, ping or death among the connections.
    Connections,
}

impl TimerKind for SlackTimer {
    const ALL: &'static [SlackTimer] = &[SlackTimer::Retry, SlackTimer::Connections];
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            SlackTimer::Retry => "retry",
            SlackTimer::Connections => "connections",
        }
    }
}

/// The Slack Socket Mode machine. See the [module docs](crate::slack) for the behaviour.
///
/// ```
/// use openflume_proto::slack::{SlackConfig, SlackMachine};
/// use openflume_proto::{Input, Machine, Millis, Now, Output, Status, UnixMillis};
///
/// let mut slack = SlackMachine::new(SlackConfig::new("xapp-1-A1-1-secret"), 7).unwrap();
/// let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
/// slack.handle_input(now, Input::Start).unwrap();
/// let outputs: Vec<Output> = std::iter::from_fn(|| slack.poll_output()).collect();
/// assert!(matches!(&outputs[0], Output::Status(change) if change.to == Status::Connecting));
/// let Output::Request { request, .. } = &outputs[1] else { panic!() };
/// assert_eq!(request.url, "https://slack.com/api/apps.connections.open");
/// ```
#[derive(Debug)]
pub struct SlackMachine {
    pub(super) config: SlackConfig,
    pub(super) rng: fastrand::Rng,
    pub(super) core: Core<SlackTimer>,
    pub(super) backoff: Backoff,
    pub(super) req_ids: IdCounter,
    pub(super) conn_ids: IdCounter,
    /// The `auth.test` call in flight.
    pub(super) auth_request: Option<ReqId>,
    /// Set once `auth.test` accepted the bot token; connections open only then.
    pub(super) identity: Option<Identity>,
    pub(super) pool: Pool,
    pub(super) acks: PendingAcks,
    pub(super) seen: dedup::Seen,
}

impl SlackMachine {
    /// A machine for `config`, with all randomness drawn from `seed`.
    ///
    /// ```
    /// use openflume_proto::slack::{SlackConfig, SlackMachine};
    /// use openflume_proto::Misuse;
    /// let bad = SlackConfig { connections: 11, ..SlackConfig::new("xapp-1") };
    /// assert!(matches!(SlackMachine::new(bad, 0), Err(Misuse::Config(_))));
    /// ```
    pub fn new(config: SlackConfig, seed: u64) -> Result<SlackMachine, Misuse> {
        config.validate().map_err(Misuse::Config)?;
        Ok(SlackMachine {
            rng: fastrand::Rng::with_seed(seed),
            core: Core::new(SOURCE),
            backoff: Backoff::new(config.reconnect),
            req_ids: IdCounter::default(),
            conn_ids: IdCounter::default(),
            auth_request: None,
            identity: None,
            pool: Pool::new(
                usize::from(config.connections),
                config.ping_interval_ms,
                config.hello_timeout_ms,
            ),
            acks: PendingAcks::default(),
            seen: dedup::Seen::default(),
            config,
        })
    }

    // ----- outputs -------------------------------------------------------------------------

    /// Connected while some connection receives; otherwise reconnecting, with the last cause, once
    /// it had been connected or an attempt failed. A failed first attempt moves `connecting` to
    /// `reconnecting` too (as Discord and GitHub do), so the status names the cause as it happens
    /// instead of saying `connecting` until the start times out.
    pub(super) fn update_status(&mut self, reason: impl FnOnce() -> String) {
        if self.pool.is_receiving() {
            self.core.set_status(Status::Connected, None);
        } else if matches!(
            self.core.status(),
            Status::Connected | Status::Connecting | Status::Reconnecting
        ) {
            self.core.set_status(Status::Reconnecting, Some(reason()));
        }
    }

    /// Acknowledges `envelope_id` on `conn`, or says why it cannot: no frame may follow a close.
    pub(super) fn send_ack(&mut self, now: Now, conn: ConnId, envelope_id: &str) {
        if self.pool.phase(conn).is_some_and(Phase::can_send) {
            return self.core.emit(Output::Send {
                conn,
                frame: Frame::Text(wire::ack(envelope_id)),
            });
        }
        self.core.log_with(
            now,
            Level::Warn,
            "ack.orphaned",
            format!(
                "connection {} is closed or closing: envelope {envelope_id} cannot be acknowledged; Slack will \
                 redeliver it and the duplicate will be acknowledged without a second event",
                conn.0
            ),
            json!({"conn": conn, "envelope_id": envelope_id}),
        );
    }

    /// Closes `conn` (unless closing already); it stays known until the transport reports it closed.
    pub(super) fn close(&mut self, now: Now, conn: ConnId, reason: String) {
        if self.pool.closing(conn, now.mono) {
            self.core.emit(Output::Close {
                conn,
                code: CLOSE_NORMAL,
                reason,
            });
        }
    }

    pub(super) fn finish(&mut self, status: Status, reason: Option<String>, close_reason: &str) {
        for conn in self.pool.drain() {
            self.core.emit(Output::Close {
                conn,
                code: CLOSE_NORMAL,
                reason: close_reason.to_owned(),
            });
        }
        self.auth_request = None;
        self.core.finish(status, reason);
    }

    pub(super) fn fail(&mut self, reason: String) {
        self.finish(Status::Failed, Some(reason), "source failed");
    }

    // ----- Web API calls and retries -------------------------------------------------------

    pub(super) fn send_auth_test(&mut self) {
        let Some(bot_token) = self.config.bot_token.as_ref().map(Secret::expose) else {
            return;
        };
        let request = api::auth_test(&self.config, bot_token);
        let req = ReqId(self.req_ids.next());
        self.auth_request = Some(req);
        self.core.emit(Output::Request { req, request });
    }

    /// True until `auth.test` accepted the bot token, when there is one to check.
    pub(super) fn authenticating(&self) -> bool {
        self.config.bot_token.is_some() && self.identity.is_none()
    }

    /// Starts URL requests until the pool is at its target, unless a wait is running.
    pub(super) fn reconcile(&mut self) {
        if self.core.is_finished()
            || self.authenticating()
            || self.core.timers.is_armed(SlackTimer::Retry)
        {
            return;
        }
        for _ in 0..self.pool.deficit() {
            let req = ReqId(self.req_ids.next());
            self.pool.add_request(req);
            let request = api::connections_open(&self.config);
            self.core.emit(Output::Request { req, request });
        }
    }

    /// Holds every Web API call until `at` (a later wait already running wins).
    pub(super) fn wait_until(&mut self, at: Millis) {
        let at = self
            .core
            .timers
            .get(SlackTimer::Retry)
            .map_or(at, |armed| armed.max(at));
        self.core.timers.arm(SlackTimer::Retry, at);
    }

    /// One more failed attempt: wait per the backoff policy, or fail once it is spent.
    pub(super) fn failed_attempt(&mut self, now: Now, cause: String) {
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay_ms) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "reconnect.scheduled",
                    format!("{cause}; retrying in {delay_ms} ms"),
                    json!({"attempt": self.backoff.attempts(), "delayMs": delay_ms, "cause": cause}),
                );
                self.wait_until(now.mono + delay_ms);
                self.update_status(|| cause);
            }
            None => {
                let retries = self.backoff.attempts();
                self.fail(format!("gave up after {retries} retries: {cause}"));
            }
        }
    }

    pub(super) fn rate_limited(&mut self, now: Now, method: &str, wait_ms: u64) {
        self.core.log_with(
            now,
            Level::Warn,
            "api.rate_limited",
            format!("{method} is rate limited; calling again in {wait_ms} ms"),
            json!({"method": method, "waitMs": wait_ms}),
        );
        self.wait_until(now.mono + wait_ms);
    }

    pub(super) fn on_response(&mut self, now: Now, req: ReqId, response: HttpResponse) {
        if self.auth_request == Some(req) {
            self.auth_request = None;
            match api::classify_auth_test(&response) {
                ApiOutcome::Ok(identity) => self.authenticated(now, identity),
                ApiOutcome::Fatal { code } => self.fail(format!(
                    "auth.test: {code} ({}): check the bot token",
                    api::explain(&code)
                )),
                ApiOutcome::RateLimited { wait_ms } => self.rate_limited(now, "auth.test", wait_ms),
                ApiOutcome::Retryable { cause } => {
                    self.failed_attempt(now, format!("auth.test failed: {cause}"))
                }
            }
        } else if self.pool.take_request(req) {
            match api::classify_connections_open(&response) {
                ApiOutcome::Ok(url) => self.open_connection(now, url),
                ApiOutcome::Fatal { code } => self.fail(format!(
                    "apps.connections.open: {code} ({}): check the app-level token and its connections:write scope",
                    api::explain(&code)
                )),
                ApiOutcome::RateLimited { wait_ms } => {
                    self.rate_limited(now, "apps.connections.open", wait_ms)
                }
                ApiOutcome::Retryable { cause } => {
                    self.failed_attempt(now, format!("apps.connections.open failed: {cause}"))
                }
            }
        } else {
            self.stale_request(now, req);
        }
    }

    pub(super) fn on_request_failed(&mut self, now: Now, req: ReqId, error: &str) {
        let error = scrub(error);
        if self.auth_request == Some(req) {
            self.auth_request = None;
            self.failed_attempt(now, format!("auth.test failed: {error}"));
        } else if self.pool.take_request(req) {
            self.failed_attempt(now, format!("apps.connections.open failed: {error}"));
        } else {
            self.stale_request(now, req);
        }
    }

    pub(super) fn stale_request(&mut self, now: Now, req: ReqId) {
        self.core.log_with(
            now,
            Level::Debug,
            "http.stale",
            format!(
                "ignored the outcome of request {}, which is no longer awaited",
                req.0
            ),
            json!({"req": req}),
        );
    }

    pub(super) fn authenticated(&mut self, now: Now, identity: Identity) {
        let facts: Vec<String> = [
            ("bot user", &identity.bot_user_id),
            ("team", &identity.team_id),
            ("app", &identity.app_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some(format!("{name} {}", value.as_deref()?)))
        .collect();
        self.backoff.reset();
        self.core.log_with(
            now,
            Level::Info,
            "auth.ok",
            format!("bot token accepted: {}", facts.join(", ")),
            json!({
                "bot_user_id": identity.bot_user_id,
                "team_id": identity.team_id,
                "bot_id": identity.bot_id,
                "app_id": identity.app_id,
            }),
        );
        self.identity = Some(identity);
        self.reconcile();
    }

    // ----- connections ---------------------------------------------------------------------

    pub(super) fn open_connection(&mut self, now: Now, url: String) {
        let conn = ConnId(self.conn_ids.next());
        self.pool.add_connecting(conn, now.mono);
        self.core.log_with(
            now,
            Level::Debug,
            "ws.connect",
            format!("opening connection {}", conn.0),
            json!({"conn": conn, "url": crate::redact::url(&url)}),
        );
        self.core.emit(Output::Connect { conn, url });
    }

    pub(super) fn stale_connection(&mut self, now: Now, conn: ConnId, what: &str) {
        self.core.log_with(
            now,
            Level::Debug,
            "ws.stale",
            format!(
                "ignored {what} on connection {}, which this source does not hold (closed already or never opened)",
                conn.0
            ),
            json!({"conn": conn}),
        );
    }

    pub(super) fn on_opened(&mut self, now: Now, conn: ConnId) {
        if self.pool.phase(conn).is_none() {
            self.stale_connection(now, conn, "an open");
        } else if !self.pool.on_opened(conn, now.mono) {
            self.core.log_with(
                now,
                Level::Debug,
                "ws.open.repeat",
                format!(
                    "ignored an open of connection {}, which is not connecting",
                    conn.0
                ),
                json!({"conn": conn}),
            );
        }
    }

    pub(super) fn on_closed(&mut self, now: Now, conn: ConnId, what: String) {
        let Some(phase) = self.pool.remove(conn) else {
            return self.stale_connection(now, conn, "a close");
        };
        match phase {
            Phase::Draining | Phase::Stale => {
                self.core.log_with(
                    now,
                    Level::Info,
                    "ws.closed",
                    format!("retiring connection {} closed ({what})", conn.0),
                    json!({"conn": conn}),
                );
                self.update_status(|| {
                    format!(
                        "connection {} closed before its replacement was ready",
                        conn.0
                    )
                });
            }
            Phase::Replaced => self.core.log_with(
                now,
                Level::Info,
                "ws.closed",
                format!("replaced connection {} closed ({what})", conn.0),
                json!({"conn": conn}),
            ),
            Phase::Closing => self.core.log_with(
                now,
                Level::Debug,
                "ws.closed",
                format!("connection {} closed ({what})", conn.0),
                json!({"conn": conn}),
            ),
            Phase::Live => {
                self.failed_attempt(now, format!("connection {} closed ({what})", conn.0));
            }
            Phase::Connecting | Phase::AwaitingHello => {
                self.failed_attempt(
                    now,
                    format!("connection {} closed before hello ({what})", conn.0),
                );
            }
        }
    }

    pub(super) fn on_connect_failed(&mut self, now: Now, conn: ConnId, error: &str) {
        let error = scrub(error);
        match self.pool.remove(conn) {
            None => return self.stale_connection(now, conn, "a connect failure"),
            Some(Phase::Closing) => {
                return self.core.log_with(
                    now,
                    Level::Debug,
                    "ws.closed",
                    format!("connection {} closed before it opened ({error})", conn.0),
                    json!({"conn": conn}),
                );
            }
            Some(_) => {}
        }
        self.failed_attempt(
            now,
            format!("connection {} failed to open: {error}", conn.0),
        );
    }

    pub(super) fn on_timer(&mut self, now: Now) {
        for kind in self.core.timers.take_expired(now.mono) {
            if kind == SlackTimer::Retry {
                if self.authenticating() {
                    if self.auth_request.is_none() {
                        self.send_auth_test();
                    }
                } else {
                    self.reconcile();
                }
            }
        }
        for (conn, due) in self.pool.due(now.mono) {
            match due {
                Due::Ping(payload) => self.core.emit(Output::Send {
                    conn,
                    frame: Frame::Ping(payload),
                }),
                Due::HelloTimeout => {
                    self.close(now, conn, "no hello".to_owned());
                    let timeout = self.config.hello_timeout_ms;
                    self.failed_attempt(
                        now,
                        format!("connection {} sent no hello within {timeout} ms", conn.0),
                    );
                }
                Due::DrainTimeout => {
                    self.core.log_with(
                        now,
                        Level::Info,
                        "ws.drain.timeout",
                        format!(
                            "Slack did not close replaced connection {} within {DRAIN_TIMEOUT_MS} ms; closing it",
                            conn.0
                        ),
                        json!({"conn": conn}),
                    );
                    self.close(now, conn, "replaced".to_owned());
                }
                Due::CloseTimeout => {
                    self.pool.remove(conn);
                    self.core.log_with(
                        now,
                        Level::Debug,
                        "ws.close.timeout",
                        format!(
                            "no close reported for connection {} within {DRAIN_TIMEOUT_MS} ms of closing it; forgetting it",
                            conn.0
                        ),
                        json!({"conn": conn}),
                    );
                }
                Due::Dead { silent_ms } => self.on_dead(now, conn, silent_ms),
            }
        }
    }

    pub(super) fn on_dead(&mut self, now: Now, conn: ConnId, silent_ms: u64) {
        let silence = format!(
            "no frame or pong on connection {} for {silent_ms} ms",
            conn.0
        );
        match self.pool.phase(conn) {
            Some(Phase::Live) => {
                self.pool.retire(conn, Phase::Stale);
                self.core.log_with(
                    now,
                    Level::Warn,
                    "liveness.stale",
                    format!("{silence}; opening a replacement, then closing it"),
                    json!({"conn": conn, "silentMs": silent_ms}),
                );
                self.update_status(|| silence);
                self.reconcile();
            }
            Some(Phase::Draining) => {
                self.pool.retire(conn, Phase::Stale);
                self.core.log_with(
                    now,
                    Level::Warn,
                    "liveness.stale",
                    format!("{silence}; its replacement is already under way"),
                    json!({"conn": conn, "silentMs": silent_ms}),
                );
                self.update_status(|| silence);
            }
            Some(Phase::Connecting | Phase::AwaitingHello) => {
                self.close(now, conn, "silent".to_owned());
                self.failed_attempt(now, format!("{silence} before hello"));
            }
            Some(Phase::Stale | Phase::Replaced | Phase::Closing) | None => {}
        }
    }

    pub(super) fn start(&mut self) {
        self.core.set_status(Status::Connecting, None);
        if self.authenticating() {
            self.send_auth_test();
        } else {
            self.reconcile();
        }
    }
}

/// Text from the transport (close reasons, error messages) with credential query values hidden,
/// in case it quotes the `wss://…?ticket=…` URL.
pub(super) fn scrub(text: &str) -> String {
    text.split(' ')
        .map(crate::redact::url)
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_close(code: Option<u16>, reason: &str) -> String {
    let reason = scrub(reason);
    match (code, reason.is_empty()) {
        (Some(code), true) => format!("code {code}"),
        (Some(code), false) => format!("code {code}: {reason}"),
        (None, true) => "no close frame".to_owned(),
        (None, false) => format!("no close frame: {reason}"),
    }
}

impl Machine for SlackMachine {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => {
                if let Some(cursor) = self.config.resume.take() {
                    self.seen.restore(&cursor, now);
                }
                self.start();
            }
            Input::Timer => self.on_timer(now),
            Input::Opened { conn } => self.on_opened(now, conn),
            Input::Frame {
                conn,
                frame,
                arrived,
            } => self.on_frame(now, conn, frame, now.arrival(arrived)),
            Input::Closed { conn, code, reason } => {
                self.on_closed(now, conn, describe_close(code, &reason))
            }
            Input::ConnectFailed { conn, error } => self.on_connect_failed(now, conn, &error),
            Input::Response { req, response } => self.on_response(now, req, response),
            Input::RequestFailed { req, error } => self.on_request_failed(now, req, &error),
            Input::Delivered { delivery } => self.on_delivered(now, delivery)?,
            Input::ReadingPaused => self.pool.pause(now.mono),
            Input::ReadingResumed => self.pool.resume(now.mono),
            Input::Shutdown { .. } => self.finish(Status::Disconnected, None, "shutdown"),
            Input::Received { .. } => return Err(Misuse::NotServing),
            Input::IdentifyGranted { shard } => return Err(Misuse::NoIdentifyRequest(shard)),
            #[cfg(feature = "discord")]
            Input::IdentifyWaiting { shard, .. } => return Err(Misuse::NoIdentifyRequest(shard)),
        }
        match self.pool.next_deadline() {
            Some(at) if !self.core.is_finished() => self
                .core
                .timers
                .arm(SlackTimer::Connections, at.max(now.mono)),
            _ => self.core.timers.cancel(SlackTimer::Connections),
        }
        Ok(())
    }

    answered_by_core!();
}
