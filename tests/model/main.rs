//! Property-based test of the file system without FUSE: random sequences of
//! operations run by a [`driver::Driver`] (the core called directly, and a
//! real NFS client against the built-in server) and by the reference model
//! (`reference.rs`); every result (data or errno) and the final tree must
//! agree. Shrunk failures are kept below as named regression tests, run on
//! both drivers.
//!
//! * `ops.rs`: the operations and their generators;
//! * `reference.rs`: POSIX as maps in memory;
//! * `driver.rs`: the driver interface and the core's driver;
//! * `nfs_driver.rs`: the NFS front end's driver.

#[path = "../common/mod.rs"]
mod common;
mod driver;
mod nfs_driver;
mod ops;
mod reference;

use std::collections::BTreeMap;
use std::ffi::OsStr;

use markbase::catalog::ROOT_INO;
use markbase::fs::flags::OpenFlags;
use markbase::fs::Caller;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use driver::{CoreDriver, Driver};
use ops::{op, p, Op};
use reference::Model;

const ME: Caller = Caller { uid: 0, gid: 0 };

/// A tree as a front end sees it: what the model and a driver must agree on
/// at the end of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    Dir {
        perm: u16,
        entries: BTreeMap<String, Tree>,
    },
    File {
        perm: u16,
        nlink: u32,
        data: Vec<u8>,
    },
    Symlink(String),
}

fn run_on(driver: &dyn Driver, ops: &[Op]) {
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let got = driver.apply(op);
        assert_eq!(got, want, "step {i}: {op:?}");
    }
    assert_eq!(driver.tree(), model.tree(), "final tree");
}

fn run(ops: &[Op]) {
    run_on(&CoreDriver::new(), ops);
    run_on(&nfs_driver::NfsDriver::new(), ops);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        // Shrunk failures are kept beside this file and tried first.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/model/regressions.txt"))),
        ..ProptestConfig::default()
    })]
    #[test]
    fn core_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(&CoreDriver::new(), &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/model/regressions.txt"))),
        ..ProptestConfig::default()
    })]
    #[test]
    fn nfs_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(&nfs_driver::NfsDriver::new(), &ops);
    }
}

#[test]
fn links_symlinks_and_modes() {
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/b")),
        Op::Write(p("a/b"), 0, 5, 7),
        Op::Link(p("a/b"), p("c")),
        Op::Write(p("c"), 5, 2, 8),
        Op::Read(p("a/b")),
        Op::Link(p("a"), p("b")),
        Op::Symlink(p("b"), "a/b".into()),
        Op::Readlink(p("b")),
        Op::Read(p("b")),
        Op::Chmod(p("a"), 0o2775),
        Op::Mkdir(p("a/c")),
        Op::Chmod(p("c"), 0o600),
        Op::Rename(p("c"), p("a/b")),
        Op::Unlink(p("a/b")),
    ]);
}

#[test]
fn an_open_file_outlives_its_name_and_a_listing_its_edits() {
    run(&[
        Op::Create(p("a")),
        Op::Write(p("a"), 0, 9, 1),
        Op::OpenUnlinkRead(p("a")),
        Op::Read(p("a")),
        Op::Create(p("b")),
        Op::ListAcrossEdit(vec![], "c".into()),
        Op::ListAcrossEdit(p("c"), "d".into()),
        Op::ListAcrossEdit(p("b"), "d".into()),
    ]);
}

#[test]
fn regression_rename_dir_into_itself() {
    run(&[
        Op::Mkdir(p("a")),
        Op::Rename(p("a"), p("a/b")),
        Op::Mkdir(p("a/b")),
        Op::Rename(p("a"), p("a/b/c")),
    ]);
}

#[test]
fn regression_write_past_end_then_truncate() {
    run(&[
        Op::Create(p("a")),
        Op::Write(p("a"), 50, 3, 9),
        Op::Truncate(p("a"), 10),
        Op::Read(p("a")),
    ]);
}

#[test]
fn regression_rename_walks_both_parents_first() {
    run(&[Op::Create(p("c")), Op::Rename(p("a"), p("c/a/a"))]);
}

#[test]
fn regression_rename_into_a_file_parent() {
    run(&[Op::Create(p("c")), Op::Rename(p("a"), p("c/a"))]);
}

#[test]
fn regression_empty_write_past_end_does_not_grow() {
    run(&[
        Op::Create(p("b")),
        Op::Write(p("b"), 1, 0, 0),
        Op::Read(p("b")),
    ]);
}

/// Found by the differential test (EBADF once in ~15 runs): the kernel
/// sends a file's last release after close() has returned, so it can retire
/// the open file between the next open's look and its handle.
#[test]
fn regression_open_racing_the_last_release() {
    let real = CoreDriver::new();
    let fs = &real.fs;
    let (attr, fh) = fs
        .create(
            ROOT_INO,
            OsStr::new("clip.mov"),
            0o644,
            0,
            OpenFlags::WRITE,
            ME,
        )
        .unwrap();
    fs.release(fh).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
    std::thread::scope(|s| {
        // The kernel's background releases.
        s.spawn(move || {
            for fh in rx {
                fs.release(fh).expect("release");
            }
        });
        for _ in 0..20_000 {
            let fh = fs.open(attr.ino, OpenFlags::WRITE).expect("open");
            fs.write(fh, 0, b"x").expect("write");
            tx.send(fh).unwrap();
        }
        drop(tx);
    });
    // Every handle is gone, and so is the open file: unlink frees it now.
    fs.unlink(ROOT_INO, OsStr::new("clip.mov")).unwrap();
}
