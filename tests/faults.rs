//! Fault injection: what happens to real mounts. A content file deleted
//! behind the mount's back, a catalog row deleted behind its back, a full
//! content disk, a catalog held locked by another process (a slow disk, as
//! far as the mount can tell), and a content file a killed daemon left
//! without a row. In each case the mount answers with an errno, keeps
//! serving everything else, and loses nothing that was already written.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn location_of(cat: &Path, label: &str) -> PathBuf {
    let c = rusqlite::Connection::open(cat).unwrap();
    let loc: String = c
        .query_row(
            "SELECT l.location FROM file_locations l JOIN file_nodes n ON n.node_id = l.file_uuid
             WHERE n.label = ?1",
            [label],
            |r| r.get(0),
        )
        .unwrap();
    PathBuf::from(loc)
}

#[test]
fn content_or_row_deleted_behind_the_mounts_back() {
    let lib = TestLib::empty("fay");
    let m = lib.mount(&[]);
    fs::write(m.path("a.mov"), stream(1, 300_000)).unwrap();
    fs::write(m.path("b.mov"), stream(2, 200_000)).unwrap();
    fs::write(m.path("c.mov"), stream(3, 100_000)).unwrap();
    // A file that is open when its content file is deleted keeps its bytes.
    let held = fs::File::open(m.path("c.mov")).unwrap();
    sync_catalog(&m.dir);
    fs::remove_file(location_of(&lib.catalog(), "c.mov")).unwrap();
    fs::remove_file(location_of(&lib.catalog(), "a.mov")).unwrap();
    assert_eq!(errno_of(fs::read(m.path("a.mov"))), Some(libc::EIO));
    let mut got = vec![0u8; 100_000];
    std::os::unix::fs::FileExt::read_exact_at(&held, &mut got, 0).unwrap();
    assert_eq!(got, stream(3, 100_000));
    drop(held);
    // A catalog row deleted while mounted: whatever the caches still say,
    // every answer is a value or an errno, and the rest keeps working.
    let b_content = location_of(&lib.catalog(), "b.mov");
    rusqlite::Connection::open(lib.catalog())
        .unwrap()
        .execute_batch(
            "DELETE FROM file_locations WHERE file_uuid IN (SELECT node_id FROM file_nodes WHERE label='b.mov');
             DELETE FROM file_nodes WHERE label='b.mov';",
        )
        .unwrap();
    for r in [
        fs::read(m.path("b.mov")).map(|_| ()),
        fs::metadata(m.path("b.mov")).map(|_| ()),
        fs::rename(m.path("b.mov"), m.path("b2.mov")),
    ] {
        if let Some(e) = errno_of(r) {
            assert!([libc::ENOENT, libc::EIO].contains(&e), "errno {e}");
        }
    }
    fs::write(m.path("d.mov"), stream(4, 50_000)).unwrap();
    assert_eq!(fs::read(m.path("d.mov")).unwrap(), stream(4, 50_000));
    assert!(fs::read_dir(&m.dir).unwrap().count() >= 2);
    m.unmount();
    // fsck sees both, and --repair keeps b's bytes in lost+found.
    let (code, out) = fsck(&lib.data, "fay", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("missing") && out.contains("no catalog row"),
        "{out}"
    );
    let (code, _) = fsck(&lib.data, "fay", &["--repair"]);
    assert_eq!(code, 1);
    let (code, out) = fsck(&lib.data, "fay", &[]);
    assert_eq!(code, 0, "{out}");
    let kept = lib
        .data
        .join("lost+found/fay")
        .join(b_content.file_name().unwrap());
    assert_eq!(fs::read(kept).unwrap(), stream(2, 200_000));
    let m = lib.mount(&[]);
    assert_eq!(errno_of(fs::read(m.path("a.mov"))), Some(libc::EIO));
    assert_eq!(fs::read(m.path("d.mov")).unwrap(), stream(4, 50_000));
}

#[test]
fn recovery_pass_at_mount_clears_unreferenced_content() {
    let lib = TestLib::empty("gus");
    let fan = lib.content_dir().join("ab");
    fs::create_dir_all(&fan).unwrap();
    let orphan = fan.join("abcdef00-0000-4000-8000-000000000000");
    let empty = fan.join("abcdef00-0000-4000-8000-000000000001");
    fs::write(&orphan, b"left by a killed daemon").unwrap();
    fs::write(&empty, b"").unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for p in [&orphan, &empty] {
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let young = fan.join("abcdef00-0000-4000-8000-000000000002");
    fs::write(&young, b"a writer may be about to commit its row").unwrap();
    let m = lib.mount(&[]);
    let t = Instant::now();
    while (orphan.exists() || empty.exists()) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !orphan.exists() && !empty.exists(),
        "recovery pass did not run"
    );
    assert!(
        young.exists(),
        "files younger than the grace period are left alone"
    );
    assert_eq!(
        fs::read(
            lib.data
                .join("lost+found/gus")
                .join(orphan.file_name().unwrap())
        )
        .unwrap(),
        b"left by a killed daemon"
    );
    drop(m);
}

