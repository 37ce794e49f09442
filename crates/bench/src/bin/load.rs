//! `ots-bench-load`: creates the standard benchmark table (ots_datagen) and loads N rows into it
//! through our BatchWriteRow path; with `--row-bytes`, a table of rows of that size under one
//! partition key instead. `--stream-hours H` enables the table's stream; `--existing` loads into a
//! table that exists (with another `--seed`: the same keys, new values — a stream of changes).
//! Prints one JSON line on stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ots_bench::Target;
use ots_datagen::{DatasetSpec, create_and_load, create_and_load_blobs};

#[derive(Parser, Debug)]
#[command(name = "ots-bench-load")]
struct Args {
    #[command(flatten)]
    target: Target,
    /// Rows to generate.
    #[arg(long)]
    rows: u64,
    /// Load rows of this many bytes of incompressible binary cells (≤ 1 MiB each), all under
    /// one partition key, instead of the standard table.
    #[arg(long)]
    row_bytes: Option<usize>,
    /// Seed of the generator (same seed, same data).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// BatchWriteRow requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Enable the table's stream with this retention in hours, once the rows are loaded (the
    /// initial load is not logged).
    #[arg(long)]
    stream_hours: Option<i32>,
    /// Do not create the table: load into the existing one.
    #[arg(long)]
    existing: bool,
    /// Progress line on stderr every this many seconds (0: none).
    #[arg(long, default_value_t = 10)]
    progress_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    let client = match a.target.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ots-bench-load: {e}");
            return ExitCode::from(2);
        }
    };
    let spec = DatasetSpec::new(a.rows, a.seed);
    let loaded = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let reporter = (a.progress_secs > 0).then(|| {
        let loaded = loaded.clone();
        let total = a.rows;
        let every = Duration::from_secs(a.progress_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let n = loaded.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "ots-bench-load: {n}/{total} rows in {secs:.0}s ({:.0} rows/s)",
                    n as f64 / secs.max(0.001)
                );
            }
        })
    });
    let result = if a.existing {
        let rows = (0..spec.rows).map(move |i| ots_datagen::row(&spec, i));
        ots_datagen::load_rows(
            &client,
            &a.target.table,
            rows,
            a.concurrency,
            loaded.clone(),
        )
        .await
    } else {
        load_new(&client, &a, &spec, loaded.clone()).await
    };
    if let Some(r) = reporter {
        r.abort();
    }
    if let Err(e) = result {
        eprintln!("ots-bench-load: {e}");
        return ExitCode::from(1);
    }
    let secs = started.elapsed().as_secs_f64();
    let rows = loaded.load(Ordering::Relaxed);
    let stats = client.stats();
    println!(
        "{}",
        serde_json::json!({
            "table": a.target.table,
            "rows": rows,
            "seed": a.seed,
            "row_bytes": a.row_bytes,
            "base_ts_ms": spec.base_ts_ms,
            "concurrency": a.concurrency,
            "elapsed_secs": secs,
            "rows_per_sec": rows as f64 / secs.max(1e-9),
            "requests": stats.requests,
            "retries": stats.retries,
            "bytes_sent": stats.bytes_sent,
        })
    );
    ExitCode::SUCCESS
}

/// Creates the table (with its stream if asked) and loads it.
async fn load_new(
    client: &ots_wire::OtsClient,
    a: &Args,
    spec: &DatasetSpec,
    loaded: Arc<AtomicU64>,
) -> Result<(), ots_datagen::LoadError> {
    let result = match a.row_bytes {
        Some(bytes) => {
            create_and_load_blobs(
                client,
                &a.target.table,
                spec,
                bytes,
                a.concurrency,
                loaded.clone(),
            )
            .await
        }
        None => create_and_load(client, &a.target.table, spec, a.concurrency, loaded).await,
    };
    result?;
    if let Some(hours) = a.stream_hours {
        client
            .update_table(&ots_wire::pb::UpdateTableRequest {
                table_name: a.target.table.clone(),
                stream_spec: Some(ots_wire::pb::StreamSpecification {
                    enable_stream: true,
                    expiration_time: Some(hours),
                    columns_to_get: Vec::new(),
                }),
                ..Default::default()
            })
            .await?;
    }
    Ok(())
}
