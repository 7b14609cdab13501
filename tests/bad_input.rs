//! Bad input, each with a test: catalog rows that break the format, names the
//! file system must refuse, locations that try to leave the user's roots.
//! In every case the mount answers (a documented rendering or an errno) and
//! the user's rows stay as they were.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;

/// Every v1 row, as text, in a stable order.
fn v1_rows(cat: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(cat).unwrap();
    let mut out = Vec::new();
    for t in ["file_nodes", "file_locations"] {
        let mut st = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY rowid"))
            .unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                let v: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(format!("{t}: {}", v.join(" | ")))
            })
            .unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    out
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rows_that_break_the_format_render_as_documented() {
    let lib = TestLib::empty("eve");
    let cat = lib.catalog();
    // A catalog as another tool might leave it: no constraints at all.
    rusqlite::Connection::open(&cat)
        .unwrap()
        .execute_batch(
            "DROP TABLE file_nodes;
             CREATE TABLE file_nodes(node_id TEXT, parent_id TEXT, label TEXT, node_type TEXT,
                                     size INTEGER, created_at TEXT, updated_at TEXT);
             CREATE INDEX idx_file_nodes_parent ON file_nodes(parent_id);
             INSERT INTO file_nodes VALUES
               ('ok',    NULL,    'Projects',   'folder', NULL, NULL, NULL),
               ('null',  NULL,    NULL,         'file',   0,    NULL, NULL),
               ('cyc-a', 'cyc-b', 'LoopA',      'folder', NULL, NULL, NULL),
               ('cyc-b', 'cyc-a', 'LoopB',      'folder', NULL, NULL, NULL),
               ('cyc-f', 'cyc-a', 'inloop.txt', 'file',   0,    NULL, NULL),
               ('self',  'self',  'Selfie',     'folder', NULL, NULL, NULL),
               ('pf',    NULL,    'parent.txt', 'file',   0,    NULL, NULL),
               ('child', 'pf',    'child.txt',  'file',   0,    NULL, NULL),
               ('dup',   NULL,    'first.txt',  'file',   0,    NULL, NULL),
               ('dup',   NULL,    'second.txt', 'file',   0,    NULL, NULL);",
        )
        .unwrap();
    let before = v1_rows(&cat);
    let m = lib.mount(&[]);
    assert_eq!(
        names(&m.dir),
        set(&["Projects", "Untitled", "parent.txt", "first.txt", "Unfiled"]),
        "NULL label is Untitled; a duplicated node id is shown once"
    );
    assert_eq!(
        names(&m.path("Unfiled")),
        set(&["child.txt", "LoopA", "Selfie"]),
        "a file's child and one node of each parent cycle sit in Unfiled"
    );
    assert_eq!(
        names(&m.path("Unfiled/LoopA")),
        set(&["LoopB", "inloop.txt"])
    );
    assert!(
        names(&m.path("Unfiled/LoopA/LoopB")).is_empty(),
        "the loop is cut"
    );
    assert!(names(&m.path("Unfiled/Selfie")).is_empty());
    // A full walk ends, and finds no directory twice.
    let out = std::process::Command::new("find")
        .arg(&m.dir)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 11);
    assert_eq!(v1_rows(&cat), before, "reading changed the user's rows");
    // Using the odd nodes works (and changes only the folder's mtime).
    fs::write(m.path("Unfiled/LoopA/new.txt"), b"x").unwrap();
    fs::remove_file(m.path("Unfiled/LoopA/new.txt")).unwrap();
    drop(m);
    let after = v1_rows(&cat);
    assert_eq!(after.len(), before.len());
    let changed: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(changed.len() <= 1, "{changed:?}");
    let (code, out) = fsck(&lib.data, "eve", &[]);
    assert_eq!(code, 0, "format oddities are notes, not damage:\n{out}");
    assert!(out.contains("cycles"), "{out}");
}

/// Run `f` on the mount and on a local directory; both must fail alike.
fn same_errno(what: &str, mount: &Path, local: &Path, f: impl Fn(&Path) -> std::io::Result<()>) {
    let a = errno_of(f(mount));
    let b = errno_of(f(local));
    assert!(a.is_some(), "{what}: succeeded on the mount");
    assert_eq!(a, b, "{what}: mount errno {a:?}, local file system {b:?}");
}

