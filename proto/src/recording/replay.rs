//! Replaying a section: its inputs fed to a machine at their recorded times, each followed by a
//! full drain, exactly as the driver fed them live.

use super::Section;
use crate::{Input, Machine, Misuse, Now, Output};

/// Timers fired back to back at one instant before a replay decides the machine is looping.
const MAX_FIRES_PER_GAP: usize = 10_000;

/// One line of what a replay did, in order: an input fed (recorded, a confirmation, or for a
/// fixture a timer the replay fired), an output the machine produced, or a misuse it refused.
///
/// ```
/// use openflume_proto::recording::{MachineConfig, Played, Recording};
/// use openflume_proto::Input;
/// // A second start is the caller's misuse: it shows as one.
/// let section = &Recording::parse("{\"machine\":\"cron\",\"config\":{\"expression\":\"@daily\"}}\n{\"at\":0,\"input\":\"start\"}\n{\"at\":1,\"input\":\"start\"}\n")?.sections[0];
/// let mut machine = MachineConfig::from_section(section)?.build(0).unwrap();
/// let played = section.replay(&mut machine);
/// assert!(matches!(played[0], Played::In { input: Input::Start, .. }));
/// assert!(matches!(played.last(), Some(Played::Misuse { .. })));
/// # Ok::<(), openflume_proto::recording::RecordingError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Played {
    /// Fed to the machine at `now`.
    In {
        /// The time it was fed at.
        now: Now,
        /// The input.
        input: Input,
    },
    /// Produced by the machine while handling the input before it.
    Out {
        /// The time of that input.
        now: Now,
        /// The output.
        output: Output,
    },
    /// `handle_input` refused the input before it.
    Misuse {
        /// The time of that input.
        now: Now,
        /// Why.
        misuse: Misuse,
    },
}

impl Section {
    /// Feeds this section's inputs to `machine` at their recorded times (each followed by a
    /// drain) and returns what happened, in order.
    ///
    /// A recorded section (`recorded_timers`) holds its timer inputs and its confirmations: they
    /// are fed as recorded and nothing else is. A fixture leaves those to the replay, which then
    /// fires every deadline up to each input and after the last one until `until`, and confirms
    /// each delivery right after its drain unless `auto_confirm` is false, as the fixture
    /// simulator does.
    ///
    /// ```
    /// use openflume_proto::recording::{MachineConfig, Played, Recording};
    /// use openflume_proto::Output;
    /// let text = r#"{"format":1,"source":"time","machine":"cron","start":{"mono":0,"wall":1764100000000},"config":{"expression":"* * * * *","zone":"UTC"},"auto_confirm":false,"recorded_timers":true}
    /// {"at":0,"input":"start"}
    /// {"at":20003,"input":"timer"}
    /// "#;
    /// let section = &Recording::parse(text)?.sections[0];
    /// let mut machine = MachineConfig::from_section(section)?.build(section.header.seed).unwrap();
    /// let played = section.replay(&mut machine);
    /// // The tick of 19:47:00Z, 20 s after the start, fired by the recorded timer.
    /// assert!(played.iter().any(|p| matches!(p, Played::Out { output: Output::Emit { .. }, now } if now.mono.0 == 20003)));
    /// # Ok::<(), openflume_proto::recording::RecordingError>(())
    /// ```
    pub fn replay<M: Machine + ?Sized>(&self, machine: &mut M) -> Vec<Played> {
        let header = &self.header;
        let mut replay = Replay {
            machine,
            clock: header.start,
            auto_confirm: header.auto_confirm && !header.recorded_timers,
            played: Vec::new(),
        };
        for step in &self.steps {
            if !header.recorded_timers {
                replay.fire_until(step.at);
            }
            let mono = step.at.max(replay.clock.mono);
            replay.clock = Now {
                mono,
                wall: step.wall.unwrap_or_else(|| replay.clock.wall_at(mono)),
            };
            replay.feed(step.input.clone());
        }
        if let Some(until) = header.until
            && !header.recorded_timers
        {
            replay.fire_until(until);
        }
        replay.played
    }
}

struct Replay<'a, M: Machine + ?Sized> {
    machine: &'a mut M,
    clock: Now,
    auto_confirm: bool,
    played: Vec<Played>,
}

impl<M: Machine + ?Sized> Replay<'_, M> {
    /// Fires every deadline up to `at`, in order, as a driver would between two inputs.
    fn fire_until(&mut self, at: crate::Millis) {
        for _ in 0..MAX_FIRES_PER_GAP {
            match self.machine.poll_timeout() {
                Some(deadline) if deadline <= at && !self.machine.is_finished() => {
                    let mono = deadline.max(self.clock.mono);
                    self.clock = Now {
                        mono,
                        wall: self.clock.wall_at(mono),
                    };
                    self.feed(Input::Timer);
                }
                _ => return,
            }
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.clock;
        self.played.push(Played::In {
            now,
            input: input.clone(),
        });
        if let Err(misuse) = self.machine.handle_input(now, input) {
            self.played.push(Played::Misuse { now, misuse });
            return;
        }
        let mut to_confirm = Vec::new();
        while let Some(output) = self.machine.poll_output() {
            if let Output::Emit {
                confirm: Some(delivery),
                ..
            } = &output
            {
                to_confirm.push(*delivery);
            }
            self.played.push(Played::Out { now, output });
        }
        if self.auto_confirm {
            for delivery in to_confirm {
                self.feed(Input::Delivered { delivery });
            }
        }
    }
}
