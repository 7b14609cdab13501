//! The file system core: POSIX semantics over a [`Catalog`] and a [`ContentStore`].
//!
//! No FUSE types appear here (the adapter in `crate::fuse` translates), so the
//! core can be driven directly by tests and by future front ends (macOS
//! backends, an NFS server). Every operation returns `Result<_, FsError>`;
//! [`FsError::errno`] is the one place where failures become errno values.
//!
//! State kept here:
//! * caches with hit/miss counters: attributes (10,000 inodes), resolved
//!   content paths (10,000), rendered directories (1,000), each with a 60 s
//!   TTL and invalidated by every change this mount makes. A directory read
//!   from the catalog is only cached if no change happened meanwhile (an epoch
//!   counter), so a racing reader cannot cache a stale listing;
//! * open files: one content file descriptor per open inode, shared by its
//!   handles; writes go to it at the offsets asked (`pwrite`), and the size
//!   and mtime are kept in memory and committed to the catalog at
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
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

use crate::catalog::{
    Catalog, CatalogError, DirEntry, Ino, Kind, NewNode, NodeRecord, SetAttrs, ROOT_INO,
    UNFILED_INO,
};
use crate::store::{ContentStore, SpaceInfo, StoreError};

pub use crate::catalog::names::NAME_MAX;

mod cache;
pub mod check;
pub mod memory;
pub mod quota;
use cache::TtlCache;
use quota::{Quota, TakeError};

/// Attributes of one inode, as the file system reports them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub ino: Ino,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A time to set: a given time or "now".
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    At(SystemTime),
    Now,
}

/// A setattr request.
#[derive(Clone, Debug, Default)]
pub struct SetAttrReq {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub fh: Option<u64>,
}

/// Errors of the core. [`FsError::errno`] maps each to what ext4 would return.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("file name too long")]
    NameTooLong,
    #[error("file name is not valid UTF-8")]
    BadName,
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value does not fit")]
    Range,
    #[error("operation not permitted: {0}")]
    Perm(&'static str),
    #[error("permission denied: {0}")]
    Access(&'static str),
    #[error("cross-device move: {0}")]
    CrossDevice(&'static str),
    #[error("bad file handle")]
    BadHandle,
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("node {node_id} (inode {ino}) has no content file that exists and is allowed")]
    MissingContent { ino: Ino, node_id: String },
    #[error("too many links")]
    TooManyLinks,
    #[error("the system is low on memory: {0}")]
    NoMemory(&'static str),
    #[error("quota exceeded: {used} of {limit} bytes in use")]
    QuotaExceeded { used: u64, limit: u64 },
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("catalog: {0}")]
    Catalog(CatalogError),
    #[error("content store: {0}")]
    Store(#[from] StoreError),
}

impl From<CatalogError> for FsError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound => FsError::NotFound,
            CatalogError::Exists => FsError::Exists,
            CatalogError::NotDir => FsError::NotDir,
            CatalogError::IsDir => FsError::IsDir,
            CatalogError::NotEmpty => FsError::NotEmpty,
            CatalogError::NoAttr => FsError::NoAttr,
            CatalogError::NotPermitted(w) => FsError::Perm(w),
            CatalogError::CrossesBoundary(w) => FsError::CrossDevice(w),
            CatalogError::Invalid(w) => FsError::Invalid(w),
            other => FsError::Catalog(other),
        }
    }
}

impl FsError {
    /// The errno a POSIX caller sees.
    pub fn errno(&self) -> i32 {
        use libc::*;
        match self {
            FsError::NotFound => ENOENT,
            FsError::Exists => EEXIST,
            FsError::NotDir => ENOTDIR,
            FsError::IsDir => EISDIR,
            FsError::NotEmpty => ENOTEMPTY,
            FsError::Invalid(_) => EINVAL,
            FsError::NameTooLong => ENAMETOOLONG,
            FsError::BadName => EILSEQ,
            FsError::NoAttr => ENODATA,
            FsError::Range => ERANGE,
            FsError::Perm(_) => EPERM,
            FsError::Access(_) => EACCES,
            FsError::CrossDevice(_) => EXDEV,
            FsError::BadHandle => EBADF,
            FsError::NotSupported(_) => EOPNOTSUPP,
            FsError::MissingContent { .. } => EIO,
            FsError::NoMemory(_) => ENOMEM,
            FsError::QuotaExceeded { .. } => libc::EDQUOT,
            FsError::TooManyLinks => EMLINK,
            FsError::Io(e) => e.raw_os_error().unwrap_or(EIO),
            FsError::Store(StoreError::Io { source, .. }) => source.raw_os_error().unwrap_or(EIO),
            FsError::Catalog(CatalogError::Io(e)) => e.raw_os_error().unwrap_or(EIO),
            FsError::Catalog(CatalogError::Sqlite(e)) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => ENOSPC,
                Some(rusqlite::ErrorCode::ReadOnly) => EROFS,
                _ => EIO,
            },
            FsError::Catalog(_) => EIO,
        }
    }

    /// Failures a caller causes (ENOENT on lookup, EEXIST, ...) are routine;
    /// the rest are the file system's own trouble and are logged louder.
    pub fn is_routine(&self) -> bool {
        !matches!(
            self,
            FsError::Io(_)
                | FsError::Catalog(_)
                | FsError::Store(_)
                | FsError::MissingContent { .. }
                | FsError::NoMemory(_)
                | FsError::QuotaExceeded { .. }
        )
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Traffic counters (the caches count their own hits and misses).
#[derive(Default, Debug)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub opens: AtomicU64,
}

