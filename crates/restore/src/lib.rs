//! Restore: a snapshot back into a Tablestore table, cell for cell, through BatchWriteRow.
//!
//! [`run_restore`] checks the options ([`config`]), refuses filters that select nothing
//! ([`transform`]), refuses a resume whose checkpoint was written for another target or other
//! options ([`journal`]), checks the target against the snapshot ([`preflight`]: primary key,
//! timestamps, TTL, `max_versions`, rows already there), verifies the snapshot and pins every
//! file to the bytes verified ([`integrity`], [`reader`]), creates the target if asked, then
//! reads files in parallel, applies the row options and writes batches of at most
//! 200 rows and 4 MB under an adaptive rate ([`pipeline`], [`rate`]); a row one write cannot
//! carry (over 4 MB or 1,024 cells) is written as a PutRow and UpdateRows ([`split`]). Memory
//! is bounded in bytes by `--memory-mb` ([`config::MemoryBudget`]). [`plan_restore`] runs the
//! same checks and reports what a restore would do, writing nothing (`--dry-run`). Rows that
//! fail for good go whole to a dead-letter file ([`dead_letter`]), which [`retry_dead_letter`]
//! sends again; a durable checkpoint of finished files makes a crashed restore resumable, and
//! puts with the original timestamps make repeating a file harmless.
//! [`compare`] compares a snapshot with a live table (`verify --against-table`).
//! [`replay`] applies captured changes (change files, FORMAT.md §10) to a table in order,
//! through BatchWriteRow with per-key order kept by lanes ([`ChangeApplier`]).

pub mod chain;
pub mod compare;
pub mod config;
pub mod dead_letter;
mod error;
mod image;
pub mod integrity;
pub mod journal;
mod pipeline;
pub mod preflight;
pub mod rate;
pub mod reader;
pub mod replay;
pub mod split;
mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ots_manifest::{FileEntry, Manifest, Snapshot};
use ots_wire::OtsClient;
use serde::Serialize;

pub use config::{
    AutoIncrementMode, DEFAULT_MEMORY_MB, MemoryBudget, RestoreConfig, TimestampMode, WriteMode,
};
pub use error::{ErrorKind, RestoreError};
pub use integrity::{FilePins, verify_and_pin};
pub use journal::{OptionDifference, RowOptions, TargetIdentity};
pub use preflight::{TargetPlan, VersionsNeeded, create_table_request, pk_text, versions_needed};
pub use replay::{ChangeApplier, ReplayOptions, ReplayStats};
pub use transform::FileCounts;

use crate::journal::Checkpoint;
use crate::pipeline::Pipeline;
use crate::preflight::Target;
use crate::transform::{RowTransform, select_files};

/// BatchWriteRow limits (fact sheet §5.7).
pub const MAX_BATCH_ROWS: usize = 200;
pub const MAX_BATCH_BYTES: usize = split::MAX_WRITE_BYTES;

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
    /// Changes read from change files, and applied (after the data files).
    pub changes_read: AtomicU64,
    pub changes_applied: AtomicU64,
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
    /// The chain restored, base first (one id for a snapshot without captured changes).
    pub chain: Vec<String>,
    /// The instant the table was restored to exactly (RFC 3339 µs), when changes were replayed.
    pub restored_as_of: Option<String>,
    pub changes: Option<chain::ChainReplayStats>,
}

pub(crate) fn now_ms() -> i64 {
    ots_format::time::unix_millis(std::time::SystemTime::now())
}

/// What a restore would do, found by every check it runs before its first write
/// ([`plan_restore`], `otsarchive restore --dry-run`). Counts are the manifest's.
#[derive(Clone, Debug, Serialize)]
pub struct RestorePlan {
    pub snapshot_id: String,
    /// The target as found, or as it would be created.
    pub target: TargetPlan,
    /// The mode rows would be written with (`overwrite`, `only-if-absent`) …
    pub mode: String,
    /// … and whether it was chosen (`--mode`) or is the default for a new or empty table.
    pub mode_given: bool,
    /// `put` (PutRow, replaces the whole row) or `update` (UpdateRow, `--columns` in overwrite
    /// mode: the row's other columns stay).
    pub operation: String,
    pub timestamps: String,
    pub auto_increment: String,
    /// The files that would be read, with their rows, cells and bytes.
    pub write: FileCounts,
    /// Files left out by `--partition`.
    pub skipped_by_partition: FileCounts,
    /// Files left out by `--start-key`/`--end-key` (by their key ranges).
    pub skipped_by_key_range: FileCounts,
    /// Files a resumed checkpoint lists as done.
    pub skipped_by_checkpoint: FileCounts,
    /// Files other workers restore (`--worker K/N`).
    pub skipped_by_worker: FileCounts,
    /// Filters applied row by row inside the files read, in words; with any, the rows and cells
    /// of `write` are upper bounds.
    pub row_filters: Vec<String>,
    /// The snapshot was verified (every file's size and SHA-256); `false` with `skip_verify`.
    pub verified: bool,
    pub checkpoint: PathBuf,
    pub dead_letter: PathBuf,
    pub auto_increment_note: Option<String>,
    pub warnings: Vec<String>,
    /// The chain that would be restored, base first.
    pub chain: Vec<String>,
    /// Change files and changes that would be replayed after the data files.
    pub change_files: u64,
    pub changes: u64,
    /// The instant the table would be restored to exactly, when changes are replayed.
    pub restored_as_of: Option<String>,
}

