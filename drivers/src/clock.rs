//! The only place that reads clocks and OS entropy: the machines get both as data.

use openflume_proto::{Millis, Now, UnixMillis};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maps the machines' monotonic milliseconds to `Instant`s, with its origin at construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Both clocks, read now.
    pub(crate) fn now(&self) -> Now {
        Now {
            mono: self.mono(),
            wall: wall_now(),
        }
    }

    /// The monotonic clock alone: when a socket task read a frame (`Input::Frame::arrived`).
    pub(crate) fn mono(&self) -> Millis {
        Millis(self.origin.elapsed().as_millis() as u64)
    }

    /// The `Instant` of a machine deadline.
    pub(crate) fn instant_at(&self, at: Millis) -> Instant {
        self.origin + Duration::from_millis(at.0)
    }
}

/// The wall clock alone, for items the driver stamps itself (overflow and callback logs).
pub(crate) fn wall_now() -> UnixMillis {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(|before| -(before.duration().as_millis() as i64));
    UnixMillis(wall)
}

/// A seed from the OS's entropy (std seeds `RandomState` from it), for each machine's RNG.
pub(crate) fn os_seed() -> u64 {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(0x6f70_656e_666c_756d);
    hasher.finish()
}
