//! Reading the log: on connections of their own, so reads never wait for the writer (WAL
//! readers see the last committed state), in this process or another (`openflume log tail`
//! while `serve` appends).

use crate::error::describe;
use crate::record::{Kind, Record};
use crate::schema::{FILE_NAME, open_reader};
use crate::{EventId, LogError};
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Which items a read returns. `None` means any; an empty list matches nothing.
///
/// ```
/// use openflume_log::Filter;
/// let slack_only = Filter { sources: Some(vec!["slack".into()]), ..Filter::default() };
/// assert!(Filter::default().sources.is_none());
/// # let _ = slack_only;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Items from these sources.
    pub sources: Option<Vec<String>>,
    /// Events of these types, logs with these actions.
    pub types: Option<Vec<String>>,
}

impl Filter {
    /// Whether an item of `source` whose type (an event's type, a log's action) is `item_type`
    /// passes: the test [`LogReader::read_after`] makes in SQL, for items read from elsewhere (a
    /// Redis Stream).
    ///
    /// ```
    /// use openflume_log::Filter;
    /// let deploys = Filter { sources: None, types: Some(vec!["deploys".into()]) };
    /// assert!(deploys.passes("custom", "deploys"));
    /// assert!(!deploys.passes("custom", "builds"));
    /// let nothing = Filter { sources: Some(vec![]), types: None };
    /// assert!(!nothing.passes("custom", "deploys"));
    /// ```
    pub fn passes(&self, source: &str, item_type: &str) -> bool {
        let within = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref()
                .is_none_or(|list| list.iter().any(|wanted| wanted == value))
        };
        within(&self.sources, source) && within(&self.types, item_type)
    }
}

/// One item read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub event_id: EventId,
    /// The row.
    pub record: Record,
}

impl Entry {
    /// The line `openflume log tail` prints: the item exactly as `listen` prints it, with a
    /// top-level `"event_id"` first.
    ///
    /// ```
    /// use openflume_log::{Entry, EventId, Record};
    /// use openflume_proto::{Event, Item, RawJson, UnixMillis};
    /// let item = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(5)));
    /// let entry = Entry { event_id: EventId(3), record: Record::from_item(&item) };
    /// assert!(entry.line().starts_with(r#"{"event_id":3,"kind":"event","#));
    /// ```
    pub fn line(&self) -> String {
        let json = &self.record.json;
        let rest = json.strip_prefix('{').unwrap_or(json);
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        format!("{{\"event_id\":{}{sep}{rest}", self.event_id.0)
    }
}

/// Read access to a log, without a writer: for another process (`openflume log tail`), or as
/// [`EventLog::reader`](crate::EventLog::reader).
///
/// ```no_run
/// use openflume_log::{EventId, Filter, LogReader};
/// let reader = LogReader::open("/var/lib/openflume".as_ref())?;
/// for entry in reader.read_after(EventId(0), 100, &Filter::default())? {
///     println!("{}", entry.line());
/// }
/// # Ok::<(), openflume_log::LogError>(())
/// ```
pub struct LogReader {
    path: PathBuf,
    /// Idle connections; a read takes one (or opens one) and puts it back.
    pool: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// Opens the log in `dir` for reading. Fails with [`LogError::Missing`] when there is none.
    pub fn open(dir: &Path) -> Result<LogReader, LogError> {
        let reader = LogReader::at(dir.join(FILE_NAME));
        let conn = open_reader(&reader.path)?;
        reader.pool_lock().push(conn);
        Ok(reader)
    }

