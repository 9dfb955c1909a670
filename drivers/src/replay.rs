//! Replay: the machines of a recording run again over its inputs, with virtual time, giving
//! the firehose the live run gave (the items the drivers add themselves aside: `listening on`,
//! late timers, a recorder that could not keep up).
//!
//! A test can so assert on yesterday's incident:
//!
//! ```no_run
//! use openflume_proto::Item;
//! let items = openflume::replay::replay_file("incident.jsonl")?;
//! let messages = items.iter().filter(|item| matches!(item, Item::Event(e) if e.event_type == "MESSAGE_CREATE"));
//! assert_eq!(messages.count(), 3);
//! # Ok::<(), openflume::replay::ReplayError>(())
//! ```
//!
//! Secrets come back from the environment, as for the live run: a recording names each one by
//! its variable (`${SLACK_SIGNING_SECRET}`). Tokens are only ever sent, so a replay does without
//! them; a webhook signing secret checks the recorded signatures again, so a recording of the
//! webhook ingress replays only with its secrets ([`ReplayError::MissingSecret`] otherwise).

use openflume_proto::recording::{MachineConfig, Played, Recording, RecordingError, Section};
use openflume_proto::{Item, Level, Log, Machine, Millis, Misuse, Output, Secret};
use std::collections::HashMap;
use std::path::Path;

/// The firehose of a recording: every item, in order.
///
/// Secrets are read from the environment (see [`Replay::secret`] for others); every log is
/// kept, whatever its level.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("cron.jsonl");
/// std::fs::write(&path, r#"{"format":1,"source":"time","machine":"cron","start":{"mono":0,"wall":1764100000000},"config":{"expression":"* * * * *","zone":"UTC"},"auto_confirm":false,"recorded_timers":true}
/// {"at":0,"input":"start"}
/// {"at":20001,"input":"timer"}
/// "#)?;
/// let items = openflume::replay::replay_file(&path)?;
/// assert!(items.iter().any(|item| matches!(item, openflume_proto::Item::Event(e) if e.event_type == "tick")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// What [`Replay::load`] and [`Replay::run`] refuse.
pub fn replay_file(path: impl AsRef<Path>) -> Result<Vec<Item>, ReplayError> {
    Ok(Replay::load(path)?
        .run()?
        .into_iter()
        .map(|replayed| replayed.item)
        .collect())
}

/// Why a recording does not replay.
///
/// ```
/// use openflume::replay::{Replay, ReplayError};
/// let text = "{\"source\":\"webhooks\",\"machine\":\"webhooks\",\"config\":{\"github_secret\":\"${GITHUB_WEBHOOK_SECRET}\"}}\n";
/// let refused = Replay::parse(text)?.secrets_from_env(false).run().unwrap_err();
/// assert!(matches!(&refused, ReplayError::MissingSecret { name, .. } if name == "GITHUB_WEBHOOK_SECRET"));
/// # Ok::<(), ReplayError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The file cannot be read, a line does not parse, or its format is newer (the message
    /// names the line).
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// A secret the replay cannot do without is not given.
    #[error(
        "source {source_name}: the recorded signatures need the secret {name}: set the \
         environment variable {name} as for the live run{hint}"
    )]
    MissingSecret {
        /// The section's source.
        source_name: String,
        /// The placeholder's name.
        name: String,
        /// How to give a custom sender's secret.
        hint: &'static str,
    },
    /// The machine refuses the recorded configuration (with the secrets given back).
    #[error("source {source_name} (recording line {line}): {misuse}")]
    Build {
        /// The section's source.
        source_name: String,
        /// Its header line.
        line: usize,
        /// Why (boxed: a misuse carries a whole configuration error).
        misuse: Box<Misuse>,
    },
}

/// One item of a replay, with the monotonic instant of the input it came from.
///
/// ```
/// use openflume::replay::Replayed;
/// use openflume_proto::{Item, Level, Log, Millis, UnixMillis};
/// let log = Log::new(Level::Info, "time", "scheduler.start", "", UnixMillis(0));
/// let replayed = Replayed { at: Millis(5), item: Item::Log(log) };
/// assert_eq!(replayed.item.source(), "time");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    /// When the input that produced it was fed (for `--realtime`).
    pub at: Millis,
    /// The item, as the live firehose carried it.
    pub item: Item,
}

type CustomBuild = Box<dyn FnOnce(u64) -> Result<Box<dyn Machine + Send>, Misuse>>;

