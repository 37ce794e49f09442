//! The scanner against a fake service that misbehaves: a next start key that does not advance, rows
//! out of order, rows or keys past the split end. Each is a typed `ScanError::Protocol` naming the
//! split, from `next_page` (what the response says about the scan) or from reading the page (what
//! its rows break); none ever ends the split early with `Ok(None)`.

mod support;

use std::time::Duration;

use ots_scan::{Page, ScanError, ScanOptions, SplitScanner, spawn_prefetch};
use ots_wire::types::PkValueRef;
use support::{FakeOts, key, page, split};

fn options() -> ScanOptions {
    ScanOptions::up_to(1_000_000)
}

/// The page's row ids, or the error reading it gave.
fn read(page: &Page) -> Result<Vec<i64>, ScanError> {
    let mut out = Vec::new();
    page.for_each_row::<ScanError>(|r| {
        if let PkValueRef::Integer(i) = r.primary_key[0].value {
            out.push(i);
        }
        Ok(())
    })?;
    Ok(out)
}

fn ids(page: &Page) -> Vec<i64> {
    read(page).unwrap()
}

/// Calls `next_page` and reads each page until the first error, which it returns with the rows of
/// the pages read whole before it; `Ok(None)` before an error fails the test.
async fn first_error(s: &mut SplitScanner) -> (Vec<i64>, ScanError) {
    let mut rows = Vec::new();
    loop {
        match s.next_page().await {
            Ok(Some(p)) => match read(&p) {
                Ok(ids) => rows.extend(ids),
                Err(e) => return (rows, e),
            },
            Ok(None) => panic!("the split ended early after rows {rows:?}"),
            Err(e) => return (rows, e),
        }
    }
}

