//! Fixture replay: run any machine over a scripted, timestamped list of inputs and record what it did.
//!
//! A fixture is JSON Lines. The first line is the header, every other line one input:
//!
//! ```text
//! {"seed": 7, "start": {"mono": 0, "wall": 1764100000000}, "config": {…}, "until": 60000}
//! {"at": 0, "input": "start"}
//! {"at": 120, "input": {"opened": {"conn": 1}}}
//! {"at": 500, "wall": 1764100900000, "input": "timer"}
//! ```
//!
//! `wall` is optional: by default the wall clock keeps pace with `at`; a given `wall` steps it (to
//! script an NTP step or a sleeping laptop) and later times keep pace from there. Between inputs
//! the simulator fires every deadline the machine asks for, in order, the way a driver would; after
//! the last input it keeps firing them until `until`. Each emitted event that asks for confirmation
//! is confirmed right after the drain, as the in-memory firehose does, unless the header says
//! `"auto_confirm": false`. Blank lines and lines starting with `//` are comments.
//!
//! A recording (see [`crate::recording`]) is made of such files, one section per machine, and
//! each section reads as a fixture: its header names the recording fields too (`format`,
//! `source`, `machine`), and `"recorded_timers": true` says every timer input is among the
//! lines, so the simulator fires none of its own.

use crate::recording::HeaderError;
use crate::{Input, Machine, Millis, Misuse, Now, Output};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::path::Path;

/// The first line of a fixture: a recording's section header, whose recording fields (`format`,
/// `source`, `machine`, `recorded_timers`, `lost_inputs`) a hand-written fixture leaves out.
pub type FixtureHeader = crate::recording::Header;

pub use crate::recording::Step;

/// A parsed fixture.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The header line.
    pub header: FixtureHeader,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

/// A fixture that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read fixture: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not valid.
    #[error("fixture line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        error: serde_json::Error,
    },
    /// No header line.
    #[error("fixture is empty: the first line must be the header")]
    Empty,
    /// Inputs out of order.
    #[error("fixture line {line}: time goes backwards")]
    Backwards {
        /// 1-based line number.
        line: usize,
    },
    /// A header of a newer recording format than this version reads.
    #[error(
        "fixture line {line}: format {found} is newer than this version reads (format {supported})"
    )]
    NewerFormat {
        /// 1-based line number.
        line: usize,
        /// The header's format.
        found: u64,
        /// [`crate::recording::FORMAT`].
        supported: u32,
    },
}

impl Fixture {
    /// Reads a fixture file.
    pub fn load(path: impl AsRef<Path>) -> Result<Fixture, FixtureError> {
        Fixture::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses fixture text.
    ///
    /// ```
    /// use openflume_proto::testing::Fixture;
    /// let f = Fixture::parse("{\"seed\": 1}\n{\"at\": 0, \"input\": \"start\"}\n").unwrap();
    /// assert_eq!(f.steps.len(), 1);
    /// ```
    pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"));
        let (line, first) = lines.next().ok_or(FixtureError::Empty)?;
        let header = FixtureHeader::read(first).map_err(|error| match error {
            HeaderError::Newer(found) => FixtureError::NewerFormat {
                line,
                found,
                supported: crate::recording::FORMAT,
            },
            HeaderError::Json(error) => FixtureError::Line { line, error },
        })?;
        let mut steps: Vec<Step> = Vec::new();
        for (line, text) in lines {
            let step: Step =
                serde_json::from_str(text).map_err(|error| FixtureError::Line { line, error })?;
            if steps.last().is_some_and(|prev| prev.at > step.at) {
                return Err(FixtureError::Backwards { line });
            }
            steps.push(step);
        }
        Ok(Fixture { header, steps })
    }
}

