//! The durable log in the flume and on the command line (issue 17): an upstream ack waits for
//! the item's commit in the log, and `openflume log tail` reads a log another process appends to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Running, Source};
use openflume_log::{EventId, EventLog, Filter, LogOptions, Record};
use openflume_proto::slack::SlackConfig;
use openflume_proto::{Event, Item, RawJson, ReconnectPolicy, UnixMillis};
use openflume_sim::SlackSim;
use openflume_tests::{
    acked_event_ids, block_on, block_on_until, inject_and_expect_no_ack, openflume_bin,
    patient_slack_sim,
};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn slack_flume() -> (SlackSim, Flume) {
    let slack = patient_slack_sim();
    let config = SlackConfig {
        api_base: slack.api_url(),
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 50,
            max_ms: 500,
        },
        ..SlackConfig::new(slack.app_token()).with_bot_token(slack.bot_token())
    };
    let flume = Flume::builder()
        .source(Source::slack(config))
        .start_timeout(Some(WAIT))
        .build();
    (slack, flume)
}

fn start_connected(flume: Flume) -> Running {
    let running = flume.start().expect("starts");
    block_on_until(Instant::now() + WAIT, running.started())
        .expect("in time")
        .expect("starts");
    running
}

/// The Slack `event_id`s of the events in the log.
fn logged_slack_events(log: &EventLog) -> HashSet<String> {
    log.read_after(EventId(0), usize::MAX, &Filter::default())
        .unwrap()
        .iter()
        .filter_map(|entry| {
            let item: serde_json::Value = serde_json::from_str(&entry.record.json).unwrap();
            item["event"]["meta"]["event_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// While the log's writer is held in front of its commit, the client has the envelopes but
/// Slack hears no ack; once the commits go through, every envelope is acked, and each acked one
/// is in the log.
#[test]
fn a_slack_envelope_is_acked_only_after_its_item_is_committed_to_the_log() {
    const ENVELOPES: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let (slack, flume) = slack_flume();
    let sink = flume.log_into(log.clone(), 64).unwrap();
    let running = start_connected(flume);
    // Let the sink append the start-up logs first, so that it is idle, not stuck in front of an
    // earlier commit, when the envelopes come: then only the ack's wait for the commit holds
    // the acks back.
    let deadline = Instant::now() + WAIT;
    while !log
        .read_after(EventId(0), usize::MAX, &Filter::default())
        .unwrap()
        .iter()
        .any(|entry| {
            entry.record.item_type == "status" && entry.record.json.contains(r#""to":"connected""#)
        })
    {
        assert!(
            Instant::now() < deadline,
            "the connected status never reached the log"
        );
        log.wait_committed_beyond(log.committed_id(), Duration::from_millis(100));
    }
    log.testing_hold_commits(true);
    inject_and_expect_no_ack(&slack, ENVELOPES, "the log's commits were held");
    assert!(logged_slack_events(&log).is_empty());

    log.testing_hold_commits(false);
    let acked = acked_event_ids(&slack, ENVELOPES);
    let logged = logged_slack_events(&log);
    for event_id in acked {
        assert!(
            logged.contains(&event_id),
            "{event_id} acked, not in the log"
        );
    }
    block_on(WAIT, "close", running.close());
    let appended = block_on(WAIT, "the sink ends", sink.finished()).unwrap();
    let total = log
        .read_after(EventId(0), usize::MAX, &Filter::default())
        .unwrap()
        .len();
    assert_eq!(appended, total as u64);
    assert!(logged.len() >= ENVELOPES as usize);
}

fn tick(source: &str, n: u64) -> Record {
    let data = RawJson::from_str(&format!(r#"{{"n":{n}}}"#)).unwrap();
    Record::from_item(&Item::Event(Event::new(
        source.to_owned(),
        "tick",
        data,
        UnixMillis(1_764_100_000_000),
    )))
}

fn tail(args: &[&str]) -> std::process::Output {
    Command::new(openflume_bin())
        .args(["log", "tail"])
        .args(args)
        .output()
        .unwrap()
}

fn json_lines(output: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn log_tail_prints_each_item_as_listen_does_with_its_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let records = vec![tick("time", 1), tick("slack", 2), tick("time", 3)];
    let expected: Vec<String> = records.iter().map(|r| r.json.clone()).collect();
    log.append(records, vec![]).unwrap().wait().unwrap();
    let data = dir.path().to_str().unwrap();

    let output = tail(&["--data", data]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (i, (line, json)) in lines.iter().zip(&expected).enumerate() {
        // The item's own bytes, with the id in front.
        let id = i + 1;
        assert_eq!(*line, format!("{{\"event_id\":{id},{}", &json[1..]));
    }
    let after = json_lines(&tail(&["--data", data, "--after", "1"]).stdout);
    assert_eq!(
        after
            .iter()
            .map(|v| v["event_id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3]
    );
    let slack = json_lines(&tail(&["--data", data, "--source", "slack"]).stdout);
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0]["event"]["source"], "slack");
    // The default data directory follows XDG_DATA_HOME.
    let xdg = tempfile::tempdir().unwrap();
    let data_dir = xdg.path().join("openflume");
    drop(EventLog::open(&data_dir, LogOptions::default()).unwrap());
    let output = Command::new(openflume_bin())
        .args(["log", "tail"])
        .env("XDG_DATA_HOME", xdg.path())
        .env_remove("OPENFLUME_DATA")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stdout.is_empty());
}

#[test]
fn log_tail_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = tail(&["--data", dir.path().to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no log at"),
        "{missing:?}"
    );
    let usage = tail(&["--data", dir.path().to_str().unwrap(), "--after", "x"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// `--follow` in its own process picks up what this process appends, while it appends.
#[test]
fn log_tail_follow_picks_up_appends_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    log.append(vec![tick("time", 1)], vec![])
        .unwrap()
        .wait()
        .unwrap();
    let mut child = Command::new(openflume_bin())
        .args(["log", "tail", "--follow", "--source", "time", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let next_line = || -> serde_json::Value {
        let left = deadline.saturating_duration_since(Instant::now());
        serde_json::from_str(&lines.recv_timeout(left).expect("a line in time")).unwrap()
    };
    assert_eq!(next_line()["event_id"], 1);
    // A batch with an item the filter skips, then more, in separate commits.
    log.append(vec![tick("slack", 2), tick("time", 3)], vec![])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next_line()["event_id"], 3);
    for n in 4..=6 {
        log.append(vec![tick("time", n)], vec![])
            .unwrap()
            .wait()
            .unwrap();
    }
    for n in 4..=6 {
        assert_eq!(next_line()["event_id"], n);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
