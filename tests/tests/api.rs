//! The public API's lifecycle pieces that the protocol tests do not cover: `Confluence` groups,
//! the cancel handle, `close` from several tasks, and `openflume cron next`.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Confluence, ConfluenceError, Flume, Overflow, Source};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::{Item, Status};
use openflume_sim::{GithubSim, GithubSimConfig, Scenario};
use openflume_tests::Openflume;
use std::time::Duration;

fn github_source(sim: &GithubSim) -> Source {
    let config = GithubConfig {
        api_url: sim.api_url(),
        interval_ms: 1000,
        bootstrap: Bootstrap::Emit,
        ..GithubConfig::new(sim.token())
    };
    Source::custom("github", move |seed| GithubMachine::new(config, seed))
}

async fn next_event(stream: &mut openflume::ItemStream) -> openflume_proto::Event {
    let wait = async {
        loop {
            match stream.next().await {
                Some(Item::Event(event)) => return event,
                // Logs, and kinds of item newer than this test.
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    };
    futures_lite::future::or(wait, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("no event within 10 s")
    })
    .await
}

#[test]
fn confluence_groups_come_and_go_over_one_firehose() {
    smol::block_on(async {
        let sim_a = GithubSim::start(GithubSimConfig {
            initial_notifications: 2,
            poll_interval: 1,
            ..GithubSimConfig::default()
        })
        .await
        .unwrap();
        let sim_b = GithubSim::start(GithubSimConfig {
            initial_notifications: 1,
            poll_interval: 1,
            ..GithubSimConfig::default()
        })
        .await
        .unwrap();
        // Sources given to the builder would have no group: refused, not dropped.
        assert_eq!(
            Confluence::new(Flume::builder().source(github_source(&sim_a))).err(),
            Some(ConfluenceError::BuilderHasSources(vec!["github".into()]))
        );
        let confluence = Confluence::new(Flume::builder()).unwrap();
        let mut stream = confluence.stream(100, Overflow::Backpressure);
        confluence
            .add("a", vec![github_source(&sim_a)])
            .await
            .unwrap();
        assert_eq!(
            confluence.add("a", vec![github_source(&sim_b)]).await,
            Err(ConfluenceError::GroupExists("a".into()))
        );
        confluence
            .add("b", vec![github_source(&sim_b)])
            .await
            .unwrap();
        assert_eq!(confluence.groups().await, ["a", "b"]);
        // Each event names its group (meta.groupId, as open-flume's do): two notifications
        // from group a's simulator, one from b's.
        let mut groups = Vec::new();
        for _ in 0..3 {
            let event = next_event(&mut stream).await;
            assert!(event.data.parse().unwrap()["id"].is_string());
            assert!(
                event.meta.contains_key("reason"),
                "the source's own meta stays"
            );
            groups.push(event.meta.get("groupId").cloned().unwrap_or_default());
        }
        groups.sort();
        assert_eq!(groups, ["a", "a", "b"]);

        let removed = confluence.remove("a").await.expect("group a existed");
        assert!(
            removed
                .statuses()
                .iter()
                .all(|s| s.status == Status::Disconnected)
        );
        assert!(confluence.remove("a").await.is_none());
        let statuses = confluence.statuses().await;
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].0, "b");

        let closed = confluence.close_all().await;
        assert_eq!(closed.statuses().len(), 1);
        assert_eq!(
            confluence.add("c", vec![github_source(&sim_a)]).await,
            Err(ConfluenceError::Closed)
        );
        // The stream ends once everything in flight is delivered.
        while stream.next().await.is_some() {}
    });
}

#[test]
fn cancel_handle_and_concurrent_close_agree() {
    smol::block_on(async {
        let sim = GithubSim::start(GithubSimConfig {
            poll_interval: 1,
            scenario: Scenario::manual(),
            ..GithubSimConfig::default()
        })
        .await
        .unwrap();
        let running = std::sync::Arc::new(
            Flume::builder()
                .source(github_source(&sim))
                .build()
                .open()
                .await
                .unwrap(),
        );
        assert_eq!(running.statuses()[0].status, Status::Connected);
        let cancel = running.cancel_handle();
        std::thread::spawn(move || cancel.cancel());
        let waited = running.wait().await;
        let (a, b) = futures_lite::future::zip(running.close(), running.close()).await;
        assert_eq!(waited, a);
        assert_eq!(a, b);
        assert_eq!(a.statuses()[0].status, Status::Disconnected);
    });
}

#[test]
fn cron_next_prints_rfc3339_instants_and_rejects_bad_expressions() {
    let mut ok = Openflume::spawn(
        &[
            "cron",
            "next",
            "45 1 * * *",
            "--after",
            "2025-11-02T01:40:00-05:00",
            "--tz",
            "America/New_York",
            "--count",
            "2",
        ],
        &[],
    );
    let (status, lines, _) = ok.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert_eq!(
        lines,
        ["2025-11-03T01:45:00-05:00", "2025-11-04T01:45:00-05:00"]
    );

    let mut bad = Openflume::spawn(&["cron", "next", "5/15 * * * *"], &[]);
    let (status, lines, stderr) = bad.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    assert!(lines.is_empty());
    assert!(stderr.contains("did you mean 5-59/15?"), "{stderr}");
}

/// `cron next` tells why it printed fewer times than asked (the calendar ends), and a full disk
/// is an error, not a silent success (issue 21).
#[test]
fn cron_next_says_why_it_stops_short_and_fails_on_a_full_disk() {
    let mut short = Openflume::spawn(
        &[
            "cron",
            "next",
            "0 0 29 2 *",
            "--after",
            "9999-01-01T00:00:00Z",
            "--count",
            "3",
        ],
        &[],
    );
    let (status, lines, stderr) = short.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(lines.is_empty());
    assert!(stderr.contains("0 of 3 fire times"), "{stderr}");

    let mut full = Openflume::spawn_with(
        &["cron", "next", "* * * * *", "--count", "3"],
        &[],
        openflume_tests::Reader::DevFull,
    );
    let (status, _, stderr) = full.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
}

/// `sim --rate` beyond what a simulator can serve is a usage error, not a spinning core.
#[test]
fn sim_refuses_a_rate_it_cannot_serve() {
    for rate in ["1e308", "0", "-1", "NaN"] {
        let flag = format!("--rate={rate}");
        let mut sim = Openflume::spawn(&["sim", &flag], &[]);
        let (status, _, stderr) = sim.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("--rate"), "{stderr}");
    }
}

/// The API's types show what they are in `Debug`, and never a token.
#[test]
fn debug_shows_the_sources_and_no_secret() {
    use openflume::{Flume, Overflow, Source};
    use openflume_proto::discord::DiscordConfig;
    let token = "MTIzNDU2.debug-check.token-Kq4";
    let builder = Flume::builder().source(Source::discord(DiscordConfig::new(token)));
    let shown = format!("{builder:?}");
    assert!(
        shown.contains("discord") && !shown.contains(token),
        "{shown}"
    );
    let flume = builder.build();
    let stream = flume.stream(8, Overflow::Backpressure);
    for shown in [format!("{flume:?}"), format!("{stream:?}")] {
        assert!(!shown.contains(token), "{shown}");
    }
    assert!(format!("{stream:?}").contains("Backpressure"));
}
