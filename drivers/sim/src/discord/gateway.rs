//! One Gateway connection: HELLO, then reading what the client sends while dispatches are
//! written, heartbeats acknowledged, payload limits enforced, and close frames exchanged. The
//! handshake (IDENTIFY, RESUME) is in `handshake`, the session and its replay in `session`, the
//! injected faults in `faults`.

use super::payloads::control;
use super::{
    COMMAND_QUEUE, Command, Control, ControlRecord, Discord, GatewayConnection, HeartbeatRecord,
};
use crate::host::{Wake, await_close_reply, client_close, close_frame, next_wake};
use crate::server::{Cork, Shutdown, SimStream, Ws, answer_close, query_value, split_target};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message, Utf8Bytes};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use flate2::{Compress, Compression, FlushCompress};
use futures_lite::StreamExt;
use openflume_proto::http::ReceivedRequest;
use serde_json::Value;
use smol::channel::Receiver;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest payload a client may send.
const MAX_CLIENT_PAYLOAD: usize = 4096;
/// Client payloads allowed per [`RATE_WINDOW`] on one connection.
const RATE_LIMIT: usize = 120;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Serves one Gateway connection: checks the version and encoding, then runs it until it ends.
pub(super) async fn serve(sim: &Discord, request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
    sim.core.first_client.fire();
    let (path, query) = split_target(&request.target);
    let (tx, rx) = smol::channel::bounded(COMMAND_QUEUE);
    let conn = {
        let mut state = sim.lock();
        let conn = state.next_conn;
        state.next_conn += 1;
        state.connections.insert(conn, tx);
        state.records.connections.push(GatewayConnection {
            conn,
            at: sim.since_start(),
            path: path.to_owned(),
            version: query_value(&query, "v").map(str::to_owned),
            encoding: query_value(&query, "encoding").map(str::to_owned),
            compress: query_value(&query, "compress").map(str::to_owned),
        });
        conn
    };
    let compressor = match query_value(&query, "compress") {
        Some("zlib-stream") => Some(Compressor::Zlib(Compress::new(
            Compression::default(),
            true,
        ))),
        Some("zstd-stream") => zstd::stream::raw::Encoder::new(zstd::DEFAULT_COMPRESSION_LEVEL)
            .ok()
            .map(|encoder| Compressor::Zstd(Box::new(encoder))),
        _ => None,
    };
    let cork = ws.get_ref().cork();
    let (sender, receiver) = ws.split();
    let mut gateway = Gateway {
        sim,
        conn,
        sender,
        receiver,
        cork,
        arrived: VecDeque::new(),
        commands: rx,
        compressor,
        session: None,
        sent_seq: 0,
        replay_until: 0,
        acks: true,
        received: VecDeque::new(),
    };
    let version = query_value(&query, "v");
    let encoding = query_value(&query, "encoding");
    if version.is_some_and(|v| v != "10" && v != "9") {
        gateway.close(4012, "Invalid API version.").await;
    } else if encoding.is_some_and(|e| e != "json") {
        gateway
            .close(4002, "The simulator speaks encoding=json only.")
            .await;
    } else {
        gateway.run(shutdown).await;
    }
    gateway.finish();
}

/// Whether the rest of the loop goes on.
pub(super) enum Flow {
    Continue,
    End,
}

/// One Gateway connection. Its WebSocket is split so that what the client sends is read even
/// while a write waits for the client to read: Discord sees a heartbeat when it arrives.
pub(super) struct Gateway<'a> {
    pub(super) sim: &'a Discord,
    pub(super) conn: u64,
    pub(super) sender: WebSocketSender<SimStream>,
    pub(super) receiver: WebSocketReceiver<SimStream>,
    pub(super) cork: Cork,
    /// Messages read while a write waited, with when they arrived, to handle in order.
    pub(super) arrived: VecDeque<(Duration, Message)>,
    pub(super) commands: Receiver<Command>,
    pub(super) compressor: Option<Compressor>,
    /// The session attached to this connection, once IDENTIFY or RESUME succeeded.
    pub(super) session: Option<Arc<str>>,
    /// Last sequence number written here.
    pub(super) sent_seq: u64,
    /// Dispatches up to this sequence number are replays.
    pub(super) replay_until: u64,
    pub(super) acks: bool,
    /// When recent client payloads arrived, for the 120-per-60-s limit.
    pub(super) received: VecDeque<Instant>,
}

