//! The built-in tests as a new user runs them: the README's first command
//! (`markbase fuse --test --aja --config 4K_ProRes --chart aja.svg`, with a
//! small file for CI), the format list, and the throughput test. Each makes
//! its own demo library, mounts it, and must leave no mount behind.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::bin;

/// `markbase fuse --test ...` run from `cwd`, as the README runs it (no
/// `--data-dir`, no library: the test makes its own).
fn builtin(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .current_dir(cwd)
        .args(["fuse", "--test"])
        .args(args)
        .output()
        .expect("run markbase");
    assert!(
        out.status.success(),
        "markbase fuse --test {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON document")
}

fn positive(v: &serde_json::Value, path: &str) -> f64 {
    let x = v
        .pointer(path)
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("{path} missing in {v}"));
    assert!(x > 0.0, "{path} = {x}");
    x
}

/// The tests that mount take turns: each checks that no mount is left
/// behind, which a neighbour's mount still up would fail.
static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    MOUNTING.lock().unwrap_or_else(|e| e.into_inner())
}

fn test_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("markbase:") && l.contains("markbase-test-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_aja_command_runs_and_draws_its_chart() {
    let _turn = one_at_a_time();
    let cwd = tempfile::tempdir().unwrap();
    let before = test_mounts();
    let out = builtin(
        cwd.path(),
        &[
            "--aja",
            "--config",
            "4K_ProRes",
            "--file-size",
            "64MB",
            "--chart",
            "aja.svg",
            "--json",
        ],
    );
    let v = json(&out);
    // The frame size of ProRes 4444 at 4096x2160, as the code cites it.
    assert_eq!(
        v.pointer("/config/width").and_then(|x| x.as_u64()),
        Some(4096)
    );
    assert_eq!(
        v.pointer("/config/height").and_then(|x| x.as_u64()),
        Some(2160)
    );
    assert!(positive(&v, "/config/frame_bytes") > 1_000_000.0);
    for target in ["mount", "disk"] {
        assert!(positive(&v, &format!("/{target}/frames")) >= 10.0);
        for dir in ["write", "read"] {
            for field in [
                "mb_s",
                "fps",
                "latency_ms_p50",
                "latency_ms_p99",
                "latency_ms_max",
            ] {
                positive(&v, &format!("/{target}/{dir}/{field}"));
            }
            assert!(v
                .pointer(&format!("/{target}/{dir}/sustained_fps"))
                .is_some_and(|x| x.is_array()));
        }
    }
    positive(&v, "/write_ratio");
    positive(&v, "/read_ratio");
    // The chart is an SVG image, where the README's command says.
    let svg = std::fs::read_to_string(cwd.path().join("aja.svg")).expect("aja.svg written");
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("width=\"1000\"") && svg.contains("<polyline"));
    // Mounted and unmounted for the user.
    assert_eq!(test_mounts(), before, "the test left its mount behind");
}

