//! Change files: changes → RecordBatch → changes is the identity for arbitrary changes (every op,
//! every cell operation, every value type, any primary key of 1–4 columns), through a Parquet file
//! too; malformed batches are refused with errors naming the column and the row.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use ots_format::change::{Change, ChangeOp};
use ots_schema::changes::{ChangeFileError, change_arrow_fields};
use ots_schema::layout::PkColumnSchema;
use ots_schema::{CHANGES_METADATA_KEY, ChangeBatchBuilder, ChangeReader, change_arrow_schema};
use ots_wire::types::*;
use proptest::prelude::*;

fn pk_type() -> impl Strategy<Value = PkType> {
    prop_oneof![
        Just(PkType::Integer),
        Just(PkType::String),
        Just(PkType::Binary)
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

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "\\PC{0,20}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(Value::Binary),
    ]
}

fn column_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}"
}

fn put() -> impl Strategy<Value = ColumnUpdate> {
    (column_name(), value(), any::<i64>()).prop_map(|(name, value, ts)| ColumnUpdate::Put {
        name,
        value,
        timestamp: Some(ts),
    })
}

fn cell_update() -> impl Strategy<Value = ColumnUpdate> {
    prop_oneof![
        3 => put(),
        1 => (column_name(), any::<i64>())
            .prop_map(|(name, timestamp)| ColumnUpdate::DeleteOneVersion { name, timestamp }),
        1 => column_name().prop_map(|name| ColumnUpdate::DeleteAllVersions { name }),
    ]
}

fn pk_schema() -> impl Strategy<Value = Vec<PkColumnSchema>> {
    prop::collection::vec(pk_type(), 1..=4).prop_map(|types| {
        types
            .into_iter()
            .enumerate()
            .map(|(i, t)| PkColumnSchema {
                name: format!("pk{i}"),
                pk_type: t,
                auto_increment: false,
            })
            .collect()
    })
}

fn change(pk: Vec<PkColumnSchema>) -> impl Strategy<Value = Change> {
    let key: Vec<BoxedStrategy<PkColumn>> = pk
        .iter()
        .map(|c| {
            let name = c.name.clone();
            pk_value(c.pk_type)
                .prop_map(move |v| PkColumn::new(name.clone(), v))
                .boxed()
        })
        .collect();
    let op = prop_oneof![
        Just(ChangeOp::PutRow),
        Just(ChangeOp::UpdateRow),
        Just(ChangeOp::DeleteRow)
    ];
    (
        0..=i64::MAX as u64,
        "[0-9a-f-]{0,20}",
        any::<u32>(),
        any::<i64>(),
        any::<u32>(),
        op,
        key,
        prop::collection::vec(put(), 0..6),
        prop::collection::vec(cell_update(), 0..8),
    )
        .prop_map(
            |(ordinal, shard, epoch, timestamp_us, row_index, op, primary_key, puts, updates)| {
                Change {
                    ordinal,
                    shard: shard.into(),
                    sequence: RecordSequence {
                        epoch,
                        timestamp_us,
                        row_index,
                    },
                    op,
                    primary_key,
                    cells: match op {
                        ChangeOp::PutRow => puts,
                        ChangeOp::UpdateRow => updates,
                        ChangeOp::DeleteRow => Vec::new(),
                    },
                }
            },
        )
}

fn changes() -> impl Strategy<Value = (Vec<PkColumnSchema>, Vec<Change>)> {
    pk_schema().prop_flat_map(|pk| {
        let c = prop::collection::vec(change(pk.clone()), 0..24);
        (Just(pk), c)
    })
}

fn build(pk: &[PkColumnSchema], changes: &[Change]) -> RecordBatch {
    let mut b = ChangeBatchBuilder::new(pk);
    for c in changes {
        b.push(c).unwrap();
    }
    assert_eq!(b.len(), changes.len());
    b.finish().unwrap()
}

fn through_parquet(batch: &RecordBatch) -> Vec<RecordBatch> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes::Bytes::from(buf), 1024)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn changes_to_a_batch_and_back_are_the_identity((pk, changes) in changes()) {
        let batch = build(&pk, &changes);
        prop_assert_eq!(batch.num_rows(), changes.len());
        prop_assert_eq!(batch.schema(), change_arrow_schema(&pk));
        let reader = ChangeReader::new(&pk);
        prop_assert_eq!(&reader.read_batch(&batch).unwrap(), &changes);
        // And through a Parquet file.
        let mut back = Vec::new();
        for b in through_parquet(&batch) {
            back.extend(reader.read_batch(&b).unwrap());
        }
        prop_assert_eq!(&back, &changes);
    }
}

