//! IDENTIFY pacing: Discord allows `max_concurrency` IDENTIFYs per 5 s (one per bucket
//! `shard_id % max_concurrency`) and a daily budget of session starts. Too fast gets op 9; an
//! exhausted budget resets the bot token. RESUME counts against neither.
//!
//! One limiter must serve every shard of a bot, so it is a plain value: a standalone
//! [`DiscordShard`](super::DiscordShard) owns one, and [`DiscordGateway`](super::DiscordGateway)
//! lends one shared limiter to all of its shards.
//!
//! Shards of one bot in several processes need one queue across them all: see
//! [`IdentifyQueue`] for the contract of an external one.

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Minimum spacing of two IDENTIFYs in one bucket.
pub const IDENTIFY_SPACING_MS: u64 = 5_000;

/// Who paces a shard's IDENTIFYs.
///
/// Shards of one bot in several processes need one queue across them all. Then the machine does
/// not decide; it asks ([`IdentifyQueue::External`]):
///
/// 1. After HELLO, when a new session must start, the shard emits
///    [`Output::IdentifyRequest`](crate::Output::IdentifyRequest) with its
///    [`IdentifyRequest`] (shard, bucket `shard_id % max_concurrency`, `max_concurrency`) and waits,
///    heartbeating. It asks once: while a request is outstanding it asks no more, over reconnects
///    too.
/// 2. The coordinator (the driver's; a Redis lock, say) grants at most one IDENTIFY per bucket
///    per [`IDENTIFY_SPACING_MS`], buckets of every process together, and counts each grant
///    against the daily `session_start_limit` of `GET /gateway/bot`, which each request carries
///    as its machine last read it (when none is left it holds the grants until the refill;
///    never grants past it: an exhausted budget resets the token). [`SessionBudget`](super::SessionBudget)
///    has the counting rules. It answers with
///    [`Input::IdentifyGranted`](crate::Input::IdentifyGranted) `{ shard }`, and may say
///    meanwhile why it holds the request
///    ([`Input::IdentifyWaiting`](crate::Input::IdentifyWaiting)), which the shard logs.
/// 3. The shard sends IDENTIFY at once on the grant. A grant that finds the shard not waiting
///    (its connection dropped meanwhile) is spent: it is logged, and the next HELLO asks again.
///    A grant is used at most once, so the coordinator's count holds.
///
/// RESUMEs are never asked for: they count against neither limit. Without an external
/// coordinator ([`IdentifyQueue::InProcess`], the default) the [`IdentifyLimiter`] does all this
/// in the machine, for the shards of one process.
///
/// ```
/// use openflume_proto::discord::IdentifyQueue;
/// let queue: IdentifyQueue = serde_json::from_str(r#""external""#).unwrap();
/// assert_eq!(queue, IdentifyQueue::External);
/// assert_eq!(IdentifyQueue::default(), IdentifyQueue::InProcess);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentifyQueue {
    /// The machine's own [`IdentifyLimiter`] (shared by a gateway's shards): right for one process.
    #[default]
    InProcess,
    /// A coordinator outside the machine: every IDENTIFY waits for
    /// [`Input::IdentifyGranted`](crate::Input::IdentifyGranted) after an
    /// [`Output::IdentifyRequest`](crate::Output::IdentifyRequest). Only for a driver that grants.
    External,
}

/// A shard asks an external coordinator for leave to IDENTIFY
/// ([`Output::IdentifyRequest`](crate::Output::IdentifyRequest)); answer with
/// [`Input::IdentifyGranted`](crate::Input::IdentifyGranted) `{ shard: shard_id }`.
///
/// ```
/// use openflume_proto::discord::{IdentifyRequest, SessionStartReading};
/// let mut request = IdentifyRequest {
///     shard_id: 5,
///     shard_count: 16,
///     bucket: 1,
///     max_concurrency: 4,
///     session_start_limit: None,
/// };
/// assert_eq!(
///     serde_json::to_string(&request).unwrap(),
///     r#"{"shard_id":5,"shard_count":16,"bucket":1,"max_concurrency":4}"#
/// );
/// request.session_start_limit =
///     Some(SessionStartReading { total: 1000, remaining: 7, reset_after: 60_000, age: 250 });
/// assert!(serde_json::to_string(&request).unwrap().ends_with(
///     r#""session_start_limit":{"total":1000,"remaining":7,"reset_after":60000,"age":250}}"#
/// ));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifyRequest {
    /// The shard that would identify.
    pub shard_id: u32,
    /// The bot's shard count.
    pub shard_count: u32,
    /// Its rate-limit key, `shard_id % max_concurrency`: one IDENTIFY per bucket per 5 s.
    pub bucket: u32,
    /// `session_start_limit.max_concurrency` as the machine knows it (from `/gateway/bot`, or
    /// the configuration); 0 means no bucket limit (a gateway proxy that paces itself).
    pub max_concurrency: u32,
    /// The daily session-start budget as the machine last read it from `/gateway/bot`, so that
    /// the coordinator can count it across processes; `None` when it never read one (a
    /// configured gateway URL skips the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_start_limit: Option<SessionStartReading>,
}

