//! AppleDouble, the format in which a Mac keeps a file's extended attributes
//! on a file system that has none (NFSv3, FAT, SMB without streams): beside
//! `name` a file `._name` holding the Finder info, the resource fork and
//! every other attribute (tags, colour labels, quarantine). This module reads
//! and writes Apple's version 2 layout as the Mac's kernel writes it (xnu,
//! `bsd/vfs/vfs_xattr.c`), as pure functions over bytes:
//!
//! ```text
//!   0  magic 0x00051607, version 0x00020000, 16 bytes "Mac OS X        "
//!  24  entry count (2), then entries of (id, offset, length), big-endian:
//!      id 9 Finder info at 50, its length running to the end of the
//!      attributes; id 2 resource fork after them
//!  50  Finder info, 32 bytes, then 2 bytes of padding
//!  84  attribute header: "ATTR", debug tag, total size, data start, data
//!      length, 3 reserved words, flags (u16), attribute count (u16)
//! 120  attribute entries: offset, length (u32), flags (u16), name length
//!      (u8, with the NUL), the name and its NUL, padded to 4 bytes
//!      then the attributes' values, at the offsets their entries give
//! ```
//!
//! Samba's `vfs_fruit` writes a shorter layout, for the resource fork alone
//! ([`build_fork`]): the filler "Netatalk        ", the Finder info entry
//! 32 bytes long at 50, the fork at 82. Both parse the same way.
//!
//! The Finder info is `com.apple.FinderInfo` and the resource fork
//! `com.apple.ResourceFork`, as macOS names them through `getxattr(2)`;
//! the others keep their own names (`com.apple.metadata:_kMDItemUserTags`,
//! `com.apple.quarantine`).

/// The Finder info attribute's name.
pub const FINDER_INFO: &str = "com.apple.FinderInfo";
/// The resource fork attribute's name.
pub const RESOURCE_FORK: &str = "com.apple.ResourceFork";

const MAGIC: u32 = 0x0005_1607;
const VERSION: u32 = 0x0002_0000;
const FILLER: &[u8; 16] = b"Mac OS X        ";
/// Samba's filler: `vfs_fruit` moves the Finder info and attributes out of
/// a file with the Mac's filler (into streams), and leaves one with this.
const SAMBA_FILLER: &[u8; 16] = b"Netatalk        ";
const ID_RESOURCE: u32 = 2;
const ID_FINDER_INFO: u32 = 9;
const FINDER_INFO_LEN: usize = 32;
/// Where the Finder info starts: the header (26 bytes) and two entries.
const FINDER_INFO_AT: usize = 26 + 2 * 12;
/// Where the attribute header starts (after the Finder info and 2 bytes of
/// padding), and where its entries start.
const ATTR_AT: usize = FINDER_INFO_AT + FINDER_INFO_LEN + 2;
const ENTRIES_AT: usize = ATTR_AT + 36;
const ATTR_MAGIC: &[u8; 4] = b"ATTR";

/// Why bytes are not an AppleDouble file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppleDoubleError {
    #[error("not an AppleDouble file (magic or version)")]
    NotAppleDouble,
    #[error("an AppleDouble entry runs past the end of the file")]
    Truncated,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, AppleDoubleError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(AppleDoubleError::Truncated)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, AppleDoubleError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(AppleDoubleError::Truncated)
}

fn slice(b: &[u8], at: u32, len: u32) -> Result<&[u8], AppleDoubleError> {
    let (at, len) = (at as usize, len as usize);
    b.get(at..at.checked_add(len).ok_or(AppleDoubleError::Truncated)?)
        .ok_or(AppleDoubleError::Truncated)
}

