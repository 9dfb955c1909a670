//! # Local simulators of Discord, Slack and GitHub
//!
//! Nobody can test a Discord, Slack and GitHub listener without accounts, tokens and a live
//! network, and neither can CI. These simulators speak the real protocols on loopback, so the
//! README's demo, the end-to-end tests and the benchmark run anywhere, and every fault the real
//! services show (zombie connections, reconnect requests, invalid sessions, redeliveries,
//! disconnect warnings, 304s, rate limits, garbage frames) can be produced on command.
//!
//! - [`DiscordSim`]: `GET /api/v10/gateway/bot` and the Gateway v10 WebSocket (HELLO, IDENTIFY,
//!   READY, dispatches, heartbeats, RESUME with replay, op 7/9, close codes, zlib-stream).
//! - [`SlackSim`]: `apps.connections.open`, `auth.test` and Socket Mode (hello, envelopes of the
//!   three types, ack tracking, redelivery, `disconnect` reasons).
//! - [`GithubSim`]: `GET /notifications` (pagination, conditional requests and 304,
//!   `X-Poll-Interval`, rate limits).
//!
//! Each listens on its own port and serves plain HTTP and plain `ws://` there; each binds
//! `127.0.0.1:0` (a free loopback port) unless its configuration names another address. Each
//! takes a [`Scenario`] (an event [`Rate`] and actions scheduled after the first client
//! connects) and also does any action on command (`inject`). Handles expose what the tests
//! assert on as [`Records`], with `wait_for` to wait for a record instead of sleeping, and stop
//! the simulator when dropped.
//!
//! ```
//! use openflume_sim::AllSimConfig;
//!
//! smol::block_on(async {
//!     let sims = openflume_sim::start_all(AllSimConfig::new([127, 0, 0, 1].into())).await?;
//!     for (name, value) in sims.env() {
//!         println!("{name}={value}");
//!     }
//!     assert!(sims.discord.gateway_url().starts_with("ws://127.0.0.1:"));
//!     sims.stop().await;
//!     Ok::<(), std::io::Error>(())
//! });
//! ```

mod discord;
mod fake;
mod github;
mod host;
mod records;
pub mod replay;
mod scenario;
mod server;
mod slack;
#[cfg(test)]
mod testkit;

pub use discord::{
    Control, ControlRecord, DiscordAction, DiscordRecords, DiscordSim, DiscordSimConfig,
    DispatchRecord, GatewayConnection, HeartbeatRecord, IdentifyOutcome, IdentifyRecord,
    ResumeOutcome, ResumeRecord,
};
pub use github::{
    GithubAction, GithubRecords, GithubRequest, GithubSim, GithubSimConfig, GithubThread,
};
pub use records::{CloseRecord, HttpRecord, Records, WaitTimedOut};
pub use scenario::{HttpFault, Rate, Scenario, SocketFault, Timed};
pub use slack::{
    AckRecord, AppliedRecord, DisconnectReason, DisconnectRecord, EnvelopeKind, EnvelopeRecord,
    GivenUpRecord, OpenAnswer, SlackAction, SlackRecords, SlackSim, SlackSimConfig,
    SocketConnection,
};

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The bot token the Discord simulator accepts by default.
pub const DISCORD_TOKEN: &str = "sim-discord-bot-token.openflume";

/// The app-level token the Slack simulator accepts by default.
pub const SLACK_APP_TOKEN: &str = "xapp-1-A0SIMAPP01-0000000000-simulated";

/// The bot token the Slack simulator accepts by default.
pub const SLACK_BOT_TOKEN: &str = "xoxb-0000000000-0000000000-simulated";

/// The token the GitHub simulator accepts by default.
pub const GITHUB_TOKEN: &str = "ghp_simulatedOpenflumeToken000000000000";

