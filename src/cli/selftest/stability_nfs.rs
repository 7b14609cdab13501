//! `markbase fuse --test --stability --backend nfs`: the soak through the
//! built-in NFS server. Each user's library is served by its own
//! `markbase nfs --serve` process (the real binary), and each worker is an
//! NFS client of its own (`nfs3_client`, one connection): big files written
//! UNSTABLE in 1 MiB WRITEs and made durable by COMMIT, read back in 1 MiB
//! READs and checked byte by byte, small files made, listed (READDIR, page by
//! page), checked and removed, renames. What the servers' memory does is
//! what the report's memory series shows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Result};
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use crate::cli::selftest::bench_nfs::{connect, ok, serve, Conn, Server};
use crate::cli::selftest::stability::{blocks, fill, Folder, BLOCK};

/// One user's server.
pub struct Served {
    _server: Server,
    pid: u32,
    pub addr: SocketAddr,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Serve `names` of `data_dir`, or with no names `count` new demo users made
/// in `tmp`; each by its own server process, stopped when dropped.
pub fn serve_users(
    tmp: &Path,
    data_dir: &Path,
    names: &[String],
    count: usize,
) -> Result<Vec<Served>> {
    let (data_dir, names) =
        crate::cli::selftest::bench::users_or_demos(tmp, data_dir, names, count)?;
    names
        .iter()
        .map(|n| {
            let (server, addr) = serve(&data_dir, n)?;
            Ok(Served {
                pid: server.pid(),
                _server: server,
                addr,
            })
        })
        .collect()
}

fn dirop<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: name.as_bytes().into(),
    }
}

/// A worker's folder on an NFS server, through a client of its own.
pub struct NfsFolder {
    rt: tokio::runtime::Runtime,
    conn: Conn,
    addr: SocketAddr,
    root: nfs_fh3,
    name: String,
    /// The worker's folder (`""`) and its subfolders, once looked up.
    dirs: HashMap<String, nfs_fh3>,
}

impl NfsFolder {
    /// Connect to the server at `addr`; the worker's folder is `name` in
    /// the export's root (made by [`Folder::mkdir`]`("")`).
    pub fn new(addr: SocketAddr, name: &str) -> Result<NfsFolder> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let conn = rt.block_on(connect(addr))?;
        let root = conn.root_nfs_fh3();
        Ok(NfsFolder {
            rt,
            conn,
            addr,
            root,
            name: name.to_string(),
            dirs: HashMap::new(),
        })
    }

    /// The folder holding folder `dir`, and `dir`'s name in it.
    fn parent_of(&mut self, dir: &str) -> Result<(nfs_fh3, String)> {
        if dir.is_empty() {
            Ok((self.root.clone(), self.name.clone()))
        } else {
            Ok((self.dir("")?, dir.to_string()))
        }
    }

    /// The handle of folder `dir` (`""`: the worker's).
    fn dir(&mut self, dir: &str) -> Result<nfs_fh3> {
        if let Some(fh) = self.dirs.get(dir) {
            return Ok(fh.clone());
        }
        let (parent, leaf) = self.parent_of(dir)?;
        let args = LOOKUP3args {
            what: dirop(&parent, &leaf),
        };
        let fh = ok(self.rt.block_on(self.conn.lookup(&args))?, "lookup")?.object;
        self.dirs.insert(dir.to_string(), fh.clone());
        Ok(fh)
    }

    /// The folder handle and leaf name of `path` (`a` or `sub/a`).
    fn split<'p>(&mut self, path: &'p str) -> Result<(nfs_fh3, &'p str)> {
        match path.rsplit_once('/') {
            Some((d, leaf)) => Ok((self.dir(d)?, leaf)),
            None => Ok((self.dir("")?, path)),
        }
    }

    fn lookup(&mut self, path: &str) -> Result<nfs_fh3> {
        let (dir, leaf) = self.split(path)?;
        let args = LOOKUP3args {
            what: dirop(&dir, leaf),
        };
        Ok(ok(self.rt.block_on(self.conn.lookup(&args))?, path)?.object)
    }

    fn rmdir(&mut self, parent: &nfs_fh3, name: &str) -> Result<()> {
        let args = RMDIR3args {
            object: dirop(parent, name),
        };
        ok(self.rt.block_on(self.conn.rmdir(&args))?, "rmdir").map(|_| ())
    }
}

