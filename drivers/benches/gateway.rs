//! Throughput of the Discord pipeline against the local simulator, beside the floors it is
//! measured against, all in one run:
//!
//! 1. transport floor: a bare tungstenite client that reads the frames and drops them;
//! 2. decode floor: the same plus `serde_json::from_str::<serde_json::Value>` per frame;
//! 3. the `DiscordShard` machine alone, fed recorded frames from memory (its share of 4.);
//! 4. openflume (library): driver → machine → firehose → a consumer counting events;
//! 5. openflume listen: the binary writing JSON Lines to /dev/null, with plain frames and with
//!    each transport compression (zlib-stream, zstd-stream; the simulator compresses);
//! 6. openflume listen into a pipe read by a separate process that only counts lines, the real
//!    case of an agent reading stdout: the CPU of both processes together;
//! 7. openflume serve: the same blast appended to the durable log (SQLite, WAL,
//!    `synchronous=FULL`), each batch committed before it counts as held (issue 17's durable
//!    append); the wall time runs until the log holds every event.
//!
//! The simulator and each client run in child processes (this binary, re-executed), so the CPU
//! and peak RSS figures are each client's alone. Also a GitHub case: parsing and deduplicating 50-item notification pages.
//!
//! Every case has a deadline (env `BENCH_DEADLINE_SECS`, default 30 s plus 100 µs an event): a
//! case that has not seen all its events by then fails, saying how many arrived, instead of
//! hanging.
//!
//! `cargo bench -p openflume --bench gateway` (env `BENCH_EVENTS` sets N, default 100000;
//! `BENCH_RUNS` the rounds, default 3, each running every case once; `BENCH_ONLY` one or more
//! of transport, decode, machine, library, listen, listen-zlib, listen-zstd, pipe, github,
//! comma-separated, runs those cases alone).

// A benchmark aborts on any failure: a panic with the cause is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Overflow, Source};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::{HttpResponse, Input, Item, Machine, Millis, Now, Output, UnixMillis};
use openflume_sim::{DiscordSim, DiscordSimConfig, Scenario};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod procfs;
use procfs::{Cpu, cpu_time, proc_number};

const ROLE: &str = "OPENFLUME_BENCH_ROLE";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sim") => return run_simulator(),
        Ok("client") => return run_client(),
        Ok("reader") => return run_line_reader(),
        _ => {}
    }
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "Discord gateway, {events} MESSAGE_CREATE dispatches (~1.2 KB) over loopback, plain JSON frames unless a case names its compression"
    );
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "{runs} rounds (BENCH_RUNS), each running every case once in turn; medians shown, and the \
         ratio to the decode floor is the median of each round's own ratio (round range: the \
         lowest and highest of them)"
    );
    // `BENCH_ONLY=library` (say) runs that one case alone, for a profiler; the table then has
    // no baseline beside it.
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |case: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|only| only == case))
    };
    type Case = Box<dyn Fn(u64) -> Row>;
    let cases: Vec<(&str, Case)> = vec![
        (
            "transport",
            Box::new(|n| measure("transport floor (tungstenite, drop)", "transport", n)),
        ),
        (
            "decode",
            Box::new(|n| measure("decode floor (+ serde_json::Value)", "decode", n)),
        ),
        ("machine", Box::new(machine_alone)),
        (
            "library",
            Box::new(|n| measure("openflume library (Flume stream)", "library", n)),
        ),
        ("listen", Box::new(|n| measure_listen(n, "none"))),
        (
            "listen-zlib",
            Box::new(|n| measure_listen(n, "zlib-stream")),
        ),
        (
            "listen-zstd",
            Box::new(|n| measure_listen(n, "zstd-stream")),
        ),
        ("pipe", Box::new(measure_pipe)),
        ("serve", Box::new(measure_serve)),
    ];
    let cases: Vec<&(&str, Case)> = cases.iter().filter(|(name, _)| wanted(name)).collect();
    // Rounds rather than one case after another: this machine's speed drifts over minutes, and
    // a ratio taken within one round is not fooled by it.
    let rounds: Vec<Vec<Row>> = (0..runs.max(1))
        .map(|_| cases.iter().map(|(_, case)| case(events)).collect())
        .collect();
    print_table(&rounds);
    if wanted("github") {
        github_pages();
    }
}

