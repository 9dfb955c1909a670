//! One source's lane into the hub: items in the order the machine produced them, held back (and
//! the source with them) while a back-pressure consumer is full, and the receipts that turn into
//! `Input::Delivered` once every such consumer holds the event.
//!
//! Nothing here waits: the driver loop asks what is due ([`Lane::settled`]) and what to wait for
//! ([`Lane::writable`], [`Lane::progressed`]), so timers and stop requests are served while an
//! item waits for room.

use crate::hub::{Blocked, Hub, Offer, Receipt, Settled};
use crate::metrics::LaneMeters;
use crate::twins::{self, Fate, Sighting, Slot};
use openflume_proto::{Checkpoint, DeliveryId, Input, Item, Level, Log, UnixMillis};
use std::collections::VecDeque;
use std::sync::Arc;

/// Items queued behind a blocked one while the source shuts down and reads on regardless (so
/// its close handshake completes); past this the rest are discarded and counted.
const SHUTDOWN_QUEUE: usize = 1024;

pub(crate) struct Lane {
    hub: Hub,
    /// The item the hub could not place yet: a back-pressure stream was full.
    blocked: Option<(Blocked, Confirm)>,
    /// Items (and checkpoints) behind it, in order.
    queued: VecDeque<Queued>,
    /// What events that wait for confirmation wait on, oldest first.
    receipts: VecDeque<(DeliveryId, Awaited)>,
    /// Items discarded at shutdown because the consumer did not take them in time.
    discarded: u64,
    /// The counters of the sources this lane delivers for.
    meters: LaneMeters,
}

/// What an item asks to be told: its delivery id, and for the first copy of a keyed event the
/// slot its twins wait on.
type Confirm = Option<(DeliveryId, Option<Arc<Slot>>)>;

/// What waits behind a blocked item.
enum Queued {
    Item(Item, Confirm),
    /// A source's checkpoint: placed only after every item before it.
    Checkpoint(Arc<str>, Checkpoint),
}

/// What a delivery waits on.
enum Awaited {
    /// This lane's own copy, and the slot to settle for its twins.
    Own(Receipt, Option<Arc<Slot>>),
    /// A twin: the first copy, offered by another lane (or earlier by this one).
    Twin(Arc<Slot>),
}

impl Lane {
    /// The lane of source `own`.
    pub(crate) fn new(hub: Hub, own: &str) -> Lane {
        let meters = LaneMeters::new(hub.meters().clone(), own);
        Lane {
            hub,
            blocked: None,
            queued: VecDeque::new(),
            receipts: VecDeque::new(),
            discarded: 0,
            meters,
        }
    }

    /// The counters this lane adds to, for the driver's status changes and logs.
    pub(crate) fn meters(&mut self) -> &mut LaneMeters {
        &mut self.meters
    }

    /// Hands `item` to the hub now, or queues it behind a blocked one. `confirm` asks for an
    /// `Input::Delivered` once every back-pressure consumer holds it.
    pub(crate) fn deliver(&mut self, item: Item, confirm: Option<DeliveryId>) {
        // Only confirmed events can have twins: the key (an allocation) is not built for the
        // rest, which are most of a Discord burst.
        let key = confirm.and_then(|_| twins::key(&item));
        let confirm = match (confirm, key) {
            (Some(delivery), Some(key)) => match self.hub.twins().sight(key) {
                Sighting::First(slot) => Some((delivery, Some(slot))),
                Sighting::Twin(slot) => {
                    // Already on its way to the consumers through another transport.
                    self.receipts.push_back((delivery, Awaited::Twin(slot)));
                    return;
                }
            },
            (confirm, _) => confirm.map(|delivery| (delivery, None)),
        };
        self.meters.event(&item);
        if self.blocked.is_some() {
            self.queued.push_back(Queued::Item(item, confirm));
        } else {
            self.offer(item, confirm);
        }
    }

    /// Hands `source`'s checkpoint to the hub after the items delivered before it: now, or once
    /// the blocked item and those queued behind it are placed.
    pub(crate) fn checkpoint(&mut self, source: &str, checkpoint: Checkpoint) {
        if self.blocked.is_some() {
            self.queued
                .push_back(Queued::Checkpoint(source.into(), checkpoint));
        } else {
            self.hub.offer_checkpoint(source, &checkpoint);
        }
    }

    /// Like [`deliver`](Self::deliver) during a shutdown: the queue behind a blocked item is
    /// bounded, since the source keeps reading to finish its close handshake.
    pub(crate) fn deliver_while_stopping(&mut self, item: Item, confirm: Option<DeliveryId>) {
        if self.blocked.is_some() && self.queued.len() >= SHUTDOWN_QUEUE {
            // Never offered: nothing was acknowledged, and no twin may count on it.
            if let Some(key) = twins::key(&item)
                && let Sighting::First(slot) = self.hub.twins().sight(key)
            {
                slot.settle(Fate::Abandoned);
            }
            self.meters.dropped(&item);
            self.discarded += 1;
        } else {
            self.deliver(item, confirm);
        }
    }

