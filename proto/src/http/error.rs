//! What can go wrong writing or reading a message, and whose fault it was.

use crate::url::UrlError;

/// Why a message could not be written or read.
///
/// Two families, as in h11, told apart by [`HttpError::side`]: [`Side::Local`] errors are the
/// caller's (a message that cannot be sent, a reader used after it finished) and mean a bug to fix;
/// [`Side::Remote`] errors are the peer's (a head or body this codec refuses, limits exceeded, a
/// message cut short) and are an answer to handle: refuse the request, close the connection, retry.
/// The variants stay in one flat enum so callers can match a specific fault directly. Messages
/// name headers but never print header values or URLs, so credentials stay out of logs.
///
/// ```
/// use openflume_proto::HttpRequest;
/// use openflume_proto::http::{encode_request, HttpError, Limits, ResponseReader};
///
/// // Local: a header the caller may not set, and a value that would inject a line.
/// let request = HttpRequest::new("GET", "https://api.github.com/").header("Host", "evil.example");
/// assert_eq!(encode_request(&request), Err(HttpError::ReservedHeader { name: "Host".into() }));
/// let request = HttpRequest::new("GET", "https://api.github.com/").header("Authorization", "token secret\r\n");
/// let error = encode_request(&request).unwrap_err();
/// assert_eq!(error.to_string(), r#"header "Authorization" has a value with control characters"#);
///
/// // Remote: framing the codec refuses. The reader is spent and repeats the error.
/// let mut reader = ResponseReader::new("GET", Limits::default());
/// let error = reader
///     .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")
///     .unwrap_err();
/// assert_eq!(error, HttpError::ContentLengthWithTransferEncoding);
/// assert_eq!(reader.feed(b"ok"), Err(error));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    // Local: the caller's misuse.
    /// The method is not an RFC 9110 token.
    #[error("the request method is not a valid token")]
    InvalidMethod,
    /// The URL did not parse.
    #[error("invalid request URL: {0}")]
    InvalidUrl(#[from] UrlError),
    /// The URL's host or path holds bytes that cannot go on the request line or in `Host`
    /// (spaces, controls, non-ASCII: percent-encode them).
    #[error("the request URL holds characters that must be percent-encoded")]
    InvalidTarget,
    /// Header number `index` (from 0, in the caller's list) has a name that is not a token.
    #[error("header #{index} has an invalid name")]
    InvalidHeaderName {
        /// Position in the caller's header list.
        index: usize,
    },
    /// The header's value holds CR, LF, NUL or another control character.
    #[error("header {name:?} has a value with control characters")]
    InvalidHeaderValue {
        /// Header name.
        name: String,
    },
    /// The caller set a header the codec writes itself (`Host`, `Content-Length`,
    /// `Transfer-Encoding`).
    #[error("header {name:?} is written by the codec and may not be set")]
    ReservedHeader {
        /// Header name.
        name: String,
    },
    /// A response status outside 100..=999.
    #[error("invalid status code {status}")]
    InvalidStatus {
        /// The status.
        status: u16,
    },
    /// The reason phrase holds control characters.
    #[error("the reason phrase has control characters")]
    InvalidReason,
    /// A 1xx, 204 or 304 response was given a body.
    #[error("a {status} response cannot have a body")]
    BodyNotAllowed {
        /// The status.
        status: u16,
    },
    /// The reader already returned a message or an end-of-stream result; make a new one.
    #[error("this reader has finished; create a new one for the next message")]
    ReaderFinished,

    // Remote: the peer's faults, in the order a message is read.
    /// The head did not end within [`Limits::max_head_bytes`](super::Limits::max_head_bytes).
    #[error("message head larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More than [`Limits::max_headers`](super::Limits::max_headers) header or trailer fields.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// The start line or a header field is not valid HTTP/1.x.
    #[error("malformed message head: {0}")]
    MalformedHead(#[source] httparse::Error),
    /// The server answered `101 Switching Protocols`, which this client never asks for.
    #[error("unexpected 101 Switching Protocols")]
    SwitchingProtocols,
    /// A `Content-Length` value that is not a decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several `Content-Length` values that differ.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: a request-smuggling hazard.
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// A transfer coding other than a single `chunked`.
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    UnsupportedTransferEncoding,
    /// An upgrade request that also declares a body.
    #[error("an upgrade request cannot have a body")]
    UpgradeWithBody,
    /// A length or chunk size that does not fit in 64 bits.
    #[error("size overflows 64 bits")]
    SizeOverflow,
    /// The body is larger than [`Limits::max_body_bytes`](super::Limits::max_body_bytes).
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A chunk-size line longer than [`Limits::max_chunk_line_bytes`](super::Limits::max_chunk_line_bytes).
    #[error("chunk-size line longer than {limit} bytes")]
    ChunkLineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A chunk-size line that is not hex digits with optional extensions.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// Chunk framing without its CRLF (after the size line or after the data).
    #[error("malformed chunk: missing CRLF")]
    MalformedChunk,
    /// The trailer section did not end within [`Limits::max_head_bytes`](super::Limits::max_head_bytes).
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The trailer section is not valid header fields.
    #[error("malformed trailer section")]
    MalformedTrailers,
    /// The connection closed before any byte of the response: a reused keep-alive connection the
    /// server had already dropped. Safe to retry once on a fresh connection for idempotent requests.
    #[error("connection closed before the response started")]
    ClosedBeforeResponse,
    /// The connection closed in the middle of the head.
    #[error("connection closed in the middle of the message head")]
    ClosedInHead,
    /// The connection closed before the body was complete.
    #[error("connection closed before the body was complete")]
    ClosedInBody,
}

/// Whose fault an [`HttpError`] is (h11's `LocalProtocolError` vs `RemoteProtocolError`).
///
/// ```
/// use openflume_proto::http::{HttpError, Side};
/// assert_eq!(HttpError::ReaderFinished.side(), Side::Local);
/// assert_eq!(HttpError::BodyTooLarge { limit: 10 }.side(), Side::Remote);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller misused the codec: fix the code, retrying cannot help.
    Local,
    /// The peer sent something the codec refuses, or stopped sending too soon.
    Remote,
}

