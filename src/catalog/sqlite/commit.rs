//! The commit path of journaled changes: the open batch, its commits, the
//! committer thread, and the replay of the journal ([`super::journal`]).
//!
//! A change runs in the writer's open transaction (the batch); once it
//! succeeded its record is appended to the journal and the caller is
//! answered. (Creates, and unlinks of fresh files, are answered from the
//! journal alone and applied later, in order: `deferred.rs`.) One that fails part-way is undone by rolling the batch back and
//! replaying the journal (a savepoint per change would copy every page it
//! touches; the core's checks make such failures rare). The first
//! change of a batch wakes the committer, which commits [`BATCH_WINDOW`]
//! later (at once past [`BATCH_MAX`] changes), with the journal's sequence
//! number in `mb_meta.journal_seq`. Whatever reads through the reader pool
//! (a cache miss of the core), syncs (`fsync`), writes synchronously
//! ([`Shared::write`]), reserves inode numbers or closes the catalog
//! commits the batch first: SQLite's readers see only what is committed.
//!
//! Should a commit fail (a full disk), the batch is rolled back and the
//! catalog is marked failed; the next change, read or sync replays the
//! journal past `journal_seq` first ([`Shared::recover`]), the same
//! replay that an open runs after a crash. Nothing answered is lost: it is
//! in the journal until a commit holds it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::sync::unchecked::{Condvar, Mutex};

use super::deferred::Log;
use super::journal::{self, Op};
use super::mutate::{
    create_in, created_record, exchange_in, link_in, purge_open_in, rename_in, set_attrs_in,
    unlink_in,
};
use super::time::from_ns;
use super::writer::{journal_seq, set_journal_seq, Writer, BATCH_MAX, HOLD_MAX};
use super::xattr::{delete_xattr_in, put_xattr_in};
use super::Shared;
use crate::catalog::{
    CatalogError, Ino, Kind, Move, NewNode, NodeRecord, Renamed, SetAttrs, Unlinked, XattrSet,
};

/// Longest a change waits in the queue before the committer applies it.
pub(super) const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// What applying an [`Op`] gave.
pub(super) enum Applied {
    Record(Box<NodeRecord>),
    Unlinked(Unlinked),
    Renamed(Renamed),
    Done,
}

impl Applied {
    pub(super) fn record(self) -> Result<NodeRecord, CatalogError> {
        match self {
            Applied::Record(r) => Ok(*r),
            _ => Err(Self::other("a record")),
        }
    }

    pub(super) fn unlinked(self) -> Result<Unlinked, CatalogError> {
        match self {
            Applied::Unlinked(u) => Ok(u),
            _ => Err(Self::other("an unlink's result")),
        }
    }

    pub(super) fn renamed(self) -> Result<Renamed, CatalogError> {
        match self {
            Applied::Renamed(r) => Ok(r),
            _ => Err(Self::other("a rename's result")),
        }
    }

    fn other(wanted: &str) -> CatalogError {
        CatalogError::Backend(format!("a change gave something else than {wanted}"))
    }
}

impl Op {
    pub(super) fn create(ino: Ino, parent: Ino, name: &str, new: &NewNode, now: i64) -> Op {
        Op::Create {
            ino,
            node_id: uuid::Uuid::new_v4().to_string(),
            parent,
            name: name.to_string(),
            kind: new.kind.code().to_string(),
            perm: new.perm,
            uid: new.uid,
            gid: new.gid,
            rdev: new.rdev,
            target: new.target.clone(),
            content: new.content.clone(),
            now,
        }
    }

    pub(super) fn rename(m: &Move, replaced: Option<Ino>, now: i64) -> Op {
        Op::Rename {
            parent: m.parent,
            name: m.name.to_string(),
            ino: m.ino,
            new_parent: m.new_parent,
            new_name: m.new_name.to_string(),
            replaced,
            now,
        }
    }

    pub(super) fn exchange(m: &Move, other: Ino, now: i64) -> Op {
        Op::Exchange {
            parent: m.parent,
            name: m.name.to_string(),
            ino: m.ino,
            new_parent: m.new_parent,
            new_name: m.new_name.to_string(),
            other,
            now,
        }
    }

    /// The move a rename or an exchange record makes (any other record
    /// makes none).
    pub(super) fn moved(&self) -> Result<Move<'_>, CatalogError> {
        match self {
            Op::Rename {
                parent,
                name,
                ino,
                new_parent,
                new_name,
                ..
            }
            | Op::Exchange {
                parent,
                name,
                ino,
                new_parent,
                new_name,
                ..
            } => Ok(Move::new(*parent, name, *ino, *new_parent, new_name)),
            _ => Err(CatalogError::Backend(
                "a journal record that moves nothing".into(),
            )),
        }
    }

    pub(super) fn set_attrs(ino: Ino, a: &SetAttrs) -> Op {
        let ns = |t: Option<std::time::SystemTime>| t.map(super::time::to_ns);
        Op::SetAttrs {
            ino,
            perm: a.perm,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            atime: ns(a.atime),
            mtime: ns(a.mtime),
            ctime: ns(a.ctime),
        }
    }
}

