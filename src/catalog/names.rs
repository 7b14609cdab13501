//! How catalog labels become file names, and back.
//!
//! The catalog stores free-text labels; a file system needs unique, bounded
//! names without `/`. This module is the single place where the rules of
//! `markbase-library-format.md` live, as pure functions so that every mount
//! renders the same catalog the same way:
//!
//! * `/` in a label shows as `:` (as Finder does), and a `:` typed in the mount
//!   is stored as `/`;
//! * an empty label (or `.`/`..`) shows as `Untitled`;
//! * a label over 255 bytes is cut at a UTF-8 boundary, keeping its extension;
//! * labels that collide in one folder are disambiguated: the entry that
//!   sorts first keeps the name, the others become `name (2).ext`,
//!   `name (3).ext`, ... . Names that some entry holds exactly are reserved
//!   before any generated name is handed out, so a generated name never takes
//!   a name that another entry's label asks for.
//!
//! Also here: which names are operating-system junk (`.DS_Store`, `._*`,
//! NFS clients' silly renames, ...) that the mount keeps out of
//! `file_nodes`, and the one spelling (Unicode NFC) a name is stored in where
//! the front end asks for it.

use std::borrow::Cow;

use rustc_hash::FxHashSet;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Longest name a directory entry may have (as on ext4 and APFS).
pub const NAME_MAX: usize = 255;

/// A child of a directory as the catalog holds it, before rendering.
#[derive(Debug, Clone)]
pub struct RawChild<T> {
    /// The label as stored (catalog) or the exact name (side entries).
    pub label: String,
    /// True when the label must be shown exactly (side entries, and labels
    /// set through the mount): such entries sort before catalog-found ones.
    pub priority: u8,
    /// `created_at` as stored; ISO 8601 text sorts chronologically.
    pub created_at: String,
    /// `node_id` as the final tie-breaker.
    pub node_id: String,
    pub payload: T,
}

/// The name a label asks for, before disambiguation.
pub fn base_name(label: &str) -> String {
    base_name_of(label.to_string())
}

/// [`base_name`] of a label owned: most labels are already names and are
/// kept as they are, without a copy.
fn base_name_of(label: String) -> String {
    let mut name = if label.contains(['/', '\0']) {
        label.replace('/', ":").replace('\0', "\u{FFFD}")
    } else {
        label
    };
    if name.is_empty() || name == "." || name == ".." {
        name = "Untitled".to_string();
    }
    if name.len() > NAME_MAX {
        name = fit(&name, "", NAME_MAX);
    }
    name
}

/// The label stored for a name given through the mount.
pub fn label_for(name: &str) -> String {
    name.replace(':', "/")
}

/// Split `name` into (stem, extension-with-dot). The extension is kept only
/// when it is short and the name is not all extension (`.bashrc`).
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 && !name[i..].contains(' ') => {
            (&name[..i], &name[i..])
        }
        _ => (name, ""),
    }
}

/// Cut `name`'s stem so that `stem + suffix + ext` fits in `max` bytes, at a
/// UTF-8 character boundary, keeping the extension.
fn fit(name: &str, suffix: &str, max: usize) -> String {
    let (stem, ext) = split_ext(name);
    let budget = max.saturating_sub(suffix.len() + ext.len());
    let mut cut = stem.len().min(budget);
    while cut > 0 && !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}{}", &stem[..cut], suffix, ext)
}

/// Render a directory: give each child a unique name. Deterministic: the
/// same children (in any order) always get the same names. The flag says the
/// name was generated to resolve a collision.
pub fn render<T>(mut children: Vec<RawChild<T>>) -> Vec<(String, bool, T)> {
    children.sort_by(|a, b| {
        (a.priority, &a.created_at, &a.node_id).cmp(&(b.priority, &b.created_at, &b.node_id))
    });
    let bases: Vec<String> = children
        .iter_mut()
        .map(|c| base_name_of(std::mem::take(&mut c.label)))
        .collect();
    let mut generated: Vec<Option<String>> = vec![None; children.len()];
    {
        // Pass 1: the first child asking for a name gets it exactly.
        let mut exact: FxHashSet<&str> = FxHashSet::default();
        exact.reserve(bases.len());
        let mut again = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            if !exact.insert(base.as_str()) {
                again.push(i);
            }
        }
        // Pass 2: the rest get "stem (n).ext", avoiding every name already held.
        let mut made: FxHashSet<String> = FxHashSet::default();
        for i in again {
            let mut n = 2u64;
            loop {
                let candidate = fit(&bases[i], &format!(" ({n})"), NAME_MAX);
                if !exact.contains(candidate.as_str()) && made.insert(candidate.clone()) {
                    generated[i] = Some(candidate);
                    break;
                }
                n += 1;
            }
        }
    }
    children
        .into_iter()
        .zip(bases)
        .zip(generated)
        .map(|((c, base), made)| match made {
            Some(name) => (name, true, c.payload),
            None => (base, false, c.payload),
        })
        .collect()
}

/// Names that operating systems create for themselves. They work in the
/// mount but are kept out of `file_nodes`.
pub fn is_os_junk(name: &str) -> bool {
    const EXACT: &[&str] = &[
        ".DS_Store",
        ".Trashes",
        ".Spotlight-V100",
        ".fseventsd",
        ".TemporaryItems",
        ".DocumentRevisions-V100",
        ".apdisk",
        ".VolumeIcon.icns",
        ".metadata_never_index",
        ".com.apple.timemachine.donotpresent",
        "$RECYCLE.BIN",
    ];
    const ANY_CASE: &[&str] = &["thumbs.db", "desktop.ini", "ehthumbs.db"];
    name.starts_with("._")
        || is_silly_rename(name)
        || EXACT.contains(&name)
        || ANY_CASE.iter().any(|j| name.eq_ignore_ascii_case(j))
}

