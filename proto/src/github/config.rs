//! What a GitHub poller needs to know, with defaults that are polite to the API.

use crate::url::Url;
use crate::{ConfigError, Misuse, ReconnectPolicy, Secret};
use serde::{Deserialize, Serialize};

/// The API base used when none is configured.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The shortest configurable interval between polls: fast enough for tests and self-hosted
/// servers, slow enough that a typo cannot turn the poller into a flood.
pub const MIN_INTERVAL_MS: u64 = 1_000;

/// GitHub caps `per_page` at 50 on the notifications endpoint.
pub const MAX_PER_PAGE: u32 = 50;

/// The most pages one cycle may ever be allowed to read.
pub const MAX_PAGE_CAP: u32 = 100;

/// What to do with the notifications that already exist when polling starts.
///
/// ```
/// use openflume_proto::github::Bootstrap;
/// assert_eq!(serde_json::to_string(&Bootstrap::Emit).unwrap(), r#""emit""#);
/// assert_eq!(Bootstrap::default(), Bootstrap::Skip);
/// ```
///
/// `#[non_exhaustive]`: a match outside this crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume_proto::github::Bootstrap;
/// fn emits(b: Bootstrap) -> bool { match b { Bootstrap::Skip => false, Bootstrap::Emit => true } }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Bootstrap {
    /// Record them as seen without emitting them: only what happens from now on is news.
    #[default]
    Skip,
    /// Emit them like any new notification.
    Emit,
}

/// Configuration of the GitHub notifications poller.
///
/// Every field has a default, so a fixture or a config file only names what it changes; only
/// `token` has no usable default. `Debug` never shows the token.
///
/// ```
/// use openflume_proto::github::GithubConfig;
/// let config: GithubConfig = serde_json::from_str(r#"{"token": "ghp_secret", "interval_ms": 5000}"#).unwrap();
/// assert_eq!(config.api_url, "https://api.github.com");
/// assert_eq!(config.per_page, 50);
/// assert!(!format!("{config:?}").contains("ghp_secret"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default = "GithubConfig::unset", deny_unknown_fields)]
pub struct GithubConfig {
    /// A classic personal access token with the `notifications` (or `repo`) scope; sent as
    /// `Authorization: Bearer <token>`, and only to the API's origin.
    pub token: Secret,
    /// The API base, `https://api.github.com` by default (`https://host/api/v3` for GitHub
    /// Enterprise Server). No query or fragment.
    pub api_url: String,
    /// The least time between two polls, in ms; 60 000 by default, at least 1 000. The server's
    /// `X-Poll-Interval` can only make it longer.
    pub interval_ms: u64,
    /// Also list threads already marked read (`all=true`).
    pub all: bool,
    /// Only list threads the user participates in or is mentioned in (`participating=true`).
    pub participating: bool,
    /// Threads per page, 1 to 50; 50 by default, the endpoint's maximum.
    pub per_page: u32,
    /// The most pages one poll cycle reads, 1 to 100; 10 by default. Older threads past the cap
    /// are not read in that cycle.
    pub page_cap: u32,
    /// What the first successful cycle does with existing notifications.
    pub bootstrap: Bootstrap,
    /// Backoff after server errors, transport errors and unusable responses.
    pub reconnect: ReconnectPolicy,
    /// The `User-Agent` header GitHub requires; `openflume/<version>` by default.
    pub user_agent: String,
    /// How long one request may take before it counts as a network error, in ms; 30 000 by
    /// default, at least 1 000. A late response is then ignored as stale.
    pub request_timeout_ms: u64,
    /// Where an earlier run stopped (its stored [`GithubCursor`](crate::GithubCursor)): polling
    /// starts with its validators and seen notifications, and is no first start, so
    /// [`bootstrap`](Self::bootstrap) does not apply. What changed while the process was down is
    /// emitted. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<crate::GithubCursor>,
}

impl GithubConfig {
    /// The defaults with `token`, like `DiscordConfig::new` and `SlackConfig::new`.
    ///
    /// ```
    /// use openflume_proto::github::{Bootstrap, GithubConfig};
    /// let config = GithubConfig { interval_ms: 5_000, ..GithubConfig::new("ghp_example") };
    /// assert_eq!((config.per_page, config.bootstrap), (50, Bootstrap::Skip));
    /// ```
    pub fn new(token: impl Into<Secret>) -> GithubConfig {
        GithubConfig {
            token: token.into(),
            ..GithubConfig::unset()
        }
    }

    /// The defaults before a token is given: what deserialising fills in, never valid alone.
    fn unset() -> Self {
        GithubConfig {
            token: Secret::default(),
            api_url: DEFAULT_API_URL.to_owned(),
            interval_ms: 60_000,
            all: false,
            participating: false,
            per_page: MAX_PER_PAGE,
            page_cap: 10,
            bootstrap: Bootstrap::Skip,
            reconnect: ReconnectPolicy {
                max_attempts: None,
                base_ms: 5_000,
                max_ms: 300_000,
            },
            user_agent: concat!("openflume/", env!("CARGO_PKG_VERSION")).to_owned(),
            request_timeout_ms: 30_000,
            resume: None,
        }
    }
}

/// A configuration checked once, with the URLs the machine needs derived from it.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    /// The API base's origin: pages and redirects may only go here.
    pub origin: Url,
    /// Page 1 of the notifications list, the URL the validators belong to.
    pub first_page: String,
}

