//! `ots-emulator`: a local Tablestore server. Prints `listening on http://ADDR` once ready.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ots_emulator::{Emulator, FaultConfig, PageLimits};

/// A protocol-faithful local Tablestore (OTS) server, for tests and demos.
#[derive(Parser, Debug)]
#[command(name = "ots-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed when ready).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Instance name clients must send (x-ots-instancename).
    #[arg(long, default_value = "emulator")]
    instance: String,
    /// AccessKey id clients sign with.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID")]
    access_key_id: String,
    /// AccessKey secret; prefer the environment variable, which other users cannot see.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: String,
    /// Probability of answering a throttling error (OTSServerBusy, OTSNotEnoughCapacityUnit,
    /// OTSQuotaExhausted).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Probability of answering a 5xx (OTSInternalServerError, OTSServerUnavailable, OTSTimeout).
    #[arg(long, default_value_t = 0.0)]
    server_error_rate: f64,
    /// Probability that a BatchWriteRow row fails (OTSServerBusy / OTSRowOperationConflict) and is
    /// not written.
    #[arg(long, default_value_t = 0.0)]
    row_error_rate: f64,
    /// Milliseconds added to every request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability of closing the connection without answering.
    #[arg(long, default_value_t = 0.0)]
    drop_connection_rate: f64,
    /// Read capacity units per second for the instance; above it, OTSNotEnoughCapacityUnit.
    #[arg(long)]
    read_cu_per_sec: Option<u32>,
    /// Write capacity units per second for the instance.
    #[arg(long)]
    write_cu_per_sec: Option<u32>,
    /// Seed for fault injection, for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Fail every BatchWriteRow row whose primary key holds this STRING value, for good
    /// (OTSParameterInvalid).
    #[arg(long)]
    fail_rows_with_key: Option<String>,
    /// Rows per GetRange page at most (the service uses 5000).
    #[arg(long, default_value_t = 5000)]
    page_max_rows: usize,
    /// Bytes per GetRange page at most (the service uses 4 MiB).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    page_max_bytes: usize,
    /// Opt-in: answer a row with more than N cells in GetRange parts of N cells, continued with
    /// `next_token` (the protocol allows it; the service's documented default returns whole rows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    wide_row_token_cells: Option<u64>,
    /// Split every open stream shard of a table after every N records its stream logs, so that
    /// shard splits happen on their own during a run (0, the default, never splits). Shards can also
    /// be split on demand with the signed admin action `POST /AdminSplitStreamShards`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    stream_split_every: u64,
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let faults = FaultConfig {
        throttle_rate: args.throttle_rate,
        server_error_rate: args.server_error_rate,
        row_error_rate: args.row_error_rate,
        drop_connection_rate: args.drop_connection_rate,
        latency: Duration::from_millis(args.latency_ms),
        read_cu_per_sec: args.read_cu_per_sec,
        write_cu_per_sec: args.write_cu_per_sec,
        seed: args.seed,
        fail_rows_with_key: args.fail_rows_with_key,
    };
    let started = Emulator::builder()
        .listen(args.listen)
        .instance(&args.instance)
        .credentials(&args.access_key_id, &args.access_key_secret)
        .faults(faults)
        .stream_split_every(args.stream_split_every)
        .page_limits(PageLimits {
            max_rows: args.page_max_rows,
            max_bytes: args.page_max_bytes,
            wide_row_cells: args
                .wide_row_token_cells
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
        .start()
        .await;
    let emu = match started {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ots-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    // Exactly one line on stdout: wrappers parse it to learn the port.
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", emu.endpoint())
        .and_then(|_| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    drop(out);
    wait_for_signal().await;
    emu.shutdown().await;
    ExitCode::SUCCESS
}
