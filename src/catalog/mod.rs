//! The catalog: the tree of nodes, their attributes and extended attributes.
//!
//! The file system core talks to a catalog through the [`Catalog`] trait, by
//! inode number, and never sees SQL. `Catalog` is two traits: the
//! [`Namespace`] (what requests ask: nodes, names, moves, attributes,
//! durability) and its [`Maintenance`] (the recovery pass, the trash, fsck). The one implementation today is
//! [`sqlite::SqliteCatalog`], which reads the MarkBase v1 format as found
//! (`file_nodes`, `file_locations`) and keeps what a POSIX file system needs
//! beyond it in side tables of its own (`mb_*`). A shared SQL catalog can come
//! later behind the same trait; `tests/` holds one conformance suite meant to
//! run against every implementation.
//!
//! Rules every implementation keeps:
//! * inode numbers are stable for a node across mounts and never reused;
//! * every mutation happens whole or not at all, and once it returned it
//!   survives the process's death (the SQLite catalog journals it in one
//!   `write()` and commits it in a batch: `sqlite/journal.rs`);
//! * names are rendered from labels by [`names`], the same on every mount.
//!
//! The catalog trusts its one client (the file system core) for POSIX
//! preconditions that need the rendered directory (does the name exist, is
//! the directory empty); it checks what it can cheaply itself.

pub mod names;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Inode number.
pub type Ino = u64;
/// The mount's root directory.
pub const ROOT_INO: Ino = 1;
/// The virtual top-level `Unfiled` directory holding nodes whose parent is gone.
pub const UNFILED_INO: Ino = 2;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Kind::Dir => "d",
            Kind::File => "f",
            Kind::Symlink => "l",
            Kind::Fifo => "p",
            Kind::Socket => "s",
            Kind::CharDev => "c",
            Kind::BlockDev => "b",
        }
    }

    pub(crate) fn from_code(s: &str) -> Option<Kind> {
        Some(match s {
            "d" | "folder" => Kind::Dir,
            "f" | "file" => Kind::File,
            "l" => Kind::Symlink,
            "p" => Kind::Fifo,
            "s" => Kind::Socket,
            "c" => Kind::CharDev,
            "b" => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// Everything the catalog knows of one inode.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub ino: Ino,
    pub node_id: String,
    pub kind: Kind,
    /// The node has a `file_nodes` row (the rest of MarkBase sees it).
    pub in_catalog: bool,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub nlink: u32,
    /// Size as the catalog records it (may be stale for catalog files).
    pub size: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub btime: SystemTime,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Content file written by the mount (content store), if any.
    pub content: Option<PathBuf>,
    /// `file_locations` of the node, in the order they were added.
    pub locations: Vec<PathBuf>,
    /// The node has extended attributes (a `getxattr` of one that has none
    /// needs no catalog read: `ls -l` asks for ACLs of every file).
    pub has_xattrs: bool,
}

/// One rendered directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: Ino,
    pub kind: Kind,
    /// The name was generated to resolve a collision (`name (2).ext`): it
    /// depends on the other entries of the folder.
    pub disambiguated: bool,
}

/// What to create.
#[derive(Clone, Debug)]
pub struct NewNode {
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub target: Option<Vec<u8>>,
    /// Content file for a regular file (already created in the store).
    pub content: Option<PathBuf>,
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttrs {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
}

/// What an unlink left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct Unlinked {
    pub ino: Ino,
    /// Links the inode still has; 0 means it is gone once no handle holds it.
    pub nlink: u32,
    /// The inode was forgotten in the same transaction (no links, not open);
    /// its content file, if the mount wrote one, is the caller's to delete.
    pub purged: Option<Option<PathBuf>>,
}

/// A content file a catalog row points at.
#[derive(Clone, Debug)]
pub struct ContentRef {
    pub path: PathBuf,
    pub node_id: String,
}

/// A name outside `file_nodes` that an NFS client gave a file removed while
/// it was open ([`names::is_silly_rename`]).
#[derive(Clone, Debug)]
pub struct SillyName {
    pub parent: Ino,
    pub name: String,
    /// The inode's last change (the rename itself, or a write through a
    /// handle the client still holds).
    pub ctime: SystemTime,
}

/// What [`Maintenance::check`] found.
#[derive(Clone, Debug, Default)]
pub struct CatalogCheck {
    /// Damage: left by a crash or a change behind the mount's back; repairable.
    pub damage: Vec<String>,
    /// Not damage: what the format allows and the mount renders as documented.
    pub notes: Vec<String>,
}

/// How far [`Maintenance::check`] looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDepth {
    /// The rows: what a live mount's background pass repairs. Cheap enough
    /// to run beside a mount's first listings.
    Rows,
    /// The rows and every page of the database file (SQLite's
    /// `integrity_check`, which reads the whole file): `markbase fsck`.
    Pages,
}

