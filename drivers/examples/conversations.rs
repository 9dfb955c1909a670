//! # One worker per conversation
//!
//! The shape of a bot that keeps one agent session per Slack thread (issue 16). A dispatcher
//! reads the firehose and routes each event by `meta.conversation_key` to a worker of its own: a
//! smol task with a bounded queue, started on the conversation's first event and retired after
//! a quiet spell. Keys are stable and versioned (see `openflume_proto::conversation`):
//! `slack:v1:<team>:<channel>:<thread_ts or ts>` (a top-level message starts a thread, so its
//! own `ts` keys it and its replies share it), `slack:v1:<team>:<channel>` for a slash command,
//! `github:v1:owner:<owner>:repo:<repo>:issue:<n>`, `discord:v1:<guild or @me>:<channel>`.
//! Socket Mode and the webhook ingress give the same key for the same thread, so both land in
//! one worker. Events without a key (a `tokens_revoked`, a cron tick) go to a default handler.
//!
//! - **Why a worker per conversation**: one owner of the session's state (here a counter; in a
//!   bot, the agent's history), events handled in arrival order, conversations side by side.
//! - **Why back-pressure**: the stream is `Overflow::Backpressure` and worker queues are
//!   bounded, so nothing is dropped and memory stays bounded. A full queue makes the dispatcher
//!   wait, then the flume, then Slack (its acks and the webhook's 200 wait until the dispatcher
//!   has taken the event: taken, not yet handled, so a bot that must survive a crash stores it
//!   first, see `ItemStream::holds_until_commit`). The price: one stuck conversation slows them
//!   all; hand long work off.
//! - **Idle retirement**: a worker that gets nothing for `--idle-seconds` (default 2) asks the
//!   dispatcher to retire it, saying how many events it handled. The dispatcher agrees only if it
//!   has sent no more than that (else one is on its way and the worker stays), and then drops the
//!   queue, so a later event starts a fresh worker and never overtakes one still queued.
//!
//! Offline, against the Slack simulator and a local webhook ingress. It stops after
//! `--demo-seconds` (default: twice the idle period plus 0.5 s, so the first workers retire, a
//! fresh one starts, and it is still there when the flume closes) or on Ctrl-C, then closes the
//! flume and lets every worker drain:
//!
//! ```text
//! cargo run -p openflume --example conversations -- [--demo-seconds 4.5] [--idle-seconds 2]
//! ```

// A demo: it panics with a message when the simulator or the flume cannot start.
#![allow(clippy::expect_used)]

use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt, future};
use openflume::{Flume, ItemStream, Overflow, Source};
use openflume_proto::slack::SlackConfig;
use openflume_proto::webhook::{WebhookConfig, sign_slack};
use openflume_proto::{Event, Item, Level};
use openflume_sim::{SlackAction, SlackSim, SlackSimConfig};
use serde_json::{Value, json};
use smol::channel::{Sender, bounded, unbounded};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Events queued per worker.
const WORKER_QUEUE: usize = 16;
const SIGNING_SECRET: &str = "conversations-demo-signing-secret";
/// Two threads, `(channel, thread_ts)`; the simulator's team, so both transports key them alike.
const THREAD_A: (&str, &str) = ("C0SIMGEN01", "1764100001.000100");
const THREAD_B: (&str, &str) = ("C0SIMDEP01", "1764100002.000200");
const TEAM: &str = "T0SIMTEAM1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        let value: f64 = args.get(at + 1)?.parse().ok()?;
        Duration::try_from_secs_f64(value).ok()
    };
    let idle = seconds("--idle-seconds").unwrap_or(Duration::from_secs(2));
    let demo = seconds("--demo-seconds").unwrap_or(idle * 2 + Duration::from_millis(500));
    smol::block_on(run(Instant::now() + demo, idle));
}

