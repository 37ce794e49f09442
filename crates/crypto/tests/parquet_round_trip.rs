//! Files encrypted through `FileEncryptor` read back through `decryption_properties`; other keys,
//! no keys and altered key material are refused with the key named.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use ots_crypto::{
    CryptoError, FileEncryptor, LocalKeys, MasterKey, decryption_properties, key_error,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::properties::WriterProperties;

fn batch() -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..1000).map(|i| format!("row {i}")),
            )),
        ),
    ])
    .unwrap()
}

fn encrypted_file(keys: Arc<LocalKeys>) -> Vec<u8> {
    let enc = FileEncryptor::new(keys).unwrap();
    let props = WriterProperties::builder()
        .with_file_encryption_properties(enc.file_properties().unwrap())
        .build();
    let mut out = Vec::new();
    let b = batch();
    let mut w = ArrowWriter::try_new(&mut out, b.schema(), Some(props)).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    out
}

fn read(
    file: &[u8],
    keys: Option<Arc<LocalKeys>>,
) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let mut options = ArrowReaderOptions::new();
    if let Some(k) = keys {
        options = options.with_file_decryption_properties(decryption_properties(k).unwrap());
    }
    ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::copy_from_slice(file), options)?
        .build()?
        .collect::<Result<Vec<_>, _>>()
        .map_err(Into::into)
}

#[test]
fn encrypted_files_round_trip_and_refuse_other_keys() {
    let key = MasterKey::generate().unwrap();
    let keys = Arc::new(LocalKeys::new(vec![key.clone()]));
    let file = encrypted_file(keys.clone());
    assert_eq!(&file[file.len() - 4..], b"PARE", "the footer is encrypted");
    assert!(
        !file.windows(7).any(|w| w == b"row 999"),
        "no plaintext value in the file"
    );
    assert_eq!(read(&file, Some(keys.clone())).unwrap(), vec![batch()]);

    // Each file gets its own data key: two files of the same rows differ throughout.
    let again = encrypted_file(keys.clone());
    assert_ne!(file[..file.len() / 2], again[..again.len() / 2]);

    // Another key: an error naming the key the file needs.
    let other = Arc::new(LocalKeys::new(vec![MasterKey::generate().unwrap()]));
    let e = read(&file, Some(other)).unwrap_err();
    match key_error(&e) {
        Some(CryptoError::UnknownKey { id, .. }) => assert_eq!(id, key.id()),
        _ => panic!("expected an unknown-key error, got {e}"),
    }
    // No key at all: refused (Parquet's own error).
    assert!(read(&file, None).is_err());
}

#[test]
fn altered_key_material_is_a_wrong_key_not_a_panic() {
    let key = MasterKey::generate().unwrap();
    let keys = Arc::new(LocalKeys::new(vec![key.clone()]));
    let mut file = encrypted_file(keys.clone());
    // Flip one base64 character of wrappedDEK inside the (plaintext) footer key metadata.
    let marker = b"\"wrappedDEK\":\"";
    let at = file
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("key material in the file")
        + marker.len();
    file[at] = if file[at] == b'A' { b'B' } else { b'A' };
    let e = read(&file, Some(keys)).unwrap_err();
    assert!(
        matches!(key_error(&e), Some(CryptoError::WrongKey { .. })),
        "{e}"
    );
}
