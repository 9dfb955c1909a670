//! The part every machine shares: the output queue, the timer table, the status, the clock and
//! the lifecycle, so that the rules of the [`Machine`](crate::Machine) contract are written once.
//!
//! A machine holds a [`Core`], lets [`Core::admit`] judge each input before dispatching it, and
//! answers the polling half of the trait from the core with [`answered_by_core!`]. The lifecycle
//! is the same for every machine: nothing but `Start` before `Start`, one `Start`, nothing after
//! finishing (h11's rule that misuse is typed and local).

use crate::{
    DeliveryId, Event, Input, Level, Log, Millis, Misuse, MonotonicGuard, Now, Output, Status,
    StatusTracker, TimerKind, Timers,
};
use std::collections::VecDeque;

/// Where a machine is in its life, as far as admitting input goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    NotStarted,
    Running,
    Finished,
}

/// A machine's shared state. `timers` is open to the machine, which arms and fires its own kinds.
#[derive(Debug)]
pub(crate) struct Core<K: TimerKind> {
    source: &'static str,
    /// Put before every log message (`"shard 1/4: "`), so the logs of several shards stay apart.
    log_prefix: String,
    out: VecDeque<Output>,
    pub(crate) timers: Timers<K>,
    clock: MonotonicGuard,
    status: StatusTracker,
    lifecycle: Lifecycle,
}

impl<K: TimerKind> Core<K> {
    /// A core for a machine whose items carry `source`.
    pub(crate) fn new(source: &'static str) -> Core<K> {
        Core {
            source,
            log_prefix: String::new(),
            out: VecDeque::new(),
            timers: Timers::new(),
            clock: MonotonicGuard::default(),
            status: StatusTracker::default(),
            lifecycle: Lifecycle::NotStarted,
        }
    }

    /// Prefixes every log message with `prefix`.
    // Only the Discord shards name themselves in their logs; kept (and tested) without them.
    #[cfg_attr(not(feature = "discord"), allow(dead_code))]
    pub(crate) fn with_log_prefix(mut self, prefix: String) -> Core<K> {
        self.log_prefix = prefix;
        self
    }

    /// Judges `input` by the lifecycle and returns `now` clamped so time never goes backwards.
    /// A rejected input leaves everything as it was, the clock included.
    pub(crate) fn admit(&mut self, now: Now, input: &Input) -> Result<Now, Misuse> {
        match (self.lifecycle, input) {
            (Lifecycle::Finished, _) => return Err(Misuse::Finished),
            (Lifecycle::NotStarted, Input::Start) => self.lifecycle = Lifecycle::Running,
            (Lifecycle::NotStarted, _) => return Err(Misuse::NotStarted),
            (Lifecycle::Running, Input::Start) => return Err(Misuse::AlreadyStarted),
            (Lifecycle::Running, _) => {}
        }
        Ok(self.clock.observe(now))
    }

    /// Stops for good: every timer disarmed, no further input admitted, `status` reported.
    pub(crate) fn finish(&mut self, status: Status, reason: Option<String>) {
        self.timers.cancel_all();
        self.lifecycle = Lifecycle::Finished;
        self.set_status(status, reason);
    }

