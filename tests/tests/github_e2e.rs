//! GitHub end to end: the real driver and HTTP client and the `GithubMachine` against the GitHub
//! simulator over real sockets: conditional requests and 304s, `X-Poll-Interval`, rate limits,
//! server errors and bad credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Running, Source, StartError};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::{Event, Item, ReconnectPolicy, Status};
use openflume_sim::{GithubAction, GithubRequest, GithubSim, GithubSimConfig, HttpFault};
use openflume_tests::{Collector, block_on, data_field, events_of, has_status};
use std::collections::BTreeSet;
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn start_sim() -> GithubSim {
    let config = GithubSimConfig {
        poll_interval: 1,
        initial_notifications: 3,
        ..GithubSimConfig::default()
    };
    block_on(WAIT, "start the GitHub simulator", GithubSim::start(config)).expect("sim starts")
}

fn machine_config(sim: &GithubSim) -> GithubConfig {
    GithubConfig {
        api_url: sim.api_url(),
        interval_ms: 1000,
        bootstrap: Bootstrap::Emit,
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 100,
            max_ms: 500,
        },
        ..GithubConfig::new(sim.token())
    }
}

fn open_with(
    config: GithubConfig,
    on_item: impl FnMut(&Item) + Send + 'static,
) -> Result<Running, StartError> {
    let flume = Flume::builder()
        .source(Source::custom("github", move |seed| {
            GithubMachine::new(config, seed)
        }))
        .on_item(on_item)
        .start_timeout(Some(WAIT))
        .shutdown_grace(Duration::from_secs(3))
        .build();
    block_on(WAIT + Duration::from_secs(1), "open", flume.open())
}

/// Opens a poller on the simulator and waits for the 3 bootstrap notifications.
fn open_bootstrapped(sim: &GithubSim) -> (Running, Collector) {
    let (mut items, on_item) = Collector::callback(&[sim.token()]);
    let running = open_with(machine_config(sim), on_item).expect("opens");
    items.wait(WAIT, "the 3 bootstrap notifications", |items| {
        (notifications(items).len() == 3).then_some(())
    });
    (running, items)
}

fn close(running: &Running, items: &mut Collector) {
    block_on(WAIT, "close", running.close());
    items.drain_to_end(WAIT);
}

fn notifications(items: &[Item]) -> Vec<&Event> {
    events_of(items, "github")
        .into_iter()
        .filter(|e| e.event_type == "notification")
        .collect()
}

/// Requests answered so far.
fn requests(sim: &GithubSim) -> Vec<GithubRequest> {
    sim.records().requests.iter().cloned().collect()
}

