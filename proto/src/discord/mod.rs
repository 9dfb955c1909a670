//! # Discord Gateway v10
//!
//! [`DiscordShard`] is one Gateway shard as a sans-IO [`Machine`](crate::Machine): it asks the driver for
//! `GET /gateway/bot` (unless a gateway URL is configured), opens the WebSocket, heartbeats,
//! identifies or resumes, emits every dispatch as an [`Event`](crate::Event), and recovers from
//! everything the Gateway does: op 7 and op 9, zombie connections, each close code, compression
//! errors and garbage frames. [`DiscordGateway`] runs several shards under one `/gateway/bot` call
//! and one shared IDENTIFY limiter.
//!
//! The rules come from Discord's Gateway documentation (pages Gateway, Gateway Events, Opcodes
//! and Status Codes). The choices it leaves open:
//!
//! - Every reconnect waits for the [`Backoff`](crate::Backoff) (equal jitter, reset on READY or RESUMED).
//! - Closes for a reconnect use 4000, so the session stays resumable; only a shutdown without
//!   `keep_session` sends 1000, which ends the session.
//! - A zombie (heartbeat due, the previous one un-ACKed) is closed and abandoned at once; other
//!   closes wait for the server's close frame, at most `close_timeout_ms`.
//! - 4003, 4007 and 4009, and op 9 `false`, start a new session directly (no doomed RESUME);
//!   three failed RESUMEs in a row do too; 4004 and 4010–4014 are fatal. See [`close_action`].
//! - After op 9 `false` the IDENTIFY waits a random 1–5 s and for the identify bucket.
//! - Received op 1 is answered at once (never a zombie check) and restarts the interval.
//!
//! The drain rule holds: after each `handle_input`, call `poll_output` until `None`.
//!
//! ```
//! use openflume_proto::discord::{DiscordConfig, DiscordShard};
//! use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
//!
//! let mut shard = DiscordShard::new(DiscordConfig::new("my.bot.token"), 7).unwrap();
//! let now = Now { mono: Millis(0), wall: UnixMillis(1_764_100_000_000) };
//! shard.handle_input(now, Input::Start).unwrap();
//! let outputs: Vec<Output> = std::iter::from_fn(|| shard.poll_output()).collect();
//! assert!(outputs.iter().any(|out| matches!(out,
//!     Output::Request { request, .. } if request.url == "https://discord.com/api/v10/gateway/bot")));
//! ```

mod close_codes;
mod config;
mod dispatch_names;
pub(crate) mod envelope;
mod gateway;
mod gateway_bot;
mod heartbeat;
mod identify;
mod inflate;
mod message;
mod ratelimit;
mod scan;
mod session;
mod session_budget;
mod shard;
mod transport;
mod wire;
mod zstd_stream;

pub use close_codes::{CloseAction, CloseVerdict, close_action};
pub use config::{DiscordConfig, TransportCompression, intents};
pub use dispatch_names::DISPATCH_NAMES;
pub use gateway::{DiscordGateway, DiscordGatewayConfig, MAX_SHARDS, ShardRange};
pub use heartbeat::Liveness;
pub use identify::{
    IDENTIFY_SPACING_MS, IdentifyLimiter, IdentifyQueue, IdentifyRequest, IdentifyWait,
    SessionStartLimit, SessionStartReading,
};
pub use inflate::{InflateError, ZlibStream};
pub use message::DiscordMessage;
pub use ratelimit::{MAX_PAYLOAD_BYTES, SENDS_PER_WINDOW, SendClass, SendLimiter, WINDOW_MS};
pub use session::ResumeState;
pub use session_budget::{BudgetBasis, BudgetReading, READING_LAG_MS, SessionBudget};
pub use shard::DiscordShard;
pub use zstd_stream::{MAX_WINDOW_LOG, ZstdError, ZstdStream};

/// The source name on every item a Discord machine produces.
pub const SOURCE: &str = "discord";
