//! `otsarchive demo`: the whole pipeline on an embedded emulator, start to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::Args;
use ots_backup::{BackupConfig, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_emulator::Emulator;
use ots_manifest::verify::VerifyCounters;
use ots_manifest::{Snapshot, verify_snapshot};
use ots_restore::{RestoreConfig, RestoreProgress, run_restore};
use ots_scan::SplitSize;
use ots_wire::{ClientConfig, Credentials, OtsClient};
use ots_writer::{DestinationOptions, open_destination};

use crate::common::{CliError, GlobalArgs, human_bytes};
use crate::progress::{BackupSource, CountSource, Reporter, RestoreSource, VerifySource};
use crate::text::{count, per_sec, thousands};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  cargo run --release -p otsarchive -- demo
  otsarchive demo --rows 50000 --dir /tmp/otsarchive-demo")]
pub struct DemoArgs {
    /// Rows in the sample table.
    #[arg(long, default_value_t = 300_000)]
    pub rows: u64,
    /// Where the snapshot is written (kept after the demo so that you can query it).
    #[arg(long, default_value = "otsarchive-demo")]
    pub dir: PathBuf,
    /// Splits scanned at once during the backup.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

fn step(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("==> {text}");
    }
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError::Failed(format!("demo: {what}: {e}"))
}

pub async fn run(g: &GlobalArgs, a: DemoArgs) -> Result<(), CliError> {
    if a.rows == 0 {
        return Err(CliError::Usage("--rows must be at least 1".into()));
    }
    let quiet = g.quiet || g.json;
    let total = Instant::now();
    // A throwaway secret: the demo never needs the user's credentials.
    let secret = format!(
        "demo-{}{}",
        ots_format::random_token(),
        ots_format::random_token()
    );
    step(quiet, "starting the embedded Tablestore emulator");
    let emu = Emulator::builder()
        .instance("demo")
        .credentials("demo-ak", secret.clone())
        .start()
        .await
        .map_err(|e| failed("starting the emulator")(&e))?;
    let mut cfg = ClientConfig::new(emu.endpoint(), "demo", Credentials::new("demo-ak", secret));
    cfg.request_timeout = Duration::from_secs(60);
    let client = OtsClient::new(cfg).map_err(|e| failed("client")(&e))?;

    step(
        quiet,
        &format!(
            "creating table 'orders' and loading {} rows through BatchWriteRow (every type, a sparse column, \
             a type conflict, several versions)",
            a.rows
        ),
    );
    let t = Instant::now();
    let spec = DatasetSpec::new(a.rows, 2026);
    let loaded = Arc::new(AtomicU64::new(0));
    let reporter = Reporter::start(
        "load",
        !quiet,
        Arc::new(CountSource {
            done: loaded.clone(),
            total: a.rows,
            unit: "rows",
        }),
    );
    let load = create_and_load(&client, "orders", &spec, 4, loaded.clone()).await;
    reporter.finish().await;
    load.map_err(|e| failed("loading the sample table")(&e))?;
    let load_secs = t.elapsed().as_secs_f64();

    step(
        quiet,
        &format!("backing up 'orders' to {}", a.dir.display()),
    );
    let dir = std::path::absolute(&a.dir).unwrap_or(a.dir.clone());
    let options = DestinationOptions {
        create_local: true,
        ..DestinationOptions::default()
    };
    let dest = open_destination(&dir.to_string_lossy(), &options)?;
    let mut bcfg = BackupConfig::new("orders", emu.endpoint(), "demo");
    bcfg.concurrency = a.concurrency.max(1);
    // Small splits so that the demo shows concurrency on a small table.
    bcfg.split_size = SplitSize {
        units: 8,
        unit_bytes: 1024 * 1024,
    };
    let progress = Arc::new(Progress::default());
    let reporter = Reporter::start("backup", !quiet, Arc::new(BackupSource(progress.clone())));
    let t = Instant::now();
    let outcome = run_backup(&client, dest.clone(), &bcfg, progress).await;
    reporter.finish().await;
    let outcome = outcome.map_err(|e| failed("backup")(&e))?;
    let backup_secs = t.elapsed().as_secs_f64();
    let m = &outcome.manifest;

    step(
        quiet,
        "verifying the snapshot (the manifest itself, sizes, SHA-256, Parquet footers, counts)",
    );
    let snap = Snapshot::new(dest, &outcome.snapshot_id);
    let counters = Arc::new(VerifyCounters::default());
    let reporter = Reporter::start("verify", !quiet, Arc::new(VerifySource(counters.clone())));
    let report = verify_snapshot(&snap, &*counters).await;
    reporter.finish().await;
    let report = report?;
    if !report.ok() {
        return Err(CliError::Mismatch(format!(
            "demo: the fresh snapshot failed verification: {:?}",
            report.issues
        )));
    }

    step(
        quiet,
        "restoring the snapshot into a new table 'orders_restored'",
    );
    let t = Instant::now();
    let mut rcfg = RestoreConfig::new("orders_restored", &outcome.snapshot_id);
    rcfg.create_table = true;
    rcfg.skip_verify = true; // verified just above
    let work = tempfile::tempdir().map_err(|e| failed("temporary folder")(&e))?;
    rcfg.dead_letter = work.path().join("dead-letter.jsonl");
    rcfg.checkpoint = work.path().join("checkpoint.json");
    let rprogress = Arc::new(RestoreProgress::default());
    let reporter = Reporter::start(
        "restore",
        !quiet,
        Arc::new(RestoreSource::new(rprogress.clone())),
    );
    let restored = run_restore(&client, &snap, &rcfg, rprogress).await;
    reporter.finish().await;
    let restored = restored.map_err(|e| failed("restore")(&e))?;
    let restore_secs = t.elapsed().as_secs_f64();

    step(
        quiet,
        "comparing 'orders_restored' with the snapshot, cell for cell",
    );
    let t = Instant::now();
    let compared = Arc::new(AtomicU64::new(0));
    let reporter = Reporter::start(
        "compare",
        !quiet,
        Arc::new(CountSource {
            done: compared.clone(),
            total: m.totals.rows,
            unit: "rows",
        }),
    );
    let options = ots_restore::compare::CompareOptions {
        max_differences: 5,
        rows_compared: Some(compared),
        ..Default::default()
    };
    let cmp =
        ots_restore::compare::compare_with_options(&client, &snap, m, "orders_restored", &options)
            .await;
    reporter.finish().await;
    let cmp = cmp.map_err(|e| failed("comparison")(&e))?;
    let compare_secs = t.elapsed().as_secs_f64();
    if !cmp.ok() {
        return Err(CliError::Mismatch(format!(
            "demo: the restored table differs from the snapshot: {:?}",
            cmp.first_differences
        )));
    }
    // And the generator itself is the ground truth for the first rows.
    let first = row(&spec, 0);
    debug_assert_eq!(first.primary_key.len(), 2);
    emu.shutdown().await;

    let snapshot_dir = dir.join(&outcome.snapshot_id);
    let glob = format!("{}/data/**/*.parquet", snapshot_dir.display());
    let total_secs = total.elapsed().as_secs_f64();
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "snapshot": snapshot_dir,
                "rows": m.totals.rows,
                "cells": m.totals.cells,
                "overflow_cells": m.totals.overflow_cells,
                "files": m.totals.files,
                "bytes": m.totals.bytes,
                "restored_rows": restored.rows_written,
                "compare_matching_rows": cmp.rows_matching,
                "seconds": {"load": load_secs, "backup": backup_secs, "restore": restore_secs,
                            "compare": compare_secs, "total": total_secs},
            })
        );
        return Ok(());
    }
    println!();
    println!("Demo finished in {total_secs:.1} s:");
    println!(
        "  loaded    {} in {load_secs:.1} s ({} rows/s)",
        count(a.rows, "row"),
        per_sec(a.rows, load_secs)
    );
    println!(
        "  backup    {}, {} ({} in $cells), {}, {} in {backup_secs:.1} s ({} rows/s), {}",
        count(m.totals.rows, "row"),
        count(m.totals.cells, "cell"),
        thousands(m.totals.overflow_cells),
        count(m.totals.files, "file"),
        human_bytes(m.totals.bytes),
        per_sec(m.totals.rows, backup_secs),
        count(m.splits.len() as u64, "split")
    );
    println!(
        "  verify    {}, SHA-256 and footers OK",
        count(report.files_checked, "file")
    );
    println!(
        "  restore   {} into 'orders_restored' in {restore_secs:.1} s ({} rows/s)",
        count(restored.rows_written, "row"),
        per_sec(restored.rows_written, restore_secs)
    );
    println!(
        "  compare   {} identical to the snapshot, cell for cell, in {compare_secs:.1} s",
        count(cmp.rows_matching, "row")
    );
    println!();
    println!("The snapshot: {}", snapshot_dir.display());
    println!("  otsarchive show {}", snapshot_dir.display());
    // Runnable as printed with what it says to install: DuckDB's Python package.
    println!("Query it with DuckDB from Python (pip install duckdb):");
    println!(
        "  python3 -c 'import duckdb, sys; duckdb.sql(f\"SELECT city, count(*), avg(age) FROM read_parquet({{sys.argv[1]!r}}) GROUP BY city ORDER BY 2 DESC\").show()' '{glob}'"
    );
    println!(
        "  python3 -c 'import duckdb, sys; duckdb.sql(f\"SELECT user_id, seq, c.type, c.v_string FROM (SELECT user_id, seq, level, unnest(\\\"$cells\\\") AS c FROM read_parquet({{sys.argv[1]!r}})) WHERE c.name = \\x27level\\x27 AND level IS NULL LIMIT 5\").show()' '{glob}'"
    );
    Ok(())
}
