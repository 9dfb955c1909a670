//! How a forwarded delivery is signed, so the receiver can tell it came from this openflume and
//! was not altered: two signatures over the same body, with one key.
//!
//! - `X-Openflume-Signature: sha256=<hex>`: HMAC-SHA256 of the body (GitHub's scheme, the one
//!   most receivers already check).
//! - Standard Webhooks (standardwebhooks.com): `webhook-id` (the event's id in the log, or its
//!   Redis Stream id), `webhook-timestamp` (Unix seconds of this attempt) and
//!   `webhook-signature: v1,<base64>`, the HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`.
//!   The timestamp is signed, so a receiver can refuse old replays.
//!
//! **The key.** A secret that starts with `whsec_` is a Standard Webhooks secret: the key is the
//! base64 after the prefix (and a secret whose rest is not base64 is refused when the target is
//! configured, not guessed at). Any other secret is used as its bytes. Both headers use the
//! same key, so a receiver needs one secret whichever header it checks.

use crate::{ConfigError, HttpRequest};
use std::fmt;

/// openflume's own signature header: `sha256=<hex>` of the body.
///
/// ```
/// assert_eq!(openflume_proto::outbox::SIGNATURE_HEADER, "X-Openflume-Signature");
/// ```
pub const SIGNATURE_HEADER: &str = "X-Openflume-Signature";
/// The Standard Webhooks message id: the event's id in the log (`42`), or its Redis Stream id
/// (`1764100000000-0`).
///
/// ```
/// assert_eq!(openflume_proto::outbox::WEBHOOK_ID, "webhook-id");
/// ```
pub const WEBHOOK_ID: &str = "webhook-id";
/// The Standard Webhooks timestamp: Unix seconds of the attempt.
///
/// ```
/// assert_eq!(openflume_proto::outbox::WEBHOOK_TIMESTAMP, "webhook-timestamp");
/// ```
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The Standard Webhooks signature: `v1,<base64>`.
///
/// ```
/// assert_eq!(openflume_proto::outbox::WEBHOOK_SIGNATURE, "webhook-signature");
/// ```
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The HMAC key derived from a target's secret. `Debug` shows its length only.
///
/// ```
/// use openflume_proto::outbox::SigningKey;
/// let plain = SigningKey::from_secret("s3cret").unwrap();
/// assert_eq!(plain.as_bytes(), b"s3cret");
/// let standard = SigningKey::from_secret("whsec_aGkhPw==").unwrap();
/// assert_eq!(standard.as_bytes(), b"hi!?");
/// assert!(SigningKey::from_secret("whsec_not base64").is_err());
/// assert_eq!(format!("{plain:?}"), "SigningKey(6 bytes)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// The key of `secret`: the base64 after `whsec_`, or the secret's bytes.
    ///
    /// ```
    /// use openflume_proto::outbox::SigningKey;
    /// let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// assert_eq!(key.as_bytes().len(), 24);
    /// // Empty secrets are refused: every receiver could forge them.
    /// assert!(SigningKey::from_secret("").is_err());
    /// assert!(SigningKey::from_secret("whsec_").is_err());
    /// ```
    pub fn from_secret(secret: &str) -> Result<SigningKey, ConfigError> {
        let key = match secret.strip_prefix("whsec_") {
            Some(encoded) => {
                crate::webhook::base64_decode(encoded).ok_or_else(|| ConfigError::Invalid {
                    field: "secret",
                    reason: "a whsec_ secret must be base64 after the prefix".to_owned(),
                })?
            }
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(ConfigError::Empty { field: "secret" });
        }
        Ok(SigningKey(key))
    }

    /// The key's bytes.
    ///
    /// ```
    /// use openflume_proto::outbox::SigningKey;
    /// assert_eq!(SigningKey::from_secret("k").unwrap().as_bytes(), b"k");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// The `X-Openflume-Signature` value of `body`: `sha256=` and the hex HMAC-SHA256.
