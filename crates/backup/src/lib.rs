//! Backup end to end: plan (T, splits, schema) → concurrent split attempts → record batches →
//! partitioned Parquet files → one record per attempt → manifest. Resumable: a re-run with the
//! same snapshot id reads the plan back and redoes only splits without a record.
//!
//! - [`plan`](crate::plan): planning, or reading the plan back on resume;
//! - [`sink`](crate::sink): partition sinks (routing, budgets, rolling and closing files);
//! - [`split_job`](crate::split_job): one split attempt, ending in its record;
//! - [`commit`](crate::commit): choosing one record per split and writing the manifest once.
//!
//! A backup never deletes and never overwrites: every object it writes has a name no other
//! process uses (attempt tokens) or is written create-once (plan, manifest). A lease on the
//! snapshot keeps a second process from working on it by mistake.

mod budget;
mod capture_job;
mod commit;
pub mod partition;
mod plan;
mod sink;
mod split_job;
pub mod workers;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ots_format::layout::{MANIFEST_FILE, PLAN_FILE};
use ots_format::{ErrorKind, Manifest, Partitioning, choose_record};
use ots_manifest::{LEASE_TTL, LeaseError, ManifestError, Snapshots, lease};
use ots_scan::{CaptureOptions, RateLimiter, ScanError, ScanOptions, SplitSize, StreamError};
use ots_schema::{ConvertError, SnapshotSchema};
use ots_wire::{OtsClient, OtsError};
use ots_writer::{Destination, ParquetOptions, WriteError};
use tokio::task::JoinSet;

pub use crate::budget::{DEFAULT_MEMORY_MB, MemoryPlan};
use crate::sink::SinkLimits;
use crate::split_job::SplitJob;

pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad options or input discovered before any data is written (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Ots(#[from] OtsError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("converting rows: {0}")]
    Convert(#[from] ConvertError),
    #[error(
        "snapshot {id} cannot be committed: splits {missing:?} have no record (run the backup again with --resume {id})"
    )]
    Incomplete { id: String, missing: Vec<u32> },
    #[error(
        "snapshot {id}: {what} disappeared before the commit (removed by gc or by hand?); nothing was committed"
    )]
    Vanished { id: String, what: String },
    #[error("a split task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("reading the table's stream: {0}")]
    Stream(#[from] StreamError),
    #[error("encoding changes: {0}")]
    Changes(#[from] ots_schema::changes::ChangeFileError),
    #[error("signing the snapshot: {0}")]
    Signing(#[from] ots_manifest::signing::SigningError),
    /// `commit` before every split has a record.
    #[error("snapshot {id} cannot be committed yet: {detail}")]
    NotReady { id: String, detail: String },
}

impl BackupError {
    /// Bad usage, a mismatch, or a failure: the CLI's exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Usage(_) | BackupError::Lease(LeaseError::Held { .. }) => ErrorKind::Usage,
            // Only a new full snapshot recovers from a trimmed position: the user's move.
            BackupError::Stream(e) if e.is_trimmed() => ErrorKind::Usage,
            BackupError::Stream(StreamError::Ots(e)) if e.is_usage() => ErrorKind::Usage,
            // A missing table, refused credentials, an endpoint that never answered: bad input,
            // not a failure of the tool.
            BackupError::Ots(e) | BackupError::Scan(ScanError::Ots(e)) if e.is_usage() => {
                ErrorKind::Usage
            }
            BackupError::Manifest(
                ManifestError::FormatVersion { .. } | ManifestError::Json { .. },
            ) => ErrorKind::Mismatch,
            _ => ErrorKind::Failure,
        }
    }
}

/// Errors from inside a page callback.
#[derive(Debug)]
pub(crate) enum PageError {
    /// A row of the page broke a rule (see `ots_scan::page`).
    Scan(ScanError),
    Convert(ConvertError),
}

impl From<ScanError> for PageError {
    fn from(e: ScanError) -> Self {
        PageError::Scan(e)
    }
}

impl From<PageError> for BackupError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::Scan(e) => BackupError::Scan(e),
            PageError::Convert(c) => BackupError::Convert(c),
        }
    }
}

/// Which cells a backup takes by timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeScopeChoice {
    /// Cells dated up to T; those dated after T are counted and reported.
    #[default]
    UpToT,
    /// Every cell however it is dated (`--time-range all`).
    All,
}

/// Whether a backup captures changes from the table's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamChoice {
    /// When the table has a stream enabled: a consistent snapshot (exact as of T_c).
    #[default]
    Auto,
    /// Never (`--no-stream`): a scan only, with the consistency caveats of FORMAT.md §9.4.
    Off,
}

