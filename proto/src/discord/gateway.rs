//! Several shards of one bot as one machine: one `GET /gateway/bot`, one IDENTIFY limiter shared
//! by every shard (so a process never identifies faster than Discord allows, however many shards
//! start at once), and connection ids that stay unique across shards.
//!
//! A gateway runs every shard of the count, or a range of them ([`ShardRange`]): a bot too big
//! for one process runs one process per range, each with `shard_count` the bot's total. The
//! processes then share one identify queue ([`IdentifyQueue::External`](super::IdentifyQueue)),
//! so that their IDENTIFYs together keep to the buckets.
//!
//! Each shard is a full [`DiscordShard`]; the gateway routes inputs to it by connection id,
//! lends it the shared limiter, and merges its outputs in shard order. A shard's events carry
//! `meta.shard` = `"ID/COUNT"` (when the count is above 1), so that cursors keep a session per
//! shard. Shard status changes become `shard.status` logs and an [`Output::PartStatus`] named
//! `"ID/COUNT"`; the gateway's own status is the aggregate (connected when every shard is). A
//! fatal close on any shard is fatal for the bot (bad token, intents, shard layout), so the
//! gateway then closes the other shards and fails.

use super::{
    DiscordConfig, DiscordShard, IdentifyLimiter, IdentifyQueue, IdentifyWait, ResumeState, SOURCE,
    gateway_bot,
};
use crate::core::{Core, answered_by_core};
use crate::cursor::DiscordShardsCursor;
use crate::{
    Backoff, ConfigError, ConnId, HttpResponse, IdCounter, Input, Level, Machine, Millis, Misuse,
    Now, Output, ReqId, Status, TimerKind,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Most shards one gateway runs; a larger count (from configuration or `/gateway/bot`) is refused.
pub const MAX_SHARDS: u32 = 4096;

/// Configuration of a [`DiscordGateway`].
///
/// ```
/// use openflume_proto::discord::DiscordGatewayConfig;
/// let config: DiscordGatewayConfig =
///     serde_json::from_str(r#"{"shard":{"token":"abc.def"},"shard_count":4}"#).unwrap();
/// assert_eq!(config.shard_count, Some(4));
/// assert!(!format!("{config:?}").contains("abc.def"));
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordGatewayConfig {
    /// Settings every shard shares (token, intents, compression, timeouts, …). Its `shard_id`,
    /// `shard_count` and `resume` are replaced per shard; with `gateway_url` set, `/gateway/bot`
    /// is skipped and `max_concurrency` paces IDENTIFYs.
    pub shard: DiscordConfig,
    /// Number of shards of the bot; default none = the count `/gateway/bot` recommends.
    pub shard_count: Option<u32>,
    /// The shards this gateway runs, of `shard_count`; default none = all of them.
    pub shard_range: Option<ShardRange>,
    /// Sessions kept from a previous run, by shard id; default none.
    pub resume: BTreeMap<u32, ResumeState>,
    /// The shard count the sessions in `resume` belong to; default none = `shard_count`. When
    /// the count the gateway runs differs (`/gateway/bot` recommends another after a
    /// resharding), the sessions are dropped, logged, and every shard identifies: a session
    /// resumed under another count would carry another shard's guilds.
    pub resume_shard_count: Option<u32>,
}

/// The shards a [`DiscordGateway`] runs: `first` to `last`, both included.
///
/// ```
/// use openflume_proto::discord::ShardRange;
/// let range = ShardRange { first: 0, last: 15 };
/// assert_eq!(range.len(), 16);
/// assert_eq!(range.to_string(), "0-15");
/// assert_eq!(ShardRange { first: 3, last: 3 }.to_string(), "3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    /// The first shard id.
    pub first: u32,
    /// The last shard id, included.
    pub last: u32,
}

impl ShardRange {
    /// How many shards: `last - first + 1` (0 when `last < first`).
    pub fn len(self) -> u32 {
        self.last
            .checked_sub(self.first)
            .map_or(0, |span| span.saturating_add(1))
    }

