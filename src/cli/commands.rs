//! `markbase nfs` (one user's server, or one per user) and `markbase fsck`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::NfsArgs;
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

/// `markbase nfs --serve --all`: one `markbase nfs --serve` process per
/// user (so that one user's crash leaves the others serving), their
/// addresses printed; SIGTERM or SIGINT stops them all (each commits first).
fn nfs_all(data_dir: &std::path::Path, a: &NfsArgs) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let users = manager::users(data_dir);
    if users.is_empty() {
        bail!("no users in {}", data_dir.join("users").display());
    }
    if a.listen.port() != 0 && users.len() > 1 {
        bail!("--all serves each user on its own port: give --listen ADDR:0");
    }
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT])?;
    let mut children = Vec::new();
    for u in &users {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["nfs", "--serve", "--user", u, "--listen"])
            .arg(a.listen.to_string());
        if !a.allow_clients.is_empty() {
            cmd.arg("--allow-clients").arg(a.allow_clients.join(","));
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        match markbase::nfs::service::addr_in_ready_line(&line) {
            Some(addr) => println!("{u:<16} nfs://{addr}/ (pid {})", child.id()),
            None => eprintln!("{u:<16} FAILED (see its log lines above)"),
        }
        children.push(child);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Until a signal, or until every server has exited on its own.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = tx.send(sig);
        }
    });
    loop {
        if rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
        {
            break;
        }
        if children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(Some(_))))
        {
            bail!("every server exited");
        }
    }
    for c in &children {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let mut failed = 0;
    for mut c in children {
        if !c.wait().map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} server(s) did not stop cleanly");
    }
    Ok(())
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
    let fs = markbase::daemon::open_library(&lib, markbase::fs::NameForm::AsGiven)?;
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
