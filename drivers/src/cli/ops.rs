//! What `serve`'s operations endpoints read (`/metrics`, `/status.json`): the hub's subscribers,
//! the forward targets' queue depths and the event rates, gathered with the flume's
//! [`Metrics`] and the log's figures into one [`Snapshot`].
//!
//! Nothing here sits on the way of an item. A hub client registers once when it connects and
//! publishes its position with an atomic store after each step of its session; a scrape reads
//! the atomics. The registries' locks are taken at connect, disconnect and scrape only.
//!
//! **Forward targets** (`--forward`, built beside this) register a closure that reads their
//! queue depth ([`ForwardTargets::register`]); each one becomes a
//! `openflume_forward_queue_depth{target="NAME"}` series and a row on the status page.

use crate::lock::lock;
use crate::{Metrics, PartStatus, Running, SourceStatus};
use openflume_log::{EventLog, LatencyHistogram};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Event rates are averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// A new rate sample at most this often, however often the page asks.
const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A position not known yet: the client has not said hello.
const NO_POSITION: u64 = u64::MAX;

/// The operations state `serve` keeps beside its server.
pub(crate) struct Ops {
    pub(crate) started: Instant,
    pub(crate) subscribers: Subscribers,
    pub(crate) forward: ForwardTargets,
    rates: Mutex<RateWindow>,
}

impl Ops {
    pub(crate) fn new() -> Ops {
        Ops {
            started: Instant::now(),
            subscribers: Subscribers::default(),
            forward: ForwardTargets::default(),
            rates: Mutex::new(RateWindow::default()),
        }
    }

    /// Everything the endpoints show, read now. Before the flume started (`running` is
    /// `None`) there are no sources yet.
    pub(crate) fn snapshot(
        &self,
        log: &EventLog,
        running: Option<&Running>,
        instance_id: &str,
    ) -> Snapshot {
        let metrics = running.map(Running::metrics).unwrap_or_default();
        let statuses = running.map(Running::statuses).unwrap_or_default();
        let parts = running
            .map(|running| {
                statuses
                    .iter()
                    .map(|s| (s.source.clone(), running.part_statuses(&s.source)))
                    .filter(|(_, parts)| !parts.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let stats = log.stats();
        let last_event_id = log.committed_id().0;
        Snapshot {
            instance_id: instance_id.to_owned(),
            uptime: self.started.elapsed(),
            rates: self.rates(&metrics),
            statuses,
            parts,
            metrics,
            log: LogFigures {
                last_event_id,
                items: stats.items,
                commits: stats.groups,
                append_latency: log.append_latency(),
            },
            subscribers: self.subscribers.readings(last_event_id),
            forward: self.forward.readings(),
        }
    }

    /// Each source's events per second over the last minute (`None` until two samples exist),
    /// in the order of `metrics.sources`.
    fn rates(&self, metrics: &Metrics) -> Vec<Option<f64>> {
        let totals: Vec<(String, u64)> = metrics
            .sources
            .iter()
            .map(|s| (s.source.clone(), s.events))
            .collect();
        lock(&self.rates).rates(Instant::now(), &totals)
    }
}

/// The hub's connected clients.
#[derive(Default)]
pub(crate) struct Subscribers {
    next_connection: AtomicU64,
    live: Mutex<Vec<Arc<SubscriberMeter>>>,
}

impl Subscribers {
    /// Registers a client that just upgraded; it is listed until the returned guard drops.
    pub(crate) fn join(&self, peer: Option<SocketAddr>) -> Subscription<'_> {
        let meter = Arc::new(SubscriberMeter {
            connection: self.next_connection.fetch_add(1, Ordering::Relaxed) + 1,
            peer,
            since: Instant::now(),
            position: AtomicU64::new(NO_POSITION),
            consumer: OnceLock::new(),
        });
        lock(&self.live).push(meter.clone());
        Subscription {
            subscribers: self,
            meter,
        }
    }

    /// Every connected client, with its lag behind `last_id`.
    pub(crate) fn readings(&self, last_id: u64) -> Vec<SubscriberReading> {
        let now = Instant::now();
        lock(&self.live)
            .iter()
            .map(|meter| {
                let position = meter.position.load(Ordering::Relaxed);
                let position = (position != NO_POSITION).then_some(position);
                SubscriberReading {
                    connection: meter.connection,
                    consumer: meter.consumer.get().cloned(),
                    peer: meter.peer,
                    connected: now.saturating_duration_since(meter.since),
                    position,
                    lag: position.map(|p| last_id.saturating_sub(p)),
                }
            })
            .collect()
    }
}

/// One client's published state.
pub(crate) struct SubscriberMeter {
    /// This process's connection number, from 1: a stable label for its lag series.
    connection: u64,
    peer: Option<SocketAddr>,
    since: Instant,
    /// The last id sent or passed over, or [`NO_POSITION`].
    position: AtomicU64,
    consumer: OnceLock<String>,
}

/// A registered client; dropping it removes the client from the list.
pub(crate) struct Subscription<'a> {
    subscribers: &'a Subscribers,
    meter: Arc<SubscriberMeter>,
}

impl Subscription<'_> {
    /// Publishes the session's position (after its hello) and consumer name.
    pub(crate) fn publish(&self, position: Option<u64>, consumer: Option<&str>) {
        if let Some(position) = position {
            self.meter.position.store(position, Ordering::Relaxed);
        }
        if let Some(name) = consumer
            && self.meter.consumer.get().is_none()
        {
            let _ = self.meter.consumer.set(name.to_owned());
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        lock(&self.subscribers.live).retain(|m| !Arc::ptr_eq(m, &self.meter));
    }
}

/// One client, as the endpoints show it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SubscriberReading {
    pub(crate) connection: u64,
    pub(crate) consumer: Option<String>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) connected: Duration,
    /// `None` before its hello was answered.
    pub(crate) position: Option<u64>,
    /// Committed ids it has not been sent or passed over yet.
    pub(crate) lag: Option<u64>,
}

