//! The catalog in a MarkBase SQLite file.
//!
//! The v1 tables (`file_nodes`, `file_locations`) are read as found and only
//! the rows a user's action asks for are changed. What POSIX needs beyond them
//! lives in side tables added by versioned migrations (which touch only
//! `mb_*` objects):
//!
//! * `mb_inodes`: one row per inode: its stable number (allocated in batches
//!   from `mb_meta.next_ino`, never reused), owner, mode, precise times, and
//!   for nodes outside `file_nodes` (symlinks, devices, OS junk files) their
//!   kind, size and content;
//! * `mb_edges`: names that are not `file_nodes` rows: hard links beyond the
//!   first, and every entry outside the catalog proper (JuiceFS keeps nodes
//!   and edges apart the same way);
//! * `mb_xattrs`: extended attributes.
//!
//! The files, by responsibility:
//!
//! | file | what |
//! |---|---|
//! | `schema.rs` | the v1 schema, the migrations |
//! | `open.rs` | opening, and the checks that refuse a catalog untouched |
//! | `writer.rs` | the writer's state: its connection and batch, holding and yielding SQLite's write lock, the busy handler, inode batches, checkpoints |
//! | `conn.rs` | the reader pool, one-off write transactions, `data_version`, WAL sync |
//! | `journal.rs` | the metadata journal's records and file |
//! | `commit.rs` | journaled changes: the batch, its commits, the committer, the replay |
//! | `deferred.rs` | changes answered before SQLite applies them: creates and unlinks whose outcome is known |
//! | `error.rs` | SQLite's errors as [`CatalogError`]s |
//! | `time.rs` | ISO 8601 text and nanoseconds |
//! | `read.rs` | records, listings, parents |
//! | `mutate.rs` | every change, and the moves between `file_nodes` and the side tables |
//! | `fsck.rs` | the catalog's own consistency check and repair |
//! | `xattr.rs` | extended attributes |
//! | `v1.rs` | writing a new v1 catalog, as the app would |
//!
//! This file holds the types, and the [`Namespace`] and [`Maintenance`]
//! implementations: each method is [`Shared`]'s of the same name (the
//! committer thread shares that state), so the traits' shape reads in one
//! place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::sync::unchecked::Mutex;
use rusqlite::Connection;

use super::{
    CatalogCheck, CatalogError, CheckDepth, CommitCounts, ContentRef, DirEntry, Ino, Maintenance,
    Move, Namespace, NewNode, NodeRecord, Renamed, SetAttrs, SillyName, Unlinked, XattrSet,
};

mod commit;
mod conn;
mod deferred;
mod error;
mod fsck;
mod journal;
mod mutate;
mod open;
mod read;
mod schema;
#[cfg(test)]
mod tests;
mod time;
mod v1;
mod writer;
mod xattr;

pub use schema::{SCHEMA_VERSION, V1_SCHEMA};
pub use time::{format_iso, from_ns, parse_iso, to_ns};
pub use v1::V1Writer;
use writer::{Checkpoints, Writer};

/// The `node_id` of the root's own `mb_inodes` row (the root has no `file_nodes` row).
const ROOT_NODE_ID: &str = "(root)";

/// Options for opening a catalog.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Owner of nodes that have none recorded (the mounting user).
    pub uid: u32,
    pub gid: u32,
    /// Create an empty v1 catalog when the file does not exist.
    pub create: bool,
}

