//! A local GitHub REST API for notifications polling: `GET /notifications`, so the GitHub
//! machine and driver can be tested and demonstrated without a token or a network.
//!
//! What it does as GitHub does: `Authorization: Bearer <token>` (or `token <token>`) checked,
//! 401 `{"message":"Bad credentials"}` otherwise; threads in GitHub's shape (string `id`,
//! `unread`, `reason`, `updated_at`, `last_read_at`, `subject`, a minimal `repository`, `url`,
//! `subscription_url`), newest first; `all`, `participating`, `since`, `before`, `per_page`
//! (at most 50) and `page`; a `Link` header with absolute URLs back to the simulator;
//! `Last-Modified` that moves only when threads are added or updated, a weak `ETag` over the
//! page, and 304 when `If-None-Match` (which wins) or `If-Modified-Since` match; a 304 costs
//! no rate limit; `X-Poll-Interval`; `x-ratelimit-*` headers over a decrementing budget that
//! resets every [`GithubSimConfig::rate_window`], with 403 `API rate limit exceeded` once spent.
//!
//! `Last-Modified` has one-second resolution, so two changes within one second would look
//! alike to `If-Modified-Since`: each change moves it at least one second past the previous
//! value instead (it may run a little ahead of the clock when changes are dense).

use super::fake;
use super::records::{Records, WaitTimedOut, wait_until};
use super::scenario::{HttpFault, HttpFaults, Pacer, Rate, Scenario, run_schedule};
use super::server::{
    Answer, Reply, Server, Service, Shutdown, Signal, Ws, bearer, query_value, split_target,
};
use fastrand::Rng;
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use serde_json::{Map, Value, json};
use smol::net::TcpListener;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Largest `per_page` the notifications endpoint honours.
const MAX_PER_PAGE: usize = 50;
/// GitHub's limit for unauthenticated requests, shown on 401s.
const UNAUTHENTICATED_LIMIT: u32 = 60;
const DOCS: &str = "https://docs.github.com/rest/activity/notifications#list-notifications-for-the-authenticated-user";
/// Reasons that count as participating (`participating=true`).
const PARTICIPATING: &[&str] = &[
    "approval_requested",
    "assign",
    "author",
    "comment",
    "invitation",
    "manual",
    "mention",
    "review_requested",
    "state_change",
    "team_mention",
];

/// How to run a [`GithubSim`].
///
/// ```
/// use openflume_sim::GithubSimConfig;
/// let config = GithubSimConfig { poll_interval: 5, initial_notifications: 120, ..GithubSimConfig::default() };
/// assert_eq!(config.rate_limit, 5000);
/// assert!(!format!("{config:?}").contains(&config.token));
/// ```
#[derive(Clone)]
pub struct GithubSimConfig {
    /// Where to listen. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The token clients must present. Default [`GITHUB_TOKEN`](crate::GITHUB_TOKEN).
    pub token: String,
    /// `X-Poll-Interval` in seconds. Default 60, as GitHub.
    pub poll_interval: u64,
    /// `x-ratelimit-limit`. Default 5000.
    pub rate_limit: u32,
    /// How long a rate-limit window lasts. Default one hour.
    pub rate_window: Duration,
    /// Threads present at start. Default 3.
    pub initial_notifications: usize,
    /// Threads kept at most; the oldest go first. Default 1000.
    pub max_notifications: usize,
    /// Records kept. Default 100 000.
    pub max_records: usize,
    /// Seed for generated titles, reasons and ids.
    pub seed: u64,
    /// Rate of new threads and scheduled actions.
    pub scenario: Scenario<GithubAction>,
}

impl Default for GithubSimConfig {
    fn default() -> Self {
        GithubSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: crate::GITHUB_TOKEN.to_owned(),
            poll_interval: 60,
            rate_limit: 5000,
            rate_window: Duration::from_secs(3600),
            initial_notifications: 3,
            max_notifications: 1000,
            max_records: super::records::DEFAULT_MAX_RECORDS,
            seed: 0x5eed,
            scenario: Scenario::manual(),
        }
    }
}

impl fmt::Debug for GithubSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubSimConfig")
            .field("bind", &self.bind)
            .field("token", &"[redacted]")
            .field("poll_interval", &self.poll_interval)
            .field("rate_limit", &self.rate_limit)
            .field("rate_window", &self.rate_window)
            .field("initial_notifications", &self.initial_notifications)
            .field("max_notifications", &self.max_notifications)
            .field("max_records", &self.max_records)
            .field("seed", &self.seed)
            .field("scenario", &self.scenario)
            .finish()
    }
}

/// Something the GitHub simulator does on command ([`GithubSim::inject`]) or on schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GithubAction {
    /// This many new threads, now.
    Notifications(u32),
    /// New activity on a thread (this id, or the oldest one): `updated_at` moves to now and it
    /// is unread again.
    Touch(Option<String>),
    /// Change `X-Poll-Interval` (seconds).
    SetPollInterval(u64),
    /// Spend the rest of the rate-limit budget: requests get 403 with `x-ratelimit-remaining: 0`
    /// until `x-ratelimit-reset`.
    ExhaustRateLimit,
    /// The next `times` requests get 403 "You have exceeded a secondary rate limit", with a
    /// `retry-after` header when given.
    SecondaryRateLimit {
        /// `retry-after` in seconds.
        retry_after: Option<u64>,
        /// How many requests.
        times: u32,
    },
    /// The next `times` requests show `fault` (401 and 429 come with GitHub's bodies).
    Http {
        /// The fault.
        fault: HttpFault,
        /// How many requests.
        times: u32,
    },
}

