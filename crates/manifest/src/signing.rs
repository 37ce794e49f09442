//! Signed manifests: a detached Ed25519 signature of the exact bytes of `manifest.json` (and of
//! `plan.json`) stored next to it as `manifest.json.sig` (`plan.json.sig`), written create-once.
//! Anyone who can write the bucket can edit a manifest and recompute its checksums; nobody without
//! the signing key can make a signature that verifies. FORMAT.md §11.
//!
//! Keys are files of one line of base64: a 32-byte seed (the private key; `otsarchive keygen`
//! writes one, readable by its owner only) or a 32-byte public key (`<seed file>.pub`). Ed25519
//! comes from `ring`, already in the dependency tree.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{ManifestError, Snapshot};

/// The signature object's name for document `rel` (`manifest.json` → `manifest.json.sig`).
pub fn signature_path(rel: &str) -> String {
    format!("{rel}.sig")
}

/// A detached signature, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedSignature {
    /// `ed25519`.
    pub algorithm: String,
    /// The signer's key id (see [`key_id`]).
    pub key_id: String,
    /// The signer's public key, base64 (32 bytes).
    pub public_key: String,
    /// The signature of the document's bytes, base64 (64 bytes).
    pub signature: String,
}

/// What went wrong with a key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {detail}")]
    KeyFile { path: String, detail: String },
    #[error(transparent)]
    Store(#[from] ManifestError),
}

/// A key's id: the first 8 bytes of the SHA-256 of its public key, hex. Recorded in every
/// signature so that a reader knows which key to ask for; never secret.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// A private signing key (from a seed file).
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

