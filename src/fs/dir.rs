//! Directories: rendered listings (cached, edited in place by changes made
//! through the mount), directory handles with stable offsets, and
//! opendir/readdir/releasedir.
//!
//! A listing is what the catalog renders for a folder (unique names, see
//! `catalog::names`), with a name index for lookups. Each load from the
//! catalog gets a new generation; edits made through the mount keep it, so a
//! front end that keeps listings itself (the kernel, with FOPEN_CACHE_DIR)
//! can tell a listing it already has from a reloaded one. A handle holds the
//! listing as it was at `opendir` (shared with the cache until a change
//! copies the cache's version), so offsets stay stable under changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use unicode_normalization::UnicodeNormalization;

use super::{FsError, FsResult, MarkBaseFs};
use crate::catalog::{DirEntry, Ino, Kind};

/// A rendered directory, with a name index.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: Vec<DirEntry>,
    pub(super) by_name: HashMap<String, usize>,
    /// No name in it was generated to resolve a collision, so adding or
    /// removing one entry leaves every other name as a fresh rendering would.
    pub(super) exact: bool,
    /// Which load from the catalog this is (edits made through the mount
    /// keep it: the kernel sees those changes itself).
    pub(super) generation: u64,
    /// The entries in cookie order (`stateless.rs`), made when first asked.
    cookies: OnceLock<Arc<Vec<(u64, usize)>>>,
    /// Non-ASCII names in Unicode NFC, made when first asked.
    nfc: OnceLock<HashMap<String, usize>>,
}

/// Generations of listings loaded from the catalog.
static LISTING_LOADS: AtomicU64 = AtomicU64::new(1);

/// A change to one cached directory listing.
pub(super) enum DirEdit {
    Add(DirEntry),
    /// A name and the kind of what it named.
    Remove(String, Kind),
}

impl DirEdit {
    /// How the edit changes the folder's link count (a subfolder came or went).
    pub(super) fn subdirs_delta(&self) -> i64 {
        match self {
            DirEdit::Add(e) if e.kind == Kind::Dir => 1,
            DirEdit::Remove(_, Kind::Dir) => -1,
            _ => 0,
        }
    }
}

impl Listing {
    pub(super) fn new(entries: Vec<DirEntry>) -> Listing {
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let exact = !entries.iter().any(|e| e.disambiguated);
        Listing {
            entries,
            by_name,
            exact,
            generation: LISTING_LOADS.fetch_add(1, Relaxed),
            cookies: OnceLock::new(),
            nfc: OnceLock::new(),
        }
    }

    /// The entries in cookie order, each with its cookie.
    pub(super) fn cookie_order(&self) -> Arc<Vec<(u64, usize)>> {
        self.cookies
            .get_or_init(|| Arc::new(super::stateless::cookie_order(self)))
            .clone()
    }

    /// The entry named `name`, if any: spelled as given, or else the same
    /// name in another Unicode normalization form (macOS sends names in
    /// NFD, most other systems write NFC; both find the one entry).
    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.entries.get(self.position(name)?)
    }

    /// Where `name` is in [`Listing::entries`] (its NFC or NFD spelling too).
    pub fn position(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        if name.is_ascii() {
            return None;
        }
        let nfc: String = name.nfc().collect();
        self.nfc_index().get(&nfc).copied()
    }

    fn nfc_index(&self) -> &HashMap<String, usize> {
        self.nfc.get_or_init(|| {
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.name.is_ascii())
                .map(|(i, e)| (e.name.nfc().collect(), i))
                .collect()
        })
    }

    pub(super) fn apply(&mut self, edit: DirEdit) {
        self.cookies = OnceLock::new();
        self.nfc = OnceLock::new();
        match edit {
            DirEdit::Add(e) => {
                if let Some(&i) = self.by_name.get(&e.name) {
                    self.entries[i] = e;
                } else {
                    self.by_name.insert(e.name.clone(), self.entries.len());
                    self.entries.push(e);
                }
            }
            DirEdit::Remove(name, _) => {
                if let Some(i) = self.by_name.remove(&name) {
                    self.entries.swap_remove(i);
                    if let Some(moved) = self.entries.get(i) {
                        self.by_name.insert(moved.name.clone(), i);
                    }
                }
            }
        }
    }
}

