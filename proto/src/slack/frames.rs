//! What each inbound Socket Mode message does: `hello` makes a connection live (and retires the
//! ones it replaces), `disconnect` starts a rotation or ends the source depending on its reason,
//! envelopes become events (duplicates are not emitted again: acknowledged at once, or with their
//! original when it is still unconfirmed), and `Delivered` sends the ack.

use super::acks::PendingAck;
use super::connections::Phase;
use super::wire::{self, DebugInfo, Envelope, Message};
use super::{
    ACK_DEADLINE_MS, DRAIN_TIMEOUT_MS, MAX_PENDING_ACKS, SOURCE, SlackMachine,
    TOO_MANY_WEBSOCKETS_WAIT_MS,
};
use super::{config, meta, scrub};
use crate::{ConnId, DeliveryId, Event, Frame, Level, Millis, Misuse, Now, RawJson};
use serde_json::json;
use std::borrow::Cow;

impl SlackMachine {
    /// A frame on `conn` that the driver read at `arrived` (at most `now.mono`): Slack's ack
    /// window runs from then, however long the frame waited in the driver's queue.
    pub(super) fn on_frame(&mut self, now: Now, conn: ConnId, frame: Frame, arrived: Millis) {
        if self.pool.phase(conn).is_none() {
            return self.stale_connection(now, conn, "a frame");
        }
        self.pool.on_inbound(conn, now.mono);
        match frame {
            Frame::Ping(_) | Frame::Pong(_) => {}
            Frame::Binary(bytes) => self.core.log_with(
                now,
                Level::Warn,
                "frame.binary",
                format!("ignored a binary frame on connection {}", conn.0),
                json!({"conn": conn, "bytes": bytes.len()}),
            ),
            Frame::Text(text) => self.on_text(now, conn, &text, arrived),
        }
    }

    fn on_text(&mut self, now: Now, conn: ConnId, text: &str, arrived: Millis) {
        match wire::parse(text) {
            Err(error) => {
                let message = format!(
                    "ignored a text frame on connection {} that is not a well-formed JSON object",
                    conn.0
                );
                let log = self
                    .core
                    .new_log(now, Level::Warn, "frame.malformed", message)
                    .with_error(scrub(&error.to_string()))
                    .with_detail(json!({"conn": conn, "bytes": text.len()}));
                self.core.push_log(log);
            }
            Ok(Message::Hello {
                num_connections,
                debug_info,
            }) => self.on_hello(now, conn, num_connections, debug_info),
            Ok(Message::Disconnect { reason, debug_info }) => {
                self.on_disconnect(now, conn, reason.as_deref(), debug_info)
            }
            Ok(Message::Envelope(envelope)) => self.on_envelope(now, conn, envelope, arrived),
            Ok(Message::Other { kind }) => self.core.log_with(
                now,
                Level::Debug,
                "frame.unknown",
                format!(
                    "ignored a frame of type {} on connection {}",
                    kind.as_deref().unwrap_or("(none)"),
                    conn.0
                ),
                json!({"conn": conn, "type": kind}),
            ),
        }
    }

    fn on_hello(
        &mut self,
        now: Now,
        conn: ConnId,
        num_connections: Option<u64>,
        debug_info: DebugInfo,
    ) {
        if !self.pool.on_hello(conn) {
            return self.core.log_with(
                now,
                Level::Debug,
                "socket.hello.repeat",
                format!("ignored a repeated hello on connection {}", conn.0),
                json!({"conn": conn}),
            );
        }
        self.backoff.reset();
        let registered = num_connections.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let lifetime = debug_info
            .approximate_connection_time
            .map_or_else(|| "?".to_owned(), |s| s.to_string());
        self.core.log_with(
            now,
            Level::Info,
            "socket.hello",
            format!(
                "connection {} ready; Slack counts {registered} connection(s) for this app, expected lifetime {lifetime} s",
                conn.0
            ),
            json!({
                "conn": conn,
                "num_connections": num_connections,
                "approximate_connection_time": debug_info.approximate_connection_time,
                "host": debug_info.host,
            }),
        );
        let held = self.pool.len() as u64;
        if let Some(registered) = num_connections.filter(|&n| n > held) {
            self.core.log_with(
                now,
                Level::Warn,
                "connections.ghost",
                format!(
                    "Slack counts {registered} connections for this app but this source holds {held}: \
                     other processes or stale registrations use the rest of the {} allowed",
                    config::MAX_CONNECTIONS
                ),
                json!({"registered": registered, "held": held}),
            );
        }
        self.update_status(String::new);
        for old in self.pool.replaced() {
            if self.pool.phase(old) == Some(Phase::Stale) {
                self.core.log_with(
                    now,
                    Level::Info,
                    "ws.rotated",
                    format!(
                        "closing silent connection {}: connection {} took over",
                        old.0, conn.0
                    ),
                    json!({"closed": old, "replacement": conn}),
                );
                self.close(now, old, format!("replaced by connection {}", conn.0));
            } else {
                self.core.log_with(
                    now,
                    Level::Info,
                    "ws.rotated",
                    format!(
                        "connection {} took over from connection {}, which is still read until Slack \
                         closes it (at most {DRAIN_TIMEOUT_MS} ms)",
                        conn.0, old.0
                    ),
                    json!({"replaced": old, "replacement": conn}),
                );
                self.pool.replace(old, now.mono);
            }
        }
    }

