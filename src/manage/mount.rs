//! Running a mount: checks, the daemon, and finding and stopping running ones.
//!
//! `markbase fuse --mount` checks everything it can first (mount point,
//! catalog) so that a refusal changes nothing, then starts the daemon (this
//! same binary with `--foreground`) in its own session and waits on a pipe
//! until the daemon says the kernel mount is up (or why it failed). The daemon
//! records itself in a runtime file (`/run/markbase/*.json`) so that
//! `--unmount` can find it: SIGTERM makes it commit every open file and sync
//! the catalog, then unmount. A mount whose daemon is gone (ENOTCONN) is
//! detached directly.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::argv::{DaemonCommand, Whom};
use crate::daemon::{open_library, pid_alive, read_record, remove_record};
use crate::fs::{MarkBaseFs, NameForm, STATS_XATTR};
use crate::library::Library;
use crate::platform::Backend;
use crate::sync::unchecked::Mutex;

/// Errors of mounting and unmounting; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {0}: does not exist")]
    NoMountPoint(PathBuf),
    #[error("mount point {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("mount point {0}: already a MarkBase mount (unmount it first: markbase fuse --unmount --dir {0})")]
    AlreadyMounted(PathBuf),
    #[error("mount point {0}: a MarkBase mount whose daemon is gone (clean it: markbase fuse --unmount --dir {0})")]
    DeadMount(PathBuf),
    #[error("mount point {0}: busy ({1})")]
    Busy(PathBuf, String),
    #[error("{0}: not a MarkBase mount")]
    NotMounted(PathBuf),
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    #[error(transparent)]
    Open(Box<crate::daemon::DaemonError>),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Backend(#[from] crate::platform::BackendError),
    #[error("this markbase was built without FUSE (on a Mac: build it with `--features macfuse` where macFUSE is installed)")]
    NoFuse,
    #[error(transparent)]
    Nfs(Box<crate::nfs::service::ServiceError>),
    #[cfg(fuse)]
    #[error(transparent)]
    Fuse(Box<crate::fuse::session::FuseError>),
    #[error(transparent)]
    Mac(#[from] crate::platform::macos::MacBackendError),
    #[error("the mount daemon failed: {0}")]
    Daemon(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

#[cfg(fuse)]
impl From<crate::fuse::session::FuseError> for MountError {
    fn from(e: crate::fuse::session::FuseError) -> Self {
        MountError::Fuse(Box::new(e))
    }
}

impl From<crate::daemon::DaemonError> for MountError {
    fn from(e: crate::daemon::DaemonError) -> Self {
        MountError::Open(Box::new(e))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MountError {
    let what = what.into();
    move |e| MountError::Io(what, e)
}

/// What to mount and how.
#[derive(Clone, Debug)]
pub struct MountSpec {
    pub library: Library,
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub threads: usize,
    /// Let the kernel do file I/O directly on content files (FUSE passthrough)
    /// where it can.
    pub passthrough: bool,
    /// The backend asked for on the command line (else markbase.toml's, else auto).
    pub backend: Option<crate::platform::BackendChoice>,
    /// `--metrics ADDR`: the daemon serves its counters there.
    pub metrics: Option<std::net::SocketAddr>,
}

pub use crate::platform::mounts::KernelMount;

/// Every mount of this machine ([`crate::platform::mounts::table`]).
pub fn kernel_mounts() -> Vec<KernelMount> {
    crate::platform::mounts::table()
}

/// MarkBase mounts of this machine: FUSE mounts named `markbase:<user>`
/// (Linux, macFUSE), and any other mount a runtime record names: NFS mounts
/// (`--backend nfs`, and FUSE-T's, which are NFS or SMB mounts too), whose
/// source (`127.0.0.1:/`) names no user. The record does, and such a mount
/// is given the FUSE mounts' `markbase:<user>` source here.
pub fn markbase_mounts() -> Vec<KernelMount> {
    kernel_mounts()
        .into_iter()
        .filter_map(|m| {
            if m.is_markbase_fuse() {
                return Some(m);
            }
            if !(m.is_nfs() || m.fstype == "smbfs") {
                return None;
            }
            let r = read_record(&m.mountpoint)?;
            Some(KernelMount {
                source: format!("markbase:{}", r.user),
                ..m
            })
        })
        .collect()
}

/// `p` against the current folder, with `.` and `..` resolved lexically.
pub fn absolute(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    // Lexical clean-up only: a dead mount point cannot be canonicalised.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Is the MarkBase mount at `mp` one whose daemon is gone? (Its runtime
/// record names a dead process, or, without a record, the kernel says the
/// transport is not connected: only a FUSE mount has no record, and a dead
/// FUSE mount answers at once. `stat` cannot tell: the kernel may answer it
/// from its attribute cache, and a dead NFS mount never answers.)
pub fn is_dead(mp: &Path) -> bool {
    match read_record(mp) {
        Some(r) => !pid_alive(r.pid),
        None => std::fs::read_dir(mp).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN),
    }
}

/// Check a mount point: it exists, is an empty directory, and nothing is mounted on it.
pub fn check_mountpoint(p: &Path) -> Result<PathBuf, MountError> {
    let abs = absolute(p);
    if markbase_mounts().iter().any(|m| m.mountpoint == abs) {
        return Err(if is_dead(&abs) {
            MountError::DeadMount(abs)
        } else {
            MountError::AlreadyMounted(abs)
        });
    }
    if let Some(m) = kernel_mounts()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == abs)
    {
        return Err(MountError::Busy(
            abs,
            format!("{} is mounted there", m.fstype),
        ));
    }
    let meta = match std::fs::metadata(&abs) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountError::NoMountPoint(abs))
        }
        Err(e) => return Err(MountError::Io(abs.display().to_string(), e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(abs));
    }
    let canon = abs
        .canonicalize()
        .map_err(io_err(abs.display().to_string()))?;
    let nonempty = std::fs::read_dir(&canon)
        .map_err(io_err(canon.display().to_string()))?
        .next()
        .is_some();
    if nonempty {
        return Err(MountError::Busy(canon, "the directory is not empty".into()));
    }
    Ok(canon)
}

/// [`check_mountpoint`], after cleaning up a MarkBase mount whose daemon died.
fn usable_mountpoint(p: &Path) -> Result<PathBuf, MountError> {
    match check_mountpoint(p) {
        Err(MountError::DeadMount(dead)) => {
            tracing::info!(
                "{}: cleaning up a mount whose daemon is gone",
                dead.display()
            );
            unmount(&dead)?;
            check_mountpoint(p)
        }
        other => other,
    }
}

/// The backend `spec` mounts with: the command line's, else the settings', else
/// this platform's default; refused if this machine cannot serve it.
pub fn backend_of(
    spec: &MountSpec,
    settings: &crate::config::UserSettings,
) -> Result<Backend, MountError> {
    let backend = spec
        .backend
        .or(settings.backend)
        .unwrap_or_default()
        .resolve()?;
    // A Mac: what the backend needs must be installed (and compiled in).
    if cfg!(target_os = "macos") {
        let sys = crate::platform::macos::MacSystem::probe();
        crate::platform::macos::check_backend(backend, &sys, &spec.mountpoint)?;
    }
    Ok(backend)
}

/// Open the library of `spec` as a file system core (catalog checks and
/// migrations run here), refusing a backend this machine cannot serve.
pub fn open_fs(spec: &MountSpec) -> Result<Arc<MarkBaseFs>, MountError> {
    let settings = crate::config::user_settings(&spec.library.data_dir, &spec.library.user)?;
    backend_of(spec, &settings)?;
    // A Mac's Finder sends names in NFD: on a Mac the catalog keeps the NFC
    // the MarkBase app writes, as the NFS server does. Elsewhere a name is
    // kept byte for byte, as ext4 keeps it.
    let names = if cfg!(target_os = "macos") {
        NameForm::Nfc
    } else {
        NameForm::AsGiven
    };
    Ok(open_library(
        &spec.library,
        names,
        crate::fs::AppleDoubleView::ResourceFork,
    )?)
}

/// Run the daemon in this process until the file system is unmounted. When
/// `ready` is given, "ok" or the error is written to it once the mount is up
/// or has failed.
pub fn serve(spec: &MountSpec, ready: Option<OwnedFd>) -> Result<(), MountError> {
    let ready = ReadyPipe(Arc::new(Mutex::new(ready.map(File::from))));
    let result = serve_inner(spec, &ready);
    if let Err(e) = &result {
        ready.say(&e.to_string());
    }
    result
}

/// The pipe [`spawn_daemon`] waits on: one line, "ok" or why not, said once.
#[derive(Clone)]
struct ReadyPipe(Arc<Mutex<Option<File>>>);

impl ReadyPipe {
    fn say(&self, line: &str) {
        let taken = self.0.lock().take();
        if let Some(mut f) = taken {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn serve_inner(spec: &MountSpec, ready: &ReadyPipe) -> Result<(), MountError> {
    let settings = crate::config::user_settings(&spec.library.data_dir, &spec.library.user)?;
    let (mountpoint, kept) = mountpoint_for(spec, &settings)?;
    let ready = ready.clone();
    match backend_of(spec, &settings)? {
        Backend::Nfs => crate::nfs::service::serve_mounted(
            &spec.library,
            &mountpoint,
            kept,
            spec.metrics,
            move || ready.say("ok"),
        )
        .map_err(|e| MountError::Nfs(Box::new(e))),
        backend => serve_fuse(spec, &mountpoint, &settings, backend, ready),
    }
}

/// Where `spec` mounts, checked ([`usable_mountpoint`]); and whether it is
/// the NFS mount a dead server left, kept to be served again where it is
/// (the OS's client still holds it, and what waits on it goes on), which
/// only an NFS mount can do.
fn mountpoint_for(
    spec: &MountSpec,
    settings: &crate::config::UserSettings,
) -> Result<(PathBuf, bool), MountError> {
    let abs = absolute(&spec.mountpoint);
    if is_kept_nfs_mount(&abs) && backend_of(spec, settings)? == Backend::Nfs {
        return Ok((abs, true));
    }
    Ok((usable_mountpoint(&spec.mountpoint)?, false))
}

/// Is `mp` an NFS mount of ours whose server died (by the mount table and
/// its runtime record, without touching the mount)?
fn is_kept_nfs_mount(mp: &Path) -> bool {
    crate::platform::nfs_client::is_nfs_mounted(mp)
        && read_record(mp).is_some_and(|r| r.backend == Backend::Nfs.name() && !pid_alive(r.pid))
}

/// Without a FUSE front end (a macOS build without `macfuse`), nothing to serve.
#[cfg(not(fuse))]
fn serve_fuse(
    _spec: &MountSpec,
    _mountpoint: &Path,
    _settings: &crate::config::UserSettings,
    _backend: Backend,
    _ready: ReadyPipe,
) -> Result<(), MountError> {
    Err(MountError::NoFuse)
}

#[cfg(fuse)]
fn serve_fuse(
    spec: &MountSpec,
    mountpoint: &Path,
    settings: &crate::config::UserSettings,
    backend: Backend,
    ready: ReadyPipe,
) -> Result<(), MountError> {
    use crate::fuse::session::{FuseFrontEnd, FuseOptions};
    let mut backend_options = backend.mount_options();
    if cfg!(target_os = "macos") {
        // The volume's name, a stable fsid, large transfers, a patient timeout.
        backend_options.extend(crate::platform::macos::macfuse_options(
            &spec.library.user,
            true,
        ));
    }
    let opts = FuseOptions {
        user: spec.library.user.clone(),
        mountpoint: mountpoint.to_path_buf(),
        content_dir: spec.library.content_dir(),
        allow_other: spec.allow_other,
        read_only: settings.read_only == Some(true),
        threads: spec.threads,
        passthrough: spec.passthrough && backend.passthrough_possible(),
        backend_options,
        backend: backend.name(),
    };
    let front = FuseFrontEnd::new(opts, move || ready.say("ok"));
    Ok(crate::daemon::run(&spec.library, spec.metrics, front)?)
}

impl MountSpec {
    /// The arguments that make this binary serve `self` in the foreground.
    pub fn daemon_args(&self) -> Vec<String> {
        DaemonCommand {
            data_dir: self.library.data_dir.clone(),
            whom: Whom::User(self.library.user.clone()),
            dir: self.mountpoint.clone(),
            threads: Some(self.threads),
            allow_other: self.allow_other,
            passthrough: self.passthrough,
            backend: self.backend.map(|b| b.to_string()),
            metrics: self.metrics,
            smb: None,
        }
        .args()
    }
}

/// Start the daemon for `spec` (this binary, in the foreground, in its own
/// session) and return its pid once the mount answers.
pub fn spawn_daemon(spec: &MountSpec) -> Result<u32, MountError> {
    let settings = crate::config::user_settings(&spec.library.data_dir, &spec.library.user)?;
    let (mountpoint, _) = mountpoint_for(spec, &settings)?;
    // Fail here, in the user's terminal, for a bad catalog.
    drop(open_fs(spec)?);
    let log_path = spec.library.log_path();
    if let Some(d) = log_path.parent() {
        std::fs::create_dir_all(d).map_err(io_err(d.display().to_string()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(log_path.display().to_string()))?;
    // Both ends close on exec; the daemon's end is kept open for it below.
    let (r, w) = std::io::pipe().map_err(io_err("pipe"))?;
    let wfd = w.as_raw_fd();
    let exe = std::env::current_exe().map_err(io_err("current executable"))?;
    let mut cmd = Command::new(exe);
    cmd.args(spec.daemon_args())
        .env("MARKBASE_READY_FD", wfd.to_string())
        .env("MARKBASE_LOG_DIR", spec.library.log_dir())
        // The service manager hears from the supervisor, not from its daemons.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err("log"))?)
        .stderr(log);
    // SAFETY: between fork and exec the closure makes only
    // async-signal-safe calls (setsid, fcntl), allocates nothing, and
    // touches no lock; `wfd` is a descriptor this process owns until exec.
    unsafe {
        cmd.pre_exec(move || {
            let _ = nix::unistd::setsid();
            let fd = BorrowedFd::borrow_raw(wfd);
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err("start the mount daemon"))?;
    drop(w);
    let mut rf = File::from(OwnedFd::from(r));
    let mut msg = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            return Err(MountError::Daemon(format!(
                "no answer in 60 s; see the logs in {}",
                spec.library.log_dir().display()
            )));
        }
        let mut pfd = [PollFd::new(rf.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        if nix::poll::poll(&mut pfd, timeout).unwrap_or(0) <= 0 {
            continue;
        }
        match rf.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                msg.extend_from_slice(&buf[..n]);
                if msg.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("daemon pipe")(e)),
        }
    }
    let msg = String::from_utf8_lossy(&msg).trim().to_string();
    if msg != "ok" {
        let _ = child.wait();
        let why = if msg.is_empty() {
            format!(
                "it exited; see the logs in {}",
                spec.library.log_dir().display()
            )
        } else {
            msg
        };
        return Err(MountError::Daemon(why));
    }
    // The mount answers: its root is a different file system now.
    std::fs::metadata(&mountpoint).map_err(io_err(mountpoint.display().to_string()))?;
    Ok(child.id())
}

/// The ready pipe handed down by [`spawn_daemon`], if this process is a daemon.
pub fn ready_fd_from_env() -> Option<OwnedFd> {
    let fd: i32 = std::env::var("MARKBASE_READY_FD").ok()?.parse().ok()?;
    std::env::remove_var("MARKBASE_READY_FD");
    // SAFETY: F_GETFD on any number is harmless: it only tells whether
    // the descriptor is open.
    let open = fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    // SAFETY: the parent passed this open descriptor for this process alone,
    // and the variable naming it is gone: nothing else will close it.
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Flush and unmount the MarkBase mount at `dir`; clean it if its daemon is gone.
pub fn unmount(dir: &Path) -> Result<(), MountError> {
    let abs = absolute(dir);
    let found = markbase_mounts()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == abs || abs.canonicalize().is_ok_and(|c| c == m.mountpoint))
        .map(|m| m.mountpoint);
    let Some(mp) = found else {
        return unmount_nfs(&abs);
    };
    if let Some(rec) = read_record(&mp).filter(|r| pid_alive(r.pid)) {
        // The daemon flushes, then unmounts; with files still open the mount is
        // detached at once and the daemon serves those files until they close.
        let mut detached_at = None;
        return stop_daemon(rec.pid, &mp, "did not unmount", || {
            if markbase_mounts().iter().any(|m| m.mountpoint == mp) {
                return false;
            }
            let t = *detached_at.get_or_insert_with(Instant::now);
            let done = t.elapsed() > Duration::from_secs(2);
            if done {
                tracing::warn!(
                    "{}: unmounted; the daemon keeps serving files still open",
                    mp.display()
                );
            }
            done
        });
    }
    // No daemon: a dead mount (FUSE: "Transport endpoint is not connected";
    // NFS: "server not responding", and whatever waits on it hangs).
    crate::platform::force_unmount(&mp).map_err(io_err(format!("unmount {}", mp.display())))?;
    remove_record(&mp);
    Ok(())
}

/// Stop the daemon of a library mounted by the OS's NFS client at `abs`
/// (`--backend nfs`, known by its runtime record): it flushes, unmounts and
/// stops its server.
fn unmount_nfs(abs: &Path) -> Result<(), MountError> {
    let rec = read_record(abs)
        .or_else(|| abs.canonicalize().ok().and_then(|c| read_record(&c)))
        .filter(|r| r.backend == Backend::Nfs.name())
        .ok_or_else(|| MountError::NotMounted(abs.to_path_buf()))?;
    if !pid_alive(rec.pid) {
        remove_record(&rec.mountpoint);
        return Err(MountError::NotMounted(abs.to_path_buf()));
    }
    stop_daemon(rec.pid, abs, "(NFS) did not stop", || false)
}

/// SIGTERM to the daemon `pid` serving `mp`, then wait up to 60 s for it to
/// exit (it flushes first), or for `done` to say that waiting is over.
pub fn stop_daemon(
    pid: u32,
    mp: &Path,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), MountError> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if !pid_alive(pid) || done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(MountError::Daemon(format!(
        "{}: daemon {pid} {what} in 60 s",
        mp.display()
    )))
}

/// The counters of the mount at `dir` (JSON), read through its root xattr.
pub fn read_stats(dir: &Path) -> Result<String, MountError> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| MountError::NotMounted(dir.to_path_buf()))?;
    let name = std::ffi::CString::new(STATS_XATTR)
        .map_err(|_| MountError::NotMounted(dir.to_path_buf()))?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the given length.
    #[cfg(target_os = "linux")]
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    // SAFETY: as above; macOS adds a position (0) and options (none).
    #[cfg(target_os = "macos")]
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            0,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(crate::fs::NO_ATTR) | Some(libc::EOPNOTSUPP) => {
                MountError::NotMounted(dir.to_path_buf())
            }
            _ => MountError::Io(dir.display().to_string(), e),
        });
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
