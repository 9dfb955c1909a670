//! Named groups of sources added and removed at run time, all feeding one firehose.

use crate::flume::{FlumeBuilder, Settings};
use crate::hub::{self, Hub, Subscribers};
use crate::lock::lock;
use crate::sources::{SourceSet, SourceStatus, StartError};
use crate::stream::{ItemStream, Overflow};
use crate::{Closed, Source};
use smol::lock::{Mutex as AsyncMutex, OnceCell};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Why a group could not be added.
///
/// ```
/// # use openflume::{Flume, Source};
/// # use openflume_proto::cron::{CronConfig, CronMachine};
/// # let cron = Source::custom("time", |seed| {
/// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
/// # });
/// use openflume::{Confluence, ConfluenceError};
/// # smol::block_on(async {
/// let confluence = Confluence::new(Flume::builder())?;
/// confluence.add("clock", vec![cron]).await?;
/// let again = confluence.add("clock", vec![]).await;
/// assert_eq!(again, Err(ConfluenceError::GroupExists("clock".into())));
/// confluence.close_all().await;
/// assert_eq!(confluence.add("late", vec![]).await, Err(ConfluenceError::Closed));
/// # Ok::<(), openflume::ConfluenceError>(())
/// # })?;
/// # Ok::<(), openflume::ConfluenceError>(())
/// ```
///
/// `#[non_exhaustive]`: a match outside this crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume::ConfluenceError;
/// fn retry(e: &ConfluenceError) -> bool {
///     match e { ConfluenceError::GroupExists(_) | ConfluenceError::Closed => false, ConfluenceError::Start { .. } => true }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfluenceError {
    /// A group with this name is running.
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// `close_all` was called.
    #[error("the confluence is closed")]
    Closed,
    /// The group's sources did not start; none of them is left running.
    #[error("group {group:?}: {error}")]
    Start {
        /// The group's name.
        group: String,
        /// Which sources failed and why.
        error: StartError,
    },
    /// [`Confluence::new`] was given a builder holding sources: a confluence runs sources only
    /// in named groups, so they would have nowhere to go.
    #[error(
        "the builder holds sources ({}): a confluence starts sources only in named groups, \
         with Confluence::add",
        .0.join(", ")
    )]
    BuilderHasSources(Vec<String>),
}

/// Several named groups of sources with one merged firehose.
///
/// ```no_run
/// use openflume::{Confluence, Flume, Overflow, Source};
/// use openflume_proto::cron::{CronConfig, CronMachine};
/// # smol::block_on(async {
/// let confluence = Confluence::new(Flume::builder())?;
/// let tick = |expr: &'static str| Source::custom("time", move |seed| {
///     CronMachine::new(CronConfig::new(expr), jiff::tz::TimeZone::UTC, seed)
/// });
/// confluence.add("minutely", vec![tick("* * * * *")]).await?;
/// confluence.add("hourly", vec![tick("@hourly")]).await?;
/// let mut stream = confluence.stream(1000, Overflow::DropOldest);
/// confluence.remove("hourly").await;
/// let closed = confluence.close_all().await;
/// # Ok::<(), openflume::ConfluenceError>(())
/// # });
/// ```
pub struct Confluence {
    settings: Settings,
    hub: Mutex<Option<Hub>>,
    subscribers: Subscribers,
    groups: AsyncMutex<BTreeMap<String, SourceSet>>,
    closed: OnceCell<Closed>,
}

impl std::fmt::Debug for Confluence {
    /// Whether it is closed; the groups are behind an async lock (see [`Confluence::groups`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confluence")
            .field("closed", &self.closed.is_initialized())
            .finish_non_exhaustive()
    }
}

impl Confluence {
    /// A confluence with the callbacks and settings of `builder` (log level, TLS roots,
    /// timeouts), and no group yet: every source belongs to a named group, added with
    /// [`add`](Self::add), so its items can say which group they came from (`meta.groupId` on events, `detail.groupId` on logs).
    ///
    /// A builder holding sources is refused with [`ConfluenceError::BuilderHasSources`]
    /// rather than having them silently dropped (or started under a name nobody chose).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = || Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::{Confluence, ConfluenceError};
    /// use openflume_proto::Level;
    /// # smol::block_on(async {
    /// // The log level applies to every group.
    /// let confluence = Confluence::new(Flume::builder().min_log_level(Level::Info))?;
    /// confluence.add("clock", vec![cron()]).await?;
    /// confluence.close_all().await;
    ///
    /// let with_sources = Confluence::new(Flume::builder().source(cron()));
    /// assert_eq!(with_sources.err(), Some(ConfluenceError::BuilderHasSources(vec!["time".into()])));
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub fn new(builder: FlumeBuilder) -> Result<Confluence, ConfluenceError> {
        let sources = builder.source_names();
        if !sources.is_empty() {
            return Err(ConfluenceError::BuilderHasSources(sources));
        }
        let (settings, on_item, on_error) = builder.into_parts();
        let (hub, subscribers) = hub::hub(settings.min_level, on_item, on_error);
        Ok(Confluence {
            settings,
            hub: Mutex::new(Some(hub)),
            subscribers,
            groups: AsyncMutex::new(BTreeMap::new()),
            closed: OnceCell::new(),
        })
    }

