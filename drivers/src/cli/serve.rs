//! `openflume serve`: the sources into the durable log, and one port that serves the webhook
//! channels, `/healthz`, `/readyz`, the hub (`/ws`), `/metrics` and the status page (`/`,
//! `/status.js`, `/status.json`).
//!
//! One port, one HTTP parser: the webhook ingress machine reads every request, answers the
//! channels itself and hands the other paths off (`Output::Handoff`); its driver gives those
//! connections, with the request and the bytes read after it, to [`Server::handle`].
//!
//! With a hub token, `/ws`, `/metrics` and `/status.json` want it (`Authorization: Bearer`, or
//! for `/ws` the subprotocol a browser can send, see [`hub_client::token_from_protocols`]);
//! `/healthz`, `/readyz`, the page and its script do not.
//!
//! Who holds an event: a source's item goes to the log through `Flume::log_into` (a
//! back-pressure stream that holds until the append is committed and fsynced), so an upstream
//! acknowledgement (a Slack ack, GitHub's validators, a webhook's 200) waits for the log. Hub
//! clients read only what the log committed ([`hub_client`](super::hub_client)): the newest
//! items from the [`hub_feed`](super::hub_feed)'s bounded window of them, anything older from the
//! log itself, so a client that reconnects after its last id misses nothing.
//!
//! With `--sink redis://…/STREAM` the Redis Stream takes the log's place for the items, the
//! cursors, the hub and `--forward` (see [`crate::redis`]; the targets' states are the hash
//! `STREAM:forward`); the data directory's log stays empty.

use super::args::{LogLevel, ServeArgs};
use super::hub_client;
use super::hub_feed::HubFeed;
use super::listen::{self, report};
use super::log::default_data_dir;
use super::ops::Ops;
use super::redis_sink::RedisSinkPlan;
use super::{UsageError, flags, metrics, status_page};
use crate::cursors::stored_cursors;
use crate::serve::{HandedOff, HandoffHandler};
use crate::{Running, Source};
use async_io::Async;
use async_signal::{Signal, Signals};
use futures_lite::{AsyncWriteExt, StreamExt, future};
use openflume_log::{EventLog, LogOptions};
use openflume_proto::http::{ReceivedRequest, encode_response};
use openflume_proto::webhook::{SOURCE as WEBHOOKS, WebhookIngress};
use openflume_proto::{Level, Status};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The paths served beside the webhook channels.
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const HUB: &str = "/ws";
const METRICS: &str = "/metrics";
const STATUS_PAGE: &str = "/";
const STATUS_SCRIPT: &str = "/status.js";
const STATUS_JSON: &str = "/status.json";
/// Items between the sources and the log's writer: enough for a full group while the last one
/// commits (the append benchmark's groups hold a few thousand items), and no more, since each
/// waiting item is memory (4 096 made serve peak at 36 MB in that benchmark, 1 024 at 21 MB,
/// at the same CPU per event).
const LOG_STREAM: usize = 1024;
/// After SIGTERM, how long hub clients get to take their close frame, and the sources to stop.
const STOP_GRACE: Duration = Duration::from_millis(1500);
/// A client gets this long to take a health answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handed-off connections share.
pub(crate) struct Server {
    pub(crate) log: EventLog,
    /// With `--sink redis://…`: the stream the hub reads instead of the log.
    pub(crate) redis_hub: Option<Arc<crate::redis::hub::RedisHub>>,
    /// The hub's bearer token, kept as its HMAC so it is compared in constant time.
    token: Option<hub_client::Token>,
    /// Set once the flume started: `/readyz` answers 503 until then.
    running: OnceLock<Arc<Running>>,
    /// The hub sessions' configuration, named after this instance.
    pub(crate) hub: openflume_proto::hub::HubConfig,
    /// Live items read and rendered once for every hub session ([`HubFeed::follow`] runs while
    /// `run` does).
    pub(crate) feed: Arc<HubFeed>,
    /// Set at SIGTERM; `stopped` wakes the hub clients to close with 1001.
    pub(crate) stopping: AtomicBool,
    pub(crate) stopped: event_listener::Event,
    /// Hub clients still connected, and a wake when one leaves.
    pub(crate) clients: AtomicUsize,
    pub(crate) left: event_listener::Event,
    /// What `/metrics` and `/status.json` read besides the flume and the log.
    pub(crate) ops: Ops,
    /// `--allow-partial`: ready while at least one source is connected, not only all of them.
    allow_partial: bool,
}

