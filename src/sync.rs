//! The locks and atomics of the core's concurrent protocols (the caches'
//! epoch, the open-file table, handles), behind one facade.
//!
//! A normal build uses parking_lot's mutex and std's atomics. With
//! `--features shuttle` they are the `shuttle` concurrency checker's, which
//! runs a test's threads under a scheduler of its own and explores many
//! interleavings (randomly, replayable from a seed) instead of the few a
//! stress test happens to hit: `src/fs/concurrency.rs` runs the epoch
//! protocol and the open/release race that way (`scripts/test` runs them).
//! Such a build is for those tests only: shuttle's primitives work only
//! inside a shuttle test.

#[cfg(not(feature = "shuttle"))]
pub use parking_lot::{Mutex, MutexGuard};
#[cfg(not(feature = "shuttle"))]
pub use std::sync::atomic::AtomicU64;

#[cfg(feature = "shuttle")]
pub use checked::{Mutex, MutexGuard};
#[cfg(feature = "shuttle")]
pub use shuttle::sync::atomic::AtomicU64;

/// Locks shared with threads that shuttle cannot schedule: the catalog's
/// committer and checkpointer, the content store's pool thread, a daemon's
/// signal and mount threads, the supervisor's table of units, the built-in
/// tests' watchers. They are parking_lot's in every build (a shuttle lock
/// taken outside a shuttle test panics), so what they guard is checked by
/// the stress, crash and differential tests, not by shuttle.
pub mod unchecked {
    pub use parking_lot::{Condvar, Mutex, MutexGuard};
}

#[cfg(feature = "shuttle")]
mod checked {
    /// shuttle's mutex with parking_lot's face: `lock` gives the guard
    /// itself (a poisoned lock's too: the panic has already failed the test).
    #[derive(Debug, Default)]
    pub struct Mutex<T: ?Sized>(shuttle::sync::Mutex<T>);

    pub type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(shuttle::sync::Mutex::new(value))
        }
    }

    impl<T: ?Sized> Mutex<T> {
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}
