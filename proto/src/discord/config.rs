//! What a Discord shard needs to know: credentials, intents, shard, where to connect, timeouts.

use super::heartbeat::Liveness;
use super::identify::IdentifyQueue;
use super::ratelimit::MAX_PAYLOAD_BYTES;
use super::session::ResumeState;
use super::wire;
use crate::url::Url;
use crate::{ConfigError, Misuse, ReconnectPolicy, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Gateway intent bits (Discord's "Gateway Intents" list), for [`DiscordConfig::intents`].
///
/// ```
/// use openflume_proto::discord::intents;
/// assert_eq!(intents::DEFAULT, intents::GUILDS | intents::GUILD_MESSAGES | intents::DIRECT_MESSAGES | intents::MESSAGE_CONTENT);
/// assert_eq!(intents::DEFAULT, 37377);
/// ```
pub mod intents {
    /// Guild create/update/delete, roles, channels, threads.
    pub const GUILDS: u64 = 1 << 0;
    /// Member add/update/remove (privileged).
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    /// Bans and audit log entries.
    pub const GUILD_MODERATION: u64 = 1 << 2;
    /// Emojis, stickers, soundboard sounds.
    pub const GUILD_EXPRESSIONS: u64 = 1 << 3;
    /// Integrations.
    pub const GUILD_INTEGRATIONS: u64 = 1 << 4;
    /// Webhooks.
    pub const GUILD_WEBHOOKS: u64 = 1 << 5;
    /// Invites.
    pub const GUILD_INVITES: u64 = 1 << 6;
    /// Voice states.
    pub const GUILD_VOICE_STATES: u64 = 1 << 7;
    /// Presences (privileged).
    pub const GUILD_PRESENCES: u64 = 1 << 8;
    /// Messages in guilds.
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    /// Reactions in guilds.
    pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    /// Typing in guilds.
    pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
    /// Direct messages.
    pub const DIRECT_MESSAGES: u64 = 1 << 12;
    /// Reactions in direct messages.
    pub const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
    /// Typing in direct messages.
    pub const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
    /// Message content in events (privileged; no events of its own).
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
    /// Scheduled events.
    pub const GUILD_SCHEDULED_EVENTS: u64 = 1 << 16;
    /// Auto-moderation rules.
    pub const AUTO_MODERATION_CONFIGURATION: u64 = 1 << 20;
    /// Auto-moderation actions.
    pub const AUTO_MODERATION_EXECUTION: u64 = 1 << 21;
    /// Poll votes in guilds.
    pub const GUILD_MESSAGE_POLLS: u64 = 1 << 24;
    /// Poll votes in direct messages.
    pub const DIRECT_MESSAGE_POLLS: u64 = 1 << 25;
    /// The default: guilds, guild and direct messages, and their content.
    pub const DEFAULT: u64 = GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT;
    /// The intents a bot must enable in the Developer Portal before asking for them (else 4014).
    pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

    /// Every intent by its name in Discord's table, in bit order: what a command line or a
    /// configuration file can name.
    ///
    /// ```
    /// use openflume_proto::discord::intents;
    /// assert_eq!(intents::NAMED.iter().find(|(name, _)| *name == "MESSAGE_CONTENT").map(|(_, bit)| *bit), Some(intents::MESSAGE_CONTENT));
    /// ```
    pub const NAMED: &[(&str, u64)] = &[
        ("GUILDS", GUILDS),
        ("GUILD_MEMBERS", GUILD_MEMBERS),
        ("GUILD_MODERATION", GUILD_MODERATION),
        ("GUILD_EXPRESSIONS", GUILD_EXPRESSIONS),
        ("GUILD_INTEGRATIONS", GUILD_INTEGRATIONS),
        ("GUILD_WEBHOOKS", GUILD_WEBHOOKS),
        ("GUILD_INVITES", GUILD_INVITES),
        ("GUILD_VOICE_STATES", GUILD_VOICE_STATES),
        ("GUILD_PRESENCES", GUILD_PRESENCES),
        ("GUILD_MESSAGES", GUILD_MESSAGES),
        ("GUILD_MESSAGE_REACTIONS", GUILD_MESSAGE_REACTIONS),
        ("GUILD_MESSAGE_TYPING", GUILD_MESSAGE_TYPING),
        ("DIRECT_MESSAGES", DIRECT_MESSAGES),
        ("DIRECT_MESSAGE_REACTIONS", DIRECT_MESSAGE_REACTIONS),
        ("DIRECT_MESSAGE_TYPING", DIRECT_MESSAGE_TYPING),
        ("MESSAGE_CONTENT", MESSAGE_CONTENT),
        ("GUILD_SCHEDULED_EVENTS", GUILD_SCHEDULED_EVENTS),
        (
            "AUTO_MODERATION_CONFIGURATION",
            AUTO_MODERATION_CONFIGURATION,
        ),
        ("AUTO_MODERATION_EXECUTION", AUTO_MODERATION_EXECUTION),
        ("GUILD_MESSAGE_POLLS", GUILD_MESSAGE_POLLS),
        ("DIRECT_MESSAGE_POLLS", DIRECT_MESSAGE_POLLS),
    ];

    /// The names of the intents set in `bits`, in bit order (unnamed bits are left out).
    ///
    /// ```
    /// use openflume_proto::discord::intents;
    /// assert_eq!(intents::names(intents::DEFAULT & intents::PRIVILEGED), ["MESSAGE_CONTENT"]);
    /// ```
    pub fn names(bits: u64) -> Vec<&'static str> {
        NAMED
            .iter()
            .filter(|(_, bit)| bits & bit != 0)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// Discord's transport compressions: the whole connection is one compressed stream, with one
/// decompression context per connection.
///
/// ```
/// use openflume_proto::discord::TransportCompression;
/// let zstd: TransportCompression = serde_json::from_str(r#""zstd-stream""#).unwrap();
/// assert_eq!(zstd, TransportCompression::ZstdStream);
/// assert_eq!(zstd.as_str(), "zstd-stream");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TransportCompression {
    /// `compress=zlib-stream`: a payload may span several binary messages and ends with
    /// `00 00 ff ff`.
    #[default]
    ZlibStream,
    /// `compress=zstd-stream`: every binary message is one payload (the zstd frame stays open
    /// across them). Smaller and cheaper to decompress than zlib at the same level.
    ZstdStream,
}

impl TransportCompression {
    /// The value of the `compress` query parameter.
    ///
    /// ```
    /// use openflume_proto::discord::TransportCompression;
    /// assert_eq!(TransportCompression::ZlibStream.as_str(), "zlib-stream");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TransportCompression::ZlibStream => "zlib-stream",
            TransportCompression::ZstdStream => "zstd-stream",
        }
    }
}

