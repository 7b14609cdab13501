//! `markbase fuse --test --aja --mounts N` (or `--users a,b,...`): the
//! design's "10 x 600 MB/s". N users, each with its own mount (its own
//! daemon), write and then read AJA-style frames at once; then the same N
//! writers and readers run on the disk under the mounts (each user's
//! content folder), in the same run. Each phase starts together (a
//! barrier) and pages are dropped between writing and reading, so reads
//! come from the disk. Per user: MB/s, fps, frame latency and the frame
//! rates sustained with no frame late; in all: the bytes of every user
//! over the phase's wall time, mount against disk.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use markbase::library::Library;
use markbase::manage::manager;

use crate::cli::interrupt::interrupted;
use crate::cli::selftest::bench::{
    find_config, frame_geometry, pass, read_frames, write_frames, AjaConfig, Frames, Pass,
};

/// What `aja_many` is asked to do.
pub struct ManyOpts<'a> {
    pub data_dir: &'a std::path::Path,
    /// Existing users; empty: `mounts` demo libraries in a temporary folder.
    pub users: Vec<String>,
    pub mounts: usize,
    pub passthrough: bool,
    pub json: bool,
    pub chart: Option<&'a std::path::Path>,
    pub config: &'a str,
    pub file_size: u64,
}

#[derive(Serialize)]
struct UserResult {
    user: String,
    frames: u64,
    direct_io: bool,
    write: Pass,
    read: Pass,
}

#[derive(Serialize, Clone, Copy)]
struct Aggregate {
    write_mb_s: f64,
    read_mb_s: f64,
}

/// One side (mounts or disk): per user, in all, and per second in all.
struct Side {
    users: Vec<UserResult>,
    all: Aggregate,
    write_per_s: Vec<f64>,
    read_per_s: Vec<f64>,
}

/// Bytes done per whole second since `t0`, as MB/s.
fn per_second(t0: Instant, frames: &[&Frames], frame: u64) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::new();
    for f in frames {
        for at in &f.done_at {
            let s = at.saturating_duration_since(t0).as_secs() as usize;
            if v.len() <= s {
                v.resize(s + 1, 0.0);
            }
            v[s] += frame as f64 / 1e6;
        }
    }
    v
}

/// Everyone writes `file_size` of frames to their path at once, then
/// everyone reads them back at once.
fn phase(targets: &[(String, PathBuf)], frame: u64, frames: u64) -> Result<Side> {
    let n = targets.len();
    let (go, written, read) = (
        Arc::new(Barrier::new(n + 1)),
        Arc::new(Barrier::new(n + 1)),
        Arc::new(Barrier::new(n + 1)),
    );
    let workers: Vec<_> = targets
        .iter()
        .cloned()
        .map(|(user, path)| {
            let (go, written, read) = (go.clone(), written.clone(), read.clone());
            std::thread::spawn(move || {
                let quiet = ProgressBar::hidden();
                go.wait();
                let w = write_frames(&path, frame, frames, &quiet);
                written.wait();
                // The main thread drops the page cache here.
                read.wait();
                let r = match &w {
                    Ok((wf, _)) => read_frames(&path, frame, wf.lat.len() as u64, &quiet),
                    Err(e) => Err(anyhow::anyhow!("{e:#}")),
                };
                let _ = std::fs::remove_file(&path);
                (user, w, r)
            })
        })
        .collect();
    go.wait();
    let t_write = Instant::now();
    written.wait();
    let write_wall = t_write.elapsed();
    nix::unistd::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    read.wait();
    let t_read = Instant::now();
    let mut results = Vec::new();
    for h in workers {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => bail!("a worker panicked"),
        }
    }
    let read_wall = t_read.elapsed();
    let mut users = Vec::new();
    let (mut wbytes, mut rbytes) = (0u64, 0u64);
    let (mut wf_all, mut rf_all) = (Vec::new(), Vec::new());
    for (user, w, r) in results {
        let ((wf, direct), rf) = match (w, r) {
            (Ok(w), Ok(r)) => (w, r),
            (Err(e), _) | (_, Err(e)) => bail!("{user}: {e:#}"),
        };
        wbytes += wf.lat.len() as u64 * frame;
        rbytes += rf.lat.len() as u64 * frame;
        users.push(UserResult {
            user,
            frames: wf.lat.len() as u64,
            direct_io: direct,
            write: pass(frame, &wf.lat),
            read: pass(frame, &rf.lat),
        });
        wf_all.push(wf);
        rf_all.push(rf);
    }
    let all = Aggregate {
        write_mb_s: wbytes as f64 / write_wall.as_secs_f64().max(1e-6) / 1e6,
        read_mb_s: rbytes as f64 / read_wall.as_secs_f64().max(1e-6) / 1e6,
    };
    Ok(Side {
        users,
        all,
        write_per_s: per_second(t_write, &wf_all.iter().collect::<Vec<_>>(), frame),
        read_per_s: per_second(t_read, &rf_all.iter().collect::<Vec<_>>(), frame),
    })
}

