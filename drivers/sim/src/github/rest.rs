//! `GET /notifications` as GitHub answers it: filters, pages and `Link`, validators and 304,
//! the rate limits, and GitHub's error bodies.

use super::{Github, GithubRequest, Thread};
use crate::fake;
use crate::server::{Answer, Reply, bearer, query_value, reason_phrase, split_target};
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use serde_json::{Value, json};

/// GitHub's body for a secondary rate limit.
const SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.";
/// Largest `per_page` the notifications endpoint honours.
const MAX_PER_PAGE: usize = 50;
/// GitHub's limit for unauthenticated requests, shown on 401s.
pub(super) const UNAUTHENTICATED_LIMIT: u32 = 60;
const DOCS: &str = "https://docs.github.com/rest/activity/notifications#list-notifications-for-the-authenticated-user";
/// Reasons that count as participating (`participating=true`).
pub(super) const PARTICIPATING: &[&str] = &[
    "approval_requested",
    "assign",
    "author",
    "comment",
    "invitation",
    "manual",
    "mention",
    "review_requested",
    "state_change",
    "team_mention",
];

/// What a request asked for.
pub(super) struct Query {
    all: bool,
    participating: bool,
    since: Option<Timestamp>,
    before: Option<Timestamp>,
    per_page: usize,
    page: usize,
}

impl Query {
    /// Reads the query the way GitHub does; a bad `since`/`before` is an error message.
    fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
        let flag = |key: &str| query_value(pairs, key) == Some("true");
        let time = |key: &str| match query_value(pairs, key) {
            None => Ok(None),
            Some(text) => text.parse::<Timestamp>().map(Some).map_err(|_| {
                format!("Invalid value for `{key}`: {text:?} is not an ISO 8601 timestamp")
            }),
        };
        let number = |key: &str| {
            query_value(pairs, key)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        Ok(Query {
            all: flag("all"),
            participating: flag("participating"),
            since: time("since")?,
            before: time("before")?,
            per_page: number("per_page").unwrap_or(MAX_PER_PAGE).min(MAX_PER_PAGE),
            page: number("page").unwrap_or(1),
        })
    }
}

impl Github {
    /// Answers a request: `GET /notifications`, 404 for anything else, or an injected fault.
    pub(super) async fn rest(&self, request: ReceivedRequest) -> Answer {
        self.core.first_client.fire();
        let authorized = bearer(&request, &["Bearer", "token"]) == Some(self.config.token.expose());
        let record = |status: Option<u16>| {
            self.record(
                &request,
                status.is_some() && authorized,
                status,
                false,
                None,
            );
        };
        let fault = |status, retry_after| self.fault_reply(status, retry_after);
        if let Some(answer) = self.core.apply_fault(fault, record).await {
            return answer;
        }
        let (path, _) = split_target(&request.target);
        let (reply, counted, authorized) =
            match (request.method.as_str(), path.trim_end_matches('/')) {
                ("GET", "/notifications") => self.notifications(&request),
                _ => (Github::error(404, "Not Found"), false, false),
            };
        let request_id = {
            let mut state = self.lock();
            format!(
                "{}:{}:{}:{}:{}",
                fake::hex(&mut state.rng, 4).to_uppercase(),
                fake::hex(&mut state.rng, 5).to_uppercase(),
                fake::hex(&mut state.rng, 7).to_uppercase(),
                fake::hex(&mut state.rng, 7).to_uppercase(),
                fake::hex(&mut state.rng, 8).to_uppercase()
            )
        };
        let remaining = reply
            .headers
            .iter()
            .find(|(name, _)| name == "x-ratelimit-remaining")
            .and_then(|(_, value)| value.parse().ok());
        self.record(&request, authorized, Some(reply.status), counted, remaining);
        Answer::Reply(
            reply
                .header("X-GitHub-Request-Id", request_id)
                .header("Server", "github.com"),
        )
    }

    pub(super) fn record(
        &self,
        request: &ReceivedRequest,
        authorized: bool,
        status: Option<u16>,
        counted: bool,
        remaining: Option<u32>,
    ) {
        let (path, _) = split_target(&request.target);
        let query = request
            .target
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default();
        let record = GithubRequest {
            at: self.core.since_start(),
            method: request.method.clone(),
            path: path.to_owned(),
            query,
            if_modified_since: request.header("If-Modified-Since").map(str::to_owned),
            if_none_match: request.header("If-None-Match").map(str::to_owned),
            authorized,
            status,
            counted,
            remaining,
        };
        self.lock().records.requests.push(record);
    }

