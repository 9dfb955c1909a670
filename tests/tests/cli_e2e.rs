//! `openflume listen` end to end: the real binary against the simulators, read line by line as
//! JSON, with its exit codes and stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::Item;
use openflume_sim::{
    DiscordAction, DiscordSim, DiscordSimConfig, GithubSim, GithubSimConfig, SlackAction, SlackSim,
    SlackSimConfig,
};
use openflume_tests::{Openflume, assert_text_has_no_secret, block_on, discord_env, is_event_json};
use serde_json::Value;
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

/// Starts `openflume listen --format json …` with `extra` flags and `env`.
fn listen(extra: &[&str], env: &[(&str, String)]) -> Openflume {
    openflume_tests::listen(extra, env, openflume_tests::Reader::Eager)
}

fn discord_sim() -> DiscordSim {
    openflume_tests::discord_sim(DiscordSimConfig::default())
}

/// Every stdout line is a JSON item (`kind` event or log) and no output names a secret.
fn check_output(lines: &[String], stderr: &str, secrets: &[String]) -> Vec<Value> {
    assert_text_has_no_secret(stderr, secrets);
    lines
        .iter()
        .map(|line| {
            assert_text_has_no_secret(line, secrets);
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            match value["kind"].as_str() {
                Some("event") => assert!(value["event"]["type"].is_string(), "{line}"),
                Some("log") => assert!(value["log"]["action"].is_string(), "{line}"),
                _ => panic!("not an item: {line}"),
            }
            value
        })
        .collect()
}

