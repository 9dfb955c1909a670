//! One WebSocket connection as a task: opens it, reports every frame and the close to the driver
//! loop as machine inputs, and performs the sends and closes the machine asks for.
//!
//! Each frame carries the time this task read it (`Input::Frame::arrived`): under back-pressure
//! it may wait in the driver's input queue for seconds before the machine sees it, and peer
//! deadlines (Slack's 3 s ack window) run from the read, not from the hand-over. Time a frame
//! spends in the kernel's socket buffer before the read is invisible here.

use crate::clock::Clock;
use crate::net::{self, TlsConfig};
use crate::proxy::ProxySetting;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Error as WsError, Message};
use futures_lite::StreamExt;
use openflume_proto::url::Url;
use openflume_proto::{Bytes, ConnId, Frame, Input};
use smol::channel::{Receiver, Sender};
use std::time::Duration;

/// The WebSocket read buffer: a socket read fills at most this much.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// What the driver asks of a live connection.
#[derive(Debug)]
pub(crate) enum WsCommand {
    /// A frame already in tungstenite's form ([`message`]), so a frame kind this driver cannot
    /// carry is caught by the driver, which can log it, rather than here.
    Send(Message),
    Close {
        code: u16,
        reason: String,
    },
}

/// Limits, timeouts and TLS roots for WebSocket connections.
#[derive(Clone, Debug)]
pub(crate) struct WsSettings {
    /// Largest message accepted from the peer; a larger one closes the connection (1009).
    pub(crate) max_message_bytes: usize,
    /// TCP connect, TLS and WebSocket handshake, each.
    pub(crate) connect_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    pub(crate) close_timeout: Duration,
    /// The roots `wss://` trusts.
    pub(crate) tls: TlsConfig,
    /// The proxies connections go through (from the environment).
    pub(crate) proxies: ProxySetting,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            max_message_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            tls: net::default_tls_config(),
            proxies: crate::proxy::from_env(),
        }
    }
}

/// Runs connection `conn` to `url` until it closes, reporting to `inputs`.
pub(crate) async fn run(
    conn: ConnId,
    url: String,
    settings: WsSettings,
    clock: Clock,
    commands: Receiver<WsCommand>,
    inputs: Sender<Input>,
) {
    let input = match connect_and_serve(conn, &url, settings, clock, &commands, &inputs).await {
        Ok(closed) => closed,
        Err(ConnectError(error)) => Input::ConnectFailed { conn, error },
    };
    // The driver may be gone during shutdown; nothing left to tell then.
    let _ = inputs.send(input).await;
}

struct ConnectError(String);

