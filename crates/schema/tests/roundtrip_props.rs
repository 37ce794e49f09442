//! rows → RecordBatch → rows is the identity for arbitrary tables: any PK schema of 1–4 columns,
//! every attribute type, sparse columns, type conflicts, several versions, empty and large values,
//! unicode — cell for cell, timestamps and version order included.

use std::sync::Arc;

use arrow_array::Array;

use ots_schema::layout::{CELLS_COLUMN, ColumnSchema, PkColumnSchema, TS_COLUMN};
use ots_schema::{BatchBuilder, RowReader, SchemaInferrer, SnapshotSchema};
use ots_wire::plainbuffer::{decode_rows, encode_rows};
use ots_wire::types::*;
use proptest::prelude::*;

fn pk_type() -> impl Strategy<Value = PkType> {
    prop_oneof![
        Just(PkType::Integer),
        Just(PkType::String),
        Just(PkType::Binary)
    ]
}

fn value_type() -> impl Strategy<Value = ValueType> {
    prop_oneof![
        Just(ValueType::Integer),
        Just(ValueType::Double),
        Just(ValueType::Boolean),
        Just(ValueType::String),
        Just(ValueType::Binary),
    ]
}

fn pk_value(t: PkType) -> BoxedStrategy<PkValue> {
    match t {
        PkType::Integer => any::<i64>().prop_map(PkValue::Integer).boxed(),
        PkType::String => "\\PC{0,12}".prop_map(PkValue::String).boxed(),
        PkType::Binary => prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(PkValue::Binary)
            .boxed(),
    }
}

fn value(t: ValueType) -> BoxedStrategy<Value> {
    match t {
        ValueType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        ValueType::Double => any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Value::Double)
            .boxed(),
        ValueType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        ValueType::String => prop_oneof![
            3 => "\\PC{0,20}",
            1 => Just(String::new()),
            1 => (0usize..70_000).prop_map(|n| "ü".repeat(n / 2)),
        ]
        .prop_map(Value::String)
        .boxed(),
        ValueType::Binary => prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..32),
            1 => (0usize..70_000).prop_map(|n| vec![0u8; n]),
        ]
        .prop_map(Value::Binary)
        .boxed(),
    }
}

/// A table: PK schema, a schema of typed columns, and extra columns the schema does not know.
#[derive(Debug, Clone)]
struct Table {
    schema: SnapshotSchema,
    /// Every attribute column that may appear: (name, its usual type).
    columns: Vec<(String, ValueType)>,
}

fn table() -> impl Strategy<Value = Table> {
    (
        prop::collection::vec(pk_type(), 1..=4),
        prop::collection::btree_map("[a-z_][a-z0-9_]{0,6}", (value_type(), any::<bool>()), 0..8),
    )
        .prop_map(|(pk_types, cols)| {
            let primary_key: Vec<PkColumnSchema> = pk_types
                .into_iter()
                .enumerate()
                .map(|(i, t)| PkColumnSchema {
                    name: format!("PK{i}"),
                    pk_type: t,
                    auto_increment: false,
                })
                .collect();
            let typed: Vec<ColumnSchema> = cols
                .iter()
                .filter(|(_, (_, in_schema))| *in_schema)
                .map(|(n, (t, _))| ColumnSchema {
                    name: n.clone(),
                    value_type: *t,
                })
                .collect();
            Table {
                schema: SnapshotSchema::new(primary_key, typed).unwrap(),
                columns: cols.into_iter().map(|(n, (t, _))| (n, t)).collect(),
            }
        })
}

/// Rows as the service returns them: columns sorted by name, 1–3 versions newest first, ~half the
/// columns absent in each row (sparse), and ~1 in 5 versions of a type other than the usual one.
fn rows(t: Table) -> impl Strategy<Value = (Table, Vec<Row>)> {
    let pk_types: Vec<PkType> = t.schema.primary_key.iter().map(|c| c.pk_type).collect();
    let pk = pk_types.into_iter().map(pk_value).collect::<Vec<_>>();
    let cols = t
        .columns
        .iter()
        .map(|(name, usual)| {
            let name = name.clone();
            let usual = *usual;
            prop::option::weighted(
                0.5,
                prop::collection::vec(
                    (
                        prop::bool::weighted(0.2).prop_flat_map(move |conflict| {
                            if conflict {
                                value_type().boxed()
                            } else {
                                Just(usual).boxed()
                            }
                        }),
                        1i64..1_000_000,
                    ),
                    1..=3,
                ),
            )
            .prop_flat_map(move |versions| {
                let name = name.clone();
                let versions = versions.unwrap_or_default();
                let strategies: Vec<_> = versions.iter().map(|(vt, _)| value(*vt)).collect();
                let gaps: Vec<i64> = versions.iter().map(|(_, g)| *g).collect();
                strategies.prop_map(move |values| {
                    // Strictly decreasing timestamps: newest first.
                    let mut ts = 1_700_000_000_000i64;
                    values
                        .into_iter()
                        .zip(&gaps)
                        .map(|(v, g)| {
                            ts -= g;
                            Cell::new(name.clone(), v, Some(ts))
                        })
                        .collect::<Vec<_>>()
                })
            })
        })
        .collect::<Vec<_>>();
    let row = (pk, cols).prop_map(|(pk_values, cols)| Row {
        primary_key: pk_values
            .into_iter()
            .enumerate()
            .map(|(i, v)| PkColumn::new(format!("PK{i}"), v))
            .collect(),
        cells: cols.into_iter().flatten().collect(),
    });
    (Just(t), prop::collection::vec(row, 0..40))
}

