//! The `openflume` command line: `listen`, `cron next`, `demo`, `sim`, `log tail`.

mod args;
mod cron;
mod demo;
mod listen;
mod log;
mod output;
mod sim;
mod writer;

use args::{Cli, Command, CronCommand, LogCommand};
use clap::Parser;

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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Listen(args) => listen::sources(&args).map(|sources| {
            smol::block_on(listen::run(
                sources,
                listen::RunOptions {
                    format: args.format,
                    log_level: args.log_level,
                    count: args.count,
                    start_timeout: std::time::Duration::from_secs(args.start_timeout),
                    allow_partial: args.allow_partial,
                },
            ))
        }),
        Command::Cron(CronCommand::Next {
            expr,
            after,
            count,
            tz,
        }) => cron::next(&expr, after.as_deref(), count, tz.as_deref()),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Log(LogCommand::Tail(args)) => log::tail(&args),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            listen::report(format_args!("{message}"));
            2
        }
    }
}

/// The zone named by `--tz`, or the system's local zone.
pub(crate) fn resolve_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, UsageError> {
    match name {
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| UsageError::flag("--tz", e)),
        None => Ok(jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)),
    }
}
