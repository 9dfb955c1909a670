//! Verified bodies into events that look exactly like the Socket Mode and polling ones, so a
//! consumer handles both transports with one code path:
//! - Slack: source `slack`, type `events_api` / `interactive` / `slash_commands`, data the
//!   payload Socket Mode would carry, meta as Socket Mode's plus `team_id` and `retry_num`.
//! - GitHub: source `github`, type the `X-GitHub-Event` name, data the payload, meta
//!   `event_type`, `action`, `repository`, `sender`, `delivery_id` and `conversation_key`.
//! - Custom: source `custom`, type the sender's name, data the payload, meta `delivery_id`.
//!
//! Handshakes (`url_verification`, `ping`) are answered and emit nothing.

use super::encoding::form_fields;
use super::route::Channel;
use crate::http::ReceivedRequest;
use crate::{Event, RawJson, UnixMillis};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// What a verified request comes to.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A handshake: answer 200 with this JSON body (empty for none), emit nothing.
    Handshake { body: String, what: &'static str },
    /// An event, with the key its redeliveries share.
    Event { event: Event, dedup: Option<String> },
}

/// Why a verified body is refused (400); the text is the server's own words, safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

fn malformed<T>(why: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(why.into()))
}

/// Reads a verified request of `channel`. `sender` is the custom sender's name.
pub(crate) fn arrival(
    channel: Channel,
    sender: &str,
    request: &ReceivedRequest,
    now: UnixMillis,
) -> Result<Arrival, Malformed> {
    match channel {
        Channel::SlackEvents => slack_events(request, now),
        Channel::SlackInteractions => slack_interaction(request, now),
        Channel::SlackCommands => slack_command(request, now),
        Channel::Github => github(request, now),
        Channel::Custom(_) => custom(sender, request, now),
    }
}

/// The body as one JSON object, its text kept exactly as sent.
fn json_object(text: &[u8]) -> Result<Box<RawValue>, Malformed> {
    let text = std::str::from_utf8(text).or_else(|_| malformed("body is not UTF-8"))?;
    let raw: Box<RawValue> =
        serde_json::from_str(text).or_else(|e| malformed(format!("body is not JSON: {e}")))?;
    if !raw.get().trim_start().starts_with('{') {
        return malformed("body is not a JSON object");
    }
    Ok(raw)
}