/// A snapshot of the cache and traffic counters, for `--stats` and the unmount log line.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub attr_hits: u64,
    pub attr_misses: u64,
    pub dir_hits: u64,
    pub dir_misses: u64,
    pub path_hits: u64,
    pub path_misses: u64,
    pub cache_hit_rate: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub opens: u64,
    pub open_files: u64,
}

/// Cache sizes and lifetimes.
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub attr_entries: usize,
    pub path_entries: usize,
    pub dir_entries: usize,
    pub ttl: Duration,
    /// Most bytes of file content (`quota` in markbase.toml).
    pub quota: Option<u64>,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            attr_entries: 65_536,
            path_entries: 65_536,
            dir_entries: 1_000,
            ttl: Duration::from_secs(60),
            quota: None,
        }
    }
}

/// A rendered directory, with a name index.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: Vec<DirEntry>,
    by_name: HashMap<String, usize>,
    /// No name in it was generated to resolve a collision, so adding or
    /// removing one entry leaves every other name as a fresh rendering would.
    exact: bool,
    /// Which load from the catalog this is (edits made through the mount
    /// keep it: the kernel sees those changes itself).
    generation: u64,
}

/// Generations of listings loaded from the catalog.
static LISTING_LOADS: AtomicU64 = AtomicU64::new(1);

/// A change to one cached directory listing.
enum DirEdit {
    Add(DirEntry),
    /// A name and the kind of what it named.
    Remove(String, Kind),
}

impl DirEdit {
    /// Does the edit change the folder's link count (a subfolder came or went)?
    fn moves_subdir(&self) -> bool {
        match self {
            DirEdit::Add(e) => e.kind == Kind::Dir,
            DirEdit::Remove(_, k) => *k == Kind::Dir,
        }
    }
}

impl Listing {
    fn new(entries: Vec<DirEntry>) -> Listing {
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let exact = !entries.iter().any(|e| e.disambiguated);
        Listing {
            entries,
            by_name,
            exact,
            generation: LISTING_LOADS.fetch_add(1, Relaxed),
        }
    }

    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    fn apply(&mut self, edit: DirEdit) {
        match edit {
            DirEdit::Add(e) => {
                if let Some(&i) = self.by_name.get(&e.name) {
                    self.entries[i] = e;
                } else {
                    self.by_name.insert(e.name.clone(), self.entries.len());
                    self.entries.push(e);
                }
            }
            DirEdit::Remove(name, _) => {
                if let Some(i) = self.by_name.remove(&name) {
                    self.entries.swap_remove(i);
                    if let Some(moved) = self.entries.get(i) {
                        self.by_name.insert(moved.name.clone(), i);
                    }
                }
            }
        }
    }
}

struct FileState {
    size: u64,
    mtime: SystemTime,
    ctime: SystemTime,
    dirty: bool,
    handles: u32,
    unlinked: bool,
    /// The kernel does this file's I/O itself (FUSE passthrough): its size
    /// and mtime are read from the content file, compared with `base`.
    passthrough: bool,
    /// Size and mtime of the content file when last synchronised with the state.
    base: (u64, SystemTime),
}

impl FileState {
    fn new(size: u64, mtime: SystemTime, ctime: SystemTime, base: (u64, SystemTime)) -> FileState {
        FileState {
            size,
            mtime,
            ctime,
            dirty: false,
            handles: 0,
            unlinked: false,
            passthrough: false,
            base,
        }
    }
}

fn backing_now(f: &File) -> io::Result<(u64, SystemTime)> {
    stamp(&f.metadata()?)
}

fn stamp(m: &std::fs::Metadata) -> io::Result<(u64, SystemTime)> {
    Ok((m.len(), m.modified()?))
}

impl OpenFile {
    /// Bring the state up to date with writes the kernel did by passthrough.
    fn sync_from_backing(&self, st: &mut FileState) {
        if st.passthrough {
            if let Ok(m) = self.file.metadata() {
                Self::sync_from(st, &m);
            }
        }
    }

    /// As [`Self::sync_from_backing`], from the content file's metadata already read.
    fn sync_from(st: &mut FileState, m: &std::fs::Metadata) {
        if !st.passthrough {
            return;
        }
        if let Ok(now) = stamp(m) {
            if now != st.base {
                st.size = now.0;
                if now.1 != st.base.1 {
                    st.mtime = now.1;
                    st.ctime = now.1.max(st.ctime);
                }
                st.base = now;
                st.dirty = true;
            }
        }
    }
}

/// One open inode: its content file, shared by all its handles.
pub struct OpenFile {
    ino: Ino,
    file: File,
    path: PathBuf,
    writable: bool,
    state: Mutex<FileState>,
}

impl OpenFile {
    /// The content file (for kernel passthrough and tests).
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn ino(&self) -> Ino {
        self.ino
    }
}

struct Handle {
    of: Arc<OpenFile>,
    write: bool,
}

/// A directory handle: the snapshot `readdir` serves, with stable offsets
/// (`.`, `..`, then the listing as it was at `opendir`, shared with the
/// cache: a later change edits the cache's copy, not this one).
pub struct DirHandle {
    pub ino: Ino,
    dots: [DirEntry; 2],
    listing: Arc<Listing>,
}

impl DirHandle {
    /// The entries from position `offset` on.
    pub fn entries_from(&self, offset: usize) -> impl Iterator<Item = &DirEntry> {
        let dots = self.dots.get(offset..).unwrap_or_default();
        let rest = self
            .listing
            .entries
            .get(offset.saturating_sub(2)..)
            .unwrap_or_default();
        dots.iter().chain(rest)
    }
}

