//! Refusing new writers under memory pressure, rather than stalling later.
//!
//! A FUSE thread that blocks for memory holds up every request behind it, so
//! the core checks the system's available memory (`MemAvailable` in
//! `/proc/meminfo`, read at most every 250 ms) when a file is opened or
//! created for writing, and refuses with `ENOMEM` below the floor (64 MiB,
//! or `MARKBASE_MIN_FREE_MIB`). Reads, and files already open, go on: they
//! need no memory of the daemon's (the kernel does their I/O).

use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// Default floor of available memory for opening files for writing.
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;
const RECHECK: Duration = Duration::from_millis(250);

pub struct MemoryGuard {
    min_free: u64,
    last: Mutex<Option<(Instant, bool)>>,
}

/// Available memory in bytes, from `/proc/meminfo`.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl MemoryGuard {
    pub fn new(min_free: u64) -> MemoryGuard {
        MemoryGuard {
            min_free,
            last: Mutex::new(None),
        }
    }

    /// The floor from `MARKBASE_MIN_FREE_MIB`, else the default.
    pub fn from_env() -> MemoryGuard {
        let min = std::env::var("MARKBASE_MIN_FREE_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_MIN_FREE, |m| m << 20);
        MemoryGuard::new(min)
    }

    /// Is the system below the floor?
    pub fn low(&self) -> bool {
        let mut last = self.last.lock();
        if let Some((at, low)) = *last {
            if at.elapsed() < RECHECK {
                return low;
            }
        }
        let low = available().is_some_and(|a| a < self.min_free);
        if low {
            tracing::warn!(
                "memory pressure: under {} MiB available; refusing new writers",
                self.min_free >> 20
            );
        }
        *last = Some((Instant::now(), low));
        low
    }
}
