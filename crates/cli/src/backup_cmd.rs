//! `otsarchive backup` and `otsarchive schema`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use ots_backup::{
    BackupConfig, BackupError, ParentChoice, Progress, StreamChoice, TimeScopeChoice, run_backup,
};
use ots_format::{Partitioning, TimeGranularity, TimeSource};
use ots_scan::SplitSize;
use ots_schema::SnapshotSchema;
use ots_writer::open_destination;

use crate::common::{CliError, DestArgs, GlobalArgs, client, human_bytes};
use crate::progress::{BackupSource, Reporter};
use crate::text::{count, per_sec, thousands};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  otsarchive backup --endpoint https://myinst.cn-hangzhou.ots.aliyuncs.com --instance myinst \\
      --table orders --to oss://my-bucket/backups --oss-region cn-hangzhou
  otsarchive backup ... --to ./backups --partition-by day:created_at:seconds
  otsarchive backup ... --to ./backups --resume 20261125T143012Z-1a2b3c4d   # after a crash

PARTITIONING (--partition-by):
  none                      files per split (default)
  column:NAME               NAME=value folders (a primary-key or attribute column)
  day:NAME:seconds|millis|iso, hour:NAME:seconds|millis|iso
                            dt=YYYY-MM-DD[/hour=HH] from a time column: an INTEGER
                            column of seconds or milliseconds since the epoch, or a
                            STRING column of ISO 8601 text (other types are refused)
  day:latest-write, hour:latest-write
                            from the row's newest cell timestamp
  hash:N                    bucket=0..N-1 from a hash of the primary key")]
pub struct BackupArgs {
    /// Table to back up.
    #[arg(long)]
    pub table: String,
    /// Destination: a folder, file://, oss://bucket/prefix, s3://, gs://, az://
    /// (default: the profile's `to`).
    #[arg(long)]
    pub to: Option<String>,
    /// Splits scanned at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Memory budget of the whole backup in MiB: pages in flight, buffered rows, row groups and
    /// upload buffers are all counted in bytes against it (a single row larger than a page is
    /// held whole, the one exception).
    #[arg(long, default_value_t = ots_backup::DEFAULT_MEMORY_MB)]
    pub memory_mb: usize,
    /// Target split size in MiB (ComputeSplitPointsBySize): smaller splits spread a table over
    /// more concurrent scanners.
    #[arg(long, default_value_t = 128)]
    pub split_size_mb: i64,
    /// Split size unit in bytes (tests use small units to get many splits).
    #[arg(long, hide = true)]
    pub split_unit_bytes: Option<i64>,
    /// Pin the snapshot schema (JSON from `otsarchive schema`) instead of inferring it.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Rows sampled per split for schema inference.
    #[arg(long, default_value_t = 2000)]
    pub sample_rows: usize,
    /// At most this many typed attribute columns; the rest go to $cells.
    #[arg(long, default_value_t = 1000)]
    pub max_typed_columns: usize,
    /// How rows are spread over folders (see below).
    #[arg(long, default_value = "none")]
    pub partition_by: String,
    /// zstd compression level (1–22).
    #[arg(long, default_value_t = 1)]
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 128 * 1024)]
    pub row_group_rows: usize,
    /// Close a row group at this size in MiB at most (the memory budget may close it sooner).
    #[arg(long, default_value_t = 64)]
    pub row_group_mb: usize,
    /// Start a new file past this size, in MiB.
    #[arg(long, default_value_t = 256)]
    pub target_file_mb: u64,
    /// Partition files open at once per split at most (the memory budget may allow fewer); with
    /// more partitions, the least recently used is closed and its buffered rows written out.
    #[arg(long, default_value_t = 8)]
    pub max_open_partitions: usize,
    /// Rows per record batch handed to the Parquet writer.
    #[arg(long, default_value_t = 8192, hide = true)]
    pub batch_rows: usize,
    /// Read capacity units per second (be gentle with a live table).
    #[arg(long)]
    pub read_cu_per_sec: Option<f64>,
    /// Resume this interrupted snapshot: splits that have a record are skipped.
    #[arg(long)]
    pub resume: Option<String>,
    /// Work on the snapshot even if another process holds a live lease on it (only when you
    /// are sure that process is gone; two processes waste work but cannot corrupt a snapshot).
    #[arg(long)]
    pub take_over: bool,
    /// Which cells by timestamp: `up-to-t` (cells dated up to the snapshot time T; cells dated
    /// after T are counted and reported as cells_after_t) or `all` (every cell, however dated).
    #[arg(long, default_value = "up-to-t", value_parser = ["up-to-t", "all"])]
    pub time_range: String,
    /// Take an incremental snapshot: every change (deletes included) since PARENT's consistency
    /// point. PARENT is a snapshot URL as `backup` prints it, a snapshot id under --to, or
    /// `latest` (the newest committed snapshot of this table under --to that captured changes).
    /// Needs the table's stream enabled since PARENT was taken.
    #[arg(long, value_name = "PARENT")]
    pub incremental_from: Option<String>,
    /// Do not capture changes even if the table has a stream enabled: the snapshot is a plain
    /// scan, with the consistency caveats of docs/FORMAT.md §9.4.
    #[arg(long, conflicts_with = "incremental_from")]
    pub no_stream: bool,
    /// How long after the consistency point a caught-up stream shard is trusted to hold every
    /// record up to it, in milliseconds (covers writes in flight and clock skew).
    #[arg(long, default_value_t = 1000)]
    pub stream_settle_ms: u64,
    /// Serve the run's counters in Prometheus text format at http://HOST:PORT/metrics while it
    /// runs (metric names: docs/OPERATIONS.md, "Metrics").
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Write the snapshot's plan (splits, schema, partitioning, snapshot time or stream position)
    /// and stop: nothing is scanned. The snapshot's URL is the last line on stdout; workers
    /// (`--resume ID --worker K/N`) scan it and `otsarchive commit URL` commits it.
    #[arg(long, conflicts_with_all = ["resume", "worker"])]
    pub plan_only: bool,
    /// Scan only worker K's share of the planned snapshot given by --resume (splits K, K+N,
    /// K+2N, …, counted from 0) and never commit: the way to spread one snapshot over N machines
    /// (a Kubernetes Indexed Job, any array job). Running a worker again redoes only its
    /// unfinished splits.
    #[arg(long, value_name = "K/N", requires = "resume")]
    pub worker: Option<String>,
    /// Sign plan.json and manifest.json with this Ed25519 seed file (`otsarchive keygen`):
    /// detached signatures `plan.json.sig` and `manifest.json.sig`, checked by
    /// `verify --sign-key-file`.
    #[arg(long, value_name = "PATH")]
    pub sign_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// `--incremental-from`: `latest`, an id, or the URL of a snapshot under `dest`.
