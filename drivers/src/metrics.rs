//! Per-source counters: events, reconnects, drops, rate-limit waits and Discord's heartbeat
//! round trip, read as a [`Metrics`] snapshot ([`Running::metrics`](crate::Running::metrics)).
//!
//! Counted where the items pass anyway, with relaxed atomics and no lock on the way of an item:
//! - **events**: in the source's [`Lane`](crate::delivery::Lane), once an event enters the
//!   firehose (a twin of an event another transport already delivered is not counted again);
//! - **reconnects**: in the driver, at each status change to `reconnecting`;
//! - **rate-limit waits**: in the driver, at each log whose action says the source waits for a
//!   rate limit ([`RATE_LIMIT_ACTIONS`]);
//! - **heartbeat RTT**: in the driver, from Discord's `heartbeat.ack` log (`detail.rttMs`), seen
//!   before the minimum log level filters it;
//! - **drops**: items lost on their way to a consumer, counted for the item's source: evicted
//!   by a drop-policy stream ([`Overflow`](crate::Overflow)), or given up at shutdown because a
//!   full consumer never took them.
//!
//! Each lane keeps its own handles to the counters of the sources it delivers for (a webhook
//! ingress delivers `slack`, `github` and `custom` events), so counting is a lookup in a list
//! of one to three entries and an atomic add; the shared registry's lock is taken only the
//! first time a lane meets a source, and on a stream's drop.

use crate::lock::lock;
use openflume_proto::{Item, Log, Status};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The log actions that mean "waiting for a rate limit": GitHub's `rate.limit` (a 403/429 with
/// a reset), Slack's `api.rate_limited` (HTTP 429 or `ratelimited`) and Discord's
/// `ratelimit.deferred` (the gateway's send budget was spent, a frame waits for the window).
pub(crate) const RATE_LIMIT_ACTIONS: [&str; 3] =
    ["rate.limit", "api.rate_limited", "ratelimit.deferred"];

/// A round trip not measured yet.
const NO_RTT: u64 = u64::MAX;

/// One source's counters.
pub(crate) struct SourceMeter {
    name: Box<str>,
    events: AtomicU64,
    reconnects: AtomicU64,
    drops: AtomicU64,
    rate_limit_waits: AtomicU64,
    /// The last heartbeat round trip in ms, or [`NO_RTT`].
    heartbeat_rtt_ms: AtomicU64,
}

impl SourceMeter {
    fn new(name: &str) -> SourceMeter {
        SourceMeter {
            name: name.into(),
            events: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            rate_limit_waits: AtomicU64::new(0),
            heartbeat_rtt_ms: AtomicU64::new(NO_RTT),
        }
    }

    pub(crate) fn dropped(&self, items: u64) {
        self.drops.fetch_add(items, Ordering::Relaxed);
    }

    fn read(&self, status: Option<Status>) -> SourceMetrics {
        let rtt = self.heartbeat_rtt_ms.load(Ordering::Relaxed);
        SourceMetrics {
            source: self.name.to_string(),
            status,
            events: self.events.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            rate_limit_waits: self.rate_limit_waits.load(Ordering::Relaxed),
            heartbeat_rtt: (rtt != NO_RTT).then(|| Duration::from_millis(rtt)),
        }
    }
}

/// Every source's counters, by name, in the order the sources were first seen. Shared by a
/// flume's hub (and so its lanes) and its [`Running`](crate::Running).
#[derive(Default)]
pub(crate) struct Meters {
    sources: Mutex<Vec<Arc<SourceMeter>>>,
}

impl Meters {
    /// The counters of source `name`, made on first use.
    pub(crate) fn source(&self, name: &str) -> Arc<SourceMeter> {
        let mut sources = lock(&self.sources);
        if let Some(meter) = sources.iter().find(|m| *m.name == *name) {
            return meter.clone();
        }
        let meter = Arc::new(SourceMeter::new(name));
        sources.push(meter.clone());
        meter
    }

