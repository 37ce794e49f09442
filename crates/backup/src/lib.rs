//! Backup end to end: plan (T, splits, schema) → concurrent split scans → record batches →
//! partitioned Parquet files → split commit records → manifest. Resumable: a re-run with the same
//! snapshot id reads the plan back, skips committed splits and ignores orphan files.

pub mod partition;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use ots_manifest::model::{new_snapshot_id, rand_u32, rfc3339};
use ots_manifest::store::split_record_name;
use ots_manifest::{
    DATA_DIR, FORMAT_VERSION, FileEntry, Manifest, ManifestError, PLAN_FILE, Partitioning, Plan,
    SnapshotStore, Source, SplitRecord, TableMeta, TimeRange,
};
use ots_scan::{
    KeyPart, RateLimiter, ScanError, ScanOptions, Split, SplitScanner, SplitSize, plan_splits,
};
use ots_schema::layout::{ColumnSchema, PkColumnSchema};
use ots_schema::{
    BatchBuilder, ConvertError, RowReader, SchemaInferrer, SnapshotSchema, SnapshotStats,
};
use ots_wire::pb;
use ots_wire::plainbuffer::DecodeError;
use ots_wire::types::{PkColumn, PkType, ValueType};
use ots_wire::{OtsClient, OtsError};
use ots_writer::{Destination, ParquetFileWriter, ParquetOptions, WriteError};
use tokio::task::JoinSet;

