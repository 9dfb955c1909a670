//! The Gateway's JSON shapes: the envelope every frame shares, the few payloads the machine
//! reads, the payloads it writes, `/gateway/bot`, and the connect URL.
//!
//! The envelope `{op, d, s, t}` is parsed as a real JSON object (any key order, missing keys
//! allowed, unknown keys ignored) with `d` borrowed as raw JSON text: a dispatch's body is only
//! validated, never built into a tree, and is copied once when it is emitted.

use crate::scan::Scan;
use crate::url::Url;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Gateway opcodes the machine reads or writes.
pub(crate) mod op {
    pub(crate) const DISPATCH: u64 = 0;
    pub(crate) const HEARTBEAT: u64 = 1;
    pub(crate) const IDENTIFY: u64 = 2;
    pub(crate) const RESUME: u64 = 6;
    pub(crate) const RECONNECT: u64 = 7;
    pub(crate) const INVALID_SESSION: u64 = 9;
    pub(crate) const HELLO: u64 = 10;
    pub(crate) const HEARTBEAT_ACK: u64 = 11;
}

/// Every frame: `{"op": int, "d": any, "s": int|null, "t": string|null}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(default)]
    pub(crate) op: Option<u64>,
    #[serde(borrow, default)]
    pub(crate) d: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) s: Option<u64>,
    #[serde(borrow, default)]
    pub(crate) t: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    /// Parses one frame's text, which must be a JSON object (serde would also take an array
    /// positionally).
    pub(crate) fn parse(text: &'a str) -> Result<Envelope<'a>, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Err(serde::de::Error::custom("not a JSON object"));
        }
        serde_json::from_str(text)
    }

    /// `d` as JSON text, `null` when absent.
    pub(crate) fn data(&self) -> &'a str {
        self.d.map_or("null", RawValue::get)
    }
}

/// HELLO's `d`.
#[derive(Debug, Deserialize)]
pub(crate) struct Hello {
    pub(crate) heartbeat_interval: u64,
}

/// The two READY fields a session needs; the rest of READY is passed through untouched.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ready {
    #[serde(default)]
    pub(crate) session_id: Option<String>,
    #[serde(default)]
    pub(crate) resume_gateway_url: Option<String>,
}

/// Op 9's `d`: may the session be resumed? Anything but `true` means no.
pub(crate) fn invalid_session_resumable(d: &str) -> bool {
    serde_json::from_str::<bool>(d).unwrap_or(false)
}

/// Routing facts of a dispatch: `channel_id`, `guild_id` and the acting user.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DispatchMeta {
    pub(crate) channel_id: Option<String>,
    pub(crate) guild_id: Option<String>,
    pub(crate) user_id: Option<String>,
}

impl DispatchMeta {
    /// Reads the top-level string fields `channel_id` and `guild_id`, and the user from
    /// `author.id`, else `user.id`, else `user_id`. Fields of another type are skipped; of a
    /// repeated key the last counts. `d` must be valid JSON (the envelope parse checked it).
    pub(crate) fn extract(d: &str) -> DispatchMeta {
        let mut meta = DispatchMeta::default();
        let (mut author_id, mut user_object_id) = (None, None);
        // Text that breaks off keeps what was found before the break.
        let _ = Scan::new(d).members(|key, scan| {
            let slot = match key {
                "channel_id" => &mut meta.channel_id,
                "guild_id" => &mut meta.guild_id,
                "user_id" => &mut meta.user_id,
                "author" => return nested_id(scan, &mut author_id),
                "user" => return nested_id(scan, &mut user_object_id),
                _ => return scan.skip(),
            };
            *slot = scan.string().map(Cow::into_owned);
            Some(())
        });
        meta.user_id = author_id.or(user_object_id).or(meta.user_id);
        meta
    }
}

/// The string `id` of the object at the cursor into `id`; a value of another type sets nothing.
fn nested_id(scan: &mut Scan<'_>, id: &mut Option<String>) -> Option<()> {
    *id = None;
    if !scan.at_object() {
        return scan.skip();
    }
    scan.members(|key, scan| {
        if key == "id" {
            *id = scan.string().map(Cow::into_owned);
            Some(())
        } else {
            scan.skip()
        }
    })
}

/// `{"op":1,"d":<seq or null>}`.
pub(crate) fn heartbeat(seq: Option<u64>) -> String {
    match seq {
        Some(seq) => format!(r#"{{"op":1,"d":{seq}}}"#),
        None => r#"{"op":1,"d":null}"#.to_owned(),
    }
}

/// IDENTIFY's `properties`.
#[derive(Serialize)]
struct Properties<'a> {
    os: &'a str,
    browser: &'a str,
    device: &'a str,
}

#[derive(Serialize)]
struct IdentifyData<'a> {
    token: &'a str,
    intents: u64,
    properties: Properties<'a>,
    shard: [u32; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    presence: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    large_threshold: Option<u8>,
}

#[derive(Serialize)]
struct Command<T> {
    op: u64,
    d: T,
}

