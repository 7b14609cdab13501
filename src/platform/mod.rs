//! Where the mount meets the operating system: which *backend* serves it.
//!
//! Linux has one: the kernel's FUSE (`/dev/fuse`), with passthrough on 6.9+.
//! macOS has several, chosen per user in `markbase.toml` or with `--backend`:
//! the built-in NFS server mounted by the Mac's own NFS client (needs nothing
//! installed), macFUSE's kernel extension (a build with `--features
//! macfuse`), FUSE-T (NFS or SMB to the system's client, in front of
//! libfuse) and macFUSE's FSKit module (macOS 15.4+). What only macOS does
//! is decided by the pure functions of [`macos`], tested on Linux. The core
//! and the catalog know nothing of this; the adapter asks here for the mount
//! options a backend needs and whether it can hand files to the kernel
//! (passthrough). A backend this machine cannot serve is refused before
//! anything is mounted, with a one-line reason, rather than silently replaced.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

pub mod macos;
pub mod mounts;
pub mod nfs_client;

/// Run the calling thread at the lowest priority (nice 19): background work
/// (emptying deleted content files, checkpoints) yields the CPU to requests
/// and catches up when the machine is idle.
pub fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on this thread's
        // id changes only this thread's nice value.
        let r = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19)
        };
        if r != 0 {
            tracing::debug!("nice 19: {}", std::io::Error::last_os_error());
        }
    }
    #[cfg(target_os = "macos")]
    {
        // SAFETY: as above; on macOS PRIO_DARWIN_THREAD with id 0 is this thread.
        let r = unsafe { libc::setpriority(libc::PRIO_DARWIN_THREAD, 0, libc::PRIO_DARWIN_BG) };
        if r != 0 {
            tracing::debug!("background priority: {}", std::io::Error::last_os_error());
        }
    }
}

/// Take a mount away even if it is busy or its daemon is gone: Linux
/// detaches it lazily (`MNT_DETACH`), macOS forces it (`MNT_FORCE`).
pub fn detach(mountpoint: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)?;
    #[cfg(not(target_os = "linux"))]
    nix::mount::unmount(mountpoint, nix::mount::MntFlags::MNT_FORCE)?;
    Ok(())
}

/// Take away a mount whose server is gone, and fail what waits on it:
/// Linux aborts the mount's requests (`MNT_FORCE`: FUSE's connection, NFS's
/// RPCs in flight) and detaches it; macOS forces it, as `diskutil unmount
/// force` does.
pub fn force_unmount(mountpoint: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::mount::umount2(
        mountpoint,
        nix::mount::MntFlags::MNT_FORCE | nix::mount::MntFlags::MNT_DETACH,
    )?;
    #[cfg(not(target_os = "linux"))]
    nix::mount::unmount(mountpoint, nix::mount::MntFlags::MNT_FORCE)?;
    Ok(())
}

/// A backend: what serves a mount to the operating system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The kernel's own FUSE: Linux `/dev/fuse`, or macFUSE's kernel extension.
    Kernel,
    /// The built-in NFSv3 server, mounted by the system's own NFS client.
    Nfs,
    /// FUSE-T serving the mount over a local NFS connection (macOS).
    FuseT,
    /// FUSE-T serving the mount over a local SMB3 connection (macOS).
    FuseTSmb,
    /// Apple's FSKit, through macFUSE's FSKit module (macOS 15.4+).
    FsKit,
}

/// What a user may write: a backend, or `auto` for this platform's best.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Fixed(Backend),
}

