//! The operations the model test draws, and their generators: short paths
//! over three names (so that operations collide often), small offsets and
//! sizes, a few modes and symlink targets.

use proptest::prelude::*;

/// A path below the root, one name per component.
pub type P = Vec<String>;

#[derive(Clone, Debug)]
pub enum Op {
    Mkdir(P),
    Create(P),
    Write(P, u64, usize, u8),
    Truncate(P, u64),
    Read(P),
    Unlink(P),
    Rmdir(P),
    Rename(P, P),
    /// A hard link: the first path's inode gets the second name.
    Link(P, P),
    Symlink(P, String),
    Readlink(P),
    Chmod(P, u16),
    /// Open a file, unlink its name, read from the open handle.
    OpenUnlinkRead(P),
    /// Open a folder, make `name` in it, list the open handle: the listing
    /// is the folder as it was at open.
    ListAcrossEdit(P, String),
}

/// What an operation gives: bytes read (or listed), or an errno.
pub type R = Result<Option<Vec<u8>>, i32>;

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from)
}

pub fn path() -> impl Strategy<Value = P> {
    prop::collection::vec(name(), 1..=3)
}

/// A folder's path, the root included (the empty path).
fn dir_path() -> impl Strategy<Value = P> {
    prop::collection::vec(name(), 0..=2)
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Mkdir),
        3 => path().prop_map(Op::Create),
        3 => (path(), 0u64..64, 0usize..40, any::<u8>()).prop_map(|(p, o, l, b)| Op::Write(p, o, l, b)),
        1 => (path(), 0u64..100).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => path().prop_map(Op::Read),
        2 => path().prop_map(Op::Unlink),
        1 => path().prop_map(Op::Rmdir),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => (path(), prop::sample::select(vec!["x", "../a", "a/b"]).prop_map(String::from))
            .prop_map(|(p, t)| Op::Symlink(p, t)),
        1 => path().prop_map(Op::Readlink),
        1 => (path(), prop::sample::select(vec![0o600u16, 0o644, 0o755, 0o4750, 0o2775]))
            .prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => path().prop_map(Op::OpenUnlinkRead),
        1 => (dir_path(), name()).prop_map(|(d, n)| Op::ListAcrossEdit(d, n)),
    ]
}

/// `a/b/c` as a path.
pub fn p(s: &str) -> P {
    s.split('/').map(String::from).collect()
}