/// The configuration of all three simulators, for [`start_all`].
///
/// ```
/// use openflume_sim::{AllSimConfig, Rate};
/// let config = AllSimConfig::steady([127, 0, 0, 1].into(), 2.0);
/// assert_eq!(config.discord.scenario.rate, Rate::Steady { per_second: 2.0, limit: None });
/// assert_eq!(config.github.bind.port(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct AllSimConfig {
    /// The Discord simulator.
    pub discord: DiscordSimConfig,
    /// The Slack simulator.
    pub slack: SlackSimConfig,
    /// The GitHub simulator.
    pub github: GithubSimConfig,
}

impl AllSimConfig {
    /// The defaults, each simulator on a free port of `bind`, with no steady rate and no schedule
    /// (the GitHub simulator still starts with its few initial notification threads).
    ///
    /// ```
    /// use openflume_sim::{AllSimConfig, Rate, GITHUB_TOKEN};
    /// let config = AllSimConfig::new([127, 0, 0, 1].into());
    /// assert_eq!(config.slack.bind, "127.0.0.1:0".parse().unwrap());
    /// assert_eq!(config.discord.scenario.rate, Rate::Manual);
    /// assert!(config.github.scenario.schedule.is_empty());
    /// assert_eq!(config.github.token.expose(), GITHUB_TOKEN);
    /// ```
    pub fn new(bind: IpAddr) -> AllSimConfig {
        let bind = SocketAddr::new(bind, 0);
        AllSimConfig {
            discord: DiscordSimConfig {
                bind,
                ..DiscordSimConfig::default()
            },
            slack: SlackSimConfig {
                bind,
                ..SlackSimConfig::default()
            },
            github: GithubSimConfig {
                bind,
                ..GithubSimConfig::default()
            },
        }
    }

    /// `per_second` events a second from each simulator (Discord messages, Slack message events,
    /// GitHub notifications), for `openflume sim`.
    ///
    /// ```
    /// use openflume_sim::{AllSimConfig, Rate};
    /// let config = AllSimConfig::steady([127, 0, 0, 1].into(), 0.5);
    /// let rate = Rate::Steady { per_second: 0.5, limit: None };
    /// assert_eq!(config.discord.scenario.rate, rate);
    /// assert_eq!(config.slack.scenario.rate, rate);
    /// assert_eq!(config.github.scenario.rate, rate);
    /// assert!(config.slack.scenario.schedule.is_empty());
    /// ```
    pub fn steady(bind: IpAddr, per_second: f64) -> AllSimConfig {
        let mut config = AllSimConfig::new(bind);
        config.discord.scenario = Scenario::steady(per_second);
        config.slack.scenario = Scenario::steady(per_second);
        config.github.scenario = Scenario::steady(per_second);
        config
    }

    /// A lively demo over the first minute: Discord messages every two seconds and an op 7
    /// RECONNECT at 20 s; Slack message events, a slash command at 5 s, a button click at 9 s
    /// and a `refresh_requested` disconnect at 25 s; a GitHub notification at 3 s and then one
    /// every 12 s, with `X-Poll-Interval: 5`.
    ///
    /// ```
    /// use openflume_sim::{AllSimConfig, DisconnectReason, DiscordAction, SlackAction};
    /// use std::time::Duration;
    ///
    /// let demo = AllSimConfig::lively_demo([127, 0, 0, 1].into());
    /// assert_eq!(demo.github.poll_interval, 5);
    /// let reconnect = &demo.discord.scenario.schedule[0];
    /// assert_eq!((reconnect.after, &reconnect.action), (Duration::from_secs(20), &DiscordAction::Reconnect));
    /// let last = demo.slack.scenario.schedule.last().unwrap();
    /// assert_eq!(last.action, SlackAction::Disconnect(DisconnectReason::RefreshRequested));
    /// ```
    pub fn lively_demo(bind: IpAddr) -> AllSimConfig {
        let mut config = AllSimConfig::new(bind);
        let secs = Duration::from_secs;
        config.discord.scenario = Scenario::steady(0.5).at(secs(20), DiscordAction::Reconnect);
        config.slack.scenario = Scenario::steady(0.3)
            .at(secs(5), SlackAction::SlashCommand)
            .at(secs(9), SlackAction::Interactive)
            .at(
                secs(25),
                SlackAction::Disconnect(DisconnectReason::RefreshRequested),
            );
        config.github.poll_interval = 5;
        config.github.scenario =
            Scenario::steady(1.0 / 12.0).at(secs(3), GithubAction::Notifications(1));
        config
    }
}

