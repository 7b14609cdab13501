//! The schema: the v1 tables as the MarkBase app writes them, and the
//! versioned migrations that add our side tables (`mb_*`) and indexes. A
//! migration touches only `mb_*` objects and indexes; the user's rows are
//! never rewritten. A catalog whose `schema_version` is newer than
//! [`SCHEMA_VERSION`] is refused before anything is written.

use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::time::{format_iso, to_ns};
use super::writer::FIRST_INO;
use super::{Shared, ROOT_NODE_ID};
use crate::catalog::{CatalogError, ROOT_INO};

/// Schema version of the `mb_*` side tables this build writes.
pub const SCHEMA_VERSION: i64 = 4;

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS mb_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS mb_inodes(
        ino INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL UNIQUE,
        kind TEXT,
        mode INTEGER, uid INTEGER, gid INTEGER, rdev INTEGER NOT NULL DEFAULT 0,
        atime_ns INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, btime_ns INTEGER,
        size INTEGER, target BLOB, content TEXT,
        claimed INTEGER NOT NULL DEFAULT 0,
        unlinked INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX IF NOT EXISTS mb_inodes_unlinked ON mb_inodes(unlinked) WHERE unlinked = 1;
     CREATE TABLE IF NOT EXISTS mb_edges(
        parent INTEGER NOT NULL, name TEXT NOT NULL, ino INTEGER NOT NULL,
        PRIMARY KEY(parent, name));
     CREATE INDEX IF NOT EXISTS mb_edges_ino ON mb_edges(ino);
     CREATE TABLE IF NOT EXISTS mb_xattrs(
        ino INTEGER NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY(ino, name));",
    ),
    // A folder's link count counts its subfolders: an index range, not a walk
    // over every child.
    (
        2,
        "CREATE INDEX IF NOT EXISTS mb_file_nodes_parent_type ON file_nodes(parent_id, node_type);",
    ),
    // The same, with folders only (a partial index): creating or deleting a
    // file no longer writes an index page for it (~10% of a create).
    (
        3,
        "CREATE INDEX IF NOT EXISTS mb_file_nodes_subfolders ON file_nodes(parent_id) WHERE node_type = 'folder';
         DROP INDEX IF EXISTS mb_file_nodes_parent_type;",
    ),
    // Content files of deleted nodes, until the mount has removed them (in
    // the background): after a crash they are deleted, not taken for lost
    // data.
    (
        4,
        "CREATE TABLE IF NOT EXISTS mb_trash(id INTEGER PRIMARY KEY, path TEXT NOT NULL);",
    ),
];

/// The v1 schema, for `markbase library create`.
pub const V1_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS file_nodes (
    node_id    TEXT PRIMARY KEY,
    parent_id  TEXT,
    label      TEXT NOT NULL,
    node_type  TEXT NOT NULL CHECK (node_type IN ('folder', 'file')),
    size       INTEGER,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_file_nodes_parent ON file_nodes(parent_id);
CREATE TABLE IF NOT EXISTS file_locations (
    file_uuid  TEXT NOT NULL,
    location   TEXT NOT NULL,
    volume     TEXT,
    added_at   TEXT
);
CREATE INDEX IF NOT EXISTS idx_file_locations_uuid ON file_locations(file_uuid);
";

pub(super) fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// The library's identity from `mb_meta` (written by [`Shared::migrate`]).
pub(super) fn library_id(conn: &Connection) -> Result<uuid::Uuid, CatalogError> {
    let text: String = conn.query_row(
        "SELECT value FROM mb_meta WHERE key='library_id'",
        [],
        |r| r.get(0),
    )?;
    uuid::Uuid::parse_str(&text).map_err(|e| CatalogError::Corrupt(format!("library_id: {e}")))
}

impl Shared {
    pub(super) fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS mb_migrations(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);",
        )?;
        let now = format_iso(to_ns(SystemTime::now()));
        for (version, sql) in MIGRATIONS {
            let done: bool = tx
                .query_row(
                    "SELECT 1 FROM mb_migrations WHERE version=?1",
                    [version],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !done {
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO mb_migrations(version, applied_at) VALUES(?1, ?2)",
                    params![version, now],
                )?;
            }
        }
        // Indexes the v1 format usually has; add them only where missing.
        for (table, column, index) in [
            ("file_nodes", "parent_id", "mb_file_nodes_parent"),
            ("file_locations", "file_uuid", "mb_file_locations_uuid"),
        ] {
            let has: bool = tx
                .query_row(
                    &format!(
                        "SELECT 1 FROM pragma_index_list('{table}') l
                         WHERE (SELECT name FROM pragma_index_info(l.name) WHERE seqno=0) = '{column}'"
                    ),
                    [],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !has {
                tx.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS {index} ON {table}({column})"
                ))?;
            }
        }
        tx.execute(
            "INSERT INTO mb_meta(key, value) VALUES('schema_version', ?1)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value WHERE CAST(value AS INTEGER) < ?1",
            [SCHEMA_VERSION],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO mb_meta(key, value) VALUES('next_ino', ?1)",
            [FIRST_INO.to_string()],
        )?;
        // The library's identity, made once: what file handles that must
        // outlive the daemon (NFS) name the library by.
        tx.execute(
            "INSERT OR IGNORE INTO mb_meta(key, value) VALUES('library_id', ?1)",
            [uuid::Uuid::new_v4().to_string()],
        )?;
        let now_ns = to_ns(SystemTime::now());
        tx.execute(
            "INSERT OR IGNORE INTO mb_inodes(ino, node_id, kind, mode, atime_ns, mtime_ns, ctime_ns, btime_ns, claimed)
             VALUES(?1, ?2, 'd', NULL, ?3, ?3, ?3, ?3, 1)",
            params![ROOT_INO as i64, ROOT_NODE_ID, now_ns],
        )?;
        tx.commit()?;
        Ok(())
    }
}
