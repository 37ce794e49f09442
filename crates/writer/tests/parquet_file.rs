//! A streamed Parquet file: its reported size and SHA-256 are those of the stored object, and row
//! groups close at the byte budget, which is what bounds a writer's memory.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use ots_writer::{ParquetFileWriter, ParquetOptions};
use sha2::{Digest, Sha256};

fn batch(start: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(start..start + n));
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(
        (start..start + n).map(|i| format!("value {i} {}", "x".repeat((i % 50) as usize))),
    ));
    RecordBatch::try_new(schema, vec![keys, values]).unwrap()
}

#[tokio::test]
async fn size_and_checksum_match_the_object_and_row_groups_close_at_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let options = ParquetOptions {
        row_group_bytes: 16 * 1024,
        ..ParquetOptions::default()
    };
    let mut w = ParquetFileWriter::create(
        store,
        Path::from("data/part-00000-00000000-000.parquet"),
        "data/part-00000-00000000-000.parquet".into(),
        batch(0, 1).schema(),
        options.writer_properties().unwrap(),
    )
    .unwrap()
    .with_row_group_bytes(options.row_group_bytes);
    for i in 0..20 {
        w.write(&batch(i * 1000, 1000)).await.unwrap();
    }
    let written = w.close().await.unwrap();
    let bytes = std::fs::read(dir.path().join("data/part-00000-00000000-000.parquet")).unwrap();
    assert_eq!(written.rows, 20_000);
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
    let reader =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    use parquet::file::reader::FileReader;
    let md = reader.metadata();
    assert_eq!(md.file_metadata().num_rows(), 20_000);
    assert!(
        md.num_row_groups() >= 5,
        "{} row groups",
        md.num_row_groups()
    );
}
