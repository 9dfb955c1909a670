//! Helpers for the cross-crate integration tests in `tests/`: run the `openflume` binary, read
//! its JSON Lines as they come (or slowly, or not at all, like the readers it meets in real use),
//! signal it, and wait for items with a timeout instead of sleeping.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod redis;
pub mod serve;
pub mod tls;

use openflume_proto::Item;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

/// The `openflume` binary of this build (`cargo test --workspace` builds it beside the tests).
pub fn openflume_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/openflume
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join(format!("openflume{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo build -p openflume`)",
        bin.display()
    );
    bin
}

/// How the test reads the stdout of an [`Openflume`]: the readers `listen` meets in real use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Every line as soon as it is written.
    Eager,
    /// At most this many lines a second, never catching up in a burst (a slow agent).
    Paced {
        /// Lines a second.
        lines_per_second: u32,
    },
    /// Only the lines the test asks for ([`Openflume::pull`], and one at a time in
    /// [`Openflume::wait_for_json`]): between asks the pipe is not read at all, so it fills and
    /// the writer blocks.
    Pull,
    /// Lines as they come (or at most `lines_per_second`) until `events` event lines were read,
    /// then the read end of the pipe is closed (`head -n`, or an agent that exits).
    CloseAfterEvents {
        /// Event lines read before leaving.
        events: usize,
        /// The pace, if not as fast as lines come.
        lines_per_second: Option<u32>,
    },
    /// stdout is `/dev/full`: every write fails with ENOSPC.
    DevFull,
}

/// What the test thread asks of the thread that reads stdout.
enum Want {
    /// Read this many more lines ([`Reader::Pull`]).
    Lines(usize),
    /// Read everything to the end, as fast as it comes (the process has exited).
    All,
    /// Report the [`PipeState`] ([`Reader::Pull`], between pulls).
    PipeState,
}

/// How far a reader got into the stdout pipe, and how much the pipe can hold beyond that: what
/// bounds the bytes the process can have written so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeState {
    /// Bytes read out of the pipe so far, complete lines or not.
    pub taken: u64,
    /// The pipe's capacity in bytes (`F_GETPIPE_SZ`), read after `taken`: the writer may grow
    /// the pipe (`F_SETPIPE_SZ`), so it is asked each time.
    pub capacity: u64,
    /// Bytes written into the pipe and not read yet (`FIONREAD`).
    pub queued: u64,
}

impl PipeState {
    /// The most bytes the process can have written to stdout by the time of this state: what
    /// was read, plus a full pipe.
    pub fn written_at_most(self) -> u64 {
        self.taken + self.capacity
    }
}

/// The read end of the stdout pipe, counting the bytes taken out of it.
struct Pipe {
    reader: BufReader<Counted>,
}

/// A reader that counts the bytes it gave out.
struct Counted {
    inner: ChildStdout,
    taken: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        Ok(n)
    }
}

impl Pipe {
    /// A reader that takes at most `read_ahead` bytes out of the pipe at once.
    fn new(stdout: ChildStdout, read_ahead: usize) -> Pipe {
        let counted = Counted {
            inner: stdout,
            taken: 0,
        };
        Pipe {
            reader: BufReader::with_capacity(read_ahead, counted),
        }
    }

    /// The next line without its newline; `None` at the end of the output.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.ends_with('\n') {
                    line.pop();
                }
                Some(line)
            }
        }
    }

    fn state(&self) -> PipeState {
        let counted = self.reader.get_ref();
        let fd = counted.inner.as_fd();
        let capacity = rustix::pipe::fcntl_getpipe_size(fd).expect("F_GETPIPE_SZ on stdout");
        let queued = rustix::io::ioctl_fionread(fd).expect("FIONREAD on stdout");
        PipeState {
            taken: counted.taken,
            capacity: capacity as u64,
            queued,
        }
    }

    /// The complete lines already taken out of the pipe but not yet handed out.
    fn buffered_lines(&self) -> Vec<String> {
        let buffered = String::from_utf8_lossy(self.reader.buffer());
        match buffered.rsplit_once('\n') {
            Some((complete, _partial)) => complete.split('\n').map(str::to_owned).collect(),
            None => Vec::new(),
        }
    }

    fn forward_all(mut self, lines: &Sender<String>) {
        while let Some(line) = self.line() {
            if lines.send(line).is_err() {
                return;
            }
        }
    }
}