fn form_field(request: &ReceivedRequest, name: &str) -> Result<Option<String>, Malformed> {
    let fields = form_fields(request.body.as_slice())
        .ok_or_else(|| Malformed("body is not a valid form".into()))?;
    Ok(fields.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SlackOuter<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    challenge: Option<String>,
    team_id: Option<String>,
    #[serde(borrow)]
    team: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Team {
    id: Option<String>,
}

/// An event as Slack's Socket Mode source would emit it, plus the webhook-only facts.
fn slack_event(
    kind: &str,
    raw: Box<RawValue>,
    request: &ReceivedRequest,
    now: UnixMillis,
) -> (Event, Option<String>) {
    let outer: SlackOuter<'_> = serde_json::from_str(raw.get()).unwrap_or_default();
    let team_id = outer.team_id.clone().or_else(|| {
        let team: Team = outer
            .team
            .and_then(|team| serde_json::from_str(team.get()).ok())
            .unwrap_or_default();
        team.id
    });
    let extracted = crate::slack::meta::extract(kind, &raw);
    let mut event = Event::new("slack", kind, RawJson::from_raw(raw), now);
    event.meta = extracted.meta;
    event.meta.insert("event_type".into(), kind.to_owned());
    if let Some(team) = team_id.filter(|t| !t.is_empty()) {
        event.meta.insert("team_id".into(), team);
    }
    for (header, key) in [
        ("X-Slack-Retry-Num", "retry_num"),
        ("X-Slack-Retry-Reason", "retry_reason"),
    ] {
        if let Some(value) = request.header(header) {
            event.meta.insert(key.into(), value.to_owned());
        }
    }
    let dedup = super::redelivery_key(&event);
    (event, dedup)
}

fn slack_events(request: &ReceivedRequest, now: UnixMillis) -> Result<Arrival, Malformed> {
    let raw = json_object(request.body.as_slice())?;
    let outer: SlackOuter<'_> = serde_json::from_str(raw.get()).unwrap_or_default();
    if outer.kind == Some("url_verification") {
        let Some(challenge) = outer.challenge else {
            return malformed("url_verification without a challenge string");
        };
        let body = serde_json::json!({ "challenge": challenge }).to_string();
        return Ok(Arrival::Handshake {
            body,
            what: "Slack url_verification",
        });
    }
    let (event, dedup) = slack_event("events_api", raw, request, now);
    Ok(Arrival::Event { event, dedup })
}

fn slack_interaction(request: &ReceivedRequest, now: UnixMillis) -> Result<Arrival, Malformed> {
    let Some(payload) = form_field(request, "payload")? else {
        return malformed("interaction without a payload field");
    };
    let raw = json_object(payload.as_bytes())?;
    let (event, _) = slack_event("interactive", raw, request, now);
    Ok(Arrival::Event { event, dedup: None })
}

fn slack_command(request: &ReceivedRequest, now: UnixMillis) -> Result<Arrival, Malformed> {
    let fields = form_fields(request.body.as_slice())
        .ok_or_else(|| Malformed("body is not a valid form".into()))?;
    if !fields.iter().any(|(name, _)| name == "command") {
        return malformed("slash command without a command field");
    }
    // The fields as one object, as Socket Mode carries a command (a repeated name: the last).
    let object: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    let text = serde_json::Value::Object(object).to_string();
    let raw = RawValue::from_string(text).or_else(|e| malformed(e.to_string()))?;
    let (event, _) = slack_event("slash_commands", raw, request, now);
    Ok(Arrival::Event { event, dedup: None })
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct GithubPayload<'a> {
    #[serde(borrow)]
    action: Option<&'a str>,
    repository: Option<Repository>,
    sender: Option<Login>,
    issue: Option<Numbered>,
    pull_request: Option<Numbered>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Login {
    login: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Numbered {
    number: Option<u64>,
}

fn github(request: &ReceivedRequest, now: UnixMillis) -> Result<Arrival, Malformed> {
    let Some(kind) = request.header("X-GitHub-Event").map(str::trim) else {
        return malformed("missing X-GitHub-Event");
    };
    if kind.is_empty() || kind.len() > 64 || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return malformed("X-GitHub-Event is not an event name");
    }
    let Some(delivery) = request.header("X-GitHub-Delivery").map(str::trim) else {
        return malformed("missing X-GitHub-Delivery");
    };
    if delivery.is_empty()
        || delivery.len() > 128
        || !delivery.bytes().all(|b| b.is_ascii_graphic())
    {
        return malformed("X-GitHub-Delivery is not a delivery id");
    }
    let form = request.header("Content-Type").is_some_and(|t| {
        t.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let raw = if form {
        let Some(payload) = form_field(request, "payload")? else {
            return malformed("form body without a payload field");
        };
        json_object(payload.as_bytes())?
    } else {
        json_object(request.body.as_slice())?
    };
    let payload: GithubPayload<'_> = serde_json::from_str(raw.get()).unwrap_or_default();
    if kind == "ping" {
        return Ok(Arrival::Handshake {
            body: String::new(),
            what: "GitHub ping",
        });
    }
    let mut meta = BTreeMap::new();
    meta.insert("event_type".into(), kind.to_owned());
    meta.insert("delivery_id".into(), delivery.to_owned());
    if let Some(action) = payload.action {
        meta.insert("action".into(), action.to_owned());
    }
    let repository = payload.repository.and_then(|r| r.full_name);
    if let Some(login) = payload.sender.and_then(|s| s.login) {
        meta.insert("sender".into(), login);
    }
    let number = payload
        .issue
        .and_then(|i| i.number)
        .or_else(|| payload.pull_request.and_then(|p| p.number));
    if let (Some(full_name), Some(number)) = (&repository, number)
        && let Some((owner, repo)) = full_name.split_once('/')
    {
        meta.insert(
            "conversation_key".into(),
            crate::conversation::github(owner, repo, number),
        );
    }
    if let Some(full_name) = repository {
        meta.insert("repository".into(), full_name);
    }
    let mut event = Event::new("github", kind, RawJson::from_raw(raw), now);
    event.meta = meta;
    let dedup = super::redelivery_key(&event);
    Ok(Arrival::Event { event, dedup })
}

fn custom(sender: &str, request: &ReceivedRequest, now: UnixMillis) -> Result<Arrival, Malformed> {
    let raw = json_object(request.body.as_slice())?;
    let mut event = Event::new("custom", sender, RawJson::from_raw(raw), now);
    let id = request
        .header("webhook-id")
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
    if let Some(id) = id {
        event.meta.insert("delivery_id".into(), id.to_owned());
    }
    let dedup = super::redelivery_key(&event);
    Ok(Arrival::Event { event, dedup })
}
