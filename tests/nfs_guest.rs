//! The NFS server under a real kernel NFS client: a QEMU guest running
//! Debian's kernel mounts `markbase nfs --serve` (`scripts/nfs-vm`), with the
//! mount options the product itself uses, and works on it as a Mac's or a
//! studio machine's client would: attribute caches, readahead, write-behind
//! with COMMIT. Where QEMU cannot run, each test says so in one line and
//! returns. The guest runs under software emulation on this project's
//! machines: its speed is the emulated CPU's, so nothing here is timed.

mod common;

use std::path::Path;
use std::process::Command;

use common::nfs::Client;
use common::vm::{guest, one_guest_at_a_time, product_options, run_in_guest, FSX_EXTENDED};
use common::*;

/// A library made by `markbase library create --demo`.
fn demo(user: &str) -> TestLib {
    let tmp = tempfile::Builder::new()
        .prefix("mbtest-")
        .tempdir()
        .expect("tempdir");
    let lib = TestLib {
        data: tmp.path().join("data"),
        tmp,
        user: user.to_string(),
    };
    let out = lib.markbase(&["library", "create", "--user", user, "--demo"]);
    assert_success(&out);
    lib
}

/// What the tree looks like: every path (sorted by byte), and every file's
/// MD5; but for `.metadata_never_index`, which the NFS server puts at the
/// root (a Mac's Spotlight then leaves the volume alone) and a FUSE mount on
/// Linux does not.
const TREE: &str = "{ find . | LC_ALL=C sort; find . -type f -exec md5sum {} + | LC_ALL=C sort -k2; } | grep -v metadata_never_index";

/// Every path alone (sorted by byte), but for `.metadata_never_index`.
const LIST: &str = "find . | LC_ALL=C sort | grep -v metadata_never_index";

/// `script` ([`TREE`] or [`LIST`]) run on this machine in `dir`.
fn here(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The guest's output between two marker lines (the console also carries
/// the kernel's own lines).
fn between(out: &str, tag: &str) -> String {
    let (start, end) = (format!("<<{tag}"), format!("{tag}>>"));
    out.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| *l != end)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn marked(tag: &str, script: &str) -> String {
    format!("echo '<<{tag}'; {script}; echo '{tag}>>'")
}

/// The start of a guest script that runs `markbase` there: a library of
/// its own for user `g`, in `/tmp/data`.
const A_LIBRARY_IN_THE_GUEST: &str = "set -e
export MARKBASE_DATA_DIR=/tmp/data
markbase library create --user g
";

/// What follows `tag` on the first line of the guest's output that starts
/// with it (`echo "written $(md5sum ...)"`).
fn after<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(tag))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no line starting {tag:?}:\n{out}"))
}

#[test]
fn the_demo_tree_and_its_bytes_read_through_the_kernel_client_as_through_fuse() {
    if guest("demo tree").is_none() {
        return;
    }
    let lib = demo("guestdemo");
    let m = lib.mount(&[]);
    let want = here(&m.dir, TREE);
    m.unmount();
    let served = lib.serve_nfs(&[]);
    let run = run_in_guest(
        served.port(),
        &product_options(),
        &[],
        &marked("T", TREE),
        300,
    );
    let got = between(&run.ok("the tree"), "T");
    served.stop();
    assert!(want.lines().count() > 10, "{want}");
    assert_eq!(got, want, "the guest's view differs from the FUSE mount's");
}

#[test]
fn the_12659_node_fixture_with_anomalies_lists_as_through_fuse() {
    if guest("fixture").is_none() {
        return;
    }
    let lib = TestLib::fixture("guestfix", None, true);
    let m = lib.mount(&[]);
    let want = here(&m.dir, LIST);
    m.unmount();
    let served = lib.serve_nfs(&[]);
    let run = run_in_guest(
        served.port(),
        &product_options(),
        &[],
        &marked("L", LIST),
        900,
    );
    let got = between(&run.ok("the listing"), "L");
    served.stop();
    assert!(
        want.lines().count() > 12_000,
        "{} paths",
        want.lines().count()
    );
    if got != want {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let missing: Vec<_> = w.iter().filter(|l| !g.contains(l)).take(5).collect();
        let extra: Vec<_> = g.iter().filter(|l| !w.contains(l)).take(5).collect();
        panic!(
            "the guest lists {} paths, FUSE {}; missing {missing:?}, extra {extra:?}",
            g.len(),
            w.len()
        );
    }
}

