//! `otsarchive verify`, `ls` and `show`: reading snapshots without touching Tablestore.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use clap::Args;
use ots_format::{
    DisplayKey, Manifest, Partitioning, TableMeta, TimeGranularity, TimeScope, TimeSource,
};
use ots_manifest::verify::VerifyCounters;
use ots_manifest::{ManifestError, Snapshots, verify_snapshot};
use ots_restore::compare::{CellValue, CompareReport, RowDiff};
use ots_writer::open_destination;

use crate::common::{CliError, DestArgs, GlobalArgs, human_bytes};
use crate::progress::{CountSource, Reporter, VerifySource};
use crate::snapshot_name::{LATEST, looks_like_snapshot, open_snapshot};
use crate::text::{Align, Table, count, duration_secs, thousands, thousands_i, time_ms};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d
  otsarchive verify ./backups/latest          # the newest committed snapshot
  otsarchive verify ./backups/20261125T14     # a unique prefix of an id
  otsarchive verify oss://my-bucket/backups/20261125T143012Z-1a2b3c4d --oss-region cn-hangzhou --json

  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d --against-table orders_copy \\
      --endpoint https://myinst.cn-hangzhou.ots.aliyuncs.com --instance myinst
  # a live source that is still written to: only cells inside the snapshot's time range
  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d --against-table orders --as-of-snapshot \
      --endpoint https://myinst.cn-hangzhou.ots.aliyuncs.com --instance myinst

