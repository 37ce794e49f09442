//! Every vector the official Python SDK produced (`shared/reference/plainbuffer-vectors.json`) must
//! encode byte-identically from its stated input and decode back to the stated values.

use ots_wire::plainbuffer::*;
use ots_wire::types::*;
use serde_json::Value as Json;

fn vectors() -> Vec<Json> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/plainbuffer-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("reference vectors present beside the repo");
    let doc: Json = serde_json::from_str(&text).expect("vectors are JSON");
    doc["vectors"].as_array().expect("vectors array").clone()
}

fn vector(name: &str) -> Json {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

fn hex_of(v: &Json) -> Vec<u8> {
    let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
    assert_eq!(bytes.len() as u64, v["length"].as_u64().unwrap());
    bytes
}

/// PK entries are either `[name, TYPE, value]` or `[name, value]` with the type implied.
fn pk_from_json(pk: &Json) -> Vec<PkColumn> {
    pk.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = c.as_array().unwrap();
            let name = c[0].as_str().unwrap();
            let value = if c.len() == 3 {
                typed_pk(c[1].as_str().unwrap(), &c[2])
            } else {
                match &c[1] {
                    Json::String(s) if s == "INF_MIN" => PkValue::InfMin,
                    Json::String(s) if s == "INF_MAX" => PkValue::InfMax,
                    Json::String(s) if s == "AUTO_INCREMENT" => PkValue::AutoIncrement,
                    Json::String(s) => PkValue::String(s.clone()),
                    Json::Number(n) => PkValue::Integer(n.as_i64().unwrap()),
                    other => panic!("unexpected pk value {other}"),
                }
            };
            PkColumn::new(name, value)
        })
        .collect()
}

fn typed_pk(ty: &str, v: &Json) -> PkValue {
    match ty {
        "STRING" => PkValue::String(v.as_str().unwrap().to_owned()),
        "INTEGER" => PkValue::Integer(v.as_i64().unwrap()),
        "BINARY" => PkValue::Binary(hex::decode(v.as_str().unwrap()).unwrap()),
        other => panic!("pk type {other}"),
    }
}

fn typed_value(ty: &str, v: &Json) -> Value {
    match ty {
        "STRING" => Value::String(v.as_str().unwrap().to_owned()),
        "INTEGER" => Value::Integer(v.as_i64().unwrap()),
        "DOUBLE" => Value::Double(v.as_f64().unwrap()),
        "BOOLEAN" => Value::Boolean(v.as_bool().unwrap()),
        "BINARY" => Value::Binary(hex::decode(v.as_str().unwrap()).unwrap()),
        other => panic!("type {other}"),
    }
}

