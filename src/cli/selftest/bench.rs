//! `markbase fuse --test`: the built-in tests that prove the data path, each
//! run through a mount *and* on the backing directory (the content store's
//! disk) in the same run, so that the ratio is what matters.
//!
//! * plain: write a file in 1 MiB blocks, fsync, drop its pages, read it back;
//! * `--aja`: like AJA System Test, write a file frame by frame with the frame
//!   size of a video format (O_DIRECT where the file system allows it), then
//!   read it back; per-frame latency, frames per second, and which frame rates
//!   it sustains with no frame late.
//!
//! With no `--user`, a demo library is made in a temporary data directory,
//! mounted, used, unmounted and removed.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use markbase::library::Library;
use markbase::manage::mount::{self, MountSpec};

use crate::cli::interrupt::interrupted;

/// Parse "512MB", "6GB", "1GiB", "4096".
pub fn parse_size(s: &str) -> Result<u64> {
    markbase::config::parse_size(s).map_err(anyhow::Error::msg)
}

// ---------------------------------------------------------------- setup

/// A library mounted for a test, and its backing directory; cleaned up on drop.
pub struct TestMount {
    pub mountpoint: PathBuf,
    pub backing: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Err(e) = mount::unmount(&self.mountpoint) {
            eprintln!("markbase: unmount {}: {e}", self.mountpoint.display());
        }
    }
}

/// Mount `user`'s library from `data_dir`, or a new demo library when `user` is None.
pub fn test_mount(data_dir: &Path, user: Option<&str>, passthrough: bool) -> Result<TestMount> {
    let (tmp, lib) = test_library(data_dir, user)?;
    let mp = tmp.path().join("mnt");
    std::fs::create_dir_all(&mp)?;
    let spec = MountSpec {
        library: lib.clone(),
        mountpoint: mp.clone(),
        allow_other: false,
        threads: 4,
        passthrough,
        backend: None,
        metrics: None,
    };
    mount::spawn_daemon(&spec)?;
    let backing = native_dir(&lib)?;
    Ok(TestMount {
        mountpoint: mp,
        backing,
        _tmp: tmp,
    })
}

/// The folder on the content store's disk where a test does the same work
/// directly, beside the library's own content files (made if missing).
pub(crate) fn native_dir(lib: &Library) -> Result<PathBuf> {
    let d = lib.content_dir().join("markbase-test-native");
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Several users mounted at once for a test, each by its own daemon.
pub(crate) struct UsersMounted {
    pub(crate) data_dir: PathBuf,
    pub(crate) names: Vec<String>,
    pub(crate) mounted: Vec<markbase::manage::manager::Mounted>,
}

/// `names` of `data_dir`, or with no names `count` new demo users
/// (`user1`...) made in `tmp/data`: the data directory and the users.
pub(crate) fn users_or_demos(
    tmp: &Path,
    data_dir: &Path,
    names: &[String],
    count: usize,
) -> Result<(PathBuf, Vec<String>)> {
    if !names.is_empty() {
        return Ok((data_dir.to_path_buf(), names.to_vec()));
    }
    let d = tmp.join("data");
    let names: Vec<String> = (1..=count.max(1)).map(|i| format!("user{i}")).collect();
    for n in &names {
        Library::new(&d, n)?.create(true)?;
    }
    Ok((d, names))
}

/// Mount `names` of `data_dir`, or with no names `count` new demo users
/// made in `tmp`, each at `tmp/mnt/MarkBase_<user>`, in parallel.
pub(crate) fn mount_users(
    tmp: &Path,
    data_dir: &Path,
    names: &[String],
    count: usize,
    passthrough: bool,
) -> Result<UsersMounted> {
    let (data_dir, names) = users_or_demos(tmp, data_dir, names, count)?;
    let base = tmp.join("mnt");
    let mut specs = Vec::new();
    for n in &names {
        specs.push(MountSpec {
            library: Library::new(&data_dir, n)?,
            mountpoint: markbase::manage::manager::mountpoint_for(&base, n),
            allow_other: false,
            threads: 4,
            passthrough,
            backend: None,
            metrics: None,
        });
    }
    let mounted = markbase::manage::manager::mount_many(specs);
    Ok(UsersMounted {
        data_dir,
        names,
        mounted,
    })
}

/// `user`'s library in `data_dir`, or with no `user` a new demo library in
/// the returned temporary directory (removed when it is dropped).
pub fn test_library(data_dir: &Path, user: Option<&str>) -> Result<(tempfile::TempDir, Library)> {
    let tmp = tempfile::Builder::new()
        .prefix("markbase-test-")
        .tempdir()?;
    let lib = match user {
        Some(u) => Library::new(data_dir, u)?,
        None => {
            let lib = Library::new(&tmp.path().join("data"), "demo")?;
            lib.create(true)?;
            lib
        }
    };
    Ok((tmp, lib))
}

pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Read from the disk, not from memory: drop `f`'s cached pages, and (as
/// root) every clean cached page, since through a passthrough mount the
/// pages that matter are the content file's, which `f` cannot reach.
pub(crate) fn drop_pages(f: &File) {
    #[cfg(target_os = "linux")]
    let _ = nix::fcntl::posix_fadvise(f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    #[cfg(target_os = "macos")]
    no_cache(f);
    nix::unistd::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
}

/// A buffer aligned for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Result<Aligned> {
        let layout = Layout::from_size_align(len.max(4096), 4096)?;
        // SAFETY: non-zero size, valid alignment.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            bail!("out of memory for a {len}-byte frame buffer");
        }
        Ok(Aligned { ptr, layout })
    }
    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

