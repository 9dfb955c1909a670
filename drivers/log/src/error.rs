//! The log's one error type.

use std::path::PathBuf;

/// Why a log operation failed.
///
/// Messages name the database file and SQLite's description of the failure (its result code,
/// "disk I/O error", "database or disk is full"), never a statement or an item's content.
///
/// ```
/// use openflume_log::LogError;
/// let error = LogError::NewerSchema { path: "/data/log.sqlite".into(), found: 9, supported: 1 };
/// assert!(error.to_string().contains("newer openflume"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The database could not be opened or set up (permissions, not a database, a full disk).
    #[error("cannot open the log at {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// There is no log at this path (readers do not create one).
    #[error("no log at {path}")]
    Missing {
        /// The database file looked for.
        path: PathBuf,
    },
    /// The database was written by a newer openflume whose schema this one does not know.
    #[error(
        "the log at {path} has schema version {found}, written by a newer openflume; this one reads version {supported}"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A group of appends could not be committed (a disk error, a full disk): none of its items
    /// is in the log. The log stops accepting appends; reopen it once the cause is fixed.
    #[error("writing the log at {path} failed: {reason}")]
    Write {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A read failed.
    #[error("reading the log at {path} failed: {reason}")]
    Read {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A consumer acknowledged an id the log never assigned (that would skip future events).
    #[error("consumer {consumer:?} acknowledged event {acked}, beyond the last event {last}")]
    AckBeyondEnd {
        /// The consumer's name.
        consumer: String,
        /// The id it acknowledged.
        acked: u64,
        /// The last id the log assigned.
        last: u64,
    },
    /// The log was closed: no more appends.
    #[error("the log is closed")]
    Closed,
}

/// SQLite's description of a failure: the result code's text for engine errors (never the
/// statement), a short kind for the binding's own errors.
pub(crate) fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(code, _) => code.to_string(),
        rusqlite::Error::FromSqlConversionFailure(column, ..) => {
            format!("unexpected value in column {column}")
        }
        rusqlite::Error::InvalidColumnType(column, ..) => {
            format!("unexpected type in column {column}")
        }
        rusqlite::Error::QueryReturnedNoRows => "no row".to_owned(),
        _ => "database error".to_owned(),
    }
}
