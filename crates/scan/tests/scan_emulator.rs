//! The scanner against the emulator: split plans partition the table, every row is read exactly
//! once, empty pages with a next key are followed, faults are retried with an exact result, and a
//! slow consumer holds the scan back instead of letting pages pile up.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_emulator::{Emulator, EmulatorHandle, FaultConfig, PageLimits};
use ots_scan::{ScanOptions, SplitScanner, SplitSize, plan_splits, plan_splits_for};
use ots_wire::types::{PkValue, Row};
use ots_wire::{ClientConfig, Credentials, OtsClient, RetryPolicy};

const AK: &str = "scan-ak";
const SK: &str = "scan-secret";

async fn emulator(limits: PageLimits) -> EmulatorHandle {
    Emulator::builder()
        .instance("scaninst")
        .credentials(AK, SK)
        .page_limits(limits)
        .start()
        .await
        .unwrap()
}

fn client(emu: &EmulatorHandle, retry: RetryPolicy) -> OtsClient {
    let mut cfg = ClientConfig::new(emu.endpoint(), "scaninst", Credentials::new(AK, SK));
    cfg.retry = retry;
    OtsClient::new(cfg).unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 30,
        base_delay: Duration::from_millis(2),
        throttle_base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        deadline: Duration::from_secs(60),
    }
}

