//! Slack Socket Mode as a sans-IO machine: envelopes in, events out, acks only after the firehose
//! has the event, and connections rotated without a gap.
//!
//! What it does that Slack's own SDKs do not:
//! - **Make-before-break rotation.** On `disconnect` with `warning` or `refresh_requested` (or a
//!   reason it does not know) the connection keeps receiving while a replacement is opened with a
//!   fresh `apps.connections.open` call. After the replacement said `hello` the old connection
//!   is still read, and its envelopes emitted and acked on it, until Slack closes it (it does a
//!   few seconds after the `disconnect`) or [`DRAIN_TIMEOUT_MS`] passes; only then does this
//!   machine close it. A replacement that stays silent past the hello timeout is dropped and
//!   retried with backoff, the old connection kept meanwhile.
//! - **Disconnect reasons that mean different things.** `link_disabled` (Socket Mode turned off)
//!   fails the source; `too_many_websockets` closes that connection and waits
//!   [`TOO_MANY_WEBSOCKETS_WAIT_MS`] before opening another.
//! - **Exactly-once emission.** Envelopes are deduplicated by `payload.event_id` (else by
//!   `envelope_id`) across redeliveries, rotations and parallel connections; duplicates are not
//!   emitted, and acknowledged only once their original is confirmed (at once if it is already).
//! - **Ack after delivery.** Each event is emitted with `confirm`; its `{"envelope_id":…}` ack goes
//!   out on the connection it came on when `Input::Delivered` arrives.
//! - **Own liveness.** Every connection pings every `ping_interval_ms`; one that hears nothing
//!   (no frame, no pong) for three intervals is replaced.
//!
//! The drain rule of [`Machine`](crate::Machine) applies: after each `handle_input`, call
//! `poll_output` until `None`, then wait for the next input or `poll_timeout`.
//!
//! ## Features
//!
//! The machine, its config and its wire format need the `slack` feature (on by default). What
//! reads Slack *payloads* is always compiled, because the webhook ingress receives Slack events
//! over HTTP without Socket Mode: [`conversation_key`], the metadata stamped on Slack events,
//! and the typed view [`SlackMessage`].

#[cfg(feature = "slack")]
mod acks;
#[cfg(feature = "slack")]
mod api;
#[cfg(feature = "slack")]
mod config;
#[cfg(feature = "slack")]
mod connections;
#[cfg(feature = "slack")]
mod dedup;
#[cfg(feature = "slack")]
mod frames;
#[cfg(feature = "slack")]
mod liveness;
#[cfg(feature = "slack")]
mod machine;
mod message;
pub(crate) mod meta;
mod text;
#[cfg(feature = "slack")]
mod wire;

#[cfg(feature = "slack")]
pub use acks::{ACK_DEADLINE_MS, MAX_PENDING_ACKS};
#[cfg(feature = "slack")]
pub use api::{DEFAULT_RETRY_AFTER_MS, FATAL_ERRORS, MAX_RETRY_AFTER_MS};
#[cfg(feature = "slack")]
pub use config::{DEFAULT_API_BASE, MAX_CONNECTIONS, SlackConfig};
#[cfg(feature = "slack")]
pub use connections::DRAIN_TIMEOUT_MS;
#[cfg(feature = "slack")]
pub use dedup::{DEDUP_CAPACITY, DEDUP_TTL_MS};
#[cfg(feature = "slack")]
pub use liveness::DEAD_AFTER_INTERVALS;
#[cfg(feature = "slack")]
use machine::scrub;
#[cfg(feature = "slack")]
pub use machine::{SlackMachine, TOO_MANY_WEBSOCKETS_WAIT_MS};
pub use message::SlackMessage;
pub use meta::conversation_key;

/// The source name on every event and log.
pub const SOURCE: &str = "slack";
