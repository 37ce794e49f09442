//! Readers and writers: snapshot files become rows, rows become BatchWriteRow requests.
//!
//! Reader tasks (`file_concurrency` at once) open each file as its [`FilePin`] says, turn record
//! batches (sized in bytes, see [`crate::config::MemoryBudget`]) into rows, apply the row options
//! and cut batches of at most 200 rows / 4 MB; a row one write cannot carry becomes a job of its
//! own, written as a first PutRow (or UpdateRow) and UpdateRows ([`crate::split`]). Every job's
//! bytes are claimed from the write budget before it is queued and returned when it is done.
//! Writer tasks (`concurrency`) send them under the adaptive rate, count what happened to every
//! row and record rows that failed for good, whole, in the dead-letter file. A file is done when
//! reading it ended and every job of it was acknowledged; it is then entered in the checkpoint,
//! durably, after the dead letters it caused. [`replay`] feeds a dead-letter file's rows to the
//! same writers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{FutureExt, TryStreamExt};
use ots_manifest::{FileEntry, Snapshot};
use ots_schema::{RowReader, SnapshotSchema};
use ots_wire::client::BatchWriteOutcome;
use ots_wire::plainbuffer::encode_put_row;
use ots_wire::types::Row;
use ots_wire::{Idempotency, OtsClient, PreparedBatchWrite, pb, prepare_batch_writes};
use parquet::encryption::decrypt::FileDecryptionProperties;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::config::{AutoIncrementMode, RestoreConfig, WriteMode};
use crate::dead_letter::{DeadLetter, DeadLetterReader, WriteKind};
use crate::error::RestoreError;
use crate::integrity::FilePins;
use crate::journal::Checkpoint;
use crate::rate::AdaptiveRate;
use crate::reader::{FilePin, open_file_within};
use crate::split::{ROW_OVERHEAD, RowPart, SplitError, needs_split, needs_split_counts, split_row};
use crate::transform::{RowTransform, encode_put_direct};
use crate::{MAX_BATCH_BYTES, MAX_BATCH_ROWS, RestoreProgress};

/// Most rows per record batch decoded from a file (fewer when rows are large: the batch is
/// sized to the reader's share of the memory budget).
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

/// Memory counted in bytes: a semaphore of KiB permits. A claim larger than the whole pool
/// takes the whole pool (it then proceeds alone), so nothing waits forever.
#[derive(Clone, Debug)]
pub(crate) struct BytePool {
    sem: Arc<Semaphore>,
    kib: u32,
}

impl BytePool {
    pub fn new(bytes: usize) -> Self {
        let kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX).max(1);
        BytePool {
            sem: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Waits until `bytes` are free and holds them until the permit is dropped.
    pub async fn claim(&self, bytes: u64) -> Result<OwnedSemaphorePermit, RestoreError> {
        self.sem
            .clone()
            .acquire_many_owned(self.kib_of(bytes))
            .await
            .map_err(|_| RestoreError::WritersStopped)
    }

    /// [`claim`](Self::claim) if `bytes` are free now.
    pub fn try_claim(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.kib_of(bytes))
            .ok()
    }

    /// The pool's size in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * 1024
    }

    fn kib_of(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.kib)
    }
}

/// The row a batch entry encodes (`encode_put_row`'s PlainBuffer of a PutRow or an UpdateRow of
/// puts), for its dead letter: the encoding is lossless, so this is the row the reader decoded.
fn decoded_row(encoded: &[u8], table: &str) -> Result<Row, RestoreError> {
    match ots_wire::plainbuffer::decode_single_row(encoded) {
        Ok(Some(row)) => Ok(row.to_row()),
        Ok(None) => Err(RestoreError::DecodePage {
            table: table.to_string(),
            source: ots_wire::plainbuffer::DecodeError::Truncated {
                offset: 0,
                what: "an encoded row",
                needed: 1,
                remaining: 0,
            },
        }),
        Err(source) => Err(RestoreError::DecodePage {
            table: table.to_string(),
            source,
        }),
    }
}

/// What one writer job writes.
enum Work {
    /// Rows that each fit in one write, as one BatchWriteRow request made by the reader
    /// ([`Batcher`]; encoded and hashed there too when several were hashed together). The
    /// decoded rows are dropped by the reader that made them (cheaper for the allocator than
    /// freeing them on a writer's thread); a row that fails for good is decoded again from its
    /// PlainBuffer for its dead letter ([`decoded_row`]).
    Batch(PreparedBatchWrite),
    /// One row that needs several writes ([`crate::split`]), sent one after the other.
    Split { row: Row, parts: Vec<RowPart> },
}

