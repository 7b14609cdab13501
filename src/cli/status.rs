//! What `markbase fuse --status` and `--stats` print: the table of every
//! mount, one mount's counters, and `--status --watch`, the table
//! refreshed with rates between refreshes (as `juicefs stats` and `iostat`
//! show theirs).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use markbase::manage::manager::{self, MountStatus};

/// What a row's rates are computed from.
#[derive(Clone, Copy, Default)]
struct Seen {
    read: u64,
    written: u64,
    requests: u64,
}

fn seen(s: &MountStatus) -> Seen {
    Seen {
        read: s.bytes_read.unwrap_or(0),
        written: s.bytes_written.unwrap_or(0),
        requests: s.requests.unwrap_or(0),
    }
}

/// One refresh as text: rates over `dt` against `before`.
fn table(now: &[MountStatus], before: &HashMap<PathBuf, Seen>, dt: f64) -> String {
    let mut out = format!(
        "{:<12} {:<32} {:<13} {:>9} {:>9} {:>9} {:>6} {:>8}\n",
        "user", "mountpoint", "state", "MB/s in", "MB/s out", "ops/s", "open", "errors"
    );
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt.max(1e-3);
    for s in now {
        let (cur, prev) = (seen(s), before.get(&s.mountpoint).copied());
        let (mb_in, mb_out, ops) = match prev {
            Some(p) => (
                format!("{:.1}", rate(cur.written, p.written) / 1e6),
                format!("{:.1}", rate(cur.read, p.read) / 1e6),
                format!("{:.0}", rate(cur.requests, p.requests)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:<12} {:<32} {:<13} {:>9} {:>9} {:>9} {:>6} {:>8}\n",
            s.user,
            s.mountpoint.display(),
            s.state,
            mb_in,
            mb_out,
            ops,
            s.open_files
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            s.errors
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    if now.is_empty() {
        out.push_str("(no MarkBase mounts)\n");
    }
    out
}

/// Refresh every `interval` until Ctrl-C, or `count` times (0: forever).
/// On a terminal the screen is redrawn; piped, each table follows the last.
pub fn watch(interval: Duration, count: u64) -> Result<()> {
    let term = std::io::stdout().is_terminal();
    let mut before: HashMap<PathBuf, Seen> = HashMap::new();
    let mut last = Instant::now();
    let mut n = 0u64;
    loop {
        let now = manager::status();
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let text = table(&now, &before, dt);
        let mut out = std::io::stdout().lock();
        if term {
            // Home and clear, then the table.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        writeln!(
            out,
            "markbase: every {:.1} s (MB/s in and out count I/O through the daemon; passthrough I/O goes kernel to disk)",
            interval.as_secs_f64()
        )?;
        write!(out, "{text}")?;
        if !term {
            writeln!(out)?;
        }
        out.flush()?;
        before = now
            .iter()
            .map(|s| (s.mountpoint.clone(), seen(s)))
            .collect();
        n += 1;
        if count != 0 && n >= count {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// `markbase fuse --status`: every mount of this machine.
pub fn print_status(json: bool) -> Result<()> {
    let st = manager::status();
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        println!(
            "{:<12} {:<32} {:>8} {:<13} {:<11} {:>9} {:>5} {:>12} {:>12} {:>6} {:>7}  address",
            "user",
            "mountpoint",
            "pid",
            "state",
            "backend",
            "uptime s",
            "open",
            "read B",
            "written B",
            "cache",
            "no-SQL",
        );
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let pct = |r: Option<f64>| {
            r.map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into())
        };
        for s in st {
            println!(
                "{:<12} {:<32} {:>8} {:<13} {:<11} {:>9} {:>5} {:>12} {:>12} {:>6} {:>7}  {}",
                s.user,
                s.mountpoint.display(),
                opt(s.pid.map(u64::from)),
                s.state,
                s.backend,
                s.uptime_s,
                opt(s.open_files),
                opt(s.bytes_read),
                opt(s.bytes_written),
                pct(s.cache_hit_rate),
                pct(s.answered_in_memory),
                s.address.as_deref().unwrap_or("-")
            );
        }
        println!(
            "(cache: hits of the daemon's own caches, which see mostly first visits: the kernel answers repeats itself; no-SQL: requests answered without a catalog query)"
        );
    }
    Ok(())
}

/// `markbase fuse --stats --dir D`: one mount's counters.
pub fn print_stats(dir: &std::path::Path, json_out: bool) -> Result<()> {
    let json = markbase::manage::mount::read_stats(dir)?;
    if json_out {
        println!("{json}");
    } else {
        let v: serde_json::Value = serde_json::from_str(&json)?;
        if let Some(o) = v.as_object() {
            for (k, v) in o.iter().filter(|(_, v)| !v.is_object()) {
                println!("{k:>16}  {v}");
            }
        }
        let s: markbase::fs::Stats = serde_json::from_value(v)?;
        let r = &s.requests;
        println!(
            "{:>16}  {} ({:.0}% answered without a catalog query)",
            "requests",
            r.total,
            100.0 * r.without_catalog_share()
        );
        for (op, o) in &r.ops {
            println!(
                "{op:>16}  {} (mean {:.0} us)",
                o.count,
                o.seconds * 1e6 / o.count.max(1) as f64
            );
        }
        for (errno, n) in &r.errors {
            println!("{errno:>16}  {n} failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_over_the_interval() {
        let row = |read, req| MountStatus {
            user: "ed".into(),
            mountpoint: "/mnt/MarkBase_ed".into(),
            pid: Some(1),
            state: "mounted".into(),
            backend: "kernel".into(),
            uptime_s: 1,
            open_files: Some(2),
            bytes_read: Some(read),
            bytes_written: Some(0),
            cache_hit_rate: None,
            answered_in_memory: None,
            requests: Some(req),
            errors: Some(0),
            address: None,
        };
        let first = table(&[row(0, 0)], &HashMap::new(), 1.0);
        assert!(first.lines().nth(1).is_some_and(|l| l.contains(" - ")));
        let before = [(PathBuf::from("/mnt/MarkBase_ed"), seen(&row(0, 0)))].into();
        let t = table(&[row(4_000_000, 500)], &before, 2.0);
        let line = t.lines().nth(1).unwrap_or_default();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[3..8], &["0.0", "2.0", "250", "2", "0"], "{t}");
    }
}
