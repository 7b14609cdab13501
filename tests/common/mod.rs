//! Shared helpers for the integration tests: make a library (with the shared
//! fixture generator or `markbase library create`), mount it with the real
//! binary, and unmount on drop, even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub mod nfs;
pub mod smb;
pub mod vm;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_markbase"))
}

/// `../shared/fixtures` beside the repository, or `MARKBASE_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("MARKBASE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

/// Add `user`'s library to `data` with the shared `make_library.py`.
pub fn make_library(data: &Path, user: &str, nodes: Option<u32>, anomalies: bool) {
    let mut cmd = Command::new("python3");
    cmd.arg(fixtures_dir().join("make_library.py"))
        .arg("--data-dir")
        .arg(data)
        .arg("--user")
        .arg(user);
    if let Some(n) = nodes {
        cmd.arg("--nodes").arg(n.to_string());
    }
    if anomalies {
        cmd.arg("--anomalies");
    }
    let out = cmd.output().expect("run make_library.py");
    assert!(
        out.status.success(),
        "make_library.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A library in a temporary data directory.
pub struct TestLib {
    pub tmp: TempDir,
    pub data: PathBuf,
    pub user: String,
}

impl Drop for TestLib {
    /// A failing test shows what the daemons logged (the data dir goes with it).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let logs = self.data.join("logs");
        // Daemons log in a folder per user; NFS test servers beside them.
        let entries = std::fs::read_dir(&logs).into_iter().flatten().flatten();
        let files = entries.flat_map(|e| match std::fs::read_dir(e.path()) {
            Ok(d) => d.flatten().map(|f| f.path()).collect(),
            Err(_) => vec![e.path()],
        });
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {} (last {} lines)", path.display(), tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl TestLib {
    /// A library made by the shared `make_library.py`.
    pub fn fixture(user: &str, nodes: Option<u32>, anomalies: bool) -> TestLib {
        let tmp = tempfile::Builder::new()
            .prefix("mbtest-")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        make_library(&data, user, nodes, anomalies);
        TestLib {
            tmp,
            data,
            user: user.to_string(),
        }
    }

    /// A new empty library (`markbase library create`).
    pub fn empty(user: &str) -> TestLib {
        let tmp = tempfile::Builder::new()
            .prefix("mbtest-")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        let lib = TestLib {
            tmp,
            data,
            user: user.to_string(),
        };
        let out = lib.markbase(&["library", "create", "--user", user]);
        assert!(
            out.status.success(),
            "library create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lib
    }

    pub fn catalog(&self) -> PathBuf {
        self.data
            .join("users")
            .join(format!("{}.sqlite", self.user))
    }

    /// The sizes of the catalog's `file_nodes` rows labelled `label` (one
    /// per row; none if there is no such row).
    pub fn node_sizes(&self, label: &str) -> Vec<i64> {
        let c = rusqlite::Connection::open(self.catalog()).expect("open the catalog");
        let mut q = c
            .prepare("SELECT size FROM file_nodes WHERE label = ?1")
            .expect("prepare");
        q.query_map([label], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// The first column of every row `sql` gives, from the catalog, as text.
    pub fn catalog_rows(&self, sql: &str) -> Vec<String> {
        let c = rusqlite::Connection::open(self.catalog()).expect("open the catalog");
        let mut q = c.prepare(sql).expect("prepare");
        q.query_map([], |r| r.get::<_, rusqlite::types::Value>(0))
            .expect("query")
            .map(|v| match v.expect("row") {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    pub fn content_dir(&self) -> PathBuf {
        self.data.join("content").join(&self.user)
    }

    pub fn markbase(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("run markbase")
    }

    /// Mount at a fresh directory; panics (after cleaning up) if it fails.
    pub fn mount(&self, extra: &[&str]) -> Mounted {
        let dir = self.tmp.path().join(format!("mnt-{}", uniq()));
        std::fs::create_dir_all(&dir).expect("mkdir mountpoint");
        self.mount_at(&dir, extra)
    }

    pub fn mount_at(&self, dir: &Path, extra: &[&str]) -> Mounted {
        self.try_mount_env(dir, extra, &[])
            .unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    /// Mount at `dir` with `env` set for the daemon; its stderr if it fails.
    pub fn try_mount_env(
        &self,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mounted, String> {
        let d = dir.to_string_lossy().into_owned();
        let mut args = vec!["fuse", "--mount", "--user", &self.user, "--dir", &d];
        args.extend_from_slice(extra);
        let out = Command::new(bin())
            .arg("--data-dir")
            .arg(&self.data)
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("run markbase");
        // Unmounted on drop whatever happened (a daemon that died mounted).
        let m = Mounted {
            dir: dir.to_path_buf(),
        };
        if out.status.success() {
            Ok(m)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn uniq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A mounted library; unmounted when dropped.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Mounted {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Unmount now and check that it worked.
    pub fn unmount(self) {
        let out = Command::new(bin())
            .args(["fuse", "--unmount", "--dir"])
            .arg(&self.dir)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "unmount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!is_mounted(&self.dir), "still mounted after --unmount");
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .args(["fuse", "--unmount", "--dir"])
            .arg(&self.dir)
            .output();
        if is_mounted(&self.dir) {
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

pub fn is_mounted(dir: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(d.as_str()))
}

/// The fixture's content formula: block `idx` of file `uuid`.
pub fn content_block(uuid: &str, idx: u64) -> Vec<u8> {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{uuid}:{idx}").as_bytes());
    h.iter().cycle().take(4096).copied().collect()
}

/// What the fixture wrote for a sparse file of `size` bytes.
pub fn expected_sparse(uuid: &str, size: u64) -> Vec<u8> {
    let mut v = content_block(uuid, 0);
    v.truncate(size.min(4096) as usize);
    v.resize(size as usize, 0);
    v
}

pub fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// `setxattr(2)` on `p`: 0, or the errno.
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) -> i32 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// `getxattr(2)` on `p` into `buf` (empty: ask for the size): the length, or -1.
pub fn get_xattr(p: &Path, name: &str, buf: &mut [u8]) -> isize {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
}

/// The pid of the daemon serving `dir` (from `markbase fuse --status --json`).
pub fn daemon_pid(dir: &Path) -> u32 {
    let out = Command::new(bin())
        .args(["fuse", "--status", "--json"])
        .output()
        .expect("run markbase");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("status json");
    all.iter()
        .find(|m| m["mountpoint"].as_str() == dir.to_str())
        .and_then(|m| m["pid"].as_u64())
        .expect("a daemon for the mount") as u32
}

/// Bytes `offset..offset+len` of the test stream `seed` (cheap, deterministic).
pub fn stream(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A program on this machine by name (PATH, then ~/.cargo/bin, where
/// `cargo install` puts pjdfstest and fsx).
pub fn installed(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")));
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// pjdfstest's verdict in its output: its summary line, and each test that
/// failed against the configuration's expectations (a failure not listed as
/// expected, or a listed one that passed), with the lines that say why.
pub fn pjdfstest_verdict(output: &str) -> (String, Vec<String>) {
    let summary = output
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or("(no summary)")
        .to_string();
    let mut failed = Vec::new();
    let mut lines = output.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_end();
        if t.ends_with("FAILED") || t.ends_with("PASSED UNEXPECTEDLY") {
            let mut why = t.to_string();
            while let Some(more) = lines.next_if(|m| m.starts_with(char::is_whitespace)) {
                why.push('\n');
                why.push_str(more);
            }
            failed.push(why);
        }
    }
    (summary, failed)
}

/// Run `markbase fsck` on `user` of `data`; (exit code, stdout).
pub fn fsck(data: &Path, user: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(["fsck", "--user", user])
        .args(extra)
        .output()
        .expect("run markbase fsck");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Assert that a command succeeded, showing its stderr if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make the mount commit its open batch of changes (an `fsync` of a folder
/// does): other readers of the SQLite file see changes within a batch
/// window, at once after this.
pub fn sync_catalog(mount_dir: &Path) {
    std::fs::File::open(mount_dir)
        .and_then(|d| d.sync_all())
        .expect("fsync the mount's root");
}

/// A folder of mounts (`--mount --all --dir BASE`): every mount in it is
/// unmounted when dropped, even when a test fails.
pub struct MountBase {
    pub dir: PathBuf,
}

impl Drop for MountBase {
    fn drop(&mut self) {
        for m in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = m.path();
            let _ = Command::new(bin())
                .args(["fuse", "--unmount", "--dir"])
                .arg(&p)
                .output();
            if is_mounted(&p) {
                let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// A free loopback TCP port (for `--metrics`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Scrape `url` and parse it with Prometheus's Python client (its
/// OpenMetrics parser): every sample as `name{k=v,...}` -> value.
pub fn scrape(url: &str) -> std::collections::BTreeMap<String, f64> {
    const PARSE: &str = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
r = urllib.request.urlopen(sys.argv[1])
assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers["Content-Type"]
out = {}
for fam in text_string_to_metric_families(r.read().decode()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", PARSE, url])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "scrape {url} (scripts/test installs prometheus_client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

pub fn metric(m: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} not in the scrape: {:#?}", m.keys()))
}
