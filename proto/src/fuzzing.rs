//! Fuzz target bodies. The `fuzz/` crate (cargo fuzz) calls them with arbitrary bytes, and the
//! normal test suite replays every file of `fuzz/corpus/<target>/` through them once, so a crash
//! found by fuzzing becomes a regression test by adding its input to the corpus.
//!
//! Each body panics only when an invariant breaks: a machine or parser panicking, a buffer growing
//! past its limit, a timer armed in the past, an output queue that never drains, a secret in a log.

mod hub;
mod outbox;

use crate::http::{HttpError, Limits, RequestReader, ResponseReader, Side};
use crate::testing::Simulator;
use crate::{
    Bytes, ConnId, DeliveryId, Frame, HttpResponse, Input, Machine, Millis, Now, Output, ReqId,
    UnixMillis,
};

/// A token no fuzz input contains by chance, so finding it in a log means the machine leaked it.
pub const FUZZ_TOKEN: &str = "FUZZTOKEN-b0d9e2";

/// Reads fuzz bytes as a little program: each call takes what it needs, zeros when exhausted.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (usize::from(self.byte()) | usize::from(self.byte()) << 8)
            .min(max)
            .min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Feeds `data` to an HTTP response reader in chunks whose sizes come from the data itself, and
/// checks the buffer bound after every feed.
pub fn http_response(data: &[u8]) {
    let limits = Limits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 4096,
        max_chunk_line_bytes: 64,
    };
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "HEAD", "POST"][usize::from(method % 3)];
    let mut reader = ResponseReader::new(method, limits);
    let bound = limits.max_head_bytes + limits.max_body_bytes + limits.max_chunk_line_bytes + 64;
    for chunk in chunks(rest) {
        match reader.feed(chunk) {
            Ok(Some(_)) => return,
            Err(error) => return assert_remote(&error),
            Ok(None) => assert!(
                reader.buffered_bytes() <= bound,
                "response reader buffered {}",
                reader.buffered_bytes()
            ),
        }
    }
    if let Err(error) = reader.eof() {
        assert_remote(&error);
    }
}

/// The same for the server-side request reader.
pub fn http_request(data: &[u8]) {
    let limits = Limits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 4096,
        max_chunk_line_bytes: 64,
    };
    let mut reader = RequestReader::new(limits);
    let bound = limits.max_head_bytes + limits.max_body_bytes + limits.max_chunk_line_bytes + 64;
    for chunk in chunks(data) {
        match reader.feed(chunk) {
            Ok(Some(_)) => return,
            Err(error) => return assert_remote(&error),
            Ok(None) => assert!(
                reader.buffered_bytes() <= bound,
                "request reader buffered {}",
                reader.buffered_bytes()
            ),
        }
    }
    if let Err(error) = reader.eof() {
        assert_remote(&error);
    }
}

/// Whatever the bytes, a reader used as intended fails only through the peer's fault.
fn assert_remote(error: &HttpError) {
    assert_eq!(error.side(), Side::Remote, "{error:?}");
}

/// Splits `data` at offsets its first byte derives, so both whole and tiny chunks occur.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let step = data.first().map_or(1, |&b| usize::from(b % 17) + 1);
    data.get(1..).unwrap_or_default().chunks(step)
}

/// Runs `machine` over the inputs `data` describes, as a driver would (timers fired in order), and
/// checks the invariants after every step.
pub fn whole_machine<M: Machine>(machine: M, data: &[u8]) {
    let start = Now {
        mono: Millis(0),
        wall: UnixMillis(1_764_100_000_000),
    };
    let mut sim = Simulator::new(machine, start, true);
    // Misuse is the harness's to ignore: arbitrary inputs include stale and early ones.
    let _ = sim.feed(Input::Start);
    let mut reader = Reader { data };
    let mut at = Millis(0);
    let mut steps = 0;
    let mut checked = 0;
    while !reader.is_empty() && steps < 512 && at < MAX_VIRTUAL_TIME {
        steps += 1;
        at = at + delay(&mut reader);
        sim.advance_to(at);
        let input = input(&mut reader, &sim);
        let _ = sim.feed(input);
        checked = check(&sim, checked);
    }
    sim.advance_to(at + SETTLE_MS);
    check(&sim, checked);
}