/// A recording to replay, and how.
///
/// ```
/// use openflume::replay::Replay;
/// use openflume_proto::Level;
/// let text = r#"{"format":1,"source":"time","machine":"cron","config":{"expression":"@daily","zone":"UTC"},"auto_confirm":false,"recorded_timers":true}
/// {"at":0,"input":"start"}
/// {"at":10,"input":{"shutdown":{}}}
/// "#;
/// let items = Replay::parse(text)?.min_log_level(Level::Info).run()?;
/// assert!(items.iter().all(|r| r.item.source() == "time"));
/// # Ok::<(), openflume::replay::ReplayError>(())
/// ```
pub struct Replay {
    recording: Recording,
    secrets: HashMap<String, Secret>,
    from_env: bool,
    min_level: Level,
    custom: HashMap<String, CustomBuild>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("sections", &self.recording.sections.len())
            .field("min_level", &self.min_level)
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// Reads a recording file (or a fixture that names its machine).
    ///
    /// ```
    /// let missing = openflume::replay::Replay::load("/nonexistent.jsonl").unwrap_err();
    /// assert!(missing.to_string().starts_with("cannot read the recording"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ReplayError::Recording`], naming the line at fault.
    pub fn load(path: impl AsRef<Path>) -> Result<Replay, ReplayError> {
        Ok(Replay::new(Recording::load(path)?))
    }

    /// Parses recording text.
    ///
    /// ```
    /// use openflume::replay::Replay;
    /// let refused = Replay::parse("{\"format\":1}\n{\"at\":0,\"input\":\"sta\n").unwrap_err();
    /// assert!(refused.to_string().starts_with("recording line 2:"), "{refused}");
    /// let newer = Replay::parse("{\"format\":99}\n").unwrap_err();
    /// assert!(newer.to_string().contains("format 99 is newer"), "{newer}");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ReplayError::Recording`], naming the line at fault.
    pub fn parse(text: &str) -> Result<Replay, ReplayError> {
        Ok(Replay::new(Recording::parse(text)?))
    }

    fn new(recording: Recording) -> Replay {
        Replay {
            recording,
            secrets: HashMap::new(),
            from_env: true,
            min_level: Level::Debug,
            custom: HashMap::new(),
        }
    }

    /// The recording.
    ///
    /// ```
    /// let replay = openflume::replay::Replay::parse("{\"source\":\"time\",\"machine\":\"cron\"}\n")?;
    /// assert_eq!(replay.recording().sections[0].source(), "time");
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Gives back the secret a recording names `name` (its placeholder `${name}`): a variable's
    /// name such as `SLACK_SIGNING_SECRET`, or `webhook:SENDER` for a custom sender's. Given
    /// secrets come before the environment.
    ///
    /// ```
    /// let replay = openflume::replay::Replay::parse("{\"machine\":\"webhooks\"}\n")?
    ///     .secret("webhook:deploys", "deploys-secret-value");
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Replay {
        self.secrets.insert(name.into(), value.into());
        self
    }

    /// Whether secrets not given with [`secret`](Self::secret) are read from the environment
    /// variable of their name (default: yes).
    ///
    /// ```
    /// let replay = openflume::replay::Replay::parse("{\"machine\":\"github\"}\n")?.secrets_from_env(false);
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn secrets_from_env(mut self, from_env: bool) -> Replay {
        self.from_env = from_env;
        self
    }

    /// Drops logs below `level`, as the live run's `min_log_level` (`--log-level`) did
    /// (default: debug, every log).
    ///
    /// ```
    /// use openflume_proto::Level;
    /// let replay = openflume::replay::Replay::parse("{\"machine\":\"github\"}\n")?.min_log_level(Level::Warn);
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn min_log_level(mut self, level: Level) -> Replay {
        self.min_level = level;
        self
    }

    /// Builds the machine of the custom source `source` (recorded as `"machine": "custom"`)
    /// with `build`, given the recorded seed.
    ///
    /// ```
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let text = "{\"source\":\"nightly\",\"machine\":\"custom\",\"recorded_timers\":true}\n{\"at\":0,\"input\":\"start\"}\n";
    /// let items = openflume::replay::Replay::parse(text)?
    ///     .custom("nightly", |seed| CronMachine::new(CronConfig::new("@daily"), jiff::tz::TimeZone::UTC, seed))
    ///     .run()?;
    /// assert!(items.iter().all(|r| r.item.source() == "nightly"));
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn custom<M, F>(mut self, source: impl Into<String>, build: F) -> Replay
    where
        M: Machine + Send + 'static,
        F: FnOnce(u64) -> Result<M, Misuse> + 'static,
    {
        self.custom.insert(
            source.into(),
            Box::new(move |seed| build(seed).map(|m| Box::new(m) as Box<dyn Machine + Send>)),
        );
        self
    }

