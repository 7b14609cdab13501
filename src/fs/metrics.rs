//! Request metrics: what a front end's requests cost, by kind.
//!
//! A front end opens a [`Timer`] when a request arrives and lets it drop
//! when the reply is sent; a failure is counted by errno as it becomes one
//! ([`RequestMetrics::failed`]). Everything is a relaxed atomic add on the
//! request path: a count, a latency bucket and a sum per kind, and one count
//! per errno. A timer also notes whether the request touched the catalog
//! (SQLite) at all, from the catalog's per-thread query count: the share
//! of requests answered from memory (the core's caches, or the journal) is
//! what an admin wants from "cache hit rate", since the kernel answers
//! repeated lookups itself and they never reach the daemon.
//!
//! The snapshot ([`RequestStats`]) travels as JSON (the stats xattr) to
//! `--status` and to the supervisor's `/metrics`, which renders it in
//! OpenMetrics text (`crate::daemon::metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in seconds (the last is +Inf).
pub const LATENCY_BUCKETS: [f64; 12] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1.0,
];

/// Kinds of request, as the front ends name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Xattr,
    Access,
    Create,
    Fallocate,
    Lseek,
    Forget,
}

impl Op {
    const ALL: [Op; 29] = [
        Op::Lookup,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Symlink,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Opendir,
        Op::Readdir,
        Op::Readdirplus,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Statfs,
        Op::Xattr,
        Op::Access,
        Op::Create,
        Op::Fallocate,
        Op::Lseek,
        Op::Forget,
    ];

    /// The name used in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mknod => "mknod",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Releasedir => "releasedir",
            Op::Fsyncdir => "fsyncdir",
            Op::Statfs => "statfs",
            Op::Xattr => "xattr",
            Op::Access => "access",
            Op::Create => "create",
            Op::Fallocate => "fallocate",
            Op::Lseek => "lseek",
            Op::Forget => "forget",
        }
    }
}

#[derive(Default)]
struct OpCounters {
    count: AtomicU64,
    micros: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

/// Errnos counted one by one; larger ones share the last slot.
const ERRNOS: usize = 134;

/// The counters, kept by the core for its front ends.
pub struct RequestMetrics {
    ops: [OpCounters; Op::ALL.len()],
    errnos: [AtomicU64; ERRNOS + 1],
    without_catalog: AtomicU64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            ops: std::array::from_fn(|_| OpCounters::default()),
            errnos: std::array::from_fn(|_| AtomicU64::new(0)),
            without_catalog: AtomicU64::new(0),
        }
    }
}

/// One request in flight; counted when dropped.
pub struct Timer<'a> {
    metrics: &'a RequestMetrics,
    op: Op,
    start: Instant,
    queries: u64,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        let m = self.metrics;
        let c = &m.ops[self.op as usize];
        let took = self.start.elapsed();
        let secs = took.as_secs_f64();
        let b = LATENCY_BUCKETS
            .iter()
            .position(|&ub| secs <= ub)
            .unwrap_or(LATENCY_BUCKETS.len());
        c.count.fetch_add(1, Relaxed);
        c.micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        c.buckets[b].fetch_add(1, Relaxed);
        if crate::catalog::queries_on_this_thread() == self.queries {
            m.without_catalog.fetch_add(1, Relaxed);
        }
    }
}

impl RequestMetrics {
    /// Start timing a request of kind `op` (on the thread that serves it).
    pub fn start(&self, op: Op) -> Timer<'_> {
        Timer {
            metrics: self,
            op,
            start: Instant::now(),
            queries: crate::catalog::queries_on_this_thread(),
        }
    }

    /// A request failed with `errno`.
    pub fn failed(&self, errno: i32) {
        let i = usize::try_from(errno).unwrap_or(ERRNOS).min(ERRNOS);
        self.errnos[i].fetch_add(1, Relaxed);
    }

    /// A snapshot (kinds never seen are left out).
    pub fn snapshot(&self) -> RequestStats {
        let mut ops = BTreeMap::new();
        let mut total = 0;
        for op in Op::ALL {
            let c = &self.ops[op as usize];
            let count = c.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            total += count;
            ops.insert(
                op.name().to_string(),
                OpStats {
                    count,
                    seconds: c.micros.load(Relaxed) as f64 / 1e6,
                    buckets: c.buckets.iter().map(|b| b.load(Relaxed)).collect(),
                },
            );
        }
        let errors = self
            .errnos
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (errno_name(i), n))
            })
            .collect();
        RequestStats {
            total,
            without_catalog: self.without_catalog.load(Relaxed),
            ops,
            errors,
        }
    }
}

