//! Which envelopes the firehose already has. Slack redelivers an unacknowledged `events_api`
//! envelope with the same `event_id` (and possibly a new `envelope_id`), and during a rotation
//! overlap or with parallel connections the same payload can arrive twice; each must reach the
//! firehose once.

use crate::{DedupCache, Millis, Now, SlackCursor};

/// How long an id is remembered: longer than Slack's redelivery schedule (immediately, about
/// 1 min, about 5 min) with room to spare.
pub const DEDUP_TTL_MS: u64 = 15 * 60 * 1000;

/// At most this many ids are remembered, whatever the peer sends.
pub const DEDUP_CAPACITY: usize = 10_000;

/// What identifies a payload: its `event_id` when it has one, else the envelope id. Separate
/// variants keep the two id spaces from colliding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Event(String),
    Envelope(String),
}

/// The memory of payloads already emitted.
#[derive(Clone, Debug)]
pub(crate) struct Seen(DedupCache<Key>);

impl Default for Seen {
    fn default() -> Self {
        Seen(DedupCache::new(DEDUP_CAPACITY, DEDUP_TTL_MS))
    }
}

impl Seen {
    /// Records the payload; true the first time it is seen.
    pub fn first_sighting(
        &mut self,
        event_id: Option<&str>,
        envelope_id: &str,
        now: Millis,
    ) -> bool {
        let key = match event_id {
            Some(id) => Key::Event(id.to_owned()),
            None => Key::Envelope(envelope_id.to_owned()),
        };
        self.0.insert(key, now)
    }

    /// Remembers the ids an earlier run handed on (its stored cursor), each for what is left of
    /// its time, so their redeliveries after a restart are acknowledged and not emitted again.
    pub fn restore(&mut self, cursor: &SlackCursor, now: Now) {
        for (id, received_at) in &cursor.recent {
            let age = u64::try_from(now.wall.0.saturating_sub(received_at.0)).unwrap_or(0);
            if age < DEDUP_TTL_MS {
                let at = Millis(now.mono.0.saturating_sub(age));
                self.0.insert(Key::Event(id.clone()), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_wins_and_id_spaces_stay_apart() {
        let mut seen = Seen::default();
        assert!(seen.first_sighting(Some("Ev1"), "env1", Millis(0)));
        assert!(!seen.first_sighting(Some("Ev1"), "env2", Millis(1)));
        // No event id: the envelope id decides, and "Ev1" as an envelope id is a different key.
        assert!(seen.first_sighting(None, "Ev1", Millis(2)));
        assert!(!seen.first_sighting(None, "Ev1", Millis(3)));
        assert!(seen.first_sighting(None, "env1", Millis(4)));
        // Remembered for the whole TTL, forgotten after.
        assert!(!seen.first_sighting(Some("Ev1"), "env3", Millis(DEDUP_TTL_MS - 1)));
        assert!(seen.first_sighting(Some("Ev1"), "env3", Millis(DEDUP_TTL_MS)));
    }

    #[test]
    fn restored_ids_are_remembered_for_what_is_left_of_their_time() {
        use crate::UnixMillis;
        let mut cursor = SlackCursor::default();
        let wall = 1_764_000_000_000;
        cursor
            .recent
            .push_back(("EvOld".into(), UnixMillis(wall - 20 * 60 * 1000)));
        cursor
            .recent
            .push_back(("EvKept".into(), UnixMillis(wall - 60 * 1000)));
        let mut seen = Seen::default();
        let now = Now {
            mono: Millis(5_000_000),
            wall: UnixMillis(wall),
        };
        seen.restore(&cursor, now);
        assert!(
            !seen.first_sighting(Some("EvKept"), "env9", now.mono),
            "a redelivery"
        );
        assert!(
            seen.first_sighting(Some("EvOld"), "env8", now.mono),
            "past Slack's retries"
        );
        // Kept for the rest of its 15 minutes only: 14 minutes on, it is forgotten.
        let later = Millis(now.mono.0 + DEDUP_TTL_MS - 60 * 1000);
        assert!(seen.first_sighting(Some("EvKept"), "env7", later));
    }
}