impl HttpError {
    /// Whose fault this is. Every variant is listed, so a new one must pick its family.
    ///
    /// ```
    /// use openflume_proto::HttpRequest;
    /// use openflume_proto::http::{encode_request, Limits, ResponseReader, Side};
    ///
    /// let bad_header = HttpRequest::new("GET", "https://api.github.com/").header("Host", "x");
    /// assert_eq!(encode_request(&bad_header).unwrap_err().side(), Side::Local);
    ///
    /// let mut reader = ResponseReader::new("GET", Limits::default());
    /// assert_eq!(reader.feed(b"SSH-2.0\r\n").unwrap_err().side(), Side::Remote);
    /// ```
    pub fn side(&self) -> Side {
        use HttpError::*;
        match self {
            InvalidMethod
            | InvalidUrl(_)
            | InvalidTarget
            | InvalidHeaderName { .. }
            | InvalidHeaderValue { .. }
            | ReservedHeader { .. }
            | InvalidStatus { .. }
            | InvalidReason
            | BodyNotAllowed { .. }
            | ReaderFinished => Side::Local,
            HeadTooLarge { .. }
            | TooManyHeaders { .. }
            | MalformedHead(_)
            | SwitchingProtocols
            | InvalidContentLength
            | ConflictingContentLength
            | ContentLengthWithTransferEncoding
            | UnsupportedTransferEncoding
            | UpgradeWithBody
            | SizeOverflow
            | BodyTooLarge { .. }
            | ChunkLineTooLong { .. }
            | InvalidChunkSize
            | MalformedChunk
            | TrailersTooLarge { .. }
            | MalformedTrailers
            | ClosedBeforeResponse
            | ClosedInHead
            | ClosedInBody => Side::Remote,
        }
    }
}
