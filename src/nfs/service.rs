//! A user's library served over NFS as a daemon: the NFS front end that
//! [`daemon::run`] drives (the core opened, the runtime record, signals,
//! recovery and the catalog thread are the daemon's). Mounted by the OS's NFS client
//! (`--backend nfs`), the daemon also runs the mount command once the server
//! answers, unmounts before it stops, and stops when the mount is gone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::sync::unchecked::Mutex;
use std::time::Duration;

use super::{ServeError, ServeOptions, Server, Stopper};
use crate::daemon::{self, DaemonError, FrontEnd, Serving};
use crate::fs::{Caller, MarkBaseFs};
use crate::library::Library;
use crate::platform::nfs_client;

/// Errors of serving a library.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("mounting with the OS's NFS client: {0}")]
    Mount(String),
}

/// The first line `markbase nfs --serve` prints once clients can connect;
/// what starts a server as a child process reads its address from it
/// ([`addr_in_ready_line`]).
pub fn ready_line(user: &str, addr: SocketAddr) -> String {
    format!("serving {user} over NFSv3 at {addr} (export /)")
}

/// The address in a [`ready_line`], if `line` is one.
pub fn addr_in_ready_line(line: &str) -> Option<SocketAddr> {
    line.split(" at ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the runtime record names an NFS server by, in place of a mountpoint.
pub fn record_name(addr: SocketAddr) -> PathBuf {
    PathBuf::from(format!("nfs://{addr}/"))
}

/// Serve `library` until SIGTERM or SIGINT (which flush everything first);
/// `ready` is called with the bound address once clients can connect.
pub fn serve_library(
    library: &Library,
    opts: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServiceError> {
    serve_as(library, opts, None, ready)
}

/// Serve `library` on loopback and mount it on `mountpoint` with the OS's
/// NFS client (`markbase fuse --mount --backend nfs`); `ready` is called
/// once the mount answers. SIGTERM or SIGINT flush everything, unmount (the
/// client sends what it still holds first) and stop the server; so does the
/// mount going away (`umount`, Finder's eject).
///
/// The port is the one this mount point's server had last, if it is free
/// ([`daemon::last_address`]). `kept`: the mount is still there, left by a
/// server that died (hard mounts outlive their server). It is served again
/// as it is, on its old address, and what waited on it goes on; if that
/// address is taken, the kept mount is forced away and mounted afresh.
pub fn serve_mounted(
    library: &Library,
    mountpoint: &Path,
    kept: bool,
    metrics: Option<SocketAddr>,
    ready: impl FnOnce() + Send + 'static,
) -> Result<(), ServiceError> {
    let failed = Arc::new(Mutex::new(None));
    let mount = MountAt {
        mountpoint: mountpoint.to_path_buf(),
        kept,
        failed: failed.clone(),
        ready: Box::new(ready),
    };
    let opts = ServeOptions {
        metrics,
        ..ServeOptions::default()
    };
    let served = serve_as(library, &opts, Some(mount), |_| {});
    let why = failed.lock().take();
    match why {
        Some(why) => Err(ServiceError::Mount(why)),
        None => served,
    }
}

/// Where the OS's NFS client mounts the server, what to call once it
/// answers, and why it could not mount.
struct MountAt {
    mountpoint: PathBuf,
    /// Mounted already, by a server that died: do not mount again.
    kept: bool,
    failed: Arc<Mutex<Option<String>>>,
    ready: Box<dyn FnOnce() + Send>,
}

/// Run `cmd`; its error output (or how it failed to start) on failure.
fn run(cmd: &[String]) -> Result<(), String> {
    let (prog, args) = cmd.split_first().ok_or("empty command")?;
    match Command::new(prog).args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{prog}: {e}")),
    }
}

/// Unmount `mp` from the NFS client, detached if it is busy.
fn unmount(mp: &Path) {
    if let Err(e) = run(&nfs_client::unmount_command(mp, false)) {
        tracing::warn!("{e}; detaching");
        if let Err(e) = run(&nfs_client::unmount_command(mp, true)) {
            tracing::error!("{e}");
        }
    }
}

/// Mount the server at `addr` on `mount.mountpoint` (on its own thread: the
/// server must be answering while the client mounts), then watch the mount
/// and stop the server once it is gone.
fn mount_and_watch(addr: SocketAddr, mount: MountAt, stopper: Stopper) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("markbase-nfs-mount".into())
        .spawn(move || {
            let mp = &mount.mountpoint;
            if mount.kept {
                tracing::info!(
                    "{}: serving again the mount a stopped server left, at {addr}",
                    mp.display()
                );
            } else if let Err(why) = run(&nfs_client::mount_command(addr.port(), mp)) {
                *mount.failed.lock() = Some(why);
                stopper.stop();
                return;
            } else {
                tracing::info!("mounted at {} over NFSv3 from {addr}", mp.display());
            }
            (mount.ready)();
            while nfs_client::is_nfs_mounted(mp) {
                std::thread::sleep(MOUNT_WATCH);
            }
            tracing::info!("{}: unmounted; stopping the server", mp.display());
            stopper.stop();
        })
        .map(drop)
}

/// How often a mounted server checks that its mount is still there.
const MOUNT_WATCH: Duration = Duration::from_secs(1);

/// Where to listen: `opts.listen`, but for a free port asked (port 0), the
/// address the server for `key` had last, if it is free. And whether a kept
/// mount can be served where it is: it can only on its old address.
fn listen_address(opts: &ServeOptions, key: &Path, mount: Option<&mut MountAt>) -> SocketAddr {
    let mut listen = opts.listen;
    // Where the kept mount's server listened (its record, read once).
    let old = mount
        .as_ref()
        .filter(|m| m.kept)
        .and_then(|m| daemon::read_record(&m.mountpoint)?.address);
    if listen.port() == 0 {
        let kept = old.as_deref().and_then(|a| a.parse::<SocketAddr>().ok());
        match kept.or_else(|| daemon::last_address(key)) {
            Some(prev) if prev.ip() == listen.ip() && port_free(prev) => listen = prev,
            Some(prev) => tracing::warn!("{prev} is taken: serving on another port"),
            None => {}
        }
    }
    if let Some(m) = mount.filter(|m| m.kept) {
        if old.as_deref() != Some(listen.to_string().as_str()) {
            tracing::warn!(
                "{}: the mount a stopped server left cannot be reached on a new port: forcing it away",
                m.mountpoint.display()
            );
            if let Err(e) = crate::platform::force_unmount(&m.mountpoint) {
                tracing::warn!("{}: {e}", m.mountpoint.display());
            }
            m.kept = false;
        }
    }
    listen
}

/// Can a server listen on `addr` now?
fn port_free(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

fn serve_as(
    library: &Library,
    opts: &ServeOptions,
    mut mount: Option<MountAt>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServiceError> {
    opts.check()?;
    let key = match &mount {
        Some(m) => m.mountpoint.clone(),
        None => daemon::serve_key(library),
    };
    let opts = ServeOptions {
        listen: listen_address(opts, &key, mount.as_mut()),
        ..opts.clone()
    };
    let owner = crate::config::user_settings(&library.data_dir, &library.user)?.owner();
    let metrics = opts.metrics;
    let front = NfsFrontEnd {
        user: library.user.clone(),
        opts,
        owner,
        key,
        mount,
        ready: Some(ready),
        server: None,
        stopper: Stopper::default(),
    };
    daemon::run(library, metrics, front)
}

/// The NFS server as [`daemon::run`] drives it: bound at start, then the
/// OS's client mounts it (or `ready` is told its address), then it serves.
struct NfsFrontEnd<R> {
    user: String,
    opts: ServeOptions,
    owner: Caller,
    /// The [`daemon::last_address`] key.
    key: PathBuf,
    mount: Option<MountAt>,
    ready: Option<R>,
    server: Option<Server>,
    stopper: Stopper,
}

impl<R: FnOnce(SocketAddr)> FrontEnd for NfsFrontEnd<R> {
    type Error = ServiceError;

    /// A Mac's Finder sends names in NFD; the catalog keeps the NFC the
    /// MarkBase app writes (any NFS client: the rule is the server's, not
    /// a mount option's). Its clients are Macs: Spotlight is kept out.
    fn serves_macs(&self) -> bool {
        true
    }

    /// NFSv3 has no extended attributes: a Mac keeps them in `._name`.
    fn keeps_xattrs(&self) -> bool {
        false
    }

    fn backend(&self) -> &'static str {
        crate::platform::Backend::Nfs.name()
    }

    fn start(&mut self, fs: &Arc<MarkBaseFs>) -> Result<Serving, ServiceError> {
        let server = Server::bind(fs.clone(), self.owner, &self.opts)?;
        let addr = server.addr();
        self.server = Some(server);
        if let Err(e) = daemon::remember_address(&self.key, addr) {
            tracing::warn!("cannot note the server's address: {e}");
        }
        let stop = self.stopper.clone();
        let mounted = self.mount.as_ref().map(|m| m.mountpoint.clone());
        Ok(Serving {
            at: mounted.clone().unwrap_or_else(|| record_name(addr)),
            address: Some(addr),
            stop: Box::new(move || {
                if let Some(mp) = &mounted {
                    unmount(mp);
                }
                stop.stop()
            }),
        })
    }

    fn ready(&mut self) -> Result<(), ServiceError> {
        let Some(addr) = self.server.as_ref().map(Server::addr) else {
            return Ok(());
        };
        match self.mount.take() {
            None => {
                tracing::info!(user = %self.user, "serving over NFSv3 at {addr}");
                if let Some(ready) = self.ready.take() {
                    ready(addr);
                }
            }
            Some(m) => {
                let failed = m.failed.clone();
                if let Err(e) = mount_and_watch(addr, m, self.stopper.clone()) {
                    *failed.lock() = Some(format!("mount thread: {e}"));
                    self.stopper.stop();
                }
            }
        }
        Ok(())
    }

    fn serve(mut self) -> Result<(), ServiceError> {
        match self.server.take() {
            Some(server) => Ok(server.run(&self.stopper)?),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_its_address_back() {
        let addr: SocketAddr = "127.0.0.1:20490".parse().expect("addr");
        assert_eq!(addr_in_ready_line(&ready_line("warren", addr)), Some(addr));
        assert_eq!(addr_in_ready_line("markbase: no such user"), None);
    }
}
