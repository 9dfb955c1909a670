//! Discord IDENTIFYs coordinated across processes through Redis (`--redis URL`): one per bucket
//! per 5 s, and the daily session-start budget counted once for every process of a bot that
//! shares the Redis server.
//!
//! Three keys per bot, under the gate's prefix:
//!
//! - `PREFIX:MAX_CONCURRENCY:BUCKET`, a bucket's turn: set with `PX 5000` by whoever may
//!   IDENTIFY now; its expiry is the bucket's next turn.
//! - `PREFIX:budget`, the session starts left (a hash: `remaining`, and `basis`, `read` or
//!   `assumed`), expiring when Discord refills the budget. The first request that carries a
//!   `/gateway/bot` reading makes it; later readings only lower it, by the rules of
//!   [`SessionBudget`].
//! - `PREFIX:budget:grants`, when each grant of the last 24 h went (a sorted set by the server's
//!   milliseconds): a reading is counted down by the grants made after it.
//!
//! Each look `WATCH`es the three, reads them and the server's `TIME`, decides (the pure
//! [`SessionBudget`] rules), and writes the turn, the count and the grant in one `MULTI`/`EXEC`:
//! a change by another process in between makes `EXEC` refuse, and the gate looks again. So two
//! processes never take one bucket's turn or one session start, and the server keeps the time
//! (the processes' clocks do not matter). A process that dies after its grant loses nothing but
//! the session start. While Redis cannot be reached no turn is given (no IDENTIFY at all, rather
//! than two in a bucket or one past the budget): the shard keeps heartbeating and waits. A spent
//! budget holds every shard until the count expires; the shard is told (a warning in its log).
//! Nothing the gate says names the server (its URL may carry a password).

use super::{Backoff, RedisError, connect};
use crate::identify::{Grant, Hold, HoldReporter, IdentifyGate};
use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use openflume_proto::Millis;
use openflume_proto::discord::{
    BudgetBasis, BudgetReading, IDENTIFY_SPACING_MS, IdentifyRequest, SessionBudget,
};
use std::time::{Duration, Instant};

/// The shortest wait before asking for a busy bucket again.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// How often a request held for the daily budget looks again: a reading of the current period
/// can replace a guessed refill time.
const BUDGET_RECHECK: Duration = Duration::from_secs(60);
/// How long the grants are remembered: a reading older than a budget period says nothing.
const GRANTS_KEPT_MS: u64 = 24 * 60 * 60 * 1000;

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

/// The keys one request looks at.
struct Keys {
    bucket: String,
    budget: String,
    grants: String,
}

/// What one look decided.
enum Look {
    /// The shard may IDENTIFY now.
    Granted,
    /// Not yet, and why.
    Held(Hold),
    /// Another process wrote in between: look again.
    Raced,
}

/// What a look read under `WATCH`.
type Watched = ((u64, u64), i64, (Option<u32>, Option<String>), i64);

impl RedisIdentifyGate {
    /// A gate on the Redis at `url` (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`), its keys
    /// named `PREFIX:…` (see the module docs). Fails only on a URL that is not one.
    pub fn new(url: &str, prefix: impl Into<String>) -> Result<RedisIdentifyGate, RedisError> {
        let client = ::redis::Client::open(url).map_err(|error| RedisError::Connect {
            reason: super::describe(&error),
        })?;
        Ok(RedisIdentifyGate {
            client,
            prefix: prefix.into(),
        })
    }

    fn keys(&self, request: &IdentifyRequest) -> Keys {
        let prefix = &self.prefix;
        Keys {
            bucket: format!("{prefix}:{}:{}", request.max_concurrency, request.bucket),
            budget: format!("{prefix}:budget"),
            grants: format!("{prefix}:budget:grants"),
        }
    }
}

