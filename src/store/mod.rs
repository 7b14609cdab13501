//! The content store: where file bytes live, and which paths a mount may touch.
//!
//! Files written through the mount live under `<data-dir>/content/<user>/`,
//! two-level fanned out by name (`ab/abcdef...`). Files the catalog already
//! knows live wherever their `file_locations` say, but a mount only ever
//! opens a location that is inside the user's allowed roots (the content
//! store and the user's media roots), absolute, free of `.`/`..`, and reached
//! through no symlink (its folder checked by canonicalising it, remembered
//! for [`CHECKED_FOLDER_TTL`], and the file itself by `lstat`); anything else
//! counts as missing and is never opened. The store deletes only files inside its own
//! root: unlinking a catalog file whose bytes sit in a media root removes the
//! catalog entry, not the media file.
//!
//! Making and freeing inodes is the expensive part of small-file churn on
//! ext4 (without a journal it scans past every inode freed in the last half
//! minute: creates fall from ~44,000/s to ~4,000/s right after deletes). So
//! the store keeps a pool of empty content files in `<root>/.pool/`: a
//! deleted content file is truncated to zero and parked there, and a new one
//! is a rename out of the pool (about 60,000/s whatever came before). The pool
//! holds at most [`POOL_MAX`] files; a background thread tops it up to
//! [`POOL_LOW`] so that a burst of creates rarely allocates on the request
//! path. Pool files are empty, unreferenced by any row, and not content: fsck
//! and the recovery pass ignore them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::sync::unchecked::{Condvar, Mutex, MutexGuard};

pub mod content;

pub use content::{ContentFile, Extent};

/// Most empty files the pool keeps.
pub const POOL_MAX: usize = 16_384;
/// Content files this big are deleted on the request path, not in the
/// background (their space is wanted back at once).
const DISCARD_NOW: u64 = 1 << 20;
/// The refill thread keeps at least this many ready.
pub const POOL_LOW: usize = 256;

/// How long a media folder found reached through no symlink is trusted
/// without walking it again. Canonicalising a path reads every component
/// (`readlink` each): eight system calls per file of a folder the app wrote,
/// 400,000 for a 50,000-frame folder's first listing, where one walk of the
/// folder serves them all.
pub const CHECKED_FOLDER_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Folders remembered at most (the table is emptied when full).
const CHECKED_FOLDERS: usize = 4_096;

/// Empty content files ready for reuse (names are numbers).
#[derive(Debug)]
struct Pool {
    dir: PathBuf,
    free: Mutex<Option<Vec<u64>>>,
    wake: Condvar,
    next: AtomicU64,
    /// Content files deleted from the catalog, for the pool's thread to
    /// empty and park (or delete).
    trash: Mutex<Vec<PathBuf>>,
    /// The pool's thread runs (else the trash is emptied at once).
    running: std::sync::atomic::AtomicBool,
    /// Held while the trash is being emptied: the last emptying (at unmount,
    /// at a server's stop) waits for the pool thread's, so that no file
    /// taken from the trash is still there when the catalog's notes of them
    /// are cleared and the process ends.
    emptying: Mutex<()>,
}

