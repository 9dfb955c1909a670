//! Redis Streams as the shared log (feature `redis`, issue 18): the SQLite log stays the
//! single-machine default; a Redis Stream is the log every process of a deployment shares.
//!
//! **Who holds an event, and who may forget it.**
//!
//! 1. A source's item goes to the [`RedisSink`] through a back-pressure stream that
//!    [holds until commit](crate::ItemStream::holds_until_commit).
//! 2. The sink appends what is ready as one transaction (`MULTI` … `EXEC`): an `XADD STREAM
//!    MAXLEN ~ N * item JSON` per item, one `HSET` of the cursors the items were folded into (see
//!    [`StreamCursors`](crate::StreamCursors)) into `STREAM:cursors`, and the batch's number into
//!    this run's marker key. Redis runs a transaction whole, with no other client's command in
//!    between. Before it, the sink `WATCH`es the marker and reads it: a batch whose number is
//!    there already was appended by an attempt whose reply was lost, and a stale copy of the
//!    batch that reaches Redis after the check makes `EXEC` refuse this one. So a batch is
//!    appended once, never twice.
//! 3. Only once `EXEC`'s reply is back does the sink commit its stream: then the upstream
//!    acknowledgement goes out (a Slack ack, GitHub's validators, a webhook's 200).
//! 4. With `listen --sink`, the batch then goes on to stdout, in order: a line is printed only
//!    once Redis holds its item, and a reader that does not keep up holds the next batch (and
//!    so the sources), as without a sink.
//! 5. Consumers read the stream: `openflume consume` through a consumer group, `XACK`ing each
//!    entry once its line is flushed to stdout; `serve`'s hub with `XRANGE`.
//!
//! While Redis is down or refuses writes (a restart, `maxmemory`), the sink keeps the batch,
//! reconnects with backoff and sends it again: its stream fills, the sources stop reading
//! (back-pressure) and nothing is acknowledged. If a transaction ran in part (a command of it
//! failed, say a key of the wrong type), the sink stops rather than acknowledge what it cannot
//! know was kept, and `serve` exits 1. An acknowledged item is as durable as the
//! Redis server keeps it: with `appendonly yes` and `appendfsync always` it survives a crash of
//! the server; with the default `everysec`, up to a second of writes can be lost to one.

mod cursors;
// Read back by `consume` and the hub (the CLI); the library alone reads only cursors.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
mod entries;
mod identify;
mod sink;
mod target;

#[cfg(feature = "cli")]
pub(crate) mod consume;
#[cfg(feature = "cli")]
pub(crate) mod forward;
#[cfg(feature = "cli")]
pub(crate) mod hub;

pub(crate) use cursors::load_cursors;
pub use identify::RedisIdentifyGate;
pub use sink::{RedisSink, RedisSinkOptions, SinkNotice};
pub use target::{RedisTarget, TargetError};

use std::time::Duration;

/// Why a Redis operation failed: what it was doing, and Redis's own words (never the URL, which
/// may carry a password).
///
/// ```
/// let error = openflume::redis::RedisError::Command {
///     doing: "XADD",
///     reason: "OOM command not allowed".into(),
/// };
/// assert_eq!(error.to_string(), "redis: XADD: OOM command not allowed");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// No connection could be made (refused, timed out, a wrong password).
    #[error("redis: cannot connect: {reason}")]
    Connect {
        /// Why.
        reason: String,
    },
    /// A command failed, or its connection broke.
    #[error("redis: {doing}: {reason}")]
    Command {
        /// The command.
        doing: &'static str,
        /// Why.
        reason: String,
    },
    /// Some commands of a transaction ran and some failed (a key of the wrong type): the sink
    /// stops rather than acknowledge what it cannot know was kept.
    #[error("redis: the append ran in part and failed in part: {reason}")]
    Partial {
        /// The first failure.
        reason: String,
    },
    /// The sink's thread could not start, or it went away.
    #[error("redis: the sink stopped: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

impl RedisError {
    pub(crate) fn command(doing: &'static str, error: &::redis::RedisError) -> RedisError {
        RedisError::Command {
            doing,
            reason: describe(error),
        }
    }
}

/// Redis's words for a failure, without anything from the URL.
pub(crate) fn describe(error: &::redis::RedisError) -> String {
    let text = error.to_string();
    text.chars().take(200).collect()
}

/// How long a reply may take before the connection counts as broken. Long enough for a batch
/// of thousands of `XADD`s on a busy server; a blocking read asks for less than this.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection with openflume's timeouts, on smol.
pub(crate) async fn connect(
    client: &::redis::Client,
) -> Result<::redis::aio::MultiplexedConnection, RedisError> {
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|error| RedisError::Connect {
            reason: describe(&error),
        })
}

/// Waits between attempts: doubling from 100 ms to 5 s, with full jitter so that many processes
/// that lost the same server do not come back in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Backoff {
        Backoff {
            attempt: 0,
            rng: fastrand::Rng::with_seed(crate::clock::os_seed()),
        }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let ceiling = Self::BASE
            .saturating_mul(1u32 << self.attempt.min(6))
            .min(Self::MAX);
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.u64(millis / 2..=millis))
    }

    /// Attempts since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}
