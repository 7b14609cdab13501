//! MarkBase FUSE: one user's MarkBase media library mounted as a POSIX file system.
//!
//! Three layers, each ignorant of the ones above it:
//! * front ends: [`fuse`], the kernel adapter, and [`nfs`], an NFSv3
//!   server (thin; `fuser` and `nfs3_server` types stop there);
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
pub mod mount;
pub mod nfs;
pub mod platform;
pub mod store;
pub mod sync;
