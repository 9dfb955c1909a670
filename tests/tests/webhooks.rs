//! The webhook ingress end to end (issue 16): the real `openflume listen --http 127.0.0.1:0`
//! with its secrets from the environment, spoken to over real TCP on 127.0.0.1 with raw
//! HTTP/1.1 bytes written here, so each test controls splitting and framing.
//!
//! The contract under test is the one in `openflume_proto::webhook`'s module docs: every status
//! (never a 500), events shaped like the Socket Mode and polling ones, redeliveries emitted once,
//! a 200 only once the event's line is on stdout, keep-alive and pipelining, the head timeout,
//! the usage errors, and no secret in any output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::{sign_github, sign_slack, sign_standard};
use openflume_tests::{
    Openflume, Reader, assert_text_has_no_secret, is_event_json, is_log_json, listen,
};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

const SLACK_SECRET: &str = "slack-SIGNING-secret-7c1e9f";
const GITHUB_SECRET: &str = "gh-WEBHOOK-secret-4b8d2a";
/// A Standard Webhooks secret: `whsec_` and the base64 of `custom-sender-key-Q9v3xx`. The
/// `X-Signature-256` convention signs with the whole string as bytes.
const CUSTOM_SECRET: &str = "whsec_Y3VzdG9tLXNlbmRlci1rZXktUTl2M3h4";
const CUSTOM_VAR: &str = "OPENFLUME_TEST_DEPLOYS_SECRET";
/// Every secret, and the custom key's decoded bytes: none may appear in any output.
const SECRETS: &[&str] = &[
    SLACK_SECRET,
    GITHUB_SECRET,
    CUSTOM_SECRET,
    "Y3VzdG9tLXNlbmRlci1rZXktUTl2M3h4",
    "custom-sender-key-Q9v3xx",
];

/// Slack's body limit (1 MiB), the ingress's default.
const SLACK_LIMIT: usize = 1 << 20;

fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// The environment with every channel configured: Slack, GitHub and the custom sender `deploys`.
fn all_secrets() -> Vec<(&'static str, String)> {
    vec![
        ("SLACK_SIGNING_SECRET", SLACK_SECRET.to_owned()),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET.to_owned()),
        (CUSTOM_VAR, CUSTOM_SECRET.to_owned()),
    ]
}

/// A running `openflume listen --http 127.0.0.1:0 …` and the address it listens on.
struct Server {
    cli: Openflume,
    addr: SocketAddr,
}

impl Server {
    /// Serves every channel, stdout read as fast as it comes.
    fn start() -> Server {
        Server::start_with(
            &["--webhook", "deploys=OPENFLUME_TEST_DEPLOYS_SECRET"],
            &all_secrets(),
            Reader::Eager,
        )
    }

    /// Starts the ingress with `extra` flags and `env`, and reads its address from the first
    /// line, the `listening` log.
    fn start_with(extra: &[&str], env: &[(&str, String)], reader: Reader) -> Server {
        let args: Vec<&str> = ["--http", "127.0.0.1:0"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let mut cli = listen(&args, env, reader);
        let line = cli.wait_for_json(WAIT, |line| is_log_json(line, "webhooks", "listening"));
        let message = line["log"]["message"].as_str().expect("a message");
        let addr = message
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("not a listening message: {message}"))
            .parse()
            .expect("an address");
        Server { cli, addr }
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `request` on a connection of its own and returns the answer.
    fn exchange(&self, request: &[u8]) -> Response {
        let mut client = self.connect();
        client.send(request);
        client.response()
    }

    /// The next event line of `source` and `event_type` on stdout (earlier lines are skipped).
    fn event(&mut self, source: &str, event_type: &str) -> Value {
        let line = self
            .cli
            .wait_for_json(WAIT, |line| is_event_json(line, source, event_type));
        line["event"].clone()
    }

    /// A custom event carrying `marker`, sent and awaited: everything emitted before it is on
    /// stdout then (one machine emits in order), so a missing duplicate is really missing.
    fn barrier(&mut self, marker: &str) {
        let body = json!({ "barrier": marker }).to_string();
        let response = self.exchange(&custom_signed(&body));
        assert_eq!(response.status, 200, "the barrier: {response:?}");
        self.cli.wait_for_json(WAIT, |line| {
            is_event_json(line, "custom", "deploys") && line["event"]["data"]["barrier"] == marker
        });
    }

    /// SIGTERM, exit 0, and no secret in any stdout line or in stderr; returns every stdout
    /// line as JSON.
    fn stop(mut self) -> Vec<Value> {
        self.cli.terminate();
        let (status, lines, stderr) = self.cli.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "exit on SIGTERM; stderr: {stderr}");
        check_no_secret(&lines, &stderr);
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }
}

