//! The forwarding targets' outbox state in the log's database: kept across a reopen, written
//! beside a busy writer, readable from another connection, and added to a file made before it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::{EventLog, LogOptions, LogReader, Record};
use openflume_proto::outbox::TargetState;
use openflume_proto::{Event, Item, RawJson, UnixMillis};

const TARGET: &str = "https://hooks.example.test/in?token=t";

fn retrying(through: u64) -> TargetState {
    TargetState {
        delivered_through: through,
        head: Some(through + 1),
        attempts: 3,
        first_attempt_at: Some(UnixMillis(1_764_100_000_000)),
        next_attempt_at: Some(UnixMillis(1_764_100_004_000)),
        disabled: false,
    }
}

#[test]
fn a_pending_delivery_and_its_backoff_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.outbox_state(TARGET).unwrap(), None);
    log.store_outbox_state(TARGET, &TargetState::starting_after(0))
        .unwrap();
    log.store_outbox_state(TARGET, &retrying(41)).unwrap();
    let gone = TargetState {
        disabled: true,
        ..TargetState::starting_after(7)
    };
    log.store_outbox_state("http://127.0.0.1:1/", &gone)
        .unwrap();
    drop(log);

    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.outbox_state(TARGET).unwrap(), Some(retrying(41)));
    // Another process's reader sees the same rows.
    let reader = LogReader::open(dir.path()).unwrap();
    let targets = reader.outbox_targets().unwrap();
    assert_eq!(
        targets,
        vec![
            ("http://127.0.0.1:1/".to_owned(), gone),
            (TARGET.to_owned(), retrying(41)),
        ]
    );
}

/// States are stored through the reading connections while the writer commits groups: every
/// store returns once committed, none fails on the writer's lock, and the last one wins.
#[test]
fn stores_commit_beside_a_busy_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            for n in 0..200u64 {
                let item = Item::Event(Event::new(
                    "time",
                    "tick",
                    RawJson::from_str(&format!(r#"{{"n":{n}}}"#)).unwrap(),
                    UnixMillis(0),
                ));
                log.append(vec![Record::from_item(&item)], vec![])
                    .unwrap()
                    .wait()
                    .unwrap();
            }
        })
    };
    for n in 0..200 {
        log.store_outbox_state(TARGET, &retrying(n)).unwrap();
    }
    appender.join().unwrap();
    assert_eq!(log.outbox_state(TARGET).unwrap(), Some(retrying(199)));
    assert_eq!(log.committed_id().0, 200);
}

/// A log made before the outbox table existed gets it on first use, with the same schema version
/// (older builds ignore the table), and a log that forwards nothing never gets it.
#[test]
fn an_older_file_gets_the_table_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(openflume_log::DATABASE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             CREATE TABLE items (event_id INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL,
                 source TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL, item TEXT NOT NULL);
             CREATE TABLE cursors (source TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, event_id INTEGER NOT NULL);
             CREATE TABLE consumers (name TEXT PRIMARY KEY NOT NULL, acked INTEGER NOT NULL);",
        )
        .unwrap();
    }
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let tables = || {
        let conn =
            rusqlite::Connection::open(dir.path().join(openflume_log::DATABASE_FILE)).unwrap();
        let count: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        count
    };
    assert_eq!(tables(), 0);
    assert_eq!(log.outbox_state(TARGET).unwrap(), None);
    log.store_outbox_state(TARGET, &retrying(1)).unwrap();
    assert_eq!(log.outbox_state(TARGET).unwrap(), Some(retrying(1)));
    assert_eq!(tables(), 1);
}
