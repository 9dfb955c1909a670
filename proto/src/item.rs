//! The firehose items: events from a source and logs about it, one JSON object per line.

use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// A JSON document kept as the exact text received, so the hot path never builds a `Value` tree.
///
/// The text is valid JSON by construction: every constructor checks it, or takes it from a parse
/// that did. A Discord dispatch's `data` is a span of the frame it arrived in, so the frame's
/// buffer becomes the event's without a copy.
///
/// ```
/// use openflume_proto::RawJson;
/// let raw = RawJson::from_str(r#"{"content":"hi"}"#).unwrap();
/// assert_eq!(raw.get(), r#"{"content":"hi"}"#);
/// assert_eq!(raw.parse().unwrap()["content"], "hi");
/// ```
#[derive(Clone)]
pub struct RawJson {
    text: String,
    span: Range<usize>,
}

impl RawJson {
    /// Validates `json` and keeps it as given (without surrounding whitespace).
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// let raw = RawJson::from_str(" [1, 2] \n").unwrap();
    /// assert_eq!(raw.get(), "[1, 2]");
    /// assert!(RawJson::from_str("{not json").is_err());
    /// ```
    #[allow(clippy::should_implement_trait)] // fallible with serde_json's error, unlike FromStr's contract here
    pub fn from_str(json: &str) -> Result<RawJson, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(json)?;
        Ok(RawJson::whole(raw.get().to_owned()))
    }

    /// Takes a document that serde_json already validated (e.g. a `Box<RawValue>` field).
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// use serde_json::value::RawValue;
    /// let raw: Box<RawValue> = serde_json::from_str(r#"{"id": "1"}"#).unwrap();
    /// assert_eq!(RawJson::from_raw(raw).get(), r#"{"id": "1"}"#);
    /// ```
    pub fn from_raw(raw: Box<RawValue>) -> RawJson {
        RawJson::whole(Box::<str>::from(raw).into_string())
    }

    /// Serialises a value (for data the machine builds itself, such as a cron tick).
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// let raw = RawJson::from_value(&serde_json::json!({"schedule": "* * * * *"}));
    /// assert_eq!(raw.get(), r#"{"schedule":"* * * * *"}"#);
    /// ```
    pub fn from_value<T: Serialize>(value: &T) -> RawJson {
        // Serialising our own `Serialize` types into a string cannot fail; fall back to null if it ever did.
        serde_json::value::to_raw_value(value)
            .map(RawJson::from_raw)
            .unwrap_or_else(|_| RawJson::null())
    }

    /// The JSON `null`.
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// assert_eq!(RawJson::null().get(), "null");
    /// assert!(RawJson::null().parse().unwrap().is_null());
    /// ```
    pub fn null() -> RawJson {
        RawJson::whole("null".to_owned())
    }

    /// `text[span]`, which a serde_json parse of `text` accepted as one JSON value.
    // Only the Discord envelope scanner hands out spans; kept (and tested) without it.
    #[cfg_attr(not(feature = "discord"), allow(dead_code))]
    pub(crate) fn from_parsed_span(text: String, span: Range<usize>) -> RawJson {
        if text.get(span.clone()).is_some() {
            RawJson { text, span }
        } else {
            RawJson::null()
        }
    }

    fn whole(text: String) -> RawJson {
        let span = 0..text.len();
        RawJson { text, span }
    }

    /// The JSON text.
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// let raw = RawJson::from_str(r#"{"b": 1,  "a": 2}"#).unwrap();
    /// // The text as received: key order and spacing are kept.
    /// assert_eq!(raw.get(), r#"{"b": 1,  "a": 2}"#);
    /// ```
    pub fn get(&self) -> &str {
        self.text.get(self.span.clone()).unwrap_or("null")
    }

    /// Parses the text into a `Value` on demand.
    ///
    /// ```
    /// use openflume_proto::RawJson;
    /// let raw = RawJson::from_str(r#"{"user": {"id": "42"}}"#).unwrap();
    /// assert_eq!(raw.parse().unwrap()["user"]["id"], "42");
    /// ```
    pub fn parse(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

/// Written verbatim. serde offers no way to hand a serializer trusted raw text, so the text is
/// lent to it as a `RawValue`, which costs one validating scan; `openflume listen` writes items
/// itself and skips it.
impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawJson, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(RawJson::from_raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// Parsing checks the text is one JSON document, as [`RawJson::from_str`] does: so `str::parse`
/// works too.
///
/// ```
/// use openflume_proto::RawJson;
/// let data: RawJson = r#"{"id": "1"}"#.parse()?;
/// assert_eq!(data.get(), r#"{"id": "1"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
impl std::str::FromStr for RawJson {
    type Err = serde_json::Error;

    fn from_str(json: &str) -> Result<RawJson, serde_json::Error> {
        RawJson::from_str(json)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// One event from a source: a Discord dispatch, a Slack envelope, a GitHub notification, a cron tick.
///
/// ```
/// use openflume_proto::{Event, RawJson, UnixMillis};
/// let event = Event::new("time", "tick", RawJson::from_str("{}").unwrap(), UnixMillis(0))
///     .with_meta("cron", "* * * * *");
/// assert_eq!(event.meta["cron"], "* * * * *");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Which source produced it: `discord`, `slack`, `github`, `time`, or a custom source's name.
    /// (A `Cow`, so the built-in names cost no allocation per event.)
    pub source: Cow<'static, str>,
    /// The event type: Discord's `t`, Slack's envelope type, `notification`, `tick`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload exactly as received.
    pub data: RawJson,
    /// Flat string facts pulled out of the payload for routing (`channel_id`, `user_id`, …).
    pub meta: BTreeMap<Cow<'static, str>, String>,
    /// When the source received it, Unix milliseconds.
    #[serde(rename = "receivedAt")]
    pub received_at: UnixMillis,
}

impl Event {
    /// An event with empty meta.
    ///
    /// ```
    /// use openflume_proto::{Event, RawJson, UnixMillis};
    /// let event = Event::new("slack", "events_api", RawJson::null(), UnixMillis(5));
    /// assert_eq!((event.source.as_ref(), event.event_type.as_str()), ("slack", "events_api"));
    /// assert!(event.meta.is_empty());
    /// ```
    pub fn new(
        source: impl Into<Cow<'static, str>>,
        event_type: impl Into<String>,
        data: RawJson,
        received_at: UnixMillis,
    ) -> Event {
        Event {
            source: source.into(),
            event_type: event_type.into(),
            data,
            meta: BTreeMap::new(),
            received_at,
        }
    }

    /// Adds one meta entry. A second entry with the same key replaces the first.
    ///
    /// ```
    /// use openflume_proto::{Event, RawJson, UnixMillis};
    /// let event = Event::new("discord", "MESSAGE_CREATE", RawJson::null(), UnixMillis(0))
    ///     .with_meta("channel_id", "1")
    ///     .with_meta("channel_id", "2");
    /// assert_eq!(event.meta.len(), 1);
    /// assert_eq!(event.meta["channel_id"], "2");
    /// ```
    pub fn with_meta(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Event {
        self.meta.insert(key.into(), value.into());
        self
    }
}

/// Log severity.
///
/// ```
/// use openflume_proto::Level;
/// assert!(Level::Warn > Level::Info);
/// assert_eq!("warn".parse::<Level>().unwrap(), Level::Warn);
/// ```
///
/// `#[non_exhaustive]`: a match outside this crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume_proto::Level;
/// fn loud(level: Level) -> bool {
///     match level { Level::Debug | Level::Info => false, Level::Warn | Level::Error => true }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Level {
    /// Protocol detail: frames, idle polls, duplicates.
    Debug,
    /// Lifecycle: connected, resumed, bootstrap.
    Info,
    /// Something went wrong and was handled: reconnects, malformed frames, rate limits.
    Warn,
    /// Something failed: fatal closes, bad credentials.
    Error,
}

impl Level {
    /// The lowercase name used on the wire.
    ///
    /// ```
    /// use openflume_proto::Level;
    /// assert_eq!(Level::Error.as_str(), "error");
    /// assert_eq!(Level::Debug.as_str().parse::<Level>(), Ok(Level::Debug));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s {
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            other => Err(format!(
                "unknown log level {other:?} (expected debug, info, warn or error)"
            )),
        }
    }
}

/// A log line about a source, part of the same ordered firehose as its events.
///
/// ```
/// use openflume_proto::{Level, Log, UnixMillis};
/// let log = Log::new(Level::Warn, "github", "rate.limit", "waiting 60 s", UnixMillis(0))
///     .with_detail(serde_json::json!({"waitMs": 60000}));
/// assert_eq!(log.action, "rate.limit");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// Severity.
    pub level: Level,
    /// The component: `discord`, `slack`, `github`, `time`, `flume`, or a custom source's name.
    pub source: String,
    /// A dotted name from a fixed vocabulary (`status`, `heartbeat.zombie`, `poll.idle`, …).
    pub action: String,
    /// Human text.
    pub message: String,
    /// The error's message, when the log reports one. Never contains a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured facts (`{from, to, reason}` for status logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// When it was logged, Unix milliseconds.
    pub timestamp: UnixMillis,
}