fn read_key_bytes(path: &Path) -> Result<Vec<u8>, SigningError> {
    let bad = |detail: String| SigningError::KeyFile {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let bytes = B64.decode(text.trim()).map_err(|_| {
        bad("is not one line of base64 (a key file from `otsarchive keygen`)".into())
    })?;
    if bytes.len() != 32 {
        return Err(bad(format!(
            "holds {} bytes; an Ed25519 seed or public key is 32 bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<(SigningKey, [u8; 32]), String> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| "the system's random generator failed".to_string())?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| e.to_string())?;
        Ok((SigningKey { pair }, seed))
    }

    /// The key of a seed file (one line of base64, 32 bytes).
    pub fn from_seed_file(path: &Path) -> Result<SigningKey, SigningError> {
        let seed = read_key_bytes(path)?;
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| SigningError::KeyFile {
                path: path.display().to_string(),
                detail: format!("not an Ed25519 seed: {e}"),
            })?;
        Ok(SigningKey { pair })
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn key_id(&self) -> String {
        key_id(self.public_key())
    }

    pub fn sign(&self, bytes: &[u8]) -> DetachedSignature {
        DetachedSignature {
            algorithm: "ed25519".into(),
            key_id: self.key_id(),
            public_key: B64.encode(self.public_key()),
            signature: B64.encode(self.pair.sign(bytes).as_ref()),
        }
    }
}

/// The keys a verifier trusts, read from a seed file or a public-key file (both are 32 bytes of
/// base64, so both readings are kept: the signature must verify under one of them).
pub struct TrustedKey {
    candidates: Vec<Vec<u8>>,
}

impl TrustedKey {
    pub fn from_file(path: &Path) -> Result<TrustedKey, SigningError> {
        let bytes = read_key_bytes(path)?;
        let mut candidates = vec![bytes.clone()];
        if let Ok(pair) = Ed25519KeyPair::from_seed_unchecked(&bytes) {
            candidates.push(pair.public_key().as_ref().to_vec());
        }
        Ok(TrustedKey { candidates })
    }

    /// `Ok(key id)` when `sig` is a valid signature of `bytes` by this key; else why not.
    pub fn verify(&self, bytes: &[u8], sig: &DetachedSignature) -> Result<String, String> {
        if sig.algorithm != "ed25519" {
            return Err(format!("unknown signature algorithm '{}'", sig.algorithm));
        }
        let signature = B64
            .decode(&sig.signature)
            .map_err(|_| "the signature is not base64".to_string())?;
        for pk in &self.candidates {
            if UnparsedPublicKey::new(&ED25519, pk)
                .verify(bytes, &signature)
                .is_ok()
            {
                return Ok(key_id(pk));
            }
        }
        Err(format!(
            "the signature (by key {}) does not verify under the given key {}: the document was changed after it was signed, or it was signed by another key",
            sig.key_id,
            self.candidates
                .iter()
                .map(|k| key_id(k))
                .collect::<Vec<_>>()
                .join(" / ")
        ))
    }
}

/// Signs the stored bytes of `rel` (as they are on the store, byte for byte) and writes
/// `rel.sig` create-once; a signature already there is kept (`Ok(false)`).
pub async fn sign_document(
    snapshot: &Snapshot,
    rel: &str,
    key: &SigningKey,
) -> Result<bool, SigningError> {
    let bytes = snapshot.read_bytes(rel).await?;
    let sig = key.sign(&bytes);
    match snapshot.create_document(&signature_path(rel), &sig).await {
        Ok(()) => Ok(true),
        Err(ManifestError::Exists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Checks `rel`'s detached signature under `key`: `Ok(key id)`, or the problem in words (a
/// missing signature is a problem).
pub async fn verify_document(
    snapshot: &Snapshot,
    rel: &str,
    key: &TrustedKey,
) -> Result<Result<String, String>, SigningError> {
    let bytes = match snapshot.read_bytes(rel).await {
        Ok(b) => b,
        Err(ManifestError::NotFound { .. }) => return Ok(Err(format!("{rel} is missing"))),
        Err(e) => return Err(e.into()),
    };
    let sig_rel = signature_path(rel);
    let sig: DetachedSignature = match snapshot.read_document(&sig_rel).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Ok(Err(format!(
                "{sig_rel} is missing: the snapshot is not signed (back it up with --sign-key-file)"
            )));
        }
        Err(ManifestError::Json { .. }) => {
            return Ok(Err(format!("{sig_rel} is not a signature document")));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(key.verify(&bytes, &sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_the_same_bytes_and_key() {
        let (key, seed) = SigningKey::generate().unwrap();
        let sig = key.sign(b"manifest bytes");
        let dir = tempfile::tempdir().unwrap();
        let seed_file = dir.path().join("k");
        std::fs::write(&seed_file, B64.encode(seed) + "\n").unwrap();
        let pub_file = dir.path().join("k.pub");
        std::fs::write(&pub_file, B64.encode(key.public_key())).unwrap();
        for f in [&seed_file, &pub_file] {
            let trusted = TrustedKey::from_file(f).unwrap();
            assert_eq!(trusted.verify(b"manifest bytes", &sig), Ok(key.key_id()));
            assert!(trusted.verify(b"manifest bytez", &sig).is_err());
        }
        let (other, _) = SigningKey::generate().unwrap();
        let other_file = dir.path().join("o.pub");
        std::fs::write(&other_file, B64.encode(other.public_key())).unwrap();
        assert!(
            TrustedKey::from_file(&other_file)
                .unwrap()
                .verify(b"manifest bytes", &sig)
                .is_err()
        );
        let reread = SigningKey::from_seed_file(&seed_file).unwrap();
        assert_eq!(reread.key_id(), key.key_id());
        std::fs::write(dir.path().join("bad"), "not base64!").unwrap();
        assert!(SigningKey::from_seed_file(&dir.path().join("bad")).is_err());
        std::fs::write(dir.path().join("short"), B64.encode([1u8; 16])).unwrap();
        assert!(TrustedKey::from_file(&dir.path().join("short")).is_err());
        // The key never appears in Debug output.
        assert!(!format!("{reread:?}").contains(&B64.encode(seed)));
    }
}