struct WriteJob {
    file: usize,
    kind: WriteKind,
    work: Work,
    /// The bytes this job holds, returned to the write pool when the job is done.
    _memory: OwnedSemaphorePermit,
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

/// The writer tasks and what they share.
struct Writers {
    table: Arc<str>,
    tasks: JoinSet<Result<(), RestoreError>>,
    tx: mpsc::Sender<WriteJob>,
    done_rx: mpsc::UnboundedReceiver<usize>,
    states: Arc<FileStates>,
    dead: Arc<tokio::sync::Mutex<DeadLetter>>,
    pool: BytePool,
}

impl Writers {
    /// `paths`: the source of each file index, as dead letters name it.
    fn spawn(
        client: &OtsClient,
        cfg: &RestoreConfig,
        progress: &Arc<RestoreProgress>,
        paths: Arc<Vec<String>>,
    ) -> Self {
        let rate = Arc::new(AdaptiveRate::new(cfg.rows_per_sec));
        let (tx, rx) = mpsc::channel::<WriteJob>(cfg.concurrency * 2);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let states = Arc::new(FileStates::default());
        let (done_tx, done_rx) = mpsc::unbounded_channel::<usize>();
        let dead = Arc::new(tokio::sync::Mutex::new(DeadLetter::new(
            cfg.dead_letter.clone(),
            &cfg.table,
        )));
        let mut tasks = JoinSet::new();
        for _ in 0..cfg.concurrency {
            let w = Writer {
                rx: rx.clone(),
                client: client.clone(),
                table: cfg.table.clone(),
                regenerate: cfg.auto_increment == AutoIncrementMode::Regenerate,
                rate: rate.clone(),
                progress: progress.clone(),
                states: states.clone(),
                done_tx: done_tx.clone(),
                dead: dead.clone(),
                paths: paths.clone(),
            };
            tasks.spawn(w.run());
        }
        Writers {
            table: cfg.table.as_str().into(),
            tasks,
            tx,
            done_rx,
            states,
            dead,
            pool: BytePool::new(cfg.memory_budget().write_bytes),
        }
    }

    /// Waits for every writer; a writer's error first.
    async fn join(&mut self) -> Option<RestoreError> {
        let mut writer_error: Option<RestoreError> = None;
        while let Some(r) = self.tasks.join_next().await {
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
        writer_error
    }
}

impl Pipeline<'_> {
    /// Restores every file, entering each in `checkpoint` as it finishes.
    pub async fn run(self, checkpoint: &mut Checkpoint) -> Result<(), RestoreError> {
        let cfg = self.cfg;
        let paths: Arc<Vec<String>> = Arc::new(self.files.iter().map(|f| f.path.clone()).collect());
        let mut w = Writers::spawn(self.client, cfg, &self.progress, paths);
        let kind = WriteKind {
            op: self.transform.operation(),
            mode: cfg.write_mode(),
        };
        let budget = cfg.memory_budget();
        let per_reader = budget.per_reader(cfg.file_concurrency);
        let read_pool = BytePool::new(budget.read_bytes);

        let mut readers = JoinSet::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(cfg.file_concurrency));
        for (idx, f) in self.files.iter().cloned().enumerate() {
            let (store, path) = self.snapshot.object(&f.path);
            let r = Reader {
                decryption: self.snapshot.decryption(),
                pin: self.pins.pin(&path),
                path,
                file: f,
                store,
                schema: self.schema.clone(),
                transform: self.transform.clone(),
                per_reader,
                read_pool: read_pool.clone(),
                batcher: Batcher::new(
                    idx,
                    kind,
                    cfg.auto_increment == AutoIncrementMode::Regenerate,
                    &w,
                    self.progress.clone(),
                ),
            };
            let sem = sem.clone();
            readers.spawn(async move {
                let _permit = sem.acquire_owned().await;
                r.run().await
            });
        }
        // The writers stop once every reader has dropped its sender.
        let (closed_tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut w.tx, closed_tx));

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
                            self.mark_done(idx, checkpoint, &w.dead).await?;
                        }
                        Some(Ok(Ok(None))) | None => {}
                        Some(Ok(Err(e))) => {
                            first_error.get_or_insert(e);
                            readers.abort_all();
                            w.tasks.abort_all();
                        }
                        Some(Err(e)) if !e.is_cancelled() => {
                            first_error.get_or_insert(RestoreError::Task(e));
                        }
                        Some(Err(_)) => {}
                    }
                }
                d = w.done_rx.recv(), if done_open => {
                    match d {
                        Some(idx) => self.mark_done(idx, checkpoint, &w.dead).await?,
                        None => done_open = false,
                    }
                }
            }
        }
        // A writer's error is the cause; a reader's "writers stopped" is only its consequence.
        let writer_error = w.join().await;
        // Whatever happened, the dead letters written so far are kept.
        let synced = w.dead.lock().await.sync();
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

