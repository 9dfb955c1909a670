//! Discord IDENTIFYs coordinated across processes through Redis: one per bucket per 5 s for
//! every process of a bot that shares the Redis server (`--redis URL`).
//!
//! A bucket's turn is a key set with `SET … NX PX 5000`: whoever sets it may IDENTIFY now, and
//! the key expiring is the bucket's next turn. The server keeps the time, so the processes'
//! clocks do not matter; a process that dies after its turn loses nothing but the turn. While
//! Redis cannot be reached no turn is given (no IDENTIFY at all, rather than two in a bucket):
//! the shard keeps heartbeating and waits.

use super::{Backoff, connect};
use crate::identify::{Grant, IdentifyGate};
use openflume_proto::discord::{IDENTIFY_SPACING_MS, IdentifyRequest};
use std::time::Duration;

/// The shortest wait before asking for a busy bucket again.
const MIN_WAIT: Duration = Duration::from_millis(20);

/// An [`IdentifyGate`] shared by every process that uses the same Redis server and key prefix.
///
/// ```no_run
/// use openflume::redis::RedisIdentifyGate;
/// use openflume::{IdentifyGate, Source};
/// use openflume_proto::discord::{DiscordConfig, DiscordGatewayConfig, IdentifyQueue};
/// use std::sync::Arc;
/// let gate = RedisIdentifyGate::new("redis://127.0.0.1:6380", "openflume:identify:my-bot")?;
/// let mut shard = DiscordConfig::new("token");
/// shard.identify_queue = IdentifyQueue::External;
/// let config = DiscordGatewayConfig { shard, ..DiscordGatewayConfig::default() };
/// let source = Source::discord_gateway(config).with_identify_gate(Arc::new(gate));
/// # let _ = source;
/// # Ok::<(), openflume::redis::RedisError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisIdentifyGate {
    client: ::redis::Client,
    prefix: String,
}

impl RedisIdentifyGate {
    /// A gate on the Redis at `url` (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`), its keys
    /// named `PREFIX:MAX_CONCURRENCY:BUCKET`. Fails only on a URL that is not one.
    pub fn new(
        url: &str,
        prefix: impl Into<String>,
    ) -> Result<RedisIdentifyGate, super::RedisError> {
        let client = ::redis::Client::open(url).map_err(|error| super::RedisError::Connect {
            reason: super::describe(&error),
        })?;
        Ok(RedisIdentifyGate {
            client,
            prefix: prefix.into(),
        })
    }

    /// Takes the bucket's turn if it is free; otherwise how long until it may be.
    async fn try_turn(
        conn: &mut ::redis::aio::MultiplexedConnection,
        key: &str,
    ) -> Result<Option<Duration>, ::redis::RedisError> {
        let taken: Option<String> = ::redis::cmd("SET")
            .arg(key)
            .arg(std::process::id())
            .arg("NX")
            .arg("PX")
            .arg(IDENTIFY_SPACING_MS)
            .query_async(conn)
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let left: i64 = ::redis::cmd("PTTL").arg(key).query_async(conn).await?;
        let left = u64::try_from(left).unwrap_or(0);
        Ok(Some(Duration::from_millis(left).max(MIN_WAIT)))
    }
}

impl IdentifyGate for RedisIdentifyGate {
    fn grant(&self, request: IdentifyRequest) -> Grant {
        let client = self.client.clone();
        let key = format!(
            "{}:{}:{}",
            self.prefix, request.max_concurrency, request.bucket
        );
        Box::pin(async move {
            let mut backoff = Backoff::new();
            let mut conn = None;
            loop {
                let connection = match conn.as_mut() {
                    Some(connection) => connection,
                    None => match connect(&client).await {
                        Ok(connection) => conn.insert(connection),
                        Err(_) => {
                            async_io::Timer::after(backoff.next_wait()).await;
                            continue;
                        }
                    },
                };
                match RedisIdentifyGate::try_turn(connection, &key).await {
                    Ok(None) => return,
                    Ok(Some(wait)) => {
                        backoff = Backoff::new();
                        async_io::Timer::after(wait).await;
                    }
                    Err(_) => {
                        conn = None;
                        async_io::Timer::after(backoff.next_wait()).await;
                    }
                }
            }
        })
    }
}
