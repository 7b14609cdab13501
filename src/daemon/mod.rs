//! What every front end's daemon process runs, whichever protocol it
//! serves. [`run`] drives a [`FrontEnd`] (the FUSE session, the NFS
//! server), which only starts serving and stops; the rest is here, once:
//!
//! * the library opened as a file system core ([`open_library`]), in the
//!   name form the front end's clients need;
//! * inodes a killed daemon left unlinked but open, freed before the first
//!   request; `.metadata_never_index` for a Mac's clients;
//! * the metrics endpoint (`--metrics`), the runtime record that
//!   `--status` and `--unmount` read ([`record`]), and the service
//!   manager's READY;
//! * the signal thread (SIGTERM and SIGINT: flush every open file, then
//!   stop the front end), the recovery pass in the background, and the
//!   catalog thread: every second it looks for changes other processes (the
//!   MarkBase app) committed to the catalog, and it writes the catalog size
//!   corrections `getattr` found.
//!
//! The front ends sit above this module and the supervisor
//! (`manage::manager`) above them; nothing here knows a protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::sqlite::{OpenOptions, SqliteCatalog};
use crate::fs::{AppleDoubleView, FsConfig, MarkBaseFs, NameForm};
use crate::library::Library;
use crate::store::ContentStore;

pub mod metrics;
pub mod record;

pub use record::{
    last_address, now_unix, pid_alive, read_record, records, remember_address, remove_record,
    runtime_dir, serve_key, write_record, RuntimeRecord,
};

/// Errors of opening a library and starting a daemon; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// A protocol's server as [`run`] drives it: started for a core, told when
/// the daemon around it is up, then serving until stopped.
pub trait FrontEnd {
    /// The front end's own failures; a daemon's are one of them.
    type Error: From<DaemonError>;

    /// Are the clients Macs (macFUSE, a Mac's NFS client)? Then new names
    /// are stored in NFC (a Mac's Finder sends NFD; the MarkBase app writes
    /// NFC), and Spotlight is kept out of the library. Elsewhere a name is
    /// kept byte for byte, as ext4 keeps it.
    fn serves_macs(&self) -> bool;

    /// Do its clients keep extended attributes themselves (FUSE's
    /// `getxattr`)? Then the core's `._name` files hold a resource fork
    /// alone, as Samba's `vfs_fruit` wants them on a FUSE mount; if not
    /// (NFSv3), they hold every Mac attribute ([`AppleDoubleView`]).
    fn keeps_xattrs(&self) -> bool;

    /// What the runtime record calls this front end (`--status`'s backend).
    fn backend(&self) -> &'static str;

    /// Start answering for `fs` (mount, bind), and say where it is served
    /// and how to stop it.
    fn start(&mut self, fs: &Arc<MarkBaseFs>) -> Result<Serving, Self::Error>;

    /// The daemon is up (record written, signals handled): tell whoever
    /// waits for the front end (a ready pipe, the OS's NFS client).
    fn ready(&mut self) -> Result<(), Self::Error>;

    /// Serve until stopped (by the [`Serving::stop`] given, or on its own).
    fn serve(self) -> Result<(), Self::Error>;
}

/// Where a started front end serves, and how to stop it.
pub struct Serving {
    /// The folder it is mounted on, or a server's `nfs://ADDR/` name: the
    /// runtime record's key.
    pub at: PathBuf,
    /// A server's address.
    pub address: Option<SocketAddr>,
    /// Stop serving (called on SIGTERM or SIGINT, after every open file
    /// was flushed).
    pub stop: Box<dyn FnMut() + Send>,
}

/// Run a daemon for `library` served by `front` until it stops; `metrics`:
/// where to serve its counters.
pub fn run<F: FrontEnd>(
    library: &Library,
    metrics: Option<SocketAddr>,
    mut front: F,
) -> Result<(), F::Error> {
    let settings = crate::config::user_settings(&library.data_dir, &library.user)
        .map_err(DaemonError::from)?;
    let read_only = settings.read_only == Some(true);
    let names = if front.serves_macs() {
        NameForm::Nfc
    } else {
        NameForm::AsGiven
    };
    let appledouble = if front.keeps_xattrs() {
        AppleDoubleView::ResourceFork
    } else {
        AppleDoubleView::Everything
    };
    let fs = open_library(library, names, appledouble)?;
    // Inodes a killed daemon left unlinked but open (a removed file still
    // open, or leased by an NFS client) are freed before the first request.
    match fs.recover() {
        Ok(0) => {}
        Ok(n) => tracing::info!("recovery: freed {n} inode(s) removed while in use before a crash"),
        Err(e) => tracing::warn!("recovery: freeing inodes removed while in use: {e}"),
    }
    if front.serves_macs() && !read_only {
        // Keep Spotlight from crawling the library.
        if let Err(e) = fs.mark_not_indexed(settings.owner()) {
            tracing::warn!("{}: {e}", crate::fs::NOT_INDEXED);
        }
    }
    if let Some(addr) = metrics {
        metrics::serve_fs(addr, &library.user, fs.clone()).map_err(DaemonError::from)?;
    }
    let serving = front.start(&fs)?;
    let record = RuntimeRecord {
        user: library.user.clone(),
        mountpoint: serving.at.clone(),
        pid: std::process::id(),
        data_dir: library
            .data_dir
            .canonicalize()
            .unwrap_or(library.data_dir.clone()),
        started_unix: now_unix(),
        backend: front.backend().into(),
        address: serving.address.map(|a| a.to_string()),
    };
    let _daemon = Daemon::start(fs, library, record, read_only, serving.stop)?;
    front.ready()?;
    // A single daemon run as a service (`Type=notify`).
    let status = format!("serving {} at {}", library.user, serving.at.display());
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    front.serve()
}

