//! The NFS front end's file system: `nfs3_server`'s traits implemented by
//! calls into the core, one call each, with no file-system rule of its own.
//! Each call runs where its request is handled, with tokio told that it
//! blocks (the core does disk and SQLite I/O), so many requests of one
//! client run at once and none of them stalls the reading of the others.
//!
//! Every request acts as the library's owner (`caller`): AUTH_SYS carries a
//! uid and gids that the client chooses, so they authenticate nothing, and
//! who may connect at all is decided by address (`allow.rs`) before any RPC
//! (SEMANTICS.md, "Who a request acts as").

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use nfs3_server::nfs3_types::nfs3::{
    cookieverf3, createverf3, fattr3, filename3, mknoddata3, nfspath3, nfsstat3, post_op_attr,
    sattr3, stable_how, writeverf3, FSINFO3resok, FSSTAT3resok, ACCESS3_DELETE, ACCESS3_EXECUTE,
    ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ, FSF3_CANSETTIME,
    FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK,
};
use nfs3_server::nfs3_types::rpc::auth_unix;
use nfs3_server::vfs::{
    DirEntry, DirEntryPlus, NextResult, NfsFileSystem, NfsReadFileSystem, ReadDirIterator,
    ReadDirPlusIterator,
};

use super::allow::AllowList;
use super::convert::{fattr, mknod_of, mode_of, setattr_req, status, NfsHandle};
use crate::catalog::{DirEntry as CoreEntry, Ino, Kind, ROOT_INO};
use crate::fs::flags::RenameMode;
use crate::fs::metrics::Op;
use crate::fs::{Attr, Caller, DirPage, FsError, FsResult, MarkBaseFs};

/// Preferred and largest READ and WRITE (FSINFO).
pub const TRANSFER: u32 = 1 << 20;

/// How many entries a READDIRPLUS page fetches attributes for at once.
const ATTR_BATCH: usize = 128;

/// One library served over NFS.
pub struct MarkBaseNfs {
    fs: Arc<MarkBaseFs>,
    library: uuid::Uuid,
    fsid: u64,
    caller: Caller,
    write_verifier: [u8; 8],
    allow: AllowList,
}

impl MarkBaseNfs {
    /// Serve `fs` as `caller` (the library's owner) to the clients `allow`
    /// lets in. The write verifier is new at each start: a client that
    /// wrote UNSTABLE before a restart sees it change at COMMIT and sends
    /// its data again.
    pub fn new(fs: Arc<MarkBaseFs>, caller: Caller, allow: AllowList) -> MarkBaseNfs {
        let library = fs.library_id();
        let b = library.as_bytes();
        let fsid = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        MarkBaseNfs {
            fs,
            library,
            fsid,
            caller,
            write_verifier: *uuid::Uuid::new_v4()
                .as_bytes()
                .first_chunk()
                .unwrap_or(&[1; 8]),
            allow,
        }
    }

    fn ino(&self, h: &NfsHandle) -> Result<Ino, nfsstat3> {
        h.ino_in(self.library)
    }

    fn handle(&self, ino: Ino) -> NfsHandle {
        NfsHandle::new(self.library, ino)
    }

    fn attr(&self, a: &Attr) -> fattr3 {
        fattr(a, self.fsid)
    }

    /// Run `op` on the core (timed and counted as `what`), on this worker thread with tokio told that it
    /// blocks (`block_in_place`: other tasks move to other workers; no copy
    /// of the request's data, no hop to another thread); a failure becomes
    /// its NFS status and a log line (debug for a caller's mistake, warn
    /// for the file system's own trouble).
    async fn run<T>(
        &self,
        what: Op,
        op: impl FnOnce(&MarkBaseFs) -> FsResult<T>,
    ) -> Result<T, nfsstat3> {
        let _t = self.fs.requests.start(what);
        match tokio::task::block_in_place(|| op(&self.fs)) {
            Ok(v) => Ok(v),
            Err(e) => {
                let what = what.name();
                if e.is_routine() {
                    tracing::debug!("nfs {what}: {e}");
                } else {
                    tracing::warn!("nfs {what}: {e}");
                }
                self.fs.requests.failed(e.errno());
                Err(status(&e))
            }
        }
    }
}

fn name_of(f: &filename3<'_>) -> std::ffi::OsString {
    OsStr::from_bytes(f.as_ref()).to_os_string()
}