The verdict is printed on stdout, the problems found on stderr.
Exit code 0 only when every check passes; 3 when something does not match.")]
pub struct VerifyArgs {
    /// Snapshot: DEST/SNAPSHOT_ID, DEST/latest (the newest committed one) or DEST/ID-PREFIX
    pub snapshot: String,
    /// Also compare the snapshot with this live table (rows, cells, types, values, timestamps);
    /// every cell of the table counts, including versions written after the snapshot. A snapshot
    /// with captured changes is compared as its chain's image at its consistency point (the
    /// base's rows with every link's changes applied). Needs --endpoint and --instance.
    #[arg(long)]
    pub against_table: Option<String>,
    /// With --against-table: compare only cells inside the snapshot's time range, so versions
    /// written to a live source after the snapshot are not reported. Refused for a snapshot with
    /// captured changes (its image is exact: every cell is compared).
    #[arg(long, requires = "against_table")]
    pub as_of_snapshot: bool,
    /// Differences to list when comparing with a table.
    #[arg(long, default_value_t = 10)]
    pub max_differences: usize,
    /// With --against-table: MiB the comparison's decoded rows may hold (record batches are
    /// sized in bytes from it).
    #[arg(long, requires = "against_table", default_value_t = ots_restore::config::DEFAULT_MEMORY_MB)]
    pub memory_mb: usize,
    /// With --against-table: splits compared at once (they share --memory-mb).
    #[arg(long, requires = "against_table", default_value_t = 4)]
    pub concurrency: usize,
    /// Check the detached signatures of manifest.json and plan.json with this key (the seed
    /// `otsarchive keygen` wrote, or its `.pub` public key): any change to the signed bytes, a
    /// signature by another key, or a missing signature fails (exit 3).
    #[arg(long, value_name = "PATH")]
    pub sign_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Destination holding snapshots (default: the profile's `to`).
    pub dest_url: Option<String>,
    #[command(flatten)]
    pub dest: DestArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Snapshot: DEST/SNAPSHOT_ID, DEST/latest (the newest committed one) or DEST/ID-PREFIX
    pub snapshot: String,
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// `verify --memory-mb` in bytes, within the range restore accepts.
fn memory_bytes(mb: usize) -> Result<usize, CliError> {
    let (lo, hi) = ots_restore::config::MEMORY_MB_RANGE;
    if !(lo..=hi).contains(&mb) {
        return Err(CliError::Usage(format!(
            "--memory-mb {mb}: must be between {lo} and {hi}"
        )));
    }
    Ok(mb << 20)
}

pub async fn verify(g: &GlobalArgs, a: VerifyArgs) -> Result<(), CliError> {
    let memory = memory_bytes(a.memory_mb)?;
    if a.concurrency == 0 {
        return Err(CliError::Usage(
            "--concurrency 0: at least one split must be compared at a time".into(),
        ));
    }
    let trusted = a
        .sign_key_file
        .as_deref()
        .map(ots_manifest::signing::TrustedKey::from_file)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--sign-key-file {e}")))?;
    let snap = open_snapshot(&a.snapshot, &a.dest, g)
        .await?
        .with_keys(a.keys.read_keys(g)?);
    let id = snap.id().to_string();
    // Read up front only when a check needs it (otherwise verify reports a missing manifest),
    // and then once for every use below.
    let early_manifest = match snap.keys().is_some() || a.as_of_snapshot {
        true => Some(snap.read_manifest().await?),
        false => None,
    };
    // Keys that were given but do not read this snapshot are a mistake to name, not a note.
    if let Some(m) = &early_manifest
        && snap.keys().is_some()
    {
        ots_manifest::ReadKeys::check(snap.keys(), m.encryption.as_ref())
            .map_err(|e| CliError::Usage(format!("snapshot {id}: {e}")))?;
    }
    if a.as_of_snapshot && early_manifest.as_ref().is_some_and(|m| m.changes.is_some()) {
        // Refused before the files are read: a chain's image is exact, every cell is compared.
        return Err(ots_restore::compare::as_of_snapshot_with_changes(&id).into());
    }
    // The client is checked before any file is read, so a bad --endpoint fails fast.
    let client = match &a.against_table {
        Some(_) => Some(crate::common::client(g)?),
        None => None,
    };
    let show_progress = !g.quiet && !g.json;
    let counters = Arc::new(VerifyCounters::default());
    let reporter = Reporter::start(
        "verify",
        show_progress,
        Arc::new(VerifySource(counters.clone())),
    );
    let report = verify_snapshot(&snap, &*counters).await;
    reporter.finish().await;
    let mut report = report?;
    // The signatures: of the exact bytes of the manifest and the plan.
    let mut signed_by = None;
    if let Some(key) = &trusted {
        for rel in [
            ots_format::layout::MANIFEST_FILE,
            ots_format::layout::PLAN_FILE,
        ] {
            match ots_manifest::signing::verify_document(&snap, rel, key)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?
            {
                Ok(key_id) => signed_by = Some(key_id),
                Err(problem) => report.issue(&ots_manifest::signing::signature_path(rel), problem),
            }
        }
    }
    let comparison = match (&a.against_table, &client) {
        (Some(table), Some(client)) if report.ok() => {
            let manifest = match early_manifest {
                Some(m) => m,
                None => snap.read_manifest().await?,
            };
            // A snapshot with captured changes is compared as its chain's image: the base's rows
            // with every link's changes applied.
            let chain = match manifest.changes {
                Some(_) => Some(ots_restore::chain::resolve_chain(&snap, manifest.clone()).await?),
                None => None,
            };
            let compared = Arc::new(AtomicU64::new(0));
            let reporter = Reporter::start(
                "compare",
                show_progress,
                Arc::new(CountSource {
                    done: compared.clone(),
                    total: chain
                        .as_ref()
                        .map_or(manifest.totals.rows, |c| c.base().manifest.totals.rows),
                    unit: "rows",
                }),
            );
            let options = ots_restore::compare::CompareOptions {
                max_differences: a.max_differences,
                as_of_snapshot: a.as_of_snapshot,
                rows_compared: Some(compared),
                memory_bytes: memory,
                concurrency: a.concurrency,
                ..Default::default()
            };
            let compared = match &chain {
                Some(chain) => {
                    ots_restore::compare::compare_chain(client, chain, table, &options).await
                }
                None => {
                    ots_restore::compare::compare_with_options(
                        client, &snap, &manifest, table, &options,
                    )
                    .await
                }
            };
            reporter.finish().await;
            Some(compared?)
        }
        _ => None,
    };
    let compared_ok = comparison.as_ref().is_none_or(|c| c.ok());
    if g.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "snapshot": a.snapshot,
                "snapshot_id": id,
                "ok": report.ok() && compared_ok,
                "signed_by": signed_by,
                "report": report,
                "comparison": comparison,
            }))
            .unwrap_or_default()
        );
    } else {
        if !g.quiet {
            // The problems, on stderr.
            if let Some(c) = &comparison {
                for d in &c.first_differences {
                    eprintln!("{}", difference_line(d));
                }
                let listed = c.first_differences.len() as u64;
                let total = c.missing_in_table + c.extra_in_table + c.different;
                if total > listed {
                    eprintln!(
                        "… and {} more (--max-differences {} lists more; --json gives them all as data)",
                        count(total - listed, "difference"),
                        a.max_differences
                    );
                }
            }
            for i in &report.issues {
                eprintln!("MISMATCH {}: {}", i.path, i.problem);
            }
            for f in &report.unlisted_files {
                eprintln!(
                    "note: {f} is not listed in the manifest (an attempt the commit did not choose; not part of the snapshot; `otsarchive gc` removes it)"
                );
            }
        }
        // The verdict, on stdout.
        let checked = if report.content_checks_skipped.is_some() {
            format!(
                "{} and {} checked (sizes and SHA-256 of the encrypted bytes)",
                count(report.files_checked, "file"),
                human_bytes(report.bytes_checked),
            )
        } else {
            format!(
                "{}, {} and {} checked",
                count(report.files_checked, "file"),
                human_bytes(report.bytes_checked),
                count(report.rows_in_footers, "row")
            )
        };
        if report.ok() {
            println!(
                "snapshot {id}: OK, {checked}{}",
                signed_by
                    .as_ref()
                    .map(|k| format!("; manifest and plan signed by key {k}"))
                    .unwrap_or_default()
            );
        } else {
            println!(
                "snapshot {id}: FAILED, {} ({checked})",
                count(report.issues.len() as u64, "problem")
            );
        }
        if let Some(why) = &report.content_checks_skipped {
            println!("note: {why}");
        }
        if let Some(c) = &comparison {
            println!("{}", comparison_verdict(c));
        }
    }
    if let Some(c) = comparison.filter(|c| !c.ok()) {
        return Err(CliError::Mismatch(format!(
            "table '{}' differs from snapshot {id}: {} missing, {} extra, {} different",
            c.table,
            thousands(c.missing_in_table),
            thousands(c.extra_in_table),
            count(c.different, "row")
        )));
    }
    if report.ok() {
        Ok(())
    } else {
        Err(CliError::Mismatch(format!(
            "snapshot {id} failed verification: {}, the first: {}: {}",
            count(report.issues.len() as u64, "problem"),
            report.issues[0].path,
            report.issues[0].problem
        )))
    }
}

