//! The core's concurrent protocols under the `shuttle` concurrency checker
//! (`cargo test --features shuttle --lib fs::concurrency`; `scripts/test`
//! runs it). The core's locks and atomics come from `crate::sync`, which
//! such a build points at shuttle's, so every lock and atomic access below is
//! a point where shuttle may switch threads; each test runs many randomly
//! scheduled interleavings and fails with a replayable schedule.

use std::ffi::OsStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::cache::TtlCache;
use super::flags::OpenFlags;
use super::test_support::TestFs;
use crate::catalog::ROOT_INO;
use crate::sync::{AtomicU64, Mutex};

/// Each test runs its racing parties in threads of their own (the test's
/// main thread only joins them), so the scheduler picks who goes first too.
///
/// The epoch protocol: a change writes the catalog, then bumps the epoch,
/// then drops the cached value; a loader reads the epoch, then the catalog,
/// and caches what it read only if the epoch did not move. Whatever the
/// interleaving, what is cached afterwards is the new value.
#[test]
fn a_racing_load_never_caches_a_stale_value() {
    shuttle::check_random(
        || {
            let cache = Arc::new(TtlCache::<u32>::new(4, Duration::MAX));
            let epoch = Arc::new(AtomicU64::new(0));
            let catalog = Arc::new(Mutex::new(1u32));
            let loader = {
                let (cache, epoch, catalog) = (cache.clone(), epoch.clone(), catalog.clone());
                shuttle::thread::spawn(move || {
                    let _ = cache.get_or_load::<()>(7, &epoch, || Ok(*catalog.lock()));
                })
            };
            let change = {
                let (cache, epoch, catalog) = (cache.clone(), epoch.clone(), catalog.clone());
                shuttle::thread::spawn(move || {
                    *catalog.lock() = 2;
                    epoch.fetch_add(1, Relaxed);
                    cache.pop([&7]);
                })
            };
            loader.join().expect("loader");
            change.join().expect("change");
            let now = cache.get_or_load::<()>(7, &epoch, || Ok(*catalog.lock()));
            assert_eq!(now, Ok(2), "a stale value was cached");
        },
        2_000,
    );
}

/// The kernel sends a file's last release after `close(2)` returned, so a
/// new open can race it: the open must never see the open file it is about
/// to use retired under it (EBADF), and once both are done nothing is left
/// open. (Found once in ~15 runs by the differential test; here every run
/// explores its own interleaving.)
#[test]
fn an_open_racing_the_last_release_gets_a_working_handle() {
    shuttle::check_random(
        || {
            let t = Arc::new(TestFs::new());
            let f = t.file("clip.mov", b"x");
            let first = t.fs.open(f.ino, OpenFlags::READ).expect("open");
            let late_release = {
                let t = t.clone();
                shuttle::thread::spawn(move || t.fs.release(first).expect("release"))
            };
            let new_open = {
                let t = t.clone();
                shuttle::thread::spawn(move || {
                    let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
                    t.fs.write(fh, 0, b"y").expect("write on the new handle");
                    // Deleted while open: the inode lives on until the
                    // release (it would not, had the open used an open
                    // file the late release retired).
                    t.fs.unlink(ROOT_INO, OsStr::new("clip.mov"))
                        .expect("unlink");
                    let a = t.fs.getattr(f.ino).expect("an open inode lives on");
                    assert_eq!((a.nlink, a.size), (0, 1));
                    t.fs.release(fh).expect("release");
                })
            };
            late_release.join().expect("release thread");
            new_open.join().expect("open thread");
            assert_eq!(t.fs.stats().open_files, 0, "an open file was left");
            assert!(t.fs.getattr(f.ino).is_err(), "freed at the last release");
        },
        300,
    );
}

/// An unlink racing the last release of the same file: the content is freed
/// exactly once, by whichever comes last, and the inode is gone.
#[test]
fn an_unlink_racing_the_last_release_frees_the_file_once() {
    shuttle::check_random(
        || {
            let t = Arc::new(TestFs::new());
            let f = t.file("clip.mov", b"bytes");
            let content =
                t.fs.catalog()
                    .get(f.ino)
                    .ok()
                    .and_then(|r| r.content)
                    .expect("content file");
            let fh = t.fs.open(f.ino, OpenFlags::READ).expect("open");
            let release = {
                let t = t.clone();
                shuttle::thread::spawn(move || t.fs.release(fh).expect("release"))
            };
            let unlink = {
                let t = t.clone();
                shuttle::thread::spawn(move || {
                    t.fs.unlink(ROOT_INO, OsStr::new("clip.mov"))
                        .expect("unlink")
                })
            };
            release.join().expect("release thread");
            unlink.join().expect("unlink thread");
            assert!(!content.exists(), "content left behind");
            assert!(t.fs.getattr(f.ino).is_err(), "inode left behind");
        },
        300,
    );
}
