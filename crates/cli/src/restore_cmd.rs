//! `otsarchive restore`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use ots_restore::{
    AutoIncrementMode, FileCounts, RestoreConfig, RestoreError, RestorePlan, RestoreProgress,
    TimestampMode, WriteMode, plan_restore, retry_dead_letter, retry_output_path, run_restore,
};
use ots_schema::layout::PkColumnSchema;
use ots_wire::types::{PkColumn, PkType, PkValue};

use crate::common::{CliError, DestArgs, GlobalArgs, client, human_bytes};
use crate::progress::{Reporter, RestoreSource};
use crate::snapshot_name::open_snapshot;
use crate::text::{count, per_sec, plural, thousands};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AutoIncrementArg {
    Keep,
    Regenerate,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TimestampsArg {
    Original,
    Now,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Overwrite,
    OnlyIfAbsent,
}

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  # into a new table, created from the snapshot's table meta
  otsarchive restore --from ./backups/20261125T143012Z-1a2b3c4d --endpoint URL --instance inst \\
      --table orders_restored --create-table
  # what would it create, write and skip? (checks everything, writes nothing)
  otsarchive restore --from ... --table orders --dry-run
  # gently, into a live table, without touching rows that exist
  otsarchive restore --from ... --table orders --mode only-if-absent --rows-per-sec 2000
  # part of it: a key range, some columns, one partition
  otsarchive restore --from ... --table t --start-key user_id=u100 --end-key user_id=u200 \\
      --columns name,age --partition dt=2026-11-24
  # after a crash
  otsarchive restore --from ... --table t --resume
  # send the rows of a dead-letter file again (no snapshot needed: each line holds the whole row)
  otsarchive restore --retry-dead-letter otsarchive-restore-ID-t.dead-letter.jsonl --table t

Refused before anything is written (exit 2): a table that holds rows without --mode; a target
whose max_versions would hide versions of the snapshot (--allow-version-loss accepts it) or whose
TTL would expire cells at once (--allow-expiry accepts it); a --partition, key range or --columns
that selects nothing.
Rows that fail for good are written whole to the dead-letter file (JSON lines) and the exit code
is 1; a new (not resumed) restore refuses to start while that file holds rows of an earlier run.
Rows over 4 MB or 1,024 cells are written as a PutRow followed by UpdateRows.")]
pub struct RestoreArgs {
    /// Snapshot URL: DEST/SNAPSHOT_ID (not needed with --retry-dead-letter).
    #[arg(long, required_unless_present = "retry_dead_letter")]
    pub from: Option<String>,
    /// Target table.
    #[arg(long)]
    pub table: String,
    /// Create the target from the snapshot's table meta if it does not exist.
    #[arg(long)]
    pub create_table: bool,
    /// AUTO_INCREMENT keys: keep the original values (the column is created as a plain INTEGER)
    /// or let the service assign new ones.
    #[arg(long, value_enum, default_value = "keep")]
    pub auto_increment: AutoIncrementArg,
    /// Cell timestamps: the original ones, or the time of the restore (version order kept).
    #[arg(long, value_enum, default_value = "original")]
    pub timestamps: TimestampsArg,
    /// What happens to rows the target already has: overwrite them (the snapshot's row replaces
    /// the table's row with the same key), or write only rows that are absent. Required when the
    /// target exists and holds rows; a new or empty table is written as with overwrite.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Accept a target whose max_versions is lower than the most versions of one column one row
    /// of the snapshot holds: the older versions are hidden by the service.
    #[arg(long)]
    pub allow_version_loss: bool,
    /// Accept cells older than the target's TTL: they expire as soon as they are written.
    #[arg(long)]
    pub allow_expiry: bool,
    /// Run every check and print what the restore would create, write and skip; write nothing
    /// (no table, no checkpoint, no dead-letter file, no row).
    #[arg(long)]
    pub dry_run: bool,
    /// First primary key to restore, e.g. `user_id=u100,seq=0` (a prefix is allowed).
    #[arg(long)]
    pub start_key: Option<String>,
    /// Primary key to stop before (exclusive), same form as --start-key.
    #[arg(long)]
    pub end_key: Option<String>,
    /// Restore only these attribute columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Restore only files of this partition, e.g. dt=2026-11-24 (repeatable).
    #[arg(long)]
    pub partition: Vec<String>,
    /// BatchWriteRow requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Files read at once.
    #[arg(long, default_value_t = 2)]
    pub file_concurrency: usize,
    /// Cap on rows written per second (throttling lowers the rate further, adaptively).
    #[arg(long)]
    pub rows_per_sec: Option<f64>,
    /// Where rows that fail for good are written (JSON lines, each the whole row). A new restore
    /// refuses a file that holds rows already; a --resume appends to it.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Send the rows of this dead-letter file again into --table (which must exist), each with
    /// the operation and mode it was written with (--mode overrides the mode); no snapshot is
    /// read. Rows that fail again go to a new file (--dead-letter, or FILE's name with
    /// `.retry-<time>`).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "create_table", "dry_run", "resume", "checkpoint", "start_key", "end_key", "columns",
        "partition", "skip_verify", "allow_version_loss", "allow_expiry", "metrics_addr", "worker",
    ])]
    pub retry_dead_letter: Option<PathBuf>,
    /// Memory the restore's data may hold, in MiB (32 to 1048576): half for files being read
    /// (row groups and decoded batches), half for write requests queued and in flight.
    #[arg(long, default_value_t = ots_restore::DEFAULT_MEMORY_MB)]
    pub memory_mb: usize,
    /// Checkpoint of finished files (for --resume).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue a crashed restore from its checkpoint: files it lists as done are skipped. Refused
    /// when the target or a row option (--columns, --start-key, --end-key, --partition, --mode,
    /// --timestamps, --auto-increment) differs from the interrupted run's.
    #[arg(long)]
    pub resume: bool,
    /// Do not verify the snapshot's integrity before writing.
    #[arg(long)]
    pub skip_verify: bool,
    /// Restore the table as it was at this instant: RFC 3339 (`2026-12-06T10:00:00Z`, fractions
    /// allowed) or milliseconds since the epoch. It must lie inside the chain ending at --from:
    /// between the base's consistency point and --from's.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// With --create-table: append SUFFIX to the name of every secondary index created (index
    /// names are unique in an instance, so a copy beside the source table needs other names).
    #[arg(long, value_name = "SUFFIX")]
    pub index_suffix: Option<String>,
    /// Serve the run's counters in Prometheus text format at http://HOST:PORT/metrics while it
    /// runs (metric names: docs/OPERATIONS.md, "Metrics").
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "dry_run")]
    pub metrics_addr: Option<String>,
    /// Restore only worker K's share of the files (of N, counted from 0; shares balanced by
    /// bytes, the same on every machine), with its own checkpoint and dead-letter file: N
    /// processes restore one snapshot side by side (a Kubernetes Indexed Job, any array job).
    /// With --create-table, a worker creates the table if it is absent and takes one another
    /// worker created; the rows other workers wrote are expected there.
    #[arg(long, value_name = "K/N")]
    pub worker: Option<String>,
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// `--as-of`: RFC 3339 or milliseconds since the epoch, as microseconds.
pub fn parse_as_of(text: &str) -> Result<i64, CliError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| CliError::Usage(format!("--as-of {t}: out of range")));
    }
    ots_format::time::parse_rfc3339(t)
        .map(ots_format::time::unix_micros)
        .map_err(|_| {
            CliError::Usage(format!(
                "--as-of '{t}' is neither RFC 3339 (like 2026-12-06T10:00:00Z or 2026-12-06T10:00:00.123456Z) nor milliseconds since the epoch"
            ))
        })
}

