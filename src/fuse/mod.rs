//! The FUSE adapter: kernel requests in, [`MarkBaseFs`] calls, replies out.
//!
//! Kept thin on purpose (as mountpoint-s3 does) so that the file system core
//! is tested without FUSE in the loop. Each handler converts its arguments,
//! calls the core, and on failure replies with [`FsError::errno`] and logs
//! one line: routine refusals (ENOENT, EEXIST, ...) at debug, the file
//! system's own trouble at warn. Nothing here panics or unwraps.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Weak;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::sync::Mutex;
use fuser::BackingId;

use crate::catalog::DirEntry;
use crate::fs::flags::{AllocMode, OpenFlags as CoreOpenFlags, RenameMode, Whence, XattrSet};
use crate::fs::metrics::Op;
use crate::fs::{DropSetId, FsError, FsResult, MarkBaseFs, SetAttrReq};

mod reply;
pub mod session;

pub use reply::KernelNotifier;
use reply::{attr, caller, kind, time, Answer, Reply, TTL};

/// Entries whose attributes `readdirplus` fetches at once.
const READDIRPLUS_CHUNK: usize = 128;

/// How a file is opened for the kernel: without FLUSH (`FOPEN_NOFLUSH`).
/// The kernel otherwise sends a FLUSH at every `close(2)` and waits for it;
/// a tar of small files pays that round trip per file. Nothing needs it
/// here: writes reach the content file before `write(2)` returns (kernel
/// passthrough, or our WRITE without the writeback cache), so there is no
/// late write error for `close(2)` to report, POSIX locks are the kernel's,
/// and the size and times kept in memory are committed at RELEASE (which the
/// kernel sends when the last reference goes, `close(2)` not waiting for
/// it) or `fsync(2)`; GETATTR answers from that memory until then.
const FILE_OPEN: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// The `fuser::Filesystem` over a [`MarkBaseFs`].
pub struct FuseAdapter {
    fs: Arc<MarkBaseFs>,
    /// Asked for by the user; in force once the kernel agreed at init.
    passthrough: AtomicBool,
    /// `HANDLE_KILLPRIV_V2` agreed at init: the kernel then checks a file
    /// for `security.capability` once per inode instead of before every
    /// write (it marks the mount `SB_NOSEC`), and leaves taking set-ID bits
    /// away on write, truncation and chown to us ([`Self::drop_setid`]).
    killpriv: AtomicBool,
    backing: Mutex<Backing>,
    /// What the kernel keeps of each directory's listing (FOPEN_CACHE_DIR):
    /// it drops a kept listing itself on changes made through the mount; one
    /// the core reloaded from the catalog, or one read without attributes,
    /// it must drop on our word. See [`Listed`].
    listed: Mutex<lru::LruCache<u64, Listed>>,
}

/// A directory's listing as last handed to the kernel.
#[derive(Clone, Copy)]
struct Listed {
    /// The core's listing generation it came from.
    generation: u64,
    /// Read past its first chunk with plain READDIR (`READDIRPLUS_AUTO`
    /// chooses that when nobody stats the entries between chunks: `ls -f`).
    /// The kernel then keeps names without dentries or attributes, and an
    /// `ls -l` served from that listing sends one LOOKUP per entry (49,817
    /// for a 50,000-frame folder). So it is dropped at the next open, and
    /// read again with READDIRPLUS.
    names_only: bool,
}

/// Directories whose listing generation the adapter remembers.
const LISTED_DIRS: usize = 4_000;

/// Kernel passthrough backing files, as fuser's passthrough example keeps
/// them: one `BackingId` per inode at a time (weak, by inode), held alive by
/// each handle that uses it and dropped with the last one.
#[derive(Default)]
struct Backing {
    by_ino: HashMap<u64, Weak<BackingId>>,
    by_handle: HashMap<u64, Arc<BackingId>>,
}