/// The three running simulators. Dropping it stops them at once; [`stop`](Handles::stop) first
/// closes open connections with a close frame.
///
/// ```
/// use openflume_sim::AllSimConfig;
///
/// smol::block_on(async {
///     let sims = openflume_sim::start_all(AllSimConfig::new([127, 0, 0, 1].into())).await?;
///     assert!(sims.discord.api_url().starts_with("http://127.0.0.1:"));
///     assert!(sims.slack.api_url().ends_with("/api"));
///     // Each on its own free port.
///     assert_ne!(sims.discord.local_addr(), sims.github.local_addr());
///     sims.stop().await;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Handles {
    /// Discord.
    pub discord: DiscordSim,
    /// Slack.
    pub slack: SlackSim,
    /// GitHub.
    pub github: GithubSim,
}

impl Handles {
    /// The environment variables that point `openflume listen` at the simulators: the API and
    /// gateway URLs and the tokens they accept.
    ///
    /// ```
    /// use openflume_sim::{AllSimConfig, GITHUB_TOKEN};
    ///
    /// smol::block_on(async {
    ///     let sims = openflume_sim::start_all(AllSimConfig::new([127, 0, 0, 1].into())).await?;
    ///     let env = sims.env();
    ///     let names: Vec<&str> = env.iter().map(|(name, _)| *name).collect();
    ///     assert!(names.contains(&"OPENFLUME_DISCORD_GATEWAY_URL"));
    ///     assert!(names.contains(&"SLACK_APP_TOKEN"));
    ///     let value = |name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    ///     assert_eq!(value("OPENFLUME_GITHUB_API_URL"), Some(sims.github.api_url().as_str()));
    ///     assert!(value("OPENFLUME_DISCORD_GATEWAY_URL").unwrap().starts_with("ws://127.0.0.1:"));
    ///     assert_eq!(value("GITHUB_TOKEN"), Some(GITHUB_TOKEN));
    ///     sims.stop().await;
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.settings()
            .into_iter()
            .map(|(name, _, value)| (name, value))
            .collect()
    }

    /// What [`env`](Self::env) says, as `openflume listen` flags, plus `--github-interval` set to
    /// the GitHub simulator's `X-Poll-Interval` so polls are not slower than it allows.
    ///
    /// The tokens are test values; real tokens belong in the environment, not in flags.
    ///
    /// ```
    /// use openflume_sim::AllSimConfig;
    ///
    /// smol::block_on(async {
    ///     let sims = openflume_sim::start_all(AllSimConfig::lively_demo([127, 0, 0, 1].into())).await?;
    ///     let args = sims.listen_args();
    ///     // Flag, value, flag, value, …
    ///     let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].as_str());
    ///     assert!(value("--slack-api-url").unwrap().starts_with("http://127.0.0.1:"));
    ///     assert_eq!(value("--github-interval"), Some("5")); // the demo's X-Poll-Interval
    ///     sims.stop().await;
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_args(&self) -> Vec<String> {
        let poll_interval = self.github.poll_interval();
        self.settings()
            .into_iter()
            .map(|(_, flag, value)| (flag, value))
            .chain([("--github-interval", poll_interval.to_string())])
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect()
    }

    /// Each setting that points `openflume listen` at the simulators, once: its environment
    /// variable, its flag and its value.
    // Kept as a table, one setting a line, which rustfmt would break into four lines each.
    #[rustfmt::skip]
    fn settings(&self) -> [(&'static str, &'static str, String); 8] {
        let (discord, slack, github) = (&self.discord, &self.slack, &self.github);
        [
            ("OPENFLUME_DISCORD_API_URL", "--discord-api-url", discord.api_url()),
            ("OPENFLUME_DISCORD_GATEWAY_URL", "--discord-gateway-url", discord.gateway_url()),
            ("DISCORD_BOT_TOKEN", "--discord-token", discord.token().to_owned()),
            ("OPENFLUME_SLACK_API_URL", "--slack-api-url", slack.api_url()),
            ("SLACK_APP_TOKEN", "--slack-app-token", slack.app_token().to_owned()),
            ("SLACK_BOT_TOKEN", "--slack-bot-token", slack.bot_token().to_owned()),
            ("OPENFLUME_GITHUB_API_URL", "--github-api-url", github.api_url()),
            ("GITHUB_TOKEN", "--github-token", github.token().to_owned()),
        ]
    }

    /// Stops all three (open connections get a close frame first).
    ///
    /// ```
    /// use openflume_sim::AllSimConfig;
    /// use std::net::TcpStream;
    ///
    /// smol::block_on(async {
    ///     let sims = openflume_sim::start_all(AllSimConfig::new([127, 0, 0, 1].into())).await?;
    ///     let github = sims.github.local_addr();
    ///     assert!(TcpStream::connect(github).is_ok());
    ///     sims.stop().await;
    ///     // Stopped means no longer listening.
    ///     assert!(TcpStream::connect(github).is_err());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn stop(self) {
        self.discord.stop().await;
        self.slack.stop().await;
        self.github.stop().await;
    }
}