///
/// ```
/// use openflume_proto::outbox::{SigningKey, body_signature};
/// let key = SigningKey::from_secret("It's a Secret to Everybody").unwrap();
/// // GitHub's documented example: the same scheme.
/// assert_eq!(
///     body_signature(&key, b"Hello, World!"),
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
/// );
/// ```
pub fn body_signature(key: &SigningKey, body: &[u8]) -> String {
    let tag = crate::webhook::hmac_sha256(key.as_bytes(), &[body]);
    format!("sha256={}", crate::bytes::to_hex(&tag))
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
///
/// ```
/// use openflume_proto::outbox::{SigningKey, standard_signature};
/// let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let signature = standard_signature(&key, "7", 1_764_100_000, b"{}");
/// assert!(signature.starts_with("v1,") && signature.len() == 3 + 44);
/// ```
pub fn standard_signature(key: &SigningKey, id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let timestamp = timestamp_s.to_string();
    let tag = crate::webhook::hmac_sha256(
        key.as_bytes(),
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", crate::webhook::base64_encode(&tag))
}

/// The POST of one delivery attempt: `body` (the log line of event `event_id`) to `url`, with
/// both signatures for `timestamp_s`. `webhook-id` is the event's position as text: an integer
/// id, or a stream id (`1764100000000-0`).
pub(crate) fn request(
    url: &str,
    key: &SigningKey,
    event_id: impl fmt::Display,
    timestamp_s: i64,
    body: &str,
) -> HttpRequest {
    let id = event_id.to_string();
    HttpRequest::new("POST", url)
        .header("Content-Type", "application/json")
        .header(SIGNATURE_HEADER, body_signature(key, body.as_bytes()))
        .header(WEBHOOK_ID, id.as_str())
        .header(WEBHOOK_TIMESTAMP, timestamp_s.to_string())
        .header(
            WEBHOOK_SIGNATURE,
            standard_signature(key, &id, timestamp_s, body.as_bytes()),
        )
        .body(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"event_id":7,"kind":"event","event":{"source":"custom","type":"deploys","data":{"deploy":1},"meta":{},"receivedAt":1764100000000}}"#;

    /// The expected values were computed apart from this code, with Python's standard library:
    ///
    /// ```text
    /// python3 -c 'import hmac,hashlib,base64,sys
    /// body=open("body.json","rb").read()          # BODY above, no newline
    /// for s in ["forward-test-secret","whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]:
    ///     k=base64.b64decode(s[6:]) if s.startswith("whsec_") else s.encode()
    ///     print("sha256="+hmac.new(k,body,hashlib.sha256).hexdigest())
    ///     print("v1,"+base64.b64encode(hmac.new(k,b"7.1764100000."+body,hashlib.sha256).digest()).decode())'
    /// ```
    #[test]
    fn signatures_match_an_independent_implementation() {
        let cases = [
            (
                "forward-test-secret",
                "sha256=7784e32e24cace368c63e80eb79a6362c9b645404f12fa01d226d1670e726390",
                "v1,HWJydVY/FKzFJ240fEiEmZHYXCzUatUhjd+oO/rgTng=",
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "sha256=bc1781b4135b923b9b83d0db4c7d7661c06d0fec9f79ad14287f3a892c02db27",
                "v1,xhBZLFwc7unAtZiMOLCeRz2pxwQThY9Xwk+56jokuEg=",
            ),
        ];
        for (secret, body_sig, standard_sig) in cases {
            let key = SigningKey::from_secret(secret).unwrap();
            let request = request("https://hooks.example/in", &key, 7, 1_764_100_000, BODY);
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(header(SIGNATURE_HEADER), Some(body_sig), "{secret}");
            assert_eq!(header(WEBHOOK_SIGNATURE), Some(standard_sig), "{secret}");
            assert_eq!(header(WEBHOOK_ID), Some("7"));
            assert_eq!(header(WEBHOOK_TIMESTAMP), Some("1764100000"));
            assert_eq!(header("Content-Type"), Some("application/json"));
            assert_eq!(request.body.as_str(), Some(BODY));
            assert_eq!(request.method, "POST");
        }
    }
}
