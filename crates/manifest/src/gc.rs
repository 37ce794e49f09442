//! `otsarchive gc`: the only code that deletes. It removes what no manifest lists — data files and
//! records of attempts the commit did not choose, expired leases, and abandoned (never committed)
//! snapshots — once they are older than a grace period, and never touches a snapshot that a live
//! lease says is in use, nor any object a manifest lists.

use std::collections::BTreeSet;
use std::time::Duration;

use ots_format::layout::{DATA_DIR, LEASES_DIR, PLAN_FILE, SPLITS_DIR};
use serde::Serialize;

use crate::snapshot::{ManifestError, Snapshot, Snapshots};

#[derive(Clone, Debug, Serialize)]
pub struct GcRemoval {
    pub snapshot_id: String,
    /// Relative to the snapshot folder.
    pub path: String,
    pub bytes: u64,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GcSkip {
    pub snapshot_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub snapshots_seen: u64,
    pub removed: Vec<GcRemoval>,
    pub bytes_removed: u64,
    pub skipped: Vec<GcSkip>,
}

/// Collects (and unless `dry_run`, deletes) leftovers older than `grace` at time `now_ms`.
pub async fn gc(
    snapshots: &Snapshots,
    grace: Duration,
    dry_run: bool,
    now_ms: i64,
) -> Result<GcReport, ManifestError> {
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    let cutoff = now_ms.saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    for id in snapshots.list_ids().await? {
        report.snapshots_seen += 1;
        let snap = snapshots.snapshot(&id);
        if let Some(l) = snap.leases().await?.into_iter().find(|l| l.is_live(now_ms)) {
            report.skipped.push(GcSkip {
                snapshot_id: id.clone(),
                reason: format!("in use: {}", l.describe()),
            });
            continue;
        }
        let objects = snap.list("").await?;
        let candidates = if snap.has_manifest().await? {
            leftovers_of_committed(&snap, &objects).await?
        } else {
            // Never committed: abandoned once nothing in it is younger than the grace period.
            if let Some(young) = objects.iter().find(|o| o.modified_ms > cutoff) {
                report.skipped.push(GcSkip {
                    snapshot_id: id.clone(),
                    reason: format!(
                        "not committed, but {} changed within the grace period (a backup may resume it)",
                        young.rel
                    ),
                });
                continue;
            }
            objects
                .iter()
                .map(|o| (o.rel.clone(), o.size, "snapshot never committed"))
                .collect()
        };
        // Only what is older than the grace period; the plan goes last so that an interrupted
        // gc leaves a folder that is still recognisably an uncommitted snapshot.
        let mut doomed: Vec<(String, u64, &'static str)> = candidates
            .into_iter()
            .filter(|(rel, _, _)| {
                objects
                    .iter()
                    .any(|o| &o.rel == rel && o.modified_ms <= cutoff)
            })
            .collect();
        doomed.sort_by_key(|(rel, _, _)| (rel == PLAN_FILE, rel.clone()));
        for (rel, bytes, reason) in doomed {
            if !dry_run {
                snap.delete(&rel).await?;
            }
            report.bytes_removed += bytes;
            report.removed.push(GcRemoval {
                snapshot_id: id.clone(),
                path: rel,
                bytes,
                reason,
            });
        }
    }
    Ok(report)
}

/// In a committed snapshot: data files and records the manifest does not list, and leases.
async fn leftovers_of_committed(
    snap: &Snapshot,
    objects: &[crate::snapshot::Listed],
) -> Result<Vec<(String, u64, &'static str)>, ManifestError> {
    let manifest = snap.read_manifest().await?;
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let chosen: BTreeSet<String> = manifest
        .splits
        .iter()
        .map(|s| {
            if s.attempt.is_empty() {
                ots_format::layout::record_path_v1(s.id)
            } else {
                ots_format::layout::record_path(s.id, &s.attempt)
            }
        })
        .collect();
    let mut out = Vec::new();
    for o in objects {
        let rel = o.rel.as_str();
        let reason = if rel.starts_with(&format!("{DATA_DIR}/")) {
            (!listed.contains(rel)).then_some("data file of an attempt the manifest does not list")
        } else if rel.starts_with(&format!("{SPLITS_DIR}/")) {
            (!chosen.contains(rel)).then_some("record of an attempt the manifest does not list")
        } else if rel.starts_with(&format!("{LEASES_DIR}/")) {
            Some("lease of a finished process")
        } else {
            // plan.json, manifest.json, signatures and anything unknown stay.
            None
        };
        if let Some(reason) = reason {
            out.push((o.rel.clone(), o.size, reason));
        }
    }
    Ok(out)
}
