//! Attributes: getattr, lookup, readlink and setattr.
//!
//! A record comes from the attribute cache or the catalog; what it says is
//! then corrected by what is live: an open file's size and times from its
//! in-memory state (with passthrough, from the content file itself), a
//! closed file's real size from its content file (the content file wins over
//! a stale catalog size, and the correction is queued for the catalog).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::files::{backing_now, OpenFile};
use super::namespace::check_name;
use super::{Attr, Caller, DropSetId, FsError, FsResult, MarkBaseFs, SetAttrReq, TimeSet};
use crate::catalog::{Ino, Kind, NodeRecord, SetAttrs};

/// How many entries' records a lookup that misses the cache reads with its
/// own (see [`MarkBaseFs::lookup`]); a `readdirplus` reply is about as many.
const LOOKUP_AHEAD: usize = 128;

impl MarkBaseFs {
    /// The content file of a record: first allowed, existing location (cached).
    pub(super) fn content_path(&self, rec: &NodeRecord) -> Option<PathBuf> {
        self.resolve_cached(rec, &mut None)
    }

    /// The metadata of `rec`'s content file: one `stat` whether or not its
    /// path was resolved before (resolving reads it on the way).
    fn content_meta(&self, rec: &NodeRecord) -> Option<std::fs::Metadata> {
        let mut met = None;
        let p = self.resolve_cached(rec, &mut met)?;
        met.or_else(|| std::fs::metadata(p).ok())
    }

    /// [`MarkBaseFs::content_path`]; when it resolves the path now (not
    /// cached), the metadata read on the way goes to `met`.
    fn resolve_cached(
        &self,
        rec: &NodeRecord,
        met: &mut Option<std::fs::Metadata>,
    ) -> Option<PathBuf> {
        let found: Result<_, std::convert::Infallible> =
            self.paths.get_or_load(rec.ino, &self.epoch, || {
                let r = self.store.resolve_meta(
                    rec.content
                        .iter()
                        .chain(rec.locations.iter())
                        .map(|p| p.as_path()),
                );
                Ok(r.map(|(p, m)| {
                    *met = Some(m);
                    p
                }))
            });
        found.unwrap_or_else(|never| match never {})
    }

    pub(super) fn attr_of(&self, rec: &NodeRecord) -> Attr {
        let open = match rec.kind {
            Kind::File => self.open.lock().get(&rec.ino).cloned(),
            _ => None,
        };
        self.attr_with(rec, open, None)
    }

    /// [`MarkBaseFs::attr_of`] given the file's open state and, if cached,
    /// its content size (a `readdirplus` chunk looks those up in one go).
    fn attr_with(
        &self,
        rec: &NodeRecord,
        open: Option<Arc<OpenFile>>,
        size: Option<(u64, u64)>,
    ) -> Attr {
        let mut a = Attr {
            ino: rec.ino,
            size: rec.size,
            blocks: rec.size.div_ceil(512),
            atime: rec.atime,
            mtime: rec.mtime,
            ctime: rec.ctime,
            crtime: rec.btime,
            kind: rec.kind,
            perm: rec.perm,
            nlink: rec.nlink,
            uid: rec.uid,
            gid: rec.gid,
            rdev: rec.rdev,
            blksize: 4096,
        };
        match rec.kind {
            Kind::Dir => {
                a.size = 4096;
                a.blocks = 8;
            }
            Kind::Symlink => {
                a.size = rec.target.as_ref().map_or(0, |t| t.len() as u64);
                a.blocks = 0;
            }
            Kind::File => {
                if let Some(of) = open {
                    // Read under the lock, so concurrent readers apply stats in order.
                    let mut st = of.state.lock();
                    if let Ok(e) = &of.file.extent() {
                        OpenFile::sync_from(&mut st, e);
                        a.blocks = e.blocks;
                    }
                    a.size = st.size;
                    a.mtime = st.mtime;
                    a.ctime = st.ctime;
                    a.nlink = if st.unlinked { 0 } else { a.nlink };
                } else {
                    let real = size.ok_or(()).or_else(|()| {
                        self.sizes.get_or_load(rec.ino, &self.epoch, || {
                            let m = self.content_meta(rec).ok_or(())?;
                            Ok::<_, ()>((m.len(), std::os::unix::fs::MetadataExt::blocks(&m)))
                        })
                    });
                    if let Ok((len, blocks)) = real {
                        a.size = len;
                        a.blocks = blocks;
                        if rec.in_catalog && len != rec.size {
                            self.size_fixes.lock().insert(rec.ino, len);
                        }
                    }
                }
            }
            _ => {
                a.size = 0;
                a.blocks = 0;
            }
        }
        a
    }

