//! Reading a snapshot's Parquet files, and only the bytes that were verified.
//!
//! A file is read straight from the object store with ranged reads: the footer first, then one
//! row group at a time, so memory stays bounded by row-group size, not file size. Verification
//! reads every byte and checks SHA-256, but the object could be replaced between verification and
//! these reads; [`FilePin`] says how that gap is closed for each file:
//!
//! - [`FilePin::Tagged`]: verification recorded the ETag (and/or version) of the very response
//!   whose bytes it hashed. Every ranged read carries it (`If-Match`, or the version), so a
//!   replaced object fails the read ([`ObjectChanged`]) instead of being decoded.
//! - [`FilePin::Rehash`]: the store named neither an ETag nor a version. The whole file is read
//!   once more, hashed, and compared with the manifest before any row is decoded; rows are then
//!   decoded from that same copy of the bytes — in memory when the file is at most
//!   [`REHASH_IN_MEMORY_MAX`] bytes, else from a temporary local file (deleted when done), so
//!   memory stays bounded and nothing read after the hash check can differ from what was hashed.
//! - [`FilePin::FirstRead`]: the snapshot was not verified (`--skip-verify`). Reads carry the
//!   ETag of the first read, so a file replaced mid-read fails rather than mixing two versions.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::errors::{ParquetError, Result as ParquetResult};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use sha2::{Digest, Sha256};

use crate::error::RestoreError;

/// Files up to this size are re-hashed in memory; larger ones through a temporary local file.
pub const REHASH_IN_MEMORY_MAX: u64 = 64 * 1024 * 1024;

/// How the reads of one file are tied to the bytes verification checked (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilePin {
    Tagged {
        e_tag: Option<String>,
        version: Option<String>,
    },
    Rehash,
    FirstRead,
}

/// The object is not the one that was verified (or first read): replaced, changed or deleted,
/// or its bytes do not hash to the manifest's SHA-256.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ObjectChanged {
    pub detail: String,
}

fn changed(detail: String) -> ParquetError {
    ParquetError::External(Box::new(ObjectChanged { detail }))
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// One object, read by byte ranges, every read tied to one ETag / version once known.
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    e_tag: Option<String>,
    version: Option<String>,
    /// Take the ETag / version of the first response when none is pinned yet.
    pin_first: bool,
}

impl ObjectReader {
    /// Reads tied to the given ETag / version (both `None`: not tied to anything).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        e_tag: Option<String>,
        version: Option<String>,
    ) -> Self {
        ObjectReader {
            store,
            path,
            e_tag,
            version,
            pin_first: false,
        }
    }

    /// Reads tied to whatever version the first read sees.
    pub fn pinned_at_first_read(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        ObjectReader {
            pin_first: true,
            ..ObjectReader::new(store, path, None, None)
        }
    }

    async fn read(&mut self, range: Range<u64>) -> ParquetResult<Bytes> {
        let pinned = self.e_tag.is_some() || self.version.is_some();
        let options = GetOptions {
            range: Some(range.into()),
            if_match: self.e_tag.clone(),
            version: self.version.clone(),
            ..Default::default()
        };
        let got = match self.store.get_opts(&self.path, options).await {
            Ok(g) => g,
            Err(object_store::Error::Precondition { .. }) => {
                return Err(changed(format!(
                    "its ETag is no longer {}",
                    self.e_tag.as_deref().unwrap_or("the verified one")
                )));
            }
            Err(object_store::Error::NotFound { .. }) if pinned => {
                return Err(changed("the verified object is gone".into()));
            }
            Err(e) => return Err(external(e)),
        };
        // A store that ignores If-Match still names the ETag it served.
        if let (Some(want), Some(got)) = (&self.e_tag, &got.meta.e_tag)
            && want != got
        {
            return Err(changed(format!("ETag {got}, verified {want}")));
        }
        if self.pin_first && !pinned {
            self.e_tag = got.meta.e_tag.clone();
            self.version = got.meta.version.clone();
        }
        got.bytes().await.map_err(external)
    }
}

/// A local temporary file holding a re-hashed copy of a snapshot file (deleted on drop).
struct Spool {
    file: Arc<Mutex<std::fs::File>>,
}

