//! Flags at the core's boundary, as small types instead of raw libc integers.
//!
//! A front end turns what its protocol carries into these once (the FUSE
//! adapter from the kernel's bits with the `from_raw` constructors; an NFS
//! server builds them from its own requests), and the core never tests a
//! bit itself. A value the core does not know is refused here, with the
//! errno the local file system gives for it (EINVAL), before anything
//! changes.

use super::{DropSetId, FsError, FsResult};
use crate::catalog::Kind;

pub use crate::catalog::XattrSet;

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Opened for writing (`O_WRONLY` or `O_RDWR`).
    pub write: bool,
    /// Truncate to 0 at open (`O_TRUNC`, with FUSE_ATOMIC_O_TRUNC the core's to do).
    pub truncate: bool,
    /// What the truncation takes from set-ID bits (a caller without
    /// `CAP_FSETID`, where the front end leaves that to the core).
    pub drop_setid: DropSetId,
}

impl OpenFlags {
    /// Read only.
    pub const READ: OpenFlags = OpenFlags {
        write: false,
        truncate: false,
        drop_setid: DropSetId::Keep,
    };
    /// Read and write.
    pub const WRITE: OpenFlags = OpenFlags {
        write: true,
        truncate: false,
        drop_setid: DropSetId::Keep,
    };

    /// From `open(2)` flags; access modes and `O_TRUNC` only, the rest is
    /// the kernel's business.
    pub fn from_raw(flags: i32) -> OpenFlags {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        OpenFlags {
            write,
            truncate: write && flags & libc::O_TRUNC != 0,
            drop_setid: DropSetId::Keep,
        }
    }
}

/// What a rename does at its destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace what is there (plain `rename(2)`).
    #[default]
    Replace,
    /// Fail with EEXIST if something is there (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two entries (`RENAME_EXCHANGE`).
    Exchange,
}

impl RenameMode {
    /// From `renameat2(2)` flags (Linux) or `renamex_np(2)` flags (macOS,
    /// as macFUSE passes them); unknown bits and both modes at once are EINVAL.
    pub fn from_raw(flags: u32) -> FsResult<RenameMode> {
        #[cfg(not(target_os = "macos"))]
        const NOREPLACE: u32 = 1; // RENAME_NOREPLACE
        #[cfg(not(target_os = "macos"))]
        const EXCHANGE: u32 = 2; // RENAME_EXCHANGE
        #[cfg(target_os = "macos")]
        const NOREPLACE: u32 = 4; // RENAME_EXCL
        #[cfg(target_os = "macos")]
        const EXCHANGE: u32 = 2; // RENAME_SWAP
        match flags {
            0 => Ok(RenameMode::Replace),
            NOREPLACE => Ok(RenameMode::NoReplace),
            EXCHANGE => Ok(RenameMode::Exchange),
            _ => Err(FsError::Invalid("rename flags")),
        }
    }
}

impl XattrSet {
    /// From `setxattr(2)` flags; unknown bits are EINVAL, as the kernel
    /// answers (both known bits at once pass: then nothing can succeed,
    /// EEXIST or ENODATA, as on ext4).
    pub fn from_raw(flags: i32) -> FsResult<XattrSet> {
        // 1 and 2 on Linux, 2 and 4 on macOS.
        const CREATE: i32 = libc::XATTR_CREATE;
        const REPLACE: i32 = libc::XATTR_REPLACE;
        if flags & !(CREATE | REPLACE) != 0 {
            return Err(FsError::Invalid("xattr flags"));
        }
        Ok(XattrSet {
            create: flags & CREATE != 0,
            replace: flags & REPLACE != 0,
        })
    }
}

/// Where `lseek` counts from (the content store's: it does the seek).
pub use crate::store::content::Whence;

impl Whence {
    /// From `lseek(2)`'s `whence`.
    pub fn from_raw(whence: i32) -> FsResult<Whence> {
        Ok(match whence {
            libc::SEEK_SET => Whence::Set,
            libc::SEEK_CUR => Whence::Cur,
            libc::SEEK_END => Whence::End,
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            _ => return Err(FsError::Invalid("lseek whence")),
        })
    }
}

/// What `fallocate` does: Linux's modes (`FALLOC_FL_*`), passed on to the
/// content file's own `fallocate`, which refuses what its file system cannot do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocMode(i32);

impl AllocMode {
    /// Allocate, growing the file if the range passes its end.
    pub const ALLOCATE: AllocMode = AllocMode(0);
    const KEEP_SIZE: i32 = 0x01;
    const KNOWN: i32 = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40;

