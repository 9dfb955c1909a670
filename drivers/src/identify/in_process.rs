//! The identify queue of one process: buckets as reserved turns, the daily budget as a
//! [`SessionBudget`] on a clock that starts with the queue.

use super::{Grant, Hold, HoldReporter, IdentifyGate};
use openflume_proto::Millis;
use openflume_proto::discord::{
    BudgetReading, IDENTIFY_SPACING_MS, IdentifyRequest, SessionBudget,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a request held for the daily budget looks again: a reading of the current period
/// can replace a guessed refill time (see [`SessionBudget`]).
const BUDGET_RECHECK: Duration = Duration::from_secs(60);
/// How long grants are remembered: a reading older than a budget period says nothing.
const GRANTS_KEPT_MS: u64 = 24 * 60 * 60 * 1000;

/// The identify queue of one process, for several sources that share a bot (two gateways with
/// disjoint shard ranges, say): one IDENTIFY per bucket per 5 s across all of them, and the
/// daily session-start budget counted across them by the rules of [`SessionBudget`] (each
/// gateway reads `/gateway/bot` on its own; with an external queue, its machine does not count).
///
/// ```
/// use openflume::{HoldReporter, IdentifyGate, SharedIdentifyQueue};
/// use openflume_proto::discord::IdentifyRequest;
/// let queue = SharedIdentifyQueue::new();
/// let request = |shard_id| IdentifyRequest {
///     shard_id,
///     shard_count: 2,
///     bucket: shard_id % 1,
///     max_concurrency: 1,
///     session_start_limit: None,
/// };
/// let start = std::time::Instant::now();
/// smol::block_on(async {
///     queue.grant(request(0), HoldReporter::none()).await; // at once
/// });
/// assert!(start.elapsed() < std::time::Duration::from_secs(1));
/// assert_eq!(queue.next_free(0).map(|at| at > start), Some(true)); // bucket 0 is busy for 5 s
/// ```
#[derive(Debug)]
pub struct SharedIdentifyQueue {
    state: Arc<Mutex<QueueState>>,
}

#[derive(Debug)]
struct QueueState {
    /// Where the budget's clock starts.
    epoch: Instant,
    /// When each bucket may identify next; a turn is taken when the grant is handed out, so
    /// waiting requests queue up in the order they asked.
    next_free: BTreeMap<u32, Instant>,
    /// The bot's session starts left, once a request carried a reading.
    budget: Option<SessionBudget>,
    /// When each grant of the last 24 h goes (on the budget's clock): a reading is counted
    /// down by those made after it.
    grants: Vec<Millis>,
}

impl Default for SharedIdentifyQueue {
    fn default() -> Self {
        SharedIdentifyQueue::new()
    }
}

impl SharedIdentifyQueue {
    /// An empty queue.
    pub fn new() -> SharedIdentifyQueue {
        SharedIdentifyQueue {
            state: Arc::new(Mutex::new(QueueState {
                epoch: Instant::now(),
                next_free: BTreeMap::new(),
                budget: None,
                grants: Vec::new(),
            })),
        }
    }

    /// When `bucket` may identify next, if it identified recently.
    pub fn next_free(&self, bucket: u32) -> Option<Instant> {
        crate::lock::lock(&self.state)
            .next_free
            .get(&bucket)
            .copied()
    }

    /// Session starts left in the budget the queue counts, once a request carried a reading.
    ///
    /// ```
    /// use openflume::SharedIdentifyQueue;
    /// assert_eq!(SharedIdentifyQueue::new().session_starts_left(), None);
    /// ```
    pub fn session_starts_left(&self) -> Option<u32> {
        crate::lock::lock(&self.state)
            .budget
            .map(|budget| budget.remaining)
    }
}

impl QueueState {
    fn millis(&self, at: Instant) -> Millis {
        let elapsed = at.saturating_duration_since(self.epoch).as_millis();
        Millis(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Millis) -> Instant {
        self.epoch + Duration::from_millis(at.0)
    }

    /// Takes a session start and the bucket's next turn: when the IDENTIFY may go; or, with
    /// the budget spent, when Discord refills it.
    fn turn(&mut self, request: &IdentifyRequest, asked: Instant) -> Result<Instant, Instant> {
        let now = Instant::now();
        let now_ms = self.millis(now);
        self.grants
            .retain(|at| now_ms.0.saturating_sub(at.0) < GRANTS_KEPT_MS);
        let since_request = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX);
        let reading = request
            .session_start_limit
            .map(|reading| BudgetReading::place(reading, now_ms, since_request));
        let uncounted = reading.map_or(0, |reading| {
            let since = reading.uncounted_since();
            self.grants.iter().filter(|at| **at >= since).count()
        });
        let uncounted = u32::try_from(uncounted).unwrap_or(u32::MAX);
        self.budget = SessionBudget::reconcile(self.budget, reading, uncounted, now_ms);
        if let Some(budget) = self.budget {
            match budget.take() {
                Ok(after) => self.budget = Some(after),
                Err(refill) => return Err(self.instant(refill)),
            }
        }
        // max_concurrency 0: no bucket limit (a gateway proxy paces).
        let at = if request.max_concurrency == 0 {
            now
        } else {
            let slot = self.next_free.entry(request.bucket).or_insert(now);
            let at = (*slot).max(now);
            *slot = at + Duration::from_millis(IDENTIFY_SPACING_MS);
            at
        };
        let at_ms = self.millis(at);
        self.grants.push(at_ms);
        Ok(at)
    }
}

impl IdentifyGate for SharedIdentifyQueue {
    fn grant(&self, request: IdentifyRequest, holds: HoldReporter) -> Grant {
        let state = self.state.clone();
        let asked = Instant::now();
        Box::pin(async move {
            let mut told_budget = false;
            loop {
                let turn = crate::lock::lock(&state).turn(&request, asked);
                let now = Instant::now();
                match turn {
                    Ok(at) => {
                        if at > now {
                            holds.report(Hold::Bucket { wait: at - now });
                        }
                        async_io::Timer::at(at).await;
                        return;
                    }
                    Err(refill) => {
                        if !told_budget {
                            told_budget = true;
                            holds.report(Hold::SessionStartLimit {
                                wait: refill.saturating_duration_since(now),
                            });
                        }
                        async_io::Timer::at(refill.min(now + BUDGET_RECHECK)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::discord::SessionStartReading;

    fn request(shard_id: u32, remaining: Option<u32>) -> IdentifyRequest {
        IdentifyRequest {
            shard_id,
            shard_count: 8,
            bucket: shard_id % 8,
            max_concurrency: 8,
            session_start_limit: remaining.map(|remaining| SessionStartReading {
                total: 1000,
                remaining,
                reset_after: 3_600_000,
                age: 0,
            }),
        }
    }

    /// Two requests that read the same figure share it: the third grant waits for the refill,
    /// an hour away.
    #[test]
    fn the_budget_is_shared_by_every_request() {
        let queue = SharedIdentifyQueue::new();
        let mut state = crate::lock::lock(&queue.state);
        let asked = Instant::now();
        assert!(state.turn(&request(0, Some(2)), asked).is_ok());
        assert!(state.turn(&request(1, Some(2)), asked).is_ok());
        let refill = state
            .turn(&request(2, Some(2)), asked)
            .expect_err("the budget is spent");
        assert!(refill > Instant::now() + Duration::from_secs(3_500));
        assert_eq!(state.budget.map(|budget| budget.remaining), Some(0));
        // A request that read nothing is held too: the budget is the bot's.
        assert!(state.turn(&request(3, None), asked).is_err());
    }

    #[test]
    fn without_a_reading_only_buckets_pace() {
        let queue = SharedIdentifyQueue::new();
        let mut state = crate::lock::lock(&queue.state);
        let asked = Instant::now();
        for shard in 0..20 {
            assert!(state.turn(&request(shard, None), asked).is_ok());
        }
        assert_eq!(state.budget, None);
    }
}
