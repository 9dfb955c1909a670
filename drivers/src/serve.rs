//! The server half of a driver, for a machine that serves (the webhook ingress): accept
//! connections, name them, pass their bytes in as `Input::Received` and write out what the
//! machine transmits. All HTTP, verification and deadlines are the machine's; this only moves
//! bytes.
//!
//! Back-pressure reaches the clients: bytes go in through the driver's bounded input queue, so
//! while the driver holds back (a full consumer) the connection tasks wait and TCP pushes back.
//!
//! A request the machine hands off (`Output::Handoff`: `serve`'s `/ws` and health endpoints on
//! the webhook port) takes its stream back from the connection task without losing a byte: the
//! task stops reading, but only between chunks, after the chunk in hand went to the driver;
//! then it sends [`HANDED_OFF`] as a `Closed` marker behind its last chunk and returns the
//! stream. The driver appends the chunks that were still queued for the machine (read after the
//! request) to the handoff's leftover bytes and, at the marker, gives the stream, the request
//! and those bytes to the listener's [`HandoffHandler`].

use crate::lock::lock;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use openflume_proto::http::ReceivedRequest;
use openflume_proto::{Bytes, ConnId, Input};
use smol::Task;
use smol::channel::{Receiver, Sender};
use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes read from a client at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Writes queued for one connection; the machine answers one request at a time, so a full queue
/// means a client that does not read.
const WRITE_QUEUE: usize = 16;
/// A client gets this long to take a response before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last response, unread request bytes are drained this long before the close, so the
/// client reads the answer (a 413 for a body never read) instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// The reason of the `Input::Closed` a connection task sends behind its last chunk once it
/// stops reading for a handoff.
pub(crate) const HANDED_OFF: &str = "handed off";

/// What the driver asks of one connection.
pub(crate) enum StreamCommand {
    Write(Bytes),
    /// Close once everything before it is written.
    Hangup,
    /// Stop reading (after sending the chunk in hand), send the [`HANDED_OFF`] marker, and give
    /// the stream back here, once everything before it is written.
    Handoff(Sender<Async<TcpStream>>),
}

/// A connection handed off by the machine, for the listener's [`HandoffHandler`].
// Only `serve` (feature `cli`) registers a handler that reads these.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) struct HandedOff {
    /// The client's stream, positioned after `leftover`.
    pub(crate) stream: Async<TcpStream>,
    /// The request, read whole.
    pub(crate) request: ReceivedRequest,
    /// Every byte the client sent after the request and this process read already.
    pub(crate) leftover: Vec<u8>,
}

/// Serves the connections a listener's machine hands off; called on the driver's executor, it
/// should spawn what takes time.
pub(crate) type HandoffHandler = Arc<dyn Fn(HandedOff) + Send + Sync>;

/// The connections of one listener, by the id the machine knows them as.
pub(crate) type Streams = Arc<Mutex<HashMap<ConnId, Sender<StreamCommand>>>>;

/// Ends (`recv` fails) once the accepting task and every connection are done writing: each
/// holds a sender until its last answer is written, so a driver that waits on this before it
/// returns does not let the process exit with an answer (a 503 at shutdown) still unwritten.
pub(crate) type Flushed = Receiver<std::convert::Infallible>;

/// A bound listener, ready to be served by a driver.
pub(crate) struct Listener {
    socket: Async<TcpListener>,
    handoff: Option<HandoffHandler>,
}

