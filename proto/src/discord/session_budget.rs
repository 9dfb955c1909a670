//! The daily session-start budget as an identify queue shared by several processes counts it
//! ([`IdentifyQueue::External`](super::IdentifyQueue)): pure rules, so that a queue in memory
//! and one in Redis count alike, on whatever clock the queue keeps.
//!
//! Each [`IdentifyRequest`](super::IdentifyRequest) carries `/gateway/bot`'s figure as its
//! machine last read it; the queue keeps one count for the bot ([`SessionBudget`]) and takes a
//! session start from it for each grant. The rules, and why:
//!
//! - **The first reading makes the count**: Discord's `remaining` less the grants made since it
//!   was read, expiring when Discord refills the budget.
//! - **A later reading can lower the count, never raise it.** Discord's figure is the truth at
//!   the moment it was read, so that figure less every grant made since is an upper bound of
//!   what is left, and so is the count: the lower of the two holds. A lower figure means session
//!   starts the queue did not grant (the token used elsewhere): adopting it keeps the token safe.
//!   A higher one means grants never used (a shard stopped before its IDENTIFY) or an IDENTIFY in
//!   flight while Discord answered, which the queue cannot tell apart; raising the count on it
//!   could pass the limit, and an exhausted budget resets the token, where a count too low costs
//!   a few session starts until the refill.
//! - **Grants up to [`READING_LAG_MS`] before a reading count as after it**: a grant's IDENTIFY
//!   reaches Discord a little after the grant, and the moment of a reading is known only to
//!   within its HTTP round trip. Counting one twice costs a session start; missing one could
//!   pass the limit.
//! - **A reading of an ended period tells nothing of the current one.** With no count, the
//!   queue assumes a refilled budget (`total`) for 24 h, as
//!   [`IdentifyLimiter`](super::IdentifyLimiter) does, until a reading of the new period replaces
//!   the guess, its reset time included.
//! - **A reading of an earlier period than the count's is ignored** (one that resets more than
//!   [`READING_LAG_MS`] before it): its low figure belongs to a budget Discord has refilled.
//! - **An exhausted count holds every grant until it expires**, and never goes below zero.

use super::SessionStartReading;
use super::identify::BUDGET_PERIOD_MS;
use crate::Millis;
use serde::{Deserialize, Serialize};

/// How long before a reading a grant may have been made and still be missing from Discord's
/// figure: the grant's IDENTIFY was on its way, or the reading's HTTP round trip hides when
/// Discord counted. Such grants are taken off the reading.
pub const READING_LAG_MS: u64 = 5_000;

/// A request's [`SessionStartReading`] placed on the queue's clock.
///
/// ```
/// use openflume_proto::discord::{BudgetReading, SessionStartReading};
/// use openflume_proto::Millis;
/// let reading = SessionStartReading { total: 1000, remaining: 7, reset_after: 60_000, age: 250 };
/// // The queue looks at it 50 ms after the request, at 10 000 on its clock.
/// let placed = BudgetReading::place(reading, Millis(10_000), 50);
/// assert_eq!(placed.read_at, Millis(9_700));
/// assert_eq!(placed.reset_at, Millis(69_950));
/// assert_eq!(placed.uncounted_since(), Millis(4_700));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetReading {
    /// Session starts allowed per 24 h.
    pub total: u32,
    /// Session starts left when Discord answered.
    pub remaining: u32,
    /// When Discord answered.
    pub read_at: Millis,
    /// When Discord refills the budget.
    pub reset_at: Millis,
}

impl BudgetReading {
    /// `reading` on the queue's clock, looked at `now`, `since_request` ms after the request
    /// was made (the reading's durations count from the request).
    pub fn place(reading: SessionStartReading, now: Millis, since_request: u64) -> BudgetReading {
        let asked_at = Millis(now.0.saturating_sub(since_request));
        BudgetReading {
            total: reading.total,
            remaining: reading.remaining,
            read_at: Millis(asked_at.0.saturating_sub(reading.age)),
            reset_at: asked_at + reading.reset_after,
        }
    }

    /// Grants made at or after this moment may be missing from the figure: they are taken off
    /// it ([`SessionBudget::reconcile`]'s `uncounted`).
    pub fn uncounted_since(&self) -> Millis {
        Millis(self.read_at.0.saturating_sub(READING_LAG_MS))
    }
}

