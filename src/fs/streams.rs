//! Samba's named streams, kept as the Mac attributes they carry.
//!
//! Samba's `vfs_streams_xattr` keeps an SMB named stream `S` of a file as
//! the file's extended attribute `user.DosStream.S:$DATA`, holding the
//! stream's bytes and one NUL after them. With `vfs_fruit` (`markbase
//! share`), a Mac's metadata travels as such streams: the Finder info inside
//! the 60-byte `AFP_AfpInfo`, and every other attribute (tags as
//! `com.apple.metadata:_kMDItemUserTags`, quarantine, ...) as a stream of
//! its own name. This module is that convention, so that the core keeps
//! them under the names macOS gives them (`com.apple.FinderInfo`, ...),
//! which macFUSE, the NFS road's `._name` files and a Linux `getfattr`
//! (`user.com.apple.*`) use: a Finder tag or colour label set over SMB
//! reads back through the FUSE mount, and the other way round.
//!
//! * get: the stream is the attribute's bytes and a NUL (the Finder info
//!   packed into an AfpInfo);
//! * set: the attribute becomes the stream's bytes (the NUL taken off; the
//!   Finder info taken out of the AfpInfo). An `AFP_AfpInfo` that is not
//!   one yet (fruit makes the stream with a single NUL, then writes it) is
//!   kept as given, under the stream's name, until a whole one arrives;
//! * list: each Mac attribute is also listed under its stream's name, but
//!   the resource fork, which fruit keeps in `._name` (translated by
//!   [`super::mac_metadata`]), not as a stream;
//! * remove: the attribute goes.
//!
//! AfpInfo (big-endian): `"AFP\0"`, version 0x100, 4 reserved bytes, the
//! backup time (0x80000000: never), the 32 bytes of Finder info, 6 bytes of
//! ProDOS info, 6 reserved.

use super::appledouble::{is_mac_attribute, FINDER_INFO, RESOURCE_FORK};

const PREFIX: &str = "user.DosStream.";
const SUFFIX: &str = ":$DATA";
const AFP_INFO: &str = "AFP_AfpInfo";
const AFP_INFO_LEN: usize = 60;
const AFP_MAGIC: &[u8; 4] = b"AFP\0";
const AFP_VERSION: u32 = 0x100;
const AFP_BACKUP_NEVER: u32 = 0x8000_0000;
const FINDER_AT: usize = 16;
const FINDER_LEN: usize = 32;

/// What a stream's attribute name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream<'a> {
    /// `AFP_AfpInfo`: the Finder info.
    AfpInfo,
    /// A Mac attribute of this name.
    Attr(&'a str),
}

impl Stream<'_> {
    /// The attribute it is kept as.
    pub(super) fn attr(&self) -> &str {
        match self {
            Stream::AfpInfo => FINDER_INFO,
            Stream::Attr(a) => a,
        }
    }

    /// The stream's bytes (and the NUL) from the attribute's.
    pub(super) fn stream_bytes(self, value: &[u8]) -> Vec<u8> {
        let mut out = match self {
            Stream::AfpInfo => afp_info(value),
            Stream::Attr(_) => value.to_vec(),
        };
        out.push(0);
        out
    }

    /// The attribute's bytes from the stream's, or `None` when they do not
    /// make one yet (an AfpInfo still being written): then kept as given.
    pub(super) fn attr_bytes(self, stream: &[u8]) -> Option<Vec<u8>> {
        match self {
            // Its own reserved bytes end in zeros: 60 bytes, and the NUL or not.
            Stream::AfpInfo if stream.len() == AFP_INFO_LEN || stream.len() == AFP_INFO_LEN + 1 => {
                finder_info(&stream[..AFP_INFO_LEN]).map(|f| f.to_vec())
            }
            Stream::AfpInfo => None,
            Stream::Attr(_) => Some(stream.strip_suffix(&[0]).unwrap_or(stream).to_vec()),
        }
    }
}

/// The Mac attribute a `user.DosStream.*` name carries, if any.
pub(super) fn parse(name: &str) -> Option<Stream<'_>> {
    let s = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if s == AFP_INFO {
        return Some(Stream::AfpInfo);
    }
    (is_mac_attribute(s) && s != FINDER_INFO && s != RESOURCE_FORK).then_some(Stream::Attr(s))
}

