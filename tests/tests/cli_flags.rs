//! The command line's conventions (issue 19), through the real binary: filters, named intents,
//! log routing, flag-named errors, idle-flag warnings, secrets from files, colour and local time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_sim::{
    DiscordAction, DiscordSim, DiscordSimConfig, SlackAction, SlackSim, SlackSimConfig,
};
use openflume_tests::{Openflume, block_on, discord_env, is_event_json};
use serde_json::Value;
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn listen(extra: &[&str], env: &[(&str, String)]) -> Openflume {
    openflume_tests::listen(extra, env, openflume_tests::Reader::Eager)
}

fn discord_sim() -> DiscordSim {
    openflume_tests::discord_sim(DiscordSimConfig::default())
}

fn wait_session(sim: &DiscordSim) {
    block_on(
        WAIT + Duration::from_secs(1),
        "the session",
        sim.wait_for(WAIT, |r| r.sessions().first().cloned()),
    )
    .expect("the binary identified");
}

fn json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `(source, type)` of every event line.
fn events(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .filter(|i| i["kind"] == "event")
        .map(|i| {
            (
                i["event"]["source"].as_str().unwrap().to_owned(),
                i["event"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A test-local file holding `content`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("openflume-cli-flags-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--sources` and `--types` (any case) print only what they name; a filtered-out Slack envelope
/// is still acknowledged (the writer commits it with its batch: nobody holds it).
#[test]
fn filters_print_only_what_they_name_and_still_ack_the_rest() {
    let discord = discord_sim();
    let slack = block_on(
        WAIT,
        "start the Slack simulator",
        SlackSim::start(SlackSimConfig::default()),
    )
    .expect("sim");
    let mut env = discord_env(&discord);
    env.extend([
        ("SLACK_APP_TOKEN", slack.app_token().to_owned()),
        ("SLACK_BOT_TOKEN", slack.bot_token().to_owned()),
        ("OPENFLUME_SLACK_API_URL", slack.api_url()),
    ]);
    let mut cli = listen(&["--sources", "DISCORD", "--types", "message_create"], &env);
    wait_session(&discord);
    block_on(
        WAIT + Duration::from_secs(1),
        "the Socket Mode connection",
        slack.wait_for(WAIT, |r| r.connections.last().cloned()),
    )
    .expect("connected to Slack");
    slack.inject(SlackAction::Messages(2));
    block_on(
        WAIT + Duration::from_secs(1),
        "the acks of the filtered-out envelopes",
        slack.wait_for(WAIT, |r| {
            (r.envelopes.len() >= 2 && r.envelopes.iter().all(|e| r.acked(&e.envelope_id)))
                .then_some(())
        }),
    )
    .expect("every filtered-out envelope was acked");
    discord.inject(DiscordAction::Messages(1));
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let items = json(&lines);
    assert_eq!(
        events(&items),
        [("discord".to_owned(), "MESSAGE_CREATE".to_owned())],
        "neither READY nor Slack's events were printed"
    );
    assert!(
        items.iter().any(|i| i["kind"] == "log"),
        "logs are not filtered"
    );
}

/// An unknown source is a usage error listing the known ones.
#[test]
fn an_unknown_source_exits_2() {
    let mut cli = listen(&["--cron", "* * * * *", "--sources", "time,discrod"], &[]);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        stderr.contains("--sources: unknown source \"discrod\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("discord, slack, github, time, custom"),
        "{stderr}"
    );
}

/// `--discord-events` in lower case matches, and a typo is warned about with the known names.
#[test]
fn discord_events_are_case_insensitive_and_typos_are_warned() {
    let sim = discord_sim();
    let mut cli = listen(
        &["--discord-events", "message_create,MESAGE_CREATE"],
        &discord_env(&sim),
    );
    let warning = cli.wait_for_stderr(WAIT, |l| l.contains("unknown dispatch name"));
    assert!(warning.contains("MESAGE_CREATE"), "{warning}");
    assert!(
        warning.contains("GUILD_CREATE"),
        "lists the known names: {warning}"
    );
    wait_session(&sim);
    sim.inject(DiscordAction::Messages(1));
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        events(&json(&lines)),
        [("discord".to_owned(), "MESSAGE_CREATE".to_owned())]
    );
}

/// Intents by name reach IDENTIFY as their bits; an unknown name exits 2 naming it.
#[test]
fn named_intents_reach_identify() {
    let sim = discord_sim();
    let mut cli = listen(
        &["--discord-intents", "guilds,GUILD_MESSAGES,Message_Content"],
        &discord_env(&sim),
    );
    let identify = block_on(
        WAIT + Duration::from_secs(1),
        "the IDENTIFY",
        sim.wait_for(WAIT, |r| r.identifies.iter().next().cloned()),
    )
    .expect("identified");
    assert_eq!(identify.intents, Some(1 | (1 << 9) | (1 << 15)));
    cli.terminate();
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut cli = listen(
        &["--discord-intents", "GUILDS,GUILD_TYPO"],
        &discord_env(&sim),
    );
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"GUILD_TYPO\""), "{stderr}");
    assert!(
        stderr.contains("GUILD_PRESENCES"),
        "lists the known names: {stderr}"
    );
}

/// `--logs stderr` leaves stdout to events and writes JSON log lines on stderr; `--logs off`
/// prints no log anywhere.
#[test]
fn logs_go_to_stderr_or_nowhere() {
    let sim = discord_sim();
    let mut cli = listen(&["--logs", "stderr"], &discord_env(&sim));
    wait_session(&sim);
    sim.inject(DiscordAction::Messages(1));
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let items = json(&lines);
    assert!(items.iter().all(|i| i["kind"] == "event"), "{lines:?}");
    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["kind"] == "log" && l["log"]["source"] == "discord"),
        "{stderr}"
    );

    let sim = discord_sim();
    let mut cli = listen(&["--logs", "off"], &discord_env(&sim));
    wait_session(&sim);
    sim.inject(DiscordAction::Messages(1));
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        json(&lines).iter().all(|i| i["kind"] == "event"),
        "{lines:?}"
    );
    assert!(!stderr.contains("\"kind\":\"log\""), "{stderr}");
}