// ---------------------------------------------------------------- plain throughput

#[derive(Serialize)]
pub(crate) struct Throughput {
    target: String,
    pub(crate) write_mb_s: f64,
    pub(crate) read_mb_s: f64,
    per_second_write_mb_s: Vec<f64>,
    per_second_read_mb_s: Vec<f64>,
}

/// Write `size` bytes to `path` in 1 MiB blocks, fsync, drop the pages,
/// read it back; MB/s each way (and per second).
pub(crate) fn write_read(target: &str, path: &Path, size: u64) -> Result<Throughput> {
    let block = vec![0x5Au8; 1 << 20];
    let pb = progress(size, &format!("{target} write"));
    let t = Instant::now();
    let mut per_s = vec![];
    let mut mark = (Instant::now(), 0u64);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let mut done = 0u64;
    while done < size && !interrupted() {
        let n = (size - done).min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        done += n as u64;
        pb.set_position(done);
        if mark.0.elapsed() >= Duration::from_secs(1) {
            per_s.push((done - mark.1) as f64 / mark.0.elapsed().as_secs_f64() / 1e6);
            mark = (Instant::now(), done);
        }
    }
    f.sync_all()?;
    drop(f);
    pb.finish_and_clear();
    let w = done as f64 / t.elapsed().as_secs_f64() / 1e6;
    let f = File::open(path)?;
    drop_pages(&f);
    let pb = progress(size, &format!("{target} read"));
    let mut per_s_r = vec![];
    let mut mark = (Instant::now(), 0u64);
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while !interrupted() {
        let n = f.read_at(&mut buf, total)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        pb.set_position(total);
        if mark.0.elapsed() >= Duration::from_secs(1) {
            per_s_r.push((total - mark.1) as f64 / mark.0.elapsed().as_secs_f64() / 1e6);
            mark = (Instant::now(), total);
        }
    }
    pb.finish_and_clear();
    let r = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(path)?;
    Ok(Throughput {
        target: target.into(),
        write_mb_s: w,
        read_mb_s: r,
        per_second_write_mb_s: per_s,
        per_second_read_mb_s: per_s_r,
    })
}

pub struct TestOpts<'a> {
    pub data_dir: &'a Path,
    pub user: Option<&'a str>,
    pub passthrough: bool,
    pub json: bool,
    pub chart: Option<&'a Path>,
}

