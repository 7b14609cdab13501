//! NFS test helpers: a library served by the real binary (`markbase nfs
//! --serve`, stopped on drop even when a test fails), libnfs URLs for it,
//! and a small `nfs3_client` wrapper whose calls return the NFS status.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::Nfs3ConnectionBuilder;

use super::{bin, TestLib};

/// A running `markbase nfs --serve`.
pub struct Served {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// What it prints, kept open while it runs.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl TestLib {
    /// Serve this library over NFS on loopback (a free port), with `extra`
    /// arguments; returns once the server answers.
    pub fn serve_nfs(&self, extra: &[&str]) -> Served {
        self.serve_nfs_on("127.0.0.1:0", extra)
    }

    pub fn serve_nfs_on(&self, listen: &str, extra: &[&str]) -> Served {
        let mut args = vec!["--listen", listen];
        args.extend_from_slice(extra);
        self.serve_nfs_with(&args)
    }

    /// `markbase nfs --serve --user U` and `args` (no `--listen`: the
    /// server's own choice).
    pub fn serve_nfs_with(&self, args: &[&str]) -> Served {
        let logs = self.data.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("nfs-{}.log", self.user)))
            .expect("log file");
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(&self.data)
            .args(["nfs", "--serve", "--user", &self.user])
            .args(args)
            .env("MARKBASE_RUNTIME_DIR", self.tmp.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn markbase nfs");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut out = BufReader::new(out);
        let _ = out.read_line(&mut line);
        let Some(addr) = markbase::nfs::service::addr_in_ready_line(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("markbase nfs did not start: {line:?}");
        };
        Served {
            child: Some(child),
            addr,
            _stdout: out,
        }
    }
}

impl Served {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A libnfs URL for `path` (from the export's root, `/` for the root).
    pub fn url(&self, path: &str) -> String {
        let p = self.port();
        format!(
            "nfs://127.0.0.1//{}?version=3&nfsport={p}&mountport={p}",
            path.trim_start_matches('/')
        )
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) {
        let ok = self.terminate();
        assert!(ok, "markbase nfs did not exit cleanly on SIGTERM");
    }

    /// SIGKILL: what a crash leaves.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Run `nfs-ls`, `nfs-cp` or `nfs-cat` with `args`; their stdout, or a
/// panic with their stderr.
pub fn libnfs(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (apt-get install libnfs-utils): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

type Conn = nfs3_client::Nfs3Connection<TokioIo<tokio::net::TcpStream>>;

/// One NFSv3 client connection (MOUNT done), with short calls.
pub struct Client {
    pub conn: Conn,
    pub root: nfs_fh3,
}

/// The NFS status of a call that failed, or what it returned.
pub type R<T> = Result<T, nfsstat3>;

fn res<T, E>(r: Nfs3Result<T, E>) -> R<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

fn dirop<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: name.as_bytes().into(),
    }
}

fn fh_of(p: post_op_fh3) -> nfs_fh3 {
    match p {
        Nfs3Option::Some(fh) => fh,
        Nfs3Option::None => panic!("no file handle in the reply"),
    }
}

impl Client {
    /// Connect to `addr` (MOUNT of `/`, then NFS on the same port).
    pub async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let conn = Nfs3ConnectionBuilder::new(TokioConnector, addr.ip().to_string(), "/")
            .connect_from_privileged_port(false)
            .mount_port(addr.port())
            .nfs3_port(addr.port())
            .mount()
            .await
            .map_err(|e| e.to_string())?;
        let root = conn.root_nfs_fh3();
        Ok(Client { conn, root })
    }

    pub async fn lookup(&mut self, dir: &nfs_fh3, name: &str) -> R<nfs_fh3> {
        let r = self
            .conn
            .lookup(&LOOKUP3args {
                what: dirop(dir, name),
            })
            .await;
        res(r.expect("rpc")).map(|ok| ok.object)
    }

    pub async fn getattr(&mut self, fh: &nfs_fh3) -> R<fattr3> {
        let r = self
            .conn
            .getattr(&GETATTR3args { object: fh.clone() })
            .await;
        res(r.expect("rpc")).map(|ok| ok.obj_attributes)
    }

    pub async fn setattr(&mut self, fh: &nfs_fh3, new_attributes: sattr3) -> R<()> {
        let args = SETATTR3args {
            object: fh.clone(),
            new_attributes,
            guard: Nfs3Option::None,
        };
        res(self.conn.setattr(&args).await.expect("rpc")).map(|_| ())
    }

    pub async fn create(&mut self, dir: &nfs_fh3, name: &str, mode: u32) -> R<nfs_fh3> {
        let how = createhow3::GUARDED(sattr3 {
            mode: Nfs3Option::Some(mode),
            ..Default::default()
        });
        self.create_how(dir, name, how).await
    }

    pub async fn create_how(&mut self, dir: &nfs_fh3, name: &str, how: createhow3) -> R<nfs_fh3> {
        let args = CREATE3args {
            where_: dirop(dir, name),
            how,
        };
        res(self.conn.create(&args).await.expect("rpc")).map(|ok| fh_of(ok.obj))
    }

    pub async fn mkdir(&mut self, dir: &nfs_fh3, name: &str) -> R<nfs_fh3> {
        let args = MKDIR3args {
            where_: dirop(dir, name),
            attributes: sattr3 {
                mode: Nfs3Option::Some(0o755),
                ..Default::default()
            },
        };
        res(self.conn.mkdir(&args).await.expect("rpc")).map(|ok| fh_of(ok.obj))
    }

