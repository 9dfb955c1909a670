//! # HTTP/1.1, sans-IO
//!
//! Every call to Discord's, Slack's and GitHub's REST APIs, and the local simulators that stand in
//! for them, speak HTTP/1.1. This codec turns messages into bytes and bytes back into messages and
//! never touches a socket, so the smol driver owns the IO and the tests can feed any byte stream,
//! split anywhere, and check the result is the same.
//!
//! Client side:
//! - [`encode_request`] writes an [`HttpRequest`](crate::HttpRequest) (absolute URL) as bytes.
//! - [`ResponseReader`] takes whatever byte chunks the socket yields and returns the complete
//!   [`HttpResponse`](crate::HttpResponse) (de-chunked body), whether the connection may carry
//!   another request ([`Persistence`]), and the bytes that already belong to the next response.
//!
//! Server side (the simulators):
//! - [`RequestReader`] parses requests the same way, and hands over a WebSocket upgrade request as
//!   soon as its head is in, with the bytes that follow it.
//! - [`encode_response`] writes a response with `Content-Length`.
//!
//! Both readers share one head collector (httparse for the syntax), one interpretation of the
//! framing headers, and one body decoder (Content-Length, chunked, close-delimited), so a rule
//! changes in one place. Every buffer is bounded by [`Limits`]; whatever the peer sends ends as a
//! typed [`HttpError`], never a panic.
//!
//! ```
//! use openflume_proto::HttpRequest;
//! use openflume_proto::http::{encode_request, Limits, Persistence, ResponseReader};
//!
//! let request = HttpRequest::new("GET", "https://api.github.com/notifications");
//! let bytes = encode_request(&request)?;
//! assert!(bytes.starts_with(b"GET /notifications HTTP/1.1\r\nHost: api.github.com\r\n"));
//!
//! // The driver writes `bytes`, then feeds whatever the socket returns.
//! let mut reader = ResponseReader::for_request(&request, Limits::default());
//! assert!(reader.feed(b"HTTP/1.1 200 OK\r\nContent-Le")?.is_none());
//! let done = reader.feed(b"ngth: 2\r\n\r\n[]HTTP/1.1")?.expect("complete");
//! assert_eq!(done.response.status, 200);
//! assert_eq!(done.response.body.as_slice(), b"[]");
//! assert_eq!(done.persistence, Persistence::KeepAlive);
//! assert_eq!(done.leftover, b"HTTP/1.1"); // the start of the next response
//! # Ok::<(), openflume_proto::http::HttpError>(())
//! ```

mod body;
mod field;
mod head;
mod reader;
mod request;
mod response;
mod server;

pub use request::encode_request;
pub use response::{ReadResponse, ResponseReader};
pub use server::{ReadRequest, ReceivedRequest, RequestReader, encode_response};

use crate::url::UrlError;
use serde::{Deserialize, Serialize};

/// Bounds on what a reader buffers, so no peer can make it grow without end.
///
/// ```
/// use openflume_proto::http::Limits;
/// let limits = Limits { max_body_bytes: 1 << 20, ..Limits::default() };
/// assert_eq!(limits.max_head_bytes, 64 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Longest head (start line and header fields, blank line included), and longest trailer
    /// section. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in a head or trailer section. Default 100.
    pub max_headers: usize,
    /// Largest decoded body. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Longest chunk-size line, extensions and CRLF included. Default 4 KiB.
    pub max_chunk_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 16 * 1024 * 1024,
            max_chunk_line_bytes: 4 * 1024,
        }
    }
}

/// Whether the connection may carry another message after this one (RFC 9112 §9.3).
///
/// ```
/// use openflume_proto::http::{Limits, Persistence, ResponseReader};
///
/// let persistence = |wire: &[u8]| {
///     let mut reader = ResponseReader::new("GET", Limits::default());
///     reader.feed(wire).unwrap().expect("complete").persistence
/// };
/// // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
/// assert_eq!(persistence(b"HTTP/1.1 204 No Content\r\n\r\n"), Persistence::KeepAlive);
/// assert_eq!(persistence(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"), Persistence::Close);
/// assert_eq!(persistence(b"HTTP/1.0 204 No Content\r\n\r\n"), Persistence::Close);
/// assert_eq!(
///     persistence(b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n"),
///     Persistence::KeepAlive
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// Reuse it: the next message starts with the leftover bytes.
    KeepAlive,
    /// Close it after this message.
    Close,
}

impl Persistence {
    /// True for [`Persistence::KeepAlive`].
    ///
    /// ```
    /// use openflume_proto::http::Persistence;
    /// assert!(Persistence::KeepAlive.is_keep_alive());
    /// assert!(!Persistence::Close.is_keep_alive());
    /// ```
    pub fn is_keep_alive(self) -> bool {
        self == Persistence::KeepAlive
    }
}

/// Why a message could not be written or read.
///
/// The first group are local: the caller asked for something that cannot be sent, or used a reader
/// after it finished. The rest are remote: the peer sent something this codec refuses. Messages
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

    /// The head did not end within [`Limits::max_head_bytes`].
    #[error("message head larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More than [`Limits::max_headers`] header or trailer fields.
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
    /// The body is larger than [`Limits::max_body_bytes`].
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A chunk-size line longer than [`Limits::max_chunk_line_bytes`].
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
    /// The trailer section did not end within [`Limits::max_head_bytes`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_deserialize_with_defaults() {
        let limits: Limits = serde_json::from_str(r#"{"max_body_bytes": 10}"#).unwrap();
        assert_eq!(
            limits,
            Limits {
                max_body_bytes: 10,
                ..Limits::default()
            }
        );
    }
}
