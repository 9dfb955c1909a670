//! One hub client on `serve`'s `/ws`: the WebSocket handshake on the request the webhook
//! ingress handed off, then a [`HubSession`] driven against the durable log.
//!
//! The session decides everything (hello, replay, the seam, acks, close codes); this task only
//! moves frames, reads the log when asked ([`HubOutput::ReadLog`]), wakes the session when the
//! log commits more ([`EventLog::committed_beyond`]), and keeps its timer. The log is a
//! [`HubStore`]: the SQLite log through the shared feed ([`FedLog`]), or a Redis Stream (`serve --sink redis://…`,
//! [`crate::redis::hub`]).
//!
//! Frames are written by a task of their own, so a client that stops reading holds up only
//! that task: the session sees its send queue fill ([`HubInput::Sent`] stops coming), stops
//! reading the log, and closes with 1008 once the queue stayed full for the stall timeout. What
//! was queued before a close is written before the close frame, so the id the reason names to
//! resume after is one the client has.
//!
//! The session's bounds and timers come from the environment, read once at start
//! ([`config_from_env`]): `OPENFLUME_HUB_SEND_QUEUE` (frames), `OPENFLUME_HUB_STALL_TIMEOUT_MS`,
//! `OPENFLUME_HUB_PING_INTERVAL_MS` and `OPENFLUME_HUB_HELLO_TIMEOUT_MS`; the defaults are
//! [`HubConfig`]'s.

use super::UsageError;
use super::hub_feed::{Attached, HubFeed};
use super::listen::report;
use super::ops::Subscription;
use super::serve::{Answer, Server, answer};
use async_io::Async;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt, future};
use openflume_log::{EventId, EventLog};
use openflume_proto::Now;
use openflume_proto::http::ReceivedRequest;
use openflume_proto::hub::{Filter, HubConfig, HubInput, HubOutput, HubPosition, HubSession};
use smol::channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// After the close frame was written, how long the client gets to answer it and close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The WebSocket subprotocol the server selects when a client offers it (the status page
/// does): the hub protocol of [`openflume_proto::hub`].
pub(crate) const PROTOCOL: &str = "openflume.v1";
/// A client that cannot send an `Authorization` header (a browser's WebSocket) offers the
/// token as a subprotocol: this prefix, then the hex of the token's UTF-8 bytes (a subprotocol
/// holds only token characters). It is never selected, so never echoed back.
const TOKEN_PROTOCOL: &str = "openflume.token.";

