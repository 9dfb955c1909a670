//! Discord end to end: the real driver and the `DiscordShard` machine against the Discord
//! simulator over real sockets (REST `/gateway/bot`, Gateway WebSocket, zlib-stream), including
//! the Gateway's faults. The exactly-once check compares every dispatch the simulator wrote
//! (by session and seq) with what the firehose delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Overflow, Running, Source, StartError};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::{Item, Level, ReconnectPolicy, Status};
use openflume_sim::{
    Control, DiscordAction, DiscordSim, DiscordSimConfig, IdentifyOutcome, ResumeOutcome,
    SocketFault,
};
use openflume_tests::{Collector, block_on, data_field, dump, events_of, has_status};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn start_sim(heartbeat_ms: u64) -> DiscordSim {
    let config = DiscordSimConfig {
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        identify_spacing: Duration::ZERO,
        ..DiscordSimConfig::default()
    };
    block_on(
        WAIT,
        "start the Discord simulator",
        DiscordSim::start(config),
    )
    .expect("sim starts")
}

fn machine_config(sim: &DiscordSim, compress: bool) -> DiscordConfig {
    DiscordConfig {
        api_base: sim.api_url(),
        compress,
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 50,
            max_ms: 500,
        },
        ..DiscordConfig::new(sim.token())
    }
}

/// Opens a flume over `config` whose every item (from the start on) is collected through the
/// `on_item` callback.
fn open_collected(config: DiscordConfig, sim: &DiscordSim) -> (Running, Collector) {
    let (items, on_item) = Collector::callback(&[sim.token()]);
    let running = open_with(config, on_item).expect("opens");
    (running, items)
}

fn open_with(
    config: DiscordConfig,
    on_item: impl FnMut(&Item) + Send + 'static,
) -> Result<Running, StartError> {
    let flume = Flume::builder()
        .source(Source::custom("discord", move |seed| {
            DiscordShard::new(config, seed)
        }))
        .on_item(on_item)
        .start_timeout(Some(WAIT))
        .shutdown_grace(Duration::from_secs(3))
        .build();
    block_on(WAIT + Duration::from_secs(1), "open", flume.open())
}

fn close(running: &Running, items: &mut Collector) {
    block_on(WAIT, "close", running.close());
    items.drain_to_end(WAIT);
}

/// The dispatches the simulator wrote, one per (session, seq) in session then seq order, as
/// event types; replays of the same seq count once.
fn written_dispatches(sim: &DiscordSim) -> Vec<(String, u64, &'static str)> {
    let records = sim.records();
    let mut out = Vec::new();
    for session in records.sessions() {
        let mut by_seq: BTreeMap<u64, &'static str> = BTreeMap::new();
        for d in records.dispatches.iter() {
            if *d.session_id == *session {
                by_seq.insert(d.seq, d.event);
            }
        }
        out.extend(by_seq.into_iter().map(|(seq, t)| (session.clone(), seq, t)));
    }
    out
}

/// How many MESSAGE_CREATE dispatches the simulator wrote (once per seq).
fn written_messages(sim: &DiscordSim) -> usize {
    written_dispatches(sim)
        .iter()
        .filter(|(_, _, t)| *t == "MESSAGE_CREATE")
        .count()
}

/// Every seq written in every session was delivered exactly once, in order, and nothing else was.
fn assert_exactly_once(sim: &DiscordSim, items: &Collector) {
    let written: Vec<&str> = written_dispatches(sim).iter().map(|(_, _, t)| *t).collect();
    let delivered: Vec<&str> = items
        .events("discord")
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        delivered,
        written,
        "delivered dispatch types differ from the simulator's dispatches (once per seq); items:\n{}",
        items.dump()
    );
    let ids: Vec<String> = items
        .events_of_type("discord", "MESSAGE_CREATE")
        .iter()
        .map(|e| data_field(e, "/id").unwrap().as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a message was delivered twice: {ids:?}"
    );
}

/// Waits until every MESSAGE_CREATE the simulator wrote was delivered (and at least `min`).
fn wait_all_messages(items: &mut Collector, sim: &DiscordSim, min: usize) {
    items.wait(WAIT, "every written MESSAGE_CREATE delivered", |items| {
        let written = written_messages(sim);
        let delivered = events_of(items, "discord")
            .iter()
            .filter(|e| e.event_type == "MESSAGE_CREATE")
            .count();
        (written >= min && delivered >= written).then_some(())
    });
}

