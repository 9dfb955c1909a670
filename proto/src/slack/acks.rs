//! Envelopes emitted but not yet acknowledged. Slack must not consider an envelope handled before
//! the firehose has it, so each emitted envelope waits here for `Input::Delivered`, then its ack
//! goes out on the connection it came on.

use crate::{ConnId, DeliveryId, IdCounter, Millis, Misuse};
use std::collections::BTreeMap;

/// Slack expects an ack within this long (the Events API's 3 s rule), counted here from when
/// the driver read the envelope; later acks are logged.
pub const ACK_DEADLINE_MS: u64 = 3_000;

/// At most this many envelopes wait for confirmation; beyond it the oldest is given up (Slack
/// redelivers it). A driver that confirms each event as it hands it over never gets near this.
pub const MAX_PENDING_ACKS: usize = 1_024;

/// One envelope waiting for its ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingAck {
    /// The connection it arrived on, which carries the ack.
    pub conn: ConnId,
    /// The id to acknowledge.
    pub envelope_id: String,
    /// When the driver read its frame: Slack's ack window runs from then.
    pub arrived_at: Millis,
    /// When the machine handled it; later than `arrived_at` by the time the frame waited in
    /// the driver's queue (back-pressure).
    pub handled_at: Millis,
    /// Its `payload.event_id`, the dedup key of redeliveries.
    pub event_id: Option<String>,
    /// Redeliveries of the same event that arrived while this one waited: acknowledged with it,
    /// never before the firehose holds the event (connection, envelope id).
    pub redeliveries: Vec<(ConnId, String)>,
}

/// The envelopes waiting for `Input::Delivered`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PendingAcks {
    ids: IdCounter,
    last_issued: u64,
    pending: BTreeMap<DeliveryId, PendingAck>,
}

impl PendingAcks {
    /// Hands out a delivery id for `ack`; returns the oldest entry if it had to be given up.
    pub fn register(&mut self, ack: PendingAck) -> (DeliveryId, Option<PendingAck>) {
        let evicted = if self.pending.len() >= MAX_PENDING_ACKS {
            self.pending.pop_first().map(|(_, ack)| ack)
        } else {
            None
        };
        self.last_issued = self.ids.next();
        let delivery = DeliveryId(self.last_issued);
        self.pending.insert(delivery, ack);
        (delivery, evicted)
    }

    /// The envelope still waiting for confirmation that carries `event_id`, if any.
    pub fn waiting_with(&mut self, event_id: &str) -> Option<&mut PendingAck> {
        self.pending
            .values_mut()
            .find(|ack| ack.event_id.as_deref() == Some(event_id))
    }

    /// The envelope confirmed by `delivery`: `Ok(None)` when it was already given up or confirmed,
    /// `Err` when the id was never handed out.
    pub fn take(&mut self, delivery: DeliveryId) -> Result<Option<PendingAck>, Misuse> {
        if delivery.0 == 0 || delivery.0 > self.last_issued {
            return Err(Misuse::UnknownDelivery(delivery));
        }
        Ok(self.pending.remove(&delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(n: u64) -> PendingAck {
        PendingAck {
            conn: ConnId(1),
            envelope_id: format!("env{n}"),
            arrived_at: Millis(n),
            handled_at: Millis(n),
            event_id: Some(format!("Ev{n}")),
            redeliveries: Vec::new(),
        }
    }

    #[test]
    fn ids_are_issued_once_and_bounded() {
        let mut acks = PendingAcks::default();
        assert_eq!(
            acks.take(DeliveryId(1)),
            Err(Misuse::UnknownDelivery(DeliveryId(1)))
        );
        let (first, evicted) = acks.register(ack(1));
        assert_eq!((first, evicted), (DeliveryId(1), None));
        assert_eq!(acks.take(first), Ok(Some(ack(1))));
        assert_eq!(acks.take(first), Ok(None));
        assert_eq!(
            acks.take(DeliveryId(0)),
            Err(Misuse::UnknownDelivery(DeliveryId(0)))
        );
        for n in 2..=(MAX_PENDING_ACKS as u64 + 1) {
            assert_eq!(acks.register(ack(n)).1, None);
        }
        let (_, evicted) = acks.register(ack(9_999));
        assert_eq!(evicted, Some(ack(2)));
        assert_eq!(acks.take(DeliveryId(2)), Ok(None));
    }
}
