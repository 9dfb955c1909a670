//! Why a configuration cannot work: one typed error for every machine's config checks.
//!
//! Each variant names the field it is about ([`ConfigError::field`]), so a front end can say
//! which of its own settings to fix: the command line maps `(source, field)` to the flag that
//! sets it. The `Display` texts are the sentences the checks have always printed.

/// A configuration that cannot work, found when a machine is built
/// ([`Misuse::Config`](crate::Misuse::Config)).
///
/// A check that belongs to one protocol wraps its problem in [`ConfigError::In`], which prefixes
/// the scope (`discord: token is required`); [`ConfigError::field`] and [`ConfigError::problem`]
/// look through it.
///
/// ```
/// use openflume_proto::ConfigError;
/// let error = ConfigError::Required { field: "token" }.in_scope("discord");
/// assert_eq!(error.to_string(), "discord: token is required");
/// assert_eq!(error.field(), Some("token"));
/// assert_eq!(error.scope(), Some("discord"));
/// assert_eq!(error.problem(), &ConfigError::Required { field: "token" });
///
/// // A custom source's own check.
/// let custom = ConfigError::Invalid { field: "url", reason: "not an http(s) URL".into() };
/// assert_eq!(custom.to_string(), "url: not an http(s) URL");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The problem, in a scope: `discord`, `discord gateway`, `github`, `cron template`.
    #[error("{scope}: {error}")]
    In {
        /// Which configuration the field belongs to.
        scope: &'static str,
        /// The problem itself.
        error: Box<ConfigError>,
    },
    /// A field that must be set is empty (Discord's token).
    #[error("{field} is required")]
    Required {
        /// The field.
        field: &'static str,
    },
    /// A field that must be set with another one is not.
    #[error("{field} is required with {with}")]
    RequiredWith {
        /// The missing field.
        field: &'static str,
        /// The field that needs it.
        with: &'static str,
    },
    /// A secret or token is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A token holds whitespace or control characters (a pasted newline, usually).
    #[error("{field} contains whitespace or control characters")]
    Whitespace {
        /// The field.
        field: &'static str,
    },
    /// A token with spaces or control characters, which would split an HTTP header.
    #[error("{field} contains spaces or control characters")]
    NotHeaderToken {
        /// The field.
        field: &'static str,
    },
    /// A value that goes into an HTTP header is empty or holds characters a header cannot.
    #[error("{field} must be a non-empty header value")]
    NotHeaderValue {
        /// The field.
        field: &'static str,
    },
    /// Slack: an app token that is a bot or user token.
    #[error(
        "{field} looks like a bot or user token (xox…): Socket Mode needs an app-level token \
         (xapp-…) with the connections:write scope"
    )]
    NotAppToken {
        /// The field.
        field: &'static str,
    },
    /// A number outside `min–max` (`large_threshold 10 is not within 50–250`).
    #[error("{field} {value} is not within {min}–{max}")]
    NotWithin {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value that works.
        min: u64,
        /// The largest value that works.
        max: u64,
    },
    /// A number outside `min to max` (`per_page is 0, expected 1 to 100`).
    #[error("{field} is {value}, expected {min} to {max}")]
    Expected {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value that works.
        min: u64,
        /// The largest value that works.
        max: u64,
    },
    /// A number over a protocol's own limit, with the reason for the limit.
    #[error("{field} must be between {min} and {max} ({why}), got {value}")]
    Between {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value that works.
        min: u64,
        /// The largest value that works.
        max: u64,
        /// Whose limit it is.
        why: &'static str,
    },
    /// A number below its minimum (`interval_ms is 5, the minimum is 1000`).
    #[error("{field} is {value}, the minimum is {min}")]
    BelowMinimum {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The minimum.
        min: u64,
    },
    /// A number below its minimum, said the other way round.
    #[error("{field} must be at least {min}, got {value}")]
    AtLeast {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The minimum.
        min: u64,
    },
    /// A limit too small to work, whatever its value.
    #[error("{field} must be at least {min}")]
    Minimum {
        /// The field.
        field: &'static str,
        /// The minimum.
        min: u64,
    },
    /// A timeout of zero.
    #[error("timeouts must be positive")]
    ZeroTimeout {
        /// The first timeout that is zero.
        field: &'static str,
    },
    /// A shard id not below the shard count.
    #[error("shard_id {shard_id} is not below shard_count {shard_count}")]
    ShardId {
        /// Always `shard_id`.
        field: &'static str,
        /// The shard id.
        shard_id: u32,
        /// The shard count.
        shard_count: u32,
    },
    /// A resume state for a shard that the shard count does not have.
    #[error("resume has shard {shard_id}, not below shard_count {shard_count}")]
    ResumeShard {
        /// Always `resume`.
        field: &'static str,
        /// The highest shard id in the resume states.
        shard_id: u32,
        /// The shard count.
        shard_count: u32,
    },
    /// A shard range that is empty, too long, or reaches past the shard count.
    #[error("shard range {first}-{last} is not within the shards{}", shard_count.map(|count| format!(" 0-{} of {count}", count.saturating_sub(1))).unwrap_or_default())]
    ShardRange {
        /// Always `shard_range`.
        field: &'static str,
        /// The first shard id.
        first: u32,
        /// The last shard id.
        last: u32,
        /// The shard count, when known.
        shard_count: Option<u32>,
    },
    /// A value that must be a JSON object is not.
    #[error("{field} must be a JSON object")]
    NotObject {
        /// The field.
        field: &'static str,
    },
    /// Discord's IDENTIFY would be over its size limit.
    #[error("the IDENTIFY payload would be {bytes} bytes, over Discord's {max}: shorten {field}")]
    IdentifyTooLarge {
        /// Always `presence`, the part a caller can shorten.
        field: &'static str,
        /// The payload's size.
        bytes: usize,
        /// Discord's limit.
        max: usize,
    },
    /// A URL that does not parse, or has a scheme the field cannot use.
    #[error("{field}: {reason}")]
    Url {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL that must be http or https.
    #[error("{field} must be an {schemes} URL")]
    NotHttp {
        /// The field.
        field: &'static str,
        /// How the check words the schemes (`http or https`, `http(s)`).
        schemes: &'static str,
    },
    /// A base URL with a query or fragment, which the paths appended to it would break.
    #[error("{field} must not have a query or fragment")]
    QueryOrFragment {
        /// The field.
        field: &'static str,
    },
    /// A webhook path prefix that is not a plain path.
    #[error("path prefix {prefix:?} must start with '/' and hold no '?', '#', space or control")]
    PathPrefix {
        /// Always `path_prefix`.
        field: &'static str,
        /// The prefix given.
        prefix: String,
    },
    /// A webhook secret set to the empty string.
    #[error("a webhook secret is empty")]
    EmptyWebhookSecret {
        /// The first empty one.
        field: &'static str,
    },
    /// Webhooks with nothing to check signatures with.
    #[error(
        "no webhook secret: set the Slack signing secret, the GitHub webhook secret or a custom sender"
    )]
    NoWebhookSecret,
    /// A custom webhook whose name cannot be a path segment and event type.
    #[error("custom webhook name {name:?} must be 1 to 64 letters, digits, '-' or '_'")]
    SenderName {
        /// Always `senders`.
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// A custom webhook with an empty secret.
    #[error("custom webhook {name} has an empty secret")]
    SenderSecret {
        /// Always `senders`.
        field: &'static str,
        /// The sender's name.
        name: String,
    },
    /// Two custom webhooks with one name.
    #[error("custom webhook {name} is configured twice")]
    SenderTwice {
        /// Always `senders`.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// A cron expression that does not parse.
    #[cfg(feature = "cron")]
    #[error("cron expression {expression:?}: {error}")]
    CronExpression {
        /// Always `expression`.
        field: &'static str,
        /// The expression given.
        expression: String,
        /// Where and why it does not parse.
        error: crate::cron::ParseError,
    },
    /// Any other problem with a field: for custom sources' own checks.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// This error inside `scope` (`discord: …`).
    ///
    /// ```
    /// use openflume_proto::ConfigError;
    /// let error = ConfigError::Empty { field: "token" }.in_scope("github");
    /// assert_eq!(error.to_string(), "github: token is empty");
    /// ```
    pub fn in_scope(self, scope: &'static str) -> ConfigError {
        ConfigError::In {
            scope,
            error: Box::new(self),
        }
    }

    /// The innermost scope, if any (`discord`, `github`, `discord gateway`).
    ///
    /// ```
    /// use openflume_proto::ConfigError;
    /// assert_eq!(ConfigError::NoWebhookSecret.scope(), None);
    /// ```
    pub fn scope(&self) -> Option<&'static str> {
        match self {
            ConfigError::In { scope, error } => error.scope().or(Some(scope)),
            _ => None,
        }
    }

    /// The problem without its scopes.
    ///
    /// ```
    /// use openflume_proto::ConfigError;
    /// let error = ConfigError::Whitespace { field: "token" }.in_scope("discord");
    /// assert_eq!(error.problem().to_string(), "token contains whitespace or control characters");
    /// ```
    pub fn problem(&self) -> &ConfigError {
        match self {
            ConfigError::In { error, .. } => error.problem(),
            other => other,
        }
    }

    /// The configuration field the problem is about, as the config struct names it
    /// (`gateway_url`, `app_token`, `senders`); `None` when no one field is at fault.
    ///
    /// ```
    /// use openflume_proto::ConfigError;
    /// let error = ConfigError::Url { field: "gateway_url", reason: "unsupported scheme".into() };
    /// assert_eq!(error.in_scope("discord").field(), Some("gateway_url"));
    /// assert_eq!(ConfigError::NoWebhookSecret.field(), None);
    /// ```
    pub fn field(&self) -> Option<&'static str> {
        use ConfigError::*;
        Some(match self {
            In { error, .. } => return error.field(),
            NoWebhookSecret => return None,
            Required { field }
            | RequiredWith { field, .. }
            | Empty { field }
            | Whitespace { field }
            | NotHeaderToken { field }
            | NotHeaderValue { field }
            | NotAppToken { field }
            | NotWithin { field, .. }
            | Expected { field, .. }
            | Between { field, .. }
            | BelowMinimum { field, .. }
            | AtLeast { field, .. }
            | Minimum { field, .. }
            | ZeroTimeout { field }
            | ShardId { field, .. }
            | ResumeShard { field, .. }
            | ShardRange { field, .. }
            | NotObject { field }
            | IdentifyTooLarge { field, .. }
            | Url { field, .. }
            | NotHttp { field, .. }
            | QueryOrFragment { field }
            | PathPrefix { field, .. }
            | EmptyWebhookSecret { field }
            | SenderName { field, .. }
            | SenderSecret { field, .. }
            | SenderTwice { field, .. }
            | Invalid { field, .. } => field,
            #[cfg(feature = "cron")]
            CronExpression { field, .. } => field,
        })
    }
}
