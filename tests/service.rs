//! Running the drives as a service, as an admin meets it: the systemd unit
//! `markbase service install` writes passes `systemd-analyze verify`; the
//! supervisor speaks systemd's notify protocol to a socket this test
//! listens on (READY=1 only once every mount answers, STATUS=, WATCHDOG=1,
//! RELOADING=1 around a SIGHUP, STOPPING=1); and `--metrics` serves
//! OpenMetrics text that Prometheus's own Python parser reads, with
//! counters that move with the traffic this test makes.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A supervisor process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Supervisor(Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The next notify message (the variables of one datagram).
fn next_message(sock: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Messages until one has `var` (those before it are returned too).
fn until(sock: &UnixDatagram, var: &str) -> Vec<Vec<String>> {
    let mut seen = Vec::new();
    loop {
        let m = next_message(sock);
        let done = m.iter().any(|l| l == var);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[test]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let lib = TestLib::empty("ed");
    let units = lib.tmp.path().join("units");
    let base = lib.tmp.path().join("drives");
    let b = base.to_string_lossy().into_owned();
    let u = units.to_string_lossy().into_owned();
    let out = lib.markbase(&[
        "service",
        "install",
        "--all",
        "--dir",
        &b,
        "--metrics",
        "127.0.0.1:9567",
        "--unit-dir",
        &u,
    ]);
    assert_success(&out);
    let unit = units.join("markbase.service");
    let text = std::fs::read_to_string(&unit).expect("the unit");
    assert!(text.contains("Type=notify"), "{text}");
    assert!(text.contains("--mount --all --foreground --dir"), "{text}");
    // The man pages it names come with the package (checked there).
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/test installs it)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}\n{text}"
    );
    let out = lib.markbase(&["service", "status", "--unit-dir", &u]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed:"));
    assert_success(&lib.markbase(&["service", "uninstall", "--unit-dir", &u]));
    assert!(!unit.exists());
    let again = lib.markbase(&["service", "uninstall", "--unit-dir", &u]);
    assert!(!again.status.success(), "a second uninstall says so");
}

#[test]
fn the_supervisor_speaks_the_notify_protocol_and_serves_metrics() {
    let lib = TestLib::fixture("alpha", Some(100), false);
    make_library(&lib.data, "beta", Some(100), false);
    let base = MountBase {
        dir: lib.tmp.path().join("drives"),
    };
    let mp = |u: &str| base.dir.join(format!("MarkBase_{u}"));
    let sock_path = lib.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let port = free_port();
    let child = Command::new(bin())
        .arg("--data-dir")
        .arg(&lib.data)
        .args(["fuse", "--mount", "--all", "--foreground", "--dir"])
        .arg(&base.dir)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("supervisor");
    let sup = Supervisor(child);
    let pid = nix::unistd::Pid::from_raw(sup.0.id() as i32);

    // READY=1 comes once both mounts answer, with the count.
    let first = next_message(&sock);
    assert!(first.contains(&"READY=1".to_string()), "{first:?}");
    assert!(
        first.contains(&"STATUS=2 of 2 mounts answering".to_string()),
        "{first:?}"
    );
    assert!(is_mounted(&mp("alpha")) && is_mounted(&mp("beta")));
    // The watchdog is pinged every half period.
    let t = Instant::now();
    until(&sock, "WATCHDOG=1");
    until(&sock, "WATCHDOG=1");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Traffic, then a scrape that Prometheus's parser reads.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let before = scrape(&url);
    assert_eq!(metric(&before, "markbase_up{user=alpha}"), 1.0);
    for i in 0..20 {
        std::fs::write(mp("alpha").join(format!("Inbox/m{i}.txt")), b"hello").expect("write");
    }
    assert!(std::fs::metadata(mp("alpha").join("no such file")).is_err());
    let after = scrape(&url);
    let creates = metric(&after, "markbase_requests_total{op=create,user=alpha}")
        - before
            .get("markbase_requests_total{op=create,user=alpha}")
            .copied()
            .unwrap_or(0.0);
    assert!(creates >= 20.0, "creates counted: {creates}");
    assert!(
        metric(
            &after,
            "markbase_request_errors_total{errno=ENOENT,user=alpha}"
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &after,
            "markbase_request_duration_seconds_count{op=create,user=alpha}"
        ),
        metric(&after, "markbase_requests_total{op=create,user=alpha}")
    );
    assert!(
        metric(
            &after,
            "markbase_requests_without_catalog_total{user=alpha}"
        ) > 0.0
    );
    assert!(metric(&after, "markbase_cache_hits_total{cache=attr,user=alpha}") >= 0.0);
    assert_eq!(metric(&after, "markbase_up{user=beta}"), 1.0);

    // SIGHUP: RELOADING=1, the new user mounted, READY=1 with 3 of 3.
    make_library(&lib.data, "gamma", Some(50), false);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).expect("hup");
    until(&sock, "RELOADING=1");
    let ready = until(&sock, "READY=1").pop().unwrap_or_default();
    assert!(
        ready.contains(&"STATUS=3 of 3 mounts answering".to_string()),
        "{ready:?}"
    );
    assert!(is_mounted(&mp("gamma")));

    // SIGTERM: STOPPING=1, then everything unmounted and a clean exit.
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("term");
    until(&sock, "STOPPING=1");
    let mut sup = sup;
    let status = sup.0.wait().expect("wait");
    assert!(status.success(), "{status}");
    for u in ["alpha", "beta", "gamma"] {
        assert!(!is_mounted(&mp(u)), "{u} still mounted");
    }
}

