//! Changes made behind the core's back: found, dropped from the caches, and
//! reported to whoever keeps caches of its own.
//!
//! The MarkBase app writes a catalog while it is mounted. The daemon calls
//! [`MarkBaseFs::poll_catalog`] about once a second; it asks the catalog for
//! its outside version (SQLite's `data_version`: one pragma) and, when that
//! moved, revalidates: every cached listing and record is read again and
//! compared, what differs is dropped (never replaced: a change made through
//! the core meanwhile may have edited the cached value, and a drop is always
//! safe), and the differences go to the [`Notifier`]. The FUSE adapter turns
//! them into kernel invalidations (`notify_inval_entry`, `notify_inval_inode`),
//! so `ls` shows the app's change at once rather than when a TTL runs out.
//!
//! Changes made through the core are not reported: the front end that made
//! them has seen them (the kernel updates its own caches on its own
//! requests, and a notification sent from inside a request can deadlock).
//! The notifier is called with no lock of the core held.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{FsResult, MarkBaseFs};
use crate::catalog::{DirEntry, Ino};

/// One thing a front end's cache may hold that is no longer true.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// An inode's attributes (and for a file, its data) changed or it is gone.
    Inode(Ino),
    /// A folder's listing changed (a kept readdir is stale).
    Listing(Ino),
    /// A name in a folder now means something else, or nothing, or is new.
    Entry { parent: Ino, name: String },
}

/// Where the core reports changes made behind its back.
pub trait Notifier: Send + Sync {
    /// Called from a background thread with no lock of the core held.
    fn changed(&self, changes: &[Change]);
}

impl MarkBaseFs {
    /// Report changes made behind the core's back to `notifier` from now on.
    pub fn set_notifier(&self, notifier: Arc<dyn Notifier>) {
        *self.notifier.lock() = Some(notifier);
    }

    /// Has another process committed to the catalog since the last call?
    /// Then read every cached listing again, and owe every cached record a
    /// second look (`RecordSweep`); and take that look at up to
    /// `RECORDS_PER_POLL` records still owed one. The first call only
    /// takes note of the version. Bumps the epoch first, so that a load
    /// racing with this is not cached. Returns the changes found (reported
    /// to the notifier too).
    pub fn poll_catalog(&self) -> FsResult<Vec<Change>> {
        let now = self.catalog.outside_version()?;
        let before = self.outside_version.lock().replace(now);
        let moved = matches!(before, Some(b) if b != now);
        if !moved && self.sweep.lock().owed == 0 {
            return Ok(Vec::new());
        }
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut changes = Vec::new();
        if moved {
            self.recheck_listings(&mut changes);
            self.sweep.lock().owed = usize::MAX;
        }
        self.recheck_records(RECORDS_PER_POLL, &mut changes);
        Ok(self.report(changes))
    }

    /// Every cached listing read again: what differs is dropped and added
    /// to `changes`. The caches derived from names (paths, parents, sizes)
    /// are dropped whole: cheap to find again.
    fn recheck_listings(&self, changes: &mut Vec<Change>) {
        let started = std::time::Instant::now();
        let dirs = self.dirs.snapshot();
        let listings = dirs.len();
        for (dir, old) in dirs {
            let entries = match self.catalog.list(dir) {
                Ok(entries) => entries,
                Err(_) => {
                    self.dirs.pop([&dir]);
                    changes.push(Change::Listing(dir));
                    changes.push(Change::Inode(dir));
                    continue;
                }
            };
            // Names are unique in a listing: compare by name, both ways.
            let fresh: HashMap<&str, &DirEntry> =
                entries.iter().map(|e| (e.name.as_str(), e)).collect();
            let kept = |e: &DirEntry| {
                fresh
                    .get(e.name.as_str())
                    .is_some_and(|f| f.ino == e.ino && f.kind == e.kind)
            };
            let gone_or_changed = old.entries.iter().filter(|e| !kept(e));
            let new = entries.iter().filter(|f| old.get(&f.name).is_none());
            let before = changes.len();
            changes.extend(gone_or_changed.chain(new).map(|e| Change::Entry {
                parent: dir,
                name: e.name.clone(),
            }));
            if changes.len() > before {
                self.dirs.pop([&dir]);
                changes.push(Change::Listing(dir));
            }
        }
        // A location may have moved with the rows.
        self.paths.clear();
        self.parents.clear();
        self.sizes.clear();
        tracing::debug!(
            listings,
            ms = started.elapsed().as_millis() as u64,
            "cached listings read again"
        );
    }

