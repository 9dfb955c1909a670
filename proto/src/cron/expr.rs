//! Parsing 5-field cron expressions the way cronie reads them, into bitsets.
//!
//! The grammar is cronie's (`man 5 crontab`): five whitespace-separated fields, each a comma list of
//! `*`, `*/n`, `a`, `a-b` or `a-b/n`, month and weekday names in any case (also inside ranges and
//! lists), Sunday as 0 or 7, and the `@` macros. Where cronie silently accepts an expression that
//! can never do what it says, this parser refuses it with an error pointing at the field and the
//! character: reversed ranges (cronie sets no bits), `a/n` (a cronie syntax error, accepted with a
//! different meaning elsewhere) and days that never occur (`0 0 30 2 *`).
//!
//! Besides the bits, a [`Schedule`] keeps the textual facts cronie decides by: whether the
//! day-of-month or day-of-week text starts with `*` (the [`DayRule`]) and whether the minute or
//! hour text does (the [`DstPolicy`]).

use jiff::civil::{Date, DateTime};
use std::fmt;

/// One of the five fields of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// Minute, 0-59.
    Minute,
    /// Hour, 0-23.
    Hour,
    /// Day of the month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or `jan`-`dec`.
    Month,
    /// Day of the week, 0-7 (0 and 7 are Sunday) or `sun`-`sat`.
    DayOfWeek,
}

const FIELDS: [Field; 5] = [
    Field::Minute,
    Field::Hour,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
];

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTH_FULL_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Field {
    /// The name used in error messages (`day-of-month`).
    pub fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest value the field accepts.
    pub fn bounds(self) -> (u8, u8) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// Names the field accepts, and the value of the first name.
    fn names(self) -> Option<(&'static [&'static str], u8)> {
        match self {
            Field::Month => Some((&MONTH_NAMES, 1)),
            Field::DayOfWeek => Some((&WEEKDAY_NAMES, 0)),
            _ => None,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with an expression. The [`ParseError`] around it says where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// `@` followed by something other than a known macro.
    UnknownMacro {
        /// The text after `@`.
        name: String,
    },
    /// A macro followed by more text.
    TextAfterMacro,
    /// Not exactly five fields.
    FieldCount {
        /// How many fields there were.
        found: usize,
    },
    /// An empty element in a list (`1,,2`, a trailing comma).
    EmptyItem,
    /// Something required is absent, e.g. the number after `-` or `/`.
    Missing {
        /// What was expected, in words.
        expected: &'static str,
    },
    /// A character that does not belong there.
    Unexpected {
        /// The character.
        found: char,
    },
    /// A name in a field that takes only numbers (minute, hour, day of month).
    NameNotAllowed {
        /// The name as written.
        name: String,
    },
    /// A name that is no month or weekday abbreviation.
    UnknownName {
        /// The name as written.
        name: String,
    },
    /// A number outside the field's bounds.
    OutOfRange {
        /// The number as written.
        value: String,
        /// Smallest allowed value.
        min: u8,
        /// Largest allowed value.
        max: u8,
    },
    /// A range whose start is after its end (`22-2`); cronie would silently never match it.
    Reversed {
        /// Start value.
        start: u8,
        /// End value.
        end: u8,
    },
    /// `/0`.
    ZeroStep,
    /// `a/n`: cronie rejects it, other crons read it as `a-MAX/n`.
    StepWithoutRange {
        /// The suggested range (`5-59`).
        range: String,
        /// The step as written.
        step: String,
    },
    /// The day-of-month and month fields select no day that exists (`0 0 30 2 *`).
    NeverFires {
        /// The selected months, 1-12.
        months: Vec<u8>,
        /// The selected days of the month.
        days: Vec<u8>,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Empty => f.write_str("the expression is empty"),
            ParseErrorKind::UnknownMacro { name } => write!(
                f,
                "unknown macro \"@{name}\" (expected @yearly, @annually, @monthly, @weekly, \
                 @daily, @midnight or @hourly)"
            ),
            ParseErrorKind::TextAfterMacro => {
                f.write_str("a macro stands alone: unexpected text after it")
            }
            ParseErrorKind::FieldCount { found } => write!(
                f,
                "expected 5 fields (minute hour day-of-month month day-of-week), found {found}"
            ),
            ParseErrorKind::EmptyItem => f.write_str("empty list element"),
            ParseErrorKind::Missing { expected } => write!(f, "expected {expected}"),
            ParseErrorKind::Unexpected { found } => write!(f, "unexpected character {found:?}"),
            ParseErrorKind::NameNotAllowed { name } => {
                write!(f, "\"{name}\": this field takes numbers only")
            }
            ParseErrorKind::UnknownName { name } => write!(f, "unknown name \"{name}\""),
            ParseErrorKind::OutOfRange { value, min, max } => {
                write!(f, "{value} is out of range {min}-{max}")
            }
            ParseErrorKind::Reversed { start, end } => write!(
                f,
                "range {start}-{end} is reversed: the start must not be after the end"
            ),
            ParseErrorKind::ZeroStep => f.write_str("the step must be at least 1"),
            ParseErrorKind::StepWithoutRange { range, step } => write!(
                f,
                "a step needs a range or `*`: did you mean {range}/{step}?"
            ),
            ParseErrorKind::NeverFires { months, days } => {
                let months: Vec<&str> = months
                    .iter()
                    .filter_map(|&m| {
                        MONTH_FULL_NAMES
                            .get(usize::from(m).wrapping_sub(1))
                            .copied()
                    })
                    .collect();
                let days: Vec<String> = days.iter().map(u8::to_string).collect();
                let verb = if months.len() == 1 { "has" } else { "have" };
                write!(
                    f,
                    "the expression never fires: {} {verb} no day {}",
                    join(&months, "and"),
                    join(&days, "or")
                )
            }
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join<S: AsRef<str>>(items: &[S], last: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { " " } else { ", " });
            if i + 1 == items.len() {
                out.push_str(last);
                out.push(' ');
            }
        }
        out.push_str(item.as_ref());
    }
    out
}

