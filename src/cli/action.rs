//! What a `markbase fuse` command line asks for, decided once: the flags
//! become one [`Action`], and a flag the action does not use is refused in
//! one line (as ripgrep turns its flags into one mode). The design's
//! spellings stay: `fuse --mount --user U --dir D`, `fuse --test --aja`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;

use super::args::FuseArgs;
use markbase::manage::argv::SmbServe;
use markbase::platform::{Backend, BackendChoice};

/// How mounts are served, whatever mounts them.
#[derive(Clone, Debug, PartialEq)]
pub struct Serving {
    pub allow_other: bool,
    pub threads: usize,
    pub passthrough: bool,
    pub backend: Option<BackendChoice>,
}

/// Whose libraries.
#[derive(Clone, Debug, PartialEq)]
pub enum Users {
    All,
    These(Vec<String>),
}

/// The built-in tests (`--test`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Test {
    /// Sequential writes and reads through a FUSE mount.
    Throughput,
    /// The same through the NFS server (`--backend nfs`).
    NfsThroughput,
    /// AJA-style frames through one mount.
    Aja,
    /// AJA-style frames through several mounts at once.
    AjaMany,
    /// Ten mounts (or NFS servers, or `--on` folders) under a verified load.
    Stability,
}

/// What a `fuse` command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// One user's library at `dir` (a Mac's default when None).
    Mount {
        user: String,
        dir: Option<PathBuf>,
        foreground: bool,
        serving: Serving,
        metrics: Option<SocketAddr>,
    },
    /// Several users, each at `base/MarkBase_<user>`, in the background.
    MountMany {
        users: Users,
        base: PathBuf,
        serving: Serving,
    },
    /// Every user, each at `base/MarkBase_<user>`, kept mounted until
    /// SIGTERM (the service).
    Supervise {
        base: PathBuf,
        serving: Serving,
        metrics: Option<SocketAddr>,
        /// `--smb`: Samba over the mounts.
        smb: Option<SmbServe>,
    },
    Unmount {
        dir: PathBuf,
    },
    /// A user's mounts, or every mount of the data folder.
    UnmountMany {
        user: Option<String>,
    },
    Stats {
        dir: PathBuf,
        json: bool,
    },
    Status {
        json: bool,
    },
    Watch {
        interval: Duration,
        count: u64,
    },
    /// A built-in test, with the flags its mode uses (checked here).
    Test(Test),
}