fn row_from_json(input: &Json) -> Row {
    let cells = input["attribute_columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    let c = c.as_array().unwrap();
                    Cell::new(
                        c[0].as_str().unwrap(),
                        typed_value(c[1].as_str().unwrap(), &c[2]),
                        c[3].as_i64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Row {
        primary_key: pk_from_json(&input["primary_key"]),
        cells,
    }
}

/// Compares a decoded value with the SDK decoder's JSON rendering (`{"binary_hex": ..}` for BINARY).
fn assert_value_matches(decoded: ValueRef<'_>, expected: &Json) {
    match (decoded, expected) {
        (ValueRef::String(s), Json::String(e)) => assert_eq!(s, e),
        (ValueRef::Integer(i), Json::Number(e)) => assert_eq!(Some(i), e.as_i64()),
        (ValueRef::Double(d), Json::Number(e)) => assert_eq!(Some(d), e.as_f64()),
        (ValueRef::Boolean(b), Json::Bool(e)) => assert_eq!(b, *e),
        (ValueRef::Binary(b), Json::Object(o)) => {
            assert_eq!(hex::encode(b), o["binary_hex"].as_str().unwrap())
        }
        (d, e) => panic!("decoded {d:?} but the SDK decoded {e}"),
    }
}

fn assert_pk_matches(decoded: &[PkCellRef<'_>], expected: &Json) {
    let expected = expected.as_array().unwrap();
    assert_eq!(decoded.len(), expected.len());
    for (d, e) in decoded.iter().zip(expected) {
        let e = e.as_array().unwrap();
        assert_eq!(d.name, e[0].as_str().unwrap());
        match (d.value, &e[1]) {
            (PkValueRef::String(s), Json::String(x)) => assert_eq!(s, x),
            (PkValueRef::Integer(i), Json::Number(x)) => assert_eq!(Some(i), x.as_i64()),
            (d, e) => panic!("pk {d:?} vs {e}"),
        }
    }
}

/// `decoded_python` renders a row as `[pk, attrs]` with attrs `[name, value, ts]`.
fn assert_row_matches_python(row: &RowRef<'_>, expected: &Json) {
    let parts = expected.as_array().unwrap();
    assert_pk_matches(&row.primary_key, &parts[0]);
    let attrs = parts[1].as_array().unwrap();
    assert_eq!(row.cells.len(), attrs.len());
    for (c, e) in row.cells.iter().zip(attrs) {
        let e = e.as_array().unwrap();
        assert_eq!(c.name, e[0].as_str().unwrap());
        assert_value_matches(c.value.expect("read cells have values"), &e[1]);
        let ts = e.get(2).and_then(Json::as_i64);
        assert_eq!(c.timestamp, ts, "timestamp of {}", c.name);
    }
}

#[test]
fn put_row_vector_encodes_and_decodes() {
    let v = vector("put_row_request_row");
    let row = row_from_json(&v["input"]);
    let bytes = hex_of(&v);
    assert_eq!(hex::encode(encode_put_row(&row)), hex::encode(&bytes));
    let decoded = decode_single_row(&bytes).unwrap().unwrap();
    assert_row_matches_python(&decoded, &v["decoded_python"]);
    assert!(!decoded.delete_marker);
    assert_eq!(decoded.to_row(), row);
}

#[test]
fn get_range_vector_decodes_two_rows_and_reencodes() {
    let v = vector("get_range_response_rows_2");
    let bytes = hex_of(&v);
    let rows = decode_rows(&bytes).unwrap();
    let expected = v["decoded_python"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, e) in rows.iter().zip(expected) {
        assert_row_matches_python(row, e);
    }
    let input_rows: Vec<Row> = v["input"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(row_from_json)
        .collect();
    assert_eq!(hex::encode(encode_rows(&input_rows)), hex::encode(&bytes));
    let owned: Vec<Row> = rows.iter().map(RowRef::to_row).collect();
    assert_eq!(owned, input_rows);
}

#[test]
fn primary_key_vectors_encode_byte_identically() {
    for name in [
        "primary_key_only",
        "range_start_inf_min",
        "range_end_inf_max",
        "put_pk_auto_increment_placeholder",
    ] {
        let v = vector(name);
        let pk = pk_from_json(&v["input"]["primary_key"]);
        let bytes = hex_of(&v);
        assert_eq!(
            hex::encode(encode_primary_key(&pk)),
            hex::encode(&bytes),
            "{name}"
        );
        assert_eq!(decode_primary_key(&bytes).unwrap().unwrap(), pk, "{name}");
    }
}

#[test]
fn delete_row_vector_carries_marker() {
    let v = vector("delete_row_request_primary_key");
    let pk = pk_from_json(&v["input"]["primary_key"]);
    let bytes = hex_of(&v);
    assert_eq!(hex::encode(encode_delete_row(&pk)), hex::encode(&bytes));
    let row = decode_single_row(&bytes).unwrap().unwrap();
    assert!(row.delete_marker);
    assert_pk_matches(&row.primary_key, &v["decoded_python"][0]);
}

#[test]
fn update_vectors_encode_byte_identically_and_decode_ops() {
    type Case = (&'static str, fn() -> ColumnUpdate, Option<CellOp>);
    let cases: [Case; 4] = [
        (
            "update_put_with_ts",
            || ColumnUpdate::Put {
                name: "s".into(),
                value: Value::String("y".into()),
                timestamp: Some(1_700_000_000_002),
            },
            None,
        ),
        (
            "update_delete_one_version",
            || ColumnUpdate::DeleteOneVersion {
                name: "s".into(),
                timestamp: 1_700_000_000_000,
            },
            Some(CellOp::DeleteOneVersion),
        ),
        (
            "update_delete_all_versions",
            || ColumnUpdate::DeleteAllVersions { name: "i".into() },
            Some(CellOp::DeleteAllVersions),
        ),
        (
            "update_increment",
            || ColumnUpdate::Increment {
                name: "cnt".into(),
                delta: 5,
            },
            Some(CellOp::Increment),
        ),
    ];
    for (name, update, op) in cases {
        let v = vector(name);
        let pk = pk_from_json(&v["input"]["primary_key"]);
        let bytes = hex_of(&v);
        // The JSON input must describe the same operation we encode.
        let input_update = &v["input"]["update"];
        let update = update();
        match &update {
            ColumnUpdate::Put { name, .. } => assert_eq!(input_update["put"][0][0], **name),
            ColumnUpdate::DeleteOneVersion { name, timestamp } => {
                assert_eq!(input_update["delete"][0][0], **name);
                assert_eq!(input_update["delete"][0][2], *timestamp);
            }
            ColumnUpdate::DeleteAllVersions { name } => {
                assert_eq!(input_update["delete_all"][0], **name)
            }
            ColumnUpdate::Increment { name, delta } => {
                assert_eq!(input_update["increment"][0][0], **name);
                assert_eq!(input_update["increment"][0][1], *delta);
            }
        }
        assert_eq!(
            hex::encode(encode_update_row(&pk, std::slice::from_ref(&update))),
            hex::encode(&bytes),
            "{name}"
        );
        let row = decode_single_row(&bytes).unwrap().unwrap();
        assert_eq!(row.cells.len(), 1);
        assert_eq!(row.cells[0].op, op, "{name}");
    }
}

#[test]
fn bare_value_vectors() {
    let cases = [
        ("filter_column_value_str", Value::String("x".into())),
        ("filter_column_value_int", Value::Integer(7)),
        ("filter_column_value_float", Value::Double(1.5)),
        ("filter_column_value_bool", Value::Boolean(true)),
        ("filter_column_value_bytearray", Value::Binary(vec![0, 1])),
    ];
    for (name, value) in cases {
        let v = vector(name);
        let bytes = hex_of(&v);
        assert_eq!(encode_bare_value(value.as_ref()), bytes, "{name}");
        assert_eq!(decode_bare_value(&bytes).unwrap(), value.as_ref(), "{name}");
    }
}

#[test]
fn every_vector_is_covered() {
    let covered = [
        "put_row_request_row",
        "get_range_response_rows_2",
        "primary_key_only",
        "range_start_inf_min",
        "range_end_inf_max",
        "put_pk_auto_increment_placeholder",
        "delete_row_request_primary_key",
        "update_put_with_ts",
        "update_delete_one_version",
        "update_delete_all_versions",
        "update_increment",
        "filter_column_value_str",
        "filter_column_value_int",
        "filter_column_value_float",
        "filter_column_value_bool",
        "filter_column_value_bytearray",
        "put_row_request_protobuf_body", // tests/proto_messages.rs
    ];
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        assert!(covered.contains(&name), "vector {name} has no test");
    }
}

#[test]
fn flipping_the_last_rows_checksum_is_detected() {
    let v = vector("get_range_response_rows_2");
    let mut bytes = hex_of(&v);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(
        decode_rows(&bytes),
        Err(DecodeError::RowChecksum { .. })
    ));
}