    /// From `fallocate(2)`'s mode; unknown bits are EOPNOTSUPP, as ext4 answers.
    pub fn from_raw(mode: i32) -> FsResult<AllocMode> {
        if mode & !Self::KNOWN != 0 {
            return Err(FsError::NotSupported("fallocate mode"));
        }
        Ok(AllocMode(mode))
    }

    /// The file's size does not change (`FALLOC_FL_KEEP_SIZE`).
    pub fn keeps_size(self) -> bool {
        self.0 & Self::KEEP_SIZE != 0
    }

    /// The `FALLOC_FL_*` bits.
    pub fn bits(self) -> i32 {
        self.0
    }
}

/// The kind a `mknod(2)` mode asks for (its `S_IFMT` bits; none is a
/// regular file). The bits are the same on Linux and macOS.
pub fn kind_from_mode(mode: u32) -> FsResult<Kind> {
    Ok(match mode & 0o170_000 {
        0 | 0o100_000 => Kind::File,
        0o010_000 => Kind::Fifo,
        0o140_000 => Kind::Socket,
        0o020_000 => Kind::CharDev,
        0o060_000 => Kind::BlockDev,
        0o040_000 => Kind::Dir,
        _ => return Err(FsError::Invalid("mknod type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_from_access_mode() {
        assert_eq!(OpenFlags::from_raw(libc::O_RDONLY), OpenFlags::READ);
        assert_eq!(OpenFlags::from_raw(libc::O_RDWR), OpenFlags::WRITE);
        assert!(OpenFlags::from_raw(libc::O_WRONLY | libc::O_TRUNC).truncate);
        // O_TRUNC on a read-only open truncates nothing.
        assert!(!OpenFlags::from_raw(libc::O_RDONLY | libc::O_TRUNC).truncate);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn rename_flags_match_libc() {
        assert_eq!(
            RenameMode::from_raw(libc::RENAME_NOREPLACE).ok(),
            Some(RenameMode::NoReplace)
        );
        assert_eq!(
            RenameMode::from_raw(libc::RENAME_EXCHANGE).ok(),
            Some(RenameMode::Exchange)
        );
        let both = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        assert_eq!(
            RenameMode::from_raw(both).map_err(|e| e.errno()).err(),
            Some(libc::EINVAL)
        );
        assert!(RenameMode::from_raw(libc::RENAME_WHITEOUT).is_err());
    }

    #[test]
    fn xattr_flags_match_libc() {
        assert_eq!(XattrSet::from_raw(0).ok(), Some(XattrSet::ANY));
        assert_eq!(
            XattrSet::from_raw(libc::XATTR_CREATE).ok(),
            Some(XattrSet::CREATE)
        );
        assert_eq!(
            XattrSet::from_raw(libc::XATTR_REPLACE).ok(),
            Some(XattrSet::REPLACE)
        );
        assert!(XattrSet::from_raw(0x100).is_err());
    }

    #[test]
    fn mknod_kinds_match_libc() {
        #[allow(clippy::useless_conversion)] // mode_t is u16 on macOS
        let k = |m: libc::mode_t| kind_from_mode(u32::from(m)).ok();
        assert_eq!(k(libc::S_IFREG | 0o644), Some(Kind::File));
        assert_eq!(k(0o644), Some(Kind::File));
        assert_eq!(k(libc::S_IFIFO), Some(Kind::Fifo));
        assert_eq!(k(libc::S_IFSOCK), Some(Kind::Socket));
        assert_eq!(k(libc::S_IFCHR), Some(Kind::CharDev));
        assert_eq!(k(libc::S_IFBLK), Some(Kind::BlockDev));
        assert_eq!(k(libc::S_IFDIR), Some(Kind::Dir));
        assert_eq!(k(libc::S_IFLNK), None);
    }

    #[test]
    fn whence_and_alloc_mode() {
        assert_eq!(Whence::from_raw(libc::SEEK_HOLE).ok(), Some(Whence::Hole));
        assert!(Whence::from_raw(77).is_err());
        let keep = AllocMode::from_raw(libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE);
        assert!(keep.is_ok_and(|m| m.keeps_size()));
        assert!(!AllocMode::ALLOCATE.keeps_size());
        assert_eq!(
            AllocMode::from_raw(0x4000).map_err(|e| e.errno()).err(),
            Some(libc::EOPNOTSUPP)
        );
    }
}
