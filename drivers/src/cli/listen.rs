//! `openflume listen`: sources from flags and environment, the firehose to stdout.

use super::args::{Bootstrap, Compression, ListenArgs, LogLevel};
use super::output::{Format, ItemWriter};
use super::{UsageError, resolve_zone};
use crate::{Flume, Overflow, Running, Source};
use openflume_proto::cron::{CronConfig, CronMachine, Schedule};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{self, GithubConfig, GithubMachine};
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::{Item, Level, ReconnectPolicy, Status};
use std::io::IsTerminal;
use std::sync::Arc;

/// Builds the sources the flags enable; a flag that cannot work is a usage error naming it.
pub(crate) fn sources(args: &ListenArgs) -> Result<Vec<Source>, UsageError> {
    let reconnect = ReconnectPolicy {
        max_attempts: args.reconnect_max_attempts,
        base_ms: args.reconnect_base_ms,
        max_ms: args.reconnect_max_ms.max(args.reconnect_base_ms),
    };
    let mut sources = Vec::new();
    if let Some(token) = non_empty(&args.discord_token) {
        let mut config = DiscordConfig::new(token);
        if let Some(intents) = args.discord_intents {
            config.intents = intents;
        }
        config.shard_id = args.discord_shard.id;
        config.shard_count = args.discord_shard.count;
        config.events = args
            .discord_events
            .as_ref()
            .map(|events| events.iter().map(|e| e.trim().to_owned()).collect());
        config.compress = args.discord_compress == Compression::ZlibStream;
        config.api_base = args.discord_api_url.trim_end_matches('/').to_owned();
        config.gateway_url = args.discord_gateway_url.clone();
        config.reconnect = reconnect;
        let probe =
            DiscordShard::new(config.clone(), 0).map_err(|e| UsageError::flag("--discord-*", e))?;
        drop(probe);
        sources.push(Source::custom("discord", move |seed| {
            DiscordShard::new(config, seed)
        }));
    }
    if let Some(token) = non_empty(&args.slack_app_token) {
        let mut config = SlackConfig::new(token);
        config.bot_token = non_empty(&args.slack_bot_token).map(str::to_owned);
        config.connections = args.slack_connections;
        config.ping_interval_ms = args.slack_ping_interval.saturating_mul(1000);
        config.api_base = args.slack_api_url.trim_end_matches('/').to_owned();
        config.reconnect = reconnect;
        config
            .validate()
            .map_err(|e| UsageError::flag("--slack-*", e))?;
        sources.push(Source::custom("slack", move |seed| {
            SlackMachine::new(config, seed)
        }));
    }
    if let Some(token) = non_empty(&args.github_token) {
        let mut config = GithubConfig {
            token: token.to_owned(),
            ..GithubConfig::default()
        };
        config.interval_ms = args.github_interval.saturating_mul(1000);
        config.participating = args.github_participating;
        config.bootstrap = match args.github_bootstrap {
            Bootstrap::Skip => github::Bootstrap::Skip,
            Bootstrap::Emit => github::Bootstrap::Emit,
        };
        config.api_url = args.github_api_url.trim_end_matches('/').to_owned();
        config.reconnect.max_attempts = args.reconnect_max_attempts;
        let probe =
            GithubMachine::new(config.clone(), 0).map_err(|e| UsageError::flag("--github-*", e))?;
        drop(probe);
        sources.push(Source::custom("github", move |seed| {
            GithubMachine::new(config, seed)
        }));
    }
    if !args.cron.is_empty() {
        let zone = resolve_zone(args.tz.as_deref())?;
        for expr in &args.cron {
            Schedule::parse(expr).map_err(|e| UsageError::flag("--cron", e))?;
            let config = CronConfig::new(expr.clone());
            let zone = zone.clone();
            sources.push(Source::custom("time", move |seed| {
                CronMachine::new(config, zone, seed)
            }));
        }
    }
    if sources.is_empty() {
        return Err(UsageError(
            "no source enabled: set DISCORD_BOT_TOKEN (or --discord-token), SLACK_APP_TOKEN (or \
             --slack-app-token), GITHUB_TOKEN (or --github-token), or give --cron EXPR"
                .to_owned(),
        ));
    }
    Ok(sources)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// How the output side is set up, shared by `listen` and `demo`.
pub(crate) struct OutputOptions {
    pub(crate) format: Option<Format>,
    pub(crate) log_level: LogLevel,
    pub(crate) count: Option<u64>,
}

/// Opens the flume over `sources`, prints items until a signal, `--count`, or every source
/// failing, and returns the process exit code.
pub(crate) async fn run(sources: Vec<Source>, options: OutputOptions) -> i32 {
    let min_level = match options.log_level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error | LogLevel::Off => Level::Error,
    };
    let print_logs = options.log_level != LogLevel::Off;
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let format = options.format.unwrap_or(if terminal {
        Format::Pretty
    } else {
        Format::Json
    });
    let colour = terminal && std::env::var_os("NO_COLOR").is_none();

    let flume = Flume::builder()
        .sources(sources)
        .min_log_level(min_level)
        .build();
    let running = match flume.open().await {
        Ok(running) => Arc::new(running),
        Err(error) => {
            eprintln!("openflume: {error}");
            return 1;
        }
    };
    // Nothing is dropped on the way to stdout: a slow reader slows the sources instead.
    let mut stream = running.stream(128, Overflow::Backpressure);
    let watcher = smol::spawn(watch(running.clone()));

    // The writer runs on the executor beside the sources, so handing items over never crosses
    // threads (the main thread only waits).
    let count = options.count;
    let (events, broken_pipe) = smol::spawn(async move {
        let mut writer = ItemWriter::new(stdout, format, colour);
        let mut events = 0u64;
        let done = |events: u64| count.is_some_and(|count| events >= count);
        'read: while !done(events)
            && let Some(first) = stream.next().await
        {
            let mut next = Some(first);
            while let Some(item) = next {
                let is_event = matches!(item, Item::Event(_));
                if (is_event || print_logs) && writer.write(&item).is_err() {
                    return (events, true);
                }
                if is_event {
                    events += 1;
                    if done(events) {
                        break 'read;
                    }
                }
                next = stream.try_next();
            }
            if writer.flush().is_err() {
                return (events, true);
            }
        }
        (events, writer.flush().is_err())
    })
    .await;
    let closed = running.close().await;
    watcher.cancel().await;
    let statuses = closed.statuses();
    if broken_pipe {
        return 0;
    }
    if options.count.is_none_or(|count| events < count)
        && !statuses.is_empty()
        && statuses.iter().all(|s| s.status == Status::Failed)
    {
        for status in statuses {
            eprintln!("openflume: {status}");
        }
        return 1;
    }
    0
}

/// Closes the flume on SIGINT/SIGTERM, or once every source has ended by itself.
async fn watch(running: Arc<Running>) {
    let cancel = running.cancel_handle();
    let signals = async {
        match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            Ok(mut signals) => {
                use futures_lite::StreamExt;
                if signals.next().await.is_some() {
                    cancel.cancel();
                }
            }
            Err(error) => eprintln!("openflume: cannot watch signals: {error}"),
        }
        futures_lite::future::pending::<()>().await;
    };
    futures_lite::future::or(signals, async {
        running.wait().await;
    })
    .await;
}