    fn offer(&mut self, item: Item, confirm: Confirm) {
        match self.hub.offer(item, confirm.is_some()) {
            Offer::Taken(receipt) => self.taken(receipt, confirm),
            Offer::Blocked(blocked) => self.blocked = Some((blocked, confirm)),
        }
    }

    fn taken(&mut self, receipt: Receipt, confirm: Confirm) {
        if let Some((delivery, slot)) = confirm {
            self.receipts
                .push_back((delivery, Awaited::Own(receipt, slot)));
        }
    }

    /// True while an item waits for room: the source must not read meanwhile.
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// True while anything waits to enter the hub.
    pub(crate) fn is_busy(&self) -> bool {
        self.blocked.is_some() || !self.queued.is_empty()
    }

    /// Retries the blocked item, then offers the queued ones, until one blocks again.
    pub(crate) fn advance(&mut self) {
        if let Some((blocked, confirm)) = self.blocked.take() {
            match blocked.retry() {
                Offer::Taken(receipt) => self.taken(receipt, confirm),
                Offer::Blocked(blocked) => {
                    self.blocked = Some((blocked, confirm));
                    return;
                }
            }
        }
        while self.blocked.is_none()
            && let Some(queued) = self.queued.pop_front()
        {
            match queued {
                Queued::Item(item, confirm) => self.offer(item, confirm),
                Queued::Checkpoint(source, checkpoint) => {
                    self.hub.offer_checkpoint(&source, &checkpoint);
                }
            }
        }
    }

    /// Wakes the readers of what this lane delivered: called before the source waits.
    pub(crate) fn announce(&self) {
        self.hub.announce();
    }

    /// Resolves once the blocked item may fit (never, when nothing is blocked).
    pub(crate) async fn writable(&self) {
        match &self.blocked {
            Some((blocked, _)) => blocked.writable().await,
            None => futures_lite::future::pending().await,
        }
    }

    /// Resolves once the oldest receipt may have settled (never, when none waits).
    pub(crate) async fn progressed(&self) {
        match self.receipts.front() {
            Some((_, Awaited::Own(receipt, _))) => receipt.progressed().await,
            Some((_, Awaited::Twin(slot))) => slot.settled().await,
            None => futures_lite::future::pending().await,
        }
    }

    /// The confirmations now due, in order. A receipt abandoned by a consumer that went away is
    /// dropped: that event is never acknowledged, so the service redelivers it.
    pub(crate) fn settled(&mut self, inputs: &mut VecDeque<Input>) {
        while let Some((delivery, awaited)) = self.receipts.front() {
            let fate = match awaited {
                Awaited::Own(receipt, slot) => {
                    let fate = match receipt.state() {
                        Settled::Pending => Fate::Pending,
                        Settled::Held => Fate::Held,
                        Settled::Abandoned => Fate::Abandoned,
                    };
                    if let Some(slot) = slot {
                        slot.settle(fate);
                    }
                    fate
                }
                Awaited::Twin(slot) => slot.fate(),
            };
            match fate {
                Fate::Pending => break,
                Fate::Held => inputs.push_back(Input::Delivered {
                    delivery: *delivery,
                }),
                // Nobody holds it: no acknowledgement, the service redelivers.
                Fate::Abandoned => {}
            }
            self.receipts.pop_front();
        }
    }

    /// Drops every receipt: for a machine that finished, which takes no confirmation any more.
    pub(crate) fn forget_receipts(&mut self) {
        // The machine acknowledges nothing more, so its twins may not count on it either.
        for (_, awaited) in self.receipts.drain(..) {
            if let Awaited::Own(_, Some(slot)) = awaited {
                slot.settle(Fate::Abandoned);
            }
        }
    }

    /// Gives up on what is still waiting (the shutdown's grace is over), saying how much.
    pub(crate) fn abandon(&mut self, source: &str, now: UnixMillis) -> Option<Log> {
        let blocked = self.blocked.take().map(|(blocked, confirm)| {
            self.meters.dropped(blocked.item());
            confirm
        });
        let mut queued: Vec<Confirm> = Vec::new();
        for waiting in self.queued.drain(..) {
            match waiting {
                Queued::Item(item, confirm) => {
                    self.meters.dropped(&item);
                    queued.push(confirm);
                }
                // Never placed, so never stored: the next run starts from the one before.
                Queued::Checkpoint(..) => {}
            }
        }
        let waiting = u64::from(blocked.is_some()) + queued.len() as u64;
        for (_, slot) in blocked.into_iter().chain(queued).flatten() {
            if let Some(slot) = slot {
                slot.settle(Fate::Abandoned);
            }
        }
        let lost = waiting + std::mem::take(&mut self.discarded);
        (lost > 0).then(|| {
            Log::new(
                Level::Warn,
                source,
                "delivery.abandoned",
                format!(
                    "{lost} item(s) never reached a full consumer before the source stopped; \
                     none of them was acknowledged upstream"
                ),
                now,
            )
            .with_detail(serde_json::json!({ "items": lost }))
        })
    }

    /// Offers `log` to whoever has room, without waiting or queueing: the last word of a source
    /// whose lane is given up.
    pub(crate) fn last_word(&self, log: Log) {
        // A full back-pressure stream goes without it.
        drop(self.hub.offer(Item::Log(log), false));
    }
}