    /// The name stamped on the machine's items.
    pub(crate) fn source(&self) -> &'static str {
        self.source
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.lifecycle == Lifecycle::Finished
    }

    // ---- outputs ----

    pub(crate) fn emit(&mut self, output: Output) {
        self.out.push_back(output);
    }

    /// Hands `event` to the firehose; with `confirm`, the machine waits for `Input::Delivered`.
    pub(crate) fn emit_event(&mut self, event: Event, confirm: Option<DeliveryId>) {
        self.emit(Output::Emit { event, confirm });
    }

    /// A log of this source at `now`, message prefixed, for a caller that adds an error.
    pub(crate) fn new_log(
        &self,
        now: Now,
        level: Level,
        action: &str,
        message: impl Into<String>,
    ) -> Log {
        let message = format!("{}{}", self.log_prefix, message.into());
        Log::new(level, self.source, action, message, now.wall)
    }

    pub(crate) fn push_log(&mut self, log: Log) {
        self.emit(Output::Log(log));
    }

    pub(crate) fn log(&mut self, now: Now, level: Level, action: &str, message: impl Into<String>) {
        let log = self.new_log(now, level, action, message);
        self.push_log(log);
    }

    pub(crate) fn log_with(
        &mut self,
        now: Now,
        level: Level,
        action: &str,
        message: impl Into<String>,
        detail: serde_json::Value,
    ) {
        let log = self
            .new_log(now, level, action, message)
            .with_detail(detail);
        self.push_log(log);
    }

    /// Moves to `to`, reporting the change unless it is none.
    pub(crate) fn set_status(&mut self, to: Status, reason: Option<String>) {
        if let Some(change) = self.status.set(to, reason) {
            self.emit(Output::Status(change));
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.status.current()
    }

    // ---- the polling half of `Machine` ----

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Nothing is scheduled once finished.
    pub(crate) fn poll_timeout(&self) -> Option<Millis> {
        self.next_timer_at().map(|(_, at)| at)
    }

    pub(crate) fn next_timer(&self) -> Option<&'static str> {
        self.next_timer_at().map(|(name, _)| name)
    }

    /// The name and deadline of the timer that fires first, for a machine that merges its own
    /// timers with those of sub-machines.
    pub(crate) fn next_timer_at(&self) -> Option<(&'static str, Millis)> {
        if self.is_finished() {
            return None;
        }
        self.timers.next().map(|(kind, at)| (kind.name(), at))
    }
}

/// The `Machine` methods a machine answers from its `core` field as they are: `source`,
/// `poll_output`, `poll_timeout`, `next_timer`, `is_finished` and `status`, so its `impl Machine`
/// holds only `handle_input`. A machine that merges the deadlines of sub-machines writes the two
/// timer methods itself and asks for `all but timers`.
macro_rules! answered_by_core {
    () => {
        $crate::core::answered_by_core!(all but timers);

        fn poll_timeout(&self) -> Option<$crate::Millis> {
            self.core.poll_timeout()
        }

        fn next_timer(&self) -> Option<&'static str> {
            self.core.next_timer()
        }
    };
    (all but timers) => {
        fn source(&self) -> &str {
            self.core.source()
        }

        fn poll_output(&mut self) -> Option<$crate::Output> {
            self.core.poll_output()
        }

        fn is_finished(&self) -> bool {
            self.core.is_finished()
        }

        fn status(&self) -> $crate::Status {
            self.core.status()
        }
    };
}
pub(crate) use answered_by_core;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnixMillis;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Timer {
        Poll,
    }

    impl TimerKind for Timer {
        const ALL: &'static [Timer] = &[Timer::Poll];
        fn index(self) -> usize {
            0
        }
        fn name(self) -> &'static str {
            "poll"
        }
    }

    fn at(mono: u64) -> Now {
        Now {
            mono: Millis(mono),
            wall: UnixMillis(0),
        }
    }

    #[test]
    fn one_start_then_input_until_finished() {
        let mut core = Core::<Timer>::new("test");
        assert_eq!(core.admit(at(5), &Input::Timer), Err(Misuse::NotStarted));
        assert_eq!(
            core.admit(at(10), &Input::Start).map(|n| n.mono),
            Ok(Millis(10))
        );
        assert_eq!(
            core.admit(at(11), &Input::Start),
            Err(Misuse::AlreadyStarted)
        );
        // Time never goes backwards.
        assert_eq!(
            core.admit(at(3), &Input::Timer).map(|n| n.mono),
            Ok(Millis(10))
        );
        core.timers.arm(Timer::Poll, Millis(50));
        assert_eq!(core.next_timer_at(), Some(("poll", Millis(50))));
        core.finish(Status::Disconnected, None);
        assert_eq!(core.poll_timeout(), None);
        assert_eq!(core.admit(at(60), &Input::Timer), Err(Misuse::Finished));
    }

    #[test]
    fn logs_carry_the_prefix() {
        let mut core = Core::<Timer>::new("discord").with_log_prefix("shard 1/2: ".into());
        core.log(at(0), Level::Info, "ready", "session ready");
        let Some(Output::Log(log)) = core.poll_output() else {
            panic!("a log")
        };
        assert_eq!(
            (log.source.as_str(), log.message.as_str()),
            ("discord", "shard 1/2: session ready")
        );
    }
}