const LOCK_STRIPES: usize = 64;
/// Most links one inode may have (ext4's limit).
pub const LINK_MAX: u32 = 65_000;
/// The root xattr that reports the mount's counters (`markbase fuse --stats`).
pub const STATS_XATTR: &str = "user.markbase.stats";

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
    /// The listing generation last handed to the kernel, by directory.
    listed: Mutex<lru::LruCache<Ino, u64>>,
    next_fh: AtomicU64,
    locks: Vec<Mutex<()>>,
    size_fixes: Mutex<HashMap<Ino, u64>>,
    quota: Option<Quota>,
    memory: memory::MemoryGuard,
    pub counters: Counters,
}

/// Check a name given to the file system: UTF-8, at most 255 bytes.
pub fn check_name(name: &OsStr) -> FsResult<&str> {
    let s = name.to_str().ok_or(FsError::BadName)?;
    if s.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if s.is_empty() || s.contains('/') || s.contains('\0') {
        return Err(FsError::Invalid("name"));
    }
    Ok(s)
}

impl MarkBaseFs {
    pub fn new(catalog: Arc<dyn Catalog>, store: ContentStore, cfg: FsConfig) -> MarkBaseFs {
        MarkBaseFs {
            attrs: TtlCache::new(cfg.attr_entries, cfg.ttl),
            paths: TtlCache::new(cfg.path_entries, cfg.ttl),
            sizes: TtlCache::new(cfg.attr_entries, cfg.ttl),
            parents: TtlCache::new(cfg.dir_entries, cfg.ttl),
            dirs: TtlCache::new(cfg.dir_entries, cfg.ttl),
            catalog,
            store,
            epoch: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            listed: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(cfg.dir_entries.max(1) * 4)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            next_fh: AtomicU64::new(1),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            size_fixes: Mutex::new(HashMap::new()),
            quota: cfg.quota.map(Quota::new),
            memory: memory::MemoryGuard::from_env(),
            counters: Counters::default(),
        }
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// Does a quota apply? (Then every write must come through the daemon.)
    pub fn has_quota(&self) -> bool {
        self.quota.is_some()
    }

    /// Take `bytes` of growth from the quota, if there is one.
    fn quota_take(&self, bytes: u64) -> FsResult<()> {
        match &self.quota {
            Some(q) => q.take(self.catalog.as_ref(), bytes).map_err(|e| match e {
                TakeError::Exceeded { used, limit } => FsError::QuotaExceeded { used, limit },
                TakeError::Catalog(e) => e.into(),
            }),
            None => Ok(()),
        }
    }

    /// A file went from `old` to `new` bytes: take or give the difference.
    fn quota_resize(&self, old: u64, new: u64) -> FsResult<()> {
        if new > old {
            self.quota_take(new - old)
        } else {
            if let Some(q) = &self.quota {
                q.give(old - new);
            }
            Ok(())
        }
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
        Ok(left.len())
    }

    // ------------------------------------------------------------ caches

    fn lock_dir(&self, ino: Ino) -> MutexGuard<'_, ()> {
        self.locks[(ino as usize) % LOCK_STRIPES].lock()
    }

