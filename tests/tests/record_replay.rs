//! Record and replay (issue 20), through the real binary: `openflume listen --record FILE`
//! against the simulators with faults (Discord op 7 and a zombie connection, Slack's
//! `refresh_requested`, a GitHub 502) and against the webhook ingress; `openflume replay FILE`
//! gives the live firehose again, item by item (timestamps aside); the recording holds none of
//! the distinctive secrets; `openflume sim --replay FILE` serves it to a live `listen`; a damaged
//! line or a newer format is refused by line number.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::sign_github;
use openflume_sim::{
    DisconnectReason, DiscordAction, DiscordSim, DiscordSimConfig, GithubAction, GithubSim,
    GithubSimConfig, HttpFault, SlackAction, SlackSim, SlackSimConfig,
};
use openflume_tests::serve::http_request;
use openflume_tests::{
    Openflume, Reader, block_on, is_event_json, is_log_json, is_status_json, listen, openflume_bin,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(15);

const DISCORD_TOKEN: &str = "discord-RECORD-token-Zx81qW";
const SLACK_APP_TOKEN: &str = "xapp-1-RECORD-app-token-7Qm2";
const SLACK_BOT_TOKEN: &str = "xoxb-RECORD-bot-token-4Lp9";
const GITHUB_TOKEN: &str = "ghp_RECORD_github_token_8Hv3";
const CUSTOM_SECRET: &str = "deploys-RECORD-secret-Jt52";
const GITHUB_WEBHOOK_SECRET: &str = "github-RECORD-webhook-Pw17";
const BEARER: &str = "bearer-RECORD-header-Vn64";
const CUSTOM_VAR: &str = "OPENFLUME_TEST_RECORD_DEPLOYS";

struct Sims {
    discord: DiscordSim,
    slack: SlackSim,
    github: GithubSim,
}

/// The three simulators, with distinctive tokens and short timers (a heartbeat every 500 ms,
/// a GitHub poll a second, a disconnect closed a second after it is announced).
fn start_sims() -> Sims {
    let discord = DiscordSimConfig {
        token: DISCORD_TOKEN.into(),
        heartbeat_interval: Duration::from_millis(500),
        identify_spacing: Duration::ZERO,
        ..DiscordSimConfig::default()
    };
    let slack = SlackSimConfig {
        app_token: SLACK_APP_TOKEN.into(),
        bot_token: SLACK_BOT_TOKEN.into(),
        disconnect_close_after: Duration::from_secs(1),
        ..SlackSimConfig::default()
    };
    let github = GithubSimConfig {
        token: GITHUB_TOKEN.into(),
        poll_interval: 1,
        ..GithubSimConfig::default()
    };
    block_on(WAIT, "start the simulators", async {
        Sims {
            discord: DiscordSim::start(discord).await.unwrap(),
            slack: SlackSim::start(slack).await.unwrap(),
            github: GithubSim::start(github).await.unwrap(),
        }
    })
}

fn sims_env(sims: &Sims) -> Vec<(&'static str, String)> {
    vec![
        ("DISCORD_BOT_TOKEN", DISCORD_TOKEN.to_owned()),
        ("OPENFLUME_DISCORD_API_URL", sims.discord.api_url()),
        ("SLACK_APP_TOKEN", SLACK_APP_TOKEN.to_owned()),
        ("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN.to_owned()),
        ("OPENFLUME_SLACK_API_URL", sims.slack.api_url()),
        ("GITHUB_TOKEN", GITHUB_TOKEN.to_owned()),
        ("OPENFLUME_GITHUB_API_URL", sims.github.api_url()),
    ]
}

/// Reads lines until `count` of them satisfy `pred`.
fn wait_count(cli: &mut Openflume, count: usize, pred: impl Fn(&Value) -> bool) {
    let mut seen = 0;
    cli.wait_for_json(WAIT, |line| {
        if pred(line) {
            seen += 1;
        }
        seen >= count
    });
}

fn message(line: &Value) -> bool {
    is_event_json(line, "discord", "MESSAGE_CREATE")
}

/// Records a session with every fault into `path` (with `extra` flags) and returns the lines
/// the live `listen` printed.
fn record_faulty_session(path: &Path, extra: &[&str]) -> Vec<String> {
    let sims = start_sims();
    let record = path.to_str().unwrap();
    let args: Vec<&str> = ["--log-level", "debug", "--github-interval", "1"]
        .into_iter()
        .chain(["--github-bootstrap", "emit", "--record", record])
        .chain(extra.iter().copied())
        .collect();
    let mut cli = listen(&args, &sims_env(&sims), Reader::Eager);
    let mut connected = Vec::new();
    cli.wait_for_json(WAIT, |line| {
        for source in ["discord", "slack", "github"] {
            if is_status_json(line, source, "connected") && !connected.contains(&source) {
                connected.push(source);
            }
        }
        connected.len() == 3
    });

    // Discord: messages, op 7 (a resume), then a zombie connection (a resume again).
    sims.discord.inject(DiscordAction::Messages(2));
    wait_count(&mut cli, 2, message);
    sims.discord.inject(DiscordAction::Reconnect);
    cli.wait_for_json(WAIT, |line| is_log_json(line, "discord", "gateway.resumed"));
    sims.discord.inject(DiscordAction::Messages(1));
    wait_count(&mut cli, 1, message);
    assert_eq!(sims.discord.inject(DiscordAction::StopHeartbeatAcks), 1);
    cli.wait_for_json(WAIT, |line| {
        is_log_json(line, "discord", "heartbeat.zombie")
    });
    cli.wait_for_json(WAIT, |line| is_log_json(line, "discord", "gateway.resumed"));
    sims.discord.inject(DiscordAction::Messages(2));
    wait_count(&mut cli, 2, message);

    // Slack: envelopes, a refresh_requested rotation, envelopes on the new connection.
    sims.slack.inject(SlackAction::Messages(2));
    wait_count(&mut cli, 2, |line| {
        is_event_json(line, "slack", "events_api")
    });
    sims.slack
        .inject(SlackAction::Disconnect(DisconnectReason::RefreshRequested));
    cli.wait_for_json(WAIT, |line| is_log_json(line, "slack", "ws.rotated"));
    sims.slack.inject(SlackAction::SlashCommand);
    cli.wait_for_json(WAIT, |line| is_event_json(line, "slack", "slash_commands"));

    // GitHub: a notification, a 502 (reconnecting), then recovery with another one.
    sims.github.inject(GithubAction::Notifications(1));
    cli.wait_for_json(WAIT, |line| is_event_json(line, "github", "notification"));
    sims.github.inject(GithubAction::Http {
        fault: HttpFault::Status {
            status: 502,
            retry_after: None,
        },
        times: 1,
    });
    cli.wait_for_json(WAIT, |line| is_status_json(line, "github", "reconnecting"));
    sims.github.inject(GithubAction::Notifications(1));
    cli.wait_for_json(WAIT, |line| is_event_json(line, "github", "notification"));

    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert!(status.success(), "listen failed: {stderr}");
    assert!(
        stderr.contains("recorded 3 source(s)"),
        "no recording summary: {stderr}"
    );
    lines
}

/// `openflume replay FILE --format json` with `args` and `env`: its stdout lines.
fn replay(path: &Path, args: &[&str], env: &[(&str, String)]) -> Vec<String> {
    let file = path.to_str().unwrap();
    let all: Vec<&str> = ["replay", file, "--format", "json"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let mut cli = Openflume::spawn(&all, env);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert!(status.success(), "replay failed: {stderr}");
    lines
}

/// Each source's items as they compare between a live run and its replay: timestamps out, and
/// without the logs the drivers add themselves (not machine outputs, so not replayed).
fn comparable(lines: &[String]) -> BTreeMap<String, Vec<Value>> {
    let mut by_source: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in lines {
        let mut item: Value = serde_json::from_str(line).unwrap();
        let source = match item["kind"].as_str() {
            Some("event") => {
                item["event"].as_object_mut().unwrap().remove("receivedAt");
                // Slack's legacy verification token is redacted in the recording, so the
                // replay shows `REDACTED` where the live run showed it.
                if let Some(token) = item["event"]["data"].get_mut("token")
                    && token.is_string()
                {
                    *token = serde_json::Value::from("(verification token)");
                }
                item["event"]["source"].as_str().unwrap().to_owned()
            }
            _ => {
                let action = item["log"]["action"].as_str().unwrap_or_default();
                if action.starts_with("driver.")
                    || action.starts_with("record.")
                    || action == "listening"
                {
                    continue;
                }
                item["log"].as_object_mut().unwrap().remove("timestamp");
                item["log"]["source"].as_str().unwrap().to_owned()
            }
        };
        by_source.entry(source).or_default().push(item);
    }
    by_source
}

/// The live and replayed firehoses are the same, source by source, item by item.
fn assert_same_firehose(live: &[String], replayed: &[String]) {
    let (live, replayed) = (comparable(live), comparable(replayed));
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        replayed.keys().collect::<Vec<_>>(),
        "the same sources"
    );
    for (source, items) in &live {
        let again = &replayed[source];
        for (i, (a, b)) in items.iter().zip(again).enumerate() {
            assert_eq!(a, b, "{source}: item {i} differs");
        }
        assert_eq!(items.len(), again.len(), "{source}: as many items");
    }
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "the recording holds {secret}");
    }
}

