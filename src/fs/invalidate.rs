//! The caches' consistency: per-directory lock striping, and what each change
//! made through the mount drops or edits.
//!
//! A directory mutation takes its folder's stripe (two, in stripe order, for
//! a rename) for check-then-act; reads and data I/O take none. A change bumps
//! the epoch first, then drops or edits what it touched, so a racing loader
//! either sees the new epoch (and does not cache what it read) or its entry
//! is dropped by the change (see `cache.rs`). Listings are edited in place
//! where that is exact (no collided names in the folder), dropped otherwise.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use crate::sync::MutexGuard;

use super::dir::DirEdit;
use super::{FsError, FsResult, MarkBaseFs};
use crate::catalog::{CatalogError, Ino, NodeRecord};

/// Stripes of the per-directory lock.
pub(super) const LOCK_STRIPES: usize = 64;

impl MarkBaseFs {
    pub(super) fn lock_dir(&self, ino: Ino) -> MutexGuard<'_, ()> {
        self.locks[(ino as usize) % LOCK_STRIPES].lock()
    }

    pub(super) fn lock_two(
        &self,
        a: Ino,
        b: Ino,
    ) -> (MutexGuard<'_, ()>, Option<MutexGuard<'_, ()>>) {
        let (sa, sb) = ((a as usize) % LOCK_STRIPES, (b as usize) % LOCK_STRIPES);
        if sa == sb {
            (self.locks[sa].lock(), None)
        } else {
            let (lo, hi) = (sa.min(sb), sa.max(sb));
            let g1 = self.locks[lo].lock();
            let g2 = self.locks[hi].lock();
            (g1, Some(g2))
        }
    }

    /// A change made through the mount, committed with time `now`: edit the
    /// cached listings it touched in place where that is exact (the common
    /// case: no collided names in the folder), drop them otherwise; drop the
    /// attributes of `inodes`. An edited folder's cached attributes get the
    /// new mtime and ctime the catalog gave it (so that the kernel's
    /// permission checks before the next create need no catalog query),
    /// unless its link count changed too: then they are dropped.
    pub(super) fn edited(&self, edits: Vec<(Ino, DirEdit)>, inodes: &[Ino], now: SystemTime) {
        self.epoch.fetch_add(1, Relaxed);
        self.touch_open(inodes, now);
        let mut touched: Vec<Ino> = Vec::new();
        for (dir, edit) in &edits {
            if touched.contains(dir) {
                touched.push(*dir);
                continue;
            }
            // A subfolder that came or went moves the link count by one.
            let delta = edit.subdirs_delta();
            let kept = self.attrs.edit(*dir, |r| {
                let r = Arc::make_mut(r);
                r.mtime = now;
                r.ctime = now;
                match u32::try_from(i64::from(r.nlink) + delta) {
                    Ok(n) if n >= 2 => {
                        r.nlink = n;
                        true
                    }
                    _ => false,
                }
            });
            if !kept {
                touched.push(*dir);
            }
        }
        for (dir, edit) in edits {
            self.dirs.edit(dir, |l| {
                if l.exact {
                    Arc::make_mut(l).apply(edit);
                }
                l.exact
            });
        }
        self.forget(&touched, inodes);
    }

    /// A change made through the mount: drop the listings of `dirs`, and what
    /// is cached of `dirs` and `inodes`.
    pub(super) fn changed(&self, dirs: &[Ino], inodes: &[Ino]) {
        self.epoch.fetch_add(1, Relaxed);
        self.touch_open(inodes, SystemTime::now());
        self.dirs.pop(dirs);
        self.forget(dirs, inodes);
    }

    /// The change moved the ctime of `inodes` in the catalog: an open file's
    /// state, whose times outrank the record's, moves with it (else a link,
    /// an unlink or a rename left the ctime where the last write put it, and
    /// the next commit put it back in the catalog).
    fn touch_open(&self, inodes: &[Ino], now: SystemTime) {
        let open: Vec<_> = {
            let open = self.open.lock();
            inodes.iter().filter_map(|i| open.get(i).cloned()).collect()
        };
        for of in open {
            let mut st = of.state.lock();
            st.ctime = st.ctime.max(now);
        }
    }

    pub(super) fn forget(&self, dirs: &[Ino], inodes: &[Ino]) {
        self.attrs.pop(dirs.iter().chain(inodes));
        self.paths.pop(inodes);
        self.sizes.pop(inodes);
        self.parents.pop(dirs.iter().chain(inodes));
    }

    pub(super) fn record(&self, ino: Ino) -> FsResult<Arc<NodeRecord>> {
        self.attrs
            .get_or_load(ino, &self.epoch, || match self.catalog.get(ino) {
                Ok(r) => Ok(Arc::new(r)),
                Err(CatalogError::NotFound) => Err(FsError::Stale),
                Err(e) => Err(e.into()),
            })
    }

    pub(super) fn fresh_record(&self, rec: NodeRecord) -> Arc<NodeRecord> {
        self.sizes.pop([&rec.ino]);
        let rec = Arc::new(rec);
        self.attrs.put(rec.ino, rec.clone());
        rec
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::super::flags::RenameMode;
    use super::super::test_support::TestFs;
    use super::*;
    use crate::catalog::ROOT_INO;

    #[test]
    fn two_locks_in_one_stripe_are_one_lock() {
        let t = TestFs::new();
        let (_a, b) = t.fs.lock_two(1, 1 + LOCK_STRIPES as Ino);
        assert!(b.is_none());
        drop(_a);
        let (_a, b) = t.fs.lock_two(5, 3);
        assert!(b.is_some());
    }

    #[test]
    fn changes_edit_cached_listings_in_place() {
        let t = TestFs::new();
        let before = t.fs.listing(ROOT_INO).expect("listing");
        let f = t.file("a.mov", b"x");
        let after = t.fs.listing(ROOT_INO).expect("listing");
        // The same load, edited: no catalog query, the same generation.
        assert_eq!(after.generation, before.generation);
        assert_eq!(after.get("a.mov").map(|e| e.ino), Some(f.ino));
        t.fs.rename(
            ROOT_INO,
            OsStr::new("a.mov"),
            ROOT_INO,
            OsStr::new("b.mov"),
            RenameMode::Replace,
        )
        .expect("rename");
        let renamed = t.fs.listing(ROOT_INO).expect("listing");
        assert!(renamed.get("a.mov").is_none());
        assert_eq!(renamed.get("b.mov").map(|e| e.ino), Some(f.ino));
        // The snapshot taken before is untouched.
        assert!(before.get("a.mov").is_none() && before.entries.is_empty());
    }

    #[test]
    fn a_folders_cached_times_follow_its_entries() {
        let t = TestFs::new();
        let d = t.mkdir(ROOT_INO, "d");
        let before = t.fs.getattr(d.ino).expect("getattr");
        std::thread::sleep(std::time::Duration::from_millis(5));
        t.fs.mkdir(
            d.ino,
            OsStr::new("sub"),
            0o755,
            0,
            super::super::test_support::ME,
        )
        .expect("mkdir");
        let after = t.fs.getattr(d.ino).expect("getattr");
        assert!(after.mtime > before.mtime);
        // A new subfolder: the link count is reloaded, not guessed.
        assert_eq!(after.nlink, before.nlink + 1);
    }
}
