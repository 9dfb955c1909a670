//! Test hooks (feature `testing`): hold the writer before it commits, to see what waits for a
//! commit.

use std::sync::{Condvar, Mutex, PoisonError};

/// Closed: the writer waits in front of each commit until it opens.
#[derive(Default)]
pub(crate) struct Gate {
    held: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub(crate) fn set(&self, held: bool) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = held;
        self.changed.notify_all();
    }

    /// Waits while the gate is held.
    pub(crate) fn pass(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while *held {
            held = self
                .changed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
