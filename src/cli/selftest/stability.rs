//! `markbase fuse --test --stability`: many users, mixed work, every byte checked.
//!
//! Ten demo libraries (or the users named) are mounted, each by its own daemon,
//! and one worker per mount runs a mixed workload until the duration is up:
//! large sequential writes (fsynced) and reads, small-file churn (create,
//! read back, delete), renames and directory listings. Every byte read is
//! compared with what was written (content is a pure function of a seed and
//! the offset, so nothing is kept in memory), every listing with the worker's
//! own model of its folder. Once per interval (a minute on runs of ten minutes
//! and more) the run samples throughput and the daemons' resident memory; at
//! the end it prints errors (which must be 0), operations, bytes verified,
//! the two series and whether memory stayed flat: judged on runs of ten
//! minutes and more, over the last third of the intervals, once the daemons'
//! caches have filled to their caps (printed beside the verdict), so caches
//! warming up early in a run do not read as a leak, and growth that goes on
//! to the end does, slow growth too (its trend, carried over the run's
//! length, must stay within 10%).
//!
//! The workers are [`Folder`]s: a FUSE mount's folder, a folder on an NFS
//! server through `nfs3_client` (`stability_nfs`), the same through a QEMU
//! guest's kernel NFS client (`stability_guest`, which runs this soak in the
//! guest with `--on`), or folders mounted by something else (`--on`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use markbase::manage::manager;
use serde::{Deserialize, Serialize};

/// Options of a stability run.
pub struct StabilityOpts<'a> {
    pub data_dir: &'a Path,
    /// Users to mount from `data_dir`; none: make `users` demo libraries.
    pub names: Vec<String>,
    pub users: usize,
    pub duration: Duration,
    pub passthrough: bool,
    /// Soak these folders, mounted by something else, instead: nothing is
    /// mounted or served, and no memory is sampled.
    pub on: Vec<PathBuf>,
    /// Through the built-in NFS server (one per user, each worker a client
    /// of its own) instead of FUSE mounts.
    pub nfs: bool,
    /// With `nfs`: the clients are a QEMU guest's kernel NFS client
    /// (`stability_guest`), not `nfs3_client` in this process.
    pub kernel_client: bool,
    pub json: bool,
    pub chart: Option<&'a Path>,
}

/// `30s`, `10m`, `24h`, `90` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("duration {s:?}: use s, m or h (30s, 10m, 24h)"),
    };
    Ok(Duration::from_secs(secs))
}

const BIG: u64 = 16 << 20;
pub const BLOCK: usize = 1 << 20;
const SMALL: usize = 4096;

