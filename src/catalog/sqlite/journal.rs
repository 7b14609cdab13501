//! The metadata journal: namespace changes leave the request path with one
//! `write()` each, and reach SQLite in batches.
//!
//! A change (create, unlink, rename, link, attributes, extended attributes)
//! runs on the writer's connection inside the open batch transaction; if it
//! succeeds, its [`Op`] is appended to the journal file
//! (`<catalog>-mbjournal`) as one checksummed record in one `write()`, and
//! the request returns. The write needs no `fsync`: the record is in the
//! kernel's page cache once `write()` returns, so it survives the daemon's
//! death exactly as a WAL frame written by a commit did. A committer thread
//! commits the batch a few milliseconds later (or at once when a read, an
//! `fsync` or the unmount needs it), storing the last record's sequence
//! number in `mb_meta.journal_seq` in the same transaction.
//!
//! After a crash, the next open replays the records past `journal_seq`, in
//! order, through the same code that ran them first (`Shared::apply`),
//! in one transaction that stores the new `journal_seq`: exactly once, since a
//! record applied and its sequence number commit together. A record whose
//! length, checksum or sequence number does not hold (a write cut short by
//! the daemon's death) ends the journal: records are written one at a time,
//! in order, and a failed append is cut off again before the next, so no
//! acknowledged record ever follows a torn one. An op carries everything that
//! made it (inode number, node id, times), so replaying it gives what it gave.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::Ino;

/// Record header: payload length (u32), CRC-32 of seq + payload (u32), seq (u64).
const HEADER: usize = 16;
/// Records longer than this are damage, not data (an xattr value is < 64 KiB).
const MAX_RECORD: usize = 1 << 20;
/// The committer truncates the journal once it is this long and all applied.
pub(super) const TRUNCATE_AT: u64 = 1 << 20;

/// One namespace change, with everything needed to make it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Op {
    Create {
        ino: Ino,
        node_id: String,
        parent: Ino,
        name: String,
        kind: String,
        perm: u16,
        uid: u32,
        gid: u32,
        rdev: u32,
        target: Option<Vec<u8>>,
        content: Option<PathBuf>,
        now: i64,
    },
    Unlink {
        parent: Ino,
        name: String,
        ino: Ino,
        open: bool,
        now: i64,
    },
    Rename {
        parent: Ino,
        name: String,
        ino: Ino,
        new_parent: Ino,
        new_name: String,
        replaced: Option<Ino>,
        now: i64,
    },
    Exchange {
        parent: Ino,
        name: String,
        ino: Ino,
        new_parent: Ino,
        new_name: String,
        other: Ino,
        now: i64,
    },
    Link {
        ino: Ino,
        new_parent: Ino,
        new_name: String,
        now: i64,
    },
    SetAttrs {
        ino: Ino,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<i64>,
        mtime: Option<i64>,
        ctime: Option<i64>,
    },
    /// A file's size and times at its flush (no record read back).
    CommitFile {
        ino: Ino,
        size: u64,
        mtime: i64,
        ctime: i64,
    },
    Purge {
        ino: Ino,
    },
    SetXattr {
        ino: Ino,
        name: String,
        value: Vec<u8>,
        create: bool,
        replace: bool,
        now: i64,
    },
    RemoveXattr {
        ino: Ino,
        name: String,
        now: i64,
    },
}

/// The journal file, open for appending.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Sequence number of the last record written (or applied, at open).
    pub(super) last: u64,
    /// Bytes in the file.
    pub(super) len: u64,
    /// A failed append could not be cut off: no more appends.
    broken: bool,
    /// Another process (a running mount) holds the journal: this one keeps
    /// none, and commits each change at once, as without a journal.
    pub(super) guest: bool,
}

/// What [`read`] found in a journal file.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Records past the applied sequence number, in order.
    pub(super) ops: Vec<(u64, Op)>,
    /// Bytes at the end that are not a whole record (a torn write).
    pub(super) torn: usize,
}

/// What an open found in the journal and replayed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Replayed {
    pub(super) applied: usize,
    /// Records that no longer applied (logged).
    pub(super) skipped: usize,
    /// Bytes of a torn last record, ignored.
    pub(super) torn: usize,
}

