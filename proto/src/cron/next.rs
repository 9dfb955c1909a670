//! When a schedule fires next: cronie's semantics laid on a real time line, time zones included.
//!
//! The time line is cut at the zone's transitions into segments with a constant UTC offset; in
//! each segment local time and instants map one to one, so the next local minute the fields select
//! is found by jumping field by field (month, day, hour, minute), never by scanning minutes.
//! Daylight saving time then follows cronie's policy ([`DstPolicy`]):
//!
//! - local minutes skipped by a spring-forward gap never appear in a segment; a fixed-time job
//!   with any of them selected fires once, at the transition (the first instant after the gap);
//! - local minutes repeated by a fall-back overlap appear in two segments; a fixed-time job fires
//!   only in the first (its second-pass occurrences do not exist), a wildcard job in both.

use super::expr::{DstPolicy, Schedule};
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The first instant strictly after `after` at which `schedule` fires in `zone`, or `None` when it
/// would be past the year 9999.
///
/// Pure and fast: the work grows with the number of months and zone transitions between `after`
/// and the result, not with the number of minutes.
///
/// ```
/// use jiff::{tz::TimeZone, Timestamp};
/// use openflume_proto::cron::{next_after, Schedule};
///
/// let schedule: Schedule = "0 0 29 2 *".parse().unwrap();
/// let after: Timestamp = "2025-03-01T00:00:00Z".parse().unwrap();
/// let next = next_after(&schedule, after, &TimeZone::UTC).unwrap();
/// assert_eq!(next.to_string(), "2028-02-29T00:00:00Z");
/// // Strictly after: from the fire time itself, the next one is four years on.
/// assert_eq!(next_after(&schedule, next, &TimeZone::UTC).unwrap().to_string(), "2032-02-29T00:00:00Z");
/// ```
pub fn next_after(schedule: &Schedule, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    Search::default().next_after(schedule, after, zone)
}

/// The next `count` fire times strictly after `after`, computed lazily (what `openflume cron
/// next` prints).
///
/// ```
/// use jiff::{tz::TimeZone, Timestamp};
/// use openflume_proto::cron::{next_fire_times, Schedule};
///
/// let schedule: Schedule = "*/25 * * * *".parse().unwrap();
/// let after: Timestamp = "2025-06-01T10:30:00Z".parse().unwrap();
/// let times: Vec<String> = next_fire_times(&schedule, after, &TimeZone::UTC, 3)
///     .map(|t| t.to_string())
///     .collect();
/// assert_eq!(times, ["2025-06-01T10:50:00Z", "2025-06-01T11:00:00Z", "2025-06-01T11:25:00Z"]);
/// ```
pub fn next_fire_times<'a>(
    schedule: &'a Schedule,
    after: Timestamp,
    zone: &'a TimeZone,
    count: usize,
) -> impl Iterator<Item = Timestamp> + 'a {
    let first = (count > 0)
        .then(|| next_after(schedule, after, zone))
        .flatten();
    std::iter::successors(first, move |&t| next_after(schedule, t, zone)).take(count)
}

/// One search, counting its steps so tests can check that it jumps instead of scanning.
#[derive(Debug, Default)]
pub(crate) struct Search {
    /// Loop iterations: one per zone segment and one per field-jump.
    pub(crate) steps: u64,
}

const ONE_MINUTE: SignedDuration = SignedDuration::from_secs(60);

/// Local time as (year, month, day, hour, minute); fields may briefly overflow (day 32, hour 24)
/// while carrying, which the bitset look-ups treat as "no match left in this unit".
type Key = (i16, u8, u8, u8, u8);

