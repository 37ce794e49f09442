//! The optional config file: named profiles for endpoints, destinations and credentials.
//!
//! ```toml
//! [profiles.prod]
//! endpoint = "https://myinst.cn-hangzhou.ots.aliyuncs.com"
//! instance = "myinst"
//! to = "oss://my-bucket/backups"
//! oss_region = "cn-hangzhou"
//! # optional; the ALIBABA_CLOUD_* environment variables win when set
//! access_key_id = "LTAI..."
//! access_key_secret = "..."
//! # optional: encrypt backups and read encrypted snapshots with this master key
//! encryption_key_file = "/etc/otsarchive/master.key"
//! ```
//!
//! Precedence: flags, then environment variables, then the profile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ots_wire::Credentials;
use serde::Deserialize;

use crate::common::{CliError, GlobalArgs};

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub instance: Option<String>,
    /// Default destination for `backup --to` and `ls`.
    pub to: Option<String>,
    pub oss_region: Option<String>,
    pub oss_endpoint: Option<String>,
    pub oss_internal: Option<bool>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub security_token: Option<String>,
    /// Master key file for encrypted snapshots (`--encryption-key-file`).
    pub encryption_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("instance", &self.instance)
            .field("to", &self.to)
            .field("access_key_id", &self.access_key_id)
            .field(
                "access_key_secret",
                &self.access_key_secret.as_ref().map(|_| "***"),
            )
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl Profile {
    pub fn credentials(&self) -> Option<Credentials> {
        let c = Credentials::new(self.access_key_id.clone()?, self.access_key_secret.clone()?);
        Some(match &self.security_token {
            Some(t) => c.with_security_token(t.clone()),
            None => c,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/otsarchive/config.toml"))
}

/// The selected profile, or `None` when no profile was asked for.
pub fn load(g: &GlobalArgs) -> Result<Option<Profile>, CliError> {
    let Some(name) = &g.profile else {
        return Ok(None);
    };
    let path = g.config.clone().or_else(default_path).ok_or_else(|| {
        CliError::Usage("--profile needs a config file: pass --config PATH".into())
    })?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    // toml's messages quote the offending line, which could hold a secret: report the position only.
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                format!(
                    " at line {}",
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        CliError::Usage(format!(
            "the config file {} is not valid{at}: {}",
            path.display(),
            e.message()
        ))
    })?;
    let profile = file.profiles.get(name).cloned().ok_or_else(|| {
        CliError::Usage(format!(
            "profile '{name}' is not in {} (profiles: {})",
            path.display(),
            file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    #[cfg(unix)]
    if profile.access_key_secret.is_some() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} holds a secret but others can read it: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok(Some(profile))
}
