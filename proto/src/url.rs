//! Just enough URL handling for the protocols: split an absolute `http(s)`/`ws(s)` URL, compare origins.
//!
//! ```
//! use openflume_proto::url::{Url, UrlError};
//! let gateway = Url::parse("wss://gateway.discord.gg/?v=10&encoding=json").unwrap();
//! assert_eq!((gateway.port, gateway.target.as_str()), (443, "/?v=10&encoding=json"));
//! assert_eq!(Url::parse("gateway.discord.gg"), Err(UrlError::NotAbsolute));
//! ```

use std::fmt;

/// An absolute URL split into the parts a client needs to connect and to check where it is going.
///
/// Scheme and host are lowercased; a missing port becomes the scheme's default, so
/// `https://API.github.com:443/x` and `https://api.github.com/y` share an origin.
///
/// ```
/// use openflume_proto::url::Url;
/// let url = Url::parse("https://api.github.com/notifications?page=2").unwrap();
/// assert_eq!(url.host, "api.github.com");
/// assert_eq!(url.port, 443);
/// assert_eq!(url.target, "/notifications?page=2");
/// assert!(url.tls());
/// assert!(url.same_origin(&Url::parse("https://API.github.com:443/user").unwrap()));
/// assert!(!url.same_origin(&Url::parse("https://evil.example/notifications").unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `http`, `https`, `ws` or `wss`.
    pub scheme: String,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
    /// Path and query, at least `/`; the fragment is dropped.
    pub target: String,
}

/// Why a URL was refused.
///
/// ```
/// use openflume_proto::url::{Url, UrlError};
/// assert_eq!(Url::parse("ftp://example.com/"), Err(UrlError::Scheme("ftp".into())));
/// let err = Url::parse("https://user:pass@example.com/").unwrap_err();
/// assert_eq!(err, UrlError::UserInfo);
/// assert_eq!(err.to_string(), "credentials in URLs are not supported");
/// ```
///
/// `#[non_exhaustive]`: later versions may reject more kinds of URL, so a match outside this
/// crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume_proto::url::UrlError;
/// fn code(e: &UrlError) -> u8 {
///     match e { UrlError::NotAbsolute => 1, UrlError::Scheme(_) => 2, UrlError::Authority => 3, UrlError::UserInfo => 4 }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `scheme://…`.
    #[error("not an absolute URL (expected scheme://host/…)")]
    NotAbsolute,
    /// A scheme other than http, https, ws, wss.
    #[error("unsupported scheme {0:?} (expected http, https, ws or wss)")]
    Scheme(String),
    /// Empty host or bad port.
    #[error("invalid host or port")]
    Authority,
    /// User info (`user:pass@`) is refused so credentials never ride in URLs.
    #[error("credentials in URLs are not supported")]
    UserInfo,
}

impl Url {
    /// Parses an absolute URL.
    ///
    /// ```
    /// use openflume_proto::url::{Url, UrlError};
    /// let url = Url::parse("HTTP://[::1]:8080/a#frag").unwrap();
    /// assert_eq!((url.scheme.as_str(), url.host.as_str()), ("http", "::1"));
    /// assert_eq!((url.port, url.target.as_str()), (8080, "/a")); // the fragment is dropped
    /// assert_eq!(Url::parse("http://h:99999/"), Err(UrlError::Authority));
    /// ```
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let (scheme, rest) = text.split_once("://").ok_or(UrlError::NotAbsolute)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return Err(UrlError::Scheme(scheme)),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split_at);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(UrlError::Authority)?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(UrlError::Authority),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(UrlError::Authority);
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| UrlError::Authority)?,
            None => default_port,
        };
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// True for `https` and `wss`.
    ///
    /// ```
    /// use openflume_proto::url::Url;
    /// assert!(Url::parse("wss://wss-primary.slack.com/link").unwrap().tls());
    /// assert!(!Url::parse("ws://127.0.0.1:9000").unwrap().tls());
    /// ```
    pub fn tls(&self) -> bool {
        matches!(self.scheme.as_str(), "https" | "wss")
    }

    /// The `Host` header value: the host, with the port when it is not the default.
    ///
    /// ```
    /// use openflume_proto::url::Url;
    /// let github = Url::parse("https://api.github.com:443/").unwrap();
    /// assert_eq!(github.host_header(), "api.github.com"); // the default port is left out
    /// assert_eq!(Url::parse("http://localhost:8080/").unwrap().host_header(), "localhost:8080");
    /// assert_eq!(Url::parse("http://[::1]:8080/").unwrap().host_header(), "[::1]:8080");
    /// ```
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn default_port(&self) -> u16 {
        if self.tls() { 443 } else { 80 }
    }

    /// Same scheme family (TLS or not), host and port. `http`/`ws` and `https`/`wss` are treated
    /// as the same family, since a WebSocket URL and its API live on one origin.
    ///
    /// ```
    /// use openflume_proto::url::Url;
    /// let api = Url::parse("https://slack.com/api/apps.connections.open").unwrap();
    /// assert!(api.same_origin(&Url::parse("wss://slack.com/link").unwrap()));
    /// assert!(!api.same_origin(&Url::parse("http://slack.com/api").unwrap())); // port 80, no TLS
    /// assert!(!api.same_origin(&Url::parse("https://slack.com:8443/api").unwrap()));
    /// ```
    pub fn same_origin(&self, other: &Url) -> bool {
        self.tls() == other.tls() && self.host == other.host && self.port == other.port
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.host_header(), self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts<'a> = (&'a str, &'a str, u16, &'a str);

    #[test]
    fn parses_and_refuses() {
        let cases: &[(&str, Result<Parts<'_>, UrlError>)] = &[
            ("ws://127.0.0.1:9000", Ok(("ws", "127.0.0.1", 9000, "/"))),
            (
                "WSS://Gateway.Discord.gg/?v=10",
                Ok(("wss", "gateway.discord.gg", 443, "/?v=10")),
            ),
            ("http://[::1]:8080/a#frag", Ok(("http", "::1", 8080, "/a"))),
            ("http://h?x=1", Ok(("http", "h", 80, "/?x=1"))),
            ("ftp://h/", Err(UrlError::Scheme("ftp".into()))),
            ("/relative", Err(UrlError::NotAbsolute)),
            ("http://:80/", Err(UrlError::Authority)),
            ("http://h:99999/", Err(UrlError::Authority)),
            ("http://u:p@h/", Err(UrlError::UserInfo)),
            ("http://[::1/", Err(UrlError::Authority)),
        ];
        for (text, expected) in cases {
            let got = Url::parse(text)
                .map(|u| (u.scheme.clone(), u.host.clone(), u.port, u.target.clone()));
            let expected = expected
                .clone()
                .map(|(s, h, p, t)| (s.to_owned(), h.to_owned(), p, t.to_owned()));
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn host_header_and_display() {
        let url = Url::parse("http://[::1]:8080/a").unwrap();
        assert_eq!(url.host_header(), "[::1]:8080");
        assert_eq!(url.to_string(), "http://[::1]:8080/a");
        assert_eq!(Url::parse("https://a.b:443/").unwrap().host_header(), "a.b");
    }
}
