//! The backup state machine under failure, over an in-memory object store with fault injection:
//! a write that fails (the process "crashes") at every step followed by a resume, denied deletes,
//! stale listings, a live lease, two processes interleaved write by write on a deterministic
//! schedule, `gc`, and `verify` on tampered manifests. The judge of every run: the snapshot
//! verifies and holds exactly the table's keys, once each.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use ots_backup::{BackupConfig, BackupError, BackupOutcome, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_emulator::EmulatorHandle;
use ots_format::{ErrorKind, Manifest};
use ots_manifest::{Snapshot, Snapshots, gc, verify_snapshot};
use ots_scan::SplitSize;
use ots_wire::OtsClient;
use ots_wire::types::PkValue;
use ots_writer::Destination;
use support::fault_store::{FaultStore, Faults, Schedule};

const ROWS: u64 = 400;

struct Table {
    _emu: EmulatorHandle,
    client: OtsClient,
    endpoint: String,
    keys: BTreeSet<(String, i64)>,
}

async fn table() -> Table {
    let (emu, client) = support::emulator("inst").await;
    let spec = DatasetSpec::new(ROWS, 7);
    create_and_load(&client, "t", &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    let keys = (0..ROWS)
        .map(|i| {
            let r = row(&spec, i);
            match (&r.primary_key[0].value, &r.primary_key[1].value) {
                (PkValue::String(u), PkValue::Integer(s)) => (u.clone(), *s),
                other => panic!("unexpected key {other:?}"),
            }
        })
        .collect();
    Table {
        endpoint: emu.endpoint(),
        _emu: emu,
        client,
        keys,
    }
}

fn config(t: &Table) -> BackupConfig {
    let mut cfg = BackupConfig::new("t", &t.endpoint, "inst");
    // Several splits and several files per split.
    cfg.split_size = SplitSize {
        units: 16,
        unit_bytes: 1024,
    };
    cfg.concurrency = 2;
    cfg.batch_rows = 50;
    cfg.parquet.target_file_bytes = 8 * 1024;
    cfg
}

fn dest(store: Arc<dyn ObjectStore>, create_only: bool) -> Destination {
    Destination::from_store(store, Path::from("backups"), "mem://backups", create_only)
}

async fn backup(
    t: &Table,
    store: Arc<dyn ObjectStore>,
    create_only: bool,
    resume: Option<String>,
    take_over: bool,
) -> Result<BackupOutcome, BackupError> {
    let mut cfg = config(t);
    cfg.resume = resume;
    cfg.take_over = take_over;
    run_backup(
        &t.client,
        dest(store, create_only),
        &cfg,
        Arc::new(Progress::default()),
    )
    .await
}

/// Every record batch of a data file of `snap`.
async fn read_batches(snap: &Snapshot, rel: &str) -> Vec<arrow_array::RecordBatch> {
    let (store, path) = snap.object(rel);
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Column `name` of `batch` as the array type `A`.
fn column<'a, A: 'static>(batch: &'a arrow_array::RecordBatch, name: &str) -> &'a A {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<A>()
        .unwrap()
}

/// The judge: the snapshot verifies, and its files hold every key of the table exactly once.
async fn assert_exact(t: &Table, backend: Arc<InMemory>, id: &str) -> Manifest {
    let snap = Snapshot::new(dest(backend.clone(), true), id);
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(report.ok(), "{id}: {:?}", report.issues);
    let manifest = snap.read_manifest().await.unwrap();
    assert_eq!(manifest.totals.rows, ROWS);
    let mut seen = Vec::new();
    for f in &manifest.files {
        for batch in read_batches(&snap, &f.path).await {
            let users = column::<arrow_array::StringArray>(&batch, "user_id");
            let seqs = column::<arrow_array::Int64Array>(&batch, "seq");
            for i in 0..batch.num_rows() {
                seen.push((users.value(i).to_string(), seqs.value(i)));
            }
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "{id}: a row is in the snapshot twice"
    );
    assert_eq!(
        unique, t.keys,
        "{id}: the snapshot's keys differ from the table's"
    );
    manifest
}

/// A "process" over `backend` that dies at write `k`: that write and every later operation fail.
fn crash_at(backend: &Arc<InMemory>, tag: u8, k: u64) -> Arc<FaultStore> {
    FaultStore::new(
        backend.clone(),
        tag,
        Faults {
            fail_put_at: Some(k),
            crash: true,
            ..Default::default()
        },
    )
}

async fn only_snapshot(backend: &Arc<InMemory>) -> Option<String> {
    let ids = Snapshots::new(dest(backend.clone(), true))
        .list_ids()
        .await
        .unwrap();
    assert!(ids.len() <= 1, "{ids:?}");
    ids.into_iter().next()
}

/// For every write k of a backup: the process dies there (every later operation fails too), or
/// only that write fails (the process stops with an error and releases its lease); then a resume
/// (or, when even the plan was not written, a new backup). The result is exact, and nothing was
/// ever deleted — deletes are denied throughout.
#[tokio::test]
async fn a_crash_at_every_write_then_resume_gives_the_exact_snapshot() {
    let t = table().await;
    // How many writes a clean run makes.
    let clean = Arc::new(InMemory::new());
    let probe = FaultStore::new(clean.clone(), 0, Faults::default());
    let outcome = backup(&t, probe.clone(), true, None, false).await.unwrap();
    assert_exact(&t, clean, &outcome.snapshot_id).await;
    let steps = probe.writes();
    assert!(steps >= 8, "a clean run made only {steps} writes");

    let mut matrix = Vec::new();
    for (k, crash) in (1..=steps).flat_map(|k| [(k, true), (k, false)]) {
        let backend = Arc::new(InMemory::new());
        let first = FaultStore::new(
            backend.clone(),
            0,
            Faults {
                fail_put_at: Some(k),
                crash,
                deny_delete: true,
                ..Default::default()
            },
        );
        let crashed = backup(&t, first.clone(), true, None, false).await;
        let second = FaultStore::new(
            backend.clone(),
            1,
            Faults {
                deny_delete: true,
                ..Default::default()
            },
        );
        let failed_write = first
            .write_log()
            .get(k as usize - 1)
            .cloned()
            .unwrap_or_default();
        let (id, after) = match (crashed, only_snapshot(&backend).await) {
            // The failed write was the last lease release: the backup itself completed.
            (Ok(o), _) => (
                o.snapshot_id,
                "backup completed (its lease expires by itself)",
            ),
            (Err(_), None) => (
                backup(&t, second.clone(), true, None, false)
                    .await
                    .unwrap_or_else(|e| panic!("step {k}: a new backup failed: {e}"))
                    .snapshot_id,
                "nothing written; new backup",
            ),
            // A crashed process's lease is still live: the resume takes over, as the operator
            // would after checking that process is gone. A process that failed cleanly
            // released its lease: the resume needs no take-over.
            (Err(_), Some(id)) => (
                backup(&t, second.clone(), true, Some(id.clone()), crash)
                    .await
                    .unwrap_or_else(|e| panic!("step {k}: resume of {id} failed: {e}"))
                    .snapshot_id,
                "resume",
            ),
        };
        assert_exact(&t, backend, &id).await;
        assert_eq!(first.deletes_attempted() + second.deletes_attempted(), 0);
        // The object written, without the snapshot id and tokens.
        let object = failed_write
            .split('/')
            .skip(2)
            .map(|s| {
                if s.starts_with("part-") {
                    "part-….parquet"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        matrix.push(format!(
            "| {k} | {object} | {} | {after} | exact, verifies, 0 deletes |",
            if crash { "crash" } else { "write fails" }
        ));
    }
    assert_eq!(matrix.len() as u64, 2 * steps);
    eprintln!("| write | object | fault | then | result |\n|---|---|---|---|---|");
    for line in matrix {
        eprintln!("{line}");
    }
}

/// A write that fails without a crash (one bad request) fails the backup with an error that
/// keeps its source; the resume completes it.
#[tokio::test]
async fn a_failed_write_is_an_error_and_a_resume_completes() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let store = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            fail_put_at: Some(4),
            ..Default::default()
        },
    );
    let err = backup(&t, store, true, None, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failure);
    assert!(err.to_string().contains("injected fault"), "{err}");
    let id = only_snapshot(&backend).await.unwrap();
    // The failed process released its lease on the way out: no take-over needed.
    let outcome = backup(&t, backend.clone(), true, Some(id.clone()), false)
        .await
        .unwrap();
    assert!(outcome.splits_resumed < outcome.manifest.splits.len());
    assert_exact(&t, backend, &id).await;
}

/// A listing that does not show split records (eventual consistency): the committing process
/// still commits every split from the records it wrote itself, and a resume that cannot see
/// earlier records scans again — wasted work, never a lost or doubled row.
#[tokio::test]
async fn stale_listings_never_lose_or_double_a_split() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let stale = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            hide_from_list: Some("/splits/".into()),
            ..Default::default()
        },
    );
    let outcome = backup(&t, stale, true, None, false).await.unwrap();
    assert_exact(&t, backend.clone(), &outcome.snapshot_id).await;

    // Crash right at the manifest, then resume blind to the records already written.
    let backend = Arc::new(InMemory::new());
    let probe = FaultStore::new(backend.clone(), 0, Faults::default());
    backup(&t, probe.clone(), true, None, false).await.unwrap();
    let writes = probe.writes();
    let backend = Arc::new(InMemory::new());
    // The manifest is the second-to-last write (the lease release is the last).
    let first = crash_at(&backend, 0, writes - 1);
    backup(&t, first, true, None, false).await.unwrap_err();
    let id = only_snapshot(&backend).await.unwrap();
    let blind = FaultStore::new(
        backend.clone(),
        1,
        Faults {
            hide_from_list: Some("/splits/".into()),
            ..Default::default()
        },
    );
    let outcome = backup(&t, blind, true, Some(id.clone()), true)
        .await
        .unwrap();
    assert_eq!(outcome.splits_resumed, 0, "the blind resume saw no record");
    let manifest = assert_exact(&t, backend.clone(), &id).await;
    // Two complete attempts per split exist; the manifest lists one per split.
    let report = verify_snapshot(&Snapshot::new(dest(backend, true), &id), &())
        .await
        .unwrap();
    assert!(!report.unlisted_files.is_empty());
    assert_eq!(manifest.splits.len(), outcome.manifest.splits.len());
}

/// A live lease refuses a second process, naming the holder; `take_over` proceeds.
#[tokio::test]
async fn a_live_lease_refuses_a_second_process() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    // Crash after the plan and the lease: the lease stays live.
    let first = crash_at(&backend, 0, 3);
    backup(&t, first, true, None, false).await.unwrap_err();
    let id = only_snapshot(&backend).await.unwrap();
    let err = backup(&t, backend.clone(), true, Some(id.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    let text = err.to_string();
    assert!(
        text.contains("in use by another process") && text.contains("--take-over"),
        "{text}"
    );
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    backup(&t, backend.clone(), true, Some(id.clone()), true)
        .await
        .unwrap();
    assert_exact(&t, backend, &id).await;
}

/// Two processes on one snapshot (the original and a resume beside it), their writes interleaved
/// one by one on seeded schedules, with and without create-only puts (OSS has none), deletes
/// denied: both finish, and the snapshot is exact.
#[tokio::test]
async fn two_processes_interleaved_write_by_write() {
    let t = table().await;
    for create_only in [true, false] {
        for seed in 0..10u64 {
            let backend = Arc::new(InMemory::new());
            let mut order = vec![0u8, 0u8]; // the plan and A's lease first
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.push((x & 1) as u8);
            }
            let schedule = Schedule::new(order);
            let no_delete = || Faults {
                deny_delete: true,
                ..Default::default()
            };
            let a_store = FaultStore::scheduled(backend.clone(), 0, no_delete(), schedule.clone());
            let b_store = FaultStore::scheduled(backend.clone(), 1, no_delete(), schedule.clone());
            let a = {
                let t_client = t.client.clone();
                let cfg = config(&t);
                let store = a_store.clone();
                let schedule = schedule.clone();
                tokio::spawn(async move {
                    let r = run_backup(
                        &t_client,
                        dest(store, create_only),
                        &cfg,
                        Arc::new(Progress::default()),
                    )
                    .await;
                    schedule.finished(0);
                    r
                })
            };
            // B resumes A's snapshot as soon as its plan exists.
            let id = loop {
                if let Some(id) = only_snapshot(&backend).await {
                    let plan = Path::from(format!("backups/{id}/plan.json"));
                    if backend.head(&plan).await.is_ok() {
                        break id;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            let b = backup(&t, b_store.clone(), create_only, Some(id.clone()), true).await;
            schedule.finished(1);
            let a = a.await.unwrap();
            let a = a.unwrap_or_else(|e| panic!("seed {seed}: A failed: {e}"));
            let b = b.unwrap_or_else(|e| panic!("seed {seed}: B failed: {e}"));
            let stored = assert_exact(&t, backend.clone(), &id).await;
            if create_only {
                // One manifest was written; the other process adopted it.
                assert_eq!(a.manifest, stored, "seed {seed}");
                assert_eq!(b.manifest, stored, "seed {seed}");
            }
            assert_eq!(a_store.deletes_attempted() + b_store.deletes_attempted(), 0);
        }
    }
}

/// `gc` removes exactly what no manifest lists, keeps what is in use or young, and a denied
/// delete is an error that leaves the snapshot intact.
#[tokio::test]
async fn gc_removes_only_what_no_manifest_lists() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    // A snapshot with leftovers: crash mid-way, resume blind to the first attempt's records.
    let first = crash_at(&backend, 0, 9);
    backup(&t, first, true, None, false).await.unwrap_err();
    let committed = only_snapshot(&backend).await.unwrap();
    let blind = FaultStore::new(
        backend.clone(),
        1,
        Faults {
            hide_from_list: Some("/splits/".into()),
            ..Default::default()
        },
    );
    backup(&t, blind, true, Some(committed.clone()), true)
        .await
        .unwrap();
    // An abandoned snapshot: crashed after its plan and lease, never resumed.
    let abandoned_store = crash_at(&backend, 2, 3);
    backup(&t, abandoned_store, true, None, false)
        .await
        .unwrap_err();
    let snapshots = Snapshots::new(dest(backend.clone(), true));
    let ids = snapshots.list_ids().await.unwrap();
    assert_eq!(ids.len(), 2);
    let abandoned = ids.iter().find(|i| **i != committed).unwrap().clone();
    let before = verify_snapshot(&snapshots.snapshot(&committed), &())
        .await
        .unwrap();
    assert!(!before.unlisted_files.is_empty());

    let now = ots_format::time::unix_millis(std::time::SystemTime::now());
    // Within the grace period nothing goes.
    let report = gc(&snapshots, Duration::from_secs(3600), false, now)
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    // The crashed processes' leases are live now: both snapshots are kept, the holders named.
    let report = gc(&snapshots, Duration::ZERO, true, now).await.unwrap();
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.snapshot_id == abandoned && s.reason.contains("in use"))
    );
    // An hour later every lease has expired.
    let later = now + 3_600_000;
    // Deletes denied: an error, and the snapshot still verifies.
    let denied = FaultStore::new(
        backend.clone(),
        3,
        Faults {
            deny_delete: true,
            ..Default::default()
        },
    );
    let report = gc(
        &Snapshots::new(dest(denied, true)),
        Duration::ZERO,
        false,
        later,
    )
    .await
    .unwrap();
    // Each snapshot fails on its own; nothing stops the others from being tried.
    assert!(!report.ok());
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert!(
        report.failed.iter().all(|f| f.error.contains("denied")),
        "{:?}",
        report.failed
    );
    assert_exact(&t, backend.clone(), &committed).await;
    // The leftovers and the abandoned snapshot go; what the manifest lists stays.
    let report = gc(&snapshots, Duration::ZERO, false, later).await.unwrap();
    assert!(report.removed.iter().any(|r| r.snapshot_id == abandoned));
    assert_eq!(snapshots.list_ids().await.unwrap(), vec![committed.clone()]);
    let after = verify_snapshot(&snapshots.snapshot(&committed), &())
        .await
        .unwrap();
    assert!(after.ok(), "{:?}", after.issues);
    assert!(
        after.unlisted_files.is_empty(),
        "{:?}",
        after.unlisted_files
    );
    assert_exact(&t, backend, &committed).await;
}

/// `verify` checks the manifest itself: each tampering below, written over the real manifest,
/// is caught and named, even with totals recomputed.
#[tokio::test]
async fn verify_catches_a_tampered_manifest() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let outcome = backup(&t, backend.clone(), true, None, false)
        .await
        .unwrap();
    let id = outcome.snapshot_id.clone();
    let original = assert_exact(&t, backend.clone(), &id).await;
    assert!(original.splits.len() >= 3, "need several splits");
    let path = Path::from(format!("backups/{id}/manifest.json"));
    let recompute = |m: &mut Manifest| {
        m.totals.rows = m.files.iter().map(|f| f.rows).sum();
        m.totals.cells = m.files.iter().map(|f| f.cells).sum();
        m.totals.bytes = m.files.iter().map(|f| f.bytes).sum();
        m.totals.files = m.files.len() as u64;
        m.stats.rows = m.totals.rows;
        m.stats.cells = m.totals.cells;
    };
    type Tamper = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a split and its files removed, totals recomputed",
            Box::new(move |m: &mut Manifest| {
                let gone = m.splits.remove(1).id;
                m.files.retain(|f| f.split != gone);
                recompute(m);
            }),
            "gap between split 0 and split 2",
        ),
        (
            "a file entry listed twice",
            Box::new(move |m: &mut Manifest| {
                let f = m.files[0].clone();
                m.files.push(f);
                recompute(m);
            }),
            "listed twice",
        ),
        (
            "a file whose key range leaves its split",
            Box::new(|m: &mut Manifest| {
                let last = m.splits.len() as u32 - 1;
                let f = m.files.iter_mut().find(|f| f.split == 0).unwrap();
                let other = m.splits[last as usize].start.clone();
                f.pk_max = other;
            }),
            "leave split 0",
        ),
        (
            "a split range that disagrees with the plan",
            Box::new(|m: &mut Manifest| {
                m.time_range.t_ms += 1;
            }),
            "time range differs from the plan",
        ),
    ];
    for (what, tamper, expected) in cases {
        let mut m = original.clone();
        tamper(&mut m);
        backend
            .put(&path, PutPayload::from(serde_json::to_vec(&m).unwrap()))
            .await
            .unwrap();
        let report = verify_snapshot(&Snapshot::new(dest(backend.clone(), true), &id), &())
            .await
            .unwrap();
        assert!(!report.ok(), "{what}: passed verification");
        assert!(
            report.issues.iter().any(|i| i.problem.contains(expected)),
            "{what}: expected '{expected}' in {:?}",
            report.issues
        );
    }
}

