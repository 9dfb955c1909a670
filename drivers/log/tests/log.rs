//! The durable log against real SQLite files in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::{
    Cursor, EventId, EventLog, Filter, IdRange, LogError, LogOptions, LogReader, Record,
};
use openflume_proto::{Event, Item, Level, Log, RawJson, UnixMillis};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn event(source: &str, kind: &str, n: u64, at: i64) -> Record {
    let data = RawJson::from_str(&format!(r#"{{"n":{n}}}"#)).unwrap();
    Record::from_item(&Item::Event(Event::new(
        source.to_owned(),
        kind,
        data,
        UnixMillis(at),
    )))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn events(n: u64) -> Vec<Record> {
    (0..n).map(|i| event("time", "tick", i, now_ms())).collect()
}

fn all(log: &EventLog) -> Vec<openflume_log::Entry> {
    log.read_after(EventId(0), usize::MAX, &Filter::default())
        .unwrap()
}

#[test]
fn ids_grow_across_reopen_and_are_never_reused_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let first = log.append(events(3), vec![]).unwrap().wait().unwrap();
    assert_eq!(
        first,
        Some(IdRange {
            first: EventId(1),
            last: EventId(3)
        })
    );
    drop(log);

    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.last_id().unwrap(), EventId(3));
    let second = log.append(events(2), vec![]).unwrap().wait().unwrap();
    assert_eq!(second.unwrap().first, EventId(4));
    drop(log);

    // Every item is older than a minute: age retention deletes them all, newest included.
    let old = vec![event("time", "tick", 9, now_ms() - 3_600_000)];
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    log.append(old, vec![]).unwrap().wait().unwrap();
    drop(log);
    let options = LogOptions {
        max_age: Some(Duration::from_secs(60)),
        ..LogOptions::default()
    };
    // Back-date the fresh ones too, so the newest id is deleted.
    let conn = rusqlite::Connection::open(dir.path().join(openflume_log::DATABASE_FILE)).unwrap();
    conn.execute("UPDATE items SET received_at = 0", [])
        .unwrap();
    drop(conn);
    let log = EventLog::open(dir.path(), options.clone()).unwrap();
    let retention_item = log.apply_retention().unwrap().unwrap();
    // The log says what it deleted, in an item of its own.
    let left = all(&log);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, retention_item.first);
    assert_eq!(retention_item.first, EventId(7));
    let line: serde_json::Value = serde_json::from_str(&left[0].record.json).unwrap();
    assert_eq!(line["log"]["action"], "log.retention");
    assert_eq!(line["log"]["detail"]["deleted"], 6);
    assert_eq!(log.stats().retention_deleted, 6);
    // Delete that one too (backdated), reopen: the next id is still 8.
    drop(log);
    let conn = rusqlite::Connection::open(dir.path().join(openflume_log::DATABASE_FILE)).unwrap();
    conn.execute("DELETE FROM items", []).unwrap();
    drop(conn);
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let next = log.append(events(1), vec![]).unwrap().wait().unwrap();
    assert_eq!(next.unwrap().first, EventId(8));
}

#[test]
fn size_retention_keeps_the_newest_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        max_bytes: Some(1024 * 1024),
        ..LogOptions::default()
    };
    let log = EventLog::open(dir.path(), options).unwrap();
    let big = |n: u64| {
        let data =
            RawJson::from_str(&format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(1000))).unwrap();
        Record::from_item(&Item::Event(Event::new(
            "discord",
            "MESSAGE_CREATE",
            data,
            UnixMillis(now_ms()),
        )))
    };
    for batch in 0..30u64 {
        let records = (0..100).map(|i| big(batch * 100 + i)).collect();
        log.append(records, vec![]).unwrap().wait().unwrap();
    }
    log.ack_consumer("slow", EventId(10)).unwrap();
    let retention = log.apply_retention().unwrap().expect("something deleted");
    let stats = log.stats();
    assert!(stats.retention_deleted > 1500, "{stats:?}");
    let left = all(&log);
    assert!(left.len() > 100, "the newest are kept: {}", left.len());
    // The newest items stay, contiguous up to the last one.
    assert_eq!(left.last().unwrap().event_id, retention.first);
    let first_kept = left[0].event_id.0;
    assert_eq!(first_kept, 3001 - left.len() as u64 + 1);
    let note: serde_json::Value = serde_json::from_str(&left.last().unwrap().record.json).unwrap();
    assert_eq!(
        note["log"]["level"], "warn",
        "a consumer was behind: {note}"
    );
    assert_eq!(note["log"]["detail"]["consumers_behind"][0], "slow");
    assert_eq!(
        note["log"]["detail"]["deleted"].as_u64().unwrap(),
        stats.retention_deleted
    );
}

