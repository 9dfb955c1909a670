//! # openflume: one typed firehose of Discord, Slack, GitHub and cron events
//!
//! The smol drivers that run the sans-IO machines of [`openflume_proto`] against real sockets,
//! and the [`Flume`] API around them. The `cli` feature (on by default) adds the `openflume`
//! command; without it this crate is the library alone. The local simulators the demo, the
//! end-to-end tests and the benchmark run against are the `openflume-sim` crate.
//!
//! ```no_run
//! use openflume::{Flume, Overflow, Source};
//! use openflume_proto::cron::{CronConfig, CronMachine};
//!
//! smol::block_on(async {
//!     let running = Flume::builder()
//!         .source(Source::custom("time", |seed| {
//!             CronMachine::new(CronConfig::new("* * * * *"), jiff::tz::TimeZone::UTC, seed)
//!         }))
//!         .build()
//!         .open()
//!         .await?;
//!     let mut items = running.stream(1000, Overflow::DropOldest);
//!     while let Some(item) = items.next().await {
//!         println!("{}", serde_json::to_string(&item).unwrap());
//!     }
//!     Ok::<(), openflume::StartError>(())
//! });
//! ```

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
mod clock;
mod confluence;
mod cursors;
mod delivery;
mod driver;
#[cfg(feature = "log")]
mod durable;
mod flume;
#[cfg(feature = "log")]
mod forward;
mod http;
mod hub;
mod identify;
mod lock;
mod metrics;
mod net;
mod proxy;
mod record;
#[cfg(feature = "redis")]
pub mod redis;
pub mod replay;
mod serve;
mod source;
mod sources;
mod stream;
mod twins;
mod ws;

pub use confluence::{Confluence, ConfluenceError};
pub use cursors::StreamCursors;
#[cfg(feature = "log")]
pub use durable::LogSink;
pub use flume::{CancelHandle, Closed, Flume, FlumeBuilder, Running};
#[cfg(feature = "log")]
pub use forward::{
    ForwardError, ForwardLogCallback, ForwardOptions, ForwardStatus, ForwardTarget, Forwarder,
};
pub use hub::{ErrorCallback, ItemCallback};
pub use identify::{Grant, Hold, HoldReporter, IdentifyGate, SharedIdentifyQueue};
pub use metrics::{Metrics, SourceMetrics};
pub use net::TlsError;
/// The durable event log (feature `log`): the `openflume-log` crate.
#[cfg(feature = "log")]
pub use openflume_log as log;
pub use record::{RecordError, RecordOptions, RecordSummary, Recorder};
pub use source::Source;
pub use sources::{PartStatus, SourceFailure, SourceStatus, StartError};
pub use stream::{ItemStream, Overflow, StreamCheckpoint};
