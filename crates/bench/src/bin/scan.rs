//! `ots-bench-scan`: the raw-scan ceiling for a backup. Plans splits exactly as the backup does,
//! scans them concurrently (same concurrency, same time range: every version up to now), decodes
//! every page (each row checked and decoded once, as a backup reads it) and counts rows and cells —
//! nothing else. Prints one JSON line.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use ots_bench::{Target, now_ms};
use ots_scan::{ScanError, ScanOptions, SplitScanner, SplitSize, plan_splits_for};

#[derive(Parser, Debug)]
#[command(name = "ots-bench-scan")]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Splits scanned at once (`otsarchive backup --concurrency`, default 4).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Target split size in MiB (`otsarchive backup --split-size-mb`, default 128); split as the
    /// backup splits, asking again for smaller splits when there are fewer than --concurrency.
    #[arg(long, default_value_t = 128)]
    split_size_mb: i64,
    /// Pages fetched ahead of the decoder per split: 1, as `otsarchive backup` fetches, so that
    /// the ceiling is measured the way the backup reads (0: fetch, decode, fetch, ...).
    #[arg(long, default_value_t = 1)]
    prefetch: usize,
}

#[derive(Default)]
struct Totals {
    pages: u64,
    bytes: u64,
    rows: u64,
    cells: u64,
}

fn count_page(t: &mut Totals, page: &ots_scan::Page) -> Result<(), String> {
    t.pages += 1;
    t.bytes += page.encoded_len() as u64;
    let (rows, cells) = page
        .for_each_row::<ScanError>(|row| {
            std::hint::black_box(row);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    t.rows += rows;
    t.cells += cells;
    Ok(())
}

async fn scan_split(mut scanner: SplitScanner, prefetch: usize) -> Result<Totals, String> {
    let mut t = Totals::default();
    if prefetch == 0 {
        while let Some(page) = scanner.next_page().await.map_err(|e| e.to_string())? {
            count_page(&mut t, &page)?;
        }
        return Ok(t);
    }
    // A fetcher task keeps up to `prefetch` pages ready while this task decodes; a fetcher that
    // stops before the split's end is an error, not an end.
    let mut pages = ots_scan::spawn_prefetch(scanner, prefetch);
    while let Some(page) = pages.next().await.map_err(|e| e.to_string())? {
        count_page(&mut t, &page)?;
    }
    Ok(t)
}

async fn run(a: &Args) -> Result<serde_json::Value, String> {
    let client = a.target.client()?;
    let started = Instant::now();
    let plan = plan_splits_for(
        &client,
        &a.target.table,
        SplitSize {
            units: a.split_size_mb,
            unit_bytes: 1024 * 1024,
        },
        a.concurrency,
    )
    .await
    .map_err(|e: ScanError| e.to_string())?;
    let options = ScanOptions::up_to(now_ms());
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let splits = plan.splits.len();
    for split in plan.splits {
        let scanner = SplitScanner::new(
            client.clone(),
            a.target.table.clone(),
            split,
            options.clone(),
        )
        .map_err(|e| e.to_string())?;
        let sem = sem.clone();
        let prefetch = a.prefetch;
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            scan_split(scanner, prefetch).await
        });
    }
    let mut t = Totals::default();
    while let Some(r) = set.join_next().await {
        let s = r.map_err(|e| e.to_string())??;
        t.pages += s.pages;
        t.bytes += s.bytes;
        t.rows += s.rows;
        t.cells += s.cells;
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = client.stats();
    Ok(serde_json::json!({
        "table": a.target.table,
        "splits": splits,
        "concurrency": a.concurrency,
        "prefetch": a.prefetch,
        "pages": t.pages,
        "page_bytes": t.bytes,
        "rows": t.rows,
        "cells": t.cells,
        "elapsed_secs": secs,
        "rows_per_sec": t.rows as f64 / secs.max(1e-9),
        "requests": stats.requests,
        "bytes_received": stats.bytes_received,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a).await {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ots-bench-scan: {e}");
            ExitCode::from(1)
        }
    }
}
