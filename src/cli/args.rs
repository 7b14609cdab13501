//! The command line as clap parses it: `markbase [--data-dir D] COMMAND`.
//! What a `fuse` command line means is decided once, in `action.rs`.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use super::service_cli;

#[derive(Parser, Debug)]
#[command(
    name = "markbase",
    version,
    about = "Mount MarkBase media libraries as file systems"
)]
pub struct Cli {
    /// Data directory: users/<user>.sqlite, content/<user>/, media/<user>/.
    #[arg(
        long,
        global = true,
        env = "MARKBASE_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Share the users' mounts with a studio's Macs over SMB3: write the
    /// configuration of a Samba of our own, one share per user
    /// (MarkBase_<user>, on the mounts of `fuse --mount --all --dir DIR`).
    Share(ShareArgs),
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
pub enum LibraryCommand {
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
pub struct FuseArgs {
    /// Mount a user's library at --dir (returns once the mount answers).
    #[arg(long)]
    pub mount: bool,
    /// Flush and unmount the mount at --dir.
    #[arg(long)]
    pub unmount: bool,
    /// Print the cache and traffic counters of the mount at --dir.
    #[arg(long)]
    pub stats: bool,
    /// Every MarkBase mount of this machine: user, path, pid, state, backend,
    /// uptime, open files, bytes in/out, cache hit rate.
    #[arg(long)]
    pub status: bool,
    /// With --status: refresh the table (MB/s in and out, ops/s, open
    /// files, errors per mount) until Ctrl-C.
    #[arg(long, requires = "status")]
    pub watch: bool,
    /// --status --watch: seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// --status --watch: stop after this many refreshes (0: never).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// With --mount: every users/*.sqlite, each at --dir/MarkBase_<user>;
    /// with --unmount: every mount served from --data-dir.
    #[arg(long)]
    pub all: bool,
    /// With --mount: these users (comma-separated), each at --dir/MarkBase_<user>;
    /// with --test --stability or --aja: test these users at once.
    #[arg(long, value_delimiter = ',')]
    pub users: Vec<String>,
    /// Built-in throughput test through a mount, against the backing directory.
    #[arg(long)]
    pub test: bool,
    /// The user whose library (users/<user>.sqlite) to mount, or with
    /// --unmount whose mounts to unmount; --test makes a demo library when
    /// none is given.
    #[arg(long)]
    pub user: Option<String>,
    /// Mount point (on a Mac when not given: /Volumes/MarkBase_<user> as
    /// root, ~/MarkBase/<user> otherwise).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Stay attached (for a service manager) instead of returning once mounted.
    #[arg(long)]
    pub foreground: bool,
    /// Let other users (and root-run tools) in, as FUSE's allow_other does.
    #[arg(long)]
    pub allow_other: bool,
    /// Serve file I/O through the daemon instead of kernel passthrough (what
    /// macOS and kernels before 6.9 get).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Backend: auto, kernel (Linux FUSE, macFUSE), nfs (the built-in NFS
    /// server), fuse-t or fuse-t-smb (FUSE-T), fskit (macOS 15.4+).
    /// Overrides `backend` in markbase.toml.
    #[arg(long)]
    pub backend: Option<markbase::platform::BackendChoice>,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// --test: bytes to write and read (e.g. 512MB, 6GB).
    #[arg(long, default_value = "1GB")]
    pub size: String,
    /// --test: print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// --test: an AJA System Test-style frame test.
    #[arg(long)]
    pub aja: bool,
    /// --test --aja: the video format (`list` lists them).
    #[arg(long, default_value = "4K_ProRes")]
    pub config: String,
    /// --test --aja: file size, as AJA offers (1GB, 4GB, 16GB, 64GB).
    #[arg(long, default_value = "1GB")]
    pub file_size: String,
    /// --test: ten mounts under a mixed, verified workload for --duration
    /// (with --backend nfs: ten NFS servers, each worker a client of its own).
    #[arg(long)]
    pub stability: bool,
    /// --test --stability --backend nfs: which NFS client the workers are:
    /// `library` (nfs3_client in this process) or `kernel` (a QEMU guest's
    /// kernel NFS client mounting every server; needs scripts/nfs-vm; its
    /// MB/s are the emulated guest's, not the servers').
    #[arg(long, value_enum)]
    pub client: Option<NfsClient>,
    /// --test --stability: soak these folders (comma-separated), mounted by
    /// something else (an NFS or SMB mount, another file system), instead
    /// of mounting users; no memory is sampled.
    #[arg(long, value_delimiter = ',', value_name = "DIRS")]
    pub on: Vec<PathBuf>,
    /// --test --stability: how long (30s, 10m, 24h).
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// --test --stability (10 unless given) or --aja (1 unless given): how
    /// many demo users to make and mount, each tested at once.
    #[arg(long)]
    pub mounts: Option<usize>,
    /// --test --backend nfs: also measure `rclone serve nfs` (this rclone
    /// binary) on the same directory with the same client.
    #[arg(long)]
    pub peer_rclone: Option<PathBuf>,
    /// Serve the mounts' counters (OpenMetrics text, for Prometheus) at
    /// http://ADDR/metrics: with --mount --all --foreground every user's,
    /// with --mount one user's. E.g. 127.0.0.1:9567.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// --test: draw throughput over time into this SVG file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// With --mount --all --foreground: serve the mounts to a studio's
    /// Macs over SMB3 with Samba (`markbase share`'s configuration, kept in
    /// --data-dir/samba), started once they are mounted, reloaded with
    /// them on SIGHUP, started again if it dies, stopped first. Needs
    /// --allow-other (Samba runs as root).
    #[arg(long)]
    pub smb: bool,
    /// --smb: the port Samba listens on (445 is SMB's own).
    #[arg(long, default_value_t = 445, requires = "smb")]
    pub smb_port: u16,
    /// --smb: other machines allowed to connect (CIDR or address,
    /// comma-separated); loopback always is.
    #[arg(long, value_delimiter = ',', requires = "smb")]
    pub allow_clients: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").required(true).args(["serve"])))]
pub struct NfsArgs {
    /// Serve --user's library (the address is printed once it answers).
    #[arg(long)]
    pub serve: bool,
    /// The user whose library (users/<user>.sqlite) to serve.
    #[arg(long)]
    pub user: Option<String>,
    /// Every users/*.sqlite, one server process each (each on its own
    /// port of --listen's address), until SIGTERM or Ctrl-C.
    #[arg(long, conflicts_with = "user")]
    pub all: bool,
    /// Address and port to serve on; port 0 picks a free one. Anything but
    /// loopback needs --allow-clients.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Other machines allowed to connect (CIDR or address, comma-separated);
    /// loopback always is. Connections from elsewhere are closed unanswered.
    #[arg(long, value_delimiter = ',')]
    pub allow_clients: Vec<String>,
    /// Serve the server's counters (OpenMetrics text) at http://ADDR/metrics
    /// (with --user).
    #[arg(long, value_name = "ADDR", conflicts_with = "all")]
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("who").required(true).args(["all", "users"])))]
pub struct ShareArgs {
    /// Every users/*.sqlite.
    #[arg(long)]
    pub all: bool,
    /// These users (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub users: Vec<String>,
    /// Where the mounts are: each user's at DIR/MarkBase_<user>.
    #[arg(long)]
    pub dir: PathBuf,
    /// The port Samba listens on (445 is SMB's own).
    #[arg(long, default_value_t = 445)]
    pub smb_port: u16,
    /// Other machines allowed to connect (CIDR or address, comma-separated);
    /// loopback always is.
    #[arg(long, value_delimiter = ',')]
    pub allow_clients: Vec<String>,
    /// Samba's own folder: its accounts, locks, logs and smb.conf
    /// [default: <data-dir>/samba].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the configuration instead of writing <state-dir>/smb.conf.
    #[arg(long)]
    pub print: bool,
}

/// The NFS client of `--test --stability --backend nfs`'s workers.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum NfsClient {
    /// `nfs3_client`, in this process.
    Library,
    /// A QEMU guest's kernel NFS client (`scripts/nfs-vm`).
    Kernel,
}