/// A snapshot in format version 1 (one record per split at `splits/<split>.json`, no attempt in
/// the manifest, no `cells_after_t`, no time scope) still verifies, and tampering is still caught.
#[tokio::test]
async fn a_format_version_1_snapshot_still_verifies() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let outcome = backup(&t, backend.clone(), true, None, false)
        .await
        .unwrap();
    let id = outcome.snapshot_id.clone();
    let root = format!("backups/{id}");
    // Rewrite the snapshot as version 1 wrote it.
    let strip = |v: &mut serde_json::Value| {
        v["format_version"] = 1.into();
        if let Some(tr) = v.get_mut("time_range").and_then(|t| t.as_object_mut()) {
            tr.remove("scope");
        }
    };
    let get = |rel: String| {
        let backend = backend.clone();
        async move {
            let b = backend
                .get(&Path::from(rel))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()
        }
    };
    let put = |rel: String, v: serde_json::Value| {
        let backend = backend.clone();
        async move {
            backend
                .put(
                    &Path::from(rel),
                    PutPayload::from(serde_json::to_vec(&v).unwrap()),
                )
                .await
                .unwrap();
        }
    };
    let mut plan = get(format!("{root}/plan.json")).await;
    strip(&mut plan);
    put(format!("{root}/plan.json"), plan).await;
    let mut manifest = get(format!("{root}/manifest.json")).await;
    strip(&mut manifest);
    manifest["totals"]
        .as_object_mut()
        .unwrap()
        .remove("cells_after_t");
    for s in manifest["splits"].as_array_mut().unwrap() {
        let split = s["id"].as_u64().unwrap() as u32;
        let attempt = s["attempt"].as_str().unwrap().to_string();
        let o = s.as_object_mut().unwrap();
        o.remove("attempt");
        o.remove("cells_after_t");
        // The earliest version-1 manifests did not repeat the split ranges either.
        o.remove("start");
        o.remove("end");
        let from = format!("{root}/splits/{split:05}/{attempt}.json");
        let mut record = get(from.clone()).await;
        record["format_version"] = 1.into();
        record.as_object_mut().unwrap().remove("cells_after_t");
        put(format!("{root}/splits/{split:05}.json"), record).await;
        backend.delete(&Path::from(from)).await.unwrap();
    }
    put(format!("{root}/manifest.json"), manifest.clone()).await;
    let snap = Snapshot::new(dest(backend.clone(), true), &id);
    let m = snap.read_manifest().await.unwrap();
    assert_eq!(m.format_version, 1);
    assert!(m.splits.iter().all(|s| s.attempt.is_empty()));
    assert_exact(&t, backend.clone(), &id).await;
    // The version-1 record is what verification compares with: drop one file from the manifest.
    let mut tampered = manifest;
    tampered["files"].as_array_mut().unwrap().remove(0);
    put(format!("{root}/manifest.json"), tampered).await;
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(
        report
            .issues
            .iter()
            .any(|i| i.path.ends_with(".json") && i.problem.contains("differ from the record")),
        "{:?}",
        report.issues
    );
}

