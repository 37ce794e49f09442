//! Planning a backup: the table's meta, T, the splits, the schema (inferred from a bounded sample
//! or pinned), the partitioning check; or, on resume, the plan read back.

use std::sync::Arc;
use std::time::SystemTime;

use ots_format::time::{rfc3339, unix_millis};
use ots_format::{
    Partitioning, Plan, Source, TableMeta, TimeGranularity, TimeRange, TimeSource, new_snapshot_id,
    pk_text,
};
use ots_manifest::{ManifestError, Snapshot, Snapshots};
use ots_scan::{ScanOptions, Split, SplitScanner, plan_splits_for};
use ots_schema::layout::{PkColumnSchema, pk_type_name};
use ots_schema::{SchemaInferrer, SnapshotSchema};
use ots_wire::OtsClient;
use tokio::task::JoinSet;

use crate::{
    BackupConfig, BackupError, PageError, ParentChoice, StreamChoice, TOOL_VERSION, TimeScopeChoice,
};
use ots_format::time::unix_micros;
use ots_format::{CapturePlan, LinkKind, Manifest};

/// The column a partitioning reads, if any.
fn partition_column(p: &Partitioning) -> Option<&str> {
    match p {
        Partitioning::Column { column } => Some(column),
        Partitioning::Time { source, .. } => match source {
            TimeSource::EpochSeconds { column }
            | TimeSource::EpochMillis { column }
            | TimeSource::IsoString { column } => Some(column),
            TimeSource::LatestWrite => None,
        },
        Partitioning::HashBucket { .. } | Partitioning::None => None,
    }
}

/// The type of `column` (INTEGER, STRING, …): from the primary key, the defined columns, or the
/// schema (inferred or pinned); `None` when none of them has it.
fn column_type(
    column: &str,
    meta: &TableMeta,
    schema: Option<&SnapshotSchema>,
) -> Option<&'static str> {
    if let Some(c) = meta.primary_key.iter().find(|c| c.name == column) {
        return Some(pk_type_name(c.pk_type));
    }
    if let Some(c) = meta.defined_columns.iter().find(|c| c.name == column) {
        return Some(c.value_type.name());
    }
    schema?
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.value_type.name())
}

/// Checks that the partitioning refers to a column that exists (PK, defined, or in the schema)
/// and, for time partitioning, has the type the time source reads: INTEGER for seconds or
/// milliseconds since the epoch, STRING for ISO 8601 text.
pub(crate) fn check_partitioning(
    p: &Partitioning,
    meta: &TableMeta,
    schema: Option<&SnapshotSchema>,
) -> Result<(), BackupError> {
    if let Partitioning::HashBucket { buckets: 0 } = p {
        return Err(BackupError::Usage(
            "hash partitioning needs at least 1 bucket".into(),
        ));
    }
    let Some(column) = partition_column(p) else {
        return Ok(());
    };
    let Some(found) = column_type(column, meta, schema) else {
        let mut names: Vec<&str> = meta.primary_key.iter().map(|c| c.name.as_str()).collect();
        names.extend(meta.defined_columns.iter().map(|c| c.name.as_str()));
        if let Some(s) = schema {
            names.extend(s.columns.iter().map(|c| c.name.as_str()));
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));
        return Err(BackupError::Usage(format!(
            "partition column '{column}' does not exist in table '{}' (known columns: {})",
            meta.table_name,
            names.join(", ")
        )));
    };
    let Partitioning::Time {
        source,
        granularity,
    } = p
    else {
        return Ok(());
    };
    let g = match granularity {
        TimeGranularity::Day => "day",
        TimeGranularity::Hour => "hour",
    };
    let (reads, needs, instead) = match source {
        TimeSource::EpochSeconds { .. } => (
            "seconds since the epoch",
            "INTEGER",
            format!("{g}:{column}:iso reads ISO 8601 text"),
        ),
        TimeSource::EpochMillis { .. } => (
            "milliseconds since the epoch",
            "INTEGER",
            format!("{g}:{column}:iso reads ISO 8601 text"),
        ),
        TimeSource::IsoString { .. } => (
            "ISO 8601 text",
            "STRING",
            format!("{g}:{column}:seconds or {g}:{column}:millis read epoch times"),
        ),
        TimeSource::LatestWrite => return Ok(()),
    };
    if found == needs {
        return Ok(());
    }
    Err(BackupError::Usage(format!(
        "cannot partition by {g} of column '{column}' read as {reads}: that needs an {needs} \
         column, and '{column}' of table '{}' is {found} (every row would land in one folder); \
         {instead}, column:{column} partitions by its value",
        meta.table_name
    )))
}

