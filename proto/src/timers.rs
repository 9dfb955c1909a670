//! Deadlines as plain data: one optional instant per timer kind (quinn's timer table).

use crate::Millis;
use std::fmt::Debug;

/// A machine's timer names. `ALL` fixes the order in which expired timers fire.
///
/// ```
/// use openflume_proto::TimerKind;
/// #[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// enum Timer { Heartbeat, Reconnect }
/// impl TimerKind for Timer {
///     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
///     fn index(self) -> usize { self as usize }
///     fn name(self) -> &'static str {
///         match self {
///             Timer::Heartbeat => "heartbeat",
///             Timer::Reconnect => "reconnect",
///         }
///     }
/// }
/// assert_eq!(Timer::Reconnect.name(), "reconnect");
/// ```
pub trait TimerKind: Copy + Eq + Debug + 'static {
    /// Every kind, in firing order.
    const ALL: &'static [Self];
    /// Position in `ALL`.
    fn index(self) -> usize;
    /// The kind in snake_case, as transcripts name the timer that fired.
    fn name(self) -> &'static str;
}

/// One optional deadline per kind. Arming replaces, cancelling clears.
///
/// ```
/// use openflume_proto::{Millis, TimerKind, Timers};
/// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// # enum Timer { Heartbeat, Reconnect }
/// # impl TimerKind for Timer {
/// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
/// #     fn index(self) -> usize { self as usize }
/// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
/// # }
/// let mut timers = Timers::<Timer>::new();
/// timers.arm(Timer::Reconnect, Millis(50));
/// timers.arm(Timer::Heartbeat, Millis(80));
/// assert_eq!(timers.next_deadline(), Some(Millis(50)));
/// assert_eq!(timers.take_expired(Millis(60)), vec![Timer::Reconnect]);
/// assert_eq!(timers.next_deadline(), Some(Millis(80)));
/// ```
#[derive(Clone, Debug)]
pub struct Timers<K: TimerKind> {
    deadlines: Vec<Option<Millis>>,
    /// Kinds whose clocks stand still, and since when (see [`Timers::pause`]).
    paused: Option<(Millis, &'static [K])>,
    _kind: std::marker::PhantomData<K>,
}

impl<K: TimerKind> Default for Timers<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: TimerKind> Timers<K> {
    /// All timers disarmed.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let timers = Timers::<Timer>::new();
    /// assert_eq!(timers.next_deadline(), None);
    /// assert!(!timers.is_armed(Timer::Heartbeat));
    /// ```
    pub fn new() -> Self {
        Timers {
            deadlines: vec![None; K::ALL.len()],
            paused: None,
            _kind: std::marker::PhantomData,
        }
    }

    /// Sets `kind` to fire at `at`, replacing any earlier setting.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Heartbeat, Millis(100));
    /// timers.arm(Timer::Heartbeat, Millis(300)); // replaces 100
    /// assert_eq!(timers.get(Timer::Heartbeat), Some(Millis(300)));
    /// ```
    pub fn arm(&mut self, kind: K, at: Millis) {
        if let Some(slot) = self.deadlines.get_mut(kind.index()) {
            *slot = Some(at);
        }
    }

    /// Disarms `kind`.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Heartbeat, Millis(100));
    /// timers.arm(Timer::Reconnect, Millis(200));
    /// timers.cancel(Timer::Heartbeat);
    /// assert!(!timers.is_armed(Timer::Heartbeat));
    /// assert_eq!(timers.next_deadline(), Some(Millis(200)));
    /// ```
    pub fn cancel(&mut self, kind: K) {
        if let Some(slot) = self.deadlines.get_mut(kind.index()) {
            *slot = None;
        }
    }

    /// Disarms every timer.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Heartbeat, Millis(100));
    /// timers.arm(Timer::Reconnect, Millis(200));
    /// timers.cancel_all();
    /// assert_eq!(timers.next_deadline(), None);
    /// ```
    pub fn cancel_all(&mut self) {
        self.deadlines.iter_mut().for_each(|slot| *slot = None);
    }

    /// When `kind` fires, if armed.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Reconnect, Millis(250));
    /// assert_eq!(timers.get(Timer::Reconnect), Some(Millis(250)));
    /// assert_eq!(timers.get(Timer::Heartbeat), None);
    /// ```
    pub fn get(&self, kind: K) -> Option<Millis> {
        self.deadlines.get(kind.index()).copied().flatten()
    }

    /// True when `kind` is armed.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Heartbeat, Millis(100));
    /// assert!(timers.is_armed(Timer::Heartbeat));
    /// timers.take_expired(Millis(100)); // firing disarms it
    /// assert!(!timers.is_armed(Timer::Heartbeat));
    /// ```
    pub fn is_armed(&self, kind: K) -> bool {
        self.get(kind).is_some()
    }

    /// The earliest armed deadline.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// assert_eq!(timers.next_deadline(), None);
    /// timers.arm(Timer::Heartbeat, Millis(900));
    /// timers.arm(Timer::Reconnect, Millis(400));
    /// assert_eq!(timers.next_deadline(), Some(Millis(400)));
    /// ```
    pub fn next_deadline(&self) -> Option<Millis> {
        self.next().map(|(_, at)| at)
    }

