//! Mount the shared fixture library (12,659 nodes, with anomalies) and check,
//! through the mount, the tree, the content bytes and every rule of the
//! library format; then change it with ordinary calls, unmount, remount and
//! find every change.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::*;
use rusqlite::Connection;

struct Node {
    id: String,
    parent: Option<String>,
    label: String,
    folder: bool,
    created: String,
}

fn nodes(cat: &std::path::Path) -> Vec<Node> {
    let c = Connection::open(cat).unwrap();
    let mut st = c
        .prepare(
            "SELECT node_id, parent_id, label, node_type, coalesce(created_at,'') FROM file_nodes",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok(Node {
            id: r.get(0)?,
            parent: r.get(1)?,
            label: r.get(2)?,
            folder: r.get::<_, String>(3)? == "folder",
            created: r.get(4)?,
        })
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn first_location(cat: &std::path::Path, id: &str) -> Option<PathBuf> {
    let c = Connection::open(cat).unwrap();
    c.query_row(
        "SELECT location FROM file_locations WHERE file_uuid=?1 ORDER BY rowid LIMIT 1",
        [id],
        |r| r.get::<_, String>(0),
    )
    .ok()
    .map(PathBuf::from)
}

#[test]
fn fixture_tree_content_and_anomalies() {
    let lib = TestLib::fixture("warren", None, true);
    let cat = lib.catalog();
    // Make one catalog size stale: the content file's size must win.
    let all = nodes(&cat);
    let by_id: HashMap<&str, &Node> = all.iter().map(|n| (n.id.as_str(), n)).collect();
    let stale = all
        .iter()
        .find(|n| !n.folder && n.label.ends_with(".mov") && n.parent.is_some())
        .unwrap();
    Connection::open(&cat)
        .unwrap()
        .execute(
            "UPDATE file_nodes SET size=999999 WHERE node_id=?1",
            [&stale.id],
        )
        .unwrap();

    let m = lib.mount(&[]);
    let inbox_id = all.iter().find(|n| n.label == "Inbox").unwrap().id.clone();

    // Every ordinary node is where its labels say, with its type; files read
    // back exactly as the fixture wrote them (checked on every 50th file).
    let mut checked_files = 0;
    let mut count = 0;
    let mut siblings: HashMap<(Option<&str>, &str), usize> = HashMap::new();
    let mut children: HashMap<Option<&str>, usize> = HashMap::new();
    for n in &all {
        *siblings
            .entry((n.parent.as_deref(), n.label.as_str()))
            .or_default() += 1;
        *children.entry(n.parent.as_deref()).or_default() += 1;
    }
    for n in &all {
        if n.parent.as_deref() == Some(&inbox_id) || n.label == "orphan.mov" {
            continue; // anomalies: checked below
        }
        if siblings[&(n.parent.as_deref(), n.label.as_str())] > 1 {
            continue; // a repeated label: counted per folder below
        }
        let mut parts = vec![n.label.clone()];
        let mut p = n.parent.clone();
        while let Some(pid) = p {
            let parent = by_id[pid.as_str()];
            parts.push(parent.label.clone());
            p = parent.parent.clone();
        }
        parts.reverse();
        let path = m.dir.join(parts.join("/"));
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(meta.is_dir(), n.folder, "{}", path.display());
        count += 1;
        if !n.folder {
            let loc = first_location(&cat, &n.id).unwrap();
            let real = fs::metadata(&loc).unwrap().len();
            assert_eq!(meta.len(), real, "size of {}", path.display());
            if count % 50 == 0 || n.id == stale.id {
                assert_eq!(
                    fs::read(&path).unwrap(),
                    expected_sparse(&n.id, real),
                    "bytes of {}",
                    path.display()
                );
                checked_files += 1;
            }
        }
    }
    assert!(count > 12_000, "walked {count} nodes");
    // Folders with repeated labels show every child, under distinct names.
    for ((parent, label), k) in &siblings {
        if *k > 1 {
            let folder = by_id[parent.expect("top-level labels are unique")];
            let path = m.dir.join(if folder.label == "Library" {
                "Library".to_string()
            } else {
                continue;
            });
            let names: Vec<String> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names.len(), children[&Some(folder.id.as_str())], "{label}");
            assert!(names.iter().any(|n| n == label));
        }
    }
    assert!(checked_files > 100);

    // The anomalies, as markbase-library-format.md says.
    let inbox = m.path("Inbox");
    let mut names: Vec<String> = fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let long = format!("{}.mov", "L".repeat(251));
    let mut want = vec![
        "Rough:Cut v2.mov".to_string(),
        "Untitled".into(),
        "duplicate (2).mov".into(),
        "duplicate.mov".into(),
        long.clone(),
        "missing on disk.mov".into(),
        "two locations.mov".into(),
        "Ünïcödé 🎬 clip.mov".into(),
    ];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(long.len(), 255);
    // The older duplicate keeps the label.
    let mut dups: Vec<&Node> = all.iter().filter(|n| n.label == "duplicate.mov").collect();
    dups.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    for (node, name) in dups.iter().zip(["duplicate.mov", "duplicate (2).mov"]) {
        let size = fs::metadata(first_location(&cat, &node.id).unwrap())
            .unwrap()
            .len();
        assert_eq!(
            fs::read(inbox.join(name)).unwrap(),
            expected_sparse(&node.id, size),
            "{name}"
        );
    }
    // Missing content: listed with its catalog size, EIO on open.
    assert_eq!(
        fs::metadata(inbox.join("missing on disk.mov"))
            .unwrap()
            .len(),
        1234
    );
    assert_eq!(
        errno_of(fs::File::open(inbox.join("missing on disk.mov"))),
        Some(libc::EIO)
    );
    // Two locations: the first that exists.
    let two = all.iter().find(|n| n.label == "two locations.mov").unwrap();
    let size = fs::metadata(first_location(&cat, &two.id).unwrap())
        .unwrap()
        .len();
    assert_eq!(
        fs::read(inbox.join("two locations.mov")).unwrap(),
        expected_sparse(&two.id, size)
    );
    // A node whose parent is gone: under Unfiled.
    assert!(m.path("Unfiled/orphan.mov").exists());
    assert_eq!(
        fs::metadata(m.path("Unfiled/orphan.mov")).unwrap().len(),
        10
    );

    // Stable inode numbers: same after a remount.
    let probe = [
        "Projects",
        "Inbox/duplicate (2).mov",
        "Unfiled/orphan.mov",
        "Library",
    ];
    let inos: Vec<u64> = probe
        .iter()
        .map(|p| fs::metadata(m.path(p)).unwrap().ino())
        .collect();
    let mut uniq = inos.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), inos.len());
    let dir = m.dir.clone();
    m.unmount();
    // The stale catalog size has been corrected.
    let size: i64 = Connection::open(&cat)
        .unwrap()
        .query_row(
            "SELECT size FROM file_nodes WHERE node_id=?1",
            [&stale.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        size as u64,
        fs::metadata(first_location(&cat, &stale.id).unwrap())
            .unwrap()
            .len()
    );
    let m = lib.mount_at(&dir, &[]);
    let again: Vec<u64> = probe
        .iter()
        .map(|p| fs::metadata(m.path(p)).unwrap().ino())
        .collect();
    assert_eq!(inos, again);
}

