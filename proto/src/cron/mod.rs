//! The cron source, `time`: a `tick` event at every time a cron expression selects.
//!
//! Expressions follow cronie, the cron Linux distributions run ([`Schedule`]), evaluated in a time
//! zone with cronie's daylight saving time policy ([`next_after`]). The machine owns no clock:
//! it turns the next fire time into a monotonic deadline through [`Now`], and whenever the driver
//! wakes it re-reads the wall clock. That one comparison handles early wakes (re-arm), late wakes,
//! suspended laptops and NTP steps forward (fire once, for the latest scheduled time, and log
//! `tick.missed`), and the wall clock stepping back (a scheduled time never fires twice).
//!
//! The zone comes in resolved: finding the system's local zone or reading the tz database is IO,
//! which belongs to the driver.

mod expr;
mod format;
mod next;

pub use expr::{DayRule, DstPolicy, Field, ParseError, ParseErrorKind, Schedule};
pub use format::format_fire_time;
pub use next::{next_after, next_fire_times};

use crate::core::{Core, answered_by_core};
use crate::{
    CatchUp, ConfigError, Event, Input, Level, Machine, Misuse, Now, RawJson, Status, TimerKind,
    UnixMillis,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The source name on every cron event and log.
pub const SOURCE: &str = "time";

/// How many skipped fire times a late wake counts one by one before reporting "at least" that many.
const MISSED_COUNT_CAP: u64 = 1000;

/// What to schedule and what each tick looks like.
///
/// ```
/// use openflume_proto::cron::CronConfig;
/// let config: CronConfig = serde_json::from_str(r#"{"expression": "*/5 9-17 * * mon-fri", "zone": "Europe/Paris"}"#).unwrap();
/// assert_eq!(config.zone.as_deref(), Some("Europe/Paris"));
/// assert_eq!(config.template.event_type, None); // "tick"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CronConfig {
    /// The cron expression: five fields or an `@` macro.
    pub expression: String,
    /// The zone's name, for logs and the `zone` meta key only: the machine is handed the
    /// resolved [`TimeZone`]. Default: none (no `zone` meta key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Overrides for the emitted events. Default: type `tick`, data `{"firedAt", "cron"}`, meta `{"cron"}`.
    #[serde(default)]
    pub template: TickTemplate,
    /// The last fire of an earlier run (Unix ms, from its stored
    /// [`CronCursor`](crate::CronCursor) under [`cursor_key`](Self::cursor_key)): the fire
    /// times missed since are handled at start by [`catch_up`](Self::catch_up). Default: none
    /// (a first start fires nothing missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<i64>,
    /// What a start after `last_fire` does with the fire times missed meanwhile, at most 24 h
    /// back. Default: [`CatchUp::Last`].
    #[serde(default)]
    pub catch_up: crate::CatchUp,
}

impl CronConfig {
    /// A configuration with the default event shape.
    ///
    /// ```
    /// use openflume_proto::cron::CronConfig;
    /// let config = CronConfig::new("@daily");
    /// // The same as a config file that names only the expression.
    /// assert_eq!(config, serde_json::from_str(r#"{"expression": "@daily"}"#).unwrap());
    /// assert_eq!(config.zone, None); // no `zone` meta key
    /// ```
    pub fn new(expression: impl Into<String>) -> CronConfig {
        CronConfig {
            expression: expression.into(),
            zone: None,
            template: TickTemplate::default(),
            last_fire: None,
            catch_up: crate::CatchUp::default(),
        }
    }

    /// This schedule's key in a [`CronCursor`](crate::CronCursor): its event type and expression.
    ///
    /// ```
    /// use openflume_proto::cron::CronConfig;
    /// assert_eq!(CronConfig::new(" @daily ").cursor_key(), "tick @daily");
    /// assert_eq!(CronConfig::from_spec("report=0 9 * * *").unwrap().cursor_key(), "report 0 9 * * *");
    /// ```
    pub fn cursor_key(&self) -> String {
        let event_type = self.template.event_type.as_deref().unwrap_or("tick");
        crate::CronCursor::key(event_type, self.expression.trim())
    }

