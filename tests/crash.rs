//! Crash safety: the daemon is killed with SIGKILL in the middle of writes,
//! fsyncs, renames, creates, deletes and mkdirs; the dead mount is cleaned
//! with `markbase fuse --unmount`, `markbase fsck` finds at most the residue a
//! kill may leave (content files without a row) and `--repair` clears it; the
//! remounted library holds every operation that returned, with its exact
//! bytes, and nothing else but the one operation each worker had in flight.

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

fn work(dir: PathBuf, id: u64, stop: Arc<AtomicBool>) -> Model {
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
            let (seed, len) = (r, 1 + (r as usize % (3 << 20)));
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
                std::thread::spawn(move || work(dir, round * 10 + w, stop)),
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
                line.contains("no catalog row points at") || line.contains("deleted while open"),
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