impl Server {
    /// Serves one handed-off connection.
    async fn handle(self: Arc<Server>, handed: HandedOff) {
        let HandedOff {
            mut stream,
            request,
            leftover,
        } = handed;
        let path = request.target.split(['?', '#']).next().unwrap_or_default();
        match path {
            HUB => {
                if let Err(refusal) = self.authorize(&request, Via::HeaderOrProtocol) {
                    answer(&mut stream, refusal).await;
                    return;
                }
                hub_client::serve(self, stream, &request, leftover).await;
            }
            _ if request.method != "GET" && request.method != "HEAD" => {
                let refusal = Answer::text(405, "Method Not Allowed", "use GET\n")
                    .header("Allow", "GET, HEAD");
                answer(&mut stream, refusal).await;
            }
            HEALTHZ => answer(&mut stream, Answer::text(200, "OK", "ok\n")).await,
            READYZ => {
                let answer_ = self.readiness();
                answer(&mut stream, answer_).await;
            }
            STATUS_PAGE | STATUS_SCRIPT => {
                let (content_type, body) = match path {
                    STATUS_PAGE => ("text/html; charset=utf-8", status_page::HTML),
                    _ => ("text/javascript; charset=utf-8", status_page::SCRIPT),
                };
                let page = Answer::typed(content_type, body)
                    .header(
                        "Content-Security-Policy",
                        status_page::CONTENT_SECURITY_POLICY,
                    )
                    .header("X-Content-Type-Options", "nosniff")
                    .header("Referrer-Policy", "no-referrer");
                answer(&mut stream, page).await;
            }
            METRICS | STATUS_JSON => {
                if let Err(refusal) = self.authorize(&request, Via::Header) {
                    answer(&mut stream, refusal).await;
                    return;
                }
                let running = self.running.get().map(|running| &**running);
                let snapshot = self.ops.snapshot(&self.log, running, &self.hub.instance_id);
                let reply = match path {
                    METRICS => Answer::typed(metrics::CONTENT_TYPE, &metrics::render(&snapshot)),
                    _ => {
                        let mut status = status_page::status_json(&snapshot);
                        if self.redis_hub.is_some() {
                            status = without_log_position(&status);
                        }
                        Answer::typed("application/json", &status)
                    }
                };
                answer(&mut stream, reply).await;
            }
            _ => answer(&mut stream, Answer::text(404, "Not Found", "not found\n")).await,
        }
    }

    /// 401 unless the request carries the hub's bearer token (or none is configured), in
    /// `Authorization`, or for `via` [`Via::HeaderOrProtocol`] in `Sec-WebSocket-Protocol`.
    /// Either way it is compared in constant time ([`hub_client::Token::matches`]) and never
    /// logged or echoed.
    fn authorize(&self, request: &ReceivedRequest, via: Via) -> Result<(), Answer> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        // The scheme's name is case-insensitive (RFC 9110 §11.1): `bearer TOKEN` is as good.
        let bearer = request
            .header("Authorization")
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let given = match via {
            Via::Header => bearer,
            Via::HeaderOrProtocol => bearer.or_else(|| {
                hub_client::token_from_protocols(request.header("Sec-WebSocket-Protocol"))
            }),
        };
        match given {
            Some(given) if token.matches(&given) => Ok(()),
            _ => Err(
                Answer::text(401, "Unauthorized", "a valid bearer token is required\n")
                    .header("WWW-Authenticate", "Bearer"),
            ),
        }
    }

    /// 200 when every source is connected, else 503; the body lists each source's status, and
    /// each part's of a source that has parts (`"parts"`: a Discord gateway's shards).
    fn readiness(&self) -> Answer {
        let statuses = self
            .running
            .get()
            .map(|running| running.statuses())
            .unwrap_or_default();
        let connected = |s: &&crate::SourceStatus| s.status == Status::Connected;
        let enough = if self.allow_partial {
            statuses.iter().any(|s| connected(&s))
        } else {
            statuses.iter().all(|s| connected(&s))
        };
        let ready = !statuses.is_empty() && !self.stopping.load(Ordering::Acquire) && enough;
        let running = self.running.get();
        let sources: Vec<serde_json::Value> = statuses
            .iter()
            .map(|s| {
                let mut source = serde_json::json!({
                    "source": s.source,
                    "status": s.status.to_string(),
                    "reason": s.reason,
                });
                // A Discord gateway's shards, each with its own status.
                let parts = running.map(|r| r.part_statuses(&s.source));
                if let Some(parts) = parts.filter(|parts| !parts.is_empty()) {
                    source["parts"] = serde_json::json!(parts);
                }
                source
            })
            .collect();
        let partial = ready && !statuses.iter().all(|s| connected(&s));
        let body = serde_json::json!({ "ready": ready, "partial": partial, "sources": sources })
            .to_string()
            + "\n";
        let (status, reason) = if ready {
            (200, "OK")
        } else {
            (503, "Service Unavailable")
        };
        let mut answer = Answer::text(status, reason, &body);
        answer.content_type = "application/json";
        answer
    }
}

