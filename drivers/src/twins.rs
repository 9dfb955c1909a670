//! One event, two transports: Slack delivers the same event (same `event_id`) over Socket Mode
//! and over the Events API when an app has both, and each source's machine deduplicates only
//! what it sees itself. The hub remembers the keys of recent confirmed events across lanes, so
//! the second copy is not offered to the consumers again.
//!
//! The second copy's acknowledgement (its Slack ack, its webhook 200) waits until the first copy
//! is held by every consumer: acknowledging it earlier would let the service forget an event
//! that could still be lost. If the first copy is abandoned (its consumer left), so is the
//! second, and the key is forgotten, so the service's redelivery is emitted afresh.

use crate::lock::lock;
use event_listener::Event as Signal;
use openflume_proto::{Event, Item};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Keys remembered; the oldest is forgotten first. Slack redelivers within minutes.
const CAPACITY: usize = 10_000;

/// The key that makes two events one: `source` and `meta.event_id` (Slack's).
pub(crate) fn key(item: &Item) -> Option<String> {
    let Item::Event(Event { source, meta, .. }) = item else {
        return None;
    };
    Some(format!("{source}\u{0}{}", meta.get("event_id")?))
}

/// The fate of the first copy of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Pending,
    Held,
    Abandoned,
}

/// The first copy's fate, shared with every later copy's lane.
#[derive(Debug)]
pub(crate) struct Slot {
    fate: Mutex<Fate>,
    changed: Signal,
}

impl Slot {
    pub(crate) fn fate(&self) -> Fate {
        *lock(&self.fate)
    }

    /// Settles the first copy (once; a settled fate stays).
    pub(crate) fn settle(&self, fate: Fate) {
        let mut current = lock(&self.fate);
        if *current == Fate::Pending {
            *current = fate;
            drop(current);
            self.changed.notify(usize::MAX);
        }
    }

    /// Resolves once the fate is settled.
    pub(crate) async fn settled(&self) {
        loop {
            let listener = self.changed.listen();
            if self.fate() != Fate::Pending {
                return;
            }
            listener.await;
        }
    }
}

/// What a lane learns of an event's key.
pub(crate) enum Sighting {
    /// The first copy: offer it, and settle the slot when its receipt settles.
    First(Arc<Slot>),
    /// A later copy: do not offer it; acknowledge it when the slot says so.
    Twin(Arc<Slot>),
}

/// The keys of recent confirmed events, shared by every lane of one hub.
#[derive(Default)]
pub(crate) struct Twins {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Arc<Slot>>,
    order: VecDeque<String>,
}

impl Twins {
    pub(crate) fn sight(&self, key: String) -> Sighting {
        let mut inner = lock(&self.inner);
        if let Some(slot) = inner.slots.get(&key)
            && slot.fate() != Fate::Abandoned
        {
            return Sighting::Twin(slot.clone());
        }
        if inner.order.len() >= CAPACITY
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.slots.remove(&oldest);
        }
        let slot = Arc::new(Slot {
            fate: Mutex::new(Fate::Pending),
            changed: Signal::new(),
        });
        if inner.slots.insert(key.clone(), slot.clone()).is_none() {
            inner.order.push_back(key);
        }
        Sighting::First(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{RawJson, UnixMillis};

    fn slack(event_id: &str) -> Item {
        let mut event = Event::new("slack", "events_api", RawJson::null(), UnixMillis(0));
        event.meta.insert("event_id".into(), event_id.into());
        Item::Event(event)
    }

    #[test]
    fn a_twin_follows_the_first_copy_and_an_abandoned_key_starts_over() {
        let twins = Twins::default();
        let key = |item| super::key(&item).expect("keyed");
        let Sighting::First(first) = twins.sight(key(slack("Ev1"))) else {
            panic!("first")
        };
        let Sighting::Twin(twin) = twins.sight(key(slack("Ev1"))) else {
            panic!("twin")
        };
        assert_eq!(twin.fate(), Fate::Pending);
        first.settle(Fate::Held);
        assert_eq!(twin.fate(), Fate::Held);
        assert!(matches!(twins.sight(key(slack("Ev2"))), Sighting::First(_)));

        let Sighting::First(lost) = twins.sight(key(slack("Ev3"))) else {
            panic!("first")
        };
        lost.settle(Fate::Abandoned);
        assert!(matches!(twins.sight(key(slack("Ev3"))), Sighting::First(_)));
        let other = Event::new("github", "issues", RawJson::null(), UnixMillis(0));
        assert_eq!(super::key(&Item::Event(other)), None);
    }
}
