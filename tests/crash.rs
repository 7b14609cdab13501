//! Crash safety: the daemon is killed with SIGKILL in the middle of writes,
//! fsyncs, renames, creates, deletes and mkdirs; the dead mount is cleaned
//! with `markbase fuse --unmount`, `markbase fsck` finds at most the residue a
//! kill may leave (content files without a row) and `--repair` clears it; the
//! remounted library holds every operation that returned, with its exact
//! bytes, and nothing else but the one operation each worker had in flight.
//!
//! The metadata journal (changes answered after one `write()`, committed to
//! SQLite in batches, replayed at the next mount) is killed 24 times in
//! bursts of small-file changes, and at each of its fail points (crate
//! `fail`, in the `failpoints` build that `scripts/test` runs): on the commit
//! path, and in the replay itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File { seed: u64, len: usize },
    Dir,
}

/// One worker's folder: what every returned operation left, and the names
/// the operation in flight (if any) may or may not have touched.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, Node>,
    in_flight: BTreeSet<String>,
}

/// Random creates (files of 1..`max_len` bytes), renames (some replacing),
/// deletes and mkdirs in `dir` until `stop` or the daemon's death.
fn work(dir: PathBuf, id: u64, stop: Arc<AtomicBool>, max_len: usize) -> Model {
    let mut m = Model::default();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (id << 40) ^ std::process::id() as u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let files: Vec<String> = m
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        let pick = |r: u64| files.get((r % files.len().max(1) as u64) as usize).cloned();
        let op = rnd(100);
        let r = rnd(1 << 30);
        let result: std::io::Result<()> = if op < 45 || files.is_empty() {
            let name = format!("f{id}-{seq}.bin");
            let (seed, len) = (r, 1 + (r as usize % max_len));
            m.in_flight = [name.clone()].into();
            (|| {
                let mut f = fs::File::create(dir.join(&name))?;
                f.write_all(&stream(seed, len))?;
                if r % 3 == 0 {
                    f.sync_all()?;
                }
                Ok(())
            })()
            .map(|()| {
                m.nodes.insert(name, Node::File { seed, len });
            })
        } else if op < 65 {
            let from = pick(r).unwrap_or_default();
            let to = if r % 4 == 0 {
                pick(r / 7).unwrap_or_default() // replace an existing file
            } else {
                format!("r{id}-{seq}.bin")
            };
            m.in_flight = [from.clone(), to.clone()].into();
            fs::rename(dir.join(&from), dir.join(&to)).map(|()| {
                if from != to {
                    let n = m.nodes.remove(&from).expect("modelled");
                    m.nodes.insert(to, n);
                }
            })
        } else if op < 85 {
            let name = pick(r).unwrap_or_default();
            m.in_flight = [name.clone()].into();
            fs::remove_file(dir.join(&name)).map(|()| {
                m.nodes.remove(&name);
            })
        } else {
            let name = format!("d{id}-{seq}");
            m.in_flight = [name.clone()].into();
            fs::create_dir(dir.join(&name)).map(|()| {
                m.nodes.insert(name, Node::Dir);
            })
        };
        match result {
            Ok(()) => m.in_flight.clear(),
            Err(e) => {
                // The daemon is gone (ENOTCONN) or going: stop here, with
                // this operation in flight.
                assert!(
                    matches!(
                        e.raw_os_error(),
                        Some(libc::ENOTCONN)
                            | Some(libc::ECONNABORTED)
                            | Some(libc::EIO)
                            | Some(libc::ENOENT)
                    ),
                    "worker {id}: unexpected error {e}"
                );
                return m;
            }
        }
    }
    m
}

fn verify(dir: &Path, m: &Model) {
    let seen: BTreeSet<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = m.nodes.keys().cloned().collect();
    for extra in seen.difference(&want) {
        assert!(
            m.in_flight.contains(extra),
            "{}: {extra} should not exist",
            dir.display()
        );
    }
    for lost in want.difference(&seen) {
        assert!(
            m.in_flight.contains(lost),
            "{}: {lost} was lost",
            dir.display()
        );
    }
    for (name, n) in &m.nodes {
        if m.in_flight.contains(name) {
            continue;
        }
        let p = dir.join(name);
        match n {
            Node::Dir => assert!(p.is_dir(), "{} should be a folder", p.display()),
            Node::File { seed, len } => {
                let got = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                assert_eq!(got.len(), *len, "{}: size", p.display());
                assert!(got == stream(*seed, *len), "{}: bytes differ", p.display());
            }
        }
    }
}

