//! The recorder: every input the drivers feed their machines, with its time, written as a
//! recording (`openflume_proto::recording`) on a thread of its own.
//!
//! The drivers' side is one bounded channel send per input, and nothing at all when no recorder
//! is set (an `Option` check). The recorder never holds a source up: when its queue is full
//! (the disk is slower than the sources), the input is not recorded, counted, and said in a
//! warn log (`record.lost`, at most every ten seconds per source); the firehose loses nothing.
//! The count ends in the section's header (`lost_inputs`), so a replay knows it may differ.
//!
//! Secrets are taken out on the writer thread, before a byte is written: the configuration's
//! are replaced by placeholders naming the environment variable a replay reads them from, and
//! each input goes through [`Scrubber`] (tokens, Slack tickets, `Authorization` headers; message
//! contents too with [`RecordOptions::drop_content`]).
//!
//! Each section is spooled to `FILE.N.part` while the sources run (a valid one-section
//! recording on its own, should the process be killed) and the sections are put together into
//! `FILE` by [`Recorder::finish`].

use crate::lock::lock;
use openflume_proto::recording::scrub::Scrubber;
use openflume_proto::recording::{Header, MachineConfig, MachineKind, Step};
use openflume_proto::{Input, Level, Log, Now};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Inputs queued for the writer thread before the recorder starts dropping them.
const QUEUE: usize = 8192;
/// Least time between two `record.lost` warnings of one source.
const WARN_EVERY_MS: u64 = 10_000;

/// How a [`Recorder`] records.
///
/// ```
/// use openflume::RecordOptions;
/// let options = RecordOptions::default().with_drop_content(true);
/// assert!(options.drop_content);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RecordOptions {
    /// Empty the message contents (Discord `content`, Slack `text`, GitHub notification
    /// titles) and keep the structure around them.
    pub drop_content: bool,
}

impl RecordOptions {
    /// Empties message contents (or not), as `listen --record-drop-content` does.
    ///
    /// ```
    /// let options = openflume::RecordOptions::default().with_drop_content(true);
    /// assert!(options.drop_content);
    /// ```
    pub fn with_drop_content(mut self, drop_content: bool) -> RecordOptions {
        self.drop_content = drop_content;
        self
    }
}

/// Why a recording could not be made.
///
/// ```
/// use openflume::{RecordError, Recorder};
/// let refused = Recorder::create("/nonexistent/dir/r.jsonl", Default::default()).unwrap_err();
/// assert!(matches!(refused, RecordError::Create { .. }));
/// assert!(refused.to_string().starts_with("cannot create the recording /nonexistent/dir/r.jsonl"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file (or a spool file beside it) could not be created.
    #[error("cannot create the recording {}: {error}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Writing failed (a full disk); the inputs from then on were not recorded.
    #[error("cannot write the recording {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// [`Recorder::finish`] was called already.
    #[error("the recording was finished already")]
    Finished,
}

/// What a finished recording holds.
///
/// ```
/// use openflume::RecordSummary;
/// let summary = RecordSummary { sections: 2, inputs: 120, lost: 0 };
/// assert_eq!(summary.to_string(), "2 source(s), 120 inputs");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Sections (sources) in the file.
    pub sections: usize,
    /// Inputs written.
    pub inputs: u64,
    /// Inputs not recorded: the recorder could not keep up, or could not write.
    pub lost: u64,
}

impl std::fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} source(s), {} inputs", self.sections, self.inputs)?;
        if self.lost > 0 {
            write!(f, ", {} not recorded", self.lost)?;
        }
        Ok(())
    }
}

/// Records every input the drivers feed their machines into a file, for `openflume replay`,
/// [`replay_file`](crate::replay::replay_file), `openflume sim --replay`, or a fixture.
///
/// Give it to [`FlumeBuilder::record`](crate::FlumeBuilder::record) before the flume starts;
/// after the flume is closed, [`finish`](Self::finish) writes the file.
///
/// ```
/// use openflume::{Flume, RecordOptions, Recorder, Source};
/// use openflume_proto::cron::CronConfig;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("session.jsonl");
/// let recorder = Recorder::create(&path, RecordOptions::default())?;
/// let flume = Flume::builder()
///     .source(Source::cron(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC))
///     .record(&recorder)
///     .build();
/// smol::block_on(async { flume.open().await?.close().await; Ok::<_, openflume::StartError>(()) })?;
/// let summary = recorder.finish()?;
/// assert_eq!(summary.sections, 1);
/// let items = openflume::replay::replay_file(&path)?;
/// assert!(items.iter().any(|item| item.source() == "time"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    /// Set on the copy a source's driver holds.
    tap: Option<Tap>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