impl Folder for NfsFolder {
    fn write_new(&mut self, name: &str, len: u64, seed: u64, durable: bool) -> Result<()> {
        let (dir, leaf) = self.split(name)?;
        let args = CREATE3args {
            where_: dirop(&dir, leaf),
            how: createhow3::UNCHECKED(sattr3 {
                mode: Nfs3Option::Some(0o644),
                size: Nfs3Option::Some(0),
                ..Default::default()
            }),
        };
        let made = ok(self.rt.block_on(self.conn.create(&args))?, name)?;
        let fh = match made.obj {
            Nfs3Option::Some(fh) => fh,
            Nfs3Option::None => self.lookup(name)?,
        };
        let mut buf = vec![0u8; BLOCK];
        for (off, n) in blocks(len) {
            fill(seed, off, &mut buf[..n]);
            let w = WRITE3args {
                file: fh.clone(),
                offset: off,
                count: n as u32,
                stable: stable_how::UNSTABLE,
                data: Opaque::borrowed(&buf[..n]),
            };
            let done = ok(self.rt.block_on(self.conn.write(&w))?, name)?;
            if done.count as usize != n {
                bail!("{name}: WRITE of {n} bytes at {off} wrote {}", done.count);
            }
        }
        if durable {
            let c = COMMIT3args {
                file: fh,
                offset: 0,
                count: 0,
            };
            ok(self.rt.block_on(self.conn.commit(&c))?, name)?;
        }
        Ok(())
    }

    fn read_check(&mut self, name: &str, len: u64, seed: u64, read: &dyn Fn(u64)) -> Result<()> {
        let fh = self.lookup(name)?;
        let g = GETATTR3args { object: fh.clone() };
        let size = ok(self.rt.block_on(self.conn.getattr(&g))?, name)?
            .obj_attributes
            .size;
        if size != len {
            bail!("{}/{name}: size {size}, wrote {len}", self.describe());
        }
        let mut want = vec![0u8; BLOCK];
        for (off, n) in blocks(len) {
            let r = READ3args {
                file: fh.clone(),
                offset: off,
                count: n as u32,
            };
            let got = ok(self.rt.block_on(self.conn.read(&r))?, name)?;
            fill(seed, off, &mut want[..n]);
            if got.data.as_ref() != &want[..n] {
                bail!(
                    "{}/{name}: bytes differ in the block at {off}",
                    self.describe()
                );
            }
            read(n as u64);
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        let (dir, leaf) = self.split(name)?;
        let args = REMOVE3args {
            object: dirop(&dir, leaf),
        };
        ok(self.rt.block_on(self.conn.remove(&args))?, name).map(|_| ())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (a, af) = self.split(from)?;
        let (b, bt) = self.split(to)?;
        let args = RENAME3args {
            from: dirop(&a, af),
            to: dirop(&b, bt),
        };
        ok(self.rt.block_on(self.conn.rename(&args))?, from).map(|_| ())
    }

    fn names(&mut self, dir: &str) -> Result<Vec<String>> {
        let fh = self.dir(dir)?;
        let (mut out, mut cookie, mut verf) = (Vec::new(), 0, cookieverf3::default());
        loop {
            let args = READDIR3args {
                dir: fh.clone(),
                cookie,
                cookieverf: verf,
                count: 8192,
            };
            let page = ok(self.rt.block_on(self.conn.readdir(&args))?, "readdir")?;
            verf = page.cookieverf;
            for e in page.reply.entries.0.iter() {
                cookie = e.cookie;
                let n = String::from_utf8_lossy(e.name.as_ref()).into_owned();
                if n != "." && n != ".." {
                    out.push(n);
                }
            }
            if page.reply.eof {
                return Ok(out);
            }
        }
    }

    fn mkdir(&mut self, dir: &str) -> Result<()> {
        if self.dir(dir).is_ok() {
            return Ok(());
        }
        let (parent, leaf) = self.parent_of(dir)?;
        let args = MKDIR3args {
            where_: dirop(&parent, &leaf),
            attributes: sattr3 {
                mode: Nfs3Option::Some(0o755),
                ..Default::default()
            },
        };
        ok(self.rt.block_on(self.conn.mkdir(&args))?, "mkdir")?;
        Ok(())
    }

    fn remove_all(&mut self) -> Result<()> {
        if self.dir("churn").is_ok() {
            for n in self.names("churn")? {
                self.remove(&format!("churn/{n}"))?;
            }
            let me = self.dir("")?;
            self.rmdir(&me, "churn")?;
        }
        for n in self.names("")? {
            self.remove(&n)?;
        }
        let (root, name) = (self.root.clone(), self.name.clone());
        self.rmdir(&root, &name)
    }

    fn describe(&self) -> String {
        format!("nfs://{}/{}", self.addr, self.name)
    }
}
