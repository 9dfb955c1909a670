//! What every simulator does the same way, written once: start (validate the scenario, bind,
//! serve, run the schedule from the first client on), keep its records, wait for one, stop; the
//! injected HTTP faults; and closing a WebSocket with a grace period for the client's reply.
//!
//! A simulator is a shared half (its [`Core`] plus what is its own) behind a [`Host`], which its
//! public handle wraps.

use crate::records::{CloseRecord, HttpRecord, Records, WaitTimedOut, wait_until};
use crate::scenario::{HttpFault, HttpFaults, Scenario, run_schedule};
use crate::server::{Answer, Reply, Server, Service, Shutdown, Signal};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{Stream, StreamExt};
use smol::channel::{Receiver, Sender};
use smol::net::TcpListener;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long to wait for the client's reply to a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A simulator's state behind its lock, which holds the records the tests read.
pub(crate) trait SimState: Send + 'static {
    /// The simulator's records.
    type Records: Clone;
    fn records(&self) -> &Self::Records;
}

/// A state whose records log REST requests and how WebSocket clients left (Discord, Slack).
pub(crate) trait ConnLogs: SimState {
    fn http_log(&mut self) -> &mut Records<HttpRecord>;
    fn client_closes(&mut self) -> &mut Records<CloseRecord>;
}

/// Implements [`SimState`] and [`ConnLogs`] for a state whose `records` (of type `$records`)
/// have `http` and `client_closes` logs.
macro_rules! conn_logs {
    ($state:ty, $records:ty) => {
        impl $crate::host::SimState for $state {
            type Records = $records;

            fn records(&self) -> &$records {
                &self.records
            }
        }

        impl $crate::host::ConnLogs for $state {
            fn http_log(&mut self) -> &mut $crate::records::Records<$crate::records::HttpRecord> {
                &mut self.records.http
            }

            fn client_closes(
                &mut self,
            ) -> &mut $crate::records::Records<$crate::records::CloseRecord> {
                &mut self.records.client_closes
            }
        }
    };
}
pub(crate) use conn_logs;

/// Adds the methods every simulator handle has alike to `$handle`, a struct with a `host:
/// Host<_>` field whose records are `$records`: its address, its records, a wait for a record,
/// and stop.
macro_rules! handle_methods {
    ($handle:ty, $records:ty) => {
        impl $handle {
            /// The address it listens on.
            pub fn local_addr(&self) -> std::net::SocketAddr {
                self.host.local_addr()
            }

            /// A copy of the records so far.
            pub fn records(&self) -> $records {
                self.host.records()
            }

            /// Waits until `check` finds what it looks for in the records, or `timeout` passes.
            pub async fn wait_for<T>(
                &self,
                timeout: std::time::Duration,
                check: impl FnMut(&$records) -> Option<T>,
            ) -> Result<T, $crate::records::WaitTimedOut> {
                self.host.wait_for(timeout, check).await
            }

            /// Stops: requests in progress get a moment to finish and open connections a close
            /// frame (1001), then everything is cancelled.
            pub async fn stop(self) {
                self.host.stop().await;
            }
        }
    };
}
pub(crate) use handle_methods;

/// A simulator's shared half, as the host drives it.
pub(crate) trait Simulator: Service {
    type State: SimState;
    /// What its scenario schedules and `inject` does.
    type Action: Clone + Send + Sync + 'static;
    fn core(&self) -> &Core<Self::State>;
    fn inject(&self, action: Self::Action) -> usize;
}

/// Sends `message()` to every connection task behind `senders`; returns how many took it. A
/// full queue counts as not reached: the connection is too far behind to act now.
pub(crate) fn broadcast<'a, M: 'a>(
    senders: impl IntoIterator<Item = &'a Sender<M>>,
    message: impl Fn() -> M,
) -> usize {
    senders
        .into_iter()
        .filter(|tx| tx.try_send(message()).is_ok())
        .count()
}