fn pk2() -> Vec<PkColumnSchema> {
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

fn key(u: &str, s: i64) -> Vec<PkColumn> {
    vec![
        PkColumn::new("user_id", PkValue::String(u.into())),
        PkColumn::new("seq", PkValue::Integer(s)),
    ]
}

fn sample(ordinal: u64, op: ChangeOp, cells: Vec<ColumnUpdate>) -> Change {
    Change {
        ordinal,
        shard: "shard-0".into(),
        sequence: RecordSequence {
            epoch: 1,
            timestamp_us: 1_700_000_000_000_000 + ordinal as i64,
            row_index: 0,
        },
        op,
        primary_key: key("a", ordinal as i64),
        cells,
    }
}

#[test]
fn the_builder_refuses_a_change_that_does_not_fit_and_appends_nothing() {
    let pk = pk2();
    let mut b = ChangeBatchBuilder::new(&pk);
    let ok = sample(0, ChangeOp::DeleteRow, vec![]);
    b.push(&ok).unwrap();
    let bytes = b.buffered_bytes();
    assert!(bytes > 0);
    let mut bad_key = sample(1, ChangeOp::DeleteRow, vec![]);
    bad_key.primary_key[1].value = PkValue::String("7".into());
    let mut short_key = sample(2, ChangeOp::DeleteRow, vec![]);
    short_key.primary_key.pop();
    let mut renamed = sample(3, ChangeOp::DeleteRow, vec![]);
    renamed.primary_key[0].name = "uid".into();
    let untimed = sample(
        4,
        ChangeOp::UpdateRow,
        vec![ColumnUpdate::Put {
            name: "a".into(),
            value: Value::Integer(1),
            timestamp: None,
        }],
    );
    let increment = sample(
        5,
        ChangeOp::UpdateRow,
        vec![ColumnUpdate::Increment {
            name: "a".into(),
            delta: 1,
        }],
    );
    let delete_in_put_row = sample(
        6,
        ChangeOp::PutRow,
        vec![ColumnUpdate::DeleteAllVersions { name: "a".into() }],
    );
    let cells_in_delete_row = sample(
        7,
        ChangeOp::DeleteRow,
        vec![ColumnUpdate::DeleteAllVersions { name: "a".into() }],
    );
    let mut huge_ordinal = sample(8, ChangeOp::DeleteRow, vec![]);
    huge_ordinal.ordinal = u64::MAX;
    for c in [
        &bad_key,
        &short_key,
        &renamed,
        &untimed,
        &increment,
        &delete_in_put_row,
        &cells_in_delete_row,
        &huge_ordinal,
    ] {
        match b.push(c) {
            Err(ChangeFileError::Change { ordinal, .. }) => assert_eq!(ordinal, c.ordinal),
            other => panic!("change {}: {other:?}", c.ordinal),
        }
        assert_eq!(b.len(), 1);
        assert_eq!(b.buffered_bytes(), bytes);
    }
    let batch = b.finish().unwrap();
    assert_eq!(ChangeReader::new(&pk).read_batch(&batch).unwrap(), vec![ok]);
}

#[test]
fn buffered_bytes_grow_with_the_values_held() {
    let pk = pk2();
    let mut b = ChangeBatchBuilder::new(&pk);
    b.push(&sample(
        0,
        ChangeOp::PutRow,
        vec![ColumnUpdate::Put {
            name: "blob".into(),
            value: Value::Binary(vec![7; 100_000]),
            timestamp: Some(1),
        }],
    ))
    .unwrap();
    assert!(
        (100_000..101_000).contains(&b.buffered_bytes()),
        "{}",
        b.buffered_bytes()
    );
    b.finish().unwrap();
    assert_eq!(b.buffered_bytes(), 0);
    assert!(b.is_empty());
}

/// One `$cells` entry as raw (possibly malformed) column values.
#[derive(Clone, Default)]
struct Entry {
    op: Option<&'static str>,
    name: Option<&'static str>,
    ts: Option<i64>,
    kind: Option<&'static str>,
    v_integer: Option<i64>,
    v_string: Option<&'static str>,
}

fn put_entry() -> Entry {
    Entry {
        op: Some("PUT"),
        name: Some("a"),
        ts: Some(1000),
        kind: Some("INTEGER"),
        v_integer: Some(5),
        v_string: None,
    }
}

/// A batch of one change (`op`, key ("a", 1)) whose `$cells` hold `entries` as given, every field
/// nullable, with the file schema's metadata.
fn raw_batch(op: &str, change: i64, entries: &[Entry]) -> RecordBatch {
    let pk = pk2();
    let n = entries.len();
    let nullable = |name: &str, t: DataType| Field::new(name, t, true);
    let fields = Fields::from(vec![
        nullable("op", DataType::Utf8),
        nullable("name", DataType::Utf8),
        nullable("ts", DataType::Int64),
        nullable("type", DataType::Utf8),
        nullable("v_integer", DataType::Int64),
        nullable("v_double", DataType::Float64),
        nullable("v_boolean", DataType::Boolean),
        nullable("v_string", DataType::Utf8),
        nullable("v_binary", DataType::Binary),
    ]);
    let children: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            entries.iter().map(|e| e.op).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            entries.iter().map(|e| e.name).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            entries.iter().map(|e| e.ts).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            entries.iter().map(|e| e.kind).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            entries.iter().map(|e| e.v_integer).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(vec![None::<f64>; n])),
        Arc::new(BooleanArray::from(vec![None::<bool>; n])),
        Arc::new(StringArray::from(
            entries.iter().map(|e| e.v_string).collect::<Vec<_>>(),
        )),
        Arc::new(BinaryArray::from(vec![None::<&[u8]>; n])),
    ];
    let values = StructArray::try_new(fields.clone(), children, None).unwrap();
    let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
    let list = ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(vec![0i32, n as i32].into()),
        Arc::new(values),
        None,
    )
    .unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![change])),
        Arc::new(StringArray::from(vec!["s"])),
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(Int64Array::from(vec![1_700_000_000_000_000])),
        Arc::new(Int64Array::from(vec![0])),
        Arc::new(StringArray::from(vec![op])),
        Arc::new(StringArray::from(vec!["a"])),
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(list),
    ];
    let file_schema = change_arrow_schema(&pk);
    let schema = Schema::new_with_metadata(
        columns
            .iter()
            .zip(file_schema.fields())
            .map(|(a, f)| Field::new(f.name(), a.data_type().clone(), true))
            .collect::<Vec<_>>(),
        file_schema.metadata().clone(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

fn value_error(batch: &RecordBatch) -> (usize, String, String) {
    match ChangeReader::new(&pk2()).read_batch(batch) {
        Err(ChangeFileError::Value {
            row,
            column,
            detail,
        }) => (row, column, detail),
        other => panic!("expected a value error, got {other:?}"),
    }
}

#[test]
fn a_well_formed_raw_batch_reads() {
    let got = ChangeReader::new(&pk2())
        .read_batch(&raw_batch("UPDATE_ROW", 9, &[put_entry()]))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ordinal, 9);
    assert_eq!(
        got[0].cells,
        vec![ColumnUpdate::Put {
            name: "a".into(),
            value: Value::Integer(5),
            timestamp: Some(1000)
        }]
    );
}

#[test]
fn malformed_content_is_refused_naming_the_column_and_the_row() {
    let cases: Vec<(RecordBatch, &str, &str)> = vec![
        (raw_batch("UPSERT", 0, &[]), "$op", "UPSERT"),
        (raw_batch("PUT_ROW", -1, &[]), "$change", "negative"),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    op: Some("INCREMENT"),
                    ..put_entry()
                }],
            ),
            "$cells[0].op",
            "INCREMENT",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    ts: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].ts",
            "without a timestamp",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    v_integer: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].v_integer",
            "without a value",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    kind: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].type",
            "without a type",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    kind: Some("DATE"),
                    ..put_entry()
                }],
            ),
            "$cells[0].type",
            "DATE",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[
                    put_entry(),
                    Entry {
                        v_string: Some("x"),
                        ..put_entry()
                    },
                ],
            ),
            "$cells[1].v_string",
            "only v_integer",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    name: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].name",
            "null",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    op: Some("DELETE_ALL_VERSIONS"),
                    kind: None,
                    v_integer: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].ts",
            "DELETE_ALL_VERSIONS",
        ),
        (
            raw_batch(
                "UPDATE_ROW",
                0,
                &[Entry {
                    op: Some("DELETE_ONE_VERSION"),
                    kind: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].v_integer",
            "a value in a DELETE_ONE_VERSION",
        ),
        (
            raw_batch(
                "PUT_ROW",
                0,
                &[Entry {
                    op: Some("DELETE_ONE_VERSION"),
                    kind: None,
                    v_integer: None,
                    ..put_entry()
                }],
            ),
            "$cells[0].op",
            "PUT_ROW",
        ),
        (
            raw_batch("DELETE_ROW", 0, &[put_entry()]),
            "$cells",
            "DELETE_ROW",
        ),
    ];
    for (batch, column, detail) in cases {
        let (row, col, d) = value_error(&batch);
        assert_eq!(row, 0);
        assert_eq!(col, column, "{d}");
        assert!(d.contains(detail), "{column}: {d}");
    }
}