    /// Up to `limit` of the cached records still owed a second look, in
    /// turn by inode number from where the last look stopped, read again:
    /// what differs is dropped and added to `changes`.
    fn recheck_records(&self, limit: usize, changes: &mut Vec<Change>) {
        let started = std::time::Instant::now();
        let mut sweep = self.sweep.lock();
        let mut cached = self.attrs.snapshot();
        cached.sort_unstable_by_key(|(ino, _)| *ino);
        sweep.owed = sweep.owed.min(cached.len());
        let from = cached.partition_point(|(ino, _)| *ino < sweep.cursor);
        cached.rotate_left(from);
        cached.truncate(limit.min(sweep.owed));
        let inos: Vec<Ino> = cached.iter().map(|(i, _)| *i).collect();
        for ((ino, old), new) in cached.iter().zip(self.catalog.get_many(&inos)) {
            if new.as_ref().ok() != Some(old.as_ref()) {
                self.attrs.pop([ino]);
                changes.push(Change::Inode(*ino));
            }
        }
        sweep.owed -= cached.len();
        if let Some((last, _)) = cached.last() {
            sweep.cursor = last + 1;
        }
        tracing::debug!(
            records = cached.len(),
            owed = sweep.owed,
            ms = started.elapsed().as_millis() as u64,
            "cached records read again"
        );
    }

    /// `changes` without repeats, logged and reported to the notifier.
    fn report(&self, mut changes: Vec<Change>) -> Vec<Change> {
        let mut seen = HashSet::new();
        changes.retain(|c| seen.insert(c.clone()));
        if !changes.is_empty() {
            tracing::info!(
                changes = changes.len(),
                "the catalog was changed by another process"
            );
            let notifier = self.notifier.lock().clone();
            if let Some(n) = notifier {
                n.changed(&changes);
            }
        }
        changes
    }
}

/// Cached records read again per poll at most, so that a poll costs the
/// same however many records the caches hold (about 50 ms); with more cached,
/// the rest wait for the next polls, a second apart.
pub const RECORDS_PER_POLL: usize = 4096;

/// Which cached records still owe a second look since another process last
/// changed the catalog: `owed` of them, from inode number `cursor` on
/// (wrapping). A new change owes every cached record again, from where the
/// sweep stands, so that none waits behind a catalog that keeps changing.
#[derive(Debug, Default)]
pub(crate) struct RecordSweep {
    owed: usize,
    cursor: Ino,
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::SystemTime;

    use crate::sync::unchecked::Mutex;

    use super::super::test_support::TestFs;
    use super::*;
    use crate::catalog::sqlite::{OpenOptions, SqliteCatalog};
    use crate::catalog::{Namespace, ROOT_INO};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl Notifier for Recorder {
        fn changed(&self, changes: &[Change]) {
            self.0.lock().extend_from_slice(changes);
        }
    }

    /// The same catalog as another process (the MarkBase app) has it open.
    fn other_process(t: &TestFs) -> SqliteCatalog {
        let opts = OpenOptions {
            uid: 0,
            gid: 0,
            create: false,
        };
        SqliteCatalog::open(&t.catalog_path(), &opts).expect("open")
    }

    #[test]
    fn another_process_changes_are_found_dropped_and_reported() {
        let t = TestFs::new();
        let rec = Arc::new(Recorder::default());
        t.fs.set_notifier(rec.clone());
        let f = t.file("a.mov", b"abc");
        assert!(t.fs.poll_catalog().expect("poll").is_empty(), "baseline");
        // Changes made through the core are not reported.
        t.file("b.mov", b"");
        assert!(t.fs.poll_catalog().expect("poll").is_empty());
        assert!(rec.0.lock().is_empty());
        t.fs.getattr(f.ino).expect("cached");
        other_process(&t)
            .rename(
                &crate::catalog::Move {
                    parent: ROOT_INO,
                    name: "a.mov",
                    ino: f.ino,
                    new_parent: ROOT_INO,
                    new_name: "renamed.mov",
                },
                None,
                SystemTime::now(),
            )
            .expect("rename behind the mount");
        let found = t.fs.poll_catalog().expect("poll");
        for c in [
            Change::Entry {
                parent: ROOT_INO,
                name: "a.mov".into(),
            },
            Change::Entry {
                parent: ROOT_INO,
                name: "renamed.mov".into(),
            },
            Change::Listing(ROOT_INO),
        ] {
            assert!(found.contains(&c), "{c:?} missing from {found:?}");
        }
        assert_eq!(*rec.0.lock(), found);
        assert_eq!(
            t.fs.lookup(ROOT_INO, OsStr::new("renamed.mov"))
                .map(|a| a.ino)
                .ok(),
            Some(f.ino)
        );
        // Nothing new since: nothing to do.
        assert!(t.fs.poll_catalog().expect("poll").is_empty());
    }

    #[test]
    fn a_changed_record_is_dropped_and_an_unchanged_one_kept() {
        let t = TestFs::new();
        let a = t.file("a", b"12345");
        let b = t.file("b", b"");
        t.fs.poll_catalog().expect("baseline");
        t.fs.getattr(a.ino).expect("cache a");
        t.fs.getattr(b.ino).expect("cache b");
        let now = SystemTime::now();
        other_process(&t)
            .commit_file(a.ino, 99, now, now)
            .expect("resize behind the mount");
        let found = t.fs.poll_catalog().expect("poll");
        assert!(found.contains(&Change::Inode(a.ino)), "{found:?}");
        assert!(!found.contains(&Change::Inode(b.ino)), "{found:?}");
    }
}
