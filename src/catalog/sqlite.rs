//! The catalog in a MarkBase SQLite file.
//!
//! The v1 tables (`file_nodes`, `file_locations`) are read as found and only
//! the rows a user's action asks for are changed. What POSIX needs beyond them
//! lives in side tables added by versioned migrations (which touch only
//! `mb_*` objects):
//!
//! * `mb_inodes`: one row per inode: its stable number (allocated in batches
//!   from `mb_meta.next_ino`, never reused), owner, mode, precise times, and
//!   for nodes outside `file_nodes` (symlinks, devices, OS junk files) their
//!   kind, size and content;
//! * `mb_edges`: names that are not `file_nodes` rows: hard links beyond the
//!   first, and every entry outside the catalog proper (JuiceFS keeps nodes
//!   and edges apart the same way);
//! * `mb_xattrs`: extended attributes.
//!
//! Connections: one writer (behind a mutex, every mutation one IMMEDIATE
//! transaction) and a small pool of read-only readers, in WAL mode, so reads
//! never wait for the writer. `synchronous=NORMAL`: a commit survives a crash
//! of the daemon; [`Catalog::sync`] makes commits survive power loss by
//! syncing the WAL, which the file system core does on `fsync`.
//!
//! Checkpoints (copying the WAL back into the database, with two syncs) run
//! in a thread of their own on their own connection, never inside a request's
//! commit: the writer only counts its commits and wakes the checkpointer
//! every [`CHECKPOINT_EVERY`]. The writer's own automatic checkpoint stays as
//! a backstop at [`WAL_BACKSTOP_PAGES`] should the thread ever fall behind.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::names::{self, RawChild};
use super::*;

/// Schema version of the `mb_*` side tables this build writes.
pub const SCHEMA_VERSION: i64 = 3;
const INO_BATCH: u64 = 1024;
const FIRST_INO: u64 = 16;
const ROOT_NODE_ID: &str = "(root)";
const MAX_READERS: usize = 8;
/// Commits between background checkpoints (a create or unlink writes ~10
/// WAL pages: ~20 MiB of WAL between checkpoints; the fewer checkpoints,
/// the more often one copies a hot page once for many commits).
const CHECKPOINT_EVERY: u64 = 512;
/// The writer checkpoints by itself only past this many WAL pages (256 MiB).
const WAL_BACKSTOP_PAGES: i64 = 65_536;
/// Writer page cache (negative: KiB). Creates and unlinks touch pages all
/// over the indexes of random node ids; SQLite's 2 MiB default re-reads them.
const WRITER_CACHE_KIB: i64 = 16_384;

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
];

/// Options for opening a catalog.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Owner of nodes that have none recorded (the mounting user).
    pub uid: u32,
    pub gid: u32,
    /// Create an empty v1 catalog when the file does not exist.
    pub create: bool,
}

struct Writer {
    conn: Connection,
    next_ino: u64,
    end_ino: u64,
    commits: u64,
}

/// The background checkpointer's mailbox.
#[derive(Default)]
struct Checkpoints {
    /// (checkpoints asked for, stop)
    state: std::sync::Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
}

