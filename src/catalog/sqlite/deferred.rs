//! Changes answered before SQLite sees them: the front of the journal.
//!
//! Some changes need nothing from SQLite to be answered: a create (the new
//! node's record is known: the same [`created_record`] a live create
//! returns); a file's size and times at close (nothing to answer); and, for
//! a file this process created and that still has its one name, an unlink
//! (no other link; its content file, to delete) or new attributes (its
//! record, kept here, with them: [`with_attrs`]). Such a change is checked
//! by the core, appended to the journal (one `write()`), queued, and
//! answered; the committer thread applies the queue to the
//! writer's connection through the same [`Shared::apply`] a replay runs, and
//! commits it, [`super::commit::BATCH_WINDOW`] later. A request thread never
//! waits for SQLite on that path.
//!
//! Everything else takes both locks, in order (the [`Log`], then the
//! writer), and applies the queue first ([`Shared::lock_all`]), so SQLite
//! sees the changes in journal order; so does every read through the reader
//! pool (`unsettled` counts what is journaled and not yet committed). A
//! queued change that fails to apply (another process changed those rows
//! meanwhile) fails the batch: it is rolled back and the journal replayed,
//! the change logged and left out, as at a mount after a crash.
//!
//! What the log knows without SQLite (`places`: where a folder's new
//! children go; `fresh`: the files this process created, with their records)
//! is learned from the changes made through it and dropped on any change
//! that could make it wrong: a rename, link or slow unlink, a failed batch,
//! a commit by another process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use crate::sync::unchecked::MutexGuard;

use super::journal::{self, Journal, Op};
use super::mutate::{catalog_parent, created_record, place, Place};
use super::time::to_ns;
use super::writer::{reserve, Writer, BATCH_MAX, HOLD_MAX, INO_BATCH, YIELD_MIN};
use super::Shared;
use crate::catalog::{
    CatalogError, Ino, Kind, NewNode, NodeRecord, SetAttrs, Unlinked, UNFILED_INO,
};

/// Queued changes past which creates and unlinks apply at once again (the
/// committer is behind).
const QUEUE_MAX: usize = 4 * BATCH_MAX as usize;
/// The committer applies the queue this many changes at a time, looking at
/// the clock between chunks.
const SETTLE_CHUNK: usize = 64;
/// Fresh files remembered (each ~400 bytes); past this, they are forgotten
/// and remembering starts over.
const FRESH_MAX: usize = 16_384;

/// The front of the journal (locked before the writer).
pub(super) struct Log {
    pub(super) journal: Journal,
    /// Journaled changes not yet applied to the writer's connection, in
    /// order (taken with [`Log::take_queued`]).
    pub(super) queue: Vec<(u64, Op)>,
    /// How many queued changes touch each inode (the node, and the folder
    /// it is made in or removed from): a read of anything else needs no
    /// commit first (see [`Shared::reader_for`]).
    dirty: HashMap<Ino, u32>,
    /// Inode numbers reserved and not yet handed out: `next_ino..end_ino`.
    pub(super) next_ino: u64,
    pub(super) end_ino: u64,
    /// A further range reserved ahead, when another process had reserved
    /// past `end_ino` (see `conn.rs`).
    pub(super) spare: Option<(u64, u64)>,
    /// Where new children of a folder go, by folder.
    places: HashMap<Ino, Place>,
    /// Files created by this process and still as created: one name, and
    /// their content file.
    fresh: HashMap<Ino, Fresh>,
}

struct Fresh {
    parent: Ino,
    name: String,
    /// Its record as SQLite will have it once the queue is applied.
    record: NodeRecord,
}

impl Log {
    pub(super) fn new(journal: Journal, next_ino: u64) -> Log {
        Log {
            journal,
            queue: Vec::new(),
            dirty: HashMap::new(),
            next_ino,
            end_ino: next_ino,
            spare: None,
            places: HashMap::new(),
            fresh: HashMap::new(),
        }
    }

