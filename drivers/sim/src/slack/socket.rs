//! One Socket Mode connection: hello, envelopes written as they come, acks read and timed,
//! pings, `disconnect` and the close it announces, and the injected faults.

use super::envelopes::Envelope;
use super::{
    AckRecord, AppliedRecord, CONN_QUEUE, ConnEntry, DisconnectReason, DisconnectRecord,
    EnvelopeRecord, Outbound, Slack, SlackAction, SocketConnection,
};
use crate::host::{
    Wake, await_close_reply, client_close, close_frame, close_reason, next_wake, read_leftovers,
};
use crate::scenario::{SocketFault, garbage_bytes};
use crate::server::{Shutdown, Ws, answer_close};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::AsyncReadExt;
use serde_json::{Value, json};
use smol::channel::Receiver;
use std::time::Instant;

/// The `debug_info.host` of every connection.
const HOST: &str = "applink-sim-1";

/// Serves one Socket Mode connection, or tells one connection too many so and closes it.
pub(super) async fn serve(sim: &Slack, ws: Ws, shutdown: Shutdown) {
    sim.core.first_client.fire();
    let (tx, rx) = smol::channel::bounded(CONN_QUEUE);
    let (conn, open) = {
        let mut state = sim.lock();
        let conn = state.next_conn;
        state.next_conn += 1;
        state.conns.insert(conn, ConnEntry { tx, ready: false });
        (conn, state.conns.len())
    };
    let mut socket = Socket {
        sim,
        conn,
        ws,
        outbound: rx,
        close_at: None,
        shutdown: shutdown.clone(),
    };
    if open > sim.config.max_connections {
        sim.lock().records.connections.push(SocketConnection {
            conn,
            at: sim.since_start(),
            num_connections: None,
        });
        socket
            .disconnect(&DisconnectReason::TooManyWebsockets)
            .await;
        socket.close(1000, "").await;
    } else {
        socket.run(open).await;
    }
    socket.retire();
    sim.lock().conns.remove(&conn);
}

enum Flow {
    Continue,
    End,
}

/// The connection's own deadlines.
enum Due {
    /// Time to ping the client.
    Ping,
    /// The close a `disconnect` announced.
    Close,
}

/// One Socket Mode connection.
struct Socket<'a> {
    sim: &'a Slack,
    conn: u64,
    ws: Ws,
    outbound: Receiver<Outbound>,
    /// When a `disconnect` was sent: the close it announced.
    close_at: Option<Instant>,
    shutdown: Shutdown,
}