    /// True when the range holds no shard (`last < first`).
    ///
    /// ```
    /// use openflume_proto::discord::ShardRange;
    /// assert!(ShardRange { first: 2, last: 1 }.is_empty());
    /// ```
    pub fn is_empty(self) -> bool {
        self.last < self.first
    }

    /// The shard ids, in order.
    pub fn ids(self) -> std::ops::RangeInclusive<u32> {
        self.first..=self.last
    }
}

impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Debug for DiscordGatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordGatewayConfig")
            .field("shard", &self.shard)
            .field("shard_count", &self.shard_count)
            .field("shard_range", &self.shard_range)
            .field("resume", &self.resume)
            .field("resume_shard_count", &self.resume_shard_count)
            .finish()
    }
}

impl DiscordGatewayConfig {
    fn validate(&self) -> Result<(), Misuse> {
        let bad = |why: ConfigError| Err(Misuse::Config(why.in_scope("discord gateway")));
        match self.shard_count {
            Some(count) if count == 0 || count > MAX_SHARDS => {
                return bad(ConfigError::NotWithin {
                    field: "shard_count",
                    value: count.into(),
                    min: 1,
                    max: MAX_SHARDS.into(),
                });
            }
            None if self.shard.gateway_url.is_some() => {
                return bad(ConfigError::RequiredWith {
                    field: "shard_count",
                    with: "gateway_url",
                });
            }
            _ => {}
        }
        if let Some(range) = self.shard_range {
            let beyond = self.shard_count.is_some_and(|count| range.last >= count);
            if range.is_empty() || range.len() > MAX_SHARDS || beyond {
                return bad(ConfigError::ShardRange {
                    field: "shard_range",
                    first: range.first,
                    last: range.last,
                    shard_count: self.shard_count,
                });
            }
        }
        if let (Some(count), Some(&id)) = (
            self.resume_shard_count.or(self.shard_count),
            self.resume.keys().next_back(),
        ) && id >= count
        {
            return bad(ConfigError::ResumeShard {
                field: "resume",
                shard_id: id,
                shard_count: count,
            });
        }
        DiscordConfig {
            shard_id: 0,
            shard_count: self.shard_count.unwrap_or(1),
            ..self.shard.clone()
        }
        .validate()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GatewayTimer {
    /// Ask `/gateway/bot` again.
    Retry,
}

impl TimerKind for GatewayTimer {
    const ALL: &'static [GatewayTimer] = &[GatewayTimer::Retry];
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            GatewayTimer::Retry => "retry",
        }
    }
}

/// Where the gateway is before its shards exist; the core's lifecycle says whether it started or
/// finished.
#[derive(Debug)]
enum Phase {
    Requesting {
        req: ReqId,
    },
    /// Waiting to retry `/gateway/bot` (and before `Start`).
    Waiting,
    /// Shards exist.
    Running,
}

/// N shards of one bot behind one `/gateway/bot` call and one shared [`IdentifyLimiter`].
///
/// Connection ids are interleaved: shard `i` of `n` reports its `k`-th connection as
/// `(k − 1) · n + i + 1`, so every id is unique and maps back without a table.
///
/// ```
/// use openflume_proto::discord::{DiscordConfig, DiscordGateway, DiscordGatewayConfig};
/// use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
///
/// let config = DiscordGatewayConfig {
///     shard: DiscordConfig { gateway_url: Some("wss://gateway.discord.gg".into()), ..DiscordConfig::new("my.bot.token") },
///     shard_count: Some(2),
///     ..DiscordGatewayConfig::default()
/// };
/// let mut gateway = DiscordGateway::new(config, 7).unwrap();
/// gateway.handle_input(Now { mono: Millis(0), wall: UnixMillis(0) }, Input::Start).unwrap();
/// let connects: Vec<u64> = std::iter::from_fn(|| gateway.poll_output())
///     .filter_map(|out| match out { Output::Connect { conn, .. } => Some(conn.0), _ => None })
///     .collect();
/// assert_eq!(connects, vec![1, 2]);
/// ```
#[derive(Debug)]
pub struct DiscordGateway {
    config: DiscordGatewayConfig,
    rng: fastrand::Rng,
    core: Core<GatewayTimer>,
    backoff: Backoff,
    req_ids: IdCounter,
    limiter: IdentifyLimiter,
    phase: Phase,
    shards: Vec<DiscordShard>,
    /// Latest status reason per shard, for the aggregate status.
    reasons: Vec<Option<String>>,
    /// A shutdown (or a fatal shard) is closing the shards.
    stopping: bool,
}