/// Injects `fault` on the one open connection, with two messages produced while the session is
/// away (buffered by the server and replayed), checks that `session` comes back by RESUME, then
/// sends two more messages.
fn fault_then_resume(
    sim: &DiscordSim,
    items: &mut Collector,
    fault: DiscordAction,
    what: &str,
    session: &str,
) {
    assert_eq!(sim.inject(fault), 1);
    sim.inject(DiscordAction::Messages(2));
    let resume = items.wait(WAIT, &format!("a RESUME after {what}"), |_| {
        sim.records().resumes.iter().next().cloned()
    });
    assert_eq!(resume.session_id, session);
    assert!(
        matches!(resume.outcome, ResumeOutcome::Resumed { .. }),
        "{resume:?}"
    );
    sim.inject(DiscordAction::Messages(2));
}

fn has_log(items: &[Item], action: &str) -> bool {
    items
        .iter()
        .any(|i| matches!(i, Item::Log(l) if l.source == "discord" && l.action == action))
}

#[test]
fn identify_ready_and_dispatches_with_meta() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    let ready = items.wait(WAIT, "READY", |items| {
        events_of(items, "discord")
            .into_iter()
            .find(|e| e.event_type == "READY")
            .cloned()
    });
    let sessions = sim.records().sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        data_field(&ready, "/session_id").unwrap(),
        sessions[0].as_str()
    );
    assert_eq!(ready.meta.get("event_type").unwrap(), "READY");

    assert_eq!(sim.inject(DiscordAction::Messages(3)), 1);
    let messages = items.wait(WAIT, "3 MESSAGE_CREATE", |items| {
        let m: Vec<_> = events_of(items, "discord")
            .into_iter()
            .filter(|e| e.event_type == "MESSAGE_CREATE")
            .cloned()
            .collect();
        (m.len() == 3).then_some(m)
    });
    for m in &messages {
        assert_eq!(m.source, "discord");
        assert_eq!(m.meta["event_type"], "MESSAGE_CREATE");
        assert_eq!(
            data_field(m, "/channel_id").unwrap(),
            m.meta["channel_id"].as_str()
        );
        assert_eq!(
            data_field(m, "/guild_id").unwrap(),
            m.meta["guild_id"].as_str()
        );
        assert_eq!(
            data_field(m, "/author/id").unwrap(),
            m.meta["user_id"].as_str()
        );
        assert!(m.received_at.0 > 1_700_000_000_000, "{:?}", m.received_at);
        assert!(
            m.data.get().len() > 1000,
            "the payload is passed through whole"
        );
    }
    assert_eq!(
        running.statuses()[0].status,
        Status::Connected,
        "{:?}",
        running.statuses()
    );

    close(&running, &mut items);
    let records = sim.records();
    let identify = records.identifies.iter().next().unwrap();
    assert_eq!(identify.intents, Some(37377));
    assert_eq!(identify.shard, Some([0, 1]));
    let conn = records.connections.iter().next().unwrap();
    assert_eq!(conn.version.as_deref(), Some("10"));
    assert_eq!(conn.encoding.as_deref(), Some("json"));
    assert!(
        records
            .http
            .iter()
            .any(|h| h.path.ends_with("/gateway/bot") && h.status == Some(200)),
        "{:?}",
        records.http
    );
    let closed = block_on(
        WAIT + Duration::from_secs(1),
        "the client close record",
        sim.wait_for(WAIT, |r| r.client_closes.last().cloned()),
    )
    .expect("the simulator saw the close");
    assert_eq!(closed.code, Some(1000), "close ends the session with 1000");
    assert_eq!(sim.records().client_closes.len(), 1);
    assert!(has_status(&items.items, "discord", "disconnected"));
    assert_exactly_once(&sim, &items);
}

