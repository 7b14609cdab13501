//! The namespace: mkdir, mknod, symlink, create, unlink, rmdir, rename and
//! link, and the rules on names.
//!
//! Each operation takes the per-directory lock of the folders it changes,
//! checks the POSIX preconditions against the rendered listing (does the
//! name exist, is the folder empty, would a folder move into itself), makes
//! one catalog transaction, and then edits the caches it touched. An inode
//! whose last name goes while it is open is kept (unlinked) until its last
//! handle is released.

use crate::store::ContentFile;
use std::borrow::Cow;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use super::dir::{DirEdit, Listing};
use super::files::OpenFile;
use super::flags::{kind_from_mode, OpenFlags, RenameMode};
use super::{Attr, Caller, FsError, FsResult, MarkBaseFs, NameForm};
use crate::catalog::names;
use crate::catalog::{DirEntry, Ino, Kind, Move, NewNode, NodeRecord, ROOT_INO, UNFILED_INO};

pub use crate::catalog::names::NAME_MAX;

/// Most links one inode may have (ext4's limit).
pub const LINK_MAX: u32 = 65_000;

/// Check a name given to the file system: UTF-8, at most 255 bytes.
pub fn check_name(name: &OsStr) -> FsResult<&str> {
    let s = name.to_str().ok_or(FsError::BadName)?;
    if s.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if s.is_empty() || s.contains('/') || s.contains('\0') {
        return Err(FsError::Invalid("name"));
    }
    Ok(s)
}

impl MarkBaseFs {
    /// A name a new entry is to have, checked as [`check_name`], in the
    /// spelling the front end asked the core to store ([`NameForm`]).
    pub(super) fn new_name<'a>(&self, name: &'a OsStr) -> FsResult<Cow<'a, str>> {
        let s = check_name(name)?;
        let s = match self.names {
            NameForm::AsGiven => Cow::Borrowed(s),
            NameForm::Nfc => names::nfc(s),
        };
        if s.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(s)
    }
}

/// What [`MarkBaseFs::make`] makes: a kind, its permission bits (the umask
/// already applied), a device number, a symlink's target.
pub(super) struct Make {
    kind: Kind,
    perm: u32,
    rdev: u32,
    target: Option<Vec<u8>>,
}

impl Make {
    pub(super) fn of(kind: Kind, perm: u32) -> Make {
        Make {
            kind,
            perm,
            rdev: 0,
            target: None,
        }
    }
}

impl MarkBaseFs {
    /// Owner, group and permissions of a new node: the caller's, except that
    /// a set-group-id folder gives its group (and, to a new folder, its bit).
    pub(super) fn new_owner(
        &self,
        parent: &NodeRecord,
        caller: Caller,
        mode: u32,
        is_dir: bool,
    ) -> (u32, u32, u16) {
        let mut perm = (mode & 0o7777) as u16;
        let gid = if parent.perm & 0o2000 != 0 {
            if is_dir {
                perm |= 0o2000;
            }
            parent.gid
        } else {
            caller.gid
        };
        (caller.uid, gid, perm)
    }

