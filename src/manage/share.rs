//! A studio server: every user's FUSE mount shared with the studio's Macs
//! over SMB3 by Samba (`markbase share`).
//!
//! We do not speak SMB ourselves: Samba with `vfs_fruit` is what Linux NAS
//! systems use to serve Macs, and since Big Sur SMB3 is the network file
//! system a Mac prefers. This module writes the Samba configuration: one
//! share per user, `MarkBase_<user>`, whose path is that user's mount
//! (`fuse --mount --all --dir BASE` puts it at `BASE/MarkBase_<user>`), with
//! the options Apple's clients need. Samba keeps its own state (accounts,
//! locks, logs) in a folder of ours, so that it never touches a Samba the
//! machine already runs. Pure text in, text out: tested without Samba.
//!
//! The options, and why:
//! * `vfs objects = catia fruit streams_xattr`: `fruit` speaks Apple's SMB
//!   extensions (AAPL create context, resource forks, Finder info); named
//!   streams (tags, colour labels, quarantine) are stored by
//!   `streams_xattr` as extended attributes of the file in the mount, which
//!   the core keeps under macOS's own `com.apple.*` names
//!   (`crate::fs` `streams.rs`); `catia` maps the characters a
//!   Mac sends in the private-use area (U+F001-U+F027 for control
//!   characters and `"` `*` `:` `<` `>` `?` `\` `|`, which NTFS refuses)
//!   back to themselves, so a name typed on a Mac is the same name in the
//!   mount ([`MAC_CHARACTERS`]: `vfs_fruit`'s own table, which
//!   `fruit:encoding = native` would set, but its manual says that option
//!   does not fully work with `fruit:metadata = stream`).
//! * `fruit:metadata = stream`: the Finder info travels as the
//!   `AFP_AfpInfo` stream, kept like any stream (the default, `netatalk`,
//!   would keep it in netatalk's own format).
//! * `fruit:resource = file`: a resource fork stays in the `._name`
//!   AppleDouble file, as on a Mac's own SMB server; streams are capped at
//!   64 KiB by extended attributes, resource forks are not.
//! * `fruit:locking = none`: no netatalk server shares these files.
//! * `fruit:posix_rename = yes`: a Mac may rename a file another client has
//!   open, as on its own disk.
//! * `fruit:veto_appledouble = yes`: those `._name` files are fruit's own,
//!   reached by a Mac as the resource fork stream, never listed as files.
//! * `fruit:wipe_intentionally_left_blank_rfork = yes`,
//!   `fruit:delete_empty_adfiles = yes`: the empty placeholders a Mac
//!   writes are not kept as files.
//! * `spotlight = no`: nothing indexes the mounts (the mount already tells
//!   a Mac's own Spotlight to stay out).
//! * `server min protocol = SMB3`: what every Mac since 10.10 speaks, with
//!   signing and encryption available.
//! * `hosts allow` loopback and the networks given, `hosts deny = ALL`: as
//!   the NFS server's `--allow-clients`.
//! * Each share's `valid users` (default: an account named as the
//!   MarkBase user) and `force user`/`force group` (the library's owner
//!   from `markbase.toml`, so files made over SMB are owned as the mount
//!   owns them, and the mount's permission checks pass).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The characters a Mac's SMB client sends in Unicode's private-use area,
/// and what they stand for (as `vfs_fruit` maps them).
pub const MAC_CHARACTERS: &str = "0x01:0xf001,0x02:0xf002,0x03:0xf003,0x04:0xf004,\
0x05:0xf005,0x06:0xf006,0x07:0xf007,0x08:0xf008,0x09:0xf009,0x0a:0xf00a,0x0b:0xf00b,\
0x0c:0xf00c,0x0d:0xf00d,0x0e:0xf00e,0x0f:0xf00f,0x10:0xf010,0x11:0xf011,0x12:0xf012,\
0x13:0xf013,0x14:0xf014,0x15:0xf015,0x16:0xf016,0x17:0xf017,0x18:0xf018,0x19:0xf019,\
0x1a:0xf01a,0x1b:0xf01b,0x1c:0xf01c,0x1d:0xf01d,0x1e:0xf01e,0x1f:0xf01f,0x22:0xf020,\
0x2a:0xf021,0x3a:0xf022,0x3c:0xf023,0x3e:0xf024,0x3f:0xf025,0x5c:0xf026,0x7c:0xf027";

