//! What a Slack source needs to know: tokens, where the Web API lives, and the timing knobs that
//! Slack leaves undocumented (ping interval, hello timeout), kept configurable.

use crate::url::Url;
use crate::{ConfigError, ReconnectPolicy, Secret};
use serde::{Deserialize, Serialize};

/// The Web API base used when none is configured.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api";

/// Slack accepts at most this many concurrent Socket Mode connections per app.
pub const MAX_CONNECTIONS: u8 = 10;

/// Configuration of a [`SlackMachine`](super::SlackMachine).
///
/// Every field but `app_token` has a default, so a fixture header or a config file can name only
/// what it changes. `Debug` hides both tokens.
///
/// ```
/// use openflume_proto::slack::SlackConfig;
/// let config: SlackConfig = serde_json::from_str(r#"{"app_token": "xapp-1-secret"}"#).unwrap();
/// assert_eq!(config.connections, 1);
/// assert_eq!(config.ping_interval_ms, 10_000);
/// assert_eq!(config.api_base, "https://slack.com/api");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SlackConfig {
    /// App-level token (`xapp-…`, scope `connections:write`), sent as `Authorization: Bearer` to
    /// `apps.connections.open`.
    pub app_token: Secret,
    /// Bot token (`xoxb-…`). When set, `auth.test` runs once at start: an invalid token fails the
    /// source, a valid one adds `team_id` and `bot_user_id` to every event's meta.
    pub bot_token: Option<Secret>,
    /// Web API base URL, without the method name. Default [`DEFAULT_API_BASE`].
    pub api_base: String,
    /// How many Socket Mode connections to keep open at once, 1 to [`MAX_CONNECTIONS`]. Slack sends
    /// each envelope on one of them; deduplication makes the merged stream exact. Default 1.
    pub connections: u8,
    /// Send a WebSocket ping on every connection this often; a connection with no inbound frame
    /// or pong for three intervals is dead. At least 1000. Default 10 000.
    pub ping_interval_ms: u64,
    /// A connection that has not said `hello` this long after the machine asked to open it is
    /// dropped. At least 1000. Default 15 000.
    pub hello_timeout_ms: u64,
    /// Delays between failed attempts (URL requests, connects, connections without hello).
    pub reconnect: ReconnectPolicy,
    /// The event ids an earlier run handed on (its stored [`SlackCursor`](crate::SlackCursor)):
    /// Slack's redeliveries of them are acknowledged without being emitted again. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<crate::SlackCursor>,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            app_token: Secret::default(),
            bot_token: None,
            api_base: DEFAULT_API_BASE.to_owned(),
            connections: 1,
            ping_interval_ms: 10_000,
            hello_timeout_ms: 15_000,
            reconnect: ReconnectPolicy::default(),
            resume: None,
        }
    }
}

impl SlackConfig {
    /// A default configuration with this app-level token.
    ///
    /// ```
    /// use openflume_proto::slack::SlackConfig;
    /// let config = SlackConfig::new("xapp-1-A1-1-abc").with_bot_token("xoxb-1-abc");
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn new(app_token: impl Into<String>) -> SlackConfig {
        SlackConfig {
            app_token: Secret::new(app_token),
            ..SlackConfig::default()
        }
    }

    /// Sets the bot token used for `auth.test`.
    pub fn with_bot_token(mut self, bot_token: impl Into<String>) -> SlackConfig {
        self.bot_token = Some(Secret::new(bot_token));
        self
    }

    /// Checks that the configuration can work; the message says what to fix and never quotes a token.
    ///
    /// ```
    /// use openflume_proto::slack::SlackConfig;
    /// use openflume_proto::ConfigError;
    /// let err = SlackConfig::new("xoxb-1-abc").validate().unwrap_err();
    /// assert_eq!(err, ConfigError::NotAppToken { field: "app_token" });
    /// assert!(err.to_string().contains("app-level token"));
    /// assert!(!err.to_string().contains("abc"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_token("app_token", self.app_token.expose())?;
        if self.app_token.expose().starts_with("xox") {
            return Err(ConfigError::NotAppToken { field: "app_token" });
        }
        if let Some(bot_token) = &self.bot_token {
            check_token("bot_token", bot_token.expose())?;
        }
        match Url::parse(&self.api_base) {
            Ok(url) if matches!(url.scheme.as_str(), "http" | "https") => {}
            Ok(_) => {
                return Err(ConfigError::NotHttp {
                    field: "api_base",
                    schemes: "http(s)",
                });
            }
            Err(e) => {
                return Err(ConfigError::Url {
                    field: "api_base",
                    reason: e.to_string(),
                });
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(ConfigError::Between {
                field: "connections",
                value: self.connections.into(),
                min: 1,
                max: MAX_CONNECTIONS.into(),
                why: "Slack's limit per app",
            });
        }
        if self.ping_interval_ms < 1000 {
            return Err(ConfigError::AtLeast {
                field: "ping_interval_ms",
                value: self.ping_interval_ms,
                min: 1000,
            });
        }
        if self.hello_timeout_ms < 1000 {
            return Err(ConfigError::AtLeast {
                field: "hello_timeout_ms",
                value: self.hello_timeout_ms,
                min: 1000,
            });
        }
        Ok(())
    }

    /// `api_base` joined with a Web API method name.
    pub(crate) fn method_url(&self, method: &str) -> String {
        format!("{}/{method}", self.api_base.trim_end_matches('/'))
    }
}

fn check_token(field: &'static str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::Empty { field });
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Whitespace { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let ok = SlackConfig::new("xapp-1-A1-1-tok");
        let cases: Vec<(SlackConfig, Option<&str>)> = vec![
            (ok.clone(), None),
            (ok.clone().with_bot_token("xoxb-1"), None),
            (SlackConfig::new(""), Some("app_token is empty")),
            (SlackConfig::new("xapp 1"), Some("whitespace")),
            (SlackConfig::new("xoxb-1-tok"), Some("app-level token")),
            (ok.clone().with_bot_token(""), Some("bot_token is empty")),
            (
                SlackConfig {
                    api_base: "ftp://x".into(),
                    ..ok.clone()
                },
                Some("api_base"),
            ),
            (
                SlackConfig {
                    api_base: "wss://slack.com/api".into(),
                    ..ok.clone()
                },
                Some("http(s)"),
            ),
            (
                SlackConfig {
                    connections: 0,
                    ..ok.clone()
                },
                Some("between 1 and 10"),
            ),
            (
                SlackConfig {
                    connections: 11,
                    ..ok.clone()
                },
                Some("between 1 and 10"),
            ),
            (
                SlackConfig {
                    connections: 10,
                    ..ok.clone()
                },
                None,
            ),
            (
                SlackConfig {
                    ping_interval_ms: 999,
                    ..ok.clone()
                },
                Some("ping_interval_ms"),
            ),
            (
                SlackConfig {
                    hello_timeout_ms: 0,
                    ..ok.clone()
                },
                Some("hello_timeout_ms"),
            ),
        ];
        for (config, expected) in cases {
            match (config.validate(), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => {
                    assert!(e.to_string().contains(part), "{e:?} lacks {part:?}")
                }
                (got, want) => panic!("{config:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn debug_hides_tokens_and_method_url_joins() {
        let config = SlackConfig {
            api_base: "http://127.0.0.1:9/api/".into(),
            ..SlackConfig::new("xapp-SECRET").with_bot_token("xoxb-SECRET")
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert_eq!(
            config.method_url("auth.test"),
            "http://127.0.0.1:9/api/auth.test"
        );
    }
}
