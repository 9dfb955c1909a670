//! What a response means for the poller, decided by one pure function, and how a shrinking
//! rate-limit budget slows polling down.
//!
//! The order follows GitHub's "Rate limits for the REST API" page: `retry-after` first, then
//! `x-ratelimit-remaining: 0` (wait for `x-ratelimit-reset`), then the "secondary rate limit"
//! message (at least a minute, doubling on repeats). A 403 that is none of these is a permission
//! problem, and retrying it would only look like abuse, so it is fatal; so are 401 and 422,
//! which no amount of waiting fixes.

use crate::{HttpResponse, UnixMillis};
use std::fmt;

/// The first wait after a secondary rate limit without `retry-after`.
pub(crate) const SECONDARY_BASE_MS: u64 = 60_000;

/// Doubling secondary-limit waits stop growing here.
pub(crate) const SECONDARY_MAX_MS: u64 = 15 * 60_000;

/// No server-given wait is honoured beyond this: the primary window is one hour, so anything
/// longer is a bogus header that would otherwise stall the poller for good.
pub(crate) const MAX_WAIT_MS: u64 = 60 * 60_000;

/// Waits never go below this, so a `retry-after: 0` cannot become a hot loop.
pub(crate) const MIN_WAIT_MS: u64 = 1_000;

/// Server error text longer than this is cut before it reaches a log.
const MAX_MESSAGE_CHARS: usize = 200;

/// What the poller does with a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: a page of notifications to read.
    Page,
    /// 304: nothing changed since the validators were taken.
    NotModified,
    /// 3xx with a `Location`: ask there instead (same origin only, checked by the caller).
    Redirect {
        /// The `Location` value as received.
        location: String,
    },
    /// 403/429 because of a rate limit: send nothing for `wait_ms`.
    RateLimited {
        /// How long to wait, in ms.
        wait_ms: u64,
        /// Which rule set the wait.
        rule: WaitRule,
    },
    /// A server error or a response that may work next time: back off with jitter.
    Transient {
        /// Short reason for the status (`HTTP 502`).
        reason: String,
    },
    /// Stop polling: waiting will not fix it.
    Fatal(Fatal),
}

/// Which of GitHub's rate-limit rules produced a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitRule {
    /// The `retry-after` header.
    RetryAfter,
    /// `x-ratelimit-remaining: 0`: until `x-ratelimit-reset` plus one second.
    Reset,
    /// A secondary limit without timing headers: 60 s × 2^k, at most 15 min.
    Exponential,
}

impl WaitRule {
    /// Words for logs.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            WaitRule::RetryAfter => "retry-after",
            WaitRule::Reset => "primary limit reset",
            WaitRule::Exponential => "secondary limit backoff",
        }
    }
}

