//! `otsarchive commit URL` and `otsarchive status URL`: the end and the view of a snapshot whose
//! splits are scanned by many workers (`backup --plan-only`, then `backup --resume ID --worker
//! K/N` on each machine).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ots_backup::Progress;
use ots_backup::workers::{CommitOptions, commit_snapshot, snapshot_status};

use crate::common::{CliError, DestArgs, GlobalArgs, client, human_bytes};
use crate::snapshot_name::open_snapshot;
use crate::text::{Align, Table, count, thousands};

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The planned snapshot: DEST/SNAPSHOT_ID (as `backup --plan-only` printed it).
    pub snapshot: String,
    /// Commit even if another committer's lease is live (only when you are sure it is gone).
    #[arg(long)]
    pub take_over: bool,
    /// For a snapshot that captures changes: how long after the consistency point a caught-up
    /// stream shard is trusted to hold every record up to it, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub stream_settle_ms: u64,
    /// Memory budget of the change capture in MiB.
    #[arg(long, default_value_t = ots_backup::DEFAULT_MEMORY_MB)]
    pub memory_mb: usize,
    /// Sign manifest.json (and plan.json, if unsigned) with this Ed25519 seed file.
    #[arg(long, value_name = "PATH")]
    pub sign_key_file: Option<std::path::PathBuf>,
    /// The master key of an encrypted snapshot (its change files are written at the commit).
    #[command(flatten)]
    pub keys: crate::keys_cmd::KeyArgs,
    #[command(flatten)]
    pub dest: DestArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The snapshot: DEST/SNAPSHOT_ID.
    pub snapshot: String,
    /// How many workers share it (default: as their leases tell).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// Writes the manifest once every split has a record; a split without one is an error naming
/// it and its worker. A committed snapshot is left as it is (exit 0).
pub async fn commit(g: &GlobalArgs, a: CommitArgs) -> Result<(), CliError> {
    let snap = open_snapshot(&a.snapshot, &a.dest, g).await?;
    // The table's stream is read only for a snapshot that captures changes.
    let client = match (&g.endpoint, &g.instance) {
        (Some(_), Some(_)) => Some(client(g)?),
        _ => None,
    };
    let options = CommitOptions {
        take_over: a.take_over,
        capture: ots_scan::CaptureOptions {
            settle: Duration::from_millis(a.stream_settle_ms),
            ..Default::default()
        },
        memory_bytes: a.memory_mb.saturating_mul(1 << 20),
        sign_key: crate::keys_cmd::signing_key(a.sign_key_file.as_deref())?,
        encryption: a.keys.encryptor(g)?,
    };
    let o = commit_snapshot(
        client.as_ref(),
        &snap,
        &options,
        Arc::new(Progress::default()),
    )
    .await?;
    let m = &o.manifest;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "snapshot_id": o.snapshot_id,
                "url": o.url,
                "already_committed": o.already_committed,
                "rows": m.totals.rows,
                "files": m.totals.files,
                "bytes": m.totals.bytes,
                "splits": m.splits.len(),
                "consistency_point": m.changes.as_ref().map(|c| c.consistency_point.time.clone()),
            })
        );
    } else {
        if !g.quiet {
            eprintln!(
                "{} {}: {}, {}, {} in {}{}",
                if o.already_committed {
                    "already committed:"
                } else {
                    "committed"
                },
                o.snapshot_id,
                count(m.totals.rows, "row"),
                count(m.totals.files, "file"),
                human_bytes(m.totals.bytes),
                count(m.splits.len() as u64, "split"),
                m.changes
                    .as_ref()
                    .map(|c| format!("; exact as of {}", c.consistency_point.time))
                    .unwrap_or_default()
            );
        }
        println!("{}", o.url);
    }
    Ok(())
}

/// Shows a snapshot in flight: splits done per worker, rows, bytes, each worker's last heartbeat.
pub async fn status(g: &GlobalArgs, a: StatusArgs) -> Result<(), CliError> {
    if a.workers == Some(0) {
        return Err(CliError::Usage("--workers must be at least 1".into()));
    }
    let snap = open_snapshot(&a.snapshot, &a.dest, g).await?;
    let s = snapshot_status(&snap, a.workers).await?;
    if g.json {
        println!("{}", serde_json::to_value(&s).unwrap_or_default());
        return Ok(());
    }
    println!(
        "snapshot {} of '{}': {}; {} of {} splits done, {}, {}",
        s.snapshot_id,
        s.table,
        if s.committed {
            "committed"
        } else {
            "not committed"
        },
        thousands(s.splits_done as u64),
        thousands(s.splits as u64),
        count(s.rows, "row"),
        human_bytes(s.bytes)
    );
    if !s.per_worker.is_empty() {
        let mut t = Table::new(&[
            ("WORKER", Align::Left),
            ("SPLITS", Align::Right),
            ("DONE", Align::Right),
            ("ROWS", Align::Right),
            ("SIZE", Align::Right),
            ("STATE", Align::Left),
            ("LAST HEARTBEAT", Align::Left),
        ]);
        for w in &s.per_worker {
            t.row(vec![
                w.worker.clone(),
                thousands(w.splits as u64),
                thousands(w.splits_done as u64),
                thousands(w.rows),
                human_bytes(w.bytes),
                w.state.clone(),
                w.last_heartbeat.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        println!();
        print!("{}", t.render());
    } else if !s.committed {
        println!("no worker has run yet (pass --workers N to see each one's share)");
    }
    for o in &s.others {
        println!("also: {o}");
    }
    Ok(())
}
