//! A source: a named recipe for a machine, built with a seed when the flume opens.

use openflume_proto::{Machine, Misuse};

type Build = Box<dyn FnOnce(u64) -> Result<Box<dyn Machine + Send>, Misuse> + Send>;

/// One source of events for a [`Flume`](crate::Flume): a protocol machine to be built and driven.
///
/// The built-in constructors cover Discord, Slack, GitHub and cron; [`Source::custom`] runs any
/// machine that implements [`openflume_proto::Machine`] under the same driver.
///
/// ```
/// use openflume::Source;
/// use openflume_proto::cron::{CronConfig, CronMachine};
/// let source = Source::custom("time", |seed| {
///     CronMachine::new(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC, seed)
/// });
/// assert_eq!(source.name(), "time");
/// ```
pub struct Source {
    name: String,
    build: Build,
}

impl Source {
    /// A source built by `build` from a seed taken from the OS's entropy when the flume opens.
    ///
    /// The machine follows the [`Machine`] contract: it takes `Input::Start` first, reports its
    /// status with `Output::Status` (the flume's `open` waits for each source to reach
    /// `connected`, or `failed`), answers `Input::Shutdown` by finishing, and returns
    /// `Misuse::Finished` once `is_finished()`. `drivers/examples/custom_source.rs` shows one
    /// written from scratch.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// # smol::block_on(async {
    /// let (config, zone) = (CronConfig::new("*/5 * * * *"), jiff::tz::TimeZone::UTC);
    /// let source = Source::custom("every-five", move |seed| CronMachine::new(config, zone, seed));
    /// // The machine is built when the flume opens.
    /// let running = Flume::builder().source(source).build().open().await?;
    /// assert_eq!(running.statuses()[0].source, "every-five");
    /// running.close().await;
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn custom<M, F>(name: impl Into<String>, build: F) -> Source
    where
        M: Machine + Send + 'static,
        F: FnOnce(u64) -> Result<M, Misuse> + Send + 'static,
    {
        Source {
            name: name.into(),
            build: Box::new(move |seed| {
                build(seed).map(|m| Box::new(m) as Box<dyn Machine + Send>)
            }),
        }
    }

    /// The name used in statuses and start errors.
    ///
    /// ```
    /// use openflume::{Flume, Source};
    /// use openflume_proto::cron::{CronConfig, CronMachine};
    /// # smol::block_on(async {
    /// let source = Source::custom("nightly", |seed| {
    ///     CronMachine::new(CronConfig::new("at night"), jiff::tz::TimeZone::UTC, seed)
    /// });
    /// assert_eq!(source.name(), "nightly");
    /// let refused = Flume::builder().source(source).build().open().await.err();
    /// assert_eq!(refused.map(|e| e.failures[0].source.clone()).as_deref(), Some("nightly"));
    /// # });
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn build(self, seed: u64) -> Result<Box<dyn Machine + Send>, Misuse> {
        (self.build)(seed)
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
