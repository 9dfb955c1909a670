//! Events per second into a Redis Stream, the sink's batching beside the baselines measured in
//! the same run against the same `redis-server` (one the benchmark starts, like the tests):
//!
//! 1. one `XADD` per round trip (what a naive sink does: each event waits for its reply);
//! 2. plain pipelined `XADD`s, 1000 per round trip, no script (the protocol's ceiling);
//! 3. the sink: Discord simulator bursts through the flume into `Flume::redis_into`, timed
//!    from the first burst until the stream holds every event (the real pipeline: gateway,
//!    machine, back-pressure stream, the append script with its cursors);
//! 4. the sink fed by an in-process source that emits the same items as fast as the stream
//!    takes them: what Redis and the sink can do when the source is not the limit.
//!
//! Each with `appendfsync always` (every acknowledged write fsynced: what the tests use) and
//! `everysec` (Redis's default). The payload of 1. and 2. is the sink's own items, read back
//! from the stream.
//!
//! `cargo bench -p openflume-tests --bench redis_sink` (env `BENCH_EVENTS` sets the events of a
//! case, default 50000, of which the single-`XADD` baseline sends a 25th; `BENCH_RUNS` the
//! rounds, default 3, each with fresh servers; the median is printed).

// A benchmark aborts on any failure: a panic with the cause is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::redis::{RedisSinkOptions, RedisTarget};
use openflume::{Flume, Source};
use openflume_proto::discord::DiscordConfig;
use openflume_proto::{
    Cursors, Event, Input, Machine, Millis, Misuse, Now, Output, RawJson, ReconnectPolicy, Status,
    StatusTracker,
};
use openflume_sim::{DiscordAction, DiscordSimConfig};
use openflume_tests::redis::RedisServer;
use openflume_tests::{block_on, discord_sim};
use std::time::{Duration, Instant};

/// Events per inject into the Discord simulator.
const BURST: usize = 5000;

