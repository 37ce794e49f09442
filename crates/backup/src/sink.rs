//! Partition sinks of one split attempt: routing rows to the partition they belong to, buffering
//! them in Arrow builders under a byte budget, streaming them into Parquet files that roll at the
//! target size, and closing files (least recently used first) to bound open files.
//!
//! Sinks are made when a partition's first row arrives and dropped once they hold nothing (rows
//! written, file closed), so a split that touches many partitions holds memory for only a few.
//!
//! Sinks are keyed by the partition's values, not its folder name, so the values recorded for a
//! file are those of every row in it even when two values escape to the same folder.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ots_format::layout::data_file_path;
use ots_format::{FileEntry, KeyPart, Partitioning};
use ots_manifest::Snapshot;
use ots_schema::{BatchBuilder, RowReader, SnapshotSchema, SnapshotStats};
use ots_wire::types::{PkColumn, RowRef};
use ots_writer::{ParquetFileWriter, ParquetOptions};

use crate::budget::MemoryPlan;
use crate::partition::{PartitionValues, partition_of, partition_path};
use crate::{BackupError, Progress};

/// Rows of one partition on their way into files.
struct PartitionSink {
    folder: String,
    builder: BatchBuilder,
    /// Estimated memory of the rows in `builder`.
    buffered_bytes: usize,
    file: Option<OpenFile>,
    last_used: u64,
}

struct OpenFile {
    writer: ParquetFileWriter,
    pk_min: Option<Vec<PkColumn>>,
    pk_max: Option<Vec<PkColumn>>,
    cells: u64,
}

/// Limits of one split attempt's sinks.
#[derive(Clone, Debug)]
pub(crate) struct SinkLimits {
    /// Rows per record batch at most (the byte limits usually decide first).
    pub batch_rows: usize,
    /// The split's share of the memory budget.
    pub memory: MemoryPlan,
    pub parquet: ParquetOptions,
}

/// Every partition sink of one split attempt.
pub(crate) struct Sinks {
    snapshot: Snapshot,
    schema: Arc<SnapshotSchema>,
    partitioning: Partitioning,
    split: u32,
    attempt: String,
    limits: SinkLimits,
    progress: Arc<Progress>,
    sinks: HashMap<PartitionValues, PartitionSink>,
    /// Statistics of sinks already dropped.
    stats: SnapshotStats,
    file_seq: u32,
    tick: u64,
    files: Vec<FileEntry>,
}

impl Sinks {
    pub(crate) fn new(
        snapshot: Snapshot,
        schema: Arc<SnapshotSchema>,
        partitioning: Partitioning,
        split: u32,
        attempt: String,
        limits: SinkLimits,
        progress: Arc<Progress>,
    ) -> Self {
        Sinks {
            snapshot,
            schema,
            partitioning,
            split,
            attempt,
            limits,
            progress,
            sinks: HashMap::new(),
            stats: SnapshotStats::default(),
            file_seq: 0,
            tick: 0,
            files: Vec::new(),
        }
    }

    /// Buffers one row in its partition's builder; returns the partition when its batch is full.
    pub(crate) fn route(
        &mut self,
        row: &RowRef<'_>,
    ) -> Result<Option<PartitionValues>, ots_schema::ConvertError> {
        self.tick += 1;
        let values = partition_of(&self.partitioning, row);
        let sink = match self.sinks.get_mut(&values) {
            Some(s) => s,
            None => self
                .sinks
                .entry(values.clone())
                .or_insert_with(|| PartitionSink {
                    folder: partition_path(&values),
                    builder: BatchBuilder::new(self.schema.clone()),
                    buffered_bytes: 0,
                    file: None,
                    last_used: 0,
                }),
        };
        sink.last_used = self.tick;
        sink.builder.push_row(row)?;
        sink.buffered_bytes += row_memory(row);
        let full = sink.builder.len() >= self.limits.batch_rows
            || sink.buffered_bytes >= self.limits.memory.batch;
        Ok(full.then_some(values))
    }

