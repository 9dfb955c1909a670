//! # The Discord shard on a hand-written executor
//!
//! [`DiscordShard`] is sans-IO: it never awaits, spawns or reads a clock, so it runs under any
//! executor. Here the executor is the fifteen-line `block_on` below (std's `Wake` and thread
//! parking): no smol executor, no spawned task. The whole driver is one future that feeds the
//! shard one input, drains its outputs, then waits for whichever comes first, a WebSocket message
//! or the shard's `poll_timeout()`. Sockets and timers come from async-io, the WebSocket from
//! async-tungstenite; on tokio you would swap exactly those three calls (connect, handshake,
//! timer) for tokio's and keep the loop.
//!
//! By default it connects to a Discord simulator started in-process (it runs on smol's threads,
//! the shard does not) that sends two messages a second and asks for a reconnect (op 7) after two
//! seconds, so the run shows a close, a new connection and a RESUME with replayed events too.
//! `OPENFLUME_DISCORD_GATEWAY_URL` and `DISCORD_BOT_TOKEN` point it elsewhere; plain `ws://`
//! only, TLS is out of scope here.
//!
//! ```text
//! cargo run -p openflume --example discord_other_executor -- [COUNT]
//! ```
//!
//! It prints each dispatch (READY and GUILD_CREATE included) as one JSON line on stdout, logs
//! and status on stderr, and closes the session (1000) after COUNT dispatches (default 10).

// A demo: it panics with a message when the simulator cannot start or the loop misuses the shard.
#![allow(clippy::expect_used)]

use async_io::{Async, Timer};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::StreamExt;
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::url::Url;
use openflume_proto::{Bytes, ConnId, Frame, Input, Machine, Millis, Now, Output, UnixMillis};
use openflume_sim::{DiscordAction, DiscordSim, DiscordSimConfig, Scenario};
use std::collections::VecDeque;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Socket = WebSocketStream<Async<TcpStream>>;

/// The whole executor: poll the future; while it is pending, park until its waker unparks us.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Opens the WebSocket (plain `ws://`), bounded by a timeout.
async fn connect(url: &str) -> Result<Socket, String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    if parsed.tls() {
        return Err("wss:// needs TLS, which this example leaves out".into());
    }
    let open = async {
        let addr = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()?
            .next();
        let tcp = Async::<TcpStream>::connect(addr.ok_or("no address")?).await?;
        Ok::<_, Box<dyn std::error::Error>>(async_tungstenite::client_async(url, tcp).await?.0)
    };
    let timeout = async {
        Timer::after(Duration::from_secs(15)).await;
        Err("timed out".into())
    };
    futures_lite::future::or(open, timeout)
        .await
        .map_err(|e| e.to_string())
}

/// `None` for a kind of frame newer than this example (`Frame` is `#[non_exhaustive]`).
fn to_message(frame: Frame) -> Option<Message> {
    Some(match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(bytes) => Message::binary(bytes.0),
        Frame::Ping(bytes) => Message::Ping(WsBytes::from(bytes.0)),
        Frame::Pong(bytes) => Message::Pong(WsBytes::from(bytes.0)),
        _ => return None,
    })
}

