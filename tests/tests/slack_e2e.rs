//! Slack end to end: the real driver and the `SlackMachine` against the Slack simulator over real
//! sockets (`auth.test`, `apps.connections.open`, Socket Mode WebSockets), including rotations and
//! redeliveries. "Exactly once" compares the envelopes the simulator wrote (and their acks) with
//! the events the firehose delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Running, Source, StartError};
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::{Event, Item, ReconnectPolicy, Status};
use openflume_sim::{DisconnectReason, EnvelopeKind, SlackAction, SlackSim, SlackSimConfig};
use openflume_tests::{Collector, block_on, data_field, events_of, has_status};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn start_sim() -> SlackSim {
    let config = SlackSimConfig {
        // Slack closes a connection "some seconds" after `warning` / `refresh_requested`.
        disconnect_close_after: Duration::from_secs(3),
        ..SlackSimConfig::default()
    };
    block_on(WAIT, "start the Slack simulator", SlackSim::start(config)).expect("sim starts")
}

fn machine_config(sim: &SlackSim) -> SlackConfig {
    SlackConfig {
        api_base: sim.api_url(),
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 50,
            max_ms: 500,
        },
        ..SlackConfig::new(sim.app_token()).with_bot_token(sim.bot_token())
    }
}

fn open_with(
    config: SlackConfig,
    on_item: impl FnMut(&Item) + Send + 'static,
) -> Result<Running, StartError> {
    let flume = Flume::builder()
        .source(Source::custom("slack", move |seed| {
            SlackMachine::new(config, seed)
        }))
        .on_item(on_item)
        .start_timeout(Some(WAIT))
        .shutdown_grace(Duration::from_secs(3))
        .build();
    block_on(WAIT + Duration::from_secs(1), "open", flume.open())
}

fn open_collected(sim: &SlackSim) -> (Running, Collector) {
    let (items, on_item) = Collector::callback(&[sim.app_token(), sim.bot_token()]);
    let running = open_with(machine_config(sim), on_item).expect("opens");
    (running, items)
}

fn close(running: &Running, items: &mut Collector) {
    block_on(WAIT, "close", running.close());
    items.drain_to_end(WAIT);
}

fn slack_events(items: &[Item]) -> Vec<&Event> {
    events_of(items, "slack")
}

/// Waits until the simulator wrote at least `min` envelopes and every one was acked.
fn wait_all_acked(items: &mut Collector, sim: &SlackSim, min: usize) {
    let done = items.try_wait(WAIT, |_| {
        let records = sim.records();
        (records.envelopes.len() >= min && records.unacked().is_empty()).then_some(())
    });
    if let Err(why) = done {
        let records = sim.records();
        panic!(
            "{why} waiting for every envelope (at least {min}) to be acked; {} written, unacked: \
             {:#?}\nacks: {}, given up: {:?}\nclient closes: {:?}\nconnections: {:?}\n\
             disconnects: {:?}\nslack items:\n{}",
            records.envelopes.len(),
            records.unacked(),
            records.acks.len(),
            records.given_up,
            records.client_closes,
            records.connections,
            records.disconnects,
            openflume_tests::dump(
                &items
                    .items
                    .iter()
                    .filter(|i| matches!(i, Item::Log(_)))
                    .cloned()
                    .collect::<Vec<_>>()
            )
        );
    }
}

/// Waits for the simulator to record how `conn` ended on the client's side.
fn client_close(sim: &SlackSim, conn: u64) -> openflume_sim::CloseRecord {
    block_on(
        WAIT + Duration::from_secs(1),
        "the client close record",
        sim.wait_for(WAIT, |r| {
            r.client_closes.iter().find(|c| c.conn == conn).cloned()
        }),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: no client close of connection {conn}: {:?}",
            sim.records().client_closes
        )
    })
}

