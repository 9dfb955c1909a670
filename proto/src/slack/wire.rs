//! Socket Mode frames as they travel: `hello`, `disconnect`, envelopes in, acks out.
//!
//! Parsing is lenient field by field: a field of an unexpected type reads as absent instead of
//! failing the frame, because failing an envelope would leave it unacknowledged and Slack would
//! redeliver it forever. Only text that is not a JSON object is malformed. The envelope `payload`
//! stays a `Box<RawValue>`: it becomes the event's data byte for byte, without a `Value` tree.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

pub(crate) use super::text::Text;

/// A non-negative integer from a raw field, `None` when absent or of another type.
pub(crate) fn lenient_u64(raw: Option<&RawValue>) -> Option<u64> {
    serde_json::from_str(raw?.get()).ok()
}

/// A field's raw value when the field is there, `null` included (an `Option` would read `null`
/// as absent).
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| Present(Some(raw)))
    }
}

/// The top-level fields of any inbound frame; unknown fields are skipped without being parsed.
#[derive(Deserialize)]
struct FrameFields<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    envelope_id: Present<'a>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default, borrow)]
    reason: Text<'a>,
    #[serde(default, borrow)]
    num_connections: Option<&'a RawValue>,
    #[serde(default, borrow)]
    debug_info: Option<&'a RawValue>,
    #[serde(default, borrow)]
    retry_attempt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    retry_reason: Text<'a>,
}

#[derive(Deserialize)]
struct DebugInfoFields<'a> {
    #[serde(default, borrow)]
    host: Text<'a>,
    #[serde(default, borrow)]
    approximate_connection_time: Option<&'a RawValue>,
}

/// What Slack's `debug_info` says about a connection, when it says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DebugInfo {
    /// The Slack host serving the connection.
    pub host: Option<String>,
    /// Slack's estimate of the connection's lifetime, in seconds.
    pub approximate_connection_time: Option<u64>,
}

impl DebugInfo {
    fn parse(raw: Option<&RawValue>) -> DebugInfo {
        raw.and_then(|raw| serde_json::from_str::<DebugInfoFields<'_>>(raw.get()).ok())
            .map(|fields| DebugInfo {
                host: fields.host.0.map(Cow::into_owned),
                approximate_connection_time: lenient_u64(fields.approximate_connection_time),
            })
            .unwrap_or_default()
    }
}

/// An envelope: something Slack wants acknowledged by its `envelope_id`.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    /// The id to acknowledge, or what stood in its place (`missing`, `null`, `a number`, …) in an
    /// `events_api` envelope, which is still emitted (it cannot be acknowledged).
    pub envelope_id: Result<Cow<'a, str>, &'static str>,
    /// `events_api`, `slash_commands`, `interactive`, or a type added later.
    pub kind: Option<Cow<'a, str>>,
    /// The payload, exactly as received.
    pub payload: Option<Box<RawValue>>,
    /// 0 on the first delivery, then 1, 2 … on redeliveries.
    pub retry_attempt: Option<u64>,
    /// Why Slack redelivered (`timeout`); empty on first delivery.
    pub retry_reason: Option<Cow<'a, str>>,
}

/// One inbound text frame, classified.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// The connection is ready to receive envelopes.
    Hello {
        /// Slack's count of this app's registered connections.
        num_connections: Option<u64>,
        /// Host and expected lifetime.
        debug_info: DebugInfo,
    },
    /// Slack is about to close (or wants us to close) this connection.
    Disconnect {
        /// `warning`, `refresh_requested`, `link_disabled`, `too_many_websockets`, …
        reason: Option<Cow<'a, str>>,
        /// Host, when given.
        debug_info: DebugInfo,
    },
    /// A frame with an `envelope_id` (every type except `hello` and `disconnect`), or an
    /// `events_api` frame without a usable one.
    Envelope(Envelope<'a>),
    /// Anything else; only its type is kept, for the log.
    Other {
        /// The `type` field, when it is a string.
        kind: Option<Cow<'a, str>>,
    },
}

/// Classifies one text frame; `Err` when it is not a JSON object.
pub(crate) fn parse(text: &str) -> Result<Message<'_>, serde_json::Error> {
    if !text.trim_start().starts_with('{') {
        // serde's derived structs would also accept a JSON array, positionally.
        return Err(de::Error::custom("expected a JSON object"));
    }
    let fields: FrameFields<'_> = serde_json::from_str(text)?;
    let message = match fields.kind.0.as_deref() {
        Some("hello") => Message::Hello {
            num_connections: lenient_u64(fields.num_connections),
            debug_info: DebugInfo::parse(fields.debug_info),
        },
        Some("disconnect") => Message::Disconnect {
            reason: fields.reason.0,
            debug_info: DebugInfo::parse(fields.debug_info),
        },
        kind => match envelope_id(fields.envelope_id.0) {
            // Only an `events_api` payload can be recognised again without it (by `event_id`).
            Err(_) if kind != Some("events_api") => Message::Other {
                kind: fields.kind.0,
            },
            envelope_id => Message::Envelope(Envelope {
                envelope_id,
                kind: fields.kind.0,
                payload: fields.payload,
                retry_attempt: lenient_u64(fields.retry_attempt),
                retry_reason: fields.retry_reason.0.filter(|r| !r.is_empty()),
            }),
        },
    };
    Ok(message)
}

