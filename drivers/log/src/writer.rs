//! The writer thread: the only connection that appends. It takes every append queued while it
//! was busy, writes them all in one transaction, commits (one fsync with `synchronous=FULL`), and
//! only then resolves their handles. Under load a group holds many appends, so the fsync is
//! shared; an idle log commits each append on its own, as soon as it comes.
//!
//! Retention runs here too, between groups, so it never races an append.

use crate::error::describe;
use crate::pending::{AppendResult, IdRange, Slot};
use crate::{Cursor, EventId, LogError, LogOptions, Record};
use event_listener::Event;
use openflume_proto::{Item, Level, Log, UnixMillis};
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Retention runs at most this often (and whenever asked with `apply_retention`): its queries
/// cost little, but not nothing, and between groups they delay the next one.
const RETENTION_EVERY: Duration = Duration::from_secs(1);

/// Size retention deletes down to this share of `max_bytes`, so a log at its limit does not
/// delete a few rows after every group.
const SIZE_LOW_WATER: f64 = 0.9;

/// What the writer is asked to do.
pub(crate) enum Command {
    Append {
        records: Vec<Record>,
        cursors: Vec<Cursor>,
        slot: Arc<Slot>,
    },
    /// Run retention now; resolves `Ok(None)`.
    Retain(Arc<Slot>),
    /// Finish what was queued before, then stop.
    Close,
    /// Test hook: make the database refuse to grow past this many pages (`SQLITE_FULL`), as a
    /// full disk would.
    #[cfg(feature = "testing")]
    LimitPages(u64, Arc<Slot>),
}

