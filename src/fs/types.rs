//! What callers hand the core and how it is configured: attributes as the
//! file system reports them, the caller's identity, setattr requests, and
//! the caches' sizes and lifetime. Plain data, no behaviour: every front end
//! builds these from its own request types.

use std::time::{Duration, SystemTime};

use crate::catalog::{Ino, Kind};

/// Attributes of one inode, as the file system reports them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub ino: Ino,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A time to set: a given time or "now".
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    At(SystemTime),
    Now,
}

/// A setattr request.
#[derive(Clone, Debug, Default)]
pub struct SetAttrReq {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// Set where the front end leaves taking set-ID bits away to the core
    /// (FUSE's `HANDLE_KILLPRIV_V2`) and this change must: a chown, or a
    /// write or truncation by a caller without `CAP_FSETID`. See
    /// [`DropSetId`]. Ignored when `mode` is given (the caller's word).
    pub drop_setid: DropSetId,
}

/// Taking set-user-ID and set-group-ID bits off a file, as a local file
/// system's VFS does (`file_remove_privs`, `setattr_should_drop_sgid`):
/// set-user-ID always; set-group-ID where the file is group-executable or
/// the caller is neither root nor in the file's group. Directories keep
/// theirs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DropSetId {
    /// Nothing to take away.
    #[default]
    Keep,
    /// Take them away, for this caller.
    By(Caller),
}

/// Cache sizes and lifetimes.
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub attr_entries: usize,
    pub path_entries: usize,
    pub dir_entries: usize,
    /// How long what was read from the catalog (records, listings, parents,
    /// content paths) is trusted. Changes made through the core edit or drop
    /// it; changes made by other processes are found by
    /// [`MarkBaseFs::poll_catalog`](super::MarkBaseFs::poll_catalog), which
    /// the daemon runs every second. So by default it lives until it is
    /// evicted or the catalog changes, not until a clock runs out.
    pub ttl: Duration,
    /// How long a closed content file's size, as last seen, is trusted
    /// (content files can change behind the mount without the catalog).
    pub content_ttl: Duration,
    /// Most bytes of file content (`quota` in markbase.toml).
    pub quota: Option<u64>,
    /// The spelling a new name is stored in.
    pub names: NameForm,
    /// What a `._name` file says about `name`.
    pub appledouble: AppleDoubleView,
}

/// The Unicode spelling a new name is stored in. Either way a name finds its
/// entry in any normalization form (lookup compares NFC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameForm {
    /// Byte for byte as given, as ext4 does: a Linux tool that lists what it
    /// wrote finds its own bytes (`rsync --delete` from a folder of NFD
    /// names would otherwise delete and copy them again at every run).
    #[default]
    AsGiven,
    /// In NFC, the form the MarkBase app writes: a Mac's Finder sends NFD,
    /// and the catalog should not hold two spellings of one word. The NFS
    /// front end, whose clients are Macs, asks for it.
    Nfc,
}

/// What the core's `._name` files hold (`mac_metadata.rs`): a front end's
/// choice, by whether its clients keep extended attributes themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppleDoubleView {
    /// The resource fork alone, in Samba's layout
    /// ([`appledouble::build_fork`](super::appledouble::build_fork)): for a
    /// front end with extended attributes of its own (FUSE). The other Mac
    /// attributes are attributes there, or streams over Samba, and a
    /// resource fork may pass the 64 KiB an attribute can hold. Samba's
    /// `vfs_fruit` keeps the fork in such a file and converts nothing.
    #[default]
    ResourceFork,
    /// Every Mac attribute, in the Mac's own layout: for a front end whose
    /// clients have nowhere else to put them (NFSv3, a Mac's client).
    Everything,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            attr_entries: 65_536,
            path_entries: 65_536,
            dir_entries: 1_000,
            ttl: Duration::MAX,
            content_ttl: Duration::from_secs(60),
            quota: None,
            names: NameForm::AsGiven,
            appledouble: AppleDoubleView::ResourceFork,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_what_the_module_docs_say() {
        let c = FsConfig::default();
        assert_eq!(c.attr_entries, 65_536);
        assert_eq!(c.path_entries, 65_536);
        assert_eq!(c.dir_entries, 1_000);
        assert_eq!(c.ttl, Duration::MAX);
        assert_eq!(c.content_ttl, Duration::from_secs(60));
        assert_eq!(c.quota, None);
        assert_eq!(c.names, NameForm::AsGiven);
        assert_eq!(c.appledouble, AppleDoubleView::ResourceFork);
    }
}