/// A directory handle: the snapshot `readdir` serves, with stable offsets
/// (`.`, `..`, then the listing as it was at `opendir`, shared with the
/// cache: a later change edits the cache's copy, not this one).
pub struct DirHandle {
    pub ino: Ino,
    pub(super) dots: [DirEntry; 2],
    pub(super) listing: Arc<Listing>,
}

impl DirHandle {
    /// Which load from the catalog the listing is: the same number means
    /// the same entries, give or take the edits made through this core.
    pub fn generation(&self) -> u64 {
        self.listing.generation
    }

    /// The entries from position `offset` on.
    pub fn entries_from(&self, offset: usize) -> impl Iterator<Item = &DirEntry> {
        let dots = self.dots.get(offset..).unwrap_or_default();
        let rest = self
            .listing
            .entries
            .get(offset.saturating_sub(2)..)
            .unwrap_or_default();
        dots.iter().chain(rest)
    }
}

impl MarkBaseFs {
    /// A directory, rendered (cached).
    pub fn listing(&self, dir: Ino) -> FsResult<Arc<Listing>> {
        self.dirs.get_or_load(dir, &self.epoch, || {
            if self.record(dir)?.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            Ok(Arc::new(Listing::new(self.catalog.list(dir)?)))
        })
    }

    /// Parent of a directory (for `..`); the root is its own parent. Cached.
    pub fn parent_of(&self, dir: Ino) -> FsResult<Ino> {
        self.parents.get_or_load(dir, &self.epoch, || {
            self.catalog.parent_of(dir).map_err(FsError::from)
        })
    }