/// Where a count's figure comes from.
///
/// ```
/// use openflume_proto::discord::BudgetBasis;
/// assert_eq!(serde_json::to_string(&BudgetBasis::Assumed).unwrap(), r#""assumed""#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetBasis {
    /// A `/gateway/bot` reading of this budget period.
    Read,
    /// A guess: a refilled budget after a period no reading covers.
    Assumed,
}

/// The bot's session starts left, as an identify queue shared by its processes counts them
/// (the module docs have the rules).
///
/// ```
/// use openflume_proto::discord::{BudgetReading, SessionBudget};
/// use openflume_proto::Millis;
/// let reading = BudgetReading { total: 1000, remaining: 2, read_at: Millis(0), reset_at: Millis(60_000) };
/// // The first reading makes the count; one grant was made since it was read.
/// let count = SessionBudget::reconcile(None, Some(reading), 1, Millis(1_000)).unwrap();
/// assert_eq!(count.remaining, 1);
/// let count = count.take().unwrap();
/// assert_eq!(count.take(), Err(Millis(60_000))); // spent: wait for the refill
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionBudget {
    /// Session starts left.
    pub remaining: u32,
    /// When Discord refills the budget: the count expires then.
    pub reset_at: Millis,
    /// Where the figure comes from.
    pub basis: BudgetBasis,
}

impl SessionBudget {
    /// The count that holds at `now`, from the one the queue kept (`stored`; an expired one
    /// counts as none), a request's `reading` (if its machine read one), and `uncounted`: the
    /// grants made since [`reading.uncounted_since()`](BudgetReading::uncounted_since). `None`
    /// when nothing is known of the budget (no count, no reading): only the buckets pace.
    pub fn reconcile(
        stored: Option<SessionBudget>,
        reading: Option<BudgetReading>,
        uncounted: u32,
        now: Millis,
    ) -> Option<SessionBudget> {
        let stored = stored.filter(|count| count.reset_at > now);
        let current = reading.filter(|reading| reading.reset_at > now);
        let left = |reading: BudgetReading| reading.remaining.saturating_sub(uncounted);
        match (stored, current) {
            (None, Some(reading)) => Some(SessionBudget {
                remaining: left(reading),
                reset_at: reading.reset_at,
                basis: BudgetBasis::Read,
            }),
            // Only a reading of an ended period: Discord has refilled the budget since.
            (None, None) => reading.map(|reading| SessionBudget {
                remaining: reading.total,
                reset_at: now + BUDGET_PERIOD_MS,
                basis: BudgetBasis::Assumed,
            }),
            (Some(count), None) => Some(count),
            // A reading of the period replaces a guess's reset time.
            (Some(count), Some(reading)) if count.basis == BudgetBasis::Assumed => {
                Some(SessionBudget {
                    remaining: count.remaining.min(left(reading)),
                    reset_at: reading.reset_at,
                    basis: BudgetBasis::Read,
                })
            }
            // A reading of the period before the count's.
            (Some(count), Some(reading)) if reading.reset_at + READING_LAG_MS < count.reset_at => {
                Some(count)
            }
            (Some(count), Some(reading)) => Some(SessionBudget {
                remaining: count.remaining.min(left(reading)),
                ..count
            }),
        }
    }

