//! Readers and writers: snapshot files become rows, rows become BatchWriteRow requests.
//!
//! Reader tasks (`file_concurrency` at once) open each file as its [`FilePin`] says, turn record
//! batches into rows, apply the row options and cut batches of at most 200 rows / 4 MB. Writer
//! tasks (`concurrency`) send them under the adaptive rate, count what happened to every row and
//! record rows that failed for good in the dead-letter file. A file is done when reading it
//! ended and every batch of it was acknowledged; it is then entered in the checkpoint, durably,
//! after the dead letters it caused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::TryStreamExt;
use ots_manifest::{FileEntry, Snapshot};
use ots_schema::{RowReader, SnapshotSchema};
use ots_wire::types::Row;
use ots_wire::{Idempotency, OtsClient, pb};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{AutoIncrementMode, RestoreConfig, WriteMode};
use crate::error::RestoreError;
use crate::integrity::FilePins;
use crate::journal::{Checkpoint, DeadLetter};
use crate::rate::AdaptiveRate;
use crate::reader::{FilePin, open_file};
use crate::transform::RowTransform;
use crate::{MAX_BATCH_BYTES, MAX_BATCH_ROWS, RestoreProgress};

/// Allowance per row for the request's framing around the encoded row.
const ROW_OVERHEAD: usize = 64;
/// Rows per record batch decoded from a file.
const READ_BATCH_ROWS: usize = 1024;

/// Where one file being restored stands.
#[derive(Debug, Default, Clone, Copy)]
struct FileProgress {
    batches_sent: u64,
    batches_acked: u64,
    reading_done: bool,
}

impl FileProgress {
    fn finished(&self) -> bool {
        self.reading_done && self.batches_sent == self.batches_acked
    }
}

/// The progress of every file of the run, by index into the run's file list.
#[derive(Debug, Default)]
struct FileStates(std::sync::Mutex<HashMap<usize, FileProgress>>);

impl FileStates {
    fn update(
        &self,
        idx: usize,
        f: impl FnOnce(&mut FileProgress),
    ) -> Result<FileProgress, RestoreError> {
        let mut map = self.0.lock().map_err(|_| RestoreError::Poisoned)?;
        let p = map.entry(idx).or_default();
        f(p);
        Ok(*p)
    }

    fn sent(&self, idx: usize) -> Result<(), RestoreError> {
        self.update(idx, |p| p.batches_sent += 1).map(|_| ())
    }

    /// A batch was acknowledged; true when that finished the file.
    fn acked(&self, idx: usize) -> Result<bool, RestoreError> {
        self.update(idx, |p| p.batches_acked += 1)
            .map(|p| p.finished())
    }

    /// Reading ended; true when every batch was already acknowledged.
    fn read_all(&self, idx: usize) -> Result<bool, RestoreError> {
        self.update(idx, |p| p.reading_done = true)
            .map(|p| p.finished())
    }
}

struct WriteJob {
    file: usize,
    rows: Vec<(Row, Bytes)>,
}

/// Everything a run of the pipeline needs.
pub(crate) struct Pipeline<'a> {
    pub client: &'a OtsClient,
    pub snapshot: &'a Snapshot,
    pub cfg: &'a RestoreConfig,
    pub schema: Arc<SnapshotSchema>,
    pub transform: Arc<RowTransform>,
    pub pins: Arc<FilePins>,
    /// The files to restore in this run (those the checkpoint names are already left out).
    pub files: Vec<FileEntry>,
    pub progress: Arc<RestoreProgress>,
}

