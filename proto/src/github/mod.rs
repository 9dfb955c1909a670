//! GitHub notifications polling that spends no rate limit when nothing changed and never
//! hammers the API.
//!
//! [`GithubMachine`] polls `GET {api}/notifications` in *cycles*: page 1, then every
//! `Link: rel="next"` page up to the page cap, one request in flight at a time. Page 1 carries
//! the validators of the last good cycle (`If-Modified-Since` byte for byte, `If-None-Match`), so
//! an unchanged inbox costs a free 304. The next cycle starts after
//! `max(interval_ms, X-Poll-Interval)`, stretched when the rate-limit budget runs low.
//!
//! Each new or changed thread (keyed by `(id, updated_at)` in a bounded [`DedupCache`]) becomes
//! one `notification` event whose data is the thread's JSON exactly as received. By default the
//! first cycle only records what already exists ([`Bootstrap::Skip`]).
//!
//! ## Why validators wait for confirmations
//!
//! Storing new validators means "everything up to here was delivered": the next poll may be a
//! 304 and the same threads will not be listed as news again. So events are emitted with
//! `confirm: Some(DeliveryId)`, and the validators of a complete cycle are committed only once
//! every event of that cycle came back as [`Input::Delivered`]. A poll that falls due before then
//! waits for the confirmations instead of going out. Today the firehose confirms on acceptance;
//! a durable log can later confirm on fsync without any change here.
//!
//! ## Errors
//!
//! Responses are classified by one pure function (`rate_limit::classify`): 401, 422, a 403 that
//! is not a rate limit, and other 4xx stop the machine (`failed`); rate limits wait exactly as
//! GitHub's headers say (status `reconnecting`, reason `rate limited`); 5xx, transport errors,
//! timeouts and unusable bodies back off with jitter (reason `HTTP 502`, `network error`, …).
//! Any failure abandons the cycle; the next attempt starts again from page 1, and dedup keeps
//! already emitted threads from repeating. The token goes only to the API's origin: a `Link` or
//! `Location` elsewhere is not followed.
//!
//! ## Limits, on purpose
//!
//! - A cycle whose pagination stops at a refused `Link` still emits what it read, but keeps the
//!   previous validators, so every poll stays a (paid) 200 until the server's links are fixed.
//! - A cycle that reaches `page_cap` counts as complete: older threads are read again only once
//!   they change and move up.
//! - A 304 never replaces the stored validators; only a complete 200 cycle does.
//! - A 304 to a page 1 sent without validators is a server fault: it is retried with backoff
//!   (still without validators) and the bootstrap stays pending, so the next 200 is the bootstrap.
//! - The dedup cache holds four cycles' worth of keys (at least 1 000) and forgets the oldest
//!   first; an unchanged thread that outlives that many newer ones is emitted again once.
//!
//! ## Layout
//!
//! This file holds the machine's state and dispatches inputs (responses by verdict, timers,
//! failures, shutdown). `cycle` is the poll cycle and its commit rule, `follow` the pure
//! same-origin policy for pages and redirects; `wire`, `link`, `rate_limit` and `interval` read
//! what GitHub sends, and `config` checks what the caller asks for.
//!
//! ## Driving it
//!
//! The usual drain rule applies: after each `handle_input`, call `poll_output` until `None`.
//!
//! ```
//! use openflume_proto::github::{GithubConfig, GithubMachine};
//! use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
//!
//! let config = GithubConfig::new("ghp_example");
//! let mut machine = GithubMachine::new(config, 7).unwrap();
//! let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
//! machine.handle_input(now, Input::Start).unwrap();
//! let outputs: Vec<Output> = std::iter::from_fn(|| machine.poll_output()).collect();
//! let request = outputs.iter().find_map(|o| match o {
//!     Output::Request { request, .. } => Some(request),
//!     _ => None,
//! });
//! assert_eq!(
//!     request.unwrap().url,
//!     "https://api.github.com/notifications?all=false&participating=false&per_page=50"
//! );
//! ```

mod config;
mod cycle;
mod follow;
mod interval;
mod link;
mod notification;
mod rate_limit;
mod wire;

