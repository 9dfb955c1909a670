//! # A custom source: an HTTP JSON poller written as a sans-IO machine
//!
//! openflume runs any [`Machine`] under the same driver as its built-in sources. `JsonPoller`
//! below is written from scratch against the `openflume_proto` API alone: every few seconds it
//! asks the driver for `GET <url>` (`Output::Request`), turns each new or changed element of a
//! JSON array (or each new version of any other document) into one event, logs errors and backs
//! off with jitter ([`Backoff`]), and stops on `Input::Shutdown`. It never touches a socket, a
//! clock or a global RNG; [`Source::custom`] hands it to the driver with a seed, unchanged.
//!
//! By default it polls the `/notifications` endpoint of an in-process GitHub simulator that
//! adds one thread a second, so it runs offline:
//!
//! ```text
//! cargo run -p openflume --example custom_source
//! ```
//!
//! Point it at any JSON endpoint (http or https) with `JSON_URL`, an optional bearer token in
//! `JSON_TOKEN`, the poll interval in `JSON_INTERVAL_SECS` (default 2) and the number of events
//! to print before closing in `COUNT` (default 8). Items go to stdout as JSON Lines; an
//! endpoint that fails is retried with backoff (see the `poll.error` logs) and given up on after
//! ten failures in a row.

// A demo: it panics with a message when the simulator or the flume cannot start.
#![allow(clippy::expect_used)]

use openflume::{Flume, Overflow, Source};
use openflume_proto::{
    Backoff, ConfigError, DedupCache, Event, HttpRequest, HttpResponse, IdCounter, Input, Item,
    Level, Log, Machine, Millis, Misuse, MonotonicGuard, Now, Output, RawJson, ReconnectPolicy,
    ReqId, Status, StatusTracker,
};
use openflume_sim::{GithubSim, GithubSimConfig, Scenario};
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

const SOURCE: &str = "json";

/// Polls one URL and emits what is new in it.
struct JsonPoller {
    url: String,
    token: Option<String>,
    interval_ms: u64,
    rng: fastrand::Rng,
    backoff: Backoff,
    clock: MonotonicGuard,
    status: StatusTracker,
    started: bool,
    ids: IdCounter,
    in_flight: Option<ReqId>,
    next_poll: Option<Millis>,
    etag: Option<String>,
    seen: DedupCache<u64>,
    out: VecDeque<Output>,
}

impl JsonPoller {
    fn new(
        url: String,
        token: Option<String>,
        interval_ms: u64,
        seed: u64,
    ) -> Result<Self, Misuse> {
        if openflume_proto::url::Url::parse(&url).is_err() {
            return Err(Misuse::Config(
                ConfigError::Invalid {
                    field: "url",
                    reason: "not an http(s) URL".into(),
                }
                .in_scope(SOURCE),
            ));
        }
        Ok(JsonPoller {
            url,
            token,
            interval_ms: interval_ms.max(100),
            rng: fastrand::Rng::with_seed(seed),
            backoff: Backoff::new(ReconnectPolicy {
                max_attempts: Some(10),
                base_ms: 1000,
                max_ms: 60_000,
            }),
            clock: MonotonicGuard::default(),
            status: StatusTracker::default(),
            started: false,
            ids: IdCounter::default(),
            in_flight: None,
            next_poll: None,
            etag: None,
            seen: DedupCache::new(10_000, u64::MAX),
            out: VecDeque::new(),
        })
    }

    fn poll(&mut self) {
        let req = ReqId(self.ids.next());
        let mut request = HttpRequest::new("GET", self.url.as_str())
            .header("Accept", "application/json")
            .header("User-Agent", "openflume-json-poller-example");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(etag) = &self.etag {
            request = request.header("If-None-Match", etag.as_str());
        }
        self.next_poll = None;
        self.in_flight = Some(req);
        self.out.push_back(Output::Request { req, request });
    }

    fn on_response(&mut self, now: Now, response: HttpResponse) {
        let events = match response.status {
            304 => Vec::new(), // unchanged since the last poll: nothing new
            200..=299 => match self.fresh_events(now, &response) {
                Ok(events) => events,
                Err(error) => return self.on_error(now, "bad JSON".into(), Some(error)),
            },
            status => return self.on_error(now, format!("HTTP {status}"), None),
        };
        if response.status != 304 {
            self.etag = response.header("etag").map(str::to_owned);
        }
        self.backoff.reset();
        self.set_status(Status::Connected, None);
        self.out
            .extend(events.into_iter().map(|event| Output::Emit {
                event,
                confirm: None,
            }));
        self.next_poll = Some(now.mono + self.interval_ms);
    }

