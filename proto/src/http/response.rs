//! Reading one response on the client side, from whatever chunks the socket yields.

use super::body::Framing;
use super::head::{DeclaredBody, ParseOutcome, head_len, interpret, list_items, owned_fields};
use super::reader::{AfterHead, Body, Reader, Role};
use super::{HttpError, Limits, Persistence};
use crate::{Bytes, HttpRequest, HttpResponse};

/// A complete response, as returned by [`ResponseReader::feed`] or [`ResponseReader::eof`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResponse {
    /// Status, header fields in order, de-chunked body.
    pub response: HttpResponse,
    /// Trailer fields of a chunked body, in order (usually none).
    pub trailers: Vec<(String, String)>,
    /// Whether the connection may carry the next request.
    pub persistence: Persistence,
    /// Bytes received after this response: the start of the next one on a reused connection.
    pub leftover: Vec<u8>,
}

/// Reads the response to one request, incrementally.
///
/// Feed every chunk the socket yields to [`feed`](Self::feed) until it returns a response; when the
/// socket reports end of stream first, call [`eof`](Self::eof), which completes a close-delimited
/// body and otherwise says how the response was cut short. Interim 1xx responses are skipped;
/// responses to `HEAD` and 204/304 responses have no body whatever their headers say. After a
/// result or an error the reader is spent: later calls return [`HttpError::ReaderFinished`] or the
/// same error again.
///
/// The result is the same however the bytes are split across calls.
///
/// ```
/// use openflume_proto::http::{HttpError, Limits, Persistence, ResponseReader};
///
/// let mut reader = ResponseReader::new("GET", Limits::default());
/// let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
/// let mut done = None;
/// for byte in wire.chunks(1) {
///     done = reader.feed(byte)?;
/// }
/// let done = done.expect("complete");
/// assert_eq!(done.response.status, 200);
/// assert_eq!(done.response.body.as_slice(), b"hello");
///
/// // A reused connection that the server had already closed.
/// let mut reader = ResponseReader::new("GET", Limits::default());
/// assert_eq!(reader.eof(), Err(HttpError::ClosedBeforeResponse));
/// # Ok::<(), HttpError>(())
/// ```
#[derive(Debug)]
pub struct ResponseReader(Reader<Client>);

/// The client's rules: which responses have a body, and when the connection is kept.
#[derive(Debug)]
struct Client {
    head_request: bool,
    /// A 2xx answer to `CONNECT` ends with its head: the tunnel starts right after it
    /// (RFC 9110 §9.3.6), so the bytes that follow are [`ReadResponse::leftover`].
    connect_request: bool,
    request_close: bool,
}

/// A parsed status line and header fields.
#[derive(Debug)]
struct ResponseHead {
    minor_version: u8,
    status: u16,
    headers: Vec<(String, String)>,
}

impl ResponseReader {
    /// A reader for the response to a request with this method (`HEAD` responses have no body,
    /// nor do 2xx answers to `CONNECT`: the tunnel's bytes follow the head, in `leftover`).
    ///
    /// ```
    /// use openflume_proto::http::{Limits, ResponseReader};
    /// let mut reader = ResponseReader::new("CONNECT", Limits::default());
    /// let done = reader.feed(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03")?.expect("head");
    /// assert_eq!(done.response.status, 200);
    /// assert!(done.response.body.is_empty());
    /// assert_eq!(done.leftover, b"\x16\x03"); // the first tunnelled bytes
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn new(method: &str, limits: Limits) -> ResponseReader {
        let client = Client {
            head_request: method == "HEAD",
            connect_request: method == "CONNECT",
            request_close: false,
        };
        ResponseReader(Reader::new(client, limits))
    }