fn parent_choice(spec: &str, dest: &ots_writer::Destination) -> Result<ParentChoice, CliError> {
    let spec = spec.trim_end_matches('/');
    if spec == "latest" {
        return Ok(ParentChoice::Latest);
    }
    if ots_format::is_snapshot_id(spec) {
        return Ok(ParentChoice::Id(spec.to_string()));
    }
    let id = spec.rsplit('/').next().unwrap_or_default();
    if ots_format::is_snapshot_id(id) && dest.url_of(id).trim_end_matches('/') == spec {
        return Ok(ParentChoice::Id(id.to_string()));
    }
    Err(CliError::Usage(format!(
        "--incremental-from '{spec}' is neither `latest`, a snapshot id, nor the URL of a snapshot under --to {} (an incremental lives beside its parent)",
        dest.url()
    )))
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Table whose schema to infer.
    #[arg(long, required_unless_present = "from", conflicts_with = "from")]
    pub table: Option<String>,
    /// Instead, print the schema of a snapshot (DEST/ID, DEST/latest, DEST/ID-PREFIX), to pin
    /// the next backup to it with --schema. With its key (an encrypted snapshot), the copy of the
    /// schema inside a data file is read and checked against the manifest's.
    #[arg(long, value_name = "SNAPSHOT")]
    pub from: Option<String>,
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
    /// Rows sampled per split.
    #[arg(long, default_value_t = 2000)]
    pub sample_rows: usize,
    /// At most this many typed attribute columns; the rest go to $cells.
    #[arg(long, default_value_t = 1000)]
    pub max_typed_columns: usize,
}