/// A request the GitHub simulator answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubRequest {
    /// When, since the simulator started.
    pub at: Duration,
    /// `GET`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// `If-Modified-Since` as sent.
    pub if_modified_since: Option<String>,
    /// `If-None-Match` as sent.
    pub if_none_match: Option<String>,
    /// Whether the token was right.
    pub authorized: bool,
    /// The status sent; `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// Whether it counted against the rate limit.
    pub counted: bool,
    /// `x-ratelimit-remaining` sent.
    pub remaining: Option<u32>,
}

/// Everything the GitHub simulator saw.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GithubRecords {
    /// Requests, in arrival order.
    pub requests: Records<GithubRequest>,
}

impl GithubRecords {
    /// The statuses sent, in order (`None` for a dropped connection).
    pub fn statuses(&self) -> Vec<Option<u16>> {
        self.requests.iter().map(|r| r.status).collect()
    }
}

/// A thread as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubThread {
    /// The thread id.
    pub id: String,
    /// Its `updated_at`.
    pub updated_at: String,
    /// Its `unread`.
    pub unread: bool,
    /// Its `reason`.
    pub reason: String,
}

/// A running GitHub simulator. Stops when dropped.
///
/// ```no_run
/// use openflume_sim::{GithubSimConfig, GithubSim};
///
/// smol::block_on(async {
///     let github = GithubSim::start(GithubSimConfig { poll_interval: 1, ..GithubSimConfig::default() }).await?;
///     println!("OPENFLUME_GITHUB_API_URL={}", github.api_url());
///     let id = github.add_notification();
///     assert!(github.touch(&id));
///     Ok::<(), std::io::Error>(())
/// });
/// ```
#[derive(Debug)]
pub struct GithubSim {
    shared: Arc<Github>,
    server: Server,
    _tasks: Vec<smol::Task<()>>,
}

impl GithubSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: GithubSimConfig) -> io::Result<GithubSim> {
        config.scenario.rate.validate()?;
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Github::new(config, addr));
        let server = Server::serve(listener, shared.clone())?;
        let mut tasks = Vec::new();
        if shared.config.scenario.rate != Rate::Manual {
            let sim = shared.clone();
            tasks.push(smol::spawn(async move {
                sim.first_client.waiter().wait().await;
                let mut pacer = Pacer::new(sim.config.scenario.rate);
                while let Some(count) = pacer.next().await {
                    sim.add(u32::try_from(count).unwrap_or(u32::MAX));
                }
            }));
        }
        if !shared.config.scenario.schedule.is_empty() {
            let sim = shared.clone();
            tasks.push(smol::spawn(async move {
                sim.first_client.waiter().wait().await;
                let schedule = sim.config.scenario.schedule.clone();
                run_schedule(Instant::now(), schedule, |action| {
                    sim.inject(action);
                })
                .await;
            }));
        }
        Ok(GithubSim {
            shared,
            server,
            _tasks: tasks,
        })
    }

    /// The API base, `http://127.0.0.1:PORT` (for `OPENFLUME_GITHUB_API_URL`).
    pub fn api_url(&self) -> String {
        self.shared.base.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Does `action` now. Returns how many threads it added or touched (1 for the others).
    pub fn inject(&self, action: GithubAction) -> usize {
        self.shared.inject(action)
    }

    /// The `X-Poll-Interval` it sends now, in seconds.
    pub fn poll_interval(&self) -> u64 {
        self.shared.lock().poll_interval
    }

    /// Adds one new thread and returns its id.
    pub fn add_notification(&self) -> String {
        let mut state = self.shared.lock();
        self.shared.add_locked(&mut state).to_string()
    }

    /// New activity on thread `id`; false when there is no such thread.
    pub fn touch(&self, id: &str) -> bool {
        self.shared.touch(Some(id))
    }

    /// The threads, newest first.
    pub fn threads(&self) -> Vec<GithubThread> {
        let state = self.shared.lock();
        state
            .sorted()
            .into_iter()
            .map(|t| GithubThread {
                id: t.id.to_string(),
                updated_at: fake::github_time(t.updated_at),
                unread: t.unread,
                reason: t.reason.to_owned(),
            })
            .collect()
    }

    /// A copy of the records so far.
    pub fn records(&self) -> GithubRecords {
        self.shared.lock().records.clone()
    }

    /// Waits until `check` finds what it looks for in the records, or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&GithubRecords) -> Option<T>,
    ) -> Result<T, WaitTimedOut> {
        wait_until(&self.shared.state, timeout, |state| check(&state.records)).await
    }

    /// Stops, letting requests in progress finish for a moment.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A repository threads belong to.
struct Repo {
    id: u64,
    owner: &'static str,
    owner_id: u64,
    owner_type: &'static str,
    name: &'static str,
    description: &'static str,
}

