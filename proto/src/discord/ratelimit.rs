//! Outbound pacing: Discord closes a connection with 4008 after 120 sent payloads in 60 s
//! (heartbeats, IDENTIFY and RESUME included) and with 4002 for a payload over 4096 bytes.
//!
//! The window slides (an exact log of send times), so there is no burst of 2 × 120 across a
//! fixed-window boundary. A few permits are kept for the machine's own heartbeats and handshake,
//! so nothing else (a server spamming op 1) can starve them and get the connection killed for a
//! missed heartbeat.

use crate::Millis;
use std::collections::VecDeque;

/// Payloads allowed per window and connection.
pub const SENDS_PER_WINDOW: usize = 120;
/// The window, in ms.
pub const WINDOW_MS: u64 = 60_000;
/// Largest payload Discord accepts, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Who is asking to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendClass {
    /// The machine's own heartbeats and the IDENTIFY or RESUME of a connection: may use the
    /// reserved permits.
    Essential,
    /// Everything else (answers to the server's op 1).
    Other,
}

/// A sliding-window send limiter for one connection.
///
/// ```
/// use openflume_proto::discord::{SendClass, SendLimiter};
/// use openflume_proto::Millis;
/// let mut limiter = SendLimiter::new();
/// limiter.set_heartbeat_interval(41_250); // keeps 3 permits for heartbeats
/// for _ in 0..117 {
///     assert!(limiter.try_acquire(SendClass::Other, Millis(0)).is_ok());
/// }
/// assert_eq!(limiter.try_acquire(SendClass::Other, Millis(1)), Err(Millis(60_000)));
/// assert!(limiter.try_acquire(SendClass::Essential, Millis(1)).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct SendLimiter {
    /// Send times within the last window, oldest first; never more than `SENDS_PER_WINDOW`.
    sent: VecDeque<Millis>,
    reserved: usize,
}

impl Default for SendLimiter {
    fn default() -> Self {
        SendLimiter::new()
    }
}

impl SendLimiter {
    /// A fresh window, reserving heartbeat permits for the usual 41.25 s interval until
    /// [`set_heartbeat_interval`](Self::set_heartbeat_interval) says otherwise.
    pub fn new() -> SendLimiter {
        SendLimiter {
            sent: VecDeque::with_capacity(SENDS_PER_WINDOW),
            reserved: reserve_for(41_250),
        }
    }

    /// Reserves enough permits for one window of heartbeats at `interval_ms`, plus one for
    /// slack: `ceil(60 s / interval) + 1`, at most 10 so other payloads keep 110.
    pub fn set_heartbeat_interval(&mut self, interval_ms: u64) {
        self.reserved = reserve_for(interval_ms);
    }

    /// Records a send at `now` when `class` may send, or returns when it may.
    pub fn try_acquire(&mut self, class: SendClass, now: Millis) -> Result<(), Millis> {
        while self.sent.front().is_some_and(|&at| at + WINDOW_MS <= now) {
            self.sent.pop_front();
        }
        let limit = match class {
            SendClass::Essential => SENDS_PER_WINDOW,
            SendClass::Other => SENDS_PER_WINDOW - self.reserved,
        };
        if self.sent.len() < limit {
            self.sent.push_back(now);
            return Ok(());
        }
        // The send that has to leave the window before `class` fits again.
        let blocking = self.sent.len() - limit;
        let free_at = self.sent.get(blocking).map_or(now, |&at| at + WINDOW_MS);
        Err(free_at.max(now))
    }

    /// Payloads sent in the window ending at `now`.
    pub fn in_window(&self, now: Millis) -> usize {
        self.sent.iter().filter(|&&at| at + WINDOW_MS > now).count()
    }
}

fn reserve_for(interval_ms: u64) -> usize {
    let beats = WINDOW_MS.div_ceil(interval_ms.max(1));
    usize::try_from(beats.saturating_add(1))
        .unwrap_or(usize::MAX)
        .min(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_follows_the_heartbeat_interval() {
        let cases: &[(u64, usize)] = &[
            (41_250, 3),
            (60_000, 2),
            (120_000, 2),
            (30_000, 3),
            (20_000, 4),
            (1_000, 10),
            (0, 10),
        ];
        for &(interval, reserved) in cases {
            assert_eq!(reserve_for(interval), reserved, "interval {interval}");
        }
    }

    /// (class, at, expected) in order on one limiter with the 41.25 s reserve (117 others).
    #[test]
    fn saturation_then_sliding() {
        let mut limiter = SendLimiter::new();
        for i in 0..117u64 {
            assert_eq!(
                limiter.try_acquire(SendClass::Other, Millis(i * 100)),
                Ok(())
            );
        }
        let steps: &[(SendClass, u64, Result<(), Millis>)] = &[
            // Others are full: the first send (at 0) has to leave the window.
            (SendClass::Other, 20_000, Err(Millis(60_000))),
            // Essential sends still fit, three of them.
            (SendClass::Essential, 20_000, Ok(())),
            (SendClass::Essential, 30_000, Ok(())),
            (SendClass::Essential, 40_000, Ok(())),
            (SendClass::Essential, 40_001, Err(Millis(60_000))),
            // Now others need four sends gone: the 4th oldest, sent at 300.
            (SendClass::Other, 59_999, Err(Millis(60_300))),
            (SendClass::Other, 60_000, Err(Millis(60_300))),
            (SendClass::Essential, 60_000, Ok(())),
            // The heartbeat at 60 000 took the slot the send at 300 freed.
            (SendClass::Other, 60_300, Err(Millis(60_400))),
            (SendClass::Other, 60_400, Ok(())),
        ];
        for (i, &(class, at, expected)) in steps.iter().enumerate() {
            assert_eq!(limiter.try_acquire(class, Millis(at)), expected, "step {i}");
        }
        assert_eq!(limiter.in_window(Millis(60_400)), 117);
    }

    #[test]
    fn never_more_than_120_in_any_window() {
        let mut limiter = SendLimiter::new();
        let mut sends = Vec::new();
        for t in (0..200_000u64).step_by(50) {
            let class = if t % 1_000 == 0 {
                SendClass::Essential
            } else {
                SendClass::Other
            };
            if limiter.try_acquire(class, Millis(t)).is_ok() {
                sends.push(t);
            }
        }
        for (i, &start) in sends.iter().enumerate() {
            let in_window = sends[i..]
                .iter()
                .take_while(|&&t| t < start + WINDOW_MS)
                .count();
            assert!(
                in_window <= SENDS_PER_WINDOW,
                "{in_window} sends from {start}"
            );
        }
        assert!(sends.len() > 300);
    }
}
