//! The machine's mount table, from one function per platform:
//! `/proc/self/mountinfo` on Linux, `getfsstat(2)` with `MNT_NOWAIT` on
//! macOS. Nothing here touches a mount point: a mount whose server is gone
//! hangs whoever `stat`s it (an NFS mount is hard: the Mac waits, then says
//! "server not responding"), and the table answers without asking the file
//! system. So every question about a mount (is one there, whose, of what
//! kind) is asked here first, and only a mount known to be alive is read.
//!
//! Which mounts are MarkBase's: a FUSE mount (Linux's `fuse`, macFUSE's
//! `macfuse`/`osxfuse`) whose source is `markbase:<user>`; an NFS mount is
//! ours when a runtime record says so (its source is only `127.0.0.1:/`),
//! which [`crate::manage::mount`] checks.

use std::path::PathBuf;

/// A mount as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelMount {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl KernelMount {
    /// Is this a MarkBase FUSE mount (source `markbase:<user>`; the type is
    /// `fuse` or `fuse.markbase` on Linux, `macfuse` or `osxfuse` on a Mac)?
    pub fn is_markbase_fuse(&self) -> bool {
        let fuse =
            self.fstype.starts_with("fuse") || self.fstype == "macfuse" || self.fstype == "osxfuse";
        fuse && self.source.starts_with("markbase:")
    }

    /// Is this an NFS mount (of any server)?
    pub fn is_nfs(&self) -> bool {
        matches!(self.fstype.as_str(), "nfs" | "nfs3" | "nfs4")
    }

    /// The user a MarkBase FUSE mount serves.
    pub fn user(&self) -> Option<&str> {
        self.source.strip_prefix("markbase:")
    }
}

/// Every mount of this machine, newest last.
pub fn table() -> Vec<KernelMount> {
    #[cfg(target_os = "linux")]
    {
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }
    #[cfg(target_os = "macos")]
    {
        macos::getfsstat()
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Vec::new()
    }
}

/// The mounts `/proc/self/mountinfo` lists (`proc(5)`): the fifth field is
/// the mount point (octal-escaped), and after the ` - ` separator come the
/// type and the source.
pub fn parse_mountinfo(text: &str) -> Vec<KernelMount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            Some(KernelMount {
                mountpoint: PathBuf::from(unescape_octal(mp)),
                fstype: r.next()?.to_string(),
                source: unescape_octal(r.next().unwrap_or("")),
            })
        })
        .collect()
}

/// `\040` and the like (space, tab, newline, backslash) back to bytes.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mount from the three names `getfsstat` gives (`f_mntonname`,
/// `f_fstypename`, `f_mntfromname`), each a NUL-terminated C array.
pub fn from_statfs_names(on: &[u8], fstype: &[u8], from: &[u8]) -> KernelMount {
    fn text(b: &[u8]) -> String {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    }
    KernelMount {
        mountpoint: PathBuf::from(text(on)),
        fstype: text(fstype),
        source: text(from),
    }
}

#[cfg(target_os = "macos")]
mod macos {
    use super::{from_statfs_names, KernelMount};

    /// As `C char`s, the bytes of a `statfs` name field.
    fn bytes(c: &[libc::c_char]) -> Vec<u8> {
        c.iter().map(|&x| x as u8).collect()
    }

    /// Every mount, from the kernel's own table: `MNT_NOWAIT` answers from
    /// what the kernel holds, without asking any file system (a dead NFS
    /// server would otherwise hang the call).
    pub fn getfsstat() -> Vec<KernelMount> {
        for _ in 0..4 {
            // SAFETY: a null buffer asks only for the number of mounts.
            let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
            if n < 0 {
                return Vec::new();
            }
            let cap = n as usize + 8;
            let mut buf: Vec<libc::statfs> = Vec::with_capacity(cap);
            let size = (cap * std::mem::size_of::<libc::statfs>()) as libc::c_int;
            // SAFETY: `buf` has room for `cap` entries of `size` bytes in all;
            // the kernel writes at most that and returns how many it wrote.
            let got = unsafe { libc::getfsstat(buf.as_mut_ptr(), size, libc::MNT_NOWAIT) };
            if got < 0 {
                return Vec::new();
            }
            if (got as usize) < cap {
                // SAFETY: the kernel initialised the first `got` entries.
                unsafe { buf.set_len(got as usize) };
                return buf
                    .iter()
                    .map(|s| {
                        from_statfs_names(
                            &bytes(&s.f_mntonname),
                            &bytes(&s.f_fstypename),
                            &bytes(&s.f_mntfromname),
                        )
                    })
                    .collect();
            }
            // More mounts appeared between the two calls: ask again.
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
61 22 0:52 / /mnt/My\\040Drive rw,nosuid,nodev,relatime shared:30 - fuse markbase:alice rw,user_id=0
62 22 0:53 / /srv/nfs-mounted rw,relatime shared:31 - nfs 127.0.0.1:/ rw,vers=3,port=40123
63 22 0:54 / /mnt/other rw - fuse.sshfs me@host:/ rw
";

    #[test]
    fn mountinfo_gives_each_mount_its_point_type_and_source() {
        let t = parse_mountinfo(MOUNTINFO);
        assert_eq!(t.len(), 4);
        assert_eq!(t[1].mountpoint, PathBuf::from("/mnt/My Drive"));
        assert!(t[1].is_markbase_fuse());
        assert_eq!(t[1].user(), Some("alice"));
        assert!(t[2].is_nfs() && !t[2].is_markbase_fuse());
        assert_eq!(t[2].source, "127.0.0.1:/");
        assert!(!t[3].is_markbase_fuse() && !t[3].is_nfs());
        assert!(!t[0].is_markbase_fuse());
    }

    #[test]
    fn a_macs_table_names_macfuse_and_nfs_mounts() {
        let mut on = b"/Volumes/MarkBase_alice".to_vec();
        on.resize(1024, 0);
        let mac = from_statfs_names(&on, b"macfuse\0\0\0", b"markbase:alice\0");
        assert_eq!(mac.mountpoint, PathBuf::from("/Volumes/MarkBase_alice"));
        assert!(mac.is_markbase_fuse());
        let nfs = from_statfs_names(b"/Users/a/MarkBase/a\0", b"nfs\0", b"localhost:/\0");
        assert!(nfs.is_nfs() && !nfs.is_markbase_fuse());
        let apfs = from_statfs_names(b"/\0", b"apfs\0", b"/dev/disk3s1s1\0");
        assert!(!apfs.is_nfs() && !apfs.is_markbase_fuse());
    }

    #[test]
    fn this_machine_has_a_root_mount() {
        assert!(table()
            .iter()
            .any(|m| m.mountpoint == std::path::Path::new("/")));
    }
}
