//! Differential test: the same random system calls on a real MarkBase mount
//! and on a plain temporary directory (the machine's own file system); every
//! result (value or errno) and the final trees (names, types, sizes, modes,
//! link counts, bytes, symlink targets) must match.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NAMES: &[&str] = &["a", "b", "clip.mov", "D"];
/// Operations, weighted: making things comes up more often than breaking them.
const OPS: &[u64] = &[
    0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 12, 13, 13,
];

fn rel(rng: &mut Rng) -> PathBuf {
    let depth = if rng.below(10) < 6 {
        1
    } else {
        2 + rng.below(2)
    };
    (0..depth)
        .map(|_| NAMES[rng.below(NAMES.len() as u64) as usize])
        .collect()
}

#[derive(Debug, PartialEq)]
enum Out {
    Ok,
    Data(Vec<u8>),
    Err(i32),
}

fn out<T>(r: std::io::Result<T>) -> Out {
    match r {
        Ok(_) => Out::Ok,
        Err(e) => Out::Err(e.raw_os_error().unwrap_or(-1)),
    }
}

fn apply(root: &Path, op: u64, a: &Path, b: &Path, n: u64) -> Out {
    let (pa, pb) = (root.join(a), root.join(b));
    match op {
        0 => out(fs::create_dir(&pa)),
        1 => out(fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&pa)),
        2 => out(fs::OpenOptions::new().write(true).open(&pa).and_then(|f| {
            let data = vec![(n % 251) as u8; (n % 9000) as usize];
            f.write_all_at(&data, n % 20_000)
        })),
        3 => out(fs::OpenOptions::new()
            .write(true)
            .open(&pa)
            .and_then(|f| f.set_len(n % 30_000))),
        4 => match fs::read(&pa) {
            Ok(d) => Out::Data(d),
            Err(e) => Out::Err(e.raw_os_error().unwrap_or(-1)),
        },
        5 => out(fs::remove_file(&pa)),
        6 => out(fs::remove_dir(&pa)),
        7 => out(fs::rename(&pa, &pb)),
        8 => out(std::os::unix::fs::symlink(b, &pa)),
        9 => out(fs::hard_link(&pa, &pb)),
        10 => out(fs::set_permissions(
            &pa,
            fs::Permissions::from_mode(0o600 + (n % 0o100) as u32),
        )),
        11 => match fs::read_link(&pa) {
            Ok(t) => Out::Data(t.into_os_string().into_encoded_bytes()),
            Err(e) => Out::Err(e.raw_os_error().unwrap_or(-1)),
        },
        12 => out(fs::OpenOptions::new()
            .append(true)
            .open(&pa)
            .and_then(|mut f| f.write_all(b"appended"))),
        _ => out(fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pa)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(n % 5000))?;
                f.write_all(b"xyz")?;
                let mut s = Vec::new();
                f.seek(SeekFrom::Start(0))?;
                f.read_to_end(&mut s)?;
                Ok(s)
            })),
    }
}

#[derive(Debug, PartialEq)]
struct Entry {
    path: PathBuf,
    kind: &'static str,
    size: u64,
    mode: u32,
    nlink: u64,
    data: Vec<u8>,
}

fn snapshot(root: &Path) -> Vec<Entry> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let (kind, data) = if m.is_dir() {
                stack.push(r.clone());
                ("dir", vec![])
            } else if m.file_type().is_symlink() {
                (
                    "symlink",
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                ("file", fs::read(&p).unwrap())
            };
            out.push(Entry {
                path: r,
                kind,
                size: if m.is_dir() { 0 } else { m.len() },
                mode: m.mode() & 0o7777,
                nlink: if m.is_dir() { 0 } else { m.nlink() },
                data,
            });
        }
    }
    out
}

#[test]
fn mount_behaves_like_a_local_directory() {
    let lib = TestLib::empty("diff");
    let m = lib.mount(&[]);
    let plain = lib.tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let mut succeeded = 0;
    for seed in 1..=8u64 {
        let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
        let sub = format!("run{seed}");
        fs::create_dir(m.dir.join(&sub)).unwrap();
        fs::create_dir(plain.join(&sub)).unwrap();
        for step in 0..500 {
            let op = OPS[rng.below(OPS.len() as u64) as usize];
            let (a, b, n) = (rel(&mut rng), rel(&mut rng), rng.next());
            let got = apply(&m.dir.join(&sub), op, &a, &b, n);
            let want = apply(&plain.join(&sub), op, &a, &b, n);
            assert_eq!(
                got, want,
                "seed {seed} step {step}: op {op} {a:?} {b:?} {n}"
            );
            succeeded += !matches!(got, Out::Err(_)) as usize;
        }
        assert_eq!(
            snapshot(&m.dir.join(&sub)),
            snapshot(&plain.join(&sub)),
            "seed {seed}: final trees"
        );
    }
    eprintln!("{succeeded} of 4000 operations succeeded");
    assert!(
        succeeded > 600,
        "too few operations succeeded ({succeeded}) to mean much"
    );
    // And the same after a remount.
    let dir = m.dir.clone();
    m.unmount();
    let m = lib.mount_at(&dir, &[]);
    assert_eq!(snapshot(&m.dir), snapshot(&plain), "after remount");
}