    pub(crate) fn at(path: PathBuf) -> LogReader {
        LogReader {
            path,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn pool_lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with_conn<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LogError> {
        let pooled = self.pool_lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = read(&conn).map_err(|error| LogError::Read {
            path: self.path.clone(),
            reason: describe(&error),
        });
        self.pool_lock().push(conn);
        result
    }

    /// Up to `limit` items with ids above `after` that match `filter`, in id order.
    pub fn read_after(
        &self,
        after: EventId,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<Entry>, LogError> {
        let nothing = |list: &Option<Vec<String>>| list.as_ref().is_some_and(Vec::is_empty);
        if limit == 0 || nothing(&filter.sources) || nothing(&filter.types) {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "SELECT event_id, received_at, source, kind, type, item FROM items WHERE event_id > ?",
        );
        let mut args: Vec<rusqlite::types::Value> =
            vec![i64::try_from(after.0).unwrap_or(i64::MAX).into()];
        for (column, list) in [("source", &filter.sources), ("type", &filter.types)] {
            if let Some(list) = list {
                sql.push_str(&format!(" AND {column} IN ("));
                for (i, value) in list.iter().enumerate() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                    args.push(value.clone().into());
                }
                sql.push(')');
            }
        }
        sql.push_str(" ORDER BY event_id LIMIT ?");
        args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(args), |row| {
                let kind: String = row.get(3)?;
                Ok(Entry {
                    event_id: EventId(u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0)),
                    record: Record {
                        received_at: row.get(1)?,
                        source: row.get(2)?,
                        kind: if kind == "log" {
                            Kind::Log
                        } else {
                            Kind::Event
                        },
                        item_type: row.get(4)?,
                        json: row.get(5)?,
                    },
                })
            })?;
            rows.collect()
        })
    }

    /// The highest id the log ever gave out (`EventId(0)` for a new log), committed by any
    /// process. Ids deleted by retention count: an id is never given out twice.
    pub fn last_id(&self) -> Result<EventId, LogError> {
        self.with_conn(|conn| {
            let seq: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'items'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(EventId(
                seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            ))
        })
    }

    /// The lowest id still in the log (`None` when empty): what retention has kept.
    pub fn first_id(&self) -> Result<Option<EventId>, LogError> {
        self.with_conn(|conn| {
            let first: Option<i64> =
                conn.query_row("SELECT MIN(event_id) FROM items", [], |row| row.get(0))?;
            Ok(first.and_then(|f| u64::try_from(f).ok()).map(EventId))
        })
    }

    /// The cursor last stored for `source`, written in the same transaction as the items it
    /// covers.
    pub fn cursor(&self, source: &str) -> Result<Option<serde_json::Value>, LogError> {
        let text: Option<String> = self.with_conn(|conn| {
            conn.query_row(
                "SELECT value FROM cursors WHERE source = ?1",
                [source],
                |row| row.get(0),
            )
            .optional()
        })?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|_| LogError::Read {
                path: self.path.clone(),
                reason: format!("the cursor of {source:?} is not JSON"),
            })
        })
        .transpose()
    }

    /// Every stored cursor, by source.
    pub fn cursors(&self) -> Result<Vec<(String, serde_json::Value)>, LogError> {
        let rows: Vec<(String, String)> = self.with_conn(|conn| {
            let mut statement =
                conn.prepare("SELECT source, value FROM cursors ORDER BY source")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(source, text)| {
                let value = serde_json::from_str(&text).map_err(|_| LogError::Read {
                    path: self.path.clone(),
                    reason: format!("the cursor of {source:?} is not JSON"),
                })?;
                Ok((source, value))
            })
            .collect()
    }

    /// The last id the named consumer acknowledged, `None` if it never did.
    pub fn consumer(&self, name: &str) -> Result<Option<EventId>, LogError> {
        self.with_conn(|conn| {
            let acked: Option<i64> = conn
                .query_row(
                    "SELECT acked FROM consumers WHERE name = ?1",
                    [name],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(acked.and_then(|a| u64::try_from(a).ok()).map(EventId))
        })
    }

    /// Records that consumer `name` has everything through `id` (cumulative: an older id than
    /// the one stored changes nothing). Returns the consumer's acknowledged id after the call.
    /// Its own small transaction, committed before it returns; an id the log never gave out is
    /// refused ([`LogError::AckBeyondEnd`]).
    pub fn ack_consumer(&self, name: &str, id: EventId) -> Result<EventId, LogError> {
        let acked = i64::try_from(id.0).unwrap_or(i64::MAX);
        let outcome = self.with_conn(|conn| {
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'items'), 0)",
                [],
                |row| row.get(0),
            )?;
            if acked > last {
                return Ok(Err(last));
            }
            tx.execute(
                "INSERT INTO consumers (name, acked) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET acked = MAX(acked, excluded.acked)",
                rusqlite::params![name, acked],
            )?;
            let now: i64 = tx.query_row(
                "SELECT acked FROM consumers WHERE name = ?1",
                [name],
                |row| row.get(0),
            )?;
            tx.commit()?;
            Ok(Ok(now))
        })?;
        match outcome {
            Ok(now) => Ok(EventId(u64::try_from(now).unwrap_or(0))),
            Err(last) => Err(LogError::AckBeyondEnd {
                consumer: name.to_owned(),
                acked: id.0,
                last: u64::try_from(last).unwrap_or(0),
            }),
        }
    }
}
