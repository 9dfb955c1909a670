//! Recordings: a live session's machine inputs, written in the fixture format so that a session
//! can be replayed, served again by the simulators, or kept as a fixture.
//!
//! A recording is JSON Lines with one section per machine. A section is a fixture: a header line,
//! then one line per input the driver fed the machine, with its monotonic time `at` and, when the
//! wall clock did not keep pace with it, its `wall` time.
//!
//! ```text
//! {"format":1,"source":"discord","machine":"discord","seed":7,"start":{"mono":5,"wall":1764100000000},"config":{"token":"${DISCORD_BOT_TOKEN}",…},"auto_confirm":false,"recorded_timers":true}
//! {"at":5,"input":"start"}
//! {"at":48,"wall":1764100000044,"input":{"response":{"req":1,"response":{…}}}}
//! {"format":1,"source":"github","machine":"github","seed":11,…}
//! {"at":6,"input":"start"}
//! ```
//!
//! What the header adds to a fixture's (all optional, so every fixture is a one-section
//! recording, and every section is a fixture `testing::Fixture::parse` accepts):
//!
//! - `format`: the version of this layout, [`FORMAT`]; absent means 1. A reader refuses a newer
//!   one, naming its line, rather than misreading it.
//! - `source` and `machine`: the source's name (the `source` of its items) and which machine
//!   ([`MachineKind`]) to build from `config`.
//! - `recorded_timers`: every [`Input::Timer`] the driver fed is in the section, at the instant it
//!   was fed, so a replay feeds those and fires nothing by itself; a hand-written fixture leaves
//!   the timers to the simulator. Recordings also set `auto_confirm: false`: the confirmations
//!   ([`Input::Delivered`]) are recorded inputs too.
//! - `lost_inputs`: inputs the recorder could not keep up with (a replay may then differ).
//!
//! Secrets never reach a recording: configuration secrets are replaced by [`placeholder`]s
//! naming the environment variable a replay reads them from again, and the inputs are scrubbed
//! ([`scrub`]). The drain rule and the time rules are the fixtures' own: time never goes
//! backwards, and a replay feeds one input, then drains every output.

mod config;
mod replay;
pub mod scrub;
#[cfg(feature = "discord")]
pub mod zlib;

pub use config::{MachineConfig, placeholder, placeholder_name};
pub use replay::Played;

use crate::{Input, Millis, Now, UnixMillis};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The recording layout this crate writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// The machine a section's `config` is for.
///
/// ```
/// use openflume_proto::recording::MachineKind;
/// assert_eq!(serde_json::to_string(&MachineKind::Webhooks).unwrap(), r#""webhooks""#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MachineKind {
    /// One Discord Gateway shard ([`crate::discord::DiscordShard`]).
    Discord,
    /// Several shards of one bot ([`crate::discord::DiscordGateway`]).
    DiscordGateway,
    /// Slack Socket Mode.
    Slack,
    /// The GitHub notifications poller.
    Github,
    /// A cron schedule.
    Cron,
    /// The webhook ingress.
    Webhooks,
    /// A machine this crate does not know how to build: a replay needs it handed in.
    Custom,
}