    fn on_disconnect(
        &mut self,
        now: Now,
        conn: ConnId,
        reason: Option<&str>,
        debug_info: DebugInfo,
    ) {
        let detail = json!({"conn": conn, "reason": reason, "host": debug_info.host});
        match reason {
            Some("link_disabled") => self.fail(
                "Slack turned Socket Mode off for this app (disconnect reason link_disabled): \
                 enable Socket Mode in the app settings"
                    .to_owned(),
            ),
            Some("too_many_websockets") => {
                let wait_ms = self.rng.u64(TOO_MANY_WEBSOCKETS_WAIT_MS);
                self.core.log_with(
                    now,
                    Level::Warn,
                    "disconnect.too_many_websockets",
                    format!(
                        "Slack refused connection {}: this app has too many Socket Mode connections \
                         (at most {}, other processes count too); opening none for {wait_ms} ms",
                        conn.0,
                        config::MAX_CONNECTIONS
                    ),
                    json!({"conn": conn, "waitMs": wait_ms, "host": debug_info.host}),
                );
                self.close(now, conn, "too_many_websockets".to_owned());
                self.wait_until(now.mono + wait_ms);
                self.update_status(|| "too_many_websockets".to_owned());
            }
            _ => {
                let reason = reason.unwrap_or("(none)");
                match self.pool.phase(conn) {
                    Some(Phase::Live) => {
                        let level = match reason {
                            "warning" | "refresh_requested" => Level::Info,
                            _ => Level::Warn,
                        };
                        self.pool.retire(conn, Phase::Draining);
                        self.core.log_with(
                            now,
                            level,
                            "disconnect.requested",
                            format!(
                                "Slack will close connection {} ({reason}); it keeps receiving while its replacement opens",
                                conn.0
                            ),
                            detail,
                        );
                        self.reconcile();
                    }
                    Some(Phase::Connecting | Phase::AwaitingHello) => {
                        self.close(now, conn, format!("disconnect {reason}"));
                        self.failed_attempt(
                            now,
                            format!(
                                "connection {} got disconnect ({reason}) before hello",
                                conn.0
                            ),
                        );
                    }
                    Some(Phase::Draining | Phase::Stale | Phase::Replaced | Phase::Closing)
                    | None => self.core.log_with(
                        now,
                        Level::Debug,
                        "disconnect.repeat",
                        format!(
                            "connection {} is already being replaced or closed ({reason})",
                            conn.0
                        ),
                        detail,
                    ),
                }
            }
        }
    }