/// `/status.json` with the hub on a Redis Stream: the SQLite log's last id (0, nothing is
/// appended there) means nothing to the hub, so it is `null`, and the status page then asks the
/// hub for new items only instead of replaying the whole stream.
fn without_log_position(status: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(status) else {
        return status.to_owned();
    };
    if let Some(log) = value.get_mut("log").and_then(|log| log.as_object_mut()) {
        log.insert("last_event_id".to_owned(), serde_json::Value::Null);
    }
    value.to_string() + "\n"
}

/// Where a request may carry the hub token.
#[derive(Clone, Copy)]
enum Via {
    /// `Authorization: Bearer TOKEN` only.
    Header,
    /// That, or a browser's WebSocket subprotocol (`/ws`).
    HeaderOrProtocol,
}

/// A short answer on a handed-off connection, which then closes.
pub(crate) struct Answer {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

impl Answer {
    pub(crate) fn text(status: u16, reason: &'static str, body: &str) -> Answer {
        Answer {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// A 200 with this content type.
    pub(crate) fn typed(content_type: &'static str, body: &str) -> Answer {
        Answer {
            content_type,
            ..Answer::text(200, "OK", body)
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Answer {
        self.headers.push((name, value));
        self
    }
}

/// Writes `answer` (with `Connection: close`) and closes.
pub(crate) async fn answer(stream: &mut Async<TcpStream>, answer: Answer) {
    let mut headers = vec![
        ("Content-Type", answer.content_type),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
    ];
    headers.extend(answer.headers.iter().copied());
    let Ok(bytes) = encode_response(
        answer.status,
        answer.reason,
        &headers,
        answer.body.as_bytes(),
    ) else {
        return;
    };
    let write = async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.flush().await;
    };
    future::or(write, async {
        async_io::Timer::after(ANSWER_TIMEOUT).await;
    })
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    // Give the client a moment to read the answer before the socket goes.
    async_io::Timer::after(Duration::from_millis(50)).await;
}

/// `openflume serve`: the flags checked, then [`run`].
pub(crate) fn main(
    args: &mut ServeArgs,
    matches: Option<&clap::ArgMatches>,
) -> Result<i32, UsageError> {
    flags::read_secret_files(&mut args.source)?;
    flags::read_renamed_vars(&mut args.source, |warning| {
        report(format_args!("{warning}"));
    });
    if let Some(matches) = matches {
        flags::warn_idle_flags(&args.source, "serve", matches, |warning| {
            report(format_args!("{warning}"));
        });
    }
    // Before anything else reads the sources or the data directory: --demo replaces both.
    let demo = if args.demo {
        Some(super::demo::for_serve(args)?)
    } else {
        None
    };
    let Some(addr) = args.source.http else {
        return Err(UsageError::flag("--http", "an address is required"));
    };
    let token = hub_token(args.token_file.as_deref())?;
    let hub = hub_client::config_from_env(format!("openflume-{:016x}", crate::clock::os_seed()))?;
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(UsageError::flag(
            "--http",
            format!(
                "{addr} is not a loopback address: set a hub token (--token-file FILE or \
                 OPENFLUME_HUB_TOKEN) before serving it"
            ),
        ));
    }
    let Some(dir) = args.data.clone().or_else(default_data_dir) else {
        return Err(UsageError::flag(
            "--data",
            "no default: neither XDG_DATA_HOME nor HOME is set",
        ));
    };
    let forward_targets = super::forward::targets(args)?;
    let redis = args.redis_sink.plan()?;
    // The sources start where the log's cursors say the kept items end.
    let retention = LogOptions {
        max_age: args.retention_age,
        max_bytes: args.retention_size,
        ..LogOptions::default()
    };
    let (log, resume) =
        match EventLog::open(&dir, retention).and_then(|log| Ok((stored_cursors(&log)?, log))) {
            Ok((resume, log)) => (log, resume),
            Err(error) => {
                report(format_args!("{error}"));
                return Ok(1);
            }
        };
    // With a Redis sink, its cursors: they go wherever the shard range goes.
    let (resume, redis_hub) = match &redis {
        None => (resume, None),
        Some(sink) => {
            let started = smol::block_on(async {
                let resume = sink.stored_cursors().await?;
                let hub = crate::redis::hub::RedisHub::start(sink.target.clone())
                    .await
                    .map_err(|error| sink.failed(&error))?;
                Ok::<_, String>((resume, hub))
            });
            match started {
                Ok((resume, hub)) => (resume, Some(hub)),
                Err(error) => {
                    report(format_args!("{error}"));
                    return Ok(1);
                }
            }
        }
    };
    let mut webhooks = listen::webhook_config(&args.source)?;
    webhooks.resume = listen::redelivery_keys(&resume);
    webhooks.handoff_paths = [
        HEALTHZ,
        READYZ,
        HUB,
        METRICS,
        STATUS_PAGE,
        STATUS_SCRIPT,
        STATUS_JSON,
    ]
    .map(str::to_owned)
    .to_vec();
    WebhookIngress::new(webhooks.clone()).map_err(|e| super::flags::misuse_error(WEBHOOKS, e))?;
    let channels = webhooks.slack_signing_secret.is_some()
        || webhooks.github_secret.is_some()
        || !webhooks.senders.is_empty();
    let mut sources = listen::upstream(&args.source, &resume)?;
    if sources.is_empty() && !channels {
        return Err(UsageError(
            "no source enabled: set DISCORD_BOT_TOKEN (or --discord-token), SLACK_APP_TOKEN (or \
             --slack-app-token), GITHUB_TOKEN (or --github-token), give --cron EXPR, or set a \
             webhook secret"
                .to_owned(),
        ));
    }
    let extra_roots = listen::network(&args.source)?;
    let feed = Arc::new(HubFeed::new(log.committed_id().0));
    let server = Arc::new(Server {
        log,
        redis_hub,
        feed,
        token,
        running: OnceLock::new(),
        hub,
        stopping: AtomicBool::new(false),
        stopped: event_listener::Event::new(),
        clients: AtomicUsize::new(0),
        left: event_listener::Event::new(),
        ops: Ops::new(),
        allow_partial: args.source.allow_partial,
    });
    let handler: HandoffHandler = {
        let server = server.clone();
        Arc::new(move |handed| {
            smol::spawn(server.clone().handle(handed)).detach();
        })
    };
    sources.push(Source::webhooks(webhooks, addr).with_handoff(handler));
    let min_level = match args.log_level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error | LogLevel::Off => Level::Error,
    };
    // Started before the flume: a new target forwards every event of this run. With a Redis
    // sink it reads the stream, and keeps its targets' states beside it.
    let forward_options = super::forward::options(min_level, extra_roots.clone());
    let started = match (&server.redis_hub, &redis) {
        (Some(hub), Some(sink)) => {
            let store = crate::redis::forward::RedisForward::new(hub.clone(), sink.max_len());
            smol::block_on(crate::Forwarder::start_on(
                Arc::new(store),
                forward_targets,
                forward_options,
            ))
            .map_err(|error| match error {
                crate::ForwardError::Redis(error) => sink.failed(&error),
                other => other.to_string(),
            })
        }
        _ => crate::Forwarder::start(&server.log, forward_targets, forward_options)
            .map_err(|error| error.to_string()),
    };
    let forwarder = match started {
        Ok(forwarder) => forwarder,
        Err(error) => {
            report(format_args!("{error}"));
            return Ok(1);
        }
    };
    for (target, depth) in forwarder.depth_readers() {
        server.ops.forward.register(&target, depth);
    }
    let redis = redis.map(|sink| (sink, resume));
    let code = smol::block_on(run(
        server,
        sources,
        min_level,
        extra_roots,
        forwarder,
        redis,
    ));
    if let Some(demo) = demo {
        demo.finish();
    }
    Ok(code)
}

/// Where the items go: the log, or a Redis Stream.
enum Sink {
    Log(crate::LogSink),
    Redis(crate::redis::RedisSink),
}

impl Sink {
    /// Attached before the start: the sink holds everything from the first status on.
    fn attach(
        flume: &crate::Flume,
        log: &EventLog,
        redis: Option<(RedisSinkPlan, openflume_proto::Cursors)>,
    ) -> Result<Sink, String> {
        match redis {
            None => flume
                .log_into(log.clone(), LOG_STREAM)
                .map(Sink::Log)
                .map_err(|e| e.to_string()),
            Some((sink, resume)) => flume
                .redis_into(sink.target.clone(), resume, LOG_STREAM, sink.options())
                .map(Sink::Redis)
                .map_err(|e| sink.failed(&e)),
        }
    }

