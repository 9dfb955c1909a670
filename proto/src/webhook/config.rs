//! What the ingress serves and with which secrets, and the bounds that keep a hostile client
//! from holding memory or connections.

use crate::{ConfigError, Misuse, Secret};
use serde::{Deserialize, Serialize};

/// The webhook ingress's configuration. A channel is served only when its secret is set; at
/// least one must be, or at least one path handed off.
///
/// ```
/// use openflume_proto::webhook::{CustomSender, WebhookConfig};
/// let config = WebhookConfig {
///     github_secret: Some("It's a Secret to Everybody".into()),
///     senders: vec![CustomSender { name: "deploys".into(), secret: "whsec_c2VjcmV0".into() }],
///     ..WebhookConfig::default()
/// };
/// assert_eq!(config.head_timeout_ms, 10_000);
/// assert!(!format!("{config:?}").contains("Everybody"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Served under this path (`/hooks` serves `/hooks/channels/…`); empty for the root. A
    /// trailing slash is ignored.
    pub path_prefix: String,
    /// Slack's signing secret: serves `/channels/slack/{events,interactions,commands}`.
    pub slack_signing_secret: Option<Secret>,
    /// The GitHub webhook secret: serves `/channels/github/webhook`.
    pub github_secret: Option<Secret>,
    /// Senders of signed custom webhooks, each served at `/channels/custom/{name}`.
    pub senders: Vec<CustomSender>,
    /// How far a signed timestamp may be from now, either way (Slack and Standard Webhooks).
    /// Default 300 s.
    pub timestamp_tolerance_s: u64,
    /// A request head must be complete this long after the connection opened or the previous
    /// response went out (an idle keep-alive connection is closed then). Default 10 s.
    pub head_timeout_ms: u64,
    /// A body must be complete this long after its head. Default 30 s.
    pub body_timeout_ms: u64,
    /// An accepted event not held by every consumer after this long is answered 503, so the
    /// sender retries (the event itself goes on). Default 60 s.
    pub delivery_timeout_ms: u64,
    /// Connections served at once; one more is answered 503 and closed. Default 128.
    pub max_connections: usize,
    /// Request bytes buffered across all connections; the request that would pass it is answered
    /// 503. Default 64 MiB.
    pub max_buffered_bytes: usize,
    /// Largest Slack body. Default 1 MiB.
    pub slack_body_limit: usize,
    /// Largest GitHub body. Default 25 MiB, GitHub's own cap.
    pub github_body_limit: usize,
    /// Largest custom webhook body. Default 1 MiB.
    pub custom_body_limit: usize,
    /// Paths the ingress does not answer but hands off (`Output::Handoff`), matched exactly
    /// against the request's path (the query aside, and outside `path_prefix`), whatever the
    /// method: `serve` puts its hub (`/ws`) and health endpoints on the same port this way. A
    /// handed-off request's body may be at most [`HANDOFF_BODY_LIMIT`] bytes. Default none.
    pub handoff_paths: Vec<String>,
    /// The redelivery keys ([`redelivery_key`](super::redelivery_key)) of the events an earlier
    /// run kept (from its stored cursors): a sender's redelivery of one after a restart (its 200
    /// was cut off by the crash) is answered 200 and not emitted again. Default none.
    pub resume: Vec<String>,
}

/// The largest body of a handed-off request: the routes handed off are GETs and WebSocket
/// upgrades, so anything bigger is refused (413) before it is read.
pub const HANDOFF_BODY_LIMIT: usize = 16 * 1024;

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            path_prefix: String::new(),
            slack_signing_secret: None,
            github_secret: None,
            senders: Vec::new(),
            timestamp_tolerance_s: 300,
            head_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            delivery_timeout_ms: 60_000,
            max_connections: 128,
            max_buffered_bytes: 64 << 20,
            slack_body_limit: 1 << 20,
            github_body_limit: 25 << 20,
            custom_body_limit: 1 << 20,
            handoff_paths: Vec::new(),
            resume: Vec::new(),
        }
    }
}

/// A custom sender: events from it have source `custom` and type `name`.
///
/// ```
/// use openflume_proto::webhook::CustomSender;
/// let sender = CustomSender { name: "billing".into(), secret: "s3cret".into() };
/// assert_eq!(format!("{sender:?}"), r#"CustomSender { name: "billing", secret: [redacted] }"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomSender {
    /// The path segment and event type: letters, digits, `-` and `_`.
    pub name: String,
    /// Signs `X-Signature-256` (as its bytes) and Standard Webhooks (`whsec_` base64, or bytes).
    pub secret: Secret,
}

impl WebhookConfig {
    /// The configuration as the machine uses it: prefix normalised, everything checked.
    pub(crate) fn validated(mut self) -> Result<WebhookConfig, Misuse> {
        let bad = |why: ConfigError| Err(Misuse::Config(why));
        let prefix = self.path_prefix.trim_end_matches('/').to_owned();
        if !prefix.is_empty()
            && (!prefix.starts_with('/')
                || prefix.contains(['?', '#', ' '])
                || prefix.chars().any(char::is_control))
        {
            return bad(ConfigError::PathPrefix {
                field: "path_prefix",
                prefix: self.path_prefix,
            });
        }
        self.path_prefix = prefix;
        let secrets = [
            ("slack_signing_secret", &self.slack_signing_secret),
            ("github_secret", &self.github_secret),
        ];
        if let Some((field, _)) = secrets
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(Secret::is_empty))
        {
            return bad(ConfigError::EmptyWebhookSecret { field });
        }
        if secrets.iter().all(|(_, s)| s.is_none())
            && self.senders.is_empty()
            && self.handoff_paths.is_empty()
        {
            return bad(ConfigError::NoWebhookSecret);
        }
        for path in &self.handoff_paths {
            if !path.starts_with('/')
                || path.contains(['?', '#', ' '])
                || path.chars().any(char::is_control)
            {
                return bad(ConfigError::Invalid {
                    field: "handoff_paths",
                    reason: format!(
                        "{path:?} must start with '/' and hold no '?', '#', space or control"
                    ),
                });
            }
        }
        for (i, sender) in self.senders.iter().enumerate() {
            let valid = !sender.name.is_empty()
                && sender.name.len() <= 64
                && sender
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return bad(ConfigError::SenderName {
                    field: "senders",
                    name: sender.name.clone(),
                });
            }
            if sender.secret.is_empty() {
                return bad(ConfigError::SenderSecret {
                    field: "senders",
                    name: sender.name.clone(),
                });
            }
            if self.senders[..i].iter().any(|s| s.name == sender.name) {
                return bad(ConfigError::SenderTwice {
                    field: "senders",
                    name: sender.name.clone(),
                });
            }
        }
        if self.max_connections == 0 {
            return bad(ConfigError::Minimum {
                field: "max_connections",
                min: 1,
            });
        }
        Ok(self)
    }
}
