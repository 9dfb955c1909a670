//! # openflume-log: the durable event log
//!
//! openflume's embedded log (issue 17): every item gets a monotonically increasing
//! [`EventId`] in a SQLite database (WAL mode, `synchronous=FULL`) in a data directory, with the
//! sources' cursors and the named consumers' acknowledgements beside the items.
//!
//! **Who holds an event, and when the upstream may forget it.** An append is durable once its
//! [`Appended`] handle resolves `Ok`: its transaction committed and was fsynced. The openflume
//! Flume appends a batch, waits for that, and only then commits its stream, so a Slack ack,
//! GitHub's validators or a webhook's 200 wait for the commit (`openflume::Flume::log_into`).
//! A crash before the handle resolves may lose the append, never part of it: a group is one
//! transaction.
//!
//! **Group commit.** One writer thread owns the only appending connection. It takes every append
//! queued while it was busy and writes them in one transaction, so under load one fsync covers
//! many appends; an idle log commits each as soon as it comes. The queue is bounded: an appender
//! waits for room ([`EventLog::append`] blocks, [`EventLog::append_async`] awaits).
//!
//! **Cursors** ([`Cursor`]) go in the same transaction as the items of their append, so a crash
//! can never keep one without the other.
//!
//! **Forwarding targets** (`serve --forward`) keep their outbox state here too
//! ([`LogReader::outbox_state`], [`LogReader::store_outbox_state`]): the cursor into the items
//! and the head delivery's attempts and backoff, stored after each attempt.
//!
//! **Retention** ([`LogOptions::max_age`], [`LogOptions::max_bytes`]) runs on the writer between
//! groups, at most once a second, and deletes the oldest items. Retention wins over consumers: a
//! named consumer that has not acknowledged what is deleted misses it. Each run that deletes
//! anything appends a `log.retention` log item (warn level when a consumer was behind) with the
//! count, and [`LogStats::retention_deleted`] counts the total.
//!
//! ```no_run
//! use openflume_log::{EventId, EventLog, Filter, LogOptions, Record};
//! use openflume_proto::{Event, Item, RawJson, UnixMillis};
//!
//! let log = EventLog::open("/tmp/openflume-data".as_ref(), LogOptions::default())?;
//! let item = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(0)));
//! let ids = log.append(vec![Record::from_item(&item)], Vec::new())?.wait()?;
//! for entry in log.read_after(EventId(0), 100, &Filter::default())? {
//!     println!("{}", entry.line());
//! }
//! # let _ = ids;
//! # Ok::<(), openflume_log::LogError>(())
//! ```

mod error;
mod latency;
mod outbox;
mod pending;
mod reader;
mod record;
mod schema;
#[cfg(feature = "testing")]
mod testing;
mod writer;

pub use error::LogError;
pub use latency::LatencyHistogram;
pub use pending::{AppendResult, Appended, IdRange};
pub use reader::{Entry, Filter, LogReader};
pub use record::{Kind, Record};

use event_listener::Listener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Command, Shared, Writer};

/// An item's place in the log. Ids only grow and are never reused, even after retention.
///
/// ```
/// use openflume_log::EventId;
/// assert!(EventId(2) > EventId(1));
/// assert_eq!(EventId(7).to_string(), "7");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A source's cursor (a Discord session and seq, GitHub validators, cron's last fire): stored in
/// the same transaction as the items of the append it comes with.
///
/// ```
/// use openflume_log::Cursor;
/// let cursor = Cursor { source: "time".into(), value: serde_json::json!({"last_fire": 1}) };
/// # let _ = cursor;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    /// Whose cursor.
    pub source: String,
    /// Any JSON; the last one stored wins.
    pub value: serde_json::Value,
}

/// How a log is kept.
///
/// ```
/// use openflume_log::LogOptions;
/// use std::time::Duration;
/// let week = LogOptions {
///     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
///     max_bytes: Some(1 << 30),
///     ..LogOptions::default()
/// };
/// # let _ = week;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Delete items received longer ago than this (by their `receivedAt`, oldest first).
    pub max_age: Option<Duration>,
    /// Delete the oldest items while the database's pages in use exceed this many bytes (down to
    /// 90% of it). The file keeps its size; freed pages are reused. The WAL comes on top.
    pub max_bytes: Option<u64>,
    /// Appends queued for the writer before [`EventLog::append`] waits for room.
    pub queue: usize,
}