/// Open a user's library as a file system core (for a mount, or `fsck`),
/// storing new names in the spelling `names` and showing `._name` files as
/// `appledouble` says (the front end's choices).
pub fn open_library(
    library: &Library,
    names: NameForm,
    appledouble: AppleDoubleView,
) -> Result<Arc<MarkBaseFs>, DaemonError> {
    let path = library.existing_catalog()?;
    let settings = crate::config::user_settings(&library.data_dir, &library.user)?;
    let owner = settings.owner();
    let catalog = SqliteCatalog::open(
        &path,
        &OpenOptions {
            uid: owner.uid,
            gid: owner.gid,
            create: false,
        },
    )?;
    let mut roots = vec![library.media_dir()];
    roots.extend(settings.media_roots);
    let store = ContentStore::new(&library.content_dir(), &roots)?;
    Ok(Arc::new(MarkBaseFs::new(
        Arc::new(catalog),
        store,
        FsConfig {
            quota: settings.quota,
            names,
            appledouble,
            ..FsConfig::default()
        },
    )))
}

/// Content files younger than this are not orphans yet (a writer may be
/// about to commit their row).
pub const RECOVERY_GRACE: Duration = Duration::from_secs(60);

/// A running daemon's own threads and record; dropping it (after the front
/// end stopped serving) stops the catalog thread and removes the record.
struct Daemon {
    stop: Arc<AtomicBool>,
    mountpoint: PathBuf,
}

impl Daemon {
    /// Start what every front end's daemon runs for `fs`, served at
    /// `record.mountpoint`: write the runtime record, handle SIGTERM and
    /// SIGINT (flush every open file, then `stop_front_end`), start the
    /// content pool's refill (unless read-only), the recovery pass and the
    /// catalog thread. Set the front end's notifier on `fs` first.
    fn start(
        fs: Arc<MarkBaseFs>,
        library: &Library,
        record: RuntimeRecord,
        read_only: bool,
        mut stop_front_end: Box<dyn FnMut() + Send>,
    ) -> Result<Daemon, DaemonError> {
        if let Err(e) = record::write_record(&record) {
            tracing::warn!("cannot write runtime record: {e}");
        }
        let mountpoint = record.mountpoint.clone();
        let (sig_fs, sig_mp) = (fs.clone(), mountpoint.clone());
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
                .map_err(|e| DaemonError::Io("signal handlers", e))?;
        std::thread::Builder::new()
            .name("markbase-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == libc::SIGHUP {
                        tracing::info!("SIGHUP: nothing to reload for a single mount");
                        continue;
                    }
                    tracing::info!(signal = sig, "flushing and stopping {}", sig_mp.display());
                    if let Err(e) = sig_fs.flush_all() {
                        tracing::error!("flush before unmount: {e}");
                    }
                    stop_front_end();
                }
            })
            .map_err(|e| DaemonError::Io("signal thread", e))?;
        if !read_only {
            fs.store().start_pool_refill();
        }
        spawn_recovery(fs.clone(), library.lost_found_dir());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (fs, stop) = (fs, stop.clone());
            std::thread::Builder::new()
                .name("markbase-catalog".into())
                .spawn(move || watch_catalog(&fs, &stop))
                .map_err(|e| DaemonError::Io("catalog thread", e))?;
        }
        Ok(Daemon { stop, mountpoint })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        record::remove_record(&self.mountpoint);
    }
}

/// Every [`CATALOG_POLL`]: changes other processes committed to the catalog
/// (dropped from the caches and reported to the front end); every other
/// tick, the size corrections `getattr` found.
fn watch_catalog(fs: &MarkBaseFs, stop: &AtomicBool) {
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = fs.poll_catalog() {
            tracing::warn!("watching the catalog: {e}");
        }
        if tick % 2 == 1 {
            if let Err(e) = fs.flush_size_fixes() {
                tracing::warn!("catalog size corrections: {e}");
            }
        }
        tick += 1;
        std::thread::sleep(CATALOG_POLL);
    }
}

/// How often the daemon looks for changes other processes made to the catalog.
pub const CATALOG_POLL: Duration = Duration::from_secs(1);

/// The recovery pass: content files a killed daemon left without a row,
/// names without inodes, locations of vanished files. In the background, so
/// that the front end answers at once.
fn spawn_recovery(fs: Arc<MarkBaseFs>, lost_found: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("markbase-recovery".into())
        .spawn(move || {
            // Behind the mount's first requests, not beside them.
            crate::platform::background_priority();
            let opts = crate::fs::check::CheckOpts {
                repair: true,
                offline: false,
                grace: RECOVERY_GRACE,
                lost_found,
            };
            match fs.check(&opts) {
                Ok(r) => {
                    for l in &r.repaired {
                        tracing::warn!("recovery: {l}");
                    }
                    for l in &r.notes {
                        tracing::info!("catalog: {l}");
                    }
                }
                Err(e) => tracing::warn!("recovery pass: {e}"),
            }
        });
}