/// Virtual time one run may cover before its inputs stop (an hour, a GitHub rate-limit window). Every timer in between fires, and a
/// machine left alone reconnects about every 40 s: hours of it cost a run milliseconds, which
/// slowed a whole fuzzing campaign to tens of inputs a second while exploring nothing new (the
/// reconnect loop is periodic).
const MAX_VIRTUAL_TIME: Millis = Millis(3_600_000);
/// After the last input, the timers still run this long: enough for every deadline a machine
/// arms (hello, ready, close, backoff at its cap) to fire at least once.
const SETTLE_MS: u64 = 5 * 60_000;

/// Time between inputs: mostly short, sometimes long jumps past every timer (up to half an
/// hour, past GitHub's longest rate-limit waits the fixtures know).
fn delay(reader: &mut Reader<'_>) -> u64 {
    match reader.byte() {
        0..=199 => u64::from(reader.byte()) * 10,
        200..=249 => u64::from(reader.u16()) * 10,
        _ => u64::from(reader.u16() % 1_800) * 1000,
    }
}

/// The ids the machine asked for so far, so inputs mostly hit live connections and requests.
fn live_ids<M: Machine>(sim: &Simulator<M>) -> (Vec<ConnId>, Vec<ReqId>, Vec<DeliveryId>) {
    let (mut conns, mut reqs, mut deliveries) = (Vec::new(), Vec::new(), Vec::new());
    for (_, out) in sim.transcript().outputs() {
        match out {
            Output::Connect { conn, .. } => conns.push(*conn),
            Output::Request { req, .. } => reqs.push(*req),
            Output::Emit {
                confirm: Some(d), ..
            } => deliveries.push(*d),
            _ => {}
        }
    }
    (conns, reqs, deliveries)
}

fn pick<T: Copy>(reader: &mut Reader<'_>, ids: &[T], fallback: T) -> T {
    let i = usize::from(reader.byte());
    ids.get(ids.len().saturating_sub(1 + i % 4))
        .copied()
        .unwrap_or(fallback)
}

/// A frame's arrival stamp: none, up to a minute in the driver's queue (back-pressure), or a
/// driver bug's stamp later than `now`, which machines must read as `now`.
fn arrived(reader: &mut Reader<'_>, now: Millis) -> Option<Millis> {
    let ms = u64::from(reader.u16());
    match reader.byte() % 4 {
        0 | 1 => None,
        2 => Some(Millis(now.0.saturating_sub(ms))),
        _ => Some(now + ms),
    }
}

fn input<M: Machine>(reader: &mut Reader<'_>, sim: &Simulator<M>) -> Input {
    let (conns, reqs, _) = live_ids(sim);
    let conn = pick(reader, &conns, ConnId(1));
    let req = pick(reader, &reqs, ReqId(1));
    match reader.byte() % 10 {
        // Back-pressure pauses come and go between timers, as a driver feeds them.
        0 => match reader.byte() % 4 {
            0 => Input::ReadingPaused,
            1 => Input::ReadingResumed,
            _ => Input::Timer,
        },
        1 => Input::Opened { conn },
        2 | 3 => Input::Frame {
            conn,
            arrived: arrived(reader, sim.now().mono),
            frame: Frame::Text(String::from_utf8_lossy(reader.bytes(8192)).into_owned()),
        },
        4 => Input::Frame {
            conn,
            arrived: arrived(reader, sim.now().mono),
            frame: match reader.byte() % 3 {
                0 => Frame::Binary(Bytes::from(reader.bytes(8192))),
                1 => Frame::Ping(Bytes::from(reader.bytes(16))),
                _ => Frame::Pong(Bytes::from(reader.bytes(16))),
            },
        },
        5 => Input::Closed {
            conn,
            code: Some(reader.u16()).filter(|c| *c != 0),
            reason: String::from_utf8_lossy(reader.bytes(64)).into_owned(),
        },
        6 => Input::ConnectFailed {
            conn,
            error: "connection refused".to_owned(),
        },
        7 | 8 => Input::Response {
            req,
            response: response(reader),
        },
        _ => Input::RequestFailed {
            req,
            error: "network error".to_owned(),
        },
    }
}

