//! Optional per-user settings: `<data-dir>/markbase.toml`.
//!
//! ```toml
//! [defaults]                 # for every user
//! read_only = false
//!
//! [users.warren]
//! media_roots = ["/srv/media/warren"]   # besides <data-dir>/media/warren
//! read_only = true
//! uid = 501                             # owner of nodes with none recorded
//! gid = 20
//! quota = "2TB"                         # bytes of file content (or a number)
//! backend = "auto"                      # auto, kernel, nfs, fuse-t, fuse-t-smb, fskit
//! smb_users = ["warren", "@editors"]    # Samba accounts of `markbase share`
//! ```
//!
//! With no file, the defaults work: the media root `<data-dir>/media/<user>/`,
//! read-write, nodes owned by the mounting user, no quota, this platform's
//! backend. Re-read at every mount and on the supervisor's SIGHUP. A value
//! that does not parse (an unknown key, `quota = "lots"`, `backend = "afp"`)
//! refuses the mount with one line naming the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::platform::BackendChoice;

/// Errors reading the settings file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Settings of one user (every field optional).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    #[serde(default)]
    pub media_roots: Vec<PathBuf>,
    pub read_only: Option<bool>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Most bytes of file content the user's library may hold.
    #[serde(default, deserialize_with = "de_size")]
    pub quota: Option<u64>,
    #[serde(default, deserialize_with = "de_backend")]
    pub backend: Option<BackendChoice>,
    /// Samba accounts (or `@group`s) that may connect to the user's share
    /// (`markbase share`); none: an account named as the user.
    #[serde(default)]
    pub smb_users: Vec<String>,
}

impl UserSettings {
    /// Who owns the user's files in a mount: the configured uid and gid,
    /// else the daemon's own.
    pub fn owner(&self) -> crate::fs::Caller {
        crate::fs::Caller {
            uid: self.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
            gid: self.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
        }
    }
}

/// `"500GB"`, `"2TiB"`, `"1.5T"` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: not a number"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1000,
        "KIB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MIB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GIB" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TIB" => 1 << 40,
        _ => return Err(format!("size {s:?}: unknown unit")),
    };
    Ok((n * mult as f64) as u64)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(Some(n)),
        Size::Text(t) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

fn de_backend<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BackendChoice>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: UserSettings,
    #[serde(default)]
    users: BTreeMap<String, UserSettings>,
}

/// The settings of `user` in `data_dir` (defaults, overlaid by the user's own).
pub fn user_settings(data_dir: &Path, user: &str) -> Result<UserSettings, ConfigError> {
    let path = data_dir.join("markbase.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UserSettings::default()),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let f: File = toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })?;
    let d = f.defaults;
    let u = f.users.get(user).cloned().unwrap_or_default();
    Ok(UserSettings {
        media_roots: d.media_roots.into_iter().chain(u.media_roots).collect(),
        read_only: u.read_only.or(d.read_only),
        uid: u.uid.or(d.uid),
        gid: u.gid.or(d.gid),
        quota: u.quota.or(d.quota),
        backend: u.backend.or(d.backend),
        smb_users: if u.smb_users.is_empty() {
            d.smb_users
        } else {
            u.smb_users
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_user() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            user_settings(t.path(), "a").unwrap(),
            UserSettings::default()
        );
        std::fs::write(
            t.path().join("markbase.toml"),
            "[defaults]\nread_only = true\nmedia_roots = [\"/m\"]\nsmb_users = [\"@editors\"]\n[users.a]\nread_only = false\nuid = 7\nmedia_roots = [\"/a\"]\nsmb_users = [\"ann\"]\n",
        )
        .unwrap();
        let a = user_settings(t.path(), "a").unwrap();
        assert_eq!(a.read_only, Some(false));
        assert_eq!(a.uid, Some(7));
        assert_eq!(
            a.media_roots,
            vec![PathBuf::from("/m"), PathBuf::from("/a")]
        );
        assert_eq!(a.smb_users, ["ann"]);
        let b = user_settings(t.path(), "b").unwrap();
        assert_eq!(b.read_only, Some(true));
        assert_eq!(b.smb_users, ["@editors"]);
        std::fs::write(
            t.path().join("markbase.toml"),
            "[users.a]\nquota_typo = 1\n",
        )
        .unwrap();
        assert!(user_settings(t.path(), "a").is_err());
        std::fs::write(
            t.path().join("markbase.toml"),
            "[defaults]\nquota = \"2TB\"\n[users.a]\nquota = 1048576\nbackend = \"kernel\"\n",
        )
        .unwrap();
        let a = user_settings(t.path(), "a").unwrap();
        assert_eq!(a.quota, Some(1 << 20));
        assert_eq!(
            a.backend,
            Some(BackendChoice::Fixed(crate::platform::Backend::Kernel))
        );
        assert_eq!(
            user_settings(t.path(), "b").unwrap().quota,
            Some(2_000_000_000_000)
        );
        for bad in [
            "[users.a]\nquota = \"lots\"\n",
            "[users.a]\nbackend = \"afp\"\n",
        ] {
            std::fs::write(t.path().join("markbase.toml"), bad).unwrap();
            let e = user_settings(t.path(), "a").unwrap_err().to_string();
            assert!(e.contains("markbase.toml"), "{e}");
        }
    }
}
