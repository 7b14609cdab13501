//! The NFSv3 front end, driven by clients nobody here wrote: libnfs's
//! `nfs-ls`, `nfs-cp` and `nfs-cat` (what a user would try first), and
//! `nfs3_client` for the protocol's corners (offsets, setattr, links,
//! paging under change, handles across a restart, a crash between WRITE
//! and COMMIT, refused addresses, what Macs write).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use common::nfs::{libnfs, Client, Listing};
use common::{get_xattr, set_xattr, stream, TestLib};
use nfs3_client::nfs3_types::nfs3::{
    createhow3, nfsstat3, sattr3, set_atime, set_mtime, stable_how, Nfs3Option,
};
use sha2::{Digest, Sha256};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// (kind, size, path) for everything under `root`, as `ls -lR` would see it.
fn local_tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(root).expect("under root");
            let kind = if m.is_dir() {
                'd'
            } else if m.file_type().is_symlink() {
                'l'
            } else {
                '-'
            };
            let size = if m.is_dir() { 0 } else { m.len() };
            out.insert(format!("{kind} {size} {}", rel.to_string_lossy()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The same from `nfs-ls -R` output (`mode nlink uid gid size path`).
fn nfs_ls_tree(text: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(text);
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let path = rest.strip_prefix(' ').unwrap_or(rest);
        let kind = fields[0].chars().next().unwrap_or('?');
        let size = if kind == 'd' { "0" } else { fields[4] };
        out.insert(format!("{kind} {size} {path}"));
    }
    out
}

#[test]
fn libnfs_lists_the_anomalies_fixture_as_the_fuse_mount_shows_it() {
    let lib = TestLib::fixture("nfsls", None, true);
    let m = lib.mount(&[]);
    let mut fuse = local_tree(&m.dir);
    m.unmount();
    // The server puts Spotlight's marker at the root for its Mac clients.
    fuse.insert("- 0 .metadata_never_index".into());
    let s = lib.serve_nfs(&[]);
    let nfs = nfs_ls_tree(&libnfs("nfs-ls", &["-R", &s.url("/")]));
    assert!(fuse.len() > 12_000, "the fixture: {} entries", fuse.len());
    let only_fuse: Vec<_> = fuse.difference(&nfs).take(10).collect();
    let only_nfs: Vec<_> = nfs.difference(&fuse).take(10).collect();
    assert!(
        only_fuse.is_empty() && only_nfs.is_empty(),
        "FUSE only: {only_fuse:#?}\nNFS only: {only_nfs:#?}"
    );
    s.stop();
}

fn sha(path: &Path) -> Vec<u8> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).expect("open");
    std::io::copy(&mut f, &mut h).expect("hash");
    h.finalize().to_vec()
}

#[test]
fn libnfs_copies_a_gib_in_and_out_byte_for_byte() {
    let lib = TestLib::empty("nfscp");
    let src = lib.tmp.path().join("src.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src).expect("create");
        for i in 0..256u64 {
            f.write_all(&stream(i, 4 << 20)).expect("write");
        }
    }
    let s = lib.serve_nfs(&[]);
    libnfs("nfs-cp", &[src.to_str().expect("utf8"), &s.url("/big.bin")]);
    let back = lib.tmp.path().join("back.bin");
    libnfs(
        "nfs-cp",
        &[&s.url("/big.bin"), back.to_str().expect("utf8")],
    );
    assert_eq!(
        std::fs::metadata(&back).map(|m| m.len()).ok(),
        Some(1 << 30)
    );
    assert!(sha(&src) == sha(&back), "1 GiB came back different");
    // nfs-cat of a small file, and the copy is in the catalog.
    let rt = rt();
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let f = c
            .create(&c.root.clone(), "note.txt", 0o644)
            .await
            .expect("create");
        c.write(&f, 0, b"hello over nfs\n", stable_how::FILE_SYNC)
            .await
            .expect("write");
    });
    assert_eq!(
        libnfs("nfs-cat", &[&s.url("/note.txt")]),
        b"hello over nfs\n"
    );
    s.stop();
    assert_eq!(
        lib.node_sizes("big.bin"),
        [1 << 30],
        "big.bin's row in file_nodes"
    );
}

