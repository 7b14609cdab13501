//! One conformance suite for every catalog backend (JuiceFS runs one suite
//! against all its metadata engines the same way). Each test takes a factory
//! so that a new backend only adds a line to `backends()`.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use markbase::catalog::sqlite::{OpenOptions, SqliteCatalog};
use markbase::catalog::{Catalog, CatalogError, Kind, Move, NewNode, XattrSet, ROOT_INO};
use rusqlite::Connection;

type Factory = fn(&Path) -> Arc<dyn Catalog>;

fn sqlite(path: &Path) -> Arc<dyn Catalog> {
    Arc::new(
        SqliteCatalog::open(
            path,
            &OpenOptions {
                uid: 1000,
                gid: 1000,
                create: true,
            },
        )
        .expect("open"),
    )
}

fn backends() -> Vec<(&'static str, Factory)> {
    vec![("sqlite", sqlite)]
}

fn file(content: Option<&Path>) -> NewNode {
    NewNode {
        kind: Kind::File,
        perm: 0o644,
        uid: 1,
        gid: 1,
        rdev: 0,
        target: None,
        content: content.map(Into::into),
    }
}

fn dir() -> NewNode {
    NewNode {
        kind: Kind::Dir,
        perm: 0o755,
        uid: 1,
        gid: 1,
        rdev: 0,
        target: None,
        content: None,
    }
}

fn each(test: impl Fn(&str, Factory, &Path)) {
    for (name, f) in backends() {
        let t = tempfile::tempdir().unwrap();
        test(name, f, &t.path().join("cat.sqlite"));
    }
}

fn v1_rows(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT node_id||'|'||coalesce(parent_id,'')||'|'||label||'|'||node_type||'|'||coalesce(size,'')||'|'||coalesce(created_at,'')||'|'||coalesce(updated_at,'') FROM file_nodes ORDER BY node_id").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn a_library_keeps_its_identity() {
    each(|name, open, path| {
        let id = open(path).library_id();
        assert!(!id.is_nil(), "{name}");
        assert_eq!(open(path).library_id(), id, "{name}: same after reopen");
        let other = path.with_file_name("other.sqlite");
        assert_ne!(open(&other).library_id(), id, "{name}: one per library");
    });
}

#[test]
fn inode_numbers_are_stable_and_never_reused() {
    each(|name, open, path| {
        let cat = open(path);
        let a = cat
            .create(ROOT_INO, "a", &dir(), SystemTime::now())
            .unwrap();
        let b = cat
            .create(a.ino, "b.mov", &file(None), SystemTime::now())
            .unwrap();
        let listed = cat.list(a.ino).unwrap();
        assert_eq!(listed[0].ino, b.ino, "{name}");
        let un = cat
            .unlink(a.ino, "b.mov", b.ino, true, SystemTime::now())
            .unwrap();
        assert_eq!(un.nlink, 0);
        assert!(un.purged.is_none(), "{name}: open inodes are kept");
        cat.purge(b.ino).unwrap();
        let c = cat
            .create(a.ino, "b.mov", &file(None), SystemTime::now())
            .unwrap();
        assert!(c.ino > b.ino, "{name}: inode {} reused", b.ino);
        drop(cat);
        let cat = open(path);
        assert_eq!(
            cat.list(ROOT_INO).unwrap()[0].ino,
            a.ino,
            "{name}: same inode after reopen"
        );
        assert_eq!(cat.list(a.ino).unwrap()[0].ino, c.ino);
        let d = cat
            .create(a.ino, "d", &file(None), SystemTime::now())
            .unwrap();
        assert!(d.ino > c.ino, "{name}: allocation continues after reopen");
    });
}