    /// Events of type `event_type` instead of `tick` (a named schedule; the source stays
    /// `time`).
    ///
    /// ```
    /// use openflume_proto::cron::CronConfig;
    /// let config = CronConfig::new("0 9 * * mon-fri").with_event_type("daily-report");
    /// assert_eq!(config.template.event_type.as_deref(), Some("daily-report"));
    /// ```
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> CronConfig {
        self.template.event_type = Some(event_type.into());
        self
    }

    /// Events carrying `data` on every tick instead of `{"firedAt", "cron"}` (the TypeScript
    /// library's `message()`).
    ///
    /// ```
    /// use openflume_proto::cron::CronConfig;
    /// let config = CronConfig::new("@hourly").with_data(serde_json::json!({"job": "sync"}));
    /// assert_eq!(config.template.data.unwrap()["job"], "sync");
    /// ```
    pub fn with_data(mut self, data: serde_json::Value) -> CronConfig {
        self.template.data = Some(data);
        self
    }

    /// Reads a schedule as the command line writes it: an expression (`*/5 * * * *`, `@daily`),
    /// or `NAME=EXPRESSION` for a named one whose events have type NAME.
    ///
    /// The rule: a spec holding `=` is named. NAME is one or more of `a-z`, `0-9`, `-` and `_`,
    /// and must not itself be a valid cron field (`5`, `1-5`, `mon-fri`, `jan` are refused), so a
    /// name can never be mistaken for part of a schedule; the rest must parse as an expression.
    /// (No cron expression holds `=`, so an unnamed spec is never misread.) An unnamed spec is
    /// checked when the machine is built, as [`CronConfig::new`]'s is.
    ///
    /// ```
    /// use openflume_proto::cron::CronConfig;
    /// let named = CronConfig::from_spec("daily-report=0 9 * * mon-fri").unwrap();
    /// assert_eq!(named.expression, "0 9 * * mon-fri");
    /// assert_eq!(named.template.event_type.as_deref(), Some("daily-report"));
    /// assert_eq!(CronConfig::from_spec("@daily").unwrap(), CronConfig::new("@daily"));
    /// assert_eq!(CronConfig::from_spec("backup=@weekly").unwrap().expression, "@weekly");
    ///
    /// for bad in ["5=* * * * *", "mon-fri=@daily", "Daily=@daily", "=@daily", "x=61 * * * *"] {
    ///     assert!(CronConfig::from_spec(bad).is_err(), "{bad}");
    /// }
    /// ```
    pub fn from_spec(spec: &str) -> Result<CronConfig, ConfigError> {
        let Some((name, expression)) = spec.split_once('=') else {
            return Ok(CronConfig::new(spec));
        };
        let charset = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !charset {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: format!(
                    "schedule name {name:?} must be one or more of a-z, 0-9, '-' and '_'"
                ),
            });
        }
        if looks_like_a_field(name) {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: format!(
                    "schedule name {name:?} reads as a cron field: pick a name that is not one"
                ),
            });
        }
        let expression = expression.trim();
        Schedule::parse(expression).map_err(|error| ConfigError::CronExpression {
            field: "expression",
            expression: expression.to_owned(),
            error,
        })?;
        Ok(CronConfig::new(expression).with_event_type(name))
    }
}

/// Whether `name` parses as one field of a cron expression, in any of the five positions.
fn looks_like_a_field(name: &str) -> bool {
    (0..5).any(|position| {
        let mut fields = ["*"; 5];
        fields[position] = name;
        Schedule::parse(&fields.join(" ")).is_ok()
    })
}

/// Overrides for the shape of tick events (open-flume's `message()`).
///
/// ```
/// use openflume_proto::cron::TickTemplate;
/// let template: TickTemplate = serde_json::from_str(r#"{"type": "backup", "meta": {"team": "ops"}}"#).unwrap();
/// assert_eq!(template.event_type.as_deref(), Some("backup"));
/// assert_eq!(template.data, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TickTemplate {
    /// The event type instead of `tick`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The event data instead of `{"firedAt": <scheduled Unix ms>, "cron": "<expression>"}`,
    /// emitted as given on every tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Meta entries added to `{"cron": "<expression>"}` (and `zone` when configured); a key
    /// given here replaces the default one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// The default event data.
#[derive(Serialize)]
struct TickData<'a> {
    #[serde(rename = "firedAt")]
    fired_at: i64,
    cron: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CronTimer {
    /// The next scheduled time.
    Fire,
}

