//! # Local simulators of Discord, Slack and GitHub
//!
//! placeholder

mod discord;
mod fake;
mod github;
mod records;
mod scenario;
mod server;
mod slack;
#[cfg(test)]
mod testkit;

pub use discord::{
    Control, ControlRecord, DiscordAction, DiscordConfig, DiscordRecords, DiscordSim, DispatchRecord,
    GatewayConnection, HeartbeatRecord, IdentifyOutcome, IdentifyRecord, ResumeOutcome, ResumeRecord,
};
pub use slack::{
    AckRecord, AppliedRecord, DisconnectReason, DisconnectRecord, EnvelopeKind, EnvelopeRecord, GivenUpRecord, SlackAction,
    SlackConfig, SlackRecords, SlackSim, SocketConnection,
};
pub use github::{GithubAction, GithubConfig, GithubRecords, GithubRequest, GithubSim, GithubThread};
pub use records::{CloseRecord, HttpRecord, Records, WaitTimedOut};
pub use scenario::{HttpFault, Rate, Scenario, Timed};

/// The bot token the Discord simulator accepts by default.
pub const DISCORD_TOKEN: &str = "sim-discord-bot-token.openflume";

/// The app-level token the Slack simulator accepts by default.
pub const SLACK_APP_TOKEN: &str = "xapp-1-A0SIMAPP01-0000000000-simulated";

/// The bot token the Slack simulator accepts by default.
pub const SLACK_BOT_TOKEN: &str = "xoxb-0000000000-0000000000-simulated";

/// The token the GitHub simulator accepts by default.
pub const GITHUB_TOKEN: &str = "ghp_simulatedOpenflumeToken000000000000";
