//! The FUSE front end as a daemon runs it: the kernel mount with its
//! options, the session serving it on several threads, the kernel
//! notifier set on the core, and the readahead tuned once it answers.
//! [`FuseFrontEnd`] is what [`crate::daemon::run`] drives.

use std::path::PathBuf;
use std::sync::Arc;

use super::{FuseAdapter, KernelNotifier};
use crate::daemon::{DaemonError, FrontEnd, Serving};
use crate::fs::MarkBaseFs;

/// The file system type the kernel shows (`fuse.markbase`).
pub const SUBTYPE: &str = "markbase";

/// How to mount a user's library through FUSE.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    pub user: String,
    pub mountpoint: PathBuf,
    /// The content store's folder (its disk's readahead is the mount's).
    pub content_dir: PathBuf,
    pub allow_other: bool,
    pub read_only: bool,
    pub threads: usize,
    /// Asked for, and possible for the backend.
    pub passthrough: bool,
    /// The backend's own mount options (`-o` strings).
    pub backend_options: Vec<String>,
    /// The backend's name in the runtime record.
    pub backend: &'static str,
}

/// Errors of the FUSE front end.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The FUSE session of one mount, started by [`FrontEnd::start`].
pub struct FuseFrontEnd {
    opts: FuseOptions,
    session: Option<fuser::Session<FuseAdapter>>,
    /// Called once the mount is up ("ok" on the ready pipe).
    ready: Option<Box<dyn FnOnce() + Send>>,
}

impl FuseFrontEnd {
    pub fn new(opts: FuseOptions, ready: impl FnOnce() + Send + 'static) -> FuseFrontEnd {
        FuseFrontEnd {
            opts,
            session: None,
            ready: Some(Box::new(ready)),
        }
    }

    fn config(&self) -> fuser::Config {
        let o = &self.opts;
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(format!("markbase:{}", o.user)),
            fuser::MountOption::Subtype(SUBTYPE.into()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::NoAtime,
        ];
        if o.read_only {
            config.mount_options.push(fuser::MountOption::RO);
        }
        for opt in &o.backend_options {
            config
                .mount_options
                .push(fuser::MountOption::CUSTOM(opt.clone()));
        }
        if o.allow_other {
            config.acl = fuser::SessionACL::All;
        }
        // fuser serves with several threads (each its own /dev/fuse clone) on
        // Linux only; elsewhere one thread is all it takes.
        if cfg!(target_os = "linux") {
            config.n_threads = Some(o.threads.max(1));
            config.clone_fd = true;
        } else {
            config.n_threads = Some(1);
        }
        config
    }
}

impl FrontEnd for FuseFrontEnd {
    type Error = FuseError;

    fn serves_macs(&self) -> bool {
        cfg!(target_os = "macos")
    }

    fn keeps_xattrs(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        self.opts.backend
    }

    fn start(&mut self, fs: &Arc<MarkBaseFs>) -> Result<Serving, FuseError> {
        let mut passthrough = self.opts.passthrough;
        if passthrough && fs.has_quota() {
            // The kernel would write passthrough files without asking us.
            tracing::info!("quota set: serving writes through the daemon (no passthrough)");
            passthrough = false;
        }
        let mp = self.opts.mountpoint.clone();
        let mut session = fuser::Session::new(
            FuseAdapter::new(fs.clone(), passthrough),
            &mp,
            &self.config(),
        )
        .map_err(|e| FuseError::Io(format!("mount {}", mp.display()), e))?;
        fs.set_notifier(Arc::new(KernelNotifier::new(session.notifier())));
        // Signals: everything flushed, then unmount (lazily if files are still open).
        let mut unmounter = session.unmount_callable();
        let stop_mp = mp.clone();
        self.session = Some(session);
        Ok(Serving {
            at: mp,
            address: None,
            stop: Box::new(move || {
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount: {e}; detaching lazily");
                    let _ = crate::platform::detach(&stop_mp);
                }
            }),
        })
    }

    fn ready(&mut self) -> Result<(), FuseError> {
        #[cfg(target_os = "linux")]
        {
            // Once the session answers, give the mount the readahead of the disk
            // under the content store (the kernel starts FUSE mounts at 128 KiB).
            let (mp, content) = (self.opts.mountpoint.clone(), self.opts.content_dir.clone());
            let _ = std::thread::Builder::new()
                .name("markbase-tune".into())
                .spawn(move || tune_readahead(&mp, &content));
        }
        tracing::info!(user = %self.opts.user, "mounted at {}", self.opts.mountpoint.display());
        if let Some(ready) = self.ready.take() {
            ready();
        }
        Ok(())
    }

    fn serve(mut self) -> Result<(), FuseError> {
        match self.session.take() {
            Some(s) => s.run().map_err(|e| FuseError::Io("FUSE session".into(), e)),
            None => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
fn bdi_readahead_path(dev: u64) -> PathBuf {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"))
}

/// Set the mount's readahead to the content store disk's (at least 1 MiB, at
/// most 16 MiB). Needs root; otherwise the kernel's default stays.
#[cfg(target_os = "linux")]
fn tune_readahead(mountpoint: &std::path::Path, content: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Ok(c)) = (std::fs::metadata(mountpoint), std::fs::metadata(content)) else {
        return;
    };
    let disk_ra = std::fs::read_to_string(bdi_readahead_path(c.dev()))
        .or_else(|_| {
            let (major, minor) = (
                nix::sys::stat::major(c.dev()),
                nix::sys::stat::minor(c.dev()),
            );
            std::fs::read_to_string(format!(
                "/sys/dev/block/{major}:{minor}/queue/read_ahead_kb"
            ))
        })
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1024);
    let want = disk_ra.clamp(1024, 16384);
    match std::fs::write(bdi_readahead_path(m.dev()), want.to_string()) {
        Ok(()) => tracing::info!("readahead {want} KiB (as the content store's disk)"),
        Err(e) => tracing::debug!("readahead left at the kernel's default: {e}"),
    }
}