/// Batches a reader encodes and hashes together: as many as the MD5 lanes (`ots_wire`'s
/// `md5_lanes`) take at once.
const HASHED_TOGETHER: usize = 8;
/// A reader holds batches claiming at most this share of the write pool: batches of large rows
/// (a few MB each) go out one by one, as they did before lanes, rather than keep the pool full.
const HELD_SHARE_OF_POOL: u64 = 32;

/// Cuts the rows of one source into writer jobs: batches of at most 200 rows / 4 MB, and rows
/// one write cannot carry as split jobs of their own. Each job's bytes are claimed from the
/// write pool before it is queued.
///
/// Batches are held back until [`HASHED_TOGETHER`] are cut (or they claim a
/// [`HELD_SHARE_OF_POOL`]th of the write pool), then encoded as requests and hashed together
/// ([`prepare_batch_writes`]: MD5 in SIMD lanes), and queued. A batch is held only
/// with its bytes claimed, and never while waiting for bytes: when the pool has none free, the
/// batches held are queued first, so the writers can free some.
struct Batcher {
    idx: usize,
    kind: WriteKind,
    regenerate: bool,
    table: Arc<str>,
    /// Batches cut, their bytes claimed, not yet queued, and the bytes they claimed.
    held: Vec<(Vec<Bytes>, OwnedSemaphorePermit)>,
    held_bytes: u64,
    /// The encoded rows of the batch being cut, one after another in one buffer (an allocation
    /// per batch, not per row: the allocator was a tenth of a restore's CPU), and where each ends.
    arena: Vec<u8>,
    ends: Vec<usize>,
    bytes: usize,
    tx: mpsc::Sender<WriteJob>,
    states: Arc<FileStates>,
    dead: Arc<tokio::sync::Mutex<DeadLetter>>,
    pool: BytePool,
    progress: Arc<RestoreProgress>,
}

impl Batcher {
    fn new(
        idx: usize,
        kind: WriteKind,
        regenerate: bool,
        w: &Writers,
        progress: Arc<RestoreProgress>,
    ) -> Self {
        Batcher {
            idx,
            kind,
            regenerate,
            table: w.table.clone(),
            held: Vec::with_capacity(HASHED_TOGETHER),
            held_bytes: 0,
            arena: Vec::new(),
            ends: Vec::new(),
            bytes: 0,
            tx: w.tx.clone(),
            states: w.states.clone(),
            dead: w.dead.clone(),
            pool: w.pool.clone(),
            progress,
        }
    }

    /// The buffer to append one more row's encoding to (see [`push_appended`](Self::push_appended)):
    /// the batch is sent first if it has as many rows as one request may carry.
    async fn arena_for_a_row(&mut self) -> Result<&mut Vec<u8>, RestoreError> {
        if self.ends.len() >= MAX_BATCH_ROWS {
            self.flush().await?;
        }
        Ok(&mut self.arena)
    }

    /// Takes the row that one write carries, encoded into the arena from `start` on. When it
    /// does not fit the batch's bytes, the rows before it are sent and it starts the next batch.
    async fn push_appended(&mut self, start: usize) -> Result<(), RestoreError> {
        let len = self.arena.len() - start;
        if !self.ends.is_empty() && self.bytes + len + ROW_OVERHEAD > MAX_BATCH_BYTES {
            let row = self.arena.split_off(start);
            self.flush().await?;
            self.arena.extend_from_slice(&row);
        }
        self.bytes += len + ROW_OVERHEAD;
        self.ends.push(self.arena.len());
        Ok(())
    }