    fn lock_two(&self, a: Ino, b: Ino) -> (MutexGuard<'_, ()>, Option<MutexGuard<'_, ()>>) {
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
    fn edited(&self, edits: Vec<(Ino, DirEdit)>, inodes: &[Ino], now: SystemTime) {
        self.epoch.fetch_add(1, Relaxed);
        let mut touched: Vec<Ino> = Vec::new();
        for (dir, edit) in &edits {
            if edit.moves_subdir() || touched.contains(dir) {
                touched.push(*dir);
                continue;
            }
            let kept = self.attrs.edit(*dir, |r| {
                let r = Arc::make_mut(r);
                r.mtime = now;
                r.ctime = now;
                true
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
    fn changed(&self, dirs: &[Ino], inodes: &[Ino]) {
        self.epoch.fetch_add(1, Relaxed);
        self.dirs.pop(dirs);
        self.forget(dirs, inodes);
    }

    fn forget(&self, dirs: &[Ino], inodes: &[Ino]) {
        self.attrs.pop(dirs.iter().chain(inodes));
        self.paths.pop(inodes);
        self.sizes.pop(inodes);
        self.parents.pop(dirs.iter().chain(inodes));
    }

    fn record(&self, ino: Ino) -> FsResult<Arc<NodeRecord>> {
        self.attrs.get_or_load(ino, &self.epoch, || {
            self.catalog.get(ino).map(Arc::new).map_err(FsError::from)
        })
    }

    fn fresh_record(&self, rec: NodeRecord) -> Arc<NodeRecord> {
        self.sizes.pop([&rec.ino]);
        let rec = Arc::new(rec);
        self.attrs.put(rec.ino, rec.clone());
        rec
    }

    /// A directory, rendered (cached).
    pub fn listing(&self, dir: Ino) -> FsResult<Arc<Listing>> {
        self.dirs.get_or_load(dir, &self.epoch, || {
            if self.record(dir)?.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            Ok(Arc::new(Listing::new(self.catalog.list(dir)?)))
        })
    }

    /// The content file of a record: first allowed, existing location (cached).
    fn content_path(&self, rec: &NodeRecord) -> Option<PathBuf> {
        let found: Result<_, std::convert::Infallible> =
            self.paths.get_or_load(rec.ino, &self.epoch, || {
                Ok(self.store.resolve(
                    rec.content
                        .iter()
                        .chain(rec.locations.iter())
                        .map(|p| p.as_path()),
                ))
            });
        found.unwrap_or_else(|never| match never {})
    }

    fn attr_of(&self, rec: &NodeRecord) -> Attr {
        let mut a = Attr {
            ino: rec.ino,
            size: rec.size,
            blocks: rec.size.div_ceil(512),
            atime: rec.atime,
            mtime: rec.mtime,
            ctime: rec.ctime,
            crtime: rec.btime,
            kind: rec.kind,
            perm: rec.perm,
            nlink: rec.nlink,
            uid: rec.uid,
            gid: rec.gid,
            rdev: rec.rdev,
            blksize: 4096,
        };
        match rec.kind {
            Kind::Dir => {
                a.size = 4096;
                a.blocks = 8;
            }
            Kind::Symlink => {
                a.size = rec.target.as_ref().map_or(0, |t| t.len() as u64);
                a.blocks = 0;
            }
            Kind::File => {
                let open = self.open.lock().get(&rec.ino).cloned();
                if let Some(of) = open {
                    // Read under the lock, so concurrent readers apply stats in order.
                    let mut st = of.state.lock();
                    if let Ok(m) = &of.file.metadata() {
                        OpenFile::sync_from(&mut st, m);
                        a.blocks = std::os::unix::fs::MetadataExt::blocks(m);
                    }
                    a.size = st.size;
                    a.mtime = st.mtime;
                    a.ctime = st.ctime;
                    a.nlink = if st.unlinked { 0 } else { a.nlink };
                } else {
                    let real = self.sizes.get_or_load(rec.ino, &self.epoch, || {
                        let p = self.content_path(rec).ok_or(())?;
                        let m = std::fs::metadata(&p).map_err(|_| ())?;
                        Ok::<_, ()>((m.len(), std::os::unix::fs::MetadataExt::blocks(&m)))
                    });
                    if let Ok((len, blocks)) = real {
                        a.size = len;
                        a.blocks = blocks;
                        if rec.in_catalog && len != rec.size {
                            self.size_fixes.lock().insert(rec.ino, len);
                        }
                    }
                }
            }
            _ => {
                a.size = 0;
                a.blocks = 0;
            }
        }
        a
    }

    /// Write catalog size corrections found by `getattr` (the content file's
    /// size wins). Called periodically by the daemon and at unmount.
    pub fn flush_size_fixes(&self) -> FsResult<()> {
        let fixes: Vec<(Ino, u64)> = self.size_fixes.lock().drain().collect();
        if !fixes.is_empty() {
            self.catalog.correct_sizes(&fixes)?;
            self.attrs.pop(fixes.iter().map(|f| &f.0));
        }
        Ok(())
    }

    // ------------------------------------------------------------ lookups

    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let rec = self.record(ino)?;
        Ok(self.attr_of(&rec))
    }

    /// The attributes of many inodes (a `readdirplus` reply's), those not
    /// cached fetched from the catalog in one go; one result each, in order.
    pub fn getattr_many(&self, inos: &[Ino]) -> Vec<FsResult<Attr>> {
        self.attrs
            .get_or_load_many(inos, &self.epoch, |miss| {
                self.catalog
                    .get_many(miss)
                    .into_iter()
                    .map(|r| r.map(Arc::new).map_err(FsError::from))
                    .collect()
            })
            .into_iter()
            .zip(inos)
            .map(|(r, ino)| match r {
                Some(r) => r.map(|rec| self.attr_of(&rec)),
                None => self.getattr(*ino),
            })
            .collect()
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let name = check_name(name)?;
        let l = self.listing(parent)?;
        let e = l.get(name).ok_or(FsError::NotFound)?;
        self.getattr(e.ino)
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let rec = self.record(ino)?;
        match (rec.kind, &rec.target) {
            (Kind::Symlink, Some(t)) => Ok(t.clone()),
            _ => Err(FsError::Invalid("not a symlink")),
        }
    }

    /// Parent of a directory (for `..`).
    pub fn parent_of(&self, dir: Ino) -> FsResult<Ino> {
        self.parents.get_or_load(dir, &self.epoch, || {
            self.catalog.parent_of(dir).map_err(FsError::from)
        })
    }

    // ------------------------------------------------------------ directories

    /// A handle on `ino`'s listing, and whether the kernel's kept copy of
    /// the directory (if it has one) is still what the mount would list, so
    /// that the kernel may serve it without asking.
    pub fn opendir(&self, ino: Ino) -> FsResult<(u64, bool)> {
        let listing = self.listing(ino)?;
        let parent = self.parent_of(ino)?;
        let dot = |name: &str, ino| DirEntry {
            name: name.into(),
            ino,
            kind: Kind::Dir,
            disambiguated: false,
        };
        // The kernel keeps listings it read (FOPEN_CACHE_DIR) and drops them
        // itself on changes made through the mount; a listing reloaded from
        // the catalog (expired, or re-rendered) it must drop on our word.
        let kernel_cache_valid =
            self.listed.lock().put(ino, listing.generation) == Some(listing.generation);
        let fh = self.next_fh.fetch_add(1, Relaxed);
        self.dir_handles.lock().insert(
            fh,
            Arc::new(DirHandle {
                ino,
                dots: [dot(".", ino), dot("..", parent)],
                listing,
            }),
        );
        Ok((fh, kernel_cache_valid))
    }

    pub fn dir_handle(&self, fh: u64) -> FsResult<Arc<DirHandle>> {
        self.dir_handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.lock().remove(&fh);
    }

    fn new_owner(
        &self,
        parent: &NodeRecord,
        caller: Caller,
        mode: u32,
        is_dir: bool,
    ) -> (u32, u32, u16) {
        let mut perm = (mode & 0o7777) as u16;
        let gid = if parent.perm & 0o2000 != 0 {
            if is_dir {
                perm |= 0o2000;
            }
            parent.gid
        } else {
            caller.gid
        };
        (caller.uid, gid, perm)
    }

    fn make(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        umask: u32,
        rdev: u32,
        target: Option<Vec<u8>>,
        caller: Caller,
    ) -> FsResult<(Arc<NodeRecord>, Option<File>)> {
        let name = check_name(name)?;
        let _g = self.lock_dir(parent);
        let prec = self.record(parent)?;
        if prec.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if parent == UNFILED_INO {
            return Err(FsError::Access(
                "Unfiled only holds what the catalog left there",
            ));
        }
        if self.listing(parent)?.get(name).is_some() {
            return Err(FsError::Exists);
        }
        let (uid, gid, perm) = self.new_owner(&prec, caller, mode & !umask, kind == Kind::Dir);
        let (content, file) = if kind == Kind::File {
            let (p, f) = self.store.create(&uuid::Uuid::new_v4().to_string())?;
            (Some(p), Some(f))
        } else {
            (None, None)
        };
        let new = NewNode {
            kind,
            perm,
            uid,
            gid,
            rdev,
            target,
            content: content.clone(),
        };
        let now = SystemTime::now();
        let rec = match self.catalog.create(parent, name, &new, now) {
            Ok(r) => r,
            Err(e) => {
                if let Some(p) = &content {
                    let _ = self.store.remove(p);
                }
                return Err(e.into());
            }
        };
        let entry = DirEntry {
            name: name.to_string(),
            ino: rec.ino,
            kind,
            disambiguated: false,
        };
        self.edited(vec![(parent, DirEdit::Add(entry))], &[], now);
        let rec = self.fresh_record(rec);
        if let Some(p) = content {
            self.paths.put(rec.ino, Some(p));
            // A new content file is empty: the next listing need not stat it.
            self.sizes.put(rec.ino, (0, 0));
        }
        Ok((rec, file))
    }

    pub fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let (rec, _) = self.make(parent, name, Kind::Dir, mode, umask, 0, None, caller)?;
        Ok(self.attr_of(&rec))
    }

    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            libc::S_IFDIR => Kind::Dir,
            _ => return Err(FsError::Invalid("mknod type")),
        };
        let (rec, _) = self.make(parent, name, kind, mode, umask, rdev, None, caller)?;
        Ok(self.attr_of(&rec))
    }

    pub fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.len() > 4095 {
            return Err(FsError::NameTooLong);
        }
        let (rec, _) = self.make(
            parent,
            name,
            Kind::Symlink,
            0o777,
            0,
            0,
            Some(target.to_vec()),
            caller,
        )?;
        Ok(self.attr_of(&rec))
    }