pub fn throughput(o: &TestOpts<'_>, size: u64) -> Result<()> {
    let m = test_mount(o.data_dir, o.user, o.passthrough)?;
    let name = format!("markbase-test-{}.bin", std::process::id());
    let mount = write_read("mount", &m.mountpoint.join(&name), size)?;
    let disk = write_read("disk", &m.backing.join(&name), size)?;
    drop(m);
    if let Some(path) = o.chart {
        chart(
            path,
            &format!("Sequential 1 MiB blocks, {} MB", size / 1_000_000),
            "second",
            &[
                ("mount write", &mount.per_second_write_mb_s),
                ("mount read", &mount.per_second_read_mb_s),
                ("disk write", &disk.per_second_write_mb_s),
                ("disk read", &disk.per_second_read_mb_s),
            ],
        )?;
    }
    if o.json {
        println!(
            "{}",
            serde_json::json!({"size": size, "mount": mount, "disk": disk,
                "write_ratio": mount.write_mb_s / disk.write_mb_s, "read_ratio": mount.read_mb_s / disk.read_mb_s})
        );
    } else {
        println!(
            "{:<8} {:>12} {:>12} {:>8}",
            "", "mount MB/s", "disk MB/s", "ratio"
        );
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>7.2}x",
            "write",
            mount.write_mb_s,
            disk.write_mb_s,
            mount.write_mb_s / disk.write_mb_s
        );
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>7.2}x",
            "read",
            mount.read_mb_s,
            disk.read_mb_s,
            mount.read_mb_s / disk.read_mb_s
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- AJA-style frames

/// A video format: frame geometry and codec, and the bytes one frame takes.
#[derive(Clone, Debug, Serialize)]
pub struct AjaConfig {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub codec: &'static str,
    pub frame_bytes: u64,
}

/// Apple ProRes target data rates at 24 fps, in Mb/s, from Apple's "Apple
/// ProRes White Paper" (January 2022), table "Target data rates" (4096x2160,
/// 3840x2160 and 1920x1080 at 24p). A frame is rate / 24 / 8 bytes.
const PRORES_24P_MBPS: &[(&str, u32, u32, &str, f64)] = &[
    ("4K_ProRes422HQ", 4096, 2160, "ProRes 422 HQ", 707.0),
    ("4K_ProRes4444", 4096, 2160, "ProRes 4444", 1061.0),
    ("4K_ProRes4444XQ", 4096, 2160, "ProRes 4444 XQ", 1591.0),
    ("UHD_ProRes422HQ", 3840, 2160, "ProRes 422 HQ", 663.0),
    ("UHD_ProRes4444", 3840, 2160, "ProRes 4444", 995.0),
    ("UHD_ProRes4444XQ", 3840, 2160, "ProRes 4444 XQ", 1493.0),
    ("1080p_ProRes422HQ", 1920, 1080, "ProRes 422 HQ", 176.0),
];

/// Uncompressed 10-bit RGB as AJA writes it: three 10-bit components packed
/// in 32 bits, 4 bytes a pixel.
const RGB10: &[(&str, u32, u32)] = &[
    ("4K_RGB10", 4096, 2160),
    ("UHD_RGB10", 3840, 2160),
    ("1080p_RGB10", 1920, 1080),
];

/// Short names: the seed's `4K_ProRes` is ProRes 4444 (its 600 MB/s target).
const ALIASES: &[(&str, &str)] = &[
    ("4K_ProRes", "4K_ProRes4444"),
    ("UHD_ProRes", "UHD_ProRes4444"),
    ("1080p_ProRes", "1080p_ProRes422HQ"),
];