/// An invalid cron expression: what is wrong, in which field, at which character.
///
/// ```
/// use openflume_proto::cron::{Field, ParseErrorKind, Schedule};
///
/// let err = Schedule::parse("5/15 * * * *").unwrap_err();
/// assert_eq!(err.field, Some(Field::Minute));
/// assert_eq!(err.position, 2);
/// assert_eq!(
///     err.to_string(),
///     "minute field, character 2: a step needs a range or `*`: did you mean 5-59/15?"
/// );
/// assert!(matches!(err.kind, ParseErrorKind::StepWithoutRange { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The field the problem is in; `None` for problems with the whole expression.
    pub field: Option<Field>,
    /// 1-based character position in the expression as given.
    pub position: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(
                f,
                "{field} field, character {}: {}",
                self.position, self.kind
            ),
            None => write!(f, "character {}: {}", self.position, self.kind),
        }
    }
}

/// A set of small numbers (0-63), one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bits(u64);

impl Bits {
    fn all(min: u8, max: u8) -> Bits {
        let mut bits = Bits::default();
        (min..=max).for_each(|v| bits.insert(v));
        bits
    }

    fn insert(&mut self, value: u8) {
        if value < 64 {
            self.0 |= 1 << value;
        }
    }

    pub(crate) fn contains(self, value: u8) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    /// The smallest member that is at least `from`.
    pub(crate) fn next_from(self, from: u8) -> Option<u8> {
        if from >= 64 {
            return None;
        }
        let rest = self.0 & (u64::MAX << from);
        (rest != 0).then(|| rest.trailing_zeros() as u8)
    }

    fn values(self) -> Vec<u8> {
        (0..64).filter(|&v| self.contains(v)).collect()
    }
}

/// How the day-of-month and day-of-week fields combine (cronie's `DOM_STAR` / `DOW_STAR` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayRule {
    /// One of the two field texts starts with `*`: a day must match both fields.
    Both,
    /// Neither starts with `*`: a day matches when either field matches (`0 0 13 * 5` fires on
    /// every Friday and every 13th).
    Either,
}

