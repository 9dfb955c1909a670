//! Redeliveries, remembered by key (a Slack `event_id`, a GitHub delivery id, a `webhook-id`).
//!
//! A redelivery is answered 200 only once the first copy is held by every consumer: while the
//! first still waits, the redelivery waits with it, so a 200 never goes out for an event that
//! could still be lost.

use crate::{ConnId, DeliveryId};
use std::collections::{HashMap, VecDeque};

/// Keys remembered; the oldest is forgotten first. Senders redeliver within the hour (Slack:
/// three retries over about five minutes), far fewer than this many events.
const CAPACITY: usize = 10_000;

/// What is known of one key.
#[derive(Debug)]
enum State {
    /// The first copy waits for `Input::Delivered`; these connections wait for it too.
    Waiting {
        delivery: DeliveryId,
        followers: Vec<ConnId>,
    },
    /// Every consumer holds it.
    Held,
}

/// What to do with a keyed arrival.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// The first copy: emit it.
    First,
    /// Held already: answer 200 now.
    Held,
    /// The first copy is still in flight: answer when it is held.
    Waiting,
}

#[derive(Debug, Default)]
pub(crate) struct Seen {
    keys: HashMap<String, State>,
    order: VecDeque<String>,
}

impl Seen {
    /// Judges an arrival of `key` on `conn`; a follower is recorded, a first copy is not (see
    /// [`first`](Self::first)).
    pub(crate) fn sight(&mut self, key: &str, conn: ConnId) -> Sighting {
        match self.keys.get_mut(key) {
            Some(State::Held) => Sighting::Held,
            Some(State::Waiting { followers, .. }) => {
                followers.push(conn);
                Sighting::Waiting
            }
            None => Sighting::First,
        }
    }

    /// The first copy of `key` was emitted as `delivery`.
    pub(crate) fn first(&mut self, key: &str, delivery: DeliveryId) {
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
        let waiting = State::Waiting {
            delivery,
            followers: Vec::new(),
        };
        if self.keys.insert(key.to_owned(), waiting).is_none() {
            self.order.push_back(key.to_owned());
        }
    }

    /// Remembers `key` as held already (kept by an earlier run).
    pub(crate) fn restore(&mut self, key: &str) {
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
        if self.keys.insert(key.to_owned(), State::Held).is_none() {
            self.order.push_back(key.to_owned());
        }
    }

    /// The first copy of `key` is held: returns the connections that wait for it.
    pub(crate) fn held(&mut self, key: &str, delivery: DeliveryId) -> Vec<ConnId> {
        match self.keys.get_mut(key) {
            Some(state @ State::Waiting { .. }) => {
                let State::Waiting {
                    delivery: first,
                    followers,
                } = std::mem::replace(state, State::Held)
                else {
                    return Vec::new();
                };
                if first != delivery {
                    // A later first copy (the key was forgotten meanwhile): keep waiting for it.
                    *state = State::Waiting {
                        delivery: first,
                        followers,
                    };
                    return Vec::new();
                }
                followers
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_waits_for_the_first_copy() {
        let mut seen = Seen::default();
        assert_eq!(seen.sight("slack:Ev1", ConnId(1)), Sighting::First);
        seen.first("slack:Ev1", DeliveryId(1));
        assert_eq!(seen.sight("slack:Ev1", ConnId(2)), Sighting::Waiting);
        assert_eq!(seen.held("slack:Ev1", DeliveryId(2)), vec![]);
        assert_eq!(seen.held("slack:Ev1", DeliveryId(1)), vec![ConnId(2)]);
        assert_eq!(seen.sight("slack:Ev1", ConnId(3)), Sighting::Held);
    }

    #[test]
    fn memory_is_bounded() {
        let mut seen = Seen::default();
        for n in 0..CAPACITY as u64 + 10 {
            seen.first(&n.to_string(), DeliveryId(n));
        }
        assert_eq!(seen.keys.len(), CAPACITY);
        assert_eq!(seen.sight("0", ConnId(0)), Sighting::First);
    }
}