/// Everything checked and decided before the first write.
struct Prepared {
    manifest: Manifest,
    /// The chain; its base's data files are `files`.
    chain: chain::Chain,
    /// File pins of every link, base first.
    link_pins: Vec<Arc<FilePins>>,
    checkpoint: Checkpoint,
    pins: FilePins,
    target: Target,
    /// The selected files, and those of them not finished by a resumed run.
    files: Vec<FileEntry>,
    todo: Vec<FileEntry>,
    plan: RestorePlan,
}

/// Every check, in order, without writing anything: the options, the filters (by the
/// manifest), the resume, the target (it is only read) and the snapshot's verification (unless
/// `cfg.skip_verify`).
async fn prepare(
    client: &OtsClient,
    snapshot: &Snapshot,
    cfg: &RestoreConfig,
    verify_progress: &dyn ots_manifest::VerifyProgress,
) -> Result<Prepared, RestoreError> {
    cfg.validate()?;
    let id = snapshot.id();
    let requested = snapshot.read_manifest().await?;
    let mut chain = chain::resolve_chain(snapshot, requested).await?;
    if let Some(t) = cfg.as_of_us {
        chain.cut_at(t)?;
    }
    check_replay_options(cfg, &chain)?;
    // Every link's files must be readable before anything is written.
    chain.check_keys()?;
    // The data files are the base's; the links add their changes.
    let manifest = chain.base().manifest.clone();
    let mut selection = select_files(&manifest, cfg)?;
    // A worker takes its share of the selected files.
    let mut skipped_by_worker = FileCounts::default();
    if let Some(slot) = cfg.worker {
        if chain.has_changes() {
            return Err(RestoreError::Usage(format!(
                "--worker {slot}: snapshot {} replays captured changes, which must follow every data file of every worker; restore it with one process",
                chain.last().id()
            )));
        }
        let shares = worker_shares(&selection.files, slot.count);
        let mut mine = Vec::new();
        let mut selected = FileCounts::default();
        for (f, k) in selection.files.iter().zip(shares) {
            if k == slot.index {
                selected.add(f);
                mine.push(*f);
            } else {
                skipped_by_worker.add(f);
            }
        }
        selection.files = mine;
        selection.selected = selected;
    }
    // The journal before the (long) verification: a resume that cannot be done says so at once.
    let target_id = TargetIdentity::new(
        &client.config().endpoint,
        &client.config().instance,
        &cfg.table,
    );
    let fresh = Checkpoint::new(id, target_id, RowOptions::of(cfg));
    // A resume continues from a checkpoint on disk: the rows in the target are its own.
    let resuming = cfg.resume && cfg.checkpoint.exists();
    let checkpoint = if cfg.resume {
        fresh.resume_from(&cfg.checkpoint)?
    } else {
        fresh
    };
    let mut target = preflight::check_target(client, &manifest, cfg, resuming).await?;
    // A fresh run never appends to an earlier run's dead letters unnoticed.
    match dead_letter::existing_lines(&cfg.dead_letter)? {
        Some(lines) if !resuming => {
            return Err(RestoreError::DeadLetterExists {
                path: cfg.dead_letter.clone(),
                lines,
                table: cfg.table.clone(),
            });
        }
        Some(lines) => target.warnings.push(format!(
            "rows that fail are appended to the dead-letter file {} of the resumed restore (it holds {lines} already)",
            cfg.dead_letter.display()
        )),
        None => {}
    }
    // Every link is verified before the first write.
    let mut link_pins = Vec::with_capacity(chain.links.len());
    for link in &chain.links {
        let pins = if cfg.skip_verify {
            FilePins::unverified()
        } else {
            let (report, pins) = verify_and_pin(&link.snapshot, verify_progress).await?;
            if let Some(first) = report.issues.first() {
                return Err(RestoreError::SnapshotInvalid {
                    id: link.id().to_string(),
                    issues: report.issues.len(),
                    first_path: first.path.clone(),
                    first_problem: first.problem.clone(),
                });
            }
            pins
        };
        link_pins.push(Arc::new(pins));
    }
    let pins = (*link_pins[0]).clone();

    let mut skipped_by_checkpoint = FileCounts::default();
    let mut todo = Vec::new();
    for f in &selection.files {
        if checkpoint.files_done.contains(&f.path) {
            skipped_by_checkpoint.add(f);
        } else {
            todo.push((*f).clone());
        }
    }
    let files: Vec<FileEntry> = selection.files.iter().map(|f| (*f).clone()).collect();
    let mut row_filters = Vec::new();
    if let Some((start, end)) = &cfg.pk_range {
        row_filters.push(format!(
            "--start-key {} --end-key {}: rows of the files read outside [start, end) are skipped",
            ots_format::display_columns(start),
            ots_format::display_columns(end)
        ));
    }
    if let Some(cols) = &cfg.columns {
        row_filters.push(format!(
            "--columns {}: only these columns' cells are written; rows without any of them are skipped",
            cols.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    let operation = match transform::operation(cfg) {
        ots_wire::pb::OperationType::Update => "update",
        _ => "put",
    };
    let plan = RestorePlan {
        snapshot_id: id.to_string(),
        target: target.plan.clone(),
        mode: cfg.write_mode().name().to_string(),
        mode_given: cfg.mode.is_some(),
        operation: operation.to_string(),
        timestamps: cfg.timestamps.name().to_string(),
        auto_increment: cfg.auto_increment.name().to_string(),
        write: selection.selected,
        skipped_by_partition: selection.skipped_by_partition,
        skipped_by_key_range: selection.skipped_by_key_range,
        skipped_by_checkpoint,
        skipped_by_worker,
        row_filters,
        verified: !cfg.skip_verify,
        checkpoint: cfg.checkpoint.clone(),
        dead_letter: cfg.dead_letter.clone(),
        auto_increment_note: target.auto_increment_note.clone(),
        warnings: target.warnings.clone(),
        chain: chain.links.iter().map(|l| l.id().to_string()).collect(),
        change_files: chain.change_files().count() as u64,
        changes: chain
            .links
            .iter()
            .filter_map(|l| l.changes())
            .map(|c| c.counts.records())
            .sum(),
        restored_as_of: restored_as_of(cfg, &chain),
    };
    Ok(Prepared {
        manifest,
        chain,
        link_pins,
        checkpoint,
        pins,
        target,
        files,
        todo,
        plan,
    })
}

/// Deals files out to `count` workers, largest first, each to the worker with the fewest bytes so
/// far (ties: the lower worker): every worker computes the same shares from the manifest, and the
/// bytes are balanced. Returns each file's worker, in the order of `files`.
fn worker_shares(files: &[&FileEntry], count: u32) -> Vec<u32> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        files[b]
            .bytes
            .cmp(&files[a].bytes)
            .then_with(|| files[a].path.cmp(&files[b].path))
    });
    let mut load = vec![0u64; count as usize];
    let mut out = vec![0u32; files.len()];
    for i in order {
        let (k, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(k, b)| (**b, *k))
            .unwrap_or((0, &0));
        load[k] += files[i].bytes.max(1);
        out[i] = k as u32;
    }
    out
}

