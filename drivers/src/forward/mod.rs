//! Signed webhook delivery from the durable log (feature `log`; `openflume serve --forward`):
//! one task per target drives an [`Outbox`] machine against the log and an HTTP client.
//!
//! The machine decides everything (order, signatures, retries, give-up, 410); this task only
//! reads the log when asked, sends the request, stores the state, and wakes the machine when the
//! log commits more, when the response comes, or at its deadline. No polling.
//!
//! **The log** is a [`ForwardStore`] (`store.rs`): the SQLite log ([`Forwarder::start`], states
//! in its database), or a Redis Stream (`serve --sink redis://…/STREAM`, states in the hash
//! `STREAM:forward`, see [`crate::redis::forward`]). The rules below hold for both; only the
//! positions differ (the event's id, or its stream id, which is then `webhook-id`).
//!
//! **Who holds an event, and who may forget it.** The log holds every event; a target holds
//! only its cursor and its head delivery's attempts, stored beside the log
//! ([`ForwardStore::store_state`]) after every outcome and before the next request (the outputs
//! are performed in order). So delivery is **at least once, in order, per target**: a crash
//! loses nothing; the only repeat is an event whose 2xx came back but whose state was not stored
//! yet, sent again after the restart with the same `webhook-id`. A state that cannot be stored
//! (or a log that cannot be read) is never sent past: the target waits and tries again while
//! the failure may pass (Redis restarting, with a warning), or stops with an error log when it
//! will not (the SQLite log failing): the next start resumes from what was stored.
//!
//! **What is forwarded.** The events (never the logs: the forwarder's own logs go to the log
//! too, and a target must not be sent news about itself) that pass the target's
//! [`Filter`](openflume_log::Filter) (sources, types), after the cursor. A new target starts
//! after the last event committed when the forwarder starts, which is before the flume starts
//! (`serve` starts it so): every event of this run is forwarded.

mod store;

#[cfg(feature = "cli")]
pub(crate) use store::{Count, Page};
pub(crate) use store::{ForwardStore, StoreError};

use crate::http::{HttpClient, HttpClientError, HttpSettings};
use crate::lock::lock;
use crate::net::{self, TlsError};
use futures_lite::future;
use openflume_log::{EventLog, Filter, LogError};
use openflume_proto::hub::HubPosition;
use openflume_proto::outbox::{
    Outbox, OutboxConfig, OutboxInput, OutboxOutput, SOURCE, TargetState,
};
use openflume_proto::{ConfigError, HttpResponse, Level, Log, Misuse, ReqId};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::LogStore;

/// The HTTP client's own response timeout exceeds the machine's by this much: the machine's
/// deadline is the one that decides.
const CLIENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// The first and the longest wait before a store that failed is tried again.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// A forwarding target: where, signed how, how patiently ([`OutboxConfig`]), and which events.
///
/// `Debug` hides the secret.
///
/// ```
/// use openflume::ForwardTarget;
/// use openflume::log::Filter;
/// use openflume_proto::outbox::OutboxConfig;
/// let target = ForwardTarget::new(OutboxConfig::new("https://hooks.example/in", "s3cret"))
///     .filter(Filter { sources: Some(vec!["slack".into()]), types: None });
/// assert!(!format!("{target:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug)]
pub struct ForwardTarget {
    config: OutboxConfig,
    filter: Filter,
}

impl ForwardTarget {
    /// A target forwarding every event.
    ///
    /// ```
    /// use openflume::ForwardTarget;
    /// use openflume_proto::outbox::OutboxConfig;
    /// let target = ForwardTarget::new(OutboxConfig::new("http://127.0.0.1:9000/", "k"));
    /// assert_eq!(target.url(), "http://127.0.0.1:9000/");
    /// ```
    pub fn new(config: OutboxConfig) -> ForwardTarget {
        ForwardTarget {
            config,
            filter: Filter::default(),
        }
    }

    /// Forwards only the events `filter` passes (its `types` are event types).
    ///
    /// ```
    /// use openflume::ForwardTarget;
    /// use openflume::log::Filter;
    /// use openflume_proto::outbox::OutboxConfig;
    /// let ticks = Filter { sources: Some(vec!["time".into()]), types: Some(vec!["tick".into()]) };
    /// let target = ForwardTarget::new(OutboxConfig::new("http://127.0.0.1:9000/", "k")).filter(ticks);
    /// # let _ = target;
    /// ```
    pub fn filter(mut self, filter: Filter) -> ForwardTarget {
        self.filter = filter;
        self
    }

