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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::conn::Writer;
use super::deferred::Log;
use super::journal::{self, Op};
use super::mutate::{
    create_in, created_record, exchange_in, link_in, purge_open_in, rename_in, set_attrs_in,
    unlink_in,
};
use super::time::from_ns;
use super::xattr::{delete_xattr_in, put_xattr_in};
use super::Shared;
use crate::catalog::{
    CatalogError, Ino, Kind, NewNode, NodeRecord, Renamed, SetAttrs, Unlinked, XattrSet,
};

/// Longest a change waits in the open batch before the committer commits it.
pub(super) const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// A batch is committed at once when it holds this many changes.
pub(super) const BATCH_MAX: u64 = 2048;

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

/// The journal's sequence number that the catalog's last commit holds.
pub(super) fn journal_seq(conn: &Connection) -> Result<u64, CatalogError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM mb_meta WHERE key='journal_seq'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn set_journal_seq(conn: &Connection, seq: u64) -> Result<(), CatalogError> {
    conn.prepare_cached("INSERT OR REPLACE INTO mb_meta(key, value) VALUES('journal_seq', ?1)")?
        .execute([seq.to_string()])?;
    Ok(())
}

impl Writer {
    /// Commit the open batch, with the last applied record's number.
    pub(super) fn commit(&mut self, unsettled: &AtomicU64) -> Result<(), CatalogError> {
        if self.failed {
            return Ok(());
        }
        if self.batch == 0 {
            // The committer may have begun a batch that nothing joined.
            if !self.conn.is_autocommit() {
                self.conn.execute_batch("COMMIT")?;
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
        self.committed(self.batch);
        unsettled.fetch_sub(self.batch, Ordering::AcqRel);
        self.batch = 0;
        crate::failpoint!("journal-after-commit");
        Ok(())
    }
}

/// The committer thread's mailbox.
#[derive(Default)]
pub(super) struct Committer {
    state: std::sync::Mutex<Mailbox>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Mailbox {
    /// Something waits to be committed.
    asked: bool,
    /// ... and should not wait for the window to end.
    hurry: bool,
    stop: bool,
}

impl Committer {
    fn post(&self, f: impl FnOnce(&mut Mailbox)) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
        self.wake.notify_one();
    }

    /// A batch opened: commit it [`BATCH_WINDOW`] from now.
    pub(super) fn ask(&self) {
        self.post(|m| m.asked = true);
    }

    /// The queue is long: commit now.
    pub(super) fn hurry(&self) {
        self.post(|m| (m.asked, m.hurry) = (true, true));
    }

    pub(super) fn stop(&self) {
        self.post(|m| m.stop = true);
    }

    /// Apply and commit each batch [`BATCH_WINDOW`] after it opened, until
    /// told to stop.
    pub(super) fn run(&self, cat: &Shared) {
        loop {
            {
                let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while !g.asked && !g.stop {
                    g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                if g.stop {
                    return;
                }
                let until = std::time::Instant::now() + BATCH_WINDOW;
                while !g.hurry && !g.stop {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    g = self
                        .wake
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                (g.asked, g.hurry) = (false, false);
            }
            cat.settle();
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
        if w.conn.is_autocommit() {
            w.conn.execute_batch("BEGIN IMMEDIATE")?;
        }
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
                    if let Err(e2) = w.conn.execute_batch("ROLLBACK") {
                        tracing::error!("undoing a failed change: {e2}");
                        w.failed = true;
                    }
                    log.batch_open = false;
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
        // Creates and unlinks may be queued while the batch (and SQLite's
        // write lock) is open: whatever is queued applies without waiting
        // for another writer of the file.
        log.batch_open = !w.guest;
        if w.guest {
            // No journal here: the change commits before it is answered.
            w.commit(&self.unsettled)?;
        } else if w.batch == 1 {
            self.committer.ask();
        } else if w.batch >= BATCH_MAX {
            // Logged; the next request replays the journal.
            let _ = w.commit(&self.unsettled);
            log.batch_open = false;
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
        let done = w.commit(&self.unsettled);
        log.batch_open = false;
        done?;
        log.truncate_if_settled(&w);
        Ok(())
    }

    /// After a failed commit or apply: roll back, replay the journal past
    /// what the catalog holds (which includes whatever is queued), commit.
    pub(super) fn recover(&self, log: &mut Log, w: &mut Writer) -> Result<(), CatalogError> {
        if !w.failed {
            return Ok(());
        }
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        w.batch = 0;
        log.batch_open = false;
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
            Op::Rename {
                parent,
                name,
                ino,
                new_parent,
                new_name,
                replaced,
                now,
            } => Applied::Renamed(rename_in(
                tx,
                *parent,
                name,
                *ino,
                *new_parent,
                new_name,
                *replaced,
                *now,
            )?),
            Op::Exchange {
                parent,
                name,
                ino,
                new_parent,
                new_name,
                other,
                now,
            } => {
                exchange_in(tx, *parent, name, *ino, *new_parent, new_name, *other, *now)?;
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

#[cfg(test)]
mod tests {
    use super::super::{OpenOptions, SqliteCatalog};
    use super::*;
    use crate::catalog::{Catalog, ROOT_INO};
    use std::time::SystemTime;

    fn open(p: &std::path::Path) -> SqliteCatalog {
        let opts = OpenOptions {
            uid: 0,
            gid: 0,
            create: true,
        };
        SqliteCatalog::open(p, &opts).unwrap()
    }

    fn new_file() -> NewNode {
        NewNode {
            kind: Kind::File,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            target: None,
            content: None,
        }
    }

    fn names(cat: &SqliteCatalog) -> Vec<String> {
        let mut v: Vec<String> = cat
            .list(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_created_nodes_record_is_what_reading_it_back_gives() {
        let dir = tempfile::tempdir().unwrap();
        let cat = open(&dir.path().join("u.sqlite"));
        let now = SystemTime::now();
        let folder = NewNode {
            kind: Kind::Dir,
            perm: 0o750,
            ..new_file()
        };
        let d = cat.create(ROOT_INO, "Clips", &folder, now).unwrap();
        let mut cases = vec![d.clone()];
        let with_content = NewNode {
            content: Some(dir.path().join("content/ab/abc")),
            uid: 7,
            gid: 8,
            ..new_file()
        };
        cases.push(cat.create(d.ino, "a.mov", &with_content, now).unwrap());
        cases.push(cat.create(d.ino, ".DS_Store", &with_content, now).unwrap());
        let link = NewNode {
            kind: Kind::Symlink,
            target: Some(b"a.mov".to_vec()),
            perm: 0o777,
            ..new_file()
        };
        cases.push(cat.create(d.ino, "l", &link, now).unwrap());
        let fifo = NewNode {
            kind: Kind::Fifo,
            ..new_file()
        };
        cases.push(cat.create(ROOT_INO, "p", &fifo, now).unwrap());
        for made in cases {
            let read = cat.get(made.ino).unwrap();
            assert_eq!(made, read, "{}", made.node_id);
        }
    }

    #[test]
    fn an_open_replays_what_was_journaled_but_not_committed_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.sqlite");
        let now = SystemTime::now();
        let (a, seq) = {
            let cat = open(&p);
            let a = cat.create(ROOT_INO, "a.mov", &new_file(), now).unwrap();
            cat.create(ROOT_INO, "b.mov", &new_file(), now).unwrap();
            let seq = cat.log.lock().journal.last;
            (a, seq)
        };
        // Records the last run answered but did not commit: a create, an
        // unlink of a.mov, a rename; then half a record (a torn write).
        let jp = journal::path_of(&p);
        let mut j = journal::Journal::open(&jp, seq).unwrap();
        let c = Op::create(a.ino + 100, ROOT_INO, "c.mov", &new_file(), 5);
        j.append(&c).unwrap();
        j.append(&Op::Unlink {
            parent: ROOT_INO,
            name: "a.mov".into(),
            ino: a.ino,
            open: false,
            now: 6,
        })
        .unwrap();
        drop(j);
        let cat = open(&p);
        assert_eq!(names(&cat), ["b.mov", "c.mov"]);
        assert!(cat.get(a.ino).is_err(), "a.mov's inode is gone");
        // The journal is empty after the replay; records applied are not
        // applied twice even if the file still held them.
        assert_eq!(std::fs::metadata(&jp).unwrap().len(), 0);
        drop(cat);
        let mut j = journal::Journal::open(&jp, seq).unwrap();
        j.append(&c).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&jp).unwrap();
        bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
        std::fs::write(&jp, &bytes).unwrap();
        let cat = open(&p);
        assert_eq!(names(&cat), ["b.mov", "c.mov"]);
        let check = cat.self_check().unwrap();
        assert!(check.damage.is_empty(), "{:?}", check.damage);
        assert!(
            check.notes.iter().any(|n| n.contains("torn last record")),
            "{:?}",
            check.notes
        );
    }

    #[test]
    fn creates_and_unlinks_of_fresh_files_are_answered_first_and_applied_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.sqlite");
        let now = SystemTime::now();
        let cat = open(&p);
        // The first create in a folder learns where its children go...
        cat.create(ROOT_INO, "a.mov", &new_file(), now).unwrap();
        assert!(cat.log.lock().queue.is_empty());
        // ... the next ones are answered from the journal alone.
        let content = dir.path().join("content/b");
        let b_new = NewNode {
            content: Some(content.clone()),
            ..new_file()
        };
        let b = cat.create(ROOT_INO, "b.mov", &b_new, now).unwrap();
        assert_eq!(cat.log.lock().queue.len(), 1, "queued, not applied");
        // A read applies and commits the queue first.
        assert_eq!(cat.get(b.ino).unwrap(), b);
        let gone = cat.unlink(ROOT_INO, "b.mov", b.ino, false, now).unwrap();
        assert_eq!((gone.nlink, gone.purged), (0, Some(Some(content.clone()))));
        // The read committed the batch: that unlink opened the next one.
        assert!(cat.log.lock().queue.is_empty());
        let c = cat.create(ROOT_INO, "c.mov", &new_file(), now).unwrap();
        let e = cat.create(ROOT_INO, "e.mov", &b_new, now).unwrap();
        let gone = cat.unlink(ROOT_INO, "e.mov", e.ino, false, now).unwrap();
        assert_eq!((gone.nlink, gone.purged), (0, Some(Some(content.clone()))));
        assert_eq!(cat.log.lock().queue.len(), 3);
        // A change the slow way (a rename) applies the queue before itself.
        cat.rename(ROOT_INO, "c.mov", c.ino, ROOT_INO, "d.mov", None, now)
            .unwrap();
        assert_eq!(names(&cat), ["a.mov", "d.mov"]);
        assert!(cat.get(b.ino).is_err());
        let (_, trash) = cat.trash().unwrap();
        assert!(trash.contains(&content), "{trash:?}");
        drop(cat);
        assert_eq!(names(&open(&p)), ["a.mov", "d.mov"]);
    }

    #[test]
    fn attributes_and_sizes_set_from_the_journal_are_what_reading_back_gives() {
        use super::super::deferred::with_attrs;
        let dir = tempfile::tempdir().unwrap();
        let cat = open(&dir.path().join("u.sqlite"));
        let now = SystemTime::now();
        let side = cat
            .create(ROOT_INO, "._side", &new_file(), now)
            .unwrap()
            .ino;
        let d = NewNode {
            kind: Kind::Dir,
            ..new_file()
        };
        let d = cat.create(ROOT_INO, "d", &d, now).unwrap().ino;
        cat.create(d, "first.mov", &new_file(), now).unwrap();
        let t = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::new(s, 123_456_789);
        for (parent, name) in [(d, "a.mov"), (ROOT_INO, "b.mov"), (ROOT_INO, "._c")] {
            let f = cat.create(parent, name, &new_file(), now).unwrap();
            cat.commit_file(f.ino, 77, t(1_700_000_000), t(1_700_000_001))
                .unwrap();
            let a = SetAttrs {
                perm: Some(0o4750),
                uid: Some(501),
                gid: Some(20),
                size: Some(9),
                atime: Some(t(1_600_000_000)),
                mtime: Some(t(1_650_000_000)),
                ctime: Some(t(1_690_000_000)),
            };
            assert!(!cat.log.lock().queue.is_empty(), "{name}: queued");
            let made = cat.set_attrs(f.ino, &a).unwrap();
            let only_times = SetAttrs {
                mtime: Some(t(1_660_000_000)),
                ..Default::default()
            };
            let made2 = cat.set_attrs(f.ino, &only_times).unwrap();
            assert_eq!(made2, with_attrs(&made, &only_times));
            assert_eq!(cat.get(f.ino).unwrap(), made2, "{name}");
        }
        assert!(cat.get(side).is_ok());
    }

    #[test]
    fn a_queued_change_that_no_longer_applies_is_left_out_and_the_rest_applied() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.sqlite");
        let now = SystemTime::now();
        let cat = open(&p);
        cat.create(ROOT_INO, "a.mov", &new_file(), now).unwrap();
        let b = cat.create(ROOT_INO, "b.mov", &new_file(), now).unwrap();
        cat.flush().unwrap();
        // Another process deletes b.mov's rows; this one has not seen it
        // yet and unlinks it from what it knows.
        let other = Connection::open(&p).unwrap();
        other
            .execute("DELETE FROM file_nodes WHERE node_id=?1", [&b.node_id])
            .unwrap();
        other
            .execute("DELETE FROM mb_inodes WHERE ino=?1", [b.ino as i64])
            .unwrap();
        drop(other);
        // The first change of a batch applies at once (and opens it).
        cat.create(ROOT_INO, "x.mov", &new_file(), now).unwrap();
        assert!(cat.log.lock().queue.is_empty());
        cat.unlink(ROOT_INO, "b.mov", b.ino, false, now).unwrap();
        cat.create(ROOT_INO, "c.mov", &new_file(), now).unwrap();
        assert_eq!(cat.log.lock().queue.len(), 2);
        // The unlink fails the batch; the replay leaves it out, applies
        // the rest once.
        assert_eq!(names(&cat), ["a.mov", "c.mov", "x.mov"]);
        cat.create(ROOT_INO, "e.mov", &new_file(), now).unwrap();
        drop(cat);
        let cat = open(&p);
        assert_eq!(names(&cat), ["a.mov", "c.mov", "e.mov", "x.mov"]);
        let check = cat.self_check().unwrap();
        assert!(check.damage.is_empty(), "{:?}", check.damage);
    }

    #[test]
    fn a_second_opener_is_a_guest_that_neither_replays_nor_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.sqlite");
        let now = SystemTime::now();
        let owner = open(&p);
        owner.create(ROOT_INO, "a.mov", &new_file(), now).unwrap();
        let seq = owner.log.lock().journal.last;
        assert!(seq > 0);
        // fsck while mounted: a guest, which must not replay the owner's
        // uncommitted records (they would be applied twice).
        let guest = open(&p);
        assert!(guest.writer.lock().guest);
        guest.create(ROOT_INO, "b.mov", &new_file(), now).unwrap();
        assert_eq!(guest.writer.lock().batch, 0, "a guest commits at once");
        owner.create(ROOT_INO, "c.mov", &new_file(), now).unwrap();
        drop(guest);
        drop(owner);
        let cat = open(&p);
        assert_eq!(names(&cat), ["a.mov", "b.mov", "c.mov"]);
        let w = cat.writer.lock();
        assert_eq!(journal_seq(&w.conn).unwrap(), seq + 1);
    }
}
