//! Replays every Discord fixture and snapshots the transcript. Each snapshot was reviewed against
//! the Gateway documentation; `fixtures/discord/generate.py` writes the fixtures.

// Test helpers: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::discord::{DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard};
use openflume_proto::testing::{Fixture, Simulator, invariants};

#[test]
fn shard_fixtures() {
    insta::glob!("../../fixtures/discord", "*.jsonl", |path| {
        let fixture = Fixture::load(path).unwrap();
        let config: DiscordConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
        let token = config.token.clone();
        let machine = DiscordShard::new(config, fixture.header.seed).unwrap();
        let (machine, transcript) = Simulator::run(machine, &fixture);
        invariants::check(&machine, &transcript, &[&token]);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
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
        invariants::check(&machine, &transcript, &[&token]);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
}
