//! Replays every `fixtures/outbox/*.jsonl` through one forwarding outbox, snapshots what it asked
//! for, and checks what must hold in every session: sends in event order, one at a time, each
//! outcome persisted before the next send, never a send of an event the persisted cursor has
//! passed, signatures that verify (recomputed here with ring, not with the crate's helpers), and
//! the secret in no output.
//!
//! A fixture whose header says `"position": "stream_id"` runs an outbox over a Redis Stream's
//! positions ([`StreamId`]); the same checks hold, `webhook-id` being the stream id.

// Helpers outside #[test] functions panic on broken fixtures on purpose: a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::hub::{HubPosition, StreamId};
use openflume_proto::outbox::{Outbox, OutboxConfig, OutboxInput, OutboxOutput, TargetState};
use openflume_proto::webhook::base64_encode;
use openflume_proto::{Millis, Now, UnixMillis};
use serde::Deserialize;
use std::fmt::Write;

const WALL: i64 = 1_764_100_000_000;

#[derive(Deserialize)]
struct Header {
    seed: u64,
    config: OutboxConfig,
    #[serde(default)]
    position: Position,
}

/// What the fixture's positions are.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Position {
    /// The SQLite log's integer ids.
    #[default]
    Integer,
    /// A Redis Stream's ids (`"1764100000000-0"`).
    StreamId,
}

#[derive(Deserialize)]
#[serde(bound = "P: HubPosition")]
struct Step<P: HubPosition> {
    at: u64,
    #[serde(rename = "in")]
    input: OutboxInput<P>,
}

fn now(at: u64) -> Now {
    Now {
        mono: Millis(at),
        wall: UnixMillis(WALL + at as i64),
    }
}

/// Runs a fixture, counting in the positions its header names, and checks its transcript.
fn run(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
    match header.position {
        Position::Integer => run_counting::<u64>(&header, lines, path),
        Position::StreamId => run_counting::<StreamId>(&header, lines, path),
    }
}

/// Feeds the steps to an outbox counting in `P`: due timers fire (at their deadline) before
/// each step. Returns the transcript, checked.
fn run_counting<'a, P: HubPosition>(
    header: &Header,
    lines: impl Iterator<Item = &'a str>,
    path: &std::path::Path,
) -> String {
    let mut outbox = Outbox::<P>::counting(header.config.clone(), header.seed).unwrap();
    let mut transcript = String::new();
    let mut feed = |at: u64, input: OutboxInput<P>, outbox: &mut Outbox<P>| {
        let line = match outbox.handle_input(now(at), input.clone()) {
            Ok(()) => serde_json::json!({"at": at, "in": input}),
            Err(misuse) => {
                serde_json::json!({"at": at, "in": input, "misuse": misuse.to_string()})
            }
        };
        writeln!(transcript, "{line}").unwrap();
        while let Some(output) = outbox.poll_output() {
            writeln!(
                transcript,
                "{}",
                serde_json::json!({"at": at, "out": output})
            )
            .unwrap();
        }
    };
    for line in lines {
        let step: Step<P> = serde_json::from_str(line).unwrap();
        while let Some(deadline) = outbox.poll_timeout() {
            if deadline.0 > step.at {
                break;
            }
            feed(deadline.0, OutboxInput::Timer, &mut outbox);
        }
        feed(step.at, step.input, &mut outbox);
    }
    check::<P>(&header.config, &transcript, path);
    transcript
}

#[test]
fn replay_outbox_fixtures() {
    insta::glob!("../../fixtures/outbox", "*.jsonl", |path| {
        let transcript = run(path);
        insta::assert_snapshot!(transcript);
    });
}

/// HMAC-SHA256 with ring, apart from the crate's signing code.
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

/// How far a transcript got into disabling its target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Disabled {
    No,
    Logged,
    Stored,
}

/// `value` is a position written as `P` writes it (a number, or a stream id's string).
fn is_position<P: HubPosition>(value: &serde_json::Value) -> bool {
    serde_json::from_value::<P>(value.clone())
        .is_ok_and(|position| serde_json::to_value(position).ok().as_ref() == Some(value))
}

fn check<P: HubPosition>(config: &OutboxConfig, transcript: &str, path: &std::path::Path) {
    let name = path.display();
    let secret = config.secret.expose();
    assert!(
        !transcript.contains(secret),
        "{name}: the secret is in an output"
    );
    // The fixtures use plain secrets: the key is the secret's bytes.
    let key = secret.as_bytes();
    let mut persisted: Option<TargetState<P>> = None;
    let mut last_sent = P::default();
    let mut sent_since_persist = false;
    let mut disabled = Disabled::No;
    for line in transcript.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(out) = entry.get("out") else {
            continue;
        };
        let output = serde_json::from_value::<OutboxOutput<P>>(out.clone()).unwrap();
        // After the disabling log, only the disabled state may be stored; then nothing.
        match (&output, disabled) {
            (_, Disabled::No) => {}
            (OutboxOutput::Persist(state), Disabled::Logged) if state.disabled => {}
            _ => panic!("{name}: output after the target was disabled: {line}"),
        }
        match output {
            OutboxOutput::Send {
                event_id, request, ..
            } => {
                assert!(
                    !sent_since_persist,
                    "{name}: a send before the last one's outcome was persisted: {line}"
                );
                assert!(
                    event_id >= last_sent,
                    "{name}: event {event_id} after {last_sent}"
                );
                if let Some(state) = &persisted {
                    assert!(
                        event_id > state.delivered_through,
                        "{name}: event {event_id} sent after the cursor passed it"
                    );
                }
                last_sent = event_id;
                sent_since_persist = true;
                let header = |wanted: &str| {
                    request
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| panic!("{name}: no {wanted} header"))
                };
                let body = request.body.as_slice();
                let body_json: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert_eq!(
                    body_json["event_id"],
                    serde_json::to_value(event_id).unwrap(),
                    "{name}: body of another event"
                );
                let hex: String = hmac(key, body).iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(header("X-Openflume-Signature"), format!("sha256={hex}"));
                assert_eq!(header("webhook-id"), event_id.to_string());
                let timestamp = header("webhook-timestamp");
                let at = entry["at"].as_i64().unwrap();
                assert_eq!(timestamp, ((WALL + at) / 1000).to_string());
                let message = format!("{event_id}.{timestamp}.");
                let tag = hmac(key, &[message.as_bytes(), body].concat());
                assert_eq!(
                    header("webhook-signature"),
                    format!("v1,{}", base64_encode(&tag))
                );
                assert_eq!(header("Content-Type"), "application/json");
            }
            OutboxOutput::Persist(state) => {
                if let Some(before) = &persisted {
                    assert!(
                        state.delivered_through >= before.delivered_through,
                        "{name}: the cursor went back"
                    );
                }
                if state.disabled {
                    disabled = Disabled::Stored;
                }
                persisted = Some(state);
                sent_since_persist = false;
            }
            OutboxOutput::Log(log) => {
                let detail = log.detail.unwrap_or_default();
                assert_eq!(
                    detail["target"], config.url,
                    "{name}: a log that does not name its target"
                );
                if matches!(log.action.as_str(), "forward.gave_up" | "forward.disabled") {
                    assert!(is_position::<P>(&detail["event_id"]), "{name}: {line}");
                }
                if log.action == "forward.disabled" {
                    disabled = Disabled::Logged;
                }
            }
            _ => {}
        }
    }
}
