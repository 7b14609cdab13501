//! Mutations: every change a user makes, each one transaction, and the moves
//! of a node between `file_nodes` and the side tables.
//!
//! A node lives in `file_nodes` (where the rest of MarkBase sees it) when it
//! is a file or folder under the root or a catalog folder and not OS junk;
//! anything else (symlinks, devices, `._` files, names inside side folders,
//! hard links beyond the first) lives in `mb_inodes` and `mb_edges`. A
//! rename or unlink moves a node between the two as its new place demands
//! (`to_side`, `to_catalog`), keeping what it was. The core has checked the
//! POSIX preconditions on the rendered listing; these functions check what
//! they can cheaply themselves.

use std::path::PathBuf;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};

use super::journal::Op;
use super::time::{format_iso, parse_iso, to_ns};
use super::Shared;
use crate::catalog::names;
use crate::catalog::{
    CatalogError, Ino, Kind, Move, NewNode, NodeRecord, Renamed, SetAttrs, Unlinked, ROOT_INO,
    UNFILED_INO,
};

/// Where a directory sits, for deciding whether a child joins `file_nodes`.
#[derive(Clone, Debug)]
pub(super) enum Place {
    Root,
    CatalogDir(String),
    SideDir,
    Unfiled,
}

/// What the mutation paths need to know of an inode.
pub(super) struct Meta {
    pub(super) node_id: String,
    pub(super) kind: Kind,
    pub(super) in_catalog: bool,
}

