//! Start failures name their cause (issue 21): `openflume listen` against a Slack simulator whose
//! `apps.connections.open` gives no usable URL says why on stdout as it happens (a status log),
//! and the start failure on stderr quotes it, instead of `(status connecting: connecting)`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_sim::{OpenAnswer, SlackAction, SlackSim, SlackSimConfig};
use openflume_tests::{Reader, block_on, is_status_json, listen};
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn slack_with(answer: OpenAnswer) -> SlackSim {
    let sim = block_on(
        WAIT,
        "start the Slack simulator",
        SlackSim::start(SlackSimConfig::default()),
    )
    .expect("sim starts");
    sim.inject(SlackAction::ConnectionsOpen {
        answer,
        times: 1_000,
    });
    sim
}

fn slack_env(sim: &SlackSim) -> Vec<(&'static str, String)> {
    vec![
        ("SLACK_APP_TOKEN", sim.app_token().to_owned()),
        ("OPENFLUME_SLACK_API_URL", sim.api_url()),
    ]
}

/// Each bad answer: a status log naming it appears while the start still waits (the start
/// timeout is far away), long before the start could fail.
#[test]
fn each_bad_connections_open_answer_is_named_as_it_happens() {
    let cases = [
        (OpenAnswer::NoUrl, "ok:true without a url"),
        (
            OpenAnswer::HttpUrl,
            "ok:true with a http:// url, not ws:// or wss://",
        ),
        (
            OpenAnswer::GarbageUrl,
            "ok:true with a url that does not parse",
        ),
        (
            OpenAnswer::NumberUrl,
            "ok:true with a url that is not a string",
        ),
        (OpenAnswer::Html, "a body that is not a JSON object"),
        (OpenAnswer::Unreachable, "failed to open"),
    ];
    for (answer, cause) in cases {
        let sim = slack_with(answer);
        let mut cli = listen(&["--start-timeout", "600"], &slack_env(&sim), Reader::Eager);
        let status = cli
            .try_wait_for_json(WAIT, |line| {
                is_status_json(line, "slack", "reconnecting")
                    && line["log"]["detail"]["reason"]
                        .as_str()
                        .is_some_and(|reason| reason.contains(cause))
            })
            .unwrap_or_else(|why| panic!("{answer:?}: no status naming {cause:?}: {why}"));
        let message = status["log"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("ticket=t"),
            "{answer:?}: a ticket in a log: {message}"
        );
        cli.terminate();
        cli.wait_exit(WAIT);
    }
}

/// The start failure quotes the last real error, not `(status connecting: connecting)`.
#[test]
fn the_start_failure_quotes_the_last_error() {
    let sim = slack_with(OpenAnswer::NoUrl);
    let mut cli = listen(&["--start-timeout", "2"], &slack_env(&sim), Reader::Eager);
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("last error: apps.connections.open failed: ok:true without a url")
            && stderr.contains("(status reconnecting)"),
        "stderr: {stderr}"
    );
}

/// A gateway that takes IDENTIFY and never sends READY: the status names it as soon as the READY
/// timeout (15 s) runs out, long before the start would fail, and the session is retried.
#[test]
fn ready_never_sent_is_named_as_it_happens() {
    let discord = openflume_tests::discord_sim(openflume_sim::DiscordSimConfig {
        withhold_ready: true,
        ..openflume_sim::DiscordSimConfig::default()
    });
    let env = openflume_tests::discord_env(&discord);
    let mut cli = listen(&["--start-timeout", "600"], &env, Reader::Eager);
    let status = cli
        .try_wait_for_json(Duration::from_secs(30), |line| {
            is_status_json(line, "discord", "reconnecting")
                && line["log"]["detail"]["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("READY not received within 15 s"))
        })
        .unwrap_or_else(|why| panic!("no status naming the missing READY: {why}"));
    assert!(
        !status.to_string().contains(discord.token()),
        "the token leaked: {status}"
    );
    cli.terminate();
    let (code, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(code.code(), Some(0), "stderr: {stderr}");
}
