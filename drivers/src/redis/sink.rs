//! The Redis Stream as a Flume consumer: every item appended with `XADD`, an event held only once
//! Redis replied (see the [module docs](super) for the chain).

use super::cursors::cursor_fields;
use super::entries::ITEM_FIELD;
use super::{Backoff, RedisError, RedisTarget};
use crate::cursors::StreamCursors;
use crate::stream::{ItemStream, Relay};
use crate::{Flume, Overflow};
use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use openflume_log::Record;
use openflume_proto::Cursors;
use std::collections::VecDeque;
use std::sync::Arc;

/// How long a sink's batch marker outlives its last batch: long enough for any stale copy of a
/// batch still on its way to meet it, short enough that crashed runs leave nothing for good.
const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

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
        self.redis_sink(target, resume, capacity, options, None)
    }

    /// [`redis_into`](Self::redis_into), each item then handed on through the stream this
    /// returns once Redis has it (and its upstream acknowledgement went out): `listen --sink`
    /// prints that stream, so stdout never shows an item Redis does not hold. `relay_capacity`
    /// bounds what waits for the reader; a full relay holds the sink, and so the sources.
    #[cfg(feature = "cli")]
    pub(crate) fn redis_into_relaying(
        &self,
        target: RedisTarget,
        resume: Cursors,
        capacity: usize,
        options: RedisSinkOptions,
        relay_capacity: usize,
    ) -> Result<(RedisSink, ItemStream), RedisError> {
        let (relay, relayed) = Relay::new(relay_capacity);
        let sink = self.redis_sink(target, resume, capacity, options, Some(relay))?;
        Ok((sink, relayed))
    }

    fn redis_sink(
        &self,
        target: RedisTarget,
        resume: Cursors,
        capacity: usize,
        options: RedisSinkOptions,
        relay: Option<Relay>,
    ) -> Result<RedisSink, RedisError> {
        let client = target.client()?;
        let stream = self
            .stream(capacity, Overflow::Backpressure)
            .holds_until_commit()
            .with_checkpoints();
        let (done_tx, done) = smol::channel::bounded(1);
        let marker = target.marker_key(crate::clock::os_seed());
        let appender = Appender {
            client,
            target,
            options,
            cursors: StreamCursors::new(resume),
            marker,
            batches: 0,
            relay,
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
    /// This run's marker key (the number of the last batch appended): a fresh one each start,
    /// so batch numbers never compare across runs.
    marker: String,
    /// Batches numbered so far.
    batches: u64,
    /// Where the items go once appended (`listen --sink`), if anywhere.
    relay: Option<Relay>,
}

/// How one attempt at a batch ended.
enum Attempt {
    /// Redis has the batch (now, or from an earlier attempt whose reply was lost).
    Appended,
    /// The batch was not appended: try again after a backoff.
    Failed(RedisError),
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
            let mut appended_items = Vec::new();
            for item in batch.drain(..) {
                self.cursors.held(&item);
                items.push(Record::from_item(&item).json);
                if self.relay.is_some() {
                    appended_items.push(item);
                }
            }
            let count = items.len() as u64;
            self.batches += 1;
            let transaction = self.transaction(items);
            // The same batch until Redis has it: the sources wait meanwhile.
            loop {
                let attempt = match conn.as_mut() {
                    Some(connection) => self.attempt(connection, &transaction).await?,
                    None => match super::connect(&self.client).await {
                        Ok(connection) => {
                            conn = Some(connection);
                            continue;
                        }
                        Err(error) => Attempt::Failed(error),
                    },
                };
                match attempt {
                    Attempt::Appended => {
                        stream.commit();
                        appended += count;
                        if backoff.failures() > 0 {
                            self.notice(SinkNotice::Recovered {
                                failures: backoff.failures(),
                            });
                        }
                        backoff.reset();
                        // Redis has them: now they may be printed. A slow reader holds the
                        // next batch here.
                        if let Some(relay) = &self.relay {
                            relay.send(std::mem::take(&mut appended_items)).await;
                        }
                        break;
                    }
                    Attempt::Failed(error) => {
                        // Whatever broke, a fresh connection (and so a fresh WATCH): a dropped
                        // one never comes back, and a new one costs little next to the backoff.
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
            let _: Result<Value, _> = ::redis::cmd("DEL")
                .arg(&self.marker)
                .query_async(connection)
                .await;
        }
        Ok(appended)
    }

    /// One attempt: `WATCH` the marker and read it (the batch may be in already, from an
    /// attempt whose reply was lost), then the transaction. A stale copy of the batch that
    /// reaches Redis between the two changes the marker, so `EXEC` refuses this one.
    async fn attempt(
        &self,
        conn: &mut MultiplexedConnection,
        transaction: &::redis::Pipeline,
    ) -> Result<Attempt, RedisError> {
        loop {
            let mut check = ::redis::pipe();
            check.cmd("WATCH").arg(&self.marker).ignore();
            check.cmd("GET").arg(&self.marker);
            let stored: Result<(Option<u64>,), _> = check.query_async(conn).await;
            match stored {
                Err(error) => return Ok(Attempt::Failed(RedisError::command("WATCH", &error))),
                Ok((Some(done),)) if done >= self.batches => return Ok(Attempt::Appended),
                Ok(_) => {}
            }
            match transaction.query_async::<Value>(conn).await {
                Err(error) => {
                    return Ok(Attempt::Failed(RedisError::command(
                        "MULTI/XADD/EXEC",
                        &error,
                    )));
                }
                // The marker moved after the WATCH: look again.
                Ok(Value::Nil) => continue,
                Ok(Value::Array(replies)) => {
                    if let Some(error) = replies.iter().find_map(|reply| match reply {
                        Value::ServerError(error) => Some(error.to_string()),
                        _ => None,
                    }) {
                        // Some commands ran: the marker says the batch is in, but not all of it
                        // may be. Nothing of it is acknowledged; the sink stops.
                        return Err(RedisError::Partial { reason: error });
                    }
                    return Ok(Attempt::Appended);
                }
                Ok(other) => {
                    return Ok(Attempt::Failed(RedisError::Command {
                        doing: "EXEC",
                        reason: format!("an unexpected reply: {other:?}")
                            .chars()
                            .take(200)
                            .collect(),
                    }));
                }
            }
        }
    }

    /// The transaction of the next batch: its items, the cursors that moved, and the batch's
    /// number in this run's marker.
    fn transaction(&mut self, items: Vec<String>) -> ::redis::Pipeline {
        let fields = cursor_fields(self.cursors.take_changed());
        let mut pipe = ::redis::pipe();
        pipe.atomic().ignore_errors();
        for item in items {
            pipe.cmd("XADD")
                .arg(self.target.stream())
                .arg("MAXLEN")
                .arg("~")
                .arg(self.options.max_len)
                .arg("*")
                .arg(ITEM_FIELD)
                .arg(item);
        }
        if !fields.is_empty() {
            let hset = pipe.cmd("HSET").arg(self.target.cursors_key());
            for (field, value) in fields {
                hset.arg(field).arg(value);
            }
        }
        pipe.cmd("SET")
            .arg(&self.marker)
            .arg(self.batches)
            .arg("EX")
            .arg(MARKER_TTL_SECS);
        pipe
    }

    fn notice(&self, notice: SinkNotice) {
        if let Some(report) = &self.options.on_notice {
            report(notice);
        }
    }
}
