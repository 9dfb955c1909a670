//! Lenient reads of JSON fields for the typed payload views: a field of an unexpected type is
//! absent, never a failed parse, because a payload that grows or bends a field must not hide
//! the rest of the message from a bot.

use serde_json::Value;

/// `object[key]` as text: a string, or an integer (an id a server sent as a number).
pub(crate) fn text(object: &Value, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// `object[key]` as text, and only when it is not empty.
pub(crate) fn non_empty(object: &Value, key: &str) -> Option<String> {
    text(object, key).filter(|t| !t.is_empty())
}

/// `object[key]` when it is `true`.
// Only the Discord view has flags so far.
#[cfg_attr(not(feature = "discord"), allow(dead_code))]
pub(crate) fn flag(object: &Value, key: &str) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(false)
}
