//! The part every simulator shares: one listener per simulator serving plain HTTP/1.1 and plain
//! `ws://` on the same port, as the real services do behind their load balancers.
//!
//! Requests are read with the sans-IO codec of `openflume_proto::http`, so the simulators parse
//! exactly what the clients' codec writes and no second HTTP parser exists in the project. A
//! request with `Upgrade: websocket` is answered with `101 Switching Protocols` here and the
//! socket, with the bytes already read past the head, becomes a tungstenite server stream.
//!
//! Stopping: dropping a [`Server`] cancels the accept loop and every connection task at once (the
//! sockets close without a WebSocket close frame); [`Server::stop`] first asks every connection to
//! finish (WebSocket handlers send a close frame) and waits a moment for them.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use openflume_proto::http::{
    HttpError, Limits, ReadRequest, ReceivedRequest, RequestReader, encode_response,
};
use smol::channel::{Receiver, Sender};
use smol::net::{TcpListener, TcpStream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// The WebSocket type every simulator handler works with.
pub(crate) type Ws = WebSocketStream<SimStream>;

/// Largest request body (and largest inbound WebSocket message) a simulator accepts: clients only
/// ever send small JSON.
const MAX_INBOUND_BYTES: usize = 1 << 20;

/// How long a kept-alive HTTP connection may sit idle before the simulator closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long [`Server::stop`] waits for connections to finish before cancelling them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What a simulator does with a plain HTTP request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Send this response.
    Reply(Reply),
    /// Close the connection without a response (a network failure as the client sees it).
    Drop,
}

/// An HTTP response to write.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// A response with a JSON body (`Content-Type: application/json; charset=utf-8`).
    pub(crate) fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: body.into(),
        }
    }

    /// A response without a body (304, 101).
    pub(crate) fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn encode(&self) -> Result<Vec<u8>, HttpError> {
        let date = crate::fake::http_date_now();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 1);
        headers.push(("Date", date.as_str()));
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let body: &[u8] = if matches!(self.status, 100..=199 | 204 | 304) {
            &[]
        } else {
            &self.body
        };
        encode_response(self.status, reason_phrase(self.status), &headers, body)
    }
}

/// The standard reason phrase for the statuses the simulators send.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// One simulator's behaviour behind the shared listener.
pub(crate) trait Service: Send + Sync + 'static {
    /// Answers a plain HTTP request.
    fn http(&self, request: ReceivedRequest) -> impl Future<Output = Answer> + Send;

    /// Decides on a WebSocket upgrade: `Ok` accepts it, `Err` answers with that response instead
    /// (a refused ticket, an injected fault).
    fn check_upgrade(&self, request: &ReceivedRequest) -> Result<(), Reply>;

    /// Serves an accepted WebSocket until it ends. `shutdown` resolves when the simulator stops.
    fn websocket(
        &self,
        request: ReceivedRequest,
        ws: Ws,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send;
}

/// A one-shot broadcast: every waiter wakes once [`Signal::fire`] was called. Used for "the
/// simulator is stopping" and "the first client connected".
///
/// Dropping a signal does not fire it: a simulator that is dropped cancels its connections
/// without telling them, so they end without a close frame.
#[derive(Debug)]
pub(crate) struct Signal {
    sender: Sender<()>,
    receiver: Receiver<()>,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        let (sender, receiver) = smol::channel::bounded(1);
        Signal { sender, receiver }
    }

    /// Wakes every waiter, now and later. Idempotent.
    pub(crate) fn fire(&self) {
        self.sender.close();
    }

    /// A waiter that can outlive a borrow of the signal.
    pub(crate) fn waiter(&self) -> Shutdown {
        Shutdown {
            receiver: self.receiver.clone(),
            _keep_open: self.sender.clone(),
        }
    }
}

/// Resolves once a [`Signal`] fired.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    receiver: Receiver<()>,
    /// Keeps the channel open when the signal itself is dropped.
    _keep_open: Sender<()>,
}

impl Shutdown {
    /// Waits for the signal (at once when it already fired).
    pub(crate) async fn wait(&self) {
        // Nothing is ever sent: `recv` ends with `Closed` when the signal fires.
        let _ = self.receiver.recv().await;
    }
}

/// A listening simulator: the accept loop and every connection it serves.
#[derive(Debug)]
pub(crate) struct Server {
    local_addr: SocketAddr,
    stopping: Arc<Signal>,
    task: Option<smol::Task<()>>,
}