impl Action {
    /// The flags (clap ids) this action uses; any other given on the
    /// command line is refused.
    fn flags(&self) -> &'static [&'static str] {
        const SERVING: [&str; 4] = ["allow_other", "threads", "no_passthrough", "backend"];
        match self {
            Action::Mount { .. } => &[
                "mount",
                "user",
                "dir",
                "foreground",
                "metrics",
                "allow_other",
                "threads",
                "no_passthrough",
                "backend",
            ],
            Action::MountMany { users, .. } => match users {
                Users::All => &[
                    "mount", "all", "dir", SERVING[0], SERVING[1], SERVING[2], SERVING[3],
                ],
                Users::These(_) => &[
                    "mount", "users", "dir", SERVING[0], SERVING[1], SERVING[2], SERVING[3],
                ],
            },
            Action::Supervise { .. } => &[
                "mount",
                "all",
                "dir",
                "foreground",
                "metrics",
                "allow_other",
                "threads",
                "no_passthrough",
                "backend",
                "smb",
                "smb_port",
                "allow_clients",
            ],
            Action::Unmount { .. } => &["unmount", "dir"],
            Action::UnmountMany { .. } => &["unmount", "all", "user"],
            Action::Stats { .. } => &["stats", "dir", "json"],
            Action::Status { .. } => &["status", "json"],
            Action::Watch { .. } => &["status", "watch", "interval", "count"],
            Action::Test(t) => match t {
                Test::Throughput => &["test", "user", "size", "json", "chart", "no_passthrough"],
                Test::NfsThroughput => &["test", "user", "size", "json", "backend", "peer_rclone"],
                Test::Aja => &[
                    "test",
                    "aja",
                    "user",
                    "config",
                    "file_size",
                    "json",
                    "chart",
                    "no_passthrough",
                    "mounts",
                ],
                Test::AjaMany => &[
                    "test",
                    "aja",
                    "users",
                    "mounts",
                    "config",
                    "file_size",
                    "json",
                    "chart",
                    "no_passthrough",
                ],
                Test::Stability => &[
                    "test",
                    "stability",
                    "user",
                    "users",
                    "mounts",
                    "duration",
                    "no_passthrough",
                    "backend",
                    "client",
                    "on",
                    "json",
                    "chart",
                ],
            },
        }
    }

    /// What `a` asks for; `m`: its matches, to tell given flags from defaults.
    pub fn of(a: &FuseArgs, m: &ArgMatches) -> Result<Action> {
        let action = Action::decide(a)?;
        let used = action.flags();
        // The flags' ids (the matches also hold the argument groups').
        let flags = <FuseArgs as clap::Args>::augment_args(clap::Command::new("fuse"));
        for arg in flags.get_arguments() {
            let id = arg.get_id().as_str();
            if m.value_source(id) == Some(ValueSource::CommandLine) && !used.contains(&id) {
                bail!(
                    "--{}: {} does not use it",
                    id.replace('_', "-"),
                    action.describe()
                );
            }
        }
        Ok(action)
    }

    /// The action's name in a refusal.
    fn describe(&self) -> &'static str {
        match self {
            Action::Mount { .. } => "--mount --user",
            Action::MountMany {
                users: Users::All, ..
            } => "--mount --all",
            Action::MountMany { .. } => "--mount --users",
            Action::Supervise { .. } => "--mount --all --foreground",
            Action::Unmount { .. } => "--unmount --dir",
            Action::UnmountMany { .. } => "--unmount --all/--user",
            Action::Stats { .. } => "--stats",
            Action::Status { .. } => "--status",
            Action::Watch { .. } => "--status --watch",
            Action::Test(Test::Throughput) => "the --test throughput test",
            Action::Test(Test::NfsThroughput) => "the --test --backend nfs throughput test",
            Action::Test(Test::Aja) | Action::Test(Test::AjaMany) => "--test --aja",
            Action::Test(Test::Stability) => "--test --stability",
        }
    }

    fn decide(a: &FuseArgs) -> Result<Action> {
        let nfs = a.backend == Some(NFS);
        let serving = Serving {
            allow_other: a.allow_other,
            threads: a.threads,
            passthrough: !a.no_passthrough,
            backend: a.backend,
        };
        if a.mount {
            if a.allow_other && nfs {
                bail!("--allow-other: an NFS mount lets every user in by the files' permissions already");
            }
            if a.all || !a.users.is_empty() {
                let Some(base) = a.dir.clone() else {
                    bail!("--mount --all needs --dir (the folder to mount users in)");
                };
                if a.all && a.foreground {
                    if a.smb && nfs {
                        bail!("--smb: Samba serves FUSE mounts; with --backend nfs the Macs mount the NFS servers themselves");
                    }
                    if a.smb && !a.allow_other {
                        bail!("--smb needs --allow-other: Samba (root) enters a FUSE mount only with it");
                    }
                    markbase::nfs::AllowList::parse(&a.allow_clients)?;
                    return Ok(Action::Supervise {
                        base,
                        serving,
                        metrics: a.metrics,
                        smb: a.smb.then(|| SmbServe {
                            port: a.smb_port,
                            allow_clients: a.allow_clients.clone(),
                        }),
                    });
                }
                let users = if a.all {
                    Users::All
                } else {
                    Users::These(a.users.clone())
                };
                return Ok(Action::MountMany {
                    users,
                    base,
                    serving,
                });
            }
            let Some(user) = a.user.clone() else {
                bail!("--mount needs --user");
            };
            return Ok(Action::Mount {
                user,
                dir: a.dir.clone(),
                foreground: a.foreground,
                serving,
                metrics: a.metrics,
            });
        }
        if a.unmount {
            return Ok(match &a.dir {
                Some(dir) => Action::Unmount { dir: dir.clone() },
                None if a.all || a.user.is_some() => Action::UnmountMany {
                    user: a.user.clone(),
                },
                None => bail!("--unmount needs --dir"),
            });
        }
        if a.status {
            return Ok(if a.watch {
                Action::Watch {
                    interval: Duration::from_secs_f64(a.interval.max(0.1)),
                    count: a.count,
                }
            } else {
                Action::Status { json: a.json }
            });
        }
        if a.stats {
            let Some(dir) = a.dir.clone() else {
                bail!("--stats needs --dir");
            };
            return Ok(Action::Stats { dir, json: a.json });
        }
        if a.test {
            if a.mounts == Some(0) {
                bail!("--mounts 0: a test needs at least one mount");
            }
            refuse_in_test(a)?;
            let test = if a.stability {
                Test::Stability
            } else if nfs {
                Test::NfsThroughput
            } else if a.aja && (a.mounts.is_some_and(|n| n > 1) || !a.users.is_empty()) {
                Test::AjaMany
            } else if a.aja {
                Test::Aja
            } else {
                Test::Throughput
            };
            return Ok(Action::Test(test));
        }
        bail!("nothing to do")
    }
}

