//! `markbase service install|uninstall|status`: the service files of
//! `markbase::manage::service`, written where the service manager looks and handed
//! to it (`systemctl`, `launchctl`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use markbase::manage::service::{self, ServiceSpec};

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Install and start the service: every user of --data-dir mounted in
    /// --dir at boot (root: a system unit) or at login (a user unit; on a
    /// Mac, a launchd agent).
    Install {
        /// Every users/*.sqlite of --data-dir (the only mode: new users are
        /// mounted by `systemctl reload markbase`).
        #[arg(long, required = true)]
        all: bool,
        /// The folder to mount users in (each at MarkBase_<user>).
        #[arg(long)]
        dir: PathBuf,
        /// Serve the mounts' counters at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Let other users (and root-run tools) in (always, for a system
        /// unit: root mounts the drives for the machine's editors).
        #[arg(long)]
        allow_other: bool,
        /// How every drive is served (markbase.toml's otherwise): `nfs` is
        /// the built-in NFS server mounted by the OS's own client (a Mac
        /// without macFUSE), each user's server started again on its port
        /// if it dies.
        #[arg(long, value_name = "BACKEND")]
        backend: Option<markbase::platform::BackendChoice>,
        /// Also serve the drives to a studio's Macs over SMB3 with Samba,
        /// started by the service once they are mounted and reloaded with
        /// them (`systemctl reload markbase`); Linux, FUSE mounts only.
        #[arg(long)]
        smb: bool,
        /// --smb: the port Samba listens on (445 is SMB's own).
        #[arg(long, default_value_t = 445, requires = "smb")]
        smb_port: u16,
        /// --smb: other machines allowed to connect (CIDR or address,
        /// comma-separated); loopback always is.
        #[arg(long, value_delimiter = ',', requires = "smb")]
        allow_clients: Vec<String>,
        /// Print the unit (or plist) instead of installing it.
        #[arg(long)]
        print: bool,
        /// Write the file into this folder instead of the service manager's
        /// (and do not start it).
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
        /// Write the file but do not enable or start the service.
        #[arg(long)]
        no_start: bool,
        /// As root, install a user unit (started at login) anyway.
        #[arg(long)]
        user_unit: bool,
        /// The binary the service runs (default: this one; packaging
        /// gives /usr/bin/markbase).
        #[arg(long, value_name = "PATH")]
        exe: Option<PathBuf>,
    },
    /// Stop the service and remove its file.
    Uninstall {
        /// The folder the file was written to with --unit-dir.
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
        /// As root, the user unit (see install --user-unit).
        #[arg(long)]
        user_unit: bool,
    },
    /// Whether the service is installed and running, and its mounts.
    Status {
        /// The folder the file was written to with --unit-dir.
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
        /// As root, the user unit (see install --user-unit).
        #[arg(long)]
        user_unit: bool,
    },
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn system_scope(user_unit: bool) -> bool {
    nix::unistd::geteuid().is_root() && !user_unit
}

fn systemctl(system: bool, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["systemctl"];
    if !system {
        cmd.push("--user");
    }
    cmd.extend_from_slice(args);
    Ok(service::run(&cmd)?)
}

fn gui_domain() -> String {
    format!("gui/{}", nix::unistd::getuid())
}

