//! Realistic fake data shared by the simulators: ids in each service's format, timestamps in the
//! formats the services use, and short message texts. Randomness comes from a seeded generator
//! owned by each simulator, so a run with the same seed produces the same texts and ids.

use fastrand::Rng;
use jiff::Timestamp;
use jiff::fmt::rfc2822::{DateTimeParser, DateTimePrinter};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// Message texts, chat-like, of varied length.
const TEXTS: &[&str] = &[
    "deploy of api-gateway 2.14.1 finished on eu-west, all health checks green",
    "can someone review the retry change before the standup? it touches the backoff code",
    "the nightly benchmark regressed by 4% on the decode path, looking into it",
    "lunch at noon? the new ramen place opened next to the office",
    "heads up: the staging database will be read-only between 14:00 and 14:30 UTC",
    "merged the pagination fix, the Link header is now followed exactly as given",
    "I can reproduce the flaky test locally with SEED=1764 and two cores",
    "release notes draft is in the doc, please add anything I missed by Friday",
    "on-call handover: one open incident (elevated 502s on the edge), mitigated",
    "the zlib context must be reset on every reconnect, not every message",
];

/// One of the message texts.
pub(crate) fn text(rng: &mut Rng) -> &'static str {
    TEXTS
        .get(rng.usize(..TEXTS.len()))
        .copied()
        .unwrap_or("hello")
}

/// `len` lowercase hex digits.
pub(crate) fn hex(rng: &mut Rng, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(DIGITS[rng.usize(..16)]))
        .collect()
}

/// `len` characters from `A–Z0–9`, as in Slack ids.
pub(crate) fn upper_alnum(rng: &mut Rng, len: usize) -> String {
    const CHARS: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| char::from(CHARS[rng.usize(..36)]))
        .collect()
}

/// A random UUID in the 8-4-4-4-12 form (version 4 bits set).
pub(crate) fn uuid(rng: &mut Rng) -> String {
    let variant = ['8', '9', 'a', 'b'][rng.usize(..4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        variant,
        hex(rng, 3),
        hex(rng, 12)
    )
}

/// A Discord snowflake for an object created at `at`, with a per-process increment.
pub(crate) fn snowflake(at: Timestamp, increment: u64) -> u64 {
    let since_epoch = u64::try_from(at.as_millisecond() - DISCORD_EPOCH_MS).unwrap_or(0);
    (since_epoch << 22) | (1 << 17) | (increment & 0xfff)
}

/// Discord's timestamp format: `2025-11-25T19:46:40.123000+00:00`.
pub(crate) fn discord_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// GitHub's timestamp format: `2025-11-24T09:14:03Z`.
pub(crate) fn github_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Slack's message timestamp: Unix seconds with six decimals, `1764100000.000100`.
pub(crate) fn slack_ts(at: Timestamp) -> String {
    let micros = at.as_microsecond();
    format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    )
}

/// An HTTP date (RFC 9110 IMF-fixdate): `Mon, 24 Nov 2025 09:14:03 GMT`.
pub(crate) fn http_date(at: Timestamp) -> String {
    DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&at)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 GMT".to_owned())
}

/// The current time as an HTTP date, for `Date` headers.
pub(crate) fn http_date_now() -> String {
    http_date(Timestamp::now())
}

/// Parses an HTTP date as clients send it back in `If-Modified-Since`.
pub(crate) fn parse_http_date(text: &str) -> Option<Timestamp> {
    DateTimeParser::new().parse_timestamp(text.trim()).ok()
}

/// FNV-1a, 64 bits: a stable, dependency-free hash for ETags.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_services() {
        let at: Timestamp = "2025-11-24T09:14:03.123456Z".parse().unwrap();
        assert_eq!(github_time(at), "2025-11-24T09:14:03Z");
        assert_eq!(discord_time(at), "2025-11-24T09:14:03.123456+00:00");
        assert_eq!(slack_ts(at), "1763975643.123456");
        assert_eq!(http_date(at), "Mon, 24 Nov 2025 09:14:03 GMT");
        assert_eq!(
            parse_http_date("Mon, 24 Nov 2025 09:14:03 GMT").map(Timestamp::as_second),
            Some(at.as_second())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn ids_have_the_right_shape() {
        let mut rng = Rng::with_seed(1);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(id.chars().nth(14), Some('4'));
        assert!(
            upper_alnum(&mut rng, 9)
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        let at: Timestamp = "2025-11-24T09:14:03Z".parse().unwrap();
        let flake = snowflake(at, 5);
        assert_eq!((flake >> 22) as i64 + DISCORD_EPOCH_MS, at.as_millisecond());
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