/// `session_start_limit` as a machine read it from `GET /gateway/bot`, aged to the moment it
/// asks: Discord's figure is the truth at the time it was read, and only the coordinator knows
/// what was granted since (see [`SessionBudget`](super::SessionBudget)).
///
/// ```
/// use openflume_proto::discord::{IdentifyLimiter, SessionStartLimit, SessionStartReading};
/// use openflume_proto::Millis;
/// let mut limiter = IdentifyLimiter::default();
/// let limit = SessionStartLimit { total: 1000, remaining: 7, reset_after: 60_000, max_concurrency: 1 };
/// limiter.set_session_start_limit(limit, Millis(100));
/// assert_eq!(
///     limiter.reading(Millis(350)),
///     Some(SessionStartReading { total: 1000, remaining: 7, reset_after: 59_750, age: 250 })
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStartReading {
    /// Session starts allowed per 24 h.
    pub total: u32,
    /// Session starts left when Discord answered (the machine does not count down from it).
    pub remaining: u32,
    /// Milliseconds from the request until Discord refills the budget; 0 once that moment has
    /// passed (the figure is then of an earlier budget period).
    pub reset_after: u64,
    /// Milliseconds from Discord's answer to the request.
    pub age: u64,
}

/// How long a session-start budget lasts once refilled: 24 h.
pub(crate) const BUDGET_PERIOD_MS: u64 = 24 * 60 * 60 * 1000;

/// `session_start_limit` from `GET /gateway/bot`.
///
/// ```
/// use openflume_proto::discord::SessionStartLimit;
/// let limit: SessionStartLimit = serde_json::from_str(
///     r#"{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":1}"#,
/// ).unwrap();
/// assert_eq!(limit.remaining, 999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStartLimit {
    /// Session starts allowed per 24 h.
    pub total: u32,
    /// Session starts left.
    pub remaining: u32,
    /// Milliseconds until `remaining` is refilled.
    pub reset_after: u64,
    /// IDENTIFYs allowed per 5 s, one per bucket.
    pub max_concurrency: u32,
}

/// Why an IDENTIFY has to wait, and until when: the machine's own limiter says it, and an
/// external coordinator tells a shard with
/// [`Input::IdentifyWaiting`](crate::Input::IdentifyWaiting).
///
/// ```
/// use openflume_proto::discord::IdentifyWait;
/// use openflume_proto::Millis;
/// let wait: IdentifyWait = serde_json::from_str(r#"{"budget":{"until":9000}}"#).unwrap();
/// assert_eq!(wait, IdentifyWait::Budget { until: Millis(9_000) });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentifyWait {
    /// The shard's bucket identified less than 5 s ago.
    Bucket {
        /// When the bucket frees.
        until: Millis,
    },
    /// The daily session-start budget is spent.
    Budget {
        /// When Discord refills it.
        until: Millis,
    },
}

