//! One capture attempt: read the table's stream from the plan's start position to a consistency
//! point T_c chosen now (after every split's scan has ended), write the changes to Parquet change
//! files in replay order, then write the attempt's record (create-once). Like a split attempt, a
//! capture attempt writes only names carrying its own attempt token, so a crash leaves nothing
//! that a later attempt could mistake for its own; a resume runs a fresh attempt.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ots_format::layout::change_file_path;
use ots_format::time::{rfc3339, unix_micros};
use ots_format::{CapturePlan, CaptureRecord, Change, ChangeCounts, FileEntry, Plan, random_token};
use ots_manifest::Snapshot;
use ots_scan::{Capture, CaptureOptions};
use ots_schema::changes::ChangeBatchBuilder;
use ots_wire::OtsClient;
use ots_wire::types::{PkColumn, cmp_pk_columns};
use ots_writer::{ParquetFileWriter, ParquetOptions};

use crate::{BackupError, Progress};

pub(crate) struct CaptureJob {
    pub client: OtsClient,
    pub snapshot: Snapshot,
    pub plan: Arc<Plan>,
    pub capture: CapturePlan,
    pub options: CaptureOptions,
    pub parquet: ParquetOptions,
    /// Changes buffered before they are encoded, in bytes.
    pub batch_bytes: usize,
    /// Row groups close at this many bytes.
    pub row_group_bytes: usize,
    pub progress: Arc<Progress>,
}

/// A change file being written: opened with its first batch, whose columns decide their
/// encodings (`ParquetOptions::properties_for`).
struct OpenChangeFile {
    writer: ParquetFileWriter,
    keys: KeyRange,
}

/// A task stopped when its handle is dropped (a cancelled capture stops writing).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the writing side of a capture has made so far.
struct WrittenChanges {
    builder: ChangeBatchBuilder,
    counts: ChangeCounts,
    files: Vec<FileEntry>,
    open: Option<OpenChangeFile>,
    /// The key range of the changes buffered in `builder`, not yet written.
    buffered: KeyRange,
    /// The number of the next change file.
    seq: u32,
}

/// The smallest and largest primary key of some changes, and how many cells they carry.
#[derive(Default)]
struct KeyRange {
    min: Option<Vec<PkColumn>>,
    max: Option<Vec<PkColumn>>,
    cells: u64,
}

