//! The kernel client guest (`scripts/nfs-vm`): a small QEMU guest whose
//! Linux kernel mounts a server this test started (NFS, or SMB from Samba),
//! and runs a shell script on the mount. Where no guest can run here, [`guest`] says so in one line
//! and the test returns early.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `scripts/nfs-vm` of this repository.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nfs-vm")
}

/// Can a guest run here? Checked (and prepared: the kernel downloaded, the
/// initramfs's parts built) once per test binary. `None` with the reason
/// printed when it cannot.
pub fn guest(test: &str) -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let out = Command::new(script())
            .arg("--check")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    });
    match ready {
        Ok(()) => Some(()),
        Err(why) => {
            eprintln!("{test}: skipped, no kernel NFS client guest here: {why}");
            None
        }
    }
}

/// What a guest run gave: the script's exit status and its output.
pub struct GuestRun {
    pub status: i32,
    pub output: String,
}

impl GuestRun {
    /// Panic with the output unless the script succeeded.
    pub fn ok(self, what: &str) -> String {
        assert_eq!(self.status, 0, "{what} in the guest:\n{}", self.output);
        self.output
    }
}

/// The NFS mount options the product itself uses on Linux
/// (`markbase fuse --mount --backend nfs`), less those the guest sets.
pub fn product_options() -> String {
    markbase::platform::nfs_client::linux_mount_tuning()
}

/// Held while a guest runs: one at a time in a test binary, as each is a
/// whole emulated machine.
pub fn one_guest_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `script` (busybox sh, in the mount's root) in a guest that mounts the
/// server on `port` with `opts`; `bins` are copied into the guest's `/bin`.
/// The guest dies with this process.
pub fn run_in_guest(
    port: u16,
    opts: &str,
    bins: &[&Path],
    script_text: &str,
    timeout_s: u32,
) -> GuestRun {
    run(&[], port, opts, bins, script_text, timeout_s)
}

/// As [`run_in_guest`], with the guest's kernel SMB client mounting
/// `//host/share` from a Samba on `port` (SMB 3.1.1, `opts` such as
/// `username=U,password=P`).
pub fn run_in_smb_guest(
    share: &str,
    port: u16,
    opts: &str,
    bins: &[&Path],
    script_text: &str,
    timeout_s: u32,
) -> GuestRun {
    run(&["--smb", share], port, opts, bins, script_text, timeout_s)
}

fn run(
    mode: &[&str],
    port: u16,
    opts: &str,
    bins: &[&Path],
    script_text: &str,
    timeout_s: u32,
) -> GuestRun {
    let mut cmd = Command::new(script());
    cmd.args(mode).args([
        "--port",
        &port.to_string(),
        "--opts",
        opts,
        "--timeout",
        &timeout_s.to_string(),
    ]);
    for b in bins {
        cmd.arg("--bin").arg(b);
    }
    cmd.arg("--").arg(script_text).stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches only this child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let _one = one_guest_at_a_time();
    let out = cmd.output().expect("run scripts/nfs-vm");
    GuestRun {
        status: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// fsx's configuration for its extended run through a guest's client:
/// fsync and fdatasync, copy_file_range and sendfile, closes and reopens,
/// cache invalidations, and operations up to 1 MiB on a file up to 4 MiB
/// (3,000 of them: under software emulation 10,000 take nine minutes).
pub const FSX_EXTENDED: &str = "flen = 4194304
[opsize]
max = 1048576
[weights]
fsync = 0.5
fdatasync = 0.5
copy_file_range = 1.0
sendfile = 0.5
close_open = 0.5
invalidate = 0.5";