    /// The URL: also the key its state is stored under.
    ///
    /// ```
    /// use openflume::ForwardTarget;
    /// use openflume_proto::outbox::OutboxConfig;
    /// let target = ForwardTarget::new(OutboxConfig::new("https://hooks.example/in", "k"));
    /// assert_eq!(target.url(), "https://hooks.example/in");
    /// ```
    pub fn url(&self) -> &str {
        &self.config.url
    }
}

/// Called with each log a target writes (retries, give-ups, a 410), besides the log itself.
///
/// ```
/// use openflume::ForwardLogCallback;
/// use openflume_proto::Level;
/// let to_stderr: ForwardLogCallback = std::sync::Arc::new(|log| {
///     if log.level >= Level::Warn {
///         eprintln!("{}", log.message);
///     }
/// });
/// # let _ = to_stderr;
/// ```
pub type ForwardLogCallback = Arc<dyn Fn(&Log) + Send + Sync>;

/// How the forwarder runs.
///
/// ```
/// use openflume::ForwardOptions;
/// use openflume_proto::Level;
/// let options = ForwardOptions {
///     min_level: Level::Warn,
///     on_log: Some(std::sync::Arc::new(|log| eprintln!("{}", log.message))),
///     ..ForwardOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct ForwardOptions {
    /// Logs below this level are neither appended to the log nor passed to `on_log`. Default
    /// `Info`.
    pub min_level: Level,
    /// Also trust these DER certificates for `https://` targets, besides the bundled roots and
    /// the OS trust store (`--ca-cert`).
    pub extra_roots: Vec<Vec<u8>>,
    /// Called with every log at or above `min_level`.
    pub on_log: Option<ForwardLogCallback>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            min_level: Level::Info,
            extra_roots: Vec::new(),
            on_log: None,
        }
    }
}

impl std::fmt::Debug for ForwardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardOptions")
            .field("min_level", &self.min_level)
            .field("extra_roots", &self.extra_roots.len())
            .field("on_log", &self.on_log.is_some())
            .finish()
    }
}

/// Why the forwarder could not start. Messages name the target by its URL (credential query
/// parameters hidden), never its secret.
///
/// ```
/// use openflume::{ForwardError, ForwardOptions, ForwardTarget, Forwarder};
/// use openflume::log::{EventLog, LogOptions};
/// use openflume_proto::outbox::OutboxConfig;
/// # let dir = tempfile::tempdir()?;
/// let log = EventLog::open(dir.path(), LogOptions::default())?;
/// let bad = ForwardTarget::new(OutboxConfig::new("ftp://hooks.example/in", "s3cret"));
/// let error = Forwarder::start(&log, vec![bad], ForwardOptions::default()).unwrap_err();
/// assert!(matches!(error, ForwardError::Config { .. }));
/// assert!(error.to_string().starts_with("ftp://hooks.example/in: forward: url:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// A target's configuration cannot work.
    #[error("{target}: {error}")]
    Config {
        /// The target's URL, credentials hidden.
        target: String,
        /// What is wrong (boxed: the error type stays small).
        error: Box<ConfigError>,
    },
    /// The same URL twice: its state would be shared.
    #[error("{target} is given twice")]
    Duplicate {
        /// The target's URL, credentials hidden.
        target: String,
    },
    /// An extra root certificate was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The stored states could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The stored states could not be read from Redis (`serve --sink redis://…`).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
}

impl From<StoreError> for ForwardError {
    fn from(error: StoreError) -> ForwardError {
        match error {
            StoreError::Log(error) => ForwardError::Log(error),
            #[cfg(feature = "cli")]
            StoreError::Redis(error) => ForwardError::Redis(error),
        }
    }
}

