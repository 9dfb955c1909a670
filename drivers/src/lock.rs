//! Locking a std mutex whose holder may have panicked.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking over the data if a previous holder panicked: every mutex in this crate
/// guards plain data (status cells, stream lists, idle connections) that a panic cannot leave
/// half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