pub fn aja_configs() -> Vec<AjaConfig> {
    let mut v: Vec<AjaConfig> = PRORES_24P_MBPS
        .iter()
        .map(|&(name, width, height, codec, mbps)| AjaConfig {
            name,
            width,
            height,
            codec,
            frame_bytes: (mbps * 1e6 / 24.0 / 8.0).round() as u64,
        })
        .collect();
    v.extend(RGB10.iter().map(|&(name, width, height)| AjaConfig {
        name,
        width,
        height,
        codec: "10-bit RGB uncompressed",
        frame_bytes: width as u64 * height as u64 * 4,
    }));
    v
}

pub(crate) fn find_config(name: &str) -> Result<AjaConfig> {
    let name = ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, n)| *n)
        .unwrap_or(name);
    aja_configs()
        .into_iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .with_context(|| format!("no AJA config {name:?}; `--aja --config list` lists them"))
}

pub fn print_configs() {
    println!(
        "{:<20} {:>11} {:<24} {:>12}",
        "config", "frame", "codec", "frame bytes"
    );
    for c in aja_configs() {
        println!(
            "{:<20} {:>11} {:<24} {:>12}",
            c.name,
            format!("{}x{}", c.width, c.height),
            c.codec,
            c.frame_bytes
        );
    }
    for (a, n) in ALIASES {
        println!("{a:<20} = {n}");
    }
}

const RATES: &[f64] = &[23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0];

#[derive(Serialize)]
pub(crate) struct Pass {
    pub(crate) mb_s: f64,
    pub(crate) fps: f64,
    pub(crate) latency_ms_p50: f64,
    pub(crate) latency_ms_p99: f64,
    pub(crate) latency_ms_max: f64,
    pub(crate) sustained_fps: Vec<f64>,
    #[serde(skip)]
    pub(crate) per_frame_mb_s: Vec<f64>,
}

#[derive(Serialize)]
pub(crate) struct AjaResult {
    target: String,
    direct_io: bool,
    frames: u64,
    write: Pass,
    read: Pass,
}

pub(crate) fn pass(frame_bytes: u64, lat: &[Duration]) -> Pass {
    let total: f64 = lat.iter().map(Duration::as_secs_f64).sum();
    let mut sorted: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    // Frames issued back to back: frame i is late at rate r if it completes
    // after (i + 1) / r seconds from the start.
    let mut done = 0.0;
    let finish: Vec<f64> = lat
        .iter()
        .map(|d| {
            done += d.as_secs_f64();
            done
        })
        .collect();
    let sustained = RATES
        .iter()
        .copied()
        .filter(|r| {
            finish
                .iter()
                .enumerate()
                .all(|(i, t)| *t <= (i as f64 + 1.0) / r)
        })
        .collect();
    Pass {
        mb_s: frame_bytes as f64 * lat.len() as f64 / total / 1e6,
        fps: lat.len() as f64 / total,
        latency_ms_p50: pct(0.5),
        latency_ms_p99: pct(0.99),
        latency_ms_max: sorted.last().copied().unwrap_or(0.0),
        sustained_fps: sustained,
        per_frame_mb_s: lat
            .iter()
            .map(|d| frame_bytes as f64 / d.as_secs_f64() / 1e6)
            .collect(),
    }
}

fn open_frames(path: &Path, write: bool) -> Result<(File, bool)> {
    let mut o = OpenOptions::new();
    if write {
        o.create(true).truncate(true).write(true);
    } else {
        o.read(true);
    }
    direct_open(&o, path)
}

/// Open bypassing the page cache (`O_DIRECT`), or plainly where the file
/// system refuses it; says which.
#[cfg(target_os = "linux")]
fn direct_open(o: &OpenOptions, path: &Path) -> Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((o.open(path)?, false)),
        Err(e) => Err(e.into()),
    }
}

/// macOS has no `O_DIRECT`: `F_NOCACHE` on the open file does the same.
#[cfg(target_os = "macos")]
fn direct_open(o: &OpenOptions, path: &Path) -> Result<(File, bool)> {
    let f = o.open(path)?;
    let direct = no_cache(&f);
    Ok((f, direct))
}

/// Turn the page cache off for `f` (`F_NOCACHE`, which nix lacks).
#[cfg(target_os = "macos")]
fn no_cache(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor `f` owns, with an integer argument.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_NOCACHE, 1) == 0 }
}