    /// WRITE; the count written and the write verifier.
    pub async fn write(
        &mut self,
        fh: &nfs_fh3,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> R<(u32, [u8; 8])> {
        let args = WRITE3args {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable,
            data: Opaque::borrowed(data),
        };
        res(self.conn.write(&args).await.expect("rpc")).map(|ok| (ok.count, ok.verf.0))
    }

    /// COMMIT; the write verifier.
    pub async fn commit(&mut self, fh: &nfs_fh3) -> R<[u8; 8]> {
        let args = COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        };
        res(self.conn.commit(&args).await.expect("rpc")).map(|ok| ok.verf.0)
    }

    /// READ; the bytes and the EOF flag.
    pub async fn read(&mut self, fh: &nfs_fh3, offset: u64, count: u32) -> R<(Vec<u8>, bool)> {
        let args = READ3args {
            file: fh.clone(),
            offset,
            count,
        };
        res(self.conn.read(&args).await.expect("rpc")).map(|ok| (ok.data.to_vec(), ok.eof))
    }

    /// The whole file, in 1 MiB READs.
    pub async fn read_all(&mut self, fh: &nfs_fh3) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (d, eof) = self.read(fh, out.len() as u64, 1 << 20).await?;
            out.extend_from_slice(&d);
            if eof || d.is_empty() {
                return Ok(out);
            }
        }
    }

    pub async fn remove(&mut self, dir: &nfs_fh3, name: &str) -> R<()> {
        let args = REMOVE3args {
            object: dirop(dir, name),
        };
        res(self.conn.remove(&args).await.expect("rpc")).map(|_| ())
    }

    pub async fn rmdir(&mut self, dir: &nfs_fh3, name: &str) -> R<()> {
        let args = RMDIR3args {
            object: dirop(dir, name),
        };
        res(self.conn.rmdir(&args).await.expect("rpc")).map(|_| ())
    }

    pub async fn rename(&mut self, from: &nfs_fh3, a: &str, to: &nfs_fh3, b: &str) -> R<()> {
        let args = RENAME3args {
            from: dirop(from, a),
            to: dirop(to, b),
        };
        res(self.conn.rename(&args).await.expect("rpc")).map(|_| ())
    }

    pub async fn link(&mut self, fh: &nfs_fh3, dir: &nfs_fh3, name: &str) -> R<()> {
        let args = LINK3args {
            file: fh.clone(),
            link: dirop(dir, name),
        };
        res(self.conn.link(&args).await.expect("rpc")).map(|_| ())
    }

    pub async fn symlink(&mut self, dir: &nfs_fh3, name: &str, target: &str) -> R<nfs_fh3> {
        let args = SYMLINK3args {
            where_: dirop(dir, name),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: target.as_bytes().into(),
            },
        };
        res(self.conn.symlink(&args).await.expect("rpc")).map(|ok| fh_of(ok.obj))
    }

    pub async fn readlink(&mut self, fh: &nfs_fh3) -> R<Vec<u8>> {
        let args = READLINK3args {
            symlink: fh.clone(),
        };
        res(self.conn.readlink(&args).await.expect("rpc")).map(|ok| ok.data.as_ref().to_vec())
    }

    /// One READDIR page: (name, cookie) pairs, the verifier, EOF.
    pub async fn readdir_page(
        &mut self,
        dir: &nfs_fh3,
        cookie: u64,
        verifier: [u8; 8],
        count: u32,
    ) -> R<(Vec<(String, u64)>, [u8; 8], bool)> {
        let args = READDIR3args {
            dir: dir.clone(),
            cookie,
            cookieverf: cookieverf3(verifier),
            count,
        };
        res(self.conn.readdir(&args).await.expect("rpc")).map(|ok| {
            let names = ok
                .reply
                .entries
                .0
                .iter()
                .map(|e| {
                    (
                        String::from_utf8_lossy(e.name.as_ref()).into_owned(),
                        e.cookie,
                    )
                })
                .collect();
            (names, ok.cookieverf.0, ok.reply.eof)
        })
    }

    /// PATHCONF of `fh`: (most links, longest name).
    pub async fn pathconf(&mut self, fh: &nfs_fh3) -> R<(u32, u32)> {
        let args = PATHCONF3args { object: fh.clone() };
        res(self.conn.pathconf(&args).await.expect("rpc")).map(|ok| (ok.linkmax, ok.name_max))
    }

    /// Every name in `dir`, page by page.
    pub async fn names(&mut self, dir: &nfs_fh3) -> R<Vec<String>> {
        let mut l = Listing::new(dir, 8192, false);
        while !l.next_page(self).await? {}
        Ok(l.seen)
    }
}

/// A READDIR listing of one folder, page by page: the cookie and verifier
/// carried from page to page (or the verifier always zero, as a Mac's
/// client sends it when it resumes after the folder changed), and every
/// name seen so far.
pub struct Listing {
    dir: nfs_fh3,
    count: u32,
    zero_verifier: bool,
    cookie: u64,
    verifier: [u8; 8],
    pub seen: Vec<String>,
    pub pages: usize,
}

impl Listing {
    pub fn new(dir: &nfs_fh3, count: u32, zero_verifier: bool) -> Listing {
        Listing {
            dir: dir.clone(),
            count,
            zero_verifier,
            cookie: 0,
            verifier: [0; 8],
            seen: Vec::new(),
            pages: 0,
        }
    }

    /// Ask for the next page through `c`; whether it was the last.
    pub async fn next_page(&mut self, c: &mut Client) -> R<bool> {
        let verifier = if self.zero_verifier {
            [0; 8]
        } else {
            self.verifier
        };
        let (page, v, eof) = c
            .readdir_page(&self.dir, self.cookie, verifier, self.count)
            .await?;
        self.verifier = v;
        self.pages += 1;
        if let Some((_, k)) = page.last() {
            self.cookie = *k;
        }
        self.seen.extend(page.into_iter().map(|(n, _)| n));
        Ok(eof)
    }
}