impl TimerKind for CronTimer {
    const ALL: &'static [CronTimer] = &[CronTimer::Fire];
    fn index(self) -> usize {
        0
    }
    fn name(self) -> &'static str {
        match self {
            CronTimer::Fire => "fire",
        }
    }
}

/// The cron machine: emits a tick at each scheduled time, judged by the wall clock in [`Now`].
///
/// Drain rule: after every `handle_input`, call `poll_output` until `None`; then sleep until
/// `poll_timeout` and feed [`Input::Timer`].
///
/// ```
/// use jiff::tz::TimeZone;
/// use openflume_proto::cron::{CronConfig, CronMachine};
/// use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
///
/// let mut cron = CronMachine::new(CronConfig::new("* * * * *"), TimeZone::UTC, 0).unwrap();
/// // 2025-11-25T19:46:40Z: the next minute starts in 20 s.
/// let start = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
/// cron.handle_input(start, Input::Start).unwrap();
/// while cron.poll_output().is_some() {}
/// assert_eq!(cron.poll_timeout(), Some(Millis(20_000)));
///
/// let wake = Now { mono: Millis(20_000), wall: UnixMillis(1_764_100_020_000) };
/// cron.handle_input(wake, Input::Timer).unwrap();
/// let Some(Output::Emit { event, confirm: None }) = cron.poll_output() else { panic!() };
/// assert_eq!(event.event_type, "tick");
/// assert_eq!(event.data.get(), r#"{"firedAt":1764100020000,"cron":"* * * * *"}"#);
/// assert_eq!(cron.poll_timeout(), Some(Millis(80_000)));
/// ```
#[derive(Debug)]
pub struct CronMachine {
    schedule: Schedule,
    zone: TimeZone,
    zone_label: String,
    event_type: String,
    /// The template's data, serialised once.
    data: Option<RawJson>,
    meta: BTreeMap<Cow<'static, str>, String>,
    core: Core<CronTimer>,
    /// Nothing at or before this instant fires (again): the latest fired time, or the start.
    handled_up_to: Timestamp,
    /// The first fire time after `handled_up_to`; `None` past the year 9999.
    next_fire: Option<Timestamp>,
    /// An earlier run's last fire, caught up on at start by `catch_up`.
    resume_from: Option<Timestamp>,
    catch_up: CatchUp,
}

impl CronMachine {
    /// Validates the expression and the template. `zone` is the resolved time zone the expression
    /// is evaluated in. `seed` is unused (cron involves no randomness) and accepted so that every
    /// machine is built the same way.
    ///
    /// ```
    /// use jiff::tz::TimeZone;
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::{Machine, Misuse, Status};
    ///
    /// let cron = CronMachine::new(CronConfig::new("0 9 * * mon-fri"), TimeZone::UTC, 0).unwrap();
    /// assert_eq!(cron.status(), Status::Idle);
    ///
    /// // A bad expression is a configuration error that quotes it.
    /// let Err(Misuse::Config(why)) = CronMachine::new(CronConfig::new("61 * * * *"), TimeZone::UTC, 0) else {
    ///     panic!("61 is not a minute");
    /// };
    /// assert!(why.to_string().contains(r#""61 * * * *""#));
    /// assert_eq!(why.field(), Some("expression"));
    ///
    /// // So is an empty event type in the template.
    /// let mut config = CronConfig::new("@hourly");
    /// config.template.event_type = Some(String::new());
    /// assert!(matches!(CronMachine::new(config, TimeZone::UTC, 0), Err(Misuse::Config(_))));
    /// ```
    pub fn new(config: CronConfig, zone: TimeZone, seed: u64) -> Result<CronMachine, Misuse> {
        let _ = seed;
        let schedule = Schedule::parse(&config.expression).map_err(|error| {
            Misuse::Config(ConfigError::CronExpression {
                field: "expression",
                expression: config.expression.clone(),
                error,
            })
        })?;
        let resume_from = config
            .last_fire
            .and_then(|ms| Timestamp::from_millisecond(ms).ok());
        let catch_up = config.catch_up;
        let template = config.template;
        if template.event_type.as_deref() == Some("") {
            return Err(Misuse::Config(
                ConfigError::Empty {
                    field: "event_type",
                }
                .in_scope("cron template"),
            ));
        }
        let zone_label = config
            .zone
            .clone()
            .or_else(|| zone.iana_name().map(str::to_owned))
            .unwrap_or_else(|| "the given time zone".to_owned());
        let mut meta = BTreeMap::from([("cron".into(), schedule.as_str().to_owned())]);
        if let Some(name) = config.zone {
            meta.insert("zone".into(), name);
        }
        meta.extend(template.meta.into_iter().map(|(k, v)| (Cow::Owned(k), v)));
        Ok(CronMachine {
            zone,
            zone_label,
            event_type: template.event_type.unwrap_or_else(|| "tick".to_owned()),
            data: template.data.as_ref().map(RawJson::from_value),
            meta,
            core: Core::new(SOURCE),
            handled_up_to: Timestamp::UNIX_EPOCH,
            next_fire: None,
            resume_from,
            catch_up,
            schedule,
        })
    }