/// A MarkBase catalog in one SQLite file. The state lives in [`Shared`],
/// which the committer thread holds too; dropping the catalog stops that
/// thread and commits what is left.
pub struct SqliteCatalog {
    shared: Arc<Shared>,
    /// Joined on drop: the writer (and the journal's lock) goes with it.
    committer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::ops::Deref for SqliteCatalog {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What the catalog and its committer thread share.
pub struct Shared {
    path: PathBuf,
    /// The front of the journal: appends, changes not yet applied, what is
    /// known without SQLite (`deferred.rs`). Locked before `writer`.
    log: Mutex<deferred::Log>,
    /// The writer connection and its open batch.
    writer: Mutex<Writer>,
    /// Journaled changes not yet committed (readers commit them first).
    unsettled: std::sync::atomic::AtomicU64,
    committer: commit::Committer,
    /// What the open found in the journal (for `fsck`).
    replayed: journal::Replayed,
    readers: Mutex<Vec<Connection>>,
    uid: u32,
    gid: u32,
    /// The WAL, opened for syncing, and the last sync ticket a sync covered
    /// (`conn.rs`, `sync`).
    wal: Mutex<conn::WalSync>,
    /// Sync tickets handed out.
    sync_asked: std::sync::atomic::AtomicU64,
    checkpoints: Arc<Checkpoints>,
    /// The cycle heads and whether there are orphans, shown under `Unfiled`
    /// (found at the first listing of the root, so that mounting never scans
    /// the catalog).
    shape: Mutex<Option<Arc<read::Shape>>>,
    /// SQLite's `data_version` as last read on the writer's connection.
    seen_version: Mutex<Option<i64>>,
    /// Another process changed the catalog since `deferred::Log`'s
    /// knowledge was gathered: it is dropped before the next change.
    outside_change: std::sync::atomic::AtomicBool,
    /// The library's identity (`mb_meta.library_id`).
    library_id: uuid::Uuid,
    /// Commits and changes committed (the writer counts them).
    counts: Arc<writer::CommitCounters>,
}

impl Shared {
    /// Path of the SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Namespace for SqliteCatalog {
    fn get(&self, ino: Ino) -> Result<NodeRecord, CatalogError> {
        self.shared.get(ino)
    }

    fn get_many(&self, inos: &[Ino]) -> Vec<Result<NodeRecord, CatalogError>> {
        self.shared.get_many(inos)
    }

    fn list(&self, dir: Ino) -> Result<Vec<DirEntry>, CatalogError> {
        self.shared.list(dir)
    }

    fn parent_of(&self, dir: Ino) -> Result<Ino, CatalogError> {
        self.shared.parent_of(dir)
    }

    fn create(
        &self,
        parent: Ino,
        name: &str,
        new: &NewNode,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        self.shared.create(parent, name, new, now)
    }

    fn unlink(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        open: bool,
        now: SystemTime,
    ) -> Result<Unlinked, CatalogError> {
        self.shared.unlink(parent, name, ino, open, now)
    }

    fn rename(
        &self,
        m: &Move,
        replaced: Option<Ino>,
        now: SystemTime,
    ) -> Result<Renamed, CatalogError> {
        self.shared.rename(m, replaced, now)
    }

    fn exchange(&self, m: &Move, other: Ino, now: SystemTime) -> Result<(), CatalogError> {
        self.shared.exchange(m, other, now)
    }

    fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        self.shared.link(ino, new_parent, new_name, now)
    }

    fn set_attrs(&self, ino: Ino, attrs: &SetAttrs) -> Result<NodeRecord, CatalogError> {
        self.shared.set_attrs(ino, attrs)
    }

    fn commit_file(
        &self,
        ino: Ino,
        size: u64,
        mtime: SystemTime,
        ctime: SystemTime,
    ) -> Result<(), CatalogError> {
        self.shared.commit_file(ino, size, mtime, ctime)
    }

    fn correct_sizes(&self, sizes: &[(Ino, u64)]) -> Result<(), CatalogError> {
        self.shared.correct_sizes(sizes)
    }

    fn purge(&self, ino: Ino) -> Result<(), CatalogError> {
        self.shared.purge(ino)
    }

    fn get_xattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>, CatalogError> {
        self.shared.get_xattr(ino, name)
    }

    fn list_xattrs(&self, ino: Ino) -> Result<Vec<String>, CatalogError> {
        self.shared.list_xattrs(ino)
    }

    fn set_xattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        how: XattrSet,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        self.shared.set_xattr(ino, name, value, how, now)
    }

    fn remove_xattr(&self, ino: Ino, name: &str, now: SystemTime) -> Result<(), CatalogError> {
        self.shared.remove_xattr(ino, name, now)
    }

    fn sync(&self) -> Result<(), CatalogError> {
        self.shared.sync()
    }

    fn library_id(&self) -> uuid::Uuid {
        self.shared.library_id
    }

    fn outside_version(&self) -> Result<u64, CatalogError> {
        self.shared.outside_version()
    }

    fn commits(&self) -> CommitCounts {
        use std::sync::atomic::Ordering::Relaxed;
        CommitCounts {
            commits: self.counts.commits.load(Relaxed),
            changes: self.counts.changes.load(Relaxed),
            syncs_asked: self.sync_asked.load(Relaxed),
            syncs: self.counts.syncs.load(Relaxed),
        }
    }
}

impl Maintenance for SqliteCatalog {
    fn leftovers(&self) -> Result<Vec<(Ino, Option<PathBuf>)>, CatalogError> {
        self.shared.leftovers()
    }

    fn silly_renamed(&self) -> Result<Vec<SillyName>, CatalogError> {
        self.shared.silly_renamed()
    }

    fn trash(&self) -> Result<(i64, Vec<PathBuf>), CatalogError> {
        self.shared.trash()
    }

    fn clear_trash(&self, upto: i64) -> Result<(), CatalogError> {
        self.shared.clear_trash(upto)
    }

    fn usage(&self) -> Result<u64, CatalogError> {
        self.shared.usage()
    }

    fn content_refs(&self) -> Result<Vec<ContentRef>, CatalogError> {
        self.shared.content_refs()
    }

    fn check(&self, depth: CheckDepth) -> Result<CatalogCheck, CatalogError> {
        self.shared.check(depth)
    }

    fn repair(&self) -> Result<Vec<String>, CatalogError> {
        self.shared.repair()
    }

    fn drop_location(&self, node_id: &str, path: &Path) -> Result<(), CatalogError> {
        self.shared.drop_location(node_id, path)
    }
}