impl DiscordGateway {
    /// A gateway for `config`, its RNG (and every shard's) seeded from `seed`.
    pub fn new(config: DiscordGatewayConfig, seed: u64) -> Result<DiscordGateway, Misuse> {
        config.validate()?;
        Ok(DiscordGateway {
            rng: fastrand::Rng::with_seed(seed),
            core: Core::new(SOURCE),
            backoff: Backoff::new(config.shard.reconnect),
            req_ids: IdCounter::default(),
            limiter: IdentifyLimiter::new(config.shard.max_concurrency),
            phase: Phase::Waiting,
            shards: Vec::new(),
            reasons: Vec::new(),
            stopping: false,
            config,
        })
    }

    /// The shards, in id order (empty until `/gateway/bot` answered).
    pub fn shards(&self) -> &[DiscordShard] {
        &self.shards
    }

    /// The resumable session of every shard that has one, by shard id: after
    /// `Shutdown { keep_session: true }`, what to put in [`DiscordGatewayConfig::resume`].
    pub fn sessions(&self) -> BTreeMap<u32, ResumeState> {
        self.shards
            .iter()
            .filter_map(|shard| Some((shard.shard()[0], shard.session()?)))
            .collect()
    }

    /// The shared IDENTIFY limiter.
    pub fn identify_limiter(&self) -> &IdentifyLimiter {
        &self.limiter
    }

    /// The first timer of the gateway or of a shard to fire; none once finished.
    fn next_timer_at(&self) -> Option<(&'static str, Millis)> {
        if self.core.is_finished() {
            return None;
        }
        let shards = self.shards.iter().filter_map(DiscordShard::next_timer_at);
        // The gateway's own timers fire before the shards', so they win a tie.
        self.core
            .next_timer_at()
            .into_iter()
            .chain(shards)
            .min_by_key(|&(_, at)| at)
    }

    /// Launches the shards at once when the configuration names the URL and the count, else
    /// asks `/gateway/bot` first.
    fn start(&mut self, now: Now) {
        self.core.set_status(Status::Connecting, None);
        match (&self.config.shard.gateway_url, self.config.shard_count) {
            (Some(url), Some(count)) => {
                let url = url.clone();
                self.launch(now, url, count);
            }
            _ => self.request_gateway(now),
        }
    }

    fn request_gateway(&mut self, now: Now) {
        let req = ReqId(self.req_ids.next());
        let (api_base, token) = (&self.config.shard.api_base, self.config.shard.bare_token());
        gateway_bot::send(&mut self.core, now, req, api_base, token);
        self.phase = Phase::Requesting { req };
    }

    fn on_response(&mut self, now: Now, req: ReqId, response: &HttpResponse) {
        let awaited = matches!(self.phase, Phase::Requesting { req: current } if current == req);
        let compress = self.config.shard.transport();
        let limiter = &mut self.limiter;
        let read = gateway_bot::read(
            &mut self.core,
            now,
            req,
            response,
            awaited,
            compress,
            limiter,
        );
        match read {
            Some(gateway_bot::Outcome::Ready(body)) => {
                let count = self.config.shard_count.or(body.shards).unwrap_or(1);
                self.launch(now, body.url, count);
            }
            Some(gateway_bot::Outcome::Retry { why, after_ms }) => self.retry(now, why, after_ms),
            Some(gateway_bot::Outcome::Fatal(why)) => self.fail(now, why),
            None => {}
        }
    }