#[test]
fn zombie_connection_resumes_without_loss_or_duplicates() {
    let sim = start_sim(500);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    sim.inject(DiscordAction::Messages(2));
    wait_all_messages(&mut items, &sim, 2);
    let session = sim.records().sessions()[0].clone();

    // The server stops acking; keep producing dispatches until the client resumed, so some
    // are written to the zombie connection after the client gave up on it.
    assert_eq!(sim.inject(DiscordAction::StopHeartbeatAcks), 1);
    let mut ticks = 0u32;
    let resume = items.wait(WAIT, "a RESUME after the zombie", |_| {
        ticks += 1;
        if ticks.is_multiple_of(5) {
            sim.inject(DiscordAction::Messages(1));
        }
        sim.records().resumes.iter().next().cloned()
    });
    assert_eq!(resume.session_id, session, "resumes the same session");
    assert!(
        matches!(resume.outcome, ResumeOutcome::Resumed { .. }),
        "{resume:?}"
    );
    sim.inject(DiscordAction::Messages(2));
    wait_all_messages(&mut items, &sim, 4);
    assert!(
        has_log(&items.items, "heartbeat.zombie"),
        "{}",
        items.dump()
    );
    close(&running, &mut items);

    let records = sim.records();
    assert!(
        records
            .heartbeats
            .iter()
            .any(|h| h.conn != resume.conn && !h.acked),
        "the zombie connection had an unacked heartbeat: {:?}",
        records.heartbeats
    );
    let first_close = records
        .client_closes
        .iter()
        .find(|c| c.conn != resume.conn)
        .expect("the zombie connection ended");
    assert!(
        !matches!(first_close.code, Some(1000 | 1001)),
        "the zombie is closed resumable, not with {:?}",
        first_close.code
    );
    assert_eq!(records.sessions(), vec![session], "no new IDENTIFY");
    assert_exactly_once(&sim, &items);
}

#[test]
fn op7_reconnect_resumes_without_loss_or_duplicates() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    sim.inject(DiscordAction::Messages(3));
    wait_all_messages(&mut items, &sim, 3);
    let session = sim.records().sessions()[0].clone();

    fault_then_resume(&sim, &mut items, DiscordAction::Reconnect, "op 7", &session);
    wait_all_messages(&mut items, &sim, 7);
    assert!(
        has_log(&items.items, "ws.reconnect.requested"),
        "{}",
        items.dump()
    );
    close(&running, &mut items);

    let records = sim.records();
    assert!(
        records
            .controls
            .iter()
            .any(|c| c.control == Control::Reconnect)
    );
    assert_eq!(records.sessions(), vec![session], "no new IDENTIFY");
    assert!(
        records
            .connections
            .iter()
            .any(|c| c.path.starts_with("/resume")),
        "resumed on resume_gateway_url: {:?}",
        records.connections
    );
    assert_exactly_once(&sim, &items);
}

#[test]
fn op9_not_resumable_identifies_a_new_session() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    sim.inject(DiscordAction::Messages(2));
    wait_all_messages(&mut items, &sim, 2);
    let first = sim.records().sessions()[0].clone();

    assert_eq!(
        sim.inject(DiscordAction::InvalidSession { resumable: false }),
        1
    );
    // The IDENTIFY after op 9 false waits 1–5 s by design.
    let second = items.wait(WAIT, "a second READY", |items| {
        let readies = events_of(items, "discord")
            .iter()
            .filter(|e| e.event_type == "READY")
            .count();
        let sessions = sim.records().sessions();
        (readies == 2 && sessions.len() == 2).then(|| sessions[1].clone())
    });
    assert_ne!(second, first, "a new session");
    sim.inject(DiscordAction::Messages(2));
    wait_all_messages(&mut items, &sim, 4);
    assert!(has_log(&items.items, "session.invalid"), "{}", items.dump());
    close(&running, &mut items);

    let records = sim.records();
    assert!(
        records.resumes.is_empty(),
        "no RESUME of a dead session: {:?}",
        records.resumes
    );
    assert_eq!(records.identifies.len(), 2);
    assert!(
        records
            .identifies
            .iter()
            .all(|i| matches!(i.outcome, IdentifyOutcome::Ready { .. }))
    );
    assert_exactly_once(&sim, &items);
}

#[test]
fn dropped_connection_resumes_without_loss_or_duplicates() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    sim.inject(DiscordAction::Messages(2));
    wait_all_messages(&mut items, &sim, 2);
    let session = sim.records().sessions()[0].clone();

    fault_then_resume(
        &sim,
        &mut items,
        DiscordAction::DropConnection,
        "the drop",
        &session,
    );
    wait_all_messages(&mut items, &sim, 6);
    assert!(
        has_status(&items.items, "discord", "reconnecting"),
        "{}",
        items.dump()
    );
    close(&running, &mut items);
    assert_eq!(sim.records().sessions(), vec![session], "no new IDENTIFY");
    assert_exactly_once(&sim, &items);
}