    /// Drop what `op`, made the slow way, may have made wrong.
    pub(super) fn forget(&mut self, op: &Op) {
        match op {
            Op::Create { .. } => {}
            Op::SetAttrs { ino, .. }
            | Op::CommitFile { ino, .. }
            | Op::SetXattr { ino, .. }
            | Op::RemoveXattr { ino, .. } => {
                self.fresh.remove(ino);
            }
            Op::Unlink { ino, .. } | Op::Link { ino, .. } | Op::Purge { ino } => {
                self.fresh.remove(ino);
                self.places.remove(ino);
            }
            Op::Rename { ino, replaced, .. } => {
                self.fresh.remove(ino);
                if let Some(r) = replaced {
                    self.fresh.remove(r);
                }
                // A folder moved in or out of the catalog takes its
                // subfolders with it.
                self.places.clear();
            }
            Op::Exchange { ino, other, .. } => {
                self.fresh.remove(ino);
                self.fresh.remove(other);
                self.places.clear();
            }
        }
    }

    /// Queue `op` (journaled as `seq`).
    fn enqueue(&mut self, seq: u64, op: Op) {
        for ino in touched(&op).into_iter().flatten() {
            *self.dirty.entry(ino).or_default() += 1;
        }
        self.queue.push((seq, op));
    }

    /// The first `n` queued changes (all of them past the queue's length),
    /// out of the queue.
    pub(super) fn take_queued(&mut self, n: usize) -> Vec<(u64, Op)> {
        let n = n.min(self.queue.len());
        let ops: Vec<_> = self.queue.drain(..n).collect();
        for (_, op) in &ops {
            for ino in touched(op).into_iter().flatten() {
                if let Some(c) = self.dirty.get_mut(&ino) {
                    *c -= 1;
                    if *c == 0 {
                        self.dirty.remove(&ino);
                    }
                }
            }
        }
        ops
    }

    /// Does a queued change touch any of `inos`?
    pub(super) fn touches(&self, inos: &[Ino]) -> bool {
        !self.dirty.is_empty() && inos.iter().any(|i| self.dirty.contains_key(i))
    }

    pub(super) fn forget_all(&mut self) {
        self.places.clear();
        self.fresh.clear();
    }

    fn learn(&mut self, parent: Ino, name: &str, record: &NodeRecord) {
        if record.kind == Kind::Dir {
            return;
        }
        if self.fresh.len() >= FRESH_MAX {
            self.fresh.clear();
        }
        self.fresh.insert(
            record.ino,
            Fresh {
                parent,
                name: name.to_string(),
                record: record.clone(),
            },
        );
    }

    /// The content of fresh file `ino`, forgotten, if `parent`/`name` is its name.
    fn take_fresh(&mut self, ino: Ino, parent: Ino, name: &str) -> Option<Option<PathBuf>> {
        let f = self.fresh.get(&ino)?;
        if f.parent != parent || f.name != name {
            return None;
        }
        self.fresh.remove(&ino).map(|f| f.record.content)
    }

    /// Empty the journal once everything in it is committed.
    pub(super) fn truncate_if_settled(&mut self, w: &Writer) {
        if self.journal.len < journal::TRUNCATE_AT
            || !self.queue.is_empty()
            || w.batch > 0
            || w.failed
            || self.journal.last != w.applied
        {
            return;
        }
        if let Err(e) = self.journal.truncate() {
            tracing::warn!("{}: {e}", self.journal.path().display());
        }
    }
}

impl Shared {
    /// Both locks, with the queue applied to the writer's batch (a failed
    /// batch recovered first).
    pub(super) fn lock_all(
        &self,
    ) -> Result<(MutexGuard<'_, Log>, MutexGuard<'_, Writer>), CatalogError> {
        crate::catalog::count_query();
        let mut log = self.log.lock();
        let mut w = self.writer.lock();
        if self.outside_change.swap(false, Ordering::AcqRel) {
            log.forget_all();
        }
        self.recover(&mut log, &mut w)?;
        if log.queue.is_empty() {
            return Ok((log, w));
        }
        // The lock first: should another writer keep it past the busy
        // timeout, the queue is still whole (and nothing failed).
        w.begin()?;
        let ops = log.take_queued(usize::MAX);
        if self.apply_queued(&mut w, ops).is_err() {
            self.recover(&mut log, &mut w)?;
        }
        Ok((log, w))
    }

