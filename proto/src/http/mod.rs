//! # HTTP/1.1, sans-IO
//!
//! Every call to Discord's, Slack's and GitHub's REST APIs, and the local simulators that stand in
//! for them, speak HTTP/1.1. This codec turns messages into bytes and bytes back into messages and
//! never touches a socket, so the smol driver owns the IO and the tests can feed any byte stream,
//! split anywhere, and check the result is the same.
//!
//! Client side:
//! - [`encode_request`] writes an [`HttpRequest`](crate::HttpRequest) (absolute URL) as bytes.
//! - [`encode_connect`] writes the `CONNECT` that opens a tunnel through an HTTP proxy.
//! - [`ResponseReader`] takes whatever byte chunks the socket yields and returns the complete
//!   [`HttpResponse`](crate::HttpResponse) (de-chunked body), whether the connection may carry
//!   another request ([`Persistence`]), and the bytes that already belong to the next response.
//!
//! Server side (the simulators):
//! - [`RequestReader`] parses requests the same way, and hands over a WebSocket upgrade request as
//!   soon as its head is in, with the bytes that follow it.
//! - [`encode_response`] writes a response with `Content-Length`.
//!
//! Both readers are one state machine (head, then body, then leftover) generic over the role,
//! which only says how its start line parses and which body rules apply, as h11's tables keyed by
//! role do. They share one head collector (httparse for the syntax), one interpretation of the
//! framing headers, and one body decoder (Content-Length, chunked, close-delimited), so a rule
//! changes in one place. Every buffer is bounded by [`Limits`]; whatever the peer sends ends as a
//! typed [`HttpError`] of the remote family ([`Side::Remote`]), never a panic, while misuse by the
//! caller is of the local family ([`Side::Local`]).
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
mod error;
mod field;
mod head;
mod reader;
mod request;
mod response;
mod server;

pub use error::{HttpError, Side};
pub use request::{encode_connect, encode_request};
pub use response::{ReadResponse, ResponseReader};
pub use server::{ReadRequest, ReceivedRequest, RequestHeadView, RequestReader, encode_response};

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