/// The extended attributes an AppleDouble file holds, in its order: the
/// Finder info (unless all zero), the other attributes, the resource fork
/// (unless empty).
pub fn parse(b: &[u8]) -> Result<Vec<(String, Vec<u8>)>, AppleDoubleError> {
    if u32_at(b, 0)? != MAGIC || u32_at(b, 4)? != VERSION {
        return Err(AppleDoubleError::NotAppleDouble);
    }
    let count = u16_at(b, 24)? as usize;
    let (mut finder, mut fork) = (None, None);
    for i in 0..count {
        let at = 26 + i * 12;
        let (id, off, len) = (u32_at(b, at)?, u32_at(b, at + 4)?, u32_at(b, at + 8)?);
        match id {
            ID_FINDER_INFO => finder = Some((off, len)),
            ID_RESOURCE => fork = Some(slice(b, off, len)?),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut attrs = Vec::new();
    if let Some((off, len)) = finder {
        let info = slice(b, off, len.min(FINDER_INFO_LEN as u32))?;
        if info.iter().any(|&x| x != 0) {
            out.push((FINDER_INFO.to_string(), info.to_vec()));
        }
        // The attributes follow the Finder info inside its entry, at a
        // fixed place (the Mac's kernel never moves them).
        let hdr = off as usize + FINDER_INFO_LEN + 2;
        if len as usize > FINDER_INFO_LEN && b.get(hdr..hdr + 4) == Some(&ATTR_MAGIC[..]) {
            let n = u16_at(b, hdr + 34)? as usize;
            let mut e = hdr + 36;
            for _ in 0..n {
                let (voff, vlen) = (u32_at(b, e)?, u32_at(b, e + 4)?);
                let namelen = *b.get(e + 10).ok_or(AppleDoubleError::Truncated)? as usize;
                let raw = b
                    .get(e + 11..e + 11 + namelen)
                    .ok_or(AppleDoubleError::Truncated)?;
                let name = raw.split(|&c| c == 0).next().unwrap_or_default();
                attrs.push((
                    String::from_utf8_lossy(name).into_owned(),
                    slice(b, voff, vlen)?.to_vec(),
                ));
                e += entry_len(namelen);
            }
        }
    }
    out.extend(attrs);
    if let Some(f) = fork.filter(|f| !f.is_empty()) {
        out.push((RESOURCE_FORK.to_string(), f.to_vec()));
    }
    Ok(out)
}

/// An attribute entry's length for a name of `namelen` bytes (NUL
/// included), padded to 4 bytes.
fn entry_len(namelen: usize) -> usize {
    (11 + namelen + 3) & !3
}

/// The AppleDouble file of `attrs` (name, value), laid out as a Mac's
/// kernel lays it out, so that it reads one back as its own.
pub fn build(attrs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let get = |n: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_slice())
    };
    let others: Vec<&(String, Vec<u8>)> = attrs
        .iter()
        .filter(|(k, _)| k != FINDER_INFO && k != RESOURCE_FORK)
        .collect();
    let entries: usize = others.iter().map(|(k, _)| entry_len(k.len() + 1)).sum();
    let data_start = ENTRIES_AT + entries;
    let data_len: usize = others.iter().map(|(_, v)| v.len()).sum();
    let total = data_start + data_len;
    let fork = get(RESOURCE_FORK).unwrap_or_default();
    let mut b = Vec::with_capacity(total + fork.len());
    let be32 = |b: &mut Vec<u8>, v: usize| b.extend_from_slice(&(v as u32).to_be_bytes());
    be32(&mut b, MAGIC as usize);
    be32(&mut b, VERSION as usize);
    b.extend_from_slice(FILLER);
    b.extend_from_slice(&2u16.to_be_bytes());
    for (id, off, len) in [
        (ID_FINDER_INFO, FINDER_INFO_AT, total - FINDER_INFO_AT),
        (ID_RESOURCE, total, fork.len()),
    ] {
        be32(&mut b, id as usize);
        be32(&mut b, off);
        be32(&mut b, len);
    }
    let mut info = [0u8; FINDER_INFO_LEN];
    if let Some(v) = get(FINDER_INFO) {
        let n = v.len().min(FINDER_INFO_LEN);
        info[..n].copy_from_slice(&v[..n]);
    }
    b.extend_from_slice(&info);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(ATTR_MAGIC);
    be32(&mut b, 0); // debug tag
    be32(&mut b, total);
    be32(&mut b, data_start);
    be32(&mut b, data_len);
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(others.len() as u16).to_be_bytes());
    let mut at = data_start;
    for (k, v) in &others {
        let start = b.len();
        be32(&mut b, at);
        be32(&mut b, v.len());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.push((k.len() + 1) as u8);
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.resize(start + entry_len(k.len() + 1), 0);
        at += v.len();
    }
    for (_, v) in &others {
        b.extend_from_slice(v);
    }
    b.extend_from_slice(fork);
    b
}

/// The AppleDouble file of a resource fork alone, laid out as Samba's
/// `vfs_fruit` writes one (its `ad_init` for a `._` file): Finder info all
/// zero (fruit keeps it in a stream), the fork at 82. fruit reads and
/// writes the fork in it and converts nothing.
pub fn build_fork(fork: &[u8]) -> Vec<u8> {
    let fork_at = FINDER_INFO_AT + FINDER_INFO_LEN;
    let mut b = Vec::with_capacity(fork_at + fork.len());
    b.extend_from_slice(&MAGIC.to_be_bytes());
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(SAMBA_FILLER);
    b.extend_from_slice(&2u16.to_be_bytes());
    for (id, off, len) in [
        (ID_FINDER_INFO, FINDER_INFO_AT, FINDER_INFO_LEN),
        (ID_RESOURCE, fork_at, fork.len()),
    ] {
        for v in [id, off as u32, len as u32] {
            b.extend_from_slice(&v.to_be_bytes());
        }
    }
    b.resize(fork_at, 0);
    b.extend_from_slice(fork);
    b
}

