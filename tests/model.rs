//! Property-based test of the file system core without FUSE: random
//! sequences of operations on `MarkBaseFs` (over a real SQLite catalog and
//! content store) and on a simple in-memory model; every result (data or
//! errno) and the final tree must agree. Shrunk failures are kept below as
//! named regression tests.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

use markbase::catalog::sqlite::{OpenOptions, SqliteCatalog};
use markbase::catalog::{Ino, Kind, ROOT_INO};
use markbase::fs::flags::{OpenFlags, RenameMode};
use markbase::fs::{Caller, FsConfig, MarkBaseFs, SetAttrReq};
use markbase::store::ContentStore;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
enum MNode {
    Dir(BTreeMap<String, MNode>),
    File(Vec<u8>),
}

type P = Vec<String>;

#[derive(Clone, Debug)]
enum Op {
    Mkdir(P),
    Create(P),
    Write(P, u64, usize, u8),
    Truncate(P, u64),
    Read(P),
    Unlink(P),
    Rmdir(P),
    Rename(P, P),
}

type R = Result<Option<Vec<u8>>, i32>;

fn path() -> impl Strategy<Value = P> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        1..=3,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        path().prop_map(Op::Mkdir),
        path().prop_map(Op::Create),
        (path(), 0u64..64, 0usize..40, any::<u8>()).prop_map(|(p, o, l, b)| Op::Write(p, o, l, b)),
        (path(), 0u64..100).prop_map(|(p, s)| Op::Truncate(p, s)),
        path().prop_map(Op::Read),
        path().prop_map(Op::Unlink),
        path().prop_map(Op::Rmdir),
        (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
    ]
}

// ---------------------------------------------------------------- the model

struct Model {
    root: MNode,
}

fn dir_at<'a>(root: &'a mut MNode, p: &[String]) -> Result<&'a mut BTreeMap<String, MNode>, i32> {
    let mut cur = root;
    for c in p {
        cur = match cur {
            MNode::Dir(m) => m.get_mut(c).ok_or(libc::ENOENT)?,
            MNode::File(_) => return Err(libc::ENOTDIR),
        };
    }
    match cur {
        MNode::Dir(m) => Ok(m),
        MNode::File(_) => Err(libc::ENOTDIR),
    }
}

impl Model {
    fn parent(&mut self, p: &P) -> Result<(&mut BTreeMap<String, MNode>, String), i32> {
        let (last, init) = p.split_last().expect("non-empty path");
        Ok((dir_at(&mut self.root, init)?, last.clone()))
    }

    fn apply(&mut self, op: &Op) -> R {
        match op {
            Op::Mkdir(p) | Op::Create(p) => {
                let (d, n) = self.parent(p)?;
                if d.contains_key(&n) {
                    return Err(libc::EEXIST);
                }
                d.insert(
                    n,
                    if matches!(op, Op::Mkdir(_)) {
                        MNode::Dir(BTreeMap::new())
                    } else {
                        MNode::File(vec![])
                    },
                );
                Ok(None)
            }
            Op::Write(p, off, len, b) => {
                let (d, n) = self.parent(p)?;
                match d.get_mut(&n) {
                    None => Err(libc::ENOENT),
                    Some(MNode::Dir(_)) => Err(libc::EISDIR),
                    Some(MNode::File(v)) => {
                        let (start, end) = (*off as usize, *off as usize + len);
                        if *len > 0 {
                            if v.len() < end {
                                v.resize(end, 0);
                            }
                            v[start..end].fill(*b);
                        }
                        Ok(None)
                    }
                }
            }
            Op::Truncate(p, s) => {
                let (d, n) = self.parent(p)?;
                match d.get_mut(&n) {
                    None => Err(libc::ENOENT),
                    Some(MNode::Dir(_)) => Err(libc::EISDIR),
                    Some(MNode::File(v)) => {
                        v.resize(*s as usize, 0);
                        Ok(None)
                    }
                }
            }
            Op::Read(p) => {
                let (d, n) = self.parent(p)?;
                match d.get(&n) {
                    None => Err(libc::ENOENT),
                    Some(MNode::Dir(_)) => Err(libc::EISDIR),
                    Some(MNode::File(v)) => Ok(Some(v.clone())),
                }
            }
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                match d.get(&n) {
                    None => Err(libc::ENOENT),
                    Some(MNode::Dir(_)) => Err(libc::EISDIR),
                    Some(MNode::File(_)) => {
                        d.remove(&n);
                        Ok(None)
                    }
                }
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                match d.get(&n) {
                    None => Err(libc::ENOENT),
                    Some(MNode::File(_)) => Err(libc::ENOTDIR),
                    Some(MNode::Dir(m)) if !m.is_empty() => Err(libc::ENOTEMPTY),
                    Some(MNode::Dir(_)) => {
                        d.remove(&n);
                        Ok(None)
                    }
                }
            }
            Op::Rename(a, b) => {
                // As the kernel does: walk both parent paths first.
                self.parent(a)?;
                self.parent(b)?;
                let src_is_dir = {
                    let (d, n) = self.parent(a)?;
                    match d.get(&n) {
                        None => return Err(libc::ENOENT),
                        Some(x) => matches!(x, MNode::Dir(_)),
                    }
                };
                let dst = {
                    let (d, n) = self.parent(b)?;
                    d.get(&n).map(|x| match x {
                        MNode::Dir(m) => (true, m.is_empty()),
                        MNode::File(_) => (false, true),
                    })
                };
                if a == b {
                    return Ok(None);
                }
                if src_is_dir && b.len() > a.len() && b[..a.len()] == a[..] {
                    return Err(libc::EINVAL);
                }
                match (src_is_dir, dst) {
                    (true, Some((false, _))) => return Err(libc::ENOTDIR),
                    (false, Some((true, _))) => return Err(libc::EISDIR),
                    (true, Some((true, false))) => return Err(libc::ENOTEMPTY),
                    _ => {}
                }
                let node = {
                    let (d, n) = self.parent(a)?;
                    d.remove(&n).expect("present")
                };
                let (d, n) = self.parent(b)?;
                d.insert(n, node);
                Ok(None)
            }
        }
    }
}

