//! The envelope every Gateway frame shares, `{"op", "d", "s", "t"}`, read in one pass.
//!
//! A dispatch is the hot path: thousands a second on a big bot. One serde_json pass over the
//! frame validates all of it, reads `op`, `s` and `t`, finds where `d` lies in the text (so the
//! event's `data` is a span of the frame, never copied or built into a tree), and picks the
//! routing facts out of `d` on the way. Keys may come in any order; missing ones are `None`;
//! unknown ones are validated and skipped. Only the top level is walked here, each value is
//! handed to serde_json, so the frame is valid JSON exactly when serde_json says so.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// One frame's envelope, borrowing from its text.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    text: &'a str,
    pub(crate) op: Option<u64>,
    /// Where `d` lies in the text.
    pub(crate) d: Option<Range<usize>>,
    pub(crate) s: Option<u64>,
    pub(crate) t: Option<Cow<'a, str>>,
    /// The routing facts in `d`, when it is an object.
    pub(crate) meta: DispatchMeta,
}

/// Routing facts of a dispatch: `channel_id`, `guild_id` and the acting user.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DispatchMeta {
    pub(crate) channel_id: Option<String>,
    pub(crate) guild_id: Option<String>,
    pub(crate) user_id: Option<String>,
}

impl<'a> Envelope<'a> {
    /// Parses one frame's text, which must be a JSON object.
    pub(crate) fn parse(text: &'a str) -> Result<Envelope<'a>, serde_json::Error> {
        let mut envelope = Envelope {
            text,
            op: None,
            d: None,
            s: None,
            t: None,
            meta: DispatchMeta::default(),
        };
        let mut cursor = Cursor { text, pos: 0 };
        if !cursor.eat(b'{') {
            return Err(de::Error::custom("not a JSON object"));
        }
        if cursor.eat(b'}') {
            return cursor.end().map(|()| envelope);
        }
        let mut seen = Seen::default();
        loop {
            let Text(key) = cursor.value::<Text<'a>>()?;
            let key = key.ok_or_else(|| cursor.error("a key that is not a string"))?;
            cursor.punct(b':')?;
            match key.as_ref() {
                "op" => {
                    seen.first(&cursor, 0, "op")?;
                    envelope.op = cursor.value()?;
                }
                "s" => {
                    seen.first(&cursor, 1, "s")?;
                    envelope.s = cursor.value()?;
                }
                "t" => {
                    seen.first(&cursor, 2, "t")?;
                    let Text(t) = cursor.value::<Text<'a>>()?;
                    envelope.t = t;
                }
                "d" => {
                    seen.first(&cursor, 3, "d")?;
                    cursor.whitespace();
                    let start = cursor.pos;
                    let Data(meta) = cursor.value()?;
                    // `null` counts as absent, as it always has for `d`.
                    let span = start..cursor.pos;
                    envelope.d = (text.get(span.clone()) != Some("null")).then_some(span);
                    envelope.meta = meta;
                }
                _ => {
                    cursor.value::<IgnoredAny>()?;
                }
            }
            if cursor.eat(b'}') {
                return cursor.end().map(|()| envelope);
            }
            cursor.punct(b',')?;
        }
    }

    /// `d` as JSON text, `null` when absent.
    pub(crate) fn data(&self) -> &'a str {
        self.d
            .clone()
            .and_then(|span| self.text.get(span))
            .unwrap_or("null")
    }
}

