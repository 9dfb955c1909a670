//! `openflume replay FILE`, and the recorder of `openflume listen --record FILE`.
//!
//! Replay prints what the live run printed, through the same line writer (`--format`,
//! `--sources`/`--types`, `--logs`, `--log-level`, `--count` mean what they mean for `listen`).

use super::UsageError;
use super::args::{ColorChoice, ListenArgs, LogLevel, LogRoute, parse_webhook};
use super::filter::EventFilter;
use super::listen::report;
use super::output::{Format, ItemWriter};
use crate::replay::Replay;
use crate::{RecordOptions, Recorder, Source};
use openflume_proto::{Item, Level};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `openflume replay`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The machines run with the recorded seeds, configurations and inputs, in virtual time: at once by default, or at the recorded pace with --realtime. The items are the live run's, with their recorded times; those the drivers add themselves (`listening on`, late timers) are not replayed.

Secrets come from the environment again, as for the live run: SLACK_SIGNING_SECRET, GITHUB_WEBHOOK_SECRET and --webhook NAME=ENV_VAR check the recorded webhook signatures (a recording of the webhook ingress needs them); the tokens are not needed.

A recording is the fixture format of the repository's fixtures/, one section per source (see the README, \"Record and replay\"). A line that does not parse, or a newer format, is refused with its line number.

Exit status: 0 once replayed (or --count reached, or stdout's reader went away); 1 when the recording is refused (the reason is on stderr); 2 for a usage error."
)]
pub(crate) struct ReplayArgs {
    /// The recording, written by `openflume listen --record FILE`.
    #[arg(value_name = "FILE")]
    pub(crate) file: std::path::PathBuf,
    /// Replay at the recorded pace instead of at once.
    #[arg(long, env = "OPENFLUME_REPLAY_REALTIME")]
    pub(crate) realtime: bool,
    /// A custom sender NAME whose secret is in the environment variable ENV_VAR (repeatable),
    /// as for `listen`: the recorded signatures are checked again.
    #[arg(long, value_name = "NAME=ENV_VAR", value_parser = parse_webhook, env = "OPENFLUME_WEBHOOK")]
    pub(crate) webhook: Vec<(String, String)>,
    /// Only print events from these sources (case-insensitive, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "SOURCES",
        env = "OPENFLUME_SOURCES"
    )]
    pub(crate) sources: Option<Vec<String>>,
    /// Only print events of these types (case-insensitive, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "TYPES",
        env = "OPENFLUME_TYPES"
    )]
    pub(crate) types: Option<Vec<String>>,
    /// Where logs go: stdout, stderr or off.
    #[arg(long, value_enum, default_value = "stdout", env = "OPENFLUME_LOGS")]
    pub(crate) logs: LogRoute,
    /// Lowest log level printed (as the live run's --log-level).
    #[arg(long, value_enum, default_value = "info", env = "OPENFLUME_LOG_LEVEL")]
    pub(crate) log_level: LogLevel,
    /// Output format. Default: pretty on a terminal, json otherwise.
    #[arg(long, value_enum, env = "OPENFLUME_FORMAT")]
    pub(crate) format: Option<Format>,
    /// Colour in pretty output: auto, always, or never.
    #[arg(long, value_enum, default_value = "auto", env = "OPENFLUME_COLOR")]
    pub(crate) color: ColorChoice,
    /// Exit 0 after this many printed events.
    #[arg(long, env = "OPENFLUME_COUNT")]
    pub(crate) count: Option<u64>,
}

/// The recorder `--record` asks for, its file created (an unwritable path is a usage error).
pub(crate) fn recorder(
    args: &ListenArgs,
    sources: &[Source],
) -> Result<Option<Recorder>, UsageError> {
    let Some(path) = &args.record else {
        return Ok(None);
    };
    if args.record_drop_content
        && sources
            .iter()
            .any(|s| s.name() == openflume_proto::webhook::SOURCE)
    {
        report(format_args!(
            "--record-drop-content: webhook request bodies are recorded as received (their \
             signatures cover every byte); only Discord, Slack and GitHub contents are dropped"
        ));
    }
    let options = RecordOptions {
        drop_content: args.record_drop_content,
    };
    Recorder::create(path, options)
        .map(Some)
        .map_err(|e| UsageError::flag("--record", e))
}