/// Partition values that escape to the same folder ("" and "." and ".." and a missing value all
/// become Hive's default partition) go to separate files, each recording the values of every row
/// in it.
#[tokio::test]
async fn partition_values_are_right_for_every_row_even_when_folders_collide() {
    use ots_format::{ColumnSchema, PkColumnSchema, TableMeta};
    use ots_wire::types::{Cell, PkColumn, PkType, Row, Value, ValueType};
    let t = table().await;
    let meta = TableMeta {
        table_name: "cities".into(),
        primary_key: vec![PkColumnSchema {
            name: "id".into(),
            pk_type: PkType::Integer,
            auto_increment: false,
        }],
        defined_columns: vec![ColumnSchema {
            name: "city".into(),
            value_type: ValueType::String,
        }],
        max_versions: Some(1),
        time_to_live: Some(-1),
        deviation_cell_version_in_sec: Some(86_400),
        allow_update: Some(true),
        indexes: vec![],
    };
    t.client
        .create_table(&meta.create_table_request("cities", false, None))
        .await
        .unwrap();
    let cities = [
        Some(""),
        Some("."),
        Some(".."),
        None,
        Some("Xi'an"),
        Some(""),
    ];
    let rows: Vec<Row> = cities
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(i as i64))],
            cells: c
                .iter()
                .map(|c| Cell::new("city", Value::String((*c).to_string()), None))
                .chain([Cell::new("n", Value::Integer(i as i64), None)])
                .collect(),
        })
        .collect();
    let written = t
        .client
        .batch_write_row(
            &ots_datagen::put_batch_request("cities", &rows),
            ots_wire::Idempotency::Idempotent,
        )
        .await
        .unwrap();
    let ok = written.tables[0].rows.iter().filter(|r| r.is_ok).count();
    assert_eq!(ok, rows.len(), "{written:?}");
    let backend = Arc::new(InMemory::new());
    let mut cfg = BackupConfig::new("cities", &t.endpoint, "inst");
    cfg.partitioning = ots_format::Partitioning::Column {
        column: "city".into(),
    };
    let outcome = run_backup(
        &t.client,
        dest(backend.clone(), true),
        &cfg,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap();
    let snap = Snapshot::new(dest(backend, true), &outcome.snapshot_id);
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(report.ok(), "{:?}", report.issues);
    let mut seen = 0;
    for f in &outcome.manifest.files {
        let recorded = f.partition.get("city").cloned().unwrap();
        for batch in read_batches(&snap, &f.path).await {
            let ids = column::<arrow_array::Int64Array>(&batch, "id");
            for i in 0..batch.num_rows() {
                let city = cities[ids.value(i) as usize]
                    .map(str::to_string)
                    .unwrap_or_else(|| ots_backup::partition::DEFAULT_PARTITION.to_string());
                assert_eq!(recorded, city, "{}: row {}", f.path, ids.value(i));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, cities.len());
    // Four different values share the default folder, in four different files.
    let in_default: BTreeSet<&str> = outcome
        .manifest
        .files
        .iter()
        .filter(|f| f.path.contains("__HIVE_DEFAULT_PARTITION__"))
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(in_default.len(), 4, "{in_default:?}");
}

/// A backup that failed at its manifest write (its lease released): plan, every record, every
/// data file, no manifest.
async fn failed_before_manifest(t: &Table) -> (Arc<InMemory>, String) {
    let clean = Arc::new(InMemory::new());
    let probe = FaultStore::new(clean.clone(), 0, Faults::default());
    backup(t, probe.clone(), true, None, false).await.unwrap();
    let writes = probe.writes();
    let backend = Arc::new(InMemory::new());
    // The manifest is the second-to-last write (the lease release is the last).
    let first = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            fail_put_at: Some(writes - 1),
            ..Default::default()
        },
    );
    backup(t, first, true, None, false).await.unwrap_err();
    let id = only_snapshot(&backend).await.unwrap();
    (backend, id)
}

