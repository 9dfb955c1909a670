//! What a simulator does on its own: a steady event rate or a blast of events, and a schedule of
//! actions (faults, scripted events) at given times after the first client connects. The same
//! actions can be injected on command through each simulator's handle.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many events a simulator produces on its own.
///
/// ```
/// use openflume_sim::Rate;
/// let demo = Rate::Steady { per_second: 0.5, limit: None };
/// let bench = Rate::Blast { count: 100_000 };
/// assert_ne!(demo, bench);
/// assert_eq!(Rate::default(), Rate::Manual);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Rate {
    /// None: events come only from the schedule or on command.
    #[default]
    Manual,
    /// `per_second` events a second (fractions allowed: 0.2 is one every five seconds), starting
    /// when the first client connects (for Discord, when the first session is READY), until
    /// `limit` events (forever when `None`).
    Steady {
        /// Events per second; must be finite and positive.
        per_second: f64,
        /// Stop after this many events.
        limit: Option<u64>,
    },
    /// `count` events as fast as the client takes them (the benchmark), starting when the first
    /// client is ready to receive them.
    Blast {
        /// How many events in all.
        count: u64,
    },
}

impl Rate {
    /// Checks the numbers, so a bad rate is a start error instead of a panic later.
    pub(crate) fn validate(&self) -> std::io::Result<()> {
        match self {
            Rate::Steady { per_second, .. } if !(per_second.is_finite() && *per_second > 0.0) => {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the event rate must be a positive number",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// One scheduled action: `action` runs `after` this long since the first client connected.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed<A> {
    /// Delay from the first client connection.
    pub after: Duration,
    /// What to do then.
    pub action: A,
}

/// A simulator's script: its event [`Rate`] and a schedule of actions (`A` is the simulator's
/// action type: [`DiscordAction`](crate::DiscordAction), [`SlackAction`](crate::SlackAction)
/// or [`GithubAction`](crate::GithubAction)).
///
/// The clock starts when the first client connects; every scheduled action runs once.
///
/// ```
/// use openflume_sim::{DiscordAction, Scenario};
/// use std::time::Duration;
///
/// let scenario = Scenario::steady(2.0)
///     .at(Duration::from_secs(10), DiscordAction::Reconnect)
///     .at(Duration::from_secs(20), DiscordAction::StopHeartbeatAcks);
/// assert_eq!(scenario.schedule.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario<A> {
    /// Events produced on their own.
    pub rate: Rate,
    /// Actions at given times after the first client connected, in any order.
    pub schedule: Vec<Timed<A>>,
}

impl<A> Default for Scenario<A> {
    fn default() -> Self {
        Scenario::manual()
    }
}

impl<A> Scenario<A> {
    /// No events and no schedule: everything on command.
    pub fn manual() -> Scenario<A> {
        Scenario {
            rate: Rate::Manual,
            schedule: Vec::new(),
        }
    }

    /// `per_second` events a second, forever.
    pub fn steady(per_second: f64) -> Scenario<A> {
        Scenario {
            rate: Rate::Steady {
                per_second,
                limit: None,
            },
            schedule: Vec::new(),
        }
    }

    /// `count` events as fast as the client takes them.
    pub fn blast(count: u64) -> Scenario<A> {
        Scenario {
            rate: Rate::Blast { count },
            schedule: Vec::new(),
        }
    }

    /// Adds `action` at `after` since the first client connected.
    pub fn at(mut self, after: Duration, action: A) -> Scenario<A> {
        self.schedule.push(Timed { after, action });
        self
    }
}

/// A fault any simulator's HTTP endpoints can show, for the next few requests.
///
/// ```
/// use openflume_sim::HttpFault;
/// let fault = HttpFault::Status { status: 429, retry_after: Some(2) };
/// assert!(matches!(fault, HttpFault::Status { status: 429, .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpFault {
    /// Answer with this status and the service's usual error body for it, with a `Retry-After`
    /// header (seconds) when given. A 401 also works this way; a 5xx is a server error.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally.
    Stall(Duration),
    /// Close the connection without answering.
    Drop,
}

/// A fault either WebSocket simulator (Discord, Slack) can show on every open connection: a
/// close the client did not ask for, or a frame it must survive. What the frames hold is each
/// protocol's own; the kinds are the same.
///
/// ```
/// use openflume_sim::{DiscordAction, SlackAction, SocketFault};
/// let close = SocketFault::Close { code: 4000, reason: "again".into() };
/// let discord = DiscordAction::Fault(close.clone());
/// let slack = SlackAction::Fault(close);
/// assert!(matches!(discord, DiscordAction::Fault(SocketFault::Close { code: 4000, .. })));
/// assert!(matches!(slack, SlackAction::Fault(SocketFault::Close { code: 4000, .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketFault {
    /// Close with this code and reason.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (cut to 123 bytes).
        reason: String,
    },
    /// A text frame that is not JSON.
    GarbageText,
    /// A binary frame of random bytes (with Discord's zlib-stream it corrupts the client's
    /// inflate stream).
    GarbageBinary,
    /// A frame of `bytes` bytes that is otherwise valid: for Discord a HEARTBEAT_ACK with a huge
    /// `d` (compressed when the connection uses zlib-stream), for Slack a JSON message of an
    /// unknown type.
    Oversized {
        /// Frame size.
        bytes: usize,
    },
}

