//! When a failed delivery is tried again, and when it is given up.
//!
//! The delay after attempt `n` is exponential with equal jitter ([`Backoff`]): drawn from
//! `[cap/2, cap]`, `cap = min(base · 2ⁿ⁻¹, max)`, from the outbox's seeded RNG. The age limit
//! counts from the delivery's **first attempt** (not from the event's `receivedAt`): every event
//! gets the whole window of retries, even one that waited in the log behind a slow predecessor
//! or while the process was down, so a backlog is never given up wholesale without a try. The
//! schedule never goes past the limit: the last retry is at the limit itself, and a failure at
//! or after it gives the delivery up.

use crate::{Backoff, ReconnectPolicy, UnixMillis};

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Try again at this wall-clock time.
    RetryAt(UnixMillis),
    /// The delivery is older than the limit: give it up.
    GiveUp,
}

/// The retry timing of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetrySchedule {
    pub(crate) base_ms: u64,
    pub(crate) max_ms: u64,
    pub(crate) max_age_ms: u64,
}

impl RetrySchedule {
    /// After the `attempts`-th attempt (counting from 1) failed at `now`, for a delivery first
    /// tried at `first_attempt_at`.
    pub(crate) fn after_failure(
        &self,
        attempts: u32,
        first_attempt_at: UnixMillis,
        now: UnixMillis,
        rng: &mut fastrand::Rng,
    ) -> AfterFailure {
        let age_limit = first_attempt_at
            .0
            .saturating_add(i64::try_from(self.max_age_ms).unwrap_or(i64::MAX));
        if now.0 >= age_limit {
            return AfterFailure::GiveUp;
        }
        let policy = ReconnectPolicy {
            max_attempts: None,
            base_ms: self.base_ms,
            max_ms: self.max_ms,
        };
        let delay = Backoff::with_attempts(policy, attempts.saturating_sub(1))
            .next_delay(rng)
            .unwrap_or(self.max_ms);
        let at = now
            .0
            .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
        AfterFailure::RetryAt(UnixMillis(at.min(age_limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: RetrySchedule = RetrySchedule {
        base_ms: 1_000,
        max_ms: 60_000,
        max_age_ms: 600_000,
    };

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let mut rng = fastrand::Rng::with_seed(11);
        // (attempts so far, nominal cap of the next delay)
        let table = [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (6, 32_000),
            (7, 60_000),
            (40, 60_000),
        ];
        for (attempts, cap) in table {
            for _ in 0..50 {
                let AfterFailure::RetryAt(at) =
                    SCHEDULE.after_failure(attempts, UnixMillis(0), UnixMillis(10), &mut rng)
                else {
                    panic!("gave up early");
                };
                let delay = (at.0 - 10) as u64;
                assert!(
                    (cap / 2..=cap).contains(&delay),
                    "attempt {attempts}: {delay} outside [{}, {cap}]",
                    cap / 2
                );
            }
        }
    }

    #[test]
    fn the_age_limit_counts_from_the_first_attempt() {
        let mut rng = fastrand::Rng::with_seed(5);
        let first = UnixMillis(1_000_000);
        // Just before the limit: one last retry, at the limit and not beyond.
        let near = UnixMillis(first.0 + 599_000);
        assert_eq!(
            SCHEDULE.after_failure(9, first, near, &mut rng),
            AfterFailure::RetryAt(UnixMillis(first.0 + 600_000))
        );
        // At or past the limit: given up.
        for now in [first.0 + 600_000, first.0 + 10_000_000] {
            assert_eq!(
                SCHEDULE.after_failure(10, first, UnixMillis(now), &mut rng),
                AfterFailure::GiveUp
            );
        }
        // A wall clock that stepped back before the first attempt retries, it does not give up.
        assert!(matches!(
            SCHEDULE.after_failure(2, first, UnixMillis(0), &mut rng),
            AfterFailure::RetryAt(_)
        ));
    }
}
