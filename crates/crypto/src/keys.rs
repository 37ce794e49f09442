//! Master keys: 32 bytes, kept in a file as one line of base64 (or in an environment variable),
//! named by an id derived from the key itself so that nobody has to keep ids and keys in step.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::CryptoError;

/// Environment variable naming a master key file (read when no flag gives one).
pub const KEY_FILE_ENV: &str = "OTSARCHIVE_ENCRYPTION_KEY_FILE";
/// Environment variable holding a master key itself, as base64 (for secrets mounted as variables).
pub const KEY_ENV: &str = "OTSARCHIVE_ENCRYPTION_KEY";

/// Bytes of a master key (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// A 256-bit master key and its id. Debug output shows the id only.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: [u8; MASTER_KEY_LEN],
}

impl Drop for MasterKey {
    /// Overwrites the key when it is dropped, so that freed memory does not keep it. (Parquet's
    /// own copies of a file's data key are outside our reach.)
    fn drop(&mut self) {
        for b in self.bytes.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; a volatile write keeps the
            // compiler from dropping the store as dead.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey {
            id: key_id(&bytes),
            bytes,
        }
    }

    /// Parses one line of base64 (surrounding whitespace ignored); `origin` names where it came
    /// from in errors, which never quote the text.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, CryptoError> {
        let fail = |reason: String| CryptoError::KeySource {
            origin: origin.to_string(),
            reason,
        };
        let decoded = STANDARD.decode(text.trim()).map_err(|_| {
            fail("is not base64 (expected one line: 32 random bytes in base64)".into())
        })?;
        let bytes: [u8; MASTER_KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            fail(format!(
                "holds {} bytes, a master key has {MASTER_KEY_LEN} (AES-256)",
                decoded.len()
            ))
        })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let origin = format!("file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| CryptoError::KeySource {
            origin: origin.clone(),
            reason: format!("cannot be read: {e}"),
        })?;
        MasterKey::from_base64(&text, &origin)
    }

    /// Whether the key file at `path` can be read by others than its owner (group or world
    /// bits set): worth a warning, since the key decrypts every snapshot written under it.
    pub fn file_is_shared(path: &Path) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            false
        }
    }

    /// A new random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| CryptoError::Random)?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// The key as one line of base64, as key files hold it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The key's id: recorded in manifests and key material, and what a reader asks for.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }
}

/// `otsk-` and 16 hex digits of a domain-separated SHA-256 of the key: stable, short, and it
/// tells nothing useful about the key.
fn key_id(bytes: &[u8; MASTER_KEY_LEN]) -> String {
    let mut h = Sha256::new();
    h.update(b"otsarchive master key id v1\0");
    h.update(bytes);
    format!("otsk-{}", hex::encode(&h.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_differ_per_key() {
        let a = MasterKey::from_bytes([7; 32]);
        let b = MasterKey::from_bytes([8; 32]);
        assert_eq!(a.id(), MasterKey::from_bytes([7; 32]).id());
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("otsk-") && a.id().len() == 21);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_readable_by_others_are_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, MasterKey::generate().unwrap().to_base64()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!MasterKey::file_is_shared(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(MasterKey::file_is_shared(&path));
        assert!(
            MasterKey::from_file(&path).is_ok(),
            "a warning, not a refusal"
        );
    }

    #[test]
    fn base64_round_trip_and_clear_errors() {
        let k = MasterKey::generate().unwrap();
        let back = MasterKey::from_base64(&format!("{}\n", k.to_base64()), "test").unwrap();
        assert_eq!(back.id(), k.id());
        let short = MasterKey::from_base64(&STANDARD.encode([1u8; 16]), "file k").unwrap_err();
        assert!(short.to_string().contains("holds 16 bytes"), "{short}");
        let junk = MasterKey::from_base64("not base64!", "file k").unwrap_err();
        assert!(junk.to_string().contains("is not base64"), "{junk}");
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}