impl Socket<'_> {
    async fn run(&mut self, num_connections: usize) {
        let shutdown = self.shutdown.clone();
        let hello = json!({
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {
                "host": HOST,
                "build_number": 118,
                "approximate_connection_time": self.sim.config.approximate_connection_time
            },
            "connection_info": {"app_id": self.sim.config.app_id}
        });
        if self
            .ws
            .send(Message::text(hello.to_string()))
            .await
            .is_err()
        {
            return;
        }
        let queued: Vec<Envelope> = {
            let now = Instant::now();
            let mut state = self.sim.lock();
            state.records.connections.push(SocketConnection {
                conn: self.conn,
                at: self.sim.since_start(),
                num_connections: Some(num_connections),
            });
            if let Some(entry) = state.conns.get_mut(&self.conn) {
                entry.ready = true;
            }
            let queued: Vec<Envelope> = state.queue.drain(..).collect();
            for envelope in &queued {
                state.track(envelope.clone(), self.conn, now);
            }
            queued
        };
        for envelope in queued {
            if let Flow::End = self.write_envelope(envelope).await {
                return;
            }
        }
        let mut next_ping = self
            .sim
            .config
            .ping_interval
            .and_then(|every| Instant::now().checked_add(every));
        loop {
            let close_at = self.close_at;
            let due = async {
                match (close_at, next_ping) {
                    (Some(close), Some(ping)) if ping < close => {
                        async_io::Timer::at(ping).await;
                        Due::Ping
                    }
                    (Some(close), _) => {
                        async_io::Timer::at(close).await;
                        Due::Close
                    }
                    (None, Some(ping)) => {
                        async_io::Timer::at(ping).await;
                        Due::Ping
                    }
                    (None, None) => futures_lite::future::pending().await,
                }
            };
            let next = next_wake(&mut self.ws, &self.outbound, &shutdown, due).await;
            let flow = match next {
                Wake::Inbound(Some(Ok(message))) => self.on_message(message).await,
                Wake::Inbound(Some(Err(_)) | None) => {
                    self.record_client_close(None, "");
                    Flow::End
                }
                Wake::Command(Some(Outbound::Envelope(envelope))) => {
                    self.write_envelope(envelope).await
                }
                Wake::Command(Some(Outbound::Act(action))) => self.act(action).await,
                Wake::Command(None) => Flow::End,
                Wake::Timer(Due::Ping) => {
                    next_ping = self
                        .sim
                        .config
                        .ping_interval
                        .and_then(|every| Instant::now().checked_add(every));
                    match self
                        .ws
                        .send(Message::Ping(WsBytes::from_static(b"ping")))
                        .await
                    {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::End,
                    }
                }
                Wake::Timer(Due::Close) => {
                    self.close(1000, "").await;
                    Flow::End
                }
                Wake::Shutdown => {
                    self.close(1001, "").await;
                    Flow::End
                }
            };
            if let Flow::End = flow {
                return;
            }
            if self.outbound.is_empty()
                && let Flow::End = self.pull_queued().await
            {
                return;
            }
        }
    }

    /// Takes envelopes that found no room on any connection, until none is left: a client
    /// that sends nothing must still get a whole burst.
    async fn pull_queued(&mut self) -> Flow {
        loop {
            let batch: Vec<Envelope> = {
                let now = Instant::now();
                let mut state = self.sim.lock();
                let count = state.queue.len().min(64);
                let batch: Vec<Envelope> = state.queue.drain(..count).collect();
                for envelope in &batch {
                    state.track(envelope.clone(), self.conn, now);
                }
                batch
            };
            if batch.is_empty() {
                return Flow::Continue;
            }
            for envelope in batch {
                if let Flow::End = self.write_envelope(envelope).await {
                    return Flow::End;
                }
            }
        }
    }

    async fn write_envelope(&mut self, envelope: Envelope) -> Flow {
        if self
            .ws
            .send(Message::text(envelope.to_json()))
            .await
            .is_err()
        {
            return self.client_gone().await;
        }
        let record = EnvelopeRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            envelope_id: envelope.envelope_id,
            kind: envelope.kind,
            event_id: envelope.event_id,
            retry_attempt: envelope.retry_attempt,
            duplicate: envelope.duplicate,
        };
        self.sim.lock().records.envelopes.push(record);
        Flow::Continue
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        match message {
            Message::Text(text) => {
                self.on_text(text.as_str());
                Flow::Continue
            }
            Message::Close(frame) => {
                let (code, reason) = client_close(frame.as_ref());
                self.record_client_close(Some(code), &reason);
                answer_close(&mut self.ws).await;
                Flow::End
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                Flow::Continue
            }
        }
    }

    /// A text message from the client: an ack, or something Slack ignores.
    fn on_text(&self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(envelope_id) = value.get("envelope_id").and_then(Value::as_str) {
            self.on_ack(envelope_id, value.get("payload").is_some());
        }
    }

    fn on_ack(&self, envelope_id: &str, with_payload: bool) {
        let now = Instant::now();
        let at = self.sim.since_start();
        let deadline = self.sim.config.ack_deadline;
        let mut state = self.sim.lock();
        let (sent_on, latency, late) = match state.outstanding.get_mut(envelope_id) {
            Some(outstanding) => {
                let latency = now.duration_since(outstanding.sent_at);
                let late = outstanding.settled || latency > deadline;
                outstanding.acked = true;
                (Some(outstanding.conn), Some(latency), late)
            }
            None => (None, None, false),
        };
        state.records.acks.push(AckRecord {
            conn: self.conn,
            at,
            envelope_id: envelope_id.to_owned(),
            sent_on,
            latency,
            late,
            with_payload,
        });
    }

    async fn act(&mut self, action: SlackAction) -> Flow {
        let record = AppliedRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            action: action.clone(),
        };
        self.sim.lock().records.applied.push(record);
        let sent = match action {
            SlackAction::Disconnect(reason) => {
                let flow = self.disconnect(&reason).await;
                if let Flow::End = flow {
                    return Flow::End;
                }
                if matches!(
                    reason,
                    DisconnectReason::LinkDisabled | DisconnectReason::TooManyWebsockets
                ) {
                    self.close(1000, "").await;
                    return Flow::End;
                }
                if let Some(close_at) =
                    Instant::now().checked_add(self.sim.config.disconnect_close_after)
                {
                    self.close_at = Some(self.close_at.map_or(close_at, |at| at.min(close_at)));
                }
                return Flow::Continue;
            }
            SlackAction::DropConnection => return Flow::End,
            SlackAction::Silent => return self.silent().await,
            SlackAction::Fault(SocketFault::Close { code, reason }) => {
                self.close(code, close_reason(&reason)).await;
                return Flow::End;
            }
            SlackAction::Fault(SocketFault::GarbageText) => {
                self.ws
                    .send(Message::text("<html>502 Bad Gateway</html>"))
                    .await
            }
            SlackAction::Fault(SocketFault::GarbageBinary) => {
                let junk = garbage_bytes(&mut self.sim.lock().rng);
                self.ws.send(Message::binary(junk)).await
            }
            SlackAction::Fault(SocketFault::Oversized { bytes }) => {
                let skeleton = r#"{"type":"oversized","filler":""}"#;
                let filler = "x".repeat(bytes.saturating_sub(skeleton.len()));
                self.ws
                    .send(Message::text(format!(
                        r#"{{"type":"oversized","filler":"{filler}"}}"#
                    )))
                    .await
            }
            SlackAction::Messages(_)
            | SlackAction::ThreadReplies { .. }
            | SlackAction::SlashCommand
            | SlackAction::Interactive
            | SlackAction::Duplicate { .. }
            | SlackAction::Http { .. }
            | SlackAction::ApiError { .. }
            | SlackAction::ConnectionsOpen { .. } => Ok(()),
        };
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::End
        }
    }

    async fn disconnect(&mut self, reason: &DisconnectReason) -> Flow {
        let message =
            json!({"type": "disconnect", "reason": reason.as_str(), "debug_info": {"host": HOST}});
        if self
            .ws
            .send(Message::text(message.to_string()))
            .await
            .is_err()
        {
            return Flow::End;
        }
        let record = DisconnectRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            reason: reason.as_str().to_owned(),
        };
        self.sim.lock().records.disconnects.push(record);
        Flow::Continue
    }

    /// Stops talking: no pongs, no envelopes, no close handshake; reads and discards raw bytes
    /// until the client goes away. Envelopes still routed here are dropped unsent.
    async fn silent(&mut self) -> Flow {
        // Slack keeps routing envelopes to a connection it believes alive: it stays registered.
        let mut buf = vec![0u8; 4096];
        loop {
            let tcp = self.ws.get_mut().tcp();
            let outbound = &self.outbound;
            let shutdown = &self.shutdown;
            enum Silent {
                Read(usize),
                Outbound(Option<Outbound>),
                Shutdown,
            }
            let next = futures_lite::future::or(
                async { Silent::Read(tcp.read(&mut buf).await.unwrap_or(0)) },
                futures_lite::future::or(
                    async { Silent::Outbound(outbound.recv().await.ok()) },
                    async {
                        shutdown.wait().await;
                        Silent::Shutdown
                    },
                ),
            )
            .await;
            match next {
                Silent::Read(0) => {
                    self.record_client_close(None, "");
                    return Flow::End;
                }
                Silent::Read(_) | Silent::Outbound(Some(Outbound::Envelope(_))) => {}
                Silent::Outbound(Some(Outbound::Act(SlackAction::DropConnection)))
                | Silent::Outbound(None)
                | Silent::Shutdown => return Flow::End,
                Silent::Outbound(Some(Outbound::Act(_))) => {}
            }
        }
    }

    /// Takes the connection out of the rotation and hands the envelopes still queued for it to
    /// the other connections (or the shared queue): Slack had not sent them yet.
    fn retire(&self) {
        let now = Instant::now();
        let mut state = self.sim.lock();
        if let Some(entry) = state.conns.get_mut(&self.conn) {
            entry.ready = false;
        }
        while let Ok(outbound) = self.outbound.try_recv() {
            if let Outbound::Envelope(envelope) = outbound {
                state.outstanding.remove(&envelope.envelope_id);
                state.deliver(envelope, Some(self.conn), now);
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's reply.
    async fn close(&mut self, code: u16, reason: &str) {
        self.retire();
        if self
            .ws
            .close(Some(close_frame(code, reason)))
            .await
            .is_err()
        {
            return;
        }
        await_close_reply(&mut self.ws).await;
    }

    /// The client went away while an envelope was being written: count the acks it sent before
    /// (still in the socket unless it reset the connection) and record how it left.
    async fn client_gone(&mut self) -> Flow {
        let mut close = None;
        for message in read_leftovers(&mut self.ws).await {
            match message {
                Message::Text(text) => self.on_text(text.as_str()),
                Message::Close(frame) => close = Some(client_close(frame.as_ref())),
                _ => {}
            }
        }
        match close {
            Some((code, reason)) => self.record_client_close(Some(code), &reason),
            None => self.record_client_close(None, ""),
        }
        Flow::End
    }

    fn record_client_close(&self, code: Option<u16>, reason: &str) {
        self.sim.core.record_client_close(self.conn, code, reason);
    }
}
