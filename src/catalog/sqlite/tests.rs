//! The catalog's journal and its sharing, tested on real SQLite files: what a
//! change gives is what reading it back gives, the journal's replay, the
//! changes answered from the journal alone, and two openers of one catalog
//! (a running mount and a second process: an NFS server, `fsck`, a second
//! mount).

use super::journal::{self, Op};
use super::writer::journal_seq;
use super::{OpenOptions, SqliteCatalog};
use crate::catalog::{CheckDepth, Kind, Maintenance, Move, Namespace, NewNode, SetAttrs, ROOT_INO};
use rusqlite::Connection;
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
    let check = cat.check(CheckDepth::Pages).unwrap();
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
    // No batch need be open (no write lock held) for a change to be
    // answered from the journal: the queue waits for the committer.
    assert_eq!(cat.log.lock().queue.len(), 1);
    let c = cat.create(ROOT_INO, "c.mov", &new_file(), now).unwrap();
    let e = cat.create(ROOT_INO, "e.mov", &b_new, now).unwrap();
    let gone = cat.unlink(ROOT_INO, "e.mov", e.ino, false, now).unwrap();
    assert_eq!((gone.nlink, gone.purged), (0, Some(Some(content.clone()))));
    assert_eq!(cat.log.lock().queue.len(), 4);
    // A change the slow way (a rename) applies the queue before itself.
    cat.rename(
        &Move::new(ROOT_INO, "c.mov", c.ino, ROOT_INO, "d.mov"),
        None,
        now,
    )
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
    use super::deferred::with_attrs;
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
    cat.create(ROOT_INO, "x.mov", &new_file(), now).unwrap();
    cat.unlink(ROOT_INO, "b.mov", b.ino, false, now).unwrap();
    cat.create(ROOT_INO, "c.mov", &new_file(), now).unwrap();
    assert_eq!(cat.log.lock().queue.len(), 3);
    // The unlink fails the batch; the replay leaves it out, applies
    // the rest once.
    assert_eq!(names(&cat), ["a.mov", "c.mov", "x.mov"]);
    cat.create(ROOT_INO, "e.mov", &new_file(), now).unwrap();
    drop(cat);
    let cat = open(&p);
    assert_eq!(names(&cat), ["a.mov", "c.mov", "e.mov", "x.mov"]);
    let check = cat.check(CheckDepth::Pages).unwrap();
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

#[test]
fn two_openers_of_one_catalog_never_get_the_same_inode_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.sqlite");
    let now = SystemTime::now();
    let owner = open(&p);
    let guest = open(&p);
    assert!(guest.writer.lock().guest);
    // More creates than one reservation holds, interleaved, so that each
    // opener reserves (and the owner's committer reserves ahead) while the
    // other holds numbers.
    let mut seen = std::collections::HashMap::new();
    for i in 0..1500 {
        for (cat, tag) in [(&owner, "o"), (&guest, "g")] {
            let name = format!("{tag}{i}");
            let made = cat.create(ROOT_INO, &name, &new_file(), now).unwrap();
            if let Some(other) = seen.insert(made.ino, name.clone()) {
                panic!("inode {} handed out twice: {other} and {name}", made.ino);
            }
        }
    }
    drop(guest);
    drop(owner);
    let cat = open(&p);
    assert_eq!(cat.list(ROOT_INO).unwrap().len(), 3000);
    let check = cat.check(CheckDepth::Pages).unwrap();
    assert!(check.damage.is_empty(), "{:?}", check.damage);
}

#[test]
fn the_committer_leaves_the_write_lock_free_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.sqlite");
    let now = SystemTime::now();
    let cat = open(&p);
    // Another writer, as the app has it: no busy handler at all, so that
    // each try shows whether the lock is free at that moment.
    let app = Connection::open(&p).unwrap();
    app.busy_timeout(std::time::Duration::ZERO).unwrap();
    let (mut free, mut tries) = (0, 0);
    let start = std::time::Instant::now();
    let mut i = 0;
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        // A burst of changes answered from the journal, and a slow one
        // (a rename) that opens a batch itself.
        for _ in 0..50 {
            i += 1;
            cat.create(ROOT_INO, &format!("f{i}"), &new_file(), now)
                .unwrap();
        }
        let f = cat
            .create(ROOT_INO, &format!("r{i}"), &new_file(), now)
            .unwrap();
        cat.rename(
            &Move::new(
                ROOT_INO,
                &format!("r{i}"),
                f.ino,
                ROOT_INO,
                &format!("s{i}"),
            ),
            None,
            now,
        )
        .unwrap();
        tries += 1;
        if app.execute_batch("BEGIN IMMEDIATE; COMMIT;").is_ok() {
            free += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    eprintln!("the write lock was free at {free} of {tries} tries");
    // Before, the lock was held from one batch to the next while a burst
    // lasted: a try without a busy handler almost never won it.
    assert!(
        free * 3 >= tries,
        "the write lock was free at {free} of {tries} tries during the burst"
    );
    drop(cat);
    let cat = open(&p);
    let check = cat.check(CheckDepth::Pages).unwrap();
    assert!(check.damage.is_empty(), "{:?}", check.damage);
}

#[test]
fn syncs_that_arrive_together_share_one_and_each_finds_its_change_committed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.sqlite");
    let cat = std::sync::Arc::new(open(&p));
    let (threads, each) = (8, 40);
    std::thread::scope(|s| {
        for t in 0..threads {
            let cat = cat.clone();
            let p = p.clone();
            s.spawn(move || {
                let other = Connection::open(&p).unwrap();
                for i in 0..each {
                    let name = format!("t{t}-{i}.mov");
                    cat.create(ROOT_INO, &name, &new_file(), SystemTime::now())
                        .unwrap();
                    cat.sync().unwrap();
                    // Committed when the sync returns (and synced: the WAL
                    // was synced after the commit that holds it).
                    let n: i64 = other
                        .query_row(
                            "SELECT count(*) FROM file_nodes WHERE label = ?1",
                            [&name],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(n, 1, "{name} not committed when its sync returned");
                }
            });
        }
    });
    let c = cat.commits();
    assert_eq!(c.syncs_asked, threads * each);
    assert!(
        c.syncs >= 1 && c.syncs < c.syncs_asked,
        "no sync was shared: {c:?}"
    );
    eprintln!("{} syncs for {} asked", c.syncs, c.syncs_asked);
}
