//! The REST side: `GET /api/v10/gateway` and `/gateway/bot` (with the session-start budget), and
//! Discord's error bodies for refusals and injected faults.

use super::Discord;
use crate::server::{Answer, Reply, bearer, reason_phrase, split_target};
use openflume_proto::http::ReceivedRequest;
use serde_json::json;
use std::time::Duration;

impl Discord {
    /// Answers a REST request: `GET /gateway` and `/gateway/bot`, or an injected fault.
    pub(super) async fn rest(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        let path = path.trim_end_matches('/').to_owned();
        let record = |status| self.core.record_http(&request.method, &path, status);
        if let Some(answer) = self.core.apply_fault(Discord::error_reply, record).await {
            return answer;
        }
        let route = path
            .strip_prefix("/api/v10")
            .or_else(|| path.strip_prefix("/api/v9"))
            .or_else(|| path.strip_prefix("/api"));
        let reply = match (request.method.as_str(), route) {
            ("GET", Some("/gateway")) => {
                Reply::json(200, json!({ "url": self.gateway_url }).to_string())
            }
            ("GET", Some("/gateway/bot")) => {
                let token = bearer(&request, &["Bot"]);
                if token == Some(self.config.token.expose()) {
                    self.gateway_bot()
                } else {
                    Discord::error_reply(401, None)
                }
            }
            (_, Some("/gateway" | "/gateway/bot")) => Discord::error_reply(405, None),
            _ => Discord::error_reply(404, None),
        };
        self.core
            .record_http(&request.method, &path, Some(reply.status));
        Answer::Reply(reply)
    }

    /// Discord's error body for `status`.
    pub(super) fn error_reply(status: u16, retry_after: Option<u64>) -> Reply {
        let reply = if status == 429 {
            let after = retry_after.unwrap_or(1);
            Reply::json(
                429,
                format!(r#"{{"message": "You are being rate limited.", "retry_after": {after}.0, "global": false}}"#),
            )
            .header("X-RateLimit-Limit", "1")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset-After", format!("{after}.000"))
            .header("X-RateLimit-Scope", "user")
        } else {
            let reason = reason_phrase(status);
            Reply::json(
                status,
                format!(r#"{{"message": "{status}: {reason}", "code": 0}}"#),
            )
        };
        match retry_after {
            Some(seconds) => reply.header("Retry-After", seconds.to_string()),
            None => reply,
        }
    }

    fn gateway_bot(&self) -> Reply {
        let state = self.lock();
        let day = Duration::from_secs(86_400);
        let reset_after = day.saturating_sub(self.core.since_start()).as_millis();
        Reply::json(
            200,
            json!({
                "url": self.gateway_url,
                "shards": self.config.shards,
                "session_start_limit": {
                    "total": self.config.session_start_total,
                    "remaining": state.session_start_remaining,
                    "reset_after": u64::try_from(reset_after).unwrap_or(u64::MAX),
                    "max_concurrency": self.config.max_concurrency,
                }
            })
            .to_string(),
        )
    }
}