    async fn finished(self) -> Result<u64, String> {
        match self {
            Sink::Log(sink) => sink.finished().await.map_err(|e| e.to_string()),
            Sink::Redis(sink) => sink.finished().await.map_err(|e| e.to_string()),
        }
    }
}

/// The hub token from `--token-file` or `OPENFLUME_HUB_TOKEN` (not both).
fn hub_token(file: Option<&std::path::Path>) -> Result<Option<hub_client::Token>, UsageError> {
    let from_env = std::env::var("OPENFLUME_HUB_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let text = match (file, from_env) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "--token-file and OPENFLUME_HUB_TOKEN are both set: keep one".to_owned(),
            ));
        }
        (None, env) => env,
        (Some(path), None) => {
            let shown = path.display();
            let text = std::fs::read_to_string(path).map_err(|error| {
                UsageError::flag(
                    "--token-file",
                    format!("cannot read {shown}: {}", error.kind()),
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
            if text.trim().is_empty() {
                return Err(UsageError::flag(
                    "--token-file",
                    format!("{shown} is empty"),
                ));
            }
            Some(text)
        }
    };
    Ok(text.map(|t| hub_client::Token::new(t.trim())))
}

async fn run(
    server: Arc<Server>,
    sources: Vec<Source>,
    min_level: Level,
    extra_roots: Vec<Vec<u8>>,
    forwarder: crate::Forwarder,
    redis: Option<(RedisSinkPlan, openflume_proto::Cursors)>,
) -> i32 {
    let mut signals = match Signals::new([Signal::Int, Signal::Term, Signal::Hup]) {
        Ok(signals) => signals,
        Err(error) => {
            report(format_args!("cannot watch signals: {error}"));
            return 1;
        }
    };
    let builder = match super::listen::builder_trusting(extra_roots) {
        Ok(builder) => builder,
        Err(code) => return code,
    };
    let flume = builder
        .sources(sources)
        .min_log_level(min_level)
        .start_timeout(None)
        .build();
    // Following before any hub client can connect; cancelled when this returns.
    let _feed = smol::spawn(server.feed.clone().follow(server.log.clone()));
    // Attached before the start: the log holds everything from the first status on.
    let sink = match Sink::attach(&flume, &server.log, redis) {
        Ok(sink) => sink,
        Err(error) => {
            report(format_args!("{error}"));
            return 1;
        }
    };
    // A sink that stops before the flume closed failed: nothing more can be kept, so serve
    // stops too rather than run on without a log.
    let (sink_failed, failure) = smol::channel::bounded::<()>(1);
    let sink = smol::spawn(async move {
        let result = sink.finished().await;
        if result.is_err() {
            let _ = sink_failed.try_send(());
        }
        result
    });
    let running = match flume.start() {
        Ok(running) => Arc::new(running),
        Err(error) => {
            report(format_args!("{error}"));
            return 1;
        }
    };
    let _ = server.running.set(running.clone());
    if let Some(addr) = running.local_addr(WEBHOOKS) {
        report(format_args!(
            "serving on http://{addr} (status page at /, hub at ws://{addr}{HUB}, metrics at \
             {METRICS})"
        ));
    }
    let signalled = async {
        let signal = signals.next().await;
        let name = match signal {
            Some(Ok(Signal::Term)) => "SIGTERM",
            Some(Ok(Signal::Hup)) => "SIGHUP",
            _ => "SIGINT",
        };
        report(format_args!("stopping on {name}"));
        // A SIGTERM is a restart (a deploy, systemd): the next start resumes Discord's session
        // from the log's cursor.
        name == "SIGTERM"
    };
    let ended = async {
        future::or(
            async {
                running.wait().await;
            },
            async {
                let _ = failure.recv().await;
            },
        )
        .await;
        false
    };
    let keep_sessions = future::or(signalled, ended).await;
    // A delivery in flight is abandoned: its state says to send it again at the next start.
    forwarder.stop().await;
    // Hub clients first: they get 1001 and the id to resume after.
    server.stopping.store(true, Ordering::Release);
    server.stopped.notify(usize::MAX);
    let clients_gone = async {
        loop {
            let left = server.left.listen();
            if server.clients.load(Ordering::Acquire) == 0 {
                break;
            }
            left.await;
        }
    };
    let close = async {
        if keep_sessions {
            running.close_keeping_sessions().await
        } else {
            running.close().await
        }
    };
    let stopping = async {
        future::zip(clients_gone, close).await;
    };
    future::or(stopping, async {
        async_io::Timer::after(STOP_GRACE).await;
    })
    .await;
    drop(running);
    match future::or(async { Some(sink.await) }, async {
        async_io::Timer::after(STOP_GRACE).await;
        None
    })
    .await
    {
        Some(Err(error)) => {
            report(format_args!("the log failed: {error}"));
            1
        }
        _ => 0,
    }
}