#[test]
fn small_files_made_listed_renamed_and_removed_by_the_kernel_client() {
    if guest("small files").is_none() {
        return;
    }
    let lib = TestLib::empty("guestsmall");
    let served = lib.serve_nfs(&[]);
    // 1,000 files in 10 folders; every one renamed; every second removed;
    // the listing checked by the guest after each step.
    let script = r#"
set -e
for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p work/d$d; done
i=0
while [ $i -lt 1000 ]; do echo "file $i" > work/d$((i % 10))/f$i; i=$((i + 1)); done
[ "$(find work -type f | wc -l)" = 1000 ] || { echo "made: $(find work -type f | wc -l)"; exit 1; }
i=0
while [ $i -lt 1000 ]; do mv work/d$((i % 10))/f$i work/d$((i % 10))/g$i; i=$((i + 1)); done
[ "$(find work -name 'f*' -type f | wc -l)" = 0 ] || exit 2
i=0
while [ $i -lt 1000 ]; do rm work/d$((i % 10))/g$i; i=$((i + 2)); done
[ "$(find work -type f | wc -l)" = 500 ] || { echo "left: $(find work -type f | wc -l)"; exit 3; }
cat work/d1/g1 work/d9/g999
"#;
    let out = run_in_guest(served.port(), &product_options(), &[], script, 900).ok("the churn");
    assert!(out.contains("file 1\nfile 999"), "{out}");
    served.stop();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
    // What the guest left is what the FUSE mount shows.
    let m = lib.mount(&[]);
    let mut n = 0;
    for d in 0..10 {
        for e in std::fs::read_dir(m.path(&format!("work/d{d}"))).expect("folder") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            let i: usize = name.trim_start_matches('g').parse().expect("a g file");
            assert!(i % 2 == 1 && i % 10 == d, "{name} in d{d}");
            assert_eq!(
                std::fs::read_to_string(m.path(&format!("work/d{d}/{name}"))).expect("read"),
                format!("file {i}\n")
            );
            n += 1;
        }
    }
    assert_eq!(n, 500);
}

