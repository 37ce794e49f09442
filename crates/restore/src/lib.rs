//! Restore: a snapshot back into a Tablestore table, cell for cell, through BatchWriteRow.
//!
//! Files are read in parallel with ranged reads; record batches become rows again through the
//! snapshot layout; rows go out in batches of at most 200 rows and 4 MB, several in flight, under an
//! adaptive rate limit. Rows that fail for good are written to a dead-letter file. A checkpoint of
//! finished files makes a crashed restore resumable; writes are idempotent puts with the original
//! timestamps, so repeating a file is harmless.

pub mod compare;
pub mod rate;
pub mod reader;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use ots_manifest::{FileEntry, Manifest, SnapshotStore, TableMeta, verify_snapshot};
use ots_scan::KeyPart;
use ots_schema::RowReader;
use ots_schema::layout::PkColumnSchema;
use ots_wire::pb;
use ots_wire::plainbuffer::encode_put_row;
use ots_wire::types::{PkColumn, PkType, PkValue, Row, ValueType, cmp_primary_keys};
use ots_wire::{Idempotency, OtsClient, OtsError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::rate::AdaptiveRate;

/// BatchWriteRow limits (fact sheet §5.7).
pub const MAX_BATCH_ROWS: usize = 200;
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad options, or a target that cannot take the snapshot (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A pre-flight check failed: nothing was written (exit code 2).
    #[error("pre-flight check failed, nothing was written: {0}")]
    Preflight(String),
    /// The snapshot does not verify (exit code 3).
    #[error("{0}")]
    SnapshotInvalid(String),
    #[error(transparent)]
    Ots(#[from] OtsError),
    #[error(transparent)]
    Manifest(#[from] ots_manifest::ManifestError),
    #[error("reading {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{0}")]
    Io(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoIncrementMode {
    /// Keep the original key values (an auto-increment column is created as plain INTEGER).
    Keep,
    /// Let the service assign new values (not idempotent: never resumed or repeated).
    Regenerate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampMode {
    Original,
    /// Rewrite timestamps to the time of the restore, keeping each column's version order.
    Now,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Overwrite,
    /// Rows already present in the target are left alone (and counted).
    OnlyIfAbsent,
}

#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub table: String,
    pub create_table: bool,
    pub auto_increment: AutoIncrementMode,
    pub timestamps: TimestampMode,
    pub mode: WriteMode,
    /// Restore only rows with `start <= pk < end`.
    pub pk_range: Option<(Vec<PkColumn>, Vec<PkColumn>)>,
    /// Restore only these attribute columns.
    pub columns: Option<BTreeSet<String>>,
    /// Restore only files whose partition matches every `key=value` given.
    pub partitions: Vec<(String, String)>,
    /// BatchWriteRow requests in flight.
    pub concurrency: usize,
    /// Files read at once.
    pub file_concurrency: usize,
    pub rows_per_sec: Option<f64>,
    pub dead_letter: PathBuf,
    pub checkpoint: PathBuf,
    pub resume: bool,
    /// Skip the integrity check of the snapshot before writing.
    pub skip_verify: bool,
}

impl RestoreConfig {
    pub fn new(table: impl Into<String>, snapshot_id: &str) -> Self {
        let table = table.into();
        RestoreConfig {
            dead_letter: PathBuf::from(format!(
                "otsarchive-restore-{snapshot_id}-{table}.dead-letter.jsonl"
            )),
            checkpoint: PathBuf::from(format!(
                "otsarchive-restore-{snapshot_id}-{table}.checkpoint.json"
            )),
            table,
            create_table: false,
            auto_increment: AutoIncrementMode::Keep,
            timestamps: TimestampMode::Original,
            mode: WriteMode::Overwrite,
            pk_range: None,
            columns: None,
            partitions: Vec::new(),
            concurrency: 8,
            file_concurrency: 2,
            rows_per_sec: None,
            resume: false,
            skip_verify: false,
        }
    }
}

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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    snapshot_id: String,
    table: String,
    files_done: BTreeSet<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn pk_type_to_pb(t: PkType) -> pb::PrimaryKeyType {
    match t {
        PkType::Integer => pb::PrimaryKeyType::Integer,
        PkType::String => pb::PrimaryKeyType::String,
        PkType::Binary => pb::PrimaryKeyType::Binary,
    }
}

fn defined_type_to_pb(t: ValueType) -> pb::DefinedColumnType {
    match t {
        ValueType::Integer => pb::DefinedColumnType::DctInteger,
        ValueType::Double => pb::DefinedColumnType::DctDouble,
        ValueType::Boolean => pb::DefinedColumnType::DctBoolean,
        ValueType::String => pb::DefinedColumnType::DctString,
        ValueType::Binary => pb::DefinedColumnType::DctBlob,
    }
}

/// Oldest and newest cell timestamps of the snapshot (restricted to the restored columns).
fn timestamp_bounds(
    m: &Manifest,
    columns: &Option<BTreeSet<String>>,
) -> Option<(i64, i64, Vec<String>)> {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    let mut names = Vec::new();
    for (name, s) in &m.stats.columns {
        if columns.as_ref().is_some_and(|c| !c.contains(name)) {
            continue;
        }
        if let (Some(a), Some(b)) = (s.min_timestamp, s.max_timestamp) {
            lo = Some(lo.map_or(a, |l| l.min(a)));
            hi = Some(hi.map_or(b, |h| h.max(b)));
            names.push(name.clone());
        }
    }
    Some((lo?, hi?, names))
}

/// The CreateTable request that recreates the snapshot's table.
pub fn create_table_request(
    meta: &TableMeta,
    table: &str,
    auto_increment: AutoIncrementMode,
    deviation_sec: Option<i64>,
) -> pb::CreateTableRequest {
    pb::CreateTableRequest {
        table_meta: pb::TableMeta {
            table_name: table.to_string(),
            primary_key: meta
                .primary_key
                .iter()
                .map(|c| pb::PrimaryKeySchema {
                    name: c.name.clone(),
                    r#type: pk_type_to_pb(c.pk_type) as i32,
                    option: (c.auto_increment && auto_increment == AutoIncrementMode::Regenerate)
                        .then_some(pb::PrimaryKeyOption::AutoIncrement as i32),
                })
                .collect(),
            defined_column: meta
                .defined_columns
                .iter()
                .map(|c| pb::DefinedColumnSchema {
                    name: c.name.clone(),
                    r#type: defined_type_to_pb(c.value_type) as i32,
                })
                .collect(),
            ..Default::default()
        },
        reserved_throughput: pb::ReservedThroughput {
            capacity_unit: pb::CapacityUnit {
                read: Some(0),
                write: Some(0),
            },
        },
        table_options: Some(pb::TableOptions {
            time_to_live: Some(meta.time_to_live.unwrap_or(-1)),
            max_versions: Some(meta.max_versions.unwrap_or(1)),
            deviation_cell_version_in_sec: deviation_sec
                .or(meta.deviation_cell_version_in_sec)
                .or(Some(86_400)),
            allow_update: meta.allow_update,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the pre-flight found about the target.
struct Target {
    created: bool,
    auto_increment_note: Option<String>,
    warnings: Vec<String>,
}

async fn prepare_target(
    client: &OtsClient,
    m: &Manifest,
    cfg: &RestoreConfig,
) -> Result<Target, RestoreError> {
    let meta = &m.source.table;
    let has_auto = meta.primary_key.iter().any(|c| c.auto_increment);
    let now = now_ms();
    let bounds = timestamp_bounds(m, &cfg.columns);
    let mut warnings = Vec::new();
    let existing = match client.describe_table(&cfg.table).await {
        Ok(d) => Some(d),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    // Decide the target's options first (existing, or those it would be created with), and run
    // the timestamp checks before anything is created: a failed pre-flight leaves nothing behind.
    let to_create = match (&existing, cfg.create_table) {
        (Some(_), true) => {
            warnings.push(format!(
                "table '{}' already exists: --create-table did nothing; its schema was checked instead",
                cfg.table
            ));
            None
        }
        (Some(_), false) => None,
        (None, true) => {
            // A new table must accept the snapshot's original timestamps: widen its version
            // deviation to cover the oldest cell.
            let deviation = match (cfg.timestamps, &bounds) {
                (TimestampMode::Original, Some((lo, _, _))) => {
                    let needed = (now - lo) / 1000 + 86_400;
                    Some(needed.max(meta.deviation_cell_version_in_sec.unwrap_or(86_400)))
                }
                _ => None,
            };
            if let Some(d) = deviation
                && Some(d) != meta.deviation_cell_version_in_sec
            {
                warnings.push(format!(
                    "created with deviation_cell_version_in_sec = {d} (source: {:?}) so that the original timestamps are accepted",
                    meta.deviation_cell_version_in_sec
                ));
            }
            Some(create_table_request(
                meta,
                &cfg.table,
                cfg.auto_increment,
                deviation,
            ))
        }
        (None, false) => {
            return Err(RestoreError::Usage(format!(
                "table '{}' does not exist: pass --create-table to create it from the snapshot's table meta",
                cfg.table
            )));
        }
    };
    let options = match (&existing, &to_create) {
        (Some(d), _) => d.table_options,
        (None, Some(req)) => req.table_options.unwrap_or_default(),
        (None, None) => pb::TableOptions::default(),
    };
    check_timestamps(cfg, &bounds, &options, now)?;
    let (described, created) = match (existing, to_create) {
        (Some(d), _) => (d, false),
        (None, Some(req)) => {
            client.create_table(&req).await?;
            (client.describe_table(&cfg.table).await?, true)
        }
        (None, None) => {
            return Err(RestoreError::Usage(format!(
                "table '{}' does not exist",
                cfg.table
            )));
        }
    };
    // The primary key must match, name for name and type for type.
    let target_pk: Vec<(String, i32, bool)> = described
        .table_meta
        .primary_key
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.r#type,
                c.option == Some(pb::PrimaryKeyOption::AutoIncrement as i32),
            )
        })
        .collect();
    let want: Vec<(String, i32)> = meta
        .primary_key
        .iter()
        .map(|c| (c.name.clone(), pk_type_to_pb(c.pk_type) as i32))
        .collect();
    let got: Vec<(String, i32)> = target_pk.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
    if want != got {
        return Err(RestoreError::Preflight(format!(
            "the primary key of '{}' ({}) does not match the snapshot's ({})",
            cfg.table,
            pk_text_pb(&got),
            pk_text_pb(&want)
        )));
    }
    let target_auto = target_pk
        .iter()
        .find(|(_, _, a)| *a)
        .map(|(n, _, _)| n.clone());
    let auto_increment_note = match (&target_auto, cfg.auto_increment, has_auto) {
        (Some(col), AutoIncrementMode::Keep, _) => {
            return Err(RestoreError::Preflight(format!(
                "'{}' declares '{col}' AUTO_INCREMENT: the service assigns its values and refuses explicit ones, \
                 so the original keys cannot be kept. Restore into a new table with --create-table (the column \
                 is created as a plain INTEGER and keeps the original values), or pass --auto-increment regenerate",
                cfg.table
            )));
        }
        (None, AutoIncrementMode::Regenerate, true) => {
            return Err(RestoreError::Usage(format!(
                "--auto-increment regenerate needs a target whose column is AUTO_INCREMENT; '{}' has none",
                cfg.table
            )));
        }
        (Some(col), AutoIncrementMode::Regenerate, _) => Some(format!(
            "'{col}' was regenerated by the service: restored rows have NEW key values, so references to the old \
             values elsewhere no longer match, and running this restore again would add the rows again"
        )),
        (None, AutoIncrementMode::Keep, true) => {
            let col = meta
                .primary_key
                .iter()
                .find(|c| c.auto_increment)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Some(format!(
                "'{col}' was AUTO_INCREMENT in the source; in '{}' it is a plain INTEGER holding the original values \
                 (new rows written to this table must supply '{col}' themselves)",
                cfg.table
            ))
        }
        _ => None,
    };
    if cfg.auto_increment == AutoIncrementMode::Regenerate && cfg.resume {
        return Err(RestoreError::Usage(
            "--resume cannot be combined with --auto-increment regenerate: rows written before the crash would be \
             written again under new keys"
                .into(),
        ));
    }
    Ok(Target {
        created,
        auto_increment_note,
        warnings,
    })
}

/// Cells the target would refuse (version deviation) or expire at once (TTL).
fn check_timestamps(
    cfg: &RestoreConfig,
    bounds: &Option<(i64, i64, Vec<String>)>,
    opts: &pb::TableOptions,
    now: i64,
) -> Result<(), RestoreError> {
    let (TimestampMode::Original, Some((lo, hi, names))) = (cfg.timestamps, bounds) else {
        return Ok(());
    };
    let ttl = opts.time_to_live.unwrap_or(-1);
    if ttl > 0 && *lo < now - i64::from(ttl) * 1000 {
        return Err(RestoreError::Preflight(format!(
            "cells as old as {lo} ms (columns {}) would expire at once under the TTL of '{}' ({ttl} s). \
             Raise the table's TTL first, or restore with --timestamps now",
            names.join(", "),
            cfg.table
        )));
    }
    let dev = opts.deviation_cell_version_in_sec.unwrap_or(86_400);
    if *lo < now - dev * 1000 || *hi >= now + dev * 1000 {
        return Err(RestoreError::Preflight(format!(
            "'{}' accepts cell timestamps within {dev} s of now (deviation_cell_version_in_sec), but the snapshot \
             holds cells from {lo} to {hi} ms (columns {}). Raise the deviation (UpdateTable), restore into a new \
             table with --create-table (created with a wide enough deviation), or restore with --timestamps now",
            cfg.table,
            names.join(", ")
        )));
    }
    Ok(())
}

fn pk_text_pb(pk: &[(String, i32)]) -> String {
    pk.iter()
        .map(|(n, t)| format!("{n} {}", ots_scan::split::pk_type_name(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a file can hold rows of `[start, end)`, judged by its PK range.
fn file_overlaps(f: &FileEntry, range: &Option<(Vec<PkColumn>, Vec<PkColumn>)>) -> bool {
    let Some((start, end)) = range else {
        return true;
    };
    let to_cols = |parts: &[KeyPart]| -> Option<Vec<PkColumn>> {
        parts.iter().map(|p| p.to_column().ok()).collect()
    };
    let (Some(min), Some(max)) = (to_cols(&f.pk_min), to_cols(&f.pk_max)) else {
        return true;
    };
    let cmp = |a: &[PkColumn], b: &[PkColumn]| {
        cmp_primary_keys(
            a.iter().map(|c| c.value.as_ref()),
            b.iter().map(|c| c.value.as_ref()),
        )
    };
    cmp(&max, start) != std::cmp::Ordering::Less && cmp(&min, end) == std::cmp::Ordering::Less
}

/// Applies the row-level options; `None` when nothing of the row is to be written.
fn transform(mut row: Row, cfg: &RestoreConfig, auto_cols: &[usize], now: i64) -> Option<Row> {
    if let Some((start, end)) = &cfg.pk_range {
        let key = || row.primary_key.iter().map(|c| c.value.as_ref());
        let s = cmp_primary_keys(key(), start.iter().map(|c| c.value.as_ref()));
        let e = cmp_primary_keys(key(), end.iter().map(|c| c.value.as_ref()));
        if s == std::cmp::Ordering::Less || e != std::cmp::Ordering::Less {
            return None;
        }
    }
    if let Some(cols) = &cfg.columns {
        row.cells.retain(|c| cols.contains(&c.name));
    }
    // The service refuses a put without attribute columns; such a row has nothing to restore.
    if row.cells.is_empty() {
        return None;
    }
    if cfg.timestamps == TimestampMode::Now {
        // Versions of a column stay distinct and in order: newest = now, then now-1, …
        let mut k = 0i64;
        let mut prev: Option<String> = None;
        for c in &mut row.cells {
            if prev.as_deref() != Some(c.name.as_str()) {
                k = 0;
                prev = Some(c.name.clone());
            }
            c.timestamp = Some(now - k);
            k += 1;
        }
    }
    if cfg.auto_increment == AutoIncrementMode::Regenerate {
        for &i in auto_cols {
            if let Some(c) = row.primary_key.get_mut(i) {
                c.value = PkValue::AutoIncrement;
            }
        }
    }
    Some(row)
}

/// Per file being restored: (batches sent, batches acknowledged, reading finished).
type FileStates = std::sync::Mutex<HashMap<usize, (u64, u64, bool)>>;

struct WriteJob {
    file: usize,
    rows: Vec<(Row, Bytes)>,
}

/// A restore of some columns into an existing row must not wipe the row's other columns: it is an
/// UpdateRow (puts of the restored versions) instead of a PutRow, which replaces the whole row.
fn operation(cfg: &RestoreConfig) -> pb::OperationType {
    if cfg.columns.is_some() && cfg.mode == WriteMode::Overwrite {
        pb::OperationType::Update
    } else {
        pb::OperationType::Put
    }
}

fn encode_row(row: &Row, op: pb::OperationType) -> Vec<u8> {
    match op {
        pb::OperationType::Update => {
            let puts: Vec<ots_wire::types::ColumnUpdate> = row
                .cells
                .iter()
                .map(|c| ots_wire::types::ColumnUpdate::Put {
                    name: c.name.clone(),
                    value: c.value.clone(),
                    timestamp: c.timestamp,
                })
                .collect();
            ots_wire::plainbuffer::encode_update_row(&row.primary_key, &puts)
        }
        _ => encode_put_row(row),
    }
}

/// Rows that failed for good, as JSON lines.
struct DeadLetter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl DeadLetter {
    fn record(
        &mut self,
        row: &Row,
        code: &str,
        message: &str,
        source_file: &str,
    ) -> Result<(), RestoreError> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| {
                    RestoreError::Io(format!(
                        "cannot open the dead-letter file {}: {e}",
                        self.path.display()
                    ))
                })?;
            self.file = Some(f);
        }
        let line = serde_json::json!({
            "primary_key": row.primary_key.iter().map(KeyPart::from_column).collect::<Vec<_>>(),
            "code": code,
            "message": message,
            "file": source_file,
        });
        if let Some(f) = self.file.as_mut() {
            writeln!(f, "{line}")
                .map_err(|e| RestoreError::Io(format!("writing {}: {e}", self.path.display())))?;
        }
        Ok(())
    }
}

fn load_checkpoint(path: &Path, id: &str, table: &str) -> Result<Checkpoint, RestoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
                RestoreError::Usage(format!("checkpoint {} is damaged: {e}", path.display()))
            })?;
            if c.snapshot_id != id || c.table != table {
                return Err(RestoreError::Usage(format!(
                    "checkpoint {} belongs to snapshot {} → table '{}', not {id} → '{table}'",
                    path.display(),
                    c.snapshot_id,
                    c.table
                )));
            }
            Ok(c)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint {
            snapshot_id: id.into(),
            table: table.into(),
            files_done: BTreeSet::new(),
        }),
        Err(e) => Err(RestoreError::Io(format!(
            "reading checkpoint {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the checkpoint atomically (temp file + rename), so a crash never leaves half of one.
fn save_checkpoint(path: &Path, c: &Checkpoint) -> Result<(), RestoreError> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(c).map_err(|e| RestoreError::Io(e.to_string()))?;
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| RestoreError::Io(format!("writing checkpoint {}: {e}", path.display())))
}

/// Restores snapshot `id` from `store` into `cfg.table`.
pub async fn run_restore(
    client: &OtsClient,
    store: &SnapshotStore,
    id: &str,
    cfg: &RestoreConfig,
    progress: Arc<RestoreProgress>,
) -> Result<RestoreOutcome, RestoreError> {
    if cfg.concurrency == 0 || cfg.file_concurrency == 0 {
        return Err(RestoreError::Usage("concurrency must be at least 1".into()));
    }
    let manifest = store.read_manifest(id).await?;
    if !cfg.skip_verify {
        let report = verify_snapshot(store, id).await?;
        if !report.ok() {
            let i = &report.issues[0];
            return Err(RestoreError::SnapshotInvalid(format!(
                "snapshot {id} fails verification ({} problem(s); first: {}: {}); nothing was written. \
                 Run `otsarchive verify` for the full list",
                report.issues.len(),
                i.path,
                i.problem
            )));
        }
    }
    for (k, _) in &cfg.partitions {
        let known = manifest.files.iter().any(|f| f.partition.contains_key(k));
        if !known {
            return Err(RestoreError::Usage(format!(
                "the snapshot has no partition key '{k}' (partitioning: {})",
                serde_json::to_string(&manifest.partitioning).unwrap_or_default()
            )));
        }
    }
    let target = prepare_target(client, &manifest, cfg).await?;
    let mut checkpoint = if cfg.resume {
        load_checkpoint(&cfg.checkpoint, id, &cfg.table)?
    } else {
        Checkpoint {
            snapshot_id: id.into(),
            table: cfg.table.clone(),
            files_done: BTreeSet::new(),
        }
    };
    let files: Vec<FileEntry> = manifest
        .files
        .iter()
        .filter(|f| {
            cfg.partitions
                .iter()
                .all(|(k, v)| f.partition.get(k) == Some(v))
        })
        .filter(|f| file_overlaps(f, &cfg.pk_range))
        .cloned()
        .collect();
    let skipped = files
        .iter()
        .filter(|f| checkpoint.files_done.contains(&f.path))
        .count() as u64;
    let todo: Vec<(usize, FileEntry)> = files
        .iter()
        .filter(|f| !checkpoint.files_done.contains(&f.path))
        .cloned()
        .enumerate()
        .collect();
    progress
        .files_total
        .store(files.len() as u64, Ordering::Relaxed);
    progress.files_done.store(skipped, Ordering::Relaxed);

    let auto_cols: Vec<usize> = manifest
        .source
        .table
        .primary_key
        .iter()
        .enumerate()
        .filter(|(_, c)| c.auto_increment)
        .map(|(i, _)| i)
        .collect();
    let rate = Arc::new(AdaptiveRate::new(cfg.rows_per_sec));
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteJob>(cfg.concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // Per file: batches sent and batches acknowledged; a file is done when reading ended and all
    // its batches are acknowledged.
    let file_state: Arc<FileStates> = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let dead = Arc::new(tokio::sync::Mutex::new(DeadLetter {
        path: cfg.dead_letter.clone(),
        file: None,
    }));
    let paths: Arc<Vec<String>> = Arc::new(todo.iter().map(|(_, f)| f.path.clone()).collect());

    // Writers.
    let mut writers = JoinSet::new();
    for _ in 0..cfg.concurrency {
        let rx = rx.clone();
        let client = client.clone();
        let table = cfg.table.clone();
        let mode = cfg.mode;
        let rate = rate.clone();
        let progress = progress.clone();
        let file_state = file_state.clone();
        let done_tx = done_tx.clone();
        let dead = dead.clone();
        let paths = paths.clone();
        let regenerate = cfg.auto_increment == AutoIncrementMode::Regenerate;
        let op = operation(cfg);
        writers.spawn(async move {
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else {
                    return Ok::<(), RestoreError>(());
                };
                rate.acquire(job.rows.len() as f64).await;
                let condition = match mode {
                    WriteMode::Overwrite => pb::RowExistenceExpectation::Ignore,
                    WriteMode::OnlyIfAbsent => pb::RowExistenceExpectation::ExpectNotExist,
                };
                let req = pb::BatchWriteRowRequest {
                    tables: vec![pb::TableInBatchWriteRowRequest {
                        table_name: table.clone(),
                        rows: job
                            .rows
                            .iter()
                            .map(|(_, encoded)| pb::RowInBatchWriteRowRequest {
                                r#type: op as i32,
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
                let throttled_before = client.stats().throttled;
                // Puts with explicit timestamps are idempotent; regenerated keys are not.
                let idem = if regenerate {
                    Idempotency::NotIdempotent
                } else {
                    Idempotency::Idempotent
                };
                let outcome = client.batch_write_row_retrying(&req, idem).await?;
                if client.stats().throttled > throttled_before {
                    progress.throttle_events.fetch_add(1, Ordering::Relaxed);
                    rate.throttled().await;
                }
                progress
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
                    if mode == WriteMode::OnlyIfAbsent && code == "OTSConditionCheckFail" {
                        progress.rows_present.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    progress.rows_failed.fetch_add(1, Ordering::Relaxed);
                    let path = paths.get(job.file).cloned().unwrap_or_default();
                    dead.lock().await.record(row, code, message, &path)?;
                }
                progress.rows_written.fetch_add(ok, Ordering::Relaxed);
                let finished = {
                    let mut st = file_state
                        .lock()
                        .map_err(|_| RestoreError::Io("state lock poisoned".into()))?;
                    let e = st.entry(job.file).or_insert((0, 0, false));
                    e.1 += 1;
                    e.2 && e.0 == e.1
                };
                if finished {
                    let _ = done_tx.send(job.file);
                }
            }
        });
    }
    drop(done_tx);

    // Readers: files in parallel, each turned into batches of at most 200 rows / 4 MB.
    let mut readers = JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.file_concurrency));
    let schema = Arc::new(manifest.schema.clone());
    let now = now_ms();
    for (idx, f) in todo.clone() {
        let sem = sem.clone();
        let tx = tx.clone();
        let store = store.clone();
        let schema = schema.clone();
        let cfg = cfg.clone();
        let auto_cols = auto_cols.clone();
        let progress = progress.clone();
        let file_state = file_state.clone();
        let id = id.to_string();
        let op = operation(&cfg);
        let dead = dead.clone();
        readers.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let read_err = |detail: String| RestoreError::Read {
                path: f.path.clone(),
                detail,
            };
            let path = store.dest.path(&format!("{id}/{}", f.path));
            let mut stream = reader::open_batches(store.dest.store.clone(), path, f.bytes, 1024)
                .await
                .map_err(|e| read_err(e.to_string()))?;
            let mut batch: Vec<(Row, Bytes)> = Vec::new();
            let mut bytes = 0usize;
            let mut sent = 0u64;
            while let Some(rb) = stream
                .try_next()
                .await
                .map_err(|e| read_err(e.to_string()))?
            {
                let rr = RowReader::new(&schema, &rb).map_err(|e| read_err(e.to_string()))?;
                for row in rr.rows() {
                    let row = row.map_err(|e| read_err(e.to_string()))?;
                    progress.rows_read.fetch_add(1, Ordering::Relaxed);
                    let Some(row) = transform(row, &cfg, &auto_cols, now) else {
                        progress.rows_filtered.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let encoded = Bytes::from(encode_row(&row, op));
                    // No request can carry a row this large: it fails for good, visibly.
                    if encoded.len() + 64 > MAX_BATCH_BYTES {
                        progress.rows_failed.fetch_add(1, Ordering::Relaxed);
                        dead.lock()
                            .await
                            .record(
                                &row,
                                "OTSClientRowTooLarge",
                                &format!(
                                    "the row encodes to {} bytes; one write request carries at most {MAX_BATCH_BYTES}",
                                    encoded.len()
                                ),
                                &f.path,
                            )?;
                        continue;
                    }
                    if !batch.is_empty()
                        && (batch.len() >= MAX_BATCH_ROWS
                            || bytes + encoded.len() + 64 > MAX_BATCH_BYTES)
                    {
                        let rows = std::mem::take(&mut batch);
                        bytes = 0;
                        sent += 1;
                        bump_sent(&file_state, idx)?;
                        if tx.send(WriteJob { file: idx, rows }).await.is_err() {
                            return Err(RestoreError::Io("writers stopped".into()));
                        }
                    }
                    bytes += encoded.len() + 64;
                    batch.push((row, encoded));
                }
            }
            if !batch.is_empty() {
                sent += 1;
                bump_sent(&file_state, idx)?;
                if tx
                    .send(WriteJob {
                        file: idx,
                        rows: batch,
                    })
                    .await
                    .is_err()
                {
                    return Err(RestoreError::Io("writers stopped".into()));
                }
            }
            // Reading is over: the file is done once its sent batches are acknowledged.
            let mut st = file_state
                .lock()
                .map_err(|_| RestoreError::Io("state lock poisoned".into()))?;
            let e = st.entry(idx).or_insert((0, 0, false));
            e.2 = true;
            Ok::<(usize, bool), RestoreError>((idx, sent == 0 || e.0 == e.1))
        });
    }
    drop(tx);

    // Collect: reader results, finished files (checkpointed as they complete), writer results.
    let mut first_error: Option<RestoreError> = None;
    let mut readers_left = todo.len();
    let mark_done = |idx: usize, checkpoint: &mut Checkpoint| -> Result<(), RestoreError> {
        if let Some((_, f)) = todo.get(idx)
            && checkpoint.files_done.insert(f.path.clone())
        {
            progress.files_done.fetch_add(1, Ordering::Relaxed);
            save_checkpoint(&cfg.checkpoint, checkpoint)?;
        }
        Ok(())
    };
    loop {
        tokio::select! {
            r = readers.join_next(), if readers_left > 0 => {
                readers_left -= 1;
                match r {
                    Some(Ok(Ok((idx, true)))) => mark_done(idx, &mut checkpoint)?,
                    Some(Ok(Ok(_))) => {}
                    Some(Ok(Err(e))) => { first_error.get_or_insert(e); readers.abort_all(); writers.abort_all(); }
                    Some(Err(e)) if !e.is_cancelled() => { first_error.get_or_insert(RestoreError::Io(e.to_string())); }
                    _ => {}
                }
            }
            d = done_rx.recv() => {
                match d {
                    Some(idx) => mark_done(idx, &mut checkpoint)?,
                    None => break,
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
                writer_error.get_or_insert(RestoreError::Io(e.to_string()));
            }
            _ => {}
        }
    }
    if let Some(e) = writer_error.or(first_error) {
        return Err(e);
    }
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

fn bump_sent(state: &FileStates, idx: usize) -> Result<(), RestoreError> {
    let mut st = state
        .lock()
        .map_err(|_| RestoreError::Io("state lock poisoned".into()))?;
    st.entry(idx).or_insert((0, 0, false)).0 += 1;
    Ok(())
}

/// The PK schema text used in messages.
pub fn pk_text(pk: &[PkColumnSchema]) -> String {
    pk.iter()
        .map(|c| format!("{} {}", c.name, ots_schema::layout::pk_type_name(c.pk_type)))
        .collect::<Vec<_>>()
        .join(", ")
}
