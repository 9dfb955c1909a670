//! Redis Streams as the shared log (issue 18), through the real binary against a real
//! `redis-server` each test starts for itself (`openflume_tests::redis`): `serve --sink
//! redis://…` acks upstream only after Redis has the item, survives Redis restarting under load,
//! keeps its cursors in Redis so a shard range resumes anywhere, serves the same hub replay from
//! any instance; `openflume consume` splits a group and loses nothing to a killed member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::sign_github;
use openflume_sim::{DiscordAction, DiscordSimConfig, SlackAction};
use openflume_tests::redis::RedisServer;
use openflume_tests::serve::{Serve as ServeProcess, http_request};
use openflume_tests::{
    Openflume, Reader, Signal, acked_event_ids, block_on, discord_sim, inject_and_expect_no_ack,
    patient_slack_sim,
};
use redis::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const STREAM: &str = "events";
const SECRET: &str = "redis-test-deploy-secret";

/// Every entry of the stream: its id and the item.
fn entries(redis: &RedisServer) -> Vec<(String, serde_json::Value)> {
    redis.entries(STREAM)
}

/// The events of `source` (and `event_type`) in the stream, counted by the value at `key`.
fn counts(redis: &RedisServer, source: &str, event_type: &str, key: &str) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for (_, item) in entries(redis) {
        let event = &item["event"];
        if event["source"] == source && event["type"] == event_type {
            *counts
                .entry(event.pointer(key).unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

fn has_status(redis: &RedisServer, source: &str, to: &str) -> bool {
    entries(redis).iter().any(|(_, item)| {
        let log = &item["log"];
        log["source"] == source && log["action"] == "status" && log["detail"]["to"] == to
    })
}

/// Waits (at most [`WAIT`]) until `done`, checking again every few milliseconds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sink_args(redis: &RedisServer) -> Vec<String> {
    vec!["--sink".to_owned(), redis.sink_url(STREAM)]
}

fn serve(redis: &RedisServer, extra: &[&str], env: &[(&str, String)]) -> ServeProcess {
    let mut args = sink_args(redis);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("OPENFLUME_RECONNECT_BASE_MS", "250"));
    env.push(("OPENFLUME_RECONNECT_MAX_MS", "500"));
    ServeProcess::spawn(&args, &env)
}

/// While Redis refuses writes (`CLIENT PAUSE … WRITE`), Slack's envelopes reach the listener but
/// none is acked and nothing is in the stream; once writes go through, every envelope is acked,
/// each acked one is in the stream, and each event is there once.
#[test]
fn the_redis_sink_acks_slack_only_after_the_xadd_and_appends_each_event_once() {
    const ENVELOPES: u32 = 40;
    let redis = RedisServer::start();
    let slack = patient_slack_sim();
    let _serve = serve(
        &redis,
        &[],
        &[
            ("SLACK_APP_TOKEN", slack.app_token().to_owned()),
            ("OPENFLUME_SLACK_API_URL", slack.api_url()),
        ],
    );
    wait_until("Slack's connected status is in the stream", || {
        has_status(&redis, "slack", "connected")
    });

    let mut control = redis.connection();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query(&mut control)
        .unwrap();
    inject_and_expect_no_ack(&slack, ENVELOPES, "Redis refused the XADD");
    assert!(counts(&redis, "slack", "events_api", "/meta/event_id").is_empty());

    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut control)
        .unwrap();
    let acked = acked_event_ids(&slack, ENVELOPES);
    let appended = counts(&redis, "slack", "events_api", "/meta/event_id");
    for event_id in acked {
        assert_eq!(
            appended.get(&format!("\"{event_id}\"")),
            Some(&1),
            "{event_id} acked: in the stream once"
        );
    }
    assert_eq!(appended.len(), ENVELOPES as usize);
    // The cursors went with the items.
    let mut conn = redis.connection();
    let slack_cursor: Option<String> = redis::cmd("HGET")
        .arg(format!("{STREAM}:cursors"))
        .arg("slack")
        .query(&mut conn)
        .unwrap();
    assert!(slack_cursor.is_some(), "the Slack cursor is in Redis");
}

/// `openflume listen --sink redis://…/events` with `env`, its stdout read as it comes.
fn listen_sink(redis: &RedisServer, extra: &[&str], env: &[(&str, String)]) -> Openflume {
    let url = redis.sink_url(STREAM);
    let mut args = vec!["--sink", url.as_str()];
    args.extend(extra);
    openflume_tests::listen(&args, env, Reader::Eager)
}

