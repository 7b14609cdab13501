//! Ctrl-C and SIGTERM during a built-in test (`markbase fuse --test ...`):
//! the signal only sets a flag. The test's loops see it, stop their workers
//! and return what they measured so far; the normal way out then prints it,
//! writes `--json` and `--chart`, unmounts, stops the daemons and removes
//! the temporary data; `main` exits 130 (SIGINT) or 143 (SIGTERM), as a
//! shell reports a command the signal killed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catch SIGINT and SIGTERM from now on (the default action, killing the
/// process, would leave mounts, daemons and temporary data behind).
pub fn catch() -> std::io::Result<()> {
    let flag = CAUGHT.get_or_init(Arc::default).clone();
    signal_hook::flag::register_usize(libc::SIGINT, flag.clone(), 128 + libc::SIGINT as usize)?;
    signal_hook::flag::register_usize(libc::SIGTERM, flag, 128 + libc::SIGTERM as usize)?;
    Ok(())
}

/// Has a signal asked the test to stop?
pub fn interrupted() -> bool {
    exit_code().is_some()
}

/// The exit status the caught signal calls for (130 or 143).
pub fn exit_code() -> Option<u8> {
    let v = CAUGHT.get()?.load(Ordering::Relaxed);
    u8::try_from(v).ok().filter(|c| *c != 0)
}
