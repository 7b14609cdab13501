//! MarkBase FUSE: one user's MarkBase media library mounted as a POSIX file system.
//!
//! Layers, each ignorant of the ones above it (the `markbase` binary's
//! `cli/` sits on top):
//! * [`manage`]: a mount's daemon started and found, many users at once,
//!   the supervisor, the service;
//! * front ends: [`fuse`], the kernel's FUSE protocol (its crate's types
//!   stop there), and [`nfs`], an NFSv3 server (`nfs3_server`'s stop there);
//! * [`daemon`]: what every front end's process runs around it;
//! * [`fs`]: the file system core: inodes, handles, caches, POSIX rules;
//! * [`catalog`] (metadata, SQLite today) and [`store`] (content files and
//!   their I/O);
//! * [`platform`] (backends, the mount table, macOS), [`config`],
//!   [`library`] (where a user's files live, new catalogs) and [`sync`]
//!   (every lock).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod catalog;
pub mod config;
pub mod daemon;
pub mod fs;
#[cfg(fuse)]
pub mod fuse;
pub mod library;
pub mod manage;
pub mod nfs;
pub mod platform;
pub mod store;
pub mod sync;

/// A fail point of crate `fail`, compiled in only with `--features
/// failpoints` (the crash tests' build): set by `FAILPOINTS=name=return` in
/// the environment, it kills the process there (abort: no cleanup, as
/// SIGKILL), or runs the given closure instead.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        fail::fail_point!($name, |_| {
            eprintln!("markbase: fail point {} reached: aborting", $name);
            std::process::abort()
        })
    };
    ($name:literal, $e:expr) => {
        fail::fail_point!($name, $e)
    };
}