/// The first line of a section (and of a fixture).
///
/// ```
/// use openflume_proto::recording::{FORMAT, Header};
/// // A fixture's header: every recording field takes its default.
/// let header: Header = serde_json::from_str(r#"{"seed": 7, "until": 100}"#).unwrap();
/// assert_eq!((header.format, header.seed, header.source), (FORMAT, 7, None));
/// assert!(header.auto_confirm && !header.recorded_timers);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The layout version ([`FORMAT`]); absent in older files, which are version 1.
    #[serde(default = "first_format")]
    pub format: u32,
    /// The source's name: the `source` of its items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Which machine `config` builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineKind>,
    /// Seed for the machine's RNG.
    #[serde(default)]
    pub seed: u64,
    /// Both clocks at the start.
    #[serde(default)]
    pub start: Now,
    /// Machine configuration, secrets replaced by [`placeholder`]s in a recording.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Keep firing timers until this monotonic instant after the last input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
    /// Confirm deliveries automatically (default true; recordings hold their confirmations).
    #[serde(default = "yes")]
    pub auto_confirm: bool,
    /// The section holds every timer input: a replay fires none of its own (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub recorded_timers: bool,
    /// Inputs the recorder dropped because it could not keep up (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_inputs: u64,
    /// What the fixture shows, for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn first_format() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Header {
    /// The header of a recorded section: the current [`FORMAT`], recorded timers and
    /// confirmations.
    ///
    /// ```
    /// use openflume_proto::recording::{Header, MachineKind};
    /// use openflume_proto::Now;
    /// let header = Header::recorded("time", MachineKind::Cron, 3, Now::default(), serde_json::json!({"expression": "@daily"}));
    /// let line = serde_json::to_string(&header).unwrap();
    /// assert!(line.starts_with(r#"{"format":1,"source":"time","machine":"cron","seed":3,"#), "{line}");
    /// assert!(line.contains(r#""auto_confirm":false,"recorded_timers":true"#), "{line}");
    /// ```
    pub fn recorded(
        source: &str,
        machine: MachineKind,
        seed: u64,
        start: Now,
        config: serde_json::Value,
    ) -> Header {
        Header {
            format: FORMAT,
            source: Some(source.to_owned()),
            machine: Some(machine),
            seed,
            start,
            config,
            until: None,
            auto_confirm: false,
            recorded_timers: true,
            lost_inputs: 0,
            description: None,
        }
    }

    /// Reads a header line (`line` is its 1-based number, for errors), refusing a newer
    /// [`FORMAT`] before anything else in it is read.
    ///
    /// ```
    /// use openflume_proto::recording::{Header, RecordingError};
    /// assert_eq!(Header::parse_line(1, r#"{"seed": 3}"#)?.seed, 3);
    /// let newer = Header::parse_line(4, r#"{"format": 2, "seed": "any"}"#).unwrap_err();
    /// assert!(matches!(newer, RecordingError::NewerFormat { line: 4, found: 2, .. }));
    /// assert!(newer.to_string().starts_with("recording line 4: format 2"));
    /// # Ok::<(), RecordingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecordingError::NewerFormat`] or [`RecordingError::Line`].
    pub fn parse_line(line: usize, text: &str) -> Result<Header, RecordingError> {
        Header::read(text).map_err(|error| match error {
            HeaderError::Newer(found) => RecordingError::NewerFormat {
                line,
                found,
                supported: FORMAT,
            },
            HeaderError::Json(error) => RecordingError::Line { line, error },
        })
    }

    /// The header in `text`, a newer format refused before anything else in it is read.
    pub(crate) fn read(text: &str) -> Result<Header, HeaderError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(HeaderError::Json)?;
        if let Some(found) = value.get("format").and_then(serde_json::Value::as_u64)
            && found > u64::from(FORMAT)
        {
            return Err(HeaderError::Newer(found));
        }
        serde_json::from_value(value).map_err(HeaderError::Json)
    }
}

/// Why a header line was refused.
pub(crate) enum HeaderError {
    /// Its format is newer than [`FORMAT`].
    Newer(u64),
    /// It is not a header.
    Json(serde_json::Error),
}

/// One input as the driver fed it.
///
/// ```
/// use openflume_proto::recording::Step;
/// use openflume_proto::{Input, Millis};
/// let step: Step = serde_json::from_str(r#"{"at": 120, "input": {"opened": {"conn": 1}}}"#).unwrap();
/// assert_eq!((step.at, step.wall), (Millis(120), None));
/// assert_eq!(serde_json::to_string(&Step { at: Millis(3), wall: None, input: Input::Timer }).unwrap(), r#"{"at":3,"input":"timer"}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Monotonic time.
    pub at: Millis,
    /// Wall-clock time, when it did not keep pace with `at` since the previous line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<UnixMillis>,
    /// The input.
    pub input: Input,
}

/// One machine's part of a recording: a fixture.
///
/// ```
/// use openflume_proto::recording::Recording;
/// let recording = Recording::parse("{\"source\":\"time\",\"machine\":\"cron\"}\n// x\n{\"at\":3,\"input\":\"start\"}\n")?;
/// let section = &recording.sections[0];
/// assert_eq!((section.line, section.steps.len(), section.steps[0].at.0), (1, 1, 3));
/// # Ok::<(), openflume_proto::recording::RecordingError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// Its header.
    pub header: Header,
    /// The 1-based line number of the header in the file, for messages.
    pub line: usize,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