    /// Takes one session start: the count after it, or, when none is left, the moment Discord
    /// refills the budget.
    pub fn take(self) -> Result<SessionBudget, Millis> {
        match self.remaining.checked_sub(1) {
            Some(remaining) => Ok(SessionBudget { remaining, ..self }),
            None => Err(self.reset_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(remaining: u32, read_at: u64, reset_at: u64) -> BudgetReading {
        BudgetReading {
            total: 1000,
            remaining,
            read_at: Millis(read_at),
            reset_at: Millis(reset_at),
        }
    }

    fn count(remaining: u32, reset_at: u64, basis: BudgetBasis) -> SessionBudget {
        SessionBudget {
            remaining,
            reset_at: Millis(reset_at),
            basis,
        }
    }

    use BudgetBasis::{Assumed, Read};

    /// (stored, reading, uncounted, now, expected)
    #[test]
    fn reconcile() {
        type Case = (
            Option<SessionBudget>,
            Option<BudgetReading>,
            u32,
            u64,
            Option<SessionBudget>,
        );
        let day = BUDGET_PERIOD_MS;
        let cases: &[Case] = &[
            // Nothing known: buckets only.
            (None, None, 0, 1_000, None),
            // The first reading makes the count, less the grants since it.
            (
                None,
                Some(read(5, 0, 60_000)),
                0,
                1_000,
                Some(count(5, 60_000, Read)),
            ),
            (
                None,
                Some(read(5, 0, 60_000)),
                2,
                1_000,
                Some(count(3, 60_000, Read)),
            ),
            (
                None,
                Some(read(1, 0, 60_000)),
                4,
                1_000,
                Some(count(0, 60_000, Read)),
            ),
            // A reading of an ended period, no count: a refilled budget is assumed for 24 h.
            (
                None,
                Some(read(0, 0, 60_000)),
                0,
                60_000,
                Some(count(1000, 60_000 + day, Assumed)),
            ),
            // A count and no reading: the count.
            (
                Some(count(3, 60_000, Read)),
                None,
                0,
                1_000,
                Some(count(3, 60_000, Read)),
            ),
            // An expired count is none.
            (Some(count(3, 60_000, Read)), None, 0, 60_000, None),
            (
                Some(count(0, 60_000, Read)),
                Some(read(9, 61_000, 90_000)),
                0,
                61_000,
                Some(count(9, 90_000, Read)),
            ),
            // A later reading that is higher (grants it does not know of) changes nothing ...
            (
                Some(count(3, 60_000, Read)),
                Some(read(5, 0, 60_000)),
                2,
                1_000,
                Some(count(3, 60_000, Read)),
            ),
            (
                Some(count(3, 60_000, Read)),
                Some(read(9, 500, 60_000)),
                0,
                1_000,
                Some(count(3, 60_000, Read)),
            ),
            // ... a lower one (session starts the queue did not grant) lowers it.
            (
                Some(count(3, 60_000, Read)),
                Some(read(2, 500, 60_010)),
                1,
                1_000,
                Some(count(1, 60_000, Read)),
            ),
            // A reading of the period before the count's is ignored, low as it is.
            (
                Some(count(900, day, Read)),
                Some(read(0, 0, 60_000)),
                0,
                1_000,
                Some(count(900, day, Read)),
            ),
            // A reading of the period replaces a guess, and its reset time.
            (
                Some(count(990, day, Assumed)),
                Some(read(995, 500, 30_000)),
                0,
                1_000,
                Some(count(990, 30_000, Read)),
            ),
            (
                Some(count(990, day, Assumed)),
                Some(read(500, 500, 30_000)),
                3,
                1_000,
                Some(count(497, 30_000, Read)),
            ),
            // A stale reading leaves a guess as it is.
            (
                Some(count(990, day, Assumed)),
                Some(read(0, 0, 500)),
                0,
                1_000,
                Some(count(990, day, Assumed)),
            ),
        ];
        for (i, &(stored, reading, uncounted, now, expected)) in cases.iter().enumerate() {
            assert_eq!(
                SessionBudget::reconcile(stored, reading, uncounted, Millis(now)),
                expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn take_counts_down_to_zero_then_waits_for_the_reset() {
        let mut budget = count(2, 60_000, Read);
        for left in [1, 0] {
            budget = budget.take().unwrap();
            assert_eq!(budget.remaining, left);
        }
        assert_eq!(budget.take(), Err(Millis(60_000)));
    }

    /// Two processes that each read `remaining` 3 before either identified, sharing one count:
    /// three grants between them, not six.
    #[test]
    fn two_readers_of_one_figure_share_it() {
        let mut stored = None;
        let mut grants: Vec<Millis> = Vec::new();
        let mut granted = 0;
        for step in 0..6u64 {
            let now = Millis(1_000 + step * 5_000);
            let reading = read(3, 500 + step % 2, 600_000);
            let uncounted = grants
                .iter()
                .filter(|at| **at >= reading.uncounted_since())
                .count() as u32;
            let current = SessionBudget::reconcile(stored, Some(reading), uncounted, now);
            match current.map(SessionBudget::take) {
                Some(Ok(after)) => {
                    stored = Some(after);
                    grants.push(now);
                    granted += 1;
                }
                Some(Err(until)) => {
                    assert_eq!(until, Millis(600_000));
                    stored = current;
                }
                None => unreachable!("a reading makes a count"),
            }
        }
        assert_eq!(granted, 3);
    }
}