#[test]
fn the_aja_formats_are_listed() {
    let cwd = tempfile::tempdir().unwrap();
    let out = builtin(cwd.path(), &["--aja", "--config", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "4K_ProRes422HQ",
        "4K_ProRes4444",
        "4K_ProRes4444XQ",
        "4K_RGB10",
        "UHD_ProRes422HQ",
        "UHD_ProRes4444",
        "UHD_ProRes4444XQ",
        "UHD_RGB10",
        "1080p_ProRes422HQ",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn the_throughput_test_compares_mount_and_disk() {
    let _turn = one_at_a_time();
    let cwd = tempfile::tempdir().unwrap();
    let before = test_mounts();
    let v = json(&builtin(cwd.path(), &["--size", "32MB", "--json"]));
    for target in ["mount", "disk"] {
        positive(&v, &format!("/{target}/write_mb_s"));
        positive(&v, &format!("/{target}/read_mb_s"));
    }
    positive(&v, "/write_ratio");
    positive(&v, "/read_ratio");
    assert_eq!(
        v.pointer("/size").and_then(|x| x.as_u64()),
        Some(32_000_000)
    );
    assert_eq!(test_mounts(), before, "the test left its mount behind");
}

/// The soak through the built-in NFS server: two users, each served by its
/// own `markbase nfs --serve`, each worker a client of its own; no error,
/// bytes verified, the servers' memory sampled, nothing left running.
#[test]
fn the_stability_test_runs_through_the_nfs_server() {
    let cwd = tempfile::tempdir().unwrap();
    let v = json(&builtin(
        cwd.path(),
        &[
            "--stability",
            "--backend",
            "nfs",
            "--mounts",
            "2",
            "--duration",
            "6s",
            "--json",
        ],
    ));
    assert_eq!(v["through"], "NFS servers", "{v}");
    assert_eq!(v["mounts"], 2, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    positive(&v, "/bytes_verified");
    positive(&v, "/bytes_written");
    assert!(
        v["rss_mib"]
            .as_array()
            .is_some_and(|r| r.iter().all(|m| m.as_f64().is_some_and(|m| m > 1.0))),
        "the servers' memory: {v}"
    );
}

#[test]
fn ten_users_aja_at_once_against_ten_writers_on_the_disk() {
    let _turn = one_at_a_time();
    let cwd = tempfile::tempdir().unwrap();
    let before = test_mounts();
    let out = builtin(
        cwd.path(),
        &[
            "--aja",
            "--config",
            "1080p_ProRes",
            "--mounts",
            "10",
            "--file-size",
            "24MB",
            "--json",
            "--chart",
            "many.svg",
        ],
    );
    let v = json(&out);
    let users = v["users"].as_array().expect("users");
    assert_eq!(users.len(), 10, "{v}");
    for u in users {
        assert!(u["write"]["fps"].as_f64().unwrap_or(0.0) > 0.0, "{u}");
        assert!(
            u["read"]["latency_ms_p99"].as_f64().unwrap_or(0.0) > 0.0,
            "{u}"
        );
    }
    for side in ["mount", "disk"] {
        positive(&v, &format!("/all/{side}/write_mb_s"));
        positive(&v, &format!("/all/{side}/read_mb_s"));
    }
    positive(&v, "/write_ratio");
    let svg = std::fs::read_to_string(cwd.path().join("many.svg")).expect("the chart");
    assert!(svg.contains("<svg") && svg.contains("mounts write"));
    assert_eq!(test_mounts(), before, "the test left its mounts behind");
}

/// Start `markbase fuse --test ARGS` with its own temporary folder, wait
/// until it has mounted, send `sig`; its output and what it left behind.
fn interrupted(args: &[&str], sig: nix::sys::signal::Signal) -> (Output, Vec<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let own = tmp.path().join("tmp");
    std::fs::create_dir_all(&own).expect("mkdir");
    let child = Command::new(bin())
        .current_dir(tmp.path())
        .env("TMPDIR", &own)
        .args(["fuse", "--test"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run markbase");
    let mine = || -> Vec<String> {
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(own.to_string_lossy().as_ref()))
            .map(str::to_string)
            .collect()
    };
    let t = std::time::Instant::now();
    while mine().is_empty() && t.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!mine().is_empty(), "the test never mounted");
    // Let it measure a little.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("signal");
    let out = child.wait_with_output().expect("wait");
    let mut left: Vec<String> = mine();
    left.extend(
        std::fs::read_dir(&own)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string()),
    );
    (out, left)
}

#[test]
fn ctrl_c_and_sigterm_stop_a_builtin_test_cleanly() {
    let _turn = one_at_a_time();
    use nix::sys::signal::Signal;
    // Ctrl-C on a 10-minute stability run with two mounts.
    let (out, left) = interrupted(
        &[
            "--stability",
            "--mounts",
            "2",
            "--duration",
            "10m",
            "--json",
        ],
        Signal::SIGINT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(left.is_empty(), "left behind: {left:?}\n{err}");
    let v = json(&out);
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["mounts"], 2, "{v}");
    assert!(
        !v["mb_per_s"].as_array().expect("mb_per_s").is_empty(),
        "{v}"
    );
    assert!(err.contains("interrupted"), "{err}");

    // SIGTERM on the AJA test: what it measured is printed, exit 143.
    let (out, left) = interrupted(
        &[
            "--aja",
            "--config",
            "4K_ProRes",
            "--file-size",
            "16GB",
            "--json",
        ],
        Signal::SIGTERM,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(left.is_empty(), "left behind: {left:?}\n{err}");
    let v = json(&out);
    assert!(v["mount"]["frames"].as_u64().is_some(), "{v}");

    // No mounts is no test.
    let out = Command::new(bin())
        .args(["fuse", "--test", "--stability", "--mounts", "0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