/// The next message on `conn` as a shard input.
async fn receive(conn: ConnId, socket: &mut Socket) -> Input {
    let closed = |code, reason: String| Input::Closed { conn, code, reason };
    loop {
        let frame = match socket.next().await {
            Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Frame::Binary(Bytes(bytes.to_vec())),
            // tungstenite answers pings itself; the shard only hears about them.
            Some(Ok(Message::Ping(bytes))) => Frame::Ping(Bytes(bytes.to_vec())),
            Some(Ok(Message::Pong(bytes))) => Frame::Pong(Bytes(bytes.to_vec())),
            Some(Ok(Message::Close(Some(f)))) => {
                return closed(Some(f.code.into()), f.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => return closed(None, String::new()),
            Some(Ok(Message::Frame(_))) => continue,
            Some(Err(error)) => return closed(None, error.to_string()),
            None => return closed(None, "connection closed".into()),
        };
        // Handed over at once: the read time is the handling time.
        return Input::Frame {
            conn,
            frame,
            arrived: None,
        };
    }
}

async fn run(mut shard: DiscordShard, count: usize) {
    let origin = Instant::now();
    let now = || Now {
        mono: Millis(origin.elapsed().as_millis() as u64),
        wall: UnixMillis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
    };
    let mut socket: Option<(ConnId, Socket)> = None;
    let mut inputs = VecDeque::from([Input::Start]);
    let (mut events, mut stopping) = (0, false);
    loop {
        // Feed one input at a time and drain every output it caused (the drain rule).
        while let Some(input) = inputs.pop_front() {
            shard
                .handle_input(now(), input)
                .expect("the loop follows the Machine contract");
            while let Some(output) = shard.poll_output() {
                let live = |conn| matches!(&socket, Some((c, _)) if *c == conn);
                match output {
                    Output::Connect { conn, url } => inputs.push_back(match connect(&url).await {
                        Ok(opened) => {
                            socket = Some((conn, opened)); // replaces any abandoned connection
                            Input::Opened { conn }
                        }
                        Err(error) => Input::ConnectFailed { conn, error },
                    }),
                    Output::Send { conn, frame } if live(conn) => {
                        match (&mut socket, to_message(frame)) {
                            // A failed send shows up as the read side closing; reported there.
                            (Some((_, ws)), Some(message)) => {
                                let _ = ws.send(message).await;
                            }
                            (_, None) => eprintln!("ignored a frame this example cannot send"),
                            (None, _) => {}
                        }
                    }
                    // Send our close frame; the server's answer arrives as Message::Close.
                    Output::Close { conn, code, reason } if live(conn) => {
                        if let Some((_, ws)) = &mut socket {
                            let frame = CloseFrame {
                                code: code.into(),
                                reason: reason.into(),
                            };
                            let _ = ws.close(Some(frame)).await;
                        }
                    }
                    Output::Emit { event, .. } => {
                        println!("{}", serde_json::to_string(&event).expect("JSON"));
                        events += 1;
                    }
                    Output::Log(log) => {
                        eprintln!("[{}] {}: {}", log.level.as_str(), log.action, log.message)
                    }
                    Output::Status(change) => eprintln!("status: {} → {}", change.from, change.to),
                    // With `gateway_url` set the shard skips GET /gateway/bot: no HTTP at all.
                    Output::Request { req, .. } => inputs.push_back(Input::RequestFailed {
                        req,
                        error: "this example makes no HTTP requests".into(),
                    }),
                    // Outputs for a stale connection, and outputs newer than this example
                    // (`Output` is `#[non_exhaustive]`): nothing to carry out.
                    other => eprintln!("ignored: {other:?}"),
                }
            }
        }
        if shard.is_finished() {
            break;
        }
        if !stopping && events >= count {
            stopping = true;
            inputs.push_back(Input::Shutdown {
                keep_session: false,
            });
            continue;
        }
        // Wait for the first of: a message on the socket, the shard's next deadline.
        let deadline = shard.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => Timer::at(origin + Duration::from_millis(at.0)).await,
                None => futures_lite::future::pending().await,
            };
            Input::Timer
        };
        let inbound = async {
            match &mut socket {
                Some((conn, ws)) => receive(*conn, ws).await,
                None => futures_lite::future::pending().await,
            }
        };
        let input = futures_lite::future::or(inbound, timer).await;
        if matches!(input, Input::Closed { .. }) {
            socket = None;
        }
        inputs.push_back(input);
    }
    eprintln!("stopped after {events} dispatches: {}", shard.status());
}

fn main() {
    let count = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    // Without a gateway URL, run the Discord simulator in-process (on smol's executor threads).
    let (_sim, gateway_url, token) = match std::env::var("OPENFLUME_DISCORD_GATEWAY_URL") {
        Ok(url) => (
            None,
            url,
            std::env::var("DISCORD_BOT_TOKEN").unwrap_or_default(),
        ),
        Err(_) => {
            let config = DiscordSimConfig {
                heartbeat_interval: Duration::from_secs(2),
                scenario: Scenario::steady(2.0)
                    .at(Duration::from_secs(2), DiscordAction::Reconnect),
                ..DiscordSimConfig::default()
            };
            let sim =
                smol::block_on(DiscordSim::start(config)).expect("start the Discord simulator");
            let (url, token) = (sim.gateway_url(), sim.token().to_owned());
            (Some(sim), url, token)
        }
    };
    let config = DiscordConfig {
        gateway_url: Some(gateway_url),
        ..DiscordConfig::new(token)
    };
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), "seed");
    let shard = DiscordShard::new(config, seed).expect("a valid configuration");
    block_on(run(shard, count));
}
