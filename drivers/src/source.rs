//! A source: a named recipe for a machine, built with a seed when the flume opens. Its name is
//! the `source` of every item it produces and of its statuses.

use crate::IdentifyGate;
use openflume_proto::cron::{CronConfig, CronMachine};
use openflume_proto::discord::{DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard};
use openflume_proto::github::{GithubConfig, GithubMachine};
use openflume_proto::recording::MachineConfig;
use openflume_proto::slack::{SlackConfig, SlackMachine};
use openflume_proto::webhook::{WebhookConfig, WebhookIngress};
use openflume_proto::{Machine, Misuse};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

type Build = Box<dyn FnOnce(u64) -> Result<Box<dyn Machine + Send>, Misuse> + Send>;

/// One source of events for a [`Flume`](crate::Flume): a protocol machine to be built and driven.
///
/// The built-in constructors cover Discord, Slack, GitHub and cron; [`Source::custom`] runs any
/// machine that implements [`openflume_proto::Machine`] under the same driver. The source's name
/// is the `source` of every item it produces, whatever the machine calls itself.
///
/// ```
/// use openflume::Source;
/// use openflume_proto::cron::CronConfig;
/// let source = Source::cron(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC);
/// assert_eq!(source.name(), "time");
/// ```
pub struct Source {
    /// Borrowed for the built-in names, so their items cost no allocation.
    name: Cow<'static, str>,
    build: Build,
    /// For a machine that serves: the address its driver listens on.
    listen: Option<SocketAddr>,
    /// For a machine that serves: who serves the connections it hands off.
    handoff: Option<crate::serve::HandoffHandler>,
    /// A built-in machine's configuration, for a recording's section header.
    recipe: Option<MachineConfig>,
    /// For Discord shards with an external identify queue: who grants their IDENTIFYs.
    identify_gate: Option<Arc<dyn IdentifyGate>>,
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
    /// let flume = Flume::builder().source(source).build();
    /// let mut items = flume.stream(16, openflume::Overflow::Backpressure);
    /// let running = flume.open().await?;
    /// assert_eq!(running.statuses()[0].source, "every-five");
    /// running.close().await;
    /// // Its items carry the name it was given, not the machine's own ("time").
    /// while let Some(item) = items.next().await {
    ///     assert_eq!(item.source(), "every-five");
    /// }
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn custom<M, F>(name: impl Into<String>, build: F) -> Source
    where
        M: Machine + Send + 'static,
        F: FnOnce(u64) -> Result<M, Misuse> + Send + 'static,
    {
        Source::named(Cow::Owned(name.into()), build)
    }