/// Frames of one pass: each one's latency and when it was done.
pub(crate) struct Frames {
    pub(crate) lat: Vec<Duration>,
    pub(crate) done_at: Vec<Instant>,
}

impl Frames {
    fn with_capacity(n: u64) -> Frames {
        Frames {
            lat: Vec::with_capacity(n as usize),
            done_at: Vec::with_capacity(n as usize),
        }
    }
    fn push(&mut self, t: Instant) {
        self.lat.push(t.elapsed());
        self.done_at.push(Instant::now());
    }
}

/// The frame size as written (whole and sector-aligned, as AJA does), and
/// how many of them make `file_size`.
pub(crate) fn frame_geometry(cfg: &AjaConfig, file_size: u64) -> (u64, u64) {
    let frame = cfg.frame_bytes.div_ceil(4096) * 4096;
    (frame, (file_size / frame).max(1))
}

/// Write `frames` frames of `frame` bytes to `path` (then fsync, counted in
/// the last frame's time); whether O_DIRECT was taken. Stops early when
/// interrupted.
pub(crate) fn write_frames(
    path: &Path,
    frame: u64,
    frames: u64,
    pb: &ProgressBar,
) -> Result<(Frames, bool)> {
    let mut buf = Aligned::new(frame as usize)?;
    for (i, b) in buf.slice().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let (f, direct) = open_frames(path, true)?;
    let mut w = Frames::with_capacity(frames);
    for i in (0..frames).take_while(|_| !interrupted()) {
        let t = Instant::now();
        f.write_all_at(&buf.slice()[..frame as usize], i * frame)?;
        w.push(t);
        pb.inc(frame);
    }
    let t = Instant::now();
    f.sync_all()?;
    if let (Some(last), Some(at)) = (w.lat.last_mut(), w.done_at.last_mut()) {
        *last += t.elapsed();
        *at = Instant::now();
    }
    Ok((w, direct))
}

/// Read back `frames` frames of `frame` bytes from `path`.
pub(crate) fn read_frames(
    path: &Path,
    frame: u64,
    frames: u64,
    pb: &ProgressBar,
) -> Result<Frames> {
    let mut buf = Aligned::new(frame as usize)?;
    let (f, _) = open_frames(path, false)?;
    let mut r = Frames::with_capacity(frames);
    for i in (0..frames).take_while(|_| !interrupted()) {
        let t = Instant::now();
        let s = &mut buf.slice()[..frame as usize];
        let mut got = 0;
        while got < s.len() {
            let n = f.read_at(&mut s[got..], i * frame + got as u64)?;
            if n == 0 {
                bail!("{}: short read at frame {i}", path.display());
            }
            got += n;
        }
        r.push(t);
        pb.inc(frame);
    }
    Ok(r)
}

fn aja_run(target: &str, path: &Path, cfg: &AjaConfig, file_size: u64) -> Result<AjaResult> {
    let (frame, frames) = frame_geometry(cfg, file_size);
    let pb = progress(frames * frame, &format!("{target} write"));
    let (w, direct) = write_frames(path, frame, frames, &pb)?;
    pb.finish_and_clear();
    if let Ok(f) = File::open(path) {
        drop_pages(&f);
    }
    let written = w.lat.len() as u64;
    let pb = progress(written * frame, &format!("{target} read"));
    let r = read_frames(path, frame, written, &pb)?;
    pb.finish_and_clear();
    std::fs::remove_file(path)?;
    Ok(AjaResult {
        target: target.into(),
        direct_io: direct,
        frames: written,
        write: pass(frame, &w.lat),
        read: pass(frame, &r.lat),
    })
}