#[test]
fn protocol_operations_behave_as_on_a_local_disk() {
    let lib = TestLib::empty("nfsops");
    let s = lib.serve_nfs(&[]);
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        // create, writes at offsets (a hole between), read.
        let f = c.create(&root, "a.bin", 0o640).await.expect("create");
        assert_eq!(c.getattr(&f).await.map(|a| a.mode & 0o777), Ok(0o640));
        c.write(&f, 0, b"head", stable_how::UNSTABLE)
            .await
            .expect("write");
        c.write(&f, 10, b"tail", stable_how::UNSTABLE)
            .await
            .expect("write");
        c.commit(&f).await.expect("commit");
        let mut want = b"head".to_vec();
        want.extend_from_slice(&[0; 6]);
        want.extend_from_slice(b"tail");
        assert_eq!(c.read_all(&f).await, Ok(want));
        assert_eq!(
            c.create(&root, "a.bin", 0o644).await,
            Err(nfsstat3::NFS3ERR_EXIST),
            "GUARDED create of an existing name"
        );
        // setattr: truncate, times, mode.
        let t = nfs3_client::nfs3_types::nfs3::nfstime3 {
            seconds: 1_600_000_000,
            nseconds: 5,
        };
        c.setattr(
            &f,
            sattr3 {
                size: Nfs3Option::Some(6),
                mode: Nfs3Option::Some(0o600),
                atime: set_atime::SET_TO_CLIENT_TIME(t),
                mtime: set_mtime::SET_TO_CLIENT_TIME(t),
                ..Default::default()
            },
        )
        .await
        .expect("setattr");
        let a = c.getattr(&f).await.expect("getattr");
        assert_eq!((a.size, a.mode & 0o7777), (6, 0o600));
        assert_eq!((a.mtime.seconds, a.mtime.nseconds), (t.seconds, t.nseconds));
        // rename over an existing file: the target is replaced.
        let b = c.create(&root, "b.bin", 0o644).await.expect("create b");
        c.write(&b, 0, b"bbbb", stable_how::FILE_SYNC)
            .await
            .expect("write");
        c.rename(&root, "a.bin", &root, "b.bin")
            .await
            .expect("rename");
        assert_eq!(c.lookup(&root, "a.bin").await, Err(nfsstat3::NFS3ERR_NOENT));
        let nb = c.lookup(&root, "b.bin").await.expect("lookup");
        assert_eq!(c.getattr(&nb).await.map(|a| a.size), Ok(6));
        // link, symlink, readlink.
        c.link(&nb, &root, "hard").await.expect("link");
        assert_eq!(c.getattr(&nb).await.map(|a| a.nlink), Ok(2));
        let l = c.symlink(&root, "sym", "b.bin").await.expect("symlink");
        assert_eq!(c.readlink(&l).await, Ok(b"b.bin".to_vec()));
        // mkdir; rmdir of a non-empty folder; remove and rmdir.
        let d = c.mkdir(&root, "dir").await.expect("mkdir");
        c.create(&d, "inner", 0o644).await.expect("create inner");
        assert_eq!(c.rmdir(&root, "dir").await, Err(nfsstat3::NFS3ERR_NOTEMPTY));
        assert_eq!(c.remove(&root, "dir").await, Err(nfsstat3::NFS3ERR_ISDIR));
        assert_eq!(c.rmdir(&root, "hard").await, Err(nfsstat3::NFS3ERR_NOTDIR));
        c.remove(&d, "inner").await.expect("remove");
        c.rmdir(&root, "dir").await.expect("rmdir");
        assert_eq!(c.getattr(&d).await.err(), Some(nfsstat3::NFS3ERR_STALE));
        // A file removed while in use stays readable through its handle.
        let o = c.create(&root, "open.bin", 0o644).await.expect("create");
        c.write(&o, 0, b"still here", stable_how::UNSTABLE)
            .await
            .expect("write");
        c.remove(&root, "open.bin").await.expect("remove");
        assert_eq!(
            c.lookup(&root, "open.bin").await,
            Err(nfsstat3::NFS3ERR_NOENT)
        );
        assert_eq!(c.read_all(&o).await, Ok(b"still here".to_vec()));
        // Exclusive create: a retransmission gets the same file.
        let v = nfs3_client::nfs3_types::nfs3::createverf3(*b"verifier");
        let x1 = c
            .create_how(&root, "x", createhow3::EXCLUSIVE(v))
            .await
            .expect("exclusive");
        let x2 = c
            .create_how(&root, "x", createhow3::EXCLUSIVE(v))
            .await
            .expect("retransmitted");
        assert_eq!(x1, x2);
        let other = nfs3_client::nfs3_types::nfs3::createverf3(*b"another!");
        assert_eq!(
            c.create_how(&root, "x", createhow3::EXCLUSIVE(other)).await,
            Err(nfsstat3::NFS3ERR_EXIST)
        );
        let mut names = c.names(&root).await.expect("readdir");
        names.sort();
        assert_eq!(
            names,
            [".metadata_never_index", "b.bin", "hard", "sym", "x"]
        );
    });
    s.stop();
}