impl Listener {
    /// Binds `addr` (port 0 for any free port).
    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        Ok(Listener {
            socket: Async::<TcpListener>::bind(addr)?,
            handoff: None,
        })
    }

    /// Serves the connections the machine hands off with `handler`; without one they are closed.
    pub(crate) fn with_handoff(mut self, handler: Option<HandoffHandler>) -> Listener {
        self.handoff = handler;
        self
    }

    pub(crate) fn handoff(&self) -> Option<HandoffHandler> {
        self.handoff.clone()
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// Accepts until dropped: each connection gets the next id, a command queue in `streams`,
    /// and a task that feeds its bytes to `inputs`.
    pub(crate) fn serve(self, streams: Streams, inputs: Sender<Input>) -> (Task<()>, Flushed) {
        let (flushing, flushed) = smol::channel::bounded(1);
        let accepting = smol::spawn(async move {
            let mut next_id = 0u64;
            loop {
                let stream = match self.socket.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of descriptors and the like: pause rather than spin.
                    Err(_) => {
                        async_io::Timer::after(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next_id += 1;
                let conn = ConnId(next_id);
                let (commands_tx, commands_rx) = smol::channel::bounded(WRITE_QUEUE);
                lock(&streams).insert(conn, commands_tx);
                let task = connection(conn, stream, commands_rx, inputs.clone(), flushing.clone());
                smol::spawn(task).detach();
            }
        });
        (accepting, flushed)
    }
}

/// How the writing half of a connection ended.
enum WriteEnd {
    /// The machine hung up, or the driver is gone: close politely.
    Hangup,
    /// A write failed or timed out.
    Failed,
    /// The machine handed the connection off: give the stream back here.
    Handoff(Sender<Async<TcpStream>>),
}

/// Runs one connection until the machine hangs up or hands it off, the client goes away or the
/// driver ends.
async fn connection(
    conn: ConnId,
    stream: Async<TcpStream>,
    commands: Receiver<StreamCommand>,
    inputs: Sender<Input>,
    flushing: Sender<std::convert::Infallible>,
) {
    if inputs.send(Input::Opened { conn }).await.is_err() {
        return;
    }
    let (stop_reading, reading_stopped) = smol::channel::bounded::<()>(1);
    // Resolves `true` when stopped for a handoff (every chunk read was sent), `false` when the
    // client or the driver went away.
    let read = async {
        let mut buffer = vec![0u8; READ_CHUNK];
        let reason = loop {
            // The stop is looked at first, and only between chunks: a chunk read is always sent.
            let next = futures_lite::future::or(
                async {
                    let _ = reading_stopped.recv().await;
                    None
                },
                async { Some((&stream).read(&mut buffer).await) },
            )
            .await;
            match next {
                None => return true,
                Some(Ok(0)) => break "client closed the connection".to_owned(),
                Some(Ok(n)) => {
                    let bytes = Bytes(buffer.get(..n).unwrap_or_default().to_vec());
                    if inputs.send(Input::Received { conn, bytes }).await.is_err() {
                        return false;
                    }
                }
                Some(Err(error)) => break error.to_string(),
            }
        };
        let _ = inputs
            .send(Input::Closed {
                conn,
                code: None,
                reason,
            })
            .await;
        false
    };
    let write = async {
        while let Ok(command) = commands.recv().await {
            match command {
                StreamCommand::Write(bytes) => {
                    let written = futures_lite::future::or(
                        async { (&stream).write_all(bytes.as_slice()).await.is_ok() },
                        async {
                            async_io::Timer::after(WRITE_TIMEOUT).await;
                            false
                        },
                    )
                    .await;
                    if !written {
                        return WriteEnd::Failed;
                    }
                }
                StreamCommand::Hangup => return WriteEnd::Hangup,
                StreamCommand::Handoff(reply) => {
                    let _ = stop_reading.try_send(());
                    return WriteEnd::Handoff(reply);
                }
            }
        }
        // The driver is gone.
        WriteEnd::Hangup
    };
    // Boxed so it can be dropped, ending its borrow of the stream, before a handoff moves it.
    let mut read = Box::pin(read);
    let ended = futures_lite::future::or(async { Some(write.await) }, async {
        read.as_mut().await;
        None
    })
    .await;
    match ended {
        Some(WriteEnd::Handoff(reply)) => {
            // The read side sends the chunk it holds, then stops.
            if !read.as_mut().await {
                return;
            }
            drop(read);
            let marker = Input::Closed {
                conn,
                code: None,
                reason: HANDED_OFF.to_owned(),
            };
            if inputs.send(marker).await.is_ok() {
                let _ = reply.send(stream).await;
            }
        }
        Some(WriteEnd::Hangup) => {
            // Close politely: the answer first, then drain what the client still sends.
            let _ = stream.get_ref().shutdown(Shutdown::Write);
            drop(flushing);
            let mut sink = vec![0u8; READ_CHUNK];
            let drain =
                async { while matches!((&stream).read(&mut sink).await, Ok(n) if n > 0) {} };
            futures_lite::future::or(drain, async {
                async_io::Timer::after(LINGER).await;
            })
            .await;
        }
        Some(WriteEnd::Failed) | None => {}
    }
}