    /// The snapshot: the sources with a status first, in their order, then the sources only
    /// items name (the webhook ingress's `slack`, `github` and `custom`).
    pub(crate) fn snapshot(&self, statuses: &[(String, Status)]) -> Metrics {
        let sources = lock(&self.sources).clone();
        let mut out: Vec<SourceMetrics> = statuses
            .iter()
            .map(
                |(name, status)| match sources.iter().find(|m| *m.name == **name) {
                    Some(meter) => meter.read(Some(*status)),
                    // Its driver has not started yet: nothing counted.
                    None => SourceMeter::new(name).read(Some(*status)),
                },
            )
            .collect();
        for meter in &sources {
            if !statuses.iter().any(|(name, _)| *meter.name == **name) {
                out.push(meter.read(None));
            }
        }
        Metrics { sources: out }
    }
}

/// A lane's handles to the counters it adds to: its own source's, and those of the sources it
/// delivers items for.
pub(crate) struct LaneMeters {
    meters: Arc<Meters>,
    /// Its own source first; a lane meets one to three names.
    known: Vec<Arc<SourceMeter>>,
}

impl LaneMeters {
    pub(crate) fn new(meters: Arc<Meters>, own: &str) -> LaneMeters {
        let known = vec![meters.source(own)];
        LaneMeters { meters, known }
    }

    /// The counters of source `name`.
    pub(crate) fn of(&mut self, name: &str) -> &SourceMeter {
        let at = match self.known.iter().position(|m| *m.name == *name) {
            Some(at) => at,
            None => {
                self.known.push(self.meters.source(name));
                self.known.len() - 1
            }
        };
        &self.known[at]
    }