fn check_no_secret(lines: &[String], stderr: &str) {
    let secrets: Vec<String> = SECRETS.iter().map(|s| (*s).to_owned()).collect();
    assert_text_has_no_secret(stderr, &secrets);
    for line in lines {
        assert_text_has_no_secret(line, &secrets);
    }
}

/// The events of `source` among `items`.
fn events<'a>(items: &'a [Value], source: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|i| i["kind"] == "event" && i["event"]["source"] == source)
        .map(|i| &i["event"])
        .collect()
}

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why no response came.
#[derive(Debug, PartialEq, Eq)]
enum NoResponse {
    /// Nothing within the time asked for; the connection is still open.
    Quiet,
    /// The server closed (or reset) the connection.
    Closed,
}

/// A client connection that writes raw bytes and reads responses one at a time, so a
/// keep-alive or pipelined connection yields its answers in order.
struct Client {
    stream: TcpStream,
    /// Bytes read past the last response.
    buffer: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the ingress");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buffer: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write a request");
    }

    /// The next response; fails the test after [`WAIT`] or on a close. Never a 500.
    fn response(&mut self) -> Response {
        match self.try_response(WAIT) {
            Ok(response) => response,
            Err(why) => panic!("no response: {why:?}"),
        }
    }

    /// The next response within `timeout`, or why none came. Never a 500.
    fn try_response(&mut self, timeout: Duration) -> Result<Response, NoResponse> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at;
            }
            self.fill(deadline)?;
        };
        let head = String::from_utf8(self.buffer[..head_end].to_vec()).expect("a UTF-8 head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header field");
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("a Content-Length"))
            .expect("every answer has a Content-Length");
        let start = head_end + 4;
        while self.buffer.len() < start + length {
            self.fill(deadline)?;
        }
        let body = self.buffer[start..start + length].to_vec();
        self.buffer.drain(..start + length);
        assert_ne!(status, 500, "a 500: {head}");
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads more into the buffer before `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<(), NoResponse> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NoResponse::Quiet);
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(NoResponse::Closed),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(NoResponse::Quiet)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(NoResponse::Closed),
        }
    }

    /// True once the server closed the connection (within [`WAIT`]), with nothing more sent.
    fn closed(&mut self) -> bool {
        match self.fill(Instant::now() + WAIT) {
            Ok(()) => panic!(
                "bytes after the last response: {:?}",
                String::from_utf8_lossy(&self.buffer)
            ),
            Err(NoResponse::Closed) => true,
            Err(NoResponse::Quiet) => false,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A POST of `body` to `path` with `headers` (Content-Length added).
fn post(path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut wire = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        wire.push_str(&format!("{name}: {value}\r\n"));
    }
    wire.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut wire = wire.into_bytes();
    wire.extend_from_slice(body);
    wire
}

/// A GitHub delivery signed with the configured secret.
fn github_signed(event: &str, delivery: &str, body: &str) -> Vec<u8> {
    github_signed_with(GITHUB_SECRET, event, delivery, body)
}

fn github_signed_with(secret: &str, event: &str, delivery: &str, body: &str) -> Vec<u8> {
    post(
        "/channels/github/webhook",
        &[
            ("Content-Type", "application/json".into()),
            ("X-GitHub-Event", event.into()),
            ("X-GitHub-Delivery", delivery.into()),
            (
                "X-Hub-Signature-256",
                sign_github(secret.as_bytes(), body.as_bytes()),
            ),
        ],
        body.as_bytes(),
    )
}

/// A Slack request to `/channels/slack/{kind}` signed at `timestamp`, with `extra` headers.
fn slack_signed(
    kind: &str,
    content_type: &str,
    timestamp: i64,
    body: &str,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let mut headers = vec![
        ("Content-Type", content_type.to_owned()),
        ("X-Slack-Request-Timestamp", timestamp.to_string()),
        (
            "X-Slack-Signature",
            sign_slack(SLACK_SECRET.as_bytes(), timestamp, body.as_bytes()),
        ),
    ];
    headers.extend(extra.iter().cloned());
    post(
        &format!("/channels/slack/{kind}"),
        &headers,
        body.as_bytes(),
    )
}

/// A JSON body to `/channels/custom/deploys` signed the common way (`X-Signature-256`).
fn custom_signed(body: &str) -> Vec<u8> {
    post(
        "/channels/custom/deploys",
        &[
            ("Content-Type", "application/json".into()),
            (
                "X-Signature-256",
                sign_github(CUSTOM_SECRET.as_bytes(), body.as_bytes()),
            ),
        ],
        body.as_bytes(),
    )
}

/// A JSON body to `/channels/custom/deploys` signed the Standard Webhooks way at `timestamp`.
fn custom_standard(id: &str, timestamp: i64, body: &str) -> Vec<u8> {
    post(
        "/channels/custom/deploys",
        &[
            ("Content-Type", "application/json".into()),
            ("webhook-id", id.into()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                sign_standard(CUSTOM_SECRET, id, timestamp, body.as_bytes()),
            ),
        ],
        body.as_bytes(),
    )
}

/// Meta as a JSON object with these string entries, for exact comparisons.
fn meta(entries: &[(&str, &str)]) -> Value {
    Value::Object(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect(),
    )
}

/// A 200 with an empty body: what every accepted event gets.
fn assert_accepted(response: &Response, what: &str) {
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b""[..]),
        "{what}: {response:?}"
    );
}

const ISSUE_OPENED: &str = r#"{"action":"opened","issue":{"number":7,"title":"Crash"},"repository":{"full_name":"octo/app"},"sender":{"login":"monalisa"}}"#;

#[test]
fn a_github_event_is_answered_200_and_emitted_with_its_meta() {
    let mut server = Server::start();
    let response = server.exchange(&github_signed("issues", "d-100", ISSUE_OPENED));
    assert_accepted(&response, "a signed GitHub event");
    let event = server.event("github", "issues");
    assert_eq!(
        event["data"],
        serde_json::from_str::<Value>(ISSUE_OPENED).unwrap()
    );
    assert_eq!(
        event["meta"],
        meta(&[
            ("event_type", "issues"),
            ("action", "opened"),
            ("repository", "octo/app"),
            ("sender", "monalisa"),
            ("delivery_id", "d-100"),
            ("conversation_key", "github:v1:owner:octo:repo:app:issue:7"),
        ])
    );
    server.stop();
}

#[test]
fn slack_events_interactions_and_commands_are_answered_200_and_emitted_as_socket_mode_would() {
    let mut server = Server::start();
    let body = r#"{"type":"event_callback","team_id":"T1","event_id":"Ev100","event":{"type":"message","channel":"C1","user":"U1","text":"hi","ts":"1.5","thread_ts":"1.2"}}"#;
    let retry = [
        ("X-Slack-Retry-Num", "2".to_owned()),
        ("X-Slack-Retry-Reason", "http_timeout".to_owned()),
    ];
    let request = slack_signed("events", "application/json", unix_now(), body, &retry);
    assert_accepted(&server.exchange(&request), "a Slack event");
    let event = server.event("slack", "events_api");
    assert_eq!(event["data"], serde_json::from_str::<Value>(body).unwrap());
    assert_eq!(
        event["meta"],
        meta(&[
            ("event_type", "events_api"),
            ("event_id", "Ev100"),
            ("slack_event_type", "message"),
            ("channel_id", "C1"),
            ("user_id", "U1"),
            ("thread_ts", "1.2"),
            ("team_id", "T1"),
            ("conversation_key", "slack:v1:T1:C1:1.2"),
            ("retry_num", "2"),
            ("retry_reason", "http_timeout"),
        ])
    );

    // An interaction: the `payload=` form field, decoded.
    let payload = r#"{"type":"block_actions","team":{"id":"T2"},"user":{"id":"U3"},"channel":{"id":"C3"},"actions":[{"action_id":"go"}]}"#;
    let form = format!("payload={}", percent_encode(payload));
    let request = slack_signed(
        "interactions",
        "application/x-www-form-urlencoded",
        unix_now(),
        &form,
        &[],
    );
    assert_accepted(&server.exchange(&request), "a Slack interaction");
    let event = server.event("slack", "interactive");
    assert_eq!(
        event["data"],
        serde_json::from_str::<Value>(payload).unwrap()
    );
    assert_eq!(
        event["meta"],
        meta(&[
            ("event_type", "interactive"),
            ("slack_event_type", "block_actions"),
            ("channel_id", "C3"),
            ("user_id", "U3"),
            ("team_id", "T2"),
            ("conversation_key", "slack:v1:T2:C3"),
        ])
    );

    // A slash command: the form fields as one object.
    let form = "command=%2Fdeploy&text=now+please&team_id=T4&channel_id=C4&user_id=U4";
    let request = slack_signed(
        "commands",
        "application/x-www-form-urlencoded; charset=utf-8",
        unix_now(),
        form,
        &[],
    );
    assert_accepted(&server.exchange(&request), "a Slack command");
    let event = server.event("slack", "slash_commands");
    assert_eq!(
        event["data"],
        json!({"command": "/deploy", "text": "now please", "team_id": "T4", "channel_id": "C4", "user_id": "U4"})
    );
    assert_eq!(
        event["meta"],
        meta(&[
            ("event_type", "slash_commands"),
            ("slack_event_type", "/deploy"),
            ("channel_id", "C4"),
            ("user_id", "U4"),
            ("team_id", "T4"),
            ("conversation_key", "slack:v1:T4:C4"),
        ])
    );
    server.stop();
}

#[test]
fn a_custom_sender_is_accepted_with_either_signature_convention() {
    let mut server = Server::start();
    let body = r#"{"service":"api","version":"1.2.3"}"#;
    assert_accepted(&server.exchange(&custom_signed(body)), "X-Signature-256");
    let event = server.event("custom", "deploys");
    assert_eq!(event["data"], serde_json::from_str::<Value>(body).unwrap());
    assert_eq!(event["meta"], json!({}), "no id without Standard Webhooks");

    let body = r#"{"service":"web","version":"4.5.6"}"#;
    let request = custom_standard("msg_100", unix_now(), body);
    assert_accepted(&server.exchange(&request), "Standard Webhooks");
    let event = server.event("custom", "deploys");
    assert_eq!(event["data"], serde_json::from_str::<Value>(body).unwrap());
    assert_eq!(event["meta"], meta(&[("delivery_id", "msg_100")]));
    server.stop();
}

#[test]
fn handshakes_are_answered_and_not_emitted() {
    let mut server = Server::start();
    let body = r#"{"type":"url_verification","token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let response = server.exchange(&slack_signed(
        "events",
        "application/json",
        unix_now(),
        body,
        &[],
    ));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&response.body).unwrap(),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let ping = r#"{"zen":"Design for failure.","hook_id":1,"repository":{"full_name":"octo/app"}}"#;
    assert_accepted(
        &server.exchange(&github_signed("ping", "d-ping", ping)),
        "GitHub ping",
    );
    server.barrier("after the handshakes");
    let items = server.stop();
    assert!(
        events(&items, "slack").is_empty(),
        "url_verification emitted"
    );
    assert!(events(&items, "github").is_empty(), "ping emitted");
}

#[test]
fn bad_or_missing_signatures_and_stale_timestamps_are_401_and_logged_without_the_signature() {
    let mut server = Server::start();
    let stale = unix_now() - 600;
    let wrong_signature = sign_github(b"not-the-secret", ISSUE_OPENED.as_bytes());
    let slack_body = r#"{"type":"event_callback","event_id":"Ev401","event":{"type":"message"}}"#;
    let replayed = slack_signed("events", "application/json", stale, slack_body, &[]);
    let replayed_signature = sign_slack(SLACK_SECRET.as_bytes(), stale, slack_body.as_bytes());
    let standard_signature = sign_standard(CUSTOM_SECRET, "msg_401", stale, b"{}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a GitHub signature under another secret",
            github_signed_with("not-the-secret", "issues", "d-401", ISSUE_OPENED),
            "invalid signature",
        ),
        (
            "a Slack request without a signature",
            post(
                "/channels/slack/events",
                &[
                    ("Content-Type", "application/json".into()),
                    ("X-Slack-Request-Timestamp", unix_now().to_string()),
                ],
                slack_body.as_bytes(),
            ),
            "invalid signature",
        ),
        (
            "a Slack request replayed ten minutes later",
            replayed,
            "stale timestamp",
        ),
        (
            "a Standard Webhooks request ten minutes old",
            custom_standard("msg_401", stale, "{}"),
            "stale timestamp",
        ),
    ];
    for (what, request, text) in &cases {
        let mut client = server.connect();
        client.send(request);
        let response = client.response();
        assert_eq!(response.status, 401, "{what}: {response:?}");
        assert_eq!(response.text().trim(), *text, "{what}");
        assert_eq!(response.header("Connection"), Some("close"), "{what}");
        assert!(client.closed(), "{what}: the connection closes after a 401");
    }
    // Each is logged as a warn naming the reason; none carries the signature.
    let mut rejected = Vec::new();
    server.cli.wait_for_json(WAIT, |line| {
        if is_log_json(line, "webhooks", "webhook.rejected") {
            rejected.push(line.clone());
        }
        rejected.len() == cases.len()
    });
    for line in &rejected {
        assert_eq!(line["log"]["level"], "warn", "{line}");
        let reason = line["log"]["detail"]["reason"].as_str().expect("a reason");
        assert!(!reason.is_empty(), "{line}");
        let text = line.to_string();
        for signature in [&wrong_signature, &replayed_signature, &standard_signature] {
            let hex = signature.split_once(['=', ',']).unwrap().1;
            assert!(!text.contains(hex), "a signature in a log: {text}");
        }
    }
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|line| line["log"]["detail"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons[..2], ["bad signature", "missing X-Slack-Signature"]);
    for reason in &reasons[2..] {
        assert!(reason.starts_with("stale timestamp (6"), "{reasons:?}");
    }
    server.barrier("after the rejections");
    let items = server.stop();
    assert!(events(&items, "github").is_empty());
    assert!(events(&items, "slack").is_empty());
    assert_eq!(events(&items, "custom").len(), 1, "only the barrier");
}

#[test]
fn heads_are_refused_by_path_method_and_content_type_and_bad_payloads_are_400() {
    let mut server = Server::start();
    let json_type = [("Content-Type", "application/json".to_owned())];
    for path in [
        "/channels/nope/webhook",
        "/channels/slack",
        "/channels/custom/unknown",
        "/elsewhere",
    ] {
        let response = server.exchange(&post(path, &json_type, b"{}"));
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }

    let get = b"GET /channels/github/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let response = server.exchange(get);
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("Allow"), Some("POST"));

    let response = server.exchange(&post(
        "/channels/slack/events",
        &[("Content-Type", "text/plain".into())],
        b"{}",
    ));
    assert_eq!(response.status, 415, "{response:?}");
    let response = server.exchange(&post("/channels/slack/commands", &json_type, b"{}"));
    assert_eq!(
        response.status, 415,
        "a command must be a form: {response:?}"
    );

    let response = server.exchange(&github_signed("issues", "d-400", "{not json"));
    assert_eq!(response.status, 400, "malformed JSON: {response:?}");
    let request = slack_signed(
        "interactions",
        "application/x-www-form-urlencoded",
        unix_now(),
        "payload=%7Bnot",
        &[],
    );
    assert_eq!(
        server.exchange(&request).status,
        400,
        "malformed payload field"
    );

    for garbage in [
        &b"NOT AN HTTP REQUEST\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let mut client = server.connect();
        client.send(garbage);
        let response = client.response();
        assert_eq!(response.status, 400, "{garbage:?}: {response:?}");
        assert!(
            client.closed(),
            "the connection closes after a malformed request"
        );
    }
    server.barrier("after the refusals");
    let items = server.stop();
    assert_eq!(events(&items, "github").len(), 0);
    assert_eq!(events(&items, "slack").len(), 0);
}

#[test]
fn a_channel_without_its_secret_is_404_and_the_prefix_is_honoured() {
    let env = [("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET.to_owned())];
    let mut server = Server::start_with(&["--http-prefix", "/hooks"], &env, Reader::Eager);
    let slack = slack_signed("events", "application/json", unix_now(), "{}", &[]);
    let slack = [b"POST /hooks".as_slice(), &slack[b"POST ".len()..]].concat();
    assert_eq!(
        server.exchange(&slack).status,
        404,
        "Slack has no secret here"
    );
    let outside = github_signed("issues", "d-prefix-0", ISSUE_OPENED);
    assert_eq!(server.exchange(&outside).status, 404, "outside the prefix");
    let inside = [b"POST /hooks".as_slice(), &outside[b"POST ".len()..]].concat();
    assert_accepted(&server.exchange(&inside), "under the prefix");
    let event = server.event("github", "issues");
    assert_eq!(event["meta"]["delivery_id"], "d-prefix-0");
    server.stop();
}

#[test]
fn a_declared_body_one_byte_over_the_limit_is_413_before_it_is_sent() {
    let server = Server::start();
    let head = format!(
        "POST /channels/slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slack-Request-Timestamp: {}\r\nX-Slack-Signature: v0=00\r\nContent-Length: {}\r\n\r\n",
        unix_now(),
        SLACK_LIMIT + 1
    );
    let mut client = server.connect();
    client.send(head.as_bytes());
    // Not one body byte is sent: the answer comes from the head alone.
    let response = client.response();
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(
        client.closed(),
        "the connection closes instead of reading the body"
    );

    // Exactly at the limit is no 413 (the body is read, then judged: a bad signature).
    let body = vec![b' '; SLACK_LIMIT];
    let request = post(
        "/channels/slack/events",
        &[
            ("Content-Type", "application/json".into()),
            ("X-Slack-Request-Timestamp", unix_now().to_string()),
            ("X-Slack-Signature", "v0=00".into()),
        ],
        &body,
    );
    assert_eq!(
        server.exchange(&request).status,
        401,
        "a body at the limit is read"
    );
    server.stop();
}

#[test]
fn a_chunked_body_growing_over_the_limit_is_413() {
    let server = Server::start();
    let mut client = server.connect();
    let head = format!(
        "POST /channels/slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slack-Request-Timestamp: {}\r\nX-Slack-Signature: v0=00\r\nTransfer-Encoding: chunked\r\n\r\n",
        unix_now()
    );
    client.send(head.as_bytes());
    // 64 KiB chunks until past the limit, written beside the reader: the server may answer
    // (and stop reading) before the last chunk.
    let mut writer = client.stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent <= SLACK_LIMIT {
            let mut wire = format!("{:x}\r\n", chunk.len()).into_bytes();
            wire.extend_from_slice(&chunk);
            wire.extend_from_slice(b"\r\n");
            if writer.write_all(&wire).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let response = client.response();
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.header("Connection"), Some("close"));
    writing.join().unwrap();
    assert!(client.closed(), "the connection closes after the 413");
    server.stop();
}

#[test]
fn redeliveries_are_answered_200_and_emitted_once() {
    let mut server = Server::start();
    let first = server.exchange(&github_signed("issues", "d-dup", ISSUE_OPENED));
    assert_accepted(&first, "the first GitHub copy");
    let again = server.exchange(&github_signed("issues", "d-dup", ISSUE_OPENED));
    assert_accepted(&again, "the GitHub redelivery");

    let body = r#"{"type":"event_callback","team_id":"T1","event_id":"EvDup","event":{"type":"message","channel":"C1","user":"U1","ts":"2.0"}}"#;
    let request = slack_signed("events", "application/json", unix_now(), body, &[]);
    assert_accepted(&server.exchange(&request), "the first Slack copy");
    let retry = [("X-Slack-Retry-Num", "1".to_owned())];
    let request = slack_signed("events", "application/json", unix_now(), body, &retry);
    assert_accepted(&server.exchange(&request), "the Slack retry");

    let body = r#"{"n":1}"#;
    let at = unix_now();
    assert_accepted(
        &server.exchange(&custom_standard("msg_dup", at, body)),
        "first",
    );
    assert_accepted(
        &server.exchange(&custom_standard("msg_dup", at, body)),
        "again",
    );

    server.barrier("after the redeliveries");
    let items = server.stop();
    let github = events(&items, "github");
    assert_eq!(github.len(), 1, "one GitHub event for one delivery id");
    let slack = events(&items, "slack");
    assert_eq!(slack.len(), 1, "one Slack event for one event_id");
    assert_eq!(slack[0]["meta"]["event_id"], "EvDup");
    assert!(
        slack[0]["meta"].get("retry_num").is_none(),
        "the first copy is the one emitted"
    );
    let custom: Vec<_> = events(&items, "custom")
        .into_iter()
        .filter(|e| e["meta"]["delivery_id"] == "msg_dup")
        .collect();
    assert_eq!(custom.len(), 1, "one custom event for one webhook-id");
}

/// Custom events big enough that a few fill the stdout pipe.
fn bulky(n: usize) -> String {
    json!({ "n": n, "padding": "x".repeat(16 * 1024) }).to_string()
}

/// With `server`'s stdout not read, sends bulky events one per connection until one is not
/// answered because openflume is blocked writing to the full pipe; returns that request's
/// client and number. Every earlier one was answered 200.
fn block_stdout(server: &mut Server) -> (Client, usize) {
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        let mut client = server.connect();
        client.send(&custom_signed(&bulky(n)));
        loop {
            assert!(Instant::now() < deadline, "stdout never blocked");
            match client.try_response(Duration::from_millis(50)) {
                Ok(response) => {
                    assert_accepted(&response, "an event whose line fits the pipe");
                    break;
                }
                Err(NoResponse::Closed) => panic!("connection {n} closed unanswered"),
                Err(NoResponse::Quiet) if server.cli.blocked_writing() => return (client, n),
                Err(NoResponse::Quiet) => {}
            }
        }
    }
    unreachable!()
}

#[test]
fn the_200_is_sent_only_once_the_line_is_on_stdout() {
    let mut server = Server::start_with(
        &["--webhook", "deploys=OPENFLUME_TEST_DEPLOYS_SECRET"],
        &all_secrets(),
        Reader::Pull,
    );
    let (mut waiting, n) = block_stdout(&mut server);
    // Nobody reads stdout, so the writer stays blocked and the answer must not come.
    assert_eq!(
        waiting.try_response(Duration::from_millis(500)).err(),
        Some(NoResponse::Quiet),
        "answered while its line could not be written"
    );
    assert!(server.cli.blocked_writing());
    // Read stdout a line at a time until event n is out. Before each read: was it answered, and
    // how much can have been written by then (read, plus a full pipe; looked at after the
    // answer, so it bounds what was written when the answer went out).
    let deadline = Instant::now() + WAIT;
    let mut answered = None;
    loop {
        assert!(Instant::now() < deadline, "event {n} never printed");
        if answered.is_none() {
            match waiting.try_response(Duration::ZERO) {
                Ok(response) => {
                    assert_accepted(&response, "the event once its line is out");
                    answered = Some(server.cli.pipe_state().written_at_most());
                }
                Err(NoResponse::Quiet) => {}
                Err(NoResponse::Closed) => panic!("closed unanswered"),
            }
        }
        server.cli.pull(1, WAIT);
        let line: Value = serde_json::from_str(server.cli.seen.last().unwrap()).unwrap();
        if is_event_json(&line, "custom", "deploys") && line["event"]["data"]["n"] == n {
            break;
        }
    }
    // Where event n's line ends in stdout: every line read so far, with its newline.
    let line_end: u64 = server.cli.seen.iter().map(|l| l.len() as u64 + 1).sum();
    let written_at_most = match answered {
        Some(bound) => bound,
        None => {
            assert_accepted(&waiting.response(), "the event once its line is out");
            // Answered now, with the line read: it was written.
            line_end
        }
    };
    assert!(
        line_end <= written_at_most,
        "answered 200 when at most {written_at_most} bytes of stdout were written, but event \
         {n}'s line ends at byte {line_end}"
    );
    server.stop();
}

#[test]
fn a_keep_alive_connection_serves_requests_in_turn_and_pipelined() {
    let mut server = Server::start();
    let mut client = server.connect();
    client.send(&github_signed("issues", "d-ka-1", ISSUE_OPENED));
    assert_accepted(&client.response(), "the first request");
    client.send(&github_signed("issues", "d-ka-2", ISSUE_OPENED));
    assert_accepted(&client.response(), "the second request, same connection");

    // Two requests in one write, and a handshake between: answered in order.
    let ping = r#"{"zen":"Keep it logically awesome."}"#;
    let pipelined = [
        github_signed("issues", "d-ka-3", ISSUE_OPENED),
        github_signed("ping", "d-ka-ping", ping),
        github_signed("issues", "d-ka-4", ISSUE_OPENED),
    ]
    .concat();
    client.send(&pipelined);
    for what in ["third", "ping", "fourth"] {
        let response = client.response();
        assert_accepted(&response, what);
        assert_eq!(response.header("Connection"), None, "{what}: kept alive");
    }
    for delivery in ["d-ka-1", "d-ka-2", "d-ka-3", "d-ka-4"] {
        let event = server.event("github", "issues");
        assert_eq!(event["meta"]["delivery_id"], delivery, "in order");
    }
    // `Connection: close` is honoured after the answer.
    let body = ISSUE_OPENED;
    let mut last = github_signed("issues", "d-ka-5", body);
    let at = find(&last, b"\r\n").unwrap() + 2;
    last.splice(at..at, b"Connection: close\r\n".iter().copied());
    client.send(&last);
    let response = client.response();
    assert_accepted(&response, "the last request");
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(client.closed());
    server.stop();
}

#[test]
fn a_head_sent_one_byte_at_a_time_is_served() {
    let mut server = Server::start();
    let body = r#"{"type":"event_callback","team_id":"T1","event_id":"EvSplit","event":{"type":"message","channel":"C1","user":"U1","ts":"3.0"}}"#;
    let request = slack_signed("events", "application/json", unix_now(), body, &[]);
    let mut client = server.connect();
    for byte in &request {
        client.send(std::slice::from_ref(byte));
        // Pacing the client is the point here: one segment per byte, well within the deadline.
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_accepted(&client.response(), "a byte-by-byte request");
    let event = server.event("slack", "events_api");
    assert_eq!(event["meta"]["event_id"], "EvSplit");
    server.stop();
}

#[test]
fn a_slow_loris_is_cut_off_by_the_head_timeout() {
    let server = Server::start();
    let mut client = server.connect();
    let opened = Instant::now();
    client.send(b"POST /channels/github/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty");
    // The head timeout is 10 s; give it 5 s more.
    let outcome = client.try_response(WAIT + Duration::from_secs(5));
    let waited = opened.elapsed();
    match outcome {
        Ok(response) => {
            assert_eq!(response.status, 408, "{response:?}");
            assert!(client.closed(), "closed after the 408");
        }
        Err(NoResponse::Closed) => {}
        Err(NoResponse::Quiet) => panic!("still open after {waited:?}"),
    }
    assert!(
        waited >= Duration::from_secs(9),
        "cut off after {waited:?}, before the 10 s head timeout"
    );
    server.stop();
}

#[test]
fn http_without_a_secret_is_a_usage_error_naming_the_variables() {
    let empty = [
        ("SLACK_SIGNING_SECRET", String::new()),
        ("GITHUB_WEBHOOK_SECRET", String::new()),
    ];
    let mut cli = listen(&["--http", "127.0.0.1:0"], &empty, Reader::Eager);
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("SLACK_SIGNING_SECRET"), "{stderr}");
    assert!(stderr.contains("GITHUB_WEBHOOK_SECRET"), "{stderr}");
    assert!(lines.is_empty(), "{lines:?}");

    let unset = "OPENFLUME_TEST_UNSET_4e1d";
    let env = [("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET.to_owned())];
    let flag = format!("x={unset}");
    let mut cli = listen(
        &["--http", "127.0.0.1:0", "--webhook", &flag],
        &env,
        Reader::Eager,
    );
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(unset), "{stderr}");
    check_no_secret(&lines, &stderr);
}

#[test]
fn sigterm_answers_a_waiting_request_and_exits_0() {
    let mut server = Server::start_with(
        &["--webhook", "deploys=OPENFLUME_TEST_DEPLOYS_SECRET"],
        &all_secrets(),
        Reader::Pull,
    );
    let (mut waiting, _) = block_stdout(&mut server);
    server.cli.terminate();
    // In flight at shutdown: answered within SHUTDOWN_ANSWER_MS (1 s), 200 if the line got out,
    // else 503 so the sender retries; never a close without an answer.
    let response = waiting.response();
    assert!(
        matches!(response.status, 200 | 503),
        "a waiting request at shutdown: {response:?}"
    );
    assert!(waiting.closed(), "the connection closes after the answer");
    let (status, lines, stderr) = server.cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    check_no_secret(&lines, &stderr);
}

/// `application/x-www-form-urlencoded` encoding of `text`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