impl Default for LogOptions {
    /// No retention; a queue of 64 appends.
    fn default() -> Self {
        LogOptions {
            max_age: None,
            max_bytes: None,
            queue: 64,
        }
    }
}

/// Counters since the log was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Transactions committed by the writer for appends (each one fsync).
    pub groups: u64,
    /// Appends committed.
    pub appends: u64,
    /// Items committed.
    pub items: u64,
    /// Items deleted by retention.
    pub retention_deleted: u64,
}

/// The durable log: appends through one writer thread with group commit, reads on connections
/// of their own. Cheap to clone; the writer stops once the last clone is dropped (after
/// committing what was queued) or [`close`](EventLog::close) is called.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    queue: async_channel::Sender<Command>,
    reader: LogReader,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Appends' latency, counted by their slots as the writer resolves them.
    latency: Arc<latency::AppendLatency>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.inner.shared.path)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens the log in `dir` (creating the directory and the database `log.sqlite` if needed)
    /// and starts its writer thread.
    pub fn open(dir: &Path, options: LogOptions) -> Result<EventLog, LogError> {
        let path = dir.join(schema::FILE_NAME);
        std::fs::create_dir_all(dir).map_err(|error| LogError::Open {
            path: path.clone(),
            reason: error.kind().to_string(),
        })?;
        let conn = schema::open_writer(&path)?;
        let last: i64 = conn
            .query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'items'), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(|error| LogError::Open {
                path: path.clone(),
                reason: error::describe(&error),
            })?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            last_id: AtomicU64::new(u64::try_from(last).unwrap_or(0)),
            commits: event_listener::Event::new(),
            groups: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            items: AtomicU64::new(0),
            retention_deleted: AtomicU64::new(0),
            #[cfg(feature = "testing")]
            gate: testing::Gate::default(),
        });
        let (queue, receiver) = async_channel::bounded(options.queue.max(1));
        let writer = Writer {
            conn,
            queue: receiver,
            shared: shared.clone(),
            options,
            failed: None,
            last_retention: None,
        };
        let thread = std::thread::Builder::new()
            .name("openflume-log".to_owned())
            .spawn(move || writer.run())
            .map_err(|error| LogError::Open {
                path: path.clone(),
                reason: format!("cannot start the writer thread: {}", error.kind()),
            })?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                queue,
                reader: LogReader::at(path),
                thread: Mutex::new(Some(thread)),
                latency: Arc::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Queues `records` (and `cursors`, stored in the same transaction) for the writer, waiting
    /// for room while the queue is full; the returned handle resolves once they are committed.
    /// For an appender on a plain thread: on an executor use [`append_async`](Self::append_async).
    pub fn append(&self, records: Vec<Record>, cursors: Vec<Cursor>) -> Result<Appended, LogError> {
        let slot = pending::Slot::timed(&self.inner.latency);
        self.inner
            .queue
            .send_blocking(Command::Append {
                records,
                cursors,
                slot: slot.clone(),
            })
            .map_err(|_| LogError::Closed)?;
        Ok(Appended::new(slot))
    }

    /// [`append`](Self::append) that awaits room in the queue instead of blocking the thread.
    pub async fn append_async(
        &self,
        records: Vec<Record>,
        cursors: Vec<Cursor>,
    ) -> Result<Appended, LogError> {
        let slot = pending::Slot::timed(&self.inner.latency);
        self.inner
            .queue
            .send(Command::Append {
                records,
                cursors,
                slot: slot.clone(),
            })
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(Appended::new(slot))
    }

    /// Runs retention now (it also runs by itself, at most once a second) and waits for it:
    /// resolves with the id of the `log.retention` item it appended, if it deleted anything.
    pub fn apply_retention(&self) -> AppendResult {
        let slot = pending::Slot::new();
        self.inner
            .queue
            .send_blocking(Command::Retain(slot.clone()))
            .map_err(|_| LogError::Closed)?;
        Appended::new(slot).wait()
    }

    /// The highest id committed by this process's writer (or found at open).
    pub fn committed_id(&self) -> EventId {
        EventId(self.inner.shared.last_id.load(Ordering::Acquire))
    }

    /// Resolves once this process's writer has committed an id above `after`: a follower reads
    /// up to the last id it saw, then awaits this, with no polling. A condition rather than
    /// "the next commit", so a commit between the read and the wait is never missed. Commits by
    /// other processes do not wake it (poll [`last_id`](Self::last_id) for those).
    pub async fn committed_beyond(&self, after: EventId) {
        let shared = &self.inner.shared;
        loop {
            let listener = shared.commits.listen();
            if shared.last_id.load(Ordering::Acquire) > after.0 {
                return;
            }
            listener.await;
        }
    }

    /// [`committed_beyond`](Self::committed_beyond) for a thread, giving up after `timeout`.
    /// True if an id above `after` was committed.
    pub fn wait_committed_beyond(&self, after: EventId, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let listener = shared.commits.listen();
            if shared.last_id.load(Ordering::Acquire) > after.0 {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() {
                return shared.last_id.load(Ordering::Acquire) > after.0;
            }
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let shared = &self.inner.shared;
        LogStats {
            groups: shared.groups.load(Ordering::Relaxed),
            appends: shared.appends.load(Ordering::Relaxed),
            items: shared.items.load(Ordering::Relaxed),
            retention_deleted: shared.retention_deleted.load(Ordering::Relaxed),
        }
    }

    /// How long appends took, from the call until their handle resolved `Ok` (committed and
    /// fsynced; waiting for room in the queue included), since open. See [`LatencyHistogram`].
    pub fn append_latency(&self) -> LatencyHistogram {
        self.inner.latency.snapshot()
    }

    /// Read access on connections separate from the writer's.
    pub fn reader(&self) -> &LogReader {
        &self.inner.reader
    }

    /// See [`LogReader::read_after`].
    pub fn read_after(
        &self,
        after: EventId,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<Entry>, LogError> {
        self.inner.reader.read_after(after, limit, filter)
    }

    /// See [`LogReader::last_id`].
    pub fn last_id(&self) -> Result<EventId, LogError> {
        self.inner.reader.last_id()
    }

    /// See [`LogReader::cursor`].
    pub fn cursor(&self, source: &str) -> Result<Option<serde_json::Value>, LogError> {
        self.inner.reader.cursor(source)
    }

    /// See [`LogReader::cursors`].
    pub fn cursors(&self) -> Result<Vec<(String, serde_json::Value)>, LogError> {
        self.inner.reader.cursors()
    }

    /// See [`LogReader::consumer`].
    pub fn consumer(&self, name: &str) -> Result<Option<EventId>, LogError> {
        self.inner.reader.consumer(name)
    }

    /// See [`LogReader::ack_consumer`].
    pub fn ack_consumer(&self, name: &str, id: EventId) -> Result<EventId, LogError> {
        self.inner.reader.ack_consumer(name, id)
    }

    /// Commits what was queued before, stops the writer and waits for it. Later appends fail
    /// with [`LogError::Closed`]; reads still work.
    pub fn close(&self) {
        let _ = self.inner.queue.send_blocking(Command::Close);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Inner {
    /// The writer commits what is queued, then stops; waiting for it means a dropped log has
    /// finished with its file.
    fn drop(&mut self) {
        self.queue.close();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

#[cfg(feature = "testing")]
impl EventLog {
    /// Test hook: while held, the writer waits in front of every commit (appends stay pending).
    #[doc(hidden)]
    pub fn testing_hold_commits(&self, held: bool) {
        self.inner.shared.gate.set(held);
    }

    /// Test hook: the database may grow to at most `pages` pages; past that, commits fail with
    /// SQLite's "database or disk is full", as on a full disk.
    #[doc(hidden)]
    pub fn testing_limit_pages(&self, pages: u64) -> Result<(), LogError> {
        let slot = pending::Slot::new();
        self.inner
            .queue
            .send_blocking(Command::LimitPages(pages, slot.clone()))
            .map_err(|_| LogError::Closed)?;
        Appended::new(slot).wait().map(drop)
    }
}

/// The database's file name inside the data directory (with `-wal` and `-shm` beside it).
///
/// ```
/// assert_eq!(openflume_log::DATABASE_FILE, "log.sqlite");
/// ```
pub const DATABASE_FILE: &str = schema::FILE_NAME;