impl IdentifyWait {
    /// When the IDENTIFY may go.
    pub fn until(self) -> Millis {
        match self {
            IdentifyWait::Bucket { until } | IdentifyWait::Budget { until } => until,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Budget {
    total: u32,
    remaining: u32,
    reset_at: Millis,
}

/// Hands out IDENTIFY permits: one per bucket per [`IDENTIFY_SPACING_MS`], within the daily budget
/// once [`set_session_start_limit`](Self::set_session_start_limit) told it one.
///
/// `max_concurrency = 0` grants every request at once (for a gateway proxy that paces itself).
///
/// ```
/// use openflume_proto::discord::{IdentifyLimiter, IdentifyWait};
/// use openflume_proto::Millis;
/// let mut limiter = IdentifyLimiter::new(2);
/// assert_eq!(limiter.try_acquire(0, Millis(0)), Ok(()));
/// assert_eq!(limiter.try_acquire(1, Millis(0)), Ok(())); // another bucket
/// assert_eq!(limiter.try_acquire(2, Millis(10)), Err(IdentifyWait::Bucket { until: Millis(5_000) }));
/// assert_eq!(limiter.try_acquire(2, Millis(5_000)), Ok(()));
/// ```
#[derive(Clone, Debug)]
pub struct IdentifyLimiter {
    max_concurrency: u32,
    /// Last IDENTIFY per bucket; at most `min(max_concurrency, shards)` entries.
    last_identify: BTreeMap<u32, Millis>,
    budget: Option<Budget>,
    /// `/gateway/bot`'s figure as read, and when: what an external coordinator is told.
    read: Option<(SessionStartLimit, Millis)>,
}

impl Default for IdentifyLimiter {
    /// One bucket and no known budget: what a bot without `/gateway/bot` data must assume.
    fn default() -> Self {
        IdentifyLimiter::new(1)
    }
}

impl IdentifyLimiter {
    /// A limiter with `max_concurrency` buckets and no daily budget.
    pub fn new(max_concurrency: u32) -> IdentifyLimiter {
        IdentifyLimiter {
            max_concurrency,
            last_identify: BTreeMap::new(),
            budget: None,
            read: None,
        }
    }

    /// Adopts `/gateway/bot`'s limits, read at `now`.
    ///
    /// ```
    /// use openflume_proto::discord::{IdentifyLimiter, IdentifyWait, SessionStartLimit};
    /// use openflume_proto::Millis;
    /// let mut limiter = IdentifyLimiter::default();
    /// let limit = SessionStartLimit { total: 1000, remaining: 0, reset_after: 60_000, max_concurrency: 1 };
    /// limiter.set_session_start_limit(limit, Millis(100));
    /// assert_eq!(limiter.wait(0, Millis(100)), Some(IdentifyWait::Budget { until: Millis(60_100) }));
    /// assert_eq!(limiter.wait(0, Millis(60_100)), None);
    /// ```
    pub fn set_session_start_limit(&mut self, limit: SessionStartLimit, now: Millis) {
        self.max_concurrency = limit.max_concurrency;
        self.budget = Some(Budget {
            total: limit.total,
            remaining: limit.remaining,
            reset_at: now + limit.reset_after,
        });
        self.read = Some((limit, now));
    }

    /// The last `/gateway/bot` figure, aged to `now`, for an external coordinator (an
    /// [`IdentifyRequest`] carries it); `None` before one was read.
    ///
    /// ```
    /// use openflume_proto::discord::{IdentifyLimiter, SessionStartLimit};
    /// use openflume_proto::Millis;
    /// let mut limiter = IdentifyLimiter::default();
    /// assert_eq!(limiter.reading(Millis(0)), None);
    /// let limit = SessionStartLimit { total: 1000, remaining: 3, reset_after: 1_000, max_concurrency: 1 };
    /// limiter.set_session_start_limit(limit, Millis(0));
    /// // Counting down is the coordinator's job: the figure stays Discord's.
    /// limiter.try_acquire(0, Millis(0)).unwrap();
    /// let later = limiter.reading(Millis(5_000)).unwrap();
    /// assert_eq!((later.remaining, later.reset_after, later.age), (3, 0, 5_000));
    /// ```
    pub fn reading(&self, now: Millis) -> Option<SessionStartReading> {
        self.read.map(|(limit, read_at)| SessionStartReading {
            total: limit.total,
            remaining: limit.remaining,
            reset_after: (read_at + limit.reset_after) - now,
            age: now - read_at,
        })
    }

    /// `max_concurrency`: the number of buckets (0: no bucket limit).
    pub fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// The bucket of `shard_id`: `shard_id % max_concurrency`.
    pub fn bucket(&self, shard_id: u32) -> u32 {
        shard_id.checked_rem(self.max_concurrency).unwrap_or(0)
    }

    /// Session starts left in the current budget period, when known.
    pub fn remaining(&self) -> Option<u32> {
        self.budget.map(|budget| budget.remaining)
    }

    /// Why `shard_id` may not IDENTIFY at `now`, or `None` when it may. When both the bucket
    /// and the budget block, the later of the two is reported.
    pub fn wait(&self, shard_id: u32, now: Millis) -> Option<IdentifyWait> {
        let budget = self
            .budget
            .filter(|budget| budget.remaining == 0 && now < budget.reset_at)
            .map(|budget| IdentifyWait::Budget {
                until: budget.reset_at,
            });
        let bucket = if self.max_concurrency == 0 {
            None
        } else {
            self.last_identify
                .get(&self.bucket(shard_id))
                .map(|&last| last + IDENTIFY_SPACING_MS)
                .filter(|&until| until > now)
                .map(|until| IdentifyWait::Bucket { until })
        };
        match (budget, bucket) {
            (Some(budget), Some(bucket)) if bucket.until() > budget.until() => Some(bucket),
            (Some(budget), _) => Some(budget),
            (None, bucket) => bucket,
        }
    }

    /// Takes a permit for `shard_id` at `now`, or says how long to wait.
    pub fn try_acquire(&mut self, shard_id: u32, now: Millis) -> Result<(), IdentifyWait> {
        if let Some(wait) = self.wait(shard_id, now) {
            return Err(wait);
        }
        if let Some(budget) = &mut self.budget {
            if now >= budget.reset_at {
                budget.remaining = budget.total;
                budget.reset_at = now + BUDGET_PERIOD_MS;
            }
            budget.remaining = budget.remaining.saturating_sub(1);
        }
        if self.max_concurrency != 0 {
            let bucket = self.bucket(shard_id);
            self.last_identify.insert(bucket, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(remaining: u32, reset_after: u64, max_concurrency: u32) -> SessionStartLimit {
        SessionStartLimit {
            total: 1000,
            remaining,
            reset_after,
            max_concurrency,
        }
    }

    /// (max_concurrency, [(shard, at, expected)]) replayed in order on one limiter.
    #[test]
    fn buckets_space_identifies_five_seconds_apart() {
        type Step = (u32, u64, Result<(), IdentifyWait>);
        let bucket = |until| {
            Err(IdentifyWait::Bucket {
                until: Millis(until),
            })
        };
        let cases: &[(u32, &[Step])] = &[
            (
                1,
                &[
                    (0, 0, Ok(())),
                    (1, 0, bucket(5_000)),
                    (1, 4_999, bucket(5_000)),
                    (1, 5_000, Ok(())),
                    (0, 9_000, bucket(10_000)),
                    (0, 10_000, Ok(())),
                ],
            ),
            (
                4,
                &[
                    (0, 0, Ok(())),
                    (1, 0, Ok(())),
                    (2, 0, Ok(())),
                    (3, 0, Ok(())),
                    (4, 0, bucket(5_000)),
                    (7, 1, bucket(5_000)),
                    (5, 5_000, Ok(())),
                    (4, 5_000, Ok(())),
                    (8, 5_001, bucket(10_000)),
                ],
            ),
            (0, &[(0, 0, Ok(())), (0, 0, Ok(())), (9, 1, Ok(()))]),
        ];
        for (max_concurrency, steps) in cases {
            let mut limiter = IdentifyLimiter::new(*max_concurrency);
            for (i, &(shard, at, expected)) in steps.iter().enumerate() {
                assert_eq!(
                    limiter.try_acquire(shard, Millis(at)),
                    expected,
                    "max_concurrency {max_concurrency}, step {i}"
                );
            }
        }
    }

    #[test]
    fn exhausted_budget_waits_for_reset_then_refills() {
        let mut limiter = IdentifyLimiter::default();
        limiter.set_session_start_limit(limit(1, 30_000, 1), Millis(0));
        assert_eq!(limiter.try_acquire(0, Millis(0)), Ok(()));
        assert_eq!(limiter.remaining(), Some(0));
        assert_eq!(
            limiter.try_acquire(0, Millis(6_000)),
            Err(IdentifyWait::Budget {
                until: Millis(30_000)
            })
        );
        assert_eq!(limiter.try_acquire(0, Millis(30_000)), Ok(()));
        assert_eq!(limiter.remaining(), Some(999));
        // The next period is 24 h from the refill.
        assert_eq!(limiter.wait(0, Millis(40_000)), None);
    }

    #[test]
    fn the_later_of_bucket_and_budget_wins() {
        let mut limiter = IdentifyLimiter::default();
        limiter.set_session_start_limit(limit(1, 2_000, 1), Millis(0));
        assert_eq!(limiter.try_acquire(0, Millis(0)), Ok(()));
        // Budget refills at 2 000 but the bucket is busy until 5 000.
        assert_eq!(
            limiter.wait(0, Millis(1_000)),
            Some(IdentifyWait::Bucket {
                until: Millis(5_000)
            })
        );
        let mut limiter = IdentifyLimiter::default();
        limiter.set_session_start_limit(limit(0, 9_000, 1), Millis(0));
        assert_eq!(
            limiter.wait(0, Millis(0)),
            Some(IdentifyWait::Budget {
                until: Millis(9_000)
            })
        );
    }

    #[test]
    fn session_start_limit_sets_buckets() {
        let mut limiter = IdentifyLimiter::default();
        limiter.set_session_start_limit(limit(10, 1, 16), Millis(0));
        assert_eq!(limiter.bucket(17), 1);
        assert_eq!(IdentifyLimiter::new(0).bucket(17), 0);
    }
}
