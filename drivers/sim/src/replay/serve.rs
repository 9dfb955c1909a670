//! A recording played to live clients: HTTP answers as recorded, and each WebSocket connection
//! its recorded script, waiting for the client where the recording shows it answered one.

use super::playback::{HttpAnswer, Playback, Script, ScriptStep, text_key};
use crate::server::{Answer, Reply, Service, Shutdown, Ws, split_target};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::StreamExt;
use openflume_proto::Frame;
use openflume_proto::http::ReceivedRequest;
use openflume_proto::recording::MachineKind;
use openflume_proto::recording::zlib::{Deflater, Recompress};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest wait for a client frame a recorded frame answered, before it is sent anyway.
const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for the client's close that the recording shows it started.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

pub(super) struct ReplayService(pub(super) Arc<Playback>);

impl Service for ReplayService {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        match self.0.answer(&request.method, path) {
            Some(HttpAnswer::Reply(reply)) => Answer::Reply(self.served_reply(reply)),
            Some(HttpAnswer::Drop) => Answer::Drop,
            None => Answer::Reply(Reply::json(
                404,
                r#"{"message":"Not Found in the recording"}"#,
            )),
        }
    }

    fn check_upgrade(&self, _request: &ReceivedRequest) -> Result<(), Reply> {
        let playback = &self.0;
        let refused = || Reply::json(503, r#"{"message":"Service Unavailable"}"#);
        let next = playback.next_conn.load(Ordering::Relaxed);
        match playback.scripts.get(next) {
            None => Err(refused()),
            Some(script) if script.refused => {
                playback.next_conn.fetch_add(1, Ordering::Relaxed);
                playback.finished.fetch_add(1, Ordering::Relaxed);
                Err(refused())
            }
            Some(_) => Ok(()),
        }
    }

    async fn websocket(&self, request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        let playback = &self.0;
        let index = playback.next_conn.fetch_add(1, Ordering::Relaxed);
        let Some(script) = playback.scripts.get(index) else {
            return;
        };
        let compress = request.target.contains("compress=zlib-stream");
        let mut connection = Connection {
            playback,
            ws,
            compress,
            inflater: Recompress::default(),
            deflater: Deflater::default(),
            received: HashMap::new(),
            client_gone: false,
        };
        let ended = futures_lite::future::or(
            async {
                connection.play(script).await;
                true
            },
            async {
                shutdown.wait().await;
                false
            },
        )
        .await;
        if !ended {
            let _ = connection
                .ws
                .close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "simulator stopping".into(),
                }))
                .await;
        }
        playback.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReplayService {
    /// A recorded response as this simulator sends it: recorded addresses rewritten, the
    /// framing headers left to the encoder.
    fn served_reply(&self, reply: Reply) -> Reply {
        const FRAMING: &[&str] = &[
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "date",
            "content-encoding",
        ];
        let headers = reply
            .headers
            .into_iter()
            .filter(|(name, _)| !FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)))
            .map(|(name, value)| {
                let value = self.0.rewrite(&value);
                (name, value)
            })
            .collect();
        let body = match String::from_utf8(reply.body) {
            Ok(text) => self.0.rewrite(&text).into_bytes(),
            Err(binary) => binary.into_bytes(),
        };
        Reply {
            status: reply.status,
            headers,
            body,
        }
    }
}

/// One live connection playing a recorded one.
struct Connection<'a> {
    playback: &'a Playback,
    ws: Ws,
    compress: bool,
    /// The recorded zlib-stream, inflated.
    inflater: Recompress,
    /// The live connection's own stream.
    deflater: Deflater,
    /// Client frames received and not matched yet, by kind.
    received: HashMap<String, usize>,
    client_gone: bool,
}

impl Connection<'_> {
    async fn play(&mut self, script: &Script) {
        let mut last_at: Option<u64> = None;
        let mut last_done = Instant::now();
        for (at, step) in &script.steps {
            if self.client_gone {
                return;
            }
            let gap = last_at.map_or(0, |last| at.saturating_sub(last));
            let due = last_done + Duration::from_millis(gap);
            match step {
                ScriptStep::Send(frame) => {
                    self.read_until(due).await;
                    if let Some(message) = self.message(frame)
                        && self.ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
                ScriptStep::Await(key) => {
                    let deadline = Instant::now() + ANSWER_WAIT;
                    while !self.take(key) && !self.client_gone && Instant::now() < deadline {
                        self.read_one(deadline).await;
                    }
                }
                ScriptStep::ClientClose => {
                    let deadline = Instant::now() + CLOSE_WAIT;
                    while !self.client_gone && Instant::now() < deadline {
                        self.read_one(deadline).await;
                    }
                    return;
                }
                ScriptStep::End(code) => {
                    self.read_until(due).await;
                    // A recorded drop, or a close the client started: nothing to send.
                    if let Some(code) = code {
                        let _ = self
                            .ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(*code),
                                reason: "".into(),
                            }))
                            .await;
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while !self.client_gone && Instant::now() < deadline {
                            self.read_one(deadline).await;
                        }
                    }
                    return;
                }
            }
            last_at = Some(*at);
            last_done = Instant::now();
        }
        // The recording ended with the connection open: keep it so, until the client leaves.
        while !self.client_gone {
            self.read_one(Instant::now() + Duration::from_secs(3600))
                .await;
        }
    }

    /// Takes one received client frame of kind `key`, if one came.
    fn take(&mut self, key: &str) -> bool {
        match self.received.get_mut(key) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    /// Reads client frames until `due`.
    async fn read_until(&mut self, due: Instant) {
        while !self.client_gone && Instant::now() < due {
            self.read_one(due).await;
        }
    }

    /// Reads one client frame, or returns at `deadline`.
    async fn read_one(&mut self, deadline: Instant) {
        let read = futures_lite::future::or(async { Some(self.ws.next().await) }, async {
            async_io::Timer::at(deadline).await;
            None
        })
        .await;
        match read {
            None => {}
            Some(Some(Ok(Message::Text(text)))) => {
                *self.received.entry(text_key(text.as_str())).or_default() += 1;
            }
            Some(Some(Ok(Message::Binary(_)))) => {
                *self.received.entry("binary".to_owned()).or_default() += 1;
            }
            Some(Some(Ok(Message::Close(_)))) | Some(Some(Err(_))) | Some(None) => {
                self.client_gone = true;
            }
            Some(Some(Ok(_))) => {}
        }
    }

    /// The recorded frame as this connection sends it, or `None` for a part of a compressed
    /// payload (sent whole once complete) and for control frames.
    fn message(&mut self, frame: &Frame) -> Option<Message> {
        let text = match frame {
            Frame::Text(text) => text.clone(),
            Frame::Binary(bytes) => {
                let payload = self.inflater.inflate(bytes.as_slice()).ok()??;
                String::from_utf8(payload).ok()?
            }
            _ => return None,
        };
        let text = self.playback.rewrite(&text);
        Some(
            if self.compress && self.playback.kind == MachineKind::Discord {
                Message::Binary(WsBytes::from(self.deflater.deflate(text.as_bytes())))
            } else {
                Message::text(text)
            },
        )
    }
}
