//! The mount manager: every user of a data directory at once.
//!
//! One daemon process per user mount (so that one user's crash, SIGKILL, hang
//! or full disk leaves every other mount working), started in parallel; the
//! manager returns when each has answered or failed, and reports per user.
//! `status` joins the kernel's mount table with the daemons' runtime records
//! and asks each live mount for its counters (with a timeout, so a hung
//! daemon cannot hang `status`). A mount whose daemon is gone is reported
//! `dead`, and `--mount` over it or `--unmount` of it cleans it up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::daemon;
use crate::fs::Stats;
use crate::library::Library;
use crate::manage::mount::{self, MountError, MountSpec};

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
    /// Share of the requests that reached the daemon answered without a
    /// catalog query (from its caches or its journal).
    pub answered_in_memory: Option<f64>,
    /// Requests served, and of them failed.
    pub requests: Option<u64>,
    pub errors: Option<u64>,
    /// The NFS server's address (`--backend nfs`, `markbase nfs --serve`).
    pub address: Option<String>,
}

/// A mount's counters (the stats xattr), or `None` if it did not answer in
/// `timeout`; `Some(Err)` if it answered with nothing readable.
fn stats_with_timeout(dir: &Path, timeout: Duration) -> Option<Result<Stats, ()>> {
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
    let mounted = mount::markbase_mounts();
    for m in &mounted {
        let rec = daemon::read_record(&m.mountpoint);
        if rec.as_ref().is_some_and(|r| r.backend == "nfs") {
            // An NFS mount: its record, below, says it all (an NFS client
            // carries no extended attributes to read counters through).
            continue;
        }
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
            open_files: stats.as_ref().map(|s| s.open_files),
            bytes_read: stats.as_ref().map(|s| s.bytes_read),
            bytes_written: stats.as_ref().map(|s| s.bytes_written),
            cache_hit_rate: stats.as_ref().map(|s| s.cache_hit_rate),
            answered_in_memory: stats.as_ref().map(|s| s.requests.without_catalog_share()),
            requests: stats.as_ref().map(|s| s.requests.total),
            errors: stats.as_ref().map(|s| s.requests.failed()),
            address: None,
        });
    }
    // NFS servers have no FUSE mount: their records name them
    // (`nfs://ADDR:PORT/`), or the folder the OS's NFS client mounted them
    // on (`--mount --backend nfs`).
    for r in daemon::records().into_iter().filter(|r| r.backend == "nfs") {
        let alive = daemon::pid_alive(r.pid);
        // A server that died under its mount leaves the mount (hard: what
        // reads it waits): shown as dead until it is served again or
        // unmounted. Any other dead server's record goes.
        let dead_mount = !alive && mounted.iter().any(|m| m.mountpoint == r.mountpoint);
        if !alive && !dead_mount {
            daemon::remove_record(&r.mountpoint);
            continue;
        }
        out.push(MountStatus {
            user: r.user.clone(),
            mountpoint: r.mountpoint.clone(),
            pid: Some(r.pid),
            state: if dead_mount {
                "dead".into()
            } else if r.mountpoint.starts_with("nfs:") {
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
            answered_in_memory: None,
            requests: None,
            errors: None,
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

/// What the supervisor serves besides the mounts.
#[derive(Default)]
pub struct SuperviseOpts {
    /// `--metrics ADDR`: every mount's counters in OpenMetrics text.
    pub metrics: Option<std::net::SocketAddr>,
    /// A server over the units (`--smb`: Samba over the mounts).
    pub companion: Option<Box<dyn Companion>>,
}

/// A server the supervisor runs over the units it keeps (Samba over the
/// mounts, [`super::samba`]): it serves what is up, is looked after as the
/// units are, and stops before they do.
pub trait Companion: Sync {
    /// Serve these units (user -> key) from now on: at the start, after
    /// each SIGHUP, and before a unit stops.
    fn serve(&self, units: &BTreeMap<String, PathBuf>);
    /// Start it again if it died (called every second).
    fn look_after(&self);
    /// Stop it (before the units stop).
    fn stop(&self);
}

/// Tell the service manager (systemd's `NOTIFY_SOCKET`, when set).
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("telling the service manager: {e}");
    }
}

/// Each mounted user's counters, asked with a timeout.
fn samples(mounted: &BTreeMap<String, PathBuf>) -> Vec<crate::daemon::metrics::Sample> {
    let asks: Vec<_> = mounted
        .iter()
        .map(|(u, dir)| {
            let (u, dir) = (u.clone(), dir.clone());
            std::thread::spawn(move || {
                let stats = stats_with_timeout(&dir, Duration::from_secs(1)).and_then(Result::ok);
                crate::daemon::metrics::Sample { user: u, stats }
            })
        })
        .collect();
    asks.into_iter().filter_map(|h| h.join().ok()).collect()
}

/// "3 of 3 mounts answering" (what STATUS= and the watchdog report).
fn census(mounted: &BTreeMap<String, PathBuf>, wanted: usize) -> String {
    let live = mounted
        .values()
        .filter(|d| {
            daemon::read_record(d).is_some_and(|r| daemon::pid_alive(r.pid)) && !mount::is_dead(d)
        })
        .count();
    let missing = wanted.saturating_sub(mounted.len());
    let mut s = format!("{live} of {} mounts answering", mounted.len());
    if missing > 0 {
        s.push_str(&format!("; {missing} failed to mount (see the log)"));
    }
    s
}

/// What the supervisor keeps running for each user: mounts on this machine
/// ([`Mounts`]: FUSE, or NFS through its own client) or NFS servers for other
/// machines ([`super::servers::NfsServers`]). Each unit is a daemon of its
/// own, known by its runtime record's key (a mount point, or a server's
/// `nfs://ADDR/` name).
pub trait Units {
    /// Start these users' units, in parallel, and say how each went.
    fn start(&self, users: &[String]) -> Vec<Mounted>;
    /// Stop the units at these keys, in parallel (each flushes first).
    fn stop(&self, keys: Vec<PathBuf>) -> Vec<(PathBuf, Result<(), MountError>)>;
}

/// Each user mounted on this machine, as the function makes its spec.
pub struct Mounts<F>(pub F);

impl<F: Fn(&str) -> Result<MountSpec, MountError>> Units for Mounts<F> {
    fn start(&self, users: &[String]) -> Vec<Mounted> {
        let specs = users
            .iter()
            .filter_map(|u| (self.0)(u).map_err(|e| tracing::error!("{u}: {e}")).ok())
            .collect();
        mount_many(specs)
    }

    fn stop(&self, keys: Vec<PathBuf>) -> Vec<(PathBuf, Result<(), MountError>)> {
        unmount_many(keys)
    }
}

/// Serve every user of `data_dir` through `units` (`fuse --mount --all
/// --foreground`, `nfs --serve --all`), then stay: SIGHUP re-reads the
/// users (new catalogs served, removed ones stopped), a unit whose daemon
/// died is started again (an NFS one on its port), and SIGTERM/SIGINT stop
/// every unit (each daemon flushes its open files first) and return.
///
/// Under systemd (`Type=notify`) it reports READY=1 once every unit has
/// answered or failed, STATUS= with the count, RELOADING=1 around a SIGHUP,
/// STOPPING=1, and WATCHDOG=1 every half `WatchdogSec` while the
/// supervisor's own loop is alive.
pub fn supervise(
    data_dir: &Path,
    units: &impl Units,
    opts: &SuperviseOpts,
) -> Result<(), MountError> {
    use crate::sync::unchecked::Mutex;
    use sd_notify::NotifyState;
    use std::sync::Arc;
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
            .map_err(|e| MountError::Io("signal handlers".into(), e))?;
    let mounted: Arc<Mutex<BTreeMap<String, PathBuf>>> = Arc::default();
    let wanted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lock = |m: &Mutex<BTreeMap<String, PathBuf>>| m.lock().clone();
    if let Some(addr) = opts.metrics {
        let m = mounted.clone();
        crate::daemon::metrics::serve(addr, move || samples(&lock(&m)))
            .map_err(|e| MountError::Daemon(e.to_string()))?;
    }
    let sync = |mounted: &Mutex<BTreeMap<String, PathBuf>>| {
        let want = users(data_dir);
        wanted.store(want.len(), std::sync::atomic::Ordering::Relaxed);
        let now = lock(mounted);
        let gone: Vec<String> = now.keys().filter(|u| !want.contains(u)).cloned().collect();
        if let (Some(c), false) = (&opts.companion, gone.is_empty()) {
            // Its clients leave a unit before the unit goes.
            let kept = now.clone().into_iter().filter(|(u, _)| !gone.contains(u));
            c.serve(&kept.collect());
        }
        for (dir, r) in units.stop(gone.iter().filter_map(|u| now.get(u).cloned()).collect()) {
            match r {
                Ok(()) => tracing::info!("stopped {} (catalog removed)", dir.display()),
                Err(e) => tracing::error!("stop {}: {e}", dir.display()),
            }
        }
        let new: Vec<String> = want.into_iter().filter(|u| !now.contains_key(u)).collect();
        let results = units.start(&new);
        let mut m = mounted.lock();
        for u in gone {
            m.remove(&u);
        }
        for r in results {
            match r.result {
                Ok(pid) => {
                    tracing::info!(user = %r.user, pid, "serving at {}", r.mountpoint.display());
                    m.insert(r.user, r.mountpoint);
                }
                Err(e) => tracing::error!(user = %r.user, "failed to start: {e}"),
            }
        }
        drop(m);
        if let Some(c) = &opts.companion {
            c.serve(&lock(mounted));
        }
    };
    let status = || {
        census(
            &lock(&mounted),
            wanted.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    sync(&mounted);
    notify(&[NotifyState::Ready, NotifyState::Status(&status())]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(period) = sd_notify::watchdog_enabled() {
        let (m, w, stop) = (mounted.clone(), wanted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = census(&lock(&m), w.load(std::sync::atomic::Ordering::Relaxed));
                notify(&[NotifyState::Watchdog, NotifyState::Status(&s)]);
                std::thread::sleep(period / 2);
            }
        });
    }
    // A daemon that died is started again (an NFS one on its port, where
    // the kernel kept its mount; a FUSE one on its cleaned mount point).
    let restart = |mounted: &Mutex<BTreeMap<String, PathBuf>>| {
        let died: Vec<String> = lock(mounted)
            .into_iter()
            .filter(|(_, key)| daemon::read_record(key).is_some_and(|r| !daemon::pid_alive(r.pid)))
            .map(|(u, _)| u)
            .collect();
        if died.is_empty() {
            return;
        }
        for u in &died {
            tracing::warn!(user = %u, "its daemon died: starting it again");
        }
        let results = units.start(&died);
        let mut m = mounted.lock();
        for r in results {
            match r.result {
                Ok(pid) => {
                    tracing::info!(user = %r.user, pid, "serving again at {}", r.mountpoint.display());
                    m.insert(r.user, r.mountpoint);
                }
                Err(e) => {
                    tracing::error!(user = %r.user, "failed to start again: {e}");
                    m.remove(&r.user);
                }
            }
        }
    };
    let mut tick = 0u64;
    let sig = 'serve: loop {
        for sig in signals.pending() {
            if sig != libc::SIGHUP {
                break 'serve sig;
            }
            tracing::info!("SIGHUP: re-reading the users of {}", data_dir.display());
            let now = sd_notify::NotifyState::monotonic_usec_now();
            match &now {
                Ok(t) => notify(&[NotifyState::Reloading, t.clone()]),
                Err(_) => notify(&[NotifyState::Reloading]),
            }
            sync(&mounted);
            notify(&[NotifyState::Ready, NotifyState::Status(&status())]);
        }
        if tick.is_multiple_of(RESTART_EVERY) {
            restart(&mounted);
            if let Some(c) = &opts.companion {
                c.look_after();
            }
        }
        tick += 1;
        std::thread::sleep(SIGNAL_POLL);
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    notify(&[NotifyState::Stopping]);
    tracing::info!(signal = sig, "stopping every daemon");
    if let Some(c) = &opts.companion {
        c.stop();
    }
    for (dir, r) in units.stop(lock(&mounted).into_values().collect()) {
        match r {
            // A daemon of the same service may have stopped first
            // (systemd signals the whole group).
            Err(MountError::NotMounted(_)) => {}
            Err(e) => tracing::error!("stop {}: {e}", dir.display()),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// How often the supervisor looks at its signals.
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// Every this many polls (a second), it looks for daemons that died.
const RESTART_EVERY: u64 = 10;
