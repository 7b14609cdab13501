//! What every front end's daemon runs, whichever protocol it serves: the
//! library opened as a file system core, the runtime record that
//! `--status` and `--unmount` read, the signal thread (SIGTERM and SIGINT:
//! flush every open file, then stop the front end), the recovery pass in the
//! background, and the catalog thread: every second it looks for changes
//! other processes (the MarkBase app) committed to the catalog, and it writes
//! the catalog size corrections `getattr` found.
//!
//! A front end (the FUSE session in `mount.rs`, the NFS server in `nfs/service.rs`) opens the
//! core with [`open_library`], starts its own listener, then calls
//! [`Daemon::start`] with a closure that stops that listener; the returned
//! [`Daemon`] stops its threads and removes the runtime record when dropped,
//! after the front end has stopped serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::sqlite::{OpenOptions, SqliteCatalog};
use crate::fs::{FsConfig, MarkBaseFs, NameForm};
use crate::library::Library;
use crate::store::ContentStore;

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
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Open a user's library as a file system core (for a mount, or `fsck`),
/// storing new names in the spelling `names` (the front end's choice).
pub fn open_library(library: &Library, names: NameForm) -> Result<Arc<MarkBaseFs>, DaemonError> {
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
            ..FsConfig::default()
        },
    )))
}

/// Content files younger than this are not orphans yet (a writer may be
/// about to commit their row).
pub const RECOVERY_GRACE: Duration = Duration::from_secs(60);

/// What the runtime file of a running mount says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub user: String,
    pub mountpoint: PathBuf,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub started_unix: u64,
    pub backend: String,
    /// An NFS-mounted library's server address (`--backend nfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Where runtime records live.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MARKBASE_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/markbase");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("markbase"),
        None => std::env::temp_dir().join(format!("markbase-{}", nix::unistd::geteuid())),
    }
}

/// A file name for what is served at `mountpoint` (a path, or an NFS
/// server's `nfs://ADDR/` name).
fn file_key(mountpoint: &Path) -> String {
    mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn record_path(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.json", file_key(mountpoint)))
}

fn address_path(key: &Path) -> PathBuf {
    runtime_dir()
        .join("addresses")
        .join(format!("{}.addr", file_key(key)))
}

/// Where the NFS server for `key` (the folder it is mounted on, or
/// [`serve_key`]) listened last. It outlives the server and its runtime
/// record: a server started again binds the same address, so that a mount
/// the OS's client kept (hard mounts outlive their server) reaches it, and
/// its file handles still work.
pub fn last_address(key: &Path) -> Option<std::net::SocketAddr> {
    std::fs::read_to_string(address_path(key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Note where the NFS server for `key` listens ([`last_address`]).
pub fn remember_address(key: &Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let p = address_path(key);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, p)
}

/// The [`last_address`] key of `markbase nfs --serve` for a user, mounted
/// by whoever chose to (a Mac's Finder, `mount_nfs`).
pub fn serve_key(library: &Library) -> PathBuf {
    let data = library
        .data_dir
        .canonicalize()
        .unwrap_or(library.data_dir.clone());
    PathBuf::from(format!("serve:{}:{}", data.display(), library.user))
}

/// Every runtime record of this machine (running daemons, and dead ones
/// that could not remove theirs).
pub fn records() -> Vec<RuntimeRecord> {
    std::fs::read_dir(runtime_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

pub fn read_record(mountpoint: &Path) -> Option<RuntimeRecord> {
    let text = std::fs::read_to_string(record_path(mountpoint)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_record(r: &RuntimeRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(runtime_dir())?;
    let p = record_path(&r.mountpoint);
    let tmp = p.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, p)
}

pub fn remove_record(mountpoint: &Path) {
    let _ = std::fs::remove_file(record_path(mountpoint));
}

/// Is `pid` a live (not zombie) process?
pub fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
}

/// A running daemon's own threads and record; dropping it (after the front
/// end stopped serving) stops the catalog thread and removes the record.
pub struct Daemon {
    stop: Arc<AtomicBool>,
    mountpoint: PathBuf,
}

impl Daemon {
    /// Start what every front end's daemon runs for `fs`, served at
    /// `record.mountpoint`: write the runtime record, handle SIGTERM and
    /// SIGINT (flush every open file, then `stop_front_end`), start the
    /// content pool's refill (unless read-only), the recovery pass and the
    /// catalog thread. Set the front end's notifier on `fs` first.
    pub fn start(
        fs: Arc<MarkBaseFs>,
        library: &Library,
        record: RuntimeRecord,
        read_only: bool,
        mut stop_front_end: impl FnMut() + Send + 'static,
    ) -> Result<Daemon, DaemonError> {
        if let Err(e) = write_record(&record) {
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
        remove_record(&self.mountpoint);
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

/// Seconds since the epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_under_the_runtime_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::env::set_var("MARKBASE_RUNTIME_DIR", dir.path());
        let mp = Path::new("/mnt/a b/c");
        let r = RuntimeRecord {
            user: "u".into(),
            mountpoint: mp.into(),
            pid: std::process::id(),
            data_dir: "/data".into(),
            started_unix: now_unix(),
            backend: "kernel".into(),
            address: None,
        };
        write_record(&r).expect("write");
        let back = read_record(mp).expect("read");
        assert_eq!((back.user.as_str(), back.pid), ("u", r.pid));
        assert!(record_path(mp).starts_with(dir.path()));
        remove_record(mp);
        assert!(read_record(mp).is_none());
        assert!(pid_alive(std::process::id()));
    }
}