pub use config::{Bootstrap, GithubConfig};
pub use notification::GithubNotification;

use crate::core::{Core, answered_by_core};
use crate::url::Url;
use crate::{
    Backoff, DedupCache, DeliveryId, GithubCursor, HttpResponse, IdCounter, Input, Level, Machine,
    Millis, Misuse, Now, ReqId, Status, TimerKind,
};
use cycle::{Cycle, CycleEnd, Validators};
use follow::MAX_REDIRECTS;
use rate_limit::{Verdict, WaitRule};
use serde_json::json;
use std::collections::HashSet;
use std::fmt;

/// The source name on every item.
const SOURCE: &str = "github";

/// The dedup cache never holds fewer keys than this.
const MIN_DEDUP_CAPACITY: usize = 1_000;

/// The machine's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Start the next cycle (after the interval, a backoff or a rate-limit wait).
    Poll,
    /// The request in flight took too long.
    RequestTimeout,
}

impl TimerKind for Timer {
    const ALL: &'static [Timer] = &[Timer::Poll, Timer::RequestTimeout];
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            Timer::Poll => "poll",
            Timer::RequestTimeout => "request_timeout",
        }
    }
}

/// The request the machine waits on.
#[derive(Clone, Debug)]
struct InFlight {
    req: ReqId,
    /// 1-based page of the cycle.
    page: u32,
    url: String,
    redirects: u8,
    /// Page 1 sent with `If-Modified-Since` or `If-None-Match`: only then is a 304 an answer.
    conditional: bool,
}

/// The GitHub notifications poller.
///
/// Construct with [`GithubMachine::new`], feed [`Input::Start`], then responses, timer expiries
/// and delivery confirmations; see the [module docs](self) for the behaviour.
///
/// ```
/// use openflume_proto::github::{GithubConfig, GithubMachine};
/// use openflume_proto::{Input, Machine, Millis, Now, Output, Status, UnixMillis};
///
/// let config = GithubConfig::new("ghp_example");
/// let mut github = GithubMachine::new(config, 7).unwrap();
/// let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
/// github.handle_input(now, Input::Start).unwrap();
///
/// // Start: the status change, then page 1 of the first cycle, and nothing else.
/// let Some(Output::Status(change)) = github.poll_output() else { panic!() };
/// assert_eq!((change.from, change.to), (Status::Idle, Status::Connecting));
/// let Some(Output::Request { request, .. }) = github.poll_output() else { panic!() };
/// assert!(github.poll_output().is_none());
/// assert_eq!(request.method, "GET");
/// assert!(request.headers.contains(&("Authorization".into(), "Bearer ghp_example".into())));
/// // No validators yet, so the first poll is unconditional.
/// assert!(!request.headers.iter().any(|(name, _)| name.starts_with("If-")));
/// // The only deadline is the request timeout (30 s by default).
/// assert_eq!(github.poll_timeout(), Some(Millis(30_000)));
/// ```
pub struct GithubMachine {
    config: GithubConfig,
    /// Pages and redirects may only go to this origin.
    origin: Url,
    /// Page 1 of the polled list.
    first_page: String,
    rng: fastrand::Rng,
    core: Core<Timer>,
    req_ids: IdCounter,
    delivery_ids: IdCounter,
    /// The highest delivery id handed out.
    last_delivery: u64,
    in_flight: Option<InFlight>,
    cycle: Option<Cycle>,
    /// Sent on page 1.
    validators: Validators,
    /// Emitted events not yet confirmed.
    unconfirmed: HashSet<DeliveryId>,
    /// Validators of a complete cycle, waiting for `unconfirmed` to drain.
    validators_to_commit: Option<Validators>,
    /// A poll fell due while events were unconfirmed: start it on the last confirmation.
    poll_waiting: bool,
    seen: DedupCache<(String, String)>,
    bootstrapped: bool,
    /// The validators or the seen keys changed since the last `Output::Checkpoint`.
    cursor_moved: bool,
    backoff: Backoff,
    /// Rate-limited responses in a row.
    rate_strikes: u32,
    /// `max(interval_ms, X-Poll-Interval)` of the last successful cycle, to log changes.
    base_interval_ms: u64,
}