/// The journal's path beside the catalog (not SQLite's own `-journal`).
pub(super) fn path_of(catalog: &Path) -> PathBuf {
    let mut p = catalog.as_os_str().to_owned();
    p.push("-mbjournal");
    PathBuf::from(p)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One record's bytes.
fn encode(seq: u64, op: &Op) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(op).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(seq, &payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The records of `bytes` past `applied`; stops at the first one that is
/// not whole (length, checksum, or a sequence number out of order).
pub(super) fn parse(bytes: &[u8], applied: u64) -> Found {
    let mut found = Found::default();
    let mut at = 0usize;
    let mut prev: Option<u64> = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let whole = (|| {
            let head = rest.get(..HEADER)?;
            let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
            let sum = u32::from_le_bytes(head[4..8].try_into().ok()?);
            let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
            if len > MAX_RECORD || prev.is_some_and(|p| seq != p + 1) {
                return None;
            }
            let payload = rest.get(HEADER..HEADER + len)?;
            (checksum(seq, payload) == sum).then_some((seq, payload, HEADER + len))
        })();
        let Some((seq, payload, n)) = whole else {
            found.torn = rest.len();
            break;
        };
        if seq > applied {
            match serde_json::from_slice(payload) {
                Ok(op) => found.ops.push((seq, op)),
                Err(_) => {
                    found.torn = rest.len();
                    break;
                }
            }
        }
        prev = Some(seq);
        at += n;
    }
    found
}

/// Read the journal at `path` (missing: empty).
pub(super) fn read(path: &Path, applied: u64) -> io::Result<Found> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(parse(&bytes, applied))
}

impl Journal {
    /// Open (creating) the journal for appending after record `last`; the
    /// caller truncates it once what it holds is replayed and committed.
    pub(super) fn open(path: &Path, last: u64) -> io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        // One process keeps a catalog's journal: a lock held as long as the
        // file is open (flock: released by the kernel if the process dies).
        // A process killed a moment ago may still hold it while the kernel
        // tears it down: wait up to a second before taking the lock for a
        // live mount's.
        let mut guest = true;
        for _ in 0..100 {
            // SAFETY: flock on a descriptor this function owns (`file`); the
            // lock goes with the file's last descriptor.
            let locked = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            };
            if locked == 0 {
                guest = false;
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            last,
            len,
            broken: false,
            guest,
        })
    }

    /// Append `op` as the next record, in one `write()`; its sequence number.
    pub(super) fn append(&mut self, op: &Op) -> io::Result<u64> {
        if self.guest {
            return Ok(self.last);
        }
        if self.broken {
            return Err(io::Error::other(
                "the journal could not be repaired after a failed write",
            ));
        }
        let seq = self.last + 1;
        let rec = encode(seq, op)?;
        crate::failpoint!("journal-torn-append", |_| {
            // A write cut in the middle, then the daemon's death.
            let _ = self.file.write_all(&rec[..rec.len() / 2]);
            std::process::abort()
        });
        if let Err(e) = self.file.write_all(&rec) {
            // Part of it may be there: cut it off, or no later record could
            // be read back.
            if let Err(e2) = self.file.set_len(self.len) {
                tracing::error!("{}: cannot cut a failed append: {e2}", self.path.display());
                self.broken = true;
            }
            return Err(e);
        }
        self.last = seq;
        self.len += rec.len() as u64;
        Ok(seq)
    }

    /// Empty the journal (every record in it is committed).
    pub(super) fn truncate(&mut self) -> io::Result<()> {
        if self.guest {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlink(n: u64) -> Op {
        Op::Unlink {
            parent: 1,
            name: format!("f{n}"),
            ino: 100 + n,
            open: false,
            now: 5,
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_the_journal() {
        let mut bytes = Vec::new();
        for s in 1..=3 {
            bytes.extend(encode(s, &unlink(s)).unwrap());
        }
        let f = parse(&bytes, 0);
        assert_eq!(f.ops.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(f.ops[1].1, unlink(2));
        assert_eq!(f.torn, 0);
        // Past the applied number only.
        assert_eq!(parse(&bytes, 2).ops.len(), 1);
        // Half a fourth record: ignored, counted as torn.
        let four = encode(4, &unlink(4)).unwrap();
        let mut torn = bytes.clone();
        torn.extend_from_slice(&four[..four.len() / 2]);
        let f = parse(&torn, 0);
        assert_eq!(f.ops.len(), 3);
        assert_eq!(f.torn, four.len() / 2);
        // A flipped bit in the second record ends the journal there.
        let mut bad = bytes.clone();
        let second = encode(1, &unlink(1)).unwrap().len() + HEADER + 3;
        bad[second] ^= 1;
        assert_eq!(parse(&bad, 0).ops.len(), 1);
    }

    #[test]
    fn appends_are_numbered_on_and_truncation_keeps_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_of(&dir.path().join("u.sqlite"));
        let mut j = Journal::open(&p, 41).unwrap();
        assert_eq!(j.append(&unlink(1)).unwrap(), 42);
        assert_eq!(j.append(&unlink(2)).unwrap(), 43);
        assert_eq!(read(&p, 0).unwrap().ops.len(), 2);
        assert_eq!(read(&p, 42).unwrap().ops.len(), 1);
        j.truncate().unwrap();
        assert_eq!(j.append(&unlink(3)).unwrap(), 44);
        let f = read(&p, 43).unwrap();
        assert_eq!(f.ops, vec![(44, unlink(3))]);
    }
}
