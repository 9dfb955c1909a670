//! HTTP proxies from the environment, the way curl reads them: which proxy (if any) a connection
//! goes through, and the `CONNECT` that opens its tunnel.
//!
//! - `https_proxy` / `HTTPS_PROXY` for `https://` and `wss://`, `http_proxy` / `HTTP_PROXY` for
//!   `http://` and `ws://` (the lowercase name wins when both are set; an empty value is unset).
//!   Every scheme tunnels with `CONNECT`, plain ones too: one code path, and the proxy never sees
//!   a request, only the bytes it relays.
//! - A proxy is `http://[user:password@]host[:port]` (no scheme means `http://`; the port defaults
//!   to 1080, as in curl). User and password may be percent-encoded; they are sent as
//!   `Proxy-Authorization: Basic …` and never appear in a log, an error or `Debug`.
//! - `no_proxy` / `NO_PROXY`: comma-separated entries, each `*` (no proxy at all), a host name
//!   that matches itself and every subdomain (a leading dot changes nothing: `example.com` and
//!   `.example.com` both match `example.com` and `api.example.com`), an IP literal (`10.0.0.7`,
//!   `::1` or `[::1]`, matched exactly; no CIDR ranges), any of them with `:port` to match one port
//!   only. Case does not matter. Loopback is **not** exempt by itself (curl does not exempt it
//!   either): list `localhost,127.0.0.1,::1` to reach local services directly.

use openflume_proto::http::{HttpError, Limits, ResponseReader, encode_connect};
use openflume_proto::webhook::base64_encode;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The proxies of this process, read from the environment once.
pub(crate) type ProxySetting = Arc<Result<Proxies, ProxyError>>;

/// A proxy variable that cannot be used. The message names the variable, never its value (it may
/// carry a password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {reason}")]
pub(crate) struct ProxyError {
    pub(crate) variable: &'static str,
    pub(crate) reason: String,
}

/// The proxy for each kind of connection, and the hosts reached directly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    /// For `https://` and `wss://`.
    pub(crate) https: Option<Proxy>,
    /// For `http://` and `ws://`.
    pub(crate) http: Option<Proxy>,
    pub(crate) no_proxy: NoProxy,
}

/// One HTTP proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Proxy-Authorization` value, when the URL had credentials.
    authorization: Option<String>,
    /// The variable it came from, for messages.
    pub(crate) variable: &'static str,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl std::fmt::Display for Proxy {
    /// `proxy HOST:PORT (from VARIABLE)`: never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "proxy [{}]:{} (from {})",
                self.host, self.port, self.variable
            )
        } else {
            write!(
                f,
                "proxy {}:{} (from {})",
                self.host, self.port, self.variable
            )
        }
    }
}

/// The process's proxies, read from the environment on first use.
pub(crate) fn from_env() -> ProxySetting {
    static PROXIES: OnceLock<ProxySetting> = OnceLock::new();
    PROXIES
        .get_or_init(|| Arc::new(read(|name| std::env::var(name).ok())))
        .clone()
}