pub(super) fn meta(conn: &Connection, ino: Ino) -> Result<Meta, CatalogError> {
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

pub(super) fn place(conn: &Connection, dir: Ino) -> Result<Place, CatalogError> {
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
pub(super) fn catalog_parent(place: &Place, kind: Kind, name: &str) -> Option<Option<String>> {
    if !matches!(kind, Kind::Dir | Kind::File) || names::is_os_junk(name) {
        return None;
    }
    match place {
        Place::Root => Some(None),
        Place::CatalogDir(id) => Some(Some(id.clone())),
        _ => None,
    }
}

pub(super) fn set_times(
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
pub(super) fn touch_dir(conn: &Connection, dir: Ino, now: i64) -> Result<(), CatalogError> {
    set_times(conn, dir, Some(now), Some(now))
}

pub(super) fn count_children(conn: &Connection, dir: Ino, m: &Meta) -> Result<i64, CatalogError> {
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
pub(super) fn to_side(conn: &Connection, ino: Ino, m: &Meta) -> Result<(), CatalogError> {
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
pub(super) fn to_catalog(
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

pub(super) fn remaining_links(conn: &Connection, ino: Ino) -> Result<u32, CatalogError> {
    let m = meta(conn, ino)?;
    let edges: i64 = conn
        .prepare_cached("SELECT count(*) FROM mb_edges WHERE ino=?1")?
        .query_row([ino as i64], |r| r.get(0))?;
    Ok(edges as u32 + m.in_catalog as u32)
}

/// Remove one name of `ino`. The core has checked that (`parent`, `name`) is `ino`.
pub(super) fn unlink_in(
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
            trash_in(conn, content.as_deref())?;
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
        trash_in(conn, content.as_deref())?;
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

/// Name `ino` (`parent`, `name`) in the side tables; EEXIST if the name is taken.
fn add_edge(conn: &Connection, parent: Ino, name: &str, ino: Ino) -> Result<(), CatalogError> {
    conn.prepare_cached("INSERT INTO mb_edges(parent, name, ino) VALUES(?1, ?2, ?3)")?
        .execute(params![parent as i64, name, ino as i64])
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => CatalogError::Exists,
            _ => e.into(),
        })?;
    Ok(())
}

/// Note a purged node's content file as deleted (see `mb_trash`).
pub(super) fn trash_in(conn: &Connection, content: Option<&str>) -> Result<(), CatalogError> {
    if let Some(p) = content {
        conn.prepare_cached("INSERT INTO mb_trash(path) VALUES(?1)")?
            .execute([p])?;
    }
    Ok(())
}

/// Forget an unlinked inode at its last close, noting its content as deleted.
pub(super) fn purge_open_in(conn: &Connection, ino: Ino) -> Result<(), CatalogError> {
    let content: Option<String> = conn
        .prepare_cached("SELECT content FROM mb_inodes WHERE ino=?1")?
        .query_row([ino as i64], |r| r.get(0))
        .optional()?
        .flatten();
    trash_in(conn, content.as_deref())?;
    purge_in(conn, ino)
}

/// Forget an inode with no links left (its number is never handed out again).
pub(super) fn purge_in(conn: &Connection, ino: Ino) -> Result<(), CatalogError> {
    conn.prepare_cached("DELETE FROM mb_xattrs WHERE ino=?1")?
        .execute([ino as i64])?;
    conn.prepare_cached("DELETE FROM mb_inodes WHERE ino=?1 AND NOT EXISTS (SELECT 1 FROM mb_edges WHERE ino=?1)
                         AND NOT EXISTS (SELECT 1 FROM file_nodes n WHERE n.node_id = mb_inodes.node_id)")?
        .execute([ino as i64])?;
    Ok(())
}

/// Make the move `mv` (its destination the caller has made free).
pub(super) fn move_edge(conn: &Connection, mv: &Move) -> Result<(), CatalogError> {
    let Move {
        parent,
        name,
        ino,
        new_parent,
        new_name,
    } = *mv;
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
                add_edge(conn, new_parent, new_name, ino)?;
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
                add_edge(conn, new_parent, new_name, ino)?;
            }
        }
    } else {
        return Err(CatalogError::NotFound);
    }
    Ok(())
}

/// Make node `ino` (`node_id`) named `name` in `parent` (a journaled
/// create); whether it went into `file_nodes`.
pub(super) fn create_in(
    tx: &Connection,
    ino: Ino,
    node_id: &str,
    parent: Ino,
    name: &str,
    new: &NewNode,
    now_ns: i64,
) -> Result<bool, CatalogError> {
    let dest = place(tx, parent)?;
    if matches!(dest, Place::Unfiled) {
        return Err(CatalogError::NotPermitted(
            "Unfiled only holds what the catalog left there",
        ));
    }
    let iso = format_iso(now_ns);
    let content = new
        .content
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let cat_parent = catalog_parent(&dest, new.kind, name);
    let in_catalog = cat_parent.is_some();
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
            add_edge(tx, parent, name, ino)?;
        }
    }
    touch_dir(tx, parent, now_ns)?;
    Ok(in_catalog)
}

/// The record of a node [`create_in`] just made, as [`Shared::record`]
/// would read it back (a unit test holds the two together).
pub(super) fn created_record(
    ino: Ino,
    node_id: &str,
    new: &NewNode,
    in_catalog: bool,
    now_ns: i64,
) -> NodeRecord {
    let now = super::time::from_ns(now_ns);
    let locations = match (in_catalog && new.kind == Kind::File, &new.content) {
        (true, Some(c)) => vec![c.clone()],
        _ => vec![],
    };
    NodeRecord {
        ino,
        node_id: node_id.to_string(),
        kind: new.kind,
        in_catalog,
        perm: new.perm & 0o7777,
        uid: new.uid,
        gid: new.gid,
        rdev: new.rdev,
        nlink: if new.kind == Kind::Dir { 2 } else { 1 },
        size: 0,
        atime: now,
        mtime: now,
        ctime: now,
        btime: now,
        target: new.target.clone(),
        content: new.content.clone(),
        locations,
        has_xattrs: false,
    }
}

/// Make the move `m`, unlinking `replaced` at its destination first.
pub(super) fn rename_in(
    tx: &Connection,
    m: &Move,
    replaced: Option<Ino>,
    now_ns: i64,
) -> Result<Renamed, CatalogError> {
    let replaced = match replaced {
        Some(old) => Some(unlink_in(tx, m.new_parent, m.new_name, old, true, now_ns)?),
        None => None,
    };
    move_edge(tx, m)?;
    touch_dir(tx, m.parent, now_ns)?;
    touch_dir(tx, m.new_parent, now_ns)?;
    set_times(tx, m.ino, None, Some(now_ns))?;
    Ok(Renamed { replaced })
}

/// Swap two entries (RENAME_EXCHANGE): `m`, and `other` the other way.
pub(super) fn exchange_in(
    tx: &Connection,
    m: &Move,
    other: Ino,
    now_ns: i64,
) -> Result<(), CatalogError> {
    let (parent, new_parent) = (m.parent, m.new_parent);
    let tmp = format!(".mb-exchange-{}", uuid::Uuid::new_v4());
    move_edge(tx, &Move::new(parent, m.name, m.ino, parent, &tmp))?;
    move_edge(
        tx,
        &Move::new(new_parent, m.new_name, other, parent, m.name),
    )?;
    move_edge(tx, &Move::new(parent, &tmp, m.ino, new_parent, m.new_name))?;
    for d in [parent, new_parent] {
        touch_dir(tx, d, now_ns)?;
    }
    for i in [m.ino, other] {
        set_times(tx, i, None, Some(now_ns))?;
    }
    Ok(())
}

/// Add the name `new_name` in `new_parent` to `ino`.
pub(super) fn link_in(
    tx: &Connection,
    ino: Ino,
    new_parent: Ino,
    new_name: &str,
    now_ns: i64,
) -> Result<(), CatalogError> {
    let m = meta(tx, ino)?;
    if m.kind == Kind::Dir {
        return Err(CatalogError::NotPermitted("hard links to directories"));
    }
    if matches!(place(tx, new_parent)?, Place::Unfiled) {
        return Err(CatalogError::NotPermitted(
            "Unfiled only holds what the catalog left there",
        ));
    }
    add_edge(tx, new_parent, new_name, ino)?;
    touch_dir(tx, new_parent, now_ns)?;
    set_times(tx, ino, None, Some(now_ns))
}

/// Change the attributes `a` gives of `ino`.
pub(super) fn set_attrs_in(tx: &Connection, ino: Ino, a: &SetAttrs) -> Result<(), CatalogError> {
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
    Ok(())
}

impl Shared {
    /// A change under `Unfiled` may end a cycle or an orphan: the catalog's
    /// shape is found anew at the next listing that needs it.
    pub(super) fn reshaped_by(&self, parents: &[Ino]) {
        if parents.contains(&UNFILED_INO) {
            *self.shape.lock() = None;
        }
    }

    pub(super) fn rename(
        &self,
        m: &Move,
        replaced: Option<Ino>,
        now: SystemTime,
    ) -> Result<Renamed, CatalogError> {
        self.reshaped_by(&[m.parent, m.new_parent]);
        self.journal_op(&Op::rename(m, replaced, to_ns(now)))?
            .renamed()
    }

    pub(super) fn exchange(
        &self,
        m: &Move,
        other: Ino,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        self.reshaped_by(&[m.parent, m.new_parent]);
        self.journal_op(&Op::exchange(m, other, to_ns(now)))
            .map(|_| ())
    }

    pub(super) fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &str,
        now: SystemTime,
    ) -> Result<NodeRecord, CatalogError> {
        self.journal_op(&Op::Link {
            ino,
            new_parent,
            new_name: new_name.to_string(),
            now: to_ns(now),
        })?
        .record()
    }

    pub(super) fn correct_sizes(&self, sizes: &[(Ino, u64)]) -> Result<(), CatalogError> {
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

    pub(super) fn purge(&self, ino: Ino) -> Result<(), CatalogError> {
        self.journal_op(&Op::Purge { ino }).map(|_| ())
    }
}