#[test]
fn concurrent_appenders_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    // Hold the writer at its commit, so every append queued meanwhile joins the next group.
    log.testing_hold_commits(true);
    let handles: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| log.append(events(10), vec![]).unwrap()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // All 16 are queued (or in the first group, waiting at the gate).
    log.testing_hold_commits(false);
    let mut ranges: Vec<IdRange> = handles
        .into_iter()
        .map(|h| h.wait().unwrap().unwrap())
        .collect();
    let stats = log.stats();
    assert_eq!((stats.appends, stats.items), (16, 160));
    assert!(
        stats.groups <= 2,
        "16 appends took {} commits",
        stats.groups
    );
    // Each append got its own consecutive ids; together they cover 1..=160 once.
    ranges.sort_by_key(|r| r.first);
    let mut next = 1;
    for range in ranges {
        assert_eq!((range.first.0, range.len()), (next, 10));
        next += 10;
    }
}

#[test]
fn an_idle_log_commits_each_append_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    for _ in 0..3 {
        log.append(events(1), vec![]).unwrap().wait().unwrap();
    }
    assert_eq!(log.stats().groups, 3);
}

#[test]
fn async_appends_resolve_on_any_executor() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let ids = futures_lite::future::block_on(async {
        log.append_async(events(2), vec![]).await.unwrap().await
    })
    .unwrap();
    assert_eq!(ids.unwrap().last, EventId(2));
}

#[test]
fn read_after_filters_by_source_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let at = now_ms();
    let records = vec![
        event("slack", "events_api", 1, at),
        event("discord", "MESSAGE_CREATE", 2, at),
        event("slack", "interactive", 3, at),
        Record::from_item(&Item::Log(Log::new(
            Level::Info,
            "slack",
            "status",
            "up",
            UnixMillis(at),
        ))),
        event("github", "notification", 5, at),
    ];
    log.append(records, vec![]).unwrap().wait().unwrap();
    let ids = |after: u64, limit: usize, filter: Filter| -> Vec<u64> {
        log.read_after(EventId(after), limit, &filter)
            .unwrap()
            .iter()
            .map(|e| e.event_id.0)
            .collect()
    };
    let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(ids(0, 100, Filter::default()), [1, 2, 3, 4, 5]);
    assert_eq!(ids(2, 100, Filter::default()), [3, 4, 5]);
    assert_eq!(ids(0, 2, Filter::default()), [1, 2]);
    let slack = Filter {
        sources: some(&["slack"]),
        types: None,
    };
    assert_eq!(ids(0, 100, slack.clone()), [1, 3, 4]);
    assert_eq!(ids(1, 1, slack), [3]);
    let types = Filter {
        sources: None,
        types: some(&["MESSAGE_CREATE", "notification"]),
    };
    assert_eq!(ids(0, 100, types), [2, 5]);
    let both = Filter {
        sources: some(&["slack", "github"]),
        types: some(&["interactive", "notification"]),
    };
    assert_eq!(ids(0, 100, both), [3, 5]);
    // An empty list matches nothing.
    assert!(
        ids(
            0,
            100,
            Filter {
                sources: some(&[]),
                types: None
            }
        )
        .is_empty()
    );
    // The stored JSON is the item as `listen` prints it; the tail line adds the id first.
    let entries = log.read_after(EventId(1), 1, &Filter::default()).unwrap();
    let line: serde_json::Value = serde_json::from_str(&entries[0].line()).unwrap();
    assert_eq!(line["event_id"], 2);
    assert_eq!(line["event"]["data"]["n"], 2);
    // A reader of its own (another process would open one like this) sees the same.
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.last_id().unwrap(), EventId(5));
    assert_eq!(reader.first_id().unwrap(), Some(EventId(1)));
}

