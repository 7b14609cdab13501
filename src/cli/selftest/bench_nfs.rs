//! `markbase fuse --test --backend nfs`: the plain throughput test through
//! the built-in NFS server instead of a FUSE mount, with the same JSON
//! fields (`write_ratio`, `read_ratio` against the disk, in the same run).
//!
//! The server is the real binary (`markbase nfs --serve`, its own process);
//! the client is `nfs3_client` with [`STREAMS`] connections, each with one
//! 1 MiB request in flight, as an NFS client with read-ahead and write-behind
//! keeps several going. Writes are UNSTABLE and end with COMMIT, which
//! makes them durable, as the disk's side ends with fsync. Pages are dropped
//! before the read (as root), so both sides read from the disk.
//!
//! `--peer-rclone PATH` also measures `rclone serve nfs` serving the same
//! directory to the same client (with `--vfs-cache-mode full`, which its
//! documentation asks for to write) (rclone's server answers MOUNT but not its
//! export list, so libnfs cannot be the client there).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::Nfs3ConnectionBuilder;
use serde::Serialize;

/// Connections, each with one request in flight.
pub const STREAMS: usize = 4;
const BLOCK: usize = 1 << 20;

pub(crate) type Conn = nfs3_client::Nfs3Connection<TokioIo<tokio::net::TcpStream>>;

/// One side's figures.
#[derive(Serialize)]
pub struct Side {
    target: String,
    write_mb_s: f64,
    read_mb_s: f64,
}

/// A server process, stopped (SIGTERM, then SIGKILL after 10 s) on drop.
pub(crate) struct Server(Child);

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `markbase nfs --serve` for `user` of `data_dir`; its address.
pub(crate) fn serve(data_dir: &Path, user: &str) -> Result<(Server, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["nfs", "--serve", "--user", user])
        .env("MARKBASE_LOG", "warn")
        // Its own process group: Ctrl-C reaches this test, which stops it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start markbase nfs --serve")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let server = Server(child);
    let addr = markbase::nfs::service::addr_in_ready_line(&line)
        .with_context(|| format!("markbase nfs did not start: {line:?}"))?;
    Ok((server, addr))
}

/// Start `rclone serve nfs` on `dir`; its address once it answers.
fn serve_rclone(rclone: &Path, dir: &Path, cache: &Path) -> Result<(Server, SocketAddr)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let child = Command::new(rclone)
        .args(["serve", "nfs"])
        .arg(dir)
        // Writing through rclone's NFS server needs its VFS cache ("full"
        // is what its documentation recommends); it lives in a temporary
        // directory of its own.
        .args(["--addr", &addr.to_string(), "--vfs-cache-mode", "full"])
        .arg("--cache-dir")
        .arg(cache)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {} serve nfs", rclone.display()))?;
    let server = Server(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("rclone serve nfs did not answer on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((server, addr))
}

pub(crate) async fn connect(addr: SocketAddr) -> Result<Conn> {
    Nfs3ConnectionBuilder::new(TokioConnector, addr.ip().to_string(), "/")
        .connect_from_privileged_port(false)
        .mount_port(addr.port())
        .nfs3_port(addr.port())
        .mount()
        .await
        .map_err(|e| anyhow::anyhow!("NFS mount of {addr}: {e}"))
}

pub(crate) fn ok<T, E>(r: Nfs3Result<T, E>, what: &str) -> Result<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((s, _)) => bail!("{what}: {s:?}"),
    }
}