#[test]
fn wrong_token_4004_fails_the_source_and_open() {
    let sim = start_sim(41_250);
    let wrong = "wrong-discord-token.e2e.secret";
    let mut config = machine_config(&sim, true);
    config.token = wrong.into();
    // Straight to the Gateway, so the token is refused there (4004) rather than by REST.
    config.gateway_url = Some(sim.gateway_url());
    let seen: Arc<Mutex<Vec<Item>>> = Arc::default();
    let sink = seen.clone();
    let error = match open_with(config, move |item| sink.lock().unwrap().push(item.clone())) {
        Ok(_) => panic!("open succeeded with a wrong token"),
        Err(error) => error,
    };
    assert_eq!(error.failures.len(), 1, "{error}");
    assert_eq!(error.failures[0].source, "discord");
    assert!(error.failures[0].reason.contains("4004"), "{error}");
    let text = error.to_string();
    assert!(text.contains("discord"), "{text}");
    for secret in [wrong, sim.token()] {
        assert!(!text.contains(secret), "{text}");
    }
    let items = seen.lock().unwrap().clone();
    for item in &items {
        openflume_tests::assert_no_secret(item, &[wrong.to_owned(), sim.token().to_owned()]);
    }
    assert!(has_status(&items, "discord", "failed"), "{}", dump(&items));
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::Log(l) if l.level == Level::Error && l.source == "discord")),
        "an error log: {}",
        dump(&items)
    );
    let records = sim.records();
    assert_eq!(records.identifies.len(), 1, "no retry after 4004");
    assert_eq!(
        records.identifies.iter().next().unwrap().outcome,
        IdentifyOutcome::Closed { code: 4004 }
    );
}

#[test]
fn wrong_token_refused_by_gateway_bot_fails_open() {
    let sim = start_sim(41_250);
    let wrong = "wrong-discord-token.e2e.secret";
    let mut config = machine_config(&sim, true);
    config.token = wrong.into();
    let (mut items, on_item) = Collector::callback(&[wrong, sim.token()]);
    let error = match open_with(config, on_item) {
        Ok(_) => panic!("open succeeded with a wrong token"),
        Err(error) => error,
    };
    items.drain_to_end(WAIT);
    assert!(
        has_status(&items.items, "discord", "failed"),
        "{}",
        items.dump()
    );
    let text = error.to_string();
    assert_eq!(error.failures[0].source, "discord", "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(sim.token()),
        "{text}"
    );
    assert!(
        sim.records().connections.is_empty(),
        "no Gateway connection"
    );
}

/// A stream taken from the flume before the start sees everything of the start (the status
/// changes, READY, GUILD_CREATE): it is attached before any source runs.
#[test]
fn a_stream_taken_before_the_start_gets_everything_from_the_first_status() {
    let sim = start_sim(41_250);
    let config = machine_config(&sim, true);
    let flume = Flume::builder()
        .source(Source::custom("discord", move |seed| {
            DiscordShard::new(config, seed)
        }))
        .start_timeout(Some(WAIT))
        .build();
    let mut items = Collector::new(
        flume.stream(100_000, Overflow::Backpressure),
        &[sim.token()],
    );
    let running = block_on(WAIT + Duration::from_secs(1), "open", flume.open()).expect("opens");
    // Messages sent after open arrive anyway; what came before them must be there too.
    sim.inject(DiscordAction::Messages(3));
    wait_all_messages(&mut items, &sim, 3);
    let types: Vec<&str> = items
        .events("discord")
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types.get(..2),
        Some(&["READY", "GUILD_CREATE"][..]),
        "the dispatches of the start reach the first stream; items:\n{}",
        items.dump()
    );
    assert!(
        matches!(items.items.first(), Some(Item::Log(log)) if log.action == "status"),
        "the first item is the first status log; items:\n{}",
        items.dump()
    );
    assert!(
        has_status(&items.items, "discord", "connected"),
        "the status change of the start reaches the stream; items:\n{}",
        items.dump()
    );
    close(&running, &mut items);
    assert_exactly_once(&sim, &items);
}

