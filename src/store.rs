//! The content store: where file bytes live, and which paths a mount may touch.
//!
//! Files written through the mount live under `<data-dir>/content/<user>/`,
//! two-level fanned out by name (`ab/abcdef...`). Files the catalog already
//! knows live wherever their `file_locations` say, but a mount only ever
//! opens a location that is inside the user's allowed roots (the content
//! store and the user's media roots), absolute, free of `.`/`..`, and reached
//! through no symlink (checked by canonicalising it); anything else counts as
//! missing and is never opened. The store deletes only files inside its own
//! root: unlinking a catalog file whose bytes sit in a media root removes the
//! catalog entry, not the media file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

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
    fans: std::sync::Mutex<std::collections::HashSet<String>>,
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
            root,
            allowed,
            fans: Default::default(),
        })
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
        candidates.into_iter().find_map(|p| {
            if !self.is_allowed(p) {
                return None;
            }
            match p.canonicalize() {
                Ok(c) if c == p && c.is_file() => Some(c),
                _ => None,
            }
        })
    }

    /// Does the store own `p` (so that it may delete it)?
    pub fn owns(&self, p: &Path) -> bool {
        self.is_allowed(p) && p.starts_with(&self.root)
    }

    /// Make a new, empty content file for node `id`.
    pub fn create(&self, id: &str) -> Result<(PathBuf, File), StoreError> {
        let fan = id.get(..2).unwrap_or("00");
        let dir = self.root.join(fan);
        let known = self.fans.lock().map(|f| f.contains(fan)).unwrap_or(false);
        if !known {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            if let Ok(mut f) = self.fans.lock() {
                f.insert(fan.to_string());
            }
        }
        let path = dir.join(id);
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
        Ok((path, f))
    }

    /// Open a resolved content file, read-write when possible.
    pub fn open(&self, p: &Path, write: bool) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        match o.clone().write(true).open(p) {
            Ok(f) => Ok(f),
            Err(e) if write => Err(e),
            Err(_) => o.open(p),
        }
    }

    /// Delete a content file if the store owns it.
    pub fn remove(&self, p: &Path) -> io::Result<()> {
        if self.owns(p) {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let dotdot = media.join("../other/b.mov");
        assert!(store.resolve([dotdot.as_path()]).is_none(), "with ..");
        assert!(store.resolve([Path::new("relative.mov")]).is_none());
        assert!(!store.owns(&media.join("a.mov")));
        let (p, _) = store.create("abcdef").unwrap();
        assert!(store.owns(&p));
    }
}