pub fn aja(o: &TestOpts<'_>, config: &str, file_size: u64) -> Result<()> {
    if config == "list" {
        print_configs();
        return Ok(());
    }
    let cfg = find_config(config)?;
    let m = test_mount(o.data_dir, o.user, o.passthrough)?;
    let name = format!("markbase-aja-{}.mov", std::process::id());
    let mount = aja_run("mount", &m.mountpoint.join(&name), &cfg, file_size)?;
    let disk = aja_run("disk", &m.backing.join(&name), &cfg, file_size)?;
    drop(m);
    if let Some(path) = o.chart {
        chart(
            path,
            &format!(
                "AJA-style {} ({}x{} {}), per frame",
                cfg.name, cfg.width, cfg.height, cfg.codec
            ),
            "frame",
            &[
                ("mount write", &mount.write.per_frame_mb_s),
                ("mount read", &mount.read.per_frame_mb_s),
                ("disk write", &disk.write.per_frame_mb_s),
                ("disk read", &disk.read.per_frame_mb_s),
            ],
        )?;
    }
    if o.json {
        println!(
            "{}",
            serde_json::json!({"config": cfg, "file_size": file_size, "mount": mount, "disk": disk,
            "write_ratio": mount.write.mb_s / disk.write.mb_s, "read_ratio": mount.read.mb_s / disk.read.mb_s})
        );
        return Ok(());
    }
    println!(
        "{} ({}x{}, {}), {} frames of {} bytes, file {} MB, O_DIRECT: mount {}, disk {}",
        cfg.name,
        cfg.width,
        cfg.height,
        cfg.codec,
        mount.frames,
        cfg.frame_bytes,
        file_size / 1_000_000,
        if mount.direct_io {
            "yes"
        } else {
            "no (refused)"
        },
        if disk.direct_io {
            "yes"
        } else {
            "no (refused)"
        }
    );
    println!(
        "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9}  sustains (fps, no frame late)",
        "", "MB/s", "fps", "p50 ms", "p99 ms", "max ms"
    );
    for (label, p) in [
        ("mount write", &mount.write),
        ("disk write", &disk.write),
        ("mount read", &mount.read),
        ("disk read", &disk.read),
    ] {
        let rates: Vec<String> = p.sustained_fps.iter().map(|r| format!("{r}")).collect();
        println!(
            "{label:<12} {:>8.0} {:>8.1} {:>9.2} {:>9.2} {:>9.2}  {}",
            p.mb_s,
            p.fps,
            p.latency_ms_p50,
            p.latency_ms_p99,
            p.latency_ms_max,
            if rates.is_empty() {
                "none".into()
            } else {
                rates.join(" ")
            }
        );
    }
    println!(
        "ratio mount/disk: write {:.2}x, read {:.2}x",
        mount.write.mb_s / disk.write.mb_s,
        mount.read.mb_s / disk.read.mb_s
    );
    Ok(())
}

// ---------------------------------------------------------------- chart

/// Throughput over time, one line per series, as AJA's graph draws it.
pub fn chart(path: &Path, title: &str, x_label: &str, series: &[(&str, &Vec<f64>)]) -> Result<()> {
    chart_with(path, title, x_label, "MB/s", series)
}

/// A line chart of `series` against their index, with `y_label` on the y axis.
pub fn chart_with(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, &Vec<f64>)],
) -> Result<()> {
    use plotters::prelude::*;
    let n = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ymax = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    // The legend in a column of its own, right of the data (never on it).
    let (plot, legend) = root.split_horizontally(800);
    let mut c = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    // Frames and MB/s are whole numbers: no "20.0", no "3000.0".
    c.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    for (i, (name, v)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        c.draw_series(LineSeries::new(
            v.iter().enumerate().map(|(x, y)| (x as f64, *y)),
            color.stroke_width(2),
        ))
        .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        let y = 60 + 28 * i as i32;
        legend
            .draw(&PathElement::new(
                vec![(10, y), (40, y)],
                color.stroke_width(3),
            ))
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
        legend
            .draw(&Text::new(
                name.to_string(),
                (48, y - 8),
                ("sans-serif", 16).into_font(),
            ))
            .map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("chart: {e}"))?;
    Ok(())
}