    /// GitHub's error body.
    pub(super) fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"message": message, "documentation_url": DOCS, "status": status.to_string()})
                .to_string(),
        )
    }

    pub(super) fn fault_reply(&self, status: u16, retry_after: Option<u64>) -> Reply {
        let reply = match status {
            401 => Github::error(401, "Bad credentials"),
            403 => Github::error(403, "Resource not accessible by personal access token"),
            422 => Github::error(422, "Validation Failed"),
            429 => Github::error(429, SECONDARY),
            500..=599 => Reply::json(status, r#"{"message":"Server Error"}"#),
            _ => Github::error(status, reason_phrase(status)),
        };
        let reply = match retry_after {
            Some(seconds) => reply.header("retry-after", seconds.to_string()),
            None => reply,
        };
        if status < 500 {
            self.lock().budget.headers(reply)
        } else {
            reply
        }
    }

    /// Answers `GET /notifications`; returns the reply, whether it counted, and whether the
    /// token was right.
    pub(super) fn notifications(&self, request: &ReceivedRequest) -> (Reply, bool, bool) {
        let now = Timestamp::now();
        let window = self.config.rate_window;
        let mut guard = self.lock();
        let state = &mut *guard;
        state.budget.refresh(window, now);
        state.unauthenticated.refresh(window, now);
        let Some(token) = bearer(request, &["Bearer", "token"]) else {
            state.unauthenticated.used = state.unauthenticated.used.saturating_add(1);
            let reply = state
                .unauthenticated
                .headers(Github::error(401, "Requires authentication"));
            return (reply, false, false);
        };
        if token != self.config.token.expose() {
            state.unauthenticated.used = state.unauthenticated.used.saturating_add(1);
            let reply = state
                .unauthenticated
                .headers(Github::error(401, "Bad credentials"));
            return (reply, false, false);
        }
        if let Some((retry_after, times)) = state.secondary.first_mut() {
            let retry_after = *retry_after;
            *times -= 1;
            if *times == 0 {
                state.secondary.remove(0);
            }
            let reply = state.budget.headers(Github::error(403, SECONDARY));
            let reply = match retry_after {
                Some(seconds) => reply.header("retry-after", seconds.to_string()),
                None => reply,
            };
            return (reply, false, true);
        }
        if state.budget.remaining() == 0 {
            let message = "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.";
            return (
                state.budget.headers(Github::error(403, message)),
                false,
                true,
            );
        }
        let (_, pairs) = split_target(&request.target);
        let query = match Query::parse(&pairs) {
            Ok(query) => query,
            Err(message) => {
                state.budget.used += 1;
                return (
                    state.budget.headers(Github::error(422, &message)),
                    true,
                    true,
                );
            }
        };
        let selected: Vec<&Thread> = state
            .sorted()
            .into_iter()
            .filter(|t| query.all || t.unread)
            .filter(|t| !query.participating || PARTICIPATING.contains(&t.reason))
            .filter(|t| query.since.is_none_or(|since| t.updated_at > since))
            .filter(|t| query.before.is_none_or(|before| t.updated_at < before))
            .collect();
        let pages = selected.len().div_ceil(query.per_page).max(1);
        let start = (query.page - 1).saturating_mul(query.per_page);
        let items: Vec<Value> = selected
            .iter()
            .skip(start)
            .take(query.per_page)
            .map(|t| self.render(t))
            .collect();
        let body = Value::Array(items).to_string();
        let etag = format!(
            "W/\"{:016x}{:016x}\"",
            fake::fnv1a(body.as_bytes()),
            fake::fnv1a(request.target.as_bytes())
        );
        let last_modified = fake::http_date(state.last_modified);
        let not_modified = match request.header("If-None-Match") {
            Some(tags) => tags.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
            }),
            None => request
                .header("If-Modified-Since")
                .and_then(fake::parse_http_date)
                .is_some_and(|since| state.last_modified.as_second() <= since.as_second()),
        };
        let reply = if not_modified {
            Reply::empty(304)
        } else {
            state.budget.used += 1;
            let reply = Reply::json(200, body);
            match self.link(request, query.page, pages) {
                Some(link) => reply.header("Link", link),
                None => reply,
            }
        };
        let reply = reply
            .header("Cache-Control", "private, max-age=60, s-maxage=60")
            .header("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP,Accept-Encoding, Accept, X-Requested-With")
            .header("ETag", etag)
            .header("Last-Modified", last_modified)
            .header("X-Poll-Interval", state.poll_interval.to_string())
            .header("X-GitHub-Media-Type", "github.v3; format=json")
            .header("x-github-api-version-selected", "2022-11-28");
        (state.budget.headers(reply), !not_modified, true)
    }

    /// The `Link` header for `page` of `pages`, with absolute URLs to this simulator that keep
    /// the request's other query parameters.
    pub(super) fn link(
        &self,
        request: &ReceivedRequest,
        page: usize,
        pages: usize,
    ) -> Option<String> {
        if pages <= 1 && page <= 1 {
            return None;
        }
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("page"))
            .collect();
        let url = |page: usize| {
            let mut query = kept.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            format!("<{}{path}?{query}page={page}>", self.base)
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!(
                "{}; rel=\"prev\"",
                url(page.saturating_sub(1).min(pages))
            ));
        }
        if page < pages {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(pages)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        Some(links.join(", "))
    }
}
