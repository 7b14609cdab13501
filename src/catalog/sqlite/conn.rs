//! Connections: one writer behind a mutex (journaled changes in batches,
//! see `commit.rs`; the rest one IMMEDIATE transaction each, through
//! [`Shared::write_after`]), a small pool of
//! read-only readers (WAL: reads never wait for the writer), inode numbers
//! reserved in batches, and checkpoints in a thread of their own.
//!
//! `synchronous=NORMAL`: a commit survives a crash of the daemon;
//! [`Shared::sync_wal`] makes commits survive power loss by syncing the
//! WAL, which the file system core does on `fsync`. Checkpoints (copying the
//! WAL back into the database, with two syncs) never run inside a request's
//! commit: the writer counts committed changes and wakes the checkpointer every
//! [`CHECKPOINT_EVERY`]; its own automatic checkpoint stays as a backstop at
//! [`WAL_BACKSTOP_PAGES`] should the thread ever fall behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use crate::sync::unchecked::{Condvar, Mutex};

use super::deferred::Log;
use super::{Shared, SqliteCatalog};
use crate::catalog::{CatalogError, Ino};

pub(super) const INO_BATCH: u64 = 1024;
pub(super) const FIRST_INO: u64 = 16;
pub(super) const MAX_READERS: usize = 8;
/// Commits between background checkpoints (a create or unlink writes ~10
/// WAL pages: ~20 MiB of WAL between checkpoints; the fewer checkpoints,
/// the more often one copies a hot page once for many commits).
pub(super) const CHECKPOINT_EVERY: u64 = 512;
/// The writer checkpoints by itself only past this many WAL pages (256 MiB).
pub(super) const WAL_BACKSTOP_PAGES: i64 = 65_536;
/// The WAL file is cut back to this size when it restarts.
pub(super) const WAL_KEEP_BYTES: i64 = 64 << 20;
/// Writer page cache (negative: KiB). Creates and unlinks touch pages all
/// over the indexes of random node ids; SQLite's 2 MiB default re-reads them.
pub(super) const WRITER_CACHE_KIB: i64 = 16_384;

pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Changes committed since the checkpointer was last woken.
    pub(super) since_checkpoint: u64,
    pub(super) checkpoints: Arc<Checkpoints>,
    /// The journal's file (for a replay after a failed commit) and whether
    /// this process is a guest without one (see `journal.rs`).
    pub(super) journal_path: PathBuf,
    pub(super) guest: bool,
    /// Journaled changes in the open transaction (0: none open).
    pub(super) batch: u64,
    /// The last journal record applied to the connection (committed or in
    /// the open batch): what a commit stores as `journal_seq`.
    pub(super) applied: u64,
    /// A commit failed: the journal is replayed before anything else.
    pub(super) failed: bool,
    /// When the open batch took SQLite's write lock.
    pub(super) held_since: Option<std::time::Instant>,
    /// Until then SQLite's write lock is left free for other writers (see
    /// `commit::YIELD_MIN`): changes commit one by one, no batch is held.
    pub(super) free_until: Option<std::time::Instant>,
    /// Commits and the changes in them, for metrics (shared with readers).
    pub(super) counts: Arc<CommitCounters>,
}

/// What [`Writer::committed`] counts; read without the writer's lock.
#[derive(Default, Debug)]
pub(super) struct CommitCounters {
    pub(super) commits: std::sync::atomic::AtomicU64,
    pub(super) changes: std::sync::atomic::AtomicU64,
    /// WAL syncs made (`sync_wal`).
    pub(super) syncs: std::sync::atomic::AtomicU64,
}

impl Writer {
    /// Is the write lock being left free for other writers now?
    pub(super) fn yielding(&self) -> bool {
        self.free_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// `n` changes were committed: wake the checkpointer every
    /// [`CHECKPOINT_EVERY`].
    pub(super) fn committed(&mut self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.counts.commits.fetch_add(1, Relaxed);
        self.counts.changes.fetch_add(n, Relaxed);
        self.since_checkpoint += n;
        if self.since_checkpoint >= CHECKPOINT_EVERY {
            self.since_checkpoint = 0;
            self.checkpoints.ask(false);
        }
    }
}

/// Reserve [`INO_BATCH`] inode numbers in the catalog: past its `next_ino`
/// and past `floor` (what this process has handed out), whichever is higher,
/// in a transaction of its own. The catalog's counter is read and moved in
/// one statement under SQLite's write lock, so two processes on one library
/// (a mount and an NFS server, two mounts) never get the same numbers; and a
/// reservation is never part of a batch, whose rollback would give numbers
/// already handed out back to the other process.
fn reserve(w: &mut Writer, floor: u64) -> Result<(u64, u64), CatalogError> {
    if !w.conn.is_autocommit() {
        return Err(CatalogError::Backend(
            "inode numbers reserved inside a batch".into(),
        ));
    }
    let end: i64 = w
        .conn
        .prepare_cached(
            "UPDATE mb_meta SET value = CAST(max(CAST(value AS INTEGER), ?1) + ?2 AS TEXT)
             WHERE key='next_ino' RETURNING CAST(value AS INTEGER)",
        )?
        .query_row(params![floor as i64, INO_BATCH as i64], |r| r.get(0))?;
    let end = end as u64;
    Ok((end - INO_BATCH, end))
}

impl Log {
    /// Reserve an inode number; a batch of them is reserved in its own
    /// commit (after the open batch's): see [`reserve`].
    pub(super) fn alloc_ino(
        &mut self,
        w: &mut Writer,
        unsettled: &AtomicU64,
    ) -> Result<Ino, CatalogError> {
        if let Some(ino) = self.take_ino() {
            return Ok(ino);
        }
        w.commit(unsettled)?;
        (self.next_ino, self.end_ino) = reserve(w, self.end_ino.max(self.next_ino))?;
        self.take_ino()
            .ok_or_else(|| CatalogError::Backend("no inode numbers reserved".into()))
    }

