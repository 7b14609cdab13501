//! Samba run beside the mounts: `markbase share` writes its configuration
//! ([`super::share`]), and the supervisor (`fuse --mount --all --foreground
//! --smb`, the service installed with `--smb`) keeps `smbd` serving every
//! mount it keeps, as a [`Companion`]:
//!
//! * once every drive is mounted, it writes `smb.conf` for the users mounted
//!   and starts `smbd` (in the foreground, a process group of its own, its
//!   state in `DATA_DIR/samba`), and waits until it listens (up to 10 s):
//!   the service is ready when the drives are served;
//! * on SIGHUP, after the users are read again: the configuration written
//!   again and `smbd` told to reload it (SIGHUP), so a new user's share
//!   appears; a removed user's share goes before the mount does;
//! * an `smbd` that died is started again;
//! * on SIGTERM it stops first (its clients stop writing), then the mounts
//!   flush and go.
//!
//! Samba's accounts are its own (`smbpasswd -c DATA_DIR/samba/smb.conf -a
//! NAME`): kept across restarts in the state folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::manager::Companion;
use super::share::{samba_config, state_folders, Share, ShareError, ShareOptions};
use crate::sync::unchecked::Mutex;

/// Why Samba cannot serve the drives.
#[derive(Debug, thiserror::Error)]
pub enum SambaError {
    #[error("Samba is not installed: apt-get install samba samba-vfs-modules")]
    NotInstalled,
    #[error("{0} has no vfs_fruit (Apple's SMB extensions): apt-get install samba-vfs-modules")]
    NoFruit(PathBuf),
    #[error("{0}'s owner: no account has uid {1}")]
    NoOwner(String, u32),
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// `prog` on the PATH, or in the sbin folders a root shell has.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Does this Samba have the `fruit` module (`smbd -b`'s MODULESDIR)?
fn has_fruit(smbd: &Path) -> bool {
    let Ok(out) = Command::new(smbd).arg("-b").output() else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("MODULESDIR:"))
        .any(|d| Path::new(d.trim()).join("vfs/fruit.so").is_file())
}

/// This machine's `smbd`, if it can serve Macs (with `vfs_fruit`).
pub fn smbd() -> Result<PathBuf, SambaError> {
    let smbd = which("smbd").ok_or(SambaError::NotInstalled)?;
    if has_fruit(&smbd) {
        Ok(smbd)
    } else {
        Err(SambaError::NoFruit(smbd))
    }
}

/// Each user's share, as `markbase.toml` says: its accounts (`smb_users`,
/// else an account named as the user), files made as the library's owner,
/// read-only where the library is.
pub fn shares_of(data_dir: &Path, users: &[String]) -> Result<Vec<Share>, SambaError> {
    use nix::unistd::{Gid, Group, Uid, User};
    let mut shares = Vec::new();
    for user in users {
        crate::library::Library::new(data_dir, user)?;
        let settings = crate::config::user_settings(data_dir, user)?;
        let owner = settings.owner();
        let account = User::from_uid(Uid::from_raw(owner.uid))
            .ok()
            .flatten()
            .ok_or_else(|| SambaError::NoOwner(user.clone(), owner.uid))?;
        let group = Group::from_gid(Gid::from_raw(owner.gid))
            .ok()
            .flatten()
            .map(|g| g.name);
        shares.push(Share {
            user: user.clone(),
            valid_users: if settings.smb_users.is_empty() {
                vec![user.clone()]
            } else {
                settings.smb_users.clone()
            },
            force_user: Some(account.name),
            force_group: group,
            read_only: settings.read_only == Some(true),
        });
    }
    Ok(shares)
}

/// Write the configuration for `shares` as `state_dir/smb.conf` (its
/// folders made first); its path.
pub fn write_config(o: &ShareOptions, shares: &[Share]) -> Result<PathBuf, SambaError> {
    let conf = samba_config(o, shares)?;
    for d in state_folders(&o.state_dir) {
        std::fs::create_dir_all(&d).map_err(|e| SambaError::Io(d.display().to_string(), e))?;
    }
    let file = o.state_dir.join("smb.conf");
    // Whole or not at all: `smbd` may read it at any moment (a reload).
    let tmp = o.state_dir.join("smb.conf.new");
    std::fs::write(&tmp, conf)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| SambaError::Io(file.display().to_string(), e))?;
    Ok(file)
}

