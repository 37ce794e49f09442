//! Backup to an S3-compatible server in-process (s3s-fs, which checks SigV4 signatures), addressed
//! in virtual-hosted style with the bucket in the endpoint, exactly as OSS requires.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use hyper_util::rt::{TokioExecutor, TokioIo};
use object_store::ClientOptions;
use object_store::client::{DnsFuture, DnsResolver};
use ots_backup::{BackupConfig, Progress, run_backup};
use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_manifest::{Snapshot, verify_snapshot};
use ots_scan::SplitSize;
use ots_writer::DestinationOptions;
use ots_writer::destination::{S3Credentials, open_oss};

const S3_AK: &str = "s3-test-ak";
const S3_SK: &str = "s3-test-secret";

/// Resolves every name (the bucket's virtual host) to loopback.
#[derive(Debug)]
struct Loopback;

impl DnsResolver for Loopback {
    fn resolve(&self, _host: &str) -> DnsFuture {
        Box::pin(async { Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]) })
    }
}

/// One request as the S3 server received it: method, path and query, and the server-side
/// encryption headers.
#[derive(Clone, Debug)]
struct SeenRequest {
    method: String,
    uri: String,
    sse: Option<String>,
    sse_kms_key_id: Option<String>,
}

/// Starts s3s-fs on an ephemeral port serving buckets as folders of `root`.
async fn s3_server(root: &Path) -> u16 {
    s3_server_recording(root).await.0
}

/// [`s3_server`], also recording every request's SSE headers.
async fn s3_server_recording(root: &Path) -> (u16, Arc<std::sync::Mutex<Vec<SeenRequest>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(S3_AK, S3_SK));
    b.set_host(s3s::host::SingleDomain::new(&format!("s3.oss-local.test:{port}")).unwrap());
    let service = b.build();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            let log = log.clone();
            let recording =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    log.lock().unwrap().push(SeenRequest {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        sse: header("x-amz-server-side-encryption"),
                        sse_kms_key_id: header("x-amz-server-side-encryption-aws-kms-key-id"),
                    });
                    hyper::service::Service::call(&service, req)
                });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), recording)
                    .await;
            });
        }
    });
    (port, seen)
}

fn oss_options(port: u16) -> DestinationOptions {
    DestinationOptions {
        oss_region: Some("cn-local".into()),
        oss_endpoint: Some(format!("http://{{bucket}}.s3.oss-local.test:{port}")),
        allow_http: true,
        client_options: Some(ClientOptions::new().with_dns_resolver(Arc::new(Loopback))),
        ..DestinationOptions::default()
    }
}

