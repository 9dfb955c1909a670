//! Deadlines, closes and what follows them: reconnect (after the backoff), stop, or fail.

use super::{
    AfterClose, CLOSE_NORMAL, CLOSE_RESUMABLE, DiscordShard, Phase, SendError, Stage, Timer,
};
use crate::discord::heartbeat::Liveness;
use crate::discord::wire;
use crate::discord::{CloseAction, IdentifyLimiter, SendClass, close_action, intents, session};
use crate::timers::TimerKind;
use crate::{ConnId, Level, Now, Output, Status};

impl DiscordShard {
    pub(super) fn on_timer(&mut self, now: Now, limiter: &mut IdentifyLimiter) {
        for timer in self.core.timers.take_expired(now.mono) {
            // An earlier timer in this batch may have ended the machine.
            if self.core.is_finished() {
                return;
            }
            match timer {
                Timer::CloseTimeout => self.on_close_timeout(now),
                Timer::HelloTimeout => self.on_hello_timeout(now),
                Timer::ReadyTimeout => self.on_ready_timeout(now),
                Timer::Heartbeat => self.on_heartbeat_due(now),
                Timer::SendRetry => {
                    if self.conn().is_some_and(|conn| conn.reply_pending) {
                        self.send_heartbeat_reply(now);
                    }
                }
                Timer::IdentifyPermit => {
                    if matches!(
                        self.conn().map(|conn| &conn.stage),
                        Some(Stage::WaitingPermit)
                    ) {
                        self.try_identify(now, limiter);
                    }
                }
                Timer::Reconnect => {
                    if matches!(self.phase, Phase::Waiting) {
                        self.open_next(now, limiter);
                    }
                }
            }
        }
    }

    pub(super) fn on_close_timeout(&mut self, now: Now) {
        let Some(conn) = self.conn() else { return };
        if !matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let stage = std::mem::replace(&mut conn.stage, Stage::Connecting);
        let close_timeout = self.config.close_timeout_ms;
        self.core.log(
            now,
            Level::Warn,
            "ws.close.timeout",
            format!(
                "the server did not answer the close frame within {close_timeout} ms: treating the connection as closed"
            ),
        );
        if let Stage::Closing { then } = stage {
            self.after_close(now, then);
        }
    }

    pub(super) fn on_hello_timeout(&mut self, now: Now) {
        let stage = self
            .conn()
            .map(|conn| matches!(conn.stage, Stage::Connecting));
        let timeout = self.config.hello_timeout_ms;
        match stage {
            Some(true) => {
                // Abort the attempt at the driver, then handle it as a failed connect.
                if let Some(id) = self.conn().map(|conn| conn.id) {
                    self.core.emit(Output::Close {
                        conn: id,
                        code: CLOSE_RESUMABLE,
                        reason: "connect timeout".to_owned(),
                    });
                }
                self.connect_failed(now, &format!("no connection within {timeout} ms"));
            }
            Some(false)
                if matches!(
                    self.conn().map(|conn| &conn.stage),
                    Some(Stage::AwaitingHello)
                ) =>
            {
                self.core.log(
                    now,
                    Level::Warn,
                    "hello.timeout",
                    format!("no HELLO within {timeout} ms: the connection is dead"),
                );
                self.abandon(
                    now,
                    "hello timeout",
                    format!("no HELLO within {timeout} ms"),
                );
            }
            _ => {}
        }
    }

    pub(super) fn on_ready_timeout(&mut self, now: Now) {
        let (waiting, what) = match self.conn().map(|conn| &conn.stage) {
            Some(Stage::Identifying) => (true, "READY"),
            Some(Stage::Resuming { .. }) => (true, "RESUMED"),
            _ => (false, ""),
        };
        if !waiting {
            return;
        }
        let timeout = self.config.ready_timeout_ms;
        let within = if timeout.is_multiple_of(1000) {
            format!("{} s", timeout / 1000)
        } else {
            format!("{timeout} ms")
        };
        let why = format!("{what} not received within {within}");
        // Said now, not after the close handshake: a start that times out meanwhile names it.
        self.core
            .set_status(Status::Reconnecting, Some(why.clone()));
        self.core.log(
            now,
            Level::Warn,
            "ready.timeout",
            format!("{why}: reconnecting"),
        );
        self.close(
            now,
            CLOSE_RESUMABLE,
            "ready timeout",
            AfterClose::Reconnect {
                reason: why,
                min_delay: 0,
            },
        );
    }