/// Puts the recording together once `listen` has stopped, saying on stderr what it holds; a
/// recording that could not be written makes the exit code 1.
pub(crate) fn finish_recording(recorder: Option<Recorder>, code: i32) -> i32 {
    let Some(recorder) = recorder else {
        return code;
    };
    match recorder.finish() {
        Ok(summary) => {
            report(format_args!(
                "recorded {summary} into {}",
                recorder.path().display()
            ));
            code
        }
        Err(error) => {
            report(format_args!("--record: {error}"));
            code.max(1)
        }
    }
}

/// `openflume replay FILE`: the exit code.
pub(crate) fn run(args: &ReplayArgs) -> Result<i32, UsageError> {
    let filter = EventFilter::new(args.sources.as_deref(), args.types.as_deref())?;
    let mut replay = match Replay::load(&args.file) {
        Ok(replay) => replay,
        Err(error) => {
            report(format_args!("{}: {error}", args.file.display()));
            return Ok(1);
        }
    };
    for sender in super::listen::webhook_senders(&args.webhook)? {
        replay = replay.secret(format!("webhook:{}", sender.name), sender.secret);
    }
    let min_level = match args.log_level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error | LogLevel::Off => Level::Error,
    };
    for warning in replay.warnings() {
        report(format_args!("{warning}"));
    }
    let items = match replay.min_log_level(min_level).run() {
        Ok(items) => items,
        Err(error) => {
            report(format_args!("{}: {error}", args.file.display()));
            return Ok(1);
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let colour = |terminal: bool| match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
    };
    let format = args.format.unwrap_or(if terminal {
        Format::Pretty
    } else {
        Format::Json
    });
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let mut out =
        ItemWriter::new(std::io::stdout().lock(), format, colour(terminal)).in_zone(zone.clone());
    let logs = if args.log_level == LogLevel::Off {
        LogRoute::Off
    } else {
        args.logs
    };
    let mut stderr = (logs == LogRoute::Stderr).then(|| {
        ItemWriter::new(
            std::io::stderr(),
            format,
            colour(std::io::stderr().is_terminal()),
        )
        .in_zone(zone)
    });
    let started = Instant::now();
    let first = items.first().map(|r| r.at);
    let mut events = 0u64;
    for replayed in items {
        if args.realtime
            && let Some(first) = first
        {
            // The recorded pace: each item when its input came, counted from the first.
            let due = started + Duration::from_millis(replayed.at.0.saturating_sub(first.0));
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                if out.flush().is_err() {
                    return Ok(0);
                }
                std::thread::sleep(wait);
            }
        }
        let printed = match &replayed.item {
            Item::Event(event) => filter.wants(event),
            _ => {
                if let Some(stderr) = &mut stderr {
                    let _ = stderr.write(&replayed.item);
                    let _ = stderr.flush();
                }
                logs == LogRoute::Stdout
            }
        };
        if !printed {
            continue;
        }
        if let Err(error) = out.write(&replayed.item) {
            return Ok(written(error));
        }
        if matches!(replayed.item, Item::Event(_)) {
            events += 1;
            if args.count.is_some_and(|count| events >= count) {
                break;
            }
        }
    }
    Ok(match out.flush() {
        Ok(()) => 0,
        Err(error) => written(error),
    })
}

/// The exit code after a failed write to stdout: a reader that left is a normal end.
fn written(error: std::io::Error) -> i32 {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        0
    } else {
        report(format_args!("cannot write to stdout: {error}"));
        1
    }
}