/// One line of a transcript: an input the simulator fed, an output the machine produced, or a misuse error.
///
/// ```
/// use openflume_proto::Input;
/// use openflume_proto::testing::Entry;
/// let fired = Entry::In { input: Input::Timer, timer: Some("heartbeat") };
/// let line = serde_json::to_string(&fired).unwrap();
/// assert_eq!(line, r#"{"in":"timer","timer":"heartbeat"}"#);
/// let start = Entry::In { input: Input::Start, timer: None };
/// assert_eq!(serde_json::to_string(&start).unwrap(), r#"{"in":"start"}"#);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Fed to the machine.
    In {
        /// The input.
        input: Input,
        /// For an [`Input::Timer`], the timer it woke the machine for: the earliest armed one
        /// ([`Machine::next_timer`]), which may also be early (cron judges by the wall clock).
        /// `None` for other inputs, when nothing was armed, or for a machine that does not say.
        timer: Option<&'static str>,
    },
    /// Produced by the machine.
    Out(Output),
    /// `handle_input` returned an error.
    Misuse(String),
}

/// `{"in": …}` with `"timer"` beside it when named, `{"out": …}`, `{"misuse": …}`: `Input`
/// keeps its own serialisation, and the timer's name sits next to it on the same line.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Entry::In { input, timer } => {
                map.serialize_entry("in", input)?;
                if let Some(timer) = timer {
                    map.serialize_entry("timer", timer)?;
                }
            }
            Entry::Out(output) => map.serialize_entry("out", output)?,
            Entry::Misuse(text) => map.serialize_entry("misuse", text)?,
        }
        map.end()
    }
}

/// What a machine did over a fixture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    /// `(monotonic time, entry)` in order.
    pub entries: Vec<(Millis, Entry)>,
    /// Broken promises of the [`Machine`] contract seen while driving it (a deadline in the
    /// past, output after finishing), for [`invariants::check`]; not part of the snapshot.
    pub violations: Vec<String>,
}

impl Transcript {
    /// One JSON object per line: `{"at":…,"in":…}` (with `"timer":…` when one fired) /
    /// `{"at":…,"out":…}`, for insta snapshots.
    pub fn to_jsonl(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            at: Millis,
            #[serde(flatten)]
            entry: &'a Entry,
        }
        let mut out = String::new();
        for (at, entry) in &self.entries {
            let line = serde_json::to_string(&Line { at: *at, entry })
                .unwrap_or_else(|e| format!("{{\"unserialisable\":{:?}}}", e.to_string()));
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Just the outputs.
    pub fn outputs(&self) -> impl Iterator<Item = (Millis, &Output)> {
        self.entries.iter().filter_map(|(at, e)| match e {
            Entry::Out(o) => Some((*at, o)),
            _ => None,
        })
    }
}

/// Drives a machine the way a driver would, with scripted time.
pub struct Simulator<M: Machine> {
    /// The machine under test.
    pub machine: M,
    clock: Now,
    auto_confirm: bool,
    transcript: Transcript,
}

/// Timers fired back to back at one instant before the simulator decides the machine is looping.
const MAX_FIRES_PER_GAP: usize = 10_000;

impl<M: Machine> Simulator<M> {
    /// A simulator starting at `start`.
    pub fn new(machine: M, start: Now, auto_confirm: bool) -> Self {
        Simulator {
            machine,
            clock: start,
            auto_confirm,
            transcript: Transcript::default(),
        }
    }

    /// Runs `machine` over `fixture` and returns the transcript.
    ///
    /// # Panics
    /// When the machine keeps re-arming a timer that is already due (a busy loop): a test failure.
    pub fn run(machine: M, fixture: &Fixture) -> (M, Transcript) {
        let mut sim = Simulator::new(machine, fixture.header.start, fixture.header.auto_confirm);
        // A recording holds every timer input the driver fed: none is fired besides them.
        let recorded_timers = fixture.header.recorded_timers;
        for step in &fixture.steps {
            if recorded_timers {
                sim.set_mono(step.at.max(sim.clock.mono));
            } else {
                sim.advance_to(step.at);
            }
            if let Some(wall) = step.wall {
                sim.clock.wall = wall;
            }
            // A scripted misuse is part of the fixture: it shows in the transcript.
            let _ = sim.feed(step.input.clone());
        }
        if let Some(until) = fixture.header.until
            && !recorded_timers
        {
            sim.advance_to(until);
        }
        (sim.machine, sim.transcript)
    }