    /// The parsed expression.
    ///
    /// ```
    /// use jiff::civil::date;
    /// use jiff::tz::TimeZone;
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    ///
    /// let cron = CronMachine::new(CronConfig::new(" @hourly "), TimeZone::UTC, 0).unwrap();
    /// assert_eq!(cron.schedule().as_str(), "@hourly"); // as written, trimmed
    /// assert!(cron.schedule().matches(date(2025, 11, 25).at(19, 0, 0, 0)));
    /// assert!(!cron.schedule().matches(date(2025, 11, 25).at(19, 30, 0, 0)));
    /// ```
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The next scheduled fire time, once started; `None` before `Start`, after shutdown, past
    /// the year 9999, or when started with a wall clock jiff cannot represent (logged as
    /// `clock.invalid`).
    ///
    /// ```
    /// use jiff::Timestamp;
    /// use jiff::tz::TimeZone;
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::{Input, Machine, Millis, Now, UnixMillis};
    ///
    /// let mut cron = CronMachine::new(CronConfig::new("*/15 * * * *"), TimeZone::UTC, 0).unwrap();
    /// assert_eq!(cron.next_fire(), None);
    ///
    /// // 2025-11-25T19:46:40Z: the next quarter hour is 20:00.
    /// let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
    /// cron.handle_input(now, Input::Start).unwrap();
    /// while cron.poll_output().is_some() {}
    /// let next: Timestamp = "2025-11-25T20:00:00Z".parse().unwrap();
    /// assert_eq!(cron.next_fire(), Some(next));
    ///
    /// cron.handle_input(now, Input::Shutdown { keep_session: false }).unwrap();
    /// assert_eq!(cron.next_fire(), None);
    /// ```
    pub fn next_fire(&self) -> Option<Timestamp> {
        self.next_fire
    }

    fn start(&mut self, now: Now) {
        self.core.set_status(Status::Connected, None);
        let Some(wall) = wall_instant(now) else {
            self.core.log(
                now,
                Level::Error,
                "clock.invalid",
                "the wall clock is outside the years -9999 to 9999; nothing is scheduled",
            );
            return;
        };
        if let Some(last) = self.resume_from.take() {
            self.catch_up(now, last, wall);
        }
        self.handled_up_to = wall;
        self.next_fire = next_after(&self.schedule, wall, &self.zone);
        let message = match self.next_fire {
            Some(next) => format!(
                "cron \"{}\" in {}: first fire at {}",
                self.schedule,
                self.zone_label,
                format_fire_time(next, &self.zone)
            ),
            None => format!(
                "cron \"{}\" in {}: no fire time before the year 10000",
                self.schedule, self.zone_label
            ),
        };
        self.core.log(now, Level::Info, "scheduler.start", message);
        self.arm(now);
    }

