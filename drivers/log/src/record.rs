//! What one row of the log holds, built from an [`Item`].

use openflume_proto::{Event, Item};

/// One item as the log stores it: the columns filters use, and the item's JSON exactly as
/// `openflume listen --format json` prints it.
///
/// ```
/// use openflume_log::Record;
/// use openflume_proto::{Event, Item, RawJson, UnixMillis};
/// let item = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(5)));
/// let record = Record::from_item(&item);
/// assert_eq!((record.source.as_str(), record.item_type.as_str()), ("time", "tick"));
/// assert_eq!(record.json, serde_json::to_string(&item).unwrap());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When the source received the event (a log's timestamp), Unix milliseconds. Retention by
    /// age goes by this.
    pub received_at: i64,
    /// The item's source.
    pub source: String,
    /// `event` or `log`.
    pub kind: Kind,
    /// The event's type (`MESSAGE_CREATE`, `events_api`, `tick`) or the log's action
    /// (`status`, `stream.overflow`): what [`Filter::types`](crate::Filter::types) matches.
    pub item_type: String,
    /// The item as one JSON object, without a newline.
    pub json: String,
}

/// Whether a row is an event or a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An [`Item::Event`].
    Event,
    /// An [`Item::Log`].
    Log,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Log => "log",
        }
    }
}

impl Record {
    /// The row for `item`.
    ///
    /// ```
    /// use openflume_log::{Kind, Record};
    /// use openflume_proto::{Item, Level, Log, UnixMillis};
    /// let item = Item::Log(Log::new(Level::Warn, "slack", "socket.closed", "closed", UnixMillis(9)));
    /// let record = Record::from_item(&item);
    /// assert_eq!((record.kind, record.item_type.as_str(), record.received_at), (Kind::Log, "socket.closed", 9));
    /// ```
    pub fn from_item(item: &Item) -> Record {
        // Room for the whole line at once: growing a 1.5 KB line from a small buffer cost three
        // reallocations per item (the append benchmark's profile).
        let room = match item {
            Item::Event(event) => event.data.get().len() + 64 * (event.meta.len() + 2),
            _ => 256,
        };
        let mut json = Vec::with_capacity(room);
        match item {
            Item::Event(event) => event_json(&mut json, event),
            _ => {
                // Writing into a Vec fails only for a map with non-string keys, which no item has.
                let _ = serde_json::to_writer(&mut json, item);
            }
        }
        // serde_json writes UTF-8 and the event's data is a `str`.
        let json = String::from_utf8(json).unwrap_or_default();
        match item {
            Item::Event(event) => Record {
                received_at: event.received_at.0,
                source: event.source.to_string(),
                kind: Kind::Event,
                item_type: event.event_type.clone(),
                json,
            },
            Item::Log(log) => Record {
                received_at: log.timestamp.0,
                source: log.source.clone(),
                kind: Kind::Log,
                item_type: log.action.clone(),
                json,
            },
            // A kind of item newer than this crate (`Item` is `#[non_exhaustive]`). The row keeps
            // the item's own JSON, so a reader parsing the line gets the item back whole; the
            // columns file it beside the logs (no consumer acts on it as an event) under the
            // `item` type, with its own time so retention treats it like any other row.
            _ => Record {
                received_at: item.timestamp().0,
                source: item.source().to_owned(),
                kind: Kind::Log,
                item_type: "item".to_owned(),
                json,
            },
        }
    }
}

/// An event's JSON, the same bytes as serialising the `Item` (and as `listen` writes it), with
/// `data` copied as it is: it is valid JSON by construction, and serde would check it again.
fn event_json(out: &mut Vec<u8>, event: &Event) {
    out.extend_from_slice(br#"{"kind":"event","event":{"source":"#);
    let _ = serde_json::to_writer(&mut *out, &event.source);
    out.extend_from_slice(br#","type":"#);
    let _ = serde_json::to_writer(&mut *out, &event.event_type);
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(event.data.get().as_bytes());
    out.extend_from_slice(br#","meta":"#);
    let _ = serde_json::to_writer(&mut *out, &event.meta);
    out.extend_from_slice(br#","receivedAt":"#);
    let _ = serde_json::to_writer(&mut *out, &event.received_at);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openflume_proto::{Level, Log, RawJson, UnixMillis};

    #[test]
    fn json_is_the_items_own_serialisation() {
        let event = Event::new(
            "discord",
            "MESSAGE_CREATE",
            RawJson::from_str(r#"{"content":"héllo \"x\"","n":[1,2]}"#).unwrap(),
            UnixMillis(1_764_100_000_000),
        )
        .with_meta("channel_id", "42");
        let log = Log::new(
            Level::Error,
            "github",
            "poll.failed",
            "boom\n",
            UnixMillis(3),
        )
        .with_error("e")
        .with_detail(serde_json::json!({"b": 1, "a": 2}));
        for item in [Item::Event(event), Item::Log(log)] {
            assert_eq!(
                Record::from_item(&item).json,
                serde_json::to_string(&item).unwrap()
            );
        }
    }
}