#[test]
fn paging_a_big_folder_while_another_client_changes_it_loses_and_repeats_nothing() {
    let lib = TestLib::empty("nfspages");
    let s = lib.serve_nfs(&[]);
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let d = c.mkdir(&root, "big").await.expect("mkdir");
        for i in 0..10_000 {
            c.create(&d, &format!("f{i:05}"), 0o644)
                .await
                .expect("create");
        }
        let mut other = Client::connect(s.addr).await.expect("connect 2");
        let d2 = d.clone();
        let changer = tokio::spawn(async move {
            for i in 0..300 {
                other
                    .create(&d2, &format!("new{i:03}"), 0o644)
                    .await
                    .expect("create new");
                other
                    .remove(&d2, &format!("f{:05}", i * 7))
                    .await
                    .expect("remove");
            }
        });
        let mut l = Listing::new(&d, 2048, false);
        while !l.next_page(&mut c).await.expect("page") {
            tokio::task::yield_now().await;
        }
        let (seen, pages) = (l.seen, l.pages);
        changer.await.expect("changer");
        assert!(pages > 50, "{pages} pages: the test must page");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "an entry came twice");
        let removed: HashSet<String> = (0..300).map(|i| format!("f{:05}", i * 7)).collect();
        for i in 0..10_000 {
            let n = format!("f{i:05}");
            assert!(removed.contains(&n) || unique.contains(&n), "{n} was lost");
        }
    });
    s.stop();
}

#[test]
fn a_listing_resumed_with_a_zero_verifier_as_a_mac_does_lists_every_name_once() {
    // A Mac's client, told of a change to the folder mid-listing, zeroes
    // its cookie verifier and resumes at its last cookie (xnu
    // `nfs_vnops.c`); BAD_COOKIE would be ENOENT to it, Finder's -8062.
    let lib = TestLib::empty("nfszero");
    let s = lib.serve_nfs(&[]);
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let d = c.mkdir(&root, "frames").await.expect("mkdir");
        for i in 0..2_000 {
            c.create(&d, &format!("f{i:05}.dpx"), 0o644)
                .await
                .expect("create");
        }
        // Every page asked with a zero verifier, after a change.
        let mut l = Listing::new(&d, 1024, true);
        while !l
            .next_page(&mut c)
            .await
            .expect("a resumed page, not BAD_COOKIE")
        {
            c.create(&d, &format!("._f{:05}.dpx", l.pages), 0o644)
                .await
                .expect("a change mid-listing");
        }
        let (seen, pages) = (l.seen, l.pages);
        assert!(pages > 20, "{pages} pages: the test must page");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "an entry came twice");
        for i in 0..2_000 {
            let n = format!("f{i:05}.dpx");
            assert!(unique.contains(&n), "{n} was lost");
        }
    });
    s.stop();
}

#[test]
fn pathconf_answers_the_file_systems_own_limits() {
    let lib = TestLib::empty("nfspathconf");
    let s = lib.serve_nfs(&[]);
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let (links, name) = c.pathconf(&root).await.expect("pathconf");
        assert_eq!(links, markbase::fs::LINK_MAX, "a Mac reads 0 as no links");
        assert_eq!(name as usize, markbase::fs::NAME_MAX);
    });
    s.stop();
}

#[test]
fn handles_survive_a_restart_and_a_crash_changes_the_write_verifier() {
    let lib = TestLib::empty("nfsrestart");
    let rt = rt();
    let s = lib.serve_nfs(&[]);
    let (fh, gone, verf) = rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let f = c.create(&root, "kept.bin", 0o644).await.expect("create");
        c.write(&f, 0, b"durable", stable_how::FILE_SYNC)
            .await
            .expect("write");
        let g = c.create(&root, "gone.bin", 0o644).await.expect("create");
        c.commit(&g).await.expect("commit");
        c.remove(&root, "gone.bin").await.expect("remove");
        // Answered UNSTABLE: the server may lose it until COMMIT.
        let (_, v) = c
            .write(&f, 7, b" and more", stable_how::UNSTABLE)
            .await
            .expect("write");
        (f, g, v)
    });
    s.kill();
    let s = lib.serve_nfs(&[]);
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let (data, _) = c.read(&fh, 0, 7).await.expect("the old handle reads");
        assert_eq!(data, b"durable");
        let v = c.commit(&fh).await.expect("commit");
        assert_ne!(v, verf, "the verifier must change across a crash");
        // What a client does on a changed verifier: send again, commit.
        let (_, v2) = c
            .write(&fh, 7, b" and more", stable_how::UNSTABLE)
            .await
            .expect("resend");
        assert_eq!(c.commit(&fh).await, Ok(v2));
        assert_eq!(c.read_all(&fh).await, Ok(b"durable and more".to_vec()));
        assert_eq!(c.getattr(&gone).await.err(), Some(nfsstat3::NFS3ERR_STALE));
    });
    s.stop();
    // A clean restart keeps the handle too.
    let s = lib.serve_nfs(&[]);
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        assert_eq!(c.getattr(&fh).await.map(|a| a.size), Ok(16));
    });
    s.stop();
}