/// One difference found by `verify --against-table`, with its key as `--start-key` takes it.
fn difference_line(d: &RowDiff) -> String {
    let key = DisplayKey(&d.primary_key);
    match d.kind {
        "missing_in_table" => format!("MISSING   {key}: in the snapshot, not in the table"),
        "extra_in_table" => format!("EXTRA     {key}: in the table, not in the snapshot"),
        _ => match &d.cell {
            Some(c) => {
                let side = |v: &Option<CellValue>, other: &Option<CellValue>| match v {
                    None => "has no such version".to_string(),
                    // The type only when it is what differs.
                    Some(v) if other.as_ref().is_some_and(|o| o.value_type != v.value_type) => {
                        format!("has {} ({})", v.text, v.value_type)
                    }
                    Some(v) => format!("has {}", v.text),
                };
                let version = match c.timestamp_ms {
                    Some(ts) => format!("version {} ({ts} ms)", time_ms(ts)),
                    None => "version without a timestamp".to_string(),
                };
                format!(
                    "DIFFERENT {key}: column {}, {version}: snapshot {}, table {}",
                    c.column,
                    side(&c.snapshot, &c.table),
                    side(&c.table, &c.snapshot)
                )
            }
            None => format!("DIFFERENT {key}: {}", d.detail),
        },
    }
}

fn comparison_verdict(c: &CompareReport) -> String {
    let what = if c.as_of_snapshot {
        "cells in the snapshot's time range".to_string()
    } else if c.chain.len() > 1 {
        format!(
            "every cell; the image of chain {} → {}, {} links",
            c.chain[0],
            c.chain[c.chain.len() - 1],
            c.chain.len()
        )
    } else {
        "every cell".to_string()
    };
    if c.ok() {
        format!(
            "table '{}' ({what}): OK, {} identical to the snapshot",
            c.table,
            count(c.rows_matching, "row")
        )
    } else {
        format!(
            "table '{}' ({what}): DIFFERENT, {} of {} match; {} different, {} missing in the table, \
             {} only in the table ({} in the table)",
            c.table,
            thousands(c.rows_matching),
            count(c.rows_in_snapshot, "snapshot row"),
            thousands(c.different),
            thousands(c.missing_in_table),
            thousands(c.extra_in_table),
            count(c.rows_in_table, "row")
        )
    }
}