    /// The earliest armed deadline and its kind; of several due at once, the first in `K::ALL`
    /// (the one that fires first).
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Reconnect, Millis(400));
    /// timers.arm(Timer::Heartbeat, Millis(900));
    /// assert_eq!(timers.next(), Some((Timer::Reconnect, Millis(400))));
    /// timers.arm(Timer::Heartbeat, Millis(400));
    /// assert_eq!(timers.next(), Some((Timer::Heartbeat, Millis(400))));
    /// ```
    pub fn next(&self) -> Option<(K, Millis)> {
        K::ALL
            .iter()
            .filter(|&&kind| !self.stands_still(kind))
            .filter_map(|&kind| Some((kind, self.get(kind)?)))
            .min_by_key(|&(_, at)| at)
    }

    /// Disarms and returns every timer due at `now`, in `K::ALL` order. An early wake returns nothing.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, Reconnect }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::Reconnect];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::Reconnect => "reconnect" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::Reconnect, Millis(10));
    /// timers.arm(Timer::Heartbeat, Millis(20));
    /// assert!(timers.take_expired(Millis(5)).is_empty()); // early
    /// // Both due: returned in `ALL` order, not deadline order.
    /// assert_eq!(timers.take_expired(Millis(20)), vec![Timer::Heartbeat, Timer::Reconnect]);
    /// ```
    pub fn take_expired(&mut self, now: Millis) -> Vec<K> {
        let mut expired = Vec::new();
        for &kind in K::ALL {
            if self.stands_still(kind) {
                continue;
            }
            if let Some(slot) = self.deadlines.get_mut(kind.index())
                && slot.is_some_and(|at| at <= now)
            {
                *slot = None;
                expired.push(kind);
            }
        }
        expired
    }
    /// Stops the clocks of `kinds` at `now`: they neither fire nor count towards
    /// [`next_deadline`](Self::next_deadline) until [`resume`](Self::resume), which moves each
    /// of them later by the time spent paused. Arming and cancelling work as usual meanwhile. For
    /// deadlines that wait on the peer while the driver has stopped reading: the peer is not late
    /// for the time nobody listened. Pausing again while paused changes nothing.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { Heartbeat, AckTimeout }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::Heartbeat, Timer::AckTimeout];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::Heartbeat => "heartbeat", Timer::AckTimeout => "ack_timeout" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.arm(Timer::AckTimeout, Millis(100));
    /// timers.arm(Timer::Heartbeat, Millis(150));
    /// timers.pause(&[Timer::AckTimeout], Millis(40));
    /// // Paused at 40 with 60 ms left: only the heartbeat can fire meanwhile.
    /// assert_eq!(timers.next_deadline(), Some(Millis(150)));
    /// assert_eq!(timers.take_expired(Millis(500)), vec![Timer::Heartbeat]);
    /// timers.resume(Millis(1_000));
    /// assert_eq!(timers.get(Timer::AckTimeout), Some(Millis(1_060)));
    /// ```
    pub fn pause(&mut self, kinds: &'static [K], now: Millis) {
        if self.paused.is_none() {
            self.paused = Some((now, kinds));
        }
    }

    /// Restarts the paused clocks at `now` with the time they had left (see
    /// [`pause`](Self::pause)). Does nothing when not paused.
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { HelloTimeout }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::HelloTimeout];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::HelloTimeout => "hello_timeout" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.pause(&[Timer::HelloTimeout], Millis(10));
    /// timers.arm(Timer::HelloTimeout, Millis(25)); // armed while paused: 15 ms from the pause
    /// timers.resume(Millis(200));
    /// assert_eq!(timers.get(Timer::HelloTimeout), Some(Millis(215)));
    /// ```
    pub fn resume(&mut self, now: Millis) {
        let Some((since, kinds)) = self.paused.take() else {
            return;
        };
        let paused_for = now - since;
        for &kind in kinds {
            if let Some(Some(at)) = self.deadlines.get_mut(kind.index()) {
                *at = *at + paused_for;
            }
        }
    }

    /// True between [`pause`](Self::pause) and [`resume`](Self::resume).
    ///
    /// ```
    /// use openflume_proto::{Millis, Timers};
    /// # use openflume_proto::TimerKind;
    /// # #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    /// # enum Timer { HelloTimeout }
    /// # impl TimerKind for Timer {
    /// #     const ALL: &'static [Timer] = &[Timer::HelloTimeout];
    /// #     fn index(self) -> usize { self as usize }
    /// #     fn name(self) -> &'static str { match self { Timer::HelloTimeout => "hello_timeout" } }
    /// # }
    /// let mut timers = Timers::new();
    /// timers.pause(&[Timer::HelloTimeout], Millis(10));
    /// assert!(timers.is_paused());
    /// timers.resume(Millis(20));
    /// assert!(!timers.is_paused());
    /// ```
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    fn stands_still(&self, kind: K) -> bool {
        self.paused.is_some_and(|(_, kinds)| kinds.contains(&kind))
    }
}