    /// Make a node named `name` in `parent` (a regular file gets a new,
    /// empty content file, returned open). Takes `parent`'s lock; EEXIST if
    /// the name is taken, EACCES in `Unfiled`; edits `parent`'s cached listing.
    pub(super) fn make(
        &self,
        parent: Ino,
        name: &OsStr,
        what: Make,
        caller: Caller,
    ) -> FsResult<(Arc<NodeRecord>, Option<ContentFile>)> {
        let Make {
            kind,
            perm,
            rdev,
            target,
        } = what;
        let name = self.new_name(name)?;
        let name = name.as_ref();
        let _g = self.lock_dir(parent);
        let prec = self.record(parent)?;
        if prec.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if parent == UNFILED_INO {
            return Err(FsError::Access(
                "Unfiled only holds what the catalog left there",
            ));
        }
        if self.listing(parent)?.get(name).is_some() {
            return Err(FsError::Exists);
        }
        let (uid, gid, perm) = self.new_owner(&prec, caller, perm, kind == Kind::Dir);
        let (content, file) = if kind == Kind::File {
            let (p, f) = self.store.create(&uuid::Uuid::new_v4().to_string())?;
            (Some(p), Some(f))
        } else {
            (None, None)
        };
        let new = NewNode {
            kind,
            perm,
            uid,
            gid,
            rdev,
            target,
            content: content.clone(),
        };
        let now = SystemTime::now();
        let rec = match self.catalog.create(parent, name, &new, now) {
            Ok(r) => r,
            Err(e) => {
                if let Some(p) = &content {
                    let _ = self.store.remove(p);
                }
                return Err(e.into());
            }
        };
        self.note_double(parent, name, rec.ino);
        let entry = DirEntry {
            name: name.to_string(),
            ino: rec.ino,
            kind,
            disambiguated: false,
        };
        self.edited(vec![(parent, DirEdit::Add(entry))], &[], now);
        let rec = self.fresh_record(rec);
        if let Some(p) = content {
            self.paths.put(rec.ino, Some(p));
            // A new content file is empty: the next listing need not stat it.
            self.sizes.put(rec.ino, (0, 0));
        }
        if kind == Kind::Dir {
            // A new folder is empty: its listing (edited in place by what
            // is made in it) need not come from the catalog.
            self.dirs.put(rec.ino, Arc::new(Listing::new(Vec::new())));
            self.parents.put(rec.ino, parent);
        }
        Ok((rec, file))
    }

