//! `serve`'s hub over a Redis Stream (`serve --sink redis://…`): the same sessions as over the
//! SQLite log ([`HubStore`]), counting in stream ids, so several `serve` instances that share the
//! stream give any client the same replay, whichever instance it reaches.
//!
//! One task per process follows the stream's end with `XREAD BLOCK` on a connection of its own
//! and wakes the sessions; each session reads with `XRANGE (AFTER UNTIL COUNT N` on a shared
//! connection, as it reads the SQLite log, so replay and live are the same read and nothing is
//! skipped at the seam. An id once visible in a stream is never preceded by a later append
//! (Redis assigns ids in order, and a batch becomes visible whole), so "everything up to the last
//! id" is a safe bound. Named consumers' cursors are the hash `STREAM:hub-consumers`.
//!
//! `serve --forward`'s targets read the stream through the same hub (its follower, its shared
//! connection and [`xrange`]), see [`super::forward`].

use super::entries::parse_entries;
use super::{Backoff, RedisTarget};
use crate::cli::hub_client::HubStore;
use crate::lock::lock;
use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use event_listener::Event;
use openflume_proto::Item;
use openflume_proto::hub::{Filter, HubInput, StoredItem, StreamId};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the follower's `XREAD` blocks before it asks again (below the response timeout).
const FOLLOW_BLOCK: Duration = Duration::from_secs(2);

/// The stream as the hub reads it.
pub(crate) struct RedisHub {
    target: RedisTarget,
    client: ::redis::Client,
    /// The connection the sessions share (requests are pipelined on it); `None` after a failure,
    /// until the next request connects again.
    shared: Mutex<Option<MultiplexedConnection>>,
    /// The stream's last id, as the follower last saw it.
    last: Mutex<StreamId>,
    /// `last` moved.
    moved: Event,
}

impl RedisHub {
    /// Reads the stream's last id (a hello without a position starts there), then follows the
    /// stream's end until the hub is dropped.
    pub(crate) async fn start(target: RedisTarget) -> Result<Arc<RedisHub>, super::RedisError> {
        let client = target.client()?;
        let mut conn = super::connect(&client).await?;
        let newest: Value = newest(target.stream())
            .query_async(&mut conn)
            .await
            .map_err(|e| super::RedisError::command("XREVRANGE", &e))?;
        let last = parse_entries(&newest).first().map(|entry| entry.id);
        let hub = Arc::new(RedisHub {
            client,
            target,
            shared: Mutex::new(Some(conn)),
            last: Mutex::new(last.unwrap_or_default()),
            moved: Event::new(),
        });
        smol::spawn(follow(Arc::downgrade(&hub))).detach();
        Ok(hub)
    }

    /// The stream (and server) this hub reads.
    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    async fn connection(&self) -> Result<MultiplexedConnection, super::RedisError> {
        if let Some(conn) = lock(&self.shared).clone() {
            return Ok(conn);
        }
        let conn = super::connect(&self.client).await?;
        *lock(&self.shared) = Some(conn.clone());
        Ok(conn)
    }

