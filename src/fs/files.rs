//! Open files: open, read, write, flush, fsync, release, fallocate, lseek.
//!
//! One content file descriptor per open inode, shared by its handles. Writes
//! go to it at the offsets asked (`pwrite`); the size and mtime are kept in
//! memory and committed to the catalog at flush, fsync and release, never
//! inside `write`, so a write never waits for SQLite. With kernel
//! passthrough the kernel does the I/O on the same descriptor, and the state
//! is brought up to date from the content file's own size and mtime.
//!
//! A handle is counted under the open-file table's lock, which `release`
//! also holds to retire an idle open file, so an open and a last release
//! cannot interleave; an inode unlinked while open is purged at its last
//! release.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use crate::sync::Mutex;

use super::flags::{AllocMode, OpenFlags, Whence};
use super::{FsError, FsResult, MarkBaseFs, SetAttrReq};
use crate::catalog::{Ino, Kind, NodeRecord};
use crate::store::{ContentFile, Extent};

pub(super) struct FileState {
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    pub(super) dirty: bool,
    pub(super) handles: u32,
    pub(super) unlinked: bool,
    /// The kernel does this file's I/O itself (FUSE passthrough): its size
    /// and mtime are read from the content file, compared with `base`.
    pub(super) passthrough: bool,
    /// Size and mtime of the content file when last synchronised with the state.
    pub(super) base: (u64, SystemTime),
}

impl FileState {
    pub(super) fn new(
        size: u64,
        mtime: SystemTime,
        ctime: SystemTime,
        base: (u64, SystemTime),
    ) -> FileState {
        FileState {
            size,
            mtime,
            ctime,
            dirty: false,
            handles: 0,
            unlinked: false,
            passthrough: false,
            base,
        }
    }
}

pub(super) fn backing_now(f: &ContentFile) -> io::Result<(u64, SystemTime)> {
    let e = f.extent()?;
    Ok((e.size, e.mtime))
}

impl OpenFile {
    /// `file`, the content of `rec`'s inode, opened: its size is the content
    /// file's, its times the record's until a write moves them.
    pub(super) fn new(
        rec: &NodeRecord,
        file: ContentFile,
        path: PathBuf,
        writable: bool,
    ) -> io::Result<OpenFile> {
        let base = backing_now(&file)?;
        Ok(OpenFile {
            ino: rec.ino,
            file,
            path,
            writable,
            state: Mutex::new(FileState::new(base.0, rec.mtime, rec.ctime, base)),
            writing: Mutex::new(()),
        })
    }

    /// Bring the state up to date with writes the kernel did by passthrough.
    pub(super) fn sync_from_backing(&self, st: &mut FileState) {
        if st.passthrough {
            if let Ok(e) = self.file.extent() {
                Self::sync_from(st, &e);
            }
        }
    }

    /// As [`Self::sync_from_backing`], from the content file's metadata already read.
    pub(super) fn sync_from(st: &mut FileState, e: &Extent) {
        if !st.passthrough {
            return;
        }
        {
            let now = (e.size, e.mtime);
            if now != st.base {
                st.size = now.0;
                if now.1 != st.base.1 {
                    st.mtime = now.1;
                    st.ctime = now.1.max(st.ctime);
                }
                st.base = now;
                st.dirty = true;
            }
        }
    }
}

/// One open inode: its content file, shared by all its handles.
pub struct OpenFile {
    pub(super) ino: Ino,
    pub(super) file: ContentFile,
    pub(super) path: PathBuf,
    pub(super) writable: bool,
    pub(super) state: Mutex<FileState>,
    /// Held around each write to the content file. The kernel lets one
    /// writer at a time into a file and makes the others spin for it: with
    /// several NFS connections writing one file, that spinning took a fifth
    /// of the CPU. Waiting here sleeps instead.
    writing: Mutex<()>,
}

impl OpenFile {
    /// The content file (for kernel passthrough and tests).
    pub fn file(&self) -> &std::fs::File {
        self.file.as_file()
    }

    /// The inode this file is open for.
    pub fn ino(&self) -> Ino {
        self.ino
    }
}

pub(super) struct Handle {
    of: Arc<OpenFile>,
    write: bool,
}

