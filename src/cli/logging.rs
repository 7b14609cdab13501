//! Where `markbase` logs: standard error, or a file a day.

/// Logs go to standard error, or with `MARKBASE_LOG_DIR` (which a mount's
/// daemon is started with, and the launchd agent) to a file a day in that
/// folder, `markbase.YYYY-MM-DD.log`, the last `MARKBASE_LOG_KEEP` (14)
/// kept: a drive mounted for months must not fill its disk with logs.
pub fn init_logging() {
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