    /// Writes full batches, then keeps buffered rows and open files within budget.
    pub(crate) async fn after_page(
        &mut self,
        full: Vec<PartitionValues>,
    ) -> Result<(), BackupError> {
        for key in full {
            self.flush(&key, false).await?;
        }
        // With many partitions, rows buffered across all of them are bounded too: past the
        // budget the least recently used partitions are written out (smaller files, flat memory).
        let budget = self.limits.memory.buffered;
        loop {
            let buffered: usize = self.sinks.values().map(|s| s.buffered_bytes).sum();
            if buffered <= budget {
                break;
            }
            let Some(key) = self
                .sinks
                .iter()
                .filter(|(_, s)| !s.builder.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.flush(&key, false).await?;
            self.limit_open_files().await?;
        }
        self.limit_open_files().await?;
        self.release_idle();
        Ok(())
    }

    /// Drops sinks that hold nothing (no buffered rows, no open file), keeping their statistics.
    fn release_idle(&mut self) {
        let idle: Vec<PartitionValues> = self
            .sinks
            .iter()
            .filter(|(_, s)| s.builder.is_empty() && s.file.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(mut s) = self.sinks.remove(&key) {
                self.stats.merge(&s.builder.take_stats());
            }
        }
    }

    /// Flushes and closes everything; returns the attempt's files (sorted by path) and stats.
    pub(crate) async fn finish(mut self) -> Result<(Vec<FileEntry>, SnapshotStats), BackupError> {
        let mut keys: Vec<PartitionValues> = self.sinks.keys().cloned().collect();
        keys.sort();
        let mut stats = std::mem::take(&mut self.stats);
        for key in keys {
            self.flush(&key, true).await?;
            if let Some(s) = self.sinks.get_mut(&key) {
                stats.merge(&s.builder.take_stats());
            }
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((self.files, stats))
    }

    /// Writes the sink's buffered rows to its files in slices of `batch_rows`, rolling to a new
    /// file whenever the current one reaches the target size; closes the last one when `last`.
    async fn flush(&mut self, key: &PartitionValues, last: bool) -> Result<(), BackupError> {
        let Some(mut sink) = self.sinks.remove(key) else {
            return Ok(());
        };
        let result = self.flush_sink(key, &mut sink, last).await;
        self.sinks.insert(key.clone(), sink);
        result
    }

    async fn flush_sink(
        &mut self,
        key: &PartitionValues,
        sink: &mut PartitionSink,
        last: bool,
    ) -> Result<(), BackupError> {
        if !sink.builder.is_empty() {
            let batch = sink.builder.finish()?;
            let batch_bytes = std::mem::take(&mut sink.buffered_bytes);
            let step = self.limits.batch_rows.max(1);
            let mut offset = 0;
            while offset < batch.num_rows() {
                let slice = batch.slice(offset, step.min(batch.num_rows() - offset));
                offset += slice.num_rows();
                if sink.file.is_none() {
                    sink.file = Some(self.open_file(&sink.folder, &slice)?);
                }
                let Some(f) = sink.file.as_mut() else {
                    continue;
                };
                let share = batch_bytes.saturating_mul(slice.num_rows()) / batch.num_rows().max(1);
                f.writer.write_sized(&slice, share).await?;
                // Rows of a split arrive in primary-key order, so a slice's ends bound the file.
                let reader = RowReader::new(&self.schema, &slice)?;
                if f.pk_min.is_none() {
                    f.pk_min = Some(reader.primary_key(0));
                }
                f.pk_max = Some(reader.primary_key(slice.num_rows() - 1));
                f.cells += batch_cells(&slice);
                if f.writer.estimated_bytes() >= self.limits.parquet.target_file_bytes
                    && let Some(f) = sink.file.take()
                {
                    let entry = self.close_file(f, key).await?;
                    self.files.push(entry);
                }
            }
        }
        if last && let Some(f) = sink.file.take() {
            let entry = self.close_file(f, key).await?;
            self.files.push(entry);
        }
        Ok(())
    }

    /// `first`: the file's first batch, whose schema the file takes and from which the encodings
    /// are chosen.
    fn open_file(
        &mut self,
        folder: &str,
        first: &arrow_array::RecordBatch,
    ) -> Result<OpenFile, BackupError> {
        let rel = data_file_path(folder, self.split, &self.attempt, self.file_seq);
        self.file_seq += 1;
        let (store, object) = self.snapshot.object(&rel);
        let writer = ParquetFileWriter::create(
            store,
            object,
            rel,
            first.schema(),
            self.limits
                .parquet
                .snapshot_properties(&self.schema, first)?,
        )?
        .with_row_group_bytes(self.limits.memory.row_group);
        Ok(OpenFile {
            writer,
            pk_min: None,
            pk_max: None,
            cells: 0,
        })
    }

    // `&mut self`: a shared borrow held across the upload would need `Sinks: Sync`.
    async fn close_file(
        &mut self,
        f: OpenFile,
        values: &PartitionValues,
    ) -> Result<FileEntry, BackupError> {
        finish_file(
            f.writer,
            &self.progress,
            self.split,
            values.iter().cloned().collect(),
            f.cells,
            (f.pk_min, f.pk_max),
        )
        .await
    }

    /// Keeps at most `max_open_partitions` files open: closes the least recently used.
    async fn limit_open_files(&mut self) -> Result<(), BackupError> {
        loop {
            let open: Vec<(u64, PartitionValues)> = self
                .sinks
                .iter()
                .filter(|(_, s)| s.file.is_some())
                .map(|(k, s)| (s.last_used, k.clone()))
                .collect();
            if open.len() <= self.limits.memory.open_files.max(1) {
                return Ok(());
            }
            let Some((_, key)) = open.into_iter().min() else {
                return Ok(());
            };
            // Buffered rows of that partition stay buffered; only its file is closed.
            let file = self.sinks.get_mut(&key).and_then(|s| s.file.take());
            if let Some(f) = file {
                let entry = self.close_file(f, &key).await?;
                self.files.push(entry);
            }
        }
    }
}

/// Estimated memory of one row in Arrow builders: values, offsets, timestamps and, for cells kept
/// in `$cells`, their names. An overestimate for typed columns, which is the safe side.
fn row_memory(row: &RowRef<'_>) -> usize {
    use ots_wire::types::PkValueRef;
    let key: usize = row
        .primary_key
        .iter()
        .map(|c| match c.value {
            PkValueRef::String(s) => s.len() + 4,
            PkValueRef::Binary(b) => b.len() + 4,
            _ => 8,
        })
        .sum();
    let cells: usize = row
        .cells
        .iter()
        .map(|c| c.name.len() + c.value.map_or(0, |v| v.data_size()) + 16)
        .sum();
    key + cells
}

/// Cells stored in a batch: non-null typed values plus `$cells` entries.
fn batch_cells(batch: &arrow_array::RecordBatch) -> u64 {
    use arrow_array::Array;
    let mut n = 0u64;
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name == ots_schema::layout::CELLS_COLUMN {
            // Offsets, not `values().len()`: a sliced list still shares all of its child values.
            if let Some(list) = col.as_any().downcast_ref::<arrow_array::ListArray>() {
                let offsets = list.value_offsets();
                n += (offsets[offsets.len() - 1] - offsets[0]) as u64;
            }
        } else if name != ots_schema::layout::TS_COLUMN && field.is_nullable() {
            n += (col.len() - col.null_count()) as u64;
        }
    }
    n
}

/// Closes `writer` (the upload completes), counts the file in the progress, and describes it for a
/// record: its split, partition, cells and smallest and largest key.
pub(crate) async fn finish_file(
    writer: ParquetFileWriter,
    progress: &Progress,
    split: u32,
    partition: std::collections::BTreeMap<String, String>,
    cells: u64,
    (pk_min, pk_max): (Option<Vec<PkColumn>>, Option<Vec<PkColumn>>),
) -> Result<FileEntry, BackupError> {
    let written = writer.close().await?;
    progress.files.fetch_add(1, Ordering::Relaxed);
    progress
        .bytes_written
        .fetch_add(written.bytes, Ordering::Relaxed);
    let parts = |pk: Option<Vec<PkColumn>>| {
        pk.unwrap_or_default()
            .iter()
            .map(KeyPart::from_column)
            .collect::<Vec<_>>()
    };
    Ok(FileEntry {
        path: written.path,
        split,
        partition,
        rows: written.rows,
        cells,
        bytes: written.bytes,
        sha256: written.sha256,
        pk_min: parts(pk_min),
        pk_max: parts(pk_max),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use ots_format::{Partitioning, PkColumnSchema};
    use ots_manifest::Snapshot;
    use ots_schema::infer::SchemaInferrer;
    use ots_wire::types::{CellRef, PkCellRef, PkType, PkValueRef, RowRef, ValueRef};
    use ots_writer::{Destination, ParquetOptions};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::{SinkLimits, Sinks};
    use crate::Progress;
    use crate::budget::MemoryPlan;

    const MIB: usize = 1 << 20;

    fn row<'a>(id: i64, part: &'a str, blob: &'a [u8]) -> RowRef<'a> {
        RowRef {
            primary_key: vec![PkCellRef {
                name: "id",
                value: PkValueRef::Integer(id),
            }],
            cells: vec![
                CellRef {
                    name: "blob",
                    value: Some(ValueRef::Binary(blob)),
                    op: None,
                    timestamp: Some(1_700_000_000_000),
                },
                CellRef {
                    name: "part",
                    value: Some(ValueRef::String(part)),
                    op: None,
                    timestamp: Some(1_700_000_000_000),
                },
            ],
            delete_marker: false,
            sequence: None,
        }
    }

    fn sinks(store: Arc<InMemory>, memory: MemoryPlan, partitioning: Partitioning) -> Sinks {
        let blob = [0u8; 4];
        let mut inferrer = SchemaInferrer::new();
        inferrer.observe(&row(0, "a", &blob));
        let pk = vec![PkColumnSchema {
            name: "id".into(),
            pk_type: PkType::Integer,
            auto_increment: false,
        }];
        let schema = Arc::new(inferrer.finish(pk, 100).unwrap());
        let dest = Destination::from_store(store, Path::from("b"), "memory:///b", true);
        Sinks::new(
            Snapshot::new(dest, "s1"),
            schema,
            partitioning,
            0,
            "attempt1".into(),
            SinkLimits {
                batch_rows: 8192,
                memory,
                parquet: ParquetOptions::default(),
            },
            Arc::new(Progress::default()),
        )
    }

    fn plan(buffered: usize, open_files: usize, row_group: usize) -> MemoryPlan {
        MemoryPlan {
            total: 0,
            per_split: 0,
            buffered,
            batch: buffered / 2,
            open_files,
            row_group,
            upload_part: 5 * MIB,
        }
    }

    /// The Parquet metadata of a data file the sinks wrote.
    async fn written_file(
        store: &InMemory,
        path: &str,
    ) -> parquet::file::metadata::ParquetMetaData {
        let bytes = store
            .get(&Path::from(format!("b/s1/{path}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        SerializedFileReader::new(bytes).unwrap().metadata().clone()
    }

    async fn row_groups(store: &InMemory, path: &str) -> Vec<(i64, i64)> {
        let metadata = written_file(store, path).await;
        let ts_column = "$ts.blob";
        for g in metadata.row_groups() {
            let ts = g
                .columns()
                .iter()
                .find(|c| c.column_path().string() == ts_column)
                .expect("the row has a timestamped cell");
            // Timestamps are delta-packed (FORMAT.md §7.2), never dictionary-encoded.
            let encodings: Vec<_> = ts.encodings().collect();
            assert!(
                encodings.contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED)
                    && !encodings.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
                "{ts_column}: {encodings:?}"
            );
            assert_eq!(ts.compression(), parquet::basic::Compression::UNCOMPRESSED);
            let blob = g
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "blob")
                .expect("a blob column");
            assert!(matches!(
                blob.compression(),
                parquet::basic::Compression::ZSTD(_)
            ));
        }
        metadata
            .row_groups()
            .iter()
            .map(|g| (g.num_rows(), g.total_byte_size()))
            .collect()
    }

    /// 100 KB rows: batches and row groups are cut by bytes, never by the 8,192-row batch size.
    #[tokio::test]
    async fn wide_rows_are_written_in_batches_and_row_groups_bounded_in_bytes() {
        let store = Arc::new(InMemory::new());
        let mut s = sinks(store.clone(), plan(2 * MIB, 1, 3 * MIB), Partitioning::None);
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut most_buffered = 0;
        for page in 0..10 {
            // Pages of 10 rows (1 MB), as GetRange would return them.
            let mut full = Vec::new();
            for i in 0..10 {
                if let Some(k) = s.route(&row(page * 10 + i, "a", &blob)).unwrap()
                    && !full.contains(&k)
                {
                    full.push(k);
                }
            }
            s.after_page(full).await.unwrap();
            let buffered: usize = s.sinks.values().map(|p| p.buffered_bytes).sum();
            most_buffered = most_buffered.max(buffered);
        }
        assert!(most_buffered <= 2 * MIB, "{most_buffered} bytes buffered");
        let (files, stats) = s.finish().await.unwrap();
        assert_eq!(stats.rows, 100);
        assert_eq!(files.len(), 1);
        let groups = row_groups(&store, &files[0].path).await;
        assert_eq!(groups.iter().map(|g| g.0).sum::<i64>(), 100);
        assert!(
            groups.len() >= 3,
            "10 MB of rows in 3 MiB row groups: {groups:?}"
        );
        for (rows, bytes) in &groups {
            // A row group closes at the budget, overshooting by at most one batch (1 MiB).
            assert!(
                *bytes as usize <= 4 * MIB + MIB / 2,
                "{rows} rows, {bytes} bytes"
            );
        }
    }

    /// Rows of 40 partitions interleaved: sinks come and go, memory stays within the budget, and
    /// every row lands in a file of its partition.
    #[tokio::test]
    async fn many_partitions_hold_few_sinks_and_lose_no_row() {
        let store = Arc::new(InMemory::new());
        let partitioning = Partitioning::Column {
            column: "part".into(),
        };
        let mut s = sinks(store.clone(), plan(MIB, 2, 2 * MIB), partitioning);
        let names: Vec<String> = (0..40).map(|p| format!("p{p:02}")).collect();
        let blob = vec![7u8; 100_000];
        let mut most_sinks = 0;
        for page in 0..10i64 {
            let mut full = Vec::new();
            for i in 0..40 {
                let id = page * 40 + i;
                if let Some(k) = s.route(&row(id, &names[i as usize], &blob)).unwrap()
                    && !full.contains(&k)
                {
                    full.push(k);
                }
            }
            s.after_page(full).await.unwrap();
            let buffered: usize = s.sinks.values().map(|p| p.buffered_bytes).sum();
            assert!(buffered <= MIB, "{buffered} bytes buffered");
            assert!(s.sinks.values().filter(|p| p.file.is_some()).count() <= 2);
            most_sinks = most_sinks.max(s.sinks.len());
        }
        // Sinks that hold nothing are dropped after each page.
        assert!(most_sinks < 40, "{most_sinks} sinks alive");
        let (files, stats) = s.finish().await.unwrap();
        assert_eq!(stats.rows, 400);
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 400);
        for f in &files {
            let value = f.partition.get("part").unwrap();
            assert!(f.path.contains(&format!("part={value}/")), "{f:?}");
        }
        let partitions: std::collections::BTreeSet<_> =
            files.iter().map(|f| f.partition.clone()).collect();
        assert_eq!(partitions.len(), 40);
    }

    /// A key of unique integers is delta-packed without a dictionary; a column of two repeating
    /// values keeps its dictionary (FORMAT.md §7.2).
    #[tokio::test]
    async fn mostly_distinct_columns_skip_the_dictionary_and_repeating_ones_keep_it() {
        let store = Arc::new(InMemory::new());
        let mut s = sinks(store.clone(), plan(8 * MIB, 1, 8 * MIB), Partitioning::None);
        let blob = [1u8; 4];
        let parts = ["a", "b"];
        let mut full = Vec::new();
        for id in 0..1000i64 {
            if let Some(k) = s.route(&row(id, parts[id as usize % 2], &blob)).unwrap()
                && !full.contains(&k)
            {
                full.push(k);
            }
        }
        s.after_page(full).await.unwrap();
        let (files, _) = s.finish().await.unwrap();
        let metadata = written_file(&store, &files[0].path).await;
        let group = metadata.row_group(0);
        let encodings = |name: &str| -> Vec<parquet::basic::Encoding> {
            group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("column {name}"))
                .encodings()
                .collect()
        };
        use parquet::basic::Encoding::{DELTA_BINARY_PACKED, RLE_DICTIONARY};
        let id = encodings("id");
        assert!(
            id.contains(&DELTA_BINARY_PACKED) && !id.contains(&RLE_DICTIONARY),
            "id: {id:?}"
        );
        assert!(encodings("part").contains(&RLE_DICTIONARY));
    }
}
