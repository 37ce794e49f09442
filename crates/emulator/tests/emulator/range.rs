//! GetRange: bounds, directions, limits, page caps, next keys, filters.

use ots_emulator::PageLimits;
use ots_wire::plainbuffer::{decode_primary_key, encode_bare_value};
use ots_wire::types::ValueRef;
use prost::Message;

use super::*;

/// 5 × 20 rows with a composite key; `v` = running index in key order.
fn grid() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut i = 0;
    for a in ["a", "b", "bb", "c", "d"] {
        for b in -10..10 {
            rows.push(Row {
                primary_key: key(a, b),
                cells: vec![
                    cell("v", Value::Integer(i)),
                    cell("s", Value::String(format!("{a}{b}"))),
                ],
            });
            i += 1;
        }
    }
    rows
}

/// Follows next_start_primary_key until it is absent; returns every row and the page count.
async fn scan_all(c: &OtsClient, mut req: pb::GetRangeRequest) -> (Vec<Row>, usize, usize) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut empty_pages = 0;
    loop {
        let resp = c.get_range(&req).await.expect("get range");
        pages += 1;
        let page = page_rows(&resp);
        if page.is_empty() {
            empty_pages += 1;
        }
        rows.extend(page);
        match resp.next_start_primary_key {
            Some(next) if !next.is_empty() => req.inclusive_start_primary_key = next,
            _ => break,
        }
        assert!(pages < 10_000, "runaway paging");
    }
    (rows, pages, empty_pages)
}

#[tokio::test]
async fn paging_is_exactly_once_both_directions() {
    let env = start_with(builder().page_limits(PageLimits {
        max_rows: 7,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    }))
    .await;
    let c = &env.client;
    create_two_pk_table(c, "g", 1).await;
    let all = grid();
    bulk_put(c, "g", &all).await;
    let expect: Vec<Vec<PkColumn>> = all.iter().map(|r| r.primary_key.clone()).collect();

    let (rows, pages, _) = scan_all(
        c,
        range_req(
            "g",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ),
    )
    .await;
    let got: Vec<Vec<PkColumn>> = rows.iter().map(|r| r.primary_key.clone()).collect();
    assert_eq!(got, expect);
    assert_eq!(pages, 100usize.div_ceil(7));

    let (rows, _, _) = scan_all(
        c,
        range_req(
            "g",
            pb::Direction::Backward,
            &inf_key(false),
            &inf_key(true),
            None,
        ),
    )
    .await;
    let got: Vec<Vec<PkColumn>> = rows.iter().map(|r| r.primary_key.clone()).collect();
    let mut rev = expect.clone();
    rev.reverse();
    assert_eq!(got, rev);

    // A limit smaller than the cap: pages of 3, still every row once.
    let (rows, pages, _) = scan_all(
        c,
        range_req(
            "g",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            Some(3),
        ),
    )
    .await;
    assert_eq!(rows.len(), 100);
    assert_eq!(pages, 34);

    // Mixed bounds: [("b", INF_MAX), ("c", 0)) holds bb*, then c -10..-1.
    let start = vec![
        PkColumn::new("pk1", PkValue::String("b".into())),
        PkColumn::new("pk2", PkValue::InfMax),
    ];
    let (rows, _, _) = scan_all(
        c,
        range_req("g", pb::Direction::Forward, &start, &key("c", 0), None),
    )
    .await;
    assert_eq!(rows.len(), 30);
    assert_eq!(rows[0].primary_key, key("bb", -10));
    assert_eq!(rows[29].primary_key, key("c", -1));
    // BACKWARD over (("a", 5), ("b", -8)]: from b,-8 down to a,6.
    let (rows, _, _) = scan_all(
        c,
        range_req(
            "g",
            pb::Direction::Backward,
            &key("b", -8),
            &key("a", 5),
            None,
        ),
    )
    .await;
    let got: Vec<Vec<PkColumn>> = rows.iter().map(|r| r.primary_key.clone()).collect();
    let mut want: Vec<Vec<PkColumn>> = (6..10).map(|b| key("a", b)).collect();
    want.extend((-10..=-8).map(|b| key("b", b)));
    want.reverse();
    assert_eq!(got, want);
}

