//! Replays every `fixtures/slack/*.jsonl` through the Slack machine, snapshots the transcript, and
//! checks invariants that must hold in every scenario whatever the snapshot says.

// Test helpers panic to fail the test; clippy's in-test allowance covers only #[test] fns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::testing::{Entry, Fixture, Simulator, Transcript, invariants};
use openflume_proto::{ConnId, DeliveryId, Frame, Input, Output};
use std::collections::{BTreeMap, BTreeSet};

/// Distinctive parts of the fixture tokens and tickets; none may reach a log or a Debug string.
const TOKENS: &[&str] = &["SECRETAPPTOKEN", "SECRETBOTTOKEN"];
const TICKET: &str = "tkt-SECRET";

#[test]
fn fixtures() {
    let typed_messages = std::cell::Cell::new(0);
    insta::glob!("../../fixtures/slack", "*.jsonl", |path| {
        let fixture = Fixture::load(path).unwrap();
        let config: SlackConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
        assert!(
            !TOKENS.iter().any(|t| format!("{config:?}").contains(t)),
            "config Debug leaks a token"
        );
        let machine = SlackMachine::new(config, fixture.header.seed).unwrap();
        let (machine, transcript) = Simulator::run(machine, &fixture);
        let secrets: Vec<&str> = TOKENS.iter().copied().chain([TICKET]).collect();
        invariants::check(&machine, &transcript, &secrets);
        each_event_once(&transcript);
        acks_follow_delivery_on_the_receiving_connection(&transcript);
        connections_used_only_while_open(&transcript);
        typed_messages.set(typed_messages.get() + messages_read_typed(&transcript));
        insta::assert_snapshot!(transcript.to_jsonl());
    });
    assert!(typed_messages.get() > 0, "no fixture has a message event");
}

/// Every emitted `events_api` event whose inner event is a `message` with a channel and a `ts`
/// reads as a [`SlackMessage`](openflume_proto::slack::SlackMessage) that agrees with the
/// routing meta; returns how many did.
fn messages_read_typed(transcript: &Transcript) -> usize {
    let mut read = 0;
    for event in outputs(transcript).filter_map(|output| match output {
        Output::Emit { event, .. } if event.event_type == "events_api" => Some(event),
        _ => None,
    }) {
        let data = event.data.parse().unwrap();
        let inner = &data["event"];
        let complete = inner["type"] == "message"
            && inner["channel"].as_str().is_some_and(|c| !c.is_empty())
            && inner["ts"].as_str().is_some_and(|t| !t.is_empty());
        let view = event.slack_message();
        assert_eq!(view.is_some(), complete, "{}", event.data.get());
        if let Some(message) = view {
            assert_eq!(Some(&message.channel), event.meta.get("channel_id"));
            assert_eq!(message.user.as_ref(), event.meta.get("user_id"));
            read += 1;
        }
    }
    read
}

fn outputs(transcript: &Transcript) -> impl Iterator<Item = &Output> {
    transcript.outputs().map(|(_, out)| out)
}

fn each_event_once(transcript: &Transcript) {
    let mut seen = BTreeSet::new();
    for out in outputs(transcript) {
        if let Output::Emit { event, .. } = out
            && let Some(id) = event.meta.get("event_id")
        {
            assert!(seen.insert(id.clone()), "event {id} emitted twice");
        }
    }
}

fn envelope_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("envelope_id")?.as_str().map(str::to_owned)
}

/// Every emitted event is acknowledged (its envelope id, on the connection it came on) in the
/// drain that follows its `Delivered`, or the log says why not; never before.
fn acks_follow_delivery_on_the_receiving_connection(transcript: &Transcript) {
    let mut last_frame: Option<(ConnId, String)> = None;
    let mut awaiting: BTreeMap<DeliveryId, (ConnId, String)> = BTreeMap::new();
    let mut delivered: Option<(ConnId, String)> = None;
    let mut acked_early = BTreeSet::new();
    for (_, entry) in &transcript.entries {
        match entry {
            Entry::In { input, .. } => {
                if let Some(pending) = delivered.take() {
                    panic!("no ack and no log after delivery of {pending:?}");
                }
                last_frame = match input {
                    Input::Frame {
                        conn,
                        frame: Frame::Text(text),
                        ..
                    } => envelope_id(text).map(|id| (*conn, id)),
                    _ => None,
                };
                if let Input::Delivered { delivery } = input {
                    delivered = awaiting.remove(delivery);
                }
            }
            Entry::Out(Output::Emit {
                confirm: Some(delivery),
                ..
            }) => {
                let from = last_frame
                    .clone()
                    .expect("an emit follows an envelope frame");
                acked_early.insert(from.1.clone());
                awaiting.insert(*delivery, from);
            }
            Entry::Out(Output::Send {
                conn,
                frame: Frame::Text(text),
            }) => {
                let id = envelope_id(text).expect("the machine only sends acks");
                if delivered.as_ref() == Some(&(*conn, id.clone())) {
                    delivered = None;
                    acked_early.remove(&id);
                } else {
                    assert!(
                        !acked_early.contains(&id),
                        "envelope {id} acked before its delivery was confirmed"
                    );
                }
            }
            Entry::Out(Output::Log(log)) if log.action == "ack.orphaned" => delivered = None,
            _ => {}
        }
    }
}

/// Sends and closes name a connection the machine asked to open and has not closed itself.
fn connections_used_only_while_open(transcript: &Transcript) {
    let mut open = BTreeSet::new();
    let mut ever = BTreeSet::new();
    for out in outputs(transcript) {
        match out {
            Output::Connect { conn, .. } => {
                assert!(ever.insert(*conn), "connection id {conn:?} reused");
                open.insert(*conn);
            }
            Output::Send { conn, .. } => {
                assert!(open.contains(conn), "send on {conn:?}, not open")
            }
            Output::Close { conn, code, .. } => {
                assert_eq!(*code, 1000);
                assert!(open.remove(conn), "close of {conn:?}, not open");
            }
            _ => {}
        }
    }
}
