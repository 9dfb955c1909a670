//! A consumer that never reads must not make memory grow: the stream's bounded buffer drops the
//! oldest items (and counts them) while the simulator sends at full speed.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::sim::{DiscordConfig, DiscordSim, Scenario};
use openflume::{Flume, Overflow, Source};
use openflume_proto::Item;
use openflume_proto::discord::{DiscordConfig as ShardConfig, DiscordShard};
use std::time::Duration;

const BLAST: u64 = 60_000;
const BUFFER: usize = 500;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_unread_stream_stays_bounded_while_the_gateway_blasts() {
    smol::block_on(async {
        let sim = DiscordSim::start(DiscordConfig {
            scenario: Scenario::blast(BLAST),
            max_records: 1024,
            resume_buffer: 1024,
            ..DiscordConfig::default()
        })
        .await
        .unwrap();
        let mut config = ShardConfig::new(sim.token());
        config.gateway_url = Some(sim.gateway_url());
        config.compress = false;
        let running = Flume::builder()
            .source(Source::custom("discord", move |seed| {
                DiscordShard::new(config, seed)
            }))
            .build()
            .open()
            .await
            .unwrap();
        let mut stream = running.stream(BUFFER, Overflow::DropOldest);
        let before = rss_kb();

        // Nobody reads while the whole blast goes through the pipeline.
        let sent = sim
            .wait_for(Duration::from_secs(60), |records| {
                records
                    .dispatches
                    .iter()
                    .last()
                    .filter(|d| d.seq >= BLAST)
                    .map(|d| d.seq)
            })
            .await
            .expect("the simulator sent the whole blast");
        assert!(sent >= BLAST);
        let grown_kb = rss_kb().saturating_sub(before);

        // Wait until the last dispatch made it through the driver: the drop count settles.
        let mut dropped = stream.dropped();
        loop {
            smol::Timer::after(Duration::from_millis(100)).await;
            let now = stream.dropped();
            if now == dropped && now > 0 {
                break;
            }
            dropped = now;
        }
        let mut buffered = 0;
        let mut last_seq_seen = false;
        while let Some(item) = stream.try_next() {
            buffered += 1;
            if let Item::Event(event) = &item
                && event.event_type == "MESSAGE_CREATE"
            {
                last_seq_seen = true;
            }
        }
        running.close().await;

        // ~1.2 KB per event: buffering the blast would take over 70 MB; the stream holds at most
        // BUFFER items plus one overflow warning, after the few items of the start (statuses,
        // READY, GUILD_CREATE) that the first stream receives.
        assert!(buffered <= BUFFER + 1 + 16, "stream held {buffered} items");
        assert!(
            dropped as usize >= (BLAST as usize).saturating_sub(BUFFER + 10),
            "only {dropped} dropped"
        );
        assert!(last_seq_seen, "the newest events are kept");
        assert!(
            grown_kb < 30 * 1024,
            "RSS grew by {grown_kb} kB while nobody read"
        );
    });
}