/// Reads up to `sample_rows_per_split` rows of each split to infer the schema.
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
                page.for_each_row::<PageError>(|row| {
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
        all.merge(r??);
    }
    all.finish(primary_key, cfg.max_typed_columns)
        .map_err(|e| BackupError::Usage(e.to_string()))
}

/// Plans a new snapshot and writes its `plan.json` (create-once).
pub(crate) async fn new_plan(
    client: &OtsClient,
    snapshots: &Snapshots,
    cfg: &BackupConfig,
) -> Result<(Snapshot, Plan), BackupError> {
    let described = client.describe_table(&cfg.table).await?;
    let meta = TableMeta::from_describe(&cfg.table, &described)
        .map_err(|e| BackupError::Usage(e.to_string()))?;
    // Fail before any read when the table meta (or a pinned schema) decides; a partition column
    // outside the primary key and defined columns can only be found by the inference sample.
    let decided_by_sample = cfg.pinned_schema.is_none()
        && partition_column(&cfg.partitioning)
            .is_some_and(|c| column_type(c, &meta, None).is_none());
    if !decided_by_sample {
        check_partitioning(&cfg.partitioning, &meta, cfg.pinned_schema.as_ref())?;
    }
    let snapshot_id = new_snapshot_id(SystemTime::now());
    let stream_id = match cfg.stream {
        StreamChoice::Auto => described
            .stream_details
            .as_ref()
            .filter(|d| d.enable_stream)
            .and_then(|d| d.stream_id.clone()),
        StreamChoice::Off => None,
    };
    if stream_id.is_some() && cfg.snapshot_time_ms.is_some() {
        return Err(BackupError::Usage(
            "--snapshot-time cannot be combined with change capture: a backup of a table with a stream is exact as of the consistency point it records; pass --no-stream for a scan bounded by a snapshot time".into(),
        ));
    }
    let t_ms = cfg
        .snapshot_time_ms
        .unwrap_or_else(|| unix_millis(SystemTime::now()));
    // With change capture the scan takes every cell however dated: the replayed log accounts
    // for everything written after the start position, and nothing before it may be left out.
    let time_range = match (cfg.time_scope, &stream_id) {
        (_, Some(_)) | (TimeScopeChoice::All, _) => TimeRange::all(t_ms),
        (TimeScopeChoice::UpToT, None) => TimeRange::up_to(t_ms),
    };
    let started_at = rfc3339(SystemTime::now());
    // The stream position comes before the first read of the table (the sampling pass included).
    let changes = match stream_id {
        Some(stream_id) => {
            let start =
                ots_scan::stream::position_at(client, &stream_id, unix_micros(SystemTime::now()))
                    .await?;
            Some(CapturePlan {
                kind: LinkKind::Full,
                stream_id,
                start,
                parent: None,
                base: snapshot_id.clone(),
            })
        }
        None => None,
    };
    let split_plan = plan_splits_for(client, &cfg.table, cfg.split_size, cfg.concurrency).await?;
    let options = ScanOptions {
        time_range: (time_range.start_ms, time_range.end_ms),
        ..ScanOptions::up_to(t_ms)
    };
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
    let encryption = cfg.parquet.encryption.as_ref().map(|e| e.info());
    let plan = Plan {
        format_version: ots_format::format_version_for(changes.is_some(), encryption.is_some()),
        snapshot_id,
        tool_version: TOOL_VERSION.to_string(),
        source: Source {
            endpoint: cfg.endpoint.clone(),
            instance: cfg.instance.clone(),
            table: meta,
        },
        time_range,
        schema,
        partitioning: cfg.partitioning.clone(),
        splits: split_plan.splits,
        started_at,
        changes,
        encryption,
    };
    let snapshot = snapshots.snapshot(&plan.snapshot_id);
    snapshot.create_plan(&plan).await?;
    Ok((snapshot, plan))
}

/// The committed snapshot an incremental continues from.
async fn parent_manifest(
    snapshots: &Snapshots,
    cfg: &BackupConfig,
    parent: &ParentChoice,
) -> Result<Manifest, BackupError> {
    let of_this_table =
        |m: &Manifest| m.source.table.table_name == cfg.table && m.source.instance == cfg.instance;
    match parent {
        ParentChoice::Id(id) => {
            let snapshot = snapshots.snapshot(id);
            let manifest = snapshot.read_manifest().await.map_err(|e| match e {
                ManifestError::NotFound { .. } => BackupError::Usage(format!(
                    "the parent snapshot {id} is not committed under {} (no manifest.json): name a committed snapshot, or `latest`",
                    snapshots.url()
                )),
                other => other.into(),
            })?;
            if !of_this_table(&manifest) {
                return Err(BackupError::Usage(format!(
                    "the parent snapshot {id} is a backup of table '{}' on instance '{}', not '{}' on '{}'",
                    manifest.source.table.table_name,
                    manifest.source.instance,
                    cfg.table,
                    cfg.instance
                )));
            }
            Ok(manifest)
        }
        ParentChoice::Latest => {
            let newest = snapshots
                .newest_committed(|m| of_this_table(m) && m.changes.is_some())
                .await?;
            if let Some((_, manifest)) = newest {
                return Ok(manifest);
            }
            Err(BackupError::Usage(format!(
                "--incremental-from latest: no committed snapshot of table '{}' with captured changes under {}; take a full snapshot first (with the table's stream enabled)",
                cfg.table,
                snapshots.url()
            )))
        }
    }
}