    /// Handles the fire times missed between an earlier run's last fire and now (at most
    /// [`CatchUp::WINDOW_MS`] back) by the catch-up policy, and says what it did.
    fn catch_up(&mut self, now: Now, last: Timestamp, wall: Timestamp) {
        let window_start =
            Timestamp::from_millisecond(wall.as_millisecond() - CatchUp::WINDOW_MS).unwrap_or(last);
        let mut missed = Vec::new();
        let mut at = last.max(window_start);
        // Five fields fire at most once a minute: a day holds at most 1 440 of them.
        while let Some(next) = next_after(&self.schedule, at, &self.zone).filter(|n| *n <= wall) {
            missed.push(next);
            at = next;
        }
        let Some(&latest) = missed.last() else {
            return;
        };
        let fired: &[Timestamp] = match self.catch_up {
            CatchUp::Off => &[],
            CatchUp::Last => &missed[missed.len() - 1..],
            CatchUp::All => &missed,
        };
        let message = format!(
            "missed {} fire time{} while stopped (since {}); catch-up {}: firing {}",
            missed.len(),
            if missed.len() == 1 { "" } else { "s" },
            format_fire_time(last, &self.zone),
            self.catch_up,
            match fired.len() {
                0 => "none".to_owned(),
                1 => format!("once, for {}", format_fire_time(latest, &self.zone)),
                n => format!("all {n}"),
            },
        );
        let detail = serde_json::json!({
            "missed": missed.len(),
            "fired": fired.len(),
            "policy": self.catch_up,
            "lastFiredAt": last.as_millisecond(),
        });
        self.core
            .log_with(now, Level::Info, "tick.catch_up", message, detail);
        for &at in fired {
            self.emit_tick(now, at, true);
        }
    }

    fn on_timer(&mut self, now: Now) {
        // The wall clock decides, not the deadline: the monotonic clock may have stood still
        // while the machine slept, and the wall clock may have been stepped.
        self.core.timers.take_expired(now.mono);
        let (Some(due), Some(wall)) = (self.next_fire, wall_instant(now)) else {
            return;
        };
        if due > wall {
            self.too_early(now, due, wall);
            return;
        }
        let latest = self.latest_due(due, wall);
        self.report_missed(now, due, latest, wall);
        self.emit_tick(now, latest, false);
        self.handled_up_to = latest;
        self.next_fire = next_after(&self.schedule, latest, &self.zone);
        if self.next_fire.is_none() {
            self.core.log(
                now,
                Level::Info,
                "scheduler.exhausted",
                "no fire time before the year 10000; the schedule is done",
            );
        }
        self.arm(now);
    }

    /// Woken before the fire time: re-arm from the current clocks.
    fn too_early(&mut self, now: Now, due: Timestamp, wall: Timestamp) {
        let ahead_ms = due.as_millisecond().saturating_sub(wall.as_millisecond());
        let detail = serde_json::json!({"nextAt": due.as_millisecond(), "aheadMs": ahead_ms});
        let (level, action, message) = if wall < self.handled_up_to {
            let message = format!(
                "the wall clock went back to {}, before {} which was already handled; waiting for {} without firing again",
                format_fire_time(wall, &self.zone),
                format_fire_time(self.handled_up_to, &self.zone),
                format_fire_time(due, &self.zone)
            );
            (Level::Warn, "clock.backwards", message)
        } else {
            let message = format!("woke {ahead_ms} ms before the fire time; re-armed");
            (Level::Debug, "tick.early", message)
        };
        self.core.log_with(now, level, action, message, detail);
        self.arm(now);
    }

