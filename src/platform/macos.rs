//! What only macOS does, decided by pure functions: which backend `auto`
//! picks, the `mount_nfs` command for the built-in NFS server, macFUSE's mount
//! options, the volume name, mount point and log location. Nothing here
//! touches the system (the caller probes it and carries the decision out),
//! so every rule is tested on Linux.
//!
//! The NFS client's values (`readahead`, `actimeo`) and macFUSE's
//! `iosize` and `daemon_timeout` are starting points to be tuned on a Mac.

use std::path::{Path, PathBuf};

use super::Backend;

/// What is installed on the Mac, as probed at mount time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacSystem {
    /// macOS (major, minor).
    pub version: (u32, u32),
    /// macFUSE's kernel extension is installed and allowed.
    pub macfuse_kext: bool,
    /// macFUSE's FSKit module is installed.
    pub macfuse_fskit: bool,
    /// FUSE-T is installed.
    pub fuse_t: bool,
    /// This binary was built with `--features macfuse`.
    pub built_with_macfuse: bool,
}

/// Where macFUSE keeps its kernel extensions (one folder per macOS major).
pub const MACFUSE_KEXTS: &str = "/Library/Filesystems/macfuse.fs/Contents/Extensions";
/// macFUSE's FSKit module (macFUSE 5+).
pub const MACFUSE_FSKIT: &str = "/Library/Filesystems/macfuse.fs/Contents/Resources/macfuse.app/Contents/Extensions/io.macfuse.app.fsmodule.macfuse.appex";
/// FUSE-T's library.
pub const FUSE_T_LIB: &str = "/usr/local/lib/libfuse-t.dylib";

/// macOS's (major, minor) from `sw_vers -productVersion` ("15.4.1"); (0, 0)
/// if it cannot be read.
pub fn parse_product_version(text: &str) -> (u32, u32) {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), minor) => (major, minor.unwrap_or(0)),
        _ => (0, 0),
    }
}

impl MacSystem {
    /// What a probe found: `sw_vers -productVersion`'s output and which of
    /// [`MACFUSE_KEXTS`], [`MACFUSE_FSKIT`] and [`FUSE_T_LIB`] exist.
    pub fn from_probe(
        product_version: &str,
        exists: impl Fn(&str) -> bool,
        built_with_macfuse: bool,
    ) -> MacSystem {
        MacSystem {
            version: parse_product_version(product_version),
            macfuse_kext: exists(MACFUSE_KEXTS),
            macfuse_fskit: exists(MACFUSE_FSKIT),
            fuse_t: exists(FUSE_T_LIB),
            built_with_macfuse,
        }
    }

    /// Probe this Mac.
    pub fn probe() -> MacSystem {
        let version = std::process::Command::new("/usr/bin/sw_vers")
            .arg("-productVersion")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        MacSystem::from_probe(&version, |p| Path::new(p).exists(), cfg!(fuse))
    }
}

/// Why a backend the user asked for cannot serve on this Mac.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MacBackendError {
    #[error("macFUSE's kernel extension is not installed (or this markbase was built without `--features macfuse`)")]
    NoMacFuse,
    #[error("FUSE-T is not installed (https://www.fuse-t.org; free for personal use, a licence for commercial use)")]
    NoFuseT,
    #[error("FSKit needs macOS 15.4 or later and macFUSE's FSKit module")]
    NoFsKit,
    #[error("FSKit mounts only under /Volumes (not {0})")]
    FsKitOutsideVolumes(PathBuf),
}

/// The backend `auto` picks: macFUSE's kernel extension where it is
/// installed and compiled in (the fastest path: 700-800 MB/s), else the
/// built-in NFS server, which needs nothing installed. FUSE-T and FSKit are
/// used only when asked for.
pub fn auto_backend(sys: &MacSystem) -> Backend {
    if sys.macfuse_kext && sys.built_with_macfuse {
        Backend::Kernel
    } else {
        Backend::Nfs
    }
}

