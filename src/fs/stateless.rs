//! What a stateless front end (the NFSv3 server) needs from the core, and a
//! kernel front end does not: I/O by inode without an open handle, folder
//! pages addressed by cookies that survive changes to the folder, exclusive
//! create with a verifier, and permission checks (no kernel makes them for such a front end).
//!
//! Leases: NFS has no open or close. The first read or write of an inode
//! opens it through the ordinary path ([`MarkBaseFs::open`]) and keeps the
//! handle as a lease; later calls reuse it; [`MarkBaseFs::retire_leases`]
//! releases the leases idle longer than a given time through the ordinary
//! release path, which commits size and times and frees an inode unlinked
//! meanwhile. So an NFS client's writes follow the same hot-path rules as
//! FUSE's (size and mtime in memory, committed at COMMIT or retirement),
//! and a file removed while in use stays readable until its lease retires,
//! as an unlinked-but-open file does.
//!
//! Cookies: a folder's entries are served in the order of a key that is
//! the entry's inode number (and, for hard links to one inode in one
//! folder, its rank among them), never a position. A cookie is the key of
//! the last entry sent; the next page starts after it. Entries added while
//! a client pages through get new, higher inode numbers and come at the
//! end; entries removed are simply not there; nothing is sent twice and
//! nothing present throughout is skipped. The verifier is the listing's
//! generation: it changes when the listing is reloaded from the catalog,
//! never for a change made through the core. Cookies stay valid across a
//! reload too (they are keys), so a stale verifier is not refused.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::flags::OpenFlags;
use super::{Attr, Caller, FsError, FsResult, Listing, MarkBaseFs, SetAttrReq, TimeSet};
use crate::catalog::{DirEntry, Ino, Kind};

/// An open handle kept for a front end that never opens.
pub(super) struct Lease {
    fh: u64,
    write: bool,
    used: Instant,
}

/// The leases, by inode.
pub(super) type Leases = HashMap<Ino, Lease>;

/// At most this many leases are held (each is an open content file): past
/// it, the least recently used quarter retires at once, whatever its idle
/// time. A client making files faster than they go idle (an untar, an image
/// sequence) would otherwise run the server out of file descriptors.
pub const MAX_LEASES: usize = 4096;

/// Hard links to one inode in one folder get ranks below this in a cookie.
const RANKS: u64 = 1 << 12;

/// One page's worth of a folder, from a cookie on.
pub struct DirPage {
    /// Changes when the listing is reloaded from the catalog.
    pub verifier: u64,
    listing: Arc<Listing>,
    order: Arc<Vec<(u64, usize)>>,
    next: usize,
}

impl Iterator for DirPage {
    type Item = (u64, DirEntry);

    fn next(&mut self) -> Option<(u64, DirEntry)> {
        let &(cookie, i) = self.order.get(self.next)?;
        self.next += 1;
        Some((cookie, self.listing.entries.get(i)?.clone()))
    }
}

/// What a caller may do to an inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// The entries of `listing` in cookie order, each with its cookie.
pub(super) fn cookie_order(listing: &Listing) -> Vec<(u64, usize)> {
    let mut v: Vec<(Ino, &str, usize)> = listing
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.ino, e.name.as_str(), i))
        .collect();
    v.sort_unstable();
    let mut out = Vec::with_capacity(v.len());
    let mut rank = 0;
    for (k, &(ino, _, i)) in v.iter().enumerate() {
        rank = if k > 0 && v[k - 1].0 == ino {
            rank + 1
        } else {
            0
        };
        let key = ino
            .saturating_mul(RANKS)
            .saturating_add(rank.min(RANKS - 1));
        out.push((key, i));
    }
    out
}

/// What POSIX grants `caller` on a node of mode `perm`, owner `uid` and
/// group `gid` (root: everything, execute only if someone may).
pub fn permitted(caller: Caller, perm: u16, uid: u32, gid: u32, is_dir: bool) -> Access {
    let bits = if caller.uid == 0 {
        let x = is_dir || perm & 0o111 != 0;
        return Access {
            read: true,
            write: true,
            exec: x,
        };
    } else if caller.uid == uid {
        perm >> 6
    } else if caller.gid == gid {
        perm >> 3
    } else {
        perm
    };
    Access {
        read: bits & 4 != 0,
        write: bits & 2 != 0,
        exec: bits & 1 != 0,
    }
}

