//! `otsarchive expire`: retention. Deletes committed snapshots that no retention policy keeps
//! (policies apply per source table), and snapshots that were never committed once they are older
//! than a grace period — but never a snapshot that a kept incremental depends on.
//!
//! Two parts. [`select`] is the decision, a pure function over [`Entry`]s (id, table, time, chain
//! links), so every policy is unit-tested without a store. [`expire`] lists the destination, asks
//! [`select`], and deletes what it says over the `ObjectStore`: children before parents, and in
//! each snapshot `manifest.json` first, so a snapshot cut short never looks committed. A delete
//! the store refuses (a WORM bucket before the retention date) is reported and expire goes on.

use std::collections::BTreeMap;
use std::time::Duration;

use ots_format::layout::{
    CHANGES_DIR, LEASES_DIR, MANIFEST_FILE, PLAN_FILE, SPLITS_DIR, parse_lease_path,
};
use serde::Serialize;

use crate::lease::{LEASE_TTL, acquire, live_holder};
use crate::snapshot::{Listed, ManifestError, Snapshot, Snapshots};

const DAY_MS: i64 = 86_400_000;

/// What to keep. A committed snapshot is kept when ANY given policy keeps it (restic's rule);
/// at least one must be given (the CLI refuses none, and `keep_last` / `keep_daily` of 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The newest N committed snapshots of each table.
    pub keep_last: Option<u32>,
    /// Every committed snapshot whose time is within this of now.
    #[serde(serialize_with = "ser_duration")]
    pub keep_within: Option<Duration>,
    /// The newest committed snapshot of each of the last N UTC days that have one, per table.
    pub keep_daily: Option<u32>,
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&duration_text(*d)),
        None => s.serialize_none(),
    }
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.keep_within.is_none() && self.keep_daily.is_none()
    }

    /// `keep-last 3, keep-within 7d`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.keep_last {
            parts.push(format!("keep-last {n}"));
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("keep-within {}", duration_text(d)));
        }
        if let Some(n) = self.keep_daily {
            parts.push(format!("keep-daily {n}"));
        }
        parts.join(", ")
    }
}

/// A duration in the largest unit that divides it: `2w`, `30d`, `12h`, `90m`, `45s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(secs) {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

/// Where a snapshot stands, as [`select`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    Committed,
    /// Never committed. `Some(why)`: it must stay (changed within the grace period, or a live
    /// lease: a backup may still finish it), and so must the chain it would extend. `None`:
    /// abandoned, to be deleted.
    Unfinished(Option<String>),
}

/// One snapshot, as [`select`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub snapshot_id: String,
    /// The source instance (instance name and endpoint): tables of one name on two instances
    /// (production and staging, say) backed up to one destination are two histories.
    pub source: String,
    /// The source table's name (policies apply per table of a source).
    pub table: String,
    /// The instant the snapshot restores to, ms since the epoch: the consistency point T_c of a
    /// link of a chain, else the snapshot time T.
    pub time_ms: i64,
    pub state: EntryState,
    /// An incremental's parent (from the manifest, or the plan of an unfinished one).
    pub parent: Option<String>,
    /// The chain's full link (a full link names itself).
    pub base: Option<String>,
}

/// What [`select`] decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub entry: Entry,
    pub keep: bool,
    /// Why: the policies that keep it, the dependency that does, or why it goes.
    pub reason: String,
}