impl GithubMachine {
    /// A poller for `config`, its backoff jitter drawn from `seed`.
    ///
    /// Fails with [`Misuse::Config`] when the configuration cannot work (empty token, interval
    /// under one second, `per_page` outside 1..=50, an `api_url` that is not http(s), …).
    ///
    /// ```
    /// use openflume_proto::github::{GithubConfig, GithubMachine};
    /// use openflume_proto::{Machine, Misuse, Status};
    ///
    /// let machine = GithubMachine::new(GithubConfig::new("ghp_x"), 1).unwrap();
    /// assert_eq!(machine.source(), "github");
    /// assert_eq!(machine.status(), Status::Idle);
    /// assert!(matches!(GithubMachine::new(GithubConfig::new(""), 1), Err(Misuse::Config(_))));
    /// ```
    pub fn new(config: GithubConfig, seed: u64) -> Result<GithubMachine, Misuse> {
        let checked = config.check()?;
        let visible_per_cycle = (config.page_cap as usize).saturating_mul(config.per_page as usize);
        let capacity = visible_per_cycle.saturating_mul(4).max(MIN_DEDUP_CAPACITY);
        // Threads stay listed for weeks, so keys expire by count only: an age limit would
        // re-emit an unchanged thread whenever a later 200 lists it again.
        let mut seen = DedupCache::new(capacity.max(GithubCursor::MAX_SEEN), u64::MAX);
        let (validators, bootstrapped) = match &config.resume {
            Some(cursor) => {
                for key in &cursor.seen {
                    seen.insert(key.clone(), Millis(0));
                }
                let validators = Validators {
                    last_modified: cursor.last_modified.clone(),
                    etag: cursor.etag.clone(),
                };
                (validators, true)
            }
            None => (Validators::default(), false),
        };
        Ok(GithubMachine {
            origin: checked.origin,
            first_page: checked.first_page,
            rng: fastrand::Rng::with_seed(seed),
            core: Core::new(SOURCE),
            req_ids: IdCounter::default(),
            delivery_ids: IdCounter::default(),
            last_delivery: 0,
            in_flight: None,
            cycle: None,
            validators,
            unconfirmed: HashSet::new(),
            validators_to_commit: None,
            poll_waiting: false,
            seen,
            bootstrapped,
            cursor_moved: false,
            backoff: Backoff::new(config.reconnect),
            rate_strikes: 0,
            base_interval_ms: config.interval_ms,
            config,
        })
    }

    /// The configuration in use.
    ///
    /// ```
    /// use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
    ///
    /// let config = GithubConfig { interval_ms: 5_000, ..GithubConfig::new("ghp_example") };
    /// let github = GithubMachine::new(config, 7).unwrap();
    /// assert_eq!(github.config().interval_ms, 5_000);
    /// assert_eq!(github.config().bootstrap, Bootstrap::Skip);
    /// // `Debug` of the machine shows its configuration, token redacted.
    /// assert!(!format!("{github:?}").contains("ghp_example"));
    /// ```
    pub fn config(&self) -> &GithubConfig {
        &self.config
    }

    // ---- inputs -------------------------------------------------------------------------

    fn on_timer(&mut self, now: Now) {
        for timer in self.core.timers.take_expired(now.mono) {
            match timer {
                Timer::Poll => {
                    if self.in_flight.is_none() {
                        self.start_cycle(now);
                    }
                }
                Timer::RequestTimeout => {
                    if let Some(flight) = self.in_flight.take() {
                        self.retry_later(
                            now,
                            "network error",
                            format!("request for page {} timed out", flight.page),
                            Some(format!(
                                "no response within {} ms",
                                self.config.request_timeout_ms
                            )),
                        );
                    }
                }
            }
        }
    }