impl MarkBaseFs {
    /// The lease on `ino` (a handle, opened for writing if `write`), made
    /// if there is none; a read lease is replaced by a write lease when a
    /// write comes. Errors as [`MarkBaseFs::open`].
    fn lease(&self, ino: Ino, write: bool) -> FsResult<u64> {
        if let Some(l) = self.leases.lock().get_mut(&ino) {
            if l.write || !write {
                l.used = Instant::now();
                return Ok(l.fh);
            }
        }
        let flags = if write {
            OpenFlags::WRITE
        } else {
            OpenFlags::READ
        };
        let fh = self.open(ino, flags)?;
        let replaced = {
            let mut leases = self.leases.lock();
            match leases.get(&ino) {
                // Another call made one meanwhile: use it, drop ours.
                Some(l) if l.write || !write => Some((fh, l.fh)),
                _ => {
                    let old = leases.insert(
                        ino,
                        Lease {
                            fh,
                            write,
                            used: Instant::now(),
                        },
                    );
                    old.map(|o| (o.fh, fh))
                }
            }
        };
        match replaced {
            Some((drop_fh, keep)) => {
                if let Err(e) = self.release(drop_fh) {
                    tracing::warn!(ino, "releasing a replaced lease: {e}");
                }
                Ok(keep)
            }
            None => {
                self.trim_leases();
                Ok(fh)
            }
        }
    }

    /// Past [`MAX_LEASES`], retire the least recently used quarter.
    fn trim_leases(&self) {
        let old: Vec<u64> = {
            let mut leases = self.leases.lock();
            if leases.len() <= MAX_LEASES {
                return;
            }
            let mut by_use: Vec<(Instant, Ino)> =
                leases.iter().map(|(ino, l)| (l.used, *ino)).collect();
            by_use.sort_unstable();
            by_use
                .iter()
                .take(leases.len() - MAX_LEASES * 3 / 4)
                .filter_map(|(_, ino)| leases.remove(ino))
                .map(|l| l.fh)
                .collect()
        };
        self.release_leases(&old);
    }

    fn release_leases(&self, fhs: &[u64]) {
        for fh in fhs {
            if let Err(e) = self.release(*fh) {
                tracing::warn!("retiring a lease: {e}");
            }
        }
    }

    /// Run `op` on `ino`'s lease; if the lease was retired between lookup
    /// and use (EBADF), forget it and try once more with a new one.
    fn with_lease<T>(&self, ino: Ino, write: bool, op: impl Fn(u64) -> FsResult<T>) -> FsResult<T> {
        let fh = self.lease(ino, write)?;
        match op(fh) {
            Err(FsError::BadHandle) => {
                self.leases.lock().retain(|_, l| l.fh != fh);
                op(self.lease(ino, write)?)
            }
            r => r,
        }
    }

    /// Up to `size` bytes of `ino` at `offset`, without an open handle
    /// (a lease is made or reused). Stale if the inode is gone, EISDIR on
    /// a folder, EIO if the content file is missing.
    pub fn read_ino(&self, ino: Ino, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.with_lease(ino, false, |fh| self.read(fh, offset, size))
    }

    /// Write `data` to `ino` at `offset`, without an open handle; with
    /// `sync`, the data and the catalog's record of the size are durable
    /// before it returns (else they are at [`MarkBaseFs::commit_ino`] or
    /// when the lease retires). Errors as [`MarkBaseFs::write`] and open.
    pub fn write_ino(&self, ino: Ino, offset: u64, data: &[u8], sync: bool) -> FsResult<u32> {
        self.with_lease(ino, true, |fh| {
            let n = self.write(fh, offset, data)?;
            if sync {
                self.fsync(fh, true)?;
            }
            Ok(n)
        })
    }

    /// Create a regular file and keep its handle as the new inode's lease
    /// (the client's writes come next). As [`MarkBaseFs::create`].
    pub fn create_leased(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let (a, fh) = self.create(parent, name, mode, 0, OpenFlags::WRITE, caller)?;
        let lease = Lease {
            fh,
            write: true,
            used: Instant::now(),
        };
        if let Some(old) = self.leases.lock().insert(a.ino, lease) {
            // Only a reused inode number could have one: never, but tidy.
            let _ = self.release(old.fh);
        }
        self.trim_leases();
        Ok(a)
    }

    /// Make everything written to `ino` durable: its data, then its size
    /// and times in the catalog, then the catalog's WAL.
    pub fn commit_ino(&self, ino: Ino) -> FsResult<()> {
        if self.record(ino)?.kind != Kind::File {
            return self.fsyncdir();
        }
        self.with_lease(ino, false, |fh| self.fsync(fh, false))?;
        self.double_committed(ino);
        Ok(())
    }

