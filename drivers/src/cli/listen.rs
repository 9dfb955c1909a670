//! `openflume listen`: sources from flags and environment, the firehose to stdout.

use super::args::{Bootstrap, ColorChoice, LogLevel, LogRoute, SourceArgs};
use super::filter::EventFilter;
use super::flags::{config_error, misuse_error};
use super::output::{Format, neutral};
use super::redis_sink::RedisSinkPlan;
use super::writer::{LogSink, Writer, WriterEnd, WriterOptions};
use super::{UsageError, resolve_zone};
use crate::log::EventLog;
use crate::{Flume, FlumeBuilder, Overflow, Running, Source, StartError, StreamCursors};
use async_signal::{Signal, Signals};
use futures_lite::{StreamExt, future};
use openflume_proto::cron::{CronConfig, Schedule};
use openflume_proto::github::{self, GithubConfig, GithubMachine};
use openflume_proto::slack::SlackConfig;
use openflume_proto::webhook::{CustomSender, WebhookConfig, WebhookIngress};
use openflume_proto::{Checkpoint, ConfigError, Cursors, Level, ReconnectPolicy, Status};
use std::io::IsTerminal;
use std::time::Duration;

/// The least wait between two connection attempts, whatever the flags say: a server that closes
/// at once must not see thousands of connections a second (Discord's identify limits come on
/// top, in the machine).
const MIN_RECONNECT_MS: u64 = 250;

/// Builds the sources the flags enable; a flag that cannot work is a usage error naming it.
pub(crate) fn sources(args: &SourceArgs, resume: &Cursors) -> Result<Vec<Source>, UsageError> {
    let mut sources = upstream(args, resume)?;
    if let Some(source) = webhooks(args, resume)? {
        sources.push(source);
    }
    if sources.is_empty() {
        return Err(UsageError(
            "no source enabled: set DISCORD_BOT_TOKEN (or --discord-token), SLACK_APP_TOKEN (or \
             --slack-app-token), GITHUB_TOKEN (or --github-token), give --cron EXPR, or --http \
             ADDR with a webhook secret"
                .to_owned(),
        ));
    }
    Ok(sources)
}

/// The sources that connect out (Discord, Slack, GitHub) or tick (cron), without the webhook
/// ingress; each starts from its stored cursor in `resume`, if any.
pub(crate) fn upstream(args: &SourceArgs, resume: &Cursors) -> Result<Vec<Source>, UsageError> {
    for (flag, ms) in [
        ("--reconnect-base-ms", args.reconnect_base_ms),
        ("--reconnect-max-ms", args.reconnect_max_ms),
    ] {
        if ms < MIN_RECONNECT_MS {
            report(format_args!(
                "{flag} {ms} is below the {MIN_RECONNECT_MS} ms floor: using {MIN_RECONNECT_MS}"
            ));
        }
    }
    let base_ms = args.reconnect_base_ms.max(MIN_RECONNECT_MS);
    let reconnect = ReconnectPolicy {
        max_attempts: args.reconnect_max_attempts,
        base_ms,
        max_ms: args.reconnect_max_ms.max(base_ms),
    };
    let mut sources = Vec::new();
    if let Some(token) = non_empty(&args.discord_token) {
        sources.push(super::discord::source(token, args, resume, reconnect)?);
    }
    if let Some(token) = non_empty(&args.slack_app_token) {
        let mut config = SlackConfig::new(token);
        config.bot_token = non_empty(&args.slack_bot_token).map(Into::into);
        config.connections = args.slack_connections;
        config.ping_interval_ms = args.slack_ping_interval.saturating_mul(1000);
        config.api_base = args.slack_api_url.trim_end_matches('/').to_owned();
        config.reconnect = reconnect;
        if let Some(Checkpoint::Slack(cursor)) = resume.get("slack") {
            config.resume = Some(cursor.clone());
        }
        config.validate().map_err(|e| config_error("slack", &e))?;
        sources.push(Source::slack(config));
    }
    if let Some(token) = non_empty(&args.github_token) {
        let mut config = GithubConfig::new(token);
        config.interval_ms = args.github_interval.saturating_mul(1000);
        config.participating = args.github_participating;
        config.bootstrap = match args.github_bootstrap {
            Bootstrap::Skip => github::Bootstrap::Skip,
            Bootstrap::Emit => github::Bootstrap::Emit,
        };
        config.api_url = args.github_api_url.trim_end_matches('/').to_owned();
        config.reconnect.max_attempts = args.reconnect_max_attempts;
        if let Some(Checkpoint::Github(cursor)) = resume.get("github") {
            config.resume = Some(cursor.clone());
        }
        let probe = GithubMachine::new(config.clone(), 0).map_err(|e| misuse_error("github", e))?;
        drop(probe);
        sources.push(Source::github(config));
    }
    if !args.cron.is_empty() {
        let zone = resolve_zone(args.tz.as_deref())?;
        for spec in &args.cron {
            // `EXPR`, or `NAME=EXPR` for events of type NAME (CronConfig::from_spec's rule).
            let mut config = CronConfig::from_spec(spec).map_err(|e| match e {
                ConfigError::CronExpression { error, .. } => UsageError::flag("--cron", error),
                ConfigError::Invalid { reason, .. } => UsageError::flag("--cron", reason),
                other => UsageError::flag("--cron", other),
            })?;
            Schedule::parse(&config.expression).map_err(|e| UsageError::flag("--cron", e))?;
            if let Some(Checkpoint::Cron(cursor)) = resume.get("time") {
                config.last_fire = cursor.last_fire.get(&config.cursor_key()).copied();
            }
            config.catch_up = args
                .cron_catch_up
                .parse()
                .map_err(|e: String| UsageError::flag("--cron-catch-up", e))?;
            sources.push(Source::cron(config, zone.clone()));
        }
    }
    Ok(sources)
}

