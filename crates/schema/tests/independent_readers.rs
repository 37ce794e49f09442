//! DuckDB and pyarrow, readers we did not write, find every kind of cell where FORMAT.md says it
//! is, in a zstd Parquet file written with the snapshot layout.

mod support;

use support::run_python;

use std::sync::Arc;

use ots_schema::BatchBuilder;
use ots_schema::layout::{ColumnSchema, PkColumnSchema, SnapshotSchema};
use ots_wire::plainbuffer::{decode_rows, encode_rows};
use ots_wire::types::*;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

fn table() -> (SnapshotSchema, Vec<Row>) {
    let schema = SnapshotSchema::new(
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
        ],
        vec![
            ColumnSchema {
                name: "age".into(),
                value_type: ValueType::Integer,
            },
            ColumnSchema {
                name: "blob".into(),
                value_type: ValueType::Binary,
            },
            ColumnSchema {
                name: "flag".into(),
                value_type: ValueType::Boolean,
            },
            ColumnSchema {
                name: "name".into(),
                value_type: ValueType::String,
            },
            ColumnSchema {
                name: "score".into(),
                value_type: ValueType::Double,
            },
        ],
    )
    .unwrap();
    let pk = |u: &str, s: i64| {
        vec![
            PkColumn::new("user_id", PkValue::String(u.into())),
            PkColumn::new("seq", PkValue::Integer(s)),
        ]
    };
    let rows = vec![
        Row {
            primary_key: pk("alice", 1),
            cells: vec![
                Cell::new("age", Value::Integer(30), Some(1_700_000_000_300)),
                // an older version of a typed column
                Cell::new("age", Value::Integer(29), Some(1_700_000_000_200)),
                Cell::new(
                    "blob",
                    Value::Binary(vec![0, 1, 2]),
                    Some(1_700_000_000_100),
                ),
                Cell::new("flag", Value::Boolean(true), Some(1_700_000_000_100)),
                Cell::new(
                    "name",
                    Value::String("Alice 🌸".into()),
                    Some(1_700_000_000_100),
                ),
                Cell::new("score", Value::Double(9.5), Some(1_700_000_000_100)),
            ],
        },
        Row {
            primary_key: pk("bob", 2),
            cells: vec![
                // a type conflict: the latest version of INTEGER column age is a STRING
                Cell::new(
                    "age",
                    Value::String("forty".into()),
                    Some(1_700_000_000_500),
                ),
                // a column the schema did not foresee
                Cell::new("zz_extra", Value::Double(2.25), Some(1_700_000_000_400)),
            ],
        },
    ];
    (schema, rows)
}

fn write_parquet(schema: &SnapshotSchema, rows: &[Row], path: &std::path::Path) {
    let wire = encode_rows(rows);
    let decoded = decode_rows(&wire).unwrap();
    let mut b = BatchBuilder::new(Arc::new(schema.clone()));
    for r in &decoded {
        b.push_row(r).unwrap();
    }
    let batch = b.finish().unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
f = sys.argv[1]
q = lambda sql: duckdb.sql(sql.replace("FILE", f"read_parquet('{f}')")).fetchall()
out = {
  "typed": q("SELECT user_id, seq, age, name, score, flag, hex(blob) FROM FILE ORDER BY seq"),
  "ts": q('SELECT user_id, "$ts".age, "$ts".name FROM FILE ORDER BY seq'),
  "cells": q('SELECT user_id, c.name, c.type, c.ts, c.v_integer, c.v_double, c.v_string FROM (SELECT user_id, seq, unnest("$cells") AS c FROM FILE) ORDER BY seq, c.name, c.ts DESC'),
  "conflicts": q("""SELECT user_id, c.type, c.v_string FROM (SELECT user_id, age, unnest("$cells") AS c FROM FILE)
                    WHERE c.name = 'age' AND age IS NULL AND c.type <> 'INTEGER'"""),
}
print(json.dumps(out))
"#;

const PYARROW_SCRIPT: &str = r#"
import pyarrow.parquet as pq, json, sys
t = pq.read_table(sys.argv[1])
meta = json.loads(t.schema.metadata[b"otsarchive.schema"])
codecs = {c["compression"] for rg in range(pq.ParquetFile(sys.argv[1]).metadata.num_row_groups)
          for c in pq.ParquetFile(sys.argv[1]).metadata.row_group(rg).to_dict()["columns"]}
print(json.dumps({
  "rows": t.num_rows,
  "columns": t.column_names,
  "types": [str(f.type) for f in t.schema],
  "schema_meta_columns": [c["name"] for c in meta["columns"]],
  "cells_per_row": [len(x) for x in t.column("$cells").to_pylist()],
  "codecs": sorted(codecs),
}))
"#;

#[test]
fn duckdb_finds_typed_values_timestamps_and_overflow_cells() {
    let (schema, rows) = table();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-0-0.parquet");
    write_parquet(&schema, &rows, &path);
    let out = run_python(DUCKDB_SCRIPT, path.to_str().unwrap());

    assert_eq!(
        out["typed"],
        serde_json::json!([
            ["alice", 1, 30, "Alice 🌸", 9.5, true, "000102"],
            ["bob", 2, null, null, null, null, null]
        ])
    );
    assert_eq!(
        out["ts"],
        serde_json::json!([
            ["alice", 1_700_000_000_300i64, 1_700_000_000_100i64],
            ["bob", null, null]
        ])
    );
    assert_eq!(
        out["cells"],
        serde_json::json!([
            [
                "alice",
                "age",
                "INTEGER",
                1_700_000_000_200i64,
                29,
                null,
                null
            ],
            [
                "bob",
                "age",
                "STRING",
                1_700_000_000_500i64,
                null,
                null,
                "forty"
            ],
            [
                "bob",
                "zz_extra",
                "DOUBLE",
                1_700_000_000_400i64,
                null,
                2.25,
                null
            ]
        ])
    );
    assert_eq!(
        out["conflicts"],
        serde_json::json!([["bob", "STRING", "forty"]])
    );
}

#[test]
fn pyarrow_sees_the_layout_schema_metadata_and_zstd() {
    let (schema, rows) = table();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-0-0.parquet");
    write_parquet(&schema, &rows, &path);
    let out = run_python(PYARROW_SCRIPT, path.to_str().unwrap());
    assert_eq!(out["rows"], 2);
    assert_eq!(
        out["columns"],
        serde_json::json!([
            "user_id", "seq", "age", "blob", "flag", "name", "score", "$ts", "$cells"
        ])
    );
    let types: Vec<String> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &types[..7],
        &[
            "string", "int64", "int64", "binary", "bool", "string", "double"
        ]
    );
    assert!(
        types[8].starts_with("list<item: struct<name: string"),
        "{}",
        types[8]
    );
    assert_eq!(
        out["schema_meta_columns"],
        serde_json::json!(["age", "blob", "flag", "name", "score"])
    );
    assert_eq!(out["cells_per_row"], serde_json::json!([1, 2]));
    assert_eq!(out["codecs"], serde_json::json!(["ZSTD"]));
}
