//! `otsarchive backup` end to end against the emulator: the snapshot is complete and lossless,
//! independent readers (DuckDB, pyarrow, hashlib) agree with the manifest, every partitioning mode
//! reads back with DuckDB's hive partitioning, and bad options fail fast with exit code 2.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use ots_emulator::PageLimits;
use ots_wire::types::Value;
use support::*;

fn backup_cmd(env: &Env, table: &str, to: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args([
        "--endpoint",
        &env.emu.endpoint(),
        "--instance",
        INSTANCE,
        "backup",
    ])
    .args(["--table", table, "--to", to.to_str().unwrap()])
    .args(["--split-size-mb", "48", "--split-unit-bytes", "1024"])
    .args(extra);
    c
}

const READERS: &str = r#"
import duckdb, hashlib, json, os, sys
snap = sys.argv[1]
m = json.load(open(os.path.join(snap, "manifest.json")))
files = [os.path.join(snap, f["path"]) for f in m["files"]]
sha_ok = all(hashlib.sha256(open(p, "rb").read()).hexdigest() == f["sha256"] and os.path.getsize(p) == f["bytes"]
             for p, f in zip(files, m["files"]))
src = f"read_parquet('{snap}/data/**/*.parquet')"
q = lambda s: duckdb.sql(s.replace("SRC", src)).fetchall()
import pyarrow.parquet as pq
print(json.dumps({
  "sha_ok": sha_ok,
  "count": q("SELECT count(*) FROM SRC")[0][0],
  "distinct_pk": q("SELECT count(*) FROM (SELECT DISTINCT user_id, seq FROM SRC)")[0][0],
  "row7": q("SELECT user_id, age, city, hex(digest) FROM SRC WHERE seq = 7"),
  "level_conflicts": q("SELECT count(*) FROM (SELECT level, unnest(\"$cells\") AS c FROM SRC) WHERE c.name = 'level' AND level IS NULL AND c.type = 'STRING'")[0][0],
  "status_versions": q("SELECT count(*) FROM (SELECT unnest(\"$cells\") AS c FROM SRC) WHERE c.name = 'status'")[0][0],
  "pyarrow_rows": sum(pq.ParquetFile(p).metadata.num_rows for p in files),
}))
"#;

