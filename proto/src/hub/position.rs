//! The two kinds of position a hub session can count in: the SQLite log's integer ids, and the
//! ids of a Redis Stream (`1764100000000-0`, milliseconds and a sequence number).
//!
//! The session only compares positions and names them in frames, so it is generic over
//! [`HubPosition`]; so is the forwarding outbox, for the same reason. An integer stays an integer on the wire (the SQLite log's protocol is
//! unchanged); a stream id is a string, so it never loses precision in a JavaScript client
//! (a packed 64-bit integer would, past 2^53).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What a hub session (and a forwarding [`Outbox`](crate::outbox::Outbox)) needs of an event's
/// position: a total order that matches the log's order, a zero that comes before every item,
/// and a wire form (serde) and a text form (`Display`, for close reasons and `webhook-id`).
///
/// ```
/// use openflume_proto::hub::{HubPosition, StreamId};
/// assert!(u64::default() < 1);
/// assert!(StreamId::default() < StreamId { ms: 0, seq: 1 });
/// fn text<P: HubPosition>(p: P) -> String { p.to_string() }
/// assert_eq!(text(StreamId { ms: 5, seq: 2 }), "5-2");
/// ```
pub trait HubPosition:
    Copy
    + Ord
    + Default
    + fmt::Debug
    + fmt::Display
    + Serialize
    + for<'de> Deserialize<'de>
    + Send
    + Sync
    + 'static
{
}

impl HubPosition for u64 {}
impl HubPosition for StreamId {}

/// A Redis Stream entry id: milliseconds, then a sequence number within them. Ordered as Redis
/// orders them; written `MS-SEQ` as Redis writes them, and as a JSON string.
///
/// Read from `MS-SEQ`, from `MS` alone (`MS-0`, as Redis reads a range bound), or from a JSON
/// integer `MS` (so a client that sends `"after_event_id":0` gets everything, as with the
/// SQLite log).
///
/// ```
/// use openflume_proto::hub::StreamId;
/// let id: StreamId = "1764100000000-3".parse().unwrap();
/// assert_eq!((id.ms, id.seq), (1_764_100_000_000, 3));
/// assert_eq!(id.to_string(), "1764100000000-3");
/// assert_eq!(serde_json::to_string(&id).unwrap(), r#""1764100000000-3""#);
/// assert_eq!(serde_json::from_str::<StreamId>("0").unwrap(), StreamId::default());
/// assert!("1-x".parse::<StreamId>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// The milliseconds part (the Redis server's clock when it added the entry).
    pub ms: u64,
    /// The sequence number among the entries of the same millisecond.
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A text that is not a stream id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a stream id (MS-SEQ, two integers): {text:?}")]
pub struct BadStreamId {
    /// The text, cut to 40 characters.
    pub text: String,
}

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(text: &str) -> Result<StreamId, BadStreamId> {
        let bad = || BadStreamId {
            text: text.chars().take(40).collect(),
        };
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms, Some(seq)),
            None => (text, None),
        };
        let number = |digits: &str| {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            digits.parse::<u64>().map_err(|_| bad())
        };
        Ok(StreamId {
            ms: number(ms)?,
            seq: seq.map(number).transpose()?.unwrap_or(0),
        })
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StreamId, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StreamId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stream id: \"MS-SEQ\", or an integer MS")
            }
            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<StreamId, E> {
                Ok(StreamId { ms, seq: 0 })
            }
            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<StreamId, E> {
                u64::try_from(ms)
                    .map(|ms| StreamId { ms, seq: 0 })
                    .map_err(|_| E::custom("a stream id is not negative"))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StreamId, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stream_ids_parse_order_and_print_as_redis_does() {
        let cases = [
            ("0-0", Some((0, 0))),
            ("5", Some((5, 0))),
            ("1764100000000-12", Some((1_764_100_000_000, 12))),
            (
                "18446744073709551615-18446744073709551615",
                Some((u64::MAX, u64::MAX)),
            ),
            ("", None),
            ("-1", None),
            ("1-", None),
            ("1-2-3", None),
            ("+1-2", None),
            ("18446744073709551616-0", None),
            (" 1-2", None),
        ];
        for (text, expected) in cases {
            let parsed = text.parse::<StreamId>().ok().map(|id| (id.ms, id.seq));
            assert_eq!(parsed, expected, "{text:?}");
        }
        let a: StreamId = "5-10".parse().unwrap();
        let b: StreamId = "6-0".parse().unwrap();
        assert!(a < b && StreamId { ms: 5, seq: 9 } < a);
        for json in [r#""5-10""#, "5", r#""5""#] {
            assert!(serde_json::from_str::<StreamId>(json).is_ok(), "{json}");
        }
        assert!(serde_json::from_str::<StreamId>("-1").is_err());
        assert!(serde_json::from_str::<StreamId>("1.5").is_err());
        assert!(serde_json::from_str::<StreamId>(r#""x""#).is_err());
    }
}