/// The items `listen` printed, parsed.
fn printed(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `listen --sink`: while Redis refuses writes, Slack's envelopes reach the listener but none
/// is acked and none is printed; once writes go through, every envelope is acked and printed,
/// each acked one is in the stream once, and what stdout carried is, line for line, what the
/// stream holds (the first status log to the last, after a SIGTERM).
#[test]
fn listen_with_a_redis_sink_prints_and_acks_only_what_redis_holds() {
    const ENVELOPES: u32 = 40;
    let redis = RedisServer::start();
    let slack = patient_slack_sim();
    let mut listen = listen_sink(
        &redis,
        &[],
        &[
            ("SLACK_APP_TOKEN", slack.app_token().to_owned()),
            ("OPENFLUME_SLACK_API_URL", slack.api_url()),
        ],
    );
    listen.wait_for_json(WAIT, |line| {
        openflume_tests::is_status_json(line, "slack", "connected")
    });
    assert!(
        has_status(&redis, "slack", "connected"),
        "printed: in Redis"
    );

    let mut control = redis.connection();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query(&mut control)
        .unwrap();
    slack.inject(SlackAction::Messages(ENVELOPES));
    block_on(
        WAIT,
        "envelopes sent",
        slack.wait_for(WAIT, |r| {
            (r.envelopes.len() >= ENVELOPES as usize).then_some(())
        }),
    )
    .expect("every envelope sent");
    // Give the listener every chance to ack, or print, too early.
    let early = listen.try_wait_for_json(Duration::from_secs(2), |line| {
        openflume_tests::is_event_json(line, "slack", "events_api")
    });
    assert!(
        early.is_err(),
        "an event was printed while Redis refused the XADD: {early:?}"
    );
    assert!(
        slack.records().acks.is_empty(),
        "an envelope was acked while Redis refused the XADD"
    );

    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut control)
        .unwrap();
    let mut events = 0;
    listen.wait_for_json(WAIT, |line| {
        events += usize::from(openflume_tests::is_event_json(line, "slack", "events_api"));
        events == ENVELOPES as usize
    });
    block_on(
        WAIT,
        "the acks",
        slack.wait_for(WAIT, |r| (r.acks.len() >= ENVELOPES as usize).then_some(())),
    )
    .expect("every envelope acked once appended");
    let records = slack.records();
    let appended = counts(&redis, "slack", "events_api", "/meta/event_id");
    for ack in records.acks.iter() {
        let event_id = records
            .envelopes
            .iter()
            .find(|e| e.envelope_id == ack.envelope_id)
            .and_then(|e| e.event_id.clone())
            .unwrap();
        assert_eq!(
            appended.get(&format!("\"{event_id}\"")),
            Some(&1),
            "{event_id} acked: in the stream once"
        );
    }
    assert_eq!(appended.len(), ENVELOPES as usize);

    listen.terminate();
    let (status, lines, stderr) = listen.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let stream: Vec<serde_json::Value> =
        entries(&redis).into_iter().map(|(_, item)| item).collect();
    let printed = printed(&lines);
    assert!(
        printed
            .iter()
            .any(|item| openflume_tests::is_status_json(item, "slack", "disconnected")),
        "the last status is printed too"
    );
    assert_eq!(printed.len(), stream.len(), "every entry printed, no more");
    assert_eq!(printed, stream, "stdout is the stream, line for line");
    let slack_cursor: Option<String> = redis::cmd("HGET")
        .arg(format!("{STREAM}:cursors"))
        .arg("slack")
        .query(&mut redis.connection())
        .unwrap();
    assert!(slack_cursor.is_some(), "the Slack cursor is in Redis");
}