impl Log {
    /// A log without error or detail.
    ///
    /// ```
    /// use openflume_proto::{Level, Log, UnixMillis};
    /// let log = Log::new(Level::Info, "discord", "ready", "session ready", UnixMillis(9));
    /// assert_eq!(log.level, Level::Info);
    /// assert_eq!((log.error, log.detail), (None, None));
    /// ```
    pub fn new(
        level: Level,
        source: impl Into<String>,
        action: impl Into<String>,
        message: impl Into<String>,
        timestamp: UnixMillis,
    ) -> Log {
        Log {
            level,
            source: source.into(),
            action: action.into(),
            message: message.into(),
            error: None,
            detail: None,
            timestamp,
        }
    }

    /// Adds an error message.
    ///
    /// ```
    /// use openflume_proto::{Level, Log, UnixMillis};
    /// let log = Log::new(Level::Warn, "slack", "connect.failed", "retrying", UnixMillis(0))
    ///     .with_error("connection refused");
    /// assert_eq!(log.error.as_deref(), Some("connection refused"));
    /// ```
    pub fn with_error(mut self, error: impl Into<String>) -> Log {
        self.error = Some(error.into());
        self
    }

    /// Adds structured detail.
    ///
    /// ```
    /// use openflume_proto::{Level, Log, UnixMillis};
    /// let log = Log::new(Level::Debug, "github", "poll.idle", "no news", UnixMillis(0))
    ///     .with_detail(serde_json::json!({"pollMs": 60000}));
    /// assert_eq!(log.detail.unwrap()["pollMs"], 60000);
    /// ```
    pub fn with_detail(mut self, detail: serde_json::Value) -> Log {
        self.detail = Some(detail);
        self
    }
}

