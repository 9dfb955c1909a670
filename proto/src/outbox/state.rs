//! What a target keeps across restarts: small, and written after every attempt's outcome.

use crate::UnixMillis;
use crate::hub::HubPosition;
use serde::{Deserialize, Serialize};

/// One target's persisted outbox state. The driver stores it on every
/// [`OutboxOutput::Persist`](super::OutboxOutput::Persist) and hands the last one back in
/// [`OutboxInput::Start`](super::OutboxInput::Start) after a restart, so a pending delivery and
/// its backoff carry on where they stopped.
///
/// Times are wall-clock: a monotonic instant means nothing to the next process. Positions are
/// `P`: the SQLite log's integer ids by default, or a Redis Stream's
/// [`StreamId`](crate::hub::StreamId)s (written as strings, `"1764100000000-0"`).
///
/// ```
/// use openflume_proto::outbox::TargetState;
/// use openflume_proto::UnixMillis;
/// // Event 5 failed twice; the next attempt is due at 1_764_100_010_000.
/// let state = TargetState {
///     delivered_through: 4,
///     head: Some(5),
///     attempts: 2,
///     first_attempt_at: Some(UnixMillis(1_764_100_000_000)),
///     next_attempt_at: Some(UnixMillis(1_764_100_010_000)),
///     disabled: false,
/// };
/// let json = serde_json::to_string(&state).unwrap();
/// assert_eq!(serde_json::from_str::<TargetState>(&json).unwrap(), state);
/// assert!(TargetState::starting_after(9).is_idle());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, bound = "P: HubPosition")]
pub struct TargetState<P = u64> {
    /// Every matching event with an id up to this one was delivered (or given up).
    pub delivered_through: P,
    /// The event the attempts below are about: the first pending one. Kept so that a restart
    /// whose first pending event is another one (retention deleted it, the filter changed)
    /// starts that one afresh instead of inheriting its attempts.
    pub head: Option<P>,
    /// Attempts made for `head` whose outcome is known.
    pub attempts: u32,
    /// When `head` was first tried: the age limit counts from here.
    pub first_attempt_at: Option<UnixMillis>,
    /// When `head` is due again after a failure; `None` means at once.
    pub next_attempt_at: Option<UnixMillis>,
    /// The target answered 410 Gone: nothing more is sent to it, across restarts too.
    pub disabled: bool,
}

impl<P: Default> TargetState<P> {
    /// A new target's state: it forwards the events after `event_id`.
    ///
    /// ```
    /// use openflume_proto::outbox::TargetState;
    /// let state = TargetState::starting_after(41);
    /// assert_eq!((state.delivered_through, state.head, state.disabled), (41, None, false));
    /// // Over a Redis Stream: a stream id, stored as a string.
    /// let id: openflume_proto::hub::StreamId = "1764100000000-0".parse().unwrap();
    /// let json = serde_json::to_value(TargetState::starting_after(id)).unwrap();
    /// assert_eq!(json["delivered_through"], "1764100000000-0");
    /// ```
    pub fn starting_after(event_id: P) -> TargetState<P> {
        TargetState {
            delivered_through: event_id,
            ..TargetState::default()
        }
    }

    /// True when no delivery is under way (no attempt made for a pending event).
    ///
    /// ```
    /// use openflume_proto::outbox::TargetState;
    /// let mut state = TargetState::starting_after(3);
    /// assert!(state.is_idle());
    /// state.head = Some(4);
    /// state.attempts = 1;
    /// assert!(!state.is_idle());
    /// ```
    pub fn is_idle(&self) -> bool {
        self.attempts == 0
    }

    /// Forgets the attempts: the next pending event starts afresh.
    pub(crate) fn clear_attempts(&mut self) {
        self.head = None;
        self.attempts = 0;
        self.first_attempt_at = None;
        self.next_attempt_at = None;
    }
}
