//! The MarkBase app writes a catalog while it is mounted: its changes show
//! in the mount within two seconds (the daemon watches the catalog and tells
//! the kernel what changed), and without changes the daemon's caches live on
//! after the kernel has forgotten what it had.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

/// The catalog as the app has it open: another process's connection.
fn app(lib: &TestLib) -> Connection {
    let c = Connection::open(lib.catalog()).expect("open the catalog");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Wait up to two seconds for `ok`; how long it took.
fn within_two_seconds(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: not seen in the mount within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn the_apps_inserts_renames_and_deletes_show_at_once() {
    let lib = TestLib::empty("app");
    let m = lib.mount(&[]);
    fs::create_dir(m.path("Projects")).expect("mkdir");
    fs::write(m.path("Projects/a.mov"), b"clip").expect("write");
    // Warm every cache: the kernel's listing and entries, the daemon's.
    for _ in 0..3 {
        assert_eq!(names(&m.path("Projects")), ["a.mov"]);
        assert!(m.path("Projects/a.mov").exists());
    }
    // The app sees the mount's changes once their batch commits (within
    // about 100 ms; at once after an fsync).
    sync_catalog(&m.dir);
    let db = app(&lib);
    let folder: String = db
        .query_row(
            "SELECT node_id FROM file_nodes WHERE label = 'Projects'",
            [],
            |r| r.get(0),
        )
        .expect("the folder's row");

    db.execute(
        "INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at)
         VALUES('app-node-1', ?1, 'from-the-app.mov', 'file', 0,
                '2026-11-28T10:00:00.000000Z', '2026-11-28T10:00:00.000000Z')",
        [&folder],
    )
    .expect("insert");
    let t = within_two_seconds("an inserted row", || {
        names(&m.path("Projects")) == ["a.mov", "from-the-app.mov"]
    });
    eprintln!("insert seen after {t:?}");

    db.execute(
        "UPDATE file_nodes SET label = 'renamed.mov' WHERE label = 'a.mov'",
        [],
    )
    .expect("rename");
    let t = within_two_seconds("a renamed row", || {
        names(&m.path("Projects")) == ["from-the-app.mov", "renamed.mov"]
            && !m.path("Projects/a.mov").exists()
    });
    eprintln!("rename seen after {t:?}");
    // The content follows the node, under its new name.
    assert_eq!(
        fs::read(m.path("Projects/renamed.mov")).ok(),
        Some(b"clip".to_vec())
    );

    db.execute("DELETE FROM file_nodes WHERE node_id = 'app-node-1'", [])
        .expect("delete");
    let t = within_two_seconds("a deleted row", || {
        names(&m.path("Projects")) == ["renamed.mov"]
            && !m.path("Projects/from-the-app.mov").exists()
    });
    eprintln!("delete seen after {t:?}");

    // A folder the app adds at the top.
    db.execute(
        "INSERT INTO file_nodes(node_id, parent_id, label, node_type) VALUES('app-folder', NULL, 'Inbox', 'folder')",
        [],
    )
    .expect("insert a folder");
    within_two_seconds("a new top folder", || m.path("Inbox").is_dir());
    // And the mount's own writes still work beside the app's.
    fs::write(m.path("Inbox/after.mov"), b"x").expect("write after");
    assert_eq!(names(&m.path("Inbox")), ["after.mov"]);
}

/// The mount's counters, from `markbase fuse --stats`.
fn stats(lib: &TestLib, m: &Mounted) -> serde_json::Value {
    let dir = m.dir.to_string_lossy();
    let out = lib.markbase(&["fuse", "--stats", "--json", "--dir", &dir]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

fn counts(v: &serde_json::Value) -> (u64, u64) {
    let g = |k: &str| v[k].as_u64().unwrap_or(0);
    (
        g("attr_hits") + g("dir_hits") + g("path_hits"),
        g("attr_misses") + g("dir_misses") + g("path_misses"),
    )
}

/// `stat` everything under `dir`.
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        let md = fs::symlink_metadata(&p).expect("stat");
        n += 1;
        if md.is_dir() {
            n += walk(&p);
        }
    }
    n
}

#[test]
fn a_rewalk_after_the_kernel_forgot_is_answered_from_the_daemons_caches() {
    let lib = TestLib::fixture("walk", None, false);
    let m = lib.mount(&[]);
    let n = walk(&m.dir);
    assert!(n > 12_000, "walked {n}");
    for _ in 0..2 {
        // What the kernel's TTL running out does, at once: it forgets its
        // dentries and inodes, and asks the daemon again.
        fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop the kernel's caches (root)");
        let (h0, m0) = counts(&stats(&lib, &m));
        assert_eq!(walk(&m.dir), n);
        let (h1, m1) = counts(&stats(&lib, &m));
        let (hits, misses) = (h1 - h0, m1 - m0);
        let rate = hits as f64 / (hits + misses).max(1) as f64;
        eprintln!(
            "re-walk: {hits} hits, {misses} misses, {:.1}%",
            rate * 100.0
        );
        assert!(hits > 0, "the re-walk never reached the daemon");
        assert!(rate >= 0.9, "re-walk hit rate {:.1}%", rate * 100.0);
    }
    let total = stats(&lib, &m)["cache_hit_rate"].as_f64().unwrap_or(0.0);
    eprintln!("cache_hit_rate after three walks: {:.1}%", total * 100.0);
}
