//! Key providers: whoever holds the master keys wraps and unwraps data keys under them. The
//! calls mirror pyarrow's `KmsClient` (`wrap_key`, `unwrap_key` by master key id), so a cloud KMS
//! fits behind the same trait: it would wrap and unwrap remotely and never hand out the master
//! key (docs/OPERATIONS.md, "Encrypted snapshots").

use std::fmt;

use crate::CryptoError;
use crate::keys::MasterKey;
use crate::material::{unwrap_data_key, wrap_data_key};

pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The master key new files are encrypted under; `None` for a provider that only reads.
    fn write_key_id(&self) -> Option<&str>;
    /// Whether data keys wrapped under `master_key_id` can be unwrapped here (checked before a
    /// restore writes anything; a remote KMS that cannot tell answers true).
    fn has_key(&self, master_key_id: &str) -> bool;
    /// The ids this provider can unwrap with, for messages.
    fn key_ids(&self) -> Vec<String>;
    /// Wraps a data key under a master key: the text stored as `wrappedDEK`.
    fn wrap_key(&self, data_key: &[u8], master_key_id: &str) -> Result<String, CryptoError>;
    /// Unwraps what [`wrap_key`](Self::wrap_key) returned.
    fn unwrap_key(&self, wrapped: &str, master_key_id: &str) -> Result<Vec<u8>, CryptoError>;

    /// [`has_key`](Self::has_key) as a result: the error names the key wanted and those given.
    fn require(&self, master_key_id: &str) -> Result<(), CryptoError> {
        if self.has_key(master_key_id) {
            return Ok(());
        }
        Err(CryptoError::UnknownKey {
            id: master_key_id.to_string(),
            known: self.key_ids(),
        })
    }
}

/// Master keys held in this process (from key files or the environment). The first one given
/// encrypts; all of them decrypt, so files written under an older key stay readable after a
/// rotation.
#[derive(Debug, Default)]
pub struct LocalKeys {
    keys: Vec<MasterKey>,
}

impl LocalKeys {
    pub fn new(keys: Vec<MasterKey>) -> Self {
        let mut unique: Vec<MasterKey> = Vec::with_capacity(keys.len());
        for k in keys {
            if !unique.iter().any(|u| u.id() == k.id()) {
                unique.push(k);
            }
        }
        LocalKeys { keys: unique }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&self, id: &str) -> Result<&MasterKey, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.id() == id)
            .ok_or_else(|| CryptoError::UnknownKey {
                id: id.to_string(),
                known: self.key_ids(),
            })
    }
}

impl KeyProvider for LocalKeys {
    fn write_key_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id())
    }

    fn has_key(&self, master_key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id() == master_key_id)
    }

    fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id().to_string()).collect()
    }

    fn wrap_key(&self, data_key: &[u8], master_key_id: &str) -> Result<String, CryptoError> {
        wrap_data_key(self.key(master_key_id)?, data_key)
    }

    fn unwrap_key(&self, wrapped: &str, master_key_id: &str) -> Result<Vec<u8>, CryptoError> {
        unwrap_data_key(self.key(master_key_id)?, wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_writes_every_key_reads() {
        let old = MasterKey::from_bytes([1; 32]);
        let new = MasterKey::from_bytes([2; 32]);
        let before = LocalKeys::new(vec![old.clone()]);
        let wrapped = before.wrap_key(&[9; 32], old.id()).unwrap();

        let rotated = LocalKeys::new(vec![new.clone(), old.clone(), new.clone()]);
        assert_eq!(rotated.write_key_id(), Some(new.id()));
        assert_eq!(rotated.key_ids().len(), 2);
        assert_eq!(rotated.unwrap_key(&wrapped, old.id()).unwrap(), vec![9; 32]);

        let only_new = LocalKeys::new(vec![new.clone()]);
        let e = only_new.unwrap_key(&wrapped, old.id()).unwrap_err();
        assert!(matches!(e, CryptoError::UnknownKey { .. }), "{e}");
        assert!(e.to_string().contains(old.id()) && e.to_string().contains(new.id()));
    }
}
