//! The `markbase` binary's command line, on top of the library:
//!
//! * `args.rs`: the flags as clap parses them; `action.rs`: what a `fuse`
//!   command line asks for, decided once, with flags an action does not
//!   use refused;
//! * `fuse_cmd.rs` (mount, unmount, status, tests), `commands.rs` (`nfs`,
//!   `share`, `fsck`), `service_cli.rs`, `status.rs`, `cli_docs.rs` (completions,
//!   man pages): each runs its action and says what happened;
//! * `selftest/`: the built-in tests and benchmarks (`fuse --test`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};

use markbase::library::Library;

mod action;
mod args;
mod cli_docs;
mod commands;
mod fuse_cmd;
pub(crate) mod interrupt;
mod logging;
mod selftest;
mod service_cli;
pub(crate) mod status;

use args::{Cli, Command, LibraryCommand};

pub fn main() -> ExitCode {
    logging::init_logging();
    // Fail points from FAILPOINTS (the crash tests' build only).
    #[cfg(feature = "failpoints")]
    let _fail = fail::FailScenario::setup();
    let matches = Cli::command().get_matches();
    let result = Cli::from_arg_matches(&matches)
        .map_err(anyhow::Error::from)
        .and_then(|cli| run(cli, &matches));
    if let Some(code) = interrupt::exit_code() {
        // A built-in test stopped by Ctrl-C or SIGTERM, cleaned up.
        if let Err(e) = result {
            eprintln!("markbase: {e:#}");
        }
        eprintln!("markbase: interrupted; what was measured is above, and the test's mounts and data are gone");
        return ExitCode::from(code);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("markbase: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run a parsed command line; `matches`: the same, as clap saw it (to tell
/// flags given from defaults).
fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let ok = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Library {
            command: LibraryCommand::Create { user, demo },
        } => {
            let lib = Library::new(&cli.data_dir, &user)?;
            let n = lib.create(demo)?;
            println!("{}: created ({n} nodes)", lib.catalog_path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fuse(args) => {
            let sub = matches
                .subcommand_matches("fuse")
                .ok_or_else(|| anyhow::anyhow!("fuse: no arguments"))?;
            let action = action::Action::of(&args, sub)?;
            ok(fuse_cmd::run(&cli.data_dir, &args, action))
        }
        Command::Nfs(args) => ok(commands::nfs(&cli.data_dir, args)),
        Command::Share(args) => ok(commands::share(&cli.data_dir, &args)),
        Command::Fsck {
            user,
            repair,
            grace,
            json,
        } => Ok(commands::fsck(&cli.data_dir, &user, repair, &grace, json)),
        Command::Service { command } => ok(service_cli::run(&cli.data_dir, command)),
        Command::Completions { shell } => {
            cli_docs::completions(Cli::command(), shell);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            for page in cli_docs::man(Cli::command(), dir.as_deref())? {
                println!("{}", page.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