    /// Reading again after back-pressure: the paused deadlines go on with the time they had
    /// left, and a heartbeat still unacknowledged is excused, since its ACK may be in the backlog
    /// not read yet. The next beat is held to the rule again.
    pub(super) fn on_reading_resumed(&mut self, now: Now) {
        self.core.timers.resume(now.mono);
        if let Some(heartbeat) = self.conn().and_then(|conn| conn.heartbeat.as_mut()) {
            heartbeat.excuse();
        }
    }

    pub(super) fn on_heartbeat_due(&mut self, now: Now) {
        let liveness = self.config.liveness;
        let reading_paused = self.core.timers.is_paused();
        let Some(conn) = self.conn() else { return };
        if matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let Some(heartbeat) = &conn.heartbeat else {
            return;
        };
        // While the driver does not read, the ACK may be waiting unread: beat without judging.
        if !reading_paused && heartbeat.is_zombie(liveness) {
            let interval = heartbeat.interval_ms();
            let silence = match liveness {
                Liveness::Ack => "no ACK",
                Liveness::AnyFrame => "no ACK and no other frame",
            };
            self.core.log(
                now,
                Level::Warn,
                "heartbeat.zombie",
                format!(
                    "{silence} within {interval} ms of the last heartbeat: dropping the zombie connection to resume"
                ),
            );
            self.abandon(
                now,
                "zombie connection",
                "zombie connection (heartbeat not acknowledged)".to_owned(),
            );
            return;
        }
        let frame = wire::heartbeat(self.session.seq());
        match self.send(now, SendClass::Essential, frame) {
            Ok(()) => {
                let mut interval = 0;
                if let Some(conn) = self.conn() {
                    // A beat answers any op 1 still waiting for a permit too.
                    conn.reply_pending = false;
                    if let Some(heartbeat) = &mut conn.heartbeat {
                        heartbeat.sent(now.mono);
                        interval = heartbeat.interval_ms();
                    }
                }
                self.core.timers.cancel(Timer::SendRetry);
                self.arm(Timer::Heartbeat, now, interval);
            }
            Err(SendError::RateLimited(at)) => {
                self.essential_denied(now, "a heartbeat", at);
                self.arm_at(Timer::Heartbeat, now, at);
            }
            Err(SendError::TooLarge) => {}
        }
    }

    // ---- closing ----

    /// Sends a close frame and waits, at most `close_timeout_ms`, for the server's. A connection
    /// already closing keeps its first close (and its deadline).
    pub(super) fn close(&mut self, now: Now, code: u16, reason: &str, then: AfterClose) {
        let Some(conn) = self.conn() else { return };
        if matches!(conn.stage, Stage::Closing { .. }) {
            return;
        }
        let id = conn.id;
        conn.stage = Stage::Closing { then };
        conn.heartbeat = None;
        conn.reply_pending = false;
        self.cancel_connection_timers();
        self.arm(Timer::CloseTimeout, now, self.config.close_timeout_ms);
        self.core.emit(Output::Close {
            conn: id,
            code,
            reason: reason.to_owned(),
        });
    }

    /// Closes with 4000 and forgets the connection at once: a dead peer never answers.
    pub(super) fn abandon(&mut self, now: Now, close_reason: &str, reason: String) {
        if let Some(id) = self.conn().map(|conn| conn.id) {
            self.core.emit(Output::Close {
                conn: id,
                code: CLOSE_RESUMABLE,
                reason: close_reason.to_owned(),
            });
        }
        self.leave_connection();
        self.schedule_reconnect(now, reason, 0);
    }

