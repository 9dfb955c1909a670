//! Replays every Discord fixture and snapshots the transcript. Each snapshot was reviewed against
//! the Gateway documentation; `fixtures/discord/generate.py` writes the fixtures.

// Test helpers: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::discord::{
    DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard, ResumeState,
};
use openflume_proto::testing::{Fixture, Simulator, Transcript, invariants};
use openflume_proto::{Event, Output};
use std::cell::Cell;

#[test]
fn shard_fixtures() {
    let typed_messages = Cell::new(0);
    insta::glob!("../../fixtures/discord", "*.jsonl", |path| {
        let fixture = Fixture::load(path).unwrap();
        let config: DiscordConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
        let token = config.token.clone();
        let machine = DiscordShard::new(config, fixture.header.seed).unwrap();
        let (machine, transcript) = Simulator::run(machine, &fixture);
        invariants::check(&machine, &transcript, &[token.expose()]);
        typed_messages.set(typed_messages.get() + messages_read_typed(&transcript));
        insta::assert_snapshot!(transcript.to_jsonl());
    });
    assert!(typed_messages.get() > 0, "no fixture has a MESSAGE_CREATE");
}

/// Every emitted `MESSAGE_CREATE` whose data has an id, a channel and an author reads as a
/// [`DiscordMessage`](openflume_proto::discord::DiscordMessage) that agrees with the routing
/// meta; returns how many did.
fn messages_read_typed(transcript: &Transcript) -> usize {
    let events = transcript.outputs().filter_map(|(_, output)| match output {
        Output::Emit { event, .. } if event.event_type == "MESSAGE_CREATE" => Some(event),
        _ => None,
    });
    let mut read = 0;
    for event in events {
        let data = event.data.parse().unwrap();
        let complete = data["id"].is_string()
            && data["channel_id"].is_string()
            && data["author"]["id"].is_string();
        let view = Event::discord_message(event);
        assert_eq!(view.is_some(), complete, "{}", event.data.get());
        if let Some(message) = view {
            assert_eq!(Some(&message.channel_id), event.meta.get("channel_id"));
            assert_eq!(Some(&message.author_id), event.meta.get("user_id"));
            read += 1;
        }
    }
    read
}

/// The fixture's description promises what a restart may resume from once the shutdown is done.
#[test]
fn shutdown_keep_session_keeps_what_resume_needs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/discord/shutdown_keep_session.jsonl"
    );
    let fixture = Fixture::load(path).unwrap();
    let config: DiscordConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
    let machine = DiscordShard::new(config, fixture.header.seed).unwrap();
    let (machine, _) = Simulator::run(machine, &fixture);
    assert_eq!(
        machine.session(),
        Some(ResumeState {
            session_id: "9f3c1e7a2b4d6f80a1c3e5".into(),
            resume_gateway_url: "wss://gateway-us-east1-b.discord.gg".into(),
            seq: 2,
        })
    );
}

#[test]
fn gateway_fixtures() {
    insta::glob!("../../fixtures/discord_gateway", "*.jsonl", |path| {
        let fixture = Fixture::load(path).unwrap();
        let config: DiscordGatewayConfig =
            serde_json::from_value(fixture.header.config.clone()).unwrap();
        let token = config.shard.token.clone();
        let machine = DiscordGateway::new(config, fixture.header.seed).unwrap();
        let (machine, transcript) = Simulator::run(machine, &fixture);
        invariants::check(&machine, &transcript, &[token.expose()]);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
}