    /// Release the leases not used for `idle` (all with `Duration::ZERO`);
    /// returns how many. The release commits each file's size and times.
    pub fn retire_leases(&self, idle: Duration) -> usize {
        let old: Vec<u64> = {
            let mut leases = self.leases.lock();
            let now = Instant::now();
            let old: Vec<Ino> = leases
                .iter()
                .filter(|(_, l)| now.duration_since(l.used) >= idle)
                .map(|(ino, _)| *ino)
                .collect();
            old.iter()
                .filter_map(|ino| leases.remove(ino))
                .map(|l| l.fh)
                .collect()
        };
        self.release_leases(&old);
        old.len()
    }

    /// How many leases are held.
    pub fn leases_held(&self) -> usize {
        self.leases.lock().len()
    }

    /// `dir`'s entries after `cookie` (0: from the start), in cookie order
    /// (see the module's note), with the listing's verifier. ENOTDIR,
    /// stale if `dir` is gone.
    pub fn dir_page(&self, dir: Ino, cookie: u64) -> FsResult<DirPage> {
        let listing = self.listing(dir)?;
        let order = listing.cookie_order();
        let next = order.partition_point(|&(key, _)| key <= cookie);
        Ok(DirPage {
            verifier: listing.generation,
            listing,
            order,
            next,
        })
    }

    /// The verifier [`MarkBaseFs::dir_page`] would give for `dir` now.
    pub fn dir_verifier(&self, dir: Ino) -> FsResult<u64> {
        Ok(self.listing(dir)?.generation)
    }

