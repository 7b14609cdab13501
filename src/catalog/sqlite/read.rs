//! Reads: one inode's record, a folder's rendered entries, a folder's parent.
//!
//! A record joins `mb_inodes` with the node's `file_nodes` row (if it has
//! one) and its `file_locations`; a listing gathers the catalog children and
//! the side entries and hands them to `names::render`, which gives every
//! entry a unique name. Nodes seen for the first time get their inode
//! numbers here (one write). Format oddities render as the format documents:
//! orphans and one node of each `parent_id` cycle under `Unfiled`, a node id
//! on two rows once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHashSet};

use super::mutate::{meta, place, Place};
use super::time::{from_ns, parse_iso, precise};
use super::Shared;
use crate::catalog::names::{self, RawChild};
use crate::catalog::{
    CatalogError, DirEntry, Ino, Kind, NodeRecord, SillyName, ROOT_INO, UNFILED_INO,
};

impl Shared {
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
                        n.node_id IS NOT NULL, n.node_type, n.size, n.created_at, n.updated_at,
                        EXISTS(SELECT 1 FROM mb_xattrs x WHERE x.ino = i.ino),
                        (SELECT count(*) FROM mb_edges e WHERE e.ino = i.ino),
                        (SELECT group_concat(l.location, char(0) ORDER BY l.rowid)
                           FROM file_locations l WHERE l.file_uuid = n.node_id)
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
                    r.get::<_, bool>(19)?,
                    (r.get::<_, i64>(20)?, r.get::<_, Option<String>>(21)?),
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
            has_xattrs,
            (edges, locations),
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
            edges as u32 + in_catalog as u32
        };
        // Locations come in one column, NUL-separated (no path holds a NUL),
        // in the order they were added.
        let locations = match (in_catalog && kind == Kind::File, locations) {
            (true, Some(l)) => l.split('\0').map(PathBuf::from).collect(),
            _ => vec![],
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
            has_xattrs,
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

    /// The catalog's shape as far as listings need it: the cycle heads and
    /// whether any node is an orphan. Found in one pass over `file_nodes` at
    /// the first listing that needs it, then kept until another process
    /// changes the catalog or a node leaves or enters `Unfiled` here.
    pub(super) fn shape(&self, conn: &Connection) -> Result<Arc<Shape>, CatalogError> {
        let mut h = self.shape.lock();
        if let Some(h) = h.as_ref() {
            return Ok(h.clone());
        }
        let s = shape_of(conn)?;
        let found = Arc::new(Shape {
            heads: s.heads.into_iter().collect(),
            orphans: s.orphans,
            in_cycle: s.in_cycle.len(),
        });
        *h = Some(Arc::clone(&found));
        Ok(found)
    }
}

/// See [`Shared::shape`].
#[derive(Debug, Default)]
pub(super) struct Shape {
    pub heads: HashSet<String>,
    pub orphans: bool,
    /// How many nodes are in loops (for `fsck`).
    pub in_cycle: usize,
}

/// What one pass over `file_nodes` finds: the nodes that never reach the
/// root because their parent chain loops, the least node id of each loop
/// (its head, shown under `Unfiled`), and whether some node's parent is
/// missing or not a folder (an orphan, also under `Unfiled`).
pub(super) struct Found {
    pub in_cycle: Vec<String>,
    pub heads: Vec<String>,
    pub orphans: bool,
}

