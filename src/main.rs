//! `markbase`: the command line (`cli/`). Library code returns typed
//! errors; this binary adds context (`anyhow`) and prints one line per
//! failure.

#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