/// The event types of `source`, in printed order.
fn event_types(items: &[Value], source: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i["kind"] == "event" && i["event"]["source"] == source)
        .map(|i| i["event"]["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until the Discord simulator gave out a session.
fn wait_session(sim: &DiscordSim) {
    block_on(
        WAIT + Duration::from_secs(1),
        "the session",
        sim.wait_for(WAIT, |r| r.sessions().first().cloned()),
    )
    .expect("the binary identified");
}

#[test]
fn discord_dispatch_becomes_a_json_line_and_sigterm_exits_0() {
    let sim = discord_sim();
    let mut cli = listen(&[], &discord_env(&sim));
    wait_session(&sim);
    sim.inject(DiscordAction::Messages(1));
    let line = cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    let event = &line["event"];
    assert_eq!(event["data"]["channel_id"], event["meta"]["channel_id"]);
    assert_eq!(event["meta"]["event_type"], "MESSAGE_CREATE");
    assert!(event["data"]["id"].is_string());
    assert!(event["receivedAt"].as_u64().unwrap() > 1_700_000_000_000);

    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let closed = block_on(
        WAIT + Duration::from_secs(1),
        "the close record",
        sim.wait_for(WAIT, |r| r.client_closes.last().cloned()),
    )
    .expect("the simulator saw the close");
    assert_eq!(
        closed.code,
        Some(1000),
        "SIGTERM closes the session with 1000"
    );
    let items = check_output(&lines, &stderr, &[sim.token().to_owned()]);
    assert_eq!(
        event_types(&items, "discord"),
        ["READY", "GUILD_CREATE", "MESSAGE_CREATE"],
        "every dispatch, READY included, printed once; lines:\n{}",
        lines.join("\n")
    );
}

/// What `listen --format json` prints reads back into `openflume_proto::Item` (events with
/// their raw `data` included), as the README's format promises.
#[test]
fn json_lines_parse_back_into_items() {
    let sim = discord_sim();
    let mut cli = listen(&[], &discord_env(&sim));
    wait_session(&sim);
    sim.inject(DiscordAction::Messages(1));
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    check_output(&lines, &stderr, &[sim.token().to_owned()]);
    let mut events = 0;
    for line in &lines {
        let item: Item = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a JSON line does not read back as an Item ({e}): {line}"));
        assert_eq!(&serde_json::to_string(&item).unwrap(), line, "round trip");
        events += usize::from(matches!(item, Item::Event(_)));
    }
    assert!(events >= 1);
}

#[test]
fn slack_envelope_is_acked_and_printed() {
    let sim = block_on(
        WAIT,
        "start the Slack simulator",
        SlackSim::start(SlackSimConfig::default()),
    )
    .expect("sim");
    let env = vec![
        ("SLACK_APP_TOKEN", sim.app_token().to_owned()),
        ("SLACK_BOT_TOKEN", sim.bot_token().to_owned()),
        ("OPENFLUME_SLACK_API_URL", sim.api_url()),
    ];
    let mut cli = listen(&[], &env);
    block_on(
        WAIT + Duration::from_secs(1),
        "the Socket Mode connection",
        sim.wait_for(WAIT, |r| r.connections.last().cloned()),
    )
    .expect("the binary connected");
    sim.inject(SlackAction::Messages(1));
    let envelope = block_on(
        WAIT + Duration::from_secs(1),
        "the ack",
        sim.wait_for(WAIT, |r| {
            let envelope = r.envelopes.last()?;
            r.acked(&envelope.envelope_id).then(|| envelope.clone())
        }),
    )
    .expect("the envelope was acked");
    let line = cli.wait_for_json(WAIT, |line| is_event_json(line, "slack", "events_api"));
    assert_eq!(
        line["event"]["meta"]["event_id"].as_str(),
        envelope.event_id.as_deref()
    );
    let ack = sim
        .records()
        .acks
        .iter()
        .find(|a| a.envelope_id == envelope.envelope_id)
        .cloned()
        .unwrap();
    assert_eq!(ack.conn, envelope.conn);

    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let items = check_output(
        &lines,
        &stderr,
        &[sim.app_token().to_owned(), sim.bot_token().to_owned()],
    );
    assert_eq!(event_types(&items, "slack"), ["events_api"]);
}

#[test]
fn github_200_then_304() {
    let config = GithubSimConfig {
        poll_interval: 1,
        ..GithubSimConfig::default()
    };
    let sim = block_on(WAIT, "start the GitHub simulator", GithubSim::start(config)).expect("sim");
    let env = vec![
        ("GITHUB_TOKEN", sim.token().to_owned()),
        ("OPENFLUME_GITHUB_API_URL", sim.api_url()),
    ];
    let mut cli = listen(
        &["--github-interval", "1", "--github-bootstrap", "emit"],
        &env,
    );
    let mut seen = 0;
    cli.wait_for_json(WAIT, |line| {
        seen += usize::from(is_event_json(line, "github", "notification"));
        seen == 3
    });
    let statuses = block_on(
        WAIT + Duration::from_secs(1),
        "a 304",
        sim.wait_for(WAIT, |r| {
            let statuses = r.statuses();
            statuses.contains(&Some(304)).then_some(statuses)
        }),
    )
    .expect("a conditional request answered 304");
    assert_eq!(statuses[0], Some(200), "{statuses:?}");

    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let items = check_output(&lines, &stderr, &[sim.token().to_owned()]);
    assert_eq!(
        event_types(&items, "github"),
        ["notification", "notification", "notification"],
        "the 304 printed no event"
    );
}

#[test]
fn fatal_4004_exits_1_with_the_reason_on_stderr() {
    let sim = discord_sim();
    let wrong = "wrong-cli-discord-token.e2e.secret";
    let env = vec![
        ("DISCORD_BOT_TOKEN", wrong.to_owned()),
        ("OPENFLUME_DISCORD_GATEWAY_URL", sim.gateway_url()),
    ];
    // The reason reaches stderr whatever the log level.
    let mut cli = listen(&["--log-level", "off"], &env);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}\nlines: {lines:?}");
    assert!(stderr.contains("discord"), "{stderr}");
    assert!(stderr.contains("4004"), "{stderr}");
    check_output(&lines, &stderr, &[wrong.to_owned(), sim.token().to_owned()]);
    assert!(
        lines.is_empty(),
        "--log-level off prints no logs: {lines:?}"
    );
}

#[test]
fn no_source_is_a_usage_error_naming_the_flags() {
    let mut cli = listen(&[], &[]);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    for flag in [
        "--discord-token",
        "--slack-app-token",
        "--github-token",
        "--cron",
    ] {
        assert!(stderr.contains(flag), "{flag} in: {stderr}");
    }
}

#[test]
fn count_exits_0_after_n_events() {
    let sim = discord_sim();
    let mut cli = listen(&["--count", "3"], &discord_env(&sim));
    wait_session(&sim);
    // READY and GUILD_CREATE count: the third event is the first message.
    sim.inject(DiscordAction::Messages(3));
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "stderr: {stderr}\nlines:\n{}",
        lines.join("\n")
    );
    let items = check_output(&lines, &stderr, &[sim.token().to_owned()]);
    assert_eq!(
        event_types(&items, "discord"),
        ["READY", "GUILD_CREATE", "MESSAGE_CREATE"],
        "exactly 3 events; lines:\n{}",
        lines.join("\n")
    );
}

/// Reconnect flags below the floor are raised to it: a server that drops every connection at
/// once sees a few attempts a second, not thousands (issue 21).
#[test]
fn reconnect_flags_cannot_go_below_the_floor() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let env = vec![
        ("DISCORD_BOT_TOKEN", "MTIzNDU2.floor.token-Zz9".to_owned()),
        ("OPENFLUME_DISCORD_GATEWAY_URL", url),
    ];
    let mut cli = Openflume::spawn(
        &[
            "listen",
            "--format",
            "json",
            "--reconnect-base-ms",
            "1",
            "--reconnect-max-ms",
            "1",
        ],
        &env,
    );
    // Five attempts, each dropped at once: with the 250 ms floor the four waits between them
    // take at least 4 × 125 ms (the backoff draws from half the bound to the bound).
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let (stream, _) = listener.accept().expect("an attempt");
        drop(stream);
    }
    let took = started.elapsed();
    cli.terminate();
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        took >= Duration::from_millis(500),
        "five attempts in {took:?}"
    );
    assert!(stderr.contains("floor"), "the raise is said: {stderr}");
}