    fn on_response(&mut self, now: Now, req: ReqId, response: HttpResponse) {
        let Some(flight) = self.take_flight(now, req) else {
            return;
        };
        match rate_limit::classify(&response, now.wall, self.rate_strikes) {
            Verdict::Page => self.on_page(now, flight, &response),
            Verdict::NotModified if flight.page == 1 && flight.conditional => {
                let cycle = self.cycle.get_or_insert_with(Cycle::default);
                cycle.note_pacing(&response);
                self.finish_cycle(now, CycleEnd::NotModified);
            }
            // A 304 to a request without validators compares with nothing: a server (or proxy)
            // fault. Taking it as "nothing there" would end the bootstrap with nothing recorded,
            // and the next 200 would emit every old notification as news.
            Verdict::NotModified if flight.page == 1 => self.retry_later(
                now,
                "HTTP 304",
                "304 Not Modified to page 1, which carried no validators (a server fault); \
                 asking again without validators"
                    .to_owned(),
                None,
            ),
            Verdict::NotModified => self.retry_later(
                now,
                "HTTP 304",
                format!("unexpected 304 for unconditional page {}", flight.page),
                None,
            ),
            Verdict::Redirect { location } => {
                self.on_redirect(now, flight, response.status, &location)
            }
            Verdict::RateLimited { wait_ms, rule } => {
                self.on_rate_limited(now, &response, wait_ms, rule)
            }
            Verdict::Transient { reason } => {
                let message = format!("{reason} for page {}", flight.page);
                let error = rate_limit::error_message(&response);
                self.retry_later(now, &reason, message, Some(error));
            }
            Verdict::Fatal(fatal) => self.fail(fatal.to_string()),
        }
    }

    /// Abandons the cycle and sends nothing until the wait GitHub asked for is over.
    fn on_rate_limited(&mut self, now: Now, response: &HttpResponse, wait_ms: u64, rule: WaitRule) {
        self.rate_strikes = self.rate_strikes.saturating_add(1);
        self.cycle = None;
        // Transient, however long: the source keeps trying, and says until when.
        let until = wall_time(now.wall_at(now.mono + wait_ms));
        self.core.log_with(
            now,
            Level::Warn,
            "rate.limit",
            format!(
                "rate limited (HTTP {}, {}); next poll in {}, at {until}",
                response.status,
                rule.describe(),
                seconds(wait_ms)
            ),
            json!({
                "status": response.status,
                "waitMs": wait_ms,
                "until": until,
                "rule": rule.describe(),
                "message": rate_limit::error_message(response),
            }),
        );
        self.core.set_status(
            Status::Reconnecting,
            Some(format!("rate limited until {until}")),
        );
        self.core.timers.arm(Timer::Poll, now.mono + wait_ms);
    }

    fn on_request_failed(&mut self, now: Now, req: ReqId, error: String) {
        let Some(flight) = self.take_flight(now, req) else {
            return;
        };
        self.retry_later(
            now,
            "network error",
            format!("request for page {} failed", flight.page),
            Some(error),
        );
    }

    fn on_shutdown(&mut self) {
        self.in_flight = None;
        self.cycle = None;
        self.core.finish(Status::Disconnected, None);
    }

    /// The in-flight request if `req` is it; otherwise logs the stale id.
    fn take_flight(&mut self, now: Now, req: ReqId) -> Option<InFlight> {
        if self.in_flight.as_ref().is_some_and(|f| f.req == req) {
            self.core.timers.cancel(Timer::RequestTimeout);
            return self.in_flight.take();
        }
        self.core.log_with(
            now,
            Level::Debug,
            "http.stale",
            format!(
                "ignored the outcome of request {}, no longer awaited",
                req.0
            ),
            json!({ "req": req.0 }),
        );
        None
    }

