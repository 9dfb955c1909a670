//! Reconnect delays: exponential backoff with jitter from the machine's seeded RNG.

use serde::{Deserialize, Serialize};

/// How a source retries after losing its connection or after errors.
///
/// ```
/// use openflume_proto::ReconnectPolicy;
/// let policy = ReconnectPolicy::default();
/// assert_eq!((policy.base_ms, policy.max_ms, policy.max_attempts), (1000, 30_000, None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconnectPolicy {
    /// Give up after this many consecutive failed attempts; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// The first delay's upper bound, in ms.
    pub base_ms: u64,
    /// No delay exceeds this, in ms.
    pub max_ms: u64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            max_attempts: None,
            base_ms: 1000,
            max_ms: 30_000,
        }
    }
}

/// Counts consecutive failures and turns them into delays.
///
/// The delay for attempt `n` (0-based) is drawn uniformly from `[cap/2, cap]` where
/// `cap = min(base · 2ⁿ, max)`: "equal jitter", which spreads a fleet of clients apart while
/// never retrying sooner than half the nominal delay (full jitter can retry at once, a hot loop).
///
/// ```
/// use openflume_proto::{Backoff, ReconnectPolicy};
/// let mut rng = fastrand::Rng::with_seed(7);
/// let mut backoff = Backoff::new(ReconnectPolicy { max_attempts: Some(2), base_ms: 100, max_ms: 1000 });
/// let first = backoff.next_delay(&mut rng).unwrap();
/// assert!((50..=100).contains(&first));
/// let second = backoff.next_delay(&mut rng).unwrap();
/// assert!((100..=200).contains(&second));
/// assert_eq!(backoff.next_delay(&mut rng), None); // attempts exhausted
/// backoff.reset();
/// assert!(backoff.next_delay(&mut rng).is_some());
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
}

impl Backoff {
    /// A fresh counter for `policy`.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let backoff = Backoff::new(ReconnectPolicy::default());
    /// assert_eq!(backoff.attempts(), 0);
    /// assert_eq!(backoff.policy(), ReconnectPolicy::default());
    /// ```
    pub fn new(policy: ReconnectPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// A counter that has already made `attempts` attempts: for a retry schedule kept across
    /// restarts (the outbox persists its attempt count), so the next delay continues the curve
    /// instead of starting over.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let mut rng = fastrand::Rng::with_seed(3);
    /// let policy = ReconnectPolicy { max_attempts: None, base_ms: 100, max_ms: 10_000 };
    /// let mut resumed = Backoff::with_attempts(policy, 3);
    /// assert_eq!(resumed.attempts(), 3);
    /// assert!((400..=800).contains(&resumed.next_delay(&mut rng).unwrap())); // cap 100 · 2³
    /// ```
    pub fn with_attempts(policy: ReconnectPolicy, attempts: u32) -> Backoff {
        Backoff {
            policy,
            attempt: attempts,
        }
    }

    /// The delay before the next attempt, or `None` once `max_attempts` is spent.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let mut rng = fastrand::Rng::with_seed(1);
    /// let policy = ReconnectPolicy { max_attempts: None, base_ms: 1000, max_ms: 1500 };
    /// let mut backoff = Backoff::new(policy);
    /// backoff.next_delay(&mut rng); // cap 1000
    /// backoff.next_delay(&mut rng); // cap 1500: 2000 is over the maximum
    /// let third = backoff.next_delay(&mut rng).unwrap();
    /// assert!((750..=1500).contains(&third));
    /// ```
    pub fn next_delay(&mut self, rng: &mut fastrand::Rng) -> Option<u64> {
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let max = self.policy.max_ms.max(1);
        let nominal = u128::from(self.policy.base_ms.max(1)) << self.attempt.min(64);
        let cap = nominal.min(u128::from(max)) as u64;
        self.attempt = self.attempt.saturating_add(1);
        Some(rng.u64(cap / 2..=cap))
    }

    /// Consecutive attempts made so far.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let mut rng = fastrand::Rng::with_seed(1);
    /// let mut backoff = Backoff::new(ReconnectPolicy::default());
    /// backoff.next_delay(&mut rng);
    /// backoff.next_delay(&mut rng);
    /// assert_eq!(backoff.attempts(), 2);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over; call once a connection reached `connected`.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let mut rng = fastrand::Rng::with_seed(1);
    /// let policy = ReconnectPolicy { max_attempts: None, base_ms: 100, max_ms: 10_000 };
    /// let mut backoff = Backoff::new(policy);
    /// for _ in 0..5 {
    ///     backoff.next_delay(&mut rng);
    /// }
    /// backoff.reset();
    /// assert_eq!(backoff.attempts(), 0);
    /// assert!(backoff.next_delay(&mut rng).unwrap() <= 100); // back to the first delay
    /// ```
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The policy.
    ///
    /// ```
    /// use openflume_proto::{Backoff, ReconnectPolicy};
    /// let policy = ReconnectPolicy { max_attempts: Some(3), ..ReconnectPolicy::default() };
    /// assert_eq!(Backoff::new(policy).policy().max_attempts, Some(3));
    /// ```
    pub fn policy(&self) -> ReconnectPolicy {
        self.policy
    }
}
