//! `markbase service`: the drives as a service that comes back after a
//! reboot or a login.
//!
//! What runs is always the supervisor, `markbase fuse --mount --all
//! --foreground --dir BASE`: it mounts every user of the data directory
//! (one daemon each), mounts new users and unmounts removed ones on
//! SIGHUP, and unmounts everything, each daemon flushing first, on SIGTERM.
//! This module only writes the service manager's file for it:
//!
//! * Linux: a systemd unit, `Type=notify` (the supervisor says READY=1 once
//!   every mount has answered, keeps STATUS= current and pings the
//!   watchdog), `ExecReload` sending SIGHUP, SIGTERM with a stop timeout
//!   long enough for every daemon to flush. A system unit when installed
//!   by root (started at boot), a user unit otherwise (started at login).
//! * macOS: a launchd agent (started at login, restarted if it fails),
//!   logging under `~/Library/Logs/MarkBase/`.
//!
//! Both files are made by pure functions ([`systemd_unit`],
//! [`launchd_plist`]) so the tests check them on any machine; installing
//! them (`systemctl`, `launchctl`) is the thin part around them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::argv::{DaemonCommand, SmbServe, Whom};

/// The service's name: `markbase.service`, or launchd's label.
pub const UNIT_NAME: &str = "markbase.service";
pub const LAUNCHD_LABEL: &str = "com.markbase.drives";
/// How long a stop may take: every daemon flushes its open files first.
pub const STOP_TIMEOUT_S: u32 = 120;
/// The supervisor must ping at least this often, or systemd restarts it.
pub const WATCHDOG_S: u32 = 60;

/// Errors of installing or removing the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the launchd plist: {0}")]
    Plist(#[from] plist::Error),
    #[error("{0} failed: {1}")]
    Command(String, String),
    #[error("{0} must be an absolute path")]
    Relative(PathBuf),
}

/// What the service runs.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// The `markbase` binary (absolute).
    pub exe: PathBuf,
    /// `--data-dir` (absolute).
    pub data_dir: PathBuf,
    /// `--dir`: where the users are mounted, each at `MarkBase_<user>`.
    pub base: PathBuf,
    pub metrics: Option<SocketAddr>,
    /// Let other users in (always, for a system unit).
    pub allow_other: bool,
    /// A system unit (root; at boot) rather than a user unit (at login).
    pub system: bool,
    /// `--backend` for every mount (`nfs`: the built-in server, mounted by
    /// the OS's NFS client; each user's server started again on its port
    /// if it dies). None: markbase.toml's, else the platform's.
    pub backend: Option<crate::platform::Backend>,
    /// `--smb`: Samba serving every mount to a studio's Macs, started once
    /// they are mounted and reloaded with them (`manage::samba`).
    pub smb: Option<SmbServe>,
}

impl ServiceSpec {
    /// The supervisor's command line.
    pub fn args(&self) -> Result<Vec<String>, ServiceError> {
        for p in [&self.exe, &self.data_dir, &self.base] {
            if !p.is_absolute() {
                return Err(ServiceError::Relative(p.clone()));
            }
        }
        // A system unit mounts as root for the machine's editors: without
        // allow_other only root could enter the drives. (An NFS mount lets
        // every user in by the files' permissions already.) Samba, as
        // root, reaches a FUSE mount only with it too.
        let nfs = self.backend == Some(crate::platform::Backend::Nfs);
        let supervisor = DaemonCommand {
            data_dir: self.data_dir.clone(),
            whom: Whom::All,
            dir: self.base.clone(),
            threads: None,
            allow_other: (self.allow_other || self.system || self.smb.is_some()) && !nfs,
            passthrough: true,
            backend: self.backend.map(|b| b.name().to_string()),
            metrics: self.metrics,
            smb: self.smb.clone(),
        };
        let mut a = vec![self.exe.to_string_lossy().into_owned()];
        a.extend(supervisor.args());
        Ok(a)
    }
}

/// One argument of a systemd command line: quoted when it needs it, with
/// `%` (a specifier) and `$` (a variable) doubled.
fn systemd_arg(a: &str) -> String {
    let esc = a.replace('%', "%%").replace('$', "$$");
    if esc.is_empty()
        || esc
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == ';')
    {
        let inner = esc.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{inner}\"")
    } else {
        esc
    }
}

