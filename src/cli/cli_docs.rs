//! Docs in the terminal, made from the argument parser itself (as ripgrep
//! and fd make theirs): shell completions (`clap_complete`) and man pages
//! (`clap_mangen`: `markbase.1` and one page per subcommand,
//! `markbase-fuse.1` and so on). Nothing here is written by hand, so the
//! pages and completions cannot drift from the flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Completions for `shell`, on standard output.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
}

/// The man pages into `dir` (made if missing), the pages written; without
/// a folder, `markbase.1` on standard output.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    clap_mangen::generate_to(cmd, dir).with_context(|| dir.display().to_string())?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}
