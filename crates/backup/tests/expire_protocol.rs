//! `expire` over an in-memory store with fault injection, on a real chain of snapshots (a full
//! link F, its incremental I1, a newer full link G and its incremental I2): the dry run deletes
//! nothing; each snapshot goes manifest first, children before parents; a refused delete is
//! reported and expire goes on; a refused manifest delete leaves the snapshot whole, and its
//! parent with it. Judged by the delete log, the objects left and `verify`.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use ots_backup::{BackupConfig, ParentChoice, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_table_request, load_rows, row};
use ots_emulator::EmulatorHandle;
use ots_manifest::{ExpireOptions, Policy, Snapshots, expire, verify_snapshot};
use ots_wire::{OtsClient, pb};
use ots_writer::Destination;
use support::fault_store::{FaultStore, Faults};

struct Table {
    _emu: EmulatorHandle,
    client: OtsClient,
    endpoint: String,
}

async fn table() -> Table {
    let (emu, client) = support::emulator("inst").await;
    let mut req = create_table_request("t");
    req.stream_spec = Some(pb::StreamSpecification {
        enable_stream: true,
        expiration_time: Some(24),
        columns_to_get: Vec::new(),
    });
    client.create_table(&req).await.unwrap();
    let t = Table {
        endpoint: emu.endpoint(),
        _emu: emu,
        client,
    };
    write(&t, 100, 1).await;
    t
}

async fn write(t: &Table, rows: u64, seed: u64) {
    let spec = DatasetSpec::new(rows, seed);
    load_rows(
        &t.client,
        "t",
        (0..rows).map(move |i| row(&spec, i)),
        2,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
}

fn dest(store: Arc<dyn ObjectStore>) -> Destination {
    Destination::from_store(store, Path::from("backups"), "mem://backups", true)
}

/// A full link, or an incremental of `parent`; returns its id. (Parents are named: ids made
/// within one second do not sort by time, so `latest` could pick another.)
async fn backup(t: &Table, backend: &Arc<InMemory>, parent: Option<&str>) -> String {
    let mut cfg = BackupConfig::new("t", &t.endpoint, "inst");
    cfg.concurrency = 2;
    cfg.capture.settle = Duration::from_millis(30);
    cfg.incremental_from = parent.map(|p| ParentChoice::Id(p.to_string()));
    run_backup(
        &t.client,
        dest(backend.clone()),
        &cfg,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap()
    .snapshot_id
}

/// Every object path under the destination, relative to it.
async fn objects(backend: &Arc<InMemory>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut all: Vec<String> = backend
        .list(Some(&Path::from("backups")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

fn under<'a>(all: &'a [String], id: &str) -> Vec<&'a String> {
    all.iter()
        .filter(|p| p.starts_with(&format!("backups/{id}/")))
        .collect()
}

fn now() -> i64 {
    ots_format::time::unix_millis(std::time::SystemTime::now())
}

fn keep_last(n: u32, dry_run: bool) -> ExpireOptions {
    ExpireOptions {
        policy: Policy {
            keep_last: Some(n),
            ..Default::default()
        },
        table: None,
        incomplete_grace: Duration::ZERO,
        dry_run,
    }
}

#[tokio::test]
async fn expire_goes_manifest_first_children_first_and_reports_every_refused_delete() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let f = backup(&t, &backend, None).await;
    write(&t, 20, 2).await;
    let i1 = backup(&t, &backend, Some(&f)).await;
    let g = backup(&t, &backend, None).await;
    write(&t, 20, 3).await;
    let i2 = backup(&t, &backend, Some(&g)).await;
    let snapshots = Snapshots::new(dest(backend.clone()));
    let mut all = vec![f.clone(), i1.clone(), g.clone(), i2.clone()];
    all.sort();
    assert_eq!(snapshots.list_ids().await.unwrap(), all);
    let before = objects(&backend).await;

    // The dry run: I2 by the policy, G as its parent; I1 and F would go; nothing is deleted.
    let report = expire(&snapshots, &keep_last(1, true), now())
        .await
        .unwrap();
    assert!(report.dry_run && report.ok());
    let kept: Vec<(&str, &str)> = report
        .kept
        .iter()
        .map(|k| (k.snapshot_id.as_str(), k.reason.as_str()))
        .collect();
    let g_reason = format!("parent of kept {i2}");
    assert_eq!(
        kept,
        [
            (i2.as_str(), "keep-last 1 (#1)"),
            (g.as_str(), g_reason.as_str())
        ]
    );
    let doomed: Vec<&str> = report
        .deleted
        .iter()
        .map(|d| d.snapshot_id.as_str())
        .collect();
    assert_eq!(doomed, [i1.as_str(), f.as_str()], "children first");
    let would: u64 = report.deleted.iter().map(|d| d.objects).sum();
    assert_eq!(
        would as usize,
        under(&before, &f).len() + under(&before, &i1).len()
    );
    assert_eq!(objects(&backend).await, before, "a dry run deletes nothing");

    // I1's manifest is under retention: I1 stays whole and committed, and F, its parent, with it.
    let worm = FaultStore::new(
        backend.clone(),
        1,
        Faults {
            deny_delete_containing: vec![format!("{i1}/manifest.json")],
            ..Default::default()
        },
    );
    let report = expire(
        &Snapshots::new(dest(worm.clone())),
        &keep_last(1, false),
        now(),
    )
    .await
    .unwrap();
    assert!(!report.ok());
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].snapshot_id, i1);
    assert_eq!(report.failed[0].path, "manifest.json");
    assert!(
        report.failed[0].error.contains("denied"),
        "{:?}",
        report.failed
    );
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|s| s.snapshot_id.as_str())
        .collect();
    assert_eq!(skipped, [i1.as_str(), f.as_str()]);
    assert!(
        report.skipped[1]
            .reason
            .contains(&format!("needed by {i1}"))
    );
    // The only delete tried was I1's manifest; expire's own lease objects aside, nothing changed.
    assert_eq!(worm.delete_log(), [format!("backups/{i1}/manifest.json")]);
    let after: Vec<String> = objects(&backend)
        .await
        .into_iter()
        .filter(|p| !p.contains("/leases/"))
        .collect();
    let before_no_leases: Vec<String> = before
        .iter()
        .filter(|p| !p.contains("/leases/"))
        .cloned()
        .collect();
    assert_eq!(after, before_no_leases);
    for id in [&f, &i1] {
        let v = verify_snapshot(&snapshots.snapshot(id), &()).await.unwrap();
        assert!(v.ok(), "{id}: {:?}", v.issues);
    }

    // Now one of F's change files is under retention, the rest is not.
    let denied_file = under(&before, &f)
        .into_iter()
        .find(|p| p.contains("/changes/part-") || p.contains("/data/"))
        .unwrap()
        .clone();
    let worm = FaultStore::new(
        backend.clone(),
        2,
        Faults {
            deny_delete_containing: vec![denied_file.clone()],
            ..Default::default()
        },
    );
    let report = expire(
        &Snapshots::new(dest(worm.clone())),
        &keep_last(1, false),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].snapshot_id, f);
    assert_eq!(
        format!("backups/{f}/{}", report.failed[0].path),
        denied_file
    );
    let deleted: Vec<(&str, bool)> = report
        .deleted
        .iter()
        .map(|d| (d.snapshot_id.as_str(), d.complete))
        .collect();
    assert_eq!(deleted, [(i1.as_str(), true), (f.as_str(), false)]);
    // Each snapshot's first delete is its manifest; all of I1 before any of F.
    let log = worm.delete_log();
    let first_of_f = log.iter().position(|p| p.contains(&f)).unwrap();
    assert_eq!(log[0], format!("backups/{i1}/manifest.json"));
    assert_eq!(log[first_of_f], format!("backups/{f}/manifest.json"));
    assert!(log[..first_of_f].iter().all(|p| p.contains(&i1)));
    assert!(log[first_of_f..].iter().all(|p| p.contains(&f)));
    // Every other object of F was still tried, and went.
    let left = objects(&backend).await;
    assert!(under(&left, &i1).is_empty(), "{left:?}");
    assert_eq!(under(&left, &f), [&denied_file]);
    // F no longer looks committed.
    assert!(!snapshots.snapshot(&f).has_manifest().await.unwrap());
    assert_eq!(
        report.bytes_deleted,
        report.deleted.iter().map(|d| d.bytes).sum::<u64>()
    );

    // Once the retention ends, the next run removes what is left of F (now never committed).
    let report = expire(&snapshots, &keep_last(1, false), now())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.failed);
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.deleted[0].status, "unfinished");
    let mut kept = vec![g.clone(), i2.clone()];
    kept.sort();
    assert_eq!(snapshots.list_ids().await.unwrap(), kept);
    // The kept chain is whole.
    for id in [&g, &i2] {
        let v = verify_snapshot(&snapshots.snapshot(id), &()).await.unwrap();
        assert!(v.ok(), "{id}: {:?}", v.issues);
    }
}