/// The redelivery keys of the webhook deliveries an earlier run kept: its GitHub and custom
/// deliveries, and its Slack events (by `event_id`, whichever transport brought them).
pub(crate) fn redelivery_keys(resume: &Cursors) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(Checkpoint::Webhooks(cursor)) = resume.get(openflume_proto::webhook::SOURCE) {
        keys.extend(cursor.recent.iter().map(|(key, _)| key.clone()));
    }
    if let Some(Checkpoint::Slack(cursor)) = resume.get("slack") {
        keys.extend(cursor.recent.iter().map(|(id, _)| format!("slack:{id}")));
    }
    keys
}

/// The webhook ingress, when `--http` asks for it; `--http` without a secret, or `--webhook`
/// without `--http`, is a usage error.
fn webhooks(args: &SourceArgs, resume: &Cursors) -> Result<Option<Source>, UsageError> {
    let Some(addr) = args.http else {
        if !args.webhook.is_empty() {
            return Err(UsageError::flag(
                "--webhook",
                "needs --http ADDR to serve it",
            ));
        }
        return Ok(None);
    };
    let mut config = webhook_config(args)?;
    config.resume = redelivery_keys(resume);
    if config.slack_signing_secret.is_none()
        && config.github_secret.is_none()
        && config.senders.is_empty()
    {
        return Err(UsageError::flag(
            "--http",
            "needs a webhook secret: set SLACK_SIGNING_SECRET, GITHUB_WEBHOOK_SECRET, or give \
             --webhook NAME=ENV_VAR",
        ));
    }
    WebhookIngress::new(config.clone()).map_err(|e| misuse_error("webhooks", e))?;
    Ok(Some(Source::webhooks(config, addr)))
}

/// The webhook channels the flags and the environment configure (possibly none).
pub(crate) fn webhook_config(args: &SourceArgs) -> Result<WebhookConfig, UsageError> {
    let senders = webhook_senders(&args.webhook)?;
    let config = WebhookConfig {
        path_prefix: args.http_prefix.clone(),
        slack_signing_secret: non_empty(&args.slack_signing_secret).map(Into::into),
        github_secret: non_empty(&args.github_webhook_secret).map(Into::into),
        senders,
        ..WebhookConfig::default()
    };
    Ok(config)
}

/// The custom senders of `--webhook NAME=ENV_VAR`, each with its secret from the environment: a
/// variable unset or blank is a usage error naming it, never a secret.
pub(crate) fn webhook_senders(
    webhooks: &[(String, String)],
) -> Result<Vec<CustomSender>, UsageError> {
    webhooks
        .iter()
        .map(|(name, var)| {
            let secret = std::env::var(var).ok().filter(|s| !s.trim().is_empty());
            let Some(secret) = secret else {
                return Err(UsageError::flag(
                    "--webhook",
                    format!("the environment variable {var} (the secret of {name}) is not set"),
                ));
            };
            Ok(CustomSender {
                name: name.clone(),
                secret: secret.into(),
            })
        })
        .collect()
}

