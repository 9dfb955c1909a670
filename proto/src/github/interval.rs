//! How long to wait before the next poll after a cycle that worked.
//!
//! The configured interval is a floor; the server's `X-Poll-Interval` can raise it (GitHub raises
//! it under load and asks clients to obey), and a low rate-limit budget stretches it further so
//! the budget lasts until the reset.

use super::rate_limit::{Budget, stretch_for_budget};
use crate::UnixMillis;

/// `X-Poll-Interval` values above this are clamped to it: an hour between polls is already a
/// server in trouble, and anything longer is more likely a bad header than a real request.
pub(crate) const MAX_SERVER_INTERVAL_MS: u64 = 60 * 60_000;

/// `X-Poll-Interval` (whole seconds) in ms, clamped to one hour; `None` when missing, zero or
/// unreadable, which leaves the configured interval in charge.
pub(crate) fn server_interval_ms(header: Option<&str>) -> Option<u64> {
    let seconds = header?.trim().parse::<u64>().ok()?;
    (seconds > 0).then(|| seconds.saturating_mul(1_000).min(MAX_SERVER_INTERVAL_MS))
}

/// When the next poll is due and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NextPoll {
    /// Delay from now, in ms.
    pub delay_ms: u64,
    /// True when the rate-limit budget stretched it beyond `max(configured, server)`.
    pub stretched: bool,
}

/// `max(configured, server)`, stretched when the budget would not last until its reset.
pub(crate) fn next_poll(
    configured_ms: u64,
    server_ms: Option<u64>,
    budget: Option<Budget>,
    now: UnixMillis,
) -> NextPoll {
    let base = server_ms.map_or(configured_ms, |server| server.max(configured_ms));
    match budget.and_then(|budget| stretch_for_budget(base, budget, now)) {
        Some(delay_ms) => NextPoll {
            delay_ms,
            stretched: true,
        },
        None => NextPoll {
            delay_ms: base,
            stretched: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_interval_table() {
        let cases: &[(Option<&str>, Option<u64>)] = &[
            (None, None),
            (Some("60"), Some(60_000)),
            (Some(" 120 "), Some(120_000)),
            (Some("1"), Some(1_000)),
            (Some("0"), None),
            (Some("-5"), None),
            (Some("1.5"), None),
            (Some("soon"), None),
            (Some(""), None),
            (Some("3600"), Some(3_600_000)),
            (Some("3601"), Some(MAX_SERVER_INTERVAL_MS)),
            (Some("99999999999999999999"), None),
            (Some("18446744073709551615"), Some(MAX_SERVER_INTERVAL_MS)),
        ];
        for (header, expected) in cases {
            assert_eq!(server_interval_ms(*header), *expected, "{header:?}");
        }
    }

    #[test]
    fn next_poll_table() {
        let now = UnixMillis(1_764_100_000_000);
        let budget = |remaining, reset_in_ms| {
            Some(Budget {
                remaining,
                reset: UnixMillis(now.0 + reset_in_ms),
            })
        };
        let plain = |delay_ms| NextPoll {
            delay_ms,
            stretched: false,
        };
        // (configured, server, budget, expected)
        let cases = [
            (60_000, None, None, plain(60_000)),
            (60_000, Some(120_000), None, plain(120_000)),
            (60_000, Some(30_000), None, plain(60_000)),
            (1_000, Some(60_000), None, plain(60_000)),
            (5_000, None, None, plain(5_000)),
            (60_000, None, budget(4_000, 3_600_000), plain(60_000)),
            (
                60_000,
                None,
                budget(10, 3_600_000),
                NextPoll {
                    delay_ms: 400_000,
                    stretched: true,
                },
            ),
            // The stretch starts from the server's interval: 30 polls fit at 120 s, 31 left.
            (60_000, Some(120_000), budget(31, 3_600_000), plain(120_000)),
            (
                60_000,
                Some(120_000),
                budget(21, 3_600_000),
                NextPoll {
                    delay_ms: 180_000,
                    stretched: true,
                },
            ),
        ];
        for (configured, server, budget, expected) in cases {
            assert_eq!(
                next_poll(configured, server, budget, now),
                expected,
                "{configured} {server:?} {budget:?}"
            );
        }
    }
}