    /// Write catalog size corrections found by `getattr` (the content file's
    /// size wins). Called periodically by the daemon and at unmount.
    pub fn flush_size_fixes(&self) -> FsResult<()> {
        let fixes: Vec<(Ino, u64)> = self.size_fixes.lock().drain().collect();
        if !fixes.is_empty() {
            self.catalog.correct_sizes(&fixes)?;
            self.attrs.pop(fixes.iter().map(|f| &f.0));
        }
        Ok(())
    }

    /// An inode's attributes: the cached record (or the catalog's), with an
    /// open file's live size and times, or a closed file's real content size
    /// (a stale catalog size is queued for correction). No lock. ENOENT if
    /// the inode is gone.
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let rec = self.record(ino)?;
        Ok(self.attr_of(&rec))
    }

    /// The attributes of many inodes (a `readdirplus` reply's), those not
    /// cached fetched from the catalog in one go; one result each, in order.
    pub fn getattr_many(&self, inos: &[Ino]) -> Vec<FsResult<Attr>> {
        // The open files and cached content sizes of the lot, each under
        // one lock (per entry, the locks and clock reads added up).
        let open: Vec<Option<Arc<OpenFile>>> = {
            let open = self.open.lock();
            if open.is_empty() {
                vec![None; inos.len()]
            } else {
                inos.iter().map(|i| open.get(i).cloned()).collect()
            }
        };
        let sizes = self.sizes.get_many(inos);
        self.records_many(inos)
            .into_iter()
            .zip(inos)
            .zip(open.into_iter().zip(sizes))
            .map(|((r, ino), (open, size))| match r {
                Some(r) => r.map(|rec| self.attr_with(&rec, open, size)),
                None => self.getattr(*ino),
            })
            .collect()
    }

    /// The records of many inodes, those not cached read from the catalog
    /// in one go (and cached); `None` where the catalog gave no answer.
    fn records_many(&self, inos: &[Ino]) -> Vec<Option<FsResult<Arc<NodeRecord>>>> {
        self.attrs.get_or_load_many(inos, &self.epoch, |miss| {
            self.catalog
                .get_many(miss)
                .into_iter()
                .map(|r| r.map(Arc::new).map_err(FsError::from))
                .collect()
        })
    }

    /// The attributes of `name` in `parent`, found in the rendered listing
    /// (cached). No lock. ENOENT, ENOTDIR, or the name errors of
    /// [`check_name`].
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let name = check_name(name)?;
        let double = super::mac_metadata::described(name).is_some();
        if double {
            // `._name`: what `name`'s Mac attributes are now (its failure
            // is logged: the file is looked up as it is).
            let _ = self.double_for_lookup(parent, name);
        }
        let l = self.listing(parent)?;
        let at = l.position(name).ok_or(FsError::NotFound)?;
        let e = &l.entries[at];
        if double {
            self.note_double(parent, name, e.ino);
        }
        // A lookup whose record is not cached is most often the first of a
        // run in listing order (`ls -l`, a file browser, `find`, `rsync`
        // stat every entry as they read the folder): the records of the
        // entries that follow come from the catalog in the same read.
        if !self.attrs.is_fresh(e.ino) {
            let ahead: Vec<Ino> = l.entries[at..]
                .iter()
                .take(LOOKUP_AHEAD)
                .map(|e| e.ino)
                .collect();
            self.records_many(&ahead);
        }
        // Gone between the listing and now: no such name.
        self.getattr(e.ino).map_err(|e| match e {
            FsError::Stale => FsError::NotFound,
            e => e,
        })
    }

    /// A symlink's target. EINVAL if `ino` is not a symlink.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let rec = self.record(ino)?;
        match (rec.kind, &rec.target) {
            (Kind::Symlink, Some(t)) => Ok(t.clone()),
            _ => Err(FsError::Invalid("not a symlink")),
        }
    }

    /// chmod, chown, truncate and utimens in one catalog transaction. A
    /// truncate resizes the content file first (through the open file if
    /// there is one, and the quota follows); an open file's in-memory size
    /// and times follow too. Drops the inode's cached attributes (the new
    /// record is cached). EISDIR/EINVAL on truncating a folder or special
    /// file, EDQUOT past the quota, EIO if the content file is missing.
    pub fn setattr(&self, ino: Ino, req: &SetAttrReq) -> FsResult<Attr> {
        let now = SystemTime::now();
        let rec = self.record(ino)?;
        let resolve = |t: TimeSet| match t {
            TimeSet::At(t) => t,
            TimeSet::Now => now,
        };
        let mut set = SetAttrs {
            perm: req.mode.map(|m| (m & 0o7777) as u16),
            uid: req.uid,
            gid: req.gid,
            atime: req.atime.map(resolve),
            mtime: req.mtime.map(resolve),
            ctime: Some(now),
            size: None,
        };
        if req.mode.is_none() && rec.kind != Kind::Dir {
            let perm = without_setid(rec.perm, rec.gid, req.drop_setid);
            if perm != rec.perm {
                set.perm = Some(perm);
            }
        }
        let open = self.open.lock().get(&ino).cloned();
        if let Some(size) = req.size {
            if rec.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if rec.kind != Kind::File {
                return Err(FsError::Invalid("truncate of a special file"));
            }
            let old = match &open {
                Some(of) => of.state.lock().size,
                None => rec.size,
            };
            self.quota_resize(old, size)?;
            let done = match &open {
                Some(of) if of.writable => of.file.set_len(size).map_err(FsError::from),
                _ => match self.content_path(&rec) {
                    Some(p) => self
                        .store
                        .open(&p, true)
                        .map_err(FsError::from)
                        .and_then(|f| Ok(f.set_len(size)?)),
                    None => Err(self.missing(&rec)),
                },
            };
            if let Err(e) = done {
                let _ = self.quota_resize(size, old);
                return Err(e);
            }
            set.size = Some(size);
            if req.mtime.is_none() {
                set.mtime = Some(now);
            }
        }
        if let Some(of) = &open {
            let mut st = of.state.lock();
            of.sync_from_backing(&mut st);
            if let Some(s) = set.size {
                st.size = s;
            }
            if st.passthrough {
                st.base = backing_now(&of.file)?;
            }
            if let Some(m) = set.mtime {
                st.mtime = m;
            }
            st.ctime = now;
            if st.unlinked {
                // Nothing to commit for a file with no name left.
                drop(st);
                let mut r = NodeRecord::clone(&rec);
                r.perm = set.perm.unwrap_or(r.perm);
                r.uid = set.uid.unwrap_or(r.uid);
                r.gid = set.gid.unwrap_or(r.gid);
                r.atime = set.atime.unwrap_or(r.atime);
                r.nlink = 0;
                return Ok(self.attr_of(&self.fresh_record(r)));
            }
            if set.size.is_some() {
                st.dirty = false;
                set.size = Some(st.size);
                set.mtime = Some(st.mtime);
            }
        }
        let rec = self.catalog.set_attrs(ino, &set)?;
        self.changed(&[], &[ino]);
        let rec = self.fresh_record(rec);
        Ok(self.attr_of(&rec))
    }

    /// Takes the set-ID bits away that a write by `caller`, without
    /// `CAP_FSETID`, does (FUSE's `WRITE_KILL_SUIDGID`), before the write.
    pub fn drop_setid_for_write(&self, ino: Ino, caller: Caller) -> FsResult<()> {
        let why = DropSetId::By(caller);
        let req = SetAttrReq {
            drop_setid: why,
            ..Default::default()
        };
        let rec = self.record(ino)?;
        if without_setid(rec.perm, rec.gid, why) != rec.perm {
            self.setattr(ino, &req)?;
        }
        Ok(())
    }

    pub(super) fn missing(&self, rec: &NodeRecord) -> FsError {
        FsError::MissingContent {
            ino: rec.ino,
            node_id: rec.node_id.clone(),
        }
    }
}