/// An HTTP response with a plausible status and headers drawn from the ones the machines read.
fn response(reader: &mut Reader<'_>) -> HttpResponse {
    const STATUSES: &[u16] = &[
        200, 200, 200, 304, 301, 302, 401, 403, 404, 422, 429, 500, 502, 503,
    ];
    const HEADERS: &[&str] = &[
        "retry-after",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-poll-interval",
        "link",
        "location",
        "etag",
        "last-modified",
        "content-type",
    ];
    let status = match reader.byte() {
        b if usize::from(b) < STATUSES.len() * 16 => STATUSES[usize::from(b) % STATUSES.len()],
        _ => reader.u16() % 1000,
    };
    let mut headers = Vec::new();
    for _ in 0..reader.byte() % 4 {
        let name = HEADERS[usize::from(reader.byte()) % HEADERS.len()];
        headers.push((
            name.to_owned(),
            String::from_utf8_lossy(reader.bytes(128)).into_owned(),
        ));
    }
    HttpResponse {
        status,
        headers,
        body: Bytes::from(reader.bytes(16_384)),
    }
}

/// Invariants that hold after every step, whatever the peer did. Checks the transcript entries
/// from `from` on and returns where the next check starts.
fn check<M: Machine>(sim: &Simulator<M>, from: usize) -> usize {
    let now = sim.now().mono;
    if let Some(deadline) = sim.machine.poll_timeout() {
        assert!(
            deadline >= now || sim.machine.is_finished(),
            "timer armed in the past: {deadline:?} < {now:?}"
        );
    }
    let entries = &sim.transcript().entries;
    let outputs = entries
        .get(from..)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, e)| match e {
            crate::testing::Entry::Out(out) => Some(out),
            _ => None,
        });
    for out in outputs {
        let text = match out {
            Output::Log(log) => serde_json::to_string(log).unwrap_or_default(),
            Output::Status(change) => serde_json::to_string(change).unwrap_or_default(),
            other => format!("{other:?}"),
        };
        assert!(!text.contains(FUZZ_TOKEN), "secret leaked: {text}");
    }
    entries.len()
}

#[cfg(feature = "discord")]
/// The Discord shard over arbitrary inputs; the first byte picks compression (and which) and
/// whether a gateway URL skips `/gateway/bot`.
pub fn discord_machine(data: &[u8]) {
    use crate::discord::{DiscordConfig, DiscordShard};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut config = DiscordConfig::new(FUZZ_TOKEN);
    config.compress = flags & 1 == 1;
    if flags & 4 == 4 {
        config.compression = crate::discord::TransportCompression::ZstdStream;
    }
    config.gateway_url = (flags & 2 == 2).then(|| "wss://gateway.example".to_owned());
    config.api_base = "https://discord.example/api/v10".to_owned();
    config.max_message_bytes = 1 << 20;
    if let Ok(machine) = DiscordShard::new(config, u64::from(flags)) {
        whole_machine(machine, rest);
    }
}

#[cfg(feature = "slack")]
/// The Slack machine over arbitrary inputs; the first byte picks the connection count and
/// whether a bot token triggers `auth.test`.
pub fn slack_machine(data: &[u8]) {
    use crate::slack::{SlackConfig, SlackMachine};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut config = SlackConfig::new(format!("xapp-{FUZZ_TOKEN}"));
    config.connections = flags % 3 + 1;
    config.api_base = "https://slack.example/api".to_owned();
    if flags & 0x80 != 0 {
        config.bot_token = Some(format!("xoxb-{FUZZ_TOKEN}").into());
    }
    if let Ok(machine) = SlackMachine::new(config, u64::from(flags)) {
        whole_machine(machine, rest);
    }
}

#[cfg(feature = "github")]
/// The GitHub poller over arbitrary inputs (statuses, headers and bodies from the data).
pub fn github_machine(data: &[u8]) {
    use crate::github::{Bootstrap, GithubConfig, GithubMachine};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let config = GithubConfig {
        api_url: "https://api.github.example".to_owned(),
        interval_ms: 1000,
        bootstrap: if flags & 1 == 1 {
            Bootstrap::Emit
        } else {
            Bootstrap::Skip
        },
        ..GithubConfig::new(FUZZ_TOKEN)
    };
    if let Ok(machine) = GithubMachine::new(config, u64::from(flags)) {
        whole_machine(machine, rest);
    }
}