/// The instant a chain restore reaches exactly: `--as-of`, or the last link's consistency point.
fn restored_as_of(cfg: &RestoreConfig, chain: &chain::Chain) -> Option<String> {
    chain
        .last()
        .t_c_us()
        .map(|t| ots_format::time::rfc3339_micros(cfg.as_of_us.unwrap_or(t)))
}

/// Replaying changes reproduces the source only with every cell as it was: no row or column
/// filter, original timestamps, rows overwritten.
fn check_replay_options(cfg: &RestoreConfig, chain: &chain::Chain) -> Result<(), RestoreError> {
    if !chain.has_changes() {
        return Ok(());
    }
    let mut refused = Vec::new();
    if cfg.pk_range.is_some() {
        refused.push("--start-key/--end-key");
    }
    if cfg.columns.is_some() {
        refused.push("--columns");
    }
    if !cfg.partitions.is_empty() {
        refused.push("--partition");
    }
    if cfg.timestamps != TimestampMode::Original {
        refused.push("--timestamps other than original");
    }
    if cfg.mode.is_some_and(|m| m != WriteMode::Overwrite) {
        refused.push("--mode other than overwrite");
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(RestoreError::Usage(format!(
        "snapshot {} replays captured changes, which reproduce the table only whole: {} cannot be combined with it",
        chain.last().id(),
        refused.join(", ")
    )))
}

/// Runs every check a restore runs before its first write, and says what it would do, writing
/// nothing: no table is created, no checkpoint or dead-letter file written, no row sent. A check
/// that fails is the same error [`run_restore`] would return.
pub async fn plan_restore(
    client: &OtsClient,
    snapshot: &Snapshot,
    cfg: &RestoreConfig,
) -> Result<RestorePlan, RestoreError> {
    Ok(prepare(client, snapshot, cfg, &()).await?.plan)
}

/// Restores `snapshot` into `cfg.table`.
///
/// Nothing is written before the options check, the filters check, the resume check, the
/// target's pre-flight and the snapshot's verification (unless `cfg.skip_verify`);
/// [`RestoreError::kind`] says which kind of failure an error is.
pub async fn run_restore(
    client: &OtsClient,
    snapshot: &Snapshot,
    cfg: &RestoreConfig,
    progress: Arc<RestoreProgress>,
) -> Result<RestoreOutcome, RestoreError> {
    let Prepared {
        manifest,
        chain,
        link_pins,
        mut checkpoint,
        pins,
        target,
        files,
        todo,
        plan,
    } = prepare(client, snapshot, cfg, &progress.verify).await?;
    let created = preflight::create_target(client, &target).await?;
    let skipped = plan.skipped_by_checkpoint.files;
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
        snapshot: &chain.base().snapshot,
        cfg,
        schema: Arc::new(manifest.schema.clone()),
        transform: Arc::new(RowTransform::new(cfg, &auto_cols, now_ms())),
        pins: Arc::new(pins),
        files: todo,
        progress: progress.clone(),
    }
    .run(&mut checkpoint)
    .await?;
    // Then the changes, link after link: replay is idempotent, so a resumed restore repeats it.
    let changes = if chain.has_changes() {
        Some(chain::replay_chain(client, cfg, &chain, &link_pins, &progress).await?)
    } else {
        None
    };

    let failed = progress.rows_failed.load(Ordering::Relaxed);
    Ok(RestoreOutcome {
        snapshot_id: plan.snapshot_id,
        table: cfg.table.clone(),
        table_created: created,
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
        chain: plan.chain,
        restored_as_of: plan.restored_as_of,
        changes,
    })
}