/// How a schedule behaves when daylight saving time skips or repeats local times (cronie's policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstPolicy {
    /// Neither the minute nor the hour text starts with `*`: a time in a spring-forward gap fires
    /// once at the first instant after the gap; a repeated time fires only on its first pass.
    FixedTime,
    /// The minute or hour text starts with `*` (or `@hourly`): times in a gap do not exist and
    /// repeated times fire on both passes.
    Wildcard,
}

/// A parsed cron expression.
///
/// ```
/// use openflume_proto::cron::{DayRule, DstPolicy, Schedule};
///
/// let schedule: Schedule = "30 2 * * mon-FRI".parse().unwrap();
/// assert_eq!(schedule.day_rule(), DayRule::Both);
/// assert_eq!(schedule.dst_policy(), DstPolicy::FixedTime);
/// assert_eq!(schedule.to_string(), "30 2 * * mon-FRI");
///
/// let every_quarter: Schedule = "*/15 9-17 * * *".parse().unwrap();
/// assert_eq!(every_quarter.dst_policy(), DstPolicy::Wildcard);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    pub(crate) minutes: Bits,
    pub(crate) hours: Bits,
    pub(crate) days_of_month: Bits,
    pub(crate) months: Bits,
    /// Weekdays 0-6, Sunday 0 (a 7 in the text is folded into 0).
    pub(crate) days_of_week: Bits,
    day_rule: DayRule,
    dst_policy: DstPolicy,
}

/// Each macro's expansion. The expansions reproduce cronie's flags too: `@hourly`'s hour text
/// starts with `*` (cronie's `HR_STAR`), `@weekly`'s day-of-month text does (`DOW_STAR` in cronie
/// has the same effect on a full day-of-month field).
const MACROS: &[(&str, &str)] = &[
    ("yearly", "0 0 1 1 *"),
    ("annually", "0 0 1 1 *"),
    ("monthly", "0 0 1 * *"),
    ("weekly", "0 0 * * 0"),
    ("daily", "0 0 * * *"),
    ("midnight", "0 0 * * *"),
    ("hourly", "0 * * * *"),
];

