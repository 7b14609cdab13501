//! Counters and space: what `markbase fuse --stats`, the unmount log line
//! and `statfs` report.
//!
//! Traffic is counted with relaxed atomics on the hot path (one add per
//! read or write); the caches count their own hits and misses. `statfs`
//! reports the content disk's space, or a quota's where one is set.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::metrics::RequestStats;

use super::{FsResult, MarkBaseFs};
use crate::store::SpaceInfo;

/// Traffic counters (the caches count their own hits and misses).
#[derive(Default, Debug)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub opens: AtomicU64,
}

/// A snapshot of the cache and traffic counters, for `--stats`, `--status`,
/// `/metrics` and the unmount log line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub attr_hits: u64,
    pub attr_misses: u64,
    pub dir_hits: u64,
    pub dir_misses: u64,
    pub path_hits: u64,
    pub path_misses: u64,
    /// Hits over lookups of the daemon's own caches (attributes, listings,
    /// content paths). The kernel answers repeated lookups itself, so
    /// these see mostly first visits: see `requests.without_catalog` for
    /// the share of requests answered from memory.
    pub cache_hit_rate: f64,
    /// Bytes read and written through the daemon (with kernel passthrough
    /// an open file's I/O goes from the kernel to the content file
    /// directly and is not counted here).
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub opens: u64,
    pub open_files: u64,
    /// Catalog commits, and the changes they held.
    pub catalog_commits: u64,
    pub catalog_changes: u64,
    pub requests: RequestStats,
}

impl MarkBaseFs {
    /// Space as `df` shows it: the content disk's, or with a quota, the
    /// quota's (no more free than the disk has), as NAS shares report theirs.
    pub fn statfs(&self) -> FsResult<SpaceInfo> {
        let mut space = self.store.space()?;
        if let Some(q) = &self.quota {
            let bs = u64::from(space.frsize.max(1));
            let used = q.used(self.catalog.as_ref())?;
            let free = q.limit().saturating_sub(used) / bs;
            space.blocks = q.limit() / bs;
            space.bfree = space.bfree.min(free);
            space.bavail = space.bavail.min(free);
        }
        Ok(space)
    }

    /// A snapshot of the counters (no lock but the open-file table's, briefly).
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Relaxed);
        let (a, d, p) = (&self.attrs, &self.dirs, &self.paths);
        let hits = a.hits() + d.hits() + p.hits();
        let all = hits + a.misses() + d.misses() + p.misses();
        let commits = self.catalog.commits();
        Stats {
            attr_hits: a.hits(),
            attr_misses: a.misses(),
            dir_hits: d.hits(),
            dir_misses: d.misses(),
            path_hits: p.hits(),
            path_misses: p.misses(),
            cache_hit_rate: if all == 0 {
                0.0
            } else {
                hits as f64 / all as f64
            },
            bytes_read: g(&c.bytes_read),
            bytes_written: g(&c.bytes_written),
            opens: g(&c.opens),
            open_files: self.open.lock().len() as u64,
            catalog_commits: commits.commits,
            catalog_changes: commits.changes,
            requests: self.requests.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::flags::OpenFlags;
    use super::super::test_support::TestFs;
    use super::super::FsConfig;

    #[test]
    fn counters_follow_traffic() {
        let t = TestFs::new();
        let f = t.file("f", &[9; 4096]);
        let fh = t.fs.open(f.ino, OpenFlags::READ).expect("open");
        assert_eq!(t.fs.read(fh, 0, 1000).map(|d| d.len()).ok(), Some(1000));
        let s = t.fs.stats();
        assert_eq!((s.bytes_written, s.bytes_read), (4096, 1000));
        assert_eq!((s.opens, s.open_files), (2, 1));
        t.fs.release(fh).expect("release");
        assert_eq!(t.fs.stats().open_files, 0);
        assert!((0.0..=1.0).contains(&t.fs.stats().cache_hit_rate));
    }

    #[test]
    fn a_quota_is_what_df_shows() {
        let t = TestFs::with(FsConfig {
            quota: Some(1 << 20),
            ..FsConfig::default()
        });
        t.file("f", &[1; 4096]);
        let s = t.fs.statfs().expect("statfs");
        let bs = u64::from(s.frsize.max(1));
        assert_eq!(s.blocks, (1 << 20) / bs);
        assert!(s.bavail <= ((1 << 20) - 4096) / bs);
    }
}
