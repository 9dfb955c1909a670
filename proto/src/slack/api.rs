//! The two Web API calls a Socket Mode source makes, `apps.connections.open` and `auth.test`, and
//! the pure classification of their responses into "go on", "stop for good", "wait as told" and
//! "retry with backoff".
//!
//! Slack reports most errors as HTTP 200 with `{"ok":false,"error":"<code>"}`, so the body decides,
//! not the status; HTTP 429 (and the `ratelimited` code) carry `Retry-After` in seconds.

use super::SlackConfig;
use super::wire::Text;
use crate::url::Url;
use crate::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Wait this long after a rate limit that names no usable `Retry-After` (the Python SDK's choice).
pub const DEFAULT_RETRY_AFTER_MS: u64 = 30_000;

/// Never wait longer than this for one `Retry-After`, whatever the server says.
pub const MAX_RETRY_AFTER_MS: u64 = 600_000;

/// Error codes after which retrying cannot help: the token, its scopes or the workspace are wrong.
/// The first nine are the ones `apps.connections.open` and `auth.test` document for bad
/// credentials; the last three come from Slack's general Web API error list.
pub const FATAL_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "user_removed_from_team",
    "team_disabled",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
    "missing_scope",
    "missing_args",
    "forbidden_team",
    "access_denied",
];

/// `POST {api}/apps.connections.open` with the app-level token. Every connection needs a fresh
/// call: the URL's ticket is single use.
pub(crate) fn connections_open(config: &SlackConfig) -> HttpRequest {
    post(config, "apps.connections.open", config.app_token.expose())
}

/// `POST {api}/auth.test` with the bot token.
pub(crate) fn auth_test(config: &SlackConfig, bot_token: &str) -> HttpRequest {
    post(config, "auth.test", bot_token)
}

fn post(config: &SlackConfig, method: &str, token: &str) -> HttpRequest {
    // The token travels only in the header: as a form field Slack answers `invalid_auth` for xapp tokens.
    HttpRequest::new("POST", config.method_url(method))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
}

/// What to do about one Web API response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiOutcome<T> {
    /// `ok: true` with what the call returns.
    Ok(T),
    /// A credential or configuration error: stop.
    Fatal {
        /// Slack's error code.
        code: String,
    },
    /// Rate limited: try again after this many ms.
    RateLimited {
        /// How long to wait.
        wait_ms: u64,
    },
    /// Anything else that went wrong: try again with backoff.
    Retryable {
        /// Readable cause, without secrets.
        cause: String,
    },
}

/// Who the bot token belongs to, from `auth.test`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The bot's user id (`user_id` of the response).
    pub bot_user_id: Option<String>,
    /// The workspace id.
    pub team_id: Option<String>,
    /// The bot id (`B…`).
    pub bot_id: Option<String>,
    /// The app id, when Slack includes it.
    pub app_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ResponseFields<'a> {
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Text<'a>,
    #[serde(borrow)]
    url: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Text<'a>,
    #[serde(borrow)]
    team_id: Text<'a>,
    #[serde(borrow)]
    bot_id: Text<'a>,
    #[serde(borrow)]
    app_id: Text<'a>,
}

/// Classifies an `apps.connections.open` response; `Ok` carries the WebSocket URL. An `ok` answer
/// without a usable `ws(s)://` URL is retryable, and its cause says what came instead.
pub(crate) fn classify_connections_open(response: &HttpResponse) -> ApiOutcome<String> {
    classify(response, |fields| {
        let cause = match fields
            .url
            .map(|raw| serde_json::from_str::<Text<'_>>(raw.get()))
        {
            None => "ok:true without a url".to_owned(),
            Some(Ok(Text(Some(url)))) => match Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme.as_str(), "ws" | "wss") => {
                    return ApiOutcome::Ok(url.into_owned());
                }
                Ok(parsed) => format!(
                    "ok:true with a {}:// url, not ws:// or wss://",
                    parsed.scheme.chars().take(16).collect::<String>()
                ),
                Err(_) => "ok:true with a url that does not parse".to_owned(),
            },
            Some(_) => "ok:true with a url that is not a string".to_owned(),
        };
        ApiOutcome::Retryable { cause }
    })
}