/// One firehose item, serialised as `{"kind":"event","event":{…}}` or `{"kind":"log","log":{…}}`.
///
/// ```
/// use openflume_proto::{Item, Level, Log, UnixMillis};
/// let item = Item::Log(Log::new(Level::Info, "flume", "flume.open", "open", UnixMillis(7)));
/// let line = serde_json::to_string(&item).unwrap();
/// assert_eq!(line, r#"{"kind":"log","log":{"level":"info","source":"flume","action":"flume.open","message":"open","timestamp":7}}"#);
/// assert_eq!(serde_json::from_str::<Item>(&line).unwrap(), item);
/// ```
///
/// `#[non_exhaustive]`: a later version may add kinds of item, so a match outside this crate
/// ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume_proto::Item;
/// fn kind(item: &Item) -> &str {
///     match item { Item::Event(_) => "event", Item::Log(_) => "log" } // no `_ =>`: an error
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Item {
    /// An event.
    Event(Event),
    /// A log.
    Log(Log),
}

impl Item {
    /// The source the item is about.
    ///
    /// ```
    /// use openflume_proto::{Event, Item, Level, Log, RawJson, UnixMillis};
    /// let event = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(0)));
    /// let log = Item::Log(Log::new(Level::Info, "github", "poll", "polled", UnixMillis(0)));
    /// assert_eq!((event.source(), log.source()), ("time", "github"));
    /// ```
    pub fn source(&self) -> &str {
        match self {
            Item::Event(event) => &event.source,
            Item::Log(log) => &log.source,
        }
    }