/// `listen --sink` keeps the sources' cursors in Redis: stopped with SIGTERM (the Discord
/// session kept resumable) and started again, it resumes the session from Redis, and the
/// messages sent while it was down are printed and in the stream, each once.
#[test]
fn listen_with_a_redis_sink_resumes_from_the_cursors_in_redis() {
    let redis = RedisServer::start();
    let discord = discord_sim(DiscordSimConfig::default());
    let env = openflume_tests::discord_env(&discord);
    let mut first = listen_sink(&redis, &[], &env);
    first.wait_for_json(WAIT, |line| {
        openflume_tests::is_status_json(line, "discord", "connected")
    });
    discord.inject(DiscordAction::Messages(30));
    let mut seen = 0;
    first.wait_for_json(WAIT, |line| {
        seen += usize::from(openflume_tests::is_event_json(
            line,
            "discord",
            "MESSAGE_CREATE",
        ));
        seen == 30
    });
    first.terminate();
    let (status, _, stderr) = first.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let session: Option<String> = redis::cmd("HGET")
        .arg(format!("{STREAM}:cursors"))
        .arg("discord")
        .query(&mut redis.connection())
        .unwrap();
    assert!(session.is_some(), "the session is in Redis");
    // Sent while nobody listens: the session's replay brings them.
    discord.inject(DiscordAction::Messages(20));

    let mut second = listen_sink(&redis, &[], &env);
    let mut again = 0;
    second.wait_for_json(WAIT, |line| {
        again += usize::from(openflume_tests::is_event_json(
            line,
            "discord",
            "MESSAGE_CREATE",
        ));
        again == 20
    });
    openflume_tests::assert_one_session_resumed(&discord, "the second listen");
    let messages = counts(&redis, "discord", "MESSAGE_CREATE", "/data/id");
    assert_eq!(messages.len(), 50, "every message in the stream");
    let twice: Vec<_> = messages.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in the stream twice: {twice:?}");
    drop(second);
}

/// `listen` takes the cursors from one place: `--data` with `--sink` is a usage error.
#[test]
fn listen_refuses_data_with_a_redis_sink() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut listen = Openflume::spawn(
        &[
            "listen",
            "--cron",
            "@hourly",
            "--sink",
            "redis://127.0.0.1:1/0/events",
            "--data",
            &data,
        ],
        &[],
    );
    let (status, _, stderr) = listen.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--data and --sink"), "{stderr}");
}

/// Posts one signed custom webhook with its delivery id; the status, 0 when no answer came.
fn post(addr: std::net::SocketAddr, n: usize) -> u16 {
    let body = format!(r#"{{"deploy":{n}}}"#);
    let signature = sign_github(SECRET.as_bytes(), body.as_bytes());
    let id = format!("delivery-{n}");
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", signature.as_str()),
        ("webhook-id", id.as_str()),
    ];
    std::panic::catch_unwind(|| {
        http_request(
            addr,
            "POST",
            "/channels/custom/deploys",
            &headers,
            body.as_bytes(),
        )
        .status
    })
    .unwrap_or(0)
}

/// Webhooks keep coming while Redis is killed and started again: the sink says it is waiting,
/// no 200 is lost (every delivery answered 200 is in the stream after the restart, which kept
/// everything it acknowledged), and each delivery is in the stream exactly once.
#[test]
fn redis_restarting_under_load_loses_nothing_and_acks_only_what_was_appended() {
    const DELIVERIES: usize = 300;
    let mut redis = RedisServer::start();
    let mut serve = serve(
        &redis,
        &["--webhook", "deploys=DEPLOY_SECRET"],
        &[("DEPLOY_SECRET", SECRET.to_owned())],
    );
    let addr = serve.addr;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (accepted, sent) = (accepted.clone(), sent.clone());
        std::thread::spawn(move || {
            for n in 0..DELIVERIES {
                let deadline = Instant::now() + Duration::from_secs(120);
                // A sender retries until a 200, as webhook senders do.
                while post(addr, n) != 200 {
                    assert!(Instant::now() < deadline, "delivery {n} never answered 200");
                    std::thread::sleep(Duration::from_millis(50));
                }
                accepted.lock().unwrap().push(n);
                sent.store(n + 1, Ordering::Release);
            }
        })
    };
    wait_until("a third of the deliveries are accepted", || {
        sent.load(Ordering::Acquire) >= DELIVERIES / 3
    });
    redis.kill();
    serve.wait_for_stderr(WAIT, |line| line.contains("nothing is acknowledged"));
    let accepted_while_down = accepted.lock().unwrap().clone();
    redis.start_again();
    // Everything answered 200 before the restart was kept by Redis.
    let kept = counts(&redis, "custom", "deploys", "/data/deploy");
    for n in &accepted_while_down {
        assert!(
            kept.contains_key(&n.to_string()),
            "delivery {n} was answered 200 but is not in the stream"
        );
    }
    poster.join().expect("every delivery answered 200");
    let appended = counts(&redis, "custom", "deploys", "/data/deploy");
    let twice: Vec<_> = appended.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "appended twice: {twice:?}");
    assert_eq!(appended.len(), DELIVERIES, "every delivery once");
    // The sink says it recovered.
    serve.wait_for_stderr(WAIT, |line| line.contains("appending again"));
}

