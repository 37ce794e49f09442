//! Restore writes only verified bytes: a data file replaced after verification (here: at the
//! moment verification has read it) stops the restore with a mismatch, and no row of that file is
//! written — with ETags (If-Match on every read) and without (the file is hashed again).
//!
//! The snapshot lives in an in-memory object store behind a tampering wrapper; the table in the
//! embedded emulator.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use ots_backup::{BackupConfig, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_and_load, load_rows, row};
use ots_emulator::{Emulator, EmulatorHandle};
use ots_manifest::{FileEntry, Manifest, Snapshots};
use ots_restore::compare::compare_with_table;
use ots_restore::{ErrorKind, RestoreConfig, RestoreError, RestoreProgress, run_restore};
use ots_scan::{KeyPart, KeyValue, ScanOptions, Split, SplitScanner, SplitSize};
use ots_wire::types::{PkColumn, Row, cmp_primary_keys};
use ots_wire::{ClientConfig, Credentials, OtsClient};
use ots_writer::Destination;

const AK: &str = "restore-test-ak";
const SK: &str = "restore-test-sk";
const INSTANCE: &str = "restoreinst";

/// An object store that can (a) hide ETags and versions, as a store without them would, and
/// (b) replace one object with other bytes once verification is done with it: verification reads
/// a file whole (hashing it), then its footer by range; the object is replaced right after that
/// footer read is served, before the restore reads the file.
#[derive(Debug)]
struct Tampering {
    inner: Arc<dyn ObjectStore>,
    hide_tags: bool,
    swap: Mutex<Option<(Path, Bytes)>>,
    /// The armed object was read whole: the next ranged read of it is verification's last.
    read_whole: Mutex<bool>,
    swapped: Mutex<bool>,
}

impl fmt::Display for Tampering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tampering({})", self.inner)
    }
}

impl Tampering {
    fn hide(&self, mut meta: ObjectMeta) -> ObjectMeta {
        if self.hide_tags {
            meta.e_tag = None;
            meta.version = None;
        }
        meta
    }
}

