//! `redis://[USER:PASSWORD@]HOST[:PORT][/DB]/STREAM`: a server, a database and a stream key in one
//! argument, as `--sink` takes it.

use std::fmt;

/// A Redis server (and database) and the key of a stream on it.
///
/// The password, if the URL carries one, is never shown: `Display` and `Debug` print the URL
/// with `***` in its place.
///
/// ```
/// use openflume::redis::RedisTarget;
/// let target: RedisTarget = "redis://127.0.0.1:6379/2/events".parse()?;
/// assert_eq!((target.stream(), target.database()), ("events", 2));
/// let secret: RedisTarget = "redis://app:hunter2@cache:6380/events".parse()?;
/// assert_eq!(secret.to_string(), "redis://app:***@cache:6380/0/events");
/// assert!("redis://cache".parse::<RedisTarget>().is_err()); // no stream
/// # Ok::<(), openflume::redis::TargetError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `user:password@host:port`, or `host:port`.
    authority: String,
    /// Where the password starts and ends in `authority`, if there is one.
    password: Option<(usize, usize)>,
    database: u32,
    stream: String,
    /// The cursors hash, when not `STREAM:cursors`.
    cursors: Option<String>,
}

/// Why a text is not a [`RedisTarget`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (expected redis://HOST[:PORT][/DB]/STREAM)")]
pub struct TargetError {
    /// What is wrong.
    pub reason: String,
}

impl TargetError {
    fn new(reason: impl Into<String>) -> TargetError {
        TargetError {
            reason: reason.into(),
        }
    }
}