    /// What to tell before replaying: sections whose recorder could not keep up.
    ///
    /// ```
    /// let replay = openflume::replay::Replay::parse("{\"source\":\"github\",\"machine\":\"github\",\"lost_inputs\":3}\n")?;
    /// assert!(replay.warnings()[0].contains("3 input(s)"));
    /// # Ok::<(), openflume::replay::ReplayError>(())
    /// ```
    pub fn warnings(&self) -> Vec<String> {
        self.recording
            .sections
            .iter()
            .filter(|s| s.header.lost_inputs > 0)
            .map(|s| {
                format!(
                    "source {} (recording line {}): {} input(s) were not recorded (the recorder \
                     could not keep up): the replay may differ from the live run",
                    s.source(),
                    s.line,
                    s.header.lost_inputs
                )
            })
            .collect()
    }

    /// Replays every section and returns the items in the order the live firehose had them
    /// (by the time of their input; sections in file order at the same instant).
    /// [`Replay`] shows one.
    ///
    /// # Errors
    ///
    /// [`ReplayError::MissingSecret`] or [`ReplayError::Build`] for a section that cannot run.
    pub fn run(mut self) -> Result<Vec<Replayed>, ReplayError> {
        let mut all: Vec<(Millis, usize, Item)> = Vec::new();
        let sections = std::mem::take(&mut self.recording.sections);
        for (index, section) in sections.iter().enumerate() {
            let mut machine = self.machine(section)?;
            let items = items(section, &mut machine, self.min_level);
            all.extend(items.into_iter().map(|(at, item)| (at, index, item)));
        }
        self.recording.sections = sections;
        // Stable: within a section the order is the machine's.
        all.sort_by_key(|(at, index, _)| (*at, *index));
        Ok(all
            .into_iter()
            .map(|(at, _, item)| Replayed { at, item })
            .collect())
    }

    fn machine(&mut self, section: &Section) -> Result<Box<dyn Machine + Send>, ReplayError> {
        let source = section.source().to_owned();
        if let Some(build) = self.custom.remove(&source) {
            return build(section.header.seed).map_err(|misuse| ReplayError::Build {
                source_name: source,
                line: section.line,
                misuse: Box::new(misuse),
            });
        }
        let mut config = MachineConfig::from_section(section)?;
        let from_env = self.from_env;
        let given = &self.secrets;
        let missing = config.resupply(|name| {
            given.get(name).cloned().or_else(|| {
                (from_env && !name.contains(':'))
                    .then(|| std::env::var(name).ok())
                    .flatten()
                    .filter(|value| !value.trim().is_empty())
                    .map(Secret::new)
            })
        });
        if let Some(name) = missing.into_iter().next() {
            let hint = if name.starts_with("webhook:") {
                " (a custom sender's: `openflume replay --webhook NAME=ENV_VAR`, or Replay::secret)"
            } else {
                ""
            };
            return Err(ReplayError::MissingSecret {
                source_name: source,
                name,
                hint,
            });
        }
        config
            .build(section.header.seed)
            .map_err(|misuse| ReplayError::Build {
                source_name: source,
                line: section.line,
                misuse: Box::new(misuse),
            })
    }
}

/// The items `machine` gives over `section`, as its driver delivered them: events and logs made
/// in the machine's own name carry the source's name, statuses become status logs, logs below
/// `min_level` are dropped at the source.
fn items(
    section: &Section,
    machine: &mut Box<dyn Machine + Send>,
    min_level: Level,
) -> Vec<(Millis, Item)> {
    let source = section.source().to_owned();
    let own = machine.source().to_owned();
    let played = section.replay(machine);
    let mut items = Vec::new();
    let mut keep = |at: Millis, item: Item| {
        if matches!(&item, Item::Log(log) if log.level < min_level) {
            return;
        }
        items.push((at, item));
    };
    for entry in played {
        match entry {
            Played::Out { now, output } => match output {
                Output::Emit { mut event, .. } => {
                    if event.source != source && event.source == own {
                        event.source = source.clone().into();
                    }
                    keep(now.mono, Item::Event(event));
                }
                Output::Log(mut log) => {
                    if log.source != source && log.source == own {
                        log.source = source.clone();
                    }
                    keep(now.mono, Item::Log(log));
                }
                Output::Status(change) => {
                    keep(now.mono, Item::Log(change.to_log(&source, now.wall)))
                }
                _ => {}
            },
            Played::Misuse { now, misuse } => keep(
                now.mono,
                Item::Log(Log::new(
                    Level::Error,
                    &source,
                    "driver.misuse",
                    format!("driver bug: {misuse}"),
                    now.wall,
                )),
            ),
            _ => {}
        }
    }
    items
}