/// The systemd unit for `spec`.
pub fn systemd_unit(spec: &ServiceSpec) -> Result<String, ServiceError> {
    let exec: Vec<String> = spec.args()?.iter().map(|a| systemd_arg(a)).collect();
    let (after, wanted_by) = if spec.system {
        ("local-fs.target network-online.target", "multi-user.target")
    } else {
        ("default.target", "default.target")
    };
    let mut u = String::new();
    u.push_str("[Unit]\n");
    u.push_str(&format!(
        "Description=MarkBase drives: every library of {}, mounted in {}\n",
        spec.data_dir.display(),
        spec.base.display()
    ));
    u.push_str("Documentation=man:markbase(1) man:markbase-fuse(1)\n");
    if spec.system {
        u.push_str(&format!("After={after}\nWants=network-online.target\n"));
    }
    u.push_str("\n[Service]\n");
    u.push_str("Type=notify\nNotifyAccess=main\n");
    u.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    u.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    u.push_str("KillSignal=SIGTERM\n");
    u.push_str(&format!("TimeoutStopSec={STOP_TIMEOUT_S}\n"));
    u.push_str(&format!("WatchdogSec={WATCHDOG_S}\n"));
    u.push_str("Restart=on-failure\nRestartSec=5\n");
    // Ten users' daemons each keep content files open.
    u.push_str("LimitNOFILE=1048576\n");
    u.push_str(&format!("\n[Install]\nWantedBy={wanted_by}\n"));
    Ok(u)
}

/// Where launchd's logs go: `~/Library/Logs/MarkBase/`.
pub fn launchd_log_dir(home: &Path) -> PathBuf {
    home.join("Library/Logs/MarkBase")
}

/// The launchd agent for `spec` (an XML plist), for a user whose home is
/// `home`.
pub fn launchd_plist(spec: &ServiceSpec, home: &Path) -> Result<Vec<u8>, ServiceError> {
    use plist::{Dictionary, Value};
    let logs = launchd_log_dir(home);
    let mut d = Dictionary::new();
    d.insert("Label".into(), LAUNCHD_LABEL.into());
    d.insert(
        "ProgramArguments".into(),
        Value::Array(spec.args()?.into_iter().map(Value::String).collect()),
    );
    d.insert("RunAtLoad".into(), true.into());
    // Restarted when it fails, not after a clean stop (logout, unload).
    let mut keep = Dictionary::new();
    keep.insert("SuccessfulExit".into(), false.into());
    d.insert("KeepAlive".into(), Value::Dictionary(keep));
    d.insert("ProcessType".into(), "Interactive".into());
    d.insert("ExitTimeOut".into(), Value::Integer(STOP_TIMEOUT_S.into()));
    d.insert(
        "StandardOutPath".into(),
        logs.join("markbase.out.log")
            .to_string_lossy()
            .into_owned()
            .into(),
    );
    d.insert(
        "StandardErrorPath".into(),
        logs.join("markbase.err.log")
            .to_string_lossy()
            .into_owned()
            .into(),
    );
    let mut env = Dictionary::new();
    env.insert(
        "MARKBASE_LOG_DIR".into(),
        logs.to_string_lossy().into_owned().into(),
    );
    d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    let mut out = Vec::new();
    Value::Dictionary(d).to_writer_xml(&mut out)?;
    Ok(out)
}

/// Where the service's file goes on this machine (`dir` overrides the
/// service manager's folder, for tests and packaging).
pub fn file_path(spec: &ServiceSpec, home: &Path, dir: Option<&Path>) -> PathBuf {
    let name = if cfg!(target_os = "macos") {
        format!("{LAUNCHD_LABEL}.plist")
    } else {
        UNIT_NAME.to_string()
    };
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None if cfg!(target_os = "macos") => home.join("Library/LaunchAgents"),
        None if spec.system => PathBuf::from("/etc/systemd/system"),
        None => home.join(".config/systemd/user"),
    };
    dir.join(name)
}

/// The service manager's file for this machine's kind.
pub fn render(spec: &ServiceSpec, home: &Path) -> Result<Vec<u8>, ServiceError> {
    if cfg!(target_os = "macos") {
        launchd_plist(spec, home)
    } else {
        systemd_unit(spec).map(String::into_bytes)
    }
}