// ---------------------------------------------------------------- the real core

struct Real {
    _tmp: tempfile::TempDir,
    fs: MarkBaseFs,
}

const ME: Caller = Caller { uid: 0, gid: 0 };

impl Real {
    fn new() -> Real {
        let tmp = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(
            &tmp.path().join("u.sqlite"),
            &OpenOptions {
                uid: 0,
                gid: 0,
                create: true,
            },
        )
        .unwrap();
        let store = ContentStore::new(&tmp.path().join("content"), &[]).unwrap();
        let fs = MarkBaseFs::new(Arc::new(cat), store, FsConfig::default());
        Real { _tmp: tmp, fs }
    }

    fn resolve(&self, p: &[String]) -> Result<Ino, i32> {
        let mut ino = ROOT_INO;
        for c in p {
            ino = self
                .fs
                .lookup(ino, OsStr::new(c))
                .map_err(|e| e.errno())?
                .ino;
        }
        Ok(ino)
    }

    fn parent<'a>(&self, p: &'a P) -> Result<(Ino, &'a OsStr), i32> {
        let (last, init) = p.split_last().expect("non-empty path");
        let dir = self.resolve(init)?;
        // The kernel's path walk: a parent must be a directory.
        if self.fs.getattr(dir).map_err(|e| e.errno())?.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, OsStr::new(last.as_str())))
    }

    fn with_file<T>(
        &self,
        p: &P,
        flags: i32,
        f: impl FnOnce(u64) -> Result<T, i32>,
    ) -> Result<T, i32> {
        let ino = self.resolve(p)?;
        let fh = self
            .fs
            .open(ino, OpenFlags::from_raw(flags))
            .map_err(|e| e.errno())?;
        let r = f(fh);
        self.fs.release(fh).map_err(|e| e.errno())?;
        r
    }

    fn apply(&self, op: &Op) -> R {
        let e = |x: markbase::fs::FsError| x.errno();
        match op {
            Op::Mkdir(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.mkdir(d, n, 0o755, 0, ME).map_err(e)?;
                Ok(None)
            }
            Op::Create(p) => {
                let (d, n) = self.parent(p)?;
                let (_, fh) = self
                    .fs
                    .create(d, n, 0o644, 0, OpenFlags::WRITE, ME)
                    .map_err(e)?;
                self.fs.release(fh).map_err(e)?;
                Ok(None)
            }
            Op::Write(p, off, len, b) => self.with_file(p, libc::O_WRONLY, |fh| {
                self.fs.write(fh, *off, &vec![*b; *len]).map_err(e)?;
                Ok(None)
            }),
            Op::Truncate(p, s) => {
                let ino = self.resolve(p)?;
                self.fs
                    .setattr(
                        ino,
                        &SetAttrReq {
                            size: Some(*s),
                            ..Default::default()
                        },
                    )
                    .map_err(e)?;
                Ok(None)
            }
            Op::Read(p) => self.with_file(p, libc::O_RDONLY, |fh| {
                Ok(Some(self.fs.read(fh, 0, 4096).map_err(e)?))
            }),
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.unlink(d, n).map_err(e)?;
                Ok(None)
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                self.fs.rmdir(d, n).map_err(e)?;
                Ok(None)
            }
            Op::Rename(a, b) => {
                let (da, na) = self.parent(a)?;
                let (db, nb) = self.parent(b)?;
                self.fs
                    .rename(da, na, db, nb, RenameMode::Replace)
                    .map_err(e)?;
                Ok(None)
            }
        }
    }

    fn tree(&self, ino: Ino) -> MNode {
        let a = self.fs.getattr(ino).unwrap();
        if a.kind == Kind::Dir {
            let l = self.fs.listing(ino).unwrap();
            MNode::Dir(
                l.entries
                    .iter()
                    .map(|e| (e.name.clone(), self.tree(e.ino)))
                    .collect(),
            )
        } else {
            let fh = self.fs.open(ino, OpenFlags::READ).unwrap();
            let d = self.fs.read(fh, 0, 1 << 20).unwrap();
            self.fs.release(fh).unwrap();
            assert_eq!(a.size as usize, d.len(), "size of inode {ino}");
            MNode::File(d)
        }
    }
}

fn run(ops: &[Op]) {
    let mut model = Model {
        root: MNode::Dir(BTreeMap::new()),
    };
    let real = Real::new();
    for (i, op) in ops.iter().enumerate() {
        // The kernel rejects I/O on a path whose type is wrong before we see
        // it (EISDIR on open of a directory): the core must agree anyway.
        let want = model.apply(op);
        let got = real.apply(op);
        assert_eq!(got, want, "step {i}: {op:?}");
    }
    assert_eq!(real.tree(ROOT_INO), model.root, "final tree");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn core_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

fn p(s: &str) -> P {
    s.split('/').map(String::from).collect()
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
    let real = Real::new();
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
