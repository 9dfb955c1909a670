//! The database file: its connections, pragmas and schema version.
//!
//! Every connection runs in WAL mode, so readers (other connections, other processes such as
//! `openflume log tail`) never block the writer and always see whole committed transactions.

use crate::LogError;
use crate::error::describe;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// The schema this build writes and reads. A file with a higher version was written by a newer
/// openflume and is refused rather than misread.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The database file's name inside the data directory.
pub(crate) const FILE_NAME: &str = "log.sqlite";

/// The page size of a new database file.
const PAGE_SIZE: i64 = 64 * 1024;

/// Pages the WAL may hold before a commit checkpoints it: 16 MiB at [`PAGE_SIZE`], so the WAL
/// file stays the size it had with SQLite's default of 1 000 pages of 16 KiB.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 256;

/// How long a connection waits for another's lock (a reader's checkpoint, another process
/// acknowledging a consumer) before it reports the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Items: `event_id` is AUTOINCREMENT so an id is never reused, even after retention deleted the
/// newest rows (SQLite keeps the highest id ever given out in `sqlite_sequence`). No index but
/// the primary key: readers and retention go in id order, and every index costs each append.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    item TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    event_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY NOT NULL,
    acked INTEGER NOT NULL
);
";

/// Each forwarding target's outbox state (`outbox.rs`), keyed by the target's URL. Created on
/// first use, by whichever connection stores or reads a state first, so a log that forwards
/// nothing keeps the pages it had (size retention counts them). A table added without a version
/// change: a build that does not know it never reads it, and an older file gets it when a
/// forwarder first runs on it.
pub(crate) const OUTBOX_TABLE: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    target TEXT PRIMARY KEY NOT NULL,
    delivered_through INTEGER NOT NULL,
    head INTEGER,
    attempts INTEGER NOT NULL,
    first_attempt_at INTEGER,
    next_attempt_at INTEGER,
    disabled INTEGER NOT NULL
)";

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> LogError + '_ {
    move |error| LogError::Open {
        path: path.to_owned(),
        reason: describe(&error),
    }
}

/// Opens (creating if needed) the writer's connection: WAL, `synchronous=FULL` (the commit of
/// each group is fsynced before any of its appends is reported committed), schema checked.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LogError> {
    let err = open_error(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    // 64 KiB pages for a new file (an existing one keeps its size): an item is ~1–2 KB of JSON,
    // and fewer, larger pages cost fewer WAL frames, checksums, page-cache folios and writes
    // per item. Measured on 1.5 KB rows in groups of 4 000 (WAL, synchronous=FULL): 5.7 µs of
    // CPU a row with 4 KiB pages, 3.2–4.2 with 16 KiB, 2.2–2.7 with 64 KiB, SQLite's largest.
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Open {
            path: path.to_owned(),
            reason: format!("the file system refused WAL mode (journal mode {mode})"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(&err)?;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
    let set_up = (|| {
        conn.execute_batch(SCHEMA)?;
        let found: Option<i64> = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
                row.get(0)
            })
            .optional()?
            .flatten();
        if found.is_none() {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Ok::<_, rusqlite::Error>(found)
    })();
    match set_up {
        Ok(found) => {
            conn.execute_batch("COMMIT").map_err(&err)?;
            check_version(path, found)?;
            Ok(conn)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err(error))
        }
    }
}

/// Opens a reading connection to an existing log; it never creates one.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, LogError> {
    if !path.exists() {
        return Err(LogError::Missing {
            path: path.to_owned(),
        });
    }
    let err = open_error(path);
    // Read-write, so this connection can take part in the WAL's shared memory even when it is the
    // first to open the file, and can record a consumer's acknowledgement.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    // What this connection writes (a consumer's ack, a forwarding target's state) is synced at
    // its commit, as the writer's groups are: the caller goes on only once it is durable.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    let found: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .map_err(&err)?;
    check_version(path, found)?;
    Ok(conn)
}

fn check_version(path: &Path, found: Option<i64>) -> Result<(), LogError> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(LogError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}
