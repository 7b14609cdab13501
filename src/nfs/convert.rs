//! Conversions between the core's types and NFSv3's, in one place: the
//! core's errors to `nfsstat3` (through the errno ext4 would give, so the
//! two front ends cannot disagree), attributes to `fattr3`, `sattr3` to a
//! setattr request, and the file handle (library identity + inode).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nfs3_server::nfs3_types::nfs3::{
    fattr3, ftype3, mknoddata3, nfsstat3, nfstime3, sattr3, set_atime, set_mtime, specdata3,
    Nfs3Option,
};
use nfs3_server::nfs3_types::xdr_codec::{Pack, Unpack};
use nfs3_server::vfs::FileHandle;

use crate::catalog::{Ino, Kind};
use crate::fs::{Attr, FsError, SetAttrReq, TimeSet};

/// An NFS file handle's payload: the library's identity, then the inode
/// number. Both outlive the daemon (the identity is kept in the catalog,
/// inode numbers are never reused), so a handle stays good across a
/// restart; one from another library is stale here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfsHandle {
    bytes: [u8; 24],
}

impl NfsHandle {
    pub fn new(library: uuid::Uuid, ino: Ino) -> NfsHandle {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(library.as_bytes());
        bytes[16..].copy_from_slice(&ino.to_be_bytes());
        NfsHandle { bytes }
    }

    /// The inode, if the handle names `library`; else it is stale.
    pub fn ino_in(&self, library: uuid::Uuid) -> Result<Ino, nfsstat3> {
        if self.bytes[..16] != library.as_bytes()[..] {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let mut ino = [0u8; 8];
        ino.copy_from_slice(&self.bytes[16..]);
        Ok(u64::from_be_bytes(ino))
    }
}

impl FileHandle for NfsHandle {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn from_bytes(bytes: &[u8]) -> Option<NfsHandle> {
        Some(NfsHandle {
            bytes: bytes.try_into().ok()?,
        })
    }
}

/// The NFS status for a core error: STALE for an inode that is gone, else
/// by the errno the core gives (what ext4 would).
pub fn status(e: &FsError) -> nfsstat3 {
    use nfsstat3::*;
    if matches!(e, FsError::Stale) {
        return NFS3ERR_STALE;
    }
    if matches!(e, FsError::NoMemory(_)) {
        // "Try again later": the client retries instead of failing.
        return NFS3ERR_JUKEBOX;
    }
    match e.errno() {
        libc::EPERM => NFS3ERR_PERM,
        libc::ENOENT => NFS3ERR_NOENT,
        libc::ENXIO => NFS3ERR_NXIO,
        libc::EACCES => NFS3ERR_ACCES,
        libc::EEXIST => NFS3ERR_EXIST,
        libc::EXDEV => NFS3ERR_XDEV,
        libc::ENODEV => NFS3ERR_NODEV,
        libc::ENOTDIR => NFS3ERR_NOTDIR,
        libc::EISDIR => NFS3ERR_ISDIR,
        libc::EINVAL | libc::EILSEQ | libc::ERANGE => NFS3ERR_INVAL,
        libc::EFBIG => NFS3ERR_FBIG,
        libc::ENOSPC => NFS3ERR_NOSPC,
        libc::EROFS => NFS3ERR_ROFS,
        libc::EMLINK => NFS3ERR_MLINK,
        libc::ENAMETOOLONG => NFS3ERR_NAMETOOLONG,
        libc::ENOTEMPTY => NFS3ERR_NOTEMPTY,
        libc::EDQUOT => NFS3ERR_DQUOT,
        libc::EBADF => NFS3ERR_BADHANDLE,
        libc::EOPNOTSUPP => NFS3ERR_NOTSUPP,
        _ => NFS3ERR_IO,
    }
}

fn nfstime(t: SystemTime) -> nfstime3 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    nfstime3 {
        seconds: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        nseconds: d.subsec_nanos(),
    }
}

fn systime(t: nfstime3) -> SystemTime {
    UNIX_EPOCH + Duration::new(t.seconds.into(), t.nseconds.min(999_999_999))
}

/// `fattr3` for the core's attributes; `fsid` names the library.
pub fn fattr(a: &Attr, fsid: u64) -> fattr3 {
    let type_ = match a.kind {
        Kind::File => ftype3::NF3REG,
        Kind::Dir => ftype3::NF3DIR,
        Kind::Symlink => ftype3::NF3LNK,
        Kind::Fifo => ftype3::NF3FIFO,
        Kind::Socket => ftype3::NF3SOCK,
        Kind::CharDev => ftype3::NF3CHR,
        Kind::BlockDev => ftype3::NF3BLK,
    };
    fattr3 {
        type_,
        mode: a.perm.into(),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.blocks.saturating_mul(512),
        rdev: device_numbers(a.rdev),
        fsid,
        fileid: a.ino,
        atime: nfstime(a.atime),
        mtime: nfstime(a.mtime),
        ctime: nfstime(a.ctime),
    }
}

