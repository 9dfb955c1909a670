//! Fan-out of the hub (`/ws`) of `openflume serve` (issue 17): N local WebSocket subscribers on
//! one `serve`, events posted as signed webhooks at a fixed rate for a fixed time, beside two
//! baselines in the same run: one subscriber on `serve` at the same rate, and a raw fan-out
//! floor with the N subscribers.
//!
//! `cargo bench -p openflume --bench hub_fanout` (env `BENCH_SUBSCRIBERS`, default 1000;
//! `BENCH_RATE` events/s, default 1000; `BENCH_SECS`, default 10; `BENCH_SENDERS` posting
//! connections, default 4; `BENCH_DIR` where the logs live, default beside this binary in the
//! target directory, on disk: the log fsyncs each commit).
//!
//! What is measured, per case:
//! - **delivery latency**: from just before a sender writes the POST (its body carries that
//!   moment) to the moment a subscriber's task reads the item frame, over every (event,
//!   subscriber) pair delivered: p50, p99, max. It includes the webhook's commit to the log
//!   (an fsync), the hub's read of the log, the frame's way over loopback, and the subscribers'
//!   own queueing: they all run on one thread of this process, which shares the machine's cores
//!   with `serve`.
//! - **memory per subscriber**: `serve`'s VmRSS (from /proc) once idle with the log open, and
//!   again once every subscriber got its `hello_ok`, the difference divided by N; also VmRSS after
//!   the run and the peak (VmHWM).
//! - **`serve`'s CPU** (user+sys from /proc) from the first post to the last delivery, in
//!   seconds, as a share of one core, and per frame delivered.
//!
//! The baselines, and why:
//! - **one subscriber on `serve`**: the same path (webhook, commit, hub session, log read,
//!   frame) with no fan-out, so what the N-subscriber case adds over it is the fan-out's cost;
//! - **the raw fan-out floor**: a child process (this binary again) that accepts the same N
//!   WebSocket subscribers (async-tungstenite on smol, as `serve`) and writes every event it is
//!   fed (text frames on a WebSocket of its own, no HTTP, no log, no filter) to each of them as
//!   an item frame of the same shape, one write per frame as `serve` does. It is what moving N
//!   frames per event over loopback costs on this machine, with the same subscribers on the
//!   same thread measuring: a hub cannot do better than it.
//!
//! Subscribers connect 50 at a time: the webhook ingress serves at most 128 connections
//! in their HTTP phase (a hub client leaves that count once upgraded).
//!
//! Each process needs a file descriptor per subscriber: the soft limit of open files is raised
//! to the hard limit (`setrlimit`) before `serve` starts, and the run stops if that is not
//! enough (raise the hard limit with `ulimit -Hn` as root).

// A benchmark aborts on any failure: a panic with the cause is the right report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod procfs;
use procfs::{Cpu, cpu_time, proc_number};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use futures_lite::{StreamExt, future};
use openflume_proto::webhook::sign_github;
use smol::Async;
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "hub-bench-webhook-secret";
const TOKEN: &str = "hub-bench-token";
/// Subscribers in their WebSocket handshake at once (the ingress serves 128 HTTP connections).
const CONNECT_BATCH: usize = 50;

/// Set in the floor's child process.
const ROLE: &str = "OPENFLUME_BENCH_ROLE";

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("floor") {
        return run_floor();
    }
    let subscribers = env_number("BENCH_SUBSCRIBERS", 1000) as usize;
    let rate = env_number("BENCH_RATE", 1000);
    let secs = env_number("BENCH_SECS", 10);
    let senders = env_number("BENCH_SENDERS", 4);
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("bench-hub")
        });
    let open_files = raise_open_files();
    let needed = subscribers as u64 + 256;
    assert!(
        open_files >= needed,
        "{open_files} open files allowed, {needed} needed: raise the hard limit (ulimit -Hn)"
    );
    println!(
        "hub fan-out: {rate} events/s for {secs} s ({} events, ~120-byte payloads) posted on \
         {senders} keep-alive connections; open files allowed: {open_files}; logs under {}",
        rate * secs,
        base.display()
    );
    let plan = Plan {
        rate,
        secs,
        senders,
        base,
    };
    let baseline = plan.run(Target::Serve, 1);
    let floor = plan.run(Target::Floor, subscribers);
    let fanout = plan.run(Target::Serve, subscribers);
    println!();
    println!(
        "| case | delivered | p50 ms | p99 ms | max ms | RSS idle MB | RSS connected MB | KB/subscriber | RSS after MB | peak MB | serve CPU s | % of a core | µs/frame | sender lag max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cases = [
        ("serve, 1 subscriber (baseline)".to_owned(), &baseline),
        (
            format!("raw fan-out floor, {subscribers} subscribers (baseline)"),
            &floor,
        ),
        (format!("serve, {subscribers} subscribers"), &fanout),
    ];
    for (label, outcome) in &cases {
        outcome.print_row(label);
    }
    for (label, outcome) in &cases {
        if outcome.closed > 0 || outcome.delivered < outcome.expected {
            println!(
                "{label}: {} of {} frames delivered within a minute after the last post, {} \
                 subscribers closed by the server",
                outcome.delivered, outcome.expected, outcome.closed
            );
        }
    }
}