#[test]
fn changes_survive_remount_and_reach_the_catalog() {
    let lib = TestLib::fixture("editor", Some(300), true);
    let m = lib.mount(&[]);
    let d = m.path("Inbox/Cut 1");
    fs::create_dir(&d).unwrap();
    let mut f = fs::File::create(d.join("edit.mov")).unwrap();
    f.write_all(&vec![7u8; 300_000]).unwrap();
    f.seek(SeekFrom::Start(100)).unwrap();
    f.write_all(b"middle").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::write(d.join("notes.txt"), b"v1").unwrap();
    fs::rename(d.join("notes.txt"), d.join("notes:final.txt")).unwrap();
    fs::create_dir(m.path("Inbox/gone")).unwrap();
    fs::remove_dir(m.path("Inbox/gone")).unwrap();
    fs::rename(m.path("Inbox/duplicate (2).mov"), d.join("moved.mov")).unwrap();
    fs::set_permissions(d.join("edit.mov"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("edit.mov", d.join("link")).unwrap();
    // OS junk works but stays out of file_nodes.
    fs::write(d.join(".DS_Store"), b"junk").unwrap();
    fs::write(d.join("._edit.mov"), b"appledouble").unwrap();
    fs::create_dir_all(m.path(".Trashes/501")).unwrap();
    fs::write(m.path(".Trashes/501/x"), b"trash").unwrap();
    let dir = m.dir.clone();
    m.unmount();

    let m = lib.mount_at(&dir, &[]);
    let d = m.path("Inbox/Cut 1");
    let data = fs::read(d.join("edit.mov")).unwrap();
    assert_eq!(data.len(), 300_000);
    assert_eq!(&data[100..106], b"middle");
    assert_eq!(data[99], 7);
    assert_eq!(fs::read(d.join("notes:final.txt")).unwrap(), b"v1");
    assert!(!m.path("Inbox/gone").exists());
    assert!(d.join("moved.mov").exists());
    assert!(!m.path("Inbox/duplicate (2).mov").exists());
    assert_eq!(
        fs::metadata(d.join("edit.mov"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::read_link(d.join("link")).unwrap(),
        PathBuf::from("edit.mov")
    );
    assert_eq!(fs::read(d.join(".DS_Store")).unwrap(), b"junk");
    assert_eq!(fs::read(m.path(".Trashes/501/x")).unwrap(), b"trash");
    drop(m);

    let c = Connection::open(lib.catalog()).unwrap();
    let label_of = |l: &str| -> Option<(String, Option<i64>)> {
        c.query_row(
            "SELECT node_type, size FROM file_nodes WHERE label=?1",
            [l],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    };
    assert_eq!(label_of("Cut 1").unwrap().0, "folder");
    assert_eq!(
        label_of("edit.mov").unwrap(),
        ("file".into(), Some(300_000))
    );
    assert!(
        label_of("notes/final.txt").is_some(),
        "':' is stored as '/'"
    );
    assert!(label_of("moved.mov").is_some());
    for junk in [".DS_Store", "._edit.mov", ".Trashes", "501", "x", "link"] {
        assert!(
            label_of(junk).is_none(),
            "{junk} must stay out of file_nodes"
        );
    }
    // The new file's location is in the content store.
    let loc: String = c
        .query_row(
            "SELECT location FROM file_locations WHERE file_uuid=(SELECT node_id FROM file_nodes WHERE label='edit.mov')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        PathBuf::from(&loc).starts_with(lib.content_dir().canonicalize().unwrap()),
        "{loc}"
    );
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn unlinked_open_file_lives_until_last_close() {
    let lib = TestLib::empty("u");
    let m = lib.mount(&[]);
    let p = m.path("tmp.bin");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.write_all(b"still here").unwrap();
    f.sync_all().unwrap();
    // Content files (the store's pool of empty, free files aside).
    let store_files = || {
        walk(&lib.content_dir())
            .iter()
            .filter(|p| !p.components().any(|c| c.as_os_str() == ".pool"))
            .count()
    };
    assert_eq!(store_files(), 1);
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    f.write_all(b", and more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here, and more");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    drop(f);
    // Released: the content is freed.
    for _ in 0..100 {
        if store_files() == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store_files(), 0);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn xattrs_follow_macos_expectations() {
    let lib = TestLib::empty("x");
    let m = lib.mount(&[]);
    let p = m.path("clip.mov");
    fs::write(&p, b"x").unwrap();
    let before = fs::metadata(&p).unwrap().mtime_nsec();
    let before_s = fs::metadata(&p).unwrap().mtime();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let set = |name: &str, v: &[u8]| set_xattr(&p, name, v);
    assert_eq!(set("user.com.apple.FinderInfo", &[0u8; 32]), 0);
    assert_eq!(set("user.com.apple.FinderInfo", &[0u8; 31]), libc::ERANGE);
    assert_eq!(set("user.com.apple.ResourceFork", &vec![1u8; 60_000]), 0);
    let after = fs::metadata(&p).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before_s, before),
        "setxattr must not change mtime"
    );
    let dir = m.dir.clone();
    m.unmount();
    let m = lib.mount_at(&dir, &[]);
    let len = get_xattr(&m.path("clip.mov"), "user.com.apple.ResourceFork", &mut []);
    assert_eq!(len, 60_000);
}

/// `ls -l` asks for every entry's SELinux label; the mount says it keeps
/// none (EOPNOTSUPP, as NFSv3 or vfat) rather than "none set" (ENODATA),
/// so `ls` asks once per mount, not once per entry: a GETXATTR is a round
/// trip to the daemon. Counted from the daemon's request counters.
#[test]
fn ls_l_asks_for_selinux_labels_once_not_per_entry() {
    let lib = TestLib::empty("label");
    let addr = format!("127.0.0.1:{}", free_port());
    let m = lib.mount(&["--metrics", &addr]);
    let dir = m.path("frames");
    fs::create_dir(&dir).unwrap();
    for i in 0..200 {
        fs::write(dir.join(format!("frame_{i:04}.exr")), b"x").unwrap();
    }
    assert_eq!(
        get_xattr(
            &dir.join("frame_0000.exr"),
            "security.selinux",
            &mut [0u8; 64]
        ),
        -1
    );
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EOPNOTSUPP)
    );
    let url = format!("http://{addr}/metrics");
    let xattrs = || {
        metric(
            &scrape(&url),
            "markbase_requests_total{op=xattr,user=label}",
        )
    };
    let before = xattrs();
    let out = std::process::Command::new("ls")
        .arg("-l")
        .arg(&dir)
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 201);
    let asked = xattrs() - before;
    assert!(asked <= 4.0, "{asked} GETXATTRs for ls -l of 200 entries");
}

/// `ls -f` reads a big folder with plain READDIR past its first chunk
/// (`READDIRPLUS_AUTO`), and the kernel keeps that listing without dentries
/// or attributes; an `ls -l` served from it would LOOKUP every entry. The
/// mount drops such a listing at the next open, so `ls -l` reads it again
/// with READDIRPLUS: a handful of LOOKUPs, not one per entry. Counted from
/// the daemon's request counters on a fresh mount (no dentries yet).
#[test]
fn ls_l_after_ls_f_of_a_big_folder_looks_up_no_entry() {
    let lib = TestLib::empty("lsf");
    let m = lib.mount(&[]);
    fs::create_dir(m.path("seq")).unwrap();
    for i in 0..2_000 {
        fs::write(m.path(&format!("seq/frame_{i:05}.dpx")), b"x").unwrap();
    }
    let dir = m.dir.clone();
    m.unmount();
    let addr = format!("127.0.0.1:{}", free_port());
    let m = lib.mount_at(&dir, &["--metrics", &addr]);
    let url = format!("http://{addr}/metrics");
    let lookups = || metric(&scrape(&url), "markbase_requests_total{op=lookup,user=lsf}");
    let ls = |flag: &str| {
        let out = std::process::Command::new("ls")
            .arg(flag)
            .arg(m.path("seq"))
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(ls("-f"), 2_002, "names, . and ..");
    let before = lookups();
    assert_eq!(ls("-l"), 2_001, "total and the entries");
    let asked = lookups() - before;
    assert!(
        asked <= 10.0,
        "{asked} LOOKUPs for ls -l after ls -f of 2,000 entries"
    );
    assert_eq!(ls("-l"), 2_001);
}

/// What Finder writes besides FinderInfo and resource forks: the quarantine
/// flag on downloads, files past 4 GiB (written sparse here), and F_FULLFSYNC
/// (which macFUSE hands on as fsync: fsync must commit the size).
#[test]
fn what_finder_writes_works() {
    use std::os::unix::fs::FileExt;
    let lib = TestLib::empty("finder");
    let m = lib.mount(&[]);
    let p = m.path("download.mov");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let past_4g = (5u64 << 30) + 7;
    f.write_all_at(b"tail", past_4g).unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), past_4g + 4);
    let mut back = [0u8; 4];
    f.read_exact_at(&mut back, past_4g).unwrap();
    assert_eq!(&back, b"tail");
    // Committed by the fsync: the catalog has the size before any close.
    assert_eq!(lib.node_sizes("download.mov"), [(past_4g + 4) as i64]);
    drop(f);
    let v = b"0083;6747a1b2;Safari;F1E2D3C4-0000-4000-8000-000000000000";
    assert_eq!(set_xattr(&p, "user.com.apple.quarantine", v), 0);
    let mut buf = vec![0u8; 256];
    let len = get_xattr(&p, "user.com.apple.quarantine", &mut buf);
    assert_eq!(&buf[..len.max(0) as usize], v);
    fs::remove_file(&p).unwrap();
}

#[test]
fn statfs_reports_the_content_store() {
    let lib = TestLib::empty("s");
    let m = lib.mount(&[]);
    let a = nix::sys::statvfs::statvfs(&m.dir).unwrap();
    let b = nix::sys::statvfs::statvfs(&lib.content_dir()).unwrap();
    assert_eq!(a.blocks(), b.blocks());
    let (fa, fb) = (a.blocks_free() as i64, b.blocks_free() as i64);
    assert!(
        (fa - fb).abs() < (b.blocks() as i64 / 100).max(1024),
        "{fa} vs {fb}"
    );
}

#[test]
fn unmount_flushes_files_that_are_still_open() {
    let lib = TestLib::empty("busy");
    let m = lib.mount(&[]);
    let p = m.path("recording.mov");
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(&vec![3u8; 1 << 20]).unwrap();
    // Not closed, not fsynced: --unmount must commit it anyway.
    let dir = m.dir.clone();
    let t = std::time::Instant::now();
    m.unmount();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "unmount waited {:?}",
        t.elapsed()
    );
    assert_eq!(lib.node_sizes("recording.mov"), [1 << 20]);
    // The writer still holds its file; finishing it must not fail.
    f.write_all(b"tail").unwrap();
    drop(f);
    // The daemon commits the tail at release and exits; then remount.
    for _ in 0..200 {
        if fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let m = lib.mount_at(&dir, &[]);
    assert_eq!(
        fs::metadata(m.path("recording.mov")).unwrap().len(),
        (1 << 20) + 4
    );
}

/// The kernel keeps directory listings it has read (FOPEN_CACHE_DIR); every
/// change through the mount must still show in the next listing, however
/// warm the kernel's copy.
#[test]
fn kernel_kept_listings_follow_every_change() {
    let lib = TestLib::empty("lists");
    let m = lib.mount(&[]);
    let names = |d: &str| sorted_names(&m.path(d));
    fs::create_dir(m.path("a")).unwrap();
    fs::create_dir(m.path("b")).unwrap();
    for i in 0..50 {
        fs::write(m.path(&format!("a/f{i:02}.mov")), b"x").unwrap();
    }
    let mut want: std::collections::BTreeSet<String> =
        (0..50).map(|i| format!("f{i:02}.mov")).collect();
    let listed =
        |want: &std::collections::BTreeSet<String>| want.iter().cloned().collect::<Vec<_>>();
    for _ in 0..3 {
        assert_eq!(names("a"), listed(&want), "warm listing");
    }
    // (change, name gone from a/, name new in a/)
    let steps: [(&str, &str, &str); 6] = [
        ("create", "", "new.mov"),
        ("unlink", "f00.mov", ""),
        ("rename out", "f01.mov", ""),
        ("rename within", "f02.mov", "renamed.mov"),
        ("mkdir", "", "sub"),
        ("rmdir", "sub", ""),
    ];
    for (what, gone, new) in steps {
        match what {
            "create" => fs::write(m.path("a/new.mov"), b"y").unwrap(),
            "unlink" => fs::remove_file(m.path("a/f00.mov")).unwrap(),
            "rename out" => fs::rename(m.path("a/f01.mov"), m.path("b/moved.mov")).unwrap(),
            "rename within" => fs::rename(m.path("a/f02.mov"), m.path("a/renamed.mov")).unwrap(),
            "mkdir" => fs::create_dir(m.path("a/sub")).unwrap(),
            _ => fs::remove_dir(m.path("a/sub")).unwrap(),
        }
        want.remove(gone);
        if !new.is_empty() {
            want.insert(new.to_string());
        }
        assert_eq!(names("a"), listed(&want), "after {what}");
    }
    assert_eq!(names("b"), vec!["moved.mov".to_string()], "after rename in");
    fs::hard_link(m.path("a/f03.mov"), m.path("b/link.mov")).unwrap();
    assert_eq!(
        names("b"),
        vec!["link.mov".to_string(), "moved.mov".to_string()],
        "after link"
    );
    // Remount: the new daemon's listings are new to the kernel.
    m.unmount();
    let m = lib.mount(&[]);
    assert_eq!(sorted_names(&m.path("a")), listed(&want), "after remount");
}

fn sorted_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}