/// One target as the metrics endpoint and status page see it.
///
/// ```
/// use openflume::ForwardStatus;
/// let status = ForwardStatus {
///     target: "https://hooks.example/in".into(),
///     queue_depth: 3,
///     delivered_through: "41".into(),
///     attempts: 2,
///     disabled: false,
/// };
/// assert_eq!(status.queue_depth, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardStatus {
    /// The target's URL, credentials hidden.
    pub target: String,
    /// Events waiting for this target: read and not delivered, plus the items committed and not
    /// read yet (an upper bound for those: unread items count even if the filter skips them).
    /// Over a Redis Stream the unread ones are counted from the stream's `entries-added`
    /// (Redis 7 and later; before, only the events read are counted).
    pub queue_depth: u64,
    /// Every matching event up to this position was delivered or given up: the event's id in
    /// the SQLite log (`41`), or its stream id (`1764100000000-0`).
    pub delivered_through: String,
    /// Attempts made for the event in delivery (0 when none is failing).
    pub attempts: u32,
    /// The target answered 410 and gets nothing more.
    pub disabled: bool,
}

/// What a target's task shares with [`Forwarder::statuses`].
struct Shared {
    target: String,
    queue_depth: AtomicU64,
    /// The cursor as text (written only when it moves).
    delivered_through: Mutex<String>,
    attempts: AtomicU32,
    disabled: AtomicBool,
}

impl Shared {
    fn update<P: HubPosition>(&self, outbox: &Outbox<P>, queue_depth: u64) {
        let state = outbox.state();
        self.queue_depth.store(queue_depth, Ordering::Relaxed);
        let through = state.delivered_through.to_string();
        let mut shown = lock(&self.delivered_through);
        if *shown != through {
            *shown = through;
        }
        drop(shown);
        self.attempts.store(state.attempts, Ordering::Relaxed);
        self.disabled.store(state.disabled, Ordering::Relaxed);
    }
}

/// A target's queue depth, counted in items appended (see `store.rs`): the events its outbox
/// read and holds, plus the items committed beyond what it read.
#[derive(Clone, Copy, Debug, Default)]
struct Depth {
    /// The count at the outbox's read position.
    read: Option<u64>,
    /// The count of everything committed.
    committed: Option<u64>,
}

impl Depth {
    /// A read moved the read position (`Past` counts from the last known one).
    fn after_read(&mut self, count: store::Count) {
        self.read = match count {
            store::Count::At(at) => Some(at),
            store::Count::Past(more) => self.read.map(|read| read.saturating_add(more)),
        };
        self.committed = self.committed.max(self.read);
    }

    /// The depth, with `queued` events read and not delivered. Unread items are counted only
    /// when both ends are known.
    fn value(&self, queued: usize) -> u64 {
        let unread = match (self.committed, self.read) {
            (Some(committed), Some(read)) => committed.saturating_sub(read),
            _ => 0,
        };
        unread.saturating_add(queued as u64)
    }
}

/// The running forwarder: one task per target on smol's executor. Dropping it stops them (a
/// request in flight is abandoned; its event is sent again by the next start).
///
/// ```no_run
/// use openflume::{ForwardOptions, ForwardTarget, Forwarder};
/// use openflume::log::{EventLog, LogOptions};
/// use openflume_proto::outbox::OutboxConfig;
/// let log = EventLog::open("/var/lib/openflume".as_ref(), LogOptions::default())?;
/// let secret = std::env::var("OPENFLUME_FORWARD_SECRET")?;
/// let target = ForwardTarget::new(OutboxConfig::new("https://hooks.example/in", secret));
/// let forwarder = Forwarder::start(&log, vec![target], ForwardOptions::default())?;
/// // … append to the log (Flume::log_into) …
/// println!("waiting: {}", forwarder.queue_depth());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Forwarder {
    shared: Vec<Arc<Shared>>,
    tasks: Vec<smol::Task<()>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("targets", &self.statuses())
            .finish()
    }
}

