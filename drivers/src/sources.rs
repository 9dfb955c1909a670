//! A set of running sources: started together, watched together, stopped together. Both a
//! [`Flume`](crate::Flume) and each group of a [`Confluence`](crate::Confluence) are one of these.

use crate::Source;
use crate::clock::os_seed;
use crate::driver::{self, DriverEnv, LiveStatus, StatusCell, StopRequest};
use crate::lock::lock;
use crate::serve::Listener;
use event_listener::Event;
use openflume_proto::{Checkpoint, Status};
use smol::Task;
use smol::channel::Sender;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One source's status, as reported by `statuses()`.
///
/// ```
/// use openflume::SourceStatus;
/// use openflume_proto::{Checkpoint, Status};
/// let s = SourceStatus { source: "github".into(), status: Status::Connected, reason: None };
/// assert_eq!(s.to_string(), "github: connected");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceStatus {
    /// The source's name.
    pub source: String,
    /// Its status.
    pub status: Status,
    /// Why, for `failed`, `reconnecting` and the like.
    pub reason: Option<String>,
}

impl std::fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{}: {} ({reason})", self.source, self.status),
            None => write!(f, "{}: {}", self.source, self.status),
        }
    }
}

/// The status of one part of a source that reports its parts: a shard of a Discord gateway
/// (named `"ID/COUNT"`), as [`Running::part_statuses`](crate::Running::part_statuses) gives it.
///
/// ```
/// use openflume::PartStatus;
/// use openflume_proto::Status;
/// let shard = PartStatus { part: "3/8".into(), status: Status::Reconnecting, reason: Some("close 4000".into()) };
/// assert_eq!(shard.to_string(), "3/8: reconnecting (close 4000)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartStatus {
    /// The part's name.
    pub part: String,
    /// Its status.
    pub status: Status,
    /// Why, for `failed`, `reconnecting` and the like.
    pub reason: Option<String>,
}

impl std::fmt::Display for PartStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{}: {} ({reason})", self.part, self.status),
            None => write!(f, "{}: {}", self.part, self.status),
        }
    }
}

/// Why `open` failed: every source that did not start, and why.
///
/// ```
/// use openflume::{SourceFailure, StartError};
/// let e = StartError { failures: vec![SourceFailure { source: "discord".into(), reason: "close 4004: authentication failed".into() }] };
/// assert_eq!(e.to_string(), "1 source(s) failed to start: discord: close 4004: authentication failed");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} source(s) failed to start: {}", failures.len(), failures.iter().map(|f| format!("{}: {}", f.source, f.reason)).collect::<Vec<_>>().join("; "))]
pub struct StartError {
    /// The sources that failed, each with its reason.
    pub failures: Vec<SourceFailure>,
}

/// One source that failed to start.
///
/// ```
/// use openflume::{Flume, Source};
/// use openflume_proto::cron::{CronConfig, CronMachine};
/// # smol::block_on(async {
/// let bad = Source::custom("time", |seed| {
///     CronMachine::new(CronConfig::new("every day"), jiff::tz::TimeZone::UTC, seed)
/// });
/// let error = Flume::builder().source(bad).build().open().await.err();
/// let failures = error.map(|e| e.failures).unwrap_or_default();
/// assert_eq!(failures[0].source, "time");
/// assert!(failures[0].reason.contains("cron expression \"every day\""));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFailure {
    /// The source's name.
    pub source: String,
    /// Why it failed, in words.
    pub reason: String,
}

struct Member {
    name: String,
    /// Where a serving source listens.
    local_addr: Option<SocketAddr>,
    status: StatusCell,
    stop: Sender<StopRequest>,
    task: Option<Task<Option<Checkpoint>>>,
    /// What the machine left to carry on from, once its driver ended.
    checkpoint: Option<Checkpoint>,
}

pub(crate) struct SourceSet {
    members: Vec<Member>,
    /// Notified whenever a member's status changes or its driver ends.
    changed: Arc<Event>,
}