    /// Starts `sources` as group `name`. If any fails to start, none is left running. Their
    /// events carry `meta.groupId = name`, as open-flume's do, and its logs `detail.groupId`.
    ///
    /// ```
    /// use openflume::{Confluence, ConfluenceError, Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = |expression: &'static str| {
    ///     Source::custom("time", move |seed| {
    ///         CronMachine::new(CronConfig::new(expression), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// confluence.add("hourly", vec![tick("@hourly")]).await?;
    /// let refused = confluence.add("broken", vec![tick("@hourly"), tick("hourly")]).await;
    /// assert!(matches!(refused, Err(ConfluenceError::Start { .. })));
    /// assert_eq!(confluence.groups().await, ["hourly"]);
    /// confluence.close_all().await;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub async fn add(&self, name: &str, sources: Vec<Source>) -> Result<(), ConfluenceError> {
        let mut groups = self.groups.lock().await;
        if groups.contains_key(name) {
            return Err(ConfluenceError::GroupExists(name.to_owned()));
        }
        let hub = lock(&self.hub).clone().ok_or(ConfluenceError::Closed)?;
        let failed = |error| ConfluenceError::Start {
            group: name.to_owned(),
            error,
        };
        let env = self.settings.env(hub.in_group(name));
        let mut set = SourceSet::spawn(sources, &env).map_err(failed)?;
        if let Err(error) = set.watch().settle(self.settings.start_rules()).await {
            set.stop(false).await;
            return Err(failed(error));
        }
        groups.insert(name.to_owned(), set);
        Ok(())
    }

    /// Stops group `name` and returns its final statuses; `None` if there is no such group.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Confluence;
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// confluence.add("clock", vec![cron]).await?;
    /// let removed = confluence.remove("clock").await;
    /// let ended = removed.map(|closed| closed.statuses()[0].to_string());
    /// assert_eq!(ended.as_deref(), Some("time: disconnected"));
    /// assert!(confluence.remove("clock").await.is_none());
    /// confluence.close_all().await;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub async fn remove(&self, name: &str) -> Option<Closed> {
        let mut set = self.groups.lock().await.remove(name)?;
        set.stop(false).await;
        Some(Closed::new(set.statuses(), set.checkpoints()))
    }

    /// The running groups' names, in alphabetical order.
    ///
    /// ```
    /// use openflume::{Confluence, Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// let tick = || {
    ///     Source::custom("time", |seed| {
    ///         CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    ///     })
    /// };
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// confluence.add("ops", vec![tick()]).await?;
    /// confluence.add("billing", vec![tick()]).await?;
    /// assert_eq!(confluence.groups().await, ["billing", "ops"]);
    /// confluence.close_all().await;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub async fn groups(&self) -> Vec<String> {
        self.groups.lock().await.keys().cloned().collect()
    }

    /// A pull view of the merged firehose (see [`Running::stream`](crate::Running::stream)).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::{Confluence, Overflow};
    /// use openflume_proto::Item;
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// let mut items = confluence.stream(100, Overflow::DropOldest);
    /// confluence.add("clock", vec![cron]).await?;
    /// confluence.close_all().await;
    /// // The stream existed before the group started, so it saw the status log of its start.
    /// let first = items.next().await;
    /// assert!(matches!(first, Some(Item::Log(log)) if log.action == "status"));
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub fn stream(&self, capacity: usize, overflow: Overflow) -> ItemStream {
        self.subscribers.subscribe(capacity, overflow)
    }

    /// Every source's status, with its group's name.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Confluence;
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// confluence.add("clock", vec![cron]).await?;
    /// let statuses = confluence.statuses().await;
    /// assert_eq!(statuses[0].0, "clock");
    /// assert_eq!(statuses[0].1.to_string(), "time: connected");
    /// confluence.close_all().await;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub async fn statuses(&self) -> Vec<(String, SourceStatus)> {
        let groups = self.groups.lock().await;
        groups
            .iter()
            .flat_map(|(name, set)| set.statuses().into_iter().map(move |s| (name.clone(), s)))
            .collect()
    }

    /// Stops every group, delivers what is in flight and ends every stream. Idempotent; no group
    /// can be added afterwards.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Confluence;
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder())?;
    /// confluence.add("clock", vec![cron]).await?;
    /// let closed = confluence.close_all().await;
    /// assert_eq!(closed.statuses()[0].to_string(), "time: disconnected");
    /// assert_eq!(confluence.close_all().await, closed); // closing again changes nothing
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub async fn close_all(&self) -> Closed {
        self.closed
            .get_or_init(|| async {
                let hub = lock(&self.hub).take();
                drop(hub);
                let mut groups = self.groups.lock().await;
                let (mut statuses, mut checkpoints) = (Vec::new(), Vec::new());
                for (_, mut set) in std::mem::take(&mut *groups) {
                    set.stop(false).await;
                    statuses.extend(set.statuses());
                    checkpoints.extend(set.checkpoints());
                }
                Closed::new(statuses, checkpoints)
            })
            .await
            .clone()
    }
}