/// A backend name that is not one of ours, or one this machine cannot serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("unknown backend {0:?} (choose auto, kernel, nfs, fuse-t, fuse-t-smb or fskit)")]
    Unknown(String),
    #[error("{}", .0.refusal())]
    Unsupported(Backend),
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Nfs => "nfs",
            Backend::FuseT => "fuse-t",
            Backend::FuseTSmb => "fuse-t-smb",
            Backend::FsKit => "fskit",
        }
    }

    /// The one line that refuses it on this machine.
    pub fn refusal(self) -> String {
        let needs = match self {
            Backend::Kernel => "Linux's FUSE or macOS with macFUSE",
            Backend::Nfs => {
                let why = nfs_client::available()
                    .err()
                    .map_or("it has none".into(), |e| e.to_string());
                return format!(
                    "backend nfs mounts with the OS's NFS client, and {why}: serve the library \
                     with `markbase nfs --serve --user USER` and mount it from a machine that has one"
                );
            }
            Backend::FuseT | Backend::FuseTSmb => "macOS with FUSE-T",
            Backend::FsKit => "macOS 15.4+ with macFUSE's FSKit module",
        };
        format!("backend {self} needs {needs}; this machine serves `kernel` (or `auto`)")
    }

    /// Can this build serve it here? (On a Mac, what is installed is
    /// checked at mount time by [`macos::check_backend`].) The built-in NFS
    /// server needs the OS's NFS client to mount it ([`nfs_client::available`]).
    pub fn supported_here(self) -> bool {
        match self {
            Backend::Nfs => nfs_client::available().is_ok(),
            _ if cfg!(target_os = "macos") => true,
            b => b == Backend::Kernel,
        }
    }

    /// Can files be handed to the kernel (FUSE passthrough)? Only Linux's
    /// kernel FUSE offers it; the others serve every byte through the daemon.
    pub fn passthrough_possible(self) -> bool {
        cfg!(target_os = "linux") && self == Backend::Kernel
    }

    /// Extra mount options the backend needs (FUSE-T and macFUSE read a
    /// `backend=` option; Linux needs none).
    pub fn mount_options(self) -> Vec<String> {
        match self {
            Backend::Kernel | Backend::Nfs => vec![],
            Backend::FuseT => vec!["backend=nfs".into()],
            Backend::FuseTSmb => vec!["backend=smb".into()],
            Backend::FsKit => vec!["backend=fskit".into()],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Auto => f.write_str("auto"),
            BackendChoice::Fixed(b) => b.fmt(f),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => BackendChoice::Auto,
            "kernel" | "fuse" | "macfuse" => BackendChoice::Fixed(Backend::Kernel),
            "nfs" => BackendChoice::Fixed(Backend::Nfs),
            "fuse-t" | "fuse-t-nfs" => BackendChoice::Fixed(Backend::FuseT),
            "smb" | "fuse-t-smb" => BackendChoice::Fixed(Backend::FuseTSmb),
            "fskit" => BackendChoice::Fixed(Backend::FsKit),
            other => return Err(BackendError::Unknown(other.to_string())),
        })
    }
}

impl BackendChoice {
    /// The backend to mount with on this machine.
    pub fn resolve(self) -> Result<Backend, BackendError> {
        let b = match self {
            // macOS: macFUSE's kext where installed and built in, else the
            // built-in NFS server. Linux: the kernel.
            BackendChoice::Auto if cfg!(target_os = "macos") => {
                macos::auto_backend(&macos::MacSystem::probe())
            }
            BackendChoice::Auto => Backend::Kernel,
            BackendChoice::Fixed(b) => b,
        };
        if b.supported_here() {
            Ok(b)
        } else {
            Err(BackendError::Unsupported(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_resolve() {
        assert_eq!("auto".parse::<BackendChoice>(), Ok(BackendChoice::Auto));
        assert_eq!(
            "FSKit".parse::<BackendChoice>(),
            Ok(BackendChoice::Fixed(Backend::FsKit))
        );
        assert!(matches!(
            "afp".parse::<BackendChoice>(),
            Err(BackendError::Unknown(_))
        ));
        let here = BackendChoice::Auto.resolve().unwrap();
        assert!(here.supported_here());
        if cfg!(target_os = "linux") {
            assert_eq!(here, Backend::Kernel);
            assert!(here.passthrough_possible());
            assert_eq!(
                BackendChoice::Fixed(Backend::FuseT).resolve(),
                Err(BackendError::Unsupported(Backend::FuseT))
            );
            let nfs = "nfs".parse::<BackendChoice>().map(|c| c.resolve());
            match nfs_client::available() {
                Ok(()) => assert_eq!(nfs, Ok(Ok(Backend::Nfs))),
                Err(_) => assert_eq!(nfs, Ok(Err(BackendError::Unsupported(Backend::Nfs)))),
            }
        }
    }
}