fn assert_protocol(e: &ScanError, split: u32, what: &str) {
    match e {
        ScanError::Protocol { split: s, detail } => {
            assert_eq!(*s, split, "{e}");
            assert!(detail.contains(what), "{e} does not say {what:?}");
            assert!(e.to_string().contains(&format!("split {split}")), "{e}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_well_behaved_service_is_read_to_its_explicit_end() {
    let fake = FakeOts::start(vec![
        page(&[1, 2], Some(3)),
        page(&[], Some(5)),
        page(&[6, 8], Some(9)),
        page(&[9], None),
    ])
    .await;
    let mut s = SplitScanner::new(fake.client(), "t", split(1, None, None), options()).unwrap();
    let mut rows = Vec::new();
    while let Some(p) = s.next_page().await.unwrap() {
        rows.extend(ids(&p));
    }
    assert_eq!(rows, [1, 2, 6, 8, 9]);
    let starts: Vec<_> = fake
        .received()
        .iter()
        .map(|r| r.request.inclusive_start_primary_key.clone())
        .collect();
    assert_eq!(starts[1..], [key(3), key(5), key(9)]);
}

#[tokio::test]
async fn a_next_key_that_does_not_advance_is_a_protocol_error_not_an_end() {
    // Past the page's last row? No: the next key repeats it. Reading the page finds that out.
    let fake = FakeOts::start(vec![page(&[1, 2], Some(3)), page(&[3, 4], Some(4))]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(2, None, None), options()).unwrap();
    let (rows, e) = first_error(&mut s).await;
    assert_eq!(rows, [1, 2]);
    assert_protocol(&e, 2, "next start key that does not advance");
    assert_protocol(&e, 2, "row 1");

    // A next key that is not after the request's start: `next_page` refuses the response itself.
    let fake = FakeOts::start(vec![page(&[1, 2], Some(3)), page(&[], Some(3))]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(2, None, None), options()).unwrap();
    assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), [1, 2]);
    assert_protocol(&s.next_page().await.unwrap_err(), 2, "does not advance");
    // Calling again repeats the same request (here the fake has nothing left: an error), and is
    // still not the end.
    assert!(matches!(s.next_page().await, Err(ScanError::Ots(_))));
    let starts: Vec<_> = fake
        .received()
        .iter()
        .map(|r| r.request.inclusive_start_primary_key.clone())
        .collect();
    assert_eq!(starts[1..], [key(3), key(3)]);

    // An empty page whose next key is the request's own start would loop forever.
    let fake = FakeOts::start(vec![page(&[], Some(5))]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(3, Some(5), None), options()).unwrap();
    let (rows, e) = first_error(&mut s).await;
    assert!(rows.is_empty());
    assert_protocol(&e, 3, "does not advance");
    assert_protocol(&e, 3, "the request's start");

    // A next key that goes backwards after an empty page.
    let fake = FakeOts::start(vec![page(&[], Some(7)), page(&[], Some(6))]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(4, Some(5), None), options()).unwrap();
    let (_, e) = first_error(&mut s).await;
    assert_protocol(&e, 4, "does not advance");
}

#[tokio::test]
async fn a_row_out_of_order_is_a_protocol_error_not_an_end() {
    let fake = FakeOts::start(vec![page(&[1, 3, 2], Some(4))]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(5, None, None), options()).unwrap();
    let (rows, e) = first_error(&mut s).await;
    assert!(
        rows.is_empty(),
        "a page with rows out of order was read whole"
    );
    assert_protocol(&e, 5, "rows out of order");

    // A repeated row inside a page.
    let fake = FakeOts::start(vec![page(&[1, 2, 2], None)]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(5, None, None), options()).unwrap();
    let (_, e) = first_error(&mut s).await;
    assert_protocol(&e, 5, "rows out of order");

    // The next page starts again at the previous page's last row: before the request's start.
    let fake = FakeOts::start(vec![page(&[1, 2], Some(3)), page(&[2, 3], None)]).await;
    let mut s = SplitScanner::new(fake.client(), "t", split(6, None, None), options()).unwrap();
    let (rows, e) = first_error(&mut s).await;
    assert_eq!(rows, [1, 2]);
    assert_protocol(&e, 6, "before the request's start");
}

#[tokio::test]
async fn rows_and_next_keys_at_or_past_the_split_end_are_protocol_errors() {
    // Split [0, 10): row 10 belongs to the next split.
    let fake = FakeOts::start(vec![page(&[5, 10], None)]).await;
    let mut s =
        SplitScanner::new(fake.client(), "t", split(7, Some(0), Some(10)), options()).unwrap();
    let (rows, e) = first_error(&mut s).await;
    assert!(rows.is_empty());
    assert_protocol(&e, 7, "not before the split's end");

    let fake = FakeOts::start(vec![page(&[5], Some(12))]).await;
    let mut s =
        SplitScanner::new(fake.client(), "t", split(8, Some(0), Some(10)), options()).unwrap();
    let (_, e) = first_error(&mut s).await;
    assert_protocol(&e, 8, "not before the split's end");

    // A row before the split start.
    let fake = FakeOts::start(vec![page(&[-1, 3], None)]).await;
    let mut s =
        SplitScanner::new(fake.client(), "t", split(9, Some(0), Some(10)), options()).unwrap();
    let (_, e) = first_error(&mut s).await;
    assert_protocol(&e, 9, "before the request's start");
}

#[tokio::test]
async fn a_prefetched_scan_passes_protocol_errors_on_and_never_ends_early() {
    let fake = FakeOts::start(vec![page(&[1, 2], Some(3)), page(&[4, 3], None)]).await;
    let s = SplitScanner::new(fake.client(), "t", split(10, None, None), options()).unwrap();
    let mut p = spawn_prefetch(s, 2);
    assert_eq!(p.split_id(), 10);
    assert_eq!(ids(&p.next().await.unwrap().unwrap()), [1, 2]);
    assert_protocol(
        &read(&p.next().await.unwrap().unwrap()).unwrap_err(),
        10,
        "rows out of order",
    );

    // An error of the scanner itself is passed on; the fetcher stops at it, and that is reported
    // again, never as the end.
    let fake = FakeOts::start(vec![page(&[1, 2], Some(3)), page(&[4], Some(3))]).await;
    let s = SplitScanner::new(fake.client(), "t", split(10, None, None), options()).unwrap();
    let mut p = spawn_prefetch(s, 2);
    assert_eq!(ids(&p.next().await.unwrap().unwrap()), [1, 2]);
    assert_protocol(&p.next().await.unwrap_err(), 10, "does not advance");
    for _ in 0..3 {
        assert!(matches!(
            p.next().await,
            Err(ScanError::FetcherDied { split: 10, .. })
        ));
    }

    // A clean scan through the prefetch ends with Ok(None), and stays ended.
    let fake = FakeOts::start(vec![page(&[1], Some(2)), page(&[2, 3], None)]).await;
    let s = SplitScanner::new(fake.client(), "t", split(11, None, None), options()).unwrap();
    let mut p = spawn_prefetch(s, 1);
    assert_eq!(ids(&p.next().await.unwrap().unwrap()), [1]);
    assert_eq!(ids(&p.next().await.unwrap().unwrap()), [2, 3]);
    assert!(p.next().await.unwrap().is_none());
    assert!(p.next().await.unwrap().is_none());
}

/// In real time (the exact schedule is tested on paused time in the unit tests): the first empty
/// pages are followed at once, then the scanner pauses 50 ms, then 100 ms.
#[tokio::test]
async fn runs_of_empty_pages_from_the_service_are_followed_with_a_pause() {
    let fake = FakeOts::start(vec![
        page(&[], Some(1)),
        page(&[], Some(2)),
        page(&[], Some(3)),
        page(&[], Some(4)),
        page(&[], Some(5)),
        page(&[5], None),
    ])
    .await;
    let mut s = SplitScanner::new(fake.client(), "t", split(12, None, None), options()).unwrap();
    assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), [5]);
    assert!(s.next_page().await.unwrap().is_none());
    let at: Vec<_> = fake.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 6);
    let gap = |i: usize| at[i].duration_since(at[i - 1]);
    assert!(gap(3) >= Duration::from_millis(50), "{:?}", gap(3));
    assert!(gap(4) >= Duration::from_millis(100), "{:?}", gap(4));
    assert!(gap(5) >= Duration::from_millis(200), "{:?}", gap(5));
}