/// What every case shares.
struct Plan {
    rate: u64,
    secs: u64,
    senders: u64,
    base: PathBuf,
}

/// One case's figures.
struct Outcome {
    subscribers: usize,
    expected: u64,
    delivered: u64,
    /// Subscribers the hub closed before they had every event.
    closed: u64,
    latencies_us: Vec<u32>,
    rss_idle_kb: u64,
    rss_connected_kb: u64,
    rss_after_kb: u64,
    peak_kb: u64,
    serve_cpu: Duration,
    streaming: Duration,
    sender_lag_max: Duration,
}

impl Outcome {
    fn print_row(&self, label: &str) {
        let ms = |q: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
            self.latencies_us
                .get(i)
                .map_or(f64::NAN, |us| f64::from(*us) / 1000.0)
        };
        let mb = |kb: u64| kb as f64 / 1024.0;
        let per_subscriber_kb =
            (self.rss_connected_kb as f64 - self.rss_idle_kb as f64) / self.subscribers as f64;
        println!(
            "| {label} | {}/{} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.1} | {:.1} |",
            self.delivered,
            self.expected,
            ms(0.5),
            ms(0.99),
            ms(1.0),
            mb(self.rss_idle_kb),
            mb(self.rss_connected_kb),
            per_subscriber_kb,
            mb(self.rss_after_kb),
            mb(self.peak_kb),
            self.serve_cpu.as_secs_f64(),
            100.0 * self.serve_cpu.as_secs_f64() / self.streaming.as_secs_f64(),
            1e6 * self.serve_cpu.as_secs_f64() / self.delivered.max(1) as f64,
            self.sender_lag_max.as_secs_f64() * 1000.0,
        );
    }
}

/// Which server a case measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Serve,
    Floor,
}