impl Server {
    /// Starts serving `listener` with `service` (bind first, so the service can know its port).
    pub(crate) fn serve<S: Service>(listener: TcpListener, service: Arc<S>) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let stopping = Arc::new(Signal::new());
        let task = smol::spawn(accept_loop(listener, service, stopping.waiter()));
        Ok(Server {
            local_addr,
            stopping,
            task: Some(task),
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Asks every connection to finish (WebSocket handlers send a close frame), waits up to two
    /// seconds for them, then cancels whatever is left.
    pub(crate) async fn stop(mut self) {
        self.stopping.fire();
        if let Some(task) = self.task.take() {
            // When the grace period runs out, `or` drops `task`, which cancels it.
            futures_lite::future::or(task, async {
                async_io::Timer::after(STOP_GRACE + Duration::from_millis(500)).await;
            })
            .await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Cancels the accept loop, which drops (and so cancels) every connection task it owns:
        // the sockets close without a WebSocket close frame.
        self.task.take();
    }
}

async fn accept_loop<S: Service>(listener: TcpListener, service: Arc<S>, stopping: Shutdown) {
    let mut connections: Vec<smol::Task<()>> = Vec::new();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stopping.wait().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        match accepted {
            Ok((stream, _peer)) => {
                connections.retain(|task| !task.is_finished());
                let service = service.clone();
                let stopping = stopping.clone();
                connections.push(smol::spawn(async move {
                    serve_connection(service, stream, stopping).await
                }));
            }
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => {
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let all = async {
        for task in connections.drain(..) {
            task.await;
        }
    };
    futures_lite::future::or(all, async {
        async_io::Timer::after(STOP_GRACE).await;
    })
    .await;
}

/// Serves one TCP connection: HTTP requests until it closes, or one WebSocket.
async fn serve_connection<S: Service>(service: Arc<S>, tcp: TcpStream, stopping: Shutdown) {
    let _ = tcp.set_nodelay(true);
    let mut stream = SimStream::new(tcp);
    let limits = Limits {
        max_body_bytes: MAX_INBOUND_BYTES,
        ..Limits::default()
    };
    let mut pending = Vec::new();
    loop {
        let read = match read_request(&mut stream, std::mem::take(&mut pending), limits, &stopping)
            .await
        {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(error) => {
                let _ = write_reply(&mut stream, &refusal(&error)).await;
                return;
            }
        };
        if read
            .upgrade
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            upgrade(&*service, stream, read, stopping).await;
            return;
        }
        let keep_alive = read.persistence.is_keep_alive();
        let answer =
            futures_lite::future::or(async { Some(service.http(read.request).await) }, async {
                stopping.wait().await;
                None
            })
            .await;
        match answer {
            Some(Answer::Reply(reply)) => {
                if write_reply(&mut stream, &reply).await.is_err() || !keep_alive {
                    return;
                }
            }
            Some(Answer::Drop) | None => return,
        }
        pending = read.leftover;
    }
}

/// The response to a request the codec refused.
fn refusal(error: &HttpError) -> Reply {
    let status = match error {
        HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
        HttpError::BodyTooLarge { .. } => 413,
        _ => 400,
    };
    Reply::json(
        status,
        format!(r#"{{"message":"{}"}}"#, reason_phrase(status)),
    )
    .header("Connection", "close")
}

/// Reads one request, starting with bytes already received. `Ok(None)` when the client closed
/// the connection (or went idle, or the simulator is stopping) between requests.
async fn read_request(
    stream: &mut SimStream,
    pending: Vec<u8>,
    limits: Limits,
    stopping: &Shutdown,
) -> Result<Option<ReadRequest>, HttpError> {
    let mut reader = RequestReader::new(limits);
    if !pending.is_empty()
        && let Some(done) = reader.feed(&pending)?
    {
        return Ok(Some(done));
    }
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk).await) }, async {
            futures_lite::future::or(stopping.wait(), async {
                async_io::Timer::after(IDLE_TIMEOUT).await;
            })
            .await;
            None
        })
        .await;
        let n = match read {
            Some(Ok(n)) => n,
            Some(Err(_)) | None => return Ok(None),
        };
        if n == 0 {
            // A request cut short cannot be answered; either way the connection is done.
            let _ = reader.eof();
            return Ok(None);
        }
        if let Some(done) = reader.feed(chunk.get(..n).unwrap_or_default())? {
            return Ok(Some(done));
        }
    }
}