impl Pool {
    /// The free list, read from disk on first use.
    fn list<'a>(&self, g: &'a mut Option<Vec<u64>>) -> &'a mut Vec<u64> {
        g.get_or_insert_with(|| {
            let _ = std::fs::create_dir_all(&self.dir);
            let mut v: Vec<u64> = std::fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            v.sort_unstable();
            let top = v.last().map_or(0, |n| n + 1);
            self.next.fetch_max(top, Relaxed);
            v
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<u64>>> {
        self.free.lock()
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// Park a content file the store owns in the pool, empty; false if the
    /// pool is full (then the caller deletes it).
    fn park(&self, p: &Path) -> bool {
        let n = {
            if self.list(&mut self.lock()).len() >= POOL_MAX {
                return false;
            }
            self.next.fetch_add(1, Relaxed)
        };
        // An empty file (most small-file churn) needs no truncation.
        let empty = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0);
        let emptied = empty
            || OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p)
                .and_then(|f| f.set_len(0))
                .is_ok();
        if !emptied {
            return false;
        }
        if std::fs::rename(p, self.path(n)).is_err() {
            return false;
        }
        self.list(&mut self.lock()).push(n);
        true
    }

    /// Park `p` (a content file the store owns) or delete it.
    fn delete(&self, p: &Path) -> io::Result<()> {
        if self.park(p) {
            return Ok(());
        }
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Delete what [`ContentStore::discard`] left here.
    fn empty_trash(&self) {
        let _emptying = self.emptying.lock();
        let trash = std::mem::take(&mut *self.trash.lock());
        for p in trash {
            if let Err(e) = self.delete(&p) {
                tracing::warn!("{}: {e}", p.display());
            }
        }
    }

    /// Top the pool up to [`POOL_LOW`] (the refill thread's loop body).
    fn refill(&self) {
        let want = POOL_LOW.saturating_sub(self.list(&mut self.lock()).len());
        for _ in 0..want {
            let n = self.next.fetch_add(1, Relaxed);
            let made = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(self.path(n));
            match made {
                Ok(_) => self.list(&mut self.lock()).push(n),
                Err(e) => {
                    tracing::debug!("pool refill: {e}");
                    return;
                }
            }
        }
    }
}

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Free space of the store's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpaceInfo {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub frsize: u32,
}

/// One user's content store and allowed roots.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    allowed: Vec<PathBuf>,
    /// Fan-out folders known to exist (256 at most).
    fans: crate::sync::Mutex<std::collections::HashSet<String>>,
    /// Folders outside the store found allowed and reached through no
    /// symlink, with when ([`CHECKED_FOLDER_TTL`]).
    checked: crate::sync::Mutex<std::collections::HashMap<PathBuf, std::time::Instant>>,
    pool: Arc<Pool>,
}

impl ContentStore {
    /// `root`: the content store (created if missing); `media_roots`: other
    /// places this user's locations may point into (need not exist).
    pub fn new(root: &Path, media_roots: &[PathBuf]) -> Result<ContentStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|source| StoreError::Io {
            path: root.into(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| StoreError::Io {
            path: root.into(),
            source,
        })?;
        let mut allowed = vec![root.clone()];
        for m in media_roots {
            if let Ok(c) = m.canonicalize() {
                allowed.push(c);
            }
        }
        Ok(ContentStore {
            allowed,
            fans: Default::default(),
            checked: Default::default(),
            pool: Arc::new(Pool {
                dir: root.join(".pool"),
                free: Mutex::new(None),
                wake: Condvar::new(),
                next: AtomicU64::new(0),
                trash: Mutex::new(Vec::new()),
                running: Default::default(),
                emptying: Mutex::new(()),
            }),
            root,
        })
    }

    /// Keep the pool topped up in a background thread, for as long as the
    /// store lives.
    pub fn start_pool_refill(&self) {
        let pool = Arc::downgrade(&self.pool);
        let started = std::thread::Builder::new()
            .name("markbase-pool".into())
            .spawn(move || {
                crate::platform::background_priority();
                while let Some(p) = pool.upgrade() {
                    p.empty_trash();
                    p.refill();
                    let mut g = p.lock();
                    if !p.trash.lock().is_empty() {
                        continue;
                    }
                    p.wake.wait_for(&mut g, std::time::Duration::from_secs(5));
                }
            });
        self.pool.running.store(started.is_ok(), Relaxed);
    }