pub fn parse_partitioning(spec: &str) -> Result<Partitioning, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "--partition-by '{spec}': {why} (see `otsarchive backup --help`)"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        ["none"] => Ok(Partitioning::None),
        ["column", name] if !name.is_empty() => Ok(Partitioning::Column {
            column: name.to_string(),
        }),
        ["hash", n] => {
            let buckets: u32 = n
                .parse()
                .map_err(|_| bad("the bucket count must be a number"))?;
            if buckets == 0 {
                return Err(bad("the bucket count must be at least 1"));
            }
            Ok(Partitioning::HashBucket { buckets })
        }
        [g @ ("day" | "hour"), rest @ ..] => {
            let granularity = if *g == "day" {
                TimeGranularity::Day
            } else {
                TimeGranularity::Hour
            };
            let source = match rest {
                ["latest-write"] => TimeSource::LatestWrite,
                [col, "seconds"] => TimeSource::EpochSeconds {
                    column: col.to_string(),
                },
                [col, "millis"] => TimeSource::EpochMillis {
                    column: col.to_string(),
                },
                [col, "iso"] => TimeSource::IsoString {
                    column: col.to_string(),
                },
                _ => {
                    return Err(bad(
                        "expected day|hour:COLUMN:seconds|millis|iso or day|hour:latest-write",
                    ));
                }
            };
            Ok(Partitioning::Time {
                source,
                granularity,
            })
        }
        _ => Err(bad("unknown mode")),
    }
}

fn backup_error(e: BackupError) -> CliError {
    CliError::from(e)
}

/// A scan's Tablestore error by its kind (a missing table, refused credentials: exit 2).
fn scan_error(e: ots_scan::ScanError) -> CliError {
    match e {
        ots_scan::ScanError::Ots(o) => o.into(),
        other => CliError::Failed(other.to_string()),
    }
}

/// `n * MiB` without overflow.
fn mib(flag: &str, n: u64) -> Result<u64, CliError> {
    n.checked_mul(1024 * 1024)
        .filter(|b| *b > 0)
        .ok_or_else(|| CliError::Usage(format!("{flag} {n} is out of range")))
}