    /// A reader for the response to `request`: takes its method, and marks the connection for
    /// closing when the request itself carried `Connection: close`.
    ///
    /// ```
    /// use openflume_proto::HttpRequest;
    /// use openflume_proto::http::{Limits, Persistence, ResponseReader};
    /// let request = HttpRequest::new("GET", "http://127.0.0.1:8080/").header("Connection", "close");
    /// let mut reader = ResponseReader::for_request(&request, Limits::default());
    /// let done = reader.feed(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
    /// assert_eq!(done.persistence, Persistence::Close);
    /// ```
    pub fn for_request(request: &HttpRequest, limits: Limits) -> ResponseReader {
        let client = Client {
            head_request: request.method == "HEAD",
            connect_request: request.method == "CONNECT",
            request_close: request.headers.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case("connection")
                    && list_items(value).any(|option| option.eq_ignore_ascii_case("close"))
            }),
        };
        ResponseReader(Reader::new(client, limits))
    }

    /// Feeds received bytes. Returns the response once it is complete, with the bytes after it in
    /// [`ReadResponse::leftover`]; `None` while more bytes are needed.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, ResponseReader};
    /// let mut reader = ResponseReader::new("GET", Limits::default());
    /// assert!(reader.feed(b"HTTP/1.1 204 No")?.is_none());
    /// assert!(reader.feed(b" Content\r\n\r\n")?.is_some());
    /// # Ok::<(), openflume_proto::http::HttpError>(())
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<ReadResponse>, HttpError> {
        self.0.feed(input)
    }

    /// The connection reached end of stream. Completes a close-delimited body; otherwise says how
    /// the response was cut short. [`HttpError::ClosedBeforeResponse`] means not one byte of it
    /// arrived (the stale keep-alive case a driver may retry).
    ///
    /// ```
    /// use openflume_proto::http::{HttpError, Limits, ResponseReader};
    /// let mut reader = ResponseReader::new("GET", Limits::default());
    /// reader.feed(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
    /// assert_eq!(reader.eof()?.response.body.as_slice(), b"until close");
    /// # Ok::<(), HttpError>(())
    /// ```
    pub fn eof(&mut self) -> Result<ReadResponse, HttpError> {
        self.0.eof()?.ok_or(HttpError::ClosedBeforeResponse)
    }

    /// Bytes held right now (partial head, body so far); never more than the limits allow.
    ///
    /// ```
    /// use openflume_proto::http::{Limits, ResponseReader};
    /// let mut reader = ResponseReader::new("GET", Limits::default());
    /// reader.feed(b"HTTP/1.1 2").unwrap();
    /// assert_eq!(reader.buffered_bytes(), 10);
    /// ```
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffered_bytes()
    }
}

impl Role for Client {
    type Head = ResponseHead;
    type Message = ReadResponse;

    fn parse_head(bytes: &[u8], limits: &Limits) -> ParseOutcome<ResponseHead> {
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut response = httparse::Response::new(&mut slots);
        let Some(len) = head_len(response.parse(bytes), limits)? else {
            return Ok(None);
        };
        let (Some(minor_version), Some(status @ 100..)) = (response.version, response.code) else {
            return Err(HttpError::MalformedHead(httparse::Error::Status));
        };
        let head = ResponseHead {
            minor_version,
            status,
            headers: owned_fields(response.headers),
        };
        Ok(Some((len, head)))
    }

    /// Interim responses are skipped; `HEAD` responses, 2xx answers to `CONNECT` and 204/304
    /// have no body whatever their headers say; a body without framing headers runs until the connection closes.
    fn after_head(&self, head: ResponseHead) -> Result<AfterHead<ResponseHead>, HttpError> {
        match head.status {
            101 => return Err(HttpError::SwitchingProtocols),
            100..=199 => return Ok(AfterHead::Interim),
            _ => {}
        }
        let semantics = interpret(head.minor_version, &head.headers)?;
        let tunnel = self.connect_request && (200..300).contains(&head.status);
        let framing = if self.head_request || tunnel || matches!(head.status, 204 | 304) {
            Framing::Length(0)
        } else {
            match semantics.body {
                DeclaredBody::Length(length) => Framing::Length(length),
                DeclaredBody::Chunked => Framing::Chunked,
                DeclaredBody::Unspecified => Framing::UntilClose,
            }
        };
        let persistence = if self.request_close || framing == Framing::UntilClose {
            Persistence::Close
        } else {
            semantics.persistence
        };
        Ok(AfterHead::Body {
            head,
            persistence,
            framing,
        })
    }

    fn complete(
        head: ResponseHead,
        persistence: Persistence,
        (body, trailers): Body,
        leftover: &[u8],
    ) -> ReadResponse {
        ReadResponse {
            response: HttpResponse {
                status: head.status,
                headers: head.headers,
                body: Bytes(body),
            },
            trailers,
            persistence,
            leftover: leftover.to_vec(),
        }
    }
}
