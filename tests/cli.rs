//! The command line as a new user meets it: each refusal is one clear line on
//! stderr, a non-zero exit, and changes nothing.

mod common;

use std::fs;

use common::*;

fn refused(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a refusal, got success: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err:?}");
}

fn mount_args<'a>(user: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec!["fuse", "--mount", "--user", user, "--dir", dir]
}

#[test]
fn mount_refusals_change_nothing() {
    let lib = TestLib::empty("alice");
    let before = fs::read(lib.catalog()).unwrap();
    let t = lib.tmp.path();

    let missing = t.join("nope");
    refused(
        &lib.markbase(&mount_args("alice", missing.to_str().unwrap())),
        "does not exist",
    );

    let file = t.join("file");
    fs::write(&file, b"x").unwrap();
    refused(
        &lib.markbase(&mount_args("alice", file.to_str().unwrap())),
        "not a directory",
    );

    let full = t.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    refused(
        &lib.markbase(&mount_args("alice", full.to_str().unwrap())),
        "not empty",
    );

    let mp = t.join("mp");
    fs::create_dir(&mp).unwrap();
    refused(
        &lib.markbase(&mount_args("bob", mp.to_str().unwrap())),
        "no catalog",
    );
    refused(
        &lib.markbase(&mount_args("../evil", mp.to_str().unwrap())),
        "not allowed",
    );

    let mut nfs = mount_args("alice", mp.to_str().unwrap());
    nfs.extend(["--backend", "nfs", "--allow-other"]);
    refused(&lib.markbase(&nfs), "--allow-other: an NFS mount");
    refused(
        &lib.markbase(&[
            "service",
            "install",
            "--all",
            "--dir",
            mp.to_str().unwrap(),
            "--backend",
            "nfs",
            "--allow-other",
            "--print",
        ]),
        "--allow-other: an NFS mount",
    );

    let m = lib.mount_at(&mp, &[]);
    refused(
        &lib.markbase(&mount_args("alice", mp.to_str().unwrap())),
        "already a MarkBase mount",
    );
    m.unmount();
    assert!(fs::read(lib.catalog()).unwrap().len() >= before.len());
}

#[test]
fn test_flags_a_mode_cannot_honour_are_refused() {
    let lib = TestLib::empty("tester");
    for (args, needle) in [
        (&["--aja", "--backend", "nfs"][..], "--aja --backend nfs"),
        (&["--peer-rclone", "/bin/true"], "--peer-rclone"),
        (
            &["--backend", "nfs", "--no-passthrough"],
            "--no-passthrough",
        ),
        (&["--backend", "nfs", "--mounts", "2"], "--mounts"),
        (&["--backend", "nfs", "--client", "kernel"], "--client"),
        (&["--on", "/tmp"], "--on: only the --stability"),
        (
            &["--stability", "--on", "/tmp"],
            "--user, --users and --mounts",
        ),
    ] {
        let mut all = vec!["fuse", "--test", "--user", "tester"];
        all.extend_from_slice(args);
        refused(&lib.markbase(&all), needle);
    }
}

