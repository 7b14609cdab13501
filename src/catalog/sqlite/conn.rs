//! Connections: the writer (its state in `writer.rs`; journaled changes in
//! batches, see `commit.rs`; the rest one IMMEDIATE transaction each,
//! through [`Shared::write_after`]) and a small pool of read-only readers
//! (WAL: reads never wait for the writer).
//!
//! `synchronous=NORMAL`: a commit survives a crash of the daemon;
//! [`Shared::sync`] makes commits survive power loss by syncing the
//! WAL, which the file system core does on `fsync`. Checkpoints (copying the
//! WAL back into the database, with two syncs) never run inside a request's
//! commit: the writer counts committed changes and wakes the checkpointer every
//! [`super::writer::CHECKPOINT_EVERY`]; its own automatic checkpoint stays as
//! a backstop at [`super::writer::WAL_BACKSTOP_PAGES`] should the thread ever
//! fall behind.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::deferred::Log;
use super::writer::Writer;
use super::{Shared, SqliteCatalog};
use crate::catalog::{CatalogError, Ino};

pub(super) const MAX_READERS: usize = 8;
/// How much of the catalog a reader maps (`PRAGMA mmap_size`) instead of
/// reading page by page into a cache of its own. A reader's page cache is
/// small (SQLite's 2 MB), one per pooled reader, and emptied whenever a
/// commit changed the WAL; the rows of a folder the app wrote lie in random
/// order on disk (random-UUID keys), so the first listing of a 50,000-entry
/// folder read 70,000 pages with `pread`. Mapped, a page is read once into
/// the system's page cache and shared by every reader. Address space, not
/// memory: the catalog's size at most.
const READER_MMAP_BYTES: i64 = 1 << 30;

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
                c.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
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

    /// SQLite's `outside_version` on the writer's connection: it moves when
    /// another connection commits, and this catalog's other connections
    /// only read (and checkpoint PASSIVE, which leaves it alone), so it moves
    /// for other processes' commits. When it moves, what was derived from
    /// the whole catalog (the cycle heads) is found again.
    pub(super) fn outside_version(&self) -> Result<u64, CatalogError> {
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
    pub(super) fn sync(&self) -> Result<(), CatalogError> {
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

/// The WAL as `sync` keeps it.
#[derive(Default)]
pub(super) struct WalSync {
    file: Option<File>,
    /// Every sync ticket up to this one is durable.
    done: u64,
}