/// Watches a set's statuses without borrowing the set, so waiting never blocks `stop`.
#[derive(Clone)]
pub(crate) struct StatusWatch {
    /// Each member's name and live status cell.
    cells: Vec<(String, StatusCell)>,
    changed: Arc<Event>,
}

impl StatusWatch {
    /// Resolves once the members' statuses, all read at one moment, satisfy `done`.
    async fn until(&self, done: impl Fn(&[Status]) -> bool) {
        loop {
            // Listen before checking, so a change between the check and the wait is not missed.
            let listener = self.changed.listen();
            let statuses: Vec<Status> = self
                .cells
                .iter()
                .map(|(_, cell)| lock(cell).status)
                .collect();
            if done(&statuses) {
                return;
            }
            listener.await;
        }
    }

    /// Resolves once every member's driver has ended by itself (all failed, say).
    pub(crate) async fn all_finished(&self) {
        self.until(|statuses| statuses.iter().all(|s| s.is_terminal()))
            .await;
    }

    /// Waits for the sources' first connections, by `rules`:
    /// - a source that fails for good (a bad token, say) fails the start at once, unless partial
    ///   starts are allowed;
    /// - a source still trying (rate limited, network errors: it logs why and until when) fails
    ///   it only when the timeout runs out;
    /// - with partial starts allowed, the start succeeds once every source connected or gave up
    ///   or the timeout ran out, if at least one connected; the others stay visible in their
    ///   status (failed, or reconnecting while they retry).
    ///
    /// The sources keep running either way: stopping them is the caller's choice.
    pub(crate) async fn settle(&self, rules: StartRules) -> Result<(), StartError> {
        let watch = self;
        let Some(timeout) = rules.timeout else {
            return Ok(());
        };
        let settled = |status: Status| status == Status::Connected || status.is_terminal();
        let decided = watch.until(|statuses| {
            let failed = statuses.iter().any(|s| s.is_terminal());
            (failed && !rules.allow_partial) || statuses.iter().all(|&s| settled(s))
        });
        futures_lite::future::or(decided, async {
            async_io::Timer::after(timeout).await;
        })
        .await;
        let statuses = watch.statuses();
        let connected = statuses
            .iter()
            .filter(|s| s.status == Status::Connected)
            .count();
        if rules.allow_partial && connected > 0 {
            return Ok(());
        }
        let failures: Vec<SourceFailure> = statuses
            .into_iter()
            .filter_map(|s| {
                let after = timeout.as_millis();
                match (s.status, s.reason) {
                    (Status::Connected, _) => None,
                    (Status::Failed | Status::Disconnected, reason) => {
                        Some(reason.unwrap_or_else(|| s.status.to_string()))
                    }
                    // The machine's status reason is its last real error (a refused URL, no
                    // READY, a connect error): the start failure names it.
                    (status, Some(reason)) => Some(format!(
                        "not connected after {after} ms; last error: {reason} (status {status})"
                    )),
                    (status, None) => Some(format!(
                        "not connected after {after} ms; no error reported (status {status})"
                    )),
                }
                .map(|reason| SourceFailure {
                    source: s.source,
                    reason,
                })
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StartError { failures })
        }
    }

    /// The parts' statuses of the member named `name` (empty for a source without parts).
    pub(crate) fn part_statuses(&self, name: &str) -> Vec<PartStatus> {
        self.cells
            .iter()
            .filter(|(member, _)| member == name)
            .flat_map(|(_, cell)| lock(cell).parts.clone())
            .collect()
    }

    /// Every member's status, read now.
    pub(crate) fn statuses(&self) -> Vec<SourceStatus> {
        self.cells
            .iter()
            .map(|(name, cell)| {
                let cell = lock(cell);
                SourceStatus {
                    source: name.clone(),
                    status: cell.status,
                    reason: cell.reason.clone(),
                }
            })
            .collect()
    }
}

/// How a start settles (see [`SourceSet::settle`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartRules {
    /// Give up on sources not connected after this long; `None` returns at once.
    pub(crate) timeout: Option<Duration>,
    /// Keep going with the sources that connected when others failed or never connected.
    pub(crate) allow_partial: bool,
}