/// The stream name a stored attribute is also listed under.
pub(super) fn stream_name(attr: &str) -> Option<String> {
    if attr == FINDER_INFO {
        return Some(format!("{PREFIX}{AFP_INFO}{SUFFIX}"));
    }
    (is_mac_attribute(attr) && attr != RESOURCE_FORK).then(|| format!("{PREFIX}{attr}{SUFFIX}"))
}

/// An AfpInfo holding `finder` (32 bytes; shorter is padded with zeros).
fn afp_info(finder: &[u8]) -> Vec<u8> {
    let mut a = vec![0u8; AFP_INFO_LEN];
    a[..4].copy_from_slice(AFP_MAGIC);
    a[4..8].copy_from_slice(&AFP_VERSION.to_be_bytes());
    a[12..16].copy_from_slice(&AFP_BACKUP_NEVER.to_be_bytes());
    let n = finder.len().min(FINDER_LEN);
    a[FINDER_AT..FINDER_AT + n].copy_from_slice(&finder[..n]);
    a
}

/// The Finder info in an AfpInfo, if `afp` is one.
fn finder_info(afp: &[u8]) -> Option<[u8; FINDER_LEN]> {
    if afp.len() != AFP_INFO_LEN || &afp[..4] != AFP_MAGIC || afp[4..8] != AFP_VERSION.to_be_bytes()
    {
        return None;
    }
    afp[FINDER_AT..FINDER_AT + FINDER_LEN].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_carry_mac_attributes_and_nothing_else() {
        assert_eq!(
            parse("user.DosStream.AFP_AfpInfo:$DATA"),
            Some(Stream::AfpInfo)
        );
        let tags = "com.apple.metadata:_kMDItemUserTags";
        let s = parse("user.DosStream.com.apple.metadata:_kMDItemUserTags:$DATA");
        assert_eq!(s, Some(Stream::Attr(tags)));
        assert_eq!(s.map(|s| s.attr().to_string()), Some(tags.to_string()));
        for other in [
            "user.DosStream.notes:$DATA",
            "user.DosStream.com.apple.ResourceFork:$DATA",
            "user.DosStream.com.apple.FinderInfo:$DATA",
            "user.DOSATTRIB",
            "com.apple.FinderInfo",
            "user.DosStream.AFP_AfpInfo",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
        assert_eq!(
            stream_name(FINDER_INFO).as_deref(),
            Some("user.DosStream.AFP_AfpInfo:$DATA")
        );
        assert_eq!(
            stream_name(tags).as_deref(),
            Some("user.DosStream.com.apple.metadata:_kMDItemUserTags:$DATA")
        );
        assert_eq!(stream_name(RESOURCE_FORK), None);
        assert_eq!(stream_name("user.DOSATTRIB"), None);
    }

    #[test]
    fn finder_info_goes_in_and_out_of_an_afp_info() {
        let mut finder = [0u8; 32];
        finder[..8].copy_from_slice(b"MooVTVOD");
        finder[8] = 0x0c;
        let stream = Stream::AfpInfo.stream_bytes(&finder);
        assert_eq!(stream.len(), 61, "60 bytes and streams_xattr's NUL");
        assert_eq!(&stream[..4], b"AFP\0");
        assert_eq!(&stream[16..48], &finder);
        assert_eq!(Stream::AfpInfo.attr_bytes(&stream), Some(finder.to_vec()));
        assert_eq!(
            Stream::AfpInfo.attr_bytes(&stream[..60]),
            Some(finder.to_vec())
        );
        // Not an AfpInfo yet: fruit's first, empty write, a wrong magic.
        assert_eq!(Stream::AfpInfo.attr_bytes(&[0]), None);
        let mut bad = stream.clone();
        bad[0] = b'X';
        assert_eq!(Stream::AfpInfo.attr_bytes(&bad), None);
    }

    #[test]
    fn other_streams_are_their_bytes_and_a_nul() {
        let s = Stream::Attr("com.apple.quarantine");
        assert_eq!(s.stream_bytes(b"0081;"), b"0081;\0");
        assert_eq!(s.attr_bytes(b"0081;\0"), Some(b"0081;".to_vec()));
        assert_eq!(s.attr_bytes(b"\0"), Some(Vec::new()));
    }
}
