//! Everyone who shares a catalog gets along. The catalog is the MarkBase
//! app's own database and the mount a guest in it: while the mount creates
//! files as fast as it can, the app's writes (a busy handler with a 5 s
//! timeout, as an app has) all succeed and show in the mount within two
//! seconds. And two markbase processes on one library (two mounts, a mount
//! and an NFS server) work together: no failed operation, no inode number
//! handed out twice, each process's changes seen by the other, each with a
//! log file of its own, and `fsck` clean after.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nfs::Client;
use common::*;
use rusqlite::Connection;

/// What the stand-in for the app did: per row its label, when its commit
/// returned, and how long the write took; and the writes that failed.
#[derive(Default)]
struct AppWrites {
    rows: Vec<(String, Instant, Duration)>,
    failed: Vec<String>,
}

/// The app: a folder row, then a row in it every 10 ms, each in its own
/// `BEGIN IMMEDIATE` with a 5 s busy timeout, until `stop`.
fn app_writer(db: PathBuf, stop: Arc<AtomicBool>) -> AppWrites {
    let c = Connection::open(db).expect("open the catalog");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let now = "2026-12-03T10:00:00.000000Z";
    c.execute(
        "INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at)
         VALUES('app-folder', NULL, 'FromApp', 'folder', 0, ?1, ?1)",
        [now],
    )
    .expect("the app's folder");
    let mut out = AppWrites::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let label = format!("app-{i:05}.txt");
        let t = Instant::now();
        let done = c.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            c.execute(
                "INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at)
                 VALUES(?1, 'app-folder', ?2, 'file', 0, ?3, ?3)",
                [&format!("app-node-{i}"), &label, now],
            )?;
            c.execute_batch("COMMIT")
        });
        match done {
            Ok(()) => out.rows.push((label, Instant::now(), t.elapsed())),
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                out.failed
                    .push(format!("{label} after {:?}: {e}", t.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

/// When each name first showed in `dir`, polled every 50 ms until `stop`.
fn watch(dir: PathBuf, stop: Arc<AtomicBool>) -> HashMap<String, Instant> {
    let mut seen = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                seen.entry(name).or_insert_with(Instant::now);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// A tar of `n` 1 KiB files in 40 folders, made on the disk.
fn make_tar(tmp: &Path, n: usize) -> PathBuf {
    let src = tmp.join("tar-src");
    for i in 0..n {
        let d = src.join(format!("tree/dir{:02}", i % 40));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(format!("file{i:05}.dat")), [i as u8; 1024]).expect("write");
    }
    let tar = tmp.join("tree.tar");
    let out = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("tree")
        .output()
        .expect("tar");
    assert_success(&out);
    std::fs::remove_dir_all(&src).expect("rm the source");
    tar
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[test]
fn the_apps_writes_all_succeed_and_show_while_the_mount_untars_20000_files() {
    const FILES: usize = 20_000;
    let lib = TestLib::empty("busy");
    let tar = make_tar(lib.tmp.path(), FILES);
    let m = lib.mount(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (db, stop) = (lib.catalog(), stop.clone());
        std::thread::spawn(move || app_writer(db, stop))
    };
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (dir, stop) = (m.path("FromApp"), watch_stop.clone());
        std::thread::spawn(move || watch(dir, stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&m.dir)
        .output()
        .expect("tar -x");
    let untar = t.elapsed();
    assert_success(&out);
    stop.store(true, Ordering::Relaxed);
    let app = app.join().expect("the app's thread");
    // Every row gets two seconds to show, the last one too.
    std::thread::sleep(Duration::from_millis(2300));
    watch_stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("the watcher");

    let mut lat: Vec<Duration> = app.rows.iter().map(|r| r.2).collect();
    lat.sort();
    let lags: Vec<(String, Option<Duration>)> = app
        .rows
        .iter()
        .map(|(label, at, _)| {
            (
                label.clone(),
                seen.get(label).map(|s| s.saturating_duration_since(*at)),
            )
        })
        .collect();
    let worst_lag = lags.iter().filter_map(|l| l.1).max().unwrap_or_default();
    eprintln!(
        "untar of {FILES} files: {untar:?}; the app: {} writes, {} failed, p50 {:?}, p99 {:?}, max {:?}; longest to show in the mount {worst_lag:?}",
        app.rows.len(),
        app.failed.len(),
        pct(&lat, 50),
        pct(&lat, 99),
        lat.last().copied().unwrap_or_default(),
    );
    assert!(
        app.failed.is_empty(),
        "the app's writes failed: {:?}",
        app.failed
    );
    assert!(
        app.rows.len() >= 50,
        "the app wrote {} rows",
        app.rows.len()
    );
    let late: Vec<_> = lags
        .iter()
        .filter(|(_, lag)| lag.is_none_or(|l| l > Duration::from_secs(2)))
        .take(5)
        .collect();
    assert!(
        late.is_empty(),
        "rows not in the mount within 2 s: {late:?}"
    );

    // Every untarred file is there, and the catalog is clean.
    let mut n = 0;
    for d in std::fs::read_dir(m.path("tree")).expect("tree") {
        n += std::fs::read_dir(d.expect("entry").path())
            .expect("dir")
            .count();
    }
    assert_eq!(n, FILES);
    m.unmount();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

/// Create, rename (every second) and remove (every third) `count` files in
/// `dir`; the inode number of each file made, by name, or the first error.
fn churn(dir: &Path, count: usize) -> Result<Vec<(String, u64)>, String> {
    std::fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let mut made = Vec::new();
    for i in 0..count {
        let mut p = dir.join(format!("f{i:04}"));
        let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what} {i}: {e}"));
        step("create", std::fs::write(&p, format!("file {i}")))?;
        let ino = std::fs::metadata(&p)
            .map_err(|e| format!("stat {i}: {e}"))?
            .ino();
        made.push((p.display().to_string(), ino));
        if i % 2 == 0 {
            let q = p.with_extension("moved");
            step("rename", std::fs::rename(&p, &q))?;
            p = q;
        }
        if i % 3 == 0 {
            step("unlink", std::fs::remove_file(&p))?;
        }
    }
    Ok(made)
}

/// Every process's run succeeded, and no inode number went to two files.
fn all_succeeded_with_unique_inodes(
    runs: impl IntoIterator<Item = Result<Vec<(String, u64)>, String>>,
) {
    let mut inos: HashMap<u64, String> = HashMap::new();
    for r in runs {
        for (name, ino) in r.expect("no failed operation") {
            if let Some(other) = inos.insert(ino, name.clone()) {
                panic!("inode {ino} handed out twice: {other} and {name}");
            }
        }
    }
}

/// The names `churn(count)` leaves.
fn churned_names(count: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..count)
        .filter(|i| i % 3 != 0)
        .map(|i| {
            if i % 2 == 0 {
                format!("f{i:04}.moved")
            } else {
                format!("f{i:04}")
            }
        })
        .collect();
    v.sort();
    v
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wait up to two seconds for `dir` to list `want`.
fn shows_within_two_seconds(dir: &Path, want: &[String]) {
    let t = Instant::now();
    while names(dir) != want {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{}: the other process's changes not seen within 2 s ({} names of {})",
            dir.display(),
            names(dir).len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_mounts_of_one_library_create_rename_and_remove_at_once() {
    const EACH: usize = 600;
    let lib = TestLib::empty("twice");
    let a = lib.mount(&[]);
    let b = lib.mount(&[]);
    let runs: Vec<_> = [a.path("from-a"), b.path("from-b")]
        .into_iter()
        .map(|d| std::thread::spawn(move || churn(&d, EACH)))
        .collect();
    all_succeeded_with_unique_inodes(runs.into_iter().map(|r| r.join().expect("thread")));
    // Each sees what the other did.
    let want = churned_names(EACH);
    shows_within_two_seconds(&b.path("from-a"), &want);
    shows_within_two_seconds(&a.path("from-b"), &want);
    a.unmount();
    b.unmount();
    // Each daemon wrote a log of its own.
    let logs = lib.data.join("logs").join(&lib.user);
    for dir in [logs.clone(), logs.join("2")] {
        let mounted = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("markbase."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .filter(|text| text.contains("mounted at"))
            .count();
        assert_eq!(mounted, 1, "{}: one daemon's log", dir.display());
    }
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_mount_and_an_nfs_server_on_one_library_create_rename_and_remove_at_once() {
    const EACH: usize = 400;
    let lib = TestLib::empty("mixed");
    let m = lib.mount(&[]);
    let served = lib.serve_nfs(&[]);
    let addr = served.addr;
    let fuse = {
        let d = m.path("from-fuse");
        std::thread::spawn(move || churn(&d, EACH))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let over_nfs: Result<Vec<(String, u64)>, String> = rt.block_on(async {
        let mut c = Client::connect(addr).await?;
        let root = c.root.clone();
        let dir = c
            .mkdir(&root, "from-nfs")
            .await
            .map_err(|e| format!("mkdir: {e:?}"))?;
        let mut made = Vec::new();
        for i in 0..EACH {
            let mut name = format!("f{i:04}");
            let fh = c
                .create(&dir, &name, 0o644)
                .await
                .map_err(|e| format!("create {i}: {e:?}"))?;
            let attr = c
                .getattr(&fh)
                .await
                .map_err(|e| format!("getattr {i}: {e:?}"))?;
            made.push((format!("nfs:{name}"), attr.fileid));
            if i % 2 == 0 {
                let to = format!("f{i:04}.moved");
                c.rename(&dir, &name, &dir, &to)
                    .await
                    .map_err(|e| format!("rename {i}: {e:?}"))?;
                name = to;
            }
            if i % 3 == 0 {
                c.remove(&dir, &name)
                    .await
                    .map_err(|e| format!("remove {i}: {e:?}"))?;
            }
        }
        Ok(made)
    });
    all_succeeded_with_unique_inodes([fuse.join().expect("thread"), over_nfs]);
    // The server's changes show in the mount.
    shows_within_two_seconds(&m.path("from-nfs"), &churned_names(EACH));
    served.stop();
    m.unmount();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_second_process_logs_in_a_folder_of_its_own() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("logs/u");
    // Claims are held by the process: within one process each claim is an
    // open file of its own, as a second process's would be.
    let first = markbase::library::Library::claim_log_dir(&base).expect("claim");
    let second = markbase::library::Library::claim_log_dir(&base).expect("claim");
    assert_eq!(first, base);
    assert_eq!(second, base.join("2"));
}