/// A serve with a Discord session is killed (SIGKILL) and another starts with an empty data
/// directory on the same Redis, with the same cursors hash (named for the shard range): it reads
/// the session from Redis and resumes it, and every message is in the stream once.
#[test]
fn a_shard_started_elsewhere_resumes_its_discord_session_from_redis() {
    let redis = RedisServer::start();
    let discord = discord_sim(DiscordSimConfig::default());
    let env = vec![
        ("DISCORD_BOT_TOKEN", discord.token().to_owned()),
        ("OPENFLUME_DISCORD_API_URL", discord.api_url()),
    ];
    let range = ["--redis-cursors", "events:cursors:shards-0-0"];
    let first = serve(&redis, &range, &env);
    wait_until("Discord is connected", || {
        has_status(&redis, "discord", "connected")
    });
    discord.inject(DiscordAction::Messages(200));
    wait_until("part of the burst is in the stream", || {
        counts(&redis, "discord", "MESSAGE_CREATE", "/data/id").len() >= 50
    });
    drop(first); // SIGKILL
    discord.inject(DiscordAction::Messages(50));

    // Another process, another data directory: only Redis is shared.
    let mut conn = redis.connection();
    let session: Option<String> = redis::cmd("HGET")
        .arg("events:cursors:shards-0-0")
        .arg("discord")
        .query(&mut conn)
        .unwrap();
    assert!(
        session.is_some(),
        "the session is in the range's cursors hash"
    );
    let second = serve(&redis, &range, &env);
    wait_until("every message is in the stream", || {
        counts(&redis, "discord", "MESSAGE_CREATE", "/data/id").len() == 250
    });
    let messages = counts(&redis, "discord", "MESSAGE_CREATE", "/data/id");
    let twice: Vec<_> = messages.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "in the stream twice: {twice:?}");
    openflume_tests::assert_one_session_resumed(&discord, "the second process");
    drop(second);
}

/// Appends `count` tick events straight to the stream, numbered from `from`.
fn fill(redis: &RedisServer, from: usize, count: usize) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for n in from..from + count {
        let item = format!(
            r#"{{"kind":"event","event":{{"source":"time","type":"tick","data":{{"n":{n}}},"meta":{{}},"receivedAt":0}}}}"#
        );
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("item")
            .arg(item)
            .ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
}

fn consumer(redis: &RedisServer, name: &str, reader: Reader) -> Openflume {
    let url = redis.url();
    let args = [
        "consume",
        "--redis",
        &url,
        "--stream",
        STREAM,
        "--group",
        "workers",
        "--consumer",
        name,
        "--claim-idle",
        "1s",
    ];
    Openflume::spawn_with(&args, &[], reader)
}

/// The `n` of each line; the last line of a killed consumer may be cut short, and is left out.
fn numbers(lines: &[String]) -> Vec<u64> {
    let whole = match lines.last() {
        Some(last) if serde_json::from_str::<serde_json::Value>(last).is_err() => {
            &lines[..lines.len() - 1]
        }
        _ => lines,
    };
    whole
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value["event_id"].is_string(), "a stream id: {line}");
            value["event"]["data"]["n"].as_u64().unwrap()
        })
        .collect()
}

/// Pending entries of one member of the group.
fn pending_of(redis: &RedisServer, name: &str) -> Vec<String> {
    let mut conn = redis.connection();
    // NOGROUP until the first consumer created the group: nothing is pending then.
    let reply: Result<Value, _> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(10_000)
        .arg(name)
        .query(&mut conn);
    let Ok(Value::Array(rows)) = reply else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| {
            let Value::Array(parts) = row else { panic!() };
            redis::from_redis_value_ref(&parts[0]).unwrap()
        })
        .collect()
}