/// Reads one forward target's queue depth.
type DepthReader = Box<dyn Fn() -> u64 + Send + Sync>;

/// The forward targets' queue depths, registered by whoever runs the targets.
#[derive(Default)]
pub(crate) struct ForwardTargets {
    targets: Mutex<Vec<(String, DepthReader)>>,
}

impl ForwardTargets {
    /// Registers target `name` (a short name, not its URL, which may hold a secret), whose
    /// queue depth — deliveries waiting or retrying — `depth` reads. `depth` is called at each
    /// scrape and each `/status.json`, under this registry's lock: keep it cheap (an atomic
    /// load, not a query). Registering a name again replaces its reader.
    pub(crate) fn register(&self, name: &str, depth: impl Fn() -> u64 + Send + Sync + 'static) {
        let mut targets = lock(&self.targets);
        targets.retain(|(n, _)| n != name);
        targets.push((name.to_owned(), Box::new(depth)));
    }

    /// Each target's name and depth, in the order they were registered.
    pub(crate) fn readings(&self) -> Vec<(String, u64)> {
        lock(&self.targets)
            .iter()
            .map(|(name, depth)| (name.clone(), depth()))
            .collect()
    }
}

/// Samples of each source's event total, to turn totals into rates.
#[derive(Default)]
struct RateWindow {
    samples: VecDeque<(Instant, Vec<(String, u64)>)>,
}

impl RateWindow {
    /// Takes a sample at `now` (at most one a second), then the rate since the oldest sample
    /// within the window, for each of `totals`.
    fn rates(&mut self, now: Instant, totals: &[(String, u64)]) -> Vec<Option<f64>> {
        if self
            .samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= RATE_SAMPLE_EVERY)
        {
            self.samples.push_back((now, totals.to_vec()));
        }
        // Keep the newest sample older than the window as the base, so a page that asks every
        // few seconds averages over a full minute.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let Some((base_at, base)) = self.samples.front() else {
            return vec![None; totals.len()];
        };
        let seconds = now.saturating_duration_since(*base_at).as_secs_f64();
        totals
            .iter()
            .map(|(name, total)| {
                if seconds < RATE_SAMPLE_EVERY.as_secs_f64() {
                    return None;
                }
                // A source first seen after the base sample started from zero.
                let before = base.iter().find(|(n, _)| n == name).map_or(0, |(_, t)| *t);
                Some(total.saturating_sub(before) as f64 / seconds)
            })
            .collect()
    }
}

/// The log's figures for the endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LogFigures {
    pub(crate) last_event_id: u64,
    pub(crate) items: u64,
    pub(crate) commits: u64,
    pub(crate) append_latency: LatencyHistogram,
}

/// Everything `/metrics` and `/status.json` show, read at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) instance_id: String,
    pub(crate) uptime: Duration,
    pub(crate) statuses: Vec<SourceStatus>,
    /// The parts of each source that has them (a Discord gateway's shards), by source name.
    pub(crate) parts: Vec<(String, Vec<PartStatus>)>,
    pub(crate) metrics: Metrics,
    /// Events per second, in the order of `metrics.sources` (`/status.json` only).
    pub(crate) rates: Vec<Option<f64>>,
    pub(crate) log: LogFigures,
    pub(crate) subscribers: Vec<SubscriberReading>,
    pub(crate) forward: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_over_the_window_once_two_samples_exist() {
        let mut window = RateWindow::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let totals = |n: u64| vec![("discord".to_owned(), n)];
        assert_eq!(window.rates(at(0), &totals(0)), [None]);
        assert_eq!(window.rates(at(10), &totals(50)), [Some(5.0)]);
        // Past the window, the base moves up to the newest sample older than a minute.
        assert_eq!(window.rates(at(70), &totals(350)), [Some(5.0)]);
        assert_eq!(window.rates(at(75), &totals(350)), [Some(300.0 / 65.0)]);
        // A source first seen now counts from zero.
        let both = vec![("discord".to_owned(), 350), ("slack".to_owned(), 65)];
        assert_eq!(window.rates(at(75), &both)[1], Some(1.0));
    }

    #[test]
    fn a_subscriber_is_listed_until_its_guard_drops() {
        let subscribers = Subscribers::default();
        let first = subscribers.join(None);
        let second = subscribers.join(None);
        first.publish(Some(7), Some("triage"));
        let readings = subscribers.readings(10);
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0].connection, 1);
        assert_eq!(readings[0].lag, Some(3));
        assert_eq!(readings[0].consumer.as_deref(), Some("triage"));
        assert_eq!(readings[1].lag, None, "no hello yet");
        drop(first);
        assert_eq!(subscribers.readings(10)[0].connection, 2);
        drop(second);
        assert!(subscribers.readings(10).is_empty());
    }

    #[test]
    fn a_forward_target_registered_again_replaces_its_reader() {
        let targets = ForwardTargets::default();
        targets.register("ci", || 3);
        targets.register("pager", || 0);
        targets.register("ci", || 5);
        assert_eq!(
            targets.readings(),
            [("pager".to_owned(), 0), ("ci".to_owned(), 5)]
        );
    }
}