/// One look: the keys and the server's time read under `WATCH`, the decision, and its writes in
/// one transaction. `placed` is the request's reading on the server's clock, placed at the first
/// look and kept.
async fn look(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    request: &IdentifyRequest,
    asked: Instant,
    placed: &mut Option<BudgetReading>,
) -> Result<Look, ::redis::RedisError> {
    let mut watch = ::redis::pipe();
    watch
        .cmd("WATCH")
        .arg(&keys.bucket)
        .arg(&keys.budget)
        .arg(&keys.grants)
        .ignore();
    watch.cmd("TIME");
    watch.cmd("PTTL").arg(&keys.bucket);
    watch
        .cmd("HMGET")
        .arg(&keys.budget)
        .arg("remaining")
        .arg("basis");
    watch.cmd("PTTL").arg(&keys.budget);
    let ((secs, micros), bucket_ttl, (remaining, basis), budget_ttl): Watched =
        watch.query_async(conn).await?;
    let now = Millis(secs.saturating_mul(1000).saturating_add(micros / 1000));
    if placed.is_none() {
        let since_request = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX);
        *placed = request
            .session_start_limit
            .map(|reading| BudgetReading::place(reading, now, since_request));
    }
    let uncounted: u32 = match placed {
        Some(reading) => {
            ::redis::cmd("ZCOUNT")
                .arg(&keys.grants)
                .arg(reading.uncounted_since().0)
                .arg("+inf")
                .query_async(conn)
                .await?
        }
        None => 0,
    };
    let stored = match (remaining, u64::try_from(budget_ttl)) {
        (Some(remaining), Ok(ttl)) if ttl > 0 => Some(SessionBudget {
            remaining,
            reset_at: now + ttl,
            basis: match basis.as_deref() {
                Some("assumed") => BudgetBasis::Assumed,
                _ => BudgetBasis::Read,
            },
        }),
        _ => None,
    };
    let budget = SessionBudget::reconcile(stored, *placed, uncounted, now);
    let taken = budget.map(SessionBudget::take).transpose();
    // -2: no key, the bucket is free; -1 (a key without expiry, not the gate's): a turn's length.
    let bucket_wait = match bucket_ttl {
        _ if request.max_concurrency == 0 => None,
        -2 => None,
        -1 => Some(Duration::from_millis(IDENTIFY_SPACING_MS)),
        ms => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)).max(MIN_WAIT)),
    };
    let hold = match (&taken, bucket_wait) {
        (Err(refill), bucket) => {
            let wait = Duration::from_millis(*refill - now);
            Some(Hold::SessionStartLimit {
                wait: bucket.map_or(wait, |bucket| wait.max(bucket)),
            })
        }
        (Ok(_), Some(wait)) => Some(Hold::Bucket { wait }),
        (Ok(_), None) => None,
    };
    let mut transaction = ::redis::pipe();
    transaction.atomic();
    if let Some(hold) = hold {
        // Held: what the look learnt (a first count, a lower one) is kept for the others.
        match budget.filter(|budget| Some(*budget) != stored) {
            Some(budget) => write_budget(&mut transaction, keys, budget),
            None => {
                let () = ::redis::cmd("UNWATCH").query_async(conn).await?;
                return Ok(Look::Held(hold));
            }
        }
        return Ok(match transaction.query_async::<Value>(conn).await? {
            Value::Nil => Look::Raced,
            _ => Look::Held(hold),
        });
    }
    if request.max_concurrency != 0 {
        transaction
            .cmd("SET")
            .arg(&keys.bucket)
            .arg(std::process::id())
            .arg("PX")
            .arg(IDENTIFY_SPACING_MS)
            .ignore();
    }
    if let Ok(Some(after)) = taken {
        write_budget(&mut transaction, keys, after);
    }
    // The member only has to be unique: a shard asks once at a time.
    let member = format!("{}:{}:{}", now.0, request.shard_id, std::process::id());
    transaction
        .cmd("ZADD")
        .arg(&keys.grants)
        .arg(now.0)
        .arg(member)
        .ignore();
    transaction
        .cmd("ZREMRANGEBYSCORE")
        .arg(&keys.grants)
        .arg("-inf")
        .arg(format!("({}", now.0.saturating_sub(GRANTS_KEPT_MS)))
        .ignore();
    transaction
        .cmd("PEXPIRE")
        .arg(&keys.grants)
        .arg(GRANTS_KEPT_MS)
        .ignore();
    Ok(match transaction.query_async::<Value>(conn).await? {
        Value::Nil => Look::Raced,
        _ => Look::Granted,
    })
}

/// The count, expiring when Discord refills the budget.
fn write_budget(transaction: &mut ::redis::Pipeline, keys: &Keys, budget: SessionBudget) {
    let basis = match budget.basis {
        BudgetBasis::Read => "read",
        BudgetBasis::Assumed => "assumed",
    };
    transaction
        .cmd("HSET")
        .arg(&keys.budget)
        .arg("remaining")
        .arg(budget.remaining)
        .arg("basis")
        .arg(basis)
        .ignore();
    transaction
        .cmd("PEXPIREAT")
        .arg(&keys.budget)
        .arg(budget.reset_at.0)
        .ignore();
}

impl IdentifyGate for RedisIdentifyGate {
    fn grant(&self, request: IdentifyRequest, holds: HoldReporter) -> Grant {
        let client = self.client.clone();
        let keys = self.keys(&request);
        let asked = Instant::now();
        Box::pin(async move {
            let mut backoff = Backoff::new();
            let mut conn = None;
            let mut placed = None;
            // The shard is told when the reason changes, not at every look.
            let mut told: Option<std::mem::Discriminant<Hold>> = None;
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
                match look(connection, &keys, &request, asked, &mut placed).await {
                    Ok(Look::Granted) => return,
                    Ok(Look::Raced) => {}
                    Ok(Look::Held(hold)) => {
                        backoff.reset();
                        let reason = std::mem::discriminant(&hold);
                        if told != Some(reason) {
                            told = Some(reason);
                            holds.report(hold);
                        }
                        let wait = match hold {
                            Hold::SessionStartLimit { wait } => wait.min(BUDGET_RECHECK),
                            other => other.wait(),
                        };
                        async_io::Timer::after(wait).await;
                    }
                    Err(_) => {
                        // A fresh connection: a broken one may also hold a stale WATCH.
                        conn = None;
                        async_io::Timer::after(backoff.next_wait()).await;
                    }
                }
            }
        })
    }
}