/// `perm` less the set-ID bits `why` takes away (see [`DropSetId`]).
fn without_setid(perm: u16, file_gid: u32, why: DropSetId) -> u16 {
    const SUID: u16 = 0o4000;
    const SGID: u16 = 0o2000;
    const GROUP_EXEC: u16 = 0o010;
    match why {
        DropSetId::Keep => perm,
        DropSetId::By(c) if perm & GROUP_EXEC != 0 || (c.uid != 0 && c.gid != file_gid) => {
            perm & !(SUID | SGID)
        }
        DropSetId::By(_) => perm & !SUID,
    }
}

#[cfg(test)]
mod tests {
    use super::super::flags::OpenFlags;
    use super::super::test_support::{errno, TestFs, ME};
    use super::*;
    use crate::catalog::ROOT_INO;

    #[test]
    fn lookup_finds_what_was_made_and_nothing_else() {
        let t = TestFs::new();
        let f = t.file("clip.mov", b"abc");
        let a =
            t.fs.lookup(ROOT_INO, OsStr::new("clip.mov"))
                .expect("lookup");
        assert_eq!((a.ino, a.size, a.kind), (f.ino, 3, Kind::File));
        assert_eq!(
            errno(t.fs.lookup(ROOT_INO, OsStr::new("nope"))),
            libc::ENOENT
        );
        assert_eq!(errno(t.fs.getattr(987_654)), libc::ENOENT);
    }