/// Plans an incremental snapshot: every change from the parent's consistency point to a new one.
/// Refuses (before writing anything) a parent without change capture, a stream that changed
/// since, and a parent position the stream has trimmed.
pub(crate) async fn new_incremental_plan(
    client: &OtsClient,
    snapshots: &Snapshots,
    cfg: &BackupConfig,
    parent: &ParentChoice,
) -> Result<(Snapshot, Plan), BackupError> {
    let parent = parent_manifest(snapshots, cfg, parent).await?;
    let pid = parent.snapshot_id.clone();
    let Some(parent_changes) = &parent.changes else {
        return Err(BackupError::Usage(format!(
            "the parent snapshot {pid} captured no changes (the table had no stream enabled, or --no-stream): an incremental needs a parent with a consistency point; take a full snapshot with the table's stream enabled"
        )));
    };
    let described = client.describe_table(&cfg.table).await?;
    let meta = TableMeta::from_describe(&cfg.table, &described)
        .map_err(|e| BackupError::Usage(e.to_string()))?;
    if meta.primary_key != parent.source.table.primary_key {
        return Err(BackupError::Usage(format!(
            "table '{}' now has primary key ({}), the parent snapshot {pid} has ({}): take a full snapshot",
            cfg.table,
            pk_text(&meta.primary_key),
            pk_text(&parent.source.table.primary_key)
        )));
    }
    let current = described
        .stream_details
        .as_ref()
        .filter(|d| d.enable_stream)
        .and_then(|d| d.stream_id.clone());
    if current.as_deref() != Some(parent_changes.stream_id.as_str()) {
        return Err(BackupError::Usage(format!(
            "table '{}' no longer has the stream the parent snapshot {pid} read ({}; now {}): the changes since the parent cannot be read; take a full snapshot",
            cfg.table,
            parent_changes.stream_id,
            current.as_deref().unwrap_or("no stream")
        )));
    }
    ots_scan::stream::check_readable(client, &parent_changes.consistency_point).await?;
    let now = SystemTime::now();
    let encryption = cfg.parquet.encryption.as_ref().map(|e| e.info());
    let plan = Plan {
        format_version: ots_format::format_version_for(true, encryption.is_some()),
        snapshot_id: new_snapshot_id(now),
        tool_version: TOOL_VERSION.to_string(),
        source: Source {
            endpoint: cfg.endpoint.clone(),
            instance: cfg.instance.clone(),
            table: meta,
        },
        time_range: TimeRange::all(unix_millis(now)),
        schema: parent.schema.clone(),
        partitioning: Partitioning::None,
        splits: Vec::new(),
        started_at: rfc3339(now),
        changes: Some(CapturePlan {
            kind: LinkKind::Incremental,
            stream_id: parent_changes.stream_id.clone(),
            start: parent_changes.consistency_point.clone(),
            parent: Some(pid),
            base: parent_changes.base.clone(),
        }),
        encryption,
    };
    let snapshot = snapshots.snapshot(&plan.snapshot_id);
    snapshot.create_plan(&plan).await?;
    Ok((snapshot, plan))
}

/// Reads back the plan of a snapshot to resume, refusing a committed one or another table's.
pub(crate) async fn resume_plan(
    snapshot: &Snapshot,
    cfg: &BackupConfig,
) -> Result<Plan, BackupError> {
    let id = snapshot.id();
    if snapshot.has_manifest().await? {
        return Err(BackupError::Usage(format!(
            "snapshot {id} is already committed (its manifest exists); nothing to resume"
        )));
    }
    let plan = snapshot.read_plan().await.map_err(|e| match e {
        ManifestError::NotFound { url, .. } => BackupError::Usage(format!(
            "cannot resume {id}: no plan.json under {url} (wrong --to or snapshot id?)"
        )),
        other => other.into(),
    })?;
    if plan.snapshot_id != id {
        return Err(BackupError::Usage(format!(
            "{id}/plan.json names snapshot '{}': the folder was copied or renamed; start a new backup",
            plan.snapshot_id
        )));
    }
    if plan.format_version < ots_format::SCAN_FORMAT_VERSION {
        return Err(BackupError::Usage(format!(
            "snapshot {id} was started by an older otsarchive (format {}); start a new backup instead of resuming it",
            plan.format_version
        )));
    }
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
    check_resume_encryption(&plan, cfg)?;
    Ok(plan)
}

