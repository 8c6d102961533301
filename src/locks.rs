//! The gateway's one policy for a poisoned mutex: take it anyway.
//!
//! Every critical section in the gateway is a step that a panic elsewhere
//! cannot leave half done (a push onto a list, a take, a number updated in
//! one assignment, a snapshot's inputs replaced whole), so what a poisoned
//! lock guards is still consistent. Refusing it would lose exactly what the
//! gateway promises to keep: a request log record skipped, a spend not
//! counted, a reload ignored.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Takes `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