struct Shared {
    path: PathBuf,
    drop_content: bool,
    sender: SyncSender<Message>,
    sections: AtomicU64,
    writer: Mutex<Option<JoinHandle<Result<RecordSummary, RecordError>>>>,
}

/// One source's end of the recorder.
#[derive(Clone)]
struct Tap {
    section: usize,
    source: Arc<str>,
    lost: Arc<AtomicU64>,
    /// When this source last warned, in monotonic ms plus one (0: never).
    warned: Arc<AtomicU64>,
}

enum Message {
    Begin {
        section: usize,
        header: Box<Header>,
        scrubber: Box<Scrubber>,
        lost: Arc<AtomicU64>,
    },
    Input {
        section: usize,
        now: Now,
        input: Input,
    },
    Finish,
}

impl Recorder {
    /// Creates `path` (truncating it) and starts the writer thread.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let recorder = openflume::Recorder::create(dir.path().join("r.jsonl"), Default::default())?;
    /// // Nothing recorded: the file is empty, and a replay refuses it.
    /// assert_eq!(recorder.finish()?.sections, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecordError::Create`] when the file cannot be created.
    pub fn create(path: impl AsRef<Path>, options: RecordOptions) -> Result<Recorder, RecordError> {
        let path = path.as_ref().to_owned();
        let file = File::create(&path).map_err(|error| RecordError::Create {
            path: path.clone(),
            error,
        })?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let writer_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("openflume-record".to_owned())
            .spawn(move || Writer::new(writer_path, file).run(receiver))
            .map_err(|error| RecordError::Create {
                path: path.clone(),
                error,
            })?;
        Ok(Recorder {
            shared: Arc::new(Shared {
                path,
                drop_content: options.drop_content,
                sender,
                sections: AtomicU64::new(0),
                writer: Mutex::new(Some(writer)),
            }),
            tap: None,
        })
    }

    /// Where the recording goes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let recorder = openflume::Recorder::create(dir.path().join("r.jsonl"), Default::default())?;
    /// assert!(recorder.path().ends_with("r.jsonl"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Waits for every queued input to be written and puts the sections together into the
    /// file. Inputs fed after this (a source still stopping) are not recorded.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let recorder = openflume::Recorder::create(dir.path().join("r.jsonl"), Default::default())?;
    /// recorder.finish()?;
    /// assert!(matches!(recorder.finish(), Err(openflume::RecordError::Finished)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecordError::Write`] when the file could not be written, [`RecordError::Finished`] the
    /// second time.
    pub fn finish(&self) -> Result<RecordSummary, RecordError> {
        let writer = lock(&self.shared.writer).take();
        let Some(writer) = writer else {
            return Err(RecordError::Finished);
        };
        let _ = self.shared.sender.send(Message::Finish);
        writer.join().unwrap_or_else(|_| {
            Err(RecordError::Write {
                path: self.shared.path.clone(),
                error: io::Error::other("the recorder's thread panicked"),
            })
        })
    }

