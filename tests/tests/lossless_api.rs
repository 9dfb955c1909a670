//! Nothing lost, through the library API: consumers attached before the sources start see every
//! item from the first status log on, under a burst and beside a source slow to start; and no
//! upstream ack is sent before every back-pressure consumer holds the event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, ItemStream, Overflow, Running, Source};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{GithubConfig, GithubMachine};
use openflume_proto::slack::SlackConfig;
use openflume_proto::{Item, ReconnectPolicy};
use openflume_sim::{
    DiscordSim, DiscordSimConfig, GithubAction, GithubSim, GithubSimConfig, HttpFault, SlackAction,
    SlackSim, SlackSimConfig,
};
use openflume_tests::{block_on, block_on_until, data_field};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const BURST: u32 = 5_000;
const GITHUB_STALL: Duration = Duration::from_millis(1_500);

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        max_attempts: None,
        base_ms: 50,
        max_ms: 500,
    }
}

/// Reads `stream` until `messages` MESSAGE_CREATE events came, or the deadline passes,
/// returning every item read.
async fn read_messages(stream: &mut ItemStream, deadline: Instant, messages: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut seen = 0;
    while seen < messages {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(async { Some(stream.next().await) }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        let Some(Some(item)) = next else { break };
        if matches!(&item, Item::Event(e) if e.event_type == "MESSAGE_CREATE") {
            seen += 1;
        }
        items.push(item);
    }
    items
}

/// The message ids of the MESSAGE_CREATE dispatches: snowflakes, which the simulator makes
/// increasing in the order it sends.
fn message_ids(items: &[Item]) -> Vec<u64> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event(e) if e.source == "discord" && e.event_type == "MESSAGE_CREATE" => {
                data_field(e, "/id").and_then(|id| id.as_str()?.parse().ok())
            }
            _ => None,
        })
        .collect()
}

/// One round: Discord sends the burst in the same writes as READY while GitHub's first poll
/// stalls; the consumer holds only 64 items, so the burst must wait for it.
fn burst_round(round: u32) {
    let discord = block_on(
        WAIT,
        "start the Discord simulator",
        DiscordSim::start(DiscordSimConfig {
            identify_spacing: Duration::ZERO,
            messages_after_ready: BURST,
            ..DiscordSimConfig::default()
        }),
    )
    .expect("discord sim");
    let github = block_on(
        WAIT,
        "start the GitHub simulator",
        GithubSim::start(GithubSimConfig::default()),
    )
    .expect("github sim");
    github.inject(GithubAction::Http {
        fault: HttpFault::Stall(GITHUB_STALL),
        times: 1,
    });
    let discord_config = DiscordConfig {
        api_base: discord.api_url(),
        compress: false,
        reconnect: fast_reconnect(),
        ..DiscordConfig::new(discord.token())
    };
    let github_config = GithubConfig {
        api_url: github.api_url(),
        ..GithubConfig::new(github.token())
    };
    let flume = Flume::builder()
        .source(Source::custom("discord", move |seed| {
            DiscordShard::new(discord_config, seed)
        }))
        .source(Source::custom("github", move |seed| {
            GithubMachine::new(github_config, seed)
        }))
        .start_timeout(Some(WAIT))
        .build();
    let mut stream = flume.stream(64, Overflow::Backpressure);
    let running: Running = flume.start().expect("starts");
    let deadline = Instant::now() + WAIT;
    let (items, started) = block_on(
        WAIT + Duration::from_secs(5),
        "read the burst while the start settles",
        futures_lite::future::zip(
            read_messages(&mut stream, deadline, BURST as usize),
            running.started(),
        ),
    );
    started.expect("both sources started");
    block_on(WAIT, "close", running.close());

    let ids = message_ids(&items);
    assert_eq!(
        ids.len(),
        BURST as usize,
        "round {round}: {} of {BURST} dispatches arrived",
        ids.len()
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "round {round}: dispatches out of order or repeated"
    );
    // The very first item is Discord's first status log; READY comes before every message.
    let first = items.first().expect("items");
    assert!(
        matches!(first, Item::Log(log) if log.action == "status"),
        "round {round}: first item {first:?}"
    );
    let position = |pred: &dyn Fn(&Item) -> bool| items.iter().position(pred);
    let ready =
        position(&|i| matches!(i, Item::Event(e) if e.event_type == "READY")).expect("READY");
    let first_message =
        position(&|i| matches!(i, Item::Event(e) if e.event_type == "MESSAGE_CREATE"))
            .expect("a message");
    assert!(
        ready < first_message,
        "round {round}: READY after a message"
    );
    for source in ["discord", "github"] {
        assert!(
            items.iter().any(
                |i| matches!(i, Item::Log(log) if log.source == source && log.action == "status")
            ),
            "round {round}: no status log from {source}"
        );
    }
}

#[test]
fn a_burst_behind_ready_beside_a_slow_source_arrives_whole_and_in_order() {
    for round in 1..=5 {
        burst_round(round);
    }
}

