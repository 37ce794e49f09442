//! ComputeSplitPointsBySize.

use ots_wire::plainbuffer::decode_primary_key;

use super::*;

fn split_req(table: &str, size: i64, unit: Option<i64>) -> pb::ComputeSplitPointsBySizeRequest {
    pb::ComputeSplitPointsBySizeRequest {
        table_name: table.into(),
        split_size: size,
        split_size_unit_in_byte: unit,
        split_point_limit: None,
    }
}

#[tokio::test]
async fn split_points_partition_the_table() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "s", 1).await;
    // ~1 KB per row, 300 rows: with 16 KiB splits about 18 points.
    let rows: Vec<Row> = (0..300)
        .map(|i| Row {
            primary_key: key(&format!("p{:02}", i % 7), i),
            cells: vec![cell("pad", Value::Binary(vec![7; 1000]))],
        })
        .collect();
    bulk_put(c, "s", &rows).await;
    let resp = c
        .compute_split_points_by_size(&split_req("s", 16, Some(1024)))
        .await
        .unwrap();
    let schema: Vec<&str> = resp.schema.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(schema, vec!["pk1", "pk2"]);
    let points: Vec<Vec<PkColumn>> = resp
        .split_points
        .iter()
        .map(|p| decode_primary_key(p).unwrap().unwrap())
        .collect();
    assert!((10..=30).contains(&points.len()), "{} points", points.len());
    let repeats: i64 = resp.locations.iter().map(|l| l.repeat).sum();
    assert_eq!(repeats, points.len() as i64 + 1);
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));

    // Scanning [MIN, p1), [p1, p2), …, [pn, MAX) returns every row exactly once, in order.
    let mut bounds = vec![inf_key(true)];
    bounds.extend(points.iter().cloned());
    bounds.push(inf_key(false));
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    for w in bounds.windows(2) {
        let mut req = range_req("s", pb::Direction::Forward, &w[0], &w[1], None);
        let mut n = 0;
        loop {
            let resp = c.get_range(&req).await.unwrap();
            let page = page_rows(&resp);
            n += page.len();
            all.extend(page.into_iter().map(|r| r.primary_key));
            match resp.next_start_primary_key {
                Some(k) => req.inclusive_start_primary_key = k,
                None => break,
            }
        }
        sizes.push(n);
    }
    let mut expect: Vec<Vec<PkColumn>> = rows.iter().map(|r| r.primary_key.clone()).collect();
    expect.sort_by(|a, b| {
        let k = |r: &Vec<PkColumn>| match (&r[0].value, &r[1].value) {
            (PkValue::String(s), PkValue::Integer(i)) => (s.clone(), *i),
            _ => unreachable!(),
        };
        k(a).cmp(&k(b))
    });
    assert_eq!(all, expect);
    // Splits are of similar size (~16 rows), none empty.
    assert!(sizes.iter().all(|&n| (1..=20).contains(&n)), "{sizes:?}");

    // split_point_limit caps the count and keeps the order.
    let mut req = split_req("s", 16, Some(1024));
    req.split_point_limit = Some(3);
    let limited = c.compute_split_points_by_size(&req).await.unwrap();
    assert_eq!(limited.split_points.len(), 3);
    let lp: Vec<Vec<PkColumn>> = limited
        .split_points
        .iter()
        .map(|p| decode_primary_key(p).unwrap().unwrap())
        .collect();
    assert!(lp.iter().all(|p| points.contains(p)));
    assert!(
        lp.windows(2).all(
            |w| points.iter().position(|p| *p == w[0]) < points.iter().position(|p| *p == w[1])
        )
    );
}

#[tokio::test]
async fn default_unit_gives_one_split_for_a_small_table() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "s", 1).await;
    put(c, "s", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    let resp = c
        .compute_split_points_by_size(&split_req("s", 1, None))
        .await
        .unwrap();
    assert!(resp.split_points.is_empty());
    assert_eq!(resp.locations.len(), 1);
    assert_eq!(resp.locations[0].repeat, 1);
    assert_error(
        c.compute_split_points_by_size(&split_req("s", 0, None))
            .await,
        400,
        "OTSParameterInvalid",
        "Invalid split size: 0. It must be greater than 0.",
    );
    assert_error(
        c.compute_split_points_by_size(&split_req("nope", 1, None))
            .await,
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    );
}

/// The sizes split planning sums are kept per row as rows change: rows shrunk by UpdateRow stop
/// counting their old cells, rows made by UpdateRow count from their first cell.
#[tokio::test]
async fn split_points_follow_rows_changed_by_update() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "s", 1).await;
    let pad = |n: usize| cell("pad", Value::Binary(vec![7; n]));
    let rows: Vec<Row> = (0..300)
        .map(|i| Row {
            primary_key: key("p", i),
            cells: vec![pad(1000)],
        })
        .collect();
    bulk_put(c, "s", &rows).await;
    let points = |resp: pb::ComputeSplitPointsBySizeResponse| -> Vec<i64> {
        resp.split_points
            .iter()
            .map(
                |p| match &decode_primary_key(p).unwrap().unwrap()[1].value {
                    PkValue::Integer(i) => *i,
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    };
    let before = points(
        c.compute_split_points_by_size(&split_req("s", 16, Some(1024)))
            .await
            .unwrap(),
    );
    assert!(before.len() >= 15, "{before:?}");

    // The first half loses its padding; 150 new keys after the last get it through UpdateRow.
    for i in 0..150 {
        let drop_pad = [
            ColumnUpdate::DeleteAllVersions { name: "pad".into() },
            ColumnUpdate::Put {
                name: "v".into(),
                value: Value::Integer(i),
                timestamp: None,
            },
        ];
        update(
            c,
            "s",
            &key("p", i),
            &drop_pad,
            condition(pb::RowExistenceExpectation::Ignore),
            None,
        )
        .await
        .unwrap();
        let grow = [ColumnUpdate::Put {
            name: "pad".into(),
            value: Value::Binary(vec![7; 1000]),
            timestamp: None,
        }];
        update(
            c,
            "s",
            &key("p", 300 + i),
            &grow,
            condition(pb::RowExistenceExpectation::Ignore),
            None,
        )
        .await
        .unwrap();
    }
    let after = points(
        c.compute_split_points_by_size(&split_req("s", 16, Some(1024)))
            .await
            .unwrap(),
    );
    // About as many points as before, but none among the shrunk rows but the first (each of
    // those holds a few bytes: 150 of them fill no 16 KiB split).
    assert!(
        (before.len() - 3..=before.len() + 3).contains(&after.len()),
        "{after:?}"
    );
    assert!(after.iter().filter(|&&i| i < 150).count() <= 1, "{after:?}");
    assert!(after.iter().any(|&i| i > 300), "{after:?}");
}