/// Configuration of one Discord shard. Every field has a default except `token`.
///
/// ```
/// use openflume_proto::discord::DiscordConfig;
/// let config: DiscordConfig = serde_json::from_str(r#"{"token":"MTIz.secret"}"#).unwrap();
/// assert_eq!(config.api_base, "https://discord.com/api/v10");
/// assert_eq!((config.shard_id, config.shard_count), (0, 1));
/// assert!(config.compress);
/// assert_eq!(config.os, std::env::consts::OS);
/// assert!(!format!("{config:?}").contains("MTIz.secret"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// Bot token, with or without a `Bot ` prefix. Required.
    pub token: Secret,
    /// Gateway intents; default [`intents::DEFAULT`].
    pub intents: u64,
    /// This shard's id; default 0.
    pub shard_id: u32,
    /// Number of shards; default 1.
    pub shard_count: u32,
    /// REST API base for `GET /gateway/bot`; default `https://discord.com/api/v10`.
    pub api_base: String,
    /// Gateway URL to use instead of asking `/gateway/bot` (a proxy, a test server); default none.
    pub gateway_url: Option<String>,
    /// IDENTIFY buckets when `gateway_url` is set (otherwise `/gateway/bot` says); default 1.
    pub max_concurrency: u32,
    /// Transport compression, of the kind `compression` names; default true.
    pub compress: bool,
    /// Which transport compression `compress` turns on; default `zlib-stream`.
    pub compression: TransportCompression,
    /// Who paces IDENTIFYs: this machine's own limiter, or an external queue the driver asks
    /// (see [`IdentifyQueue`]); default the machine's own.
    pub identify_queue: IdentifyQueue,
    /// `properties.os` in IDENTIFY; default the operating system compiled for.
    pub os: String,
    /// IDENTIFY `presence` object, sent as given; default none.
    pub presence: Option<serde_json::Value>,
    /// IDENTIFY `large_threshold` (50–250); default none (Discord's 50).
    pub large_threshold: Option<u8>,
    /// Dispatch types to emit; default none = all. READY and RESUMED are still handled, and
    /// emitted only when listed.
    pub events: Option<BTreeSet<String>>,
    /// What proves the connection alive at heartbeat time; default the ACK alone.
    pub liveness: Liveness,
    /// Reconnect backoff; default 1 s doubling to 30 s, forever.
    pub reconnect: ReconnectPolicy,
    /// A session kept from a previous run, resumed on start; default none.
    pub resume: Option<ResumeState>,
    /// Cap on one inflated (or still compressed) payload, in bytes; default 64 MiB.
    pub max_message_bytes: usize,
    /// From connecting until HELLO, in ms (bounds the WebSocket handshake too); default 20 s.
    pub hello_timeout_ms: u64,
    /// From IDENTIFY or RESUME until READY or RESUMED, in ms; default 15 s. Discord answers in
    /// well under a second (READY lists guilds as unavailable and sends them later), and the
    /// default must run out before a caller's start timeout (30 s) so a start failure names it.
    pub ready_timeout_ms: u64,
    /// From sending a close frame until the server's, in ms; default 5 s.
    pub close_timeout_ms: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            token: Secret::default(),
            intents: intents::DEFAULT,
            shard_id: 0,
            shard_count: 1,
            api_base: "https://discord.com/api/v10".to_owned(),
            gateway_url: None,
            max_concurrency: 1,
            compress: true,
            compression: TransportCompression::default(),
            identify_queue: IdentifyQueue::default(),
            os: std::env::consts::OS.to_owned(),
            presence: None,
            large_threshold: None,
            events: None,
            liveness: Liveness::default(),
            reconnect: ReconnectPolicy::default(),
            resume: None,
            max_message_bytes: 64 << 20,
            hello_timeout_ms: 20_000,
            ready_timeout_ms: 15_000,
            close_timeout_ms: 5_000,
        }
    }
}

