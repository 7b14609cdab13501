//! The POSIX conformance suites on a real mount: pjdfstest (with the
//! expected-failures list in `tests/pjdfstest.toml`) and fsx for 100,000
//! operations. Both tools are installed by `.ci/run` (`cargo install
//! pjdfstest fsx`); a machine without them fails here with that advice.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
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

fn pjdfstest(extra: &[&str]) {
    let lib = TestLib::empty("pjd");
    // pjdfstest switches to other users, who must reach the mount point.
    std::fs::set_permissions(lib.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut args = vec!["--allow-other"];
    args.extend_from_slice(extra);
    let m = lib.mount(&args);
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
