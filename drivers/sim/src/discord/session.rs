//! A Gateway session and its replay: the sequence, the bounded buffer of dispatches a RESUME
//! replays, which connection it is attached to, and writing what the connection has not seen.

use super::gateway::Gateway;
use super::payloads::dispatch;
use super::records::DispatchRecord;
use async_tungstenite::tungstenite::Utf8Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Live sessions kept at most; the oldest detached ones go first.
const MAX_SESSIONS: usize = 1000;
/// Dispatches sent per batch (one corked write).
const FLUSH_BATCH: usize = 256;

/// Distinct MESSAGE_CREATE bodies a blast cycles through. Making each body costs the simulator
/// more than a fast client spends reading it; reusing them keeps the simulator ahead, so a
/// benchmark measures the client's own cost per event, not its waits for the next frame.
pub(super) const BLAST_POOL: usize = 1024;

/// A Gateway session: its sequence, its replay buffer, and the connection it is attached to.
pub(super) struct Session {
    pub(super) shard: Option<[u64; 2]>,
    pub(super) last_seq: u64,
    pub(super) log: VecDeque<Logged>,
    pub(super) attached: Option<u64>,
    pub(super) detached_at: Option<Instant>,
}

pub(super) struct Logged {
    pub(super) seq: u64,
    pub(super) event: &'static str,
    pub(super) payload: Utf8Bytes,
}

impl Session {
    /// Appends a dispatch built for the next sequence number.
    pub(super) fn push(&mut self, event: &'static str, data: &str, capacity: usize) {
        self.last_seq += 1;
        let payload = dispatch(event, self.last_seq, data);
        if self.log.len() >= capacity.max(1) {
            self.log.pop_front();
        }
        self.log.push_back(Logged {
            seq: self.last_seq,
            event,
            payload: payload.into(),
        });
    }

    pub(super) fn expired(&self, now: Instant, window: Duration) -> bool {
        self.detached_at
            .is_some_and(|at| now.duration_since(at) > window)
    }

    /// Whether a message in `guild` goes to this session's shard.
    pub(super) fn receives(&self, guild: u64) -> bool {
        match self.shard {
            Some([id, count]) if count > 0 => (guild >> 22) % count == id,
            _ => true,
        }
    }
}

impl Gateway<'_> {
    /// Unregisters the connection and leaves its session resumable.
    pub(super) fn finish(&mut self) {
        let now = Instant::now();
        let mut state = self.sim.lock();
        state.connections.remove(&self.conn);
        if let Some(id) = self.session.take()
            && let Some(session) = state.sessions.get_mut(&id)
            && session.attached == Some(self.conn)
        {
            session.attached = None;
            session.detached_at = Some(now);
        }
    }

    /// Stops dispatching the session here; it stays resumable.
    pub(super) fn detach(&mut self) {
        if let Some(id) = self.session.take() {
            let mut state = self.sim.lock();
            if let Some(session) = state.sessions.get_mut(&id)
                && session.attached == Some(self.conn)
            {
                session.attached = None;
                session.detached_at = Some(Instant::now());
            }
        }
    }

    /// Ends the session for good.
    pub(super) fn end_session(&mut self) {
        if let Some(id) = self.session.take() {
            self.sim.lock().sessions.remove(&id);
        }
    }

    /// Whether the benchmark blast should produce more now: a session is attached, everything
    /// buffered was written, and events are left.
    pub(super) fn blast_due(&self) -> bool {
        let Some(id) = &self.session else {
            return false;
        };
        let state = self.sim.lock();
        state.blast_left > 0
            && state
                .sessions
                .get(id)
                .is_some_and(|s| s.last_seq == self.sent_seq)
    }

    pub(super) fn blast(&mut self) {
        let Some(id) = self.session.clone() else {
            return;
        };
        let mut guard = self.sim.lock();
        let state = &mut *guard;
        for _ in 0..state.blast_left.min(64) {
            state.blast_left -= 1;
            let pool = self.sim.config.blast_pool.max(1);
            let reused = state.blast_left as usize % pool;
            let data = match state.blast_pool.get(reused) {
                Some(data) if state.blast_pool.len() == pool => data.clone(),
                _ => {
                    let (_, data) = self.sim.message_create(state);
                    state.blast_pool.push(data.clone());
                    data
                }
            };
            if let Some(session) = state.sessions.get_mut(&id) {
                session.push("MESSAGE_CREATE", &data, self.sim.config.resume_buffer);
            }
        }
    }

    /// Writes every buffered dispatch of the attached session not yet written here.
    pub(super) async fn flush(&mut self) -> Result<(), ()> {
        loop {
            let Some(id) = self.session.clone() else {
                return Ok(());
            };
            let batch: Vec<(u64, &'static str, Utf8Bytes)> = {
                let state = self.sim.lock();
                let Some(session) = state
                    .sessions
                    .get(&id)
                    .filter(|s| s.attached == Some(self.conn))
                else {
                    drop(state);
                    self.session = None;
                    return Ok(());
                };
                if session.last_seq <= self.sent_seq {
                    return Ok(());
                }
                let oldest = session.log.front().map_or(session.last_seq + 1, |l| l.seq);
                if self.sent_seq + 1 < oldest {
                    // The client fell so far behind that the buffer lost dispatches: Discord
                    // would drop it too. Its RESUME will be refused.
                    return Err(());
                }
                let skip = usize::try_from(self.sent_seq + 1 - oldest).unwrap_or(usize::MAX);
                session
                    .log
                    .iter()
                    .skip(skip)
                    .take(FLUSH_BATCH)
                    .map(|l| (l.seq, l.event, l.payload.clone()))
                    .collect()
            };
            let last = batch.len().saturating_sub(1);
            for (index, (seq, event, payload)) in batch.into_iter().enumerate() {
                self.cork.set(index < last);
                let sent = self.send_text(payload).await;
                self.cork.set(false);
                sent?;
                self.sent_seq = seq;
                let record = DispatchRecord {
                    conn: self.conn,
                    at: self.sim.since_start(),
                    session_id: id.clone(),
                    seq,
                    event,
                    replayed: seq <= self.replay_until,
                };
                self.sim.lock().records.dispatches.push(record);
            }
        }
    }
}

/// Keeps at most [`MAX_SESSIONS`] sessions, dropping the longest-detached ones first.
pub(super) fn evict_sessions(sessions: &mut HashMap<Arc<str>, Session>) {
    while sessions.len() >= MAX_SESSIONS {
        let oldest = sessions
            .iter()
            .filter_map(|(id, s)| s.detached_at.map(|at| (at, id.clone())))
            .min_by_key(|(at, _)| *at)
            .map(|(_, id)| id);
        match oldest {
            Some(id) => {
                sessions.remove(&id);
            }
            None => return,
        }
    }
}