const REPOS: &[Repo] = &[
    Repo {
        id: 812_340_001,
        owner: "openflume",
        owner_id: 170_000_001,
        owner_type: "Organization",
        name: "openflume",
        description: "One typed firehose of Discord, Slack, GitHub and cron events",
    },
    Repo {
        id: 812_340_002,
        owner: "octo-org",
        owner_id: 170_000_002,
        owner_type: "Organization",
        name: "deploy-tools",
        description: "Release automation",
    },
    Repo {
        id: 812_340_003,
        owner: "ada",
        owner_id: 170_000_003,
        owner_type: "User",
        name: "notes",
        description: "",
    },
];

const SUBJECTS: &[(&str, &str)] = &[
    ("PullRequest", "Follow Link headers exactly as given"),
    ("Issue", "Heartbeat ACK timeout too tight on slow links"),
    ("PullRequest", "Reset the zlib context on every reconnect"),
    ("Release", "v0.4.0"),
    ("Issue", "Slack refresh leaves a five second gap"),
    ("Discussion", "Ideas for the next release"),
    ("CheckSuite", "CI workflow run failed for main branch"),
];

const REASONS: &[&str] = &[
    "review_requested",
    "mention",
    "subscribed",
    "comment",
    "author",
    "assign",
    "state_change",
    "ci_activity",
    "team_mention",
];

struct Thread {
    id: u64,
    unread: bool,
    reason: &'static str,
    updated_at: Timestamp,
    last_read_at: Option<Timestamp>,
    subject: usize,
    number: u64,
    comment: Option<u64>,
    repo: usize,
}

struct Budget {
    limit: u32,
    used: u32,
    reset: i64,
}

impl Budget {
    fn new(limit: u32, window: Duration, now: Timestamp) -> Budget {
        Budget {
            limit,
            used: 0,
            reset: now.as_second().saturating_add(secs(window)),
        }
    }

    fn refresh(&mut self, window: Duration, now: Timestamp) {
        if now.as_second() >= self.reset {
            self.used = 0;
            self.reset = now.as_second().saturating_add(secs(window));
        }
    }

    fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }

    fn headers(&self, reply: Reply) -> Reply {
        reply
            .header("x-ratelimit-limit", self.limit.to_string())
            .header("x-ratelimit-remaining", self.remaining().to_string())
            .header("x-ratelimit-reset", self.reset.to_string())
            .header("x-ratelimit-used", self.used.to_string())
            .header("x-ratelimit-resource", "core")
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX).max(1)
}

struct State {
    records: GithubRecords,
    rng: Rng,
    threads: Vec<Thread>,
    next_id: u64,
    last_modified: Timestamp,
    budget: Budget,
    unauthenticated: Budget,
    poll_interval: u64,
    secondary: Vec<(Option<u64>, u32)>,
}

impl State {
    /// Threads newest first (by `updated_at`, then id).
    fn sorted(&self) -> Vec<&Thread> {
        let mut threads: Vec<&Thread> = self.threads.iter().collect();
        threads.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        threads
    }

    /// Adds a thread updated at `at`, dropping the oldest beyond `max`.
    fn add_at(&mut self, at: Timestamp, max: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let rng = &mut self.rng;
        let subject = rng.usize(..SUBJECTS.len());
        let thread = Thread {
            id,
            unread: true,
            reason: REASONS
                .get(rng.usize(..REASONS.len()))
                .copied()
                .unwrap_or("subscribed"),
            updated_at: Timestamp::from_second(at.as_second()).unwrap_or(at),
            last_read_at: None,
            subject,
            number: rng.u64(1..2000),
            comment: rng.bool().then(|| rng.u64(2_000_000_000..3_000_000_000)),
            repo: rng.usize(..REPOS.len()),
        };
        if self.threads.len() >= max.max(1) {
            if let Some(oldest) = self
                .threads
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| (t.updated_at, t.id))
                .map(|(index, _)| index)
            {
                self.threads.remove(oldest);
            }
        }
        self.threads.push(thread);
        id
    }

    /// Moves `Last-Modified` for a change now, strictly forward at one-second resolution.
    fn changed(&mut self, now: Timestamp) {
        let next = self
            .last_modified
            .as_second()
            .saturating_add(1)
            .max(now.as_second());
        self.last_modified = Timestamp::from_second(next).unwrap_or(now);
    }
}

/// The simulator's shared half.
struct Github {
    config: GithubSimConfig,
    started: Instant,
    base: String,
    first_client: Signal,
    http_faults: HttpFaults,
    state: Mutex<State>,
}