/// Decides, for every entry, keep or delete and why; `now_ms` anchors `keep_within`. Verdicts
/// come out by table, then newest first.
///
/// Rules, in order: each policy keeps committed snapshots per table; the newest committed snapshot
/// of a table is always kept (a retention policy never empties a table's history); an unfinished
/// snapshot is kept when its entry says so; then every kept snapshot keeps its parent and base,
/// transitively, so no kept link loses a snapshot it needs to restore. Everything else goes.
pub fn select(entries: &[Entry], policy: &Policy, now_ms: i64) -> Vec<Verdict> {
    let mut by_table: BTreeMap<(&str, &str), Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        by_table
            .entry((e.table.as_str(), e.source.as_str()))
            .or_default()
            .push(e);
    }
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<&Entry> = Vec::with_capacity(entries.len());
    for list in by_table.values_mut() {
        // Newest first; ids break ties (they sort by creation time).
        list.sort_by(|a, b| (b.time_ms, &b.snapshot_id).cmp(&(a.time_ms, &a.snapshot_id)));
        let committed: Vec<&Entry> = list
            .iter()
            .copied()
            .filter(|e| e.state == EntryState::Committed)
            .collect();
        let add = |reasons: &mut BTreeMap<String, Vec<String>>, e: &Entry, why: String| {
            reasons.entry(e.snapshot_id.clone()).or_default().push(why);
        };
        if let Some(n) = policy.keep_last {
            for (i, e) in committed.iter().take(n as usize).enumerate() {
                add(&mut reasons, e, format!("keep-last {n} (#{})", i + 1));
            }
        }
        if let Some(d) = policy.keep_within {
            let d_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let cutoff = now_ms.saturating_sub(d_ms);
            for e in committed.iter().filter(|e| e.time_ms >= cutoff) {
                add(&mut reasons, e, format!("keep-within {}", duration_text(d)));
            }
        }
        if let Some(n) = policy.keep_daily {
            let mut days: Vec<i64> = Vec::new();
            for e in &committed {
                let day = e.time_ms.div_euclid(DAY_MS);
                if days.contains(&day) {
                    continue;
                }
                if days.len() >= n as usize {
                    break;
                }
                days.push(day);
                add(
                    &mut reasons,
                    e,
                    format!("keep-daily {n} (newest of {})", day_text(day)),
                );
            }
        }
        if let Some(newest) = committed.first()
            && !reasons.contains_key(newest.snapshot_id.as_str())
        {
            add(
                &mut reasons,
                newest,
                "newest of its table (always kept)".to_string(),
            );
        }
        for e in list.iter() {
            if let EntryState::Unfinished(Some(why)) = &e.state {
                add(&mut reasons, e, why.clone());
            }
        }
        order.extend(list.iter().copied());
    }

    // Chains: parents first, walking up from every kept snapshot; then bases, for a chain whose
    // middle link is missing. Kept snapshots are taken newest first, so a dependency is credited
    // to the nearest kept link that needs it.
    let known: BTreeMap<&str, &Entry> = entries
        .iter()
        .map(|e| (e.snapshot_id.as_str(), e))
        .collect();
    for what in ["parent", "base"] {
        let mut kept: Vec<&Entry> = order
            .iter()
            .copied()
            .filter(|e| reasons.contains_key(e.snapshot_id.as_str()))
            .collect();
        kept.sort_by(|a, b| (b.time_ms, &b.snapshot_id).cmp(&(a.time_ms, &a.snapshot_id)));
        let mut i = 0;
        while let Some(&e) = kept.get(i) {
            i += 1;
            let dep = if what == "parent" { &e.parent } else { &e.base };
            let Some(dep) = dep.as_deref() else { continue };
            let Some(&d) = known.get(dep) else { continue };
            if dep == e.snapshot_id || reasons.contains_key(dep) {
                continue;
            }
            let whose = match e.state {
                EntryState::Committed => "kept",
                EntryState::Unfinished(_) => "unfinished",
            };
            reasons.insert(
                dep.to_string(),
                vec![format!("{what} of {whose} {}", e.snapshot_id)],
            );
            // Its own dependencies are walked in turn.
            kept.push(d);
        }
    }

    order
        .into_iter()
        .map(|e| match reasons.get(e.snapshot_id.as_str()) {
            Some(why) => Verdict {
                entry: e.clone(),
                keep: true,
                reason: why.join(", "),
            },
            None => Verdict {
                entry: e.clone(),
                keep: false,
                reason: match e.state {
                    EntryState::Committed => "no policy keeps it".to_string(),
                    EntryState::Unfinished(_) => {
                        "never committed, older than the grace period".to_string()
                    }
                },
            },
        })
        .collect()
}

/// `2026-01-05` for a day number since the epoch.
fn day_text(day: i64) -> String {
    let (y, m, d) = ots_format::time::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 of ms since the epoch (a negative time is printed as a number).
fn time_text(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => ots_format::time::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms)),
        Err(_) => format!("{ms} ms"),
    }
}

// --- the report -------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExpireKept {
    pub snapshot_id: String,
    pub table: String,
    /// RFC 3339; `time_ms` as a number.
    pub time: String,
    pub time_ms: i64,
    /// `committed` or `unfinished`.
    pub status: &'static str,
    /// `scan` (no change capture), `full` (a chain's full link) or `incremental`.
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExpireDeleted {
    pub snapshot_id: String,
    pub table: String,
    pub time: String,
    pub time_ms: i64,
    pub status: &'static str,
    pub kind: &'static str,
    pub reason: String,
    /// Objects deleted (with `--dry-run`: that would be).
    pub objects: u64,
    pub bytes: u64,
    /// Every object went; `false` when some delete failed (listed in `failed`).
    pub complete: bool,
}

