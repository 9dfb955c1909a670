//! The Gateway handshake: IDENTIFY checked as Discord does (token, intents, shard, order,
//! the identify bucket's spacing) and answered with READY and the guilds; RESUME answered with
//! the missed dispatches and RESUMED, op 9 or a 4007 close.

use super::gateway::{Flow, Gateway};
use super::payloads::{RESUMED_DATA, control};
use super::session::{Session, evict_sessions};
use super::{
    Command, Control, Discord, IdentifyOutcome, IdentifyRecord, PRIVILEGED_INTENTS, ResumeOutcome,
    ResumeRecord, State,
};
use crate::fake;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Intent bits Discord knows (Gateway page, "List of Intents").
const KNOWN_INTENTS: u64 = 0b11_0011_0001_1111_1111_1111_1111;

impl Gateway<'_> {
    pub(super) fn token_ok(&self, data: &Value) -> bool {
        let token = data
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        token == self.sim.config.token.expose()
    }

    pub(super) async fn on_identify(&mut self, data: &Value) -> Flow {
        let intents = data.get("intents").and_then(Value::as_u64);
        let shard = data.get("shard").map(|s| {
            let id = s.get(0).and_then(Value::as_u64);
            let count = s.get(1).and_then(Value::as_u64);
            match (id, count) {
                (Some(id), Some(count)) if count > 0 && id < count => Some([id, count]),
                _ => None,
            }
        });
        let mut record = IdentifyRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            intents,
            shard: shard.flatten(),
            outcome: IdentifyOutcome::InvalidSession,
        };
        let refusal = if self.session.is_some() {
            Some((4005, "Already authenticated."))
        } else if !data.is_object() {
            Some((4002, "Error while decoding payload."))
        } else if !self.token_ok(data) {
            Some((4004, "Authentication failed."))
        } else if intents.is_none_or(|bits| bits & !KNOWN_INTENTS != 0) {
            Some((4013, "Invalid intent(s)."))
        } else if intents.is_some_and(|bits| {
            bits & PRIVILEGED_INTENTS & !self.sim.config.privileged_intents != 0
        }) {
            Some((4014, "Disallowed intent(s)."))
        } else if matches!(shard, Some(None)) {
            Some((4010, "Invalid shard."))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            record.outcome = IdentifyOutcome::Closed { code };
            self.sim.lock().records.identifies.push(record);
            return self.close_flow(code, reason).await;
        }
        let shard = shard.flatten();
        let now = Instant::now();
        let session_id: Option<Arc<str>> = {
            let mut guard = self.sim.lock();
            let state = &mut *guard;
            let buckets = u64::from(self.sim.config.max_concurrency.max(1));
            let bucket = shard.map_or(0, |[id, _]| id % buckets);
            let spacing = self.sim.config.identify_spacing;
            let too_soon = !spacing.is_zero()
                && state
                    .last_identify
                    .get(&bucket)
                    .is_some_and(|at| now.duration_since(*at) < spacing);
            if too_soon {
                state.records.identifies.push(record);
                None
            } else {
                state.last_identify.insert(bucket, now);
                state.session_start_remaining = state.session_start_remaining.saturating_sub(1);
                let id: Arc<str> = fake::hex(&mut state.rng, 32).into();
                let window = self.sim.config.resume_window;
                state.sessions.retain(|_, s| !s.expired(now, window));
                evict_sessions(&mut state.sessions);
                let mut session = Session {
                    shard,
                    last_seq: 0,
                    log: VecDeque::new(),
                    attached: Some(self.conn),
                    detached_at: None,
                };
                if !self.sim.config.withhold_ready {
                    greet(self.sim, &mut session, state, &id, shard);
                }
                state.sessions.insert(id.clone(), session);
                record.outcome = IdentifyOutcome::Ready {
                    session_id: id.to_string(),
                };
                state.records.identifies.push(record);
                Some(id)
            }
        };
        let Some(session_id) = session_id else {
            return self
                .send_control(control(9, "false"), Control::InvalidSession(false))
                .await;
        };
        self.session = Some(session_id);
        self.sent_seq = 0;
        self.replay_until = 0;
        self.sim.first_session.fire();
        Flow::Continue
    }

    pub(super) async fn on_resume(&mut self, data: &Value) -> Flow {
        let session_id = data
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seq = data.get("seq").and_then(Value::as_u64);
        let mut record = ResumeRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            session_id: session_id.clone(),
            seq: seq.unwrap_or(0),
            outcome: ResumeOutcome::InvalidSession,
        };
        let refusal = if self.session.is_some() {
            Some((4005, "Already authenticated."))
        } else if !self.token_ok(data) {
            Some((4004, "Authentication failed."))
        } else if seq.is_none() || session_id.is_empty() {
            Some((4002, "Error while decoding payload."))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            record.outcome = ResumeOutcome::Closed { code };
            self.sim.lock().records.resumes.push(record);
            return self.close_flow(code, reason).await;
        }
        let seq = seq.unwrap_or(0);
        let now = Instant::now();
        enum Verdict {
            Resumed { id: Arc<str>, last: u64 },
            Invalid,
            FutureSeq,
        }
        let verdict = {
            let mut guard = self.sim.lock();
            let state = &mut *guard;
            let window = self.sim.config.resume_window;
            state.sessions.retain(|_, s| !s.expired(now, window));
            let key = state
                .sessions
                .get_key_value(session_id.as_str())
                .map(|(k, _)| k.clone());
            let verdict = match key.as_ref().and_then(|k| state.sessions.get_mut(k)) {
                None => Verdict::Invalid,
                Some(session) if seq > session.last_seq => Verdict::FutureSeq,
                Some(session)
                    if seq + 1 < session.log.front().map_or(session.last_seq + 1, |l| l.seq) =>
                {
                    Verdict::Invalid
                }
                Some(session) => {
                    let previous = session.attached.replace(self.conn);
                    session.detached_at = None;
                    let last = session.last_seq;
                    session.push("RESUMED", RESUMED_DATA, self.sim.config.resume_buffer);
                    if let Some(tx) = previous
                        .filter(|c| *c != self.conn)
                        .and_then(|c| state.connections.get(&c))
                    {
                        let _ = tx.try_send(Command::Superseded);
                    }
                    match key.clone() {
                        Some(id) => Verdict::Resumed { id, last },
                        None => Verdict::Invalid,
                    }
                }
            };
            record.outcome = match &verdict {
                Verdict::Resumed { last, .. } => ResumeOutcome::Resumed {
                    replayed: last - seq,
                },
                Verdict::Invalid => ResumeOutcome::InvalidSession,
                Verdict::FutureSeq => ResumeOutcome::Closed { code: 4007 },
            };
            if !matches!(verdict, Verdict::Resumed { .. }) {
                // Either way the client must start a new session.
                if let Some(key) = key {
                    state.sessions.remove(&key);
                }
            }
            state.records.resumes.push(record);
            verdict
        };
        match verdict {
            Verdict::Resumed { id, last } => {
                self.session = Some(id);
                self.sent_seq = seq;
                self.replay_until = last;
                Flow::Continue
            }
            Verdict::Invalid => {
                self.send_control(control(9, "false"), Control::InvalidSession(false))
                    .await
            }
            Verdict::FutureSeq => self.close_flow(4007, "Invalid seq.").await,
        }
    }
}

/// Queues what a new session hears first: READY, each of its guilds, and the configured burst.
fn greet(
    sim: &Discord,
    session: &mut Session,
    state: &mut State,
    id: &str,
    shard: Option<[u64; 2]>,
) {
    let capacity = sim.config.resume_buffer;
    session.push("READY", &sim.ready_data(id, shard), capacity);
    for guild in &sim.guilds {
        if session.receives(guild.id) {
            session.push("GUILD_CREATE", &sim.guild_create_data(guild), capacity);
        }
    }
    for _ in 0..sim.config.messages_after_ready {
        let (guild, data) = sim.message_create(state);
        if session.receives(guild) {
            session.push("MESSAGE_CREATE", &data, capacity);
        }
    }
}