/// A snapshot another process holds is left alone, and so is an unfinished one inside the grace
/// period.
#[tokio::test]
async fn expire_leaves_snapshots_in_use_alone() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let old = backup(&t, &backend, None).await;
    let new = backup(&t, &backend, None).await;
    let snapshots = Snapshots::new(dest(backend.clone()));
    // Someone holds `old` (a live lease).
    let guard = ots_manifest::lease::acquire(
        &snapshots.snapshot(&old),
        "backup",
        false,
        ots_manifest::LEASE_TTL,
    )
    .await
    .unwrap();
    let report = expire(&snapshots, &keep_last(1, false), now())
        .await
        .unwrap();
    assert!(report.ok());
    assert!(report.deleted.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0].reason.contains("in use"),
        "{:?}",
        report.skipped
    );
    guard.release().await;
    let report = expire(&snapshots, &keep_last(1, false), now())
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(snapshots.list_ids().await.unwrap(), [new]);
}

/// A snapshot whose manifest cannot be read could be an incremental of any other: while there is
/// one, no committed snapshot goes, and the run says it did not finish.
#[tokio::test]
async fn an_unreadable_manifest_keeps_every_committed_snapshot() {
    use object_store::{ObjectStoreExt, PutPayload};
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let f = backup(&t, &backend, None).await;
    write(&t, 10, 3).await;
    let i1 = backup(&t, &backend, Some(&f)).await;
    let g = backup(&t, &backend, None).await;
    let g2 = backup(&t, &backend, None).await;
    // I1's manifest is damaged: its parent F must stay although keep-last 1 would drop it.
    backend
        .put(
            &Path::from(format!("backups/{i1}/manifest.json")),
            PutPayload::from_static(b"{ not json"),
        )
        .await
        .unwrap();
    let snapshots = Snapshots::new(dest(backend.clone()));
    let report = expire(&snapshots, &keep_last(1, false), now())
        .await
        .unwrap();
    assert_eq!(report.unreadable, 1);
    assert!(!report.ok(), "an unreadable snapshot makes the run fail");
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    let mut ids = snapshots.list_ids().await.unwrap();
    ids.sort();
    let mut all = vec![f, i1, g, g2];
    all.sort();
    assert_eq!(ids, all);
}
