//! The forwarding targets' outbox state (`serve --forward`), beside the items it points into.
//!
//! One row per target, keyed by the target's URL: the cursor (every matching event up to
//! `delivered_through` was delivered or given up) and the head event's attempts and backoff
//! ([`TargetState`]). The forwarder stores it after every attempt's outcome, before its next
//! request, so a pending delivery and its backoff survive a restart.
//!
//! Stores go through the reading connections, each in its own small transaction (as
//! [`LogReader::ack_consumer`] does): WAL lets them commit beside the writer's groups, the busy
//! timeout covers the moment a group holds the lock, and they never wait in the append queue.

use crate::reader::LogReader;
use crate::schema::OUTBOX_TABLE;
use crate::{EventLog, LogError};
use openflume_proto::UnixMillis;
use openflume_proto::outbox::TargetState;
use rusqlite::OptionalExtension;

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The state in the [`COLUMNS`] of `row`, starting at column `at`.
fn row_state(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<TargetState> {
    Ok(TargetState {
        delivered_through: to_u64(row.get(at)?),
        head: row.get::<_, Option<i64>>(at + 1)?.map(to_u64),
        attempts: u32::try_from(row.get::<_, i64>(at + 2)?).unwrap_or(u32::MAX),
        first_attempt_at: row.get::<_, Option<i64>>(at + 3)?.map(UnixMillis),
        next_attempt_at: row.get::<_, Option<i64>>(at + 4)?.map(UnixMillis),
        disabled: row.get::<_, i64>(at + 5)? != 0,
    })
}

/// Creates the table when it is not there yet (a no-op, without a write, once it is).
fn ensure_table(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(OUTBOX_TABLE)?.execute([]).map(drop)
}

const COLUMNS: &str =
    "delivered_through, head, attempts, first_attempt_at, next_attempt_at, disabled";

impl LogReader {
    /// The state last stored for the forwarding target `target` (its URL), `None` for a target
    /// never seen.
    ///
    /// ```
    /// use openflume_log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::TargetState;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// assert_eq!(log.reader().outbox_state("https://hooks.example/in")?, None);
    /// log.reader().store_outbox_state("https://hooks.example/in", &TargetState::starting_after(5))?;
    /// let stored = log.reader().outbox_state("https://hooks.example/in")?;
    /// assert_eq!(stored.map(|s| s.delivered_through), Some(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outbox_state(&self, target: &str) -> Result<Option<TargetState>, LogError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE target = ?1");
        self.with_conn(|conn| {
            ensure_table(conn)?;
            conn.prepare_cached(&sql)?
                .query_row([target], |row| row_state(row, 0))
                .optional()
        })
    }

    /// Stores `state` for `target`, replacing what was there; committed (and synced) before it
    /// returns.
    ///
    /// ```
    /// use openflume_log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::TargetState;
    /// use openflume_proto::UnixMillis;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// let retrying = TargetState {
    ///     delivered_through: 4,
    ///     head: Some(5),
    ///     attempts: 2,
    ///     first_attempt_at: Some(UnixMillis(1_000)),
    ///     next_attempt_at: Some(UnixMillis(9_000)),
    ///     disabled: false,
    /// };
    /// log.reader().store_outbox_state("http://127.0.0.1:9000/", &retrying)?;
    /// assert_eq!(log.reader().outbox_state("http://127.0.0.1:9000/")?, Some(retrying));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_outbox_state(&self, target: &str, state: &TargetState) -> Result<(), LogError> {
        let sql = format!(
            "INSERT INTO outbox (target, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(target) DO UPDATE SET
                 delivered_through = excluded.delivered_through,
                 head = excluded.head,
                 attempts = excluded.attempts,
                 first_attempt_at = excluded.first_attempt_at,
                 next_attempt_at = excluded.next_attempt_at,
                 disabled = excluded.disabled"
        );
        self.with_conn(|conn| {
            ensure_table(conn)?;
            conn.prepare_cached(&sql)?
                .execute(rusqlite::params![
                    target,
                    to_i64(state.delivered_through),
                    state.head.map(to_i64),
                    i64::from(state.attempts),
                    state.first_attempt_at.map(|t| t.0),
                    state.next_attempt_at.map(|t| t.0),
                    i64::from(state.disabled),
                ])
                .map(drop)
        })
    }

    /// Every forwarding target with a stored state, by URL (a status page, or an operator
    /// checking which targets are disabled).
    ///
    /// ```
    /// use openflume_log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::TargetState;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// log.reader().store_outbox_state("https://b.example/", &TargetState::starting_after(1))?;
    /// log.reader().store_outbox_state("https://a.example/", &TargetState::starting_after(2))?;
    /// let targets = log.reader().outbox_targets()?;
    /// assert_eq!(targets[0].0, "https://a.example/");
    /// assert_eq!(targets.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outbox_targets(&self) -> Result<Vec<(String, TargetState)>, LogError> {
        let sql = format!("SELECT target, {COLUMNS} FROM outbox ORDER BY target");
        self.with_conn(|conn| {
            ensure_table(conn)?;
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row_state(row, 1)?)))?;
            rows.collect()
        })
    }
}

impl EventLog {
    /// See [`LogReader::outbox_state`].
    ///
    /// ```
    /// use openflume_log::{EventLog, LogOptions};
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// assert_eq!(log.outbox_state("https://hooks.example/in")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outbox_state(&self, target: &str) -> Result<Option<TargetState>, LogError> {
        self.reader().outbox_state(target)
    }

    /// See [`LogReader::store_outbox_state`].
    ///
    /// ```
    /// use openflume_log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::TargetState;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// log.store_outbox_state("https://hooks.example/in", &TargetState::starting_after(0))?;
    /// assert!(log.outbox_state("https://hooks.example/in")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_outbox_state(&self, target: &str, state: &TargetState) -> Result<(), LogError> {
        self.reader().store_outbox_state(target, state)
    }
}
