//! Signed webhook delivery from the durable log (feature `log`; `openflume serve --forward`):
//! one task per target drives an [`Outbox`] machine against the log and an HTTP client.
//!
//! The machine decides everything (order, signatures, retries, give-up, 410); this task only
//! reads the log when asked, sends the request, stores the state, and wakes the machine when the
//! log commits more ([`EventLog::committed_beyond`]), when the response comes, or at its
//! deadline. No polling.
//!
//! **Who holds an event, and who may forget it.** The log holds every event; a target holds
//! only its cursor and its head delivery's attempts, stored in the log's database
//! ([`EventLog::store_outbox_state`]) after every outcome and before the next request (the
//! outputs are performed in order). So delivery is **at least once, in order, per target**: a
//! crash loses nothing; the only repeat is an event whose 2xx came back but whose state was not
//! stored yet, sent again after the restart with the same `webhook-id`. A state that cannot be
//! stored (or a log that cannot be read) stops that target with an error log rather than sending
//! on unrecorded: the next start resumes from what was stored.
//!
//! **What is forwarded.** The events (never the logs: the forwarder's own logs go to the log
//! too, and a target must not be sent news about itself) that pass the target's
//! [`Filter`](openflume_log::Filter) (sources, types), after the cursor. A new target starts
//! after the last event committed when the forwarder starts, which is before the flume starts
//! (`serve` starts it so): every event of this run is forwarded.

use crate::http::{HttpClient, HttpClientError, HttpSettings};
use crate::net::{self, TlsError};
use futures_lite::future;
use openflume_log::{EventId, EventLog, Filter, Kind, LogError, Record};
use openflume_proto::outbox::{
    Outbox, OutboxConfig, OutboxInput, OutboxOutput, Pending, SOURCE, TargetState,
};
use openflume_proto::{ConfigError, HttpResponse, Item, Level, Log, Misuse, ReqId};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The HTTP client's own response timeout exceeds the machine's by this much: the machine's
/// deadline is the one that decides.
const CLIENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

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
}

/// One target as the metrics endpoint and status page see it.
///
/// ```
/// use openflume::ForwardStatus;
/// let status = ForwardStatus {
///     target: "https://hooks.example/in".into(),
///     queue_depth: 3,
///     delivered_through: 41,
///     attempts: 2,
///     disabled: false,
/// };
/// assert_eq!(status.queue_depth, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardStatus {
    /// The target's URL, credentials hidden.
    pub target: String,
    /// Events waiting for this target: read and not delivered, plus the committed ids not read
    /// yet (an upper bound for those: unread ids count even if the filter skips them).
    pub queue_depth: u64,
    /// Every matching event up to this id was delivered or given up.
    pub delivered_through: u64,
    /// Attempts made for the event in delivery (0 when none is failing).
    pub attempts: u32,
    /// The target answered 410 and gets nothing more.
    pub disabled: bool,
}

/// What a target's task shares with [`Forwarder::statuses`].
struct Shared {
    target: String,
    queue_depth: AtomicU64,
    delivered_through: AtomicU64,
    attempts: AtomicU32,
    disabled: AtomicBool,
}