impl Pipeline<'_> {
    /// Restores every file, entering each in `checkpoint` as it finishes.
    pub async fn run(self, checkpoint: &mut Checkpoint) -> Result<(), RestoreError> {
        let cfg = self.cfg;
        let rate = Arc::new(AdaptiveRate::new(cfg.rows_per_sec));
        let (tx, rx) = mpsc::channel::<WriteJob>(cfg.concurrency * 2);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let states = Arc::new(FileStates::default());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        let dead = Arc::new(tokio::sync::Mutex::new(DeadLetter::new(
            cfg.dead_letter.clone(),
        )));
        let paths: Arc<Vec<String>> = Arc::new(self.files.iter().map(|f| f.path.clone()).collect());

        let mut writers = JoinSet::new();
        for _ in 0..cfg.concurrency {
            let w = Writer {
                rx: rx.clone(),
                client: self.client.clone(),
                table: cfg.table.clone(),
                mode: cfg.write_mode(),
                op: self.transform.operation(),
                regenerate: cfg.auto_increment == AutoIncrementMode::Regenerate,
                rate: rate.clone(),
                progress: self.progress.clone(),
                states: states.clone(),
                done_tx: done_tx.clone(),
                dead: dead.clone(),
                paths: paths.clone(),
            };
            writers.spawn(w.run());
        }
        drop(done_tx);

        let mut readers = JoinSet::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(cfg.file_concurrency));
        for (idx, f) in self.files.iter().cloned().enumerate() {
            let (store, path) = self.snapshot.object(&f.path);
            let r = Reader {
                idx,
                pin: self.pins.pin(&path),
                path,
                file: f,
                store,
                schema: self.schema.clone(),
                transform: self.transform.clone(),
                progress: self.progress.clone(),
                states: states.clone(),
                tx: tx.clone(),
                dead: dead.clone(),
            };
            let sem = sem.clone();
            readers.spawn(async move {
                let _permit = sem.acquire_owned().await;
                r.run().await
            });
        }
        drop(tx);

        // Collect: reader results, finished files (checkpointed as they complete), writer results.
        // Both until the end: the writers close the done channel once the last reader has
        // dropped its sender, which can be seen before that reader's own result, and a reader's
        // error (a file that changed, an unreadable file) must never be lost that way.
        let mut first_error: Option<RestoreError> = None;
        let mut readers_left = self.files.len();
        let mut done_open = true;
        while readers_left > 0 || done_open {
            tokio::select! {
                r = readers.join_next(), if readers_left > 0 => {
                    readers_left -= 1;
                    match r {
                        Some(Ok(Ok(Some(idx)))) => {
                            self.mark_done(idx, checkpoint, &dead).await?;
                        }
                        Some(Ok(Ok(None))) | None => {}
                        Some(Ok(Err(e))) => {
                            first_error.get_or_insert(e);
                            readers.abort_all();
                            writers.abort_all();
                        }
                        Some(Err(e)) if !e.is_cancelled() => {
                            first_error.get_or_insert(RestoreError::Task(e));
                        }
                        Some(Err(_)) => {}
                    }
                }
                d = done_rx.recv(), if done_open => {
                    match d {
                        Some(idx) => self.mark_done(idx, checkpoint, &dead).await?,
                        None => done_open = false,
                    }
                }
            }
        }
        // A writer's error is the cause; a reader's "writers stopped" is only its consequence.
        let mut writer_error: Option<RestoreError> = None;
        while let Some(r) = writers.join_next().await {
            match r {
                Ok(Err(e)) => {
                    writer_error.get_or_insert(e);
                }
                Err(e) if !e.is_cancelled() => {
                    writer_error.get_or_insert(RestoreError::Task(e));
                }
                _ => {}
            }
        }
        // Whatever happened, the dead letters written so far are kept.
        let synced = dead.lock().await.sync();
        match writer_error.or(first_error) {
            Some(e) => Err(e),
            None => synced,
        }
    }

    /// Enters a finished file in the checkpoint: its dead letters are made durable first.
    async fn mark_done(
        &self,
        idx: usize,
        checkpoint: &mut Checkpoint,
        dead: &tokio::sync::Mutex<DeadLetter>,
    ) -> Result<(), RestoreError> {
        let Some(f) = self.files.get(idx) else {
            return Ok(());
        };
        if checkpoint.files_done.contains(&f.path) {
            return Ok(());
        }
        dead.lock().await.sync()?;
        checkpoint.files_done.insert(f.path.clone());
        checkpoint.save(&self.cfg.checkpoint).await?;
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads one file into batches of rows for the writers.
struct Reader {
    idx: usize,
    file: FileEntry,
    path: object_store::path::Path,
    pin: FilePin,
    store: Arc<dyn object_store::ObjectStore>,
    schema: Arc<SnapshotSchema>,
    transform: Arc<RowTransform>,
    progress: Arc<RestoreProgress>,
    states: Arc<FileStates>,
    tx: mpsc::Sender<WriteJob>,
    dead: Arc<tokio::sync::Mutex<DeadLetter>>,
}

impl Reader {
    /// Returns the file's index when it is already finished (every batch acknowledged).
    async fn run(self) -> Result<Option<usize>, RestoreError> {
        let name = self.file.path.as_str();
        let source = open_file(
            self.store.clone(),
            self.path.clone(),
            name,
            self.file.bytes,
            &self.file.sha256,
            &self.pin,
        )
        .await?;
        let mut stream = source
            .batches(READ_BATCH_ROWS)
            .await
            .map_err(|e| RestoreError::parquet(name, e))?;
        let mut batch: Vec<(Row, Bytes)> = Vec::new();
        let mut bytes = 0usize;
        while let Some(rb) = stream
            .try_next()
            .await
            .map_err(|e| RestoreError::parquet(name, e))?
        {
            let rows = RowReader::new(&self.schema, &rb).map_err(|source| RestoreError::Rows {
                path: name.to_string(),
                source,
            })?;
            for row in rows.rows() {
                let row = row.map_err(|source| RestoreError::Rows {
                    path: name.to_string(),
                    source,
                })?;
                self.progress.rows_read.fetch_add(1, Ordering::Relaxed);
                let Some(row) = self.transform.apply(row) else {
                    self.progress.rows_filtered.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let encoded = Bytes::from(self.transform.encode(&row));
                // No request can carry a row this large: it fails for good, visibly.
                if encoded.len() + ROW_OVERHEAD > MAX_BATCH_BYTES {
                    self.progress.rows_failed.fetch_add(1, Ordering::Relaxed);
                    self.dead.lock().await.record(
                        &row,
                        "OTSClientRowTooLarge",
                        &format!(
                            "the row encodes to {} bytes; one write request carries at most {MAX_BATCH_BYTES}",
                            encoded.len()
                        ),
                        name,
                    )?;
                    continue;
                }
                if !batch.is_empty()
                    && (batch.len() >= MAX_BATCH_ROWS
                        || bytes + encoded.len() + ROW_OVERHEAD > MAX_BATCH_BYTES)
                {
                    self.send(std::mem::take(&mut batch)).await?;
                    bytes = 0;
                }
                bytes += encoded.len() + ROW_OVERHEAD;
                batch.push((row, encoded));
            }
        }
        if !batch.is_empty() {
            self.send(batch).await?;
        }
        // Reading is over: the file is done once its sent batches are acknowledged.
        Ok(self.states.read_all(self.idx)?.then_some(self.idx))
    }

    async fn send(&self, rows: Vec<(Row, Bytes)>) -> Result<(), RestoreError> {
        self.states.sent(self.idx)?;
        self.tx
            .send(WriteJob {
                file: self.idx,
                rows,
            })
            .await
            .map_err(|_| RestoreError::WritersStopped)
    }
}

/// Sends batches with BatchWriteRow and accounts for every row.
struct Writer {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<WriteJob>>>,
    client: OtsClient,
    table: String,
    mode: WriteMode,
    op: pb::OperationType,
    regenerate: bool,
    rate: Arc<AdaptiveRate>,
    progress: Arc<RestoreProgress>,
    states: Arc<FileStates>,
    done_tx: mpsc::UnboundedSender<usize>,
    dead: Arc<tokio::sync::Mutex<DeadLetter>>,
    paths: Arc<Vec<String>>,
}

impl Writer {
    async fn run(self) -> Result<(), RestoreError> {
        let condition = match self.mode {
            WriteMode::Overwrite => pb::RowExistenceExpectation::Ignore,
            WriteMode::OnlyIfAbsent => pb::RowExistenceExpectation::ExpectNotExist,
        };
        // Puts with explicit timestamps are idempotent; regenerated keys are not.
        let idem = if self.regenerate {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        loop {
            let job = { self.rx.lock().await.recv().await };
            let Some(job) = job else {
                return Ok(());
            };
            self.rate.acquire(job.rows.len() as f64).await;
            let req = pb::BatchWriteRowRequest {
                tables: vec![pb::TableInBatchWriteRowRequest {
                    table_name: self.table.clone(),
                    rows: job
                        .rows
                        .iter()
                        .map(|(_, encoded)| pb::RowInBatchWriteRowRequest {
                            r#type: self.op as i32,
                            row_change: encoded.clone(),
                            condition: pb::Condition {
                                row_existence: condition as i32,
                                column_condition: None,
                            },
                            return_content: None,
                        })
                        .collect(),
                }],
                ..Default::default()
            };
            let throttled_before = self.client.stats().throttled;
            let outcome = self.client.batch_write_row_retrying(&req, idem).await?;
            if self.client.stats().throttled > throttled_before {
                self.progress
                    .throttle_events
                    .fetch_add(1, Ordering::Relaxed);
                self.rate.throttled().await;
            }
            self.progress
                .row_retries
                .fetch_add(outcome.row_retries, Ordering::Relaxed);
            let results = outcome.rows.first().cloned().unwrap_or_default();
            let mut ok = 0u64;
            for ((row, _), r) in job.rows.iter().zip(&results) {
                if r.is_ok {
                    ok += 1;
                    continue;
                }
                let (code, message) = r
                    .error
                    .as_ref()
                    .map(|e| (e.code.as_str(), e.message.as_deref().unwrap_or("")))
                    .unwrap_or(("", ""));
                if self.mode == WriteMode::OnlyIfAbsent && code == "OTSConditionCheckFail" {
                    self.progress.rows_present.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.progress.rows_failed.fetch_add(1, Ordering::Relaxed);
                let path = self.paths.get(job.file).map_or("", String::as_str);
                self.dead.lock().await.record(row, code, message, path)?;
            }
            self.progress.rows_written.fetch_add(ok, Ordering::Relaxed);
            if self.states.acked(job.file)? {
                let _ = self.done_tx.send(job.file);
            }
        }
    }
}
