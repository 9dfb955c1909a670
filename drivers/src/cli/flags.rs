//! What the command line does around clap: secrets read from `*_FILE` variables, warnings for
//! flags that do nothing, and configuration errors named by the flag the user typed.

use super::UsageError;
use super::args::SourceArgs;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use openflume_proto::{ConfigError, Misuse};

/// Each secret that can come from a file: its field, its variable, its flag.
fn secret_slots(args: &mut SourceArgs) -> [(&mut Option<String>, &'static str, &'static str); 6] {
    [
        (
            &mut args.discord_token,
            "DISCORD_BOT_TOKEN",
            "--discord-token",
        ),
        (
            &mut args.slack_app_token,
            "SLACK_APP_TOKEN",
            "--slack-app-token",
        ),
        (
            &mut args.slack_bot_token,
            "SLACK_BOT_TOKEN",
            "--slack-bot-token",
        ),
        (&mut args.github_token, "GITHUB_TOKEN", "--github-token"),
        (
            &mut args.slack_signing_secret,
            "SLACK_SIGNING_SECRET",
            "--slack-signing-secret",
        ),
        (
            &mut args.github_webhook_secret,
            "GITHUB_WEBHOOK_SECRET",
            "--github-webhook-secret",
        ),
    ]
}

/// Reads each secret whose `<VAR>_FILE` is set (Docker and systemd credentials style), trimming
/// one trailing newline. Setting both the secret and its file, an unreadable file or an empty
/// one is a usage error that names the file and never its content.
pub(crate) fn read_secret_files(args: &mut SourceArgs) -> Result<(), UsageError> {
    for (value, var, flag) in secret_slots(args) {
        let file_var = format!("{var}_FILE");
        let Some(path) = std::env::var_os(&file_var).filter(|p| !p.is_empty()) else {
            continue;
        };
        let shown = std::path::Path::new(&path).display().to_string();
        if value.as_deref().is_some_and(|v| !v.trim().is_empty()) {
            return Err(UsageError(format!(
                "{file_var} and {var} (or {flag}) are both set: keep one"
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|error| {
            // The kind only: an io::Error never quotes the file, but keep it that way.
            UsageError(format!("{file_var}: cannot read {shown}: {}", error.kind()))
        })?;
        let secret = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if secret.trim().is_empty() {
            return Err(UsageError(format!("{file_var}: {shown} is empty")));
        }
        *value = Some(secret.to_owned());
    }
    Ok(())
}

/// The variable `--redis` had before it was renamed (as `--discord-identify-redis`, still its
/// alias): read when neither the flag nor OPENFLUME_REDIS is given, so that existing scripts
/// keep their identify queue. The warning names the variables, never the value (a URL may carry
/// a password).
pub(crate) fn read_renamed_vars(args: &mut SourceArgs, warn: impl Fn(String)) {
    const OLD: &str = "OPENFLUME_DISCORD_IDENTIFY_REDIS";
    let Some(url) = std::env::var(OLD).ok().filter(|url| !url.trim().is_empty()) else {
        return;
    };
    if args.redis.is_some() {
        warn(format!(
            "{OLD} is ignored: --redis (or OPENFLUME_REDIS) is given"
        ));
    } else {
        warn(format!("{OLD} is deprecated: set OPENFLUME_REDIS instead"));
        args.redis = Some(url);
    }
}

/// Warns about each flag given (on the command line, or through its `OPENFLUME_*` variable) for
/// a source that is not enabled, and about flags that do nothing for an enabled source.
/// Shared variables (`SLACK_BOT_TOKEN`, the webhook secrets) are not warned about when they come
/// from the environment: they may be set for other programs.
pub(crate) fn warn_idle_flags(
    args: &SourceArgs,
    subcommand: &str,
    matches: &ArgMatches,
    warn: impl Fn(String),
) {
    let enabled = |heading: &str| match heading {
        "Discord" => present(&args.discord_token),
        "Slack" => present(&args.slack_app_token),
        "GitHub" => present(&args.github_token),
        // `serve` always serves its port.
        "Webhooks" => subcommand == "serve" || args.http.is_some(),
        "Time" => !args.cron.is_empty(),
        _ => true,
    };
    let enabler = |heading: &str| match heading {
        "Discord" => "DISCORD_BOT_TOKEN or --discord-token",
        "Slack" => "SLACK_APP_TOKEN or --slack-app-token",
        "GitHub" => "GITHUB_TOKEN or --github-token",
        "Webhooks" => "--http ADDR",
        _ => "--cron EXPR",
    };
    let command = super::args::Cli::command();
    let Some(listen) = command.find_subcommand(subcommand) else {
        return;
    };
    for arg in listen.get_arguments() {
        let (Some(heading), Some(long)) = (arg.get_help_heading(), arg.get_long()) else {
            continue;
        };
        // The flags that enable their source.
        if matches!(
            long,
            "discord-token" | "slack-app-token" | "github-token" | "http" | "cron"
        ) {
            continue;
        }
        let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
        let given = match matches.value_source(arg.get_id().as_str()) {
            Some(ValueSource::CommandLine) => format!("--{long}"),
            // OPENFLUME_REDIS is `consume --redis` too: it may be set for the workers.
            Some(ValueSource::EnvVariable)
                if env.starts_with("OPENFLUME_") && env != "OPENFLUME_REDIS" =>
            {
                format!("--{long} (from {env})")
            }
            _ => continue,
        };
        if !enabled(heading) {
            warn(format!(
                "{given} does nothing: the {heading} source is not enabled ({} enables it)",
                enabler(heading)
            ));
        }
    }
    if present(&args.github_token) {
        for long in ["reconnect-base-ms", "reconnect-max-ms"] {
            if matches.value_source(&long.replace('-', "_")) == Some(ValueSource::CommandLine) {
                warn(format!(
                    "--{long} does nothing for github: its poller backs off by its own rules \
                     (Retry-After, X-Poll-Interval); it applies to discord and slack"
                ));
            }
        }
    }
}

fn present(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

/// The flag that sets `field` of `source`'s configuration, from the field the typed
/// [`ConfigError`] names; `None` for a field no flag sets.
fn flag_for(source: &str, field: &str) -> Option<&'static str> {
    Some(match (source, field) {
        ("discord", "gateway_url") => "--discord-gateway-url",
        ("discord", "api_base") => "--discord-api-url",
        ("discord", "shard_id" | "shard_count" | "shard_range") => "--discord-shards",
        ("discord", "token") => "--discord-token",
        ("discord", "intents") => "--discord-intents",
        ("slack", "app_token") => "--slack-app-token",
        ("slack", "bot_token") => "--slack-bot-token",
        ("slack", "api_base") => "--slack-api-url",
        ("slack", "connections") => "--slack-connections",
        ("slack", "ping_interval_ms") => "--slack-ping-interval",
        ("github", "token") => "--github-token",
        ("github", "api_url") => "--github-api-url",
        ("github", "interval_ms") => "--github-interval",
        ("webhooks", "path_prefix") => "--http-prefix",
        ("webhooks", "senders") => "--webhook",
        _ => return None,
    })
}

/// A configuration error from `source`'s validation, named by the flag that sets the field it
/// is about: `discord: gateway_url: unsupported scheme` becomes `--discord-gateway-url:
/// unsupported scheme`. A field no flag sets keeps the source's name (webhooks: `--http`).
pub(crate) fn config_error(source: &str, error: &ConfigError) -> UsageError {
    let flag = error.field().and_then(|field| flag_for(source, field));
    // The scope (`discord: `) is the flag's job now; so is the field, where the sentence is
    // `field: why` rather than one that reads on its own (`token is empty`).
    let why = match error.problem() {
        ConfigError::Url { reason, .. } | ConfigError::Invalid { reason, .. } if flag.is_some() => {
            reason.clone()
        }
        problem => problem.to_string(),
    };
    match flag {
        Some(flag) => UsageError::flag(flag, why),
        None if source == "webhooks" => UsageError::flag("--http", why),
        None => UsageError::flag(source, why),
    }
}

/// [`config_error`] for a machine's constructor; other misuse keeps the source's name.
pub(crate) fn misuse_error(source: &str, error: Misuse) -> UsageError {
    match error {
        Misuse::Config(error) => config_error(source, &error),
        other => UsageError::flag(source, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_flag() {
        let cases = [
            (
                "discord",
                ConfigError::Url {
                    field: "gateway_url",
                    reason: "unsupported scheme \"http\"".into(),
                }
                .in_scope("discord"),
                "--discord-gateway-url: unsupported scheme \"http\"",
            ),
            (
                "discord",
                ConfigError::Whitespace { field: "token" }.in_scope("discord"),
                "--discord-token: token contains whitespace or control characters",
            ),
            (
                "slack",
                ConfigError::NotAppToken { field: "app_token" },
                "--slack-app-token: app_token looks like a bot or user token (xox…): Socket Mode \
                 needs an app-level token (xapp-…) with the connections:write scope",
            ),
            (
                "slack",
                ConfigError::Url {
                    field: "api_base",
                    reason: "relative URL".into(),
                },
                "--slack-api-url: relative URL",
            ),
            (
                "github",
                ConfigError::NotHttp {
                    field: "api_url",
                    schemes: "http or https",
                }
                .in_scope("github"),
                "--github-api-url: api_url must be an http or https URL",
            ),
            (
                "discord",
                ConfigError::NotObject { field: "presence" }.in_scope("discord"),
                "discord: presence must be a JSON object",
            ),
            (
                "webhooks",
                ConfigError::SenderTwice {
                    field: "senders",
                    name: "billing".into(),
                },
                "--webhook: custom webhook billing is configured twice",
            ),
            (
                "webhooks",
                ConfigError::NoWebhookSecret,
                "--http: no webhook secret: set the Slack signing secret, the GitHub webhook \
                 secret or a custom sender",
            ),
        ];
        for (source, error, expected) in cases {
            assert_eq!(config_error(source, &error).0, expected);
        }
    }

    /// The real checks' errors, end to end: the typed field picks the flag.
    #[test]
    fn machine_errors_name_the_flag() {
        use openflume_proto::discord::{DiscordConfig, DiscordShard};
        let config = DiscordConfig {
            gateway_url: Some("http://example".into()),
            ..DiscordConfig::new("Bot abc")
        };
        let Err(error) = DiscordShard::new(config, 0) else {
            panic!("accepted an http gateway URL");
        };
        assert!(
            misuse_error("discord", error)
                .0
                .starts_with("--discord-gateway-url: unsupported scheme"),
        );
        assert_eq!(
            misuse_error("github", Misuse::NotStarted).0,
            "github: the machine has not been started: send Input::Start first"
        );
    }
}