/// The 64 random bytes of a [`SocketFault::GarbageBinary`] frame.
pub(crate) fn garbage_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    (0..64).map(|_| rng.u8(..)).collect()
}

/// Pending HTTP faults: each applies to the next request, `times` times, oldest first.
#[derive(Debug, Default)]
pub(crate) struct HttpFaults(Mutex<VecDeque<(HttpFault, u32)>>);

impl HttpFaults {
    pub(crate) fn push(&self, fault: HttpFault, times: u32) {
        if times > 0 {
            let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded: a script cannot queue faults without end.
            if queue.len() < 1024 {
                queue.push_back((fault, times));
            }
        }
    }

    /// The fault for this request, if any.
    pub(crate) fn take(&self) -> Option<HttpFault> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (fault, times) = queue.front_mut()?;
        let fault = *fault;
        *times -= 1;
        if *times == 0 {
            queue.pop_front();
        }
        Some(fault)
    }
}

/// Paces a [`Rate`]: each call to [`Pacer::next`] waits until more events are due and says how
/// many. Steady rates catch up after a late wake-up instead of drifting; blasts come in batches.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Rate,
    start: Instant,
    produced: u64,
}

/// Largest batch a blast hands out at once, so the producer yields between batches.
const BLAST_BATCH: u64 = 256;

impl Pacer {
    pub(crate) fn new(rate: Rate) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            produced: 0,
        }
    }

    /// Waits until events are due; `None` once the rate has nothing more to produce.
    pub(crate) async fn next(&mut self) -> Option<u64> {
        match self.rate {
            Rate::Manual => None,
            Rate::Blast { count } => {
                let left = count.saturating_sub(self.produced);
                if left == 0 {
                    return None;
                }
                futures_lite::future::yield_now().await;
                let batch = left.min(BLAST_BATCH);
                self.produced += batch;
                Some(batch)
            }
            Rate::Steady { per_second, limit } => {
                let limit = limit.unwrap_or(u64::MAX);
                if self.produced >= limit {
                    return None;
                }
                let next_at =
                    Duration::try_from_secs_f64((self.produced + 1) as f64 / per_second).ok()?;
                async_io::Timer::at(self.start.checked_add(next_at)?).await;
                let elapsed = self.start.elapsed().as_secs_f64();
                // Float to integer casts saturate; at least one event is due after the wait.
                let due_total = ((elapsed * per_second) as u64).clamp(self.produced + 1, limit);
                let batch = due_total - self.produced;
                self.produced = due_total;
                Some(batch)
            }
        }
    }
}

/// Runs `schedule` against a clock that started at `start`, applying each action at its time.
pub(crate) async fn run_schedule<A>(
    start: Instant,
    mut schedule: Vec<Timed<A>>,
    mut apply: impl FnMut(A),
) {
    schedule.sort_by_key(|timed| timed.after);
    for timed in schedule {
        if let Some(at) = start.checked_add(timed.after) {
            async_io::Timer::at(at).await;
        }
        apply(timed.action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_validate() {
        assert!(Rate::Manual.validate().is_ok());
        assert!(Rate::Blast { count: 0 }.validate().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let rate = Rate::Steady {
                per_second: bad,
                limit: None,
            };
            assert!(rate.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn http_faults_apply_in_order_and_run_out() {
        let faults = HttpFaults::default();
        faults.push(HttpFault::Drop, 0);
        assert_eq!(faults.take(), None);
        faults.push(
            HttpFault::Status {
                status: 429,
                retry_after: Some(1),
            },
            2,
        );
        faults.push(HttpFault::Drop, 1);
        assert!(matches!(
            faults.take(),
            Some(HttpFault::Status { status: 429, .. })
        ));
        assert!(matches!(
            faults.take(),
            Some(HttpFault::Status { status: 429, .. })
        ));
        assert_eq!(faults.take(), Some(HttpFault::Drop));
        assert_eq!(faults.take(), None);
    }

    #[test]
    fn pacers_produce_what_the_rate_says() {
        smol::block_on(async {
            let mut blast = Pacer::new(Rate::Blast { count: 600 });
            let mut total = 0;
            while let Some(batch) = blast.next().await {
                assert!(batch <= BLAST_BATCH);
                total += batch;
            }
            assert_eq!(total, 600);

            let mut steady = Pacer::new(Rate::Steady {
                per_second: 200.0,
                limit: Some(5),
            });
            let started = Instant::now();
            let mut total = 0;
            while let Some(batch) = steady.next().await {
                total += batch;
            }
            assert_eq!(total, 5);
            assert!(started.elapsed() >= Duration::from_millis(20));
            assert_eq!(Pacer::new(Rate::Manual).next().await, None);
        });
    }
}
