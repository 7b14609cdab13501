//! `markbase nfs` (one user's server, or one per user), `markbase share`
//! (a Samba configuration for every user's mount) and `markbase fsck`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::{NfsArgs, ShareArgs};
use super::selftest::stability;
use markbase::library::Library;
use markbase::manage::{manager, mount};

/// `markbase nfs`.
pub fn nfs(data_dir: &std::path::Path, a: NfsArgs) -> Result<()> {
    use markbase::nfs::{service, AllowList, ServeOptions};
    if a.all {
        return nfs_all(data_dir, &a);
    }
    let user = a.user.as_deref().context("--serve needs --user or --all")?;
    let lib = Library::new(data_dir, user)?;
    let opts = ServeOptions {
        listen: a.listen,
        allow: AllowList::parse(&a.allow_clients)?,
        metrics: a.metrics,
    };
    service::serve_library(&lib, &opts, |addr| {
        // Printed, not required: a closed stdout must not stop a server.
        use std::io::Write;
        let (ip, port) = (addr.ip(), addr.port());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", service::ready_line(user, addr));
        let _ = writeln!(
            out,
            "  libnfs: nfs://{ip}//?version=3&nfsport={port}&mountport={port}"
        );
        let mut mac = markbase::platform::macos::mount_nfs_command(
            port,
            // What a Mac's user (not root) mounts on: a folder of their own.
            std::path::Path::new(&format!("~/MarkBase/{user}")),
            Default::default(),
        );
        if let Some(host) = mac.iter_mut().find(|a| a.ends_with(":/")) {
            *host = format!("{ip}:/");
        }
        let _ = writeln!(out, "  macOS:  {}", mac.join(" "));
        let _ = out.flush();
    })?;
    Ok(())
}

/// `markbase share`: the Samba configuration for the users' mounts, written
/// into Samba's own folder (or printed), and what to do next.
pub fn share(data_dir: &std::path::Path, a: &ShareArgs) -> Result<()> {
    use markbase::manage::samba::{self, shares_of, write_config};
    use markbase::manage::share::{samba_config, share_name, ShareOptions};
    let users = if a.all {
        manager::users(data_dir)
    } else {
        a.users.clone()
    };
    if users.is_empty() {
        bail!("no users in {}", data_dir.join("users").display());
    }
    markbase::nfs::AllowList::parse(&a.allow_clients)?;
    let state_dir = mount::absolute(
        &a.state_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("samba")),
    );
    let shares = shares_of(data_dir, &users)?;
    let opts = ShareOptions {
        mounts_dir: mount::absolute(&a.dir),
        port: a.smb_port,
        allow: a.allow_clients.clone(),
        state_dir,
    };
    if a.print {
        print!("{}", samba_config(&opts, &shares)?);
        return Ok(());
    }
    let file = write_config(&opts, &shares)?;
    let names: Vec<String> = users.iter().map(|u| share_name(u)).collect();
    println!("wrote {} ({})", file.display(), names.join(", "));
    let live = mount::markbase_mounts();
    let unmounted: Vec<&String> = users
        .iter()
        .filter(|u| {
            let mp = manager::mountpoint_for(&opts.mounts_dir, u);
            !live.iter().any(|m| m.mountpoint == mp)
        })
        .collect();
    if !unmounted.is_empty() {
        println!(
            "  not mounted yet ({}): markbase fuse --mount --all --allow-other --dir {}",
            unmounted
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            opts.mounts_dir.display()
        );
    }
    let mut accounts: Vec<&String> = shares
        .iter()
        .flat_map(|s| &s.valid_users)
        .filter(|u| !u.starts_with('@'))
        .collect();
    accounts.sort();
    accounts.dedup();
    for acc in accounts {
        println!(
            "  a password for {acc}: smbpasswd -c {} -a {acc}",
            file.display()
        );
    }
    println!(
        "  start Samba: smbd --foreground --no-process-group --configfile {}",
        file.display()
    );
    if let Err(e) = samba::smbd() {
        println!("  {e}");
    }
    Ok(())
}

/// `markbase nfs --serve --all`: one `markbase nfs --serve` process per
/// user, their addresses printed, kept running by the supervisor (started
/// again on their ports should one die); SIGTERM or SIGINT stops them all
/// (each commits first).
fn nfs_all(data_dir: &std::path::Path, a: &NfsArgs) -> Result<()> {
    let users = manager::users(data_dir);
    if users.is_empty() {
        bail!("no users in {}", data_dir.join("users").display());
    }
    if a.listen.port() != 0 && users.len() > 1 {
        bail!("--all serves each user on its own port: give --listen ADDR:0");
    }
    let servers = markbase::manage::servers::NfsServers {
        data_dir: data_dir.to_path_buf(),
        listen: a.listen,
        allow_clients: a.allow_clients.clone(),
    };
    Ok(manager::supervise(data_dir, &servers, &Default::default())?)
}

/// `markbase fsck`: 0 clean, 1 damage found (repaired or not), 2 could
/// not check.
pub fn fsck(
    data_dir: &std::path::Path,
    user: &str,
    repair: bool,
    grace: &str,
    json: bool,
) -> ExitCode {
    match check(data_dir, user, repair, grace, json) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("markbase: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Check (and repair) a library; true when it was clean.
fn check(
    data_dir: &std::path::Path,
    user: &str,
    repair: bool,
    grace: &str,
    json: bool,
) -> Result<bool> {
    let lib = Library::new(data_dir, user)?;
    if repair {
        let live: Vec<_> = manager::mounts_in(data_dir)
            .into_iter()
            .filter(|m| {
                mount::markbase_mounts()
                    .iter()
                    .any(|k| &k.mountpoint == m && k.user() == Some(user))
            })
            .collect();
        if let Some(m) = live.first() {
            bail!(
                "{user} is mounted at {}: unmount it first (markbase fuse --unmount --dir {})",
                m.display(),
                m.display()
            );
        }
    }
    let fs = markbase::daemon::open_library(
        &lib,
        markbase::fs::NameForm::AsGiven,
        markbase::fs::AppleDoubleView::default(),
    )?;
    let report = fs.check(&markbase::fs::check::CheckOpts {
        repair,
        offline: true,
        grace: stability::parse_duration(grace)?,
        lost_found: lib.lost_found_dir(),
    })?;
    fs.catalog().sync()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {}",
            lib.catalog_path().display(),
            if report.is_clean() {
                "clean"
            } else {
                "DAMAGED"
            }
        );
        for l in &report.damage {
            println!("  damage:   {l}");
        }
        for l in &report.repaired {
            println!("  repaired: {l}");
        }
        for l in &report.notes {
            println!("  note:     {l}");
        }
        if !report.is_clean() && !repair {
            println!("  run with --repair (with the library unmounted) to repair");
        }
    }
    Ok(report.is_clean())
}