/// The byte stream of file `seed`: 8-byte words of a splitmix of seed and offset.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    debug_assert!(offset.is_multiple_of(8));
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut z = seed ^ (offset / 8 + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let b = z.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

#[derive(Default)]
struct Totals {
    ops: AtomicU64,
    errors: AtomicU64,
    written: AtomicU64,
    read: AtomicU64,
    verified: AtomicU64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where a worker's files are: a folder of a mount ([`LocalFolder`]), or a
/// folder on an NFS server reached by a client of the worker's own
/// (`stability_nfs::NfsFolder`). Names are relative to the worker's folder,
/// at most one folder deep (`churn/s1.txt`). File content is
/// [`fill`]`(seed, offset)`, so nothing written is kept in memory.
pub trait Folder: Send {
    /// Make `name` (replacing it) with `len` bytes of `seed`'s content; with
    /// `durable`, data and size survive a crash before it returns.
    fn write_new(&mut self, name: &str, len: u64, seed: u64, durable: bool) -> Result<()>;
    /// Read `name` whole, checking its size is `len` and every byte is
    /// `seed`'s; calls `read(n)` after each block of `n` bytes checked.
    fn read_check(&mut self, name: &str, len: u64, seed: u64, read: &dyn Fn(u64)) -> Result<()>;
    fn remove(&mut self, name: &str) -> Result<()>;
    fn rename(&mut self, from: &str, to: &str) -> Result<()>;
    /// The names in `dir` (`""`: the worker's folder).
    fn names(&mut self, dir: &str) -> Result<Vec<String>>;
    /// Make `dir` unless it is there.
    fn mkdir(&mut self, dir: &str) -> Result<()>;
    /// Remove the worker's folder and everything in it.
    fn remove_all(&mut self) -> Result<()>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// Content blocks of `len` bytes of `seed` from offset 0, in [`BLOCK`]s.
pub fn blocks(len: u64) -> impl Iterator<Item = (u64, usize)> {
    (0..len.div_ceil(BLOCK as u64)).map(move |b| {
        let off = b * BLOCK as u64;
        (off, (len - off).min(BLOCK as u64) as usize)
    })
}

/// A worker's folder in a mount, through the kernel like any application.
pub struct LocalFolder(PathBuf);

impl Folder for LocalFolder {
    fn write_new(&mut self, name: &str, len: u64, seed: u64, durable: bool) -> Result<()> {
        let mut f = File::create(self.0.join(name))?;
        let mut buf = vec![0u8; BLOCK];
        for (off, n) in blocks(len) {
            fill(seed, off, &mut buf[..n]);
            f.write_all(&buf[..n])?;
        }
        if durable {
            f.sync_all()?;
        }
        Ok(())
    }

    fn read_check(&mut self, name: &str, len: u64, seed: u64, read: &dyn Fn(u64)) -> Result<()> {
        let p = self.0.join(name);
        let mut f = File::open(&p)?;
        let size = f.metadata()?.len();
        if size != len {
            bail!("{}: size {size}, wrote {len}", p.display());
        }
        let (mut got, mut want) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
        for (off, n) in blocks(len) {
            f.read_exact(&mut got[..n])?;
            fill(seed, off, &mut want[..n]);
            if got[..n] != want[..n] {
                bail!("{}: bytes differ in the block at {off}", p.display());
            }
            read(n as u64);
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        Ok(fs::remove_file(self.0.join(name))?)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        Ok(fs::rename(self.0.join(from), self.0.join(to))?)
    }

    fn names(&mut self, dir: &str) -> Result<Vec<String>> {
        if dir.is_empty() {
            // The mount's root too, as a browser goes up and down.
            if let Some(root) = self.0.parent() {
                fs::read_dir(root)?.count();
            }
        }
        fs::read_dir(self.0.join(dir))?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn mkdir(&mut self, dir: &str) -> Result<()> {
        let p = self.0.join(dir);
        fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))
    }

    fn remove_all(&mut self) -> Result<()> {
        Ok(fs::remove_dir_all(&self.0)?)
    }

    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// One worker's folder, and what it believes is in it.
struct Worker {
    folder: Box<dyn Folder>,
    files: BTreeMap<String, u64>, // name -> seed (each BIG bytes)
    rng: Rng,
    seq: u64,
    totals: Arc<Totals>,
}

impl Worker {
    fn write_big(&mut self) -> Result<()> {
        self.seq += 1;
        let seed = self.rng.next();
        let name = format!("clip-{:06}.mov", self.seq);
        self.folder.write_new(&name, BIG, seed, true)?;
        self.totals.written.fetch_add(BIG, Relaxed);
        self.files.insert(name, seed);
        if self.files.len() > 4 {
            let oldest = self.files.keys().next().cloned().unwrap_or_default();
            self.folder.remove(&oldest)?;
            self.files.remove(&oldest);
        }
        Ok(())
    }

    fn pick(&mut self) -> Option<(String, u64)> {
        if self.files.is_empty() {
            return None;
        }
        let i = self.rng.below(self.files.len() as u64) as usize;
        self.files.iter().nth(i).map(|(n, s)| (n.clone(), *s))
    }

    fn read_big(&mut self) -> Result<()> {
        let Some((name, seed)) = self.pick() else {
            return self.write_big();
        };
        let totals = self.totals.clone();
        self.folder.read_check(&name, BIG, seed, &|n| {
            totals.read.fetch_add(n, Relaxed);
            totals.verified.fetch_add(n, Relaxed);
        })
    }

    fn churn(&mut self) -> Result<()> {
        self.folder.mkdir("churn")?;
        let base = self.rng.next();
        for i in 0..20u64 {
            let name = format!("churn/s{i}.txt");
            self.folder
                .write_new(&name, SMALL as u64, base + i, false)?;
        }
        let names = self.folder.names("churn")?;
        if names.len() != 20 {
            bail!(
                "{}/churn: {} entries after 20 creates",
                self.folder.describe(),
                names.len()
            );
        }
        for i in 0..20u64 {
            let name = format!("churn/s{i}.txt");
            let totals = self.totals.clone();
            self.folder
                .read_check(&name, SMALL as u64, base + i, &|n| {
                    totals.verified.fetch_add(n, Relaxed);
                })?;
        }
        for i in 0..20u64 {
            self.folder.remove(&format!("churn/s{i}.txt"))?;
        }
        Ok(())
    }

    fn rename(&mut self) -> Result<()> {
        let Some((name, seed)) = self.pick() else {
            return Ok(());
        };
        self.seq += 1;
        let to = format!("clip-{:06}.mov", self.seq);
        self.folder.rename(&name, &to)?;
        self.files.remove(&name);
        self.files.insert(to, seed);
        Ok(())
    }

    fn list(&mut self) -> Result<()> {
        let mut seen = self.folder.names("")?;
        seen.retain(|n| n != "churn");
        seen.sort();
        let want: Vec<String> = self.files.keys().cloned().collect();
        if seen != want {
            bail!(
                "{}: lists {seen:?}, expected {want:?}",
                self.folder.describe()
            );
        }
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        match self.rng.below(10) {
            0..=2 => self.write_big(),
            3..=5 => self.read_big(),
            6 | 7 => self.churn(),
            8 => self.rename(),
            _ => self.list(),
        }
    }
}

/// A long run: sampled once a minute, and the shortest whose memory is
/// judged (caches fill for about as long).
const LONG_RUN: Duration = Duration::from_secs(600);

/// The memory verdict over the later part of a run.
#[derive(Debug, PartialEq)]
struct Flatness {
    flat: bool,
    intervals: usize,
    low: f64,
    high: f64,
    /// The least-squares slope over those intervals.
    mib_per_min: f64,
}

/// Flat when the daemons' memory moved less than 10% over the last third of
/// the intervals (at least 3), and its trend there (a least-squares line),
/// carried on for as long as the whole run, would move it less than 10%
/// too: by then the caches have filled to their caps, so what still grows is
/// not a cache warming up, and a slow climb that a longer run would show is
/// caught in this one. `None` for runs shorter than [`LONG_RUN`]: caches
/// fill for longer than that, and a short run's trend is their warming up.
fn memory_flat(rss_mib: &[f64], interval_s: u64) -> Option<Flatness> {
    if rss_mib.len() < 3 || (rss_mib.len() as u64) * interval_s < LONG_RUN.as_secs() {
        return None;
    }
    let tail = &rss_mib[rss_mib.len() - (rss_mib.len() / 3).max(3)..];
    let low = tail.iter().copied().fold(f64::INFINITY, f64::min);
    let high = tail.iter().copied().fold(0.0, f64::max);
    let n = tail.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = tail.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in tail.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let per_interval = sxy / sxx;
    let trend = per_interval * rss_mib.len() as f64;
    Some(Flatness {
        flat: high - low <= low * 0.10 && trend <= low * 0.10,
        intervals: tail.len(),
        low,
        high,
        mib_per_min: per_interval * 60.0 / interval_s.max(1) as f64,
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(o: &StabilityOpts<'_>) -> Result<()> {
    let worker_dir = format!("stability-{}", std::process::id());
    if !o.on.is_empty() {
        let folders =
            o.on.iter()
                .map(|d| Box::new(LocalFolder(d.join(&worker_dir))) as Box<dyn Folder>)
                .collect();
        return report(o, drive(o, folders, &[], "folders")?);
    }
    let tmp = tempfile::Builder::new()
        .prefix("markbase-stability-")
        .tempdir()?;
    if o.nfs && o.kernel_client {
        return report(
            o,
            crate::cli::selftest::stability_guest::run(o, tmp.path())?,
        );
    }
    if o.nfs {
        let served = crate::cli::selftest::stability_nfs::serve_users(
            tmp.path(),
            o.data_dir,
            &o.names,
            o.users,
        )?;
        let mut folders: Vec<Box<dyn Folder>> = Vec::new();
        for s in &served {
            folders.push(Box::new(
                crate::cli::selftest::stability_nfs::NfsFolder::new(s.addr, &worker_dir)?,
            ));
        }
        let pids: Vec<u32> = served.iter().map(|s| s.pid()).collect();
        return report(o, drive(o, folders, &pids, "NFS servers")?);
    }
    let users = crate::cli::selftest::bench::mount_users(
        tmp.path(),
        o.data_dir,
        &o.names,
        o.users,
        o.passthrough,
    )?;
    let mounted = users.mounted;
    let mut dirs = Vec::new();
    let mut pids = Vec::new();
    let mut failed = None;
    for m in &mounted {
        match &m.result {
            Ok(pid) => {
                dirs.push(m.mountpoint.clone());
                pids.push(*pid);
            }
            Err(e) => failed = Some(format!("{}: {e}", m.user)),
        }
    }
    let result = match failed {
        Some(f) => Err(anyhow::anyhow!("mount failed: {f}")),
        None => {
            let folders = dirs
                .iter()
                .map(|d| Box::new(LocalFolder(d.join(&worker_dir))) as Box<dyn Folder>)
                .collect();
            drive(o, folders, &pids, "mounts")
        }
    };
    for (d, r) in manager::unmount_many(dirs) {
        if let Err(e) = r {
            eprintln!("markbase: unmount {}: {e}", d.display());
        }
    }
    report(o, result?)
}

/// What a run found: the report's figures, and its JSON as printed.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Summary {
    pub mounts: usize,
    pub through: String,
    pub duration_s: u64,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub interval_s: u64,
    pub errors: u64,
    pub operations: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub bytes_verified: u64,
    /// The daemons' resident memory at the end of each interval (empty
    /// when none was sampled, as with `--on`).
    pub rss_mib: Vec<f64>,
    pub mb_per_s: Vec<f64>,
    #[serde(default)]
    pub memory_flat: Option<bool>,
}

/// The sampling interval of a run of `duration`: a minute on runs of ten
/// minutes and more, a tenth of the run otherwise.
pub fn interval_of(duration: Duration) -> Duration {
    if duration >= LONG_RUN {
        Duration::from_secs(60)
    } else {
        (duration / 10).max(Duration::from_secs(1))
    }
}

/// What [`watch`] samples at each interval's end.
pub struct Sample {
    /// Bytes written and read so far (`None`: not known here).
    pub bytes: Option<u64>,
    pub errors: u64,
}

/// Sample `pids`' memory and `sample()`'s throughput once per interval for
/// `o.duration`, or until `done()` or an interrupt; with a progress line.
/// The memory series, the throughput series, and the time it took.
pub fn watch(
    o: &StabilityOpts<'_>,
    pids: &[u32],
    mut sample: impl FnMut() -> Sample,
    mut done: impl FnMut() -> bool,
) -> (Vec<f64>, Vec<f64>, Duration) {
    let interval = interval_of(o.duration);
    let pb = crate::cli::selftest::bench::progress(o.duration.as_secs(), "stability");
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} s  {prefix}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (mut rss_mib, mut mb_per_s) = (Vec::new(), Vec::new());
    let mut last_bytes = 0u64;
    let mut next = start + interval;
    let mut last_mark = start;
    loop {
        std::thread::sleep(
            Duration::from_millis(250).min(o.duration.saturating_sub(start.elapsed())),
        );
        // Interrupted or done: the interval so far is the last one.
        let stopped = crate::cli::interrupt::interrupted() || done();
        let over = start.elapsed() >= o.duration;
        pb.set_position(start.elapsed().as_secs().min(o.duration.as_secs()));
        if Instant::now() >= next || over || stopped {
            let s = sample();
            let secs = last_mark.elapsed().as_secs_f64().max(1e-3);
            last_mark = Instant::now();
            if let Some(bytes) = s.bytes {
                mb_per_s.push(bytes.saturating_sub(last_bytes) as f64 / 1e6 / secs);
                last_bytes = bytes;
            }
            let rss: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
            if !pids.is_empty() {
                rss_mib.push(rss as f64 / 1024.0);
            }
            pb.set_prefix(format!(
                "{}daemons {:.0} MiB, {} errors",
                mb_per_s
                    .last()
                    .filter(|_| s.bytes.is_some())
                    .map(|m| format!("{m:.0} MB/s, "))
                    .unwrap_or_default(),
                rss as f64 / 1024.0,
                s.errors
            ));
            next += interval;
        }
        if over || stopped {
            break;
        }
    }
    pb.finish_and_clear();
    (rss_mib, mb_per_s, start.elapsed())
}

/// Run one worker per folder for the duration; `pids` are the daemons whose
/// memory is sampled, `what` what they serve through (for the report).
fn drive(
    o: &StabilityOpts<'_>,
    folders: Vec<Box<dyn Folder>>,
    pids: &[u32],
    what: &str,
) -> Result<Summary> {
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let count = folders.len();
    let mut workers = Vec::new();
    for (i, mut folder) in folders.into_iter().enumerate() {
        folder.mkdir("")?;
        let mut w = Worker {
            folder,
            files: BTreeMap::new(),
            rng: Rng(0x2545_F491_4F6C_DD1D ^ ((i as u64 + 1) << 32)),
            seq: 0,
            totals: totals.clone(),
        };
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                w.totals.ops.fetch_add(1, Relaxed);
                if let Err(e) = w.step() {
                    let n = w.totals.errors.fetch_add(1, Relaxed);
                    if n < 20 {
                        eprintln!("markbase: stability error: {e:#}");
                    }
                }
            }
            if let Err(e) = w.folder.remove_all() {
                eprintln!("markbase: removing {}: {e:#}", w.folder.describe());
            }
        }));
    }
    let (rss_mib, mb_per_s, elapsed) = watch(
        o,
        pids,
        || Sample {
            bytes: Some(totals.written.load(Relaxed) + totals.read.load(Relaxed)),
            errors: totals.errors.load(Relaxed),
        },
        || false,
    );
    stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
    Ok(Summary {
        mounts: count,
        through: what.into(),
        duration_s: o.duration.as_secs(),
        elapsed_s: elapsed.as_secs_f64(),
        interrupted: crate::cli::interrupt::interrupted(),
        interval_s: interval_of(o.duration).as_secs(),
        errors: totals.errors.load(Relaxed),
        operations: totals.ops.load(Relaxed),
        bytes_written: totals.written.load(Relaxed),
        bytes_read: totals.read.load(Relaxed),
        bytes_verified: totals.verified.load(Relaxed),
        rss_mib,
        mb_per_s,
        memory_flat: None,
    })
}

/// Print `s` (a table, or JSON), draw its chart when asked; an error when
/// the run had any.
fn report(o: &StabilityOpts<'_>, mut s: Summary) -> Result<()> {
    let flat = memory_flat(&s.rss_mib, s.interval_s);
    s.memory_flat = flat.as_ref().map(|f| f.flat);
    let (what, errors) = (s.through.clone(), s.errors);
    if let Some(path) = o.chart {
        crate::cli::selftest::bench::chart_with(
            path,
            &format!(
                "Stability: {} {what}, {} s, {errors} errors",
                s.mounts, s.duration_s
            ),
            &format!("interval ({} s)", s.interval_s),
            "MB/s; MiB",
            &[
                ("throughput MB/s", &s.mb_per_s),
                ("daemons' memory MiB", &s.rss_mib),
            ],
        )?;
    }
    if o.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "{} {what}, {} s: {errors} errors, {} operations, {:.1} GB verified",
            s.mounts,
            s.duration_s,
            s.operations,
            s.bytes_verified as f64 / 1e9
        );
        println!("{:>10} {:>10} {:>16}", "interval", "MB/s", "daemons' MiB");
        let cell = |v: Option<&f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        for i in 0..s.mb_per_s.len().max(s.rss_mib.len()) {
            println!(
                "{:>10} {:>10} {:>16}",
                i + 1,
                cell(s.mb_per_s.get(i), 0),
                cell(s.rss_mib.get(i), 1)
            );
        }
        match &flat {
            Some(f) => println!(
                "memory {} over the last {} intervals ({:.1}-{:.1} MiB, {:+.2} MiB a minute; \
                 flat: within 10%, and would stay so for the run's whole length)",
                if f.flat { "flat" } else { "NOT flat" },
                f.intervals,
                f.low,
                f.high,
                f.mib_per_min
            ),
            None if s.rss_mib.is_empty() => println!("memory not sampled"),
            None => println!(
                "memory not judged: runs of {} minutes and more are",
                LONG_RUN.as_secs() / 60
            ),
        }
        let caps = markbase::fs::FsConfig::default();
        if !s.rss_mib.is_empty() {
            println!(
                "each daemon's caches are capped at {} records, {} content paths, {} listings, {} NFS leases",
                caps.attr_entries,
                caps.path_entries,
                caps.dir_entries,
                markbase::fs::MAX_LEASES
            );
        }
    }
    if errors > 0 {
        bail!("{errors} errors");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_warming_up_early_are_not_a_leak_and_late_growth_is() {
        // The 40-minute run of issue 29: 183 -> 352 MiB over 28 minutes,
        // then 352-353 MiB for 12.
        let mut warm: Vec<f64> = (0..28).map(|i| 183.0 + 6.0 * f64::from(i)).collect();
        warm.extend([352.0; 12]);
        assert!(memory_flat(&warm, 60).is_some_and(|f| f.flat && f.intervals == 13));
        let leak: Vec<f64> = (0..40).map(|i| 100.0 + 5.0 * f64::from(i)).collect();
        assert!(memory_flat(&leak, 60).is_some_and(|f| !f.flat));
        assert_eq!(memory_flat(&[1.0, 2.0], 60), None);
        assert!(memory_flat(
            &[5.0, 5.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 51.0],
            60
        )
        .is_some_and(|f| f.flat));
        // Ten intervals of 6 s: too short a run to tell a leak from a warm-up.
        assert_eq!(memory_flat(&leak[..10], 6), None);
    }

    #[test]
    fn a_slow_climb_to_the_end_is_not_flat_though_the_tail_is_within_ten_percent() {
        // The 60-minute NFS soak of issue 29: 444 -> 635 MiB, still about
        // 2 MiB a minute at the end (6% over the last 20 minutes).
        let mut climb: Vec<f64> = (0..40).map(|i| 444.0 + 3.8 * f64::from(i)).collect();
        climb.extend((0..20).map(|i| 598.0 + 2.0 * f64::from(i)));
        let f = memory_flat(&climb, 60).expect("judged");
        assert!(f.high - f.low <= f.low * 0.10, "{f:?}");
        assert!(!f.flat, "{f:?}");
        assert!((f.mib_per_min - 2.0).abs() < 0.01, "{f:?}");
        // Noise around a level is flat.
        let level: Vec<f64> = (0..60).map(|i| 600.0 + f64::from(i % 3)).collect();
        assert!(memory_flat(&level, 60).is_some_and(|f| f.flat));
    }
}