/// The committer thread's mailbox.
#[derive(Default)]
pub(super) struct Committer {
    state: Mutex<Mailbox>,
    wake: Condvar,
}

#[derive(Default)]
struct Mailbox {
    /// Something waits to be committed.
    asked: bool,
    /// ... and should not wait for the window to end.
    hurry: bool,
    /// A batch holds SQLite's write lock: commit it [`HOLD_MAX`] after it opened.
    held: bool,
    stop: bool,
}

impl Committer {
    fn post(&self, f: impl FnOnce(&mut Mailbox)) {
        let mut g = self.state.lock();
        f(&mut g);
        self.wake.notify_one();
    }

    /// A batch opened: commit it [`BATCH_WINDOW`] from now.
    pub(super) fn ask(&self) {
        self.post(|m| m.asked = true);
    }

    /// The queue is long: commit as soon as the lock has been left free
    /// long enough.
    pub(super) fn hurry(&self) {
        self.post(|m| (m.asked, m.hurry) = (true, true));
    }

    /// A change opened a batch (and took SQLite's write lock).
    pub(super) fn ask_held(&self) {
        self.post(|m| (m.asked, m.held) = (true, true));
    }

    pub(super) fn stop(&self) {
        self.post(|m| m.stop = true);
    }

    /// Apply and commit what is queued [`BATCH_WINDOW`] after the first
    /// change (at once past [`BATCH_MAX`]; a batch that holds the write lock
    /// [`HOLD_MAX`] after it opened), never before the lock has been left
    /// free for the time the last batch set ([`Shared::settle`]); until told
    /// to stop.
    pub(super) fn run(&self, cat: &Shared) {
        let mut free_until = Instant::now();
        loop {
            {
                let mut g = self.state.lock();
                while !g.asked && !g.stop {
                    self.wake.wait(&mut g);
                }
                let opened = Instant::now();
                loop {
                    if g.stop {
                        return;
                    }
                    let due = if g.held {
                        opened + HOLD_MAX
                    } else if g.hurry {
                        free_until
                    } else {
                        free_until.max(opened + BATCH_WINDOW)
                    };
                    let left = due.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.wake.wait_for(&mut g, left);
                }
                (g.asked, g.hurry, g.held) = (false, false, false);
            }
            free_until = cat.settle();
        }
    }
}

impl Shared {
    /// The change `op` in the open batch, through `f`, then journaled
    /// (both locks held, the queue applied: see [`Shared::lock_all`]).
    pub(super) fn journaled<T>(
        &self,
        log: &mut Log,
        w: &mut Writer,
        op: &Op,
        f: impl FnOnce(&Connection) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        // (The committer may have begun the batch: nothing in it yet.)
        let first = w.batch == 0;
        w.begin()?;
        // No savepoint per change (SQLite would copy every page a change
        // touches to undo it): a change that fails part-way, which the
        // core's checks make rare, is undone by rolling the batch back and
        // replaying the journal.
        let out = f(&w.conn).and_then(|v| {
            crate::failpoint!("journal-before-append");
            Ok((log.journal.append(op)?, v))
        });
        let (seq, v) = match out {
            Ok(x) => x,
            Err(e) => {
                if first {
                    if let Err(e2) = w.rollback() {
                        tracing::error!("undoing a failed change: {e2}");
                        w.failed = true;
                    }
                } else {
                    w.failed = true;
                    self.recover(log, w)?;
                }
                return Err(e);
            }
        };
        w.batch += 1;
        if !w.guest {
            w.applied = seq;
        }
        self.unsettled.fetch_add(1, Ordering::AcqRel);
        log.forget(op);
        crate::failpoint!("journal-appended");
        if w.guest {
            // No journal here: the change commits before it is answered.
            w.commit(&self.unsettled)?;
        } else if w.yielding() || w.batch >= BATCH_MAX {
            // No batch is held open while the lock is left free for other
            // writers, nor past BATCH_MAX. Logged; the next request replays
            // the journal.
            let _ = w.commit(&self.unsettled);
        } else {
            self.committer.ask_held();
        }
        Ok(v)
    }

    /// `op` as a journaled change.
    pub(super) fn journal_op(&self, op: &Op) -> Result<Applied, CatalogError> {
        let (mut log, mut w) = self.lock_all()?;
        self.journaled(&mut log, &mut w, op, |tx| self.apply(tx, op))
    }

    /// Apply and commit every journaled change (before a read, a sync, a close).
    pub(super) fn flush(&self) -> Result<(), CatalogError> {
        if self.unsettled.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let (mut log, mut w) = self.lock_all()?;
        w.commit(&self.unsettled)?;
        log.truncate_if_settled(&w);
        Ok(())
    }

    /// Commit the open batch, leaving the queue for the committer (the
    /// batch holds SQLite's write lock: no wait for another writer).
    pub(super) fn commit_batch(&self) -> Result<(), CatalogError> {
        let _log = self.log.lock();
        let mut w = self.writer.lock();
        if w.failed || w.conn.is_autocommit() {
            return Ok(());
        }
        w.commit(&self.unsettled)
    }

