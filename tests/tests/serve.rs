//! `openflume serve` through the real binary (issue 17): one port for the webhook channels,
//! `/healthz`, `/readyz` and the hub (`/ws`), the sources appended to the durable log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::sign_github;
use openflume_sim::{SlackSim, SlackSimConfig};
use openflume_tests::serve::{Serve, http_request};
use openflume_tests::{Signal, block_on, openflume_bin};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "deploys-serve-test-secret";
const TOKEN: &str = "hub-serve-test-token";

/// `serve` with the custom sender `deploys`, the hub token, `extra` flags and `env`.
fn spawn(extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut args = vec!["--webhook", "deploys=DEPLOY_SECRET"];
    args.extend_from_slice(extra);
    let mut all_env = vec![("DEPLOY_SECRET", SECRET), ("OPENFLUME_HUB_TOKEN", TOKEN)];
    all_env.extend_from_slice(env);
    Serve::spawn(&args, &all_env)
}

/// `GET path`: the status and the body.
fn get(serve: &Serve, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = serve.get(path, headers);
    (response.status, response.body)
}

/// Posts deploy `n` to the custom sender; the status.
fn post_event(serve: &Serve, n: u32) -> u16 {
    serve.post_custom("deploys", SECRET, &format!(r#"{{"deploy":{n}}}"#))
}

/// `openflume log tail --data DIR` output: the event ids of the `custom` events.
fn tailed_ids(serve: &Serve) -> Vec<u64> {
    let output = Command::new(openflume_bin())
        .args(["log", "tail", "--source", "custom", "--data"])
        .arg(serve.data_dir())
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["event_id"].as_u64().unwrap()
        })
        .collect()
}

fn connect(serve: &Serve, token: Option<&str>) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let mut request = format!("ws://{}/ws", serve.addr)
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    let stream = TcpStream::connect(serve.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (socket, _) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(error) => error,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake"),
    })?;
    Ok(socket)
}

/// The next text frame as JSON.
fn next_json(socket: &mut WebSocket<TcpStream>) -> serde_json::Value {
    loop {
        match socket.read().expect("a frame in time") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

fn hello(socket: &mut WebSocket<TcpStream>, hello: &str) -> serde_json::Value {
    socket.send(Message::text(hello)).unwrap();
    let ok = next_json(socket);
    assert_eq!(ok["type"], "hello_ok", "{ok}");
    ok
}

/// Reads item frames until one for the `custom` event `deploy == n` came; returns the custom
/// events' ids in order.
fn custom_ids_until(socket: &mut WebSocket<TcpStream>, n: u64, ids: &mut Vec<u64>) {
    loop {
        let frame = next_json(socket);
        assert_eq!(frame["type"], "item", "{frame}");
        let event = &frame["item"]["event"];
        if event["source"] == "custom" {
            ids.push(frame["event_id"].as_u64().unwrap());
            if event["data"]["deploy"].as_u64() == Some(n) {
                return;
            }
        }
    }
}

/// Webhooks posted to the serving port are logged and answered 200 (only after the append: the
/// answer comes after the item is readable by `log tail`); a hub client that says hello after 0
/// gets the replay, then live events, ids strictly increasing with no gap and no duplicate at
/// the seam, exactly the ids `log tail` prints.
#[test]
fn hub_replays_the_log_then_streams_live_without_a_gap() {
    let serve = spawn(&[], &[]);
    for n in 1..=5 {
        assert_eq!(post_event(&serve, n), 200);
        // The 200 came after the commit: the event is in the log already.
        assert_eq!(tailed_ids(&serve).len() as u32, n);
    }
    let mut socket = connect(&serve, Some(TOKEN)).expect("upgraded");
    let ok = hello(&mut socket, r#"{"type":"hello","after_event_id":0}"#);
    assert!(ok["replay_until"].as_u64().unwrap() >= 5);
    let mut ids = Vec::new();
    custom_ids_until(&mut socket, 5, &mut ids);
    // Live, posted while the client is connected (and from another thread, concurrently).
    let addr = serve.addr;
    let posting = std::thread::spawn(move || {
        for n in 6..=25 {
            let body = format!(r#"{{"deploy":{n}}}"#);
            let signature = sign_github(SECRET.as_bytes(), body.as_bytes());
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Signature-256", signature.as_str()),
            ];
            let status = http_request(
                addr,
                "POST",
                "/channels/custom/deploys",
                &headers,
                body.as_bytes(),
            )
            .status;
            assert_eq!(status, 200);
        }
    });
    custom_ids_until(&mut socket, 25, &mut ids);
    posting.join().unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids, tailed_ids(&serve), "the hub and log tail agree");
    assert_eq!(ids.len(), 25);
}

/// A named consumer acks, reconnects under the same name and resumes right after its ack.
#[test]
fn a_named_consumer_resumes_after_its_last_ack() {
    let serve = spawn(&[], &[]);
    for n in 1..=4 {
        assert_eq!(post_event(&serve, n), 200);
    }
    let mut socket = connect(&serve, Some(TOKEN)).expect("upgraded");
    hello(
        &mut socket,
        r#"{"type":"hello","consumer":"agent-1","after_event_id":0,"subscriptions":{"sources":["custom"]}}"#,
    );
    let mut ids = Vec::new();
    custom_ids_until(&mut socket, 2, &mut ids);
    let acked = *ids.last().unwrap();
    socket
        .send(Message::text(format!(
            r#"{{"type":"ack","event_id":{acked}}}"#
        )))
        .unwrap();
    // Read on to deploy 4, then leave.
    custom_ids_until(&mut socket, 4, &mut ids);
    let all = ids.clone();
    // The hub stores an ack before it reads the client's next frame, so once it has answered
    // our close, the ack is in the log. (Without waiting, the reconnect could look the consumer
    // up first: unknown yet, it would start at the end.)
    socket.close(None).unwrap();
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("the hub did not answer the close: {error}"),
        }
    }
    let mut socket = connect(&serve, Some(TOKEN)).expect("upgraded");
    hello(
        &mut socket,
        r#"{"type":"hello","consumer":"agent-1","subscriptions":{"sources":["custom"]}}"#,
    );
    let frame = next_json(&mut socket);
    let first = frame["event_id"].as_u64().unwrap();
    assert_eq!(
        first, all[2],
        "resumes right after the ack of {acked}: {all:?}"
    );
}

