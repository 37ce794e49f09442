//! Change capture under failure, over an in-memory object store with fault injection: an
//! incremental snapshot whose process dies (or whose one write fails) at every write, then a
//! resume; and a resume whose listing cannot see the capture record written before. The judge of
//! every run: the snapshot verifies, its change files hold every change made since the parent
//! exactly once, in order, and nothing was ever deleted.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use ots_backup::{BackupConfig, BackupError, BackupOutcome, ParentChoice, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_table_request, load_rows, row};
use ots_emulator::EmulatorHandle;
use ots_format::{Change, ChangeOp, LinkKind, Manifest};
use ots_manifest::{Snapshot, Snapshots, verify_snapshot};
use ots_wire::types::{Cell, PkValue, Value};
use ots_wire::{ClientConfig, Credentials, OtsClient, RetryPolicy, pb};
use ots_writer::Destination;
use support::fault_store::{FaultStore, Faults};

/// Rows loaded before the stream is enabled, and changes made after the parent snapshot.
const ROWS: u64 = 120;
const CHANGES: u64 = 300;

struct Table {
    emu: EmulatorHandle,
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
    let spec = DatasetSpec::new(ROWS, 7);
    load_rows(
        &client,
        "t",
        (0..ROWS).map(move |i| row(&spec, i)),
        4,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    Table {
        endpoint: emu.endpoint(),
        emu,
        client,
    }
}

/// `CHANGES` rows written again with new values (seed 8): one PUT_ROW each, keys known.
async fn make_changes(t: &Table) -> Vec<(String, i64)> {
    make_padded_changes(t, 0).await
}

/// As [`make_changes`], each row with a `pad` cell of `pad` bytes when `pad` > 0 (enough of them
/// and the capture writes change files while it still reads the stream).
async fn make_padded_changes(t: &Table, pad: usize) -> Vec<(String, i64)> {
    let spec = DatasetSpec::new(CHANGES, 8);
    let padded = move |i| {
        let mut r = row(&spec, i);
        if pad > 0 {
            r.cells
                .push(Cell::new("pad", Value::Binary(vec![i as u8; pad]), None));
        }
        r
    };
    load_rows(
        &t.client,
        "t",
        (0..CHANGES).map(padded),
        1,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    (0..CHANGES)
        .map(|i| key_of(&row(&spec, i).primary_key))
        .collect()
}

fn key_of(pk: &[ots_wire::types::PkColumn]) -> (String, i64) {
    match (&pk[0].value, &pk[1].value) {
        (PkValue::String(u), PkValue::Integer(s)) => (u.clone(), *s),
        other => panic!("unexpected key {other:?}"),
    }
}

fn dest(store: Arc<dyn ObjectStore>) -> Destination {
    Destination::from_store(store, Path::from("backups"), "mem://backups", true)
}

fn config(t: &Table) -> BackupConfig {
    let mut cfg = BackupConfig::new("t", &t.endpoint, "inst");
    cfg.concurrency = 2;
    cfg.capture.settle = Duration::from_millis(30);
    cfg.capture.limit = 40;
    // Several change files.
    cfg.parquet.target_file_bytes = 4 * 1024;
    cfg
}

async fn run(
    t: &Table,
    store: Arc<dyn ObjectStore>,
    incremental: bool,
    resume: Option<String>,
    take_over: bool,
) -> Result<BackupOutcome, BackupError> {
    let mut cfg = config(t);
    if incremental && resume.is_none() {
        cfg.incremental_from = Some(ParentChoice::Latest);
    }
    cfg.resume = resume;
    cfg.take_over = take_over;
    run_backup(&t.client, dest(store), &cfg, Arc::new(Progress::default())).await
}

/// Every change in the change files of snapshot `id`, in file order.
async fn changes_of(snap: &Snapshot, m: &Manifest) -> Vec<Change> {
    let reader = ots_schema::changes::ChangeReader::new(&m.source.table.primary_key);
    let mut all = Vec::new();
    for f in &m.changes.as_ref().unwrap().files {
        let (store, path) = snap.object(&f.path);
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let mut keys = Vec::new();
        for batch in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let changes = reader.read_batch(&batch.unwrap()).unwrap();
            keys.extend(changes.iter().map(|c| key_of(&c.primary_key)));
            all.extend(changes);
        }
        // The manifest's key range of the file is that of the changes in it.
        let bound = |parts: &[ots_format::KeyPart]| {
            let columns: Vec<_> = parts.iter().map(|p| p.to_column().unwrap()).collect();
            key_of(&columns)
        };
        assert_eq!(
            bound(&f.pk_min),
            keys.iter().min().cloned().unwrap(),
            "{}",
            f.path
        );
        assert_eq!(
            bound(&f.pk_max),
            keys.iter().max().cloned().unwrap(),
            "{}",
            f.path
        );
    }
    all
}

/// The judge: the incremental verifies, names its parent, and holds the changes made, each once,
/// in the order they were made, with ordinals 0, 1, 2, …
async fn assert_exact(backend: Arc<InMemory>, id: &str, parent: &str, made: &[(String, i64)]) {
    let snap = Snapshot::new(dest(backend), id);
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(report.ok(), "{id}: {:?}", report.issues);
    let m = snap.read_manifest().await.unwrap();
    let c = m.changes.as_ref().expect("an incremental has a change set");
    assert_eq!(c.kind, LinkKind::Incremental);
    assert_eq!(c.parent.as_deref(), Some(parent));
    assert_eq!(c.counts.put_row, CHANGES, "{id}: {:?}", c.counts);
    let changes = changes_of(&snap, &m).await;
    let ordinals: Vec<u64> = changes.iter().map(|c| c.ordinal).collect();
    assert_eq!(ordinals, (0..CHANGES).collect::<Vec<_>>(), "{id}");
    assert!(changes.iter().all(|c| c.op == ChangeOp::PutRow));
    let keys: Vec<(String, i64)> = changes.iter().map(|c| key_of(&c.primary_key)).collect();
    assert_eq!(keys, made, "{id}: the changes differ from those made");
}

/// The change files of the attempt that did not commit stay in snapshot `id`, unlisted (a later
/// attempt's manifest lists only its own; nothing is deleted).
async fn assert_first_attempt_unlisted(backend: Arc<InMemory>, id: &str) {
    let report = verify_snapshot(&Snapshot::new(dest(backend), id), &())
        .await
        .unwrap();
    assert!(
        report
            .unlisted_files
            .iter()
            .any(|f| f.starts_with("changes/part-")),
        "the first attempt's change files stay, unlisted: {:?}",
        report.unlisted_files
    );
}

/// A copy of every object of `from`.
async fn copy_of(from: &Arc<InMemory>) -> Arc<InMemory> {
    use futures::TryStreamExt;
    let to = Arc::new(InMemory::new());
    let list: Vec<_> = from.list(None).try_collect().await.unwrap();
    for o in list {
        let bytes = from.get(&o.location).await.unwrap().bytes().await.unwrap();
        to.put(&o.location, bytes.into()).await.unwrap();
    }
    to
}

async fn ids(backend: &Arc<InMemory>) -> Vec<String> {
    Snapshots::new(dest(backend.clone()))
        .list_ids()
        .await
        .unwrap()
}

/// For every write k of an incremental: the process dies there, or only that write fails; then a
/// resume (or a new incremental, when not even its plan was written). The result is exact, and
/// nothing was deleted.
#[tokio::test]
async fn a_crash_at_every_write_of_an_incremental_then_resume_is_exact() {
    let t = table().await;
    // The parent: a consistent full snapshot of the quiet table, in a store every run copies.
    let parent_store = Arc::new(InMemory::new());
    let parent = run(&t, parent_store.clone(), false, None, false)
        .await
        .unwrap();
    assert_eq!(
        parent.manifest.changes.as_ref().unwrap().kind,
        LinkKind::Full
    );
    let made = make_changes(&t).await;

    let clean = copy_of(&parent_store).await;
    let probe = FaultStore::new(clean.clone(), 0, Faults::default());
    let outcome = run(&t, probe.clone(), true, None, false).await.unwrap();
    assert_exact(clean, &outcome.snapshot_id, &parent.snapshot_id, &made).await;
    let steps = probe.writes();
    assert!(steps >= 5, "a clean incremental made only {steps} writes");

    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, crash) in (1..=steps).flat_map(|k| [(k, true), (k, false)]) {
        let backend = copy_of(&parent_store).await;
        let before = ids(&backend).await;
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
        let result = run(&t, first.clone(), true, None, false).await;
        let second = FaultStore::new(
            backend.clone(),
            1,
            Faults {
                deny_delete: true,
                ..Default::default()
            },
        );
        let new: Vec<String> = ids(&backend)
            .await
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect();
        assert!(new.len() <= 1, "step {k}: {new:?}");
        let (id, how) = match (result, new.first()) {
            (Ok(o), _) => (o.snapshot_id, "completed"),
            (Err(_), None) => (
                run(&t, second.clone(), true, None, false)
                    .await
                    .unwrap_or_else(|e| panic!("step {k}: a new incremental failed: {e}"))
                    .snapshot_id,
                "new incremental",
            ),
            (Err(_), Some(id)) => (
                run(&t, second.clone(), true, Some(id.clone()), crash)
                    .await
                    .unwrap_or_else(|e| panic!("step {k}: resume of {id} failed: {e}"))
                    .snapshot_id,
                "resume",
            ),
        };
        assert_exact(backend, &id, &parent.snapshot_id, &made).await;
        assert_eq!(first.deletes_attempted() + second.deletes_attempted(), 0);
        *outcomes.entry(how).or_default() += 1;
    }
    assert!(
        outcomes.get("resume").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
}

/// A resume that cannot see the capture record a crashed run wrote captures again under a new
/// attempt: the manifest lists one attempt's files, and the other's are unlisted, never mixed.
#[tokio::test]
async fn a_resume_blind_to_the_capture_record_captures_again_without_mixing_attempts() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    run(&t, backend.clone(), false, None, false).await.unwrap();
    let parent = ids(&backend).await.remove(0);
    let made = make_changes(&t).await;
    // Count the incremental's writes on a copy, then crash a real one at its manifest (the
    // second-to-last write; the lease release is the last).
    let probe = FaultStore::new(copy_of(&backend).await, 0, Faults::default());
    run(&t, probe.clone(), true, None, false).await.unwrap();
    let incremental_writes = probe.writes();