/// How long a case may take before it fails: `BENCH_DEADLINE_SECS`, or 30 s plus 100 µs an
/// event (at least ten times what any case needs on a slow machine).
fn deadline(events: u64) -> Duration {
    std::env::var("BENCH_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or_else(
            || Duration::from_secs(30) + Duration::from_micros(events.saturating_mul(100)),
            Duration::from_secs,
        )
}

/// Events a client process has seen so far, for its watchdog.
static SEEN: AtomicU64 = AtomicU64::new(0);

/// Ends this client process (status 1) once the deadline has passed, saying how many events
/// arrived: a case that loses events must fail, not hang.
fn watchdog(case: String, events: u64) {
    let deadline = deadline(events);
    std::thread::spawn(move || {
        // Sleeping until the deadline is this thread's whole job.
        std::thread::sleep(deadline);
        let seen = SEEN.load(Ordering::Relaxed);
        eprintln!("{case}: {seen} of {events} events arrived within {deadline:?}");
        std::process::exit(1);
    });
}

struct Row {
    name: String,
    events: u64,
    wall: Duration,
    cpu: Duration,
    peak_rss_kb: u64,
}

/// Runs one client case in a fresh process (this binary, re-executed) against a fresh simulator
/// process, so no case inherits another's heap.
fn measure(name: &str, client: &str, events: u64) -> Row {
    let (mut sim, url) = start_simulator(events);
    let start = Instant::now();
    let output = Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE, "client")
        .env("BENCH_CLIENT", client)
        .env("BENCH_URL", &url)
        .env("BENCH_EVENTS", events.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the client");
    let wall = start.elapsed();
    stop_simulator(&mut sim);
    assert!(output.status.success(), "{client} client failed");
    let report = String::from_utf8_lossy(&output.stdout);
    let mut numbers = report.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (Some(Some(cpu_us)), Some(Some(peak_rss_kb))) = (numbers.next(), numbers.next()) else {
        panic!("{client} client reported {report:?}");
    };
    Row {
        name: name.to_owned(),
        events,
        wall,
        cpu: Duration::from_micros(cpu_us),
        peak_rss_kb,
    }
}

/// The child of `measure`: runs `BENCH_CLIENT` against `BENCH_URL` and prints its CPU time in
/// µs and the process's peak RSS in kB.
fn run_client() {
    let url = std::env::var("BENCH_URL").expect("BENCH_URL");
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("BENCH_EVENTS");
    let client = std::env::var("BENCH_CLIENT").unwrap_or_default();
    watchdog(format!("the {client} client"), events);
    let cpu_before = cpu_time("self", Cpu::Own);
    match client.as_str() {
        "transport" => tungstenite_client(&url, events, false),
        "decode" => tungstenite_client(&url, events, true),
        "library" => library_pipeline(&url, events),
        other => panic!("unknown client {other:?}"),
    }
    let cpu = cpu_time("self", Cpu::Own) - cpu_before;
    println!(
        "{} {}",
        cpu.as_micros(),
        proc_number("/proc/self/status", "VmHWM:")
    );
}

