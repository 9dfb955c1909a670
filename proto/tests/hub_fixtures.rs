//! Replays every `fixtures/hub/*.jsonl` through one hub session, snapshots what it asked for,
//! and checks what must hold in every session: items in ascending id order, never one at or
//! below the hello's position, reads that neither overlap nor skip, nothing after the close.

// Helpers outside #[test] functions panic on broken fixtures on purpose: a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::hub::{HubConfig, HubInput, HubOutput, HubSession};
use openflume_proto::{Millis, Now, UnixMillis};
use serde::Deserialize;
use std::fmt::Write;

#[derive(Deserialize)]
struct Header {
    config: HubConfig,
}

#[derive(Deserialize)]
struct Step {
    at: u64,
    #[serde(rename = "in")]
    input: HubInput,
}

fn now(at: u64) -> Now {
    Now {
        mono: Millis(at),
        wall: UnixMillis(1_764_100_000_000 + at as i64),
    }
}

/// Runs a fixture: timers fire in order up to each step. Returns the transcript.
fn run(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut session = HubSession::new(header.config);
    let mut transcript = String::new();
    let record = |at: u64, input: &HubInput, session: &mut HubSession, out: &mut String| {
        writeln!(out, "{}", serde_json::json!({"at": at, "in": input})).unwrap();
        while let Some(output) = session.poll_output() {
            writeln!(out, "{}", serde_json::json!({"at": at, "out": output})).unwrap();
        }
    };
    for line in lines {
        let step: Step = serde_json::from_str(line).unwrap();
        while let Some(deadline) = session.poll_timeout() {
            if deadline.0 > step.at {
                break;
            }
            session.handle_input(now(deadline.0), HubInput::Timer);
            record(deadline.0, &HubInput::Timer, &mut session, &mut transcript);
        }
        session.handle_input(now(step.at), step.input.clone());
        record(step.at, &step.input, &mut session, &mut transcript);
    }
    transcript
}

#[test]
fn fixtures() {
    insta::glob!("../../fixtures/hub", "*.jsonl", |path| {
        let transcript = run(path);
        check(&transcript, path);
        insta::assert_snapshot!(transcript);
    });
}

fn check(transcript: &str, path: &std::path::Path) {
    let name = path.display();
    let mut last_item = 0;
    let mut position = None;
    let mut closed = false;
    let mut last_read_after = None;
    for line in transcript.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(out) = entry.get("out") else {
            continue;
        };
        assert!(!closed, "{name}: output after the close: {line}");
        let output: HubOutput = serde_json::from_value(out.clone()).unwrap();
        match output {
            HubOutput::Send(frame) => {
                let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
                if frame["type"] == "item" {
                    let id = frame["event_id"].as_u64().unwrap();
                    assert!(id > last_item, "{name}: item {id} after {last_item}");
                    assert!(
                        position.is_none_or(|p| id > p),
                        "{name}: item {id} at or before the start"
                    );
                    last_item = id;
                }
            }
            HubOutput::ReadLog { after, until, .. } => {
                assert!(until > after, "{name}: an empty read");
                assert!(
                    after >= last_item,
                    "{name}: a read goes back over items sent"
                );
                if let Some(previous) = last_read_after {
                    assert!(after >= previous, "{name}: a read goes backwards");
                }
                position.get_or_insert(after);
                last_read_after = Some(after);
            }
            HubOutput::Close { reason, .. } => {
                assert!(
                    reason.len() <= 123,
                    "{name}: close reason too long for a frame"
                );
                closed = true;
            }
            _ => {}
        }
    }
}
