//! One hub client on `serve`'s `/ws`: the WebSocket handshake on the request the webhook
//! ingress handed off, then a [`HubSession`] driven against the durable log.
//!
//! The session decides everything (hello, replay, the seam, acks, close codes); this task only
//! moves frames, reads the log when asked ([`HubOutput::ReadLog`]), wakes the session when the
//! log commits more ([`EventLog::committed_beyond`]), and keeps its timer.
//!
//! The session's bounds and timers come from the environment, read once at start
//! ([`config_from_env`]): `OPENFLUME_HUB_SEND_QUEUE` (frames), `OPENFLUME_HUB_STALL_TIMEOUT_MS`,
//! `OPENFLUME_HUB_PING_INTERVAL_MS` and `OPENFLUME_HUB_HELLO_TIMEOUT_MS`; the defaults are
//! [`HubConfig`]'s.

use super::UsageError;
use super::serve::{Answer, Server, answer};
use async_io::Async;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::{AsyncWriteExt, StreamExt, future};
use openflume_log::{EventId, Filter as LogFilter};
use openflume_proto::http::ReceivedRequest;
use openflume_proto::hub::{HubConfig, HubInput, HubOutput, HubSession, StoredItem};
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
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    server.clients.fetch_add(1, Ordering::AcqRel);
    run(&server, socket).await;
    server.clients.fetch_sub(1, Ordering::AcqRel);
    server.left.notify(usize::MAX);
}

/// What woke the session.
enum Wake {
    Client(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Committed,
    Timer,
    Shutdown,
}

async fn run(server: &Server, socket: WebSocketStream<Async<TcpStream>>) {
    let clock = crate::clock::Clock::new();
    let log = &server.log;
    let (mut sender, mut receiver) = socket.split();
    let mut session = HubSession::new(server.hub.clone());
    let mut told = log.committed_id().0;
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
                    } => {
                        let log_filter = LogFilter {
                            sources: filter.sources.clone(),
                            types: None,
                        };
                        let reader = log.clone();
                        let read = smol::unblock(move || {
                            reader.read_after(EventId(after), limit, &log_filter)
                        })
                        .await;
                        let Ok(entries) = read else {
                            let frame = CloseFrame {
                                code: CloseCode::from(1011),
                                reason: format!("cannot read the log; resume after event {after}")
                                    .into(),
                            };
                            let _ = sender.close(Some(frame)).await;
                            return;
                        };
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
                        inputs.push_back(HubInput::Read { items, up_to });
                    }
                    HubOutput::LookupConsumer { name } => {
                        let acked = log.consumer(&name).ok().flatten().map(|id| id.0);
                        inputs.push_back(HubInput::Consumer { acked });
                    }
                    HubOutput::AckConsumer { name, event_id } => {
                        let _ = log.ack_consumer(&name, EventId(event_id));
                    }
                }
            }
        }
        if session.is_closed() {
            return;
        }
        let deadline = session.poll_timeout();
        let wake = future::or(
            async { Wake::Client(receiver.next().await) },
            future::or(
                async {
                    log.committed_beyond(EventId(told)).await;
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
                told = log.committed_id().0;
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
