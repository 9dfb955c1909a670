//! The handle an append returns: resolved by the writer thread once the append's group committed
//! (or failed), awaitable from any executor or waited on from a plain thread.

use crate::latency::AppendLatency;
use crate::{EventId, LogError};
use event_listener::{Event, EventListener, Listener};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

/// The ids a committed append got: consecutive, `first..=last`. `None` for an append of cursors
/// alone.
///
/// ```
/// use openflume_log::{EventId, IdRange};
/// let ids = IdRange { first: EventId(5), last: EventId(7) };
/// assert_eq!(ids.len(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// The first item's id.
    pub first: EventId,
    /// The last item's id.
    pub last: EventId,
}

impl IdRange {
    /// How many ids.
    pub fn len(&self) -> u64 {
        self.last.0 + 1 - self.first.0
    }

    /// Never true: an empty append has no range. For clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What an append came to: the ids of its items once committed (`None` when it had none).
pub type AppendResult = Result<Option<IdRange>, LogError>;

/// Shared between the writer thread and one [`Appended`].
pub(crate) struct Slot {
    result: Mutex<Option<AppendResult>>,
    done: Event,
    /// For an append: when it was asked for, and where its latency is counted once it commits.
    timing: Option<(Instant, Arc<AppendLatency>)>,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot {
            result: Mutex::new(None),
            done: Event::new(),
            timing: None,
        })
    }

    /// A slot for an append asked for now, whose latency `latency` counts once it commits.
    pub(crate) fn timed(latency: &Arc<AppendLatency>) -> Arc<Slot> {
        Arc::new(Slot {
            result: Mutex::new(None),
            done: Event::new(),
            timing: Some((Instant::now(), latency.clone())),
        })
    }

    pub(crate) fn resolve(&self, result: AppendResult) {
        if let (Some((asked, latency)), Ok(_)) = (&self.timing, &result) {
            latency.record(asked.elapsed());
        }
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify(usize::MAX);
    }

    fn take(&self) -> Option<AppendResult> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// An append on its way: resolves once the group it was written in is committed and fsynced
/// (`Ok` with its ids) or failed (`Err`, and none of its items is in the log). Await it on any
/// executor, or [`wait`](Appended::wait) from a thread.
///
/// ```
/// # fn demo(log: openflume_log::EventLog, records: Vec<openflume_log::Record>) -> Result<(), openflume_log::LogError> {
/// let appended = log.append(records, Vec::new())?;
/// let ids = appended.wait()?; // committed: safe to acknowledge upstream now
/// # Ok(()) }
/// ```
#[must_use = "an append is committed only once its handle resolves Ok"]
pub struct Appended {
    slot: Arc<Slot>,
    listener: Option<EventListener>,
}

impl Appended {
    pub(crate) fn new(slot: Arc<Slot>) -> Appended {
        Appended {
            slot,
            listener: None,
        }
    }

    /// Blocks this thread until the append committed or failed.
    pub fn wait(self) -> AppendResult {
        loop {
            let listener = self.slot.done.listen();
            if let Some(result) = self.slot.take() {
                return result;
            }
            listener.wait();
        }
    }
}

impl Future for Appended {
    type Output = AppendResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<AppendResult> {
        loop {
            if let Some(result) = self.slot.take() {
                return Poll::Ready(result);
            }
            match self.listener.as_mut() {
                // Listen, then look again: a resolve in between is not missed.
                None => self.listener = Some(self.slot.done.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

impl std::fmt::Debug for Appended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appended").finish_non_exhaustive()
    }
}
