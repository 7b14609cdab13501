//! Reads: one inode's record, a folder's rendered entries, a folder's parent.
//!
//! A record joins `mb_inodes` with the node's `file_nodes` row (if it has
//! one) and its `file_locations`; a listing gathers the catalog children and
//! the side entries and hands them to `names::render`, which gives every
//! entry a unique name. Nodes seen for the first time get their inode
//! numbers here (one write). Format oddities render as the format documents:
//! orphans and one node of each `parent_id` cycle under `Unfiled`, a node id
//! on two rows once.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension};

use super::mutate::{meta, place, Place};
use super::time::{from_ns, parse_iso, precise};
use super::SqliteCatalog;
use crate::catalog::names::{self, RawChild};
use crate::catalog::{CatalogError, DirEntry, Ino, Kind, NodeRecord, ROOT_INO, UNFILED_INO};

impl SqliteCatalog {
    pub(super) fn record(&self, conn: &Connection, ino: Ino) -> Result<NodeRecord, CatalogError> {
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

    pub(super) fn subdir_count(
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
    pub(super) fn heads(
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

    pub(super) fn has_orphans(conn: &Connection) -> Result<bool, CatalogError> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT 1 FROM file_nodes n WHERE {ORPHAN} LIMIT 1"
            ))?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

/// Catalog nodes that never reach the root because their parent chain loops,
/// and the least node id of each loop (its head, shown under `Unfiled`).
pub(super) fn cycles(conn: &Connection) -> Result<(Vec<String>, Vec<String>), CatalogError> {
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
pub(super) const ORPHAN: &str = "n.parent_id IS NOT NULL AND NOT EXISTS
    (SELECT 1 FROM file_nodes p WHERE p.node_id = n.parent_id AND p.node_type = 'folder')";

pub(super) type CatalogChild = (Option<i64>, Kind, String);

impl SqliteCatalog {
    pub(super) fn node(&self, ino: Ino) -> Result<NodeRecord, CatalogError> {
        let r = self.reader()?;
        self.record(&r, ino)
    }

    /// One read transaction for all of them: each statement outside one
    /// would take and drop the WAL read lock (two `fcntl`s) by itself.
    pub(super) fn nodes(&self, inos: &[Ino]) -> Vec<Result<NodeRecord, CatalogError>> {
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

    pub(super) fn children(&self, dir: Ino) -> Result<Vec<DirEntry>, CatalogError> {
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

    pub(super) fn parent(&self, dir: Ino) -> Result<Ino, CatalogError> {
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

    pub(super) fn unlinked_open(&self) -> Result<Vec<(Ino, Option<PathBuf>)>, CatalogError> {
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

    pub(super) fn content_bytes(&self) -> Result<u64, CatalogError> {
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
}