    /// The copy of this recorder that the driver of `source` holds: it begins the source's
    /// section, with the machine's configuration (secrets taken out) and its seed.
    pub(crate) fn section(
        &self,
        source: &str,
        config: Option<&MachineConfig>,
        seed: u64,
        now: Now,
    ) -> Recorder {
        let section = self.shared.sections.fetch_add(1, Ordering::Relaxed) as usize;
        let (kind, config, secrets) = match config {
            Some(config) => {
                let (json, secrets) = config.redacted();
                (config.kind(), json, secrets)
            }
            None => (MachineKind::Custom, serde_json::Value::Null, Vec::new()),
        };
        let header = Header::recorded(source, kind, seed, now, config);
        let scrubber = Scrubber::new(kind, secrets, self.shared.drop_content);
        let lost = Arc::new(AtomicU64::new(0));
        // Sections begin before their source runs, while the queue is still empty.
        let _ = self.shared.sender.send(Message::Begin {
            section,
            header: Box::new(header),
            scrubber: Box::new(scrubber),
            lost: lost.clone(),
        });
        Recorder {
            shared: self.shared.clone(),
            tap: Some(Tap {
                section,
                source: source.into(),
                lost,
                warned: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// Queues `input`, fed at `now`, for the writer. When the queue is full the input is
    /// counted as not recorded, and a warn log to deliver comes back (at most every ten
    /// seconds).
    pub(crate) fn record(&self, now: Now, input: &Input) -> Option<Log> {
        let tap = self.tap.as_ref()?;
        let message = Message::Input {
            section: tap.section,
            now,
            input: input.clone(),
        };
        match self.shared.sender.try_send(message) {
            Ok(()) => None,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let lost = tap.lost.fetch_add(1, Ordering::Relaxed) + 1;
                let last = tap.warned.load(Ordering::Relaxed);
                let due = last == 0 || now.mono.0 + 1 >= last.saturating_add(WARN_EVERY_MS);
                if !due {
                    return None;
                }
                tap.warned.store(now.mono.0 + 1, Ordering::Relaxed);
                Some(Log::new(
                    Level::Warn,
                    &*tap.source,
                    "record.lost",
                    format!(
                        "the recorder cannot keep up: {lost} input(s) of this source not \
                         recorded so far; its replay may differ from this run"
                    ),
                    now.wall,
                ))
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    file: File,
    /// By section number: sections begin in the order their sources start.
    sections: BTreeMap<usize, Spool>,
    inputs: u64,
    failed: Option<io::Error>,
}

/// One section being spooled.
struct Spool {
    path: PathBuf,
    out: BufWriter<File>,
    header: Header,
    scrubber: Scrubber,
    lost: Arc<AtomicU64>,
    /// The clocks after the last written input (`None` until the first): a line carries
    /// `wall` only when the wall clock did not keep pace with `at` since then.
    clock: Option<Now>,
}

impl Writer {
    fn new(path: PathBuf, file: File) -> Writer {
        Writer {
            path,
            file,
            sections: BTreeMap::new(),
            inputs: 0,
            failed: None,
        }
    }

    fn run(mut self, messages: Receiver<Message>) -> Result<RecordSummary, RecordError> {
        // Every sender gone (a recorder never finished) ends the recording as well.
        while let Ok(message) = messages.recv() {
            match message {
                Message::Begin {
                    section,
                    header,
                    scrubber,
                    lost,
                } => self.begin(section, *header, *scrubber, lost),
                Message::Input {
                    section,
                    now,
                    input,
                } => self.input(section, now, input),
                Message::Finish => break,
            }
        }
        drop(messages);
        self.assemble()
    }

    fn begin(&mut self, section: usize, header: Header, scrubber: Scrubber, lost: Arc<AtomicU64>) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recording".to_owned());
        let path = self.path.with_file_name(format!("{name}.{section}.part"));
        match File::create(&path) {
            Ok(file) => {
                let spool = Spool {
                    path,
                    out: BufWriter::new(file),
                    header,
                    scrubber,
                    lost,
                    clock: None,
                };
                self.sections.insert(section, spool);
            }
            Err(error) => self.fail(error),
        }
    }

    fn input(&mut self, section: usize, now: Now, input: Input) {
        let failed = self.failed.is_some();
        let Some(spool) = self.sections.get_mut(&section) else {
            return;
        };
        if failed {
            spool.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match spool.write(now, input) {
            Ok(true) => self.inputs += 1,
            Ok(false) => {}
            Err(error) => self.fail(error),
        }
    }

    fn fail(&mut self, error: io::Error) {
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }

    /// Writes each section (its header, with the count of inputs not recorded) into the file,
    /// and removes the spools.
    fn assemble(mut self) -> Result<RecordSummary, RecordError> {
        let mut lost = 0;
        let mut out = BufWriter::new(&self.file);
        for spool in self.sections.values_mut() {
            let written = spool.finish(&mut out);
            lost += spool.lost.load(Ordering::Relaxed);
            match written {
                Ok(()) => {
                    let _ = std::fs::remove_file(&spool.path);
                }
                Err(error) => {
                    if self.failed.is_none() {
                        self.failed = Some(error);
                    }
                }
            }
        }
        if let Err(error) = out.flush() {
            self.failed.get_or_insert(error);
        }
        drop(out);
        if let Some(error) = self.failed {
            return Err(RecordError::Write {
                path: self.path,
                error,
            });
        }
        Ok(RecordSummary {
            sections: self.sections.len(),
            inputs: self.inputs,
            lost,
        })
    }
}

impl Spool {
    /// Writes one input; `false` when the scrubber holds it back (a part of a compressed
    /// payload whose contents are dropped: the whole payload is written once complete).
    fn write(&mut self, now: Now, input: Input) -> io::Result<bool> {
        let clock = match self.clock {
            Some(clock) => clock,
            None => {
                // The loader's clock starts at the header's `start`.
                self.header.start = now;
                write_line(&mut self.out, &self.header)?;
                self.clock = Some(now);
                now
            }
        };
        let wall = (clock.wall_at(now.mono) != now.wall).then_some(now.wall);
        let step = Step {
            at: now.mono,
            wall,
            input,
        };
        let Some(line) = self.scrubber.line(step) else {
            // Nothing written: the next line's wall is judged against the last one written.
            return Ok(false);
        };
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.clock = Some(now);
        Ok(true)
    }

    /// This section into `out`: its final header, then its inputs from the spool.
    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.out.flush()?;
        self.header.lost_inputs = self.lost.load(Ordering::Relaxed);
        write_line(out, &self.header)?;
        if self.clock.is_none() {
            // No input came: the spool holds nothing, not even a header.
            return Ok(());
        }
        let mut spool = BufReader::new(File::open(&self.path)?);
        let mut first = Vec::new();
        // The spool's own header, written before the count of lost inputs was known.
        spool.read_until(b'\n', &mut first)?;
        io::copy(&mut spool, out)?;
        Ok(())
    }
}

fn write_line(out: &mut impl Write, header: &Header) -> io::Result<()> {
    let line = serde_json::to_string(header).map_err(io::Error::other)?;
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::recording::Recording;
    use openflume_proto::{Millis, UnixMillis};

    fn now(mono: u64, wall: i64) -> Now {
        Now {
            mono: Millis(mono),
            wall: UnixMillis(wall),
        }
    }

    /// A recorder whose writer never drains: its queue holds `capacity` messages.
    fn stalled(capacity: usize) -> (Recorder, Receiver<Message>) {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
        let recorder = Recorder {
            shared: Arc::new(Shared {
                path: PathBuf::from("unused.jsonl"),
                drop_content: false,
                sender,
                sections: AtomicU64::new(0),
                writer: Mutex::new(None),
            }),
            tap: None,
        };
        (recorder, receiver)
    }

    #[test]
    fn a_full_queue_drops_inputs_counts_them_and_warns_now_and_then() {
        let (recorder, receiver) = stalled(2);
        let tap = recorder.section("github", None, 7, now(0, 1_000));
        // A recorder without a section records nothing (the flume-level copy).
        assert!(recorder.record(now(1, 1_001), &Input::Timer).is_none());
        assert!(tap.record(now(1, 1_001), &Input::Start).is_none());
        let warning = tap.record(now(2, 1_002), &Input::Timer).expect("a warning");
        assert_eq!(
            (warning.level, warning.action.as_str()),
            (Level::Warn, "record.lost")
        );
        assert_eq!(warning.source, "github");
        assert!(
            warning.message.contains("1 input(s)"),
            "{}",
            warning.message
        );
        // Counted every time, said at most every ten seconds.
        assert!(tap.record(now(3, 1_003), &Input::Timer).is_none());
        let later = tap
            .record(now(10_002, 11_002), &Input::Timer)
            .expect("again");
        assert!(later.message.contains("3 input(s)"), "{}", later.message);
        let lost = match receiver.try_recv() {
            Ok(Message::Begin { lost, .. }) => lost,
            _ => panic!("the section begins first"),
        };
        assert_eq!(lost.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn sections_are_put_together_with_their_lost_inputs_and_wall_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let (sender, receiver) = std::sync::mpsc::sync_channel(16);
        let file = File::create(&path).unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || Writer::new(path, file).run(receiver))
        };
        let begin = |section: usize, source: &str, lost: u64| Message::Begin {
            section,
            header: Box::new(Header::recorded(
                source,
                MachineKind::Custom,
                3,
                now(0, 0),
                serde_json::Value::Null,
            )),
            scrubber: Box::new(Scrubber::new(MachineKind::Custom, Vec::new(), false)),
            lost: Arc::new(AtomicU64::new(lost)),
        };
        // The second section begins first: the file keeps the section numbers' order.
        sender.send(begin(1, "b", 0)).unwrap();
        sender.send(begin(0, "a", 2)).unwrap();
        let input = |section: usize, now: Now, input: Input| Message::Input {
            section,
            now,
            input,
        };
        sender.send(input(0, now(5, 1_005), Input::Start)).unwrap();
        sender.send(input(1, now(6, 1_006), Input::Start)).unwrap();
        // Kept pace: no wall. Stepped (an NTP step): the wall is written.
        sender.send(input(0, now(10, 1_010), Input::Timer)).unwrap();
        sender.send(input(0, now(20, 5_000), Input::Timer)).unwrap();
        sender.send(Message::Finish).unwrap();
        let summary = writer.join().unwrap().unwrap();
        assert_eq!((summary.sections, summary.inputs, summary.lost), (2, 4, 2));
        let text = std::fs::read_to_string(&path).unwrap();
        let recording = Recording::parse(&text).unwrap();
        let [a, b] = recording.sections.as_slice() else {
            panic!("two sections: {text}");
        };
        assert_eq!((a.source(), b.source()), ("a", "b"));
        assert_eq!(a.header.lost_inputs, 2);
        assert_eq!(a.header.start, now(5, 1_005));
        let walls: Vec<Option<UnixMillis>> = a.steps.iter().map(|s| s.wall).collect();
        assert_eq!(walls, [None, None, Some(UnixMillis(5_000))]);
        assert_eq!(b.steps.len(), 1);
        // No spool is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