    pub(super) fn after_close(&mut self, now: Now, then: AfterClose) {
        self.leave_connection();
        match then {
            AfterClose::Reconnect { reason, min_delay } => {
                self.schedule_reconnect(now, reason, min_delay);
            }
            AfterClose::Stop { reason } => self.finish(Status::Disconnected, reason),
        }
    }

    /// Cancels every deadline of the connection: all but `Reconnect`, which belongs to the gap
    /// between connections.
    pub(super) fn cancel_connection_timers(&mut self) {
        for &timer in Timer::ALL {
            if timer != Timer::Reconnect {
                self.core.timers.cancel(timer);
            }
        }
    }

    pub(super) fn leave_connection(&mut self) {
        self.cancel_connection_timers();
        self.phase = Phase::Waiting;
    }

    pub(super) fn on_closed(&mut self, now: Now, id: ConnId, code: Option<u16>, reason: &str) {
        if !self.is_current(id) {
            self.stale(now, "a close", id);
            return;
        }
        let Some(conn) = self.conn() else { return };
        // What the peer (or the transport) said, shown as it was, made safe and short.
        let said = peer_text(reason);
        let code_text = match (code, said.is_empty()) {
            (Some(code), true) => format!("close {code}"),
            (Some(code), false) => format!("close {code} \"{said}\""),
            (None, true) => "no close code".to_owned(),
            (None, false) => format!("no close code: {said}"),
        };
        let detail = serde_json::json!({ "code": code, "reason": reason });
        match std::mem::replace(&mut conn.stage, Stage::Connecting) {
            Stage::Closing { then } => {
                self.core.log_with(
                    now,
                    Level::Debug,
                    "ws.close",
                    format!("closed ({code_text})"),
                    detail,
                );
                self.after_close(now, then);
            }
            Stage::Connecting => {
                self.connect_failed(now, &format!("closed before opening ({code_text})"))
            }
            _ => {
                let verdict = close_action(code);
                // Without a code, the transport's own words are the cause.
                let mut why = if code.is_none() && !said.is_empty() {
                    code_text.clone()
                } else {
                    format!("{code_text}: {}", verdict.cause)
                };
                // Disallowed intents: say which privileged ones were asked for.
                let privileged = intents::names(self.config.intents & intents::PRIVILEGED);
                if code == Some(4014) && !privileged.is_empty() {
                    why.push_str(&format!(
                        " (privileged intents asked for: {})",
                        privileged.join(", ")
                    ));
                }
                match verdict.action {
                    CloseAction::Fatal => {
                        self.leave_connection();
                        self.core.log_with(
                            now,
                            Level::Error,
                            "ws.close.fatal",
                            format!("connection closed ({why}): not reconnecting"),
                            detail,
                        );
                        self.finish(Status::Failed, why);
                    }
                    CloseAction::NewSession => {
                        self.core.log_with(
                            now,
                            Level::Warn,
                            "ws.close",
                            format!("connection closed ({why}): starting a new session"),
                            detail,
                        );
                        self.session.clear();
                        self.leave_connection();
                        self.schedule_reconnect(now, why, 0);
                    }
                    CloseAction::Resume => {
                        let level = if matches!(code, Some(4001 | 4002 | 4005 | 4008)) {
                            Level::Error
                        } else {
                            Level::Warn
                        };
                        self.core.log_with(
                            now,
                            level,
                            "ws.close",
                            format!("connection closed ({why})"),
                            detail,
                        );
                        self.leave_connection();
                        self.schedule_reconnect(now, why, 0);
                    }
                }
            }
        }
    }