/// The body of the thread that reads stdout the way `mode` says.
fn read_stdout(
    mut pipe: Pipe,
    mode: Reader,
    lines: Sender<String>,
    wants: Receiver<Want>,
    states: Sender<PipeState>,
) {
    match mode {
        Reader::Eager | Reader::DevFull => pipe.forward_all(&lines),
        Reader::Paced { lines_per_second } => {
            let mut pace = Pace::new(Some(lines_per_second));
            loop {
                match wants.try_recv() {
                    Ok(Want::All) | Err(TryRecvError::Disconnected) => {
                        return pipe.forward_all(&lines);
                    }
                    Ok(_) | Err(TryRecvError::Empty) => {}
                }
                let Some(line) = pace.read(&mut pipe) else {
                    return;
                };
                if lines.send(line).is_err() {
                    return;
                }
            }
        }
        Reader::Pull => loop {
            match wants.recv() {
                Ok(Want::Lines(n)) => {
                    for _ in 0..n {
                        let Some(line) = pipe.line() else { return };
                        if lines.send(line).is_err() {
                            return;
                        }
                    }
                }
                Ok(Want::PipeState) => {
                    let _ = states.send(pipe.state());
                }
                Ok(Want::All) => return pipe.forward_all(&lines),
                Err(_) => return,
            }
        },
        Reader::CloseAfterEvents {
            events: limit,
            lines_per_second,
        } => {
            let mut pace = Pace::new(lines_per_second);
            let mut events = 0;
            while events < limit {
                let Some(line) = pace.read(&mut pipe) else {
                    return;
                };
                events += usize::from(is_event_line(&line));
                if lines.send(line).is_err() {
                    return;
                }
            }
            let state = pipe.state();
            // What was taken out of the pipe is the reader's: it keeps those lines too.
            for line in pipe.buffered_lines() {
                let _ = lines.send(line);
            }
            let _ = states.send(state);
            // Dropping the pipe closes its read end: from now on the writer gets EPIPE.
        }
    }
}

/// Spaces a reader's reads; a line that was late does not buy the next one an earlier read.
struct Pace {
    gap: Duration,
    next: Instant,
}

impl Pace {
    /// At most `lines_per_second`, or as fast as lines come (`None`).
    fn new(lines_per_second: Option<u32>) -> Pace {
        Pace {
            gap: lines_per_second.map_or(Duration::ZERO, |n| Duration::from_secs(1) / n.max(1)),
            next: Instant::now(),
        }
    }

    fn read(&mut self, pipe: &mut Pipe) -> Option<String> {
        // Pacing a reader is the point here, not waiting for something.
        std::thread::sleep(self.next.saturating_duration_since(Instant::now()));
        let line = pipe.line();
        self.next = Instant::now().max(self.next + self.gap);
        line
    }
}

fn is_event_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["kind"] == "event")
}

