//! `--sink redis://…/STREAM` and the flags that go with it, the same on `serve` and `listen`:
//! the items and the sources' cursors go to a Redis Stream in one transaction per batch (see
//! [`crate::redis`]), and the sources start from the cursors stored there.
//!
//! `serve` appends there instead of its log, its hub replays from the stream, and `--forward`
//! forwards from it (see [`crate::redis::forward`]). `listen` prints each item once Redis has it
//! (the sink relays it to the stdout writer), so a pipe never shows an item Redis does not hold;
//! upstream acknowledgements wait for the append, as in `serve`.

use super::UsageError;
use super::listen::report;
use crate::redis::{RedisError, RedisSinkOptions, RedisTarget};
use clap::Args;
use openflume_proto::Cursors;
use std::sync::Arc;

/// The `--sink` flag family, flattened into `serve` and `listen`.
#[derive(Debug, Args)]
pub(crate) struct RedisSinkArgs {
    /// Append every item to a Redis Stream: redis://[USER:PASSWORD@]HOST[:PORT][/DB]/STREAM. The
    /// sources' cursors go to the hash STREAM:cursors in the same atomic step and are read from
    /// there at start, so this process can move to another machine; an event is acknowledged
    /// upstream once Redis has it. serve appends there instead of the log in --data, its hub
    /// (/ws) replays from the stream, its ids strings such as "1764100000000-0", and --forward
    /// reads the stream and keeps its targets' states in the hash STREAM:forward. listen prints
    /// each item only once Redis has it (not with --data).
    #[arg(
        long,
        value_name = "URL",
        env = "OPENFLUME_SINK",
        help_heading = "Redis"
    )]
    pub(crate) sink: Option<String>,
    /// With --sink redis://…: keep about this many entries in the stream (XADD MAXLEN ~ N).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..),
        env = "OPENFLUME_REDIS_MAXLEN",
        help_heading = "Redis"
    )]
    pub(crate) redis_maxlen: u64,
    /// With --sink redis://…: the hash this process keeps its sources' cursors in (default
    /// STREAM:cursors). Each process appending to the same stream needs its own, named for what
    /// it runs (e.g. events:cursors:shards-0-15), so that it resumes wherever it starts.
    #[arg(
        long,
        value_name = "KEY",
        env = "OPENFLUME_REDIS_CURSORS",
        help_heading = "Redis"
    )]
    pub(crate) redis_cursors: Option<String>,
}

/// A checked `--sink redis://…`: where and how to append.
pub(crate) struct RedisSinkPlan {
    pub(crate) target: RedisTarget,
    max_len: u64,
}

impl RedisSinkArgs {
    /// The sink the flags ask for, if any; a URL that is not one, or an empty cursors key, is a
    /// usage error naming the flag (and never the password).
    pub(crate) fn plan(&self) -> Result<Option<RedisSinkPlan>, UsageError> {
        let Some(url) = self.sink.as_deref() else {
            return Ok(None);
        };
        let mut target = url
            .parse::<RedisTarget>()
            .map_err(|e| UsageError::flag("--sink", e))?;
        if let Some(key) = &self.redis_cursors {
            if key.is_empty() {
                return Err(UsageError::flag("--redis-cursors", "the key is empty"));
            }
            target = target.with_cursors_key(key.clone());
        }
        Ok(Some(RedisSinkPlan {
            target,
            max_len: self.redis_maxlen,
        }))
    }
}

impl RedisSinkPlan {
    /// The cursors stored for this process in Redis: what its sources start from. Errors are
    /// reported as `--sink TARGET: why` (the target shown without its password).
    pub(crate) async fn stored_cursors(&self) -> Result<Cursors, String> {
        crate::redis::RedisSink::stored_cursors(&self.target)
            .await
            .map_err(|error| self.failed(&error))
    }

    /// `--redis-maxlen`: what the sink keeps, and so what `serve --forward`'s own logs say too.
    pub(crate) fn max_len(&self) -> u64 {
        self.max_len
    }

    /// `--sink TARGET: why`.
    pub(crate) fn failed(&self, error: &RedisError) -> String {
        format!("--sink {}: {error}", self.target)
    }

    /// The sink's options: `--redis-maxlen`, and its notices (appends failing, appending again)
    /// on stderr.
    pub(crate) fn options(&self) -> RedisSinkOptions {
        RedisSinkOptions {
            max_len: self.max_len,
            on_notice: Some(Arc::new(|notice| report(format_args!("{notice}")))),
        }
    }
}