/// How long `smbd` has to stop before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long a started `smbd` has to listen before the supervisor goes on.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// `smbd` serving the supervisor's mounts.
pub struct Samba {
    smbd: PathBuf,
    data_dir: PathBuf,
    opts: ShareOptions,
    child: Mutex<Option<Child>>,
}

impl Samba {
    /// Samba for the users of `data_dir` mounted in `mounts_dir`, on
    /// `port`, open to loopback and `allow`; its state in
    /// `data_dir/samba`. Refused where Samba cannot serve Macs.
    pub fn new(
        data_dir: &Path,
        mounts_dir: &Path,
        port: u16,
        allow: Vec<String>,
    ) -> Result<Samba, SambaError> {
        Ok(Samba {
            smbd: smbd()?,
            data_dir: data_dir.to_path_buf(),
            opts: ShareOptions {
                mounts_dir: mounts_dir.to_path_buf(),
                port,
                allow,
                state_dir: data_dir.join("samba"),
            },
            child: Mutex::new(None),
        })
    }

    /// The configuration `smbd` runs with.
    pub fn config_path(&self) -> PathBuf {
        self.opts.state_dir.join("smb.conf")
    }

    fn write(&self, users: &[String]) -> Result<PathBuf, SambaError> {
        let shares = shares_of(&self.data_dir, users)?;
        write_config(&self.opts, &shares)
    }

    fn spawn(&self) -> Result<Child, SambaError> {
        use std::os::unix::process::CommandExt;
        Command::new(&self.smbd)
            .args(["--foreground", "--no-process-group", "--configfile"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its helpers in a group of its own, so that stopping it stops
            // them too; the service manager hears from the supervisor alone.
            .process_group(0)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .spawn()
            .map_err(|e| SambaError::Io(format!("start {}", self.smbd.display()), e))
    }

    /// Start `smbd`, or have the running one read its configuration again.
    fn start_or_reload(&self) -> Result<(), SambaError> {
        let mut child = self.child.lock();
        if let Some(c) = child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                signal(c, nix::sys::signal::SIGHUP, false);
                return Ok(());
            }
        }
        let mut c = self.spawn()?;
        // Ready when it listens (the supervisor says READY=1 after this).
        let until = Instant::now() + LISTEN_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.opts.port)).is_err() {
            if Instant::now() > until || !matches!(c.try_wait(), Ok(None)) {
                tracing::warn!(
                    port = self.opts.port,
                    "smbd is not listening yet (its log: {})",
                    self.opts.state_dir.join("log").display()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(
            pid = c.id(),
            port = self.opts.port,
            "Samba serving the drives ({})",
            self.config_path().display()
        );
        *child = Some(c);
        Ok(())
    }
}

/// Send `sig` to `c` (and, with `group`, to its process group).
fn signal(c: &Child, sig: nix::sys::signal::Signal, group: bool) {
    let pid = c.id() as i32;
    let target = nix::unistd::Pid::from_raw(if group { -pid } else { pid });
    if let Err(e) = nix::sys::signal::kill(target, sig) {
        tracing::warn!("smbd (pid {pid}): {sig}: {e}");
    }
}

impl Companion for Samba {
    fn serve(&self, units: &BTreeMap<String, PathBuf>) {
        let users: Vec<String> = units.keys().cloned().collect();
        match self.write(&users).and_then(|_| self.start_or_reload()) {
            Ok(()) => tracing::info!(shares = users.len(), "Samba configuration written"),
            Err(e) => tracing::error!("Samba: {e}"),
        }
    }

    fn look_after(&self) {
        let died = {
            let mut child = self.child.lock();
            match child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => {
                    *child = None;
                    Some(status)
                }
                _ => None,
            }
        };
        if let Some(status) = died {
            tracing::warn!("smbd died ({status}): starting it again");
            if let Err(e) = self.start_or_reload() {
                tracing::error!("Samba: {e}");
            }
        }
    }

    fn stop(&self) {
        let Some(mut c) = self.child.lock().take() else {
            return;
        };
        signal(&c, nix::sys::signal::SIGTERM, true);
        let until = Instant::now() + STOP_WAIT;
        while Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its helpers too, whether or not it stopped in time.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-(c.id() as i32)),
            nix::sys::signal::SIGKILL,
        );
        let _ = c.wait();
        tracing::info!("Samba stopped");
    }
}
