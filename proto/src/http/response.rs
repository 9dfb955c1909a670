//! Reading one response on the client side, from whatever chunks the socket yields.

use super::body::{BodyReader, Framing};
use super::head::{
    DeclaredBody, HeadBuffer, ParseOutcome, head_error, interpret, list_items, owned_fields,
};
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
pub struct ResponseReader {
    limits: Limits,
    head_request: bool,
    request_close: bool,
    interim_seen: bool,
    state: State,
}

#[derive(Debug)]
enum State {
    Head(HeadBuffer),
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        persistence: Persistence,
        body: BodyReader,
    },
    Finished,
    Failed(HttpError),
}

/// A parsed status line and header fields.
struct ResponseHead {
    minor_version: u8,
    status: u16,
    headers: Vec<(String, String)>,
}

impl ResponseReader {
    /// A reader for the response to a request with this method (`HEAD` responses have no body).
    pub fn new(method: &str, limits: Limits) -> ResponseReader {
        ResponseReader {
            limits,
            head_request: method == "HEAD",
            request_close: false,
            interim_seen: false,
            state: State::Head(HeadBuffer::default()),
        }
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
        let mut reader = ResponseReader::new(&request.method, limits);
        reader.request_close = request.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && list_items(value).any(|option| option.eq_ignore_ascii_case("close"))
        });
        reader
    }

    /// Feeds received bytes. Returns the response once it is complete, with the bytes after it in
    /// [`ReadResponse::leftover`]; `None` while more bytes are needed.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<ReadResponse>, HttpError> {
        let result = self.advance(input);
        match &result {
            Err(error) => self.state = State::Failed(error.clone()),
            Ok(Some(_)) => self.state = State::Finished,
            Ok(None) => {}
        }
        result
    }

    /// The connection reached end of stream. Completes a close-delimited body; otherwise says how
    /// the response was cut short. [`HttpError::ClosedBeforeResponse`] means not one byte of it
    /// arrived (the stale keep-alive case a driver may retry).
    pub fn eof(&mut self) -> Result<ReadResponse, HttpError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let result = match state {
            State::Head(buffer) if buffer.is_empty() && !self.interim_seen => {
                Err(HttpError::ClosedBeforeResponse)
            }
            State::Head(_) => Err(HttpError::ClosedInHead),
            State::Body {
                status,
                headers,
                persistence,
                mut body,
            } => body
                .eof()
                .map(|()| complete(status, headers, persistence, body, &[])),
            State::Finished => Err(HttpError::ReaderFinished),
            State::Failed(error) => Err(error),
        };
        if let Err(error) = &result {
            self.state = State::Failed(error.clone());
        }
        result
    }

    /// Bytes held right now (partial head, body so far); never more than the limits allow.
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Head(buffer) => buffer.len(),
            State::Body { body, .. } => body.buffered(),
            State::Finished | State::Failed(_) => 0,
        }
    }

    fn advance(&mut self, mut input: &[u8]) -> Result<Option<ReadResponse>, HttpError> {
        loop {
            match &mut self.state {
                State::Finished => return Err(HttpError::ReaderFinished),
                State::Failed(error) => return Err(error.clone()),
                State::Head(buffer) => {
                    let limits = self.limits;
                    let (used, head) =
                        buffer.advance(input, &limits, |bytes| parse_head(bytes, &limits))?;
                    input = input.get(used..).unwrap_or_default();
                    let Some(head) = head else {
                        return Ok(None);
                    };
                    self.state = self.after_head(head)?;
                }
                State::Body { body, .. } => {
                    let used = body.read(input)?;
                    input = input.get(used..).unwrap_or_default();
                    if !body.is_complete() {
                        return Ok(None);
                    }
                    let State::Body {
                        status,
                        headers,
                        persistence,
                        body,
                    } = std::mem::replace(&mut self.state, State::Finished)
                    else {
                        return Err(HttpError::ReaderFinished);
                    };
                    return Ok(Some(complete(status, headers, persistence, body, input)));
                }
            }
        }
    }

    /// Decides what follows a head: another head after an interim response, or the body.
    fn after_head(&mut self, head: ResponseHead) -> Result<State, HttpError> {
        match head.status {
            101 => return Err(HttpError::SwitchingProtocols),
            100..=199 => {
                self.interim_seen = true;
                return Ok(State::Head(HeadBuffer::default()));
            }
            _ => {}
        }
        let semantics = interpret(head.minor_version, &head.headers)?;
        let framing = if self.head_request || matches!(head.status, 204 | 304) {
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
        Ok(State::Body {
            status: head.status,
            headers: head.headers,
            persistence,
            body: BodyReader::new(framing, self.limits)?,
        })
    }
}

fn complete(
    status: u16,
    headers: Vec<(String, String)>,
    persistence: Persistence,
    body: BodyReader,
    leftover: &[u8],
) -> ReadResponse {
    let (body, trailers) = body.into_parts();
    ReadResponse {
        response: HttpResponse {
            status,
            headers,
            body: Bytes(body),
        },
        trailers,
        persistence,
        leftover: leftover.to_vec(),
    }
}

fn parse_head(bytes: &[u8], limits: &Limits) -> ParseOutcome<ResponseHead> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(head_error(error, limits)),
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
