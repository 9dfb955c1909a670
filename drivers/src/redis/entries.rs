//! Stream entries as Redis returns them (`XRANGE`, `XREADGROUP`, `XAUTOCLAIM`): an id and the
//! item's JSON, or no fields for an entry trimmed away while it was pending.

use ::redis::Value;
use openflume_proto::hub::StreamId;

/// The field an item's JSON is stored under: `XADD STREAM * item JSON`.
pub(crate) const ITEM_FIELD: &str = "item";

/// One entry read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: StreamId,
    /// The item exactly as `listen` prints it; `None` for an entry that was trimmed (by
    /// `MAXLEN`) after it was delivered and before it was acknowledged.
    pub(crate) json: Option<String>,
}

impl Entry {
    /// The line `consume` prints: the item with a top-level `"event_id"` first, as
    /// `openflume log tail` prints it, but the id a string (`"1764100000000-0"`).
    pub(crate) fn line(&self) -> Option<String> {
        let json = self.json.as_deref()?;
        let rest = json.strip_prefix('{').unwrap_or(json);
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        Some(format!("{{\"event_id\":\"{}\"{sep}{rest}", self.id))
    }
}

/// The entries of an `XRANGE` reply (or of one stream of an `XREAD`): `[[id, [field, value, …]],
/// …]`. An entry whose id does not parse is left out; one without fields has no JSON.
pub(crate) fn parse_entries(value: &Value) -> Vec<Entry> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries.iter().filter_map(parse_entry).collect()
}

fn parse_entry(value: &Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let id = text(parts.first()?)?.parse().ok()?;
    let json = match parts.get(1) {
        Some(Value::Array(fields)) => fields
            .chunks(2)
            .find(|pair| pair.first().and_then(text).as_deref() == Some(ITEM_FIELD))
            .and_then(|pair| pair.get(1))
            .and_then(text),
        Some(Value::Map(fields)) => fields
            .iter()
            .find(|(name, _)| text(name).as_deref() == Some(ITEM_FIELD))
            .and_then(|(_, value)| text(value)),
        _ => None,
    };
    Some(Entry { id, json })
}

/// The entries of the first stream of an `XREAD`/`XREADGROUP` reply: `[[key, entries]]` (RESP2)
/// or `{key: entries}` (RESP3); none for a nil reply (a `BLOCK` that timed out).
pub(crate) fn parse_read(value: &Value) -> Vec<Entry> {
    match value {
        Value::Array(streams) => streams
            .first()
            .and_then(|stream| match stream {
                Value::Array(pair) => pair.get(1),
                _ => None,
            })
            .map(parse_entries)
            .unwrap_or_default(),
        Value::Map(streams) => streams
            .first()
            .map(|(_, entries)| parse_entries(entries))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A string reply as text.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entries_parse_from_range_and_read_replies() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk("5-1"),
                Value::Array(vec![bulk("item"), bulk(r#"{"kind":"log"}"#)]),
            ]),
            Value::Array(vec![bulk("5-2"), Value::Nil]),
            Value::Array(vec![bulk("nonsense"), Value::Nil]),
            Value::Int(3),
        ]);
        let parsed = parse_entries(&entries);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].line().as_deref(),
            Some(r#"{"event_id":"5-1","kind":"log"}"#)
        );
        assert_eq!(parsed[1].json, None);
        let read = Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]);
        assert_eq!(parse_read(&read), parsed);
        let resp3 = Value::Map(vec![(bulk("s"), entries)]);
        assert_eq!(parse_read(&resp3), parsed);
        assert!(parse_read(&Value::Nil).is_empty());
    }
}