#[test]
fn sigkill_mid_operations_loses_nothing_that_returned() {
    let lib = TestLib::fixture("crash", Some(200), false);
    let mut models: Vec<(PathBuf, Model)> = Vec::new();
    for round in 0..3u64 {
        let m = lib.mount(&[]);
        // What earlier rounds left is all there.
        for (rel, model) in &models {
            verify(&m.dir.join(rel), model);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let rel = PathBuf::from(format!("crash-{round}-{w}"));
            let dir = m.dir.join(&rel);
            fs::create_dir(&dir).unwrap();
            let stop = stop.clone();
            workers.push((
                rel,
                std::thread::spawn(move || work(dir, round * 10 + w, stop, 3 << 20)),
            ));
        }
        std::thread::sleep(Duration::from_millis(400 + 300 * round));
        let pid = daemon_pid(&m.dir);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        for (rel, h) in workers {
            models.push((rel, h.join().expect("worker")));
        }
        // The dead mount is cleaned by --unmount.
        m.unmount();
        // fsck: at most the residue of a kill, which --repair clears.
        let (code, out) = fsck(&lib.data, "crash", &[]);
        for line in out.lines().filter(|l| l.contains("damage:")) {
            assert!(
                line.contains("no catalog row points at")
                    || line.contains("deleted while open")
                    || line.contains("of deleted files still on disk"),
                "unexpected damage after SIGKILL:\n{out}"
            );
        }
        if code != 0 {
            assert_eq!(code, 1, "{out}");
            let (code, out) = fsck(&lib.data, "crash", &["--repair"]);
            assert_eq!(code, 1, "{out}");
            let (code, out) = fsck(&lib.data, "crash", &[]);
            assert_eq!(code, 0, "after --repair:\n{out}");
        }
        assert!(!out.contains("integrity"), "{out}");
    }
    let m = lib.mount(&[]);
    for (rel, model) in &models {
        verify(&m.dir.join(rel), model);
    }
    let ops: usize = models.iter().map(|(_, m)| m.nodes.len()).sum();
    assert!(
        ops > 20,
        "the workers did too little before the kills ({ops} nodes)"
    );
}

