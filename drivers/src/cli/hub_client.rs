//! One hub client on `serve`'s `/ws`: the WebSocket handshake on the request the webhook
//! ingress handed off, then a [`HubSession`] driven against the durable log.
//!
//! The session decides everything (hello, replay, the seam, acks, close codes); this task only
//! moves frames, reads the log when asked ([`HubOutput::ReadLog`]), wakes the session when the
//! log commits more ([`EventLog::committed_beyond`]), and keeps its timer. The log is a
//! [`HubStore`]: the SQLite log here, or a Redis Stream (`serve --sink redis://…`,
//! [`crate::redis::hub`]).

use super::ops::Subscription;
use super::serve::{Answer, Server, answer};
use async_io::Async;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::{AsyncWriteExt, StreamExt, future};
use openflume_log::{EventId, EventLog, Filter as LogFilter};
use openflume_proto::http::ReceivedRequest;
use openflume_proto::hub::{
    Filter, HubConfig, HubInput, HubOutput, HubPosition, HubSession, StoredItem,
};
use openflume_proto::{Item, Now};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Largest client message: the session closes with 1009 above its own limit (64 KiB) already.
const MAX_MESSAGE: usize = 1 << 20;
/// After the close frame, how long the client gets to answer it.
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

/// Upgrades the connection and runs the client's session until it closes.
pub(crate) async fn serve(
    server: Arc<Server>,
    mut stream: Async<TcpStream>,
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
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let peer = stream.get_ref().peer_addr().ok();
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    server.clients.fetch_add(1, Ordering::AcqRel);
    let subscription = server.ops.subscribers.join(peer);
    match &server.redis_hub {
        Some(stream) => run(&server, socket, &subscription, &**stream).await,
        None => run(&server, socket, &subscription, &server.log).await,
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

    /// A named consumer's last acknowledged position, `None` for a new one.
    async fn consumer(&self, name: &str) -> Option<Self::Position>;

    /// Stores a named consumer's cumulative acknowledgement.
    async fn ack_consumer(&self, name: &str, position: Self::Position);

    /// The position as `/metrics` counts a client's lag, if it can.
    fn metric(position: Self::Position) -> Option<u64>;
}

impl HubStore for EventLog {
    type Position = u64;

    fn committed(&self) -> u64 {
        self.committed_id().0
    }

    async fn committed_beyond(&self, after: u64) {
        EventLog::committed_beyond(self, EventId(after)).await;
    }

    async fn read(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<HubInput, String> {
        let log_filter = LogFilter {
            sources: filter.sources.clone(),
            types: None,
        };
        let reader = self.clone();
        let entries = smol::unblock(move || reader.read_after(EventId(after), limit, &log_filter))
            .await
            .map_err(|_| format!("cannot read the log; resume after event {after}"))?;
        let full = entries.len() >= limit;
        let mut items = Vec::with_capacity(entries.len());
        let mut cut = false;
        for entry in entries {
            if entry.event_id.0 > until {
                cut = true;
                break;
            }
            // The stored line is an item `listen` printed: it parses back.
            if let Ok(item) = serde_json::from_str::<Item>(&entry.record.json) {
                items.push(StoredItem {
                    event_id: entry.event_id.0,
                    item,
                });
            }
        }
        let up_to = match items.last() {
            Some(last) if full && !cut => last.event_id,
            _ => until,
        };
        Ok(HubInput::Read { items, up_to })
    }

    async fn consumer(&self, name: &str) -> Option<u64> {
        EventLog::consumer(self, name).ok().flatten().map(|id| id.0)
    }

    async fn ack_consumer(&self, name: &str, position: u64) {
        let _ = EventLog::ack_consumer(self, name, EventId(position));
    }

    fn metric(position: u64) -> Option<u64> {
        Some(position)
    }
}

/// What woke the session.
enum Wake {
    Client(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Committed,
    Timer,
    Shutdown,
}

async fn run<S: HubStore>(
    server: &Server,
    socket: WebSocketStream<Async<TcpStream>>,
    subscription: &Subscription<'_>,
    log: &S,
) {
    let clock = crate::clock::Clock::new();
    let (mut sender, mut receiver) = socket.split();
    let mut session =
        HubSession::<S::Position>::counting(HubConfig::new(server.instance_id.clone()));
    let mut told = log.committed();
    let mut inputs = VecDeque::from([HubInput::Start { committed: told }]);
    let mut shut_down = false;
    loop {
        // One input, then every output it caused (the drain rule); inputs the outputs produce
        // (reads, written frames) wait their turn.
        while let Some(input) = inputs.pop_front() {
            session.handle_input(now(&clock), input);
            while let Some(output) = session.poll_output() {
                match output {
                    HubOutput::Send(text) => {
                        if sender.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                        inputs.push_back(HubInput::Sent { frames: 1 });
                    }
                    HubOutput::Ping => {
                        if sender.send(Message::Ping(WsBytes::new())).await.is_err() {
                            return;
                        }
                    }
                    HubOutput::Close { code, reason } => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        let _ = sender.close(Some(frame)).await;
                        // The client answers the close; then TCP goes.
                        future::or(async { while receiver.next().await.is_some() {} }, async {
                            async_io::Timer::after(CLOSE_TIMEOUT).await;
                        })
                        .await;
                        return;
                    }
                    HubOutput::ReadLog {
                        after,
                        until,
                        limit,
                        filter,
                    } => match log.read(after, until, limit, &filter).await {
                        Ok(read) => inputs.push_back(read),
                        Err(reason) => {
                            let frame = CloseFrame {
                                code: CloseCode::from(1011),
                                reason: reason.into(),
                            };
                            let _ = sender.close(Some(frame)).await;
                            return;
                        }
                    },
                    HubOutput::LookupConsumer { name } => {
                        let acked = log.consumer(&name).await;
                        inputs.push_back(HubInput::Consumer { acked });
                    }
                    HubOutput::AckConsumer { name, event_id } => {
                        log.ack_consumer(&name, event_id).await;
                    }
                }
            }
        }
        if session.is_closed() {
            return;
        }
        // For /metrics: how far this client got.
        subscription.publish(session.position().and_then(S::metric), session.consumer());
        let deadline = session.poll_timeout();
        let wake = future::or(
            async { Wake::Client(receiver.next().await) },
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
        )
        .await;
        match wake {
            Wake::Client(Some(Ok(message))) => match message {
                Message::Text(text) => inputs.push_back(HubInput::Text(text.as_str().to_owned())),
                Message::Binary(_) => inputs.push_back(HubInput::Binary),
                Message::Pong(_) => inputs.push_back(HubInput::Pong),
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Frame(_) => {}
                Message::Close(_) => return,
            },
            Wake::Client(_) => return,
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