/// The parent of an incremental snapshot (`--incremental-from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParentChoice {
    /// A snapshot id under the destination.
    Id(String),
    /// The newest committed snapshot of the table under the destination that captured changes.
    Latest,
}

/// What to back up and how.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub table: String,
    /// Shown in the manifest; must not contain credentials.
    pub endpoint: String,
    pub instance: String,
    pub split_size: SplitSize,
    /// Splits scanned at once.
    pub concurrency: usize,
    /// Rows sampled from each split for schema inference.
    pub sample_rows_per_split: usize,
    pub max_typed_columns: usize,
    pub pinned_schema: Option<SnapshotSchema>,
    pub parquet: ParquetOptions,
    /// Rows per record batch handed to the Parquet writer.
    pub batch_rows: usize,
    pub partitioning: Partitioning,
    /// Open partition files per split at most; the least recently used is closed beyond this
    /// (the memory budget may allow fewer).
    pub max_open_partitions: usize,
    /// The memory budget of the whole backup, in bytes (`--memory-mb`).
    pub memory_bytes: usize,
    pub read_cu_per_sec: Option<f64>,
    /// Resume this snapshot instead of starting a new one.
    pub resume: Option<String>,
    /// Work on the snapshot even if another process holds a live lease on it.
    pub take_over: bool,
    /// Snapshot time T in ms (default: now at the start of the backup).
    pub snapshot_time_ms: Option<i64>,
    pub time_scope: TimeScopeChoice,
    pub stream: StreamChoice,
    /// Take an incremental snapshot: the changes since this parent.
    pub incremental_from: Option<ParentChoice>,
    pub capture: CaptureOptions,
    /// Sign `plan.json` and `manifest.json` with this key (`--sign-key-file`).
    pub sign_key: Option<Arc<ots_manifest::signing::SigningKey>>,
}

impl BackupConfig {
    pub fn new(
        table: impl Into<String>,
        endpoint: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        BackupConfig {
            table: table.into(),
            endpoint: endpoint.into(),
            instance: instance.into(),
            split_size: SplitSize::default(),
            concurrency: 4,
            sample_rows_per_split: 2000,
            max_typed_columns: ots_schema::infer::DEFAULT_MAX_TYPED_COLUMNS,
            pinned_schema: None,
            parquet: ParquetOptions::default(),
            batch_rows: 8192,
            partitioning: Partitioning::None,
            max_open_partitions: 8,
            memory_bytes: DEFAULT_MEMORY_MB << 20,
            read_cu_per_sec: None,
            resume: None,
            take_over: false,
            snapshot_time_ms: None,
            time_scope: TimeScopeChoice::UpToT,
            stream: StreamChoice::Auto,
            incremental_from: None,
            capture: CaptureOptions::default(),
            sign_key: None,
        }
    }

