//! `otsarchive keygen` and the signing keys of `--sign-key-file` (signed manifests).

use std::sync::Arc;

use clap::Args;

use crate::common::{CliError, GlobalArgs};

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
    /// Existing files are never overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: std::path::PathBuf,
}

/// Writes a new Ed25519 signing key: the seed (one line of base64, readable by its owner only)
/// and the public key beside it.
pub async fn keygen(g: &GlobalArgs, a: KeygenArgs) -> Result<(), CliError> {
    use base64::Engine;
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
    let write = |path: &std::path::Path, text: String, private: bool| -> Result<(), CliError> {
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
        let mut f = o
            .open(path)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| CliError::Failed(format!("writing {}: {e}", path.display())))
    };
    write(&a.out, format!("{}\n", b64.encode(seed)), true)?;
    write(
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
