//! # openflume: one typed firehose of Discord, Slack, GitHub and cron events
//!
//! The smol drivers that run the sans-IO machines of [`openflume_proto`] against real sockets,
//! the `Flume` API around them, and the local simulators used by the demo and the tests.

pub mod sim;
