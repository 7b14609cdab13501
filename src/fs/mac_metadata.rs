//! A Mac's extended attributes where its client cannot send them (NFSv3):
//! `._name` AppleDouble files ([`super::appledouble`]) kept in step with
//! the attributes of `name` in the catalog's store, both ways. So a Finder
//! tag, a colour label or a quarantine flag set on a Mac over NFS is the
//! file's attribute for every front end (`getxattr` through the FUSE mount,
//! macFUSE, streams over Samba), and one set elsewhere reaches the Mac.
//!
//! What a `._name` holds is the front end's choice ([`AppleDoubleView`]):
//! every Mac attribute for NFS; the resource fork alone, in Samba's layout,
//! where the front end has attributes of its own (FUSE). Samba's
//! `vfs_fruit` keeps a fork in `._name` and every other attribute as a
//! stream: shown more, it moves them into streams, rewrites `._name`
//! without them, and cannot write a fork beside attributes it did not
//! move. Each view reads and writes only its own attributes, so the two
//! front ends on one library rewrite a `._name` each to its own view,
//! and neither takes the other's for a removal.
//!
//! * Written: a `._name` file committed (COMMIT, `fsync`, its last close)
//!   is parsed; the view's attributes of `name` become what it holds (set,
//!   changed, removed; nothing when they are already so). A `._name` whose
//!   `name` is gone stays an OS file in the side tables, as any.
//! * Removed: in Samba's view, `name` loses its resource fork (fruit
//!   removes a fork by removing `._name`; one of several hard links keeps
//!   it). In the Mac's, nothing: a Mac removes `._name` when it has no
//!   attribute left to keep there, and one after `name` itself.
//! * Read: looking `._name` up makes it say what `name`'s attributes are
//!   now: made if `name` has some and it is missing, written again if it
//!   says something else (never while it is open: a client is writing it).
//!
//! The core learns which inode is which `._name` at its lookup or creation
//! (an inode has no name of its own).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::SystemTime;

