//! A studio server: two users' FUSE mounts shared by a real Samba (`smbd`,
//! with the configuration `markbase share` writes) on a loopback port, and
//! driven with `smbclient` over SMB3: the tree, 1 GiB in and out byte for
//! byte, rename, delete, mkdir, one user's share closed to the other user's
//! account; the Finder info, tags and resource fork as streams over SMB and
//! as `com.apple.*` attributes through the mount, and a Mac's `:` in names.
//!
//! Needs Samba (`apt-get install samba smbclient`; `.ci/run` installs it)
//! and root (mounts with --allow-other, Samba's accounts).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::smb::*;
use common::*;

/// Write `len` bytes of a seeded stream to `path`, in pieces.
fn write_stream(path: &Path, seed: u64, len: usize) {
    let mut f = std::fs::File::create(path).expect("create");
    let piece = 64 << 20;
    let mut left = len;
    let mut n = 0;
    while left > 0 {
        let k = left.min(piece);
        f.write_all(&stream(seed + n, k)).expect("write");
        left -= k;
        n += 1;
    }
}

/// Are two files the same bytes? (Read side by side, in pieces.)
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).expect("open a"),
        std::fs::File::open(b).expect("open b"),
    );
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]).expect("read") {
            0 => break,
            n => got += n,
        }
    }
    got
}

#[test]
fn a_studio_share_lists_copies_renames_and_keeps_users_apart() {
    let s = studio(&[("alice", "root"), ("bob", "nobody")]);
    let alice = s.drive("alice");

    // The tree lists: every top-level name of the mount, over SMB.
    let listing = s.smbd.ok("MarkBase_alice", "root", "ls");
    let names: Vec<String> = std::fs::read_dir(&alice)
        .expect("read the mount")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty());
    for n in &names {
        assert!(listing.contains(n.as_str()), "{n} not in {listing}");
    }

    // 1 GiB in, byte for byte in the mount, and out again.
    let local = s.lib.tmp.path().join("big.in");
    write_stream(&local, 7, 1 << 30);
    s.smbd.ok(
        "MarkBase_alice",
        "root",
        &format!("put {} big.mov", local.display()),
    );
    assert!(
        same_bytes(&local, &alice.join("big.mov")),
        "1 GiB in differs"
    );
    let back = s.lib.tmp.path().join("big.out");
    s.smbd.ok(
        "MarkBase_alice",
        "root",
        &format!("get big.mov {}", back.display()),
    );
    assert!(same_bytes(&local, &back), "1 GiB out differs");
    std::fs::remove_file(&local).expect("rm");
    std::fs::remove_file(&back).expect("rm");

    // mkdir, rename into it, delete, rmdir: each seen through the mount.
    s.smbd.ok(
        "MarkBase_alice",
        "root",
        "mkdir Cuts; rename big.mov Cuts\\take1.mov",
    );
    assert!(alice.join("Cuts").is_dir());
    assert!(!alice.join("big.mov").exists());
    assert_eq!(
        std::fs::metadata(alice.join("Cuts/take1.mov"))
            .expect("renamed file")
            .len(),
        1 << 30
    );
    s.smbd
        .ok("MarkBase_alice", "root", "del Cuts\\take1.mov; rmdir Cuts");
    assert!(!alice.join("Cuts").exists());

    // One user's share is closed to the other's account, both ways.
    let out = s.smbd.client("MarkBase_alice", "nobody", "ls");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("NT_STATUS_ACCESS_DENIED"),
        "nobody reached alice's share: {text}"
    );
    let out = s.smbd.client("MarkBase_bob", "root", "ls");
    assert!(!out.status.success(), "root reached bob's share");
    s.smbd.ok("MarkBase_bob", "nobody", "ls");
}