impl Checkpoints {
    fn ask(&self, stop: bool) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        g.1 |= stop;
        self.wake.notify_one();
    }

    /// Run checkpoints on `path` until told to stop.
    fn run(&self, path: &Path) {
        let mut conn: Option<Connection> = None;
        let mut done = 0;
        loop {
            {
                let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while g.0 == done && !g.1 {
                    g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
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

/// A MarkBase catalog in one SQLite file.
pub struct SqliteCatalog {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    uid: u32,
    gid: u32,
    wal: Mutex<Option<File>>,
    checkpoints: std::sync::Arc<Checkpoints>,
    /// One node of each `parent_id` cycle, shown under `Unfiled` (found at the
    /// first listing of the root, so that mounting never scans the catalog).
    cycle_heads: Mutex<Option<std::sync::Arc<std::collections::HashSet<String>>>>,
}

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

// ---------------------------------------------------------------- time text

/// Nanoseconds since the epoch.
pub fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

pub fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parse the catalog's ISO 8601 UTC text (`2024-03-01T10:22:31.000000Z`,
/// tolerating a space for `T`, any number of fraction digits, `Z`, `+00:00`
/// or nothing) into nanoseconds. `None` for anything else.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut frac_ns: i64 = 0;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac_ns += (c - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
    }
    match &b[i..] {
        b"" | b"Z" | b"z" | b"+00:00" | b"+0000" => {}
        _ => return None,
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Format nanoseconds as the catalog writes times (microseconds, `Z`).
pub fn format_iso(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The catalog keeps microseconds; `mb_inodes` keeps the nanoseconds the mount
/// set. Use the precise value only while it still matches the catalog's text
/// (so a change made by the rest of MarkBase wins).
fn precise(text_ns: Option<i64>, stored_ns: Option<i64>) -> Option<i64> {
    match (text_ns, stored_ns) {
        (Some(t), Some(s)) if s.div_euclid(1000) == t.div_euclid(1000) => Some(s),
        (Some(t), _) => Some(t),
        (None, s) => s,
    }
}

// ---------------------------------------------------------------- open

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
        _ => CatalogError::Sqlite(e),
    }
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
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
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut conn = conn;
        Self::migrate(&mut conn)?;
        let mut next: u64 = conn.query_row(
            "SELECT CAST(value AS INTEGER) FROM mb_meta WHERE key='next_ino'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        let max: Option<i64> =
            conn.query_row("SELECT max(ino) FROM mb_inodes", [], |r| r.get(0))?;
        next = next.max(max.unwrap_or(0) as u64 + 1).max(FIRST_INO);
        let checkpoints = std::sync::Arc::new(Checkpoints::default());
        let (ck, ck_path) = (checkpoints.clone(), path.to_path_buf());
        if let Err(e) = std::thread::Builder::new()
            .name("markbase-checkpoint".into())
            .spawn(move || ck.run(&ck_path))
        {
            // The writer's backstop checkpoints instead.
            tracing::warn!("no checkpoint thread: {e}");
        }
        let cat = SqliteCatalog {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                conn,
                next_ino: next,
                end_ino: next,
                commits: 0,
            }),
            readers: Mutex::new(Vec::new()),
            uid: opts.uid,
            gid: opts.gid,
            wal: Mutex::new(None),
            checkpoints,
            cycle_heads: Mutex::new(None),
        };
        Ok(cat)
    }

    fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
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
        let now_ns = to_ns(SystemTime::now());
        tx.execute(
            "INSERT OR IGNORE INTO mb_inodes(ino, node_id, kind, mode, atime_ns, mtime_ns, ctime_ns, btime_ns, claimed)
             VALUES(?1, ?2, 'd', NULL, ?3, ?3, ?3, ?3, 1)",
            params![ROOT_INO as i64, ROOT_NODE_ID, now_ns],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Path of the SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reader(&self) -> Result<PooledReader<'_>, CatalogError> {
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

    /// Reserve an inode number; batches are reserved in their own commit so
    /// that a rolled-back operation never hands a number out twice.
    fn alloc_ino(w: &mut Writer) -> Result<Ino, CatalogError> {
        if w.next_ino >= w.end_ino {
            let start = w.next_ino;
            let end = start + INO_BATCH;
            w.conn.execute(
                "UPDATE mb_meta SET value=?1 WHERE key='next_ino'",
                [end.to_string()],
            )?;
            w.end_ino = end;
        }
        let ino = w.next_ino;
        w.next_ino += 1;
        Ok(ino)
    }

    fn record(&self, conn: &Connection, ino: Ino) -> Result<NodeRecord, CatalogError> {
        if ino == UNFILED_INO {
            let root = self.record(conn, ROOT_INO)?;
            return Ok(NodeRecord {
                ino,
                node_id: "(unfiled)".into(),
                kind: Kind::Dir,
                in_catalog: false,
                perm: 0o555,
                nlink: 2,
                target: None,
                content: None,
                locations: vec![],
                ..root
            });
        }
        let row = conn
            .prepare_cached(
                "SELECT i.node_id, i.kind, i.mode, i.uid, i.gid, i.rdev, i.atime_ns, i.mtime_ns, i.ctime_ns,
                        i.btime_ns, i.size, i.target, i.content, i.unlinked,
                        n.node_id IS NOT NULL, n.node_type, n.size, n.created_at, n.updated_at
                 FROM mb_inodes i LEFT JOIN file_nodes n ON n.node_id = i.node_id WHERE i.ino = ?1",
            )?
            .query_row([ino as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    [r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?, r.get::<_, Option<i64>>(4)?],
                    r.get::<_, i64>(5)?,
                    [r.get::<_, Option<i64>>(6)?, r.get::<_, Option<i64>>(7)?, r.get::<_, Option<i64>>(8)?, r.get::<_, Option<i64>>(9)?],
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, Option<Vec<u8>>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                    r.get::<_, bool>(13)?,
                    r.get::<_, bool>(14)?,
                    (r.get::<_, Option<String>>(15)?, r.get::<_, Option<i64>>(16)?),
                    (r.get::<_, Option<String>>(17)?, r.get::<_, Option<String>>(18)?),
                ))
            })
            .optional()?;
        let Some((
            node_id,
            kind,
            [mode, uid, gid],
            rdev,
            [atime, mtime, ctime, btime],
            side_size,
            target,
            content,
            unlinked,
            in_catalog,
            (node_type, cat_size),
            (created, updated),
        )) = row
        else {
            return Err(CatalogError::NotFound);
        };
        let kind = match (in_catalog, &kind) {
            (true, _) => {
                Kind::from_code(node_type.as_deref().unwrap_or("file")).unwrap_or(Kind::File)
            }
            (false, Some(k)) => Kind::from_code(k).unwrap_or(Kind::File),
            // A catalog node deleted behind the mount's back.
            (false, None) => return Err(CatalogError::NotFound),
        };
        let created_ns = created.as_deref().and_then(parse_iso);
        let updated_ns = updated.as_deref().and_then(parse_iso);
        let (mtime, btime) = if in_catalog {
            let m = precise(updated_ns, mtime).or(created_ns).unwrap_or(0);
            (m, precise(created_ns, btime).unwrap_or(m))
        } else {
            let m = mtime.unwrap_or(0);
            (m, btime.unwrap_or(m))
        };
        let size = if in_catalog { cat_size } else { side_size }
            .unwrap_or(0)
            .max(0) as u64;
        let nlink = if unlinked {
            0
        } else if kind == Kind::Dir {
            2 + self.subdir_count(conn, ino, in_catalog.then_some(node_id.as_str()))?
        } else {
            let edges: i64 = conn
                .prepare_cached("SELECT count(*) FROM mb_edges WHERE ino=?1")?
                .query_row([ino as i64], |r| r.get(0))?;
            edges as u32 + in_catalog as u32
        };
        let locations = if in_catalog && kind == Kind::File {
            let mut st = conn.prepare_cached(
                "SELECT location FROM file_locations WHERE file_uuid=?1 ORDER BY rowid",
            )?;
            let rows = st.query_map([&node_id], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(PathBuf::from)
                .collect()
        } else {
            vec![]
        };
        let default_perm = if kind == Kind::Dir { 0o755 } else { 0o644 };
        Ok(NodeRecord {
            ino,
            node_id,
            kind,
            in_catalog,
            perm: mode.map(|m| (m & 0o7777) as u16).unwrap_or(default_perm),
            uid: uid.map(|u| u as u32).unwrap_or(self.uid),
            gid: gid.map(|g| g as u32).unwrap_or(self.gid),
            rdev: rdev as u32,
            nlink,
            size,
            atime: from_ns(atime.unwrap_or(mtime)),
            mtime: from_ns(mtime),
            ctime: from_ns(ctime.unwrap_or(mtime)),
            btime: from_ns(btime),
            target,
            content: content.map(PathBuf::from),
            locations,
        })
    }

    fn subdir_count(
        &self,
        conn: &Connection,
        ino: Ino,
        node_id: Option<&str>,
    ) -> Result<u32, CatalogError> {
        let side: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM mb_edges e JOIN mb_inodes i ON i.ino = e.ino WHERE e.parent=?1 AND i.kind='d'",
            )?
            .query_row([ino as i64], |r| r.get(0))?;
        let cat: i64 = match (ino, node_id) {
            (ROOT_INO, _) => conn
                .prepare_cached("SELECT count(*) FROM file_nodes WHERE parent_id IS NULL AND node_type = 'folder'")?
                .query_row([], |r| r.get(0))?,
            (_, Some(id)) => conn
                .prepare_cached("SELECT count(*) FROM file_nodes WHERE parent_id=?1 AND node_type = 'folder'")?
                .query_row([id], |r| r.get(0))?,
            _ => 0,
        };
        Ok((side + cat) as u32)
    }

    /// The cycle heads, found once.
    fn heads(
        &self,
        conn: &Connection,
    ) -> Result<std::sync::Arc<std::collections::HashSet<String>>, CatalogError> {
        let mut h = self.cycle_heads.lock();
        if let Some(h) = h.as_ref() {
            return Ok(h.clone());
        }
        let found = std::sync::Arc::new(cycles(conn)?.1.into_iter().collect());
        *h = Some(std::sync::Arc::clone(&found));
        Ok(found)
    }

    fn has_orphans(conn: &Connection) -> Result<bool, CatalogError> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT 1 FROM file_nodes n WHERE {ORPHAN} LIMIT 1"
            ))?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