/// Reads the proxy variables through `var` (the environment, or a table in tests).
pub(crate) fn read(var: impl Fn(&str) -> Option<String>) -> Result<Proxies, ProxyError> {
    let pick = |names: [&'static str; 2]| {
        names.into_iter().find_map(|name| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
    };
    let proxy = |names| match pick(names) {
        Some((variable, value)) => parse_proxy(variable, &value).map(Some),
        None => Ok(None),
    };
    Ok(Proxies {
        https: proxy(["https_proxy", "HTTPS_PROXY"])?,
        http: proxy(["http_proxy", "HTTP_PROXY"])?,
        no_proxy: pick(["no_proxy", "NO_PROXY"])
            .map(|(_, value)| NoProxy::parse(&value))
            .unwrap_or_default(),
    })
}

impl Proxies {
    /// The proxy a connection to `host:port` goes through, if any.
    pub(crate) fn for_target(&self, tls: bool, host: &str, port: u16) -> Option<&Proxy> {
        let proxy = if tls { &self.https } else { &self.http };
        proxy
            .as_ref()
            .filter(|_| !self.no_proxy.matches(host, port))
    }
}

fn parse_proxy(variable: &'static str, value: &str) -> Result<Proxy, ProxyError> {
    let error = |reason: &str| ProxyError {
        variable,
        reason: reason.to_owned(),
    };
    let value = value.trim();
    let rest = match value.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            // The scheme is no secret, and naming it says what to change.
            return Err(error(&format!(
                "unsupported proxy scheme {:?} (only http:// proxies, which tunnel TLS with CONNECT)",
                scheme.to_ascii_lowercase()
            )));
        }
        None => value,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).ok_or_else(|| error("invalid host or port"))?;
    if host.is_empty() {
        return Err(error("no host"));
    }
    let authorization = match userinfo {
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let credentials = format!(
                "{}:{}",
                percent_decode(user)
                    .ok_or_else(|| error("invalid percent-encoding in the user"))?,
                percent_decode(password)
                    .ok_or_else(|| error("invalid percent-encoding in the password"))?
            );
            Some(format!("Basic {}", base64_encode(credentials.as_bytes())))
        }
        None => None,
    };
    Ok(Proxy {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(1080),
        authorization,
        variable,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 literal; the host without brackets.
/// `None` when the port is not a number.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match text.matches(':').count() {
        0 => Some((text, None)),
        1 => {
            let (host, port) = text.split_once(':')?;
            Some((host, Some(port.parse().ok()?)))
        }
        // More than one colon: a bare IPv6 literal.
        _ => Some((text, None)),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `no_proxy` rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    everything: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NoProxyEntry {
    host: NoProxyHost,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyHost {
    Ip(IpAddr),
    /// Lowercase, without leading or trailing dots: matches itself and its subdomains.
    Domain(String),
}

impl NoProxy {
    /// Parses a `no_proxy` value. Entries that cannot be read (a bad port) are skipped.
    pub(crate) fn parse(value: &str) -> NoProxy {
        let mut rules = NoProxy::default();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                rules.everything = true;
                continue;
            }
            let Some((host, port)) = split_host_port(entry) else {
                continue;
            };
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => NoProxyHost::Ip(ip),
                Err(_) => NoProxyHost::Domain(host.trim_matches('.').to_ascii_lowercase()),
            };
            if host == NoProxyHost::Domain(String::new()) {
                continue;
            }
            rules.entries.push(NoProxyEntry { host, port });
        }
        rules
    }

    /// Whether a connection to `host:port` goes direct.
    pub(crate) fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<IpAddr>().ok();
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| {
            entry.port.is_none_or(|p| p == port)
                && match &entry.host {
                    NoProxyHost::Ip(listed) => ip == Some(*listed),
                    NoProxyHost::Domain(domain) => {
                        ip.is_none()
                            && (name == *domain
                                || name
                                    .strip_suffix(domain.as_str())
                                    .is_some_and(|head| head.ends_with('.')))
                    }
                }
        })
    }
}

