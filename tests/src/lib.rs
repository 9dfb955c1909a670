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
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&Item) -> bool) -> Item {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let item: Item = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not an item ({e}): {line}"));
                    if pred(&item) {
                        return item;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching item within {timeout:?}; lines so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "openflume exited before a matching item; lines:\n{}\nstderr: {}",
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
                panic!(
                    "openflume did not exit within {timeout:?}; lines:\n{}",
                    self.seen.join("\n")
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

/// True for an event of `source` and `event_type`.
pub fn is_event(item: &Item, source: &str, event_type: &str) -> bool {
    matches!(item, Item::Event(e) if e.source == source && e.event_type == event_type)
}

/// True for a status log of `source` reaching `to`.
pub fn is_status(item: &Item, source: &str, to: &str) -> bool {
    matches!(item, Item::Log(l) if l.source == source && l.action == "status"
        && l.detail.as_ref().and_then(|d| d.get("to")).and_then(|t| t.as_str()) == Some(to))
}