#[test]
fn a_faulty_session_replays_item_for_item_and_records_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.jsonl");
    let live = record_faulty_session(&path, &[]);
    let live_text = live.join("\n");
    // The faults happened.
    for fault in ["heartbeat.zombie", "ws.rotated", "HTTP 502"] {
        assert!(live_text.contains(fault), "no {fault} in the live run");
    }

    let replayed = replay(&path, &["--log-level", "debug"], &[]);
    assert_same_firehose(&live, &replayed);

    let recording = std::fs::read_to_string(&path).unwrap();
    assert_no_secret(
        &recording,
        &[
            DISCORD_TOKEN,
            SLACK_APP_TOKEN,
            SLACK_BOT_TOKEN,
            GITHUB_TOKEN,
            // The Slack simulator's legacy verification token, in every envelope's payload.
            "simulatedverificationtoken",
        ],
    );
    assert!(recording.contains("${DISCORD_BOT_TOKEN}"), "a placeholder");
    let tickets: Vec<&str> = recording.split("ticket=").skip(1).collect();
    assert!(tickets.len() >= 2, "the Slack URLs are in the recording");
    assert!(tickets.iter().all(|rest| rest.starts_with("REDACTED")));
    // No spool is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn dropped_contents_keep_the_structure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.jsonl");
    let live = record_faulty_session(&path, &["--record-drop-content"]);
    let replayed = replay(&path, &["--log-level", "debug"], &[]);
    let (live, replayed) = (comparable(&live), comparable(&replayed));
    let recording = std::fs::read_to_string(&path).unwrap();
    for source in ["discord", "slack", "github"] {
        let events = |items: &[Value]| -> Vec<Value> {
            items
                .iter()
                .filter(|item| item["kind"] == "event")
                .map(|item| item["event"].clone())
                .collect()
        };
        let (before, after) = (events(&live[source]), events(&replayed[source]));
        assert_eq!(before.len(), after.len(), "{source}: every event replays");
        for (before, after) in before.iter().zip(&after) {
            assert_eq!(before["type"], after["type"]);
            let (text, emptied) = match source {
                // Inside zlib-stream in the file: the replay shows it was emptied.
                "discord" => (&before["data"]["content"], &after["data"]["content"]),
                "slack" => (
                    &before["data"]["event"]["text"],
                    &after["data"]["event"]["text"],
                ),
                _ => (
                    &before["data"]["subject"]["title"],
                    &after["data"]["subject"]["title"],
                ),
            };
            assert_eq!(
                before["data"]["id"], after["data"]["id"],
                "the structure is kept"
            );
            if let Some(text) = text.as_str().filter(|t| !t.is_empty()) {
                assert_eq!(emptied, "", "{source}: {text:?} was dropped");
                if source != "discord" {
                    assert!(
                        !recording.contains(text),
                        "{source}: {text:?} is in the file"
                    );
                }
            }
        }
    }
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sim_replay_serves_a_recording_to_a_live_listen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.jsonl");
    let recorded = record_faulty_session(&path, &[]);

    let mut sim = Killed(
        Command::new(openflume_bin())
            .args(["sim", "--replay", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut env = Vec::new();
    for line in BufReader::new(sim.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((name, value)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            env.push((name.to_owned(), value.to_owned()));
        }
        if line.starts_with("# Serving") {
            break;
        }
    }
    let env: Vec<(&str, String)> = env.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    assert!(
        env.iter()
            .any(|(name, _)| *name == "OPENFLUME_DISCORD_GATEWAY_URL")
            || env
                .iter()
                .any(|(name, _)| *name == "OPENFLUME_DISCORD_API_URL")
    );

    // The events the live run printed, by identity: what the replayed service must give again.
    let identity = |line: &Value| -> Option<(String, String, String)> {
        let event = line.get("event")?;
        let data = &event["data"];
        let id = [&data["id"], &data["event_id"], &data["trigger_id"]]
            .into_iter()
            .find(|v| !v.is_null())
            .map(Value::to_string)
            .unwrap_or_default();
        Some((
            event["source"].as_str()?.to_owned(),
            event["type"].as_str()?.to_owned(),
            id,
        ))
    };
    let expected: Vec<(String, String, String)> = recorded
        .iter()
        .filter_map(|line| identity(&serde_json::from_str(line).unwrap()))
        .filter(|(_, kind, _)| kind != "READY")
        .collect();

    let mut cli = listen(&["--log-level", "debug"], &env, Reader::Eager);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut got: Vec<(String, String, String)> = Vec::new();
    let mut missing = expected.clone();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = cli
            .try_wait_for_json(left, |line| line["kind"] == "event")
            .unwrap_or_else(|why| panic!("still missing {missing:?}: {why}"));
        if let Some(event) = identity(&line) {
            missing.retain(|e| *e != event);
            got.push(event);
        }
    }
    // The faults came back with the traffic: the live client saw them again, by itself.
    let seen: Vec<Value> = cli
        .seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (source, action) in [
        ("discord", "ws.reconnect.requested"),
        ("discord", "heartbeat.zombie"),
        ("slack", "ws.rotated"),
    ] {
        assert!(
            seen.iter().any(|line| is_log_json(line, source, action)),
            "{source}: no {action} against the replay"
        );
    }
    assert!(
        seen.iter()
            .any(|line| is_status_json(line, "github", "reconnecting"))
    );
    cli.terminate();
    let _ = cli.wait_exit(WAIT);
    drop(sim);
    // Each source's events in the recorded order.
    for source in ["discord", "slack", "github"] {
        let of = |events: &[(String, String, String)]| -> Vec<(String, String, String)> {
            events
                .iter()
                .filter(|(s, kind, _)| s == source && kind != "READY")
                .cloned()
                .collect()
        };
        assert_eq!(
            of(&got),
            of(&expected),
            "{source}: the recorded events, in order"
        );
    }
}

/// The webhook ingress with a custom sender (and GitHub) recorded and replayed: with the
/// secrets given back from the environment, the same events and rejections; without them,
/// refused naming the secret.
#[test]
fn a_webhook_ingress_recording_replays_with_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.jsonl");
    let env = vec![
        (CUSTOM_VAR, CUSTOM_SECRET.to_owned()),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_WEBHOOK_SECRET.to_owned()),
    ];
    let webhook = format!("deploys={CUSTOM_VAR}");
    let mut cli = listen(
        &[
            "--http",
            "127.0.0.1:0",
            "--webhook",
            &webhook,
            "--record",
            path.to_str().unwrap(),
            "--log-level",
            "debug",
        ],
        &env,
        Reader::Eager,
    );
    let line = cli.wait_for_json(WAIT, |line| is_log_json(line, "webhooks", "listening"));
    let addr = line["log"]["message"]
        .as_str()
        .unwrap()
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();

    let auth = format!("Bearer {BEARER}");
    for n in 0..3 {
        let body = format!(r#"{{"deploy":{n},"service":"api"}}"#);
        let signature = sign_github(CUSTOM_SECRET.as_bytes(), body.as_bytes());
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", auth.as_str()),
            ("X-Signature-256", signature.as_str()),
        ];
        let answer = http_request(
            addr,
            "POST",
            "/channels/custom/deploys",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let body = r#"{"action":"opened","issue":{"number":7},"repository":{"full_name":"octo/app"}}"#;
    let signature = sign_github(GITHUB_WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "d-record-1"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let answer = http_request(
        addr,
        "POST",
        "/channels/github/webhook",
        &headers,
        body.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // A forged one: refused live, refused again in the replay.
    let forged = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", "sha256=00"),
    ];
    let answer = http_request(addr, "POST", "/channels/custom/deploys", &forged, b"{}");
    assert_eq!(answer.status, 401, "{answer:?}");
    wait_count(&mut cli, 3, |line| is_event_json(line, "custom", "deploys"));
    cli.wait_for_json(WAIT, |line| is_event_json(line, "github", "issues"));
    cli.terminate();
    let (status, live, stderr) = cli.wait_exit(WAIT);
    assert!(status.success(), "{stderr}");

    let recording = std::fs::read_to_string(&path).unwrap();
    assert_no_secret(&recording, &[CUSTOM_SECRET, GITHUB_WEBHOOK_SECRET, BEARER]);
    assert!(recording.contains("${webhook:deploys}"));

    let replayed = replay(
        &path,
        &["--log-level", "debug", "--webhook", &webhook],
        &env,
    );
    assert_same_firehose(&live, &replayed);
    let events = replayed
        .iter()
        .filter(|l| l.contains(r#""kind":"event""#))
        .count();
    assert_eq!(events, 4);

    // Without the custom sender's secret: refused, naming it.
    let mut refused = Openflume::spawn(
        &["replay", path.to_str().unwrap()],
        &[("GITHUB_WEBHOOK_SECRET", GITHUB_WEBHOOK_SECRET.to_owned())],
    );
    let (status, _, stderr) = refused.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("webhook:deploys"), "{stderr}");
    assert!(stderr.contains("--webhook NAME=ENV_VAR"), "{stderr}");

    // `--webhook` naming a variable that is not set: a usage error naming it.
    let mut unset = Openflume::spawn(
        &[
            "replay",
            path.to_str().unwrap(),
            "--webhook",
            "deploys=OPENFLUME_TEST_UNSET_SECRET",
        ],
        &[("GITHUB_WEBHOOK_SECRET", GITHUB_WEBHOOK_SECRET.to_owned())],
    );
    let (status, _, stderr) = unset.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--webhook: the environment variable OPENFLUME_TEST_UNSET_SECRET (the secret of deploys) is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn damaged_lines_and_newer_formats_are_refused_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"format":1,"source":"time","machine":"cron","config":{"expression":"@daily","zone":"UTC"},"auto_confirm":false,"recorded_timers":true}"#;
    let cases = [
        (
            format!("{header}\n{{\"at\":0,\"input\":\"start\"}}\n{{\"at\":5,\"input\":{{\"fra\n"),
            "recording line 3:",
        ),
        (
            format!(
                "// a comment\n{}\n",
                header.replace("\"format\":1", "\"format\":2")
            ),
            "recording line 2: format 2 is newer",
        ),
        (
            format!(
                "{header}\n{{\"at\":0,\"input\":\"start\"}}\n{}\n",
                header.replace("\"format\":1", "\"format\":7")
            ),
            "recording line 3: format 7 is newer",
        ),
        (
            format!(
                "{header}\n{{\"at\":9,\"input\":\"start\"}}\n{{\"at\":3,\"input\":\"timer\"}}\n"
            ),
            "recording line 3: time goes backwards",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.jsonl"));
        std::fs::write(&path, text).unwrap();
        let mut cli = Openflume::spawn(&["replay", path.to_str().unwrap()], &[]);
        let (status, lines, stderr) = cli.wait_exit(WAIT);
        assert_eq!(status.code(), Some(1), "case {i}: {stderr}");
        assert!(lines.is_empty(), "case {i}: nothing printed");
        assert!(stderr.contains(expected), "case {i}: {stderr}");
    }
}