/// Parses `name=value,name=value` against the primary-key schema; missing trailing columns are
/// INF_MIN (so a prefix selects everything from / up to that prefix).
pub fn parse_key(text: &str, pk: &[PkColumnSchema], flag: &str) -> Result<Vec<PkColumn>, CliError> {
    let bad = |why: String| CliError::Usage(format!("{flag} '{text}': {why}"));
    let parts: Vec<(&str, &str)> = text
        .split(',')
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| bad(format!("'{p}' is not name=value")))
        })
        .collect::<Result<_, _>>()?;
    if parts.len() > pk.len() {
        return Err(bad(format!("the key has only {} columns", pk.len())));
    }
    let mut out = Vec::new();
    for (i, c) in pk.iter().enumerate() {
        let value = match parts.get(i) {
            Some((name, v)) => {
                if *name != c.name {
                    return Err(bad(format!(
                        "column {} of the key is '{}', not '{name}'",
                        i + 1,
                        c.name
                    )));
                }
                match c.pk_type {
                    PkType::Integer => PkValue::Integer(
                        v.parse()
                            .map_err(|_| bad(format!("'{v}' is not an integer for '{name}'")))?,
                    ),
                    PkType::String => PkValue::String(v.to_string()),
                    PkType::Binary => PkValue::Binary(
                        hex_decode(v)
                            .ok_or_else(|| bad(format!("'{v}' is not hex for BINARY '{name}'")))?,
                    ),
                }
            }
            None => PkValue::InfMin,
        };
        out.push(PkColumn::new(&c.name, value));
    }
    Ok(out)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A restore or comparison error becomes an exit code by its kind (see `CliError::from_kind`).
