//! The Web API side: `apps.connections.open` (single-use tickets) and `auth.test`, Slack's
//! error bodies, and the ticket check of a Socket Mode upgrade.

use super::Slack;
use crate::fake;
use crate::server::{Answer, Reply, bearer, query_value, split_target};
use openflume_proto::http::ReceivedRequest;
use serde_json::json;

/// Tickets remembered, at most (used ones are forgotten first).
const MAX_TICKETS: usize = 10_000;

/// An `apps.connections.open` answer that gives no usable Socket Mode URL, injected with
/// [`SlackAction::ConnectionsOpen`](super::SlackAction::ConnectionsOpen): the causes a client must
/// name instead of saying "connecting" until its start times out.
///
/// ```
/// use openflume_sim::{OpenAnswer, SlackAction};
/// let fault = SlackAction::ConnectionsOpen { answer: OpenAnswer::NoUrl, times: 3 };
/// assert_eq!(OpenAnswer::HttpUrl.body("127.0.0.1:1"), r#"{"ok":true,"url":"http://127.0.0.1:1/link/?ticket=t"}"#);
/// # drop(fault);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenAnswer {
    /// `{"ok":true}`: no `url` at all.
    NoUrl,
    /// An `http://` URL instead of `ws://` or `wss://`.
    HttpUrl,
    /// A `url` that is not a URL.
    GarbageUrl,
    /// A number where the URL string should be.
    NumberUrl,
    /// HTTP 200 with an HTML page (a captive portal, a proxy's error page).
    Html,
    /// A `wss://` URL on a port where nothing listens (127.0.0.1:1): the connect fails.
    Unreachable,
}

impl OpenAnswer {
    /// The response body; `addr` is the simulator's own address, for the `http://` URL.
    pub fn body(self, addr: &str) -> String {
        match self {
            OpenAnswer::NoUrl => r#"{"ok":true}"#.to_owned(),
            OpenAnswer::HttpUrl => format!(r#"{{"ok":true,"url":"http://{addr}/link/?ticket=t"}}"#),
            OpenAnswer::GarbageUrl => r#"{"ok":true,"url":"::not a url::"}"#.to_owned(),
            OpenAnswer::NumberUrl => r#"{"ok":true,"url":12345}"#.to_owned(),
            OpenAnswer::Html => "<html><body>Sign in to the network</body></html>".to_owned(),
            OpenAnswer::Unreachable => {
                r#"{"ok":true,"url":"wss://127.0.0.1:1/link/?ticket=t"}"#.to_owned()
            }
        }
    }
}

impl Slack {
    /// Answers a Web API request, or with an injected fault.
    pub(super) async fn rest(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        let path = path.to_owned();
        let record = |status| self.core.record_http(&request.method, &path, status);
        if let Some(answer) = self.core.apply_fault(Slack::error_reply, record).await {
            return answer;
        }
        let reply = match (request.method.as_str(), path.as_str()) {
            ("GET" | "POST", "/api/apps.connections.open") => self.connections_open(&request),
            ("GET" | "POST", "/api/auth.test") => self.auth_test(&request),
            _ => Reply::json(404, r#"{"ok":false,"error":"unknown_method"}"#),
        };
        let request_id = fake::hex(&mut self.lock().rng, 32);
        let reply = reply.header("x-slack-req-id", request_id);
        self.core
            .record_http(&request.method, &path, Some(reply.status));
        Answer::Reply(reply)
    }

    /// Slack's answer for a fault status.
    pub(super) fn error_reply(status: u16, retry_after: Option<u64>) -> Reply {
        let error = match status {
            429 => "ratelimited",
            401 => "invalid_auth",
            500..=599 => "internal_error",
            _ => "request_error",
        };
        let reply = Reply::json(status, format!(r#"{{"ok":false,"error":"{error}"}}"#));
        match retry_after {
            Some(seconds) => reply.header("Retry-After", seconds.to_string()),
            None => reply,
        }
    }

    pub(super) fn api_error(error: &str) -> Reply {
        Reply::json(200, json!({"ok": false, "error": error}).to_string())
    }

    pub(super) fn connections_open(&self, request: &ReceivedRequest) -> Reply {
        let Some(token) = bearer(request, &["Bearer"]) else {
            return Slack::api_error("not_authed");
        };
        if token != self.config.app_token.expose() {
            return Slack::api_error(
                if token.starts_with("xoxb-") || token.starts_with("xoxp-") {
                    "not_allowed_token_type"
                } else {
                    "invalid_auth"
                },
            );
        }
        let mut state = self.lock();
        if let Some((answer, times)) = state.open_answers.front_mut() {
            let answer = *answer;
            *times -= 1;
            if *times == 0 {
                state.open_answers.pop_front();
            }
            let body = answer.body(&self.addr.to_string());
            return if answer == OpenAnswer::Html {
                let mut reply =
                    Reply::empty(200).header("Content-Type", "text/html; charset=utf-8");
                reply.body = body.into_bytes();
                reply
            } else {
                Reply::json(200, body)
            };
        }
        if let Some((error, times)) = state.api_errors.front_mut() {
            let error = error.clone();
            *times -= 1;
            if *times == 0 {
                state.api_errors.pop_front();
            }
            return Slack::api_error(&error);
        }
        if state.tickets.len() >= MAX_TICKETS {
            state.tickets.retain(|_, used| !*used);
            if state.tickets.len() >= MAX_TICKETS {
                // A client that asks for URLs it never uses: the old tickets expire.
                state.tickets.clear();
            }
        }
        let ticket = fake::uuid(&mut state.rng);
        state.tickets.insert(ticket.clone(), false);
        let url = format!(
            "ws://{}/link/?ticket={ticket}&app_id={}",
            self.addr, self.config.app_id
        );
        Reply::json(200, json!({"ok": true, "url": url}).to_string())
    }

    pub(super) fn auth_test(&self, request: &ReceivedRequest) -> Reply {
        match bearer(request, &["Bearer"]) {
            None => Slack::api_error("not_authed"),
            Some(token) if token == self.config.bot_token.expose() => Reply::json(
                200,
                json!({
                    "ok": true,
                    "url": "https://openflume-sim.slack.com/",
                    "team": "openflume sim",
                    "user": "openflume",
                    "team_id": self.config.team_id,
                    "user_id": self.config.bot_user_id,
                    "bot_id": self.config.bot_id,
                    "is_enterprise_install": false
                })
                .to_string(),
            ),
            Some(_) => Slack::api_error("invalid_auth"),
        }
    }

    /// Lets a Socket Mode upgrade through with an unused ticket for `/link`.
    pub(super) fn check_ticket(&self, request: &ReceivedRequest) -> Result<(), Reply> {
        let (path, query) = split_target(&request.target);
        let refusal = if path.trim_end_matches('/') != "/link" {
            Some(Reply::json(404, r#"{"ok":false,"error":"not_found"}"#))
        } else {
            let ticket = query_value(&query, "ticket").unwrap_or_default();
            let mut state = self.lock();
            match state.tickets.get_mut(ticket) {
                Some(used) if !*used => {
                    *used = true;
                    None
                }
                Some(_) => Some(Reply::json(
                    409,
                    r#"{"ok":false,"error":"ticket_already_used"}"#,
                )),
                None => Some(Reply::json(401, r#"{"ok":false,"error":"invalid_ticket"}"#)),
            }
        };
        match refusal {
            Some(reply) => {
                self.core
                    .record_http(&request.method, path, Some(reply.status));
                Err(reply)
            }
            None => Ok(()),
        }
    }
}
