//! The Gateway's JSON shapes besides the envelope (`envelope.rs`): the few payloads the machine
//! reads, the payloads it writes, `/gateway/bot`, and the connect URL.

use crate::url::Url;
use serde::{Deserialize, Serialize};

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
/// `v=10&encoding=json[&compress=zlib-stream|zstd-stream]` added.
pub(crate) fn connect_url(
    base: &str,
    compress: Option<super::TransportCompression>,
) -> Result<String, String> {
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
    let compress = compress.map(|kind| format!("compress={}", kind.as_str()));
    if let Some(compress) = &compress {
        params.push(compress);
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
        use super::super::TransportCompression::{ZlibStream, ZstdStream};
        let cases: &[(&str, Option<_>, Result<&str, ()>)] = &[
            (
                "wss://gateway.discord.gg",
                None,
                Ok("wss://gateway.discord.gg/?v=10&encoding=json"),
            ),
            (
                "wss://gateway.discord.gg/",
                Some(ZlibStream),
                Ok("wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"),
            ),
            (
                "wss://gateway.discord.gg/?compress=zlib-stream",
                Some(ZstdStream),
                Ok("wss://gateway.discord.gg/?v=10&encoding=json&compress=zstd-stream"),
            ),
            (
                "wss://gateway-us-east1-b.discord.gg/path?v=9&x=1&compress=zstd-stream#f",
                None,
                Ok("wss://gateway-us-east1-b.discord.gg/path?v=10&encoding=json&x=1"),
            ),
            (
                "ws://127.0.0.1:9000",
                None,
                Ok("ws://127.0.0.1:9000/?v=10&encoding=json"),
            ),
            ("https://discord.com", None, Err(())),
            ("gateway.discord.gg", None, Err(())),
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