impl Plan {
    fn run(&self, target: Target, subscribers: usize) -> Outcome {
        let dir = self
            .base
            .join(format!("{}-{subscribers}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let serve = match target {
            Target::Serve => Serve::spawn(&dir),
            Target::Floor => Serve::spawn_floor(),
        };
        let events = self.rate * self.secs;
        // The log opened and written once, its first commit done: the idle footprint.
        let origin = Instant::now();
        let mut warm_up = Feed::new(target, serve.addr);
        warm_up.send(r#"{"n":-1}"#);
        let rss_idle_kb = proc_number(&format!("/proc/{}/status", serve.pid()), "VmRSS:");

        let executor = smol::LocalExecutor::new();
        let sockets = smol::block_on(executor.run(connect_all(serve.addr, subscribers)));
        let rss_connected_kb = proc_number(&format!("/proc/{}/status", serve.pid()), "VmRSS:");

        let cpu_before = serve.cpu();
        let started = Instant::now();
        let lag_max_us = Arc::new(AtomicU64::new(0));
        let posting: Vec<_> = (0..self.senders)
            .map(|sender| {
                let (addr, rate, senders, lag_max_us) =
                    (serve.addr, self.rate, self.senders, lag_max_us.clone());
                std::thread::spawn(move || {
                    let mut feed = Feed::new(target, addr);
                    for n in (sender..events).step_by(senders as usize) {
                        let due = started + Duration::from_micros(n * 1_000_000 / rate);
                        let now = Instant::now();
                        match due.checked_duration_since(now) {
                            Some(wait) => std::thread::sleep(wait),
                            None => {
                                let lag = (now - due).as_micros() as u64;
                                lag_max_us.fetch_max(lag, Ordering::Relaxed);
                            }
                        }
                        let posted = origin.elapsed().as_micros();
                        feed.send(&format!(r#"{{"n":{n},"t":{posted}}}"#));
                    }
                })
            })
            .collect();
        // Everything sent plus a minute to deliver it, however slow the fan-out.
        let deadline = started + Duration::from_secs(self.secs + 60);
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|socket| executor.spawn(read_items(socket, events, origin, deadline)))
            .collect();
        let received = smol::block_on(executor.run(async {
            let mut all = Vec::with_capacity(readers.len());
            for reader in readers {
                all.push(reader.await);
            }
            all
        }));
        let streaming = started.elapsed();
        let serve_cpu = serve.cpu() - cpu_before;
        for sender in posting {
            sender.join().unwrap();
        }
        let rss_after_kb = proc_number(&format!("/proc/{}/status", serve.pid()), "VmRSS:");
        let peak_kb = proc_number(&format!("/proc/{}/status", serve.pid()), "VmHWM:");
        drop(serve);
        let _ = std::fs::remove_dir_all(&dir);

        let mut latencies_us = Vec::with_capacity(events as usize * subscribers);
        let mut closed = 0;
        for subscriber in received {
            closed += u64::from(subscriber.closed);
            latencies_us.extend(subscriber.latencies_us);
        }
        latencies_us.sort_unstable();
        Outcome {
            subscribers,
            expected: events * subscribers as u64,
            delivered: latencies_us.len() as u64,
            closed,
            latencies_us,
            rss_idle_kb,
            rss_connected_kb,
            rss_after_kb,
            peak_kb,
            serve_cpu,
            streaming,
            sender_lag_max: Duration::from_micros(lag_max_us.load(Ordering::Relaxed)),
        }
    }
}

type Socket = WebSocketStream<Async<TcpStream>>;

/// `subscribers` hub clients, each past its `hello_ok`, connected [`CONNECT_BATCH`] at a time.
async fn connect_all(addr: SocketAddr, subscribers: usize) -> Vec<Socket> {
    let mut sockets = Vec::with_capacity(subscribers);
    while sockets.len() < subscribers {
        let batch = CONNECT_BATCH.min(subscribers - sockets.len());
        let mut connecting = Vec::with_capacity(batch);
        for _ in 0..batch {
            connecting.push(smol::spawn(subscribe(addr)));
        }
        for socket in connecting {
            sockets.push(socket.await);
        }
    }
    sockets
}

/// One hub client: upgraded with the token, hello for the custom events from now on.
async fn subscribe(addr: SocketAddr) -> Socket {
    let stream = Async::<TcpStream>::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut socket, _) = async_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    socket
        .send(Message::text(
            r#"{"type":"hello","subscriptions":{"sources":["custom"]}}"#,
        ))
        .await
        .unwrap();
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.contains("hello_ok") => socket,
        other => panic!("no hello_ok: {other:?}"),
    }
}

/// What one subscriber got.
struct Received {
    latencies_us: Vec<u32>,
    /// The hub closed it before every event came.
    closed: bool,
}

/// Reads item frames until `events` came (or the deadline, or a close), noting each one's
/// latency from the `t` its sender wrote into it.
async fn read_items(
    mut socket: Socket,
    events: u64,
    origin: Instant,
    deadline: Instant,
) -> Received {
    let mut latencies_us = Vec::with_capacity(events as usize);
    let mut closed = false;
    let read = async {
        while (latencies_us.len() as u64) < events {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let received = origin.elapsed().as_micros();
                    if let Some(posted) = posted_at(&text) {
                        let latency = received.saturating_sub(posted);
                        latencies_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    };
    future::or(read, async {
        async_io::Timer::at(deadline).await;
    })
    .await;
    Received {
        latencies_us,
        closed,
    }
}

/// The `"t":MICROS` the sender put in the event's data (the item frame carries it verbatim).
fn posted_at(frame: &str) -> Option<u128> {
    let at = frame.find(r#""t":"#)? + 4;
    let digits = frame.get(at..)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits.get(..end)?.parse().ok()
}

/// How a case's events go in: signed webhooks to `serve`, text frames to the floor.
enum Feed {
    Webhook(Poster),
    Floor(tungstenite::WebSocket<TcpStream>),
}

impl Feed {
    fn new(target: Target, addr: SocketAddr) -> Feed {
        match target {
            Target::Serve => Feed::Webhook(Poster::new(addr)),
            Target::Floor => {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut socket, _) =
                    tungstenite::client::client(format!("ws://{addr}/feed"), stream).unwrap();
                socket.send(tungstenite::Message::text("feed")).unwrap();
                Feed::Floor(socket)
            }
        }
    }

    fn send(&mut self, body: &str) {
        match self {
            Feed::Webhook(poster) => assert_eq!(poster.post(body), 200, "{body}"),
            Feed::Floor(socket) => socket.send(tungstenite::Message::text(body)).unwrap(),
        }
    }
}

/// A webhook sender on one keep-alive connection.
struct Poster {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Poster {
    fn new(addr: SocketAddr) -> Poster {
        Poster { addr, stream: None }
    }

    /// Posts `body` to the custom sender `bench`, signed; the status (200 once committed).
    fn post(&mut self, body: &str) -> u16 {
        let signature = sign_github(SECRET.as_bytes(), body.as_bytes());
        let request = format!(
            "POST /channels/custom/bench HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             X-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let addr = self.addr;
        let stream = self.stream.get_or_insert_with(|| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_nodelay(true).unwrap();
            BufReader::new(stream)
        });
        stream.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status = 0;
        let mut length = 0;
        let mut close = false;
        let mut line = String::new();
        loop {
            line.clear();
            stream.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some(code) = header.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        if close {
            self.stream = None;
        }
        status
    }
}

/// A running `openflume serve` with one custom sender, killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn spawn(dir: &Path) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_openflume"))
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(dir)
            .args(["--webhook", "bench=HUB_BENCH_SECRET"])
            .env("HUB_BENCH_SECRET", SECRET)
            .env("OPENFLUME_HUB_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openflume serve");
        Serve::from_child(child)
    }

    /// The raw fan-out floor: this binary again, in the `floor` role.
    fn spawn_floor() -> Serve {
        let child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "floor")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the fan-out floor");
        Serve::from_child(child)
    }

    fn from_child(mut child: Child) -> Serve {
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve says where it serves").unwrap();
            if let Some(rest) = line.split("serving on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // What it says later (a subscriber closed with 1008, say) goes on this process's stderr.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("{line}");
            }
        });
        Serve { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system time so far, from /proc.
    fn cpu(&self) -> Duration {
        cpu_time(&self.pid().to_string(), Cpu::Own)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises the soft limit of open files to the hard one (inherited by `serve`); the new soft
/// limit.
fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        limit.maximum.unwrap_or(u64::MAX)
    } else {
        limit.current.unwrap_or(u64::MAX)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The raw fan-out floor (child process).
// ---------------------------------------------------------------------------------------------

/// Accepts WebSocket connections on a free port (said on stderr as `serve` does); a connection
/// whose first message is `feed` is the feed, every other one a subscriber, answered `hello_ok`.
/// Each event fed is written to every subscriber as an item frame, each subscriber by a task of
/// its own that writes frame by frame, as `serve`'s hub does.
fn run_floor() {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("serving on http://{}", listener.local_addr().unwrap());
        let subscribers: Rc<RefCell<Vec<smol::channel::Sender<Arc<str>>>>> = Rc::default();
        let executor = Rc::new(smol::LocalExecutor::new());
        let accepting = {
            let executor = executor.clone();
            async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let subscribers = subscribers.clone();
                    executor
                        .spawn(floor_connection(stream, subscribers))
                        .detach();
                }
            }
        };
        executor.run(accepting).await;
    });
}

