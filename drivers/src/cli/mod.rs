//! The `openflume` command line: `listen`, `serve`, `consume`, `replay`, `cron next`, `demo`,
//! `sim`, `log tail`.

mod args;
mod cron;
mod demo;
mod discord;
mod filter;
mod flags;
mod forward;
pub(crate) mod hub_client;
mod hub_feed;
mod listen;
mod log;
mod metrics;
mod ops;
mod output;
mod redis_sink;
mod replay;
mod serve;
mod sim;
mod sim_control;
mod status_page;
mod writer;

use args::{Cli, Command, CronCommand, LogCommand};
use clap::{CommandFactory, FromArgMatches};
pub(crate) use listen::report;
use std::io::Write;

/// A usage or configuration error: exit 2 with a message that names the flag.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl UsageError {
    pub(crate) fn flag(flag: &str, error: impl std::fmt::Display) -> UsageError {
        UsageError(format!("{flag}: {error}"))
    }
}

/// Runs the command line and returns the exit code.
pub fn main() -> i32 {
    // The matches are kept beside the parsed values: they say which flags the user gave.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let result = match cli.command {
        Command::Listen(mut args) => listen_main(&mut args, matches.subcommand_matches("listen")),
        Command::Cron(CronCommand::Next {
            expr,
            after,
            count,
            tz,
        }) => cron::next(&expr, after.as_deref(), count, tz.as_deref()),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "openflume", &mut out);
            Ok(i32::from(out.flush().is_err()))
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Log(LogCommand::Tail(args)) => log::tail(&args),
        Command::Serve(mut args) => serve::main(&mut args, matches.subcommand_matches("serve")),
        Command::Replay(args) => replay::run(&args),
        Command::Consume(args) => consume_main(args),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            listen::report(format_args!("{message}"));
            2
        }
    }
}

/// `openflume listen`: secrets from files, warnings for idle flags, then the sources.
fn listen_main(
    args: &mut args::ListenArgs,
    matches: Option<&clap::ArgMatches>,
) -> Result<i32, UsageError> {
    flags::read_secret_files(&mut args.source)?;
    flags::read_renamed_vars(&mut args.source, |warning| {
        listen::report(format_args!("{warning}"));
    });
    if let Some(matches) = matches {
        flags::warn_idle_flags(&args.source, "listen", matches, |warning| {
            listen::report(format_args!("{warning}"));
        });
    }
    let filter = filter::EventFilter::new(args.sources.as_deref(), args.types.as_deref())?;
    let sink = args.redis_sink.plan()?;
    if sink.is_some() && args.data.is_some() {
        return Err(UsageError(
            "--data and --sink both keep the cursors (in SQLite, in Redis): give one".to_owned(),
        ));
    }
    let data = match &args.data {
        Some(dir) => match crate::log::EventLog::open(dir, crate::log::LogOptions::default())
            .and_then(|log| Ok((crate::cursors::stored_cursors(&log)?, log)))
        {
            Ok(data) => Some(data),
            Err(error) => {
                listen::report(format_args!("--data: {error}"));
                return Ok(1);
            }
        },
        None => None,
    };
    // The sources start from the cursors kept in --data, or in Redis with --sink.
    let sink = match sink {
        Some(plan) => match smol::block_on(plan.stored_cursors()) {
            Ok(resume) => Some((plan, resume)),
            Err(error) => {
                listen::report(format_args!("{error}"));
                return Ok(1);
            }
        },
        None => None,
    };
    let resume = match (&data, &sink) {
        (Some((cursors, _)), _) | (None, Some((_, cursors))) => cursors.clone(),
        (None, None) => Default::default(),
    };
    let sources = listen::sources(&args.source, &resume)?;
    let extra_roots = listen::network(&args.source)?;
    let recorder = replay::recorder(args, &sources)?;
    let code = smol::block_on(listen::run(
        sources,
        listen::RunOptions {
            format: args.format,
            log_level: args.log_level,
            logs: args.logs,
            color: args.color,
            filter,
            count: args.count,
            start_timeout: std::time::Duration::from_secs(args.source.start_timeout),
            allow_partial: args.source.allow_partial,
            extra_roots,
            data: data.map(|(cursors, log)| (log, crate::StreamCursors::new(cursors))),
            record: recorder.clone(),
            sink,
        },
    ));
    Ok(replay::finish_recording(recorder, code))
}

/// `openflume consume`: one member of a Redis consumer group until a signal, stdout's end, or
/// Redis failing for good.
fn consume_main(args: args::ConsumeArgs) -> Result<i32, UsageError> {
    use crate::redis::consume::{self, ConsumeOptions, Stop};
    let target = crate::redis::RedisTarget::server(&args.redis, &args.stream)
        .map_err(|e| UsageError::flag("--redis", e))?;
    let consumer = args.consumer.unwrap_or_else(consume::default_consumer_name);
    if args.group.is_empty() || consumer.is_empty() {
        return Err(UsageError(
            "--group and --consumer must not be empty".to_owned(),
        ));
    }
    let options = ConsumeOptions {
        target,
        group: args.group,
        consumer,
        claim_idle: args.claim_idle,
    };
    let mut signals =
        match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            Ok(signals) => signals,
            Err(error) => {
                report(format_args!("cannot watch signals: {error}"));
                return Ok(1);
            }
        };
    let stop = smol::block_on(futures_lite::future::or(
        async { Some(consume::run(&options).await) },
        async {
            futures_lite::StreamExt::next(&mut signals).await;
            None
        },
    ));
    Ok(match stop {
        None => 0,
        Some(Stop::Stdout(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Some(Stop::Stdout(error)) => {
            report(format_args!("cannot write stdout: {error}"));
            1
        }
        Some(Stop::Redis(error)) => {
            report(format_args!("{error}"));
            1
        }
    })
}

/// `openflume man [COMMAND]`: the roff page of the whole command, or of one subcommand, from
/// the same definitions as `--help`.
fn man(command: Option<&str>) -> Result<i32, UsageError> {
    let mut cli = Cli::command();
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => {
            let Some(sub) = cli.find_subcommand(name) else {
                let known: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                return Err(UsageError(format!(
                    "man: no command {name:?}; known: {}",
                    known.join(", ")
                )));
            };
            // Built, it is titled `openflume-<name>` and its usage says `openflume <name>`.
            sub.clone()
        }
    };
    let mut out = std::io::stdout().lock();
    let written = clap_mangen::Man::new(page)
        .render(&mut out)
        .and_then(|()| out.flush());
    Ok(i32::from(written.is_err()))
}

/// The zone named by `--tz`, or the system's local zone.
pub(crate) fn resolve_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, UsageError> {
    match name {
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| UsageError::flag("--tz", e)),
        None => Ok(jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)),
    }
}