    /// Keep inode numbers reserved ahead of creates: the committer's part,
    /// between batches, so that a create rarely reserves (and commits) on
    /// the request path. The numbers follow on from the ones in hand when no
    /// other process reserved meanwhile; else they wait as the spare range.
    pub(super) fn reserve_ahead(&mut self, w: &mut Writer) -> Result<(), CatalogError> {
        if self.spare.is_some() || self.end_ino.saturating_sub(self.next_ino) >= INO_BATCH / 2 {
            return Ok(());
        }
        let (start, end) = reserve(w, self.end_ino.max(self.next_ino))?;
        if start == self.end_ino {
            self.end_ino = end;
        } else {
            self.spare = Some((start, end));
        }
        Ok(())
    }

    /// The next reserved inode number, if one is left.
    pub(super) fn take_ino(&mut self) -> Option<Ino> {
        if self.next_ino >= self.end_ino {
            (self.next_ino, self.end_ino) = self.spare.take()?;
        }
        self.next_ino += 1;
        Some(self.next_ino - 1)
    }
}

/// The writer's busy handler: while another writer of the catalog (the
/// app, a second markbase process) holds the write lock, try again every
/// 0.25-2 ms, for up to 10 s. SQLite's own handler sleeps 1, 2, 5, 10, 15,
/// 20, 25 ms... between tries: a change of the mount would wait out a
/// 25 ms sleep for a lock the app held for one.
pub(super) fn busy_retry(tries: i32) -> bool {
    /// Tries in all: the first few are shorter, the rest 2 ms each (10 s).
    const TRIES: i32 = 5_003;
    let wait = Duration::from_micros(250 << tries.clamp(0, 3));
    if tries >= TRIES {
        return false;
    }
    std::thread::sleep(wait);
    true
}

/// The background checkpointer's mailbox.
#[derive(Default)]
pub(super) struct Checkpoints {
    /// (checkpoints asked for, stop)
    pub(super) state: Mutex<(u64, bool)>,
    pub(super) wake: Condvar,
}

impl Checkpoints {
    pub(super) fn ask(&self, stop: bool) {
        let mut g = self.state.lock();
        g.0 += 1;
        g.1 |= stop;
        self.wake.notify_one();
    }

    /// Run checkpoints on `path` until told to stop.
    pub(super) fn run(&self, path: &Path) {
        crate::platform::background_priority();
        let mut conn: Option<Connection> = None;
        let mut done = 0;
        loop {
            {
                let mut g = self.state.lock();
                while g.0 == done && !g.1 {
                    self.wake.wait(&mut g);
                }
                if g.1 {
                    return;
                }
                done = g.0;
            }
            if conn.is_none() {
                conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .and_then(|c| c.busy_timeout(Duration::from_millis(100)).map(|_| c))
                .map_err(|e| tracing::warn!("checkpointer: {e}"))
                .ok();
            }
            if let Some(c) = &conn {
                // PASSIVE: copies what no reader still needs, waits for no one.
                if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!("checkpoint: {e}");
                }
            }
        }
    }
}

pub(super) struct PooledReader<'a> {
    pub(super) cat: &'a Shared,
    pub(super) conn: Option<Connection>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("reader present until drop")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut pool = self.cat.readers.lock();
            if pool.len() < MAX_READERS {
                pool.push(c);
            }
        }
    }
}

impl Drop for SqliteCatalog {
    fn drop(&mut self) {
        self.committer.stop();
        if let Some(h) = self.committer_thread.lock().take() {
            let _ = h.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!("closing the catalog: {e} (the journal keeps the changes)");
        }
        self.checkpoints.ask(true);
    }
}

