//! A drop-policy consumer that never reads must not make memory grow, nor slow the sources: the
//! stream's bounded buffer drops the oldest items (and counts them) while the simulator sends at
//! full speed.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Overflow, Source};
use openflume_proto::Item;
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_sim::{DiscordSim, DiscordSimConfig, Scenario};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
        let sim = DiscordSim::start(DiscordSimConfig {
            scenario: Scenario::blast(BLAST),
            max_records: 1024,
            resume_buffer: 1024,
            ..DiscordSimConfig::default()
        })
        .await
        .unwrap();
        let mut config = DiscordConfig::new(sim.token());
        config.gateway_url = Some(sim.gateway_url());
        config.compress = false;
        // Counts every dispatch that went through the firehose, so the test knows when the
        // blast is through without reading the stream.
        let through = Arc::new(AtomicU64::new(0));
        let counted = through.clone();
        let flume = Flume::builder()
            .source(Source::custom("discord", move |seed| {
                DiscordShard::new(config, seed)
            }))
            .on_item(move |item| {
                if matches!(item, Item::Event(e) if e.event_type == "MESSAGE_CREATE") {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let mut stream = flume.stream(BUFFER, Overflow::DropOldest);
        let running = flume.open().await.unwrap();
        let before = rss_kb();

        // Nobody reads while the whole blast goes through the pipeline.
        let deadline = Instant::now() + Duration::from_secs(60);
        while through.load(Ordering::Relaxed) < BLAST {
            assert!(
                Instant::now() < deadline,
                "only {} of {BLAST} dispatches went through",
                through.load(Ordering::Relaxed)
            );
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        let grown_kb = rss_kb().saturating_sub(before);
        let dropped = stream.dropped();
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
        // its BUFFER items.
        assert!(buffered <= BUFFER, "stream held {buffered} items");
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
