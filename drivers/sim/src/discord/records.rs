//! What the Discord simulator saw and sent, for the tests to assert on.

use crate::records::{CloseRecord, HttpRecord, Records};
use std::sync::Arc;
use std::time::Duration;

/// A Gateway WebSocket connection as it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConnection {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Request path (`/` for the main URL, `/resume` for the resume URL).
    pub path: String,
    /// The `v` query parameter.
    pub version: Option<String>,
    /// The `encoding` query parameter.
    pub encoding: Option<String>,
    /// The `compress` query parameter.
    pub compress: Option<String>,
}

/// What an IDENTIFY led to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifyOutcome {
    /// READY with this session.
    Ready {
        /// The new session id.
        session_id: String,
    },
    /// op 9 `false` (identify spacing not respected).
    InvalidSession,
    /// Closed with this code (4004 bad token, 4013/4014 intents, 4010 shard, 4005 twice, 4002).
    Closed {
        /// Close code.
        code: u16,
    },
}

/// An IDENTIFY received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `d.intents`.
    pub intents: Option<u64>,
    /// `d.shard`.
    pub shard: Option<[u64; 2]>,
    /// What followed.
    pub outcome: IdentifyOutcome,
}

/// What a RESUME led to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// Replayed `replayed` dispatches, then RESUMED.
    Resumed {
        /// Dispatches replayed.
        replayed: u64,
    },
    /// op 9 `false`: unknown or expired session, or the replay is no longer buffered.
    InvalidSession,
    /// Closed with this code (4004 bad token, 4007 seq from the future, 4005, 4002).
    Closed {
        /// Close code.
        code: u16,
    },
}

/// A RESUME received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `d.session_id`.
    pub session_id: String,
    /// `d.seq`.
    pub seq: u64,
    /// What followed.
    pub outcome: ResumeOutcome,
}

/// A heartbeat (op 1) received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Its `d`: the client's last sequence number.
    pub seq: Option<u64>,
    /// Whether a HEARTBEAT_ACK was sent.
    pub acked: bool,
}

/// A dispatch (op 0) written to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The session it belongs to.
    pub session_id: Arc<str>,
    /// Its `s`.
    pub seq: u64,
    /// Its `t`.
    pub event: &'static str,
    /// True when sent again by a RESUME.
    pub replayed: bool,
}

/// A control payload or fault the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// op 10.
    Hello,
    /// op 1 from the server.
    HeartbeatRequest,
    /// op 7.
    Reconnect,
    /// op 9 with its `d`.
    InvalidSession(bool),
    /// A close frame with this code.
    Close(u16),
    /// The TCP connection was dropped without a close frame.
    Dropped,
    /// A text frame that is not JSON.
    GarbageText,
    /// A binary junk frame.
    GarbageBinary,
    /// An oversized payload of this many bytes.
    Oversized(usize),
}

/// A control payload sent on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// What.
    pub control: Control,
}

/// Everything the Discord simulator saw and sent.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DiscordRecords {
    /// Gateway connections opened.
    pub connections: Records<GatewayConnection>,
    /// IDENTIFY payloads.
    pub identifies: Records<IdentifyRecord>,
    /// RESUME payloads.
    pub resumes: Records<ResumeRecord>,
    /// Heartbeats received.
    pub heartbeats: Records<HeartbeatRecord>,
    /// Dispatches sent, replays included.
    pub dispatches: Records<DispatchRecord>,
    /// HELLO, op 1/7/9, close frames and faults sent.
    pub controls: Records<ControlRecord>,
    /// How connections ended on the client's side.
    pub client_closes: Records<CloseRecord>,
    /// REST requests.
    pub http: Records<HttpRecord>,
}

impl DiscordRecords {
    pub(super) fn with_capacity(capacity: usize) -> DiscordRecords {
        DiscordRecords {
            connections: Records::with_capacity(capacity),
            identifies: Records::with_capacity(capacity),
            resumes: Records::with_capacity(capacity),
            heartbeats: Records::with_capacity(capacity),
            dispatches: Records::with_capacity(capacity),
            controls: Records::with_capacity(capacity),
            client_closes: Records::with_capacity(capacity),
            http: Records::with_capacity(capacity),
        }
    }

    /// The sequence numbers written for `session_id`, in the order they were written (a replayed
    /// dispatch appears again).
    pub fn seqs(&self, session_id: &str) -> Vec<u64> {
        self.dispatches
            .iter()
            .filter(|d| &*d.session_id == session_id)
            .map(|d| d.seq)
            .collect()
    }

    /// The session ids READY gave out, oldest first.
    pub fn sessions(&self) -> Vec<String> {
        self.identifies
            .iter()
            .filter_map(|i| match &i.outcome {
                IdentifyOutcome::Ready { session_id } => Some(session_id.clone()),
                _ => None,
            })
            .collect()
    }
}