/// What the writer shares with every [`EventLog`](crate::EventLog) handle.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// The highest id committed by this process's writer.
    pub(crate) last_id: AtomicU64,
    /// Fires after each commit.
    pub(crate) commits: Event,
    pub(crate) groups: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) retention_deleted: AtomicU64,
    #[cfg(feature = "testing")]
    pub(crate) gate: crate::testing::Gate,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) queue: async_channel::Receiver<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) options: LogOptions,
    /// Set by the first failed commit: every later append fails with it (sticky, so nothing is
    /// half-written after a disk error; reopen the log once the cause is fixed).
    pub(crate) failed: Option<LogError>,
    pub(crate) last_retention: Option<Instant>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.queue.recv_blocking() {
            let mut group = vec![first];
            while let Ok(more) = self.queue.try_recv() {
                group.push(more);
            }
            let mut appends = Vec::new();
            let mut retain = Vec::new();
            let mut closing = false;
            for command in group {
                match command {
                    _ if closing => reject(command, &LogError::Closed),
                    Command::Append {
                        records,
                        cursors,
                        slot,
                    } => appends.push((records, cursors, slot)),
                    Command::Retain(slot) => retain.push(slot),
                    Command::Close => closing = true,
                    #[cfg(feature = "testing")]
                    Command::LimitPages(pages, slot) => {
                        let result = self
                            .conn
                            .pragma_update(None, "max_page_count", pages)
                            .map(|()| None)
                            .map_err(|e| self.write_error(&e));
                        slot.resolve(result);
                    }
                }
            }
            self.commit_group(appends);
            let due = self
                .last_retention
                .is_none_or(|at| at.elapsed() >= RETENTION_EVERY);
            if !retain.is_empty() || due {
                let result = self.retain();
                for slot in retain {
                    slot.resolve(result.clone());
                }
            }
            if closing {
                self.queue.close();
                while let Ok(command) = self.queue.try_recv() {
                    reject(command, &LogError::Closed);
                }
                return;
            }
        }
    }

    fn write_error(&self, error: &rusqlite::Error) -> LogError {
        LogError::Write {
            path: self.shared.path.clone(),
            reason: describe(error),
        }
    }

    fn commit_group(&mut self, appends: Vec<(Vec<Record>, Vec<Cursor>, Arc<Slot>)>) {
        if appends.is_empty() {
            return;
        }
        if let Some(error) = &self.failed {
            for (_, _, slot) in appends {
                slot.resolve(Err(error.clone()));
            }
            return;
        }
        match self.write_group(&appends) {
            Ok(ranges) => {
                let items: u64 = ranges.iter().flatten().map(IdRange::len).sum();
                if let Some(last) = ranges.iter().flatten().map(|r| r.last.0).max() {
                    self.shared.last_id.fetch_max(last, Ordering::AcqRel);
                }
                self.shared.groups.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .appends
                    .fetch_add(appends.len() as u64, Ordering::Relaxed);
                self.shared.items.fetch_add(items, Ordering::Relaxed);
                for ((_, _, slot), range) in appends.into_iter().zip(ranges) {
                    slot.resolve(Ok(range));
                }
                self.shared.commits.notify(usize::MAX);
            }
            Err(error) => {
                let error = self.write_error(&error);
                self.failed = Some(error.clone());
                for (_, _, slot) in appends {
                    slot.resolve(Err(error.clone()));
                }
            }
        }
    }

    /// One transaction for the whole group; an error rolls all of it back (the transaction is
    /// dropped uncommitted).
    fn write_group(
        &mut self,
        appends: &[(Vec<Record>, Vec<Cursor>, Arc<Slot>)],
    ) -> Result<Vec<Option<IdRange>>, rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ranges = Vec::with_capacity(appends.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO items (received_at, source, kind, type, item) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut set_cursor = tx.prepare_cached(
                "INSERT INTO cursors (source, value, event_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(source) DO UPDATE SET value = excluded.value, event_id = excluded.event_id",
            )?;
            for (records, cursors, _) in appends {
                let mut range: Option<IdRange> = None;
                for record in records {
                    insert.execute(params![
                        record.received_at,
                        record.source,
                        record.kind.as_str(),
                        record.item_type,
                        record.json,
                    ])?;
                    let id = EventId(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
                    match range.as_mut() {
                        Some(range) => range.last = id,
                        None => {
                            range = Some(IdRange {
                                first: id,
                                last: id,
                            })
                        }
                    }
                }
                for cursor in cursors {
                    let covered = range.map_or(0, |r| r.last.0);
                    set_cursor.execute(params![
                        cursor.source,
                        cursor.value.to_string(),
                        i64::try_from(covered).unwrap_or(i64::MAX),
                    ])?;
                }
                ranges.push(range);
            }
        }
        #[cfg(feature = "testing")]
        self.shared.gate.pass();
        tx.commit()?;
        Ok(ranges)
    }

    /// Deletes what is older than `max_age` or beyond `max_bytes`, oldest first, and records
    /// what it deleted as a log item in the log itself (warn level when a named consumer had not
    /// acknowledged all of it). Retention wins over consumers: a consumer that falls behind the
    /// retention window misses what was deleted, and the log says so.
    fn retain(&mut self) -> AppendResult {
        self.last_retention = Some(Instant::now());
        if self.failed.is_some()
            || (self.options.max_age.is_none() && self.options.max_bytes.is_none())
        {
            return Ok(None);
        }
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut deleted = 0u64;
            let mut reasons = Vec::new();
            if let Some(max_age) = self.options.max_age {
                let cutoff = wall_now_ms()
                    .saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
                let n = delete_older_than(&tx, cutoff)?;
                if n > 0 {
                    deleted += n;
                    reasons.push("age");
                }
            }
            if let Some(max_bytes) = self.options.max_bytes {
                let n = delete_beyond_size(&tx, max_bytes)?;
                if n > 0 {
                    deleted += n;
                    reasons.push("size");
                }
            }
            if deleted == 0 {
                return Ok((0, None));
            }
            let first_kept: Option<i64> =
                tx.query_row("SELECT MIN(event_id) FROM items", [], |row| row.get(0))?;
            let last_given: i64 = tx.query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'items'), 0)",
                [],
                |row| row.get(0),
            )?;
            // Everything up to this id is gone.
            let gone_through = first_kept.map_or(last_given, |first| first - 1);
            let behind: Vec<String> = {
                let mut statement =
                    tx.prepare("SELECT name FROM consumers WHERE acked < ?1 ORDER BY name")?;
                statement
                    .query_map([gone_through], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let level = if behind.is_empty() {
                Level::Info
            } else {
                Level::Warn
            };
            let message = if behind.is_empty() {
                format!("retention deleted {deleted} item(s) through event {gone_through}")
            } else {
                format!(
                    "retention deleted {deleted} item(s) through event {gone_through}, some not yet acknowledged by consumer(s) {}",
                    behind.join(", ")
                )
            };
            let log = Item::Log(
                Log::new(
                    level,
                    "log",
                    "log.retention",
                    message,
                    UnixMillis(wall_now_ms()),
                )
                .with_detail(serde_json::json!({
                    "deleted": deleted,
                    "by": reasons,
                    "through_event_id": gone_through,
                    "consumers_behind": behind,
                })),
            );
            let record = Record::from_item(&log);
            tx.execute(
                "INSERT INTO items (received_at, source, kind, type, item) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![record.received_at, record.source, record.kind.as_str(), record.item_type, record.json],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok::<_, rusqlite::Error>((deleted, Some(id)))
        })();
        match result {
            Ok((deleted, log_id)) => {
                self.shared
                    .retention_deleted
                    .fetch_add(deleted, Ordering::Relaxed);
                if let Some(id) = log_id {
                    let id = u64::try_from(id).unwrap_or(0);
                    self.shared.last_id.fetch_max(id, Ordering::AcqRel);
                    self.shared.commits.notify(usize::MAX);
                    return Ok(Some(IdRange {
                        first: EventId(id),
                        last: EventId(id),
                    }));
                }
                Ok(None)
            }
            Err(error) => {
                let error = self.write_error(&error);
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }
}

/// Deletes the oldest items, in id order, up to the first one received at or after `cutoff`. An
/// item with an older timestamp behind a newer one (a source with a skewed clock) stays until
/// everything before it is old enough: retention goes by position, so it never leaves holes.
fn delete_older_than(tx: &rusqlite::Transaction<'_>, cutoff: i64) -> rusqlite::Result<u64> {
    let boundary: Option<i64> = {
        let mut statement =
            tx.prepare_cached("SELECT event_id, received_at FROM items ORDER BY event_id")?;
        let mut rows = statement.query([])?;
        let mut boundary = None;
        let mut any = false;
        while let Some(row) = rows.next()? {
            any = true;
            let received_at: i64 = row.get(1)?;
            if received_at >= cutoff {
                boundary = Some(row.get(0)?);
                break;
            }
        }
        if !any {
            return Ok(0);
        }
        boundary
    };
    let n = match boundary {
        Some(boundary) => tx.execute("DELETE FROM items WHERE event_id < ?1", [boundary])?,
        None => tx.execute("DELETE FROM items", [])?,
    };
    Ok(n as u64)
}

/// Deletes the oldest items while the pages in use exceed `max_bytes`, down to
/// [`SIZE_LOW_WATER`] of it. Freed pages are reused by later appends; the file does not shrink.
fn delete_beyond_size(tx: &rusqlite::Transaction<'_>, max_bytes: u64) -> rusqlite::Result<u64> {
    let mut deleted = 0u64;
    // Each round estimates the rows to delete from the average row size; three rounds settle it.
    for _ in 0..3 {
        let used = used_bytes(tx)?;
        if used <= max_bytes {
            break;
        }
        let (first, last): (Option<i64>, Option<i64>) = tx.query_row(
            "SELECT MIN(event_id), MAX(event_id) FROM items",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let (Some(first), Some(last)) = (first, last) else {
            break;
        };
        // Ids are deleted from the front only, so the rows are exactly first..=last.
        let rows = (last - first + 1) as f64;
        let target = max_bytes as f64 * SIZE_LOW_WATER;
        let share = (used as f64 - target) / used as f64;
        let count = ((rows * share).ceil() as i64).max(1);
        let n = tx.execute("DELETE FROM items WHERE event_id < ?1", [first + count])?;
        deleted += n as u64;
    }
    Ok(deleted)
}

/// Bytes of the database's pages that hold data (not the free list; not the WAL).
fn used_bytes(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
    let pages: i64 = tx.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let free: i64 = tx.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    let size: i64 = tx.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    Ok(u64::try_from((pages - free).max(0) * size).unwrap_or(0))
}

fn reject(command: Command, error: &LogError) {
    match command {
        Command::Append { slot, .. } | Command::Retain(slot) => slot.resolve(Err(error.clone())),
        #[cfg(feature = "testing")]
        Command::LimitPages(_, slot) => slot.resolve(Err(error.clone())),
        Command::Close => {}
    }
}

pub(crate) fn wall_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
