//! Headless Chromium for the tests, driven over the Chrome DevTools Protocol: one WebSocket to
//! the browser, one page attached in flat mode, `Runtime.evaluate` to read the DOM.
//!
//! The page's own script runs as in any browser (fetch, WebSocket, timers); the test only
//! reads what it rendered. Waits are conditions with a deadline ([`Browser::wait_for`]); a
//! timeout reports the page's text and the script errors seen, so a failure says why.
//!
//! Chromium comes from the distribution (Debian's `chromium`; `.ci/run` installs it when it
//! is missing). Without it a test fails with a message saying how to install it: it is never
//! skipped.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How long Chromium gets to start, and each protocol command to be answered.
const WAIT: Duration = Duration::from_secs(30);
/// Between two looks at a condition.
const POLL: Duration = Duration::from_millis(50);

/// Where Chromium is looked for: `$OPENFLUME_CHROMIUM`, then the Debian package's path, then
/// the usual names on `PATH`.
pub fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OPENFLUME_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.exists() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.exists())
}

/// A headless Chromium with one page; killed when dropped.
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// The page's flat-mode session.
    session: Option<String>,
    /// Uncaught exceptions and console errors of the page, for failure messages.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and connects to its DevTools endpoint. Panics, saying how to install
    /// it, when there is no Chromium.
    pub fn launch() -> Browser {
        let Some(binary) = chromium_path() else {
            panic!(
                "this test needs headless Chromium and found none (looked at $OPENFLUME_CHROMIUM, \
                 /usr/bin/chromium, and chromium or chromium-browser on PATH): install Debian's \
                 package with `apt-get install -y chromium` (.ci/run does), or point \
                 OPENFLUME_CHROMIUM at a Chromium or Chrome binary"
            );
        };
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                // CI runs as root, where Chromium's sandbox refuses to start; the pages are the
                // test's own.
                "--no-sandbox",
                "--disable-gpu",
                // Containers give /dev/shm little room.
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let (tx, lines) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            // Read to the end, so Chromium never blocks on a full pipe.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let endpoint = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "{} did not open its DevTools endpoint within {WAIT:?}; its stderr: {seen:#?}",
                    binary.display()
                );
            };
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                break url.trim().to_owned();
            }
            seen.push(line);
        };
        let socket = connect(&endpoint);
        Browser {
            child,
            socket,
            next_id: 0,
            session: None,
            errors: Vec::new(),
            _profile: profile,
        }
    }

    /// Opens a page at `url`, watching its script errors from the first line on.
    pub fn open(&mut self, url: &str) {
        let created = self.command("Target.createTarget", json!({ "url": "about:blank" }));
        let target = created["targetId"].clone();
        let attached = self.command(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        self.session = Some(session);
        self.command("Runtime.enable", json!({}));
        self.command("Page.enable", json!({}));
        let navigated = self.command("Page.navigate", json!({ "url": url }));
        if let Some(error) = navigated["errorText"].as_str() {
            panic!("cannot open {url}: {error}");
        }
    }

    /// The value of `expression` in the page (JSON; `null` for `undefined`); fails the test
    /// if it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|error| panic!("{expression} threw: {error}"))
    }

    /// The value of `expression`, or what it threw.
    fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        match result.get("exceptionDetails") {
            Some(details) => Err(details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("an exception")
                .to_owned()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Waits until `expression` is truthy in the page and returns its value (while it throws,
    /// the page is not there yet); after `timeout`, fails the test naming `what`, with the
    /// page's text and its script errors.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let outcome = self.try_eval(expression);
            if let Ok(value) = &outcome
                && truthy(value)
            {
                return value.clone();
            }
            if Instant::now() >= deadline {
                let text = self
                    .try_eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default();
                let text: String = text
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(3000)
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({expression} came to \
                     {outcome:?});\nscript errors: {:#?}\npage text:\n{text}",
                    self.errors
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The page's uncaught exceptions and console errors so far.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Sends one command (to the page once one is open) and returns its result, noting the
    /// page's errors among the events that come meanwhile.
    fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session
            && !method.starts_with("Target.")
        {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("cannot send {method} to Chromium: {e}"));
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "Chromium did not answer {method} within {WAIT:?}"
                    );
                    continue;
                }
                Err(e) => panic!("Chromium's DevTools connection failed during {method}: {e}"),
            };
            let reply: Value = serde_json::from_str(frame.as_str()).expect("DevTools sends JSON");
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
            self.note_event(&reply);
        }
    }

    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or_else(|| details["text"].as_str())
                    .unwrap_or("an exception");
                self.errors.push(format!("exception: {text}"));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| match &arg["value"] {
                        Value::Null => arg["description"].as_str().unwrap_or("?").to_owned(),
                        value => value.to_string(),
                    })
                    .collect();
                self.errors
                    .push(format!("console.error: {}", args.join(" ")));
            }
            _ => {}
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to the DevTools WebSocket at `url` (`ws://127.0.0.1:PORT/devtools/browser/…`).
fn connect(url: &str) -> WebSocket<TcpStream> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("an unexpected DevTools endpoint: {url}"));
    let stream = TcpStream::connect(host).expect("connect to Chromium's DevTools");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let socket = match tungstenite::client(url, stream) {
        Ok((socket, _)) => socket,
        Err(tungstenite::HandshakeError::Failure(e)) => {
            panic!("DevTools handshake with {url} failed: {e}")
        }
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("DevTools handshake with {url} timed out")
        }
    };
    // Short reads from now on, so a command's deadline is looked at while Chromium is quiet.
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a read timeout");
    socket
}

/// JavaScript's truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