/// A running `openflume` process whose stdout lines (read as its [`Reader`] says) and stderr
/// are collected as they arrive.
pub struct Openflume {
    child: Child,
    mode: Reader,
    lines: Receiver<String>,
    wants: Sender<Want>,
    states: Receiver<PipeState>,
    /// Lines asked of a [`Reader::Pull`] reader and not received yet.
    asked: usize,
    stderr: Receiver<String>,
    /// Every stderr line read so far.
    stderr_seen: Vec<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Openflume {
    /// Starts `openflume <args>` with `env` added and no inherited credentials, its stdout read
    /// as fast as it comes.
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Openflume {
        Openflume::spawn_with(args, env, Reader::Eager)
    }

    /// Starts `openflume <args>` with `env` added and no inherited credentials, its stdout read
    /// the way `mode` says.
    pub fn spawn_with(args: &[&str], env: &[(&str, String)], mode: Reader) -> Openflume {
        let mut command = Command::new(openflume_bin());
        let stdout = match mode {
            Reader::DevFull => Stdio::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .expect("open /dev/full"),
            ),
            _ => Stdio::piped(),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for var in [
            "DISCORD_BOT_TOKEN",
            "SLACK_APP_TOKEN",
            "SLACK_BOT_TOKEN",
            "GITHUB_TOKEN",
            "OPENFLUME_DISCORD_API_URL",
            "OPENFLUME_DISCORD_GATEWAY_URL",
            "OPENFLUME_SLACK_API_URL",
            "OPENFLUME_GITHUB_API_URL",
            // A Redis of the machine's own (6379, say) is never the tests' to use.
            "OPENFLUME_REDIS",
            "OPENFLUME_DISCORD_IDENTIFY_REDIS",
            "OPENFLUME_SINK",
            // The machine's own network settings would send the simulators' traffic elsewhere.
            "OPENFLUME_CA_CERT",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            command.env_remove(var);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn openflume");
        let (lines_tx, lines) = channel();
        let (wants, wants_rx) = channel();
        let (states_tx, states) = channel();
        // With /dev/full there is no pipe: the line channel ends at once.
        if let Some(stdout) = child.stdout.take() {
            // A fast reader takes all a pipe holds in one read; the others, like most programs,
            // take a few KB beyond the line they are at, so the pipe stays full while they wait.
            let read_ahead = match mode {
                Reader::Eager | Reader::DevFull => 1 << 20,
                _ => 8 << 10,
            };
            let pipe = Pipe::new(stdout, read_ahead);
            std::thread::spawn(move || read_stdout(pipe, mode, lines_tx, wants_rx, states_tx));
        }
        let (tx, stderr) = channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Openflume {
            child,
            mode,
            lines,
            wants,
            states,
            asked: 0,
            stderr,
            stderr_seen: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one parses into an item that `pred` accepts; panics after `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl FnMut(&Item) -> bool) -> Item {
        self.wait_for_line("item", timeout, pred)
    }

    /// Reads lines until one, parsed as JSON, satisfies `pred`; panics after `timeout`, on a line
    /// that is not JSON, or if the process exits first. Unlike [`wait_for`](Self::wait_for) it
    /// does not need the line to deserialize into an [`Item`].
    pub fn wait_for_json(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for_line("JSON", timeout, pred)
    }

    /// Like [`wait_for_json`](Self::wait_for_json), but says why it gave up instead of failing
    /// the test, so the caller can report what its predicate counted.
    pub fn try_wait_for_json(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        self.try_wait_for_line("JSON", timeout, pred)
    }

    /// Reads lines until one parses as a `T` (`what`, for the panic messages) that `pred`
    /// accepts; panics after `timeout`, on a line that does not parse, or if the process exits.
    fn wait_for_line<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&T) -> bool,
    ) -> T {
        self.try_wait_for_line(what, timeout, pred)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    fn try_wait_for_line<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.mode == Reader::Pull && self.asked == 0 {
                self.ask(1);
            }
            let line = self.next_line(deadline, what, timeout)?;
            let parsed: T = serde_json::from_str(&line)
                .map_err(|e| format!("stdout line does not parse as {what} ({e}): {line}"))?;
            if pred(&parsed) {
                return Ok(parsed);
            }
        }
    }

    /// Reads `n` more lines with a [`Reader::Pull`] reader (into [`seen`](Self::seen)); panics
    /// after `timeout` or if the output ends first.
    pub fn pull(&mut self, n: usize, timeout: Duration) {
        assert_eq!(self.mode, Reader::Pull, "pull needs a Reader::Pull");
        let deadline = Instant::now() + timeout;
        self.ask(n);
        while self.asked > 0 {
            if let Err(why) = self.next_line(deadline, "pulled", timeout) {
                panic!("{why}");
            }
        }
    }

    fn ask(&mut self, n: usize) {
        self.asked += n;
        self.wants
            .send(Want::Lines(n))
            .expect("the stdout reader runs");
    }

    /// The next stdout line (kept in `seen`), or why there is none by `deadline` (naming
    /// `what` was awaited).
    fn next_line(
        &mut self,
        deadline: Instant,
        what: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.asked = self.asked.saturating_sub(1);
                self.seen.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "no matching {what} line within {timeout:?}; {}",
                tail(&self.seen)
            )),
            Err(RecvTimeoutError::Disconnected) => Err(format!(
                "openflume's stdout ended before a matching {what} line; {}\nstderr: {}",
                tail(&self.seen),
                self.stderr_text(Instant::now() + Duration::from_secs(1))
            )),
        }
    }

    /// How far a [`Reader::Pull`] reader got into the pipe; ask between pulls, while it is idle.
    pub fn pipe_state(&mut self) -> PipeState {
        assert!(
            self.mode == Reader::Pull && self.asked == 0,
            "pipe_state needs an idle Reader::Pull"
        );
        self.wants
            .send(Want::PipeState)
            .expect("the stdout reader runs");
        self.states
            .recv_timeout(Duration::from_secs(5))
            .expect("the stdout reader reports its pipe state")
    }

    /// True while one of openflume's threads sleeps in a write to a pipe with no room: the
    /// kernel counts a pipe's room in pages, so a pipe can refuse writes well before its bytes
    /// reach its capacity. Read from `/proc` (Linux).
    pub fn blocked_writing(&self) -> bool {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read_to_string(task.path().join("wchan"))
                    .is_ok_and(|wchan| wchan.contains("pipe_write"))
            })
    }

    /// Waits (at most `timeout`) until a [`Reader::CloseAfterEvents`] reader closed the pipe;
    /// returns how far it had got then.
    pub fn wait_reader_closed(&mut self, timeout: Duration) -> PipeState {
        assert!(
            matches!(self.mode, Reader::CloseAfterEvents { .. }),
            "wait_reader_closed needs a Reader::CloseAfterEvents"
        );
        match self.states.recv_timeout(timeout) {
            Ok(state) => state,
            Err(_) => panic!(
                "the reader did not take its events within {timeout:?}; stderr: {}",
                self.stderr_text(Instant::now() + Duration::from_millis(100))
            ),
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .expect("send a signal to openflume");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// Waits for the exit (at most `timeout`, then kills it and panics); returns the status,
    /// every stdout line (those read before included: the reader then takes the rest as fast as
    /// it comes) and the whole stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let _ = self.wants.send(Want::All);
                let lines = self.rest_of_output(Instant::now() + Duration::from_secs(5));
                panic!(
                    "openflume did not exit within {timeout:?}; {}\nstderr: {}",
                    tail(&lines),
                    self.stderr_text(Instant::now() + Duration::from_secs(1))
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The writer is gone: whatever is left in the pipe ends with EOF.
        let _ = self.wants.send(Want::All);
        let rest = self.rest_of_output(Instant::now() + Duration::from_secs(10));
        let stderr = self.stderr_text(Instant::now() + Duration::from_secs(5));
        (status, rest, stderr)
    }

    /// Waits (at most `timeout`) for a stderr line that satisfies `pred`, and returns it.
    pub fn wait_for_stderr(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stderr_seen.iter().find(|line| pred(line)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(_) => panic!(
                    "no matching stderr line within {timeout:?}; stderr so far:\n{}",
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// The whole stderr: what was seen, and the rest until it ends or `deadline` passes.
    fn stderr_text(&mut self, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(_) => break,
            }
        }
        self.stderr_seen.join("\n")
    }

    /// `seen` and every line still to come, until the output ends or `deadline` passes.
    fn rest_of_output(&mut self, deadline: Instant) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.seen);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "stdout did not end after the exit; {} lines read",
                    lines.len()
                ),
            }
        }
    }
}

impl Drop for Openflume {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many lines there are and the last few (cut), for failure messages: a burst test can read
/// thousands.
pub fn tail(lines: &[String]) -> String {
    const SHOWN: usize = 12;
    let shown: Vec<String> = lines
        .iter()
        .skip(lines.len().saturating_sub(SHOWN))
        .map(|line| cut(line.clone()))
        .collect();
    format!(
        "{} lines; the last {}:\n{}",
        lines.len(),
        shown.len(),
        shown.join("\n")
    )
}

/// `line` cut to 300 bytes, for failure messages.
fn cut(mut line: String) -> String {
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// True for a JSON line holding a log of `source` with `action`.
pub fn is_log_json(line: &serde_json::Value, source: &str, action: &str) -> bool {
    line["kind"] == "log" && line["log"]["source"] == source && line["log"]["action"] == action
}

/// True for a JSON line holding a status log of `source` reaching `to`.
pub fn is_status_json(line: &serde_json::Value, source: &str, to: &str) -> bool {
    is_log_json(line, source, "status") && line["log"]["detail"]["to"] == to
}

/// True for a JSON line holding an event of `source` and `event_type`.
pub fn is_event_json(line: &serde_json::Value, source: &str, event_type: &str) -> bool {
    line["kind"] == "event"
        && line["event"]["source"] == source
        && line["event"]["type"] == event_type
}

/// True for an event of `source` and `event_type`.
pub fn is_event(item: &Item, source: &str, event_type: &str) -> bool {
    matches!(item, Item::Event(e) if e.source == source && e.event_type == event_type)
}

/// True for a status log of `source` reaching `to`.
pub fn is_status(item: &Item, source: &str, to: &str) -> bool {
    matches!(item, Item::Log(l) if l.source == source && l.action == "status"
        && l.detail.as_ref().and_then(|d| d.get("to")).and_then(|t| t.as_str()) == Some(to))
}

// ---------------------------------------------------------------------------------------------
// Running async code and reading the firehose from plain `#[test]` functions.
// ---------------------------------------------------------------------------------------------

use openflume::ItemStream;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Wakes the thread that is blocked in [`block_on_until`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it completes (`Some`) or `deadline` passes (`None`; the future
/// is dropped). The drivers and simulators run on smol's global executor and async-io's reactor
/// thread, so this thread only has to wait.
pub fn block_on_until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// Runs `fut` to completion, failing the test with `what` after `timeout`.
pub fn block_on<F: Future>(timeout: Duration, what: &str, fut: F) -> F::Output {
    block_on_until(Instant::now() + timeout, fut)
        .unwrap_or_else(|| panic!("timed out after {timeout:?}: {what}"))
}

/// The Discord simulator saw one session, and `who` resumed it rather than identify again.
pub fn assert_one_session_resumed(discord: &openflume_sim::DiscordSim, who: &str) {
    let records = discord.records();
    assert_eq!(records.sessions().len(), 1, "one session, resumed");
    assert!(
        records
            .resumes
            .iter()
            .any(|resume| matches!(resume.outcome, openflume_sim::ResumeOutcome::Resumed { .. })),
        "{who} resumed: {:?}",
        records.resumes.iter().collect::<Vec<_>>()
    );
}

/// A Slack simulator that waits a minute for each ack (longer than any test holds them back).
pub fn patient_slack_sim() -> openflume_sim::SlackSim {
    block_on(
        Duration::from_secs(30),
        "start the Slack simulator",
        openflume_sim::SlackSim::start(openflume_sim::SlackSimConfig {
            ack_deadline: Duration::from_secs(60),
            ..openflume_sim::SlackSimConfig::default()
        }),
    )
    .expect("start the Slack simulator")
}

/// Injects `envelopes` Slack messages, waits until the simulator sent them all, then gives the
/// client two seconds to ack any of them and fails the test (saying `held`: what holds the
/// appends back) if it did: an envelope must not be acked before its item is appended.
pub fn inject_and_expect_no_ack(slack: &openflume_sim::SlackSim, envelopes: u32, held: &str) {
    slack.inject(openflume_sim::SlackAction::Messages(envelopes));
    block_on(
        Duration::from_secs(30),
        "envelopes sent",
        slack.wait_for(Duration::from_secs(30), |r| {
            (r.envelopes.len() >= envelopes as usize).then_some(())
        }),
    )
    .expect("every envelope sent");
    let early = block_on_until(
        Instant::now() + Duration::from_secs(2),
        slack.wait_for(Duration::from_secs(2), |r| {
            (!r.acks.is_empty()).then_some(())
        }),
    );
    assert!(
        !matches!(early, Some(Ok(()))),
        "an envelope was acked while {held}: {:?}",
        slack.records().acks.iter().next().map(|a| &a.envelope_id)
    );
}

/// Waits until at least `envelopes` acks came, and returns the Slack `event_id` of each acked
/// envelope.
pub fn acked_event_ids(slack: &openflume_sim::SlackSim, envelopes: u32) -> Vec<String> {
    block_on(
        Duration::from_secs(30),
        "the acks",
        slack.wait_for(Duration::from_secs(30), |r| {
            (r.acks.len() >= envelopes as usize).then_some(())
        }),
    )
    .expect("every envelope acked once appended");
    let records = slack.records();
    records
        .acks
        .iter()
        .map(|ack| {
            records
                .envelopes
                .iter()
                .find(|e| e.envelope_id == ack.envelope_id)
                .and_then(|e| e.event_id.clone())
                .expect("an acked envelope was sent, with an event id")
        })
        .collect()
}

/// Fails the test if the JSON form of `item` contains any of `secrets`.
pub fn assert_no_secret(item: &Item, secrets: &[String]) {
    let json = serde_json::to_string(item).expect("items serialize");
    for secret in secrets {
        assert!(
            !json.contains(secret.as_str()),
            "a secret leaked into an item: {json}"
        );
    }
}

/// Fails the test if `text` (a stdout line, stderr) contains any of `secrets`.
pub fn assert_text_has_no_secret(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into the output: {text}"
        );
    }
}

/// How long [`Collector::wait`] waits for the firehose before looking at its condition again,
/// so a condition on simulator records is seen even when no item arrives.
const RECHECK: Duration = Duration::from_millis(20);

/// Where a [`Collector`] reads from.
enum Feed {
    /// [`Running::stream`](openflume::Running::stream).
    Stream(ItemStream),
    /// An `on_item` callback feeding a channel.
    Callback(Receiver<Item>),
}

/// What one read from a [`Feed`] gave.
enum Got {
    Item(Item),
    Ended,
    Nothing,
}

impl Feed {
    fn read_until(&mut self, deadline: Instant) -> Got {
        match self {
            Feed::Stream(stream) => match block_on_until(deadline, stream.next()) {
                Some(Some(item)) => Got::Item(item),
                Some(None) => Got::Ended,
                None => Got::Nothing,
            },
            Feed::Callback(rx) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(item) => Got::Item(item),
                    Err(RecvTimeoutError::Disconnected) => Got::Ended,
                    Err(RecvTimeoutError::Timeout) => Got::Nothing,
                }
            }
        }
    }

    fn try_read(&mut self) -> Option<Item> {
        match self {
            Feed::Stream(stream) => stream.try_next(),
            Feed::Callback(rx) => rx.try_recv().ok(),
        }
    }
}

/// Reads the firehose into a list, checking every item for secrets as it arrives.
pub struct Collector {
    feed: Feed,
    secrets: Vec<String>,
    ended: bool,
    /// Every item read so far, in order.
    pub items: Vec<Item>,
}

impl Collector {
    /// Collects `stream`; every item is checked against `secrets`.
    pub fn new(stream: ItemStream, secrets: &[&str]) -> Collector {
        Collector::with_feed(Feed::Stream(stream), secrets)
    }

    /// A collector fed by the returned `on_item` callback (which sees every item, those of the
    /// start included, and ends the collection when the flume drops it on close).
    pub fn callback(secrets: &[&str]) -> (Collector, impl FnMut(&Item) + Send + 'static) {
        let (tx, rx) = channel();
        let callback = move |item: &Item| {
            let _ = tx.send(item.clone());
        };
        (Collector::with_feed(Feed::Callback(rx), secrets), callback)
    }

    fn with_feed(feed: Feed, secrets: &[&str]) -> Collector {
        Collector {
            feed,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            ended: false,
            items: Vec::new(),
        }
    }

    fn push(&mut self, item: Item) {
        assert_no_secret(&item, &self.secrets);
        self.items.push(item);
    }

    /// Reads items until `check` (called on everything read so far, and again at least every
    /// few milliseconds so it may also look at simulator records) returns `Some`; fails the test
    /// with `what` after `timeout` or if the stream ends first.
    pub fn wait<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        check: impl FnMut(&[Item]) -> Option<T>,
    ) -> T {
        match self.try_wait(timeout, check) {
            Ok(found) => found,
            Err(why) => panic!("{why} waiting for {what}; items so far:\n{}", self.dump()),
        }
    }

    /// Like [`wait`](Self::wait), but says why it gave up (timed out, stream ended) instead of
    /// failing the test, so the caller can report more.
    pub fn try_wait<T>(
        &mut self,
        timeout: Duration,
        mut check: impl FnMut(&[Item]) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.items) {
                return Ok(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out after {timeout:?}"));
            }
            if self.ended {
                return Err("the firehose ended".to_owned());
            }
            let slice_end = (now + RECHECK).min(deadline);
            match self.feed.read_until(slice_end) {
                Got::Item(item) => {
                    self.push(item);
                    while let Some(item) = self.feed.try_read() {
                        self.push(item);
                    }
                }
                Got::Ended => self.ended = true,
                Got::Nothing => {}
            }
        }
    }

    /// Reads what is left after the flume was closed, until the stream ends (at most `timeout`).
    pub fn drain_to_end(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.ended {
            match self.feed.read_until(deadline) {
                Got::Item(item) => self.push(item),
                Got::Ended => self.ended = true,
                Got::Nothing => panic!(
                    "the firehose did not end within {timeout:?} after close; items:\n{}",
                    self.dump()
                ),
            }
        }
        if let Feed::Stream(stream) = &self.feed {
            assert_eq!(stream.dropped(), 0, "the stream dropped items");
        }
    }

    /// The events of `source`, in order.
    pub fn events(&self, source: &str) -> Vec<&openflume_proto::Event> {
        events_of(&self.items, source)
    }

    /// The events of `source` and `event_type`, in order.
    pub fn events_of_type(&self, source: &str, event_type: &str) -> Vec<&openflume_proto::Event> {
        events_of(&self.items, source)
            .into_iter()
            .filter(|e| e.event_type == event_type)
            .collect()
    }

    /// Every item as a JSON line, for failure messages.
    pub fn dump(&self) -> String {
        dump(&self.items)
    }
}

/// The events of `source` among `items`, in order.
pub fn events_of<'a>(items: &'a [Item], source: &str) -> Vec<&'a openflume_proto::Event> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event(e) if e.source == source => Some(e),
            _ => None,
        })
        .collect()
}

