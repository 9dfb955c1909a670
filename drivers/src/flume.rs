//! The public lifecycle: `Flume` (built: streams attach here) → `Running` (started; `started`
//! waits for the first connections) → `Closed`.

use crate::Source;
use crate::clock::Clock;
use crate::driver::DriverEnv;
use crate::http::{HttpClient, HttpSettings};
use crate::hub::{self, ErrorCallback, Hub, ItemCallback, Subscribers};
use crate::lock::lock;
use crate::metrics::{Meters, Metrics};
use crate::net::{self, TlsError};
use crate::record::Recorder;
use crate::sources::{SourceSet, SourceStatus, StartError, StartRules, StatusWatch};
use crate::stream::{ItemStream, Overflow};
use crate::ws::WsSettings;
use openflume_proto::{Checkpoint, Item, Level, Log};
use smol::channel::{Receiver, Sender};
use smol::lock::{Mutex as AsyncMutex, OnceCell};
use std::sync::Mutex;
use std::time::Duration;

/// Settings shared by `Flume` and `Confluence`.
pub(crate) struct Settings {
    pub(crate) min_level: Level,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) allow_partial: bool,
    pub(crate) shutdown_grace: Duration,
    pub(crate) ws: WsSettings,
    pub(crate) http: HttpSettings,
    pub(crate) recorder: Option<Recorder>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_level: Level::Debug,
            start_timeout: Some(Duration::from_secs(30)),
            allow_partial: false,
            shutdown_grace: Duration::from_secs(5),
            ws: WsSettings::default(),
            http: HttpSettings::default(),
            recorder: None,
        }
    }
}

impl Settings {
    /// Trusts `extra` besides the webpki roots: one configuration built here and shared by every
    /// connection. Without extra roots the process-wide default stays in place.
    fn trusting(mut self, extra: rustls::RootCertStore) -> Settings {
        if !extra.is_empty() {
            let tls = net::tls_config_with(extra);
            self.ws.tls = tls.clone();
            self.http.tls = tls;
        }
        self
    }

    pub(crate) fn start_rules(&self) -> StartRules {
        StartRules {
            timeout: self.start_timeout,
            allow_partial: self.allow_partial,
        }
    }

    pub(crate) fn env(&self, hub: Hub) -> DriverEnv {
        DriverEnv {
            hub,
            http: HttpClient::new(self.http.clone()),
            ws: self.ws.clone(),
            clock: Clock::new(),
            shutdown_grace: self.shutdown_grace,
            recorder: self.recorder.clone(),
            identify_gate: None,
        }
    }
}

/// Configures a [`Flume`].
///
/// ```
/// use openflume::{Flume, Source};
/// use openflume_proto::cron::{CronConfig, CronMachine};
/// let flume = Flume::builder()
///     .source(Source::custom("time", |seed| CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)))
///     .on_item(|item| println!("{}", serde_json::to_string(item).unwrap()))
///     .build();
/// assert_eq!(flume.source_names(), vec!["time"]);
/// ```
#[must_use]
pub struct FlumeBuilder {
    sources: Vec<Source>,
    on_item: Option<ItemCallback>,
    on_error: Option<ErrorCallback>,
    settings: Settings,
    extra_roots: rustls::RootCertStore,
}

impl FlumeBuilder {
    /// Adds a source.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let hourly = Source::custom("time", |seed| {
    ///     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// });
    /// let flume = Flume::builder().source(hourly).build();
    /// assert_eq!(flume.source_names(), ["time"]);
    /// ```
    pub fn source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    /// Adds several sources.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = |name: &str, expression: &'static str| {
    ///     Source::custom(name, move |seed| {
    ///         CronMachine::new(CronConfig::new(expression), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// let flume = Flume::builder()
    ///     .sources([tick("minutely", "* * * * *"), tick("hourly", "@hourly")])
    ///     .build();
    /// assert_eq!(flume.source_names(), ["minutely", "hourly"]);
    /// ```
    pub fn sources(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.sources.extend(sources);
        self
    }

