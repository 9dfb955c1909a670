//! What an injected [`DiscordAction`] does to a connection: op 1/7/9, closes, drops, silence
//! about heartbeats, garbage and oversized payloads.

use super::gateway::{Flow, Gateway};
use super::payloads::control;
use super::{Command, Control, DiscordAction};
use crate::host::close_reason;
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
            DiscordAction::Close { code, reason } => {
                self.close_flow(code, close_reason(&reason)).await
            }
            DiscordAction::GarbageText => {
                let sent = self
                    .sender
                    .send(Message::text("this is not json {\"op\":"))
                    .await;
                self.record_control(Control::GarbageText);
                if sent.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            DiscordAction::GarbageBinary => {
                let junk: Vec<u8> = {
                    let mut state = self.sim.lock();
                    (0..64).map(|_| state.rng.u8(..)).collect()
                };
                let sent = self.sender.send(Message::binary(junk)).await;
                self.record_control(Control::GarbageBinary);
                if sent.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            DiscordAction::Oversized { bytes } => {
                let filler = bytes.saturating_sub(control(11, "\"\"").len());
                let payload = control(11, &format!("\"{}\"", "x".repeat(filler)));
                self.send_control(payload, Control::Oversized(bytes)).await
            }
            DiscordAction::Messages(_)
            | DiscordAction::Http { .. }
            | DiscordAction::RefuseResume { .. } => Flow::Continue,
        }
    }
}
