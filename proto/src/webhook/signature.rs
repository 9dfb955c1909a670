//! The signature schemes the ingress accepts, each an HMAC-SHA256 over the exact raw bytes that
//! arrived, compared in constant time (ring's `hmac::verify`):
//! - Slack v0: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.
//! - GitHub and the common convention: `X-Hub-Signature-256` / `X-Signature-256: sha256=<hex>`
//!   over the body.
//! - Standard Webhooks: `webhook-signature: v1,<base64> …` over `{webhook-id}.{webhook-timestamp}.{body}`,
//!   keyed with the base64 secret after its `whsec_` prefix.
//!
//! A rejection says what was wrong (missing, malformed, stale, mismatch) and never what was sent:
//! the signature itself stays out of every log.

use super::encoding::base64_decode;
use ring::hmac;
use std::fmt;

/// Why a request's signature was refused (answered 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The header is absent.
    Missing(&'static str),
    /// The header is present but not in the scheme's form.
    Malformed(&'static str),
    /// The timestamp is outside the window, by this many seconds.
    Stale { skew_s: i64 },
    /// Well-formed, but computed with another secret or over other bytes.
    Mismatch,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing(header) => write!(f, "missing {header}"),
            Rejection::Malformed(header) => write!(f, "malformed {header}"),
            Rejection::Stale { skew_s } if *skew_s > 0 => {
                write!(f, "stale timestamp ({skew_s} s old)")
            }
            Rejection::Stale { skew_s } => {
                write!(f, "timestamp {} s in the future", skew_s.unsigned_abs())
            }
            Rejection::Mismatch => f.write_str("bad signature"),
        }
    }
}

/// HMAC-SHA256 of `parts` joined, as sent.
pub(crate) fn sign(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// Checks `tag` against the HMAC of `message`, in constant time.
fn verify(key: &[u8], message: &[u8], tag: &[u8]) -> Result<(), Rejection> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, message, tag).map_err(|_| Rejection::Mismatch)
}

/// Checks a Unix-seconds timestamp header against `now_s`, within `tolerance_s` either way.
fn fresh(
    header: &'static str,
    value: Option<&str>,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), Rejection> {
    let at: i64 = value
        .ok_or(Rejection::Missing(header))?
        .trim()
        .parse()
        .map_err(|_| Rejection::Malformed(header))?;
    let skew_s = now_s.saturating_sub(at);
    if skew_s.saturating_abs() > tolerance_s {
        return Err(Rejection::Stale { skew_s });
    }
    Ok(())
}

/// A hex signature after `prefix` (`v0=`, `sha256=`), 32 bytes.
fn hex_tag(header: &'static str, value: Option<&str>, prefix: &str) -> Result<Vec<u8>, Rejection> {
    let value = value.ok_or(Rejection::Missing(header))?.trim();
    value
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| crate::bytes::from_hex(value.get(prefix.len()..)?))
        .filter(|tag| tag.len() == 32)
        .ok_or(Rejection::Malformed(header))
}

/// Slack's v0 scheme.
pub(crate) fn slack_v0(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), Rejection> {
    const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
    fresh(TIMESTAMP, timestamp, now_s, tolerance_s)?;
    let tag = hex_tag("X-Slack-Signature", signature, "v0=")?;
    let timestamp = timestamp.unwrap_or_default().trim().as_bytes();
    verify(secret, &[b"v0:", timestamp, b":", body].concat(), &tag)
}

/// `sha256=<hex>` over the body, in `header` (GitHub's `X-Hub-Signature-256`, or the common
/// `X-Signature-256`).
pub(crate) fn sha256_hex(
    secret: &[u8],
    header: &'static str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), Rejection> {
    let tag = hex_tag(header, signature, "sha256=")?;
    // The body alone is signed: checked where it lies, not copied (GitHub's go up to 25 MiB).
    verify(secret, body, &tag)
}

/// The Standard Webhooks headers of one request.
pub(crate) struct StandardHeaders<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) timestamp: Option<&'a str>,
    pub(crate) signature: Option<&'a str>,
}

/// Signatures looked at in one `webhook-signature` header (senders list one per active secret).
const MAX_SIGNATURES: usize = 8;

