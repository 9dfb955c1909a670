//! Every recorded session of every protocol, replayed with distinctive credentials: none may
//! appear in any log, status, error message or Debug output, nor in a panic message.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::discord::{DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard};
use openflume_proto::github::{GithubConfig, GithubMachine};
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::testing::{Fixture, Simulator, Transcript};
use openflume_proto::{Machine, Output};
use std::path::{Path, PathBuf};

const DISCORD: &str = "DISCORD-SECRET-7Hq2";
const SLACK_APP: &str = "xapp-1-A0-1-SLACK-APP-SECRET-b8W";
const SLACK_BOT: &str = "xoxb-1-SLACK-BOT-SECRET-c4Z";
const GITHUB: &str = "ghp_GITHUB-SECRET-d9X";
const SECRETS: &[&str] = &[
    DISCORD,
    "SLACK-APP-SECRET-b8W",
    "SLACK-BOT-SECRET-c4Z",
    "GITHUB-SECRET-d9X",
];

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", root.display());
    paths
}

/// Replays `path` with its credentials replaced, through `build`, and checks every output.
fn replay<M: Machine>(
    path: &Path,
    set_secrets: impl Fn(&mut serde_json::Value),
    build: impl Fn(serde_json::Value, u64) -> M,
) {
    let mut fixture = Fixture::load(path).unwrap();
    set_secrets(&mut fixture.header.config);
    let config = fixture.header.config.clone();
    let seed = fixture.header.seed;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (_machine, transcript) = Simulator::run(build(config, seed), &fixture);
        transcript
    }));
    match result {
        Ok(transcript) => check(path, &transcript),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert_no_secret(path, "panic message", &message);
            panic!("{}: the machine panicked: {message}", path.display());
        }
    }
}

fn check(path: &Path, transcript: &Transcript) {
    for (_, output) in transcript.outputs() {
        assert_no_secret(path, "Debug output", &format!("{output:?}"));
        match output {
            Output::Log(log) => assert_no_secret(path, "log", &serde_json::to_string(log).unwrap()),
            Output::Status(change) => {
                assert_no_secret(path, "status", &serde_json::to_string(change).unwrap())
            }
            Output::Emit { event, .. } => {
                assert_no_secret(path, "event meta", &format!("{:?}", event.meta))
            }
            _ => {}
        }
    }
}

fn assert_no_secret(path: &Path, what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{}: {what} leaks {secret}: {text}",
            path.display()
        );
    }
}

fn set(config: &mut serde_json::Value, key: &str, value: &str) {
    if let Some(object) = config.as_object_mut() {
        object.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    }
}

#[test]
fn discord_shard_fixtures_never_leak_the_token() {
    for path in fixtures("discord") {
        replay(
            &path,
            |config| set(config, "token", DISCORD),
            |config, seed| {
                let config: DiscordConfig = serde_json::from_value(config).unwrap();
                assert_no_secret(&path, "config Debug", &format!("{config:?}"));
                DiscordShard::new(config, seed).unwrap()
            },
        );
    }
}

#[test]
fn discord_gateway_fixtures_never_leak_the_token() {
    for path in fixtures("discord_gateway") {
        replay(
            &path,
            |config| {
                if let Some(shard) = config.get_mut("shard") {
                    set(shard, "token", DISCORD);
                }
            },
            |config, seed| {
                let config: DiscordGatewayConfig = serde_json::from_value(config).unwrap();
                DiscordGateway::new(config, seed).unwrap()
            },
        );
    }
}

#[test]
fn slack_fixtures_never_leak_the_tokens() {
    for path in fixtures("slack") {
        replay(
            &path,
            |config| {
                set(config, "app_token", SLACK_APP);
                if config.get("bot_token").is_some_and(|t| !t.is_null()) {
                    set(config, "bot_token", SLACK_BOT);
                }
            },
            |config, seed| {
                let config: SlackConfig = serde_json::from_value(config).unwrap();
                assert_no_secret(&path, "config Debug", &format!("{config:?}"));
                SlackMachine::new(config, seed).unwrap()
            },
        );
    }
}

#[test]
fn github_fixtures_never_leak_the_token() {
    for path in fixtures("github") {
        replay(
            &path,
            |config| set(config, "token", GITHUB),
            |config, seed| {
                let config: GithubConfig = serde_json::from_value(config).unwrap();
                assert_no_secret(&path, "config Debug", &format!("{config:?}"));
                GithubMachine::new(config, seed).unwrap()
            },
        );
    }
}
