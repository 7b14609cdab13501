//! Opening a catalog, and the checks that refuse one untouched: not a
//! regular file, not SQLite, no v1 tables, written by a newer build,
//! read-only, or locked by another writer. Every check runs before the first
//! write, so a refused catalog is left exactly as it was.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::sync::unchecked::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use super::commit::Committer;
use super::deferred::Log;
use super::journal::{self, Journal, Replayed};
use super::schema::{library_id, table_exists, SCHEMA_VERSION, V1_SCHEMA};
use super::writer::{
    busy_retry, journal_seq, Checkpoints, CommitCounters, Writer, FIRST_INO, WAL_BACKSTOP_PAGES,
    WAL_KEEP_BYTES, WRITER_CACHE_KIB,
};
use super::{OpenOptions, Shared, SqliteCatalog};
use crate::catalog::CatalogError;

fn sqlite_header_ok(path: &Path) -> Result<(), CatalogError> {
    let not = |why: &str| CatalogError::NotACatalog {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| not(&e.to_string()))?;
    if !meta.is_file() {
        return Err(not("not a regular file"));
    }
    let mut head = [0u8; 16];
    let mut f = File::open(path).map_err(|e| not(&e.to_string()))?;
    let n = f.read(&mut head).map_err(|e| not(&e.to_string()))?;
    if n < 16 || &head != b"SQLite format 3\0" {
        return Err(not("not an SQLite database"));
    }
    Ok(())
}

fn map_open_err(path: &Path, e: rusqlite::Error) -> CatalogError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy) | Some(DatabaseLocked) => CatalogError::Locked(path.to_path_buf()),
        Some(NotADatabase) | Some(DatabaseCorrupt) => CatalogError::NotACatalog {
            path: path.to_path_buf(),
            why: format!("corrupt: {e}"),
        },
        Some(ReadOnly) | Some(CannotOpen) | Some(PermissionDenied) => CatalogError::NotACatalog {
            path: path.to_path_buf(),
            why: format!("cannot open for writing: {e}"),
        },
        _ => e.into(),
    }
}

impl SqliteCatalog {
    /// Open (and migrate) the catalog at `path`. Every check runs before the
    /// first write, so a catalog that is refused is left exactly as it was.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<SqliteCatalog, CatalogError> {
        if opts.create && !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let conn = Connection::open(path)?;
            conn.execute_batch(V1_SCHEMA)?;
        }
        sqlite_header_ok(path)?;
        // Root may write a 0444 file; the owner's intent still holds.
        let ro_mode = std::fs::metadata(path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o222 == 0)
            .unwrap_or(false);
        if ro_mode || nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(CatalogError::ReadOnly(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| map_open_err(path, e))?;
        conn.busy_timeout(Duration::from_millis(500))
            .map_err(|e| map_open_err(path, e))?;
        let not = |why: &str| CatalogError::NotACatalog {
            path: path.to_path_buf(),
            why: why.into(),
        };
        for t in ["file_nodes", "file_locations"] {
            if !table_exists(&conn, t).map_err(|e| map_open_err(path, e))? {
                return Err(not(&format!("no table {t}")));
            }
        }
        if table_exists(&conn, "mb_meta").map_err(|e| map_open_err(path, e))? {
            let found: Option<i64> = conn
                .query_row(
                    "SELECT value FROM mb_meta WHERE key='schema_version'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(|e| map_open_err(path, e))?
                .and_then(|v| v.parse().ok());
            if let Some(found) = found.filter(|f| *f > SCHEMA_VERSION) {
                return Err(CatalogError::FutureSchema {
                    path: path.to_path_buf(),
                    found,
                    known: SCHEMA_VERSION,
                });
            }
        }
        // Take the write lock once to see that nobody else holds it.
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| map_open_err(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| map_open_err(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
        // A burst of changes grows the WAL (it restarts only once a
        // checkpoint caught up between two batches); give the space back
        // when it does.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.busy_handler(Some(busy_retry))?;
        let mut conn = conn;
        Shared::migrate(&mut conn)?;
        let library_id = library_id(&conn)?;
        let next: u64 = conn.query_row(
            "SELECT CAST(value AS INTEGER) FROM mb_meta WHERE key='next_ino'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        // The journal: what the last run answered but did not commit.
        let applied = journal_seq(&conn)?;
        let jpath = journal::path_of(path);
        let found = journal::read(&jpath, applied)?;
        let last = found.ops.last().map_or(applied, |(s, _)| *s);
        let checkpoints = std::sync::Arc::new(Checkpoints::default());
        let (ck, ck_path) = (checkpoints.clone(), path.to_path_buf());
        if let Err(e) = std::thread::Builder::new()
            .name("markbase-checkpoint".into())
            .spawn(move || ck.run(&ck_path))
        {
            // The writer's backstop checkpoints instead.
            tracing::warn!("no checkpoint thread: {e}");
        }
        let journal = Journal::open(&jpath, last)?;
        let guest = journal.guest;
        let counts = Arc::new(CommitCounters::default());
        let cat = SqliteCatalog {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                log: Mutex::new(Log::new(journal, next)),
                writer: Mutex::new(Writer {
                    conn,
                    since_checkpoint: 0,
                    checkpoints: checkpoints.clone(),
                    journal_path: jpath,
                    guest,
                    batch: 0,
                    applied: last,
                    failed: false,
                    held_since: None,
                    free_until: None,
                    counts: counts.clone(),
                }),
                unsettled: AtomicU64::new(0),
                committer: Committer::default(),
                replayed: Replayed::default(),
                readers: Mutex::new(Vec::new()),
                uid: opts.uid,
                gid: opts.gid,
                wal: Mutex::new(Default::default()),
                sync_asked: AtomicU64::new(0),
                checkpoints,
                shape: Mutex::new(None),
                seen_version: Mutex::new(None),
                outside_change: AtomicBool::new(false),
                library_id,
                counts,
            }),
            committer_thread: Mutex::new(None),
        };
        let mut cat = cat;
        if guest {
            tracing::info!(
                "{}: another markbase process keeps this catalog's journal (a running mount): changes here commit one by one",
                path.display()
            );
        } else {
            let mut log = cat.log.lock();
            let w = cat.writer.lock();
            let skipped = cat.replay(&w.conn, &found.ops)?;
            let replayed = Replayed {
                applied: found.ops.len() - skipped,
                skipped,
                torn: found.torn,
            };
            if !found.ops.is_empty() || found.torn > 0 {
                tracing::warn!(
                    "{}: replayed {} journaled changes the last run had not committed ({} no longer applied, {} bytes of a torn record ignored)",
                    path.display(),
                    found.ops.len() - skipped,
                    skipped,
                    found.torn
                );
            }
            crate::failpoint!("journal-replayed", |_| std::process::abort());
            log.journal.truncate()?;
            let max: Option<i64> = w
                .conn
                .query_row("SELECT max(ino) FROM mb_inodes", [], |r| r.get(0))?;
            let next = log.next_ino.max(max.unwrap_or(0) as u64 + 1).max(FIRST_INO);
            (log.next_ino, log.end_ino) = (next, next);
            drop((log, w));
            if let Some(s) = Arc::get_mut(&mut cat.shared) {
                s.replayed = replayed;
            }
        }
        let shared = cat.shared.clone();
        match std::thread::Builder::new()
            .name("markbase-commit".into())
            .spawn(move || shared.committer.run(&shared))
        {
            Ok(h) => *cat.committer_thread.lock() = Some(h),
            // Batches are committed when full, read or synced instead.
            Err(e) => tracing::warn!("no committer thread: {e}"),
        }
        Ok(cat)
    }
}