/// READDIR's iterator: names and inode numbers only.
pub struct Names {
    page: DirPage,
}

impl ReadDirIterator for Names {
    async fn next(&mut self) -> NextResult<DirEntry> {
        match self.page.next() {
            Some((cookie, e)) => NextResult::Ok(DirEntry {
                fileid: e.ino,
                name: e.name.into_bytes().into(),
                cookie,
            }),
            None => NextResult::Eof,
        }
    }
}

/// READDIRPLUS's iterator: attributes fetched for a batch of entries at a
/// time (most come from the core's cache; the rest in one catalog query).
pub struct NamesPlus {
    fs: Arc<MarkBaseFs>,
    library: uuid::Uuid,
    fsid: u64,
    page: DirPage,
    batch: std::vec::IntoIter<(u64, CoreEntry, Option<Attr>)>,
}

impl ReadDirPlusIterator<NfsHandle> for NamesPlus {
    async fn next(&mut self) -> NextResult<DirEntryPlus<NfsHandle>> {
        if self.batch.len() == 0 {
            let entries: Vec<(u64, CoreEntry)> = self.page.by_ref().take(ATTR_BATCH).collect();
            if entries.is_empty() {
                return NextResult::Eof;
            }
            let inos: Vec<Ino> = entries.iter().map(|(_, e)| e.ino).collect();
            let attrs = tokio::task::block_in_place(|| self.fs.getattr_many(&inos));
            self.batch = entries
                .into_iter()
                .zip(attrs)
                .map(|((c, e), a)| (c, e, a.ok()))
                .collect::<Vec<_>>()
                .into_iter();
        }
        match self.batch.next() {
            Some((cookie, e, a)) => NextResult::Ok(DirEntryPlus {
                fileid: e.ino,
                name: e.name.into_bytes().into(),
                cookie,
                name_attributes: a.map(|a| fattr(&a, self.fsid)),
                name_handle: Some(NfsHandle::new(self.library, e.ino)),
            }),
            None => NextResult::Eof,
        }
    }
}

impl NfsReadFileSystem for MarkBaseNfs {
    type Handle = NfsHandle;

    fn root_dir(&self) -> NfsHandle {
        self.handle(ROOT_INO)
    }

    /// Any credential: every call acts as the library's owner.
    fn authorize(&self, _auth: Option<&auth_unix>) -> bool {
        true
    }

    fn allow_client(&self, addr: &SocketAddr) -> bool {
        self.allow.allows(addr.ip())
    }

    async fn lookup(&self, dirid: &NfsHandle, name: &filename3<'_>) -> Result<NfsHandle, nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let ino = self
            .run(Op::Lookup, move |fs| match name.as_bytes() {
                b"." => fs.getattr(dir).map(|a| a.ino),
                b".." => fs.parent_of(dir),
                _ => fs.lookup(dir, &name).map(|a| a.ino),
            })
            .await?;
        Ok(self.handle(ino))
    }

    async fn getattr(&self, id: &NfsHandle) -> Result<fattr3, nfsstat3> {
        let ino = self.ino(id)?;
        let a = self.run(Op::Getattr, move |fs| fs.getattr(ino)).await?;
        Ok(self.attr(&a))
    }

    async fn read(
        &self,
        id: &NfsHandle,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let ino = self.ino(id)?;
        let count = count.min(TRANSFER);
        self.run(Op::Read, move |fs| {
            let data = fs.read_ino(ino, offset, count)?;
            let size = fs.getattr(ino)?.size;
            let eof = offset + data.len() as u64 >= size;
            Ok((data, eof))
        })
        .await
    }

    async fn readdir(
        &self,
        dirid: &NfsHandle,
        cookie: u64,
    ) -> Result<impl ReadDirIterator, nfsstat3> {
        let dir = self.ino(dirid)?;
        let page = self
            .run(Op::Readdir, move |fs| fs.dir_page(dir, cookie))
            .await?;
        Ok(Names { page })
    }

    async fn readdirplus(
        &self,
        dirid: &NfsHandle,
        cookie: u64,
    ) -> Result<impl ReadDirPlusIterator<NfsHandle>, nfsstat3> {
        let dir = self.ino(dirid)?;
        let page = self
            .run(Op::Readdirplus, move |fs| fs.dir_page(dir, cookie))
            .await?;
        Ok(NamesPlus {
            fs: self.fs.clone(),
            library: self.library,
            fsid: self.fsid,
            page,
            batch: Vec::new().into_iter(),
        })
    }