/// Standard Webhooks (`v1,<base64>`; several space-separated signatures, any may match).
pub(crate) fn standard(
    key: &[u8],
    headers: &StandardHeaders<'_>,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), Rejection> {
    let id = headers.id.ok_or(Rejection::Missing("webhook-id"))?;
    fresh("webhook-timestamp", headers.timestamp, now_s, tolerance_s)?;
    let timestamp = headers.timestamp.unwrap_or_default().trim();
    let signatures = headers
        .signature
        .ok_or(Rejection::Missing("webhook-signature"))?;
    let tags: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .take(MAX_SIGNATURES)
        .filter_map(base64_decode)
        .filter(|tag| tag.len() == 32)
        .collect();
    if tags.is_empty() {
        return Err(Rejection::Malformed("webhook-signature"));
    }
    // One signed message for every candidate signature.
    let message = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    tags.iter()
        .find_map(|tag| verify(key, &message, tag).ok())
        .ok_or(Rejection::Mismatch)
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`. A secret that is not
/// in that form is used as its bytes, as the simple senders that share a plain string do.
pub(crate) fn standard_key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64_decode(encoded).unwrap_or_else(|| secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::to_hex;

    /// Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
    #[test]
    fn slack_documented_example() {
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let at = 1531420618;
        assert_eq!(
            slack_v0(secret, Some("1531420618"), Some(signature), body, at, 300),
            Ok(())
        );
        // One byte of the body changed, another secret, a replay ten minutes later.
        let mut tampered = body.to_vec();
        tampered[6] ^= 1;
        assert_eq!(
            slack_v0(
                secret,
                Some("1531420618"),
                Some(signature),
                &tampered,
                at,
                300
            ),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            slack_v0(b"other", Some("1531420618"), Some(signature), body, at, 300),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            slack_v0(
                secret,
                Some("1531420618"),
                Some(signature),
                body,
                at + 600,
                300
            ),
            Err(Rejection::Stale { skew_s: 600 })
        );
        assert_eq!(
            slack_v0(secret, None, Some(signature), body, at, 300),
            Err(Rejection::Missing("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            slack_v0(secret, Some("1531420618"), Some("v1=abc"), body, at, 300),
            Err(Rejection::Malformed("X-Slack-Signature"))
        );
    }

    /// GitHub's documented example (docs.github.com, "Validating webhook deliveries").
    #[test]
    fn github_documented_example() {
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let header = "X-Hub-Signature-256";
        assert_eq!(
            sha256_hex(
                b"It's a Secret to Everybody",
                header,
                Some(signature),
                b"Hello, World!"
            ),
            Ok(())
        );
        assert_eq!(
            sha256_hex(
                b"It's a Secret to Everybody",
                header,
                Some(signature),
                b"Hello, World"
            ),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            sha256_hex(b"x", header, None, b""),
            Err(Rejection::Missing(header))
        );
        assert_eq!(
            sha256_hex(b"x", header, Some("sha1=00"), b""),
            Err(Rejection::Malformed(header))
        );
    }

    /// The Standard Webhooks specification's example secret, signed here and checked both ways.
    #[test]
    fn standard_webhooks_signatures() {
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(key.len(), 24);
        let body = br#"{"test": 2432232314}"#;
        let tag = sign(
            &key,
            &[
                b"msg_p5jXN8AQM9LWM0D4loKWxJek",
                b".",
                b"1614265330",
                b".",
                body,
            ],
        );
        let good = format!("v1,{}", super::super::encoding::base64_encode(&tag));
        fn headers(signature: &str) -> StandardHeaders<'_> {
            StandardHeaders {
                id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
                timestamp: Some("1614265330"),
                signature: Some(signature),
            }
        }
        let at = 1614265330;
        assert_eq!(standard(&key, &headers(&good), body, at, 300), Ok(()));
        // A rotated secret: the sender lists two signatures, one matches.
        let both = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {good}");
        assert_eq!(standard(&key, &headers(&both), body, at, 300), Ok(()));
        assert_eq!(
            standard(&key, &headers(&good), body, at + 301, 300),
            Err(Rejection::Stale { skew_s: 301 })
        );
        assert_eq!(
            standard(&key, &headers("v2,abc"), body, at, 300),
            Err(Rejection::Malformed("webhook-signature"))
        );
        assert_eq!(
            standard(&key, &headers(&good), b"{}", at, 300),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn rejections_name_the_header_not_the_value() {
        let text = Rejection::Malformed("X-Slack-Signature").to_string();
        assert_eq!(text, "malformed X-Slack-Signature");
        assert_eq!(
            Rejection::Stale { skew_s: -40 }.to_string(),
            "timestamp 40 s in the future"
        );
        assert_eq!(
            to_hex(&sign(b"k", &[b"a", b"b"])),
            to_hex(&sign(b"k", &[b"ab"]))
        );
    }
}