    /// Calls `callback` for every item, in order. A panic in it is caught and reported as an
    /// `on_item.panic` error log; the sources keep running. A slow callback slows the sources
    /// (back-pressure) rather than growing memory: it runs in the task of the source that
    /// delivers the item, so a callback that blocks holds up that source's heartbeats too. Hand
    /// heavy work to a [`stream`](crate::Running::stream) or a thread.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume_proto::Item;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let flume = Flume::builder()
    ///     .source(cron)
    ///     .on_item(move |item| drop(tx.send(item.clone())))
    ///     .build();
    /// smol::block_on(async { flume.open().await?.close().await; Ok::<_, openflume::StartError>(()) })?;
    /// // Closing delivered everything in flight, the cron source's start log among it.
    /// assert!(rx.iter().any(|item| matches!(item, Item::Log(log) if log.action == "scheduler.start")));
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn on_item(mut self, callback: impl FnMut(&Item) + Send + 'static) -> Self {
        self.on_item = Some(Box::new(callback));
        self
    }

    /// Calls `callback` for every error-level log.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let flume = Flume::builder()
    ///     .source(cron)
    ///     .on_error(move |log| drop(tx.send(format!("{}: {}", log.source, log.message))))
    ///     .build();
    /// smol::block_on(async { flume.open().await?.close().await; Ok::<_, openflume::StartError>(()) })?;
    /// // A cron source has nothing to fail on: no error was reported.
    /// assert_eq!(rx.iter().count(), 0);
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn on_error(mut self, callback: impl FnMut(&Log) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(callback));
        self
    }

    /// Drops logs below `level` at the source, before they enter the firehose (default: debug, all).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// use openflume_proto::{Item, Level};
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).min_log_level(Level::Warn).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure);
    /// flume.open().await?.close().await;
    /// // The cron source's status and start logs are info: none of them came through.
    /// while let Some(item) = items.next().await {
    ///     assert!(!matches!(item, Item::Log(log) if log.level < Level::Warn));
    /// }
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn min_log_level(mut self, level: Level) -> Self {
        self.settings.min_level = level;
        self
    }

    /// Records every input the sources' machines are fed into `recorder`'s file, to replay
    /// the session later ([`replay`](crate::replay), `openflume replay`), serve it from the
    /// simulators, or keep it as a fixture. Secrets are left out. Call
    /// [`Recorder::finish`] once the flume is closed.
    ///
    /// ```
    /// use openflume::{Flume, RecordOptions, Recorder, Source};
    /// use openflume_proto::cron::CronConfig;
    /// # let dir = tempfile::tempdir()?;
    /// let recorder = Recorder::create(dir.path().join("cron.jsonl"), RecordOptions::default())?;
    /// let flume = Flume::builder()
    ///     .source(Source::cron(CronConfig::new("@daily"), jiff::tz::TimeZone::UTC))
    ///     .record(&recorder)
    ///     .build();
    /// smol::block_on(async { flume.open().await?.close().await; Ok::<_, openflume::StartError>(()) })?;
    /// // The start and the shutdown, at least.
    /// assert!(recorder.finish()?.inputs >= 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record(mut self, recorder: &Recorder) -> Self {
        self.settings.recorder = Some(recorder.clone());
        self
    }

    /// How long [`Running::started`] (and so `open`) waits for every source's first connection
    /// (default 30 s); `None` returns as soon as the sources are started. A source that is still
    /// retrying when it runs out fails the start, unless [`allow_partial`](Self::allow_partial).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume_proto::Status;
    /// use std::time::Duration;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).start_timeout(Some(Duration::from_secs(2))).build();
    /// let running = flume.open().await?;
    /// // A cron source connects at once, well within the timeout.
    /// assert_eq!(running.statuses()[0].status, Status::Connected);
    /// running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.start_timeout = timeout;
        self
    }

    /// Keeps the healthy sources running when others fail at start or do not connect within the
    /// [start timeout](Self::start_timeout) (default: off, one failure fails the start). The
    /// start then fails only when no source connected; the others stay visible in
    /// [`Running::statuses`] (failed, or reconnecting while they retry) and in their error logs.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::Status;
    /// let tick = |name: &str| {
    ///     Source::custom(name, |seed| {
    ///         CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(tick("a")).source(tick("b")).allow_partial(true).build().open().await?;
    /// assert!(running.statuses().iter().all(|s| s.status == Status::Connected));
    /// running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn allow_partial(mut self, allow: bool) -> Self {
        self.settings.allow_partial = allow;
        self
    }

    /// How long `close` lets sources finish their close handshakes (default 5 s), and deliver
    /// what they still hold to a consumer that is full.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume_proto::Status;
    /// use std::time::Duration;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).shutdown_grace(Duration::from_secs(1)).build();
    /// let closed = flume.open().await?.close().await;
    /// // A cron source has no handshake: it stops at once, well within the grace.
    /// assert_eq!(closed.statuses()[0].status, Status::Disconnected);
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Largest WebSocket message accepted (default 16 MiB). A larger one closes the connection
    /// (code 1009).
    ///
    /// ```no_run
    /// use openflume::{Flume, Source};
    /// use openflume_proto::discord::{DiscordConfig, DiscordShard};
    /// # smol::block_on(async {
    /// let config = DiscordConfig::new(std::env::var("DISCORD_TOKEN")?);
    /// let running = Flume::builder()
    ///     .source(Source::custom("discord", move |seed| DiscordShard::new(config, seed)))
    ///     .max_message_bytes(4 << 20)
    ///     .build()
    ///     .open()
    ///     .await?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # });
    /// ```
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.settings.ws.max_message_bytes = bytes;
        self
    }

    /// Connect/handshake timeout for WebSockets and HTTP (default 15 s).
    ///
    /// ```no_run
    /// use openflume::{Flume, Source};
    /// use openflume_proto::github::{GithubConfig, GithubMachine};
    /// use std::time::Duration;
    /// # smol::block_on(async {
    /// let config = GithubConfig::new(std::env::var("GITHUB_TOKEN")?);
    /// let running = Flume::builder()
    ///     .source(Source::custom("github", move |seed| GithubMachine::new(config, seed)))
    ///     .connect_timeout(Duration::from_secs(5)) // each connection attempt gives up after 5 s
    ///     .build()
    ///     .open()
    ///     .await?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # });
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.ws.connect_timeout = timeout;
        self.settings.http.connect_timeout = timeout;
        self
    }

    /// Trusts `der`, a DER-encoded X.509 certificate, as a TLS root for every `https://` and
    /// `wss://` connection of this flume, besides the built-in webpki roots and the OS trust
    /// store: a corporate proxy's CA, a self-hosted endpoint's own CA. (For a PEM file, use
    /// [`add_root_certificates_pem`](Self::add_root_certificates_pem).)
    ///
    /// The TLS configuration with the extra roots is built once, by [`build`](Self::build), and
    /// shared by every connection; a flume without extra roots uses the process-wide default.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidRootCertificate`] if `der` is not a certificate usable as a root.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let der = std::fs::read("corporate-ca.der")?;
    /// let flume = openflume::Flume::builder()
    ///     .add_root_certificate(der)?
    ///     /* .source(…) */
    ///     .build();
    /// # Ok(()) }
    /// ```
    ///
    /// ```
    /// use openflume::{Flume, TlsError};
    /// let refused = Flume::builder().add_root_certificate(b"not a certificate".to_vec());
    /// assert!(matches!(refused, Err(TlsError::InvalidRootCertificate { .. })));
    /// ```
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Result<Self, TlsError> {
        net::add_root(&mut self.extra_roots, der)?;
        Ok(self)
    }

    /// Trusts every certificate in `pem` (PEM text with one or more `CERTIFICATE` sections, as a
    /// corporate CA bundle comes) as a TLS root, like
    /// [`add_root_certificate`](Self::add_root_certificate) does for one DER certificate. Other
    /// sections (a key) are skipped. Nothing is added unless every certificate is usable.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidPem`] for text without a certificate or with a broken section,
    /// [`TlsError::InvalidRootCertificate`] for a certificate that cannot be a root. Neither
    /// quotes the text.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = std::fs::read("corporate-ca.pem")?;
    /// let flume = openflume::Flume::builder()
    ///     .add_root_certificates_pem(&pem)?
    ///     /* .source(…) */
    ///     .build();
    /// # Ok(()) }
    /// ```
    ///
    /// ```
    /// use openflume::{Flume, TlsError};
    /// let refused = Flume::builder().add_root_certificates_pem(b"no PEM here");
    /// assert!(matches!(refused, Err(TlsError::InvalidPem { .. })));
    /// ```
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        for der in net::parse_pem_roots(pem)? {
            net::add_root(&mut self.extra_roots, der)?;
        }
        Ok(self)
    }

    /// The names of the sources added so far.
    pub(crate) fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.name().to_owned()).collect()
    }

    pub(crate) fn into_parts(self) -> (Settings, Option<ItemCallback>, Option<ErrorCallback>) {
        (
            self.settings.trusting(self.extra_roots),
            self.on_item,
            self.on_error,
        )
    }

    /// The configured flume. Nothing connects yet: take its [streams](Flume::stream), then
    /// [`Flume::start`] starts the sources.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// let flume = Flume::builder().source(cron).build();
    /// assert_eq!(flume.source_names(), ["time"]);
    /// ```
    pub fn build(self) -> Flume {
        let (hub, subscribers) = hub::hub(self.settings.min_level, self.on_item, self.on_error);
        Flume {
            sources: self.sources,
            hub,
            subscribers,
            settings: self.settings.trusting(self.extra_roots),
        }
    }
}