/// A Mac keeps its mount when the server dies (hard), and retries the same
/// address: a server started again without `--listen` comes back on the
/// port it had, after a crash or a clean stop, and the old handles work.
#[test]
fn a_server_started_again_listens_on_the_port_it_had() {
    let lib = TestLib::empty("nfsport");
    let rt = rt();
    let s = lib.serve_nfs_with(&[]);
    let first = s.addr;
    assert!(first.ip().is_loopback(), "{first}");
    let fh = rt.block_on(async {
        let mut c = Client::connect(first).await.expect("connect");
        let root = c.root.clone();
        let f = c.create(&root, "kept.mov", 0o644).await.expect("create");
        c.write(&f, 0, b"frames", stable_how::FILE_SYNC)
            .await
            .expect("write");
        f
    });
    s.kill();
    let s = lib.serve_nfs_with(&[]);
    assert_eq!(s.addr, first, "after a crash");
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        assert_eq!(c.read_all(&fh).await, Ok(b"frames".to_vec()));
    });
    s.stop();
    let s = lib.serve_nfs_with(&[]);
    assert_eq!(s.addr, first, "after a clean stop");
    // Taken meanwhile by someone else: another port, said in the log.
    s.stop();
    let squatter = std::net::TcpListener::bind(first).expect("take the port");
    let s = lib.serve_nfs_with(&[]);
    assert_ne!(s.addr, first);
    drop(squatter);
    s.stop();
}

/// A non-loopback address of this machine, if it has one.
fn own_address() -> Option<std::net::Ipv4Addr> {
    // The source address the kernel picks for an outside destination (a UDP
    // connect sends nothing), else what `hostname -I` lists first.
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.255:9").map(|_| u))
        .and_then(|u| u.local_addr())
        .ok()
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
            _ => None,
        });
    routed.or_else(|| {
        let out = std::process::Command::new("hostname")
            .arg("-I")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.parse::<std::net::Ipv4Addr>().ok())
            .find(|ip| !ip.is_loopback())
    })
}

