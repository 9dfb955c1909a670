//! The HTTP/1.1 codec against tables of byte streams. Every stream is read whole, split at every
//! byte boundary into two chunks, and one byte at a time (h11's trick): all readings must agree,
//! and the whole reading must match the expectation.

use Persistence::{Close, KeepAlive};
use openflume_proto::HttpRequest;
use openflume_proto::http::{
    HttpError, Limits, Persistence, ReadRequest, ReadResponse, RequestReader, ResponseReader, Side,
    encode_request, encode_response,
};

/// Every way the stream is cut for the readers: whole, each two-chunk split, byte by byte, and
/// with an empty chunk in front.
fn chunkings(wire: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut out = vec![vec![wire], wire.chunks(1).collect(), vec![&b""[..], wire]];
    for at in 0..=wire.len() {
        let (a, b) = wire.split_at(at);
        out.push(vec![a, b]);
    }
    out
}

/// Feeds the chunks; at end of input reports end of stream. Bytes of chunks after the one that
/// completed the response are appended to its leftover, so every chunking yields the same value.
fn read_response(
    method: &str,
    limits: Limits,
    chunks: &[&[u8]],
) -> Result<ReadResponse, HttpError> {
    let mut reader = ResponseReader::new(method, limits);
    for (i, chunk) in chunks.iter().enumerate() {
        let outcome = reader.feed(chunk);
        assert_bounded(reader.buffered_bytes(), &limits);
        if let Some(mut done) = remote(outcome)? {
            for rest in &chunks[i + 1..] {
                done.leftover.extend_from_slice(rest);
            }
            return Ok(done);
        }
    }
    remote(reader.eof())
}

/// Like [`read_response`]; `Ok(None)` is a clean close before any request.
fn read_request(limits: Limits, chunks: &[&[u8]]) -> Result<Option<ReadRequest>, HttpError> {
    let mut reader = RequestReader::new(limits);
    for (i, chunk) in chunks.iter().enumerate() {
        let outcome = reader.feed(chunk);
        assert_bounded(reader.buffered_bytes(), &limits);
        if let Some(mut done) = remote(outcome)? {
            for rest in &chunks[i + 1..] {
                done.leftover.extend_from_slice(rest);
            }
            return Ok(Some(done));
        }
    }
    remote(reader.eof()).map(|()| None)
}

/// A reader used as intended can only fail through the peer's fault.
fn remote<T>(result: Result<T, HttpError>) -> Result<T, HttpError> {
    if let Err(error) = &result {
        assert_eq!(error.side(), Side::Remote, "{error:?}");
    }
    result
}

fn assert_bounded(buffered: usize, limits: &Limits) {
    let bound = limits
        .max_head_bytes
        .max(limits.max_body_bytes + limits.max_head_bytes.max(limits.max_chunk_line_bytes));
    assert!(
        buffered <= bound,
        "{buffered} bytes buffered, bound {bound}"
    );
}

fn response_all_ways(method: &str, limits: Limits, wire: &[u8]) -> Result<ReadResponse, HttpError> {
    let whole = read_response(method, limits, &[wire]);
    for chunks in chunkings(wire) {
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(
            read_response(method, limits, &chunks),
            whole,
            "{method} {:?} split as {lens:?}",
            String::from_utf8_lossy(wire)
        );
    }
    whole
}

fn request_all_ways(limits: Limits, wire: &[u8]) -> Result<Option<ReadRequest>, HttpError> {
    let whole = read_request(limits, &[wire]);
    for chunks in chunkings(wire) {
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(
            read_request(limits, &chunks),
            whole,
            "{:?} split as {lens:?}",
            String::from_utf8_lossy(wire)
        );
    }
    whole
}

/// What a response case should give: status, body, persistence, leftover, trailer count.
type Expected = Result<(u16, &'static [u8], Persistence, &'static [u8], usize), HttpError>;

