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

mod rate_limit;
mod records;
mod rest;
#[cfg(test)]
mod tests;
mod threads;

pub use records::{GithubRecords, GithubRequest, GithubThread};

use crate::fake;
use crate::host::{Core, Host, SimState, Simulator};
use crate::records::Records;
use crate::scenario::{HttpFault, Pacer, Rate, Scenario};
use crate::server::{Answer, Reply, Service, Shutdown, Ws};
use fastrand::Rng;
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use rate_limit::Budget;
use rest::UNAUTHENTICATED_LIMIT;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::MutexGuard;
use std::time::Duration;
use threads::Thread;

/// How to run a [`GithubSim`].
///
/// ```
/// use openflume_sim::GithubSimConfig;
/// let config = GithubSimConfig { poll_interval: 5, initial_notifications: 120, ..GithubSimConfig::default() };
/// assert_eq!(config.rate_limit, 5000);
/// assert!(!format!("{config:?}").contains(config.token.expose()));
/// ```
#[derive(Clone, Debug)]
pub struct GithubSimConfig {
    /// Where to listen. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The token clients must present. Default [`GITHUB_TOKEN`](crate::GITHUB_TOKEN).
    pub token: openflume_proto::Secret,
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
            token: crate::GITHUB_TOKEN.into(),
            poll_interval: 60,
            rate_limit: 5000,
            rate_window: Duration::from_secs(3600),
            initial_notifications: 3,
            max_notifications: 1000,
            max_records: crate::records::DEFAULT_MAX_RECORDS,
            seed: 0x5eed,
            scenario: Scenario::manual(),
        }
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
    host: Host<Github>,
}

impl GithubSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: GithubSimConfig) -> io::Result<GithubSim> {
        let scenario = config.scenario.clone();
        let mut host =
            Host::start(config.bind, &scenario, |addr| Github::new(config, addr)).await?;
        if scenario.rate != Rate::Manual {
            host.spawn(|sim| async move {
                sim.core.first_client.waiter().wait().await;
                let mut pacer = Pacer::new(sim.config.scenario.rate);
                while let Some(count) = pacer.next().await {
                    sim.add(u32::try_from(count).unwrap_or(u32::MAX));
                }
            });
        }
        Ok(GithubSim { host })
    }

    /// The API base, `http://127.0.0.1:PORT` (for `OPENFLUME_GITHUB_API_URL`).
    pub fn api_url(&self) -> String {
        self.host.shared().base.clone()
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        self.host.shared().config.token.expose()
    }

    /// Does `action` now. Returns how many threads it added or touched (1 for the others).
    pub fn inject(&self, action: GithubAction) -> usize {
        self.host.shared().inject(action)
    }

    /// The `X-Poll-Interval` it sends now, in seconds.
    pub fn poll_interval(&self) -> u64 {
        self.host.shared().lock().poll_interval
    }

    /// Adds one new thread and returns its id.
    pub fn add_notification(&self) -> String {
        let github = self.host.shared();
        let mut state = github.lock();
        github.add_locked(&mut state).to_string()
    }

    /// New activity on thread `id`; false when there is no such thread.
    pub fn touch(&self, id: &str) -> bool {
        self.host.shared().touch(Some(id))
    }

    /// The threads, newest first.
    pub fn threads(&self) -> Vec<GithubThread> {
        let state = self.host.shared().lock();
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
}

crate::host::handle_methods!(GithubSim, GithubRecords);

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

/// The simulator's shared half.
struct Github {
    config: GithubSimConfig,
    base: String,
    core: Core<State>,
}

impl fmt::Debug for Github {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Github")
            .field("base", &self.base)
            .finish_non_exhaustive()
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
            core: Core::new(state),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.core.lock()
    }
}

impl Simulator for Github {
    type State = State;
    type Action = GithubAction;

    fn core(&self) -> &Core<State> {
        &self.core
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
                self.core.push_fault(fault, times);
                1
            }
        }
    }
}

impl Github {
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
}

impl SimState for State {
    type Records = GithubRecords;

    fn records(&self) -> &GithubRecords {
        &self.records
    }
}

impl Service for Github {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        self.rest(request).await
    }

    fn check_upgrade(&self, _request: &ReceivedRequest) -> Result<(), Reply> {
        Err(Github::error(404, "Not Found"))
    }

    async fn websocket(&self, _request: ReceivedRequest, _ws: Ws, _shutdown: Shutdown) {}
}