impl Spool {
    async fn read(&self, range: Range<u64>) -> ParquetResult<Bytes> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || -> ParquetResult<Bytes> {
            let mut f = file
                .lock()
                .map_err(|_| ParquetError::General("spool file lock poisoned".into()))?;
            let len = usize::try_from(range.end.saturating_sub(range.start))
                .map_err(|_| ParquetError::General("range too large".into()))?;
            let mut buf = vec![0u8; len];
            f.seek(SeekFrom::Start(range.start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| ParquetError::External(Box::new(e)))?
    }
}

/// Where a file's bytes are decoded from.
enum Origin {
    Remote(ObjectReader),
    Memory(Bytes),
    Spool(Spool),
}

/// One snapshot file, opened for decoding (see [`open_file`]).
pub struct FileSource {
    inner: Origin,
    size: u64,
    /// Decrypts an encrypted file's footer and pages (FORMAT.md §12).
    decryption: Option<Arc<FileDecryptionProperties>>,
}

impl FileSource {
    /// Where the bytes come from: `remote`, `memory` or `spool` (for tests and logs).
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Origin::Remote(_) => "remote",
            Origin::Memory(_) => "memory",
            Origin::Spool(_) => "spool",
        }
    }

    /// Decrypt with these properties (the snapshot's keys); `None` reads plaintext only.
    pub fn with_decryption(mut self, decryption: Option<Arc<FileDecryptionProperties>>) -> Self {
        self.decryption = decryption;
        self
    }

    async fn builder(self) -> ParquetResult<ParquetRecordBatchStreamBuilder<FileSource>> {
        let mut options = ArrowReaderOptions::new();
        if let Some(d) = &self.decryption {
            options = options.with_file_decryption_properties(d.clone());
        }
        ParquetRecordBatchStreamBuilder::new_with_options(self, options).await
    }

    /// A stream of record batches of `batch_rows` rows, one row group fetched at a time.
    pub async fn batches(
        self,
        batch_rows: usize,
    ) -> ParquetResult<ParquetRecordBatchStream<FileSource>> {
        self.builder()
            .await?
            .with_batch_size(batch_rows.max(1))
            .build()
    }

    /// A stream of record batches sized so that one decoded batch holds about `decoded_budget`
    /// bytes (by the row groups' uncompressed sizes per row, at least one row and at most
    /// `max_rows`), and what reading the file holds in memory at once: the largest row group as
    /// fetched (compressed) plus one decoded batch.
    pub async fn batches_within(
        self,
        decoded_budget: usize,
        max_rows: usize,
    ) -> ParquetResult<(ParquetRecordBatchStream<FileSource>, ReadPlan)> {
        let builder = self.builder().await?;
        let plan = ReadPlan::of(builder.metadata(), decoded_budget, max_rows);
        let stream = builder.with_batch_size(plan.batch_rows).build()?;
        Ok((stream, plan))
    }
}

/// How a file is read within a memory budget ([`FileSource::batches_within`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// Rows per decoded record batch.
    pub batch_rows: usize,
    /// The most bytes reading the file holds at once: the largest row group as fetched plus one
    /// decoded batch (an estimate: rows of one row group are taken as equally large).
    pub bytes: u64,
}

impl ReadPlan {
    pub fn of(meta: &ParquetMetaData, decoded_budget: usize, max_rows: usize) -> Self {
        let mut row_bytes = 1u64;
        let mut fetched = 0u64;
        for rg in meta.row_groups() {
            let rows = u64::try_from(rg.num_rows()).unwrap_or(0).max(1);
            let total = u64::try_from(rg.total_byte_size()).unwrap_or(0);
            row_bytes = row_bytes.max(total.div_ceil(rows));
            fetched = fetched.max(u64::try_from(rg.compressed_size()).unwrap_or(0));
        }
        let fit = (decoded_budget as u64 / row_bytes).max(1);
        let batch_rows = usize::try_from(fit)
            .unwrap_or(usize::MAX)
            .clamp(1, max_rows.max(1));
        ReadPlan {
            batch_rows,
            bytes: fetched.saturating_add(row_bytes.saturating_mul(batch_rows as u64)),
        }
    }
}