impl std::fmt::Debug for FlumeBuilder {
    /// The sources by name and the settings that apply to all of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlumeBuilder")
            .field("sources", &self.sources)
            .field("min_level", &self.settings.min_level)
            .field("start_timeout", &self.settings.start_timeout)
            .field("allow_partial", &self.settings.allow_partial)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Flume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flume")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Running {
    /// The live statuses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("statuses", &self.statuses())
            .finish_non_exhaustive()
    }
}

/// A configured firehose whose sources have not started yet.
///
/// Every consumer that must see everything attaches here, before the start: a
/// [stream](Flume::stream), or a callback on the [builder](FlumeBuilder::on_item). Nothing runs
/// before [`start`](Flume::start), so no item (not even the first status log) can pass before
/// they are there: no start-up buffer, nothing to lose in a burst.
///
/// ```no_run
/// # use openflume::{Flume, Overflow, Source};
/// # smol::block_on(async {
/// let flume = Flume::builder() /* .source(…) */ .build();
/// let mut items = flume.stream(1000, Overflow::Backpressure);
/// let running = flume.start()?;
/// // Read while the sources connect: a back-pressure stream that nobody reads holds them up.
/// let reader = smol::spawn(async move {
///     while let Some(item) = items.next().await {
///         println!("{}", serde_json::to_string(&item).unwrap());
///     }
/// });
/// running.started().await?;
/// let closed = running.wait().await;
/// reader.await;
/// println!("{:?}", closed.statuses());
/// # Ok::<(), openflume::StartError>(())
/// # });
/// ```
pub struct Flume {
    sources: Vec<Source>,
    hub: Hub,
    subscribers: Subscribers,
    settings: Settings,
}

