//! The operating system's NFS client, which mounts the built-in NFS server
//! for `markbase fuse --mount --backend nfs`: whether this machine has one,
//! and the commands that mount and unmount the server's export. macOS always
//! has one (`mount_nfs`, no root needed: [`super::macos::mount_nfs_command`]);
//! Linux has one when the kernel was built with NFS (a loaded or loadable
//! `nfs` module) and `mount.nfs` (nfs-common) is installed. The decisions
//! are pure functions of what was probed, tested on Linux.

use std::path::Path;

/// Transfer size the built-in server offers and the client asks for (1 MiB).
pub use super::macos::NFS_TRANSFER;

/// Why this machine cannot mount the built-in server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoClient {
    #[error("this kernel has no NFS client (no nfs in /proc/filesystems or its modules)")]
    Kernel,
    #[error("mount.nfs is not installed (Debian and Ubuntu: apt-get install nfs-common)")]
    Helper,
}

/// Does a Linux kernel have an NFS client, given `/proc/filesystems` and
/// the running kernel's `modules.dep` (absent when it has no modules)?
pub fn linux_kernel_has_client(filesystems: &str, modules_dep: Option<&str>) -> bool {
    let built_in = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("nfs"));
    let module = modules_dep.is_some_and(|d| {
        d.lines()
            .filter_map(|l| l.split(':').next())
            .any(|m| m.ends_with("/nfs.ko") || m.contains("/nfs.ko."))
    });
    built_in || module
}

/// Can this machine mount an NFS export (probed now)?
pub fn available() -> Result<(), NoClient> {
    if cfg!(target_os = "macos") {
        return Ok(());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let modules = std::fs::read_to_string(format!("/lib/modules/{release}/modules.dep")).ok();
    if !linux_kernel_has_client(&filesystems, modules.as_deref()) {
        return Err(NoClient::Kernel);
    }
    let helper = ["/sbin/mount.nfs", "/usr/sbin/mount.nfs"]
        .iter()
        .any(|p| Path::new(p).exists());
    if helper {
        Ok(())
    } else {
        Err(NoClient::Helper)
    }
}

/// The Linux command that mounts the server at `127.0.0.1:port` on
/// `mountpoint`: NFSv3 over TCP, NFS and MOUNT on the one port (no portmap
/// asked), 1 MiB transfers, `hard` (a slow answer is waited for, never
/// turned into an I/O error) and `nolock` (locks stay on this machine, as
/// `locallocks` does on a Mac: the server has no lock manager).
pub fn linux_mount_command(port: u16, mountpoint: &Path) -> Vec<String> {
    vec![
        "mount".into(),
        "-t".into(),
        "nfs".into(),
        "-o".into(),
        format!(
            "vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,{}",
            linux_mount_tuning()
        ),
        "127.0.0.1:/".into(),
        mountpoint.to_string_lossy().into_owned(),
    ]
}

/// [`linux_mount_command`]'s options beyond version, transport and ports:
/// what a test guest mounting the server elsewhere uses too.
pub fn linux_mount_tuning() -> String {
    format!("nolock,hard,rsize={NFS_TRANSFER},wsize={NFS_TRANSFER},actimeo=1")
}

/// The command that mounts the built-in server on this system.
pub fn mount_command(port: u16, mountpoint: &Path) -> Vec<String> {
    if cfg!(target_os = "macos") {
        super::macos::mount_nfs_command(port, mountpoint, Default::default())
    } else {
        linux_mount_command(port, mountpoint)
    }
}

/// The command that unmounts it; `force` when it is busy (Linux detaches
/// it lazily, macOS forces it, as Finder's eject does when told to).
pub fn unmount_command(mountpoint: &Path, force: bool) -> Vec<String> {
    let mp = mountpoint.to_string_lossy().into_owned();
    match (cfg!(target_os = "macos"), force) {
        (true, false) => super::macos::unmount_command(mountpoint),
        (true, true) => vec![
            "/usr/sbin/diskutil".into(),
            "unmount".into(),
            "force".into(),
            mp,
        ],
        (false, false) => vec!["umount".into(), mp],
        (false, true) => vec!["umount".into(), "-l".into(), mp],
    }
}

/// Is an NFS mount at `path`, by the mount table (never by `stat`: a
/// mount whose server is gone would not answer)?
pub fn is_nfs_mounted(path: &Path) -> bool {
    super::mounts::table()
        .iter()
        .any(|m| m.mountpoint == path && m.is_nfs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_has_a_client_built_in_or_as_a_module() {
        let plain = "nodev\tsysfs\nnodev\tproc\n\text4\n";
        assert!(!linux_kernel_has_client(plain, None));
        assert!(!linux_kernel_has_client(
            plain,
            Some("kernel/fs/nfsd/nfsd.ko: kernel/fs/lockd/lockd.ko\n")
        ));
        assert!(linux_kernel_has_client(
            &format!("{plain}nodev\tnfs\nnodev\tnfs4\n"),
            None
        ));
        assert!(linux_kernel_has_client(
            plain,
            Some("kernel/fs/nfs/nfs.ko.zst: kernel/fs/lockd/lockd.ko.zst\n")
        ));
        assert!(linux_kernel_has_client(
            plain,
            Some("kernel/fs/nfs/nfs.ko: kernel/fs/lockd/lockd.ko\n")
        ));
    }

    #[test]
    fn linux_mounts_version_3_on_the_one_port_with_1_mib_transfers() {
        let cmd = linux_mount_command(20490, Path::new("/mnt/warren"));
        assert_eq!(
            cmd,
            [
                "mount",
                "-t",
                "nfs",
                "-o",
                "vers=3,proto=tcp,port=20490,mountport=20490,mountproto=tcp,nolock,hard,\
                 rsize=1048576,wsize=1048576,actimeo=1",
                "127.0.0.1:/",
                "/mnt/warren"
            ]
        );
        if cfg!(target_os = "linux") {
            assert_eq!(mount_command(20490, Path::new("/mnt/warren")), cmd);
            assert_eq!(
                unmount_command(Path::new("/mnt/warren"), true),
                ["umount", "-l", "/mnt/warren"]
            );
        }
    }
}