impl Gateway<'_> {
    pub(super) async fn run(&mut self, shutdown: Shutdown) {
        let interval = self.sim.config.heartbeat_interval.as_millis();
        let hello = control(
            10,
            &format!(
                r#"{{"heartbeat_interval":{interval},"_trace":["[\"gateway-sim-1\",{{\"micros\":0.0}}]"]}}"#
            ),
        );
        if self.send_text(hello).await.is_err() {
            return;
        }
        self.record_control(Control::Hello);
        loop {
            if self.flush().await.is_err() {
                self.record_control(Control::Dropped);
                return;
            }
            if let Some((at, message)) = self.arrived.pop_front() {
                if let Flow::End = self.on_message(message, at).await {
                    return;
                }
                continue;
            }
            let blast = self.blast_due();
            let blast_now = async {
                if !blast {
                    futures_lite::future::pending::<()>().await;
                }
            };
            let next = next_wake(&mut self.receiver, &self.commands, &shutdown, blast_now).await;
            let flow = match next {
                Wake::Inbound(Some(Ok(message))) => {
                    self.on_message(message, self.sim.since_start()).await
                }
                Wake::Inbound(Some(Err(_)) | None) => {
                    self.record_client_close(None, "");
                    Flow::End
                }
                Wake::Command(Some(command)) => self.on_command(command).await,
                Wake::Command(None) => Flow::End,
                Wake::Shutdown => {
                    self.close(1001, "The simulator is stopping.").await;
                    Flow::End
                }
                Wake::Timer(()) => {
                    self.blast();
                    Flow::Continue
                }
            };
            if let Flow::End = flow {
                return;
            }
        }
    }

    /// Handles a message from the client that arrived `at` (since the simulator started).
    pub(super) async fn on_message(&mut self, message: Message, at: Duration) -> Flow {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self.close_flow(4002, "Error while decoding payload.").await;
            }
            Message::Close(frame) => {
                let (code, reason) = client_close(frame.as_ref());
                self.record_client_close(Some(code), &reason);
                if matches!(code, 1000 | 1001) {
                    self.end_session();
                }
                answer_close(&mut self.receiver).await;
                return Flow::End;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
        };
        let now = Instant::now();
        while self
            .received
            .front()
            .is_some_and(|at| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.received.pop_front();
        }
        self.received.push_back(now);
        if self.received.len() > RATE_LIMIT {
            return self.close_flow(4008, "Rate limited.").await;
        }
        if text.len() > MAX_CLIENT_PAYLOAD {
            return self.close_flow(4002, "Error while decoding payload.").await;
        }
        let payload: Value = match serde_json::from_str(text.as_str()) {
            Ok(value @ Value::Object(_)) => value,
            _ => return self.close_flow(4002, "Error while decoding payload.").await,
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return self.close_flow(4002, "Error while decoding payload.").await;
        };
        let data = payload.get("d").unwrap_or(&Value::Null);
        match op {
            1 => self.on_heartbeat(data, at).await,
            2 => self.on_identify(data).await,
            6 => self.on_resume(data).await,
            3 | 4 | 8 | 31 | 43 if self.session.is_none() => {
                self.close_flow(4003, "Not authenticated.").await
            }
            3 | 4 | 8 | 31 | 43 => Flow::Continue,
            _ => self.close_flow(4001, "Unknown opcode.").await,
        }
    }

    pub(super) async fn on_heartbeat(&mut self, data: &Value, at: Duration) -> Flow {
        let acked = self.acks;
        let record = HeartbeatRecord {
            conn: self.conn,
            at,
            seq: data.as_u64(),
            acked,
        };
        self.sim.lock().records.heartbeats.push(record);
        if acked && self.send_text(control(11, "null")).await.is_err() {
            return Flow::End;
        }
        Flow::Continue
    }

    /// Sends a payload as text, or as a zlib-stream or zstd-stream binary frame when compression
    /// is on. While
    /// the write waits for the client to read, what the client sends is read and kept for later.
    pub(super) async fn send_text(&mut self, payload: impl Into<Utf8Bytes>) -> Result<(), ()> {
        let payload: Utf8Bytes = payload.into();
        let message = match &mut self.compressor {
            Some(Compressor::Zlib(compressor)) => Message::Binary(WsBytes::from(
                deflate_sync(compressor, payload.as_bytes()).ok_or(())?,
            )),
            Some(Compressor::Zstd(encoder)) => Message::Binary(WsBytes::from(
                zstd_flushed(encoder, payload.as_bytes()).ok_or(())?,
            )),
            None => Message::Text(payload),
        };
        let bytes = match &message {
            Message::Binary(bytes) => bytes.len(),
            Message::Text(text) => text.len(),
            _ => 0,
        };
        self.sim
            .bytes_sent
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        let send = self.sender.send(message);
        let (receiver, arrived, sim) = (&mut self.receiver, &mut self.arrived, self.sim);
        let read_meanwhile = async {
            while let Some(Ok(message)) = receiver.next().await {
                arrived.push_back((sim.since_start(), message));
            }
            // The client is gone; the write finds out by itself.
            futures_lite::future::pending().await
        };
        futures_lite::future::or(send, read_meanwhile)
            .await
            .map_err(|_| ())
    }

    pub(super) async fn send_control(&mut self, payload: String, what: Control) -> Flow {
        let sent = self.send_text(payload).await;
        self.record_control(what);
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::End
        }
    }

    pub(super) async fn close_flow(&mut self, code: u16, reason: &str) -> Flow {
        self.close(code, reason).await;
        Flow::End
    }

    /// Sends a close frame, applies what the code means for the session, and waits briefly for
    /// the client's reply.
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        if matches!(code, 4003 | 4004 | 4007 | 4009 | 4010..=4014) {
            self.end_session();
        } else {
            self.detach();
        }
        self.record_control(Control::Close(code));
        if self
            .sender
            .close(Some(close_frame(code, reason)))
            .await
            .is_err()
        {
            return;
        }
        await_close_reply(&mut self.receiver).await;
    }

    pub(super) fn record_control(&self, control: Control) {
        let record = ControlRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            control,
        };
        self.sim.lock().records.controls.push(record);
    }

    pub(super) fn record_client_close(&self, code: Option<u16>, reason: &str) {
        self.sim.core.record_client_close(self.conn, code, reason);
    }
}

