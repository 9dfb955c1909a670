//! The hub at `/ws` of `openflume serve` (issue 17), through the real binary and real WebSocket
//! clients on 127.0.0.1: the replay/live seam while events keep coming, subscriptions and their
//! changes, the close codes (1008 for a client that stops reading, 1009, 1003, 1001 without a
//! pong), the token checked before the upgrade, pings both ways, and named consumers.
//!
//! Events go in as signed webhooks (custom senders `deploys` and `alerts`, and GitHub `issues`),
//! each answered 200 only once committed; what a client must receive is read back from the log
//! file itself (`openflume_log::LogReader`, and `openflume log tail` once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_log::{EventId, Filter as LogFilter, LogReader};
use openflume_tests::openflume_bin;
use openflume_tests::serve::{HUB_TOKEN, Serve, post_custom, post_github_issue};
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// How long anything may take on a loaded machine before the test fails.
const WAIT: Duration = Duration::from_secs(30);
const ISSUE_7: &str = "github:v1:owner:octo:repo:app:issue:7";

type Ws = WebSocket<TcpStream>;

// ---------------------------------------------------------------------------------------------
// What the tests see: items, frames, and the log they are checked against.
// ---------------------------------------------------------------------------------------------

/// One item as the tests compare them: its id and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    id: u64,
    source: String,
    /// The event type, or `log`.
    kind: String,
    key: Option<String>,
    /// `data.n` of the events the tests post.
    n: Option<u64>,
    /// `data.last`: the final event a sender posts.
    last: bool,
}

impl Got {
    fn from_item(id: u64, item: &Value) -> Got {
        match item["kind"].as_str() {
            Some("event") => {
                let event = &item["event"];
                Got {
                    id,
                    source: event["source"].as_str().unwrap().to_owned(),
                    kind: event["type"].as_str().unwrap().to_owned(),
                    key: event["meta"]["conversation_key"]
                        .as_str()
                        .map(str::to_owned),
                    n: event["data"]["n"].as_u64(),
                    last: event["data"]["last"] == true,
                }
            }
            _ => Got {
                id,
                source: item["log"]["source"].as_str().unwrap_or("?").to_owned(),
                kind: "log".to_owned(),
                key: None,
                n: None,
                last: false,
            },
        }
    }

    fn from_frame(frame: &Value) -> Got {
        assert_eq!(frame["type"], "item", "{frame}");
        Got::from_item(frame["event_id"].as_u64().unwrap(), &frame["item"])
    }

    /// `deploys 3`, `issues 7/2`, `log`: what the test posted, without the id.
    fn label(&self) -> String {
        match (self.kind.as_str(), &self.key, self.n) {
            ("log", _, _) => "log".to_owned(),
            ("issues", Some(key), Some(n)) => {
                format!("issues {}/{n}", key.rsplit(':').next().unwrap())
            }
            (kind, _, Some(n)) => format!("{kind} {n}"),
            (kind, _, None) => kind.to_owned(),
        }
    }
}

fn ids(items: &[Got]) -> Vec<u64> {
    items.iter().map(|g| g.id).collect()
}

fn labels(items: &[Got]) -> Vec<String> {
    items.iter().map(Got::label).collect()
}

/// Every item in the log, read from the file.
fn logged(serve: &Serve) -> Vec<Got> {
    let reader = LogReader::open(serve.data_dir()).unwrap();
    let mut all = Vec::new();
    let mut after = EventId(0);
    loop {
        let page = reader
            .read_after(after, 1000, &LogFilter::default())
            .unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        after = last.event_id;
        for entry in page {
            let item: Value = serde_json::from_str(&entry.record.json).unwrap();
            all.push(Got::from_item(entry.event_id.0, &item));
        }
    }
}

fn last_logged_id(serve: &Serve) -> u64 {
    LogReader::open(serve.data_dir())
        .unwrap()
        .last_id()
        .unwrap()
        .0
}

/// What a client may see of a frame.
#[derive(Debug)]
enum Frame {
    Json(Value),
    Ping,
    Pong(Vec<u8>),
    Closed(Option<(u16, String)>),
}

fn connect(addr: SocketAddr, authorization: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert("Authorization", value.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (socket, _) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(error) => error,
        tungstenite::HandshakeError::Interrupted(_) => panic!("a blocking handshake"),
    })?;
    Ok(socket)
}

/// A client with the right token.
fn client(serve: &Serve) -> Ws {
    connect(serve.addr, Some(&format!("Bearer {HUB_TOKEN}"))).expect("upgraded")
}

fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => return Frame::Json(serde_json::from_str(&text).unwrap()),
            Ok(Message::Ping(_)) => return Frame::Ping,
            Ok(Message::Pong(data)) => return Frame::Pong(data.to_vec()),
            Ok(Message::Close(frame)) => {
                return Frame::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Ok(Message::Binary(_)) => panic!("the hub sent a binary frame"),
            Ok(Message::Frame(_)) => {}
            Err(error) => panic!("no frame within {WAIT:?}: {error}"),
        }
    }
}

/// The next text frame; pings and pongs are passed over, a close fails the test.
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match next_frame(ws) {
            Frame::Json(value) => return value,
            Frame::Ping | Frame::Pong(_) => {}
            Frame::Closed(close) => panic!("closed: {close:?}"),
        }
    }
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

fn hello(ws: &mut Ws, hello: &str) -> Value {
    send(ws, hello);
    let ok = next_json(ws);
    assert_eq!(ok["type"], "hello_ok", "{ok}");
    ok
}

/// Item frames until `done` accepts the items so far.
fn items_until(ws: &mut Ws, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let mut items = Vec::new();
    while !done(&items) {
        items.push(Got::from_frame(&next_json(ws)));
    }
    items
}

/// Reads on to the close frame (items and pings included); its code and reason.
fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match next_frame(ws) {
            Frame::Closed(Some(close)) => return close,
            Frame::Closed(None) => panic!("a close frame without a code"),
            Frame::Json(_) | Frame::Ping | Frame::Pong(_) => {}
        }
    }
}

/// Closes from the client's side: the hub answers the close frame, then the connection ends.
fn close_politely(ws: &mut Ws) {
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(error) => panic!("the hub did not answer the close: {error}"),
        }
    }
}