impl Schedule {
    /// Parses an expression: five fields or one of the `@` macros.
    ///
    /// ```
    /// use openflume_proto::cron::Schedule;
    /// assert!(Schedule::parse("@weekly").is_ok());
    /// let err = Schedule::parse("0 0 30 2 *").unwrap_err();
    /// assert_eq!(err.to_string(), "day-of-month field, character 5: the expression never fires: February has no day 30");
    /// ```
    pub fn parse(text: &str) -> Result<Schedule, ParseError> {
        let fields = split_fields(text);
        let Some(&(first_at, first)) = fields.first() else {
            return Err(error(text, None, 0, ParseErrorKind::Empty));
        };
        if let Some(name) = first.strip_prefix('@') {
            if let Some(&(extra_at, _)) = fields.get(1) {
                return Err(error(text, None, extra_at, ParseErrorKind::TextAfterMacro));
            }
            let Some((_, expansion)) = MACROS.iter().find(|(n, _)| *n == name) else {
                let name = name.to_owned();
                return Err(error(
                    text,
                    None,
                    first_at,
                    ParseErrorKind::UnknownMacro { name },
                ));
            };
            // A macro's expansion is a valid expression; its text stays what the user wrote.
            let mut schedule = Schedule::parse(expansion)?;
            schedule.text = first.to_owned();
            return Ok(schedule);
        }
        if fields.len() != 5 {
            let at = fields.get(5).map_or(text.len(), |&(at, _)| at);
            let kind = ParseErrorKind::FieldCount {
                found: fields.len(),
            };
            return Err(error(text, None, at, kind));
        }
        let mut sets = [Bits::default(); 5];
        for ((set, field), &(at, field_text)) in sets.iter_mut().zip(FIELDS).zip(&fields) {
            *set = parse_field(field, field_text)
                .map_err(|(offset, kind)| error(text, Some(field), at + offset, kind))?;
        }
        let [minutes, hours, days_of_month, months, mut days_of_week] = sets;
        if days_of_week.contains(7) {
            days_of_week.insert(0);
            days_of_week.0 &= !(1 << 7);
        }
        let starts_with_star = |i: usize| fields.get(i).is_some_and(|(_, f)| f.starts_with('*'));
        let day_rule = if starts_with_star(2) || starts_with_star(4) {
            DayRule::Both
        } else {
            DayRule::Either
        };
        let dst_policy = if starts_with_star(0) || starts_with_star(1) {
            DstPolicy::Wildcard
        } else {
            DstPolicy::FixedTime
        };
        let schedule = Schedule {
            text: text.trim().to_owned(),
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_rule,
            dst_policy,
        };
        if let Some(kind) = schedule.never_fires() {
            let at = fields.get(2).map_or(0, |&(at, _)| at);
            return Err(error(text, Some(Field::DayOfMonth), at, kind));
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How day-of-month and day-of-week combine.
    pub fn day_rule(&self) -> DayRule {
        self.day_rule
    }

    /// What happens at daylight saving time transitions.
    pub fn dst_policy(&self) -> DstPolicy {
        self.dst_policy
    }

    /// True when the schedule selects this local date and minute (seconds are ignored). Time
    /// zones play no part: [`next_after`](crate::cron::next_after) applies them.
    ///
    /// ```
    /// use jiff::civil::date;
    /// use openflume_proto::cron::Schedule;
    /// let friday_or_13th: Schedule = "0 0 13 * 5".parse().unwrap();
    /// assert!(friday_or_13th.matches(date(2025, 6, 6).at(0, 0, 0, 0))); // a Friday
    /// assert!(friday_or_13th.matches(date(2025, 7, 13).at(0, 0, 0, 0))); // a Sunday the 13th
    /// assert!(!friday_or_13th.matches(date(2025, 7, 14).at(0, 0, 0, 0)));
    /// ```
    pub fn matches(&self, at: DateTime) -> bool {
        let (Ok(minute), Ok(hour)) = (u8::try_from(at.minute()), u8::try_from(at.hour())) else {
            return false;
        };
        self.minutes.contains(minute) && self.hours.contains(hour) && self.matches_day(at.date())
    }

    /// True when the month and the day-of-month / day-of-week rule select `date`.
    pub(crate) fn matches_day(&self, date: Date) -> bool {
        let (Ok(month), Ok(day)) = (u8::try_from(date.month()), u8::try_from(date.day())) else {
            return false;
        };
        let weekday = date.weekday().to_sunday_zero_offset().max(0) as u8;
        let (by_date, by_weekday) = (
            self.days_of_month.contains(day),
            self.days_of_week.contains(weekday),
        );
        self.months.contains(month)
            && match self.day_rule {
                DayRule::Both => by_date && by_weekday,
                DayRule::Either => by_date || by_weekday,
            }
    }

    /// The days of `date`'s month (1-31) that the day rule selects: [`Schedule::matches_day`]
    /// for a whole month at once, so the search can jump to the next selected day.
    pub(crate) fn day_mask(&self, date: Date) -> Bits {
        let days_in_month = date.days_in_month().max(0) as u8;
        let first = date
            .first_of_month()
            .weekday()
            .to_sunday_zero_offset()
            .max(0) as u8;
        let mut weekdays = Bits::default();
        for day in 1..=days_in_month {
            if self.days_of_week.contains((first + day - 1) % 7) {
                weekdays.insert(day);
            }
        }
        let valid = Bits::all(1, days_in_month).0;
        Bits(match self.day_rule {
            DayRule::Both => self.days_of_month.0 & weekdays.0 & valid,
            DayRule::Either => (self.days_of_month.0 | weekdays.0) & valid,
        })
    }

    /// Under [`DayRule::Both`] a selected day must exist in a selected month; every weekday occurs
    /// in every month, so under [`DayRule::Either`] (and for the weekday half of `Both`) any
    /// selection eventually fires.
    fn never_fires(&self) -> Option<ParseErrorKind> {
        if self.day_rule == DayRule::Either {
            return None;
        }
        let longest_month = self
            .months
            .values()
            .into_iter()
            .map(|m| match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            })
            .max()
            .unwrap_or(0);
        if self.days_of_month.0 & Bits::all(1, longest_month).0 != 0 {
            return None;
        }
        Some(ParseErrorKind::NeverFires {
            months: self.months.values(),
            days: self.days_of_month.values(),
        })
    }
}

impl std::str::FromStr for Schedule {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Schedule, ParseError> {
        Schedule::parse(text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Builds the error, turning a byte offset into a 1-based character position.
fn error(text: &str, field: Option<Field>, byte: usize, kind: ParseErrorKind) -> ParseError {
    let position = text
        .get(..byte)
        .map_or(1, |before| before.chars().count() + 1);
    ParseError {
        field,
        position,
        kind,
    }
}

/// Whitespace-separated fields with their byte offsets.
fn split_fields(text: &str) -> Vec<(usize, &str)> {
    let mut fields = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                fields.extend(text.get(s..i).map(|field| (s, field)));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    fields
}

/// An error inside a field: byte offset within the field, and what.
type FieldError = (usize, ParseErrorKind);

fn parse_field(field: Field, text: &str) -> Result<Bits, FieldError> {
    let mut bits = Bits::default();
    let mut at = 0;
    for item in text.split(',') {
        if item.is_empty() {
            return Err((at, ParseErrorKind::EmptyItem));
        }
        parse_item(field, item, &mut bits).map_err(|(offset, kind)| (at + offset, kind))?;
        at += item.len() + 1;
    }
    Ok(bits)
}

/// One list element: `*`, `*/n`, `a`, `a-b`, `a-b/n`.
fn parse_item(field: Field, item: &str, bits: &mut Bits) -> Result<(), FieldError> {
    let (min, max) = field.bounds();
    let (range, step_text) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let step_at = range.len() + 1;
    let step = match step_text {
        None => 1,
        Some(text) => parse_step(text).map_err(|(offset, kind)| (step_at + offset, kind))?,
    };
    let (start, end) = if range == "*" {
        (min, max)
    } else if let Some((start_text, end_text)) = range.split_once('-') {
        let start = parse_value(field, start_text, "a value before '-'")?;
        let end_at = start_text.len() + 1;
        let end = parse_value(field, end_text, "a value after '-'")
            .map_err(|(offset, kind)| (end_at + offset, kind))?;
        // cronie reads a weekday range ending in Sunday-as-0 (`fri-sun`, `5-0`) as ending in 7.
        let end = if field == Field::DayOfWeek && end == 0 && start > 0 {
            7
        } else {
            end
        };
        if start > end {
            return Err((0, ParseErrorKind::Reversed { start, end }));
        }
        (start, end)
    } else {
        let value = parse_value(field, range, "a value")?;
        if let Some(step_text) = step_text {
            let kind = ParseErrorKind::StepWithoutRange {
                range: format!("{range}-{max}"),
                step: step_text.to_owned(),
            };
            return Err((range.len(), kind));
        }
        (value, value)
    };
    let mut value = u32::from(start);
    while value <= u32::from(end) {
        bits.insert(value as u8);
        value = value.saturating_add(step);
    }
    Ok(())
}

/// A step: digits, at least 1. Steps larger than the field are allowed (cronie allows them: the
/// range's start is then the only value); huge ones saturate.
fn parse_step(text: &str) -> Result<u32, FieldError> {
    if text.is_empty() {
        return Err((
            0,
            ParseErrorKind::Missing {
                expected: "a step after '/'",
            },
        ));
    }
    if let Some((i, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err((i, ParseErrorKind::Unexpected { found }));
    }
    let step = text.bytes().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    });
    if step == 0 {
        return Err((0, ParseErrorKind::ZeroStep));
    }
    Ok(step)
}

/// A number or (in the month and weekday fields) a three-letter name, case-insensitive.
fn parse_value(field: Field, text: &str, expected: &'static str) -> Result<u8, FieldError> {
    let (min, max) = field.bounds();
    let Some(first) = text.chars().next() else {
        return Err((0, ParseErrorKind::Missing { expected }));
    };
    if first.is_ascii_digit() {
        if let Some((i, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err((i, ParseErrorKind::Unexpected { found }));
        }
        return match text.parse::<u8>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err((
                0,
                ParseErrorKind::OutOfRange {
                    value: text.to_owned(),
                    min,
                    max,
                },
            )),
        };
    }
    if first.is_ascii_alphabetic() {
        if let Some((i, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_alphabetic()) {
            return Err((i, ParseErrorKind::Unexpected { found }));
        }
        let name = text.to_owned();
        let Some((names, first_value)) = field.names() else {
            return Err((0, ParseErrorKind::NameNotAllowed { name }));
        };
        return names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
            .map(|i| first_value + i as u8)
            .ok_or((0, ParseErrorKind::UnknownName { name }));
    }
    Err((0, ParseErrorKind::Unexpected { found: first }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bits: Bits) -> Vec<u8> {
        bits.values()
    }

    #[test]
    fn fields_expand_to_the_values_cronie_sets() {
        // (expression, field index, expected values)
        let cases: &[(&str, usize, &[u8])] = &[
            (
                "* * * * *",
                1,
                &[
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                    22, 23,
                ],
            ),
            ("*/25 * * * *", 0, &[0, 25, 50]),
            ("*/7 * * * *", 0, &[0, 7, 14, 21, 28, 35, 42, 49, 56]),
            ("0 */23 * * *", 1, &[0, 23]),
            ("5 * * * *", 0, &[5]),
            ("5-5 * * * *", 0, &[5]),
            ("10-20/5 * * * *", 0, &[10, 15, 20]),
            ("1,2,3-5,50-59/4 * * * *", 0, &[1, 2, 3, 4, 5, 50, 54, 58]),
            ("*/60 * * * *", 0, &[0]),
            ("7-9/100 * * * *", 0, &[7]),
            ("0 0 */10 * *", 2, &[1, 11, 21, 31]),
            ("0 0 * jan-mar *", 3, &[1, 2, 3]),
            ("0 0 * JAN,Jun,dEc *", 3, &[1, 6, 12]),
            ("0 0 * 2-oct/3 *", 3, &[2, 5, 8]),
            ("0 0 * * 7", 4, &[0]),
            ("0 0 * * 5-7", 4, &[0, 5, 6]),
            ("0 0 * * 1-7/2", 4, &[0, 1, 3, 5]),
            ("0 0 * * fri-sun", 4, &[0, 5, 6]),
            ("0 0 * * 5-0", 4, &[0, 5, 6]),
            ("0 0 * * sun-sun", 4, &[0]),
            ("0 0 * * MON-fri", 4, &[1, 2, 3, 4, 5]),
            ("0 0 * * */3", 4, &[0, 3, 6]),
            ("0 0 * * sat,sun", 4, &[0, 6]),
            ("0 0 * * 0-7", 4, &[0, 1, 2, 3, 4, 5, 6]),
            ("0 0 * * *", 4, &[0, 1, 2, 3, 4, 5, 6]),
            ("00 07 * * *", 1, &[7]),
        ];
        for (text, field, expected) in cases {
            let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = match field {
                0 => set(s.minutes),
                1 => set(s.hours),
                2 => set(s.days_of_month),
                3 => set(s.months),
                _ => set(s.days_of_week),
            };
            assert_eq!(got, *expected, "{text} field {field}");
        }
    }

    #[test]
    fn macros_expand_like_cronie() {
        let cases = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ];
        for (name, expansion) in cases {
            let a = Schedule::parse(name).unwrap();
            let b = Schedule::parse(expansion).unwrap();
            assert_eq!(a.as_str(), name);
            assert_eq!(
                (
                    a.minutes,
                    a.hours,
                    a.days_of_month,
                    a.months,
                    a.days_of_week
                ),
                (
                    b.minutes,
                    b.hours,
                    b.days_of_month,
                    b.months,
                    b.days_of_week
                ),
                "{name}"
            );
            assert_eq!(a.day_rule, DayRule::Both, "{name}");
        }
        assert_eq!(
            Schedule::parse("@hourly").unwrap().dst_policy(),
            DstPolicy::Wildcard
        );
        assert_eq!(
            Schedule::parse("@daily").unwrap().dst_policy(),
            DstPolicy::FixedTime
        );
        assert_eq!(Schedule::parse("  @daily\t").unwrap().as_str(), "@daily");
    }

    #[test]
    fn the_star_prefix_decides_the_day_rule_and_the_dst_policy() {
        let cases = [
            ("0 0 13 * 5", DayRule::Either, DstPolicy::FixedTime),
            ("0 0 */2 * 1", DayRule::Both, DstPolicy::FixedTime),
            ("0 0 1-31 * 1", DayRule::Either, DstPolicy::FixedTime),
            ("49 15 3,*/20 * 1-7", DayRule::Either, DstPolicy::FixedTime),
            ("0 0 1 * */2", DayRule::Both, DstPolicy::FixedTime),
            ("*/15 1 * * *", DayRule::Both, DstPolicy::Wildcard),
            ("30 * * * *", DayRule::Both, DstPolicy::Wildcard),
            ("30 0-23 * * *", DayRule::Both, DstPolicy::FixedTime),
            ("0-59 1 * * *", DayRule::Both, DstPolicy::FixedTime),
            ("*/30 2 1 1 1", DayRule::Either, DstPolicy::Wildcard),
        ];
        for (text, rule, policy) in cases {
            let s = Schedule::parse(text).unwrap();
            assert_eq!((s.day_rule(), s.dst_policy()), (rule, policy), "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_field_and_the_character() {
        use Field::*;
        // (expression, field, 1-based character, message after "… character N: ")
        let cases: &[(&str, Option<Field>, usize, &str)] = &[
            ("", None, 1, "the expression is empty"),
            ("   ", None, 1, "the expression is empty"),
            (
                "0\u{3000}99 * * *",
                Some(Hour),
                3,
                "99 is out of range 0-23",
            ),
            (
                "* * * *",
                None,
                8,
                "expected 5 fields (minute hour day-of-month month day-of-week), found 4",
            ),
            (
                "* * * * * *",
                None,
                11,
                "expected 5 fields (minute hour day-of-month month day-of-week), found 6",
            ),
            (
                "@reboot",
                None,
                1,
                "unknown macro \"@reboot\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
            ),
            (
                "@DAILY",
                None,
                1,
                "unknown macro \"@DAILY\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
            ),
            (
                "@daily 5",
                None,
                8,
                "a macro stands alone: unexpected text after it",
            ),
            ("60 * * * *", Some(Minute), 1, "60 is out of range 0-59"),
            ("* 24 * * *", Some(Hour), 3, "24 is out of range 0-23"),
            ("* * 0 * *", Some(DayOfMonth), 5, "0 is out of range 1-31"),
            ("* * 32 * *", Some(DayOfMonth), 5, "32 is out of range 1-31"),
            ("* * * 13 *", Some(Month), 7, "13 is out of range 1-12"),
            ("* * * 0 *", Some(Month), 7, "0 is out of range 1-12"),
            ("* * * * 8", Some(DayOfWeek), 9, "8 is out of range 0-7"),
            (
                "1,99999999999 * * * *",
                Some(Minute),
                3,
                "99999999999 is out of range 0-59",
            ),
            (
                "30-20 * * * *",
                Some(Minute),
                1,
                "range 30-20 is reversed: the start must not be after the end",
            ),
            (
                "0 22-2 * * *",
                Some(Hour),
                3,
                "range 22-2 is reversed: the start must not be after the end",
            ),
            (
                "0 0 * * fri-mon",
                Some(DayOfWeek),
                9,
                "range 5-1 is reversed: the start must not be after the end",
            ),
            (
                "0 0 * dec-jan *",
                Some(Month),
                7,
                "range 12-1 is reversed: the start must not be after the end",
            ),
            (
                "*/0 * * * *",
                Some(Minute),
                3,
                "the step must be at least 1",
            ),
            (
                "* 1-5/0 * * *",
                Some(Hour),
                7,
                "the step must be at least 1",
            ),
            (
                "5/15 * * * *",
                Some(Minute),
                2,
                "a step needs a range or `*`: did you mean 5-59/15?",
            ),
            (
                "0 3/2 * * *",
                Some(Hour),
                4,
                "a step needs a range or `*`: did you mean 3-23/2?",
            ),
            (
                "0 0 * * mon/2",
                Some(DayOfWeek),
                12,
                "a step needs a range or `*`: did you mean mon-7/2?",
            ),
            ("1,,2 * * * *", Some(Minute), 3, "empty list element"),
            ("1, * * * *", Some(Minute), 3, "empty list element"),
            (",1 * * * *", Some(Minute), 1, "empty list element"),
            ("1- * * * *", Some(Minute), 3, "expected a value after '-'"),
            ("-5 * * * *", Some(Minute), 1, "expected a value before '-'"),
            ("*/ * * * *", Some(Minute), 3, "expected a step after '/'"),
            ("*/x * * * *", Some(Minute), 3, "unexpected character 'x'"),
            ("*5 * * * *", Some(Minute), 1, "unexpected character '*'"),
            ("1-2-3 * * * *", Some(Minute), 4, "unexpected character '-'"),
            ("*/2/3 * * * *", Some(Minute), 4, "unexpected character '/'"),
            ("? * * * *", Some(Minute), 1, "unexpected character '?'"),
            (
                "* * L * *",
                Some(DayOfMonth),
                5,
                "\"L\": this field takes numbers only",
            ),
            (
                "mon * * * *",
                Some(Minute),
                1,
                "\"mon\": this field takes numbers only",
            ),
            (
                "0 0 * * monday",
                Some(DayOfWeek),
                9,
                "unknown name \"monday\"",
            ),
            ("0 0 * sept *", Some(Month), 7, "unknown name \"sept\""),
            (
                "0 0 * * sun#2",
                Some(DayOfWeek),
                12,
                "unexpected character '#'",
            ),
            ("0 0 * * 1-frx", Some(DayOfWeek), 11, "unknown name \"frx\""),
            (
                "0 0 30 2 *",
                Some(DayOfMonth),
                5,
                "the expression never fires: February has no day 30",
            ),
            (
                "0 0 30,31 2 *",
                Some(DayOfMonth),
                5,
                "the expression never fires: February has no day 30 or 31",
            ),
            (
                "0 0 31 2,4,jun * ",
                Some(DayOfMonth),
                5,
                "the expression never fires: February, April and June have no day 31",
            ),
            (
                "0 0 31 2 */2",
                Some(DayOfMonth),
                5,
                "the expression never fires: February has no day 31",
            ),
            ("é 0 * * *", Some(Minute), 1, "unexpected character 'é'"),
            ("0 é * * *", Some(Hour), 3, "unexpected character 'é'"),
        ];
        for &(text, field, position, message) in cases {
            let err = Schedule::parse(text).expect_err(text);
            assert_eq!(
                (err.field, err.position),
                (field, position),
                "{text}: {err}"
            );
            let prefix = match field {
                Some(f) => format!("{f} field, character {position}: "),
                None => format!("character {position}: "),
            };
            assert_eq!(err.to_string(), format!("{prefix}{message}"), "{text}");
        }
    }

    #[test]
    fn impossible_looking_days_that_do_occur_are_accepted() {
        for text in [
            "0 0 29 2 *",   // leap years
            "0 0 30 2 1",   // Either rule: Mondays in February
            "0 0 31 2,3 *", // March 31
            "0 0 */30 2 *", // the 1st
            "0 0 29 2 */7", // Both rule: a Sunday Feb 29
        ] {
            assert!(Schedule::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn bits_find_the_next_member() {
        let bits = Schedule::parse("3,40 * * * *").unwrap().minutes;
        assert_eq!(bits.next_from(0), Some(3));
        assert_eq!(bits.next_from(3), Some(3));
        assert_eq!(bits.next_from(4), Some(40));
        assert_eq!(bits.next_from(41), None);
        assert_eq!(bits.next_from(64), None);
        assert_eq!(bits.next_from(200), None);
    }

    #[test]
    fn join_reads_like_english() {
        assert_eq!(join(&["a"], "and"), "a");
        assert_eq!(join(&["a", "b"], "and"), "a and b");
        assert_eq!(join(&["a", "b", "c"], "or"), "a, b or c");
    }
}
