//! One source's lane into the hub: items in the order the machine produced them, held back (and
//! the source with them) while a back-pressure consumer is full, and the receipts that turn into
//! `Input::Delivered` once every such consumer holds the event.
//!
//! Nothing here waits: the driver loop asks what is due ([`Lane::settled`]) and what to wait for
//! ([`Lane::writable`], [`Lane::progressed`]), so timers and stop requests are served while an
//! item waits for room.

use crate::hub::{Blocked, Hub, Offer, Receipt, Settled};
use openflume_proto::{DeliveryId, Input, Item, Level, Log, UnixMillis};
use std::collections::VecDeque;

/// Items queued behind a blocked one while the source shuts down and reads on regardless (so
/// its close handshake completes); past this the rest are discarded and counted.
const SHUTDOWN_QUEUE: usize = 1024;

pub(crate) struct Lane {
    hub: Hub,
    /// The item the hub could not place yet: a back-pressure stream was full.
    blocked: Option<(Blocked, Option<DeliveryId>)>,
    /// Items behind it, in order.
    queued: VecDeque<(Item, Option<DeliveryId>)>,
    /// Receipts of events that wait for confirmation, oldest first.
    receipts: VecDeque<(DeliveryId, Receipt)>,
    /// Items discarded at shutdown because the consumer did not take them in time.
    discarded: u64,
}

impl Lane {
    pub(crate) fn new(hub: Hub) -> Lane {
        Lane {
            hub,
            blocked: None,
            queued: VecDeque::new(),
            receipts: VecDeque::new(),
            discarded: 0,
        }
    }

    /// Hands `item` to the hub now, or queues it behind a blocked one. `confirm` asks for an
    /// `Input::Delivered` once every back-pressure consumer holds it.
    pub(crate) fn deliver(&mut self, item: Item, confirm: Option<DeliveryId>) {
        if self.blocked.is_some() {
            self.queued.push_back((item, confirm));
        } else {
            self.offer(item, confirm);
        }
    }

    /// Like [`deliver`](Self::deliver) during a shutdown: the queue behind a blocked item is
    /// bounded, since the source keeps reading to finish its close handshake.
    pub(crate) fn deliver_while_stopping(&mut self, item: Item, confirm: Option<DeliveryId>) {
        if self.blocked.is_some() && self.queued.len() >= SHUTDOWN_QUEUE {
            self.discarded += 1;
        } else {
            self.deliver(item, confirm);
        }
    }

    fn offer(&mut self, item: Item, confirm: Option<DeliveryId>) {
        match self.hub.offer(item, confirm.is_some()) {
            Offer::Taken(receipt) => self.taken(receipt, confirm),
            Offer::Blocked(blocked) => self.blocked = Some((blocked, confirm)),
        }
    }

    fn taken(&mut self, receipt: Receipt, confirm: Option<DeliveryId>) {
        if let Some(delivery) = confirm {
            self.receipts.push_back((delivery, receipt));
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
            && let Some((item, confirm)) = self.queued.pop_front()
        {
            self.offer(item, confirm);
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
            Some((_, receipt)) => receipt.progressed().await,
            None => futures_lite::future::pending().await,
        }
    }

    /// The confirmations now due, in order. A receipt abandoned by a consumer that went away is
    /// dropped: that event is never acknowledged, so the service redelivers it.
    pub(crate) fn settled(&mut self, inputs: &mut VecDeque<Input>) {
        while let Some((_, receipt)) = self.receipts.front() {
            match receipt.state() {
                Settled::Pending => break,
                Settled::Held => {
                    if let Some((delivery, _)) = self.receipts.pop_front() {
                        inputs.push_back(Input::Delivered { delivery });
                    }
                }
                Settled::Abandoned => {
                    self.receipts.pop_front();
                }
            }
        }
    }

    /// Drops every receipt: for a machine that finished, which takes no confirmation any more.
    pub(crate) fn forget_receipts(&mut self) {
        self.receipts.clear();
    }

    /// Gives up on what is still waiting (the shutdown's grace is over), saying how much.
    pub(crate) fn abandon(&mut self, source: &str, now: UnixMillis) -> Option<Log> {
        let waiting = u64::from(self.blocked.take().is_some()) + self.queued.len() as u64;
        self.queued.clear();
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