/// One connection's transport compression: a single stream for all its payloads.
pub(super) enum Compressor {
    Zlib(Compress),
    Zstd(Box<zstd::stream::raw::Encoder<'static>>),
}

/// Compresses `input` into the connection's zstd stream and flushes it without ending the
/// frame, as the Gateway does: every message is one whole payload, and the frame stays open.
fn zstd_flushed(
    encoder: &mut zstd::stream::raw::Encoder<'static>,
    input: &[u8],
) -> Option<Vec<u8>> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    let mut source = InBuffer::around(input);
    while source.pos() < input.len() {
        out.reserve(out.capacity().max(256));
        let pos = out.len();
        encoder
            .run(&mut source, &mut OutBuffer::around_pos(&mut out, pos))
            .ok()?;
    }
    loop {
        out.reserve(out.capacity().max(256));
        let pos = out.len();
        let left = encoder
            .flush(&mut OutBuffer::around_pos(&mut out, pos))
            .ok()?;
        if left == 0 {
            return Some(out);
        }
    }
}

/// Compresses `input` into the connection's zlib stream with a sync flush, so the output ends
/// with `00 00 ff ff` and the client can inflate it as one message.
fn deflate_sync(compressor: &mut Compress, input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before = compressor.total_in();
        compressor
            .compress_vec(input.get(consumed..)?, &mut out, FlushCompress::Sync)
            .ok()?;
        consumed += usize::try_from(compressor.total_in() - before).ok()?;
        if consumed >= input.len() && out.len() < out.capacity() {
            return Some(out);
        }
    }
}
