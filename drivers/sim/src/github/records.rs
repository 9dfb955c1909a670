//! What the GitHub simulator saw, for the tests to assert on.

use crate::records::Records;
use std::time::Duration;

/// A request the GitHub simulator answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubRequest {
    /// When, since the simulator started.
    pub at: Duration,
    /// `GET`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// `If-Modified-Since` as sent.
    pub if_modified_since: Option<String>,
    /// `If-None-Match` as sent.
    pub if_none_match: Option<String>,
    /// Whether the token was right.
    pub authorized: bool,
    /// The status sent; `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// Whether it counted against the rate limit.
    pub counted: bool,
    /// `x-ratelimit-remaining` sent.
    pub remaining: Option<u32>,
}

/// Everything the GitHub simulator saw.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GithubRecords {
    /// Requests, in arrival order.
    pub requests: Records<GithubRequest>,
}

impl GithubRecords {
    /// The statuses sent, in order (`None` for a dropped connection).
    pub fn statuses(&self) -> Vec<Option<u16>> {
        self.requests.iter().map(|r| r.status).collect()
    }
}

/// A thread as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubThread {
    /// The thread id.
    pub id: String,
    /// Its `updated_at`.
    pub updated_at: String,
    /// Its `unread`.
    pub unread: bool,
    /// Its `reason`.
    pub reason: String,
}