    /// Take an empty file from the pool as `path` (which must not exist).
    fn take_from_pool(&self, path: &Path) -> Option<File> {
        let n = {
            let mut g = self.pool.lock();
            let list = self.pool.list(&mut g);
            let n = list.pop()?;
            if list.len() < POOL_LOW / 4 {
                self.pool.wake.notify_one();
            }
            n
        };
        rename_no_replace(&self.pool.path(n), path).ok()?;
        let ready = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .and_then(|f| {
                let m = f.metadata()?;
                if !m.is_file() || m.len() != 0 {
                    return Err(io::Error::other("pool file is not empty"));
                }
                // A fresh mtime: the recovery pass spares young files (a
                // pool file may have waited there for hours).
                f.set_modified(std::time::SystemTime::now())?;
                Ok(f)
            });
        match ready {
            Ok(f) => Some(f),
            Err(e) => {
                // Not usable: out of the way, so the caller makes a new one.
                tracing::debug!("pool file for {}: {e}", path.display());
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Is `p` a path this mount may open? (Does not check that it exists.)
    pub fn is_allowed(&self, p: &Path) -> bool {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && self.allowed.iter().any(|r| p.starts_with(r))
    }

    /// The first of `candidates` that is allowed, exists as a regular file,
    /// and is reached through no symlink.
    pub fn resolve<'a>(&self, candidates: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
        self.resolve_meta(candidates).map(|(p, _)| p)
    }

    /// [`ContentStore::resolve`], with the file's metadata read on the way
    /// (a listing's first `stat` of a file costs one system call).
    pub fn resolve_meta<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Path>,
    ) -> Option<(PathBuf, std::fs::Metadata)> {
        candidates.into_iter().find_map(|p| {
            if !self.is_allowed(p) {
                return None;
            }
            // A file the store made (`<root>/<fan>/<name>`, a path with no
            // `..`, in folders only the store makes): one lstat, no walk.
            if p.parent().and_then(Path::parent) == Some(self.root.as_path()) {
                return match std::fs::symlink_metadata(p) {
                    Ok(m) if m.is_file() => Some((p.to_path_buf(), m)),
                    _ => None,
                };
            }
            // Elsewhere: the folder reached through no symlink (walked once
            // in a while), the file itself no symlink (its lstat).
            if !self.folder_is_plain(p.parent()?) {
                return None;
            }
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_file() => Some((p.to_path_buf(), m)),
                _ => None,
            }
        })
    }

    /// Is `dir` (absolute, without `.` or `..`) its own canonical path,
    /// as found within the last [`CHECKED_FOLDER_TTL`]?
    fn folder_is_plain(&self, dir: &Path) -> bool {
        let now = std::time::Instant::now();
        if let Some(at) = self.checked.lock().get(dir) {
            if now.duration_since(*at) < CHECKED_FOLDER_TTL {
                return true;
            }
        }
        let plain = dir.canonicalize().is_ok_and(|c| c == dir);
        let mut checked = self.checked.lock();
        if plain {
            if checked.len() >= CHECKED_FOLDERS {
                checked.clear();
            }
            checked.insert(dir.to_path_buf(), now);
        } else {
            checked.remove(dir);
        }
        plain
    }

    /// Does the store own `p` (so that it may delete it)?
    pub fn owns(&self, p: &Path) -> bool {
        self.is_allowed(p) && p.starts_with(&self.root)
    }

    /// Make a new, empty content file for node `id`.
    pub fn create(&self, id: &str) -> Result<(PathBuf, ContentFile), StoreError> {
        let fan = id.get(..2).unwrap_or("00");
        let dir = self.root.join(fan);
        let known = self.fans.lock().contains(fan);
        if !known {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            self.fans.lock().insert(fan.to_string());
        }
        let path = dir.join(id);
        if let Some(f) = self.take_from_pool(&path) {
            return Ok((path, f.into()));
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok((path, f.into()))
    }

    /// Open a resolved content file, read-write when possible.
    pub fn open(&self, p: &Path, write: bool) -> io::Result<ContentFile> {
        let mut o = OpenOptions::new();
        o.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        match o.clone().write(true).open(p) {
            Ok(f) => Ok(f.into()),
            Err(e) if write => Err(e),
            Err(_) => o.open(p).map(ContentFile::from),
        }
    }

    /// Delete a content file if the store owns it, in the background: the
    /// catalog no longer points at it, so nothing else will open it, and a
    /// crash before the pool's thread gets to it leaves a file no row points
    /// at, which the recovery pass at the next mount deletes.
    pub fn discard(&self, p: &Path) -> io::Result<()> {
        if !self.owns(p) {
            return Ok(());
        }
        // A big file's space is freed at once, as a delete on the disk frees
        // it: a user deletes one to make room and writes right after.
        let big = std::fs::symlink_metadata(p).is_ok_and(|m| m.len() >= DISCARD_NOW);
        if big || !self.pool.running.load(Relaxed) {
            return self.remove(p);
        }
        self.pool.trash.lock().push(p.to_path_buf());
        // The pool's thread waits on the free list's lock.
        let _g = self.pool.lock();
        self.pool.wake.notify_one();
        Ok(())
    }

    /// Delete now what [`ContentStore::discard`] left for the pool's thread
    /// (at unmount).
    pub fn empty_trash(&self) {
        self.pool.empty_trash();
    }

    /// Delete a content file if the store owns it.
    pub fn remove(&self, p: &Path) -> io::Result<()> {
        if self.owns(p) {
            return self.pool.delete(p);
        }
        Ok(())
    }

    /// Every content file of the store (`<root>/<fan>/<name>`, the layout
    /// [`ContentStore::create`] makes).
    pub fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let top = match std::fs::read_dir(&self.root) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for fan in top {
            let fan = fan?;
            if fan.file_name().len() != 2 || !fan.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(fan.path())? {
                let f = f?;
                if f.file_type()?.is_file() {
                    out.push(f.path());
                }
            }
        }
        Ok(out)
    }

