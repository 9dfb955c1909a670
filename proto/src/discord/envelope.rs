//! The envelope every Gateway frame shares, `{"op", "d", "s", "t"}`, read in one pass.
//!
//! A dispatch is the hot path: thousands a second on a big bot. One pass of the [scanner] over
//! the frame validates all of it, reads `op`, `s` and `t`, finds where `d` lies in the text (so
//! the event's `data` is a span of the frame, never copied or built into a tree), and picks the
//! routing facts out of `d` on the way. Keys may come in any order; missing ones are `None`;
//! unknown ones are validated and skipped.
//!
//! [scanner]: super::scan

use super::scan::{Fault, ScanError, Scanner};
use std::borrow::Cow;
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
    pub(crate) fn parse(text: &'a str) -> Result<Envelope<'a>, ScanError> {
        let mut envelope = Envelope {
            text,
            op: None,
            d: None,
            s: None,
            t: None,
            meta: DispatchMeta::default(),
        };
        let mut scanner = Scanner::new(text);
        // Which of op, s, t and d were read: a repeated one makes the frame ambiguous.
        let mut seen = [false; 4];
        let mut first = |scanner: &Scanner<'_>, index: usize| match seen.get_mut(index) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(())
            }
            _ => Err(ScanError::new(scanner.pos(), Fault::RepeatedKey)),
        };
        scanner.members(|scanner, key| {
            if key.is("op") {
                first(scanner, 0)?;
                envelope.op = scanner.u64_or_null()?;
            } else if key.is("s") {
                first(scanner, 1)?;
                envelope.s = scanner.u64_or_null()?;
            } else if key.is("t") {
                first(scanner, 2)?;
                envelope.t = match scanner.peek() {
                    Some(b'"') => Some(
                        scanner
                            .string()?
                            .decode()
                            .ok_or(ScanError::new(scanner.pos(), Fault::UndecodableType))?,
                    ),
                    _ => scanner.skip().map(|()| None)?,
                };
            } else if key.is("d") {
                first(scanner, 3)?;
                scanner.whitespace();
                let start = scanner.pos();
                envelope.meta = dispatch_meta(scanner)?;
                // `null` counts as absent, as it always has for `d`.
                let span = start..scanner.pos();
                envelope.d = (text.get(span.clone()) != Some("null")).then_some(span);
            } else {
                scanner.skip()?;
            }
            Ok(())
        })?;
        scanner.end()?;
        Ok(envelope)
    }

    /// `d` as JSON text, `null` when absent.
    pub(crate) fn data(&self) -> &'a str {
        self.d
            .clone()
            .and_then(|span| self.text.get(span))
            .unwrap_or("null")
    }
}

/// Steps over `d`, validating all of it, and reads its routing facts: the top-level strings
/// `channel_id` and `guild_id`, and the user from `author.id`, else `user.id`, else `user_id`.
/// Fields of another type give nothing; of a repeated key the last counts (as in a
/// `serde_json::Value`).
fn dispatch_meta(scanner: &mut Scanner<'_>) -> Result<DispatchMeta, ScanError> {
    let mut meta = DispatchMeta::default();
    if scanner.peek() != Some(b'{') {
        scanner.skip()?;
        return Ok(meta);
    }
    let (mut author_id, mut user_object_id) = (None, None);
    scanner.members(|scanner, key| {
        if key.is("channel_id") {
            meta.channel_id = string(scanner)?;
        } else if key.is("guild_id") {
            meta.guild_id = string(scanner)?;
        } else if key.is("user_id") {
            meta.user_id = string(scanner)?;
        } else if key.is("author") {
            author_id = id_of(scanner)?;
        } else if key.is("user") {
            user_object_id = id_of(scanner)?;
        } else {
            scanner.skip()?;
        }
        Ok(())
    })?;
    meta.user_id = author_id.or(user_object_id).or(meta.user_id);
    Ok(meta)
}

/// The value at the cursor when it is a string; nothing for any other value.
fn string(scanner: &mut Scanner<'_>) -> Result<Option<String>, ScanError> {
    if scanner.peek() == Some(b'"') {
        Ok(scanner.string()?.decode().map(Cow::into_owned))
    } else {
        scanner.skip().map(|()| None)
    }
}

/// The string `id` of the object at the cursor; nothing for any other value.
fn id_of(scanner: &mut Scanner<'_>) -> Result<Option<String>, ScanError> {
    if scanner.peek() != Some(b'{') {
        return scanner.skip().map(|()| None);
    }
    let mut id = None;
    scanner.members(|scanner, key| {
        if key.is("id") {
            id = string(scanner)?;
        } else {
            scanner.skip()?;
        }
        Ok(())
    })?;
    Ok(id)
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
            // A lone surrogate is grammatical JSON: `d` is handed on as written.
            (
                r#"{"t":"x","d":"\ud800"}"#,
                None,
                r#""\ud800""#,
                None,
                Some("x"),
            ),
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
