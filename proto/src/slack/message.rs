//! The typed view of a Slack `message` event (an `events_api` envelope whose `event.type` is
//! `message`), from Socket Mode or the Events API webhook alike: the fields a bot routes on, read
//! from the event's data on demand (the data stays the payload exactly as Slack sent it).

use crate::Event;
use crate::view::{non_empty, text};
use serde_json::Value;

/// A message a bot routes on: where it was posted, who wrote it, what it says, which thread it
/// is in and whom it mentions.
///
/// Lenient: only `event.channel` and `event.ts` are required; other fields that are absent or
/// of an unexpected type read as empty, and fields this view does not name are ignored (they are
/// still in [`Event::data`]). `#[non_exhaustive]`: later versions may name more fields.
///
/// ```
/// use openflume_proto::{Event, RawJson, UnixMillis};
/// let data = RawJson::from_str(r#"{"team_id":"T1","event_id":"Ev1","event":{"type":"message",
///     "channel":"C1","user":"U1","text":"hey <@U2> and <@U3|carol>","ts":"17.2",
///     "thread_ts":"17.1","channel_type":"channel","blocks":[]}}"#).unwrap();
/// let event = Event::new("slack", "events_api", data, UnixMillis(0));
/// let message = event.slack_message().unwrap();
/// assert_eq!((message.channel.as_str(), message.user.as_deref()), ("C1", Some("U1")));
/// assert_eq!(message.thread_ts.as_deref(), Some("17.1"));
/// assert_eq!(message.mentions, ["U2", "U3"]);
/// assert_eq!(message.team.as_deref(), Some("T1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlackMessage {
    /// The channel id (`C…`, `D…` for a DM, `G…`).
    pub channel: String,
    /// The author's user id; `None` for messages without one (bots, some subtypes).
    pub user: Option<String>,
    /// The bot that posted it, when a bot did.
    pub bot_id: Option<String>,
    /// The text, with mentions as `<@U…>`; empty when the message has none.
    pub text: String,
    /// The message's timestamp, its id within the channel.
    pub ts: String,
    /// The thread's parent `ts`, when the message is in a thread (the parent has its own `ts`).
    pub thread_ts: Option<String>,
    /// `message_changed`, `bot_message`, `channel_join`, …; `None` for a plain new message.
    pub subtype: Option<String>,
    /// `channel`, `im`, `mpim`, `group`.
    pub channel_type: Option<String>,
    /// The workspace (`team_id` of the payload, else the event's `team`).
    pub team: Option<String>,
    /// The user ids mentioned in the text (`<@U…>` and `<@U…|name>`), in order, without repeats.
    pub mentions: Vec<String>,
}

impl Event {
    /// The message of a Slack `events_api` event whose inner event is a `message`; `None` for
    /// any other event, or when `event.channel` or `event.ts` is missing. Parsed from
    /// [`Event::data`] on each call.
    ///
    /// ```
    /// use openflume_proto::{Event, RawJson, UnixMillis};
    /// let reaction = RawJson::from_str(r#"{"event":{"type":"reaction_added","user":"U1"}}"#).unwrap();
    /// assert_eq!(Event::new("slack", "events_api", reaction, UnixMillis(0)).slack_message(), None);
    /// let no_channel = RawJson::from_str(r#"{"event":{"type":"message","ts":"1.0"}}"#).unwrap();
    /// assert_eq!(Event::new("slack", "events_api", no_channel, UnixMillis(0)).slack_message(), None);
    /// ```
    pub fn slack_message(&self) -> Option<SlackMessage> {
        if self.source != super::SOURCE || self.event_type != "events_api" {
            return None;
        }
        let payload: Value = serde_json::from_str(self.data.get()).ok()?;
        let event = payload.get("event").filter(|e| e.is_object())?;
        if event.get("type").and_then(Value::as_str) != Some("message") {
            return None;
        }
        let body = text(event, "text").unwrap_or_default();
        Some(SlackMessage {
            channel: non_empty(event, "channel")?,
            ts: non_empty(event, "ts")?,
            user: non_empty(event, "user"),
            bot_id: non_empty(event, "bot_id"),
            thread_ts: non_empty(event, "thread_ts"),
            subtype: non_empty(event, "subtype"),
            channel_type: non_empty(event, "channel_type"),
            team: non_empty(&payload, "team_id").or_else(|| non_empty(event, "team")),
            mentions: user_mentions(&body),
            text: body,
        })
    }
}

/// The user ids of `<@U…>` and `<@U…|name>` in message text, in order, without repeats.
fn user_mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for piece in text.split("<@").skip(1) {
        let Some((inside, _)) = piece.split_once('>') else {
            continue;
        };
        let id = inside.split('|').next().unwrap_or_default();
        let plausible = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if plausible && !found.iter().any(|f| f == id) {
            found.push(id.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_read_from_the_text() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("<@U1>", &["U1"]),
            ("a <@U1|ann> b <@W2> <@U1>", &["U1", "W2"]),
            ("<@> <@U1 <@U2>", &["U2"]),
            ("<!here> <#C1|general> <@U3", &[]),
            // Slack escapes `<` in text, so a mention is never nested; an unclosed one is text.
            ("<@U4|name with <@U5>>", &["U5"]),
        ];
        for (text, expected) in cases {
            assert_eq!(user_mentions(text), *expected, "{text:?}");
        }
    }
}