#[test]
fn clients_are_refused_unless_allowed() {
    let lib = TestLib::empty("nfsallow");
    let refused = lib.markbase(&[
        "nfs",
        "--serve",
        "--user",
        "nfsallow",
        "--listen",
        "0.0.0.0:0",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--allow-clients"),
        "says what is missing: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let Some(ip) = own_address() else {
        eprintln!("no non-loopback address here: refusal by address not tested");
        return;
    };
    let s = lib.serve_nfs_on("0.0.0.0:0", &["--allow-clients", "10.99.0.0/16"]);
    let port = s.port();
    assert!(
        !answers_null_rpc(std::net::SocketAddr::new(ip.into(), port)),
        "{ip} is not in the allow-list"
    );
    assert!(
        answers_null_rpc(std::net::SocketAddr::new([127, 0, 0, 1].into(), port)),
        "loopback is allowed"
    );
    s.stop();
    let allowed = format!("{ip}/32");
    let s = lib.serve_nfs_on("0.0.0.0:0", &["--allow-clients", &allowed]);
    assert!(
        answers_null_rpc(std::net::SocketAddr::new(ip.into(), s.port())),
        "allowed by --allow-clients"
    );
    rt().block_on(async {
        let addr = std::net::SocketAddr::new(ip.into(), s.port());
        Client::connect(addr)
            .await
            .expect("MOUNT from an allowed address");
    });
    s.stop();
}

/// Does the server at `addr` answer an NFS NULL call? Sent by hand over
/// TCP, as `nfs3_client` spins on a connection closed under it.
fn answers_null_rpc(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    // Record mark (last fragment, 40 bytes), then xid, CALL, RPC v2,
    // NFS (100003) v3, procedure 0, AUTH_NONE credential and verifier.
    let words: [u32; 11] = [0x8000_0028, 7, 0, 2, 100_003, 3, 0, 0, 0, 0, 0];
    let call: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    if s.write_all(&call).is_err() {
        return false;
    }
    // The record mark and the reply may come in separate segments.
    let mut reply = [0u8; 28];
    s.read_exact(&mut reply).is_ok()
}

#[test]
fn mac_metadata_files_work_and_stay_out_of_the_catalog() {
    let lib = TestLib::empty("nfsjunk");
    let s = lib.serve_nfs(&[]);
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let f = c.create(&root, "clip.mov", 0o644).await.expect("create");
        c.write(&f, 0, b"video", stable_how::FILE_SYNC)
            .await
            .expect("write");
        for (name, data) in [
            ("._clip.mov", &b"\x00\x05\x16\x07AppleDouble"[..]),
            (".DS_Store", b"\x00\x00\x00\x01Bud1"),
        ] {
            let j = c.create(&root, name, 0o644).await.expect("create junk");
            c.write(&j, 0, data, stable_how::FILE_SYNC)
                .await
                .expect("write junk");
            let j = c.lookup(&root, name).await.expect("lookup junk");
            assert_eq!(c.read_all(&j).await, Ok(data.to_vec()), "{name} reads back");
        }
        // macOS sends names in NFD: they find what was written in NFC.
        let nfc = c
            .create(&root, "Caf\u{e9}.mov", 0o644)
            .await
            .expect("create NFC");
        assert_eq!(c.lookup(&root, "Cafe\u{301}.mov").await, Ok(nfc));
        assert_eq!(
            c.create(&root, "Cafe\u{301}.mov", 0o644).await,
            Err(nfsstat3::NFS3ERR_EXIST)
        );
        c.remove(&root, "Cafe\u{301}.mov")
            .await
            .expect("remove by NFD");
        let mut names = c.names(&root).await.expect("readdir");
        names.sort();
        assert_eq!(
            names,
            [
                ".DS_Store",
                "._clip.mov",
                ".metadata_never_index",
                "clip.mov"
            ],
            "the server's Spotlight marker among them"
        );
    });
    s.stop();
    assert_eq!(lib.node_sizes("clip.mov").len(), 1);
    assert_eq!(lib.node_sizes("._clip.mov").len(), 0);
    assert_eq!(lib.node_sizes(".DS_Store").len(), 0);
    assert_eq!(lib.node_sizes(".metadata_never_index").len(), 0);
}

/// What a Mac's client does when a program removes a file it has open:
/// RENAME to `.nfs.<ticks>.<pid>4.4` in the same folder (xnu's
/// `nfs_sillyrename`), READs and WRITEs through the handle, REMOVE at the
/// last close. What Linux's does differs only in the name.
#[test]
fn a_silly_renamed_file_leaves_the_catalog_reads_until_removed_and_recovery_cleans_up_leftovers() {
    let lib = TestLib::empty("nfssilly");
    let (mac, linux) = (".nfs.0000abcd.00014.4", ".nfs000000000000002a00000001");
    let rt = rt();
    let s = lib.serve_nfs(&[]);
    let (dir, fh, left) = rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let d = c.mkdir(&root, "Project").await.expect("mkdir");
        let f = c.create(&d, "take1.mov", 0o644).await.expect("create");
        c.write(&f, 0, b"take one", stable_how::FILE_SYNC)
            .await
            .expect("write");
        c.rename(&d, "take1.mov", &d, mac)
            .await
            .expect("silly rename");
        c.write(&f, 8, b", still open", stable_how::FILE_SYNC)
            .await
            .expect("a write through the open handle");
        let g = c.create(&d, "take2.mov", 0o644).await.expect("create");
        c.rename(&d, "take2.mov", &d, linux)
            .await
            .expect("silly rename");
        let mut names = c.names(&d).await.expect("readdir");
        names.sort();
        assert_eq!(names, [mac, linux], "the client lists its silly names");
        (d, f, g)
    });
    s.stop();
    // Out of the catalog as a removal would take it, into the side tables.
    for label in ["take1.mov", "take2.mov", mac, linux] {
        assert_eq!(lib.node_sizes(label), Vec::<i64>::new(), "{label}");
    }
    // A client that stopped (or crashed) a day ago never removes its
    // silly name: the next server's recovery pass does. The young one is a
    // client's that may still hold it across the restart: it stays.
    let day = markbase::fs::check::SILLY_GRACE.as_nanos() as i64 + 60_000_000_000;
    let old = lib.catalog_rows(&format!("SELECT ino FROM mb_edges WHERE name = '{linux}'"));
    assert_eq!(old.len(), 1);
    rusqlite::Connection::open(lib.catalog())
        .and_then(|c| {
            c.execute(
                &format!(
                    "UPDATE mb_inodes SET ctime_ns = ctime_ns - {day} WHERE ino = {}",
                    old[0]
                ),
                [],
            )
        })
        .expect("age the leftover");
    let s = lib.serve_nfs(&[]);
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let t = std::time::Instant::now();
        while c.names(&dir).await.expect("readdir").len() > 1 {
            assert!(t.elapsed().as_secs() < 20, "recovery left {linux}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(c.names(&dir).await, Ok(vec![mac.to_string()]));
        assert_eq!(c.getattr(&left).await.err(), Some(nfsstat3::NFS3ERR_STALE));
        // The open file reads back through its handle, across the restart.
        assert_eq!(c.read_all(&fh).await, Ok(b"take one, still open".to_vec()));
        // The last close (the inode goes when the server's lease on it
        // retires, as an unlinked file goes at its last close).
        c.remove(&dir, mac).await.expect("remove");
        assert_eq!(c.names(&dir).await, Ok(vec![]));
    });
    s.stop();
    let (code, text) = common::fsck(&lib.data, &lib.user, &[]);
    assert_eq!(code, 0, "{text}");
}