    /// Space on the store's file system.
    pub fn space(&self) -> io::Result<SpaceInfo> {
        let s = nix::sys::statvfs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(SpaceInfo {
            blocks: s.blocks() as u64,
            bfree: s.blocks_free() as u64,
            bavail: s.blocks_available() as u64,
            files: s.files() as u64,
            ffree: s.files_free() as u64,
            bsize: s.block_size() as u32,
            frsize: s.fragment_size() as u32,
        })
    }
}

/// Rename `from` to `to`, failing (EEXIST) rather than replacing `to`.
#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)?;
    Ok(())
}

/// Rename `from` to `to`, failing (EEXIST) rather than replacing `to`: a
/// hard link (which never replaces), then the old name goes.
#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_files_are_emptied_pooled_and_reused_fresh() {
        let t = tempfile::tempdir().unwrap();
        let store = ContentStore::new(&t.path().join("content"), &[]).unwrap();
        let (p, f) = store.create("aa000000-1").unwrap();
        f.write_at(b"secret bytes", 0).unwrap();
        drop(f);
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p).unwrap());
        store.remove(&p).unwrap();
        assert!(!p.exists());
        assert!(
            store.files().unwrap().is_empty(),
            "pool files are not content"
        );
        let (q, f) = store.create("bb000000-2").unwrap();
        let m = f.as_file().metadata().unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&m),
            ino,
            "the inode was reused"
        );
        assert_eq!(m.len(), 0, "a reused file starts empty");
        assert!(m.modified().unwrap() > old + std::time::Duration::from_secs(1));
        assert_eq!(store.files().unwrap(), vec![q]);
    }

    #[test]
    fn only_allowed_plain_paths_resolve() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("content");
        let media = t.path().join("media");
        let other = t.path().join("other");
        for d in [&media, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let store = ContentStore::new(&root, std::slice::from_ref(&media)).unwrap();
        let media = media.canonicalize().unwrap();
        let other = other.canonicalize().unwrap();
        std::fs::write(media.join("a.mov"), b"x").unwrap();
        std::fs::write(other.join("b.mov"), b"x").unwrap();
        std::os::unix::fs::symlink(other.join("b.mov"), media.join("link.mov")).unwrap();
        assert!(store.resolve([media.join("a.mov").as_path()]).is_some());
        assert!(
            store.resolve([other.join("b.mov").as_path()]).is_none(),
            "outside the roots"
        );
        assert!(
            store.resolve([media.join("link.mov").as_path()]).is_none(),
            "through a symlink"
        );
        // A symlinked folder, asked for after a plain one was checked.
        std::fs::create_dir(media.join("real")).unwrap();
        std::fs::write(media.join("real/c.mov"), b"x").unwrap();
        std::os::unix::fs::symlink(&other, media.join("linked")).unwrap();
        assert!(store
            .resolve([media.join("real/c.mov").as_path()])
            .is_some());
        assert!(
            store
                .resolve([media.join("linked/b.mov").as_path()])
                .is_none(),
            "through a symlinked folder"
        );
        assert!(store
            .resolve([media.join("real/c.mov").as_path()])
            .is_some());
        let dotdot = media.join("../other/b.mov");
        assert!(store.resolve([dotdot.as_path()]).is_none(), "with ..");
        assert!(store.resolve([Path::new("relative.mov")]).is_none());
        assert!(!store.owns(&media.join("a.mov")));
        let (p, _) = store.create("abcdef").unwrap();
        assert!(store.owns(&p));
    }
}
