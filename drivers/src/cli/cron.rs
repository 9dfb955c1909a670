//! `openflume cron next`: the next fire times of an expression, one RFC 3339 instant per line.

use super::{UsageError, resolve_zone};
use openflume_proto::cron::{Schedule, format_fire_time, next_fire_times};
use std::io::Write;

pub(crate) fn next(
    expr: &str,
    after: Option<&str>,
    count: usize,
    tz: Option<&str>,
) -> Result<i32, UsageError> {
    let schedule =
        Schedule::parse(expr).map_err(|e| UsageError(format!("invalid cron expression: {e}")))?;
    let zone = resolve_zone(tz)?;
    let after = match after {
        Some(text) => text.parse::<jiff::Timestamp>().map_err(|e| {
            UsageError::flag(
                "--after",
                format!("expected an RFC 3339 instant such as 2025-11-02T01:40:00-05:00: {e}"),
            )
        })?,
        None => jiff::Timestamp::now(),
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    for at in next_fire_times(&schedule, after, &zone, count) {
        if let Err(error) =
            writeln!(out, "{}", format_fire_time(at, &zone)).and_then(|()| out.flush())
        {
            // A reader that left is a clean stop, as for `listen`; anything else is not.
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            super::listen::report(format_args!("cannot write to stdout: {error}"));
            return Ok(1);
        }
        printed += 1;
    }
    if printed < count {
        super::listen::report(format_args!(
            "{printed} of {count} fire times: the schedule has no more before the end of the \
             calendar (year 9999)"
        ));
    }
    Ok(0)
}