impl SourceSet {
    /// Builds every source and starts its driver. Building fails on a configuration no source can
    /// run with; then nothing is started and the error names each such source.
    pub(crate) fn spawn(sources: Vec<Source>, env: &DriverEnv) -> Result<SourceSet, StartError> {
        let mut machines = Vec::new();
        let mut failures = Vec::new();
        for source in sources {
            let listener = source.listen().map(|addr| {
                Listener::bind(addr)
                    .map(|l| l.with_handoff(source.handoff()))
                    .map_err(|error| format!("cannot listen on {addr}: {error}"))
            });
            let seed = os_seed();
            // The configuration goes into the recording's header, when recording.
            let recipe = env.recorder.as_ref().and_then(|_| source.recipe().cloned());
            let identify_gate = source.identify_gate();
            match (source.build(seed), listener.transpose()) {
                ((name, Ok(machine)), Ok(listener)) => {
                    machines.push((name, machine, listener, (recipe, seed, identify_gate)))
                }
                ((name, Err(misuse)), _) => failures.push(SourceFailure {
                    source: name.into_owned(),
                    reason: misuse.to_string(),
                }),
                ((name, Ok(_)), Err(reason)) => failures.push(SourceFailure {
                    source: name.into_owned(),
                    reason,
                }),
            }
        }
        if !failures.is_empty() {
            return Err(StartError { failures });
        }
        let changed = Arc::new(Event::new());
        let members = machines
            .into_iter()
            .map(|(name, machine, listener, (recipe, seed, identify_gate))| {
                let mut env = env.clone();
                env.identify_gate = identify_gate;
                // Each source's driver records into a section of its own.
                env.recorder = env.recorder.map(|recorder| {
                    recorder.section(&name, recipe.as_ref(), seed, env.clock.now())
                });
                spawn(name, machine, env, changed.clone(), listener)
            })
            .collect();
        Ok(SourceSet { members, changed })
    }

    /// A watch over the members' statuses.
    pub(crate) fn watch(&self) -> StatusWatch {
        StatusWatch {
            cells: self
                .members
                .iter()
                .map(|m| (m.name.clone(), m.status.clone()))
                .collect(),
            changed: self.changed.clone(),
        }
    }

    pub(crate) fn statuses(&self) -> Vec<SourceStatus> {
        self.watch().statuses()
    }

    /// Each stopped source's checkpoint, by name.
    pub(crate) fn checkpoints(&self) -> Vec<(String, Checkpoint)> {
        self.members
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.checkpoint.clone()?)))
            .collect()
    }

    /// Where each serving source listens.
    pub(crate) fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.members
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.local_addr?)))
            .collect()
    }

    /// Asks every member to shut down and waits for their drivers to end.
    pub(crate) async fn stop(&mut self, keep_session: bool) {
        for member in &self.members {
            let _ = member.stop.try_send(StopRequest { keep_session });
        }
        for member in &mut self.members {
            // Awaited in place, not taken: a caller that gives up waiting (listen races the close
            // with its drain deadline) must not cancel the driver by dropping its task, which
            // cut every shutdown short (a webhook request in flight lost its answer); the next
            // stop awaits it again.
            if let Some(task) = member.task.as_mut() {
                member.checkpoint = task.await;
                member.task = None;
            }
        }
    }
}

fn spawn(
    name: Cow<'static, str>,
    machine: Box<dyn openflume_proto::Machine + Send>,
    env: DriverEnv,
    changed: Arc<Event>,
    listener: Option<Listener>,
) -> Member {
    let status: StatusCell = Arc::new(Mutex::new(LiveStatus::default()));
    let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let (stop, stop_rx) = smol::channel::bounded(1);
    let task = smol::spawn(driver::drive(
        name.clone(),
        machine,
        env,
        stop_rx,
        status.clone(),
        changed,
        listener,
    ));
    Member {
        name: name.into_owned(),
        local_addr,
        checkpoint: None,
        status,
        stop,
        task: Some(task),
    }
}
