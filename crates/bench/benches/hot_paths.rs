//! Micro-benchmarks of the hot paths the end-to-end benchmark (benches/run.py) exercises, on the
//! standard benchmark table (ots_datagen): Parquet encoding of a snapshot batch with the
//! writer's default settings, and BatchWriteRow request encoding (200 rows). PlainBuffer decode and
//! rows ⇄ Arrow live next to their code (crates/wire/benches/decode.rs, crates/schema/benches/convert.rs).
//!
//! Run: `cargo bench -p ots-bench --bench hot_paths`

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ots_datagen::DatasetSpec;
use ots_schema::layout::PkColumnSchema;
use ots_schema::{BatchBuilder, SchemaInferrer};
use ots_wire::pb;
use ots_wire::plainbuffer::{RowDecoder, encode_put_row, encode_rows};
use ots_wire::types::{PkType, Row, RowRef};
use parquet::arrow::ArrowWriter;
use prost::Message;

fn dataset(n: u64) -> Vec<Row> {
    let spec = DatasetSpec {
        rows: n,
        seed: 42,
        base_ts_ms: 1_700_000_000_000,
    };
    (0..n).map(|i| ots_datagen::row(&spec, i)).collect()
}

fn parquet_encode(c: &mut Criterion) {
    let n = 65_536u64;
    let page = encode_rows(&dataset(n));
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
    let mut builder = BatchBuilder::new(schema);
    let mut d = RowDecoder::new(&page).unwrap();
    let mut row = RowRef::default();
    while d.next_into(&mut row).unwrap() {
        builder.push_row(&row).unwrap();
    }
    let batch = builder.finish().unwrap();
    let props = ots_writer::ParquetOptions::default()
        .writer_properties()
        .unwrap();
    let mut g = c.benchmark_group("parquet_encode");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("65536_rows_zstd1", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(16 << 20);
            let mut w =
                ArrowWriter::try_new(&mut out, batch.schema(), Some(props.clone())).unwrap();
            w.write(black_box(&batch)).unwrap();
            w.close().unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn batch_write_row_encode(c: &mut Criterion) {
    let rows = dataset(200);
    let mut g = c.benchmark_group("batch_write_row_encode");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("200_rows", |b| {
        b.iter(|| {
            let req = pb::BatchWriteRowRequest {
                tables: vec![pb::TableInBatchWriteRowRequest {
                    table_name: "bench".into(),
                    rows: black_box(&rows)
                        .iter()
                        .map(|r| pb::RowInBatchWriteRowRequest {
                            r#type: pb::OperationType::Put as i32,
                            row_change: Bytes::from(encode_put_row(r)),
                            condition: pb::Condition {
                                row_existence: pb::RowExistenceExpectation::Ignore as i32,
                                column_condition: None,
                            },
                            return_content: None,
                        })
                        .collect(),
                }],
                ..Default::default()
            };
            black_box(req.encode_to_vec())
        })
    });
    g.finish();
}

criterion_group!(benches, parquet_encode, batch_write_row_encode);
criterion_main!(benches);