impl Section {
    /// The section as a file of its own, which `testing::Fixture::parse` reads: a
    /// user's recording becomes one of the project's fixtures this way.
    ///
    /// ```
    /// use openflume_proto::recording::Recording;
    /// let text = "{\"format\":1,\"source\":\"a\",\"machine\":\"cron\"}\n{\"at\":0,\"input\":\"start\"}\n\
    ///             {\"format\":1,\"source\":\"b\",\"machine\":\"cron\"}\n{\"at\":1,\"input\":\"start\"}\n";
    /// let recording = Recording::parse(text)?;
    /// let second = recording.sections[1].to_jsonl();
    /// assert_eq!(second.lines().count(), 2);
    /// assert!(second.starts_with("{\"format\":1,\"source\":\"b\""));
    /// # Ok::<(), openflume_proto::recording::RecordingError>(())
    /// ```
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        let lines = std::iter::once(serde_json::to_string(&self.header))
            .chain(self.steps.iter().map(serde_json::to_string));
        for line in lines {
            // Headers and inputs are plain data: serialising them cannot fail.
            out.push_str(&line.unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// The source's name: the header's, or the machine's kind for a fixture that names none.
    ///
    /// ```
    /// use openflume_proto::recording::Recording;
    /// let recording = Recording::parse("{\"machine\":\"github\"}\n")?;
    /// assert_eq!(recording.sections[0].source(), "github");
    /// # Ok::<(), openflume_proto::recording::RecordingError>(())
    /// ```
    pub fn source(&self) -> &str {
        match (&self.header.source, self.header.machine) {
            (Some(source), _) => source,
            (None, Some(MachineKind::Discord | MachineKind::DiscordGateway)) => "discord",
            (None, Some(MachineKind::Slack)) => "slack",
            (None, Some(MachineKind::Github)) => "github",
            (None, Some(MachineKind::Cron)) => "time",
            (None, Some(MachineKind::Webhooks)) => "webhooks",
            (None, _) => "custom",
        }
    }
}

/// A parsed recording: its sections in file order.
///
/// ```
/// use openflume_proto::recording::Recording;
/// let text = "{\"source\":\"a\",\"machine\":\"cron\"}\n{\"source\":\"b\",\"machine\":\"github\"}\n";
/// let recording = Recording::parse(text)?;
/// let sources: Vec<&str> = recording.sections.iter().map(|s| s.source()).collect();
/// assert_eq!(sources, ["a", "b"]);
/// # Ok::<(), openflume_proto::recording::RecordingError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recording {
    /// One per machine.
    pub sections: Vec<Section>,
}

/// A recording that cannot be read or replayed. Each names the line at fault.
///
/// ```
/// use openflume_proto::recording::{Recording, RecordingError};
/// let error = Recording::parse("{\"at\":0,\"input\":\"start\"}\n").unwrap_err();
/// assert!(matches!(error, RecordingError::NoHeader { line: 1 }));
/// assert_eq!(error.to_string(), "recording line 1: an input before the first header line");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The file could not be read.
    #[error("cannot read the recording: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a header or an input.
    #[error("recording line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        error: serde_json::Error,
    },
    /// A header of a newer layout than this version reads.
    #[error(
        "recording line {line}: format {found} is newer than this version of openflume reads \
         (format {supported}): upgrade openflume to read it"
    )]
    NewerFormat {
        /// 1-based line number.
        line: usize,
        /// The header's format.
        found: u64,
        /// [`FORMAT`].
        supported: u32,
    },
    /// An input before any header.
    #[error("recording line {line}: an input before the first header line")]
    NoHeader {
        /// 1-based line number.
        line: usize,
    },
    /// Nothing but comments.
    #[error("the recording is empty: the first line must be a header")]
    Empty,
    /// Inputs out of order within a section.
    #[error("recording line {line}: time goes backwards")]
    Backwards {
        /// 1-based line number.
        line: usize,
    },
    /// A section without `machine`, or one whose `config` does not read.
    #[error("recording line {line} (source {source_name}): {reason}")]
    Config {
        /// The section's header line.
        line: usize,
        /// The section's source.
        source_name: String,
        /// Why it cannot be built.
        reason: String,
    },
}

impl Recording {
    /// Reads a recording (or a fixture) file.
    ///
    /// ```
    /// use openflume_proto::recording::{Recording, RecordingError};
    /// let missing = Recording::load("/nonexistent/recording.jsonl").unwrap_err();
    /// assert!(matches!(missing, RecordingError::Io(_)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecordingError::Io`], or what [`parse`](Self::parse) refuses.
    pub fn load(path: impl AsRef<Path>) -> Result<Recording, RecordingError> {
        Recording::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses recording text. A line holding an `input` is an input of the current section;
    /// any other line starts a section. Blank lines and lines starting with `//` are comments.
    ///
    /// ```
    /// use openflume_proto::recording::{Recording, RecordingError};
    /// let text = "{\"format\":1,\"source\":\"time\",\"machine\":\"cron\",\"config\":{\"expression\":\"@daily\"}}\n\
    ///             // a comment\n\
    ///             {\"at\":0,\"input\":\"start\"}\n";
    /// assert_eq!(Recording::parse(text)?.sections[0].steps.len(), 1);
    /// // A damaged line is refused by number.
    /// let damaged = text.replace("\"start\"}", "\"sta");
    /// assert_eq!(Recording::parse(&damaged).unwrap_err().to_string().split(':').next(), Some("recording line 3"));
    /// # Ok::<(), RecordingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The first line that is not valid, by number ([`RecordingError`]).
    pub fn parse(text: &str) -> Result<Recording, RecordingError> {
        let mut sections: Vec<Section> = Vec::new();
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"));
        for (line, text) in lines {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|error| RecordingError::Line { line, error })?;
            if value.get("input").is_none() {
                let header = Header::parse_line(line, text)?;
                sections.push(Section {
                    header,
                    line,
                    steps: Vec::new(),
                });
                continue;
            }
            let Some(section) = sections.last_mut() else {
                return Err(RecordingError::NoHeader { line });
            };
            let step: Step = serde_json::from_value(value)
                .map_err(|error| RecordingError::Line { line, error })?;
            if section.steps.last().is_some_and(|prev| prev.at > step.at) {
                return Err(RecordingError::Backwards { line });
            }
            section.steps.push(step);
        }
        if sections.is_empty() {
            return Err(RecordingError::Empty);
        }
        Ok(Recording { sections })
    }
}