#[test]
fn opening_adds_tables_but_leaves_v1_rows_alone() {
    each(|name, open, path| {
        let c = Connection::open(path).unwrap();
        c.execute_batch(markbase::catalog::sqlite::V1_SCHEMA)
            .unwrap();
        c.execute_batch(
            "INSERT INTO file_nodes VALUES('11111111-1111-4111-8111-111111111111', NULL, 'Top', 'folder', NULL, '2024-01-01T00:00:00.000000Z', '2024-01-02T00:00:00.000000Z');
             INSERT INTO file_nodes VALUES('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'x.mov', 'file', 5, NULL, NULL);",
        )
        .unwrap();
        drop(c);
        let before = v1_rows(path);
        let cat = open(path);
        let top = cat.list(ROOT_INO).unwrap();
        assert_eq!(top.len(), 1);
        let _ = cat.get(top[0].ino).unwrap();
        let _ = cat.list(top[0].ino).unwrap();
        drop(cat);
        let _ = open(path);
        assert_eq!(
            v1_rows(path),
            before,
            "{name}: reading must not change v1 rows"
        );
    });
}

#[test]
fn junk_and_special_nodes_stay_out_of_file_nodes() {
    each(|name, open, path| {
        let cat = open(path);
        let now = SystemTime::now();
        cat.create(ROOT_INO, ".DS_Store", &file(None), now).unwrap();
        cat.create(ROOT_INO, "._clip.mov", &file(None), now)
            .unwrap();
        let trash = cat.create(ROOT_INO, ".Trashes", &dir(), now).unwrap();
        cat.create(trash.ino, "inside.mov", &file(None), now)
            .unwrap();
        let mut link = file(None);
        link.kind = Kind::Symlink;
        link.target = Some(b"x".to_vec());
        cat.create(ROOT_INO, "sym", &link, now).unwrap();
        let real = cat.create(ROOT_INO, "real.mov", &file(None), now).unwrap();
        assert!(real.in_catalog);
        // Other processes see changes once committed (at once after a sync).
        cat.sync().unwrap();
        let labels: Vec<String> = {
            let c = Connection::open(path).unwrap();
            let mut st = c.prepare("SELECT label FROM file_nodes").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(labels, vec!["real.mov".to_string()], "{name}");
        let names: Vec<String> = cat
            .list(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names.len(), 5);
    });
}

#[test]
fn hard_links_keep_the_catalog_row_alive() {
    each(|name, open, path| {
        let cat = open(path);
        let now = SystemTime::now();
        let a = cat.create(ROOT_INO, "A", &dir(), now).unwrap();
        let b = cat.create(ROOT_INO, "B", &dir(), now).unwrap();
        let f = cat.create(a.ino, "one.mov", &file(None), now).unwrap();
        let l = cat.link(f.ino, b.ino, "two.mov", now).unwrap();
        assert_eq!(l.nlink, 2, "{name}");
        let un = cat.unlink(a.ino, "one.mov", f.ino, false, now).unwrap();
        assert_eq!(un.nlink, 1);
        let r = cat.get(f.ino).unwrap();
        assert!(
            r.in_catalog,
            "{name}: the remaining name takes over the file_nodes row"
        );
        let c = Connection::open(path).unwrap();
        let label: String = c
            .query_row(
                "SELECT label FROM file_nodes WHERE node_id=?1",
                [&r.node_id],
                |x| x.get(0),
            )
            .unwrap();
        assert_eq!(label, "two.mov");
    });
}

#[test]
fn catalog_folder_with_contents_cannot_become_junk() {
    each(|name, open, path| {
        let cat = open(path);
        let now = SystemTime::now();
        let a = cat.create(ROOT_INO, "Footage", &dir(), now).unwrap();
        cat.create(a.ino, "clip.mov", &file(None), now).unwrap();
        let trash = cat.create(ROOT_INO, ".Trashes", &dir(), now).unwrap();
        let r = cat.rename(
            &Move::new(ROOT_INO, "Footage", a.ino, trash.ino, "Footage"),
            None,
            now,
        );
        assert!(
            matches!(r, Err(CatalogError::CrossesBoundary(_))),
            "{name}: {r:?}"
        );
        // An empty one can.
        let e = cat.create(ROOT_INO, "Empty", &dir(), now).unwrap();
        cat.rename(
            &Move::new(ROOT_INO, "Empty", e.ino, trash.ino, "Empty"),
            None,
            now,
        )
        .unwrap();
        assert!(!cat.get(e.ino).unwrap().in_catalog);
        // And back.
        cat.rename(
            &Move::new(trash.ino, "Empty", e.ino, ROOT_INO, "Back"),
            None,
            now,
        )
        .unwrap();
        assert!(cat.get(e.ino).unwrap().in_catalog);
    });
}

#[test]
fn xattr_flags() {
    each(|name, open, path| {
        let cat = open(path);
        let now = SystemTime::now();
        let f = cat.create(ROOT_INO, "f", &file(None), now).unwrap();
        assert!(matches!(
            cat.set_xattr(f.ino, "user.a", b"1", XattrSet::REPLACE, now),
            Err(CatalogError::NoAttr)
        ));
        cat.set_xattr(f.ino, "user.a", b"1", XattrSet::CREATE, now)
            .unwrap();
        assert!(matches!(
            cat.set_xattr(f.ino, "user.a", b"2", XattrSet::CREATE, now),
            Err(CatalogError::Exists)
        ));
        cat.set_xattr(f.ino, "user.a", b"3", XattrSet::REPLACE, now)
            .unwrap();
        assert_eq!(cat.get_xattr(f.ino, "user.a").unwrap(), b"3", "{name}");
        assert_eq!(cat.list_xattrs(f.ino).unwrap(), vec!["user.a".to_string()]);
        cat.remove_xattr(f.ino, "user.a", now).unwrap();
        assert!(matches!(
            cat.get_xattr(f.ino, "user.a"),
            Err(CatalogError::NoAttr)
        ));
    });
}

#[test]
fn a_silly_renamed_file_leaves_file_nodes_and_is_found_for_recovery() {
    each(|name, open, path| {
        let cat = open(path);
        let now = SystemTime::now();
        let d = cat.create(ROOT_INO, "Project", &dir(), now).unwrap();
        let f = cat.create(d.ino, "take.mov", &file(None), now).unwrap();
        assert!(f.in_catalog);
        let silly = ".nfs.0000abcd.00014.4";
        cat.rename(
            &Move::new(d.ino, "take.mov", f.ino, d.ino, silly),
            None,
            now,
        )
        .unwrap();
        assert!(!cat.get(f.ino).unwrap().in_catalog, "{name}");
        // A name that only looks like one stays a catalog file.
        let g = cat.create(d.ino, ".nfs.conf", &file(None), now).unwrap();
        assert!(g.in_catalog, "{name}");
        let found = cat.silly_renamed().unwrap();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!((found[0].parent, found[0].name.as_str()), (d.ino, silly));
        assert!(found[0].ctime <= SystemTime::now());
    });
}
