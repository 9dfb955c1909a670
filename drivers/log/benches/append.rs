//! Durable append throughput with commit-before-ack, beside an in-memory sink in the same run.
//!
//! `BENCH_RUNS=3 BENCH_EVENTS=300000 cargo bench -p openflume-log --bench append`
//!
//! Both cases run the same pipeline the Flume's log sink runs: a producer thread offers ~1.2 KB
//! MESSAGE_CREATE events (cloned from one template, like a decoded dispatch) into a bounded
//! queue of 4096; a consumer thread takes everything ready, turns each item into its JSON line
//! ([`Record::from_item`]) and hands the batch to the sink, waits until the sink holds it, and
//! only then "acknowledges" (counts) the batch. The in-memory sink keeps the batch in a `Vec`;
//! the durable sink appends it to an [`EventLog`] and waits for its group commit
//! (`synchronous=FULL`: an fsync per group). CPU is user+sys of this process from /proc, per
//! event; the log's file lives under `BENCH_DIR` (default: the target directory, on disk, not a
//! tmpfs where fsync would cost nothing).
//!
//! A third case is the floor any WAL-mode store pays for the same bytes: each batch's lines are
//! written to a plain file and fdatasynced, and every 16 MiB the file is read back, appended to
//! a second file, fdatasynced, and written again from its start (what a checkpoint and the WAL's
//! restart do), with no database at all. What the durable log costs above it is SQLite's own work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::{EventLog, LogOptions, Record};
use openflume_proto::{Event, Item, RawJson, UnixMillis};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

const QUEUE: usize = 4096;

