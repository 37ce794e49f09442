//! The commit: pick one record per split by the format's deterministic rule, assemble the
//! manifest, write it create-once. No deletes: data files of attempts the manifest does not list
//! stay until `otsarchive gc` removes them. A second committer finds the manifest there and
//! keeps it.

use std::collections::HashSet;
use std::time::SystemTime;

use ots_format::time::rfc3339;
use ots_format::{CaptureRecord, Manifest, Plan, SplitRecord, choose_record};
use ots_manifest::{Committed, Snapshot};

use crate::BackupError;

/// Defence in depth before the commit point: the plan is still there and every file the manifest
/// will list exists (a listing first; what it does not show is checked one by one, since a
/// listing may be stale).
async fn check_files_present(
    snapshot: &Snapshot,
    plan: &Plan,
    chosen: &[&SplitRecord],
    capture: Option<&CaptureRecord>,
) -> Result<(), BackupError> {
    if snapshot.read_plan().await.ok().as_ref() != Some(plan) {
        return Err(BackupError::Vanished {
            id: plan.snapshot_id.clone(),
            what: "plan.json".into(),
        });
    }
    let listed: HashSet<String> = snapshot
        .list_data_files()
        .await?
        .into_iter()
        .map(|l| l.rel)
        .collect();
    let changes = capture.map(|c| c.files.as_slice()).unwrap_or_default();
    for f in chosen.iter().flat_map(|r| &r.files).chain(changes) {
        if !listed.contains(&f.path) && !snapshot.exists(&f.path).await? {
            return Err(BackupError::Vanished {
                id: plan.snapshot_id.clone(),
                what: f.path.clone(),
            });
        }
    }
    Ok(())
}

/// Commits `plan`'s snapshot from the records found on the store plus `own` (the records this
/// process wrote: a stale listing may not show them yet).
pub(crate) async fn commit(
    snapshot: &Snapshot,
    plan: &Plan,
    own: &[SplitRecord],
    capture: Option<&CaptureRecord>,
) -> Result<Manifest, BackupError> {
    if plan.changes.is_some() != capture.is_some() {
        return Err(BackupError::Usage(format!(
            "snapshot {}: the plan and the capture disagree on whether changes were captured",
            plan.snapshot_id
        )));
    }
    let mut records = snapshot.records().await?;
    for r in own {
        if !records
            .iter()
            .any(|x| x.split.id == r.split.id && x.attempt == r.attempt)
        {
            records.push(r.clone());
        }
    }
    let records: Vec<SplitRecord> = records
        .into_iter()
        .filter(|r| r.snapshot_id == plan.snapshot_id)
        .collect();
    let mut chosen = Vec::with_capacity(plan.splits.len());
    let mut missing = Vec::new();
    for s in &plan.splits {
        match choose_record(s, &records) {
            Some(r) => chosen.push(r),
            None => missing.push(s.id),
        }
    }
    if !missing.is_empty() {
        return Err(BackupError::Incomplete {
            id: plan.snapshot_id.clone(),
            missing,
        });
    }
    check_files_present(snapshot, plan, &chosen, capture).await?;
    let manifest = Manifest::assemble(plan, &chosen, capture, rfc3339(SystemTime::now()));
    match snapshot.commit_manifest(&manifest).await? {
        Committed::Written => Ok(manifest),
        Committed::AlreadyCommitted(theirs) => {
            tracing::info!(
                "snapshot {} was committed by another process; keeping its manifest",
                plan.snapshot_id
            );
            Ok(*theirs)
        }
    }
}
