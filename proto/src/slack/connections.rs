//! The set of Socket Mode connections a source holds, and the rule that rotates them without a gap.
//!
//! A connection Slack wants to move (`disconnect` with `warning` or `refresh_requested`) or one
//! that went silent is *retiring*: it no longer counts towards the target, so a replacement is
//! opened, but it stays in the set (and keeps delivering envelopes) until enough replacements said
//! `hello`: make-before-break. Even then a connection Slack asked to move is not closed at once:
//! Slack may still write envelopes on it until it closes it itself, a few seconds after the
//! `disconnect`, so it is *replaced* and read (and acked on) until Slack closes it or
//! [`DRAIN_TIMEOUT_MS`] passes. A connection this machine closed stays known, *closing*, until
//! the transport reports it closed, so envelopes still in flight on it are emitted, not dropped.

use super::liveness::{Check, Liveness};
use crate::{Bytes, ConnId, Millis, ReqId};
use std::collections::{BTreeMap, BTreeSet};

/// A connection Slack asked to move is read for at most this long after its replacement said
/// `hello`, then closed. Slack closes it itself about 10 s after its `warning`, usually sooner;
/// waiting for that close is better than closing first, as no ack can follow one's own close
/// frame. The same bound applies to a connection this machine closed whose closing the transport
/// never reports.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Where one connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `Connect` sent, WebSocket not open yet.
    Connecting,
    /// Open, waiting for `hello`.
    AwaitingHello,
    /// Said `hello`: receiving envelopes.
    Live,
    /// Slack asked to move: still receiving until a replacement said `hello`.
    Draining,
    /// Silent too long: kept only until a replacement said `hello`, in case it was merely slow.
    Stale,
    /// Slack asked to move it and a replacement said `hello`: still read and acked on, without
    /// pings, until Slack closes it or [`DRAIN_TIMEOUT_MS`] passes.
    Replaced,
    /// This machine sent its close: envelopes still arriving are emitted but cannot be acked.
    Closing,
}

impl Phase {
    fn is_retiring(self) -> bool {
        matches!(self, Phase::Draining | Phase::Stale)
    }

    /// Counts towards the target number of connections.
    fn is_wanted(self) -> bool {
        matches!(self, Phase::Connecting | Phase::AwaitingHello | Phase::Live)
    }

    /// Frames (acks) may still be sent on it.
    pub fn can_send(self) -> bool {
        self != Phase::Closing
    }
}

/// Something due on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// No `hello` within the hello timeout.
    HelloTimeout,
    /// A replaced connection Slack did not close within [`DRAIN_TIMEOUT_MS`].
    DrainTimeout,
    /// A connection this machine closed that the transport did not report closed in time.
    CloseTimeout,
    /// Send this ping.
    Ping(Bytes),
    /// Nothing heard for this long.
    Dead {
        /// Time since the last inbound frame or pong.
        silent_ms: u64,
    },
}

#[derive(Clone, Debug)]
struct Connection {
    phase: Phase,
    /// Hello timeout, drain timeout or close timeout, depending on the phase.
    deadline: Option<Millis>,
    liveness: Option<Liveness>,
}

/// The connections and URL requests of one source.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    target: usize,
    ping_interval_ms: u64,
    hello_timeout_ms: u64,
    /// Ordered by id, which is also age.
    conns: BTreeMap<ConnId, Connection>,
    /// `apps.connections.open` calls in flight; each becomes one connection.
    url_requests: BTreeSet<ReqId>,
    /// Since when the driver has not read (back-pressure): the deadlines that wait on Slack
    /// (hello, drain, close, death by silence) stand still meanwhile; pings still go out.
    reading_paused_since: Option<Millis>,
}

impl Pool {
    /// An empty pool that wants `target` connections.
    pub fn new(target: usize, ping_interval_ms: u64, hello_timeout_ms: u64) -> Pool {
        Pool {
            target,
            ping_interval_ms,
            hello_timeout_ms,
            conns: BTreeMap::new(),
            url_requests: BTreeSet::new(),
            reading_paused_since: None,
        }
    }

