//! The mount manager: every user of a data directory at once.
//!
//! One daemon process per user mount (so that one user's crash, SIGKILL, hang
//! or full disk leaves every other mount working), started in parallel; the
//! manager returns when each has answered or failed, and reports per user.
//! `status` joins the kernel's mount table with the daemons' runtime records
//! and asks each live mount for its counters (with a timeout, so a hung
//! daemon cannot hang `status`). A mount whose daemon is gone is reported
//! `dead`, and `--mount` over it or `--unmount` of it cleans it up.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::daemon;
use crate::library::Library;
use crate::mount::{self, MountError, MountSpec};

/// Users with a catalog in `data_dir` (`users/*.sqlite`), sorted.
pub fn users(data_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join("users"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_suffix(".sqlite").map(str::to_string)
                })
                .filter(|u| Library::new(data_dir, u).is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Where `--mount --all --dir BASE` mounts a user.
pub fn mountpoint_for(base: &Path, user: &str) -> PathBuf {
    base.join(format!("MarkBase_{user}"))
}

/// The outcome of mounting one user.
#[derive(Debug)]
pub struct Mounted {
    pub user: String,
    pub mountpoint: PathBuf,
    pub result: Result<u32, MountError>,
}

/// Mount each of `specs` in parallel (one daemon each); wait for all.
pub fn mount_many(specs: Vec<MountSpec>) -> Vec<Mounted> {
    let (tx, rx) = mpsc::channel();
    let n = specs.len();
    for spec in specs {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Some(dir) = spec.mountpoint.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::create_dir(&spec.mountpoint);
            let result = mount::spawn_daemon(&spec);
            let _ = tx.send(Mounted {
                user: spec.library.user.clone(),
                mountpoint: spec.mountpoint.clone(),
                result,
            });
        });
    }
    drop(tx);
    let mut out: Vec<Mounted> = rx.iter().take(n).collect();
    out.sort_by(|a, b| a.user.cmp(&b.user));
    out
}

/// Unmount each of `dirs` in parallel.
pub fn unmount_many(dirs: Vec<PathBuf>) -> Vec<(PathBuf, Result<(), MountError>)> {
    let handles: Vec<_> = dirs
        .into_iter()
        .map(|d| std::thread::spawn(move || (d.clone(), mount::unmount(&d))))
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}

/// One mount as `markbase fuse --status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MountStatus {
    pub user: String,
    pub mountpoint: PathBuf,
    pub pid: Option<u32>,
    /// `mounted`, `dead` (daemon gone), `unresponsive` (no answer in 1 s),
    /// or `serving` (an NFS server; its address is the mountpoint).
    pub state: String,
    pub backend: String,
    pub uptime_s: u64,
    pub open_files: Option<u64>,
    pub bytes_read: Option<u64>,
    pub bytes_written: Option<u64>,
    pub cache_hit_rate: Option<f64>,
    /// The NFS server's address (`--backend nfs`, `markbase nfs --serve`).
    pub address: Option<String>,
}

fn stats_with_timeout(dir: &Path, timeout: Duration) -> Option<Result<serde_json::Value, ()>> {
    let (tx, rx) = mpsc::channel();
    let d = dir.to_path_buf();
    std::thread::spawn(move || {
        let r = mount::read_stats(&d)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or(());
        let _ = tx.send(r);
    });
    rx.recv_timeout(timeout).ok()
}