/// A resumed run (or a commit that writes change files) must encrypt exactly as the plan says:
/// one snapshot never mixes plaintext files with encrypted ones, or files under two master keys.
pub(crate) fn check_resume_encryption(plan: &Plan, cfg: &BackupConfig) -> Result<(), BackupError> {
    let id = &plan.snapshot_id;
    let given = cfg.parquet.encryption.as_ref().map(|e| e.key_id());
    match (&plan.encryption, given) {
        (None, None) => Ok(()),
        (Some(p), Some(g)) if p.master_key_id == g => Ok(()),
        (Some(p), Some(g)) => Err(BackupError::Usage(format!(
            "snapshot {id} is encrypted under master key {}, but --encryption-key-file gives {g}: resume or commit it with the same key",
            p.master_key_id
        ))),
        (Some(p), None) => Err(BackupError::Usage(format!(
            "snapshot {id} is encrypted under master key {}: resume or commit it with --encryption-key-file (the same key)",
            p.master_key_id
        ))),
        (None, Some(_)) => Err(BackupError::Usage(format!(
            "snapshot {id} was started without encryption, but a master key was given (--encryption-key-file, OTSARCHIVE_ENCRYPTION_KEY[_FILE] or the profile): continue it without one, or start a new backup"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_schema::layout::{ColumnSchema, LAYOUT_VERSION};
    use ots_wire::types::{PkType, ValueType};

    fn meta() -> TableMeta {
        TableMeta {
            table_name: "t".into(),
            primary_key: vec![
                PkColumnSchema {
                    name: "user_id".into(),
                    pk_type: PkType::String,
                    auto_increment: false,
                },
                PkColumnSchema {
                    name: "seq".into(),
                    pk_type: PkType::Integer,
                    auto_increment: false,
                },
            ],
            defined_columns: vec![ColumnSchema {
                name: "created".into(),
                value_type: ValueType::Integer,
            }],
            max_versions: Some(1),
            time_to_live: Some(-1),
            deviation_cell_version_in_sec: Some(86_400),
            allow_update: Some(true),
            indexes: vec![],
        }
    }

    fn time(source: TimeSource) -> Partitioning {
        Partitioning::Time {
            source,
            granularity: TimeGranularity::Day,
        }
    }

    #[test]
    fn time_partitions_need_the_type_their_source_reads() {
        let schema = SnapshotSchema {
            layout_version: LAYOUT_VERSION,
            primary_key: meta().primary_key,
            columns: vec![
                ColumnSchema {
                    name: "city".into(),
                    value_type: ValueType::String,
                },
                ColumnSchema {
                    name: "score".into(),
                    value_type: ValueType::Double,
                },
            ],
        };
        let check = |p: Partitioning| check_partitioning(&p, &meta(), Some(&schema));
        let col = |c: &str| c.to_string();
        // Right types, from the primary key, the defined columns and the schema.
        check(time(TimeSource::EpochMillis { column: col("seq") })).unwrap();
        check(time(TimeSource::EpochSeconds {
            column: col("created"),
        }))
        .unwrap();
        check(time(TimeSource::IsoString {
            column: col("city"),
        }))
        .unwrap();
        check(time(TimeSource::IsoString {
            column: col("user_id"),
        }))
        .unwrap();
        check(time(TimeSource::LatestWrite)).unwrap();
        check(Partitioning::Column {
            column: col("score"),
        })
        .unwrap();
        // Wrong types are usage errors naming the column's type.
        for (p, found) in [
            (
                time(TimeSource::EpochSeconds {
                    column: col("city"),
                }),
                "STRING",
            ),
            (
                time(TimeSource::EpochMillis {
                    column: col("user_id"),
                }),
                "STRING",
            ),
            (
                time(TimeSource::EpochSeconds {
                    column: col("score"),
                }),
                "DOUBLE",
            ),
            (
                time(TimeSource::IsoString { column: col("seq") }),
                "INTEGER",
            ),
        ] {
            let e = check(p.clone()).unwrap_err();
            assert_eq!(e.kind(), ots_format::ErrorKind::Usage, "{p:?}");
            assert!(e.to_string().contains(&format!("is {found}")), "{e}");
        }
        let e = check(time(TimeSource::EpochSeconds {
            column: col("city"),
        }))
        .unwrap_err();
        assert!(e.to_string().contains("day:city:iso"), "{e}");
        // Unknown columns are named with the known ones.
        let e = check(Partitioning::Column {
            column: col("nope"),
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("user_id, seq, created, city, score"),
            "{e}"
        );
    }
}
