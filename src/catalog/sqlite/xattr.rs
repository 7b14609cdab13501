//! Extended attributes, in `mb_xattrs` (the v1 format has none). Setting
//! or removing one changes the inode's ctime, as on ext4.

use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};

use super::journal::Op;
use super::mutate::set_times;
use super::time::to_ns;
use super::Shared;
use crate::catalog::{CatalogError, Ino, XattrSet};

impl Shared {
    pub(super) fn get_xattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>, CatalogError> {
        let r = self.reader_for(&[ino])?;
        let v: Option<Vec<u8>> = r
            .prepare_cached("SELECT value FROM mb_xattrs WHERE ino=?1 AND name=?2")?
            .query_row(params![ino as i64, name], |row| row.get(0))
            .optional()?;
        v.ok_or(CatalogError::NoAttr)
    }

    pub(super) fn list_xattrs(&self, ino: Ino) -> Result<Vec<String>, CatalogError> {
        let r = self.reader_for(&[ino])?;
        let mut st = r.prepare_cached("SELECT name FROM mb_xattrs WHERE ino=?1 ORDER BY name")?;
        let rows = st.query_map([ino as i64], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn set_xattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        how: XattrSet,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        self.journal_op(&Op::SetXattr {
            ino,
            name: name.to_string(),
            value: value.to_vec(),
            create: how.create,
            replace: how.replace,
            now: to_ns(now),
        })
        .map(|_| ())
    }

    pub(super) fn remove_xattr(
        &self,
        ino: Ino,
        name: &str,
        now: SystemTime,
    ) -> Result<(), CatalogError> {
        self.journal_op(&Op::RemoveXattr {
            ino,
            name: name.to_string(),
            now: to_ns(now),
        })
        .map(|_| ())
    }
}

/// Set `name` of `ino` to `value`, as `how` allows (a journaled change).
pub(super) fn put_xattr_in(
    tx: &Connection,
    ino: Ino,
    name: &str,
    value: &[u8],
    how: XattrSet,
    now_ns: i64,
) -> Result<(), CatalogError> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM mb_xattrs WHERE ino=?1 AND name=?2")?
        .query_row(params![ino as i64, name], |_| Ok(()))
        .optional()?
        .is_some();
    if exists && how.create {
        return Err(CatalogError::Exists);
    }
    if !exists && how.replace {
        return Err(CatalogError::NoAttr);
    }
    tx.prepare_cached("INSERT OR REPLACE INTO mb_xattrs(ino, name, value) VALUES(?1, ?2, ?3)")?
        .execute(params![ino as i64, name, value])?;
    set_times(tx, ino, None, Some(now_ns))
}

/// Remove `name` of `ino` (ENODATA if it has none).
pub(super) fn delete_xattr_in(
    tx: &Connection,
    ino: Ino,
    name: &str,
    now_ns: i64,
) -> Result<(), CatalogError> {
    let n = tx
        .prepare_cached("DELETE FROM mb_xattrs WHERE ino=?1 AND name=?2")?
        .execute(params![ino as i64, name])?;
    if n == 0 {
        return Err(CatalogError::NoAttr);
    }
    set_times(tx, ino, None, Some(now_ns))
}