#[test]
fn committed_beyond_wakes_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    log.append(events(1), vec![]).unwrap().wait().unwrap();
    // Already beyond: no wait.
    assert!(log.wait_committed_beyond(EventId(0), Duration::ZERO));
    let follower = {
        let log = log.clone();
        std::thread::spawn(move || {
            smol::block_on(async {
                // What the follower has read: the first append alone, whenever it runs (reading
                // to the end instead raced the second append, and then waited beyond it).
                let last = EventId(1);
                let woke = futures_lite::future::or(
                    async {
                        log.committed_beyond(last).await;
                        true
                    },
                    async {
                        smol::Timer::after(Duration::from_secs(10)).await;
                        false
                    },
                )
                .await;
                assert!(woke, "no wake within 10 s");
                log.read_after(last, 100, &Filter::default()).unwrap().len()
            })
        })
    };
    // The follower may start waiting before or after this append: either way it wakes.
    log.append(events(2), vec![]).unwrap().wait().unwrap();
    assert_eq!(follower.join().unwrap(), 2);
    assert!(!log.wait_committed_beyond(EventId(3), Duration::from_millis(50)));
}

#[test]
fn cursors_are_written_with_their_batch_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let cursor = |seq: u64| Cursor {
        source: "discord".into(),
        value: serde_json::json!({"session": "s1", "seq": seq}),
    };
    log.append(events(2), vec![cursor(2)])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(log.cursor("discord").unwrap().unwrap()["seq"], 2);
    assert_eq!(log.cursor("slack").unwrap(), None);

    // A full disk: the next group cannot commit. Neither its items nor its cursor are kept, its
    // handle says so, and the log refuses later appends instead of writing half of anything.
    let pages: i64 = rusqlite::Connection::open(log.path())
        .unwrap()
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    log.testing_limit_pages(pages as u64).unwrap();
    let big = (0..200)
        .map(|i| {
            let data =
                RawJson::from_str(&format!(r#"{{"pad":"{}","i":{i}}}"#, "y".repeat(2000))).unwrap();
            Record::from_item(&Item::Event(Event::new(
                "discord",
                "MESSAGE_CREATE",
                data,
                UnixMillis(0),
            )))
        })
        .collect();
    let failed = log.append(big, vec![cursor(202)]).unwrap().wait();
    let Err(LogError::Write { reason, .. }) = &failed else {
        panic!("expected a write error, got {failed:?}");
    };
    assert!(reason.contains("full"), "{reason}");
    assert!(matches!(
        log.append(events(1), vec![]).unwrap().wait(),
        Err(LogError::Write { .. })
    ));
    assert_eq!(log.cursor("discord").unwrap().unwrap()["seq"], 2);
    assert_eq!(all(&log).len(), 2);
    drop(log);
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.last_id().unwrap(), EventId(2));
    assert_eq!(log.cursor("discord").unwrap().unwrap()["seq"], 2);
}

#[test]
fn consumers_ack_cumulatively_and_never_beyond_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    log.append(events(5), vec![]).unwrap().wait().unwrap();
    assert_eq!(log.consumer("agent").unwrap(), None);
    assert_eq!(log.ack_consumer("agent", EventId(3)).unwrap(), EventId(3));
    // Backwards changes nothing.
    assert_eq!(log.ack_consumer("agent", EventId(1)).unwrap(), EventId(3));
    assert_eq!(log.consumer("agent").unwrap(), Some(EventId(3)));
    let beyond = log.ack_consumer("agent", EventId(6)).unwrap_err();
    assert_eq!(
        beyond,
        LogError::AckBeyondEnd {
            consumer: "agent".into(),
            acked: 6,
            last: 5
        }
    );
    drop(log);
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.consumer("agent").unwrap(), Some(EventId(3)));
}

#[test]
fn a_newer_schema_is_refused_and_a_missing_log_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = LogReader::open(dir.path()).unwrap_err();
    assert!(matches!(missing, LogError::Missing { .. }), "{missing}");
    drop(EventLog::open(dir.path(), LogOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(openflume_log::DATABASE_FILE)).unwrap();
    conn.execute("UPDATE schema_version SET version = 9", [])
        .unwrap();
    drop(conn);
    let error = EventLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(
        error,
        LogError::NewerSchema {
            found: 9,
            supported: 1,
            ..
        }
    ));
    assert!(error.to_string().contains("newer openflume"), "{error}");
    assert!(matches!(
        LogReader::open(dir.path()),
        Err(LogError::NewerSchema { .. })
    ));
}

#[test]
fn an_unusable_path_is_an_open_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let error = EventLog::open(&file, LogOptions::default()).unwrap_err();
    assert!(matches!(error, LogError::Open { .. }), "{error}");
    assert!(error.to_string().contains("not-a-dir"), "{error}");
    // Not a database.
    let garbage = tempfile::tempdir().unwrap();
    std::fs::write(
        garbage.path().join(openflume_log::DATABASE_FILE),
        vec![7u8; 8192],
    )
    .unwrap();
    let error = EventLog::open(garbage.path(), LogOptions::default()).unwrap_err();
    assert!(error.to_string().contains("not a database"), "{error}");
}

