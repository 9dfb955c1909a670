//! The flat routing facts of an envelope (`slack_event_type`, `channel_id`, `user_id`, …), read
//! from the payload with borrowed structs so the hot path builds no `Value` tree.
//!
//! Where a fact lives depends on the envelope type: `events_api` nests it in `payload.event`,
//! `slash_commands` has flat `channel_id`/`user_id`, `interactive` has `channel`/`user` objects.
//! Each nested part is parsed on its own, so one odd field loses that fact, not the others.

use super::text::{IdText, Text};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Default, Deserialize)]
#[serde(default)]
struct PayloadFields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    event_id: Text<'a>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    command: Text<'a>,
    #[serde(borrow)]
    channel_id: Text<'a>,
    #[serde(borrow)]
    user_id: Text<'a>,
    #[serde(borrow)]
    channel: IdText<'a>,
    #[serde(borrow)]
    user: IdText<'a>,
    #[serde(borrow)]
    container: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    team_id: Text<'a>,
    #[serde(borrow)]
    team: IdText<'a>,
}

/// `payload.event` of an `events_api` envelope.
#[derive(Default, Deserialize)]
#[serde(default)]
struct InnerEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    channel: IdText<'a>,
    #[serde(borrow)]
    user: IdText<'a>,
    #[serde(borrow)]
    thread_ts: Text<'a>,
    #[serde(borrow)]
    ts: Text<'a>,
}

/// A `container` or `message` of an interactive payload: only its thread (and the message's own
/// `ts`, which starts one) matters here.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Threaded<'a> {
    #[serde(borrow)]
    thread_ts: Text<'a>,
    #[serde(borrow)]
    ts: Text<'a>,
    #[serde(borrow)]
    message_ts: Text<'a>,
}

/// Parses a JSON object into `T`; anything else (including an array, which derived structs would
/// read positionally) yields the default.
fn object_or_default<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.filter(|raw| raw.get().trim_start().starts_with('{'))
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

/// What the machine learns from one payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PayloadMeta {
    /// `payload.event_id`, the dedup key across redeliveries (events_api only).
    pub event_id: Option<String>,
    /// Flat meta entries for the event, without the envelope-level ones.
    pub meta: BTreeMap<Cow<'static, str>, String>,
}

/// The `conversation_key` of a Socket Mode payload of envelope type `envelope_type`
/// (`events_api`, `interactive`, `slash_commands`), the same key the Slack source puts in
/// `meta.conversation_key`: `slack:v1:<team>:<channel>:<thread_ts or ts>`, or
/// `slack:v1:<team>:<channel>` when the payload has no `thread_ts` nor `ts` (a slash command).
/// The team is the payload's `team_id` (or `team.id`); the channel, thread and ts are read where
/// the envelope type keeps them (`payload.event` for `events_api`). `None` without a team or a
/// channel, or when `payload` is not a JSON object. A webhook ingress receives the same payloads
/// and can use this as it is. See [`conversation`](crate::conversation) for the format.
///
/// ```
/// use openflume_proto::slack::conversation_key;
/// let payload = r#"{"team_id":"T1","event_id":"Ev1","event":{"type":"message","channel":"C1","ts":"1.2"}}"#;
/// assert_eq!(conversation_key("events_api", payload).as_deref(), Some("slack:v1:T1:C1:1.2"));
/// let command = r#"{"team_id":"T1","channel_id":"C2","command":"/deploy"}"#;
/// assert_eq!(conversation_key("slash_commands", command).as_deref(), Some("slack:v1:T1:C2"));
/// assert_eq!(conversation_key("events_api", "[1]"), None);
/// ```
pub fn conversation_key(envelope_type: &str, payload: &str) -> Option<String> {
    let raw: &RawValue = serde_json::from_str(payload).ok()?;
    extract(envelope_type, raw).meta.remove("conversation_key")
}