    /// Make a folder (mode less umask; a set-group-id parent gives its group
    /// and bit). Takes `parent`'s lock; edits its cached listing. EEXIST,
    /// ENOTDIR, EACCES in `Unfiled`, and the name errors of [`check_name`].
    pub fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let (rec, _) = self.make(parent, name, Make::of(Kind::Dir, mode & !umask), caller)?;
        Ok(self.attr_of(&rec))
    }

    /// Make a regular file, FIFO, socket or device node (the kind from the
    /// mode's `S_IFMT` bits, EINVAL for others); as [`MarkBaseFs::mkdir`].
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let what = Make {
            rdev,
            ..Make::of(kind_from_mode(mode)?, mode & !umask)
        };
        let (rec, _) = self.make(parent, name, what, caller)?;
        Ok(self.attr_of(&rec))
    }

    /// Make a symlink to `target` (at most 4,095 bytes: ENAMETOOLONG); as
    /// [`MarkBaseFs::mkdir`].
    pub fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.len() > 4095 {
            return Err(FsError::NameTooLong);
        }
        let what = Make {
            target: Some(target.to_vec()),
            ..Make::of(Kind::Symlink, 0o777)
        };
        let (rec, _) = self.make(parent, name, what, caller)?;
        Ok(self.attr_of(&rec))
    }

    /// Create and open a regular file.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        if self.memory.low() {
            return Err(FsError::NoMemory("opening a file for writing"));
        }
        let (rec, file) = self.make(parent, name, Make::of(Kind::File, mode & !umask), caller)?;
        let file = file.ok_or(FsError::Invalid("create without content"))?;
        let path = rec.content.clone().unwrap_or_default();
        let of = Arc::new(OpenFile::new(&rec, file, path, true)?);
        self.open.lock().insert(rec.ino, of);
        let fh = self
            .open_handle(rec.ino, flags)?
            .ok_or(FsError::BadHandle)?;
        Ok((self.attr_of(&rec), fh))
    }

    /// Remove a name that is not a folder (EISDIR). The inode goes with its
    /// last name, or at its last release if it is open. Takes `parent`'s
    /// lock; edits its cached listing, drops the inode's cached attributes.
    /// EPERM on `Unfiled`. A `._name` removed may take `name`'s resource
    /// fork with it ([`MarkBaseFs::double_unlinked`]).
    pub fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false)?;
        if let Some(file) = name.to_str() {
            self.double_unlinked(parent, file);
        }
        Ok(())
    }

    /// Remove an empty folder (ENOTEMPTY, ENOTDIR); as [`MarkBaseFs::unlink`].
    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    pub(super) fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<()> {
        let name = check_name(name)?;
        let _g = self.lock_dir(parent);
        let e = self
            .listing(parent)?
            .get(name)
            .cloned()
            .ok_or(FsError::NotFound)?;
        // The entry's own spelling (the name asked may be another Unicode
        // normalization form of it).
        let name = e.name.as_str();
        if e.ino == UNFILED_INO {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        match (dir, e.kind == Kind::Dir) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) if !self.listing(e.ino)?.entries.is_empty() => {
                return Err(FsError::NotEmpty)
            }
            _ => {}
        }
        let open = self.open.lock().contains_key(&e.ino);
        let now = SystemTime::now();
        let size = match (&self.quota, e.kind) {
            (Some(_), Kind::File) => self.record(e.ino).map(|r| r.size).unwrap_or(0),
            _ => 0,
        };
        let un = self.catalog.unlink(parent, name, e.ino, open, now)?;
        self.changed(&[e.ino], &[]);
        self.edited(
            vec![(parent, DirEdit::Remove(name.to_string(), e.kind))],
            &[e.ino],
            now,
        );
        match un.purged {
            Some(content) => {
                let _ = self.quota_resize(size, 0);
                if let Some(p) = content {
                    self.store.discard(&p)?;
                }
            }
            None if un.nlink == 0 => self.forget_inode(e.ino)?,
            None => {}
        }
        Ok(())
    }

    /// The last link of `ino` is gone: free it now, or at its last close.
    pub(super) fn forget_inode(&self, ino: Ino) -> FsResult<()> {
        if let Some(of) = self.open.lock().get(&ino) {
            let mut st = of.state.lock();
            st.unlinked = true;
            st.ctime = SystemTime::now();
            return Ok(());
        }
        self.purge(ino)
    }

    pub(super) fn purge(&self, ino: Ino) -> FsResult<()> {
        let rec = self.catalog.get(ino).ok();
        // The row first, then the file (see `recover`).
        self.catalog.purge(ino)?;
        self.changed(&[], &[ino]);
        if let Some(p) = rec.as_ref().and_then(|r| r.content.as_ref()) {
            if let (Some(_), Some(rec)) = (&self.quota, &rec) {
                // An unlinked open file's growth never reached the catalog.
                let real = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let _ = self.quota_resize(rec.size.max(real), 0);
            }
            self.store.discard(p)?;
        }
        Ok(())
    }

    pub(super) fn is_ancestor(&self, anc: Ino, mut dir: Ino) -> FsResult<bool> {
        for _ in 0..4096 {
            if dir == anc {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = self.parent_of(dir)?;
        }
        Err(FsError::Invalid("directory tree too deep"))
    }

    /// Move a name, replacing (or with `NoReplace` refusing: EEXIST) what is
    /// at the destination, or swap two names (`Exchange`). Takes both
    /// folders' locks (in stripe order); edits both cached listings. EINVAL
    /// for a folder into itself, ENOTEMPTY/EISDIR/ENOTDIR as rename(2), EXDEV
    /// for a catalog folder with contents leaving the catalog, EPERM/EACCES
    /// for `Unfiled`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        mode: RenameMode,
    ) -> FsResult<()> {
        let name = check_name(name)?;
        let new_name = self.new_name(new_name)?;
        let new_name = new_name.as_ref();
        let noreplace = mode == RenameMode::NoReplace;
        let exchange = mode == RenameMode::Exchange;
        let _g = self.lock_two(parent, new_parent);
        let (src_dir, dst_dir) = (self.listing(parent)?, self.listing(new_parent)?);
        let src = src_dir.get(name).cloned().ok_or(FsError::NotFound)?;
        let dst = dst_dir.get(new_name).cloned();
        // The entries' own spellings (a name asked may be another Unicode
        // normalization form of one).
        let name = src.name.as_str();
        let dst_name = dst.as_ref().map(|d| d.name.clone());
        let new_name = dst_name.as_deref().unwrap_or(new_name);
        if src.ino == UNFILED_INO || dst.as_ref().is_some_and(|d| d.ino == UNFILED_INO) {
            return Err(FsError::Perm("Unfiled is virtual"));
        }
        if new_parent == UNFILED_INO {
            return Err(FsError::Access(
                "Unfiled only holds what the catalog left there",
            ));
        }
        if let Some(d) = &dst {
            if d.ino == src.ino {
                return Ok(());
            }
        }
        if src.kind == Kind::Dir && self.is_ancestor(src.ino, new_parent)? {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let now = SystemTime::now();
        let m = Move {
            parent,
            name,
            ino: src.ino,
            new_parent,
            new_name,
        };
        if exchange {
            let d = dst.ok_or(FsError::NotFound)?;
            if d.kind == Kind::Dir && self.is_ancestor(d.ino, parent)? {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            self.catalog.exchange(&m, d.ino, now)?;
            self.changed(&[parent, new_parent, src.ino, d.ino], &[src.ino, d.ino]);
            return Ok(());
        }
        if let Some(d) = &dst {
            if noreplace {
                return Err(FsError::Exists);
            }
            match (src.kind == Kind::Dir, d.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.listing(d.ino)?.entries.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        let r = self.catalog.rename(&m, dst.as_ref().map(|d| d.ino), now)?;
        let mut inos = vec![src.ino];
        inos.extend(dst.as_ref().map(|d| d.ino));
        if src.kind == Kind::Dir {
            self.changed(&[src.ino], &[]);
        }
        let moved = DirEntry {
            name: new_name.to_string(),
            disambiguated: false,
            ..src.clone()
        };
        self.edited(
            vec![
                (parent, DirEdit::Remove(name.to_string(), src.kind)),
                (new_parent, DirEdit::Add(moved)),
            ],
            &inos,
            now,
        );
        if let Some(un) = r.replaced {
            if un.nlink == 0 {
                self.forget_inode(un.ino)?;
            }
        }
        Ok(())
    }

    /// A hard link to `ino` as `new_name` in `new_parent`. Takes
    /// `new_parent`'s lock; edits its listing, drops `ino`'s cached
    /// attributes. EPERM for folders, EMLINK past [`LINK_MAX`], EEXIST.
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> FsResult<Attr> {
        let new_name = self.new_name(new_name)?;
        let new_name = new_name.as_ref();
        let _g = self.lock_dir(new_parent);
        let now = SystemTime::now();
        let rec = self.record(ino)?;
        if rec.kind == Kind::Dir {
            return Err(FsError::Perm("hard links to directories"));
        }
        if rec.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if self.listing(new_parent)?.get(new_name).is_some() {
            return Err(FsError::Exists);
        }
        let rec = self.catalog.link(ino, new_parent, new_name, now)?;
        let entry = DirEntry {
            name: new_name.to_string(),
            ino,
            kind: rec.kind,
            disambiguated: false,
        };
        self.edited(vec![(new_parent, DirEdit::Add(entry))], &[ino], now);
        let rec = self.fresh_record(rec);
        Ok(self.attr_of(&rec))
    }

    /// Put [`NOT_INDEXED`] at the root unless it is there; true if it was
    /// made. Front ends that serve Macs call it at start: Spotlight would
    /// otherwise read every file of a network library to index it. It is an
    /// OS file, kept in the side tables, never in the user's catalog.
    pub fn mark_not_indexed(&self, owner: Caller) -> FsResult<bool> {
        match self.lookup(ROOT_INO, OsStr::new(NOT_INDEXED)) {
            Ok(_) => return Ok(false),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let name = OsStr::new(NOT_INDEXED);
        let (_, fh) = self.create(ROOT_INO, name, 0o444, 0, OpenFlags::WRITE, owner)?;
        self.release(fh)?;
        Ok(true)
    }
}

/// The empty file at a volume's root that tells Spotlight not to index it.
pub const NOT_INDEXED: &str = ".metadata_never_index";

#[cfg(test)]
mod tests {
    use super::super::test_support::{errno, TestFs, ME};
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn names_are_checked_as_ext4_checks_them() {
        assert_eq!(check_name(os("ok.mov")).ok(), Some("ok.mov"));
        assert_eq!(errno(check_name(os(&"x".repeat(256)))), libc::ENAMETOOLONG);
        assert!(check_name(os(&"x".repeat(255))).is_ok());
        assert_eq!(errno(check_name(os("a/b"))), libc::EINVAL);
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(errno(check_name(OsStr::from_bytes(b"\xff"))), libc::EILSEQ);
    }

    #[test]
    fn the_spotlight_marker_is_made_once() {
        let t = TestFs::new();
        assert_eq!(t.fs.mark_not_indexed(ME).ok(), Some(true));
        assert_eq!(t.fs.mark_not_indexed(ME).ok(), Some(false));
        let a = t.fs.lookup(ROOT_INO, os(NOT_INDEXED)).expect("made");
        assert_eq!((a.size, a.perm), (0, 0o444));
    }

    #[test]
    fn make_and_remove() {
        let t = TestFs::new();
        let d = t.mkdir(ROOT_INO, "d");
        assert_eq!(
            errno(t.fs.mkdir(ROOT_INO, os("d"), 0o755, 0, ME)),
            libc::EEXIST
        );
        t.fs.mknod(d.ino, os("fifo"), 0o010_644, 0o022, 0, ME)
            .expect("mknod");
        assert_eq!(errno(t.fs.rmdir(ROOT_INO, os("d"))), libc::ENOTEMPTY);
        assert_eq!(errno(t.fs.unlink(ROOT_INO, os("d"))), libc::EISDIR);
        assert_eq!(errno(t.fs.rmdir(d.ino, os("fifo"))), libc::ENOTDIR);
        t.fs.unlink(d.ino, os("fifo")).expect("unlink");
        t.fs.rmdir(ROOT_INO, os("d")).expect("rmdir");
        assert!(t.names(ROOT_INO).is_empty());
    }

    #[test]
    fn umask_and_setgid_folders() {
        let t = TestFs::new();
        let d = t.mkdir(ROOT_INO, "shared");
        let req = super::super::SetAttrReq {
            mode: Some(0o2775),
            gid: Some(50),
            ..Default::default()
        };
        t.fs.setattr(d.ino, &req).expect("chmod g+s");
        let sub =
            t.fs.mkdir(d.ino, os("sub"), 0o777, 0o022, Caller { uid: 7, gid: 7 })
                .expect("mkdir");
        assert_eq!((sub.perm, sub.uid, sub.gid), (0o2755, 7, 50));
    }

    #[test]
    fn rename_modes() {
        let t = TestFs::new();
        let a = t.file("a", b"A");
        let b = t.file("b", b"B");
        let no =
            t.fs.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameMode::NoReplace);
        assert_eq!(errno(no), libc::EEXIST);
        t.fs.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameMode::Exchange)
            .expect("exchange");
        assert_eq!(
            t.fs.lookup(ROOT_INO, os("a")).map(|x| x.ino).ok(),
            Some(b.ino)
        );
        assert_eq!(
            t.fs.lookup(ROOT_INO, os("b")).map(|x| x.ino).ok(),
            Some(a.ino)
        );
        t.fs.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameMode::Replace)
            .expect("replace");
        assert_eq!(t.names(ROOT_INO), ["b"]);
        assert_eq!(errno(t.fs.getattr(a.ino)), libc::ENOENT);
    }

    #[test]
    fn a_folder_cannot_move_into_itself() {
        let t = TestFs::new();
        let d = t.mkdir(ROOT_INO, "d");
        let sub = t.mkdir(d.ino, "sub");
        let r =
            t.fs.rename(ROOT_INO, os("d"), sub.ino, os("d"), RenameMode::Replace);
        assert_eq!(errno(r), libc::EINVAL);
    }

    #[test]
    fn hard_links_count_and_outlive_a_name() {
        let t = TestFs::new();
        let f = t.file("f", b"data");
        let l = t.fs.link(f.ino, ROOT_INO, os("g")).expect("link");
        assert_eq!((l.ino, l.nlink), (f.ino, 2));
        t.fs.unlink(ROOT_INO, os("f")).expect("unlink");
        assert_eq!(t.fs.getattr(f.ino).map(|a| a.nlink).ok(), Some(1));
        let d = t.mkdir(ROOT_INO, "d");
        assert_eq!(errno(t.fs.link(d.ino, ROOT_INO, os("d2"))), libc::EPERM);
    }

    #[test]
    fn unfiled_holds_only_what_the_catalog_left_there() {
        let t = TestFs::new();
        let r = t.fs.mkdir(UNFILED_INO, os("x"), 0o755, 0, ME);
        assert_eq!(errno(r), libc::EACCES);
    }
}