impl From<RestoreError> for CliError {
    fn from(e: RestoreError) -> Self {
        CliError::from_kind(e.kind(), e.to_string())
    }
}

fn write_mode(m: Option<ModeArg>) -> Option<WriteMode> {
    m.map(|m| match m {
        ModeArg::Overwrite => WriteMode::Overwrite,
        ModeArg::OnlyIfAbsent => WriteMode::OnlyIfAbsent,
    })
}

pub async fn run(g: &GlobalArgs, a: RestoreArgs) -> Result<(), CliError> {
    if let Some(input) = a.retry_dead_letter.clone() {
        return run_retry(g, a, &input).await;
    }
    let Some(from) = a.from.as_deref() else {
        return Err(CliError::Usage(
            "--from DEST/SNAPSHOT_ID is required (or --retry-dead-letter FILE)".into(),
        ));
    };
    let snap = open_snapshot(from, &a.dest, g)
        .await?
        .with_keys(a.keys.read_keys(g)?);
    let id = snap.id().to_string();
    let manifest = snap.read_manifest().await?;
    let client = client(g)?;
    let mut cfg = RestoreConfig::new(&a.table, &id);
    cfg.create_table = a.create_table;
    cfg.auto_increment = match a.auto_increment {
        AutoIncrementArg::Keep => AutoIncrementMode::Keep,
        AutoIncrementArg::Regenerate => AutoIncrementMode::Regenerate,
    };
    cfg.timestamps = match a.timestamps {
        TimestampsArg::Original => TimestampMode::Original,
        TimestampsArg::Now => TimestampMode::Now,
    };
    cfg.mode = write_mode(a.mode);
    cfg.allow_version_loss = a.allow_version_loss;
    cfg.allow_expiry = a.allow_expiry;
    let pk = &manifest.source.table.primary_key;
    cfg.pk_range = match (&a.start_key, &a.end_key) {
        (None, None) => None,
        (s, e) => {
            let start = match s {
                Some(s) => parse_key(s, pk, "--start-key")?,
                None => pk
                    .iter()
                    .map(|c| PkColumn::new(&c.name, PkValue::InfMin))
                    .collect(),
            };
            let end = match e {
                Some(e) => parse_key(e, pk, "--end-key")?,
                None => pk
                    .iter()
                    .map(|c| PkColumn::new(&c.name, PkValue::InfMax))
                    .collect(),
            };
            Some((start, end))
        }
    };
    // Columns the snapshot does not hold are refused by the restore's own check.
    if let Some(cols) = &a.columns {
        cfg.columns = Some(cols.iter().cloned().collect::<BTreeSet<_>>());
    }
    cfg.partitions = a
        .partition
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--partition '{p}' is not key=value")))
        })
        .collect::<Result<_, _>>()?;
    cfg.concurrency = a.concurrency;
    cfg.file_concurrency = a.file_concurrency;
    cfg.rows_per_sec = a.rows_per_sec;
    if let Some(w) = &a.worker {
        let slot: ots_format::WorkerSlot = w
            .parse()
            .map_err(|e| CliError::Usage(format!("--worker {e}")))?;
        // Each worker keeps its own journal and dead letters.
        let suffix = format!("worker-{}-of-{}", slot.index, slot.count);
        cfg.checkpoint = PathBuf::from(format!(
            "otsarchive-restore-{id}-{}-{suffix}.checkpoint.json",
            a.table
        ));
        cfg.dead_letter = PathBuf::from(format!(
            "otsarchive-restore-{id}-{}-{suffix}.dead-letter.jsonl",
            a.table
        ));
        cfg.worker = Some(slot);
    }
    if let Some(p) = a.dead_letter {
        cfg.dead_letter = p;
    }
    if let Some(p) = a.checkpoint {
        cfg.checkpoint = p;
    }
    cfg.resume = a.resume;
    cfg.skip_verify = a.skip_verify;
    cfg.memory_mb = a.memory_mb;
    cfg.as_of_us = a.as_of.as_deref().map(parse_as_of).transpose()?;
    cfg.index_suffix = a.index_suffix.clone();

    if a.dry_run {
        let plan = plan_restore(&client, &snap, &cfg).await?;
        print_plan(&plan, g);
        return Ok(());
    }
    let progress = Arc::new(RestoreProgress::default());
    let _metrics = crate::metrics::serve_if_asked(
        a.metrics_addr.as_deref(),
        || {
            Arc::new(crate::metrics::RestoreMetrics {
                progress: progress.clone(),
                client: client.clone(),
                table: a.table.clone(),
            })
        },
        g.quiet,
    )
    .await?;
    let reporter = Reporter::start(
        "restore",
        !g.quiet && !g.json,
        Arc::new(RestoreSource::new(progress.clone())),
    );
    let started = Instant::now();
    let result = run_restore(&client, &snap, &cfg, progress.clone()).await;
    reporter.finish().await;
    let outcome = result?;
    let elapsed = started.elapsed().as_secs_f64();
    if g.json {
        let mut v = serde_json::to_value(&outcome).unwrap_or_default();
        v["elapsed_secs"] = serde_json::json!(elapsed);
        println!("{v}");
    } else if !g.quiet {
        for w in &outcome.warnings {
            eprintln!("note: {w}");
        }
        if let Some(n) = &outcome.auto_increment_note {
            eprintln!("note: {n}");
        }
        eprintln!(
            "restore: {} written into '{}'{} in {:.1}s ({} rows/s); {} already present, {} filtered out, \
             {} failed; {}, {}{}",
            count(outcome.rows_written, "row"),
            outcome.table,
            if outcome.table_created {
                " (created)"
            } else {
                ""
            },
            elapsed,
            per_sec(outcome.rows_written, elapsed),
            thousands(outcome.rows_present),
            thousands(outcome.rows_filtered),
            thousands(outcome.rows_failed),
            plural(outcome.row_retries, "row retry", "row retries"),
            count(outcome.throttle_events, "throttling event"),
            if outcome.files_skipped_by_checkpoint > 0 {
                format!(
                    "; {} already done by the interrupted run",
                    count(outcome.files_skipped_by_checkpoint, "file")
                )
            } else {
                String::new()
            }
        );
        if let (Some(c), Some(at)) = (&outcome.changes, &outcome.restored_as_of) {
            eprintln!(
                "restore: {} replayed from {} ({}); the table is as of {at}{}",
                count(c.changes_applied, "change"),
                count(c.change_files, "change file"),
                if outcome.chain.len() > 1 {
                    format!("chain {}", outcome.chain.join(" → "))
                } else {
                    format!("snapshot {}", outcome.snapshot_id)
                },
                if c.changes_after_as_of > 0 {
                    format!(" ({} after it skipped)", thousands(c.changes_after_as_of))
                } else {
                    String::new()
                }
            );
        }
    }
    if outcome.rows_failed > 0 {
        return Err(CliError::Failed(format!(
            "{} could not be restored; listed in {}",
            plural(outcome.rows_failed, "row", "rows"),
            cfg.dead_letter.display()
        )));
    }
    // A finished restore needs no checkpoint.
    let _ = std::fs::remove_file(&cfg.checkpoint);
    Ok(())
}