    /// Plans the next connection after the backoff (and at least `min_delay` ms).
    pub(super) fn schedule_reconnect(&mut self, now: Now, reason: String, min_delay: u64) {
        if self.session.is_resumable() && self.session.resumes_exhausted() {
            self.core.log(
                now,
                Level::Warn,
                "session.reset",
                format!(
                    "{} RESUMEs in a row failed: starting a new session",
                    session::MAX_FAILED_RESUMES
                ),
            );
            self.session.clear();
        }
        let Some(delay) = self.backoff.next_delay(&mut self.rng) else {
            let attempts = self.backoff.attempts();
            self.fail(
                now,
                "reconnect.exhausted",
                format!("gave up after {attempts} reconnect attempts ({reason})"),
            );
            return;
        };
        let delay = delay.max(min_delay);
        self.core.set_status(Status::Reconnecting, Some(reason));
        let attempt = self.backoff.attempts();
        let resume = self.session.is_resumable();
        let next = match (&self.gateway_url, resume) {
            (None, _) => "to ask /gateway/bot again",
            (Some(_), true) => "to resume",
            (Some(_), false) => "to identify",
        };
        self.core.log_with(
            now,
            Level::Info,
            "reconnect.scheduled",
            format!("reconnecting in {delay} ms {next}"),
            serde_json::json!({ "attempt": attempt, "delayMs": delay, "resume": resume }),
        );
        self.phase = Phase::Waiting;
        self.arm(Timer::Reconnect, now, delay);
    }

    pub(super) fn on_shutdown(&mut self, now: Now, keep_session: bool) {
        let keep = keep_session && self.session.is_resumable();
        if keep_session && !keep {
            self.core.log(
                now,
                Level::Info,
                "session.keep",
                "no resumable session to keep".to_owned(),
            );
        }
        let reason = if keep {
            "shutdown, session kept for resuming"
        } else {
            "shutdown"
        };
        if !keep {
            // Closing with 1000 ends the session on Discord's side.
            self.session.clear();
        }
        let (code, close_reason) = if keep {
            (CLOSE_RESUMABLE, "shutting down, session kept")
        } else {
            (CLOSE_NORMAL, "shutting down")
        };
        let Some(conn) = self.conn() else {
            self.finish(Status::Disconnected, reason.to_owned());
            return;
        };
        match &mut conn.stage {
            Stage::Connecting => {
                let id = conn.id;
                self.core.emit(Output::Close {
                    conn: id,
                    code,
                    reason: close_reason.to_owned(),
                });
                self.finish(Status::Disconnected, reason.to_owned());
            }
            Stage::Closing { then } => {
                // The close frame is already out; finish when it completes.
                *then = AfterClose::Stop {
                    reason: reason.to_owned(),
                };
            }
            _ => self.close(
                now,
                code,
                close_reason,
                AfterClose::Stop {
                    reason: reason.to_owned(),
                },
            ),
        }
    }

    /// Stops for good after an error the shard cannot recover from.
    pub(super) fn fail(&mut self, now: Now, action: &str, why: String) {
        self.core.log(now, Level::Error, action, why.clone());
        self.finish(Status::Failed, why);
    }

    pub(super) fn finish(&mut self, status: Status, reason: String) {
        self.phase = Phase::Waiting;
        self.core.finish(status, Some(reason));
    }
}

/// Longest close reason shown: what a close frame can carry (125 bytes less the code).
const MAX_REASON_BYTES: usize = 123;

/// `reason` as a log may show it: control characters (a server could forge lines or rewrite a
/// terminal with them) become spaces, and it is cut to [`MAX_REASON_BYTES`] at a character
/// boundary.
fn peer_text(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.trim().chars() {
        if out.len() + c.len_utf8() > MAX_REASON_BYTES {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_reason_is_shown_safe_and_short() {
        assert_eq!(peer_text("  Unknown error ✓ "), "Unknown error ✓");
        assert_eq!(peer_text("a\nb\u{1b}[2J"), "a b [2J");
        let long = "é".repeat(100);
        let shown = peer_text(&long);
        assert!(shown.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(shown.ends_with('…'));
        assert_eq!(peer_text(""), "");
    }
}
