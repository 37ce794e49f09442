//! `otsarchive verify`, `ls` and `show`: reading snapshots without touching Tablestore.

use clap::Args;
use ots_manifest::{ManifestError, Snapshots, verify_snapshot};
use ots_writer::open_destination;

use crate::common::{CliError, DestArgs, GlobalArgs, human_bytes, open_snapshot};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d
  otsarchive verify oss://my-bucket/backups/20261125T143012Z-1a2b3c4d --oss-region cn-hangzhou --json

  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d --against-table orders_copy \\
      --endpoint https://myinst.cn-hangzhou.ots.aliyuncs.com --instance myinst
  # a live source that is still written to: only cells inside the snapshot's time range
  otsarchive verify ./backups/20261125T143012Z-1a2b3c4d --against-table orders --as-of-snapshot \
      --endpoint https://myinst.cn-hangzhou.ots.aliyuncs.com --instance myinst

Exit code 0 only when every check passes; 3 when something does not match.")]
pub struct VerifyArgs {
    /// Snapshot URL: DEST/SNAPSHOT_ID
    pub snapshot: String,
    #[command(flatten)]
    pub dest: DestArgs,
    /// Also compare the snapshot with this live table (rows, cells, types, values, timestamps);
    /// every cell of the table counts, including versions written after the snapshot. Needs
    /// --endpoint and --instance.
    #[arg(long)]
    pub against_table: Option<String>,
    /// With --against-table: compare only cells inside the snapshot's time range, so versions
    /// written to a live source after the snapshot are not reported.
    #[arg(long, requires = "against_table")]
    pub as_of_snapshot: bool,
    /// Differences to list when comparing with a table.
    #[arg(long, default_value_t = 10)]
    pub max_differences: usize,
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
    /// Snapshot URL: DEST/SNAPSHOT_ID
    pub snapshot: String,
    #[command(flatten)]
    pub dest: DestArgs,
}

pub async fn verify(g: &GlobalArgs, a: VerifyArgs) -> Result<(), CliError> {
    let snap = open_snapshot(&a.snapshot, &a.dest, g)?;
    let id = snap.id().to_string();
    // The client is checked before any file is read, so a bad --endpoint fails fast.
    let client = match &a.against_table {
        Some(_) => Some(crate::common::client(g)?),
        None => None,
    };
    let report = verify_snapshot(&snap, &()).await?;
    let comparison = match (&a.against_table, &client) {
        (Some(table), Some(client)) if report.ok() => {
            let manifest = snap.read_manifest().await?;
            let options = ots_restore::compare::CompareOptions {
                max_differences: a.max_differences,
                as_of_snapshot: a.as_of_snapshot,
                ..Default::default()
            };
            Some(
                ots_restore::compare::compare_with_options(
                    client, &snap, &manifest, table, &options,
                )
                .await?,
            )
        }
        _ => None,
    };
    let compared_ok = comparison.as_ref().is_none_or(|c| c.ok());
    if g.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "snapshot": a.snapshot,
                "ok": report.ok() && compared_ok,
                "report": report,
                "comparison": comparison,
            }))
            .unwrap_or_default()
        );
    } else if !g.quiet {
        if let Some(c) = &comparison {
            for d in &c.first_differences {
                eprintln!(
                    "DIFFERENT {} {}: {}",
                    d.kind,
                    ots_format::DisplayKey(&d.primary_key),
                    d.detail
                );
            }
            eprintln!(
                "compare with '{}' ({}): {} rows in the snapshot, {} in the table; {} match, {} missing in the table, \
                 {} only in the table, {} different",
                c.table,
                if c.as_of_snapshot {
                    "cells in the snapshot's time range"
                } else {
                    "every cell"
                },
                c.rows_in_snapshot,
                c.rows_in_table,
                c.rows_matching,
                c.missing_in_table,
                c.extra_in_table,
                c.different
            );
        }
        for i in &report.issues {
            eprintln!("MISMATCH {}: {}", i.path, i.problem);
        }
        for f in &report.unlisted_files {
            eprintln!(
                "note: {f} is not listed in the manifest (an attempt the commit did not choose; not part of the snapshot; `otsarchive gc` removes it)"
            );
        }
        eprintln!(
            "verify: {} files, {}, {} rows checked; {}",
            report.files_checked,
            human_bytes(report.bytes_checked),
            report.rows_in_footers,
            if report.ok() {
                "OK".to_string()
            } else {
                format!("{} problem(s)", report.issues.len())
            }
        );
    }
    if let Some(c) = comparison.filter(|c| !c.ok()) {
        return Err(CliError::Mismatch(format!(
            "table '{}' differs from snapshot {id}: {} missing, {} extra, {} different rows",
            c.table, c.missing_in_table, c.extra_in_table, c.different
        )));
    }
    if report.ok() {
        Ok(())
    } else {
        Err(CliError::Mismatch(format!(
            "snapshot {id} failed verification: {} problem(s), first: {}: {}",
            report.issues.len(),
            report.issues[0].path,
            report.issues[0].problem
        )))
    }
}

