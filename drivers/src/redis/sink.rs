//! The Redis Stream as a Flume consumer: every item appended with `XADD`, an event held only once
//! Redis replied (see the [module docs](super) for the chain).

use super::cursors::{MARKER_PREFIX, cursor_fields};
use super::{Backoff, RedisError, RedisTarget};
use crate::cursors::StreamCursors;
use crate::stream::ItemStream;
use crate::{Flume, Overflow};
use ::redis::Value;
use openflume_log::Record;
use openflume_proto::Cursors;
use std::collections::VecDeque;
use std::sync::Arc;

/// The append, run by Redis as one step: it checks the batch number stored last by this sink
/// (a batch sent again is a no-op), checks the keys' types (so that no command can fail half-way
/// through), appends every item, then stores the cursors and the batch number.
///
/// KEYS: the stream, the cursors hash. ARGV: the marker field, the batch number, MAXLEN, the
/// count of cursor fields N, N field/value pairs, then the items' JSON. Returns the count
/// appended and the last id (0 and "" for a batch already appended).
const APPEND_SCRIPT: &str = r"
local function kind(key) return redis.call('TYPE', key)['ok'] end
if kind(KEYS[1]) ~= 'stream' and kind(KEYS[1]) ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind(KEYS[1]) .. ', not a stream')
end
if kind(KEYS[2]) ~= 'hash' and kind(KEYS[2]) ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. kind(KEYS[2]) .. ', not a hash')
end
local done = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if done >= tonumber(ARGV[2]) then return {0, ''} end
local pairs_end = 4 + 2 * tonumber(ARGV[4])
local last = ''
for i = pairs_end + 1, #ARGV do
  last = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'item', ARGV[i])
end
local fields = {ARGV[1], ARGV[2]}
for i = 5, pairs_end do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
return {#ARGV - pairs_end, last}
";

/// How a [`RedisSink`] appends.
///
/// ```
/// use openflume::redis::RedisSinkOptions;
/// let options = RedisSinkOptions { max_len: 1_000_000, ..RedisSinkOptions::default() };
/// assert_eq!(RedisSinkOptions::default().max_len, 100_000);
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct RedisSinkOptions {
    /// Keep about this many entries: each `XADD` says `MAXLEN ~ max_len`, so Redis trims the
    /// oldest whole nodes once the stream is past it (a little more may stay). Default 100 000.
    pub max_len: u64,
    /// Told when appends start failing (each failed attempt) and when they work again; the sink
    /// retries either way.
    pub on_notice: Option<Arc<dyn Fn(SinkNotice) + Send + Sync>>,
}

impl Default for RedisSinkOptions {
    fn default() -> Self {
        RedisSinkOptions {
            max_len: 100_000,
            on_notice: None,
        }
    }
}

impl std::fmt::Debug for RedisSinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSinkOptions")
            .field("max_len", &self.max_len)
            .field("on_notice", &self.on_notice.is_some())
            .finish()
    }
}

/// What the sink tells [`RedisSinkOptions::on_notice`].
///
/// ```
/// use openflume::redis::{RedisError, SinkNotice};
/// let notice = SinkNotice::Failing {
///     error: RedisError::Connect { reason: "refused".into() },
///     attempt: 1,
/// };
/// assert!(notice.to_string().contains("waiting, nothing is acknowledged"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkNotice {
    /// An append attempt failed; the batch waits and is sent again after a backoff.
    Failing {
        /// Why.
        error: RedisError,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// An append worked after `failures` failed attempts.
    Recovered {
        /// Failed attempts before it.
        failures: u32,
    },
}

impl std::fmt::Display for SinkNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkNotice::Failing { error, attempt } => write!(
                f,
                "{error} (attempt {attempt}; the sources are waiting, nothing is acknowledged)"
            ),
            SinkNotice::Recovered { failures } => {
                write!(
                    f,
                    "redis: appending again after {failures} failed attempt(s)"
                )
            }
        }
    }
}

/// The task that appends a flume's items to a Redis Stream: see [`Flume::redis_into`].
///
/// It runs on a thread of its own until the flume closes and everything was appended. While
/// Redis is unreachable it retries forever (with backoff): the sources wait, nothing is
/// acknowledged upstream.
#[derive(Debug)]
pub struct RedisSink {
    done: smol::channel::Receiver<Result<u64, RedisError>>,
}

impl Flume {
    /// Appends every item to the Redis Stream of `target` (`XADD`), from the first status on,
    /// and stores the sources' cursors beside them in Redis (the hash `STREAM:cursors`), in the
    /// same atomic step. An event is acknowledged upstream only once Redis has it. `resume` is
    /// what [`RedisSink::stored_cursors`] read at start (the sources were configured from it):
    /// the base the new cursors are folded into. `capacity` bounds the items waiting for Redis
    /// before the sources wait.
    ///
    /// ```no_run
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::redis::{RedisSink, RedisSinkOptions};
    /// # smol::block_on(async {
    /// let target = "redis://127.0.0.1:6379/events".parse()?;
    /// let resume = RedisSink::stored_cursors(&target).await?;
    /// let flume = Flume::builder().source(cron).build();
    /// let sink = flume.redis_into(target, resume, 4096, RedisSinkOptions::default())?;
    /// flume.open().await?.close().await;
    /// let appended = sink.finished().await?;
    /// # let _ = appended;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn redis_into(
        &self,
        target: RedisTarget,
        resume: Cursors,
        capacity: usize,
        options: RedisSinkOptions,
    ) -> Result<RedisSink, RedisError> {
        let client = target.client()?;
        let stream = self
            .stream(capacity, Overflow::Backpressure)
            .holds_until_commit()
            .with_checkpoints();
        let (done_tx, done) = smol::channel::bounded(1);
        let appender = Appender {
            client,
            target,
            options,
            cursors: StreamCursors::new(resume),
            marker: format!("{MARKER_PREFIX}{:016x}", crate::clock::os_seed()),
            batches: 0,
        };
        std::thread::Builder::new()
            .name("openflume-redis-sink".to_owned())
            .spawn(move || {
                // A plain parker, as the log sink does: the connection's own task runs on the
                // executor, and this thread only waits for its replies.
                let result = futures_lite::future::block_on(appender.run(stream));
                let _ = done_tx.try_send(result);
            })
            .map_err(|error| RedisError::Stopped {
                reason: format!("cannot start the sink thread: {}", error.kind()),
            })?;
        Ok(RedisSink { done })
    }
}

