//! Where a user's library lives in a data directory, and making new ones.
//!
//! `<data-dir>/users/<user>.sqlite` is the catalog, `<data-dir>/content/<user>/`
//! the content store, `<data-dir>/media/<user>/` the default media root.
//! `create` writes a v1 catalog exactly as the rest of MarkBase would (the
//! mount adds its own tables when it first opens it); `--demo` fills it with a
//! small media tree whose bytes are a known function of the file and offset.

use std::path::{Path, PathBuf};

use crate::catalog::sqlite::V1Writer;
use crate::catalog::CatalogError;

/// Paths of one user's library.
#[derive(Clone, Debug)]
pub struct Library {
    pub user: String,
    pub data_dir: PathBuf,
}

/// Errors making or finding a library.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "user name {0:?} is not allowed (letters, digits, '-', '_', '.'; not starting with '.')"
    )]
    BadUser(String),
    #[error("{0}: a catalog already exists")]
    Exists(PathBuf),
    #[error("{0}: no catalog for this user (make one with `markbase library create --user NAME`)")]
    NoCatalog(PathBuf),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Library {
    pub fn new(data_dir: &Path, user: &str) -> Result<Library, LibraryError> {
        let ok = !user.is_empty()
            && !user.starts_with('.')
            && user.len() <= 64
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(LibraryError::BadUser(user.to_string()));
        }
        Ok(Library {
            user: user.to_string(),
            data_dir: data_dir.to_path_buf(),
        })
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.data_dir
            .join("users")
            .join(format!("{}.sqlite", self.user))
    }

    pub fn content_dir(&self) -> PathBuf {
        self.data_dir.join("content").join(&self.user)
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media").join(&self.user)
    }

    /// Where repair puts content files that no catalog row points at.
    pub fn lost_found_dir(&self) -> PathBuf {
        self.data_dir.join("lost+found").join(&self.user)
    }

    /// The folder of this user's daemon logs: `<data-dir>/logs/<user>/`
    /// (on a Mac `~/Library/Logs/MarkBase/<user>/`, where Console finds
    /// them). The daemon writes `markbase.YYYY-MM-DD.log` there, a file a
    /// day, and keeps the last few (`MARKBASE_LOG_KEEP`, 14 by default).
    pub fn log_dir(&self) -> PathBuf {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let dir = match home {
            Some(h) if cfg!(target_os = "macos") => crate::platform::macos::log_dir(&h),
            _ => self.data_dir.join("logs"),
        };
        dir.join(&self.user)
    }

    /// The folder this process logs in, taken for its lifetime: `dir`
    /// itself, or when another live process on the same library logs there
    /// (a mount and an NFS server, two mounts), `dir/2`, `dir/3`, ...: the
    /// first whose lock file (`.markbase.lock`, an `flock` the kernel
    /// releases when the process dies) is free. So two processes never write
    /// one file, and each folder's pruning of old days sees one process's
    /// files. The folders are reused, one per process running at once.
    pub fn claim_log_dir(dir: &Path) -> std::io::Result<PathBuf> {
        for n in 1..=64u32 {
            let d = if n == 1 {
                dir.to_path_buf()
            } else {
                dir.join(n.to_string())
            };
            std::fs::create_dir_all(&d)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(d.join(".markbase.lock"))?;
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    // Held until the process ends.
                    std::mem::forget(lock);
                    return Ok(d);
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(e.into()),
            }
        }
        Err(std::io::Error::other(format!(
            "{}: 64 processes log here already",
            dir.display()
        )))
    }

    /// Where the daemon's standard error goes (what is printed before
    /// logging starts, and panics): `stderr.log` in [`Library::log_dir`].
    pub fn log_path(&self) -> PathBuf {
        self.log_dir().join("stderr.log")
    }

    /// The catalog, which must exist.
    pub fn existing_catalog(&self) -> Result<PathBuf, LibraryError> {
        let p = self.catalog_path();
        if p.exists() {
            Ok(p)
        } else {
            Err(LibraryError::NoCatalog(p))
        }
    }

    /// Make a new, empty v1 catalog (and with `demo`, a small media tree).
    pub fn create(&self, demo: bool) -> Result<usize, LibraryError> {
        let p = self.catalog_path();
        if p.exists() {
            return Err(LibraryError::Exists(p));
        }
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
        std::fs::create_dir_all(self.content_dir())?;
        std::fs::create_dir_all(self.media_dir())?;
        let cat = V1Writer::create(&p)?;
        if !demo {
            cat.commit()?;
            return Ok(0);
        }
        let mut n = 0usize;
        let mut add = |parent: Option<&str>,
                       label: &str,
                       folder: bool,
                       size: u64|
         -> Result<String, LibraryError> {
            let id = cat.add_node(parent, label, folder, size)?;
            if !folder {
                let ext = Path::new(label)
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("bin");
                let path = self.media_dir().join(&id[..2]).join(format!("{id}.{ext}"));
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                std::fs::write(&path, demo_bytes(&id, size))?;
                cat.add_location(&id, &path, "Media")?;
            }
            n += 1;
            Ok(id)
        };
        let projects = add(None, "Projects", true, 0)?;
        add(None, "Inbox", true, 0)?;
        let year = add(Some(&projects), "2025 Demo", true, 0)?;
        for job in ["Demo Spot 01", "Demo Launch 02"] {
            let j = add(Some(&year), job, true, 0)?;
            for (kind, ext, count, size) in [
                ("Footage", "mov", 6, 1 << 20),
                ("Audio", "wav", 3, 256 << 10),
                ("Exports", "mp4", 2, 512 << 10),
            ] {
                let k = add(Some(&j), kind, true, 0)?;
                for i in 1..=count {
                    add(Some(&k), &format!("A{:03}_C{i:03}.{ext}", i), false, size)?;
                }
            }
        }
        cat.commit()?;
        Ok(n)
    }
}

/// Deterministic demo content: byte `o` of file `id`.
pub fn demo_bytes(id: &str, size: u64) -> Vec<u8> {
    let seed = id
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    (0..size)
        .map(|o| ((o.wrapping_mul(2654435761) ^ seed) >> 7) as u8)
        .collect()
}