/// [`Found`] for the catalog: each node id hashed once, the walks over
/// indices (a 50,000-node catalog: a few milliseconds).
pub(super) fn shape_of(conn: &Connection) -> Result<Found, CatalogError> {
    let rows: Vec<(String, Option<String>, bool)> = conn
        .prepare_cached("SELECT node_id, parent_id, node_type = 'folder' FROM file_nodes")?
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get::<_, Option<bool>>(2)?.unwrap_or(false),
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    index.reserve(rows.len());
    let mut folder = vec![false; rows.len()];
    for (i, (id, _, is_folder)) in rows.iter().enumerate() {
        let at = *index.entry(id.as_str()).or_insert(i);
        folder[at] |= *is_folder;
    }
    // The parent of each distinct node (a node id on two rows: the last
    // row's), as an index; `None` at the top or where the parent is missing.
    let mut parent: Vec<Option<usize>> = vec![None; rows.len()];
    let mut has_parent = vec![false; rows.len()];
    let mut orphans = false;
    for (id, p, _) in &rows {
        let at = index[id.as_str()];
        let Some(p) = p else { continue };
        has_parent[at] = true;
        let pi = index.get(p.as_str()).copied();
        orphans |= !pi.is_some_and(|pi| folder[pi]);
        parent[at] = pi;
    }
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; rows.len()];
    let mut in_cycle: Vec<String> = Vec::new();
    let mut heads: Vec<String> = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    for &start in index.values() {
        if !has_parent[start] || state[start] != NEW {
            continue;
        }
        path.clear();
        let mut cur = Some(start);
        while let Some(c) = cur {
            match state[c] {
                DONE => break,
                ON_PATH => {
                    // `c` is where the walk came back to: the loop is from there on.
                    let at = path.iter().position(|n| *n == c).unwrap_or(0);
                    let ids: Vec<&str> = path[at..].iter().map(|n| rows[*n].0.as_str()).collect();
                    in_cycle.extend(ids.iter().map(|s| s.to_string()));
                    if let Some(h) = ids.iter().min() {
                        heads.push(h.to_string());
                    }
                    break;
                }
                _ => {
                    state[c] = ON_PATH;
                    path.push(c);
                    cur = if has_parent[c] { parent[c] } else { None };
                }
            }
        }
        for n in &path {
            state[*n] = DONE;
        }
    }
    in_cycle.sort();
    heads.sort();
    Ok(Found {
        in_cycle,
        heads,
        orphans,
    })
}

/// A node whose parent does not exist (or is not a folder) sits in `Unfiled`.
pub(super) const ORPHAN: &str = "n.parent_id IS NOT NULL AND NOT EXISTS
    (SELECT 1 FROM file_nodes p WHERE p.node_id = n.parent_id AND p.node_type = 'folder')";

/// A catalog child's inode (none yet: one is assigned) and kind; its node
/// id is the [`RawChild`]'s.
pub(super) type CatalogChild = (Option<i64>, Kind);

impl Shared {
    pub(super) fn get(&self, ino: Ino) -> Result<NodeRecord, CatalogError> {
        // Unfiled's record is the root's.
        let r = self.reader_for(&[ino, ROOT_INO])?;
        self.record(&r, ino)
    }

