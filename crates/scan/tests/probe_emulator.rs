//! `probe_cells_after` against the emulator: it counts exactly the cells dated after T (every
//! version), per split, and nothing when there are none.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ots_datagen::{DatasetSpec, create_table_request, load_rows, row};
use ots_emulator::{Emulator, EmulatorHandle, PageLimits};
use ots_scan::{AfterT, RateLimiter, Split, SplitSize, plan_splits, probe_cells_after};
use ots_wire::types::{Cell, Row, Value, cmp_primary_keys};
use ots_wire::{ClientConfig, Credentials, OtsClient, RetryPolicy};

const AK: &str = "probe-ak";
const SK: &str = "probe-secret";

async fn emulator() -> (EmulatorHandle, OtsClient) {
    let emu = Emulator::builder()
        .instance("probeinst")
        .credentials(AK, SK)
        // Small pages, so that a split's probe takes several requests.
        .page_limits(PageLimits {
            max_rows: 40,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        })
        .start()
        .await
        .unwrap();
    let mut cfg = ClientConfig::new(emu.endpoint(), "probeinst", Credentials::new(AK, SK));
    cfg.retry = RetryPolicy::none();
    let client = OtsClient::new(cfg).unwrap();
    (emu, client)
}

/// The standard dataset (every cell at or before `spec.base_ts_ms`), plus in some rows cells dated
/// after it: `late` (one version), `later` (two versions), and `edge` dated exactly at it.
fn rows_with_late_cells(spec: &DatasetSpec) -> Vec<Row> {
    let t = spec.base_ts_ms;
    (0..spec.rows)
        .map(|i| {
            let mut r = row(spec, i);
            if i % 7 == 0 {
                r.cells
                    .push(Cell::new("late", Value::Integer(1), Some(t + 1 + i as i64)));
            }
            if i % 11 == 0 {
                r.cells
                    .push(Cell::new("later", Value::Integer(2), Some(t + 5_000)));
                r.cells
                    .push(Cell::new("later", Value::Integer(3), Some(t + 6_000)));
            }
            if i % 5 == 0 {
                r.cells.push(Cell::new("edge", Value::Integer(4), Some(t)));
            }
            r
        })
        .collect()
}

fn in_split(row: &Row, split: &Split) -> bool {
    let key = || row.primary_key.iter().map(|c| c.value.as_ref());
    let start = split.start_columns().unwrap();
    let end = split.end_columns().unwrap();
    cmp_primary_keys(key(), start.iter().map(|c| c.value.as_ref())) != Ordering::Less
        && cmp_primary_keys(key(), end.iter().map(|c| c.value.as_ref())) == Ordering::Less
}

/// What the probe should find in `rows` after `t`.
fn expected(rows: &[&Row], t: i64) -> AfterT {
    let mut out = AfterT::default();
    for r in rows {
        let after: Vec<i64> = r
            .cells
            .iter()
            .filter_map(|c| c.timestamp)
            .filter(|&ts| ts > t)
            .collect();
        if !after.is_empty() {
            out.rows += 1;
            out.cells += after.len() as u64;
            out.max_ts_ms = out.max_ts_ms.max(after.iter().copied().max());
        }
    }
    out
}