    /// `cmd` on the shared connection; a failure drops the connection (the next request
    /// connects again) and names what it was `doing`.
    pub(crate) async fn query(
        &self,
        doing: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<Value, super::RedisError> {
        let mut conn = self.connection().await?;
        cmd.query_async(&mut conn).await.map_err(|error| {
            *lock(&self.shared) = None;
            super::RedisError::command(doing, &error)
        })
    }

    /// [`query`](Self::query) for a pipeline (or a transaction, `MULTI` … `EXEC`).
    pub(crate) async fn query_pipeline(
        &self,
        doing: &'static str,
        pipe: &::redis::Pipeline,
    ) -> Result<Value, super::RedisError> {
        let mut conn = self.connection().await?;
        pipe.query_async(&mut conn).await.map_err(|error| {
            *lock(&self.shared) = None;
            super::RedisError::command(doing, &error)
        })
    }

    fn advance(&self, to: StreamId) {
        let mut last = lock(&self.last);
        if to > *last {
            *last = to;
            drop(last);
            self.moved.notify(usize::MAX);
        }
    }
}

/// Follows the stream's end while the hub lives: the last id at start, then a blocking read
/// after it; on each wake, the new last id.
async fn follow(hub: std::sync::Weak<RedisHub>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new();
    loop {
        let Some(strong) = hub.upgrade() else { return };
        if conn.is_none() {
            match super::connect(&strong.client).await {
                Ok(connection) => conn = Some(connection),
                Err(_) => {
                    drop(strong);
                    async_io::Timer::after(backoff.next_wait()).await;
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let stream = strong.target.stream().to_owned();
        let after = *lock(&strong.last);
        drop(strong);
        // The newest entry first (it may be past `after` already), then wait for one after it.
        let newest = newest(&stream).query_async::<Value>(connection).await;
        let newest = match newest {
            Ok(reply) => parse_entries(&reply).first().map(|entry| entry.id),
            Err(_) => {
                conn = None;
                async_io::Timer::after(backoff.next_wait()).await;
                continue;
            }
        };
        backoff.reset();
        if let Some(id) = newest
            && id > after
        {
            if let Some(strong) = hub.upgrade() {
                strong.advance(id);
            }
            continue;
        }
        let waited = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(FOLLOW_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(after.to_string())
            .query_async::<Value>(connection)
            .await;
        if waited.is_err() {
            conn = None;
            async_io::Timer::after(backoff.next_wait()).await;
        }
    }
}

/// A named consumer's cumulative ack: stored only if it is past the stored one, so two sessions
/// under one name (on two instances) never move it back. Stream ids compare as (ms, seq); a
/// Lua number holds either exactly (below 2^53).
const ACK_SCRIPT: &str = r"
local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local held_ms, held_seq = parse(redis.call('HGET', KEYS[1], ARGV[1]))
local ms, seq = parse(ARGV[2])
if held_ms and (held_ms > ms or (held_ms == ms and held_seq >= seq)) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// `XRANGE STREAM (AFTER UNTIL COUNT LIMIT`: up to `limit` entries after `after` (exclusive),
/// up to `until` (a stream id, or `+` for the end).
pub(crate) fn xrange(stream: &str, after: StreamId, until: &str, limit: usize) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("XRANGE");
    cmd.arg(stream)
        .arg(format!("({after}"))
        .arg(until)
        .arg("COUNT")
        .arg(limit);
    cmd
}

/// `XREVRANGE STREAM + - COUNT 1`: the newest entry.
fn newest(stream: &str) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("XREVRANGE");
    cmd.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
    cmd
}

impl HubStore for RedisHub {
    type Position = StreamId;

    fn committed(&self) -> StreamId {
        *lock(&self.last)
    }

    async fn committed_beyond(&self, after: StreamId) {
        loop {
            let moved = self.moved.listen();
            if *lock(&self.last) > after {
                return;
            }
            moved.await;
        }
    }

    async fn read(
        &self,
        after: StreamId,
        until: StreamId,
        limit: usize,
        _filter: &Filter,
    ) -> Result<HubInput<StreamId>, String> {
        // Every entry is read: the session applies its filter (a stream has no index to ask).
        let range = xrange(self.target.stream(), after, &until.to_string(), limit);
        let reply = self
            .query("XRANGE", &range)
            .await
            .map_err(|_| format!("cannot read the stream; resume after event {after}"))?;
        let entries = parse_entries(&reply);
        let full = entries.len() >= limit;
        let last_read = entries.last().map(|entry| entry.id);
        let items = entries
            .into_iter()
            .filter_map(|entry| {
                let item = serde_json::from_str::<Item>(entry.json.as_deref()?).ok()?;
                Some(StoredItem {
                    event_id: entry.id,
                    item,
                })
            })
            .collect();
        let up_to = match last_read {
            Some(last) if full => last,
            _ => until,
        };
        Ok(HubInput::Read { items, up_to })
    }

    async fn consumer(&self, name: &str) -> Result<Option<StreamId>, String> {
        let reply = self
            .query(
                "HGET",
                ::redis::cmd("HGET")
                    .arg(self.target.hub_consumers_key())
                    .arg(name),
            )
            .await
            .map_err(|_| format!("{}: no answer to HGET", self.target))?;
        // Nil: a consumer never seen.
        Ok(super::entries::text(&reply).and_then(|text| text.parse().ok()))
    }

    async fn ack_consumer(&self, name: &str, position: StreamId) -> Result<(), String> {
        self.query(
            "EVAL",
            ::redis::cmd("EVAL")
                .arg(ACK_SCRIPT)
                .arg(1)
                .arg(self.target.hub_consumers_key())
                .arg(name)
                .arg(position.to_string()),
        )
        .await
        .map(drop)
        .map_err(|_| format!("{}: no answer to the ack", self.target))
    }

    fn metric(_position: StreamId) -> Option<u64> {
        // `/metrics` counts lag in the SQLite log's ids; a stream id is no count.
        None
    }
}
