//! The envelopes Slack sends, shaped as Slack's: `events_api` messages, slash commands and
//! interactions from a fixed set of channels and users.

use super::{EnvelopeKind, Slack};
use crate::fake;
use fastrand::Rng;
use jiff::Timestamp;
use serde_json::json;
use std::sync::Arc;

/// An envelope, ready to be written.
#[derive(Clone, Debug)]
pub(super) struct Envelope {
    pub(super) envelope_id: String,
    pub(super) kind: EnvelopeKind,
    pub(super) event_id: Option<String>,
    pub(super) payload: Arc<str>,
    pub(super) retry_attempt: u32,
    pub(super) retry_reason: &'static str,
    pub(super) accepts_response_payload: bool,
    pub(super) duplicate: bool,
}

impl Envelope {
    /// A first delivery of `payload`.
    pub(super) fn first(
        rng: &mut Rng,
        kind: EnvelopeKind,
        event_id: Option<String>,
        payload: &serde_json::Value,
        accepts_response_payload: bool,
    ) -> Envelope {
        Envelope {
            envelope_id: fake::uuid(rng),
            kind,
            event_id,
            payload: payload.to_string().into(),
            retry_attempt: 0,
            retry_reason: "",
            accepts_response_payload,
            duplicate: false,
        }
    }

    pub(super) fn to_json(&self) -> String {
        let Envelope {
            envelope_id,
            kind,
            payload,
            accepts_response_payload,
            ..
        } = self;
        let kind = kind.as_str();
        let retry = match self.kind {
            EnvelopeKind::EventsApi => format!(
                r#","retry_attempt":{},"retry_reason":"{}""#,
                self.retry_attempt, self.retry_reason
            ),
            _ => String::new(),
        };
        format!(
            r#"{{"envelope_id":"{envelope_id}","payload":{payload},"type":"{kind}","accepts_response_payload":{accepts_response_payload}{retry}}}"#
        )
    }
}

const CHANNELS: &[(&str, &str)] = &[("C0SIMGEN01", "general"), ("C0SIMDEP01", "deploys")];
const USERS: &[(&str, &str)] = &[
    ("U0SIMADA01", "ada"),
    ("U0SIMGRC01", "grace"),
    ("U0SIMLIN01", "linus"),
];

/// One of `USERS`, `(id, name)`.
fn random_user(rng: &mut Rng) -> (&'static str, &'static str) {
    USERS
        .get(rng.usize(..USERS.len()))
        .copied()
        .unwrap_or(USERS[0])
}

impl Slack {
    /// An `events_api` envelope carrying a `message` event: a top-level message in a random
    /// channel, or with `reply_to` `(channel, thread_ts)` a reply in that thread.
    pub(super) fn events_api(&self, rng: &mut Rng, reply_to: Option<(&str, &str)>) -> Envelope {
        let now = Timestamp::now();
        let ts = fake::slack_ts(now);
        let channel = match reply_to {
            Some((channel, _)) => channel,
            None => {
                CHANNELS
                    .get(rng.usize(..CHANNELS.len()))
                    .copied()
                    .unwrap_or(CHANNELS[0])
                    .0
            }
        };
        let (user, _) = random_user(rng);
        let text = fake::text(rng);
        let event_id = format!("Ev{}", fake::upper_alnum(rng, 9));
        let team = &self.config.team_id;
        let mut payload = json!({
            "token": "simulatedverificationtoken",
            "team_id": team,
            "context_team_id": team,
            "context_enterprise_id": null,
            "api_app_id": self.config.app_id,
            "event": {
                "user": user, "type": "message", "ts": ts, "client_msg_id": fake::uuid(rng),
                "text": text, "team": team,
                "blocks": [{"type": "rich_text", "block_id": fake::upper_alnum(rng, 5), "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                ]}],
                "channel": channel, "event_ts": ts, "channel_type": "channel"
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now.as_second(),
            "authorizations": [{
                "enterprise_id": null, "team_id": team, "user_id": self.config.bot_user_id,
                "is_bot": true, "is_enterprise_install": false
            }],
            "is_ext_shared_channel": false,
            "event_context": format!("4-{}", fake::hex(rng, 40))
        });
        if let Some((_, thread_ts)) = reply_to {
            payload["event"]["thread_ts"] = thread_ts.into();
        }
        Envelope::first(
            rng,
            EnvelopeKind::EventsApi,
            Some(event_id),
            &payload,
            false,
        )
    }

    pub(super) fn slash_command(&self, rng: &mut Rng) -> Envelope {
        let (channel, channel_name) = CHANNELS.get(1).copied().unwrap_or(CHANNELS[0]);
        let (user, user_name) = random_user(rng);
        let team = &self.config.team_id;
        let payload = json!({
            "token": "simulatedverificationtoken",
            "team_id": team,
            "team_domain": "openflume-sim",
            "channel_id": channel,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name,
            "command": "/deploy",
            "text": "staging",
            "api_app_id": self.config.app_id,
            "is_enterprise_install": "false",
            "response_url": format!("https://hooks.slack.com/commands/{team}/{}/{}", rng.u64(1_000_000_000..10_000_000_000), fake::upper_alnum(rng, 24)),
            "trigger_id": format!("{}.{}.{}", rng.u64(1_000_000_000..10_000_000_000), rng.u64(1_000_000_000..10_000_000_000), fake::hex(rng, 32))
        });
        Envelope::first(rng, EnvelopeKind::SlashCommands, None, &payload, true)
    }

    pub(super) fn interactive(&self, rng: &mut Rng) -> Envelope {
        let (channel, channel_name) = CHANNELS.get(1).copied().unwrap_or(CHANNELS[0]);
        let (user, user_name) = random_user(rng);
        let team = &self.config.team_id;
        let ts = fake::slack_ts(Timestamp::now());
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": team},
            "api_app_id": self.config.app_id,
            "token": "simulatedverificationtoken",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": format!("{}.{}.{}", rng.u64(1_000_000_000..10_000_000_000), rng.u64(1_000_000_000..10_000_000_000), fake::hex(rng, 32)),
            "team": {"id": team, "domain": "openflume-sim"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": channel, "name": channel_name},
            "message": {"type": "message", "user": self.config.bot_user_id, "ts": ts, "bot_id": self.config.bot_id,
                        "text": "Deploy api-gateway 2.14.1 to production?", "team": team},
            "state": {"values": {}},
            "response_url": format!("https://hooks.slack.com/actions/{team}/{}/{}", rng.u64(1_000_000_000..10_000_000_000), fake::upper_alnum(rng, 24)),
            "actions": [{"action_id": "approve", "block_id": fake::upper_alnum(rng, 4),
                         "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                         "value": "approve", "style": "primary", "type": "button", "action_ts": ts}]
        });
        Envelope::first(rng, EnvelopeKind::Interactive, None, &payload, false)
    }
}