fn convert(schema: &SnapshotSchema, rows: &[Row]) -> arrow_array::RecordBatch {
    let wire = encode_rows(rows);
    let decoded = decode_rows(&wire).unwrap();
    let mut b = BatchBuilder::new(Arc::new(schema.clone()));
    for r in &decoded {
        b.push_row(r).unwrap();
    }
    b.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn rows_to_batch_to_rows_is_identity((t, rows) in table().prop_flat_map(rows)) {
        let batch = convert(&t.schema, &rows);
        prop_assert_eq!(batch.num_rows(), rows.len());
        let reader = RowReader::new(&t.schema, &batch).unwrap();
        let back: Vec<Row> = reader.rows().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, rows);
    }

    /// Rows decoded into recycled rows (of other shapes: more or fewer cells, other types, longer
    /// strings) are the rows themselves.
    #[test]
    fn rows_decoded_into_recycled_rows_are_the_rows((t, rows) in table().prop_flat_map(rows)) {
        let batch = convert(&t.schema, &rows);
        let reader = RowReader::new(&t.schema, &batch).unwrap();
        let mut recycled = [Row::default(), Row::default()];
        let mut cells = Vec::new();
        for (n, i) in (0..rows.len()).rev().chain(0..rows.len()).enumerate() {
            let row = &mut recycled[n % 2];
            reader.row_into(i, row, &mut cells).unwrap();
            prop_assert_eq!(&*row, &rows[i]);
        }
    }

    #[test]
    fn inferred_schema_also_round_trips((t, rows) in table().prop_flat_map(rows), cap in 0usize..4) {
        let wire = encode_rows(&rows);
        let decoded = decode_rows(&wire).unwrap();
        let mut inferrer = SchemaInferrer::new();
        for r in &decoded {
            inferrer.observe(r);
        }
        let schema = inferrer.finish(t.schema.primary_key.clone(), cap).unwrap();
        prop_assert!(schema.columns.len() <= cap);
        let batch = convert(&schema, &rows);
        let reader = RowReader::new(&schema, &batch).unwrap();
        let back: Vec<Row> = reader.rows().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, rows);
    }

    #[test]
    fn statistics_account_for_every_cell((t, rows) in table().prop_flat_map(rows)) {
        let wire = encode_rows(&rows);
        let decoded = decode_rows(&wire).unwrap();
        let mut b = BatchBuilder::new(Arc::new(t.schema.clone()));
        for r in &decoded {
            b.push_row(r).unwrap();
        }
        let batch = b.finish().unwrap();
        let stats = b.take_stats();
        let cells: usize = rows.iter().map(|r| r.cells.len()).sum();
        prop_assert_eq!(stats.rows as usize, rows.len());
        prop_assert_eq!(stats.cells as usize, cells);
        let typed: u64 = stats.columns.values().map(|c| c.typed_values).sum();
        let overflow: u64 = stats.columns.values().map(|c| c.overflow_cells).sum();
        prop_assert_eq!(typed + overflow, cells as u64);
        prop_assert_eq!(overflow, stats.overflow_cells);
        // The overflow list holds exactly the overflow cells.
        let list = batch
            .column_by_name(CELLS_COLUMN)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .unwrap();
        prop_assert_eq!(list.values().len() as u64, overflow);
        for c in &t.schema.columns {
            let s = &stats.columns[&c.name];
            prop_assert_eq!(s.typed_values + s.typed_nulls, rows.len() as u64);
        }
        // The most versions of one column in one row, per column, as the rows hold them.
        let mut most: std::collections::BTreeMap<&str, u64> = Default::default();
        for r in &rows {
            for c in &r.cells {
                let n = r.cells.iter().filter(|d| d.name == c.name).count() as u64;
                let m = most.entry(c.name.as_str()).or_default();
                *m = (*m).max(n);
            }
        }
        for (name, s) in &stats.columns {
            let want = most.get(name.as_str()).copied().unwrap_or(0);
            prop_assert_eq!(s.max_versions_per_row, Some(want), "{}", name);
        }
        // Cells per column and type, as the rows hold them.
        let mut by_type: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for r in &rows {
            for c in &r.cells {
                let t = c.value.as_ref().value_type().name().to_string();
                *by_type.entry((c.name.clone(), t)).or_default() += 1;
            }
        }
        let mut counted: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for (name, s) in &stats.columns {
            for (t, &n) in &s.cells_by_type {
                counted.insert((name.clone(), t.clone()), n);
            }
        }
        counted.retain(|_, n| *n > 0);
        prop_assert_eq!(counted, by_type);
        // Taking the statistics resets them.
        let again = b.take_stats();
        prop_assert!(again.columns.values().all(|c| c.cells_by_type.values().all(|&n| n == 0)));
    }
}