impl Flume {
    /// Starts configuring a flume.
    ///
    /// ```
    /// use openflume::Flume;
    /// let flume = Flume::builder().build();
    /// assert!(flume.source_names().is_empty());
    /// ```
    pub fn builder() -> FlumeBuilder {
        FlumeBuilder {
            sources: Vec::new(),
            on_item: None,
            on_error: None,
            settings: Settings::default(),
            extra_roots: rustls::RootCertStore::empty(),
        }
    }

    /// The names of the configured sources.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = |name: &str| {
    ///     Source::custom(name, |seed| {
    ///         CronMachine::new(CronConfig::new("@daily"), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// let flume = Flume::builder().source(tick("backup")).source(tick("report")).build();
    /// assert_eq!(flume.source_names(), ["backup", "report"]);
    /// ```
    pub fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(Source::name).collect()
    }

    /// A pull view of the whole firehose, from the first status log on, with a buffer of
    /// `capacity` items and the given overflow policy. With [`Overflow::Backpressure`] (the
    /// default policy) nothing is lost: a full stream slows the sources down, and upstream
    /// acknowledgements (Slack acks, GitHub cursors) wait until its consumer holds each event
    /// (see [`ItemStream::holds_until_commit`]). A drop policy is for display-like consumers that
    /// may miss items; each drop is counted and reported in the stream.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// use openflume_proto::Item;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure);
    /// flume.open().await?.close().await;
    /// // The very first item: the cron source's status log, idle → connected.
    /// let first = items.next().await;
    /// assert!(matches!(first, Some(Item::Log(log)) if log.action == "status"));
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn stream(&self, capacity: usize, overflow: Overflow) -> ItemStream {
        self.subscribers.subscribe(capacity, overflow)
    }

    /// Appends every item to the durable `log`, from the first status log on, and makes every
    /// upstream acknowledgement wait for the append: a Slack envelope is acked, GitHub's
    /// validators advance, a webhook gets its 200, only once the item's append has committed
    /// (fsynced) in the log. Attach it before [`start`](Flume::start), like a stream.
    ///
    /// It is a back-pressure stream of `capacity` items that
    /// [holds until commit](ItemStream::holds_until_commit), read by a thread that appends what
    /// is ready as one batch and commits the stream once the log committed it; while the log is
    /// slow the sources wait. [`LogSink::finished`](crate::LogSink::finished) reports how it
    /// ended. Fails only when its thread cannot start.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::log::{EventId, EventLog, Filter, LogOptions};
    /// # let dir = std::env::temp_dir().join(format!("openflume-doc-{}", std::process::id()));
    /// let log = EventLog::open(&dir, LogOptions::default())?;
    /// let flume = Flume::builder().source(cron).build();
    /// let sink = flume.log_into(log.clone(), 4096)?;
    /// # smol::block_on(async {
    /// flume.open().await?.close().await;
    /// let appended = sink.finished().await?; // the status logs of opening and closing, at least
    /// assert_eq!(log.read_after(EventId(0), 100, &Filter::default())?.len() as u64, appended);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), openflume::log::LogError>(())
    /// ```
    #[cfg(feature = "log")]
    pub fn log_into(
        &self,
        log: openflume_log::EventLog,
        capacity: usize,
    ) -> Result<crate::LogSink, openflume_log::LogError> {
        crate::LogSink::spawn(self.stream(capacity, Overflow::Backpressure), log)
    }

    /// Starts every source and returns at once; [`Running::started`] waits for the first
    /// connections. Fails only when a source cannot be built from its configuration: then
    /// nothing started, and the error names each such source.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = |expression: &'static str| {
    ///     Source::custom("time", move |seed| {
    ///         CronMachine::new(CronConfig::new(expression), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(tick("@hourly")).build().start()?;
    /// running.started().await?;
    /// running.close().await;
    /// let refused = Flume::builder().source(tick("every hour")).build().start();
    /// assert_eq!(refused.err().map(|e| e.failures[0].source.clone()).as_deref(), Some("time"));
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn start(self) -> Result<Running, StartError> {
        let env = self.settings.env(self.hub.clone());
        // The OS trust store could not be read (a broken SSL_CERT_FILE, say): the bundled roots
        // still work, so this is a warning, not a failure. Offered before any source runs, so
        // every stream has room for it.
        for error in net::trust_store_errors() {
            let log = Log {
                error: Some(error.clone()),
                ..Log::new(
                    Level::Warn,
                    "flume",
                    "tls.trust_store",
                    "cannot read the OS trust store; trusting the bundled and the added roots",
                    crate::clock::wall_now(),
                )
            };
            let _ = self.hub.offer(Item::Log(log), false);
        }
        // On failure the hub goes with this scope, which ends every stream.
        let set = SourceSet::spawn(self.sources, &env)?;
        Ok(Running::new(
            set,
            self.hub,
            self.subscribers,
            self.settings.start_rules(),
        ))
    }

    /// [`start`](Self::start), then [`Running::started`]: starts every source and waits for each
    /// to connect (see [`FlumeBuilder::start_timeout`] and [`FlumeBuilder::allow_partial`]). If
    /// the start fails, the flume is closed and the error names each failed source and why.
    ///
    /// Streams taken from this flume receive everything meanwhile. A back-pressure stream that
    /// nobody reads while `open` waits holds the sources up once it is full, and may make the
    /// start time out: read it from another task, or use `start` and `started`.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = |expression: &'static str| {
    ///     Source::custom("time", move |seed| {
    ///         CronMachine::new(CronConfig::new(expression), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(tick("@hourly")).build().open().await?;
    /// running.close().await;
    /// let refused = Flume::builder().source(tick("every hour")).build().open().await;
    /// assert_eq!(refused.err().map(|e| e.failures[0].source.clone()).as_deref(), Some("time"));
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub async fn open(self) -> Result<Running, StartError> {
        let running = self.start()?;
        running.started().await?;
        Ok(running)
    }
}