/// A 10,000-entry folder listed by the guest's kernel client (caches
/// dropped before each listing, so every page comes from the server) while
/// another client, on this machine, creates and removes files in it: every
/// name that stays is listed once, none twice.
#[test]
fn a_10000_entry_folder_lists_every_name_once_while_another_client_churns_in_it() {
    if guest("big folder").is_none() {
        return;
    }
    let lib = TestLib::empty("guestbig");
    let served = lib.serve_nfs(&[]);
    let addr = served.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut c, big) = rt.block_on(async {
        let mut c = Client::connect(addr).await.expect("connect");
        let root = c.root.clone();
        let big = c.mkdir(&root, "big").await.expect("mkdir");
        for i in 0..10_000 {
            c.create(&big, &format!("s{i:05}"), 0o644)
                .await
                .expect("create");
        }
        (c, big)
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let done = done.clone();
        std::thread::spawn(move || {
            rt.block_on(async {
                // Each new file stays while the next 99 are made, then
                // goes: the folder holds 10,000-10,100 entries throughout.
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    c.create(&big, &format!("t{n}"), 0o644)
                        .await
                        .expect("create");
                    if n >= 100 {
                        c.remove(&big, &format!("t{}", n - 100))
                            .await
                            .expect("remove");
                    }
                    n += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                n
            })
        })
    };
    // A shell glob lists the names as READDIR gives them; ls would stat each
    // and drop those removed before it got to them.
    let script = r#"
r=1
while [ $r -le 5 ]; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  for f in big/*; do echo "${f#big/}"; done > /tmp/l
  echo "round $r: $(grep -c '^s' /tmp/l) stable $(grep -c '^t' /tmp/l) churned $(sort /tmp/l | uniq -d | wc -l) twice"
  r=$((r + 1))
done
"#;
    let out = run_in_guest(served.port(), &product_options(), &[], script, 900);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let churned = churn.join().expect("churn thread");
    let out = out.ok("the listings");
    served.stop();
    let rounds: Vec<&str> = out.lines().filter(|l| l.starts_with("round ")).collect();
    eprintln!("{churned} files made by the other client while the guest listed; {rounds:?}");
    assert_eq!(rounds.len(), 5, "{out}");
    for r in &rounds {
        assert!(
            r.contains(": 10000 stable") && r.ends_with(" 0 twice"),
            "{r}\n{out}"
        );
    }
    assert!(
        churned > 0,
        "the other client made nothing while the guest listed"
    );
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

/// `markbase fuse --mount --backend nfs` inside the guest, whose kernel has
/// an NFS client (this machine's has none): the product's own server and
/// `mount -t nfs` there, a write, `--status`, `--unmount`, fsck; then the
/// guest's catalog, copied out through the test's own server, holds the
/// file at its size, and its content file has the bytes written.
#[test]
fn the_one_step_nfs_mount_works_where_the_kernel_has_an_nfs_client() {
    if guest("one-step mount").is_none() {
        return;
    }
    let lib = TestLib::empty("guestmount");
    let served = lib.serve_nfs(&[]);
    let script = [
        A_LIBRARY_IN_THE_GUEST,
        r#"
mkdir -p /tmp/m
markbase fuse --mount --backend nfs --user g --dir /tmp/m
dd if=/dev/urandom of=/tmp/m/clip.bin bs=1k count=3000 2>/dev/null
echo "written $(md5sum < /tmp/m/clip.bin)"
markbase fuse --status
markbase fuse --unmount --dir /tmp/m
if grep -q ' /tmp/m ' /proc/mounts; then echo "still mounted"; exit 1; fi
markbase fsck --user g
for f in /tmp/data/content/g/*/*; do echo "stored $(md5sum < "$f")"; done
mkdir /mnt/guest; cp /tmp/data/users/* /mnt/guest/
"#,
    ]
    .concat();
    let out = run_in_guest(served.port(), &product_options(), &[&bin()], &script, 600)
        .ok("the one-step mount");
    served.stop();
    assert!(out.contains("mounted g at /tmp/m"), "{out}");
    let status = out
        .lines()
        .find(|l| l.starts_with("g ") && l.contains("/tmp/m"))
        .unwrap_or_else(|| panic!("no status line for /tmp/m:\n{out}"));
    assert!(
        status.contains(" mounted ") && status.contains(" nfs "),
        "{status}"
    );
    assert!(out.contains("unmounted /tmp/m"), "{out}");
    let written = after(&out, "written ");
    assert!(out.contains(&format!("stored {written}")), "{out}");
    // The guest's catalog, as it left it.
    let m = lib.mount(&[]);
    let copy = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(m.path("guest")).expect("the copied catalog") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), copy.path().join(e.file_name())).expect("copy");
    }
    m.unmount();
    let size: i64 = rusqlite::Connection::open(copy.path().join("g.sqlite"))
        .and_then(|c| {
            c.query_row(
                "SELECT size FROM file_nodes WHERE label='clip.bin'",
                [],
                |r| r.get(0),
            )
        })
        .expect("clip.bin in the guest's catalog");
    assert_eq!(size, 3000 * 1024);
}

/// pjdfstest run as root in the guest on the kernel client's mount, with
/// `tests/pjdfstest-nfs.toml`: each failure it expects is the owner rule or
/// NFSv3 itself (SEMANTICS.md); any other failure, or an expected one that
/// passes, fails the test.
#[test]
fn pjdfstest_through_the_kernel_client() {
    if guest("pjdfstest").is_none() {
        return;
    }
    let Some(pjdfstest) = installed("pjdfstest") else {
        panic!("pjdfstest is not installed: run `cargo install pjdfstest` (.ci/run does)");
    };
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest-nfs.toml"),
    )
    .expect("tests/pjdfstest-nfs.toml");
    let lib = TestLib::empty("guestpjd");
    let served = lib.serve_nfs(&[]);
    // pjdfstest switches to other users, who must reach its folder.
    let script = format!(
        "cat > /tmp/pjd.toml <<'EOF'\n{config}\nEOF\nchmod 755 /mnt\n{}; echo PJD-EXIT=$?",
        marked("P", "NO_COLOR=1 pjdfstest -c /tmp/pjd.toml -p /mnt 2>&1")
    );
    let out = run_in_guest(
        served.port(),
        &product_options(),
        &[&pjdfstest],
        &script,
        1800,
    )
    .ok("pjdfstest");
    served.stop();
    let (summary, failed) = pjdfstest_verdict(&between(&out, "P"));
    eprintln!("pjdfstest through the kernel NFS client: {summary}");
    assert!(
        out.contains("PJD-EXIT=0") && failed.is_empty(),
        "pjdfstest: {summary}\nfailed:\n{}\n{out}",
        failed.join("\n")
    );
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

/// fsx in the guest on the kernel client's mount: `ops` operations, with
/// the configuration `config` (fsx's TOML; empty: its defaults).
fn fsx_in_guest(user: &str, config: &str, ops: u32) {
    let Some(fsx) = installed("fsx") else {
        panic!("fsx is not installed: run `cargo install fsx` (.ci/run does)");
    };
    let lib = TestLib::empty(user);
    let served = lib.serve_nfs(&[]);
    let flags = if config.is_empty() {
        ""
    } else {
        "-f /tmp/fsx.toml"
    };
    let script = format!(
        "cat > /tmp/fsx.toml <<'EOF'\n{config}\nEOF\nfsx -N {ops} -S 7 {flags} -P /tmp /mnt/fsx.bin 2>&1 | tail -5"
    );
    let out = run_in_guest(served.port(), &product_options(), &[&fsx], &script, 1800).ok("fsx");
    served.stop();
    assert!(out.contains("A-OK"), "fsx {config}:\n{out}");
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn fsx_through_the_kernel_client() {
    if guest("fsx").is_none() {
        return;
    }
    fsx_in_guest("guestfsx", "", 10_000);
}

#[test]
fn fsx_extended_through_the_kernel_client() {
    if guest("fsx extended").is_none() {
        return;
    }
    fsx_in_guest("guestfsxx", FSX_EXTENDED, 3_000);
}

#[test]
fn no_content_file_is_orphaned_when_the_server_stops_right_after_a_churn() {
    if guest("orphans").is_none() {
        return;
    }
    let lib = TestLib::empty("guestorphans");
    // Each round: small files made, renamed and removed while the server
    // still holds their leases; then SIGTERM the moment the guest is done.
    let churn = "mkdir -p r; i=0; while [ $i -lt 50 ]; do echo $i > r/f$i; mv r/f$i r/g$i; rm r/g$i; i=$((i + 1)); done; ls r | wc -l";
    for round in 0..10 {
        let served = lib.serve_nfs(&[]);
        run_in_guest(served.port(), &product_options(), &[], churn, 600).ok("the churn");
        served.stop();
        let (code, text) = fsck(&lib.data, &lib.user, &[]);
        assert_eq!(code, 0, "round {round}: {text}");
    }
    // After an unclean stop, the next start cleans what is left.
    let served = lib.serve_nfs(&[]);
    run_in_guest(served.port(), &product_options(), &[], churn, 600).ok("the churn");
    served.kill();
    let served = lib.serve_nfs(&[]);
    served.stop();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "after a SIGKILL and a restart: {text}");
}

#[test]
fn a_hard_mount_rides_out_a_server_killed_mid_write_and_restarted_on_its_port() {
    if guest("server restart").is_none() {
        return;
    }
    let lib = TestLib::empty("guestrestart");
    let served = lib.serve_nfs(&[]);
    let port = served.port();
    // 64 MiB written by the guest; the server is SIGKILLed once the guest
    // has started, and started again on the same address a second later.
    let script = "echo go > go.txt; sync; dd if=/dev/zero of=big.bin bs=1M count=64 2>/dev/null; sync; md5sum big.bin; ls -l big.bin";
    let guest_run =
        std::thread::spawn(move || run_in_guest(port, &product_options(), &[], script, 900));
    let catalog = lib.catalog();
    loop {
        let started = rusqlite::Connection::open(&catalog)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM file_nodes WHERE label='go.txt'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0);
        if started > 0 {
            break;
        }
        // (The guest may wait for another test's to finish first.)
        if guest_run.is_finished() {
            let run = guest_run.join().expect("guest thread");
            panic!("the guest ended before it wrote:\n{}", run.output);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    served.kill();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let served = lib.serve_nfs_on(&format!("127.0.0.1:{port}"), &[]);
    let out = guest_run
        .join()
        .expect("guest thread")
        .ok("the write across a restart");
    // 64 MiB of zeros.
    assert!(
        out.contains("7f614da9329cd3aebf59b91aadc30bf0  big.bin"),
        "{out}"
    );
    served.stop();
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn the_soak_runs_through_the_guests_kernel_client_with_every_byte_checked() {
    if guest("kernel-client soak").is_none() {
        return;
    }
    let _one = one_guest_at_a_time();
    let tmp = tempfile::Builder::new()
        .prefix("mbtest-")
        .tempdir()
        .expect("tempdir");
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(tmp.path())
        .args([
            "fuse",
            "--test",
            "--stability",
            "--backend",
            "nfs",
            "--client",
            "kernel",
        ])
        .args(["--mounts", "2", "--duration", "40s", "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run markbase");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON report");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["mounts"], 2, "{v}");
    assert!(v["operations"].as_u64() > Some(0), "{v}");
    assert!(v["bytes_verified"].as_u64() > Some(0), "{v}");
    assert!(
        v["through"].as_str().is_some_and(|t| t.contains("kernel")),
        "{v}"
    );
    // The servers' memory, sampled here while the guest worked.
    let rss = v["rss_mib"].as_array().expect("rss_mib");
    assert!(
        !rss.is_empty() && rss.iter().all(|m| m.as_f64() > Some(1.0)),
        "{v}"
    );
}

/// The kernel client's own silly rename: a file removed while a program
/// has it open becomes `.nfs<24 hex digits>` in its folder, and the client
/// removes that name at the last close. While it is open, the catalog no
/// longer has it; after, nothing is left. And a name the guest makes in
/// NFD is listed, and kept in the catalog, in NFC.
#[test]
fn a_file_removed_while_open_is_silly_renamed_out_of_the_catalog_and_nfd_names_land_in_nfc() {
    if guest("silly renames").is_none() {
        return;
    }
    let lib = TestLib::empty("guestsilly");
    let served = lib.serve_nfs(&[]);
    let (port, addr) = (served.port(), served.addr);
    let script = r#"
set -e
mkdir Project
echo 'take one' > Project/take1.mov
exec 3< Project/take1.mov
rm Project/take1.mov
echo "silly: $(ls -A Project)"
touch Project/ready
i=0
while [ ! -e Project/checked ]; do sleep 0.2; i=$((i + 1)); [ $i -lt 600 ] || exit 9; done
echo "read: $(cat <&3)"
exec 3<&-
i=0
while ls -A Project | grep -q '^\.nfs'; do sleep 0.2; i=$((i + 1)); [ $i -lt 100 ] || exit 8; done
echo "after: $(ls -A Project | tr '\n' ' ')"
NFD=$(printf 'Cafe\314\201.mov'); NFC=$(printf 'Caf\303\251.mov')
echo x > "Project/$NFD"
for f in Project/C*; do case "$f" in "Project/$NFC") echo "listed: nfc";; "Project/$NFD") echo "listed: nfd";; *) echo "listed: other";; esac; done
[ "$(cat "Project/$NFC")" = x ]
"#;
    let guest_run =
        std::thread::spawn(move || run_in_guest(port, &product_options(), &[], script, 600));
    // While the guest holds the removed file open.
    let t = std::time::Instant::now();
    while lib.node_sizes("ready").is_empty() {
        if guest_run.is_finished() {
            let run = guest_run.join().expect("guest thread");
            panic!("the guest ended before it got there:\n{}", run.output);
        }
        assert!(t.elapsed().as_secs() < 900, "the guest never got there");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let silly = lib.catalog_rows("SELECT name FROM mb_edges WHERE name LIKE '.nfs%'");
    assert_eq!(silly.len(), 1, "{silly:?}");
    assert!(
        markbase::catalog::names::is_silly_rename(&silly[0]),
        "{silly:?}"
    );
    assert_eq!(lib.node_sizes("take1.mov"), Vec::<i64>::new());
    assert_eq!(lib.node_sizes(&silly[0]), Vec::<i64>::new());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut c = Client::connect(addr).await.expect("connect");
            let root = c.root.clone();
            let d = c.lookup(&root, "Project").await.expect("Project");
            c.create(&d, "checked", 0o644).await.expect("create");
        });
    let out = guest_run
        .join()
        .expect("guest thread")
        .ok("the silly rename");
    assert!(out.contains(&format!("silly: {}", silly[0])), "{out}");
    assert!(out.contains("read: take one"), "{out}");
    assert!(out.contains("after: checked ready "), "{out}");
    assert!(
        out.contains("listed: nfc")
            && !out.contains("listed: nfd")
            && !out.contains("listed: other"),
        "{out}"
    );
    served.stop();
    assert_eq!(
        lib.catalog_rows("SELECT name FROM mb_edges WHERE name LIKE '.nfs%'"),
        Vec::<String>::new()
    );
    assert_eq!(lib.node_sizes("Caf\u{e9}.mov"), [2]);
    let (code, text) = fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

/// A server that dies under its mount (a crash, a kill): the kernel keeps
/// the mount (hard), and what reads it waits. `markbase fuse --mount` again
/// serves it where it is, on the port it had: the reader that waited gets
/// its bytes, with the same handles. Left dead, `--status` says so without
/// touching it, and `--unmount` forces it away: the reader fails instead of
/// hanging.
#[test]
fn a_mount_whose_server_died_is_served_again_on_its_port_or_forced_away() {
    if guest("dead server").is_none() {
        return;
    }
    let lib = TestLib::empty("guestdead");
    let served = lib.serve_nfs(&[]);
    let script = [
        A_LIBRARY_IN_THE_GUEST,
        r#"
mkdir -p /tmp/m
markbase fuse --mount --backend nfs --user g --dir /tmp/m
dd if=/dev/urandom of=/tmp/m/a.bin bs=1k count=2000 2>/dev/null
echo "written $(md5sum < /tmp/m/a.bin)"
echo "port1 $(grep ' /tmp/m ' /proc/mounts | grep -o 'port=[0-9]*' | head -1)"
kill -9 $(pidof markbase); sleep 1
grep -q ' /tmp/m ' /proc/mounts && echo "kept after the kill"
echo "<<S1"; markbase fuse --status; echo "S1>>"
echo 3 > /proc/sys/vm/drop_caches
( md5sum < /tmp/m/a.bin > /tmp/during.txt ) &
reader=$!
sleep 2
markbase fuse --mount --backend nfs --user g --dir /tmp/m
wait $reader
echo "during $(cat /tmp/during.txt)"
echo "port2 $(grep ' /tmp/m ' /proc/mounts | grep -o 'port=[0-9]*' | head -1)"
echo "mounts $(grep -c ' /tmp/m ' /proc/mounts)"
kill -9 $(pidof markbase); sleep 1
echo 3 > /proc/sys/vm/drop_caches
( if cat /tmp/m/a.bin > /dev/null 2>&1; then echo "reader: read"; else echo "reader: failed"; fi > /tmp/reader.txt ) &
reader=$!
sleep 2
echo "<<S2"; markbase fuse --status; echo "S2>>"
markbase fuse --unmount --dir /tmp/m
if grep -q ' /tmp/m ' /proc/mounts; then echo "still mounted"; exit 1; fi
wait $reader || true
cat /tmp/reader.txt
"#,
    ]
    .concat();
    let out = run_in_guest(served.port(), &product_options(), &[&bin()], &script, 600)
        .ok("the dead server");
    served.stop();
    let written = after(&out, "written ");
    assert!(out.contains("kept after the kill"), "{out}");
    let dead = between(&out, "S1");
    assert!(
        dead.lines()
            .any(|l| l.contains("/tmp/m") && l.contains(" dead ")),
        "--status of the dead mount:\n{dead}"
    );
    assert!(out.contains(&format!("during {written}")), "{out}");
    let port = after(&out, "port1 ");
    assert!(port.starts_with("port="), "{out}");
    assert_eq!(port, after(&out, "port2 "), "{out}");
    assert!(out.contains("mounts 1"), "mounted once, not twice:\n{out}");
    assert!(
        between(&out, "S2").contains(" dead "),
        "{}",
        between(&out, "S2")
    );
    assert!(out.contains("unmounted /tmp/m"), "{out}");
    assert!(out.contains("reader: failed"), "{out}");
}

/// `markbase fuse --mount --all --backend nfs --foreground` (what `service
/// install --backend nfs` runs): a user's server that dies is started again
/// by the supervisor, on its port, and the reader that waited gets its
/// bytes; SIGTERM unmounts every drive.
#[test]
fn the_supervisor_starts_a_dead_nfs_server_again_on_its_port() {
    if guest("supervisor").is_none() {
        return;
    }
    let lib = TestLib::empty("guestsuper");
    let served = lib.serve_nfs(&[]);
    let script = [
        A_LIBRARY_IN_THE_GUEST,
        r#"
mkdir -p /tmp/base
markbase fuse --mount --all --backend nfs --foreground --dir /tmp/base > /tmp/super.log 2>&1 &
sup=$!
m=/tmp/base/MarkBase_g
i=0; until grep -q " $m " /proc/mounts; do sleep 0.2; i=$((i + 1)); [ $i -lt 300 ] || { cat /tmp/super.log; exit 7; }; done
dd if=/dev/urandom of=$m/a.bin bs=1k count=1000 2>/dev/null
echo "written $(md5sum < $m/a.bin)"
echo "port1 $(grep " $m " /proc/mounts | grep -o 'port=[0-9]*' | head -1)"
rec=/run/markbase/_tmp_base_MarkBase_g.json
pid=$(grep -o '"pid": [0-9]*' $rec | grep -o '[0-9]*$')
kill -9 $pid
echo 3 > /proc/sys/vm/drop_caches
md5sum < $m/a.bin > /tmp/during.txt
echo "during $(cat /tmp/during.txt)"
echo "port2 $(grep " $m " /proc/mounts | grep -o 'port=[0-9]*' | head -1)"
pid2=$(grep -o '"pid": [0-9]*' $rec | grep -o '[0-9]*$')
[ "$pid2" != "$pid" ] && echo "a new server"
kill -TERM $sup
wait $sup || true
if grep -q " $m " /proc/mounts; then echo "still mounted"; exit 1; fi
echo "unmounted by SIGTERM"
"#,
    ]
    .concat();
    let out = run_in_guest(served.port(), &product_options(), &[&bin()], &script, 600)
        .ok("the supervisor");
    served.stop();
    let written = after(&out, "written ");
    assert!(out.contains(&format!("during {written}")), "{out}");
    let port = after(&out, "port1 ");
    assert!(port.starts_with("port="), "{out}");
    assert_eq!(port, after(&out, "port2 "), "{out}");
    assert!(out.contains("a new server"), "{out}");
    assert!(out.contains("unmounted by SIGTERM"), "{out}");
}