impl FuseAdapter {
    pub fn new(fs: Arc<MarkBaseFs>, passthrough: bool) -> FuseAdapter {
        FuseAdapter {
            fs,
            passthrough: AtomicBool::new(passthrough),
            killpriv: AtomicBool::new(false),
            backing: Mutex::new(Backing::default()),
            listed: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(LISTED_DIRS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    /// A backing id for handle `fh`, or `None` to serve it without passthrough.
    fn backing_for(
        &self,
        fh: u64,
        open: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let of = self.fs.open_file(fh).ok()?;
        let mut b = self.backing.lock();
        let id = match b.by_ino.get(&of.ino()).and_then(Weak::upgrade) {
            Some(id) => id,
            None => match open(of.file()) {
                Ok(id) => {
                    let id = Arc::new(id);
                    b.by_ino.insert(of.ino(), Arc::downgrade(&id));
                    id
                }
                Err(e) => {
                    tracing::warn!(
                        ino = of.ino(),
                        "passthrough refused ({e}); serving this file through the daemon"
                    );
                    return None;
                }
            },
        };
        b.by_handle.insert(fh, id.clone());
        drop(b);
        self.fs.set_passthrough(fh).ok()?;
        Some(id)
    }

    /// Answer a request: `work` (its call into the core) timed and
    /// counted as `op`, its value replied, or its failure logged once (at
    /// the level its kind deserves), counted and replied with its errno.
    fn answer<R: Answer>(
        &self,
        op: Op,
        ino: u64,
        reply: R,
        work: impl FnOnce() -> FsResult<R::Value>,
    ) {
        self.answer_with(op, ino, reply, work, R::answer)
    }

    /// [`Self::answer`], with the reply built by `ok` from `work`'s value.
    fn answer_with<R: Reply, T>(
        &self,
        op: Op,
        ino: u64,
        reply: R,
        work: impl FnOnce() -> FsResult<T>,
        ok: impl FnOnce(R, T),
    ) {
        let _t = self.fs.requests.start(op);
        match work() {
            Ok(v) => ok(reply, v),
            Err(e) => reply.fail(self.fail(op, ino, &e)),
        }
    }

    fn fail(&self, op: Op, ino: u64, e: &FsError) -> Errno {
        let op = op.name();
        if e.is_routine() {
            tracing::debug!(op, ino, errno = e.errno(), "{e}");
        } else {
            tracing::warn!(op, ino, errno = e.errno(), "{e}");
        }
        self.fs.requests.failed(e.errno());
        Errno::from_i32(e.errno())
    }

    fn drop_backing(&self, fh: u64, ino: u64) {
        let mut b = self.backing.lock();
        if b.by_handle.remove(&fh).is_some()
            && b.by_ino.get(&ino).is_some_and(|w| w.strong_count() == 0)
        {
            b.by_ino.remove(&ino);
        }
    }
}

/// Which change a request that may take set-ID bits away is, as the kernel
/// sends it with `HANDLE_KILLPRIV_V2` in force: it then leaves out the mode
/// it would have computed and sends a chown as it is (`chown(f, -1, -1)` as
/// a bare ctime), a truncation with its size, and, where a write through
/// kernel passthrough must take the bits away (`file_remove_privs`), a
/// SETATTR with nothing in it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetIdChange {
    None,
    Chown,
    Truncate,
    Write,
}

impl FuseAdapter {
    /// What `change` takes from set-ID bits; nothing unless
    /// `HANDLE_KILLPRIV_V2` is in force (the kernel otherwise sends the new
    /// mode itself). Root stands for `CAP_FSETID`, which keeps the bits
    /// through a truncation.
    fn drop_setid(&self, req: &Request, change: SetIdChange) -> DropSetId {
        if !self.killpriv.load(Ordering::Relaxed) {
            return DropSetId::Keep;
        }
        let caller = caller(req);
        match change {
            SetIdChange::Chown | SetIdChange::Write => DropSetId::By(caller),
            SetIdChange::Truncate if caller.uid != 0 => DropSetId::By(caller),
            SetIdChange::Truncate | SetIdChange::None => DropSetId::Keep,
        }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            let _ = config.add_capabilities(cap);
        }
        let killpriv = config
            .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_ok();
        self.killpriv.store(killpriv, Ordering::Relaxed);
        let _ = config.set_max_write(1 << 20);
        if self.passthrough.load(Ordering::Relaxed) {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            self.passthrough.store(ok, Ordering::Relaxed);
            tracing::info!(
                "kernel passthrough: {}",
                if ok {
                    "on"
                } else {
                    "not offered by this kernel; off"
                }
            );
        }
        if !self.passthrough.load(Ordering::Relaxed) && !self.fs.has_quota() {
            // Every byte comes through the daemon: let the kernel gather
            // writes in its page cache and send them in max_write pieces
            // (the kernel then keeps size and mtime while pages are dirty).
            // Not with passthrough, which bypasses the FUSE page cache, nor
            // with a quota, whose EDQUOT must reach the write that passes it.
            let ok = config
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok();
            tracing::info!("writeback cache: {}", if ok { "on" } else { "off" });
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.fs.flush_all() {
            tracing::error!("final flush: {e}");
        }
        let s = self.fs.stats();
        tracing::info!(
            attr_hits = s.attr_hits,
            attr_misses = s.attr_misses,
            dir_hits = s.dir_hits,
            dir_misses = s.dir_misses,
            path_hits = s.path_hits,
            path_misses = s.path_misses,
            bytes_read = s.bytes_read,
            bytes_written = s.bytes_written,
            "unmounted; cache hit rate {:.1}%",
            s.cache_hit_rate * 100.0
        );
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.answer(Op::Lookup, parent.0, reply, || {
            self.fs.lookup(parent.0, name)
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.answer(Op::Getattr, ino.0, reply, || self.fs.getattr(ino.0));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let times = atime.is_some() || mtime.is_some();
        let change = if uid.or(gid).is_some() || (ctime.is_some() && size.is_none() && !times) {
            SetIdChange::Chown
        } else if size.is_some() {
            SetIdChange::Truncate
        } else if ctime.is_none() && !times {
            SetIdChange::Write
        } else {
            SetIdChange::None
        };
        let drop_setid = self.drop_setid(req, change);
        let req = SetAttrReq {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
            drop_setid,
        };
        self.answer(Op::Setattr, ino.0, reply, || self.fs.setattr(ino.0, &req));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.answer(Op::Readlink, ino.0, reply, || self.fs.readlink(ino.0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.answer(Op::Mknod, parent.0, reply, || {
            self.fs
                .mknod(parent.0, name, mode, umask, rdev, caller(req))
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.answer(Op::Mkdir, parent.0, reply, || {
            self.fs.mkdir(parent.0, name, mode, umask, caller(req))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.answer(Op::Unlink, parent.0, reply, || {
            self.fs.unlink(parent.0, name)
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.answer(Op::Rmdir, parent.0, reply, || self.fs.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.answer(Op::Symlink, parent.0, reply, || {
            self.fs.symlink(
                parent.0,
                link_name,
                target.as_os_str().as_bytes(),
                caller(req),
            )
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Rename, parent.0, reply, || {
            let mode = RenameMode::from_raw(flags.bits())?;
            self.fs.rename(parent.0, name, newparent.0, newname, mode)
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.answer(Op::Link, ino.0, reply, || {
            self.fs.link(ino.0, newparent.0, newname)
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut flags = CoreOpenFlags::from_raw(flags.0);
        if flags.truncate {
            flags.drop_setid = self.drop_setid(req, SetIdChange::Truncate);
        }
        self.answer_with(
            Op::Open,
            ino.0,
            reply,
            || self.fs.open(ino.0, flags),
            |reply, fh| match self.backing_for(fh, |f| reply.open_backing(f)) {
                Some(id) => reply.opened_passthrough(FileHandle(fh), FILE_OPEN, &id),
                None => reply.opened(FileHandle(fh), FILE_OPEN),
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.answer(Op::Read, ino.0, reply, || self.fs.read(fh.0, offset, size));
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.answer(Op::Write, ino.0, reply, || {
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                self.fs.drop_setid_for_write(ino.0, caller(req))?;
            }
            self.fs.write(fh.0, offset, data)
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Flush, ino.0, reply, || self.fs.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Release, ino.0, reply, || {
            let res = self.fs.release(fh.0);
            self.drop_backing(fh.0, ino.0);
            res
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Fsync, ino.0, reply, || self.fs.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let open = || {
            let fh = self.fs.opendir(ino.0)?;
            let gen = self.fs.dir_handle(fh)?.generation();
            let mut listed = self.listed.lock();
            let keep = listed
                .peek(&ino.0)
                .is_some_and(|l| l.generation == gen && !l.names_only);
            let fresh = Listed {
                generation: gen,
                names_only: false,
            };
            listed.put(ino.0, fresh);
            Ok((fh, keep))
        };
        self.answer_with(Op::Opendir, ino.0, reply, open, |reply, (fh, keep)| {
            // Let the kernel keep what it reads of the directory; it drops
            // it on its own changes, and on ours when the mount's listing
            // was reloaded.
            let flags = if keep {
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::FOPEN_CACHE_DIR
            };
            reply.opened(FileHandle(fh), flags)
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let list = || self.fs.dir_handle(fh.0);
        self.answer_with(Op::Readdir, ino.0, reply, list, |mut reply, d| {
            let mut added = false;
            for (i, e) in d.entries_from(offset as usize).enumerate() {
                if reply.add(INodeNo(e.ino), offset + i as u64 + 1, kind(e.kind), &e.name) {
                    break;
                }
                added = true;
            }
            if added && offset > 0 {
                if let Some(l) = self.listed.lock().get_mut(&ino.0) {
                    l.names_only = true;
                }
            }
            reply.ok();
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let list = || self.fs.dir_handle(fh.0);
        self.answer_with(Op::Readdirplus, ino.0, reply, list, |mut reply, d| {
            // Attributes a chunk at a time (a reply holds ~100-200 entries):
            // the uncached ones come from the catalog in one read.
            let mut rest = d.entries_from(offset as usize);
            let mut i = offset as usize;
            loop {
                let chunk: Vec<&DirEntry> = rest.by_ref().take(READDIRPLUS_CHUNK).collect();
                if chunk.is_empty() {
                    break;
                }
                let inos: Vec<u64> = chunk.iter().map(|e| e.ino).collect();
                for (e, a) in chunk.iter().zip(self.fs.getattr_many(&inos)) {
                    i += 1;
                    // Gone since the listing was taken: skip it.
                    let Ok(a) = a else { continue };
                    let full = reply.add(
                        INodeNo(e.ino),
                        i as u64,
                        &e.name,
                        &TTL,
                        &attr(&a),
                        Generation(0),
                    );
                    if full {
                        return reply.ok();
                    }
                }
            }
            reply.ok();
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Releasedir, fh.0, reply, || {
            self.fs.releasedir(fh.0);
            Ok(())
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Fsyncdir, ino.0, reply, || self.fs.fsyncdir());
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.answer(Op::Statfs, ino.0, reply, || self.fs.statfs());
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = crate::fs::xattr_from_kernel(name);
        self.answer(Op::Xattr, ino.0, reply, || {
            let how = XattrSet::from_raw(flags)?;
            self.fs.setxattr(ino.0, name, value, how)
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let get = || self.fs.getxattr(ino.0, crate::fs::xattr_from_kernel(name));
        self.answer_with(Op::Xattr, ino.0, reply, get, |reply, v| {
            reply::xattr(reply, size, &v)
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let list = || self.fs.listxattr(ino.0);
        self.answer_with(Op::Xattr, ino.0, reply, list, |reply, l| {
            reply::xattr(reply, size, &crate::fs::xattrs_for_kernel(&l))
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.answer(Op::Xattr, ino.0, reply, || {
            self.fs
                .removexattr(ino.0, crate::fs::xattr_from_kernel(name))
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks; access() is not even sent.
        self.answer(Op::Access, ino.0, reply, || Ok(()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let flags = CoreOpenFlags::from_raw(flags);
        let create = || {
            self.fs
                .create(parent.0, name, mode, umask, flags, caller(req))
        };
        self.answer_with(
            Op::Create,
            parent.0,
            reply,
            create,
            |reply, (a, fh)| match self.backing_for(fh, |f| reply.open_backing(f)) {
                Some(id) => reply.created_passthrough(
                    &TTL,
                    &attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FILE_OPEN,
                    &id,
                ),
                None => reply.created(&TTL, &attr(&a), Generation(0), FileHandle(fh), FILE_OPEN),
            },
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.answer(Op::Fallocate, ino.0, reply, || {
            let mode = AllocMode::from_raw(mode)?;
            self.fs.fallocate(fh.0, offset, length, mode)
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.answer(Op::Lseek, ino.0, reply, || {
            let whence = Whence::from_raw(whence)?;
            self.fs.lseek(fh.0, offset, whence)
        });
    }
}
