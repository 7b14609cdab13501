//! The core's errors, and the one place where they become errno values.
//!
//! Every core operation returns [`FsResult`]. [`FsError::errno`] gives what
//! ext4 would return for the same failure, so each front end (the FUSE
//! adapter, the NFS server) maps errors the same way without a
//! table of its own; [`FsError::is_routine`] tells a front end at which level
//! to log: a caller's mistake (ENOENT on lookup, EEXIST) at debug, the file
//! system's own trouble (I/O, catalog, missing content) at warn.

use std::io;

use crate::catalog::{CatalogError, Ino};
use crate::store::StoreError;

/// Errors of the core. [`FsError::errno`] maps each to what ext4 would return.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    /// The inode itself is gone (a handle outlived it), as opposed to a
    /// name not found: NFS tells the two apart (STALE, NOENT); errno
    /// ENOENT, as a local file system gives for a vanished inode.
    #[error("stale inode")]
    Stale,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("file name too long")]
    NameTooLong,
    #[error("file name is not valid UTF-8")]
    BadName,
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value does not fit")]
    Range,
    #[error("operation not permitted: {0}")]
    Perm(&'static str),
    #[error("permission denied: {0}")]
    Access(&'static str),
    #[error("cross-device move: {0}")]
    CrossDevice(&'static str),
    #[error("bad file handle")]
    BadHandle,
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("node {node_id} (inode {ino}) has no content file that exists and is allowed")]
    MissingContent { ino: Ino, node_id: String },
    #[error("too many links")]
    TooManyLinks,
    #[error("the system is low on memory: {0}")]
    NoMemory(&'static str),
    #[error("quota exceeded: {used} of {limit} bytes in use")]
    QuotaExceeded { used: u64, limit: u64 },
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("catalog: {0}")]
    Catalog(CatalogError),
    #[error("content store: {0}")]
    Store(#[from] StoreError),
}

impl From<CatalogError> for FsError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound => FsError::NotFound,
            CatalogError::Exists => FsError::Exists,
            CatalogError::NotDir => FsError::NotDir,
            CatalogError::IsDir => FsError::IsDir,
            CatalogError::NotEmpty => FsError::NotEmpty,
            CatalogError::NoAttr => FsError::NoAttr,
            CatalogError::NotPermitted(w) => FsError::Perm(w),
            CatalogError::CrossesBoundary(w) => FsError::CrossDevice(w),
            CatalogError::Invalid(w) => FsError::Invalid(w),
            other => FsError::Catalog(other),
        }
    }
}

impl FsError {
    /// The errno a POSIX caller sees.
    pub fn errno(&self) -> i32 {
        use libc::*;
        match self {
            FsError::NotFound | FsError::Stale => ENOENT,
            FsError::Exists => EEXIST,
            FsError::NotDir => ENOTDIR,
            FsError::IsDir => EISDIR,
            FsError::NotEmpty => ENOTEMPTY,
            FsError::Invalid(_) => EINVAL,
            FsError::NameTooLong => ENAMETOOLONG,
            FsError::BadName => EILSEQ,
            FsError::NoAttr => NO_ATTR,
            FsError::Range => ERANGE,
            FsError::Perm(_) => EPERM,
            FsError::Access(_) => EACCES,
            FsError::CrossDevice(_) => EXDEV,
            FsError::BadHandle => EBADF,
            FsError::NotSupported(_) => EOPNOTSUPP,
            FsError::MissingContent { .. } => EIO,
            FsError::NoMemory(_) => ENOMEM,
            FsError::QuotaExceeded { .. } => libc::EDQUOT,
            FsError::TooManyLinks => EMLINK,
            FsError::Io(e) => e.raw_os_error().unwrap_or(EIO),
            FsError::Store(StoreError::Io { source, .. }) => source.raw_os_error().unwrap_or(EIO),
            FsError::Catalog(CatalogError::Io(e)) => e.raw_os_error().unwrap_or(EIO),
            FsError::Catalog(CatalogError::NoSpace) => ENOSPC,
            FsError::Catalog(CatalogError::NotWritable(_)) => EROFS,
            FsError::Catalog(_) => EIO,
        }
    }

    /// Failures a caller causes (ENOENT on lookup, EEXIST, ...) are routine;
    /// the rest are the file system's own trouble and are logged louder.
    pub fn is_routine(&self) -> bool {
        !matches!(
            self,
            FsError::Io(_)
                | FsError::Catalog(_)
                | FsError::Store(_)
                | FsError::MissingContent { .. }
                | FsError::NoMemory(_)
                | FsError::QuotaExceeded { .. }
        )
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// "No such attribute": ENODATA on Linux, ENOATTR on macOS.
#[cfg(not(target_os = "macos"))]
pub const NO_ATTR: i32 = libc::ENODATA;
#[cfg(target_os = "macos")]
pub const NO_ATTR: i32 = libc::ENOATTR;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_what_ext4_gives() {
        assert_eq!(FsError::NotFound.errno(), libc::ENOENT);
        assert_eq!(FsError::NameTooLong.errno(), libc::ENAMETOOLONG);
        assert_eq!(FsError::BadName.errno(), libc::EILSEQ);
        assert_eq!(FsError::NoAttr.errno(), libc::ENODATA);
        assert_eq!(
            FsError::QuotaExceeded { used: 2, limit: 1 }.errno(),
            libc::EDQUOT
        );
        let io = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(FsError::Io(io).errno(), libc::ENOSPC);
        assert_eq!(FsError::Io(io::Error::other("x")).errno(), libc::EIO);
    }

    #[test]
    fn catalog_errors_map_once() {
        // POSIX answers pass through as their own variants ...
        assert!(matches!(
            FsError::from(CatalogError::NotEmpty),
            FsError::NotEmpty
        ));
        assert_eq!(
            FsError::from(CatalogError::CrossesBoundary("x")).errno(),
            libc::EXDEV
        );
        // ... the backend's trouble keeps its cause and gets the errno of
        // the same trouble on a local disk.
        assert_eq!(FsError::from(CatalogError::NoSpace).errno(), libc::ENOSPC);
        assert_eq!(
            FsError::from(CatalogError::NotWritable("ro".into())).errno(),
            libc::EROFS
        );
        assert_eq!(
            FsError::from(CatalogError::Busy("locked".into())).errno(),
            libc::EIO
        );
        assert_eq!(
            FsError::from(CatalogError::Corrupt("bad page".into())).errno(),
            libc::EIO
        );
    }

    #[test]
    fn only_the_file_systems_own_trouble_is_loud() {
        assert!(FsError::NotFound.is_routine());
        assert!(FsError::Exists.is_routine());
        assert!(!FsError::from(CatalogError::Backend("x".into())).is_routine());
        assert!(!FsError::MissingContent {
            ino: 9,
            node_id: "n".into()
        }
        .is_routine());
    }
}
