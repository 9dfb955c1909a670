//! Replays every `fixtures/webhooks/*.jsonl` through the webhook ingress, snapshots the
//! transcript, and checks what must hold whatever the fixture: bytes only on open connections,
//! no answer to an emitted event before its delivery, never a 500, no secret anywhere.

// Helpers outside #[test] functions panic on broken fixtures on purpose: a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::testing::{Entry, Fixture, Simulator, Transcript, invariants};
use openflume_proto::webhook::{WebhookConfig, WebhookIngress};
use openflume_proto::{ConnId, DeliveryId, Input, Output};
use std::collections::{BTreeMap, BTreeSet};

fn run(path: &std::path::Path) -> (WebhookIngress, Transcript, WebhookConfig) {
    let fixture = Fixture::load(path).expect("fixture loads");
    let config: WebhookConfig =
        serde_json::from_value(fixture.header.config.clone()).expect("fixture config");
    let machine = WebhookIngress::new(config.clone()).expect("valid config");
    let (machine, transcript) = Simulator::run(machine, &fixture);
    (machine, transcript, config)
}

#[test]
fn fixtures() {
    insta::glob!("../../fixtures/webhooks", "*.jsonl", |path| {
        let (machine, transcript, config) = run(path);
        let mut secrets: Vec<&str> = config.senders.iter().map(|s| s.secret.expose()).collect();
        secrets.extend(config.slack_signing_secret.as_ref().map(|s| s.expose()));
        secrets.extend(config.github_secret.as_ref().map(|s| s.expose()));
        invariants::check(&machine, &transcript, &secrets);
        check_invariants(&transcript, path);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
}

/// The status code of a transmitted response.
fn status(bytes: &[u8]) -> u16 {
    let text = std::str::from_utf8(bytes).expect("responses are text");
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .expect("a status line")
}

fn check_invariants(transcript: &Transcript, path: &std::path::Path) {
    let name = path.display();
    let mut open = BTreeSet::new();
    // Per connection: deliveries emitted for it and not yet delivered.
    let mut unanswered: BTreeMap<ConnId, Vec<DeliveryId>> = BTreeMap::new();
    let mut last_conn = None;
    for (_, entry) in &transcript.entries {
        match entry {
            Entry::In { input, .. } => match input {
                Input::Opened { conn } => {
                    open.insert(*conn);
                }
                Input::Received { conn, .. } => last_conn = Some(*conn),
                Input::Closed { conn, .. } => {
                    open.remove(conn);
                }
                Input::Delivered { delivery } => {
                    for pending in unanswered.values_mut() {
                        pending.retain(|d| d != delivery);
                    }
                }
                _ => {}
            },
            Entry::Out(output) => match output {
                Output::Transmit { conn, bytes } => {
                    // An answer lets the connection's next request in: its emit comes after.
                    last_conn = Some(*conn);
                    let code = status(bytes.as_slice());
                    assert!(code != 500, "{name}: a 500");
                    if code == 200 {
                        assert!(
                            unanswered.get(conn).is_none_or(Vec::is_empty),
                            "{name}: 200 on {conn:?} before its event was delivered"
                        );
                    }
                }
                Output::Hangup { conn } | Output::Handoff { conn, .. } => {
                    open.remove(conn);
                    unanswered.remove(conn);
                }
                Output::Emit { event, confirm } => {
                    let Some(delivery) = *confirm else {
                        panic!("{name}: every webhook event waits for delivery")
                    };
                    assert!(
                        ["slack", "github", "custom"].contains(&event.source.as_ref()),
                        "{name}: source {}",
                        event.source
                    );
                    let conn = last_conn.expect("an emit follows received bytes");
                    unanswered.entry(conn).or_default().push(delivery);
                }
                Output::Log(log) => assert_eq!(log.source, "webhooks", "{name}"),
                Output::Status(_) => {}
                other => panic!("{name}: the ingress only serves, got {other:?}"),
            },
            Entry::Misuse(misuse) => panic!("{name}: misuse {misuse:?}"),
        }
    }
}
