//! DuckDB, a reader we did not write, runs the queries FORMAT.md §10 documents for change files
//! on a zstd Parquet file written with the change layout: changes per operation, the latest change
//! of each key, every cell operation with its column, op, timestamp and value, and the changes of a
//! time window. pyarrow sees the `otsarchive.changes` metadata.

mod support;

use support::run_python;

use ots_format::change::{Change, ChangeOp};
use ots_schema::ChangeBatchBuilder;
use ots_schema::layout::PkColumnSchema;
use ots_wire::types::*;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

/// 2023-11-14T22:13:20Z in µs.
const T0_US: i64 = 1_700_000_000_000_000;
const T0_MS: i64 = T0_US / 1000;

fn pk() -> Vec<PkColumnSchema> {
    vec![
        PkColumnSchema {
            name: "user_id".into(),
            pk_type: PkType::String,
            auto_increment: false,
        },
        PkColumnSchema {
            name: "seq".into(),
            pk_type: PkType::Integer,
            auto_increment: false,
        },
    ]
}

fn change(ordinal: u64, dt_us: i64, op: ChangeOp, user: &str, seq: i64) -> Change {
    Change {
        ordinal,
        shard: "shard-a".into(),
        sequence: RecordSequence {
            epoch: 1,
            timestamp_us: T0_US + dt_us,
            row_index: 0,
        },
        op,
        primary_key: vec![
            PkColumn::new("user_id", PkValue::String(user.into())),
            PkColumn::new("seq", PkValue::Integer(seq)),
        ],
        cells: Vec::new(),
    }
}

fn put(name: &str, value: Value, ts: i64) -> ColumnUpdate {
    ColumnUpdate::Put {
        name: name.into(),
        value,
        timestamp: Some(ts),
    }
}

fn changes() -> Vec<Change> {
    vec![
        Change {
            cells: vec![
                put("age", Value::Integer(30), T0_MS),
                put("name", Value::String("Alice 🌸".into()), T0_MS),
            ],
            ..change(0, 0, ChangeOp::PutRow, "alice", 1)
        },
        Change {
            cells: vec![
                put("age", Value::Integer(31), T0_MS + 500),
                ColumnUpdate::DeleteOneVersion {
                    name: "age".into(),
                    timestamp: T0_MS,
                },
                ColumnUpdate::DeleteAllVersions {
                    name: "name".into(),
                },
            ],
            ..change(1, 500_000, ChangeOp::UpdateRow, "alice", 1)
        },
        Change {
            cells: vec![
                put("blob", Value::Binary(vec![0, 1]), T0_MS + 1200),
                put("flag", Value::Boolean(true), T0_MS + 1200),
                put("score", Value::Double(1.5), T0_MS + 1200),
            ],
            ..change(2, 1_200_000, ChangeOp::PutRow, "bob", 2)
        },
        change(3, 2_000_000, ChangeOp::DeleteRow, "alice", 1),
        Change {
            cells: vec![put("name", Value::String("Bob".into()), T0_MS + 2500)],
            ..change(4, 2_500_000, ChangeOp::UpdateRow, "bob", 2)
        },
    ]
}

fn write_change_file(path: &std::path::Path) {
    let mut b = ChangeBatchBuilder::new(&pk());
    for c in changes() {
        b.push(&c).unwrap();
    }
    let batch = b.finish().unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The queries of FORMAT.md §10 ("Change files"), FILE standing for `read_parquet('…')`.
const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
import pyarrow.parquet as pq
f = sys.argv[1]
q = lambda sql: duckdb.sql(sql.replace("FILE", f"read_parquet('{f}')")).fetchall()
out = {
  "per_op": q('''SELECT "$op", count(*) AS changes FROM FILE GROUP BY "$op" ORDER BY "$op"'''),
  "latest": q('''SELECT user_id, seq, "$change", "$op"
                 FROM FILE
                 QUALIFY row_number() OVER (PARTITION BY user_id, seq ORDER BY "$change" DESC) = 1
                 ORDER BY user_id, seq'''),
  "cells": q('''SELECT "$change", user_id, seq, c.op, c.name, c.ts, c.type,
                       coalesce(CAST(c.v_integer AS VARCHAR), CAST(c.v_double AS VARCHAR),
                                CAST(c.v_boolean AS VARCHAR), c.v_string, hex(c.v_binary)) AS value
                FROM (SELECT "$change", user_id, seq, unnest("$cells") AS c,
                             generate_subscripts("$cells", 1) AS k FROM FILE)
                ORDER BY "$change", k'''),
  "window": [[a, b, c, d, str(e)] for a, b, c, d, e in q('''
                SELECT "$change", "$op", user_id, seq, make_timestamp("$time_us") AS written
                FROM FILE
                WHERE "$time_us" >= epoch_us(TIMESTAMP '2023-11-14 22:13:21')
                  AND "$time_us" <  epoch_us(TIMESTAMP '2023-11-14 22:13:22.5')
                ORDER BY "$change"''')],
  "meta": json.loads(pq.read_schema(f).metadata[b"otsarchive.changes"]),
  "columns": pq.read_schema(f).names,
}
print(json.dumps(out))
"#;

#[test]
fn duckdb_runs_the_documented_change_file_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-0a1b2c3d-000.parquet");
    write_change_file(&path);
    let out = run_python(DUCKDB_SCRIPT, path.to_str().unwrap());

    assert_eq!(
        out["per_op"],
        json!([["DELETE_ROW", 1], ["PUT_ROW", 2], ["UPDATE_ROW", 2]])
    );
    assert_eq!(
        out["latest"],
        json!([["alice", 1, 3, "DELETE_ROW"], ["bob", 2, 4, "UPDATE_ROW"]])
    );
    assert_eq!(
        out["cells"],
        json!([
            [0, "alice", 1, "PUT", "age", T0_MS, "INTEGER", "30"],
            [0, "alice", 1, "PUT", "name", T0_MS, "STRING", "Alice 🌸"],
            [1, "alice", 1, "PUT", "age", T0_MS + 500, "INTEGER", "31"],
            [
                1,
                "alice",
                1,
                "DELETE_ONE_VERSION",
                "age",
                T0_MS,
                null,
                null
            ],
            [
                1,
                "alice",
                1,
                "DELETE_ALL_VERSIONS",
                "name",
                null,
                null,
                null
            ],
            [2, "bob", 2, "PUT", "blob", T0_MS + 1200, "BINARY", "0001"],
            [2, "bob", 2, "PUT", "flag", T0_MS + 1200, "BOOLEAN", "true"],
            [2, "bob", 2, "PUT", "score", T0_MS + 1200, "DOUBLE", "1.5"],
            [4, "bob", 2, "PUT", "name", T0_MS + 2500, "STRING", "Bob"],
        ])
    );
    assert_eq!(
        out["window"],
        json!([
            [2, "PUT_ROW", "bob", 2, "2023-11-14 22:13:21.200000"],
            [3, "DELETE_ROW", "alice", 1, "2023-11-14 22:13:22"],
        ])
    );
    assert_eq!(
        out["meta"],
        json!({"layout_version": 1, "primary_key": [
            {"name": "user_id", "type": "STRING"}, {"name": "seq", "type": "INTEGER"}]})
    );
    assert_eq!(
        out["columns"],
        json!([
            "$change",
            "$shard",
            "$epoch",
            "$time_us",
            "$row_index",
            "$op",
            "user_id",
            "seq",
            "$cells"
        ])
    );
}
