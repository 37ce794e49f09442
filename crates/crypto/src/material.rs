//! Key material: what a file's footer key metadata holds, and how a data key is wrapped.
//!
//! The JSON is the shape pyarrow's `CryptoFactory` writes and reads with internal key material
//! storage and `double_wrapping=False` (`keyMaterialType` PKMT1). `wrappedDEK` is base64 of a
//! 12-byte random nonce, then the AES-256-GCM ciphertext and tag of the data key under the master
//! key, with the master key id's bytes as associated data: a wrapped key moved to another key id
//! does not unwrap. A pyarrow `KmsClient` that performs exactly this reads and writes our files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::CryptoError;
use crate::keys::MasterKey;

pub const KEY_MATERIAL_TYPE: &str = "PKMT1";

/// Footer (or column) key metadata, field for field as pyarrow names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMaterial {
    pub key_material_type: String,
    pub internal_storage: bool,
    pub is_footer_key: bool,
    #[serde(
        rename = "kmsInstanceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kms_instance_id: Option<String>,
    #[serde(
        rename = "kmsInstanceURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kms_instance_url: Option<String>,
    #[serde(rename = "masterKeyID")]
    pub master_key_id: String,
    #[serde(rename = "wrappedDEK")]
    pub wrapped_dek: String,
    pub double_wrapping: bool,
}

impl KeyMaterial {
    /// Material for a footer key wrapped directly under `master_key_id`.
    pub fn footer(master_key_id: &str, wrapped_dek: String) -> Self {
        KeyMaterial {
            key_material_type: KEY_MATERIAL_TYPE.to_string(),
            internal_storage: true,
            is_footer_key: true,
            kms_instance_id: Some("DEFAULT".into()),
            kms_instance_url: Some("DEFAULT".into()),
            master_key_id: master_key_id.to_string(),
            wrapped_dek,
            double_wrapping: false,
        }
    }

    /// Parses key metadata, refusing the variants this build does not implement by name.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let m: KeyMaterial = serde_json::from_slice(bytes).map_err(|e| {
            CryptoError::KeyMaterial(format!(
                "the key metadata is not PKMT1 key material JSON ({e})"
            ))
        })?;
        if m.key_material_type != KEY_MATERIAL_TYPE {
            return Err(CryptoError::KeyMaterial(format!(
                "key material type {:?}; only {KEY_MATERIAL_TYPE} is supported",
                m.key_material_type
            )));
        }
        if !m.internal_storage {
            return Err(CryptoError::KeyMaterial(
                "the key material is stored outside the file, which is not supported".into(),
            ));
        }
        if m.double_wrapping {
            return Err(CryptoError::KeyMaterial(
                "the data key is double-wrapped (pyarrow's default); write with double_wrapping=False".into(),
            ));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and booleans always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn sealing_key(master: &MasterKey) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, master.bytes())
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::KeyMaterial("master key rejected by AES-256-GCM".into()))
}

/// Wraps `data_key` under `master`: base64(nonce ‖ ciphertext ‖ tag), AAD = the master key id.
pub fn wrap_data_key(master: &MasterKey, data_key: &[u8]) -> Result<String, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut sealed = data_key.to_vec();
    sealing_key(master)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(master.id().as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CryptoError::KeyMaterial("AES-256-GCM sealing failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

/// Unwraps what [`wrap_data_key`] made; a wrong key or an altered text is [`CryptoError::WrongKey`].
pub fn unwrap_data_key(master: &MasterKey, wrapped: &str) -> Result<Vec<u8>, CryptoError> {
    let raw = STANDARD
        .decode(wrapped.trim())
        .map_err(|_| CryptoError::KeyMaterial("wrappedDEK is not base64".into()))?;
    let tag_len = AES_256_GCM.tag_len();
    if raw.len() < NONCE_LEN + tag_len {
        return Err(CryptoError::KeyMaterial(format!(
            "wrappedDEK holds {} bytes, fewer than a nonce and a tag",
            raw.len()
        )));
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| CryptoError::KeyMaterial("wrappedDEK nonce".into()))?;
    let mut buf = sealed.to_vec();
    let plain = sealing_key(master)?
        .open_in_place(nonce, Aad::from(master.id().as_bytes()), &mut buf)
        .map_err(|_| CryptoError::WrongKey {
            id: master.id().to_string(),
        })?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_tamper() {
        let k = MasterKey::from_bytes([3; 32]);
        let w = wrap_data_key(&k, &[5; 32]).unwrap();
        assert_eq!(unwrap_data_key(&k, &w).unwrap(), vec![5; 32]);
        // Two wraps of one key differ (fresh nonce).
        assert_ne!(w, wrap_data_key(&k, &[5; 32]).unwrap());

        let other = MasterKey::from_bytes([4; 32]);
        assert!(matches!(
            unwrap_data_key(&other, &w),
            Err(CryptoError::WrongKey { .. })
        ));
        let mut raw = STANDARD.decode(&w).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            unwrap_data_key(&k, &STANDARD.encode(raw)),
            Err(CryptoError::WrongKey { .. })
        ));
    }

    #[test]
    fn material_json_has_pyarrows_field_names() {
        let m = KeyMaterial::footer("otsk-0011223344556677", "d2Vk".into());
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(v["keyMaterialType"], "PKMT1");
        assert_eq!(v["internalStorage"], true);
        assert_eq!(v["isFooterKey"], true);
        assert_eq!(v["kmsInstanceID"], "DEFAULT");
        assert_eq!(v["kmsInstanceURL"], "DEFAULT");
        assert_eq!(v["masterKeyID"], "otsk-0011223344556677");
        assert_eq!(v["wrappedDEK"], "d2Vk");
        assert_eq!(v["doubleWrapping"], false);
        assert_eq!(KeyMaterial::parse(&m.to_json()).unwrap(), m);

        // pyarrow's column key material has no KMS fields.
        let column = br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"k","wrappedDEK":"eA==","doubleWrapping":false}"#;
        assert_eq!(KeyMaterial::parse(column).unwrap().master_key_id, "k");
        let double = br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"masterKeyID":"k","wrappedDEK":"eA==","doubleWrapping":true}"#;
        assert!(
            KeyMaterial::parse(double)
                .unwrap_err()
                .to_string()
                .contains("double")
        );
        assert!(KeyMaterial::parse(b"\x00\x01").is_err());
    }
}