    /// When the item happened: an event's `receivedAt`, a log's `timestamp`. Every kind of item
    /// has one, so a store can order and expire items without matching on the kind (the enum is
    /// `#[non_exhaustive]`).
    ///
    /// ```
    /// use openflume_proto::{Event, Item, Level, Log, RawJson, UnixMillis};
    /// let event = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(3)));
    /// let log = Item::Log(Log::new(Level::Info, "github", "poll", "polled", UnixMillis(4)));
    /// assert_eq!((event.timestamp(), log.timestamp()), (UnixMillis(3), UnixMillis(4)));
    /// ```
    pub fn timestamp(&self) -> UnixMillis {
        match self {
            Item::Event(event) => event.received_at,
            Item::Log(log) => log.timestamp,
        }
    }
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            Item::Event(event) => {
                map.serialize_entry("kind", "event")?;
                map.serialize_entry("event", event)?;
            }
            Item::Log(log) => {
                map.serialize_entry("kind", "log")?;
                map.serialize_entry("log", log)?;
            }
        }
        map.end()
    }
}

/// Reads `{"kind": …, "event"|"log": …}` in any key order. Written by hand because serde's
/// internally tagged enums buffer their content, and a buffered `RawJson` cannot be read back.
impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Item, D::Error> {
        use serde::de::{self, MapAccess, Visitor};

        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"{"kind":"event","event":{…}} or {"kind":"log","log":{…}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut kind: Option<String> = None;
                let mut item: Option<Item> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "kind" => kind = Some(map.next_value()?),
                        "event" if item.is_none() => item = Some(Item::Event(map.next_value()?)),
                        "log" if item.is_none() => item = Some(Item::Log(map.next_value()?)),
                        "event" | "log" => {
                            return Err(de::Error::custom("an item holds one event or one log"));
                        }
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let item = item.ok_or_else(|| de::Error::missing_field("event or log"))?;
                match (kind.as_deref(), &item) {
                    (Some("event"), Item::Event(_)) | (Some("log"), Item::Log(_)) => Ok(item),
                    (None, _) => Err(de::Error::missing_field("kind")),
                    (Some(other), _) => Err(de::Error::custom(format!(
                        "kind {other:?} does not match the payload"
                    ))),
                }
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span of a parsed frame is the data as written; one that does not fit the text (a
    /// caller's bug) gives `null`, never a panic or a cut character.
    #[test]
    fn parsed_spans_and_their_fallback() {
        let frame = r#"{"op":0,"d":{"é":1}}"#;
        let raw = RawJson::from_parsed_span(frame.to_owned(), 12..frame.len() - 1);
        assert_eq!(raw.get(), r#"{"é":1}"#);
        assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"é":1}"#);
        let inside_a_character = RawJson::from_parsed_span(frame.to_owned(), 12..15);
        assert_eq!(inside_a_character.get(), "null");
        let past_the_end = RawJson::from_parsed_span(frame.to_owned(), 12..99);
        assert_eq!(past_the_end.get(), "null");
    }

    #[test]
    fn events_and_logs_read_back_from_their_lines() {
        let event = Item::Event(
            Event::new(
                "discord",
                "MESSAGE_CREATE",
                RawJson::from_str(r#"{"id":"1","n":[1,2]}"#).unwrap(),
                UnixMillis(5),
            )
            .with_meta("channel_id", "9"),
        );
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Item>(&line).unwrap(), event);
        // Key order does not matter.
        let reordered = r#"{"event":{"source":"x","type":"t","data":{},"meta":{},"receivedAt":1},"kind":"event"}"#;
        assert!(matches!(
            serde_json::from_str::<Item>(reordered).unwrap(),
            Item::Event(_)
        ));
    }

    #[test]
    fn mismatched_or_missing_kinds_are_errors() {
        let log = r#"{"level":"info","source":"s","action":"a","message":"m","timestamp":1}"#;
        assert!(
            serde_json::from_str::<Item>(&format!(r#"{{"kind":"event","log":{log}}}"#)).is_err()
        );
        assert!(serde_json::from_str::<Item>(&format!(r#"{{"log":{log}}}"#)).is_err());
        assert!(serde_json::from_str::<Item>(r#"{"kind":"log"}"#).is_err());
    }
}
