//! `otsarchive demo`: the whole pipeline on an embedded emulator, start to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ots_backup::{BackupConfig, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_emulator::Emulator;
use ots_manifest::{Snapshot, verify_snapshot};
use ots_restore::{RestoreConfig, RestoreProgress, run_restore};
use ots_scan::SplitSize;
use ots_wire::{ClientConfig, Credentials, OtsClient};
use ots_writer::{DestinationOptions, open_destination};

use crate::common::{CliError, GlobalArgs, human_bytes};
use crate::progress::Reporter;

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
    let ticker = {
        let loaded = loaded.clone();
        let rows = a.rows;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !quiet {
                    eprintln!("    loaded {}/{rows} rows", loaded.load(Ordering::Relaxed));
                }
            }
        })
    };
    let load = create_and_load(&client, "orders", &spec, 4, loaded.clone()).await;
    ticker.abort();
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
    let reporter = Reporter::start(progress.clone(), "backup", !quiet);
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
    let report = verify_snapshot(&snap, &()).await?;
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
    let restored = run_restore(&client, &snap, &rcfg, Arc::new(RestoreProgress::default()))
        .await
        .map_err(|e| failed("restore")(&e))?;
    let restore_secs = t.elapsed().as_secs_f64();

    step(
        quiet,
        "comparing 'orders_restored' with the snapshot, cell for cell",
    );
    let t = Instant::now();
    let cmp = ots_restore::compare::compare_with_table(&client, &snap, m, "orders_restored", 5)
        .await
        .map_err(|e| failed("comparison")(&e))?;
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
    println!("Demo finished in {total_secs:.1}s:");
    println!(
        "  loaded    {} rows in {load_secs:.1}s ({:.0} rows/s)",
        a.rows,
        a.rows as f64 / load_secs.max(0.001)
    );
    println!(
        "  backup    {} rows, {} cells ({} in $cells), {} files, {} in {backup_secs:.1}s ({:.0} rows/s), {} splits",
        m.totals.rows,
        m.totals.cells,
        m.totals.overflow_cells,
        m.totals.files,
        human_bytes(m.totals.bytes),
        m.totals.rows as f64 / backup_secs.max(0.001),
        m.splits.len()
    );
    println!(
        "  verify    {} files, SHA-256 and footers OK",
        report.files_checked
    );
    println!(
        "  restore   {} rows into 'orders_restored' in {restore_secs:.1}s ({:.0} rows/s)",
        restored.rows_written,
        restored.rows_written as f64 / restore_secs.max(0.001)
    );
    println!(
        "  compare   {} rows identical to the snapshot, cell for cell, in {compare_secs:.1}s",
        cmp.rows_matching
    );
    println!();
    println!("The snapshot: {}", snapshot_dir.display());
    println!("  otsarchive show {}", snapshot_dir.display());
    println!("Query it with DuckDB (pip install duckdb):");
    println!(
        "  duckdb -c \"SELECT city, count(*), avg(age) FROM read_parquet('{glob}') GROUP BY city ORDER BY 2 DESC\""
    );
    println!(
        "  duckdb -c \"SELECT user_id, seq, c.type, c.v_string FROM (SELECT user_id, seq, level, unnest(\\\"\\$cells\\\") AS c FROM read_parquet('{glob}')) WHERE c.name = 'level' AND level IS NULL LIMIT 5\""
    );
    Ok(())
}
