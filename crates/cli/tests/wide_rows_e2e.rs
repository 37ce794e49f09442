//! Rows of any width, end to end: a row of 1,500 cells (300 columns × 5 versions) and a row of
//! 6 MB (12 columns of 500 KB, larger than a GetRange page) among ordinary rows. `backup` stores
//! each of them as one whole row and `verify --against-table` finds the table equal to the
//! snapshot, both when the emulator answers whole rows (the service's documented behaviour) and
//! in its wide-row mode, where it sends rows wider than a few cells in parts with `next_token`.

mod support;

use std::path::Path;

use ots_emulator::PageLimits;
use ots_wire::Idempotency;
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value, cmp_primary_keys};
use support::*;

const TABLE: &str = "wide";

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

fn pk(user: &str, seq: i64) -> Vec<PkColumn> {
    vec![
        PkColumn::new("user_id", PkValue::String(user.into())),
        PkColumn::new("seq", PkValue::Integer(seq)),
    ]
}

/// 300 columns × 5 versions, every attribute type; versions newest first within a column.
fn many_cells_row(base_ts: i64) -> Row {
    let mut cells = Vec::new();
    for c in 0..300i64 {
        for v in 0..5i64 {
            let value = match c % 5 {
                0 => Value::Integer(c * 10 + v),
                1 => Value::String(format!("col {c} version {v}")),
                2 => Value::Double(c as f64 + v as f64 / 8.0),
                3 => Value::Boolean((c + v) % 2 == 0),
                _ => Value::Binary(vec![(c + v) as u8; (v as usize) + 1]),
            };
            cells.push(Cell::new(
                format!("w{c:03}"),
                value,
                Some(base_ts - v * 1000),
            ));
        }
    }
    Row {
        primary_key: pk("user_wide_cells", 4),
        cells,
    }
}

/// 12 columns of 500,000 bytes: 6 MB in one row.
fn big_row(base_ts: i64) -> Row {
    let cells = (0..12u8)
        .map(|c| {
            let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8 ^ c).collect();
            Cell::new(format!("big{c:02}"), Value::Binary(data), Some(base_ts))
        })
        .collect();
    Row {
        primary_key: pk("user_wide_bytes", 2),
        cells,
    }
}

/// Writes `row` with UpdateRows of at most `per_request` cells each (every write stays within
/// the service's 1,024 columns and 4 MB per request).
async fn write_in_updates(env: &Env, row: &Row, per_request: usize) {
    for chunk in row.cells.chunks(per_request) {
        put_cells(&env.client, TABLE, &row.primary_key, chunk).await;
    }
}

/// The table `wide` (5 versions): 40 ordinary rows and the two wide rows among them. Returns every
/// row, sorted by primary key.
async fn load(env: &Env) -> Vec<Row> {
    let mut req = ots_datagen::create_table_request(TABLE);
    if let Some(o) = req.table_options.as_mut() {
        o.max_versions = Some(5);
    }
    env.client.create_table(&req).await.unwrap();
    let spec = ots_datagen::DatasetSpec::new(40, 77);
    let mut rows: Vec<Row> = (0..40).map(|i| ots_datagen::row(&spec, i)).collect();
    let batch = ots_datagen::put_batch_request(TABLE, &rows);
    let out = env
        .client
        .batch_write_row_retrying(&batch, Idempotency::NotIdempotent)
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
    let many = many_cells_row(spec.base_ts_ms);
    // One version of every column per request: 300 columns each.
    let by_version: Vec<Cell> = (0..5)
        .flat_map(|v| many.cells.iter().skip(v).step_by(5).cloned())
        .collect();
    write_in_updates(
        env,
        &Row {
            primary_key: many.primary_key.clone(),
            cells: by_version,
        },
        300,
    )
    .await;
    let big = big_row(spec.base_ts_ms);
    write_in_updates(env, &big, 3).await;
    rows.push(many);
    rows.push(big);
    rows.sort_by(|a, b| {
        cmp_primary_keys(
            a.primary_key.iter().map(|c| c.value.as_ref()),
            b.primary_key.iter().map(|c| c.value.as_ref()),
        )
    });
    rows
}

/// pyarrow reads the data files: rows, distinct keys, and the rows of the two wide keys.
const PYARROW: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
snap = sys.argv[1]
m = json.load(open(os.path.join(snap, "manifest.json")))
keys = []
for f in m["files"]:
    t = pq.read_table(os.path.join(snap, f["path"]), columns=["user_id", "seq"])
    keys += list(zip(t.column("user_id").to_pylist(), t.column("seq").to_pylist()))
print(json.dumps({
  "rows": len(keys),
  "distinct": len(set(keys)),
  "wide_cells": keys.count(("user_wide_cells", 4)),
  "wide_bytes": keys.count(("user_wide_bytes", 2)),
}))
"#;

async fn backup_and_verify(limits: PageLimits) {
    let env = env_with_table("t", 10, limits).await;
    let expected = load(&env).await;
    let dest = tempfile::tempdir().unwrap();
    let out = run(cmd(
        &env,
        &[
            "--json",
            "backup",
            "--table",
            TABLE,
            "--to",
            dest.path().to_str().unwrap(),
            "--split-size-mb",
            "48",
            "--split-unit-bytes",
            "1024",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["rows"], 42, "{summary}");
    let snap = summary["url"].as_str().unwrap().to_string();

    // Each row whole in the data files, every cell of every version exactly.
    let got = snapshot_rows(Path::new(&snap));
    assert_eq!(got.len(), expected.len());
    let find = |rows: &[Row], user: &str| {
        rows.iter()
            .find(|r| r.primary_key[0].value == PkValue::String(user.into()))
            .cloned()
            .unwrap()
    };
    assert_eq!(find(&got, "user_wide_cells").cells.len(), 1500);
    assert_eq!(find(&got, "user_wide_bytes").cells.len(), 12);
    assert!(
        got == expected,
        "the snapshot's rows differ from the table's"
    );
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(Path::new(&snap).join("manifest.json")).unwrap())
            .unwrap();
    let cells: u64 = expected.iter().map(|r| r.cells.len() as u64).sum();
    assert_eq!(manifest.totals.rows, 42);
    assert_eq!(manifest.totals.cells, cells);

    let py = run_python(PYARROW, &[&snap]);
    assert_eq!(py["rows"], 42, "{py}");
    assert_eq!(py["distinct"], 42, "{py}");
    assert_eq!(py["wide_cells"], 1, "{py}");
    assert_eq!(py["wide_bytes"], 1, "{py}");

    // The table compared cell by cell with the snapshot (the comparison reads it the same way).
    let out = run(cmd(
        &env,
        &["--json", "verify", &snap, "--against-table", TABLE],
    ))
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["comparison"]["rows_matching"], 42, "{v}");
}

/// The service's documented behaviour: whole rows, the 6 MB row alone on its page.
#[tokio::test]
async fn wide_rows_sent_whole_are_backed_up_and_verified_whole() {
    backup_and_verify(PageLimits::default()).await;
}

/// The wide-row mode: rows of more than 7 cells come in parts (the 1,500-cell row in 215 parts,
/// the 6 MB row in 2, most ordinary rows in 2).
#[tokio::test]
async fn rows_sent_in_parts_with_next_token_are_backed_up_and_verified_whole() {
    backup_and_verify(PageLimits {
        wide_row_cells: Some(7),
        ..PageLimits::default()
    })
    .await;
}