/// A Mac's Finder sends names in NFD; the catalog keeps the NFC the MarkBase
/// app and Linux tools write, and either spelling finds the entry.
#[test]
fn a_name_sent_in_nfd_is_stored_in_nfc_and_both_spellings_find_it() {
    let lib = TestLib::empty("nfsnfd");
    let s = lib.serve_nfs(&[]);
    let (nfc, nfd) = ("Caf\u{e9} cr\u{e8}me.mov", "Cafe\u{301} cre\u{300}me.mov");
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let d = c.mkdir(&root, "Re\u{301}sume\u{301}").await.expect("mkdir");
        let f = c.create(&d, nfd, 0o644).await.expect("create in NFD");
        assert_eq!(c.lookup(&d, nfd).await, Ok(f.clone()));
        assert_eq!(c.lookup(&d, nfc).await, Ok(f.clone()));
        assert_eq!(c.names(&d).await, Ok(vec![nfc.to_string()]));
        c.rename(&d, nfc, &d, "Cre\u{300}me bru\u{302}le\u{301}e.mov")
            .await
            .expect("rename to an NFD name");
        assert_eq!(
            c.names(&d).await,
            Ok(vec!["Cr\u{e8}me br\u{fb}l\u{e9}e.mov".to_string()])
        );
        assert_eq!(
            c.names(&root).await.map(|mut v| {
                v.retain(|n| !n.starts_with('.'));
                v
            }),
            Ok(vec!["R\u{e9}sum\u{e9}".to_string()])
        );
    });
    s.stop();
    assert_eq!(lib.node_sizes("Cr\u{e8}me br\u{fb}l\u{e9}e.mov"), [0]);
    let mut labels = lib.catalog_rows("SELECT label FROM file_nodes");
    labels.sort();
    assert_eq!(
        labels,
        ["Cr\u{e8}me br\u{fb}l\u{e9}e.mov", "R\u{e9}sum\u{e9}"],
        "the catalog holds each name once, composed"
    );
}