impl fmt::Debug for Github {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Github")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a request asked for.
struct Query {
    all: bool,
    participating: bool,
    since: Option<Timestamp>,
    before: Option<Timestamp>,
    per_page: usize,
    page: usize,
}

impl Query {
    /// Reads the query the way GitHub does; a bad `since`/`before` is an error message.
    fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
        let flag = |key: &str| query_value(pairs, key) == Some("true");
        let time = |key: &str| match query_value(pairs, key) {
            None => Ok(None),
            Some(text) => text.parse::<Timestamp>().map(Some).map_err(|_| {
                format!("Invalid value for `{key}`: {text:?} is not an ISO 8601 timestamp")
            }),
        };
        let number = |key: &str| {
            query_value(pairs, key)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        Ok(Query {
            all: flag("all"),
            participating: flag("participating"),
            since: time("since")?,
            before: time("before")?,
            per_page: number("per_page").unwrap_or(MAX_PER_PAGE).min(MAX_PER_PAGE),
            page: number("page").unwrap_or(1),
        })
    }
}

impl Github {
    fn new(config: GithubSimConfig, addr: SocketAddr) -> Github {
        let now = Timestamp::now();
        let mut state = State {
            records: GithubRecords {
                requests: Records::with_capacity(config.max_records),
            },
            rng: Rng::with_seed(config.seed),
            threads: Vec::new(),
            next_id: 13_370_001,
            last_modified: now,
            budget: Budget::new(config.rate_limit, config.rate_window, now),
            unauthenticated: Budget::new(UNAUTHENTICATED_LIMIT, config.rate_window, now),
            poll_interval: config.poll_interval,
            secondary: Vec::new(),
        };
        // Existing threads were updated over the past hours, oldest first.
        let count = config.initial_notifications.min(config.max_notifications);
        for index in 0..count {
            let age =
                jiff::SignedDuration::from_secs(i64::try_from((count - index) * 600).unwrap_or(0));
            state.add_at(
                now.checked_sub(age).unwrap_or(now),
                config.max_notifications,
            );
        }
        state.last_modified = Timestamp::from_second(now.as_second()).unwrap_or(now);
        Github {
            base: format!("http://{addr}"),
            started: Instant::now(),
            first_client: Signal::new(),
            http_faults: HttpFaults::default(),
            state: Mutex::new(state),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inject(&self, action: GithubAction) -> usize {
        match action {
            GithubAction::Notifications(count) => self.add(count),
            GithubAction::Touch(id) => usize::from(self.touch(id.as_deref())),
            GithubAction::SetPollInterval(seconds) => {
                self.lock().poll_interval = seconds;
                1
            }
            GithubAction::ExhaustRateLimit => {
                let mut state = self.lock();
                state.budget.used = state.budget.limit;
                1
            }
            GithubAction::SecondaryRateLimit { retry_after, times } => {
                let mut state = self.lock();
                if times > 0 && state.secondary.len() < 1024 {
                    state.secondary.push((retry_after, times));
                }
                1
            }
            GithubAction::Http { fault, times } => {
                self.http_faults.push(fault, times);
                1
            }
        }
    }

    fn add(&self, count: u32) -> usize {
        let mut state = self.lock();
        for _ in 0..count {
            self.add_locked(&mut state);
        }
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    fn add_locked(&self, state: &mut State) -> u64 {
        let now = Timestamp::now();
        state.changed(now);
        state.add_at(now, self.config.max_notifications)
    }

    fn touch(&self, id: Option<&str>) -> bool {
        let now = Timestamp::now();
        let mut state = self.lock();
        let index = match id {
            Some(id) => state.threads.iter().position(|t| t.id.to_string() == id),
            None => state
                .threads
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| (t.updated_at, t.id))
                .map(|(index, _)| index),
        };
        let Some(index) = index else { return false };
        state.changed(now);
        let rng_comment = state.rng.u64(2_000_000_000..3_000_000_000);
        let Some(thread) = state.threads.get_mut(index) else {
            return false;
        };
        if !thread.unread {
            thread.last_read_at = Some(thread.updated_at);
        }
        thread.unread = true;
        thread.updated_at = Timestamp::from_second(now.as_second()).unwrap_or(now);
        thread.comment = Some(rng_comment);
        true
    }

    fn render(&self, thread: &Thread) -> Value {
        let base = &self.base;
        let repo = REPOS.get(thread.repo).unwrap_or(&REPOS[0]);
        let (kind, title) = SUBJECTS.get(thread.subject).copied().unwrap_or(SUBJECTS[0]);
        let full_name = format!("{}/{}", repo.owner, repo.name);
        let repo_api = format!("{base}/repos/{full_name}");
        let subject_url = match kind {
            "PullRequest" => Some(format!("{repo_api}/pulls/{}", thread.number)),
            "Issue" => Some(format!("{repo_api}/issues/{}", thread.number)),
            "Release" => Some(format!("{repo_api}/releases/{}", thread.number)),
            // GitHub gives no API URL for these.
            _ => None,
        };
        let latest_comment_url = match (&subject_url, thread.comment) {
            (Some(_), Some(comment)) => Some(format!("{repo_api}/issues/comments/{comment}")),
            (url, None) => url.clone(),
            (None, Some(_)) => None,
        };
        let id = thread.id.to_string();
        json!({
            "id": id,
            "repository": repository(base, repo),
            "subject": {
                "title": title,
                "url": subject_url,
                "latest_comment_url": latest_comment_url,
                "type": kind,
            },
            "reason": thread.reason,
            "unread": thread.unread,
            "updated_at": fake::github_time(thread.updated_at),
            "last_read_at": thread.last_read_at.map(fake::github_time),
            "url": format!("{base}/notifications/threads/{id}"),
            "subscription_url": format!("{base}/notifications/threads/{id}/subscription"),
        })
    }

    fn record(
        &self,
        request: &ReceivedRequest,
        authorized: bool,
        status: Option<u16>,
        counted: bool,
        remaining: Option<u32>,
    ) {
        let (path, _) = split_target(&request.target);
        let query = request
            .target
            .split_once('?')
            .map(|(_, q)| q.to_owned())
            .unwrap_or_default();
        let record = GithubRequest {
            at: self.started.elapsed(),
            method: request.method.clone(),
            path: path.to_owned(),
            query,
            if_modified_since: request.header("If-Modified-Since").map(str::to_owned),
            if_none_match: request.header("If-None-Match").map(str::to_owned),
            authorized,
            status,
            counted,
            remaining,
        };
        self.lock().records.requests.push(record);
    }

    /// GitHub's error body.
    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"message": message, "documentation_url": DOCS, "status": status.to_string()})
                .to_string(),
        )
    }

    fn fault_reply(&self, status: u16, retry_after: Option<u64>) -> Reply {
        let reply = match status {
            401 => Github::error(401, "Bad credentials"),
            403 => Github::error(403, "Resource not accessible by personal access token"),
            422 => Github::error(422, "Validation Failed"),
            429 => Github::error(429, SECONDARY),
            500..=599 => Reply::json(status, r#"{"message":"Server Error"}"#),
            _ => Github::error(status, super::server::reason_phrase(status)),
        };
        let reply = match retry_after {
            Some(seconds) => reply.header("retry-after", seconds.to_string()),
            None => reply,
        };
        if status < 500 {
            self.lock().budget.headers(reply)
        } else {
            reply
        }
    }

    /// Answers `GET /notifications`; returns the reply, whether it counted, and whether the
    /// token was right.
    fn notifications(&self, request: &ReceivedRequest) -> (Reply, bool, bool) {
        let now = Timestamp::now();
        let window = self.config.rate_window;
        let mut guard = self.lock();
        let state = &mut *guard;
        state.budget.refresh(window, now);
        state.unauthenticated.refresh(window, now);
        let Some(token) = bearer(request, &["Bearer", "token"]) else {
            state.unauthenticated.used = state.unauthenticated.used.saturating_add(1);
            let reply = state
                .unauthenticated
                .headers(Github::error(401, "Requires authentication"));
            return (reply, false, false);
        };
        if token != self.config.token {
            state.unauthenticated.used = state.unauthenticated.used.saturating_add(1);
            let reply = state
                .unauthenticated
                .headers(Github::error(401, "Bad credentials"));
            return (reply, false, false);
        }
        if let Some((retry_after, times)) = state.secondary.first_mut() {
            let retry_after = *retry_after;
            *times -= 1;
            if *times == 0 {
                state.secondary.remove(0);
            }
            let reply = state.budget.headers(Github::error(403, SECONDARY));
            let reply = match retry_after {
                Some(seconds) => reply.header("retry-after", seconds.to_string()),
                None => reply,
            };
            return (reply, false, true);
        }
        if state.budget.remaining() == 0 {
            let message = "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.";
            return (
                state.budget.headers(Github::error(403, message)),
                false,
                true,
            );
        }
        let (_, pairs) = split_target(&request.target);
        let query = match Query::parse(&pairs) {
            Ok(query) => query,
            Err(message) => {
                state.budget.used += 1;
                return (
                    state.budget.headers(Github::error(422, &message)),
                    true,
                    true,
                );
            }
        };
        let selected: Vec<&Thread> = state
            .sorted()
            .into_iter()
            .filter(|t| query.all || t.unread)
            .filter(|t| !query.participating || PARTICIPATING.contains(&t.reason))
            .filter(|t| query.since.is_none_or(|since| t.updated_at > since))
            .filter(|t| query.before.is_none_or(|before| t.updated_at < before))
            .collect();
        let pages = selected.len().div_ceil(query.per_page).max(1);
        let start = (query.page - 1).saturating_mul(query.per_page);
        let items: Vec<Value> = selected
            .iter()
            .skip(start)
            .take(query.per_page)
            .map(|t| self.render(t))
            .collect();
        let body = Value::Array(items).to_string();
        let etag = format!(
            "W/\"{:016x}{:016x}\"",
            fake::fnv1a(body.as_bytes()),
            fake::fnv1a(request.target.as_bytes())
        );
        let last_modified = fake::http_date(state.last_modified);
        let not_modified = match request.header("If-None-Match") {
            Some(tags) => tags.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
            }),
            None => request
                .header("If-Modified-Since")
                .and_then(fake::parse_http_date)
                .is_some_and(|since| state.last_modified.as_second() <= since.as_second()),
        };
        let reply = if not_modified {
            Reply::empty(304)
        } else {
            state.budget.used += 1;
            let reply = Reply::json(200, body);
            match self.link(request, query.page, pages) {
                Some(link) => reply.header("Link", link),
                None => reply,
            }
        };
        let reply = reply
            .header("Cache-Control", "private, max-age=60, s-maxage=60")
            .header("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP,Accept-Encoding, Accept, X-Requested-With")
            .header("ETag", etag)
            .header("Last-Modified", last_modified)
            .header("X-Poll-Interval", state.poll_interval.to_string())
            .header("X-GitHub-Media-Type", "github.v3; format=json")
            .header("x-github-api-version-selected", "2022-11-28");
        (state.budget.headers(reply), !not_modified, true)
    }

    /// The `Link` header for `page` of `pages`, with absolute URLs to this simulator that keep
    /// the request's other query parameters.
    fn link(&self, request: &ReceivedRequest, page: usize, pages: usize) -> Option<String> {
        if pages <= 1 && page <= 1 {
            return None;
        }
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("page"))
            .collect();
        let url = |page: usize| {
            let mut query = kept.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            format!("<{}{path}?{query}page={page}>", self.base)
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!(
                "{}; rel=\"prev\"",
                url(page.saturating_sub(1).min(pages))
            ));
        }
        if page < pages {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(pages)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        Some(links.join(", "))
    }
}

const SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.";

/// A minimal repository object with GitHub's URL templates.
fn repository(base: &str, repo: &Repo) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{base}/repos/{full_name}");
    let user = format!("{base}/users/{}", repo.owner);
    let mut owner = Map::new();
    for (key, value) in [
        ("login", json!(repo.owner)),
        ("id", json!(repo.owner_id)),
        (
            "node_id",
            json!(format!("O_kgDO{:08}", repo.owner_id % 100_000_000)),
        ),
        (
            "avatar_url",
            json!(format!(
                "https://avatars.githubusercontent.com/u/{}?v=4",
                repo.owner_id
            )),
        ),
        ("gravatar_id", json!("")),
        ("url", json!(user)),
        (
            "html_url",
            json!(format!("https://github.com/{}", repo.owner)),
        ),
        ("followers_url", json!(format!("{user}/followers"))),
        (
            "following_url",
            json!(format!("{user}/following{{/other_user}}")),
        ),
        ("gists_url", json!(format!("{user}/gists{{/gist_id}}"))),
        (
            "starred_url",
            json!(format!("{user}/starred{{/owner}}{{/repo}}")),
        ),
        ("subscriptions_url", json!(format!("{user}/subscriptions"))),
        ("organizations_url", json!(format!("{user}/orgs"))),
        ("repos_url", json!(format!("{user}/repos"))),
        ("events_url", json!(format!("{user}/events{{/privacy}}"))),
        (
            "received_events_url",
            json!(format!("{user}/received_events")),
        ),
        ("type", json!(repo.owner_type)),
        ("user_view_type", json!("public")),
        ("site_admin", json!(false)),
    ] {
        owner.insert(key.to_owned(), value);
    }
    let mut object = Map::new();
    for (key, value) in [
        ("id", json!(repo.id)),
        (
            "node_id",
            json!(format!("R_kgDO{:08}", repo.id % 100_000_000)),
        ),
        ("name", json!(repo.name)),
        ("full_name", json!(full_name)),
        ("private", json!(false)),
        ("owner", Value::Object(owner)),
        ("html_url", json!(format!("https://github.com/{full_name}"))),
        (
            "description",
            if repo.description.is_empty() {
                Value::Null
            } else {
                json!(repo.description)
            },
        ),
        ("fork", json!(false)),
        ("url", json!(api)),
    ] {
        object.insert(key.to_owned(), value);
    }
    for (key, suffix) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        object.insert(key.to_owned(), json!(format!("{api}{suffix}")));
    }
    Value::Object(object)
}