/// The top level of a frame: whitespace and punctuation here, every value through serde_json.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The value at the cursor, validated by serde_json, which must end where a value can.
    fn value<T: Deserialize<'a>>(&mut self) -> Result<T, serde_json::Error> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        match values.next() {
            Some(Ok(value)) => {
                self.pos += values.byte_offset();
                Ok(value)
            }
            Some(Err(error)) => {
                // serde_json counts from the value's start: report the place in the frame.
                let message = error.to_string();
                let place = format!(" at line {} column {}", error.line(), error.column());
                let message = message.strip_suffix(&place).unwrap_or(&message);
                let at = match error.line() {
                    1 => self.pos + error.column().saturating_sub(1),
                    _ => self.pos,
                };
                Err(de::Error::custom(format_args!("at byte {at}: {message}")))
            }
            None => Err(self.error("the text ends where a value should be")),
        }
    }

    fn whitespace(&mut self) {
        let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
        self.pos += rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
    }

    /// Steps over `byte` (after whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.whitespace();
        let next = self.text.as_bytes().get(self.pos) == Some(&byte);
        if next {
            self.pos += 1;
        }
        next
    }

    fn punct(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", char::from(byte))))
        }
    }

    /// Nothing but whitespace may follow the object.
    fn end(&mut self) -> Result<(), serde_json::Error> {
        self.whitespace();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(self.error("text after the object"))
        }
    }

    fn error(&self, what: &str) -> serde_json::Error {
        de::Error::custom(format_args!("at byte {}: {what}", self.pos))
    }
}

/// Which envelope keys were read: a repeated one makes the frame ambiguous.
#[derive(Default)]
struct Seen([bool; 4]);

impl Seen {
    fn first(
        &mut self,
        cursor: &Cursor<'_>,
        index: usize,
        key: &str,
    ) -> Result<(), serde_json::Error> {
        match self.0.get_mut(index) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(())
            }
            _ => Err(cursor.error(&format!("duplicate field `{key}`"))),
        }
    }
}

/// Visitor methods that validate an array or scalar and answer `$value` for it.
macro_rules! others_give {
    ($ty:ty, $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$ty, A::Error> {
            IgnoredAny.visit_seq(seq).map(|_| $value)
        }
        fn visit_bool<E>(self, _: bool) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<$ty, E> {
            Ok($value)
        }
    };
}

/// The visitor method that answers `$value` for a string.
macro_rules! strings_give {
    ($ty:ty, $value:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<$ty, E> {
            Ok($value)
        }
    };
}

/// Any JSON value, kept when it is a string (borrowed unless it holds escapes).
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text<'de>, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Text(None))
            }
            others_give!(Text<'de>, Text(None));
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

fn owned(text: Text<'_>) -> Option<String> {
    text.0.map(Cow::into_owned)
}

/// `d`, validated whole, with its routing facts: the top-level strings `channel_id` and
/// `guild_id`, and the user from `author.id`, else `user.id`, else `user_id`. Fields of another
/// type give nothing; of a repeated key the last counts (as in a `serde_json::Value`).
struct Data(DispatchMeta);

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut meta = DispatchMeta::default();
                let (mut author_id, mut user_object_id) = (None, None);
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match key.as_deref() {
                        Some("channel_id") => meta.channel_id = owned(map.next_value()?),
                        Some("guild_id") => meta.guild_id = owned(map.next_value()?),
                        Some("user_id") => meta.user_id = owned(map.next_value()?),
                        Some("author") => author_id = map.next_value::<IdOf>()?.0,
                        Some("user") => user_object_id = map.next_value::<IdOf>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                meta.user_id = author_id.or(user_object_id).or(meta.user_id);
                Ok(Data(meta))
            }
            others_give!(Data, Data(DispatchMeta::default()));
            strings_give!(Data, Data(DispatchMeta::default()));
        }
        deserializer.deserialize_any(DataVisitor)
    }
}

/// The string `id` of an object; nothing for any other value.
struct IdOf(Option<String>);