/// What a Mac does for `setxattr` on an NFS mount: it writes the file's
/// attributes into `._name` (AppleDouble). They are the file's attributes
/// through the FUSE mount (`user.com.apple.*` on Linux), and attributes set
/// there come back in `._name` when the Mac looks it up.
#[test]
fn a_macs_appledouble_file_is_the_files_attributes_through_fuse_and_back() {
    use markbase::fs::appledouble::{self, FINDER_INFO};
    let lib = TestLib::empty("nfsad");
    let tags = "com.apple.metadata:_kMDItemUserTags";
    let (red, blue) = (
        b"bplist00\xa1\x01URed\n6".to_vec(),
        b"bplist00\xa1\x01VBlue\n4".to_vec(),
    );
    let quarantine = b"0083;6566d1a2;Safari;".to_vec();
    let mut finder = vec![0u8; 32];
    finder[..8].copy_from_slice(b"MooVTVOD");
    let from_mac = vec![
        (FINDER_INFO.to_string(), finder.clone()),
        (tags.to_string(), red.clone()),
        ("com.apple.quarantine".to_string(), quarantine.clone()),
    ];
    let rt = rt();
    let s = lib.serve_nfs(&[]);
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        c.create(&root, "clip.mov", 0o644).await.expect("create");
        for (name, attrs) in [("._clip.mov", &from_mac), ("._gone.mov", &from_mac)] {
            let ad = c.create(&root, name, 0o644).await.expect("create ._");
            let bytes = appledouble::build(attrs);
            // As a Mac writes it: in pieces, UNSTABLE, then COMMIT.
            let (head, rest) = bytes.split_at(84);
            c.write(&ad, 0, head, stable_how::UNSTABLE)
                .await
                .expect("write");
            c.write(&ad, 84, rest, stable_how::UNSTABLE)
                .await
                .expect("write");
            c.commit(&ad).await.expect("commit");
        }
    });
    s.stop();
    let m = lib.mount(&[]);
    let get = |f: &str, n: &str| {
        let mut buf = vec![0u8; 4096];
        let len = get_xattr(&m.path(f), n, &mut buf);
        assert!(len >= 0, "{f}: {n} is not set");
        buf.truncate(len as usize);
        buf
    };
    assert_eq!(get("clip.mov", &format!("user.{tags}")), red);
    assert_eq!(get("clip.mov", "user.com.apple.quarantine"), quarantine);
    assert_eq!(get("clip.mov", "user.com.apple.FinderInfo"), finder);
    // A tag changed and one set on a new file, through FUSE.
    std::fs::write(m.path("other.mov"), b"frames").expect("write");
    assert_eq!(
        set_xattr(&m.path("clip.mov"), &format!("user.{tags}"), &blue),
        0
    );
    assert_eq!(
        set_xattr(&m.path("other.mov"), &format!("user.{tags}"), &blue),
        0
    );
    m.unmount();
    let s = lib.serve_nfs(&[]);
    rt.block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let root = c.root.clone();
        let clip = c.lookup(&root, "._clip.mov").await.expect("._clip.mov");
        let mut want = vec![
            (FINDER_INFO.to_string(), finder.clone()),
            (tags.to_string(), blue.clone()),
            ("com.apple.quarantine".to_string(), quarantine.clone()),
        ];
        want.sort();
        let mut got = appledouble::parse(&c.read_all(&clip).await.expect("read"))
            .expect("an AppleDouble file");
        got.sort();
        assert_eq!(
            got, want,
            "._clip.mov says what clip.mov's attributes are now"
        );
        let other = c
            .lookup(&root, "._other.mov")
            .await
            .expect("._other.mov made");
        assert_eq!(
            appledouble::parse(&c.read_all(&other).await.expect("read")),
            Ok(vec![(tags.to_string(), blue.clone())])
        );
        // No attributes, no `._` file.
        assert_eq!(
            c.lookup(&root, "._plain.mov").await.err(),
            Some(nfsstat3::NFS3ERR_NOENT)
        );
    });
    s.stop();
    // `._` files stay out of the catalog; one whose file is gone stays as it was.
    for n in ["._clip.mov", "._other.mov", "._gone.mov"] {
        assert_eq!(lib.node_sizes(n), Vec::<i64>::new(), "{n}");
    }
    assert_eq!(lib.node_sizes("clip.mov").len(), 1);
}

#[test]
fn status_shows_a_server_and_sigterm_commits_and_stops_it() {
    let lib = TestLib::empty("nfsstatus");
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let s = lib.serve_nfs(&["--metrics", &metrics]);
    let status = std::process::Command::new(common::bin())
        .args(["fuse", "--status", "--json"])
        .env("MARKBASE_RUNTIME_DIR", lib.tmp.path().join("run"))
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let row = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["user"] == "nfsstatus"))
        .unwrap_or_else(|| panic!("no row for the server: {v}"));
    assert_eq!(row["backend"], "nfs");
    assert_eq!(row["state"], "serving");
    assert_eq!(row["mountpoint"], format!("nfs://{}/", s.addr));
    assert_eq!(row["address"], s.addr.to_string());
    // Written UNSTABLE and never committed: SIGTERM commits it.
    rt().block_on(async {
        let mut c = Client::connect(s.addr).await.expect("connect");
        let f = c
            .create(&c.root.clone(), "late.bin", 0o644)
            .await
            .expect("create");
        c.write(&f, 0, &[7u8; 5000], stable_how::UNSTABLE)
            .await
            .expect("write");
    });
    // The server's requests, counted as a FUSE mount's are.
    let m = common::scrape(&format!("http://{metrics}/metrics"));
    assert_eq!(common::metric(&m, "markbase_up{user=nfsstatus}"), 1.0);
    assert!(common::metric(&m, "markbase_requests_total{op=create,user=nfsstatus}") >= 1.0);
    assert!(common::metric(&m, "markbase_written_bytes_total{user=nfsstatus}") >= 5000.0);
    s.stop();
    assert_eq!(lib.node_sizes("late.bin"), [5000]);
    // (Its address stays noted, for the next server: `run/addresses`.)
    assert!(
        !lib.tmp.path().join("run").read_dir().is_ok_and(|d| d
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json"))),
        "the runtime record is gone"
    );
}

