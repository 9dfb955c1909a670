//! What the webhook ingress promises, through the real binary: a delivery answered 200 is on
//! stdout, whatever happens next. A burst of signed GitHub deliveries from several senders meets a
//! slow reader, and the process is killed (SIGKILL) in the middle: every delivery that got its 200
//! is in the output, exactly once; every other one is the sender's to retry, and a fresh process
//! takes those retries. Nothing is lost between the two.

// A broken precondition (no answer, a bad line) is a test failure: panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::webhook::sign_github;
use openflume_tests::{Openflume, Reader, listen};
use rustix::process::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "delivery-webhook-SECRET-0b4d";
const SENDERS: usize = 4;
const PER_SENDER: usize = 100;
/// Deliveries answered before the kill: past what the stdout pipe holds, so the reader paces them.
const KILL_AFTER: usize = 250;

fn start() -> (Openflume, SocketAddr) {
    let env = [("GITHUB_WEBHOOK_SECRET", SECRET.to_owned())];
    let reader = Reader::Paced {
        lines_per_second: 100,
    };
    let mut cli = listen(&["--http", "127.0.0.1:0"], &env, reader);
    let line = cli.wait_for_json(WAIT, |line| line["log"]["action"] == "listening");
    let addr = line["log"]["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("listening on http://"))
        .and_then(|a| a.parse().ok())
        .expect("the listening address");
    (cli, addr)
}

/// A signed GitHub `issues` delivery with this id, on a kept-alive connection.
fn request(id: &str) -> Vec<u8> {
    let body = format!(r#"{{"action":"opened","issue":{{"number":1}},"delivery":"{id}"}}"#);
    format!(
        "POST /channels/github/webhook HTTP/1.1\r\nHost: openflume\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: issues\r\nX-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        sign_github(SECRET.as_bytes(), body.as_bytes()),
        body.len()
    )
    .into_bytes()
}

/// Sends one request and reads the status of its answer; `None` when the connection failed.
fn exchange(stream: &mut BufReader<TcpStream>, id: &str) -> Option<u16> {
    stream.get_mut().write_all(&request(id)).ok()?;
    let mut status_line = String::new();
    stream.read_line(&mut status_line).ok()?;
    let status = status_line.get(9..12)?.parse().ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).ok()?;
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(stream, &mut body).ok()?;
    Some(status)
}

/// Sends `ids` in order on one connection (a new one after a close); returns the ids answered
/// 200 and those that were not.
fn send_all(addr: SocketAddr, ids: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut answered, mut failed) = (Vec::new(), Vec::new());
    let mut stream = None;
    for id in ids {
        if stream.is_none() {
            stream = TcpStream::connect(addr).ok().map(|s| {
                s.set_read_timeout(Some(WAIT)).unwrap();
                BufReader::new(s)
            });
        }
        match stream.as_mut().and_then(|s| exchange(s, id)) {
            Some(200) => answered.push(id.clone()),
            Some(status) => panic!("delivery {id} answered {status}"),
            None => {
                failed.push(id.clone());
                stream = None;
            }
        }
    }
    (answered, failed)
}

/// The delivery ids printed, with how often each was.
fn printed(lines: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        // The line the kill cut short does not parse, and stands for nothing answered.
        let Ok(item) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(id) = item["event"]["meta"]["delivery_id"].as_str() {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn a_kill_in_a_webhook_burst_loses_no_answered_delivery() {
    let (mut cli, addr) = start();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                let ids: Vec<String> = (0..PER_SENDER).map(|i| format!("d-{s}-{i}")).collect();
                let mut failed = Vec::new();
                // One at a time, so the count of answers is live for the kill below.
                for id in ids {
                    let (ok, not) = send_all(addr, std::slice::from_ref(&id));
                    answered.lock().unwrap().extend(ok);
                    failed.extend(not);
                }
                failed
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while answered.lock().unwrap().len() < KILL_AFTER {
        assert!(Instant::now() < deadline, "the burst was not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    cli.signal(Signal::KILL);
    let failed: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender"))
        .collect();
    let (_, lines, _) = cli.wait_exit(WAIT);
    let answered = answered.lock().unwrap().clone();
    assert!(!failed.is_empty(), "the kill came after the whole burst");
    let first_run = printed(&lines);
    for id in &answered {
        assert_eq!(
            first_run.get(id),
            Some(&1),
            "delivery {id} was answered 200 but printed {:?} times",
            first_run.get(id)
        );
    }

    // The senders retry what was not answered, as GitHub and Slack do; a fresh process takes it.
    let (mut cli, addr) = start();
    let (retried, still_failed) = send_all(addr, &failed);
    assert!(still_failed.is_empty(), "retries failed: {still_failed:?}");
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let second_run = printed(&lines);
    let all: BTreeSet<&String> = answered.iter().chain(&retried).collect();
    assert_eq!(
        all.len(),
        SENDERS * PER_SENDER,
        "every delivery answered once"
    );
    for id in &retried {
        assert_eq!(
            second_run.get(id),
            Some(&1),
            "retried delivery {id} printed once"
        );
    }
    for text in lines.iter().chain(std::iter::once(&stderr)) {
        assert!(!text.contains(SECRET), "the webhook secret leaked: {text}");
    }
}