    let first = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            fail_put_at: Some(incremental_writes - 1),
            crash: true,
            ..Default::default()
        },
    );
    run(&t, first, true, None, false).await.unwrap_err();
    let id = ids(&backend)
        .await
        .into_iter()
        .find(|i| *i != parent)
        .expect("the crashed incremental's folder");
    let blind = FaultStore::new(
        backend.clone(),
        1,
        Faults {
            hide_from_list: Some("/changes/".into()),
            ..Default::default()
        },
    );
    run(&t, blind, true, Some(id.clone()), true).await.unwrap();
    assert_exact(backend.clone(), &id, &parent, &made).await;
    assert_first_attempt_unlisted(backend, &id).await;
}

/// The stream fails for good (every retry answered with a server error) after the capture wrote
/// change files: the incremental fails, commits nothing (no capture record, no manifest), and once
/// the stream answers again a resume captures under a new attempt, exact, the first attempt's
/// files left unlisted.
#[tokio::test]
async fn a_stream_failing_after_change_files_were_written_commits_nothing_and_resume_is_exact() {
    let t = table().await;
    let backend = Arc::new(InMemory::new());
    run(&t, backend.clone(), false, None, false).await.unwrap();
    let parent = ids(&backend).await.remove(0);
    // 9.6 MB of changes: flushed each 2.4 MB (below), the capture writes its first change files
    // while much of the stream is still to be read.
    let made = make_padded_changes(&t, 32 << 10).await;

    // The capture's second change file waits at its first write; by then the first is complete.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let store = FaultStore::new(
        backend.clone(),
        0,
        Faults {
            write_gate: Some(("/changes/part-".into(), 2, gate.clone())),
            deny_delete: true,
            ..Default::default()
        },
    );
    let mut quick = ClientConfig::new(t.endpoint.clone(), "inst", Credentials::new("ak", "sk"));
    quick.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        throttle_base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        deadline: Duration::from_secs(5),
    };
    let quick = OtsClient::new(quick).unwrap();
    let mut cfg = config(&t);
    cfg.incremental_from = Some(ParentChoice::Latest);
    // The smallest budget for two splits: changes are flushed each 2.4 MB.
    cfg.memory_bytes = 110 << 20;
    let first = run_backup(
        &quick,
        dest(store.clone()),
        &cfg,
        Arc::new(Progress::default()),
    );
    let pause = async {
        let file_starts = || {
            store
                .write_log()
                .iter()
                .filter(|p| p.contains("/changes/part-"))
                .count()
        };
        let waited = std::time::Instant::now();
        while file_starts() < 2 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the capture never started a second change file: {:?}",
                store.write_log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The writer waits at its second file (flushed at about the fourth of eight responses of
        // 40 records of 32 KiB); the reader, at most two batches ahead (one in the channel, one
        // waiting to be sent), has more of the stream to read.
        t.emu
            .set_faults(ots_emulator::FaultConfig {
                server_error_rate: 1.0,
                seed: Some(3),
                ..Default::default()
            })
            .unwrap();
        gate.add_permits(1 << 20);
    };
    let (result, ()) = tokio::join!(first, pause);
    let err = result.expect_err("the stream failed for good");
    let message = format!("{err:#}");
    assert!(
        message.contains("GetStreamRecord")
            && [
                "OTSInternalServerError",
                "OTSServerUnavailable",
                "OTSTimeout"
            ]
            .iter()
            .any(|code| message.contains(code)),
        "the error names the stream read that failed and the service's error: {message}"
    );
    let id = ids(&backend)
        .await
        .into_iter()
        .find(|i| *i != parent)
        .expect("the failed incremental's folder");
    let snap = Snapshot::new(dest(backend.clone()), &id);
    assert!(!snap.has_manifest().await.unwrap(), "nothing committed");
    let written: Vec<String> = store
        .write_log()
        .into_iter()
        .filter(|p| p.contains("/changes/"))
        .collect();
    assert!(
        written.len() >= 2 && written.iter().all(|p| p.contains("/changes/part-")),
        "change files, but no capture record after a failed read: {written:?}"
    );
    assert_eq!(store.deletes_attempted(), 0);

    t.emu
        .set_faults(ots_emulator::FaultConfig::default())
        .unwrap();
    let again = FaultStore::new(
        backend.clone(),
        1,
        Faults {
            deny_delete: true,
            ..Default::default()
        },
    );
    run(&t, again, true, Some(id.clone()), false).await.unwrap();
    assert_exact(backend.clone(), &id, &parent, &made).await;
    assert_first_attempt_unlisted(backend, &id).await;
}