async fn load(client: &OtsClient, table: &str, rows: Vec<Row>) {
    client
        .create_table(&create_table_request(table))
        .await
        .unwrap();
    load_rows(
        client,
        table,
        rows.into_iter(),
        4,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
}

const SMALL_SPLITS: SplitSize = SplitSize {
    units: 32,
    unit_bytes: 1024,
};

#[tokio::test]
async fn the_probe_counts_exactly_the_cells_after_t_per_split() {
    let (_emu, c) = emulator().await;
    let spec = DatasetSpec::new(800, 9);
    let t = spec.base_ts_ms;
    let rows = rows_with_late_cells(&spec);
    load(&c, "t", rows.clone()).await;
    let plan = plan_splits(&c, "t", SMALL_SPLITS).await.unwrap();
    assert!(plan.splits.len() >= 3, "only {} splits", plan.splits.len());

    let mut total = AfterT::default();
    let mut splits_with_late = 0;
    for (n, split) in plan.splits.iter().enumerate() {
        // One of the probes runs under a (generous) read limiter.
        let limiter = (n == 0).then(|| Arc::new(RateLimiter::new(1e9)));
        let got = probe_cells_after(&c, "t", split, t, limiter).await.unwrap();
        let mine: Vec<&Row> = rows.iter().filter(|r| in_split(r, split)).collect();
        assert_eq!(got, expected(&mine, t), "split {}", split.id);
        if got.cells > 0 {
            splits_with_late += 1;
        }
        total.merge(got);
    }
    assert!(
        splits_with_late >= 3,
        "late cells in only {splits_with_late} splits"
    );
    // Every split together: rows 0, 7, 14, … have `late`, rows 0, 11, 22, … two `later` versions;
    // `edge` (at exactly T) and the dataset's own cells are not after T.
    let late_rows = (0..spec.rows).filter(|i| i % 7 == 0).count() as u64;
    let later_rows = (0..spec.rows).filter(|i| i % 11 == 0).count() as u64;
    let both = (0..spec.rows).filter(|i| i % 77 == 0).count() as u64;
    assert_eq!(total.cells, late_rows + 2 * later_rows);
    assert_eq!(total.rows, late_rows + later_rows - both);
    assert_eq!(total.max_ts_ms, Some(t + 6_000));
    let json = serde_json::to_string(&total).unwrap();
    assert_eq!(serde_json::from_str::<AfterT>(&json).unwrap(), total);

    // One millisecond later the cells at exactly T + 1 drop out of the count.
    let whole = Split {
        id: 0,
        start: plan.splits[0].start.clone(),
        end: plan.splits.last().unwrap().end.clone(),
    };
    let after_t1 = probe_cells_after(&c, "t", &whole, t + 1, None)
        .await
        .unwrap();
    assert_eq!(after_t1, expected(&rows.iter().collect::<Vec<_>>(), t + 1));
    assert_eq!(
        after_t1.cells,
        total.cells - 1,
        "row 0's `late` is at T + 1"
    );

    // After the newest cell there is nothing, in every split.
    for split in &plan.splits {
        let got = probe_cells_after(&c, "t", split, t + 6_000, None)
            .await
            .unwrap();
        assert_eq!(got, AfterT::default(), "split {}", split.id);
    }
}

#[tokio::test]
async fn the_probe_finds_nothing_when_no_cell_is_after_t() {
    let (_emu, c) = emulator().await;
    let spec = DatasetSpec::new(300, 4);
    load(&c, "t", (0..spec.rows).map(|i| row(&spec, i)).collect()).await;
    let plan = plan_splits(&c, "t", SMALL_SPLITS).await.unwrap();
    assert!(plan.splits.len() >= 2);
    let received = c.stats().bytes_received;
    for split in &plan.splits {
        let got = probe_cells_after(&c, "t", split, spec.base_ts_ms, None)
            .await
            .unwrap();
        assert_eq!(got, AfterT::default(), "split {}", split.id);
    }
    // The probe walks every split, but rows without a cell in the time range do not come back:
    // the responses carry next keys and no rows.
    let probe_bytes = c.stats().bytes_received - received;
    // With T before every cell, the probe counts the whole table.
    let all: Vec<Row> = (0..spec.rows).map(|i| row(&spec, i)).collect();
    let mut total = AfterT::default();
    for split in &plan.splits {
        total.merge(probe_cells_after(&c, "t", split, 0, None).await.unwrap());
    }
    assert_eq!(total, expected(&all.iter().collect::<Vec<_>>(), 0));
    assert_eq!(total.rows, spec.rows);
    let full_bytes = c.stats().bytes_received - received - probe_bytes;
    assert!(
        probe_bytes * 20 < full_bytes,
        "the empty probe received {probe_bytes} bytes, the full one {full_bytes}"
    );
}