/// The fields of an IDENTIFY.
pub(crate) struct IdentifyFields<'a> {
    pub(crate) token: &'a str,
    pub(crate) intents: u64,
    pub(crate) os: &'a str,
    pub(crate) shard: [u32; 2],
    pub(crate) presence: Option<&'a serde_json::Value>,
    pub(crate) large_threshold: Option<u8>,
}

/// The client name sent as `browser` and `device`.
const CLIENT_NAME: &str = "openflume";

/// An IDENTIFY frame.
pub(crate) fn identify(fields: &IdentifyFields<'_>) -> String {
    let command = Command {
        op: op::IDENTIFY,
        d: IdentifyData {
            token: fields.token,
            intents: fields.intents,
            properties: Properties {
                os: fields.os,
                browser: CLIENT_NAME,
                device: CLIENT_NAME,
            },
            shard: fields.shard,
            presence: fields.presence,
            large_threshold: fields.large_threshold,
        },
    };
    serde_json::to_string(&command).unwrap_or_default()
}

#[derive(Serialize)]
struct ResumeData<'a> {
    token: &'a str,
    session_id: &'a str,
    seq: u64,
}

/// A RESUME frame.
pub(crate) fn resume(token: &str, session_id: &str, seq: u64) -> String {
    let command = Command {
        op: op::RESUME,
        d: ResumeData {
            token,
            session_id,
            seq,
        },
    };
    serde_json::to_string(&command).unwrap_or_default()
}

/// `GET /gateway/bot`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct GatewayBot {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) shards: Option<u32>,
    #[serde(default)]
    pub(crate) session_start_limit: Option<super::SessionStartLimit>,
}

/// The WebSocket URL for a Gateway base URL: host and path as given (a bare host gets `/`), any
/// query parameters other than `v`, `encoding` and `compress` kept, and
/// `v=10&encoding=json[&compress=zlib-stream]` added.
pub(crate) fn connect_url(base: &str, compress: bool) -> Result<String, String> {
    let parsed = Url::parse(base).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme.as_str(), "ws" | "wss") {
        return Err(format!(
            "unsupported scheme {:?} (expected ws or wss)",
            parsed.scheme
        ));
    }
    let base = base.split('#').next().unwrap_or(base);
    let (head, query) = base.split_once('?').unwrap_or((base, ""));
    let mut url = head.to_owned();
    if !head
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
    {
        url.push('/');
    }
    let mut params = vec!["v=10", "encoding=json"];
    if compress {
        params.push("compress=zlib-stream");
    }
    params.extend(query.split('&').filter(|pair| {
        let key = pair.split('=').next().unwrap_or_default();
        !pair.is_empty() && !matches!(key, "v" | "encoding" | "compress")
    }));
    url.push('?');
    url.push_str(&params.join("&"));
    Ok(url)
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
            assert_eq!(&DispatchMeta::extract(d), expected, "{d}");
        }
    }

    #[test]
    fn outbound_frames() {
        assert_eq!(heartbeat(None), r#"{"op":1,"d":null}"#);
        assert_eq!(heartbeat(Some(42)), r#"{"op":1,"d":42}"#);
        assert_eq!(
            resume("tok", "sid", 7),
            r#"{"op":6,"d":{"token":"tok","session_id":"sid","seq":7}}"#
        );
        let presence = serde_json::json!({"status": "idle"});
        let fields = IdentifyFields {
            token: "tok",
            intents: 513,
            os: "linux",
            shard: [1, 2],
            presence: Some(&presence),
            large_threshold: Some(100),
        };
        assert_eq!(
            identify(&fields),
            r#"{"op":2,"d":{"token":"tok","intents":513,"properties":{"os":"linux","browser":"openflume","device":"openflume"},"shard":[1,2],"presence":{"status":"idle"},"large_threshold":100}}"#
        );
        let plain = IdentifyFields {
            presence: None,
            large_threshold: None,
            ..fields
        };
        assert!(!identify(&plain).contains("presence"));
    }

    #[test]
    fn connect_urls() {
        let cases: &[(&str, bool, Result<&str, ()>)] = &[
            (
                "wss://gateway.discord.gg",
                false,
                Ok("wss://gateway.discord.gg/?v=10&encoding=json"),
            ),
            (
                "wss://gateway.discord.gg/",
                true,
                Ok("wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"),
            ),
            (
                "wss://gateway-us-east1-b.discord.gg/path?v=9&x=1&compress=zstd-stream#f",
                false,
                Ok("wss://gateway-us-east1-b.discord.gg/path?v=10&encoding=json&x=1"),
            ),
            (
                "ws://127.0.0.1:9000",
                false,
                Ok("ws://127.0.0.1:9000/?v=10&encoding=json"),
            ),
            ("https://discord.com", false, Err(())),
            ("gateway.discord.gg", false, Err(())),
        ];
        for &(base, compress, expected) in cases {
            assert_eq!(
                connect_url(base, compress).map_err(|_| ()),
                expected.map(str::to_owned),
                "{base}"
            );
        }
    }
}
