//! The durable log as a Flume consumer (feature `log`): every item is appended to an
//! [`EventLog`], and an event counts as held only once its append committed.
//!
//! Who holds an event, and who may forget it: the sink reads a back-pressure stream that
//! [holds until commit](crate::ItemStream::holds_until_commit). It takes what is ready, appends
//! it as one batch, and commits the stream up to that batch only once the writer's group commit
//! (fsynced) resolved its append; one more batch may be on its way to the writer meanwhile. So an upstream acknowledgement (a Slack ack, GitHub's validators, a webhook's 200)
//! is sent only after the event is in the log for good. While the log is slow, the stream fills
//! and the sources wait (back-pressure), as for any back-pressure consumer. If an append fails
//! (a disk error) the sink stops and drops its stream: nothing it had not committed is ever
//! acknowledged, and the services redeliver to the next run.
//!
//! The sources' cursors go in the same append as the items they were folded from (see
//! [`StreamCursors`]): the next start reads them back, so a restart loses and repeats nothing.

use crate::cursors::{StreamCursors, stored_cursors, to_stored};
use crate::stream::ItemStream;
use openflume_log::{Appended, EventLog, LogError, Record};
use std::collections::VecDeque;

/// The task that appends a flume's items to a durable log: see [`Flume::log_into`](crate::Flume::log_into).
///
/// It runs on a thread of its own (the writes and the wait for each commit never block the
/// executor that runs the sources) until the flume closes and everything was appended, or an
/// append fails.
#[derive(Debug)]
pub struct LogSink {
    done: smol::channel::Receiver<Result<u64, LogError>>,
}

impl LogSink {
    /// Appends what `stream` (a back-pressure stream) carries from now on. The sink holds an
    /// item only once its append committed, and stores the checkpoints among the items.
    pub(crate) fn spawn(stream: ItemStream, log: EventLog) -> Result<LogSink, LogError> {
        let stream = stream.holds_until_commit().with_checkpoints();
        let (done_tx, done) = smol::channel::bounded(1);
        let path = log.path().to_owned();
        // Stored cursors are the base the new items fold into (a Slack cursor keeps its ids).
        let cursors = StreamCursors::new(stored_cursors(&log)?);
        std::thread::Builder::new()
            .name("openflume-log-sink".to_owned())
            .spawn(move || {
                let _ = done_tx.try_send(append_all(stream, &log, cursors));
            })
            .map_err(|error| LogError::Open {
                path,
                reason: format!("cannot start the log sink thread: {}", error.kind()),
            })?;
        Ok(LogSink { done })
    }

    /// Resolves once the flume has closed and every item was appended and committed (`Ok` with
    /// how many), or once an append failed (the error; what followed was not appended and not
    /// acknowledged upstream).
    ///
    /// ```no_run
    /// # async fn demo(flume: openflume::Flume, log: openflume::log::EventLog) -> Result<(), Box<dyn std::error::Error>> {
    /// let sink = flume.log_into(log, 4096)?;
    /// let running = flume.open().await?;
    /// running.wait().await;
    /// let appended = sink.finished().await?;
    /// # let _ = appended; Ok(()) }
    /// ```
    pub async fn finished(self) -> Result<u64, LogError> {
        self.done.recv().await.unwrap_or(Err(LogError::Closed))
    }
}

/// Appends in flight at once: while the log commits one batch, the next is already queued for
/// the writer's next group, so the writer never waits for this thread to turn items into rows.
const IN_FLIGHT: usize = 2;

fn append_all(
    mut stream: ItemStream,
    log: &EventLog,
    mut cursors: StreamCursors,
) -> Result<u64, LogError> {
    let mut appended = 0u64;
    let mut batch = VecDeque::new();
    // Appends not yet known committed, oldest first, with their item counts.
    let mut in_flight: VecDeque<(Appended, usize)> = VecDeque::new();
    // Waits for the oldest append, then declares held everything taken before it: the stream's
    // commit is cumulative, so the younger appends' items are left out. On an error the stream is
    // dropped with them uncommitted: nothing taken since the last commit is ever acknowledged.
    let settle_oldest = |stream: &ItemStream,
                         in_flight: &mut VecDeque<(Appended, usize)>|
     -> Result<u64, LogError> {
        let Some((oldest, count)) = in_flight.pop_front() else {
            return Ok(0);
        };
        oldest.wait()?;
        stream.commit_all_but(in_flight.iter().map(|(_, n)| n).sum());
        Ok(count as u64)
    };
    loop {
        stream.take_ready(&mut batch);
        if batch.is_empty() {
            if !in_flight.is_empty() {
                appended += settle_oldest(&stream, &mut in_flight)?;
                continue;
            }
            // A plain parker, as the stdout writer does: `smol::block_on` would make this thread
            // drive the reactor and pull the sources' socket wake-ups onto it.
            match futures_lite::future::block_on(stream.next()) {
                Some(item) => batch.push_back(item),
                None => break,
            }
            stream.take_ready(&mut batch);
        }
        cursors.take_checkpoints(&mut stream);
        let records: Vec<Record> = batch
            .drain(..)
            .map(|item| {
                cursors.held(&item);
                Record::from_item(&item)
            })
            .collect();
        let count = records.len();
        let moved = to_stored(cursors.take_changed());
        in_flight.push_back((log.append(records, moved)?, count));
        if in_flight.len() >= IN_FLIGHT {
            appended += settle_oldest(&stream, &mut in_flight)?;
        }
    }
    while !in_flight.is_empty() {
        appended += settle_oldest(&stream, &mut in_flight)?;
    }
    Ok(appended)
}