/// Can `backend` serve a mount at `mountpoint` on this Mac?
pub fn check_backend(
    backend: Backend,
    sys: &MacSystem,
    mountpoint: &Path,
) -> Result<(), MacBackendError> {
    match backend {
        Backend::Nfs => Ok(()),
        Backend::Kernel if sys.macfuse_kext && sys.built_with_macfuse => Ok(()),
        Backend::Kernel => Err(MacBackendError::NoMacFuse),
        Backend::FuseT | Backend::FuseTSmb if sys.fuse_t && sys.built_with_macfuse => Ok(()),
        Backend::FuseT | Backend::FuseTSmb => Err(MacBackendError::NoFuseT),
        Backend::FsKit => {
            if sys.version < (15, 4) || !sys.macfuse_fskit || !sys.built_with_macfuse {
                Err(MacBackendError::NoFsKit)
            } else if !mountpoint.starts_with("/Volumes") {
                Err(MacBackendError::FsKitOutsideVolumes(
                    mountpoint.to_path_buf(),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The volume's name in Finder.
pub fn volume_name(user: &str) -> String {
    format!("MarkBase_{user}")
}

/// Where a user's library is mounted when no `--dir` is given: for root,
/// `/Volumes/MarkBase_<user>`, where Finder shows drives (only root may make
/// folders there); for anyone else `~/MarkBase/<user>`, a folder of their
/// own, which `mount_nfs` and macFUSE mount on without root. `None` when
/// there is no home folder to put it in.
pub fn default_mountpoint(user: &str, root: bool, home: Option<&Path>) -> Option<PathBuf> {
    if root {
        return Some(Path::new("/Volumes").join(volume_name(user)));
    }
    home.filter(|h| h.is_absolute())
        .map(|h| h.join("MarkBase").join(user))
}

/// Where the daemons log, under the user's home.
pub fn log_dir(home: &Path) -> PathBuf {
    home.join("Library/Logs/MarkBase")
}

/// How the Mac's NFS client is tuned for the built-in server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfsClientTuning {
    /// Read-ahead, in blocks of `rsize` (the client's maximum is 128).
    pub readahead: u32,
    /// Seconds the client trusts cached attributes.
    pub actimeo: u32,
}

impl Default for NfsClientTuning {
    fn default() -> Self {
        NfsClientTuning {
            readahead: 16,
            actimeo: 1,
        }
    }
}

/// Transfer size the built-in server offers and the client asks for (1 MiB).
pub const NFS_TRANSFER: u32 = 1 << 20;

/// The command that mounts the built-in server's export on `mountpoint`. No
/// root needed (the mount point is the user's); NFS, MOUNT and portmap share
/// one port. The options, from Apple's `mount_nfs(8)`, and why (rclone's
/// `nfsmount` and hf-mount, which also serve a Mac from a local user-space
/// NFSv3 server, differ where noted):
///
/// * `hard,intr`: a slow or restarting server is waited for, never turned
///   into an I/O error in the middle of a render (`soft` would: rclone and
///   hf-mount use it, and lose writes when a request times out); `intr` lets
///   the user interrupt what waits (Finder stops beachballing on Ctrl-C or
///   Force Quit). The server comes back on its port ([`crate::daemon::last_address`]),
///   so what waited goes on.
/// * `timeo=10,retrans=5`: a request is sent again after 1 s, and the "server
///   not responding" notice comes after five unanswered tries, not at once on
///   a COMMIT that waits for the disk.
/// * `rdirplus`: READDIRPLUS pages, names with their attributes; without it
///   the Mac sends one LOOKUP per entry of a 10,000-frame folder.
/// * `locallocks`: `nolocks` makes flock and fcntl locks fail, which breaks
///   the project locks editing applications take; locks stay on this Mac
///   (the only client of a loopback server).
/// * `rsize`/`wsize` 1 MiB, `readahead` 16 blocks: video rates.
/// * `actimeo=1`: the MarkBase app's own changes show within a second.
/// * Not `nobrowse`: the library is a drive the editor opens in Finder's
///   sidebar and from Premiere's or Resolve's media browser; `nobrowse`
///   hides it from both.
pub fn mount_nfs_command(port: u16, mountpoint: &Path, tuning: NfsClientTuning) -> Vec<String> {
    let opts = format!(
        "vers=3,tcp,port={port},mountport={port},hard,intr,timeo=10,retrans=5,rdirplus,locallocks,rsize={NFS_TRANSFER},wsize={NFS_TRANSFER},readahead={},actimeo={}",
        tuning.readahead, tuning.actimeo
    );
    vec![
        "/sbin/mount_nfs".into(),
        "-o".into(),
        opts,
        "127.0.0.1:/".into(),
        mountpoint.to_string_lossy().into_owned(),
    ]
}

/// The command that unmounts it (as Finder's eject does).
pub fn unmount_command(mountpoint: &Path) -> Vec<String> {
    vec![
        "/usr/sbin/diskutil".into(),
        "unmount".into(),
        mountpoint.to_string_lossy().into_owned(),
    ]
}

/// A file system id for `user` that stays the same across remounts, so
/// that Finder aliases and recent-files lists keep pointing into the volume
/// (FNV-1a of the user name, 24 bits, never 0).
pub fn fsid_for(user: &str) -> u32 {
    let h = user.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (h & 0x00ff_ffff).max(1)
}

/// macFUSE's mount options for `user`'s volume. `appledouble`: whether
/// Finder may write `._` files (no: `noappledouble`).
pub fn macfuse_options(user: &str, appledouble: bool) -> Vec<String> {
    let mut o = vec![
        format!("volname={}", volume_name(user)),
        "local".into(),
        format!("fsid={}", fsid_for(user)),
        format!("iosize={NFS_TRANSFER}"),
        // Seconds before macFUSE gives up on a request: a large flush to a
        // slow disk must not be mistaken for a dead daemon.
        "daemon_timeout=600".into(),
    ];
    if !appledouble {
        o.push("noappledouble".into());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(version: (u32, u32)) -> MacSystem {
        MacSystem {
            version,
            ..MacSystem::default()
        }
    }

    #[test]
    fn a_probe_reads_the_version_and_what_is_installed() {
        assert_eq!(parse_product_version("15.4.1\n"), (15, 4));
        assert_eq!(parse_product_version("26\n"), (26, 0));
        assert_eq!(parse_product_version(""), (0, 0));
        let sys = MacSystem::from_probe("15.5", |p| p == MACFUSE_KEXTS, true);
        assert_eq!(
            sys,
            MacSystem {
                version: (15, 5),
                macfuse_kext: true,
                macfuse_fskit: false,
                fuse_t: false,
                built_with_macfuse: true,
            }
        );
        assert_eq!(auto_backend(&sys), Backend::Kernel);
        let bare = MacSystem::from_probe("14.6.1", |_| false, false);
        assert_eq!(auto_backend(&bare), Backend::Nfs);
    }

    #[test]
    fn auto_takes_the_kext_only_when_installed_and_built_in() {
        let bare = mac((14, 5));
        assert_eq!(auto_backend(&bare), Backend::Nfs);
        let kext = MacSystem {
            macfuse_kext: true,
            ..bare
        };
        assert_eq!(auto_backend(&kext), Backend::Nfs, "not built with macfuse");
        let built = MacSystem {
            built_with_macfuse: true,
            ..kext
        };
        assert_eq!(auto_backend(&built), Backend::Kernel);
        // FUSE-T installed is not enough for auto: asked for only.
        let fuse_t = MacSystem {
            fuse_t: true,
            built_with_macfuse: true,
            ..bare
        };
        assert_eq!(auto_backend(&fuse_t), Backend::Nfs);
    }

    #[test]
    fn asked_backends_need_what_they_need() {
        let vol = Path::new("/Volumes/MarkBase_w");
        let sys = MacSystem {
            built_with_macfuse: true,
            ..mac((15, 3))
        };
        assert_eq!(check_backend(Backend::Nfs, &mac((12, 0)), vol), Ok(()));
        assert_eq!(
            check_backend(Backend::FuseT, &sys, vol),
            Err(MacBackendError::NoFuseT)
        );
        let fuse_t = MacSystem {
            fuse_t: true,
            ..sys
        };
        assert_eq!(check_backend(Backend::FuseTSmb, &fuse_t, vol), Ok(()));
        let fskit = MacSystem {
            macfuse_fskit: true,
            ..sys
        };
        assert_eq!(
            check_backend(Backend::FsKit, &fskit, vol),
            Err(MacBackendError::NoFsKit),
            "15.3 is too old"
        );
        let new = MacSystem {
            version: (15, 4),
            ..fskit
        };
        assert_eq!(check_backend(Backend::FsKit, &new, vol), Ok(()));
        assert!(matches!(
            check_backend(Backend::FsKit, &new, Path::new("/Users/w/lib")),
            Err(MacBackendError::FsKitOutsideVolumes(_))
        ));
        assert_eq!(
            check_backend(Backend::Kernel, &fuse_t, vol),
            Err(MacBackendError::NoMacFuse)
        );
    }

    #[test]
    fn the_mount_nfs_command() {
        let c = mount_nfs_command(
            40123,
            Path::new("/Volumes/MarkBase_w"),
            NfsClientTuning::default(),
        );
        assert_eq!(c[0], "/sbin/mount_nfs");
        let o = &c[2];
        for want in [
            "vers=3",
            "tcp",
            "port=40123",
            "mountport=40123",
            "locallocks",
            "hard",
            "intr",
            "timeo=10",
            "retrans=5",
            "rdirplus",
            "rsize=1048576",
            "wsize=1048576",
            "readahead=16",
            "actimeo=1",
        ] {
            assert!(o.split(',').any(|x| x == want), "{want} missing from {o}");
        }
        for never in ["nolocks", "soft", "nobrowse"] {
            assert!(!o.split(',').any(|x| x == never), "{never} in {o}");
        }
        assert_eq!(&c[3..], ["127.0.0.1:/", "/Volumes/MarkBase_w"]);
        assert_eq!(
            unmount_command(Path::new("/Volumes/MarkBase_w")),
            ["/usr/sbin/diskutil", "unmount", "/Volumes/MarkBase_w"]
        );
    }

    #[test]
    fn names_places_and_macfuse_options() {
        assert_eq!(volume_name("warren"), "MarkBase_warren");
        assert_eq!(
            default_mountpoint("warren", true, Some(Path::new("/var/root"))).as_deref(),
            Some(Path::new("/Volumes/MarkBase_warren"))
        );
        // Not root: /Volumes is not theirs to make folders in.
        assert_eq!(
            default_mountpoint("warren", false, Some(Path::new("/Users/warren"))).as_deref(),
            Some(Path::new("/Users/warren/MarkBase/warren"))
        );
        assert_eq!(default_mountpoint("warren", false, None), None);
        assert_eq!(
            default_mountpoint("warren", false, Some(Path::new(""))),
            None
        );
        assert_eq!(
            log_dir(Path::new("/Users/warren")),
            Path::new("/Users/warren/Library/Logs/MarkBase")
        );
        // Stable per user, different between users, never 0.
        assert_eq!(fsid_for("warren"), fsid_for("warren"));
        assert_ne!(fsid_for("warren"), fsid_for("demo"));
        assert!(fsid_for("") > 0 && fsid_for("warren") < 1 << 24);
        let o = macfuse_options("warren", false);
        for want in [
            "volname=MarkBase_warren",
            "local",
            "noappledouble",
            "iosize=1048576",
        ] {
            assert!(o.iter().any(|x| x == want), "{want} missing from {o:?}");
        }
        assert!(o.iter().any(|x| x.starts_with("fsid=")));
        assert!(o.iter().any(|x| x.starts_with("daemon_timeout=")));
        assert!(!macfuse_options("warren", true).contains(&"noappledouble".to_string()));
    }
}
