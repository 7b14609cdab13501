//! The file system core: POSIX semantics over a [`Catalog`] and a [`ContentStore`].
//!
//! No FUSE types appear here (the adapter in `crate::fuse` translates), so the
//! core can be driven directly by tests and by other front ends (macOS
//! backends, an NFS server). Every operation returns `Result<_, FsError>`;
//! [`FsError::errno`] is the one place where failures become errno values.
//!
//! One `impl MarkBaseFs` block per responsibility, each in its own file:
//!
//! | file | what |
//! |---|---|
//! | `error.rs` | [`FsError`] and its errno mapping |
//! | `types.rs`, `flags.rs` | what callers hand in: attributes, setattr requests, config; open, rename, xattr and seek flags as types |
//! | `invalidate.rs` | lock striping; what a change drops or edits in the caches |
//! | `dir.rs` | rendered listings, directory handles, opendir/readdir/releasedir |
//! | `attr.rs` | getattr, lookup, readlink, setattr |
//! | `namespace.rs` | mkdir, mknod, symlink, create, unlink, rmdir, rename, link; name rules |
//! | `files.rs` | open files: open, read, write, flush, fsync, release, fallocate, lseek |
//! | `xattr.rs`, `streams.rs` | extended attributes (and a Mac's `com.apple.*` as `user.com.apple.*` on Linux, and as Samba's `user.DosStream.*` streams) |
//! | `appledouble.rs`, `mac_metadata.rs` | AppleDouble `._name` files, read and written, kept in step with `name`'s attributes |
//! | `notify.rs` | changes made behind the core's back: found, dropped from the caches, reported to the front ends |
//! | `stateless.rs` | for front ends without open and close (NFS): I/O by inode on leased handles, cookie-addressed folder pages, exclusive create, permission checks |
//! | `stats.rs`, `metrics.rs` | counters, `statfs`; request counts, latencies and errnos for the front ends |
//! | `quota.rs`, `memory.rs` | the byte quota; refusing writers under memory pressure |
//! | `cache.rs` | the bounded, expiring cache all of the above share |
//! | `check.rs` | `fsck` and the recovery pass |
//!
//! State kept here:
//! * five bounded caches with hit/miss counters: attribute records and real
//!   content sizes (65,536 inodes each), resolved content paths (65,536),
//!   rendered directories and directory parents (1,000 each). Every change
//!   made through the core drops or edits what it touched; a change another
//!   process commits to the catalog is found within a second
//!   (`notify.rs`), so what came from the catalog lives until it changes;
//!   only content sizes expire (60 s: content files can change behind the
//!   catalog). A value read from the catalog is only cached if no change
//!   happened meanwhile (an epoch counter), so a racing reader cannot cache a
//!   stale value;
//! * open files: one content file descriptor per open inode, shared by its
//!   handles; size and mtime kept in memory, committed to the catalog at
//!   flush/fsync/release, never inside `write`;
//! * unlinked-but-open inodes: kept until their last handle is released,
//!   then their content is freed (and a crash leaves them for the recovery
//!   pass at the next mount).
//!
//! Locking: directory mutations take a striped per-directory lock (two, in
//! order, for rename) for check-then-act; reads and data I/O take none of
//! them. No lock is held across content I/O except the per-inode state lock
//! for the few bytes of size bookkeeping.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::sync::{AtomicU64, Mutex};

use crate::catalog::{Catalog, Ino, NodeRecord};
use crate::store::ContentStore;

pub mod appledouble;
mod attr;
mod cache;
pub mod check;
#[cfg(all(test, feature = "shuttle"))]
mod concurrency;
mod dir;
mod error;
mod files;
pub mod flags;
mod invalidate;
mod mac_metadata;
pub mod memory;
pub mod metrics;
mod namespace;
mod notify;
pub mod quota;
mod stateless;
mod stats;
mod streams;
#[cfg(test)]
mod test_support;
mod types;
mod xattr;

use cache::TtlCache;
pub use dir::{DirHandle, Listing};
pub use error::{FsError, FsResult, NO_ATTR};
use files::Handle;
pub use files::OpenFile;
use invalidate::LOCK_STRIPES;
pub use namespace::{check_name, LINK_MAX, NAME_MAX, NOT_INDEXED};
pub use notify::{Change, Notifier};
use quota::Quota;
pub use stateless::{permitted, Access, DirPage, MAX_LEASES};
pub use stats::{Counters, Stats};
pub use types::{
    AppleDoubleView, Attr, Caller, DropSetId, FsConfig, NameForm, SetAttrReq, TimeSet,
};
pub use xattr::{linux_names, stored_name, xattr_from_kernel, xattrs_for_kernel, STATS_XATTR};