    /// An array yields its new or changed elements; any other document yields itself when new.
    fn fresh_events(&mut self, now: Now, response: &HttpResponse) -> Result<Vec<Event>, String> {
        let text = response.body.as_str().ok_or("body is not UTF-8")?;
        let (kind, docs) = match serde_json::from_str::<Vec<Box<RawValue>>>(text) {
            Ok(elements) => ("item", elements),
            Err(_) => {
                let document = RawValue::from_string(text.to_owned()).map_err(|e| e.to_string())?;
                ("document", vec![document])
            }
        };
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        Ok(docs
            .into_iter()
            .filter(|doc| self.seen.insert(hasher.hash_one(doc.get()), now.mono))
            .map(|doc| {
                Event::new(SOURCE, kind, RawJson::from_raw(doc), now.wall)
                    .with_meta("url", &self.url)
            })
            .collect())
    }

    fn on_error(&mut self, now: Now, reason: String, error: Option<String>) {
        let delay = self.backoff.next_delay(&mut self.rng);
        let (level, then, status) = match delay {
            Some(ms) => (
                Level::Warn,
                format!("retrying in {ms} ms"),
                Status::Reconnecting,
            ),
            None => (Level::Error, "giving up".to_owned(), Status::Failed),
        };
        let mut log = Log::new(
            level,
            SOURCE,
            "poll.error",
            format!("{reason}; {then}"),
            now.wall,
        );
        log.error = error;
        self.out.push_back(Output::Log(log));
        self.set_status(status, Some(reason));
        self.next_poll = delay.map(|ms| now.mono + ms);
    }

    fn set_status(&mut self, to: Status, reason: Option<String>) {
        if let Some(change) = self.status.set(to, reason) {
            self.out.push_back(Output::Status(change));
        }
    }
}

impl Machine for JsonPoller {
    fn source(&self) -> &str {
        SOURCE
    }

    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        if self.is_finished() {
            return Err(Misuse::Finished);
        }
        let now = self.clock.observe(now);
        match input {
            Input::Start if self.started => return Err(Misuse::AlreadyStarted),
            Input::Start => {
                self.started = true;
                self.set_status(Status::Connecting, None);
                self.poll();
            }
            _ if !self.started => return Err(Misuse::NotStarted),
            // Early or spurious wake-ups are harmless: poll only when the deadline has passed.
            Input::Timer if self.next_poll.is_some_and(|at| at <= now.mono) => self.poll(),
            Input::Response { req, response } if self.in_flight == Some(req) => {
                self.in_flight = None;
                self.on_response(now, response);
            }
            Input::RequestFailed { req, error } if self.in_flight == Some(req) => {
                self.in_flight = None;
                self.on_error(now, "network error".into(), Some(error));
            }
            Input::Shutdown { .. } => {
                (self.in_flight, self.next_poll) = (None, None);
                self.set_status(Status::Disconnected, None);
            }
            // Stale request ids, and WebSocket inputs this source never asks for.
            _ => {}
        }
        Ok(())
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.next_poll
    }

    fn is_finished(&self) -> bool {
        self.status.current().is_terminal()
    }

    fn status(&self) -> Status {
        self.status.current()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let count = env_number("COUNT", 8);
    let interval_ms = env_number("JSON_INTERVAL_SECS", 2) * 1000;
    smol::block_on(async {
        // Without JSON_URL, start the GitHub simulator in-process; keep its handle alive.
        let (_sim, url, token) = match std::env::var("JSON_URL") {
            Ok(url) => (None, url, std::env::var("JSON_TOKEN").ok()),
            Err(_) => {
                let config = GithubSimConfig {
                    scenario: Scenario::steady(1.0),
                    ..GithubSimConfig::default()
                };
                let sim = GithubSim::start(config)
                    .await
                    .expect("start the GitHub simulator");
                let (url, token) = (
                    format!("{}/notifications", sim.api_url()),
                    sim.token().to_owned(),
                );
                (Some(sim), url, Some(token))
            }
        };
        eprintln!(
            "polling {} every {interval_ms} ms",
            openflume_proto::redact::url(&url)
        );

        let source = Source::custom(SOURCE, move |seed| {
            JsonPoller::new(url, token, interval_ms, seed)
        });
        // No start timeout: show the poller's own error logs and backoff rather than wait for it.
        let running = Flume::builder()
            .source(source)
            .start_timeout(None)
            .build()
            .open()
            .await
            .expect("open the flume");
        let mut items = running.stream(1000, Overflow::Backpressure);
        let mut events = 0;
        while events < count {
            let Some(item) = items.next().await else {
                break;
            };
            events += u64::from(matches!(item, Item::Event(_)));
            println!("{}", serde_json::to_string(&item).expect("items serialise"));
        }
        let closed = running.close().await;
        for status in closed.statuses() {
            eprintln!("closed after {events} events: {status}");
        }
    });
}