impl<'de> Deserialize<'de> for IdOf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = IdOf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdOf, A::Error> {
                let mut id = None;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key.as_deref() == Some("id") {
                        id = owned(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(IdOf(id))
            }
            others_give!(IdOf, IdOf(None));
            strings_give!(IdOf, IdOf(None));
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_in_any_order_with_missing_keys() {
        /// (frame, op, d, s, t)
        type Case<'a> = (&'a str, Option<u64>, &'a str, Option<u64>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (r#"{"op":11}"#, Some(11), "null", None, None),
            (
                r#"{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{"a":1}}"#,
                Some(0),
                r#"{"a":1}"#,
                Some(5),
                Some("MESSAGE_CREATE"),
            ),
            // `d` first, containing the text of another op: only the top-level key counts.
            (
                r#"{"d":{"op":7,"x":"\"op\":7"},"op":0,"t":"X","s":2}"#,
                Some(0),
                r#"{"op":7,"x":"\"op\":7"}"#,
                Some(2),
                Some("X"),
            ),
            (
                r#"{"op":10,"d":null,"s":null,"t":null,"_trace":["x"]}"#,
                Some(10),
                "null",
                None,
                None,
            ),
            (r#"{"d":{}}"#, None, "{}", None, None),
            (
                r#"{"t":"A\u0042","op":0}"#,
                Some(0),
                "null",
                None,
                Some("AB"),
            ),
        ];
        for &(text, op, d, s, t) in cases {
            let envelope = Envelope::parse(text).unwrap();
            assert_eq!(envelope.op, op, "{text}");
            assert_eq!(envelope.data(), d, "{text}");
            assert_eq!(envelope.s, s, "{text}");
            assert_eq!(envelope.t.as_deref(), t, "{text}");
        }
        for bad in [
            "",
            "not json",
            "[1]",
            r#"{"op":"1"}"#,
            r#"{"op":1,"op":2}"#,
            "{\"op\":1",
            r#"{"op":1} x"#,
            r#"{"op":1,}"#,
            r#"{"op":1 "s":2}"#,
            r#"{"d":{"a":1,}}"#,
            r#"{"d":[1 2]}"#,
            r#"{"t":"x","d":"\ud800"}"#,
            r#"{1:2}"#,
        ] {
            assert!(Envelope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dispatch_meta() {
        let cases: &[(&str, DispatchMeta)] = &[
            (
                r#"{"channel_id":"1","guild_id":"2","author":{"id":"3","username":"u"},"user_id":"4"}"#,
                DispatchMeta {
                    channel_id: Some("1".into()),
                    guild_id: Some("2".into()),
                    user_id: Some("3".into()),
                },
            ),
            (
                r#"{"user":{"id":"5"},"user_id":"4"}"#,
                DispatchMeta {
                    user_id: Some("5".into()),
                    ..DispatchMeta::default()
                },
            ),
            (
                r#"{"user_id":"4","channel_id":7,"guild_id":null,"author":"x"}"#,
                DispatchMeta {
                    user_id: Some("4".into()),
                    ..DispatchMeta::default()
                },
            ),
            ("null", DispatchMeta::default()),
            ("[1,2]", DispatchMeta::default()),
            (r#"{"nested":{"channel_id":"9"}}"#, DispatchMeta::default()),
            // Escaped keys and values are read like any others; of a repeated key the last counts.
            (
                r#"{"channel\u005fid":"a\"b","guild_id":"1","guild_id":"2","author":{"id":"3"},"author":{"name":"n"},"user":{"id":"5"}}"#,
                DispatchMeta {
                    channel_id: Some("a\"b".into()),
                    guild_id: Some("2".into()),
                    user_id: Some("5".into()),
                },
            ),
        ];
        for (d, expected) in cases {
            let frame = format!(r#"{{"op":0,"d":{d},"s":1}}"#);
            assert_eq!(&Envelope::parse(&frame).unwrap().meta, expected, "{d}");
        }
    }

    /// The span of `d` is exact whatever surrounds it, and its text is handed on untouched.
    #[test]
    fn data_span_is_exact() {
        for (frame, d) in [
            (
                r#"{"op":0,"d":  {"x" : [1, "}"]}  ,"s":3}"#,
                r#"{"x" : [1, "}"]}"#,
            ),
            (r#" { "d" : "a\"b" } "#, r#""a\"b""#),
            (r#"{"d":12.5e3}"#, "12.5e3"),
            (r#"{"d":false,"op":9}"#, "false"),
        ] {
            let envelope = Envelope::parse(frame).unwrap();
            assert_eq!(envelope.data(), d, "{frame}");
            assert_eq!(envelope.d.map(|span| &frame[span]), Some(d), "{frame}");
        }
    }
}