/// What every share of one configuration has in common.
#[derive(Clone, Debug)]
pub struct ShareOptions {
    /// `--dir BASE`: each user's mount is `BASE/MarkBase_<user>`.
    pub mounts_dir: PathBuf,
    /// The TCP port Samba listens on (445 is SMB's own).
    pub port: u16,
    /// Networks besides loopback allowed to connect (already checked).
    pub allow: Vec<String>,
    /// Where Samba keeps its accounts, locks, state and logs.
    pub state_dir: PathBuf,
}

/// One user's share.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    /// The MarkBase user.
    pub user: String,
    /// Samba accounts (or `@group`s) that may connect.
    pub valid_users: Vec<String>,
    /// The account files are made and checked as (the library's owner).
    pub force_user: Option<String>,
    pub force_group: Option<String>,
    pub read_only: bool,
}

/// The share's name for `user`: the name a Mac shows the drive under, as
/// for its other backends.
pub fn share_name(user: &str) -> String {
    crate::platform::macos::volume_name(user)
}

/// A name Samba reads back as written (no line break, `#`, `;` or `]`,
/// nothing a share or account name cannot hold).
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '+' | '$'))
}

/// A value that would not survive in a Samba configuration.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(
        "{what} {value:?} cannot go into a Samba configuration (letters, digits, _ - . @ + $ only)"
    )]
    NotPlain { what: &'static str, value: String },
    #[error("{0} cannot go into a Samba configuration (a line break in the path)")]
    BadPath(PathBuf),
}

fn path_text(p: &Path) -> Result<String, ShareError> {
    let s = p.to_string_lossy();
    if s.contains(['\n', '\r']) {
        return Err(ShareError::BadPath(p.to_path_buf()));
    }
    Ok(s.into_owned())
}

fn plain<'a>(what: &'static str, value: &'a str) -> Result<&'a str, ShareError> {
    if is_plain(value) {
        Ok(value)
    } else {
        Err(ShareError::NotPlain {
            what,
            value: value.to_string(),
        })
    }
}

/// The Samba configuration serving `shares`.
pub fn samba_config(o: &ShareOptions, shares: &[Share]) -> Result<String, ShareError> {
    let state = path_text(&o.state_dir)?;
    let mut allow = vec!["127.0.0.1".to_string(), "::1".to_string()];
    allow.extend(o.allow.iter().cloned());
    let mut c = String::new();
    let _ = write!(
        c,
        "# Written by `markbase share`: write it again rather than edit it.
[global]
   server string = MarkBase
   server role = standalone server
   smb ports = {port}
   hosts allow = {allow}
   hosts deny = ALL
   server min protocol = SMB3
   map to guest = never
   passdb backend = tdbsam:{state}/private/passdb.tdb
   private dir = {state}/private
   lock directory = {state}/lock
   state directory = {state}/state
   cache directory = {state}/cache
   pid directory = {state}/run
   ncalrpc dir = {state}/run/ncalrpc
   log file = {state}/log/%m.log
   max log size = 10000
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
   disable netbios = yes
   ea support = yes
   use sendfile = yes
   vfs objects = catia fruit streams_xattr
   catia:mappings = {catia}
   fruit:metadata = stream
   fruit:resource = file
   fruit:locking = none
   fruit:posix_rename = yes
   fruit:veto_appledouble = yes
   fruit:wipe_intentionally_left_blank_rfork = yes
   fruit:delete_empty_adfiles = yes
   fruit:model = MacSamba
   spotlight = no
",
        port = o.port,
        allow = allow.join(" "),
        catia = MAC_CHARACTERS,
    );
    for s in shares {
        let name = share_name(plain("user", &s.user)?);
        let path = path_text(&super::manager::mountpoint_for(&o.mounts_dir, &s.user))?;
        let valid = s
            .valid_users
            .iter()
            .map(|u| plain("account", u))
            .collect::<Result<Vec<_>, _>>()?;
        let _ = write!(
            c,
            "
[{name}]
   path = {path}
   valid users = {valid}
   read only = {ro}
   browseable = yes
   create mask = 0644
   directory mask = 0755
",
            valid = valid.join(" "),
            ro = if s.read_only { "yes" } else { "no" },
        );
        if let Some(u) = &s.force_user {
            let _ = writeln!(c, "   force user = {}", plain("account", u)?);
        }
        if let Some(g) = &s.force_group {
            let _ = writeln!(c, "   force group = {}", plain("group", g)?);
        }
    }
    Ok(c)
}