/// Every MarkBase mount of this machine.
pub fn status() -> Vec<MountStatus> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Vec::new();
    for m in mount::markbase_mounts() {
        let rec = daemon::read_record(&m.mountpoint);
        let alive = rec.as_ref().is_some_and(|r| daemon::pid_alive(r.pid));
        let (state, stats) = if !alive {
            ("dead".to_string(), None)
        } else {
            match stats_with_timeout(&m.mountpoint, Duration::from_secs(1)) {
                Some(Ok(v)) => ("mounted".to_string(), Some(v)),
                Some(Err(())) => ("dead".to_string(), None),
                None => ("unresponsive".to_string(), None),
            }
        };
        let g = |k: &str| {
            stats
                .as_ref()
                .and_then(|s| s.get(k))
                .and_then(|v| v.as_u64())
        };
        out.push(MountStatus {
            user: m.user().unwrap_or("?").to_string(),
            mountpoint: m.mountpoint.clone(),
            pid: rec.as_ref().map(|r| r.pid),
            state,
            backend: rec
                .as_ref()
                .map(|r| r.backend.clone())
                .unwrap_or_else(|| "kernel".into()),
            uptime_s: rec
                .as_ref()
                .map(|r| now.saturating_sub(r.started_unix))
                .unwrap_or(0),
            open_files: g("open_files"),
            bytes_read: g("bytes_read"),
            bytes_written: g("bytes_written"),
            cache_hit_rate: stats
                .as_ref()
                .and_then(|s| s.get("cache_hit_rate"))
                .and_then(|v| v.as_f64()),
            address: None,
        });
    }
    // NFS servers have no FUSE mount: their records name them
    // (`nfs://ADDR:PORT/`), or the folder the OS's NFS client mounted them
    // on (`--mount --backend nfs`).
    for r in daemon::records().into_iter().filter(|r| r.backend == "nfs") {
        let alive = daemon::pid_alive(r.pid);
        if !alive {
            daemon::remove_record(&r.mountpoint);
            continue;
        }
        out.push(MountStatus {
            user: r.user.clone(),
            mountpoint: r.mountpoint.clone(),
            pid: Some(r.pid),
            state: if r.mountpoint.starts_with("nfs:") {
                "serving".into()
            } else {
                "mounted".into()
            },
            backend: r.backend.clone(),
            uptime_s: now.saturating_sub(r.started_unix),
            open_files: None,
            bytes_read: None,
            bytes_written: None,
            cache_hit_rate: None,
            address: r.address.clone(),
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user).then(a.mountpoint.cmp(&b.mountpoint)));
    out
}

/// Mount points of the MarkBase mounts serving `user`.
pub fn mounts_of(user: &str) -> Vec<PathBuf> {
    mount::markbase_mounts()
        .into_iter()
        .filter(|m| m.user() == Some(user))
        .map(|m| m.mountpoint)
        .collect()
}

/// Mount points of the MarkBase mounts served from `data_dir` (by their
/// runtime records; a mount without one counts when its user has a catalog
/// there).
pub fn mounts_in(data_dir: &Path) -> Vec<PathBuf> {
    let canon = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let here = users(data_dir);
    mount::markbase_mounts()
        .into_iter()
        .filter(|m| match daemon::read_record(&m.mountpoint) {
            Some(r) => r.data_dir == canon,
            None => m.user().is_some_and(|u| here.iter().any(|h| h == u)),
        })
        .map(|m| m.mountpoint)
        .collect()
}

/// `--mount --all --foreground`: mount every user, then stay: SIGHUP re-reads
/// the users (new catalogs mounted, removed ones unmounted), SIGTERM/SIGINT
/// unmount every mount (each daemon flushes its open files first) and return.
pub fn supervise(
    data_dir: &Path,
    spec_for: impl Fn(&str) -> Result<MountSpec, MountError>,
) -> Result<(), MountError> {
    use std::collections::BTreeMap;
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
            .map_err(|e| MountError::Io("signal handlers".into(), e))?;
    let mut mounted: BTreeMap<String, PathBuf> = BTreeMap::new();
    let sync = |mounted: &mut BTreeMap<String, PathBuf>| {
        let want = users(data_dir);
        let gone: Vec<String> = mounted
            .keys()
            .filter(|u| !want.contains(u))
            .cloned()
            .collect();
        for (dir, r) in unmount_many(
            gone.iter()
                .filter_map(|u| mounted.get(u).cloned())
                .collect(),
        ) {
            match r {
                Ok(()) => tracing::info!("unmounted {} (catalog removed)", dir.display()),
                Err(e) => tracing::error!("unmount {}: {e}", dir.display()),
            }
        }
        for u in gone {
            mounted.remove(&u);
        }
        let specs: Vec<MountSpec> = want
            .iter()
            .filter(|u| !mounted.contains_key(*u))
            .filter_map(|u| spec_for(u).map_err(|e| tracing::error!("{u}: {e}")).ok())
            .collect();
        for m in mount_many(specs) {
            match m.result {
                Ok(pid) => {
                    tracing::info!(user = %m.user, pid, "mounted at {}", m.mountpoint.display());
                    mounted.insert(m.user, m.mountpoint);
                }
                Err(e) => tracing::error!(user = %m.user, "mount failed: {e}"),
            }
        }
    };
    sync(&mut mounted);
    for sig in signals.forever() {
        if sig == libc::SIGHUP {
            tracing::info!("SIGHUP: re-reading the users of {}", data_dir.display());
            sync(&mut mounted);
            continue;
        }
        tracing::info!(signal = sig, "unmounting every mount");
        for (dir, r) in unmount_many(mounted.values().cloned().collect()) {
            if let Err(e) = r {
                tracing::error!("unmount {}: {e}", dir.display());
            }
        }
        return Ok(());
    }
    Ok(())
}
