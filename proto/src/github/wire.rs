//! Reading notification pages leniently: each thread stays the exact JSON text GitHub sent (the
//! event data, no field dropped), and only the handful of fields the poller routes on are
//! borrowed out of it.
//!
//! GitHub's thread object is looser than its schema: `subject.url` is null for discussions,
//! `reason` and `subject.type` grow new values, ids are numeric strings (and a server that sends
//! them as numbers should not break the poller). So nothing here is a closed enum or a required
//! field except the two the poller cannot work without, `id` and `updated_at`; anything of the
//! wrong type elsewhere simply does not make it into the event's meta.

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Splits a page body into its elements, each kept as received. Fails when the body is not a
/// JSON array; the error text describes the shape, never echoes the body.
pub(crate) fn page_items(body: &[u8]) -> Result<Vec<Box<RawValue>>, String> {
    serde_json::from_slice::<Vec<Box<RawValue>>>(body).map_err(|error| error.to_string())
}

/// The fields of one thread that routing needs, borrowed from its JSON where possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Thread<'a> {
    /// `id`, as text even when the server sent a number.
    pub id: Cow<'a, str>,
    /// `updated_at`, verbatim: with `id` it forms the dedup key.
    pub updated_at: Cow<'a, str>,
    /// `reason`, when it is a string.
    pub reason: Option<Cow<'a, str>>,
    /// `subject.type`, when it is a string.
    pub subject_type: Option<Cow<'a, str>>,
    /// `subject.url`, when it is a string (null for discussions).
    pub subject_url: Option<Cow<'a, str>>,
    /// `repository.full_name`, when it is a string.
    pub repository: Option<Cow<'a, str>>,
}

/// Why an element is not a usable thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The element is not a JSON object.
    NotObject {
        /// What it is instead (`an array`, `null`, …).
        found: &'static str,
    },
    /// A required field is absent.
    Missing {
        /// `id` or `updated_at`.
        field: &'static str,
    },
    /// A required field has the wrong type or is empty.
    Invalid {
        /// `id` or `updated_at`.
        field: &'static str,
        /// What it is instead.
        found: &'static str,
    },
}

impl Malformed {
    /// The field at fault, or `None` when the whole element is.
    pub(crate) fn field(&self) -> Option<&'static str> {
        match self {
            Malformed::NotObject { .. } => None,
            Malformed::Missing { field } | Malformed::Invalid { field, .. } => Some(field),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotObject { found } => write!(f, "the item is {found}, not an object"),
            Malformed::Missing { field } => write!(f, "`{field}` is missing"),
            Malformed::Invalid { field: "id", found } => {
                write!(f, "`id` is {found}, not a string or an integer")
            }
            Malformed::Invalid { field, found } => {
                write!(f, "`{field}` is {found}, not a non-empty string")
            }
        }
    }
}

/// Reads the routing fields of one page element.
pub(crate) fn thread(raw: &RawValue) -> Result<Thread<'_>, Malformed> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let fields = match de.deserialize_any(ElementVisitor) {
        Ok(Element::Object(fields)) => fields,
        Ok(Element::Other(found)) => return Err(Malformed::NotObject { found }),
        // The text was already validated as JSON, so this is unreachable in practice; report it
        // as the whole element being unusable rather than panicking.
        Err(_) => {
            return Err(Malformed::NotObject {
                found: "unreadable",
            });
        }
    };
    let id = match fields.id {
        None => return Err(Malformed::Missing { field: "id" }),
        Some(Scalar::Str(id)) if !id.is_empty() => id,
        Some(Scalar::Int(n)) => Cow::Owned(n.to_string()),
        Some(other) => {
            return Err(Malformed::Invalid {
                field: "id",
                found: other.kind(),
            });
        }
    };
    let updated_at = match fields.updated_at {
        None => {
            return Err(Malformed::Missing {
                field: "updated_at",
            });
        }
        Some(Scalar::Str(at)) if !at.is_empty() => at,
        Some(other) => {
            return Err(Malformed::Invalid {
                field: "updated_at",
                found: other.kind(),
            });
        }
    };
    Ok(Thread {
        id,
        updated_at,
        reason: fields.reason.and_then(Scalar::into_str),
        subject_type: fields.subject_type.and_then(Scalar::into_str),
        subject_url: fields.subject_url.and_then(Scalar::into_str),
        repository: fields.repository.and_then(Scalar::into_str),
    })
}

/// A JSON value reduced to what the poller can use from it.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i128),
    Other(&'static str),
}