    /// Checks every numeric setting before anything runs.
    pub fn validate(&self) -> Result<(), BackupError> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(BackupError::Usage(format!("{name} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("--concurrency", self.concurrency)?;
        positive("--batch-rows", self.batch_rows)?;
        positive("--max-open-partitions", self.max_open_partitions)?;
        positive("--sample-rows", self.sample_rows_per_split)?;
        positive("--max-typed-columns", self.max_typed_columns)?;
        self.memory_plan()?;
        if let Some(r) = self.read_cu_per_sec
            && !(r.is_finite() && r > 0.0)
        {
            return Err(BackupError::Usage(format!(
                "--read-cu-per-sec must be a positive number, not {r}"
            )));
        }
        if self.split_size.units <= 0 || self.split_size.unit_bytes <= 0 {
            return Err(BackupError::Usage(
                "--split-size-mb must be at least 1".into(),
            ));
        }
        if self.snapshot_time_ms.is_some_and(|t| t < 0) {
            return Err(BackupError::Usage(
                "the snapshot time must not be before 1970".into(),
            ));
        }
        Ok(())
    }
}

impl BackupConfig {
    /// How the memory budget is shared out (an error when it is too small for the concurrency).
    pub fn memory_plan(&self) -> Result<MemoryPlan, BackupError> {
        // Unpartitioned, a split writes one file at a time: the budget of the other "open files"
        // would only shrink its row groups (and small row groups cost CPU and scan speed).
        let open_files = match self.partitioning {
            Partitioning::None => 1,
            _ => self.max_open_partitions,
        };
        MemoryPlan::new(
            self.memory_bytes,
            self.concurrency,
            open_files,
            self.parquet.row_group_bytes,
        )
    }
}

/// Live counters for progress reporting.
#[derive(Debug, Default)]
pub struct Progress {
    pub splits_total: AtomicU64,
    pub splits_done: AtomicU64,
    pub rows: AtomicU64,
    pub cells: AtomicU64,
    pub bytes_scanned: AtomicU64,
    pub files: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Rows of a previous attempt's splits (resume).
    pub rows_skipped: AtomicU64,
    /// Cells dated after T found so far (not backed up with scope `up_to_t`).
    pub cells_after_t: AtomicU64,
    /// Changes captured from the stream so far.
    pub changes: AtomicU64,
    /// Set while the changes are captured (after the scans).
    pub capturing: std::sync::atomic::AtomicBool,
    /// Set once the plan is written, so that a failure can say how to resume.
    pub snapshot_id: std::sync::Mutex<Option<String>>,
}

#[derive(Clone, Debug)]
pub struct BackupOutcome {
    pub snapshot_id: String,
    /// URL of the snapshot folder.
    pub url: String,
    pub manifest: Manifest,
    pub splits_resumed: usize,
}

/// Runs (or resumes) a backup of `cfg.table` into `dest`.
pub async fn run_backup(
    client: &OtsClient,
    dest: Destination,
    cfg: &BackupConfig,
    progress: Arc<Progress>,
) -> Result<BackupOutcome, BackupError> {
    cfg.validate()?;
    let snapshots = Snapshots::new(dest);
    let command = if cfg.resume.is_some() {
        "backup --resume"
    } else {
        "backup"
    };
    let (snapshot, plan) = match &cfg.resume {
        Some(id) => {
            let snapshot = snapshots.snapshot(id);
            let plan = plan::resume_plan(&snapshot, cfg).await?;
            (snapshot, plan)
        }
        None => match &cfg.incremental_from {
            Some(parent) => plan::new_incremental_plan(client, &snapshots, cfg, parent).await?,
            None => plan::new_plan(client, &snapshots, cfg).await?,
        },
    };
    let id = plan.snapshot_id.clone();
    if let Ok(mut slot) = progress.snapshot_id.lock() {
        *slot = Some(id.clone());
    }
    sign(&snapshot, &[PLAN_FILE], cfg.sign_key.as_deref()).await?;
    let guard = lease::acquire(&snapshot, command, cfg.take_over, LEASE_TTL).await?;
    // Under the lease, the snapshot is as it was when its plan was read: gc removes nothing
    // while someone holds it, and a gc that finished just before is caught here.
    if cfg.resume.is_some() {
        let again = snapshot.read_plan().await;
        if !matches!(&again, Ok(p) if *p == plan) {
            guard.release().await;
            return Err(BackupError::Usage(format!(
                "snapshot {id} changed while the resume started (its plan is gone or different: removed by gc?); check `otsarchive ls`"
            )));
        }
    }
    let result = run_splits(client, &snapshot, plan, cfg, progress).await;
    guard.release().await;
    let (manifest, resumed) = result?;
    sign(&snapshot, &[MANIFEST_FILE], cfg.sign_key.as_deref()).await?;
    Ok(BackupOutcome {
        url: snapshot.url(),
        snapshot_id: id,
        manifest,
        splits_resumed: resumed,
    })
}

/// Signs documents `rels` of `snapshot` when there is a key (a signature already there is kept).
pub(crate) async fn sign(
    snapshot: &ots_manifest::Snapshot,
    rels: &[&str],
    key: Option<&ots_manifest::signing::SigningKey>,
) -> Result<(), BackupError> {
    if let Some(key) = key {
        for rel in rels {
            ots_manifest::signing::sign_document(snapshot, rel, key).await?;
        }
    }
    Ok(())
}

/// Scans every split without a record, then commits.
async fn run_splits(
    client: &OtsClient,
    snapshot: &ots_manifest::Snapshot,
    plan: ots_format::Plan,
    cfg: &BackupConfig,
    progress: Arc<Progress>,
) -> Result<(Manifest, usize), BackupError> {
    let plan = Arc::new(plan);
    let (own, resumed) = scan_splits(
        client,
        snapshot,
        plan.clone(),
        cfg,
        progress.clone(),
        |_| true,
    )
    .await?;
    let capture = match &plan.changes {
        Some(capture_plan) => {
            Some(capture(client, snapshot, &plan, capture_plan, cfg, &progress).await?)
        }
        None => None,
    };
    let manifest = commit::commit(snapshot, &plan, &own, capture.as_ref()).await?;
    Ok((manifest, resumed))
}

/// Scans every split that `mine` selects and that has no record yet; returns the records found
/// plus those written, and how many splits were done before.
pub(crate) async fn scan_splits(
    client: &OtsClient,
    snapshot: &ots_manifest::Snapshot,
    plan: Arc<ots_format::Plan>,
    cfg: &BackupConfig,
    progress: Arc<Progress>,
    mine: impl Fn(u32) -> bool,
) -> Result<(Vec<ots_format::SplitRecord>, usize), BackupError> {
    let selected = plan.splits.iter().filter(|s| mine(s.id)).count();
    progress
        .splits_total
        .store(selected as u64, Ordering::Relaxed);
    // Splits that some attempt (this run's predecessor, or a process beside it) has finished.
    let existing: Vec<ots_format::SplitRecord> = snapshot
        .records()
        .await?
        .into_iter()
        .filter(|r| r.snapshot_id == plan.snapshot_id)
        .collect();
    let mut done = HashSet::new();
    for s in plan.splits.iter().filter(|s| mine(s.id)) {
        if let Some(r) = choose_record(s, &existing) {
            done.insert(s.id);
            progress.splits_done.fetch_add(1, Ordering::Relaxed);
            progress
                .rows_skipped
                .fetch_add(r.stats.rows, Ordering::Relaxed);
        }
    }
    let limiter = cfg.read_cu_per_sec.map(|r| Arc::new(RateLimiter::new(r)));
    let mut options = ScanOptions {
        time_range: (plan.time_range.start_ms, plan.time_range.end_ms),
        ..ScanOptions::up_to(plan.time_range.t_ms)
    };
    options.read_limiter = limiter.clone();
    let schema = Arc::new(plan.schema.clone());
    let memory = cfg.memory_plan()?;
    tracing::debug!(?memory, "memory budget per split");
    let limits = SinkLimits {
        batch_rows: cfg.batch_rows,
        memory,
        parquet: cfg.parquet.clone(),
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let mut set = JoinSet::new();
    for split in plan
        .splits
        .iter()
        .filter(|s| mine(s.id) && !done.contains(&s.id))
    {
        let job = SplitJob {
            client: client.clone(),
            table: cfg.table.clone(),
            snapshot: snapshot.clone(),
            plan: plan.clone(),
            schema: schema.clone(),
            split: split.clone(),
            options: options.clone(),
            limits: limits.clone(),
            progress: progress.clone(),
            probe_limiter: limiter.clone(),
        };
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            job.run().await
        });
    }
    // What this process knows is done: the records it found plus those it writes.
    let mut own = existing;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(record)) => own.push(record),
            Ok(Err(e)) => {
                set.abort_all();
                return Err(e);
            }
            Err(e) => {
                set.abort_all();
                return Err(BackupError::Task(e));
            }
        }
    }
    Ok((own, done.len()))
}

