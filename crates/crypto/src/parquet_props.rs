//! Parquet encryption and decryption properties on top of a [`KeyProvider`].

use std::fmt;
use std::sync::Arc;

use ots_format::EncryptionInfo;
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;
use ring::rand::{SecureRandom, SystemRandom};

use crate::CryptoError;
use crate::material::KeyMaterial;
use crate::provider::KeyProvider;

/// Bytes of a file's data key: AES-256-GCM (Parquet's AES_GCM_V1 with a 32-byte key).
pub const DATA_KEY_LEN: usize = 32;

/// Encrypts new Parquet files under one master key, with a fresh random data key per file (a
/// GCM key must not seal too many messages, and one leaked data key exposes one file).
#[derive(Clone)]
pub struct FileEncryptor {
    provider: Arc<dyn KeyProvider>,
    key_id: String,
}

impl fmt::Debug for FileEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileEncryptor")
            .field("master_key_id", &self.key_id)
            .finish()
    }
}

impl FileEncryptor {
    /// Encrypts under the provider's write key.
    pub fn new(provider: Arc<dyn KeyProvider>) -> Result<Self, CryptoError> {
        let key_id = provider
            .write_key_id()
            .ok_or(CryptoError::NoWriteKey)?
            .to_string();
        Ok(FileEncryptor { provider, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// What the plan and manifest record: the scheme and the key id, never key material.
    pub fn info(&self) -> EncryptionInfo {
        EncryptionInfo::parquet_modular(&self.key_id)
    }

    /// Properties for one new file: a new data key, wrapped into the footer key metadata.
    pub fn file_properties(&self) -> Result<Arc<FileEncryptionProperties>, CryptoError> {
        let mut data_key = vec![0u8; DATA_KEY_LEN];
        SystemRandom::new()
            .fill(&mut data_key)
            .map_err(|_| CryptoError::Random)?;
        let wrapped = self.provider.wrap_key(&data_key, &self.key_id)?;
        let material = KeyMaterial::footer(&self.key_id, wrapped);
        Ok(FileEncryptionProperties::builder(data_key)
            .with_footer_key_metadata(material.to_json())
            .build()?)
    }
}

/// Unwraps each file's data key from its key metadata as Parquet asks for it.
struct Retriever(Arc<dyn KeyProvider>);

impl KeyRetriever for Retriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let material = KeyMaterial::parse(key_metadata).map_err(external)?;
        self.0
            .unwrap_key(&material.wrapped_dek, &material.master_key_id)
            .map_err(external)
    }
}

fn external(e: CryptoError) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// Decryption properties that read any file whose data keys `provider` can unwrap.
pub fn decryption_properties(
    provider: Arc<dyn KeyProvider>,
) -> Result<Arc<FileDecryptionProperties>, CryptoError> {
    Ok(FileDecryptionProperties::with_key_retriever(Arc::new(Retriever(provider))).build()?)
}

/// The key problem behind a Parquet error, when one caused it (an unknown or wrong key, or
/// unusable key material), so callers can say so instead of "corrupt file".
pub fn key_error(e: &ParquetError) -> Option<&CryptoError> {
    match e {
        ParquetError::External(inner) => inner.downcast_ref::<CryptoError>(),
        _ => None,
    }
}