impl<'a> Scalar<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(s) if s.is_empty() => "an empty string",
            Scalar::Str(_) => "a string",
            Scalar::Int(_) => "an integer",
            Scalar::Other(kind) => kind,
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(i128::from(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number outside the 64-bit integers"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// The top-level fields of an element, each as found.
#[derive(Default)]
struct Fields<'a> {
    id: Option<Scalar<'a>>,
    updated_at: Option<Scalar<'a>>,
    reason: Option<Scalar<'a>>,
    subject_type: Option<Scalar<'a>>,
    subject_url: Option<Scalar<'a>>,
    repository: Option<Scalar<'a>>,
}

enum Element<'a> {
    Object(Fields<'a>),
    Other(&'static str),
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a notification thread object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            let Scalar::Str(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match key.as_ref() {
                "id" => fields.id = Some(map.next_value()?),
                "updated_at" => fields.updated_at = Some(map.next_value()?),
                "reason" => fields.reason = Some(map.next_value()?),
                "subject" => {
                    [fields.subject_type, fields.subject_url] =
                        map.next_value_seed(Pick(["type", "url"]))?
                }
                "repository" => [fields.repository] = map.next_value_seed(Pick(["full_name"]))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Element::Object(fields))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(other)
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Element::Other("a string"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Element::Other("a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Element::Other("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Element::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Element::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Element::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Element::Other("null"))
    }
}

fn other(scalar: Scalar<'_>) -> Element<'_> {
    Element::Other(scalar.kind())
}

/// Fields of a nested object (`subject.type` and `subject.url`, `repository.full_name`); each
/// `None` when the value is not an object or lacks the field.
struct Pick<const N: usize>([&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Pick<N> {
    type Value = [Option<Scalar<'de>>; N];
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Pick<N> {
    type Value = [Option<Scalar<'de>>; N];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with `{}`", self.0.join("`, `"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = [const { None }; N];
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            match key {
                Scalar::Str(key) if let Some(i) = self.0.iter().position(|name| key == *name) => {
                    picked[i] = Some(map.next_value()?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(picked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(|_| [const { None }; N])
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok([const { None }; N])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"id":"13370001","unread":true,"reason":"review_requested","updated_at":"2025-11-24T09:14:03Z","last_read_at":null,
 "subject":{"title":"Add retry","url":null,"latest_comment_url":null,"type":"PullRequest"},
 "repository":{"id":1,"full_name":"o/r","private":false,"owner":{"login":"o"}},
 "url":"https://api.github.com/notifications/threads/13370001","future_field":{"nested":[1,2,{"x":null}]}}"#;

    fn parse(json: &str) -> Result<Thread<'static>, Malformed> {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        thread(&raw).map(|t| Thread {
            id: Cow::Owned(t.id.into_owned()),
            updated_at: Cow::Owned(t.updated_at.into_owned()),
            reason: t.reason.map(|r| Cow::Owned(r.into_owned())),
            subject_type: t.subject_type.map(|r| Cow::Owned(r.into_owned())),
            subject_url: t.subject_url.map(|r| Cow::Owned(r.into_owned())),
            repository: t.repository.map(|r| Cow::Owned(r.into_owned())),
        })
    }

    fn ok(
        id: &str,
        updated_at: &str,
        reason: Option<&str>,
        subject_type: Option<&str>,
        repository: Option<&str>,
    ) -> Result<Thread<'static>, Malformed> {
        let own = |s: &str| Cow::Owned(s.to_owned());
        Ok(Thread {
            id: own(id),
            updated_at: own(updated_at),
            reason: reason.map(own),
            subject_type: subject_type.map(own),
            subject_url: None,
            repository: repository.map(own),
        })
    }

    #[test]
    fn full_thread_fields_are_borrowed() {
        let raw = RawValue::from_string(FULL.to_owned()).unwrap();
        let t = thread(&raw).unwrap();
        assert!(matches!(t.id, Cow::Borrowed("13370001")));
        assert_eq!(t.updated_at, "2025-11-24T09:14:03Z");
        assert_eq!(t.reason.as_deref(), Some("review_requested"));
        assert_eq!(t.subject_type.as_deref(), Some("PullRequest"));
        assert_eq!(t.repository.as_deref(), Some("o/r"));
    }

    #[test]
    fn thread_table() {
        let cases: Vec<(&str, Result<Thread<'static>, Malformed>)> = vec![
            (
                r#"{"id":"1","updated_at":"t"}"#,
                ok("1", "t", None, None, None),
            ),
            // Numeric ids, negative too (never seen, but an integer is an integer).
            (
                r#"{"id":42,"updated_at":"t"}"#,
                ok("42", "t", None, None, None),
            ),
            (
                r#"{"id":-7,"updated_at":"t"}"#,
                ok("-7", "t", None, None, None),
            ),
            // Escaped strings are decoded.
            (
                r#"{"id":"a\"b","updated_at":"t\u0031","reason":"x\/y"}"#,
                ok("a\"b", "t1", Some("x/y"), None, None),
            ),
            // Unknown reason and subject type pass through; wrong types elsewhere drop out of meta.
            (
                r#"{"id":"1","updated_at":"t","reason":"brand_new","subject":{"type":"Sparkle","url":null}}"#,
                ok("1", "t", Some("brand_new"), Some("Sparkle"), None),
            ),
            (
                r#"{"id":"1","updated_at":"t","reason":5,"subject":"PullRequest","repository":{"full_name":null}}"#,
                ok("1", "t", None, None, None),
            ),
            (
                r#"{"id":"1","updated_at":"t","subject":[{"type":"x"}],"repository":7}"#,
                ok("1", "t", None, None, None),
            ),
            // Fields in any order, nested objects of any depth skipped.
            (
                r#"{"repository":{"owner":{"login":"o","id":1},"full_name":"o/r"},"updated_at":"t","x":[[[]]],"id":"9"}"#,
                ok("9", "t", None, None, Some("o/r")),
            ),
            // Malformed.
            ("[]", Err(Malformed::NotObject { found: "an array" })),
            ("null", Err(Malformed::NotObject { found: "null" })),
            ("\"1\"", Err(Malformed::NotObject { found: "a string" })),
            ("12", Err(Malformed::NotObject { found: "a number" })),
            ("true", Err(Malformed::NotObject { found: "a boolean" })),
            (
                r#"{"updated_at":"t"}"#,
                Err(Malformed::Missing { field: "id" }),
            ),
            (
                r#"{"id":"1"}"#,
                Err(Malformed::Missing {
                    field: "updated_at",
                }),
            ),
            (
                r#"{"id":null,"updated_at":"t"}"#,
                Err(Malformed::Invalid {
                    field: "id",
                    found: "null",
                }),
            ),
            (
                r#"{"id":1.5,"updated_at":"t"}"#,
                Err(Malformed::Invalid {
                    field: "id",
                    found: "a number outside the 64-bit integers",
                }),
            ),
            (
                r#"{"id":"","updated_at":"t"}"#,
                Err(Malformed::Invalid {
                    field: "id",
                    found: "an empty string",
                }),
            ),
            (
                r#"{"id":{"v":1},"updated_at":"t"}"#,
                Err(Malformed::Invalid {
                    field: "id",
                    found: "an object",
                }),
            ),
            (
                r#"{"id":"1","updated_at":1764000000}"#,
                Err(Malformed::Invalid {
                    field: "updated_at",
                    found: "an integer",
                }),
            ),
            (
                r#"{"id":"1","updated_at":["t"]}"#,
                Err(Malformed::Invalid {
                    field: "updated_at",
                    found: "an array",
                }),
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(parse(json), expected, "{json}");
        }
    }

    #[test]
    fn malformed_messages_name_the_field() {
        assert_eq!(
            Malformed::Missing {
                field: "updated_at"
            }
            .to_string(),
            "`updated_at` is missing"
        );
        assert_eq!(
            Malformed::Invalid {
                field: "id",
                found: "null"
            }
            .to_string(),
            "`id` is null, not a string or an integer"
        );
        assert_eq!(
            Malformed::NotObject { found: "an array" }.to_string(),
            "the item is an array, not an object"
        );
        assert_eq!(Malformed::Missing { field: "id" }.field(), Some("id"));
        assert_eq!(Malformed::NotObject { found: "null" }.field(), None);
    }

    #[test]
    fn page_items_keep_the_text() {
        let body = format!("[ {FULL} , 1,\n\"x\" ]");
        let items = page_items(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].get(), FULL);
        assert_eq!(items[1].get(), "1");
        assert!(page_items(b"[]").unwrap().is_empty());
        for bad in [
            &b"{}"[..],
            b"",
            b"[1,",
            b"null",
            b"\"[]\"",
            b"[1] x",
            b"\xff",
        ] {
            assert!(page_items(bad).is_err(), "{bad:?}");
        }
    }
}
