//! The Gateway session a connection may resume: `session_id` and `resume_gateway_url` from READY,
//! and the last dispatch sequence number.
//!
//! A session is resumable only with all three: a READY missing `session_id` or
//! `resume_gateway_url` leaves nothing to resume, so the next connection identifies instead of
//! sending a RESUME with an empty id.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Consecutive RESUMEs that may fail before the machine gives the session up and identifies.
pub(crate) const MAX_FAILED_RESUMES: u32 = 3;

/// A resumable session, handed out after `Shutdown { keep_session: true }` and accepted in
/// [`DiscordConfig::resume`](super::DiscordConfig::resume) to pick the session up after a
/// restart (within the few minutes Discord keeps it).
///
/// Its `Debug` hides the session id: together with the token it takes over the session.
///
/// ```
/// use openflume_proto::discord::ResumeState;
/// let state = ResumeState {
///     session_id: "0123456789abcdef".into(),
///     resume_gateway_url: "wss://gateway-us-east1-b.discord.gg".into(),
///     seq: 42,
/// };
/// let text = format!("{state:?}");
/// assert!(!text.contains("0123456789abcdef"));
/// assert!(text.contains("seq: 42"));
/// let json = serde_json::to_string(&state).unwrap();
/// assert_eq!(serde_json::from_str::<ResumeState>(&json).unwrap(), state);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    /// `session_id` from READY.
    pub session_id: String,
    /// `resume_gateway_url` from READY, as given (the machine adds the query).
    pub resume_gateway_url: String,
    /// The last dispatch sequence number received.
    pub seq: u64,
}

impl fmt::Debug for ResumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeState")
            .field("session_id", &"[redacted]")
            .field("resume_gateway_url", &self.resume_gateway_url)
            .field("seq", &self.seq)
            .finish()
    }
}

/// What the machine knows of its session.
#[derive(Clone, Default)]
pub(crate) struct Session {
    id: Option<String>,
    resume_url: Option<String>,
    seq: Option<u64>,
    /// The resume URL failed to connect: resume through the original URL instead.
    resume_url_unreachable: bool,
    /// RESUMEs sent since the last READY or RESUMED.
    failed_resumes: u32,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id.as_ref().map(|_| "[redacted]"))
            .field("resume_url", &self.resume_url)
            .field("seq", &self.seq)
            .field("resume_url_unreachable", &self.resume_url_unreachable)
            .field("failed_resumes", &self.failed_resumes)
            .finish()
    }
}

impl Session {
    /// A session restored from a previous run.
    pub(crate) fn restore(state: ResumeState) -> Session {
        Session {
            id: Some(state.session_id),
            resume_url: Some(state.resume_gateway_url),
            seq: Some(state.seq),
            ..Session::default()
        }
    }

    /// The session to resume, if there is one.
    pub(crate) fn resume_state(&self) -> Option<ResumeState> {
        Some(ResumeState {
            session_id: self.id.clone()?,
            resume_gateway_url: self.resume_url.clone()?,
            seq: self.seq?,
        })
    }

    /// True when the next connection can RESUME.
    pub(crate) fn is_resumable(&self) -> bool {
        self.id.is_some() && self.resume_url.is_some() && self.seq.is_some()
    }

    /// The URL to resume on: `None` when it failed to connect (use the original URL).
    pub(crate) fn resume_url(&self) -> Option<&str> {
        self.resume_url
            .as_deref()
            .filter(|_| !self.resume_url_unreachable)
    }

    /// The resume URL failed to connect.
    pub(crate) fn resume_url_failed(&mut self) {
        self.resume_url_unreachable = true;
    }

    /// The last sequence number.
    pub(crate) fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// A dispatch with sequence `s` arrived. Sequence numbers only move forward.
    pub(crate) fn observe_seq(&mut self, s: u64) {
        self.seq = Some(self.seq.map_or(s, |seq| seq.max(s)));
    }

    /// READY started a session; both fields are needed for it to be resumable.
    pub(crate) fn ready(&mut self, id: Option<String>, resume_url: Option<String>) {
        self.id = id.filter(|id| !id.is_empty());
        self.resume_url = resume_url.filter(|url| !url.is_empty());
        self.resume_url_unreachable = false;
        self.failed_resumes = 0;
    }

    /// RESUMED: the session is live again.
    pub(crate) fn resumed(&mut self) {
        self.failed_resumes = 0;
    }

    /// A RESUME is going out.
    pub(crate) fn resume_sent(&mut self) {
        self.failed_resumes = self.failed_resumes.saturating_add(1);
    }

    /// True when enough RESUMEs failed in a row that identifying is the better bet.
    pub(crate) fn resumes_exhausted(&self) -> bool {
        self.failed_resumes >= MAX_FAILED_RESUMES
    }

    /// Forgets everything: the next connection identifies.
    pub(crate) fn clear(&mut self) {
        *self = Session::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumable_needs_id_url_and_seq() {
        let mut session = Session::default();
        assert!(!session.is_resumable());
        session.observe_seq(1);
        session.ready(None, Some("wss://r".into()));
        assert!(!session.is_resumable());
        session.ready(Some(String::new()), Some("wss://r".into()));
        assert!(!session.is_resumable(), "an empty id is no id");
        session.ready(Some("abc".into()), None);
        assert!(!session.is_resumable());
        session.ready(Some("abc".into()), Some("wss://r".into()));
        assert!(session.is_resumable());
        assert_eq!(session.resume_state().map(|s| s.seq), Some(1));
        session.observe_seq(5);
        session.observe_seq(3);
        assert_eq!(session.seq(), Some(5), "never backwards");
        session.clear();
        assert!(session.resume_state().is_none());
        assert_eq!(session.seq(), None);
    }

    #[test]
    fn resume_url_fallback_and_failed_resumes() {
        let mut session = Session::restore(ResumeState {
            session_id: "abc".into(),
            resume_gateway_url: "wss://r".into(),
            seq: 9,
        });
        assert_eq!(session.resume_url(), Some("wss://r"));
        session.resume_url_failed();
        assert_eq!(session.resume_url(), None);
        assert!(
            session.is_resumable(),
            "still resumable through the original URL"
        );
        for _ in 0..MAX_FAILED_RESUMES {
            assert!(!session.resumes_exhausted());
            session.resume_sent();
        }
        assert!(session.resumes_exhausted());
        session.resumed();
        assert!(!session.resumes_exhausted());
        assert!(!format!("{session:?}").contains("abc"));
    }
}
