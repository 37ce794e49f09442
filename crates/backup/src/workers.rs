//! One snapshot, many machines: the plan written alone (`--plan-only`), workers that each scan
//! their share of the splits (`--worker K/N`) and never commit, one commit at the end, and the
//! status of a snapshot in flight, readable from any machine.
//!
//! Nothing new is needed from the commit protocol: a split attempt's record is what marks a split
//! done, whoever wrote it; the commit chooses one record per split. Leases get a scope (see
//! `ots_manifest::lease`): worker K holds `worker K/N`, which excludes another copy of worker K
//! and any exclusive holder (gc, a whole-snapshot resume), but not the other workers; the
//! committer holds `commit`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ots_format::layout::{MANIFEST_FILE, PLAN_FILE};
use ots_format::time::unix_millis;
use ots_format::{Manifest, Plan, WorkerSlot, choose_record};
use ots_manifest::lease::{self, Lease, LeaseGuard};
use ots_manifest::{LEASE_TTL, LeaseError, Snapshot, Snapshots};
use ots_wire::OtsClient;
use ots_writer::Destination;
use serde::Serialize;

use crate::{BackupConfig, BackupError, Progress, plan};

/// What `--plan-only` wrote.
#[derive(Clone, Debug)]
pub struct PlanOutcome {
    pub snapshot_id: String,
    pub url: String,
    pub plan: Plan,
}

/// Writes the plan of a new snapshot (full or incremental) and nothing else: no split is
/// scanned, no change captured. Workers and the commit take it from there.
pub async fn plan_backup(
    client: &OtsClient,
    dest: Destination,
    cfg: &BackupConfig,
) -> Result<PlanOutcome, BackupError> {
    cfg.validate()?;
    let snapshots = Snapshots::new(dest);
    let (snapshot, plan) = match &cfg.incremental_from {
        Some(parent) => plan::new_incremental_plan(client, &snapshots, cfg, parent).await?,
        None => plan::new_plan(client, &snapshots, cfg).await?,
    };
    crate::sign(&snapshot, &[PLAN_FILE], cfg.sign_key.as_deref()).await?;
    Ok(PlanOutcome {
        snapshot_id: plan.snapshot_id.clone(),
        url: snapshot.url(),
        plan,
    })
}

/// What one worker did.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerOutcome {
    pub snapshot_id: String,
    pub url: String,
    pub worker: String,
    /// Splits of the plan that are this worker's.
    pub splits_assigned: usize,
    /// Of those, done before this run (by an earlier run of this worker, or anyone).
    pub splits_done_before: usize,
    /// Scanned by this run.
    pub splits_scanned: usize,
    /// The snapshot was committed already: nothing to do.
    pub already_committed: bool,
}

/// How long a worker waits for the lease of a dead copy of itself to expire.
const SAME_WORKER_WAIT: Duration = Duration::from_secs(150);