/// A started flume: sources running, items flowing.
///
/// Cheap to share by reference between tasks: `close` is idempotent and may be called from several
/// tasks at once; all of them get the same [`Closed`].
///
/// ```
/// # use openflume::{Flume, Source};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// # smol::block_on(async {
/// let running = Flume::builder().source(cron).build().open().await?;
/// let (first, second) = smol::future::zip(running.close(), running.close()).await;
/// assert_eq!(first, second);
/// # Ok::<(), openflume::StartError>(())
/// # })?;
/// # Ok::<(), openflume::StartError>(())
/// ```
pub struct Running {
    set: AsyncMutex<SourceSet>,
    watch: StatusWatch,
    hub: Mutex<Option<Hub>>,
    subscribers: Subscribers,
    rules: StartRules,
    started: OnceCell<Result<(), StartError>>,
    closed: OnceCell<Closed>,
    cancel: (Sender<bool>, Receiver<bool>),
    local_addrs: Vec<(String, std::net::SocketAddr)>,
    /// The sources' counters; they outlive the hub, so a closed flume still reads them.
    meters: std::sync::Arc<Meters>,
}

impl Running {
    fn new(set: SourceSet, hub: Hub, subscribers: Subscribers, rules: StartRules) -> Running {
        Running {
            meters: hub.meters().clone(),
            watch: set.watch(),
            local_addrs: set.local_addrs(),
            set: AsyncMutex::new(set),
            hub: Mutex::new(Some(hub)),
            subscribers,
            rules,
            started: OnceCell::new(),
            closed: OnceCell::new(),
            cancel: smol::channel::bounded(1),
        }
    }