#[tokio::test]
async fn next_key_semantics_with_limit_and_default_cap() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "big", 1).await;
    let rows: Vec<Row> = (0..5003)
        .map(|i| Row {
            primary_key: key("p", i),
            cells: vec![cell("v", Value::Integer(i))],
        })
        .collect();
    bulk_put(c, "big", &rows).await;
    let req = range_req(
        "big",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    );
    let resp = c.get_range(&req).await.unwrap();
    assert_eq!(page_rows(&resp).len(), 5000);
    let next = decode_primary_key(resp.next_start_primary_key.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(next, key("p", 5000));
    // Exactly `limit` rows left: no next key.
    let mut req2 = req.clone();
    req2.inclusive_start_primary_key = encode_primary_key(&key("p", 5000)).into();
    req2.limit = Some(3);
    let resp = c.get_range(&req2).await.unwrap();
    assert_eq!(page_rows(&resp).len(), 3);
    assert!(resp.next_start_primary_key.is_none());
    // Limit reached with rows left: next key is the first unread row.
    req2.limit = Some(2);
    let resp = c.get_range(&req2).await.unwrap();
    let next = decode_primary_key(resp.next_start_primary_key.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(next, key("p", 5002));
    // An empty range: no rows (zero-length bytes), no next key, 1 read CU.
    let resp = c
        .get_range(&range_req(
            "big",
            pb::Direction::Forward,
            &key("q", 0),
            &inf_key(false),
            None,
        ))
        .await
        .unwrap();
    assert!(resp.rows.is_empty());
    assert!(resp.next_start_primary_key.is_none());
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));
    assert_eq!(resp.consumed.capacity_unit.write, Some(0));
}

#[tokio::test]
async fn filter_can_yield_empty_pages_with_a_next_key() {
    let env = start_with(builder().page_limits(PageLimits {
        max_rows: 10,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    }))
    .await;
    let c = &env.client;
    create_two_pk_table(c, "g", 1).await;
    bulk_put(c, "g", &grid()).await;
    let filter = |cmp: pb::ComparatorType, v: i64| -> Vec<u8> {
        pb::Filter {
            r#type: pb::FilterType::FtSingleColumnValue as i32,
            filter: pb::SingleColumnValueFilter {
                comparator: cmp as i32,
                column_name: "v".into(),
                column_value: encode_bare_value(ValueRef::Integer(v)).into(),
                filter_if_missing: true,
                latest_version_only: true,
                value_trans_rule: None,
            }
            .encode_to_vec()
            .into(),
        }
        .encode_to_vec()
    };
    let mut req = range_req(
        "g",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    );
    req.filter = Some(filter(pb::ComparatorType::CtEqual, 95).into());
    // The first page scans 10 rows, returns none, and says where to go on.
    let first = c.get_range(&req).await.unwrap();
    assert!(first.rows.is_empty());
    let next = decode_primary_key(first.next_start_primary_key.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(next, key("a", 0));
    let (rows, pages, empty) = scan_all(c, req.clone()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].primary_key, key("d", 5));
    assert_eq!(pages, 10);
    assert_eq!(empty, 9);

    // Composite: v < 3 OR v >= 98.
    let or = pb::Filter {
        r#type: pb::FilterType::FtCompositeColumnValue as i32,
        filter: pb::CompositeColumnValueFilter {
            combinator: pb::LogicalOperator::LoOr as i32,
            sub_filters: vec![
                pb::Filter::decode(&filter(pb::ComparatorType::CtLessThan, 3)[..]).unwrap(),
                pb::Filter::decode(&filter(pb::ComparatorType::CtGreaterEqual, 98)[..]).unwrap(),
            ],
        }
        .encode_to_vec()
        .into(),
    };
    req.filter = Some(or.encode_to_vec().into());
    let (rows, _, _) = scan_all(c, req.clone()).await;
    let vs: Vec<Value> = rows.iter().map(|r| r.cells[1].value.clone()).collect();
    assert_eq!(
        vs,
        [0, 1, 2, 98, 99].map(Value::Integer).to_vec(),
        "cells sorted by name: s then v"
    );

    // columns_to_get naming a column no row has: every page empty, paging still terminates.
    let mut req = range_req(
        "g",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    );
    req.columns_to_get = vec!["nothing".into()];
    let (rows, pages, _) = scan_all(c, req).await;
    assert!(rows.is_empty());
    assert_eq!(pages, 10);
}

