//! Encrypted snapshot files (FORMAT.md §12).
//!
//! Every Parquet file gets a fresh random data key (AES-256-GCM, Parquet modular encryption with
//! an encrypted footer). The data key is wrapped by a master key and stored in the file's footer
//! key metadata, in the shape pyarrow's `CryptoFactory` reads with `double_wrapping=False`
//! ([`material`]). Master keys never leave their [`KeyProvider`]: files carry only a wrapped data
//! key and the master key's id, and the manifest only the scheme and the id.
//!
//! - [`keys`]: master keys, their ids, and where they come from (a file, the environment).
//! - [`provider`]: the [`KeyProvider`] trait (wrap and unwrap under a named master key) and the
//!   local provider over master keys held in memory.
//! - [`material`]: the key material JSON (PKMT1) and the wrapping format.
//! - [`parquet_props`]: Parquet encryption and decryption properties built on a provider.

pub mod keys;
pub mod material;
pub mod parquet_props;
pub mod provider;

pub use keys::{KEY_ENV, KEY_FILE_ENV, MasterKey};
pub use parquet_props::{FileEncryptor, decryption_properties, key_error};
pub use provider::{KeyProvider, LocalKeys};

/// What can go wrong with keys and key material. Messages never carry key bytes.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption key {origin}: {reason}")]
    KeySource { origin: String, reason: String },
    #[error(
        "the data is encrypted under master key {id}, which was not given (keys given: {}): pass its key file with --encryption-key-file",
        if .known.is_empty() { "none".to_string() } else { .known.join(", ") }
    )]
    UnknownKey { id: String, known: Vec<String> },
    #[error(
        "master key {id} does not unwrap the data key: the wrapped key was altered, or was not written under this key"
    )]
    WrongKey { id: String },
    #[error("no master key to encrypt with: pass one --encryption-key-file")]
    NoWriteKey,
    #[error(
        "encryption scheme {found:?} is not known to this otsarchive (it reads {known}); upgrade otsarchive"
    )]
    UnknownScheme { found: String, known: &'static str },
    #[error("key material in the file is not usable: {0}")]
    KeyMaterial(String),
    #[error("the system random number generator failed")]
    Random,
    #[error("Parquet encryption properties: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}