#[test]
fn bad_catalogs_are_refused_untouched() {
    let lib = TestLib::empty("carol");
    let mp = lib.tmp.path().join("mp");
    fs::create_dir(&mp).unwrap();
    let cat = lib.catalog();

    // Not SQLite at all.
    fs::write(
        &cat,
        b"this is not a database, just text that is long enough",
    )
    .unwrap();
    let before = fs::read(&cat).unwrap();
    refused(
        &lib.markbase(&mount_args("carol", mp.to_str().unwrap())),
        "not an SQLite database",
    );
    assert_eq!(fs::read(&cat).unwrap(), before);

    // SQLite, but not a MarkBase catalog.
    fs::remove_file(&cat).unwrap();
    rusqlite::Connection::open(&cat)
        .unwrap()
        .execute_batch("CREATE TABLE other(x);")
        .unwrap();
    let before = fs::read(&cat).unwrap();
    refused(
        &lib.markbase(&mount_args("carol", mp.to_str().unwrap())),
        "no table file_nodes",
    );
    assert_eq!(fs::read(&cat).unwrap(), before);

    // Truncated (corrupt) catalog.
    let good = TestLib::fixture("carol", Some(500), false);
    let bytes = fs::read(good.catalog()).unwrap();
    fs::write(&cat, &bytes[..bytes.len() / 3]).unwrap();
    let out = lib.markbase(&mount_args("carol", mp.to_str().unwrap()));
    assert!(!out.status.success());
    assert!(!is_mounted(&mp));

    // Locked by another process.
    fs::write(&cat, &bytes).unwrap();
    let holder = rusqlite::Connection::open(&cat).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    refused(
        &lib.markbase(&mount_args("carol", mp.to_str().unwrap())),
        "locked",
    );
    holder.execute_batch("ROLLBACK;").unwrap();
    drop(holder);

    // A read-only catalog file: refused (even for root), untouched.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&cat, fs::Permissions::from_mode(0o444)).unwrap();
    let before = fs::read(&cat).unwrap();
    refused(
        &lib.markbase(&mount_args("carol", mp.to_str().unwrap())),
        "read-only",
    );
    assert_eq!(fs::read(&cat).unwrap(), before);
    fs::set_permissions(&cat, fs::Permissions::from_mode(0o644)).unwrap();

    // From a future version of the side tables.
    let c = rusqlite::Connection::open(&cat).unwrap();
    c.execute_batch(
        "CREATE TABLE mb_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO mb_meta VALUES('schema_version', '99');",
    )
    .unwrap();
    drop(c);
    let before = fs::read(&cat).unwrap();
    refused(
        &lib.markbase(&mount_args("carol", mp.to_str().unwrap())),
        "newer markbase",
    );
    assert_eq!(fs::read(&cat).unwrap(), before);
    assert!(!is_mounted(&mp));
}

#[test]
fn stats_and_unmount_of_what_is_not_mounted() {
    let lib = TestLib::empty("dave");
    let m = lib.mount(&[]);
    fs::write(m.path("a"), b"hello").unwrap();
    let _ = fs::read(m.path("a")).unwrap();
    let out = lib.markbase(&[
        "fuse",
        "--stats",
        "--json",
        "--dir",
        m.dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["attr_hits"].as_u64().unwrap() + v["attr_misses"].as_u64().unwrap() > 0);
    assert!(v["cache_hit_rate"].as_f64().is_some());
    let dir = m.dir.clone();
    m.unmount();
    refused(
        &lib.markbase(&["fuse", "--unmount", "--dir", dir.to_str().unwrap()]),
        "not a MarkBase mount",
    );
}

#[test]
fn demo_library_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = std::process::Command::new(bin())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "library",
            "create",
            "--user",
            "demo",
            "--demo",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lib = TestLib {
        tmp,
        data,
        user: "demo".into(),
    };
    let m = lib.mount(&[]);
    let footage = m.path("Projects/2025 Demo/Demo Spot 01/Footage");
    let n = fs::read_dir(&footage).unwrap().count();
    assert_eq!(n, 6);
    let f = fs::read_dir(&footage)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(fs::metadata(&f).unwrap().len(), 1 << 20);
}

#[test]
fn completions_and_man_pages_come_from_the_parser() {
    let lib = TestLib::empty("docs");
    for shell in ["bash", "zsh", "fish"] {
        let out = lib.markbase(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in ["--mount", "--unmount", "--data-dir", "serve"] {
            assert!(text.contains(flag), "{shell} completions lack {flag}");
        }
    }
    let dir = lib.tmp.path().join("man");
    let out = lib.markbase(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "markbase.1",
        "markbase-fuse.1",
        "markbase-nfs.1",
        "markbase-fsck.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text:.200}"
        );
    }
    let fuse = fs::read_to_string(dir.join("markbase-fuse.1")).unwrap();
    assert!(
        fuse.contains("whose library"),
        "--user's help is in the page"
    );
    // `man -l` renders it, where man is installed.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let shown = std::process::Command::new("man")
            .arg("-l")
            .arg(dir.join("markbase-fuse.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(shown.status.success(), "{shown:?}");
        assert!(String::from_utf8_lossy(&shown.stdout).contains("--mount"));
    }
}
