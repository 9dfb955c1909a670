//! What the Slack simulator saw and sent, for the tests to assert on.

use super::{EnvelopeKind, SlackAction};
use crate::records::{CloseRecord, HttpRecord, Records};
use std::time::Duration;

/// A Socket Mode connection as it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConnection {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `num_connections` in its `hello` (none when refused with `too_many_websockets`).
    pub num_connections: Option<usize>,
}

/// An envelope written to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Its `envelope_id`.
    pub envelope_id: String,
    /// Its `type`.
    pub kind: EnvelopeKind,
    /// `payload.event_id` (events_api only).
    pub event_id: Option<String>,
    /// `retry_attempt` (0 for a first delivery).
    pub retry_attempt: u32,
    /// True for a copy sent by [`SlackAction::Duplicate`].
    pub duplicate: bool,
}

/// An ack received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRecord {
    /// Connection it arrived on.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The `envelope_id` acknowledged.
    pub envelope_id: String,
    /// The connection the envelope was sent on (`None` for an unknown envelope id).
    pub sent_on: Option<u64>,
    /// Time from sending to the ack.
    pub latency: Option<Duration>,
    /// True when it came after the deadline (the envelope was already redelivered or given up).
    pub late: bool,
    /// True when the ack carried a `payload` (a response to a slash command or an interaction).
    pub with_payload: bool,
}

/// A `disconnect` sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The reason.
    pub reason: String,
}

/// An envelope Slack stopped delivering without an ack: an `events_api` envelope after its last
/// retry, or an unacked slash command or interaction (never retried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenUpRecord {
    /// When, since the simulator started.
    pub at: Duration,
    /// The last `envelope_id` tried.
    pub envelope_id: String,
    /// Its `event_id`, for `events_api`.
    pub event_id: Option<String>,
    /// The envelope type.
    pub kind: EnvelopeKind,
}

/// A connection action the simulator carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The action.
    pub action: SlackAction,
}

/// Everything the Slack simulator saw and sent.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SlackRecords {
    /// Connections opened.
    pub connections: Records<SocketConnection>,
    /// Envelopes written, redeliveries and duplicates included.
    pub envelopes: Records<EnvelopeRecord>,
    /// Acks received.
    pub acks: Records<AckRecord>,
    /// `disconnect` messages sent.
    pub disconnects: Records<DisconnectRecord>,
    /// Envelopes never acked.
    pub given_up: Records<GivenUpRecord>,
    /// Connection actions carried out (disconnects, drops, silence, garbage…).
    pub applied: Records<AppliedRecord>,
    /// How connections ended on the client's side.
    pub client_closes: Records<CloseRecord>,
    /// Web API requests and refused WebSocket handshakes.
    pub http: Records<HttpRecord>,
}

impl SlackRecords {
    pub(super) fn with_capacity(capacity: usize) -> SlackRecords {
        SlackRecords {
            connections: Records::with_capacity(capacity),
            envelopes: Records::with_capacity(capacity),
            acks: Records::with_capacity(capacity),
            disconnects: Records::with_capacity(capacity),
            given_up: Records::with_capacity(capacity),
            applied: Records::with_capacity(capacity),
            client_closes: Records::with_capacity(capacity),
            http: Records::with_capacity(capacity),
        }
    }

    /// Whether an ack for `envelope_id` arrived.
    pub fn acked(&self, envelope_id: &str) -> bool {
        self.acks.iter().any(|a| a.envelope_id == envelope_id)
    }

    /// Envelopes written and never acked.
    pub fn unacked(&self) -> Vec<&EnvelopeRecord> {
        self.envelopes
            .iter()
            .filter(|e| !self.acked(&e.envelope_id))
            .collect()
    }
}