/// Is `name` one an AppleDouble file carries (the Mac's own attributes)?
pub fn is_mac_attribute(name: &str) -> bool {
    name.starts_with("com.apple.")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AppleDouble file as a Mac writes one for a file with a tag and a
    /// quarantine flag, assembled byte by byte from the layout above (not
    /// by [`build`]).
    fn from_a_mac() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let tag = b"bplist00\xa1\x01UBlue\n6\x08\x0a".to_vec();
        let quarantine = b"0083;6566d1a2;Safari;".to_vec();
        let mut b = Vec::new();
        b.extend_from_slice(&[0, 5, 0x16, 7, 0, 2, 0, 0]);
        b.extend_from_slice(b"Mac OS X        ");
        b.extend_from_slice(&[0, 2]);
        // Entries are filled in once the sizes are known.
        b.extend_from_slice(&[0; 24]);
        let mut finfo = [0u8; 32];
        finfo[..8].copy_from_slice(b"MooVTVOD");
        finfo[8] = 0x0c; // a colour label in the Finder flags
        b.extend_from_slice(&finfo);
        b.extend_from_slice(&[0, 0]);
        assert_eq!(b.len(), 84);
        let names = [
            "com.apple.metadata:_kMDItemUserTags",
            "com.apple.quarantine",
        ];
        let entries: usize = names.iter().map(|n| (11 + n.len() + 1 + 3) & !3).sum();
        let data_start = 120 + entries;
        let total = data_start + tag.len() + quarantine.len();
        b.extend_from_slice(b"ATTR");
        for v in [0, total, data_start, tag.len() + quarantine.len(), 0, 0, 0] {
            b.extend_from_slice(&(v as u32).to_be_bytes());
        }
        b.extend_from_slice(&[0, 0, 0, 2]);
        let mut at = data_start;
        for (n, v) in names.iter().zip([&tag, &quarantine]) {
            let start = b.len();
            b.extend_from_slice(&(at as u32).to_be_bytes());
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(&[0, 0, (n.len() + 1) as u8]);
            b.extend_from_slice(n.as_bytes());
            b.push(0);
            while (b.len() - start) % 4 != 0 {
                b.push(0);
            }
            at += v.len();
        }
        b.extend_from_slice(&tag);
        b.extend_from_slice(&quarantine);
        let fork = b"\x00\x00\x01\x00resource fork bytes".to_vec();
        b.extend_from_slice(&fork);
        let entries = [(9u32, 50usize, total - 50), (2, total, fork.len())];
        for (i, (id, off, len)) in entries.iter().enumerate() {
            let at = 26 + i * 12;
            b[at..at + 4].copy_from_slice(&id.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&(*off as u32).to_be_bytes());
            b[at + 8..at + 12].copy_from_slice(&(*len as u32).to_be_bytes());
        }
        (b, tag, fork)
    }

    #[test]
    fn a_macs_appledouble_file_gives_its_finder_info_tags_quarantine_and_fork() {
        let (b, tag, fork) = from_a_mac();
        let got = parse(&b).expect("parse");
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                FINDER_INFO,
                "com.apple.metadata:_kMDItemUserTags",
                "com.apple.quarantine",
                RESOURCE_FORK
            ]
        );
        assert_eq!(&got[0].1[..8], b"MooVTVOD");
        assert_eq!(got[1].1, tag);
        assert_eq!(got[2].1, b"0083;6566d1a2;Safari;");
        assert_eq!(got[3].1, fork);
    }

    #[test]
    fn what_is_built_is_laid_out_as_a_mac_lays_it_out() {
        let (b, _, _) = from_a_mac();
        let attrs = parse(&b).expect("parse");
        assert_eq!(build(&attrs), b, "byte for byte the Mac's layout");
        assert_eq!(parse(&build(&attrs)), Ok(attrs));
    }

    #[test]
    fn a_fork_alone_is_laid_out_as_samba_lays_it_out() {
        let fork = b"\x00\x00\x01\x00resource fork bytes".to_vec();
        let b = build_fork(&fork);
        assert_eq!(&b[8..24], b"Netatalk        ");
        // fruit's checks: Finder info at 50, 32 long; the fork at 82.
        assert_eq!(&b[24..26], &[0, 2]);
        assert_eq!(&b[26..38], &[0, 0, 0, 9, 0, 0, 0, 50, 0, 0, 0, 32]);
        assert_eq!(&b[38..50], &[0, 0, 0, 2, 0, 0, 0, 82, 0, 0, 0, 23]);
        assert_eq!(b.len(), 82 + fork.len());
        assert_eq!(parse(&b), Ok(vec![(RESOURCE_FORK.to_string(), fork)]));
        assert_eq!(parse(&build_fork(&[])), Ok(vec![]));
    }

    #[test]
    fn empty_parts_are_left_out_and_bad_files_refused() {
        let none = build(&[]);
        assert_eq!(parse(&none), Ok(vec![]));
        let only = vec![("com.apple.quarantine".to_string(), b"q".to_vec())];
        assert_eq!(parse(&build(&only)), Ok(only));
        assert_eq!(
            parse(b"not AppleDouble"),
            Err(AppleDoubleError::NotAppleDouble)
        );
        let mut cut = build(&[("com.apple.x".into(), vec![7; 100])]);
        cut.truncate(cut.len() - 10);
        assert_eq!(parse(&cut), Err(AppleDoubleError::Truncated));
        assert!(is_mac_attribute(FINDER_INFO) && !is_mac_attribute("user.DOSATTRIB"));
    }
}