    fn named<M, F>(name: Cow<'static, str>, build: F) -> Source
    where
        M: Machine + Send + 'static,
        F: FnOnce(u64) -> Result<M, Misuse> + Send + 'static,
    {
        Source {
            name,
            build: Box::new(move |seed| {
                build(seed).map(|m| Box::new(m) as Box<dyn Machine + Send>)
            }),
            listen: None,
            handoff: None,
            recipe: None,
            identify_gate: None,
        }
    }

    /// Notes the configuration a built-in source was made from, for recordings.
    fn recorded_as(mut self, recipe: MachineConfig) -> Source {
        self.recipe = Some(recipe);
        self
    }

    /// One Discord Gateway shard, named `discord`.
    ///
    /// ```
    /// use openflume::Source;
    /// use openflume_proto::discord::DiscordConfig;
    /// let source = Source::discord(DiscordConfig::new("my.bot.token"));
    /// assert_eq!(source.name(), "discord");
    /// ```
    pub fn discord(config: DiscordConfig) -> Source {
        let recipe = MachineConfig::Discord(config.clone());
        Source::named(Cow::Borrowed("discord"), move |seed| {
            DiscordShard::new(config, seed)
        })
        .recorded_as(recipe)
    }

    /// Several shards of one Discord bot, named `discord`: all of them, or a range of a total
    /// ([`DiscordGatewayConfig::shard_range`]), under one `/gateway/bot` call and one identify
    /// limiter. Each event carries its shard in `meta.shard` (`"ID/COUNT"`), each shard's status
    /// is in [`Running::part_statuses`](crate::Running::part_statuses), and the source's status
    /// is connected once every shard is.
    ///
    /// ```
    /// use openflume::Source;
    /// use openflume_proto::discord::{DiscordConfig, DiscordGatewayConfig, ShardRange};
    /// let config = DiscordGatewayConfig {
    ///     shard: DiscordConfig::new("my.bot.token"),
    ///     shard_count: Some(64),
    ///     shard_range: Some(ShardRange { first: 0, last: 15 }),
    ///     ..DiscordGatewayConfig::default()
    /// };
    /// assert_eq!(Source::discord_gateway(config).name(), "discord");
    /// ```
    pub fn discord_gateway(config: DiscordGatewayConfig) -> Source {
        let recipe = MachineConfig::DiscordGateway(config.clone());
        Source::named(Cow::Borrowed("discord"), move |seed| {
            DiscordGateway::new(config, seed)
        })
        .recorded_as(recipe)
    }

    /// Slack Socket Mode, named `slack`.
    ///
    /// ```
    /// use openflume::Source;
    /// use openflume_proto::slack::SlackConfig;
    /// let source = Source::slack(SlackConfig::new("xapp-1-A0-1-secret"));
    /// assert_eq!(source.name(), "slack");
    /// ```
    pub fn slack(config: SlackConfig) -> Source {
        let recipe = MachineConfig::Slack(config.clone());
        Source::named(Cow::Borrowed("slack"), move |seed| {
            SlackMachine::new(config, seed)
        })
        .recorded_as(recipe)
    }

    /// The GitHub notifications poller, named `github`.
    ///
    /// ```
    /// use openflume::Source;
    /// use openflume_proto::github::GithubConfig;
    /// let config = GithubConfig::new("ghp_secret");
    /// assert_eq!(Source::github(config).name(), "github");
    /// ```
    pub fn github(config: GithubConfig) -> Source {
        let recipe = MachineConfig::Github(config.clone());
        Source::named(Cow::Borrowed("github"), move |seed| {
            GithubMachine::new(config, seed)
        })
        .recorded_as(recipe)
    }

    /// A cron schedule in `zone`, named `time` (the item format's name for cron ticks); use
    /// [`custom`](Self::custom) to give several schedules names of their own.
    ///
    /// ```
    /// use openflume::Source;
    /// use openflume_proto::cron::CronConfig;
    /// let source = Source::cron(CronConfig::new("0 9 * * 1-5"), jiff::tz::TimeZone::UTC);
    /// assert_eq!(source.name(), "time");
    /// ```
    pub fn cron(config: CronConfig, zone: jiff::tz::TimeZone) -> Source {
        let recipe = MachineConfig::Cron {
            config: config.clone(),
            zone: zone.clone(),
        };
        Source::named(Cow::Borrowed("time"), move |seed| {
            CronMachine::new(config, zone, seed)
        })
        .recorded_as(recipe)
    }

    /// The verified webhook ingress (Slack Events API, GitHub webhooks, signed custom
    /// webhooks; see [`openflume_proto::webhook`]), listening on `addr` (port 0: any free port,
    /// see [`Running::local_addr`](crate::Running::local_addr)). Named `webhooks`; its events
    /// carry their provider's source (`slack`, `github`, `custom`), and each is answered 200 only
    /// once every back-pressure consumer holds it. Binding fails the start.
    ///
    /// ```no_run
    /// use openflume::{Flume, Overflow, Source};
    /// use openflume_proto::webhook::WebhookConfig;
    ///
    /// let config = WebhookConfig {
    ///     github_secret: Some(std::env::var("GITHUB_WEBHOOK_SECRET").unwrap().into()),
    ///     ..WebhookConfig::default()
    /// };
    /// smol::block_on(async {
    ///     let flume = Flume::builder()
    ///         .source(Source::webhooks(config, "127.0.0.1:8787".parse().unwrap()))
    ///         .build();
    ///     let mut items = flume.stream(1000, Overflow::Backpressure);
    ///     let running = flume.open().await?;
    ///     println!("listening on {:?}", running.local_addr("webhooks"));
    ///     while let Some(item) = items.next().await {
    ///         println!("{}", serde_json::to_string(&item).unwrap());
    ///     }
    ///     Ok::<(), openflume::StartError>(())
    /// });
    /// ```
    pub fn webhooks(config: WebhookConfig, addr: SocketAddr) -> Source {
        let recipe = MachineConfig::Webhooks(config.clone());
        let mut source = Source::named(Cow::Borrowed("webhooks"), move |_seed| {
            WebhookIngress::new(config)
        })
        .recorded_as(recipe);
        source.listen = Some(addr);
        source
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

    /// The address to listen on, for a machine that serves.
    pub(crate) fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Serves the connections this source's machine hands off (`Output::Handoff`) with
    /// `handler`: `serve` puts its hub and health endpoints on the webhook port this way.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn with_handoff(mut self, handler: crate::serve::HandoffHandler) -> Source {
        self.handoff = Some(handler);
        self
    }

    pub(crate) fn handoff(&self) -> Option<crate::serve::HandoffHandler> {
        self.handoff.clone()
    }

    /// Grants the IDENTIFYs of this source's Discord shards through `gate`: for a machine
    /// configured with [`IdentifyQueue::External`](openflume_proto::discord::IdentifyQueue)
    /// (its `Output::IdentifyRequest`s go to the gate, its grants come back as
    /// `Input::IdentifyGranted`). One gate shared by several sources, or processes, keeps their
    /// IDENTIFYs together within Discord's buckets.
    ///
    /// ```
    /// use openflume::{SharedIdentifyQueue, Source};
    /// use openflume_proto::discord::{DiscordConfig, DiscordGatewayConfig, IdentifyQueue, ShardRange};
    /// use std::sync::Arc;
    /// let queue = Arc::new(SharedIdentifyQueue::new());
    /// let range = |first, last| {
    ///     let mut shard = DiscordConfig::new("my.bot.token");
    ///     shard.identify_queue = IdentifyQueue::External;
    ///     let config = DiscordGatewayConfig {
    ///         shard,
    ///         shard_count: Some(8),
    ///         shard_range: Some(ShardRange { first, last }),
    ///         ..DiscordGatewayConfig::default()
    ///     };
    ///     Source::discord_gateway(config).with_identify_gate(queue.clone())
    /// };
    /// let (low, high) = (range(0, 3), range(4, 7));
    /// # let _ = (low, high);
    /// ```
    pub fn with_identify_gate(mut self, gate: Arc<dyn IdentifyGate>) -> Source {
        self.identify_gate = Some(gate);
        self
    }

    pub(crate) fn identify_gate(&self) -> Option<Arc<dyn IdentifyGate>> {
        self.identify_gate.clone()
    }

    /// The configuration of a built-in source (`None` for a custom one).
    pub(crate) fn recipe(&self) -> Option<&MachineConfig> {
        self.recipe.as_ref()
    }

    /// The name and the machine built with `seed`.
    pub(crate) fn build(
        self,
        seed: u64,
    ) -> (Cow<'static, str>, Result<Box<dyn Machine + Send>, Misuse>) {
        (self.name, (self.build)(seed))
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