impl Search {
    pub(crate) fn next_after(
        &mut self,
        schedule: &Schedule,
        after: Timestamp,
        zone: &TimeZone,
    ) -> Option<Timestamp> {
        let fixed_time = schedule.dst_policy() == DstPolicy::FixedTime;
        // The earliest instant a fire may be at.
        let mut cursor = after.checked_add(SignedDuration::from_nanos(1)).ok()?;
        loop {
            self.steps += 1;
            let offset = zone.to_offset(cursor);
            let transition = zone
                .following(cursor)
                .next()
                .map(|t| (t.timestamp(), t.offset()));
            let segment_end = transition.map(|(at, _)| offset.to_datetime(at));
            let mut from = ceil_minute(offset.to_datetime(cursor))?;
            while let Some(local) = self.next_match(schedule, from, segment_end) {
                if !fixed_time || is_first_pass(zone, local, offset) {
                    return offset.to_timestamp(local).ok();
                }
                // A fixed-time job's repeat in the second pass of an overlap does not exist.
                from = local.checked_add(ONE_MINUTE).ok()?;
            }
            let (at, next_offset) = transition?;
            if fixed_time && next_offset > offset {
                // Clocks jump from `gap_start` to `gap_end` at `at`: selected minutes in between
                // run once, at the transition.
                let gap_start = ceil_minute(offset.to_datetime(at))?;
                let gap_end = next_offset.to_datetime(at);
                if self
                    .next_match(schedule, gap_start, Some(gap_end))
                    .is_some()
                {
                    return Some(at);
                }
            }
            cursor = at;
        }
    }

    /// The first local minute at or after `from` (minute-aligned) that the schedule selects,
    /// if it is before `until`.
    fn next_match(
        &mut self,
        schedule: &Schedule,
        from: DateTime,
        until: Option<DateTime>,
    ) -> Option<DateTime> {
        // A minute-aligned time is before `until` exactly when it is before `until` rounded up.
        let limit = match until {
            Some(until) => Some(key(ceil_minute(until)?)),
            None => None,
        };
        let (mut year, mut month, mut day, mut hour, mut minute) = key(from);
        loop {
            self.steps += 1;
            if year > 9999 || limit.is_some_and(|limit| (year, month, day, hour, minute) >= limit) {
                return None;
            }
            match schedule.months.next_from(month) {
                None => (year, month, day, hour, minute) = (year + 1, 1, 1, 0, 0),
                Some(m) if m != month => (month, day, hour, minute) = (m, 1, 0, 0),
                Some(_) => {
                    let first_of_month = Date::new(year, month as i8, 1).ok()?;
                    match schedule.day_mask(first_of_month).next_from(day) {
                        None => (month, day, hour, minute) = (month + 1, 1, 0, 0),
                        Some(d) if d != day => (day, hour, minute) = (d, 0, 0),
                        Some(_) => match schedule.hours.next_from(hour) {
                            None => (day, hour, minute) = (day + 1, 0, 0),
                            Some(h) if h != hour => (hour, minute) = (h, 0),
                            Some(_) => match schedule.minutes.next_from(minute) {
                                None => (hour, minute) = (hour + 1, 0),
                                Some(m) if m != minute => minute = m,
                                Some(_) => {
                                    return DateTime::new(
                                        year,
                                        month as i8,
                                        day as i8,
                                        hour as i8,
                                        minute as i8,
                                        0,
                                        0,
                                    )
                                    .ok();
                                }
                            },
                        },
                    }
                }
            }
        }
    }
}

fn key(at: DateTime) -> Key {
    let field = |v: i8| u8::try_from(v).unwrap_or(0);
    (
        at.year(),
        field(at.month()),
        field(at.day()),
        field(at.hour()),
        field(at.minute()),
    )
}

/// `at` rounded up to a whole minute; `None` past the end of jiff's range.
fn ceil_minute(at: DateTime) -> Option<DateTime> {
    if at.second() == 0 && at.subsec_nanosecond() == 0 {
        return Some(at);
    }
    let floor = at.with().second(0).subsec_nanosecond(0).build().ok()?;
    floor.checked_add(ONE_MINUTE).ok()
}

