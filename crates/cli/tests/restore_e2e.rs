//! Restore and verify end to end: backup → restore into a new table → `verify --against-table`,
//! with the official Python SDK as the independent judge; restores under faults, a permanently
//! failing row, a killed and resumed restore, a resume refused for other options or another
//! target, bad numbers refused, and verify catching damage, later versions (unless
//! `--as-of-snapshot`), deleted and added rows.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ots_emulator::{FaultConfig, PageLimits};
use ots_wire::Idempotency;
use ots_wire::pb;
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

async fn backup(env: &Env, table: &str, dest: &Path) -> String {
    let out = run(cmd(
        env,
        &[
            "-q",
            "backup",
            "--table",
            table,
            "--to",
            dest.to_str().unwrap(),
            "--split-size-mb",
            "48",
            "--split-unit-bytes",
            "1024",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap().to_string()
}

/// A table with BINARY and unicode STRING keys and an AUTO_INCREMENT column, every attribute type,
/// several versions.
async fn create_special_table(env: &Env) {
    let pk = |name: &str, t: pb::PrimaryKeyType, auto: bool| pb::PrimaryKeySchema {
        name: name.into(),
        r#type: t as i32,
        option: auto.then_some(pb::PrimaryKeyOption::AutoIncrement as i32),
    };
    let mut req = ots_datagen::create_table_request("special");
    req.table_meta.primary_key = vec![
        pk("region", pb::PrimaryKeyType::String, false),
        pk("tag", pb::PrimaryKeyType::Binary, false),
        pk("id", pb::PrimaryKeyType::Integer, true),
    ];
    env.client.create_table(&req).await.unwrap();
    let base = ots_datagen::DatasetSpec::new(1, 1).base_ts_ms;
    let regions = ["杭州", "Zürich", "a\u{0}b", "😀", ""];
    let mut rows = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        for j in 0..8u8 {
            rows.push(Row {
                primary_key: vec![
                    PkColumn::new("region", PkValue::String(r.to_string())),
                    PkColumn::new("tag", PkValue::Binary(vec![0, j, 0xff])),
                    PkColumn::new("id", PkValue::AutoIncrement),
                ],
                cells: vec![
                    Cell::new("b", Value::Boolean(j % 2 == 0), Some(base)),
                    Cell::new("bin", Value::Binary(vec![j; (j as usize) * 3]), Some(base)),
                    Cell::new("d", Value::Double(j as f64 / 3.0), Some(base)),
                    Cell::new("i", Value::Integer(i as i64 * 100 + j as i64), Some(base)),
                    Cell::new("s", Value::String(format!("{r}-{j}")), Some(base)),
                    Cell::new("s", Value::String("older".into()), Some(base - 5000)),
                ],
            });
        }
    }
    let req = ots_datagen::put_batch_request("special", &rows);
    let out = env
        .client
        .batch_write_row_retrying(&req, Idempotency::NotIdempotent)
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
}

/// Writes one cell version into an existing row with UpdateRow (the row's other cells stay).
async fn put_cell(
    env: &Env,
    table: &str,
    pk: &[PkColumn],
    name: &str,
    value: Value,
    ts: Option<i64>,
) {
    put_cells(&env.client, table, pk, &[Cell::new(name, value, ts)]).await;
}

#[tokio::test]
async fn round_trip_into_a_new_table_is_identical() {
    let env = env_with_table(
        "orders",
        2000,
        PageLimits {
            max_rows: 300,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    create_special_table(&env).await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    for (table, copy) in [("orders", "orders_copy"), ("special", "special_copy")] {
        let snap = backup(&env, table, dest.path()).await;
        let mut c = cmd(
            &env,
            &[
                "restore",
                "--from",
                &snap,
                "--table",
                copy,
                "--create-table",
                "--json",
            ],
        );
        c.current_dir(work.path());
        let out = run(c).await;
        assert!(out.status.success(), "{table}: {}", stderr(&out));
        assert_no_secret(&out);
        let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(o["table_created"], true);
        assert_eq!(o["rows_failed"], 0);
        if table == "special" {
            assert_eq!(o["rows_written"], 40);
            let note = o["auto_increment_note"].as_str().unwrap();
            assert!(
                note.contains("'id'") && note.contains("original values"),
                "{note}"
            );
        } else {
            assert_eq!(o["rows_written"], 2000);
        }
        // Our own comparison …
        let v = run(cmd(&env, &["verify", &snap, "--against-table", copy])).await;
        assert!(v.status.success(), "{table}: {}", stderr(&v));
        // The verdict is on stdout.
        assert!(
            stdout(&v).contains(&format!("table '{copy}' (every cell): OK")),
            "{}",
            stdout(&v)
        );
        // … and the official SDK's, scanning both tables with all versions.
        let r = sdk_compare(&env, table, copy).await;
        assert_eq!(r["equal"], true, "{table}: {r}");
        assert!(r["rows_a"].as_u64().unwrap() > 0);
    }
    // Restoring again changes nothing (idempotent) and never duplicates a row. The table holds
    // rows now, so the mode is chosen explicitly.
    let snap = backup(&env, "special", dest.path()).await;
    let mut c = cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &snap,
            "--table",
            "special_copy",
            "--mode",
            "overwrite",
        ],
    );
    c.current_dir(work.path());
    assert!(run(c).await.status.success());
    assert_eq!(
        sdk_compare(&env, "special", "special_copy").await["equal"],
        true
    );
}

#[tokio::test]
async fn restore_under_faults_is_exact_and_reports_retries() {
    let env = env_with_table("t", 1500, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    env.emu
        .set_faults(FaultConfig {
            throttle_rate: 0.15,
            server_error_rate: 0.1,
            row_error_rate: 0.2,
            seed: Some(11),
            ..FaultConfig::default()
        })
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut c = cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &snap,
            "--table",
            "t_copy",
            "--create-table",
            "--concurrency",
            "4",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_written"], 1500);
    assert!(o["row_retries"].as_u64().unwrap() > 0, "{o}");
    let stats = env.emu.stats();
    assert!(
        stats.injected_row_errors > 0 && stats.injected_throttles > 0,
        "{stats:?}"
    );
    env.emu.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(sdk_compare(&env, "t", "t_copy").await["equal"], true);
}

#[tokio::test]
async fn rows_that_fail_for_good_go_to_the_dead_letter_file() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    // Create the target first, then fail every row write.
    let work = tempfile::tempdir().unwrap();
    env.client
        .create_table(&ots_datagen::create_table_request("t_copy"))
        .await
        .unwrap();
    env.emu
        .set_faults(FaultConfig {
            row_error_rate: 1.0,
            seed: Some(3),
            ..FaultConfig::default()
        })
        .unwrap();
    let dead = work.path().join("dead.jsonl");
    let mut c = cmd(
        &env,
        &[
            "--retry-attempts",
            "2",
            "restore",
            "--from",
            &snap,
            "--table",
            "t_copy",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("300 rows could not be restored"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    for l in &lines {
        assert!(
            ["OTSServerBusy", "OTSRowOperationConflict"].contains(&l["code"].as_str().unwrap()),
            "{l}"
        );
        assert_eq!(l["primary_key"].as_array().unwrap().len(), 2);
        assert!(!l["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_killed_restore_resumes_to_an_exact_result() {
    let env = env_with_table(
        "t",
        3000,
        PageLimits {
            max_rows: 200,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    env.emu
        .set_faults(FaultConfig {
            latency: Duration::from_millis(25),
            ..FaultConfig::default()
        })
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("ckpt.json");
    let args = |extra: &[&str]| {
        let mut c = cmd(
            &env,
            &[
                "-q",
                "restore",
                "--from",
                &snap,
                "--table",
                "t_copy",
                "--create-table",
                "--concurrency",
                "1",
                "--file-concurrency",
                "1",
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ],
        );
        c.args(extra).current_dir(work.path());
        c
    };
    let mut child = args(&[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read(&checkpoint)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(0, |v| v["files_done"].as_array().map_or(0, |a| a.len()));
        if done >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "restore never finished a file");
        assert!(
            child.try_wait().unwrap().is_none(),
            "restore finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let out = run({
        let mut c = args(&["--resume"]);
        c.arg("--json");
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        o["files_skipped_by_checkpoint"].as_u64().unwrap() >= 1,
        "{o}"
    );
    assert!(
        o["rows_written"].as_u64().unwrap() < 3000,
        "finished files were rewritten: {o}"
    );
    assert!(
        !checkpoint.exists(),
        "a finished restore removes its checkpoint"
    );
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "t_copy"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
    assert_eq!(sdk_compare(&env, "t", "t_copy").await["equal"], true);
}

#[tokio::test]
async fn verify_catches_damage_and_changed_rows() {
    let env = env_with_table("t", 600, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    let snap_dir = Path::new(&snap);
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(snap_dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.files.len() >= 2);
    let verify = |extra: &[&str]| {
        let mut c = cmd(&env, &["verify", &snap]);
        c.args(extra);
        c
    };
    assert!(run(verify(&[])).await.status.success());

    // A row changed in the live table.
    let changed = Row {
        primary_key: env.expected_rows()[10].primary_key.clone(),
        cells: vec![Cell::new(
            "age",
            Value::Integer(-1),
            Some(env.spec.base_ts_ms),
        )],
    };
    ots_datagen::load_rows(
        &env.client,
        "t",
        std::iter::once(changed),
        1,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    let out = run(verify(&["--against-table", "t"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // The key as --start-key takes it, and the cell that differs.
    let key = ots_format::display_columns(&env.expected_rows()[10].primary_key);
    assert!(key.starts_with("user_id=user-"), "{key}");
    let line = stderr(&out)
        .lines()
        .find(|l| l.starts_with("DIFFERENT "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", stderr(&out)));
    // The put replaced the whole row: its first cell in the snapshot (`active`) is gone.
    assert!(
        line.starts_with(&format!("DIFFERENT {key}: column active, version ")),
        "{line}"
    );
    assert!(line.contains("table has no such version"), "{line}");
    assert!(
        stdout(&out).contains("DIFFERENT, 599 of 600 snapshot rows match; 1 different"),
        "{}",
        stdout(&out)
    );

    // A flipped byte in a data file.
    let f0 = snap_dir.join(&manifest.files[0].path);
    let original = std::fs::read(&f0).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x40;
    std::fs::write(&f0, &flipped).unwrap();
    let out = run(verify(&[])).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));
    std::fs::write(&f0, &original).unwrap();

    // A deleted file.
    let f1 = snap_dir.join(&manifest.files[1].path);
    let saved = std::fs::read(&f1).unwrap();
    std::fs::remove_file(&f1).unwrap();
    let out = run(verify(&[])).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    std::fs::write(&f1, saved).unwrap();

    // A truncated manifest.
    let m = snap_dir.join("manifest.json");
    let text = std::fs::read(&m).unwrap();
    std::fs::write(&m, &text[..text.len() / 2]).unwrap();
    let out = run(verify(&[])).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("manifest"), "{}", stderr(&out));
    // A restore refuses the damaged snapshot before writing anything.
    std::fs::write(&m, &text).unwrap();
    std::fs::write(&f0, &flipped).unwrap();
    let out = run(cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "never",
            "--create-table",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        env.client.describe_table("never").await.is_err(),
        "a table was created"
    );
}

#[tokio::test]
async fn partial_restores_by_key_range_columns_and_mode() {
    let env = env_with_table("t", 600, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    let work = tempfile::tempdir().unwrap();
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_str(stdout(out).trim()).unwrap()
    };
    let restore = |extra: &[&str]| {
        let mut c = cmd(&env, &["--json", "restore", "--from", &snap]);
        c.args(extra).current_dir(work.path());
        c
    };

    // A key range: users 10..20 (8 rows each).
    let o = json(
        &run(restore(&[
            "--table",
            "t_range",
            "--create-table",
            "--start-key",
            "user_id=user-00000000010",
            "--end-key",
            "user_id=user-00000000020",
        ]))
        .await,
    );
    assert_eq!(o["rows_written"], 80, "{o}");
    let out = run(cmd(
        &env,
        &["--json", "verify", &snap, "--against-table", "t_range"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["comparison"]["rows_matching"], 80);
    assert_eq!(v["comparison"]["missing_in_table"], 520);
    assert_eq!(v["comparison"]["different"], 0);
    assert_eq!(v["comparison"]["extra_in_table"], 0);

    // A column subset into a full copy whose `age` was damaged: `age` comes back, and every other
    // column stays (a put of the subset would have wiped them).
    json(&run(restore(&["--table", "t_copy", "--create-table"])).await);
    let expected = env.expected_rows();
    for r in expected.iter().take(5) {
        let age = r.cells.iter().find(|c| c.name == "age").unwrap();
        put_cell(
            &env,
            "t_copy",
            &r.primary_key,
            "age",
            Value::Integer(-1),
            age.timestamp,
        )
        .await;
    }
    let out = run(cmd(&env, &["verify", &snap, "--against-table", "t_copy"])).await;
    assert_eq!(out.status.code(), Some(3), "the damage is visible");
    let o = json(
        &run(restore(&[
            "--table",
            "t_copy",
            "--columns",
            "age",
            "--mode",
            "overwrite",
        ]))
        .await,
    );
    assert_eq!(o["rows_written"], 600);
    let out = run(cmd(&env, &["verify", &snap, "--against-table", "t_copy"])).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Only-if-absent leaves present rows alone and counts them.
    let o = json(&run(restore(&["--table", "t_copy", "--mode", "only-if-absent"])).await);
    assert_eq!(o["rows_present"], 600, "{o}");
    assert_eq!(o["rows_written"], 0);

    // Bad partial options are refused before anything is written.
    for (args, message) in [
        (
            vec!["--table", "t_copy", "--columns", "nope"],
            "no column 'nope'",
        ),
        (
            vec!["--table", "t_copy", "--start-key", "seq=1"],
            "is 'user_id', not 'seq'",
        ),
        (
            vec!["--table", "t_copy", "--partition", "dt=2026-01-01"],
            "no partition key 'dt'",
        ),
        (vec!["--table", "missing"], "pass --create-table"),
    ] {
        let out = run(restore(&args)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

/// Table `shapes` (max 10 versions): 40 ordinary rows of the standard data, a 5 MB row of three
/// ~1.7 MB cells (`zz-big`) and a row of 1,500 cells, 300 columns × 5 versions (`zz-wide`), both
/// grown with several UpdateRows of at most 1,024 cells and 4 MB each, as the service allows.
async fn create_shapes_table(env: &Env) {
    let mut req = ots_datagen::create_table_request("shapes");
    if let Some(o) = req.table_options.as_mut() {
        o.max_versions = Some(10);
    }
    env.client.create_table(&req).await.unwrap();
    let rows: Vec<Row> = (0..40).map(|i| ots_datagen::row(&env.spec, i)).collect();
    let out = env
        .client
        .batch_write_row_retrying(
            &ots_datagen::put_batch_request("shapes", &rows),
            Idempotency::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
    let base = env.spec.base_ts_ms;
    let key = |user: &str, seq: i64| {
        vec![
            PkColumn::new("user_id", PkValue::String(user.into())),
            PkColumn::new("seq", PkValue::Integer(seq)),
        ]
    };
    let big = key("zz-big", 1);
    for (i, col) in ["big_a", "big_b", "big_c"].iter().enumerate() {
        let value = Value::String(char::from(b'a' + i as u8).to_string().repeat(1_700_000));
        put_cells(
            &env.client,
            "shapes",
            &big,
            &[Cell::new(*col, value, Some(base))],
        )
        .await;
    }
    let wide = key("zz-wide", 2);
    for v in 0..5i64 {
        let cells: Vec<Cell> = (0..300)
            .map(|c| {
                let value = match c % 4 {
                    0 => Value::Integer(c * 100 + v),
                    1 => Value::Double(c as f64 / 7.0 + v as f64),
                    2 => Value::Binary(vec![c as u8, v as u8, 0xff]),
                    _ => Value::String(format!("w{c}-{v}")),
                };
                Cell::new(format!("w{c:03}"), value, Some(base - v * 1000))
            })
            .collect();
        put_cells(&env.client, "shapes", &wide, &cells).await;
    }
}

#[tokio::test]
async fn rows_over_4_mb_or_1024_cells_are_restored_whole() {
    let env = env_with_table("t", 10, PageLimits::default()).await;
    create_shapes_table(&env).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "shapes", dest.path()).await;
    let work = tempfile::tempdir().unwrap();
    let dead = work.path().join("dead.jsonl");
    let mut c = cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &snap,
            "--table",
            "shapes_copy",
            "--create-table",
            "--dead-letter",
            dead.to_str().unwrap(),
            // The smallest budget: a split row's writes are claimed whole from it.
            "--memory-mb",
            "32",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_written"], 42, "{o}");
    assert_eq!(o["rows_failed"], 0, "{o}");
    assert!(!dead.exists(), "no dead letters");
    // The big row took a PutRow and an UpdateRow, the wide one a PutRow of 1,024 cells and an
    // UpdateRow of 476: more BatchWriteRow requests than one per batch.
    let v = run(cmd(
        &env,
        &["verify", &snap, "--against-table", "shapes_copy"],
    ))
    .await;
    assert!(v.status.success(), "{} {}", stdout(&v), stderr(&v));
    assert!(
        stdout(&v).contains("table 'shapes_copy' (every cell): OK"),
        "{}",
        stdout(&v)
    );
    let r = sdk_compare(&env, "shapes", "shapes_copy").await;
    assert_eq!(r["equal"], true, "{r}");
    assert_eq!(r["rows_a"], 42, "{r}");
    assert!(r["cells_a"].as_u64().unwrap() > 1500 + 3, "{r}");
    // Repeating the restore converges to the same rows (the first write replaces the row).
    let mut c = cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &snap,
            "--table",
            "shapes_copy",
            "--mode",
            "overwrite",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sdk_compare(&env, "shapes", "shapes_copy").await["equal"],
        true
    );
    // only-if-absent: the condition is on a split row's first write, which finds the row; nothing
    // else of it is sent.
    let mut c = cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &snap,
            "--table",
            "shapes_copy",
            "--mode",
            "only-if-absent",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (o["rows_present"].clone(), o["rows_written"].clone()),
        (42.into(), 0.into()),
        "{o}"
    );
}

#[tokio::test]
async fn a_dead_lettered_row_is_replayed_whole_with_retry_dead_letter() {
    let env = env_with_table("t", 10, PageLimits::default()).await;
    create_shapes_table(&env).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "shapes", dest.path()).await;
    let work = tempfile::tempdir().unwrap();
    let dead = work.path().join("dead.jsonl");
    env.client
        .create_table(&{
            let mut req = ots_datagen::create_table_request("shapes_copy");
            if let Some(o) = req.table_options.as_mut() {
                o.max_versions = Some(10);
            }
            req
        })
        .await
        .unwrap();
    // Every write of the 5 MB row fails for good (non-retryable), the others succeed.
    env.emu
        .set_faults(FaultConfig {
            fail_rows_with_key: Some("zz-big".into()),
            ..FaultConfig::default()
        })
        .unwrap();
    let restore = |extra: &[&str]| {
        let mut c = cmd(
            &env,
            &[
                "restore",
                "--from",
                &snap,
                "--table",
                "shapes_copy",
                "--dead-letter",
                dead.to_str().unwrap(),
            ],
        );
        c.args(extra).current_dir(work.path());
        c
    };
    let out = run(restore(&[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 row could not be restored"),
        "{}",
        stderr(&out)
    );
    // The line holds the whole row: key and every cell with type, value and timestamp.
    let text = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(text.lines().count(), 1, "{}", &text[..text.len().min(300)]);
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["format"], 1);
    assert_eq!(line["code"], "OTSParameterInvalid");
    assert_eq!(line["operation"], "put");
    assert_eq!(line["primary_key"][0]["value"], "zz-big");
    assert_eq!(line["primary_key"][1]["type"], "INTEGER");
    let cells = line["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    for (c, name) in cells.iter().zip(["big_a", "big_b", "big_c"]) {
        assert_eq!(c["name"], name);
        assert_eq!(c["type"], "STRING");
        assert_eq!(c["value"].as_str().unwrap().len(), 1_700_000);
        assert_eq!(c["ts"], env.spec.base_ts_ms);
    }
    assert!(line["file"].as_str().unwrap().ends_with(".parquet"));
    let (code, cmp) = compare(&env, &snap, "shapes_copy", &[]).await;
    assert_eq!((code, counts(&cmp)), (3, (0, 1, 0)), "{cmp}");

    // A fresh restore does not append to that file unnoticed: exit 2, naming it and the way out.
    let out = run(restore(&["--mode", "overwrite"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(dead.to_str().unwrap()) && err.contains("--retry-dead-letter"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), text);

    // Replayed while the fault is still there: fails again, into a new file, never the input.
    let replay = |extra: &[&str]| {
        let mut c = cmd(
            &env,
            &[
                "--json",
                "restore",
                "--retry-dead-letter",
                dead.to_str().unwrap(),
                "--table",
                "shapes_copy",
            ],
        );
        c.args(extra).current_dir(work.path());
        c
    };
    let out = run(replay(&[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
    let again = std::path::PathBuf::from(o["dead_letter"].as_str().unwrap_or_default());
    assert_eq!(
        (o["rows"].clone(), o["rows_failed"].clone()),
        (1.into(), 1.into()),
        "{o}"
    );
    assert_ne!(again, dead);
    assert!(
        again
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("dead.retry-"),
        "{again:?}"
    );
    let retried: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&again).unwrap().trim()).unwrap();
    assert_eq!(retried["cells"], line["cells"]);
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), text);

    // Without the fault, the replay writes the row (as a PutRow and an UpdateRow): identical.
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let out = run(replay(&[])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_written"], 1, "{o}");
    assert_eq!(o["rows_failed"], 0, "{o}");
    assert!(o["dead_letter"].is_null(), "{o}");
    let r = sdk_compare(&env, "shapes", "shapes_copy").await;
    assert_eq!(r["equal"], true, "{r}");
    let (code, cmp) = compare(&env, &snap, "shapes_copy", &[]).await;
    assert_eq!((code, counts(&cmp)), (0, (0, 0, 0)), "{cmp}");

    // A replay into a table that does not exist is refused before anything is written.
    let mut c = cmd(
        &env,
        &[
            "restore",
            "--retry-dead-letter",
            dead.to_str().unwrap(),
            "--table",
            "nope",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `verify --against-table --json`: exit code and the comparison.
async fn compare(env: &Env, snap: &str, table: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut c = cmd(env, &["--json", "verify", snap, "--against-table", table]);
    c.args(extra);
    let out = run(c).await;
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), v["comparison"].clone())
}

fn counts(c: &serde_json::Value) -> (u64, u64, u64) {
    (
        c["different"].as_u64().unwrap(),
        c["missing_in_table"].as_u64().unwrap(),
        c["extra_in_table"].as_u64().unwrap(),
    )
}

/// Splits compared at once report exactly what one split at a time does: the same counts, and
/// the differences listed in key order across splits, cut at --max-differences.
#[tokio::test]
async fn splits_compared_at_once_report_like_one_at_a_time() {
    let env = env_with_table("t", 600, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(Path::new(&snap).join("manifest.json")).unwrap())
            .unwrap();
    assert!(
        manifest.splits.len() >= 3,
        "{} splits",
        manifest.splits.len()
    );
    // A newer version of a cell in rows all over the key range, so in several splits.
    let rows = env.expected_rows();
    let mut changed: Vec<Vec<PkColumn>> = [590, 5, 450, 150, 300]
        .iter()
        .map(|&i| rows[i].primary_key.clone())
        .collect();
    for key in &changed {
        put_cell(&env, "t", key, "age", Value::Integer(-7), Some(now_ms())).await;
    }
    changed.sort_by(|a, b| ots_wire::types::cmp_pk_columns(a, b));
    let (code, one) = compare(
        &env,
        &snap,
        "t",
        &["--concurrency", "1", "--max-differences", "3"],
    )
    .await;
    assert_eq!(code, 3, "{one}");
    let (code, many) = compare(
        &env,
        &snap,
        "t",
        &["--concurrency", "4", "--max-differences", "3"],
    )
    .await;
    assert_eq!(code, 3, "{many}");
    assert_eq!(one, many);
    assert_eq!(counts(&many), (5, 0, 0), "{many}");
    assert_eq!(many["rows_in_snapshot"], 600);
    assert_eq!(many["rows_matching"], 595);
    let listed: Vec<serde_json::Value> = many["first_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["primary_key"].clone())
        .collect();
    let first_three: Vec<serde_json::Value> = changed[..3]
        .iter()
        .map(|k| {
            serde_json::to_value(
                k.iter()
                    .map(ots_scan::KeyPart::from_column)
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(listed, first_three);
    // No split at a time is not a setting.
    let out = run(cmd(
        &env,
        &[
            "verify",
            &snap,
            "--against-table",
            "t",
            "--concurrency",
            "0",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--concurrency 0"), "{}", stderr(&out));
}

#[tokio::test]
async fn verify_against_a_table_sees_every_cell_unless_as_of_snapshot() {
    let env = env_with_table("t", 600, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    for extra in [&[][..], &["--as-of-snapshot"][..]] {
        let (code, c) = compare(&env, &snap, "t", extra).await;
        assert_eq!(code, 0, "{extra:?}: {c}");
        assert_eq!(c["rows_matching"], 600);
    }
    let rows = env.expected_rows();

    // A new version of one cell, written after the backup (at the current time, after T).
    put_cell(
        &env,
        "t",
        &rows[10].primary_key,
        "age",
        Value::Integer(-7),
        Some(now_ms()),
    )
    .await;
    let (code, c) = compare(&env, &snap, "t", &[]).await;
    assert_eq!(code, 3, "{c}");
    assert_eq!(counts(&c), (1, 0, 0), "{c}");
    assert_eq!(c["as_of_snapshot"], false);
    assert!(c["time_range_ms"].is_null(), "every cell: {c}");
    let d = &c["first_differences"][0];
    assert_eq!(d["kind"], "different");
    assert_eq!(
        d["primary_key"],
        serde_json::to_value(
            rows[10]
                .primary_key
                .iter()
                .map(ots_scan::KeyPart::from_column)
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    assert!(d["detail"].as_str().unwrap().contains("-7"), "{d}");
    // Limited to the snapshot's time range, the later version is not looked at.
    let (code, c) = compare(&env, &snap, "t", &["--as-of-snapshot"]).await;
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["as_of_snapshot"], true);
    assert_eq!(c["time_range_ms"].as_array().unwrap().len(), 2);
    assert_eq!(c["rows_matching"], 600);

    // A deleted row, a row added with a timestamp inside the snapshot's range, and one added now.
    let req = pb::DeleteRowRequest {
        table_name: "t".into(),
        primary_key: Bytes::from(ots_wire::plainbuffer::encode_delete_row(
            &rows[20].primary_key,
        )),
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        ..Default::default()
    };
    env.client
        .delete_row(&req, Idempotency::Idempotent)
        .await
        .unwrap();
    let new_key = |user: &str| {
        vec![
            PkColumn::new("user_id", PkValue::String(user.into())),
            PkColumn::new("seq", PkValue::Integer(0)),
        ]
    };
    put_cell(
        &env,
        "t",
        &new_key("zz-added-old"),
        "name",
        Value::String("old".into()),
        Some(env.spec.base_ts_ms),
    )
    .await;
    put_cell(
        &env,
        "t",
        &new_key("zz-added-now"),
        "name",
        Value::String("now".into()),
        Some(now_ms()),
    )
    .await;
    let (code, c) = compare(&env, &snap, "t", &[]).await;
    assert_eq!(code, 3);
    assert_eq!(counts(&c), (1, 1, 2), "{c}");
    assert_eq!(c["rows_in_snapshot"], 600);
    assert_eq!(c["rows_in_table"], 601);
    let kinds: Vec<&str> = c["first_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"missing_in_table") && kinds.contains(&"extra_in_table"));
    let (code, c) = compare(&env, &snap, "t", &["--as-of-snapshot"]).await;
    assert_eq!(code, 3);
    assert_eq!(counts(&c), (0, 1, 1), "{c}");
    // The plain report says what was compared.
    let out = run(cmd(&env, &["verify", &snap, "--against-table", "t"])).await;
    assert!(stdout(&out).contains("(every cell)"), "{}", stdout(&out));
    let out = run(cmd(&env, &["verify", &snap, "--as-of-snapshot"])).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "--as-of-snapshot needs --against-table"
    );
}

#[tokio::test]
async fn a_resume_with_other_options_or_target_is_refused_before_writing() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("ckpt.json");
    let dead = work.path().join("dead.jsonl");
    let restore = |extra: &[&str]| {
        let mut c = cmd(
            &env,
            &[
                "--retry-attempts",
                "1",
                "restore",
                "--from",
                &snap,
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "--dead-letter",
                dead.to_str().unwrap(),
            ],
        );
        c.args(extra).current_dir(work.path());
        c
    };
    // Every row write fails: the run ends with exit 1 and leaves a checkpoint of finished files.
    env.emu
        .set_faults(FaultConfig {
            row_error_rate: 1.0,
            seed: Some(5),
            ..FaultConfig::default()
        })
        .unwrap();
    let out = run(restore(&["--table", "t_copy", "--create-table"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let ckpt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(ckpt["target"]["table"], "t_copy");
    assert_eq!(ckpt["target"]["instance"], INSTANCE);
    assert_eq!(ckpt["options"]["mode"], "overwrite");
    assert!(!ckpt["files_done"].as_array().unwrap().is_empty());
    let dead_before = std::fs::read(&dead).unwrap();
    let ckpt_bytes = std::fs::read(&checkpoint).unwrap();

    for (args, expected) in [
        (
            vec![
                "--table",
                "t_copy",
                "--mode",
                "only-if-absent",
                "--columns",
                "age,name",
            ],
            vec![
                "--mode was overwrite, now only-if-absent",
                "--columns was every column, now 'age,name'",
            ],
        ),
        (
            vec![
                "--table",
                "t_copy",
                "--start-key",
                "user_id=user-00000000010",
            ],
            vec!["--start-key was (none), now 'user_id=user-00000000010'"],
        ),
        (
            vec!["--table", "t_copy", "--timestamps", "now"],
            vec!["--timestamps was original, now now"],
        ),
        (
            vec!["--table", "elsewhere", "--create-table"],
            vec!["target table (--table) was 't_copy', now 'elsewhere'"],
        ),
    ] {
        let mut all = args.clone();
        all.push("--resume");
        let out = run(restore(&all)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        for e in expected {
            assert!(stderr(&out).contains(e), "{args:?}: {}", stderr(&out));
        }
        assert!(
            stderr(&out).contains("without --resume"),
            "{}",
            stderr(&out)
        );
    }
    // Nothing was written by the refused resumes: no table created, no row, no dead letter.
    assert!(env.client.describe_table("elsewhere").await.is_err());
    assert_eq!(sdk_rows(&env, "t_copy").await, 0);
    assert_eq!(std::fs::read(&dead).unwrap(), dead_before);

    // A checkpoint of the first release (no target, no options) is refused with advice.
    std::fs::write(
        &checkpoint,
        format!(
            r#"{{"snapshot_id":"{}","table":"t_copy","files_done":[]}}"#,
            snap.rsplit('/').next().unwrap()
        ),
    )
    .unwrap();
    let out = run(restore(&["--table", "t_copy", "--resume"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("older otsarchive")
            && stderr(&out).contains("Restart without --resume"),
        "{}",
        stderr(&out)
    );

    // The same options resume (the endpoint and instance are the same too).
    std::fs::write(&checkpoint, &ckpt_bytes).unwrap();
    let out = run(restore(&["--json", "--table", "t_copy", "--resume"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        o["files_skipped_by_checkpoint"].as_u64().unwrap() >= 1,
        "{o}"
    );
    // A resumed run may append to its own dead-letter file, and says so.
    assert!(
        o["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("appended to the dead-letter file")),
        "{o}"
    );
    // Restarting without --resume would append to the first run's dead letters: refused, naming
    // the file and the ways out, until the file is moved away.
    let out = run(restore(&["--table", "t_copy", "--mode", "overwrite"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(dead.to_str().unwrap())
            && stderr(&out).contains("--retry-dead-letter")
            && stderr(&out).contains("--resume"),
        "{}",
        stderr(&out)
    );
    std::fs::rename(&dead, work.path().join("dead.old.jsonl")).unwrap();
    // Restarting without --resume writes every file again, exactly (into rows it holds now: the
    // mode is chosen explicitly).
    let out = run(restore(&["--table", "t_copy", "--mode", "overwrite"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sdk_compare(&env, "t", "t_copy").await["equal"], true);
}

/// Rows of a table, counted by the official SDK.
async fn sdk_rows(env: &Env, table: &str) -> u64 {
    let r = sdk_compare(env, table, table).await;
    r["rows_a"].as_u64().unwrap()
}

#[tokio::test]
async fn bad_numbers_are_usage_errors_not_panics() {
    let env = env_with_table("t", 20, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path()).await;
    let work = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--rows-per-sec", "0"),
        ("--rows-per-sec", "NaN"),
        ("--rows-per-sec", "-5"),
        ("--rows-per-sec", "inf"),
        ("--rows-per-sec", "1e-300"),
        ("--concurrency", "0"),
        ("--concurrency", "100000"),
        ("--file-concurrency", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let mut c = cmd(
            &env,
            &[
                "restore",
                "--from",
                &snap,
                "--table",
                "t_copy",
                "--create-table",
                &arg,
            ],
        );
        c.current_dir(work.path());
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{arg}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{arg}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{arg}: {}",
            stderr(&out)
        );
    }
    assert!(
        env.client.describe_table("t_copy").await.is_err(),
        "a table was created"
    );
    for value in ["0", "8", "99999999"] {
        let arg = format!("--memory-mb={value}");
        let out = run(cmd(&env, &["verify", &snap, "--against-table", "t", &arg])).await;
        assert_eq!(out.status.code(), Some(2), "{arg}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--memory-mb"),
            "{arg}: {}",
            stderr(&out)
        );
    }
    let out = run(cmd(
        &env,
        &["verify", &snap, "--against-table", "t", "--memory-mb", "32"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn partitioned_snapshots_compare_and_restore_through_the_merge() {
    let env = env_with_table("t", 600, PageLimits::default()).await;
    let work = tempfile::tempdir().unwrap();
    for (spec, extra) in [
        ("hash:4", &["--row-group-rows", "16"][..]),
        // Few open files: a partition's rows of one split land in several files, in key order.
        (
            "column:city",
            &["--max-open-partitions", "2", "--batch-rows", "16"][..],
        ),
    ] {
        let dest = tempfile::tempdir().unwrap();
        let mut args = vec![
            "-q",
            "backup",
            "--table",
            "t",
            "--to",
            dest.path().to_str().unwrap(),
            "--split-size-mb",
            "48",
            "--split-unit-bytes",
            "1024",
            "--partition-by",
            spec,
        ];
        args.extend(extra);
        let out = run(cmd(&env, &args)).await;
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        let snap = stdout(&out).lines().last().unwrap().to_string();
        let manifest: ots_manifest::Manifest =
            serde_json::from_slice(&std::fs::read(Path::new(&snap).join("manifest.json")).unwrap())
                .unwrap();
        let split0 = manifest.files.iter().filter(|f| f.split == 0).count();
        assert!(split0 >= 3, "{spec}: {split0} files in split 0");
        // The source itself: every row matches through the k-way merge of the partitions.
        let (code, c) = compare(&env, &snap, "t", &[]).await;
        assert_eq!(code, 0, "{spec}: {c}");
        assert_eq!(c["rows_matching"], 600, "{spec}");
        // And a restored copy, judged by the official SDK too.
        let copy = format!("copy_{}", spec.replace(':', "_"));
        let mut c = cmd(
            &env,
            &[
                "-q",
                "restore",
                "--from",
                &snap,
                "--table",
                &copy,
                "--create-table",
            ],
        );
        c.current_dir(work.path());
        let out = run(c).await;
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        let (code, c) = compare(&env, &snap, &copy, &[]).await;
        assert_eq!(code, 0, "{spec}: {c}");
        assert_eq!(sdk_compare(&env, "t", &copy).await["equal"], true);
    }
}

/// 300 rows of 100 KB under one partition key, backed up in a small memory budget: batches and
/// row groups are cut by bytes (the default 64 MiB row group would hold all 30 MB in one), and the
/// restored table is identical for `verify --against-table` and for the official SDK. A budget too
/// small for the concurrency is refused before anything runs.
#[tokio::test]
async fn rows_of_100_kb_round_trip_in_a_small_memory_budget() {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let env = env_with_table("std", 10, PageLimits::default()).await;
    let spec = ots_datagen::DatasetSpec::new(300, 7);
    ots_datagen::create_and_load_blobs(
        &env.client,
        "docs",
        &spec,
        100 * 1024,
        4,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().to_str().unwrap();

    let small = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "docs",
            "--to",
            dest,
            "--memory-mb",
            "40",
        ],
    ))
    .await;
    assert_eq!(small.status.code(), Some(2), "{}", stderr(&small));
    assert!(
        stderr(&small)
            .contains("--memory-mb 40 is too small for --concurrency 4: it needs at least"),
        "{}",
        stderr(&small)
    );

    let out = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            "docs",
            "--to",
            dest,
            "--memory-mb",
            "80",
            "--concurrency",
            "1",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = stdout(&out).lines().last().unwrap().to_string();
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(Path::new(&snap).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.totals.rows, 300);
    let mut groups = Vec::new();
    for f in &manifest.files {
        let file = std::fs::File::open(Path::new(&snap).join(&f.path)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        for g in reader.metadata().row_groups() {
            groups.push((g.num_rows(), g.total_byte_size()));
        }
    }
    assert_eq!(groups.iter().map(|g| g.0).sum::<i64>(), 300);
    assert!(
        groups.len() >= 5,
        "30 MB in row groups of a few MiB: {groups:?}"
    );
    for (rows, bytes) in &groups {
        assert!(
            *bytes <= 8 << 20,
            "a row group of {rows} rows holds {bytes} bytes"
        );
    }

    let restore = run(cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &snap,
            "--table",
            "docs_copy",
            "--create-table",
        ],
    ))
    .await;
    assert!(restore.status.success(), "{}", stderr(&restore));
    let (code, report) = compare(&env, &snap, "docs_copy", &[]).await;
    assert_eq!(code, 0, "{report}");
    let sdk = sdk_compare(&env, "docs", "docs_copy").await;
    assert_eq!(sdk["equal"], true, "{sdk}");
    assert_eq!(sdk["rows_a"], 300);
}
