//! One Slack event, two transports: an app with Socket Mode and the Events API on gets each event
//! twice, with the same `event_id`. `listen` prints it once, and answers (acks, 200s) the second
//! copy only once the first is written to stdout.

// A broken precondition (no simulator, no answer) is a test failure: panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::sign_slack;
use openflume_sim::{SlackAction, SlackSim, SlackSimConfig};
use openflume_tests::{Reader, block_on, is_event_json, is_status_json, listen};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "twins-signing-SECRET-5c0e";

/// POSTs `body` to the Slack events channel, signed now, and returns the status line.
fn post_slack_event(addr: SocketAddr, body: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let signature = sign_slack(SECRET.as_bytes(), now, body.as_bytes());
    let request = format!(
        "POST /channels/slack/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-Slack-Request-Timestamp: {now}\r\nX-Slack-Signature: {signature}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).expect("connect to the ingress");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_slack_event_by_socket_mode_and_by_webhook_is_printed_once() {
    let config = SlackSimConfig {
        ack_deadline: Duration::from_secs(120),
        ..SlackSimConfig::default()
    };
    let slack = block_on(WAIT, "start the Slack simulator", SlackSim::start(config)).expect("sim");
    let env = [
        ("SLACK_APP_TOKEN", slack.app_token().to_owned()),
        ("SLACK_BOT_TOKEN", slack.bot_token().to_owned()),
        ("OPENFLUME_SLACK_API_URL", slack.api_url()),
        ("SLACK_SIGNING_SECRET", SECRET.to_owned()),
    ];
    let mut cli = listen(&["--http", "127.0.0.1:0"], &env, Reader::Eager);
    let listening = cli.wait_for_json(WAIT, |line| {
        line["log"]["action"] == "listening" && line["log"]["source"] == "webhooks"
    });
    let addr: SocketAddr = listening["log"]["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("listening on http://"))
        .and_then(|a| a.parse().ok())
        .expect("the listening address");
    cli.wait_for_json(WAIT, |line| is_status_json(line, "slack", "connected"));

    // Socket Mode first: its copy is printed.
    slack.inject(SlackAction::Messages(1));
    let first = cli.wait_for_json(WAIT, |line| is_event_json(line, "slack", "events_api"));
    let event_id = first["event"]["meta"]["event_id"].clone();
    assert!(event_id.is_string(), "an event id: {first}");
    // The Events API's copy of the same event: answered 200, since the first is on stdout.
    let body = first["event"]["data"].to_string();
    assert_eq!(post_slack_event(addr, &body), "HTTP/1.1 200 OK");
    // A different event by webhook is printed, after which the twin would have been too.
    let other = body.replace(event_id.as_str().unwrap_or_default(), "Ev0OTHER");
    assert_eq!(post_slack_event(addr, &other), "HTTP/1.1 200 OK");
    cli.wait_for_json(WAIT, |line| line["event"]["meta"]["event_id"] == "Ev0OTHER");

    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let printed = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["event"]["meta"]["event_id"] == event_id)
        .count();
    assert_eq!(
        printed, 1,
        "the event is printed once, not once per transport"
    );
    assert!(
        !stderr.contains(SECRET) && !lines.iter().any(|l| l.contains(SECRET)),
        "the signing secret leaked"
    );
}