#[test]
fn close_4004_while_running_fails_the_source() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    items.wait(WAIT, "READY", |items| {
        events_of(items, "discord")
            .iter()
            .any(|e| e.event_type == "READY")
            .then_some(())
    });
    sim.inject(DiscordAction::Fault(SocketFault::Close {
        code: 4004,
        reason: "Authentication failed.".into(),
    }));
    items.wait(WAIT, "status failed", |items| {
        has_status(items, "discord", "failed").then_some(())
    });
    let status = &running.statuses()[0];
    assert_eq!(status.status, Status::Failed, "{status}");
    close(&running, &mut items);
    assert_eq!(
        sim.records().connections.len(),
        1,
        "no reconnect after 4004"
    );
}

fn delivers_with_compression(compress: bool) {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, compress), &sim);
    sim.inject(DiscordAction::Messages(5));
    wait_all_messages(&mut items, &sim, 5);
    close(&running, &mut items);
    let records = sim.records();
    let conn = records.connections.iter().next().unwrap();
    let expected = compress.then(|| "zlib-stream".to_owned());
    assert_eq!(conn.compress, expected);
    assert_exactly_once(&sim, &items);
}

#[test]
fn zlib_stream_compression_delivers() {
    delivers_with_compression(true);
}

#[test]
fn uncompressed_delivers() {
    delivers_with_compression(false);
}

/// A consumer that drops its back-pressure stream is gone: the firehose must not keep waiting
/// for it, and the other consumers (here the `on_item` callback) keep receiving everything.
#[test]
fn a_dropped_backpressure_stream_does_not_stall_the_firehose() {
    let sim = start_sim(41_250);
    let (running, mut items) = open_collected(machine_config(&sim, true), &sim);
    drop(running.stream(4, Overflow::Backpressure));
    sim.inject(DiscordAction::Messages(20));
    wait_all_messages(&mut items, &sim, 20);
    close(&running, &mut items);
    assert_exactly_once(&sim, &items);
}

fn messages(items: &[Item]) -> usize {
    events_of(items, "discord")
        .iter()
        .filter(|e| e.event_type == "MESSAGE_CREATE")
        .count()
}

/// A run closed with `close_keeping_sessions` hands back its Discord session; the next run,
/// given it as `DiscordConfig::resume`, resumes (no IDENTIFY) and gets what was dispatched in
/// between, exactly once.
#[test]
fn a_session_kept_at_close_is_resumed_by_the_next_run() {
    use openflume_proto::Checkpoint;
    let sim = start_sim(1_000);
    let config = machine_config(&sim, true);
    let (running, mut items) = open_collected(config.clone(), &sim);
    sim.inject(DiscordAction::Messages(2));
    items.wait(WAIT, "two messages", |items| {
        (messages(items) == 2).then_some(())
    });
    let closed = block_on(
        WAIT,
        "close keeping the session",
        running.close_keeping_sessions(),
    );
    items.drain_to_end(WAIT);
    let Some(Checkpoint::DiscordSession(session)) = closed.checkpoint("discord") else {
        panic!("no session kept: {closed:?}")
    };
    let sessions = sim.records().sessions();
    assert_eq!(sessions, std::slice::from_ref(&session.session_id));

    // Dispatched while no process runs: the server keeps them for the resume.
    sim.inject(DiscordAction::Messages(3));
    let resumed = DiscordConfig {
        resume: Some(session.clone()),
        ..config
    };
    let (running, mut items) = open_collected(resumed, &sim);
    let resume = items.wait(WAIT, "a RESUME", |_| {
        sim.records().resumes.iter().next().cloned()
    });
    assert!(
        matches!(resume.outcome, ResumeOutcome::Resumed { .. }),
        "{resume:?}"
    );
    items.wait(WAIT, "the three missed messages", |items| {
        (messages(items) == 3).then_some(())
    });
    close(&running, &mut items);
    let records = sim.records();
    assert_eq!(
        records.identifies.len(),
        1,
        "the second run did not identify"
    );
    assert_eq!(records.sessions().len(), 1, "one session across both runs");
    assert!(
        items
            .events("discord")
            .iter()
            .all(|e| e.event_type != "READY"),
        "no READY on a resume"
    );
}
