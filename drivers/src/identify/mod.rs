//! Discord identify queues outside the machine: where a shard configured with
//! [`IdentifyQueue::External`](openflume_proto::discord::IdentifyQueue) gets leave to IDENTIFY.
//!
//! The machine asks with `Output::IdentifyRequest`; the driver hands the request to the source's
//! [`IdentifyGate`] and, when its future resolves, feeds `Input::IdentifyGranted` back. Meanwhile
//! the gate may say why the request waits ([`Hold`], through the [`HoldReporter`] it is given):
//! the driver feeds that to the machine as `Input::IdentifyWaiting`, which logs it. The
//! contract a gate keeps is in the docs of
//! [`IdentifyQueue`](openflume_proto::discord::IdentifyQueue): one IDENTIFY per bucket
//! (`shard_id % max_concurrency`) per 5 s across every shard that shares the gate, and none
//! past the daily `session_start_limit`, counted across them all by the rules of
//! [`SessionBudget`](openflume_proto::discord::SessionBudget). [`SharedIdentifyQueue`] keeps
//! both for the sources of one process; a gate shared by several processes
//! ([`RedisIdentifyGate`](crate::redis::RedisIdentifyGate)) implements the same trait.

mod in_process;

pub use in_process::SharedIdentifyQueue;

use openflume_proto::discord::IdentifyRequest;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future a gate returns: resolves when the shard may IDENTIFY.
pub type Grant = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Grants Discord IDENTIFYs for shards that ask: a shard configured with
/// [`IdentifyQueue::External`](openflume_proto::discord::IdentifyQueue) emits
/// `Output::IdentifyRequest`, the driver calls `grant`, and feeds `Input::IdentifyGranted` once
/// the future resolves ([`Source::with_identify_gate`](crate::Source::with_identify_gate)). A
/// gate keeps the contract in the docs of
/// [`IdentifyQueue`](openflume_proto::discord::IdentifyQueue): one IDENTIFY per bucket
/// (`shard_id % max_concurrency`) per 5 s across every shard that shares it, and none past the
/// daily `session_start_limit` (each request carries the figure its machine read from
/// `/gateway/bot`).
///
/// `grant` is called once per request, in the driver's task; the future it returns runs on its
/// own and must own what it needs. The shard IDENTIFYs as soon as it resolves, and uses a grant
/// at most once. A future dropped before it resolves (the source stopped) may keep its turn, as
/// [`SharedIdentifyQueue`]'s does: a slot lost, never two IDENTIFYs in one. While it waits, it
/// may tell `holds` why, as often as the reason changes.
///
/// ```
/// use openflume::{Grant, Hold, HoldReporter, IdentifyGate};
/// use openflume_proto::discord::IdentifyRequest;
/// use std::time::Duration;
///
/// /// Lets every shard wait a second, and says so.
/// struct Slow;
/// impl IdentifyGate for Slow {
///     fn grant(&self, _request: IdentifyRequest, holds: HoldReporter) -> Grant {
///         Box::pin(async move {
///             holds.report(Hold::Bucket { wait: Duration::from_secs(1) });
///             async_io::Timer::after(Duration::from_secs(1)).await;
///         })
///     }
/// }
/// # let _ = Slow;
/// ```
pub trait IdentifyGate: Send + Sync {
    /// Resolves when `request.shard_id` may send its IDENTIFY; tells `holds` why it waits.
    fn grant(&self, request: IdentifyRequest, holds: HoldReporter) -> Grant;
}

/// Why a gate holds a shard's IDENTIFY back, and for about how long.
///
/// ```
/// use openflume::Hold;
/// use std::time::Duration;
/// let hold = Hold::SessionStartLimit { wait: Duration::from_secs(3600) };
/// assert_eq!(hold.wait(), Duration::from_secs(3600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hold {
    /// The shard's bucket identified less than 5 s ago, in this process or another.
    Bucket {
        /// Until the bucket is free.
        wait: Duration,
    },
    /// The bot's daily session-start budget is spent, counted across every process that shares
    /// the gate.
    SessionStartLimit {
        /// Until Discord refills it.
        wait: Duration,
    },
}

impl Hold {
    /// How long the IDENTIFY is expected to wait.
    pub fn wait(self) -> Duration {
        match self {
            Hold::Bucket { wait } | Hold::SessionStartLimit { wait } => wait,
        }
    }
}

/// Where a gate says why a request waits ([`Hold`]): the driver tells the shard that asked,
/// which logs it (`identify.wait`, or `identify.budget` as a warning).
///
/// ```
/// use openflume::{Hold, HoldReporter};
/// use std::time::Duration;
/// // A gate driven by hand has nobody to tell.
/// HoldReporter::none().report(Hold::Bucket { wait: Duration::from_millis(300) });
/// ```
#[derive(Clone)]
pub struct HoldReporter {
    tell: Option<Arc<dyn Fn(Hold) + Send + Sync>>,
}

impl HoldReporter {
    /// A reporter that tells nobody.
    pub fn none() -> HoldReporter {
        HoldReporter { tell: None }
    }

    /// A reporter that hands each hold to `tell` (which must not block).
    pub(crate) fn new(tell: impl Fn(Hold) + Send + Sync + 'static) -> HoldReporter {
        HoldReporter {
            tell: Some(Arc::new(tell)),
        }
    }

    /// Tells the shard why it waits. Never blocks: a word that finds the driver's input queue
    /// full is dropped (the next one, or the grant, follows).
    pub fn report(&self, hold: Hold) {
        if let Some(tell) = &self.tell {
            tell(hold);
        }
    }
}

impl fmt::Debug for HoldReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldReporter")
            .field("tells", &self.tell.is_some())
            .finish()
    }
}
