//! rows → RecordBatch and RecordBatch → rows on a realistic table: PK (user_id STRING, seq INTEGER),
//! ten attribute columns of every type, a sparse column (~10% of rows), a type conflict (~5%) and
//! ~10% of rows with 3 versions of one column.
//!
//! Run: `cargo bench -p ots-schema --bench convert`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ots_schema::layout::PkColumnSchema;
use ots_schema::{BatchBuilder, RowReader, SchemaInferrer};
use ots_wire::plainbuffer::{RowDecoder, encode_rows};
use ots_wire::types::*;

fn rows(n: i64) -> Vec<Row> {
    let ts = 1_700_000_000_000;
    (0..n)
        .map(|i| {
            let mut cells = vec![
                Cell::new("active", Value::Boolean(i % 2 == 0), Some(ts)),
                Cell::new("age", Value::Integer(i % 97), Some(ts)),
                Cell::new("balance", Value::Integer(i * 1_000_003), Some(ts)),
                Cell::new("city", Value::String("Hangzhou".into()), Some(ts)),
                Cell::new(
                    "description",
                    Value::String("lorem ipsum dolor sit amet ".repeat(3)),
                    Some(ts),
                ),
                Cell::new("digest", Value::Binary(vec![(i % 256) as u8; 64]), Some(ts)),
                Cell::new("name", Value::String(format!("name {i}")), Some(ts)),
                Cell::new("ratio", Value::Double(1.0 / (i as f64 + 1.0)), Some(ts)),
            ];
            let score = if i % 20 == 0 {
                Value::String("n/a".into())
            } else {
                Value::Double(i as f64 * 0.37)
            };
            cells.push(Cell::new("score", score, Some(ts)));
            if i % 10 == 0 {
                cells.push(Cell::new("sparse", Value::String("rare".into()), Some(ts)));
            }
            let versions = if i % 10 == 3 { 3 } else { 1 };
            for v in 0..versions {
                cells.push(Cell::new("status", Value::Integer(v), Some(ts - v)));
            }
            Row {
                primary_key: vec![
                    PkColumn::new(
                        "user_id",
                        PkValue::String(format!("user-{:011}", i % 100_000)),
                    ),
                    PkColumn::new("seq", PkValue::Integer(i)),
                ],
                cells,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = 8192;
    let page = encode_rows(&rows(n));
    let mut inferrer = SchemaInferrer::new();
    for r in RowDecoder::new(&page).unwrap() {
        inferrer.observe(&r.unwrap());
    }
    let pk = vec![
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
    ];
    let schema = Arc::new(inferrer.finish(pk, 1000).unwrap());

    let mut g = c.benchmark_group("rows_to_arrow");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode_and_build_8192_rows", |b| {
        let mut builder = BatchBuilder::new(schema.clone());
        b.iter(|| {
            let mut d = RowDecoder::new(black_box(&page)).unwrap();
            let mut row = RowRef::default();
            while d.next_into(&mut row).unwrap() {
                builder.push_row(&row).unwrap();
            }
            black_box(builder.finish().unwrap())
        })
    });
    g.finish();

    let mut builder = BatchBuilder::new(schema.clone());
    for r in RowDecoder::new(&page).unwrap() {
        builder.push_row(&r.unwrap()).unwrap();
    }
    let batch = builder.finish().unwrap();
    let mut g = c.benchmark_group("arrow_to_rows");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("8192_rows", |b| {
        b.iter(|| {
            let reader = RowReader::new(&schema, black_box(&batch)).unwrap();
            for r in reader.rows() {
                black_box(r.unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