/// gc cut short in an abandoned snapshot has removed its plan first, so nothing can resume it
/// into a manifest that lists files gc already deleted; the next gc finishes the job.
#[tokio::test]
async fn a_gc_cut_short_leaves_nothing_to_resume() {
    let t = table().await;
    let (backend, id) = failed_before_manifest(&t).await;
    let later = ots_format::time::unix_millis(std::time::SystemTime::now()) + 3_600_000;
    let cut_short = FaultStore::new(
        backend.clone(),
        5,
        Faults {
            deletes_allowed: Some(3),
            ..Default::default()
        },
    );
    let report = gc(
        &Snapshots::new(dest(cut_short, true)),
        Duration::ZERO,
        false,
        later,
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(
        report.removed.first().map(|r| r.path.as_str()),
        Some("plan.json")
    );
    let err = backup(&t, backend.clone(), true, Some(id.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
    assert!(err.to_string().contains("no plan.json"), "{err}");
    let report = gc(
        &Snapshots::new(dest(backend.clone(), true)),
        Duration::ZERO,
        false,
        later,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(
        only_snapshot(&backend).await.is_none(),
        "the abandoned folder is gone"
    );
}

/// gc holds the lease of the snapshot it deletes from: a resume that starts meanwhile is
/// refused, naming gc, instead of committing files gc is removing.
#[tokio::test]
async fn a_resume_during_gc_is_refused() {
    let t = table().await;
    let (backend, id) = failed_before_manifest(&t).await;
    let later = ots_format::time::unix_millis(std::time::SystemTime::now()) + 3_600_000;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gc_store = FaultStore::new(
        backend.clone(),
        5,
        Faults {
            delete_gate: Some(gate.clone()),
            ..Default::default()
        },
    );
    let gc_task = {
        let gc_store = gc_store.clone();
        tokio::spawn(async move {
            gc(
                &Snapshots::new(dest(gc_store, true)),
                Duration::ZERO,
                false,
                later,
            )
            .await
        })
    };
    // gc has decided and waits at its first delete.
    while gc_store.deletes_attempted() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = backup(&t, backend.clone(), true, Some(id.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
    assert!(err.to_string().contains("(gc,"), "{err}");
    gate.add_permits(1_000_000);
    let report = gc_task.await.unwrap().unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(only_snapshot(&backend).await.is_none());
}

/// A lease renewal that lands but reports an error (a timeout) does not stall later renewals:
/// the lease stays live while its holder works.
#[tokio::test]
async fn an_ambiguous_lease_renewal_does_not_let_the_lease_lapse() {
    let backend = Arc::new(InMemory::new());
    let store = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            ambiguous_put_at: Some(2), // write 1: lease 0; write 2: renewal 1
            ..Default::default()
        },
    );
    let id = "20260101T000000Z-00000000";
    let snap = Snapshot::new(dest(store.clone(), true), id);
    let guard = ots_manifest::lease::acquire(&snap, "backup", false, Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = ots_format::time::unix_millis(std::time::SystemTime::now());
    let leases = Snapshot::new(dest(backend.clone(), true), id)
        .leases()
        .await
        .unwrap();
    assert!(
        leases.iter().any(|l| l.is_live(now)),
        "the holder is still running but its lease lapsed: {leases:?} after {:?}",
        store.write_log()
    );
    guard.release().await;
    let now = ots_format::time::unix_millis(std::time::SystemTime::now());
    let leases = Snapshot::new(dest(backend, true), id)
        .leases()
        .await
        .unwrap();
    assert!(
        leases.iter().all(|l| !l.is_live(now) && l.released),
        "{leases:?}"
    );
}

/// `latest` (for `DEST/latest` and `--incremental-from latest`) is the newest snapshot by the
/// instant it restores to, not by id: ids of one second order by their random suffix.
#[tokio::test]
async fn latest_is_the_newest_instant_even_within_one_second() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    let out = backup(&t, backend.clone(), true, None, false)
        .await
        .unwrap();
    let snapshots = Snapshots::new(dest(backend.clone(), true));
    let m = snapshots
        .snapshot(&out.snapshot_id)
        .read_manifest()
        .await
        .unwrap();
    // Two copies of the manifest in one later second: the smaller id holds the later instant.
    for (id, shift_ms) in [
        ("20990101T000000Z-00000000", 2_000),
        ("20990101T000000Z-ffffffff", 1_000),
    ] {
        let mut copy: Manifest = m.clone();
        copy.snapshot_id = id.to_string();
        copy.time_range.t_ms += shift_ms;
        backend
            .put(
                &Path::from(format!("backups/{id}/manifest.json")),
                PutPayload::from(serde_json::to_vec(&copy).unwrap()),
            )
            .await
            .unwrap();
    }
    let (newest, manifest) = snapshots.newest_committed(|_| true).await.unwrap().unwrap();
    assert_eq!(newest.id(), "20990101T000000Z-00000000");
    assert_eq!(manifest.time_range.t_ms, m.time_range.t_ms + 2_000);
    // A filter that accepts none of them falls back to nothing (older seconds are not searched
    // once a second had a candidate, but here none had).
    let none = snapshots
        .newest_committed(|m| m.source.table.table_name == "another")
        .await
        .unwrap();
    assert!(none.is_none());
}
