//! A recording is the fixture format: every fixture reads as a one-section recording, and a
//! recording of a session (each input with its time, timers and confirmations included, as the
//! driver's recorder writes them) splits into sections that the fixture loader accepts and that
//! the fixture simulator replays to exactly the outputs of the session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::recording::{
    FORMAT, Header, MachineConfig, MachineKind, Played, Recording, RecordingError, Section, Step,
};
use openflume_proto::testing::{Fixture, FixtureError, Simulator};
use openflume_proto::{Now, Output};
use std::path::{Path, PathBuf};

/// The fixture directories of the machines a recording can build.
const DIRS: &[(&str, MachineKind)] = &[
    ("discord", MachineKind::Discord),
    ("discord_gateway", MachineKind::DiscordGateway),
    ("slack", MachineKind::Slack),
    ("github", MachineKind::Github),
    ("cron", MachineKind::Cron),
    ("webhooks", MachineKind::Webhooks),
];

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    paths
}

/// Runs the fixture at `path` as a session, and writes down every input it was fed as the
/// recorder would: the recorded section, and the outputs of the session.
fn record(path: &Path, kind: MachineKind, source: &str) -> (Section, Vec<Output>) {
    let mut fixture = Recording::load(path).unwrap().sections.remove(0);
    assert_eq!(
        fixture.header.format, 1,
        "a fixture without a format is version 1"
    );
    fixture.header.machine = Some(kind);
    let config = MachineConfig::from_section(&fixture).unwrap();
    let mut machine = config.build(fixture.header.seed).unwrap();
    let played = fixture.replay(&mut machine);
    let mut header = Header::recorded(
        source,
        kind,
        fixture.header.seed,
        fixture.header.start,
        fixture.header.config.clone(),
    );
    header.description = Some(format!("recorded from {}", path.display()));
    let mut clock: Option<Now> = None;
    let mut steps = Vec::new();
    let mut outputs = Vec::new();
    for entry in played {
        match entry {
            Played::In { now, input } => {
                let anchor = clock.unwrap_or(fixture.header.start);
                let wall = (anchor.wall_at(now.mono) != now.wall).then_some(now.wall);
                steps.push(Step {
                    at: now.mono,
                    wall,
                    input,
                });
                clock = Some(now);
            }
            Played::Out { output, .. } => outputs.push(output),
            _ => {}
        }
    }
    let section = Section {
        header,
        line: 1,
        steps,
    };
    (section, outputs)
}

#[test]
fn recorded_sessions_split_into_fixtures_that_replay_exactly() {
    for (dir, kind) in DIRS {
        let paths = fixtures(dir);
        assert!(!paths.is_empty(), "{dir}: no fixtures");
        // One recording of every fixture of the directory, a section each.
        let mut text = String::from("// a recording of several sources\n");
        let mut sessions = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let (section, outputs) = record(path, *kind, &format!("{dir}-{i}"));
            text.push_str(&section.to_jsonl());
            sessions.push((path, outputs));
        }
        let recording = Recording::parse(&text).unwrap();
        assert_eq!(
            recording.sections.len(),
            paths.len(),
            "{dir}: a section each"
        );
        for (section, (path, outputs)) in recording.sections.iter().zip(&sessions) {
            assert_eq!(section.header.format, FORMAT);
            assert!(section.header.recorded_timers && !section.header.auto_confirm);
            // The section is a fixture the loader reads…
            let fixture = Fixture::parse(&section.to_jsonl())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // …and the fixture simulator, firing no timer of its own, gives the session again.
            let machine = MachineConfig::from_section(section)
                .unwrap()
                .build(section.header.seed)
                .unwrap();
            let (_, transcript) = Simulator::run(machine, &fixture);
            let replayed: Vec<Output> = transcript.outputs().map(|(_, o)| o.clone()).collect();
            assert_eq!(&replayed, outputs, "{}: the same outputs", path.display());
            // So does the recording's own replay.
            let mut machine = MachineConfig::from_section(section)
                .unwrap()
                .build(section.header.seed)
                .unwrap();
            let again: Vec<Output> = section
                .replay(&mut machine)
                .into_iter()
                .filter_map(|p| match p {
                    Played::Out { output, .. } => Some(output),
                    _ => None,
                })
                .collect();
            assert_eq!(&again, outputs, "{}: the same outputs", path.display());
        }
    }
}

#[test]
fn newer_formats_and_damaged_lines_are_refused_by_line() {
    let newer = Fixture::parse("// header next\n{\"format\": 2, \"seed\": 1}\n").unwrap_err();
    assert!(
        matches!(
            newer,
            FixtureError::NewerFormat {
                line: 2,
                found: 2,
                ..
            }
        ),
        "{newer}"
    );
    let two = "{\"format\":1,\"machine\":\"cron\"}\n{\"at\":0,\"input\":\"start\"}\n\
               {\"format\":3,\"machine\":\"cron\"}\n";
    let refused = Recording::parse(two).unwrap_err();
    assert!(matches!(
        refused,
        RecordingError::NewerFormat {
            line: 3,
            found: 3,
            ..
        }
    ));
    // A fixture is one section: a second header is not an input.
    let sections =
        "{\"machine\":\"cron\"}\n{\"at\":0,\"input\":\"start\"}\n{\"machine\":\"cron\"}\n";
    assert!(matches!(
        Fixture::parse(sections).unwrap_err(),
        FixtureError::Line { line: 3, .. }
    ));
    let damaged =
        Recording::parse("{\"machine\":\"cron\"}\n{\"at\":0,\"input\":\"stat\"}\n").unwrap_err();
    assert!(
        damaged.to_string().starts_with("recording line 2: "),
        "{damaged}"
    );
    let orphan = Recording::parse("// nothing\n{\"at\":0,\"input\":\"start\"}\n").unwrap_err();
    assert!(matches!(orphan, RecordingError::NoHeader { line: 2 }));
}

#[test]
fn secrets_leave_the_configuration_and_come_back() {
    let path = fixtures("slack").into_iter().next().unwrap();
    let mut section = Recording::load(&path).unwrap().sections.remove(0);
    section.header.machine = Some(MachineKind::Slack);
    let config = MachineConfig::from_section(&section).unwrap();
    let (json, secrets) = config.redacted();
    assert_eq!(json["app_token"], "${SLACK_APP_TOKEN}");
    assert!(!secrets.is_empty());
    for (secret, _) in &secrets {
        assert!(!json.to_string().contains(secret.expose()));
    }
    section.header.config = json;
    let mut config = MachineConfig::from_section(&section).unwrap();
    // Tokens are only sent: a replay does without them.
    assert!(config.resupply(|_| None).is_empty());
    assert!(config.build(section.header.seed).is_ok());
}