pub async fn ls(g: &GlobalArgs, a: LsArgs) -> Result<(), CliError> {
    let url = g.destination(a.dest_url.as_deref(), "the destination")?;
    let dest = open_destination(&url, &a.dest.options(g)?)?;
    if looks_like_snapshot(&url, &dest).await {
        let trimmed = url.trim_end_matches('/');
        let parent = trimmed.rsplit_once('/').map_or(".", |(p, _)| p);
        return Err(CliError::Usage(format!(
            "'{url}' is a snapshot, not a destination: `otsarchive show {trimmed}` summarises it, \
             `otsarchive ls {parent}` lists the snapshots next to it"
        )));
    }
    let snapshots = Snapshots::new(dest);
    let ids = snapshots.list_ids().await?;
    let mut rows = Vec::new();
    // The snapshot `DEST/latest` names, by the same order (`ots_manifest::recency_key`).
    let mut latest: Option<(String, Manifest)> = None;
    for id in ids {
        let snap = snapshots.snapshot(&id);
        match snap.read_manifest().await {
            Ok(m) => {
                rows.push(serde_json::json!({
                    "snapshot_id": id,
                    "status": "committed",
                    "table": m.source.table.table_name,
                    "snapshot_time_ms": m.time_range.t_ms,
                    "instant_us": m.instant_us(),
                    "finished_at": m.finished_at,
                    "rows": m.totals.rows,
                    "files": m.totals.files + m.changes.as_ref().map_or(0, |c| c.files.len() as u64),
                    "bytes": m.totals.bytes + m.changes.as_ref().map_or(0, |c| c.files.iter().map(|f| f.bytes).sum::<u64>()),
                    "kind": m.changes.as_ref().map(|c| c.kind),
                    "parent": m.changes.as_ref().and_then(|c| c.parent.clone()),
                    "base": m.changes.as_ref().map(|c| c.base.clone()),
                    "window_start": m.changes.as_ref().map(|c| c.start.time.clone()),
                    "consistency_point": m.changes.as_ref().map(|c| c.consistency_point.time.clone()),
                "changes": m.changes.as_ref().map(|c| c.counts),
                }));
                let newer = latest.as_ref().is_none_or(|(lid, lm)| {
                    ots_manifest::recency_key(&id, &m) > ots_manifest::recency_key(lid, lm)
                });
                if newer {
                    latest = Some((id.clone(), m));
                }
            }
            Err(ManifestError::NotFound { .. }) => {
                let plan = snap.read_plan().await.ok();
                let done: std::collections::BTreeSet<u32> = snap
                    .records()
                    .await
                    .map(|r| r.iter().map(|r| r.split.id).collect())
                    .unwrap_or_default();
                let done = done.len();
                rows.push(serde_json::json!({
                    "snapshot_id": id,
                    "status": if plan.is_some() { "incomplete" } else { "unknown" },
                    "table": plan.as_ref().map(|p| p.source.table.table_name.clone()),
                    "splits_committed": done,
                    "splits_total": plan.as_ref().map(|p| p.splits.len()),
                }));
            }
            Err(e) => rows.push(serde_json::json!({
                "snapshot_id": id,
                "status": "damaged",
                "error": e.to_string(),
            })),
        }
    }
    if g.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no snapshots under {url}");
        return Ok(());
    }
    let mut t = Table::new(&[
        ("SNAPSHOT", Align::Left),
        ("STATUS", Align::Left),
        ("TABLE", Align::Left),
        ("KIND", Align::Left),
        ("ROWS", Align::Right),
        ("CHANGES", Align::Right),
        ("FILES", Align::Right),
        ("SIZE", Align::Right),
        ("EXACT AS OF", Align::Left),
        ("FINISHED", Align::Left),
    ]);
    let mut committed = 0;
    let latest = latest.map(|(id, _)| id);
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let n = |k: &str| r[k].as_u64().map_or("-".to_string(), thousands);
        let status = match s("status").as_str() {
            "incomplete" => format!(
                "incomplete ({} of {} splits)",
                n("splits_committed"),
                n("splits_total")
            ),
            "committed" => {
                committed += 1;
                "committed".to_string()
            }
            other => other.to_string(),
        };
        let kind = match (s("kind").as_str(), r["parent"].as_str()) {
            ("incremental", Some(p)) => format!("incr ← {p}"),
            ("full", _) => "full+changes".to_string(),
            _ if s("status") == "committed" => "scan".to_string(),
            _ => "-".to_string(),
        };
        let changes = {
            let c = &r["changes"];
            match (
                c["put_row"].as_u64(),
                c["update_row"].as_u64(),
                c["delete_row"].as_u64(),
            ) {
                (Some(p), Some(u), Some(d)) => {
                    format!("{}p/{}u/{}d", thousands(p), thousands(u), thousands(d))
                }
                _ => "-".to_string(),
            }
        };
        t.row(vec![
            s("snapshot_id"),
            status,
            s("table"),
            kind,
            if s("kind") == "incremental" {
                "-".to_string()
            } else {
                n("rows")
            },
            changes,
            n("files"),
            r["bytes"].as_u64().map_or("-".to_string(), human_bytes),
            s("consistency_point"),
            s("finished_at"),
        ]);
    }
    print!("{}", t.render());
    println!();
    println!(
        "{}, {} committed{}",
        count(rows.len() as u64, "snapshot"),
        thousands(committed),
        match latest {
            Some(id) => format!("; {LATEST} = {id}"),
            None => String::new(),
        }
    );
    for r in &rows {
        if let Some(e) = r["error"].as_str() {
            eprintln!("note: {}: {e}", r["snapshot_id"].as_str().unwrap_or("-"));
        }
    }
    Ok(())
}

