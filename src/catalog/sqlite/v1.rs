//! Writing a new v1 catalog exactly as the MarkBase app would (no side
//! tables: a mount adds those when it first opens the file), for `markbase
//! library create` and its `--demo` tree. Rows go in one transaction.

use std::path::Path;

use rusqlite::{params, Connection};

use super::schema::V1_SCHEMA;
use super::time::{format_iso, to_ns};
use crate::catalog::CatalogError;

/// A new v1 catalog being filled; nothing is visible until [`V1Writer::commit`].
pub struct V1Writer {
    conn: Connection,
    now: String,
}

impl V1Writer {
    /// Make the file with the v1 tables (the caller has checked it does not exist).
    pub fn create(path: &Path) -> Result<V1Writer, CatalogError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(V1_SCHEMA)?;
        conn.execute_batch("BEGIN")?;
        Ok(V1Writer {
            conn,
            now: format_iso(to_ns(std::time::SystemTime::now())),
        })
    }

    /// Add a `file_nodes` row; returns its new node id (a UUID, as the app's).
    pub fn add_node(
        &self,
        parent: Option<&str>,
        label: &str,
        folder: bool,
        size: u64,
    ) -> Result<String, CatalogError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.conn
            .prepare_cached("INSERT INTO file_nodes VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)")?
            .execute(params![
                id,
                parent,
                label,
                if folder { "folder" } else { "file" },
                (!folder).then_some(size as i64),
                self.now
            ])?;
        Ok(id)
    }

    /// Add a `file_locations` row: node `id`'s content is at `location` on `volume`.
    pub fn add_location(
        &self,
        id: &str,
        location: &Path,
        volume: &str,
    ) -> Result<(), CatalogError> {
        self.conn
            .prepare_cached("INSERT INTO file_locations VALUES(?1, ?2, ?3, ?4)")?
            .execute(params![id, location.to_string_lossy(), volume, self.now])?;
        Ok(())
    }

    /// Write it all.
    pub fn commit(self) -> Result<(), CatalogError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }
}