#[cfg(feature = "cron")]
/// The cron parser on arbitrary text; an expression that parses must fire strictly later each
/// time, in UTC and in a zone with DST.
pub fn cron_expression(data: &[u8]) {
    use crate::cron::{Schedule, next_after};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(text) else {
        return;
    };
    let zones = [
        jiff::tz::TimeZone::UTC,
        jiff::tz::TimeZone::fixed(jiff::tz::offset(-5)),
    ];
    for zone in &zones {
        let mut at =
            jiff::Timestamp::from_second(1_741_500_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        for _ in 0..3 {
            match next_after(&schedule, at, zone) {
                Some(next) => {
                    assert!(next > at, "next_after went backwards for {text:?}");
                    at = next;
                }
                None => break,
            }
        }
    }
}

#[cfg(feature = "cron")]
/// The cron machine over arbitrary inputs, including long sleeps.
pub fn cron_machine(data: &[u8]) {
    use crate::cron::{CronConfig, CronMachine};
    const EXPRESSIONS: &[&str] = &[
        "* * * * *",
        "*/7 3-5 * * 1-5",
        "0 0 29 2 *",
        "@hourly",
        "30 2 * * *",
    ];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let expression = EXPRESSIONS[usize::from(pick) % EXPRESSIONS.len()];
    if let Ok(machine) = CronMachine::new(CronConfig::new(expression), jiff::tz::TimeZone::UTC, 0) {
        whole_machine(machine, rest);
    }
}

#[cfg(feature = "discord")]
/// The Discord envelope parser against serde_json, on the data as a whole frame and as the `d`
/// of one: it never accepts text that is not JSON (serde_json's `RawValue`, which like the JSON
/// grammar lets a `\u` escape name a lone surrogate), accepts any `d` that a `Value` accepts,
/// and reads `op`, `s`, `t`, `d`'s text and the routing facts exactly as a `Value` does.
pub fn discord_envelope(data: &[u8]) {
    use crate::discord::envelope::{DispatchMeta, Envelope};
    use serde_json::Value;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let agrees = |frame: &str, envelope: &Envelope<'_>, value: &Value| {
        let field = |key: &str| value.get(key).filter(|v| !v.is_null());
        assert_eq!(
            envelope.op,
            field("op").and_then(Value::as_u64),
            "op of {frame}"
        );
        assert_eq!(
            envelope.s,
            field("s").and_then(Value::as_u64),
            "s of {frame}"
        );
        assert_eq!(
            envelope.t.as_deref(),
            field("t").and_then(Value::as_str),
            "t of {frame}"
        );
        let d: Value = serde_json::from_str(envelope.data())
            .unwrap_or_else(|e| panic!("d of {frame} does not parse alone: {e}"));
        assert_eq!(
            Some(&d),
            value.get("d").or(Some(&Value::Null)),
            "d of {frame}"
        );
        let string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let nested = |key: &str| string(d.get(key).and_then(|v| v.get("id")));
        let expected = DispatchMeta {
            channel_id: string(d.get("channel_id")),
            guild_id: string(d.get("guild_id")),
            user_id: nested("author")
                .or_else(|| nested("user"))
                .or_else(|| string(d.get("user_id"))),
        };
        assert_eq!(envelope.meta, expected, "meta of {frame}");
    };
    if let Ok(envelope) = Envelope::parse(text) {
        if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(text) {
            panic!("accepted text that is not JSON ({e}): {text}");
        }
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            agrees(text, &envelope, &value);
        }
    }
    // Only a `d` that parses alone: `0,"op":1` makes a valid frame with a repeated key.
    if serde_json::from_str::<Value>(text).is_err() {
        return;
    }
    let frame = format!(r#"{{"op":0,"t":"X","d":{text}}}"#);
    if let Ok(value) = serde_json::from_str::<Value>(&frame) {
        let envelope =
            Envelope::parse(&frame).unwrap_or_else(|e| panic!("rejected a valid d ({e}): {text}"));
        agrees(&frame, &envelope, &value);
    }
}