/// SIGKILL the daemon serving `dir`, if one still does.
fn sigkill_daemon(dir: &Path) {
    if let Ok(pid) = std::panic::catch_unwind(|| daemon_pid(dir)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Fail points exist only in the `failpoints` build (`scripts/test`'s).
fn failpoints_built() -> bool {
    if !cfg!(feature = "failpoints") {
        eprintln!("skipped: needs the failpoints build (cargo test --features failpoints)");
    }
    cfg!(feature = "failpoints")
}

/// Kill, clean the dead mount, check with fsck (and repair a kill's residue).
fn kill_and_clean(m: Mounted, lib: &TestLib, user: &str) {
    sigkill_daemon(&m.dir);
    std::thread::sleep(Duration::from_millis(50));
    drop(m);
    let (code, out) = fsck(&lib.data, user, &["--repair"]);
    for line in out.lines().filter(|l| l.contains("damage:")) {
        assert!(
            line.contains("no catalog row points at")
                || line.contains("deleted while open")
                || line.contains("of deleted files still on disk"),
            "unexpected damage after a kill:\n{out}"
        );
    }
    assert!(code == 0 || code == 1, "{out}");
}

/// Run `workers` bursts of small-file changes in fresh folders under `m`
/// until the daemon dies or `for_ms` passes (then kill it).
fn burst(m: &Mounted, tag: &str, workers: u64, for_ms: u64) -> Vec<(PathBuf, Model)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for w in 0..workers {
        let rel = PathBuf::from(format!("{tag}-{w}"));
        let dir = m.dir.join(&rel);
        fs::create_dir(&dir).unwrap();
        let stop = stop.clone();
        let id = (tag.len() as u64) * 1000 + w;
        hs.push((rel, std::thread::spawn(move || work(dir, id, stop, 64))));
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(for_ms);
    while std::time::Instant::now() < deadline && !hs.iter().all(|(_, h)| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    sigkill_daemon(&m.dir);
    stop.store(true, Ordering::Relaxed);
    hs.into_iter()
        .map(|(rel, h)| (rel, h.join().expect("worker")))
        .collect()
}

#[test]
fn sigkill_mid_bursts_of_small_file_changes_loses_nothing_that_returned() {
    let lib = TestLib::fixture("burst", Some(100), false);
    let mut models: Vec<(PathBuf, Model)> = Vec::new();
    let mut x = std::process::id() as u64 | 1;
    for round in 0..24u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let m = lib.mount(&[]);
        // Every operation that returned before the last kill is there.
        for (rel, model) in &models {
            verify(&m.dir.join(rel), model);
        }
        let got = burst(&m, &format!("b{round}"), 2, 40 + x % 260);
        models.extend(got);
        kill_and_clean(m, &lib, "burst");
    }
    let m = lib.mount(&[]);
    for (rel, model) in &models {
        verify(&m.dir.join(rel), model);
    }
    let ops: usize = models.iter().map(|(_, m)| m.nodes.len()).sum();
    assert!(ops > 200, "the bursts did too little ({ops} nodes)");
}

/// What `tar x` does to each file (create, write, utimensat, fchown,
/// fchmod, close), killed right after the last file closed, before any
/// batch could commit (they commit 50 ms after their first change): every
/// SETATTR was answered from the metadata journal alone, and each comes
/// back from its replay at the next mount, with the bytes and the size
/// (whose commit waits for RELEASE, which `close(2)` does not wait for).
#[test]
fn sigkill_after_tar_like_files_keeps_their_modes_owners_and_times() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let lib = TestLib::empty("tarkill");
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for round in 0..3u32 {
        let m = lib.mount(&[]);
        let dir = m.dir.join(format!("t{round}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..40u32 {
            let mut f = fs::File::create(dir.join(format!("f{i:03}"))).unwrap();
            f.write_all(&stream(u64::from(i), 100 + i as usize))
                .unwrap();
            f.set_modified(when + Duration::from_secs(u64::from(i)))
                .unwrap();
            std::os::unix::fs::fchown(&f, Some(1000 + i), Some(2000 + i)).unwrap();
            f.set_permissions(fs::Permissions::from_mode(0o600 + i % 8))
                .unwrap();
        }
        kill_and_clean(m, &lib, "tarkill");
        let m = lib.mount(&[]);
        for i in 0..40u32 {
            let p = m.dir.join(format!("t{round}/f{i:03}"));
            let md = fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let what = p.display();
            assert_eq!(md.mode() & 0o7777, 0o600 + i % 8, "{what}: mode");
            assert_eq!((md.uid(), md.gid()), (1000 + i, 2000 + i), "{what}: owner");
            assert_eq!(md.mtime(), 1_500_000_000 + i64::from(i), "{what}: mtime");
            assert_eq!(md.len(), 100 + u64::from(i), "{what}: size");
            assert!(
                fs::read(&p).unwrap() == stream(u64::from(i), 100 + i as usize),
                "{what}: bytes"
            );
        }
        drop(m);
    }
}

/// The fail points of the journal's commit path: the daemon aborts there
/// after some changes; what returned is all there at the next mount.
#[test]
fn the_daemon_dying_at_each_step_of_the_commit_path_loses_nothing() {
    if !failpoints_built() {
        return;
    }
    let lib = TestLib::fixture("failcommit", Some(100), false);
    let mut models: Vec<(PathBuf, Model)> = Vec::new();
    for (i, point) in [
        "journal-before-append",
        "journal-appended",
        "journal-torn-append",
        "journal-before-commit",
        "journal-after-commit",
    ]
    .iter()
    .enumerate()
    {
        let dir = lib.tmp.path().join(format!("mnt-fp-{i}"));
        fs::create_dir_all(&dir).unwrap();
        // Some hundred changes go through first.
        let spec = format!("{point}={}*off->return", 150 + 37 * i);
        let m = lib
            .try_mount_env(&dir, &[], &[("FAILPOINTS", spec.as_str())])
            .unwrap_or_else(|e| panic!("mount with {spec}: {e}"));
        let got = burst(&m, &format!("fp{i}"), 2, 20_000);
        assert!(
            got.iter().map(|(_, m)| m.nodes.len()).sum::<usize>() > 20,
            "{point}: too little happened before it"
        );
        models.extend(got);
        kill_and_clean(m, &lib, "failcommit");
        let m = lib.mount(&[]);
        for (rel, model) in &models {
            verify(&m.dir.join(rel), model);
        }
        m.unmount();
    }
}

/// The fail points of the replay at mount: a daemon dies with changes in
/// the journal only; the next mount dies in the middle of replaying them;
/// the one after replays them whole, once.
#[test]
fn the_daemon_dying_in_the_replay_loses_nothing_and_applies_nothing_twice() {
    if !failpoints_built() {
        return;
    }
    let lib = TestLib::fixture("failreplay", Some(100), false);
    let mut models: Vec<(PathBuf, Model)> = Vec::new();
    for (i, point) in [
        "journal-replay-applied",
        "journal-replay-before-commit",
        "journal-replayed",
    ]
    .iter()
    .enumerate()
    {
        // Die right after a change is journaled, before its batch commits.
        let dir = lib.tmp.path().join(format!("mnt-rp-{i}"));
        fs::create_dir_all(&dir).unwrap();
        let spec = format!("journal-appended={}*off->return", 120 + 41 * i);
        let m = lib
            .try_mount_env(&dir, &[], &[("FAILPOINTS", spec.as_str())])
            .unwrap_or_else(|e| panic!("mount with {spec}: {e}"));
        models.extend(burst(&m, &format!("rp{i}"), 1, 20_000));
        sigkill_daemon(&m.dir);
        drop(m);
        let journal = {
            let mut p = lib.catalog().into_os_string();
            p.push("-mbjournal");
            PathBuf::from(p)
        };
        assert!(
            fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) > 0,
            "{point}: the journal should hold the last changes"
        );
        // The next mount dies in the replay (the first record, or before
        // its commit, or after it).
        let dir = lib.tmp.path().join(format!("mnt-rp-{i}-b"));
        fs::create_dir_all(&dir).unwrap();
        let spec = format!("{point}=return");
        let died = lib.try_mount_env(&dir, &[], &[("FAILPOINTS", spec.as_str())]);
        assert!(
            died.is_err(),
            "{point}: the mount should have died replaying"
        );
        drop(died);
        let m = lib.mount(&[]);
        for (rel, model) in &models {
            verify(&m.dir.join(rel), model);
        }
        m.unmount();
        let (code, out) = fsck(&lib.data, "failreplay", &["--repair"]);
        assert!(code == 0 || code == 1, "{out}");
    }
}
