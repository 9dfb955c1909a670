//! `openflume serve` as a child process, for the hub tests and the fan-out benchmark: spawned on
//! a free loopback port with a fresh data directory, fed by signed webhooks (custom senders and
//! GitHub), its stderr read line by line so a test can wait for what it reports.

use openflume_proto::webhook::sign_github;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The secret of every custom sender (`--webhook NAME=HUB_TEST_SECRET`) and of GitHub webhooks.
pub const WEBHOOK_SECRET: &str = "hub-test-webhook-secret";
/// The hub's bearer token (`OPENFLUME_HUB_TOKEN`).
pub const HUB_TOKEN: &str = "hub-test-token";

/// A running `openflume serve`, killed when dropped.
pub struct Serve {
    child: Child,
    /// Where it serves the webhook channels and the hub.
    pub addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve` with custom senders `senders` (each `/channels/custom/NAME`), GitHub
    /// webhooks, the hub token, `extra` flags and `env`; returns once it says where it serves.
    pub fn spawn(senders: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let dir = tempfile::tempdir().expect("a data directory");
        let mut command = Command::new(crate::openflume_bin());
        command
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(dir.path());
        for sender in senders {
            command.args(["--webhook", &format!("{sender}=HUB_TEST_SECRET")]);
        }
        command
            .args(extra)
            .env("HUB_TEST_SECRET", WEBHOOK_SECRET)
            .env("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("OPENFLUME_HUB_TOKEN", HUB_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn openflume serve");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            dir,
        };
        let line = serve.wait_for_stderr(Duration::from_secs(30), |line| {
            line.contains("serving on http://")
        });
        let addr = line
            .split("serving on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        serve.addr = addr;
        serve
    }

    /// The data directory (the log is `log.sqlite` in it).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line that `pred` accepts; fails the test with what was said after
    /// `timeout`.
    pub fn wait_for_stderr(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => said.push(line),
                Err(_) => panic!(
                    "serve did not say it within {timeout:?}; it said:\n{}",
                    said.join("\n")
                ),
            }
        }
    }

    /// Posts a signed custom webhook to `/channels/custom/{sender}`; the HTTP status.
    pub fn post_custom(&self, sender: &str, body: &str) -> u16 {
        post_custom(self.addr, sender, body)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `body` to the custom sender `sender` of the `serve` at `addr`, signed with
/// `X-Signature-256`; the HTTP status (200 once the event is committed to the log).
pub fn post_custom(addr: SocketAddr, sender: &str, body: &str) -> u16 {
    let signature = sign_github(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", signature.as_str()),
    ];
    let path = format!("/channels/custom/{sender}");
    request(addr, "POST", &path, &headers, body.as_bytes()).0
}

/// Posts a signed GitHub `issues` webhook about issue `number` of `octo/app` (so its event's
/// `meta.conversation_key` is `github:v1:owner:octo:repo:app:issue:{number}`), with `n` in its
/// payload; the HTTP status.
pub fn post_github_issue(addr: SocketAddr, number: u64, n: u64) -> u16 {
    let body = format!(
        r#"{{"action":"edited","issue":{{"number":{number}}},"repository":{{"full_name":"octo/app"}},"n":{n}}}"#
    );
    let signature = sign_github(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let delivery = format!("delivery-{number}-{n}");
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", delivery.as_str()),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    request(
        addr,
        "POST",
        "/channels/github/webhook",
        &headers,
        body.as_bytes(),
    )
    .0
}

/// One HTTP/1.1 request with `Connection: close`; the status and the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("write the head");
    stream.write_all(body).expect("write the body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the answer");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}