/// The file system.
pub struct MarkBaseFs {
    catalog: Arc<dyn Catalog>,
    store: ContentStore,
    /// Records are shared: a hit costs a reference count, not a copy of
    /// the record's strings.
    attrs: TtlCache<Arc<NodeRecord>>,
    paths: TtlCache<Option<PathBuf>>,
    /// Real size and 512-byte blocks of content files that are not open, as
    /// last seen (so `readdirplus` and `stat` need no `stat` of their own).
    sizes: TtlCache<(u64, u64)>,
    /// Parent of each directory (for `..` in listings).
    parents: TtlCache<Ino>,
    dirs: TtlCache<Arc<Listing>>,
    epoch: AtomicU64,
    open: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    handles: Mutex<HashMap<u64, Handle>>,
    dir_handles: Mutex<HashMap<u64, Arc<DirHandle>>>,
    /// Handles kept for front ends that never open (`stateless.rs`).
    leases: Mutex<stateless::Leases>,
    next_fh: AtomicU64,
    locks: Vec<Mutex<()>>,
    size_fixes: Mutex<HashMap<Ino, u64>>,
    quota: Option<Quota>,
    names: NameForm,
    /// What `._name` files hold (`mac_metadata.rs`).
    appledouble: AppleDoubleView,
    /// `._name` inodes as found (`mac_metadata.rs`).
    doubles: Mutex<mac_metadata::Doubles>,
    memory: memory::MemoryGuard,
    /// Where changes made behind the core's back are reported.
    notifier: Mutex<Option<Arc<dyn Notifier>>>,
    /// The catalog's outside version last seen by `poll_catalog`.
    outside_version: Mutex<Option<u64>>,
    /// Cached records still to be read again after an outside change.
    sweep: Mutex<notify::RecordSweep>,
    pub counters: Counters,
    /// Requests by kind, latency and errno (the front ends time them).
    pub requests: metrics::RequestMetrics,
}

impl MarkBaseFs {
    /// A core over `catalog` and `store`. Nothing is read yet: a mount is
    /// ready at once, and the caches fill as the tree is walked.
    pub fn new(catalog: Arc<dyn Catalog>, store: ContentStore, cfg: FsConfig) -> MarkBaseFs {
        MarkBaseFs {
            attrs: TtlCache::new(cfg.attr_entries, cfg.ttl),
            paths: TtlCache::new(cfg.path_entries, cfg.ttl),
            sizes: TtlCache::new(cfg.attr_entries, cfg.content_ttl),
            parents: TtlCache::new(cfg.dir_entries, cfg.ttl),
            dirs: TtlCache::new(cfg.dir_entries, cfg.ttl),
            catalog,
            store,
            epoch: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            size_fixes: Mutex::new(HashMap::new()),
            quota: cfg.quota.map(Quota::new),
            names: cfg.names,
            appledouble: cfg.appledouble,
            doubles: Mutex::new(Default::default()),
            memory: memory::MemoryGuard::from_env(),
            notifier: Mutex::new(None),
            outside_version: Mutex::new(None),
            sweep: Mutex::new(notify::RecordSweep::default()),
            counters: Counters::default(),
            requests: metrics::RequestMetrics::default(),
        }
    }

    /// The catalog under the core.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The library's identity (see [`crate::catalog::Namespace::library_id`]).
    pub fn library_id(&self) -> uuid::Uuid {
        self.catalog.library_id()
    }

    /// The content store under the core.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// Finish what an earlier run left: inodes unlinked while open.
    pub fn recover(&self) -> FsResult<usize> {
        let left = self.catalog.leftovers()?;
        for (ino, content) in &left {
            // The row first: a crash in between leaves an unreferenced
            // content file (which recovery finds), never a row whose file
            // is gone.
            self.catalog.purge(*ino)?;
            if let Some(p) = content {
                self.store.remove(p)?;
            }
        }
        // Content files of deleted nodes that the last run had not removed
        // yet (it does so in the background).
        let (upto, trash) = self.catalog.trash()?;
        for p in &trash {
            self.store.remove(p)?;
        }
        if upto > 0 {
            self.catalog.clear_trash(upto)?;
        }
        Ok(left.len())
    }
}