/// A name an NFS client gives a file removed while it is open (the "silly
/// rename"): it REMOVEs the name at its last close. Linux's client writes
/// `.nfs` and 24 hex digits (the file id and a counter, `fs/nfs/unlink.c`);
/// a Mac's and the BSDs' write `.nfs.<ticks:8 hex>.<pid:4 hex>4.4`
/// (`nfs_vnops.c`). So: `.nfs`, then at least 8 characters, all hex digits
/// or dots.
pub fn is_silly_rename(name: &str) -> bool {
    name.strip_prefix(".nfs").is_some_and(|rest| {
        rest.len() >= 8 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.')
    })
}

/// `name` in Unicode NFC (composed), the form the MarkBase app and Linux
/// tools write; a Mac's Finder sends NFD (decomposed). Borrowed when it is
/// already NFC, as nearly every name is.
pub fn nfc(name: &str) -> Cow<'_, str> {
    if name.is_ascii() || is_nfc_quick(name.chars()) == IsNormalized::Yes {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfc().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(label: &str, created: &str, id: &str) -> RawChild<String> {
        RawChild {
            label: label.into(),
            priority: 1,
            created_at: created.into(),
            node_id: id.into(),
            payload: id.into(),
        }
    }

    fn names(v: Vec<(String, bool, String)>) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v.into_iter().map(|(n, _, p)| (n, p)).collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    #[test]
    fn duplicates_older_keeps_label() {
        let out = names(render(vec![
            child("dup.mov", "2024-02", "b"),
            child("dup.mov", "2024-01", "a"),
            child("dup.mov", "2024-01", "c"),
        ]));
        assert_eq!(out[0], ("dup.mov".into(), "a".into()));
        assert_eq!(out[1], ("dup (3).mov".into(), "b".into()));
        assert_eq!(out[2], ("dup (2).mov".into(), "c".into()));
    }

    #[test]
    fn generated_names_never_steal_exact_labels() {
        let out = names(render(vec![
            child("a.mov", "1", "x"),
            child("a.mov", "2", "y"),
            child("a (2).mov", "3", "z"),
        ]));
        assert_eq!(out[0].0, "a.mov");
        assert_eq!(out[1].0, "a (3).mov");
        assert_eq!(out[2].0, "a (2).mov");
    }

    #[test]
    fn slash_empty_and_long() {
        assert_eq!(base_name("Rough/Cut v2.mov"), "Rough:Cut v2.mov");
        assert_eq!(label_for("Rough:Cut v2.mov"), "Rough/Cut v2.mov");
        assert_eq!(base_name(""), "Untitled");
        let long = format!("{}.mov", "L".repeat(300));
        let b = base_name(&long);
        assert_eq!(b.len(), 255);
        assert!(b.ends_with(".mov"));
        let uni = format!("{}.mov", "é".repeat(200));
        let b = base_name(&uni);
        assert!(b.len() <= 255 && b.ends_with(".mov"));
        let out = render(vec![child(&long, "1", "a"), child(&long, "2", "b")]);
        assert!(out.iter().all(|(n, _, _)| n.len() <= 255));
        assert!(out.iter().any(|(n, g, _)| *g && n.ends_with(" (2).mov")));
    }

    #[test]
    fn untitled_disambiguates() {
        let out = names(render(vec![child("", "1", "a"), child("", "2", "b")]));
        assert_eq!(out[0].0, "Untitled");
        assert_eq!(out[1].0, "Untitled (2)");
    }

    #[test]
    fn priority_wins_over_age() {
        let mut c = child("x", "2", "b");
        c.priority = 0;
        let out = names(render(vec![child("x", "1", "a"), c]));
        assert_eq!(out[0].0, "x (2)");
        assert_eq!(out[1].0, "x");
    }

    #[test]
    fn junk() {
        for j in [
            "._foo",
            ".DS_Store",
            "Thumbs.db",
            "desktop.ini",
            ".Trashes",
            ".fseventsd",
        ] {
            assert!(is_os_junk(j), "{j}");
        }
        for ok in ["foo.mov", ".bashrc", "_x"] {
            assert!(!is_os_junk(ok), "{ok}");
        }
    }

    #[test]
    fn silly_renames_of_linux_and_mac_clients_are_os_names() {
        for silly in [
            ".nfs000000000000abcd00000001",
            ".nfs.0000abcd.00014.4",
            ".nfs.0000abcd.0001",
        ] {
            assert!(is_silly_rename(silly) && is_os_junk(silly), "{silly}");
        }
        for ok in [".nfs", ".nfsrc", ".nfs.conf", ".nfs1234", "nfs00000000"] {
            assert!(!is_silly_rename(ok) && !is_os_junk(ok), "{ok}");
        }
    }

    #[test]
    fn nfc_composes_and_borrows_what_is_composed() {
        assert_eq!(nfc("Cafe\u{301}.mov"), "Caf\u{e9}.mov");
        assert!(matches!(nfc("Caf\u{e9}.mov"), Cow::Borrowed(_)));
        assert!(matches!(nfc("plain.mov"), Cow::Borrowed(_)));
        // Hangul jamo compose into syllables.
        assert_eq!(nfc("\u{1112}\u{1161}\u{11ab}"), "\u{d55c}");
    }
}