pub fn aja_many(o: &ManyOpts<'_>) -> Result<()> {
    let cfg: AjaConfig = find_config(o.config)?;
    let (frame, frames) = frame_geometry(&cfg, o.file_size);
    let tmp = tempfile::Builder::new()
        .prefix("markbase-test-aja-")
        .tempdir()?;
    let started = Instant::now();
    let crate::cli::selftest::bench::UsersMounted {
        data_dir,
        names,
        mounted,
    } = crate::cli::selftest::bench::mount_users(
        tmp.path(),
        o.data_dir,
        &o.users,
        o.mounts,
        o.passthrough,
    )?;
    let mount_ms = started.elapsed().as_millis();
    let dirs: Vec<PathBuf> = mounted
        .iter()
        .filter(|m| m.result.is_ok())
        .map(|m| m.mountpoint.clone())
        .collect();
    let result = (|| {
        if let Some(m) = mounted.iter().find(|m| m.result.is_err()) {
            let e = m
                .result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            bail!("mount failed: {}: {e}", m.user);
        }
        let file = format!("markbase-aja-{}.mov", std::process::id());
        let through: Vec<(String, PathBuf)> = mounted
            .iter()
            .map(|m| (m.user.clone(), m.mountpoint.join(&file)))
            .collect();
        let mut on_disk = Vec::new();
        for n in &names {
            let d = crate::cli::selftest::bench::native_dir(&Library::new(&data_dir, n)?)?;
            on_disk.push((n.clone(), d.join(&file)));
        }
        eprintln!(
            "{} users mounted in {mount_ms} ms; {} users writing and reading {} frames each through their mounts, then on the disk",
            names.len(),
            names.len(),
            frames
        );
        let mount = phase(&through, frame, frames)?;
        let disk = phase(&on_disk, frame, frames)?;
        for (_, p) in &on_disk {
            if let Some(d) = p.parent() {
                let _ = std::fs::remove_dir(d);
            }
        }
        Ok((mount, disk))
    })();
    for (d, r) in manager::unmount_many(dirs) {
        if let Err(e) = r {
            eprintln!("markbase: unmount {}: {e}", d.display());
        }
    }
    let (mount, disk) = result?;
    report(o, &cfg, frame, &mount, &disk)
}

fn report(o: &ManyOpts<'_>, cfg: &AjaConfig, frame: u64, mount: &Side, disk: &Side) -> Result<()> {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (wr, rr) = (
        ratio(mount.all.write_mb_s, disk.all.write_mb_s),
        ratio(mount.all.read_mb_s, disk.all.read_mb_s),
    );
    if let Some(path) = o.chart {
        crate::cli::selftest::bench::chart(
            path,
            &format!(
                "AJA-style {}, {} users at once, all users per second",
                cfg.name,
                mount.users.len()
            ),
            "second",
            &[
                ("mounts write", &mount.write_per_s),
                ("mounts read", &mount.read_per_s),
                ("disk write", &disk.write_per_s),
                ("disk read", &disk.read_per_s),
            ],
        )?;
    }
    if o.json {
        println!(
            "{}",
            serde_json::json!({
                "config": cfg, "file_size": o.file_size, "frame_bytes": frame,
                "mounts": mount.users.len(), "users": mount.users, "disk_users": disk.users,
                "all": {"mount": mount.all, "disk": disk.all},
                "write_ratio": wr, "read_ratio": rr, "interrupted": interrupted(),
            })
        );
        return Ok(());
    }
    println!(
        "{} ({}x{}, {}), {} users at once, frames of {} bytes, file {} MB each",
        cfg.name,
        cfg.width,
        cfg.height,
        cfg.codec,
        mount.users.len(),
        cfg.frame_bytes,
        o.file_size / 1_000_000
    );
    println!(
        "{:<12} {:>9} {:>7} {:>8} {:>9} {:>7} {:>8}  sustains write/read (fps)",
        "user", "write MB/s", "fps", "p99 ms", "read MB/s", "fps", "p99 ms"
    );
    let best = |p: &Pass| {
        p.sustained_fps
            .last()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "none".into())
    };
    for u in &mount.users {
        println!(
            "{:<12} {:>9.0} {:>7.1} {:>8.2} {:>9.0} {:>7.1} {:>8.2}  {}/{}",
            u.user,
            u.write.mb_s,
            u.write.fps,
            u.write.latency_ms_p99,
            u.read.mb_s,
            u.read.fps,
            u.read.latency_ms_p99,
            best(&u.write),
            best(&u.read)
        );
    }
    println!(
        "all {} users: through their mounts write {:.0} MB/s, read {:.0} MB/s; on the disk write {:.0} MB/s, read {:.0} MB/s",
        mount.users.len(),
        mount.all.write_mb_s,
        mount.all.read_mb_s,
        disk.all.write_mb_s,
        disk.all.read_mb_s
    );
    println!("ratio mounts/disk: write {wr:.2}x, read {rr:.2}x");
    Ok(())
}