impl Shared {
    fn update(&self, outbox: &Outbox) {
        let state = outbox.state();
        self.queue_depth
            .store(outbox.queue_depth(), Ordering::Relaxed);
        self.delivered_through
            .store(state.delivered_through, Ordering::Relaxed);
        self.attempts.store(state.attempts, Ordering::Relaxed);
        self.disabled.store(state.disabled, Ordering::Relaxed);
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
        let tls = if options.extra_roots.is_empty() {
            net::default_tls_config()
        } else {
            let mut store = rustls::RootCertStore::empty();
            for der in &options.extra_roots {
                net::add_root(&mut store, der.clone())?;
            }
            net::tls_config_with(store)
        };
        let mut runs = Vec::with_capacity(targets.len());
        let mut seen = std::collections::HashSet::new();
        // Everything this run appends comes after this: a new target forwards it all.
        let committed = log.committed_id().0;
        for target in targets {
            let name = target.config.target_name();
            if !seen.insert(target.config.url.clone()) {
                return Err(ForwardError::Duplicate { target: name });
            }
            let outbox = match Outbox::new(target.config.clone(), crate::clock::os_seed()) {
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
            let state = log.outbox_state(&target.config.url)?;
            let settings = HttpSettings {
                tls: tls.clone(),
                response_timeout: Duration::from_millis(target.config.request_timeout_ms)
                    + CLIENT_TIMEOUT_MARGIN,
                ..HttpSettings::default()
            };
            let shared = Arc::new(Shared {
                target: name,
                queue_depth: AtomicU64::new(0),
                delivered_through: AtomicU64::new(
                    state.as_ref().map_or(committed, |s| s.delivered_through),
                ),
                attempts: AtomicU32::new(state.as_ref().map_or(0, |s| s.attempts)),
                disabled: AtomicBool::new(state.as_ref().is_some_and(|s| s.disabled)),
            });
            runs.push(TargetRun {
                log: log.clone(),
                client: HttpClient::new(settings),
                key: target.config.url.clone(),
                filter: target.filter,
                outbox,
                shared,
                options: options.clone(),
                start: OutboxInput::Start { state, committed },
            });
        }
        let shared = runs.iter().map(|run| run.shared.clone()).collect();
        let tasks = runs.into_iter().map(|run| smol::spawn(run.run())).collect();
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
                delivered_through: shared.delivered_through.load(Ordering::Relaxed),
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
    /// load, cheap enough for every metrics scrape.
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
struct TargetRun {
    log: EventLog,
    client: HttpClient,
    /// The URL its state is stored under.
    key: String,
    filter: Filter,
    outbox: Outbox,
    shared: Arc<Shared>,
    options: ForwardOptions,
    start: OutboxInput,
}

/// What woke a target.
enum Wake {
    Response(ReqId, Result<HttpResponse, HttpClientError>),
    Committed,
    Timer,
}

impl TargetRun {
    async fn run(mut self) {
        let clock = crate::clock::Clock::new();
        let mut told = match &self.start {
            OutboxInput::Start { committed, .. } => *committed,
            _ => 0,
        };
        let start = std::mem::replace(&mut self.start, OutboxInput::Timer);
        let mut inputs = VecDeque::from([start]);
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
                            match self.read(after, limit).await {
                                Ok(read) => inputs.push_back(read),
                                Err(error) => return self.stop_on(error, "read the log").await,
                            }
                        }
                        OutboxOutput::Send { req, request, .. } => {
                            let client = self.client.clone();
                            let send = smol::spawn(async move { client.send(request).await });
                            in_flight = Some((req, send));
                        }
                        OutboxOutput::Persist(state) => {
                            if let Err(error) = self.persist(state).await {
                                return self.stop_on(error, "store its state").await;
                            }
                        }
                        OutboxOutput::Log(log) => self.emit_log(log).await,
                        _ => {}
                    }
                }
                self.shared.update(&self.outbox);
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
                self.log.committed_beyond(EventId(told)).await;
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
                    told = self.log.committed_id().0;
                    inputs.push_back(OutboxInput::Committed { last_id: told });
                }
                Wake::Timer => inputs.push_back(OutboxInput::Timer),
            }
        }
    }

    /// The events after `after` the filter passes, at most `limit`, and how far the read
    /// covered the log.
    async fn read(&self, after: u64, limit: usize) -> Result<OutboxInput, LogError> {
        let log = self.log.clone();
        let filter = self.filter.clone();
        smol::unblock(move || {
            // Everything up to `horizon` was committed before the read starts: a short read
            // has looked at all of it, matching or not.
            let horizon = log.committed_id().0;
            let entries = log.read_after(EventId(after), limit, &filter)?;
            let full = entries.len() >= limit;
            let last = entries.last().map_or(after, |entry| entry.event_id.0);
            let up_to = if full { last } else { last.max(horizon) };
            let items = entries
                .into_iter()
                .filter(|entry| entry.record.kind == Kind::Event)
                .map(|entry| Pending {
                    event_id: entry.event_id.0,
                    body: entry.line(),
                })
                .collect();
            Ok(OutboxInput::Read { items, up_to })
        })
        .await
    }

    async fn persist(&self, state: TargetState) -> Result<(), LogError> {
        let log = self.log.clone();
        let key = self.key.clone();
        smol::unblock(move || log.store_outbox_state(&key, &state)).await
    }

    /// Appends `log` to the log and hands it to the callback, when at or above the level.
    async fn emit_log(&self, log: Log) {
        if log.level < self.options.min_level {
            return;
        }
        if let Some(on_log) = &self.options.on_log {
            on_log(&log);
        }
        let record = Record::from_item(&Item::Log(log));
        // Committed before the next output is performed: a give-up or a 410 is in the log
        // before the state that acts on it is stored. (A log that cannot be appended is only
        // lost: the state alone decides what is sent.)
        if let Ok(appended) = self.log.append_async(vec![record], Vec::new()).await {
            let _ = appended.await;
        }
    }

    /// The log cannot be used: this target stops, with an error log saying so. Its stored state
    /// is where the next start resumes.
    async fn stop_on(&self, error: LogError, what: &str) {
        let message = format!(
            "{}: cannot {what}; forwarding to it stopped until the next start",
            self.shared.target
        );
        let log = Log::new(
            Level::Error,
            SOURCE,
            "forward.stopped",
            message,
            crate::clock::wall_now(),
        )
        .with_error(error.to_string())
        .with_detail(serde_json::json!({ "target": self.shared.target }));
        self.emit_log(log).await;
    }
}