    /// The latest fire time at or before `wall`, given that `first` is one. A binary search over
    /// milliseconds (fire times are whole seconds): about 40 `next_after` calls for any span.
    fn latest_due(&self, first: Timestamp, wall: Timestamp) -> Timestamp {
        let next_is_due = |ms: i64| {
            Timestamp::from_millisecond(ms)
                .ok()
                .and_then(|at| next_after(&self.schedule, at, &self.zone))
                .is_some_and(|next| next <= wall)
        };
        // Invariant: the fire after `low` is due, the fire after `high` is not.
        let (mut low, mut high) = (first.as_millisecond() - 1, wall.as_millisecond());
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if next_is_due(middle) {
                low = middle;
            } else {
                high = middle;
            }
        }
        Timestamp::from_millisecond(low)
            .ok()
            .and_then(|at| next_after(&self.schedule, at, &self.zone))
            .unwrap_or(first)
    }

    /// Logs `tick.missed` when fire times before `latest` were skipped.
    fn report_missed(&mut self, now: Now, first: Timestamp, latest: Timestamp, wall: Timestamp) {
        let mut missed = 0;
        let mut at = first;
        while at < latest && missed < MISSED_COUNT_CAP {
            missed += 1;
            match next_after(&self.schedule, at, &self.zone) {
                Some(next) => at = next,
                None => break,
            }
        }
        if missed == 0 {
            return;
        }
        let capped = at < latest;
        let late_ms = wall
            .as_millisecond()
            .saturating_sub(latest.as_millisecond());
        let message = format!(
            "missed {}{missed} fire time{} since {}; firing once for the latest, {} ({late_ms} ms late)",
            if capped { "at least " } else { "" },
            if missed == 1 { "" } else { "s" },
            format_fire_time(first, &self.zone),
            format_fire_time(latest, &self.zone),
        );
        let detail = serde_json::json!({
            "missed": missed,
            "capped": capped,
            "firstMissedAt": first.as_millisecond(),
            "firedAt": latest.as_millisecond(),
            "lateMs": late_ms,
        });
        self.core
            .log_with(now, Level::Warn, "tick.missed", message, detail);
    }

    /// Emits the tick for `fired_at`; `caught_up` marks one fired late, at start, for a time
    /// missed while the process was down (`meta.catch_up`).
    fn emit_tick(&mut self, now: Now, fired_at: Timestamp, caught_up: bool) {
        let data = match &self.data {
            Some(data) => data.clone(),
            None => RawJson::from_value(&TickData {
                fired_at: fired_at.as_millisecond(),
                cron: self.schedule.as_str(),
            }),
        };
        let mut event = Event::new(SOURCE, self.event_type.clone(), data, now.wall);
        event.meta = self.meta.clone();
        // The scheduled time, from which a stored cursor knows the last fire.
        event
            .meta
            .insert("fired_at".into(), fired_at.as_millisecond().to_string());
        if caught_up {
            event.meta.insert("catch_up".into(), "true".to_owned());
        }
        self.core.emit_event(event, None);
    }

    /// Arms the fire timer for `next_fire` on the monotonic clock (never in the past).
    fn arm(&mut self, now: Now) {
        match self.next_fire {
            Some(next) => self.core.timers.arm(
                CronTimer::Fire,
                now.mono_at(UnixMillis(next.as_millisecond())),
            ),
            None => self.core.timers.cancel(CronTimer::Fire),
        }
    }

    fn shutdown(&mut self) {
        self.next_fire = None;
        self.core.finish(Status::Disconnected, None);
    }
}

/// The wall clock as a jiff instant; `None` outside jiff's years -9999 to 9999.
fn wall_instant(now: Now) -> Option<Timestamp> {
    Timestamp::from_millisecond(now.wall.0).ok()
}

/// The input's name, for the log about an input cron has no use for.
fn input_name(input: &Input) -> &'static str {
    match input {
        Input::Start => "start",
        Input::Timer => "timer",
        Input::Opened { .. } => "opened",
        Input::Frame { .. } => "frame",
        Input::Closed { .. } => "closed",
        Input::ConnectFailed { .. } => "connect_failed",
        Input::Received { .. } => "received",
        Input::Response { .. } => "response",
        Input::RequestFailed { .. } => "request_failed",
        Input::ReadingPaused => "reading_paused",
        Input::ReadingResumed => "reading_resumed",
        Input::Delivered { .. } => "delivered",
        Input::IdentifyGranted { .. } => "identify_granted",
        #[cfg(feature = "discord")]
        Input::IdentifyWaiting { .. } => "identify_waiting",
        Input::Shutdown { .. } => "shutdown",
    }
}

impl Machine for CronMachine {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => self.start(now),
            Input::Timer => self.on_timer(now),
            Input::Shutdown { .. } => self.shutdown(),
            // Nothing of cron's waits on reading.
            Input::ReadingPaused | Input::ReadingResumed => {}
            // Cron never asks for confirmation, so no delivery id is ours.
            Input::Delivered { delivery } => return Err(Misuse::UnknownDelivery(delivery)),
            Input::Received { .. } => return Err(Misuse::NotServing),
            Input::IdentifyGranted { shard } => return Err(Misuse::NoIdentifyRequest(shard)),
            #[cfg(feature = "discord")]
            Input::IdentifyWaiting { shard, .. } => return Err(Misuse::NoIdentifyRequest(shard)),
            other => {
                let message = format!(
                    "the cron source opens no connections or requests; ignored a {} input",
                    input_name(&other)
                );
                self.core
                    .log(now, Level::Debug, "input.unexpected", message);
            }
        }
        Ok(())
    }

    answered_by_core!();
}
