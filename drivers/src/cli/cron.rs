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
    for at in next_fire_times(&schedule, after, &zone, count) {
        if writeln!(out, "{}", format_fire_time(at, &zone)).is_err() {
            break;
        }
    }
    Ok(0)
}
