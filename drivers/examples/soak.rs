//! Soak test (not run in CI): the three simulators at a steady rate with a random fault every
//! few seconds, listened to through the library for `SOAK_MINUTES` minutes (default 10).
//! Every 30 s and at the end it prints what the simulators sent against what the firehose
//! delivered, duplicates, and this process's RSS.
//!
//! `cargo run --release -p openflume --example soak` (`SOAK_MINUTES=1` for a short run).

// A soak run aborts on setup failures: a panic with the cause is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::sim::{
    self, AllConfig, DisconnectReason, DiscordAction, GithubAction, HttpFault, Scenario,
    SlackAction,
};
use openflume::{Flume, Overflow, Source};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::{Item, ReconnectPolicy};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

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
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    smol::block_on(async {
        let mut config = AllConfig::new([127, 0, 0, 1].into());
        config.discord.scenario = Scenario::steady(40.0);
        config.discord.heartbeat_interval = Duration::from_secs(2);
        config.discord.identify_spacing = Duration::ZERO;
        config.slack.scenario = Scenario::steady(15.0);
        config.github.scenario = Scenario::steady(1.0);
        config.github.poll_interval = 1;
        let sims = sim::start_all(config).await.expect("simulators");

        let reconnect = ReconnectPolicy {
            max_attempts: None,
            base_ms: 100,
            max_ms: 2000,
        };
        let mut discord = DiscordConfig::new(sims.discord.token());
        discord.gateway_url = Some(sims.discord.gateway_url());
        discord.reconnect = reconnect;
        let mut slack = SlackConfig::new(sims.slack.app_token());
        slack.api_base = sims.slack.api_url();
        slack.ping_interval_ms = 2000;
        slack.reconnect = reconnect;
        let github = GithubConfig {
            token: sims.github.token().to_owned(),
            api_url: sims.github.api_url(),
            interval_ms: 1000,
            bootstrap: Bootstrap::Emit,
            reconnect: ReconnectPolicy {
                max_attempts: None,
                base_ms: 500,
                max_ms: 5000,
            },
            ..GithubConfig::default()
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
        let mut stream = running.stream(100_000, Overflow::Backpressure);

        let mut seen = Seen::default();
        let mut rng = fastrand::Rng::with_seed(0x50a4);
        let start = Instant::now();
        let end = start + Duration::from_secs(minutes * 60);
        let mut next_fault = start + Duration::from_secs(3);
        let mut next_report = start + Duration::from_secs(30);
        let mut faults = 0;
        let report = |label: &str, seen: &Seen| {
            let (d, s, g) = (&seen.discord, &seen.slack, &seen.github);
            let records = sims.discord.records();
            let discord_sent: HashSet<(String, u64)> = records
                .dispatches
                .iter()
                .filter(|r| r.event == "MESSAGE_CREATE")
                .map(|r| (r.session_id.to_string(), r.seq))
                .collect();
            let slack_sent: HashSet<String> = sims
                .slack
                .records()
                .envelopes
                .iter()
                .filter_map(|e| e.event_id.clone())
                .collect();
            let github_sent = sims.github.threads().len();
            println!(
                "{label:>7} | discord sent {:>6} got {:>6} dup {:>3} | slack sent {:>5} got {:>5} dup {:>3} | github threads {:>4} got {:>4} dup {:>3} | RSS {:>5.1} MB",
                discord_sent.len(),
                d.unique(),
                d.duplicates(),
                slack_sent.len(),
                s.unique(),
                s.duplicates(),
                github_sent,
                g.unique(),
                g.duplicates(),
                rss_mb()
            );
        };
        println!("soak: {minutes} min, a random fault every 2-6 s");
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
                match rng.u8(0..10) {
                    0 => drop(sims.discord.inject(DiscordAction::DropConnection)),
                    1 => drop(sims.discord.inject(DiscordAction::StopHeartbeatAcks)),
                    2 => drop(sims.discord.inject(DiscordAction::Reconnect)),
                    3 => drop(sims.discord.inject(DiscordAction::InvalidSession {
                        resumable: rng.bool(),
                    })),
                    4 => drop(sims.discord.inject(DiscordAction::GarbageText)),
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
                next_fault = now + Duration::from_millis(rng.u64(2000..6000));
            }
            if now >= next_report {
                report(&format!("{}s", start.elapsed().as_secs()), &seen);
                next_report = now + Duration::from_secs(30);
            }
        }
        // Let in-flight events arrive, then the final count.
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
        report("final", &seen);
        println!("faults injected: {faults}");
        // Every Slack event not delivered, with what the simulator did with it: given up after
        // its retries (as Slack does) is Slack's loss; acked but never delivered would be ours.
        let records = sims.slack.records();
        for envelope in records.envelopes.iter() {
            let Some(id) = &envelope.event_id else {
                continue;
            };
            if seen.slack.seen.contains_key(id) || envelope.retry_attempt > 0 || envelope.duplicate
            {
                continue;
            }
            let attempts: Vec<String> = records
                .envelopes
                .iter()
                .filter(|e| e.event_id.as_ref() == Some(id))
                .map(|e| {
                    format!(
                        "conn {} at {:.1}s attempt {} acked {}",
                        e.conn,
                        e.at.as_secs_f64(),
                        e.retry_attempt,
                        records.acked(&e.envelope_id)
                    )
                })
                .collect();
            let given_up = records
                .given_up
                .iter()
                .any(|g| g.event_id.as_ref() == Some(id));
            println!(
                "slack event {id} not delivered (given up by the simulator: {given_up}): {attempts:?}"
            );
        }
        drop(stream);
        running.close().await;
        sims.stop().await;
    });
}