/// A Slack simulator that redelivers nothing within `ack_deadline`, and a flume over it (not
/// started: the test attaches its streams first).
fn slack_flume(ack_deadline: Duration) -> (SlackSim, Flume) {
    let slack = block_on(
        WAIT,
        "start the Slack simulator",
        SlackSim::start(SlackSimConfig {
            ack_deadline,
            ..SlackSimConfig::default()
        }),
    )
    .expect("slack sim");
    let config = SlackConfig {
        api_base: slack.api_url(),
        reconnect: fast_reconnect(),
        ..SlackConfig::new(slack.app_token()).with_bot_token(slack.bot_token())
    };
    let flume = Flume::builder()
        .source(Source::slack(config))
        .start_timeout(Some(WAIT))
        .build();
    (slack, flume)
}

/// Starts `flume` and waits for its first connection; returns it with the test's deadline.
fn start_connected(flume: Flume) -> (Running, Instant) {
    let running = flume.start().expect("starts");
    let deadline = Instant::now() + WAIT;
    block_on_until(deadline, running.started())
        .expect("in time")
        .expect("starts");
    (running, deadline)
}

/// A consumer that holds until commit and takes its time: Slack must not hear an ack for an
/// envelope before the consumer committed it, and hears one for each once it did.
#[test]
fn slack_acks_wait_until_the_consumer_holds_the_event() {
    const ENVELOPES: u32 = 300;
    let (slack, flume) = slack_flume(Duration::from_secs(30));
    let mut stream = flume
        .stream(16, Overflow::Backpressure)
        .holds_until_commit();
    // A display beside it may miss items: it must not hold acks up.
    let _display = flume.stream(1, Overflow::DropNewest);
    let (running, deadline) = start_connected(flume);
    slack.inject(SlackAction::Messages(ENVELOPES));

    let event_ids_of = |items: &[Item]| -> Vec<String> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Event(e) if e.source == "slack" => e.meta.get("event_id").cloned(),
                _ => None,
            })
            .collect()
    };
    let mut committed: HashSet<String> = HashSet::new();
    let mut taken = Vec::new();
    while committed.len() < ENVELOPES as usize {
        assert!(
            Instant::now() < deadline,
            "only {} committed",
            committed.len()
        );
        // Take a few, check the acks, then commit them.
        let batch = block_on(WAIT, "a batch", async {
            let mut batch = Vec::new();
            if let Some(item) = stream.next().await {
                batch.push(item);
            }
            batch.extend(std::iter::from_fn(|| stream.try_next()).take(7));
            batch
        });
        taken.extend(event_ids_of(&batch));
        let records = slack.records();
        let acked: Vec<String> = records
            .acks
            .iter()
            .filter_map(|ack| {
                records
                    .envelopes
                    .iter()
                    .find(|e| e.envelope_id == ack.envelope_id)
                    .and_then(|e| e.event_id.clone())
            })
            .collect();
        for event_id in &acked {
            assert!(
                committed.contains(event_id),
                "event {event_id} was acked before the consumer committed it"
            );
        }
        stream.commit();
        committed.extend(taken.drain(..));
    }
    // Every committed envelope gets its ack.
    let all_acked = block_on(
        WAIT,
        "the acks",
        slack.wait_for(WAIT, |r| (r.acks.len() >= ENVELOPES as usize).then_some(())),
    );
    assert!(all_acked.is_ok(), "not every committed envelope was acked");
    block_on(WAIT, "close", running.close());
}

/// A consumer that stalls behind a burst and then commits the backlog in a few large steps
/// releases hundreds of acks at once: the connection must take them all (it once counted as a
/// stuck socket and was replaced, leaving the acks unsent), and every envelope is acked.
#[test]
fn a_backlog_of_acks_released_at_once_keeps_the_connection() {
    const ENVELOPES: u32 = 1_400;
    let (slack, flume) = slack_flume(Duration::from_secs(60));
    let mut stream = flume
        .stream(256, Overflow::Backpressure)
        .holds_until_commit();
    let (running, deadline) = start_connected(flume);
    slack.inject(SlackAction::Messages(ENVELOPES));
    // The stall: the burst piles up behind a full stream (pacing the test, not waiting for an
    // effect).
    std::thread::sleep(Duration::from_secs(1));
    let mut events = 0;
    while events < ENVELOPES {
        let item = block_on_until(deadline, stream.next())
            .unwrap_or_else(|| panic!("only {events} events arrived"))
            .expect("the stream runs");
        if matches!(item, Item::Event(_)) {
            events += 1;
            if events % 300 == 0 {
                stream.commit();
            }
        }
    }
    stream.commit();
    let acked = block_on(
        WAIT,
        "the acks",
        slack.wait_for(WAIT, |r| (r.acks.len() >= ENVELOPES as usize).then_some(())),
    );
    let records = slack.records();
    assert!(acked.is_ok(), "{} of {ENVELOPES} acked", records.acks.len());
    assert_eq!(records.connections.len(), 1, "the connection was replaced");
    block_on(WAIT, "close", running.close());
}
