//! How long appends take: from the call to [`EventLog::append`](crate::EventLog::append) (or
//! `append_async`) until its handle resolves `Ok`, its group committed and fsynced. That is the
//! wait an upstream acknowledgement (a Slack ack, a webhook's 200) adds, queue wait included:
//! an append that waited for room in a full queue was slow for its caller too.
//!
//! Counted with atomics in fixed buckets, so the writer thread that resolves the handles never
//! takes a lock for it and a reader (`/metrics`) never holds the writer up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds, in microseconds: 100 µs (a commit without a real fsync) to 10 s
/// (a disk in trouble).
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The live counters, shared by the log's handles and the slots of pending appends.
#[derive(Default)]
pub(crate) struct AppendLatency {
    /// Appends per bucket (not cumulative); the last one counts those above every bound.
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl AppendLatency {
    pub(crate) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(BOUNDS_US.len());
        for (bound, count) in BOUNDS_US.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((Duration::from_micros(*bound), cumulative));
        }
        let above = self
            .counts
            .last()
            .map_or(0, |count| count.load(Ordering::Relaxed));
        LatencyHistogram {
            buckets,
            // The buckets' own total, so the last bucket and the count always agree.
            count: cumulative + above,
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

/// A snapshot of the append latency since the log was opened, in the shape of a Prometheus
/// histogram: cumulative buckets, a count and a sum. Only appends that committed are counted.
///
/// ```
/// use openflume_log::{EventLog, LogOptions, Record};
/// use openflume_proto::{Event, Item, RawJson, UnixMillis};
/// # let dir = tempfile::tempdir()?;
/// let log = EventLog::open(dir.path(), LogOptions::default())?;
/// let item = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(0)));
/// log.append(vec![Record::from_item(&item)], Vec::new())?.wait()?;
/// let latency = log.append_latency();
/// assert_eq!(latency.count, 1);
/// // Cumulative: the last bucket holds every append that took at most 10 s.
/// assert!(latency.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Each bucket's upper bound, ascending, with the appends that took at most that long
    /// (cumulative). Appends slower than the last bound are in `count` only.
    pub buckets: Vec<(Duration, u64)>,
    /// Appends measured.
    pub count: u64,
    /// Their total time.
    pub sum: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_land_in_the_first_bucket_whose_bound_they_do_not_pass() {
        let latency = AppendLatency::default();
        for us in [50, 100, 101, 3_000, 20_000_000] {
            latency.record(Duration::from_micros(us));
        }
        let snapshot = latency.snapshot();
        let at = |bound_us: u64| {
            snapshot
                .buckets
                .iter()
                .find(|(bound, _)| *bound == Duration::from_micros(bound_us))
                .map(|(_, count)| *count)
        };
        assert_eq!(
            at(100),
            Some(2),
            "50 µs and 100 µs (the bound is inclusive)"
        );
        assert_eq!(at(250), Some(3));
        assert_eq!(at(5_000), Some(4));
        assert_eq!(at(10_000_000), Some(4), "20 s is above every bound");
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.sum, Duration::from_micros(20_003_251));
    }
}