/// A snapshot that was to go but stays, and why (its manifest could not be deleted, a live
/// lease, a kept dependent that could not be deleted).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExpireSkipped {
    pub snapshot_id: String,
    /// Unknown for a snapshot that cannot be read.
    pub table: Option<String>,
    pub time: Option<String>,
    pub time_ms: Option<i64>,
    pub reason: String,
}

impl ExpireSkipped {
    fn of(e: &Entry, reason: String) -> Self {
        ExpireSkipped {
            snapshot_id: e.snapshot_id.clone(),
            table: Some(e.table.clone()),
            time: Some(time_text(e.time_ms)),
            time_ms: Some(e.time_ms),
            reason,
        }
    }
}

/// One object (or listing) the store refused; `path` is relative to the snapshot folder, empty
/// when the whole snapshot could not be handled.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExpireFailure {
    pub snapshot_id: String,
    pub path: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExpireReport {
    pub dry_run: bool,
    pub policy: Policy,
    /// Grace period for unfinished snapshots, e.g. `24h`.
    pub incomplete_grace: String,
    /// Only this table, when `--table` was given.
    pub table: Option<String>,
    pub snapshots_seen: u64,
    pub kept: Vec<ExpireKept>,
    pub deleted: Vec<ExpireDeleted>,
    pub skipped: Vec<ExpireSkipped>,
    pub failed: Vec<ExpireFailure>,
    pub bytes_deleted: u64,
    /// Snapshots whose manifest or plan could not be read. While there are any, no committed
    /// snapshot is deleted: an unreadable incremental could need any of them.
    pub unreadable: u64,
}

impl ExpireReport {
    /// Every snapshot was read and every delete that was tried succeeded.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.unreadable == 0
    }
}

/// What expire is asked to do.
#[derive(Clone, Debug)]
pub struct ExpireOptions {
    pub policy: Policy,
    /// Only snapshots of this table (others are not looked at beyond their manifest).
    pub table: Option<String>,
    /// Unfinished snapshots with an object younger than this stay.
    pub incomplete_grace: Duration,
    pub dry_run: bool,
}

