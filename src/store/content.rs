//! One open content file and every I/O the core does on it: reads that do
//! not zero their buffer first, writes, allocation, `SEEK_DATA` and
//! `SEEK_HOLE`, syncs, and its size, blocks and mtime. The core asks for
//! these by name and keeps no system calls of its own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::SystemTime;

/// Where a seek counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    Set,
    Cur,
    End,
    /// The next byte of data at or after the offset (`SEEK_DATA`).
    Data,
    /// The next hole at or after the offset (`SEEK_HOLE`).
    Hole,
}

/// What the content file's own metadata says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub mtime: SystemTime,
}

impl Extent {
    pub fn of(m: &std::fs::Metadata) -> io::Result<Extent> {
        Ok(Extent {
            size: m.len(),
            blocks: m.blocks(),
            mtime: m.modified()?,
        })
    }
}

/// An open content file.
#[derive(Debug)]
pub struct ContentFile {
    file: File,
}

impl From<File> for ContentFile {
    fn from(file: File) -> ContentFile {
        ContentFile { file }
    }
}

impl ContentFile {
    /// The file itself, for a front end that hands it to the kernel
    /// (FUSE passthrough).
    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// Up to `size` bytes at `offset`, fewer at the end of the file.
    pub fn read_at(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        // Read into the buffer's spare capacity: a 1 MiB read is not zeroed
        // first (that cost a tenth of the NFS server's CPU).
        let mut buf: Vec<u8> = Vec::with_capacity(size as usize);
        let fd = self.file.as_raw_fd();
        while buf.len() < size as usize {
            let at = offset + buf.len() as u64;
            let at = libc::off_t::try_from(at)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            let spare = buf.spare_capacity_mut();
            // SAFETY: pread writes at most `spare.len()` bytes into the
            // Vec's own spare capacity through a descriptor `self` keeps open.
            let n = unsafe { libc::pread(fd, spare.as_mut_ptr().cast(), spare.len(), at) };
            match n {
                0 => break,
                // SAFETY: pread initialised exactly `n` bytes after `len`.
                n if n > 0 => unsafe { buf.set_len(buf.len() + n as usize) },
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(buf)
    }

    /// All of `data` at `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Truncate or extend to `size`.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.file.set_len(size)
    }

    /// `fallocate(2)` with Linux's mode bits (`FALLOC_FL_*`); the file's
    /// own file system refuses what it cannot do.
    #[cfg(target_os = "linux")]
    pub fn allocate(&self, mode: i32, offset: u64, length: u64) -> io::Result<()> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let (offset, length) = (to_off(offset)?, to_off(length)?);
        fallocate(
            &self.file,
            FallocateFlags::from_bits_retain(mode),
            offset,
            length,
        )
        .map_err(io::Error::from)
    }

    /// No `fallocate(2)` here: plain allocation (mode 0) grows the file,
    /// as `posix_fallocate` would; other modes are not supported.
    #[cfg(not(target_os = "linux"))]
    pub fn allocate(&self, mode: i32, offset: u64, length: u64) -> io::Result<()> {
        if mode != 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let end = offset.saturating_add(length);
        if self.file.metadata()?.len() < end {
            self.file.set_len(end)?;
        }
        Ok(())
    }

    /// `lseek(2)`: for `SEEK_DATA` and `SEEK_HOLE` (ENXIO past the last data).
    pub fn seek(&self, offset: i64, whence: Whence) -> io::Result<i64> {
        use nix::unistd::Whence as W;
        let whence = match whence {
            Whence::Set => W::SeekSet,
            Whence::Cur => W::SeekCur,
            Whence::End => W::SeekEnd,
            Whence::Data => W::SeekData,
            Whence::Hole => W::SeekHole,
        };
        nix::unistd::lseek(&self.file, offset, whence).map_err(io::Error::from)
    }

    /// Make the data durable (and with `data_only` false, the metadata too).
    pub fn sync(&self, data_only: bool) -> io::Result<()> {
        if data_only {
            self.file.sync_data()
        } else {
            self.file.sync_all()
        }
    }

    /// Its size, blocks and mtime now.
    pub fn extent(&self) -> io::Result<Extent> {
        Extent::of(&self.file.metadata()?)
    }

    /// Was it opened for writing? (The store opens a file it may not write
    /// read-only.)
    pub fn writable(&self) -> bool {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(&self.file, FcntlArg::F_GETFL)
            .is_ok_and(|fl| OFlag::from_bits_truncate(fl) & OFlag::O_ACCMODE != OFlag::O_RDONLY)
    }
}

#[cfg(target_os = "linux")]
fn to_off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_holes_and_extent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = ContentFile::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join("c"))
                .expect("open"),
        );
        assert!(f.writable());
        f.write_at(b"hello", 0).expect("write");
        f.write_at(b"world", 1 << 20).expect("write far");
        assert_eq!(f.read_at(0, 5).expect("read"), b"hello");
        assert_eq!(f.read_at((1 << 20) + 3, 100).expect("read tail"), b"ld");
        assert!(f.read_at(2 << 20, 10).expect("past end").is_empty());
        let e = f.extent().expect("extent");
        assert_eq!(e.size, (1 << 20) + 5);
        let hole = f.seek(0, Whence::Hole).expect("hole");
        assert!((5..=1 << 20).contains(&hole), "{hole}");
        f.allocate(0, 0, 4 << 20).expect("allocate");
        assert_eq!(f.extent().expect("extent").size, 4 << 20);
        f.set_len(3).expect("truncate");
        f.sync(true).expect("sync");
        assert_eq!(f.read_at(0, 10).expect("read"), b"hel");
    }
}