    /// Adds a row that one write carries, already encoded.
    async fn push_encoded(&mut self, encoded: &[u8]) -> Result<(), RestoreError> {
        let arena = self.arena_for_a_row().await?;
        let start = arena.len();
        arena.extend_from_slice(encoded);
        self.push_appended(start).await
    }

    /// Adds a row to write; `source` names where it came from in a dead letter.
    async fn push(&mut self, row: Row, source: &str) -> Result<(), RestoreError> {
        // A PutRow and an UpdateRow putting every version are the same bytes.
        let encoded = encode_put_row(&row);
        if !needs_split(&row, encoded.len()) {
            return self.push_encoded(&encoded).await;
        }
        drop(encoded);
        if self.regenerate {
            return self
                .dead_letter(
                    &row,
                    "OTSClientRowTooLarge",
                    &format!(
                        "the row ({} cells) needs more than one write, and with --auto-increment \
                         regenerate the later writes cannot name the key the service assigns to \
                         the first; restore it with --auto-increment keep",
                        row.cells.len()
                    ),
                    source,
                )
                .await;
        }
        match split_row(&row, self.kind.op) {
            Ok(parts) => {
                let bytes: u64 = parts
                    .iter()
                    .map(|p| 2 * p.encoded.len() as u64 + ROW_OVERHEAD as u64)
                    .sum();
                self.send(Work::Split { row, parts }, bytes).await
            }
            Err(e) => {
                let code = match e {
                    SplitError::CellTooLarge { .. } => "OTSClientCellTooLarge",
                };
                self.dead_letter(&row, code, &e.to_string(), source).await
            }
        }
    }

    async fn dead_letter(
        &mut self,
        row: &Row,
        code: &str,
        message: &str,
        source: &str,
    ) -> Result<(), RestoreError> {
        self.progress.rows_failed.fetch_add(1, Ordering::Relaxed);
        self.dead
            .lock()
            .await
            .record(row, self.kind, code, message, source)
    }

    /// Cuts the batch being filled, if any: held, or queued with the batches held once there
    /// are [`HASHED_TOGETHER`].
    async fn flush(&mut self) -> Result<(), RestoreError> {
        if self.ends.is_empty() {
            return Ok(());
        }
        // The next batch is likely as large as this one.
        let next = Vec::with_capacity(self.arena.len());
        let arena = Bytes::from(std::mem::replace(&mut self.arena, next));
        let mut start = 0;
        let rows: Vec<Bytes> = self
            .ends
            .drain(..)
            .map(|end| {
                let row = arena.slice(start..end);
                start = end;
                row
            })
            .collect();
        // The encoded rows and, about as large, the request body made of them.
        let bytes = 2 * self.bytes as u64;
        self.bytes = 0;
        let memory = match self.pool.try_claim(bytes) {
            Some(memory) => memory,
            None => {
                self.send_held().await?;
                self.pool.claim(bytes).await?
            }
        };
        self.held.push((rows, memory));
        self.held_bytes += bytes;
        if self.held.len() >= HASHED_TOGETHER
            || self.held_bytes >= self.pool.bytes() / HELD_SHARE_OF_POOL
        {
            self.send_held().await?;
        }
        Ok(())
    }

    /// Queues every batch cut: the one being filled and those held.
    async fn finish(&mut self) -> Result<(), RestoreError> {
        self.flush().await?;
        self.send_held().await
    }

    /// Encodes the batches held as requests, hashes them together and queues them.
    async fn send_held(&mut self) -> Result<(), RestoreError> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.held_bytes = 0;
        let existence = condition(self.kind.mode);
        let (requests, memory): (Vec<_>, Vec<_>) = self
            .held
            .drain(..)
            .map(|(rows, memory)| {
                let request = pb::BatchWriteRowRequest {
                    tables: vec![pb::TableInBatchWriteRowRequest {
                        table_name: self.table.to_string(),
                        rows: rows
                            .into_iter()
                            .map(|encoded| row_request(self.kind.op, encoded, existence))
                            .collect(),
                    }],
                    ..Default::default()
                };
                (request, memory)
            })
            .unzip();
        for (prepared, memory) in prepare_batch_writes(requests).into_iter().zip(memory) {
            self.queue(Work::Batch(prepared), memory).await?;
        }
        Ok(())
    }

    /// Queues a job of its own (a split row) after every batch cut before it.
    async fn send(&mut self, work: Work, bytes: u64) -> Result<(), RestoreError> {
        self.finish().await?;
        let memory = self.pool.claim(bytes).await?;
        self.queue(work, memory).await
    }

    async fn queue(
        &mut self,
        work: Work,
        memory: OwnedSemaphorePermit,
    ) -> Result<(), RestoreError> {
        self.states.sent(self.idx)?;
        self.tx
            .send(WriteJob {
                file: self.idx,
                kind: self.kind,
                work,
                _memory: memory,
            })
            .await
            .map_err(|_| RestoreError::WritersStopped)
    }
}