use super::appledouble::{self, is_mac_attribute, RESOURCE_FORK};
use super::flags::{OpenFlags, XattrSet};
use super::{AppleDoubleView, Caller, FsError, FsResult, MarkBaseFs};
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

    /// Is the attribute `name` one this core's `._name` files hold?
    fn in_view(&self, name: &str) -> bool {
        match self.appledouble {
            AppleDoubleView::Everything => is_mac_attribute(name),
            AppleDoubleView::ResourceFork => name == RESOURCE_FORK,
        }
    }

    /// The `._name` file of `attrs` (this view's), in the view's layout.
    fn render(&self, attrs: &Attrs) -> Vec<u8> {
        match self.appledouble {
            AppleDoubleView::Everything => appledouble::build(attrs),
            AppleDoubleView::ResourceFork => {
                appledouble::build_fork(attrs.first().map_or(&[][..], |(_, v)| v))
            }
        }
    }

    /// Does `bytes`, a `._name` file, say `attrs` as this view says them?
    /// (Samba's view: byte for byte, so that fruit finds nothing to
    /// convert; the Mac's: whatever the layout, the same attributes.)
    fn says(&self, bytes: &[u8], attrs: &Attrs) -> bool {
        match self.appledouble {
            AppleDoubleView::ResourceFork => bytes == self.render(attrs),
            AppleDoubleView::Everything => appledouble::parse(bytes).is_ok_and(|mut a| {
                a.sort();
                a == *attrs
            }),
        }
    }

    /// The attributes of `ino` that this core's `._name` files hold, by name.
    fn mac_attrs(&self, ino: Ino) -> FsResult<Attrs> {
        if !self.record(ino)?.has_xattrs {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for n in self.catalog.list_xattrs(ino)? {
            if self.in_view(&n) {
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

    /// A `._name` content file's bytes, unless it is too large to be one.
    fn double_bytes(path: &std::path::Path) -> Option<Vec<u8>> {
        if std::fs::metadata(path).ok()?.len() > MAX_APPLEDOUBLE {
            return None;
        }
        std::fs::read(path).ok()
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
        let Some(Ok(mut want)) = Self::double_bytes(&path).map(|b| appledouble::parse(&b)) else {
            return;
        };
        want.retain(|(n, _)| self.in_view(n));
        want.sort();
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

    /// `._name` was removed from `parent`: in Samba's view `name` (if it is
    /// there, with no other link) loses its resource fork.
    pub(super) fn double_unlinked(&self, parent: Ino, file: &str) {
        let Some(name) = described(file) else {
            return;
        };
        if self.appledouble != AppleDoubleView::ResourceFork {
            return;
        }
        let Ok(owner) = self.lookup(parent, OsStr::new(name)) else {
            return;
        };
        // (A read first: most `._name` files removed hold no fork.)
        if owner.nlink > 1 || self.mac_attrs(owner.ino).map_or(true, |a| a.is_empty()) {
            return;
        }
        match self.removexattr(owner.ino, OsStr::new(RESOURCE_FORK)) {
            Ok(()) | Err(FsError::NoAttr) => {}
            Err(e) => tracing::warn!("._{name} removed: {name}'s resource fork: {e}"),
        }
    }

    /// Make `ino`'s attributes of this view exactly `want`.
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
                    .and_then(|(path, _)| Self::double_bytes(&path))
                    .is_some_and(|b| self.says(&b, &attrs));
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
                let wrote = self.write(fh, 0, &self.render(&attrs));
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

#[cfg(test)]
mod tests {
    use super::super::test_support::TestFs;
    use super::super::FsConfig;
    use super::*;
    use crate::catalog::ROOT_INO;

    const TAGS: &str = "com.apple.metadata:_kMDItemUserTags";

    fn core(appledouble: AppleDoubleView) -> TestFs {
        TestFs::with(FsConfig {
            appledouble,
            ..FsConfig::default()
        })
    }

    /// `clip.mov` with tags and a resource fork.
    fn clip(t: &TestFs) -> Ino {
        let ino = t.file("clip.mov", b"frames").ino;
        for (n, v) in [(TAGS, &b"tags"[..]), (RESOURCE_FORK, b"fork")] {
            t.fs.setxattr(ino, OsStr::new(n), v, XattrSet::ANY)
                .expect("setxattr");
        }
        ino
    }

    /// `._clip.mov` looked up, and what it holds.
    fn double(t: &TestFs) -> (Ino, Vec<u8>) {
        let a = t.fs.lookup(ROOT_INO, OsStr::new("._clip.mov")).expect("._");
        let fh = t.fs.open(a.ino, OpenFlags::READ).expect("open");
        let bytes = t.fs.read(fh, 0, 1 << 20).expect("read");
        t.fs.release(fh).expect("release");
        (a.ino, bytes)
    }

    fn attr(t: &TestFs, ino: Ino, name: &str) -> Option<Vec<u8>> {
        t.fs.getxattr(ino, OsStr::new(name)).ok()
    }

    #[test]
    fn samba_s_view_is_the_fork_alone_written_back_and_removed_with_the_file() {
        let t = core(AppleDoubleView::ResourceFork);
        let ino = clip(&t);
        let (dino, bytes) = double(&t);
        assert_eq!(bytes, appledouble::build_fork(b"fork"));
        // fruit writes a new fork: the file's fork, the tags untouched.
        let fh = t.fs.open(dino, OpenFlags::WRITE).expect("open");
        t.fs.write(fh, 0, &appledouble::build_fork(b"new fork"))
            .expect("write");
        t.fs.release(fh).expect("release");
        assert_eq!(
            attr(&t, ino, RESOURCE_FORK).as_deref(),
            Some(&b"new fork"[..])
        );
        assert_eq!(attr(&t, ino, TAGS).as_deref(), Some(&b"tags"[..]));
        // fruit removes a fork by removing `._name`.
        t.fs.unlink(ROOT_INO, OsStr::new("._clip.mov"))
            .expect("unlink");
        assert_eq!(attr(&t, ino, RESOURCE_FORK), None);
        assert_eq!(attr(&t, ino, TAGS).as_deref(), Some(&b"tags"[..]));
        // No fork, no `._name`.
        assert!(t.fs.lookup(ROOT_INO, OsStr::new("._clip.mov")).is_err());
    }

    #[test]
    fn the_mac_s_view_is_every_attribute_and_a_removal_takes_none() {
        let t = core(AppleDoubleView::Everything);
        let ino = clip(&t);
        let (_, bytes) = double(&t);
        let mut got = appledouble::parse(&bytes).expect("parse");
        got.sort();
        assert_eq!(
            got,
            [
                (RESOURCE_FORK.to_string(), b"fork".to_vec()),
                (TAGS.to_string(), b"tags".to_vec())
            ]
        );
        t.fs.unlink(ROOT_INO, OsStr::new("._clip.mov"))
            .expect("unlink");
        assert_eq!(attr(&t, ino, RESOURCE_FORK).as_deref(), Some(&b"fork"[..]));
    }

    #[test]
    fn a_file_in_the_other_view_is_rewritten_to_this_one_and_its_extra_attributes_kept() {
        // A Mac's `._clip.mov` (every attribute) seen through FUSE.
        let t = core(AppleDoubleView::ResourceFork);
        let ino = clip(&t);
        let mac = appledouble::build(&[
            (RESOURCE_FORK.to_string(), b"fork".to_vec()),
            (TAGS.to_string(), b"tags".to_vec()),
        ]);
        let (a, fh) =
            t.fs.create(
                ROOT_INO,
                OsStr::new("._clip.mov"),
                0o644,
                0,
                OpenFlags::WRITE,
                super::super::test_support::ME,
            )
            .expect("create");
        t.fs.write(fh, 0, &mac).expect("write");
        t.fs.release(fh).expect("release");
        assert_eq!(attr(&t, ino, TAGS).as_deref(), Some(&b"tags"[..]));
        let (dino, bytes) = double(&t);
        assert_eq!(dino, a.ino);
        assert_eq!(bytes, appledouble::build_fork(b"fork"));
        assert_eq!(attr(&t, ino, TAGS).as_deref(), Some(&b"tags"[..]));
    }
}
