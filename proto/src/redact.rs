//! Keeping secrets out of logs, errors and debug output.
//!
//! Each function returns its input unchanged when there is nothing to hide; `url` and
//! `json_secrets` then borrow it instead of copying.
//!
//! ```
//! use openflume_proto::redact;
//! use std::borrow::Cow;
//! let hidden = redact::url("wss://h/?token=abc");
//! assert_eq!(hidden, "wss://h/?token=[redacted]");
//! assert!(matches!(redact::json_secrets(r#"{"op":1}"#), Cow::Borrowed(_)));
//! ```

use std::borrow::Cow;

const HIDDEN: &str = "[redacted]";

/// Query parameters whose values are credentials (Slack's single-use `ticket`).
const SECRET_QUERY_KEYS: &[&str] = &["ticket", "token", "access_token"];

/// A URL with the values of credential query parameters hidden.
///
/// ```
/// use openflume_proto::redact;
/// assert_eq!(
///     redact::url("wss://wss-primary.slack.com/link/?ticket=abc&app_id=A1"),
///     "wss://wss-primary.slack.com/link/?ticket=[redacted]&app_id=A1",
/// );
/// assert_eq!(redact::url("https://api.github.com/notifications"), "https://api.github.com/notifications");
/// ```
pub fn url(url: &str) -> Cow<'_, str> {
    let Some((base, query)) = url.split_once('?') else {
        return Cow::Borrowed(url);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut changed = false;
    let params: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            if SECRET_QUERY_KEYS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(key))
            {
                changed = true;
                Cow::Owned(format!("{key}={HIDDEN}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    if !changed {
        return Cow::Borrowed(url);
    }
    let mut out = format!("{base}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Cow::Owned(out)
}

/// A header value, hidden when the header carries credentials.
///
/// ```
/// use openflume_proto::redact;
/// assert_eq!(redact::header_value("Authorization", "Bot abc"), "[redacted]");
/// assert_eq!(redact::header_value("Accept", "application/json"), "application/json");
/// ```
pub fn header_value<'a>(name: &str, value: &'a str) -> &'a str {
    let secret = [
        "authorization",
        "cookie",
        "set-cookie",
        "x-slack-signature",
        "x-hub-signature-256",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name));
    if secret { HIDDEN } else { value }
}

/// JSON text with the string values of `"token"` keys hidden (Discord IDENTIFY and RESUME).
///
/// ```
/// use openflume_proto::redact;
/// let identify = r#"{"op":2,"d":{"token":"Bot.secret","intents":1}}"#;
/// assert_eq!(redact::json_secrets(identify), r#"{"op":2,"d":{"token":"[redacted]","intents":1}}"#);
/// ```
pub fn json_secrets(text: &str) -> Cow<'_, str> {
    const KEY: &str = "\"token\"";
    if !text.contains(KEY) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let after_key = at + KEY.len();
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        // Skip `: "` and the string value, honouring escapes.
        let trimmed = rest.trim_start_matches([' ', ':', '\t', '\n', '\r']);
        let skipped = rest.len() - trimmed.len();
        if let Some(value) = trimmed.strip_prefix('"') {
            out.push_str(&rest[..skipped]);
            let mut end = None;
            let mut escaped = false;
            for (i, c) in value.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            out.push('"');
            out.push_str(HIDDEN);
            out.push('"');
            rest = match end {
                Some(i) => &value[i + 1..],
                None => "",
            };
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secrets_handles_escapes_and_unterminated_values() {
        assert_eq!(
            json_secrets(r#"{"token" : "a\"b","x":1}"#),
            r#"{"token" : "[redacted]","x":1}"#
        );
        assert_eq!(json_secrets(r#"{"token":"abc"#), r#"{"token":"[redacted]""#);
        assert_eq!(json_secrets(r#"{"token":null}"#), r#"{"token":null}"#);
    }

    #[test]
    fn url_keeps_fragment_and_other_params() {
        assert_eq!(
            url("ws://h/?a=1&TICKET=x#f"),
            "ws://h/?a=1&TICKET=[redacted]#f"
        );
    }
}