/// The `envelope_id` when it is a string, else what stands in its place, for the log.
fn envelope_id(raw: Option<&RawValue>) -> Result<Cow<'_, str>, &'static str> {
    let Some(raw) = raw else {
        return Err("missing");
    };
    match serde_json::from_str::<Text<'_>>(raw.get()) {
        Ok(Text(Some(id))) => Ok(id),
        _ => Err(match raw.get().trim_start().as_bytes().first() {
            Some(b'n') => "null",
            Some(b't' | b'f') => "a boolean",
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            _ => "a number",
        }),
    }
}

/// The acknowledgement frame `{"envelope_id":"…"}`.
pub(crate) fn ack(envelope_id: &str) -> String {
    #[derive(Serialize)]
    struct Ack<'a> {
        envelope_id: &'a str,
    }
    // Serialising a struct of one string cannot fail; the fallback keeps the type honest.
    serde_json::to_string(&Ack { envelope_id }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::text::IdText;

    fn summary(text: &str) -> String {
        match parse(text) {
            Err(_) => "malformed".into(),
            Ok(Message::Hello {
                num_connections,
                debug_info,
            }) => format!("hello {num_connections:?} {debug_info:?}"),
            Ok(Message::Disconnect { reason, debug_info }) => {
                format!("disconnect {reason:?} {:?}", debug_info.host)
            }
            Ok(Message::Envelope(e)) => format!(
                "envelope {} {:?} payload={:?} retry={:?}/{:?}",
                e.envelope_id
                    .unwrap_or_else(|what| format!("({what})").into()),
                e.kind,
                e.payload.map(|p| p.get().to_owned()),
                e.retry_attempt,
                e.retry_reason
            ),
            Ok(Message::Other { kind }) => format!("other {kind:?}"),
        }
    }

    #[test]
    fn classification_table() {
        let cases = [
            (
                r#"{"type":"hello","num_connections":2,"debug_info":{"host":"h1","approximate_connection_time":18060}}"#,
                r#"hello Some(2) DebugInfo { host: Some("h1"), approximate_connection_time: Some(18060) }"#,
            ),
            (
                r#"{"type":"hello","num_connections":"2","debug_info":[1]}"#,
                "hello None DebugInfo { host: None, approximate_connection_time: None }",
            ),
            (
                r#"{"type":"disconnect","reason":"warning","debug_info":{"host":"h\u0031"}}"#,
                r#"disconnect Some("warning") Some("h1")"#,
            ),
            (
                r#"{"type":"disconnect","reason":7}"#,
                "disconnect None None",
            ),
            (
                r#"{"envelope_id":"e1","type":"events_api","payload":{"a":1},"retry_attempt":1,"retry_reason":"timeout"}"#,
                r#"envelope e1 Some("events_api") payload=Some("{\"a\":1}") retry=Some(1)/Some("timeout")"#,
            ),
            (
                r#"{"envelope_id":"e2","type":"slash_commands","payload":null,"retry_attempt":"x","retry_reason":""}"#,
                r#"envelope e2 Some("slash_commands") payload=None retry=None/None"#,
            ),
            (
                r#"{"envelope_id":"e3","payload":"text"}"#,
                r#"envelope e3 None payload=Some("\"text\"") retry=None/None"#,
            ),
            (
                r#"{"envelope_id":{"id":"x"},"type":"slash_commands"}"#,
                r#"other Some("slash_commands")"#,
            ),
            (
                r#"{"envelope_id":{"id":"x"},"type":"events_api"}"#,
                r#"envelope (an object) Some("events_api") payload=None retry=None/None"#,
            ),
            (
                r#"{"type":"events_api","payload":{}}"#,
                r#"envelope (missing) Some("events_api") payload=Some("{}") retry=None/None"#,
            ),
            (
                r#"{"envelope_id":null,"type":"events_api"}"#,
                r#"envelope (null) Some("events_api") payload=None retry=None/None"#,
            ),
            (
                r#"{"envelope_id":12,"type":"events_api"}"#,
                r#"envelope (a number) Some("events_api") payload=None retry=None/None"#,
            ),
            (r#"{"type":"goodbye"}"#, r#"other Some("goodbye")"#),
            (r#"{}"#, "other None"),
            (r#"[1,2]"#, "malformed"),
            (r#""hello""#, "malformed"),
            (r#"{"type":"hello""#, "malformed"),
            (r#"{"type":"hello","type":"hello"}"#, "malformed"),
            ("", "malformed"),
        ];
        for (text, expected) in cases {
            assert_eq!(summary(text), expected, "{text}");
        }
    }

    #[test]
    fn ack_escapes() {
        assert_eq!(ack("a\"b"), r#"{"envelope_id":"a\"b"}"#);
    }

    #[test]
    fn loose_text_reads_ids() {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(borrow)]
            a: IdText<'a>,
            #[serde(borrow)]
            b: IdText<'a>,
            #[serde(borrow)]
            c: Text<'a>,
            #[serde(borrow)]
            d: IdText<'a>,
        }
        let probe: Probe<'_> = serde_json::from_str(
            r#"{"a":"C1","b":{"name":"x","id":"C2","more":[1,{"id":"no"}]},"c":{"id":"C3"},"d":[true]}"#,
        )
        .unwrap();
        assert_eq!(probe.a.0.as_deref(), Some("C1"));
        assert_eq!(probe.b.0.as_deref(), Some("C2"));
        assert_eq!(probe.c.0, None);
        assert_eq!(probe.d.0, None);
    }
}