    /// After a failed commit or apply: roll back, replay the journal past
    /// what the catalog holds (which includes whatever is queued), commit.
    pub(super) fn recover(&self, log: &mut Log, w: &mut Writer) -> Result<(), CatalogError> {
        if !w.failed {
            return Ok(());
        }
        let _ = w.rollback();
        w.batch = 0;
        log.forget_all();
        if w.guest {
            // Nothing answered is lost: a guest answers after its commit.
            w.failed = false;
            self.unsettled.store(0, Ordering::Release);
            return Ok(());
        }
        let applied = journal_seq(&w.conn)?;
        let found = journal::read(&w.journal_path, applied)?;
        self.replay(&w.conn, &found.ops)?;
        tracing::warn!(
            "catalog: replayed {} journaled changes after a failed commit",
            found.ops.len()
        );
        w.applied = found.ops.last().map_or(applied, |(s, _)| *s);
        w.failed = false;
        // What is still queued was replayed: applying it skips it.
        self.unsettled
            .store(log.queue.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Apply `ops` in order, in one transaction that records the last one's
    /// sequence number; a change that no longer applies is logged and left.
    pub(super) fn replay(
        &self,
        conn: &Connection,
        ops: &[(u64, Op)],
    ) -> Result<usize, CatalogError> {
        let Some(last) = ops.last().map(|(s, _)| *s) else {
            return Ok(0);
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut skipped = 0;
        let done = (|| -> Result<(), CatalogError> {
            for (seq, op) in ops {
                conn.execute_batch("SAVEPOINT op")?;
                match self.apply(conn, op) {
                    Ok(_) => conn.execute_batch("RELEASE op")?,
                    Err(e) => {
                        tracing::warn!("journal record {seq} no longer applies ({e}): {op:?}");
                        skipped += 1;
                        conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
                    }
                }
                crate::failpoint!("journal-replay-applied");
            }
            set_journal_seq(conn, last)?;
            crate::failpoint!("journal-replay-before-commit");
            Ok(conn.execute_batch("COMMIT")?)
        })();
        if let Err(e) = done {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(skipped)
    }

    /// Make the change `op` in `tx`: the one code path of a change, live
    /// and replayed.
    pub(super) fn apply(&self, tx: &Connection, op: &Op) -> Result<Applied, CatalogError> {
        Ok(match op {
            Op::Create {
                ino,
                node_id,
                parent,
                name,
                kind,
                perm,
                uid,
                gid,
                rdev,
                target,
                content,
                now,
            } => {
                let new = NewNode {
                    kind: Kind::from_code(kind).ok_or(CatalogError::Invalid("journaled kind"))?,
                    perm: *perm,
                    uid: *uid,
                    gid: *gid,
                    rdev: *rdev,
                    target: target.clone(),
                    content: content.clone(),
                };
                let in_catalog = create_in(tx, *ino, node_id, *parent, name, &new, *now)?;
                Applied::Record(Box::new(created_record(
                    *ino, node_id, &new, in_catalog, *now,
                )))
            }
            Op::Unlink {
                parent,
                name,
                ino,
                open,
                now,
            } => Applied::Unlinked(unlink_in(tx, *parent, name, *ino, *open, *now)?),
            Op::Rename { replaced, now, .. } => {
                Applied::Renamed(rename_in(tx, &op.moved()?, *replaced, *now)?)
            }
            Op::Exchange { other, now, .. } => {
                exchange_in(tx, &op.moved()?, *other, *now)?;
                Applied::Done
            }
            Op::Link {
                ino,
                new_parent,
                new_name,
                now,
            } => {
                link_in(tx, *ino, *new_parent, new_name, *now)?;
                Applied::Record(Box::new(self.record(tx, *ino)?))
            }
            Op::SetAttrs {
                ino,
                perm,
                uid,
                gid,
                size,
                atime,
                mtime,
                ctime,
            } => {
                let a = SetAttrs {
                    perm: *perm,
                    uid: *uid,
                    gid: *gid,
                    size: *size,
                    atime: atime.map(from_ns),
                    mtime: mtime.map(from_ns),
                    ctime: ctime.map(from_ns),
                };
                set_attrs_in(tx, *ino, &a)?;
                Applied::Record(Box::new(self.record(tx, *ino)?))
            }
            Op::CommitFile {
                ino,
                size,
                mtime,
                ctime,
            } => {
                let a = SetAttrs {
                    size: Some(*size),
                    mtime: Some(from_ns(*mtime)),
                    ctime: Some(from_ns(*ctime)),
                    ..Default::default()
                };
                set_attrs_in(tx, *ino, &a)?;
                Applied::Done
            }
            Op::Purge { ino } => {
                purge_open_in(tx, *ino)?;
                Applied::Done
            }
            Op::SetXattr {
                ino,
                name,
                value,
                create,
                replace,
                now,
            } => {
                let how = XattrSet {
                    create: *create,
                    replace: *replace,
                };
                put_xattr_in(tx, *ino, name, value, how, *now)?;
                Applied::Done
            }
            Op::RemoveXattr { ino, name, now } => {
                delete_xattr_in(tx, *ino, name, *now)?;
                Applied::Done
            }
        })
    }
}
