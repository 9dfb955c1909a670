//! The typed view of a `notification` event: the fields the poller itself routes on, read from
//! the event's data on demand (the data stays the thread exactly as GitHub sent it).

use super::wire;
use crate::Event;
use serde_json::value::RawValue;

/// One notification thread, as leniently as the poller reads it: only `id` and `updated_at` are
/// required; any other field that is absent or of an unexpected type is `None`, and fields this
/// view does not name are ignored (they are still in [`Event::data`]).
///
/// `#[non_exhaustive]`: later versions may name more fields.
///
/// ```
/// use openflume_proto::{Event, RawJson, UnixMillis};
/// let data = RawJson::from_str(r#"{"id":"1","updated_at":"2026-12-05T08:00:00Z","reason":"mention",
///     "subject":{"type":"Issue","url":"https://api.github.com/repos/o/r/issues/7","title":"Flaky"},
///     "repository":{"full_name":"o/r"},"unread":true}"#).unwrap();
/// let event = Event::new("github", "notification", data, UnixMillis(0));
/// let thread = event.github_notification().unwrap();
/// assert_eq!((thread.id.as_str(), thread.reason.as_deref()), ("1", Some("mention")));
/// assert_eq!(thread.repository.as_deref(), Some("o/r"));
/// assert_eq!(thread.subject_type.as_deref(), Some("Issue"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GithubNotification {
    /// The thread id, as text even when the server sent a number.
    pub id: String,
    /// `updated_at`, verbatim (with `id`, the poller's dedup key).
    pub updated_at: String,
    /// Why you were notified: `mention`, `review_requested`, `assign`, … (an open set).
    pub reason: Option<String>,
    /// `subject.type`: `Issue`, `PullRequest`, `Release`, `Discussion`, … (an open set).
    pub subject_type: Option<String>,
    /// `subject.url`, the API URL of the subject; `None` for discussions.
    pub subject_url: Option<String>,
    /// `repository.full_name`, `owner/name`.
    pub repository: Option<String>,
}

impl Event {
    /// The notification thread of a GitHub poller event (source `github`, type `notification`);
    /// `None` for any other event, or when `id` or `updated_at` is missing. Parsed from
    /// [`Event::data`] on each call.
    ///
    /// ```
    /// use openflume_proto::{Event, RawJson, UnixMillis};
    /// let tick = Event::new("time", "tick", RawJson::null(), UnixMillis(0));
    /// assert_eq!(tick.github_notification(), None);
    /// let no_id = Event::new("github", "notification", RawJson::from_str(r#"{"updated_at":"x"}"#).unwrap(), UnixMillis(0));
    /// assert_eq!(no_id.github_notification(), None);
    /// ```
    pub fn github_notification(&self) -> Option<GithubNotification> {
        if self.source != super::SOURCE || self.event_type != "notification" {
            return None;
        }
        let raw: &RawValue = serde_json::from_str(self.data.get()).ok()?;
        let thread = wire::thread(raw).ok()?;
        Some(GithubNotification {
            id: thread.id.into_owned(),
            updated_at: thread.updated_at.into_owned(),
            reason: thread.reason.map(Into::into),
            subject_type: thread.subject_type.map(Into::into),
            subject_url: thread.subject_url.map(Into::into),
            repository: thread.repository.map(Into::into),
        })
    }
}
