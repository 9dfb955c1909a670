//! Time as data: the driver reads the clocks and passes them in, so every machine is deterministic.

use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};

/// A point on the driver's monotonic clock, in milliseconds from an origin the driver picks (0 in tests).
///
/// ```
/// use openflume_proto::Millis;
/// let t = Millis(1_000) + 500;
/// assert_eq!(t, Millis(1_500));
/// assert_eq!(t - Millis(1_000), 500);
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Elapsed milliseconds between two instants; zero when `rhs` is later (time never goes backwards).
impl Sub for Millis {
    type Output = u64;
    fn sub(self, rhs: Millis) -> u64 {
        self.0.saturating_sub(rhs.0)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch: what cron and server-given reset times speak.
///
/// ```
/// use openflume_proto::UnixMillis;
/// assert_eq!(UnixMillis(1_764_100_000_000).as_secs(), 1_764_100_000);
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Whole seconds since the epoch, rounded towards negative infinity.
    ///
    /// ```
    /// use openflume_proto::UnixMillis;
    /// assert_eq!(UnixMillis(1_999).as_secs(), 1);
    /// assert_eq!(UnixMillis(-1).as_secs(), -1); // before the epoch: rounds down, not to zero
    /// ```
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

/// Both clocks, read once by the driver for each input.
///
/// The monotonic clock orders deadlines; the wall clock stamps items and converts server epochs
/// (`x-ratelimit-reset`, cron fire times) into monotonic deadlines.
///
/// ```
/// use openflume_proto::{Millis, Now, UnixMillis};
/// let now = Now { mono: Millis(10), wall: UnixMillis(1_764_100_000_000) };
/// // A server reset two seconds from now on the wall clock is a deadline at mono 2_010.
/// assert_eq!(now.mono_at(UnixMillis(1_764_100_002_000)), Millis(2_010));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Now {
    /// Monotonic time.
    pub mono: Millis,
    /// Wall-clock time.
    pub wall: UnixMillis,
}

impl Now {
    /// The monotonic instant at which the wall clock will read `wall`, assuming it keeps pace;
    /// an instant in the past maps to `self.mono`.
    ///
    /// ```
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(100), wall: UnixMillis(50_000) };
    /// assert_eq!(now.mono_at(UnixMillis(53_000)), Millis(3_100));
    /// assert_eq!(now.mono_at(UnixMillis(1_000)), Millis(100)); // already past
    /// ```
    pub fn mono_at(&self, wall: UnixMillis) -> Millis {
        let ahead = wall.0.saturating_sub(self.wall.0).max(0);
        self.mono + ahead as u64
    }

    /// When something handed over now arrived: `arrived` (the driver's stamp, say
    /// [`Input::Frame`](crate::Input::Frame)'s), or `self.mono` when there is none or it is
    /// later than now. Only for measuring how long something waited: it may be earlier than
    /// instants the machine has already seen, so never arm a deadline from it.
    ///
    /// ```
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(5_000), wall: UnixMillis(0) };
    /// assert_eq!(now.arrival(Some(Millis(1_200))), Millis(1_200)); // queued for 3.8 s
    /// assert_eq!(now.arrival(None), Millis(5_000));
    /// assert_eq!(now.arrival(Some(Millis(9_000))), Millis(5_000)); // never in the future
    /// ```
    pub fn arrival(&self, arrived: Option<Millis>) -> Millis {
        arrived.map_or(self.mono, |at| at.min(self.mono))
    }

    /// The wall-clock reading at monotonic instant `mono`, assuming the wall clock keeps pace.
    ///
    /// ```
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(100), wall: UnixMillis(50_000) };
    /// assert_eq!(now.wall_at(Millis(1_100)), UnixMillis(51_000));
    /// assert_eq!(now.wall_at(Millis(0)), UnixMillis(49_900)); // earlier instants work too
    /// ```
    pub fn wall_at(&self, mono: Millis) -> UnixMillis {
        let delta = mono.0 as i128 - self.mono.0 as i128;
        let wall = (self.wall.0 as i128 + delta).clamp(i64::MIN as i128, i64::MAX as i128);
        UnixMillis(wall as i64)
    }
}

/// Keeps a machine's view of monotonic time from going backwards (str0m's rule): an earlier `now`
/// than one already seen is clamped to the latest.
///
/// ```
/// use openflume_proto::{Millis, MonotonicGuard, Now, UnixMillis};
/// let mut guard = MonotonicGuard::default();
/// guard.observe(Now { mono: Millis(50), wall: UnixMillis(0) });
/// let late = guard.observe(Now { mono: Millis(20), wall: UnixMillis(5) });
/// assert_eq!(late.mono, Millis(50));
/// assert_eq!(late.wall, UnixMillis(5));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicGuard {
    latest: Millis,
}

impl MonotonicGuard {
    /// Records `now` and returns it with `mono` clamped to the latest seen. The wall clock is kept
    /// as given: it may legitimately step backwards (NTP), and cron handles that itself.
    ///
    /// ```
    /// use openflume_proto::{Millis, MonotonicGuard, Now, UnixMillis};
    /// let mut guard = MonotonicGuard::default();
    /// let now = guard.observe(Now { mono: Millis(30), wall: UnixMillis(1_000) });
    /// assert_eq!(now, Now { mono: Millis(30), wall: UnixMillis(1_000) });
    /// // The wall clock stepped back and so did mono: only mono is clamped.
    /// let now = guard.observe(Now { mono: Millis(10), wall: UnixMillis(900) });
    /// assert_eq!(now, Now { mono: Millis(30), wall: UnixMillis(900) });
    /// ```
    pub fn observe(&mut self, now: Now) -> Now {
        self.latest = self.latest.max(now.mono);
        Now {
            mono: self.latest,
            wall: now.wall,
        }
    }

    /// The latest monotonic instant seen.
    ///
    /// ```
    /// use openflume_proto::{Millis, MonotonicGuard, Now, UnixMillis};
    /// let mut guard = MonotonicGuard::default();
    /// assert_eq!(guard.latest(), Millis(0));
    /// guard.observe(Now { mono: Millis(70), wall: UnixMillis(0) });
    /// guard.observe(Now { mono: Millis(40), wall: UnixMillis(0) });
    /// assert_eq!(guard.latest(), Millis(70));
    /// ```
    pub fn latest(&self) -> Millis {
        self.latest
    }
}
