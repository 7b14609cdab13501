//! The runtime records of running daemons (`/run/markbase/*.json`, one per
//! mount or server), which `--status`, `--unmount` and the supervisor read,
//! and the addresses NFS servers listened on last, which outlive them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::library::Library;

/// What the runtime file of a running mount says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub user: String,
    pub mountpoint: PathBuf,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub started_unix: u64,
    pub backend: String,
    /// An NFS-mounted library's server address (`--backend nfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Where runtime records live.
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MARKBASE_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/markbase");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("markbase"),
        None => std::env::temp_dir().join(format!("markbase-{}", nix::unistd::geteuid())),
    }
}

/// A file name for what is served at `mountpoint` (a path, or an NFS
/// server's `nfs://ADDR/` name).
fn file_key(mountpoint: &Path) -> String {
    mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn record_path(mountpoint: &Path) -> PathBuf {
    runtime_dir().join(format!("{}.json", file_key(mountpoint)))
}

fn address_path(key: &Path) -> PathBuf {
    runtime_dir()
        .join("addresses")
        .join(format!("{}.addr", file_key(key)))
}

/// Where the NFS server for `key` (the folder it is mounted on, or
/// [`serve_key`]) listened last. It outlives the server and its runtime
/// record: a server started again binds the same address, so that a mount
/// the OS's client kept (hard mounts outlive their server) reaches it, and
/// its file handles still work.
pub fn last_address(key: &Path) -> Option<std::net::SocketAddr> {
    std::fs::read_to_string(address_path(key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Note where the NFS server for `key` listens ([`last_address`]).
pub fn remember_address(key: &Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let p = address_path(key);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, p)
}

/// The [`last_address`] key of `markbase nfs --serve` for a user, mounted
/// by whoever chose to (a Mac's Finder, `mount_nfs`).
pub fn serve_key(library: &Library) -> PathBuf {
    let data = library
        .data_dir
        .canonicalize()
        .unwrap_or(library.data_dir.clone());
    PathBuf::from(format!("serve:{}:{}", data.display(), library.user))
}

/// Every runtime record of this machine (running daemons, and dead ones
/// that could not remove theirs).
pub fn records() -> Vec<RuntimeRecord> {
    std::fs::read_dir(runtime_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

pub fn read_record(mountpoint: &Path) -> Option<RuntimeRecord> {
    let text = std::fs::read_to_string(record_path(mountpoint)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_record(r: &RuntimeRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(runtime_dir())?;
    let p = record_path(&r.mountpoint);
    let tmp = p.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, p)
}

pub fn remove_record(mountpoint: &Path) {
    let _ = std::fs::remove_file(record_path(mountpoint));
}

/// Is `pid` a live (not zombie) process?
pub fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
}

/// Seconds since the epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_under_the_runtime_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::env::set_var("MARKBASE_RUNTIME_DIR", dir.path());
        let mp = Path::new("/mnt/a b/c");
        let r = RuntimeRecord {
            user: "u".into(),
            mountpoint: mp.into(),
            pid: std::process::id(),
            data_dir: "/data".into(),
            started_unix: now_unix(),
            backend: "kernel".into(),
            address: None,
        };
        write_record(&r).expect("write");
        let back = read_record(mp).expect("read");
        assert_eq!((back.user.as_str(), back.pid), ("u", r.pid));
        assert!(record_path(mp).starts_with(dir.path()));
        remove_record(mp);
        assert!(read_record(mp).is_none());
        assert!(pid_alive(std::process::id()));
    }
}
