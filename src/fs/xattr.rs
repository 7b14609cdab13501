//! Extended attributes, kept in the catalog.
//!
//! Names are checked here (UTF-8, 1-255 bytes; POSIX ACLs are not
//! supported, as on a file system mounted without `acl`, nor SELinux
//! labels, [`SELINUX_XATTR`]); macOS's
//! `com.apple.FinderInfo` must be exactly 32 bytes (ERANGE otherwise, as
//! Apple's file systems answer). The root's `user.markbase.stats` is not
//! stored: it reports the mount's counters.

use std::ffi::OsStr;
use std::io;
use std::time::SystemTime;

use super::flags::XattrSet;
use super::{FsError, FsResult, MarkBaseFs};
use crate::catalog::{Ino, ROOT_INO, UNFILED_INO};

/// SELinux's label, which this file system does not keep (as NFSv3 or vfat):
/// EOPNOTSUPP, never ENODATA. `ls -l` asks for it before every entry it
/// prints, and a FUSE GETXATTR is a round trip to the daemon; ENODATA
/// ("supported, none set", ext4's answer) makes it ask 50,000 times in a
/// 50,000-frame folder, EOPNOTSUPP once per device (coreutils'
/// `getfilecon_cache`). On a host that enforces SELinux the kernel labels a
/// FUSE mount itself (genfs) and never asks.
pub const SELINUX_XATTR: &str = "security.selinux";

/// The root xattr that reports the mount's counters (`markbase fuse --stats`).
pub const STATS_XATTR: &str = "user.markbase.stats";

/// Where a kernel demands a namespace in every attribute name (Linux: a
/// name without `user.`, `trusted.`, `security.` or `system.` is refused
/// before it reaches the file system), a Mac's attribute `com.apple.X`, kept
/// in the store under the name macOS gives it, is `user.com.apple.X`. The
/// name a Linux front end was given, as stored.
pub fn stored_name(linux: &OsStr) -> &OsStr {
    match linux.to_str().and_then(|n| n.strip_prefix("user.")) {
        Some(rest) if super::appledouble::is_mac_attribute(rest) => OsStr::new(rest),
        _ => linux,
    }
}

/// [`MarkBaseFs::listxattr`]'s list as a Linux front end shows it: stored
/// names without a namespace get `user.`.
pub fn linux_names(list: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for n in list.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        if std::str::from_utf8(n).is_ok_and(super::appledouble::is_mac_attribute) {
            out.extend_from_slice(b"user.");
        }
        out.extend_from_slice(n);
        out.push(0);
    }
    out
}

/// An attribute name as a kernel front end was given it, as stored: on
/// Linux [`stored_name`]; a Mac's kernel (macFUSE) gives the Mac's own names.
pub fn xattr_from_kernel(name: &OsStr) -> &OsStr {
    if cfg!(target_os = "linux") {
        stored_name(name)
    } else {
        name
    }
}

/// [`MarkBaseFs::listxattr`]'s list as a kernel front end is to show it
/// (on Linux [`linux_names`]).
pub fn xattrs_for_kernel(list: &[u8]) -> Vec<u8> {
    if cfg!(target_os = "linux") {
        linux_names(list)
    } else {
        list.to_vec()
    }
}

impl MarkBaseFs {
    pub(super) fn check_xattr_name(name: &OsStr) -> FsResult<&str> {
        let n = name.to_str().ok_or(FsError::BadName)?;
        if n.is_empty() || n.len() > 255 {
            return Err(FsError::Range);
        }
        if n.starts_with("system.posix_acl") {
            return Err(FsError::NotSupported("POSIX ACLs"));
        }
        if n == SELINUX_XATTR {
            return Err(FsError::NotSupported("SELinux labels"));
        }
        Ok(n)
    }

