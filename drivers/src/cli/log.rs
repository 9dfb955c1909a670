//! `openflume log tail`: the durable log on stdout, one JSON line per item.
//!
//! It reads on a connection of its own (WAL), so it runs beside a process that appends. A
//! follower in another process cannot be woken by that process's commits, so `--follow` looks
//! for a new last id every [`FOLLOW_POLL`]: one indexed read, a few microseconds.

use super::UsageError;
use super::args::TailArgs;
use super::listen::report;
use super::writer::stdout_reader_gone;
use openflume_log::{EventId, Filter, LogError, LogReader};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How often `--follow` checks for appends by another process.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Items read per query: a bounded memory for any log size.
const PAGE: usize = 1000;

/// The default `--data`: `$XDG_DATA_HOME/openflume`, or `~/.local/share/openflume` (the XDG
/// base directory rules; an empty or relative `XDG_DATA_HOME` is ignored, as they say).
pub(crate) fn default_data_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".local").join("share"))
    })?;
    Some(base.join("openflume"))
}

pub(crate) fn tail(args: &TailArgs) -> Result<i32, UsageError> {
    let dir = match args.data.clone().or_else(default_data_dir) {
        Some(dir) => dir,
        None => {
            return Err(UsageError::flag(
                "--data",
                "no default: neither XDG_DATA_HOME nor HOME is set",
            ));
        }
    };
    let filter = Filter {
        sources: (!args.sources.is_empty()).then(|| args.sources.clone()),
        types: None,
    };
    match run(&dir, EventId(args.after), args.follow, &filter) {
        Ok(()) => Ok(0),
        Err(Failure::Stdout(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(Failure::Stdout(error)) => {
            report(format_args!("cannot write stdout: {error}"));
            Ok(1)
        }
        Err(Failure::Log(error)) => {
            report(format_args!("{error}"));
            Ok(1)
        }
    }
}

enum Failure {
    Log(LogError),
    Stdout(io::Error),
}

fn run(
    dir: &std::path::Path,
    mut after: EventId,
    follow: bool,
    filter: &Filter,
) -> Result<(), Failure> {
    let reader = LogReader::open(dir).map_err(Failure::Log)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    loop {
        // Everything up to `horizon` was committed before the read below starts, so once the
        // read comes back short, nothing up to it is left to print, matching or not.
        let horizon = reader.last_id().map_err(Failure::Log)?;
        let entries = reader
            .read_after(after, PAGE, filter)
            .map_err(Failure::Log)?;
        for entry in &entries {
            out.write_all(entry.line().as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(Failure::Stdout)?;
            after = entry.event_id;
        }
        if entries.len() == PAGE {
            continue;
        }
        after = after.max(horizon);
        out.flush().map_err(Failure::Stdout)?;
        if !follow {
            return Ok(());
        }
        // Wait for an append by anyone; leave if stdout's reader went away meanwhile.
        loop {
            std::thread::sleep(FOLLOW_POLL);
            if stdout_reader_gone() {
                return Ok(());
            }
            if reader.last_id().map_err(Failure::Log)? > after {
                break;
            }
        }
    }
}