/// Two members of one group share the stream; one stops reading its stdout (its entries stay
/// pending) and is killed with SIGKILL; the other claims its pending entries after
/// `--claim-idle` and goes on with new ones: every entry is printed by one of them.
#[test]
fn two_consumers_split_the_group_and_a_killed_ones_entries_are_claimed() {
    const FIRST: usize = 1500;
    const MORE: usize = 500;
    let redis = RedisServer::start();
    fill(&redis, 0, FIRST);
    // `a`'s stdout is never read: it fills its pipe and blocks with a batch unacknowledged.
    let mut a = consumer(&redis, "a", Reader::Pull);
    let mut b = consumer(&redis, "b", Reader::Eager);
    // What b printed: each entry's number and stream id.
    let mut by_b: HashMap<u64, String> = HashMap::new();
    let mut read_b = |b: &mut Openflume, until: &dyn Fn(&HashMap<u64, String>) -> bool| {
        if until(&by_b) {
            return by_b.clone();
        }
        let result = b.try_wait_for_json(WAIT, |line| {
            let n = line["event"]["data"]["n"].as_u64().unwrap();
            by_b.insert(n, line["event_id"].as_str().unwrap().to_owned());
            until(&by_b)
        });
        result.unwrap_or_else(|why| panic!("{why}; b printed {}", by_b.len()));
        by_b.clone()
    };
    wait_until("a is stuck writing with entries unacknowledged", || {
        a.blocked_writing() && !pending_of(&redis, "a").is_empty()
    });
    let a_pending_at_kill = pending_of(&redis, "a");
    a.signal(Signal::KILL);
    let (_, a_lines, _) = a.wait_exit(WAIT);
    let printed_by_a: HashSet<u64> = numbers(&a_lines).into_iter().collect();
    // The stream goes on.
    fill(&redis, FIRST, MORE);

    let all: HashSet<u64> = (0..(FIRST + MORE) as u64).collect();
    let by_b = read_b(&mut b, &|seen| {
        all.iter()
            .all(|n| seen.contains_key(n) || printed_by_a.contains(n))
    });
    let ids_by_b: HashSet<&String> = by_b.values().collect();
    let unclaimed: Vec<&String> = a_pending_at_kill
        .iter()
        .filter(|id| !ids_by_b.contains(id))
        .collect();
    assert!(
        unclaimed.is_empty(),
        "a's pending entries were claimed and printed by b: {} of {} were not",
        unclaimed.len(),
        a_pending_at_kill.len()
    );
    wait_until("nothing is pending", || {
        pending_of(&redis, "a").is_empty() && pending_of(&redis, "b").is_empty()
    });
    b.terminate();
    let (status, _, stderr) = b.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// A URL that is not redis:// is a usage error naming the flag.
#[test]
fn consume_exit_codes() {
    let mut bad = Openflume::spawn(
        &[
            "consume", "--redis", "http://x", "--stream", "s", "--group", "g",
        ],
        &[],
    );
    let (status, _, stderr) = bad.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--redis"), "{stderr}");
}

/// Two `serve` instances on one stream (each with its own data directory): a hub client gets
/// the same replay from either, its ids stream ids (strings), and `after_event_id` resumes
/// after one of them on the other instance.
#[test]
fn two_serves_on_one_stream_give_the_same_hub_replay() {
    use tungstenite::Message;
    let redis = RedisServer::start();
    let env = [("DEPLOY_SECRET", SECRET.to_owned())];
    let one = serve(&redis, &["--webhook", "deploys=DEPLOY_SECRET"], &env);
    let two = serve(&redis, &["--webhook", "deploys=DEPLOY_SECRET"], &env);
    for n in 0..10 {
        let server = if n % 2 == 0 { &one } else { &two };
        assert_eq!(post(server.addr, n), 200);
    }
    let replay = |server: &ServeProcess, hello: &str, want: usize| -> Vec<(String, u64)> {
        let (mut socket, _) =
            tungstenite::connect(format!("ws://{}/ws", server.addr)).expect("the hub");
        socket.send(Message::text(hello)).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        while got.len() < want {
            assert!(Instant::now() < deadline, "replay: {got:?}");
            let Message::Text(text) = socket.read().unwrap() else {
                continue;
            };
            let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] == "hello_ok" {
                assert!(frame["replay_until"].is_string(), "{frame}");
            }
            if frame["type"] == "item" && frame["item"]["event"]["source"] == "custom" {
                let id = frame["event_id"].as_str().unwrap().to_owned();
                got.push((
                    id,
                    frame["item"]["event"]["data"]["deploy"].as_u64().unwrap(),
                ));
            }
        }
        got
    };
    let everything =
        r#"{"type":"hello","after_event_id":0,"subscriptions":{"sources":["custom"]}}"#;
    let from_one = replay(&one, everything, 10);
    let from_two = replay(&two, everything, 10);
    assert_eq!(from_one, from_two);
    let mut deploys: Vec<u64> = from_one.iter().map(|(_, n)| *n).collect();
    deploys.sort_unstable();
    assert_eq!(deploys, (0..10).collect::<Vec<_>>());
    // Resuming after the fifth id on the other instance gives the last five.
    let after = format!(
        r#"{{"type":"hello","after_event_id":"{}","subscriptions":{{"sources":["custom"]}}}}"#,
        from_one[4].0
    );
    assert_eq!(replay(&two, &after, 5), from_one[5..].to_vec());

    // A named consumer acks on one instance and resumes on the other.
    let named = r#"{"type":"hello","consumer":"triage","after_event_id":0,"subscriptions":{"sources":["custom"]}}"#;
    let (mut socket, _) = tungstenite::connect(format!("ws://{}/ws", one.addr)).unwrap();
    socket.send(Message::text(named)).unwrap();
    let mut seen = 0;
    while seen < 3 {
        if let Message::Text(text) = socket.read().unwrap() {
            let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            seen += usize::from(frame["type"] == "item");
        }
    }
    let third = &from_one[2].0;
    let ack = format!(r#"{{"type":"ack","event_id":"{third}"}}"#);
    socket.send(Message::text(ack)).unwrap();
    wait_until("the ack is stored", || {
        let stored: Option<String> = redis::cmd("HGET")
            .arg(format!("{STREAM}:hub-consumers"))
            .arg("triage")
            .query(&mut redis.connection())
            .unwrap();
        stored.as_ref() == Some(third)
    });
    drop(socket);
    assert_eq!(replay(&two, named, 7), from_one[3..].to_vec());
}

/// Three processes with disjoint shard ranges of one bot, sharing one identify queue in Redis:
/// no bucket (here one, `max_concurrency` 1) gets two IDENTIFYs within 5 s, by the simulator's
/// own log of the IDENTIFYs it received. The processes name the server each its own way:
/// `--redis`, its alias `--discord-identify-redis`, and the deprecated variable
/// `OPENFLUME_DISCORD_IDENTIFY_REDIS` (warned about, the URL not printed).
#[test]
fn three_processes_share_one_identify_queue_in_redis() {
    let redis = RedisServer::start();
    let discord = discord_sim(DiscordSimConfig {
        shards: 3,
        max_concurrency: 1,
        ..DiscordSimConfig::default()
    });
    let env = vec![
        ("DISCORD_BOT_TOKEN", discord.token().to_owned()),
        ("OPENFLUME_DISCORD_API_URL", discord.api_url()),
    ];
    let url = redis.url();
    let start = |range: &str, flags: &[&str], env: &[(&str, String)]| {
        let mut args = vec!["--discord-shards", range];
        args.extend(flags);
        openflume_tests::listen(&args, env, Reader::Eager)
    };
    let mut by_flag = start("0/3", &["--redis", &url], &env);
    let mut by_alias = start("1/3", &["--discord-identify-redis", &url], &env);
    let mut old_env = env.clone();
    old_env.push(("OPENFLUME_DISCORD_IDENTIFY_REDIS", url.clone()));
    let mut by_old_var = start("2/3", &[], &old_env);
    let warning = by_old_var.wait_for_stderr(WAIT, |line| {
        line.contains("OPENFLUME_DISCORD_IDENTIFY_REDIS is deprecated")
    });
    assert!(!warning.contains(&url), "the URL is not printed: {warning}");
    for process in [&mut by_flag, &mut by_alias, &mut by_old_var] {
        process.wait_for_json(WAIT + WAIT, |line| {
            openflume_tests::is_log_json(line, "discord", "shard.status")
                && line["log"]["detail"]["to"] == "connected"
        });
    }
    let identifies: Vec<_> = discord.records().identifies.iter().cloned().collect();
    assert_eq!(identifies.len(), 3, "one IDENTIFY a shard: {identifies:?}");
    assert!(
        identifies
            .iter()
            .all(|i| matches!(i.outcome, openflume_sim::IdentifyOutcome::Ready { .. })),
        "{identifies:?}"
    );
    for pair in identifies.windows(2) {
        let gap = pair[1].at.saturating_sub(pair[0].at);
        assert!(
            gap >= Duration::from_millis(4_900),
            "two IDENTIFYs in one bucket {gap:?} apart"
        );
    }
}

/// Two processes of one bot, each with two of its four shards, sharing one identify queue in
/// Redis, and a daily budget of two session starts left. Before they start, the test takes every
/// bucket's turn for 3 s (as if another process had just identified), so that both read
/// `/gateway/bot`'s `remaining` 2 before any IDENTIFY: each on its own would identify both its
/// shards. Together they identify two shards, by the simulator's log, and the other two shards
/// wait for the refill, each saying so (`identify.budget`); the count in Redis is spent.
#[test]
fn two_processes_count_one_session_start_budget_in_redis() {
    const BUDGET: u32 = 2;
    let redis = RedisServer::start();
    let discord = discord_sim(DiscordSimConfig {
        shards: 4,
        max_concurrency: 4,
        session_start_remaining: BUDGET,
        ..DiscordSimConfig::default()
    });
    let env = vec![
        ("DISCORD_BOT_TOKEN", discord.token().to_owned()),
        ("OPENFLUME_DISCORD_API_URL", discord.api_url()),
    ];
    // The gate's keys, as the README names them: the bot is the token's first part.
    let bot = discord.token().split('.').next().unwrap().to_owned();
    let prefix = format!("openflume:identify:{bot}");
    let mut conn = redis.connection();
    for bucket in 0..4 {
        let () = redis::cmd("SET")
            .arg(format!("{prefix}:4:{bucket}"))
            .arg("test")
            .arg("PX")
            .arg(3_000)
            .query(&mut conn)
            .unwrap();
    }
    let url = redis.url();
    let start = |range: &str| {
        openflume_tests::listen(
            &["--discord-shards", range, "--redis", &url],
            &env,
            Reader::Eager,
        )
    };
    let mut processes = [start("0-1/4"), start("2-3/4")];
    let ready = || {
        discord
            .records()
            .identifies
            .iter()
            .filter(|i| matches!(i.outcome, openflume_sim::IdentifyOutcome::Ready { .. }))
            .count()
    };
    let logged = |process: &Openflume, action: &str| {
        process
            .seen
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| openflume_tests::is_log_json(line, "discord", action))
            .count()
    };
    wait_until("two shards identified and two wait for the budget", || {
        for process in processes.iter_mut() {
            // Whatever has been printed by now (nothing matches: this only reads).
            let _ = process.try_wait_for_json(Duration::from_millis(20), |_| false);
        }
        let held: usize = processes.iter().map(|p| logged(p, "identify.budget")).sum();
        ready() >= BUDGET as usize && held >= 2
    });
    assert_eq!(
        discord.records().identifies.len(),
        BUDGET as usize,
        "two IDENTIFYs in all: {:?}",
        discord.records().identifies.iter().collect::<Vec<_>>()
    );
    for process in &processes {
        // The buckets were busy at first: each shard was told, once.
        assert_eq!(
            logged(process, "identify.wait"),
            2,
            "{}",
            process.seen.join("\n")
        );
        for line in &process.seen {
            assert!(!line.contains(&url), "the Redis URL is not printed: {line}");
        }
    }
    let budget_line = processes
        .iter()
        .flat_map(|p| p.seen.iter())
        .find(|line| line.contains("\"identify.budget\""))
        .unwrap();
    let budget_line: serde_json::Value = serde_json::from_str(budget_line).unwrap();
    assert_eq!(budget_line["log"]["level"], "warn");
    assert!(
        budget_line["log"]["detail"]["waitMs"].as_u64().unwrap() > 3_600_000,
        "the refill is most of a day away: {budget_line}"
    );
    let left: Option<u32> = redis::cmd("HGET")
        .arg(format!("{prefix}:budget"))
        .arg("remaining")
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, Some(0), "the count in Redis is spent");
    let granted: u32 = redis::cmd("ZCARD")
        .arg(format!("{prefix}:budget:grants"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(granted, BUDGET, "each grant is remembered");
}
