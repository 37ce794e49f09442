//! Decoding a 4 MB GetRange page (the service's page cap) of realistic rows: the ceiling of how fast
//! a backup can turn responses into cells. Also the encode side used by restore's BatchWriteRow.
//!
//! Run: `cargo bench -p ots-wire --bench decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ots_wire::plainbuffer::*;
use ots_wire::types::*;

/// Rows shaped like the project's standard benchmark table: PK (user_id STRING ~16 B, seq INTEGER)
/// and ten attribute columns of every type, each with a timestamp as the service returns them.
fn realistic_rows(target_bytes: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut size = 4;
    let mut i: i64 = 0;
    let ts = 1_700_000_000_000;
    while size < target_bytes {
        let row = Row {
            primary_key: vec![
                PkColumn::new(
                    "user_id",
                    PkValue::String(format!("user-{:011}", i % 100_000)),
                ),
                PkColumn::new("seq", PkValue::Integer(i)),
            ],
            cells: vec![
                Cell::new("name", Value::String(format!("name {i}")), Some(ts)),
                Cell::new(
                    "description",
                    Value::String("lorem ipsum dolor sit amet ".repeat(3)),
                    Some(ts),
                ),
                Cell::new("age", Value::Integer(i % 97), Some(ts)),
                Cell::new("balance", Value::Integer(i * 1_000_003), Some(ts + 1)),
                Cell::new("score", Value::Double(i as f64 * 0.37), Some(ts)),
                Cell::new("ratio", Value::Double(1.0 / (i as f64 + 1.0)), Some(ts)),
                Cell::new("active", Value::Boolean(i % 2 == 0), Some(ts)),
                Cell::new("verified", Value::Boolean(i % 3 == 0), Some(ts)),
                Cell::new("digest", Value::Binary(vec![(i % 256) as u8; 64]), Some(ts)),
                Cell::new("city", Value::String("Hangzhou".into()), Some(ts)),
            ],
        };
        size += encode_put_row(&row).len() - 4;
        rows.push(row);
        i += 1;
    }
    rows
}

fn decode_page(c: &mut Criterion) {
    let rows = realistic_rows(4 * 1024 * 1024);
    let page = encode_rows(&rows);
    let n_rows = rows.len() as u64;
    let n_cells: u64 = rows.iter().map(|r| r.cells.len() as u64).sum();
    eprintln!(
        "page: {} bytes, {} rows, {} attribute cells",
        page.len(),
        n_rows,
        n_cells
    );

    let mut g = c.benchmark_group("decode_4mb_page");
    g.sample_size(30);
    let decode = |page: &[u8]| {
        let mut decoder = RowDecoder::new(page).unwrap();
        let mut row = RowRef::default();
        let mut cells = 0usize;
        while decoder.next_into(&mut row).unwrap() {
            cells += row.cells.len();
            black_box(&row);
        }
        cells
    };
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("bytes", |b| b.iter(|| decode(black_box(&page))));
    g.throughput(Throughput::Elements(n_rows));
    g.bench_function("rows", |b| b.iter(|| decode(black_box(&page))));
    g.finish();

    let mut g = c.benchmark_group("encode_batch_write_rows");
    let batch: Vec<Row> = rows.iter().take(200).cloned().collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("200_rows", |b| {
        b.iter(|| {
            for r in black_box(&batch) {
                black_box(encode_put_row(r));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decode_page);
criterion_main!(benches);