    /// The committer's turn: take SQLite's write lock, apply the queue in
    /// chunks (without holding the log: creates and unlinks go on
    /// meanwhile) until it is empty or the batch has held the lock
    /// [`HOLD_MAX`], commit, reserve inode numbers ahead. Returns until when
    /// the lock is then left free for other writers: [`YIELD_MIN`], or as
    /// long as the batch held it, whichever is longer.
    pub(super) fn settle(&self) -> Instant {
        {
            let mut w = self.writer.lock();
            if w.conn.is_autocommit() && self.unsettled.load(Ordering::Acquire) == 0 {
                return Instant::now();
            }
            if !w.failed {
                // The only wait for another writer: in this thread.
                if let Err(e) = w.begin() {
                    tracing::warn!("committing the journaled changes: {e}; trying again");
                    self.committer.ask();
                    return Instant::now() + YIELD_MIN;
                }
            }
        }
        let mut w = loop {
            let mut log = self.log.lock();
            let ops = log.take_queued(SETTLE_CHUNK);
            let rest = log.queue.len();
            let mut w = self.writer.lock();
            drop(log);
            // A failure is logged and recovered from by `lock_all`.
            let held_long = w.held_since.is_some_and(|t| t.elapsed() >= HOLD_MAX);
            if self.apply_queued(&mut w, ops).is_err() || rest == 0 || held_long {
                break w;
            }
        };
        if let Err(e) = w.commit(&self.unsettled) {
            tracing::error!("committing the journaled changes: {e}");
        }
        let free_until = w.free_until.unwrap_or_else(Instant::now);
        drop(w);
        let mut log = self.log.lock();
        let mut w = self.writer.lock();
        if w.failed {
            drop((log, w));
            if let Err(e) = self.lock_all() {
                tracing::error!("recovering the journaled changes: {e}");
            }
            self.committer.ask();
            return free_until;
        }
        if log.queue.is_empty() && w.batch == 0 {
            log.truncate_if_settled(&w);
        } else {
            self.committer.ask();
        }
        if w.conn.is_autocommit() {
            if let Err(e) = log.reserve_ahead(&mut w) {
                tracing::warn!("reserving inode numbers: {e}");
            }
        }
        free_until
    }