    fn on_timer(&mut self, now: Now) {
        for timer in self.core.timers.take_expired(now.mono) {
            match timer {
                GatewayTimer::Retry if matches!(self.phase, Phase::Waiting) => {
                    self.request_gateway(now);
                }
                GatewayTimer::Retry => {}
            }
        }
        for index in 0..self.shards.len() {
            let due = self
                .shards
                .get(index)
                .and_then(DiscordShard::poll_timeout)
                .is_some_and(|at| at <= now.mono);
            if due {
                self.feed(now, index, Input::Timer);
            }
        }
    }

    /// Hands a connection's input to the shard that owns it, in that shard's own ids.
    fn on_connection_input(&mut self, now: Now, conn: ConnId, input: Input) {
        let Some((index, local)) = self.route(conn) else {
            return self.core.log(
                now,
                Level::Debug,
                "ws.stale",
                format!("ignored input for unknown connection {}", conn.0),
            );
        };
        let input = match input {
            Input::Opened { .. } => Input::Opened { conn: local },
            Input::Frame { frame, arrived, .. } => Input::Frame {
                conn: local,
                frame,
                arrived,
            },
            Input::Closed { code, reason, .. } => Input::Closed {
                conn: local,
                code,
                reason,
            },
            Input::ConnectFailed { error, .. } => Input::ConnectFailed { conn: local, error },
            other => other,
        };
        self.feed(now, index, input);
    }

    fn retry(&mut self, now: Now, why: String, after_ms: u64) {
        self.core
            .log(now, Level::Warn, "gateway.bot.error", why.clone());
        let Some(delay) = self.backoff.next_delay(&mut self.rng) else {
            let attempts = self.backoff.attempts();
            self.fail(now, format!("gave up after {attempts} attempts ({why})"));
            return;
        };
        let delay = delay.max(after_ms);
        self.core.set_status(Status::Reconnecting, Some(why));
        self.core.log(
            now,
            Level::Info,
            "reconnect.scheduled",
            format!("asking /gateway/bot again in {delay} ms"),
        );
        self.phase = Phase::Waiting;
        self.core.timers.arm(GatewayTimer::Retry, now.mono + delay);
    }

    fn fail(&mut self, now: Now, why: String) {
        self.core
            .log(now, Level::Error, "gateway.failed", why.clone());
        self.core.finish(Status::Failed, Some(why));
    }

    /// Builds and starts the shards of the range (all of `count` without one).
    fn launch(&mut self, now: Now, url: String, count: u32) {
        if count == 0 || count > MAX_SHARDS {
            self.fail(now, format!("{count} shards is not within 1–{MAX_SHARDS}"));
            return;
        }
        let range = self.config.shard_range.unwrap_or(ShardRange {
            first: 0,
            last: count - 1,
        });
        if range.is_empty() || range.last >= count {
            self.fail(
                now,
                format!("shard range {range} is not within the {count} shards of the bot"),
            );
            return;
        }
        let resume_count = self.config.resume_shard_count.unwrap_or(count);
        if resume_count != count && !self.config.resume.is_empty() {
            self.core.log(
                now,
                Level::Warn,
                "session.reset",
                format!(
                    "the kept sessions are of {resume_count} shards, the bot now runs {count}: every shard identifies"
                ),
            );
            self.config.resume.clear();
        }
        let message = if range.len() == count {
            format!("starting {count} shard(s)")
        } else {
            format!("starting shards {range} of {count}")
        };
        self.core.log(now, Level::Info, "gateway.shards", message);
        for shard_id in range.ids() {
            let config = DiscordConfig {
                shard_id,
                shard_count: count,
                gateway_url: Some(url.clone()),
                resume: self.config.resume.get(&shard_id).cloned(),
                ..self.config.shard.clone()
            };
            match DiscordShard::new(config, self.rng.u64(..)) {
                Ok(shard) => self.shards.push(shard),
                Err(misuse) => {
                    self.fail(now, format!("shard {shard_id}: {misuse}"));
                    return;
                }
            }
        }
        self.reasons = vec![None; self.shards.len()];
        self.phase = Phase::Running;
        for index in 0..self.shards.len() {
            self.feed(now, index, Input::Start);
        }
    }

