//! `openflume serve --forward` through the real binary (issue 17): events posted to serve's
//! custom webhook channel are forwarded, signed, to a local HTTP receiver written here, which
//! checks both signatures with its own HMAC (ring) and answers as each test scripts it.
//!
//! - Failures, then a SIGKILL between two attempts and a restart on the same data: every event
//!   arrives, in order; an event whose 2xx was stored is never sent again; the one that was
//!   failing is sent again after the restart (at least once).
//! - A 410 disables the target, with an error log, across a restart too; a healthy second
//!   target is the witness that the disabled one was given every chance to send more.
//! - A delivery that keeps failing is given up after `--forward-max-age`, and the next goes.
//! - The first two again with `--sink redis://…/STREAM` against a real `redis-server`
//!   (`openflume_tests::redis`): events read from the stream, `webhook-id` their stream id, the
//!   targets' states in the hash `STREAM:forward`, the forwarder's logs in the stream, and the
//!   queue depth on `/metrics` counting what waits unread; then Redis restarting between two
//!   deliveries, and Redis refusing a state (nothing is sent past it until it is stored).
//!
//! Every wait has a deadline and a condition; none sleeps for a fixed time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::hub::StreamId;
use openflume_proto::outbox::TargetState;
use openflume_proto::webhook::base64_encode;
use openflume_tests::openflume_bin;
use openflume_tests::redis::RedisServer;
use openflume_tests::serve::Serve;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);
const DEPLOY_SECRET: &str = "forward-e2e-deploys-secret";
const FORWARD_SECRET: &str = "forward-e2e-SECRET-5c1a";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    /// The body's `event_id` as text: the log's id (`7`), or a stream id (`1764100000000-0`).
    event_id: String,
    deploy: u64,
    status: u16,
    /// Both signatures, the ids and the timestamp checked out.
    verified: Result<(), String>,
}

/// What the receiver answers to the `attempt`-th request (from 1) for `deploy`.
type Policy = Box<dyn Fn(u64, usize) -> u16 + Send>;

struct ReceiverState {
    received: Vec<Received>,
    policy: Policy,
}

/// A local webhook receiver on 127.0.0.1, verifying with `key`.
struct Receiver {
    addr: SocketAddr,
    state: Arc<(Mutex<ReceiverState>, Condvar)>,
}