/// Every envelope was acked exactly on the connection it was sent on, in time; every distinct
/// payload (event_id for events_api, else the envelope) was emitted once and only once.
fn assert_exactly_once_and_acked(sim: &SlackSim, items: &Collector) {
    let records = sim.records();
    for envelope in records.envelopes.iter() {
        let acks: Vec<_> = records
            .acks
            .iter()
            .filter(|a| a.envelope_id == envelope.envelope_id)
            .collect();
        assert_eq!(acks.len(), 1, "one ack for {envelope:?}: {acks:?}");
        let ack = acks[0];
        assert_eq!(
            ack.conn, envelope.conn,
            "acked on the connection it came on: {ack:?}"
        );
        assert_eq!(ack.sent_on, Some(envelope.conn));
        assert!(!ack.late, "acked in time: {ack:?}");
    }
    assert!(records.given_up.is_empty(), "{:?}", records.given_up);
    let events = slack_events(&items.items);
    let written_events: BTreeSet<String> = records
        .envelopes
        .iter()
        .filter_map(|e| e.event_id.clone())
        .collect();
    let emitted_events: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "events_api")
        .map(|e| e.meta["event_id"].clone())
        .collect();
    let unique: BTreeSet<String> = emitted_events.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        emitted_events.len(),
        "an event emitted twice: {emitted_events:?}"
    );
    assert_eq!(unique, written_events, "every events_api payload emitted");
    for kind in [EnvelopeKind::SlashCommands, EnvelopeKind::Interactive] {
        let written = records.envelopes.iter().filter(|e| e.kind == kind).count();
        let emitted = events
            .iter()
            .filter(|e| e.event_type == kind.as_str())
            .count();
        assert_eq!(emitted, written, "{kind:?} envelopes emitted once each");
    }
}

#[test]
fn envelopes_of_the_three_types_arrive_and_are_acked() {
    let sim = start_sim();
    let (running, mut items) = open_collected(&sim);
    assert_eq!(sim.inject(SlackAction::Messages(2)), 1);
    assert_eq!(sim.inject(SlackAction::SlashCommand), 1);
    assert_eq!(sim.inject(SlackAction::Interactive), 1);
    let events: Vec<Event> = items.wait(WAIT, "4 Slack events", |items| {
        let events = slack_events(items);
        (events.len() == 4).then(|| events.into_iter().cloned().collect())
    });
    wait_all_acked(&mut items, &sim, 4);
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["events_api", "events_api", "slash_commands", "interactive"]
    );
    let records = sim.records();
    let envelopes: Vec<_> = records.envelopes.iter().collect();
    for (event, envelope) in events.iter().zip(&envelopes) {
        assert_eq!(event.event_type, envelope.kind.as_str());
        assert_eq!(event.meta["event_type"], envelope.kind.as_str());
        assert_eq!(
            event.meta["team_id"], "T0SIMTEAM1",
            "auth.test identity in meta"
        );
        assert_eq!(event.meta["bot_user_id"], "U0SIMBOT01");
        assert!(event.meta.contains_key("channel_id"), "{:?}", event.meta);
        assert!(event.meta.contains_key("user_id"), "{:?}", event.meta);
        if let Some(event_id) = &envelope.event_id {
            assert_eq!(&event.meta["event_id"], event_id);
            assert_eq!(data_field(event, "/event_id").unwrap(), event_id.as_str());
            assert_eq!(event.meta["slack_event_type"], "message");
        }
    }
    assert_eq!(events[2].meta["slack_event_type"], "/deploy");
    assert_eq!(data_field(&events[2], "/command").unwrap(), "/deploy");
    assert_eq!(events[3].meta["slack_event_type"], "block_actions");
    assert_eq!(running.statuses()[0].status, Status::Connected);
    close(&running, &mut items);

    let records = sim.records();
    let paths: Vec<(&str, Option<u16>)> = records
        .http
        .iter()
        .map(|h| (h.path.as_str(), h.status))
        .collect();
    assert!(paths.contains(&("/api/auth.test", Some(200))), "{paths:?}");
    assert!(
        paths.contains(&("/api/apps.connections.open", Some(200))),
        "{paths:?}"
    );
    assert!(has_status(&items.items, "slack", "disconnected"));
    assert_exactly_once_and_acked(&sim, &items);
}

