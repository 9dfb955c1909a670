//! The server side, for the local simulators of Discord, Slack and GitHub: reading requests
//! (including WebSocket upgrade requests on the same port) and writing responses.

use super::body::Framing;
use super::field::{is_field_value, write_field, write_fields};
use super::head::{DeclaredBody, ParseOutcome, head_len, interpret, owned_fields};
use super::reader::{AfterHead, Body, Reader, Role};
use super::{HttpError, Limits, Persistence};
use crate::Bytes;

/// A request as a server received it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceivedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent, usually origin-form (`/api/v10/gateway?x=1`).
    pub target: String,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, String)>,
    /// The whole body, de-chunked.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The first header with this name, compared case-insensitively.
    ///
    /// ```
    /// use openflume_proto::http::ReceivedRequest;
    /// let request = ReceivedRequest {
    ///     method: "GET".into(),
    ///     target: "/".into(),
    ///     headers: vec![("authorization".into(), "Bot t".into())],
    ///     body: Default::default(),
    /// };
    /// assert_eq!(request.header("Authorization"), Some("Bot t"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A complete request, as returned by [`RequestReader::feed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The request.
    pub request: ReceivedRequest,
    /// Trailer fields of a chunked body, in order (usually none).
    pub trailers: Vec<(String, String)>,
    /// Whether the connection may carry another request after the response.
    pub persistence: Persistence,
    /// The `Upgrade` value (`websocket`) when the request asks to switch protocols
    /// (`Connection: upgrade` and `Upgrade`, HTTP/1.1). Such a request is returned as soon as its
    /// head is in, and `leftover` holds the first bytes of the new protocol. A server that declines
    /// answers normally and goes on reading requests from `leftover` per `persistence`.
    pub upgrade: Option<String>,
    /// Bytes received after this request: the next request, or the upgraded protocol's bytes.
    pub leftover: Vec<u8>,
}

/// Reads one request, incrementally.
///
/// Feed every chunk read from the socket until [`feed`](Self::feed) returns the request; then
/// answer, and for the next request on a kept-alive connection start a new reader with the
/// leftover bytes. Requests without `Content-Length` or `Transfer-Encoding` have no body. The
/// result is the same however the bytes are split. `Expect: 100-continue` gets no interim answer:
/// the caller can send one if it cares (openflume's client never asks).
///
/// ```
/// use openflume_proto::http::{Limits, RequestReader};
///
/// let mut reader = RequestReader::new(Limits::default());
/// let wire = b"GET /?v=10 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
/// let done = reader.feed(wire)?.expect("complete");
/// assert_eq!(done.request.target, "/?v=10");
/// assert_eq!(done.upgrade.as_deref(), Some("websocket"));
/// assert_eq!(done.leftover, b"\x81\x05hello");
/// # Ok::<(), openflume_proto::http::HttpError>(())
/// ```
#[derive(Debug)]
pub struct RequestReader(Reader<Server>);

/// A request head as read, before its body: see [`RequestReader::head`].
#[derive(Clone, Copy, Debug)]
pub struct RequestHeadView<'a>(&'a RequestHead);

impl<'a> RequestHeadView<'a> {
    /// `GET`, `POST`, …
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed_head(b"DELETE /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n")?;
    /// assert_eq!(reader.head().unwrap().method(), "DELETE");
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn method(&self) -> &'a str {
        &self.0.method
    }

    /// The request target as sent.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed_head(b"POST /a?b=1 HTTP/1.1\r\nContent-Length: 1\r\n\r\n")?;
    /// assert_eq!(reader.head().unwrap().target(), "/a?b=1");
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn target(&self) -> &'a str {
        &self.0.target
    }

    /// The first header with this name, compared case-insensitively.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed_head(b"POST / HTTP/1.1\r\nX-Id: 7\r\nContent-Length: 1\r\n\r\n")?;
    /// assert_eq!(reader.head().unwrap().header("x-id"), Some("7"));
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.0
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The server's rules: no framing headers means no body, and an upgrade request ends at its head.
#[derive(Debug)]
struct Server;

/// A parsed request line and header fields.
#[derive(Debug)]
struct RequestHead {
    minor_version: u8,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    /// The `Upgrade` value, once the head is known to ask for one.
    upgrade: Option<String>,
}

impl RequestReader {
    /// A reader for one request.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let reader = RequestReader::new(Limits::default());
    /// assert_eq!(reader.buffered_bytes(), 0);
    /// ```
    pub fn new(limits: Limits) -> RequestReader {
        RequestReader(Reader::new(Server, limits))
    }

    /// Feeds received bytes. Returns the request once it is complete (an upgrade request once its
    /// head is), with the bytes after it in [`ReadRequest::leftover`]; `None` while more are needed.
    /// After a result or an error the reader is spent.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// assert!(reader.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n")?.is_none());
    /// let done = reader.feed(b"{}")?.expect("complete");
    /// assert_eq!(done.request.body.as_slice(), b"{}");
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<ReadRequest>, HttpError> {
        self.0.feed(input)
    }

    /// Feeds received bytes up to the end of the request head and no further, and returns how
    /// many were used. Once the head is in, [`head`](Self::head) shows it with the body still
    /// unread, so a server can refuse the request (unknown path, wrong method, a body too large
    /// for this target: [`limit_body`](Self::limit_body)) before reading a byte of the body;
    /// [`feed`](Self::feed) then reads on from the bytes not used.
    ///
    /// ```
    /// use openflume_proto::http::{HttpError, Limits, RequestReader};
    /// let wire = b"POST /hook HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{\"a\":";
    /// let mut reader = RequestReader::new(Limits::default());
    /// let used = reader.feed_head(wire)?;
    /// assert_eq!(&wire[used..], b"{\"a\":");
    /// assert_eq!(reader.head().map(|h| h.target()), Some("/hook"));
    /// assert_eq!(reader.limit_body(1024), Err(HttpError::BodyTooLarge { limit: 1024 }));
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn feed_head(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        self.0.feed_head(input)
    }

