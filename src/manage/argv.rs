//! The command lines this crate starts `markbase` with: a mount's daemon
//! (`fuse --mount --foreground --user U`) and the service's supervisor
//! (`fuse --mount --all --foreground`), built from one typed struct so that
//! the two cannot drift from each other or from the parser (the binary's
//! tests parse them back).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Whose libraries a daemon command serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whom {
    /// One user, at `dir`.
    User(String),
    /// Every user of the data folder, each at `dir/MarkBase_<user>`,
    /// supervised.
    All,
}

/// `markbase --data-dir D fuse --mount --foreground ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonCommand {
    pub data_dir: PathBuf,
    pub whom: Whom,
    /// The mount point (one user) or the folder of mount points (all).
    pub dir: PathBuf,
    /// FUSE worker threads; None: the default.
    pub threads: Option<usize>,
    pub allow_other: bool,
    pub passthrough: bool,
    /// `--backend`, as its name.
    pub backend: Option<String>,
    pub metrics: Option<SocketAddr>,
    /// The supervisor's `--smb`: Samba serving the mounts.
    pub smb: Option<SmbServe>,
}

/// `--smb --smb-port P --allow-clients NETS`: Samba serving every mount
/// the supervisor keeps, to a studio's Macs (`manage::samba`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmbServe {
    /// The port Samba listens on (445 is SMB's own).
    pub port: u16,
    /// Networks besides loopback allowed to connect.
    pub allow_clients: Vec<String>,
}

impl DaemonCommand {
    /// The arguments, without the program.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_string(),
            self.data_dir.to_string_lossy().into_owned(),
            "fuse".into(),
            "--mount".into(),
        ];
        match &self.whom {
            Whom::User(u) => a.extend(["--foreground".into(), "--user".into(), u.clone()]),
            Whom::All => a.extend(["--all".into(), "--foreground".into()]),
        }
        a.extend(["--dir".into(), self.dir.to_string_lossy().into_owned()]);
        if let Some(t) = self.threads {
            a.extend(["--threads".into(), t.to_string()]);
        }
        if let Some(m) = self.metrics {
            a.extend(["--metrics".into(), m.to_string()]);
        }
        if let Some(b) = &self.backend {
            a.extend(["--backend".into(), b.clone()]);
        }
        if self.allow_other {
            a.push("--allow-other".into());
        }
        if !self.passthrough {
            a.push("--no-passthrough".into());
        }
        if let Some(smb) = &self.smb {
            a.extend(["--smb".into(), "--smb-port".into(), smb.port.to_string()]);
            if !smb.allow_clients.is_empty() {
                a.extend(["--allow-clients".into(), smb.allow_clients.join(",")]);
            }
        }
        a
    }
}

/// `markbase --data-dir D nfs --serve --user U --listen ADDR ...`: one
/// user's NFS server for other machines (what `nfs --serve --all` starts
/// per user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeCommand {
    pub data_dir: PathBuf,
    pub user: String,
    pub listen: SocketAddr,
    /// `--allow-clients`, as given.
    pub allow_clients: Vec<String>,
}

impl ServeCommand {
    /// The arguments, without the program.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_string(),
            self.data_dir.to_string_lossy().into_owned(),
            "nfs".into(),
            "--serve".into(),
            "--user".into(),
            self.user.clone(),
            "--listen".into(),
            self.listen.to_string(),
        ];
        if !self.allow_clients.is_empty() {
            a.extend(["--allow-clients".into(), self.allow_clients.join(",")]);
        }
        a
    }
}
