//! Soak test (not run in CI): the three simulators at a steady rate with a random fault every
//! few seconds, listened to through the library for `SOAK_MINUTES` minutes (default 10).
//! Every 30 s and at the end it prints what the simulators sent against what the firehose
//! delivered, duplicates, and the RSS of this process, which holds openflume alone: the
//! simulators run in a child process (this example, re-executed), driven over its stdin.
//!
//! `cargo run --release -p openflume --example soak` (`SOAK_MINUTES=1` for a short run).

// A soak run aborts on setup failures: a panic with the cause is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_lite::AsyncBufReadExt;
use openflume::{Flume, Overflow, Source};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::{Item, ReconnectPolicy};
use openflume_sim::{
    AllSimConfig, DisconnectReason, DiscordAction, GithubAction, HttpFault, Scenario, SlackAction,
    SocketFault,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "OPENFLUME_SOAK_ROLE";

#[derive(Default)]
struct Tally {
    /// Key → times delivered.
    seen: HashMap<String, u32>,
}

impl Tally {
    fn add(&mut self, key: String) {
        *self.seen.entry(key).or_default() += 1;
    }
    fn unique(&self) -> usize {
        self.seen.len()
    }
    fn duplicates(&self) -> u32 {
        self.seen.values().map(|n| n - 1).sum()
    }
}

/// What the firehose delivered, per source, keyed by what identifies an event upstream.
#[derive(Default)]
struct Seen {
    discord: Tally,
    slack: Tally,
    github: Tally,
}

impl Seen {
    fn record(&mut self, event: &openflume_proto::Event) {
        let data = event.data.parse().unwrap_or_default();
        match event.source.as_ref() {
            "discord" if event.event_type == "MESSAGE_CREATE" => self
                .discord
                .add(data["id"].as_str().unwrap_or_default().to_owned()),
            "slack" => self
                .slack
                .add(event.meta.get("event_id").cloned().unwrap_or_default()),
            "github" => self
                .github
                .add(format!("{}@{}", data["id"], data["updated_at"])),
            _ => {}
        }
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("sims") {
        return run_simulators();
    }
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut sims = Simulators::spawn();
    let urls = sims.urls.clone();
    let text = |key: &str| urls[key].as_str().unwrap_or_default().to_owned();
    smol::block_on(async {
        let reconnect = ReconnectPolicy {
            max_attempts: None,
            base_ms: 100,
            max_ms: 2000,
        };
        let mut discord = DiscordConfig::new(text("discord_token"));
        discord.gateway_url = Some(text("discord_gateway"));
        discord.reconnect = reconnect;
        let mut slack = SlackConfig::new(text("slack_token"));
        slack.api_base = text("slack_api");
        slack.ping_interval_ms = 2000;
        slack.reconnect = reconnect;
        let github = GithubConfig {
            api_url: text("github_api"),
            interval_ms: 1000,
            bootstrap: Bootstrap::Emit,
            reconnect: ReconnectPolicy {
                max_attempts: None,
                base_ms: 500,
                max_ms: 5000,
            },
            ..GithubConfig::new(text("github_token"))
        };
        let running = Flume::builder()
            .source(Source::custom("discord", move |seed| {
                DiscordShard::new(discord, seed)
            }))
            .source(Source::custom("slack", move |seed| {
                SlackMachine::new(slack, seed)
            }))
            .source(Source::custom("github", move |seed| {
                GithubMachine::new(github, seed)
            }))
            .min_log_level(openflume_proto::Level::Warn)
            .build()
            .open()
            .await
            .expect("open");
        // The buffer `openflume listen` uses: nothing dropped, memory bounded.
        let mut stream = running.stream(128, Overflow::Backpressure);

        let mut seen = Seen::default();
        let mut rng = fastrand::Rng::with_seed(0x50a4);
        let start = Instant::now();
        let end = start + Duration::from_secs(minutes * 60);
        let mut next_fault = start + Duration::from_secs(3);
        let mut next_report = start + Duration::from_secs(30);
        let mut faults = 0;
        println!(
            "soak: {minutes} min, a random fault every 2-6 s; simulators in process {}",
            sims.pid
        );
        while Instant::now() < end {
            let timeout = smol::Timer::at(next_fault.min(next_report));
            let item = futures_lite::future::or(async { stream.next().await }, async {
                timeout.await;
                None
            })
            .await;
            if let Some(Item::Event(event)) = item {
                seen.record(&event);
            }
            let now = Instant::now();
            if now >= next_fault {
                faults += 1;
                sims.ask(&format!("fault {}", rng.u8(0..11)));
                next_fault = now + Duration::from_millis(rng.u64(2000..6000));
            }
            if now >= next_report {
                report(&format!("{}s", start.elapsed().as_secs()), &seen, &mut sims);
                next_report = now + Duration::from_secs(30);
            }
        }
        // The final count: what the simulators had sent at one moment (they keep sending), then
        // 5 s for all of that to arrive.
        let sent = sims.ask(&delivered_command(&seen));
        let settle = Instant::now() + Duration::from_secs(5);
        while let Some(Some(Item::Event(event))) =
            futures_lite::future::or(async { Some(stream.next().await) }, async {
                smol::Timer::at(settle).await;
                None
            })
            .await
        {
            seen.record(&event);
        }
        print_line("final*", &seen, &sent);
        println!(
            "* sent: by the snapshot taken before the last 5 s; got: all delivered by their end"
        );
        println!("faults injected: {faults}");
        // Every Slack event sent and still not delivered, with what the simulator did with it:
        // given up after its retries (as Slack does) is Slack's loss; acked but never delivered
        // would be ours.
        for missing in sent["slack_missing"].as_array().into_iter().flatten() {
            let id = missing["event_id"].as_str().unwrap_or_default();
            if !seen.slack.seen.contains_key(id) {
                println!("slack event not delivered: {missing}");
            }
        }
        drop(stream);
        running.close().await;
    });
    sims.stop();
}

/// Prints one line of sent against delivered.
fn report(label: &str, seen: &Seen, sims: &mut Simulators) {
    let sent = sims.ask(&delivered_command(seen));
    print_line(label, seen, &sent);
}

/// Asks the simulators what they sent, and which Slack events are not among those delivered.
fn delivered_command(seen: &Seen) -> String {
    let delivered: Vec<&String> = seen.slack.seen.keys().collect();
    format!("report {}", json!(delivered))
}

fn print_line(label: &str, seen: &Seen, sent: &Value) {
    let (d, s, g) = (&seen.discord, &seen.slack, &seen.github);
    println!(
        "{label:>7} | discord sent {:>6} got {:>6} dup {:>3} | slack sent {:>5} got {:>5} dup {:>3} | github threads {:>4} got {:>4} dup {:>3} | RSS {:>5.1} MB (simulators {:>5.1} MB)",
        sent["discord"],
        d.unique(),
        d.duplicates(),
        sent["slack"],
        s.unique(),
        s.duplicates(),
        sent["github"],
        g.unique(),
        g.duplicates(),
        rss_mb(),
        sent["rss_mb"].as_f64().unwrap_or_default(),
    );
}

/// The simulators' process, driven a line at a time.
struct Simulators {
    child: Child,
    pid: u32,
    urls: Value,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Simulators {
    fn spawn() -> Simulators {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(ROLE, "sims")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the simulators");
        let mut sims = Simulators {
            pid: child.id(),
            urls: Value::Null,
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
        };
        sims.urls = sims.read();
        sims
    }

    /// Closes the command pipe, which stops the simulators, and waits for them.
    fn stop(self) {
        let Simulators {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        child.wait().expect("simulators exit");
    }

    /// Sends one command and reads the answer.
    fn ask(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("command the simulators");
        self.read()
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("simulators answer");
        serde_json::from_str(&line).expect("simulators answer JSON")
    }
}

/// The child: starts the simulators, prints their URLs and tokens, then answers commands on
/// stdin (`fault N`, `report [delivered Slack event ids]`) until stdin closes.
fn run_simulators() {
    smol::block_on(async {
        let mut config = AllSimConfig::new([127, 0, 0, 1].into());
        config.discord.scenario = Scenario::steady(40.0);
        config.discord.heartbeat_interval = Duration::from_secs(2);
        config.discord.identify_spacing = Duration::ZERO;
        config.slack.scenario = Scenario::steady(15.0);
        config.github.scenario = Scenario::steady(1.0);
        config.github.poll_interval = 1;
        let sims = openflume_sim::start_all(config).await.expect("simulators");
        let mut out = std::io::stdout();
        let urls = json!({
            "discord_token": sims.discord.token(),
            "discord_gateway": sims.discord.gateway_url(),
            "slack_token": sims.slack.app_token(),
            "slack_api": sims.slack.api_url(),
            "github_token": sims.github.token(),
            "github_api": sims.github.api_url(),
        });
        writeln!(out, "{urls}").expect("print URLs");
        let mut lines =
            futures_lite::io::BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
        while let Some(Ok(line)) = futures_lite::StreamExt::next(&mut lines).await {
            let answer = match line.split_once(' ') {
                Some(("fault", n)) => {
                    fault(&sims, n.parse().unwrap_or(0));
                    json!({})
                }
                Some(("report", delivered)) => {
                    let delivered: HashSet<String> =
                        serde_json::from_str(delivered).unwrap_or_default();
                    sent(&sims, &delivered)
                }
                _ => json!({"error": line}),
            };
            writeln!(out, "{answer}").expect("answer");
            out.flush().expect("flush");
        }
        sims.stop().await;
    });
}

fn fault(sims: &openflume_sim::Handles, which: u8) {
    match which {
        0 => drop(sims.discord.inject(DiscordAction::DropConnection)),
        1 => drop(sims.discord.inject(DiscordAction::StopHeartbeatAcks)),
        2 => drop(sims.discord.inject(DiscordAction::Reconnect)),
        3 | 10 => drop(sims.discord.inject(DiscordAction::InvalidSession {
            resumable: which == 10,
        })),
        4 => drop(
            sims.discord
                .inject(DiscordAction::Fault(SocketFault::GarbageText)),
        ),
        5 => drop(
            sims.slack
                .inject(SlackAction::Disconnect(DisconnectReason::RefreshRequested)),
        ),
        6 => drop(sims.slack.inject(SlackAction::DropConnection)),
        7 => drop(sims.slack.inject(SlackAction::Duplicate {
            new_envelope_id: true,
        })),
        8 => drop(sims.github.inject(GithubAction::Http {
            fault: HttpFault::Status {
                status: 502,
                retry_after: None,
            },
            times: 2,
        })),
        _ => drop(sims.github.inject(GithubAction::Touch(None))),
    }
}

/// What the simulators sent, and each Slack event not among `delivered` with its fate.
fn sent(sims: &openflume_sim::Handles, delivered: &HashSet<String>) -> Value {
    let discord: HashSet<(String, u64)> = sims
        .discord
        .records()
        .dispatches
        .iter()
        .filter(|r| r.event == "MESSAGE_CREATE")
        .map(|r| (r.session_id.to_string(), r.seq))
        .collect();
    let records = sims.slack.records();
    let slack: HashSet<&String> = records
        .envelopes
        .iter()
        .filter_map(|e| e.event_id.as_ref())
        .collect();
    let missing: Vec<Value> = slack
        .iter()
        .filter(|id| !delivered.contains(**id))
        .map(|id| {
            let attempts: Vec<Value> = records
                .envelopes
                .iter()
                .filter(|e| e.event_id.as_ref() == Some(id))
                .map(|e| {
                    json!({"conn": e.conn, "at_s": e.at.as_secs_f64(), "attempt": e.retry_attempt,
                        "acked": records.acked(&e.envelope_id)})
                })
                .collect();
            let given_up = records
                .given_up
                .iter()
                .any(|g| g.event_id.as_ref() == Some(*id));
            json!({"event_id": id, "given_up": given_up, "attempts": attempts})
        })
        .collect();
    json!({
        "discord": discord.len(),
        "slack": slack.len(),
        "slack_missing": missing,
        "github": sims.github.threads().len(),
        "rss_mb": rss_mb(),
    })
}