/// A configuration error names the flag typed, not the config field behind it.
#[test]
fn configuration_errors_name_the_flag() {
    let env = vec![
        ("DISCORD_BOT_TOKEN", "MTIz.flag.token".to_owned()),
        (
            "OPENFLUME_DISCORD_GATEWAY_URL",
            "http://127.0.0.1:9".to_owned(),
        ),
    ];
    let mut cli = listen(&[], &env);
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("openflume: --discord-gateway-url: unsupported scheme"),
        "{stderr}"
    );
    assert!(!stderr.contains("gateway_url"), "{stderr}");
}

/// `--webhook NAME=ENV_VAR` whose variable is unset or blank is a usage error naming it.
#[test]
fn a_webhook_without_its_secret_exits_2() {
    for value in [None, Some("  ")] {
        let env: Vec<(&str, String)> = value
            .map(|v| ("OPENFLUME_TEST_DEPLOY_SECRET", v.to_owned()))
            .into_iter()
            .collect();
        let mut cli = listen(
            &[
                "--http",
                "127.0.0.1:0",
                "--webhook",
                "deploys=OPENFLUME_TEST_DEPLOY_SECRET",
            ],
            &env,
        );
        let (status, lines, stderr) = cli.wait_exit(WAIT);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(lines.is_empty(), "{lines:?}");
        assert!(
            stderr.contains(
                "--webhook: the environment variable OPENFLUME_TEST_DEPLOY_SECRET (the secret of deploys) is not set"
            ),
            "{stderr}"
        );
    }
}

/// A flag for a source that is not enabled, and a reconnect flag with GitHub, are warned about.
#[test]
fn idle_flags_are_warned_about() {
    let mut cli = Openflume::spawn(
        &[
            "listen",
            "--format",
            "json",
            "--cron",
            "* * * * *",
            "--discord-shard",
            "0/2",
            "--slack-connections",
            "2",
        ],
        &[("OPENFLUME_GITHUB_INTERVAL", "5".to_owned())],
    );
    for (flag, heading) in [
        ("--discord-shard", "Discord"),
        ("--slack-connections", "Slack"),
        (
            "--github-interval (from OPENFLUME_GITHUB_INTERVAL)",
            "GitHub",
        ),
    ] {
        let line = cli.wait_for_stderr(WAIT, |l| l.contains(flag));
        assert!(
            line.contains(&format!("the {heading} source is not enabled")),
            "{line}"
        );
    }
    // Signals are watched once the run starts: its first line says so.
    cli.wait_for_json(WAIT, |_| true);
    cli.terminate();
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");

    // GitHub backs off by its own rules: --reconnect-base-ms is said to do nothing for it.
    let mut cli = listen(
        &[
            "--start-timeout",
            "1",
            "--allow-partial",
            "--cron",
            "* * * * *",
        ],
        &[
            ("GITHUB_TOKEN", "ghp_idleflagtoken".to_owned()),
            ("OPENFLUME_GITHUB_API_URL", "http://127.0.0.1:9".to_owned()),
        ],
    );
    let line = cli.wait_for_stderr(WAIT, |l| l.contains("--reconnect-base-ms"));
    assert!(line.contains("does nothing for github"), "{line}");
}