/// Opens a tunnel to `host:port` through `proxy` on `stream`, already connected to the proxy:
/// writes the `CONNECT` and reads the proxy's answer with the proto codec. The tunnel starts after
/// the answer's head. Errors name the proxy and the status, never the credentials.
pub(crate) async fn open_tunnel<S>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> std::io::Result<()>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use std::io::{Error, ErrorKind};
    let failed = |kind: ErrorKind, what: String| Error::new(kind, format!("{proxy}: {what}"));
    let headers: Vec<(&str, &str)> = proxy
        .authorization
        .as_deref()
        .map(|value| ("Proxy-Authorization", value))
        .into_iter()
        .collect();
    let request = encode_connect(host, port, &headers)
        .map_err(|e| failed(ErrorKind::InvalidInput, format!("cannot send CONNECT: {e}")))?;
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut reader = ResponseReader::new("CONNECT", Limits::default());
    let mut buf = [0u8; 4096];
    let done = loop {
        let n = stream.read(&mut buf).await?;
        let read = if n == 0 {
            reader.eof().map(Some)
        } else {
            reader.feed(buf.get(..n).unwrap_or_default())
        };
        match read {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(HttpError::ClosedBeforeResponse) => {
                return Err(failed(
                    ErrorKind::ConnectionAborted,
                    format!("closed the connection without answering CONNECT {host}:{port}"),
                ));
            }
            Err(e) => {
                return Err(failed(
                    ErrorKind::InvalidData,
                    format!("bad answer to CONNECT {host}:{port}: {e}"),
                ));
            }
        }
    };
    let status = done.response.status;
    if !(200..300).contains(&status) {
        let hint = match status {
            407 => " (Proxy Authentication Required: check the user and password in the proxy URL)",
            403 => " (Forbidden: the proxy does not allow this destination)",
            _ => "",
        };
        return Err(failed(
            ErrorKind::ConnectionRefused,
            format!("CONNECT {host}:{port} answered {status}{hint}"),
        ));
    }
    // The client speaks first on every protocol tunnelled here (TLS, WebSocket, HTTP): bytes
    // before that are not ours to interpret.
    if !done.leftover.is_empty() {
        return Err(failed(
            ErrorKind::InvalidData,
            format!("sent data through the tunnel to {host}:{port} before the client spoke"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn proxy_urls() {
        /// Host, port, and whether there are credentials; or the start of the error.
        type Parsed = Result<(&'static str, u16, bool), &'static str>;
        let cases: &[(&str, Parsed)] = &[
            ("http://proxy.corp:3128", Ok(("proxy.corp", 3128, false))),
            ("http://proxy.corp:3128/", Ok(("proxy.corp", 3128, false))),
            ("HTTP://Proxy.Corp", Ok(("proxy.corp", 1080, false))),
            ("proxy.corp:8080", Ok(("proxy.corp", 8080, false))),
            (
                "http://u:p%40ss@10.0.0.1:3128",
                Ok(("10.0.0.1", 3128, true)),
            ),
            ("http://[::1]:3128", Ok(("::1", 3128, false))),
            (
                "https://proxy.corp:443",
                Err("unsupported proxy scheme \"https\""),
            ),
            (
                "socks5://proxy.corp",
                Err("unsupported proxy scheme \"socks5\""),
            ),
            ("http://proxy.corp:port", Err("invalid host or port")),
            ("http://u:p@:3128", Err("no host")),
        ];
        for (text, want) in cases {
            let got = parse_proxy("HTTPS_PROXY", text);
            match (got, want) {
                (Ok(proxy), Ok((host, port, auth))) => {
                    assert_eq!(
                        (
                            proxy.host.as_str(),
                            proxy.port,
                            proxy.authorization.is_some()
                        ),
                        (*host, *port, *auth),
                        "{text}"
                    );
                }
                (Err(error), Err(reason)) => {
                    assert!(error.reason.starts_with(reason), "{text}: {error}");
                    assert!(error.to_string().starts_with("HTTPS_PROXY: "));
                }
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn credentials_are_percent_decoded_into_basic_auth_and_never_shown() {
        let proxy = parse_proxy("HTTPS_PROXY", "http://alice:s%3Acret@proxy:3128").unwrap();
        assert_eq!(
            proxy.authorization.as_deref(),
            Some(format!("Basic {}", base64_encode(b"alice:s:cret")).as_str())
        );
        for shown in [format!("{proxy}"), format!("{proxy:?}")] {
            assert!(
                !shown.contains("alice") && !shown.contains("cret"),
                "{shown}"
            );
            assert!(!shown.contains(&base64_encode(b"alice:s:cret")), "{shown}");
        }
        assert_eq!(proxy.to_string(), "proxy proxy:3128 (from HTTPS_PROXY)");
    }

    #[test]
    fn variables_lowercase_first_and_empty_is_unset() {
        let proxies = read(env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("http_proxy", " "),
            ("HTTP_PROXY", "http://plain:3"),
            ("NO_PROXY", "internal"),
        ]))
        .unwrap();
        assert_eq!(proxies.https.as_ref().unwrap().host, "lower");
        assert_eq!(proxies.https.as_ref().unwrap().variable, "https_proxy");
        assert_eq!(proxies.http.as_ref().unwrap().host, "plain");
        assert!(proxies.for_target(true, "svc.internal", 443).is_none());
        assert_eq!(
            proxies.for_target(true, "discord.com", 443).unwrap().port,
            1
        );
        assert_eq!(
            proxies.for_target(false, "discord.com", 80).unwrap().port,
            3
        );
        assert_eq!(read(env(&[])).unwrap(), Proxies::default());
        let bad = read(env(&[("HTTPS_PROXY", "https://u:secret@p")])).unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }

    #[test]
    fn no_proxy_rules() {
        let rules = NoProxy::parse(
            " example.com, .corp.net,10.0.0.7, ::1 ,[fe80::1]:8443, localhost:8080, *.bad, ,",
        );
        let cases: &[(&str, u16, bool)] = &[
            ("example.com", 443, true),
            ("api.example.com", 443, true),
            ("EXAMPLE.COM.", 443, true),
            ("notexample.com", 443, false),
            ("example.com.evil", 443, false),
            ("corp.net", 80, true),
            ("a.b.corp.net", 80, true),
            ("10.0.0.7", 1, true),
            ("10.0.0.8", 1, false),
            ("::1", 443, true),
            ("[::1]", 443, true),
            ("0:0:0:0:0:0:0:1", 443, true),
            ("fe80::1", 8443, true),
            ("fe80::1", 443, false),
            ("localhost", 8080, true),
            ("localhost", 80, false),
            // Loopback is not exempt unless listed.
            ("127.0.0.1", 80, false),
        ];
        for (host, port, direct) in cases {
            assert_eq!(rules.matches(host, *port), *direct, "{host}:{port}");
        }
        assert!(NoProxy::parse("*").matches("anything", 1));
        assert!(!NoProxy::parse("").matches("anything", 1));
        // An IP entry does not match by suffix, and a name entry never matches an IP.
        assert!(!NoProxy::parse("0.0.1").matches("10.0.0.1", 1));
    }

    /// The proxy's side of a connection: what it answers, and what it was sent.
    struct Duplex {
        answer: futures_lite::io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl futures_lite::AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.answer).poll_read(cx, buf)
        }
    }

    impl futures_lite::AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.sent.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn tunnel_answers() {
        let proxy = parse_proxy("HTTPS_PROXY", "http://u:secret@proxy.corp:3128").unwrap();
        let run = |answer: &[u8]| {
            let mut wire = Duplex {
                answer: futures_lite::io::Cursor::new(answer.to_vec()),
                sent: Vec::new(),
            };
            let result = smol::block_on(open_tunnel(&mut wire, &proxy, "gateway.discord.gg", 443));
            (result, wire.sent)
        };
        let (ok, wire) = run(b"HTTP/1.1 200 Connection established\r\n\r\n");
        assert!(ok.is_ok(), "{ok:?}");
        let sent = String::from_utf8(wire).unwrap();
        assert!(
            sent.starts_with("CONNECT gateway.discord.gg:443 HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(sent.contains(&format!(
            "Proxy-Authorization: Basic {}",
            base64_encode(b"u:secret")
        )));

        let (refused, _) =
            run(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno");
        let message = refused.unwrap_err().to_string();
        assert!(
            message.starts_with("proxy proxy.corp:3128 (from HTTPS_PROXY): CONNECT gateway.discord.gg:443 answered 407"),
            "{message}"
        );
        assert!(
            !message.contains("secret") && !message.contains(" u:"),
            "{message}"
        );

        let (closed, _) = run(b"");
        assert!(
            closed
                .unwrap_err()
                .to_string()
                .contains("without answering")
        );
        let (early, _) = run(b"HTTP/1.1 200 OK\r\n\r\nhello");
        assert!(
            early
                .unwrap_err()
                .to_string()
                .contains("before the client spoke")
        );
    }
}