/// The DER roots of `--ca-cert`, after checking the proxy variables: a bad file or proxy URL is a
/// usage error (exit 2) naming the file or variable and why, never their content.
pub(crate) fn network(args: &SourceArgs) -> Result<Vec<Vec<u8>>, UsageError> {
    if let Err(error) = crate::proxy::from_env().as_ref() {
        return Err(UsageError(error.to_string()));
    }
    let Some(path) = &args.ca_cert else {
        return Ok(Vec::new());
    };
    let flag = format!("--ca-cert {}", path.display());
    let pem =
        std::fs::read(path).map_err(|e| UsageError::flag(&flag, format!("cannot read: {e}")))?;
    crate::net::parse_pem_roots(&pem).map_err(|e| UsageError::flag(&flag, e))
}

pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// How the flume runs and prints, shared by `listen` and `demo`.
pub(crate) struct RunOptions {
    pub(crate) format: Option<Format>,
    pub(crate) log_level: LogLevel,
    pub(crate) logs: LogRoute,
    pub(crate) color: ColorChoice,
    pub(crate) filter: EventFilter,
    pub(crate) count: Option<u64>,
    pub(crate) start_timeout: Duration,
    pub(crate) allow_partial: bool,
    /// DER roots to trust besides the bundled ones and the OS store (`--ca-cert`).
    pub(crate) extra_roots: Vec<Vec<u8>>,
    /// `--data`: where the cursors are kept, and those it held at start. A SIGTERM then keeps
    /// the Discord session for the next start to resume.
    pub(crate) data: Option<(EventLog, StreamCursors)>,
    /// `--record`: where every input the sources receive is recorded.
    pub(crate) record: Option<crate::Recorder>,
    /// `--sink redis://…`: the stream every item goes to before it is printed, and the cursors
    /// stored there at start. A SIGTERM then keeps the Discord session too.
    pub(crate) sink: Option<(RedisSinkPlan, Cursors)>,
}

/// Items buffered between the sources and the stdout thread: enough for the writer to take a
/// batch per write while the sources fill the next one.
const STREAM_CAPACITY: usize = 256;
/// After a stop signal, how long the writer may take to print what is in flight before it is
/// given up on (a reader that stopped reading): nothing it did not write is acknowledged.
const DRAIN_DEADLINE: Duration = Duration::from_millis(700);
/// With the webhook ingress serving, how long the sources get in all after a stop signal, a
/// stalled reader or not: requests in flight are answered within
/// [`SHUTDOWN_ANSWER_MS`](openflume_proto::webhook::SHUTDOWN_ANSWER_MS) (200 if the line got out,
/// else 503 so the sender retries), not cut off without an answer.
const SERVING_STOP_DEADLINE: Duration =
    Duration::from_millis(openflume_proto::webhook::SHUTDOWN_ANSWER_MS + 300);

/// With `--sink`, items between the sources and the Redis sink: room for the sink to append
/// thousands in one transaction while the sources fill the next batch (as `serve`'s).
const SINK_STREAM: usize = 4096;
/// After the writer drained, how long the Redis sink gets to report how it ended.
const SINK_END_WAIT: Duration = Duration::from_millis(500);

/// Why `run` stops.
enum Stop {
    /// With `keep_sessions`, Discord closes resumably (a SIGTERM with `--data`).
    Signal {
        keep_sessions: bool,
    },
    Writer,
    SourcesEnded,
    StartFailed(StartError),
    /// The Redis sink stopped for good (a transaction that ran in part): nothing more can be
    /// appended, so nothing more is printed or acknowledged.
    SinkFailed(String),
}

