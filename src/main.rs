//! `markbase`: the command line. Library code returns typed errors; this
//! binary adds context (`anyhow`) and prints one line per failure.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};

use markbase::library::Library;
use markbase::manager;
use markbase::mount::{self, MountSpec};

mod bench;
mod bench_multi;
mod bench_nfs;
mod cli_docs;
mod interrupt;
mod service_cli;
mod stability;
mod stability_guest;
mod stability_nfs;
mod status;

#[derive(Parser, Debug)]
#[command(
    name = "markbase",
    version,
    about = "Mount MarkBase media libraries as file systems"
)]
struct Cli {
    /// Data directory: users/<user>.sqlite, content/<user>/, media/<user>/.
    #[arg(
        long,
        global = true,
        env = "MARKBASE_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make and inspect libraries.
    Library {
        #[command(subcommand)]
        command: LibraryCommand,
    },
    /// Mount, unmount, inspect and test FUSE mounts.
    Fuse(Box<FuseArgs>),
    /// Serve libraries over NFSv3 (for macOS's own NFS client, and other
    /// machines): in the foreground, until SIGTERM or Ctrl-C.
    Nfs(NfsArgs),
    /// Check a user's library (catalog and content store); exit 1 on damage.
    Fsck {
        /// The user whose library (users/<user>.sqlite) to check.
        #[arg(long)]
        user: String,
        /// Repair what is found (refused while the library is mounted).
        #[arg(long)]
        repair: bool,
        /// Content files younger than this are not called orphans (a writer
        /// may be about to commit their row).
        #[arg(long, default_value = "0s")]
        grace: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the drives as a service (systemd on Linux, launchd on macOS).
    Service {
        #[command(subcommand)]
        command: service_cli::ServiceCommand,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to
    /// standard output, e.g. `markbase completions bash >
    /// /usr/share/bash-completion/completions/markbase`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (markbase.1 and one per subcommand) into --dir,
    /// or markbase.1 to standard output.
    Man {
        /// Folder for the pages (made if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum LibraryCommand {
    /// Make a new user's empty catalog (v1 format), or with --demo a small media tree.
    Create {
        /// The new user (users/<user>.sqlite).
        #[arg(long)]
        user: String,
        /// Fill it with a small demo media tree and its content files.
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").required(true).args(["mount", "unmount", "stats", "status", "test"])))]
struct FuseArgs {
    /// Mount a user's library at --dir (returns once the mount answers).
    #[arg(long)]
    mount: bool,
    /// Flush and unmount the mount at --dir.
    #[arg(long)]
    unmount: bool,
    /// Print the cache and traffic counters of the mount at --dir.
    #[arg(long)]
    stats: bool,
    /// Every MarkBase mount of this machine: user, path, pid, state, backend,
    /// uptime, open files, bytes in/out, cache hit rate.
    #[arg(long)]
    status: bool,
    /// With --status: refresh the table (MB/s in and out, ops/s, open
    /// files, errors per mount) until Ctrl-C.
    #[arg(long, requires = "status")]
    watch: bool,
    /// --status --watch: seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// --status --watch: stop after this many refreshes (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// With --mount: every users/*.sqlite, each at --dir/MarkBase_<user>;
    /// with --unmount: every mount served from --data-dir.
    #[arg(long)]
    all: bool,
    /// With --mount: these users (comma-separated), each at --dir/MarkBase_<user>;
    /// with --test --stability or --aja: test these users at once.
    #[arg(long, value_delimiter = ',')]
    users: Vec<String>,
    /// Built-in throughput test through a mount, against the backing directory.
    #[arg(long)]
    test: bool,
    /// The user whose library (users/<user>.sqlite) to mount, or with
    /// --unmount whose mounts to unmount; --test makes a demo library when
    /// none is given.
    #[arg(long)]
    user: Option<String>,
    /// Mount point (on a Mac when not given: /Volumes/MarkBase_<user> as
    /// root, ~/MarkBase/<user> otherwise).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Stay attached (for a service manager) instead of returning once mounted.
    #[arg(long)]
    foreground: bool,
    /// Let other users (and root-run tools) in, as FUSE's allow_other does.
    #[arg(long)]
    allow_other: bool,
    /// Serve file I/O through the daemon instead of kernel passthrough (what
    /// macOS and kernels before 6.9 get).
    #[arg(long)]
    no_passthrough: bool,
    /// Backend: auto, kernel (Linux FUSE, macFUSE), nfs (the built-in NFS
    /// server), fuse-t or fuse-t-smb (FUSE-T), fskit (macOS 15.4+).
    /// Overrides `backend` in markbase.toml.
    #[arg(long)]
    backend: Option<markbase::platform::BackendChoice>,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// --test: bytes to write and read (e.g. 512MB, 6GB).
    #[arg(long, default_value = "1GB")]
    size: String,
    /// --test: print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// --test: an AJA System Test-style frame test.
    #[arg(long)]
    aja: bool,
    /// --test --aja: the video format (`list` lists them).
    #[arg(long, default_value = "4K_ProRes")]
    config: String,
    /// --test --aja: file size, as AJA offers (1GB, 4GB, 16GB, 64GB).
    #[arg(long, default_value = "1GB")]
    file_size: String,
    /// --test: ten mounts under a mixed, verified workload for --duration
    /// (with --backend nfs: ten NFS servers, each worker a client of its own).
    #[arg(long)]
    stability: bool,
    /// --test --stability --backend nfs: which NFS client the workers are:
    /// `library` (nfs3_client in this process) or `kernel` (a QEMU guest's
    /// kernel NFS client mounting every server; needs scripts/nfs-vm; its
    /// MB/s are the emulated guest's, not the servers').
    #[arg(long, value_enum)]
    client: Option<NfsClient>,
    /// --test --stability: soak these folders (comma-separated), mounted by
    /// something else (an NFS or SMB mount, another file system), instead
    /// of mounting users; no memory is sampled.
    #[arg(long, value_delimiter = ',', value_name = "DIRS")]
    on: Vec<PathBuf>,
    /// --test --stability: how long (30s, 10m, 24h).
    #[arg(long, default_value = "30s")]
    duration: String,
    /// --test --stability (10 unless given) or --aja (1 unless given): how
    /// many demo users to make and mount, each tested at once.
    #[arg(long)]
    mounts: Option<usize>,
    /// --test --backend nfs: also measure `rclone serve nfs` (this rclone
    /// binary) on the same directory with the same client.
    #[arg(long)]
    peer_rclone: Option<PathBuf>,
    /// Serve the mounts' counters (OpenMetrics text, for Prometheus) at
    /// http://ADDR/metrics: with --mount --all --foreground every user's,
    /// with --mount one user's. E.g. 127.0.0.1:9567.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// --test: draw throughput over time into this SVG file.
    #[arg(long)]
    chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").required(true).args(["serve"])))]
struct NfsArgs {
    /// Serve --user's library (the address is printed once it answers).
    #[arg(long)]
    serve: bool,
    /// The user whose library (users/<user>.sqlite) to serve.
    #[arg(long)]
    user: Option<String>,
    /// Every users/*.sqlite, one server process each (each on its own
    /// port of --listen's address), until SIGTERM or Ctrl-C.
    #[arg(long, conflicts_with = "user")]
    all: bool,
    /// Address and port to serve on; port 0 picks a free one. Anything but
    /// loopback needs --allow-clients.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Other machines allowed to connect (CIDR or address, comma-separated);
    /// loopback always is. Connections from elsewhere are closed unanswered.
    #[arg(long, value_delimiter = ',')]
    allow_clients: Vec<String>,
    /// Serve the server's counters (OpenMetrics text) at http://ADDR/metrics
    /// (with --user).
    #[arg(long, value_name = "ADDR", conflicts_with = "all")]
    metrics: Option<std::net::SocketAddr>,
}

/// Logs go to standard error, or with `MARKBASE_LOG_DIR` (which a mount's
/// daemon is started with, and the launchd agent) to a file a day in that
/// folder, `markbase.YYYY-MM-DD.log`, the last `MARKBASE_LOG_KEEP` (14)
/// kept: a drive mounted for months must not fill its disk with logs.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MARKBASE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let rolling = std::env::var_os("MARKBASE_LOG_DIR").and_then(|base| {
        let base = std::path::PathBuf::from(base);
        // A second process on the same library logs in a folder of its own.
        let dir = markbase::library::Library::claim_log_dir(&base).unwrap_or(base.clone());
        if dir != base {
            follow_stderr(&base, &dir);
        }
        let keep = std::env::var("MARKBASE_LOG_KEEP")
            .ok()
            .and_then(|k| k.parse().ok())
            .unwrap_or(14usize);
        tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("markbase")
            .filename_suffix("log")
            .max_log_files(keep.max(1))
            .build(&dir)
            .map_err(|e| {
                eprintln!(
                    "markbase: logging to {}: {e}; logging to standard error",
                    std::path::Path::new(&dir).display()
                )
            })
            .ok()
    });
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match rolling {
        Some(file) => fmt.with_ansi(false).with_writer(file).try_init(),
        None => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
    };
}

/// A daemon started with its standard error in `base/stderr.log` that logs
/// in `dir` (another process logs in `base`): its standard output and error
/// go to `dir/stderr.log` instead. Anything else (a terminal) is left alone.
fn follow_stderr(base: &std::path::Path, dir: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(shared) = std::fs::metadata(base.join("stderr.log")) else {
        return;
    };
    let ours = std::fs::metadata("/proc/self/fd/2")
        .or_else(|_| std::fs::metadata("/dev/fd/2"))
        .is_ok_and(|m| m.dev() == shared.dev() && m.ino() == shared.ino());
    if !ours {
        return;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
    else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: dup2 onto descriptors 1 and 2, which this process owns; `f`
    // stays open for the calls and its own descriptor closes after them.
    unsafe {
        libc::dup2(fd, 1);
        libc::dup2(fd, 2);
    }
}

fn main() -> ExitCode {
    init_logging();
    // Fail points from FAILPOINTS (the crash tests' build only).
    #[cfg(feature = "failpoints")]
    let _fail = fail::FailScenario::setup();
    let cli = Cli::parse();
    if let Command::Fsck {
        user,
        repair,
        grace,
        json,
    } = &cli.command
    {
        // fsck: 0 clean, 1 damage found (repaired or not), 2 could not check.
        return match fsck(&cli.data_dir, user, *repair, grace, *json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("markbase: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let result = run(cli);
    if let Some(code) = interrupt::exit_code() {
        // A built-in test stopped by Ctrl-C or SIGTERM, cleaned up.
        if let Err(e) = result {
            eprintln!("markbase: {e:#}");
        }
        eprintln!("markbase: interrupted; what was measured is above, and the test's mounts and data are gone");
        return ExitCode::from(code);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("markbase: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Library {
            command: LibraryCommand::Create { user, demo },
        } => {
            let lib = Library::new(&cli.data_dir, &user)?;
            let n = lib.create(demo)?;
            println!("{}: created ({n} nodes)", lib.catalog_path().display());
            Ok(())
        }
        Command::Fuse(args) => fuse(&cli.data_dir, *args),
        Command::Nfs(args) => nfs(&cli.data_dir, args),
        Command::Fsck { .. } => unreachable!("handled in main"),
        Command::Service { command } => service_cli::run(&cli.data_dir, command),
        Command::Completions { shell } => {
            cli_docs::completions(Cli::command(), shell);
            Ok(())
        }
        Command::Man { dir } => {
            for page in cli_docs::man(Cli::command(), dir.as_deref())? {
                println!("{}", page.display());
            }
            Ok(())
        }
    }
}

/// `markbase nfs`.
fn nfs(data_dir: &std::path::Path, a: NfsArgs) -> Result<()> {
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

/// Check (and repair) a library; true when it was clean.
fn fsck(
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

fn fuse(data_dir: &std::path::Path, a: FuseArgs) -> Result<()> {
    if a.mount && a.allow_other && a.backend == Some(NFS) {
        bail!("--allow-other: an NFS mount lets every user in by the files' permissions already");
    }
    let make_spec = |u: &str, mountpoint: PathBuf| -> Result<MountSpec, mount::MountError> {
        Ok(MountSpec {
            library: Library::new(data_dir, u)?,
            mountpoint,
            allow_other: a.allow_other,
            threads: a.threads,
            passthrough: !a.no_passthrough,
            backend: a.backend,
            metrics: None,
        })
    };
    if a.mount && (a.all || !a.users.is_empty()) {
        let base = a
            .dir
            .clone()
            .context("--mount --all needs --dir (the folder to mount users in)")?;
        if a.all && a.foreground {
            let spec_for = |u: &str| make_spec(u, manager::mountpoint_for(&base, u));
            let opts = manager::SuperviseOpts { metrics: a.metrics };
            return Ok(manager::supervise(data_dir, spec_for, &opts)?);
        }
        let users = if a.all {
            manager::users(data_dir)
        } else {
            a.users.clone()
        };
        if users.is_empty() {
            bail!("no users in {}", data_dir.join("users").display());
        }
        let mut specs = Vec::new();
        for u in &users {
            specs.push(make_spec(u, manager::mountpoint_for(&base, u))?);
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
        return Ok(());
    }
    if a.unmount && (a.all || a.user.is_some()) && a.dir.is_none() {
        let dirs: Vec<PathBuf> = match &a.user {
            Some(u) => manager::mounts_of(u),
            None => manager::mounts_in(data_dir),
        };
        if dirs.is_empty() {
            bail!(
                "no MarkBase mounts{}",
                a.user
                    .as_ref()
                    .map(|u| format!(" of user {u}"))
                    .unwrap_or_default()
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
        return Ok(());
    }
    if a.status && a.watch {
        return status::watch(
            std::time::Duration::from_secs_f64(a.interval.max(0.1)),
            a.count,
        );
    }
    if a.status {
        return status::print_status(a.json);
    }
    if a.mount {
        let user = a.user.as_deref().context("--mount needs --user")?;
        let dir = match a.dir.clone() {
            Some(d) => d,
            // A Mac mounts where Finder shows drives, or in the user's home.
            None if cfg!(target_os = "macos") => {
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let d = markbase::platform::macos::default_mountpoint(
                    user,
                    nix::unistd::geteuid().is_root(),
                    home.as_deref(),
                )
                .context("--mount needs --dir: no home folder for the default mount point")?;
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("create the mount point {}", d.display()))?;
                d
            }
            None => anyhow::bail!("--mount needs --dir"),
        };
        let mut spec = make_spec(user, dir.clone())?;
        spec.metrics = a.metrics;
        if a.foreground {
            return Ok(mount::serve(&spec, mount::ready_fd_from_env())?);
        }
        let pid = mount::spawn_daemon(&spec)?;
        println!("mounted {user} at {} (daemon pid {pid})", dir.display());
        return Ok(());
    }
    if a.unmount {
        let dir = a.dir.context("--unmount needs --dir")?;
        mount::unmount(&dir)?;
        println!("unmounted {}", dir.display());
        return Ok(());
    }
    if a.stats {
        let dir = a.dir.context("--stats needs --dir")?;
        return status::print_stats(&dir, a.json);
    }
    if a.test {
        if a.mounts == Some(0) {
            bail!("--mounts 0: a test needs at least one mount");
        }
        refuse_in_test(&a)?;
        interrupt::catch().context("catching Ctrl-C")?;
        let opts = bench::TestOpts {
            data_dir,
            user: a.user.as_deref(),
            passthrough: !a.no_passthrough,
            json: a.json,
            chart: a.chart.as_deref(),
        };
        if a.stability {
            let mut names = a.users.clone();
            names.extend(a.user.clone());
            return stability::run(&stability::StabilityOpts {
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
            });
        }
        if a.backend == Some(NFS) {
            return bench_nfs::throughput(
                data_dir,
                a.user.as_deref(),
                bench::parse_size(&a.size)?,
                a.json,
                a.peer_rclone.as_deref(),
            );
        }
        if a.aja && (a.mounts.is_some_and(|n| n > 1) || !a.users.is_empty()) {
            return bench_multi::aja_many(&bench_multi::ManyOpts {
                data_dir,
                users: a.users.clone(),
                mounts: a.mounts.unwrap_or(1),
                passthrough: !a.no_passthrough,
                json: a.json,
                chart: a.chart.as_deref(),
                config: &a.config,
                file_size: bench::parse_size(&a.file_size)?,
            });
        }
        if a.aja {
            return bench::aja(&opts, &a.config, bench::parse_size(&a.file_size)?);
        }
        return bench::throughput(&opts, bench::parse_size(&a.size)?);
    }
    bail!("nothing to do")
}

/// The NFS client of `--test --stability --backend nfs`'s workers.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum NfsClient {
    /// `nfs3_client`, in this process.
    Library,
    /// A QEMU guest's kernel NFS client (`scripts/nfs-vm`).
    Kernel,
}

const NFS: markbase::platform::BackendChoice =
    markbase::platform::BackendChoice::Fixed(markbase::platform::Backend::Nfs);

/// The flags a `--test` mode cannot honour, refused in one line each.
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
    use super::*;

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
}
