//! Lock helpers shared by the modules that keep state behind a `std::sync::Mutex`.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the guard even if a thread panicked while holding it. Every mutex in this
/// crate guards plain data (maps, queues, a SQLite connection whose open transaction SQLite rolls
/// back when its statements are dropped) that stays consistent across a panic, so refusing the
/// lock would only turn one failed request into a service that fails every request.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
