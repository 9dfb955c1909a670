//! Discord identify queues outside the machine: where a shard configured with
//! [`IdentifyQueue::External`](openflume_proto::discord::IdentifyQueue) gets leave to IDENTIFY.
//!
//! The machine asks with `Output::IdentifyRequest`; the driver hands the request to the source's
//! [`IdentifyGate`] and, when its future resolves, feeds `Input::IdentifyGranted` back. The
//! contract a gate keeps is in the docs of
//! [`IdentifyQueue`](openflume_proto::discord::IdentifyQueue): one IDENTIFY per bucket
//! (`shard_id % max_concurrency`) per 5 s across every shard that shares the gate, and none
//! past the daily `session_start_limit`. [`SharedIdentifyQueue`] keeps the bucket rule for
//! the sources of one process; a gate shared by several processes (a Redis lock, say) implements
//! the same trait.

use openflume_proto::discord::{IDENTIFY_SPACING_MS, IdentifyRequest};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A future a gate returns: resolves when the shard may IDENTIFY.
pub type Grant = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Grants Discord IDENTIFYs for shards that ask: a shard configured with
/// [`IdentifyQueue::External`](openflume_proto::discord::IdentifyQueue) emits
/// `Output::IdentifyRequest`, the driver calls `grant`, and feeds `Input::IdentifyGranted` once
/// the future resolves ([`Source::with_identify_gate`](crate::Source::with_identify_gate)). A
/// gate keeps the contract in the docs of
/// [`IdentifyQueue`](openflume_proto::discord::IdentifyQueue): one IDENTIFY per bucket
/// (`shard_id % max_concurrency`) per 5 s across every shard that shares it, and none past the
/// daily `session_start_limit`.
///
/// `grant` is called once per request, in the driver's task; the future it returns runs on its
/// own and must own what it needs. The shard IDENTIFYs as soon as it resolves, and uses a grant
/// at most once. A future dropped before it resolves (the source stopped) may keep its turn, as
/// [`SharedIdentifyQueue`]'s does: a slot lost, never two IDENTIFYs in one.
pub trait IdentifyGate: Send + Sync {
    /// Resolves when `request.shard_id` may send its IDENTIFY.
    fn grant(&self, request: IdentifyRequest) -> Grant;
}

/// The identify queue of one process, for several sources that share a bot (two gateways with
/// disjoint shard ranges, say): one IDENTIFY per bucket per 5 s across all of them. It does not
/// track the daily budget (each gateway's own limiter reads it from `/gateway/bot`; a shared
/// gate across processes must).
///
/// ```
/// use openflume::{IdentifyGate, SharedIdentifyQueue};
/// use openflume_proto::discord::IdentifyRequest;
/// let queue = SharedIdentifyQueue::new();
/// let request = |shard_id| IdentifyRequest { shard_id, shard_count: 2, bucket: shard_id % 1, max_concurrency: 1 };
/// let start = std::time::Instant::now();
/// smol::block_on(async {
///     queue.grant(request(0)).await; // at once
/// });
/// assert!(start.elapsed() < std::time::Duration::from_secs(1));
/// assert_eq!(queue.next_free(0).map(|at| at > start), Some(true)); // bucket 0 is busy for 5 s
/// ```
#[derive(Debug, Default)]
pub struct SharedIdentifyQueue {
    /// When each bucket may identify next; a turn is taken when the grant is handed out, so
    /// waiting requests queue up in the order they asked.
    next_free: Mutex<BTreeMap<u32, Instant>>,
}

impl SharedIdentifyQueue {
    /// An empty queue.
    pub fn new() -> SharedIdentifyQueue {
        SharedIdentifyQueue::default()
    }

    /// When `bucket` may identify next, if it identified recently.
    pub fn next_free(&self, bucket: u32) -> Option<Instant> {
        crate::lock::lock(&self.next_free).get(&bucket).copied()
    }
}

impl IdentifyGate for SharedIdentifyQueue {
    fn grant(&self, request: IdentifyRequest) -> Grant {
        // max_concurrency 0: no bucket limit (a gateway proxy paces).
        if request.max_concurrency == 0 {
            return Box::pin(async {});
        }
        let now = Instant::now();
        let at = {
            let mut next_free = crate::lock::lock(&self.next_free);
            let slot = next_free.entry(request.bucket).or_insert(now);
            let at = (*slot).max(now);
            *slot = at + Duration::from_millis(IDENTIFY_SPACING_MS);
            at
        };
        Box::pin(async move {
            async_io::Timer::at(at).await;
        })
    }
}