#[test]
fn finder_info_tags_forks_and_mac_names_are_the_same_over_smb_and_through_the_mount() {
    let s = studio(&[("alice", "root"), ("bob", "nobody")]);
    let alice = s.drive("alice");
    std::fs::write(alice.join("clip.mov"), b"frames").expect("write");
    // An AfpInfo as a Mac sends it: "AFP\0", version 0x100, backup time
    // "never", then the Finder info (type 'MooV', creator 'TVOD', a colour
    // label in its flags).
    let mut afp = vec![0u8; 60];
    afp[..4].copy_from_slice(b"AFP\0");
    afp[4..8].copy_from_slice(&0x0000_0100u32.to_be_bytes());
    afp[12..16].copy_from_slice(&0x8000_0000u32.to_be_bytes());
    afp[16..20].copy_from_slice(b"MooV");
    afp[20..24].copy_from_slice(b"TVOD");
    afp[24] = 0x0c;
    s.put_alice(&afp, "clip.mov:AFP_AfpInfo");
    assert_eq!(s.get_alice("clip.mov:AFP_AfpInfo"), afp);
    // Through the FUSE mount: the file's Finder info, as macOS names it.
    let clip = alice.join("clip.mov");
    assert_eq!(xattr(&clip, "user.com.apple.FinderInfo"), afp[16..48]);

    // Tags set through the mount read over SMB as their stream (a Mac
    // sends the `:` in the stream's name as U+F022), and the other way.
    let tags = b"bplist00\xa1\x01TRed\n6".to_vec();
    assert_eq!(
        set_xattr(&clip, "user.com.apple.metadata:_kMDItemUserTags", &tags),
        0
    );
    let stream = "clip.mov:com.apple.metadata\u{f022}_kMDItemUserTags";
    assert_eq!(s.get_alice(stream), tags);
    let blue = b"bplist00\xa1\x01UBlue\n4".to_vec();
    s.put_alice(&blue, stream);
    assert_eq!(
        xattr(&clip, "user.com.apple.metadata:_kMDItemUserTags"),
        blue
    );

    // A resource fork over SMB, on a file with Finder info and tags: fruit
    // keeps it in `._clip.mov` through the mount, which the core reads as
    // the file's com.apple.ResourceFork; the other attributes stay as they
    // were (fruit finds nothing in `._clip.mov` to convert).
    let fork: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    s.put_alice(&fork, "clip.mov:AFP_Resource");
    assert_eq!(s.get_alice("clip.mov:AFP_Resource"), fork);
    assert_eq!(xattr(&clip, "user.com.apple.ResourceFork"), fork);
    assert_eq!(xattr(&clip, "user.com.apple.FinderInfo"), afp[16..48]);
    assert_eq!(
        xattr(&clip, "user.com.apple.metadata:_kMDItemUserTags"),
        blue
    );
    assert_eq!(s.get_alice("clip.mov:AFP_AfpInfo"), afp);
    // One set through the mount reads over SMB; fruit removes a fork by
    // removing `._name`, and the file's fork goes with it.
    let other = alice.join("other.mov");
    std::fs::write(&other, b"x").expect("write");
    let rsrc = b"RSRC".repeat(500);
    assert_eq!(set_xattr(&other, "user.com.apple.ResourceFork", &rsrc), 0);
    assert_eq!(s.get_alice("other.mov:AFP_Resource"), rsrc);
    std::fs::remove_file(alice.join("._clip.mov")).expect("rm ._clip.mov");
    assert_eq!(xattr(&clip, "user.com.apple.ResourceFork"), b"");
    assert_eq!(xattr(&clip, "user.com.apple.FinderInfo"), afp[16..48]);

    // A name typed on a Mac with a `:` is the same name in the mount.
    s.put_alice(&blue, "Scene\u{f022}Take.mov");
    assert!(alice.join("Scene:Take.mov").is_file());
}

/// The value of `p`'s extended attribute `name` (empty if none).
fn xattr(p: &Path, name: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 64 << 10];
    let n = get_xattr(p, name, &mut buf);
    buf.truncate(n.max(0) as usize);
    buf
}

