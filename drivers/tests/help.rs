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

/// `--help` of a command, with a clean environment (clap prints the values of variables that
/// are set, e.g. `[env: OPENFLUME_FORMAT=json]`) and a fixed width, so wrapping is stable.
fn stable_help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Every subcommand's `--help` matches its committed snapshot: a change of wording, a new flag or
/// a lost environment variable shows up in review.
#[test]
fn help_of_every_subcommand_matches_its_snapshot() {
    let commands: &[&[&str]] = &[
        &[],
        &["listen"],
        &["cron"],
        &["cron", "next"],
        &["demo"],
        &["sim"],
        &["completions"],
        &["man"],
        &["log"],
        &["log", "tail"],
        &["serve"],
        &["replay"],
        &["consume"],
    ];
    for command in commands {
        let name = if command.is_empty() {
            "openflume".to_owned()
        } else {
            format!("openflume-{}", command.join("-"))
        };
        insta::assert_snapshot!(name, stable_help(command));
    }
}

/// Completions and the man page come from the same definitions as `--help`.
#[test]
fn completions_and_man_page_are_generated_from_the_definitions() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_openflume"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?} failed");
        String::from_utf8(output.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_openflume()"), "{bash}");
    assert!(bash.contains("--discord-intents"), "{bash}");
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef openflume"), "{zsh}");
    let man = run(&["man"]);
    assert!(man.contains(".TH openflume 1"), "{man}");
    let listen = run(&["man", "listen"]);
    assert!(listen.contains(".TH openflume-listen 1"), "{listen}");
    assert!(listen.contains(r"\-\-sources"), "{listen}");
    assert!(listen.contains("DISCORD_BOT_TOKEN_FILE"), "{listen}");
    let unknown = Command::new(env!("CARGO_BIN_EXE_openflume"))
        .args(["man", "lisen"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}
