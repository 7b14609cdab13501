//! The catalog's own consistency check (`markbase fsck`): SQLite's integrity
//! check, names whose inode or folder is gone, files deleted while open and
//! never freed (damage, repairable), and the format's oddities (notes: they
//! render as documented and are not repaired).

use std::path::{Path, PathBuf};

use rusqlite::params;

use super::mutate::purge_in;
use super::read::ORPHAN;
use super::Shared;
use crate::catalog::{CatalogCheck, CatalogError, CheckDepth, ContentRef, Ino};

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

impl Shared {
    pub(super) fn content_refs(&self) -> Result<Vec<ContentRef>, CatalogError> {
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

    pub(super) fn clear_trash(&self, upto: i64) -> Result<(), CatalogError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM mb_trash WHERE id <= ?1")?
                .execute([upto])?;
            Ok(())
        })
    }

    pub(super) fn trash(&self) -> Result<(i64, Vec<PathBuf>), CatalogError> {
        let r = self.reader()?;
        let mut st = r.prepare_cached("SELECT id, path FROM mb_trash ORDER BY id")?;
        let rows = st.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut upto = 0;
        let mut out = Vec::new();
        for row in rows {
            let (id, p) = row?;
            upto = id;
            out.push(PathBuf::from(p));
        }
        Ok((upto, out))
    }

    pub(super) fn check(&self, depth: CheckDepth) -> Result<CatalogCheck, CatalogError> {
        let r = self.reader()?;
        let mut out = CatalogCheck::default();
        if depth == CheckDepth::Pages {
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
        let n = self.shape(&r)?.in_cycle;
        if n > 0 {
            out.notes.push(format!(
                "{n} nodes in parent_id cycles, unreachable from the root (shown under Unfiled)"
            ));
        }
        let j = self.replayed;
        if j.applied + j.skipped > 0 || j.torn > 0 {
            out.notes.push(format!(
                "the metadata journal held {} changes answered but not yet committed (the daemon died): replayed at this open{}{}",
                j.applied + j.skipped,
                match j.skipped {
                    0 => String::new(),
                    n => format!("; {n} no longer applied (the catalog changed meanwhile)"),
                },
                match j.torn {
                    0 => String::new(),
                    n => format!("; a torn last record ({n} bytes, never answered) ignored"),
                }
            ));
        }
        Ok(out)
    }

    pub(super) fn repair(&self) -> Result<Vec<String>, CatalogError> {
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

    pub(super) fn drop_location(&self, node_id: &str, path: &Path) -> Result<(), CatalogError> {
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
}