    /// How many more URL requests to start to reach the target. Retiring connections do not count.
    pub fn deficit(&self) -> usize {
        let wanted = self.conns.values().filter(|c| c.phase.is_wanted()).count();
        self.target
            .saturating_sub(wanted)
            .saturating_sub(self.url_requests.len())
    }

    /// Records a URL request in flight.
    pub fn add_request(&mut self, req: ReqId) {
        self.url_requests.insert(req);
    }

    /// Forgets a URL request; false when it was not ours.
    pub fn take_request(&mut self, req: ReqId) -> bool {
        self.url_requests.remove(&req)
    }

    /// Records a connection the machine just asked to open; its hello timeout starts now.
    pub fn add_connecting(&mut self, conn: ConnId, now: Millis) {
        let connection = Connection {
            phase: Phase::Connecting,
            deadline: Some(now + self.hello_timeout_ms),
            liveness: None,
        };
        self.conns.insert(conn, connection);
    }

    /// The phase of `conn`, `None` when it is not (or no longer) ours.
    pub fn phase(&self, conn: ConnId) -> Option<Phase> {
        self.conns.get(&conn).map(|c| c.phase)
    }

    /// The WebSocket opened: start pinging. False when it was not connecting.
    pub fn on_opened(&mut self, conn: ConnId, now: Millis) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.phase == Phase::Connecting => {
                c.phase = Phase::AwaitingHello;
                c.liveness = Some(Liveness::new(now, self.ping_interval_ms));
                true
            }
            _ => false,
        }
    }

    /// A frame or pong arrived: a sign of life (and proof of opening, if `Opened` was missed).
    pub fn on_inbound(&mut self, conn: ConnId, now: Millis) {
        self.on_opened(conn, now);
        if let Some(liveness) = self.conns.get_mut(&conn).and_then(|c| c.liveness.as_mut()) {
            liveness.on_inbound(now);
        }
    }

    /// `hello` arrived on a connection still waiting for it; false otherwise.
    pub fn on_hello(&mut self, conn: ConnId) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if matches!(c.phase, Phase::Connecting | Phase::AwaitingHello) => {
                c.phase = Phase::Live;
                c.deadline = None;
                true
            }
            _ => false,
        }
    }

    /// Moves `conn` to a retiring phase; a stale connection is no longer pinged.
    pub fn retire(&mut self, conn: ConnId, phase: Phase) {
        debug_assert!(phase.is_retiring());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = phase;
            if phase == Phase::Stale {
                c.liveness = None;
            }
        }
    }

    /// A replacement took over `conn`: read it, unpinged, until `now` + [`DRAIN_TIMEOUT_MS`].
    pub fn replace(&mut self, conn: ConnId, now: Millis) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Replaced;
            c.deadline = Some(now + DRAIN_TIMEOUT_MS);
            c.liveness = None;
        }
    }

    /// This machine closed `conn`: keep it until the transport says so, or [`DRAIN_TIMEOUT_MS`].
    /// False when it was not ours or closing already (nothing to close).
    pub fn closing(&mut self, conn: ConnId, now: Millis) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.phase != Phase::Closing => {
                c.phase = Phase::Closing;
                c.deadline = Some(now + DRAIN_TIMEOUT_MS);
                c.liveness = None;
                true
            }
            _ => false,
        }
    }

    /// Forgets `conn`, returning the phase it was in.
    pub fn remove(&mut self, conn: ConnId) -> Option<Phase> {
        self.conns.remove(&conn).map(|c| c.phase)
    }

    /// Forgets everything, returning the connections to close (those not closing already).
    pub fn drain(&mut self) -> Vec<ConnId> {
        self.url_requests.clear();
        std::mem::take(&mut self.conns)
            .into_iter()
            .filter(|(_, c)| c.phase != Phase::Closing)
            .map(|(id, _)| id)
            .collect()
    }

    /// True while some connection can deliver envelopes.
    pub fn is_receiving(&self) -> bool {
        self.conns
            .values()
            .any(|c| matches!(c.phase, Phase::Live | Phase::Draining))
    }

    /// Connections held, in every phase (Slack counts them until they are closed).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Retiring connections that enough live ones now replace, stale ones and then the oldest
    /// first. With target `n` and `l` live connections, `n − l` retiring ones may stay.
    pub fn replaced(&self) -> Vec<ConnId> {
        let live = self
            .conns
            .values()
            .filter(|c| c.phase == Phase::Live)
            .count();
        let keep = self.target.saturating_sub(live);
        let mut retiring: Vec<(bool, ConnId)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase.is_retiring())
            .map(|(id, c)| (c.phase != Phase::Stale, *id))
            .collect();
        retiring.sort();
        let surplus = retiring.len().saturating_sub(keep);
        retiring
            .into_iter()
            .take(surplus)
            .map(|(_, id)| id)
            .collect()
    }

    /// The driver stopped reading at `now` (see [`Input::ReadingPaused`](crate::Input)).
    pub fn pause(&mut self, now: Millis) {
        self.reading_paused_since.get_or_insert(now);
    }

    /// The driver reads again at `now`: every deadline that waits on Slack moves later by the
    /// time spent paused.
    pub fn resume(&mut self, now: Millis) {
        let Some(since) = self.reading_paused_since.take() else {
            return;
        };
        let paused_for = now - since;
        for c in self.conns.values_mut() {
            c.deadline = c.deadline.map(|at| at + paused_for);
            if let Some(liveness) = &mut c.liveness {
                liveness.excuse_silence(paused_for);
            }
        }
    }

    /// The earliest hello timeout, ping or death among the connections; only pings while reading
    /// is paused.
    pub fn next_deadline(&self) -> Option<Millis> {
        let paused = self.reading_paused_since.is_some();
        self.conns
            .values()
            .flat_map(|c| {
                let liveness = c.liveness.as_ref().map(|l| {
                    if paused {
                        l.next_ping_at()
                    } else {
                        l.next_deadline()
                    }
                });
                c.deadline.filter(|_| !paused).into_iter().chain(liveness)
            })
            .min()
    }

    /// Everything due at `now`, by connection age. A timeout hides liveness on the same connection.
    pub fn due(&mut self, now: Millis) -> Vec<(ConnId, Due)> {
        let mut due = Vec::new();
        if self.reading_paused_since.is_some() {
            for (id, c) in &mut self.conns {
                if let Some(bytes) = c.liveness.as_mut().and_then(|l| l.ping_if_due(now)) {
                    due.push((*id, Due::Ping(bytes)));
                }
            }
            return due;
        }
        for (id, c) in &mut self.conns {
            if c.deadline.is_some_and(|at| at <= now) {
                let timeout = match c.phase {
                    Phase::Replaced => Due::DrainTimeout,
                    Phase::Closing => Due::CloseTimeout,
                    _ => Due::HelloTimeout,
                };
                due.push((*id, timeout));
                continue;
            }
            match c.liveness.as_mut().map(|l| l.check(now)) {
                Some(Check::Ping(bytes)) => due.push((*id, Due::Ping(bytes))),
                Some(Check::Dead { silent_ms }) => due.push((*id, Due::Dead { silent_ms })),
                Some(Check::Quiet) | None => {}
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(target: usize) -> Pool {
        Pool::new(target, 10_000, 15_000)
    }

    fn live(pool: &mut Pool, id: u64, now: u64) {
        pool.add_connecting(ConnId(id), Millis(now));
        assert!(pool.on_opened(ConnId(id), Millis(now)));
        assert!(pool.on_hello(ConnId(id)));
    }

    #[test]
    fn deficit_counts_requests_and_wanted_connections_only() {
        let mut p = pool(2);
        assert_eq!(p.deficit(), 2);
        p.add_request(ReqId(1));
        assert_eq!(p.deficit(), 1);
        assert!(p.take_request(ReqId(1)));
        assert!(!p.take_request(ReqId(1)));
        live(&mut p, 1, 0);
        p.add_connecting(ConnId(2), Millis(0));
        assert_eq!(p.deficit(), 0);
        p.retire(ConnId(1), Phase::Draining);
        assert_eq!(p.deficit(), 1);
        assert!(p.is_receiving());
    }

    #[test]
    fn replacement_closes_retiring_only_when_enough_are_live() {
        // Target 1: A draining, B says hello → A goes.
        let mut p = pool(1);
        live(&mut p, 1, 0);
        p.retire(ConnId(1), Phase::Draining);
        assert!(p.replaced().is_empty());
        live(&mut p, 2, 5);
        assert_eq!(p.replaced(), vec![ConnId(1)]);

        // Target 2, both draining: each hello frees one, stale before draining.
        let mut p = pool(2);
        live(&mut p, 1, 0);
        live(&mut p, 2, 0);
        p.retire(ConnId(1), Phase::Draining);
        p.retire(ConnId(2), Phase::Stale);
        assert!(p.replaced().is_empty());
        live(&mut p, 3, 5);
        assert_eq!(p.replaced(), vec![ConnId(2)]);
        p.remove(ConnId(2));
        assert!(p.replaced().is_empty());
        live(&mut p, 4, 5);
        assert_eq!(p.replaced(), vec![ConnId(1)]);
    }

    #[test]
    fn deadlines_hello_then_liveness() {
        let mut p = pool(1);
        p.add_connecting(ConnId(1), Millis(100));
        assert_eq!(p.next_deadline(), Some(Millis(15_100)));
        p.on_inbound(ConnId(1), Millis(200)); // a frame before `Opened` counts as opening
        assert_eq!(p.phase(ConnId(1)), Some(Phase::AwaitingHello));
        assert_eq!(p.next_deadline(), Some(Millis(10_200)));
        assert_eq!(
            p.due(Millis(10_200)),
            vec![(ConnId(1), Due::Ping("1".into()))]
        );
        assert_eq!(p.due(Millis(15_100)), vec![(ConnId(1), Due::HelloTimeout)]);
        assert!(p.on_hello(ConnId(1)));
        assert!(!p.on_hello(ConnId(1)));
        assert_eq!(p.next_deadline(), Some(Millis(20_200)));
        assert_eq!(
            p.due(Millis(30_200)),
            vec![(ConnId(1), Due::Dead { silent_ms: 30_000 })]
        );
        p.retire(ConnId(1), Phase::Stale);
        assert_eq!(p.next_deadline(), None);
        assert!(!p.is_receiving());
        assert_eq!(p.drain(), vec![ConnId(1)]);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn replaced_then_closing_each_have_their_own_timeout() {
        let mut p = pool(1);
        live(&mut p, 1, 0);
        p.retire(ConnId(1), Phase::Draining);
        live(&mut p, 2, 100);
        p.replace(ConnId(1), Millis(100));
        assert_eq!(p.phase(ConnId(1)), Some(Phase::Replaced));
        assert!(p.replaced().is_empty(), "replaced is no longer retiring");
        assert_eq!(p.deficit(), 0);
        p.remove(ConnId(2));
        assert!(
            !p.is_receiving(),
            "a replaced connection does not count as receiving"
        );
        live(&mut p, 2, 500);
        // Unpinged: its only deadline is the drain timeout, which comes before 2's first ping.
        let drain_at = Millis(100 + DRAIN_TIMEOUT_MS);
        assert_eq!(p.next_deadline(), Some(drain_at));
        assert_eq!(p.due(drain_at), vec![(ConnId(1), Due::DrainTimeout)]);
        assert!(p.closing(ConnId(1), drain_at));
        assert!(!p.closing(ConnId(1), drain_at), "closed once only");
        assert!(!p.phase(ConnId(1)).is_some_and(Phase::can_send));
        let close_at = drain_at + DRAIN_TIMEOUT_MS;
        assert_eq!(
            p.due(close_at),
            vec![
                (ConnId(1), Due::CloseTimeout),
                (ConnId(2), Due::Ping("1".into()))
            ]
        );
        assert_eq!(
            p.drain(),
            vec![ConnId(2)],
            "a closing connection is not closed again"
        );
    }
}