    /// `"ID/COUNT"` of shard `index`: its `meta.shard` and its part name.
    fn label(&self, index: usize) -> String {
        match self.shards.get(index).map(DiscordShard::shard) {
            Some([id, count]) => format!("{id}/{count}"),
            None => format!("#{index}"),
        }
    }

    /// The index of shard `shard`, which an external identify queue may answer; a misuse for a
    /// shard this gateway does not run, or without an external queue.
    fn queued_shard(&self, shard: u32) -> Result<usize, Misuse> {
        self.shards
            .iter()
            .position(|s| s.shard()[0] == shard)
            .filter(|_| self.config.shard.identify_queue == IdentifyQueue::External)
            .ok_or(Misuse::NoIdentifyRequest(shard))
    }

    /// An external identify queue's grant for shard `shard`, to the shard that asked.
    fn on_identify_granted(&mut self, now: Now, shard: u32) -> Result<(), Misuse> {
        let index = self.queued_shard(shard)?;
        self.feed(now, index, Input::IdentifyGranted { shard });
        Ok(())
    }

    /// An external identify queue's word on why shard `shard` still waits, to that shard.
    fn on_identify_waiting(
        &mut self,
        now: Now,
        shard: u32,
        wait: IdentifyWait,
    ) -> Result<(), Misuse> {
        let index = self.queued_shard(shard)?;
        self.feed(now, index, Input::IdentifyWaiting { shard, wait });
        Ok(())
    }

    /// The id the driver sees for shard `index`'s connection `local`.
    fn global_conn(&self, index: usize, local: ConnId) -> ConnId {
        let n = self.shards.len() as u64;
        ConnId(
            local
                .0
                .saturating_sub(1)
                .saturating_mul(n)
                .saturating_add(index as u64 + 1),
        )
    }

    /// The shard and its own id for a driver-side connection id.
    fn route(&self, conn: ConnId) -> Option<(usize, ConnId)> {
        let n = self.shards.len() as u64;
        let k = conn.0.checked_sub(1)?;
        let index = usize::try_from(k.checked_rem(n)?).ok()?;
        Some((index, ConnId(k / n + 1)))
    }

    /// Applies `input` to shard `index` with the shared limiter and forwards its outputs.
    fn feed(&mut self, now: Now, index: usize, input: Input) {
        let Some(shard) = self.shards.get_mut(index) else {
            return;
        };
        if shard.is_finished() {
            return;
        }
        let result = shard.handle(now, input, &mut self.limiter);
        if let Err(misuse) = result {
            self.core.log(
                now,
                Level::Debug,
                "shard.misuse",
                format!("shard {index}: {misuse}"),
            );
        }
        self.drain_shard(now, index);
    }

    /// Forwards shard `index`'s outputs in the driver's connection ids, its status as a
    /// `shard.status` log and a part status, then updates the aggregate.
    fn drain_shard(&mut self, now: Now, index: usize) {
        while let Some(output) = self
            .shards
            .get_mut(index)
            .and_then(DiscordShard::poll_output)
        {
            let output = match output {
                Output::Connect { conn, url } => Output::Connect {
                    conn: self.global_conn(index, conn),
                    url,
                },
                Output::Send { conn, frame } => Output::Send {
                    conn: self.global_conn(index, conn),
                    frame,
                },
                Output::Close { conn, code, reason } => Output::Close {
                    conn: self.global_conn(index, conn),
                    code,
                    reason,
                },
                Output::Status(change) => {
                    let label = self.label(index);
                    let mut log = change.to_log(SOURCE, now.wall);
                    log.action = "shard.status".to_owned();
                    log.message = format!("shard {label}: {}", log.message);
                    if let Some(serde_json::Value::Object(detail)) = &mut log.detail {
                        detail.insert("shard".to_owned(), label.clone().into());
                    }
                    if let Some(reason) = self.reasons.get_mut(index) {
                        reason.clone_from(&change.reason);
                    }
                    self.core.emit(Output::Log(log));
                    Output::PartStatus {
                        part: label,
                        status: change.to,
                        reason: change.reason,
                    }
                }
                other => other,
            };
            self.core.emit(output);
        }
        self.aggregate(now);
    }