/// Reads one file into batches of rows for the writers.
struct Reader {
    file: FileEntry,
    decryption: Option<Arc<FileDecryptionProperties>>,
    path: object_store::path::Path,
    pin: FilePin,
    store: Arc<dyn object_store::ObjectStore>,
    schema: Arc<SnapshotSchema>,
    transform: Arc<RowTransform>,
    /// This reader's share of the read budget (bytes).
    per_reader: usize,
    /// Row groups fetched and batches decoded by every reader, counted in bytes.
    read_pool: BytePool,
    batcher: Batcher,
}

impl Reader {
    /// Returns the file's index when it is already finished (every batch acknowledged).
    async fn run(mut self) -> Result<Option<usize>, RestoreError> {
        let name = self.file.path.clone();
        let name = name.as_str();
        let source = open_file_within(
            self.store.clone(),
            self.path.clone(),
            name,
            self.file.bytes,
            &self.file.sha256,
            &self.pin,
            self.per_reader as u64,
        )
        .await?
        .with_decryption(self.decryption.clone());
        // Half of the share for one decoded batch, the rest for the row group as fetched.
        let (mut stream, plan) = source
            .batches_within(self.per_reader / 2, READ_BATCH_ROWS)
            .await
            .map_err(|e| RestoreError::parquet(name, e))?;
        let _reading = self.read_pool.claim(plan.bytes).await?;
        let progress = self.batcher.progress.clone();
        let direct = self.transform.is_identity();
        loop {
            // Batches held for hashing are queued before this reader waits on a read, so that
            // the writers do not wait on its read for work it already cut.
            let next = match stream.try_next().now_or_never() {
                Some(ready) => ready,
                None => {
                    self.batcher.send_held().await?;
                    stream.try_next().await
                }
            };
            let Some(rb) = next.map_err(|e| RestoreError::parquet(name, e))? else {
                break;
            };
            let rows = RowReader::new(&self.schema, &rb).map_err(|source| RestoreError::Rows {
                path: name.to_string(),
                source,
            })?;
            let rows_error = |source| RestoreError::Rows {
                path: name.to_string(),
                source,
            };
            // Scratch for one row's borrowed cells, reused for every row of the batch.
            let mut cells = Vec::new();
            for i in 0..rows.len() {
                progress.rows_read.fetch_add(1, Ordering::Relaxed);
                if direct {
                    // Rows that go out as read are encoded straight from the record batch into
                    // the write batch.
                    let arena = self.batcher.arena_for_a_row().await?;
                    let start = arena.len();
                    match encode_put_direct(&rows, i, &mut cells, arena).map_err(rows_error)? {
                        None => {
                            progress.rows_filtered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Some(n) if !needs_split_counts(n, arena.len() - start) => {
                            self.batcher.push_appended(start).await?;
                            continue;
                        }
                        // Too large for one write: split from the owned row below.
                        Some(_) => arena.truncate(start),
                    }
                }
                let row = rows.row(i).map_err(rows_error)?;
                let Some(row) = self.transform.apply(row) else {
                    progress.rows_filtered.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                self.batcher.push(row, name).await?;
            }
        }
        self.batcher.finish().await?;
        // Reading is over: the file is done once its sent batches are acknowledged.
        let idx = self.batcher.idx;
        Ok(self.batcher.states.read_all(idx)?.then_some(idx))
    }
}

fn condition(mode: WriteMode) -> pb::RowExistenceExpectation {
    match mode {
        WriteMode::Overwrite => pb::RowExistenceExpectation::Ignore,
        WriteMode::OnlyIfAbsent => pb::RowExistenceExpectation::ExpectNotExist,
    }
}

fn row_request(
    op: pb::OperationType,
    encoded: Bytes,
    existence: pb::RowExistenceExpectation,
) -> pb::RowInBatchWriteRowRequest {
    pb::RowInBatchWriteRowRequest {
        r#type: op as i32,
        row_change: encoded,
        condition: pb::Condition {
            row_existence: existence as i32,
            column_condition: None,
        },
        return_content: None,
    }
}

fn error_of(r: Option<&pb::RowInBatchWriteRowResponse>) -> (String, String) {
    match r.and_then(|r| r.error.as_ref()) {
        Some(e) => (e.code.clone(), e.message.clone().unwrap_or_default()),
        None if r.is_none() => (
            "OTSClientNoResult".into(),
            "the response holds no result for this row".into(),
        ),
        None => (String::new(), String::new()),
    }
}

/// Sends jobs with BatchWriteRow and accounts for every row.
struct Writer {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<WriteJob>>>,
    client: OtsClient,
    table: String,
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
        loop {
            let job = { self.rx.lock().await.recv().await };
            let Some(job) = job else {
                return Ok(());
            };
            // The job's bytes stay claimed (`_memory`) until it is done.
            let WriteJob {
                file,
                kind,
                work,
                _memory,
            } = job;
            let path = self.paths.get(file).map_or("", String::as_str);
            match work {
                Work::Batch(prepared) => self.write_batch(prepared, kind, path).await?,
                Work::Split { row, parts } => self.write_split(&row, &parts, kind, path).await?,
            }
            if self.states.acked(file)? {
                let _ = self.done_tx.send(file);
            }
        }
    }

    /// Puts with explicit timestamps are idempotent; regenerated keys are not.
    fn idempotency(&self) -> Idempotency {
        if self.regenerate {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        }
    }

    /// One BatchWriteRow (with its row retries) under the rate; the results in request order.
    async fn send(
        &self,
        rows: Vec<pb::RowInBatchWriteRowRequest>,
    ) -> Result<Vec<pb::RowInBatchWriteRowResponse>, RestoreError> {
        self.rate.acquire(rows.len() as f64).await;
        let req = pb::BatchWriteRowRequest {
            tables: vec![pb::TableInBatchWriteRowRequest {
                table_name: self.table.clone(),
                rows,
            }],
            ..Default::default()
        };
        let write = self
            .client
            .batch_write_row_retrying(&req, self.idempotency());
        let outcome = self.with_throttling(write, |o| o).await?;
        Ok(outcome.rows.into_iter().next().unwrap_or_default())
    }

    /// Runs one BatchWriteRow with its row retries (`write`); throttling seen meanwhile slows the
    /// rate, and the outcome's row re-sends are counted.
    async fn with_throttling<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, ots_wire::OtsError>>,
        outcome_of: impl Fn(&T) -> &BatchWriteOutcome,
    ) -> Result<T, RestoreError> {
        let throttled_before = self.client.stats().throttled;
        let written = write.await?;
        if self.client.stats().throttled > throttled_before {
            self.progress
                .throttle_events
                .fetch_add(1, Ordering::Relaxed);
            self.rate.throttled().await;
        }
        self.progress
            .row_retries
            .fetch_add(outcome_of(&written).row_retries, Ordering::Relaxed);
        Ok(written)
    }