pub async fn ls(g: &GlobalArgs, a: LsArgs) -> Result<(), CliError> {
    let dest = open_destination(
        &g.destination(a.dest_url.as_deref(), "the destination")?,
        &a.dest.options(g),
    )?;
    let snapshots = Snapshots::new(dest);
    let ids = snapshots.list_ids().await?;
    let mut rows = Vec::new();
    for id in ids {
        let snap = snapshots.snapshot(&id);
        match snap.read_manifest().await {
            Ok(m) => rows.push(serde_json::json!({
                "snapshot_id": id,
                "status": "committed",
                "table": m.source.table.table_name,
                "snapshot_time_ms": m.time_range.t_ms,
                "finished_at": m.finished_at,
                "rows": m.totals.rows,
                "files": m.totals.files,
                "bytes": m.totals.bytes,
            })),
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
    println!(
        "{:<28} {:<11} {:<20} {:>12} {:>6} {:>10}  FINISHED",
        "SNAPSHOT", "STATUS", "TABLE", "ROWS", "FILES", "SIZE"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let n = |k: &str| r[k].as_u64().map_or("-".to_string(), |v| v.to_string());
        let size = r["bytes"].as_u64().map_or("-".to_string(), human_bytes);
        let status = if s("status") == "incomplete" {
            format!(
                "incomplete ({}/{} splits)",
                n("splits_committed"),
                n("splits_total")
            )
        } else {
            s("status")
        };
        println!(
            "{:<28} {:<11} {:<20} {:>12} {:>6} {:>10}  {}",
            s("snapshot_id"),
            status,
            s("table"),
            n("rows"),
            n("files"),
            size,
            s("finished_at")
        );
    }
    Ok(())
}

pub async fn show(g: &GlobalArgs, a: ShowArgs) -> Result<(), CliError> {
    let snap = open_snapshot(&a.snapshot, &a.dest, g)?;
    let m = snap.read_manifest().await?;
    if g.json {
        println!("{}", serde_json::to_string(&m).unwrap_or_default());
        return Ok(());
    }
    let t = &m.source.table;
    println!("snapshot   {}", m.snapshot_id);
    println!(
        "source     {} / {} / table {}",
        m.source.endpoint, m.source.instance, t.table_name
    );
    println!(
        "time       T = {} ms (cells with timestamps in [{}, {}) ms); {} → {}",
        m.time_range.t_ms, m.time_range.start_ms, m.time_range.end_ms, m.started_at, m.finished_at
    );
    println!(
        "table      PK ({}); max_versions {:?}, TTL {:?} s, deviation {:?} s",
        t.primary_key
            .iter()
            .map(|c| format!(
                "{} {}{}",
                c.name,
                ots_schema::layout::pk_type_name(c.pk_type),
                if c.auto_increment {
                    " AUTO_INCREMENT"
                } else {
                    ""
                }
            ))
            .collect::<Vec<_>>()
            .join(", "),
        t.max_versions,
        t.time_to_live,
        t.deviation_cell_version_in_sec
    );
    println!(
        "totals     {} rows, {} cells ({} in $cells), {} files, {}, {} splits",
        m.totals.rows,
        m.totals.cells,
        m.totals.overflow_cells,
        m.totals.files,
        human_bytes(m.totals.bytes),
        m.splits.len()
    );
    println!(
        "partition  {}",
        serde_json::to_string(&m.partitioning).unwrap_or_default()
    );
    println!();
    println!(
        "{:<24} {:<8} {:>10} {:>10} {:>10} {:>10}  CELLS BY TYPE",
        "COLUMN", "TYPE", "TYPED", "NULL", "$CELLS", "CONFLICTS"
    );
    for c in &t.primary_key {
        println!(
            "{:<24} {:<8} {:>10} {:>10} {:>10} {:>10}  (primary key)",
            c.name,
            ots_schema::layout::pk_type_name(c.pk_type),
            m.totals.rows,
            0,
            0,
            0
        );
    }
    let typed: std::collections::HashMap<&str, &str> = m
        .schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.value_type.name()))
        .collect();
    for (name, s) in &m.stats.columns {
        println!(
            "{:<24} {:<8} {:>10} {:>10} {:>10} {:>10}  {}",
            name,
            typed.get(name.as_str()).copied().unwrap_or("-"),
            s.typed_values,
            s.typed_nulls,
            s.overflow_cells,
            s.type_conflicts,
            s.cells_by_type
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if m.totals.overflow_cells > 0 {
        println!();
        println!(
            "{} cells are in $cells (older versions, type conflicts, untyped columns); see docs/FORMAT.md §5.",
            m.totals.overflow_cells
        );
    }
    Ok(())
}
