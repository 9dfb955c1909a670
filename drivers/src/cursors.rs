//! The cursors of what a consumer holds: folded from the items it took, in order, and from the
//! checkpoints among them, so that a stored cursor never covers an item the consumer did not keep.
//!
//! The durable log stores them in the transaction of the items they cover; `listen --data`
//! stores them after the lines are flushed to stdout. Either way, the next start reads them back
//! into the sources' configurations and carries on where the kept items end.

use crate::stream::{ItemStream, StreamCheckpoint};
use openflume_proto::{Checkpoint, Cursors, Item};
use std::collections::VecDeque;

/// Cursors kept in step with one stream's consumer: call [`held`](Self::held) for every item
/// taken from the stream, in order, once the consumer holds it, and
/// [`take_checkpoints`](Self::take_checkpoints) after taking items.
///
/// ```
/// # use openflume::{Flume, Source, StreamCursors, Overflow};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// # smol::block_on(async {
/// let flume = Flume::builder().source(cron).build();
/// let mut stream = flume.stream(100, Overflow::Backpressure).with_checkpoints();
/// let mut cursors = StreamCursors::default();
/// flume.open().await?.close().await;
/// while let Some(item) = stream.next().await {
///     cursors.take_checkpoints(&mut stream);
///     // ... keep the item (write it, store it), then:
///     cursors.held(&item);
/// }
/// for (source, checkpoint) in cursors.take_changed() {
///     println!("{source}: {}", serde_json::to_string(&checkpoint).unwrap());
/// }
/// # Ok::<(), openflume::StartError>(())
/// # })?;
/// # Ok::<(), openflume::StartError>(())
/// ```
#[derive(Debug, Default)]
pub struct StreamCursors {
    cursors: Cursors,
    /// Items folded so far: the count checkpoints are placed by.
    held: u64,
    /// Checkpoints taken from the stream whose place has not been reached.
    pending: VecDeque<StreamCheckpoint>,
}

impl StreamCursors {
    /// Starts from stored cursors (a stream read from its first item).
    pub fn new(cursors: Cursors) -> StreamCursors {
        StreamCursors {
            cursors,
            held: 0,
            pending: VecDeque::new(),
        }
    }

    /// Takes the checkpoints among the items taken so far; each is applied once the items
    /// before it are held.
    pub fn take_checkpoints(&mut self, stream: &mut ItemStream) {
        let mut taken = Vec::new();
        stream.take_checkpoints(&mut taken);
        self.pending.extend(taken);
        self.apply_reached();
    }

    /// The next item taken from the stream is held: fold it in.
    pub fn held(&mut self, item: &Item) {
        self.held += 1;
        self.cursors.observe(item);
        self.apply_reached();
    }

    /// The cursors that moved since the last call, for storage.
    pub fn take_changed(&mut self) -> Vec<(String, Checkpoint)> {
        self.cursors.take_changed()
    }

    fn apply_reached(&mut self) {
        while let Some(pinned) = self.pending.front()
            && pinned.after <= self.held
        {
            if let Some(pinned) = self.pending.pop_front() {
                self.cursors.apply(&pinned.source, pinned.checkpoint);
            }
        }
    }
}

#[cfg(feature = "log")]
mod stored {
    use openflume_log::{Cursor, EventLog, LogError};
    use openflume_proto::{Checkpoint, Cursors};

    /// Reads every stored cursor; one that this build cannot read (written by a newer one) is
    /// left out, and the source starts as on a first start.
    pub(crate) fn stored_cursors(log: &EventLog) -> Result<Cursors, LogError> {
        let mut cursors = Cursors::default();
        for (source, value) in log.cursors()? {
            if let Ok(checkpoint) = serde_json::from_value::<Checkpoint>(value) {
                cursors.restore(source, checkpoint);
            }
        }
        Ok(cursors)
    }

    /// The log's form of changed cursors.
    pub(crate) fn to_stored(changed: Vec<(String, Checkpoint)>) -> Vec<Cursor> {
        changed
            .into_iter()
            .filter_map(|(source, checkpoint)| {
                let value = serde_json::to_value(checkpoint).ok()?;
                Some(Cursor { source, value })
            })
            .collect()
    }
}

#[cfg(feature = "log")]
pub(crate) use stored::{stored_cursors, to_stored};