/// Starts the flume over `sources`, prints items from the first status log on until a signal,
/// `--count`, stdout's end, or every source failing, and returns the process exit code.
pub(crate) async fn run(sources: Vec<Source>, options: RunOptions) -> i32 {
    let min_level = match options.log_level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error | LogLevel::Off => Level::Error,
    };
    let terminal = std::io::stdout().is_terminal();
    let colour = |terminal: bool| match options.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    };
    let writer_options = WriterOptions {
        format: options.format.unwrap_or(if terminal {
            Format::Pretty
        } else {
            Format::Json
        }),
        colour: colour(terminal),
        logs: match options.logs {
            _ if options.log_level == LogLevel::Off => LogSink::Off,
            LogRoute::Off => LogSink::Off,
            LogRoute::Stdout => LogSink::Stdout,
            LogRoute::Stderr => LogSink::Stderr {
                colour: colour(std::io::stderr().is_terminal()),
            },
        },
        filter: options.filter,
        count: options.count,
        cursors: options.data,
    };
    // Cursors kept (in --data or in Redis): the next start resumes what a SIGTERM leaves.
    let keep_sessions_on_term = writer_options.cursors.is_some() || options.sink.is_some();
    // Signals are watched before anything starts: a stop while connecting is a clean stop too.
    let mut signals = match Signals::new([Signal::Int, Signal::Term, Signal::Hup]) {
        Ok(signals) => signals,
        Err(error) => {
            report(format_args!("cannot watch signals: {error}"));
            return 1;
        }
    };
    let serving = sources
        .iter()
        .any(|s| s.name() == openflume_proto::webhook::SOURCE);
    let stop_deadline = if serving {
        SERVING_STOP_DEADLINE
    } else {
        DRAIN_DEADLINE
    };
    let builder = match builder_trusting(options.extra_roots) {
        Ok(builder) => builder,
        Err(code) => return code,
    };
    let builder = match &options.record {
        Some(recorder) => builder.record(recorder),
        None => builder,
    };
    let flume = builder
        .sources(sources)
        .min_log_level(min_level)
        .start_timeout(Some(options.start_timeout))
        .allow_partial(options.allow_partial)
        .build();
    // Attached before the start, so the very first status log is printed (and, with --sink,
    // appended first).
    let (stream, sink) = match options.sink {
        None => {
            let mut stream = flume
                .stream(STREAM_CAPACITY, Overflow::Backpressure)
                .holds_until_commit();
            if writer_options.cursors.is_some() {
                stream = stream.with_checkpoints();
            }
            (stream, None)
        }
        Some((plan, resume)) => match flume.redis_into_relaying(
            plan.target.clone(),
            resume,
            SINK_STREAM,
            plan.options(),
            STREAM_CAPACITY,
        ) {
            Ok((sink, appended)) => (appended, Some((sink, plan))),
            Err(error) => {
                report(format_args!("{}", plan.failed(&error)));
                return 1;
            }
        },
    };
    // How the sink ended: an error before the flume closed stops `listen`.
    let (sink_end_tx, sink_end) = smol::channel::bounded::<Result<u64, String>>(1);
    let _sink = sink.map(|(sink, plan)| {
        smol::spawn(async move {
            let result = sink.finished().await.map_err(|error| plan.failed(&error));
            let _ = sink_end_tx.send(result).await;
        })
    });
    let writer = match Writer::spawn(stream, writer_options) {
        Ok(writer) => writer,
        Err(error) => {
            report(format_args!("cannot start the stdout writer: {error}"));
            return 1;
        }
    };
    let running = match flume.start() {
        Ok(running) => running,
        Err(error) => {
            report(format_args!("{error}"));
            return 1;
        }
    };
    let stop = {
        let lifetime = async {
            match running.started().await {
                Err(error) => Stop::StartFailed(error),
                Ok(()) => {
                    running.wait().await;
                    Stop::SourcesEnded
                }
            }
        };
        let signalled = async {
            let signal = signals.next().await;
            let name = match signal {
                Some(Ok(Signal::Term)) => "SIGTERM",
                Some(Ok(Signal::Hup)) => "SIGHUP",
                _ => "SIGINT",
            };
            report(format_args!(
                "stopping on {name}; a second SIGINT exits at once"
            ));
            Stop::Signal {
                keep_sessions: keep_sessions_on_term && name == "SIGTERM",
            }
        };
        let writer_stopped = async {
            // A stream that ended was closed by the flume: its own arm says why.
            if matches!(writer.stopped().await, WriterEnd::Drained) {
                future::pending::<()>().await;
            }
            Stop::Writer
        };
        let sink_failed = async {
            match sink_end.recv().await {
                Ok(Err(error)) => Stop::SinkFailed(error),
                // Done once the flume closed, or no sink: the other arms say why.
                _ => future::pending().await,
            }
        };
        future::or(
            signalled,
            future::or(writer_stopped, future::or(sink_failed, lifetime)),
        )
        .await
    };
    match stop {
        Stop::Signal { keep_sessions } => {
            // A second SIGINT means now (a recording is put together first: that is quick).
            let recorder = options.record.clone();
            let impatient = smol::spawn(async move {
                while let Some(Ok(signal)) = signals.next().await {
                    if signal == Signal::Int {
                        std::process::exit(super::replay::finish_recording(recorder, 130));
                    }
                }
            });
            close_and_drain(&running, &writer, stop_deadline, keep_sessions).await;
            drop(impatient);
            sink_end_code(&sink_end).await
        }
        Stop::Writer => {
            // The stream is gone with the writer: closing waits for no consumer.
            running.close().await;
            match writer.end() {
                Some(WriterEnd::Failed(error)) => {
                    report(format_args!("cannot write to stdout: {error}"));
                    1
                }
                _ => 0,
            }
        }
        Stop::StartFailed(error) => {
            // The flume is closed: the writer prints what every source delivered until then.
            close_and_drain(&running, &writer, stop_deadline, false).await;
            report(format_args!("{error}"));
            1
        }
        Stop::SinkFailed(error) => {
            // What Redis holds is printed; the rest was never acknowledged.
            close_and_drain(&running, &writer, stop_deadline, false).await;
            report(format_args!("{error}"));
            1
        }
        Stop::SourcesEnded => {
            close_and_drain(&running, &writer, stop_deadline, false).await;
            let closed = running.close().await;
            if let Some(WriterEnd::Failed(error)) = writer.end() {
                report(format_args!("cannot write to stdout: {error}"));
                return 1;
            }
            let statuses = closed.statuses();
            if !statuses.is_empty() && statuses.iter().all(|s| s.status == Status::Failed) {
                for status in statuses {
                    report(format_args!("{status}"));
                }
                return 1;
            }
            sink_end_code(&sink_end).await
        }
    }
}