impl Shared {
    /// A reader (after every journaled change is committed: readers see
    /// only what is).
    pub(super) fn reader(&self) -> Result<PooledReader<'_>, CatalogError> {
        crate::catalog::count_query();
        self.flush()?;
        self.pooled_reader()
    }

    /// A reader of what concerns `inos` alone (their records, listings,
    /// parents, extended attributes). The open batch is committed first if
    /// there is one (this process holds the lock: no wait), and the queue
    /// applied and committed only if a queued change touches one of `inos`:
    /// so a read waits for another writer of the catalog (the app) only when
    /// it needs a change that is answered but not yet in SQLite.
    pub(super) fn reader_for(&self, inos: &[Ino]) -> Result<PooledReader<'_>, CatalogError> {
        crate::catalog::count_query();
        if self.unsettled.load(std::sync::atomic::Ordering::Acquire) > 0 {
            let needed = self.log.lock().touches(inos);
            if needed {
                self.flush()?;
            } else if !self.writer.lock().conn.is_autocommit() {
                self.commit_batch()?;
            }
        }
        self.pooled_reader()
    }

    fn pooled_reader(&self) -> Result<PooledReader<'_>, CatalogError> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(Duration::from_secs(10))?;
                c
            }
        };
        Ok(PooledReader {
            cat: self,
            conn: Some(conn),
        })
    }

    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        self.write_after(|_, _| Ok(()), |tx, ()| f(tx))
    }

    /// One write transaction, `f`, after `before` (which runs under the
    /// writer's lock, outside the transaction: inode numbers are reserved
    /// in commits of their own). Every commit of the writer goes through
    /// here, which counts them for the checkpointer.
    pub(super) fn write_after<P, T>(
        &self,
        before: impl FnOnce(&mut Log, &mut Writer) -> Result<P, CatalogError>,
        f: impl FnOnce(&Connection, P) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let (mut log, mut w) = self.lock_all()?;
        w.commit(&self.unsettled)?;
        let p = before(&mut log, &mut w)?;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx, p)?;
        tx.commit()?;
        w.committed(1);
        Ok(out)
    }

    /// Give inode numbers to catalog nodes that have none yet (first sight).
    pub(super) fn assign_inos(&self, node_ids: &[String]) -> Result<Vec<Ino>, CatalogError> {
        self.write_after(
            |log, w| {
                node_ids
                    .iter()
                    .map(|_| log.alloc_ino(w, &self.unsettled))
                    .collect()
            },
            |tx, inos: Vec<Ino>| {
                let mut out = Vec::with_capacity(node_ids.len());
                for (id, ino) in node_ids.iter().zip(inos) {
                    // Another thread may have assigned one meanwhile: keep the first.
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO mb_inodes(ino, node_id) VALUES(?1, ?2)",
                    )?
                    .execute(params![ino as i64, id])?;
                    let got: i64 = tx
                        .prepare_cached("SELECT ino FROM mb_inodes WHERE node_id=?1")?
                        .query_row([id], |r| r.get(0))?;
                    out.push(got as Ino);
                }
                Ok(out)
            },
        )
    }

    /// SQLite's `data_version` on the writer's connection: it moves when
    /// another connection commits, and this catalog's other connections
    /// only read (and checkpoint PASSIVE, which leaves it alone), so it moves
    /// for other processes' commits. When it moves, what was derived from
    /// the whole catalog (the cycle heads) is found again.
    pub(super) fn data_version(&self) -> Result<u64, CatalogError> {
        let v: i64 = self
            .writer
            .lock()
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let mut seen = self.seen_version.lock();
        if seen.is_some_and(|s| s != v) {
            *self.shape.lock() = None;
            self.outside_change
                .store(true, std::sync::atomic::Ordering::Release);
        }
        *seen = Some(v);
        Ok(v as u64)
    }

    /// Make every change made so far durable: commit the batch, then sync
    /// the WAL (commits are in it until a checkpoint copies them back).
    ///
    /// Syncs that arrive together share one (group commit, as a file
    /// system's journal does): each caller takes a ticket before anything
    /// else, so its changes are older than the ticket; the one syncing takes
    /// the WAL's lock, notes the last ticket handed out, commits and syncs.
    /// Everything of that ticket and the ones before is then durable, and a
    /// caller that waited on the lock meanwhile finds its ticket covered and
    /// returns without a sync of its own.
    pub(super) fn sync_wal(&self) -> Result<(), CatalogError> {
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.sync_asked.fetch_add(1, SeqCst) + 1;
        let mut wal = self.wal.lock();
        if wal.done >= ticket {
            return Ok(());
        }
        let upto = self.sync_asked.load(SeqCst);
        self.flush()?;
        if wal.file.is_none() {
            let mut p = self.path.clone().into_os_string();
            p.push("-wal");
            match File::open(PathBuf::from(p)) {
                Ok(f) => wal.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = wal.file.as_ref() {
            f.sync_data()?;
            self.counts.syncs.fetch_add(1, SeqCst);
        }
        wal.done = upto;
        Ok(())
    }
}

/// The WAL as `sync_wal` keeps it.
#[derive(Default)]
pub(super) struct WalSync {
    file: Option<File>,
    /// Every sync ticket up to this one is durable.
    done: u64,
}