/// A missing or wrong token gets 401 before the upgrade; the right one is upgraded. A
/// non-loopback address without a token is refused with exit 2.
#[test]
fn the_hub_wants_its_token_before_the_upgrade() {
    let serve = spawn(&[], &[]);
    for token in [None, Some("wrong-token")] {
        match connect(&serve, token) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    let mut socket = connect(&serve, Some(TOKEN)).expect("upgraded");
    hello(&mut socket, r#"{"type":"hello"}"#);

    let output = Command::new(openflume_bin())
        .args(["serve", "--http", "0.0.0.0:0", "--data"])
        .arg(serve.data_dir().join("other"))
        .args(["--webhook", "deploys=DEPLOY_SECRET"])
        .env("DEPLOY_SECRET", SECRET)
        .env_remove("OPENFLUME_HUB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

/// `/healthz` is 200 while the process runs; `/readyz` is 503 (with each source's status) while
/// a source is still connecting, and 200 once every source is connected.
#[test]
fn health_and_readiness() {
    // Slack's API on a port nobody listens on: it keeps reconnecting.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/api", closed.local_addr().unwrap());
    drop(closed);
    let serve = spawn(
        &["--slack-api-url", &dead_url],
        &[("SLACK_APP_TOKEN", "xapp-1-test")],
    );
    assert_eq!(get(&serve, "/healthz", &[]), (200, "ok\n".to_owned()));
    let (status, body) = get(&serve, "/readyz", &[]);
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert!(
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == "slack" && s["status"] != "connected"),
        "{body}"
    );
    drop(serve);

    // With --allow-partial, the connected webhook ingress is enough: ready, and partial.
    let serve = spawn(
        &["--slack-api-url", &dead_url, "--allow-partial"],
        &[("SLACK_APP_TOKEN", "xapp-1-test")],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(&serve, "/readyz", &[]);
        if status == 200 {
            assert!(body.contains(r#""partial":true"#), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(serve);

    let slack = block_on(
        WAIT,
        "start the Slack simulator",
        SlackSim::start(SlackSimConfig::default()),
    )
    .expect("slack sim");
    let serve = spawn(
        &["--slack-api-url", &slack.api_url()],
        &[("SLACK_APP_TOKEN", slack.app_token())],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(&serve, "/readyz", &[]);
        if status == 200 {
            assert!(body.contains(r#""ready":true"#), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&serve, "/healthz", &[]).0, 200);
}

/// SIGTERM closes hub clients with 1001 and exits 0.
#[test]
fn sigterm_closes_hub_clients_with_1001_and_exits_0() {
    let mut serve = spawn(&[], &[]);
    let mut socket = connect(&serve, Some(TOKEN)).expect("upgraded");
    hello(&mut socket, r#"{"type":"hello","after_event_id":0}"#);
    serve.signal(Signal::TERM);
    let code = loop {
        match socket.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(error) => panic!("no close frame: {error}"),
        }
    };
    assert_eq!(code, Some(1001));
    assert_eq!(serve.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn retention_flags_reach_the_log() {
    let serve = spawn(&["--retention-age", "1s"], &[]);
    for n in 0..3 {
        assert_eq!(post_event(&serve, n), 200);
    }
    let first = tailed_ids(&serve);
    assert_eq!(first.len(), 3);
    // Retention runs between the writer's groups: keep appending until the first three go.
    let deadline = Instant::now() + WAIT;
    let mut n = 3;
    loop {
        assert_eq!(post_event(&serve, n), 200);
        n += 1;
        let ids = tailed_ids(&serve);
        if !ids.contains(&first[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing older than 1 s was deleted: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