    #[test]
    fn readlink_only_on_symlinks() {
        let t = TestFs::new();
        let l =
            t.fs.symlink(ROOT_INO, OsStr::new("l"), b"../target", ME)
                .expect("symlink");
        assert_eq!(t.fs.readlink(l.ino).ok(), Some(b"../target".to_vec()));
        assert_eq!(l.size, 9);
        assert_eq!(errno(t.fs.readlink(ROOT_INO)), libc::EINVAL);
    }

    #[test]
    fn truncate_and_chmod() {
        let t = TestFs::new();
        let f = t.file("f", b"0123456789");
        let req = SetAttrReq {
            size: Some(4),
            mode: Some(0o600),
            ..Default::default()
        };
        let a = t.fs.setattr(f.ino, &req).expect("setattr");
        assert_eq!((a.size, a.perm), (4, 0o600));
        // The catalog has it too (a fresh core over the same catalog).
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(4));
        let d = t.mkdir(ROOT_INO, "d");
        let trunc = SetAttrReq {
            size: Some(0),
            ..Default::default()
        };
        assert_eq!(errno(t.fs.setattr(d.ino, &trunc)), libc::EISDIR);
    }

    #[test]
    fn an_open_files_size_is_live_before_it_is_committed() {
        let t = TestFs::new();
        let f = t.file("grow", b"");
        let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
        t.fs.write(fh, 0, &[7u8; 5000]).expect("write");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(5000));
        // Not yet in the catalog: write() never waits for it.
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(0));
        t.fs.flush(fh).expect("flush");
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(5000));
        t.fs.release(fh).expect("release");
    }

    #[test]
    fn a_link_moves_an_open_files_ctime() {
        let t = TestFs::new();
        let f = t.file("linked", b"");
        let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
        t.fs.write(fh, 0, b"x").expect("write");
        let before = t.fs.getattr(f.ino).expect("getattr").ctime;
        std::thread::sleep(std::time::Duration::from_millis(5));
        t.fs.link(f.ino, ROOT_INO, OsStr::new("again"))
            .expect("link");
        let after = t.fs.getattr(f.ino).expect("getattr").ctime;
        assert!(after > before, "{before:?} -> {after:?}");
        // The commit at close keeps it.
        t.fs.release(fh).expect("release");
        let rec = t.fs.catalog().get(f.ino).expect("get");
        assert!(rec.ctime >= after, "{:?} < {after:?}", rec.ctime);
    }

    #[test]
    fn the_content_files_size_wins_over_a_stale_catalog() {
        let t = TestFs::new();
        let f = t.file("stale", b"12345");
        let rec = t.fs.catalog().get(f.ino).expect("get");
        let path = rec.content.expect("content file");
        std::fs::write(&path, b"123456789").expect("grow behind the mount");
        t.fs.sizes.pop([&f.ino]);
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(9));
        t.fs.flush_size_fixes().expect("fixes");
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(9));
    }

    #[test]
    fn set_id_bits_go_as_a_local_file_systems_vfs_takes_them() {
        let root = DropSetId::By(Caller { uid: 0, gid: 0 });
        let member = DropSetId::By(Caller { uid: 7, gid: 50 });
        let other = DropSetId::By(Caller { uid: 7, gid: 60 });
        // Set-user-ID always goes; set-group-ID goes with group-execute.
        assert_eq!(without_setid(0o6777, 50, root), 0o0777);
        assert_eq!(without_setid(0o6777, 50, member), 0o0777);
        // Without group-execute it is a lock mark: kept for root and the
        // file's group, taken from anyone else.
        assert_eq!(without_setid(0o6767, 50, root), 0o2767);
        assert_eq!(without_setid(0o6767, 50, member), 0o2767);
        assert_eq!(without_setid(0o6767, 50, other), 0o0767);
        assert_eq!(without_setid(0o6777, 50, DropSetId::Keep), 0o6777);
    }

    #[test]
    fn a_write_by_another_takes_set_id_bits_and_a_mode_given_wins() {
        let t = TestFs::new();
        let f = t.file("f", b"x");
        let mode = |m| SetAttrReq {
            mode: Some(m),
            ..Default::default()
        };
        t.fs.setattr(f.ino, &mode(0o6755)).expect("chmod");
        let perm = |t: &TestFs| t.fs.getattr(f.ino).map(|a| a.perm).ok();
        let someone = Caller {
            uid: 4242,
            gid: 4242,
        };
        t.fs.drop_setid_for_write(f.ino, someone).expect("write");
        assert_eq!(perm(&t), Some(0o0755));
        // A chmod's own mode is the caller's word, whatever drop_setid says.
        let req = SetAttrReq {
            drop_setid: DropSetId::By(someone),
            ..mode(0o6755)
        };
        t.fs.setattr(f.ino, &req).expect("chmod");
        assert_eq!(perm(&t), Some(0o6755));
    }
}
