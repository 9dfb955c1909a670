//! Replays every Discord fixture and snapshots the transcript. Each snapshot was reviewed against
//! the Gateway documentation; `fixtures/discord/generate.py` writes the fixtures.

// Test helpers: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::discord::{
    DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard, ResumeState,
};
use openflume_proto::testing::{Fixture, Simulator, invariants};

#[test]
fn shard_fixtures() {
    insta::glob!("../../fixtures/discord", "*.jsonl", |path| {
        let fixture = Fixture::load(path).unwrap();
        let config: DiscordConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
        let token = config.token.clone();
        let machine = DiscordShard::new(config, fixture.header.seed).unwrap();
        let (machine, transcript) = Simulator::run(machine, &fixture);
        invariants::check(&machine, &transcript, &[token.expose()]);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
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
