//! Is a connection still alive? Half-open sockets are Socket Mode's silent death (the client looks
//! connected and hears nothing for hours), so every connection sends its own pings and counts
//! any inbound frame or pong as life. Silence for [`DEAD_AFTER_INTERVALS`] ping intervals means dead.
//! Application events alone cannot be the signal: a quiet workspace sends none for hours.

use crate::{Bytes, Millis};

/// A connection silent for this many ping intervals is dead: one late pong is not death.
pub const DEAD_AFTER_INTERVALS: u64 = 3;

/// What a connection's liveness asks for at some instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing due.
    Quiet,
    /// Send this ping now.
    Ping(Bytes),
    /// No inbound frame or pong for this many ms: the connection is dead.
    Dead {
        /// Time since the last sign of life.
        silent_ms: u64,
    },
}

/// Ping schedule and last sign of life of one connection.
#[derive(Clone, Debug)]
pub(crate) struct Liveness {
    interval_ms: u64,
    last_inbound: Millis,
    next_ping_at: Millis,
    pings_sent: u64,
}

impl Liveness {
    /// Starts watching at `now` (the WebSocket just opened): first ping one interval later.
    pub fn new(now: Millis, interval_ms: u64) -> Liveness {
        Liveness {
            interval_ms,
            last_inbound: now,
            next_ping_at: now + interval_ms,
            pings_sent: 0,
        }
    }

    /// A frame or pong arrived.
    pub fn on_inbound(&mut self, now: Millis) {
        self.last_inbound = self.last_inbound.max(now);
    }

    /// Silence during which the driver did not read (`paused_ms`) does not count towards death.
    pub fn excuse_silence(&mut self, paused_ms: u64) {
        self.last_inbound = self.last_inbound + paused_ms;
    }

    /// When the next ping is due.
    pub fn next_ping_at(&self) -> Millis {
        self.next_ping_at
    }

    /// The ping due at `now`, if any, without judging silence (used while reading is paused).
    pub fn ping_if_due(&mut self, now: Millis) -> Option<Bytes> {
        if now < self.next_ping_at {
            return None;
        }
        self.pings_sent = self.pings_sent.saturating_add(1);
        self.next_ping_at = now + self.interval_ms;
        // The sequence number makes pings and pongs easy to match in a packet capture.
        Some(Bytes::from(self.pings_sent.to_string()))
    }

    fn dead_at(&self) -> Millis {
        self.last_inbound + self.interval_ms.saturating_mul(DEAD_AFTER_INTERVALS)
    }

    /// When [`Liveness::check`] has something to do next.
    pub fn next_deadline(&self) -> Millis {
        self.next_ping_at.min(self.dead_at())
    }

    /// Death first (no point pinging a dead socket), then a due ping. Early calls return `Quiet`.
    pub fn check(&mut self, now: Millis) -> Check {
        if now >= self.dead_at() {
            return Check::Dead {
                silent_ms: now - self.last_inbound,
            };
        }
        self.ping_if_due(now).map_or(Check::Quiet, Check::Ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_every_interval_and_dies_after_three_silent_intervals() {
        let mut live = Liveness::new(Millis(0), 10_000);
        assert_eq!(live.next_deadline(), Millis(10_000));
        assert_eq!(live.check(Millis(9_999)), Check::Quiet);
        assert_eq!(live.check(Millis(10_000)), Check::Ping(Bytes::from("1")));
        assert_eq!(live.check(Millis(10_000)), Check::Quiet);
        assert_eq!(live.next_deadline(), Millis(20_000));
        assert_eq!(live.check(Millis(20_000)), Check::Ping(Bytes::from("2")));
        assert_eq!(live.check(Millis(29_999)), Check::Quiet);
        assert_eq!(live.next_deadline(), Millis(30_000));
        assert_eq!(
            live.check(Millis(30_000)),
            Check::Dead { silent_ms: 30_000 }
        );
    }

    #[test]
    fn any_inbound_frame_postpones_death() {
        let mut live = Liveness::new(Millis(0), 10_000);
        assert!(matches!(live.check(Millis(10_000)), Check::Ping(_)));
        live.on_inbound(Millis(10_050));
        assert!(matches!(live.check(Millis(20_000)), Check::Ping(_)));
        assert!(matches!(live.check(Millis(30_000)), Check::Ping(_)));
        assert_eq!(live.next_deadline(), Millis(40_000));
        assert!(matches!(live.check(Millis(40_000)), Check::Ping(_)));
        assert_eq!(live.next_deadline(), Millis(40_050));
        assert_eq!(
            live.check(Millis(40_050)),
            Check::Dead { silent_ms: 30_000 }
        );
        // An out-of-order older timestamp never moves the last sign of life back.
        live.on_inbound(Millis(5));
        assert_eq!(
            live.check(Millis(40_050)),
            Check::Dead { silent_ms: 30_000 }
        );
    }

    #[test]
    fn a_late_check_reports_death_without_pinging() {
        let mut live = Liveness::new(Millis(0), 1_000);
        assert_eq!(live.check(Millis(5_000)), Check::Dead { silent_ms: 5_000 });
    }
}