/// Run a service manager's command; its stderr is the error.
pub fn run(cmd: &[&str]) -> Result<String, ServiceError> {
    let (prog, rest) = cmd
        .split_first()
        .ok_or_else(|| ServiceError::Command(String::new(), "empty command".into()))?;
    let out = std::process::Command::new(prog)
        .args(rest)
        .output()
        .map_err(|e| ServiceError::Io(prog.to_string(), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ServiceError::Command(
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Is systemd running this machine (so that `systemctl` can act)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: "/usr/bin/markbase".into(),
            data_dir: "/srv/Mark Base/data".into(),
            base: "/mnt/drives".into(),
            metrics: Some("127.0.0.1:9567".parse().expect("addr")),
            allow_other: true,
            system: true,
            backend: None,
            smb: None,
        }
    }

    #[test]
    fn the_unit_runs_the_supervisor_as_a_notify_service() {
        let u = systemd_unit(&spec()).expect("unit");
        assert!(u.contains("Type=notify\n"));
        assert!(u.contains(
            "ExecStart=/usr/bin/markbase --data-dir \"/srv/Mark Base/data\" fuse --mount --all --foreground --dir /mnt/drives --metrics 127.0.0.1:9567 --allow-other\n"
        ));
        assert!(u.contains("ExecReload=/bin/kill -HUP $MAINPID\n"));
        assert!(u.contains("WantedBy=multi-user.target\n"));
        let user = systemd_unit(&ServiceSpec {
            system: false,
            allow_other: false,
            ..spec()
        })
        .expect("unit");
        assert!(user.contains("WantedBy=default.target\n"));
        assert!(
            !user.contains("--allow-other"),
            "a user unit is the user's own"
        );
        assert_eq!(systemd_arg("50%$x"), "50%%$$x");
        assert!(systemd_unit(&ServiceSpec {
            base: "drives".into(),
            ..spec()
        })
        .is_err());
        // Samba over the mounts: the supervisor starts it once they are
        // up, and a user unit's mounts let it (root) in.
        let smb = systemd_unit(&ServiceSpec {
            system: false,
            allow_other: false,
            smb: Some(SmbServe {
                port: 4450,
                allow_clients: vec!["10.0.0.0/8".into()],
            }),
            ..spec()
        })
        .expect("unit");
        assert!(smb.contains(" --allow-other --smb --smb-port 4450 --allow-clients 10.0.0.0/8\n"));
    }

    #[test]
    fn the_plist_is_a_login_agent_that_logs_under_library_logs() {
        let bytes = launchd_plist(&spec(), Path::new("/Users/ed")).expect("plist");
        let v = plist::Value::from_reader_xml(&bytes[..]).expect("parse");
        let d = v.as_dictionary().expect("dict");
        assert_eq!(d["Label"].as_string(), Some(LAUNCHD_LABEL));
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        let keep = d["KeepAlive"].as_dictionary().expect("KeepAlive");
        assert_eq!(keep["SuccessfulExit"].as_boolean(), Some(false));
        let args: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_string())
            .collect();
        assert_eq!(args[0], "/usr/bin/markbase");
        assert_eq!(
            args[2], "/srv/Mark Base/data",
            "one argument, spaces and all"
        );
        assert!(args.contains(&"--foreground"));
        assert!(!args.contains(&"--backend"));
        // A Mac's agent for the NFS road: every drive served by the built-in
        // server, mounted with mount_nfs, restarted on its port if it dies.
        let nfs = ServiceSpec {
            backend: Some(crate::platform::Backend::Nfs),
            system: false,
            allow_other: false,
            ..spec()
        };
        let bytes = launchd_plist(&nfs, Path::new("/Users/ed")).expect("plist");
        let v = plist::Value::from_reader_xml(&bytes[..]).expect("parse");
        let args: Vec<String> = v.as_dictionary().expect("dict")["ProgramArguments"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_string().map(str::to_string))
            .collect();
        let at = args
            .iter()
            .position(|a| a == "--backend")
            .expect("--backend");
        assert_eq!(args[at + 1], "nfs");
        assert!(args.iter().any(|a| a == "--all") && args.iter().any(|a| a == "--foreground"));
        assert!(!args.iter().any(|a| a == "--allow-other"));
        assert_eq!(
            d["StandardErrorPath"].as_string(),
            Some("/Users/ed/Library/Logs/MarkBase/markbase.err.log")
        );
    }
}
