//! A real `redis-server` for the tests: started on a free 127.0.0.1 port in a temporary
//! directory, with the append-only file fsynced on every write (so a SIGKILL loses nothing it
//! acknowledged), restarted or killed on request, and stopped when dropped. The machine's own
//! Redis (6379) is never touched.
//!
//! A test that needs Redis fails when `redis-server` is not installed, with a message saying
//! how to get it (`.ci/run` installs the distribution's package); it never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to come up (or to load its append-only file).
const START_WAIT: Duration = Duration::from_secs(20);

/// A `redis-server` of the test's own; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Configuration after the defaults.
    config: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port in a fresh temporary directory and waits until it
    /// answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not on the `PATH`, or does not come up in time.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`start`](Self::start) with more configuration (`--name value` pairs, after the
    /// defaults, so they win): the benchmark measures `--appendfsync everysec` too.
    pub fn start_with(config: &[&str]) -> RedisServer {
        let version = Command::new("redis-server").arg("--version").output();
        if !version.is_ok_and(|output| output.status.success()) {
            panic!(
                "redis-server is not installed: these tests start their own Redis. Install the \
                 distribution's package (`apt-get install -y redis-server`; .ci/run does it when \
                 the binary is missing)."
            );
        }
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        // A port the OS just handed out and took back: free unless another process races for it
        // in the next milliseconds, in which case the start fails loudly.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            config: config.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT/0/STREAM`: what `serve --sink` takes.
    pub fn sink_url(&self, stream: &str) -> String {
        format!("{}/0/{stream}", self.url())
    }

    /// Its data directory (the append-only file and the log).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Stops the server as a crash would (SIGKILL) and starts it again on the same port and
    /// data: everything it acknowledged is back (`appendfsync always`).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server (SIGKILL) and leaves it down until [`start_again`](Self::start_again).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn();
    }

    /// A connection for the test's own commands.
    pub fn connection(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to the test's redis-server")
    }

    /// Every entry of `stream`, oldest first: its id (`1764100000000-0`) and its item (the
    /// `item` field's JSON).
    ///
    /// # Panics
    /// When the server does not answer, or an entry is not one the sink writes.
    pub fn entries(&self, stream: &str) -> Vec<(String, serde_json::Value)> {
        let mut conn = self.connection();
        let reply: ::redis::Value = ::redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .expect("XRANGE");
        let ::redis::Value::Array(entries) = reply else {
            return Vec::new();
        };
        entries
            .iter()
            .map(|entry| {
                let ::redis::Value::Array(parts) = entry else {
                    panic!("an entry: {entry:?}")
                };
                let id: String = ::redis::from_redis_value_ref(&parts[0]).expect("an entry id");
                let fields: Vec<String> =
                    ::redis::from_redis_value_ref(&parts[1]).expect("an entry's fields");
                assert_eq!(fields[0], "item", "the entry's field");
                (
                    id,
                    serde_json::from_str(&fields[1]).expect("the item's JSON"),
                )
            })
            .collect()
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "redis.log",
            ])
            .args(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while !self.answers_ping() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "redis-server exited ({status}) on port {}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within {START_WAIT:?}: {}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `PING` → `+PONG` (not `-LOADING`, while the append-only file loads).
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("redis.log")) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
