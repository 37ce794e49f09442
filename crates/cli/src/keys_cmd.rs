//! `otsarchive keygen`, the signing keys of `--sign-key-file` (signed manifests) and the master
//! keys of `--encryption-key-file` (encrypted snapshots).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ots_crypto::{KEY_ENV, KEY_FILE_ENV, LocalKeys, MasterKey};

use crate::common::{CliError, GlobalArgs};

/// Master keys of encrypted snapshots. Never a key on the command line: files, the environment
/// or the profile.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Encryption")]
pub struct KeyArgs {
    /// Master key file (32 random bytes as one line of base64; `otsarchive keygen --encryption`
    /// writes one). Repeat to read snapshots written under older keys. Else
    /// OTSARCHIVE_ENCRYPTION_KEY_FILE, OTSARCHIVE_ENCRYPTION_KEY (the base64 itself) or the
    /// profile's `encryption_key_file`.
    #[arg(long = "encryption-key-file", value_name = "PATH")]
    pub encryption_key_files: Vec<PathBuf>,
}

impl KeyArgs {
    /// Every master key given: flags in order, then the environment, then the profile. `None`
    /// when there are none.
    pub fn keys(&self, g: &GlobalArgs) -> Result<Option<Arc<LocalKeys>>, CliError> {
        let usage = |e: ots_crypto::CryptoError| CliError::Usage(e.to_string());
        let mut keys = Vec::new();
        let load = |path: &std::path::Path| {
            if MasterKey::file_is_shared(path) {
                tracing::warn!(
                    "the encryption key file {} can be read by other users: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
            MasterKey::from_file(path).map_err(usage)
        };
        for path in &self.encryption_key_files {
            keys.push(load(path)?);
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            keys.push(load(std::path::Path::new(&path))?);
        }
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            keys.push(MasterKey::from_base64(&text, KEY_ENV).map_err(usage)?);
        }
        if let Some(path) = g
            .loaded_profile
            .as_ref()
            .and_then(|p| p.encryption_key_file.as_ref())
        {
            keys.push(load(path)?);
        }
        Ok((!keys.is_empty()).then(|| Arc::new(LocalKeys::new(keys))))
    }

    /// Keys for reading snapshots.
    pub fn read_keys(&self, g: &GlobalArgs) -> Result<Option<ots_manifest::ReadKeys>, CliError> {
        self.keys(g)?
            .map(|k| ots_manifest::ReadKeys::new(k).map_err(|e| CliError::Failed(e.to_string())))
            .transpose()
    }

    /// The encryptor of a backup: files are written under exactly one master key.
    pub fn encryptor(&self, g: &GlobalArgs) -> Result<Option<ots_crypto::FileEncryptor>, CliError> {
        if self.encryption_key_files.len() > 1 {
            return Err(CliError::Usage(
                "a backup encrypts under one master key: pass one --encryption-key-file (several are for reading)".into(),
            ));
        }
        self.keys(g)?
            .map(|k| ots_crypto::FileEncryptor::new(k).map_err(|e| CliError::Usage(e.to_string())))
            .transpose()
    }
}

/// Reads a signing key for `--sign-key-file`: a usage error naming the file when it is unusable.
pub fn signing_key(
    path: Option<&std::path::Path>,
) -> Result<Option<Arc<ots_manifest::signing::SigningKey>>, CliError> {
    path.map(|p| {
        ots_manifest::signing::SigningKey::from_seed_file(p)
            .map(Arc::new)
            .map_err(|e| CliError::Usage(format!("--sign-key-file {e}")))
    })
    .transpose()
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the new seed (private, mode 0600); the public key goes to PATH.pub.
    /// With --encryption, the master key (private, mode 0600). Existing files are never
    /// overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: std::path::PathBuf,
    /// Write a master key for --encryption-key-file (encrypted snapshots) instead of a signing key.
    #[arg(long)]
    pub encryption: bool,
}

/// Writes `text` to a new file (never over an existing one), readable by its owner only when
/// `private`.
fn write_new(path: &std::path::Path, text: String, private: bool) -> Result<(), CliError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Usage(format!(
                "{} exists already: keygen never overwrites a key; choose another --out",
                path.display()
            ))
        } else {
            CliError::Usage(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Failed(format!("writing {}: {e}", path.display())))
}

/// Writes a new random master key for encrypted snapshots and prints its id.
fn keygen_encryption(g: &GlobalArgs, a: &KeygenArgs) -> Result<(), CliError> {
    let key = MasterKey::generate().map_err(|e| CliError::Failed(e.to_string()))?;
    write_new(&a.out, format!("{}\n", key.to_base64()), true)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "master_key_id": key.id(), "key_file": a.out })
        );
    } else {
        println!(
            "master key {}: {} (keep it secret and keep a copy: without it the snapshots encrypted under it cannot be read)",
            key.id(),
            a.out.display()
        );
    }
    Ok(())
}

/// Writes a new Ed25519 signing key: the seed (one line of base64, readable by its owner only)
/// and the public key beside it.
pub async fn keygen(g: &GlobalArgs, a: KeygenArgs) -> Result<(), CliError> {
    use base64::Engine;
    if a.encryption {
        return keygen_encryption(g, &a);
    }
    let pub_path = std::path::PathBuf::from(format!("{}.pub", a.out.display()));
    for p in [&a.out, &pub_path] {
        if p.exists() {
            return Err(CliError::Usage(format!(
                "{} exists already: keygen never overwrites a key; choose another --out",
                p.display()
            )));
        }
    }
    let (key, seed) = ots_manifest::signing::SigningKey::generate().map_err(CliError::Failed)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    write_new(&a.out, format!("{}\n", b64.encode(seed)), true)?;
    write_new(
        &pub_path,
        format!("{}\n", b64.encode(key.public_key())),
        false,
    )?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "key_id": key.key_id(),
                "seed_file": a.out,
                "public_key_file": pub_path,
            })
        );
    } else {
        println!(
            "key {}: seed {} (keep it secret: it signs), public key {} (give it to verifiers)",
            key.key_id(),
            a.out.display(),
            pub_path.display()
        );
    }
    Ok(())
}
