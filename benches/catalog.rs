//! What one catalog operation costs, with no FUSE in the loop.
//!
//! `cargo bench --bench catalog` makes a library with the shared
//! `make_library.py` (12,659 nodes; `MARKBASE_FIXTURES` overrides where it is
//! looked for), opens its catalog as a mount does, and times, single-threaded:
//! point reads by inode (`get`), folder listings (`list`), and creates and
//! unlinks of 10,000 empty files in 100 folders, each its own committed
//! transaction, as the mount does them. Medians of `--rounds` rounds (3).
//!
//! It answers two questions: what the seed design's "2-5 ms per SQLite point
//! query" really is on this machine, and how much of a create or unlink
//! through the mount is the catalog's own work (compare with
//! `benches/compare.py --metadata-only`, which measures the same loop
//! through FUSE).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use markbase::catalog::sqlite::{OpenOptions, SqliteCatalog};
use markbase::catalog::{Ino, Kind, Namespace, NewNode, ROOT_INO};

const FILES: usize = 10_000;
const FOLDERS: usize = 100;

fn fixtures() -> PathBuf {
    std::env::var_os("MARKBASE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

fn node(kind: Kind, content: Option<PathBuf>) -> NewNode {
    NewNode {
        kind,
        perm: if kind == Kind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        rdev: 0,
        target: None,
        content,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every inode under the root, folders first found first.
fn walk(c: &SqliteCatalog) -> (Vec<Ino>, Vec<Ino>) {
    let (mut all, mut dirs, mut todo) = (vec![], vec![], vec![ROOT_INO]);
    while let Some(d) = todo.pop() {
        dirs.push(d);
        for e in c.list(d).unwrap_or_default() {
            all.push(e.ino);
            if e.kind == Kind::Dir {
                todo.push(e.ino);
            }
        }
    }
    (all, dirs)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3usize);
    let tmp = tempfile::tempdir()?;
    let out = Command::new("python3")
        .arg(fixtures().join("make_library.py"))
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--user", "bench"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "make_library.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = tmp.path().join("users/bench.sqlite");
    let opts = OpenOptions {
        uid: 0,
        gid: 0,
        create: false,
    };
    let t = Instant::now();
    let c = SqliteCatalog::open(&path, &opts)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let (all, dirs) = walk(&c);

    let now = SystemTime::now();
    let top = c.create(ROOT_INO, "catalog-bench", &node(Kind::Dir, None), now)?;
    let folders = (0..FOLDERS)
        .map(|i| {
            Ok(
                c.create(top.ino, &format!("d{i:03}"), &node(Kind::Dir, None), now)?
                    .ino,
            )
        })
        .collect::<anyhow::Result<Vec<Ino>>>()?;

    let (mut get, mut list, mut create, mut unlink) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        // Point reads, in an order no cache can follow.
        let t = Instant::now();
        for i in 0..all.len() {
            c.get(all[(i * 7919) % all.len()])?;
        }
        get.push(t.elapsed().as_secs_f64() * 1e6 / all.len() as f64);
        let t = Instant::now();
        for d in &dirs {
            c.list(*d)?;
        }
        list.push(t.elapsed().as_secs_f64() * 1e6 / dirs.len() as f64);

        let mut made = Vec::with_capacity(FILES);
        let t = Instant::now();
        for i in 0..FILES {
            let (dir, name) = (folders[i % FOLDERS], format!("f{i:05}"));
            let content = tmp.path().join(format!("content/{i}"));
            let r = c.create(dir, &name, &node(Kind::File, Some(content)), now)?;
            made.push((dir, name, r.ino));
        }
        create.push(t.elapsed().as_secs_f64() * 1e6 / FILES as f64);
        let t = Instant::now();
        for (dir, name, ino) in &made {
            c.unlink(*dir, name, *ino, false, now)?;
        }
        unlink.push(t.elapsed().as_secs_f64() * 1e6 / FILES as f64);
    }

    println!(
        "catalog of {} nodes ({} folders), opened in {open_ms:.1} ms; medians of {rounds} rounds",
        all.len(),
        dirs.len()
    );
    println!("{:<34} {:>10} {:>12}", "operation", "us/op", "ops/s");
    for (what, v) in [
        ("get (point read by inode)", median(get)),
        ("list (one folder, rendered)", median(list)),
        ("create (file, committed)", median(create)),
        ("unlink (last name, committed)", median(unlink)),
    ] {
        println!("{what:<34} {v:>10.1} {:>12.0}", 1e6 / v);
    }
    Ok(())
}
