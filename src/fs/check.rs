//! Consistency of a library: what `markbase fsck` reports and repairs, and
//! the recovery pass every mount runs in the background once it is up.
//!
//! The catalog checks itself ([`crate::catalog::Maintenance::check`]: SQLite's integrity check,
//! names without inodes or folders, files deleted while open and never freed;
//! format oddities are notes, not damage). This module adds what needs the
//! content store beside it: a location inside the store whose file is gone
//! (repair, by `fsck` only: forget the location; the node then reads as
//! "no existing location", EIO, as the format documents), and content files that no row
//! points at (left by a daemon killed between making a file and committing
//! its row, or by a row deleted behind the mount's back). Repair never throws
//! bytes away: an empty orphan is deleted, any other is moved to
//! `<data-dir>/lost+found/<user>/`, as e2fsck does. Files younger than the
//! grace period are left alone: a writer may be about to commit their row.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{FsResult, MarkBaseFs};
use crate::catalog::{Catalog, CheckDepth};

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckOpts {
    pub repair: bool,
    /// No mount serves the library (`fsck`): also free files deleted while
    /// open that an earlier run left, and forget locations whose file is gone.
    /// A live mount's own pass does neither: it has such files of its own,
    /// and a file may vanish and come back under a running program.
    pub offline: bool,
    /// Leave content files younger than this alone.
    pub grace: Duration,
    /// Where orphaned content files with bytes in them go.
    pub lost_found: PathBuf,
}

/// What was found and done.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub damage: Vec<String>,
    pub notes: Vec<String>,
    pub repaired: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

impl MarkBaseFs {
    /// Check the library, and repair it if asked.
    pub fn check(&self, o: &CheckOpts) -> FsResult<CheckReport> {
        let cat: &dyn Catalog = self.catalog.as_ref();
        // SQLite's page check reads the whole file: `fsck`'s, not a live
        // pass's (which would only compete with the mount's first listings).
        let found = cat.check(if o.offline {
            CheckDepth::Pages
        } else {
            CheckDepth::Rows
        })?;
        let mut r = CheckReport {
            damage: found.damage,
            notes: found.notes,
            repaired: Vec::new(),
        };
        // Content files of deleted nodes still on disk (a daemon stopped
        // before its background removal): deleted, not kept (by `recover`).
        let trash: HashSet<PathBuf> = cat
            .trash()?
            .1
            .into_iter()
            .filter(|p| self.store.owns(p) && std::fs::symlink_metadata(p).is_ok())
            .collect();
        if !trash.is_empty() {
            r.damage.push(format!(
                "{} content files of deleted files still on disk (the daemon stopped before removing them)",
                trash.len()
            ));
        }
        if o.repair {
            r.repaired.extend(cat.repair()?);
            let freed = if o.offline { self.recover()? } else { 0 };
            if freed > 0 {
                r.repaired
                    .push(format!("freed {freed} files deleted while open"));
            }
            if o.offline && !trash.is_empty() {
                r.repaired.push(format!(
                    "deleted {} content files of deleted files",
                    trash.len()
                ));
            }
        }
        // Files an NFS client renamed as it removed them while open (its
        // "silly rename"), which it was to remove at its last close but never
        // did (it crashed, or lost the mount). A client may hold one across a
        // restart of the server, so a live pass leaves the young ones.
        let keep = if o.offline {
            Duration::ZERO
        } else {
            SILLY_GRACE
        };
        let silly: Vec<_> = cat
            .silly_renamed()?
            .into_iter()
            .filter(|s| now_since(s.ctime) >= keep)
            .collect();
        if !silly.is_empty() {
            r.damage.push(format!(
                "{} files an NFS client removed while open and never removed (silly renames: {})",
                silly.len(),
                silly
                    .iter()
                    .take(3)
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if o.repair {
                for s in &silly {
                    self.unlink(s.parent, std::ffi::OsStr::new(&s.name))?;
                }
                r.repaired
                    .push(format!("removed {} silly-renamed files", silly.len()));
            }
        }
        // Locations in the store whose file is gone.
        let refs = cat.content_refs()?;
        let mut missing = 0;
        for c in &refs {
            if self.store.owns(&c.path) && std::fs::symlink_metadata(&c.path).is_err() {
                missing += 1;
                if missing <= 10 {
                    r.damage.push(format!(
                        "node {}: its content file {} is missing",
                        c.node_id,
                        c.path.display()
                    ));
                }
                if o.repair && o.offline {
                    cat.drop_location(&c.node_id, &c.path)?;
                }
            }
        }
        if missing > 10 {
            r.damage
                .push(format!("... {missing} content files missing in all"));
        }
        if missing > 0 && o.repair && o.offline {
            r.repaired.push(format!(
                "forgot {missing} locations of missing content files (those files read as EIO)"
            ));
            self.changed(&[], &[]);
        }
        // Content files nobody points at.
        let known: HashSet<&Path> = refs.iter().map(|c| c.path.as_path()).collect();
        let mut orphans = Vec::new();
        for p in self.store.files()? {
            if known.contains(p.as_path()) || trash.contains(&p) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.modified().map(now_since).unwrap_or_default() >= o.grace {
                orphans.push((p, md.len()));
            }
        }
        if !orphans.is_empty() {
            let bytes: u64 = orphans.iter().map(|(_, l)| l).sum();
            r.damage.push(format!(
                "{} content files ({bytes} bytes) that no catalog row points at",
                orphans.len()
            ));
            if o.repair {
                let (mut removed, mut moved) = (0, 0);
                for (p, len) in &orphans {
                    if *len == 0 {
                        self.store.remove(p)?;
                        removed += 1;
                    } else {
                        move_to(p, &o.lost_found)?;
                        moved += 1;
                    }
                }
                if removed > 0 {
                    r.repaired.push(format!(
                        "deleted {removed} empty unreferenced content files"
                    ));
                }
                if moved > 0 {
                    r.repaired.push(format!(
                        "moved {moved} unreferenced content files to {}",
                        o.lost_found.display()
                    ));
                }
            }
        }
        Ok(r)
    }
}

/// How long a live recovery pass leaves a silly-renamed file alone: a day
/// without a change (a client still holding it open would have written to it
/// or closed it by then). `fsck`, with no server running, removes them all.
pub const SILLY_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How long ago `t` was (zero if it is in the future).
fn now_since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

/// Move `p` into `dir`, keeping its name (and never overwriting).
fn move_to(p: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let mut dest = dir.join(&*name);
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = dir.join(format!("{name}.{n}"));
    }
    match std::fs::rename(p, &dest) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(p, &dest)?;
            std::fs::File::open(&dest)?.sync_all()?;
            std::fs::remove_file(p)
        }
        Err(e) => Err(e),
    }
}
