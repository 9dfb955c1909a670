//! Restart without loss or duplicates (issue 17), through the real binary: `openflume serve`
//! killed with SIGKILL in the middle of a burst from the Discord, Slack and GitHub simulators,
//! then started again on the same data directory. The log must hold every event exactly once:
//! Discord resumes its session (and Discord replays what came after the stored `seq`), Slack
//! redelivers what was not acked and it is logged once, GitHub's notifications that came while
//! the process was down are emitted. And `listen --data` starts from the same cursors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::{EventLog, LogOptions, LogReader, Record};
use openflume_sim::{
    DiscordAction, DiscordSim, DiscordSimConfig, GithubSim, GithubSimConfig, SlackAction, SlackSim,
    SlackSimConfig,
};
use openflume_tests::serve::Serve;
use openflume_tests::{
    block_on, discord_sim, is_event_json, is_status_json, logged, openflume_bin,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The three simulators, quiet until told.
struct Sims {
    discord: DiscordSim,
    slack: SlackSim,
    github: GithubSim,
}

impl Sims {
    fn start() -> Sims {
        let discord = discord_sim(DiscordSimConfig::default());
        let slack = block_on(
            Duration::from_secs(10),
            "start the Slack simulator",
            SlackSim::start(SlackSimConfig {
                ack_deadline: Duration::from_secs(2),
                max_retries: 10,
                ..SlackSimConfig::default()
            }),
        )
        .unwrap();
        let github = block_on(
            Duration::from_secs(10),
            "start the GitHub simulator",
            GithubSim::start(GithubSimConfig {
                poll_interval: 1,
                ..GithubSimConfig::default()
            }),
        )
        .unwrap();
        Sims {
            discord,
            slack,
            github,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISCORD_BOT_TOKEN", self.discord.token().to_owned()),
            ("OPENFLUME_DISCORD_API_URL", self.discord.api_url()),
            ("SLACK_APP_TOKEN", self.slack.app_token().to_owned()),
            ("OPENFLUME_SLACK_API_URL", self.slack.api_url()),
            ("GITHUB_TOKEN", self.github.token().to_owned()),
            ("OPENFLUME_GITHUB_API_URL", self.github.api_url()),
            ("OPENFLUME_GITHUB_INTERVAL", "1".to_owned()),
            ("OPENFLUME_RECONNECT_BASE_MS", "250".to_owned()),
            ("OPENFLUME_RECONNECT_MAX_MS", "500".to_owned()),
        ]
    }
}

/// `openflume serve` on a free port with `dir` as its data directory, pointed at `sims`.
fn serve(dir: &Path, sims: &Sims) -> Serve {
    let env = sims.env();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    Serve::spawn_in(dir, &[], &env)
}

fn item(record: &Record) -> serde_json::Value {
    serde_json::from_str(&record.json).unwrap()
}

/// The logged events of `source` and `event_type`, by a key of their data, each with how many
/// times it was logged.
fn counts(records: &[Record], source: &str, event_type: &str, key: &str) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for record in records {
        let item = item(record);
        if is_event_json(&item, source, event_type) {
            let id = item["event"]
                .pointer(key)
                .map(|v| v.to_string())
                .unwrap_or_default();
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_status(records: &[Record], source: &str, to: &str) -> bool {
    records
        .iter()
        .any(|record| is_status_json(&item(record), source, to))
}

#[test]
fn serve_killed_mid_burst_restarts_without_loss_or_duplicates() {
    let sims = Sims::start();
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path(), &sims);
    wait_until("every source is connected", || {
        let records = logged(dir.path());
        ["discord", "slack", "github"]
            .iter()
            .all(|source| has_status(&records, source, "connected"))
    });
    let bootstrap_threads: HashSet<String> =
        sims.github.threads().into_iter().map(|t| t.id).collect();

    // The burst, and a kill in its middle.
    sims.discord.inject(DiscordAction::Messages(3_000));
    sims.slack.inject(SlackAction::Messages(300));
    let news_before: Vec<String> = (0..3).map(|_| sims.github.add_notification()).collect();
    wait_until("part of the burst is logged", || {
        let records = logged(dir.path());
        counts(&records, "discord", "MESSAGE_CREATE", "/data/id").len() >= 300
    });
    first.kill();
    let at_kill = logged(dir.path());
    let discord_at_kill = counts(&at_kill, "discord", "MESSAGE_CREATE", "/data/id").len();
    assert!(
        discord_at_kill < 3_000,
        "killed before the burst was all logged (got {discord_at_kill})"
    );

    // While it is down: Discord buffers dispatches for the session, GitHub gets news.
    sims.discord.inject(DiscordAction::Messages(200));
    let news_while_down: Vec<String> = (0..2).map(|_| sims.github.add_notification()).collect();

    let mut second = serve(dir.path(), &sims);
    wait_until("everything is logged after the restart", || {
        let records = logged(dir.path());
        let discord = counts(&records, "discord", "MESSAGE_CREATE", "/data/id");
        let slack = counts(&records, "slack", "events_api", "/meta/event_id");
        let github = counts(&records, "github", "notification", "/data/id");
        discord.len() == 3_200
            && slack.len() == 300
            && news_before
                .iter()
                .chain(&news_while_down)
                .all(|id| github.contains_key(&format!("\"{id}\"")))
    });
    // Slack's last redeliveries are acked, not emitted again.
    wait_until("every Slack envelope is acked", || {
        sims.slack.records().unacked().is_empty()
    });
    second.kill();

    let records = logged(dir.path());
    for (source, event_type, key, expected) in [
        ("discord", "MESSAGE_CREATE", "/data/id", 3_200),
        ("slack", "events_api", "/meta/event_id", 300),
    ] {
        let counts = counts(&records, source, event_type, key);
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "{source} logged twice: {repeated:?}");
        assert_eq!(counts.len(), expected, "{source}: every event once");
    }
    let github = counts(&records, "github", "notification", "/data/id");
    assert!(
        github.values().all(|n| *n == 1),
        "GitHub logged twice: {github:?}"
    );
    for id in &bootstrap_threads {
        assert!(
            !github.contains_key(&format!("\"{id}\"")),
            "bootstrap-skip applies to the first start only: {id} was there before"
        );
    }

    // Discord resumed the session instead of identifying again.
    openflume_tests::assert_one_session_resumed(&sims.discord, "the restart");
}

#[test]
fn a_restart_catches_up_on_the_cron_fire_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    // An earlier run fired `* * * * *` three minutes ago and stopped.
    let three_minutes_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3 * 60_000;
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let cursor = openflume_log::Cursor {
        source: "time".into(),
        value: serde_json::json!({"cron": {"last_fire": {"tick * * * * *": three_minutes_ago}}}),
    };
    log.append(Vec::new(), vec![cursor])
        .unwrap()
        .wait()
        .unwrap();
    log.close();

    let output = Command::new(openflume_bin())
        .args(["listen", "--format", "json", "--count", "1", "--data"])
        .arg(dir.path())
        .args(["--cron", "* * * * *", "--tz", "UTC"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let catch_up = lines
        .iter()
        .find(|l| openflume_tests::is_log_json(l, "time", "tick.catch_up"))
        .expect("the catch-up is logged");
    assert!(catch_up["log"]["detail"]["missed"].as_u64().unwrap() >= 2);
    let tick = lines
        .iter()
        .find(|l| is_event_json(l, "time", "tick"))
        .unwrap();
    assert_eq!(tick["event"]["meta"]["catch_up"], "true", "{tick}");

    // The catch-up's fire is stored: the next start has nothing left to catch up on.
    let stored = LogReader::open(dir.path())
        .unwrap()
        .cursor("time")
        .unwrap()
        .unwrap();
    let last_fire = stored["cron"]["last_fire"]["tick * * * * *"]
        .as_i64()
        .unwrap();
    assert!(last_fire > three_minutes_ago);
}

#[test]
fn sigterm_keeps_the_discord_session_for_the_next_start() {
    let discord = discord_sim(DiscordSimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let (token, api) = (discord.token().to_owned(), discord.api_url());
    let env = [
        ("DISCORD_BOT_TOKEN", token.as_str()),
        ("OPENFLUME_DISCORD_API_URL", api.as_str()),
    ];
    let start = || Serve::spawn_in(dir.path(), &[], &env);
    let messages = || counts(&logged(dir.path()), "discord", "MESSAGE_CREATE", "/data/id");
    let mut first = start();
    wait_until("Discord is connected", || {
        has_status(&logged(dir.path()), "discord", "connected")
    });
    discord.inject(DiscordAction::Messages(10));
    wait_until("the messages are logged", || messages().len() == 10);
    first.signal(openflume_tests::Signal::TERM);
    assert!(first.wait_exit(WAIT).success());
    let closes = discord.records().client_closes;
    assert!(
        closes.iter().all(|close| close.code != Some(1000)),
        "a close code that keeps the session: {:?}",
        closes.iter().collect::<Vec<_>>()
    );

    discord.inject(DiscordAction::Messages(5));
    let mut second = start();
    wait_until("the messages sent while stopped are logged", || {
        messages().len() == 15
    });
    second.kill();
    assert!(messages().values().all(|n| *n == 1));
    let records = discord.records();
    assert_eq!(records.sessions().len(), 1, "no new IDENTIFY");
    assert!(records.resumes.iter().any(|resume| matches!(
        resume.outcome,
        openflume_sim::ResumeOutcome::Resumed { replayed: 5 }
    )));
}

#[test]
fn listen_with_data_resumes_discord_after_a_sigterm() {
    use openflume_tests::{Reader, discord_env, listen};
    let discord = discord_sim(DiscordSimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let env = discord_env(&discord);
    let is_message = |line: &serde_json::Value| is_event_json(line, "discord", "MESSAGE_CREATE");

    let mut first = listen(&["--data", &data], &env, Reader::Eager);
    first.wait_for_json(WAIT, |line| is_status_json(line, "discord", "connected"));
    discord.inject(DiscordAction::Messages(10));
    let mut seen = 0;
    first.wait_for_json(WAIT, |line| {
        seen += u32::from(is_message(line));
        seen == 10
    });
    first.terminate();
    let (status, _, _) = first.wait_exit(WAIT);
    assert!(status.success());

    discord.inject(DiscordAction::Messages(5));
    let mut second = listen(&["--data", &data], &env, Reader::Eager);
    let mut replayed = 0;
    second.wait_for_json(WAIT, |line| {
        replayed += u32::from(is_message(line));
        replayed == 5
    });
    second.terminate();
    let (_, printed, _) = second.wait_exit(WAIT);
    let messages = printed
        .iter()
        .filter(|line| is_message(&serde_json::from_str(line).unwrap()))
        .count();
    assert_eq!(messages, 5, "the first ten are not printed again");
    assert_eq!(
        discord.records().sessions().len(),
        1,
        "resumed, not identified"
    );
}

/// `openflume serve` on `dir` with only the GitHub webhook channel.
fn serve_github_webhooks(dir: &Path, secret: &str) -> Serve {
    Serve::spawn_in(dir, &[], &[("GITHUB_WEBHOOK_SECRET", secret)])
}

/// Posts a signed GitHub `push` delivery; returns the status code.
fn post_delivery(addr: std::net::SocketAddr, secret: &str, delivery: &str) -> u16 {
    use std::io::{Read, Write};
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"octo/app"}}"#;
    let signature = openflume_proto::webhook::sign_github(secret.as_bytes(), body);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /channels/github/webhook HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_webhook_redelivered_after_a_kill_is_logged_once() {
    const SECRET: &str = "restart-webhook-test-secret";
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve_github_webhooks(dir.path(), SECRET);
    assert_eq!(post_delivery(first.addr, SECRET, "delivery-1"), 200);
    // Killed before the sender saw its 200 (as the sender sees it: it retries).
    first.kill();

    let mut second = serve_github_webhooks(dir.path(), SECRET);
    assert_eq!(
        post_delivery(second.addr, SECRET, "delivery-1"),
        200,
        "answered"
    );
    assert_eq!(post_delivery(second.addr, SECRET, "delivery-2"), 200);
    second.kill();
    let pushes = counts(&logged(dir.path()), "github", "push", "/meta/delivery_id");
    assert_eq!(
        pushes,
        HashMap::from([
            ("\"delivery-1\"".to_owned(), 1),
            ("\"delivery-2\"".to_owned(), 1)
        ])
    );
}