/// A `disconnect` of `reason`: a new connection is opened while the old one keeps receiving;
/// the old one ends only after the new one said hello (whether the client closes it or waits for
/// Slack to); every envelope, those in flight on the old connection included, is emitted once and
/// acked on the connection it came on.
fn rotates_without_gap(reason: DisconnectReason) {
    let sim = start_sim();
    let (running, mut items) = open_collected(&sim);
    sim.inject(SlackAction::Messages(2));
    wait_all_acked(&mut items, &sim, 2);
    let first = sim.records().connections.iter().next().unwrap().conn;

    assert_eq!(sim.inject(SlackAction::Disconnect(reason)), 1);
    // A stream of envelopes across the rotation, so some are in flight on the old connection
    // while it is retired (bounded: at most 300).
    let burst_start = std::time::Instant::now();
    for n in 0..300u32 {
        sim.inject(SlackAction::Messages(1));
        if n % 50 == 49 {
            sim.inject(SlackAction::SlashCommand);
        }
        std::thread::yield_now();
        let old_closed = sim.records().client_closes.iter().any(|c| c.conn == first);
        if old_closed && n >= 100 || burst_start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    // The old connection ends: closed by the client, or by the simulator `disconnect_close_after`
    // after the disconnect message. `inject_on` of a no-op tells whether it is still open.
    items.wait(WAIT, "the old connection to end", |_| {
        (!sim.inject_on(first, SlackAction::Messages(0))).then_some(())
    });
    // Injected envelopes are written asynchronously: count them once they are on the wire, so
    // the wait below covers them.
    let before = sim.records().envelopes.len();
    sim.inject(SlackAction::Messages(2));
    sim.inject(SlackAction::Interactive);
    items.wait(WAIT, "the last three envelopes to be written", |_| {
        (sim.records().envelopes.len() >= before + 3).then_some(())
    });
    let written = sim.records().envelopes.len();
    wait_all_acked(&mut items, &sim, written);
    let payloads = distinct_payloads(&sim);
    items.wait(WAIT, "every payload emitted", |items| {
        (slack_events(items).len() >= payloads).then_some(())
    });
    close(&running, &mut items);

    let records = sim.records();
    let connections: Vec<_> = records.connections.iter().collect();
    assert!(connections.len() >= 2, "{connections:?}");
    let second = connections[1];
    if let Some(old_close) = records.client_closes.iter().find(|c| c.conn == first) {
        assert!(
            old_close.at >= second.at,
            "the old connection was closed ({:?}) before the new one said hello ({:?})",
            old_close.at,
            second.at
        );
        assert_eq!(old_close.code, Some(1000), "{old_close:?}");
    }
    assert!(
        records.envelopes.iter().any(|e| e.conn == first),
        "the old connection received envelopes"
    );
    // Which open connection Slack routes an envelope to is Slack's choice (the simulator may keep
    // using the draining one until it closes it), so only the outcome is checked: every envelope
    // acked once on its own connection and emitted once.
    assert_exactly_once_and_acked(&sim, &items);
}

/// Distinct payloads the simulator wrote: events_api by event_id, the others by envelope.
fn distinct_payloads(sim: &SlackSim) -> usize {
    let records = sim.records();
    let mut seen = HashSet::new();
    records
        .envelopes
        .iter()
        .filter(|e| seen.insert(e.event_id.clone().unwrap_or_else(|| e.envelope_id.clone())))
        .count()
}

#[test]
fn refresh_requested_rotates_without_gap_or_duplicate() {
    rotates_without_gap(DisconnectReason::RefreshRequested);
}

#[test]
fn warning_rotates_without_gap_or_duplicate() {
    rotates_without_gap(DisconnectReason::Warning);
}

#[test]
fn redelivered_envelope_is_emitted_once_and_both_acked() {
    let sim = start_sim();
    let (running, mut items) = open_collected(&sim);
    sim.inject(SlackAction::Messages(1));
    wait_all_acked(&mut items, &sim, 1);
    // The same event again under a new envelope_id (a redelivery after a lost ack), then the
    // very same envelope again.
    assert_eq!(
        sim.inject(SlackAction::Duplicate {
            new_envelope_id: true
        }),
        1
    );
    wait_all_acked(&mut items, &sim, 2);
    assert_eq!(
        sim.inject(SlackAction::Duplicate {
            new_envelope_id: false
        }),
        1
    );
    items.wait(WAIT, "the third ack", |_| {
        (sim.records().acks.len() >= 3).then_some(())
    });
    // A later envelope proves the duplicates were handled before it.
    sim.inject(SlackAction::Messages(1));
    wait_all_acked(&mut items, &sim, 4);
    items.wait(WAIT, "the later event", |items| {
        (slack_events(items).len() >= 2).then_some(())
    });
    close(&running, &mut items);

    let records = sim.records();
    let envelopes: Vec<_> = records.envelopes.iter().collect();
    assert_eq!(envelopes.len(), 4, "{envelopes:?}");
    assert_eq!(envelopes[0].event_id, envelopes[1].event_id);
    assert_ne!(envelopes[0].envelope_id, envelopes[1].envelope_id);
    assert!(envelopes[1].duplicate && envelopes[2].duplicate);
    for envelope in &envelopes[..3] {
        assert!(records.acked(&envelope.envelope_id), "{envelope:?} acked");
    }
    let events = slack_events(&items.items);
    assert_eq!(
        events.len(),
        2,
        "the duplicates are not emitted: {}",
        items.dump()
    );
    assert_eq!(
        events[0].meta["event_id"],
        envelopes[0].event_id.clone().unwrap()
    );
    assert!(
        items
            .items
            .iter()
            .any(|i| matches!(i, Item::Log(l) if l.action == "envelope.duplicate")),
        "{}",
        items.dump()
    );
    // Each copy acked once, on its connection (the same envelope twice gets two acks).
    let acks_of_first_copy = records
        .acks
        .iter()
        .filter(|a| a.envelope_id == envelopes[0].envelope_id)
        .count();
    assert_eq!(
        acks_of_first_copy, 2,
        "the repeated envelope is acked again"
    );
    assert!(records.acks.iter().all(|a| a.sent_on == Some(a.conn)));
    assert!(records.given_up.is_empty());
}

/// Closing the flume closes the Socket Mode connection with a close frame 1000 (a graceful
/// close, not a dropped TCP connection).
#[test]
fn close_sends_close_1000() {
    let sim = start_sim();
    let (running, mut items) = open_collected(&sim);
    sim.inject(SlackAction::Messages(1));
    wait_all_acked(&mut items, &sim, 1);
    close(&running, &mut items);
    let conn = sim.records().connections.iter().next().unwrap().conn;
    assert_eq!(
        client_close(&sim, conn).code,
        Some(1000),
        "a graceful close sends close 1000"
    );
    assert!(has_status(&items.items, "slack", "disconnected"));
}

#[test]
fn invalid_app_token_fails_open() {
    let sim = start_sim();
    let wrong = "xapp-1-A0WRONG-e2e-secret-token";
    let mut config = machine_config(&sim);
    config.app_token = wrong.into();
    let (mut items, on_item) = Collector::callback(&[wrong, sim.app_token(), sim.bot_token()]);
    let error = match open_with(config, on_item) {
        Ok(_) => panic!("open succeeded with a wrong app token"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert_eq!(error.failures.len(), 1, "{text}");
    assert_eq!(error.failures[0].source, "slack", "{text}");
    assert!(text.contains("invalid_auth"), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(sim.app_token()),
        "{text}"
    );
    items.drain_to_end(WAIT);
    assert!(
        has_status(&items.items, "slack", "failed"),
        "{}",
        items.dump()
    );
    assert!(sim.records().connections.is_empty());
}

#[test]
fn invalid_bot_token_fails_open() {
    let sim = start_sim();
    let wrong = "xoxb-0000-wrong-e2e-secret-token";
    let mut config = machine_config(&sim);
    config.bot_token = Some(wrong.into());
    let (mut items, on_item) = Collector::callback(&[wrong, sim.app_token(), sim.bot_token()]);
    let error = match open_with(config, on_item) {
        Ok(_) => panic!("open succeeded with a wrong bot token"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert_eq!(error.failures[0].source, "slack", "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(sim.bot_token()),
        "{text}"
    );
    items.drain_to_end(WAIT);
    assert!(
        has_status(&items.items, "slack", "failed"),
        "{}",
        items.dump()
    );
}