/// The service's way (`service install --smb` runs this supervisor): the
/// drives mounted, then Samba serving them; SIGHUP mounts a new user and
/// shares it; an `smbd` that dies is started again; SIGTERM stops Samba,
/// then the mounts.
#[test]
fn the_supervisor_mounts_then_samba_serves_and_sighup_reloads_both() {
    let lib = TestLib::fixture("alice", Some(60), false);
    let toml = |users: &[(&str, &str)]| {
        let text: String = users
            .iter()
            .map(|(u, a)| format!("[users.{u}]\nsmb_users = [\"{a}\"]\n"))
            .collect();
        std::fs::write(lib.data.join("markbase.toml"), text).expect("markbase.toml");
    };
    toml(&[("alice", "root")]);
    let base = MountBase {
        dir: lib.tmp.path().join("drives"),
    };
    let port = free_port();
    let mut sup = Command::new(bin())
        .arg("--data-dir")
        .arg(&lib.data)
        .args(["fuse", "--mount", "--all", "--foreground", "--allow-other"])
        .arg("--dir")
        .arg(&base.dir)
        .args(["--smb", "--smb-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the supervisor");
    let pid = nix::unistd::Pid::from_raw(sup.id() as i32);
    let conf = lib.data.join("samba/smb.conf");
    let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    until("Samba listening", || conf.is_file() && listening());
    assert!(is_mounted(&base.dir.join("MarkBase_alice")));
    add_account(&conf, "root");
    let smb = SmbClient {
        conf: conf.clone(),
        port,
    };
    let ls = |share: &str, account: &str| smb.client(share, account, "ls").status.success();
    until("alice's share", || ls("MarkBase_alice", "root"));

    // A new user, and SIGHUP: mounted, then shared.
    make_library(&lib.data, "bob", Some(60), false);
    toml(&[("alice", "root"), ("bob", "nobody")]);
    add_account(&conf, "nobody");
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).expect("SIGHUP");
    until("bob's share", || ls("MarkBase_bob", "nobody"));
    assert!(is_mounted(&base.dir.join("MarkBase_bob")));
    assert!(!ls("MarkBase_bob", "root"), "root reached bob's share");

    // smbd killed: started again.
    let smbd_pid = || -> Option<i32> {
        let out = Command::new("pgrep")
            .args(["-o", "-f"])
            .arg(format!("smbd .*{}", conf.display()))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let old = smbd_pid().expect("smbd's pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(-old), nix::sys::signal::SIGKILL)
        .expect("kill smbd");
    until("smbd started again", || {
        smbd_pid().is_some_and(|p| p != old) && ls("MarkBase_alice", "root")
    });

    // SIGTERM: Samba stops, then every mount.
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("SIGTERM");
    let status = sup.wait().expect("wait");
    assert!(status.success(), "supervisor exited with {status}");
    assert_eq!(smbd_pid(), None, "smbd still running");
    assert!(!listening());
    for u in ["alice", "bob"] {
        assert!(!is_mounted(&base.dir.join(format!("MarkBase_{u}"))));
    }
}

/// Samba's own conformance suites for Apple's extensions and for named
/// streams (`smbtorture vfs.fruit`, `smb2.streams`) give through a mount
/// what they give on a plain folder of this machine's disk, test for test
/// (some fail on both: they expect other `fruit` options, or another
/// Samba's behaviour).
#[test]
fn smbtorture_gives_on_a_mount_what_it_gives_on_a_plain_folder() {
    let Some(smbtorture) = installed("smbtorture") else {
        panic!("smbtorture is not installed: apt-get install samba-testsuite (.ci/run does)");
    };
    let s = studio(&[("alice", "root")]);
    let plain = s.lib.tmp.path().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.smbd.conf)
        .expect("smb.conf");
    write!(
        conf,
        "\n[disk]\n   path = {}\n   valid users = root\n   read only = no\n",
        plain.display()
    )
    .expect("append");
    drop(conf);
    s.smbd.reload("disk", "root");
    let verdicts = |share: &str, suite: &str| -> Vec<String> {
        let out = Command::new(&smbtorture)
            .arg(format!("//127.0.0.1/{share}"))
            .args(["-p", &s.smbd.port.to_string()])
            .arg(format!("-Uroot%{PASSWORD}"))
            .arg(suite)
            .stdin(Stdio::null())
            .output()
            .expect("run smbtorture");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| {
                ["success:", "failure:", "error:", "skip:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(|l| l.trim_end_matches(" [").to_string())
            .collect();
        v.sort();
        v
    };
    for suite in ["vfs.fruit", "smb2.streams"] {
        let on_disk = verdicts("disk", suite);
        let on_mount = verdicts("MarkBase_alice", suite);
        let passed = on_mount
            .iter()
            .filter(|v| v.starts_with("success:"))
            .count();
        eprintln!(
            "smbtorture {suite}: {passed} of {} pass on the mount",
            on_mount.len()
        );
        assert!(passed >= 10, "{suite} on the disk: {on_disk:#?}");
        assert_eq!(on_mount, on_disk, "{suite}: the mount against the disk");
    }
}

/// Wait up to 60 s for `f`.
fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
