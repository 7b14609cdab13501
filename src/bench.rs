//! `markbase fuse --test`: write then read a file through a mount and the same
//! on the backing directory, in one run, and print MB/s and the ratio.
//!
//! With no `--user`, a demo library in a temporary data directory is made,
//! mounted, used, unmounted and removed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use markbase::library::Library;
use markbase::mount::{self, MountSpec};

/// Parse "512MB", "6GB", "1GiB", "4096".
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1000,
        "KIB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MIB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GIB" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        _ => bail!("size {s:?}: unknown unit"),
    };
    Ok((n * mult as f64) as u64)
}

fn drop_cache(f: &File) {
    // SAFETY: plain advisory call on an open descriptor.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Write `size` bytes in 1 MiB blocks and fsync; then drop the page cache and read it back.
fn write_read(path: &Path, size: u64, backing: Option<&Path>) -> Result<(f64, f64)> {
    let block = vec![0x5Au8; 1 << 20];
    let t = Instant::now();
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        done += n as u64;
    }
    f.sync_all()?;
    drop(f);
    let w = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    let f = File::open(path)?;
    drop_cache(&f);
    if let Some(b) = backing {
        if let Ok(bf) = File::open(b) {
            drop_cache(&bf);
        }
    }
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, total)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let r = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    Ok((w, r))
}

struct TempMount {
    dir: PathBuf,
}

impl Drop for TempMount {
    fn drop(&mut self) {
        let _ = mount::unmount(&self.dir);
    }
}

pub fn throughput(data_dir: &Path, user: Option<&str>, size: u64, json: bool) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("markbase-test-").tempdir()?;
    let (data_dir, user) = match user {
        Some(u) => (data_dir.to_path_buf(), u.to_string()),
        None => {
            let d = tmp.path().join("data");
            Library::new(&d, "demo")?.create(true)?;
            (d, "demo".to_string())
        }
    };
    let lib = Library::new(&data_dir, &user)?;
    let mp = tmp.path().join("mnt");
    std::fs::create_dir_all(&mp)?;
    let spec = MountSpec { library: lib.clone(), mountpoint: mp.clone(), allow_other: false, threads: 4, passthrough: true };
    let args = vec![
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
        "fuse".into(),
        "--mount".into(),
        "--foreground".into(),
        "--user".into(),
        user.to_string(),
        "--dir".into(),
        mp.to_string_lossy().into_owned(),
    ];
    mount::spawn_daemon(&spec, &args)?;
    let guard = TempMount { dir: mp.clone() };
    let name = format!("markbase-test-{}.bin", std::process::id());
    let (mw, mr) = write_read(&mp.join(&name), size, None)?;
    std::fs::remove_file(mp.join(&name))?;
    let native = lib.content_dir().join(&name);
    let (nw, nr) = write_read(&native, size, None)?;
    std::fs::remove_file(&native)?;
    drop(guard);
    if json {
        println!(
            "{}",
            serde_json::json!({"size": size, "mount_write_mb_s": mw, "mount_read_mb_s": mr,
                "native_write_mb_s": nw, "native_read_mb_s": nr, "write_ratio": mw / nw, "read_ratio": mr / nr})
        );
    } else {
        println!("{:<8} {:>12} {:>12} {:>8}", "", "mount MB/s", "native MB/s", "ratio");
        println!("{:<8} {:>12.0} {:>12.0} {:>7.2}x", "write", mw, nw, mw / nw);
        println!("{:<8} {:>12.0} {:>12.0} {:>7.2}x", "read", mr, nr, mr / nr);
    }
    Ok(())
}