async fn write_reply(stream: &mut SimStream, reply: &Reply) -> io::Result<()> {
    let bytes = reply
        .encode()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Completes a WebSocket handshake (RFC 6455 §4.2.2) and hands the socket to the service.
async fn upgrade<S: Service>(
    service: &S,
    mut stream: SimStream,
    read: ReadRequest,
    stopping: Shutdown,
) {
    let request = read.request;
    let key = request
        .header("Sec-WebSocket-Key")
        .map(str::trim)
        .unwrap_or_default();
    let version_ok = request.header("Sec-WebSocket-Version").map(str::trim) == Some("13");
    let refused = if request.method != "GET" || key.is_empty() {
        Some(Reply::json(400, r#"{"message":"Bad WebSocket handshake"}"#))
    } else if !version_ok {
        Some(
            Reply::json(426, r#"{"message":"Upgrade Required"}"#)
                .header("Sec-WebSocket-Version", "13"),
        )
    } else {
        service.check_upgrade(&request).err()
    };
    if let Some(reply) = refused {
        let _ = write_reply(&mut stream, &reply.header("Connection", "close")).await;
        return;
    }
    let switching = Reply::empty(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    if write_reply(&mut stream, &switching).await.is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_BYTES))
        .max_frame_size(Some(MAX_INBOUND_BYTES));
    let ws =
        WebSocketStream::from_partially_read(stream, read.leftover, Role::Server, Some(config))
            .await;
    service.websocket(request, ws, stopping).await;
}

/// Most bytes a [`SimStream`] holds before it writes them out, corked or not.
const WRITE_BUFFER: usize = 256 * 1024;

/// A TCP stream whose writes are buffered until flushed, and whose flushes can be held back
/// ("corked") so a burst of WebSocket messages leaves in a few large writes instead of one
/// system call each. tungstenite flushes after every message; a simulator blasting dispatches
/// for the benchmark corks the stream for the burst and uncorks it for the last message.
#[derive(Debug)]
pub(crate) struct SimStream {
    tcp: TcpStream,
    out: Vec<u8>,
    written: usize,
    corked: Cork,
}

/// The cork of a [`SimStream`]: while set, flushes keep up to [`WRITE_BUFFER`] bytes in memory.
/// A handle of its own, so it still works once the WebSocket is split into halves.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cork(Arc<AtomicBool>);

impl Cork {
    pub(crate) fn set(&self, corked: bool) {
        self.0.store(corked, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl SimStream {
    fn new(tcp: TcpStream) -> SimStream {
        SimStream {
            tcp,
            out: Vec::new(),
            written: 0,
            corked: Cork::default(),
        }
    }

    /// The stream's cork.
    pub(crate) fn cork(&self) -> Cork {
        self.corked.clone()
    }

    /// The raw socket, for a handler that stops speaking WebSocket (a "silent" connection).
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let rest = self.out.get(self.written..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= WRITE_BUFFER {
            ready!(this.poll_drain(cx))?;
        }
        let room = WRITE_BUFFER - this.out.len();
        let taken = buf.len().min(room);
        this.out
            .extend_from_slice(buf.get(..taken).unwrap_or_default());
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.corked.is_set() && this.out.len() < WRITE_BUFFER {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_close(cx)
    }
}

/// Splits a request target into its path and its decoded query pairs.
pub(crate) fn split_target(target: &str) -> (&str, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    (path, pairs)
}

/// The first value of `key` among decoded query pairs.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => {
                        out.push(decoded);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of an `Authorization: <scheme> <token>` header, when the scheme matches
/// (case-insensitively, as HTTP auth schemes are).
pub(crate) fn bearer<'a>(request: &'a ReceivedRequest, schemes: &[&str]) -> Option<&'a str> {
    let value = request.header("Authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
        .then(|| token.trim())
}

/// Completes a close the client started: tungstenite queues the reply when it reads the client's
/// close frame and writes it on the next read, so read until the stream ends (at most a second).
pub(crate) async fn answer_close(
    ws: &mut (impl futures_lite::Stream<Item = Result<Message, WsError>> + Unpin),
) {
    let drain = async { while let Some(Ok(_)) = futures_lite::StreamExt::next(ws).await {} };
    futures_lite::future::or(drain, async {
        async_io::Timer::after(std::time::Duration::from_secs(1)).await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        let (path, pairs) =
            split_target("/notifications?all=false&since=2025-11-24T09%3A14%3A03Z&q=a+b&x");
        assert_eq!(path, "/notifications");
        assert_eq!(query_value(&pairs, "all"), Some("false"));
        assert_eq!(query_value(&pairs, "since"), Some("2025-11-24T09:14:03Z"));
        assert_eq!(query_value(&pairs, "q"), Some("a b"));
        assert_eq!(query_value(&pairs, "x"), Some(""));
        assert_eq!(query_value(&pairs, "missing"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(split_target("/").1, vec![]);
    }

    #[test]
    fn bearer_tokens() {
        let request = |value: &str| ReceivedRequest {
            method: "GET".into(),
            target: "/".into(),
            headers: vec![("authorization".into(), value.into())],
            body: Default::default(),
        };
        assert_eq!(bearer(&request("Bearer abc"), &["Bearer"]), Some("abc"));
        assert_eq!(bearer(&request("bearer  abc "), &["Bearer"]), Some("abc"));
        assert_eq!(
            bearer(&request("token abc"), &["Bearer", "token"]),
            Some("abc")
        );
        assert_eq!(bearer(&request("Bot abc"), &["Bearer"]), None);
        assert_eq!(bearer(&request("abc"), &["Bearer"]), None);
    }

    #[test]
    fn replies_encode_with_a_date() {
        let bytes = Reply::json(200, "{}")
            .header("X-Test", "1")
            .encode()
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(text.contains("X-Test: 1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
        let not_modified = Reply::json(304, "ignored").encode().unwrap();
        assert!(
            String::from_utf8(not_modified)
                .unwrap()
                .ends_with("\r\n\r\n")
        );
    }
}