/// False only for a local time that an overlap repeats, read with the later (second-pass) offset.
fn is_first_pass(zone: &TimeZone, local: DateTime, offset: Offset) -> bool {
    match zone.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Fold { before, .. } => offset == before,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The next `count` fire times as RFC 3339 with the zone's offset.
    fn next_n(expr: &str, after: &str, tz: &TimeZone, count: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr).unwrap();
        next_fire_times(&schedule, ts(after), tz, count)
            .map(|t| crate::cron::format_fire_time(t, tz))
            .collect()
    }

    #[test]
    fn utc_cases() {
        let utc = TimeZone::UTC;
        // (expression, after, expected next fire times)
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "* * * * *",
                "2025-06-01T10:30:00Z",
                &["2025-06-01T10:31:00Z", "2025-06-01T10:32:00Z"],
            ),
            (
                "* * * * *",
                "2025-06-01T10:30:00.001Z",
                &["2025-06-01T10:31:00Z"],
            ),
            (
                "* * * * *",
                "2025-06-01T10:30:59.999Z",
                &["2025-06-01T10:31:00Z"],
            ),
            (
                "0 0 1 1 *",
                "2025-12-31T23:59:00Z",
                &["2026-01-01T00:00:00Z"],
            ),
            (
                "0 0 1 1 *",
                "2026-01-01T00:00:00Z",
                &["2027-01-01T00:00:00Z"],
            ),
            (
                "59 23 31 12 *",
                "2025-12-31T23:59:00Z",
                &["2026-12-31T23:59:00Z"],
            ),
            (
                "0 12 31 * *",
                "2025-01-31T12:00:00Z",
                &[
                    "2025-03-31T12:00:00Z",
                    "2025-05-31T12:00:00Z",
                    "2025-07-31T12:00:00Z",
                ],
            ),
            (
                "0 0 29 2 *",
                "2025-01-01T00:00:00Z",
                &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
            ),
            (
                "0 0 29 2 *",
                "2096-03-01T00:00:00Z",
                &["2104-02-29T00:00:00Z"],
            ),
            (
                "0 0 28 2 *",
                "2028-02-28T00:00:00Z",
                &["2029-02-28T00:00:00Z"],
            ),
            (
                "0 0 * * *",
                "2028-02-28T12:00:00Z",
                &["2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"],
            ),
            (
                "*/25 * * * *",
                "2025-06-01T10:50:00Z",
                &["2025-06-01T11:00:00Z", "2025-06-01T11:25:00Z"],
            ),
            (
                "0 */23 * * *",
                "2025-06-01T00:00:00Z",
                &["2025-06-01T23:00:00Z", "2025-06-02T00:00:00Z"],
            ),
            ("@hourly", "2025-06-01T10:00:00Z", &["2025-06-01T11:00:00Z"]),
            ("@weekly", "2025-06-01T10:00:00Z", &["2025-06-08T00:00:00Z"]), // 2025-06-01 is a Sunday
            (
                "@monthly",
                "2025-06-01T00:00:00Z",
                &["2025-07-01T00:00:00Z"],
            ),
            ("@yearly", "2025-06-01T00:00:00Z", &["2026-01-01T00:00:00Z"]),
            (
                "0 9 * * mon-fri",
                "2025-06-06T09:00:00Z",
                &["2025-06-09T09:00:00Z"],
            ),
            (
                "0 0 * * 7",
                "2025-06-02T00:00:00Z",
                &["2025-06-08T00:00:00Z"],
            ),
            (
                "0 0 * * 1-7/2",
                "2025-06-01T12:00:00Z",
                &[
                    "2025-06-02T00:00:00Z",
                    "2025-06-04T00:00:00Z",
                    "2025-06-06T00:00:00Z",
                    "2025-06-08T00:00:00Z",
                ],
            ),
            (
                "0 0 * * 5-7",
                "2025-06-05T12:00:00Z",
                &[
                    "2025-06-06T00:00:00Z",
                    "2025-06-07T00:00:00Z",
                    "2025-06-08T00:00:00Z",
                    "2025-06-13T00:00:00Z",
                ],
            ),
            (
                "0 0 30 2 1",
                "2025-01-01T00:00:00Z",
                &["2025-02-03T00:00:00Z"],
            ),
            ("59 23 * * *", "9999-12-30T21:00:00Z", &[]), // past jiff's last instant
        ];
        for (expr, after, expected) in cases {
            let got = next_n(expr, after, &utc, expected.len().max(1));
            assert_eq!(got, *expected, "{expr} after {after}");
        }
    }

    #[test]
    fn day_of_month_and_day_of_week_follow_the_star_rule() {
        let utc = TimeZone::UTC;
        // Neither field starts with `*`: every Friday and every 13th.
        assert_eq!(
            next_n("0 0 13 * 5", "2025-06-01T00:00:00Z", &utc, 5),
            [
                "2025-06-06T00:00:00Z",
                "2025-06-13T00:00:00Z",
                "2025-06-20T00:00:00Z",
                "2025-06-27T00:00:00Z",
                "2025-07-04T00:00:00Z",
            ]
        );
        assert_eq!(
            next_n("0 0 13 * 5", "2025-07-12T00:00:00Z", &utc, 1),
            ["2025-07-13T00:00:00Z"] // a Sunday
        );
        // Day of month starts with `*`: Mondays that are odd dates.
        assert_eq!(
            next_n("0 0 */2 * 1", "2025-06-01T00:00:00Z", &utc, 3),
            [
                "2025-06-09T00:00:00Z",
                "2025-06-23T00:00:00Z",
                "2025-07-07T00:00:00Z"
            ]
        );
        // `1-7` covers every weekday, and neither field starts with `*`: every day.
        assert_eq!(
            next_n("49 15 3,*/20 * 1-7", "2025-06-01T00:00:00Z", &utc, 3),
            [
                "2025-06-01T15:49:00Z",
                "2025-06-02T15:49:00Z",
                "2025-06-03T15:49:00Z"
            ]
        );
        // Day of week starts with `*` (Both): the 1st of the month only when it is a Sunday.
        assert_eq!(
            next_n("0 0 1 * */7", "2025-01-01T00:00:00Z", &utc, 2),
            ["2025-06-01T00:00:00Z", "2026-02-01T00:00:00Z"]
        );
    }

    #[test]
    fn new_york_spring_forward() {
        let ny = zone("America/New_York");
        // 2025-03-09: 01:59:59 EST is followed by 03:00 EDT (07:00Z); 02:xx does not exist.
        let cases: &[(&str, &str, &[&str])] = &[
            // A fixed time in the gap runs once, at the first instant after it.
            (
                "30 2 * * *",
                "2025-03-08T05:00:00Z",
                &[
                    "2025-03-08T02:30:00-05:00",
                    "2025-03-09T03:00:00-04:00",
                    "2025-03-10T02:30:00-04:00",
                ],
            ),
            (
                "15,45 2 * * *",
                "2025-03-09T05:00:00Z",
                &["2025-03-09T03:00:00-04:00", "2025-03-10T02:15:00-04:00"],
            ),
            (
                "0 2 * * *",
                "2025-03-09T05:00:00Z",
                &["2025-03-09T03:00:00-04:00", "2025-03-10T02:00:00-04:00"],
            ),
            // A gap run and a regular 03:00 run are one run.
            (
                "0 2,3 * * *",
                "2025-03-09T05:00:00Z",
                &["2025-03-09T03:00:00-04:00", "2025-03-10T02:00:00-04:00"],
            ),
            (
                "30 0-23 * * *",
                "2025-03-09T06:00:00Z",
                &[
                    "2025-03-09T01:30:00-05:00",
                    "2025-03-09T03:00:00-04:00",
                    "2025-03-09T03:30:00-04:00",
                ],
            ),
            // Starting one minute before the gap.
            (
                "30 2 * * *",
                "2025-03-09T06:59:00Z",
                &["2025-03-09T03:00:00-04:00"],
            ),
            (
                "30 2 * * *",
                "2025-03-09T01:59:59.999-05:00",
                &["2025-03-09T03:00:00-04:00"],
            ),
            // Starting at the transition itself: strictly after, so the gap run is gone.
            (
                "30 2 * * *",
                "2025-03-09T07:00:00Z",
                &["2025-03-10T02:30:00-04:00"],
            ),
            // Wildcard jobs skip the missing minutes.
            (
                "*/15 * * * *",
                "2025-03-09T06:40:00Z",
                &[
                    "2025-03-09T01:45:00-05:00",
                    "2025-03-09T03:00:00-04:00",
                    "2025-03-09T03:15:00-04:00",
                ],
            ),
            (
                "*/30 2 * * *",
                "2025-03-09T05:00:00Z",
                &["2025-03-10T02:00:00-04:00"],
            ),
            (
                "0 */2 * * *",
                "2025-03-09T06:30:00Z",
                &["2025-03-09T04:00:00-04:00"],
            ),
            (
                "30 * * * *",
                "2025-03-09T06:30:00Z",
                &["2025-03-09T03:30:00-04:00"],
            ),
            // Local midnight of the change day, and a 23-hour day with daily jobs.
            (
                "0 0 * * *",
                "2025-03-08T05:00:00Z",
                &["2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00"],
            ),
            (
                "0 12 * * *",
                "2025-03-08T12:00:00-05:00",
                &["2025-03-09T12:00:00-04:00", "2025-03-10T12:00:00-04:00"],
            ),
        ];
        for (expr, after, expected) in cases {
            assert_eq!(
                next_n(expr, after, &ny, expected.len()),
                *expected,
                "{expr} after {after}"
            );
        }
    }

    #[test]
    fn new_york_fall_back() {
        let ny = zone("America/New_York");
        // 2025-11-02: 01:59:59 EDT (05:59:59Z) is followed by 01:00 EST (06:00Z); 01:xx repeats.
        let cases: &[(&str, &str, &[&str])] = &[
            // A fixed time runs on the first pass only.
            (
                "30 1 * * *",
                "2025-11-01T04:00:00Z",
                &[
                    "2025-11-01T01:30:00-04:00",
                    "2025-11-02T01:30:00-04:00",
                    "2025-11-03T01:30:00-05:00",
                ],
            ),
            // From inside the repeated hour: 01:45 EDT already ran, so the next is tomorrow.
            (
                "45 1 * * *",
                "2025-11-02T01:40:00-05:00",
                &["2025-11-03T01:45:00-05:00"],
            ),
            (
                "45 1 * * *",
                "2025-11-02T01:40:00-04:00",
                &["2025-11-02T01:45:00-04:00", "2025-11-03T01:45:00-05:00"],
            ),
            (
                "0-59 1 * * *",
                "2025-11-02T01:58:00-04:00",
                &["2025-11-02T01:59:00-04:00", "2025-11-03T01:00:00-05:00"],
            ),
            // Wildcard jobs run in both passes.
            (
                "*/15 1 * * *",
                "2025-11-02T00:59:00-04:00",
                &[
                    "2025-11-02T01:00:00-04:00",
                    "2025-11-02T01:15:00-04:00",
                    "2025-11-02T01:30:00-04:00",
                    "2025-11-02T01:45:00-04:00",
                    "2025-11-02T01:00:00-05:00",
                    "2025-11-02T01:15:00-05:00",
                    "2025-11-02T01:30:00-05:00",
                    "2025-11-02T01:45:00-05:00",
                    "2025-11-03T01:00:00-05:00",
                ],
            ),
            (
                "*/15 1 * * *",
                "2025-11-02T01:40:00-04:00",
                &["2025-11-02T01:45:00-04:00", "2025-11-02T01:00:00-05:00"],
            ),
            (
                "*/15 1 * * *",
                "2025-11-02T01:40:00-05:00",
                &["2025-11-02T01:45:00-05:00", "2025-11-03T01:00:00-05:00"],
            ),
            (
                "*/20 1 * * *",
                "2025-11-02T05:00:00Z",
                &[
                    "2025-11-02T01:20:00-04:00",
                    "2025-11-02T01:40:00-04:00",
                    "2025-11-02T01:00:00-05:00",
                    "2025-11-02T01:20:00-05:00",
                ],
            ),
            (
                "30 * * * *",
                "2025-11-02T01:40:00-04:00",
                &["2025-11-02T01:30:00-05:00", "2025-11-02T02:30:00-05:00"],
            ),
            (
                "*/30 * * * *",
                "2025-11-02T04:59:00Z",
                &[
                    "2025-11-02T01:00:00-04:00",
                    "2025-11-02T01:30:00-04:00",
                    "2025-11-02T01:00:00-05:00",
                    "2025-11-02T01:30:00-05:00",
                    "2025-11-02T02:00:00-05:00",
                ],
            ),
            // A 25-hour day: daily jobs still run once per local day.
            (
                "0 0 * * *",
                "2025-11-01T12:00:00Z",
                &["2025-11-02T00:00:00-04:00", "2025-11-03T00:00:00-05:00"],
            ),
            (
                "0 12 * * *",
                "2025-11-01T12:00:00-04:00",
                &["2025-11-02T12:00:00-05:00", "2025-11-03T12:00:00-05:00"],
            ),
            (
                "0 2 * * *",
                "2025-11-02T01:30:00-05:00",
                &["2025-11-02T02:00:00-05:00"],
            ),
        ];
        for (expr, after, expected) in cases {
            assert_eq!(
                next_n(expr, after, &ny, expected.len()),
                *expected,
                "{expr} after {after}"
            );
        }
    }

    #[test]
    fn midnight_transitions() {
        let sao_paulo = zone("America/Sao_Paulo");
        // 2018-11-04: 23:59:59 -03 is followed by 01:00 -02; local midnight never happens.
        assert_eq!(
            next_n("0 0 * * *", "2018-11-03T12:00:00-03:00", &sao_paulo, 3),
            [
                "2018-11-04T01:00:00-02:00",
                "2018-11-05T00:00:00-02:00",
                "2018-11-06T00:00:00-02:00"
            ]
        );
        assert_eq!(
            next_n("*/30 0 * * *", "2018-11-03T23:00:00-03:00", &sao_paulo, 1),
            ["2018-11-05T00:00:00-02:00"]
        );
        // 2019-02-16: 23:59:59 -02 is followed by 23:00 -03; 23:xx repeats.
        assert_eq!(
            next_n("0 23 * * *", "2019-02-16T12:00:00-02:00", &sao_paulo, 2),
            ["2019-02-16T23:00:00-02:00", "2019-02-17T23:00:00-03:00"]
        );
        assert_eq!(
            next_n("*/30 23 * * *", "2019-02-16T22:59:00-02:00", &sao_paulo, 5),
            [
                "2019-02-16T23:00:00-02:00",
                "2019-02-16T23:30:00-02:00",
                "2019-02-16T23:00:00-03:00",
                "2019-02-16T23:30:00-03:00",
                "2019-02-17T23:00:00-03:00"
            ]
        );
        let cairo = zone("Africa/Cairo");
        // 2025-04-25: 23:59:59 +02 is followed by 01:00 +03 (22:00Z).
        assert_eq!(
            next_n("0 0 * * *", "2025-04-24T12:00:00Z", &cairo, 1),
            ["2025-04-25T01:00:00+03:00"]
        );
    }

    #[test]
    fn rare_expressions_jump_instead_of_scanning() {
        // Day of week starts with `*`, so both rules apply: a February 29th that is a Sunday.
        let schedule = Schedule::parse("0 0 29 2 */7").unwrap();
        for tz in [TimeZone::UTC, zone("America/New_York")] {
            let mut search = Search::default();
            let next = search.next_after(&schedule, ts("2025-01-01T00:00:00Z"), &tz);
            let local = next.map(|t| tz.to_datetime(t).to_string());
            assert_eq!(local.as_deref(), Some("2032-02-29T00:00:00"));
            // Seven years hold about 3.7 million minutes; the search takes a few hundred steps.
            assert!(search.steps < 500, "{} steps", search.steps);
        }
    }

    /// Brute force for the UTC property test: every minute of the days the day rule selects.
    fn brute_force_utc(
        schedule: &Schedule,
        after: Timestamp,
        horizon_days: i64,
    ) -> Option<Timestamp> {
        let start = TimeZone::UTC.to_datetime(after);
        let mut minute = ceil_minute(start).unwrap();
        if minute == start {
            minute = minute.checked_add(ONE_MINUTE).unwrap();
        }
        let end = start
            .checked_add(SignedDuration::from_hours(24 * horizon_days))
            .unwrap();
        while minute < end {
            if !schedule.matches_day(minute.date()) {
                minute = minute
                    .date()
                    .tomorrow()
                    .unwrap()
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if schedule.matches(minute) {
                return Some(Offset::UTC.to_timestamp(minute).unwrap());
            }
            minute = minute.checked_add(ONE_MINUTE).unwrap();
        }
        None
    }

    /// A random valid field for the property test: lists of `*`, `*/n`, `a`, `a-b`, `a-b/n`,
    /// with names where allowed.
    fn random_field(
        rng: &mut fastrand::Rng,
        min: u8,
        max: u8,
        names: Option<(&[&str], u8)>,
    ) -> String {
        let value = |rng: &mut fastrand::Rng, v: u8| match names {
            Some((names, first))
                if rng.u8(0..3) == 0 && v >= first && usize::from(v - first) < names.len() =>
            {
                let name = names[usize::from(v - first)];
                if rng.bool() {
                    name.to_uppercase()
                } else {
                    name.to_owned()
                }
            }
            _ => v.to_string(),
        };
        let items = 1 + rng.u8(0..3);
        let mut out = Vec::new();
        for _ in 0..items {
            let item = match rng.u8(0..6) {
                0 => "*".to_owned(),
                1 => format!("*/{}", rng.u8(1..=max.max(2))),
                2 | 3 => {
                    let v = rng.u8(min..=max);
                    value(rng, v)
                }
                4 => {
                    let a = rng.u8(min..=max);
                    let b = rng.u8(a..=max);
                    let (a, b) = (value(rng, a), value(rng, b));
                    format!("{a}-{b}")
                }
                _ => {
                    let a = rng.u8(min..=max);
                    let b = rng.u8(a..=max);
                    let (a, b, step) = (value(rng, a), value(rng, b), rng.u8(1..=max - min + 1));
                    format!("{a}-{b}/{step}")
                }
            };
            out.push(item);
        }
        out.join(",")
    }

    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

    #[test]
    fn property_next_after_agrees_with_a_brute_force_minute_scan_in_utc() {
        const HORIZON_DAYS: i64 = 3 * 366;
        let mut rng = fastrand::Rng::with_seed(0x_c0ffee);
        let (mut compared, mut beyond) = (0, 0);
        for _ in 0..3000 {
            // Keep the day, month and weekday fields narrow less often, so most expressions fire
            // within the horizon.
            let expr = [
                random_field(&mut rng, 0, 59, None),
                random_field(&mut rng, 0, 23, None),
                if rng.u8(0..3) == 0 {
                    random_field(&mut rng, 1, 31, None)
                } else {
                    "*".into()
                },
                if rng.u8(0..3) == 0 {
                    random_field(&mut rng, 1, 12, Some((&MONTHS, 1)))
                } else {
                    "*".into()
                },
                if rng.u8(0..3) == 0 {
                    random_field(&mut rng, 0, 7, Some((&WEEKDAYS, 0)))
                } else {
                    "*".into()
                },
            ]
            .join(" ");
            let Ok(schedule) = Schedule::parse(&expr) else {
                continue; // a day that never occurs, e.g. 31 in February only
            };
            // Random instants between 1990 and 2100, on and off minute boundaries.
            let seconds = rng.i64(631_152_000..4_102_444_800);
            let after = if rng.bool() {
                Timestamp::from_second(seconds - seconds % 60).unwrap()
            } else {
                Timestamp::new(seconds, rng.i32(0..1_000_000_000)).unwrap()
            };
            let expected = brute_force_utc(&schedule, after, HORIZON_DAYS);
            let got = next_after(&schedule, after, &TimeZone::UTC);
            match expected {
                Some(expected) => {
                    assert_eq!(got, Some(expected), "{expr} after {after}");
                    compared += 1;
                }
                None => {
                    // Beyond the scan horizon: only check that it is indeed beyond.
                    let horizon = after
                        .checked_add(SignedDuration::from_hours(24 * HORIZON_DAYS))
                        .unwrap();
                    assert!(
                        got.is_none_or(|t| t >= horizon),
                        "{expr} after {after}: {got:?}"
                    );
                    beyond += 1;
                }
            }
        }
        assert!(
            compared > 2500,
            "compared {compared}, beyond the horizon {beyond}"
        );
    }

    /// Brute force for the DST property test: cronie's policy written minute by minute on the
    /// time line. Every fire in `(after, until)`.
    fn policy_model(
        schedule: &Schedule,
        after: Timestamp,
        tz: &TimeZone,
        until: Timestamp,
    ) -> Vec<Timestamp> {
        let mut fires = Vec::new();
        let mut at = Timestamp::from_second(after.as_second().div_euclid(60) * 60 + 60).unwrap();
        while at < until {
            let local = tz.to_datetime(at);
            let offset = tz.to_offset(at);
            let runs = match schedule.dst_policy() {
                DstPolicy::Wildcard => schedule.matches(local),
                DstPolicy::FixedTime => {
                    // On the second pass of an overlap, the earlier offset already ran this time.
                    let second_pass = tz
                        .to_offset(at.checked_sub(SignedDuration::from_hours(3)).unwrap())
                        .to_timestamp(local)
                        .is_ok_and(|earlier| {
                            earlier < at
                                && tz.to_offset(earlier) != offset
                                && tz.to_datetime(earlier) == local
                        });
                    let previous =
                        tz.to_offset(at.checked_sub(SignedDuration::from_secs(1)).unwrap());
                    // At the end of a gap: any selected minute inside it.
                    let gap_run = previous < offset && {
                        let mut gap_minute = previous.to_datetime(at);
                        let mut any = false;
                        while gap_minute < local {
                            any |= schedule.matches(gap_minute);
                            gap_minute = gap_minute.checked_add(ONE_MINUTE).unwrap();
                        }
                        any
                    };
                    (schedule.matches(local) && !second_pass) || gap_run
                }
            };
            if runs {
                fires.push(at);
            }
            at = at.checked_add(ONE_MINUTE).unwrap();
        }
        fires
    }

    #[test]
    fn property_dst_policy_agrees_with_a_minute_by_minute_model_around_transitions() {
        let mut rng = fastrand::Rng::with_seed(0x_d57);
        let zones = [
            zone("America/New_York"),
            zone("America/Sao_Paulo"),
            zone("Australia/Lord_Howe"), // 30-minute shifts
            zone("Europe/London"),
            zone("Africa/Cairo"),
        ];
        let transitions: Vec<(usize, Timestamp)> = zones
            .iter()
            .enumerate()
            .flat_map(|(i, tz)| {
                tz.following(ts("2017-01-01T00:00:00Z"))
                    .take(8)
                    .map(move |t| (i, t.timestamp()))
            })
            .collect();
        let (mut fires, mut second_pass_skips, mut gap_runs) = (0, 0, 0);
        for _ in 0..1500 {
            let (zone_index, transition) = transitions[rng.usize(0..transitions.len())];
            let tz = &zones[zone_index];
            // Hours around the transition's local time, most of the time.
            let around = [
                tz.to_datetime(
                    transition
                        .checked_sub(SignedDuration::from_secs(1))
                        .unwrap(),
                )
                .hour(),
                tz.to_datetime(transition).hour(),
            ];
            let hour =
                |rng: &mut fastrand::Rng| (around[rng.usize(0..2)] + rng.i8(-1..=1)).rem_euclid(24);
            let hours = match rng.u8(0..4) {
                0 => random_field(&mut rng, 0, 23, None),
                1 => format!("{}", hour(&mut rng)),
                2 => format!("{},{}", hour(&mut rng), hour(&mut rng)),
                _ => format!("*/{}", rng.u8(1..5)),
            };
            let minutes = match rng.u8(0..3) {
                0 => random_field(&mut rng, 0, 59, None),
                1 => format!("{}", rng.u8(0..60)),
                _ => format!("{},{}-59/{}", rng.u8(0..60), rng.u8(0..60), rng.u8(1..30)),
            };
            let expr = format!("{minutes} {hours} * * *");
            let schedule = Schedule::parse(&expr).unwrap();
            let after = transition
                .checked_sub(SignedDuration::from_secs(rng.i64(0..4 * 3600)))
                .unwrap();
            let until = transition
                .checked_add(SignedDuration::from_hours(4))
                .unwrap();
            let expected = policy_model(&schedule, after, tz, until);
            let got: Vec<Timestamp> = next_fire_times(&schedule, after, tz, usize::MAX)
                .take_while(|&t| t < until)
                .collect();
            assert_eq!(
                got,
                expected,
                "{expr} after {after} in {:?}",
                tz.iana_name()
            );
            fires += got.len();
            if schedule.dst_policy() == DstPolicy::FixedTime {
                // Matching instants that did not fire can only be second passes.
                let mut at = got.first().copied().unwrap_or(until);
                while at < until {
                    second_pass_skips +=
                        usize::from(schedule.matches(tz.to_datetime(at)) && !got.contains(&at));
                    at = at.checked_add(ONE_MINUTE).unwrap();
                }
                gap_runs += got
                    .iter()
                    .filter(|&&t| t == transition && !schedule.matches(tz.to_datetime(t)))
                    .count();
            }
        }
        // The cases exercise what they are about.
        assert!(
            fires > 10_000 && second_pass_skips > 100 && gap_runs > 50,
            "{fires} {second_pass_skips} {gap_runs}"
        );
    }
}