    /// A handle on `ino`'s listing as it is now (rendered from the catalog
    /// if not cached). Its [`DirHandle::generation`] tells a front end that
    /// keeps listings itself whether this one is the same load as before.
    /// ENOTDIR on a non-folder.
    pub fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let listing = self.listing(ino)?;
        let parent = self.parent_of(ino)?;
        let dot = |name: &str, ino| DirEntry {
            name: name.into(),
            ino,
            kind: Kind::Dir,
            disambiguated: false,
        };
        let fh = self.next_fh.fetch_add(1, Relaxed);
        self.dir_handles.lock().insert(
            fh,
            Arc::new(DirHandle {
                ino,
                dots: [dot(".", ino), dot("..", parent)],
                listing,
            }),
        );
        Ok(fh)
    }

    /// The handle `opendir` gave; EBADF once released.
    pub fn dir_handle(&self, fh: u64) -> FsResult<Arc<DirHandle>> {
        self.dir_handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Forget a directory handle (its snapshot goes with its last user).
    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.lock().remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::super::test_support::{errno, TestFs, ME};
    use super::super::{FsConfig, NameForm};
    use super::*;
    use crate::catalog::ROOT_INO;

    fn entry(name: &str, ino: Ino) -> DirEntry {
        DirEntry {
            name: name.into(),
            ino,
            kind: Kind::File,
            disambiguated: false,
        }
    }

    #[test]
    fn edits_keep_the_name_index_right() {
        let mut l = Listing::new(vec![entry("a", 10), entry("b", 11), entry("c", 12)]);
        l.apply(DirEdit::Remove("a".into(), Kind::File));
        assert_eq!(l.get("a"), None);
        // swap_remove moved "c" into "a"'s slot: the index follows it.
        assert_eq!(l.get("c").map(|e| e.ino), Some(12));
        l.apply(DirEdit::Add(entry("d", 13)));
        l.apply(DirEdit::Add(entry("b", 14)));
        assert_eq!(l.get("b").map(|e| e.ino), Some(14));
        assert_eq!(l.entries.len(), 3);
    }

    #[test]
    fn handles_keep_their_snapshot_and_offsets() {
        let t = TestFs::new();
        t.file("one", b"1");
        let fh = t.fs.opendir(ROOT_INO).expect("opendir");
        t.file("two", b"2");
        let d = t.fs.dir_handle(fh).expect("handle");
        let names: Vec<&str> = d.entries_from(0).map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "one"]);
        assert_eq!(d.entries_from(2).count(), 1);
        assert_eq!(d.entries_from(9).count(), 0);
        t.fs.releasedir(fh);
        assert_eq!(errno(t.fs.dir_handle(fh)), libc::EBADF);
        assert_eq!(t.names(ROOT_INO), ["one", "two"]);
    }

    #[test]
    fn a_listing_keeps_its_generation_until_reloaded() {
        let t = TestFs::new();
        let gen = |fh| t.fs.dir_handle(fh).map(|h| h.generation()).ok();
        let a = t.fs.opendir(ROOT_INO).expect("opendir");
        t.file("x", b"");
        // Edited in place by a change through the core: still the same load.
        let b = t.fs.opendir(ROOT_INO).expect("opendir");
        assert_eq!(gen(a), gen(b));
        t.fs.dirs.pop([&ROOT_INO]);
        let c = t.fs.opendir(ROOT_INO).expect("opendir");
        assert_ne!(gen(b), gen(c));
        for fh in [a, b, c] {
            t.fs.releasedir(fh);
        }
    }

    #[test]
    fn nfc_and_nfd_spellings_find_one_entry() {
        let t = TestFs::new();
        let (nfc, nfd) = ("Caf\u{e9}.mov", "Cafe\u{301}.mov");
        let a = t.file(nfc, b"x");
        assert_eq!(
            t.fs.lookup(ROOT_INO, OsStr::new(nfd)).map(|x| x.ino).ok(),
            Some(a.ino)
        );
        // Creating the other spelling is creating the same name.
        let again =
            t.fs.mknod(ROOT_INO, OsStr::new(nfd), libc::S_IFREG | 0o644, 0, 0, ME);
        assert_eq!(errno(again), libc::EEXIST);
        // Renamed and removed by the other spelling.
        t.fs.rename(
            ROOT_INO,
            OsStr::new(nfd),
            ROOT_INO,
            OsStr::new("b.mov"),
            Default::default(),
        )
        .expect("rename");
        t.file(nfd, b"y");
        assert_eq!(t.names(ROOT_INO), ["Cafe\u{301}.mov", "b.mov"]);
        t.fs.unlink(ROOT_INO, OsStr::new(nfc)).expect("unlink");
        assert_eq!(t.names(ROOT_INO), ["b.mov"]);
    }

    #[test]
    fn a_core_asked_for_nfc_stores_every_new_name_composed() {
        let t = TestFs::with(FsConfig {
            names: NameForm::Nfc,
            ..FsConfig::default()
        });
        let (nfc, nfd) = ("Caf\u{e9}.mov", "Cafe\u{301}.mov");
        let a = t.file(nfd, b"x");
        assert_eq!(t.names(ROOT_INO), [nfc]);
        assert_eq!(
            t.fs.lookup(ROOT_INO, OsStr::new(nfd)).map(|x| x.ino).ok(),
            Some(a.ino)
        );
        let d = t.mkdir(ROOT_INO, "Re\u{301}sume\u{301}");
        t.fs.rename(
            ROOT_INO,
            OsStr::new(nfc),
            d.ino,
            OsStr::new("E\u{301}te\u{301}.mov"),
            Default::default(),
        )
        .expect("rename");
        t.fs.link(a.ino, d.ino, OsStr::new("Nai\u{308}ve.mov"))
            .expect("link");
        assert_eq!(t.names(ROOT_INO), ["R\u{e9}sum\u{e9}"]);
        assert_eq!(t.names(d.ino), ["Na\u{ef}ve.mov", "\u{c9}t\u{e9}.mov"]);
    }

    #[test]
    fn dot_dot_is_the_parent() {
        let t = TestFs::new();
        let d = t.mkdir(ROOT_INO, "d");
        let sub = t.mkdir(d.ino, "sub");
        assert_eq!(t.fs.parent_of(sub.ino).ok(), Some(d.ino));
        assert_eq!(t.fs.parent_of(ROOT_INO).ok(), Some(ROOT_INO));
        let fh = t.fs.opendir(sub.ino).expect("opendir");
        let h = t.fs.dir_handle(fh).expect("handle");
        let dots: Vec<Ino> = h.entries_from(0).map(|e| e.ino).collect();
        assert_eq!(dots, [sub.ino, d.ino]);
        assert_eq!(errno(t.fs.listing(t.file("f", b"").ino)), libc::ENOTDIR);
    }
}