/// Errors of the catalog layer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no such node")]
    NotFound,
    #[error("name exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("operation not permitted here: {0}")]
    NotPermitted(&'static str),
    #[error("cannot move across the catalog boundary: {0}")]
    CrossesBoundary(&'static str),
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error("no such attribute")]
    NoAttr,
    #[error("{path}: not a MarkBase catalog: {why}")]
    NotACatalog { path: PathBuf, why: String },
    #[error("{0}: the catalog is locked by another process")]
    Locked(PathBuf),
    #[error("{0}: the catalog file is read-only; a mount writes to it (inode numbers, changes): make it writable (chmod u+w), or copy it")]
    ReadOnly(PathBuf),
    #[error(
        "{path}: catalog written by a newer markbase (schema {found}, this build knows {known})"
    )]
    FutureSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The disk under the catalog is full.
    #[error("the catalog's disk is full")]
    NoSpace,
    /// The catalog can no longer be written (its file or disk turned read-only).
    #[error("the catalog cannot be written: {0}")]
    NotWritable(String),
    /// Another process held the catalog's write lock past the wait.
    #[error("the catalog is busy: {0}")]
    Busy(String),
    /// The catalog's file is damaged.
    #[error("the catalog is damaged: {0}")]
    Corrupt(String),
    /// Any other failure of the backend, in its own words.
    #[error("catalog backend: {0}")]
    Backend(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What `setxattr` may find: `create` fails with [`CatalogError::Exists`] if
/// the attribute is there (XATTR_CREATE), `replace` with
/// [`CatalogError::NoAttr`] if it is not (XATTR_REPLACE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrSet {
    pub create: bool,
    pub replace: bool,
}

impl XattrSet {
    /// Set it, whether it is there or not.
    pub const ANY: XattrSet = XattrSet {
        create: false,
        replace: false,
    };
    /// Only if it is not there yet.
    pub const CREATE: XattrSet = XattrSet {
        create: true,
        replace: false,
    };
    /// Only if it is there already.
    pub const REPLACE: XattrSet = XattrSet {
        create: false,
        replace: true,
    };
}

/// An entry moved: `name` (inode `ino`) of `parent` to `new_name` in
/// `new_parent` (a rename's or an exchange's arguments).
#[derive(Clone, Copy, Debug)]
pub struct Move<'a> {
    pub parent: Ino,
    pub name: &'a str,
    pub ino: Ino,
    pub new_parent: Ino,
    pub new_name: &'a str,
}

impl<'a> Move<'a> {
    pub fn new(parent: Ino, name: &'a str, ino: Ino, new_parent: Ino, new_name: &'a str) -> Self {
        Move {
            parent,
            name,
            ino,
            new_parent,
            new_name,
        }
    }
}

/// Cache-relevant facts of a rename, so the core can fix its caches.
#[derive(Clone, Debug, Default)]
pub struct Renamed {
    /// The entry that was replaced at the destination, if any.
    pub replaced: Option<Unlinked>,
}

/// The metadata store of one user's library, as the file system core holds
/// it: the [`Namespace`] and its [`Maintenance`]. A backend implements both
/// and is a `Catalog` by that alone; `tests/catalog_conformance.rs` is the
/// suite every backend passes.
pub trait Catalog: Namespace + Maintenance {}

impl<T: Namespace + Maintenance + ?Sized> Catalog for T {}

/// The namespace and its attributes: what the file system core asks on
/// every request (nodes, names, moves, attributes, extended attributes),
/// and what it asks of the catalog as a whole (durability, identity, outside
/// changes, counters).
pub trait Namespace: Send + Sync {
    /// One node by inode number.
    fn get(&self, ino: Ino) -> Result<NodeRecord, CatalogError>;
    /// Many nodes by inode number (a directory listing's), one result each,
    /// in order. A backend overrides this to fetch them in one go.
    fn get_many(&self, inos: &[Ino]) -> Vec<Result<NodeRecord, CatalogError>> {
        inos.iter().map(|i| self.get(*i)).collect()
    }
    /// A directory's entries, rendered (unique names), without `.`/`..`.
    fn list(&self, dir: Ino) -> Result<Vec<DirEntry>, CatalogError>;
    /// The parent of a directory (the root is its own parent).
    fn parent_of(&self, dir: Ino) -> Result<Ino, CatalogError>;
    /// Make a new node named `name` in `parent`.
    fn create(
        &self,
        parent: Ino,
        name: &str,
        new: &NewNode,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError>;
    /// Remove the entry `name` (which is `ino`) from `parent`. When that was
    /// its last link and `open` is false, forget the inode at once (as
    /// [`Namespace::purge`] would).
    fn unlink(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        open: bool,
        now: SystemTime,
    ) -> Result<Unlinked, CatalogError>;
    /// Make the move `m`, replacing `replaced` (the entry at its
    /// destination) if given.
    fn rename(
        &self,
        m: &Move,
        replaced: Option<Ino>,
        now: SystemTime,
    ) -> Result<Renamed, CatalogError>;
    /// Swap two entries (RENAME_EXCHANGE): `m`, and `other` (at its
    /// destination) the other way.
    fn exchange(&self, m: &Move, other: Ino, now: SystemTime) -> Result<(), CatalogError>;
    /// Add a hard link.
    fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError>;
    /// Change attributes.
    fn set_attrs(&self, ino: Ino, attrs: &SetAttrs) -> Result<NodeRecord, CatalogError>;
    /// Record the size and times of a file written through the mount.
    fn commit_file(
        &self,
        ino: Ino,
        size: u64,
        mtime: SystemTime,
        ctime: SystemTime,
    ) -> Result<(), CatalogError>;
    /// Correct stale catalog sizes (the content file's size wins).
    fn correct_sizes(&self, sizes: &[(Ino, u64)]) -> Result<(), CatalogError>;
    /// Forget an inode whose last link and last handle are gone.
    fn purge(&self, ino: Ino) -> Result<(), CatalogError>;

    fn get_xattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>, CatalogError>;
    fn list_xattrs(&self, ino: Ino) -> Result<Vec<String>, CatalogError>;
    /// Set an extended attribute, as `how` allows.
    fn set_xattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        how: XattrSet,
        now: SystemTime,
    ) -> Result<(), CatalogError>;
    fn remove_xattr(&self, ino: Ino, name: &str, now: SystemTime) -> Result<(), CatalogError>;