    /// An extended attribute's value (the root's `user.markbase.stats`: the
    /// counters as JSON). ENODATA if it is not set, ENOENT if the inode is
    /// gone, ERANGE/EOPNOTSUPP for names it refuses.
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        let n = Self::check_xattr_name(name)?;
        if ino == ROOT_INO && n == STATS_XATTR {
            return serde_json::to_vec(&self.stats()).map_err(|e| FsError::Io(io::Error::other(e)));
        }
        if !self.record(ino)?.has_xattrs {
            return Err(FsError::NoAttr);
        }
        Ok(self.catalog.get_xattr(ino, n)?)
    }

    /// The names of an inode's extended attributes, each followed by a NUL.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        if !self.record(ino)?.has_xattrs {
            return Ok(out);
        }
        for n in self.catalog.list_xattrs(ino)? {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Set an extended attribute as `how` allows (EEXIST, ENODATA); one
    /// catalog transaction, which changes the inode's ctime; drops its
    /// cached attributes. ERANGE for a FinderInfo that is not 32 bytes, EPERM
    /// on `Unfiled`.
    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], how: XattrSet) -> FsResult<()> {
        let n = Self::check_xattr_name(name)?;
        // macOS: Finder info is exactly 32 bytes.
        if n.ends_with("com.apple.FinderInfo") && value.len() != 32 {
            return Err(FsError::Range);
        }
        if ino == UNFILED_INO {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        self.record(ino)?;
        self.catalog
            .set_xattr(ino, n, value, how, SystemTime::now())?;
        self.changed(&[], &[ino]);
        Ok(())
    }

    /// Remove an extended attribute (ENODATA if it is not set); as
    /// [`MarkBaseFs::setxattr`].
    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> FsResult<()> {
        let n = Self::check_xattr_name(name)?;
        self.catalog.remove_xattr(ino, n, SystemTime::now())?;
        self.changed(&[], &[ino]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errno, TestFs};
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn a_macs_attributes_carry_user_on_linux_and_nothing_else_changes() {
        assert_eq!(
            stored_name(os("user.com.apple.quarantine")),
            os("com.apple.quarantine")
        );
        assert_eq!(stored_name(os("user.DOSATTRIB")), os("user.DOSATTRIB"));
        assert_eq!(
            stored_name(os("trusted.com.apple.x")),
            os("trusted.com.apple.x")
        );
        assert_eq!(
            linux_names(b"com.apple.FinderInfo\0user.a\0"),
            b"user.com.apple.FinderInfo\0user.a\0"
        );
    }

    #[test]
    fn set_get_list_remove() {
        let t = TestFs::new();
        let f = t.file("f", b"");
        t.fs.setxattr(f.ino, os("user.b"), b"2", XattrSet::ANY)
            .expect("set");
        t.fs.setxattr(f.ino, os("user.a"), b"1", XattrSet::CREATE)
            .expect("create");
        assert_eq!(t.fs.getxattr(f.ino, os("user.a")).ok(), Some(b"1".to_vec()));
        assert_eq!(
            t.fs.listxattr(f.ino).ok(),
            Some(b"user.a\0user.b\0".to_vec())
        );
        let again = t.fs.setxattr(f.ino, os("user.a"), b"x", XattrSet::CREATE);
        assert_eq!(errno(again), libc::EEXIST);
        let missing = t.fs.setxattr(f.ino, os("user.c"), b"x", XattrSet::REPLACE);
        assert_eq!(errno(missing), libc::ENODATA);
        t.fs.removexattr(f.ino, os("user.a")).expect("remove");
        assert_eq!(errno(t.fs.getxattr(f.ino, os("user.a"))), libc::ENODATA);
        assert_eq!(errno(t.fs.removexattr(f.ino, os("user.a"))), libc::ENODATA);
    }

    #[test]
    fn what_finder_and_acls_get() {
        let t = TestFs::new();
        let f = t.file("f", b"");
        let short =
            t.fs.setxattr(f.ino, os("com.apple.FinderInfo"), &[0; 31], XattrSet::ANY);
        assert_eq!(errno(short), libc::ERANGE);
        t.fs.setxattr(f.ino, os("com.apple.FinderInfo"), &[0; 32], XattrSet::ANY)
            .expect("32 bytes");
        let acl =
            t.fs.setxattr(f.ino, os("system.posix_acl_access"), b"", XattrSet::ANY);
        assert_eq!(errno(acl), libc::EOPNOTSUPP);
        assert_eq!(errno(t.fs.getxattr(f.ino, os(""))), libc::ERANGE);
        // SELinux labels: not kept, said so (ls -l then stops asking).
        let label = t.fs.getxattr(f.ino, os(SELINUX_XATTR));
        assert_eq!(errno(label), libc::EOPNOTSUPP);
        let set = t.fs.setxattr(f.ino, os(SELINUX_XATTR), b"x", XattrSet::ANY);
        assert_eq!(errno(set), libc::EOPNOTSUPP);
        assert_eq!(errno(t.fs.getxattr(f.ino, os("user.none"))), libc::ENODATA);
    }

    #[test]
    fn the_roots_stats_attribute_is_live() {
        let t = TestFs::new();
        t.file("f", b"12345");
        let v = t.fs.getxattr(ROOT_INO, os(STATS_XATTR)).expect("stats");
        let j: serde_json::Value = serde_json::from_slice(&v).expect("json");
        assert_eq!(j["bytes_written"], 5);
        assert!(t.fs.listxattr(ROOT_INO).is_ok_and(|l| l.is_empty()));
    }
}