/// The part of every shared half that is the same: the clock of the records, the first-client
/// signal, the queued HTTP faults and the state under one lock.
#[derive(Debug)]
pub(crate) struct Core<St> {
    started: Instant,
    pub(crate) first_client: Signal,
    http_faults: HttpFaults,
    state: Mutex<St>,
}

impl<St: SimState> Core<St> {
    pub(crate) fn new(state: St) -> Core<St> {
        Core {
            started: Instant::now(),
            first_client: Signal::new(),
            http_faults: HttpFaults::default(),
            state: Mutex::new(state),
        }
    }

    /// The state; a panic elsewhere does not make the records unreadable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time of a record: since the simulator started.
    pub(crate) fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// Queues `fault` for the next `times` REST requests.
    pub(crate) fn push_fault(&self, fault: HttpFault, times: u32) {
        self.http_faults.push(fault, times);
    }

    /// Applies the next queued fault: `Some` answer when it replaces the service's (the
    /// service's own error body for the status, or a dropped connection), `None` after a stall
    /// or when none is queued. `record` learns the status sent (`None` for a drop).
    pub(crate) async fn apply_fault(
        &self,
        reply: impl FnOnce(u16, Option<u64>) -> Reply,
        record: impl FnOnce(Option<u16>),
    ) -> Option<Answer> {
        match self.http_faults.take()? {
            HttpFault::Status {
                status,
                retry_after,
            } => {
                let reply = reply(status, retry_after);
                record(Some(status));
                Some(Answer::Reply(reply))
            }
            HttpFault::Stall(delay) => {
                async_io::Timer::after(delay).await;
                None
            }
            HttpFault::Drop => {
                record(None);
                Some(Answer::Drop)
            }
        }
    }
}

impl<St: ConnLogs> Core<St> {
    /// Logs a REST request (the path without its query, which may hold a ticket).
    pub(crate) fn record_http(&self, method: &str, path: &str, status: Option<u16>) {
        let at = self.since_start();
        self.lock().http_log().push(HttpRecord {
            at,
            method: method.to_owned(),
            path: path.to_owned(),
            status,
        });
    }

    /// Logs how the client of connection `conn` left (`code: None`: without a close frame).
    pub(crate) fn record_client_close(&self, conn: u64, code: Option<u16>, reason: &str) {
        let record = CloseRecord {
            conn,
            at: self.since_start(),
            code,
            reason: reason.to_owned(),
        };
        self.lock().client_closes().push(record);
    }
}

/// A listening simulator: its shared half, the listener and its background tasks (producers,
/// the schedule). Dropping it stops everything at once.
#[derive(Debug)]
pub(crate) struct Host<S> {
    shared: Arc<S>,
    server: Server,
    tasks: Vec<smol::Task<()>>,
}

impl<S: Simulator> Host<S> {
    /// Checks the scenario's rate, binds `bind`, builds the shared half for the bound address and
    /// serves it; the scenario's schedule starts with the first client.
    pub(crate) async fn start(
        bind: SocketAddr,
        scenario: &Scenario<S::Action>,
        new: impl FnOnce(SocketAddr) -> S,
    ) -> io::Result<Host<S>> {
        scenario.rate.validate()?;
        let listener = TcpListener::bind(bind).await?;
        let shared = Arc::new(new(listener.local_addr()?));
        let server = Server::serve(listener, shared.clone())?;
        let mut host = Host {
            shared,
            server,
            tasks: Vec::new(),
        };
        if !scenario.schedule.is_empty() {
            let schedule = scenario.schedule.clone();
            host.spawn(|sim| async move {
                sim.core().first_client.waiter().wait().await;
                run_schedule(Instant::now(), schedule, |action| {
                    sim.inject(action);
                })
                .await;
            });
        }
        Ok(host)
    }