/// An inode row that is still in use: named (an edge or a `file_nodes`
/// row), the root, or unlinked but open.
const LIVE_INODE: &str = "(i.unlinked = 1 OR i.node_id = '(root)'
    OR EXISTS (SELECT 1 FROM mb_edges e WHERE e.ino = i.ino)
    OR EXISTS (SELECT 1 FROM file_nodes n WHERE n.node_id = i.node_id))";

/// Names whose inode is gone.
const DANGLING_EDGES_COUNT: &str = "SELECT count(*) FROM mb_edges e
    WHERE NOT EXISTS (SELECT 1 FROM mb_inodes i WHERE i.ino = e.ino)";

/// Names whose folder is gone (the root is inode 1; a folder is an inode row
/// that is named or the root).
const HOMELESS_EDGES_COUNT: &str = "SELECT count(*) FROM mb_edges e
    WHERE e.parent != 1 AND NOT EXISTS (SELECT 1 FROM mb_inodes i WHERE i.ino = e.parent
      AND (EXISTS (SELECT 1 FROM mb_edges p WHERE p.ino = i.ino)
           OR EXISTS (SELECT 1 FROM file_nodes n WHERE n.node_id = i.node_id)))";

/// Catalog nodes that never reach the root because their parent chain loops,
/// and the least node id of each loop (its head, shown under `Unfiled`).
fn cycles(conn: &Connection) -> Result<(Vec<String>, Vec<String>), CatalogError> {
    use std::collections::{HashMap, HashSet};
    let rows: Vec<(String, Option<String>)> = conn
        .prepare_cached("SELECT node_id, parent_id FROM file_nodes WHERE parent_id IS NOT NULL")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let parent: HashMap<&str, &str> = rows
        .iter()
        .filter_map(|(n, p)| p.as_deref().map(|p| (n.as_str(), p)))
        .collect();
    let mut in_cycle: HashSet<&str> = HashSet::new();
    let mut heads: Vec<String> = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    for start in parent.keys() {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashSet<&str> = HashSet::new();
        let mut cur = *start;
        loop {
            if done.contains(cur) {
                break;
            }
            if !on_path.insert(cur) {
                // `cur` is where the walk came back to: the loop is from there on.
                let at = path.iter().position(|n| *n == cur).unwrap_or(0);
                in_cycle.extend(path[at..].iter().copied());
                if let Some(h) = path[at..].iter().min() {
                    heads.push(h.to_string());
                }
                break;
            }
            path.push(cur);
            match parent.get(cur) {
                Some(p) => cur = p,
                None => break,
            }
        }
        done.extend(path);
    }
    let mut v: Vec<String> = in_cycle.into_iter().map(String::from).collect();
    v.sort();
    heads.sort();
    Ok((v, heads))
}

/// A node whose parent does not exist (or is not a folder) sits in `Unfiled`.
const ORPHAN: &str = "n.parent_id IS NOT NULL AND NOT EXISTS
    (SELECT 1 FROM file_nodes p WHERE p.node_id = n.parent_id AND p.node_type = 'folder')";

struct PooledReader<'a> {
    cat: &'a SqliteCatalog,
    conn: Option<Connection>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("reader present until drop")
    }
}

