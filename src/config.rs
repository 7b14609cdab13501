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
//! ```
//!
//! With no file, the defaults work: the media root `<data-dir>/media/<user>/`,
//! read-write, nodes owned by the mounting user. Re-read at every mount and on
//! the supervisor's SIGHUP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
            "[defaults]\nread_only = true\nmedia_roots = [\"/m\"]\n[users.a]\nread_only = false\nuid = 7\nmedia_roots = [\"/a\"]\n",
        )
        .unwrap();
        let a = user_settings(t.path(), "a").unwrap();
        assert_eq!(a.read_only, Some(false));
        assert_eq!(a.uid, Some(7));
        assert_eq!(
            a.media_roots,
            vec![PathBuf::from("/m"), PathBuf::from("/a")]
        );
        assert_eq!(user_settings(t.path(), "b").unwrap().read_only, Some(true));
        std::fs::write(
            t.path().join("markbase.toml"),
            "[users.a]\nquota_typo = 1\n",
        )
        .unwrap();
        assert!(user_settings(t.path(), "a").is_err());
    }
}