impl AsyncFileReader for FileSource {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        async move {
            match &mut self.inner {
                Origin::Remote(r) => r.read(range).await,
                Origin::Memory(b) => {
                    let (s, e) = (range.start as usize, range.end as usize);
                    if s > e || e > b.len() {
                        return Err(ParquetError::EOF(format!(
                            "range {s}..{e} beyond {} bytes",
                            b.len()
                        )));
                    }
                    Ok(b.slice(s..e))
                }
                Origin::Spool(f) => f.read(range).await,
            }
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            let md = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

/// Opens snapshot file `path` (`name` in messages) of `size` bytes and SHA-256 `sha256` (hex),
/// read as `pin` says. With [`FilePin::Rehash`] the whole file is read and checked here, and a
/// mismatch is [`RestoreError::SnapshotChanged`] before any row is decoded.
pub async fn open_file(
    store: Arc<dyn ObjectStore>,
    path: Path,
    name: &str,
    size: u64,
    sha256: &str,
    pin: &FilePin,
) -> Result<FileSource, RestoreError> {
    open_file_within(store, path, name, size, sha256, pin, REHASH_IN_MEMORY_MAX).await
}

/// [`open_file`], keeping a re-hashed copy in memory only up to `memory_max` bytes (at most
/// [`REHASH_IN_MEMORY_MAX`]); a larger file is spooled to a temporary local file.
pub async fn open_file_within(
    store: Arc<dyn ObjectStore>,
    path: Path,
    name: &str,
    size: u64,
    sha256: &str,
    pin: &FilePin,
    memory_max: u64,
) -> Result<FileSource, RestoreError> {
    let inner = match pin {
        FilePin::Tagged { e_tag, version } => Origin::Remote(ObjectReader::new(
            store,
            path,
            e_tag.clone(),
            version.clone(),
        )),
        FilePin::FirstRead => Origin::Remote(ObjectReader::pinned_at_first_read(store, path)),
        FilePin::Rehash => {
            let max = memory_max.min(REHASH_IN_MEMORY_MAX);
            rehash(store, &path, name, size, sha256, max).await?
        }
    };
    Ok(FileSource {
        inner,
        size,
        decryption: None,
    })
}

/// Reads the whole object once, hashing it and keeping a copy (in memory up to `memory_max`
/// bytes, else in a temporary file), and returns the copy only when size and SHA-256 match.
async fn rehash(
    store: Arc<dyn ObjectStore>,
    path: &Path,
    name: &str,
    size: u64,
    sha256: &str,
    memory_max: u64,
) -> Result<Origin, RestoreError> {
    let store_err = |source| RestoreError::Store {
        path: name.to_string(),
        source,
    };
    let mismatch = |detail: String| RestoreError::SnapshotChanged {
        path: name.to_string(),
        detail,
    };
    let got = match store.get_opts(path, GetOptions::default()).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(mismatch("the verified object is gone".into()));
        }
        Err(e) => return Err(store_err(e)),
    };
    let mut memory: Option<Vec<u8>> = None;
    let mut spool: Option<std::fs::File> = None;
    if size <= memory_max {
        memory = Some(Vec::with_capacity(size as usize));
    } else {
        spool =
            Some(tempfile::tempfile().map_err(|e| {
                RestoreError::io("creating a spool file in", std::env::temp_dir(), e)
            })?);
    }
    let mut hasher = Sha256::new();
    let mut seen = 0u64;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.try_next().await.map_err(store_err)? {
        seen += chunk.len() as u64;
        if seen > size {
            return Err(mismatch(format!(
                "more than the {size} bytes the manifest lists"
            )));
        }
        hasher.update(&chunk);
        if let Some(m) = &mut memory {
            m.extend_from_slice(&chunk);
        }
        if let Some(f) = &mut spool {
            f.write_all(&chunk).map_err(|e| {
                RestoreError::io("writing a spool file in", std::env::temp_dir(), e)
            })?;
        }
    }
    if seen != size {
        return Err(mismatch(format!("{seen} bytes, the manifest lists {size}")));
    }
    let digest = hex::encode(hasher.finalize());
    if digest != sha256 {
        return Err(mismatch(format!(
            "SHA-256 {digest}, the manifest says {sha256}"
        )));
    }
    Ok(match (memory, spool) {
        (Some(m), _) => Origin::Memory(Bytes::from(m)),
        (None, Some(f)) => Origin::Spool(Spool {
            file: Arc::new(Mutex::new(f)),
        }),
        (None, None) => Origin::Memory(Bytes::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    /// `batch` as a Parquet file in row groups of `group_rows` rows.
    fn parquet_of(batch: arrow_array::RecordBatch, group_rows: usize) -> Vec<u8> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut out = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out
    }

    /// A small valid Parquet file: 100 rows of one Int64 column, in 4 row groups.
    fn parquet_bytes(offset: i64) -> Vec<u8> {
        use arrow_array::{Int64Array, RecordBatch};
        let col = Int64Array::from_iter_values(offset..offset + 100);
        parquet_of(
            RecordBatch::try_from_iter([("v", Arc::new(col) as _)]).unwrap(),
            25,
        )
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    async fn values(src: FileSource) -> Vec<i64> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        let batches: Vec<_> = src.batches(10).await.unwrap().try_collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    async fn store_with(bytes: &[u8]) -> (Arc<dyn ObjectStore>, Path) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("snap/data/part-0.parquet");
        store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .unwrap();
        (store, path)
    }

    /// A file of 40 rows of one 100 kB string each, in row groups of 20 rows.
    fn wide_parquet() -> Vec<u8> {
        use arrow_array::{RecordBatch, StringArray};
        let col =
            StringArray::from_iter_values((0..40).map(|i| format!("{i}{}", "x".repeat(100_000))));
        parquet_of(
            RecordBatch::try_from_iter([("s", Arc::new(col) as _)]).unwrap(),
            20,
        )
    }

    #[tokio::test]
    async fn batches_are_sized_by_bytes_not_rows() {
        let bytes = wide_parquet();
        let (store, path) = store_with(&bytes).await;
        let open = || {
            open_file(
                store.clone(),
                path.clone(),
                "f",
                bytes.len() as u64,
                "",
                &FilePin::FirstRead,
            )
        };
        // 1 MB of decoded rows per batch: about 10 rows of 100 kB, never the 1024 asked for.
        let (stream, plan) = open()
            .await
            .unwrap()
            .batches_within(1 << 20, 1024)
            .await
            .unwrap();
        assert!((5..=10).contains(&plan.batch_rows), "{plan:?}");
        assert!(
            plan.bytes >= 1_000_000 && plan.bytes < 6_000_000,
            "{plan:?}"
        );
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        assert!(batches.iter().all(|b| b.num_rows() <= plan.batch_rows));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 40);
        // A budget smaller than one row still reads one row at a time, never zero.
        let (_, plan) = open()
            .await
            .unwrap()
            .batches_within(10, 1024)
            .await
            .unwrap();
        assert_eq!(plan.batch_rows, 1);
        // Small rows: the row cap applies.
        let small = parquet_bytes(0);
        let (store, path) = store_with(&small).await;
        let src = open_file(
            store,
            path,
            "f",
            small.len() as u64,
            "",
            &FilePin::FirstRead,
        )
        .await
        .unwrap();
        let (_, plan) = src.batches_within(1 << 20, 16).await.unwrap();
        assert_eq!(plan.batch_rows, 16);
    }

    #[tokio::test]
    async fn a_tagged_read_of_a_replaced_object_fails_as_changed() {
        let good = parquet_bytes(0);
        let (store, path) = store_with(&good).await;
        let e_tag = store.head(&path).await.unwrap().e_tag;
        let pin = FilePin::Tagged {
            e_tag,
            version: None,
        };
        let src = open_file(
            store.clone(),
            path.clone(),
            "f",
            good.len() as u64,
            "",
            &pin,
        )
        .await
        .unwrap();
        assert_eq!(values(src).await, (0..100).collect::<Vec<_>>());
        // Replaced by another valid file after "verification".
        store
            .put(&path, PutPayload::from(parquet_bytes(1000)))
            .await
            .unwrap();
        let src = open_file(store, path, "f", good.len() as u64, "", &pin)
            .await
            .unwrap();
        let err = match src.batches(10).await {
            Err(e) => RestoreError::parquet("f", e),
            Ok(_) => panic!("a replaced object was opened"),
        };
        assert!(
            matches!(err, RestoreError::SnapshotChanged { .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Mismatch);
    }

    #[tokio::test]
    async fn first_read_pins_the_rest_of_the_file() {
        let good = parquet_bytes(0);
        let (store, path) = store_with(&good).await;
        let mut r = ObjectReader::pinned_at_first_read(store.clone(), path.clone());
        r.read(0..4).await.unwrap();
        store
            .put(&path, PutPayload::from(good.clone()))
            .await
            .unwrap();
        let e = r.read(4..8).await.unwrap_err();
        assert!(RestoreError::parquet("f", e).to_string().contains("ETag"));
    }

    #[tokio::test]
    async fn rehash_in_memory_and_through_a_spool_file() {
        let good = parquet_bytes(0);
        let (store, path) = store_with(&good).await;
        let size = good.len() as u64;
        for (max, kind) in [(u64::MAX, "memory"), (16, "spool")] {
            let inner = rehash(store.clone(), &path, "f", size, &sha(&good), max)
                .await
                .unwrap();
            let src = FileSource {
                inner,
                size,
                decryption: None,
            };
            assert_eq!(src.kind(), kind);
            assert_eq!(values(src).await, (0..100).collect::<Vec<_>>());
        }
        // Other bytes of the same size, and bytes of another size, are refused.
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        store.put(&path, PutPayload::from(flipped)).await.unwrap();
        for max in [u64::MAX, 16] {
            let err = rehash(store.clone(), &path, "f", size, &sha(&good), max)
                .await
                .err()
                .unwrap();
            assert!(err.to_string().contains("SHA-256"), "{err}");
            assert_eq!(err.kind(), crate::ErrorKind::Mismatch);
        }
        store
            .put(&path, PutPayload::from(parquet_bytes(0)[..100].to_vec()))
            .await
            .unwrap();
        let err = rehash(store, &path, "f", size, &sha(&good), 16)
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("bytes, the manifest lists"),
            "{err}"
        );
    }
}