/// CREATE `name` in `dir` (mode 0644, replacing what is there); its handle
/// (from a LOOKUP if the answer carries none).
async fn create(c: &mut Conn, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3> {
    let what = || diropargs3 {
        dir: dir.clone(),
        name: name.as_bytes().into(),
    };
    let args = CREATE3args {
        where_: what(),
        how: createhow3::UNCHECKED(sattr3 {
            mode: Nfs3Option::Some(0o644),
            ..Default::default()
        }),
    };
    match ok(c.create(&args).await?, "create")?.obj {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => {
            Ok(ok(c.lookup(&LOOKUP3args { what: what() }).await?, "lookup")?.object)
        }
    }
}

/// Write `size` bytes to a new file `name` in the export's root over
/// [`STREAMS`] connections, COMMIT; drop caches; read it back the same way.
async fn write_read(target: &str, addr: SocketAddr, name: &str, size: u64) -> Result<Side> {
    let mut conns = Vec::new();
    for _ in 0..STREAMS {
        conns.push(connect(addr).await?);
    }
    let root = conns[0].root_nfs_fh3();
    let fh = create(&mut conns[0], &root, name).await?;
    let blocks = size.div_ceil(BLOCK as u64);
    let data = Arc::new(vec![0x5Au8; BLOCK]);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        let (fh, data) = (fh.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = k as u64;
            while b < blocks && !crate::cli::interrupt::interrupted() {
                let off = b * BLOCK as u64;
                let n = (size - off).min(BLOCK as u64) as usize;
                let w = WRITE3args {
                    file: fh.clone(),
                    offset: off,
                    count: n as u32,
                    stable: stable_how::UNSTABLE,
                    data: Opaque::borrowed(&data[..n]),
                };
                ok(c.write(&w).await?, "write")?;
                b += STREAMS as u64;
            }
            anyhow::Ok(c)
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await??);
    }
    let commit = COMMIT3args {
        file: fh.clone(),
        offset: 0,
        count: 0,
    };
    ok(conns[0].commit(&commit).await?, "commit")?;
    let write_mb_s = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    nix::unistd::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        let fh = fh.clone();
        tasks.push(tokio::spawn(async move {
            let (mut b, mut got) = (k as u64, 0u64);
            while b < blocks && !crate::cli::interrupt::interrupted() {
                let r = READ3args {
                    file: fh.clone(),
                    offset: b * BLOCK as u64,
                    count: BLOCK as u32,
                };
                got += ok(c.read(&r).await?, "read")?.data.len() as u64;
                b += STREAMS as u64;
            }
            anyhow::Ok((c, got))
        }));
    }
    let mut total = 0;
    let mut conns = Vec::new();
    for t in tasks {
        let (c, got) = t.await??;
        total += got;
        conns.push(c);
    }
    let read_mb_s = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    if total != size {
        bail!("{target}: read {total} bytes of {size}");
    }
    let rm = REMOVE3args {
        object: diropargs3 {
            dir: root,
            name: name.as_bytes().into(),
        },
    };
    ok(conns[0].remove(&rm).await?, "remove")?;
    Ok(Side {
        target: target.into(),
        write_mb_s,
        read_mb_s,
    })
}

/// How long closing a small file takes, as a Mac's client closes every
/// file it changed: CREATE, one 4 KiB UNSTABLE WRITE, COMMIT, timed from
/// the CREATE to COMMIT's answer (on the disk: create, write, `fsync`).
#[derive(Serialize)]
pub struct Closes {
    target: String,
    clients: usize,
    files: usize,
    p50_ms: f64,
    p99_ms: f64,
}

/// Files closed in the closes test, in all.
pub const CLOSES: usize = 1000;
const SMALL: usize = 4096;