async fn load(client: &OtsClient, table: &str, rows: u64) -> (DatasetSpec, Vec<Row>) {
    let spec = DatasetSpec::new(rows, 42);
    create_and_load(client, table, &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    let expected = (0..rows).map(|i| row(&spec, i)).collect();
    (spec, expected)
}

/// Scans every split of the plan concurrently and returns the rows per split, in order.
async fn scan_all(
    client: &OtsClient,
    table: &str,
    size: SplitSize,
    options: ScanOptions,
) -> Vec<Vec<Row>> {
    let plan = plan_splits(client, table, size).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for split in plan.splits {
        let mut s =
            SplitScanner::new(client.clone(), table, split.clone(), options.clone()).unwrap();
        set.spawn(async move {
            let mut rows = Vec::new();
            while let Some(page) = s.next_page().await.unwrap() {
                page.for_each_row::<ots_scan::ScanError>(|r| {
                    rows.push(r.to_row());
                    Ok(())
                })
                .unwrap();
            }
            (split.id, rows)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(id, _)| *id);
    out.into_iter().map(|(_, rows)| rows).collect()
}

#[tokio::test]
async fn a_multi_split_table_is_read_exactly_once() {
    let emu = emulator(PageLimits {
        max_rows: 97,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    })
    .await;
    let c = client(&emu, RetryPolicy::none());
    let (_, expected) = load(&c, "t", 3000).await;
    let size = SplitSize {
        units: 64,
        unit_bytes: 1024,
    };
    let plan = plan_splits(&c, "t", size).await.unwrap();
    assert!(plan.splits.len() >= 4, "only {} splits", plan.splits.len());
    assert_eq!(plan.primary_key.len(), 2);
    // The plan survives JSON (it will be written down for workers).
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(
        serde_json::from_str::<ots_scan::SplitPlan>(&json).unwrap(),
        plan
    );

    let per_split = scan_all(&c, "t", size, ScanOptions::up_to(i64::MAX - 1)).await;
    assert!(per_split.iter().filter(|r| !r.is_empty()).count() >= 4);
    let all: Vec<Row> = per_split.into_iter().flatten().collect();
    assert_eq!(
        all.len(),
        expected.len(),
        "rows missed or duplicated across splits"
    );
    assert_eq!(
        all, expected,
        "every row, every cell, every version, in order"
    );
}

/// A table cut into fewer splits than there are scanners is asked again with a proportionally
/// smaller split size; one with enough splits, or too small to split, keeps its plan.
#[tokio::test]
async fn fewer_splits_than_scanners_are_asked_for_again_smaller() {
    let emu = emulator(PageLimits::default()).await;
    let c = client(&emu, RetryPolicy::none());
    load(&c, "t", 3000).await;
    let kib = |units| SplitSize {
        units,
        unit_bytes: 1024,
    };
    let fine = plan_splits(&c, "t", kib(64)).await.unwrap().splits.len() as i64;
    assert!(fine >= 8, "{fine} splits");
    // About two splits at this size.
    let coarse = kib(64 * fine / 2);
    let two = plan_splits(&c, "t", coarse).await.unwrap();
    assert!((2..4).contains(&two.splits.len()), "{}", two.splits.len());

    let for_eight = plan_splits_for(&c, "t", coarse, 8).await.unwrap();
    let finer = kib(coarse.units * two.splits.len() as i64 / 8);
    assert_eq!(for_eight, plan_splits(&c, "t", finer).await.unwrap());
    assert!(for_eight.splits.len() > two.splits.len());

    assert_eq!(plan_splits_for(&c, "t", coarse, 2).await.unwrap(), two);
    let whole = kib(64 * fine * 4);
    assert_eq!(
        plan_splits_for(&c, "t", whole, 8)
            .await
            .unwrap()
            .splits
            .len(),
        1
    );
}

/// In the emulator's wide-row mode nearly every row comes in parts of 3 cells (continued with
/// `next_token`); the scanner hands every row out whole, every cell and version exactly once.
#[tokio::test]
async fn rows_sent_in_parts_are_read_whole() {
    let emu = emulator(PageLimits {
        max_rows: 50,
        max_bytes: 4 << 20,
        wide_row_cells: Some(3),
    })
    .await;
    let c = client(&emu, RetryPolicy::none());
    let (_, expected) = load(&c, "t", 600).await;
    assert!(expected.iter().filter(|r| r.cells.len() > 6).count() > 100);
    let size = SplitSize {
        units: 16,
        unit_bytes: 1024,
    };
    let per_split = scan_all(&c, "t", size, ScanOptions::up_to(i64::MAX - 1)).await;
    assert!(per_split.len() >= 2, "only {} splits", per_split.len());
    let all: Vec<Row> = per_split.into_iter().flatten().collect();
    assert_eq!(all.len(), expected.len());
    assert_eq!(all, expected);
}

#[tokio::test]
async fn empty_pages_with_a_next_key_are_followed() {
    let emu = emulator(PageLimits {
        max_rows: 10,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    })
    .await;
    let c = client(&emu, RetryPolicy::none());
    let (_, expected) = load(&c, "t", 1000).await;
    // Only ~10% of rows have `coupon`: most 10-row pages come back empty but with a next key.
    let options = ScanOptions {
        columns: vec!["coupon".into()],
        ..ScanOptions::up_to(i64::MAX - 1)
    };
    let before = c.stats().requests;
    let split = plan_splits(&c, "t", SplitSize::default())
        .await
        .unwrap()
        .splits;
    assert_eq!(split.len(), 1);
    let mut s = SplitScanner::new(c.clone(), "t", split[0].clone(), options).unwrap();
    let mut got = Vec::new();
    let mut pages = 0;
    while let Some(page) = s.next_page().await.unwrap() {
        pages += 1;
        page.for_each_row::<ots_scan::ScanError>(|r| {
            got.push(r.to_row());
            Ok(())
        })
        .unwrap();
    }
    let want: Vec<Row> = expected
        .iter()
        .filter_map(|r| {
            let cells: Vec<_> = r
                .cells
                .iter()
                .filter(|c| c.name == "coupon")
                .cloned()
                .collect();
            (!cells.is_empty()).then(|| Row {
                primary_key: r.primary_key.clone(),
                cells,
            })
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let requests = c.stats().requests - before - 1; // minus the plan's request
    assert!(
        requests >= 100,
        "1000 rows at 10 rows per page need ≥ 100 pages, made {requests}"
    );
    assert!(
        pages < requests,
        "empty pages were returned instead of followed"
    );
}

#[tokio::test]
async fn injected_throttling_and_server_errors_are_retried_with_an_exact_result() {
    let emu = emulator(PageLimits {
        max_rows: 50,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    })
    .await;
    let c = client(&emu, fast_retry());
    let (_, expected) = load(&c, "t", 1200).await;
    emu.set_faults(FaultConfig {
        throttle_rate: 0.25,
        server_error_rate: 0.15,
        seed: Some(7),
        ..FaultConfig::default()
    })
    .unwrap();
    let size = SplitSize {
        units: 32,
        unit_bytes: 1024,
    };
    let all: Vec<Row> = scan_all(&c, "t", size, ScanOptions::up_to(i64::MAX - 1))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all, expected);
    let stats = emu.stats();
    assert!(
        stats.injected_throttles > 0 && stats.injected_server_errors > 0,
        "{stats:?}"
    );
    assert!(c.stats().retries >= stats.injected_throttles + stats.injected_server_errors);
}

#[tokio::test]
async fn a_slow_consumer_holds_the_scan_back() {
    let emu = emulator(PageLimits {
        max_rows: 20,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    })
    .await;
    let c = client(&emu, RetryPolicy::none());
    load(&c, "t", 400).await;
    let split = plan_splits(&c, "t", SplitSize::default())
        .await
        .unwrap()
        .splits;
    let mut s = SplitScanner::new(
        c.clone(),
        "t",
        split[0].clone(),
        ScanOptions::up_to(i64::MAX - 1),
    )
    .unwrap();
    let before = emu.stats().requests;
    for consumed in 1..=5u64 {
        let page = s.next_page().await.unwrap().unwrap();
        let mut first = None;
        page.for_each_row::<ots_scan::ScanError>(|row| {
            first.get_or_insert_with(|| row.primary_key[1].value.to_owned());
            Ok(())
        })
        .unwrap();
        assert!(matches!(first, Some(PkValue::Integer(_))));
        // The consumer is slow; the scanner must not fetch ahead while it waits.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let requested = emu.stats().requests - before;
        assert_eq!(requested, consumed, "pages fetched ahead of the consumer");
    }
    // At most one page is held at a time: memory is bounded by concurrency × page size.
    assert_eq!(
        s.counters()
            .pages
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
}
