//! The server half of a driver, for a machine that serves (the webhook ingress): accept
//! connections, name them, pass their bytes in as `Input::Received` and write out what the
//! machine transmits. All HTTP, verification and deadlines are the machine's; this only moves
//! bytes.
//!
//! Back-pressure reaches the clients: bytes go in through the driver's bounded input queue, so
//! while the driver holds back (a full consumer) the connection tasks wait and TCP pushes back.

use crate::lock::lock;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
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

/// What the driver asks of one connection.
pub(crate) enum StreamCommand {
    Write(Bytes),
    /// Close once everything before it is written.
    Hangup,
}

/// The connections of one listener, by the id the machine knows them as.
pub(crate) type Streams = Arc<Mutex<HashMap<ConnId, Sender<StreamCommand>>>>;

/// Ends (`recv` fails) once the accepting task and every connection are done writing: each
/// holds a sender until its last answer is written, so a driver that waits on this before it
/// returns does not let the process exit with an answer (a 503 at shutdown) still unwritten.
pub(crate) type Flushed = Receiver<std::convert::Infallible>;

/// A bound listener, ready to be served by a driver.
pub(crate) struct Listener {
    socket: Async<TcpListener>,
}

impl Listener {
    /// Binds `addr` (port 0 for any free port).
    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        Ok(Listener {
            socket: Async::<TcpListener>::bind(addr)?,
        })
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

/// Runs one connection until the machine hangs up, the client goes away or the driver ends.
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
    let read = async {
        let mut buffer = vec![0u8; READ_CHUNK];
        let reason = loop {
            match (&stream).read(&mut buffer).await {
                Ok(0) => break "client closed the connection".to_owned(),
                Ok(n) => {
                    let bytes = Bytes(buffer.get(..n).unwrap_or_default().to_vec());
                    if inputs.send(Input::Received { conn, bytes }).await.is_err() {
                        return;
                    }
                }
                Err(error) => break error.to_string(),
            }
        };
        let _ = inputs
            .send(Input::Closed {
                conn,
                code: None,
                reason,
            })
            .await;
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
                        return false;
                    }
                }
                StreamCommand::Hangup => break,
            }
        }
        // A hangup, or the driver is gone.
        true
    };
    let hung_up = futures_lite::future::or(write, async {
        read.await;
        false
    })
    .await;
    if hung_up {
        // Close politely: the answer first, then drain what the client still sends.
        let _ = stream.get_ref().shutdown(Shutdown::Write);
        drop(flushing);
        let mut sink = vec![0u8; READ_CHUNK];
        let drain = async { while matches!((&stream).read(&mut sink).await, Ok(n) if n > 0) {} };
        futures_lite::future::or(drain, async {
            async_io::Timer::after(LINGER).await;
        })
        .await;
    }
}