    /// Runs a background task for as long as the simulator runs.
    pub(crate) fn spawn<F>(&mut self, task: impl FnOnce(Arc<S>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(smol::spawn(task(self.shared.clone())));
    }

    /// The shared half.
    pub(crate) fn shared(&self) -> &S {
        &self.shared
    }

    /// The address it listens on (the real port when bound to port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A copy of the records so far.
    pub(crate) fn records(&self) -> <S::State as SimState>::Records {
        self.shared.core().lock().records().clone()
    }

    /// Waits until `check` finds what it looks for in the records, or `timeout` passes.
    pub(crate) async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&<S::State as SimState>::Records) -> Option<T>,
    ) -> Result<T, WaitTimedOut> {
        let state = &self.shared.core().state;
        wait_until(state, timeout, |state| check(state.records())).await
    }

    /// Stops: open connections get a close frame (1001), then everything is cancelled.
    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// What woke a connection task (Discord's Gateway, Slack's Socket Mode).
pub(crate) enum Wake<C, T> {
    /// The client sent a message, or the read ended (`None`) or failed.
    Inbound(Option<Result<Message, WsError>>),
    /// The shared half queued a command; `None` when its queue closed.
    Command(Option<C>),
    /// The simulator is stopping.
    Shutdown,
    /// The connection's own timer (or other wait) finished with this.
    Timer(T),
}

/// Waits for the next thing a connection task must handle. When several are ready at once they
/// are taken in this order: the client, the shared half, the stop, the timer.
pub(crate) async fn next_wake<C, T>(
    incoming: &mut (impl Stream<Item = Result<Message, WsError>> + Unpin),
    commands: &Receiver<C>,
    shutdown: &Shutdown,
    timer: impl Future<Output = T>,
) -> Wake<C, T> {
    use futures_lite::future::or;
    or(async { Wake::Inbound(incoming.next().await) }, async {
        or(async { Wake::Command(commands.recv().await.ok()) }, async {
            or(
                async {
                    shutdown.wait().await;
                    Wake::Shutdown
                },
                async { Wake::Timer(timer.await) },
            )
            .await
        })
        .await
    })
    .await
}

/// A close frame with `code` and `reason`.
pub(crate) fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

/// After sending a close frame: reads until the client's reply, at most [`CLOSE_GRACE`].
pub(crate) async fn await_close_reply(
    incoming: &mut (impl Stream<Item = Result<Message, WsError>> + Unpin),
) {
    futures_lite::future::or(
        async {
            while let Some(Ok(message)) = incoming.next().await {
                if message.is_close() {
                    break;
                }
            }
        },
        async {
            async_io::Timer::after(CLOSE_GRACE).await;
        },
    )
    .await;
}

/// Everything the client sends within [`CLOSE_GRACE`] or until it closes the socket: what
/// is still in the socket after a write failed.
pub(crate) async fn read_leftovers(
    incoming: &mut (impl Stream<Item = Result<Message, WsError>> + Unpin),
) -> Vec<Message> {
    let mut left = Vec::new();
    let messages = &mut left;
    futures_lite::future::or(
        async {
            while let Some(Ok(message)) = incoming.next().await {
                messages.push(message);
            }
        },
        async {
            async_io::Timer::after(CLOSE_GRACE).await;
        },
    )
    .await;
    left
}

/// The code and reason of a client's close frame; 1005 (no status) when it had none.
pub(crate) fn client_close(frame: Option<&CloseFrame>) -> (u16, String) {
    frame.map_or((1005, String::new()), |frame| {
        (u16::from(frame.code), frame.reason.as_str().to_owned())
    })
}

/// `reason` cut to the 123 bytes a close frame can carry, at a character boundary.
pub(crate) fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_frame() {
        assert_eq!(close_reason("bye"), "bye");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(cut));
        assert_eq!(client_close(None), (1005, String::new()));
        let frame = close_frame(4000, "again");
        assert_eq!(client_close(Some(&frame)), (4000, "again".to_owned()));
    }
}