/// The folders Samba needs under the state folder before it starts.
pub fn state_folders(state_dir: &Path) -> Vec<PathBuf> {
    ["private", "lock", "state", "cache", "run", "log"]
        .iter()
        .map(|d| state_dir.join(d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ShareOptions {
        ShareOptions {
            mounts_dir: "/srv/markbase".into(),
            port: 4450,
            allow: vec!["10.0.0.0/8".into()],
            state_dir: "/var/lib/markbase/samba".into(),
        }
    }

    fn share(user: &str) -> Share {
        Share {
            user: user.into(),
            valid_users: vec![user.into(), "@editors".into()],
            force_user: Some("media".into()),
            force_group: None,
            read_only: false,
        }
    }

    /// Each `key = value` line of `section` (`global` or a share's name).
    fn section(conf: &str, name: &str) -> Vec<(String, String)> {
        let head = format!("[{name}]");
        conf.lines()
            .skip_while(|l| l.trim() != head)
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with('['))
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    fn get<'a>(s: &'a [(String, String)], key: &str) -> Option<&'a str> {
        s.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn one_share_per_user_on_its_mount_with_apples_options() {
        let conf = samba_config(&opts(), &[share("alice"), share("bob")]).unwrap();
        let g = section(&conf, "global");
        assert_eq!(get(&g, "smb ports"), Some("4450"));
        assert_eq!(get(&g, "hosts allow"), Some("127.0.0.1 ::1 10.0.0.0/8"));
        assert_eq!(get(&g, "hosts deny"), Some("ALL"));
        assert_eq!(get(&g, "vfs objects"), Some("catia fruit streams_xattr"));
        assert_eq!(get(&g, "fruit:metadata"), Some("stream"));
        assert_eq!(get(&g, "spotlight"), Some("no"));
        assert_eq!(
            get(&g, "private dir"),
            Some("/var/lib/markbase/samba/private")
        );
        let a = section(&conf, "MarkBase_alice");
        assert_eq!(get(&a, "path"), Some("/srv/markbase/MarkBase_alice"));
        assert_eq!(get(&a, "valid users"), Some("alice @editors"));
        assert_eq!(get(&a, "force user"), Some("media"));
        assert_eq!(get(&a, "force group"), None);
        assert_eq!(get(&a, "read only"), Some("no"));
        let b = section(&conf, "MarkBase_bob");
        assert_eq!(get(&b, "path"), Some("/srv/markbase/MarkBase_bob"));
    }

    #[test]
    fn what_samba_would_misread_is_refused() {
        for bad in ["a b", "x]", "#c", "a\nb", ""] {
            let mut s = share("alice");
            s.valid_users = vec![bad.into()];
            assert!(samba_config(&opts(), &[s]).is_err(), "{bad:?}");
        }
        let mut o = opts();
        o.mounts_dir = "/srv/a\nb".into();
        assert!(samba_config(&o, &[share("alice")]).is_err());
    }
}