impl MarkBaseFs {
    /// A new handle on `ino`'s open file; `None` if it is not open. The
    /// handle is counted under the open-file table's lock, which `release`
    /// holds to retire an idle open file: the two cannot interleave.
    pub(super) fn open_handle(&self, ino: Ino, flags: OpenFlags) -> FsResult<Option<u64>> {
        let write = flags.write;
        let of = {
            let open = self.open.lock();
            let Some(of) = open.get(&ino).cloned() else {
                return Ok(None);
            };
            if write && !of.writable {
                return Err(FsError::Access("content file is read-only"));
            }
            of.state.lock().handles += 1;
            of
        };
        let fh = self.next_fh.fetch_add(1, Relaxed);
        self.handles.lock().insert(fh, Handle { of, write });
        self.counters.opens.fetch_add(1, Relaxed);
        Ok(Some(fh))
    }

    /// A new handle on `ino`'s content (one content file descriptor per open
    /// inode, shared by its handles). Counted under the open-file table's
    /// lock. ENOMEM for writers under memory pressure, EISDIR on a folder,
    /// EACCES for writing a content file that is read-only, EIO if the
    /// content file is missing. With `truncate`, truncates as `setattr` does.
    pub fn open(&self, ino: Ino, flags: OpenFlags) -> FsResult<u64> {
        let rec = self.record(ino)?;
        match rec.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid("open of a special file")),
        }
        let write = flags.write;
        if write && self.memory.low() {
            return Err(FsError::NoMemory("opening a file for writing"));
        }
        // An open file may be retired by a racing release between our look
        // and our handle: then open it anew.
        let fh = loop {
            if let Some(fh) = self.open_handle(ino, flags)? {
                break fh;
            }
            // Opening touches the disk: do it without the table lock.
            let p = self.content_path(&rec).ok_or_else(|| self.missing(&rec))?;
            let file = match self.store.open(&p, write) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted behind the mount's back since it was resolved.
                    self.paths.pop([&ino]);
                    return Err(self.missing(&rec));
                }
                Err(e) => return Err(e.into()),
            };
            let writable = file.writable();
            let of = Arc::new(OpenFile::new(&rec, file, p, writable)?);
            self.open.lock().entry(ino).or_insert(of);
        };
        if flags.truncate {
            // FUSE_ATOMIC_O_TRUNC: the truncation is ours to do.
            if let Err(e) = self.setattr(
                ino,
                &SetAttrReq {
                    size: Some(0),
                    drop_setid: flags.drop_setid,
                    ..Default::default()
                },
            ) {
                let _ = self.release(fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    pub(super) fn handle(&self, fh: u64) -> FsResult<(Arc<OpenFile>, bool)> {
        self.handles
            .lock()
            .get(&fh)
            .map(|h| (h.of.clone(), h.write))
            .ok_or(FsError::BadHandle)
    }

    /// The open file behind a handle (for kernel passthrough).
    pub fn open_file(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        Ok(self.handle(fh)?.0)
    }

    /// The kernel will do this handle's I/O on the content file directly.
    pub fn set_passthrough(&self, fh: u64) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        let mut st = of.state.lock();
        if !st.passthrough {
            st.passthrough = true;
            st.base = backing_now(&of.file)?;
        }
        Ok(())
    }

    /// Up to `size` bytes at `offset` (fewer at the end of the file). No
    /// lock. EBADF on an unknown handle.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (of, _) = self.handle(fh)?;
        let buf = of.file.read_at(offset, size)?;
        self.counters
            .bytes_read
            .fetch_add(buf.len() as u64, Relaxed);
        Ok(buf)
    }

    /// Write at `offset` (`pwrite`) and note the new size and mtime in
    /// memory; the catalog hears of them at flush, fsync or release, never
    /// here. EBADF on a read-only handle, EDQUOT past the quota (taken before
    /// the bytes touch the disk), ENOSPC from the content disk.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (of, write) = self.handle(fh)?;
        if !write {
            return Err(FsError::BadHandle);
        }
        let mut taken = 0;
        if self.quota.is_some() && !data.is_empty() {
            let size = of.state.lock().size;
            taken = (offset + data.len() as u64).saturating_sub(size);
            self.quota_take(taken)?;
        }
        let written = {
            let _one_at_a_time = of.writing.lock();
            of.file.write_at(data, offset)
        };
        if let Err(e) = written {
            let _ = self.quota_resize(taken, 0);
            return Err(e.into());
        }
        let now = SystemTime::now();
        let mut st = of.state.lock();
        if !data.is_empty() {
            st.size = st.size.max(offset + data.len() as u64);
        }
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        drop(st);
        self.counters
            .bytes_written
            .fetch_add(data.len() as u64, Relaxed);
        Ok(data.len() as u32)
    }

    /// Commit an open file's size and mtime to the catalog, if it changed.
    pub(super) fn commit(&self, of: &OpenFile) -> FsResult<()> {
        let (size, mtime, ctime) = {
            let mut st = of.state.lock();
            of.sync_from_backing(&mut st);
            if !st.dirty || st.unlinked {
                return Ok(());
            }
            st.dirty = false;
            (st.size, st.mtime, st.ctime)
        };
        if let Err(e) = self.catalog.commit_file(of.ino, size, mtime, ctime) {
            of.state.lock().dirty = true;
            return Err(e.into());
        }
        // The cached record becomes what was committed (no reload).
        self.attrs.edit(of.ino, |r| {
            let r = Arc::make_mut(r);
            r.size = size;
            r.mtime = mtime;
            r.ctime = ctime;
            true
        });
        match of.file.extent() {
            Ok(e) => self.sizes.put(of.ino, (e.size, e.blocks)),
            Err(_) => self.sizes.pop([&of.ino]),
        }
        Ok(())
    }

    /// Commit the file's size and times to the catalog if they changed
    /// (`close(2)` reaches here).
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        self.commit(&of)
    }

    /// `fsync`: the content file's data, then the catalog commit, then the
    /// catalog's WAL, in that order.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let (of, _) = self.handle(fh)?;
        of.file.sync(datasync)?;
        self.commit(&of)?;
        self.catalog.sync()?;
        Ok(())
    }

    /// Make the catalog's committed changes durable (sync its WAL).
    pub fn fsyncdir(&self) -> FsResult<()> {
        Ok(self.catalog.sync()?)
    }

    /// Drop a handle, committing what changed; the last handle of an inode
    /// retires its open file (under the open-file table's lock) and, if the
    /// inode was unlinked meanwhile, frees it and its content. EBADF on an
    /// unknown handle.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.handles.lock().remove(&fh).ok_or(FsError::BadHandle)?;
        let of = h.of;
        let res = self.commit(&of);
        let last = {
            let mut st = of.state.lock();
            st.handles = st.handles.saturating_sub(1);
            st.handles == 0
        };
        if last {
            let mut open = self.open.lock();
            // A new open may have raced in; only drop the entry if still idle.
            let idle = open
                .get(&of.ino)
                .is_some_and(|o| Arc::ptr_eq(o, &of) && o.state.lock().handles == 0);
            if idle {
                open.remove(&of.ino);
                let writers = open.values().any(|o| o.writable);
                drop(open);
                if let (Some(q), false) = (&self.quota, writers) {
                    q.resync(self.catalog.as_ref());
                }
                if of.state.lock().unlinked {
                    self.purge(of.ino)?;
                    return res;
                }
            }
            if of.writable {
                self.double_committed(of.ino);
            }
        }
        res
    }

    /// `fallocate(2)` on the content file; growth is taken from the quota
    /// first. EBADF on a read-only handle, EOPNOTSUPP for what the content
    /// file's file system cannot do.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: AllocMode) -> FsResult<()> {
        let (of, write) = self.handle(fh)?;
        if !write {
            return Err(FsError::BadHandle);
        }
        let before = of.state.lock().size;
        let grows = !mode.keeps_size();
        let taken = if grows {
            (offset + length).saturating_sub(before)
        } else {
            0
        };
        self.quota_take(taken)?;
        if let Err(e) = of.file.allocate(mode.bits(), offset, length) {
            let _ = self.quota_resize(taken, 0);
            return Err(e.into());
        }
        let real = of.file.extent()?.size;
        let now = SystemTime::now();
        let mut st = of.state.lock();
        st.size = real;
        st.mtime = now;
        st.ctime = now;
        st.dirty = true;
        Ok(())
    }

    /// `lseek(2)` on the content file, for SEEK_DATA and SEEK_HOLE (ENXIO
    /// past the last data).
    pub fn lseek(&self, fh: u64, offset: i64, whence: Whence) -> FsResult<i64> {
        let (of, _) = self.handle(fh)?;
        Ok(of.file.seek(offset, whence)?)
    }

    /// Commit every open file (SIGTERM, unmount).
    pub fn flush_all(&self) -> FsResult<()> {
        let open: Vec<Arc<OpenFile>> = self.open.lock().values().cloned().collect();
        let mut first_err = None;
        for of in open {
            let r = of
                .file
                .sync(true)
                .map_err(FsError::from)
                .and_then(|_| self.commit(&of));
            if let Err(e) = r {
                tracing::error!(ino = of.ino, path = %of.path.display(), "flush at shutdown failed: {e}");
                first_err.get_or_insert(e);
            }
        }
        self.flush_size_fixes()?;
        self.store.empty_trash();
        self.catalog.clear_trash(i64::MAX)?;
        self.catalog.sync()?;
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::super::test_support::{errno, TestFs};
    use super::*;
    use crate::catalog::ROOT_INO;

    #[test]
    fn write_then_read_at_offsets() {
        let t = TestFs::new();
        let f = t.file("f", b"hello world");
        let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
        t.fs.write(fh, 6, b"there").expect("write");
        t.fs.write(fh, 20, b"!").expect("write past the end");
        assert_eq!(t.fs.read(fh, 0, 11).ok(), Some(b"hello there".to_vec()));
        // The gap reads as zeros, and a read stops at the end.
        assert_eq!(t.fs.read(fh, 18, 100).ok(), Some(vec![0, 0, b'!']));
        t.fs.release(fh).expect("release");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(21));
        assert_eq!(errno(t.fs.read(fh, 0, 1)), libc::EBADF);
    }

    #[test]
    fn a_read_handle_cannot_write() {
        let t = TestFs::new();
        let f = t.file("f", b"x");
        let fh = t.fs.open(f.ino, OpenFlags::READ).expect("open");
        assert_eq!(errno(t.fs.write(fh, 0, b"y")), libc::EBADF);
        let d = t.mkdir(ROOT_INO, "d");
        assert_eq!(errno(t.fs.open(d.ino, OpenFlags::READ)), libc::EISDIR);
        t.fs.release(fh).expect("release");
    }

    #[test]
    fn open_with_truncate() {
        let t = TestFs::new();
        let f = t.file("f", b"old bytes");
        let flags = OpenFlags {
            truncate: true,
            ..OpenFlags::WRITE
        };
        let fh = t.fs.open(f.ino, flags).expect("open");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(0));
        t.fs.release(fh).expect("release");
    }

    #[test]
    fn unlinked_while_open_lives_until_the_last_release() {
        let t = TestFs::new();
        let f = t.file("f", b"keep me");
        let content = t.fs.catalog().get(f.ino).ok().and_then(|r| r.content);
        let content = content.expect("content file");
        let fh = t.fs.open(f.ino, OpenFlags::READ).expect("open");
        t.fs.unlink(ROOT_INO, OsStr::new("f")).expect("unlink");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.nlink).ok(), Some(0));
        assert_eq!(t.fs.read(fh, 0, 100).ok(), Some(b"keep me".to_vec()));
        assert!(content.exists());
        t.fs.release(fh).expect("release");
        assert!(!content.exists());
        assert_eq!(errno(t.fs.getattr(f.ino)), libc::ENOENT);
    }

    #[test]
    fn fsync_commits_and_flush_all_commits_every_open_file() {
        let t = TestFs::new();
        let f = t.file("f", b"");
        let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
        t.fs.write(fh, 0, &[1; 100]).expect("write");
        t.fs.fsync(fh, true).expect("fsync");
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(100));
        t.fs.write(fh, 100, &[2; 100]).expect("write");
        t.fs.flush_all().expect("flush_all");
        assert_eq!(t.fs.catalog().get(f.ino).map(|r| r.size).ok(), Some(200));
        t.fs.release(fh).expect("release");
    }

    #[test]
    fn fallocate_and_seek_holes() {
        let t = TestFs::new();
        let f = t.file("f", b"");
        let fh = t.fs.open(f.ino, OpenFlags::WRITE).expect("open");
        t.fs.fallocate(fh, 0, 1 << 20, AllocMode::ALLOCATE)
            .expect("fallocate");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(1 << 20));
        let keep = AllocMode::from_raw(libc::FALLOC_FL_KEEP_SIZE).expect("mode");
        t.fs.fallocate(fh, 0, 2 << 20, keep).expect("keep size");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.size).ok(), Some(1 << 20));
        assert_eq!(t.fs.lseek(fh, 10, Whence::Set).ok(), Some(10));
        assert_eq!(t.fs.lseek(fh, 0, Whence::End).ok(), Some(1 << 20));
        // Past the end there is no data: ENXIO, as lseek(2) says.
        assert_eq!(errno(t.fs.lseek(fh, 2 << 20, Whence::Data)), libc::ENXIO);
        t.fs.release(fh).expect("release");
    }
}
