//! The writer's state: its connection and open batch ([`Writer`]), the
//! rules for holding SQLite's write lock (a batch is committed after
//! [`HOLD_MAX`] and the lock then left free for at least [`YIELD_MIN`], so
//! the MarkBase app and a second markbase process never starve), the busy
//! handler that waits for theirs, inode numbers reserved in commits of their
//! own, the journal's number in `mb_meta`, and the checkpointer the writer
//! wakes.
//!
//! Everything that changes the catalog goes through here: `commit.rs` (the
//! batch and the committer), `deferred.rs` (changes answered before SQLite
//! applies them) and `conn.rs` (one-off write transactions) build on it,
//! and it on none of them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::catalog::CatalogError;
use crate::sync::unchecked::{Condvar, Mutex};

/// Inode numbers reserved at a time ([`reserve`]).
pub(super) const INO_BATCH: u64 = 1024;
/// The first inode number a new catalog hands out (below: the root and
/// the rendered folders).
pub(super) const FIRST_INO: u64 = 16;
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
/// A batch is committed at once when it holds this many changes.
pub(super) const BATCH_MAX: u64 = 2048;
/// The longest the mount holds SQLite's write lock at a time: a batch is
/// committed once it has been open this long, whatever is left to apply.
pub(super) const HOLD_MAX: Duration = Duration::from_millis(20);
/// After each batch the write lock is left free at least this long, and at
/// least as long as the batch held it: another writer of the catalog (the
/// MarkBase app, a second markbase process), sleeping in its busy handler,
/// wakes to find it free. A change that needs SQLite meanwhile commits on
/// its own at once rather than opening a batch.
pub(super) const YIELD_MIN: Duration = Duration::from_millis(5);

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
    /// WAL syncs made (`sync`).
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

    /// Open a batch (take SQLite's write lock) unless one is open.
    pub(super) fn begin(&mut self) -> Result<(), CatalogError> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.held_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Roll the open batch back (its changes are in the journal, or failed).
    pub(super) fn rollback(&mut self) -> Result<(), CatalogError> {
        self.held_since = None;
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// The batch was committed: leave the write lock free for
    /// [`YIELD_MIN`], or as long as the batch held it, whichever is longer.
    /// A change committed on its own while the lock is left free does not
    /// extend the time.
    fn released(&mut self) {
        let held = self.held_since.take().map(|t| t.elapsed());
        if self.guest || self.yielding() {
            return;
        }
        let free = held.unwrap_or_default().max(YIELD_MIN);
        self.free_until = Some(Instant::now() + free);
    }

    /// Commit the open batch, with the last applied record's number.
    pub(super) fn commit(&mut self, unsettled: &AtomicU64) -> Result<(), CatalogError> {
        if self.failed {
            return Ok(());
        }
        if self.batch == 0 {
            // The committer may have begun a batch that nothing joined.
            if !self.conn.is_autocommit() {
                self.conn.execute_batch("COMMIT")?;
                self.released();
            }
            return Ok(());
        }
        crate::failpoint!("journal-before-commit");
        // A guest's changes are in no journal: the number is the owner's.
        let done = if self.guest {
            Ok(())
        } else {
            set_journal_seq(&self.conn, self.applied)
        }
        .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        if let Err(e) = done {
            tracing::error!("committing a batch of {} changes: {e}", self.batch);
            self.failed = true;
            return Err(e);
        }
        self.released();
        self.committed(self.batch);
        unsettled.fetch_sub(self.batch, Ordering::AcqRel);
        self.batch = 0;
        crate::failpoint!("journal-after-commit");
        Ok(())
    }
}

/// The journal's sequence number that the catalog's last commit holds.
pub(super) fn journal_seq(conn: &Connection) -> Result<u64, CatalogError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM mb_meta WHERE key='journal_seq'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(super) fn set_journal_seq(conn: &Connection, seq: u64) -> Result<(), CatalogError> {
    conn.prepare_cached("INSERT OR REPLACE INTO mb_meta(key, value) VALUES('journal_seq', ?1)")?
        .execute([seq.to_string()])?;
    Ok(())
}

/// Reserve [`INO_BATCH`] inode numbers in the catalog: past its `next_ino`
/// and past `floor` (what this process has handed out), whichever is higher,
/// in a transaction of its own. The catalog's counter is read and moved in
/// one statement under SQLite's write lock, so two processes on one library
/// (a mount and an NFS server, two mounts) never get the same numbers; and a
/// reservation is never part of a batch, whose rollback would give numbers
/// already handed out back to the other process.
pub(super) fn reserve(w: &mut Writer, floor: u64) -> Result<(u64, u64), CatalogError> {
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