/// `--retry-dead-letter FILE`: the rows of a dead-letter file, sent again.
async fn run_retry(
    g: &GlobalArgs,
    a: RestoreArgs,
    input: &std::path::Path,
) -> Result<(), CliError> {
    let client = client(g)?;
    let mut cfg = RestoreConfig::new(&a.table, "retry");
    cfg.concurrency = a.concurrency;
    cfg.file_concurrency = a.file_concurrency;
    cfg.rows_per_sec = a.rows_per_sec;
    cfg.memory_mb = a.memory_mb;
    cfg.dead_letter = a
        .dead_letter
        .clone()
        .unwrap_or_else(|| retry_output_path(input));
    if !g.quiet && !g.json && a.from.is_some() {
        eprintln!(
            "note: --from is not read with --retry-dead-letter: each line of {} holds the whole row",
            input.display()
        );
    }
    let progress = Arc::new(RestoreProgress::default());
    let reporter = Reporter::start(
        "retry",
        !g.quiet && !g.json,
        Arc::new(RestoreSource::new(progress.clone())),
    );
    let started = Instant::now();
    let result = retry_dead_letter(&client, &cfg, input, write_mode(a.mode), progress).await;
    reporter.finish().await;
    let outcome = result?;
    let elapsed = started.elapsed().as_secs_f64();
    if g.json {
        let mut v = serde_json::to_value(&outcome).unwrap_or_default();
        v["elapsed_secs"] = serde_json::json!(elapsed);
        println!("{v}");
    } else if !g.quiet {
        for w in &outcome.warnings {
            eprintln!("note: {w}");
        }
        eprintln!(
            "retry: {} of {} from {} written into '{}' in {:.1}s; {} already present, {} failed",
            thousands(outcome.rows_written),
            count(outcome.rows, "row"),
            input.display(),
            outcome.table,
            elapsed,
            thousands(outcome.rows_present),
            thousands(outcome.rows_failed),
        );
    }
    if outcome.rows_failed > 0 {
        return Err(CliError::Failed(format!(
            "{} could not be restored again; listed in {}",
            plural(outcome.rows_failed, "row", "rows"),
            cfg.dead_letter.display()
        )));
    }
    Ok(())
}