/// Classifies an `auth.test` response; `Ok` carries who the token is.
pub(crate) fn classify_auth_test(response: &HttpResponse) -> ApiOutcome<Identity> {
    classify(response, |fields| {
        let owned = |text: Text<'_>| text.0.map(Cow::into_owned);
        ApiOutcome::Ok(Identity {
            bot_user_id: owned(fields.user_id),
            team_id: owned(fields.team_id),
            bot_id: owned(fields.bot_id),
            app_id: owned(fields.app_id),
        })
    })
}

fn classify<T>(
    response: &HttpResponse,
    on_ok: impl FnOnce(ResponseFields<'_>) -> ApiOutcome<T>,
) -> ApiOutcome<T> {
    let body = response.body.as_str().unwrap_or("");
    let fields: Option<ResponseFields<'_>> = body
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str(body).ok())
        .flatten();
    let error_code = fields.as_ref().and_then(|f| f.error.0.clone());
    if response.status == 429 || error_code.as_deref() == Some("ratelimited") {
        return ApiOutcome::RateLimited {
            wait_ms: retry_after_ms(response.header("retry-after")),
        };
    }
    if let Some(code) = error_code.as_deref().filter(|c| FATAL_ERRORS.contains(c)) {
        return ApiOutcome::Fatal {
            code: code.to_owned(),
        };
    }
    if !(200..300).contains(&response.status) {
        return ApiOutcome::Retryable {
            cause: match error_code {
                Some(code) => format!("HTTP {}: {code}", response.status),
                None => format!("HTTP {}", response.status),
            },
        };
    }
    match fields {
        None => ApiOutcome::Retryable {
            cause: format!(
                "HTTP {} with a body that is not a JSON object",
                response.status
            ),
        },
        Some(fields) if fields.ok.is_some_and(|ok| ok.get() == "true") => on_ok(fields),
        Some(_) => ApiOutcome::Retryable {
            cause: match error_code {
                Some(code) => format!("error {code}"),
                None => "ok is not true and no error code".to_owned(),
            },
        },
    }
}

/// `Retry-After` in whole seconds, as Slack sends it, to ms; absent or unreadable →
/// [`DEFAULT_RETRY_AFTER_MS`], capped at [`MAX_RETRY_AFTER_MS`].
pub(crate) fn retry_after_ms(header: Option<&str>) -> u64 {
    header
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|secs| secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
        .unwrap_or(DEFAULT_RETRY_AFTER_MS)
}

