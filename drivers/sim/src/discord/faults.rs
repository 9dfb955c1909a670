//! What an injected [`DiscordAction`] does to a connection: op 1/7/9, closes, drops, silence
//! about heartbeats, garbage and oversized payloads.

use super::gateway::{Flow, Gateway};
use super::payloads::control;
use super::{Command, Control, DiscordAction};
use crate::host::close_reason;
use crate::scenario::{SocketFault, garbage_bytes};
use async_tungstenite::tungstenite::Message;

impl Gateway<'_> {
    pub(super) async fn on_command(&mut self, command: Command) -> Flow {
        let action = match command {
            Command::Wake => return Flow::Continue,
            Command::Superseded => {
                // The session moved to another connection; this one is a zombie to Discord.
                self.session = None;
                self.record_control(Control::Dropped);
                return Flow::End;
            }
            Command::Act(action) => action,
        };
        match action {
            DiscordAction::DropConnection => {
                self.record_control(Control::Dropped);
                Flow::End
            }
            DiscordAction::StopHeartbeatAcks => {
                self.acks = false;
                Flow::Continue
            }
            DiscordAction::RequestHeartbeat => {
                self.send_control(control(1, "null"), Control::HeartbeatRequest)
                    .await
            }
            DiscordAction::Reconnect => {
                self.detach();
                self.send_control(control(7, "null"), Control::Reconnect)
                    .await
            }
            DiscordAction::InvalidSession { resumable } => {
                if resumable {
                    self.detach();
                } else {
                    self.end_session();
                }
                let data = if resumable { "true" } else { "false" };
                self.send_control(control(9, data), Control::InvalidSession(resumable))
                    .await
            }
            DiscordAction::Fault(fault) => self.fault(fault).await,
            DiscordAction::Messages(_)
            | DiscordAction::Http { .. }
            | DiscordAction::RefuseResume { .. } => Flow::Continue,
        }
    }

    /// Sends the fault's close or frame; the frames are Discord-shaped where they can be.
    async fn fault(&mut self, fault: SocketFault) -> Flow {
        let (sent, what) = match fault {
            SocketFault::Close { code, reason } => {
                return self.close_flow(code, close_reason(&reason)).await;
            }
            SocketFault::Oversized { bytes } => {
                let filler = bytes.saturating_sub(control(11, "\"\"").len());
                let payload = control(11, &format!("\"{}\"", "x".repeat(filler)));
                return self.send_control(payload, Control::Oversized(bytes)).await;
            }
            SocketFault::GarbageText => {
                let text = Message::text("this is not json {\"op\":");
                (self.sender.send(text).await, Control::GarbageText)
            }
            SocketFault::GarbageBinary => {
                let junk = garbage_bytes(&mut self.sim.lock().rng);
                let sent = self.sender.send(Message::binary(junk)).await;
                (sent, Control::GarbageBinary)
            }
        };
        self.record_control(what);
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::End
        }
    }
}