    /// Waits for the sources' first connections (see [`FlumeBuilder::start_timeout`] and
    /// [`FlumeBuilder::allow_partial`]). A source failing for good (a bad token) fails the start
    /// at once; one that is still retrying (rate limited, network errors) fails it only when the
    /// timeout runs out. On failure the flume is closed, so every stream ends once drained, and
    /// the error names each failed source and why. Every call gets the same answer.
    ///
    /// ```
    /// use openflume::{Flume, Overflow, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// use openflume_proto::Status;
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(16, Overflow::Backpressure);
    /// let running = flume.start()?;
    /// running.started().await?;
    /// assert_eq!(running.statuses()[0].status, Status::Connected);
    /// running.close().await;
    /// assert!(items.next().await.is_some()); // what happened meanwhile is all there
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub async fn started(&self) -> Result<(), StartError> {
        self.started
            .get_or_init(|| async {
                let result = self.watch.settle(self.rules).await;
                if result.is_err() {
                    self.close().await;
                }
                result
            })
            .await
            .clone()
    }

    /// A pull view of the firehose from now on, with a buffer of `capacity` items and the given
    /// overflow policy: for a consumer that joins late. One that must see everything takes its
    /// stream from the [`Flume`] before the start.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// use openflume_proto::Item;
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let mut items = running.stream(100, Overflow::DropOldest);
    /// running.close().await;
    /// // It joined after the start: the first item it sees is the status log of closing.
    /// let first = items.next().await;
    /// assert!(matches!(first, Some(Item::Log(log)) if log.action == "status"));
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn stream(&self, capacity: usize, overflow: Overflow) -> ItemStream {
        self.subscribers.subscribe(capacity, overflow)
    }