/// The child of [`a_sigkill_keeps_exactly_whole_committed_batches`]: appends batches from four
/// threads until killed, writing each range to the side file once its handle resolved Ok.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os("OPENFLUME_LOG_CRASH_DIR") else {
        return; // run as a normal test: nothing to do
    };
    let dir = Path::new(&dir);
    let log = EventLog::open(dir, LogOptions::default()).unwrap();
    let side = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("resolved.txt"))
            .unwrap(),
    );
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (log, side) = (&log, &side);
            scope.spawn(move || {
                for batch in 0.. {
                    // Sizes 1..=50, so a partial batch would show.
                    let size = 1 + (batch * 7 + thread * 13) % 50;
                    let tag = format!("{thread}-{batch}");
                    let records = (0..size)
                        .map(|i| event("crash", &tag, i, now_ms()))
                        .collect();
                    let cursor = Cursor {
                        source: format!("t{thread}"),
                        value: serde_json::json!(batch),
                    };
                    let range = log
                        .append(records, vec![cursor])
                        .unwrap()
                        .wait()
                        .unwrap()
                        .unwrap();
                    let mut side = side.lock().unwrap();
                    writeln!(side, "{tag} {size} {} {}", range.first, range.last).unwrap();
                }
            });
        }
    });
}

#[test]
fn a_sigkill_keeps_exactly_whole_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("OPENFLUME_LOG_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let side = dir.path().join("resolved.txt");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill it in the middle of the stream: once it reported 300 committed batches.
    loop {
        let lines = std::fs::read_to_string(&side)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if lines >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child reported only {lines} batches in 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let resolved = std::fs::read_to_string(&side).unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let entries = all(&log);
    let mut by_tag: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for entry in &entries {
        by_tag
            .entry(entry.record.item_type.clone())
            .or_default()
            .push(entry.event_id.0);
    }
    // Every batch whose handle resolved Ok is there, whole, with the ids it was given.
    let mut reported = 0;
    for line in resolved
        .lines()
        .filter(|l| l.ends_with(|c: char| c.is_ascii_digit()))
    {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() != 4 {
            continue; // the kill cut the last line short
        }
        let (tag, size, first, last): (&str, u64, u64, u64) = (
            parts[0],
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
            parts[3].parse().unwrap(),
        );
        let ids = by_tag
            .get(tag)
            .unwrap_or_else(|| panic!("batch {tag} resolved Ok but is gone"));
        assert_eq!(ids, &(first..=last).collect::<Vec<_>>(), "batch {tag}");
        assert_eq!(ids.len() as u64, size);
        reported += 1;
    }
    assert!(reported >= 300);
    // No partial batch: every batch in the log is whole (committed but not yet reported ones
    // included), and their ids are consecutive.
    for (tag, ids) in &by_tag {
        let (thread, batch): (u64, u64) = {
            let (t, b) = tag.split_once('-').unwrap();
            (t.parse().unwrap(), b.parse().unwrap())
        };
        let size = 1 + (batch * 7 + thread * 13) % 50;
        assert_eq!(ids.len() as u64, size, "batch {tag} is partial");
        assert_eq!(
            ids.last().unwrap() - ids[0] + 1,
            size,
            "batch {tag} is not contiguous"
        );
    }
    // At most the batches in flight at the kill (four appenders, one each) are unreported.
    assert!(
        by_tag.len() - reported <= 4,
        "{} batches, {reported} reported",
        by_tag.len()
    );
    // The cursors are those of the last batch of each thread in the log.
    for thread in 0..4u64 {
        let last_batch = by_tag
            .keys()
            .filter_map(|tag| tag.strip_prefix(&format!("{thread}-")))
            .map(|b| b.parse::<u64>().unwrap())
            .max();
        let cursor = log.cursor(&format!("t{thread}")).unwrap();
        assert_eq!(
            cursor.map(|c| c.as_u64().unwrap()),
            last_batch,
            "thread {thread}"
        );
    }
    // Ids go on after the last one, never reusing one.
    let last = entries.last().unwrap().event_id;
    let next = log
        .append(events(1), vec![])
        .unwrap()
        .wait()
        .unwrap()
        .unwrap();
    assert!(next.first > last);
}