#[test]
fn a_single_mount_serves_its_own_metrics() {
    let lib = TestLib::fixture("solo", Some(200), false);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = lib.mount(&["--no-passthrough", "--metrics", &addr]);
    // The largest file of the fixture, read whole through the daemon.
    let mut biggest = (0u64, std::path::PathBuf::new());
    let mut stack = vec![m.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir").flatten() {
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && md.len() > biggest.0 {
                biggest = (md.len(), e.path());
            }
        }
    }
    assert!(biggest.0 > 0, "the fixture has content");
    let data = std::fs::read(&biggest.1).expect("read");
    std::fs::write(m.path("written.bin"), vec![7u8; 300_000]).expect("write");
    let url = format!("http://{addr}/metrics");
    let s = scrape(&url);
    assert!(metric(&s, "markbase_read_bytes_total{user=solo}") >= data.len() as f64);
    assert!(metric(&s, "markbase_written_bytes_total{user=solo}") >= 300_000.0);
    assert!(metric(&s, "markbase_opens_total{user=solo}") >= 2.0);
    assert_eq!(metric(&s, "markbase_open_files{user=solo}"), 0.0);
    assert!(metric(&s, "markbase_catalog_commits_total{user=solo}") >= 0.0);
    // The live view: two refreshes, each with this mount's row.
    let out = lib.markbase(&[
        "fuse",
        "--status",
        "--watch",
        "--count",
        "2",
        "--interval",
        "0.2",
    ]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = m.dir.to_string_lossy();
    assert_eq!(text.matches(dir.as_ref()).count(), 2, "{text}");
    assert!(text.contains("MB/s in"), "{text}");
    assert!(Path::new(&m.dir).exists(), "the mount outlives its scrapes");
    m.unmount();
}

#[test]
fn daemon_logs_rotate_daily_and_old_ones_are_removed() {
    let lib = TestLib::empty("logs");
    let dir = lib.data.join("logs/logs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for d in 1..=5 {
        std::fs::write(dir.join(format!("markbase.2020-01-0{d}.log")), "old\n").expect("seed");
    }
    let mnt = lib.tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let m = lib
        .try_mount_env(&mnt, &[], &[("MARKBASE_LOG_KEEP", "2")])
        .expect("mount");
    m.unmount();
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .expect("the user's log folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("markbase."))
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 2, "kept: {logs:?}");
    let today = logs.last().cloned().unwrap_or_default();
    assert!(!today.starts_with("markbase.2020"), "{logs:?}");
    let text = std::fs::read_to_string(dir.join(&today)).expect("today's log");
    assert!(text.contains("mounted at"), "{text}");
}
