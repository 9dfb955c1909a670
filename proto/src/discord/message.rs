//! The typed view of a `MESSAGE_CREATE` dispatch: the fields a bot routes on, read from the
//! event's data on demand (the data stays the `d` object exactly as Discord sent it).

use crate::Event;
use crate::view::{flag, non_empty, text};
use serde_json::Value;

/// A message a bot routes on: where it was posted, who wrote it, what it says, what it answers
/// and whom it mentions.
///
/// Lenient: only `id`, `channel_id` and `author.id` are required; other fields that are absent
/// or of an unexpected type read as empty, and fields this view does not name are ignored (they
/// are still in [`Event::data`]). `#[non_exhaustive]`: later versions may name more fields.
///
/// A message inside a thread has the thread as its `channel_id` (Discord's threads are
/// channels); a reply names the message it answers in [`DiscordMessage::reply_to`].
///
/// ```
/// use openflume_proto::{Event, RawJson, UnixMillis};
/// let data = RawJson::from_str(r#"{"id":"11","channel_id":"22","guild_id":"33",
///     "author":{"id":"44","username":"ada","bot":false},"content":"hi <@55>",
///     "mentions":[{"id":"55","username":"bob"}],"mention_everyone":false,
///     "message_reference":{"message_id":"10"},"nonce":"x","flags":0}"#).unwrap();
/// let event = Event::new("discord", "MESSAGE_CREATE", data, UnixMillis(0));
/// let message = event.discord_message().unwrap();
/// assert_eq!((message.channel_id.as_str(), message.author_id.as_str()), ("22", "44"));
/// assert_eq!(message.content, "hi <@55>");
/// assert_eq!(message.mentions, ["55"]);
/// assert_eq!(message.reply_to.as_deref(), Some("10"));
/// assert!(!message.author_is_bot);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscordMessage {
    /// The message id.
    pub id: String,
    /// The channel (or thread) it was posted in.
    pub channel_id: String,
    /// The guild, `None` in direct messages.
    pub guild_id: Option<String>,
    /// The author's user id.
    pub author_id: String,
    /// The author's username.
    pub author_name: Option<String>,
    /// Whether the author is a bot (answering bots is how loops start).
    pub author_is_bot: bool,
    /// The text; empty without the `MESSAGE_CONTENT` intent (except in DMs and mentions).
    pub content: String,
    /// The ids of the users mentioned.
    pub mentions: Vec<String>,
    /// The ids of the roles mentioned.
    pub mention_roles: Vec<String>,
    /// Whether `@everyone` or `@here` was mentioned.
    pub mentions_everyone: bool,
    /// The message this one replies to (`message_reference.message_id`).
    pub reply_to: Option<String>,
}

impl Event {
    /// The message of a Discord `MESSAGE_CREATE` event; `None` for any other event, or when
    /// `id`, `channel_id` or `author.id` is missing. Parsed from [`Event::data`] on each call.
    ///
    /// ```
    /// use openflume_proto::{Event, RawJson, UnixMillis};
    /// let typing = Event::new("discord", "TYPING_START", RawJson::from_str(r#"{"channel_id":"1"}"#).unwrap(), UnixMillis(0));
    /// assert_eq!(typing.discord_message(), None);
    /// let no_author = RawJson::from_str(r#"{"id":"1","channel_id":"2","content":"x"}"#).unwrap();
    /// assert_eq!(Event::new("discord", "MESSAGE_CREATE", no_author, UnixMillis(0)).discord_message(), None);
    /// ```
    pub fn discord_message(&self) -> Option<DiscordMessage> {
        if self.source != super::SOURCE || self.event_type != "MESSAGE_CREATE" {
            return None;
        }
        let data: Value = serde_json::from_str(self.data.get()).ok()?;
        let author = data.get("author").filter(|a| a.is_object())?;
        let ids = |key: &str, of_objects: bool| -> Vec<String> {
            let Some(items) = data.get(key).and_then(Value::as_array) else {
                return Vec::new();
            };
            items
                .iter()
                .filter_map(|item| match (of_objects, item) {
                    (true, object) => non_empty(object, "id"),
                    (false, Value::String(id)) => Some(id.clone()),
                    (false, _) => None,
                })
                .collect()
        };
        Some(DiscordMessage {
            id: non_empty(&data, "id")?,
            channel_id: non_empty(&data, "channel_id")?,
            guild_id: non_empty(&data, "guild_id"),
            author_id: non_empty(author, "id")?,
            author_name: text(author, "username"),
            author_is_bot: flag(author, "bot"),
            content: text(&data, "content").unwrap_or_default(),
            mentions: ids("mentions", true),
            mention_roles: ids("mention_roles", false),
            mentions_everyone: flag(&data, "mention_everyone"),
            reply_to: data
                .get("message_reference")
                .and_then(|reference| non_empty(reference, "message_id")),
        })
    }
}