#[test]
fn type_conflict_goes_to_cells_and_typed_column_is_null() {
    let schema = SnapshotSchema::new(
        vec![PkColumnSchema {
            name: "id".into(),
            pk_type: PkType::Integer,
            auto_increment: false,
        }],
        vec![ColumnSchema {
            name: "age".into(),
            value_type: ValueType::Integer,
        }],
    )
    .unwrap();
    let rows = vec![
        Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(1))],
            cells: vec![Cell::new("age", Value::Integer(30), Some(5))],
        },
        Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(2))],
            cells: vec![
                Cell::new("age", Value::String("thirty".into()), Some(7)),
                Cell::new("age", Value::Integer(29), Some(6)),
                Cell::new("zzz", Value::Boolean(true), Some(1)),
            ],
        },
    ];
    let batch = convert(&schema, &rows);
    let age = batch
        .column_by_name("age")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(age.value(0), 30);
    assert!(
        age.is_null(1),
        "a STRING latest version leaves the INTEGER column null"
    );
    let ts = batch
        .column_by_name(TS_COLUMN)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StructArray>()
        .unwrap();
    let age_ts = ts
        .column_by_name("age")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(age_ts.value(0), 5);
    let list = batch
        .column_by_name(CELLS_COLUMN)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::ListArray>()
        .unwrap();
    assert_eq!(list.value_length(0), 0);
    assert_eq!(list.value_length(1), 3);
    let reader = RowReader::new(&schema, &batch).unwrap();
    assert_eq!(reader.rows().collect::<Result<Vec<_>, _>>().unwrap(), rows);
}

#[test]
fn schema_json_round_trips_and_rejects_bad_edits() {
    let schema = SnapshotSchema::new(
        vec![PkColumnSchema {
            name: "pk".into(),
            pk_type: PkType::Binary,
            auto_increment: false,
        }],
        vec![ColumnSchema {
            name: "c".into(),
            value_type: ValueType::Double,
        }],
    )
    .unwrap();
    let json = schema.to_json();
    assert!(json.contains("\"DOUBLE\""), "{json}");
    assert_eq!(SnapshotSchema::from_json(&json).unwrap(), schema);
    let bad_type = json.replace("DOUBLE", "FLOAT");
    let err = SnapshotSchema::from_json(&bad_type)
        .unwrap_err()
        .to_string();
    assert!(err.contains("FLOAT"), "{err}");
    let bad_name = json.replace("\"c\"", "\"$ts\"");
    let err = SnapshotSchema::from_json(&bad_name)
        .unwrap_err()
        .to_string();
    assert!(err.contains("$ts"), "{err}");
    let dup = json.replace("\"c\"", "\"pk\"");
    assert!(SnapshotSchema::from_json(&dup).is_err());
}

#[test]
fn pk_mismatch_is_an_error_not_a_panic() {
    let schema = SnapshotSchema::new(
        vec![PkColumnSchema {
            name: "id".into(),
            pk_type: PkType::Integer,
            auto_increment: false,
        }],
        vec![],
    )
    .unwrap();
    let rows = vec![Row {
        primary_key: vec![PkColumn::new("id", PkValue::String("x".into()))],
        cells: vec![],
    }];
    let wire = encode_rows(&rows);
    let decoded = decode_rows(&wire).unwrap();
    let mut b = BatchBuilder::new(Arc::new(schema));
    let err = b.push_row(&decoded[0]).unwrap_err().to_string();
    assert!(err.contains("STRING") && err.contains("INTEGER"), "{err}");
    assert_eq!(b.len(), 0);
}
