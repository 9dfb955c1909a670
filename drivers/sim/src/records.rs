//! What the simulators saw and did, kept for the tests to assert on: bounded logs, and a way to
//! wait for a record to appear without sleeping for a fixed time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A bounded log of records, oldest first. When full, the oldest record is dropped;
/// [`total`](Records::total) still counts every record ever pushed.
///
/// ```
/// use openflume_sim::Records;
/// let records: Records<u32> = Records::default();
/// assert!(records.is_empty());
/// assert_eq!(records.total(), 0);
/// ```
#[derive(Clone)]
pub struct Records<T> {
    items: VecDeque<T>,
    total: u64,
    capacity: usize,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Records::with_capacity(DEFAULT_MAX_RECORDS)
    }
}

/// Records kept per log by default.
pub(crate) const DEFAULT_MAX_RECORDS: usize = 100_000;

impl<T> Records<T> {
    /// An empty log keeping at most `capacity` records (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> Records<T> {
        Records {
            items: VecDeque::new(),
            total: 0,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() >= self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
        self.total += 1;
    }

    /// The records kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no record is kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many records were ever pushed, the dropped ones included.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The newest record.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }
}

impl<'a, T> IntoIterator for &'a Records<T> {
    type Item = &'a T;
    type IntoIter = std::collections::vec_deque::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Records<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("total", &self.total)
            .field("items", &self.items)
            .finish()
    }
}

/// How a WebSocket connection ended on the client's side: the close frame it sent, or `code:
/// None` when it went away without one (a dropped TCP connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRecord {
    /// The simulator's connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The close code, when the client sent a close frame.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
}

/// A plain HTTP request a simulator answered (or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRecord {
    /// When, since the simulator started.
    pub at: Duration,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query (which may hold a ticket).
    pub path: String,
    /// The status sent; `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
}

/// A wait for a simulator record ran out of time.
///
/// ```
/// use openflume_sim::WaitTimedOut;
/// let error = WaitTimedOut { waited: std::time::Duration::from_secs(2) };
/// assert_eq!(error.to_string(), "no matching simulator record after 2000 ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no matching simulator record after {} ms", waited.as_millis())]
pub struct WaitTimedOut {
    /// How long it waited.
    pub waited: Duration,
}

/// How often a wait looks at the records again.
const POLL: Duration = Duration::from_millis(5);

/// Calls `check` on the state every few milliseconds until it returns `Some`, or `timeout` passes.
pub(crate) async fn wait_until<S, T>(
    state: &Mutex<S>,
    timeout: Duration,
    mut check: impl FnMut(&S) -> Option<T>,
) -> Result<T, WaitTimedOut> {
    let started = Instant::now();
    loop {
        let found = {
            let guard = state.lock().unwrap_or_else(PoisonError::into_inner);
            check(&guard)
        };
        if let Some(found) = found {
            return Ok(found);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(WaitTimedOut { waited });
        }
        async_io::Timer::after(POLL.min(timeout - waited)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_drop_the_oldest_and_count_everything() {
        let mut records = Records::with_capacity(2);
        for n in 1..=3 {
            records.push(n);
        }
        assert_eq!(records.iter().copied().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(records.total(), 3);
        assert_eq!(records.last(), Some(&3));
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn waits_end_with_the_value_or_a_timeout() {
        smol::block_on(async {
            let state = Mutex::new(7);
            let found = wait_until(&state, Duration::from_millis(100), |n| {
                (*n == 7).then_some("seven")
            })
            .await;
            assert_eq!(found, Ok("seven"));
            let started = Instant::now();
            let missing = wait_until(&state, Duration::from_millis(30), |n| {
                (*n == 8).then_some(())
            })
            .await;
            assert!(missing.is_err());
            assert!(started.elapsed() >= Duration::from_millis(30));
        });
    }
}