/// A device's major and minor numbers from the 32-bit form the core keeps
/// (the kernel's `new_encode_dev`, as FUSE carries it): 12 bits of major,
/// 20 of minor, the minor's low byte lowest.
fn device_numbers(rdev: u32) -> specdata3 {
    specdata3 {
        specdata1: (rdev >> 8) & 0xfff,
        specdata2: (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    }
}

/// The 32-bit device number of an NFS device's major and minor numbers
/// (the inverse of [`device_numbers`]).
fn rdev_of(d: &specdata3) -> u32 {
    (d.specdata2 & 0xff) | ((d.specdata1 & 0xfff) << 8) | ((d.specdata2 & !0xff) << 12)
}

/// The core's mknod mode (type bits and permissions) and device number for
/// an NFS MKNOD; `None` for a type MKNOD does not make (`NFS3ERR_BADTYPE`).
/// The attributes' uid and gid are not honoured, as for every create (every
/// request acts as the library's owner).
pub fn mknod_of(what: &mknoddata3) -> Option<(u32, u32)> {
    // The type bits as Linux has them (libc's are 16 bits on macOS); the
    // core reads them with `kind_from_mode`.
    const S_IFIFO: u32 = 0o010_000;
    const S_IFCHR: u32 = 0o020_000;
    const S_IFBLK: u32 = 0o060_000;
    const S_IFSOCK: u32 = 0o140_000;
    let (kind, set, rdev) = match what {
        mknoddata3::NF3CHR(d) => (S_IFCHR, &d.dev_attributes, rdev_of(&d.spec)),
        mknoddata3::NF3BLK(d) => (S_IFBLK, &d.dev_attributes, rdev_of(&d.spec)),
        mknoddata3::NF3SOCK(s) => (S_IFSOCK, s, 0),
        mknoddata3::NF3FIFO(s) => (S_IFIFO, s, 0),
        mknoddata3::default => return None,
    };
    Some((kind | mode_of(set, 0o644), rdev))
}

fn opt<T: Copy + Pack + Unpack>(o: &Nfs3Option<T>) -> Option<T> {
    match o {
        Nfs3Option::Some(v) => Some(*v),
        Nfs3Option::None => None,
    }
}

/// The core's setattr request for an NFS `sattr3`.
pub fn setattr_req(s: &sattr3) -> SetAttrReq {
    SetAttrReq {
        mode: opt(&s.mode),
        uid: opt(&s.uid),
        gid: opt(&s.gid),
        size: opt(&s.size),
        atime: match s.atime {
            set_atime::DONT_CHANGE => None,
            set_atime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_atime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(systime(t))),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => None,
            set_mtime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_mtime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(systime(t))),
        },
        ..Default::default()
    }
}

/// The mode an NFS create or mkdir asks for, or `default`.
pub fn mode_of(s: &sattr3, default: u32) -> u32 {
    opt(&s.mode).map_or(default, |m| m & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_their_library() {
        let lib = uuid::Uuid::new_v4();
        let h = NfsHandle::new(lib, 42);
        let back = NfsHandle::from_bytes(h.as_bytes()).expect("24 bytes");
        assert_eq!(back.ino_in(lib), Ok(42));
        assert_eq!(
            back.ino_in(uuid::Uuid::new_v4()),
            Err(nfsstat3::NFS3ERR_STALE)
        );
        assert!(NfsHandle::from_bytes(&[0u8; 8]).is_none());
    }

    #[test]
    fn errors_map_as_ext4_then_nfs() {
        assert_eq!(status(&FsError::Stale), nfsstat3::NFS3ERR_STALE);
        assert_eq!(status(&FsError::NotFound), nfsstat3::NFS3ERR_NOENT);
        assert_eq!(status(&FsError::NotEmpty), nfsstat3::NFS3ERR_NOTEMPTY);
        assert_eq!(status(&FsError::NameTooLong), nfsstat3::NFS3ERR_NAMETOOLONG);
        assert_eq!(
            status(&FsError::QuotaExceeded { used: 1, limit: 1 }),
            nfsstat3::NFS3ERR_DQUOT
        );
        assert_eq!(
            status(&FsError::NoMemory("test")),
            nfsstat3::NFS3ERR_JUKEBOX
        );
    }

    #[test]
    fn device_numbers_decode_as_the_kernel_encodes() {
        // makedev(8, 1) and makedev(259, 300000) in new_encode_dev's form.
        let enc = |ma: u32, mi: u32| (mi & 0xff) | (ma << 8) | ((mi & !0xff) << 12);
        for (ma, mi) in [(8, 1), (259, 300_000)] {
            let d = device_numbers(enc(ma, mi));
            assert_eq!((d.specdata1, d.specdata2), (ma, mi));
            assert_eq!(rdev_of(&d), enc(ma, mi));
        }
    }

    #[test]
    fn mknod_asks_for_the_kinds_the_core_makes() {
        use crate::catalog::Kind;
        use crate::fs::flags::kind_from_mode;
        use nfs3_server::nfs3_types::nfs3::devicedata3;
        let set = sattr3 {
            mode: Nfs3Option::Some(0o600),
            ..Default::default()
        };
        let spec = specdata3 {
            specdata1: 8,
            specdata2: 1,
        };
        for (what, kind) in [
            (mknoddata3::NF3FIFO(set.clone()), Kind::Fifo),
            (mknoddata3::NF3SOCK(set.clone()), Kind::Socket),
            (
                mknoddata3::NF3CHR(devicedata3 {
                    dev_attributes: set.clone(),
                    spec: spec.clone(),
                }),
                Kind::CharDev,
            ),
            (
                mknoddata3::NF3BLK(devicedata3 {
                    dev_attributes: set.clone(),
                    spec: spec.clone(),
                }),
                Kind::BlockDev,
            ),
        ] {
            let (mode, rdev) = mknod_of(&what).expect("a kind MKNOD makes");
            assert_eq!(kind_from_mode(mode).ok(), Some(kind));
            assert_eq!(mode & 0o7777, 0o600);
            if matches!(kind, Kind::CharDev | Kind::BlockDev) {
                assert_eq!(device_numbers(rdev), spec);
            }
        }
        assert_eq!(mknod_of(&mknoddata3::default), None);
    }

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(systime(nfstime(t)), t);
    }
}
