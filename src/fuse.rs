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
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use fuser::BackingId;
use parking_lot::Mutex;

use crate::catalog::{DirEntry, Kind};
use crate::fs::flags::{AllocMode, OpenFlags as CoreOpenFlags, RenameMode, Whence, XattrSet};
use crate::fs::metrics::Op;
use crate::fs::{Attr, Caller, Change, FsError, MarkBaseFs, Notifier, SetAttrReq, TimeSet};

/// How long the kernel may cache entries and attributes: the seed's 60 s.
/// Every change made through the mount reaches the kernel's caches by the
/// kernel's own invalidation, and changes made to the catalog behind the
/// mount's back by ours ([`KernelNotifier`], within about a second).
const TTL: Duration = Duration::from_secs(60);
/// Entries whose attributes `readdirplus` fetches at once.
const READDIRPLUS_CHUNK: usize = 128;

/// The `fuser::Filesystem` over a [`MarkBaseFs`].
pub struct FuseAdapter {
    fs: Arc<MarkBaseFs>,
    /// Asked for by the user; in force once the kernel agreed at init.
    passthrough: AtomicBool,
    backing: Mutex<Backing>,
    /// The listing generation last handed to the kernel, by directory: the
    /// kernel keeps listings it read (FOPEN_CACHE_DIR) and drops them itself
    /// on changes made through the mount; a listing the core reloaded from
    /// the catalog it must drop on our word.
    listed: Mutex<lru::LruCache<u64, u64>>,
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