/// Applies `options` to the destination at `now_ms`. Only a failure to list the destination is
/// an error; everything else (a damaged manifest, a refused delete) is in the report and expire
/// goes on with the next object and the next snapshot.
pub async fn expire(
    snapshots: &Snapshots,
    options: &ExpireOptions,
    now_ms: i64,
) -> Result<ExpireReport, ManifestError> {
    let mut report = ExpireReport {
        dry_run: options.dry_run,
        policy: options.policy.clone(),
        incomplete_grace: duration_text(options.incomplete_grace),
        table: options.table.clone(),
        ..Default::default()
    };
    let grace_ms = i64::try_from(options.incomplete_grace.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(grace_ms);
    let mut entries = Vec::new();
    for id in snapshots.list_ids().await? {
        let snap = snapshots.snapshot(&id);
        match describe(&snap, cutoff, now_ms).await {
            Ok(Some(e)) => {
                if options.table.as_ref().is_none_or(|t| *t == e.table) {
                    report.snapshots_seen += 1;
                    entries.push(e);
                }
            }
            Ok(None) => {}
            // Unreadable: never deleted, whatever its table.
            Err(e) => {
                report.snapshots_seen += 1;
                report.unreadable += 1;
                report.skipped.push(ExpireSkipped {
                    snapshot_id: id,
                    table: None,
                    time: None,
                    time_ms: None,
                    reason: format!("cannot be read, left alone: {e}"),
                });
            }
        }
    }
    let mut verdicts = select(&entries, &options.policy, now_ms);
    if report.unreadable > 0 {
        // An unreadable snapshot may be an incremental whose parent and base this run would
        // delete: keep every committed snapshot until it can be read (or is removed by hand).
        for v in verdicts
            .iter_mut()
            .filter(|v| !v.keep && v.entry.state == EntryState::Committed)
        {
            v.keep = true;
            v.reason = format!(
                "kept: {} snapshot(s) could not be read, and could need it",
                report.unreadable
            );
        }
    }

    // Children before parents: a run cut short leaves chains that lost their newest links, never
    // a link without its parent.
    let doomed = children_first(verdicts.iter().filter(|v| !v.keep).collect());
    // Snapshots a doomed dependent that stays (its manifest could not be deleted) still needs.
    let mut still_needed: BTreeMap<String, String> = BTreeMap::new();
    for v in doomed {
        let e = &v.entry;
        if let Some(why) = still_needed.get(&e.snapshot_id) {
            report.skipped.push(ExpireSkipped::of(e, why.clone()));
            need_chain(&entries, e, &mut still_needed);
            continue;
        }
        let snap = snapshots.snapshot(&e.snapshot_id);
        let outcome = delete_snapshot(&snap, e, options.dry_run, now_ms, &mut report).await;
        match outcome {
            Deleted::Gone { objects, bytes } | Deleted::Partly { objects, bytes } => {
                report.bytes_deleted += bytes;
                report.deleted.push(ExpireDeleted {
                    snapshot_id: e.snapshot_id.clone(),
                    table: e.table.clone(),
                    time: time_text(e.time_ms),
                    time_ms: e.time_ms,
                    status: status_of(&e.state),
                    kind: kind_of(e),
                    reason: v.reason.clone(),
                    objects,
                    bytes,
                    complete: matches!(outcome, Deleted::Gone { .. }),
                });
            }
            Deleted::Stays(reason) => {
                report.skipped.push(ExpireSkipped::of(e, reason));
                need_chain(&entries, e, &mut still_needed);
            }
        }
    }
    for v in verdicts.iter().filter(|v| v.keep) {
        let e = &v.entry;
        report.kept.push(ExpireKept {
            snapshot_id: e.snapshot_id.clone(),
            table: e.table.clone(),
            time: time_text(e.time_ms),
            time_ms: e.time_ms,
            status: status_of(&e.state),
            kind: kind_of(e),
            reason: v.reason.clone(),
        });
    }
    Ok(report)
}

/// Newest first, but never a snapshot before one that names it as parent or base (times can tie
/// at millisecond precision, and ids made within one second do not sort by time).
fn children_first(mut left: Vec<&Verdict>) -> Vec<&Verdict> {
    left.sort_by(|a, b| {
        (b.entry.time_ms, &b.entry.snapshot_id).cmp(&(a.entry.time_ms, &a.entry.snapshot_id))
    });
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let needed = |id: &str| {
            left.iter().any(|o| {
                o.entry.snapshot_id != id
                    && (o.entry.parent.as_deref() == Some(id)
                        || o.entry.base.as_deref() == Some(id))
            })
        };
        // A cycle cannot happen (a parent exists before its child); take the first then.
        let i = left
            .iter()
            .position(|v| !needed(&v.entry.snapshot_id))
            .unwrap_or(0);
        out.push(left.remove(i));
    }
    out
}

fn kind_of(e: &Entry) -> &'static str {
    match (&e.parent, &e.base) {
        (Some(_), _) => "incremental",
        (None, Some(_)) => "full",
        (None, None) => "scan",
    }
}

fn status_of(state: &EntryState) -> &'static str {
    match state {
        EntryState::Committed => "committed",
        EntryState::Unfinished(_) => "unfinished",
    }
}

/// `e` stays although it was to go: its parent and base (transitively) must stay too.
fn need_chain(entries: &[Entry], e: &Entry, needed: &mut BTreeMap<String, String>) {
    for dep in [&e.parent, &e.base].into_iter().flatten() {
        if *dep != e.snapshot_id && entries.iter().any(|x| x.snapshot_id == *dep) {
            needed.entry(dep.clone()).or_insert_with(|| {
                format!(
                    "needed by {}, which could not be deleted (run expire again once it can be)",
                    e.snapshot_id
                )
            });
        }
    }
}

/// The identity of a snapshot's source for grouping: instance name and endpoint.
fn source_of(source: &ots_format::Source) -> String {
    format!("{} {}", source.instance, source.endpoint)
}