#[cfg(feature = "discord")]
/// One connection's zstd-stream decoder. The first byte picks the output cap (1 KiB to 1 MiB)
/// and the mode: raw messages, where the decoder must never panic or return more than the cap,
/// and must keep failing once failed as the machine never feeds it again; or payloads compressed
/// here as the Gateway does (one stream, flushed after each), which must come back exactly.
pub fn zstd_stream(data: &[u8]) {
    use crate::discord::ZstdStream;
    use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};
    let mut reader = Reader { data };
    let flags = reader.byte();
    let cap = 1024usize << (flags & 0x0f).min(10);
    let Ok(mut decoder) = ZstdStream::new(cap) else {
        return;
    };
    if flags & 0x80 == 0 {
        while !reader.is_empty() {
            let message = reader.bytes(4096);
            match decoder.push(message) {
                Ok(payload) => assert!(payload.len() <= cap, "{} > cap {cap}", payload.len()),
                // The machine replaces the connection: nothing more is fed.
                Err(_) => return,
            }
        }
        return;
    }
    let Ok(mut encoder) = Encoder::new(i32::from(flags >> 4 & 0x07)) else {
        return;
    };
    while !reader.is_empty() {
        // Half the cap: incompressible bytes grow a little, and must stay below it.
        let payload = reader.bytes(cap / 2);
        let mut wire = Vec::with_capacity(payload.len() + 64);
        let mut input = InBuffer::around(payload);
        while input.pos() < payload.len() {
            wire.reserve(4096);
            let pos = wire.len();
            let ran = encoder.run(&mut input, &mut OutBuffer::around_pos(&mut wire, pos));
            assert!(ran.is_ok(), "the encoder failed: {ran:?}");
        }
        loop {
            wire.reserve(4096);
            let pos = wire.len();
            match encoder.flush(&mut OutBuffer::around_pos(&mut wire, pos)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("the encoder failed to flush: {e}"),
            }
        }
        match decoder.push(&wire) {
            Ok(back) => assert_eq!(back, payload, "a payload did not come back"),
            Err(e) => panic!("a valid stream failed: {e}"),
        }
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The webhook ingress over arbitrary connections: raw bytes, and requests with valid signatures
/// around fuzzed bodies and headers (so the payload readers are reached, not only the verifier),
/// split anywhere, with deliveries, pauses, timers and a shutdown in between. Beyond the shared
/// checks: never more connections than the cap, never a 500, and no 200 on a connection whose
/// emitted event was not delivered.
pub fn webhook_ingress(data: &[u8]) {
    use crate::webhook::{CustomSender, WebhookConfig, WebhookIngress, sign_github, sign_slack};
    let config = WebhookConfig {
        slack_signing_secret: Some(FUZZ_TOKEN.into()),
        github_secret: Some(FUZZ_TOKEN.into()),
        senders: vec![CustomSender {
            name: "hook".into(),
            secret: FUZZ_TOKEN.into(),
        }],
        max_connections: 4,
        max_buffered_bytes: 16 * 1024,
        slack_body_limit: 4096,
        github_body_limit: 8192,
        custom_body_limit: 2048,
        ..WebhookConfig::default()
    };
    let Ok(machine) = WebhookIngress::new(config) else {
        panic!("the fuzz configuration is valid");
    };
    let start = Now {
        mono: Millis(0),
        wall: UnixMillis(1_764_100_000_000),
    };
    let mut reader = Reader { data };
    let mut sim = Simulator::new(machine, start, reader.byte().is_multiple_of(2));
    let _ = sim.feed(Input::Start);
    let (mut at, mut next_conn, mut steps, mut checked) = (Millis(0), 0u64, 0, 0);
    while !reader.is_empty() && steps < 256 && at < MAX_VIRTUAL_TIME {
        steps += 1;
        at = at + delay(&mut reader);
        sim.advance_to(at);
        let conn = ConnId(u64::from(reader.byte() % 6) + 1);
        let input = match reader.byte() % 12 {
            0 => {
                next_conn += 1;
                Input::Opened {
                    conn: ConnId(next_conn),
                }
            }
            1 => Input::Closed {
                conn,
                code: None,
                reason: String::new(),
            },
            2 => {
                let (_, _, deliveries) = live_ids(&sim);
                Input::Delivered {
                    delivery: pick(&mut reader, &deliveries, DeliveryId(1)),
                }
            }
            3 => match reader.byte() % 8 {
                0 => Input::Shutdown {
                    keep_session: false,
                },
                1 | 2 => Input::ReadingPaused,
                3 | 4 => Input::ReadingResumed,
                _ => Input::Timer,
            },
            4..=6 => Input::Received {
                conn,
                bytes: Bytes::from(reader.bytes(4096)),
            },
            kind => {
                let now_s = sim.now().wall.0 / 1000;
                let body = reader.bytes(6000);
                let header = String::from_utf8_lossy(reader.bytes(48)).replace(['\r', '\n'], "");
                let (target, headers) = match kind {
                    7 => (
                        "/channels/github/webhook",
                        format!(
                            "Content-Type: application/json\r\nX-GitHub-Event: {header}\r\nX-GitHub-Delivery: d{}\r\nX-Hub-Signature-256: {}\r\n",
                            reader.byte() % 4,
                            sign_github(FUZZ_TOKEN.as_bytes(), body)
                        ),
                    ),
                    8 | 9 => (
                        [
                            "/channels/slack/events",
                            "/channels/slack/interactions",
                            "/channels/slack/commands",
                        ][usize::from(reader.byte() % 3)],
                        format!(
                            "Content-Type: {}\r\nX-Slack-Request-Timestamp: {now_s}\r\nX-Slack-Signature: {}\r\nX-Slack-Retry-Num: {header}\r\n",
                            if kind == 8 {
                                "application/json"
                            } else {
                                "application/x-www-form-urlencoded"
                            },
                            sign_slack(FUZZ_TOKEN.as_bytes(), now_s, body)
                        ),
                    ),
                    _ => (
                        "/channels/custom/hook",
                        format!(
                            "Content-Type: application/json\r\nX-Signature-256: {}\r\nwebhook-id: {header}\r\n",
                            sign_github(FUZZ_TOKEN.as_bytes(), body)
                        ),
                    ),
                };
                let mut wire = format!(
                    "POST {target} HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                wire.extend_from_slice(body);
                // Sometimes only part of it: the rest may come in a later raw input, or never.
                let keep = match reader.byte() {
                    0..=191 => wire.len(),
                    cut => wire.len() * usize::from(cut - 191) / 64,
                };
                wire.truncate(keep);
                Input::Received {
                    conn,
                    bytes: Bytes(wire),
                }
            }
        };
        let _ = sim.feed(input);
        checked = check(&sim, checked);
        assert!(sim.machine.connections() <= 4, "over the connection cap");
    }
    sim.advance_to(at + SETTLE_MS);
    check(&sim, checked);
    ingress_answers(sim.transcript());
}

/// No 500, and no 200 on a connection while an event it brought waits for its delivery.
fn ingress_answers(transcript: &crate::testing::Transcript) {
    use crate::testing::Entry;
    let mut waiting: std::collections::HashMap<ConnId, Vec<DeliveryId>> = Default::default();
    let mut last_received = None;
    for (_, entry) in &transcript.entries {
        match entry {
            Entry::In {
                input: Input::Received { conn, .. },
                ..
            } => last_received = Some(*conn),
            Entry::In {
                input: Input::Delivered { delivery },
                ..
            } => waiting
                .values_mut()
                .for_each(|d| d.retain(|x| x != delivery)),
            Entry::Out(Output::Emit {
                confirm: Some(delivery),
                ..
            }) => {
                if let Some(conn) = last_received {
                    waiting.entry(conn).or_default().push(*delivery);
                }
            }
            Entry::Out(Output::Hangup { conn }) => {
                waiting.remove(conn);
            }
            Entry::Out(Output::Transmit { conn, bytes }) => {
                // An answer lets the connection's next request in: its emit comes after this.
                last_received = Some(*conn);
                let status = bytes.as_slice().get(9..12).unwrap_or_default();
                assert_ne!(status, b"500", "a 500 for fuzzed input");
                if status == b"200" {
                    assert!(
                        waiting.get(conn).is_none_or(Vec::is_empty),
                        "200 on {conn:?} before its event was delivered"
                    );
                }
            }
            _ => {}
        }
    }
}

/// One hub subscriber's session (`HubSession`, what a WebSocket client of `serve`'s `/ws` talks
/// to) against an in-memory log whose ids, sources, types and conversation keys come from the
/// data, with a small configuration (a send queue of 1 to 4 frames, pages of 1 to 4, 512-byte
/// frames). The client sends raw text and well-formed messages with fuzzed values (hellos with
/// positions or consumers, acks, subscribes and unsubscribes with `since`: huge, negative,
/// fractional, strings, null), binary and oversized frames and pongs; the log commits more; the
/// transport writes some of the queued frames; timers fire at their deadline or late, and
/// spuriously; the server shuts down. Every `ReadLog` is answered as `serve` answers it, from
/// the shared feed (`ReadRendered`) or from the log (`Read`), sometimes after other inputs;
/// every `LookupConsumer` from the stored acks. Checks, after every input:
/// - each item frame is the log's item as rendered, its id above the last sent or passed over
///   and at most the last commit the session was told, matching the subscriptions in force for
///   it (the hello's, then each change's after its `effective_after`), and no matching item
///   before it was skipped; nor was one when the session's position passes over ids. The model
///   of subscriptions is the documented one (sets; `subscribe` adds to the lists there are,
///   `unsubscribe` removes, never from "everything"), and each `subscribed` names the point the
///   docs give: the latest of `since`, the last id sent or passed over, the end of the read in
///   flight and the previous change's point;
/// - `hello_ok` answers each accepted hello once, names the last commit, and the position
///   starts where the hello (or the consumer's stored ack) says; a consumer's acks are
///   cumulative and never beyond what was sent;
/// - a read is asked only while the queue has room, for at most that room and a page, of ids
///   after the position up to the commit and not across a pending change, with the filter in
///   force;
/// - text frames not yet written stay within the send queue plus [`crate::hub::MAX_QUEUED_ANSWERS`]
///   answers, and the session's whole state within what its subscriptions and
///   [`crate::hub::MAX_WAITING_CHANGES`] waiting changes can hold;
/// - close codes are the ones the protocol gives for the input that caused them (1001 shutdown
///   or no pong, 1002 no hello in time, 1003 binary or not a message, 1008 a message not
///   allowed then or so, or a queue that stayed full, 1009 too big; see `hub::check_close_code`),
///   with a reason of at most 123 bytes, and nothing is output after the close;
/// - a message the model cannot read is never taken without a close;
/// - the timer is never in the past, and a `Timer` leaves no deadline due.
pub fn hub_session(data: &[u8]) {
    hub::run(data);
}

/// One `--forward` target's outbox against an in-memory log that grows with events (and with
/// the outbox's own logs, as the driver appends them), a receiver answering any status from 0
/// to 999, connection failures or nothing (the request times out), wall-clock steps either
/// way, long pauses, and crashes between any two outputs followed by a restart from the state
/// as stored (a JSON round trip); the first start is a new target or one an earlier process
/// stored (any attempts and times, even disabled). The signing secret is [`FUZZ_TOKEN`] (plain
/// or as a `whsec_` secret). Checks:
/// - every request is for the first event after the target's cursor that its filter passes:
///   in id order, none skipped, a later one only once the earlier was delivered (2xx) or given
///   up (with its log), and never one the stored cursor has passed or one answered 2xx;
/// - a 2xx is stored before anything else; a 410 logs, stores the target disabled, and no
///   request follows, in this process or the next; a failure is stored as a retry or a give-up;
/// - the cursor never goes back, every stored state round-trips, no retry is stored in the
///   past, and the timer is never in the past (a `Timer` leaves no deadline due);
/// - a read is asked only once everything read was delivered or given up, for a page: at most
///   a page of events is held;
/// - neither the secret (nor its key, nor the URL's credential) is in any log, stored state,
///   header or `Debug` output.
pub fn outbox(data: &[u8]) {
    outbox::run(data);
}

/// Every fuzz target by name, for the corpus regression test and the `fuzz/` crate (a
/// protocol's targets need its feature).
pub const TARGETS: &[(&str, Target)] = &[
    ("http_response", http_response),
    ("http_request", http_request),
    #[cfg(feature = "discord")]
    ("discord_machine", discord_machine),
    #[cfg(feature = "slack")]
    ("slack_machine", slack_machine),
    #[cfg(feature = "github")]
    ("github_machine", github_machine),
    #[cfg(feature = "cron")]
    ("cron_expression", cron_expression),
    #[cfg(feature = "cron")]
    ("cron_machine", cron_machine),
    #[cfg(feature = "discord")]
    ("discord_envelope", discord_envelope),
    #[cfg(feature = "discord")]
    ("zstd_stream", zstd_stream),
    ("webhook_ingress", webhook_ingress),
    ("hub_session", hub_session),
    ("outbox", outbox),
];