async fn run(end: Instant, idle: Duration) {
    let slack = SlackSim::start(SlackSimConfig::default())
        .await
        .expect("Slack simulator");
    let mut socket_mode = SlackConfig::new(slack.app_token());
    socket_mode.api_base = slack.api_url();
    let webhooks = WebhookConfig {
        slack_signing_secret: Some(SIGNING_SECRET.into()),
        ..WebhookConfig::default()
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let flume = Flume::builder()
        .source(Source::slack(socket_mode))
        .source(Source::webhooks(webhooks, any_port))
        .min_log_level(Level::Warn)
        .build();
    // Attached before the start so it sees every event, and read from the start on so it
    // never holds the start up.
    let items = flume.stream(64, Overflow::Backpressure);
    let running = flume.start().expect("valid source configuration");
    let dispatcher = smol::spawn(dispatch(items, idle));
    running
        .started()
        .await
        .expect("Socket Mode connected, ingress listening");
    let ingress = running.local_addr("webhooks").expect("the ingress listens");

    let script = async {
        traffic(&slack, ingress, idle).await;
        future::pending().await
    };
    let deadline = async {
        smol::Timer::at(end).await;
    };
    future::or(script, future::or(deadline, ctrl_c())).await;
    println!("stopping: closing the flume, then every worker drains");
    running.close().await;
    dispatcher.await;
}

/// Threads by Socket Mode and by webhook, a pause long enough for every worker to retire, then
/// more replies in thread A, which start a fresh worker.
async fn traffic(slack: &SlackSim, ingress: SocketAddr, idle: Duration) {
    let replies = |(channel, thread_ts): (&str, &str), count| SlackAction::ThreadReplies {
        channel: channel.to_owned(),
        thread_ts: thread_ts.to_owned(),
        count,
    };
    slack.inject(SlackAction::Messages(2)); // two top-level messages: two conversations
    slack.inject(replies(THREAD_A, 3));
    slack.inject(replies(THREAD_B, 2));
    slack.inject(SlackAction::SlashCommand); // keyed by its channel alone
    smol::Timer::after(Duration::from_millis(300)).await;
    for (n, text) in ["thread A by the Events API", "same thread, same worker"]
        .iter()
        .enumerate()
    {
        let ts = format!("1764100001.00090{n}");
        let reply = json!({"type": "message", "channel": THREAD_A.0, "thread_ts": THREAD_A.1,
            "ts": ts, "user": "U0SIMGRC01", "text": text});
        post(ingress, &format!("EvDEMOWEB{n}"), reply).await;
    }
    // No channel, so no conversation: the default handler takes it.
    let revoked = json!({"type": "tokens_revoked", "tokens": {"oauth": ["U0SIMADA01"]}});
    post(ingress, "EvDEMOREVOKE", revoked).await;
    smol::Timer::after(idle + Duration::from_millis(700)).await;
    slack.inject(replies(THREAD_A, 2));
}

/// POSTs `event` as a signed Events API request, as Slack does, and prints the status line: a
/// 200 comes only once the dispatcher holds the event.
async fn post(ingress: SocketAddr, event_id: &str, event: Value) {
    let body = json!({"type": "event_callback", "team_id": TEAM, "event_id": event_id,
        "event": event})
    .to_string();
    let now = jiff::Timestamp::now().as_second();
    let signature = sign_slack(SIGNING_SECRET.as_bytes(), now, body.as_bytes());
    let request = format!(
        "POST /channels/slack/events HTTP/1.1\r\nHost: {ingress}\r\n\
         Content-Type: application/json\r\nX-Slack-Request-Timestamp: {now}\r\n\
         X-Slack-Signature: {signature}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    let exchange = async {
        let mut stream = smol::net::TcpStream::connect(ingress).await?;
        stream.write_all(request.as_bytes()).await?;
        stream.read_to_string(&mut answer).await
    };
    match exchange.await {
        Ok(_) => println!(
            "webhook {event_id}: {}",
            answer.lines().next().unwrap_or_default()
        ),
        Err(error) => println!("webhook {event_id}: {error}"),
    }
}

async fn ctrl_c() {
    match async_signal::Signals::new([async_signal::Signal::Int]) {
        Ok(mut signals) => drop(signals.next().await),
        Err(_) => future::pending().await,
    }
}

struct Worker {
    id: u32,
    queue: Sender<Event>,
    /// Events sent to it: it may retire once it has handled as many.
    sent: u64,
    task: smol::Task<()>,
}

enum Next {
    Item(Option<Item>),
    /// A worker asks to retire: its key and how many events it handled.
    Retire(String, u64),
}

/// Routes each event to its conversation's worker until the flume closes, then drains them.
async fn dispatch(mut items: ItemStream, idle: Duration) {
    let (retire_tx, retire_rx) = unbounded();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut conversations = HashSet::new();
    let (mut started, mut retired, mut keyless) = (0, 0, 0);
    loop {
        let retire = async {
            match retire_rx.recv().await {
                Ok((key, handled)) => Next::Retire(key, handled),
                Err(_) => future::pending().await, // never: this task holds a sender
            }
        };
        match future::or(retire, async { Next::Item(items.next().await) }).await {
            Next::Retire(key, handled) => {
                // Otherwise an event is on its way to it: it stays.
                if workers.get(&key).is_some_and(|w| w.sent == handled)
                    && let Some(worker) = workers.remove(&key)
                {
                    drop(worker.queue); // its `recv` fails now: it stops
                    worker.task.await;
                    retired += 1;
                    println!("[{key}] worker w{} retired after {idle:?} idle", worker.id);
                }
            }
            Next::Item(Some(Item::Event(event))) => {
                let Some(key) = event.meta.get("conversation_key").cloned() else {
                    keyless += 1;
                    println!("[no conversation] {}", describe(&event));
                    continue;
                };
                conversations.insert(key.clone());
                let worker = workers.entry(key.clone()).or_insert_with(|| {
                    started += 1;
                    spawn_worker(key, started, idle, retire_tx.clone())
                });
                worker.sent += 1;
                // Waits while the worker's queue is full: back-pressure, down to the sources.
                if worker.queue.send(event).await.is_err() {
                    println!("a worker stopped early; its event is lost");
                }
            }
            Next::Item(Some(Item::Log(log))) => println!("{}: {}", log.source, log.message),
            // A kind of item newer than this example (`Item` is `#[non_exhaustive]`).
            Next::Item(Some(_)) => {}
            Next::Item(None) => break, // the flume closed; all it delivered is queued
        }
    }
    let drained = workers.len();
    for (key, worker) in workers.drain() {
        drop(worker.queue); // the worker handles what it holds, then stops
        worker.task.await;
        println!("[{key}] worker w{} drained and stopped", worker.id);
    }
    println!(
        "summary: conversations {}, events without a key {keyless}; workers: {started} started, \
         {retired} retired idle, {drained} drained at shutdown",
        conversations.len()
    );
}

/// A conversation's worker: handles its events in order, and asks to retire when idle.
fn spawn_worker(key: String, id: u32, idle: Duration, retire: Sender<(String, u64)>) -> Worker {
    let (queue, events) = bounded::<Event>(WORKER_QUEUE);
    println!("[{key}] worker w{id} started");
    let task = smol::spawn(async move {
        let mut handled = 0; // the session's state; an agent would keep its history here
        loop {
            let idle_timer = async {
                smol::Timer::after(idle).await;
                None
            };
            match future::or(async { Some(events.recv().await) }, idle_timer).await {
                Some(Ok(event)) => {
                    handled += 1;
                    println!("[{key}] #{handled} {}", describe(&event));
                    smol::Timer::after(Duration::from_millis(20)).await; // the agent's turn
                }
                Some(Err(_)) => break, // queue dropped and empty: retired, or the flume closed
                None => drop(retire.send((key.clone(), handled)).await),
            }
        }
    });
    Worker {
        id,
        queue,
        sent: 0,
        task,
    }
}

/// The event's type and its text: a message's, a command's argument, a button's action.
fn describe(event: &Event) -> String {
    let data = event.data.parse().unwrap_or(Value::Null);
    let text = [
        &data["event"]["text"],
        &data["text"],
        &data["actions"][0]["action_id"],
    ]
    .into_iter()
    .find_map(Value::as_str)
    .or(data["event"]["type"].as_str())
    .unwrap_or_default();
    format!("{} {text}", event.event_type)
}
