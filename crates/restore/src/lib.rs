//! Restore: a snapshot back into a Tablestore table, cell for cell, through BatchWriteRow.
//!
//! [`run_restore`] checks the options ([`config`]), refuses a resume whose checkpoint was written
//! for another target or other options ([`journal`]), verifies the snapshot and pins every file
//! to the bytes verified ([`integrity`], [`reader`]), prepares the target ([`preflight`]), then
//! reads files in parallel, applies the row options ([`transform`]) and writes batches of at most
//! 200 rows and 4 MB under an adaptive rate ([`pipeline`], [`rate`]). Rows that fail for good go
//! to a dead-letter file; a durable checkpoint of finished files makes a crashed restore
//! resumable, and puts with the original timestamps make repeating a file harmless.
//! [`compare`] compares a snapshot with a live table (`verify --against-table`).

pub mod compare;
pub mod config;
mod error;
pub mod integrity;
pub mod journal;
mod pipeline;
pub mod preflight;
pub mod rate;
pub mod reader;
mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ots_manifest::{FileEntry, Snapshot};
use ots_wire::OtsClient;
use serde::Serialize;

pub use config::{AutoIncrementMode, RestoreConfig, TimestampMode, WriteMode};
pub use error::{ErrorKind, RestoreError};
pub use integrity::{FilePins, verify_and_pin};
pub use journal::{OptionDifference, RowOptions, TargetIdentity};
pub use preflight::{create_table_request, pk_text};

use crate::journal::Checkpoint;
use crate::pipeline::Pipeline;
use crate::transform::{RowTransform, file_selected};

/// BatchWriteRow limits (fact sheet §5.7).
pub const MAX_BATCH_ROWS: usize = 200;
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Live counters.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub rows_read: AtomicU64,
    pub rows_written: AtomicU64,
    pub rows_present: AtomicU64,
    pub rows_failed: AtomicU64,
    pub rows_filtered: AtomicU64,
    pub row_retries: AtomicU64,
    pub throttle_events: AtomicU64,
    /// The verification before the restore (files and bytes read and hashed).
    pub verify: ots_manifest::verify::VerifyCounters,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreOutcome {
    pub snapshot_id: String,
    pub table: String,
    pub table_created: bool,
    pub files: u64,
    pub files_skipped_by_checkpoint: u64,
    pub rows_written: u64,
    pub rows_present: u64,
    pub rows_failed: u64,
    pub rows_filtered: u64,
    pub row_retries: u64,
    pub throttle_events: u64,
    /// What happened to AUTO_INCREMENT columns, in words, when the table has one.
    pub auto_increment_note: Option<String>,
    pub dead_letter: Option<PathBuf>,
    pub warnings: Vec<String>,
}

pub(crate) fn now_ms() -> i64 {
    ots_format::time::unix_millis(std::time::SystemTime::now())
}

/// Restores `snapshot` into `cfg.table`.
///
/// Nothing is written before the options check, the resume check, the snapshot's verification
/// (unless `cfg.skip_verify`) and the pre-flight pass; [`RestoreError::kind`] says which kind of
/// failure an error is.
pub async fn run_restore(
    client: &OtsClient,
    snapshot: &Snapshot,
    cfg: &RestoreConfig,
    progress: Arc<RestoreProgress>,
) -> Result<RestoreOutcome, RestoreError> {
    cfg.validate()?;
    let id = snapshot.id();
    let manifest = snapshot.read_manifest().await?;
    for (k, _) in &cfg.partitions {
        let known = manifest.files.iter().any(|f| f.partition.contains_key(k));
        if !known {
            return Err(RestoreError::Usage(format!(
                "the snapshot has no partition key '{k}' (partitioning: {})",
                serde_json::to_string(&manifest.partitioning).unwrap_or_default()
            )));
        }
    }
    // The journal before the (long) verification: a resume that cannot be done says so at once.
    let target_id = TargetIdentity::new(
        &client.config().endpoint,
        &client.config().instance,
        &cfg.table,
    );
    let fresh = Checkpoint::new(id, target_id, RowOptions::of(cfg));
    let mut checkpoint = if cfg.resume {
        fresh.resume_from(&cfg.checkpoint)?
    } else {
        fresh
    };
    let pins = if cfg.skip_verify {
        FilePins::unverified()
    } else {
        let (report, pins) = verify_and_pin(snapshot, &progress.verify).await?;
        if let Some(first) = report.issues.first() {
            return Err(RestoreError::SnapshotInvalid {
                id: id.to_string(),
                issues: report.issues.len(),
                first_path: first.path.clone(),
                first_problem: first.problem.clone(),
            });
        }
        pins
    };
    let target = preflight::prepare_target(client, &manifest, cfg).await?;

    let files: Vec<&FileEntry> = manifest
        .files
        .iter()
        .filter(|f| file_selected(f, cfg))
        .collect();
    let skipped = files
        .iter()
        .filter(|f| checkpoint.files_done.contains(&f.path))
        .count() as u64;
    let todo: Vec<FileEntry> = files
        .iter()
        .filter(|f| !checkpoint.files_done.contains(&f.path))
        .map(|f| (*f).clone())
        .collect();
    progress
        .files_total
        .store(files.len() as u64, Ordering::Relaxed);
    progress.files_done.store(skipped, Ordering::Relaxed);
    // The journal on disk describes this run from now on (a stale one of another run is replaced).
    checkpoint.save(&cfg.checkpoint).await?;

    let auto_cols: Vec<usize> = manifest
        .source
        .table
        .primary_key
        .iter()
        .enumerate()
        .filter(|(_, c)| c.auto_increment)
        .map(|(i, _)| i)
        .collect();
    Pipeline {
        client,
        snapshot,
        cfg,
        schema: Arc::new(manifest.schema.clone()),
        transform: Arc::new(RowTransform::new(cfg, &auto_cols, now_ms())),
        pins: Arc::new(pins),
        files: todo,
        progress: progress.clone(),
    }
    .run(&mut checkpoint)
    .await?;

    let failed = progress.rows_failed.load(Ordering::Relaxed);
    Ok(RestoreOutcome {
        snapshot_id: id.to_string(),
        table: cfg.table.clone(),
        table_created: target.created,
        files: files.len() as u64,
        files_skipped_by_checkpoint: skipped,
        rows_written: progress.rows_written.load(Ordering::Relaxed),
        rows_present: progress.rows_present.load(Ordering::Relaxed),
        rows_failed: failed,
        rows_filtered: progress.rows_filtered.load(Ordering::Relaxed),
        row_retries: progress.row_retries.load(Ordering::Relaxed),
        throttle_events: progress.throttle_events.load(Ordering::Relaxed),
        auto_increment_note: target.auto_increment_note,
        dead_letter: (failed > 0).then(|| cfg.dead_letter.clone()),
        warnings: target.warnings,
    })
}