    /// Create `name` in `parent` unless it exists, marked with `verifier`
    /// (kept in the new file's access and modification times, as Linux's
    /// NFS server does, until the client sets them). If the name exists and
    /// carries the same verifier, this is a retransmission of the same
    /// create: its attributes are returned. Else EEXIST.
    pub fn create_exclusive(
        &self,
        parent: Ino,
        name: &OsStr,
        verifier: [u8; 8],
        caller: Caller,
    ) -> FsResult<Attr> {
        let (atime, mtime) = verifier_times(verifier);
        match self.create(parent, name, 0o644, 0, OpenFlags::WRITE, caller) {
            Ok((a, fh)) => {
                let set = SetAttrReq {
                    atime: Some(TimeSet::At(atime)),
                    mtime: Some(TimeSet::At(mtime)),
                    ..Default::default()
                };
                let attr = self.setattr(a.ino, &set);
                let released = self.release(fh);
                let attr = attr?;
                released?;
                Ok(attr)
            }
            Err(FsError::Exists) => {
                let a = self.lookup(parent, name)?;
                if a.kind == Kind::File && a.atime == atime && a.mtime == mtime {
                    Ok(a)
                } else {
                    Err(FsError::Exists)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// What `caller` may do to `ino`, by its mode bits.
    pub fn access(&self, ino: Ino, caller: Caller) -> FsResult<Access> {
        let rec = self.record(ino)?;
        Ok(permitted(
            caller,
            rec.perm,
            rec.uid,
            rec.gid,
            rec.kind == Kind::Dir,
        ))
    }
}

/// The times an exclusive create's verifier is kept in: its first four
/// bytes as the access time's seconds, the last four as the modification
/// time's.
fn verifier_times(v: [u8; 8]) -> (SystemTime, SystemTime) {
    let secs =
        |b: [u8; 4]| SystemTime::UNIX_EPOCH + Duration::from_secs(u32::from_be_bytes(b).into());
    (
        secs([v[0], v[1], v[2], v[3]]),
        secs([v[4], v[5], v[6], v[7]]),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errno, TestFs, ME};
    use super::*;
    use crate::catalog::ROOT_INO;

    #[test]
    fn io_by_inode_leases_and_retires() {
        let t = TestFs::new();
        let a = t.file("f", b"");
        assert_eq!(t.fs.write_ino(a.ino, 0, b"hello", false).ok(), Some(5));
        assert_eq!(t.fs.read_ino(a.ino, 1, 10).ok(), Some(b"ello".to_vec()));
        assert_eq!(t.fs.leases_held(), 1);
        assert_eq!(t.fs.getattr(a.ino).map(|a| a.size).ok(), Some(5));
        t.fs.commit_ino(a.ino).expect("commit");
        assert_eq!(t.fs.retire_leases(Duration::from_secs(60)), 0);
        assert_eq!(t.fs.retire_leases(Duration::ZERO), 1);
        assert_eq!(t.fs.catalog().get(a.ino).map(|r| r.size).ok(), Some(5));
        assert_eq!(errno(t.fs.read_ino(ROOT_INO, 0, 1)), libc::EISDIR);
    }

    #[test]
    fn leases_are_capped_and_the_oldest_retire_committed() {
        let t = TestFs::new();
        let mut inos = Vec::new();
        for i in 0..=MAX_LEASES {
            let name = format!("f{i}");
            let a =
                t.fs.create_leased(ROOT_INO, OsStr::new(&name), 0o644, ME)
                    .expect("create");
            inos.push(a.ino);
        }
        t.fs.write_ino(inos[MAX_LEASES], 0, b"last", false)
            .expect("write");
        assert!(t.fs.leases_held() <= MAX_LEASES, "{}", t.fs.leases_held());
        // The newest kept its lease, the oldest lost theirs and work anew.
        assert_eq!(t.fs.write_ino(inos[0], 0, b"first", false).ok(), Some(5));
        assert_eq!(
            t.fs.read_ino(inos[MAX_LEASES], 0, 9).ok(),
            Some(b"last".to_vec())
        );
        t.fs.retire_leases(Duration::ZERO);
        assert_eq!(t.fs.catalog().get(inos[0]).map(|r| r.size).ok(), Some(5));
    }

    #[test]
    fn a_file_removed_while_leased_lives_until_retired() {
        let t = TestFs::new();
        let a = t.file("f", b"data");
        assert_eq!(t.fs.read_ino(a.ino, 0, 4).ok(), Some(b"data".to_vec()));
        t.fs.unlink(ROOT_INO, OsStr::new("f")).expect("remove");
        assert_eq!(t.fs.read_ino(a.ino, 0, 4).ok(), Some(b"data".to_vec()));
        t.fs.retire_leases(Duration::ZERO);
        assert!(matches!(t.fs.getattr(a.ino), Err(FsError::Stale)));
        assert!(matches!(t.fs.read_ino(a.ino, 0, 4), Err(FsError::Stale)));
    }

    #[test]
    fn pages_lose_and_repeat_nothing_while_the_folder_changes() {
        let t = TestFs::new();
        for i in 0..50 {
            t.file(&format!("f{i:02}"), b"");
        }
        let mut seen = Vec::new();
        let mut cookie = 0;
        let mut round = 0;
        loop {
            let page: Vec<(u64, DirEntry)> =
                t.fs.dir_page(ROOT_INO, cookie)
                    .expect("page")
                    .take(7)
                    .collect();
            if page.is_empty() {
                break;
            }
            cookie = page.last().map(|p| p.0).unwrap_or(cookie);
            seen.extend(page.into_iter().map(|(_, e)| e.name));
            // Between the first pages: one new name, and one removed that
            // was seen.
            if round >= 5 {
                continue;
            }
            t.file(&format!("new{round}"), b"");
            let gone = seen[round].clone();
            t.fs.unlink(ROOT_INO, OsStr::new(&gone)).expect("remove");
            round += 1;
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "an entry came twice");
        for want in (0..50)
            .map(|i| format!("f{i:02}"))
            .chain((0..5).map(|i| format!("new{i}")))
        {
            assert!(seen.contains(&want), "{want} was skipped");
        }
    }

    #[test]
    fn the_verifier_moves_only_on_reload() {
        let t = TestFs::new();
        let v = t.fs.dir_verifier(ROOT_INO).expect("verifier");
        t.file("x", b"");
        assert_eq!(t.fs.dir_verifier(ROOT_INO).ok(), Some(v));
        t.fs.dirs.pop([&ROOT_INO]);
        assert_ne!(t.fs.dir_verifier(ROOT_INO).ok(), Some(v));
    }

    #[test]
    fn exclusive_create_answers_a_retransmission() {
        let t = TestFs::new();
        let v = *b"abcdefgh";
        let a =
            t.fs.create_exclusive(ROOT_INO, OsStr::new("x"), v, ME)
                .expect("create");
        let again =
            t.fs.create_exclusive(ROOT_INO, OsStr::new("x"), v, ME)
                .expect("again");
        assert_eq!(a.ino, again.ino);
        let other =
            t.fs.create_exclusive(ROOT_INO, OsStr::new("x"), *b"zzzzzzzz", ME);
        assert_eq!(errno(other), libc::EEXIST);
    }

    #[test]
    fn permissions_follow_the_mode_bits() {
        let me = Caller { uid: 500, gid: 20 };
        let p = |perm, uid, gid| permitted(me, perm, uid, gid, false);
        assert_eq!(
            p(0o640, 500, 1),
            Access {
                read: true,
                write: true,
                exec: false
            }
        );
        assert_eq!(
            p(0o640, 1, 20),
            Access {
                read: true,
                write: false,
                exec: false
            }
        );
        assert_eq!(p(0o640, 1, 1), Access::default());
        let root = Caller { uid: 0, gid: 0 };
        assert!(!permitted(root, 0o600, 1, 1, false).exec);
        assert!(permitted(root, 0o000, 1, 1, true).exec);
    }
}