/// True when a status log of `source` reaching `to` is among `items`.
pub fn has_status(items: &[Item], source: &str, to: &str) -> bool {
    items.iter().any(|item| is_status(item, source, to))
}

/// Items as JSON lines (long data cut), for failure messages.
pub fn dump(items: &[Item]) -> String {
    items
        .iter()
        .map(|item| cut(serde_json::to_string(item).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A field of an event's data, parsed.
pub fn data_field(event: &openflume_proto::Event, pointer: &str) -> Option<serde_json::Value> {
    event.data.parse().ok()?.pointer(pointer).cloned()
}

/// A Discord simulator with `config`, identify spacing off (tests identify at will).
pub fn discord_sim(config: openflume_sim::DiscordSimConfig) -> openflume_sim::DiscordSim {
    let config = openflume_sim::DiscordSimConfig {
        identify_spacing: Duration::ZERO,
        ..config
    };
    block_on(
        Duration::from_secs(10),
        "start the Discord simulator",
        openflume_sim::DiscordSim::start(config),
    )
    .expect("the Discord simulator starts")
}

/// The environment that points `openflume listen` at a Discord simulator.
pub fn discord_env(sim: &openflume_sim::DiscordSim) -> Vec<(&'static str, String)> {
    vec![
        ("DISCORD_BOT_TOKEN", sim.token().to_owned()),
        ("OPENFLUME_DISCORD_API_URL", sim.api_url()),
    ]
}

/// `openflume listen` with JSON output and the fastest reconnects the floor allows.
const LISTEN: &[&str] = &[
    "listen",
    "--format",
    "json",
    "--reconnect-base-ms",
    "250",
    "--reconnect-max-ms",
    "500",
];

/// Starts `openflume listen --format json …` with `extra` flags and `env`, its stdout read as
/// `reader` says.
pub fn listen(extra: &[&str], env: &[(&str, String)], reader: Reader) -> Openflume {
    let all: Vec<&str> = LISTEN.iter().chain(extra).copied().collect();
    Openflume::spawn_with(&all, env, reader)
}

/// Every record in the durable log in `dir`, read while another process may be appending; none
/// while there is no log yet.
pub fn logged(dir: &std::path::Path) -> Vec<openflume_log::Record> {
    use openflume_log::{EventId, Filter, LogReader};
    let Ok(reader) = LogReader::open(dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    let mut after = EventId(0);
    loop {
        let batch = reader
            .read_after(after, 10_000, &Filter::default())
            .expect("read the log");
        let Some(last) = batch.last() else {
            return records;
        };
        after = last.event_id;
        records.extend(batch.into_iter().map(|entry| entry.record));
    }
}
