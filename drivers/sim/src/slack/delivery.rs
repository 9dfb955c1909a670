//! Where an envelope goes and what happens when it is not acked: a ready connection (avoiding
//! the one it failed on), else the shared queue; redelivery after the ack deadline, up to
//! `max_retries`, then giving up.

use super::envelopes::Envelope;
use super::{EnvelopeKind, GivenUpRecord, MAX_QUEUED, Outbound, Outstanding, Slack, State};
use crate::fake;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Envelopes tracked for acks, at most.
const MAX_OUTSTANDING: usize = 100_000;

impl State {
    /// Picks the next ready connection after the last one used, avoiding `avoid` when another
    /// is open.
    pub(super) fn pick(&mut self, avoid: Option<u64>) -> Option<u64> {
        let ready: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, e)| e.ready)
            .map(|(id, _)| *id)
            .collect();
        let next_after = |after: u64, skip: Option<u64>| {
            ready
                .iter()
                .copied()
                .filter(|id| Some(*id) != skip)
                .find(|id| *id > after)
                .or_else(|| ready.iter().copied().find(|id| Some(*id) != skip))
        };
        let chosen =
            next_after(self.last_conn, avoid).or_else(|| next_after(self.last_conn, None))?;
        self.last_conn = chosen;
        Some(chosen)
    }

    /// Sends `envelope` to a connection (or queues it when none can take it).
    pub(super) fn deliver(&mut self, envelope: Envelope, avoid: Option<u64>, now: Instant) {
        if envelope.kind == EnvelopeKind::EventsApi && !envelope.duplicate {
            self.last_events_api = Some(envelope.clone());
        }
        // Behind envelopes that already wait, so a burst larger than a connection's queue keeps
        // its order.
        let Some(conn) = self.pick(avoid).filter(|_| self.queue.is_empty()) else {
            self.enqueue(envelope);
            return;
        };
        let sent = self.conns.get(&conn).is_some_and(|entry| {
            entry
                .tx
                .try_send(Outbound::Envelope(envelope.clone()))
                .is_ok()
        });
        if sent {
            self.track(envelope, conn, now);
        } else {
            self.enqueue(envelope);
        }
    }

    pub(super) fn enqueue(&mut self, envelope: Envelope) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(envelope);
    }

    pub(super) fn track(&mut self, envelope: Envelope, conn: u64, now: Instant) {
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.outstanding.retain(|_, o| !o.acked && !o.settled);
        }
        self.outstanding.insert(
            envelope.envelope_id.clone(),
            Outstanding {
                envelope,
                conn,
                sent_at: now,
                acked: false,
                settled: false,
            },
        );
    }
}

/// Redelivers unacked `events_api` envelopes after the deadline; gives up on the rest.
pub(super) async fn redeliver(sim: Arc<Slack>) {
    let deadline = sim.config.ack_deadline;
    let tick = (deadline / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        async_io::Timer::after(tick).await;
        let now = Instant::now();
        let at = sim.since_start();
        let mut guard = sim.lock();
        let state = &mut *guard;
        let mut due: Vec<(Envelope, u64)> = Vec::new();
        for outstanding in state.outstanding.values_mut() {
            if !outstanding.acked
                && !outstanding.settled
                && now.duration_since(outstanding.sent_at) >= deadline
            {
                outstanding.settled = true;
                due.push((outstanding.envelope.clone(), outstanding.conn));
            }
        }
        let forget = deadline.saturating_mul(10);
        state
            .outstanding
            .retain(|_, o| !(o.acked || o.settled) || now.duration_since(o.sent_at) < forget);
        for (envelope, conn) in due {
            if envelope.kind == EnvelopeKind::EventsApi
                && envelope.retry_attempt < sim.config.max_retries
            {
                let retry = Envelope {
                    envelope_id: fake::uuid(&mut state.rng),
                    retry_attempt: envelope.retry_attempt + 1,
                    retry_reason: "timeout",
                    duplicate: false,
                    ..envelope
                };
                state.deliver(retry, Some(conn), now);
            } else {
                state.records.given_up.push(GivenUpRecord {
                    at,
                    envelope_id: envelope.envelope_id,
                    event_id: envelope.event_id,
                    kind: envelope.kind,
                });
            }
        }
    }
}
