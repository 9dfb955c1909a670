//! Writing a client request.

use super::HttpError;
use super::field::{is_token, write_field, write_fields};
use crate::HttpRequest;
use crate::url::Url;

/// Methods whose requests carry a body by definition: send `Content-Length: 0` even when it is
/// empty, since some servers answer 411 Length Required otherwise.
const BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH"];

/// Writes `request` as HTTP/1.1 bytes.
///
/// The request line carries the URL's origin-form target; then come `Host`, the caller's headers
/// in order, `Content-Length` when there is a body (or the method expects one), and
/// `Connection: keep-alive` unless the caller set `Connection`. A method that is not a token, a
/// header name that is not a token, a value with control characters (CR, LF, NUL…), a
/// caller-set `Host`/`Content-Length`/`Transfer-Encoding`, or a URL that cannot be sent as is are
/// refused, so no caller data can inject lines. Errors never quote values or the URL.
///
/// ```
/// use openflume_proto::HttpRequest;
/// use openflume_proto::http::{encode_request, HttpError};
///
/// let request = HttpRequest::new("POST", "http://127.0.0.1:8080/api/chat.postMessage?x=1")
///     .header("Content-Type", "application/json")
///     .body(r#"{"ok":true}"#);
/// assert_eq!(
///     encode_request(&request)?,
///     b"POST /api/chat.postMessage?x=1 HTTP/1.1\r\n\
///       Host: 127.0.0.1:8080\r\n\
///       Content-Type: application/json\r\n\
///       Content-Length: 11\r\n\
///       Connection: keep-alive\r\n\
///       \r\n\
///       {\"ok\":true}"
/// );
///
/// let injected = HttpRequest::new("GET", "https://example.com/").header("X", "a\r\nEvil: 1");
/// assert_eq!(encode_request(&injected), Err(HttpError::InvalidHeaderValue { name: "X".into() }));
/// # Ok::<(), HttpError>(())
/// ```
pub fn encode_request(request: &HttpRequest) -> Result<Vec<u8>, HttpError> {
    if !is_token(&request.method) {
        return Err(HttpError::InvalidMethod);
    }
    let url = Url::parse(&request.url)?;
    let host = url.host_header();
    let sendable = |text: &str| text.bytes().all(|b| b.is_ascii_graphic());
    if !sendable(&url.target) || !sendable(&host) {
        return Err(HttpError::InvalidTarget);
    }
    let body = request.body.as_slice();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(request.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_field(&mut out, "Host", &host);
    write_fields(
        &mut out,
        request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        &["Host", "Content-Length", "Transfer-Encoding"],
    )?;
    if !body.is_empty() || BODY_METHODS.contains(&request.method.as_str()) {
        write_field(&mut out, "Content-Length", &body.len().to_string());
    }
    let caller_set_connection = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("connection"));
    if !caller_set_connection {
        write_field(&mut out, "Connection", "keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

/// Writes a `CONNECT` request for a tunnel to `host:port` through an HTTP proxy (RFC 9110
/// §9.3.6): the authority-form target, `Host` naming the same authority, then `headers` in order
/// (`Proxy-Authorization`, say). The same checks as [`encode_request`] apply, so no value can
/// inject a line; errors never quote values. An IPv6 `host` is bracketed.
///
/// ```
/// use openflume_proto::http::{encode_connect, HttpError};
/// assert_eq!(
///     encode_connect("gateway.discord.gg", 443, &[("Proxy-Authorization", "Basic dTpw")])?,
///     b"CONNECT gateway.discord.gg:443 HTTP/1.1\r\n\
///       Host: gateway.discord.gg:443\r\n\
///       Proxy-Authorization: Basic dTpw\r\n\
///       \r\n"
/// );
/// assert_eq!(encode_connect("::1", 8080, &[])?.split(|b| *b == b'\r').next(), Some(&b"CONNECT [::1]:8080 HTTP/1.1"[..]));
/// assert_eq!(encode_connect("a b", 1, &[]), Err(HttpError::InvalidTarget));
/// # Ok::<(), HttpError>(())
/// ```
pub fn encode_connect(
    host: &str,
    port: u16,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>, HttpError> {
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if host.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::InvalidTarget);
    }
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_field(&mut out, "Host", &authority);
    write_fields(
        &mut out,
        headers.iter().copied(),
        &["Host", "Content-Length", "Transfer-Encoding"],
    )?;
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Side;
    use crate::url::UrlError;

    #[test]
    fn writes_requests() {
        let cases: &[(HttpRequest, &[u8])] = &[
            (
                HttpRequest::new("GET", "https://api.github.com/notifications?all=true")
                    .header("Authorization", "Bearer t")
                    .header("If-Modified-Since", "Thu, 01 Jan 2026 00:00:00 GMT"),
                b"GET /notifications?all=true HTTP/1.1\r\nHost: api.github.com\r\n\
                  Authorization: Bearer t\r\nIf-Modified-Since: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
                  Connection: keep-alive\r\n\r\n",
            ),
            (
                HttpRequest::new("POST", "https://slack.com/api/apps.connections.open"),
                b"POST /api/apps.connections.open HTTP/1.1\r\nHost: slack.com\r\n\
                  Content-Length: 0\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                HttpRequest::new("DELETE", "http://[::1]:8080").header("connection", "close"),
                b"DELETE / HTTP/1.1\r\nHost: [::1]:8080\r\nconnection: close\r\n\r\n",
            ),
            (
                HttpRequest::new("GET", "http://h/x").body("abc"),
                b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
            ),
            (
                HttpRequest::new("PUT", "http://h/x").body(vec![0u8, 255]),
                b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n\x00\xff",
            ),
        ];
        for (request, expected) in cases {
            let got = encode_request(request).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(expected),
                "{request:?}"
            );
        }
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        let get = |url: &str| HttpRequest::new("GET", url);
        let ok = "https://example.com/";
        let cases: Vec<(HttpRequest, HttpError)> = vec![
            (HttpRequest::new("GE T", ok), HttpError::InvalidMethod),
            (HttpRequest::new("", ok), HttpError::InvalidMethod),
            (HttpRequest::new("GET\r\n", ok), HttpError::InvalidMethod),
            (
                get("example.com/"),
                HttpError::InvalidUrl(UrlError::NotAbsolute),
            ),
            (get("https://example.com/a b"), HttpError::InvalidTarget),
            (
                get("https://example.com/caf\u{e9}"),
                HttpError::InvalidTarget,
            ),
            (get("https://example.com/a\0b"), HttpError::InvalidTarget),
            (get("https://exa\0mple.com/"), HttpError::InvalidTarget),
            (
                get(ok).header("Bad Name", "v"),
                HttpError::InvalidHeaderName { index: 0 },
            ),
            (
                get(ok).header("A", "1").header("", "v"),
                HttpError::InvalidHeaderName { index: 1 },
            ),
            (
                get(ok).header("X:Y", "v"),
                HttpError::InvalidHeaderName { index: 0 },
            ),
            (
                get(ok).header("X", "a\nb"),
                HttpError::InvalidHeaderValue { name: "X".into() },
            ),
            (
                get(ok).header("X", "a\rb"),
                HttpError::InvalidHeaderValue { name: "X".into() },
            ),
            (
                get(ok).header("X", "a\0b"),
                HttpError::InvalidHeaderValue { name: "X".into() },
            ),
            (
                get(ok).header("host", "evil"),
                HttpError::ReservedHeader {
                    name: "host".into(),
                },
            ),
            (
                get(ok).header("Content-Length", "1"),
                HttpError::ReservedHeader {
                    name: "Content-Length".into(),
                },
            ),
            (
                get(ok).header("Transfer-Encoding", "chunked"),
                HttpError::ReservedHeader {
                    name: "Transfer-Encoding".into(),
                },
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(expected.side(), Side::Local, "{expected:?}");
            assert_eq!(encode_request(&request), Err(expected), "{request:?}");
        }
    }

    #[test]
    fn errors_do_not_quote_secrets() {
        let request = HttpRequest::new("GET", "https://example.com/?token=s3cr3t-value")
            .header("Authorization", "Bot s3cr3t-value\r\n");
        let error = encode_request(&request).unwrap_err();
        assert!(!error.to_string().contains("s3cr3t"));
        assert!(!format!("{error:?}").contains("s3cr3t"));
    }
}