/// The symbolic name of an errno (`ENOENT`), or its number.
pub fn errno_name(errno: usize) -> String {
    use libc::*;
    let known: &[(i32, &str)] = &[
        (EPERM, "EPERM"),
        (ENOENT, "ENOENT"),
        (EIO, "EIO"),
        (EBADF, "EBADF"),
        (EAGAIN, "EAGAIN"),
        (ENOMEM, "ENOMEM"),
        (EACCES, "EACCES"),
        (EBUSY, "EBUSY"),
        (EEXIST, "EEXIST"),
        (EXDEV, "EXDEV"),
        (ENOTDIR, "ENOTDIR"),
        (EISDIR, "EISDIR"),
        (EINVAL, "EINVAL"),
        (EMFILE, "EMFILE"),
        (EFBIG, "EFBIG"),
        (ENOSPC, "ENOSPC"),
        (EROFS, "EROFS"),
        (EMLINK, "EMLINK"),
        (ERANGE, "ERANGE"),
        (ENAMETOOLONG, "ENAMETOOLONG"),
        (ENOSYS, "ENOSYS"),
        (ENOTEMPTY, "ENOTEMPTY"),
        (ELOOP, "ELOOP"),
        (ENODATA, "ENODATA"),
        (EOPNOTSUPP, "EOPNOTSUPP"),
        (EDQUOT, "EDQUOT"),
        (ESTALE, "ESTALE"),
    ];
    known
        .iter()
        .find(|(n, _)| usize::try_from(*n).ok() == Some(errno))
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("errno_{errno}"))
}

/// Latency and count of one kind of request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OpStats {
    pub count: u64,
    /// Time spent on them, in all.
    pub seconds: f64,
    /// Requests per latency bucket ([`LATENCY_BUCKETS`], then +Inf).
    pub buckets: Vec<u64>,
}

/// A snapshot of [`RequestMetrics`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestStats {
    /// Requests served.
    pub total: u64,
    /// Of them, answered without a catalog query (from the core's caches
    /// or the journal).
    pub without_catalog: u64,
    pub ops: BTreeMap<String, OpStats>,
    /// Failures by errno.
    pub errors: BTreeMap<String, u64>,
}

impl RequestStats {
    /// The share of requests answered without a catalog query (0 when
    /// none were served).
    pub fn without_catalog_share(&self) -> f64 {
        self.without_catalog as f64 / self.total.max(1) as f64
    }

    /// Requests that failed, whatever their errno.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_kind_bucket_and_errno() {
        let m = RequestMetrics::default();
        for _ in 0..3 {
            let _t = m.start(Op::Lookup);
        }
        {
            let _t = m.start(Op::Unlink);
            m.failed(libc::ENOENT);
        }
        m.failed(100_000);
        let s = m.snapshot();
        assert_eq!(s.total, 4);
        assert_eq!(s.without_catalog, 4, "nothing here queries a catalog");
        assert_eq!(s.ops["lookup"].count, 3);
        assert_eq!(s.ops["lookup"].buckets.iter().sum::<u64>(), 3);
        assert_eq!(s.ops["lookup"].buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.errors["ENOENT"], 1);
        assert_eq!(s.errors[&format!("errno_{ERRNOS}")], 1);
        assert_eq!(s.failed(), 2);
        assert_eq!(s.without_catalog_share(), 1.0);
        assert!(!s.ops.contains_key("read"));
        let back: RequestStats =
            serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parse");
        assert_eq!(back, s);
    }
}
