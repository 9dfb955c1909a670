//! Where a forwarding target reads its events and keeps its state: a [`ForwardStore`]. The
//! SQLite log is one ([`LogStore`], the default); a Redis Stream is the other (`serve --sink
//! redis://…`, [`crate::redis::forward`]). The task that drives a target's outbox
//! ([`super::TargetRun`]) is the same over both: it only reads, stores, appends its logs and
//! waits, in the order its outbox asks.
//!
//! **Counting what waits.** `/metrics`' queue depth counts the items not read yet, which a
//! position alone cannot always tell (a stream id is no count). So a store also says how many
//! items were ever appended up to a position ([`ForwardStore::count_at`]) and in all
//! ([`ForwardStore::count_committed`]), and how far each read took the count ([`Count`]). The
//! SQLite log's ids are that count already.

use openflume_log::{EventId, EventLog, Filter, Kind, LogError, Record};
use openflume_proto::hub::HubPosition;
use openflume_proto::outbox::{Pending, TargetState};
use openflume_proto::{Item, Log};
use std::future::Future;

/// Why a store could not read or store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The SQLite log failed: that does not pass by itself (a full disk, a broken file).
    #[error(transparent)]
    Log(#[from] LogError),
    /// Redis failed: a restart or a failover, which passes.
    #[cfg(feature = "cli")]
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
}

impl StoreError {
    /// Whether trying again later may work (the target then waits and tries again, rather than
    /// stop until the next start).
    pub(crate) fn passes(&self) -> bool {
        match self {
            StoreError::Log(_) => false,
            #[cfg(feature = "cli")]
            StoreError::Redis(_) => true,
        }
    }
}

/// Where a read left the count of items appended (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    /// Exactly this many items were appended up to and including the read's `up_to`.
    At(u64),
    /// The read covered this many items after its start (its start's count is the caller's).
    /// Only a Redis Stream's full page says this.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    Past(u64),
}

/// One read's answer: the events the filter passes, how far the read looked, and how far that
/// took the count.
#[derive(Debug)]
pub(crate) struct Page<P> {
    /// The events to forward, positions ascending; the body is the line the receiver gets.
    pub(crate) items: Vec<Pending<P>>,
    /// Every position up to this one was looked at.
    pub(crate) up_to: P,
    /// Where `up_to` stands in the count of items appended.
    pub(crate) count: Count,
}

/// What a forwarding target needs of the log it forwards from. Positions are `Position`: the
/// SQLite log's ids, or a Redis Stream's ids.
pub(crate) trait ForwardStore: Send + Sync + 'static {
    /// The log's positions.
    type Position: HubPosition;

    /// The last committed position, as far as this process knows.
    fn committed(&self) -> Self::Position;

    /// Resolves once something beyond `after` is committed (or may be: a spurious wake costs
    /// one read).
    fn committed_beyond(&self, after: Self::Position) -> impl Future<Output = ()> + Send;

    /// Up to `limit` items after `after`; the events among them that `filter` passes.
    fn read(
        &self,
        after: Self::Position,
        limit: usize,
        filter: &Filter,
    ) -> impl Future<Output = Result<Page<Self::Position>, StoreError>> + Send;

    /// The state stored for the target `url`, `None` for one never seen.
    fn state(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<Option<TargetState<Self::Position>>, StoreError>> + Send;

    /// Stores the target's state; resolves once it is durable as the store keeps things.
    fn store_state(
        &self,
        url: &str,
        state: &TargetState<Self::Position>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends the forwarder's own log to the firehose, and resolves once it is there. A log
    /// that cannot be appended is lost: the state alone decides what is sent.
    fn append_log(&self, log: &Log) -> impl Future<Output = ()> + Send;

    /// How many items were ever appended up to and including `position`, if the store can tell.
    fn count_at(&self, position: Self::Position) -> impl Future<Output = Option<u64>> + Send;

    /// How many items were ever appended, if the store can tell.
    fn count_committed(&self) -> impl Future<Output = Option<u64>> + Send;
}

/// The SQLite log as a forwarding target's store: its events, and the states in its database
/// ([`EventLog::store_outbox_state`]).
pub(crate) struct LogStore {
    pub(crate) log: EventLog,
}

impl ForwardStore for LogStore {
    type Position = u64;

    fn committed(&self) -> u64 {
        self.log.committed_id().0
    }

    async fn committed_beyond(&self, after: u64) {
        self.log.committed_beyond(EventId(after)).await;
    }

    async fn read(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Page<u64>, StoreError> {
        let log = self.log.clone();
        let filter = filter.clone();
        let page = smol::unblock(move || {
            // Everything up to `horizon` was committed before the read starts: a short read
            // has looked at all of it, matching or not.
            let horizon = log.committed_id().0;
            let entries = log.read_after(EventId(after), limit, &filter)?;
            let full = entries.len() >= limit;
            let last = entries.last().map_or(after, |entry| entry.event_id.0);
            let up_to = if full { last } else { last.max(horizon) };
            let items = entries
                .into_iter()
                .filter(|entry| entry.record.kind == Kind::Event)
                .map(|entry| Pending {
                    event_id: entry.event_id.0,
                    body: entry.line(),
                })
                .collect();
            Ok::<_, LogError>(Page {
                items,
                up_to,
                count: Count::At(up_to),
            })
        })
        .await?;
        Ok(page)
    }

    async fn state(&self, url: &str) -> Result<Option<TargetState>, StoreError> {
        let (log, url) = (self.log.clone(), url.to_owned());
        Ok(smol::unblock(move || log.outbox_state(&url)).await?)
    }

    async fn store_state(&self, url: &str, state: &TargetState) -> Result<(), StoreError> {
        let (log, url, state) = (self.log.clone(), url.to_owned(), state.clone());
        Ok(smol::unblock(move || log.store_outbox_state(&url, &state)).await?)
    }

    async fn append_log(&self, log: &Log) {
        let record = Record::from_item(&Item::Log(log.clone()));
        if let Ok(appended) = self.log.append_async(vec![record], Vec::new()).await {
            let _ = appended.await;
        }
    }

    /// An id is given out once, in order: the ids are the count.
    async fn count_at(&self, position: u64) -> Option<u64> {
        Some(position)
    }

    async fn count_committed(&self) -> Option<u64> {
        Some(self.log.committed_id().0)
    }
}