    /// Counts an event entering the firehose.
    pub(crate) fn event(&mut self, item: &Item) {
        if let Item::Event(event) = item {
            self.of(&event.source)
                .events
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an item lost before it reached a consumer.
    pub(crate) fn dropped(&mut self, item: &Item) {
        self.of(item.source()).dropped(1);
    }

    /// Counts a status change of the lane's own source.
    pub(crate) fn status(&mut self, to: Status) {
        if to == Status::Reconnecting
            && let Some(own) = self.known.first()
        {
            own.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what a log says about rate limits and heartbeats.
    pub(crate) fn log(&mut self, log: &Log) {
        if RATE_LIMIT_ACTIONS.contains(&log.action.as_str()) {
            self.of(&log.source)
                .rate_limit_waits
                .fetch_add(1, Ordering::Relaxed);
        } else if log.action == "heartbeat.ack"
            && let Some(rtt) = log
                .detail
                .as_ref()
                .and_then(|detail| detail.get("rttMs"))
                .and_then(serde_json::Value::as_u64)
        {
            self.of(&log.source)
                .heartbeat_rtt_ms
                .store(rtt.min(NO_RTT - 1), Ordering::Relaxed);
        }
    }
}

/// A snapshot of a running flume's counters, from [`Running::metrics`](crate::Running::metrics).
///
/// ```
/// # use openflume::{Flume, Source};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// use openflume_proto::Status;
/// # smol::block_on(async {
/// let running = Flume::builder().source(cron).build().open().await?;
/// let metrics = running.metrics();
/// let time = metrics.source("time").expect("every configured source is listed");
/// assert_eq!(time.status, Some(Status::Connected));
/// assert_eq!((time.events, time.reconnects, time.drops), (0, 0, 0)); // no tick within the hour
/// running.close().await;
/// # Ok::<(), openflume::StartError>(())
/// # })?;
/// # Ok::<(), openflume::StartError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Each configured source, in order, then each source that only items name (the webhook
    /// ingress's `slack`, `github` and `custom` events), in the order they were first seen.
    pub sources: Vec<SourceMetrics>,
}

impl Metrics {
    /// The counters of source `name`, if it is configured or an item named it.
    ///
    /// ```
    /// let metrics = openflume::Metrics::default();
    /// assert!(metrics.source("discord").is_none());
    /// ```
    pub fn source(&self, name: &str) -> Option<&SourceMetrics> {
        self.sources.iter().find(|s| s.source == name)
    }
}

/// One source's counters since the flume started.
///
/// ```
/// # use openflume::{Flume, Source};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// # smol::block_on(async {
/// let running = Flume::builder().source(cron).build().open().await?;
/// for source in &running.metrics().sources {
///     println!("{}: {} events, {} reconnects", source.source, source.events, source.reconnects);
/// }
/// # running.close().await;
/// # Ok::<(), openflume::StartError>(())
/// # })?;
/// # Ok::<(), openflume::StartError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SourceMetrics {
    /// The source's name (a configured source, or the source an event names).
    pub source: String,
    /// Its live status; `None` for a name that only items carry (no machine of its own).
    pub status: Option<Status>,
    /// Events that entered the firehose.
    pub events: u64,
    /// Changes to `reconnecting` (a lost connection, or a failed attempt to be retried).
    pub reconnects: u64,
    /// Items lost before a consumer had them: evicted by a drop-policy stream, or given up at
    /// shutdown. Zero while every consumer uses back-pressure and the sources stop in time.
    pub drops: u64,
    /// Times the source waited for a rate limit (see the actions counted in the module docs).
    pub rate_limit_waits: u64,
    /// The last heartbeat round trip (Discord), once one was measured.
    pub heartbeat_rtt: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{Event, Level, RawJson, UnixMillis};

    fn log(source: &str, action: &str, detail: serde_json::Value) -> Log {
        Log::new(Level::Debug, source, action, "", UnixMillis(0)).with_detail(detail)
    }

    #[test]
    fn a_lane_counts_for_the_sources_its_items_name() {
        let meters = Arc::new(Meters::default());
        let mut lane = LaneMeters::new(meters.clone(), "webhooks");
        let event = |source: &'static str| {
            Item::Event(Event::new(source, "t", RawJson::null(), UnixMillis(0)))
        };
        lane.event(&event("slack"));
        lane.event(&event("slack"));
        lane.event(&event("github"));
        lane.dropped(&event("github"));
        lane.status(Status::Reconnecting);
        lane.status(Status::Connected);
        let statuses = [("webhooks".to_owned(), Status::Connected)];
        let metrics = meters.snapshot(&statuses);
        let names: Vec<&str> = metrics.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(names, ["webhooks", "slack", "github"]);
        let webhooks = metrics.source("webhooks").unwrap();
        assert_eq!((webhooks.events, webhooks.reconnects), (0, 1));
        assert_eq!(metrics.source("slack").unwrap().events, 2);
        assert_eq!(metrics.source("slack").unwrap().status, None);
        let github = metrics.source("github").unwrap();
        assert_eq!((github.events, github.drops), (1, 1));
    }

    #[test]
    fn rate_limit_logs_and_heartbeat_acks_are_read() {
        let meters = Arc::new(Meters::default());
        let mut lane = LaneMeters::new(meters.clone(), "discord");
        for action in RATE_LIMIT_ACTIONS {
            lane.log(&log("discord", action, serde_json::json!({"waitMs": 5})));
        }
        lane.log(&log("discord", "rate.budget", serde_json::json!({})));
        lane.log(&log(
            "discord",
            "heartbeat.ack",
            serde_json::json!({"rttMs": 42}),
        ));
        // An ACK without a heartbeat in flight carries no round trip: the last one stays.
        lane.log(&Log::new(
            Level::Debug,
            "discord",
            "heartbeat.ack",
            "",
            UnixMillis(0),
        ));
        let metrics = meters.snapshot(&[("discord".to_owned(), Status::Connected)]);
        let discord = metrics.source("discord").unwrap();
        assert_eq!(discord.rate_limit_waits, 3);
        assert_eq!(discord.heartbeat_rtt, Some(Duration::from_millis(42)));
    }

    #[test]
    fn a_configured_source_not_started_yet_is_listed_with_zeros() {
        let meters = Meters::default();
        let metrics = meters.snapshot(&[("time".to_owned(), Status::Idle)]);
        assert_eq!(metrics.sources[0].source, "time");
        assert_eq!(metrics.sources[0].events, 0);
        assert_eq!(metrics.sources[0].heartbeat_rtt, None);
    }
}
