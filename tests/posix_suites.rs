//! The POSIX conformance suites on a real mount: pjdfstest (with the
//! expected-failures list in `tests/pjdfstest.toml`) and fsx for 100,000
//! operations. Both tools are installed by `.ci/run` (`cargo install
//! pjdfstest fsx`); a machine without them fails here with that advice.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn tool(name: &str) -> PathBuf {
    if let Some(p) = installed(name) {
        return p;
    }
    panic!("{name} is not installed: run `cargo install {name}` (.ci/run does)");
}

#[test]
fn pjdfstest_passes() {
    pjdfstest(&[]);
}

/// The daemon's own data path (what macOS gets): every byte through the
/// daemon, with the kernel's writeback cache.
#[test]
fn pjdfstest_passes_without_passthrough() {
    pjdfstest(&["--no-passthrough"]);
}

/// A library of `user` mounted with `--allow-other` and `extra`, its mount
/// point reachable by other users (the suites switch to them).
fn mount_for_other_users(user: &str, extra: &[&str]) -> (TestLib, Mounted) {
    let lib = TestLib::empty(user);
    std::fs::set_permissions(lib.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut args = vec!["--allow-other"];
    args.extend_from_slice(extra);
    let m = lib.mount(&args);
    (lib, m)
}

fn pjdfstest(extra: &[&str]) {
    let (_lib, m) = mount_for_other_users("pjd", extra);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest.toml");
    let out = Command::new(tool("pjdfstest"))
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&m.dir)
        .current_dir(&m.dir)
        .output()
        .expect("run pjdfstest");
    let (summary, failed) = pjdfstest_verdict(&String::from_utf8_lossy(&out.stdout));
    eprintln!("pjdfstest {extra:?}: {summary}");
    assert!(
        out.status.success() && failed.is_empty(),
        "pjdfstest: {summary}\nfailed:\n{}\n{}",
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fsx_100k_operations() {
    fsx(&[]);
}

#[test]
fn fsx_100k_operations_without_passthrough() {
    fsx(&["--no-passthrough"]);
}

fn fsx(extra: &[&str]) {
    let lib = TestLib::empty("fsx");
    let m = lib.mount(extra);
    let out = Command::new(tool("fsx"))
        .args(["-N", "100000", "-S", "7", "-P"])
        .arg(lib.tmp.path())
        .arg(m.path("fsx.bin"))
        .output()
        .expect("run fsx");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains("All operations completed A-OK"),
        "fsx {extra:?}:\n{all}"
    );
}

/// Set-ID bits through the mount go as they do on the disk under it: the
/// daemon takes them away itself (`HANDLE_KILLPRIV_V2`) on a write, a
/// truncation or an `O_TRUNC` open by another user, and on any chown; root
/// keeps them through a write or truncation, and an explicit chmod or a
/// utimes leaves them alone. Each case runs in a folder of the disk and in
/// the mount, and the modes must agree.
#[test]
fn set_id_bits_go_as_on_the_disk() {
    set_id_bits(&[]);
}

#[test]
fn set_id_bits_go_as_on_the_disk_without_passthrough() {
    set_id_bits(&["--no-passthrough"]);
}

fn set_id_bits(extra: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    let (lib, m) = mount_for_other_users("setid", extra);
    let disk = lib.tmp.path().join("disk");
    let mounted = m.path("setid");
    // As nobody: append a byte, truncate, open with O_TRUNC.
    let nobody = |script: &str, p: &Path| {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(p)
            .output()
            .expect("setpriv");
        assert_success(&out);
    };
    // A case: its name, the file's mode before, and what is done to it.
    type Case<'a> = (&'a str, u32, &'a dyn Fn(&Path));
    let cases: [Case; 10] = [
        ("write", 0o6777, &|p| nobody("printf x >> \"$1\"", p)),
        ("write, not group-executable", 0o6767, &|p| {
            nobody("printf x >> \"$1\"", p)
        }),
        ("write by root", 0o6777, &|p| {
            std::fs::write(p, b"x").unwrap()
        }),
        ("truncate", 0o6777, &|p| nobody("truncate -s 0 \"$1\"", p)),
        ("truncate by root", 0o6777, &|p| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(0)
                .unwrap()
        }),
        ("O_TRUNC", 0o6777, &|p| nobody(": > \"$1\"", p)),
        ("chown by root", 0o6777, &|p| {
            std::os::unix::fs::chown(p, Some(0), Some(0)).unwrap()
        }),
        ("chown, not group-executable", 0o6767, &|p| {
            std::os::unix::fs::chown(p, Some(0), Some(0)).unwrap()
        }),
        ("utimes", 0o6777, &|p| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(std::time::SystemTime::UNIX_EPOCH)
                .unwrap()
        }),
        ("chmod", 0o6777, &|p| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o6755)).unwrap()
        }),
    ];
    let mut differ = Vec::new();
    for (i, (name, mode, act)) in cases.iter().enumerate() {
        let mut modes = Vec::new();
        for dir in [&disk, &mounted] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let p = dir.join(format!("f{i}"));
            std::fs::write(&p, b"0123").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            act(&p);
            modes.push(std::fs::metadata(&p).unwrap().mode() & 0o7777);
        }
        if modes[0] != modes[1] {
            differ.push(format!(
                "{name}: {mode:o} became {:o} on the disk, {:o} in the mount",
                modes[0], modes[1]
            ));
        }
    }
    assert!(differ.is_empty(), "{extra:?}:\n{}", differ.join("\n"));
}

/// Files written as an image-sequence muxer writes them (open, 64 KiB
/// pieces, close) cost a handful of requests each, not one per piece: with
/// `HANDLE_KILLPRIV_V2` the kernel asks for `security.capability` once per
/// file, not before every write, and with `FOPEN_NOFLUSH` a `close(2)` sends
/// no FLUSH. Counted from the daemon's own request counters, not timed; the
/// sizes are checked through the mount and in the catalog after unmount.
#[test]
fn a_file_written_in_pieces_costs_a_few_requests_not_one_per_piece() {
    let lib = TestLib::empty("pieces");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = lib.mount(&["--metrics", &addr]);
    let url = format!("http://{addr}/metrics");
    let count = |m: &std::collections::BTreeMap<String, f64>, op: &str| {
        m.get(&format!("markbase_requests_total{{op={op},user=pieces}}"))
            .copied()
            .unwrap_or(0.0)
    };
    let before = scrape(&url);
    let piece = vec![7u8; 64 << 10];
    for frame in 0..4 {
        let mut f = std::fs::File::create(m.path(&format!("frame_{frame}.dpx"))).unwrap();
        for _ in 0..32 {
            std::io::Write::write_all(&mut f, &piece).unwrap();
        }
    }
    let after = scrape(&url);
    let asked = count(&after, "xattr") - count(&before, "xattr");
    assert!(
        asked <= 8.0,
        "{asked} extended-attribute requests for 4 files of 32 writes each"
    );
    let flushes = count(&after, "flush") - count(&before, "flush");
    assert_eq!(flushes, 0.0, "FLUSH requests for 4 closes");
    for frame in 0..4 {
        let p = m.path(&format!("frame_{frame}.dpx"));
        assert_eq!(std::fs::metadata(p).unwrap().len(), 32 << 16);
    }
    m.unmount();
    let committed = lib.catalog_rows(
        "SELECT COUNT(*) FROM file_nodes WHERE label LIKE 'frame_%' AND size = 2097152",
    );
    assert_eq!(committed, ["4"], "the sizes committed to the catalog");
}
