//! The NFS driver: the same operations sent by a real NFSv3 client
//! (`nfs3_client`) over TCP to the built-in server, started in this process
//! on a fresh library; paths are walked by LOOKUP as an NFS client walks
//! them. NFS has no open: "open, unlink, read" is a READ that leases the
//! file, REMOVE, then a READ through the same handle; a listing "held
//! across an edit" is the folder read in full before the edit.

use std::cell::RefCell;
use std::sync::Arc;

use markbase::fs::Caller;
use markbase::nfs::{AllowList, ServeOptions, Stopper};
use nfs3_client::nfs3_types::nfs3::{ftype3, nfs_fh3, nfsstat3, sattr3, stable_how, Nfs3Option};

use super::common::nfs::Client;
use super::driver::{fresh_core, Driver};
use super::ops::{Op, P, R};
use super::Tree;

/// The errno a local caller would have seen for an NFS status.
fn errno(s: nfsstat3) -> i32 {
    use nfsstat3::*;
    match s {
        NFS3ERR_PERM => libc::EPERM,
        NFS3ERR_NOENT => libc::ENOENT,
        NFS3ERR_ACCES => libc::EACCES,
        NFS3ERR_EXIST => libc::EEXIST,
        NFS3ERR_XDEV => libc::EXDEV,
        NFS3ERR_NOTDIR => libc::ENOTDIR,
        NFS3ERR_ISDIR => libc::EISDIR,
        NFS3ERR_INVAL => libc::EINVAL,
        NFS3ERR_FBIG => libc::EFBIG,
        NFS3ERR_NOSPC => libc::ENOSPC,
        NFS3ERR_MLINK => libc::EMLINK,
        NFS3ERR_NAMETOOLONG => libc::ENAMETOOLONG,
        NFS3ERR_NOTEMPTY => libc::ENOTEMPTY,
        NFS3ERR_STALE => libc::ESTALE,
        NFS3ERR_NOTSUPP => libc::EOPNOTSUPP,
        _ => libc::EIO,
    }
}

/// One client call on `$d`'s connection, its NFS status as an errno.
macro_rules! call {
    ($d:expr, |$c:ident| $e:expr) => {{
        let mut guard = $d.client.borrow_mut();
        let $c = &mut *guard;
        $d.rt.block_on($e).map_err(errno)
    }};
}

/// A server on a fresh library, and one client connected to it.
pub struct NfsDriver {
    rt: tokio::runtime::Runtime,
    client: RefCell<Client>,
    stopper: Stopper,
    server: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Drop for NfsDriver {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

impl NfsDriver {
    pub fn new() -> NfsDriver {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = Arc::new(fresh_core(tmp.path()));
        let stopper = Stopper::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = stopper.clone();
        let server = std::thread::spawn(move || {
            let opts = ServeOptions {
                listen: "127.0.0.1:0".parse().expect("addr"),
                allow: AllowList::loopback(),
                metrics: None,
            };
            let owner = Caller { uid: 0, gid: 0 };
            markbase::nfs::serve(fs, owner, &opts, &stop, |addr| {
                let _ = tx.send(addr);
            })
            .expect("serve");
        });
        let addr = rx.recv().expect("the server started");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(Client::connect(addr)).expect("connect");
        NfsDriver {
            rt,
            client: RefCell::new(client),
            stopper,
            server: Some(server),
            _tmp: tmp,
        }
    }

    fn resolve(&self, p: &[String]) -> Result<nfs_fh3, i32> {
        let mut fh = self.client.borrow().root.clone();
        for name in p {
            fh = call!(self, |c| c.lookup(&fh, name))?;
        }
        Ok(fh)
    }

    fn parent<'a>(&self, p: &'a P) -> Result<(nfs_fh3, &'a str), i32> {
        let (last, init) = p.split_last().expect("non-empty path");
        let dir = self.resolve(init)?;
        let kind = call!(self, |c| c.getattr(&dir))?.type_;
        if kind != ftype3::NF3DIR {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, last.as_str()))
    }

