//! Replays every `fixtures/cron/*.jsonl` through the cron machine: a reviewed snapshot per
//! fixture, plus assertions on what every transcript and some specific ones must show.

// Test code: a panic is a test failure, which is what these unwraps mean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use openflume_proto::cron::{CronConfig, CronMachine};
use openflume_proto::testing::{Entry, Fixture, Simulator, Transcript, invariants};
use openflume_proto::{
    Event, Input, Log, Machine, Millis, Misuse, Now, Output, Status, UnixMillis,
};
use std::path::Path;

fn run(path: &Path) -> (CronMachine, Transcript) {
    let fixture = Fixture::load(path).unwrap();
    let config: CronConfig = serde_json::from_value(fixture.header.config.clone()).unwrap();
    let zone_name = config
        .zone
        .clone()
        .expect("every cron fixture names its zone");
    let zone = TimeZone::get(&zone_name).unwrap();
    let machine = CronMachine::new(config, zone, fixture.header.seed).unwrap();
    Simulator::run(machine, &fixture)
}

fn fixture(name: &str) -> (CronMachine, Transcript) {
    run(&Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/cron")
        .join(name))
}

fn events(transcript: &Transcript) -> Vec<&Event> {
    transcript
        .outputs()
        .filter_map(|(_, out)| match out {
            Output::Emit { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

fn logs<'a>(transcript: &'a Transcript, action: &str) -> Vec<&'a Log> {
    transcript
        .outputs()
        .filter_map(|(_, out)| match out {
            Output::Log(log) if log.action == action => Some(log),
            _ => None,
        })
        .collect()
}

/// The scheduled times of the emitted ticks, as UTC RFC 3339.
fn fired_at(transcript: &Transcript) -> Vec<String> {
    events(transcript)
        .iter()
        .map(|event| {
            let ms = event.data.parse().unwrap()["firedAt"].as_i64().unwrap();
            Timestamp::from_millisecond(ms).unwrap().to_string()
        })
        .collect()
}

#[test]
fn fixtures() {
    insta::glob!("../../fixtures/cron", "*.jsonl", |path| {
        let (machine, transcript) = run(path);
        invariants::check(&machine, &transcript, &[]);
        check_invariants(&machine, &transcript);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
}

/// What holds for every fixture: ticks are never early, never repeat a scheduled time, never need
/// confirmation, and never follow a shutdown.
fn check_invariants(machine: &CronMachine, transcript: &Transcript) {
    let mut last_scheduled = None;
    let mut shut_down = false;
    for (_, entry) in &transcript.entries {
        match entry {
            Entry::In {
                input: Input::Shutdown { .. },
                ..
            } => shut_down = true,
            Entry::Out(Output::Emit { event, confirm }) => {
                assert!(!shut_down, "tick after shutdown");
                assert_eq!(*confirm, None);
                assert_eq!(event.source, "time");
                assert_eq!(
                    event.meta.get("cron").map(String::as_str),
                    Some(machine.schedule().as_str())
                );
                if let Some(scheduled) = event.data.parse().unwrap()["firedAt"].as_i64() {
                    assert!(scheduled <= event.received_at.0, "fired early: {event:?}");
                    assert!(
                        last_scheduled < Some(scheduled),
                        "scheduled time fired twice: {event:?}"
                    );
                    last_scheduled = Some(scheduled);
                }
            }
            Entry::Out(Output::Log(log)) => assert_eq!(log.source, "time"),
            _ => {}
        }
    }
}

#[test]
fn every_minute_fires_on_each_minute() {
    let (machine, transcript) = fixture("every_minute.jsonl");
    assert_eq!(
        fired_at(&transcript),
        [
            "2025-11-25T19:47:00Z",
            "2025-11-25T19:48:00Z",
            "2025-11-25T19:49:00Z",
            "2025-11-25T19:50:00Z"
        ]
    );
    let at: Vec<Millis> = transcript
        .outputs()
        .filter(|(_, out)| matches!(out, Output::Emit { .. }))
        .map(|(at, _)| at)
        .collect();
    assert_eq!(
        at,
        [
            Millis(20_000),
            Millis(80_000),
            Millis(140_000),
            Millis(200_000)
        ]
    );
    assert_eq!(machine.poll_timeout(), Some(Millis(260_000)));
    assert_eq!(machine.status(), Status::Connected);
}

#[test]
fn a_late_wake_fires_once_for_the_latest_missed_time() {
    let (_, transcript) = fixture("late_wake.jsonl");
    assert_eq!(
        fired_at(&transcript),
        [
            "2025-11-25T19:50:00Z",
            "2025-11-25T20:55:00Z",
            "2025-11-25T21:00:00Z"
        ]
    );
    let missed = logs(&transcript, "tick.missed");
    assert_eq!(missed.len(), 1);
    let detail = missed[0].detail.as_ref().unwrap();
    assert_eq!(detail["missed"], 12); // 19:55, 20:00, …, 20:50
    assert_eq!(detail["capped"], false);
    assert_eq!(detail["lateMs"], 30_000);
}

#[test]
fn a_week_of_missed_minutes_is_counted_up_to_the_cap() {
    let (_, transcript) = fixture("sleep_for_a_week.jsonl");
    assert_eq!(
        fired_at(&transcript),
        [
            "2025-11-25T19:47:00Z",
            "2025-12-02T20:00:00Z",
            "2025-12-02T20:01:00Z"
        ]
    );
    let missed = logs(&transcript, "tick.missed");
    assert_eq!(missed.len(), 1);
    assert!(
        missed[0]
            .message
            .starts_with("missed at least 1000 fire times since 2025-11-25T19:48:00Z")
    );
    assert_eq!(missed[0].detail.as_ref().unwrap()["capped"], true);
}

#[test]
fn a_wall_clock_stepping_back_never_repeats_a_scheduled_time() {
    let (_, transcript) = fixture("clock_back.jsonl");
    assert_eq!(
        fired_at(&transcript),
        [
            "2025-11-25T19:47:00Z",
            "2025-11-25T19:48:00Z",
            "2025-11-25T19:49:00Z",
            "2025-11-25T19:50:00Z"
        ]
    );
    assert_eq!(logs(&transcript, "clock.backwards").len(), 1);
    assert!(logs(&transcript, "tick.missed").is_empty());
}

#[test]
fn early_wakes_fire_nothing() {
    let (_, transcript) = fixture("early_wake.jsonl");
    assert_eq!(fired_at(&transcript), ["2025-11-25T20:00:00Z"]);
    assert_eq!(logs(&transcript, "tick.early").len(), 2);
}

#[test]
fn new_york_dst_days_with_fixed_time_jobs() {
    let (_, spring) = fixture("new_york_spring_forward.jsonl");
    // 02:30 EST, then 03:00 EDT (07:00Z) for the missing 02:30, then 02:30 EDT.
    assert_eq!(
        fired_at(&spring),
        [
            "2025-03-08T07:30:00Z",
            "2025-03-09T07:00:00Z",
            "2025-03-10T06:30:00Z"
        ]
    );
    let (_, fall) = fixture("new_york_fall_back.jsonl");
    // 01:30 EDT twice (1st, 2nd), never 01:30 EST on the 2nd (06:30Z), then 01:30 EST on the 3rd.
    assert_eq!(
        fired_at(&fall),
        [
            "2025-11-01T05:30:00Z",
            "2025-11-02T05:30:00Z",
            "2025-11-03T06:30:00Z"
        ]
    );
}

#[test]
fn the_template_shapes_the_event() {
    let (_, transcript) = fixture("custom_template.jsonl");
    let ticks = events(&transcript);
    assert_eq!(ticks.len(), 2);
    for tick in ticks {
        assert_eq!(tick.event_type, "heartbeat");
        assert_eq!(
            tick.data.parse().unwrap(),
            serde_json::json!({"job": "backup", "retries": 3})
        );
        let meta: Vec<(&str, &str)> = tick
            .meta
            .iter()
            .filter(|(k, _)| *k != "fired_at")
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        assert_eq!(
            meta,
            [
                ("cron", "@hourly"),
                ("team", "ops"),
                ("zone", "Europe/London")
            ]
        );
    }
    let start = logs(&transcript, "scheduler.start");
    assert!(
        start[0]
            .message
            .ends_with("first fire at 2025-01-15T10:00:00+00:00"),
        "{}",
        start[0].message
    );
}

#[test]
fn shutdown_finishes_the_machine() {
    let (machine, transcript) = fixture("shutdown.jsonl");
    assert_eq!(fired_at(&transcript), ["2025-11-25T19:47:00Z"]);
    assert!(machine.is_finished());
    assert_eq!(machine.status(), Status::Disconnected);
    assert_eq!(machine.poll_timeout(), None);
    let misuse: Vec<&String> = transcript
        .entries
        .iter()
        .filter_map(|(_, entry)| match entry {
            Entry::Misuse(text) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(misuse.len(), 2);
    assert!(
        misuse
            .iter()
            .all(|text| **text == Misuse::Finished.to_string())
    );
}

#[test]
fn misuse_is_an_error_and_connection_input_is_logged() {
    let (_, transcript) = fixture("inputs.jsonl");
    let misuse: Vec<String> = transcript
        .entries
        .iter()
        .filter_map(|(_, entry)| match entry {
            Entry::Misuse(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        misuse,
        [
            Misuse::NotStarted.to_string(),
            Misuse::AlreadyStarted.to_string(),
            Misuse::UnknownDelivery(openflume_proto::DeliveryId(7)).to_string()
        ]
    );
    assert_eq!(logs(&transcript, "input.unexpected").len(), 1);
}

#[test]
fn an_invalid_expression_is_a_config_misuse_with_the_parser_message() {
    let Err(Misuse::Config(message)) =
        CronMachine::new(CronConfig::new("5/15 * * * *"), TimeZone::UTC, 0)
    else {
        panic!("accepted an invalid expression");
    };
    assert_eq!(message.field(), Some("expression"));
    assert_eq!(
        message.to_string(),
        "cron expression \"5/15 * * * *\": minute field, character 2: a step needs a range or `*`: did you mean 5-59/15?"
    );
    let mut config = CronConfig::new("@daily");
    config.template.event_type = Some(String::new());
    assert!(matches!(
        CronMachine::new(config, TimeZone::UTC, 0),
        Err(Misuse::Config(_))
    ));
}

#[test]
fn the_deadline_follows_the_wall_clock_not_a_fixed_period() {
    // Every hour at :00 in UTC; the wall clock runs 1 s behind the monotonic clock's idea of it.
    let mut cron = CronMachine::new(CronConfig::new("0 * * * *"), TimeZone::UTC, 0).unwrap();
    let start = Now {
        mono: Millis(0),
        wall: UnixMillis(1_764_100_000_000),
    }; // 19:46:40Z
    cron.handle_input(start, Input::Start).unwrap();
    while cron.poll_output().is_some() {}
    assert_eq!(cron.poll_timeout(), Some(Millis(800_000)));
    // At the deadline the wall clock reads 19:59:59: one second early, so nothing fires.
    let early = Now {
        mono: Millis(800_000),
        wall: UnixMillis(1_764_100_799_000),
    };
    cron.handle_input(early, Input::Timer).unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| cron.poll_output()).collect();
    assert!(
        outputs
            .iter()
            .all(|out| !matches!(out, Output::Emit { .. })),
        "{outputs:?}"
    );
    assert_eq!(cron.poll_timeout(), Some(Millis(801_000)));
    // A monotonic `now` earlier than one already seen is clamped; the wall clock still decides.
    let due = Now {
        mono: Millis(700_000),
        wall: UnixMillis(1_764_100_800_000),
    };
    cron.handle_input(due, Input::Timer).unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| cron.poll_output()).collect();
    assert!(
        matches!(outputs.as_slice(), [Output::Emit { .. }]),
        "{outputs:?}"
    );
    assert_eq!(cron.poll_timeout(), Some(Millis(800_000 + 3_600_000)));
    assert_eq!(
        cron.next_fire().map(|t| t.to_string()).as_deref(),
        Some("2025-11-25T21:00:00Z")
    );
}

/// A named schedule (`NAME=EXPR`, as `--cron` takes it) emits events of type NAME from the
/// source `time`, with the default data and meta of a tick.
#[test]
fn a_named_schedule_emits_its_name_as_the_type() {
    let config = CronConfig::from_spec("daily-report=0 9 * * mon-fri").unwrap();
    let mut machine = CronMachine::new(config, TimeZone::UTC, 0).unwrap();
    // Friday 2026-12-04 08:59:59 UTC: the next fire is one second away.
    let wall = UnixMillis(1_796_374_799_000);
    let start = Now {
        mono: Millis(0),
        wall,
    };
    machine.handle_input(start, Input::Start).unwrap();
    while machine.poll_output().is_some() {}
    let at = machine.poll_timeout().unwrap();
    assert_eq!(at, Millis(1_000));
    machine
        .handle_input(
            Now {
                mono: at,
                wall: start.wall_at(at),
            },
            Input::Timer,
        )
        .unwrap();
    let emitted: Vec<Event> = std::iter::from_fn(|| machine.poll_output())
        .filter_map(|output| match output {
            Output::Emit { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    let event = &emitted[0];
    assert_eq!(
        (event.source.as_ref(), event.event_type.as_str()),
        ("time", "daily-report")
    );
    assert_eq!(
        event.data.get(),
        r#"{"firedAt":1796374800000,"cron":"0 9 * * mon-fri"}"#
    );
    assert_eq!(
        event.meta.get("cron").map(String::as_str),
        Some("0 9 * * mon-fri")
    );
}

/// The naming rule, table-driven: what is named, what stays an expression, what is refused.
#[test]
fn schedule_specs_follow_the_naming_rule() {
    let named: &[(&str, &str, &str)] = &[
        (
            "daily-report=0 9 * * mon-fri",
            "daily-report",
            "0 9 * * mon-fri",
        ),
        ("backup=@weekly", "backup", "@weekly"),
        ("job_2= */5 * * * *", "job_2", "*/5 * * * *"),
        ("x1=@daily", "x1", "@daily"),
    ];
    for (spec, name, expression) in named {
        let config = CronConfig::from_spec(spec).unwrap();
        assert_eq!(config.template.event_type.as_deref(), Some(*name), "{spec}");
        assert_eq!(config.expression, *expression, "{spec}");
    }
    for plain in ["@daily", "*/5 * * * *", "0 9 * * mon-fri"] {
        assert_eq!(
            CronConfig::from_spec(plain).unwrap(),
            CronConfig::new(plain)
        );
    }
    let refused: &[(&str, &str)] = &[
        ("5=* * * * *", "reads as a cron field"),
        ("1-5=@daily", "reads as a cron field"),
        ("mon-fri=@daily", "reads as a cron field"),
        ("jan=@daily", "reads as a cron field"),
        ("Daily=@daily", "a-z, 0-9"),
        ("=@daily", "a-z, 0-9"),
        ("a b=@daily", "a-z, 0-9"),
        ("report=61 * * * *", "minute field"),
        ("report=", "cron expression"),
    ];
    for (spec, needle) in refused {
        let error = CronConfig::from_spec(spec).unwrap_err().to_string();
        assert!(error.contains(needle), "{spec}: {error}");
    }
}

#[test]
fn a_restart_catches_up_by_its_policy_within_a_day() {
    let caught_up = |name: &str| {
        let (_, transcript) = fixture(name);
        let ticks = events(&transcript);
        let late: Vec<bool> = ticks
            .iter()
            .map(|t| t.meta.contains_key("catch_up"))
            .collect();
        (
            fired_at(&transcript),
            late,
            logs(&transcript, "tick.catch_up").len(),
        )
    };
    let on_time = "2025-11-25T20:00:00Z".to_owned();
    let (fired, late, logged) = caught_up("restart_catch_up_last.jsonl");
    assert_eq!(fired, ["2025-11-25T19:45:00Z".to_owned(), on_time.clone()]);
    assert_eq!((late, logged), (vec![true, false], 1));
    let (fired, _, _) = caught_up("restart_catch_up_all.jsonl");
    assert_eq!(
        fired,
        ["19:00", "19:15", "19:30", "19:45", "20:00"].map(|t| format!("2025-11-25T{t}:00Z"))
    );
    let (fired, _, logged) = caught_up("restart_catch_up_off.jsonl");
    assert_eq!((fired, logged), (vec![on_time], 1));
    let (fired, late, _) = caught_up("restart_catch_up_window.jsonl");
    assert_eq!(
        late.iter().filter(|l| **l).count(),
        24,
        "one day back, no more"
    );
    assert_eq!(fired[0], "2025-11-24T20:00:00Z");
}
