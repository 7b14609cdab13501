//! `markbase fuse --test --stability --backend nfs --client kernel`: the soak
//! through a real kernel NFS client. Each user's library is served by its
//! own `markbase nfs --serve` process on this machine, as with the default
//! client; a QEMU guest running Debian's kernel (`scripts/nfs-vm`) mounts
//! every server with the product's own Linux options and runs this binary's
//! soak on the mounts (`--on`), so the workers' writes go through the
//! kernel's write-behind, COMMIT and attribute caches as an editor's would.
//! This process samples the servers' memory per interval meanwhile; the
//! guest's report (errors, operations, bytes verified, its throughput per
//! interval) is read from its console and joined to it.
//!
//! Under software emulation (TCG, where the host's KVM is nested, as on
//! this project's machines) the guest's MB/s are the emulated CPU's: the
//! figures that matter here are errors, bytes verified and memory.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use markbase::platform::nfs_client::linux_mount_tuning;
use markbase::sync::unchecked::Mutex;

use crate::cli::selftest::stability::{watch, Sample, StabilityOpts, Summary};

/// How long the guest may take beyond the run: booting under emulation,
/// removing the workers' files, unmounting.
const GUEST_SLACK: Duration = Duration::from_secs(900);

/// The guest script: `MARKBASE_NFS_VM`, or `scripts/nfs-vm` of the source
/// tree this binary was built from.
fn nfs_vm() -> Result<PathBuf> {
    if !cfg!(target_os = "linux") {
        bail!("--client kernel: the guest (scripts/nfs-vm) runs on Linux only");
    }
    let p = std::env::var_os("MARKBASE_NFS_VM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nfs-vm"));
    if !p.is_file() {
        bail!(
            "--client kernel needs scripts/nfs-vm from MarkBase's source tree ({} is not there; set MARKBASE_NFS_VM)",
            p.display()
        );
    }
    Ok(p)
}

/// What the guest runs: every server but the first (which `nfs-vm` mounts
/// on `/mnt`) mounted on `/m/uN` with the product's options, the soak on
/// all of them, its errors after its JSON, its status as the script's.
fn guest_script(ports: &[u16], duration: Duration) -> String {
    let tuning = linux_mount_tuning();
    let mut s = String::from("mkdir -p /m\n");
    let mut dirs = vec!["/mnt".to_string()];
    for (i, p) in ports.iter().enumerate().skip(1) {
        let d = format!("/m/u{i}");
        s += &format!(
            "mkdir -p {d}; mount -t nfs -o vers=3,proto=tcp,port={p},mountport={p},mountproto=tcp,{tuning} 10.0.2.2:/ {d} || exit 125\n"
        );
        dirs.push(d);
    }
    s += &format!(
        "markbase fuse --test --stability --on {} --duration {}s --json 2>/tmp/soak.err\n",
        dirs.join(","),
        duration.as_secs()
    );
    s += "st=$?\ncat /tmp/soak.err\nfor d in /m/u*; do umount $d 2>/dev/null; done\nexit $st\n";
    s
}

/// Serve the users, run the soak in the guest, sample the servers' memory.
pub fn run(o: &StabilityOpts<'_>, tmp: &Path) -> Result<Summary> {
    let script = nfs_vm()?;
    let served =
        crate::cli::selftest::stability_nfs::serve_users(tmp, o.data_dir, &o.names, o.users)?;
    let ports: Vec<u16> = served.iter().map(|s| s.addr.port()).collect();
    let pids: Vec<u32> = served.iter().map(|s| s.pid()).collect();
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(&script);
    cmd.arg("--port")
        .arg(ports[0].to_string())
        .args(["--opts", &linux_mount_tuning()])
        .arg("--bin")
        .arg(&exe)
        // A worker's buffers and the guest's page cache for ten mounts.
        .args(["--mem", "2048"])
        .arg("--timeout")
        .arg((o.duration + GUEST_SLACK).as_secs().to_string())
        .arg("--")
        .arg(guest_script(&ports, o.duration))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its own process group: Ctrl-C reaches this process, which stops it.
        .process_group(0);
    // The guest dies with this process (Linux; the script needs Linux).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only this child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", script.display()))?;
    // The console: the soak's JSON kept, its error lines passed on, the
    // last lines kept for a failure's message.
    let found: Arc<Mutex<(Option<Summary>, Vec<String>)>> = Arc::default();
    let reader = child.stdout.take().map(|out| {
        let found = found.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let mut f = found.lock();
                if line.starts_with("{\"mounts\"") {
                    f.0 = serde_json::from_str(&line).ok();
                    continue;
                }
                if line.starts_with("markbase") {
                    eprintln!("guest: {line}");
                }
                f.1.push(line);
                if f.1.len() > 40 {
                    f.1.remove(0);
                }
            }
        })
    });
    let mut status = None;
    let (rss_mib, _, _) = watch(
        o,
        &pids,
        || Sample {
            bytes: None,
            errors: 0,
        },
        || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        },
    );
    if crate::cli::interrupt::interrupted() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    if let Some(r) = reader {
        let _ = r.join();
    }
    drop(served);
    let (summary, tail) = std::mem::take(&mut *found.lock());
    let Some(mut s) = summary else {
        bail!(
            "the guest's soak gave no report ({status}); its console's last lines:\n{}",
            tail.join("\n")
        );
    };
    s.through = "NFS servers, through a QEMU guest's kernel NFS client".into();
    s.rss_mib = rss_mib;
    s.interrupted |= crate::cli::interrupt::interrupted();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_mounts_every_server_but_the_first_and_soaks_them_all() {
        let s = guest_script(&[2049, 2050, 2051], Duration::from_secs(90));
        assert_eq!(s.matches("mount -t nfs").count(), 2, "{s}");
        assert!(s.contains("port=2050,mountport=2050"), "{s}");
        assert!(
            s.contains("--on /mnt,/m/u1,/m/u2 --duration 90s --json"),
            "{s}"
        );
        assert!(s.contains(&linux_mount_tuning()), "{s}");
    }
}
