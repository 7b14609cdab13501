//! SQLite's errors as backend-neutral [`CatalogError`]s, in one place: the
//! core above never sees a rusqlite type, and a second backend maps its own
//! failures to the same variants (and so to the same errno values).

use rusqlite::ErrorCode;

use crate::catalog::CatalogError;

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => CatalogError::NoSpace,
            Some(ErrorCode::ReadOnly) => CatalogError::NotWritable(e.to_string()),
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                CatalogError::Busy(e.to_string())
            }
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                CatalogError::Corrupt(e.to_string())
            }
            _ => CatalogError::Backend(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_err(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn codes_become_neutral_variants() {
        use rusqlite::ffi;
        assert!(matches!(
            sqlite_err(ffi::SQLITE_FULL).into(),
            CatalogError::NoSpace
        ));
        assert!(matches!(
            sqlite_err(ffi::SQLITE_READONLY).into(),
            CatalogError::NotWritable(_)
        ));
        assert!(matches!(
            sqlite_err(ffi::SQLITE_BUSY).into(),
            CatalogError::Busy(_)
        ));
        assert!(matches!(
            sqlite_err(ffi::SQLITE_CORRUPT).into(),
            CatalogError::Corrupt(_)
        ));
        // Only the statements that insert a name know a constraint means EEXIST.
        assert!(matches!(
            sqlite_err(ffi::SQLITE_CONSTRAINT).into(),
            CatalogError::Backend(_)
        ));
        assert!(matches!(
            CatalogError::from(rusqlite::Error::InvalidQuery),
            CatalogError::Backend(_)
        ));
    }
}