impl Receiver {
    fn start(key: Vec<u8>, policy: Policy) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((
            Mutex::new(ReceiverState {
                received: Vec::new(),
                policy,
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                let key = key.clone();
                std::thread::spawn(move || serve_connection(stream, &key, &shared));
            }
        });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set_policy(&self, policy: Policy) {
        self.state.0.lock().unwrap().policy = policy;
    }

    fn received(&self) -> Vec<Received> {
        self.state.0.lock().unwrap().received.clone()
    }

    /// Waits until `done` holds for what was received; panics with it at the deadline.
    fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap();
        loop {
            if done(&state.received) {
                return state.received.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what}: never happened: {:?}",
                state.received
            );
            state = changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

/// Reads requests on one connection (the forwarder keeps connections alive) and answers each.
fn serve_connection(stream: TcpStream, key: &[u8], shared: &(Mutex<ReceiverState>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut headers = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end().to_owned();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let event_id = text(&parsed["event_id"]);
        let deploy = parsed["event"]["data"]["deploy"].as_u64().unwrap_or(0);
        let verified = verify(key, &header, &body, &event_id);
        let status = {
            let (lock, changed) = shared;
            let mut state = lock.lock().unwrap();
            let attempt = 1 + state.received.iter().filter(|r| r.deploy == deploy).count();
            let status = if verified.is_ok() {
                (state.policy)(deploy, attempt)
            } else {
                401
            };
            state.received.push(Received {
                event_id,
                deploy,
                status,
                verified,
            });
            changed.notify_all();
            status
        };
        let answer = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Both signatures with ring's HMAC, the Standard Webhooks id and timestamp, the body's shape.
fn verify(
    key: &[u8],
    header: &dyn Fn(&str) -> String,
    body: &[u8],
    event_id: &str,
) -> Result<(), String> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let hex: String = ring::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if header("x-openflume-signature") != format!("sha256={hex}") {
        return Err("X-Openflume-Signature".into());
    }
    if header("content-type") != "application/json" {
        return Err("Content-Type".into());
    }
    let id = header("webhook-id");
    if id != event_id {
        return Err(format!("webhook-id {id} for event {event_id}"));
    }
    let timestamp = header("webhook-timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at: i64 = timestamp.parse().map_err(|_| "webhook-timestamp")?;
    if (now - at).abs() > 300 {
        return Err(format!("webhook-timestamp {at} is {} s off", now - at));
    }
    let message = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let tag = ring::hmac::sign(&key, &message);
    if header("webhook-signature") != format!("v1,{}", base64_encode(tag.as_ref())) {
        return Err("webhook-signature".into());
    }
    Ok(())
}

/// `openflume serve` on `data` with the custom webhook `deploys` (signed with [`DEPLOY_SECRET`]).
fn spawn_serve(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut args = vec!["--webhook", "deploys=DEPLOY_SECRET"];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("DEPLOY_SECRET", DEPLOY_SECRET));
    Serve::spawn_in(data, &args, &env)
}

/// Posts deploy `n`, signed; returns once serve answered 200 (the event is in the log).
fn post(serve: &Serve, n: u64) {
    let status = serve.post_custom("deploys", DEPLOY_SECRET, &format!(r#"{{"deploy":{n}}}"#));
    assert_eq!(status, 200, "deploy {n}");
}

/// `openflume log tail` of `data`: every line as JSON.
fn tail(data: &Path) -> Vec<serde_json::Value> {
    let output = Command::new(openflume_bin())
        .args(["log", "tail", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Waits until the target's state stored in `data` satisfies `done` (read as another process
/// would, beside the running serve).
fn wait_stored(data: &Path, url: &str, what: &str, done: impl Fn(&TargetState) -> bool) {
    let deadline = Instant::now() + WAIT;
    let reader = openflume_log::LogReader::open(data).unwrap();
    loop {
        let state = reader.outbox_state(url).unwrap();
        if state.as_ref().is_some_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: never stored: {state:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_secret(texts: &[String]) {
    for text in texts {
        assert!(!text.contains(FORWARD_SECRET), "the secret leaked: {text}");
    }
}

/// A JSON value as text: a string's contents, anything else as JSON (`7`).
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An event id in log order: the SQLite log's id, or a stream id (both as a stream id).
fn position(event_id: &str) -> StreamId {
    event_id.parse().expect("an event id or a stream id")
}

/// Every request verified, in non-decreasing event order (a retry repeats the same event, the
/// next event only comes after).
fn assert_in_order(received: &[Received]) {
    for request in received {
        assert_eq!(request.verified, Ok(()), "{request:?}");
    }
    let ids: Vec<StreamId> = received.iter().map(|r| position(&r.event_id)).collect();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {ids:?}"
    );
}

fn delivered(received: &[Received], deploy: u64) -> bool {
    received
        .iter()
        .any(|r| r.deploy == deploy && (200..300).contains(&r.status))
}

/// Deploys 1 and 2 are answered 204 at once; deploy 3 gets 500 twice. serve is killed (SIGKILL)
/// after the second failure, between two attempts, and restarted on the same data; then every
/// deploy is answered 200. All six deploys arrive, in order; 1 and 2, whose 2xx were stored
/// before deploy 3 was first sent, are never sent again; deploy 3 is (at least once).
#[test]
fn every_event_arrives_in_order_through_failures_and_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(
        FORWARD_SECRET.as_bytes().to_vec(),
        Box::new(|deploy, _| if deploy == 3 { 500 } else { 204 }),
    );
    let forward = format!("{},secret=FWD_SECRET,sources=custom", receiver.url());
    let env = [("FWD_SECRET", FORWARD_SECRET)];
    let mut serve = spawn_serve(data.path(), &["--forward", &forward], &env);
    for n in 1..=3 {
        post(&serve, n);
    }
    let before = receiver.wait_until("two failed attempts of deploy 3", |r| {
        r.iter().filter(|r| r.deploy == 3).count() >= 2
    });
    let retry = serve.wait_for_said(WAIT, |l| l.contains("failed (attempt 2)"));
    assert!(retry.contains("HTTP 500"), "{retry}");
    // Between two attempts: the second failure and its backoff are stored.
    wait_stored(data.path(), &receiver.url(), "the second failure", |s| {
        s.attempts == 2 && s.next_attempt_at.is_some()
    });
    let mut stderr = serve.stderr_lines();
    serve.kill();
    assert!(delivered(&before, 1) && delivered(&before, 2));

    receiver.set_policy(Box::new(|_, _| 200));
    let mut serve = spawn_serve(data.path(), &["--forward", &forward], &env);
    for n in 4..=6 {
        post(&serve, n);
    }
    let all = receiver.wait_until("deploys 1 to 6 delivered", |r| {
        (1..=6).all(|n| delivered(r, n))
    });
    assert_in_order(&all);
    let after = &all[before.len()..];
    assert!(
        after.iter().all(|r| r.deploy >= 3),
        "a delivered event was sent again after the restart: {after:?}"
    );
    assert_eq!(after[0].deploy, 3, "the failing delivery resumes first");
    // Each of 4, 5 and 6 went once: nothing failed after the restart.
    for n in 4..=6 {
        assert_eq!(all.iter().filter(|r| r.deploy == n).count(), 1, "{all:?}");
    }
    stderr.extend(serve.stderr_lines());
    let log: Vec<String> = tail(data.path()).iter().map(|l| l.to_string()).collect();
    let retries = log
        .iter()
        .filter(|l| l.contains(r#""action":"forward.retry""#))
        .count();
    // The second retry's log may have been on its way to the log at the kill (stderr first).
    assert!(retries >= 1, "the retries are in the log");
    assert_no_secret(&stderr);
    assert_no_secret(&log);
}

/// A 410 disables its target (an error on stderr and in the log, naming it and the event), and
/// nothing more is sent to it, even after a restart; the healthy target beside it gets every
/// event, so the disabled one had every chance to send more. This target's secret is a Standard
/// Webhooks `whsec_` key from OPENFLUME_FORWARD_SECRET.
#[test]
fn a_410_disables_the_target_for_good() {
    let data = tempfile::tempdir().unwrap();
    let raw_key = b"forward-e2e-standard-key".to_vec();
    let whsec = format!("whsec_{}", base64_encode(&raw_key));
    let gone = Receiver::start(raw_key, Box::new(|_, _| 410));
    let healthy = Receiver::start(FORWARD_SECRET.as_bytes().to_vec(), Box::new(|_, _| 200));
    let healthy_target = format!("{},secret=FWD_SECRET,types=deploys", healthy.url());
    let args = ["--forward", &gone.url(), "--forward", &healthy_target];
    let env = [
        ("FWD_SECRET", FORWARD_SECRET),
        ("OPENFLUME_FORWARD_SECRET", whsec.as_str()),
    ];
    let mut serve = spawn_serve(data.path(), &args, &env);
    for n in 1..=3 {
        post(&serve, n);
    }
    let line = serve.wait_for_said(WAIT, |l| l.contains("410 Gone"));
    assert!(
        line.contains(&gone.url()) && line.contains("disabled"),
        "{line}"
    );
    healthy.wait_until("deploys 1 to 3 at the healthy target", |r| {
        (1..=3).all(|n| delivered(r, n))
    });
    let refused = gone.received();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].verified,
        Ok(()),
        "the whsec_ key signs both headers"
    );
    let log = tail(data.path());
    let disabled = log
        .iter()
        .find(|l| l["log"]["action"] == "forward.disabled")
        .expect("the disabling is logged");
    assert_eq!(disabled["log"]["level"], "error");
    assert_eq!(
        text(&disabled["log"]["detail"]["event_id"]),
        refused[0].event_id
    );
    assert_eq!(disabled["log"]["detail"]["target"], gone.url());
    // The error log comes before the state that acts on it: kill only once the state is stored
    // (killed between the two, the next start would try the event once more, and disable again).
    wait_stored(data.path(), &gone.url(), "the disabled target", |s| {
        s.disabled
    });
    let mut stderr = serve.stderr_lines();
    serve.kill();

    // Disabled across the restart: said so at the start, and nothing sent.
    let mut serve = spawn_serve(data.path(), &args, &env);
    serve.wait_for_said(WAIT, |l| l.contains("is disabled (it answered 410 Gone)"));
    post(&serve, 4);
    healthy.wait_until("deploy 4 at the healthy target", |r| delivered(r, 4));
    assert_eq!(gone.received().len(), 1);
    assert_in_order(&healthy.received());
    stderr.extend(serve.stderr_lines());
    assert_no_secret(&stderr);
    for text in &stderr {
        assert!(!text.contains(&whsec), "the secret leaked: {text}");
    }
}

/// With `--forward-max-age 2s`, deploy 1 keeps failing: it is retried until two seconds after
/// its first attempt, then given up (an error on stderr and in the log, naming the target and
/// the event), and deploy 2 goes.
#[test]
fn a_delivery_is_given_up_after_the_max_age() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(
        FORWARD_SECRET.as_bytes().to_vec(),
        Box::new(|deploy, _| if deploy == 1 { 503 } else { 200 }),
    );
    let forward = format!("{},sources=custom", receiver.url());
    let mut serve = spawn_serve(
        data.path(),
        &["--forward", &forward, "--forward-max-age", "2s"],
        &[("OPENFLUME_FORWARD_SECRET", FORWARD_SECRET)],
    );
    let started = Instant::now();
    post(&serve, 1);
    post(&serve, 2);
    let all = receiver.wait_until("deploy 2 delivered", |r| delivered(r, 2));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "given up too early"
    );
    assert_in_order(&all);
    let attempts = all.iter().filter(|r| r.deploy == 1).count();
    assert!(attempts >= 2, "retried before giving up: {all:?}");
    assert!(!delivered(&all, 1));
    let event_id = all[0].event_id.clone();
    let line = serve.wait_for_said(WAIT, |l| l.contains("gave up on event"));
    assert!(
        line.contains(&format!("event {event_id}")) && line.contains(&receiver.url()),
        "{line}"
    );
    let log = tail(data.path());
    let gave_up = log
        .iter()
        .find(|l| l["log"]["action"] == "forward.gave_up")
        .expect("the give-up is logged");
    assert_eq!(text(&gave_up["log"]["detail"]["event_id"]), event_id);
    assert_eq!(gave_up["log"]["detail"]["attempts"], attempts);
    assert_no_secret(&serve.stderr_lines());
}

/// A target whose secret is not in the environment is a usage error (exit 2) naming `--forward`
/// and the variable, before anything starts; a secret that is set is never printed.
#[test]
fn a_target_without_its_secret_is_a_usage_error() {
    let data = tempfile::tempdir().unwrap();
    let run = |forward: &str, env: &[(&str, &str)]| {
        let mut command = Command::new(openflume_bin());
        command
            .args(["serve", "--http", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(["--webhook", "deploys=DEPLOY_SECRET", "--forward", forward])
            .env("DEPLOY_SECRET", DEPLOY_SECRET)
            .env_remove("OPENFLUME_FORWARD_SECRET");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("http://127.0.0.1:9/hook", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--forward") && stderr.contains("OPENFLUME_FORWARD_SECRET"),
        "{stderr}"
    );
    let (code, stderr) = run("http://127.0.0.1:9/hook,secret=MISSING_VAR", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("MISSING_VAR"), "{stderr}");
    // A whsec_ secret that is not base64: refused, and not quoted.
    let bad = "whsec_not-base64-SECRET!";
    let (code, stderr) = run(
        "http://127.0.0.1:9/hook",
        &[("OPENFLUME_FORWARD_SECRET", bad)],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--forward") && !stderr.contains(bad),
        "{stderr}"
    );
}

/// The stream `serve --sink` appends to in the Redis tests.
const STREAM: &str = "forward-events";

/// `--sink redis://…/STREAM` on `redis`.
fn sink_args(redis: &RedisServer) -> [String; 2] {
    ["--sink".to_owned(), redis.sink_url(STREAM)]
}

/// The state stored in Redis for the target `url` (the hash `STREAM:forward`), read as another
/// process would.
fn redis_state(redis: &RedisServer, url: &str) -> Option<TargetState<StreamId>> {
    let mut conn = redis.connection();
    let json: Option<String> = redis::cmd("HGET")
        .arg(format!("{STREAM}:forward"))
        .arg(url)
        .query(&mut conn)
        .unwrap();
    json.map(|json| serde_json::from_str(&json).unwrap())
}

/// Waits until the state stored in Redis for `url` satisfies `done`.
fn wait_stored_in_redis(
    redis: &RedisServer,
    url: &str,
    what: &str,
    done: impl Fn(&TargetState<StreamId>) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = redis_state(redis, url);
        if state.as_ref().is_some_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: never stored: {state:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each deploy's stream id, as the stream holds it.
fn deploy_ids(redis: &RedisServer) -> std::collections::HashMap<u64, String> {
    redis
        .entries(STREAM)
        .into_iter()
        .filter(|(_, item)| item["event"]["type"] == "deploys")
        .map(|(id, item)| (item["event"]["data"]["deploy"].as_u64().unwrap(), id))
        .collect()
}

/// The forwarder's logs with `action` in the stream.
fn stream_logs(redis: &RedisServer, action: &str) -> Vec<serde_json::Value> {
    redis
        .entries(STREAM)
        .into_iter()
        .map(|(_, item)| item)
        .filter(|item| item["log"]["action"] == action)
        .collect()
}

/// The queue depth `/status.json` shows for `url`, and `/metrics`' series of it.
fn queue_depth(serve: &Serve, url: &str) -> (Option<u64>, Option<u64>) {
    let status = serve.get("/status.json", &[]);
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let shown = status["forward_targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|target| target["target"] == url)
        .and_then(|target| target["queue_depth"].as_u64());
    let series = format!("openflume_forward_queue_depth{{target=\"{url}\"}} ");
    let metrics = serve.get("/metrics", &[]);
    let metric = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok());
    (shown, metric)
}

/// Waits until `/status.json` and `/metrics` both show `url`'s queue depth satisfying `done`.
fn wait_depth(serve: &Serve, url: &str, what: &str, done: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (shown, metric) = queue_depth(serve, url);
        if shown.is_some_and(&done) && metric.is_some_and(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the queue depth is {shown:?} on /status.json, {metric:?} on /metrics"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With `--sink redis://…` the same as over the SQLite log: deploys 1 and 2 are answered 204;
/// deploy 3 gets 500 twice, and deploy 4 comes while it fails (it waits unread: the queue depth
/// counts it). serve is killed (SIGKILL) after the second failure, between two attempts, and
/// restarted on the same Redis with an empty data directory; then every deploy is answered 200.
/// All six arrive, in order, signed, each `webhook-id` its entry's stream id; 1 and 2, whose 2xx
/// were stored before deploy 3 was first sent, are never sent again; deploy 3 is, first.
#[test]
fn every_event_arrives_in_order_through_failures_and_a_kill_with_redis() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(
        FORWARD_SECRET.as_bytes().to_vec(),
        Box::new(|deploy, _| if deploy == 3 { 500 } else { 204 }),
    );
    let forward = format!("{},secret=FWD_SECRET,sources=custom", receiver.url());
    let mut args = sink_args(&redis).to_vec();
    args.extend(["--forward".to_owned(), forward]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("FWD_SECRET", FORWARD_SECRET)];
    let first_data = tempfile::tempdir().unwrap();
    let mut serve = spawn_serve(first_data.path(), &args, &env);
    for n in 1..=3 {
        post(&serve, n);
    }
    let before = receiver.wait_until("two failed attempts of deploy 3", |r| {
        r.iter().filter(|r| r.deploy == 3).count() >= 2
    });
    let retry = serve.wait_for_said(WAIT, |l| l.contains("failed (attempt 2)"));
    assert!(retry.contains("HTTP 500"), "{retry}");
    // Between two attempts: the second failure and its backoff are stored in Redis.
    wait_stored_in_redis(&redis, &receiver.url(), "the second failure", |s| {
        s.attempts == 2 && s.next_attempt_at.is_some()
    });
    // Deploy 4 waits behind deploy 3, unread: 3 in the queue, 4 (and the logs since) after it.
    post(&serve, 4);
    wait_depth(
        &serve,
        &receiver.url(),
        "deploys 3 and 4 waiting",
        |depth| depth >= 2,
    );
    let mut stderr = serve.stderr_lines();
    serve.kill();
    assert!(delivered(&before, 1) && delivered(&before, 2));
    assert!(!delivered(&before, 4), "deploy 4 went before deploy 3");

    // Another machine, as far as serve can tell: a new data directory, the same stream.
    receiver.set_policy(Box::new(|_, _| 200));
    let second_data = tempfile::tempdir().unwrap();
    let mut serve = spawn_serve(second_data.path(), &args, &env);
    for n in 5..=6 {
        post(&serve, n);
    }
    let all = receiver.wait_until("deploys 1 to 6 delivered", |r| {
        (1..=6).all(|n| delivered(r, n))
    });
    assert_in_order(&all);
    let ids = deploy_ids(&redis);
    for request in &all {
        assert_eq!(
            Some(&request.event_id),
            ids.get(&request.deploy),
            "webhook-id (verified equal to the body's event_id) is the stream id: {request:?}"
        );
    }
    let after = &all[before.len()..];
    assert!(
        after.iter().all(|r| r.deploy >= 3),
        "a delivered event was sent again after the restart: {after:?}"
    );
    assert_eq!(after[0].deploy, 3, "the failing delivery resumes first");
    for n in 4..=6 {
        assert_eq!(all.iter().filter(|r| r.deploy == n).count(), 1, "{all:?}");
    }
    wait_stored_in_redis(&redis, &receiver.url(), "deploy 6 delivered", |s| {
        s.delivered_through == position(&ids[&6]) && s.attempts == 0
    });
    wait_depth(&serve, &receiver.url(), "nothing waiting", |depth| {
        depth == 0
    });
    stderr.extend(serve.stderr_lines());
    // The forwarder's logs reach the firehose: the stream (the second retry's may have been on
    // its way at the kill, stderr first).
    let retries = stream_logs(&redis, "forward.retry");
    assert!(!retries.is_empty(), "the retries are in the stream");
    assert_eq!(text(&retries[0]["log"]["detail"]["event_id"]), ids[&3]);
    let stream: Vec<String> = redis
        .entries(STREAM)
        .iter()
        .map(|(_, item)| item.to_string())
        .collect();
    assert_no_secret(&stderr);
    assert_no_secret(&stream);
    // Nothing went to the SQLite log in --data.
    assert!(
        tail(first_data.path()).is_empty(),
        "items in the log in --data"
    );
}

/// With `--sink redis://…`: a 410 disables its target (an error on stderr and in the stream,
/// naming it and the event's stream id), stored in Redis, so nothing more is sent to it after a
/// restart either; the healthy target beside it gets every event.
#[test]
fn a_410_disables_the_target_for_good_with_redis() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let gone = Receiver::start(FORWARD_SECRET.as_bytes().to_vec(), Box::new(|_, _| 410));
    let healthy = Receiver::start(FORWARD_SECRET.as_bytes().to_vec(), Box::new(|_, _| 200));
    let healthy_target = format!("{},types=deploys", healthy.url());
    let mut args = sink_args(&redis).to_vec();
    args.extend([
        "--forward".to_owned(),
        gone.url(),
        "--forward".to_owned(),
        healthy_target,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("OPENFLUME_FORWARD_SECRET", FORWARD_SECRET)];
    let mut serve = spawn_serve(data.path(), &args, &env);
    for n in 1..=3 {
        post(&serve, n);
    }
    let line = serve.wait_for_said(WAIT, |l| l.contains("410 Gone"));
    assert!(
        line.contains(&gone.url()) && line.contains("disabled"),
        "{line}"
    );
    healthy.wait_until("deploys 1 to 3 at the healthy target", |r| {
        (1..=3).all(|n| delivered(r, n))
    });
    let refused = gone.received();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].verified, Ok(()));
    assert_eq!(refused[0].event_id, deploy_ids(&redis)[&1]);
    // The error log comes before the state that acts on it: kill once the state is stored.
    wait_stored_in_redis(&redis, &gone.url(), "the disabled target", |s| s.disabled);
    let disabled = stream_logs(&redis, "forward.disabled");
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["log"]["level"], "error");
    assert_eq!(
        text(&disabled[0]["log"]["detail"]["event_id"]),
        refused[0].event_id
    );
    assert_eq!(disabled[0]["log"]["detail"]["target"], gone.url());
    let mut stderr = serve.stderr_lines();
    serve.kill();

    // Disabled across the restart: said so at the start, and nothing sent.
    let mut serve = spawn_serve(data.path(), &args, &env);
    serve.wait_for_said(WAIT, |l| l.contains("is disabled (it answered 410 Gone)"));
    post(&serve, 4);
    healthy.wait_until("deploy 4 at the healthy target", |r| delivered(r, 4));
    assert_eq!(gone.received().len(), 1);
    assert_in_order(&healthy.received());
    let ids = deploy_ids(&redis);
    for request in healthy.received() {
        assert_eq!(Some(&request.event_id), ids.get(&request.deploy));
    }
    stderr.extend(serve.stderr_lines());
    assert_no_secret(&stderr);
}

/// With `--sink redis://…`, Redis restarting (SIGKILL, then up again on its append-only file)
/// between two deliveries: the target finds the stream again and delivers what came after,
/// once, in order, and the first delivery is not sent again.
#[test]
fn forwarding_carries_on_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(FORWARD_SECRET.as_bytes().to_vec(), Box::new(|_, _| 200));
    let mut args = sink_args(&redis).to_vec();
    args.extend(["--forward".to_owned(), receiver.url()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("OPENFLUME_FORWARD_SECRET", FORWARD_SECRET)];
    let mut serve = spawn_serve(data.path(), &args, &env);
    post(&serve, 1);
    receiver.wait_until("deploy 1 delivered", |r| delivered(r, 1));
    wait_stored_in_redis(&redis, &receiver.url(), "deploy 1's 2xx", |s| {
        s.delivered_through == position(&deploy_ids(&redis)[&1])
    });
    redis.restart();
    // Answered once the sink has appended it again, on a new connection.
    post(&serve, 2);
    let all = receiver.wait_until("deploy 2 delivered", |r| delivered(r, 2));
    assert_in_order(&all);
    assert_eq!(all.iter().filter(|r| r.deploy == 1).count(), 1, "{all:?}");
    let ids = deploy_ids(&redis);
    for request in &all {
        assert_eq!(Some(&request.event_id), ids.get(&request.deploy));
    }
    wait_stored_in_redis(&redis, &receiver.url(), "deploy 2's 2xx", |s| {
        s.delivered_through == position(&ids[&2])
    });
    assert_no_secret(&serve.stderr_lines());
}

/// With `--sink redis://…`, a state that Redis refuses to store (the hash replaced by a string:
/// `HSET` fails with WRONGTYPE) holds the target: a warning says so, the event after the
/// delivered one is not sent, and once the state can be stored again it goes, once.
#[test]
fn nothing_is_sent_past_a_state_redis_did_not_store() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(FORWARD_SECRET.as_bytes().to_vec(), Box::new(|_, _| 200));
    let mut args = sink_args(&redis).to_vec();
    args.extend(["--forward".to_owned(), receiver.url()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("OPENFLUME_FORWARD_SECRET", FORWARD_SECRET)];
    let mut serve = spawn_serve(data.path(), &args, &env);
    post(&serve, 1);
    receiver.wait_until("deploy 1 delivered", |r| delivered(r, 1));
    let ids = deploy_ids(&redis);
    wait_stored_in_redis(&redis, &receiver.url(), "deploy 1's 2xx", |s| {
        s.delivered_through == position(&ids[&1])
    });
    let key = format!("{STREAM}:forward");
    let mut conn = redis.connection();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .query(&mut conn)
        .unwrap();
    post(&serve, 2);
    post(&serve, 3);
    let warning = serve.wait_for_said(WAIT, |l| l.contains("cannot store its state"));
    assert!(warning.contains("WRONGTYPE"), "{warning}");
    // Deploy 2 was delivered, its state refused: deploy 3 waits.
    receiver.wait_until("deploy 2 delivered", |r| delivered(r, 2));
    assert!(
        receiver.received().iter().all(|r| r.deploy != 3),
        "deploy 3 went before deploy 2's state was stored: {:?}",
        receiver.received()
    );
    let () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    let all = receiver.wait_until("deploy 3 delivered", |r| delivered(r, 3));
    assert_in_order(&all);
    for n in 1..=3 {
        assert_eq!(all.iter().filter(|r| r.deploy == n).count(), 1, "{all:?}");
    }
    let ids = deploy_ids(&redis);
    wait_stored_in_redis(&redis, &receiver.url(), "deploy 3's 2xx", |s| {
        s.delivered_through == position(&ids[&3])
    });
    let failed = stream_logs(&redis, "forward.store_failed");
    assert_eq!(
        failed.len(),
        1,
        "one warning for the whole outage: {failed:?}"
    );
    assert_no_secret(&serve.stderr_lines());
}
