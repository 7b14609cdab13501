//! The mount manager as a new user meets it: ten libraries mounted with one
//! command, seen in `--status`, written to all at once; one daemon killed with
//! SIGKILL while the other nine keep working; the dead mount reported and
//! cleaned; everything unmounted with one command and nothing left behind.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn markbase(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run markbase")
}

fn status(data: &Path) -> Vec<serde_json::Value> {
    let out = markbase(data, &["fuse", "--status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[test]
fn ten_users_mounted_written_killed_and_cleaned() {
    let lib = TestLib::fixture("user01", Some(200), false);
    let data = lib.data.clone();
    let users: Vec<String> = (1..=10).map(|i| format!("user{i:02}")).collect();
    for u in &users[1..] {
        make_library(&data, u, Some(200), false);
    }
    let base = MountBase {
        dir: lib.tmp.path().join("mnt"),
    };
    let b = base.dir.to_str().unwrap();

    let out = markbase(&data, &["fuse", "--mount", "--all", "--dir", b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = status(&data);
    let mine: Vec<&serde_json::Value> = st
        .iter()
        .filter(|s| s["mountpoint"].as_str().unwrap().starts_with(b))
        .collect();
    assert_eq!(mine.len(), 10);
    for s in &mine {
        assert_eq!(s["state"], "mounted");
        for k in [
            "user",
            "pid",
            "backend",
            "uptime_s",
            "bytes_read",
            "bytes_written",
            "cache_hit_rate",
        ] {
            assert!(!s[k].is_null(), "{k} missing in {s}");
        }
    }

    // Everyone writes at once.
    let mp = |u: &str| base.dir.join(format!("MarkBase_{u}"));
    let writers: Vec<_> = users
        .iter()
        .map(|u| {
            let p = mp(u).join("Inbox/big.bin");
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
                fs::write(&p, &data).unwrap();
                assert_eq!(fs::read(&p).unwrap(), data);
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }

    // SIGKILL one daemon: the other nine keep working, the dead one is reported.
    let victim = mine.iter().find(|s| s["user"] == "user05").unwrap();
    let pid = victim["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for u in users.iter().filter(|u| *u != "user05") {
        let p = mp(u).join("Inbox/after.txt");
        fs::write(&p, u.as_bytes()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), u.as_bytes());
    }
    let st = status(&data);
    let dead: Vec<&serde_json::Value> = st.iter().filter(|s| s["user"] == "user05").collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["state"], "dead");
    assert_eq!(errno_of(fs::read_dir(mp("user05"))), Some(libc::ENOTCONN));

    // Mounting over the dead mount point cleans it up first.
    let out = markbase(&data, &["fuse", "--mount", "--users", "user05", "--dir", b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        mp("user05").join("Inbox/big.bin").exists(),
        "what was written before the kill is there"
    );

    // Kill it again and clean with --unmount --user.
    let st = status(&data);
    let pid = st.iter().find(|s| s["user"] == "user05").unwrap()["pid"]
        .as_u64()
        .unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = markbase(&data, &["fuse", "--unmount", "--user", "user05"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(&mp("user05")));

    let out = markbase(&data, &["fuse", "--unmount", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for u in &users {
        assert!(!is_mounted(&mp(u)), "{u} still mounted");
    }
    assert!(status(&data)
        .iter()
        .all(|s| !s["mountpoint"].as_str().unwrap().starts_with(b)));
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn supervisor_follows_sighup_and_unmounts_on_sigterm() {
    let lib = TestLib::fixture("alpha", Some(100), false);
    let data = lib.data.clone();
    let add = |u: &str| make_library(&data, u, Some(100), false);
    add("beta");
    let base = MountBase {
        dir: lib.tmp.path().join("sup"),
    };
    let mp = |u: &str| base.dir.join(format!("MarkBase_{u}"));
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["fuse", "--mount", "--all", "--foreground", "--dir"])
        .arg(&base.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    wait_for("two mounts", || {
        is_mounted(&mp("alpha")) && is_mounted(&mp("beta"))
    });

    add("gamma");
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).unwrap();
    wait_for("gamma mounted after SIGHUP", || is_mounted(&mp("gamma")));

    // A daemon that dies is started again, on its cleaned mount point.
    let old = daemon_pid(&mp("gamma"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_for("gamma's daemon started again", || {
        markbase::daemon::read_record(&mp("gamma"))
            .is_some_and(|r| r.pid != old && markbase::daemon::pid_alive(r.pid))
            && fs::read_dir(mp("gamma")).is_ok_and(|mut d| d.next().is_some())
    });

    fs::rename(
        data.join("users/alpha.sqlite"),
        data.join("alpha.sqlite.off"),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).unwrap();
    wait_for("alpha unmounted after SIGHUP", || !is_mounted(&mp("alpha")));
    assert!(is_mounted(&mp("beta")));

    // An open, unflushed file is committed before the unmount.
    let mut f = fs::File::create(mp("beta").join("Inbox/open.bin")).unwrap();
    std::io::Write::write_all(&mut f, &[1u8; 4096]).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "supervisor exited with {status}");
    drop(f);
    for u in ["alpha", "beta", "gamma"] {
        assert!(!is_mounted(&mp(u)), "{u} still mounted");
    }
    let size: i64 = rusqlite::Connection::open(data.join("users/beta.sqlite"))
        .unwrap()
        .query_row(
            "SELECT size FROM file_nodes WHERE label='open.bin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(size, 4096);
}

#[test]
fn per_user_settings_from_markbase_toml() {
    use std::os::unix::fs::MetadataExt;
    let lib = TestLib::fixture("ro", Some(50), false);
    let extra = lib.tmp.path().join("archive");
    fs::create_dir_all(&extra).unwrap();
    fs::write(extra.join("old.mov"), b"archived bytes").unwrap();
    let extra = extra.canonicalize().unwrap();
    let c = rusqlite::Connection::open(lib.catalog()).unwrap();
    c.execute_batch(&format!(
        "INSERT INTO file_nodes VALUES('aaaaaaaa-0000-4000-8000-000000000001', NULL, 'old.mov', 'file', 14, NULL, NULL);
         INSERT INTO file_locations VALUES('aaaaaaaa-0000-4000-8000-000000000001', '{}', 'Archive', NULL);",
        extra.join("old.mov").display()
    ))
    .unwrap();
    drop(c);
    fs::write(
        lib.data.join("markbase.toml"),
        format!(
            "[users.ro]\nread_only = true\nuid = 4242\nmedia_roots = [\"{}\"]\n",
            extra.display()
        ),
    )
    .unwrap();
    let m = lib.mount(&[]);
    assert_eq!(
        fs::read(m.path("old.mov")).unwrap(),
        b"archived bytes",
        "a configured media root is allowed"
    );
    assert_eq!(fs::metadata(m.path("Projects")).unwrap().uid(), 4242);
    assert_eq!(
        errno_of(fs::write(m.path("new.txt"), b"x")),
        Some(libc::EROFS)
    );
    drop(m);
    // A bad settings file is one clear line and no mount.
    fs::write(
        lib.data.join("markbase.toml"),
        "[users.ro]\nquota_typo = 1\n",
    )
    .unwrap();
    let empty = lib.tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = lib.markbase(&[
        "fuse",
        "--mount",
        "--user",
        "ro",
        "--dir",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("markbase.toml"));
}

#[test]
fn quota_and_backend_from_markbase_toml() {
    use std::io::Write;
    let lib = TestLib::empty("q");
    fs::write(
        lib.data.join("markbase.toml"),
        "[users.q]\nquota = \"8MB\"\nbackend = \"auto\"\n",
    )
    .unwrap();
    let m = lib.mount(&[]);
    // df shows the quota as the size of the drive.
    let st = nix::sys::statvfs::statvfs(&m.dir).unwrap();
    let total = st.blocks() as u64 * st.fragment_size() as u64;
    assert!(
        (7_000_000..=8_000_000).contains(&total),
        "df size {total} should be the 8 MB quota"
    );
    let mib = vec![7u8; 1 << 20];
    let mut a = fs::File::create(m.path("a.mov")).unwrap();
    for _ in 0..6 {
        a.write_all(&mib).unwrap();
    }
    a.sync_all().unwrap();
    drop(a);
    // The next file fills the quota and stops with EDQUOT; what fit stays.
    let mut b = fs::File::create(m.path("b.mov")).unwrap();
    let mut err = None;
    for _ in 0..4 {
        if let Err(e) = b.write_all(&mib) {
            err = e.raw_os_error();
            break;
        }
    }
    let err = err.or_else(|| b.sync_all().err().and_then(|e| e.raw_os_error()));
    assert_eq!(err, Some(libc::EDQUOT), "writing past the quota");
    drop(b);
    assert_eq!(fs::read(m.path("a.mov")).unwrap().len(), 6 << 20);
    let b_len = fs::metadata(m.path("b.mov")).unwrap().len();
    assert!(b_len <= 2_000_000, "b.mov holds {b_len} bytes");
    // Deleting gives the bytes back.
    fs::remove_file(m.path("a.mov")).unwrap();
    fs::write(m.path("c.mov"), vec![1u8; 4 << 20]).unwrap();
    drop(m);

    // The backend is reported; one this machine cannot serve is refused in one line.
    let m = lib.mount(&["--backend", "kernel"]);
    let mine: Vec<_> = status(&lib.data)
        .into_iter()
        .filter(|s| s["mountpoint"].as_str() == m.dir.to_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["backend"], "kernel");
    drop(m);
    fs::write(
        lib.data.join("markbase.toml"),
        "[users.q]\nbackend = \"smb\"\n",
    )
    .unwrap();
    let empty = lib.tmp.path().join("smb");
    fs::create_dir(&empty).unwrap();
    let out = lib.markbase(&[
        "fuse",
        "--mount",
        "--user",
        "q",
        "--dir",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("smb") && msg.contains("macOS"), "{msg}");
    assert!(!is_mounted(&empty));
}
