//! `--help` is complete: every subcommand and every `listen` flag group is documented.
//! (Being an integration test of this package also makes `cargo test --workspace` build the
//! `openflume` binary that the cross-crate tests in `tests/` run.)

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn top_level_help_lists_every_command() {
    let text = help(&["--help"]);
    for command in ["listen", "cron", "demo", "sim", "log"] {
        assert!(text.contains(command), "--help misses {command}:\n{text}");
    }
    assert!(text.contains("Exit codes"), "{text}");
}

#[test]
fn listen_help_covers_every_source_and_recommends_environment_variables() {
    let text = help(&["listen", "--help"]);
    for flag in [
        "--discord-token",
        "DISCORD_BOT_TOKEN",
        "--slack-app-token",
        "SLACK_APP_TOKEN",
        "--github-token",
        "GITHUB_TOKEN",
        "--cron",
        "--tz",
        "--reconnect-max-attempts",
        "--log-level",
        "--format",
        "--count",
        "OPENFLUME_DISCORD_GATEWAY_URL",
    ] {
        assert!(text.contains(flag), "listen --help misses {flag}");
    }
    assert!(text.contains("prefer the environment variable"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args(["listen", "--discord-shard", "3/2"])
        .env_remove("DISCORD_BOT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--discord-shard"));
}
