//! The NFSv3 front end: one user's library served over NFSv3 (with MOUNT
//! and portmap on the same TCP port), for the Mac's own NFS client, Linux
//! boxes without /dev/fuse, and the other machines of a studio.
//!
//! The protocol is `nfs3_server` (Vaiz/nfs3), vendored in
//! `vendor/nfs3_server` with the patches listed in its `PATCHES.md`: this
//! module only implements its file-system traits, in `vfs.rs`, by calling
//! the same core as the FUSE adapter. What a stateless protocol needs that
//! FUSE does not (I/O without open handles, cookies that survive changes,
//! STALE apart from NOENT, exclusive create, permission checks) is in the
//! core (`fs/stateless.rs`), not here.
//!
//! * File handles are the library's identity (a UUID kept in the catalog)
//!   and the inode number: they survive a restart of the server.
//! * WRITE answers UNSTABLE when asked UNSTABLE (the data is in the page
//!   cache, the size in memory) and COMMIT makes it durable; the write
//!   verifier changes at each start, so a client resends what a crash may
//!   have lost. FILE_SYNC and DATA_SYNC writes are durable before the answer.
//! * Leases (open handles kept for NFS's handle-less I/O) idle for
//!   [`LEASE_IDLE`] are released, which commits sizes and times to the
//!   catalog; all are released when the server stops.
//! * Connections are checked against the allow-list when accepted
//!   (`allow.rs`); loopback only unless other networks are named.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nfs3_server::tcp::{NFSTcp, NFSTcpListener};

pub mod allow;
pub mod convert;
pub mod service;
pub mod vfs;

pub use allow::AllowList;
pub use vfs::MarkBaseNfs;

use crate::fs::{Caller, MarkBaseFs};

/// A lease not used for this long is released (its size and times reach
/// the catalog then, if COMMIT did not do it before).
pub const LEASE_IDLE: Duration = Duration::from_secs(30);

/// The first 8 bytes of every file handle (`nfs3_server` stamps them): a
/// format number, fixed, so that handles survive a restart. Handles from
/// another library are told apart by the library's identity after it.
const HANDLE_FORMAT: u64 = 1;

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "serving on {0} reaches other machines: name them with --allow-clients CIDR,... \
         (AUTH_SYS authenticates nobody; beyond a trusted LAN use a VPN or an SSH tunnel)"
    )]
    NoAllowList(SocketAddr),
    #[error("only IPv4 addresses can be served on ({0})")]
    NotIpv4(SocketAddr),
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
}

/// Where and to whom to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub allow: AllowList,
    /// `--metrics ADDR`: the server's counters in OpenMetrics text.
    pub metrics: Option<SocketAddr>,
}

impl Default for ServeOptions {
    /// Loopback, a free port, no other machine allowed.
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow: AllowList::loopback(),
            metrics: None,
        }
    }
}

impl ServeOptions {
    /// Refuse what would expose a library by mistake: a non-loopback
    /// address without an allow-list.
    pub fn check(&self) -> Result<(), ServeError> {
        if !self.listen.is_ipv4() {
            return Err(ServeError::NotIpv4(self.listen));
        }
        if !self.listen.ip().is_loopback() && self.allow.is_loopback_only() {
            return Err(ServeError::NoAllowList(self.listen));
        }
        Ok(())
    }
}

/// A way to stop a running server from another thread (a signal handler).
#[derive(Clone, Default)]
pub struct Stopper(Arc<tokio::sync::Notify>);

impl Stopper {
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

/// Threads that may run requests at once beyond the runtime's workers.
/// Each request runs on the core in `block_in_place`, which hands the
/// worker's other tasks to a thread of the blocking pool; unbounded (512),
/// that pool kept growing under a steady soak, as requests rotated through
/// threads faster than idle ones retire, and each thread kept its stack
/// and a malloc arena: 16 -> 33 threads and 42 -> 56 MiB in six minutes.
/// Sixteen requests blocked at once is more than two cores and a disk need.
const BLOCKING_THREADS: usize = 16;

/// Serve `fs` as `owner` until `stopper` is stopped; `ready` is called
/// with the address actually bound (the port chosen if 0 was asked). On
/// the way out every lease is released and every open file committed.
pub fn serve(
    fs: Arc<MarkBaseFs>,
    owner: Caller,
    opts: &ServeOptions,
    stopper: &Stopper,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let server = Server::bind(fs, owner, opts)?;
    ready(server.addr());
    server.run(stopper)
}

/// A bound server, not answering yet: [`Server::run`] serves.
pub struct Server {
    fs: Arc<MarkBaseFs>,
    rt: tokio::runtime::Runtime,
    listener: NFSTcpListener<MarkBaseNfs>,
    addr: SocketAddr,
}

impl Server {
    /// Bind `opts.listen` for `fs`, served as `owner`.
    pub fn bind(
        fs: Arc<MarkBaseFs>,
        owner: Caller,
        opts: &ServeOptions,
    ) -> Result<Server, ServeError> {
        opts.check()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("markbase-nfs")
            .max_blocking_threads(BLOCKING_THREADS)
            .build()
            .map_err(|e| ServeError::Io("tokio runtime", e))?;
        let vfs = MarkBaseNfs::new(fs.clone(), owner, opts.allow.clone());
        let listener = rt
            .block_on(NFSTcpListener::bind_with_generation(
                &opts.listen.to_string(),
                vfs,
                HANDLE_FORMAT,
            ))
            .map_err(|e| ServeError::Io("bind", e))?;
        let addr = SocketAddr::new(opts.listen.ip(), listener.get_listen_port());
        Ok(Server {
            fs,
            rt,
            listener,
            addr,
        })
    }

    /// The address bound (the port chosen if 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer clients until `stopper` is stopped; then release every lease
    /// and commit every open file.
    pub fn run(self, stopper: &Stopper) -> Result<(), ServeError> {
        let Server {
            fs, rt, listener, ..
        } = self;
        let stop = stopper.0.clone();
        let leased = fs.clone();
        // The listener moves into the task, and is dropped (which tells its
        // connections to stop) before the runtime shuts down.
        let result = rt.block_on(async move {
            let retire = {
                let fs = leased;
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(LEASE_IDLE / 6);
                    loop {
                        tick.tick().await;
                        let fs = fs.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || fs.retire_leases(LEASE_IDLE)).await;
                    }
                })
            };
            let r = tokio::select! {
                r = listener.handle_forever() => r.map_err(|e| ServeError::Io("accept", e)),
                () = stop.notified() => Ok(()),
            };
            retire.abort();
            r
        });
        rt.shutdown_timeout(Duration::from_secs(5));
        let n = fs.retire_leases(Duration::ZERO);
        if let Err(e) = fs.flush_all() {
            tracing::error!("flushing on stop: {e}");
        }
        tracing::info!(leases = n, "NFS server stopped");
        result
    }
}