/// What [`retry_dead_letter`] did.
#[derive(Clone, Debug, Serialize)]
pub struct RetryOutcome {
    /// The dead-letter file replayed.
    pub input: PathBuf,
    pub table: String,
    /// Rows the file holds (replayable lines).
    pub rows: u64,
    pub rows_written: u64,
    /// Rows of `only-if-absent` lines the table already has.
    pub rows_present: u64,
    pub rows_failed: u64,
    pub row_retries: u64,
    pub throttle_events: u64,
    /// Where the rows that failed again are, when any did.
    pub dead_letter: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// A new dead-letter file name for the rows of `input` that fail again:
/// `<input without .jsonl>.retry-<UTC time>.jsonl` beside it, made unique with a counter.
pub fn retry_output_path(input: &std::path::Path) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dead-letter.jsonl".into());
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name).to_string();
    let when = ots_format::time::rfc3339(std::time::SystemTime::now())
        .replace(['-', ':'], "")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let dir = input.parent().unwrap_or(std::path::Path::new(""));
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = dir.join(format!("{stem}.retry-{when}Z{suffix}.jsonl"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// Sends the rows of dead-letter file `input` again into `cfg.table` (which must exist), with
/// each line's operation and mode (`mode` overrides the mode), and the options of `cfg` for
/// concurrency, rate and memory. Rows that fail again are written to `cfg.dead_letter`, which
/// must be another file and must not hold lines already. Every line is checked before the first
/// write: a line that cannot be replayed is [`RestoreError::DeadLetterLine`] and nothing is
/// written.
pub async fn retry_dead_letter(
    client: &OtsClient,
    cfg: &RestoreConfig,
    input: &std::path::Path,
    mode: Option<WriteMode>,
    progress: Arc<RestoreProgress>,
) -> Result<RetryOutcome, RestoreError> {
    cfg.validate()?;
    if !input.is_file() {
        return Err(RestoreError::Usage(format!(
            "--retry-dead-letter {}: no such file",
            input.display()
        )));
    }
    let same = match (input.canonicalize(), cfg.dead_letter.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == cfg.dead_letter,
    };
    if same {
        return Err(RestoreError::Usage(format!(
            "--dead-letter {} is the file being replayed; rows that fail again go to a new file \
             (omit --dead-letter for one named after it)",
            cfg.dead_letter.display()
        )));
    }
    if let Some(lines) = dead_letter::existing_lines(&cfg.dead_letter)? {
        return Err(RestoreError::DeadLetterExists {
            path: cfg.dead_letter.clone(),
            lines,
            table: cfg.table.clone(),
        });
    }
    // Every line is checked before anything is written.
    let mut warnings = Vec::new();
    let mut reader = dead_letter::DeadLetterReader::open(input)?;
    let mut sources: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut other_tables = std::collections::BTreeSet::new();
    let mut rows = 0u64;
    let mut auto_increment = false;
    while let Some(d) = reader.next_row()? {
        rows += 1;
        if seen.insert(d.file.clone()) {
            sources.push(d.file.clone());
        }
        if !d.table.is_empty() && d.table != cfg.table {
            other_tables.insert(d.table.clone());
        }
        auto_increment |= d
            .row
            .primary_key
            .iter()
            .any(|c| c.value == ots_wire::types::PkValue::AutoIncrement);
    }
    if let Some(line) = reader.skipped_last {
        warnings.push(format!(
            "line {line} of {} is incomplete (cut while it was written) and was skipped",
            input.display()
        ));
    }
    if !other_tables.is_empty() {
        warnings.push(format!(
            "the rows were dead-lettered while restoring into {}; they are written into '{}' as asked",
            other_tables
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", "),
            cfg.table
        ));
    }
    // The target must exist: a replay never creates a table.
    if let Err(e) = client.describe_table(&cfg.table).await {
        return Err(if e.is_not_found() {
            RestoreError::TableNotFound {
                table: cfg.table.clone(),
                error: e,
            }
        } else {
            RestoreError::Ots(e)
        });
    }
    let mut run_cfg = cfg.clone();
    if auto_increment {
        // Keys the service assigns: writes are not idempotent and are never repeated blindly.
        run_cfg.auto_increment = AutoIncrementMode::Regenerate;
    }
    progress.files_total.store(1, Ordering::Relaxed);
    pipeline::replay(client, &run_cfg, input, sources, mode, progress.clone()).await?;
    progress.files_done.store(1, Ordering::Relaxed);
    let failed = progress.rows_failed.load(Ordering::Relaxed);
    Ok(RetryOutcome {
        input: input.to_path_buf(),
        table: cfg.table.clone(),
        rows,
        rows_written: progress.rows_written.load(Ordering::Relaxed),
        rows_present: progress.rows_present.load(Ordering::Relaxed),
        rows_failed: failed,
        row_retries: progress.row_retries.load(Ordering::Relaxed),
        throttle_events: progress.throttle_events.load(Ordering::Relaxed),
        dead_letter: (failed > 0).then(|| cfg.dead_letter.clone()),
        warnings,
    })
}

#[cfg(test)]
mod worker_share_tests {
    use super::*;

    fn file(path: &str, bytes: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            split: 0,
            partition: Default::default(),
            rows: 1,
            cells: 1,
            bytes,
            sha256: String::new(),
            pk_min: Vec::new(),
            pk_max: Vec::new(),
        }
    }

    #[test]
    fn files_are_dealt_out_once_each_balanced_by_bytes() {
        let files: Vec<FileEntry> = [900, 100, 500, 500, 400, 100, 300]
            .iter()
            .enumerate()
            .map(|(i, b)| file(&format!("data/part-{i}"), *b))
            .collect();
        let refs: Vec<&FileEntry> = files.iter().collect();
        let shares = worker_shares(&refs, 3);
        assert_eq!(shares.len(), files.len());
        let mut load = [0u64; 3];
        for (f, k) in files.iter().zip(&shares) {
            load[*k as usize] += f.bytes;
        }
        // 2,800 bytes over 3 workers: no worker carries more than the largest file above its share.
        assert!(load.iter().all(|l| *l >= 900 && *l <= 1000), "{load:?}");
        // Deterministic, whatever order the files come in.
        let mut reversed = refs.clone();
        reversed.reverse();
        let again = worker_shares(&reversed, 3);
        for (i, f) in reversed.iter().enumerate() {
            let j = files.iter().position(|g| g.path == f.path).unwrap();
            assert_eq!(again[i], shares[j]);
        }
        assert!(worker_shares(&refs, 1).iter().all(|k| *k == 0));
    }
}
