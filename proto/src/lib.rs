//! # openflume-proto: sans-IO protocol machines
//!
//! Each protocol openflume speaks is a pure state machine here: Discord's Gateway, Slack's Socket
//! Mode, GitHub's notifications polling, a cron scheduler, and the HTTP/1.1 codec they travel on.
//! A machine takes inputs (frames, HTTP responses, timer expiries) together with the time, and
//! returns outputs (frames to send, requests to make, events and logs for the firehose). It never
//! touches a socket, a clock, a thread or a global RNG, so it runs the same under the smol drivers
//! of the `openflume` crate, in a blocking loop, on another executor, or in a test fed from a
//! recorded fixture.
//!
//! ## The contract
//!
//! Every machine implements [`Machine`]:
//!
//! 1. `handle_input(now, input)` applies exactly one [`Input`]. It returns `Err(`[`Misuse`]`)` only
//!    when the caller used it wrongly; whatever the peer does becomes logs and status changes.
//! 2. Then call `poll_output()` until it returns `None` (the drain rule). Outputs come from one queue,
//!    so their order (an ack after the event it acknowledges) is part of the behaviour.
//! 3. Wait for the next input or until `poll_timeout()`, whichever is first; on the deadline feed
//!    [`Input::Timer`]. Early or spurious timer inputs are harmless.
//!
//! ```
//! use openflume_proto::{Input, Machine, Millis, Now, Output, UnixMillis};
//!
//! fn step<M: Machine>(machine: &mut M, now: Now, input: Input) -> Vec<Output> {
//!     machine.handle_input(now, input).expect("misuse");
//!     std::iter::from_fn(|| machine.poll_output()).collect()
//! }
//! # let _ = step::<Box<dyn Machine>>;
//! ```
//!
//! ## Features
//!
//! One feature per protocol, all on by default: `discord` (brings flate2, for zlib-stream),
//! `slack`, `github` and `cron` (both bring jiff: HTTP dates and time zones). Without one, its
//! module is not compiled. The webhook ingress ([`webhook`]), the hub protocol ([`hub`]), the
//! forwarding outbox ([`outbox`]), the HTTP codec ([`http`]) and conversation keys
//! ([`conversation`]) are always there (they need none of those dependencies); so is the
//! part of [`slack`] that reads Slack payloads, because webhooks deliver Slack events too.
//! `testing` adds the fixture simulator and the fuzzing entry points.
//!
//! Time is [`Now`]: a monotonic [`Millis`] chosen by the driver (0 in tests) and the wall clock as
//! [`UnixMillis`]. Randomness comes from a seed passed at construction.

mod backoff;
mod bytes;
mod config_error;
pub mod conversation;
mod core;
#[cfg(feature = "cron")]
pub mod cron;
mod cursor;
mod dedup;
#[cfg(feature = "discord")]
pub mod discord;
#[cfg(feature = "testing")]
pub mod fuzzing;
#[cfg(feature = "github")]
pub mod github;
pub mod http;
pub mod hub;
mod item;
mod machine;
pub mod outbox;
pub mod recording;
pub mod redact;
mod secret;
pub mod slack;
mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod timers;
pub mod url;
mod view;
pub mod webhook;

pub use backoff::{Backoff, ReconnectPolicy};
pub use bytes::Bytes;
pub use config_error::ConfigError;
#[cfg(feature = "discord")]
pub use cursor::DiscordShardsCursor;
pub use cursor::{
    CatchUp, Checkpoint, CronCursor, Cursors, GithubCursor, SlackCursor, WebhookCursor,
};
pub use dedup::DedupCache;
pub use item::{Event, Item, Level, Log, RawJson};
/// The time zone library of the cron API ([`cron::CronMachine::new`] takes a
/// `jiff::tz::TimeZone`): use this one, and its version always matches.
#[cfg(feature = "cron")]
pub use jiff;
pub use machine::{
    ConnId, DeliveryId, Frame, HttpRequest, HttpResponse, IdCounter, Input, Machine, Misuse,
    Output, ReqId,
};
pub use secret::Secret;
pub use status::{Status, StatusChange, StatusTracker};
pub use time::{Millis, MonotonicGuard, Now, UnixMillis};
pub use timers::{TimerKind, Timers};