impl RedisTarget {
    /// Parses a server URL without a stream (`redis://HOST[:PORT][/DB]`, as `consume --redis`
    /// takes it) and names the stream apart.
    ///
    /// ```
    /// use openflume::redis::RedisTarget;
    /// let target = RedisTarget::server("redis://127.0.0.1:6379/1", "events")?;
    /// assert_eq!(target.to_string(), "redis://127.0.0.1:6379/1/events");
    /// # Ok::<(), openflume::redis::TargetError>(())
    /// ```
    pub fn server(url: &str, stream: &str) -> Result<RedisTarget, TargetError> {
        if stream.is_empty() {
            return Err(TargetError::new("the stream name is empty"));
        }
        let joined = format!("{}/{stream}", url.trim_end_matches('/'));
        let target: RedisTarget = joined.parse()?;
        if target.stream != stream {
            return Err(TargetError::new(
                "the server URL has a path beyond the database number",
            ));
        }
        Ok(target)
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The database number (`SELECT`), 0 unless the URL names one.
    pub fn database(&self) -> u32 {
        self.database
    }

    /// The key of the hash that holds the sink's cursors: `STREAM:cursors` unless
    /// [`with_cursors_key`](Self::with_cursors_key) named another.
    pub fn cursors_key(&self) -> String {
        match &self.cursors {
            Some(key) => key.clone(),
            None => format!("{}:cursors", self.stream),
        }
    }

    /// Keeps the cursors in the hash `key` instead of `STREAM:cursors`: each process that
    /// appends to one stream needs a hash of its own (its sources' names are the fields), named
    /// for what it runs rather than where, so that it resumes wherever it starts.
    ///
    /// ```
    /// use openflume::redis::RedisTarget;
    /// let target: RedisTarget = "redis://cache/events".parse()?;
    /// let shards = target.with_cursors_key("events:cursors:shards-0-15");
    /// assert_eq!(shards.cursors_key(), "events:cursors:shards-0-15");
    /// # Ok::<(), openflume::redis::TargetError>(())
    /// ```
    #[must_use]
    pub fn with_cursors_key(mut self, key: impl Into<String>) -> RedisTarget {
        self.cursors = Some(key.into());
        self
    }

    /// The key of a sink run's batch marker: `STREAM:sink:RUN` (RUN in hex).
    pub(crate) fn marker_key(&self, run: u64) -> String {
        format!("{}:sink:{run:016x}", self.stream)
    }

    /// The key of the hash that holds the hub's named consumers: `STREAM:hub-consumers`.
    pub fn hub_consumers_key(&self) -> String {
        format!("{}:hub-consumers", self.stream)
    }

    /// The key of the hash that holds `serve --forward`'s targets' states: `STREAM:forward`
    /// (field: the target's URL; value: its state as JSON).
    ///
    /// ```
    /// use openflume::redis::RedisTarget;
    /// let target: RedisTarget = "redis://cache/events".parse()?;
    /// assert_eq!(target.forward_key(), "events:forward");
    /// # Ok::<(), openflume::redis::TargetError>(())
    /// ```
    pub fn forward_key(&self) -> String {
        format!("{}:forward", self.stream)
    }

    /// A client for the server (no connection is made yet).
    pub(crate) fn client(&self) -> Result<::redis::Client, super::RedisError> {
        let url = format!("redis://{}/{}", self.authority, self.database);
        ::redis::Client::open(url).map_err(|error| super::RedisError::Connect {
            // The crate's message names the part that is wrong, never the URL itself.
            reason: super::describe(&error),
        })
    }

    fn redacted_authority(&self) -> String {
        match self.password {
            Some((start, end)) => format!(
                "{}***{}",
                self.authority.get(..start).unwrap_or_default(),
                self.authority.get(end..).unwrap_or_default()
            ),
            None => self.authority.clone(),
        }
    }
}

impl std::str::FromStr for RedisTarget {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<RedisTarget, TargetError> {
        let rest = match url.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => {
                return Err(TargetError::new(
                    "rediss:// (TLS) is not supported yet; reach Redis through a TLS tunnel",
                ));
            }
            _ => return Err(TargetError::new("the scheme must be redis://")),
        };
        if rest.contains(['?', '#']) {
            return Err(TargetError::new("a query or fragment is not supported"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() || host.starts_with(':') {
            return Err(TargetError::new("no host"));
        }
        if let Some((_, port)) = host.rsplit_once(':')
            && !host.ends_with(']')
            && port.parse::<u16>().is_err()
        {
            return Err(TargetError::new(format!("{port:?} is not a port")));
        }
        let password = authority.rsplit_once('@').and_then(|(userinfo, _)| {
            let start = userinfo.find(':').map_or(0, |colon| colon + 1);
            (start < userinfo.len()).then_some((start, userinfo.len()))
        });
        let segments: Vec<&str> = path.split('/').collect();
        let (database, stream) = match segments.as_slice() {
            [stream] => (0, *stream),
            [database, stream] => {
                let database = database.parse::<u32>().map_err(|_| {
                    TargetError::new(format!("{database:?} is not a database number"))
                })?;
                (database, *stream)
            }
            _ => return Err(TargetError::new("too many path segments")),
        };
        if stream.is_empty() {
            return Err(TargetError::new("no stream name"));
        }
        Ok(RedisTarget {
            authority: authority.to_owned(),
            password,
            database,
            stream: stream.to_owned(),
            cursors: None,
        })
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redis://{}/{}/{}",
            self.redacted_authority(),
            self.database,
            self.stream
        )
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisTarget")
            .field(&self.to_string())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_name_a_server_a_database_and_a_stream() {
        let cases = [
            ("redis://h/s", Some("redis://h/0/s")),
            ("redis://h:1/2/s", Some("redis://h:1/2/s")),
            ("redis://[::1]:6379/s", Some("redis://[::1]:6379/0/s")),
            ("redis://:pw@h/s", Some("redis://:***@h/0/s")),
            ("redis://u:pw@h:7/3/s", Some("redis://u:***@h:7/3/s")),
            ("redis://h", None),
            ("redis://h/", None),
            ("redis://h/x/s", None),
            ("redis://h/1/2/s", None),
            ("redis://h:port/s", None),
            ("redis:///s", None),
            ("http://h/s", None),
            ("rediss://h/s", None),
            ("redis://h/s?x=1", None),
        ];
        for (url, shown) in cases {
            let parsed = url.parse::<RedisTarget>().ok().map(|t| t.to_string());
            assert_eq!(parsed.as_deref(), shown, "{url}");
        }
        let secret: RedisTarget = "redis://u:pw@h/s".parse().unwrap();
        assert!(!format!("{secret:?}").contains("pw"));
        assert!(RedisTarget::server("redis://h/1", "s").is_ok());
        assert!(RedisTarget::server("redis://h/1/x", "s").is_err());
        assert!(RedisTarget::server("redis://h", "").is_err());
    }
}