/// After the writer drained: 1 when the Redis sink ended with an error (reported), else 0. A
/// sink still appending (Redis down at the stop) is not waited for past [`SINK_END_WAIT`]:
/// what it did not append was never printed nor acknowledged.
async fn sink_end_code(sink_end: &smol::channel::Receiver<Result<u64, String>>) -> i32 {
    let ended = future::or(async { sink_end.recv().await.ok() }, async {
        async_io::Timer::after(SINK_END_WAIT).await;
        None
    })
    .await;
    match ended {
        Some(Err(error)) => {
            report(format_args!("{error}"));
            1
        }
        _ => 0,
    }
}

/// Closes the flume and lets the writer print what is in flight, giving up on a reader that does
/// not read within [`DRAIN_DEADLINE`]; the sources then go on stopping (their items dropped)
/// until `stop_deadline` from the start. With `keep_sessions`, Discord closes resumably.
async fn close_and_drain(
    running: &Running,
    writer: &Writer,
    stop_deadline: Duration,
    keep_sessions: bool,
) {
    let drained = async {
        if keep_sessions {
            running.close_keeping_sessions().await;
        } else {
            running.close().await;
        }
        writer.stopped().await;
        true
    };
    let late = async {
        async_io::Timer::after(DRAIN_DEADLINE).await;
        false
    };
    if !future::or(drained, late).await {
        writer.detach();
        // Closing again waits on the same stop (closing is cancel-safe), no longer than what is
        // left; the process exits after, drivers still running or not.
        let closed = async {
            running.close().await;
        };
        let left = stop_deadline.saturating_sub(DRAIN_DEADLINE);
        future::or(closed, async {
            async_io::Timer::after(left).await;
        })
        .await;
    }
}

/// A diagnostic on stderr. Writing it must never panic: stderr may be closed or full.
pub(crate) fn report(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    // Reasons quote what servers said: neutralised like pretty output.
    let message = message.to_string();
    let _ = writeln!(std::io::stderr(), "openflume: {}", neutral(&message));
}

/// A flume builder that trusts `extra_roots` (DER, from `--ca-cert`) besides the bundled roots
/// and the OS store; the exit code 2 when one is refused (`network` checked each one already:
/// kept as a usage error all the same).
pub(crate) fn builder_trusting(extra_roots: Vec<Vec<u8>>) -> Result<FlumeBuilder, i32> {
    let mut builder = Flume::builder();
    for der in extra_roots {
        builder = builder.add_root_certificate(der).map_err(|error| {
            report(format_args!("--ca-cert: {error}"));
            2
        })?;
    }
    Ok(builder)
}
