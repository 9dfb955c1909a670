//! Helpers for the cross-crate integration tests in `tests/`: run the `openflume` binary, read
//! its JSON Lines as they come, and wait for items with a timeout instead of sleeping.

// Test helpers fail the test by panicking: that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::Item;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

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

/// A running `openflume` process whose stdout lines and stderr are collected as they arrive.
pub struct Openflume {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Openflume {
    /// Starts `openflume <args>` with `env` added and no inherited credentials.
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Openflume {
        let mut command = Command::new(openflume_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
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
        ] {
            command.env_remove(var);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn openflume");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (tx, stderr) = channel();
        let mut err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        Openflume {
            child,
            lines,
            stderr,
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

    /// Reads lines until one parses as a `T` (`what`, for the panic messages) that `pred`
    /// accepts; panics after `timeout`, on a line that does not parse, or if the process exits.
    fn wait_for_line<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&T) -> bool,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let parsed: T = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("stdout line does not parse as {what} ({e}): {line}")
                    });
                    if pred(&parsed) {
                        return parsed;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching {what} line within {timeout:?}; lines so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "openflume exited before a matching {what} line; lines:\n{}\nstderr: {}",
                    self.seen.join("\n"),
                    self.stderr
                        .recv_timeout(Duration::from_secs(1))
                        .unwrap_or_default()
                ),
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill failed");
    }

    /// Waits for the exit (at most `timeout`, then kills it and panics); returns the status and
    /// the remaining stdout lines and the whole stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut lines = std::mem::take(&mut self.seen);
                lines.extend(self.lines.iter());
                panic!(
                    "openflume did not exit within {timeout:?}; lines:\n{}\nstderr: {}",
                    lines.join("\n"),
                    self.stderr
                        .recv_timeout(Duration::from_secs(1))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = std::mem::take(&mut self.seen);
        rest.extend(self.lines.iter());
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (status, rest, stderr)
    }
}

impl Drop for Openflume {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        .map(|item| {
            let mut line = serde_json::to_string(item).unwrap_or_default();
            if line.len() > 300 {
                let mut end = 300;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                line.truncate(end);
                line.push('…');
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A field of an event's data, parsed.
pub fn data_field(event: &openflume_proto::Event, pointer: &str) -> Option<serde_json::Value> {
    event.data.parse().ok()?.pointer(pointer).cloned()
}