#[async_trait]
impl ObjectStore for Tampering {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let whole = options.range.is_none() && !options.head;
        let ranged = options.range.is_some();
        let mut got = self.inner.get_opts(location, options).await?;
        let swap = {
            let mut s = self.swap.lock().unwrap();
            let mut read_whole = self.read_whole.lock().unwrap();
            match s.as_ref() {
                Some((p, _)) if p == location && whole => {
                    *read_whole = true;
                    None
                }
                Some((p, _)) if p == location && ranged && *read_whole => s.take(),
                _ => None,
            }
        };
        if let Some((p, bytes)) = swap {
            // The response above already holds the original bytes; the object changes now.
            self.inner.put(&p, PutPayload::from(bytes)).await?;
            *self.swapped.lock().unwrap() = true;
        }
        got.meta = self.hide(got.meta);
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let hide = self.hide_tags;
        self.inner
            .list(prefix)
            .map(move |m| {
                m.map(|mut m| {
                    if hide {
                        m.e_tag = None;
                        m.version = None;
                    }
                    m
                })
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

struct World {
    _emu: EmulatorHandle,
    client: OtsClient,
    memory: Arc<dyn ObjectStore>,
    spec: DatasetSpec,
    /// The snapshot restored, and a later snapshot of the same table with other values.
    first: (String, Manifest),
    second: (String, Manifest),
}

fn destination(store: Arc<dyn ObjectStore>) -> Destination {
    Destination::from_store(store, Path::from("backups"), "memory://backups", true)
}

async fn backup(client: &OtsClient, memory: &Arc<dyn ObjectStore>) -> (String, Manifest) {
    let mut cfg = BackupConfig::new("t", "emulator", INSTANCE);
    cfg.split_size = SplitSize {
        units: 48,
        unit_bytes: 1024,
    };
    let out = run_backup(
        client,
        destination(memory.clone()),
        &cfg,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap();
    (out.snapshot_id, out.manifest)
}

/// Table `t` with 600 rows backed up (the first snapshot), then every row rewritten with other
/// values and backed up again (the second).
async fn world() -> World {
    let emu = Emulator::builder()
        .instance(INSTANCE)
        .credentials(AK, SK)
        .start()
        .await
        .unwrap();
    let client = OtsClient::new(ClientConfig::new(
        emu.endpoint(),
        INSTANCE,
        Credentials::new(AK, SK),
    ))
    .unwrap();
    let spec = DatasetSpec::new(600, 1234);
    create_and_load(&client, "t", &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let first = backup(&client, &memory).await;
    assert!(first.1.files.len() >= 3, "{} files", first.1.files.len());
    let other = DatasetSpec { seed: 99, ..spec };
    load_rows(
        &client,
        "t",
        (0..other.rows).map(move |i| row(&other, i)),
        4,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    let second = backup(&client, &memory).await;
    World {
        _emu: emu,
        client,
        memory,
        spec,
        first,
        second,
    }
}

impl World {
    /// The snapshots, seen through a tampering store (armed with [`World::arm`]).
    fn tampered(&self, hide_tags: bool) -> (Snapshots, Arc<Tampering>) {
        let tampering = Arc::new(Tampering {
            inner: self.memory.clone(),
            hide_tags,
            swap: Mutex::new(None),
            read_whole: Mutex::new(false),
            swapped: Mutex::new(false),
        });
        let store = Snapshots::new(destination(tampering.clone()));
        (store, tampering)
    }

    /// Replaces the first snapshot's file `victim`, right after its first whole read, with the
    /// second snapshot's file of the same split: a valid file with other values.
    async fn arm(&self, t: &Tampering, victim: &FileEntry) {
        let (id2, m2) = &self.second;
        let replacement = m2
            .files
            .iter()
            .find(|f| f.split == victim.split)
            .or_else(|| m2.files.first())
            .unwrap();
        let bytes = self
            .memory
            .get(&Path::from(format!("backups/{id2}/{}", replacement.path)))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let path = Path::from(format!("backups/{}/{}", self.first.0, victim.path));
        *t.swap.lock().unwrap() = Some((path, bytes));
    }

    fn config(&self, table: &str, work: &std::path::Path) -> RestoreConfig {
        let mut cfg = RestoreConfig::new(table, &self.first.0);
        cfg.create_table = true;
        cfg.file_concurrency = 1;
        cfg.concurrency = 1;
        cfg.dead_letter = work.join(format!("{table}.dead.jsonl"));
        cfg.checkpoint = work.join(format!("{table}.ckpt.json"));
        cfg
    }

    /// Every row of `table`.
    async fn rows(&self, table: &str) -> Vec<Row> {
        let bound = |v: KeyValue| {
            ["user_id", "seq"]
                .iter()
                .map(|n| KeyPart {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect::<Vec<_>>()
        };
        let split = Split {
            id: 0,
            start: bound(KeyValue::InfMin),
            end: bound(KeyValue::InfMax),
        };
        let mut scanner = SplitScanner::new(
            self.client.clone(),
            table,
            split,
            ScanOptions::up_to(ots_manifest::TimeRange::MAX_END_MS - 1),
        )
        .unwrap();
        let mut rows = Vec::new();
        while let Some(page) = scanner.next_page().await.unwrap() {
            page.for_each_row::<ots_scan::ScanError>(|r| {
                rows.push(r.to_row());
                Ok(())
            })
            .unwrap();
        }
        rows
    }
}

fn cmp(a: &[PkColumn], b: &[PkColumn]) -> std::cmp::Ordering {
    cmp_primary_keys(
        a.iter().map(|c| c.value.as_ref()),
        b.iter().map(|c| c.value.as_ref()),
    )
}

fn key(parts: &[KeyPart]) -> Vec<PkColumn> {
    parts.iter().map(|p| p.to_column().unwrap()).collect()
}

/// The restore stopped with a mismatch naming `victim`, and the target holds no row of
/// `victim`'s key range and nothing but rows of the first snapshot.
async fn assert_stopped_before_the_victim(
    w: &World,
    result: Result<ots_restore::RestoreOutcome, RestoreError>,
    victim: &FileEntry,
    table: &str,
    expect_detail: &str,
) {
    let err = result.expect_err("the restore went on with a replaced file");
    assert_eq!(err.kind(), ErrorKind::Mismatch, "{err}");
    let RestoreError::SnapshotChanged { path, detail } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &victim.path);
    assert!(detail.contains(expect_detail), "{detail}");
    assert!(err.to_string().contains("wrote no row"), "{err}");
    let (lo, hi) = (key(&victim.pk_min), key(&victim.pk_max));
    let original: HashMap<String, Row> = (0..w.spec.rows)
        .map(|i| row(&w.spec, i))
        .map(|r| (format!("{:?}", r.primary_key), r))
        .collect();
    for r in w.rows(table).await {
        assert!(
            cmp(&r.primary_key, &lo).is_lt() || cmp(&r.primary_key, &hi).is_gt(),
            "a row of the replaced file was written: {:?}",
            r.primary_key
        );
        assert_eq!(
            original.get(&format!("{:?}", r.primary_key)),
            Some(&r),
            "a row that is not the first snapshot's"
        );
    }
}

#[tokio::test]
async fn a_file_replaced_after_verification_stops_the_restore() {
    let w = world().await;
    let work = tempfile::tempdir().unwrap();
    // The last file in manifest order: with one file at a time, earlier files are restored
    // before the replaced one is reached, so the assertion about its rows means something.
    let victim = w.first.1.files.last().unwrap().clone();

    // The store names ETags: reads carry If-Match and the replaced object fails its read.
    let (store, tampering) = w.tampered(false);
    w.arm(&tampering, &victim).await;
    let cfg = w.config("copy_etag", work.path());
    let result = run_restore(
        &w.client,
        &store.snapshot(&w.first.0),
        &cfg,
        Arc::new(RestoreProgress::default()),
    )
    .await;
    assert!(
        *tampering.swapped.lock().unwrap(),
        "the file was never swapped"
    );
    assert_stopped_before_the_victim(&w, result, &victim, "copy_etag", "ETag").await;
    assert!(
        !w.rows("copy_etag").await.is_empty(),
        "the files before the replaced one were restored"
    );

    // A store without ETags or versions: the file is hashed again before any row is used.
    let w2 = world().await;
    let victim = w2.first.1.files.last().unwrap().clone();
    let (store, tampering) = w2.tampered(true);
    w2.arm(&tampering, &victim).await;
    let cfg = w2.config("copy_hash", work.path());
    let result = run_restore(
        &w2.client,
        &store.snapshot(&w2.first.0),
        &cfg,
        Arc::new(RestoreProgress::default()),
    )
    .await;
    assert!(
        *tampering.swapped.lock().unwrap(),
        "the file was never swapped"
    );
    // The replacement differs in size here; a same-size one fails the SHA-256 check instead
    // (reader unit tests).
    assert_stopped_before_the_victim(&w2, result, &victim, "copy_hash", "the manifest").await;
}

#[tokio::test]
async fn without_etags_an_untouched_snapshot_restores_exactly() {
    let w = world().await;
    let work = tempfile::tempdir().unwrap();
    // Hidden tags, nothing swapped: every file is re-hashed and then restored from that copy.
    let (store, _) = w.tampered(true);
    let cfg = w.config("copy", work.path());
    let out = run_restore(
        &w.client,
        &store.snapshot(&w.first.0),
        &cfg,
        Arc::new(RestoreProgress::default()),
    )
    .await
    .unwrap();
    assert_eq!(out.rows_written, 600);
    let report = compare_with_table(
        &w.client,
        &store.snapshot(&w.first.0),
        &w.first.1,
        "copy",
        5,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    // Unverified (--skip-verify): reads are tied to the first read's ETag, and still exact.
    let mut cfg = w.config("copy_unverified", work.path());
    cfg.skip_verify = true;
    let plain = Snapshots::new(destination(w.memory.clone()));
    let out = run_restore(
        &w.client,
        &plain.snapshot(&w.first.0),
        &cfg,
        Arc::new(RestoreProgress::default()),
    )
    .await
    .unwrap();
    assert_eq!(out.rows_written, 600);
    let report = compare_with_table(
        &w.client,
        &plain.snapshot(&w.first.0),
        &w.first.1,
        "copy_unverified",
        5,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
}