/// The entry of one snapshot; `Ok(None)` for a folder with nothing in it.
async fn describe(
    snap: &Snapshot,
    cutoff: i64,
    now_ms: i64,
) -> Result<Option<Entry>, ManifestError> {
    match snap.read_manifest().await {
        Ok(m) => {
            return Ok(Some(Entry {
                snapshot_id: snap.id().to_string(),
                source: source_of(&m.source),
                table: m.source.table.table_name.clone(),
                time_ms: m.instant_us().div_euclid(1000),
                state: EntryState::Committed,
                parent: m.changes.as_ref().and_then(|c| c.parent.clone()),
                base: m.changes.as_ref().map(|c| c.base.clone()),
            }));
        }
        Err(ManifestError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    // Never committed: judged like gc judges an abandoned snapshot.
    let objects = snap.list("").await?;
    let Some(newest) = objects.iter().map(|o| o.modified_ms).max() else {
        return Ok(None);
    };
    // A plan that cannot be read (not merely absent) could name a parent: unreadable.
    let plan = match snap.read_plan().await {
        Ok(p) => Some(p),
        Err(ManifestError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let leases = snap.leases().await?;
    let keep = if let Some(l) = leases.iter().find(|l| l.is_live(now_ms)) {
        Some(format!("in use: {}", l.describe()))
    } else if newest > cutoff {
        Some("not committed, but changed within the grace period (a backup may resume it)".into())
    } else {
        None
    };
    let capture = plan.as_ref().and_then(|p| p.changes.as_ref());
    Ok(Some(Entry {
        snapshot_id: snap.id().to_string(),
        source: plan
            .as_ref()
            .map_or_else(String::new, |p| source_of(&p.source)),
        table: plan.as_ref().map_or_else(
            || "(unknown)".to_string(),
            |p| p.source.table.table_name.clone(),
        ),
        time_ms: plan.as_ref().map_or(newest, |p| p.time_range.t_ms),
        state: EntryState::Unfinished(keep),
        parent: capture.and_then(|c| c.parent.clone()),
        base: capture.map(|c| c.base.clone()),
    }))
}

enum Deleted {
    /// Every object went (or, in a dry run, would).
    Gone { objects: u64, bytes: u64 },
    /// The manifest went, some other objects did not (reported in `failed`).
    Partly { objects: u64, bytes: u64 },
    /// Nothing was deleted; it still looks as it did.
    Stays(String),
}

/// The order objects go in: the manifest (the commit point) first, so the snapshot stops
/// looking committed; then the signatures and the plan, so nothing can resume it; then records
/// before the files they name (a record left by a cut-short run names only files still there);
/// leases last.
fn rank(rel: &str) -> u8 {
    if rel == MANIFEST_FILE {
        0
    } else if !rel.contains('/') && rel != PLAN_FILE {
        1
    } else if rel == PLAN_FILE {
        2
    } else if rel.starts_with(&format!("{SPLITS_DIR}/"))
        || (rel.starts_with(&format!("{CHANGES_DIR}/")) && rel.ends_with(".json"))
    {
        3
    } else if rel.starts_with(&format!("{LEASES_DIR}/")) {
        5
    } else {
        // data/, change files, anything unknown.
        4
    }
}

async fn delete_snapshot(
    snap: &Snapshot,
    entry: &Entry,
    dry_run: bool,
    now_ms: i64,
    report: &mut ExpireReport,
) -> Deleted {
    let id = snap.id().to_string();
    let fail = |report: &mut ExpireReport, path: &str, e: &dyn std::fmt::Display| {
        report.failed.push(ExpireFailure {
            snapshot_id: id.clone(),
            path: path.to_string(),
            error: e.to_string(),
        })
    };
    match snap.leases().await {
        Ok(leases) => {
            if let Some(holder) = live_holder(&leases, None, now_ms) {
                return Deleted::Stays(format!("in use: {holder}"));
            }
        }
        Err(e) => {
            fail(report, "", &e);
            return Deleted::Stays(format!("its leases cannot be read: {e}"));
        }
    }
    if dry_run {
        return match snap.list("").await {
            Ok(objects) => Deleted::Gone {
                objects: objects.len() as u64,
                bytes: objects.iter().map(|o| o.size).sum(),
            },
            Err(e) => {
                fail(report, "", &e);
                Deleted::Stays(format!("cannot be listed: {e}"))
            }
        };
    }
    // Hold the snapshot while deleting, as gc does: a resume or another expire that starts now
    // sees the lease and refuses; one that slipped in before is seen just below.
    let guard = match acquire(snap, "expire", true, LEASE_TTL).await {
        Ok(g) => g,
        Err(e) => {
            let e = e.into_manifest_error(snap);
            fail(report, LEASES_DIR, &e);
            return Deleted::Stays(format!("could not take its lease: {e}"));
        }
    };
    let me = guard.owner();
    match snap.leases().await {
        Ok(leases) => {
            if let Some(holder) = live_holder(&leases, Some(&me), now_ms) {
                guard.release().await;
                return Deleted::Stays(format!("in use: {holder}"));
            }
        }
        Err(e) => {
            guard.release().await;
            fail(report, "", &e);
            return Deleted::Stays(format!("its leases cannot be read: {e}"));
        }
    }
    let mine = |rel: &str| parse_lease_path(rel).is_some_and(|(owner, _)| owner == me);
    let mut objects: Vec<Listed> = match snap.list("").await {
        Ok(o) => o.into_iter().filter(|o| !mine(&o.rel)).collect(),
        Err(e) => {
            guard.release().await;
            fail(report, "", &e);
            return Deleted::Stays(format!("cannot be listed: {e}"));
        }
    };
    objects.sort_by(|a, b| (rank(&a.rel), &a.rel).cmp(&(rank(&b.rel), &b.rel)));
    let (mut count, mut bytes, mut all) = (0u64, 0u64, true);
    // A committed snapshot whose manifest stays must keep everything else: it still looks
    // committed, and restore and verify would find its files missing.
    let committed = entry.state == EntryState::Committed;
    if committed && !objects.iter().any(|o| o.rel == MANIFEST_FILE) {
        // Listed without a manifest although it was read as committed: a stale listing. Delete
        // it explicitly first all the same.
        objects.insert(
            0,
            Listed {
                rel: MANIFEST_FILE.to_string(),
                size: 0,
                modified_ms: 0,
            },
        );
    }
    for o in &objects {
        match snap.delete(&o.rel).await {
            Ok(()) => {
                count += 1;
                bytes += o.size;
            }
            Err(e) => {
                fail(report, &o.rel, &e);
                if committed && o.rel == MANIFEST_FILE {
                    guard.release().await;
                    return Deleted::Stays(format!(
                        "its manifest could not be deleted ({e}); nothing of it was deleted"
                    ));
                }
                all = false;
            }
        }
    }
    guard.release().await;
    // The snapshot is gone: remove expire's own lease objects too, so no folder stays.
    match snap.list(LEASES_DIR).await {
        Ok(leases) => {
            for l in leases.iter().filter(|l| mine(&l.rel)) {
                // Not counted: they were not part of the snapshot.
                match snap.delete(&l.rel).await {
                    Ok(()) => {}
                    Err(e) => {
                        fail(report, &l.rel, &e);
                        all = false;
                    }
                }
            }
        }
        Err(e) => {
            fail(report, LEASES_DIR, &e);
            all = false;
        }
    }
    if all {
        Deleted::Gone {
            objects: count,
            bytes,
        }
    } else {
        Deleted::Partly {
            objects: count,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// 2026-01-10T00:00:00Z.
    const NOW: i64 = 1_768_003_200_000;

    #[test]
    fn one_table_name_on_two_instances_is_two_histories() {
        let other = |id: &str, t: i64| Entry {
            source: "staging https://staging.example".into(),
            ..full(id, "orders", t)
        };
        let entries = vec![
            full("p1", "orders", NOW - 3 * H),
            full("p2", "orders", NOW - 2 * H),
            other("s1", NOW - 5 * H),
            other("s2", NOW - H),
        ];
        let v = select(&entries, &keep_last(1), NOW);
        assert_eq!(kept(&v), ["p2", "s2"]);
    }

    fn full(id: &str, table: &str, time_ms: i64) -> Entry {
        Entry {
            snapshot_id: id.into(),
            source: "inst https://inst.example".into(),
            table: table.into(),
            time_ms,
            state: EntryState::Committed,
            parent: None,
            base: None,
        }
    }

    fn link(id: &str, time_ms: i64, parent: Option<&str>, base: &str) -> Entry {
        Entry {
            snapshot_id: id.into(),
            source: "inst https://inst.example".into(),
            table: "t".into(),
            time_ms,
            state: EntryState::Committed,
            parent: parent.map(str::to_string),
            base: Some(base.into()),
        }
    }

    fn keep_last(n: u32) -> Policy {
        Policy {
            keep_last: Some(n),
            ..Default::default()
        }
    }

    fn kept(v: &[Verdict]) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .iter()
            .filter(|v| v.keep)
            .map(|v| v.entry.snapshot_id.as_str())
            .collect();
        k.sort();
        k
    }

    fn reason<'a>(v: &'a [Verdict], id: &str) -> &'a str {
        &v.iter().find(|v| v.entry.snapshot_id == id).unwrap().reason
    }

    /// Five snapshots of one table, a day apart, ending a day before NOW: s1 (oldest) … s5.
    fn daily() -> Vec<Entry> {
        (1..=5)
            .map(|i| full(&format!("s{i}"), "t", NOW - (6 - i) * 24 * H))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let v = select(&daily(), &keep_last(2), NOW);
        assert_eq!(kept(&v), ["s4", "s5"]);
        assert_eq!(reason(&v, "s5"), "keep-last 2 (#1)");
        assert_eq!(reason(&v, "s1"), "no policy keeps it");
        let v = select(&daily(), &keep_last(9), NOW);
        assert_eq!(kept(&v).len(), 5);
    }

    #[test]
    fn keep_within_keeps_what_is_younger_than_the_duration() {
        let p = Policy {
            keep_within: Some(Duration::from_secs(3 * 86_400)),
            ..Default::default()
        };
        let v = select(&daily(), &p, NOW);
        // s3 is exactly 3 days old: within.
        assert_eq!(kept(&v), ["s3", "s4", "s5"]);
        assert_eq!(reason(&v, "s4"), "keep-within 3d");
    }

    #[test]
    fn keep_within_never_empties_a_table() {
        let p = Policy {
            keep_within: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let v = select(&daily(), &p, NOW);
        assert_eq!(kept(&v), ["s5"]);
        assert_eq!(reason(&v, "s5"), "newest of its table (always kept)");
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_of_the_last_n_days_with_snapshots() {
        // Two on 01-09 (morning and evening), one on 01-07, two on 01-05; none on 01-06 or 01-08.
        let day = |d: i64, h: i64| NOW - (10 - d) * 24 * H + h * H;
        let entries = vec![
            full("a", "t", day(9, 8)),
            full("b", "t", day(9, 20)),
            full("c", "t", day(7, 12)),
            full("d", "t", day(5, 1)),
            full("e", "t", day(5, 23)),
        ];
        let p = Policy {
            keep_daily: Some(3),
            ..Default::default()
        };
        let v = select(&entries, &p, NOW);
        assert_eq!(kept(&v), ["b", "c", "e"]);
        assert_eq!(reason(&v, "b"), "keep-daily 3 (newest of 2026-01-09)");
        assert_eq!(reason(&v, "e"), "keep-daily 3 (newest of 2026-01-05)");
        let v = select(
            &entries,
            &Policy {
                keep_daily: Some(1),
                ..Default::default()
            },
            NOW,
        );
        assert_eq!(kept(&v), ["b"]);
    }

    #[test]
    fn policies_combine_a_snapshot_kept_by_any() {
        let p = Policy {
            keep_last: Some(1),
            keep_within: Some(Duration::from_secs(2 * 86_400)),
            keep_daily: Some(5),
        };
        let mut entries = daily();
        entries.push(full("s0", "t", NOW - 30 * 24 * H));
        let v = select(&entries, &p, NOW);
        assert_eq!(kept(&v), ["s1", "s2", "s3", "s4", "s5"]);
        assert_eq!(
            reason(&v, "s5"),
            "keep-last 1 (#1), keep-within 2d, keep-daily 5 (newest of 2026-01-09)"
        );
        assert_eq!(reason(&v, "s1"), "keep-daily 5 (newest of 2026-01-05)");
        assert!(!v.iter().find(|v| v.entry.snapshot_id == "s0").unwrap().keep);
    }

    #[test]
    fn policies_apply_per_table() {
        let entries = vec![
            full("a1", "a", NOW - 5 * H),
            full("a2", "a", NOW - 4 * H),
            full("a3", "a", NOW - 3 * H),
            full("b1", "b", NOW - 90 * 24 * H),
            full("b2", "b", NOW - 80 * 24 * H),
        ];
        let v = select(&entries, &keep_last(1), NOW);
        assert_eq!(kept(&v), ["a3", "b2"]);
        // Verdicts come by table, newest first.
        let order: Vec<&str> = v.iter().map(|v| v.entry.snapshot_id.as_str()).collect();
        assert_eq!(order, ["a3", "a2", "a1", "b2", "b1"]);
    }

    #[test]
    fn a_kept_incremental_keeps_its_parents_and_base_however_old() {
        // f ← i1 ← i2 ← i3, a week ago to now; a newer full g with its own i4.
        let entries = vec![
            link("f", NOW - 7 * 24 * H, None, "f"),
            link("i1", NOW - 6 * 24 * H, Some("f"), "f"),
            link("i2", NOW - 5 * 24 * H, Some("i1"), "f"),
            link("i3", NOW - 4 * 24 * H, Some("i2"), "f"),
            link("g", NOW - 2 * H, None, "g"),
            link("i4", NOW - H, Some("g"), "g"),
        ];
        // keep-last 3 keeps i4, g, i3; i3 needs i2, i1 and f.
        let v = select(&entries, &keep_last(3), NOW);
        assert_eq!(kept(&v), ["f", "g", "i1", "i2", "i3", "i4"]);
        assert_eq!(reason(&v, "i2"), "parent of kept i3");
        assert_eq!(reason(&v, "i1"), "parent of kept i2");
        assert_eq!(reason(&v, "f"), "parent of kept i1");
    }

    #[test]
    fn an_old_chain_no_kept_link_needs_goes_whole() {
        let entries = vec![
            link("f", NOW - 7 * 24 * H, None, "f"),
            link("i1", NOW - 6 * 24 * H, Some("f"), "f"),
            link("i2", NOW - 5 * 24 * H, Some("i1"), "f"),
            link("g", NOW - 2 * H, None, "g"),
            link("i3", NOW - H, Some("g"), "g"),
        ];
        let v = select(&entries, &keep_last(1), NOW);
        assert_eq!(kept(&v), ["g", "i3"]);
        assert_eq!(reason(&v, "g"), "parent of kept i3");
        for id in ["f", "i1", "i2"] {
            assert_eq!(reason(&v, id), "no policy keeps it");
        }
    }

    #[test]
    fn a_base_is_kept_even_when_a_middle_link_is_missing() {
        // i1 is gone (say, deleted by hand); i2 still names f as its base.
        let entries = vec![
            link("f", NOW - 7 * 24 * H, None, "f"),
            link("i2", NOW - 5 * 24 * H, Some("i1"), "f"),
        ];
        let v = select(&entries, &keep_last(1), NOW);
        assert_eq!(kept(&v), ["f", "i2"]);
        assert_eq!(reason(&v, "f"), "base of kept i2");
    }

    #[test]
    fn unfinished_snapshots_go_after_the_grace_period_and_in_progress_ones_keep_their_parent() {
        let mut entries = vec![
            link("f", NOW - 7 * 24 * H, None, "f"),
            link("g", NOW - 2 * H, None, "g"),
        ];
        // An incremental of f being written right now.
        entries.push(Entry {
            state: EntryState::Unfinished(Some("in use: backup".into())),
            ..link("w", NOW, Some("f"), "f")
        });
        // An abandoned one.
        entries.push(Entry {
            state: EntryState::Unfinished(None),
            ..full("x", "t", NOW - 3 * 24 * H)
        });
        let v = select(&entries, &keep_last(1), NOW);
        assert_eq!(kept(&v), ["f", "g", "w"]);
        assert_eq!(reason(&v, "f"), "parent of unfinished w");
        assert_eq!(reason(&v, "w"), "in use: backup");
        assert_eq!(
            reason(&v, "x"),
            "never committed, older than the grace period"
        );
    }

    #[test]
    fn deletion_goes_children_first_whatever_the_times_and_ids() {
        // Same millisecond, and ids that sort the wrong way round.
        let entries = vec![
            link("c", NOW - H, None, "c"),
            link("b", NOW - H, Some("c"), "c"),
            link("a", NOW - H, Some("b"), "c"),
            full("z", "t", NOW),
        ];
        let v = select(&entries, &keep_last(1), NOW);
        let order: Vec<&str> = children_first(v.iter().filter(|v| !v.keep).collect())
            .iter()
            .map(|v| v.entry.snapshot_id.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn durations_print_in_their_largest_unit() {
        assert_eq!(duration_text(Duration::from_secs(14 * 86_400)), "2w");
        assert_eq!(duration_text(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(duration_text(Duration::from_secs(12 * 3600)), "12h");
        assert_eq!(duration_text(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::ZERO), "0s");
    }

    #[test]
    fn deletion_order_puts_the_manifest_first_and_leases_last() {
        let mut rels = vec![
            "leases/abc-000001.json",
            "data/part-00000-aaaaaaaa-000.parquet",
            "changes/part-bbbbbbbb-000.parquet",
            "changes/bbbbbbbb.json",
            "splits/00000/aaaaaaaa.json",
            "plan.json",
            "plan.json.sig",
            "manifest.json.sig",
            "manifest.json",
        ];
        rels.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
        assert_eq!(
            rels,
            [
                "manifest.json",
                "manifest.json.sig",
                "plan.json.sig",
                "plan.json",
                "changes/bbbbbbbb.json",
                "splits/00000/aaaaaaaa.json",
                "changes/part-bbbbbbbb-000.parquet",
                "data/part-00000-aaaaaaaa-000.parquet",
                "leases/abc-000001.json",
            ]
        );
    }
}