impl GithubConfig {
    /// Validates the configuration and derives the polled URL.
    pub(crate) fn check(&self) -> Result<Checked, Misuse> {
        let bad = |why: ConfigError| Err(Misuse::Config(why.in_scope("github")));
        if self.token.is_empty() {
            return bad(ConfigError::Empty { field: "token" });
        }
        if !is_header_value(self.token.expose()) || self.token.expose().contains(' ') {
            return bad(ConfigError::NotHeaderToken { field: "token" });
        }
        if self.user_agent.trim().is_empty() || !is_header_value(&self.user_agent) {
            return bad(ConfigError::NotHeaderValue {
                field: "user_agent",
            });
        }
        if self.interval_ms < MIN_INTERVAL_MS {
            return bad(ConfigError::BelowMinimum {
                field: "interval_ms",
                value: self.interval_ms,
                min: MIN_INTERVAL_MS,
            });
        }
        if self.request_timeout_ms < MIN_INTERVAL_MS {
            return bad(ConfigError::BelowMinimum {
                field: "request_timeout_ms",
                value: self.request_timeout_ms,
                min: MIN_INTERVAL_MS,
            });
        }
        if !(1..=MAX_PER_PAGE).contains(&self.per_page) {
            return bad(ConfigError::Expected {
                field: "per_page",
                value: self.per_page.into(),
                min: 1,
                max: MAX_PER_PAGE.into(),
            });
        }
        if !(1..=MAX_PAGE_CAP).contains(&self.page_cap) {
            return bad(ConfigError::Expected {
                field: "page_cap",
                value: self.page_cap.into(),
                min: 1,
                max: MAX_PAGE_CAP.into(),
            });
        }
        if self.api_url.contains(['?', '#']) {
            return bad(ConfigError::QueryOrFragment { field: "api_url" });
        }
        let origin = match Url::parse(&self.api_url) {
            Ok(url) if matches!(url.scheme.as_str(), "http" | "https") => url,
            Ok(_) => {
                return bad(ConfigError::NotHttp {
                    field: "api_url",
                    schemes: "http or https",
                });
            }
            Err(error) => {
                return bad(ConfigError::Url {
                    field: "api_url",
                    reason: error.to_string(),
                });
            }
        };
        let first_page = format!(
            "{}/notifications?all={}&participating={}&per_page={}",
            self.api_url.trim_end_matches('/'),
            self.all,
            self.participating,
            self.per_page
        );
        Ok(Checked { origin, first_page })
    }
}

/// Printable ASCII or tab, so the value cannot split or smuggle header lines.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GithubConfig {
        GithubConfig::new("ghp_test")
    }

    #[test]
    fn first_page_url_has_stable_flags() {
        let checked = valid().check().unwrap();
        assert_eq!(
            checked.first_page,
            "https://api.github.com/notifications?all=false&participating=false&per_page=50"
        );
        let ghes = GithubConfig {
            api_url: "https://ghe.example/api/v3/".into(),
            all: true,
            participating: true,
            per_page: 20,
            ..valid()
        };
        assert_eq!(
            ghes.check().unwrap().first_page,
            "https://ghe.example/api/v3/notifications?all=true&participating=true&per_page=20"
        );
    }

    #[test]
    fn user_agent_defaults_to_crate_version() {
        assert_eq!(
            GithubConfig::new("").user_agent,
            format!("openflume/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn refuses_unusable_configs() {
        let cases: Vec<(&str, GithubConfig)> = vec![
            ("empty token", GithubConfig::new("")),
            (
                "token with newline",
                GithubConfig {
                    token: "ghp\r\nX-Evil: 1".into(),
                    ..valid()
                },
            ),
            (
                "empty user agent",
                GithubConfig {
                    user_agent: " ".into(),
                    ..valid()
                },
            ),
            (
                "interval below 1 s",
                GithubConfig {
                    interval_ms: 999,
                    ..valid()
                },
            ),
            (
                "request timeout below 1 s",
                GithubConfig {
                    request_timeout_ms: 10,
                    ..valid()
                },
            ),
            (
                "per_page 0",
                GithubConfig {
                    per_page: 0,
                    ..valid()
                },
            ),
            (
                "per_page 100",
                GithubConfig {
                    per_page: 100,
                    ..valid()
                },
            ),
            (
                "page_cap 0",
                GithubConfig {
                    page_cap: 0,
                    ..valid()
                },
            ),
            (
                "page_cap 101",
                GithubConfig {
                    page_cap: 101,
                    ..valid()
                },
            ),
            (
                "api_url with query",
                GithubConfig {
                    api_url: "https://api.github.com/?x=1".into(),
                    ..valid()
                },
            ),
            (
                "api_url relative",
                GithubConfig {
                    api_url: "api.github.com".into(),
                    ..valid()
                },
            ),
            (
                "api_url websocket",
                GithubConfig {
                    api_url: "wss://api.github.com".into(),
                    ..valid()
                },
            ),
        ];
        for (name, config) in cases {
            assert!(
                matches!(config.check(), Err(Misuse::Config(_))),
                "{name} was accepted"
            );
        }
        let edge = GithubConfig {
            interval_ms: 1_000,
            per_page: 1,
            page_cap: 100,
            ..valid()
        };
        assert!(edge.check().is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let typo = serde_json::from_str::<GithubConfig>(r#"{"token":"t","interval":5}"#);
        assert!(typo.is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!(
            "{:?}",
            GithubConfig {
                token: "ghp_DISTINCTIVE".into(),
                ..valid()
            }
        );
        assert!(!text.contains("ghp_DISTINCTIVE"));
        assert!(text.contains("[redacted]"));
    }
}