#[tokio::test]
async fn backup_to_oss_style_s3_is_complete_and_verifies() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("snapshots")).unwrap();
    let port = s3_server(root.path()).await;

    let (emu, client) = support::emulator("s3inst").await;
    let spec = DatasetSpec::new(1500, 99);
    create_and_load(&client, "t", &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();

    let creds = S3Credentials {
        access_key_id: S3_AK.into(),
        secret_access_key: S3_SK.into(),
        session_token: None,
    };
    let url = "oss://snapshots/team/backups";
    let dest = open_oss(url, "snapshots", "team/backups", creds, &oss_options(port)).unwrap();
    let mut cfg = BackupConfig::new("t", emu.endpoint(), "s3inst");
    cfg.split_size = SplitSize {
        units: 64,
        unit_bytes: 1024,
    };
    // Small row groups and files: several multipart parts and several files per split.
    cfg.parquet.row_group_rows = 100;
    cfg.parquet.target_file_bytes = 4 * 1024;
    cfg.batch_rows = 100;
    let outcome = run_backup(&client, dest.clone(), &cfg, Arc::new(Progress::default()))
        .await
        .unwrap();
    assert_eq!(outcome.manifest.totals.rows, 1500);
    assert!(outcome.url.starts_with("oss://snapshots/team/backups/"));
    assert!(outcome.manifest.totals.files > outcome.manifest.splits.len() as u64);

    // Our verifier, over the S3 API.
    let snap = Snapshot::new(dest, &outcome.snapshot_id);
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(report.ok(), "{:?}", report.issues);
    assert_eq!(report.files_checked, outcome.manifest.totals.files);
    assert_eq!(report.rows_in_footers, 1500);

    // The objects, as the server stored them, hold every row (s3s-fs keeps a bucket as a folder).
    let snap = root
        .path()
        .join("snapshots/team/backups")
        .join(&outcome.snapshot_id);
    let mut rows = Vec::new();
    for f in &outcome.manifest.files {
        let file = std::fs::File::open(snap.join(&f.path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let rr = ots_schema::RowReader::new(&outcome.manifest.schema, &batch).unwrap();
            rows.extend(rr.rows().map(|r| r.unwrap()));
        }
    }
    let expected: Vec<_> = (0..spec.rows).map(|i| row(&spec, i)).collect();
    assert_eq!(rows, expected);

    // DuckDB and pyarrow read the objects as the server stored them.
    let python = std::env::var("OTSARCHIVE_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_string()
    });
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(
            "import duckdb, pyarrow.dataset as ds, json, sys\n\
             n = duckdb.sql(f\"SELECT count(*), count(DISTINCT seq) FROM read_parquet('{sys.argv[1]}/data/**/*.parquet')\").fetchall()[0]\n\
             print(json.dumps([n[0], n[1], ds.dataset(sys.argv[1] + '/data', format='parquet').count_rows()]))",
        )
        .arg(&snap)
        .output()
        .expect("python from tests/run.sh's .venv (or OTSARCHIVE_TEST_PYTHON)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<u64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts, vec![1500, 1500, 1500]);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("snapshots")).unwrap();
    let port = s3_server(root.path()).await;
    let creds = S3Credentials {
        access_key_id: S3_AK.into(),
        secret_access_key: "not-the-secret".into(),
        session_token: None,
    };
    let dest = open_oss(
        "oss://snapshots/x",
        "snapshots",
        "x",
        creds,
        &oss_options(port),
    )
    .unwrap();
    let err = Snapshot::new(dest, "id")
        .exists("probe.json")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("oss://snapshots/x/id/probe.json"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    assert!(
        err.contains("403") || err.to_lowercase().contains("signature") || err.contains("denied"),
        "{err}"
    );
}

/// One snapshot, three workers, over the S3 API as OSS is addressed: the plan alone, workers 0
/// and 2 complete, worker 1 stopped mid-way (its task dropped, as a killed process), the commit
/// refused naming worker 1's splits, worker 1 again, the commit, and `verify`.
#[tokio::test]
async fn three_workers_over_s3_one_stopped_then_commit() {
    use ots_backup::workers::{CommitOptions, commit_snapshot, plan_backup, run_worker};
    use ots_format::WorkerSlot;

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("snapshots")).unwrap();
    let port = s3_server(root.path()).await;
    let (emu, client) = support::emulator("s3inst").await;
    let spec = DatasetSpec::new(1500, 5);
    create_and_load(&client, "t", &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    let creds = S3Credentials {
        access_key_id: S3_AK.into(),
        secret_access_key: S3_SK.into(),
        session_token: None,
    };
    let dest = open_oss(
        "oss://snapshots/w",
        "snapshots",
        "w",
        creds,
        &oss_options(port),
    )
    .unwrap();
    let mut cfg = BackupConfig::new("t", emu.endpoint(), "s3inst");
    cfg.split_size = SplitSize {
        units: 32,
        unit_bytes: 1024,
    };
    cfg.concurrency = 1;
    let planned = plan_backup(&client, dest.clone(), &cfg).await.unwrap();
    let splits = planned.plan.splits.len() as u32;
    assert!(splits >= 9, "{splits} splits");
    cfg.resume = Some(planned.snapshot_id.clone());
    let slot = |k| WorkerSlot { index: k, count: 3 };
    for k in [0, 2] {
        let o = run_worker(
            &client,
            dest.clone(),
            &cfg,
            slot(k),
            Arc::new(Progress::default()),
        )
        .await
        .unwrap();
        assert_eq!(o.splits_scanned, o.splits_assigned);
    }
    // Worker 1 stops once it has a record: its future is dropped, as a process killed.
    let snap = Snapshot::new(dest.clone(), &planned.snapshot_id);
    {
        let progress = Arc::new(Progress::default());
        let run = run_worker(&client, dest.clone(), &cfg, slot(1), progress.clone());
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => panic!("worker 1 finished before it was stopped: {r:?}"),
                _ = tokio::time::sleep(std::time::Duration::from_millis(2)) => {
                    if progress.splits_done.load(std::sync::atomic::Ordering::Relaxed) >= 1 {
                        break;
                    }
                }
            }
        }
    }
    let options = CommitOptions {
        take_over: true,
        ..Default::default()
    };
    let err = commit_snapshot(
        Some(&client),
        &snap,
        &options,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("(worker 1/3)"), "{err}");
    assert!(!snap.has_manifest().await.unwrap());
    let mut again = cfg.clone();
    again.take_over = true;
    let o = run_worker(
        &client,
        dest.clone(),
        &again,
        slot(1),
        Arc::new(Progress::default()),
    )
    .await
    .unwrap();
    assert!(o.splits_done_before >= 1 && o.splits_scanned >= 1, "{o:?}");
    let c = commit_snapshot(
        Some(&client),
        &snap,
        &options,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap();
    assert_eq!(c.manifest.totals.rows, 1500);
    let report = verify_snapshot(&snap, &()).await.unwrap();
    assert!(report.ok(), "{:?}", report.issues);
}

/// `--sse`: every request that creates an object (PutObject, CreateMultipartUpload) carries the
/// server-side encryption headers; reads and listings need none.
#[tokio::test]
async fn server_side_encryption_headers_reach_the_server() {
    use ots_writer::ServerSideEncryption;
    let (emu, client) = support::emulator("s3inst").await;
    let spec = DatasetSpec::new(300, 7);
    create_and_load(&client, "t", &spec, 2, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    for (sse, header, key_id) in [
        (ServerSideEncryption::Aes256, "AES256", None),
        (
            ServerSideEncryption::Kms {
                key_id: Some("kms-key-1".into()),
            },
            "aws:kms",
            Some("kms-key-1"),
        ),
        (ServerSideEncryption::Kms { key_id: None }, "aws:kms", None),
    ] {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("snapshots")).unwrap();
        let (port, seen) = s3_server_recording(root.path()).await;
        let creds = S3Credentials {
            access_key_id: S3_AK.into(),
            secret_access_key: S3_SK.into(),
            session_token: None,
        };
        let options = DestinationOptions {
            sse: Some(sse.clone()),
            ..oss_options(port)
        };
        let dest = open_oss("oss://snapshots/b", "snapshots", "b", creds, &options).unwrap();
        let cfg = BackupConfig::new("t", emu.endpoint(), "s3inst");
        let outcome = run_backup(&client, dest.clone(), &cfg, Arc::new(Progress::default()))
            .await
            .unwrap();
        assert_eq!(outcome.manifest.totals.rows, 300);
        let seen = seen.lock().unwrap().clone();
        let writes: Vec<&SeenRequest> = seen
            .iter()
            .filter(|r| {
                (r.method == "PUT" && !r.uri.contains("partNumber="))
                    || (r.method == "POST" && r.uri.contains("uploads"))
            })
            .collect();
        assert!(
            writes.iter().any(|r| r.uri.ends_with("/manifest.json")),
            "{sse:?}: the manifest was written: {seen:?}"
        );
        assert!(
            writes.iter().any(|r| r.uri.contains(".parquet")),
            "{sse:?}: data files were written: {seen:?}"
        );
        for w in &writes {
            assert_eq!(w.sse.as_deref(), Some(header), "{sse:?}: {w:?}");
            assert_eq!(w.sse_kms_key_id.as_deref(), key_id, "{sse:?}: {w:?}");
        }
        assert!(
            seen.iter()
                .filter(|r| r.method == "GET")
                .all(|r| r.sse.is_none()),
            "reads carry no SSE headers"
        );
    }
    // Parsing the flags.
    assert_eq!(
        ServerSideEncryption::parse(Some("KMS"), Some("k")),
        Ok(Some(ServerSideEncryption::Kms {
            key_id: Some("k".into())
        }))
    );
    assert!(ServerSideEncryption::parse(Some("aes256"), Some("k")).is_err());
    assert!(ServerSideEncryption::parse(None, Some("k")).is_err());
    assert!(ServerSideEncryption::parse(Some("des"), None).is_err());
    // Only S3-compatible stores take --sse.
    let local = tempfile::tempdir().unwrap();
    let e = ots_writer::open_destination(
        local.path().to_str().unwrap(),
        &DestinationOptions {
            sse: Some(ServerSideEncryption::Aes256),
            ..DestinationOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--sse applies to s3:// and oss://"),
        "{e}"
    );
}
