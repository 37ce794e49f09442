//! Partition sinks of one split attempt: routing rows to the partition they belong to, buffering
//! them in Arrow builders under a budget, streaming them into Parquet files that roll at the
//! target size, and closing files (least recently used first) to bound open files.
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

use crate::partition::{PartitionValues, partition_of, partition_path};
use crate::{BackupError, Progress};

/// Rows of one partition on their way into files.
struct PartitionSink {
    folder: String,
    builder: BatchBuilder,
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
    pub batch_rows: usize,
    pub max_open_partitions: usize,
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
                    file: None,
                    last_used: 0,
                }),
        };
        sink.last_used = self.tick;
        sink.builder.push_row(row)?;
        Ok((sink.builder.len() >= self.limits.batch_rows).then_some(values))
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
        let budget = self.limits.max_open_partitions.max(1) * self.limits.batch_rows.max(1);
        loop {
            let buffered: usize = self.sinks.values().map(|s| s.builder.len()).sum();
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
        self.limit_open_files().await
    }

    /// Flushes and closes everything; returns the attempt's files (sorted by path) and stats.
    pub(crate) async fn finish(mut self) -> Result<(Vec<FileEntry>, SnapshotStats), BackupError> {
        let mut keys: Vec<PartitionValues> = self.sinks.keys().cloned().collect();
        keys.sort();
        let mut stats = SnapshotStats::default();
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
            let step = self.limits.batch_rows.max(1);
            let mut offset = 0;
            while offset < batch.num_rows() {
                let slice = batch.slice(offset, step.min(batch.num_rows() - offset));
                offset += slice.num_rows();
                if sink.file.is_none() {
                    sink.file = Some(self.open_file(&sink.folder, &sink.builder)?);
                }
                let Some(f) = sink.file.as_mut() else {
                    continue;
                };
                f.writer.write(&slice).await?;
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

    fn open_file(&mut self, folder: &str, builder: &BatchBuilder) -> Result<OpenFile, BackupError> {
        let rel = data_file_path(folder, self.split, &self.attempt, self.file_seq);
        self.file_seq += 1;
        let (store, object) = self.snapshot.object(&rel);
        let writer = ParquetFileWriter::create(
            store,
            object,
            rel,
            builder.arrow_schema().clone(),
            self.limits.parquet.snapshot_properties(&self.schema)?,
        )?
        .with_row_group_bytes(self.limits.parquet.row_group_bytes);
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
        let written = f.writer.close().await?;
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        self.progress
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
            split: self.split,
            partition: values.iter().cloned().collect(),
            rows: written.rows,
            cells: f.cells,
            bytes: written.bytes,
            sha256: written.sha256,
            pk_min: parts(f.pk_min),
            pk_max: parts(f.pk_max),
        })
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
            if open.len() <= self.limits.max_open_partitions.max(1) {
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