/// `--dry-run`: what the restore would create, write and skip.
fn print_plan(p: &RestorePlan, g: &GlobalArgs) {
    if g.json {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["dry_run"] = serde_json::json!(true);
        println!("{v}");
        return;
    }
    let counts = |c: &FileCounts| {
        format!(
            "{} files, {} rows, {} cells, {}",
            c.files,
            c.rows,
            c.cells,
            human_bytes(c.bytes)
        )
    };
    let t = &p.target;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let options = format!(
        "primary key ({}); max_versions {}, time_to_live {}, deviation_cell_version_in_sec {}, allow_update {}",
        t.primary_key,
        opt(t.max_versions.map(|v| v.to_string())),
        opt(t.time_to_live.map(|v| v.to_string())),
        opt(t.deviation_cell_version_in_sec.map(|v| v.to_string())),
        opt(t.allow_update.map(|v| v.to_string())),
    );
    println!(
        "dry run of restoring snapshot {} into '{}': nothing was written (no table, no checkpoint, no dead-letter file, no row)",
        p.snapshot_id, t.table
    );
    if t.create {
        println!("create: table '{}' with {options}", t.table);
    } else {
        let rows = match t.holds_rows {
            Some(true) => "holds rows",
            Some(false) => "holds no rows",
            None => "rows not looked at",
        };
        println!("target: table '{}' exists ({rows}): {options}", t.table);
    }
    if !t.defined_columns.is_empty() {
        println!("defined columns: {}", t.defined_columns.join(", "));
    }
    for i in &t.indexes {
        println!(
            "index: {i}{}",
            if t.create {
                " (created with the table; the service fills it from the restored rows)"
            } else {
                ""
            }
        );
    }
    if let Some(v) = &t.versions_needed {
        println!(
            "versions: up to {} of one column in one row ('{}'{})",
            v.versions,
            v.column,
            if v.exact {
                ""
            } else {
                ", a bound: the snapshot's statistics do not record the exact number"
            }
        );
    }
    println!(
        "write: {} with {} ({}, {} mode{}), timestamps {}",
        counts(&p.write),
        if p.operation == "update" {
            "UpdateRow"
        } else {
            "PutRow"
        },
        p.operation,
        p.mode,
        if p.mode_given { "" } else { ", the default" },
        p.timestamps
    );
    for (what, c) in [
        ("--worker: other workers' share", &p.skipped_by_worker),
        ("--partition", &p.skipped_by_partition),
        ("--start-key/--end-key", &p.skipped_by_key_range),
        (
            "the checkpoint of the interrupted run",
            &p.skipped_by_checkpoint,
        ),
    ] {
        if c.files > 0 {
            println!("skip: {} (by {what})", counts(c));
        }
    }
    for f in &p.row_filters {
        println!("filter: {f} (so the rows and cells to write are at most those above)");
    }
    if let Some(at) = &p.restored_as_of {
        println!(
            "replay: {} in {} of {} ({}), then the table is exactly as of {at}",
            count(p.changes, "change"),
            count(p.change_files, "change file"),
            if p.chain.len() > 1 {
                "chain"
            } else {
                "snapshot"
            },
            p.chain.join(" → ")
        );
    }
    for w in &p.warnings {
        println!("note: {w}");
    }
    if let Some(n) = &p.auto_increment_note {
        println!("note: {n}");
    }
    let rows_check = match (t.create, t.holds_rows) {
        (true, _) => "",
        (false, Some(_)) => ", rows already there",
        (false, None) => {
            ", rows already there (not looked at: --mode given, or a resumed checkpoint)"
        }
    };
    println!(
        "checks passed: options, filters, resume, target (primary key, AUTO_INCREMENT, version deviation, TTL, max_versions{rows_check}){}",
        if p.verified {
            ", snapshot verification (sizes, SHA-256)"
        } else {
            "; the snapshot was not verified (--skip-verify)"
        }
    );
    println!(
        "a restore would keep its checkpoint in {} and write rows that fail for good to {}",
        p.checkpoint.display(),
        p.dead_letter.display()
    );
}
