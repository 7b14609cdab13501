//! The built-in tests and benchmarks (`markbase fuse --test`): each mounts
//! what it measures (or serves it over NFS), measures the same work on the
//! disk under it in the same run, prints the ratios, and cleans up, also
//! when interrupted.

pub mod bench;
pub mod bench_multi;
pub mod bench_nfs;
pub mod stability;
pub mod stability_guest;
pub mod stability_nfs;
