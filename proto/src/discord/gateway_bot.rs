//! `GET /gateway/bot`: where to connect, how many shards Discord recommends, and the IDENTIFY
//! limits. One request serves a standalone shard or a whole [`DiscordGateway`](super::DiscordGateway).

use super::wire::{self, GatewayBot};
use super::{IdentifyLimiter, TransportCompression};
use crate::core::Core;
use crate::{HttpRequest, HttpResponse, Level, Now, Output, ReqId, TimerKind};

/// The `User-Agent` Discord asks REST clients to send.
const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/openflume/openflume, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// What a `/gateway/bot` answer means for the caller.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A usable answer.
    Ready(GatewayBot),
    /// Try again after at least `after_ms`.
    Retry { why: String, after_ms: u64 },
    /// The token was refused: retrying cannot help.
    Fatal(String),
}

/// Logs and queues the request as `req`: a shard on its own and a gateway ask alike.
pub(crate) fn send<K: TimerKind>(
    core: &mut Core<K>,
    now: Now,
    req: ReqId,
    api_base: &str,
    token: &str,
) {
    let request = request(api_base, token);
    core.log(
        now,
        Level::Debug,
        "gateway.request",
        format!("GET {}", request.url),
    );
    core.emit(Output::Request { req, request });
}

/// Reads the response to `req`: `None`, logged as stale, unless it is the `awaited` one. A
/// usable answer's session start limit goes to `limiter`, and what Discord said to the log.
pub(crate) fn read<K: TimerKind>(
    core: &mut Core<K>,
    now: Now,
    req: ReqId,
    response: &HttpResponse,
    awaited: bool,
    compress: Option<TransportCompression>,
    limiter: &mut IdentifyLimiter,
) -> Option<Outcome> {
    if !awaited {
        core.log(
            now,
            Level::Debug,
            "http.stale",
            format!("ignored the response to an old request {}", req.0),
        );
        return None;
    }
    let outcome = outcome(response, compress);
    if let Outcome::Ready(body) = &outcome {
        if let Some(limit) = body.session_start_limit {
            limiter.set_session_start_limit(limit, now.mono);
        }
        let (message, detail) = describe(body);
        core.log_with(now, Level::Info, "gateway.bot", message, detail);
    }
    Some(outcome)
}

/// The request, for `api_base` (`https://discord.com/api/v10`) and a bare token.
fn request(api_base: &str, token: &str) -> HttpRequest {
    let url = format!("{}/gateway/bot", api_base.trim_end_matches('/'));
    HttpRequest::new("GET", url)
        .header("Authorization", format!("Bot {token}"))
        .header("User-Agent", USER_AGENT)
}

/// Reads a response: 2xx with a usable URL is ready; 401 and 403 are fatal; anything else is
/// retried (429 after its `Retry-After`).
fn outcome(response: &HttpResponse, compress: Option<TransportCompression>) -> Outcome {
    match response.status {
        200..=299 => {}
        401 | 403 => {
            return Outcome::Fatal(format!(
                "HTTP {} from /gateway/bot: the bot token was rejected",
                response.status
            ));
        }
        status => {
            let after_ms = response
                .header("retry-after")
                .and_then(|value| value.trim().parse::<f64>().ok())
                .filter(|secs| secs.is_finite() && *secs >= 0.0)
                .map_or(0, |secs| (secs.min(86_400.0) * 1000.0).ceil() as u64);
            return Outcome::Retry {
                why: format!("HTTP {status} from /gateway/bot"),
                after_ms,
            };
        }
    }
    let body = match serde_json::from_slice::<GatewayBot>(response.body.as_slice()) {
        Ok(body) => body,
        Err(error) => {
            return Outcome::Retry {
                why: format!("invalid /gateway/bot body: {error}"),
                after_ms: 0,
            };
        }
    };
    if let Err(error) = wire::connect_url(&body.url, compress) {
        return Outcome::Retry {
            why: format!("unusable gateway URL from /gateway/bot: {error}"),
            after_ms: 0,
        };
    }
    Outcome::Ready(body)
}

/// The `gateway.bot` log line and its detail.
fn describe(body: &GatewayBot) -> (String, serde_json::Value) {
    let mut message = format!("gateway {}", body.url);
    if let Some(shards) = body.shards {
        message.push_str(&format!(", {shards} shard(s) recommended"));
    }
    if let Some(limit) = body.session_start_limit {
        message.push_str(&format!(
            ", {}/{} session starts left (refill in {} ms), max_concurrency {}",
            limit.remaining, limit.total, limit.reset_after, limit.max_concurrency
        ));
    }
    let detail = serde_json::json!({
        "url": body.url,
        "shards": body.shards,
        "sessionStartLimit": body.session_start_limit,
    });
    (message, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse::new(status, headers, body)
    }

    #[test]
    fn outcomes() {
        let ok = r#"{"url":"wss://gateway.discord.gg","shards":2,"session_start_limit":{"total":1000,"remaining":5,"reset_after":10,"max_concurrency":1}}"#;
        assert!(
            matches!(outcome(&response(200, &[], ok), Some(TransportCompression::ZlibStream)), Outcome::Ready(b) if b.shards == Some(2))
        );
        assert!(matches!(
            outcome(&response(200, &[], r#"{"url":"wss://g"}"#), Some(TransportCompression::ZlibStream)),
            Outcome::Ready(b) if b.session_start_limit.is_none()
        ));
        /// (status, headers, body, retry delay; `None` = fatal)
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, Option<u64>);
        let cases: &[Case<'_>] = &[
            (401, &[], "", None),
            (403, &[], "", None),
            (500, &[], "", Some(0)),
            (429, &[("Retry-After", "2.5")], "", Some(2500)),
            (429, &[("retry-after", "soon")], "", Some(0)),
            (429, &[("retry-after", "1e300")], "", Some(86_400_000)),
            (200, &[], "not json", Some(0)),
            (200, &[], r#"{"url":"https://discord.com"}"#, Some(0)),
            (200, &[], r#"{"shards":1}"#, Some(0)),
        ];
        for &(status, headers, body, expected) in cases {
            let got = match outcome(&response(status, headers, body), None) {
                Outcome::Fatal(_) => None,
                Outcome::Retry { after_ms, .. } => Some(after_ms),
                Outcome::Ready(_) => panic!("{status} {body}"),
            };
            assert_eq!(got, expected, "{status} {headers:?} {body}");
        }
    }

    #[test]
    fn request_carries_the_token_and_hides_it_in_debug() {
        let req = request("https://discord.com/api/v10/", "abc.def");
        assert_eq!(req.url, "https://discord.com/api/v10/gateway/bot");
        assert_eq!(
            req.headers[0],
            ("Authorization".into(), "Bot abc.def".into())
        );
        assert!(!format!("{req:?}").contains("abc.def"));
    }
}