/// A small tmpfs over the user's content store, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn new(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn full_content_disk_gives_enospc_and_loses_nothing() {
    for extra in [&[][..], &["--no-passthrough"][..]] {
        let lib = TestLib::empty("hal");
        let _disk = SmallDisk::new(&lib.content_dir(), "8m");
        let m = lib.mount(extra);
        let keep = stream(7, 3 << 20);
        let mut f = fs::File::create(m.path("keep.mov")).unwrap();
        f.write_all(&keep).unwrap();
        f.sync_all().unwrap();
        drop(f);
        // Fill the disk: ENOSPC at a write, an fsync or the close.
        let mut f = fs::File::create(m.path("big.mov")).unwrap();
        let mut err = None;
        for i in 0..16u64 {
            if let Err(e) = f.write_all(&stream(100 + i, 1 << 20)) {
                err = e.raw_os_error();
                break;
            }
        }
        let err = err.or_else(|| errno_of(f.sync_all()));
        assert_eq!(err, Some(libc::ENOSPC), "{extra:?}");
        drop(f);
        assert_eq!(fs::read(m.path("keep.mov")).unwrap(), keep, "{extra:?}");
        // Space comes back: writes resume.
        fs::remove_file(m.path("big.mov")).unwrap();
        let again = stream(9, 2 << 20);
        let mut f = fs::File::create(m.path("again.mov")).unwrap();
        f.write_all(&again).unwrap();
        f.sync_all().unwrap();
        drop(f);
        assert_eq!(fs::read(m.path("again.mov")).unwrap(), again);
        m.unmount();
        let m = lib.mount(extra);
        assert_eq!(fs::read(m.path("keep.mov")).unwrap(), keep);
        assert_eq!(fs::read(m.path("again.mov")).unwrap(), again);
        drop(m);
    }
}

#[test]
fn slow_catalog_writer_does_not_stop_reads() {
    let lib = TestLib::empty("ida");
    let m = lib.mount(&[]);
    fs::write(m.path("a.mov"), stream(5, 1 << 20)).unwrap();
    fs::create_dir(m.path("warm")).unwrap();
    fs::create_dir(m.path("sub")).unwrap();
    // Another process holds the catalog's write lock for 1.5 s.
    let holder = rusqlite::Connection::open(lib.catalog()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let dir = m.dir.clone();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        // (In a folder of its own: the kernel itself holds the parent
        // folder's lock across a mkdir, on any file system.)
        let r = fs::create_dir(dir.join("sub/made-while-locked"));
        (r.map_err(|e| e.to_string()), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    // Reads are served meanwhile.
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(fs::read(m.path("a.mov")).unwrap(), stream(5, 1 << 20));
        assert!(fs::metadata(m.path("warm")).unwrap().is_dir());
        fs::read_dir(&m.dir).unwrap().count();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "a read waited for the writer"
        );
    }
    std::thread::sleep(Duration::from_millis(1300));
    holder.execute_batch("COMMIT;").unwrap();
    let (r, done) = writer.join().unwrap();
    r.expect("the write waits for the lock, then succeeds");
    assert!(done.duration_since(t) >= Duration::from_millis(1400));
    assert!(m.path("sub/made-while-locked").is_dir());
}

#[test]
fn memory_pressure_refuses_new_writers_not_readers() {
    let lib = TestLib::empty("joe");
    let m = lib.mount(&[]);
    fs::write(m.path("a.mov"), stream(11, 100_000)).unwrap();
    drop(m);
    // A daemon told that the machine is always short of memory (a floor of
    // a petabyte available).
    let dir = lib.tmp.path().join("low");
    fs::create_dir(&dir).unwrap();
    let out = std::process::Command::new(bin())
        .env("MARKBASE_MIN_FREE_MIB", "1000000000")
        .arg("--data-dir")
        .arg(&lib.data)
        .args(["fuse", "--mount", "--user", "joe", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_success(&out);
    let m = Mounted { dir };
    assert_eq!(
        errno_of(fs::File::create(m.path("new.mov"))),
        Some(libc::ENOMEM)
    );
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(m.path("a.mov"))),
        Some(libc::ENOMEM)
    );
    assert_eq!(
        fs::read(m.path("a.mov")).unwrap(),
        stream(11, 100_000),
        "reads go on"
    );
    fs::create_dir(m.path("folders-still-work")).unwrap();
    assert!(
        !m.path("new.mov").exists(),
        "a refused create leaves nothing"
    );
}