#[tokio::test]
async fn byte_cap_splits_pages() {
    let env = start_with(builder().page_limits(PageLimits {
        max_rows: 5000,
        max_bytes: 2000,
        ..PageLimits::default()
    }))
    .await;
    let c = &env.client;
    create_two_pk_table(c, "w", 1).await;
    let rows: Vec<Row> = (0..40)
        .map(|i| Row {
            primary_key: key("k", i),
            cells: vec![cell("blob", Value::Binary(vec![i as u8; 450]))],
        })
        .collect();
    bulk_put(c, "w", &rows).await;
    let req = range_req(
        "w",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    );
    let first = c.get_range(&req).await.unwrap();
    let n = page_rows(&first).len();
    assert!((2..=5).contains(&n), "{n} rows in a 2000-byte page");
    let (all, pages, _) = scan_all(c, req).await;
    assert_eq!(all.len(), 40);
    assert!(pages >= 8);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.cells[0].value, Value::Binary(vec![i as u8; 450]));
    }
}

#[tokio::test]
async fn range_read_versions_and_projection() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "m", 3).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..3 {
        put(
            c,
            "m",
            key("r", i),
            vec![
                Cell::new("a", Value::Integer(1), Some(now - 100)),
                Cell::new("a", Value::Integer(2), Some(now - 50)),
                Cell::new("b", Value::Boolean(true), Some(now - 10)),
            ],
        )
        .await;
    }
    let mut req = range_req(
        "m",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    );
    req.max_versions = Some(2);
    req.columns_to_get = vec!["a".into()];
    let resp = c.get_range(&req).await.unwrap();
    let rows = page_rows(&resp);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let got: Vec<(Value, i64)> = r
            .cells
            .iter()
            .map(|c| (c.value.clone(), c.timestamp.unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Value::Integer(2), now - 50),
                (Value::Integer(1), now - 100)
            ]
        );
    }
    // Time range excluding every version of `a`: rows without returned cells are omitted.
    req.max_versions = None;
    req.time_range = Some(pb::TimeRange {
        start_time: Some(now - 20),
        end_time: Some(now + 1000),
        specific_time: None,
    });
    let resp = c.get_range(&req).await.unwrap();
    assert!(resp.rows.is_empty());
    req.columns_to_get.clear();
    let rows = page_rows(&c.get_range(&req).await.unwrap());
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.cells.len() == 1 && r.cells[0].name == "b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_scanners() {
    let env = start_with(builder().page_limits(PageLimits {
        max_rows: 97,
        max_bytes: 4 << 20,
        ..PageLimits::default()
    }))
    .await;
    create_two_pk_table(&env.client, "c", 1).await;
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let c = env.client.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..5i64 {
                let rows: Vec<Row> = (0..100)
                    .map(|i| Row {
                        primary_key: key(&format!("w{w}"), batch * 100 + i),
                        cells: vec![cell("v", Value::Integer(i))],
                    })
                    .collect();
                bulk_put(&c, "c", &rows).await;
            }
        }));
    }
    for _ in 0..4 {
        let c = env.client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let (rows, _, _) = scan_all(
                    &c,
                    range_req(
                        "c",
                        pb::Direction::Forward,
                        &inf_key(true),
                        &inf_key(false),
                        None,
                    ),
                )
                .await;
                // Every scan sees keys strictly increasing, whatever is being written meanwhile.
                let keys: Vec<(String, i64)> = rows
                    .iter()
                    .map(
                        |r| match (&r.primary_key[0].value, &r.primary_key[1].value) {
                            (PkValue::String(s), PkValue::Integer(i)) => (s.clone(), *i),
                            _ => unreachable!(),
                        },
                    )
                    .collect();
                assert!(keys.windows(2).all(|w| w[0] < w[1]));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (rows, _, _) = scan_all(
        &env.client,
        range_req(
            "c",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ),
    )
    .await;
    assert_eq!(rows.len(), 8 * 500);
}

#[tokio::test]
async fn a_page_always_holds_at_least_one_row() {
    let env = start_with(builder().page_limits(PageLimits {
        max_rows: 5000,
        max_bytes: 0,
        ..PageLimits::default()
    }))
    .await;
    let c = &env.client;
    create_two_pk_table(c, "one", 1).await;
    let rows: Vec<Row> = (0..5)
        .map(|i| Row {
            primary_key: key("k", i),
            cells: vec![cell("v", Value::Integer(i))],
        })
        .collect();
    bulk_put(c, "one", &rows).await;
    let (all, pages, empty) = scan_all(
        c,
        range_req(
            "one",
            pb::Direction::Backward,
            &inf_key(false),
            &inf_key(true),
            None,
        ),
    )
    .await;
    assert_eq!((all.len(), pages, empty), (5, 5, 0));
    assert_eq!(all[0].primary_key, key("k", 4));
}