    async fn readlink(&self, id: &NfsHandle) -> Result<nfspath3<'_>, nfsstat3> {
        let ino = self.ino(id)?;
        let target = self.run(Op::Readlink, move |fs| fs.readlink(ino)).await?;
        Ok(target.into())
    }

    async fn fsinfo(&self, root: &NfsHandle) -> Result<FSINFO3resok, nfsstat3> {
        let obj_attributes = self
            .getattr(root)
            .await
            .map_or(post_op_attr::None, post_op_attr::Some);
        Ok(FSINFO3resok {
            obj_attributes,
            rtmax: TRANSFER,
            rtpref: TRANSFER,
            rtmult: 4096,
            wtmax: TRANSFER,
            wtpref: TRANSFER,
            wtmult: 4096,
            dtpref: 64 * 1024,
            maxfilesize: i64::MAX as u64,
            time_delta: nfs3_server::nfs3_types::nfs3::nfstime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        })
    }

    fn pathconf_limits(&self) -> (u32, u32) {
        (crate::fs::LINK_MAX, crate::fs::NAME_MAX as u32)
    }

    async fn fsstat(&self, root: &NfsHandle) -> Result<FSSTAT3resok, nfsstat3> {
        let obj_attributes = self
            .getattr(root)
            .await
            .map_or(post_op_attr::None, post_op_attr::Some);
        let s = self.run(Op::Statfs, |fs| fs.statfs()).await?;
        let frsize = u64::from(s.frsize.max(1));
        Ok(FSSTAT3resok {
            obj_attributes,
            tbytes: s.blocks.saturating_mul(frsize),
            fbytes: s.bfree.saturating_mul(frsize),
            abytes: s.bavail.saturating_mul(frsize),
            tfiles: s.files,
            ffiles: s.ffree,
            afiles: s.ffree,
            invarsec: 0,
        })
    }

    async fn cookie_verifier(&self, dirid: &NfsHandle) -> Option<cookieverf3> {
        let dir = self.ino(dirid).ok()?;
        let v = self
            .run(Op::Readdir, move |fs| fs.dir_verifier(dir))
            .await
            .ok()?;
        Some(cookieverf3(v.to_be_bytes()))
    }

    async fn access(&self, id: &NfsHandle, asked: u32) -> Result<u32, nfsstat3> {
        let ino = self.ino(id)?;
        let caller = self.caller;
        let (may, kind) = self
            .run(Op::Access, move |fs| {
                Ok((fs.access(ino, caller)?, fs.getattr(ino)?.kind))
            })
            .await?;
        let mut granted = 0;
        if may.read {
            granted |= ACCESS3_READ;
        }
        if may.write {
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND;
            if kind == Kind::Dir {
                granted |= ACCESS3_DELETE;
            }
        }
        if may.exec {
            granted |= if kind == Kind::Dir {
                ACCESS3_LOOKUP
            } else {
                ACCESS3_EXECUTE
            };
        }
        Ok(asked & granted)
    }
}

impl NfsFileSystem for MarkBaseNfs {
    fn write_verifier(&self) -> Option<writeverf3> {
        Some(writeverf3(self.write_verifier))
    }

    async fn setattr(&self, id: &NfsHandle, set: sattr3) -> Result<fattr3, nfsstat3> {
        let ino = self.ino(id)?;
        let req = setattr_req(&set);
        let a = self
            .run(Op::Setattr, move |fs| fs.setattr(ino, &req))
            .await?;
        Ok(self.attr(&a))
    }

    async fn write(
        &self,
        id: &NfsHandle,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> Result<(fattr3, stable_how), nfsstat3> {
        let ino = self.ino(id)?;
        let sync = !matches!(stable, stable_how::UNSTABLE);
        let a = self
            .run(Op::Write, |fs| {
                fs.write_ino(ino, offset, data, sync)?;
                fs.getattr(ino)
            })
            .await?;
        let committed = if sync {
            stable_how::FILE_SYNC
        } else {
            stable_how::UNSTABLE
        };
        Ok((self.attr(&a), committed))
    }

    async fn create(
        &self,
        dirid: &NfsHandle,
        name: &filename3<'_>,
        set: sattr3,
    ) -> Result<(NfsHandle, fattr3), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let (mode, caller) = (mode_of(&set, 0o644), self.caller);
        let mut req = setattr_req(&set);
        req.mode = None;
        let a = self
            .run(Op::Create, move |fs| {
                let a = match fs.create_leased(dir, &name, mode, caller) {
                    // UNCHECKED (GUARDED was refused before): what is
                    // there is kept, with the attributes asked for.
                    Err(FsError::Exists) => fs.lookup(dir, &name)?,
                    r => r?,
                };
                if a.kind != Kind::File {
                    return Err(FsError::Exists);
                }
                if req.size.is_some() || req.atime.is_some() || req.mtime.is_some() {
                    return fs.setattr(a.ino, &req);
                }
                Ok(a)
            })
            .await?;
        Ok((self.handle(a.ino), self.attr(&a)))
    }