impl Forwarder {
    /// Checks every target, reads their stored states, and starts one task per target. Start
    /// it before the flume that appends to `log`: a new target forwards what comes after the
    /// last event committed now.
    ///
    /// ```
    /// use openflume::{ForwardOptions, ForwardTarget, Forwarder};
    /// use openflume::log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::OutboxConfig;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// let target = ForwardTarget::new(OutboxConfig::new("http://127.0.0.1:9/", "k"));
    /// let forwarder = Forwarder::start(&log, vec![target], ForwardOptions::default())?;
    /// assert_eq!(forwarder.statuses()[0].target, "http://127.0.0.1:9/");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(
        log: &EventLog,
        targets: Vec<ForwardTarget>,
        options: ForwardOptions,
    ) -> Result<Forwarder, ForwardError> {
        let store = Arc::new(LogStore { log: log.clone() });
        smol::block_on(Forwarder::start_on(store, targets, options))
    }

    /// [`start`](Self::start) over any [`ForwardStore`]: the SQLite log, or a Redis Stream
    /// (`serve --sink redis://…`). Checks every target, reads their stored states, and starts
    /// one task per target; a new target forwards what comes after the position committed now.
    pub(crate) async fn start_on<S: ForwardStore>(
        store: Arc<S>,
        targets: Vec<ForwardTarget>,
        options: ForwardOptions,
    ) -> Result<Forwarder, ForwardError> {
        let tls = if options.extra_roots.is_empty() {
            net::default_tls_config()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for der in &options.extra_roots {
                net::add_root(&mut roots, der.clone())?;
            }
            net::tls_config_with(roots)
        };
        let mut runs = Vec::with_capacity(targets.len());
        let mut seen = std::collections::HashSet::new();
        // Everything this run appends comes after this: a new target forwards it all.
        let committed = store.committed();
        for target in targets {
            let name = target.config.target_name();
            if !seen.insert(target.config.url.clone()) {
                return Err(ForwardError::Duplicate { target: name });
            }
            let outbox = match Outbox::counting(target.config.clone(), crate::clock::os_seed()) {
                Ok(outbox) => outbox,
                Err(Misuse::Config(error)) => {
                    return Err(ForwardError::Config {
                        target: name,
                        error: Box::new(error),
                    });
                }
                Err(other) => {
                    return Err(ForwardError::Config {
                        target: name,
                        error: Box::new(ConfigError::Invalid {
                            field: "forward",
                            reason: other.to_string(),
                        }),
                    });
                }
            };
            let state = store.state(&target.config.url).await?;
            let settings = HttpSettings {
                tls: tls.clone(),
                response_timeout: Duration::from_millis(target.config.request_timeout_ms)
                    + CLIENT_TIMEOUT_MARGIN,
                ..HttpSettings::default()
            };
            let through = state.as_ref().map_or(committed, |s| s.delivered_through);
            let shared = Arc::new(Shared {
                target: name,
                queue_depth: AtomicU64::new(0),
                delivered_through: Mutex::new(through.to_string()),
                attempts: AtomicU32::new(state.as_ref().map_or(0, |s| s.attempts)),
                disabled: AtomicBool::new(state.as_ref().is_some_and(|s| s.disabled)),
            });
            let run = TargetRun {
                store: store.clone(),
                client: HttpClient::new(settings),
                key: target.config.url.clone(),
                filter: target.filter,
                outbox,
                shared,
                options: options.clone(),
                depth: Depth::default(),
            };
            runs.push((run, state));
        }
        let shared = runs.iter().map(|(run, _)| run.shared.clone()).collect();
        let tasks = runs
            .into_iter()
            .map(|(run, state)| smol::spawn(run.run(state, committed)))
            .collect();
        Ok(Forwarder { shared, tasks })
    }

    /// Every target's status, in the order they were given.
    ///
    /// ```
    /// use openflume::{ForwardOptions, ForwardTarget, Forwarder};
    /// use openflume::log::{EventLog, LogOptions};
    /// use openflume_proto::outbox::OutboxConfig;
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// let target = ForwardTarget::new(OutboxConfig::new("http://127.0.0.1:9/", "k"));
    /// let forwarder = Forwarder::start(&log, vec![target], ForwardOptions::default())?;
    /// let status = &forwarder.statuses()[0];
    /// assert_eq!((status.queue_depth, status.disabled), (0, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn statuses(&self) -> Vec<ForwardStatus> {
        self.shared
            .iter()
            .map(|shared| ForwardStatus {
                target: shared.target.clone(),
                queue_depth: shared.queue_depth.load(Ordering::Relaxed),
                delivered_through: lock(&shared.delivered_through).clone(),
                attempts: shared.attempts.load(Ordering::Relaxed),
                disabled: shared.disabled.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The forward queue depth: the sum of every target's (see [`ForwardStatus::queue_depth`]).
    ///
    /// ```
    /// use openflume::{ForwardOptions, Forwarder};
    /// use openflume::log::{EventLog, LogOptions};
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// let forwarder = Forwarder::start(&log, vec![], ForwardOptions::default())?;
    /// assert_eq!(forwarder.queue_depth(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_depth(&self) -> u64 {
        self.shared
            .iter()
            .map(|shared| shared.queue_depth.load(Ordering::Relaxed))
            .sum()
    }

    /// Each target (its URL, credentials hidden) with a reader of its queue depth: an atomic
    /// load, cheap enough for every metrics scrape (`serve`'s `/metrics`, so the CLI's).
    #[cfg(feature = "cli")]
    pub(crate) fn depth_readers(&self) -> Vec<(String, impl Fn() -> u64 + Send + Sync + 'static)> {
        self.shared
            .iter()
            .map(|shared| {
                let shared = shared.clone();
                let target = shared.target.clone();
                (target, move || shared.queue_depth.load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Stops every target's task and waits until they are gone. What was stored stays: the
    /// next start resumes from it.
    ///
    /// ```
    /// use openflume::{ForwardOptions, Forwarder};
    /// use openflume::log::{EventLog, LogOptions};
    /// # let dir = tempfile::tempdir()?;
    /// let log = EventLog::open(dir.path(), LogOptions::default())?;
    /// let forwarder = Forwarder::start(&log, vec![], ForwardOptions::default())?;
    /// smol::block_on(forwarder.stop());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn stop(self) {
        for task in self.tasks {
            task.cancel().await;
        }
    }
}

/// One target's task.
struct TargetRun<S: ForwardStore> {
    store: Arc<S>,
    client: HttpClient,
    /// The URL its state is stored under.
    key: String,
    filter: Filter,
    outbox: Outbox<S::Position>,
    shared: Arc<Shared>,
    options: ForwardOptions,
    depth: Depth,
}

/// What woke a target.
enum Wake {
    Response(ReqId, Result<HttpResponse, HttpClientError>),
    Committed,
    Timer,
}

impl<S: ForwardStore> TargetRun<S> {
    /// Drives the outbox from its stored `state` (`None` for a new target, which starts after
    /// `committed`) until it is disabled, the store fails for good, or the task is cancelled.
    async fn run(mut self, state: Option<TargetState<S::Position>>, committed: S::Position) {
        let clock = crate::clock::Clock::new();
        let mut told = committed;
        // The outbox reads from its cursor: the depth counts from there.
        let from = state.as_ref().map_or(committed, |s| s.delivered_through);
        self.depth.read = self.store.count_at(from).await;
        self.depth.committed = self.store.count_committed().await;
        let mut inputs = VecDeque::from([OutboxInput::Start { state, committed }]);
        let mut in_flight: Option<(ReqId, smol::Task<Result<HttpResponse, HttpClientError>>)> =
            None;
        loop {
            // One input, then every output it caused, in order (the drain rule): a Persist is
            // stored before the Send after it. Inputs that outputs produce wait their turn.
            while let Some(input) = inputs.pop_front() {
                if self.outbox.handle_input(clock.now(), input).is_err() {
                    return;
                }
                while let Some(output) = self.outbox.poll_output() {
                    match output {
                        OutboxOutput::ReadLog { after, limit } => {
                            let read = self
                                .patiently("read the log", || {
                                    self.store.read(after, limit, &self.filter)
                                })
                                .await;
                            match read {
                                Ok(page) => {
                                    self.depth.after_read(page.count);
                                    inputs.push_back(OutboxInput::Read {
                                        items: page.items,
                                        up_to: page.up_to,
                                    });
                                }
                                Err(error) => return self.stop_on(error, "read the log").await,
                            }
                        }
                        OutboxOutput::Send { req, request, .. } => {
                            let client = self.client.clone();
                            let send = smol::spawn(async move { client.send(request).await });
                            in_flight = Some((req, send));
                        }
                        OutboxOutput::Persist(state) => {
                            let stored = self
                                .patiently("store its state", || {
                                    self.store.store_state(&self.key, &state)
                                })
                                .await;
                            if let Err(error) = stored {
                                return self.stop_on(error, "store its state").await;
                            }
                        }
                        OutboxOutput::Log(log) => self.emit_log(log).await,
                        _ => {}
                    }
                }
                if self.outbox.is_finished() {
                    // Disabled: what it read and dropped waits in the log again, counted from
                    // the cursor as after a restart.
                    let through = self.outbox.state().delivered_through;
                    self.depth.read = self.store.count_at(through).await;
                }
                self.shared
                    .update(&self.outbox, self.depth.value(self.outbox.queued()));
            }
            if self.outbox.is_finished() {
                return;
            }
            // A request the outbox timed out is dropped (and its connection with it).
            if in_flight.as_ref().map(|(req, _)| *req) != self.outbox.in_flight() {
                in_flight = None;
            }
            let deadline = self.outbox.poll_timeout();
            let response = async {
                match in_flight.as_mut() {
                    Some((req, task)) => Wake::Response(*req, task.await),
                    None => future::pending().await,
                }
            };
            let committed = async {
                self.store.committed_beyond(told).await;
                Wake::Committed
            };
            let timer = async {
                match deadline {
                    Some(at) => {
                        async_io::Timer::at(clock.instant_at(at)).await;
                    }
                    None => future::pending::<()>().await,
                }
                Wake::Timer
            };
            match future::or(response, future::or(committed, timer)).await {
                Wake::Response(req, result) => {
                    in_flight = None;
                    inputs.push_back(match result {
                        Ok(response) => OutboxInput::Response {
                            req,
                            status: response.status,
                        },
                        Err(error) => OutboxInput::RequestFailed {
                            req,
                            error: error.to_string(),
                        },
                    });
                }
                Wake::Committed => {
                    told = self.store.committed();
                    if let Some(count) = self.store.count_committed().await {
                        self.depth.committed = Some(count);
                    }
                    inputs.push_back(OutboxInput::Committed { last_id: told });
                }
                Wake::Timer => inputs.push_back(OutboxInput::Timer),
            }
        }
    }

    /// `attempt` until it works, or until it fails in a way that does not pass. A failure
    /// that may pass (Redis restarting) is tried again after a growing wait, nothing else
    /// happening meanwhile (so no request goes out before its state is stored), with a warning
    /// at the first failure and a note once it works again.
    async fn patiently<T, F>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut wait = STORE_RETRY_FIRST;
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Ok(value) => {
                    if failures > 0 {
                        let message = format!(
                            "{}: could {what} again after {failures} failed attempt(s)",
                            self.shared.target
                        );
                        self.note(Level::Info, "forward.store_recovered", message, None)
                            .await;
                    }
                    return Ok(value);
                }
                Err(error) if error.passes() => {
                    failures += 1;
                    if failures == 1 {
                        let message = format!(
                            "{}: cannot {what}; trying again (nothing is sent meanwhile)",
                            self.shared.target
                        );
                        let error = Some(error.to_string());
                        self.note(Level::Warn, "forward.store_failed", message, error)
                            .await;
                    }
                    async_io::Timer::after(wait).await;
                    wait = (wait * 2).min(STORE_RETRY_MAX);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Logs `message` about this target (with `error`, if any) as the outbox's logs go.
    async fn note(&self, level: Level, action: &str, message: String, error: Option<String>) {
        let mut log = Log::new(level, SOURCE, action, message, crate::clock::wall_now())
            .with_detail(serde_json::json!({ "target": self.shared.target }));
        if let Some(error) = error {
            log = log.with_error(error);
        }
        self.emit_log(log).await;
    }

    /// Appends `log` to the log and hands it to the callback, when at or above the level.
    async fn emit_log(&self, log: Log) {
        if log.level < self.options.min_level {
            return;
        }
        if let Some(on_log) = &self.options.on_log {
            on_log(&log);
        }
        // In the log before the next output is performed: a give-up or a 410 is there before
        // the state that acts on it is stored.
        self.store.append_log(&log).await;
    }

    /// The log cannot be used: this target stops, with an error log saying so. Its stored state
    /// is where the next start resumes.
    async fn stop_on(&self, error: StoreError, what: &str) {
        let message = format!(
            "{}: cannot {what}; forwarding to it stopped until the next start",
            self.shared.target
        );
        let error = Some(error.to_string());
        self.note(Level::Error, "forward.stopped", message, error)
            .await;
    }
}
