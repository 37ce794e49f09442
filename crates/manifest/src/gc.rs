//! `otsarchive gc`: one of the two deleting paths (the other is [`crate::expire`], retention). It
//! removes what no manifest lists — data files and records of attempts the commit did not
//! choose, leases of finished processes, and abandoned (never committed) snapshots — once they
//! are older than a grace period. It never touches an
//! object a manifest lists, nor a snapshot that another process holds a live lease on: gc takes
//! the snapshot's lease itself while it deletes, so a resume cannot start beside it (and gc steps
//! back from one that did).

use std::collections::BTreeSet;
use std::time::Duration;

use ots_format::layout::{
    CHANGES_DIR, DATA_DIR, LEASES_DIR, PLAN_FILE, SPLITS_DIR, parse_lease_path,
};
use serde::Serialize;

use crate::lease::{LEASE_TTL, acquire, live_holder};
use crate::snapshot::{Listed, ManifestError, Snapshot, Snapshots};

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

/// A snapshot gc could not finish; the others were still collected.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GcFailure {
    pub snapshot_id: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub snapshots_seen: u64,
    pub removed: Vec<GcRemoval>,
    pub bytes_removed: u64,
    pub skipped: Vec<GcSkip>,
    pub failed: Vec<GcFailure>,
}

impl GcReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Collects (and unless `dry_run`, deletes) leftovers older than `grace`, judging ages and leases
/// at `now_ms`. Only a failure to list the destination is an error; a snapshot that cannot be
/// collected is reported in `failed` and the others are still collected.
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
        if let Err(e) = collect(&snap, cutoff, dry_run, now_ms, &mut report).await {
            report.failed.push(GcFailure {
                snapshot_id: id.clone(),
                error: e.to_string(),
            });
        }
    }
    Ok(report)
}

async fn collect(
    snap: &Snapshot,
    cutoff: i64,
    dry_run: bool,
    now_ms: i64,
    report: &mut GcReport,
) -> Result<(), ManifestError> {
    let id = snap.id().to_string();
    let skip = |report: &mut GcReport, reason: String| {
        report.skipped.push(GcSkip {
            snapshot_id: id.clone(),
            reason,
        })
    };
    if let Some(holder) = live_holder(&snap.leases().await?, None, now_ms) {
        skip(report, format!("in use: {holder}"));
        return Ok(());
    }
    // Hold the snapshot while deleting: a resume that starts now sees gc and refuses; one that
    // slipped in before is seen just below, and gc steps back.
    let guard = if dry_run {
        None
    } else {
        let guard = acquire(snap, "gc", true, LEASE_TTL)
            .await
            .map_err(|e| e.into_manifest_error(snap))?;
        if let Some(holder) = live_holder(&snap.leases().await?, Some(&guard.owner()), now_ms) {
            guard.release().await;
            skip(report, format!("in use: {holder}"));
            return Ok(());
        }
        Some(guard)
    };
    let me = guard.as_ref().map(|g| g.owner());
    let result = plan_and_delete(snap, cutoff, dry_run, me.as_deref(), report).await;
    if let Some(guard) = guard {
        guard.release().await;
    }
    let abandoned = result?;
    // An abandoned snapshot is gone: remove gc's own lease objects too, so no empty folder stays.
    if abandoned && let Some(me) = me {
        for l in snap.list(LEASES_DIR).await? {
            if parse_lease_path(&l.rel).is_some_and(|(owner, _)| owner == me) {
                snap.delete(&l.rel).await?;
            }
        }
    }
    Ok(())
}

/// Decides what goes and deletes it; returns whether the whole snapshot was abandoned and removed.
async fn plan_and_delete(
    snap: &Snapshot,
    cutoff: i64,
    dry_run: bool,
    me: Option<&str>,
    report: &mut GcReport,
) -> Result<bool, ManifestError> {
    let id = snap.id().to_string();
    let objects: Vec<Listed> = snap
        .list("")
        .await?
        .into_iter()
        // gc's own lease is not a leftover.
        .filter(|o| parse_lease_path(&o.rel).is_none_or(|(owner, _)| Some(owner) != me))
        .collect();
    let committed = snap.has_manifest().await?;
    let candidates = if committed {
        leftovers_of_committed(snap, &objects).await?
    } else {
        // Never committed: abandoned once nothing in it is younger than the grace period.
        if let Some(young) = objects.iter().find(|o| o.modified_ms > cutoff) {
            report.skipped.push(GcSkip {
                snapshot_id: id,
                reason: format!(
                    "not committed, but {} changed within the grace period (a backup may resume it)",
                    young.rel
                ),
            });
            return Ok(false);
        }
        objects
            .iter()
            .map(|o| (o.rel.clone(), o.size, "snapshot never committed"))
            .collect()
    };
    let mut doomed: Vec<(String, u64, &'static str)> = candidates
        .into_iter()
        .filter(|(rel, _, _)| {
            objects
                .iter()
                .any(|o| &o.rel == rel && o.modified_ms <= cutoff)
        })
        .collect();
    // The plan first, then records, then data, then leases: a gc cut short leaves a folder that
    // nothing can resume (no plan) and no record that names a deleted file.
    let rank = |rel: &str| {
        if rel == PLAN_FILE {
            0
        } else if rel.starts_with(&format!("{SPLITS_DIR}/"))
            || (rel.starts_with(&format!("{CHANGES_DIR}/")) && rel.ends_with(".json"))
        {
            1
        } else if rel.starts_with(&format!("{DATA_DIR}/"))
            || rel.starts_with(&format!("{CHANGES_DIR}/"))
        {
            2
        } else {
            3
        }
    };
    doomed.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
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
    Ok(!committed && !dry_run)
}

/// In a committed snapshot: data files and records the manifest does not list, and leases.
async fn leftovers_of_committed(
    snap: &Snapshot,
    objects: &[Listed],
) -> Result<Vec<(String, u64, &'static str)>, ManifestError> {
    let manifest = snap.read_manifest().await?;
    let listed: BTreeSet<&str> = manifest
        .files
        .iter()
        .chain(manifest.changes.iter().flat_map(|c| &c.files))
        .map(|f| f.path.as_str())
        .collect();
    let chosen_capture = manifest
        .changes
        .as_ref()
        .map(|c| ots_format::layout::capture_record_path(&c.attempt));
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
        } else if rel.starts_with(&format!("{CHANGES_DIR}/")) {
            let kept = listed.contains(rel) || chosen_capture.as_deref() == Some(rel);
            (!kept)
                .then_some("change file or record of a capture attempt the manifest does not list")
        } else if rel.starts_with(&format!("{LEASES_DIR}/")) {
            Some("lease of a finished process")
        } else {
            // plan.json, manifest.json and anything unknown stay.
            None
        };
        if let Some(reason) = reason {
            out.push((o.rel.clone(), o.size, reason));
        }
    }
    Ok(out)
}