/// Polls `condition` until it holds; fails the test with `what` after [`WAIT`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn deploy(serve: &Serve, n: u64) {
    assert_eq!(
        post_custom(serve.addr, "deploys", &format!(r#"{{"n":{n}}}"#)),
        200
    );
}

fn alert(serve: &Serve, n: u64) {
    assert_eq!(
        post_custom(serve.addr, "alerts", &format!(r#"{{"n":{n}}}"#)),
        200
    );
}

fn issue(serve: &Serve, number: u64, n: u64) {
    assert_eq!(post_github_issue(serve.addr, number, n), 200);
}

// ---------------------------------------------------------------------------------------------
// The replay/live seam.
// ---------------------------------------------------------------------------------------------

/// Where a client's hello starts it.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// `after_event_id: 0`.
    Beginning,
    /// Half-way into what the log holds when it joins.
    MidLog,
    /// `after_event_id` omitted: the end of the log.
    Omitted,
}

/// Two senders post as fast as the log commits while five clients join one after the other,
/// from the beginning, from the middle, from the end (no `after_event_id`), with a type filter
/// and with a source and type filter. Each client receives exactly the log's matching ids after
/// its start: strictly increasing, no gap, no duplicate, wherever the replay turned into live.
#[test]
fn clients_joining_during_a_burst_get_every_matching_id_once_in_order() {
    let serve = Serve::with_senders(&["deploys", "alerts"], &[], &[]);
    let posted = Arc::new(AtomicU64::new(0));
    let joined = Arc::new(AtomicU64::new(0));
    const CLIENTS: u64 = 5;
    const AT_LEAST: u64 = 100;
    let senders: Vec<_> = ["deploys", "alerts"]
        .into_iter()
        .map(|sender| {
            let (posted, joined, addr) = (posted.clone(), joined.clone(), serve.addr);
            std::thread::spawn(move || {
                let mut n = 0;
                // Until every client has joined, so the last ones join while events still come.
                while n < AT_LEAST || joined.load(Ordering::SeqCst) < CLIENTS {
                    n += 1;
                    let status = post_custom(addr, sender, &format!(r#"{{"n":{n}}}"#));
                    assert_eq!(status, 200);
                    posted.fetch_add(1, Ordering::SeqCst);
                }
                let body = format!(r#"{{"n":{},"last":true}}"#, n + 1);
                assert_eq!(post_custom(addr, sender, &body), 200);
            })
        })
        .collect();

    let everything: Wants = |_| true;
    let deploys: Wants = |g| g.kind == "deploys";
    let custom_alerts: Wants = |g| g.source == "custom" && g.kind == "alerts";
    let plans: [(Start, &str, Wants); CLIENTS as usize] = [
        (Start::Beginning, "", everything),
        (Start::MidLog, "", everything),
        (Start::Omitted, "", everything),
        (
            Start::Beginning,
            r#","subscriptions":{"types":["deploys"]}"#,
            deploys,
        ),
        (
            Start::MidLog,
            r#","subscriptions":{"sources":["custom"],"types":["alerts"]}"#,
            custom_alerts,
        ),
    ];
    let mut clients = Vec::new();
    for (k, (start, subscriptions, wants)) in plans.into_iter().enumerate() {
        let k = k as u64;
        wait_until(&format!("{} events are posted", k * 40), || {
            posted.load(Ordering::SeqCst) >= k * 40
        });
        let mut ws = client(&serve);
        let after = match start {
            Start::Beginning => Some(0),
            Start::MidLog => Some(last_logged_id(&serve) / 2),
            Start::Omitted => None,
        };
        let position = after.map_or(String::new(), |a| format!(r#","after_event_id":{a}"#));
        let ok = hello(
            &mut ws,
            &format!(r#"{{"type":"hello"{position}{subscriptions}}}"#),
        );
        joined.fetch_add(1, Ordering::SeqCst);
        let start_id = after.unwrap_or_else(|| ok["replay_until"].as_u64().unwrap());
        clients.push(std::thread::spawn(move || {
            // Done once the `last` event of every sender it wants came.
            let lasts_wanted = ["deploys", "alerts"]
                .iter()
                .filter(|kind| {
                    wants(&Got {
                        id: 0,
                        source: "custom".into(),
                        kind: (**kind).into(),
                        key: None,
                        n: None,
                        last: true,
                    })
                })
                .count();
            let items = items_until(&mut ws, |items| {
                items.iter().filter(|g| g.last).count() == lasts_wanted
            });
            (start_id, wants, items)
        }));
    }
    for sender in senders {
        sender.join().unwrap();
    }
    let log = logged(&serve);
    for (k, client) in clients.into_iter().enumerate() {
        let (start_id, wants, items) = client.join().unwrap();
        assert_got_the_log(k, start_id, wants, &items, &log);
        let end = items.last().unwrap().id;
        if k == 0 {
            // `openflume log tail` agrees on the custom events of the client that saw them all.
            let output = std::process::Command::new(openflume_bin())
                .args(["log", "tail", "--source", "custom", "--data"])
                .arg(serve.data_dir())
                .output()
                .unwrap();
            assert!(output.status.success());
            let tailed: Vec<u64> = String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap()["event_id"].as_u64())
                .map(Option::unwrap)
                .filter(|id| *id <= end)
                .collect();
            let custom: Vec<u64> = items
                .iter()
                .filter(|g| g.source == "custom")
                .map(|g| g.id)
                .collect();
            assert_eq!(custom, tailed);
        }
    }
}

/// Which of the log's items a client subscribed to.
type Wants = fn(&Got) -> bool;

/// `items`, what client `k` got after `start_id`, are exactly the log's items that `wants`
/// passes, from there up to the last one it got: in order, each once, none missing.
fn assert_got_the_log(k: usize, start_id: u64, wants: Wants, items: &[Got], log: &[Got]) {
    let end = items.last().expect("the client got items").id;
    let expected: Vec<Got> = log
        .iter()
        .filter(|g| g.id > start_id && g.id <= end && wants(g))
        .cloned()
        .collect();
    assert_eq!(
        ids(items),
        ids(&expected),
        "client {k} (after {start_id}) got a different sequence than the log holds"
    );
    assert_eq!(labels(items), labels(&expected), "client {k}");
}

/// Many clients at once: `serve` reads and renders each live item once and shares it among
/// the sessions (its hub feed), while clients that start in the past replay from the log. 200
/// clients (a quarter from the beginning, a quarter from the end, a quarter of each with a type
/// filter) all receive exactly the log's matching ids after their start, in order, with no gap
/// or repeat, while two senders post.
#[test]
fn two_hundred_clients_at_once_each_get_every_item_in_order() {
    const CLIENTS: usize = 200;
    const EACH: u64 = 60;
    let serve = Serve::with_senders(&["deploys", "alerts"], &[], &[]);
    for n in 1..=10 {
        deploy(&serve, n);
    }
    let everything: Wants = |_| true;
    let deploys: Wants = |g| g.kind == "deploys";
    let alerts: Wants = |g| g.kind == "alerts";
    let plans: [(&str, &str, Wants, usize); 4] = [
        (r#","after_event_id":0"#, "", everything, 2),
        ("", "", everything, 2),
        (
            r#","after_event_id":0"#,
            r#","subscriptions":{"types":["deploys"]}"#,
            deploys,
            1,
        ),
        ("", r#","subscriptions":{"types":["alerts"]}"#, alerts, 1),
    ];
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let (position, subscriptions, wants, lasts_wanted) = plans[k % plans.len()];
        let mut ws = client(&serve);
        let ok = hello(
            &mut ws,
            &format!(r#"{{"type":"hello"{position}{subscriptions}}}"#),
        );
        let start_id = if position.is_empty() {
            ok["replay_until"].as_u64().unwrap()
        } else {
            0
        };
        clients.push(std::thread::spawn(move || {
            let items = items_until(&mut ws, |items| {
                items.iter().filter(|g| g.last).count() == lasts_wanted
            });
            (start_id, wants, items)
        }));
    }
    let senders: Vec<_> = ["deploys", "alerts"]
        .into_iter()
        .map(|sender| {
            let addr = serve.addr;
            std::thread::spawn(move || {
                for n in 1..=EACH {
                    let last = if n == EACH { r#","last":true"# } else { "" };
                    let body = format!(r#"{{"n":{n}{last}}}"#);
                    assert_eq!(post_custom(addr, sender, &body), 200);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let log = logged(&serve);
    for (k, client) in clients.into_iter().enumerate() {
        let (start_id, wants, items) = client.join().unwrap();
        assert_got_the_log(k, start_id, wants, &items, &log);
        let posted = items.iter().filter(|g| g.source == "custom").count() as u64;
        let least = if k % 4 < 2 { 2 * EACH } else { EACH };
        assert!(
            posted >= least,
            "client {k} got {posted} of the posted events"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions.
// ---------------------------------------------------------------------------------------------

/// Omitted subscriptions (or omitted lists) mean everything; `sources`, `types` and
/// `conversation_keys` each narrow, together they must all pass; an empty list means nothing,
/// until a `subscribe` adds to it (from then on only: what was passed over is not sent).
#[test]
fn subscriptions_select_by_source_type_and_conversation_key() {
    let serve = Serve::with_senders(&["deploys", "alerts"], &[], &[]);
    for n in 1..=2 {
        deploy(&serve, n);
        alert(&serve, n);
        issue(&serve, 7, n);
        issue(&serve, 8, n);
    }
    let all_events = [
        "deploys 1",
        "alerts 1",
        "issues 7/1",
        "issues 8/1",
        "deploys 2",
        "alerts 2",
        "issues 7/2",
        "issues 8/2",
    ];
    let cases: [(&str, &[&str]); 7] = [
        ("", &all_events),
        (r#","subscriptions":{}"#, &all_events),
        (
            r#","subscriptions":{"sources":["github"]}"#,
            &["issues 7/1", "issues 8/1", "issues 7/2", "issues 8/2"],
        ),
        (
            r#","subscriptions":{"types":["alerts"]}"#,
            &["alerts 1", "alerts 2"],
        ),
        (
            &format!(r#","subscriptions":{{"conversation_keys":["{ISSUE_7}"]}}"#),
            &["issues 7/1", "issues 7/2"],
        ),
        (
            r#","subscriptions":{"sources":["custom"],"types":["deploys","issues"]}"#,
            &["deploys 1", "deploys 2"],
        ),
        (
            r#","subscriptions":{"sources":["github","custom"],"types":["issues","alerts"],"conversation_keys":[]}"#,
            &[],
        ),
    ];
    let log = logged(&serve);
    for (subscriptions, expected) in cases {
        let mut ws = client(&serve);
        hello(
            &mut ws,
            &format!(r#"{{"type":"hello","after_event_id":0{subscriptions}}}"#),
        );
        let events = expected.len();
        let items = items_until(&mut ws, |items| {
            items.iter().filter(|g| g.kind != "log").count() == events
        });
        let got: Vec<String> = items
            .iter()
            .filter(|g| g.kind != "log")
            .map(Got::label)
            .collect();
        assert_eq!(got, expected, "subscriptions {subscriptions:?}");
        if subscriptions.is_empty() {
            // Everything: logs too, exactly the log's ids.
            let end = items.last().unwrap().id;
            let logged_ids: Vec<u64> = log.iter().map(|g| g.id).filter(|id| *id <= end).collect();
            assert_eq!(ids(&items), logged_ids);
        }
    }

    // Empty lists: nothing, until a subscribe adds a value; what was passed over stays behind.
    let widen = [
        (
            r#"{"sources":[]}"#,
            r#"{"sources":["custom"]}"#,
            "deploys 3",
        ),
        (r#"{"types":[]}"#, r#"{"types":["issues"]}"#, "issues 8/3"),
        (
            r#"{"conversation_keys":[]}"#,
            &format!(r#"{{"conversation_keys":["{ISSUE_7}"]}}"#),
            "issues 7/3",
        ),
    ];
    let mut clients = Vec::new();
    for (nothing, more, _) in &widen {
        let mut ws = client(&serve);
        let ok = hello(
            &mut ws,
            &format!(r#"{{"type":"hello","after_event_id":0,"subscriptions":{nothing}}}"#),
        );
        send(
            &mut ws,
            &format!(r#"{{"type":"subscribe","subscriptions":{more}}}"#),
        );
        // The subscribed answer comes before any item: nothing was sent for the empty list.
        let subscribed = next_json(&mut ws);
        assert_eq!(subscribed["type"], "subscribed", "{nothing}: {subscribed}");
        assert!(
            subscribed["effective_after"].as_u64() >= ok["replay_until"].as_u64(),
            "{subscribed} {ok}"
        );
        clients.push(ws);
    }
    deploy(&serve, 3);
    issue(&serve, 8, 3);
    issue(&serve, 7, 3);
    for (mut ws, (nothing, more, first)) in clients.into_iter().zip(widen) {
        let got = Got::from_frame(&next_json(&mut ws));
        assert_eq!(got.label(), first, "{nothing} then {more}");
    }
}

/// `subscribe` and `unsubscribe` apply after their `since`, or after what the client was sent
/// already, whichever is later: `subscribed` says where. Removing from a list that was never
/// given (everything) is refused with 1008.
#[test]
fn subscribe_and_unsubscribe_change_the_stream_from_their_point_on() {
    let serve = Serve::with_senders(&["deploys", "alerts"], &[], &[]);
    deploy(&serve, 1);
    alert(&serve, 1);
    let mut ws = client(&serve);
    hello(
        &mut ws,
        r#"{"type":"hello","after_event_id":0,"subscriptions":{"sources":["custom"],"types":["deploys"]}}"#,
    );
    let got = items_until(&mut ws, |items| items.len() == 1);
    assert_eq!(labels(&got), ["deploys 1"]);

    // `since` in the past: from the client's position on, so `alerts 1` (passed over) stays behind.
    send(
        &mut ws,
        r#"{"type":"subscribe","subscriptions":{"types":["alerts"]},"since":0}"#,
    );
    let subscribed = next_json(&mut ws);
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let alert_1 = logged(&serve)
        .into_iter()
        .find(|g| g.label() == "alerts 1")
        .unwrap();
    assert!(subscribed["effective_after"].as_u64().unwrap() >= alert_1.id);
    alert(&serve, 2);
    deploy(&serve, 2);
    let got = items_until(&mut ws, |items| items.len() == 2);
    assert_eq!(labels(&got), ["alerts 2", "deploys 2"]);

    // `since` ahead of the log: deploys still come up to it, only alerts after it.
    let before = last_logged_id(&serve);
    let since = before + 2;
    send(
        &mut ws,
        &format!(
            r#"{{"type":"unsubscribe","subscriptions":{{"types":["deploys"]}},"since":{since}}}"#
        ),
    );
    let subscribed = next_json(&mut ws);
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["effective_after"].as_u64(), Some(since));
    for n in 3..=5 {
        deploy(&serve, n);
    }
    alert(&serve, 3);
    let got = items_until(&mut ws, |items| {
        items.last().is_some_and(|g| g.label() == "alerts 3")
    });
    let expected: Vec<Got> = logged(&serve)
        .into_iter()
        .filter(|g| g.id > before && g.source == "custom")
        .filter(|g| g.kind == "alerts" || (g.kind == "deploys" && g.id <= since))
        .collect();
    assert_eq!(ids(&got), ids(&expected));
    assert_eq!(
        labels(&got),
        ["deploys 3", "deploys 4", "alerts 3"],
        "posted right after {before}, nothing else appended"
    );

    // `sources` was given; `conversation_keys` was not (everything): nothing to take out of it.
    send(
        &mut ws,
        &format!(
            r#"{{"type":"unsubscribe","subscriptions":{{"conversation_keys":["{ISSUE_7}"]}}}}"#
        ),
    );
    let (code, reason) = close_of(&mut ws);
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("conversation_keys"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Back-pressure.
// ---------------------------------------------------------------------------------------------

/// A client that stops reading while events keep coming fills the kernel's buffers, then its
/// send queue; after the stall timeout the hub closes it with 1008 and says where to resume.
/// When it reads again it gets what was queued, then the close; it resumes from there with no
/// gap. A client beside it that keeps reading is not held up.
#[test]
fn a_client_that_stops_reading_is_closed_with_1008_and_resumes_without_a_gap() {
    let mut serve = Serve::with_senders(
        &["deploys"],
        &[],
        &[
            ("OPENFLUME_HUB_SEND_QUEUE", "8"),
            ("OPENFLUME_HUB_STALL_TIMEOUT_MS", "1000"),
        ],
    );
    deploy(&serve, 1);
    let subscriptions = r#","subscriptions":{"sources":["custom"]}"#;
    let mut slow = client(&serve);
    // A small receive window, so the kernel holds little for the client that stops reading.
    rustix::net::sockopt::set_socket_recv_buffer_size(slow.get_ref(), 16 * 1024).unwrap();
    hello(
        &mut slow,
        &format!(r#"{{"type":"hello","after_event_id":0{subscriptions}}}"#),
    );
    let mut received = items_until(&mut slow, |items| items.len() == 1);
    assert_eq!(labels(&received), ["deploys 1"]);

    let mut fast = client(&serve);
    hello(
        &mut fast,
        &format!(r#"{{"type":"hello","after_event_id":0{subscriptions}}}"#),
    );
    let fast =
        std::thread::spawn(move || items_until(&mut fast, |items| items.iter().any(|g| g.last)));

    // Large events until the hub gives up on the slow client.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (stop, addr) = (stop.clone(), serve.addr);
        std::thread::spawn(move || {
            let pad = "x".repeat(128 * 1024);
            let mut n = 1;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                assert!(n < 2000, "the slow client was never closed");
                let body = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
                assert_eq!(post_custom(addr, "deploys", &body), 200);
            }
            let body = format!(r#"{{"n":{},"last":true}}"#, n + 1);
            assert_eq!(post_custom(addr, "deploys", &body), 200);
        })
    };
    let said = serve.wait_for_stderr(WAIT, |line| line.contains("closed with 1008"));
    stop.store(true, Ordering::SeqCst);

    // Reading again: what was queued, then the close frame naming the id to resume after.
    let (code, reason) = loop {
        match next_frame(&mut slow) {
            Frame::Json(frame) => received.push(Got::from_frame(&frame)),
            Frame::Closed(Some(close)) => break close,
            Frame::Closed(None) => panic!("a close without a code"),
            Frame::Ping | Frame::Pong(_) => {}
        }
    };
    assert_eq!(code, 1008, "{reason} ({said})");
    let resume: u64 = reason
        .split("resume after event ")
        .nth(1)
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no id to resume after in {reason:?}"));
    assert!(received.last().unwrap().id <= resume, "{reason}");
    assert!(received.len() > 1, "it was sent more before it stalled");

    let mut again = client(&serve);
    hello(
        &mut again,
        &format!(r#"{{"type":"hello","after_event_id":{resume}{subscriptions}}}"#),
    );
    received.extend(items_until(&mut again, |items| {
        items.iter().any(|g| g.last)
    }));
    sender.join().unwrap();
    let fast = fast.join().unwrap();

    let expected: Vec<Got> = logged(&serve)
        .into_iter()
        .filter(|g| g.source == "custom")
        .collect();
    assert!(expected.last().unwrap().last);
    assert_eq!(ids(&received), ids(&expected), "the slow client, resumed");
    assert_eq!(ids(&fast), ids(&expected), "the client that kept reading");
}

// ---------------------------------------------------------------------------------------------
// Close codes and the token.
// ---------------------------------------------------------------------------------------------

/// A client frame over the hub's limit (64 KiB) gets 1009: one the hub reads whole, and one
/// far larger that the transport refuses to buffer.
#[test]
fn an_oversized_client_frame_gets_1009() {
    let serve = Serve::with_senders(&["deploys"], &[], &[]);
    for size in [100 * 1024, 4 * 1024 * 1024] {
        let mut ws = client(&serve);
        hello(&mut ws, r#"{"type":"hello"}"#);
        let padding = "x".repeat(size);
        let frame = format!(r#"{{"type":"ack","event_id":1,"pad":"{padding}"}}"#);
        // The hub may close before it read the whole frame; the close frame is what counts.
        let _ = ws.send(Message::text(frame));
        let (code, reason) = close_of(&mut ws);
        assert_eq!(code, 1009, "{size} bytes: {reason}");
    }
}

/// Invalid JSON, an unknown message, a binary frame, or a first frame that is not a hello: 1003.
#[test]
fn invalid_json_or_a_first_frame_that_is_not_hello_gets_1003() {
    let serve = Serve::with_senders(&["deploys"], &[], &[]);
    let first_frames = [
        Message::text("not json"),
        Message::text(r#"{"type":"ack","event_id":1}"#),
        Message::text(r#"{"type":"subscribe","subscriptions":{}}"#),
        Message::text(r#"{"after_event_id":0}"#),
        Message::binary(br#"{"type":"hello"}"#.to_vec()),
    ];
    for frame in first_frames {
        let mut ws = client(&serve);
        let shown = format!("{frame:?}");
        ws.send(frame).unwrap();
        let (code, reason) = close_of(&mut ws);
        assert_eq!(code, 1003, "first frame {shown}: {reason}");
    }
    let later_frames = [
        Message::text(r#"{"type":"ack","event_id":"#),
        Message::text(r#"{"type":"unknown"}"#),
        Message::text(r#"{"type":"subscribe","subscriptions":{"rooms":[]}}"#),
        Message::binary(vec![1, 2, 3]),
    ];
    for frame in later_frames {
        let mut ws = client(&serve);
        hello(&mut ws, r#"{"type":"hello"}"#);
        let shown = format!("{frame:?}");
        ws.send(frame).unwrap();
        let (code, reason) = close_of(&mut ws);
        assert_eq!(code, 1003, "after the hello, {shown}: {reason}");
    }
}

/// No token, a wrong one, another scheme, or the token somewhere else than the header: 401 with
/// `WWW-Authenticate: Bearer`, before any upgrade. The scheme's name is case-insensitive
/// (RFC 9110 §11.1).
#[test]
fn a_missing_or_wrong_token_gets_401_before_the_upgrade() {
    let serve = Serve::with_senders(&["deploys"], &[], &[]);
    let refused = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {HUB_TOKEN}x")),
        Some(format!("Bearer {}", &HUB_TOKEN[..HUB_TOKEN.len() - 1])),
        Some(format!("Basic {HUB_TOKEN}")),
        Some(HUB_TOKEN.to_owned()),
        Some("Bearer".to_owned()),
    ];
    for authorization in refused {
        match connect(serve.addr, authorization.as_deref()) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{authorization:?}");
                assert_eq!(
                    response.headers().get("WWW-Authenticate").unwrap(),
                    "Bearer"
                );
            }
            other => panic!(
                "{authorization:?}: expected 401, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The token in the query string is not looked at either.
    let status = openflume_tests::serve::http_request(
        serve.addr,
        "GET",
        &format!("/ws?access_token={HUB_TOKEN}"),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .status;
    assert_eq!(status, 401);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut ws = connect(serve.addr, Some(&format!("{scheme} {HUB_TOKEN}")))
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        hello(&mut ws, r#"{"type":"hello"}"#);
    }
}

// ---------------------------------------------------------------------------------------------
// Keep-alive.
// ---------------------------------------------------------------------------------------------

/// The hub answers a client's ping with a pong of the same data, pings an idle client every
/// interval, and a client that answers (tungstenite does, as it reads) stays connected past
/// several intervals and still gets events.
#[test]
fn pings_both_ways_keep_an_idle_connection_alive() {
    let serve = Serve::with_senders(
        &["deploys"],
        &[],
        &[("OPENFLUME_HUB_PING_INTERVAL_MS", "200")],
    );
    let mut ws = client(&serve);
    hello(&mut ws, r#"{"type":"hello"}"#);
    ws.send(Message::Ping(b"are-you-there".to_vec().into()))
        .unwrap();
    let mut pings = 0;
    let started = Instant::now();
    let mut ponged = false;
    // Four pings: longer than the two intervals a missing pong is allowed.
    while !(ponged && pings >= 4) {
        match next_frame(&mut ws) {
            Frame::Pong(data) => {
                assert_eq!(data, b"are-you-there");
                ponged = true;
            }
            Frame::Ping => pings += 1,
            // The logs `serve` appended after the hello (its `listening` may come late).
            Frame::Json(frame) => assert_eq!(Got::from_frame(&frame).kind, "log", "{frame}"),
            Frame::Closed(close) => panic!("an idle client was closed: {close:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    deploy(&serve, 1);
    let got = items_until(&mut ws, |items| items.iter().any(|g| g.kind == "deploys"));
    assert_eq!(got.last().unwrap().label(), "deploys 1");
}

/// A raw client that never answers the hub's pings is closed with 1001 once two intervals
/// passed without a pong.
#[test]
fn a_client_that_never_answers_pings_is_closed() {
    let serve = Serve::with_senders(
        &["deploys"],
        &[],
        &[("OPENFLUME_HUB_PING_INTERVAL_MS", "200")],
    );
    let mut ws = client(&serve);
    ws.send(Message::text(r#"{"type":"hello"}"#)).unwrap();
    // From here on the frames are read off the socket by hand, so no pong is ever sent.
    let mut stream = ws.into_inner();
    let (opcode, payload) = raw_frame(&mut stream);
    assert_eq!(opcode, 0x1);
    assert!(String::from_utf8_lossy(&payload).contains("hello_ok"));
    let mut pings = 0;
    let (code, reason) = loop {
        match raw_frame(&mut stream) {
            (0x9, _) => pings += 1,
            // Items: the logs `serve` appended after the hello.
            (0x1, _) => {}
            (0x8, payload) => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                break (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
            (opcode, _) => panic!("unexpected opcode {opcode}"),
        }
    };
    assert!(pings >= 1);
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("pong"), "{reason}");
}

/// One unmasked server frame, read by hand: its opcode and payload.
fn raw_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    stream.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0; 2];
            stream.read_exact(&mut ext).unwrap();
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0; 8];
            stream.read_exact(&mut ext).unwrap();
            u64::from_be_bytes(ext)
        }
        short => u64::from(short),
    };
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

/// Without a hello in time the hub closes (1002).
#[test]
fn a_client_that_never_says_hello_is_closed() {
    let serve = Serve::with_senders(
        &["deploys"],
        &[],
        &[("OPENFLUME_HUB_HELLO_TIMEOUT_MS", "200")],
    );
    let mut ws = client(&serve);
    let (code, reason) = close_of(&mut ws);
    assert_eq!(code, 1002, "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Named consumers.
// ---------------------------------------------------------------------------------------------

/// A named consumer's acks are cumulative (an older one changes nothing) and kept in the log
/// database; a reconnect under the same name gets everything after its last ack again, whatever
/// `after_event_id` it gives, and nothing before.
#[test]
fn a_named_consumer_gets_its_unacked_items_again_after_a_reconnect() {
    let serve = Serve::with_senders(&["deploys"], &[], &[]);
    for n in 1..=6 {
        deploy(&serve, n);
    }
    let hello_as = r#"{"type":"hello","consumer":"agent-7","after_event_id":0,"subscriptions":{"sources":["custom"]}}"#;
    let mut ws = client(&serve);
    hello(&mut ws, hello_as);
    let first = items_until(&mut ws, |items| items.len() == 6);
    assert_eq!(
        labels(&first),
        (1..=6).map(|n| format!("deploys {n}")).collect::<Vec<_>>()
    );
    let id = |n: usize| first[n - 1].id;
    for n in [2, 4, 3] {
        send(
            &mut ws,
            &format!(r#"{{"type":"ack","event_id":{}}}"#, id(n)),
        );
    }
    // An ack is stored before the hub reads the next frame: once our close is answered, the
    // acks before it are in the log.
    close_politely(&mut ws);
    let reader = LogReader::open(serve.data_dir()).unwrap();
    assert_eq!(reader.consumer("agent-7").unwrap(), Some(EventId(id(4))));

    // The same name again (its after_event_id is only for a new consumer): 5 and 6 come again.
    let mut ws = client(&serve);
    hello(&mut ws, hello_as);
    let again = items_until(&mut ws, |items| items.len() == 2);
    assert_eq!(ids(&again), [id(5), id(6)]);
    assert_eq!(
        reader.consumer("agent-7").unwrap(),
        Some(EventId(id(4))),
        "the ack of 3 after 4 changed nothing"
    );
    deploy(&serve, 7);
    let live = items_until(&mut ws, |items| items.len() == 1);
    assert_eq!(labels(&live), ["deploys 7"]);
    send(
        &mut ws,
        &format!(r#"{{"type":"ack","event_id":{}}}"#, live[0].id),
    );
    close_politely(&mut ws);
    assert_eq!(
        reader.consumer("agent-7").unwrap(),
        Some(EventId(live[0].id))
    );

    // Everything acked: a reconnect gets only what comes next. Another name starts afresh.
    let mut ws = client(&serve);
    hello(&mut ws, hello_as);
    let mut other = client(&serve);
    hello(
        &mut other,
        r#"{"type":"hello","consumer":"agent-8","after_event_id":0,"subscriptions":{"sources":["custom"]}}"#,
    );
    deploy(&serve, 8);
    let next = items_until(&mut ws, |items| items.len() == 1);
    assert_eq!(labels(&next), ["deploys 8"]);
    let everything = items_until(&mut other, |items| items.len() == 8);
    assert_eq!(everything.last().unwrap().label(), "deploys 8");
    assert_eq!(reader.consumer("agent-8").unwrap(), None);
}

/// An ack without a consumer, or of an id beyond what was sent, is refused with 1008.
#[test]
fn acks_beyond_what_was_sent_or_without_a_consumer_get_1008() {
    let serve = Serve::with_senders(&["deploys"], &[], &[]);
    deploy(&serve, 1);
    let mut ws = client(&serve);
    hello(&mut ws, r#"{"type":"hello","after_event_id":0}"#);
    send(&mut ws, r#"{"type":"ack","event_id":1}"#);
    let (code, reason) = close_of(&mut ws);
    assert_eq!(code, 1008, "{reason}");

    let mut ws = client(&serve);
    hello(
        &mut ws,
        r#"{"type":"hello","consumer":"agent-9","after_event_id":0,"subscriptions":{"types":["deploys"]}}"#,
    );
    let got = items_until(&mut ws, |items| items.len() == 1);
    let beyond = last_logged_id(&serve) + 5;
    assert!(beyond > got[0].id);
    send(&mut ws, &format!(r#"{{"type":"ack","event_id":{beyond}}}"#));
    let (code, reason) = close_of(&mut ws);
    assert_eq!(code, 1008, "{reason}");
    let reader = LogReader::open(serve.data_dir()).unwrap();
    assert_eq!(reader.consumer("agent-9").unwrap(), None);
}