#[test]
fn nulls_and_out_of_range_sequence_values_are_refused() {
    let good = raw_batch("DELETE_ROW", 0, &[]);
    let replace = |i: usize, a: ArrayRef| {
        let mut cols = good.columns().to_vec();
        cols[i] = a;
        RecordBatch::try_new(good.schema(), cols).unwrap()
    };
    let mut nulls = Int64Builder::new();
    nulls.append_null();
    let (row, col, _) = value_error(&replace(7, Arc::new(nulls.finish())));
    assert_eq!((row, col.as_str()), (0, "seq"));
    let (_, col, d) = value_error(&replace(2, Arc::new(Int64Array::from(vec![1i64 << 40]))));
    assert_eq!(col, "$epoch", "{d}");
    let (_, col, _) = value_error(&replace(4, Arc::new(Int64Array::from(vec![-1]))));
    assert_eq!(col, "$row_index");
    let mut shard = StringBuilder::new();
    shard.append_null();
    let (_, col, _) = value_error(&replace(1, Arc::new(shard.finish())));
    assert_eq!(col, "$shard");
}

#[test]
fn a_batch_of_another_shape_or_table_is_refused() {
    let pk = pk2();
    let good = build(&pk, &[sample(0, ChangeOp::DeleteRow, vec![])]);
    let reader = ChangeReader::new(&pk);

    // A column of another type: $epoch as Utf8.
    let mut fields: Vec<Field> = change_arrow_fields(&pk);
    fields[2] = Field::new("$epoch", DataType::Utf8, false);
    let mut cols = good.columns().to_vec();
    cols[2] = Arc::new(StringArray::from(vec!["1"]));
    let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    match reader.read_batch(&bad) {
        Err(ChangeFileError::Schema(m)) => assert!(m.contains("$epoch"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Another table's primary key.
    let other_pk = vec![pk[0].clone()];
    match ChangeReader::new(&other_pk).read_batch(&good) {
        Err(ChangeFileError::Schema(m)) => assert!(m.contains("primary key"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Metadata of a later layout.
    let mut meta = good.schema().metadata().clone();
    let json = meta[CHANGES_METADATA_KEY].replace("\"layout_version\":1", "\"layout_version\":2");
    meta.insert(CHANGES_METADATA_KEY.to_string(), json);
    let later = RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(
            good.schema().fields().clone(),
            meta,
        )),
        good.columns().to_vec(),
    )
    .unwrap();
    match reader.read_batch(&later) {
        Err(ChangeFileError::Schema(m)) => assert!(m.contains("version 2"), "{m}"),
        other => panic!("{other:?}"),
    }

    // A data file's batch is not a change file.
    let data = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "user_id",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["a"]))],
    )
    .unwrap();
    assert!(matches!(
        reader.read_batch(&data),
        Err(ChangeFileError::Schema(_))
    ));
    // Without the metadata (a file rewritten by another tool), the columns still decide.
    let bare = RecordBatch::try_new(
        Arc::new(Schema::new(good.schema().fields().clone())),
        good.columns().to_vec(),
    )
    .unwrap();
    assert_eq!(reader.read_batch(&bare).unwrap().len(), 1);
    assert!(good.column(0).null_count() == 0);
}