    /// Derives the gateway's status from its shards'.
    fn aggregate(&mut self, now: Now) {
        if !matches!(self.phase, Phase::Running) || self.core.is_finished() {
            return;
        }
        if self.stopping {
            if self.shards.iter().all(DiscordShard::is_finished) {
                self.core
                    .finish(Status::Disconnected, Some("shutdown".to_owned()));
            }
            return;
        }
        let reason_of = |gateway: &DiscordGateway, index: usize, fallback: &str| {
            let reason = gateway.reasons.get(index).cloned().flatten();
            format!(
                "shard {}: {}",
                gateway.label(index),
                reason.unwrap_or_else(|| fallback.to_owned())
            )
        };
        let statuses: Vec<Status> = self.shards.iter().map(DiscordShard::status).collect();
        if let Some(index) = statuses.iter().position(|&s| s == Status::Failed) {
            let reason = reason_of(self, index, "failed");
            self.core.log(
                now,
                Level::Error,
                "gateway.failed",
                format!("{reason}: closing every shard"),
            );
            self.stopping = true;
            for other in 0..self.shards.len() {
                self.feed(
                    now,
                    other,
                    Input::Shutdown {
                        keep_session: false,
                    },
                );
            }
            // Every close frame is out; a failed source takes no more input.
            self.core.finish(Status::Failed, Some(reason));
        } else if statuses.iter().all(|&s| s == Status::Connected) {
            self.core.set_status(Status::Connected, None);
        } else if let Some(index) = statuses.iter().position(|&s| s == Status::Reconnecting) {
            let reason = reason_of(self, index, "reconnecting");
            self.core.set_status(Status::Reconnecting, Some(reason));
        } else {
            self.core.set_status(Status::Connecting, None);
        }
    }

    fn on_shutdown(&mut self, now: Now, keep_session: bool) {
        if !matches!(self.phase, Phase::Running) {
            self.core
                .finish(Status::Disconnected, Some("shutdown".to_owned()));
            return;
        }
        if self.stopping {
            return;
        }
        self.stopping = true;
        for index in 0..self.shards.len() {
            self.feed(now, index, Input::Shutdown { keep_session });
        }
        self.aggregate(now);
    }
}

impl Machine for DiscordGateway {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => self.start(now),
            Input::Timer => self.on_timer(now),
            Input::Opened { conn }
            | Input::Frame { conn, .. }
            | Input::Closed { conn, .. }
            | Input::ConnectFailed { conn, .. } => self.on_connection_input(now, conn, input),
            Input::Response { req, response } => self.on_response(now, req, &response),
            Input::RequestFailed { req, error } => {
                if matches!(self.phase, Phase::Requesting { req: current } if current == req) {
                    self.retry(now, format!("GET /gateway/bot failed: {error}"), 0);
                }
            }
            // Shards start only on a response, which is never read while paused: every shard
            // that exists hears both.
            Input::ReadingPaused | Input::ReadingResumed => {
                for index in 0..self.shards.len() {
                    self.feed(now, index, input.clone());
                }
            }
            Input::Delivered { delivery } => return Err(Misuse::UnknownDelivery(delivery)),
            Input::Received { .. } => return Err(Misuse::NotServing),
            Input::IdentifyGranted { shard } => return self.on_identify_granted(now, shard),
            Input::IdentifyWaiting { shard, wait } => {
                return self.on_identify_waiting(now, shard, wait);
            }
            Input::Shutdown { keep_session } => self.on_shutdown(now, keep_session),
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.next_timer_at().map(|(_, at)| at)
    }

    fn next_timer(&self) -> Option<&'static str> {
        self.next_timer_at().map(|(name, _)| name)
    }

    answered_by_core!(all but timers);

    fn checkpoint(&self) -> Option<crate::Checkpoint> {
        let shard_count = self.shards.first()?.shard()[1];
        let sessions = self.sessions();
        (!sessions.is_empty()).then_some(crate::Checkpoint::DiscordShards(DiscordShardsCursor {
            shard_count,
            sessions,
        }))
    }
}