#[test]
fn serve_all_runs_one_server_per_user_and_each_reaches_only_its_own_library() {
    use std::io::{BufRead, BufReader};
    let lib = TestLib::empty("nfsall1");
    common::assert_success(&lib.markbase(&["library", "create", "--user", "nfsall2"]));
    let mut child = std::process::Command::new(common::bin())
        .arg("--data-dir")
        .arg(&lib.data)
        .args(["nfs", "--serve", "--all"])
        .env("MARKBASE_RUNTIME_DIR", lib.tmp.path().join("run"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    // Stopped (with its servers) even if an assertion below fails.
    struct StopOnDrop(u32);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0 as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let _stop = StopOnDrop(child.id());
    let mut servers = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).expect("a line per user");
        let mut w = line.split_whitespace();
        let (user, url) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
        let addr: std::net::SocketAddr = url
            .trim_start_matches("nfs://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"));
        servers.insert(user.to_string(), addr);
    }
    let (a, b) = (servers["nfsall1"], servers["nfsall2"]);
    assert_ne!(a, b);
    rt().block_on(async {
        let mut ca = Client::connect(a).await.expect("connect 1");
        let root = ca.root.clone();
        ca.create(&root, "only-in-1.mov", 0o644)
            .await
            .expect("create");
        let mut cb = Client::connect(b).await.expect("connect 2");
        let marker = vec![".metadata_never_index".to_string()];
        assert_eq!(cb.names(&cb.root.clone()).await, Ok(marker));
        // A handle of one library is stale at the other's server.
        let h = ca.lookup(&root, "only-in-1.mov").await.expect("lookup");
        assert_eq!(cb.getattr(&h).await.err(), Some(nfsstat3::NFS3ERR_STALE));
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let st = child.wait().expect("wait");
    assert!(st.success(), "--all stops cleanly on SIGTERM: {st:?}");
    assert_eq!(lib.node_sizes("only-in-1.mov").len(), 1);
}

#[test]
fn mount_backend_nfs_mounts_with_the_os_client_or_says_in_one_line_why_not() {
    let lib = TestLib::empty("nfsmount");
    let dir = lib.tmp.path().join("mnt");
    std::fs::create_dir(&dir).expect("mkdir");
    let d = dir.to_str().expect("utf-8");
    if let Err(why) = markbase::platform::nfs_client::available() {
        // This machine's kernel has no NFS client: refused before anything
        // starts, in one line, and nothing left running or recorded.
        let out = lib.markbase(&[
            "fuse",
            "--mount",
            "--user",
            "nfsmount",
            "--dir",
            d,
            "--backend",
            "nfs",
        ]);
        assert!(!out.status.success());
        let msg = String::from_utf8_lossy(&out.stderr);
        assert_eq!(msg.trim().lines().count(), 1, "{msg}");
        assert!(msg.contains(&why.to_string()), "{msg}");
        assert!(msg.contains("markbase nfs --serve"), "{msg}");
        let st = lib.markbase(&["fuse", "--status", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
        assert!(
            !rows
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["user"] == "nfsmount")),
            "{rows}"
        );
        return;
    }
    // A machine with an NFS client: mounted in one step, written through,
    // shown by --status, unmounted by --unmount with everything committed.
    let m = lib.mount_at(&dir, &["--backend", "nfs"]);
    std::fs::write(m.path("clip.mov"), stream(7, 3 << 20)).expect("write");
    let st = lib.markbase(&["fuse", "--status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
    let row = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["user"] == "nfsmount"))
        .cloned()
        .unwrap_or_else(|| panic!("no row: {rows}"));
    assert_eq!(
        (row["backend"].as_str(), row["state"].as_str()),
        (Some("nfs"), Some("mounted"))
    );
    m.unmount();
    assert_eq!(lib.node_sizes("clip.mov"), vec![3 << 20]);
}