#[tokio::test]
async fn backup_to_a_local_folder_is_complete_lossless_and_readable() {
    let env = env_with_table(
        "orders",
        3000,
        PageLimits {
            max_rows: 400,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(backup_cmd(
        &env,
        "orders",
        dir.path(),
        &["--json", "--concurrency", "3"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["rows"], 3000);
    assert!(summary["splits"].as_u64().unwrap() >= 3, "{summary}");
    let url = summary["url"].as_str().unwrap().to_string();
    let snap = Path::new(&url);

    // Lossless: every cell of every version, read back through the layout.
    let expected = env.expected_rows();
    let got = snapshot_rows(snap);
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    // The manifest's counts and checksums match the files, by our verifier and by hashlib.
    let v = run({
        let mut c = otsarchive();
        c.args(["verify", &url]);
        c
    })
    .await;
    assert!(v.status.success(), "{}", stderr(&v));
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(snap.join("manifest.json")).unwrap()).unwrap();
    let cells: u64 = expected.iter().map(|r| r.cells.len() as u64).sum();
    assert_eq!(manifest.totals.rows, 3000);
    assert_eq!(manifest.totals.cells, cells);
    assert_eq!(manifest.source.table.primary_key.len(), 2);
    assert!(!serde_json::to_string(&manifest).unwrap().contains(SK));

    let r = run_python(READERS, &[snap.to_str().unwrap()]);
    assert_eq!(r["sha_ok"], true);
    assert_eq!(r["count"], 3000);
    assert_eq!(r["distinct_pk"], 3000);
    assert_eq!(r["pyarrow_rows"], 3000);
    let row7 = &expected[7];
    let cell = |n: &str| {
        row7.cells
            .iter()
            .find(|c| c.name == n)
            .unwrap()
            .value
            .clone()
    };
    let (Value::Integer(age), Value::String(city), Value::Binary(digest)) =
        (cell("age"), cell("city"), cell("digest"))
    else {
        panic!("unexpected types in row 7");
    };
    assert_eq!(r["row7"][0][1], age);
    assert_eq!(r["row7"][0][2], city);
    assert_eq!(r["row7"][0][3], hex::encode_upper(digest));
    let conflicts = expected
        .iter()
        .filter(|r| {
            r.cells
                .iter()
                .any(|c| c.name == "level" && matches!(c.value, Value::String(_)))
        })
        .count();
    assert!(conflicts > 0);
    assert_eq!(r["level_conflicts"], conflicts);
    let older_status: usize = expected
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .filter(|c| c.name == "status")
                .count()
                .saturating_sub(1)
        })
        .sum();
    assert!(older_status > 0);
    assert_eq!(r["status_versions"], older_status);
}

const HIVE: &str = r#"
import duckdb, json, sys
snap, key = sys.argv[1], sys.argv[2]
src = f"read_parquet('{snap}/data/**/*.parquet', hive_partitioning=true, hive_types_autocast=false)"
rows = duckdb.sql(f'SELECT "{key}", count(*) FROM {src} GROUP BY 1 ORDER BY 1').fetchall()
print(json.dumps({"groups": rows}))
"#;

#[tokio::test]
async fn every_partitioning_mode_reads_back_with_hive_partitioning() {
    let env = env_with_table("events", 1200, PageLimits::default()).await;
    let expected = env.expected_rows();
    let by_city: BTreeMap<String, u64> = expected.iter().fold(BTreeMap::new(), |mut m, r| {
        if let Some(Value::String(c)) = r.cells.iter().find(|c| c.name == "city").map(|c| &c.value)
        {
            *m.entry(c.clone()).or_default() += 1;
        }
        m
    });
    for (spec, key) in [
        ("column:city", "city"),
        ("hash:4", "bucket"),
        ("day:latest-write", "dt"),
        ("hour:latest-write", "hour"),
        ("day:age:seconds", "dt"),
        ("hour:seq:millis", "hour"),
        ("day:name:iso", "dt"),
        ("column:user_id", "user_id"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // 150 user partitions through 2 open files and a small row budget: memory stays flat.
        let mut args = vec!["--partition-by", spec];
        if spec == "column:user_id" {
            args.extend(["--max-open-partitions", "2", "--batch-rows", "16"]);
        }
        let out = run(backup_cmd(&env, "events", dir.path(), &args)).await;
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        let url = stdout(&out).lines().last().unwrap().to_string();
        let snap = Path::new(&url);
        assert_eq!(snapshot_rows(snap), expected, "{spec}: lossless");
        let r = run_python(HIVE, &[&url, key]);
        let groups = r["groups"].as_array().unwrap();
        let total: u64 = groups.iter().map(|g| g[1].as_u64().unwrap()).sum();
        assert_eq!(total, 1200, "{spec}");
        match spec {
            "column:city" => {
                let got: BTreeMap<String, u64> = groups
                    .iter()
                    .map(|g| (g[0].as_str().unwrap().to_string(), g[1].as_u64().unwrap()))
                    .collect();
                assert_eq!(got, by_city);
            }
            "hash:4" => {
                assert!(groups.len() > 1 && groups.len() <= 4);
                assert!(
                    groups
                        .iter()
                        .all(|g| g[0].as_str().unwrap().parse::<u32>().unwrap() < 4)
                );
            }
            "day:age:seconds" => assert_eq!(groups[0][0], "1970-01-01"),
            // seq 0..1200 as milliseconds: all within the first hour of 1970.
            "hour:seq:millis" => assert_eq!(r["groups"], serde_json::json!([["00", 1200]])),
            // `name` is not an ISO date: every row goes to Hive's default partition, which
            // DuckDB reads as NULL.
            "day:name:iso" => assert_eq!(r["groups"], serde_json::json!([[null, 1200]])),
            "column:user_id" => assert_eq!(groups.len(), 150),
            _ => assert!(!groups.is_empty()),
        }
    }
}

#[tokio::test]
async fn bad_destinations_and_options_fail_fast_with_exit_code_2() {
    let env = env_with_table("t", 50, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let before = env.emu.stats();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--to", "ftp://bucket/x"], "unknown scheme 'ftp'"),
        (vec!["--to", "oss:///nobucket"], "names no bucket"),
        (vec!["--to", "oss://bucket/x"], "OSS region"),
        // Neither a primary-key nor a defined column: known to be missing without a scan.
        (vec!["--partition-by", "hash:x"], "bucket count"),
        (vec!["--partition-by", "hash:0"], "at least 1"),
        (vec!["--zstd-level", "99"], "out of range"),
        (vec!["--table", "missing_table"], "OTSObjectNotExist"),
    ];
    for (args, message) in cases {
        let mut c = otsarchive();
        c.args([
            "--endpoint",
            &env.emu.endpoint(),
            "--instance",
            INSTANCE,
            "backup",
        ]);
        if !args.contains(&"--table") {
            c.args(["--table", "t"]);
        }
        if !args.contains(&"--to") {
            c.args(["--to", dir.path().to_str().unwrap()]);
        }
        c.args(&args);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_no_secret(&out);
    }
    // No credentials at all.
    let mut c = otsarchive();
    c.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .args([
            "--endpoint",
            &env.emu.endpoint(),
            "--instance",
            INSTANCE,
            "backup",
        ])
        .args(["--table", "t", "--to", dir.path().to_str().unwrap()]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    // None of these read a single row.
    let after = env.emu.stats();
    let ranges = |s: &ots_emulator::EmulatorStats| s.actions.get("GetRange").copied().unwrap_or(0);
    assert_eq!(
        ranges(&after),
        ranges(&before),
        "data was read before failing"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a snapshot was started"
    );

    // An attribute column can only be looked up in the inference sample: that sample is read, but
    // the run stops with exit 2 before a snapshot is started.
    let mut c = otsarchive();
    c.args([
        "--endpoint",
        &env.emu.endpoint(),
        "--instance",
        INSTANCE,
        "backup",
    ])
    .args(["--table", "t", "--to", dir.path().to_str().unwrap()])
    .args(["--partition-by", "column:nope"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("partition column 'nope' does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("city"),
        "the message lists the known columns: {}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a snapshot was started"
    );
}

/// Cells dated after the snapshot time T (Tablestore accepts timestamps up to now + the table's
/// deviation) are counted and named, never dropped silently; `--time-range all` takes them, and
/// the restored table then holds them.
#[tokio::test]
async fn cells_dated_after_t_are_counted_and_taken_with_time_range_all() {
    use ots_wire::types::{Cell, PkColumn, PkValue, Row};
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    let row = Row {
        primary_key: vec![
            PkColumn::new("user_id", PkValue::String("zz-future".into())),
            PkColumn::new("seq", PkValue::Integer(1)),
        ],
        cells: vec![
            Cell::new("age", Value::Integer(1), Some(future)),
            Cell::new("city", Value::String("later".into()), Some(future + 1)),
        ],
    };
    let written = env
        .client
        .batch_write_row(
            &ots_datagen::put_batch_request("t", &[row]),
            ots_wire::Idempotency::Idempotent,
        )
        .await
        .unwrap();
    assert!(written.tables[0].rows[0].is_ok, "{written:?}");
    let dir = tempfile::tempdir().unwrap();

    let out = run(backup_cmd(&env, "t", dir.path(), &["--json"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["cells_after_t"], 2, "{o}");
    assert_eq!(o["time_range"], "up_to_t");
    assert_eq!(o["rows"], 300);
    let err = stderr(&out);
    assert!(
        err.contains("2 cells in 1 row are dated after the snapshot time T")
            && err.contains("--time-range all"),
        "{err}"
    );
    let snap = o["url"].as_str().unwrap().to_string();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&snap).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["totals"]["cells_after_t"], 2);
    assert_eq!(m["time_range"]["scope"], "up_to_t");
    // The table holds cells this snapshot does not: a comparison says so.
    let mut verify = otsarchive();
    verify.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE]);
    verify.args(["verify", &snap, "--against-table", "t"]);
    let v = run(verify).await;
    assert_eq!(v.status.code(), Some(3), "{}", stderr(&v));

    let out = run(backup_cmd(
        &env,
        "t",
        dir.path(),
        &["--json", "--time-range", "all"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["cells_after_t"], 0, "{o}");
    assert_eq!(o["time_range"], "all");
    assert_eq!(o["rows"], 301);
    let all = o["url"].as_str().unwrap().to_string();
    let with = |args: &[&str]| {
        let mut c = otsarchive();
        c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE]);
        c.args(args);
        c.current_dir(dir.path());
        c
    };
    let v = run(with(&["verify", &all, "--against-table", "t"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
    let r = run(with(&[
        "restore",
        "--from",
        &all,
        "--table",
        "t_all",
        "--create-table",
    ]))
    .await;
    assert!(r.status.success(), "{}", stderr(&r));
    let v = run(with(&["verify", &all, "--against-table", "t_all"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
}