    /// Log a failure once, at the level its kind deserves, count it, and
    /// give its errno.
    fn fail(&self, op: &str, ino: u64, e: &FsError) -> Errno {
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

/// The core's change reports as kernel cache invalidations.
pub struct KernelNotifier(fuser::Notifier);

impl KernelNotifier {
    pub fn new(n: fuser::Notifier) -> KernelNotifier {
        KernelNotifier(n)
    }
}

impl Notifier for KernelNotifier {
    fn changed(&self, changes: &[Change]) {
        for c in changes {
            // ENOENT: the kernel holds nothing of it, which is as good.
            let r = match c {
                Change::Inode(ino) => self.0.inval_inode(INodeNo(*ino), -1, 0),
                // Offset 0, length 0: the whole of the kept listing.
                Change::Listing(ino) => self.0.inval_inode(INodeNo(*ino), 0, 0),
                Change::Entry { parent, name } => {
                    self.0.inval_entry(INodeNo(*parent), OsStr::new(name))
                }
            };
            if let Err(e) = r {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tracing::debug!(?c, "kernel invalidation: {e}");
                }
            }
        }
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn time(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
        TimeOrNow::Now => TimeSet::Now,
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
        if let Ok(n) = self.fs.recover() {
            if n > 0 {
                tracing::info!(
                    "recovery: freed {n} inode(s) left unlinked-but-open by an earlier run"
                );
            }
        }
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
        let _t = self.fs.requests.start(Op::Lookup);
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &attr(&a), Generation(0)),
            Err(e) => reply.error(self.fail("lookup", parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = self.fs.requests.start(Op::Getattr);
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &attr(&a)),
            Err(e) => reply.error(self.fail("getattr", ino.0, &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _t = self.fs.requests.start(Op::Setattr);
        let req = SetAttrReq {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.fs.setattr(ino.0, &req) {
            Ok(a) => reply.attr(&TTL, &attr(&a)),
            Err(e) => reply.error(self.fail("setattr", ino.0, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = self.fs.requests.start(Op::Readlink);
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.fail("readlink", ino.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Mknod);
        match self
            .fs
            .mknod(parent.0, name, mode, umask, rdev, caller(req))
        {
            Ok(a) => reply.entry(&TTL, &attr(&a), Generation(0)),
            Err(e) => reply.error(self.fail("mknod", parent.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Mkdir);
        match self.fs.mkdir(parent.0, name, mode, umask, caller(req)) {
            Ok(a) => reply.entry(&TTL, &attr(&a), Generation(0)),
            Err(e) => reply.error(self.fail("mkdir", parent.0, &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.fs.requests.start(Op::Unlink);
        match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("unlink", parent.0, &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.fs.requests.start(Op::Rmdir);
        match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rmdir", parent.0, &e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _t = self.fs.requests.start(Op::Symlink);
        match self.fs.symlink(
            parent.0,
            link_name,
            target.as_os_str().as_bytes(),
            caller(req),
        ) {
            Ok(a) => reply.entry(&TTL, &attr(&a), Generation(0)),
            Err(e) => reply.error(self.fail("symlink", parent.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Rename);
        let res = RenameMode::from_raw(flags.bits())
            .and_then(|mode| self.fs.rename(parent.0, name, newparent.0, newname, mode));
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rename", parent.0, &e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _t = self.fs.requests.start(Op::Link);
        match self.fs.link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &attr(&a), Generation(0)),
            Err(e) => reply.error(self.fail("link", ino.0, &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.fs.requests.start(Op::Open);
        match self.fs.open(ino.0, CoreOpenFlags::from_raw(flags.0)) {
            Ok(fh) => match self.backing_for(fh, |f| reply.open_backing(f)) {
                Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
                None => reply.opened(FileHandle(fh), FopenFlags::empty()),
            },
            Err(e) => reply.error(self.fail("open", ino.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Read);
        match self.fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(self.fail("read", ino.0, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _t = self.fs.requests.start(Op::Write);
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.fail("write", ino.0, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _t = self.fs.requests.start(Op::Flush);
        match self.fs.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("flush", ino.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Release);
        let res = self.fs.release(fh.0);
        self.drop_backing(fh.0, ino.0);
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("release", ino.0, &e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.fs.requests.start(Op::Fsync);
        match self.fs.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsync", ino.0, &e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.fs.requests.start(Op::Opendir);
        let opened = self.fs.opendir(ino.0).and_then(|fh| {
            let gen = self.fs.dir_handle(fh)?.generation();
            let keep = self.listed.lock().put(ino.0, gen) == Some(gen);
            Ok((fh, keep))
        });
        match opened {
            Ok((fh, keep)) => {
                // Let the kernel keep what it reads of the directory; it
                // drops it on its own changes, and on ours when the mount's
                // listing was reloaded.
                let flags = if keep {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::FOPEN_CACHE_DIR
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(self.fail("opendir", ino.0, &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _t = self.fs.requests.start(Op::Readdir);
        let d = match self.fs.dir_handle(fh.0) {
            Ok(d) => d,
            Err(e) => return reply.error(self.fail("readdir", ino.0, &e)),
        };
        for (i, e) in d.entries_from(offset as usize).enumerate() {
            if reply.add(INodeNo(e.ino), offset + i as u64 + 1, kind(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _t = self.fs.requests.start(Op::Readdir);
        let d = match self.fs.dir_handle(fh.0) {
            Ok(d) => d,
            Err(e) => return reply.error(self.fail("readdirplus", ino.0, &e)),
        };
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
                if reply.add(
                    INodeNo(e.ino),
                    i as u64,
                    &e.name,
                    &TTL,
                    &attr(&a),
                    Generation(0),
                ) {
                    return reply.ok();
                }
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.fs.requests.start(Op::Releasedir);
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.fs.requests.start(Op::Fsyncdir);
        match self.fs.fsyncdir() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsyncdir", ino.0, &e)),
        }
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let _t = self.fs.requests.start(Op::Statfs);
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.frsize,
            ),
            Err(e) => reply.error(self.fail("statfs", ino.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Xattr);
        let name = crate::fs::xattr_from_kernel(name);
        let res =
            XattrSet::from_raw(flags).and_then(|how| self.fs.setxattr(ino.0, name, value, how));
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("setxattr", ino.0, &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = self.fs.requests.start(Op::Xattr);
        match self.fs.getxattr(ino.0, crate::fs::xattr_from_kernel(name)) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() <= size as usize => reply.data(&v),
            Ok(_) => reply.error(Errno::ERANGE),
            Err(e) => reply.error(self.fail("getxattr", ino.0, &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = self.fs.requests.start(Op::Xattr);
        match self
            .fs
            .listxattr(ino.0)
            .map(|l| crate::fs::xattrs_for_kernel(&l))
        {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() <= size as usize => reply.data(&v),
            Ok(_) => reply.error(Errno::ERANGE),
            Err(e) => reply.error(self.fail("listxattr", ino.0, &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.fs.requests.start(Op::Xattr);
        match self
            .fs
            .removexattr(ino.0, crate::fs::xattr_from_kernel(name))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("removexattr", ino.0, &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _t = self.fs.requests.start(Op::Access);
        // default_permissions: the kernel checks; access() is not even sent.
        reply.ok();
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
        let _t = self.fs.requests.start(Op::Create);
        let flags = CoreOpenFlags::from_raw(flags);
        match self
            .fs
            .create(parent.0, name, mode, umask, flags, caller(req))
        {
            Ok((a, fh)) => match self.backing_for(fh, |f| reply.open_backing(f)) {
                Some(id) => reply.created_passthrough(
                    &TTL,
                    &attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                    &id,
                ),
                None => reply.created(
                    &TTL,
                    &attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
            },
            Err(e) => reply.error(self.fail("create", parent.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Fallocate);
        let res = AllocMode::from_raw(mode)
            .and_then(|mode| self.fs.fallocate(fh.0, offset, length, mode));
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fallocate", ino.0, &e)),
        }
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
        let _t = self.fs.requests.start(Op::Lseek);
        let res = Whence::from_raw(whence).and_then(|w| self.fs.lseek(fh.0, offset, w));
        match res {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(self.fail("lseek", ino.0, &e)),
        }
    }
}