/// Every notification was emitted once: the thread ids are distinct.
fn assert_no_duplicates(items: &Collector) {
    let keys: Vec<(String, String)> = notifications(&items.items)
        .iter()
        .map(|e| {
            (
                e.meta["thread_id"].clone(),
                data_field(e, "/updated_at")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let unique: BTreeSet<&(String, String)> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "a notification emitted twice: {keys:?}"
    );
}

#[test]
fn bootstrap_emits_existing_notifications_then_new_ones() {
    let sim = start_sim();
    let (running, mut items) = open_bootstrapped(&sim);
    let threads: BTreeSet<String> = sim.threads().into_iter().map(|t| t.id).collect();
    let emitted: BTreeSet<String> = notifications(&items.items)
        .iter()
        .map(|e| e.meta["thread_id"].clone())
        .collect();
    assert_eq!(emitted, threads);
    for event in notifications(&items.items) {
        assert_eq!(event.meta["event_type"], "notification");
        assert_eq!(
            data_field(event, "/id").unwrap(),
            event.meta["thread_id"].as_str()
        );
        assert_eq!(
            data_field(event, "/reason").unwrap(),
            event.meta["reason"].as_str()
        );
        assert_eq!(
            data_field(event, "/repository/full_name").unwrap(),
            event.meta["repository"].as_str()
        );
        assert!(event.meta.contains_key("subject_type"), "{:?}", event.meta);
    }
    assert_eq!(running.statuses()[0].status, Status::Connected);

    let id = sim.add_notification();
    let new = items.wait(WAIT, "the new notification", |items| {
        notifications(items).get(3).map(|e| (*e).clone())
    });
    assert_eq!(new.meta["thread_id"], id);
    close(&running, &mut items);

    assert_eq!(notifications(&items.items).len(), 4, "{}", items.dump());
    let records = requests(&sim);
    assert!(
        records
            .iter()
            .all(|r| r.authorized && r.path == "/notifications"),
        "{records:?}"
    );
    assert!(
        records[0].query.contains("per_page=50"),
        "{:?}",
        records[0].query
    );
    assert!(has_status(&items.items, "github", "disconnected"));
    assert_no_duplicates(&items);
}

#[test]
fn not_modified_cycles_emit_nothing() {
    let sim = start_sim();
    let (running, mut items) = open_bootstrapped(&sim);
    let not_modified: Vec<GithubRequest> = items.wait(WAIT, "two 304 cycles", |_| {
        let answered: Vec<GithubRequest> = requests(&sim)
            .into_iter()
            .filter(|r| r.status == Some(304))
            .collect();
        (answered.len() >= 2).then_some(answered)
    });
    close(&running, &mut items);

    for request in &not_modified {
        assert!(
            request.if_modified_since.is_some() && request.if_none_match.is_some(),
            "a 304 cycle sends both validators: {request:?}"
        );
        assert!(!request.counted, "a 304 costs no rate limit");
    }
    let records = requests(&sim);
    assert_eq!(records[0].status, Some(200));
    assert!(records[0].if_none_match.is_none() && records[0].if_modified_since.is_none());
    // Polls are paced by the interval (1 s), not faster.
    for pair in records.windows(2) {
        let gap = pair[1].at.saturating_sub(pair[0].at);
        assert!(
            gap >= Duration::from_millis(990),
            "polled after {gap:?}: {records:?}"
        );
    }
    assert_eq!(
        notifications(&items.items).len(),
        3,
        "304 cycles emit nothing: {}",
        items.dump()
    );
    assert_no_duplicates(&items);
}

#[test]
fn rate_limit_429_waits_for_retry_after() {
    let sim = start_sim();
    let (running, mut items) = open_bootstrapped(&sim);
    sim.inject(GithubAction::Http {
        fault: HttpFault::Status {
            status: 429,
            retry_after: Some(2),
        },
        times: 1,
    });
    let (limited, next) = items.wait(WAIT, "the request after the 429", |_| {
        let records = requests(&sim);
        let at = records.iter().position(|r| r.status == Some(429))?;
        let next = records.get(at + 1)?;
        Some((records[at].clone(), next.clone()))
    });
    let waited = next.at.saturating_sub(limited.at);
    assert!(
        waited >= Duration::from_secs(2),
        "the next request came {waited:?} after a 429 with Retry-After: 2"
    );
    assert!(
        waited < Duration::from_secs(4),
        "and not much later: {waited:?}"
    );
    assert!(
        has_status(&items.items, "github", "reconnecting"),
        "{}",
        items.dump()
    );
    let id = sim.add_notification();
    let new = items.wait(WAIT, "a notification after the rate limit", |items| {
        notifications(items).get(3).map(|e| (*e).clone())
    });
    assert_eq!(new.meta["thread_id"], id);
    assert_eq!(running.statuses()[0].status, Status::Connected);
    close(&running, &mut items);
    assert_no_duplicates(&items);
}

#[test]
fn server_errors_back_off_and_recover() {
    let sim = start_sim();
    let (running, mut items) = open_bootstrapped(&sim);
    sim.inject(GithubAction::Http {
        fault: HttpFault::Status {
            status: 502,
            retry_after: None,
        },
        times: 2,
    });
    items.wait(WAIT, "two 502s, then a good answer", |_| {
        let statuses: Vec<Option<u16>> = requests(&sim).iter().map(|r| r.status).collect();
        let first = statuses.iter().position(|s| *s == Some(502))?;
        (statuses.get(first + 1) == Some(&Some(502))
            && matches!(statuses.get(first + 2), Some(Some(200 | 304))))
        .then_some(())
    });
    let id = sim.add_notification();
    let new = items.wait(WAIT, "a notification after the errors", |items| {
        notifications(items).get(3).map(|e| (*e).clone())
    });
    assert_eq!(new.meta["thread_id"], id);
    assert_eq!(running.statuses()[0].status, Status::Connected);
    assert!(
        has_status(&items.items, "github", "reconnecting"),
        "{}",
        items.dump()
    );
    close(&running, &mut items);
    assert_eq!(notifications(&items.items).len(), 4, "{}", items.dump());
    assert_no_duplicates(&items);
}

#[test]
fn unauthorized_while_running_fails_the_source() {
    let sim = start_sim();
    let (running, mut items) = open_bootstrapped(&sim);
    sim.inject(GithubAction::Http {
        fault: HttpFault::Status {
            status: 401,
            retry_after: None,
        },
        times: 1,
    });
    items.wait(WAIT, "status failed", |items| {
        has_status(items, "github", "failed").then_some(())
    });
    let status = running.statuses()[0].clone();
    assert_eq!(status.status, Status::Failed, "{status}");
    let requests_at_failure = requests(&sim).len();
    close(&running, &mut items);
    let records = requests(&sim);
    assert_eq!(records.last().unwrap().status, Some(401));
    assert_eq!(
        records.len(),
        requests_at_failure,
        "no request after the 401"
    );
}

#[test]
fn wrong_token_fails_open() {
    let sim = start_sim();
    let wrong = "ghp_wrongE2eSecretToken0000000000000000";
    let mut config = machine_config(&sim);
    config.token = wrong.into();
    let (mut items, on_item) = Collector::callback(&[wrong, sim.token()]);
    let error = match open_with(config, on_item) {
        Ok(_) => panic!("open succeeded with a wrong token"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert_eq!(error.failures.len(), 1, "{text}");
    assert_eq!(error.failures[0].source, "github", "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(sim.token()),
        "{text}"
    );
    items.drain_to_end(WAIT);
    assert!(
        has_status(&items.items, "github", "failed"),
        "{}",
        items.dump()
    );
    let records = requests(&sim);
    assert_eq!(
        records.len(),
        1,
        "no retry with bad credentials: {records:?}"
    );
    assert!(!records[0].authorized);
    assert_eq!(records[0].status, Some(401));
}