/// `openflume listen --format json > /dev/null`, measured as a child process, with the transport
/// compression `compress` (`none`, `zlib-stream` or `zstd-stream`; the simulator compresses).
/// A compressed case gets a distinct body for every event: zstd's window would find the
/// repeats of the simulator's usual pool of 1024 and flatter it.
fn measure_listen(events: u64, compress: &str) -> Row {
    let pool = if compress == "none" { 1024 } else { events };
    let (mut sim, url) = start_simulator_with(events, pool);
    let cpu_before = cpu_time("self", Cpu::Children);
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args([
            "listen",
            "--format",
            "json",
            "--log-level",
            "warn",
            "--discord-compress",
            compress,
        ])
        .args([
            "--discord-events",
            "MESSAGE_CREATE",
            "--count",
            &events.to_string(),
        ])
        .env("DISCORD_BOT_TOKEN", openflume_sim::DISCORD_TOKEN)
        .env("OPENFLUME_DISCORD_GATEWAY_URL", &url)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn openflume listen");
    let status_path = format!("/proc/{}/status", child.id());
    let io_path = format!("/proc/{}/io", child.id());
    let mut peak_rss_kb = 0;
    let deadline = deadline(events);
    let status = loop {
        peak_rss_kb = peak_rss_kb.max(proc_number(&status_path, "VmHWM:"));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > deadline {
            // Its stdout is /dev/null: what it wrote is the best count of what it printed (a
            // MESSAGE_CREATE line is about 1.45 KB).
            let written = proc_number(&io_path, "wchar:");
            let _ = child.kill();
            let _ = child.wait();
            let sent = simulator_sent(&mut sim);
            stop_simulator(&mut sim);
            panic!(
                "openflume listen did not print its {events} events within {deadline:?}: it \
                 wrote {written} bytes (about {} dispatch lines) and the simulator sent {sent}",
                written / 1450
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    assert!(status.success(), "openflume listen failed: {status}");
    let cpu = cpu_time("self", Cpu::Children) - cpu_before;
    // What each compression saves on the wire: the bytes of the messages the simulator wrote.
    let wire = ask_simulator(&mut sim, "bytes").parse::<u64>().unwrap_or(0);
    stop_simulator(&mut sim);
    let name = match compress {
        "none" => "openflume listen --format json > /dev/null".to_owned(),
        other => format!(
            "listen {other} ({} B/event on the wire)",
            wire / events.max(1)
        ),
    };
    println!(
        "listen --discord-compress {compress}: {} bytes on the wire per event",
        wire / events.max(1)
    );
    Row {
        name,
        events,
        wall,
        cpu,
        peak_rss_kb,
    }
}

/// `openflume serve` appending the blast to its durable log: the wall time until the log holds
/// every event (read beside it, as `openflume log tail` does), the CPU of serve alone (reaped
/// after a SIGTERM).
fn measure_serve(events: u64) -> Row {
    let (mut sim, url) = start_simulator(events);
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("bench-serve")
        });
    let dir = base.join(format!("serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cpu_before = cpu_time("self", Cpu::Children);
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args(["serve", "--http", "127.0.0.1:0", "--log-level", "warn"])
        .args([
            "--discord-compress",
            "none",
            "--discord-events",
            "MESSAGE_CREATE",
        ])
        .arg("--data")
        .arg(&dir)
        .env("DISCORD_BOT_TOKEN", openflume_sim::DISCORD_TOKEN)
        .env("OPENFLUME_DISCORD_GATEWAY_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openflume serve");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_rss_kb = 0;
    let deadline = deadline(events);
    // Only the events reach the log (logs below warn are dropped at the source), so the last
    // id says how many are in; they are counted one by one after the clock stopped.
    // One reading connection, opened once the log exists: opening one every few milliseconds
    // cost this process a fifth of the machine's CPU, beside serve on two cores.
    let mut logged = 0;
    let mut reader = None;
    while logged < events {
        peak_rss_kb = peak_rss_kb.max(proc_number(&status_path, "VmHWM:"));
        if reader.is_none() {
            reader = openflume::log::LogReader::open(&dir).ok();
        }
        if let Some(reader) = &reader {
            logged = reader.last_id().map_or(0, |id| id.0);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let sent = simulator_sent(&mut sim);
            stop_simulator(&mut sim);
            panic!(
                "openflume serve logged {logged} of {events} events within {deadline:?}; the \
                 simulator sent {sent}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = start.elapsed();
    drop(reader);
    // Where serve's CPU went, by thread, per event (the threads are gone once it exits).
    let threads = procfs::thread_cpu(child.id());
    let by_thread: Vec<String> = threads
        .iter()
        .filter(|(_, cpu)| !cpu.is_zero())
        .map(|(name, cpu)| format!("{name} {:.2}", cpu.as_secs_f64() * 1e6 / events as f64))
        .collect();
    eprintln!("serve CPU µs/event by thread: {}", by_thread.join(", "));
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let status = child.wait().expect("wait for serve");
    assert!(status.success(), "openflume serve failed: {status}");
    let cpu = cpu_time("self", Cpu::Children) - cpu_before;
    stop_simulator(&mut sim);
    let reader = openflume::log::LogReader::open(&dir).expect("the log");
    let filter = openflume::log::Filter {
        types: Some(vec!["MESSAGE_CREATE".to_owned()]),
        ..openflume::log::Filter::default()
    };
    let (mut counted, mut after) = (0u64, openflume::log::EventId(0));
    loop {
        let batch = reader
            .read_after(after, 10_000, &filter)
            .expect("read the log");
        let Some(last) = batch.last() else { break };
        after = last.event_id;
        counted += batch.len() as u64;
    }
    assert!(
        counted >= events,
        "the log holds {counted} of {events} events"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        name: "openflume serve (durable log, commit before ack)".to_owned(),
        events,
        wall,
        cpu,
        peak_rss_kb,
    }
}

/// `openflume listen --format json` into a pipe read by a separate process that only counts
/// lines: the CPU of both processes together, what an agent reading stdout costs beyond its own
/// work. Logs are off, so every line is an event.
fn measure_pipe(events: u64) -> Row {
    let (mut sim, url) = start_simulator(events);
    let cpu_before = cpu_time("self", Cpu::Children);
    let start = Instant::now();
    let mut listen = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args([
            "listen",
            "--format",
            "json",
            "--log-level",
            "off",
            "--discord-compress",
            "none",
        ])
        .args([
            "--discord-events",
            "MESSAGE_CREATE",
            "--count",
            &events.to_string(),
        ])
        .env("DISCORD_BOT_TOKEN", openflume_sim::DISCORD_TOKEN)
        .env("OPENFLUME_DISCORD_GATEWAY_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn openflume listen");
    let pipe = listen.stdout.take().expect("listen's stdout");
    let mut reader = Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE, "reader")
        .env("BENCH_EVENTS", events.to_string())
        .stdin(pipe)
        .spawn()
        .expect("spawn the line reader");
    let status_path = format!("/proc/{}/status", listen.id());
    let mut peak_rss_kb = 0;
    // The reader's own watchdog fails first, with its count; this one is in case it cannot.
    let backstop = deadline(events) + Duration::from_secs(5);
    let failed = loop {
        peak_rss_kb = peak_rss_kb.max(proc_number(&status_path, "VmHWM:"));
        let listen_done = listen.try_wait().expect("wait").is_some();
        let reader_status = reader.try_wait().expect("wait");
        if reader_status.is_some_and(|status| !status.success()) || start.elapsed() > backstop {
            break true;
        }
        if listen_done && reader_status.is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if failed {
        let _ = listen.kill();
        let _ = reader.kill();
    }
    let listen_status = listen.wait().expect("wait");
    let _ = reader.wait();
    let wall = start.elapsed();
    if failed {
        let sent = simulator_sent(&mut sim);
        stop_simulator(&mut sim);
        panic!(
            "openflume listen into a pipe did not deliver its {events} events (the reader said \
             how many it counted); the simulator sent {sent}"
        );
    }
    assert!(
        listen_status.success(),
        "openflume listen failed: {listen_status}"
    );
    let cpu = cpu_time("self", Cpu::Children) - cpu_before;
    stop_simulator(&mut sim);
    Row {
        name: "openflume listen, pipe, line reader (both)".to_owned(),
        events,
        wall,
        cpu,
        peak_rss_kb,
    }
}

/// The child that reads `openflume listen`'s stdout as an agent would, doing nothing with the
/// lines but counting them, until `BENCH_EVENTS` lines.
fn run_line_reader() {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("BENCH_EVENTS");
    watchdog("the line reader".to_owned(), events);
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    while lines < events {
        let n = stdin.read(&mut buf).expect("read stdin");
        if n == 0 {
            eprintln!("the line reader: stdout ended after {lines} of {events} lines");
            std::process::exit(1);
        }
        let read = buf.get(..n).unwrap_or_default();
        lines += read.iter().filter(|&&byte| byte == b'\n').count() as u64;
        SEEN.store(lines, Ordering::Relaxed);
    }
}

/// One line per case: medians over the rounds, and the median of the per-round ratios to the
/// decode floor.
fn print_table(rounds: &[Vec<Row>]) {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let decode = |round: &Vec<Row>| {
        round
            .iter()
            .find(|row| row.name.starts_with("decode floor"))
            .map_or(f64::NAN, per_event_us)
    };
    println!();
    println!(
        "| {:<44} | {:>10} | {:>12} | {:>9} | {:>11} | {:>12} |",
        "case", "events/s", "CPU µs/event", "× decode", "round range", "peak RSS MB"
    );
    println!(
        "|{:-<46}|{:->12}|{:->14}|{:->11}|{:->13}|{:->14}|",
        "", "", "", "", "", ""
    );
    let Some(first) = rounds.first() else { return };
    for (i, row) in first.iter().enumerate() {
        let rows: Vec<&Row> = rounds.iter().filter_map(|round| round.get(i)).collect();
        let rate = median(
            rows.iter()
                .map(|r| r.events as f64 / r.wall.as_secs_f64())
                .collect(),
        );
        let us = median(rows.iter().map(|r| per_event_us(r)).collect());
        let ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|round| round.get(i).map(|r| per_event_us(r) / decode(round)))
            .collect();
        // The spread of the rounds' own ratios: how far one run's figure can be trusted.
        let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = format!("{lowest:.2}–{highest:.2}");
        let ratio = median(ratios);
        let rss_kb = median(rows.iter().map(|r| r.peak_rss_kb as f64).collect());
        // A case without sockets has no peak RSS of its own to show.
        let rss = if rss_kb > 0.0 {
            format!("{:.1}", rss_kb / 1024.0)
        } else {
            "-".to_owned()
        };
        println!(
            "| {:<44} | {:>10.0} | {:>12.2} | {:>9.2} | {:>11} | {:>12} |",
            row.name, rate, us, ratio, range, rss
        );
    }
}

fn per_event_us(row: &Row) -> f64 {
    row.cpu.as_secs_f64() * 1e6 / row.events as f64
}

// ---- the clients -------------------------------------------------------------------------

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A Gateway connection that sent its IDENTIFY (the simulator only blasts to a READY session).
fn identified(url: &str) -> Socket {
    let (mut socket, _) = tungstenite::connect(url).expect("connect");
    let identify = serde_json::json!({"op": 2, "d": {"token": openflume_sim::DISCORD_TOKEN, "intents": 37377,
        "properties": {"os": "linux", "browser": "bench", "device": "bench"}}});
    socket
        .send(tungstenite::Message::text(identify.to_string()))
        .expect("identify");
    socket
}

/// Identifies like a real client (the simulator only blasts to a READY session) and reads
/// `events` dispatches, optionally decoding each into a `Value`.
fn tungstenite_client(url: &str, events: u64, decode: bool) {
    let mut socket = identified(url);
    let mut seen = 0;
    while seen < events {
        match socket.read().expect("read") {
            tungstenite::Message::Text(text) => {
                // Count dispatches of the blast; HELLO, READY and GUILD_CREATE are not events here.
                if text.as_str().contains("\"MESSAGE_CREATE\"") {
                    seen += 1;
                    SEEN.store(seen, Ordering::Relaxed);
                }
                if decode {
                    let value: serde_json::Value =
                        serde_json::from_str(text.as_str()).expect("json");
                    std::hint::black_box(value);
                }
            }
            tungstenite::Message::Close(_) => panic!("simulator closed after {seen} events"),
            _ => {}
        }
    }
}

fn library_pipeline(url: &str, events: u64) {
    let mut config = DiscordConfig::new(openflume_sim::DISCORD_TOKEN);
    config.gateway_url = Some(url.to_owned());
    config.compress = false;
    config.events = Some(["MESSAGE_CREATE".to_owned()].into());
    smol::block_on(async {
        let flume = Flume::builder()
            .source(Source::custom("discord", move |seed| {
                DiscordShard::new(config, seed)
            }))
            .min_log_level(openflume_proto::Level::Warn)
            .build();
        // Taken before the start: a stream taken from `Running` misses what came before it,
        // and the simulator's blast may begin as soon as the shard is ready.
        let mut stream = flume.stream(128, Overflow::Backpressure);
        let running = flume.open().await.expect("open");
        // The consumer runs on the executor beside the driver, as `openflume listen` does.
        smol::spawn(async move {
            let mut seen = 0;
            while seen < events {
                match stream.next().await {
                    Some(Item::Event(event)) => {
                        std::hint::black_box(&event);
                        seen += 1;
                        SEEN.store(seen, Ordering::Relaxed);
                    }
                    // Logs, and kinds of item newer than this benchmark.
                    Some(_) => {}
                    None => panic!("stream ended after {seen} events"),
                }
            }
        })
        .await;
        running.close().await;
    });
}

/// The `DiscordShard` alone, fed recorded dispatch frames in memory (each cloned, as the
/// socket task copies it out of its read buffer): the machine's share of the library's cost,
/// without sockets, tasks or the firehose.
fn machine_alone(events: u64) -> Row {
    const RECORDED: usize = 2048;
    let (mut sim, url) = start_simulator(RECORDED as u64);
    let frames = record_dispatches(&url, RECORDED);
    stop_simulator(&mut sim);

    let mut config = DiscordConfig::new(openflume_sim::DISCORD_TOKEN);
    config.gateway_url = Some("ws://127.0.0.1:1".to_owned());
    config.compress = false;
    config.events = Some(["MESSAGE_CREATE".to_owned()].into());
    let mut shard = DiscordShard::new(config, 7).expect("shard");
    let now = Now {
        mono: Millis(0),
        wall: UnixMillis(1_764_100_000_000),
    };
    let emitted = std::cell::Cell::new(0u64);
    let feed = |shard: &mut DiscordShard, input: Input| {
        shard.handle_input(now, input).expect("input");
        let mut connect = None;
        while let Some(out) = shard.poll_output() {
            match out {
                Output::Connect { conn, .. } => connect = Some(conn),
                Output::Emit { event, .. } => {
                    std::hint::black_box(&event);
                    emitted.set(emitted.get() + 1);
                }
                _ => {}
            }
        }
        connect
    };
    let conn = feed(&mut shard, Input::Start).expect("a connect");
    feed(&mut shard, Input::Opened { conn });
    let text = |t: &str| Input::Frame {
        conn,
        frame: openflume_proto::Frame::Text(t.to_owned()),
        arrived: None,
    };
    feed(
        &mut shard,
        text(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#),
    );
    feed(
        &mut shard,
        text(
            r#"{"op":0,"t":"READY","s":1,"d":{"v":10,"session_id":"s","resume_gateway_url":"ws://127.0.0.1:1","user":{"id":"1"}}}"#,
        ),
    );
    let before = emitted.get();
    let start = Instant::now();
    let cpu_before = cpu_time("self", Cpu::Own);
    for frame in frames.iter().cycle().take(events as usize) {
        feed(&mut shard, text(frame));
    }
    let cpu = cpu_time("self", Cpu::Own) - cpu_before;
    assert_eq!(emitted.get() - before, events, "every dispatch emitted");
    Row {
        name: "DiscordShard alone (frames in memory)".to_owned(),
        events,
        wall: start.elapsed(),
        cpu,
        peak_rss_kb: 0,
    }
}

/// The first `count` MESSAGE_CREATE frames the simulator sends, as text.
fn record_dispatches(url: &str, count: usize) -> Vec<String> {
    let mut socket = identified(url);
    let deadline = deadline(count as u64);
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(deadline)).expect("read timeout");
    }
    let started = Instant::now();
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        let message = socket.read().unwrap_or_else(|error| {
            panic!("recorded {} of {count} dispatches: {error}", frames.len())
        });
        if let tungstenite::Message::Text(text) = message
            && text.as_str().contains("\"MESSAGE_CREATE\"")
        {
            frames.push(text.as_str().to_owned());
        }
        assert!(
            started.elapsed() < deadline,
            "recorded {} of {count} dispatches within {deadline:?}",
            frames.len()
        );
    }
    frames
}

// ---- GitHub: parse + dedup of notification pages -----------------------------------------

fn github_pages() {
    const PAGES: u64 = 2000;
    let pages: Vec<String> = (0..PAGES).map(notification_page).collect();
    let start_cpu = cpu_time("self", Cpu::Own);
    for page in &pages {
        let value: serde_json::Value = serde_json::from_str(page).expect("json");
        std::hint::black_box(value);
    }
    let baseline = cpu_time("self", Cpu::Own) - start_cpu;

    let config = GithubConfig {
        api_url: "https://api.github.com".into(),
        interval_ms: 1000,
        bootstrap: Bootstrap::Emit,
        page_cap: 1,
        ..GithubConfig::new("bench")
    };
    let mut machine = GithubMachine::new(config, 1).expect("github machine");
    let mut now = Now {
        mono: Millis(0),
        wall: UnixMillis(1_764_100_000_000),
    };
    let mut events = 0;
    let mut req = step(&mut machine, now, Input::Start, &mut events);
    let start_cpu = cpu_time("self", Cpu::Own);
    for page in &pages {
        let id = req.take().expect("a poll request pending");
        let response = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: page.as_str().into(),
        };
        req = step(
            &mut machine,
            now,
            Input::Response { req: id, response },
            &mut events,
        );
        now.mono = now.mono + 1000;
        now.wall = UnixMillis(now.wall.0 + 1000);
        req = req.or(step(&mut machine, now, Input::Timer, &mut events));
    }
    let machine_cpu = cpu_time("self", Cpu::Own) - start_cpu;
    println!();
    println!("GitHub: {PAGES} pages of 50 notifications ({events} events emitted)");
    println!(
        "| serde_json::Value parse (baseline) | {:>9.0} pages/s |\n| GithubMachine parse + dedup + emit | {:>9.0} pages/s |",
        PAGES as f64 / baseline.as_secs_f64(),
        PAGES as f64 / machine_cpu.as_secs_f64()
    );
}

/// Feeds one input and drains, confirming every delivery as the firehose would; returns the
/// request the machine sent, if any.
fn step(
    machine: &mut GithubMachine,
    now: Now,
    input: Input,
    events: &mut u64,
) -> Option<openflume_proto::ReqId> {
    let mut pending = vec![input];
    let mut request = None;
    while let Some(input) = pending.pop() {
        machine.handle_input(now, input).expect("input");
        while let Some(out) = machine.poll_output() {
            match out {
                Output::Request { req, .. } => request = Some(req),
                Output::Emit { confirm, .. } => {
                    *events += 1;
                    pending.extend(confirm.map(|delivery| Input::Delivered { delivery }));
                }
                _ => {}
            }
        }
    }
    request
}

fn notification_page(page: u64) -> String {
    let items: Vec<String> = (0..50)
        .map(|i| {
            let id = page * 50 + i;
            format!(
                r#"{{"id":"{id}","unread":true,"reason":"mention","updated_at":"2025-11-25T10:{:02}:00Z","last_read_at":null,"subject":{{"title":"Fix the flux capacitor #{id}","url":"https://api.github.com/repos/octo/repo/issues/{id}","latest_comment_url":null,"type":"Issue"}},"repository":{{"id":1296269,"name":"repo","full_name":"octo/repo","private":false,"owner":{{"login":"octo","id":1}}}},"url":"https://api.github.com/notifications/threads/{id}","subscription_url":"https://api.github.com/notifications/threads/{id}/subscription"}}"#,
                i % 60
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

// ---- the simulator child process ----------------------------------------------------------

fn start_simulator(events: u64) -> (Child, String) {
    start_simulator_with(events, 1024)
}

/// A simulator child cycling through `blast_pool` distinct message bodies.
fn start_simulator_with(events: u64, blast_pool: u64) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(ROLE, "sim")
        .env("BENCH_EVENTS", events.to_string())
        .env("BENCH_BLAST_POOL", blast_pool.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn simulator");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("simulator URL");
    (child, line.trim().to_owned())
}

fn stop_simulator(child: &mut Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// How many dispatches the simulator child has sent, for a case that did not see them all.
fn simulator_sent(child: &mut Child) -> String {
    ask_simulator(child, "sent")
}

/// Asks the simulator child `question` (`sent`, `bytes`) and reads its one-line answer.
fn ask_simulator(child: &mut Child, question: &str) -> String {
    let Some(stdin) = child.stdin.as_mut() else {
        return "?".to_owned();
    };
    if writeln!(stdin, "{question}")
        .and_then(|()| stdin.flush())
        .is_err()
    {
        return "?".to_owned();
    }
    let mut line = String::new();
    match child.stdout.as_mut() {
        Some(stdout) => {
            let _ = BufReader::new(stdout).read_line(&mut line);
            line.trim().to_owned()
        }
        None => "?".to_owned(),
    }
}

/// The child: a Discord simulator blasting `BENCH_EVENTS` dispatches to its first session
/// (cycling through `BENCH_BLAST_POOL` distinct bodies, default 1024), answering `sent` on stdin
/// with how many it has sent and `bytes` with the bytes of the messages it wrote, until stdin
/// closes.
fn run_simulator() {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    smol::block_on(async {
        let blast_pool = std::env::var("BENCH_BLAST_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let sim = DiscordSim::start(DiscordSimConfig {
            scenario: Scenario::blast(events),
            blast_pool,
            // The blast writes in batches of 64 that the replay buffer must hold; records are
            // not needed here.
            max_records: 1024,
            ..DiscordSimConfig::default()
        })
        .await
        .expect("start simulator");
        let mut out = std::io::stdout();
        writeln!(out, "{}", sim.gateway_url()).expect("print URL");
        out.flush().expect("flush");
        loop {
            let line = smol::unblock(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|n| (n, line))
            })
            .await;
            match line {
                Ok((0, _)) => break,
                Ok((_, line)) if line.trim() == "sent" => {
                    let sent = sim.records().dispatches.total();
                    writeln!(out, "{sent}").expect("print the count");
                    out.flush().expect("flush");
                }
                Ok((_, line)) if line.trim() == "bytes" => {
                    writeln!(out, "{}", sim.bytes_sent()).expect("print the bytes");
                    out.flush().expect("flush");
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        sim.stop().await;
    });
}

// ---- measuring this process ---------------------------------------------------------------