    /// A live snapshot of every source's status.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// assert_eq!(running.statuses()[0].to_string(), "time: connected");
    /// running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.watch.statuses()
    }

    /// The statuses of `source`'s parts, in the order they first reported: each shard of a
    /// Discord gateway ([`Source::discord_gateway`](crate::Source::discord_gateway)), named
    /// `"ID/COUNT"`, whose aggregate is the source's own status. Empty for a source without
    /// parts.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// assert!(running.part_statuses("time").is_empty());
    /// # running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn part_statuses(&self, source: &str) -> Vec<crate::PartStatus> {
        self.watch.part_statuses(source)
    }

    /// A snapshot of every source's counters: its status, the events it delivered, its
    /// reconnects, the items lost on their way to a consumer, its rate-limit waits and (Discord)
    /// the last heartbeat round trip. Reading it takes no lock the sources wait on; the counting
    /// itself is a relaxed atomic add where the items pass anyway (see [`Metrics`]).
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// # smol::block_on(async {
    /// let tick = Source::custom("time", |seed| {
    ///     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// });
    /// let running = Flume::builder().source(tick).build().open().await?;
    /// let time = running.metrics().source("time").cloned().expect("configured");
    /// println!("{}: {:?}, {} events", time.source, time.status, time.events);
    /// assert_eq!(time.reconnects, 0);
    /// running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn metrics(&self) -> Metrics {
        let statuses: Vec<(String, openflume_proto::Status)> = self
            .watch
            .statuses()
            .into_iter()
            .map(|s| (s.source, s.status))
            .collect();
        self.meters.snapshot(&statuses)
    }

    /// The address the serving source `name` (the webhook ingress: `webhooks`) listens on: the
    /// port chosen when it was asked for port 0.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::webhook::WebhookConfig;
    /// let config = WebhookConfig { github_secret: Some("s".into()), ..WebhookConfig::default() };
    /// let running = Flume::builder()
    ///     .source(Source::webhooks(config, "127.0.0.1:0".parse().unwrap()))
    ///     .build()
    ///     .start()?;
    /// let addr = running.local_addr("webhooks").expect("listening");
    /// assert!(addr.ip().is_loopback() && addr.port() != 0);
    /// assert_eq!(running.local_addr("discord"), None);
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn local_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.local_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// A handle that closes this flume from anywhere (a signal handler, another task).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let cancel = running.cancel_handle();
    /// std::thread::spawn(move || cancel.cancel());
    /// let closed = running.wait().await;
    /// assert_eq!(closed.statuses()[0].to_string(), "time: disconnected");
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            tx: self.cancel.0.clone(),
        }
    }

    /// Waits until the flume is cancelled through a [`CancelHandle`] or every source has ended on
    /// its own (all failed, say), then closes it.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let cancel = running.cancel_handle();
    /// smol::spawn(async move { cancel.cancel() }).detach();
    /// let closed = running.wait().await;
    /// // `wait` closed the flume: a later `close` returns the same result.
    /// assert_eq!(closed, running.close().await);
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub async fn wait(&self) -> Closed {
        let keep_session = {
            let cancelled = async { self.cancel.1.recv().await.unwrap_or(false) };
            let ended = async {
                self.watch.all_finished().await;
                false
            };
            futures_lite::future::or(cancelled, ended).await
        };
        self.close_with(keep_session).await
    }

    /// Stops every source (Discord closes with 1000: the session ends), delivers the items still
    /// in flight, and ends every stream. Idempotent, and cancel-safe: a close given up on (raced
    /// with a timer) leaves the sources stopping, and the next close waits for them.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume_proto::Status;
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let closed = running.close().await;
    /// assert_eq!(closed.statuses()[0].status, Status::Disconnected);
    /// assert_eq!(running.close().await, closed); // closing again changes nothing
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub async fn close(&self) -> Closed {
        self.close_with(false).await
    }

    /// Like [`close`](Self::close), but leaves upstream sessions resumable where the protocol
    /// allows (Discord closes with 4000).
    ///
    /// ```no_run
    /// use openflume::{Flume, Source};
    /// use openflume_proto::discord::{DiscordConfig, DiscordShard};
    /// # smol::block_on(async {
    /// let config = DiscordConfig::new(std::env::var("DISCORD_TOKEN")?);
    /// let running = Flume::builder()
    ///     .source(Source::custom("discord", move |seed| DiscordShard::new(config, seed)))
    ///     .build()
    ///     .open()
    ///     .await?;
    /// // Restarting for a deploy: Discord keeps the session open for a RESUME.
    /// let closed = running.close_keeping_sessions().await;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # });
    /// ```
    pub async fn close_keeping_sessions(&self) -> Closed {
        self.close_with(true).await
    }

    async fn close_with(&self, keep_session: bool) -> Closed {
        self.closed
            .get_or_init(|| async {
                let mut set = self.set.lock().await;
                set.stop(keep_session).await;
                let statuses = set.statuses();
                // The sources are gone; with the last hub every stream ends once drained.
                drop(lock(&self.hub).take());
                Closed::new(statuses, set.checkpoints())
            })
            .await
            .clone()
    }
}