use crate::partition::{PartitionValues, partition_of, partition_path};

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
    Write(#[from] WriteError),
    #[error("converting rows: {0}")]
    Convert(#[from] ConvertError),
    #[error("decoding a GetRange page: {0}")]
    Decode(#[from] DecodeError),
    #[error("a split worker failed: {0}")]
    Worker(String),
}

impl From<ScanErrorOrConvert> for BackupError {
    fn from(e: ScanErrorOrConvert) -> Self {
        match e {
            ScanErrorOrConvert::Decode(d) => BackupError::Decode(d),
            ScanErrorOrConvert::Convert(c) => BackupError::Convert(c),
        }
    }
}

/// Errors from inside a page callback.
#[derive(Debug)]
enum ScanErrorOrConvert {
    Decode(DecodeError),
    Convert(ConvertError),
}

impl From<DecodeError> for ScanErrorOrConvert {
    fn from(e: DecodeError) -> Self {
        ScanErrorOrConvert::Decode(e)
    }
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
    /// Open partition files per split; the least recently used is closed beyond this.
    pub max_open_partitions: usize,
    pub read_cu_per_sec: Option<f64>,
    /// Resume this snapshot instead of starting a new one.
    pub resume: Option<String>,
    /// Snapshot time T in ms (default: now at the start of the backup).
    pub snapshot_time_ms: Option<i64>,
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
            read_cu_per_sec: None,
            resume: None,
            snapshot_time_ms: None,
        }
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
    /// Rows of a previous attempt's committed splits (resume).
    pub rows_skipped: AtomicU64,
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

/// Converts DescribeTable's answer into the manifest's table meta.
pub fn table_meta(table: &str, d: &pb::DescribeTableResponse) -> Result<TableMeta, BackupError> {
    let primary_key = d
        .table_meta
        .primary_key
        .iter()
        .map(|c| {
            let pk_type = match pb::PrimaryKeyType::try_from(c.r#type) {
                Ok(pb::PrimaryKeyType::Integer) => PkType::Integer,
                Ok(pb::PrimaryKeyType::String) => PkType::String,
                Ok(pb::PrimaryKeyType::Binary) => PkType::Binary,
                _ => {
                    return Err(BackupError::Usage(format!(
                        "table '{table}' has primary-key column '{}' of unsupported type {}",
                        c.name, c.r#type
                    )));
                }
            };
            Ok(PkColumnSchema {
                name: c.name.clone(),
                pk_type,
                auto_increment: c.option == Some(pb::PrimaryKeyOption::AutoIncrement as i32),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let defined_columns = d
        .table_meta
        .defined_column
        .iter()
        .filter_map(|c| {
            let t = match pb::DefinedColumnType::try_from(c.r#type).ok()? {
                pb::DefinedColumnType::DctInteger => ValueType::Integer,
                pb::DefinedColumnType::DctDouble => ValueType::Double,
                pb::DefinedColumnType::DctBoolean => ValueType::Boolean,
                pb::DefinedColumnType::DctString => ValueType::String,
                pb::DefinedColumnType::DctBlob => ValueType::Binary,
            };
            Some(ColumnSchema {
                name: c.name.clone(),
                value_type: t,
            })
        })
        .collect();
    let o = &d.table_options;
    Ok(TableMeta {
        table_name: table.to_string(),
        primary_key,
        defined_columns,
        max_versions: o.max_versions,
        time_to_live: o.time_to_live,
        deviation_cell_version_in_sec: o.deviation_cell_version_in_sec,
        allow_update: o.allow_update,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks that the partitioning refers to columns that exist (PK, defined, or in the schema).
fn check_partitioning(
    p: &Partitioning,
    meta: &TableMeta,
    schema: Option<&SnapshotSchema>,
) -> Result<(), BackupError> {
    use ots_manifest::TimeSource;
    let column = match p {
        Partitioning::Column { column } => Some(column),
        Partitioning::Time { source, .. } => match source {
            TimeSource::EpochSeconds { column }
            | TimeSource::EpochMillis { column }
            | TimeSource::IsoString { column } => Some(column),
            TimeSource::LatestWrite => None,
        },
        Partitioning::HashBucket { buckets } => {
            if *buckets == 0 {
                return Err(BackupError::Usage(
                    "hash partitioning needs at least 1 bucket".into(),
                ));
            }
            None
        }
        Partitioning::None => None,
    };
    let Some(column) = column else { return Ok(()) };
    let known = meta.primary_key.iter().any(|c| &c.name == column)
        || meta.defined_columns.iter().any(|c| &c.name == column)
        || schema.is_some_and(|s| s.columns.iter().any(|c| &c.name == column));
    if known {
        Ok(())
    } else {
        let mut names: Vec<&str> = meta.primary_key.iter().map(|c| c.name.as_str()).collect();
        if let Some(s) = schema {
            names.extend(s.columns.iter().map(|c| c.name.as_str()));
        }
        Err(BackupError::Usage(format!(
            "partition column '{column}' does not exist in table '{}' (known columns: {})",
            meta.table_name,
            names.join(", ")
        )))
    }
}

/// Reads up to `rows` rows of each split to infer the schema.
async fn infer_schema(
    client: &OtsClient,
    cfg: &BackupConfig,
    splits: &[Split],
    options: &ScanOptions,
    primary_key: Vec<PkColumnSchema>,
) -> Result<SnapshotSchema, BackupError> {
    let mut set = JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    for split in splits {
        let mut scanner = SplitScanner::new(
            client.clone(),
            cfg.table.clone(),
            split.clone(),
            options.clone(),
        )?;
        let limit = cfg.sample_rows_per_split;
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let mut inferrer = SchemaInferrer::new();
            while (inferrer.rows() as usize) < limit {
                let Some(page) = scanner.next_page().await? else {
                    break;
                };
                page.for_each_row::<ScanErrorOrConvert>(|row| {
                    if (inferrer.rows() as usize) < limit {
                        inferrer.observe(row);
                    }
                    Ok(())
                })
                .map_err(BackupError::from)?;
            }
            Ok::<_, BackupError>(inferrer)
        });
    }
    let mut all = SchemaInferrer::new();
    while let Some(r) = set.join_next().await {
        all.merge(r.map_err(|e| BackupError::Worker(e.to_string()))??);
    }
    all.finish(primary_key, cfg.max_typed_columns)
        .map_err(|e| BackupError::Usage(e.to_string()))
}

/// Runs (or resumes) a backup of `cfg.table` into `dest`.
pub async fn run_backup(
    client: &OtsClient,
    dest: Destination,
    cfg: &BackupConfig,
    progress: Arc<Progress>,
) -> Result<BackupOutcome, BackupError> {
    let store = SnapshotStore::new(dest);
    let (plan, committed) = match &cfg.resume {
        Some(id) => resume_plan(&store, id, cfg).await?,
        None => (new_plan(client, &store, cfg).await?, Vec::new()),
    };
    let id = plan.snapshot_id.clone();
    if let Ok(mut slot) = progress.snapshot_id.lock() {
        *slot = Some(id.clone());
    }
    progress
        .splits_total
        .store(plan.splits.len() as u64, Ordering::Relaxed);
    let done: std::collections::HashSet<u32> = committed.iter().map(|r| r.split.id).collect();
    for r in &committed {
        progress.splits_done.fetch_add(1, Ordering::Relaxed);
        progress
            .rows_skipped
            .fetch_add(r.stats.rows, Ordering::Relaxed);
    }
    let limiter = cfg.read_cu_per_sec.map(|r| Arc::new(RateLimiter::new(r)));
    let mut options = ScanOptions {
        time_range: (plan.time_range.start_ms, plan.time_range.end_ms),
        ..ScanOptions::up_to(plan.time_range.t_ms)
    };
    options.read_limiter = limiter;
    let plan = Arc::new(plan);
    let schema = Arc::new(plan.schema.clone());
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let mut set = JoinSet::new();
    for split in plan.splits.iter().filter(|s| !done.contains(&s.id)) {
        let ctx = SplitJob {
            client: client.clone(),
            store: store.clone(),
            plan: plan.clone(),
            schema: schema.clone(),
            split: split.clone(),
            options: options.clone(),
            cfg: cfg.clone(),
            progress: progress.clone(),
        };
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            ctx.run().await
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                set.abort_all();
                return Err(e);
            }
            Err(e) => {
                set.abort_all();
                return Err(BackupError::Worker(e.to_string()));
            }
        }
    }
    // Every split is committed: assemble the manifest from the records, in plan order.
    let records = store.split_records(&id).await?;
    let by_id: HashMap<u32, &SplitRecord> = records.iter().map(|r| (r.split.id, r)).collect();
    let ordered: Vec<SplitRecord> = plan
        .splits
        .iter()
        .map(|s| {
            by_id.get(&s.id).map(|r| (*r).clone()).ok_or_else(|| {
                BackupError::Worker(format!("split {} finished without a commit record", s.id))
            })
        })
        .collect::<Result<_, _>>()?;
    // Files of interrupted attempts are not part of the snapshot: remove them before the commit
    // point, so that readers globbing `data/` see exactly the manifest's files.
    let keep: std::collections::BTreeSet<String> = ordered
        .iter()
        .flat_map(|r| r.files.iter().map(|f| f.path.clone()))
        .collect();
    let orphans = store.delete_orphans(&id, &keep).await?;
    if orphans > 0 {
        tracing::info!(orphans, "removed data files of interrupted attempts");
    }
    let manifest = Manifest::assemble(&plan, &ordered, rfc3339(SystemTime::now()));
    store
        .put_json(&id, ots_manifest::MANIFEST_FILE, &manifest)
        .await?;
    Ok(BackupOutcome {
        url: store.dest.url_of(&id),
        snapshot_id: id,
        manifest,
        splits_resumed: done.len(),
    })
}

async fn new_plan(
    client: &OtsClient,
    store: &SnapshotStore,
    cfg: &BackupConfig,
) -> Result<Plan, BackupError> {
    let described = client.describe_table(&cfg.table).await?;
    let meta = table_meta(&cfg.table, &described)?;
    // Fail before any read when the table meta (or a pinned schema) decides; a partition column
    // outside the primary key and defined columns can only be found by the inference sample.
    let decided_by_sample = cfg.pinned_schema.is_none()
        && matches!(
            cfg.partitioning,
            Partitioning::Column { .. } | Partitioning::Time { .. }
        );
    if !decided_by_sample {
        check_partitioning(&cfg.partitioning, &meta, cfg.pinned_schema.as_ref())?;
    }
    let t_ms = cfg.snapshot_time_ms.unwrap_or_else(now_ms);
    let started_at = rfc3339(SystemTime::now());
    let split_plan = plan_splits(client, &cfg.table, cfg.split_size).await?;
    let options = ScanOptions::up_to(t_ms);
    let schema = match &cfg.pinned_schema {
        Some(s) => {
            if s.primary_key != meta.primary_key {
                return Err(BackupError::Usage(format!(
                    "the pinned schema's primary key ({}) does not match table '{}' ({})",
                    pk_text(&s.primary_key),
                    cfg.table,
                    pk_text(&meta.primary_key)
                )));
            }
            s.clone()
        }
        None => {
            infer_schema(
                client,
                cfg,
                &split_plan.splits,
                &options,
                meta.primary_key.clone(),
            )
            .await?
        }
    };
    check_partitioning(&cfg.partitioning, &meta, Some(&schema))?;
    let plan = Plan {
        format_version: FORMAT_VERSION,
        snapshot_id: new_snapshot_id(SystemTime::now()),
        tool_version: TOOL_VERSION.to_string(),
        source: Source {
            endpoint: cfg.endpoint.clone(),
            instance: cfg.instance.clone(),
            table: meta,
        },
        time_range: TimeRange {
            start_ms: 0,
            end_ms: t_ms.saturating_add(1),
            t_ms,
        },
        schema,
        partitioning: cfg.partitioning.clone(),
        splits: split_plan.splits,
        started_at,
    };
    store.put_json(&plan.snapshot_id, PLAN_FILE, &plan).await?;
    Ok(plan)
}

fn pk_text(pk: &[PkColumnSchema]) -> String {
    pk.iter()
        .map(|c| format!("{} {}", c.name, ots_schema::layout::pk_type_name(c.pk_type)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn resume_plan(
    store: &SnapshotStore,
    id: &str,
    cfg: &BackupConfig,
) -> Result<(Plan, Vec<SplitRecord>), BackupError> {
    if store.has_manifest(id).await? {
        return Err(BackupError::Usage(format!(
            "snapshot {id} is already committed (its manifest exists); nothing to resume"
        )));
    }
    let plan = store.read_plan(id).await.map_err(|e| match e {
        ManifestError::NotFound { .. } => BackupError::Usage(format!(
            "cannot resume {id}: no {PLAN_FILE} under {} (wrong --to or snapshot id?)",
            store.dest.url
        )),
        other => other.into(),
    })?;
    if plan.source.instance != cfg.instance {
        return Err(BackupError::Usage(format!(
            "snapshot {id} was taken from instance '{}', not '{}'",
            plan.source.instance, cfg.instance
        )));
    }
    if plan.source.table.table_name != cfg.table {
        return Err(BackupError::Usage(format!(
            "snapshot {id} is a backup of table '{}', not '{}'",
            plan.source.table.table_name, cfg.table
        )));
    }
    let planned: std::collections::HashSet<u32> = plan.splits.iter().map(|s| s.id).collect();
    let committed = store
        .split_records(id)
        .await?
        .into_iter()
        .filter(|r| planned.contains(&r.split.id))
        .collect();
    Ok((plan, committed))
}

struct SplitJob {
    client: OtsClient,
    store: SnapshotStore,
    plan: Arc<Plan>,
    schema: Arc<SnapshotSchema>,
    split: Split,
    options: ScanOptions,
    cfg: BackupConfig,
    progress: Arc<Progress>,
}

/// Rows of one partition of one split on their way into files.
struct PartitionSink {
    values: PartitionValues,
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

impl SplitJob {
    async fn run(self) -> Result<(), BackupError> {
        let attempt = format!("{:08x}", rand_u32());
        let mut scanner = SplitScanner::new(
            self.client.clone(),
            self.cfg.table.clone(),
            self.split.clone(),
            self.options.clone(),
        )?;
        let mut sinks: HashMap<String, PartitionSink> = HashMap::new();
        let mut files: Vec<FileEntry> = Vec::new();
        let mut file_seq = 0u32;
        let mut tick = 0u64;
        let mut stats = SnapshotStats::default();
        // Fetch the next page while this one is converted (one page ahead per split).
        let counters = scanner.counters();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let fetcher = tokio::spawn(async move {
            loop {
                let r = scanner.next_page().await;
                let end = !matches!(r, Ok(Some(_)));
                if tx.send(r).await.is_err() || end {
                    break;
                }
            }
        });
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _fetcher = AbortOnDrop(fetcher);
        while let Some(page) = rx.recv().await.transpose()?.flatten() {
            self.progress
                .bytes_scanned
                .fetch_add(page.data.len() as u64, Ordering::Relaxed);
            // Rows are routed synchronously; full batches are collected and written after.
            let mut full: Vec<String> = Vec::new();
            let (rows, cells) = page
                .for_each_row::<ScanErrorOrConvert>(|row| {
                    tick += 1;
                    let values = partition_of(&self.plan.partitioning, row);
                    let key = partition_path(&values);
                    // Look up before inserting: the key is cloned only for a new partition.
                    if !sinks.contains_key(&key) {
                        sinks.insert(
                            key.clone(),
                            PartitionSink {
                                values,
                                builder: BatchBuilder::new(self.schema.clone()),
                                file: None,
                                last_used: 0,
                            },
                        );
                    }
                    let Some(sink) = sinks.get_mut(&key) else {
                        // Inserted just above; never skip a row silently all the same.
                        return Err(ScanErrorOrConvert::Convert(ConvertError::Layout(format!(
                            "no buffer for partition '{key}'"
                        ))));
                    };
                    sink.last_used = tick;
                    sink.builder
                        .push_row(row)
                        .map_err(ScanErrorOrConvert::Convert)?;
                    if sink.builder.len() >= self.cfg.batch_rows && !full.contains(&key) {
                        full.push(key);
                    }
                    Ok(())
                })
                .map_err(BackupError::from)?;
            counters.rows.fetch_add(rows, Ordering::Relaxed);
            counters.cells.fetch_add(cells, Ordering::Relaxed);
            self.progress.rows.fetch_add(rows, Ordering::Relaxed);
            self.progress.cells.fetch_add(cells, Ordering::Relaxed);
            for key in full {
                self.flush(&mut sinks, &key, &attempt, &mut file_seq, &mut files, false)
                    .await?;
            }
            // With many partitions, rows buffered across all of them are bounded too: past the
            // budget the least recently used partitions are written out (smaller files, flat memory).
            let budget = self.cfg.max_open_partitions.max(1) * self.cfg.batch_rows.max(1);
            loop {
                let buffered: usize = sinks.values().map(|s| s.builder.len()).sum();
                if buffered <= budget {
                    break;
                }
                let Some(key) = sinks
                    .iter()
                    .filter(|(_, s)| !s.builder.is_empty())
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.flush(&mut sinks, &key, &attempt, &mut file_seq, &mut files, false)
                    .await?;
                self.limit_open_files(&mut sinks, &mut files).await?;
            }
            self.limit_open_files(&mut sinks, &mut files).await?;
        }
        let mut keys: Vec<String> = sinks.keys().cloned().collect();
        keys.sort();
        for key in keys {
            self.flush(&mut sinks, &key, &attempt, &mut file_seq, &mut files, true)
                .await?;
            if let Some(s) = sinks.get_mut(&key) {
                stats.merge(&s.builder.take_stats());
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let record = SplitRecord {
            format_version: FORMAT_VERSION,
            snapshot_id: self.plan.snapshot_id.clone(),
            split: self.split.clone(),
            attempt,
            files,
            stats,
            committed_at: rfc3339(SystemTime::now()),
        };
        self.store
            .put_json(
                &self.plan.snapshot_id,
                &split_record_name(self.split.id),
                &record,
            )
            .await?;
        self.progress.splits_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the sink's buffered rows to its files in slices of `batch_rows`, rolling to a new
    /// file whenever the current one reaches the target size; closes the last one when `last`.
    async fn flush(
        &self,
        sinks: &mut HashMap<String, PartitionSink>,
        key: &str,
        attempt: &str,
        file_seq: &mut u32,
        files: &mut Vec<FileEntry>,
        last: bool,
    ) -> Result<(), BackupError> {
        let Some(sink) = sinks.get_mut(key) else {
            return Ok(());
        };
        if !sink.builder.is_empty() {
            let batch = sink.builder.finish()?;
            let step = self.cfg.batch_rows.max(1);
            let mut offset = 0;
            while offset < batch.num_rows() {
                let slice = batch.slice(offset, step.min(batch.num_rows() - offset));
                offset += slice.num_rows();
                if sink.file.is_none() {
                    sink.file = Some(self.open_file(key, attempt, file_seq, &sink.builder)?);
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
                if f.writer.estimated_bytes() >= self.cfg.parquet.target_file_bytes
                    && let Some(f) = sink.file.take()
                {
                    files.push(self.close_file(f, &sink.values).await?);
                }
            }
        }
        if last && let Some(f) = sink.file.take() {
            files.push(self.close_file(f, &sink.values).await?);
        }
        Ok(())
    }

    fn open_file(
        &self,
        key: &str,
        attempt: &str,
        file_seq: &mut u32,
        builder: &BatchBuilder,
    ) -> Result<OpenFile, BackupError> {
        let dir = if key.is_empty() {
            DATA_DIR.to_string()
        } else {
            format!("{DATA_DIR}/{key}")
        };
        let rel = format!(
            "{dir}/part-{:05}-{attempt}-{:03}.parquet",
            self.split.id, *file_seq
        );
        *file_seq += 1;
        let object = self
            .store
            .dest
            .path(&format!("{}/{rel}", self.plan.snapshot_id));
        let writer = ParquetFileWriter::create(
            self.store.dest.store.clone(),
            object,
            rel,
            builder.arrow_schema().clone(),
            self.cfg.parquet.snapshot_properties(&self.schema)?,
        )?
        .with_row_group_bytes(self.cfg.parquet.row_group_bytes);
        Ok(OpenFile {
            writer,
            pk_min: None,
            pk_max: None,
            cells: 0,
        })
    }

    async fn close_file(
        &self,
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
            split: self.split.id,
            partition: values.iter().cloned().collect(),
            rows: written.rows,
            cells: f.cells,
            bytes: written.bytes,
            sha256: written.sha256,
            pk_min: parts(f.pk_min),
            pk_max: parts(f.pk_max),
        })
    }

    /// Keeps at most `max_open_partitions` files open: flushes and closes the least recently used.
    async fn limit_open_files(
        &self,
        sinks: &mut HashMap<String, PartitionSink>,
        files: &mut Vec<FileEntry>,
    ) -> Result<(), BackupError> {
        loop {
            let open: Vec<(u64, String)> = sinks
                .iter()
                .filter(|(_, s)| s.file.is_some())
                .map(|(k, s)| (s.last_used, k.clone()))
                .collect();
            if open.len() <= self.cfg.max_open_partitions.max(1) {
                return Ok(());
            }
            let Some((_, key)) = open.into_iter().min() else {
                return Ok(());
            };
            // Buffered rows of that partition stay buffered; only its file is closed.
            if let Some(s) = sinks.get_mut(&key)
                && let Some(f) = s.file.take()
            {
                let values = s.values.clone();
                files.push(self.close_file(f, &values).await?);
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
