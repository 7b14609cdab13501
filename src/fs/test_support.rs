//! A core over a fresh, empty library in a temporary directory, for the unit
//! tests beside each part of the core (no FUSE in the loop: the point of
//! keeping the core free of FUSE types).

use std::ffi::OsStr;
use std::sync::Arc;

use super::flags::OpenFlags;
use super::{Attr, Caller, FsConfig, MarkBaseFs};
use crate::catalog::sqlite::{OpenOptions, SqliteCatalog};
use crate::catalog::{Ino, ROOT_INO};
use crate::store::ContentStore;

pub(super) const ME: Caller = Caller { uid: 0, gid: 0 };

/// A core and the directory that holds its catalog and content.
pub(super) struct TestFs {
    pub fs: MarkBaseFs,
    dir: tempfile::TempDir,
}

impl TestFs {
    pub fn new() -> TestFs {
        Self::with(FsConfig::default())
    }

    pub fn with(cfg: FsConfig) -> TestFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = OpenOptions {
            uid: 0,
            gid: 0,
            create: true,
        };
        let cat = SqliteCatalog::open(&dir.path().join("u.sqlite"), &opts).expect("catalog");
        let store = ContentStore::new(&dir.path().join("content"), &[]).expect("store");
        TestFs {
            fs: MarkBaseFs::new(Arc::new(cat), store, cfg),
            dir,
        }
    }

    pub fn mkdir(&self, parent: Ino, name: &str) -> Attr {
        self.fs
            .mkdir(parent, OsStr::new(name), 0o755, 0, ME)
            .expect("mkdir")
    }

    /// A file in the root holding `data`, closed again.
    pub fn file(&self, name: &str, data: &[u8]) -> Attr {
        let (a, fh) = self
            .fs
            .create(ROOT_INO, OsStr::new(name), 0o644, 0, OpenFlags::WRITE, ME)
            .expect("create");
        self.fs.write(fh, 0, data).expect("write");
        self.fs.release(fh).expect("release");
        a
    }

    /// The catalog's SQLite file.
    pub fn catalog_path(&self) -> std::path::PathBuf {
        self.dir.path().join("u.sqlite")
    }

    /// The names in a folder, sorted.
    pub fn names(&self, dir: Ino) -> Vec<String> {
        let mut v: Vec<String> = self
            .fs
            .listing(dir)
            .expect("listing")
            .entries
            .iter()
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v
    }
}

/// The errno of a result (0 for success).
pub(super) fn errno<T>(r: super::FsResult<T>) -> i32 {
    r.map_or_else(|e| e.errno(), |_| 0)
}