fn main() {
    let events: u64 = env_number("BENCH_EVENTS", 300_000);
    let runs: u64 = env_number("BENCH_RUNS", 3);
    let template = template();
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("bench-log")
        });
    println!(
        "{events} events of {} bytes, {runs} rounds, log under {}",
        Record::from_item(&template).json.len(),
        base.display()
    );
    let mut memory = Vec::new();
    let mut durable = Vec::new();
    let mut files = Vec::new();
    for round in 0..runs {
        memory.push(run(events, &template, Sink::Memory(Vec::new())));
        let dir = base.join(format!("files-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        files.push(run(events, &template, Sink::Files(FileFloor::create(&dir))));
        let _ = std::fs::remove_dir_all(&dir);
        let dir = base.join(format!("round-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        let log = EventLog::open(&dir, LogOptions::default()).unwrap();
        durable.push(run(events, &template, Sink::Log(log.clone())));
        let stats = log.stats();
        let last = durable.last_mut().unwrap();
        last.groups = stats.groups;
        assert_eq!(stats.items, events);
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!(
        "| case                                   |   events/s | CPU µs/event | × memory CPU | commits | events/commit |"
    );
    println!(
        "|----------------------------------------|-----------:|-------------:|-------------:|--------:|--------------:|"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |r: &[Measured]| {
        median(
            &mut r
                .iter()
                .map(|m| events as f64 / m.wall.as_secs_f64())
                .collect(),
        )
    };
    let cpu = |r: &[Measured]| {
        median(
            &mut r
                .iter()
                .map(|m| m.cpu.as_secs_f64() * 1e6 / events as f64)
                .collect(),
        )
    };
    let ratios: Vec<f64> = memory
        .iter()
        .zip(&durable)
        .map(|(m, d)| d.cpu.as_secs_f64() / m.cpu.as_secs_f64())
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "| in-memory sink (baseline)              | {:>10.0} | {:>12.2} | {:>12.2} | {:>7} | {:>13} |",
        rate(&memory),
        cpu(&memory),
        1.0,
        "-",
        "-"
    );
    let file_ratios: Vec<f64> = memory
        .iter()
        .zip(&files)
        .map(|(m, f)| f.cpu.as_secs_f64() / m.cpu.as_secs_f64())
        .collect();
    println!(
        "| file floor (write, sync, copy, sync)   | {:>10.0} | {:>12.2} | {:>12.2} | {:>7} | {:>13} |",
        rate(&files),
        cpu(&files),
        median(&mut file_ratios.clone()),
        "-",
        "-"
    );
    let groups = median(&mut durable.iter().map(|m| m.groups as f64).collect());
    println!(
        "| durable log, commit before ack         | {:>10.0} | {:>12.2} | {:>12.2} | {:>7.0} | {:>13.0} |",
        rate(&durable),
        cpu(&durable),
        median(&mut ratios.clone()),
        groups,
        events as f64 / groups
    );
    println!("(CPU ratio per round: {lo:.2}–{hi:.2})");
}

enum Sink {
    Memory(Vec<String>),
    Files(FileFloor),
    Log(EventLog),
}

/// The bytes a WAL-mode store moves, with no database: see the module docs.
struct FileFloor {
    wal: std::fs::File,
    db: std::fs::File,
    wal_len: u64,
    db_len: u64,
}

impl FileFloor {
    /// The WAL's new bytes are copied into the second file past this many.
    const CHECKPOINT_BYTES: u64 = 16 << 20;

    fn create(dir: &std::path::Path) -> FileFloor {
        std::fs::create_dir_all(dir).unwrap();
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(name))
                .unwrap()
        };
        FileFloor {
            wal: open("wal"),
            db: open("db"),
            wal_len: 0,
            db_len: 0,
        }
    }

    fn append(&mut self, records: &[Record]) {
        use std::os::unix::fs::FileExt;
        let mut bytes = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
        for record in records {
            bytes.extend_from_slice(record.json.as_bytes());
            bytes.push(b'\n');
        }
        self.wal.write_all_at(&bytes, self.wal_len).unwrap();
        self.wal_len += bytes.len() as u64;
        self.wal.sync_data().unwrap();
        if self.wal_len >= Self::CHECKPOINT_BYTES {
            let mut copy = vec![0; usize::try_from(self.wal_len).unwrap()];
            self.wal.read_exact_at(&mut copy, 0).unwrap();
            self.db.write_all_at(&copy, self.db_len).unwrap();
            self.db_len += self.wal_len;
            self.db.sync_data().unwrap();
            // As SQLite does after a checkpoint: the WAL is written again from its start, over
            // blocks the file system already holds.
            self.wal_len = 0;
        }
    }
}

struct Measured {
    wall: Duration,
    cpu: Duration,
    groups: u64,
}

fn run(events: u64, template: &Item, mut sink: Sink) -> Measured {
    let (tx, rx) = sync_channel::<Item>(QUEUE);
    let cpu_before = cpu_time();
    let started = Instant::now();
    let producer = {
        let template = template.clone();
        std::thread::spawn(move || {
            for _ in 0..events {
                tx.send(template.clone()).unwrap();
            }
        })
    };
    let acked = consume(&rx, &mut sink);
    producer.join().unwrap();
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    assert_eq!(acked, events);
    Measured {
        wall,
        cpu,
        groups: 0,
    }
}

/// Takes what is ready, hands it to the sink, and counts a batch as acknowledged only once the
/// sink holds it, with at most two batches on their way: the log sink's loop
/// (`openflume::Flume::log_into`).
fn consume(rx: &Receiver<Item>, sink: &mut Sink) -> u64 {
    let mut acked = 0;
    let mut in_flight: VecDeque<(Option<openflume_log::Appended>, u64)> = VecDeque::new();
    let settle = |in_flight: &mut VecDeque<(Option<openflume_log::Appended>, u64)>| {
        let (appended, count) = in_flight.pop_front().unwrap();
        if let Some(appended) = appended {
            appended.wait().unwrap();
        }
        count
    };
    loop {
        let mut batch: Vec<Item> = rx.try_iter().take(QUEUE).collect();
        if batch.is_empty() {
            if !in_flight.is_empty() {
                acked += settle(&mut in_flight);
                continue;
            }
            match rx.recv() {
                Ok(first) => batch.push(first),
                Err(_) => break,
            }
            batch.extend(rx.try_iter().take(QUEUE));
        }
        let records: Vec<Record> = batch.iter().map(Record::from_item).collect();
        let count = records.len() as u64;
        let appended = match sink {
            Sink::Memory(kept) => {
                kept.clear();
                kept.extend(records.into_iter().map(|r| r.json));
                None
            }
            Sink::Files(files) => {
                files.append(&records);
                None
            }
            Sink::Log(log) => Some(log.append(records, Vec::new()).unwrap()),
        };
        in_flight.push_back((appended, count));
        if in_flight.len() >= 2 {
            acked += settle(&mut in_flight);
        }
    }
    while !in_flight.is_empty() {
        acked += settle(&mut in_flight);
    }
    acked
}

/// A MESSAGE_CREATE like the gateway benchmark's: about 1.2 KB of JSON.
fn template() -> Item {
    let content = "lorem ipsum dolor sit amet ".repeat(30);
    let data = format!(
        r#"{{"id":"1300000000000000001","channel_id":"1200000000000000002","guild_id":"1100000000000000003","author":{{"id":"1000000000000000004","username":"bench","global_name":"Bench","avatar":null,"discriminator":"0","public_flags":0}},"content":"{content}","timestamp":"2026-12-05T10:00:00.000000+00:00","edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"pinned":false,"type":0,"flags":0}}"#
    );
    let event = Event::new(
        "discord",
        "MESSAGE_CREATE",
        RawJson::from_str(&data).unwrap(),
        UnixMillis(1_764_100_000_000),
    )
    .with_meta("channel_id", "1200000000000000002")
    .with_meta("guild_id", "1100000000000000003")
    .with_meta("user_id", "1000000000000000004")
    .with_meta("event_type", "MESSAGE_CREATE")
    .with_meta(
        "conversation_key",
        "discord:v1:1100000000000000003:1200000000000000002",
    );
    Item::Event(event)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / 100.0)
}
