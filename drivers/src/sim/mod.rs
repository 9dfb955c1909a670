//! # Local simulators of Discord, Slack and GitHub
//!
//! placeholder

mod discord;
mod fake;
mod records;
mod scenario;
mod server;
#[cfg(test)]
mod testkit;

pub use discord::{
    Control, ControlRecord, DiscordAction, DiscordConfig, DiscordRecords, DiscordSim, DispatchRecord,
    GatewayConnection, HeartbeatRecord, IdentifyOutcome, IdentifyRecord, ResumeOutcome, ResumeRecord,
};
pub use records::{CloseRecord, HttpRecord, Records, WaitTimedOut};
pub use scenario::{HttpFault, Rate, Scenario, Timed};

/// The bot token the Discord simulator accepts by default.
pub const DISCORD_TOKEN: &str = "sim-discord-bot-token.openflume";