    /// One read transaction for all of them: each statement outside one
    /// would take and drop the WAL read lock (two `fcntl`s) by itself.
    pub(super) fn get_many(&self, inos: &[Ino]) -> Vec<Result<NodeRecord, CatalogError>> {
        let r = match self.reader_for(inos) {
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

    pub(super) fn list(&self, dir: Ino) -> Result<Vec<DirEntry>, CatalogError> {
        let mut raw: Vec<RawChild<CatalogChild>> = Vec::new();
        {
            let r = self.reader_for(&[dir])?;
            let dir_place = place(&r, dir)?;
            let shape = match dir_place {
                Place::SideDir => Default::default(),
                _ => self.shape(&r)?,
            };
            let heads = &shape.heads;
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
                    let claimed: bool = row.get(5)?;
                    let kind = row.get_ref(2)?.as_str().ok().and_then(Kind::from_code);
                    Ok(RawChild {
                        label: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        priority: if claimed { 0 } else { 1 },
                        created_at: row.get(3)?,
                        node_id: row.get(0)?,
                        payload: (row.get(4)?, kind.unwrap_or(Kind::File)),
                    })
                };
                let mut rows = match &key {
                    Some(k) => st.query_map([k], map)?.collect::<Result<Vec<_>, _>>()?,
                    None => st.query_map([], map)?.collect::<Result<Vec<_>, _>>()?,
                };
                // A cycle's head leaves its (looping) parent for Unfiled; a
                // node id found on two rows is shown once (its first row).
                let keep: Vec<bool> = {
                    let mut seen: FxHashSet<&str> = FxHashSet::default();
                    seen.reserve(rows.len());
                    rows.iter()
                        .map(|c| {
                            let id = c.node_id.as_str();
                            (heads.is_empty() || !heads.contains(id)) && seen.insert(id)
                        })
                        .collect()
                };
                let mut keep = keep.into_iter();
                rows.retain(|_| keep.next().unwrap_or(false));
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
                        ),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.extend(side);
            if dir == ROOT_INO && (!heads.is_empty() || shape.orphans) {
                raw.push(RawChild {
                    label: "Unfiled".into(),
                    priority: 2,
                    created_at: String::new(),
                    node_id: String::new(),
                    payload: (Some(UNFILED_INO as i64), Kind::Dir),
                });
            }
        }
        let missing: Vec<String> = raw
            .iter()
            .filter(|c| c.payload.0.is_none())
            .map(|c| c.node_id.clone())
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
            .map(|(name, disambiguated, (ino, kind))| DirEntry {
                name,
                ino: ino.unwrap_or(0) as Ino,
                kind,
                disambiguated,
            })
            .collect())
    }

    pub(super) fn parent_of(&self, dir: Ino) -> Result<Ino, CatalogError> {
        if dir == ROOT_INO || dir == UNFILED_INO {
            return Ok(ROOT_INO);
        }
        let r = self.reader_for(&[dir])?;
        let m = meta(&r, dir)?;
        if !m.in_catalog {
            let p: Option<i64> = r
                .prepare_cached("SELECT parent FROM mb_edges WHERE ino=?1 LIMIT 1")?
                .query_row([dir as i64], |row| row.get(0))
                .optional()?;
            return p.map(|p| p as Ino).ok_or(CatalogError::NotFound);
        }
        if self.shape(&r)?.heads.contains(&m.node_id) {
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

    pub(super) fn leftovers(&self) -> Result<Vec<(Ino, Option<PathBuf>)>, CatalogError> {
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

    pub(super) fn silly_renamed(&self) -> Result<Vec<SillyName>, CatalogError> {
        let r = self.reader()?;
        let mut st = r.prepare_cached(
            "SELECT e.parent, e.name, i.ctime_ns FROM mb_edges e JOIN mb_inodes i ON i.ino = e.ino
             WHERE e.name LIKE '.nfs%'",
        )?;
        let rows = st.query_map([], |row| {
            Ok(SillyName {
                parent: row.get::<_, i64>(0)? as Ino,
                name: row.get(1)?,
                ctime: from_ns(row.get::<_, Option<i64>>(2)?.unwrap_or(0)),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.retain(|s| names::is_silly_rename(&s.name));
        Ok(out)
    }

    pub(super) fn usage(&self) -> Result<u64, CatalogError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(rows: &[(&str, Option<&str>, &str)]) -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch("CREATE TABLE file_nodes(node_id TEXT, parent_id TEXT, node_type TEXT)")
            .expect("table");
        for (id, parent, kind) in rows {
            c.execute(
                "INSERT INTO file_nodes VALUES (?1, ?2, ?3)",
                (id, parent, kind),
            )
            .expect("row");
        }
        c
    }

    #[test]
    fn one_pass_finds_loops_their_heads_and_orphans() {
        let c = catalog(&[
            ("root", None, "folder"),
            ("a", Some("root"), "folder"),
            ("f", Some("a"), "file"),
            // x -> y -> z -> x, and w hangs off the loop.
            ("y", Some("z"), "folder"),
            ("x", Some("y"), "folder"),
            ("z", Some("x"), "folder"),
            ("w", Some("x"), "file"),
            // A self-loop.
            ("s", Some("s"), "folder"),
        ]);
        let f = shape_of(&c).expect("shape");
        assert_eq!(f.in_cycle, ["s", "x", "y", "z"]);
        assert_eq!(f.heads, ["s", "x"]);
        assert!(!f.orphans);
        let c = catalog(&[("root", None, "folder"), ("lost", Some("gone"), "file")]);
        assert!(shape_of(&c).expect("shape").orphans, "a missing parent");
        let c = catalog(&[("clip", None, "file"), ("under", Some("clip"), "file")]);
        assert!(
            shape_of(&c).expect("shape").orphans,
            "a parent that is a file"
        );
    }
}