    /// Make every committed change durable (after an `fsync`).
    fn sync(&self) -> Result<(), CatalogError>;

    /// The library's identity: made when the catalog is first opened, the
    /// same at every later open, kept with the catalog (a copy of the file
    /// is the same library). Front ends name the library by it in file
    /// handles that must outlive the daemon (NFS).
    fn library_id(&self) -> uuid::Uuid;

    /// A number that changes when something other than this catalog object
    /// commits to the store (the MarkBase app, `sqlite3`): the file system
    /// core polls it and revalidates its caches when it moves. It may also
    /// move without a change (a false alarm costs a revalidation); a backend
    /// that cannot tell returns the same number always.
    fn outside_version(&self) -> Result<u64, CatalogError> {
        Ok(0)
    }

    /// Commits made so far, and the changes they held (for metrics).
    fn commits(&self) -> CommitCounts {
        CommitCounts::default()
    }
}

/// The catalog's upkeep: the recovery pass at mount, the trash sweeper,
/// `markbase fsck`, and the usage the quota starts from.
pub trait Maintenance: Send + Sync {
    /// Inodes left unlinked-but-open by an earlier run, with their content files.
    fn leftovers(&self) -> Result<Vec<(Ino, Option<PathBuf>)>, CatalogError>;
    /// Every [`SillyName`]: recovery removes those no client can still hold.
    fn silly_renamed(&self) -> Result<Vec<SillyName>, CatalogError>;
    /// Content files of nodes that were deleted (noted in the deleting
    /// change; the store removes them in the background), with the last
    /// note's number: after a crash, what to delete rather than keep.
    fn trash(&self) -> Result<(i64, Vec<PathBuf>), CatalogError>;
    /// Forget the notes up to `upto` (their files are gone).
    fn clear_trash(&self, upto: i64) -> Result<(), CatalogError>;

    /// Bytes of file content the catalog holds (the sum of its files' sizes).
    fn usage(&self) -> Result<u64, CatalogError>;

    /// Every content file a live row points at: locations, and the content of
    /// named or unlinked-but-open inodes.
    fn content_refs(&self) -> Result<Vec<ContentRef>, CatalogError>;
    /// What is wrong inside the catalog (damage) and what is odd but rendered
    /// as the format documents (notes), looking as far as `depth`.
    fn check(&self, depth: CheckDepth) -> Result<CatalogCheck, CatalogError>;
    /// Repair what [`Maintenance::check`] calls damage, except leftovers (the file
    /// system core frees those); returns what was done.
    fn repair(&self) -> Result<Vec<String>, CatalogError>;
    /// Forget that `node_id`'s content is at `path` (the file is gone).
    fn drop_location(&self, node_id: &str, path: &Path) -> Result<(), CatalogError>;
}

/// What [`Namespace::commits`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitCounts {
    pub commits: u64,
    pub changes: u64,
    /// Syncs of the catalog asked (`fsync`, COMMIT) and those that synced:
    /// fewer when syncs that arrive together share one.
    pub syncs_asked: u64,
    pub syncs: u64,
}

thread_local! {
    static QUERIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times this thread has gone to the catalog's store (a read, or
/// a change that could not be answered from the journal alone): the
/// request metrics tell from it which requests were answered from memory.
pub fn queries_on_this_thread() -> u64 {
    QUERIES.with(std::cell::Cell::get)
}

/// Count a trip to the store on this thread (see [`queries_on_this_thread`]).
pub(crate) fn count_query() {
    QUERIES.with(|q| q.set(q.get().wrapping_add(1)));
}
