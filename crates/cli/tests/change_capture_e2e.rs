//! Change capture end to end, judged by the official Python SDK's scan of all versions: a writer
//! doing puts, updates (increments too), row deletes, column deletes and version deletes runs while
//! a consistent full backup scans; then incrementals; every link restored into a new table equals
//! the source at that link's consistency point; `--as-of` between links; the first link restored
//! after the second exists; a trimmed parent refused with nothing written; a shard split inside a
//! window; a killed incremental resumed.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ots_emulator::PageLimits;
use ots_wire::plainbuffer::{encode_delete_row, encode_put_row, encode_update_row};
use ots_wire::types::{Cell, ColumnUpdate, PkColumn, PkValue, Row, Value};
use ots_wire::{Idempotency, OtsClient, pb};
use support::*;

const TABLE: &str = "live";

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

/// A table with a stream (24 h retention) and 10 versions per column, loaded with 300 rows.
async fn live_env() -> Env {
    let env = env_with_table(
        "unused",
        1,
        PageLimits {
            max_rows: 20,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    let mut req = ots_datagen::create_table_request(TABLE);
    req.table_meta.primary_key = vec![pb::PrimaryKeySchema {
        name: "id".into(),
        r#type: pb::PrimaryKeyType::String as i32,
        option: None,
    }];
    if let Some(o) = req.table_options.as_mut() {
        o.max_versions = Some(10);
    }
    req.stream_spec = Some(pb::StreamSpecification {
        enable_stream: true,
        expiration_time: Some(24),
        columns_to_get: Vec::new(),
    });
    env.client.create_table(&req).await.unwrap();
    let mut w = Writer::new(env.client.clone(), 1);
    for i in 0..300 {
        w.put_row(i).await;
    }
    env
}

fn key(i: u64) -> Vec<PkColumn> {
    vec![PkColumn::new("id", PkValue::String(format!("k{i:04}")))]
}

/// A deterministic writer of every kind of change.
struct Writer {
    client: OtsClient,
    state: u64,
    ops: u64,
    /// Explicit cell timestamps are drawn from the millisecond after this (an hour ago: inside
    /// the table's version deviation).
    base_ms: i64,
}

impl Writer {
    fn new(client: OtsClient, seed: u64) -> Self {
        Writer {
            client,
            state: seed.wrapping_mul(6364136223846793005).wrapping_add(1),
            ops: 0,
            base_ms: (ots_format::time::unix_millis(std::time::SystemTime::now()) / 3_600_000 - 1)
                * 3_600_000,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 33
    }

    async fn put_row(&mut self, i: u64) {
        let ts = self.base_ms + (self.next() % 1000) as i64;
        let row = Row {
            primary_key: key(i),
            cells: vec![
                Cell::new("a", Value::Integer(self.next() as i64), None),
                Cell::new("b", Value::String(format!("s{}", self.next())), None),
                Cell::new("v", Value::Integer(i as i64), Some(ts)),
                Cell::new("v", Value::Integer(i as i64 + 1), Some(ts + 1)),
                Cell::new("n", Value::Integer(0), None),
            ],
        };
        let req = pb::PutRowRequest {
            table_name: TABLE.into(),
            row: Bytes::from(encode_put_row(&row)),
            condition: ignore(),
            ..Default::default()
        };
        self.client
            .put_row(&req, Idempotency::Idempotent)
            .await
            .unwrap();
        self.ops += 1;
    }

    async fn update(&mut self, i: u64, updates: Vec<ColumnUpdate>) {
        let req = pb::UpdateRowRequest {
            table_name: TABLE.into(),
            row_change: Bytes::from(encode_update_row(&key(i), &updates)),
            condition: ignore(),
            ..Default::default()
        };
        // An increment is not idempotent: never repeated by the client.
        self.client
            .update_row(&req, Idempotency::NotIdempotent)
            .await
            .unwrap();
        self.ops += 1;
    }

    /// One random change to one of the first `keys` rows (some of them beyond the loaded ones, so
    /// rows appear too).
    async fn step(&mut self, keys: u64) {
        let i = self.next() % keys;
        match self.next() % 7 {
            0 => self.put_row(i).await,
            1 => {
                let v = self.next() as f64 / 7.0;
                self.update(
                    i,
                    vec![ColumnUpdate::Put {
                        name: "c".into(),
                        value: Value::Double(v),
                        timestamp: None,
                    }],
                )
                .await
            }
            2 => {
                self.update(
                    i,
                    vec![ColumnUpdate::Increment {
                        name: "n".into(),
                        delta: 3,
                    }],
                )
                .await
            }
            3 => {
                self.update(
                    i,
                    vec![ColumnUpdate::DeleteAllVersions { name: "b".into() }],
                )
                .await
            }
            4 => {
                // Deletes the older of the two versions put_row writes (if it is there).
                let ts = self.base_ms + (self.next() % 1000) as i64;
                self.update(
                    i,
                    vec![
                        ColumnUpdate::DeleteOneVersion {
                            name: "v".into(),
                            timestamp: ts,
                        },
                        ColumnUpdate::Put {
                            name: "v".into(),
                            value: Value::Integer(-(i as i64)),
                            timestamp: Some(ts + 500),
                        },
                    ],
                )
                .await
            }
            5 => {
                let req = pb::DeleteRowRequest {
                    table_name: TABLE.into(),
                    primary_key: Bytes::from(encode_delete_row(&key(i))),
                    condition: ignore(),
                    ..Default::default()
                };
                self.client
                    .delete_row(&req, Idempotency::Idempotent)
                    .await
                    .unwrap();
                self.ops += 1;
            }
            _ => {
                let s = format!("x{}", self.next());
                self.update(
                    i,
                    vec![
                        ColumnUpdate::Put {
                            name: "b".into(),
                            value: Value::String(s),
                            timestamp: None,
                        },
                        ColumnUpdate::Put {
                            name: "blob".into(),
                            value: Value::Binary(vec![i as u8; 64]),
                            timestamp: None,
                        },
                    ],
                )
                .await
            }
        }
    }
}

fn ignore() -> pb::Condition {
    pb::Condition {
        row_existence: pb::RowExistenceExpectation::Ignore as i32,
        column_condition: None,
    }
}

/// The official SDK's scan of a table, every version: rows of [[pk], [[name, value, ts]]].
const SDK_SCAN: &str = r#"
import json, sys, tablestore
from tablestore import OTSClient, INF_MIN, INF_MAX
endpoint, ak, sk, inst, t = sys.argv[1:6]
c = OTSClient(endpoint, ak, sk, inst, retry_policy=tablestore.retry.NoRetryPolicy())
def norm(v):
    return {"bin": v.hex()} if isinstance(v, (bytes, bytearray)) else v
meta = c.describe_table(t).table_meta
start = [(p[0], INF_MIN) for p in meta.schema_of_primary_key]
end = [(p[0], INF_MAX) for p in meta.schema_of_primary_key]
out, nxt = [], start
while nxt:
    _, nxt, rows, _ = c.get_range(t, "FORWARD", nxt, end, max_version=100)
    for r in rows:
        out.append([[[k, norm(v)] for k, v in r.primary_key],
                    sorted([[col[0], norm(col[1]), col[2]] for col in r.attribute_columns],
                           key=lambda x: (x[0], -x[2]))])
print(json.dumps(out))
"#;

async fn sdk_scan(env: &Env, table: &str) -> serde_json::Value {
    let (endpoint, table) = (env.emu.endpoint(), table.to_string());
    tokio::task::spawn_blocking(move || {
        run_python(SDK_SCAN, &[&endpoint, AK, SK, INSTANCE, &table])
    })
    .await
    .unwrap()
}

/// Asserts two SDK scans are equal, naming the first row that differs.
fn assert_same(what: &str, want: &serde_json::Value, got: &serde_json::Value) {
    let (w, g) = (want.as_array().unwrap(), got.as_array().unwrap());
    if let Some(i) = (0..w.len().max(g.len())).find(|&i| w.get(i) != g.get(i)) {
        panic!(
            "{what}: {} rows expected, {} restored; first difference at row {i}:\nexpected {}\nrestored {}",
            w.len(),
            g.len(),
            w.get(i).map_or("-".into(), |r| r.to_string()),
            g.get(i).map_or("-".into(), |r| r.to_string())
        );
    }
}

async fn restore(
    env: &Env,
    snap: &str,
    table: &str,
    extra: &[&str],
    work: &Path,
) -> serde_json::Value {
    let mut args = vec![
        "--json",
        "restore",
        "--from",
        snap,
        "--table",
        table,
        "--create-table",
    ];
    args.extend_from_slice(extra);
    let mut c = cmd(env, &args);
    c.current_dir(work);
    let out = run(c).await;
    assert!(out.status.success(), "restore {snap}: {}", stderr(&out));
    assert_no_secret(&out);
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// The entries of the destination folder (snapshot ids).
fn folder_names(dest: &Path) -> Vec<String> {
    std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits until a snapshot not in `existing` has its plan written; returns its id.
async fn new_planned_snapshot(dest: &Path, existing: &[String]) -> String {
    loop {
        let planned = folder_names(dest)
            .into_iter()
            .find(|n| !existing.contains(n) && dest.join(n).join("plan.json").exists());
        if let Some(id) = planned {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An incremental from `latest` whose capture waits `settle_ms` after its consistency point.
fn slow_incremental(env: &Env, dest: &Path, settle_ms: &str) -> std::process::Command {
    cmd(
        env,
        &[
            "--json",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.to_str().unwrap(),
            "--incremental-from",
            "latest",
            "--stream-settle-ms",
            settle_ms,
        ],
    )
}

/// A consistent full backup of the quiet table through the CLI; returns the snapshot's URL.
async fn full_backup(env: &Env, dest: &Path) -> String {
    let out = run(cmd(
        env,
        &[
            "-q",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.to_str().unwrap(),
            "--stream-settle-ms",
            "100",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap().to_string()
}

async fn incremental(env: &Env, dest: &Path, parent: &str) -> (String, serde_json::Value) {
    let out = run(cmd(
        env,
        &[
            "--json",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.to_str().unwrap(),
            "--incremental-from",
            parent,
            "--stream-settle-ms",
            "200",
        ],
    ))
    .await;
    assert!(out.status.success(), "incremental: {}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    (o["url"].as_str().unwrap().to_string(), o)
}

fn manifest(snap_url: &str) -> ots_manifest::Manifest {
    serde_json::from_slice(&std::fs::read(Path::new(snap_url).join("manifest.json")).unwrap())
        .unwrap()
}

/// The consistent full backup, run in-process so that the writer can stop halfway through the
/// scan (the consistency point comes after the last split, so after the writer's last change).
async fn full_backup_under_writes(env: &Env, dest: &Path) -> (String, u64) {
    let dest_handle = ots_writer::open_destination(
        dest.to_str().unwrap(),
        &ots_writer::DestinationOptions {
            create_local: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut cfg = ots_backup::BackupConfig::new(TABLE, env.emu.endpoint(), INSTANCE);
    cfg.concurrency = 1;
    cfg.split_size = ots_scan::SplitSize {
        units: 1,
        unit_bytes: 1024,
    };
    cfg.capture.settle = Duration::from_millis(200);
    let progress = Arc::new(ots_backup::Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, progress, stop) = (env.client.clone(), progress.clone(), stop.clone());
        tokio::spawn(async move {
            let mut w = Writer::new(client, 7);
            loop {
                let total = progress.splits_total.load(Ordering::Relaxed);
                let done = progress.splits_done.load(Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || (total > 0 && done * 2 >= total) {
                    return w.ops;
                }
                w.step(340).await;
            }
        })
    };
    let client = env.client.clone();
    let outcome = ots_backup::run_backup(&client, dest_handle, &cfg, progress.clone()).await;
    stop.store(true, Ordering::Relaxed);
    let ops = writer.await.unwrap();
    let outcome = outcome.unwrap();
    assert!(
        outcome.manifest.splits.len() >= 4,
        "the scan should take several splits, got {}",
        outcome.manifest.splits.len()
    );
    (outcome.url, ops)
}

#[tokio::test]
async fn consistent_full_and_incrementals_restore_exactly_at_every_link() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    // 1. A consistent full snapshot while a writer changes the table.
    let (full, ops) = full_backup_under_writes(&env, dest.path()).await;
    assert!(ops > 20, "the writer ran during the scan ({ops} changes)");
    let m = manifest(&full);
    let c = m
        .changes
        .as_ref()
        .expect("a table with a stream gets a change set");
    assert_eq!(c.kind, ots_format::LinkKind::Full);
    assert!(
        c.counts.records() > 0,
        "changes made during the scan were captured"
    );
    assert!(m.consistency.contains("exactly"), "{}", m.consistency);
    let source_at_full = sdk_scan(&env, TABLE).await;
    restore(&env, &full, "r_full", &[], work.path()).await;
    assert_same(
        "full link",
        &source_at_full,
        &sdk_scan(&env, "r_full").await,
    );

    // 2. More changes; an incremental from `latest`.
    let mut w = Writer::new(env.client.clone(), 11);
    for _ in 0..150 {
        w.step(360).await;
    }
    let (link1, o) = incremental(&env, dest.path(), "latest").await;
    assert_eq!(o["kind"], "incremental");
    assert_eq!(o["parent"], serde_json::json!(m.snapshot_id));
    assert_eq!(o["rows"], 0);
    // The change files' bytes, as written to the folder.
    let id = o["snapshot_id"].as_str().unwrap();
    let on_disk: u64 = std::fs::read_dir(dest.path().join(id).join("changes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk > 0, "{o}");
    assert_eq!(o["change_bytes"].as_u64(), Some(on_disk), "{o}");
    let source_at_link1 = sdk_scan(&env, TABLE).await;
    let r1 = restore(&env, &link1, "r_link1", &[], work.path()).await;
    assert_eq!(r1["chain"].as_array().unwrap().len(), 2, "{r1}");
    assert_same("link 1", &source_at_link1, &sdk_scan(&env, "r_link1").await);

    // 3. Two batches of changes with an instant between them; a second incremental from the
    //    first's URL.
    for _ in 0..100 {
        w.step(360).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between_us = ots_format::time::unix_micros(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let source_between = sdk_scan(&env, TABLE).await;
    for _ in 0..100 {
        w.step(360).await;
    }
    let (link2, _) = incremental(&env, dest.path(), &link1).await;
    let source_at_link2 = sdk_scan(&env, TABLE).await;
    restore(&env, &link2, "r_link2", &[], work.path()).await;
    assert_same("link 2", &source_at_link2, &sdk_scan(&env, "r_link2").await);

    // --as-of between the links (RFC 3339 with microseconds).
    let as_of = ots_format::time::rfc3339_micros(between_us);
    let r = restore(&env, &link2, "r_between", &["--as-of", &as_of], work.path()).await;
    assert!(
        r["changes"]["changes_after_as_of"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_same(
        "--as-of between links",
        &source_between,
        &sdk_scan(&env, "r_between").await,
    );

    // The first link, restored after the second exists, is still the table at its own point.
    restore(&env, &link1, "r_link1_again", &[], work.path()).await;
    assert_same(
        "link 1 again",
        &source_at_link1,
        &sdk_scan(&env, "r_link1_again").await,
    );

    // An instant outside the chain is refused, naming the range.
    let out = run(cmd(
        &env,
        &[
            "restore",
            "--from",
            &link2,
            "--table",
            "r_bad",
            "--create-table",
            "--as-of",
            "1000",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));

    // verify checks every link, change files included; ls and show name the chain.
    for snap in [&full, &link1, &link2] {
        let out = run(cmd(&env, &["verify", snap])).await;
        assert!(out.status.success(), "verify {snap}: {}", stderr(&out));
    }
    let out = run(cmd(&env, &["--json", "ls", dest.path().to_str().unwrap()])).await;
    let ls: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let kinds: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(kinds, ["full", "incremental", "incremental"], "{ls}");
    let out = run(cmd(&env, &["show", &link2])).await;
    assert!(
        stdout(&out).contains("incremental link: parent"),
        "{}",
        stdout(&out)
    );
}

/// `verify --against-table` on a link of a chain, as JSON: the exit code and the comparison.
async fn verify_against(
    env: &Env,
    snap: &str,
    table: &str,
) -> (Option<i32>, serde_json::Value, String) {
    let out = run(cmd(
        env,
        &["--json", "verify", snap, "--against-table", table],
    ))
    .await;
    let json = serde_json::from_str(stdout(&out).trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json["comparison"].clone(), stderr(&out))
}

#[tokio::test]
async fn verify_against_table_compares_the_image_of_the_chain() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();

    // A consistent full link under writes: its data files alone are not the table, its image is.
    let (full, _) = full_backup_under_writes(&env, dest.path()).await;
    let m = manifest(&full);
    assert!(
        m.changes.as_ref().unwrap().counts.records() > 0,
        "changes were captured"
    );
    let (code, c, err) = verify_against(&env, &full, TABLE).await;
    assert_eq!(
        code,
        Some(0),
        "full link against its unchanged source: {c} {err}"
    );
    assert_eq!(c["chain"], serde_json::json!([m.snapshot_id]), "{c}");
    assert!(c["rows_matching"].as_u64().unwrap() > 250, "{c}");

    // An incremental under writes: no data files, only changes, compared as the chain's image.
    let mut w = Writer::new(env.client.clone(), 13);
    for _ in 0..150 {
        w.step(360).await;
    }
    let (link, _) = incremental(&env, dest.path(), "latest").await;
    let link_id = manifest(&link).snapshot_id;
    let (code, c, err) = verify_against(&env, &link, TABLE).await;
    assert_eq!(
        code,
        Some(0),
        "incremental against its unchanged source: {c} {err}"
    );
    assert_eq!(
        c["chain"],
        serde_json::json!([m.snapshot_id, link_id]),
        "{c}"
    );
    let out = run(cmd(&env, &["verify", &link, "--against-table", TABLE])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": OK,"), "{}", stdout(&out));

    // A restored copy of the link is its image too.
    restore(&env, &link, "r_link", &[], work.path()).await;
    let (code, c, err) = verify_against(&env, &link, "r_link").await;
    assert_eq!(code, Some(0), "restored copy: {c} {err}");

    // --as-of-snapshot has no meaning for an exact image: refused before anything is read.
    let out = run(cmd(
        &env,
        &[
            "verify",
            &link,
            "--against-table",
            TABLE,
            "--as-of-snapshot",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--as-of-snapshot"),
        "{}",
        stderr(&out)
    );

    // A write after the link's consistency point is a difference naming its key.
    w.put_row(5).await;
    let out = run(cmd(&env, &["verify", &link, "--against-table", TABLE])).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("k0005"), "{}", stderr(&out));
    let (code, c, _) = verify_against(&env, &link, TABLE).await;
    assert_eq!(code, Some(3));
    assert_eq!(c["different"], 1, "{c}");
    assert_eq!(
        c["first_differences"][0]["primary_key"][0]["value"]["string"], "k0005",
        "{c}"
    );
    // The restored copy did not change.
    let (code, _, err) = verify_against(&env, &link, "r_link").await;
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn a_trimmed_parent_is_refused_and_nothing_is_written() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    full_backup(&env, dest.path()).await;
    let mut w = Writer::new(env.client.clone(), 3);
    for _ in 0..20 {
        w.step(300).await;
    }
    let now = ots_format::time::unix_micros(std::time::SystemTime::now());
    assert!(env.emu.trim_stream(TABLE, now).unwrap() > 0);
    let before: Vec<_> = std::fs::read_dir(dest.path()).unwrap().collect();
    let out = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.path().to_str().unwrap(),
            "--incremental-from",
            "latest",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("full snapshot"), "{}", stderr(&out));
    let after: Vec<_> = std::fs::read_dir(dest.path()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "nothing was written");
}

#[tokio::test]
async fn a_shard_split_inside_the_window_keeps_every_key_in_order() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    full_backup(&env, dest.path()).await;
    let mut w = Writer::new(env.client.clone(), 5);
    for round in 0..3 {
        for _ in 0..60 {
            w.step(320).await;
        }
        let children = env.emu.split_stream_shards(TABLE).unwrap();
        assert!(children.len() >= 2 << round, "round {round}: {children:?}");
    }
    for _ in 0..60 {
        w.step(320).await;
    }
    let (link, o) = incremental(&env, dest.path(), "latest").await;
    assert!(o["changes"]["update_row"].as_u64().unwrap() > 0, "{o}");
    let source = sdk_scan(&env, TABLE).await;
    restore(&env, &link, "r_split", &[], work.path()).await;
    assert_same(
        "after shard splits",
        &source,
        &sdk_scan(&env, "r_split").await,
    );
    // The next incremental continues from the children's checkpoints.
    for _ in 0..40 {
        w.step(320).await;
    }
    let (link2, _) = incremental(&env, dest.path(), "latest").await;
    let source = sdk_scan(&env, TABLE).await;
    restore(&env, &link2, "r_split2", &[], work.path()).await;
    assert_same(
        "after the children",
        &source,
        &sdk_scan(&env, "r_split2").await,
    );
}

#[tokio::test]
async fn shards_split_while_a_capture_runs_and_the_chain_stays_exact() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    full_backup(&env, dest.path()).await;
    let mut w = Writer::new(env.client.clone(), 17);
    for _ in 0..100 {
        w.step(320).await;
    }
    let existing = folder_names(dest.path());
    // A long settle keeps the capture reading while shards split and writes go on around its
    // consistency point.
    let mut c = slow_incremental(&env, dest.path(), "1500");
    let child = tokio::task::spawn_blocking(move || c.output().unwrap());
    new_planned_snapshot(dest.path(), &existing).await;
    for _ in 0..3 {
        for _ in 0..40 {
            w.step(320).await;
        }
        env.emu.split_stream_shards(TABLE).unwrap();
    }
    let out = child.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The changes after the first link's consistency point, in children it could not reach or
    // stopped in, are the next link's.
    for _ in 0..40 {
        w.step(320).await;
    }
    let (last, _) = incremental(&env, dest.path(), "latest").await;
    let source = sdk_scan(&env, TABLE).await;
    let r = restore(&env, &last, "r_split_live", &[], work.path()).await;
    assert_eq!(r["chain"].as_array().unwrap().len(), 3, "{r}");
    assert_same(
        "splits during a capture",
        &source,
        &sdk_scan(&env, "r_split_live").await,
    );
}

#[tokio::test]
async fn a_killed_incremental_resumes_and_restores_exactly() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    full_backup(&env, dest.path()).await;
    let mut w = Writer::new(env.client.clone(), 9);
    for _ in 0..200 {
        w.step(320).await;
    }
    let existing = folder_names(dest.path());
    // A long settle keeps the capture running: kill it once its plan is written.
    let mut child = slow_incremental(&env, dest.path(), "5000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = new_planned_snapshot(dest.path(), &existing).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dest.path().join(&id).join("manifest.json").exists());
    // More changes after the crash: the resumed capture takes them too.
    for _ in 0..30 {
        w.step(320).await;
    }
    let out = run(cmd(
        &env,
        &[
            "--json",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.path().to_str().unwrap(),
            "--resume",
            &id,
            "--stream-settle-ms",
            "100",
        ],
    ))
    .await;
    assert!(out.status.success(), "resume: {}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["snapshot_id"], serde_json::json!(id));
    let source = sdk_scan(&env, TABLE).await;
    let snap = o["url"].as_str().unwrap().to_string();
    restore(&env, &snap, "r_resumed", &[], work.path()).await;
    assert_same(
        "resumed incremental",
        &source,
        &sdk_scan(&env, "r_resumed").await,
    );
}

#[tokio::test]
async fn a_table_without_a_stream_gets_a_scan_and_says_so() {
    let env = live_env().await;
    let dest = tempfile::tempdir().unwrap();
    let out = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            "unused",
            "--to",
            dest.path().to_str().unwrap(),
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = stdout(&out).lines().last().unwrap().to_string();
    let m = manifest(&snap);
    assert!(m.changes.is_none());
    assert!(m.consistency.contains("Stream API"), "{}", m.consistency);
    // An incremental needs a parent with captured changes.
    let out = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "unused",
            "--to",
            dest.path().to_str().unwrap(),
            "--incremental-from",
            &snap,
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("captured no changes"),
        "{}",
        stderr(&out)
    );
    // --no-stream on a stream table: a plain scan.
    let out = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.path().to_str().unwrap(),
            "--no-stream",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        manifest(stdout(&out).lines().last().unwrap())
            .changes
            .is_none()
    );
}