    /// The current simulated time.
    pub fn now(&self) -> Now {
        self.clock
    }

    /// Fires every deadline up to `at`, in order, then sets the clock to `at`.
    pub fn advance_to(&mut self, at: Millis) {
        let mut fires = 0;
        while let Some(deadline) = self.machine.poll_timeout() {
            if deadline > at || self.machine.is_finished() {
                break;
            }
            fires += 1;
            assert!(
                fires <= MAX_FIRES_PER_GAP,
                "machine re-armed a due timer {MAX_FIRES_PER_GAP} times before {at:?}: busy loop"
            );
            self.set_mono(deadline.max(self.clock.mono));
            // A refused timer shows in the transcript, which is what fixtures check.
            let _ = self.feed(Input::Timer);
        }
        self.set_mono(at.max(self.clock.mono));
    }

    fn set_mono(&mut self, mono: Millis) {
        self.clock = Now {
            mono,
            wall: self.clock.wall_at(mono),
        };
    }

    /// Moves the clock to `at` (firing every deadline up to it), feeds `input` and returns what
    /// the machine did for it, deliveries confirmed as the simulator was told: the one step of
    /// every hand-written machine test.
    ///
    /// ```
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::testing::Simulator;
    /// use openflume_proto::{Input, Millis, Now, Output, UnixMillis};
    /// let cron = CronMachine::new(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC, 1).unwrap();
    /// let start = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
    /// let mut sim = Simulator::new(cron, start, true);
    /// let out = sim.step(Millis(0), Input::Start)?;
    /// assert!(out.iter().any(|o| matches!(o, Output::Status(_))));
    /// // A second start is the caller's mistake: the error comes back as well as being recorded.
    /// assert!(sim.step(Millis(5), Input::Start).is_err());
    /// # Ok::<(), openflume_proto::Misuse>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The machine's [`Misuse`] when it refuses `input`.
    pub fn step(&mut self, at: Millis, input: Input) -> Result<Vec<Output>, Misuse> {
        self.advance_to(at);
        self.feed_now(input)
    }

    /// Like [`step`](Self::step), but the deadlines before `at` do not fire: for a test that
    /// drives the timers by hand (an early or spurious `Input::Timer`, a deadline checked at its
    /// very instant). Time still never goes backwards.
    ///
    /// ```
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::testing::Simulator;
    /// use openflume_proto::{Input, Millis, Now, UnixMillis};
    /// let cron = CronMachine::new(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC, 1).unwrap();
    /// let start = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
    /// let mut sim = Simulator::new(cron, start, true);
    /// sim.step(Millis(0), Input::Start)?;
    /// // Fed by hand two minutes later: the tick is the answer to this very input.
    /// let out = sim.step_by_hand(Millis(120_000), Input::Timer)?;
    /// assert!(!out.is_empty());
    /// # Ok::<(), openflume_proto::Misuse>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The machine's [`Misuse`] when it refuses `input`.
    pub fn step_by_hand(&mut self, at: Millis, input: Input) -> Result<Vec<Output>, Misuse> {
        self.set_mono(at.max(self.clock.mono));
        self.feed_now(input)
    }

    /// Feeds `input` at the current time; returns its outputs.
    fn feed_now(&mut self, input: Input) -> Result<Vec<Output>, Misuse> {
        let first = self.transcript.entries.len();
        self.feed(input)?;
        Ok(self
            .transcript
            .entries
            .iter()
            .skip(first)
            .filter_map(|(_, entry)| match entry {
                Entry::Out(output) => Some(output.clone()),
                _ => None,
            })
            .collect())
    }