fn main() {
    let events: usize = env_number("BENCH_EVENTS", 50_000);
    let runs = env_number("BENCH_RUNS", 3).max(1);
    println!("{events} events a case, {runs} rounds; events/s, each round then the median");
    for fsync in ["always", "everysec"] {
        let mut rounds: Vec<[f64; 4]> = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let redis = RedisServer::start_with(&["--appendfsync", fsync]);
            let (discord, payload) = sink(&redis, events);
            let single = single_xadd(&redis, &payload, (events / 25).max(100));
            let pipelined = pipelined_xadd(&redis, &payload, events);
            let unbound = sink_unbound(&redis, &payload, events);
            size = payload.len();
            rounds.push([single, pipelined, discord, unbound]);
        }
        println!("appendfsync {fsync} (items of {size} bytes):");
        let cases = [
            "one XADD per round trip",
            "pipelined XADD, 1000 per trip",
            "the sink (Discord burst)",
            "the sink (in-process source)",
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut figures: Vec<f64> = rounds.iter().map(|round| round[i]).collect();
            let shown: Vec<String> = figures.iter().map(|f| format!("{f:.0}")).collect();
            figures.sort_by(f64::total_cmp);
            let median = figures[figures.len() / 2];
            println!(
                "  {case:<32} {median:>9.0}   (rounds: {})",
                shown.join(", ")
            );
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A burst of `events` Discord messages through the flume into the stream `sink`; the rate and
/// a typical item as stored.
fn sink(redis: &RedisServer, events: usize) -> (f64, String) {
    let discord = discord_sim(DiscordSimConfig::default());
    let config = DiscordConfig {
        api_base: discord.api_url(),
        compress: false,
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 250,
            max_ms: 500,
        },
        ..DiscordConfig::new(discord.token())
    };
    let flume = Flume::builder().source(Source::discord(config)).build();
    let target: RedisTarget = redis.sink_url("sink").parse().unwrap();
    let sink = flume
        .redis_into(
            target,
            Cursors::default(),
            4096,
            RedisSinkOptions::default(),
        )
        .unwrap();
    let running = flume.start().unwrap();
    block_on(
        Duration::from_secs(20),
        "Discord connects",
        running.started(),
    )
    .unwrap();
    let mut conn = redis.connection();
    let before: usize = redis::cmd("XLEN").arg("sink").query(&mut conn).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60) + Duration::from_micros(100) * events as u32;
    // Bursts of at most 5000: the simulator stalls on one much larger inject. The next burst
    // is injected once the sink has most of the last one, so the pipeline never runs dry.
    let mut injected = 0;
    loop {
        let len: usize = redis::cmd("XLEN").arg("sink").query(&mut conn).unwrap();
        if len >= before + events {
            break;
        }
        if injected < events && len + 1000 >= before + injected {
            let burst = (events - injected).min(BURST);
            discord.inject(DiscordAction::Messages(burst as u32));
            injected += burst;
        }
        if Instant::now() >= deadline {
            let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg("sink")
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(5)
                .query(&mut conn)
                .unwrap();
            panic!(
                "the sink appended {} of {events} events in time; the last: {last:#?}",
                len - before
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    block_on(Duration::from_secs(10), "close", running.close());
    block_on(Duration::from_secs(10), "the sink ends", sink.finished()).unwrap();
    let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg("sink")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(100)
        .query(&mut conn)
        .unwrap();
    let payload = newest
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .map(|(_, item)| item)
        .find(|item| item.contains("MESSAGE_CREATE"))
        .expect("a message in the stream");
    (rate, payload)
}

/// `count` `XADD`s, each waiting for its reply before the next.
fn single_xadd(redis: &RedisServer, payload: &str, count: usize) -> f64 {
    let mut conn = redis.connection();
    let started = Instant::now();
    for _ in 0..count {
        let _: String = redis::cmd("XADD")
            .arg("single")
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*")
            .arg("item")
            .arg(payload)
            .query(&mut conn)
            .unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// `count` `XADD`s, 1000 to a pipeline.
fn pipelined_xadd(redis: &RedisServer, payload: &str, count: usize) -> f64 {
    let mut conn = redis.connection();
    let started = Instant::now();
    let mut left = count;
    while left > 0 {
        let batch = left.min(1000);
        let mut pipe = redis::pipe();
        for _ in 0..batch {
            pipe.cmd("XADD")
                .arg("pipelined")
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("item")
                .arg(payload)
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
        left -= batch;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// `events` copies of `payload`'s event through the flume into the stream `unbound`, from a
/// source that is never the limit.
fn sink_unbound(redis: &RedisServer, payload: &str, events: usize) -> f64 {
    let item: serde_json::Value = serde_json::from_str(payload).unwrap();
    let data = RawJson::from_str(&item["event"]["data"].to_string()).unwrap();
    let source = Source::custom("bench", move |_seed| {
        Ok::<_, Misuse>(Burst {
            status: StatusTracker::default(),
            out: std::collections::VecDeque::new(),
            left: events,
            data,
        })
    });
    let flume = Flume::builder().source(source).build();
    let target: RedisTarget = redis.sink_url("unbound").parse().unwrap();
    let sink = flume
        .redis_into(
            target,
            Cursors::default(),
            4096,
            RedisSinkOptions::default(),
        )
        .unwrap();
    let mut conn = redis.connection();
    let started = Instant::now();
    let running = flume.start().unwrap();
    let deadline = started + Duration::from_secs(60) + Duration::from_micros(100) * events as u32;
    loop {
        let len: usize = redis::cmd("XLEN").arg("unbound").query(&mut conn).unwrap();
        if len >= events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "appended {len} of {events} in time"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    // The sink's batch counter (removed once it ends): events per append.
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("unbound:sink:*")
        .query(&mut conn)
        .unwrap();
    if let Some(marker) = markers.first() {
        let batches: u64 = redis::cmd("GET").arg(marker).query(&mut conn).unwrap();
        println!(
            "  (the sink, in-process source: {batches} transactions, {} events each)",
            events as u64 / batches.max(1)
        );
    }
    block_on(Duration::from_secs(10), "close", running.close());
    block_on(Duration::from_secs(10), "the sink ends", sink.finished()).unwrap();
    rate
}

/// A source that emits `left` events at once.
struct Burst {
    status: StatusTracker,
    out: std::collections::VecDeque<Output>,
    left: usize,
    data: RawJson,
}

impl Machine for Burst {
    fn source(&self) -> &str {
        "bench"
    }

    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let to = match input {
            Input::Start => Status::Connected,
            Input::Shutdown { .. } => {
                self.left = 0;
                Status::Disconnected
            }
            _ => return Ok(()),
        };
        self.out
            .extend(self.status.set(to, None).map(Output::Status));
        let _ = now;
        Ok(())
    }

    fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.out.pop_front() {
            return Some(out);
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let event = Event::new(
            "bench",
            "MESSAGE_CREATE",
            self.data.clone(),
            openflume_proto::UnixMillis(0),
        );
        Some(Output::Emit {
            event,
            confirm: None,
        })
    }

    fn poll_timeout(&self) -> Option<Millis> {
        None
    }

    fn is_finished(&self) -> bool {
        self.status.current() == Status::Disconnected
    }

    fn status(&self) -> Status {
        self.status.current()
    }
}