impl Service for Github {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        self.first_client.fire();
        match self.http_faults.take() {
            Some(HttpFault::Status {
                status,
                retry_after,
            }) => {
                let reply = self.fault_reply(status, retry_after);
                let authorized =
                    bearer(&request, &["Bearer", "token"]) == Some(self.config.token.as_str());
                self.record(&request, authorized, Some(status), false, None);
                return Answer::Reply(reply);
            }
            Some(HttpFault::Stall(delay)) => {
                async_io::Timer::after(delay).await;
            }
            Some(HttpFault::Drop) => {
                self.record(&request, false, None, false, None);
                return Answer::Drop;
            }
            None => {}
        }
        let (path, _) = split_target(&request.target);
        let (reply, counted, authorized) =
            match (request.method.as_str(), path.trim_end_matches('/')) {
                ("GET", "/notifications") => self.notifications(&request),
                _ => (Github::error(404, "Not Found"), false, false),
            };
        let request_id = {
            let mut state = self.lock();
            format!(
                "{}:{}:{}:{}:{}",
                fake::hex(&mut state.rng, 4).to_uppercase(),
                fake::hex(&mut state.rng, 5).to_uppercase(),
                fake::hex(&mut state.rng, 7).to_uppercase(),
                fake::hex(&mut state.rng, 7).to_uppercase(),
                fake::hex(&mut state.rng, 8).to_uppercase()
            )
        };
        let remaining = reply
            .headers
            .iter()
            .find(|(name, _)| name == "x-ratelimit-remaining")
            .and_then(|(_, value)| value.parse().ok());
        self.record(&request, authorized, Some(reply.status), counted, remaining);
        Answer::Reply(
            reply
                .header("X-GitHub-Request-Id", request_id)
                .header("Server", "github.com"),
        )
    }

    fn check_upgrade(&self, _request: &ReceivedRequest) -> Result<(), Reply> {
        Err(Github::error(404, "Not Found"))
    }

    async fn websocket(&self, _request: ReceivedRequest, _ws: Ws, _shutdown: Shutdown) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{HttpClient, json};
    use openflume_proto::{HttpRequest, HttpResponse};

    async fn start(config: GithubSimConfig) -> GithubSim {
        GithubSim::start(config).await.unwrap()
    }

    fn get(sim: &GithubSim, url: &str) -> HttpRequest {
        HttpRequest::new("GET", url)
            .header("Authorization", format!("Bearer {}", sim.token()))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "openflume-test")
    }

    /// The `rel` targets of a `Link` header.
    fn links(response: &HttpResponse) -> Vec<(String, String)> {
        response
            .header("Link")
            .unwrap_or_default()
            .split(", ")
            .filter(|l| !l.is_empty())
            .map(|link| {
                let (url, rel) = link.split_once("; rel=").unwrap();
                (
                    rel.trim_matches('"').to_owned(),
                    url.trim_matches(['<', '>']).to_owned(),
                )
            })
            .collect()
    }

    fn remaining(response: &HttpResponse) -> u32 {
        response
            .header("x-ratelimit-remaining")
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn pages_follow_links_then_validators_give_304() {
        smol::block_on(async {
            let sim = start(GithubSimConfig {
                initial_notifications: 120,
                poll_interval: 7,
                ..GithubSimConfig::default()
            })
            .await;
            let first = format!(
                "{}/notifications?all=false&participating=false&per_page=50",
                sim.api_url()
            );
            let mut client = HttpClient::connect(&first).await;

            let page1 = client.send(&get(&sim, &first)).await;
            assert_eq!(page1.status, 200);
            assert_eq!(page1.header("X-Poll-Interval"), Some("7"));
            let items = json(&page1);
            assert_eq!(items.as_array().unwrap().len(), 50);
            let item = &items[0];
            assert!(item["id"].is_string() && item["unread"] == true && item["reason"].is_string());
            assert!(item["last_read_at"].is_null());
            for field in ["title", "type"] {
                assert!(item["subject"][field].is_string(), "{field}");
            }
            assert!(
                item["subject"].get("url").is_some()
                    && item["subject"].get("latest_comment_url").is_some()
            );
            assert!(
                item["repository"]["full_name"]
                    .as_str()
                    .unwrap()
                    .contains('/')
            );
            assert!(item["repository"]["owner"]["login"].is_string());
            let id = item["id"].as_str().unwrap();
            assert_eq!(
                item["url"],
                format!("{}/notifications/threads/{id}", sim.api_url())
            );
            assert_eq!(
                item["subscription_url"],
                format!("{}/notifications/threads/{id}/subscription", sim.api_url())
            );
            let times: Vec<_> = items
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["updated_at"].as_str().unwrap().to_owned())
                .collect();
            assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

            let rels = links(&page1);
            let next = format!(
                "{}/notifications?all=false&participating=false&per_page=50&page=2",
                sim.api_url()
            );
            let last = next.replace("page=2", "page=3");
            assert_eq!(
                rels,
                vec![
                    ("next".to_owned(), next.clone()),
                    ("last".to_owned(), last.clone())
                ]
            );
            let page2 = client.send(&get(&sim, &next)).await;
            assert_eq!(json(&page2).as_array().unwrap().len(), 50);
            assert_eq!(
                links(&page2)
                    .iter()
                    .map(|(rel, _)| rel.as_str())
                    .collect::<Vec<_>>(),
                vec!["prev", "next", "last", "first"]
            );
            let page3 = client.send(&get(&sim, &last)).await;
            assert_eq!(json(&page3).as_array().unwrap().len(), 20);
            assert!(links(&page3).iter().all(|(rel, _)| rel != "next"));
            let mut ids: Vec<String> = [&page1, &page2, &page3]
                .iter()
                .flat_map(|p| {
                    json(p)
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i["id"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 120, "every thread exactly once");

            let modified = page1.header("Last-Modified").unwrap().to_owned();
            let etag = page1.header("ETag").unwrap().to_owned();
            assert!(etag.starts_with("W/\""));
            let conditional = |ims: Option<&str>, inm: Option<&str>| {
                let mut request = get(&sim, &first);
                if let Some(ims) = ims {
                    request = request.header("If-Modified-Since", ims);
                }
                if let Some(inm) = inm {
                    request = request.header("If-None-Match", inm);
                }
                request
            };
            let before = remaining(&page3);
            for (ims, inm) in [
                (Some(modified.as_str()), Some(etag.as_str())),
                (Some(&modified), None),
                (None, Some(&etag)),
            ] {
                let cached = client.send(&conditional(ims, inm)).await;
                assert_eq!(cached.status, 304, "{ims:?} {inm:?}");
                assert!(cached.body.is_empty());
                assert_eq!(cached.header("ETag"), Some(etag.as_str()));
                assert_eq!(cached.header("Last-Modified"), Some(modified.as_str()));
                assert_eq!(cached.header("X-Poll-Interval"), Some("7"));
                assert_eq!(remaining(&cached), before, "a 304 costs nothing");
            }

            let new_id = sim.add_notification();
            let fresh = client
                .send(&conditional(Some(&modified), Some(&etag)))
                .await;
            assert_eq!(fresh.status, 200);
            assert_eq!(json(&fresh)[0]["id"], new_id.as_str());
            assert_ne!(fresh.header("Last-Modified"), Some(modified.as_str()));
            assert_eq!(remaining(&fresh), before - 1);

            let records = sim.records();
            assert_eq!(
                records.statuses(),
                vec![
                    Some(200),
                    Some(200),
                    Some(200),
                    Some(304),
                    Some(304),
                    Some(304),
                    Some(200)
                ]
            );
            let conditional_record = records.requests.iter().nth(3).unwrap();
            assert_eq!(
                conditional_record.if_modified_since.as_deref(),
                Some(modified.as_str())
            );
            assert_eq!(
                conditional_record.if_none_match.as_deref(),
                Some(etag.as_str())
            );
            assert!(!conditional_record.counted && records.requests.iter().next().unwrap().counted);
        });
    }

    #[test]
    fn rate_limit_headers_count_down() {
        smol::block_on(async {
            let sim = start(GithubSimConfig::default()).await;
            let url = format!("{}/notifications", sim.api_url());
            let mut client = HttpClient::connect(&url).await;
            let mut seen = Vec::new();
            for _ in 0..3 {
                let response = client.send(&get(&sim, &url)).await;
                assert_eq!(response.header("x-ratelimit-limit"), Some("5000"));
                assert_eq!(response.header("x-ratelimit-resource"), Some("core"));
                let reset: i64 = response
                    .header("x-ratelimit-reset")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(reset > Timestamp::now().as_second());
                seen.push((
                    remaining(&response),
                    response.header("x-ratelimit-used").unwrap().to_owned(),
                    reset,
                ));
            }
            assert_eq!(
                seen.iter().map(|s| s.0).collect::<Vec<_>>(),
                vec![4999, 4998, 4997]
            );
            assert_eq!(
                seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
                vec!["1", "2", "3"]
            );
            assert!(seen.iter().all(|s| s.2 == seen[0].2), "one window");

            sim.inject(GithubAction::ExhaustRateLimit);
            let spent = client.send(&get(&sim, &url)).await;
            assert_eq!((spent.status, remaining(&spent)), (403, 0));
            assert!(
                json(&spent)["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("API rate limit exceeded")
            );
        });
    }

    #[test]
    fn errors_look_like_github() {
        smol::block_on(async {
            let sim = start(GithubSimConfig::default()).await;
            let url = format!("{}/notifications", sim.api_url());
            let mut client = HttpClient::connect(&url).await;
            let bad = client
                .send(&HttpRequest::new("GET", &url).header("Authorization", "Bearer ghp_wrong"))
                .await;
            assert_eq!(bad.status, 401);
            assert_eq!(json(&bad)["message"], "Bad credentials");
            assert_eq!(bad.header("x-ratelimit-limit"), Some("60"));
            let anonymous = client.send(&HttpRequest::new("GET", &url)).await;
            assert_eq!(
                (anonymous.status, json(&anonymous)["message"].as_str()),
                (401, Some("Requires authentication"))
            );

            sim.inject(GithubAction::Http {
                fault: HttpFault::Status {
                    status: 429,
                    retry_after: Some(2),
                },
                times: 1,
            });
            let limited = client.send(&get(&sim, &url)).await;
            assert_eq!(
                (limited.status, limited.header("retry-after")),
                (429, Some("2"))
            );
            assert!(
                json(&limited)["message"]
                    .as_str()
                    .unwrap()
                    .contains("secondary rate limit")
            );

            sim.inject(GithubAction::SecondaryRateLimit {
                retry_after: None,
                times: 1,
            });
            let secondary = client.send(&get(&sim, &url)).await;
            assert_eq!(
                (secondary.status, secondary.header("retry-after")),
                (403, None)
            );
            assert!(
                json(&secondary)["message"]
                    .as_str()
                    .unwrap()
                    .contains("secondary rate limit")
            );

            sim.inject(GithubAction::Http {
                fault: HttpFault::Status {
                    status: 502,
                    retry_after: None,
                },
                times: 1,
            });
            assert_eq!(client.send(&get(&sim, &url)).await.status, 502);
            let since = format!("{url}?since=yesterday");
            assert_eq!(client.send(&get(&sim, &since)).await.status, 422);
            sim.inject(GithubAction::Http {
                fault: HttpFault::Drop,
                times: 1,
            });
            assert!(client.try_send(&get(&sim, &url)).await.is_none());
            let ok = HttpClient::connect(&url).await.send(&get(&sim, &url)).await;
            assert_eq!(ok.status, 200);
            let statuses = sim.records().statuses();
            assert_eq!(
                statuses,
                vec![
                    Some(401),
                    Some(401),
                    Some(429),
                    Some(403),
                    Some(502),
                    Some(422),
                    None,
                    Some(200)
                ]
            );
        });
    }

    #[test]
    fn filters_and_touched_threads() {
        smol::block_on(async {
            let sim = start(GithubSimConfig {
                initial_notifications: 30,
                ..GithubSimConfig::default()
            })
            .await;
            let url = format!("{}/notifications", sim.api_url());
            let mut client = HttpClient::connect(&url).await;
            let threads = sim.threads();
            let oldest = threads.last().unwrap().clone();
            assert!(sim.touch(&oldest.id));
            assert!(!sim.touch("404"));
            let page = json(&client.send(&get(&sim, &url)).await);
            assert_eq!(
                page[0]["id"],
                oldest.id.as_str(),
                "the touched thread is the newest"
            );
            assert!(page[0]["updated_at"].as_str().unwrap() > oldest.updated_at.as_str());

            let participating = json(
                &client
                    .send(&get(&sim, &format!("{url}?participating=true")))
                    .await,
            );
            let reasons: Vec<_> = participating
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["reason"].as_str().unwrap().to_owned())
                .collect();
            assert!(
                !reasons.is_empty() && reasons.iter().all(|r| PARTICIPATING.contains(&r.as_str())),
                "{reasons:?}"
            );
            let newest = sim.threads()[1].updated_at.clone();
            let since = json(
                &client
                    .send(&get(&sim, &format!("{url}?since={newest}")))
                    .await,
            );
            assert_eq!(
                since.as_array().unwrap().len(),
                1,
                "only the touched thread is newer"
            );
        });
    }
}