impl RedisSink {
    /// The cursors stored for `target`'s stream (empty for a new stream): what the sources
    /// start from, on this machine or another.
    ///
    /// ```no_run
    /// # smol::block_on(async {
    /// let target = "redis://127.0.0.1:6379/events".parse()?;
    /// let cursors = openflume::redis::RedisSink::stored_cursors(&target).await?;
    /// println!("{:?}", cursors.get("discord"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn stored_cursors(target: &RedisTarget) -> Result<Cursors, RedisError> {
        super::load_cursors(target).await
    }

    /// Resolves once the flume has closed and every item was appended (`Ok` with how many).
    /// While Redis is unreachable this waits: give it a deadline at shutdown.
    ///
    /// ```no_run
    /// # async fn demo(sink: openflume::redis::RedisSink) -> Result<(), openflume::redis::RedisError> {
    /// let appended = sink.finished().await?;
    /// println!("{appended} items appended");
    /// # Ok(()) }
    /// ```
    pub async fn finished(self) -> Result<u64, RedisError> {
        self.done.recv().await.unwrap_or(Err(RedisError::Stopped {
            reason: "the sink thread ended".to_owned(),
        }))
    }
}

/// The sink's state on its thread.
struct Appender {
    client: ::redis::Client,
    target: RedisTarget,
    options: RedisSinkOptions,
    cursors: StreamCursors,
    /// This run's marker field in the cursors hash: a fresh one each start, so batch numbers
    /// never compare across runs.
    marker: String,
    /// Batches numbered so far.
    batches: u64,
}

impl Appender {
    async fn run(mut self, mut stream: ItemStream) -> Result<u64, RedisError> {
        let mut conn = None;
        let mut backoff = Backoff::new();
        let mut appended = 0u64;
        let mut batch = VecDeque::new();
        loop {
            stream.take_ready(&mut batch);
            if batch.is_empty() {
                match stream.next().await {
                    Some(item) => batch.push_back(item),
                    None => break,
                }
                stream.take_ready(&mut batch);
            }
            self.cursors.take_checkpoints(&mut stream);
            let mut items = Vec::with_capacity(batch.len());
            for item in batch.drain(..) {
                self.cursors.held(&item);
                items.push(Record::from_item(&item).json);
            }
            let count = items.len() as u64;
            let script = self.script(items);
            // The same batch until Redis has it: the sources wait meanwhile.
            loop {
                let result = match conn.as_mut() {
                    Some(connection) => script
                        .query_async::<Value>(connection)
                        .await
                        .map_err(|e| RedisError::command("EVAL (XADD)", &e)),
                    None => match super::connect(&self.client).await {
                        Ok(connection) => {
                            conn = Some(connection);
                            continue;
                        }
                        Err(error) => Err(error),
                    },
                };
                match result {
                    Ok(_) => {
                        stream.commit();
                        appended += count;
                        if backoff.failures() > 0 {
                            self.notice(SinkNotice::Recovered {
                                failures: backoff.failures(),
                            });
                        }
                        backoff.reset();
                        break;
                    }
                    Err(error) => {
                        // Whatever broke, a fresh connection: a dropped one never comes back,
                        // and a new one costs little next to the backoff.
                        conn = None;
                        let wait = backoff.next_wait();
                        self.notice(SinkNotice::Failing {
                            error,
                            attempt: backoff.failures(),
                        });
                        async_io::Timer::after(wait).await;
                    }
                }
            }
        }
        // This run's marker is not needed once everything is appended.
        if let Some(connection) = conn.as_mut() {
            let _: Result<Value, _> = ::redis::cmd("HDEL")
                .arg(self.target.cursors_key())
                .arg(&self.marker)
                .query_async(connection)
                .await;
        }
        Ok(appended)
    }

    /// The script's call for the next batch: its items, and the cursors that moved.
    fn script(&mut self, items: Vec<String>) -> ::redis::Cmd {
        self.batches += 1;
        let fields = cursor_fields(self.cursors.take_changed());
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(APPEND_SCRIPT)
            .arg(2)
            .arg(self.target.stream())
            .arg(self.target.cursors_key())
            .arg(&self.marker)
            .arg(self.batches)
            .arg(self.options.max_len)
            .arg(fields.len());
        for (field, value) in fields {
            cmd.arg(field).arg(value);
        }
        for item in items {
            cmd.arg(item);
        }
        cmd
    }

    fn notice(&self, notice: SinkNotice) {
        if let Some(report) = &self.options.on_notice {
            report(notice);
        }
    }
}