/// The capture record of the snapshot: one a previous attempt finished (the smallest attempt
/// token, like splits), or a fresh capture from the plan's start to a T_c chosen now.
pub(crate) async fn capture(
    client: &OtsClient,
    snapshot: &ots_manifest::Snapshot,
    plan: &Arc<ots_format::Plan>,
    capture_plan: &ots_format::CapturePlan,
    cfg: &BackupConfig,
    progress: &Arc<Progress>,
) -> Result<ots_format::CaptureRecord, BackupError> {
    let existing = snapshot
        .capture_records()
        .await?
        .into_iter()
        .find(|r| r.snapshot_id == plan.snapshot_id);
    if let Some(r) = existing {
        progress
            .changes
            .fetch_add(r.counts.records(), Ordering::Relaxed);
        return Ok(r);
    }
    progress.capturing.store(true, Ordering::Relaxed);
    let memory = cfg.memory_plan()?;
    let job = capture_job::CaptureJob {
        client: client.clone(),
        snapshot: snapshot.clone(),
        plan: plan.clone(),
        capture: capture_plan.clone(),
        options: cfg.capture,
        parquet: cfg.parquet.clone(),
        batch_bytes: memory.batch.max(1 << 20),
        row_group_bytes: memory.row_group,
        progress: progress.clone(),
    };
    let record = job.run().await;
    progress.capturing.store(false, Ordering::Relaxed);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unpartitioned, a split has one file open at a time, so that file gets the split's whole
    /// file budget: row groups of ~9 MiB at the defaults, where 8 "open partitions" would leave
    /// two files of ~2 MiB row groups (measured: 8k-row groups, ~10% more CPU, worse scans).
    #[test]
    fn an_unpartitioned_backup_gives_its_one_file_the_whole_row_group_budget() {
        let mut cfg = BackupConfig::new("t", "http://127.0.0.1:1", "i");
        let plain = cfg.memory_plan().unwrap();
        assert_eq!(plain.open_files, 1);
        cfg.partitioning = Partitioning::Column { column: "c".into() };
        let partitioned = cfg.memory_plan().unwrap();
        assert!(partitioned.open_files > 1, "{partitioned:?}");
        assert!(
            plain.row_group >= 4 * partitioned.row_group,
            "{plain:?} vs {partitioned:?}"
        );
    }
}