/// Why polling stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fatal {
    /// 401: the token is wrong, expired or revoked.
    BadCredentials,
    /// 403 without rate-limit signs: missing scope, SSO enforcement, blocked user agent.
    Forbidden {
        /// The server's message.
        message: String,
    },
    /// 422: the request itself is invalid, a configuration error.
    Unprocessable {
        /// The server's message.
        message: String,
    },
    /// Any other 4xx (404 for a token that cannot see notifications, 410 for a retired API version).
    Status {
        /// The status code.
        status: u16,
        /// The server's message.
        message: String,
    },
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::BadCredentials => f.write_str("bad credentials"),
            Fatal::Forbidden { message } => write!(f, "forbidden: {message}"),
            Fatal::Unprocessable { message } => {
                write!(
                    f,
                    "request rejected as invalid (check the configuration): {message}"
                )
            }
            Fatal::Status { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

/// Decides what `response` means. `now` is the wall clock (to turn `x-ratelimit-reset` and
/// HTTP-date `retry-after` into waits); `strikes` counts the rate-limited responses in a row
/// before this one (the `k` of the exponential rule).
pub(crate) fn classify(response: &HttpResponse, now: UnixMillis, strikes: u32) -> Verdict {
    match response.status {
        304 => Verdict::NotModified,
        200..=299 => Verdict::Page,
        300..=399 => match response.header("location") {
            Some(location) if !location.trim().is_empty() => Verdict::Redirect {
                location: location.trim().to_owned(),
            },
            _ => Verdict::Transient {
                reason: format!("HTTP {} without Location", response.status),
            },
        },
        401 => Verdict::Fatal(Fatal::BadCredentials),
        403 | 429 => rate_limited(response, now, strikes).unwrap_or_else(|| {
            Verdict::Fatal(Fatal::Forbidden {
                message: error_message(response),
            })
        }),
        422 => Verdict::Fatal(Fatal::Unprocessable {
            message: error_message(response),
        }),
        408 => Verdict::Transient {
            reason: "HTTP 408".into(),
        },
        status @ 400..=499 => Verdict::Fatal(Fatal::Status {
            status,
            message: error_message(response),
        }),
        status => Verdict::Transient {
            reason: format!("HTTP {status}"),
        },
    }
}

/// The rate-limit reading of a 403 or 429, or `None` when it is not about rate limits (only a
/// 403 can be that: a 429 is a rate limit by definition).
fn rate_limited(response: &HttpResponse, now: UnixMillis, strikes: u32) -> Option<Verdict> {
    let wait = |wait_ms: u64, rule| Verdict::RateLimited {
        wait_ms: wait_ms.clamp(MIN_WAIT_MS, MAX_WAIT_MS),
        rule,
    };
    if let Some(ms) = response
        .header("retry-after")
        .and_then(|value| retry_after_ms(value, now))
    {
        return Some(wait(ms, WaitRule::RetryAfter));
    }
    let exhausted = response
        .header("x-ratelimit-remaining")
        .and_then(|v| v.trim().parse::<u64>().ok())
        == Some(0);
    if exhausted && let Some(reset) = reset_at(response) {
        let until = reset.0.saturating_add(1_000).saturating_sub(now.0);
        return Some(wait(until.max(0) as u64, WaitRule::Reset));
    }
    let secondary = {
        let message = error_message(response).to_ascii_lowercase();
        message.contains("secondary rate limit") || message.contains("abuse detection")
    };
    if exhausted || secondary || response.status == 429 {
        return Some(wait(secondary_wait_ms(strikes), WaitRule::Exponential));
    }
    None
}

/// 60 s × 2^strikes, at most 15 minutes.
pub(crate) fn secondary_wait_ms(strikes: u32) -> u64 {
    SECONDARY_BASE_MS
        .checked_shl(strikes.min(16))
        .unwrap_or(SECONDARY_MAX_MS)
        .min(SECONDARY_MAX_MS)
}

/// `retry-after` as delay-seconds or an HTTP-date, in ms from `now`; `None` when unreadable.
fn retry_after_ms(value: &str, now: UnixMillis) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1_000));
    }
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(date.as_millisecond().saturating_sub(now.0).max(0) as u64)
}

/// `x-ratelimit-reset` (UTC epoch seconds) as wall-clock time.
pub(crate) fn reset_at(response: &HttpResponse) -> Option<UnixMillis> {
    let seconds = response
        .header("x-ratelimit-reset")?
        .trim()
        .parse::<i64>()
        .ok()?;
    Some(UnixMillis(seconds.checked_mul(1_000)?))
}

/// The server's error text: the JSON body's `message`, else the body itself, cut short and kept
/// to one line; the status code's own words when there is neither.
pub(crate) fn error_message(response: &HttpResponse) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody<'a> {
        #[serde(borrow)]
        message: Option<std::borrow::Cow<'a, str>>,
    }
    let from_json = serde_json::from_slice::<ErrorBody<'_>>(response.body.as_slice())
        .ok()
        .and_then(|body| body.message)
        .map(|m| m.into_owned());
    let text = from_json
        .or_else(|| response.body.as_str().map(str::to_owned))
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    one_line
}

/// How much of the primary rate limit is left, from a response's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// `x-ratelimit-remaining`.
    pub remaining: u64,
    /// `x-ratelimit-reset`, wall clock.
    pub reset: UnixMillis,
}

