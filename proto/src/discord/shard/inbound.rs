//! What arrives on a connection: frames (inflated when compressed), the envelope, and each
//! opcode; and what the handshake sends back (IDENTIFY, RESUME, heartbeat answers) through the
//! size and rate limits.

use super::{
    AfterClose, CLOSE_RESUMABLE, DiscordShard, INVALID_SESSION_WAIT_MS, Phase, SendError, Stage,
    Timer,
};
use crate::discord::envelope::{DispatchMeta, Envelope};
use crate::discord::heartbeat::Heartbeat;
use crate::discord::wire::{self, op};
use crate::discord::{
    IdentifyLimiter, IdentifyQueue, IdentifyRequest, IdentifyWait, MAX_PAYLOAD_BYTES,
    SENDS_PER_WINDOW, SOURCE, SendClass, WINDOW_MS,
};
use crate::{ConnId, Event, Frame, Level, Millis, Now, Output, RawJson, Status, redact};
use std::ops::Range;

impl DiscordShard {
    pub(super) fn on_frame(
        &mut self,
        now: Now,
        id: ConnId,
        frame: Frame,
        limiter: &mut IdentifyLimiter,
    ) {
        if !self.is_current(id) {
            self.stale(now, "a frame", id);
            return;
        }
        let max_bytes = self.config.max_message_bytes;
        let Some(conn) = self.conn() else { return };
        if let Some(heartbeat) = &mut conn.heartbeat {
            heartbeat.frame_received(now.mono);
        }
        match frame {
            Frame::Text(text) => self.on_payload(now, text, limiter),
            Frame::Binary(bytes) => {
                let Some(decompress) = conn.decompress.as_mut() else {
                    self.core.log(
                        now,
                        Level::Warn,
                        "ws.binary.unexpected",
                        format!(
                            "skipped a {}-byte binary frame: compression is off",
                            bytes.len()
                        ),
                    );
                    return;
                };
                let stream = decompress.name();
                match decompress.push(bytes.as_slice(), max_bytes) {
                    Ok(None) => {}
                    Ok(Some(payload)) => match String::from_utf8(payload) {
                        Ok(text) => self.on_payload(now, text, limiter),
                        Err(_) => self.core.log(
                            now,
                            Level::Warn,
                            "ws.parse.error",
                            "skipped a decompressed payload that is not UTF-8".to_owned(),
                        ),
                    },
                    Err(error) => {
                        self.core.log(
                            now,
                            Level::Warn,
                            "inflate.error",
                            format!("{stream} broken ({error}): reconnecting"),
                        );
                        self.close(
                            now,
                            CLOSE_RESUMABLE,
                            "decompression error",
                            AfterClose::Reconnect {
                                reason: format!("decompression error: {error}"),
                                min_delay: 0,
                            },
                        );
                    }
                }
            }
            Frame::Ping(_) | Frame::Pong(_) => {}
        }
    }

