//! Heartbeat timing and liveness for one connection.
//!
//! The first beat goes `heartbeat_interval × jitter` after HELLO (jitter uniform in [0, 1) from the
//! machine's seeded RNG, so a fleet reconnecting together does not beat in lockstep), then one
//! every interval. Every beat must be ACKed (op 11) before the next one is due; when it is not,
//! the connection is a zombie. A beat requested by the server (op 1) is answered at once and
//! restarts the interval without new jitter.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// What proves a connection alive when a heartbeat is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Only the ACK of the previous heartbeat (the Gateway documentation's rule).
    #[default]
    Ack,
    /// The ACK, or any frame received since the previous heartbeat was sent. Opt-in for bots
    /// whose startup flood (thousands of GUILD_CREATE) can queue the ACK behind a whole interval
    /// of dispatches: the frames themselves show the connection is alive.
    AnyFrame,
}

/// Heartbeat state of one connection, from HELLO until it closes.
#[derive(Clone, Debug)]
pub(crate) struct Heartbeat {
    interval_ms: u64,
    /// When the last heartbeat went out, if it has not been ACKed yet.
    unacked_since: Option<Millis>,
    /// Latest frame received on the connection.
    last_frame_at: Option<Millis>,
    /// The beat in flight is not held to the rule: the driver paused reading after it went out.
    excused: bool,
}

impl Heartbeat {
    /// Starts heartbeating at `interval_ms`; returns it with the delay of the first beat.
    pub(crate) fn start(interval_ms: u64, rng: &mut fastrand::Rng) -> (Heartbeat, u64) {
        let heartbeat = Heartbeat {
            interval_ms,
            unacked_since: None,
            last_frame_at: None,
            excused: false,
        };
        (heartbeat, first_delay(interval_ms, rng.f64()))
    }

    /// The interval.
    pub(crate) fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// A heartbeat was sent at `now`.
    pub(crate) fn sent(&mut self, now: Millis) {
        self.unacked_since = Some(now);
        self.excused = false;
    }

    /// Any frame arrived at `now`.
    pub(crate) fn frame_received(&mut self, now: Millis) {
        self.last_frame_at = Some(now);
    }

    /// An ACK arrived at `now`; returns the round trip of the beat it acknowledges.
    pub(crate) fn acked(&mut self, now: Millis) -> Option<u64> {
        self.unacked_since.take().map(|sent| now - sent)
    }

    /// Excuses the beat in flight from the zombie rule: the driver did not read for a while, so
    /// its ACK may be waiting unread, which says nothing about the connection. The next beat is
    /// judged again.
    pub(crate) fn excuse(&mut self) {
        self.excused = true;
    }

    /// True when a heartbeat is due and the previous one shows the connection dead.
    pub(crate) fn is_zombie(&self, liveness: Liveness) -> bool {
        let Some(sent) = self.unacked_since.filter(|_| !self.excused) else {
            return false;
        };
        match liveness {
            Liveness::Ack => true,
            Liveness::AnyFrame => self.last_frame_at.is_none_or(|at| at < sent),
        }
    }
}

/// `interval × jitter`, jitter in [0, 1).
fn first_delay(interval_ms: u64, jitter: f64) -> u64 {
    let delay = (interval_ms as f64 * jitter.clamp(0.0, 1.0)) as u64;
    delay.min(interval_ms.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_is_within_the_interval() {
        let cases: &[(u64, f64, u64)] = &[
            (41_250, 0.0, 0),
            (41_250, 0.5, 20_625),
            (41_250, 0.999_999_9, 41_249),
            (41_250, 1.0, 41_249),
            (1, 0.7, 0),
            (0, 0.5, 0),
        ];
        for &(interval, jitter, expected) in cases {
            assert_eq!(
                first_delay(interval, jitter),
                expected,
                "{interval} × {jitter}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..1000 {
            let (_, delay) = Heartbeat::start(41_250, &mut rng);
            assert!(delay < 41_250);
        }
    }

    #[test]
    fn zombie_rules() {
        let mut rng = fastrand::Rng::with_seed(1);
        let (mut beat, _) = Heartbeat::start(1_000, &mut rng);
        assert!(!beat.is_zombie(Liveness::Ack), "nothing sent yet");
        beat.sent(Millis(100));
        assert!(beat.is_zombie(Liveness::Ack));
        assert!(beat.is_zombie(Liveness::AnyFrame));
        beat.frame_received(Millis(150));
        assert!(beat.is_zombie(Liveness::Ack), "a dispatch is not an ACK");
        assert!(!beat.is_zombie(Liveness::AnyFrame));
        assert_eq!(beat.acked(Millis(180)), Some(80));
        assert_eq!(
            beat.acked(Millis(190)),
            None,
            "a second ACK acknowledges nothing"
        );
        assert!(!beat.is_zombie(Liveness::Ack));
        beat.sent(Millis(1_100));
        assert!(
            beat.is_zombie(Liveness::AnyFrame),
            "the frame predates this beat"
        );
        beat.excuse();
        assert!(
            !beat.is_zombie(Liveness::Ack),
            "excused: reading was paused"
        );
        assert_eq!(beat.acked(Millis(1_300)), Some(200), "still in flight");
        beat.sent(Millis(2_100));
        assert!(
            beat.is_zombie(Liveness::Ack),
            "the next beat is judged again"
        );
    }
}