impl Budget {
    /// Both headers, or `None` when either is missing or unreadable.
    pub(crate) fn from_response(response: &HttpResponse) -> Option<Budget> {
        let remaining = response
            .header("x-ratelimit-remaining")?
            .trim()
            .parse()
            .ok()?;
        Some(Budget {
            remaining,
            reset: reset_at(response)?,
        })
    }
}

/// The interval stretched so the budget lasts until the reset, or `None` when `interval_ms` is
/// affordable as it is.
///
/// Polling every `interval_ms` until the reset takes `(reset − now) / interval_ms` requests
/// (whole polls); when fewer remain, the interval becomes `(reset − now) / max(remaining − 1, 1)`,
/// keeping one request in reserve. The time to reset counts at most one hour, the length of the
/// primary window, so a bogus reset cannot stall the poller.
pub(crate) fn stretch_for_budget(interval_ms: u64, budget: Budget, now: UnixMillis) -> Option<u64> {
    let until_reset = budget.reset.0.saturating_sub(now.0);
    if until_reset <= 0 || interval_ms == 0 {
        return None;
    }
    let until_reset = (until_reset as u64).min(MAX_WAIT_MS);
    let polls_before_reset = until_reset / interval_ms;
    if budget.remaining >= polls_before_reset {
        return None;
    }
    let stretched = until_reset / budget.remaining.saturating_sub(1).max(1);
    (stretched > interval_ms).then_some(stretched)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_764_100_000_000);
    const NOW_SECS: i64 = 1_764_100_000;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse::new(status, headers, body)
    }

    fn limited(wait_ms: u64, rule: WaitRule) -> Verdict {
        Verdict::RateLimited { wait_ms, rule }
    }

    fn transient(reason: &str) -> Verdict {
        Verdict::Transient {
            reason: reason.into(),
        }
    }

    #[test]
    fn classify_table() {
        let reset_in_90s = (NOW_SECS + 90).to_string();
        let reset_past = (NOW_SECS - 10).to_string();
        let reset_far = (NOW_SECS + 86_400).to_string();
        let secondary = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        let primary =
            r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"x"}"#;
        let http_date = "Tue, 25 Nov 2025 19:48:40 GMT"; // NOW + 2 min
        type Case<'a> = (&'a str, HttpResponse, u32, Verdict);
        let cases: Vec<Case<'_>> = vec![
            ("200", response(200, &[], "[]"), 0, Verdict::Page),
            ("204", response(204, &[], ""), 0, Verdict::Page),
            ("304", response(304, &[], ""), 0, Verdict::NotModified),
            (
                "301 with location",
                response(301, &[("Location", " https://api.github.com/x ")], ""),
                0,
                Verdict::Redirect {
                    location: "https://api.github.com/x".into(),
                },
            ),
            (
                "307 relative",
                response(307, &[("location", "/x")], ""),
                0,
                Verdict::Redirect {
                    location: "/x".into(),
                },
            ),
            (
                "302 without location",
                response(302, &[], ""),
                0,
                transient("HTTP 302 without Location"),
            ),
            (
                "401",
                response(401, &[], r#"{"message":"Bad credentials"}"#),
                0,
                Verdict::Fatal(Fatal::BadCredentials),
            ),
            // Rule 1: retry-after wins over everything.
            (
                "403 retry-after seconds",
                response(
                    403,
                    &[
                        ("Retry-After", "30"),
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", &reset_in_90s),
                    ],
                    secondary,
                ),
                3,
                limited(30_000, WaitRule::RetryAfter),
            ),
            (
                "429 retry-after seconds",
                response(429, &[("retry-after", "5")], ""),
                0,
                limited(5_000, WaitRule::RetryAfter),
            ),
            (
                "429 retry-after http-date",
                response(429, &[("retry-after", http_date)], ""),
                0,
                limited(120_000, WaitRule::RetryAfter),
            ),
            (
                "403 retry-after 0 floors at 1 s",
                response(403, &[("retry-after", "0")], secondary),
                0,
                limited(MIN_WAIT_MS, WaitRule::RetryAfter),
            ),
            (
                "403 retry-after huge caps at 1 h",
                response(403, &[("retry-after", "999999999")], secondary),
                0,
                limited(MAX_WAIT_MS, WaitRule::RetryAfter),
            ),
            (
                "403 unreadable retry-after falls through to the message",
                response(403, &[("retry-after", "soon")], secondary),
                1,
                limited(120_000, WaitRule::Exponential),
            ),
            // Rule 2: remaining 0 → reset + 1 s.
            (
                "403 primary limit",
                response(
                    403,
                    &[
                        ("X-RateLimit-Remaining", "0"),
                        ("X-RateLimit-Reset", &reset_in_90s),
                    ],
                    primary,
                ),
                0,
                limited(91_000, WaitRule::Reset),
            ),
            (
                "429 primary limit",
                response(
                    429,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", &reset_in_90s),
                    ],
                    "",
                ),
                0,
                limited(91_000, WaitRule::Reset),
            ),
            (
                "primary limit with a reset already past",
                response(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", &reset_past),
                    ],
                    primary,
                ),
                0,
                limited(MIN_WAIT_MS, WaitRule::Reset),
            ),
            (
                "primary limit with a reset a day away caps at 1 h",
                response(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", &reset_far),
                    ],
                    primary,
                ),
                0,
                limited(MAX_WAIT_MS, WaitRule::Reset),
            ),
            (
                "primary limit without a readable reset waits like a secondary one",
                response(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", "tomorrow"),
                    ],
                    primary,
                ),
                2,
                limited(240_000, WaitRule::Exponential),
            ),
            // Rule 3: secondary message → 60 s × 2^k, at most 15 min.
            (
                "secondary k=0",
                response(403, &[("x-ratelimit-remaining", "4000")], secondary),
                0,
                limited(60_000, WaitRule::Exponential),
            ),
            (
                "secondary k=3",
                response(403, &[], secondary),
                3,
                limited(480_000, WaitRule::Exponential),
            ),
            (
                "secondary k=4 caps",
                response(403, &[], secondary),
                4,
                limited(SECONDARY_MAX_MS, WaitRule::Exponential),
            ),
            (
                "secondary k=100 caps",
                response(403, &[], secondary),
                100,
                limited(SECONDARY_MAX_MS, WaitRule::Exponential),
            ),
            (
                "secondary message in plain text, any case",
                response(403, &[], "Secondary Rate Limit hit"),
                0,
                limited(60_000, WaitRule::Exponential),
            ),
            (
                "older abuse wording",
                response(
                    403,
                    &[],
                    r#"{"message":"You have triggered an abuse detection mechanism."}"#,
                ),
                0,
                limited(60_000, WaitRule::Exponential),
            ),
            (
                "429 without any sign is still a rate limit",
                response(429, &[], ""),
                1,
                limited(120_000, WaitRule::Exponential),
            ),
            // Rule 4: other 403 is fatal.
            (
                "403 missing scope",
                response(
                    403,
                    &[("x-ratelimit-remaining", "4999")],
                    r#"{"message":"Missing the 'notifications' scope."}"#,
                ),
                0,
                Verdict::Fatal(Fatal::Forbidden {
                    message: "Missing the 'notifications' scope.".into(),
                }),
            ),
            (
                "403 empty body",
                response(403, &[], ""),
                0,
                Verdict::Fatal(Fatal::Forbidden {
                    message: "HTTP 403".into(),
                }),
            ),
            (
                "422",
                response(422, &[], r#"{"message":"Validation Failed"}"#),
                0,
                Verdict::Fatal(Fatal::Unprocessable {
                    message: "Validation Failed".into(),
                }),
            ),
            (
                "404",
                response(404, &[], r#"{"message":"Not Found","status":"404"}"#),
                0,
                Verdict::Fatal(Fatal::Status {
                    status: 404,
                    message: "Not Found".into(),
                }),
            ),
            ("408", response(408, &[], ""), 0, transient("HTTP 408")),
            ("500", response(500, &[], ""), 0, transient("HTTP 500")),
            (
                "502",
                response(502, &[], "<html>"),
                0,
                transient("HTTP 502"),
            ),
            ("503", response(503, &[], ""), 0, transient("HTTP 503")),
            ("100", response(100, &[], ""), 0, transient("HTTP 100")),
            ("999", response(999, &[], ""), 0, transient("HTTP 999")),
        ];
        for (name, response, strikes, expected) in cases {
            assert_eq!(classify(&response, NOW, strikes), expected, "{name}");
        }
    }

    #[test]
    fn secondary_wait_doubles_then_caps() {
        let waits: Vec<u64> = (0..7).map(secondary_wait_ms).collect();
        assert_eq!(
            waits,
            [60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000]
        );
        assert_eq!(secondary_wait_ms(u32::MAX), SECONDARY_MAX_MS);
    }

    #[test]
    fn error_message_is_one_short_line() {
        let long = "x".repeat(500);
        let r = response(403, &[], &long);
        assert_eq!(error_message(&r).chars().count(), MAX_MESSAGE_CHARS);
        let r = response(403, &[], "{\"message\":\"a\\nb\"}");
        assert_eq!(error_message(&r), "a b");
        let r = response(500, &[], "{\"message\":null}");
        assert_eq!(error_message(&r), "{\"message\":null}");
    }

    #[test]
    fn budget_needs_both_headers() {
        let reset = (NOW_SECS + 60).to_string();
        let both = response(
            200,
            &[
                ("x-ratelimit-remaining", "7"),
                ("x-ratelimit-reset", &reset),
            ],
            "",
        );
        assert_eq!(
            Budget::from_response(&both),
            Some(Budget {
                remaining: 7,
                reset: UnixMillis((NOW_SECS + 60) * 1000)
            })
        );
        let cases = [
            response(200, &[("x-ratelimit-remaining", "7")], ""),
            response(200, &[("x-ratelimit-reset", &reset)], ""),
            response(
                200,
                &[
                    ("x-ratelimit-remaining", "-1"),
                    ("x-ratelimit-reset", &reset),
                ],
                "",
            ),
            response(
                200,
                &[
                    ("x-ratelimit-remaining", "7"),
                    ("x-ratelimit-reset", "99999999999999999"),
                ],
                "",
            ),
        ];
        for r in cases {
            assert_eq!(Budget::from_response(&r), None, "{:?}", r.headers);
        }
    }

    #[test]
    fn stretch_table() {
        let reset_in = |ms: i64| UnixMillis(NOW.0 + ms);
        // (interval, remaining, reset offset ms, expected)
        let cases: &[(u64, u64, i64, Option<u64>)] = &[
            // Plenty left: 60 polls in the hour, 4000 requests.
            (60_000, 4_000, 3_600_000, None),
            // Exactly enough: 60 polls, 60 left.
            (60_000, 60, 3_600_000, None),
            // One short: spread 59 requests, keeping one: 3 600 000 / 58.
            (60_000, 59, 3_600_000, Some(62_068)),
            // Ten left for an hour: every 400 s.
            (60_000, 10, 3_600_000, Some(400_000)),
            // Two left: the whole time to reset.
            (60_000, 2, 600_000, Some(600_000)),
            // One or zero left: wait for the reset.
            (60_000, 1, 600_000, Some(600_000)),
            (60_000, 0, 600_000, Some(600_000)),
            // The reset is close enough that no poll falls before it.
            (60_000, 0, 30_000, None),
            // Reset in the past or now: nothing to stretch.
            (60_000, 0, -5_000, None),
            (60_000, 0, 0, None),
            // A reset a day away counts as one hour.
            (60_000, 0, 86_400_000, Some(3_600_000)),
            // Whole polls only: 150 s to reset at 60 s is 2 polls; 2 left is enough.
            (60_000, 2, 150_000, None),
            (60_000, 1, 150_000, Some(150_000)),
            // A reset exactly one interval away: the interval already reaches it.
            (60_000, 0, 60_000, None),
            (90_000, 1, 180_000, Some(180_000)),
        ];
        for &(interval, remaining, offset, expected) in cases {
            let budget = Budget {
                remaining,
                reset: reset_in(offset),
            };
            assert_eq!(
                stretch_for_budget(interval, budget, NOW),
                expected,
                "interval {interval}, remaining {remaining}, reset in {offset}"
            );
        }
    }
}