#[test]
fn response_table() {
    use HttpError::*;
    let cases: &[(&str, &str, &[u8], Expected)] = &[
        (
            "content-length",
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\": true}\n",
            Ok((200, b"{\"ok\": true}\n", KeepAlive, b"", 0)),
        ),
        (
            "content-length zero",
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Ok((200, b"", KeepAlive, b"", 0)),
        ),
        (
            "identical duplicate content-length",
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc",
            Ok((200, b"abc", KeepAlive, b"", 0)),
        ),
        (
            "chunked",
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
            Ok((200, b"Wikipedia", KeepAlive, b"", 0)),
        ),
        (
            "chunked with extensions and trailers",
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Expires\r\n\r\n\
              4;name=value\r\nWiki\r\n5 ; a=\"b;c\"\r\npedia\r\nE;last\r\n in\r\n\r\nchunks.\r\n\
              0;end\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
            Ok((200, b"Wikipedia in\r\n\r\nchunks.", KeepAlive, b"", 2)),
        ),
        (
            "chunked, uppercase hex, leading zeros, then the next response",
            "GET",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n00A\r\n0123456789\r\n0000\r\n\r\nHTTP/1.1",
            Ok((200, b"0123456789", KeepAlive, b"HTTP/1.1", 0)),
        ),
        (
            "trailers with bare LF line ends",
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\n\n",
            Ok((200, b"x", KeepAlive, b"", 1)),
        ),
        (
            "close-delimited",
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the\r\n\r\nend",
            Ok((200, b"until the\r\n\r\nend", Close, b"", 0)),
        ),
        (
            "close-delimited, empty",
            "GET",
            b"HTTP/1.1 200 OK\r\n\r\n",
            Ok((200, b"", Close, b"", 0)),
        ),
        (
            "100-continue then 200",
            "POST",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Ok((200, b"ok", KeepAlive, b"", 0)),
        ),
        (
            "103 and 102 interim responses then 201",
            "POST",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Ok((201, b"", KeepAlive, b"", 0)),
        ),
        (
            "HEAD ignores content-length",
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 404",
            Ok((200, b"", KeepAlive, b"HTTP/1.1 404", 0)),
        ),
        (
            "HEAD ignores chunked",
            "HEAD",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((200, b"", KeepAlive, b"", 0)),
        ),
        (
            "204 has no body",
            "DELETE",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1",
            Ok((204, b"", KeepAlive, b"HTTP/1.1", 0)),
        ),
        (
            "304 has no body",
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nContent-Length: 512\r\n\r\n",
            Ok((304, b"", KeepAlive, b"", 0)),
        ),
        (
            "connection: close",
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
            Ok((200, b"x", Close, b"", 0)),
        ),
        (
            "connection list with close",
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx",
            Ok((200, b"x", Close, b"", 0)),
        ),
        (
            "HTTP/1.0 closes by default",
            "GET",
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
            Ok((200, b"x", Close, b"", 0)),
        ),
        (
            "HTTP/1.0 keep-alive",
            "GET",
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nxHTTP",
            Ok((200, b"x", KeepAlive, b"HTTP", 0)),
        ),
        (
            "HTTP/1.0 close-delimited",
            "GET",
            b"HTTP/1.0 200 OK\r\n\r\nall of it",
            Ok((200, b"all of it", Close, b"", 0)),
        ),
        (
            "HTTP/1.0 with chunked is read, then closed",
            "GET",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
            Ok((200, b"x", Close, b"", 0)),
        ),
        (
            "pipelined: the second response is leftover",
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
            Ok((200, b"a", KeepAlive, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb", 0)),
        ),
        (
            "bare LF line ends in the head",
            "GET",
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
            Ok((200, b"hi", KeepAlive, b"", 0)),
        ),
        (
            "blank lines before the status line",
            "GET",
            b"\r\n\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Ok((200, b"", KeepAlive, b"", 0)),
        ),
        (
            "no reason phrase, unusual status",
            "GET",
            b"HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n",
            Ok((599, b"", KeepAlive, b"", 0)),
        ),
        // Remote errors.
        ("conflicting content-length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", Err(ConflictingContentLength)),
        ("content-length with chunked", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Err(ContentLengthWithTransferEncoding)),
        ("gzip transfer coding", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(UnsupportedTransferEncoding)),
        ("invalid content-length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", Err(InvalidContentLength)),
        ("content-length overflow", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", Err(SizeOverflow)),
        ("invalid chunk size", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Err(InvalidChunkSize)),
        ("chunk size overflow", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", Err(SizeOverflow)),
        ("no CRLF after chunk data", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWikiXX0\r\n\r\n", Err(MalformedChunk)),
        ("bare LF after chunk size", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\nWiki\r\n0\r\n\r\n", Err(MalformedChunk)),
        ("malformed trailers", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n", Err(MalformedTrailers)),
        ("101 switching protocols", "GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", Err(SwitchingProtocols)),
        ("not HTTP at all", "GET", b"SSH-2.0-OpenSSH_9.6\r\nmore", Err(MalformedHead(httparse::Error::Version))),
        ("HTTP/2 status line", "GET", b"HTTP/2.0 200 OK\r\n\r\n", Err(MalformedHead(httparse::Error::Version))),
        ("status below 100", "GET", b"HTTP/1.1 099 Low\r\n\r\n", Err(MalformedHead(httparse::Error::Status))),
        ("four-digit status", "GET", b"HTTP/1.1 2000 OK\r\n\r\n", Err(MalformedHead(httparse::Error::Status))),
        ("obsolete line folding", "GET", b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", Err(MalformedHead(httparse::Error::HeaderName))),
        ("space before colon", "GET", b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", Err(MalformedHead(httparse::Error::HeaderName))),
        ("NUL in a header value", "GET", b"HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", Err(MalformedHead(httparse::Error::HeaderValue))),
        // End of stream too early.
        ("closed before any byte", "GET", b"", Err(ClosedBeforeResponse)),
        ("only blank lines, then closed", "GET", b"\r\n\r\n", Err(ClosedBeforeResponse)),
        ("closed in the status line", "GET", b"HTTP/1.1 20", Err(ClosedInHead)),
        ("closed in the headers", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", Err(ClosedInHead)),
        ("closed after 100 continue", "POST", b"HTTP/1.1 100 Continue\r\n\r\n", Err(ClosedInHead)),
        ("closed in a content-length body", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", Err(ClosedInBody)),
        ("closed before the last chunk", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", Err(ClosedInBody)),
        ("closed in the trailers", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n", Err(ClosedInBody)),
    ];
    assert!(cases.len() >= 20);
    for (name, method, wire, expected) in cases {
        let got = response_all_ways(method, Limits::default(), wire).map(|done| {
            (
                done.response.status,
                done.response.body.0,
                done.persistence,
                done.leftover,
                done.trailers.len(),
            )
        });
        let expected = expected
            .clone()
            .map(|(status, body, persistence, leftover, trailers)| {
                (
                    status,
                    body.to_vec(),
                    persistence,
                    leftover.to_vec(),
                    trailers,
                )
            });
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn response_fields_keep_their_order_and_spelling() {
    let wire = b"HTTP/1.1 200 OK\r\nX-RateLimit-Remaining: 4999\r\nETag:  \"a\"  \r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nX-Bin: caf\xe9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n";
    let done = response_all_ways("GET", Limits::default(), wire).unwrap();
    let pairs = |fields: &[(String, String)]| -> Vec<(String, String)> { fields.to_vec() };
    let own = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        pairs(&done.response.headers),
        own(&[
            ("X-RateLimit-Remaining", "4999"),
            ("ETag", "\"a\""),
            ("set-cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Bin", "caf\u{fffd}"),
            ("Transfer-Encoding", "chunked"),
        ])
    );
    assert_eq!(done.response.header("etag"), Some("\"a\""));
    assert_eq!(
        pairs(&done.trailers),
        own(&[("Server-Timing", "db;dur=53")])
    );
}

#[test]
fn pipelined_responses_read_one_after_another() {
    let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
        HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfour";
    let read_all = |chunks: &[&[u8]]| -> Vec<(u16, Vec<u8>, Persistence)> {
        let mut out = Vec::new();
        let mut reader = ResponseReader::new("GET", Limits::default());
        for chunk in chunks {
            let mut input = chunk.to_vec();
            while let Some(done) = reader.feed(&input).unwrap() {
                out.push((done.response.status, done.response.body.0, done.persistence));
                reader = ResponseReader::new("GET", Limits::default());
                input = done.leftover;
            }
        }
        let last = reader.eof().unwrap();
        out.push((last.response.status, last.response.body.0, last.persistence));
        out
    };
    let expected = vec![
        (200, b"one".to_vec(), KeepAlive),
        (200, b"two".to_vec(), KeepAlive),
        (204, Vec::new(), KeepAlive),
        (200, b"four".to_vec(), Close),
    ];
    for chunks in chunkings(wire) {
        assert_eq!(read_all(&chunks), expected);
    }
}

#[test]
fn a_spent_reader_says_so() {
    let mut reader = ResponseReader::new("GET", Limits::default());
    assert!(
        reader
            .feed(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .is_some()
    );
    assert_eq!(reader.feed(b"x"), Err(HttpError::ReaderFinished));
    assert_eq!(reader.eof(), Err(HttpError::ReaderFinished));
    assert_eq!(HttpError::ReaderFinished.side(), Side::Local);

    let mut reader = ResponseReader::new("GET", Limits::default());
    let error = HttpError::MalformedHead(httparse::Error::Version);
    assert_eq!(reader.feed(b"garbage\r\n"), Err(error.clone()));
    assert_eq!(reader.feed(b"HTTP/1.1 200 OK\r\n\r\n"), Err(error.clone()));
    assert_eq!(reader.eof(), Err(error));
}

#[test]
fn a_request_that_asked_to_close_is_not_reused() {
    let request = HttpRequest::new("GET", "http://127.0.0.1/").header("Connection", "Close");
    let mut reader = ResponseReader::for_request(&request, Limits::default());
    let done = reader
        .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(done.persistence, Close);
    let head = HttpRequest::new("HEAD", "http://127.0.0.1/");
    let mut reader = ResponseReader::for_request(&head, Limits::default());
    let done = reader
        .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!((done.response.body.len(), done.persistence), (0, KeepAlive));
}

/// Header fields in a table.
type Fields = &'static [(&'static str, &'static str)];

/// What a request case should give: method, target, body, persistence, upgrade, leftover.
type ExpectedRequest = Result<
    Option<(
        &'static str,
        &'static str,
        &'static [u8],
        Persistence,
        Option<&'static str>,
        &'static [u8],
    )>,
    HttpError,
>;

#[test]
fn request_table() {
    use HttpError::*;
    let cases: &[(&str, &[u8], ExpectedRequest)] = &[
        (
            "GET without body",
            b"GET /api/v10/gateway/bot HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nAuthorization: Bot t\r\n\r\n",
            Ok(Some(("GET", "/api/v10/gateway/bot", b"", KeepAlive, None, b""))),
        ),
        (
            "POST with content-length",
            b"POST /api/apps.connections.open HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            Ok(Some(("POST", "/api/apps.connections.open", b"{\"ok\":true}", KeepAlive, None, b""))),
        ),
        (
            "POST chunked with extensions and trailers",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nX-Check: 1\r\n\r\n",
            Ok(Some(("POST", "/x", b"abc", KeepAlive, None, b""))),
        ),
        (
            "websocket upgrade hands over the following bytes",
            b"GET /?v=10&encoding=json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
              \x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
            Ok(Some(("GET", "/?v=10&encoding=json", b"", KeepAlive, Some("websocket"), b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"))),
        ),
        (
            "upgrade with content-length 0",
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
            Ok(Some(("GET", "/", b"", KeepAlive, Some("websocket"), b""))),
        ),
        (
            "Upgrade field without the connection option is an ordinary request",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET",
            Ok(Some(("GET", "/", b"", KeepAlive, None, b"GET"))),
        ),
        (
            "HTTP/1.0 upgrade is ignored",
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            Ok(Some(("GET", "/", b"", Close, None, b""))),
        ),
        (
            "HTTP/1.0 closes",
            b"GET / HTTP/1.0\r\n\r\n",
            Ok(Some(("GET", "/", b"", Close, None, b""))),
        ),
        (
            "connection: close",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            Ok(Some(("GET", "/", b"", Close, None, b""))),
        ),
        (
            "pipelined requests",
            b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            Ok(Some(("GET", "/a", b"", KeepAlive, None, b"GET /b HTTP/1.1\r\n\r\n"))),
        ),
        (
            "blank lines before the request line",
            b"\r\n\r\nDELETE /a HTTP/1.1\n\n",
            Ok(Some(("DELETE", "/a", b"", KeepAlive, None, b""))),
        ),
        (
            "absolute-form target kept as sent",
            b"GET http://127.0.0.1/x HTTP/1.1\r\n\r\n",
            Ok(Some(("GET", "http://127.0.0.1/x", b"", KeepAlive, None, b""))),
        ),
        ("closed between requests", b"", Ok(None)),
        ("closed after blank lines", b"\r\n", Ok(None)),
        ("upgrade with a body", b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi", Err(UpgradeWithBody)),
        ("upgrade with chunked body", b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n", Err(UpgradeWithBody)),
        ("gzip transfer coding", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", Err(UnsupportedTransferEncoding)),
        ("conflicting content-length", b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", Err(ConflictingContentLength)),
        ("content-length with chunked", b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Err(ContentLengthWithTransferEncoding)),
        ("bad request line", b"GET /a b HTTP/1.1\r\n\r\n", Err(MalformedHead(httparse::Error::Version))),
        ("TLS client hello on a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", Err(MalformedHead(httparse::Error::Token))),
        ("closed in the head", b"GET / HTTP/1.1\r\nHost:", Err(ClosedInHead)),
        ("closed in the body", b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", Err(ClosedInBody)),
    ];
    for (name, wire, expected) in cases {
        let got = request_all_ways(Limits::default(), wire).map(|done| {
            done.map(|d| {
                (
                    d.request.method,
                    d.request.target,
                    d.request.body.0,
                    d.persistence,
                    d.upgrade,
                    d.leftover,
                )
            })
        });
        let expected = expected.clone().map(|done| {
            done.map(|(method, target, body, persistence, upgrade, leftover)| {
                (
                    method.to_owned(),
                    target.to_owned(),
                    body.to_vec(),
                    persistence,
                    upgrade.map(str::to_owned),
                    leftover.to_vec(),
                )
            })
        });
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn requests_round_trip_through_the_server_reader() {
    let requests = [
        HttpRequest::new("GET", "https://api.github.com/notifications?all=false")
            .header("Authorization", "Bearer t")
            .header("If-None-Match", "W/\"x\""),
        HttpRequest::new("POST", "http://127.0.0.1:9000/api/apps.connections.open"),
        HttpRequest::new("PATCH", "http://[::1]:80/x")
            .header("Content-Type", "application/octet-stream")
            .body(vec![0u8, 1, 2, 255]),
    ];
    for request in requests {
        let wire = encode_request(&request).unwrap();
        let done = request_all_ways(Limits::default(), &wire).unwrap().unwrap();
        assert_eq!(done.request.method, request.method);
        assert_eq!(done.request.body, request.body);
        assert_eq!(done.persistence, KeepAlive);
        for (name, value) in &request.headers {
            assert_eq!(done.request.header(name), Some(value.as_str()), "{name}");
        }
        assert!(done.request.header("host").is_some());
    }
}

#[test]
fn responses_round_trip_through_the_client_reader() {
    let cases: &[(u16, &str, Fields, &[u8])] = &[
        (
            200,
            "OK",
            &[("Content-Type", "application/json")],
            b"{\"ok\":true}",
        ),
        (404, "Not Found", &[], b""),
        (
            429,
            "Too Many Requests",
            &[("Retry-After", "1")],
            b"slow down",
        ),
        (204, "No Content", &[("X-Empty", "")], b""),
        (304, "Not Modified", &[("ETag", "\"v1\"")], b""),
    ];
    for (status, reason, headers, body) in cases {
        let wire = encode_response(*status, reason, headers, body).unwrap();
        let done = response_all_ways("GET", Limits::default(), &wire).unwrap();
        assert_eq!(done.response.status, *status);
        assert_eq!(done.response.body.as_slice(), *body);
        assert_eq!(done.persistence, KeepAlive, "{status}");
        assert!(done.leftover.is_empty());
        for (name, value) in *headers {
            assert_eq!(done.response.header(name), Some(*value));
        }
    }
}

#[test]
fn encode_response_refuses_what_cannot_be_sent() {
    use HttpError::*;
    let cases: &[(u16, &str, Fields, &[u8], HttpError)] = &[
        (99, "Low", &[], b"", InvalidStatus { status: 99 }),
        (1000, "High", &[], b"", InvalidStatus { status: 1000 }),
        (200, "OK\r\nX: y", &[], b"", InvalidReason),
        (204, "No Content", &[], b"x", BodyNotAllowed { status: 204 }),
        (
            101,
            "Switching Protocols",
            &[],
            b"x",
            BodyNotAllowed { status: 101 },
        ),
        (
            304,
            "Not Modified",
            &[],
            b"x",
            BodyNotAllowed { status: 304 },
        ),
        (
            200,
            "OK",
            &[("Content-Length", "1")],
            b"x",
            ReservedHeader {
                name: "Content-Length".into(),
            },
        ),
        (
            200,
            "OK",
            &[("transfer-encoding", "chunked")],
            b"x",
            ReservedHeader {
                name: "transfer-encoding".into(),
            },
        ),
        (
            200,
            "OK",
            &[("X", "a\nb")],
            b"",
            InvalidHeaderValue { name: "X".into() },
        ),
        (
            200,
            "OK",
            &[("X Y", "a")],
            b"",
            InvalidHeaderName { index: 0 },
        ),
    ];
    for (status, reason, headers, body, expected) in cases {
        assert_eq!(
            encode_response(*status, reason, headers, body),
            Err(expected.clone()),
            "{status} {reason:?}"
        );
        assert_eq!(expected.side(), Side::Local, "{expected:?}");
    }
}

// ---- Limits ----

fn small_limits() -> Limits {
    Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_body_bytes: 10,
        max_chunk_line_bytes: 16,
    }
}

#[test]
fn limits_table() {
    use HttpError::*;
    let limits = small_limits();
    let long_header = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(300));
    // A head of exactly the limit is fine; one byte more is not.
    let exact = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(256 - 24));
    assert_eq!(exact.len(), 256);
    let over = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(256 - 23));
    let cases: Vec<(&str, Vec<u8>, Result<usize, HttpError>)> = vec![
        ("head at the limit", exact.into_bytes(), Ok(0)),
        ("head over the limit", over.into_bytes(), Err(HeadTooLarge { limit: 256 })),
        ("long header", long_header.into_bytes(), Err(HeadTooLarge { limit: 256 })),
        ("no line end at all", vec![b'a'; 1000], Err(HeadTooLarge { limit: 256 })),
        ("four headers", b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n".to_vec(), Ok(0)),
        ("five headers", b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n".to_vec(), Err(TooManyHeaders { limit: 4 })),
        ("body at the limit", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec(), Ok(10)),
        ("content-length over the limit, refused before the body", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n".to_vec(), Err(BodyTooLarge { limit: 10 })),
        ("chunks adding up over the limit", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n".to_vec(), Err(BodyTooLarge { limit: 10 })),
        ("huge chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n".to_vec(), Err(BodyTooLarge { limit: 10 })),
        ("close-delimited over the limit", b"HTTP/1.1 200 OK\r\n\r\n0123456789A".to_vec(), Err(BodyTooLarge { limit: 10 })),
        ("close-delimited at the limit", b"HTTP/1.1 200 OK\r\n\r\n0123456789".to_vec(), Ok(10)),
        ("chunk line at the limit", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;abcdefghijkl\r\nx\r\n0\r\n\r\n".to_vec(), Ok(1)),
        ("chunk line over the limit", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;abcdefghijklm\r\nx\r\n0\r\n\r\n".to_vec(), Err(ChunkLineTooLong { limit: 16 })),
        ("endless chunk extension", [&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..], &[b'a'; 5000]].concat(), Err(ChunkLineTooLong { limit: 16 })),
        ("trailers over the limit", [&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "[..], &[b'a'; 300], b"\r\n\r\n"].concat(), Err(TrailersTooLarge { limit: 256 })),
        ("too many trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n".to_vec(), Err(TooManyHeaders { limit: 4 })),
        ("interim responses do not add up", [&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20)[..], b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"].concat(), Ok(0)),
    ];
    for (name, wire, expected) in cases {
        let got = response_all_ways("GET", limits, &wire).map(|done| done.response.body.len());
        assert_eq!(got, expected, "{name}");
    }
    let request_cases: Vec<(&str, Vec<u8>, HttpError)> = vec![
        (
            "request head over the limit",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300)).into_bytes(),
            HeadTooLarge { limit: 256 },
        ),
        (
            "request body over the limit",
            b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".to_vec(),
            BodyTooLarge { limit: 10 },
        ),
        (
            "request with too many headers",
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n".to_vec(),
            TooManyHeaders { limit: 4 },
        ),
    ];
    for (name, wire, expected) in request_cases {
        assert_eq!(request_all_ways(limits, &wire), Err(expected), "{name}");
    }
}

#[test]
fn memory_stays_bounded_whatever_is_fed() {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    };
    // 8 MiB of close-delimited body, in 64 KiB reads.
    let mut reader = ResponseReader::new("GET", limits);
    assert!(reader.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().is_none());
    let block = vec![b'x'; 64 * 1024];
    let mut error = None;
    for _ in 0..128 {
        match reader.feed(&block) {
            Ok(None) => assert!(reader.buffered_bytes() <= limits.max_body_bytes),
            Ok(Some(_)) => unreachable!("a close-delimited body ends only at eof"),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert_eq!(error, Some(HttpError::BodyTooLarge { limit: 1 << 20 }));

    // 8 MiB of header bytes in one call: refused after buffering at most the head limit.
    let mut reader = RequestReader::new(Limits::default());
    let mut wire = b"GET / HTTP/1.1\r\nX: ".to_vec();
    wire.resize(8 << 20, b'a');
    assert_eq!(
        reader.feed(&wire),
        Err(HttpError::HeadTooLarge { limit: 64 * 1024 })
    );

    // Endless blank lines are skipped without being kept.
    let mut reader = ResponseReader::new("GET", Limits::default());
    for _ in 0..100 {
        assert!(reader.feed(&b"\r\n".repeat(50_000)).unwrap().is_none());
        assert_eq!(reader.buffered_bytes(), 0);
    }
}

// ---- Garbage ----

/// Parts of plausible messages, so random streams reach every state (bodies, chunks, trailers,
/// interim responses, upgrades) and not only the start-line errors.
const STATUS_LINES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 099 Low",
    b"GET / HTTP/1.1",
];
const REQUEST_LINES: &[&[u8]] = &[
    b"GET / HTTP/1.1",
    b"POST /x HTTP/1.1",
    b"POST /x HTTP/1.1",
    b"GET /ws HTTP/1.0",
    b"GET http://h/ HTTP/1.1",
    b"HTTP/1.1 200 OK",
];
const FIELD_LINES: &[&[u8]] = &[
    b"Content-Length: 5",
    b"Content-Length: 0",
    b"Content-Length: 3, 3",
    b"Content-Length: 12",
    b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"X: y",
    b"Host: h",
    b"X: y",
    b"Host: h",
    b"Accept: */*",
    b" folded",
];
const BODY_PIECES: &[&[u8]] = &[
    b"hello",
    b"5\r\nhello\r\n",
    b"3;x=y\r\nabc\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: v\r\n\r\n",
    b"ffffffffffffffffff\r\n",
    b"z\r\n",
    b"\r\n",
    b"abc",
    b"4\nabcd",
    b"1;aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
];
const LINE_ENDS: &[&[u8]] = &[
    b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n",
    b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\n", b"\r",
];

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a [u8]]) -> &'a [u8] {
    from[rng.usize(..from.len())]
}

fn random_message(rng: &mut fastrand::Rng, start_lines: &[&[u8]], out: &mut Vec<u8>) {
    if rng.u8(..) < 20 {
        out.extend_from_slice(pick(rng, LINE_ENDS));
    }
    out.extend_from_slice(pick(rng, start_lines));
    out.extend_from_slice(pick(rng, LINE_ENDS));
    for _ in 0..rng.usize(0..5) {
        out.extend_from_slice(pick(rng, FIELD_LINES));
        out.extend_from_slice(pick(rng, LINE_ENDS));
    }
    out.extend_from_slice(pick(rng, LINE_ENDS));
    for _ in 0..rng.usize(0..4) {
        out.extend_from_slice(pick(rng, BODY_PIECES));
    }
}

/// One to three plausible messages, sometimes mutated, sometimes pure noise.
fn random_stream(rng: &mut fastrand::Rng, start_lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.u8(..) < 16 {
        out.extend((0..rng.usize(0..64)).map(|_| rng.u8(..)));
        return out;
    }
    for _ in 0..rng.usize(1..4) {
        random_message(rng, start_lines, &mut out);
    }
    for _ in 0..rng.usize(0..4).saturating_sub(1) {
        if out.is_empty() {
            break;
        }
        let at = rng.usize(..out.len());
        match rng.u8(0..4) {
            0 => out[at] = rng.u8(..),
            1 => out.insert(at, rng.u8(..)),
            2 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn random_chunks<'a>(rng: &mut fastrand::Rng, wire: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(rng.usize(0..=rest.len().min(12)));
        chunks.push(a);
        rest = b;
    }
    chunks
}

#[test]
fn random_garbage_never_panics_and_splitting_never_matters() {
    let mut rng = fastrand::Rng::with_seed(0x0f1e_2d3c);
    for _ in 0..5000 {
        let limits = Limits {
            max_head_bytes: rng.usize(16..400),
            max_headers: rng.usize(1..8),
            max_body_bytes: rng.usize(0..40),
            max_chunk_line_bytes: rng.usize(2..32),
        };
        let method = if rng.u8(..) < 200 { "GET" } else { "HEAD" };
        let wire = random_stream(&mut rng, STATUS_LINES);
        let whole = read_response(method, limits, &[&wire]);
        for _ in 0..3 {
            let chunks = random_chunks(&mut rng, &wire);
            assert_eq!(
                read_response(method, limits, &chunks),
                whole,
                "{wire:?} as {chunks:?}"
            );
        }
        let wire = random_stream(&mut rng, REQUEST_LINES);
        let whole = read_request(limits, &[&wire]);
        for _ in 0..3 {
            let chunks = random_chunks(&mut rng, &wire);
            assert_eq!(
                read_request(limits, &chunks),
                whole,
                "{wire:?} as {chunks:?}"
            );
        }
    }
}
