//! The studio server under a real kernel SMB client: a QEMU guest running
//! Debian's kernel mounts a user's share (`mount -t cifs`, SMB 3.1.1) from
//! the `smbd` that `markbase share` configures on that user's FUSE mount
//! (`scripts/nfs-vm --smb`), and works on it: fsx, and a many-file copy
//! checked byte for byte, then seen through the FUSE mount and the catalog.
//! Where QEMU cannot run, each test says so in one line and returns. The
//! guest runs under software emulation here: nothing is timed.

mod common;

use common::smb::{studio, Studio, PASSWORD};
use common::vm::{guest, run_in_smb_guest, GuestRun, FSX_EXTENDED};
use common::*;

/// alice's drive shared by Samba (account root).
fn alice() -> Studio {
    studio(&[("alice", "root")])
}

/// `script` run in a guest that mounts alice's share.
fn in_guest(s: &Studio, bins: &[&std::path::Path], script: &str, timeout_s: u32) -> GuestRun {
    run_in_smb_guest(
        "MarkBase_alice",
        s.smbd.port,
        &format!("username=root,password={PASSWORD}"),
        bins,
        script,
        timeout_s,
    )
}

/// Stop Samba, unmount, then check the library.
fn fsck_after(s: Studio) {
    let lib = s.stop();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

fn fsx_in_guest(config: &str, ops: u32) {
    let Some(fsx) = installed("fsx") else {
        panic!("fsx is not installed: run `cargo install fsx` (.ci/run does)");
    };
    let s = alice();
    let flags = if config.is_empty() {
        ""
    } else {
        "-f /tmp/fsx.toml"
    };
    let script = format!(
        "cat > /tmp/fsx.toml <<'EOF'\n{config}\nEOF\nfsx -N {ops} -S 7 {flags} -P /tmp /mnt/fsx.bin 2>&1 | tail -5"
    );
    let out = in_guest(&s, &[&fsx], &script, 1800).ok("fsx");
    assert!(out.contains("A-OK"), "fsx {config}:\n{out}");
    fsck_after(s);
}

#[test]
fn fsx_through_the_kernel_smb_client() {
    if guest("fsx over SMB").is_none() {
        return;
    }
    fsx_in_guest("", 10_000);
}

#[test]
fn fsx_extended_through_the_kernel_smb_client() {
    if guest("fsx extended over SMB").is_none() {
        return;
    }
    fsx_in_guest(FSX_EXTENDED, 3_000);
}

/// 1,000 files of 1-64 KiB in 10 folders, made on the guest's own disk
/// (tmpfs), copied onto the share with `cp -r`, compared there (every path
/// and MD5), then every even one renamed and one in four removed; what the
/// guest left is what the FUSE mount shows, byte for byte, and the catalog
/// is sound.
#[test]
fn many_files_copied_renamed_and_removed_through_the_kernel_smb_client() {
    if guest("many files over SMB").is_none() {
        return;
    }
    let s = alice();
    let script = r#"
set -e
cd /tmp
mkdir src
for d in 0 1 2 3 4 5 6 7 8 9; do mkdir src/d$d; done
i=0
while [ $i -lt 1000 ]; do
  head -c $(( (i * 37 % 64 + 1) * 1024 )) /dev/urandom > src/d$((i % 10))/f$i.bin
  i=$((i + 1))
done
TREE='{ find . | LC_ALL=C sort; find . -type f -exec md5sum {} + | LC_ALL=C sort -k2; }'
want=$(cd src && eval "$TREE")
cp -r src /mnt/copy
got=$(cd /mnt/copy && eval "$TREE")
[ "$want" = "$got" ] || { echo "the copy differs"; exit 1; }
i=0
while [ $i -lt 1000 ]; do mv /mnt/copy/d$((i % 10))/f$i.bin /mnt/copy/d$((i % 10))/g$i.bin; i=$((i + 2)); done
i=0
i=1
while [ $i -lt 1000 ]; do rm /mnt/copy/d$((i % 10))/f$i.bin; i=$((i + 4)); done
echo "left $(find /mnt/copy -type f | wc -l)"
cd src && find . -type f -exec md5sum {} + | LC_ALL=C sort -k2 | sed 's/^/SUM /'
"#;
    let out = in_guest(&s, &[], script, 1800).ok("the copy");
    assert!(out.contains("left 750"), "{out}");
    let drive = s.drive("alice").join("copy");
    let mut seen = 0;
    for line in out.lines().filter_map(|l| l.strip_prefix("SUM ")) {
        let (sum, path) = line.split_once("  ").expect("md5sum line");
        let path = path.trim_start_matches("./");
        let (dir, file) = path.split_once('/').expect("d/f");
        let i: usize = file
            .trim_start_matches('f')
            .trim_end_matches(".bin")
            .parse()
            .expect("f<i>.bin");
        let name = match i % 4 {
            1 => {
                assert!(!drive.join(dir).join(format!("f{i}.bin")).exists());
                continue;
            }
            0 | 2 => format!("g{i}.bin"),
            _ => format!("f{i}.bin"),
        };
        let bytes = std::fs::read(drive.join(dir).join(&name)).expect("read through FUSE");
        assert_eq!(bytes.len(), (i * 37 % 64 + 1) * 1024, "{dir}/{name}");
        assert_eq!(md5_hex(&bytes), sum, "{dir}/{name}");
        seen += 1;
    }
    assert_eq!(seen, 750);
    fsck_after(s);
}

/// The MD5 of `bytes`, in hex, as `md5sum` prints it.
fn md5_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
