//! Source status and its transitions, reported as `status` logs.

use crate::{Level, Log, UnixMillis};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a source is in its life.
///
/// ```
/// use openflume_proto::Status;
/// assert_eq!(Status::Reconnecting.to_string(), "reconnecting");
/// ```
///
/// `#[non_exhaustive]`: a match outside this crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume_proto::Status;
/// fn up(status: Status) -> bool {
///     match status {
///         Status::Connected => true,
///         Status::Idle | Status::Connecting | Status::Reconnecting | Status::Disconnected | Status::Failed => false,
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Built, not started.
    #[default]
    Idle,
    /// First connection attempt in progress.
    Connecting,
    /// Receiving events.
    Connected,
    /// Lost the connection (or backing off after errors) and trying again.
    Reconnecting,
    /// Stopped cleanly.
    Disconnected,
    /// Stopped for good: bad credentials, a fatal close code, retries exhausted.
    Failed,
}

impl Status {
    /// The lowercase name used on the wire.
    ///
    /// ```
    /// use openflume_proto::Status;
    /// assert_eq!(Status::Connected.as_str(), "connected");
    /// assert_eq!(serde_json::to_string(&Status::Failed).unwrap(), r#""failed""#);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Reconnecting => "reconnecting",
            Status::Disconnected => "disconnected",
            Status::Failed => "failed",
        }
    }

    /// True for the states a source never leaves.
    ///
    /// ```
    /// use openflume_proto::Status;
    /// assert!(Status::Disconnected.is_terminal());
    /// assert!(Status::Failed.is_terminal());
    /// assert!(!Status::Reconnecting.is_terminal());
    /// ```
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Disconnected | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition, with the reason in words when there is one.
///
/// ```
/// use openflume_proto::{Status, StatusChange, UnixMillis};
/// let change = StatusChange { from: Status::Connecting, to: Status::Connected, reason: None };
/// let log = change.to_log("discord", UnixMillis(1));
/// assert_eq!(log.message, "connecting → connected");
/// assert_eq!(log.detail.unwrap()["reason"], serde_json::Value::Null);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Previous status.
    pub from: Status,
    /// New status.
    pub to: Status,
    /// Why, when it is not obvious (`HTTP 502`, `close 4004: authentication failed`).
    pub reason: Option<String>,
}

impl StatusChange {
    /// The `status` log for this change: `"<from> → <to>"` plus `" (<reason>)"`, at a level that
    /// matches the destination (error for failed, warn for reconnecting).
    ///
    /// ```
    /// use openflume_proto::{Level, Status, StatusChange, UnixMillis};
    /// let change = StatusChange {
    ///     from: Status::Connected,
    ///     to: Status::Failed,
    ///     reason: Some("close 4004: authentication failed".into()),
    /// };
    /// let log = change.to_log("discord", UnixMillis(0));
    /// assert_eq!(log.level, Level::Error);
    /// assert_eq!(log.message, "connected → failed (close 4004: authentication failed)");
    /// assert_eq!(log.error.as_deref(), Some("close 4004: authentication failed"));
    /// ```
    pub fn to_log(&self, source: &str, timestamp: UnixMillis) -> Log {
        let message = match &self.reason {
            Some(reason) => format!("{} → {} ({reason})", self.from, self.to),
            None => format!("{} → {}", self.from, self.to),
        };
        let level = match self.to {
            Status::Failed => Level::Error,
            Status::Reconnecting => Level::Warn,
            _ => Level::Info,
        };
        let mut log = Log::new(level, source, "status", message, timestamp).with_detail(
            serde_json::json!({"from": self.from, "to": self.to, "reason": self.reason}),
        );
        if self.to == Status::Failed {
            log.error = self.reason.clone();
        }
        log
    }
}

/// Remembers the current status and reports only real transitions: a repeated
/// `(status, reason)` pair yields nothing.
///
/// ```
/// use openflume_proto::{Status, StatusTracker};
/// let mut tracker = StatusTracker::default();
/// assert!(tracker.set(Status::Connecting, None).is_some());
/// assert!(tracker.set(Status::Connecting, None).is_none());
/// assert_eq!(tracker.current(), Status::Connecting);
/// ```
#[derive(Clone, Debug, Default)]
pub struct StatusTracker {
    current: Status,
    reason: Option<String>,
}

impl StatusTracker {
    /// Moves to `to`; returns the change unless nothing changed. A new reason alone is a change.
    ///
    /// ```
    /// use openflume_proto::{Status, StatusTracker};
    /// let mut tracker = StatusTracker::default();
    /// let change = tracker.set(Status::Connecting, None).unwrap();
    /// assert_eq!((change.from, change.to), (Status::Idle, Status::Connecting));
    /// let retry = tracker.set(Status::Connecting, Some("HTTP 502".into()));
    /// assert_eq!(retry.unwrap().from, Status::Connecting);
    /// ```
    pub fn set(&mut self, to: Status, reason: Option<String>) -> Option<StatusChange> {
        if self.current == to && self.reason == reason {
            return None;
        }
        let from = std::mem::replace(&mut self.current, to);
        self.reason = reason.clone();
        Some(StatusChange { from, to, reason })
    }

    /// The current status.
    ///
    /// ```
    /// use openflume_proto::{Status, StatusTracker};
    /// let mut tracker = StatusTracker::default();
    /// assert_eq!(tracker.current(), Status::Idle);
    /// tracker.set(Status::Connected, None);
    /// assert_eq!(tracker.current(), Status::Connected);
    /// ```
    pub fn current(&self) -> Status {
        self.current
    }

    /// The reason given with the current status.
    ///
    /// ```
    /// use openflume_proto::{Status, StatusTracker};
    /// let mut tracker = StatusTracker::default();
    /// tracker.set(Status::Reconnecting, Some("HTTP 502".into()));
    /// assert_eq!(tracker.reason(), Some("HTTP 502"));
    /// tracker.set(Status::Connected, None);
    /// assert_eq!(tracker.reason(), None);
    /// ```
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}