    /// Apply queued changes in the open batch; a failure marks the writer failed.
    fn apply_queued(&self, w: &mut Writer, ops: Vec<(u64, Op)>) -> Result<(), CatalogError> {
        for (seq, op) in ops {
            if w.failed {
                // Replayed from the journal by the recovery.
                continue;
            }
            if seq <= w.applied {
                // Replayed (and committed) by a recovery meanwhile.
                self.unsettled.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let done = w.begin().and_then(|()| self.apply(&w.conn, &op));
            if let Err(e) = done {
                tracing::error!("journal record {seq} does not apply ({e}): {op:?}");
                w.failed = true;
                continue;
            }
            w.batch += 1;
            w.applied = seq;
        }
        if w.failed {
            return Err(CatalogError::Backend(
                "a queued change did not apply".into(),
            ));
        }
        Ok(())
    }

    /// May a change be answered before SQLite applies it?
    fn fast(&self, log: &Log) -> bool {
        !log.journal.guest
            && log.queue.len() < QUEUE_MAX
            && !self.outside_change.load(Ordering::Acquire)
    }

    /// Journal `op` and queue it for the committer.
    fn defer(&self, log: &mut Log, op: Op) -> Result<(), CatalogError> {
        crate::failpoint!("journal-before-append");
        let seq = log.journal.append(&op)?;
        log.enqueue(seq, op);
        self.unsettled.fetch_add(1, Ordering::AcqRel);
        crate::failpoint!("journal-appended");
        match log.queue.len() {
            1 => self.committer.ask(),
            n if n >= BATCH_MAX as usize => self.committer.hurry(),
            _ => {}
        }
        Ok(())
    }

    pub(super) fn create(
        &self,
        parent: Ino,
        name: &str,
        new: &NewNode,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        let now = to_ns(now);
        {
            let mut log = self.log.lock();
            let place = log.places.get(&parent).cloned();
            if let Some(place) = place.filter(|_| self.fast(&log)) {
                if let Some(ino) = log.take_ino() {
                    let op = Op::create(ino, parent, name, new, now);
                    let Op::Create { node_id, .. } = &op else {
                        return Err(CatalogError::Backend("a create that is not one".into()));
                    };
                    let in_catalog = catalog_parent(&place, new.kind, name).is_some();
                    let record = created_record(ino, node_id, new, in_catalog, now);
                    self.defer(&mut log, op)?;
                    log.learn(parent, name, &record);
                    return Ok(record);
                }
            }
        }
        let (mut log, mut w) = self.lock_all()?;
        let ino = log.alloc_ino(&mut w, &self.unsettled)?;
        let op = Op::create(ino, parent, name, new, now);
        let record = self
            .journaled(&mut log, &mut w, &op, |tx| self.apply(tx, &op))?
            .record()?;
        if let Ok(p) = place(&w.conn, parent) {
            log.places.insert(parent, p);
        }
        log.learn(parent, name, &record);
        Ok(record)
    }

    pub(super) fn unlink(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        open: bool,
        now: SystemTime,
    ) -> Result<Unlinked, CatalogError> {
        self.reshaped_by(&[parent]);
        let op = Op::Unlink {
            parent,
            name: name.to_string(),
            ino,
            open,
            now: to_ns(now),
        };
        {
            let mut log = self.log.lock();
            if self.fast(&log) {
                if let Some(content) = log.take_fresh(ino, parent, name) {
                    self.defer(&mut log, op)?;
                    // What `unlink_in` gives for a file with one name: gone
                    // now, or at its last close.
                    return Ok(Unlinked {
                        ino,
                        nlink: 0,
                        purged: (!open).then_some(content),
                    });
                }
            }
        }
        self.journal_op(&op)?.unlinked()
    }

    /// Set attributes: of a fresh node from the journal alone (its new
    /// record is [`with_attrs`] of the one the log keeps), else at once.
    pub(super) fn set_attrs(&self, ino: Ino, a: &SetAttrs) -> Result<NodeRecord, CatalogError> {
        if ino == UNFILED_INO {
            return Err(CatalogError::NotPermitted("Unfiled is virtual"));
        }
        let op = Op::set_attrs(ino, a);
        {
            let mut log = self.log.lock();
            let known = log.fresh.get(&ino).map(|f| with_attrs(&f.record, a));
            if let Some(record) = known.filter(|_| self.fast(&log)) {
                self.defer(&mut log, op)?;
                if let Some(f) = log.fresh.get_mut(&ino) {
                    f.record = record.clone();
                }
                return Ok(record);
            }
        }
        self.journal_op(&op)?.record()
    }

    /// A closed (or synced) file's size and times: nothing to answer, so
    /// queued whenever a batch is open.
    pub(super) fn commit_file(
        &self,
        ino: Ino,
        size: u64,
        mtime: SystemTime,
        ctime: SystemTime,
    ) -> Result<(), CatalogError> {
        let op = Op::CommitFile {
            ino,
            size,
            mtime: to_ns(mtime),
            ctime: to_ns(ctime),
        };
        {
            let mut log = self.log.lock();
            if self.fast(&log) {
                self.defer(&mut log, op)?;
                if let Some(f) = log.fresh.get_mut(&ino) {
                    (f.record.size, f.record.mtime, f.record.ctime) = (size, mtime, ctime);
                }
                return Ok(());
            }
        }
        self.journal_op(&op).map(|_| ())
    }
}

/// `rec` with the attributes `a` sets, as `set_attrs_in` then
/// [`Shared::record`] give them (a unit test holds the two together).
pub(super) fn with_attrs(rec: &NodeRecord, a: &SetAttrs) -> NodeRecord {
    let mut r = rec.clone();
    if let Some(p) = a.perm {
        r.perm = p & 0o7777;
    }
    if let Some(u) = a.uid {
        r.uid = u;
    }
    if let Some(g) = a.gid {
        r.gid = g;
    }
    if let Some(s) = a.size {
        r.size = s;
    }
    r.atime = a.atime.unwrap_or(r.atime);
    r.mtime = a.mtime.unwrap_or(r.mtime);
    r.ctime = a.ctime.unwrap_or(r.ctime);
    r
}

/// The inodes a queued change touches: the node, and the folder it is made
/// in or removed from (whose listing, times and link count change).
fn touched(op: &Op) -> [Option<Ino>; 2] {
    match op {
        Op::Create { ino, parent, .. } | Op::Unlink { ino, parent, .. } => {
            [Some(*ino), Some(*parent)]
        }
        Op::SetAttrs { ino, .. } | Op::CommitFile { ino, .. } => [Some(*ino), None],
        // Never queued; a read of anything waits for them.
        _ => [None, None],
    }
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