/// What a fatal code means for the person reading the status, without any secret.
pub(crate) fn explain(code: &str) -> &'static str {
    match code {
        "invalid_auth" | "not_authed" => "the token is missing or not valid",
        "account_inactive" => "the token's user or app was deactivated",
        "user_removed_from_team" => "the token's user was removed from the workspace",
        "team_disabled" => "the workspace is disabled",
        "token_revoked" => "the token was revoked",
        "token_expired" => "the token expired",
        "not_allowed_token_type" => "wrong kind of token for this method",
        "missing_scope" => "the token lacks a required scope",
        "missing_args" => "the request lacked a required argument",
        "forbidden_team" | "access_denied" => "the token may not access this workspace",
        _ => "Slack refused the request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse::new(status, headers, body)
    }

    /// The expected outcomes, one line each, so a case of the table reads as one row.
    fn retryable(cause: &str) -> ApiOutcome<String> {
        ApiOutcome::Retryable {
            cause: cause.to_owned(),
        }
    }

    fn fatal(code: &str) -> ApiOutcome<String> {
        ApiOutcome::Fatal {
            code: code.to_owned(),
        }
    }

    #[test]
    fn connections_open_table() {
        use ApiOutcome::*;
        let url = "wss://wss-primary.slack.com/link/?ticket=t&app_id=A1";
        let ok_body = format!(r#"{{"ok":true,"url":"{url}"}}"#);
        let cases: Vec<(HttpResponse, ApiOutcome<String>)> = vec![
            (response(200, &[], &ok_body), Ok(url.to_owned())),
            (
                response(200, &[], r#"{"ok":true}"#),
                retryable("ok:true without a url"),
            ),
            (
                response(200, &[], r#"{"ok":true,"url":"https://x/"}"#),
                retryable("ok:true with a https:// url, not ws:// or wss://"),
            ),
            (
                response(200, &[], r#"{"ok":true,"url":"wss ://garbage"}"#),
                retryable("ok:true with a url that does not parse"),
            ),
            (
                response(200, &[], r#"{"ok":true,"url":5}"#),
                retryable("ok:true with a url that is not a string"),
            ),
            (
                response(200, &[], r#"{"ok":false,"error":"invalid_auth"}"#),
                fatal("invalid_auth"),
            ),
            (
                response(200, &[], r#"{"ok":false,"error":"internal_error"}"#),
                retryable("error internal_error"),
            ),
            (
                response(200, &[], r#"{"ok":false}"#),
                retryable("ok is not true and no error code"),
            ),
            (
                response(
                    429,
                    &[("Retry-After", "7")],
                    r#"{"ok":false,"error":"ratelimited"}"#,
                ),
                RateLimited { wait_ms: 7_000 },
            ),
            (
                response(429, &[("retry-after", "soon")], ""),
                RateLimited {
                    wait_ms: DEFAULT_RETRY_AFTER_MS,
                },
            ),
            (
                response(200, &[], r#"{"ok":false,"error":"ratelimited"}"#),
                RateLimited {
                    wait_ms: DEFAULT_RETRY_AFTER_MS,
                },
            ),
            (
                response(503, &[], "<html>down</html>"),
                retryable("HTTP 503"),
            ),
            (
                response(401, &[], r#"{"ok":false,"error":"not_authed"}"#),
                fatal("not_authed"),
            ),
            (
                response(500, &[], r#"{"ok":false,"error":"fatal_error"}"#),
                retryable("HTTP 500: fatal_error"),
            ),
            (
                response(200, &[], "not json"),
                retryable("HTTP 200 with a body that is not a JSON object"),
            ),
            (
                response(200, &[], r#"[{"ok":true}]"#),
                retryable("HTTP 200 with a body that is not a JSON object"),
            ),
            (
                response(200, &[], r#"{"ok":"yes","url":"wss://x/"}"#),
                retryable("ok is not true and no error code"),
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(
                classify_connections_open(&response),
                expected,
                "{response:?}"
            );
        }
    }

    #[test]
    fn every_fatal_code_is_fatal_for_both_calls() {
        for code in FATAL_ERRORS {
            let res = response(200, &[], &format!(r#"{{"ok":false,"error":"{code}"}}"#));
            let code = (*code).to_owned();
            assert_eq!(
                classify_connections_open(&res),
                ApiOutcome::Fatal { code: code.clone() }
            );
            assert_eq!(
                classify_auth_test(&res),
                ApiOutcome::Fatal { code: code.clone() }
            );
            assert_ne!(explain(&code), explain("something_else"), "{code}");
        }
    }

    #[test]
    fn auth_test_reads_identity() {
        let res = response(
            200,
            &[],
            r#"{"ok":true,"url":"https://t.slack.com/","team":"T","user":"bot","team_id":"T1","user_id":"U1","bot_id":"B1","is_enterprise_install":false}"#,
        );
        assert_eq!(
            classify_auth_test(&res),
            ApiOutcome::Ok(Identity {
                bot_user_id: Some("U1".into()),
                team_id: Some("T1".into()),
                bot_id: Some("B1".into()),
                app_id: None,
            })
        );
    }

    #[test]
    fn retry_after_table() {
        let cases = [
            (None, DEFAULT_RETRY_AFTER_MS),
            (Some("0"), 0),
            (Some(" 12 "), 12_000),
            (Some("-1"), DEFAULT_RETRY_AFTER_MS),
            (Some("1.5"), DEFAULT_RETRY_AFTER_MS),
            (
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                DEFAULT_RETRY_AFTER_MS,
            ),
            (Some("99999999999999999999"), DEFAULT_RETRY_AFTER_MS),
            (Some("18446744073709551615"), MAX_RETRY_AFTER_MS),
            (Some("3600"), MAX_RETRY_AFTER_MS),
        ];
        for (header, expected) in cases {
            assert_eq!(retry_after_ms(header), expected, "{header:?}");
        }
    }

    #[test]
    fn requests_carry_the_token_only_in_the_header() {
        let config = SlackConfig::new("xapp-SECRET");
        let req = connections_open(&config);
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "https://slack.com/api/apps.connections.open");
        assert_eq!(
            req.headers,
            vec![
                ("Authorization".to_owned(), "Bearer xapp-SECRET".to_owned()),
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned()
                ),
            ]
        );
        assert!(req.body.is_empty());
        let auth = auth_test(&config, "xoxb-BOT");
        assert_eq!(auth.url, "https://slack.com/api/auth.test");
        assert_eq!(auth.headers[0].1, "Bearer xoxb-BOT");
    }
}