/// The hub token a client offered in `Sec-WebSocket-Protocol`, if any.
///
/// The header lists protocols separated by commas; the first `openflume.token.HEX` counts.
/// Hex that does not decode, or decodes to anything but UTF-8, is no token.
pub(crate) fn token_from_protocols(header: Option<&str>) -> Option<String> {
    let hex = header?
        .split(',')
        .map(str::trim)
        .find_map(|protocol| protocol.strip_prefix(TOKEN_PROTOCOL))?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Whether the client offered [`PROTOCOL`], which the handshake then selects.
fn offers_protocol(request: &ReceivedRequest) -> bool {
    request
        .header("Sec-WebSocket-Protocol")
        .is_some_and(|offered| offered.split(',').any(|p| p.trim() == PROTOCOL))
}

/// How long the frames queued before a close, and the close frame, get to be written: a client
/// that stopped reading is given this long to read on before its socket goes without a close
/// frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// The transport's read buffer per client; a larger message is read in several reads.
const READ_BUFFER: usize = 4096;

type Socket = Async<TcpStream>;

/// The hub's bearer token, kept as an HMAC tag: a candidate is checked with `ring::hmac::verify`,
/// in constant time, and the token itself is not kept.
pub(crate) struct Token {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl Token {
    pub(crate) fn new(token: &str) -> Token {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"openflume hub"));
        let tag = ring::hmac::sign(&key, token.as_bytes());
        Token { key, tag }
    }

    pub(crate) fn matches(&self, candidate: &str) -> bool {
        ring::hmac::verify(&self.key, candidate.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// The sessions' configuration: [`HubConfig`]'s defaults, named `instance_id`, with the
/// `OPENFLUME_HUB_*` variables that are set (see the module docs).
pub(crate) fn config_from_env(instance_id: String) -> Result<HubConfig, UsageError> {
    let read = |name: &str| -> Result<Option<u64>, UsageError> {
        let Ok(text) = std::env::var(name) else {
            return Ok(None);
        };
        match text.trim().parse::<u64>() {
            Ok(value) if value > 0 => Ok(Some(value)),
            _ => Err(UsageError(format!(
                "{name}: {text:?} is not a positive whole number"
            ))),
        }
    };
    let mut config = HubConfig::new(instance_id);
    if let Some(frames) = read("OPENFLUME_HUB_SEND_QUEUE")? {
        config.send_queue = usize::try_from(frames).unwrap_or(usize::MAX);
    }
    if let Some(ms) = read("OPENFLUME_HUB_STALL_TIMEOUT_MS")? {
        config.stall_timeout_ms = ms;
    }
    if let Some(ms) = read("OPENFLUME_HUB_PING_INTERVAL_MS")? {
        config.ping_interval_ms = ms;
    }
    if let Some(ms) = read("OPENFLUME_HUB_HELLO_TIMEOUT_MS")? {
        config.hello_timeout_ms = ms;
    }
    Ok(config)
}

/// Upgrades the connection and runs the client's session until it closes.
pub(crate) async fn serve(
    server: Arc<Server>,
    mut stream: Socket,
    request: &ReceivedRequest,
    leftover: Vec<u8>,
) {
    let upgrade = request
        .header("Upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let key = request.header("Sec-WebSocket-Key");
    let (true, Some(key), "GET") = (upgrade, key, request.method.as_str()) else {
        let refusal = Answer::text(426, "Upgrade Required", "a WebSocket upgrade is required\n")
            .header("Upgrade", "websocket");
        return answer(&mut stream, refusal).await;
    };
    let peer = stream
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |addr| addr.to_string());
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Only the hub's own protocol is ever selected: the token one is not echoed.
    let protocol = if offers_protocol(request) {
        format!("Sec-WebSocket-Protocol: {PROTOCOL}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // The transport reads no client message larger than the session accepts, so a client cannot
    // make the hub buffer more than that; above it the session closes with 1009
    // (`HubInput::Oversized`). Its read buffer is small: clients send a hello, acks and
    // subscription changes, and tungstenite's default (128 KiB, zero-filled, so resident) made
    // most of a subscriber's memory.
    let limit = server.hub.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let addr = stream.get_ref().peer_addr().ok();
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    server.clients.fetch_add(1, Ordering::AcqRel);
    let subscription = server.ops.subscribers.join(addr);
    match &server.redis_hub {
        Some(stream) => run(&server, socket, &peer, &subscription, &**stream).await,
        None => {
            let store = FedLog {
                log: &server.log,
                feed: &server.feed,
                _attached: server.feed.attach(),
            };
            run(&server, socket, &peer, &subscription, &store).await
        }
    }
    drop(subscription);
    server.clients.fetch_sub(1, Ordering::AcqRel);
    server.left.notify(usize::MAX);
}

/// Where a hub session reads: the items in order, what is committed, and the named consumers'
/// cursors, all counted in one kind of position.
pub(crate) trait HubStore {
    /// The log's positions.
    type Position: HubPosition;

    /// The last committed position, as far as this process knows.
    fn committed(&self) -> Self::Position;

    /// Resolves once something beyond `after` is committed (or may be: a spurious wake costs one
    /// read).
    async fn committed_beyond(&self, after: Self::Position);

    /// The answer to [`HubOutput::ReadLog`]: a [`HubInput::Read`], or why the log cannot be
    /// read.
    async fn read(
        &self,
        after: Self::Position,
        until: Self::Position,
        limit: usize,
        filter: &Filter,
    ) -> Result<HubInput<Self::Position>, String>;

    /// A named consumer's last acknowledged position, `None` for a new one; `Err` (why) when it
    /// cannot be read: the session then closes (1011) rather than start the consumer at the end
    /// and skip what it has not acknowledged.
    async fn consumer(&self, name: &str) -> Result<Option<Self::Position>, String>;

    /// Stores a named consumer's cumulative acknowledgement; `Err` (why) when it was not stored
    /// (not fatal: the consumer gets those items again after a reconnect).
    async fn ack_consumer(&self, name: &str, position: Self::Position) -> Result<(), String>;

    /// The position as `/metrics` counts a client's lag, if it can.
    fn metric(position: Self::Position) -> Option<u64>;
}

/// The SQLite log as `serve`'s sessions read it: through the shared [`HubFeed`] (live items read
/// and rendered once for every session; older ones from the log, a few reads at a time).
pub(crate) struct FedLog<'a> {
    pub(crate) log: &'a EventLog,
    pub(crate) feed: &'a HubFeed,
    /// Keeps the feed reading while this session lives.
    pub(crate) _attached: Attached<'a>,
}

impl HubStore for FedLog<'_> {
    type Position = u64;

    /// What the feed has read: a session is told of what it can be answered from the ring.
    fn committed(&self) -> u64 {
        self.feed.covered()
    }

    async fn committed_beyond(&self, after: u64) {
        self.feed.covered_beyond(after).await;
    }

    async fn read(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<HubInput, String> {
        self.feed
            .answer(self.log, after, until, limit, filter)
            .await
            .map_err(|error| format!("cannot read the log ({error}); resume after event {after}"))
    }

    async fn consumer(&self, name: &str) -> Result<Option<u64>, String> {
        let (reader, name) = (self.log.clone(), name.to_owned());
        smol::unblock(move || reader.consumer(&name))
            .await
            .map(|acked| acked.map(|id| id.0))
            .map_err(|error| error.to_string())
    }

    async fn ack_consumer(&self, name: &str, position: u64) -> Result<(), String> {
        let (reader, name) = (self.log.clone(), name.to_owned());
        smol::unblock(move || reader.ack_consumer(&name, EventId(position)))
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    fn metric(position: u64) -> Option<u64> {
        Some(position)
    }
}

/// What woke the session.
enum Wake {
    Client(Option<Result<Message, WsError>>),
    /// The writer wrote this many text frames; `None` once it stopped (a write failed).
    Written(Option<usize>),
    Committed,
    Timer,
    Shutdown,
}

async fn run<S: HubStore>(
    server: &Server,
    socket: WebSocketStream<Socket>,
    peer: &str,
    subscription: &Subscription<'_>,
    log: &S,
) {
    let clock = crate::clock::Clock::new();
    let (sender, mut receiver) = socket.split();
    // Unbounded, but the session queues at most its send queue of frames, plus
    // `hub::MAX_QUEUED_ANSWERS` answers and the close, before `Sent` comes back, and this task
    // at most one ping (`ping_queued`).
    let (frames, queue) = smol::channel::unbounded();
    let (written_tx, written) = smol::channel::unbounded();
    let ping_queued = Arc::new(AtomicBool::new(false));
    let writer = smol::spawn(write_frames(sender, queue, written_tx, ping_queued.clone()));
    let mut session = HubSession::<S::Position>::counting(server.hub.clone());
    let mut told = log.committed();
    let mut inputs = VecDeque::from([HubInput::Start { committed: told }]);
    let mut shut_down = false;
    loop {
        // One input, then every output it caused (the drain rule); inputs the outputs produce
        // (reads, lookups) wait their turn.
        while let Some(input) = inputs.pop_front() {
            session.handle_input(now(&clock), input);
            while let Some(output) = session.poll_output() {
                let close = match output {
                    HubOutput::Send(text) => {
                        if frames
                            .try_send(super::hub_feed::text_message(text))
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    HubOutput::Ping => {
                        // A ping still unwritten means the client reads nothing (its pongs
                        // come unasked): another one would only grow the queue.
                        if !ping_queued.swap(true, Ordering::AcqRel)
                            && frames.try_send(Message::Ping(WsBytes::new())).is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    HubOutput::Close { code, reason } => {
                        if !shut_down {
                            report(format_args!(
                                "hub client {peer} closed with {code}: {reason}"
                            ));
                        }
                        (code, reason)
                    }
                    HubOutput::ReadLog {
                        after,
                        until,
                        limit,
                        filter,
                    } => match log.read(after, until, limit, &filter).await {
                        Ok(read) => {
                            inputs.push_back(read);
                            continue;
                        }
                        Err(reason) => {
                            report(format_args!("hub client {peer}: {reason}"));
                            (1011, reason)
                        }
                    },
                    HubOutput::LookupConsumer { name } => match log.consumer(&name).await {
                        Ok(acked) => {
                            inputs.push_back(HubInput::Consumer { acked });
                            continue;
                        }
                        // Not "a new consumer": that would start it at the end and skip what
                        // it has not acknowledged. It tries again later.
                        Err(error) => {
                            report(format_args!("hub client {peer}: {error}"));
                            (1011, "cannot read the consumer's cursor".to_owned())
                        }
                    },
                    HubOutput::AckConsumer { name, event_id } => {
                        // Not fatal: the consumer gets those items again after a reconnect.
                        if let Err(error) = log.ack_consumer(&name, event_id).await {
                            report(format_args!(
                                "hub client {peer}: the ack was not stored: {error}"
                            ));
                        }
                        continue;
                    }
                };
                let (code, reason) = close;
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = frames.try_send(Message::Close(Some(frame)));
                return close_after_flush(writer, receiver).await;
            }
        }
        // For /metrics: how far this client got.
        subscription.publish(session.position().and_then(S::metric), session.consumer());
        let deadline = session.poll_timeout();
        let wake = future::or(
            async { Wake::Client(receiver.next().await) },
            future::or(
                async { Wake::Written(written.recv().await.ok()) },
                future::or(
                    async {
                        log.committed_beyond(told).await;
                        Wake::Committed
                    },
                    future::or(
                        async {
                            match deadline {
                                Some(at) => {
                                    async_io::Timer::at(clock.instant_at(at)).await;
                                }
                                None => future::pending::<()>().await,
                            }
                            Wake::Timer
                        },
                        async {
                            if shut_down {
                                future::pending::<()>().await;
                            }
                            loop {
                                let stopped = server.stopped.listen();
                                if server.stopping.load(Ordering::Acquire) {
                                    break;
                                }
                                stopped.await;
                            }
                            Wake::Shutdown
                        },
                    ),
                ),
            ),
        )
        .await;
        match wake {
            Wake::Client(Some(Ok(message))) => match message {
                Message::Text(text) => inputs.push_back(HubInput::Text(text.as_str().to_owned())),
                Message::Binary(_) => inputs.push_back(HubInput::Binary),
                Message::Pong(_) => inputs.push_back(HubInput::Pong),
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Frame(_) => {}
                Message::Close(_) => {
                    // tungstenite queued the answer to the client's close; the next read writes
                    // it, then reports the end.
                    future::or(
                        async {
                            receiver.next().await;
                        },
                        async {
                            async_io::Timer::after(CLOSE_TIMEOUT).await;
                        },
                    )
                    .await;
                    return;
                }
            },
            Wake::Client(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                size,
                ..
            })))) => inputs.push_back(HubInput::Oversized { size }),
            Wake::Client(_) | Wake::Written(None) => return,
            Wake::Written(Some(first)) => {
                let mut count = first;
                while let Ok(more) = written.try_recv() {
                    count += more;
                }
                inputs.push_back(HubInput::Sent { frames: count });
            }
            Wake::Committed => {
                told = log.committed();
                inputs.push_back(HubInput::Committed { last_id: told });
            }
            Wake::Timer => inputs.push_back(HubInput::Timer),
            Wake::Shutdown => {
                shut_down = true;
                inputs.push_back(HubInput::Shutdown);
            }
        }
    }
}

/// Writes the session's frames in order, and counts the text frames written on `written` (the
/// session's [`HubInput::Sent`]). Stops after the close frame or a failed write, and gives the
/// sender back for the closing.
async fn write_frames(
    mut sender: WebSocketSender<Socket>,
    queue: Receiver<Message>,
    written: Sender<usize>,
    ping_queued: Arc<AtomicBool>,
) -> WebSocketSender<Socket> {
    while let Ok(message) = queue.recv().await {
        let text = matches!(message, Message::Text(_));
        let ping = matches!(message, Message::Ping(_));
        let close = matches!(message, Message::Close(_));
        if sender.send(message).await.is_err() || close {
            break;
        }
        if text {
            let _ = written.try_send(1);
        }
        if ping {
            ping_queued.store(false, Ordering::Release);
        }
    }
    sender
}

/// Ends the connection once a close frame is queued. The writer gets [`CLOSE_FLUSH`] to write
/// what was queued before it and then the close frame; then our side of the TCP connection is
/// shut and whatever the client still sends (its close answer, the rest of a frame too large to
/// read) is read and dropped until it closes too, for at most [`CLOSE_TIMEOUT`]: closing a
/// socket with unread bytes sends a reset, and a reset can destroy the close frame before the
/// client reads it.
async fn close_after_flush(
    writer: smol::Task<WebSocketSender<Socket>>,
    receiver: WebSocketReceiver<Socket>,
) {
    let flushed = future::or(async { Some(writer.await) }, async {
        async_io::Timer::after(CLOSE_FLUSH).await;
        None
    })
    .await;
    let Some(sender) = flushed else {
        return;
    };
    let Ok(socket) = WebSocketStream::reunite(sender, receiver) else {
        return;
    };
    let mut stream = socket.into_inner();
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let mut dropped = [0; 4096];
    future::or(
        async { while let Ok(1..) = stream.read(&mut dropped).await {} },
        async {
            async_io::Timer::after(CLOSE_TIMEOUT).await;
        },
    )
    .await;
}

fn now(clock: &crate::clock::Clock) -> Now {
    clock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_offered_as_a_subprotocol_is_read_from_its_hex() {
        let offered = |header: &str| token_from_protocols(Some(header));
        // "s3cret" in UTF-8 hex.
        assert_eq!(
            offered("openflume.v1, openflume.token.733363726574").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            offered("openflume.token.733363726574").as_deref(),
            Some("s3cret")
        );
        assert_eq!(offered("openflume.v1"), None);
        assert_eq!(offered("openflume.token."), None);
        assert_eq!(offered("openflume.token.7"), None, "odd length");
        assert_eq!(offered("openflume.token.zz"), None, "not hex");
        assert_eq!(offered("openflume.token.ff"), None, "not UTF-8");
        assert_eq!(token_from_protocols(None), None);
    }
}