    pub(super) fn on_payload(&mut self, now: Now, text: String, limiter: &mut IdentifyLimiter) {
        let envelope = match Envelope::parse(&text) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "ws.parse.error",
                    format!("skipped a frame that is not a Gateway payload: {error}"),
                    serde_json::json!({ "bytes": text.len() }),
                );
                return;
            }
        };
        let Some(opcode) = envelope.op else {
            self.core.log_with(
                now,
                Level::Warn,
                "ws.parse.error",
                "skipped a frame without op".to_owned(),
                serde_json::json!({ "bytes": text.len() }),
            );
            return;
        };
        let closing = matches!(
            self.conn().map(|conn| &conn.stage),
            Some(Stage::Closing { .. })
        );
        if closing && opcode != op::DISPATCH {
            self.core.log(
                now,
                Level::Debug,
                "ws.closing",
                format!("ignored op {opcode} while closing"),
            );
            return;
        }
        match opcode {
            op::DISPATCH => {
                if let Some(dispatch) = self.on_dispatch(now, envelope) {
                    self.emit_dispatch(now, text, dispatch);
                }
            }
            op::HEARTBEAT => {
                self.core.log(
                    now,
                    Level::Debug,
                    "heartbeat.requested",
                    "the server asked for a heartbeat".to_owned(),
                );
                self.send_heartbeat_reply(now);
            }
            op::RECONNECT => self.on_reconnect_request(now),
            op::INVALID_SESSION => self.on_invalid_session(now, envelope.data()),
            op::HELLO => self.on_hello(now, envelope.data(), limiter),
            op::HEARTBEAT_ACK => self.on_heartbeat_ack(now),
            other => self.core.log(
                now,
                Level::Warn,
                "ws.op.unknown",
                format!("skipped a frame with unknown op {other}"),
            ),
        }
    }

    pub(super) fn on_hello(&mut self, now: Now, d: &str, limiter: &mut IdentifyLimiter) {
        let Some(conn) = self.conn() else { return };
        if !matches!(conn.stage, Stage::Connecting | Stage::AwaitingHello) {
            self.core.log(
                now,
                Level::Debug,
                "gateway.hello",
                "ignored a second HELLO".to_owned(),
            );
            return;
        }
        let interval = match serde_json::from_str::<wire::Hello>(d) {
            Ok(hello) if hello.heartbeat_interval > 0 => hello.heartbeat_interval,
            _ => {
                self.core.log(
                    now,
                    Level::Warn,
                    "gateway.hello.invalid",
                    "HELLO without a usable heartbeat_interval: reconnecting".to_owned(),
                );
                self.close(
                    now,
                    CLOSE_RESUMABLE,
                    "invalid hello",
                    AfterClose::Reconnect {
                        reason: "invalid HELLO".to_owned(),
                        min_delay: 0,
                    },
                );
                return;
            }
        };
        let (heartbeat, first) = Heartbeat::start(interval, &mut self.rng);
        if let Some(conn) = self.conn() {
            conn.heartbeat = Some(heartbeat);
            conn.limiter.set_heartbeat_interval(interval);
            conn.stage = Stage::WaitingPermit;
        }
        self.core.timers.cancel(Timer::HelloTimeout);
        self.arm(Timer::Heartbeat, now, first);
        self.core.log_with(
            now,
            Level::Debug,
            "gateway.hello",
            format!("heartbeat every {interval} ms, the first in {first} ms"),
            serde_json::json!({ "intervalMs": interval, "firstMs": first }),
        );
        if self.session.is_resumable() {
            self.send_resume(now, limiter);
        } else {
            // A session that cannot be resumed has nothing left worth keeping, not even `seq`.
            self.session.clear();
            self.try_identify(now, limiter);
        }
    }

    pub(super) fn try_identify(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        if self.config.identify_queue == IdentifyQueue::External {
            self.request_identify(now, limiter);
            return;
        }
        match limiter.try_acquire(self.config.shard_id, now.mono) {
            Ok(()) => self.send_identify(now),
            Err(wait) => {
                let ms = wait.until() - now.mono;
                self.core.log_with(
                    now,
                    Level::Info,
                    "identify.wait",
                    format!("waiting {ms} ms for an identify permit"),
                    serde_json::json!({ "waitMs": ms }),
                );
                if let Some(conn) = self.conn() {
                    conn.stage = Stage::WaitingPermit;
                }
                self.arm_at(Timer::IdentifyPermit, now, wait.until());
            }
        }
    }

    /// Asks the external identify queue for leave to IDENTIFY, unless a request is out already
    /// (its grant serves this connection too), and waits in [`Stage::WaitingPermit`].
    fn request_identify(&mut self, now: Now, limiter: &IdentifyLimiter) {
        if let Some(conn) = self.conn() {
            conn.stage = Stage::WaitingPermit;
        }
        if self.identify_requested {
            self.core.log(
                now,
                Level::Debug,
                "identify.request",
                "still waiting for the identify grant asked for earlier".to_owned(),
            );
            return;
        }
        self.identify_requested = true;
        let request = IdentifyRequest {
            shard_id: self.config.shard_id,
            shard_count: self.config.shard_count,
            bucket: limiter.bucket(self.config.shard_id),
            max_concurrency: limiter.max_concurrency(),
            session_start_limit: limiter.reading(now.mono),
        };
        self.core.log_with(
            now,
            Level::Info,
            "identify.request",
            format!(
                "asking the identify queue for a grant (bucket {})",
                request.bucket
            ),
            serde_json::json!({ "bucket": request.bucket, "maxConcurrency": request.max_concurrency }),
        );
        self.core.emit(Output::IdentifyRequest(request));
    }

    /// The external identify queue's grant: IDENTIFY now if a connection waits for it, else
    /// the grant is spent (the next HELLO asks again).
    pub(super) fn on_identify_granted(
        &mut self,
        now: Now,
        shard: u32,
    ) -> Result<(), crate::Misuse> {
        if shard != self.config.shard_id || self.config.identify_queue != IdentifyQueue::External {
            return Err(crate::Misuse::NoIdentifyRequest(shard));
        }
        self.identify_requested = false;
        let waiting = matches!(
            self.conn().map(|conn| &conn.stage),
            Some(Stage::WaitingPermit)
        );
        if waiting && !self.session.is_resumable() {
            self.send_identify(now);
        } else {
            self.core.log(
                now,
                Level::Info,
                "identify.grant_unused",
                "an identify grant came while no connection waits for it: it is spent".to_owned(),
            );
        }
        Ok(())
    }

    /// The external identify queue says why the IDENTIFY still waits: logged as the machine's
    /// own limiter logs its waits (a spent daily budget as a warning). A word for a request no
    /// longer out (granted meanwhile) is stale.
    pub(super) fn on_identify_waiting(
        &mut self,
        now: Now,
        shard: u32,
        wait: IdentifyWait,
    ) -> Result<(), crate::Misuse> {
        if shard != self.config.shard_id || self.config.identify_queue != IdentifyQueue::External {
            return Err(crate::Misuse::NoIdentifyRequest(shard));
        }
        if !self.identify_requested {
            self.core.log(
                now,
                Level::Debug,
                "identify.stale",
                "ignored the identify queue's word on a request no longer out".to_owned(),
            );
            return Ok(());
        }
        let ms = wait.until() - now.mono;
        match wait {
            IdentifyWait::Budget { .. } => self.core.log_with(
                now,
                Level::Warn,
                "identify.budget",
                format!(
                    "the daily session-start budget is spent (counted by the identify queue for every process of the bot): waiting {ms} ms for Discord to refill it before identifying"
                ),
                serde_json::json!({ "waitMs": ms, "queue": "external" }),
            ),
            _ => self.core.log_with(
                now,
                Level::Info,
                "identify.wait",
                format!("the identify queue holds the IDENTIFY {ms} ms for its bucket"),
                serde_json::json!({ "waitMs": ms, "queue": "external" }),
            ),
        }
        Ok(())
    }

    pub(super) fn send_identify(&mut self, now: Now) {
        self.session.clear();
        let frame = self.config.identify_frame();
        let preview: serde_json::Value =
            serde_json::from_str(&redact::json_secrets(&frame)).unwrap_or_default();
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => self.core.log_with(
                now,
                Level::Info,
                "gateway.identify",
                format!("identifying with intents {}", self.config.intents),
                serde_json::json!({ "payload": preview }),
            ),
            // The configuration was checked to fit, so this cannot happen; fail loudly if it does.
            Err(SendError::TooLarge) => {
                self.fail(
                    now,
                    "ws.send.too_large",
                    "the IDENTIFY payload exceeds 4096 bytes".to_owned(),
                );
                return;
            }
            Err(SendError::RateLimited(at)) => self.essential_denied(now, "IDENTIFY", at),
        }
        // Waiting for READY either way: if the IDENTIFY could not go, the ready timeout recovers.
        if let Some(conn) = self.conn() {
            conn.stage = Stage::Identifying;
        }
        self.arm(Timer::ReadyTimeout, now, self.config.ready_timeout_ms);
    }

    pub(super) fn send_resume(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        let Some(state) = self.session.resume_state() else {
            self.try_identify(now, limiter);
            return;
        };
        let frame = wire::resume(self.config.bare_token(), &state.session_id, state.seq);
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => {
                let preview: serde_json::Value =
                    serde_json::from_str(&wire::resume("[redacted]", "[redacted]", state.seq))
                        .unwrap_or_default();
                self.core.log_with(
                    now,
                    Level::Info,
                    "gateway.resume",
                    format!("resuming the session from seq {}", state.seq),
                    serde_json::json!({ "payload": preview }),
                );
            }
            Err(SendError::TooLarge) => {
                self.core.log(
                    now,
                    Level::Warn,
                    "session.reset",
                    "the RESUME payload would exceed 4096 bytes (an oversized session_id): identifying instead".to_owned(),
                );
                self.session.clear();
                self.try_identify(now, limiter);
                return;
            }
            Err(SendError::RateLimited(at)) => self.essential_denied(now, "RESUME", at),
        }
        // Waiting for RESUMED either way: if the RESUME could not go, the ready timeout recovers.
        self.session.resume_sent();
        if let Some(conn) = self.conn() {
            conn.stage = Stage::Resuming { replayed: 0 };
        }
        self.arm(Timer::ReadyTimeout, now, self.config.ready_timeout_ms);
    }

    /// The reserve kept for essential sends ran out, which the reserve sizing rules out. The
    /// caller carries on as if it went out: the ready timeout or the next heartbeat recovers.
    pub(super) fn essential_denied(&mut self, now: Now, what: &str, at: Millis) {
        self.core.log(
            now,
            Level::Warn,
            "ratelimit.exhausted",
            format!(
                "{what} not sent: the send budget is spent for another {} ms",
                at - now.mono
            ),
        );
    }

    /// Sends `text` on the current connection if it fits the size and rate limits.
    pub(super) fn send(
        &mut self,
        now: Now,
        class: SendClass,
        text: String,
    ) -> Result<(), SendError> {
        let Phase::Live(conn) = &mut self.phase else {
            return Err(SendError::RateLimited(now.mono));
        };
        if text.len() > MAX_PAYLOAD_BYTES {
            let opcode = Envelope::parse(&text).ok().and_then(|e| e.op);
            let size = text.len();
            self.core.log_with(now, Level::Error, "ws.send.too_large", format!(
                    "not sent: an op {} payload of {size} bytes exceeds Discord's {MAX_PAYLOAD_BYTES}-byte limit",
                    opcode.map_or("?".to_owned(), |op| op.to_string())
                ), serde_json::json!({ "bytes": size, "op": opcode }));
            return Err(SendError::TooLarge);
        }
        conn.limiter
            .try_acquire(class, now.mono)
            .map_err(SendError::RateLimited)?;
        let id = conn.id;
        self.core.emit(Output::Send {
            conn: id,
            frame: Frame::Text(text),
        });
        Ok(())
    }

    /// Tracks the seq and the session's lifecycle; the dispatch to emit, if the event filter
    /// wants it.
    pub(super) fn on_dispatch(&mut self, now: Now, envelope: Envelope<'_>) -> Option<Dispatch> {
        if let Some(s) = envelope.s {
            self.session.observe_seq(s);
        }
        let Some(event_type) = envelope.t.as_deref() else {
            self.core.log(
                now,
                Level::Warn,
                "ws.parse.error",
                "skipped a dispatch without t".to_owned(),
            );
            return None;
        };
        let closing = match self.conn() {
            Some(conn) => match &mut conn.stage {
                Stage::Closing { .. } => true,
                Stage::Resuming { replayed } if event_type != "RESUMED" => {
                    *replayed = replayed.saturating_add(1);
                    false
                }
                _ => false,
            },
            None => true,
        };
        if !closing {
            match event_type {
                "READY" => self.on_ready(now, envelope.data()),
                "RESUMED" => self.on_resumed(now),
                _ => {}
            }
        }
        let wanted = self
            .config
            .events
            .as_ref()
            .is_none_or(|events| events.contains(event_type));
        wanted.then(|| Dispatch {
            seq: envelope.s,
            event_type: event_type.to_owned(),
            data: envelope.d,
            meta: envelope.meta,
        })
    }

    /// Emits a dispatch whose `d` is a span of the frame's `text`.
    fn emit_dispatch(&mut self, now: Now, text: String, dispatch: Dispatch) {
        let data = dispatch
            .data
            .map_or_else(RawJson::null, |span| RawJson::from_parsed_span(text, span));
        let meta = dispatch.meta;
        let mut event = Event::new(SOURCE, dispatch.event_type, data, now.wall);
        event
            .meta
            .insert("event_type".into(), event.event_type.clone());
        if let Some(seq) = dispatch.seq {
            event.meta.insert("seq".into(), seq.to_string());
        }
        // Which session `seq` belongs to, when the bot has several: cursors are kept per shard.
        if let Some(label) = &self.shard_label {
            event.meta.insert("shard".into(), label.clone());
        }
        if let Some(key) = meta
            .channel_id
            .as_deref()
            .and_then(|channel| crate::conversation::discord(meta.guild_id.as_deref(), channel))
        {
            event.meta.insert("conversation_key".into(), key);
        }
        for (key, value) in [
            ("channel_id", meta.channel_id),
            ("guild_id", meta.guild_id),
            ("user_id", meta.user_id),
        ] {
            if let Some(value) = value {
                event.meta.insert(key.into(), value);
            }
        }
        self.core.emit_event(event, None);
    }

    pub(super) fn on_ready(&mut self, now: Now, d: &str) {
        let ready: wire::Ready = serde_json::from_str(d).unwrap_or_default();
        self.session
            .ready(ready.session_id, ready.resume_gateway_url);
        self.connected(now);
        if self.session.is_resumable() {
            self.core
                .log(now, Level::Info, "gateway.ready", "ready".to_owned());
        } else {
            self.core.log(
                now,
                Level::Warn,
                "gateway.ready",
                "ready, but READY lacks session_id or resume_gateway_url: this session cannot be resumed".to_owned(),
            );
        }
    }

    pub(super) fn on_resumed(&mut self, now: Now) {
        let replayed = match self.conn().map(|conn| &conn.stage) {
            Some(Stage::Resuming { replayed }) => Some(*replayed),
            _ => None,
        };
        self.session.resumed();
        self.connected(now);
        match replayed {
            Some(replayed) => self.core.log_with(
                now,
                Level::Info,
                "gateway.resumed",
                format!("resumed, {replayed} missed event(s) replayed"),
                serde_json::json!({ "replayed": replayed }),
            ),
            None => self.core.log(
                now,
                Level::Debug,
                "gateway.resumed",
                "RESUMED without a RESUME in flight".to_owned(),
            ),
        }
    }

    pub(super) fn connected(&mut self, _now: Now) {
        if let Some(conn) = self.conn() {
            conn.stage = Stage::Ready;
        }
        self.core.timers.cancel(Timer::ReadyTimeout);
        self.backoff.reset();
        self.core.set_status(Status::Connected, None);
    }

    pub(super) fn on_heartbeat_ack(&mut self, now: Now) {
        let rtt = self
            .conn()
            .and_then(|conn| conn.heartbeat.as_mut())
            .and_then(|heartbeat| heartbeat.acked(now.mono));
        match rtt {
            Some(rtt) => {
                self.heartbeat_rtt = Some(rtt);
                self.core.log_with(
                    now,
                    Level::Debug,
                    "heartbeat.ack",
                    format!("heartbeat acknowledged in {rtt} ms"),
                    serde_json::json!({ "rttMs": rtt }),
                );
            }
            None => self.core.log(
                now,
                Level::Debug,
                "heartbeat.ack",
                "an ACK without a heartbeat in flight".to_owned(),
            ),
        }
    }

    /// Answers op 1 (or retries a deferred answer): a heartbeat now, which restarts the interval.
    pub(super) fn send_heartbeat_reply(&mut self, now: Now) {
        let frame = wire::heartbeat(self.session.seq());
        match self.send(now, SendClass::Other, frame) {
            Ok(()) => {
                let mut interval = None;
                if let Some(conn) = self.conn() {
                    conn.reply_pending = false;
                    if let Some(heartbeat) = &mut conn.heartbeat {
                        heartbeat.sent(now.mono);
                        interval = Some(heartbeat.interval_ms());
                    }
                }
                self.core.timers.cancel(Timer::SendRetry);
                if let Some(interval) = interval {
                    self.arm(Timer::Heartbeat, now, interval);
                }
            }
            Err(SendError::RateLimited(at)) => {
                let first = self.conn().is_some_and(|conn| {
                    let first = !conn.reply_pending;
                    conn.reply_pending = true;
                    first
                });
                if first {
                    self.core.log_with(now, Level::Warn, "ratelimit.deferred", format!(
                            "send budget spent ({SENDS_PER_WINDOW} per {WINDOW_MS} ms, some kept for heartbeats): the heartbeat the server asked for goes in {} ms",
                            at - now.mono
                        ), serde_json::json!({ "waitMs": at - now.mono }));
                }
                self.arm_at(Timer::SendRetry, now, at);
            }
            Err(SendError::TooLarge) => {}
        }
    }

    pub(super) fn on_reconnect_request(&mut self, now: Now) {
        let message = if self.session.is_resumable() {
            "the server asked to reconnect (op 7): resuming"
        } else {
            "the server asked to reconnect (op 7) before a resumable session: identifying again"
        };
        self.core.log(
            now,
            Level::Info,
            "ws.reconnect.requested",
            message.to_owned(),
        );
        self.close(
            now,
            CLOSE_RESUMABLE,
            "reconnect requested",
            AfterClose::Reconnect {
                reason: "reconnect requested (op 7)".to_owned(),
                min_delay: 0,
            },
        );
    }

    pub(super) fn on_invalid_session(&mut self, now: Now, d: &str) {
        let resumable = wire::invalid_session_resumable(d);
        if resumable && self.session.is_resumable() {
            self.core.log(
                now,
                Level::Warn,
                "session.invalid",
                "invalid session (op 9, resumable): reconnecting to resume".to_owned(),
            );
            self.close(
                now,
                CLOSE_RESUMABLE,
                "invalid session",
                AfterClose::Reconnect {
                    reason: "invalid session (op 9, resumable)".to_owned(),
                    min_delay: 0,
                },
            );
        } else {
            let wait = self.rng.u64(INVALID_SESSION_WAIT_MS);
            self.session.clear();
            self.core.log_with(
                now,
                Level::Warn,
                "session.invalid",
                format!(
                    "invalid session (op 9): starting a new session in {wait} ms at the earliest"
                ),
                serde_json::json!({ "resumable": resumable, "waitMs": wait }),
            );
            self.close(
                now,
                CLOSE_RESUMABLE,
                "invalid session",
                AfterClose::Reconnect {
                    reason: "invalid session (op 9)".to_owned(),
                    min_delay: wait,
                },
            );
        }
    }
}

/// A dispatch to emit: its type, where its `d` lies in the frame, and its routing facts.
pub(super) struct Dispatch {
    /// `s`: stamped as `meta.seq`, from which a stored cursor knows where to resume.
    seq: Option<u64>,
    event_type: String,
    data: Option<Range<usize>>,
    meta: DispatchMeta,
}