async fn floor_connection(
    stream: smol::net::TcpStream,
    subscribers: Rc<RefCell<Vec<smol::channel::Sender<Arc<str>>>>>,
) {
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let Ok(mut socket) = async_tungstenite::accept_async_with_config(stream, Some(config)).await
    else {
        return;
    };
    let Some(Ok(Message::Text(first))) = socket.next().await else {
        return;
    };
    if first.as_str() != "feed" {
        let (frames, queue) = smol::channel::unbounded::<Arc<str>>();
        subscribers.borrow_mut().push(frames);
        let _ = socket
            .send(Message::text(r#"{"type":"hello_ok","replay_until":0}"#))
            .await;
        while let Ok(frame) = queue.recv().await {
            if socket.send(Message::text(&*frame)).await.is_err() {
                return;
            }
        }
        return;
    }
    let mut event_id = 0;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(data) = message else {
            continue;
        };
        event_id += 1;
        let frame: Arc<str> = format!(
            r#"{{"type":"item","event_id":{event_id},"item":{{"kind":"event","event":{{"source":"custom","type":"bench","data":{},"meta":{{}},"receivedAt":0}}}}}}"#,
            data.as_str()
        )
        .into();
        subscribers
            .borrow_mut()
            .retain(|subscriber| subscriber.try_send(frame.clone()).is_ok());
    }
}
