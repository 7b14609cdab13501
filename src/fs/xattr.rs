//! Extended attributes, kept in the catalog.
//!
//! Names are checked here (UTF-8, 1-255 bytes; POSIX ACLs are not
//! supported, as on a file system mounted without `acl`, nor SELinux
//! labels, [`SELINUX_XATTR`]); macOS's
//! `com.apple.FinderInfo` must be exactly 32 bytes (ERANGE otherwise, as
//! Apple's file systems answer). The root's `user.markbase.stats` is not
//! stored: it reports the mount's counters. Samba's `user.DosStream.*`
//! names of a Mac's metadata are the `com.apple.*` attributes they carry
//! ([`super::streams`]).

use std::ffi::OsStr;
use std::io;
use std::time::SystemTime;

use super::flags::XattrSet;
use super::streams::{self, Stream};
use super::{FsError, FsResult, MarkBaseFs};
use crate::catalog::{CatalogError, Ino, ROOT_INO, UNFILED_INO};

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
        let stored = self.catalog.get_xattr(ino, n);
        match (streams::parse(n), stored) {
            // A stream not whole yet is kept under its own name.
            (Some(s), Err(CatalogError::NoAttr)) => {
                Ok(s.stream_bytes(&self.catalog.get_xattr(ino, s.attr())?))
            }
            (_, stored) => Ok(stored?),
        }
    }

    /// The names of an inode's extended attributes, each followed by a NUL.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        if !self.record(ino)?.has_xattrs {
            return Ok(out);
        }
        let names = self.catalog.list_xattrs(ino)?;
        let aliases = names
            .iter()
            .filter_map(|n| streams::stream_name(n))
            .filter(|a| !names.contains(a))
            .collect::<Vec<_>>();
        for n in names.iter().chain(&aliases) {
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
        let now = SystemTime::now();
        match streams::parse(n) {
            Some(s) => self.set_stream(ino, n, s, value, how, now)?,
            None => self.catalog.set_xattr(ino, n, value, how, now)?,
        }
        self.changed(&[], &[ino]);
        Ok(())
    }

    /// Samba's stream `n` set to `value`: the attribute it carries, or,
    /// while it does not make one yet, `n` itself.
    fn set_stream(
        &self,
        ino: Ino,
        n: &str,
        s: Stream<'_>,
        value: &[u8],
        how: XattrSet,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        let Some(attr) = s.attr_bytes(value) else {
            // The stream is these bytes now, as on a disk: what it carried
            // before (fruit truncates a Finder info written all zero, then
            // deletes the stream) is no longer there.
            self.catalog.set_xattr(ino, n, value, how, now)?;
            return match self.catalog.remove_xattr(ino, s.attr(), now) {
                Ok(()) | Err(CatalogError::NoAttr) => Ok(()),
                Err(e) => Err(e),
            };
        };
        // Kept under its own name until now: the stream is there already.
        let held = match self.catalog.remove_xattr(ino, n, now) {
            Ok(()) => true,
            Err(CatalogError::NoAttr) => false,
            Err(e) => return Err(e),
        };
        let how = if held { XattrSet::ANY } else { how };
        self.catalog.set_xattr(ino, s.attr(), &attr, how, now)
    }

    /// Remove an extended attribute (ENODATA if it is not set); as
    /// [`MarkBaseFs::setxattr`]. A Samba stream's name removes the stream:
    /// the attribute it carries, and what is kept under its own name.
    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> FsResult<()> {
        let n = Self::check_xattr_name(name)?;
        let now = SystemTime::now();
        let gone = |r: Result<(), CatalogError>| match r {
            Ok(()) => Ok(true),
            Err(CatalogError::NoAttr) => Ok(false),
            Err(e) => Err(e),
        };
        let own = gone(self.catalog.remove_xattr(ino, n, now))?;
        let carried = match streams::parse(n) {
            Some(s) => gone(self.catalog.remove_xattr(ino, s.attr(), now))?,
            None => false,
        };
        if !own && !carried {
            return Err(FsError::NoAttr);
        }
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
    fn sambas_streams_are_the_mac_attributes_they_carry() {
        let t = TestFs::new();
        let f = t.file("clip.mov", b"");
        let afp_name = os("user.DosStream.AFP_AfpInfo:$DATA");
        // fruit makes the stream with one NUL, then writes a whole AfpInfo.
        t.fs.setxattr(f.ino, afp_name, &[0], XattrSet::CREATE)
            .expect("placeholder");
        assert_eq!(t.fs.getxattr(f.ino, afp_name).ok(), Some(vec![0]));
        let mut finder = [0u8; 32];
        finder[..8].copy_from_slice(b"MooVTVOD");
        let mut afp = vec![0u8; 61];
        afp[..4].copy_from_slice(b"AFP\0");
        afp[4..8].copy_from_slice(&0x100u32.to_be_bytes());
        afp[16..48].copy_from_slice(&finder);
        t.fs.setxattr(f.ino, afp_name, &afp, XattrSet::ANY)
            .expect("whole");
        assert_eq!(
            t.fs.getxattr(f.ino, os("com.apple.FinderInfo")).ok(),
            Some(finder.to_vec())
        );
        let back = t.fs.getxattr(f.ino, afp_name).expect("stream");
        assert_eq!(&back[16..48], &finder);
        assert_eq!(back.len(), 61);
        // Tags set as a Mac attribute read as their stream, and back.
        let tags = os("com.apple.metadata:_kMDItemUserTags");
        let tags_stream = os("user.DosStream.com.apple.metadata:_kMDItemUserTags:$DATA");
        t.fs.setxattr(f.ino, tags, b"bplist00", XattrSet::ANY)
            .expect("tags");
        assert_eq!(
            t.fs.getxattr(f.ino, tags_stream).ok(),
            Some(b"bplist00\0".to_vec())
        );
        t.fs.setxattr(f.ino, tags_stream, b"bplist01\0", XattrSet::ANY)
            .expect("tags over SMB");
        assert_eq!(t.fs.getxattr(f.ino, tags).ok(), Some(b"bplist01".to_vec()));
        let list = t.fs.listxattr(f.ino).expect("list");
        let names: Vec<&[u8]> = list.split(|&c| c == 0).filter(|n| !n.is_empty()).collect();
        assert_eq!(
            names,
            [
                &b"com.apple.FinderInfo"[..],
                b"com.apple.metadata:_kMDItemUserTags",
                b"user.DosStream.AFP_AfpInfo:$DATA",
                b"user.DosStream.com.apple.metadata:_kMDItemUserTags:$DATA",
            ]
        );
        t.fs.removexattr(f.ino, tags_stream).expect("remove");
        assert_eq!(errno(t.fs.getxattr(f.ino, tags)), libc::ENODATA);
        // A Finder info written all zero: fruit truncates the stream (one
        // NUL), then deletes it. It is gone, and the Finder info with it.
        t.fs.setxattr(f.ino, afp_name, &[0], XattrSet::ANY)
            .expect("truncated");
        assert_eq!(t.fs.getxattr(f.ino, afp_name).ok(), Some(vec![0]));
        let finder_name = os("com.apple.FinderInfo");
        assert_eq!(errno(t.fs.getxattr(f.ino, finder_name)), libc::ENODATA);
        t.fs.removexattr(f.ino, afp_name).expect("deleted");
        assert_eq!(errno(t.fs.getxattr(f.ino, afp_name)), libc::ENODATA);
        assert_eq!(errno(t.fs.removexattr(f.ino, afp_name)), libc::ENODATA);
        // Removing a stream removes what it carries, kept or not.
        t.fs.setxattr(f.ino, afp_name, &afp, XattrSet::ANY)
            .expect("whole again");
        t.fs.removexattr(f.ino, afp_name).expect("remove");
        assert_eq!(errno(t.fs.getxattr(f.ino, finder_name)), libc::ENODATA);
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