/// `*_FILE` variables: the secret is read with its newline trimmed; both set, or an unreadable
/// file, exit 2 naming the variable and the file, never the content.
#[test]
fn secrets_come_from_files() {
    let sim = discord_sim();
    let token = TempFile::new("discord-token", &format!("{}\n", sim.token()));
    let env = vec![
        ("DISCORD_BOT_TOKEN_FILE", token.path()),
        ("OPENFLUME_DISCORD_API_URL", sim.api_url()),
    ];
    let mut cli = listen(&[], &env);
    wait_session(&sim);
    cli.terminate();
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut both = env.clone();
    both.push(("DISCORD_BOT_TOKEN", sim.token().to_owned()));
    let mut cli = listen(&[], &both);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(lines.is_empty());
    assert!(
        stderr.contains("DISCORD_BOT_TOKEN_FILE and DISCORD_BOT_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains(sim.token()), "{stderr}");

    let missing = format!("{}.missing", token.path());
    let mut cli = listen(&[], &[("GITHUB_TOKEN_FILE", missing.clone())]);
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GITHUB_TOKEN_FILE"), "{stderr}");
    assert!(stderr.contains(&missing), "names the file: {stderr}");
}

/// Flags come from `OPENFLUME_*` variables too.
#[test]
fn flags_come_from_the_environment() {
    let mut cli = Openflume::spawn(
        &["listen"],
        &[
            ("OPENFLUME_CRON", "* * * * *".to_owned()),
            ("OPENFLUME_FORMAT", "json".to_owned()),
            ("OPENFLUME_COUNT", "0".to_owned()),
            ("OPENFLUME_SOURCES", "bogus".to_owned()),
        ],
    );
    let (status, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--sources: unknown source \"bogus\""),
        "{stderr}"
    );
}

/// Pretty lines show the local zone's offset, and `--color always` colours them even off a
/// terminal and with NO_COLOR set; `--color never` does not.
#[test]
fn pretty_times_are_local_and_colour_is_chosen() {
    for (color, coloured) in [("always", true), ("never", false)] {
        let mut cli = Openflume::spawn(
            &[
                "listen",
                "--cron",
                "* * * * *",
                "--format",
                "pretty",
                "--logs",
                "stderr",
                "--color",
                color,
            ],
            &[
                ("TZ", "Asia/Kolkata".to_owned()),
                ("NO_COLOR", "1".to_owned()),
            ],
        );
        let line = cli.wait_for_stderr(WAIT, |l| l.contains("time"));
        assert!(line.contains("+05:30"), "{line:?}");
        assert_eq!(line.contains('\u{1b}'), coloured, "{line:?}");
        cli.terminate();
        let (status, _, stderr) = cli.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "{stderr}");
    }
}

/// `--cron NAME=EXPR` is checked as CronConfig::from_spec says: a name that reads as a cron
/// field, or a bad expression after a good name, is a usage error naming --cron.
#[test]
fn named_cron_schedules_are_checked() {
    for (spec, needle) in [
        (
            "5=* * * * *",
            "--cron: schedule name \"5\" reads as a cron field",
        ),
        (
            "Daily=@daily",
            "--cron: schedule name \"Daily\" must be one or more of",
        ),
        ("report=61 * * * *", "--cron: minute field"),
    ] {
        let mut cli = listen(&["--cron", spec], &[]);
        let (status, lines, stderr) = cli.wait_exit(WAIT);
        assert_eq!(status.code(), Some(2), "{spec}: {stderr}");
        assert!(lines.is_empty(), "{lines:?}");
        assert!(stderr.contains(needle), "{spec}: {stderr}");
    }
}