pub async fn run(g: &GlobalArgs, a: BackupArgs) -> Result<(), CliError> {
    // Everything that can be checked without reading data is checked first.
    let partitioning = parse_partitioning(&a.partition_by)?;
    if !(1..=22).contains(&a.zstd_level) {
        return Err(CliError::Usage(format!(
            "--zstd-level {} is out of range 1–22",
            a.zstd_level
        )));
    }
    if a.row_group_rows == 0 || a.target_file_mb == 0 || a.row_group_mb == 0 {
        return Err(CliError::Usage(
            "--row-group-rows, --row-group-mb and --target-file-mb must be at least 1".into(),
        ));
    }
    let pinned = match &a.schema {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("cannot read --schema {}: {e}", path.display()))
            })?;
            Some(
                SnapshotSchema::from_json(&text)
                    .map_err(|e| CliError::Usage(format!("--schema {}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let endpoint = g.endpoint.clone().unwrap_or_default();
    let instance = g.instance.clone().unwrap_or_default();
    let mut cfg = BackupConfig::new(&a.table, endpoint, instance);
    cfg.concurrency = a.concurrency;
    cfg.split_size = SplitSize {
        units: a.split_size_mb,
        unit_bytes: a.split_unit_bytes.unwrap_or(1024 * 1024),
    };
    cfg.sample_rows_per_split = a.sample_rows;
    cfg.max_typed_columns = a.max_typed_columns;
    cfg.pinned_schema = pinned;
    cfg.partitioning = partitioning;
    cfg.max_open_partitions = a.max_open_partitions;
    cfg.memory_bytes = usize::try_from(mib("--memory-mb", a.memory_mb as u64)?)
        .map_err(|_| CliError::Usage(format!("--memory-mb {} is too large", a.memory_mb)))?;
    cfg.batch_rows = a.batch_rows;
    cfg.parquet.zstd_level = a.zstd_level;
    cfg.parquet.row_group_rows = a.row_group_rows;
    cfg.parquet.row_group_bytes = usize::try_from(mib("--row-group-mb", a.row_group_mb as u64)?)
        .map_err(|_| CliError::Usage("--row-group-mb is out of range".into()))?;
    cfg.parquet.target_file_bytes = mib("--target-file-mb", a.target_file_mb)?;
    cfg.read_cu_per_sec = a.read_cu_per_sec;
    cfg.resume = a.resume.clone();
    cfg.take_over = a.take_over;
    cfg.time_scope = if a.time_range == "all" {
        TimeScopeChoice::All
    } else {
        TimeScopeChoice::UpToT
    };
    cfg.stream = if a.no_stream {
        StreamChoice::Off
    } else {
        StreamChoice::Auto
    };
    cfg.capture.settle = std::time::Duration::from_millis(a.stream_settle_ms);
    cfg.sign_key = crate::keys_cmd::signing_key(a.sign_key_file.as_deref())?;
    cfg.parquet.encryption = a.keys.encryptor(g)?;
    if a.incremental_from.is_some() && a.resume.is_some() {
        return Err(CliError::Usage(
            "--incremental-from starts a new incremental; to finish an interrupted one, run with --resume ID alone".into(),
        ));
    }
    // Every numeric option is checked before the destination folder or the table is touched.
    cfg.validate()?;
    if let Some(id) = &a.resume
        && !ots_format::is_snapshot_id(id)
    {
        return Err(CliError::Usage(format!(
            "--resume '{id}' is not a snapshot id (like 20261125T143012Z-1a2b3c4d); `otsarchive ls` lists them"
        )));
    }
    let to = g.destination(a.to.as_deref(), "--to")?;
    let mut options = a.dest.options(g)?;
    options.create_local = true;
    let dest = open_destination(&to, &options)?;
    if let Some(spec) = &a.incremental_from {
        cfg.incremental_from = Some(parent_choice(spec, &dest)?);
    }
    let client = client(g)?;
    if a.plan_only {
        let p = ots_backup::workers::plan_backup(&client, dest, &cfg).await?;
        if g.json {
            println!(
                "{}",
                serde_json::json!({
                    "snapshot_id": p.snapshot_id,
                    "url": p.url,
                    "table": a.table,
                    "splits": p.plan.splits.len(),
                    "kind": p.plan.changes.as_ref().map(|c| c.kind),
                    "plan_only": true,
                })
            );
        } else {
            if !g.quiet {
                eprintln!(
                    "planned snapshot {} of '{}': {}{}; nothing scanned yet (workers: --resume {} --worker K/N, then commit)",
                    p.snapshot_id,
                    a.table,
                    count(p.plan.splits.len() as u64, "split"),
                    if p.plan.changes.is_some() {
                        ", stream position taken (the commit captures the changes)"
                    } else {
                        ""
                    },
                    p.snapshot_id
                );
            }
            println!("{}", p.url);
        }
        return Ok(());
    }
    let worker = a
        .worker
        .as_deref()
        .map(|w| {
            w.parse::<ots_format::WorkerSlot>()
                .map_err(|e| CliError::Usage(format!("--worker {e}")))
        })
        .transpose()?;

    let progress = Arc::new(Progress::default());
    let _metrics = crate::metrics::serve_if_asked(
        a.metrics_addr.as_deref(),
        || {
            Arc::new(crate::metrics::BackupMetrics {
                progress: progress.clone(),
                client: client.clone(),
                table: a.table.clone(),
            })
        },
        g.quiet,
    )
    .await?;
    let reporter = Reporter::start(
        "backup",
        !g.quiet && !g.json,
        Arc::new(BackupSource(progress.clone())),
    );
    let started = Instant::now();
    if let Some(slot) = worker {
        let result =
            ots_backup::workers::run_worker(&client, dest, &cfg, slot, progress.clone()).await;
        reporter.finish().await;
        let o = result?;
        if g.json {
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            v["rows"] = serde_json::json!(progress.rows.load(std::sync::atomic::Ordering::Relaxed));
            v["elapsed_secs"] = serde_json::json!(started.elapsed().as_secs_f64());
            println!("{v}");
        } else {
            if !g.quiet {
                if o.already_committed {
                    eprintln!(
                        "worker {}: snapshot {} is committed already; nothing to do",
                        o.worker, o.snapshot_id
                    );
                } else {
                    eprintln!(
                        "worker {}: {} of its {} scanned ({} done before), {} in {:.1} s; not committed (otsarchive commit {})",
                        o.worker,
                        thousands(o.splits_scanned as u64),
                        count(o.splits_assigned as u64, "split"),
                        thousands(o.splits_done_before as u64),
                        count(
                            progress.rows.load(std::sync::atomic::Ordering::Relaxed),
                            "row"
                        ),
                        started.elapsed().as_secs_f64(),
                        o.url
                    );
                }
            }
            println!("{}", o.url);
        }
        return Ok(());
    }
    let result = run_backup(&client, dest, &cfg, progress.clone()).await;
    reporter.finish().await;
    let outcome = result.map_err(|e| {
        let hint = progress
            .snapshot_id
            .lock()
            .ok()
            .and_then(|id| id.clone())
            .map(|id| {
                format!(" (the splits already written are kept: run the same command with --resume {id})")
            })
            .unwrap_or_default();
        // Whatever went wrong, what was done is kept: say how to go on.
        match backup_error(e) {
            CliError::Failed(m) => CliError::Failed(format!("{m}{hint}")),
            CliError::Usage(m) if !hint.is_empty() && a.resume.is_none() => {
                CliError::Usage(format!("{m}{hint}"))
            }
            other => other,
        }
    })?;
    let m = &outcome.manifest;
    let elapsed = started.elapsed().as_secs_f64();
    if m.totals.cells_after_t > 0 && !g.quiet {
        let rows: u64 = m.splits.iter().map(|s| s.cells_after_t.rows).sum();
        eprintln!(
            "warning: {} in {} are dated after the snapshot time T ({} ms) and are NOT in this snapshot \
             (Tablestore accepts timestamps up to now + the table's deviation); back up with --time-range all to include them",
            count(m.totals.cells_after_t, "cell"),
            count(rows, "row"),
            m.time_range.t_ms
        );
    }
    if g.json {
        let summary = serde_json::json!({
            "snapshot_id": outcome.snapshot_id,
            "url": outcome.url,
            "table": a.table,
            "rows": m.totals.rows,
            "cells": m.totals.cells,
            "overflow_cells": m.totals.overflow_cells,
            "files": m.totals.files,
            "bytes": m.totals.bytes,
            "splits": m.splits.len(),
            "splits_resumed": outcome.splits_resumed,
            "snapshot_time_ms": m.time_range.t_ms,
            "time_range": m.time_range.scope,
            "cells_after_t": m.totals.cells_after_t,
            "kind": m.changes.as_ref().map(|c| c.kind),
            "consistency_point_us": m.changes.as_ref().map(|c| c.consistency_point.t_us),
            "consistency_point": m.changes.as_ref().map(|c| c.consistency_point.time.clone()),
            "parent": m.changes.as_ref().and_then(|c| c.parent.clone()),
            "base": m.changes.as_ref().map(|c| c.base.clone()),
            "changes": m.changes.as_ref().map(|c| c.counts),
            "change_files": m.changes.as_ref().map(|c| c.files.len()),
            "change_bytes": m
                .changes
                .as_ref()
                .map(|c| c.files.iter().map(|f| f.bytes).sum::<u64>()),
            "elapsed_secs": elapsed,
            "client": {
                "requests": client.stats().requests,
                "retries": client.stats().retries,
                "throttled": client.stats().throttled,
            },
        });
        println!("{summary}");
    } else {
        if !g.quiet {
            eprintln!(
                "backup: {}, {} ({} in $cells), {}, {} in {elapsed:.1} s ({} rows/s); {}{}",
                count(m.totals.rows, "row"),
                count(m.totals.cells, "cell"),
                thousands(m.totals.overflow_cells),
                count(m.totals.files, "file"),
                human_bytes(m.totals.bytes),
                per_sec(m.totals.rows, elapsed),
                count(m.splits.len() as u64, "split"),
                if outcome.splits_resumed > 0 {
                    format!(
                        " ({} committed by the interrupted run)",
                        outcome.splits_resumed
                    )
                } else {
                    String::new()
                }
            );
            if let Some(c) = &m.changes {
                eprintln!(
                    "{}: exact as of {} ({} captured: {} put, {} update, {} delete{})",
                    match c.kind {
                        ots_format::LinkKind::Full => "consistent snapshot",
                        ots_format::LinkKind::Incremental => "incremental",
                    },
                    c.consistency_point.time,
                    count(c.counts.records(), "change"),
                    thousands(c.counts.put_row),
                    thousands(c.counts.update_row),
                    thousands(c.counts.delete_row),
                    c.parent
                        .as_ref()
                        .map(|p| format!("; parent {p}, base {}", c.base))
                        .unwrap_or_default()
                );
            }
        }
        println!("{}", outcome.url);
    }
    Ok(())
}

/// `schema --from SNAPSHOT`: the snapshot's schema, as `--schema` takes it. The manifest holds it;
/// every data file holds a copy in its footer (encrypted with the file), which is read and must
/// agree when the file can be read.
async fn snapshot_schema(g: &GlobalArgs, a: &SchemaArgs, from: &str) -> Result<(), CliError> {
    let snap = crate::snapshot_name::open_snapshot(from, &a.dest, g)
        .await?
        .with_keys(a.keys.read_keys(g)?);
    let m = snap.read_manifest().await?;
    let readable = ots_manifest::ReadKeys::check(snap.keys(), m.encryption.as_ref());
    if let (Err(e), Some(_)) = (&readable, snap.keys()) {
        return Err(CliError::Usage(format!("snapshot {}: {e}", snap.id())));
    }
    let mut embedded_checked = None;
    if let (Ok(()), Some(f)) = (&readable, m.files.first()) {
        let footer = ots_manifest::read_footer(&snap, &f.path, None, f.bytes, snap.decryption())
            .await
            .map_err(|e| CliError::Mismatch(format!("{}: {e}", snap.url_of(&f.path))))?;
        let embedded = footer
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| {
                kv.iter()
                    .find(|k| k.key == ots_schema::layout::SCHEMA_METADATA_KEY)
            })
            .and_then(|k| k.value.as_deref())
            .map(ots_format::SnapshotSchema::from_json);
        match embedded {
            Some(Ok(s)) if s == m.schema => embedded_checked = Some(f.path.clone()),
            Some(Ok(_)) => {
                return Err(CliError::Mismatch(format!(
                    "{}: the schema inside the file differs from the manifest's",
                    snap.url_of(&f.path)
                )));
            }
            Some(Err(e)) => {
                return Err(CliError::Mismatch(format!(
                    "{}: the schema inside the file is not valid: {e}",
                    snap.url_of(&f.path)
                )));
            }
            None => {}
        }
    }
    if g.json {
        let out = serde_json::json!({
            "schema": m.schema,
            "snapshot_id": snap.id(),
            "checked_against_file": embedded_checked,
        });
        println!("{out}");
    } else {
        println!("{}", m.schema.to_json());
        if readable.is_err() && !g.quiet {
            eprintln!(
                "note: the schema comes from the manifest; the copy inside the encrypted data files was not read (pass --encryption-key-file to check it)"
            );
        }
    }
    Ok(())
}

pub async fn schema(g: &GlobalArgs, a: SchemaArgs) -> Result<(), CliError> {
    if let Some(from) = a.from.clone() {
        return snapshot_schema(g, &a, &from).await;
    }
    let table = a.table.clone().unwrap_or_default();
    if a.sample_rows == 0 || a.max_typed_columns == 0 {
        return Err(CliError::Usage(
            "--sample-rows and --max-typed-columns must be at least 1".into(),
        ));
    }
    let client = client(g)?;
    let described = client.describe_table(&table).await?;
    let meta = ots_format::TableMeta::from_describe(&table, &described)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let plan = ots_scan::plan_splits(&client, &table, SplitSize::default())
        .await
        .map_err(scan_error)?;
    let t = ots_format::time::unix_millis(std::time::SystemTime::now());
    let options = ots_scan::ScanOptions::up_to(t);
    let mut inferrer = ots_schema::SchemaInferrer::new();
    for split in plan.splits {
        let mut s = ots_scan::SplitScanner::new(client.clone(), &table, split, options.clone())
            .map_err(scan_error)?;
        let mut seen = 0usize;
        while seen < a.sample_rows {
            let Some(page) = s.next_page().await.map_err(scan_error)? else {
                break;
            };
            page.for_each_row::<ots_scan::ScanError>(|r| {
                if seen < a.sample_rows {
                    inferrer.observe(r);
                    seen += 1;
                }
                Ok(())
            })
            .map_err(scan_error)?;
        }
    }
    let schema = inferrer
        .finish(meta.primary_key, a.max_typed_columns)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if g.json {
        let out = serde_json::json!({
            "schema": schema,
            "sampled_rows": inferrer.rows(),
            "observations": inferrer.observations(),
        });
        println!("{out}");
    } else {
        println!("{}", schema.to_json());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_specs() {
        assert_eq!(parse_partitioning("none").unwrap(), Partitioning::None);
        assert_eq!(
            parse_partitioning("hash:16").unwrap(),
            Partitioning::HashBucket { buckets: 16 }
        );
        assert!(matches!(
            parse_partitioning("hour:ts:millis").unwrap(),
            Partitioning::Time {
                granularity: TimeGranularity::Hour,
                source: TimeSource::EpochMillis { .. }
            }
        ));
        for bad in ["", "hash:0", "hash:x", "day:ts", "weekly:x", "column:"] {
            let e = parse_partitioning(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }
}
