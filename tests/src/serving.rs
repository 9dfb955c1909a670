//! `openflume serve` as a child process: started on a free port with a temporary data
//! directory, asked over plain HTTP/1.1, fed signed custom webhooks.

use crate::openflume_bin;
use openflume_proto::webhook::sign_github;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long serve gets to start, and a request to be answered.
const WAIT: Duration = Duration::from_secs(20);

/// A running `openflume serve`; killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its stderr, line by line.
    pub stderr: mpsc::Receiver<String>,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl ServeProcess {
    /// `openflume serve --http 127.0.0.1:0 --data TMP` plus `args`, with `env` set (and no hub
    /// token unless `env` gives `OPENFLUME_HUB_TOKEN`); returns once it says where it serves.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut command = Command::new(openflume_bin());
        command
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(args)
            .env_remove("OPENFLUME_HUB_TOKEN")
            .env_remove("OPENFLUME_HUB_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn openflume serve");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            // Read to the end even when nobody listens any more, so serve never blocks on it.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = stderr.recv_timeout(left) else {
                let _ = child.kill();
                panic!("serve did not say where it serves; its stderr: {seen:#?}");
            };
            if let Some(rest) = line.split("serving on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr.parse().expect("an address after `serving on http://`");
            }
            seen.push(line);
        };
        ServeProcess {
            child,
            addr,
            stderr,
            dir,
        }
    }

    /// `GET path`: the status, the headers (names lowercased) and the body.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http_request(self.addr, "GET", path, headers, b"")
    }

    /// Posts `body` to the custom webhook channel `sender`, signed with `secret`; the status.
    pub fn post_custom(&self, sender: &str, secret: &str, body: &str) -> u16 {
        let signature = sign_github(secret.as_bytes(), body.as_bytes());
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Signature-256", signature.as_str()),
        ];
        let path = format!("/channels/custom/{sender}");
        http_request(self.addr, "POST", &path, &headers, body.as_bytes()).status
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Each header, its name lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to serve");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("send the request");
    stream.write_all(body).expect("send the body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the answer");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}