async fn connect_and_serve(
    conn: ConnId,
    url_text: &str,
    settings: WsSettings,
    clock: Clock,
    commands: &Receiver<WsCommand>,
    inputs: &Sender<Input>,
) -> Result<Input, ConnectError> {
    let url =
        Url::parse(url_text).map_err(|e| ConnectError(format!("invalid WebSocket URL: {e}")))?;
    if !matches!(url.scheme.as_str(), "ws" | "wss") {
        return Err(ConnectError(format!(
            "not a WebSocket URL (scheme {})",
            url.scheme
        )));
    }
    let stream = net::connect(
        &url.host,
        url.port,
        url.tls().then_some(&settings.tls),
        &settings.proxies,
        settings.connect_timeout,
    )
    .await
    .map_err(|e| ConnectError(e.to_string()))?;
    let config = WebSocketConfig::default()
        // tungstenite's default 128 KiB read buffer is all resident under load and moves its
        // unread tail on every refill; Gateway frames are a few KiB, larger ones grow it.
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(settings.max_message_bytes))
        .max_frame_size(Some(settings.max_message_bytes));
    let handshake = async_tungstenite::client_async_with_config(url_text, stream, Some(config));
    let (socket, _response) = futures_lite::future::or(
        async { handshake.await.map_err(|e| e.to_string()) },
        async {
            async_io::Timer::after(settings.connect_timeout).await;
            Err(format!(
                "WebSocket handshake timed out after {} ms",
                settings.connect_timeout.as_millis()
            ))
        },
    )
    .await
    // Handshake errors can echo the request URL, which may carry a single-use ticket.
    .map_err(|e| ConnectError(e.replace(url_text, &openflume_proto::redact::url(url_text))))?;

    if inputs.send(Input::Opened { conn }).await.is_err() {
        return Ok(closed(conn, None, "driver stopped"));
    }
    let (mut sender, mut receiver) = socket.split();

    enum Next {
        Inbound(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
        Command(Option<WsCommand>),
    }
    // A close the driver asked for while a frame was being handed over; done once it is.
    let mut deferred_close = None;
    loop {
        let next = match deferred_close.take() {
            Some(close) => Next::Command(Some(close)),
            None => {
                futures_lite::future::or(async { Next::Inbound(receiver.next().await) }, async {
                    Next::Command(commands.recv().await.ok())
                })
                .await
            }
        };
        match next {
            Next::Inbound(Some(Ok(message))) => {
                let arrived = Some(clock.mono());
                let frame = match message {
                    Message::Text(text) => Frame::Text(text.as_str().to_owned()),
                    Message::Binary(bytes) => Frame::Binary(Bytes(bytes.to_vec())),
                    Message::Ping(bytes) => Frame::Ping(Bytes(bytes.to_vec())),
                    Message::Pong(bytes) => Frame::Pong(Bytes(bytes.to_vec())),
                    Message::Close(frame) => {
                        // RFC 6455 §5.5.1: answer the peer's close (tungstenite queued the echo
                        // of its code, and the next read flushes it), then let the peer drop
                        // TCP first, as the server should.
                        let (code, reason) = close_parts(frame);
                        futures_lite::future::or(
                            async { while receiver.next().await.is_some() {} },
                            async {
                                async_io::Timer::after(settings.close_timeout).await;
                            },
                        )
                        .await;
                        return Ok(closed(conn, code, &reason));
                    }
                    Message::Frame(_) => continue,
                };
                let input = Input::Frame {
                    conn,
                    frame,
                    arrived,
                };
                match forward(input, inputs, commands, &mut sender, &mut deferred_close).await {
                    Forwarded::Yes => {}
                    Forwarded::DriverGone => return Ok(closed(conn, None, "driver stopped")),
                    Forwarded::SendFailed(error) => {
                        return Ok(closed(conn, None, &format!("send failed: {error}")));
                    }
                }
            }
            Next::Inbound(Some(Err(error))) => {
                // A protocol fault of the peer's gets the close code the RFC names for it before
                // TCP goes, and the log names the fault, not a lost connection.
                let (fault, code) = describe_read_error(&error);
                let reason = match code {
                    Some(code) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: close_reason_for(code).into(),
                        };
                        send_close(&mut sender, frame, settings.close_timeout).await;
                        format!("{fault} (closed with {code})")
                    }
                    None => fault,
                };
                return Ok(closed(conn, None, &reason));
            }
            Next::Inbound(None) => {
                return Ok(closed(
                    conn,
                    None,
                    "connection closed without a close frame",
                ));
            }
            Next::Command(Some(WsCommand::Send(frame))) => {
                if let Err(error) = sender.send(frame).await {
                    return Ok(closed(conn, None, &format!("send failed: {error}")));
                }
            }
            Next::Command(Some(WsCommand::Close { code, reason })) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.clone().into(),
                };
                let _ = sender.close(Some(frame)).await;
                // Wait for the peer's close frame so the close handshake completes, but not forever.
                // Messages the peer sent before it saw our close still go to the machine (a Slack
                // envelope there is emitted; Slack redelivers it, since we can no longer ack).
                let peer = futures_lite::future::or(
                    async {
                        while let Some(Ok(message)) = receiver.next().await {
                            let arrived = Some(clock.mono());
                            let frame = match message {
                                Message::Close(frame) => return Some(close_parts(frame)),
                                Message::Text(text) => Frame::Text(text.as_str().to_owned()),
                                Message::Binary(bytes) => Frame::Binary(Bytes(bytes.to_vec())),
                                _ => continue,
                            };
                            let input = Input::Frame {
                                conn,
                                frame,
                                arrived,
                            };
                            if inputs.send(input).await.is_err() {
                                return None;
                            }
                        }
                        None
                    },
                    async {
                        async_io::Timer::after(settings.close_timeout).await;
                        None
                    },
                )
                .await;
                // Without the peer's answer, report our own code and say so.
                let (code, reason) = peer.unwrap_or_else(|| {
                    (
                        Some(code),
                        format!("{reason} (the peer did not answer the close)"),
                    )
                });
                return Ok(closed(conn, code, &reason));
            }
            // The driver dropped the connection: it is no longer wanted.
            Next::Command(None) => return Ok(closed(conn, None, "abandoned by driver")),
        }
    }
}