    /// Feeds one input at the current time and drains outputs, confirming deliveries when asked.
    /// A timer input is recorded with the name of the timer it woke the machine for; a refused
    /// input is recorded as a misuse entry, and its error returned.
    ///
    /// # Errors
    ///
    /// The machine's [`Misuse`] when it refuses `input`.
    pub fn feed(&mut self, input: Input) -> Result<(), Misuse> {
        let at = self.clock.mono;
        let finished_before = self.machine.is_finished();
        let timer = match input {
            Input::Timer => self.machine.next_timer(),
            _ => None,
        };
        let entry = Entry::In {
            input: input.clone(),
            timer,
        };
        self.transcript.entries.push((at, entry));
        if let Err(misuse) = self.machine.handle_input(self.clock, input) {
            self.transcript
                .entries
                .push((at, Entry::Misuse(misuse.to_string())));
            return Err(misuse);
        }
        let mut to_confirm = Vec::new();
        while let Some(output) = self.machine.poll_output() {
            if let Output::Emit {
                confirm: Some(delivery),
                ..
            } = &output
            {
                to_confirm.push(*delivery);
            }
            if finished_before {
                self.transcript.violations.push(format!(
                    "output at {at:?} after the machine finished: {output:?}"
                ));
            }
            self.transcript.entries.push((at, Entry::Out(output)));
        }
        if let Some(deadline) = self.machine.poll_timeout()
            && deadline < at
        {
            self.transcript
                .violations
                .push(format!("deadline {deadline:?} armed in the past at {at:?}"));
        }
        if self.auto_confirm {
            for delivery in to_confirm {
                // A delivery id the machine handed out: a refusal is in the transcript.
                let _ = self.feed(Input::Delivered { delivery });
            }
        }
        Ok(())
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }
}

/// What every transcript of every machine must satisfy, checked by each protocol's fixture test.
pub mod invariants {
    use super::{Entry, Transcript};
    use crate::{Machine, Output};
    use std::fmt::Debug;

    /// Panics, naming the first broken rule, unless `transcript` (and `machine` after it)
    /// keeps these:
    /// - no secret appears in any log (as written out), status or `Debug` rendering of an output
    ///   or of the machine;
    /// - time never goes backwards;
    /// - no deadline is armed in the past, and nothing is output after the machine finished (as
    ///   the simulator recorded while driving it).
    ///
    /// ```
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::testing::{Fixture, Simulator, invariants};
    /// let fixture = Fixture::parse("{\"until\": 180000}\n{\"at\": 0, \"input\": \"start\"}\n").unwrap();
    /// let cron = CronMachine::new(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC, 1).unwrap();
    /// let (cron, transcript) = Simulator::run(cron, &fixture);
    /// invariants::check(&cron, &transcript, &[]);
    /// ```
    pub fn check<M: Machine + Debug>(machine: &M, transcript: &Transcript, secrets: &[&str]) {
        if let Some(violation) = transcript.violations.first() {
            panic!("{violation}");
        }
        for pair in transcript.entries.windows(2) {
            if let [(earlier, _), (later, _)] = pair {
                assert!(
                    earlier <= later,
                    "time went backwards: {earlier:?} then {later:?}"
                );
            }
        }
        for secret in secrets {
            assert!(secret.len() >= 8, "fixtures use distinctive secrets");
            for (at, entry) in &transcript.entries {
                let Entry::Out(output) = entry else { continue };
                if let Output::Log(log) = output {
                    let line = serde_json::to_string(log).unwrap_or_default();
                    assert!(
                        !line.contains(secret),
                        "a secret in a log at {at:?}: {line}"
                    );
                }
                let debug = format!("{output:?}");
                assert!(
                    !debug.contains(secret),
                    "a secret in Debug at {at:?}: {debug}"
                );
            }
            assert!(
                !format!("{machine:?}").contains(secret),
                "a secret in the machine's Debug"
            );
        }
    }
}