#[test]
fn names_are_refused_as_ext4_does_and_change_nothing() {
    let lib = TestLib::empty("nina");
    let m = lib.mount(&[]);
    let local = lib.tmp.path().join("local");
    for d in [&m.dir, &local] {
        fs::create_dir_all(d.join("dir")).unwrap();
        fs::write(d.join("file"), b"x").unwrap();
    }
    sync_catalog(&m.dir);
    let before = v1_rows(&lib.catalog());
    let long = "n".repeat(256);
    same_errno("create 256 bytes", &m.dir, &local, |d| {
        fs::write(d.join(&long), b"x")
    });
    same_errno("mkdir 256 bytes", &m.dir, &local, |d| {
        fs::create_dir(d.join(&long))
    });
    same_errno("rename to 256 bytes", &m.dir, &local, |d| {
        fs::rename(d.join("file"), d.join(&long))
    });
    same_errno("symlink 256 bytes", &m.dir, &local, |d| {
        std::os::unix::fs::symlink("file", d.join(&long))
    });
    same_errno("mkdir .", &m.dir, &local, |d| {
        fs::create_dir(d.join("dir/."))
    });
    same_errno("mkdir ..", &m.dir, &local, |d| {
        fs::create_dir(d.join("dir/.."))
    });
    same_errno("rename to .", &m.dir, &local, |d| {
        fs::rename(d.join("file"), d.join("dir/."))
    });
    same_errno("rename to ..", &m.dir, &local, |d| {
        fs::rename(d.join("file"), d.join("dir/.."))
    });
    same_errno("rename . away", &m.dir, &local, |d| {
        fs::rename(d.join("dir/."), d.join("x"))
    });
    same_errno("rmdir .", &m.dir, &local, |d| {
        fs::remove_dir(d.join("dir/."))
    });
    same_errno("link to ..", &m.dir, &local, |d| {
        fs::hard_link(d.join("file"), d.join("dir/.."))
    });
    // 255 bytes is fine.
    fs::write(m.path(&"n".repeat(255)), b"ok").unwrap();
    fs::remove_file(m.path(&"n".repeat(255))).unwrap();
    // Not UTF-8: EILSEQ (names are text in the catalog).
    let bad = OsStr::from_bytes(b"clip-\xff\xfe.mov");
    assert_eq!(
        errno_of(fs::write(m.dir.join(bad), b"x")),
        Some(libc::EILSEQ)
    );
    assert_eq!(
        errno_of(fs::create_dir(m.dir.join(bad))),
        Some(libc::EILSEQ)
    );
    assert_eq!(
        errno_of(fs::rename(m.path("file"), m.dir.join(bad))),
        Some(libc::EILSEQ)
    );
    assert_eq!(names(&m.dir), set(&["dir", "file"]));
    drop(m);
    assert_eq!(
        v1_rows(&lib.catalog()),
        before,
        "refused names changed the catalog"
    );
}

#[test]
fn locations_outside_the_users_roots_are_never_opened() {
    let alice = TestLib::empty("alice");
    // Bob lives in the same data dir, with real content.
    let out = alice.markbase(&["library", "create", "--user", "bob", "--demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob_cat = alice.data.join("users/bob.sqlite");
    let bob_file: String = rusqlite::Connection::open(&bob_cat)
        .unwrap()
        .query_row("SELECT location FROM file_locations LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let bob_bytes = fs::read(&bob_file).unwrap();
    let media = alice.data.join("media/alice");
    fs::create_dir_all(&media).unwrap();
    std::os::unix::fs::symlink(&bob_file, media.join("link.mov")).unwrap();
    fs::write(media.join("mine.mov"), b"alice's own").unwrap();
    let media = media.canonicalize().unwrap();
    let dotdot = format!("{}/../bob/{}", media.display(), "x.mov");
    let rows = [
        (
            "aaaaaaaa-0000-4000-8000-000000000001",
            "direct.mov",
            bob_file.clone(),
        ),
        (
            "aaaaaaaa-0000-4000-8000-000000000002",
            "symlink.mov",
            format!("{}/link.mov", media.display()),
        ),
        ("aaaaaaaa-0000-4000-8000-000000000003", "dotdot.mov", dotdot),
        (
            "aaaaaaaa-0000-4000-8000-000000000004",
            "mine.mov",
            format!("{}/mine.mov", media.display()),
        ),
    ];
    let c = rusqlite::Connection::open(alice.catalog()).unwrap();
    for (id, label, loc) in &rows {
        c.execute(
            "INSERT INTO file_nodes VALUES(?1, NULL, ?2, 'file', 11, NULL, NULL)",
            [*id, *label],
        )
        .unwrap();
        c.execute(
            "INSERT INTO file_locations VALUES(?1, ?2, 'Disk', NULL)",
            [*id, loc.as_str()],
        )
        .unwrap();
    }
    drop(c);
    let m = alice.mount(&[]);
    assert_eq!(fs::read(m.path("mine.mov")).unwrap(), b"alice's own");
    for name in ["direct.mov", "symlink.mov", "dotdot.mov"] {
        assert_eq!(
            errno_of(fs::read(m.path(name))),
            Some(libc::EIO),
            "{name} points outside alice's roots and must not open"
        );
        assert_eq!(
            errno_of(fs::OpenOptions::new().write(true).open(m.path(name))),
            Some(libc::EIO)
        );
    }
    // Alice sees none of bob's tree.
    assert!(names(&m.dir)
        .iter()
        .all(|n| !n.contains("Footage") || n == "Footage"));
    drop(m);
    assert_eq!(
        fs::read(&bob_file).unwrap(),
        bob_bytes,
        "bob's content untouched"
    );
}