impl DiscordConfig {
    /// A configuration with `token` and every default.
    pub fn new(token: impl Into<String>) -> DiscordConfig {
        DiscordConfig {
            token: Secret::new(token),
            ..DiscordConfig::default()
        }
    }

    /// The transport compression in use, if any.
    pub(crate) fn transport(&self) -> Option<TransportCompression> {
        self.compress.then_some(self.compression)
    }

    /// The token without a `Bot ` prefix, as IDENTIFY and RESUME carry it.
    pub(crate) fn bare_token(&self) -> &str {
        let token = self.token.expose();
        token.strip_prefix("Bot ").unwrap_or(token)
    }

    /// The IDENTIFY payload of this configuration.
    pub(crate) fn identify_frame(&self) -> String {
        wire::identify(&wire::IdentifyFields {
            token: self.bare_token(),
            intents: self.intents,
            os: &self.os,
            shard: [self.shard_id, self.shard_count],
            presence: self.presence.as_ref(),
            large_threshold: self.large_threshold,
        })
    }

    /// Checks everything that cannot work, without naming the token.
    pub(crate) fn validate(&self) -> Result<(), Misuse> {
        let bad = |why: ConfigError| Err(Misuse::Config(why.in_scope("discord")));
        let token = self.bare_token();
        if token.is_empty() {
            return bad(ConfigError::Required { field: "token" });
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(ConfigError::Whitespace { field: "token" });
        }
        if self.shard_count == 0 || self.shard_id >= self.shard_count {
            return bad(ConfigError::ShardId {
                field: "shard_id",
                shard_id: self.shard_id,
                shard_count: self.shard_count,
            });
        }
        if let Some(threshold) = self.large_threshold
            && !(50..=250).contains(&threshold)
        {
            return bad(ConfigError::NotWithin {
                field: "large_threshold",
                value: threshold.into(),
                min: 50,
                max: 250,
            });
        }
        if self
            .presence
            .as_ref()
            .is_some_and(|presence| !presence.is_object())
        {
            return bad(ConfigError::NotObject { field: "presence" });
        }
        match &self.gateway_url {
            Some(url) => {
                if let Err(why) = wire::connect_url(url, self.transport()) {
                    return bad(ConfigError::Url {
                        field: "gateway_url",
                        reason: why,
                    });
                }
            }
            None => match Url::parse(&self.api_base) {
                Ok(url) if matches!(url.scheme.as_str(), "http" | "https") => {}
                Ok(_) => {
                    return bad(ConfigError::NotHttp {
                        field: "api_base",
                        schemes: "http or https",
                    });
                }
                Err(why) => {
                    return bad(ConfigError::Url {
                        field: "api_base",
                        reason: why.to_string(),
                    });
                }
            },
        }
        if self.max_message_bytes < MAX_PAYLOAD_BYTES {
            return bad(ConfigError::Minimum {
                field: "max_message_bytes",
                min: MAX_PAYLOAD_BYTES as u64,
            });
        }
        let timeouts = [
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("ready_timeout_ms", self.ready_timeout_ms),
            ("close_timeout_ms", self.close_timeout_ms),
        ];
        if let Some((field, _)) = timeouts.iter().find(|(_, ms)| *ms == 0) {
            return bad(ConfigError::ZeroTimeout { field });
        }
        let identify = self.identify_frame().len();
        if identify > MAX_PAYLOAD_BYTES {
            return bad(ConfigError::IdentifyTooLarge {
                field: "presence",
                bytes: identify,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = DiscordConfig::new("Bot abc.def");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.bare_token(), "abc.def");
        let cases: Vec<(DiscordConfig, &str)> = vec![
            (DiscordConfig::new(""), "token is required"),
            (DiscordConfig::new("Bot "), "token is required"),
            (DiscordConfig::new("a b"), "whitespace"),
            (
                DiscordConfig {
                    shard_id: 2,
                    shard_count: 2,
                    ..ok.clone()
                },
                "shard_id 2",
            ),
            (
                DiscordConfig {
                    shard_count: 0,
                    ..ok.clone()
                },
                "shard_count 0",
            ),
            (
                DiscordConfig {
                    large_threshold: Some(10),
                    ..ok.clone()
                },
                "large_threshold",
            ),
            (
                DiscordConfig {
                    presence: Some(serde_json::json!("idle")),
                    ..ok.clone()
                },
                "presence",
            ),
            (
                DiscordConfig {
                    presence: Some(serde_json::json!({"activities": [{"name": "x".repeat(5000)}]})),
                    ..ok.clone()
                },
                "4096",
            ),
            (
                DiscordConfig {
                    gateway_url: Some("https://gateway.discord.gg".into()),
                    ..ok.clone()
                },
                "gateway_url",
            ),
            (
                DiscordConfig {
                    api_base: "discord.com".into(),
                    ..ok.clone()
                },
                "api_base",
            ),
            (
                DiscordConfig {
                    max_message_bytes: 10,
                    ..ok.clone()
                },
                "max_message_bytes",
            ),
            (
                DiscordConfig {
                    ready_timeout_ms: 0,
                    ..ok.clone()
                },
                "timeouts",
            ),
        ];
        for (config, needle) in cases {
            match config.validate() {
                Err(Misuse::Config(why)) => {
                    let why = why.to_string();
                    assert!(why.contains(needle), "{why} / {needle}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let config = DiscordConfig::new("Bot very.secret.token");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very.secret.token"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }
}