enum Forwarded {
    Yes,
    DriverGone,
    SendFailed(async_tungstenite::tungstenite::Error),
}

/// Hands `input` to the driver, carrying out the driver's commands meanwhile. Without this a
/// burst could deadlock: this task waits for room in the driver's input queue while the driver
/// waits for this task to take the acks it queued for the frames already handed over.
async fn forward<S>(
    input: Input,
    inputs: &Sender<Input>,
    commands: &Receiver<WsCommand>,
    sender: &mut async_tungstenite::WebSocketSender<S>,
    deferred_close: &mut Option<WsCommand>,
) -> Forwarded
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    enum Step {
        Sent(bool),
        Command(Option<WsCommand>),
    }
    let send = inputs.send(input);
    futures_lite::pin!(send);
    loop {
        let closing = deferred_close.is_some();
        let step =
            futures_lite::future::or(async { Step::Sent((&mut send).await.is_ok()) }, async {
                if closing {
                    // A close is waiting: take no further command before it.
                    futures_lite::future::pending::<()>().await;
                }
                Step::Command(commands.recv().await.ok())
            })
            .await;
        match step {
            Step::Sent(true) => return Forwarded::Yes,
            Step::Sent(false) | Step::Command(None) => return Forwarded::DriverGone,
            Step::Command(Some(WsCommand::Send(frame))) => {
                if let Err(error) = sender.send(frame).await {
                    return Forwarded::SendFailed(error);
                }
            }
            Step::Command(Some(close)) => *deferred_close = Some(close),
        }
    }
}

/// The WebSocket message for `frame`, or `None` for a kind of frame newer than this driver
/// (`Frame` is `#[non_exhaustive]`): the caller logs and drops it rather than guess a encoding.
pub(crate) fn message(frame: Frame) -> Option<Message> {
    Some(match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(bytes) => Message::binary(bytes.0),
        Frame::Ping(bytes) => Message::Ping(WsBytes::from(bytes.0)),
        Frame::Pong(bytes) => Message::Pong(WsBytes::from(bytes.0)),
        _ => return None,
    })
}

/// The code and reason of a peer's close frame. A close frame without a status code reads as
/// 1005, "no status code present" (RFC 6455 §7.1.5).
fn close_parts(frame: Option<CloseFrame>) -> (Option<u16>, String) {
    match frame {
        Some(frame) => (
            Some(u16::from(frame.code)),
            frame.reason.as_str().to_owned(),
        ),
        None => (Some(1005), "close frame without a status code".to_owned()),
    }
}

/// Sends our close `frame` and flushes it, within `timeout`: best effort, the connection ends
/// either way.
async fn send_close<S>(
    sender: &mut async_tungstenite::WebSocketSender<S>,
    frame: CloseFrame,
    timeout: Duration,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    futures_lite::future::or(
        async {
            let _ = sender.close(Some(frame)).await;
        },
        async {
            async_io::Timer::after(timeout).await;
        },
    )
    .await;
}

/// What went wrong reading from the peer, in words, and the close code RFC 6455 §7.4.1 gives
/// that fault (none when the connection itself is gone).
fn describe_read_error(error: &WsError) -> (String, Option<u16>) {
    use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            format!("message of {size} bytes over the {max_size}-byte limit"),
            Some(1009),
        ),
        WsError::Capacity(capacity) => (format!("message too large: {capacity}"), Some(1009)),
        WsError::Utf8(_) => ("invalid UTF-8 in a text frame".to_owned(), Some(1007)),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            ("connection closed without a close frame".to_owned(), None)
        }
        WsError::Protocol(protocol) => {
            (format!("WebSocket protocol error: {protocol}"), Some(1002))
        }
        WsError::Io(io) => (format!("connection lost: {io}"), None),
        other => (other.to_string(), None),
    }
}

/// The reason sent with a close code of ours.
fn close_reason_for(code: u16) -> &'static str {
    match code {
        1007 => "invalid payload data",
        1009 => "message too big",
        _ => "protocol error",
    }
}

fn closed(conn: ConnId, code: Option<u16>, reason: &str) -> Input {
    Input::Closed {
        conn,
        code,
        reason: reason.to_owned(),
    }
}