pub const NFS: BackendChoice = BackendChoice::Fixed(Backend::Nfs);

/// The flag combinations a `--test` mode cannot honour, refused in one
/// line each (with a reason more helpful than "does not use it").
fn refuse_in_test(a: &FuseArgs) -> Result<()> {
    let nfs = a.backend == Some(NFS);
    if nfs && a.aja {
        bail!("--aja --backend nfs: the AJA-style test runs through FUSE mounts only");
    }
    if a.peer_rclone.is_some() && (!nfs || a.stability || a.aja) {
        bail!("--peer-rclone: only the --backend nfs throughput test measures rclone");
    }
    if nfs && a.no_passthrough {
        bail!("--no-passthrough: the NFS server has no passthrough to turn off");
    }
    if nfs && !a.stability && a.chart.is_some() {
        bail!("--chart: the --backend nfs throughput test draws no chart");
    }
    if nfs && !a.stability && (a.mounts.is_some() || !a.users.is_empty()) {
        bail!("--mounts, --users: the --backend nfs throughput test serves one user");
    }
    if a.client.is_some() && !(nfs && a.stability) {
        bail!("--client: only the --stability --backend nfs test has NFS clients to choose");
    }
    if !a.on.is_empty() {
        if !a.stability {
            bail!("--on: only the --stability test soaks folders mounted elsewhere");
        }
        if a.backend.is_some() || a.no_passthrough {
            bail!("--on: the folders are mounted already; --backend and --no-passthrough do not apply");
        }
        if a.user.is_some() || !a.users.is_empty() || a.mounts.is_some() {
            bail!("--on: the folders are the workers; --user, --users and --mounts do not apply");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;
    use crate::cli::args::{Cli, Command};
    use markbase::library::Library;
    use markbase::manage::mount::MountSpec;
    use markbase::manage::service::ServiceSpec;

    /// The action a command line (without the program) asks for.
    fn action(args: &[String]) -> Result<(PathBuf, Action)> {
        let m = Cli::command().try_get_matches_from(
            std::iter::once("markbase".to_string()).chain(args.iter().cloned()),
        )?;
        let cli = Cli::from_arg_matches(&m)?;
        let Command::Fuse(a) = &cli.command else {
            bail!("not a fuse command");
        };
        let sub = m.subcommand_matches("fuse").expect("fuse matches");
        Ok((cli.data_dir.clone(), Action::of(a, sub)?))
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_parser_is_sound_and_every_flag_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && !["help", "version"].contains(&id) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "markbase", &mut missing);
        assert!(missing.is_empty(), "flags without a help line: {missing:?}");
    }

    #[test]
    fn a_mount_daemon_command_line_parses_back_to_the_mount_it_serves() {
        let spec = MountSpec {
            library: Library::new(Path::new("/srv/data"), "warren").expect("library"),
            mountpoint: "/mnt/Mark Base".into(),
            allow_other: true,
            threads: 6,
            passthrough: false,
            backend: Some(BackendChoice::Fixed(Backend::Kernel)),
            metrics: Some("127.0.0.1:9567".parse().expect("addr")),
        };
        let (data_dir, action) = action(&spec.daemon_args()).expect("parses");
        assert_eq!(data_dir, Path::new("/srv/data"));
        assert_eq!(
            action,
            Action::Mount {
                user: "warren".into(),
                dir: Some("/mnt/Mark Base".into()),
                foreground: true,
                serving: Serving {
                    allow_other: true,
                    threads: 6,
                    passthrough: false,
                    backend: spec.backend,
                },
                metrics: spec.metrics,
            }
        );
    }

    #[test]
    fn the_service_command_line_parses_back_to_the_supervisor() {
        for (backend, allow_other) in [(None, true), (Some(Backend::Nfs), false)] {
            let spec = ServiceSpec {
                exe: "/usr/bin/markbase".into(),
                data_dir: "/srv/data".into(),
                base: "/mnt/drives".into(),
                metrics: Some("127.0.0.1:9567".parse().expect("addr")),
                allow_other: true,
                system: true,
                backend,
                smb: backend.is_none().then(|| SmbServe {
                    port: 4450,
                    allow_clients: vec!["10.0.0.0/8".into()],
                }),
            };
            let args = spec.args().expect("args");
            assert_eq!(args[0], "/usr/bin/markbase");
            let (data_dir, action) = action(&args[1..]).expect("parses");
            assert_eq!(data_dir, Path::new("/srv/data"));
            assert_eq!(
                action,
                Action::Supervise {
                    base: "/mnt/drives".into(),
                    serving: Serving {
                        allow_other,
                        threads: 4,
                        passthrough: true,
                        backend: backend.map(BackendChoice::Fixed),
                    },
                    metrics: spec.metrics,
                    smb: spec.smb.clone(),
                }
            );
        }
    }

    #[test]
    fn a_servers_command_line_parses_back_to_its_server() {
        use markbase::manage::argv::ServeCommand;
        let cmd = ServeCommand {
            data_dir: "/srv/data".into(),
            user: "ana".into(),
            listen: "0.0.0.0:0".parse().expect("addr"),
            allow_clients: vec!["10.0.0.0/8".into(), "192.168.1.7".into()],
        };
        let args = std::iter::once("markbase".to_string()).chain(cmd.args());
        let cli = Cli::try_parse_from(args).expect("parses");
        assert_eq!(cli.data_dir, Path::new("/srv/data"));
        let Command::Nfs(a) = cli.command else {
            panic!("not an nfs command");
        };
        assert!(a.serve && !a.all && a.metrics.is_none());
        assert_eq!(a.user.as_deref(), Some("ana"));
        assert_eq!(a.listen, cmd.listen);
        assert_eq!(a.allow_clients, cmd.allow_clients);
    }

    #[test]
    fn the_designs_spellings_keep_their_meaning() {
        let (_, a) = action(&words("fuse --mount --user u --dir /m")).expect("mount");
        assert!(matches!(
            a,
            Action::Mount {
                foreground: false,
                ..
            }
        ));
        let (_, a) = action(&words("fuse --mount --all --dir /b")).expect("all");
        assert!(matches!(
            a,
            Action::MountMany {
                users: Users::All,
                ..
            }
        ));
        let (_, a) = action(&words("fuse --mount --users a,b --dir /b")).expect("users");
        assert_eq!(
            a,
            Action::MountMany {
                users: Users::These(vec!["a".into(), "b".into()]),
                base: "/b".into(),
                serving: Serving {
                    allow_other: false,
                    threads: 4,
                    passthrough: true,
                    backend: None
                },
            }
        );
        let (_, a) = action(&words("fuse --unmount --all")).expect("unmount all");
        assert_eq!(a, Action::UnmountMany { user: None });
        let (_, a) = action(&words("fuse --status --watch --count 2")).expect("watch");
        assert!(matches!(a, Action::Watch { count: 2, .. }));
        for (line, test) in [
            ("fuse --test --size 64MB", Test::Throughput),
            (
                "fuse --test --aja --config 4K_ProRes --chart a.svg",
                Test::Aja,
            ),
            ("fuse --test --aja --mounts 3", Test::AjaMany),
            ("fuse --test --backend nfs --size 32MB", Test::NfsThroughput),
            (
                "fuse --test --stability --duration 10s --mounts 2",
                Test::Stability,
            ),
        ] {
            let (_, a) = action(&words(line)).expect(line);
            assert_eq!(a, Action::Test(test), "{line}");
        }
    }

    #[test]
    fn a_flag_the_action_does_not_use_is_refused_in_one_line() {
        for (line, refusal) in [
            (
                "fuse --mount --user u --dir /m --json",
                "--json: --mount --user does not use it",
            ),
            (
                "fuse --status --chart c.svg",
                "--chart: --status does not use it",
            ),
            (
                "fuse --unmount --dir /m --threads 2",
                "--threads: --unmount --dir does not use it",
            ),
            (
                "fuse --mount --users a --dir /b --foreground",
                "--foreground: --mount --users does not use it",
            ),
            (
                "fuse --test --duration 5s",
                "--duration: the --test throughput test does not use it",
            ),
            (
                "fuse --test --aja --threads 8",
                "--threads: --test --aja does not use it",
            ),
            (
                "fuse --mount --user u --dir /m --backend nfs --allow-other",
                "--allow-other: an NFS mount lets every user in by the files' permissions already",
            ),
        ] {
            let e = action(&words(line)).expect_err(line).to_string();
            assert_eq!(e, refusal, "{line}");
        }
    }
}