    /// Create and open a regular file.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        if self.memory.low() {
            return Err(FsError::NoMemory("opening a file for writing"));
        }
        let (rec, file) = self.make(parent, name, Kind::File, mode, umask, 0, None, caller)?;
        let file = file.ok_or(FsError::Invalid("create without content"))?;
        let file_base = file.try_clone()?;
        let path = rec.content.clone().unwrap_or_default();
        let of = Arc::new(OpenFile {
            ino: rec.ino,
            file,
            path,
            writable: true,
            state: Mutex::new(FileState::new(
                0,
                rec.mtime,
                rec.ctime,
                backing_now(&file_base)?,
            )),
        });
        self.open.lock().insert(rec.ino, of);
        let fh = self
            .open_handle(rec.ino, flags)?
            .ok_or(FsError::BadHandle)?;
        Ok((self.attr_of(&rec), fh))
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<()> {
        let name = check_name(name)?;
        let _g = self.lock_dir(parent);
        let e = self
            .listing(parent)?
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound)?;
        if e.ino == UNFILED_INO {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        match (dir, e.kind == Kind::Dir) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) => {
                if !self.listing(e.ino)?.entries.is_empty() {
                    return Err(FsError::NotEmpty);
                }
            }
            _ => {}
        }
        let open = self.open.lock().contains_key(&e.ino);
        let now = SystemTime::now();
        let size = match (&self.quota, e.kind) {
            (Some(_), Kind::File) => self.record(e.ino).map(|r| r.size).unwrap_or(0),
            _ => 0,
        };
        let un = self.catalog.unlink(parent, name, e.ino, open, now)?;
        self.changed(&[e.ino], &[]);
        self.edited(
            vec![(parent, DirEdit::Remove(name.to_string(), e.kind))],
            &[e.ino],
            now,
        );
        match un.purged {
            Some(content) => {
                let _ = self.quota_resize(size, 0);
                if let Some(p) = content {
                    self.store.remove(&p)?;
                }
            }
            None if un.nlink == 0 => self.forget_inode(e.ino)?,
            None => {}
        }
        Ok(())
    }

    /// The last link of `ino` is gone: free it now, or at its last close.
    fn forget_inode(&self, ino: Ino) -> FsResult<()> {
        if let Some(of) = self.open.lock().get(&ino) {
            let mut st = of.state.lock();
            st.unlinked = true;
            st.ctime = SystemTime::now();
            return Ok(());
        }
        self.purge(ino)
    }

    fn purge(&self, ino: Ino) -> FsResult<()> {
        let rec = self.catalog.get(ino).ok();
        // The row first, then the file (see `recover`).
        self.catalog.purge(ino)?;
        self.changed(&[], &[ino]);
        if let Some(p) = rec.as_ref().and_then(|r| r.content.as_ref()) {
            if let (Some(_), Some(rec)) = (&self.quota, &rec) {
                // An unlinked open file's growth never reached the catalog.
                let real = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let _ = self.quota_resize(rec.size.max(real), 0);
            }
            self.store.remove(p)?;
        }
        Ok(())
    }

    fn is_ancestor(&self, anc: Ino, mut dir: Ino) -> FsResult<bool> {
        for _ in 0..4096 {
            if dir == anc {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = self.parent_of(dir)?;
        }
        Err(FsError::Invalid("directory tree too deep"))
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        let name = check_name(name)?;
        let new_name = check_name(new_name)?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(FsError::Invalid("rename flags"));
        }
        let _g = self.lock_two(parent, new_parent);
        let (src_dir, dst_dir) = (self.listing(parent)?, self.listing(new_parent)?);
        let src = src_dir.get(name).cloned().ok_or(FsError::NotFound)?;
        let dst = dst_dir.get(new_name).cloned();
        if src.ino == UNFILED_INO || dst.as_ref().is_some_and(|d| d.ino == UNFILED_INO) {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        if new_parent == UNFILED_INO {
            return Err(FsError::Access(
                "Unfiled only holds what the catalog left there",
            ));
        }
        if let Some(d) = &dst {
            if d.ino == src.ino {
                return Ok(());
            }
        }
        if src.kind == Kind::Dir && self.is_ancestor(src.ino, new_parent)? {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let now = SystemTime::now();
        if exchange {
            let d = dst.ok_or(FsError::NotFound)?;
            if d.kind == Kind::Dir && self.is_ancestor(d.ino, parent)? {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            self.catalog
                .exchange(parent, name, src.ino, new_parent, new_name, d.ino, now)?;
            self.changed(&[parent, new_parent, src.ino, d.ino], &[src.ino, d.ino]);
            return Ok(());
        }
        if let Some(d) = &dst {
            if noreplace {
                return Err(FsError::Exists);
            }
            match (src.kind == Kind::Dir, d.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.listing(d.ino)?.entries.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        let r = self.catalog.rename(
            parent,
            name,
            src.ino,
            new_parent,
            new_name,
            dst.as_ref().map(|d| d.ino),
            now,
        )?;
        let mut inos = vec![src.ino];
        inos.extend(dst.as_ref().map(|d| d.ino));
        if src.kind == Kind::Dir {
            self.changed(&[src.ino], &[]);
        }
        let moved = DirEntry {
            name: new_name.to_string(),
            disambiguated: false,
            ..src.clone()
        };
        self.edited(
            vec![
                (parent, DirEdit::Remove(name.to_string(), src.kind)),
                (new_parent, DirEdit::Add(moved)),
            ],
            &inos,
            now,
        );
        if let Some(un) = r.replaced {
            if un.nlink == 0 {
                self.forget_inode(un.ino)?;
            }
        }
        Ok(())
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> FsResult<Attr> {
        let new_name = check_name(new_name)?;
        let _g = self.lock_dir(new_parent);
        let now = SystemTime::now();
        let rec = self.record(ino)?;
        if rec.kind == Kind::Dir {
            return Err(FsError::Perm("hard links to directories"));
        }
        if rec.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if self.listing(new_parent)?.get(new_name).is_some() {
            return Err(FsError::Exists);
        }
        let rec = self.catalog.link(ino, new_parent, new_name, now)?;
        let entry = DirEntry {
            name: new_name.to_string(),
            ino,
            kind: rec.kind,
            disambiguated: false,
        };
        self.edited(vec![(new_parent, DirEdit::Add(entry))], &[ino], now);
        let rec = self.fresh_record(rec);
        Ok(self.attr_of(&rec))
    }

    // ------------------------------------------------------------ attributes

    pub fn setattr(&self, ino: Ino, req: &SetAttrReq) -> FsResult<Attr> {
        let now = SystemTime::now();
        let rec = self.record(ino)?;
        let resolve = |t: TimeSet| match t {
            TimeSet::At(t) => t,
            TimeSet::Now => now,
        };
        let mut set = SetAttrs {
            perm: req.mode.map(|m| (m & 0o7777) as u16),
            uid: req.uid,
            gid: req.gid,
            atime: req.atime.map(resolve),
            mtime: req.mtime.map(resolve),
            ctime: Some(now),
            size: None,
        };
        let open = self.open.lock().get(&ino).cloned();
        if let Some(size) = req.size {
            if rec.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if rec.kind != Kind::File {
                return Err(FsError::Invalid("truncate of a special file"));
            }
            let old = match &open {
                Some(of) => of.state.lock().size,
                None => rec.size,
            };
            self.quota_resize(old, size)?;
            let done = match &open {
                Some(of) if of.writable => of.file.set_len(size).map_err(FsError::from),
                _ => match self.content_path(&rec) {
                    Some(p) => self
                        .store
                        .open(&p, true)
                        .map_err(FsError::from)
                        .and_then(|f| Ok(f.set_len(size)?)),
                    None => Err(self.missing(&rec)),
                },
            };
            if let Err(e) = done {
                let _ = self.quota_resize(size, old);
                return Err(e);
            }
            set.size = Some(size);
            if req.mtime.is_none() {
                set.mtime = Some(now);
            }
        }
        if let Some(of) = &open {
            let mut st = of.state.lock();
            of.sync_from_backing(&mut st);
            if let Some(s) = set.size {
                st.size = s;
            }
            if st.passthrough {
                st.base = backing_now(&of.file)?;
            }
            if let Some(m) = set.mtime {
                st.mtime = m;
            }
            st.ctime = now;
            if st.unlinked {
                // Nothing to commit for a file with no name left.
                drop(st);
                let mut r = NodeRecord::clone(&rec);
                r.perm = set.perm.unwrap_or(r.perm);
                r.uid = set.uid.unwrap_or(r.uid);
                r.gid = set.gid.unwrap_or(r.gid);
                r.atime = set.atime.unwrap_or(r.atime);
                r.nlink = 0;
                return Ok(self.attr_of(&self.fresh_record(r)));
            }
            if set.size.is_some() {
                st.dirty = false;
                set.size = Some(st.size);
                set.mtime = Some(st.mtime);
            }
        }
        let rec = self.catalog.set_attrs(ino, &set)?;
        self.changed(&[], &[ino]);
        let rec = self.fresh_record(rec);
        Ok(self.attr_of(&rec))
    }

    fn missing(&self, rec: &NodeRecord) -> FsError {
        FsError::MissingContent {
            ino: rec.ino,
            node_id: rec.node_id.clone(),
        }
    }

    // ------------------------------------------------------------ files

    /// A new handle on `ino`'s open file; `None` if it is not open. The
    /// handle is counted under the open-file table's lock, which `release`
    /// holds to retire an idle open file: the two cannot interleave.
    fn open_handle(&self, ino: Ino, flags: i32) -> FsResult<Option<u64>> {
        let write = (flags & libc::O_ACCMODE) != libc::O_RDONLY;
        let of = {
            let open = self.open.lock();
            let Some(of) = open.get(&ino).cloned() else {
                return Ok(None);
            };
            if write && !of.writable {
                return Err(FsError::Access("content file is read-only"));
            }
            of.state.lock().handles += 1;
            of
        };
        let fh = self.next_fh.fetch_add(1, Relaxed);
        self.handles.lock().insert(fh, Handle { of, write });
        self.counters.opens.fetch_add(1, Relaxed);
        Ok(Some(fh))
    }

    pub fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        let rec = self.record(ino)?;
        match rec.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid("open of a special file")),
        }
        let write = (flags & libc::O_ACCMODE) != libc::O_RDONLY;
        if write && self.memory.low() {
            return Err(FsError::NoMemory("opening a file for writing"));
        }
        // An open file may be retired by a racing release between our look
        // and our handle: then open it anew.
        let fh = loop {
            if let Some(fh) = self.open_handle(ino, flags)? {
                break fh;
            }
            // Opening touches the disk: do it without the table lock.
            let p = self.content_path(&rec).ok_or_else(|| self.missing(&rec))?;
            let file = match self.store.open(&p, write) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted behind the mount's back since it was resolved.
                    self.paths.pop([&ino]);
                    return Err(self.missing(&rec));
                }
                Err(e) => return Err(e.into()),
            };
            let writable = file_writable(&file);
            let base = backing_now(&file)?;
            let of = Arc::new(OpenFile {
                ino,
                file,
                path: p,
                writable,
                state: Mutex::new(FileState::new(base.0, rec.mtime, rec.ctime, base)),
            });
            self.open.lock().entry(ino).or_insert(of);
        };
        if write && flags & libc::O_TRUNC != 0 {
            // FUSE_ATOMIC_O_TRUNC: the truncation is ours to do.
            if let Err(e) = self.setattr(
                ino,
                &SetAttrReq {
                    size: Some(0),
                    ..Default::default()
                },
            ) {
                let _ = self.release(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    fn handle(&self, fh: u64) -> FsResult<(Arc<OpenFile>, bool)> {
        self.handles
            .lock()
            .get(&fh)
            .map(|h| (h.of.clone(), h.write))
            .ok_or(FsError::BadHandle)
    }

    /// The open file behind a handle (for kernel passthrough).
    pub fn open_file(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        Ok(self.handle(fh)?.0)
    }

    /// The kernel will do this handle's I/O on the content file directly.
    pub fn set_passthrough(&self, fh: u64) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        let mut st = of.state.lock();
        if !st.passthrough {
            st.passthrough = true;
            st.base = backing_now(&of.file)?;
        }
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (of, _) = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0usize;
        while done < buf.len() {
            match of.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(done);
        self.counters.bytes_read.fetch_add(done as u64, Relaxed);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (of, write) = self.handle(fh)?;
        if !write {
            return Err(FsError::BadHandle);
        }
        let mut taken = 0;
        if self.quota.is_some() && !data.is_empty() {
            let size = of.state.lock().size;
            taken = (offset + data.len() as u64).saturating_sub(size);
            self.quota_take(taken)?;
        }
        if let Err(e) = of.file.write_all_at(data, offset) {
            let _ = self.quota_resize(taken, 0);
            return Err(e.into());
        }
        let now = SystemTime::now();
        let mut st = of.state.lock();
        if !data.is_empty() {
            st.size = st.size.max(offset + data.len() as u64);
        }
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        drop(st);
        self.counters
            .bytes_written
            .fetch_add(data.len() as u64, Relaxed);
        Ok(data.len() as u32)
    }

    /// Commit an open file's size and mtime to the catalog, if it changed.
    fn commit(&self, of: &OpenFile) -> FsResult<()> {
        let (size, mtime, ctime) = {
            let mut st = of.state.lock();
            of.sync_from_backing(&mut st);
            if !st.dirty || st.unlinked {
                return Ok(());
            }
            st.dirty = false;
            (st.size, st.mtime, st.ctime)
        };
        if let Err(e) = self.catalog.commit_file(of.ino, size, mtime, ctime) {
            of.state.lock().dirty = true;
            return Err(e.into());
        }
        // The cached record becomes what was committed (no reload).
        self.attrs.edit(of.ino, |r| {
            let r = Arc::make_mut(r);
            r.size = size;
            r.mtime = mtime;
            r.ctime = ctime;
            true
        });
        match of.file.metadata() {
            Ok(m) => self.sizes.put(
                of.ino,
                (m.len(), std::os::unix::fs::MetadataExt::blocks(&m)),
            ),
            Err(_) => self.sizes.pop([&of.ino]),
        }
        Ok(())
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        self.commit(&of)
    }

    /// `fsync`: the content file's data, then the catalog commit, then the
    /// catalog's WAL, in that order.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        if datasync {
            of.file.sync_data()?;
        } else {
            of.file.sync_all()?;
        }
        self.commit(&of)?;
        self.catalog.sync()?;
        Ok(())
    }

    pub fn fsyncdir(&self) -> FsResult<()> {
        Ok(self.catalog.sync()?)
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.handles.lock().remove(&fh).ok_or(FsError::BadHandle)?;
        let of = h.of;
        let res = self.commit(&of);
        let last = {
            let mut st = of.state.lock();
            st.handles = st.handles.saturating_sub(1);
            st.handles == 0
        };
        if last {
            let mut open = self.open.lock();
            // A new open may have raced in; only drop the entry if still idle.
            let idle = open
                .get(&of.ino)
                .is_some_and(|o| Arc::ptr_eq(o, &of) && o.state.lock().handles == 0);
            if idle {
                open.remove(&of.ino);
                let writers = open.values().any(|o| o.writable);
                drop(open);
                if let (Some(q), false) = (&self.quota, writers) {
                    q.resync(self.catalog.as_ref());
                }
                if of.state.lock().unlinked {
                    self.purge(of.ino)?;
                }
            }
        }
        res
    }

    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let (of, write) = self.handle(fh)?;
        if !write {
            return Err(FsError::BadHandle);
        }
        let before = of.state.lock().size;
        let grows = mode & libc::FALLOC_FL_KEEP_SIZE == 0;
        let taken = if grows {
            (offset + length).saturating_sub(before)
        } else {
            0
        };
        self.quota_take(taken)?;
        let r = unsafe { libc::fallocate(of.file.as_raw_fd(), mode, offset as i64, length as i64) };
        if r != 0 {
            let e = io::Error::last_os_error();
            let _ = self.quota_resize(taken, 0);
            return Err(e.into());
        }
        let real = of.file.metadata()?.len();
        let now = SystemTime::now();
        let mut st = of.state.lock();
        st.size = real;
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        Ok(())
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        let (of, _) = self.handle(fh)?;
        let r = unsafe { libc::lseek(of.file.as_raw_fd(), offset, whence) };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(r)
    }

    /// Commit every open file (SIGTERM, unmount).
    pub fn flush_all(&self) -> FsResult<()> {
        let open: Vec<Arc<OpenFile>> = self.open.lock().values().cloned().collect();
        let mut first_err = None;
        for of in open {
            let r = of
                .file
                .sync_data()
                .map_err(FsError::from)
                .and_then(|_| self.commit(&of));
            if let Err(e) = r {
                tracing::error!(ino = of.ino, path = %of.path.display(), "flush at shutdown failed: {e}");
                first_err.get_or_insert(e);
            }
        }
        self.flush_size_fixes()?;
        self.catalog.sync()?;
        first_err.map_or(Ok(()), Err)
    }

    // ------------------------------------------------------------ xattrs

    fn check_xattr_name(name: &OsStr) -> FsResult<&str> {
        let n = name.to_str().ok_or(FsError::BadName)?;
        if n.is_empty() || n.len() > 255 {
            return Err(FsError::Range);
        }
        if n.starts_with("system.posix_acl") {
            return Err(FsError::NotSupported("POSIX ACLs"));
        }
        Ok(n)
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        let n = Self::check_xattr_name(name)?;
        if ino == ROOT_INO && n == STATS_XATTR {
            return serde_json::to_vec(&self.stats()).map_err(|e| FsError::Io(io::Error::other(e)));
        }
        self.record(ino)?;
        Ok(self.catalog.get_xattr(ino, n)?)
    }

    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.record(ino)?;
        let mut out = Vec::new();
        for n in self.catalog.list_xattrs(ino)? {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        let n = Self::check_xattr_name(name)?;
        // macOS: Finder info is exactly 32 bytes.
        if n.ends_with("com.apple.FinderInfo") && value.len() != 32 {
            return Err(FsError::Range);
        }
        if ino == UNFILED_INO {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        self.record(ino)?;
        self.catalog
            .set_xattr(ino, n, value, flags, SystemTime::now())?;
        self.changed(&[], &[ino]);
        Ok(())
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> FsResult<()> {
        let n = Self::check_xattr_name(name)?;
        self.catalog.remove_xattr(ino, n, SystemTime::now())?;
        self.changed(&[], &[ino]);
        Ok(())
    }

    // ------------------------------------------------------------ misc

    /// Space as `df` shows it: the content disk's, or with a quota, the
    /// quota's (no more free than the disk has), as NAS shares report theirs.
    pub fn statfs(&self) -> FsResult<SpaceInfo> {
        let mut space = self.store.space()?;
        if let Some(q) = &self.quota {
            let bs = u64::from(space.frsize.max(1));
            let used = q.used(self.catalog.as_ref())?;
            let free = q.limit().saturating_sub(used) / bs;
            space.blocks = q.limit() / bs;
            space.bfree = space.bfree.min(free);
            space.bavail = space.bavail.min(free);
        }
        Ok(space)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Relaxed);
        let (a, d, p) = (&self.attrs, &self.dirs, &self.paths);
        let hits = a.hits() + d.hits() + p.hits();
        let all = hits + a.misses() + d.misses() + p.misses();
        Stats {
            attr_hits: a.hits(),
            attr_misses: a.misses(),
            dir_hits: d.hits(),
            dir_misses: d.misses(),
            path_hits: p.hits(),
            path_misses: p.misses(),
            cache_hit_rate: if all == 0 {
                0.0
            } else {
                hits as f64 / all as f64
            },
            bytes_read: g(&c.bytes_read),
            bytes_written: g(&c.bytes_written),
            opens: g(&c.opens),
            open_files: self.open.lock().len() as u64,
        }
    }
}

fn file_writable(f: &File) -> bool {
    let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    fl >= 0 && (fl & libc::O_ACCMODE) != libc::O_RDONLY
}