/// Reads the meta of a payload of envelope type `envelope_type`. A payload that is not an object
/// yields no facts.
pub(crate) fn extract(envelope_type: &str, payload: &RawValue) -> PayloadMeta {
    let fields: PayloadFields<'_> = object_or_default(Some(payload));
    let event: InnerEvent<'_> = object_or_default(fields.event);
    let container: Threaded<'_> = object_or_default(fields.container);
    let message: Threaded<'_> = object_or_default(fields.message);

    let slack_event_type = match envelope_type {
        "slash_commands" => fields.command.0,
        "interactive" => fields.kind.0,
        // events_api and types added later: the inner event's type, else the payload's own
        // (`app_rate_limited` has no inner event).
        _ => event.kind.0.or(fields.kind.0),
    };
    let facts: [(&'static str, Option<Cow<'_, str>>); 4] = [
        ("slack_event_type", slack_event_type),
        (
            "channel_id",
            event.channel.0.or(fields.channel_id.0).or(fields.channel.0),
        ),
        (
            "user_id",
            event.user.0.or(fields.user_id.0).or(fields.user.0),
        ),
        (
            "thread_ts",
            event
                .thread_ts
                .0
                .or(container.thread_ts.0)
                .or(message.thread_ts.0),
        ),
    ];
    let event_id = fields.event_id.0.filter(|id| !id.is_empty());
    // The thread, else the message's own ts (a message starts a thread), else the channel alone.
    let own_ts = match envelope_type {
        "slash_commands" => None,
        "interactive" => container.message_ts.0.or(container.ts.0).or(message.ts.0),
        _ => event.ts.0,
    };
    let thread = facts[3].1.clone().filter(|t| !t.is_empty()).or(own_ts);
    let team = fields.team_id.0.or(fields.team.0);
    let conversation_key = match (&team, &facts[1].1) {
        (Some(team), Some(channel)) => crate::conversation::slack(team, channel, thread.as_deref()),
        _ => None,
    };
    let mut meta: BTreeMap<Cow<'static, str>, String> = facts
        .into_iter()
        .filter_map(|(key, value)| Some((Cow::Borrowed(key), value?.into_owned())))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    if let Some(id) = &event_id {
        meta.insert("event_id".into(), id.to_string());
    }
    if let Some(key) = conversation_key {
        meta.insert("conversation_key".into(), key);
    }
    PayloadMeta {
        event_id: event_id.map(Cow::into_owned),
        meta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(envelope_type: &str, payload: &str) -> (Option<String>, Vec<(String, String)>) {
        let raw = RawValue::from_string(payload.to_owned()).unwrap();
        let out = extract(envelope_type, &raw);
        (
            out.event_id,
            out.meta
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
        )
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn extraction_table() {
        /// Envelope type, payload, expected event id, expected meta.
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);
        let cases: &[Case<'_>] = &[
            (
                "events_api",
                r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","channel":"C1","user":"U1","text":"hi","thread_ts":"1.2"}}"#,
                Some("Ev1"),
                &[
                    ("event_id", "Ev1"),
                    ("slack_event_type", "message"),
                    ("channel_id", "C1"),
                    ("user_id", "U1"),
                    ("thread_ts", "1.2"),
                ],
            ),
            (
                // channel_created: `channel` is an object, `user` absent at the event level.
                "events_api",
                r#"{"event_id":"Ev2","event":{"type":"channel_created","channel":{"id":"C9","name":"x","creator":"U7"}}}"#,
                Some("Ev2"),
                &[
                    ("event_id", "Ev2"),
                    ("slack_event_type", "channel_created"),
                    ("channel_id", "C9"),
                ],
            ),
            (
                // No inner event: the payload type stands in.
                "events_api",
                r#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1}"#,
                None,
                &[("slack_event_type", "app_rate_limited")],
            ),
            (
                "slash_commands",
                r#"{"command":"/deploy","channel_id":"C2","user_id":"U2","text":"now","is_enterprise_install":"false"}"#,
                None,
                &[
                    ("slack_event_type", "/deploy"),
                    ("channel_id", "C2"),
                    ("user_id", "U2"),
                ],
            ),
            (
                "interactive",
                r#"{"type":"block_actions","user":{"id":"U3","name":"n"},"channel":{"id":"C3"},"container":{"type":"message","thread_ts":"9.9"},"actions":[]}"#,
                None,
                &[
                    ("slack_event_type", "block_actions"),
                    ("channel_id", "C3"),
                    ("user_id", "U3"),
                    ("thread_ts", "9.9"),
                ],
            ),
            (
                "interactive",
                r#"{"type":"shortcut","user":{"id":"U4"},"message":{"thread_ts":"8.8"}}"#,
                None,
                &[
                    ("slack_event_type", "shortcut"),
                    ("user_id", "U4"),
                    ("thread_ts", "8.8"),
                ],
            ),
            (
                // Odd types lose only their own fact.
                "events_api",
                r#"{"event_id":5,"event":{"type":["x"],"channel":"C5","user":null,"thread_ts":1}}"#,
                None,
                &[("channel_id", "C5")],
            ),
            (
                // A non-object event falls back to the payload's own fields.
                "events_api",
                r#"{"event_id":"","event":"oops","type":"event_callback","user_id":"U6"}"#,
                None,
                &[("slack_event_type", "event_callback"), ("user_id", "U6")],
            ),
            ("events_api", r#""just a string""#, None, &[]),
            ("events_api", r#"[{"event_id":"Ev1"}]"#, None, &[]),
            ("interactive", r#"["block_actions"]"#, None, &[]),
            (
                "events_api",
                r#"{"event":["message","C1"],"type":"event_callback"}"#,
                None,
                &[("slack_event_type", "event_callback")],
            ),
            (
                "future_type",
                r#"{"type":"thing","event_id":"Ev7","channel_id":"","user_id":"U\u0037"}"#,
                Some("Ev7"),
                &[
                    ("event_id", "Ev7"),
                    ("slack_event_type", "thing"),
                    ("user_id", "U7"),
                ],
            ),
        ];
        for (envelope_type, payload, event_id, expected) in cases {
            let (got_id, got_meta) = meta_of(envelope_type, payload);
            assert_eq!(got_id.as_deref(), *event_id, "{payload}");
            assert_eq!(got_meta, pairs(expected), "{payload}");
        }
    }
}
