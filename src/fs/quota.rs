//! A per-user quota on bytes of file content.
//!
//! The limit counts what the library says its files hold (the catalog's
//! sizes, plus the growth of files open right now), which is what `du` on
//! the mount adds up. The count is read from the catalog once, at the first
//! write that needs it (so a mount never scans its catalog to start), then
//! kept in memory: a write that extends a file takes the growth before it
//! touches the disk and fails with EDQUOT, as ext4's quota does, if the limit
//! would be passed; truncation and deletion give bytes back. Concurrent
//! extending writes to one file may both count the same growth, so the count
//! errs high; it is re-read from the catalog when no file is open for writing,
//! at most every [`RESYNC`].

use std::time::{Duration, Instant};

use crate::sync::Mutex;

use super::{FsError, FsResult};
use crate::catalog::{Catalog, CatalogError};

/// Least time between two re-reads of the usage from the catalog.
pub const RESYNC: Duration = Duration::from_secs(10);

pub struct Quota {
    limit: u64,
    state: Mutex<State>,
}

struct State {
    /// Bytes in use, once read.
    used: Option<u64>,
    read_at: Option<Instant>,
}

/// Why bytes could not be taken.
#[derive(Debug)]
pub enum TakeError {
    Exceeded { used: u64, limit: u64 },
    Catalog(CatalogError),
}

impl Quota {
    pub fn new(limit: u64) -> Quota {
        Quota {
            limit,
            state: Mutex::new(State {
                used: None,
                read_at: None,
            }),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn used_locked(st: &mut State, catalog: &dyn Catalog) -> Result<u64, CatalogError> {
        match st.used {
            Some(u) => Ok(u),
            None => {
                let u = catalog.usage()?;
                st.used = Some(u);
                st.read_at = Some(Instant::now());
                Ok(u)
            }
        }
    }

    /// Bytes in use now.
    pub fn used(&self, catalog: &dyn Catalog) -> Result<u64, CatalogError> {
        Self::used_locked(&mut self.state.lock(), catalog)
    }

    /// Take `bytes` of growth, or refuse.
    pub fn take(&self, catalog: &dyn Catalog, bytes: u64) -> Result<(), TakeError> {
        if bytes == 0 {
            return Ok(());
        }
        let mut st = self.state.lock();
        let used = Self::used_locked(&mut st, catalog).map_err(TakeError::Catalog)?;
        if used.saturating_add(bytes) > self.limit {
            return Err(TakeError::Exceeded {
                used,
                limit: self.limit,
            });
        }
        st.used = Some(used + bytes);
        Ok(())
    }

    /// Give back `bytes` (a file shrank or went away).
    pub fn give(&self, bytes: u64) {
        let mut st = self.state.lock();
        if let Some(u) = st.used.as_mut() {
            *u = u.saturating_sub(bytes);
        }
    }

    /// Re-read the usage from the catalog, if it is time to; call only when no
    /// file is open for writing (their growth is not in the catalog yet).
    pub fn resync(&self, catalog: &dyn Catalog) {
        let mut st = self.state.lock();
        if st.used.is_some() && st.read_at.is_some_and(|t| t.elapsed() < RESYNC) {
            return;
        }
        if st.used.is_none() {
            return; // never needed yet: stay lazy
        }
        match catalog.usage() {
            Ok(u) => {
                st.used = Some(u);
                st.read_at = Some(Instant::now());
            }
            Err(e) => tracing::warn!("quota: cannot re-read usage: {e}"),
        }
    }
}

impl super::MarkBaseFs {
    /// Does a quota apply? (Then every write must come through the daemon.)
    pub fn has_quota(&self) -> bool {
        self.quota.is_some()
    }

    /// Take `bytes` of growth from the quota, if there is one.
    pub(super) fn quota_take(&self, bytes: u64) -> FsResult<()> {
        match &self.quota {
            Some(q) => q.take(self.catalog.as_ref(), bytes).map_err(|e| match e {
                TakeError::Exceeded { used, limit } => FsError::QuotaExceeded { used, limit },
                TakeError::Catalog(e) => e.into(),
            }),
            None => Ok(()),
        }
    }

    /// A file went from `old` to `new` bytes: take or give the difference.
    pub(super) fn quota_resize(&self, old: u64, new: u64) -> FsResult<()> {
        if new > old {
            self.quota_take(new - old)
        } else {
            if let Some(q) = &self.quota {
                q.give(old - new);
            }
            Ok(())
        }
    }
}
