//! Above the front ends: what starts, finds and stops their daemons.
//!
//! * [`mount`]: one mount's checks, its daemon started in the background
//!   (this binary again, in the foreground), and finding, flushing and
//!   unmounting running mounts, whichever front end serves them;
//! * [`manager`]: many users at once, and the supervisor that keeps every
//!   user's daemon running, whatever it serves through ([`manager::Units`]:
//!   `fuse --mount --all --foreground`, the service);
//! * [`servers`]: NFS servers for other machines as such units
//!   (`nfs --serve --all`);
//! * [`share`]: the Samba configuration that shares every user's mount
//!   with a studio's Macs over SMB3 (`markbase share`);
//! * [`samba`]: `smbd` kept serving the mounts by the supervisor (`--smb`);
//! * [`service`]: the systemd unit or launchd agent that runs the supervisor;
//! * [`argv`]: the command lines of the daemons, the servers and the
//!   supervisor.

pub mod argv;
pub mod manager;
pub mod mount;
pub mod samba;
pub mod servers;
pub mod service;
pub mod share;
