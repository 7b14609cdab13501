//! Drivers: what runs the operations for real. The model test is written
//! against [`Driver`], so the same generators and reference model check
//! every front end: the file system core called directly today, a real NFS
//! client against the built-in server next.

use std::ffi::OsStr;
use std::sync::Arc;

use markbase::catalog::sqlite::{OpenOptions, SqliteCatalog};
use markbase::catalog::{Ino, Kind, ROOT_INO};
use markbase::fs::flags::{OpenFlags, RenameMode};
use markbase::fs::{Caller, FsConfig, FsError, MarkBaseFs, SetAttrReq};
use markbase::store::ContentStore;

use super::ops::{Op, P, R};
use super::Tree;

/// Something that runs operations on a file system and shows its tree.
pub trait Driver {
    fn apply(&self, op: &Op) -> R;
    fn tree(&self) -> Tree;
}

const ME: Caller = Caller { uid: 0, gid: 0 };

/// The file system core, called directly over a real SQLite catalog and
/// content store in a temporary directory; paths are walked as the kernel
/// walks them for FUSE (lookup by lookup, a parent must be a folder).
pub struct CoreDriver {
    _tmp: tempfile::TempDir,
    pub fs: MarkBaseFs,
}

fn errno(e: FsError) -> i32 {
    e.errno()
}

/// A core over a new, empty catalog and content store in `dir`.
pub fn fresh_core(dir: &std::path::Path) -> MarkBaseFs {
    let opts = OpenOptions {
        uid: 0,
        gid: 0,
        create: true,
    };
    let cat = SqliteCatalog::open(&dir.join("u.sqlite"), &opts).expect("catalog");
    let store = ContentStore::new(&dir.join("content"), &[]).expect("store");
    MarkBaseFs::new(Arc::new(cat), store, FsConfig::default())
}

impl CoreDriver {
    pub fn new() -> CoreDriver {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = fresh_core(tmp.path());
        CoreDriver { _tmp: tmp, fs }
    }

    fn resolve(&self, p: &[String]) -> Result<Ino, i32> {
        let mut ino = ROOT_INO;
        for c in p {
            ino = self.fs.lookup(ino, OsStr::new(c)).map_err(errno)?.ino;
        }
        Ok(ino)
    }

    fn parent<'a>(&self, p: &'a P) -> Result<(Ino, &'a OsStr), i32> {
        let (last, init) = p.split_last().expect("non-empty path");
        let dir = self.resolve(init)?;
        // The kernel's path walk: a parent must be a directory.
        if self.fs.getattr(dir).map_err(errno)?.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, OsStr::new(last.as_str())))
    }

    fn with_file<T>(
        &self,
        p: &P,
        flags: OpenFlags,
        f: impl FnOnce(u64) -> Result<T, i32>,
    ) -> Result<T, i32> {
        let ino = self.resolve(p)?;
        let fh = self.fs.open(ino, flags).map_err(errno)?;
        let r = f(fh);
        self.fs.release(fh).map_err(errno)?;
        r
    }

    fn set(&self, p: &P, req: SetAttrReq) -> R {
        let ino = self.resolve(p)?;
        self.fs.setattr(ino, &req).map_err(errno)?;
        Ok(None)
    }

    fn tree_of(&self, ino: Ino) -> Tree {
        let a = self.fs.getattr(ino).expect("getattr");
        match a.kind {
            Kind::Dir => {
                let l = self.fs.listing(ino).expect("listing");
                Tree::Dir {
                    perm: a.perm,
                    entries: l
                        .entries
                        .iter()
                        .map(|e| (e.name.clone(), self.tree_of(e.ino)))
                        .collect(),
                }
            }
            Kind::Symlink => {
                let t = self.fs.readlink(ino).expect("readlink");
                Tree::Symlink(String::from_utf8(t).expect("UTF-8 target"))
            }
            _ => {
                let fh = self.fs.open(ino, OpenFlags::READ).expect("open");
                let d = self.fs.read(fh, 0, 1 << 20).expect("read");
                self.fs.release(fh).expect("release");
                assert_eq!(a.size as usize, d.len(), "size of inode {ino}");
                Tree::File {
                    perm: a.perm,
                    nlink: a.nlink,
                    data: d,
                }
            }
        }
    }
}

impl Driver for CoreDriver {
    fn apply(&self, op: &Op) -> R {
        match op {
            Op::Mkdir(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.mkdir(d, n, 0o755, 0, ME).map_err(errno)?;
                Ok(None)
            }
            Op::Create(p) => {
                let (d, n) = self.parent(p)?;
                let (_, fh) = self
                    .fs
                    .create(d, n, 0o644, 0, OpenFlags::WRITE, ME)
                    .map_err(errno)?;
                self.fs.release(fh).map_err(errno)?;
                Ok(None)
            }
            Op::Symlink(p, t) => {
                let (d, n) = self.parent(p)?;
                self.fs.symlink(d, n, t.as_bytes(), ME).map_err(errno)?;
                Ok(None)
            }
            Op::Write(p, off, len, b) => self.with_file(p, OpenFlags::WRITE, |fh| {
                self.fs.write(fh, *off, &vec![*b; *len]).map_err(errno)?;
                Ok(None)
            }),
            Op::Truncate(p, s) => self.set(
                p,
                SetAttrReq {
                    size: Some(*s),
                    ..Default::default()
                },
            ),
            Op::Chmod(p, m) => self.set(
                p,
                SetAttrReq {
                    mode: Some(u32::from(*m)),
                    ..Default::default()
                },
            ),
            Op::Read(p) => self.with_file(p, OpenFlags::READ, |fh| {
                Ok(Some(self.fs.read(fh, 0, 4096).map_err(errno)?))
            }),
            Op::Readlink(p) => {
                let ino = self.resolve(p)?;
                Ok(Some(self.fs.readlink(ino).map_err(errno)?))
            }
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.unlink(d, n).map_err(errno)?;
                Ok(None)
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.rmdir(d, n).map_err(errno)?;
                Ok(None)
            }
            Op::OpenUnlinkRead(p) => self.with_file(p, OpenFlags::READ, |fh| {
                let (d, n) = self.parent(p)?;
                self.fs.unlink(d, n).map_err(errno)?;
                Ok(Some(self.fs.read(fh, 0, 4096).map_err(errno)?))
            }),
            Op::ListAcrossEdit(d, name) => {
                let ino = self.resolve(d)?;
                let fh = self.fs.opendir(ino).map_err(errno)?;
                let _ = self.fs.mkdir(ino, OsStr::new(name.as_str()), 0o755, 0, ME);
                let h = self.fs.dir_handle(fh).map_err(errno)?;
                let mut names: Vec<&str> = h.entries_from(2).map(|e| e.name.as_str()).collect();
                names.sort_unstable();
                let listed = names.join("/").into_bytes();
                self.fs.releasedir(fh);
                Ok(Some(listed))
            }
            Op::Link(a, b) => {
                let src = self.resolve(a)?;
                let (d, n) = self.parent(b)?;
                self.fs.link(src, d, n).map_err(errno)?;
                Ok(None)
            }
            Op::Rename(a, b) => {
                let (da, na) = self.parent(a)?;
                let (db, nb) = self.parent(b)?;
                self.fs
                    .rename(da, na, db, nb, RenameMode::Replace)
                    .map_err(errno)?;
                Ok(None)
            }
        }
    }

    fn tree(&self) -> Tree {
        self.tree_of(ROOT_INO)
    }
}
