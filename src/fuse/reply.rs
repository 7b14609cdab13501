//! What the adapter sends back: the core's types as `fuser`'s ([`attr`],
//! [`kind`]), the core's change reports as kernel cache invalidations
//! ([`KernelNotifier`]), and one way to answer a request ([`Reply`] and
//! [`Answer`]), so that a handler is its call into the core.

use std::ffi::OsStr;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileType, Generation, INodeNo, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow,
};

use crate::catalog::Kind;
use crate::fs::{Attr, Caller, Change, Notifier, TimeSet};
use crate::store::SpaceInfo;

/// How long the kernel may cache entries and attributes: the seed's 60 s.
/// Every change made through the mount reaches the kernel's caches by the
/// kernel's own invalidation, and changes made to the catalog behind the
/// mount's back by ours ([`KernelNotifier`], within about a second).
pub(super) const TTL: Duration = Duration::from_secs(60);

/// A `fuser` reply, which a failure answers with its errno.
pub(super) trait Reply {
    fn fail(self, errno: Errno);
}

/// A reply whose success carries one value of the core's.
pub(super) trait Answer: Reply {
    type Value;
    fn answer(self, v: Self::Value);
}

macro_rules! replies {
    ($($t:ty),*) => {$(
        impl Reply for $t {
            fn fail(self, errno: Errno) {
                self.error(errno)
            }
        }
    )*};
}

replies!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyLseek,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

impl Answer for ReplyEntry {
    type Value = Attr;
    fn answer(self, a: Attr) {
        self.entry(&TTL, &attr(&a), Generation(0))
    }
}

impl Answer for ReplyAttr {
    type Value = Attr;
    fn answer(self, a: Attr) {
        self.attr(&TTL, &attr(&a))
    }
}

impl Answer for ReplyEmpty {
    type Value = ();
    fn answer(self, (): ()) {
        self.ok()
    }
}

impl Answer for ReplyData {
    type Value = Vec<u8>;
    fn answer(self, d: Vec<u8>) {
        self.data(&d)
    }
}

impl Answer for ReplyWrite {
    type Value = u32;
    fn answer(self, n: u32) {
        self.written(n)
    }
}

impl Answer for ReplyLseek {
    type Value = i64;
    fn answer(self, o: i64) {
        self.offset(o)
    }
}

impl Answer for ReplyStatfs {
    type Value = SpaceInfo;
    fn answer(self, s: SpaceInfo) {
        self.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.frsize,
        )
    }
}

/// An xattr value or list: its size when asked with size 0, the bytes if
/// they fit `size`, else ERANGE.
pub(super) fn xattr(reply: ReplyXattr, size: u32, v: &[u8]) {
    if size == 0 {
        reply.size(v.len() as u32)
    } else if v.len() <= size as usize {
        reply.data(v)
    } else {
        reply.error(Errno::ERANGE)
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

pub(super) fn kind(k: Kind) -> FileType {
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

pub(super) fn attr(a: &Attr) -> FileAttr {
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

pub(super) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

pub(super) fn time(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
        TimeOrNow::Now => TimeSet::Now,
    }
}