/// Closes a [`Running`] flume from anywhere. Cheap to clone.
///
/// ```no_run
/// # async fn demo(running: openflume::Running) {
/// let cancel = running.cancel_handle();
/// std::thread::spawn(move || cancel.cancel());
/// let closed = running.wait().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CancelHandle {
    tx: Sender<bool>,
}

impl CancelHandle {
    /// Asks the flume to close. Returns at once; calling it again does nothing.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let cancel = running.cancel_handle();
    /// cancel.cancel();
    /// cancel.cancel(); // does nothing
    /// let closed = running.wait().await;
    /// assert_eq!(closed.statuses()[0].to_string(), "time: disconnected");
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn cancel(&self) {
        let _ = self.tx.try_send(false);
    }

    /// Asks the flume to close, leaving upstream sessions resumable.
    ///
    /// ```no_run
    /// # async fn demo(running: openflume::Running) {
    /// let cancel = running.cancel_handle();
    /// // On SIGTERM, during a deploy: the next process resumes the Discord session.
    /// std::thread::spawn(move || cancel.cancel_keeping_sessions());
    /// let closed = running.wait().await;
    /// # }
    /// ```
    pub fn cancel_keeping_sessions(&self) {
        let _ = self.tx.try_send(true);
    }
}

/// A closed flume: what each source ended as.
///
/// ```
/// # use openflume::{Flume, Source};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// # smol::block_on(async {
/// let closed = Flume::builder().source(cron).build().open().await?.close().await;
/// let ended: Vec<String> = closed.statuses().iter().map(ToString::to_string).collect();
/// assert_eq!(ended, ["time: disconnected"]);
/// # Ok::<(), openflume::StartError>(())
/// # })?;
/// # Ok::<(), openflume::StartError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    statuses: Vec<SourceStatus>,
    checkpoints: Vec<(String, Checkpoint)>,
}

impl Closed {
    pub(crate) fn new(
        statuses: Vec<SourceStatus>,
        checkpoints: Vec<(String, Checkpoint)>,
    ) -> Closed {
        Closed {
            statuses,
            checkpoints,
        }
    }

    /// What the source named `source` left to carry on from: after
    /// [`Running::close_keeping_sessions`], a Discord source's session, to hand to the next
    /// run's `DiscordConfig::resume` (within Discord's resume window, the next run resumes
    /// instead of identifying, and gets the dispatches it missed). `None` when the source keeps
    /// nothing, or has no session to keep.
    ///
    /// ```no_run
    /// use openflume::{Flume, Source};
    /// use openflume_proto::Checkpoint;
    /// use openflume_proto::discord::DiscordConfig;
    /// # smol::block_on(async {
    /// let config = DiscordConfig::new(std::env::var("DISCORD_BOT_TOKEN").unwrap());
    /// let running = Flume::builder().source(Source::discord(config.clone())).build().open().await?;
    /// let closed = running.close_keeping_sessions().await;
    /// let mut next = config;
    /// if let Some(Checkpoint::DiscordSession(session)) = closed.checkpoint("discord") {
    ///     next.resume = Some(session.clone());
    /// }
    /// let resumed = Flume::builder().source(Source::discord(next)).build().open().await?;
    /// # Ok::<(), openflume::StartError>(())
    /// # });
    /// ```
    pub fn checkpoint(&self, source: &str) -> Option<&Checkpoint> {
        self.checkpoints
            .iter()
            .find(|(name, _)| name == source)
            .map(|(_, checkpoint)| checkpoint)
    }

    /// Every source's final status.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::SourceStatus;
    /// use openflume_proto::Status;
    /// # smol::block_on(async {
    /// let closed = Flume::builder().source(cron).build().open().await?.close().await;
    /// let ended = SourceStatus { source: "time".into(), status: Status::Disconnected, reason: None };
    /// assert_eq!(closed.statuses(), [ended]);
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn statuses(&self) -> &[SourceStatus] {
        &self.statuses
    }
}