    fn set(&self, p: &P, s: sattr3) -> R {
        let fh = self.resolve(p)?;
        call!(self, |c| c.setattr(&fh, s))?;
        Ok(None)
    }

    fn names(&self, dir: &nfs_fh3) -> Result<Vec<String>, i32> {
        call!(self, |c| c.names(dir))
    }

    fn tree_of(&self, fh: &nfs_fh3) -> Tree {
        let a = call!(self, |c| c.getattr(fh)).expect("getattr");
        let perm = (a.mode & 0o7777) as u16;
        match a.type_ {
            ftype3::NF3DIR => {
                let mut entries = std::collections::BTreeMap::new();
                for n in self.names(fh).expect("readdir") {
                    let child = call!(self, |c| c.lookup(fh, &n)).expect("lookup");
                    entries.insert(n, self.tree_of(&child));
                }
                Tree::Dir { perm, entries }
            }
            ftype3::NF3LNK => {
                let t = call!(self, |c| c.readlink(fh)).expect("readlink");
                Tree::Symlink(String::from_utf8(t).expect("UTF-8 target"))
            }
            _ => {
                let data = call!(self, |c| c.read_all(fh)).expect("read");
                assert_eq!(a.size as usize, data.len(), "size of {fh:?}");
                Tree::File {
                    perm,
                    nlink: a.nlink,
                    data,
                }
            }
        }
    }
}

impl Driver for NfsDriver {
    fn apply(&self, op: &Op) -> R {
        match op {
            Op::Mkdir(p) => {
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.mkdir(&d, n))?;
                Ok(None)
            }
            Op::Create(p) => {
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.create(&d, n, 0o644))?;
                Ok(None)
            }
            Op::Symlink(p, t) => {
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.symlink(&d, n, t))?;
                Ok(None)
            }
            Op::Write(p, off, len, b) => {
                let fh = self.resolve(p)?;
                let data = vec![*b; *len];
                call!(self, |c| c.write(&fh, *off, &data, stable_how::UNSTABLE))?;
                Ok(None)
            }
            Op::Truncate(p, s) => self.set(
                p,
                sattr3 {
                    size: Nfs3Option::Some(*s),
                    ..Default::default()
                },
            ),
            Op::Chmod(p, m) => self.set(
                p,
                sattr3 {
                    mode: Nfs3Option::Some(u32::from(*m)),
                    ..Default::default()
                },
            ),
            Op::Read(p) => {
                let fh = self.resolve(p)?;
                let (d, _) = call!(self, |c| c.read(&fh, 0, 4096))?;
                Ok(Some(d))
            }
            Op::Readlink(p) => {
                let fh = self.resolve(p)?;
                Ok(Some(call!(self, |c| c.readlink(&fh))?))
            }
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.remove(&d, n))?;
                Ok(None)
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.rmdir(&d, n))?;
                Ok(None)
            }
            Op::OpenUnlinkRead(p) => {
                let fh = self.resolve(p)?;
                // A READ is NFS's open: it leases the file.
                call!(self, |c| c.read(&fh, 0, 0))?;
                let (d, n) = self.parent(p)?;
                call!(self, |c| c.remove(&d, n))?;
                let (data, _) = call!(self, |c| c.read(&fh, 0, 4096))?;
                Ok(Some(data))
            }
            Op::ListAcrossEdit(d, name) => {
                let dir = self.resolve(d)?;
                let mut names = self.names(&dir)?;
                let _ = call!(self, |c| c.mkdir(&dir, name));
                names.sort_unstable();
                Ok(Some(names.join("/").into_bytes()))
            }
            Op::Link(a, b) => {
                let src = self.resolve(a)?;
                let (d, n) = self.parent(b)?;
                call!(self, |c| c.link(&src, &d, n))?;
                Ok(None)
            }
            Op::Rename(a, b) => {
                let (da, na) = self.parent(a)?;
                let (db, nb) = self.parent(b)?;
                call!(self, |c| c.rename(&da, na, &db, nb))?;
                Ok(None)
            }
        }
    }

    fn tree(&self) -> Tree {
        let root = self.client.borrow().root.clone();
        self.tree_of(&root)
    }
}