/// `-1` is "never"; a missing value was not reported by DescribeTable.
fn ttl_words(ttl: Option<i32>) -> String {
    match ttl {
        None => "not reported".into(),
        Some(-1) => "never".into(),
        Some(s) => seconds_words(s as i64),
    }
}

/// `86400` → `86,400 s (1 day)`.
fn seconds_words(s: i64) -> String {
    let days = s / 86_400;
    if s >= 86_400 && s % 86_400 == 0 {
        format!("{} s ({})", thousands_i(s), count(days as u64, "day"))
    } else {
        format!("{} s", thousands_i(s))
    }
}

fn table_words(t: &TableMeta) -> String {
    let pk = t
        .primary_key
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.name,
                ots_schema::layout::pk_type_name(c.pk_type),
                if c.auto_increment {
                    " AUTO_INCREMENT"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "primary key {pk}; max versions {}; TTL {}; version deviation {}",
        t.max_versions
            .map_or("not reported".to_string(), |v| thousands_i(v as i64)),
        ttl_words(t.time_to_live),
        t.deviation_cell_version_in_sec
            .map_or("not reported".to_string(), seconds_words),
    );
    if !t.defined_columns.is_empty() {
        out.push_str(&format!(
            "; defined columns {}",
            t.defined_columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.value_type.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if t.allow_update == Some(false) {
        out.push_str("; updates not allowed");
    }
    out
}

/// The partitioning in words, with the folders it makes.
pub fn partitioning_words(p: &Partitioning) -> String {
    match p {
        Partitioning::None => "none (each split's files side by side under data/)".into(),
        Partitioning::Column { column } => {
            format!("by the value of column {column} (folders {column}=VALUE)")
        }
        Partitioning::Time {
            source,
            granularity,
        } => {
            let (unit, folders) = match granularity {
                TimeGranularity::Day => ("day", "dt=YYYY-MM-DD"),
                TimeGranularity::Hour => ("hour", "dt=YYYY-MM-DD/hour=HH"),
            };
            let from = match source {
                TimeSource::EpochSeconds { column } => {
                    format!("column {column} read as seconds since the epoch")
                }
                TimeSource::EpochMillis { column } => {
                    format!("column {column} read as milliseconds since the epoch")
                }
                TimeSource::IsoString { column } => {
                    format!("column {column} read as ISO 8601 text")
                }
                TimeSource::LatestWrite => "the row's newest cell timestamp".to_string(),
            };
            format!("by {unit} (UTC) of {from} (folders {folders})")
        }
        Partitioning::HashBucket { buckets } => format!(
            "by a hash of the primary key into {} (folders bucket=0…{})",
            count(*buckets as u64, "bucket"),
            buckets.saturating_sub(1)
        ),
    }
}

/// Partitions listed by `show` before "… and N more".
const MAX_PARTITIONS_SHOWN: usize = 30;

fn partitions_table(m: &Manifest) -> Option<(String, usize)> {
    if matches!(m.partitioning, Partitioning::None) {
        return None;
    }
    let mut parts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for f in &m.files {
        let name = f
            .partition
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("/");
        let e = parts.entry(name).or_default();
        e.0 += 1;
        e.1 += f.rows;
        e.2 += f.bytes;
    }
    let mut t = Table::new(&[
        ("PARTITION", Align::Left),
        ("FILES", Align::Right),
        ("ROWS", Align::Right),
        ("SIZE", Align::Right),
    ]);
    for (name, (files, rows, bytes)) in parts.iter().take(MAX_PARTITIONS_SHOWN) {
        t.row(vec![
            if name.is_empty() {
                "(none)".to_string()
            } else {
                name.clone()
            },
            thousands(*files),
            thousands(*rows),
            human_bytes(*bytes),
        ]);
    }
    Some((t.render(), parts.len()))
}

pub async fn show(g: &GlobalArgs, a: ShowArgs) -> Result<(), CliError> {
    let snap = open_snapshot(&a.snapshot, &a.dest, g)
        .await?
        .with_keys(a.keys.read_keys(g)?);
    let m = snap.read_manifest().await?;
    if g.json {
        println!("{}", serde_json::to_string(&m).unwrap_or_default());
        return Ok(());
    }
    let t = &m.source.table;
    let mut head = Table::new(&[("", Align::Left), ("", Align::Left)]);
    let mut line = |k: &str, v: String| head.row(vec![k.to_string(), v]);
    line(
        "snapshot",
        format!(
            "{} (format {}, written by otsarchive {})",
            m.snapshot_id, m.format_version, m.tool_version
        ),
    );
    line(
        "source",
        format!(
            "table {}, instance {}, endpoint {}",
            t.table_name, m.source.instance, m.source.endpoint
        ),
    );
    line(
        "time",
        format!(
            "T = {} ({} ms)",
            time_ms(m.time_range.t_ms),
            m.time_range.t_ms
        ),
    );
    let took = match (
        ots_format::time::parse_rfc3339(&m.started_at),
        ots_format::time::parse_rfc3339(&m.finished_at),
    ) {
        (Ok(a), Ok(b)) => b
            .duration_since(a)
            .map(|d| format!(" ({})", duration_secs(d.as_secs_f64())))
            .unwrap_or_default(),
        _ => String::new(),
    };
    line(
        "taken",
        format!("{} → {}{took}", m.started_at, m.finished_at),
    );
    if m.format_version >= 2 {
        line(
            "scope",
            match m.time_range.scope {
                TimeScope::UpToT => "cells dated up to T (--time-range up-to-t)".to_string(),
                TimeScope::All => "every cell, however dated (--time-range all)".to_string(),
            },
        );
        let after: ots_format::CellsAfterT =
            m.splits
                .iter()
                .fold(Default::default(), |mut acc: ots_format::CellsAfterT, s| {
                    acc.merge(&s.cells_after_t);
                    acc
                });
        line(
            "after T",
            if after.cells == 0 {
                "no cell dated after T was left out".to_string()
            } else {
                format!(
                    "{} in {} dated after T (the newest {}) are NOT in this snapshot; \
                     back up with --time-range all to include them",
                    count(after.cells, "cell"),
                    count(after.rows, "row"),
                    after.max_ts_ms.map_or("-".to_string(), time_ms)
                )
            },
        );
    } else {
        line(
            "scope",
            format!(
                "cells dated before {} (format 1 records no scope)",
                time_ms(m.time_range.end_ms)
            ),
        );
    }
    match &m.changes {
        Some(c) => {
            line(
                "guarantee",
                format!(
                    "exact as of {} ({} µs): restoring yields the table exactly as it was then",
                    c.consistency_point.time, c.consistency_point.t_us
                ),
            );
            line(
                "chain",
                match &c.parent {
                    Some(p) => format!(
                        "incremental link: parent {p}, base {} (restore replays the base and every link up to this one)",
                        c.base
                    ),
                    None => "full link (scan + changes): the base of its chain".to_string(),
                },
            );
            line(
                "window",
                format!(
                    "changes logged after {} up to {} on stream {}",
                    c.start.time, c.consistency_point.time, c.stream_id
                ),
            );
            line(
                "changes",
                format!(
                    "{}: {} PUT_ROW, {} UPDATE_ROW, {} DELETE_ROW; cell ops {} put, {} delete-version, {} delete-all; {}, {}",
                    count(c.counts.records(), "change"),
                    thousands(c.counts.put_row),
                    thousands(c.counts.update_row),
                    thousands(c.counts.delete_row),
                    thousands(c.counts.cell_puts),
                    thousands(c.counts.cell_deletes_one_version),
                    thousands(c.counts.cell_deletes_all_versions),
                    count(c.files.len() as u64, "change file"),
                    human_bytes(c.files.iter().map(|f| f.bytes).sum())
                ),
            );
        }
        None => line(
            "guarantee",
            "a scan without change capture (no stream): deletes during the scan may leak in (FORMAT.md §9.4)".to_string(),
        ),
    }
    line("table", table_words(t));
    for i in &t.indexes {
        // Recreated by `restore --create-table`; index tables are never in a snapshot.
        line("index", i.text());
    }
    line(
        "totals",
        format!(
            "{}, {} ({} in $cells), {}, {}, {}",
            count(m.totals.rows, "row"),
            count(m.totals.cells, "cell"),
            thousands(m.totals.overflow_cells),
            count(m.totals.files, "file"),
            human_bytes(m.totals.bytes),
            count(m.splits.len() as u64, "split")
        ),
    );
    line("partitions", partitioning_words(&m.partitioning));
    if let Some(e) = &m.encryption {
        let key = match ots_manifest::ReadKeys::check(snap.keys(), Some(e)) {
            Ok(()) => "key given".to_string(),
            Err(_) => "key not given: pass --encryption-key-file to read the files".to_string(),
        };
        line(
            "encryption",
            format!("{} under master key {} ({key})", e.scheme, e.master_key_id),
        );
    }
    // The key column has no header: skip the header line of the two-column table.
    for l in head.render().lines().skip(1) {
        println!("{l}");
    }
    if let Some((table, n)) = partitions_table(&m) {
        println!();
        print!("{table}");
        if n > MAX_PARTITIONS_SHOWN {
            println!(
                "… and {} more (`otsarchive --json show` lists every file)",
                count((n - MAX_PARTITIONS_SHOWN) as u64, "partition")
            );
        }
    }
    println!();
    let mut cols = Table::new(&[
        ("COLUMN", Align::Left),
        ("TYPE", Align::Left),
        ("TYPED", Align::Right),
        ("NULL", Align::Right),
        ("$CELLS", Align::Right),
        ("CONFLICTS", Align::Right),
        ("CELLS BY TYPE", Align::Left),
    ]);
    for c in &t.primary_key {
        cols.row(vec![
            c.name.clone(),
            ots_schema::layout::pk_type_name(c.pk_type).to_string(),
            thousands(m.totals.rows),
            "0".into(),
            "0".into(),
            "0".into(),
            "(primary key)".into(),
        ]);
    }
    let typed: std::collections::HashMap<&str, &str> = m
        .schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.value_type.name()))
        .collect();
    let mut untyped = 0;
    for (name, s) in &m.stats.columns {
        let ty = typed.get(name.as_str()).copied().unwrap_or_else(|| {
            untyped += 1;
            "-"
        });
        cols.row(vec![
            name.clone(),
            ty.to_string(),
            thousands(s.typed_values),
            thousands(s.typed_nulls),
            thousands(s.overflow_cells),
            thousands(s.type_conflicts),
            s.cells_by_type
                .iter()
                .map(|(k, v)| format!("{k}:{}", thousands(*v)))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    print!("{}", cols.render());
    if m.totals.overflow_cells > 0 {
        println!();
        println!(
            "{} are in $cells (older versions, type conflicts{}); see docs/FORMAT.md §5.",
            count(m.totals.overflow_cells, "cell"),
            if untyped > 0 {
                ", columns of TYPE - that are not typed"
            } else {
                ""
            }
        );
    }
    Ok(())
}