    async fn write_batch(
        &self,
        prepared: PreparedBatchWrite,
        kind: WriteKind,
        path: &str,
    ) -> Result<(), RestoreError> {
        let rows_sent: usize = prepared.request().tables.iter().map(|t| t.rows.len()).sum();
        self.rate.acquire(rows_sent as f64).await;
        let write = self
            .client
            .batch_write_prepared_retrying(prepared, self.idempotency());
        let (outcome, request) = self.with_throttling(write, |(o, _)| o).await?;
        // One table per request (the Batcher's).
        let rows = request.tables.first().map_or(&[][..], |t| &t.rows);
        let results = outcome.rows.into_iter().next().unwrap_or_default();
        let mut ok = 0u64;
        for (i, row) in rows.iter().enumerate() {
            let r = results.get(i);
            if r.is_some_and(|r| r.is_ok) {
                ok += 1;
                continue;
            }
            let (code, message) = error_of(r);
            if kind.mode == WriteMode::OnlyIfAbsent && code == "OTSConditionCheckFail" {
                self.progress.rows_present.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.progress.rows_failed.fetch_add(1, Ordering::Relaxed);
            let row = decoded_row(&row.row_change, &self.table)?;
            self.dead
                .lock()
                .await
                .record(&row, kind, &code, &message, path)?;
        }
        self.progress.rows_written.fetch_add(ok, Ordering::Relaxed);
        Ok(())
    }

    /// The parts of one row, in order: the first with the mode's condition, the rest with
    /// IGNORE (they add versions to the row the first part wrote). A part that fails for good
    /// stops the row, which goes to the dead-letter file whole.
    async fn write_split(
        &self,
        row: &Row,
        parts: &[RowPart],
        kind: WriteKind,
        path: &str,
    ) -> Result<(), RestoreError> {
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let existence = if i == 0 {
                condition(kind.mode)
            } else {
                pb::RowExistenceExpectation::Ignore
            };
            let results = self
                .send(vec![row_request(part.op, part.encoded.clone(), existence)])
                .await?;
            let r = results.first();
            if r.is_some_and(|r| r.is_ok) {
                continue;
            }
            let (code, message) = error_of(r);
            if i == 0 && kind.mode == WriteMode::OnlyIfAbsent && code == "OTSConditionCheckFail" {
                self.progress.rows_present.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            self.progress.rows_failed.fetch_add(1, Ordering::Relaxed);
            // After the first part the row is the restore's own: a replay overwrites it.
            let replay = if i == 0 {
                kind
            } else {
                WriteKind {
                    op: kind.op,
                    mode: WriteMode::Overwrite,
                }
            };
            let op = if part.op == pb::OperationType::Put {
                "PutRow"
            } else {
                "UpdateRow"
            };
            let message = format!(
                "write {} of {n} ({op} of cells {}..{} of {}): {message}",
                i + 1,
                part.cells.start,
                part.cells.end,
                row.cells.len()
            );
            self.dead
                .lock()
                .await
                .record(row, replay, &code, &message, path)?;
            return Ok(());
        }
        self.progress.rows_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Sends the rows of dead-letter file `input` again, through the same batching, splitting, rate
/// and retries as a restore; rows that fail again go to `cfg.dead_letter`. `sources` lists the
/// `file` values of the lines (checked by a first pass); `mode` overrides each line's mode.
pub(crate) async fn replay(
    client: &OtsClient,
    cfg: &RestoreConfig,
    input: &std::path::Path,
    sources: Vec<String>,
    mode: Option<WriteMode>,
    progress: Arc<RestoreProgress>,
) -> Result<(), RestoreError> {
    let index: HashMap<String, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    let mut w = Writers::spawn(client, cfg, &progress, Arc::new(sources));
    let regenerate = cfg.auto_increment == AutoIncrementMode::Regenerate;
    let fed: Result<(), RestoreError> = async {
        let mut reader = DeadLetterReader::open(input)?;
        let mut batcher: Option<Batcher> = None;
        while let Some(d) = reader.next_row()? {
            progress.rows_read.fetch_add(1, Ordering::Relaxed);
            let kind = WriteKind {
                op: d.kind.op,
                mode: mode.unwrap_or(d.kind.mode),
            };
            let idx = index.get(&d.file).copied().unwrap_or(0);
            let b = match &mut batcher {
                Some(b) if b.idx == idx && b.kind == kind => b,
                _ => {
                    if let Some(mut old) = batcher.take() {
                        old.finish().await?;
                    }
                    batcher.insert(Batcher::new(idx, kind, regenerate, &w, progress.clone()))
                }
            };
            b.push(d.row, &d.file).await?;
        }
        if let Some(mut b) = batcher.take() {
            b.finish().await?;
        }
        Ok(())
    }
    .await;
    let (closed_tx, _) = mpsc::channel(1);
    drop(std::mem::replace(&mut w.tx, closed_tx));
    if fed.is_err() {
        w.tasks.abort_all();
    }
    let writer_error = w.join().await;
    let synced = w.dead.lock().await.sync();
    match writer_error.map_or(fed, Err) {
        Err(e) => Err(e),
        Ok(()) => synced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A dead letter holds exactly the row that failed, decoded again from its encoding: every
    /// type, many versions, an auto-increment placeholder key (the same bytes serve a PutRow and
    /// an UpdateRow).
    #[test]
    fn a_batch_row_decodes_back_to_the_row_that_was_encoded() {
        use ots_wire::types::{PkColumn, PkValue};
        let spec = ots_datagen::DatasetSpec::new(300, 5);
        let mut rows: Vec<Row> = (0..300).map(|i| ots_datagen::row(&spec, i)).collect();
        let mut placeholder = rows[7].clone();
        placeholder.primary_key[1] = PkColumn::new(
            placeholder.primary_key[1].name.clone(),
            PkValue::AutoIncrement,
        );
        rows.push(placeholder);
        for row in &rows {
            let encoded = encode_put_row(row);
            assert_eq!(&decoded_row(&encoded, "t").unwrap(), row);
        }
        assert!(decoded_row(b"not plainbuffer", "t").is_err());
    }

    /// Readers hold batches to hash them together, but never while they wait for memory. Here 48
    /// readers share a pool of 48 batches and each may hold 2 (a 32nd of the pool is 1.5 batches):
    /// were they to wait for memory with batches in hand, they would hold the whole pool and the
    /// writer, which frees a batch only once it takes it, would get nothing (the test times out).
    /// Every row arrives, each reader's in order.
    #[tokio::test]
    async fn held_batches_are_queued_before_waiting_for_memory() {
        const READERS: usize = 48;
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel::<WriteJob>(1);
        let (_done_tx, done_rx) = mpsc::unbounded_channel();
        let spec = ots_datagen::DatasetSpec::new(1, 5);
        let encoded: Vec<Vec<u8>> = (0..3 * MAX_BATCH_ROWS)
            .map(|i| encode_put_row(&ots_datagen::row(&spec, i as u64)))
            .collect();
        let batch_bytes: usize = encoded[..MAX_BATCH_ROWS]
            .iter()
            .map(|e| 2 * (e.len() + ROW_OVERHEAD))
            .sum();
        let w = Writers {
            table: "t".into(),
            tasks: JoinSet::new(),
            tx,
            done_rx,
            states: Arc::default(),
            dead: Arc::new(tokio::sync::Mutex::new(DeadLetter::new(
                dir.path().join("dead.jsonl"),
                "t",
            ))),
            pool: BytePool::new(READERS * batch_bytes),
        };
        let kind = WriteKind {
            op: pb::OperationType::Put,
            mode: WriteMode::Overwrite,
        };
        let writer = tokio::spawn(async move {
            let mut rows = vec![Vec::new(); READERS];
            while let Some(job) = rx.recv().await {
                let Work::Batch(prepared) = &job.work else {
                    panic!("a split job");
                };
                let request = prepared.request();
                assert_eq!(request.tables[0].table_name, "t");
                let got = request.tables[0].rows.iter().map(|r| r.row_change.to_vec());
                rows[job.file].extend(got);
                tokio::task::yield_now().await;
            }
            rows
        });
        let feeders = (0..READERS).map(|idx| {
            let mut batcher = Batcher::new(idx, kind, false, &w, Arc::default());
            let encoded = &encoded;
            async move {
                for (i, e) in encoded.iter().enumerate() {
                    batcher.push_encoded(e).await.unwrap();
                    // Row 200 cut the first batch: let every reader cut its own before any goes on.
                    if i % MAX_BATCH_ROWS == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                batcher.finish().await.unwrap();
            }
        });
        tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(feeders))
            .await
            .expect("readers waited for memory with batches in hand");
        drop(w);
        let rows = writer.await.unwrap();
        for (idx, got) in rows.iter().enumerate() {
            assert!(*got == encoded, "reader {idx}: {} rows", got.len());
        }
    }

    #[tokio::test]
    async fn the_byte_pool_bounds_claims_and_never_blocks_a_claim_larger_than_itself() {
        let pool = BytePool::new(1 << 20);
        let a = pool.claim(600 * 1024).await.unwrap();
        // 600 KiB + 600 KiB > 1 MiB: the second waits until the first is returned.
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.claim(600 * 1024)).await;
        assert!(waiting.is_err(), "a claim over the budget went through");
        drop(a);
        let b = tokio::time::timeout(Duration::from_millis(500), pool.claim(600 * 1024))
            .await
            .expect("returned bytes are claimable again")
            .unwrap();
        drop(b);
        // Larger than the whole pool (a 5 MB row at the smallest budget): takes the pool, alone.
        let huge = tokio::time::timeout(Duration::from_millis(500), pool.claim(u64::MAX))
            .await
            .expect("never waits forever")
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), pool.claim(1))
                .await
                .is_err()
        );
        drop(huge);
        // A zero-byte claim still counts one unit, never zero permits.
        let _z = pool.claim(0).await.unwrap();
    }
}