    fn on_redirect(&mut self, now: Now, flight: InFlight, status: u16, location: &str) {
        if flight.redirects >= MAX_REDIRECTS {
            self.retry_later(
                now,
                "redirect refused",
                format!(
                    "more than {MAX_REDIRECTS} redirects for page {}",
                    flight.page
                ),
                None,
            );
            return;
        }
        match follow::same_origin_target(&self.origin, &flight.url, location) {
            Ok(url) => {
                self.core.log_with(
                    now,
                    Level::Debug,
                    "poll.redirect",
                    format!("HTTP {status}: following to {}", crate::redact::url(&url)),
                    json!({ "status": status, "page": flight.page }),
                );
                self.send(now, url, flight.page, flight.redirects + 1);
            }
            Err(refusal) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "poll.redirect_refused",
                    format!(
                        "not following HTTP {status} for page {}: {refusal}",
                        flight.page
                    ),
                    json!({
                        "status": status,
                        "location": crate::redact::url(location),
                    }),
                );
                self.retry_later(
                    now,
                    "redirect refused",
                    format!(
                        "HTTP {status} for page {} could not be followed",
                        flight.page
                    ),
                    None,
                );
            }
        }
    }

    /// Abandons the cycle and schedules a retry after a jittered backoff, or fails once the
    /// reconnect policy's attempts are spent.
    fn retry_later(&mut self, now: Now, reason: &str, message: String, error: Option<String>) {
        self.cycle = None;
        self.in_flight = None;
        self.core.timers.cancel(Timer::RequestTimeout);
        let Some(delay) = self.backoff.next_delay(&mut self.rng) else {
            // Name the last cause, so a start error says why (a TLS or DNS failure, say).
            let last = error.as_deref().unwrap_or(message.as_str());
            self.fail(format!(
                "gave up after {} retries ({reason}: {last})",
                self.backoff.attempts()
            ));
            return;
        };
        let mut log = self
            .core
            .new_log(
                now,
                Level::Warn,
                "poll.retry",
                format!("{message}; retrying in {}", seconds(delay)),
            )
            .with_detail(json!({ "delayMs": delay, "attempt": self.backoff.attempts() }));
        if let Some(error) = error {
            log = log.with_error(error);
        }
        self.core.push_log(log);
        self.core
            .set_status(Status::Reconnecting, Some(reason.to_owned()));
        self.core.timers.arm(Timer::Poll, now.mono + delay);
    }

    /// Stops for good.
    fn fail(&mut self, reason: String) {
        self.in_flight = None;
        self.cycle = None;
        self.core.finish(Status::Failed, Some(reason));
    }
}

/// `2026-12-05T08:20:00Z`, or the raw milliseconds outside jiff's range.
fn wall_time(at: crate::UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(at.0)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("{} ms since the epoch", at.0))
}

/// `90 s`, `1.5 s`: milliseconds for log messages.
fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{:.1} s", ms as f64 / 1_000.0)
    }
}

impl Machine for GithubMachine {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), Misuse> {
        let now = self.core.admit(now, &input)?;
        match input {
            Input::Start => {
                self.core.set_status(Status::Connecting, None);
                self.start_cycle(now);
            }
            Input::Timer => self.on_timer(now),
            Input::Response { req, response } => self.on_response(now, req, response),
            Input::RequestFailed { req, error } => self.on_request_failed(now, req, error),
            Input::Delivered { delivery } => return self.on_delivered(now, delivery),
            Input::Shutdown { .. } => self.on_shutdown(),
            // A response not read yet is the HTTP client's to time out; no deadline here waits
            // on one.
            Input::ReadingPaused | Input::ReadingResumed => {}
            Input::Received { .. } => return Err(Misuse::NotServing),
            Input::IdentifyGranted { shard } => return Err(Misuse::NoIdentifyRequest(shard)),
            #[cfg(feature = "discord")]
            Input::IdentifyWaiting { shard, .. } => return Err(Misuse::NoIdentifyRequest(shard)),
            Input::Opened { .. }
            | Input::Frame { .. }
            | Input::Closed { .. }
            | Input::ConnectFailed { .. } => self.core.log(
                now,
                Level::Debug,
                "input.unexpected",
                "ignored a WebSocket input: the GitHub poller opens no connections",
            ),
        }
        Ok(())
    }

    answered_by_core!();
}

impl fmt::Debug for GithubMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubMachine")
            .field("config", &self.config)
            .field("status", &self.core.status())
            .field("bootstrapped", &self.bootstrapped)
            .field("in_flight", &self.in_flight.as_ref().map(|f| f.req))
            .field("unconfirmed", &self.unconfirmed.len())
            .field("next_timeout", &self.core.timers.next_deadline())
            .finish_non_exhaustive()
    }
}