    fn on_envelope(&mut self, now: Now, conn: ConnId, envelope: Envelope<'_>, arrived: Millis) {
        let Envelope {
            envelope_id,
            kind,
            payload,
            retry_attempt,
            retry_reason,
        } = envelope;
        // An `events_api` envelope without a usable id is still an event: emitted (deduplicated
        // by its `event_id`), but nothing can acknowledge it.
        let (envelope_id, no_id) = match envelope_id {
            Ok(id) => (id, None),
            Err(what) => (Cow::Borrowed(""), Some(what)),
        };
        let missing = if payload.is_none() { "payload" } else { "type" };
        let (Some(kind), Some(payload)) = (kind, payload) else {
            let acked = if no_id.is_some() {
                "not acknowledged (no envelope_id)"
            } else {
                "acknowledged"
            };
            self.core.log_with(
                now,
                Level::Warn,
                "envelope.incomplete",
                format!(
                    "envelope {envelope_id} on connection {} has no {missing}; {acked}, not emitted",
                    conn.0
                ),
                json!({"conn": conn, "envelope_id": envelope_id}),
            );
            if no_id.is_some() {
                return;
            }
            return self.send_ack(now, conn, &envelope_id);
        };
        let extracted = meta::extract(&kind, &payload);
        let first = match (&extracted.event_id, no_id) {
            (None, Some(_)) => true,
            (event_id, _) => self
                .seen
                .first_sighting(event_id.as_deref(), &envelope_id, now.mono),
        };
        if !first {
            if no_id.is_some() {
                return self.core.log_with(
                    now,
                    Level::Debug,
                    "envelope.duplicate",
                    format!(
                        "an envelope without envelope_id on connection {} repeats an emitted payload; not emitted",
                        conn.0
                    ),
                    json!({"conn": conn, "event_id": extracted.event_id}),
                );
            }
            // The original may not be held yet: then this copy is acknowledged with it, so an
            // ack never runs ahead of the consumer.
            let original = extracted
                .event_id
                .as_deref()
                .and_then(|id| self.acks.waiting_with(id));
            let waits = original.is_some();
            if let Some(original) = original {
                original
                    .redeliveries
                    .push((conn, envelope_id.clone().into_owned()));
            }
            let (repeats, acked) = if waits {
                (
                    "an event still on its way to the consumers",
                    "acknowledged once they hold it",
                )
            } else {
                ("an emitted payload", "acknowledged")
            };
            self.core.log_with(
                now,
                Level::Debug,
                "envelope.duplicate",
                format!(
                    "envelope {envelope_id} on connection {} repeats {repeats}; {acked}, not emitted",
                    conn.0
                ),
                json!({
                    "conn": conn,
                    "envelope_id": envelope_id,
                    "event_id": extracted.event_id,
                    "retry_attempt": retry_attempt,
                }),
            );
            if waits {
                return;
            }
            return self.send_ack(now, conn, &envelope_id);
        }
        if let Some(what) = no_id {
            let dedup = match &extracted.event_id {
                Some(event_id) => format!("deduplicated by event_id {event_id}"),
                None => "not deduplicated (no event_id either)".to_owned(),
            };
            self.core.log_with(
                now,
                Level::Warn,
                "envelope.no_id",
                format!(
                    "{kind} envelope on connection {} has no envelope_id ({what}): emitted, {dedup}, \
                     but it cannot be acknowledged (Slack may redeliver it)",
                    conn.0
                ),
                json!({"conn": conn, "field": "envelope_id", "found": what, "event_id": extracted.event_id}),
            );
        }
        let mut event = Event::new(SOURCE, kind.as_ref(), RawJson::from_raw(payload), now.wall);
        event.meta = extracted.meta;
        event.meta.insert("event_type".into(), kind.into_owned());
        if let Some(attempt) = retry_attempt {
            event
                .meta
                .insert("retry_attempt".into(), attempt.to_string());
        }
        if let Some(reason) = retry_reason {
            event
                .meta
                .insert("retry_reason".into(), reason.into_owned());
        }
        if let Some(identity) = &self.identity {
            for (key, value) in [
                ("team_id", &identity.team_id),
                ("bot_user_id", &identity.bot_user_id),
            ] {
                if let Some(value) = value {
                    event.meta.insert(key.into(), value.clone());
                }
            }
        }
        if no_id.is_some() {
            // Nothing to acknowledge, so nothing to confirm.
            return self.core.emit_event(event, None);
        }
        let (delivery, given_up) = self.acks.register(PendingAck {
            conn,
            envelope_id: envelope_id.into_owned(),
            arrived_at: arrived,
            handled_at: now.mono,
            event_id: extracted.event_id,
            redeliveries: Vec::new(),
        });
        if let Some(given_up) = given_up {
            self.core.log_with(
                now,
                Level::Warn,
                "ack.dropped",
                format!(
                    "more than {MAX_PENDING_ACKS} events await confirmation: envelope {} will not be acknowledged (Slack redelivers it)",
                    given_up.envelope_id
                ),
                json!({"conn": given_up.conn, "envelope_id": given_up.envelope_id}),
            );
        }
        self.core.emit_event(event, Some(delivery));
    }

    pub(super) fn on_delivered(&mut self, now: Now, delivery: DeliveryId) -> Result<(), Misuse> {
        let Some(pending) = self.acks.take(delivery)? else {
            return Ok(());
        };
        // From when the driver read the frame: Slack's clock started even earlier, when it
        // sent it, so this is a lower bound on the delay Slack sees.
        let waited_ms = now.mono - pending.arrived_at;
        let sendable = self.pool.phase(pending.conn).is_some_and(Phase::can_send);
        if sendable && waited_ms > ACK_DEADLINE_MS {
            let mut detail = json!({"conn": pending.conn, "envelope_id": pending.envelope_id, "waitedMs": waited_ms});
            let queued_ms = pending.handled_at - pending.arrived_at;
            let queued = if queued_ms > 0 {
                detail["queuedMs"] = json!(queued_ms);
                format!(" ({queued_ms} ms of it in the driver's input queue)")
            } else {
                String::new()
            };
            self.core.log_with(
                now,
                Level::Warn,
                "ack.late",
                format!(
                    "acknowledging envelope {} {waited_ms} ms after it arrived{queued}; Slack may already have redelivered it",
                    pending.envelope_id
                ),
                detail,
            );
        }
        self.send_ack(now, pending.conn, &pending.envelope_id);
        for (conn, envelope_id) in &pending.redeliveries {
            self.send_ack(now, *conn, envelope_id);
        }
        Ok(())
    }
}