    async fn create_exclusive(
        &self,
        dirid: &NfsHandle,
        name: &filename3<'_>,
        verifier: createverf3,
    ) -> Result<NfsHandle, nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let caller = self.caller;
        let a = self
            .run(Op::Create, move |fs| {
                fs.create_exclusive(dir, &name, verifier.0, caller)
            })
            .await?;
        Ok(self.handle(a.ino))
    }

    async fn mkdir(
        &self,
        dirid: &NfsHandle,
        name: &filename3<'_>,
        set: &sattr3,
    ) -> Result<(NfsHandle, fattr3), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let (mode, caller) = (mode_of(set, 0o755), self.caller);
        let a = self
            .run(Op::Mkdir, move |fs| fs.mkdir(dir, &name, mode, 0, caller))
            .await?;
        Ok((self.handle(a.ino), self.attr(&a)))
    }

    async fn remove(&self, dirid: &NfsHandle, name: &filename3<'_>) -> Result<(), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        self.run(Op::Unlink, move |fs| fs.unlink(dir, &name)).await
    }

    async fn rmdir(&self, dirid: &NfsHandle, name: &filename3<'_>) -> Result<(), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        self.run(Op::Rmdir, move |fs| fs.rmdir(dir, &name)).await
    }

    async fn rename<'a>(
        &self,
        from_dirid: &NfsHandle,
        from_name: &filename3<'a>,
        to_dirid: &NfsHandle,
        to_name: &filename3<'a>,
    ) -> Result<(), nfsstat3> {
        let (from, to) = (self.ino(from_dirid)?, self.ino(to_dirid)?);
        let (a, b) = (name_of(from_name), name_of(to_name));
        self.run(Op::Rename, move |fs| {
            fs.rename(from, &a, to, &b, RenameMode::Replace)
        })
        .await
    }

    async fn symlink<'a>(
        &self,
        dirid: &NfsHandle,
        name: &filename3<'a>,
        target: &nfspath3<'a>,
        _set: &sattr3,
    ) -> Result<(NfsHandle, fattr3), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let target = target.as_ref().to_vec();
        let caller = self.caller;
        let a = self
            .run(Op::Symlink, move |fs| {
                fs.symlink(dir, &name, &target, caller)
            })
            .await?;
        Ok((self.handle(a.ino), self.attr(&a)))
    }

    async fn link(
        &self,
        id: &NfsHandle,
        dirid: &NfsHandle,
        name: &filename3<'_>,
    ) -> Result<fattr3, nfsstat3> {
        let (ino, dir) = (self.ino(id)?, self.ino(dirid)?);
        let name = name_of(name);
        let a = self
            .run(Op::Link, move |fs| fs.link(ino, dir, &name))
            .await?;
        Ok(self.attr(&a))
    }

    async fn mknod(
        &self,
        dirid: &NfsHandle,
        name: &filename3<'_>,
        what: &mknoddata3,
    ) -> Result<(NfsHandle, fattr3), nfsstat3> {
        let dir = self.ino(dirid)?;
        let name = name_of(name);
        let (mode, rdev) = mknod_of(what).ok_or(nfsstat3::NFS3ERR_BADTYPE)?;
        let caller = self.caller;
        let a = self
            .run(Op::Mknod, move |fs| {
                fs.mknod(dir, &name, mode, 0, rdev, caller)
            })
            .await?;
        Ok((self.handle(a.ino), self.attr(&a)))
    }

    async fn commit(&self, id: &NfsHandle, _offset: u64, _count: u32) -> Result<(), nfsstat3> {
        let ino = self.ino(id)?;
        self.run(Op::Fsync, move |fs| fs.commit_ino(ino)).await
    }
}
