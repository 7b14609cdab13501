//! A Mac's extended attributes where its client cannot send them (NFSv3):
//! `._name` AppleDouble files ([`super::appledouble`]) kept in step with
//! the attributes of `name` in the catalog's store, both ways, as Samba's
//! `vfs_fruit` does for SMB. So a Finder tag, a colour label or a quarantine
//! flag set on a Mac over NFS is the file's attribute for every front end
//! (`getxattr` through the FUSE mount, macFUSE), and one set elsewhere
//! reaches the Mac.
//!
//! * Written: a `._name` file committed (COMMIT, `fsync`, its last close)
//!   is parsed; the `com.apple.*` attributes of `name` become what it holds
//!   (set, changed, removed; nothing when they are already so). A `._name`
//!   whose `name` is gone stays an OS file in the side tables, as any.
//! * Read: looking `._name` up makes it say what `name`'s attributes are
//!   now: made if `name` has some and it is missing, written again if it
//!   says something else (never while it is open: a client is writing it).
//!
//! The core learns which inode is which `._name` at its lookup or creation
//! (an inode has no name of its own).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::SystemTime;

use super::appledouble::{self, is_mac_attribute};
use super::flags::{OpenFlags, XattrSet};
use super::{Caller, FsError, FsResult, MarkBaseFs};
use crate::catalog::Ino;

/// Most bytes of a `._name` file read back (a resource fork may be large;
/// past this the file is left as it is).
const MAX_APPLEDOUBLE: u64 = 64 << 20;

/// Attributes by name, sorted.
type Attrs = Vec<(String, Vec<u8>)>;

/// `._name` inodes as found, by inode.
pub(super) type Doubles = HashMap<Ino, Double>;

/// A `._name` file: its folder, `name`, and the content file's mtime when
/// its attributes were last given to `name` (a close that wrote nothing
/// gives them again never: `name`'s may have changed since, elsewhere).
#[derive(Clone)]
pub(super) struct Double {
    parent: Ino,
    name: String,
    applied: Option<SystemTime>,
}

/// The `name` that `._name` describes, if `file` is such a name.
pub fn described(file: &str) -> Option<&str> {
    file.strip_prefix("._").filter(|n| !n.is_empty())
}

impl MarkBaseFs {
    /// Note that `ino` is `._name` in `parent` (at its lookup or creation).
    pub(super) fn note_double(&self, parent: Ino, file: &str, ino: Ino) {
        if let Some(name) = described(file) {
            let mut d = self.doubles.lock();
            if d.len() > 100_000 {
                d.clear();
            }
            d.entry(ino)
                .and_modify(|x| {
                    if x.parent != parent || x.name != name {
                        (x.parent, x.name, x.applied) = (parent, name.to_string(), None);
                    }
                })
                .or_insert(Double {
                    parent,
                    name: name.to_string(),
                    applied: None,
                });
        }
    }

    /// The Mac's attributes of `ino`, by name.
    fn mac_attrs(&self, ino: Ino) -> FsResult<Attrs> {
        if !self.record(ino)?.has_xattrs {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for n in self.catalog.list_xattrs(ino)? {
            if is_mac_attribute(&n) {
                let v = self.catalog.get_xattr(ino, &n)?;
                out.push((n, v));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A `._name` file's content file and its mtime.
    fn double_file(&self, ino: Ino) -> Option<(std::path::PathBuf, Option<SystemTime>)> {
        let rec = self.record(ino).ok()?;
        let path = self.content_path(&rec)?;
        let meta = std::fs::metadata(&path).ok()?;
        Some((path, meta.modified().ok()))
    }

    /// The attributes a `._name` content file holds, if it parses.
    fn double_attrs(path: &std::path::Path) -> Option<Attrs> {
        if std::fs::metadata(path).ok()?.len() > MAX_APPLEDOUBLE {
            return None;
        }
        let mut attrs = appledouble::parse(&std::fs::read(path).ok()?).ok()?;
        attrs.sort();
        Some(attrs)
    }

    /// `ino` was committed: if it is a `._name` written since its attributes
    /// were last given to `name`, `name`'s Mac attributes become what it holds.
    pub(super) fn double_committed(&self, ino: Ino) {
        let Some(d) = self.doubles.lock().get(&ino).cloned() else {
            return;
        };
        let Some((path, mtime)) = self.double_file(ino) else {
            return;
        };
        // Not written since its attributes were given: nothing to read.
        if mtime.is_some() && mtime == d.applied {
            return;
        }
        let Some(want) = Self::double_attrs(&path) else {
            return;
        };
        let Ok(owner) = self.lookup(d.parent, OsStr::new(&d.name)) else {
            return;
        };
        match self.set_mac_attrs(owner.ino, &want) {
            Ok(()) => {
                if let Some(x) = self.doubles.lock().get_mut(&ino) {
                    x.applied = mtime;
                }
            }
            Err(e) => tracing::warn!("._{}: its attributes on {}: {e}", d.name, d.name),
        }
    }

    /// Make `ino`'s Mac attributes exactly `want`.
    fn set_mac_attrs(&self, ino: Ino, want: &[(String, Vec<u8>)]) -> FsResult<()> {
        let have = self.mac_attrs(ino)?;
        if have == want {
            return Ok(());
        }
        for (n, v) in want {
            if !have.iter().any(|(h, hv)| h == n && hv == v) {
                self.setxattr(ino, OsStr::new(n), v, XattrSet::ANY)?;
            }
        }
        for (n, _) in &have {
            if !want.iter().any(|(w, _)| w == n) {
                self.removexattr(ino, OsStr::new(n))?;
            }
        }
        Ok(())
    }

    /// `._name` is about to be looked up in `parent`: make it say what
    /// `name`'s Mac attributes are now.
    pub(super) fn double_for_lookup(&self, parent: Ino, file: &str) -> FsResult<()> {
        let Some(name) = described(file) else {
            return Ok(());
        };
        let listing = self.listing(parent)?;
        let Some(owner) = listing.get(name).cloned() else {
            return Ok(());
        };
        let attrs = self.mac_attrs(owner.ino)?;
        let existing = listing.get(file).cloned();
        drop(listing);
        let opened = match existing {
            None if attrs.is_empty() => return Ok(()),
            None => {
                let rec = self.record(owner.ino)?;
                let caller = Caller {
                    uid: rec.uid,
                    gid: rec.gid,
                };
                self.create(parent, OsStr::new(file), 0o644, 0, OpenFlags::WRITE, caller)
                    .map(|(a, fh)| (a.ino, fh))
            }
            Some(e) => {
                if self.open.lock().contains_key(&e.ino) {
                    return Ok(());
                }
                let same = self
                    .double_file(e.ino)
                    .and_then(|(path, _)| Self::double_attrs(&path))
                    .is_some_and(|a| a == attrs);
                if same {
                    return Ok(());
                }
                let flags = OpenFlags {
                    truncate: true,
                    ..OpenFlags::WRITE
                };
                self.open(e.ino, flags).map(|fh| (e.ino, fh))
            }
        };
        opened
            .and_then(|(ino, fh)| {
                self.note_double(parent, file, ino);
                let wrote = self.write(fh, 0, &appledouble::build(&attrs));
                self.release(fh)?;
                wrote.map(drop)
            })
            .map_err(|e: FsError| {
                // (A read-only library, `Unfiled`: every lookup would say so.)
                tracing::debug!("{file}: made from {name}'s attributes: {e}");
                e
            })
    }
}