/// Starts the three simulators; returns once all listen.
///
/// ```
/// use openflume_sim::AllSimConfig;
/// use std::io::ErrorKind;
///
/// smol::block_on(async {
///     let sims = openflume_sim::start_all(AllSimConfig::steady([127, 0, 0, 1].into(), 1.0)).await?;
///     assert!(sims.discord.gateway_url().starts_with("ws://127.0.0.1:"));
///     assert!(sims.github.api_url().starts_with("http://127.0.0.1:"));
///     sims.stop().await;
///
///     // A rate that is not a positive number fails the start instead of panicking later.
///     let bad = AllSimConfig::steady([127, 0, 0, 1].into(), 0.0);
///     assert_eq!(openflume_sim::start_all(bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn start_all(config: AllSimConfig) -> io::Result<Handles> {
    Ok(Handles {
        discord: DiscordSim::start(config.discord).await?,
        slack: SlackSim::start(config.slack).await?,
        github: GithubSim::start(config.github).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn start_all_points_listen_at_the_simulators() {
        smol::block_on(async {
            let sims = start_all(AllSimConfig::lively_demo(Ipv4Addr::LOCALHOST.into()))
                .await
                .unwrap();
            let env = sims.env();
            let value = |name: &str| {
                env.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(value("OPENFLUME_DISCORD_API_URL"), sims.discord.api_url());
            assert!(value("OPENFLUME_DISCORD_GATEWAY_URL").starts_with("ws://127.0.0.1:"));
            assert!(value("OPENFLUME_SLACK_API_URL").ends_with("/api"));
            assert_eq!(value("GITHUB_TOKEN"), GITHUB_TOKEN);
            let ports = [
                sims.discord.local_addr(),
                sims.slack.local_addr(),
                sims.github.local_addr(),
            ];
            assert!(ports.iter().all(|a| a.ip().is_loopback() && a.port() != 0));
            assert!(ports[0] != ports[1] && ports[1] != ports[2]);
            let args = sims.listen_args();
            let github_interval = args.iter().position(|a| a == "--github-interval").unwrap();
            assert_eq!(args[github_interval + 1], "5");
            assert_eq!(args.len(), 18);
            sims.stop().await;
        });
    }

    #[test]
    fn bad_rates_are_start_errors() {
        smol::block_on(async {
            let config = AllSimConfig::steady(Ipv4Addr::LOCALHOST.into(), f64::NAN);
            assert_eq!(
                start_all(config).await.unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        });
    }
}
