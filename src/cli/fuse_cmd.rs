//! `markbase fuse`: each [`Action`] run, and what happened said in a line
//! per mount.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::action::{Action, Serving, Test, Users, NFS};
use super::args::{FuseArgs, NfsClient};
use super::selftest::{bench, bench_multi, bench_nfs, stability};
use super::{interrupt, status};
use markbase::library::Library;
use markbase::manage::manager;
use markbase::manage::mount::{self, MountSpec};

pub fn run(data_dir: &Path, a: &FuseArgs, action: Action) -> Result<()> {
    match action {
        Action::Mount {
            user,
            dir,
            foreground,
            serving,
            metrics,
        } => {
            let dir = match dir {
                Some(d) => d,
                None => default_mountpoint(&user)?,
            };
            let mut spec = spec(data_dir, &user, dir.clone(), &serving)?;
            spec.metrics = metrics;
            if foreground {
                return Ok(mount::serve(&spec, mount::ready_fd_from_env())?);
            }
            let pid = mount::spawn_daemon(&spec)?;
            println!("mounted {user} at {} (daemon pid {pid})", dir.display());
            Ok(())
        }
        Action::Supervise {
            base,
            serving,
            metrics,
            smb,
        } => {
            let spec_for = |u: &str| spec(data_dir, u, manager::mountpoint_for(&base, u), &serving);
            let companion = match smb {
                Some(s) => Some(Box::new(markbase::manage::samba::Samba::new(
                    &mount::absolute(data_dir),
                    &mount::absolute(&base),
                    s.port,
                    s.allow_clients,
                )?) as Box<dyn manager::Companion>),
                None => None,
            };
            let opts = manager::SuperviseOpts { metrics, companion };
            Ok(manager::supervise(
                data_dir,
                &manager::Mounts(spec_for),
                &opts,
            )?)
        }
        Action::MountMany {
            users,
            base,
            serving,
        } => mount_many(data_dir, users, &base, &serving),
        Action::Unmount { dir } => {
            mount::unmount(&dir)?;
            println!("unmounted {}", dir.display());
            Ok(())
        }
        Action::UnmountMany { user } => unmount_many(data_dir, user.as_deref()),
        Action::Stats { dir, json } => status::print_stats(&dir, json),
        Action::Status { json } => status::print_status(json),
        Action::Watch { interval, count } => status::watch(interval, count),
        Action::Test(test) => self_test(data_dir, a, test),
    }
}

fn spec(
    data_dir: &Path,
    user: &str,
    mountpoint: PathBuf,
    s: &Serving,
) -> Result<MountSpec, mount::MountError> {
    Ok(MountSpec {
        library: Library::new(data_dir, user)?,
        mountpoint,
        allow_other: s.allow_other,
        threads: s.threads,
        passthrough: s.passthrough,
        backend: s.backend,
        metrics: None,
    })
}

/// Where a Mac mounts without `--dir`: where Finder shows drives, or in
/// the user's home. Elsewhere `--dir` is needed.
fn default_mountpoint(user: &str) -> Result<PathBuf> {
    if !cfg!(target_os = "macos") {
        bail!("--mount needs --dir");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let d = markbase::platform::macos::default_mountpoint(
        user,
        nix::unistd::geteuid().is_root(),
        home.as_deref(),
    )
    .context("--mount needs --dir: no home folder for the default mount point")?;
    std::fs::create_dir_all(&d)
        .with_context(|| format!("create the mount point {}", d.display()))?;
    Ok(d)
}

fn mount_many(data_dir: &Path, users: Users, base: &Path, serving: &Serving) -> Result<()> {
    let users = match users {
        Users::All => manager::users(data_dir),
        Users::These(u) => u,
    };
    if users.is_empty() {
        bail!("no users in {}", data_dir.join("users").display());
    }
    let mut specs = Vec::new();
    for u in &users {
        specs.push(spec(
            data_dir,
            u,
            manager::mountpoint_for(base, u),
            serving,
        )?);
    }
    let t = std::time::Instant::now();
    let results = manager::mount_many(specs);
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    for r in &results {
        match &r.result {
            Ok(pid) => println!(
                "{:<16} mounted at {} (pid {pid})",
                r.user,
                r.mountpoint.display()
            ),
            Err(e) => eprintln!("{:<16} FAILED: {e}", r.user),
        }
    }
    println!(
        "{} of {} mounted in {} ms",
        results.len() - failed,
        results.len(),
        t.elapsed().as_millis()
    );
    if failed > 0 {
        bail!("{failed} mount(s) failed; the others stay mounted");
    }
    Ok(())
}

fn unmount_many(data_dir: &Path, user: Option<&str>) -> Result<()> {
    let dirs: Vec<PathBuf> = match user {
        Some(u) => manager::mounts_of(u),
        None => manager::mounts_in(data_dir),
    };
    if dirs.is_empty() {
        bail!(
            "no MarkBase mounts{}",
            user.map(|u| format!(" of user {u}")).unwrap_or_default()
        );
    }
    let mut failed = 0;
    for (d, r) in manager::unmount_many(dirs) {
        match r {
            Ok(()) => println!("unmounted {}", d.display()),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", d.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} unmount(s) failed");
    }
    Ok(())
}

fn self_test(data_dir: &Path, a: &FuseArgs, test: Test) -> Result<()> {
    interrupt::catch().context("catching Ctrl-C")?;
    let opts = bench::TestOpts {
        data_dir,
        user: a.user.as_deref(),
        passthrough: !a.no_passthrough,
        json: a.json,
        chart: a.chart.as_deref(),
    };
    match test {
        Test::Stability => {
            let mut names = a.users.clone();
            names.extend(a.user.clone());
            stability::run(&stability::StabilityOpts {
                data_dir,
                names,
                users: a.mounts.unwrap_or(10),
                duration: stability::parse_duration(&a.duration)?,
                passthrough: !a.no_passthrough,
                nfs: a.backend == Some(NFS),
                kernel_client: a.client == Some(NfsClient::Kernel),
                on: a.on.clone(),
                json: a.json,
                chart: a.chart.as_deref(),
            })
        }
        Test::NfsThroughput => bench_nfs::throughput(
            data_dir,
            a.user.as_deref(),
            bench::parse_size(&a.size)?,
            a.json,
            a.peer_rclone.as_deref(),
        ),
        Test::AjaMany => bench_multi::aja_many(&bench_multi::ManyOpts {
            data_dir,
            users: a.users.clone(),
            mounts: a.mounts.unwrap_or(1),
            passthrough: !a.no_passthrough,
            json: a.json,
            chart: a.chart.as_deref(),
            config: &a.config,
            file_size: bench::parse_size(&a.file_size)?,
        }),
        Test::Aja => bench::aja(&opts, &a.config, bench::parse_size(&a.file_size)?),
        Test::Throughput => bench::throughput(&opts, bench::parse_size(&a.size)?),
    }
}
