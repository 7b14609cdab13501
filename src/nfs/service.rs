//! A user's library served over NFS as a daemon: the core opened as for a
//! mount, the server started, and the daemon's common parts around it
//! (runtime record for `--status`, signals that flush and stop, the
//! recovery pass, the catalog thread).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{serve, ServeError, ServeOptions, Stopper};
use crate::daemon::{self, open_library, Daemon, DaemonError, RuntimeRecord};
use crate::fs::Caller;
use crate::library::Library;

/// Errors of serving a library.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
    opts.check()?;
    let settings = crate::config::user_settings(&library.data_dir, &library.user)?;
    let owner = Caller {
        uid: settings
            .uid
            .unwrap_or_else(|| nix::unistd::getuid().as_raw()),
        gid: settings
            .gid
            .unwrap_or_else(|| nix::unistd::getgid().as_raw()),
    };
    let read_only = settings.read_only == Some(true);
    let fs = open_library(library)?;
    // Inodes a killed server left unlinked but open (a removed file still
    // leased) are freed now, as a FUSE mount does at init.
    match fs.recover() {
        Ok(0) => {}
        Ok(n) => tracing::info!("freed {n} inode(s) removed while in use before a crash"),
        Err(e) => tracing::warn!("freeing inodes removed while in use: {e}"),
    }
    let stopper = Stopper::default();
    let mut daemon: Option<Result<Daemon, DaemonError>> = None;
    serve(fs.clone(), owner, opts, &stopper, |addr| {
        let record = RuntimeRecord {
            user: library.user.clone(),
            mountpoint: record_name(addr),
            pid: std::process::id(),
            data_dir: library
                .data_dir
                .canonicalize()
                .unwrap_or(library.data_dir.clone()),
            started_unix: daemon::now_unix(),
            backend: "nfs".into(),
        };
        let stop = stopper.clone();
        let started = Daemon::start(fs.clone(), library, record, read_only, move || stop.stop());
        if started.is_ok() {
            tracing::info!(user = %library.user, "serving over NFSv3 at {addr}");
            ready(addr);
        } else {
            stopper.stop();
        }
        daemon = Some(started);
    })?;
    match daemon {
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
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
