//! Full-scan throughput (ignored by default; run with
//! `cargo test --release -p ots-emulator --test emulator speed -- --ignored --nocapture`).

use std::time::Instant;

use ots_wire::plainbuffer::RowDecoder;
use ots_wire::types::RowRef;

use super::*;

const ROWS: i64 = 1_000_000;

fn row(i: i64) -> Row {
    Row {
        primary_key: key(&format!("user{:04}", i % 1000), i),
        cells: (0..10)
            .map(|c| match c % 3 {
                0 => cell(&format!("c{c}"), Value::Integer(i * c)),
                1 => cell(&format!("c{c}"), Value::String(format!("v{i}"))),
                _ => cell(&format!("c{c}"), Value::Double(i as f64 / 3.0)),
            })
            .collect(),
    }
}

/// Scans [start, end) to the end; returns (rows, cells).
async fn scan(c: &OtsClient, start: Vec<PkColumn>, end: Vec<PkColumn>) -> (u64, u64) {
    let mut req = range_req("big", pb::Direction::Forward, &start, &end, None);
    let (mut rows, mut cells) = (0u64, 0u64);
    loop {
        let resp = c.get_range(&req).await.expect("get range");
        let mut r = RowRef::default();
        let mut d = RowDecoder::new(&resp.rows).expect("rows");
        while d.next_into(&mut r).expect("row decodes") {
            rows += 1;
            cells += r.cells.len() as u64;
        }
        match resp.next_start_primary_key {
            Some(k) => req.inclusive_start_primary_key = k,
            None => return (rows, cells),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement; run in release"]
async fn full_scan_throughput() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "big", 1).await;
    let t0 = Instant::now();
    let n = env.emu.load_rows("big", (0..ROWS).map(row)).unwrap();
    eprintln!("loaded {n} rows in {:.2?}", t0.elapsed());
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss = status.lines().find(|l| l.starts_with("VmRSS"));
        eprintln!("process {}", rss.unwrap_or("VmRSS unknown"));
    }

    let t0 = Instant::now();
    let (rows, cells) = scan(c, inf_key(true), inf_key(false)).await;
    let dt = t0.elapsed();
    assert_eq!(rows, ROWS as u64);
    assert_eq!(cells, ROWS as u64 * 10);
    eprintln!(
        "one stream: {rows} rows in {dt:.2?} = {:.0} rows/s (client decode included)",
        rows as f64 / dt.as_secs_f64()
    );

    // Two concurrent streams over the two halves, as a split scan would run them.
    let mid = key("user0500", 0);
    let t0 = Instant::now();
    let (a, b) = tokio::join!(
        scan(c, inf_key(true), mid.clone()),
        scan(c, mid, inf_key(false))
    );
    let dt = t0.elapsed();
    assert_eq!(a.0 + b.0, ROWS as u64);
    eprintln!(
        "two streams: {} rows in {dt:.2?} = {:.0} rows/s",
        a.0 + b.0,
        (a.0 + b.0) as f64 / dt.as_secs_f64()
    );
}