    /// The head of the request being read, once it is in and until the request is returned.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed_head(b"PUT /x HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n")?;
    /// let head = reader.head().expect("head is in");
    /// assert_eq!((head.method(), head.header("content-type")), ("PUT", Some("text/plain")));
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn head(&self) -> Option<RequestHeadView<'_>> {
        self.0.head().map(RequestHeadView)
    }

    /// Lowers the body limit of the request being read (a target that takes less than the
    /// reader's [`Limits`]). Fails at once when the declared length, or the body read so far, is
    /// over it; later bytes are held to it.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    /// reader.feed_head(wire)?;
    /// reader.limit_body(3)?;
    /// assert!(reader.feed(b"4\r\nabcd\r\n0\r\n\r\n").is_err());
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn limit_body(&mut self, max_body_bytes: usize) -> Result<(), HttpError> {
        self.0.limit_body(max_body_bytes)
    }

    /// The client closed the connection. `Ok` when that happened between requests (nothing but
    /// blank lines received), an error when it cut a request short.
    ///
    /// ```
    /// use openflume_proto::http::{HttpError, Limits, RequestReader};
    /// assert_eq!(RequestReader::new(Limits::default()).eof(), Ok(()));
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed(b"GET / HT").unwrap();
    /// assert_eq!(reader.eof(), Err(HttpError::ClosedInHead));
    /// ```
    pub fn eof(&mut self) -> Result<(), HttpError> {
        // Requests are never close-delimited, so end of stream never completes one.
        self.0.eof().map(drop)
    }

    /// Bytes held right now (partial head, body so far); never more than the limits allow.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, RequestReader};
    /// let mut reader = RequestReader::new(Limits::default());
    /// reader.feed(b"GET / HT").unwrap();
    /// assert_eq!(reader.buffered_bytes(), 8);
    /// ```
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffered_bytes()
    }
}

impl Role for Server {
    type Head = RequestHead;
    type Message = ReadRequest;

    fn parse_head(bytes: &[u8], limits: &Limits) -> ParseOutcome<RequestHead> {
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut request = httparse::Request::new(&mut slots);
        let Some(len) = head_len(request.parse(bytes), limits)? else {
            return Ok(None);
        };
        let (Some(method), Some(target), Some(minor_version)) =
            (request.method, request.path, request.version)
        else {
            return Err(HttpError::MalformedHead(httparse::Error::Token));
        };
        let head = RequestHead {
            minor_version,
            method: method.to_owned(),
            target: target.to_owned(),
            headers: owned_fields(request.headers),
            upgrade: None,
        };
        Ok(Some((len, head)))
    }

    /// An upgrade request is whole once its head is in: what follows belongs to the new protocol.
    fn after_head(&self, mut head: RequestHead) -> Result<AfterHead<RequestHead>, HttpError> {
        let semantics = interpret(head.minor_version, &head.headers)?;
        let framing = match semantics.body {
            DeclaredBody::Length(0) | DeclaredBody::Unspecified => Framing::Length(0),
            _ if semantics.upgrade => return Err(HttpError::UpgradeWithBody),
            DeclaredBody::Length(length) => Framing::Length(length),
            DeclaredBody::Chunked => Framing::Chunked,
        };
        if semantics.upgrade {
            head.upgrade = head
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("upgrade"))
                .map(|(_, value)| value.clone());
        }
        Ok(AfterHead::Body {
            head,
            persistence: semantics.persistence,
            framing,
        })
    }

    fn complete(
        head: RequestHead,
        persistence: Persistence,
        (body, trailers): Body,
        leftover: &[u8],
    ) -> ReadRequest {
        ReadRequest {
            request: ReceivedRequest {
                method: head.method,
                target: head.target,
                headers: head.headers,
                body: Bytes(body),
            },
            trailers,
            persistence,
            upgrade: head.upgrade,
            leftover: leftover.to_vec(),
        }
    }
}

/// Writes a response with `Content-Length` (none for 1xx, 204 and 304, which cannot have a body).
///
/// `headers` must not contain `Content-Length` or `Transfer-Encoding`; names and values are checked
/// like the client's, so a simulator cannot emit a malformed response by accident.
///
/// ```
/// use openflume_proto::http::encode_response;
/// let bytes = encode_response(200, "OK", &[("Content-Type", "application/json")], b"{}")?;
/// assert_eq!(bytes, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
/// let switch = encode_response(101, "Switching Protocols", &[("Upgrade", "websocket"), ("Connection", "Upgrade")], b"")?;
/// assert!(!switch.windows(14).any(|w| w == b"Content-Length"));
/// # Ok::<(), openflume_proto::http::HttpError>(())
/// ```
pub fn encode_response(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<u8>, HttpError> {
    if !(100..=999).contains(&status) {
        return Err(HttpError::InvalidStatus { status });
    }
    if !is_field_value(reason) {
        return Err(HttpError::InvalidReason);
    }
    let bodiless = matches!(status, 100..=199 | 204 | 304);
    if bodiless && !body.is_empty() {
        return Err(HttpError::BodyNotAllowed { status });
    }
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    write_fields(
        &mut out,
        headers.iter().copied(),
        &["Content-Length", "Transfer-Encoding"],
    )?;
    if !bodiless {
        write_field(&mut out, "Content-Length", &body.len().to_string());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}
