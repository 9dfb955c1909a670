//! Owned byte strings that stay readable in fixtures and transcripts.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bytes that serialise as a JSON string when they are UTF-8 and as `{"hex": "…"}` otherwise,
/// so recorded HTTP bodies read as text and binary frames still round-trip.
///
/// ```
/// use openflume_proto::Bytes;
/// let text = Bytes::from("ok");
/// assert_eq!(serde_json::to_string(&text).unwrap(), r#""ok""#);
/// let binary = Bytes::from(vec![0x78, 0x9c, 0xff]);
/// assert_eq!(serde_json::to_string(&binary).unwrap(), r#"{"hex":"789cff"}"#);
/// let back: Bytes = serde_json::from_str(r#"{"hex":"789cff"}"#).unwrap();
/// assert_eq!(back, binary);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes as a slice.
    ///
    /// ```
    /// use openflume_proto::Bytes;
    /// assert_eq!(Bytes::from("hi").as_slice(), b"hi");
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, when they are.
    ///
    /// ```
    /// use openflume_proto::Bytes;
    /// assert_eq!(Bytes::from("{}").as_str(), Some("{}"));
    /// assert_eq!(Bytes::from(vec![0x78, 0x9c, 0xff]).as_str(), None); // not UTF-8
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Number of bytes.
    ///
    /// ```
    /// use openflume_proto::Bytes;
    /// assert_eq!(Bytes::from("é").len(), 2); // bytes, not characters
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    ///
    /// ```
    /// use openflume_proto::Bytes;
    /// assert!(Bytes::default().is_empty());
    /// assert!(!Bytes::from("x").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "{text:?}"),
            None => write!(f, "hex:{}", to_hex(&self.0)),
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes(v.as_bytes().to_vec())
    }
}

impl From<String> for Bytes {
    fn from(v: String) -> Self {
        Bytes(v.into_bytes())
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return None;
    }
    raw.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_str() {
            Some(text) => serializer.serialize_str(text),
            None => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("hex", &to_hex(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or {\"hex\": \"…\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
                let mut bytes = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "hex" {
                        return Err(de::Error::unknown_field(&key, &["hex"]));
                    }
                    let text: String = map.next_value()?;
                    bytes = Some(from_hex(&text).ok_or_else(|| de::Error::custom("invalid hex"))?);
                }
                bytes
                    .map(Bytes)
                    .ok_or_else(|| de::Error::missing_field("hex"))
            }
        }
        deserializer.deserialize_any(BytesVisitor)
    }
}