impl Closes {
    fn of(target: &str, clients: usize, mut ms: Vec<f64>) -> Closes {
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| {
            ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        Closes {
            target: target.into(),
            clients,
            files: ms.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

/// [`CLOSES`] small files closed through the server by `clients` clients
/// at once (COMMITs that arrive together), each on its own connection.
async fn nfs_closes(addr: SocketAddr, clients: usize) -> Result<Closes> {
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut c = connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let root = c.root_nfs_fh3();
            let data = vec![0x5Au8; SMALL];
            let (mut ms, mut names) = (Vec::new(), Vec::new());
            for i in 0..CLOSES / clients {
                if crate::cli::interrupt::interrupted() {
                    break;
                }
                let name = format!("markbase-close-{}-{k}-{i}.bin", std::process::id());
                let t = Instant::now();
                let fh = create(&mut c, &root, &name).await?;
                let w = WRITE3args {
                    file: fh.clone(),
                    offset: 0,
                    count: SMALL as u32,
                    stable: stable_how::UNSTABLE,
                    data: Opaque::borrowed(&data),
                };
                ok(c.write(&w).await?, "write")?;
                let commit = COMMIT3args {
                    file: fh,
                    offset: 0,
                    count: 0,
                };
                ok(c.commit(&commit).await?, "commit")?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                names.push(name);
            }
            for name in names {
                let rm = REMOVE3args {
                    object: diropargs3 {
                        dir: root.clone(),
                        name: name.as_bytes().into(),
                    },
                };
                ok(c.remove(&rm).await?, "remove")?;
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Closes::of("nfs", clients, all))
}

/// The same on the disk: `writers` threads, each creating, writing 4 KiB
/// and `fsync`ing its files in `dir`.
fn disk_closes(dir: &Path, writers: usize) -> Result<Closes> {
    use std::io::Write;
    let all = std::thread::scope(|s| {
        let hands: Vec<_> = (0..writers)
            .map(|k| {
                s.spawn(move || {
                    let data = vec![0x5Au8; SMALL];
                    let mut ms = Vec::new();
                    for i in 0..CLOSES / writers {
                        let p = dir.join(format!("markbase-close-{k}-{i}.bin"));
                        let t = Instant::now();
                        let mut f = std::fs::File::create(&p)?;
                        f.write_all(&data)?;
                        f.sync_all()?;
                        drop(f);
                        ms.push(t.elapsed().as_secs_f64() * 1e3);
                        std::fs::remove_file(&p)?;
                    }
                    std::io::Result::Ok(ms)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hands {
            match h.join() {
                Ok(r) => all.extend(r?),
                Err(_) => return Err(std::io::Error::other("a writer panicked")),
            }
        }
        Ok(all)
    })?;
    Ok(Closes::of("disk", writers, all))
}

/// The test: through the NFS server, on the disk, and (with `rclone`)
/// through `rclone serve nfs` on the disk's directory; one table or JSON.
pub fn throughput(
    data_dir: &Path,
    user: Option<&str>,
    size: u64,
    json: bool,
    rclone: Option<&Path>,
) -> Result<()> {
    let (tmp, lib) = crate::cli::selftest::bench::test_library(data_dir, user)?;
    let backing = crate::cli::selftest::bench::native_dir(&lib)?;
    let name = format!("markbase-test-{}.bin", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (nfs, mut closes) = {
        let (_server, addr) = serve(&lib.data_dir, &lib.user)?;
        let nfs = rt.block_on(write_read("nfs", addr, &name, size))?;
        let mut closes = Vec::new();
        for clients in [1, STREAMS] {
            closes.push(rt.block_on(nfs_closes(addr, clients))?);
        }
        (nfs, closes)
    };
    let disk = crate::cli::selftest::bench::write_read("disk", &backing.join(&name), size)?;
    for writers in [1, STREAMS] {
        closes.push(disk_closes(&backing, writers)?);
    }
    let disk = Side {
        target: "disk".into(),
        write_mb_s: disk.write_mb_s,
        read_mb_s: disk.read_mb_s,
    };
    let peer = match rclone {
        Some(r) => {
            let cache = tmp.path().join("rclone-cache");
            let (_server, addr) = serve_rclone(r, &backing, &cache)?;
            Some(rt.block_on(write_read("rclone", addr, &name, size))?)
        }
        None => None,
    };
    let _ = std::fs::remove_dir(&backing);
    if json {
        let mut v = serde_json::json!({
            "size": size, "backend": "nfs", "streams": STREAMS,
            "mount": nfs, "disk": disk,
            "write_ratio": nfs.write_mb_s / disk.write_mb_s,
            "read_ratio": nfs.read_mb_s / disk.read_mb_s,
            "closes": closes,
        });
        if let Some(p) = &peer {
            v["rclone"] = serde_json::to_value(p)?;
            v["rclone_write_ratio"] = (p.write_mb_s / disk.write_mb_s).into();
            v["rclone_read_ratio"] = (p.read_mb_s / disk.read_mb_s).into();
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "{:<8} {:>12} {:>12} {:>8}",
        "", "nfs MB/s", "disk MB/s", "ratio"
    );
    for (what, n, d) in [
        ("write", nfs.write_mb_s, disk.write_mb_s),
        ("read", nfs.read_mb_s, disk.read_mb_s),
    ] {
        println!("{what:<8} {n:>12.0} {d:>12.0} {:>7.2}x", n / d);
    }
    println!(
        "closing {CLOSES} small files (nfs: CREATE, 4 KiB UNSTABLE WRITE, COMMIT; disk: create, write, fsync):"
    );
    for c in &closes {
        println!(
            "  {:<5} {} at once: p50 {:.2} ms, p99 {:.2} ms",
            c.target, c.clients, c.p50_ms, c.p99_ms
        );
    }
    if let Some(p) = peer {
        println!(
            "rclone serve nfs, same client: write {:.0} MB/s ({:.2}x), read {:.0} MB/s ({:.2}x)",
            p.write_mb_s,
            p.write_mb_s / disk.write_mb_s,
            p.read_mb_s,
            p.read_mb_s / disk.read_mb_s
        );
    }
    Ok(())
}