impl Drop for SqliteCatalog {
    fn drop(&mut self) {
        self.checkpoints.ask(true);
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

// ---------------------------------------------------------------- mutation helpers

/// Where a directory sits, for deciding whether a child joins `file_nodes`.
enum Place {
    Root,
    CatalogDir(String),
    SideDir,
    Unfiled,
}

/// What the mutation paths need to know of an inode.
struct Meta {
    node_id: String,
    kind: Kind,
    in_catalog: bool,
}

fn meta(conn: &Connection, ino: Ino) -> Result<Meta, CatalogError> {
    if ino == UNFILED_INO {
        return Ok(Meta {
            node_id: "(unfiled)".into(),
            kind: Kind::Dir,
            in_catalog: false,
        });
    }
    let row = conn
        .prepare_cached(
            "SELECT i.node_id, i.kind, n.node_type FROM mb_inodes i
             LEFT JOIN file_nodes n ON n.node_id = i.node_id WHERE i.ino=?1",
        )?
        .query_row([ino as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?
        .ok_or(CatalogError::NotFound)?;
    let (node_id, kind, node_type) = row;
    let in_catalog = node_type.is_some();
    let kind = match node_type.or(kind) {
        Some(k) => Kind::from_code(&k).unwrap_or(Kind::File),
        None => return Err(CatalogError::NotFound),
    };
    Ok(Meta {
        node_id,
        kind,
        in_catalog,
    })
}

fn place(conn: &Connection, dir: Ino) -> Result<Place, CatalogError> {
    match dir {
        ROOT_INO => Ok(Place::Root),
        UNFILED_INO => Ok(Place::Unfiled),
        _ => {
            let m = meta(conn, dir)?;
            match (m.kind, m.in_catalog) {
                (Kind::Dir, true) => Ok(Place::CatalogDir(m.node_id)),
                (Kind::Dir, false) => Ok(Place::SideDir),
                _ => Err(CatalogError::NotDir),
            }
        }
    }
}

/// The `parent_id` a child of `place` gets, or `None` when it cannot be in `file_nodes`.
fn catalog_parent(place: &Place, kind: Kind, name: &str) -> Option<Option<String>> {
    if !matches!(kind, Kind::Dir | Kind::File) || names::is_os_junk(name) {
        return None;
    }
    match place {
        Place::Root => Some(None),
        Place::CatalogDir(id) => Some(Some(id.clone())),
        _ => None,
    }
}

fn set_times(
    conn: &Connection,
    ino: Ino,
    mtime: Option<i64>,
    ctime: Option<i64>,
) -> Result<(), CatalogError> {
    if ino == UNFILED_INO {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE mb_inodes SET mtime_ns=coalesce(?2, mtime_ns), ctime_ns=coalesce(?3, ctime_ns) WHERE ino=?1",
    )?
    .execute(params![ino as i64, mtime, ctime])?;
    if let Some(m) = mtime {
        conn.prepare_cached(
            "UPDATE file_nodes SET updated_at=?2 WHERE node_id=(SELECT node_id FROM mb_inodes WHERE ino=?1)",
        )?
        .execute(params![ino as i64, format_iso(m)])?;
    }
    Ok(())
}

/// A directory's entries changed: its mtime and ctime become `now`.
fn touch_dir(conn: &Connection, dir: Ino, now: i64) -> Result<(), CatalogError> {
    set_times(conn, dir, Some(now), Some(now))
}

fn count_children(conn: &Connection, dir: Ino, m: &Meta) -> Result<i64, CatalogError> {
    let side: i64 = conn
        .prepare_cached("SELECT count(*) FROM mb_edges WHERE parent=?1")?
        .query_row([dir as i64], |r| r.get(0))?;
    let cat: i64 = if m.in_catalog {
        conn.prepare_cached("SELECT count(*) FROM file_nodes WHERE parent_id=?1")?
            .query_row([&m.node_id], |r| r.get(0))?
    } else {
        0
    };
    Ok(side + cat)
}

/// Take a node out of `file_nodes`, keeping what it was in `mb_inodes`.
fn to_side(conn: &Connection, ino: Ino, m: &Meta) -> Result<(), CatalogError> {
    let (size, created, updated, first_loc): (Option<i64>, Option<String>, Option<String>, Option<String>) = conn
        .prepare_cached(
            "SELECT n.size, n.created_at, n.updated_at,
                    (SELECT location FROM file_locations WHERE file_uuid=n.node_id ORDER BY rowid LIMIT 1)
             FROM file_nodes n WHERE n.node_id=?1",
        )?
        .query_row([&m.node_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let created = created.as_deref().and_then(parse_iso);
    let updated = updated.as_deref().and_then(parse_iso);
    conn.prepare_cached(
        "UPDATE mb_inodes SET kind=?2, size=?3, content=coalesce(content, ?4),
            mtime_ns=CASE WHEN mtime_ns/1000 = ?5/1000 THEN mtime_ns ELSE coalesce(?5, mtime_ns) END,
            btime_ns=CASE WHEN btime_ns/1000 = ?6/1000 THEN btime_ns ELSE coalesce(?6, btime_ns) END
         WHERE ino=?1",
    )?
    .execute(params![ino as i64, m.kind.code(), size, first_loc, updated, created])?;
    conn.prepare_cached("DELETE FROM file_locations WHERE file_uuid=?1")?
        .execute([&m.node_id])?;
    conn.prepare_cached("DELETE FROM file_nodes WHERE node_id=?1")?
        .execute([&m.node_id])?;
    Ok(())
}

/// Put a side node into `file_nodes` under `parent_id` as `label`.
fn to_catalog(
    conn: &Connection,
    ino: Ino,
    m: &Meta,
    parent_id: Option<&str>,
    name: &str,
) -> Result<(), CatalogError> {
    let (size, mtime, btime, content): (Option<i64>, Option<i64>, Option<i64>, Option<String>) =
        conn.prepare_cached(
            "SELECT size, mtime_ns, btime_ns, content FROM mb_inodes WHERE ino=?1",
        )?
        .query_row([ino as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let node_type = if m.kind == Kind::Dir {
        "folder"
    } else {
        "file"
    };
    let mtime = mtime.unwrap_or(0);
    conn.prepare_cached(
        "INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        m.node_id,
        parent_id,
        names::label_for(name),
        node_type,
        if m.kind == Kind::Dir {
            None
        } else {
            Some(size.unwrap_or(0))
        },
        format_iso(btime.unwrap_or(mtime)),
        format_iso(mtime)
    ])?;
    if let (Kind::File, Some(c)) = (m.kind, content) {
        conn.prepare_cached(
            "INSERT INTO file_locations(file_uuid, location, volume, added_at) VALUES(?1, ?2, 'MarkBase', ?3)",
        )?
        .execute(params![m.node_id, c, format_iso(to_ns(SystemTime::now()))])?;
    }
    conn.prepare_cached("UPDATE mb_inodes SET kind=NULL, claimed=1 WHERE ino=?1")?
        .execute([ino as i64])?;
    Ok(())
}

fn remaining_links(conn: &Connection, ino: Ino) -> Result<u32, CatalogError> {
    let m = meta(conn, ino)?;
    let edges: i64 = conn
        .prepare_cached("SELECT count(*) FROM mb_edges WHERE ino=?1")?
        .query_row([ino as i64], |r| r.get(0))?;
    Ok(edges as u32 + m.in_catalog as u32)
}

/// Remove one name of `ino`. The core has checked that (`parent`, `name`) is `ino`.
fn unlink_in(
    conn: &Connection,
    parent: Ino,
    name: &str,
    ino: Ino,
    open: bool,
    now: i64,
) -> Result<Unlinked, CatalogError> {
    let m = meta(conn, ino)?;
    if m.kind == Kind::Dir && count_children(conn, ino, &m)? > 0 {
        return Err(CatalogError::NotEmpty);
    }
    let side = conn
        .prepare_cached("DELETE FROM mb_edges WHERE parent=?1 AND name=?2 AND ino=?3")?
        .execute(params![parent as i64, name, ino as i64])?;
    if side == 0 {
        if !m.in_catalog {
            return Err(CatalogError::NotFound);
        }
        // The file_nodes row is this name. Another name, if any, takes its place.
        let other: Option<(i64, String)> = conn
            .prepare_cached(
                "SELECT parent, name FROM mb_edges WHERE ino=?1 ORDER BY rowid LIMIT 1",
            )?
            .query_row([ino as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if other.is_none() && !open {
            // The last name of a node nobody has open: forget it at once
            // (what to_side, then purge_in, would leave).
            let content: Option<String> = conn
                .prepare_cached(
                    "SELECT coalesce(i.content,
                        (SELECT location FROM file_locations WHERE file_uuid=?2 ORDER BY rowid LIMIT 1))
                     FROM mb_inodes i WHERE i.ino=?1",
                )?
                .query_row(params![ino as i64, m.node_id], |r| r.get(0))?;
            conn.prepare_cached("DELETE FROM file_locations WHERE file_uuid=?1")?
                .execute([&m.node_id])?;
            conn.prepare_cached("DELETE FROM file_nodes WHERE node_id=?1")?
                .execute([&m.node_id])?;
            purge_in(conn, ino)?;
            touch_dir(conn, parent, now)?;
            return Ok(Unlinked {
                ino,
                nlink: 0,
                purged: Some(content.map(PathBuf::from)),
            });
        }
        let promoted = match &other {
            Some((op, oname)) => match catalog_parent(&place(conn, *op as Ino)?, m.kind, oname) {
                Some(parent_id) => {
                    conn.prepare_cached(
                        "UPDATE file_nodes SET parent_id=?2, label=?3 WHERE node_id=?1",
                    )?
                    .execute(params![
                        m.node_id,
                        parent_id,
                        names::label_for(oname)
                    ])?;
                    conn.prepare_cached("DELETE FROM mb_edges WHERE parent=?1 AND name=?2")?
                        .execute(params![op, oname])?;
                    conn.prepare_cached("UPDATE mb_inodes SET claimed=1 WHERE ino=?1")?
                        .execute([ino as i64])?;
                    true
                }
                None => false,
            },
            None => false,
        };
        if !promoted {
            to_side(conn, ino, &m)?;
        }
    }
    let nlink = remaining_links(conn, ino)?;
    touch_dir(conn, parent, now)?;
    let mut purged = None;
    if nlink == 0 && !open {
        let content: Option<String> = conn
            .prepare_cached("SELECT content FROM mb_inodes WHERE ino=?1")?
            .query_row([ino as i64], |r| r.get(0))?;
        purge_in(conn, ino)?;
        purged = Some(content.map(PathBuf::from));
    } else {
        if nlink == 0 {
            conn.prepare_cached("UPDATE mb_inodes SET unlinked=1 WHERE ino=?1")?
                .execute([ino as i64])?;
        }
        set_times(conn, ino, None, Some(now))?;
    }
    Ok(Unlinked { ino, nlink, purged })
}

/// Forget an inode with no links left (its number is never handed out again).
fn purge_in(conn: &Connection, ino: Ino) -> Result<(), CatalogError> {
    conn.prepare_cached("DELETE FROM mb_xattrs WHERE ino=?1")?
        .execute([ino as i64])?;
    conn.prepare_cached("DELETE FROM mb_inodes WHERE ino=?1 AND NOT EXISTS (SELECT 1 FROM mb_edges WHERE ino=?1)
                         AND NOT EXISTS (SELECT 1 FROM file_nodes n WHERE n.node_id = mb_inodes.node_id)")?
        .execute([ino as i64])?;
    Ok(())
}

/// Move the name (`parent`, `name`) of `ino` to (`new_parent`, `new_name`),
/// which the caller has made free.
fn move_edge(
    conn: &Connection,
    parent: Ino,
    name: &str,
    ino: Ino,
    new_parent: Ino,
    new_name: &str,
) -> Result<(), CatalogError> {
    let m = meta(conn, ino)?;
    let dest = place(conn, new_parent)?;
    if matches!(dest, Place::Unfiled) {
        return Err(CatalogError::NotPermitted(
            "Unfiled only holds what the catalog left there",
        ));
    }
    let target_parent = catalog_parent(&dest, m.kind, new_name);
    let side = conn
        .prepare_cached("DELETE FROM mb_edges WHERE parent=?1 AND name=?2 AND ino=?3")?
        .execute(params![parent as i64, name, ino as i64])?;
    if side == 1 {
        match (target_parent, m.in_catalog) {
            (Some(pid), false) => to_catalog(conn, ino, &m, pid.as_deref(), new_name)?,
            _ => {
                conn.prepare_cached("INSERT INTO mb_edges(parent, name, ino) VALUES(?1, ?2, ?3)")?
                    .execute(params![new_parent as i64, new_name, ino as i64])?;
            }
        }
    } else if m.in_catalog {
        match target_parent {
            Some(pid) => {
                conn.prepare_cached(
                    "UPDATE file_nodes SET parent_id=?2, label=?3 WHERE node_id=?1",
                )?
                .execute(params![m.node_id, pid, names::label_for(new_name)])?;
                conn.prepare_cached("UPDATE mb_inodes SET claimed=1 WHERE ino=?1")?
                    .execute([ino as i64])?;
            }
            None => {
                if m.kind == Kind::Dir {
                    let cat_children: i64 = conn
                        .prepare_cached("SELECT count(*) FROM file_nodes WHERE parent_id=?1")?
                        .query_row([&m.node_id], |r| r.get(0))?;
                    if cat_children > 0 {
                        return Err(CatalogError::CrossesBoundary(
                            "a catalog folder with contents",
                        ));
                    }
                }
                to_side(conn, ino, &m)?;
                conn.prepare_cached("INSERT INTO mb_edges(parent, name, ino) VALUES(?1, ?2, ?3)")?
                    .execute(params![new_parent as i64, new_name, ino as i64])?;
            }
        }
    } else {
        return Err(CatalogError::NotFound);
    }
    Ok(())
}

impl SqliteCatalog {
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        self.write_after(|_| Ok(()), |tx, ()| f(tx))
    }

    /// One write transaction, `f`, after `before` (which runs under the
    /// writer's lock, outside the transaction: inode numbers are reserved
    /// in commits of their own). Every commit of the writer goes through
    /// here, which counts them for the checkpointer.
    fn write_after<P, T>(
        &self,
        before: impl FnOnce(&mut Writer) -> Result<P, CatalogError>,
        f: impl FnOnce(&Connection, P) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut w = self.writer.lock();
        let p = before(&mut w)?;
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx, p)?;
        tx.commit()?;
        w.commits += 1;
        if w.commits.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.ask(false);
        }
        Ok(out)
    }

    /// Give inode numbers to catalog nodes that have none yet (first sight).
    fn assign_inos(&self, node_ids: &[String]) -> Result<Vec<Ino>, CatalogError> {
        self.write_after(
            |w| node_ids.iter().map(|_| Self::alloc_ino(w)).collect(),
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
}

type CatalogChild = (Option<i64>, Kind, String);

impl Catalog for SqliteCatalog {
    fn get(&self, ino: Ino) -> Result<NodeRecord, CatalogError> {
        let r = self.reader()?;
        self.record(&r, ino)
    }

    /// One read transaction for all of them: each statement outside one
    /// would take and drop the WAL read lock (two `fcntl`s) by itself.
    fn get_many(&self, inos: &[Ino]) -> Vec<Result<NodeRecord, CatalogError>> {
        let r = match self.reader() {
            Ok(r) => r,
            Err(e) => {
                let why = e.to_string();
                return inos
                    .iter()
                    .map(|_| Err(CatalogError::Io(std::io::Error::other(why.clone()))))
                    .collect();
            }
        };
        let tx = r.execute_batch("BEGIN").is_ok();
        let out = inos.iter().map(|i| self.record(&r, *i)).collect();
        if tx {
            let _ = r.execute_batch("COMMIT");
        }
        out
    }

    fn list(&self, dir: Ino) -> Result<Vec<DirEntry>, CatalogError> {
        let mut raw: Vec<RawChild<CatalogChild>> = Vec::new();
        {
            let r = self.reader()?;
            let dir_place = place(&r, dir)?;
            let heads = match dir_place {
                Place::SideDir => Default::default(),
                _ => self.heads(&r)?,
            };
            let (sql, key): (String, Option<String>) = match &dir_place {
                Place::Root => ("n.parent_id IS NULL".into(), None),
                Place::CatalogDir(id) => ("n.parent_id = ?1".into(), Some(id.clone())),
                Place::Unfiled => (ORPHAN.into(), None),
                Place::SideDir => (String::new(), None),
            };
            if !sql.is_empty() {
                let mut st = r.prepare_cached(&format!(
                    "SELECT n.node_id, n.label, n.node_type, coalesce(n.created_at, ''), i.ino, coalesce(i.claimed, 0)
                     FROM file_nodes n LEFT JOIN mb_inodes i ON i.node_id = n.node_id WHERE {sql}"
                ))?;
                let map = |row: &rusqlite::Row<'_>| -> rusqlite::Result<RawChild<CatalogChild>> {
                    let node_id: String = row.get(0)?;
                    let claimed: bool = row.get(5)?;
                    Ok(RawChild {
                        label: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        priority: if claimed { 0 } else { 1 },
                        created_at: row.get(3)?,
                        node_id: node_id.clone(),
                        payload: (
                            row.get(4)?,
                            Kind::from_code(&row.get::<_, String>(2)?).unwrap_or(Kind::File),
                            node_id,
                        ),
                    })
                };
                let mut rows = match &key {
                    Some(k) => st.query_map([k], map)?.collect::<Result<Vec<_>, _>>()?,
                    None => st.query_map([], map)?.collect::<Result<Vec<_>, _>>()?,
                };
                // A cycle's head leaves its (looping) parent for Unfiled; a
                // node id found on two rows is shown once (its first row).
                let mut seen = std::collections::HashSet::new();
                rows.retain(|c| !heads.contains(&c.payload.2) && seen.insert(c.payload.2.clone()));
                if matches!(dir_place, Place::Unfiled) {
                    let mut one = r.prepare_cached(
                        "SELECT n.node_id, n.label, n.node_type, coalesce(n.created_at, ''), i.ino, coalesce(i.claimed, 0)
                         FROM file_nodes n LEFT JOIN mb_inodes i ON i.node_id = n.node_id WHERE n.node_id = ?1 LIMIT 1",
                    )?;
                    for h in heads.iter() {
                        rows.extend(one.query_map([h], map)?.collect::<Result<Vec<_>, _>>()?);
                    }
                }
                raw.extend(rows);
            }
            let mut st = r.prepare_cached(
                "SELECT e.name, e.ino, coalesce(i.kind, n.node_type, 'f') FROM mb_edges e
                 JOIN mb_inodes i ON i.ino = e.ino LEFT JOIN file_nodes n ON n.node_id = i.node_id
                 WHERE e.parent = ?1",
            )?;
            let side = st
                .query_map([dir as i64], |row| {
                    let name: String = row.get(0)?;
                    Ok(RawChild {
                        label: name.clone(),
                        priority: 0,
                        created_at: String::new(),
                        node_id: name.clone(),
                        payload: (
                            Some(row.get(1)?),
                            Kind::from_code(&row.get::<_, String>(2)?).unwrap_or(Kind::File),
                            String::new(),
                        ),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.extend(side);
            if dir == ROOT_INO && (!heads.is_empty() || Self::has_orphans(&r)?) {
                raw.push(RawChild {
                    label: "Unfiled".into(),
                    priority: 2,
                    created_at: String::new(),
                    node_id: String::new(),
                    payload: (Some(UNFILED_INO as i64), Kind::Dir, String::new()),
                });
            }
        }
        let missing: Vec<String> = raw
            .iter()
            .filter(|c| c.payload.0.is_none())
            .map(|c| c.payload.2.clone())
            .collect();
        if !missing.is_empty() {
            let inos = self.assign_inos(&missing)?;
            let mut it = inos.into_iter();
            for c in raw.iter_mut().filter(|c| c.payload.0.is_none()) {
                c.payload.0 = it.next().map(|i| i as i64);
            }
        }
        Ok(names::render(raw)
            .into_iter()
            .map(|(name, disambiguated, (ino, kind, _))| DirEntry {
                name,
                ino: ino.unwrap_or(0) as Ino,
                kind,
                disambiguated,
            })
            .collect())
    }

    fn parent_of(&self, dir: Ino) -> Result<Ino, CatalogError> {
        if dir == ROOT_INO || dir == UNFILED_INO {
            return Ok(ROOT_INO);
        }
        let r = self.reader()?;
        let m = meta(&r, dir)?;
        if !m.in_catalog {
            let p: Option<i64> = r
                .prepare_cached("SELECT parent FROM mb_edges WHERE ino=?1 LIMIT 1")?
                .query_row([dir as i64], |row| row.get(0))
                .optional()?;
            return p.map(|p| p as Ino).ok_or(CatalogError::NotFound);
        }
        if self.heads(&r)?.contains(&m.node_id) {
            return Ok(UNFILED_INO);
        }
        let parent_id: Option<String> = r
            .prepare_cached("SELECT parent_id FROM file_nodes WHERE node_id=?1 LIMIT 1")?
            .query_row([&m.node_id], |row| row.get(0))?;
        let Some(pid) = parent_id else {
            return Ok(ROOT_INO);
        };
        let found: Option<(Option<i64>, String)> = r
            .prepare_cached(
                "SELECT i.ino, n.node_type FROM file_nodes n LEFT JOIN mb_inodes i ON i.node_id=n.node_id
                 WHERE n.node_id=?1",
            )?
            .query_row([&pid], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        drop(r);
        match found {
            Some((Some(ino), t)) if t == "folder" => Ok(ino as Ino),
            Some((None, t)) if t == "folder" => Ok(self.assign_inos(&[pid])?[0]),
            _ => Ok(UNFILED_INO),
        }
    }

    fn create(
        &self,
        parent: Ino,
        name: &str,
        new: &NewNode,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        let now_ns = to_ns(now);
        self.write_after(
            Self::alloc_ino,
            |tx, ino| {
                let dest = place(tx, parent)?;
                if matches!(dest, Place::Unfiled) {
                    return Err(CatalogError::NotPermitted(
                        "Unfiled only holds what the catalog left there",
                    ));
                }
                let node_id = uuid::Uuid::new_v4().to_string();
                let iso = format_iso(now_ns);
                let content = new
                    .content
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned());
                let cat_parent = catalog_parent(&dest, new.kind, name);
                tx.prepare_cached(
                    "INSERT INTO mb_inodes(ino, node_id, kind, mode, uid, gid, rdev, atime_ns, mtime_ns, ctime_ns, btime_ns,
                                           size, target, content, claimed)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?8, 0, ?9, ?10, 1)",
                )?
                .execute(params![
                    ino as i64,
                    node_id,
                    if cat_parent.is_some() { None } else { Some(new.kind.code()) },
                    new.perm as i64,
                    new.uid as i64,
                    new.gid as i64,
                    new.rdev as i64,
                    now_ns,
                    new.target,
                    content
                ])?;
                match cat_parent {
                    Some(pid) => {
                        let node_type = if new.kind == Kind::Dir {
                            "folder"
                        } else {
                            "file"
                        };
                        tx.prepare_cached(
                            "INSERT INTO file_nodes(node_id, parent_id, label, node_type, size, created_at, updated_at)
                             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        )?
                        .execute(params![
                            node_id,
                            pid,
                            names::label_for(name),
                            node_type,
                            if new.kind == Kind::Dir { None } else { Some(0) },
                            iso
                        ])?;
                        if let Some(c) = &content {
                            tx.prepare_cached(
                                "INSERT INTO file_locations(file_uuid, location, volume, added_at) VALUES(?1, ?2, 'MarkBase', ?3)",
                            )?
                            .execute(params![node_id, c, iso])?;
                        }
                    }
                    None => {
                        tx.prepare_cached("INSERT INTO mb_edges(parent, name, ino) VALUES(?1, ?2, ?3)")?
                            .execute(params![parent as i64, name, ino as i64])
                            .map_err(|e| match e.sqlite_error_code() {
                                Some(rusqlite::ErrorCode::ConstraintViolation) => CatalogError::Exists,
                                _ => e.into(),
                            })?;
                    }
                }
                touch_dir(tx, parent, now_ns)?;
                self.record(tx, ino)
            },
        )
    }

    fn unlink(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        open: bool,
        now: SystemTime,
    ) -> Result<Unlinked, CatalogError> {
        self.write(|tx| unlink_in(tx, parent, name, ino, open, to_ns(now)))
    }

    fn rename(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        replaced: Option<Ino>,
        now: SystemTime,
    ) -> Result<Renamed, CatalogError> {
        let now_ns = to_ns(now);
        self.write(|tx| {
            let replaced = match replaced {
                Some(old) => Some(unlink_in(tx, new_parent, new_name, old, true, now_ns)?),
                None => None,
            };
            move_edge(tx, parent, name, ino, new_parent, new_name)?;
            touch_dir(tx, parent, now_ns)?;
            touch_dir(tx, new_parent, now_ns)?;
            set_times(tx, ino, None, Some(now_ns))?;
            Ok(Renamed { replaced })
        })
    }

    fn exchange(
        &self,
        parent: Ino,
        name: &str,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        other: Ino,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        let now_ns = to_ns(now);
        self.write(|tx| {
            let tmp = format!(".mb-exchange-{}", uuid::Uuid::new_v4());
            move_edge(tx, parent, name, ino, parent, &tmp)?;
            move_edge(tx, new_parent, new_name, other, parent, name)?;
            move_edge(tx, parent, &tmp, ino, new_parent, new_name)?;
            for d in [parent, new_parent] {
                touch_dir(tx, d, now_ns)?;
            }
            for i in [ino, other] {
                set_times(tx, i, None, Some(now_ns))?;
            }
            Ok(())
        })
    }

    fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        let now_ns = to_ns(now);
        self.write(|tx| {
            let m = meta(tx, ino)?;
            if m.kind == Kind::Dir {
                return Err(CatalogError::NotPermitted("hard links to directories"));
            }
            if matches!(place(tx, new_parent)?, Place::Unfiled) {
                return Err(CatalogError::NotPermitted(
                    "Unfiled only holds what the catalog left there",
                ));
            }
            tx.prepare_cached("INSERT INTO mb_edges(parent, name, ino) VALUES(?1, ?2, ?3)")?
                .execute(params![new_parent as i64, new_name, ino as i64])
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => CatalogError::Exists,
                    _ => e.into(),
                })?;
            touch_dir(tx, new_parent, now_ns)?;
            set_times(tx, ino, None, Some(now_ns))?;
            self.record(tx, ino)
        })
    }

    fn set_attrs(&self, ino: Ino, a: &SetAttrs) -> Result<NodeRecord, CatalogError> {
        if ino == UNFILED_INO {
            return Err(CatalogError::NotPermitted("Unfiled is virtual"));
        }
        self.write(|tx| {
            let m = meta(tx, ino)?;
            tx.prepare_cached(
                "UPDATE mb_inodes SET mode=coalesce(?2, mode), uid=coalesce(?3, uid), gid=coalesce(?4, gid),
                        atime_ns=coalesce(?5, atime_ns), ctime_ns=coalesce(?6, ctime_ns) WHERE ino=?1",
            )?
            .execute(params![
                ino as i64,
                a.perm.map(|p| p as i64),
                a.uid.map(|u| u as i64),
                a.gid.map(|g| g as i64),
                a.atime.map(to_ns),
                a.ctime.map(to_ns)
            ])?;
            if let Some(size) = a.size {
                if m.in_catalog {
                    tx.prepare_cached("UPDATE file_nodes SET size=?2 WHERE node_id=?1")?
                        .execute(params![m.node_id, size as i64])?;
                } else {
                    tx.prepare_cached("UPDATE mb_inodes SET size=?2 WHERE ino=?1")?
                        .execute(params![ino as i64, size as i64])?;
                }
            }
            if let Some(mtime) = a.mtime {
                set_times(tx, ino, Some(to_ns(mtime)), None)?;
            }
            self.record(tx, ino)
        })
    }

    fn commit_file(
        &self,
        ino: Ino,
        size: u64,
        mtime: SystemTime,
        ctime: SystemTime,
    ) -> Result<(), CatalogError> {
        self.set_attrs(
            ino,
            &SetAttrs {
                size: Some(size),
                mtime: Some(mtime),
                ctime: Some(ctime),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    fn correct_sizes(&self, sizes: &[(Ino, u64)]) -> Result<(), CatalogError> {
        self.write(|tx| {
            for (ino, size) in sizes {
                tx.prepare_cached(
                    "UPDATE file_nodes SET size=?2 WHERE node_id=(SELECT node_id FROM mb_inodes WHERE ino=?1)
                     AND (size IS NULL OR size != ?2)",
                )?
                .execute(params![*ino as i64, *size as i64])?;
            }
            Ok(())
        })
    }

    fn purge(&self, ino: Ino) -> Result<(), CatalogError> {
        self.write(|tx| purge_in(tx, ino))
    }

    fn usage(&self) -> Result<u64, CatalogError> {
        let r = self.reader()?;
        let n: i64 = r
            .prepare_cached(
                "SELECT coalesce((SELECT sum(max(coalesce(size, 0), 0)) FROM file_nodes
                                  WHERE node_type = 'file'), 0)
                      + coalesce((SELECT sum(max(coalesce(i.size, 0), 0)) FROM mb_inodes i
                                  WHERE i.kind = 'f' AND NOT EXISTS
                                    (SELECT 1 FROM file_nodes n WHERE n.node_id = i.node_id)), 0)",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn content_refs(&self) -> Result<Vec<ContentRef>, CatalogError> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(&format!(
            "SELECT location, file_uuid FROM file_locations
             UNION ALL
             SELECT content, node_id FROM mb_inodes i WHERE content IS NOT NULL AND {LIVE_INODE}"
        ))?;
        let rows = st.query_map([], |row| {
            Ok(ContentRef {
                path: PathBuf::from(row.get::<_, String>(0)?),
                node_id: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn check(&self) -> Result<CatalogCheck, CatalogError> {
        let r = self.reader()?;
        let mut out = CatalogCheck::default();
        let lines: Vec<String> = r
            .prepare("PRAGMA integrity_check")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        if lines != ["ok"] {
            out.damage.push(format!(
                "SQLite integrity check failed: {} (restore the catalog from a backup)",
                lines.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        let count = |sql: &str| -> Result<i64, CatalogError> {
            Ok(r.prepare_cached(sql)?.query_row([], |row| row.get(0))?)
        };
        let n = count(DANGLING_EDGES_COUNT)?;
        if n > 0 {
            out.damage
                .push(format!("{n} names point at inodes that do not exist"));
        }
        let n = count(HOMELESS_EDGES_COUNT)?;
        if n > 0 {
            out.damage
                .push(format!("{n} names sit in folders that do not exist"));
        }
        let n = count("SELECT count(*) FROM mb_inodes WHERE unlinked = 1")?;
        if n > 0 {
            out.damage.push(format!(
                "{n} files deleted while open were not freed (the daemon stopped first)"
            ));
        }
        let n = count(&format!("SELECT count(*) FROM file_nodes n WHERE {ORPHAN}"))?;
        if n > 0 {
            out.notes.push(format!(
                "{n} nodes whose parent is missing or not a folder (shown under Unfiled)"
            ));
        }
        let n = count("SELECT count(*) FROM file_nodes WHERE label IS NULL OR label = ''")?;
        if n > 0 {
            out.notes
                .push(format!("{n} nodes without a label (shown as Untitled)"));
        }
        let n = count(
            "SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) AS c FROM file_nodes
             GROUP BY parent_id, label HAVING count(*) > 1)",
        )?;
        if n > 0 {
            out.notes.push(format!(
                "{n} nodes share a label with another in their folder (shown as `name (2).ext`)"
            ));
        }
        let n = count(
            "SELECT count(*) FROM (SELECT node_id FROM file_nodes GROUP BY node_id HAVING count(*) > 1)",
        )?;
        if n > 0 {
            out.notes.push(format!(
                "{n} node ids appear on more than one row (the first is shown)"
            ));
        }
        let n = cycles(&r)?.0.len();
        if n > 0 {
            out.notes.push(format!(
                "{n} nodes in parent_id cycles, unreachable from the root (shown under Unfiled)"
            ));
        }
        Ok(out)
    }

    fn repair(&self) -> Result<Vec<String>, CatalogError> {
        self.write(|tx| {
            let mut done = Vec::new();
            let n = tx.execute(
                &DANGLING_EDGES_COUNT.replace(
                    "SELECT count(*) FROM mb_edges e",
                    "DELETE FROM mb_edges AS e",
                ),
                [],
            )?;
            if n > 0 {
                done.push(format!("removed {n} names of inodes that did not exist"));
            }
            // A name in a folder that is gone: the node has no place; free it
            // (its content file, if any, goes to lost+found with the rest).
            let homeless: Vec<i64> = tx
                .prepare(&HOMELESS_EDGES_COUNT.replace("count(*)", "e.ino"))?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            if !homeless.is_empty() {
                tx.execute(
                    &HOMELESS_EDGES_COUNT.replace(
                        "SELECT count(*) FROM mb_edges e",
                        "DELETE FROM mb_edges AS e",
                    ),
                    [],
                )?;
                for ino in &homeless {
                    purge_in(tx, *ino as Ino)?;
                }
                done.push(format!(
                    "removed {} names in folders that did not exist",
                    homeless.len()
                ));
            }
            Ok(done)
        })
    }

    fn drop_location(&self, node_id: &str, path: &Path) -> Result<(), CatalogError> {
        let p = path.to_string_lossy();
        self.write(|tx| {
            tx.execute(
                "DELETE FROM file_locations WHERE file_uuid = ?1 AND location = ?2",
                params![node_id, p],
            )?;
            tx.execute(
                "UPDATE mb_inodes SET content = NULL WHERE node_id = ?1 AND content = ?2",
                params![node_id, p],
            )?;
            Ok(())
        })
    }

    fn leftovers(&self) -> Result<Vec<(Ino, Option<PathBuf>)>, CatalogError> {
        let r = self.reader()?;
        let mut st = r.prepare_cached("SELECT ino, content FROM mb_inodes WHERE unlinked=1")?;
        let rows = st.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)? as Ino,
                row.get::<_, Option<String>>(1)?,
            ))
        })?;
        Ok(rows
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(i, c)| (i, c.map(PathBuf::from)))
            .collect())
    }

    fn get_xattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>, CatalogError> {
        let r = self.reader()?;
        let v: Option<Vec<u8>> = r
            .prepare_cached("SELECT value FROM mb_xattrs WHERE ino=?1 AND name=?2")?
            .query_row(params![ino as i64, name], |row| row.get(0))
            .optional()?;
        v.ok_or(CatalogError::NoAttr)
    }

    fn list_xattrs(&self, ino: Ino) -> Result<Vec<String>, CatalogError> {
        let r = self.reader()?;
        let mut st = r.prepare_cached("SELECT name FROM mb_xattrs WHERE ino=?1 ORDER BY name")?;
        let rows = st.query_map([ino as i64], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn set_xattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        flags: i32,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        self.write(|tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM mb_xattrs WHERE ino=?1 AND name=?2")?
                .query_row(params![ino as i64, name], |_| Ok(()))
                .optional()?
                .is_some();
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(CatalogError::Exists);
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(CatalogError::NoAttr);
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO mb_xattrs(ino, name, value) VALUES(?1, ?2, ?3)",
            )?
            .execute(params![ino as i64, name, value])?;
            set_times(tx, ino, None, Some(to_ns(now)))
        })
    }

    fn remove_xattr(&self, ino: Ino, name: &str, now: SystemTime) -> Result<(), CatalogError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached("DELETE FROM mb_xattrs WHERE ino=?1 AND name=?2")?
                .execute(params![ino as i64, name])?;
            if n == 0 {
                return Err(CatalogError::NoAttr);
            }
            set_times(tx, ino, None, Some(to_ns(now)))
        })
    }

    fn sync(&self) -> Result<(), CatalogError> {
        let mut wal = self.wal.lock();
        if wal.is_none() {
            let mut p = self.path.clone().into_os_string();
            p.push("-wal");
            match File::open(PathBuf::from(p)) {
                Ok(f) => *wal = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = wal.as_ref() {
            f.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let ns = parse_iso("2024-03-01T10:22:31.000000Z").unwrap();
        assert_eq!(format_iso(ns), "2024-03-01T10:22:31.000000Z");
        assert_eq!(parse_iso("2024-03-01 10:22:31"), Some(ns));
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso("2024-03-01T10:22:31.5+00:00"),
            Some(ns + 500_000_000)
        );
        assert_eq!(parse_iso("garbage"), None);
        assert_eq!(format_iso(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn precise_time_only_while_text_matches() {
        assert_eq!(precise(Some(5_000_000), Some(5_000_123)), Some(5_000_123));
        assert_eq!(precise(Some(6_000_000), Some(5_000_123)), Some(6_000_000));
        assert_eq!(precise(None, Some(7)), Some(7));
    }
}
