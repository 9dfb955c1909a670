//! Discord sharding through the real binary against the Discord simulator (issue 18): a range
//! of shards in one process, each with its own status and `meta.shard`; two processes with
//! disjoint ranges of one total; `--discord-shards auto`; zstd-stream transport compression;
//! and a two-shard `serve` killed with SIGKILL that resumes both sessions on restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::LogReader;
use openflume_sim::{DiscordAction, DiscordSimConfig, IdentifyOutcome, ResumeOutcome};
use openflume_tests::serve::{Serve, http_request};
use openflume_tests::{
    Openflume, Reader, discord_env, discord_sim, is_event_json, is_log_json, listen, logged,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A simulator whose `/gateway/bot` recommends `shards`, with a bucket per shard (so shards of
/// separate processes never meet in one bucket: pacing across processes is the shared identify
/// queue's job) and guilds enough for every shard to have some.
fn sim(shards: u32) -> openflume_sim::DiscordSim {
    discord_sim(DiscordSimConfig {
        shards,
        max_concurrency: shards,
        guilds: 16,
        ..DiscordSimConfig::default()
    })
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// Waits until every shard in `shards` logged `shard.status` → connected on `process`.
fn wait_shards_connected(process: &mut Openflume, shards: &[&str]) {
    let mut connected = BTreeSet::new();
    process.wait_for_json(WAIT, |line| {
        if is_log_json(line, "discord", "shard.status")
            && line["log"]["detail"]["to"] == "connected"
        {
            connected.insert(line["log"]["detail"]["shard"].as_str().unwrap().to_owned());
        }
        shards.iter().all(|shard| connected.contains(*shard))
    });
}

/// `meta.shard` of every MESSAGE_CREATE printed so far, with how many each.
fn message_shards(process: &Openflume) -> BTreeMap<String, usize> {
    let mut shards = BTreeMap::new();
    for line in &process.seen {
        let line = json(line);
        if is_event_json(&line, "discord", "MESSAGE_CREATE") {
            let shard = line["event"]["meta"]["shard"].as_str().unwrap_or("none");
            *shards.entry(shard.to_owned()).or_insert(0) += 1;
        }
    }
    shards
}

/// The `shard` of every IDENTIFY that got READY, sorted.
fn ready_identifies(sim: &openflume_sim::DiscordSim) -> Vec<[u64; 2]> {
    let mut shards: Vec<[u64; 2]> = sim
        .records()
        .identifies
        .iter()
        .filter(|i| matches!(i.outcome, IdentifyOutcome::Ready { .. }))
        .filter_map(|i| i.shard)
        .collect();
    shards.sort_unstable();
    shards
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_range_of_shards_runs_in_one_process_with_a_status_and_a_meta_shard_each() {
    let discord = sim(4);
    let mut process = listen(
        &["--discord-shards", "0-3/4"],
        &discord_env(&discord),
        Reader::Eager,
    );
    wait_shards_connected(&mut process, &["0/4", "1/4", "2/4", "3/4"]);
    process.wait_for_json(WAIT, |line| {
        is_log_json(line, "discord", "status") && line["log"]["detail"]["to"] == "connected"
    });
    assert_eq!(ready_identifies(&discord), [[0, 4], [1, 4], [2, 4], [3, 4]]);

    discord.inject(DiscordAction::Messages(200));
    let mut messages = 0;
    process.wait_for_json(WAIT, |line| {
        messages += usize::from(is_event_json(line, "discord", "MESSAGE_CREATE"));
        messages == 200
    });
    let shards = message_shards(&process);
    assert_eq!(shards.values().sum::<usize>(), 200);
    assert!(
        shards.keys().all(|shard| shard.ends_with("/4")),
        "every event says its shard: {shards:?}"
    );
    assert!(
        shards.len() > 1,
        "guilds spread over the shards: {shards:?}"
    );
    // Every READY says which shard it came from too.
    let readies: BTreeSet<String> = process
        .seen
        .iter()
        .map(|line| json(line))
        .filter(|line| is_event_json(line, "discord", "READY"))
        .map(|line| line["event"]["meta"]["shard"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(readies.len(), 4, "{readies:?}");
}

#[test]
fn two_processes_with_disjoint_ranges_split_one_total() {
    let discord = sim(4);
    let env = discord_env(&discord);
    let mut low = listen(&["--discord-shards", "0-1/4"], &env, Reader::Eager);
    let mut high = listen(&["--discord-shards", "2-3/4"], &env, Reader::Eager);
    wait_shards_connected(&mut low, &["0/4", "1/4"]);
    wait_shards_connected(&mut high, &["2/4", "3/4"]);
    // Each process identified its own shards, with the bot's total.
    assert_eq!(ready_identifies(&discord), [[0, 4], [1, 4], [2, 4], [3, 4]]);
    let identifies = discord.records().identifies;
    assert_eq!(identifies.len(), 4, "no IDENTIFY twice or refused");

    discord.inject(DiscordAction::Messages(300));
    wait_until(
        "all 300 messages are printed by one process or the other",
        || {
            for process in [&mut low, &mut high] {
                let _ = process.try_wait_for_json(Duration::from_millis(20), |_| false);
            }
            message_shards(&low).values().sum::<usize>()
                + message_shards(&high).values().sum::<usize>()
                == 300
        },
    );
    let (low, high) = (message_shards(&low), message_shards(&high));
    assert!(low.keys().all(|s| s == "0/4" || s == "1/4"), "{low:?}");
    assert!(high.keys().all(|s| s == "2/4" || s == "3/4"), "{high:?}");
}

#[test]
fn auto_takes_the_shard_count_from_gateway_bot() {
    let discord = sim(3);
    let mut process = listen(
        &["--discord-shards", "auto"],
        &discord_env(&discord),
        Reader::Eager,
    );
    wait_shards_connected(&mut process, &["0/3", "1/3", "2/3"]);
    assert_eq!(ready_identifies(&discord), [[0, 3], [1, 3], [2, 3]]);
    let started = process
        .seen
        .iter()
        .map(|line| json(line))
        .find(|line| is_log_json(line, "discord", "gateway.shards"))
        .expect("the gateway says what it starts");
    assert_eq!(started["log"]["message"], "starting 3 shard(s)");
}

#[test]
fn zstd_stream_end_to_end() {
    let discord = sim(2);
    let mut process = listen(
        &[
            "--discord-shards",
            "0-1/2",
            "--discord-compress",
            "zstd-stream",
        ],
        &discord_env(&discord),
        Reader::Eager,
    );
    wait_shards_connected(&mut process, &["0/2", "1/2"]);
    discord.inject(DiscordAction::Messages(500));
    let mut messages = 0;
    process.wait_for_json(WAIT, |line| {
        messages += usize::from(is_event_json(line, "discord", "MESSAGE_CREATE"));
        messages == 500
    });
    let connections = discord.records().connections;
    assert!(
        connections
            .iter()
            .all(|c| c.compress.as_deref() == Some("zstd-stream")),
        "{:?}",
        connections.iter().collect::<Vec<_>>()
    );
    assert!(
        !process
            .seen
            .iter()
            .any(|line| is_log_json(&json(line), "discord", "inflate.error")),
        "no decompression error"
    );
}

/// `openflume serve --discord-shards 0-1/2` on `dir`.
fn serve_two_shards(dir: &Path, discord: &openflume_sim::DiscordSim) -> Serve {
    let (token, api) = (discord.token().to_owned(), discord.api_url());
    Serve::spawn_in(
        dir,
        &["--discord-shards", "0-1/2"],
        &[
            ("DISCORD_BOT_TOKEN", &token),
            ("OPENFLUME_DISCORD_API_URL", &api),
            ("OPENFLUME_RECONNECT_BASE_MS", "250"),
            ("OPENFLUME_RECONNECT_MAX_MS", "500"),
        ],
    )
}

/// `/readyz`'s body once it answers 200.
fn ready(addr: SocketAddr) -> serde_json::Value {
    let mut body = serde_json::Value::Null;
    wait_until("/readyz answers 200", || {
        let response = http_request(addr, "GET", "/readyz", &[], b"");
        body = serde_json::from_str(&response.body).unwrap_or_default();
        response.status == 200
    });
    body
}

/// How many times each MESSAGE_CREATE (by its id) was logged.
fn logged_messages(dir: &Path) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for record in logged(dir) {
        let item = json(&record.json);
        if is_event_json(&item, "discord", "MESSAGE_CREATE") {
            *counts
                .entry(item["event"]["data"]["id"].to_string())
                .or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn two_shards_killed_mid_burst_resume_both_sessions() {
    let discord = sim(2);
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve_two_shards(dir.path(), &discord);
    let readyz = ready(first.addr);
    let parts = &readyz["sources"][0]["parts"];
    let shards: Vec<(&str, &str)> = parts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["part"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shards,
        [("0/2", "connected"), ("1/2", "connected")],
        "{readyz}"
    );
    // Each shard's status is a state set in /metrics too, and listed in /status.json.
    let metrics = first.get("/metrics", &[]).body;
    for shard in ["0/2", "1/2"] {
        let connected = format!(
            "openflume_source_part_status{{source=\"discord\",part=\"{shard}\",status=\"connected\"}} 1"
        );
        assert!(metrics.contains(&connected), "{connected} in:\n{metrics}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&first.get("/status.json", &[]).body).unwrap();
    assert_eq!(status["sources"][0]["parts"][1]["part"], "1/2", "{status}");

    discord.inject(DiscordAction::Messages(2_000));
    wait_until("part of the burst is logged", || {
        logged_messages(dir.path()).len() >= 200
    });
    first.kill();
    let at_kill = logged_messages(dir.path()).len();
    assert!(
        at_kill < 2_000,
        "killed before the burst was all logged ({at_kill})"
    );
    // Stored: a cursor per shard, none under the single-shard key.
    let reader = LogReader::open(dir.path()).unwrap();
    for key in ["discord:0/2", "discord:1/2"] {
        let cursor = reader.cursor(key).unwrap();
        assert!(cursor.is_some(), "no cursor {key}");
    }
    assert!(reader.cursor("discord").unwrap().is_none());
    drop(reader);

    discord.inject(DiscordAction::Messages(100));
    let mut second = serve_two_shards(dir.path(), &discord);
    ready(second.addr);
    wait_until("every message is logged after the restart", || {
        logged_messages(dir.path()).len() == 2_100
    });
    second.kill();

    let counts = logged_messages(dir.path());
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "logged twice: {repeated:?}");
    let records = discord.records();
    assert_eq!(
        records.sessions().len(),
        2,
        "one session per shard, no new IDENTIFY"
    );
    let resumed = records
        .resumes
        .iter()
        .filter(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. }))
        .count();
    assert_eq!(resumed, 2, "both shards resumed");
}

/// Two gateways with disjoint ranges sharing one identify gate (the library form of two
/// processes sharing one queue): the simulator keeps Discord's rule, one IDENTIFY per bucket per
/// 5 s, and refuses a closer one with op 9, so both READYs with no op 9 prove the spacing.
#[test]
fn a_shared_identify_gate_spaces_the_identifies_of_two_gateways() {
    use openflume::{Flume, SharedIdentifyQueue, Source};
    use openflume_proto::discord::{
        DiscordConfig, DiscordGatewayConfig, IdentifyQueue, ShardRange,
    };
    use std::sync::Arc;

    let discord = discord_sim(DiscordSimConfig {
        shards: 2,
        max_concurrency: 1,
        ..DiscordSimConfig::default()
    });
    let queue = Arc::new(SharedIdentifyQueue::new());
    let gateway = |shard_id: u32| {
        let mut shard = DiscordConfig::new(discord.token());
        shard.api_base = discord.api_url();
        shard.identify_queue = IdentifyQueue::External;
        let config = DiscordGatewayConfig {
            shard,
            shard_count: Some(2),
            shard_range: Some(ShardRange {
                first: shard_id,
                last: shard_id,
            }),
            ..DiscordGatewayConfig::default()
        };
        Flume::builder()
            .source(Source::discord_gateway(config).with_identify_gate(queue.clone()))
            .start_timeout(Some(Duration::from_secs(30)))
            .build()
    };
    let (low, high) = (gateway(0), gateway(1));
    let (low, high) = openflume_tests::block_on(WAIT, "both gateways connect", async {
        futures_lite::future::zip(low.open(), high.open()).await
    });
    let (low, high) = (low.unwrap(), high.unwrap());
    for running in [&low, &high] {
        assert_eq!(running.part_statuses("discord").len(), 1);
        assert_eq!(
            running.part_statuses("discord")[0].status,
            openflume_proto::Status::Connected
        );
    }
    let identifies = discord.records().identifies;
    let outcomes: Vec<_> = identifies
        .iter()
        .map(|i| (i.shard, i.outcome.clone()))
        .collect();
    assert_eq!(identifies.len(), 2, "no refused IDENTIFY: {outcomes:?}");
    assert!(
        identifies
            .iter()
            .all(|i| matches!(i.outcome, IdentifyOutcome::Ready { .. })),
        "{outcomes:?}"
    );
    let at: Vec<Duration> = identifies.iter().map(|i| i.at).collect();
    assert!(at[1] >= at[0] + Duration::from_millis(4_900), "{at:?}");
    openflume_tests::block_on(WAIT, "both close", async {
        low.close().await;
        high.close().await;
    });
}

/// A two-shard zstd-stream session recorded with `--record-drop-content` replays event for
/// event, the message contents dropped inside the recorded zstd stream (re-encoded as zstd).
#[test]
fn a_sharded_zstd_session_records_and_replays_without_its_contents() {
    let discord = sim(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shards.jsonl");
    let record = path.to_str().unwrap();
    let mut live = listen(
        &[
            "--discord-shards",
            "0-1/2",
            "--discord-compress",
            "zstd-stream",
            "--record",
            record,
            "--record-drop-content",
        ],
        &discord_env(&discord),
        Reader::Eager,
    );
    wait_shards_connected(&mut live, &["0/2", "1/2"]);
    discord.inject(DiscordAction::Messages(20));
    let mut messages = 0;
    live.wait_for_json(WAIT, |line| {
        messages += usize::from(is_event_json(line, "discord", "MESSAGE_CREATE"));
        messages == 20
    });
    live.terminate();
    let (status, printed, stderr) = live.wait_exit(WAIT);
    assert!(status.success(), "{stderr}");

    let mut replay = Openflume::spawn(&["replay", record, "--format", "json"], &[]);
    let (status, replayed, stderr) = replay.wait_exit(WAIT);
    assert!(status.success(), "replay failed: {stderr}");
    let messages = |lines: &[String]| -> Vec<serde_json::Value> {
        lines
            .iter()
            .map(|line| json(line))
            .filter(|line| is_event_json(line, "discord", "MESSAGE_CREATE"))
            .map(|line| line["event"].clone())
            .collect()
    };
    let (before, after) = (messages(&printed), messages(&replayed));
    assert_eq!(before.len(), 20);
    assert_eq!(after.len(), 20, "every message replays");
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before["data"]["id"], after["data"]["id"], "in order");
        assert_eq!(before["meta"]["shard"], after["meta"]["shard"]);
        assert_ne!(before["data"]["content"], "");
        assert_eq!(after["data"]["content"], "", "the content was dropped");
    }
}
