//! MarkBase FUSE: one user's MarkBase media library mounted as a POSIX file system.
//!
//! Three layers, each ignorant of the ones above it:
//! * front ends: [`fuse`], the kernel adapter, and [`nfs`], an NFSv3
//!   server (thin; `nfs3_server` types stop in [`nfs`], `fuser`'s in
//!   [`fuse`] and, for the session and its options, [`mount`]);
//! * [`fs`]: the file system core: inodes, handles, caches, POSIX rules;
//! * [`catalog`] (metadata, SQLite today) and [`store`] (content files).
//!
//! [`mount`] runs a mount as a daemon process and finds, flushes and
//! unmounts running ones; [`platform`] picks the FUSE backend; [`library`]
//! makes new catalogs.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod catalog;
pub mod config;
pub mod daemon;
pub mod fs;
#[cfg(fuse)]
pub mod fuse;
pub mod library;
pub mod manager;
pub mod metrics;
pub mod mount;
pub mod nfs;
pub mod platform;
pub mod service;
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