pub fn run(data_dir: &Path, cmd: ServiceCommand) -> Result<()> {
    match cmd {
        ServiceCommand::Install {
            all: _,
            dir,
            metrics,
            allow_other,
            backend,
            smb,
            smb_port,
            allow_clients,
            print,
            unit_dir,
            no_start,
            user_unit,
            exe,
        } => {
            use markbase::manage::mount::absolute;
            use markbase::platform::{Backend, BackendChoice};
            let backend = match backend {
                Some(BackendChoice::Fixed(b)) => Some(b),
                _ => None,
            };
            if allow_other && backend == Some(Backend::Nfs) {
                bail!("--allow-other: an NFS mount lets every user in by the files' permissions already");
            }
            if smb && (backend == Some(Backend::Nfs) || cfg!(target_os = "macos")) {
                bail!("--smb: Samba serves a Linux server's FUSE mounts (a Mac mounts the NFS servers itself)");
            }
            markbase::nfs::AllowList::parse(&allow_clients)?;
            if smb && !print {
                markbase::manage::samba::smbd()?;
            }
            let data_dir = absolute(data_dir);
            if !data_dir.join("users").is_dir() && !print {
                bail!(
                    "{} has no users/ folder: make a library first (markbase library create --user NAME)",
                    data_dir.display()
                );
            }
            let spec = ServiceSpec {
                exe: match exe {
                    Some(e) => absolute(&e),
                    None => std::env::current_exe().context("this binary's path")?,
                },
                data_dir,
                base: absolute(&dir),
                metrics,
                allow_other,
                system: system_scope(user_unit),
                backend,
                smb: smb.then_some(markbase::manage::argv::SmbServe {
                    port: smb_port,
                    allow_clients,
                }),
            };
            let bytes = service::render(&spec, &home())?;
            if print {
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
                return Ok(());
            }
            let path = service::file_path(&spec, &home(), unit_dir.as_deref());
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            }
            std::fs::create_dir_all(&spec.base)
                .with_context(|| format!("create {}", spec.base.display()))?;
            std::fs::write(&path, &bytes).with_context(|| format!("write {}", path.display()))?;
            println!("wrote {}", path.display());
            if spec.smb.is_some() {
                println!(
                    "  Samba's accounts, once it runs: smbpasswd -c {} -a NAME",
                    spec.data_dir.join("samba/smb.conf").display()
                );
            }
            if no_start || unit_dir.is_some() {
                return Ok(());
            }
            if cfg!(target_os = "macos") {
                std::fs::create_dir_all(service::launchd_log_dir(&home()))?;
                let _ = service::run(&[
                    "launchctl",
                    "bootout",
                    &format!("{}/{}", gui_domain(), service::LAUNCHD_LABEL),
                ]);
                service::run(&[
                    "launchctl",
                    "bootstrap",
                    &gui_domain(),
                    &path.to_string_lossy(),
                ])?;
                println!(
                    "started {} (launchctl print {}/{})",
                    service::LAUNCHD_LABEL,
                    gui_domain(),
                    service::LAUNCHD_LABEL
                );
            } else if service::systemd_running() {
                systemctl(spec.system, &["daemon-reload"])?;
                systemctl(spec.system, &["enable", "--now", service::UNIT_NAME])?;
                println!(
                    "started {}: systemctl {}status markbase",
                    service::UNIT_NAME,
                    if spec.system { "" } else { "--user " }
                );
            } else {
                println!(
                    "systemd is not running on this machine: the unit starts at the next boot under systemd, or now with: systemctl {}enable --now markbase",
                    if spec.system { "" } else { "--user " }
                );
            }
            Ok(())
        }
        ServiceCommand::Uninstall {
            unit_dir,
            user_unit,
        } => {
            let spec = scope_spec(user_unit);
            let path = service::file_path(&spec, &home(), unit_dir.as_deref());
            if unit_dir.is_none() {
                if cfg!(target_os = "macos") {
                    let _ = service::run(&[
                        "launchctl",
                        "bootout",
                        &format!("{}/{}", gui_domain(), service::LAUNCHD_LABEL),
                    ]);
                } else if service::systemd_running() {
                    // Stopping unmounts every drive (each daemon flushes).
                    let _ = systemctl(spec.system, &["disable", "--now", service::UNIT_NAME]);
                }
            }
            match std::fs::remove_file(&path) {
                Ok(()) => println!("removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("not installed: no {}", path.display())
                }
                Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
            }
            if unit_dir.is_none() && !cfg!(target_os = "macos") && service::systemd_running() {
                let _ = systemctl(spec.system, &["daemon-reload"]);
            }
            Ok(())
        }
        ServiceCommand::Status {
            unit_dir,
            user_unit,
        } => {
            let spec = scope_spec(user_unit);
            let path = service::file_path(&spec, &home(), unit_dir.as_deref());
            if path.exists() {
                println!("installed: {}", path.display());
            } else {
                println!("not installed (no {})", path.display());
            }
            let state = if cfg!(target_os = "macos") {
                service::run(&[
                    "launchctl",
                    "print",
                    &format!("{}/{}", gui_domain(), service::LAUNCHD_LABEL),
                ])
                .map(|_| "loaded".to_string())
                .unwrap_or_else(|_| "not loaded".into())
            } else if service::systemd_running() {
                let active = systemctl(spec.system, &["is-active", service::UNIT_NAME])
                    .unwrap_or_else(|_| "inactive".into());
                let status = systemctl(
                    spec.system,
                    &["show", "-p", "StatusText", "--value", service::UNIT_NAME],
                )
                .unwrap_or_default();
                format!("{} {}", active.trim(), status.trim())
            } else {
                "unknown (systemd is not running on this machine)".into()
            };
            println!("service: {}", state.trim());
            println!();
            crate::cli::status::print_status(false)
        }
    }
}

/// A spec that only says where the file is.
fn scope_spec(user_unit: bool) -> ServiceSpec {
    ServiceSpec {
        exe: PathBuf::new(),
        data_dir: PathBuf::new(),
        base: PathBuf::new(),
        metrics: None,
        allow_other: false,
        system: system_scope(user_unit),
        backend: None,
        smb: None,
    }
}
