//! NFS servers for other machines, one per user, as the supervisor's
//! [`Units`] (`markbase nfs --serve --all`): each is `markbase nfs --serve
//! --user U` in a process of its own (so that one user's crash leaves the
//! others serving), known by its runtime record's `nfs://ADDR/` name. A
//! server started again after a crash listens on its last port where it is
//! free (`daemon::record::last_address`), so the Macs' mounts keep working.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::argv::ServeCommand;
use super::manager::{Mounted, Units};
use super::mount::{self, MountError};
use crate::daemon::{pid_alive, read_record};
use crate::nfs::service::{addr_in_ready_line, record_name};

/// Every user's NFS server on `listen`'s address (each on a port of its
/// own when the port is 0).
pub struct NfsServers {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub allow_clients: Vec<String>,
}

impl NfsServers {
    /// Start `user`'s server and wait for its ready line; its pid and
    /// record key. Its address goes to standard output, a line per user.
    fn start_one(&self, user: &str) -> Mounted {
        let result = self.spawn(user);
        let mut out = std::io::stdout().lock();
        let (mountpoint, result) = match result {
            Ok((addr, pid)) => {
                let _ = writeln!(out, "{user:<16} nfs://{addr}/ (pid {pid})");
                (record_name(addr), Ok(pid))
            }
            Err(e) => {
                let _ = writeln!(out, "{user:<16} FAILED: {e}");
                (record_name(self.listen), Err(e))
            }
        };
        let _ = out.flush();
        Mounted {
            user: user.to_string(),
            mountpoint,
            result,
        }
    }

    fn spawn(&self, user: &str) -> Result<(SocketAddr, u32), MountError> {
        let args = ServeCommand {
            data_dir: self.data_dir.clone(),
            user: user.to_string(),
            listen: self.listen,
            allow_clients: self.allow_clients.clone(),
        }
        .args();
        let exe = std::env::current_exe().map_err(|e| MountError::Io("this program".into(), e))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // The service manager hears from the supervisor alone.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .spawn()
            .map_err(|e| MountError::Io("start an NFS server".into(), e))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| MountError::Io("the NFS server's ready line".into(), e))?;
        }
        match addr_in_ready_line(&line) {
            Some(addr) => Ok((addr, child.id())),
            None => {
                let _ = child.wait();
                Err(MountError::Daemon("it exited (see its log lines)".into()))
            }
        }
    }
}

impl Units for NfsServers {
    fn start(&self, users: &[String]) -> Vec<Mounted> {
        std::thread::scope(|s| {
            let started: Vec<_> = users
                .iter()
                .map(|u| s.spawn(move || self.start_one(u)))
                .collect();
            started.into_iter().filter_map(|h| h.join().ok()).collect()
        })
    }

    fn stop(&self, keys: Vec<PathBuf>) -> Vec<(PathBuf, Result<(), MountError>)> {
        std::thread::scope(|s| {
            let stopped: Vec<_> = keys
                .into_iter()
                .map(|k| {
                    s.spawn(move || {
                        let r = match read_record(&k).filter(|r| pid_alive(r.pid)) {
                            Some(r) => {
                                mount::stop_daemon(r.pid, &k, "(NFS) did not stop", || false)
                            }
                            None => Err(MountError::NotMounted(k.clone())),
                        };
                        (k, r)
                    })
                })
                .collect();
            stopped.into_iter().filter_map(|h| h.join().ok()).collect()
        })
    }
}