impl CaptureJob {
    pub(crate) async fn run(self) -> Result<CaptureRecord, BackupError> {
        let attempt = random_token();
        // T_c: now, after the scans. Everything logged up to it is in this snapshot.
        let t_c_us = unix_micros(SystemTime::now()).max(self.capture.start.t_us);
        let client = self.client.clone();
        let mut capture = Capture::open(
            &client,
            &self.capture.stream_id,
            &self.capture.start,
            t_c_us,
            self.options,
        )
        .await?;
        // Reading and writing run side by side: while one response's changes are encoded on a
        // task of their own, the next response is requested, received and decoded here (one batch
        // waits between them). Spent batches go back to the reader to be decoded into.
        let job = Arc::new(self);
        let (batches_tx, batches_rx) = tokio::sync::mpsc::channel::<Vec<Change>>(1);
        let (spent_tx, mut spent_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Change>>();
        let mut writer = AbortOnDrop(tokio::spawn({
            let job = job.clone();
            let attempt = attempt.clone();
            async move { job.write_changes(&attempt, batches_rx, spent_tx).await }
        }));
        let read = async {
            // Moved in, so that the channel closes (and the writer ends) when reading ends.
            let batches_tx = batches_tx;
            loop {
                let batch = tokio::select! {
                    batch = capture.next_batch() => batch?,
                    // The writer stopped, which it does only on an error: that error is the one
                    // reported, and the capture is abandoned mid-read.
                    () = batches_tx.closed() => break,
                };
                let Some(batch) = batch else { break };
                while let Ok(spent) = spent_rx.try_recv() {
                    capture.recycle(spent);
                }
                if batches_tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok::<(), BackupError>(())
        }
        .await;
        drop(spent_rx);
        // A failed read drops the writer (AbortOnDrop) with what it had not yet written.
        read?;
        // The writer ends cleanly only once the reader has closed the channel, so a clean result
        // holds every change read.
        let written = (&mut writer.0).await?;
        let WrittenChanges {
            mut builder,
            counts,
            mut files,
            mut open,
            mut buffered,
            seq,
        } = written?;
        if !builder.is_empty() {
            job.write_buffered(&attempt, seq, &mut open, &mut builder, &mut buffered)
                .await?;
        }
        if let Some(f) = open.take() {
            files.push(job.close_file(f).await?);
        }
        let record = CaptureRecord {
            format_version: job.plan.format_version,
            snapshot_id: job.plan.snapshot_id.clone(),
            attempt,
            end: capture.end_position(),
            files,
            counts,
            shards_read: capture.shards_read().to_vec(),
            committed_at: rfc3339(SystemTime::now()),
        };
        job.snapshot.create_capture_record(&record).await?;
        Ok(record)
    }

    /// The writing side of [`run`](Self::run): takes the reader's batches until it is done.
    async fn write_changes(
        &self,
        attempt: &str,
        mut batches: tokio::sync::mpsc::Receiver<Vec<Change>>,
        spent: tokio::sync::mpsc::UnboundedSender<Vec<Change>>,
    ) -> Result<WrittenChanges, BackupError> {
        let mut out = WrittenChanges {
            builder: ChangeBatchBuilder::new(&self.plan.source.table.primary_key),
            counts: ChangeCounts::default(),
            files: Vec::new(),
            open: None,
            buffered: KeyRange::default(),
            seq: 0,
        };
        while let Some(batch) = batches.recv().await {
            self.take_batch(attempt, &batch, &mut out).await?;
            // Once reading has ended nobody takes spent batches: they are simply dropped.
            let _ = spent.send(batch);
        }
        Ok(out)
    }

    /// Buffers one response's changes, writing them out once enough are buffered. Every change
    /// of a batch goes to the same file: files roll between batches.
    async fn take_batch(
        &self,
        attempt: &str,
        batch: &[Change],
        out: &mut WrittenChanges,
    ) -> Result<(), BackupError> {
        let mut range: Option<(&[PkColumn], &[PkColumn])> = None;
        let mut cells = 0u64;
        for change in batch {
            out.counts.add(change);
            out.builder.push(change)?;
            let key = change.primary_key.as_slice();
            cells += change.cells.len() as u64;
            range = Some(match range {
                None => (key, key),
                Some((lo, hi)) => (
                    if cmp_pk_columns(key, lo).is_lt() {
                        key
                    } else {
                        lo
                    },
                    if cmp_pk_columns(key, hi).is_gt() {
                        key
                    } else {
                        hi
                    },
                ),
            });
        }
        if let Some((lo, hi)) = range {
            out.buffered.widen(lo, hi, cells);
        }
        self.progress
            .changes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if out.builder.buffered_bytes() >= self.batch_bytes {
            let f = self
                .write_buffered(
                    attempt,
                    out.seq,
                    &mut out.open,
                    &mut out.builder,
                    &mut out.buffered,
                )
                .await?;
            if f.writer.estimated_bytes() >= self.parquet.target_file_bytes {
                if let Some(f) = out.open.take() {
                    out.files.push(self.close_file(f).await?);
                }
                out.seq += 1;
            }
        }
        Ok(())
    }

    /// Writes the changes buffered in `builder` to the open file, opening file `seq` with them
    /// if none is open; their key range joins the file's.
    async fn write_buffered<'f>(
        &self,
        attempt: &str,
        seq: u32,
        open: &'f mut Option<OpenChangeFile>,
        builder: &mut ChangeBatchBuilder,
        buffered: &mut KeyRange,
    ) -> Result<&'f mut OpenChangeFile, BackupError> {
        let bytes = builder.buffered_bytes();
        let rb = builder.finish()?;
        let f = match open {
            Some(f) => f,
            None => open.insert(self.open_file(attempt, seq, &rb)?),
        };
        f.writer.write_sized(&rb, bytes).await?;
        f.keys.join(std::mem::take(buffered));
        Ok(f)
    }

    fn open_file(
        &self,
        attempt: &str,
        seq: u32,
        first: &arrow_array::RecordBatch,
    ) -> Result<OpenChangeFile, BackupError> {
        let rel = change_file_path(attempt, seq);
        let (store, object) = self.snapshot.object(&rel);
        let writer = ParquetFileWriter::create(
            store,
            object,
            rel,
            first.schema(),
            self.parquet.properties_for(first)?,
        )?
        .with_row_group_bytes(self.row_group_bytes);
        Ok(OpenChangeFile {
            writer,
            keys: KeyRange::default(),
        })
    }

    async fn close_file(&self, f: OpenChangeFile) -> Result<FileEntry, BackupError> {
        crate::sink::finish_file(
            f.writer,
            &self.progress,
            0,
            Default::default(),
            f.keys.cells,
            (f.keys.min, f.keys.max),
        )
        .await
    }
}

impl KeyRange {
    /// Widens the range to a batch's smallest and largest keys. Per batch, not per change:
    /// changes written in key order made every one of them a new largest key, and a copy.
    fn widen(&mut self, lo: &[PkColumn], hi: &[PkColumn], cells: u64) {
        self.cells += cells;
        if self
            .min
            .as_deref()
            .is_none_or(|m| cmp_pk_columns(lo, m).is_lt())
        {
            self.min = Some(lo.to_vec());
        }
        if self
            .max
            .as_deref()
            .is_none_or(|m| cmp_pk_columns(hi, m).is_gt())
        {
            self.max = Some(hi.to_vec());
        }
    }

    /// Widens the range to cover `other` too.
    fn join(&mut self, other: KeyRange) {
        if let (Some(lo), Some(hi)) = (&other.min, &other.max) {
            self.widen(lo, hi, other.cells);
        } else {
            self.cells += other.cells;
        }
    }
}