/// Takes a scoped lease; while it is held by a copy of the same scope that may be dead (a
/// retried pod on another machine), waits for it to expire rather than failing at once.
async fn acquire_waiting(
    snapshot: &Snapshot,
    command: &str,
    scope: &str,
    take_over: bool,
) -> Result<LeaseGuard, BackupError> {
    let deadline = tokio::time::Instant::now() + SAME_WORKER_WAIT;
    loop {
        match lease::acquire_scoped(snapshot, command, Some(scope), take_over, LEASE_TTL).await {
            Ok(g) => return Ok(g),
            Err(LeaseError::Held { holder, .. })
                if tokio::time::Instant::now() < deadline
                    && !exclusive_lease_is_live(snapshot).await =>
            {
                tracing::warn!("waiting for the lease of {holder} to expire");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a live exclusive lease (gc, a whole-snapshot resume) is there: worth no wait.
async fn exclusive_lease_is_live(snapshot: &Snapshot) -> bool {
    let now = unix_millis(SystemTime::now());
    snapshot
        .leases()
        .await
        .map(|ls| ls.iter().any(|l| l.scope.is_none() && l.is_live(now)))
        .unwrap_or(false)
}

/// Scans worker `slot`'s share of snapshot `cfg.resume`'s splits (those without a record) and
/// writes their records; never commits. A committed snapshot is left alone.
pub async fn run_worker(
    client: &OtsClient,
    dest: Destination,
    cfg: &BackupConfig,
    slot: WorkerSlot,
    progress: Arc<Progress>,
) -> Result<WorkerOutcome, BackupError> {
    cfg.validate()?;
    let Some(id) = &cfg.resume else {
        return Err(BackupError::Usage(
            "--worker K/N works on a planned snapshot: pass --resume ID (the id --plan-only printed)"
                .into(),
        ));
    };
    let snapshot = Snapshots::new(dest).snapshot(id);
    let mut outcome = WorkerOutcome {
        snapshot_id: id.clone(),
        url: snapshot.url(),
        worker: slot.to_string(),
        splits_assigned: 0,
        splits_done_before: 0,
        splits_scanned: 0,
        already_committed: false,
    };
    if snapshot.has_manifest().await? {
        outcome.already_committed = true;
        return Ok(outcome);
    }
    let plan = plan::resume_plan(&snapshot, cfg).await?;
    if let Ok(mut s) = progress.snapshot_id.lock() {
        *s = Some(id.clone());
    }
    let guard = acquire_waiting(
        &snapshot,
        &format!("backup --worker {slot}"),
        &slot.lease_scope(),
        cfg.take_over,
    )
    .await?;
    let plan = Arc::new(plan);
    outcome.splits_assigned = plan.splits.iter().filter(|s| slot.owns(s.id)).count();
    let result = crate::scan_splits(client, &snapshot, plan, cfg, progress, |s| slot.owns(s)).await;
    guard.release().await;
    let (_, before) = result?;
    outcome.splits_done_before = before;
    outcome.splits_scanned = outcome.splits_assigned - before;
    Ok(outcome)
}

/// What `commit` did.
#[derive(Clone, Debug)]
pub struct CommitOutcome {
    pub snapshot_id: String,
    pub url: String,
    pub manifest: Manifest,
    /// It was committed before: the manifest found, nothing written.
    pub already_committed: bool,
}

/// How `commit` works.
#[derive(Clone, Debug)]
pub struct CommitOptions {
    pub take_over: bool,
    /// For a snapshot that captures changes: how the stream is read.
    pub capture: ots_scan::CaptureOptions,
    /// The memory budget of the capture (`--memory-mb`).
    pub memory_bytes: usize,
    /// Sign `manifest.json` (and `plan.json`, if unsigned) with this key.
    pub sign_key: Option<Arc<ots_manifest::signing::SigningKey>>,
    /// The master key of an encrypted snapshot: its change files are written at the commit.
    pub encryption: Option<ots_crypto::FileEncryptor>,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            take_over: false,
            capture: ots_scan::CaptureOptions::default(),
            memory_bytes: crate::DEFAULT_MEMORY_MB << 20,
            sign_key: None,
            encryption: None,
        }
    }
}

/// Commits `snapshot` once every split has a record: captures the changes first when the plan
/// captures changes (the consistency point comes after the last scan; that needs `client`), then
/// writes the manifest create-once. A split without a record is an error naming it and its worker
/// (as the workers' leases tell N); committing a committed snapshot returns its manifest.
pub async fn commit_snapshot(
    client: Option<&OtsClient>,
    snapshot: &Snapshot,
    options: &CommitOptions,
    progress: Arc<Progress>,
) -> Result<CommitOutcome, BackupError> {
    let id = snapshot.id().to_string();
    let key = options.sign_key.as_deref();
    if snapshot.has_manifest().await? {
        // A commit run again signs what a crash left unsigned.
        crate::sign(snapshot, &[PLAN_FILE, MANIFEST_FILE], key).await?;
        return Ok(CommitOutcome {
            url: snapshot.url(),
            manifest: snapshot.read_manifest().await?,
            snapshot_id: id,
            already_committed: true,
        });
    }
    let plan = snapshot.read_plan().await.map_err(|e| match e {
        ots_manifest::ManifestError::NotFound { url, .. } => BackupError::Usage(format!(
            "cannot commit {id}: no plan.json under {url} (wrong destination or id?)"
        )),
        other => other.into(),
    })?;
    let client = match (client, &plan.changes) {
        (Some(c), _) => {
            if c.config().instance != plan.source.instance {
                return Err(BackupError::Usage(format!(
                    "snapshot {id} was planned on instance '{}', not '{}'",
                    plan.source.instance,
                    c.config().instance
                )));
            }
            Some(c)
        }
        (None, Some(_)) => {
            return Err(BackupError::Usage(format!(
                "snapshot {id} captures changes from the table's stream, which commit reads: give --endpoint and --instance"
            )));
        }
        (None, None) => None,
    };
    let records = snapshot.records().await?;
    let missing: Vec<u32> = plan
        .splits
        .iter()
        .filter(|s| choose_record(s, &records).is_none())
        .map(|s| s.id)
        .collect();
    if !missing.is_empty() {
        let count = worker_count(&snapshot.leases().await?);
        let named = missing
            .iter()
            .map(|s| match count {
                Some(n) => format!("{s} (worker {})", WorkerSlot::of_split(*s, n)),
                None => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BackupError::NotReady {
            detail: format!(
                "{} of {} splits have no record: {named}; run those workers again (otsarchive backup --table {} --to DEST --resume {id} --worker K/N), then commit",
                missing.len(),
                plan.splits.len(),
                plan.source.table.table_name
            ),
            id,
        });
    }
    // The commit writes the change files: they are encrypted as the plan says, or not at all.
    if plan.changes.is_some() {
        let mut keyed = BackupConfig::new(
            plan.source.table.table_name.clone(),
            plan.source.endpoint.clone(),
            plan.source.instance.clone(),
        );
        keyed.parquet.encryption = options.encryption.clone();
        crate::plan::check_resume_encryption(&plan, &keyed)?;
    }
    let guard = acquire_waiting(snapshot, "commit", "commit", options.take_over).await?;
    let mut cfg = BackupConfig::new(
        plan.source.table.table_name.clone(),
        plan.source.endpoint.clone(),
        plan.source.instance.clone(),
    );
    cfg.capture = options.capture;
    cfg.memory_bytes = options.memory_bytes;
    cfg.parquet.encryption = options.encryption.clone();
    let plan = Arc::new(plan);
    let result = async {
        let capture = match (&plan.changes, client) {
            (Some(c), Some(client)) => {
                Some(crate::capture(client, snapshot, &plan, c, &cfg, &progress).await?)
            }
            _ => None,
        };
        let m = crate::commit::commit(snapshot, &plan, &records, capture.as_ref()).await?;
        crate::sign(snapshot, &[PLAN_FILE, MANIFEST_FILE], key).await?;
        Ok::<_, BackupError>(m)
    }
    .await;
    guard.release().await;
    Ok(CommitOutcome {
        snapshot_id: id,
        url: snapshot.url(),
        manifest: result?,
        already_committed: false,
    })
}

/// N, from the workers' leases (the most recent one's), when any worker has run.
fn worker_count(leases: &[Lease]) -> Option<u32> {
    leases
        .iter()
        .filter_map(|l| {
            let slot = WorkerSlot::from_lease_scope(l.scope.as_deref()?)?;
            Some((l.written_at_ms(), slot.count))
        })
        .max()
        .map(|(_, n)| n)
}

/// One worker's part of a snapshot in flight.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStatus {
    pub worker: String,
    pub splits: usize,
    pub splits_done: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The last lease renewal a copy of this worker wrote (its heartbeat), RFC 3339.
    pub last_heartbeat: Option<String>,
    /// `running` (a live lease), `finished` (released), `gone` (its lease expired unreleased: a
    /// copy died), or `not started`.
    pub state: String,
}

/// A snapshot in flight, as any machine can read it from the store.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotStatus {
    pub snapshot_id: String,
    pub url: String,
    pub committed: bool,
    pub table: String,
    pub splits: usize,
    pub splits_done: usize,
    pub rows: u64,
    pub bytes: u64,
    /// N: given, or as the workers' leases tell it; `None` when no worker has run.
    pub workers: Option<u32>,
    pub per_worker: Vec<WorkerStatus>,
    /// Other holders (a whole-snapshot backup, the committer, gc): `command (state, last
    /// heartbeat)`.
    pub others: Vec<String>,
}

/// Reads the plan, the split records and the leases of snapshot `snapshot`.
pub async fn snapshot_status(
    snapshot: &Snapshot,
    workers: Option<u32>,
) -> Result<SnapshotStatus, BackupError> {
    let plan = snapshot.read_plan().await?;
    let committed = snapshot.has_manifest().await?;
    let records = snapshot.records().await?;
    let leases = snapshot.leases().await?;
    let count = workers.or_else(|| worker_count(&leases));
    let now = unix_millis(SystemTime::now());
    let mut status = SnapshotStatus {
        snapshot_id: snapshot.id().to_string(),
        url: snapshot.url(),
        committed,
        table: plan.source.table.table_name.clone(),
        splits: plan.splits.len(),
        splits_done: 0,
        rows: 0,
        bytes: 0,
        workers: count,
        per_worker: Vec::new(),
        others: Vec::new(),
    };
    let mut per: BTreeMap<u32, WorkerStatus> = BTreeMap::new();
    if let Some(n) = count {
        for k in 0..n {
            per.insert(
                k,
                WorkerStatus {
                    worker: WorkerSlot { index: k, count: n }.to_string(),
                    state: "not started".into(),
                    ..Default::default()
                },
            );
        }
    }
    for s in &plan.splits {
        let done = choose_record(s, &records);
        let (rows, bytes) = done.map_or((0, 0), |r| {
            (r.stats.rows, r.files.iter().map(|f| f.bytes).sum::<u64>())
        });
        if done.is_some() {
            status.splits_done += 1;
            status.rows += rows;
            status.bytes += bytes;
        }
        if let Some(n) = count
            && let Some(w) = per.get_mut(&WorkerSlot::of_split(s.id, n).index)
        {
            w.splits += 1;
            if done.is_some() {
                w.splits_done += 1;
                w.rows += rows;
                w.bytes += bytes;
            }
        }
    }
    // The newest renewal per owner tells that owner's state.
    let mut newest: BTreeMap<&str, &Lease> = BTreeMap::new();
    for l in &leases {
        let e = newest.entry(l.owner.as_str()).or_insert(l);
        if l.renewal > e.renewal {
            *e = l;
        }
    }
    let state_of = |l: &Lease| {
        if l.released {
            "finished"
        } else if l.is_live(now) && !l.holder_is_gone() {
            "running"
        } else {
            "gone"
        }
    };
    for l in newest.values() {
        let when = ots_format::time::rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(l.written_at_ms().max(0) as u64),
        );
        let slot = l.scope.as_deref().and_then(WorkerSlot::from_lease_scope);
        match slot.and_then(|s| per.get_mut(&s.index).filter(|w| w.worker == s.to_string())) {
            Some(w) => {
                // Of several copies of a worker, the latest heartbeat speaks.
                if w.last_heartbeat
                    .as_deref()
                    .is_none_or(|h| h < when.as_str())
                {
                    w.last_heartbeat = Some(when);
                    w.state = state_of(l).into();
                }
            }
            None => status.others.push(format!(
                "{} ({}, last heartbeat {when})",
                l.command,
                state_of(l)
            )),
        }
    }
    status.per_worker = per.into_values().collect();
    Ok(status)
}
