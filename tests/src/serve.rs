//! `openflume serve` as a child process: spawned on a free loopback port with a fresh data
//! directory, asked over plain HTTP/1.1, fed by signed webhooks (custom senders and GitHub), its
//! stderr read line by line so a test can wait for what it reports.

use openflume_proto::webhook::sign_github;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The secret of every custom sender of [`Serve::with_senders`] (`--webhook NAME=HUB_TEST_SECRET`)
/// and of GitHub webhooks.
pub const WEBHOOK_SECRET: &str = "hub-test-webhook-secret";
/// The hub's bearer token (`OPENFLUME_HUB_TOKEN`) of [`Serve::with_senders`].
pub const HUB_TOKEN: &str = "hub-test-token";

/// How long serve gets to start, and a request to be answered.
const WAIT: Duration = Duration::from_secs(30);

/// A running `openflume serve`; killed when dropped.
pub struct Serve {
    child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line received so far, in order.
    said: Vec<String>,
    data: std::path::PathBuf,
    /// The temporary data directory, when [`spawn`](Serve::spawn) made one.
    _temporary: Option<tempfile::TempDir>,
}

impl Serve {
    /// `openflume serve --http 127.0.0.1:0 --data TMP` plus `args`, with `env` set (and no hub
    /// token unless `env` gives `OPENFLUME_HUB_TOKEN`); returns once it says where it serves.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut serve = Serve::spawn_in(dir.path(), args, env);
        serve._temporary = Some(dir);
        serve
    }

    /// [`spawn`](Self::spawn) on the data directory `data`, which the caller keeps (a restart
    /// on the same log).
    pub fn spawn_in(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut command = Command::new(crate::openflume_bin());
        command
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .env_remove("OPENFLUME_HUB_TOKEN")
            .env_remove("OPENFLUME_HUB_TOKEN_FILE")
            .env_remove("OPENFLUME_FORWARD_SECRET")
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
            // Read to the end even when nobody listens any more, so serve never blocks on it.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            said: Vec::new(),
            data: data.to_owned(),
            _temporary: None,
        };
        let line = serve.wait_for_stderr(WAIT, |line| line.contains("serving on http://"));
        serve.addr = line
            .split("serving on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        serve
    }

    /// [`spawn`](Self::spawn) with custom senders `senders` (each `/channels/custom/NAME`,
    /// signed with [`WEBHOOK_SECRET`]), GitHub webhooks, the hub token [`HUB_TOKEN`], `extra`
    /// flags and `env`.
    pub fn with_senders(senders: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut args: Vec<String> = Vec::new();
        for sender in senders {
            args.extend(["--webhook".to_owned(), format!("{sender}=HUB_TEST_SECRET")]);
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut all_env = vec![
            ("HUB_TEST_SECRET", WEBHOOK_SECRET),
            ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("OPENFLUME_HUB_TOKEN", HUB_TOKEN),
        ];
        all_env.extend_from_slice(env);
        Serve::spawn(&args, &all_env)
    }

    /// The data directory (the log is `log.sqlite` in it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a new stderr line that `pred` accepts; fails the test with what was said after
    /// `timeout`.
    pub fn wait_for_stderr(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let start = self.said.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.said.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "serve did not say it within {timeout:?}; it said:\n{}",
                    self.said[start..].join("\n")
                ),
            }
        }
    }

    /// The first stderr line, said already or to come (within `timeout`), that `pred` accepts.
    pub fn wait_for_said(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.stderr_lines();
        match self.said.iter().find(|line| pred(line)) {
            Some(line) => line.clone(),
            None => self.wait_for_stderr(timeout, pred),
        }
    }

    /// Every stderr line serve has said so far.
    pub fn stderr_lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            self.said.push(line);
        }
        self.said.clone()
    }

    /// Kills serve with SIGKILL (a crash) and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` to serve.
    pub fn signal(&self, signal: crate::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).expect("signal serve");
    }

    /// Waits (at most `timeout`) for serve to exit, and returns how.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path`: the status, the headers (names lowercased) and the body.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http_request(self.addr, "GET", path, headers, b"")
    }

    /// Posts `body` to the custom webhook channel `sender`, signed with `secret`; the status.
    pub fn post_custom(&self, sender: &str, secret: &str, body: &str) -> u16 {
        post_custom_signed(self.addr, sender, secret, body)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `body` to the custom sender `sender` of the `serve` at `addr`, signed with
/// [`WEBHOOK_SECRET`] in `X-Signature-256`; the HTTP status (200 once the event is committed to
/// the log).
pub fn post_custom(addr: SocketAddr, sender: &str, body: &str) -> u16 {
    post_custom_signed(addr, sender, WEBHOOK_SECRET, body)
}

fn post_custom_signed(addr: SocketAddr, sender: &str, secret: &str, body: &str) -> u16 {
    let signature = sign_github(secret.as_bytes(), body.as_bytes());
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Signature-256", signature.as_str()),
    ];
    let path = format!("/channels/custom/{sender}");
    http_request(addr, "POST", &path, &headers, body.as_bytes()).status
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
    http_request(
        addr,
        "POST",
        "/channels/github/webhook",
        &headers,
        body.as_bytes(),
    )
    .status
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
