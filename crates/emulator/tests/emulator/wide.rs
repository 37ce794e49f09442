//! GetRange over wide rows: the default answers whole rows; the opt-in wide-row mode answers a row
//! with more cells than its threshold in parts, continued with `next_token`.

use ots_emulator::PageLimits;
use ots_wire::plainbuffer::decode_primary_key;

use super::*;

const PART: usize = 10;

/// A timestamp (ms) within the table's allowed version deviation.
fn ts(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - 60_000 + offset
}

/// `w(pk1, pk2)`, 5 versions: ("a",1) 3 cells; ("a",2) 5 columns × 5 versions = 25 cells, each
/// version with its own timestamp and type; ("a",3) exactly PART cells; ("a",4) 1 cell.
async fn wide_table(limits: PageLimits) -> Env {
    let env = start_with(builder().page_limits(limits)).await;
    let c = &env.client;
    create_two_pk_table(c, "w", 5).await;
    let cells = |n: usize| -> Vec<Cell> {
        (0..n)
            .map(|i| Cell::new(format!("c{i:02}"), Value::Integer(i as i64), Some(ts(0))))
            .collect()
    };
    put(c, "w", key("a", 1), cells(3)).await;
    put(c, "w", key("a", 3), cells(PART)).await;
    put(c, "w", key("a", 4), cells(1)).await;
    for version in 0..5i64 {
        let cells = (0..5)
            .map(|col| {
                let v = match col % 3 {
                    0 => Value::String(format!("s{col}.{version}")),
                    1 => Value::Double(col as f64 + version as f64 / 10.0),
                    _ => Value::Binary(vec![col as u8; version as usize]),
                };
                Cell::new(format!("col{col}"), v, Some(ts(1 + version)))
            })
            .collect();
        put_or_update(c, version, cells).await;
    }
    env
}

/// The first version puts the row; the others add versions with UpdateRow.
async fn put_or_update(c: &OtsClient, version: i64, cells: Vec<Cell>) {
    if version == 0 {
        put(c, "w", key("a", 2), cells).await;
        return;
    }
    let updates: Vec<ColumnUpdate> = cells
        .into_iter()
        .map(|c| ColumnUpdate::Put {
            name: c.name,
            value: c.value,
            timestamp: c.timestamp,
        })
        .collect();
    update(
        c,
        "w",
        &key("a", 2),
        &updates,
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .expect("update");
}

fn all_versions(mut req: pb::GetRangeRequest) -> pb::GetRangeRequest {
    req.max_versions = Some(5);
    req
}

/// One response: its rows, its next start key and whether it carried a token.
type Part = (Vec<Row>, Option<Vec<PkColumn>>, bool);

/// A response as (row key, cell count) per row, its next key and whether it carried a token.
type Shape = (Vec<(Vec<PkColumn>, usize)>, Option<Vec<PkColumn>>, bool);

/// Follows next keys and tokens to the end; every response.
async fn scan_parts(c: &OtsClient, mut req: pb::GetRangeRequest) -> Vec<Part> {
    let mut out = Vec::new();
    loop {
        let resp = c.get_range(&req).await.expect("get range");
        let next = resp
            .next_start_primary_key
            .as_ref()
            .filter(|k| !k.is_empty())
            .map(|k| decode_primary_key(k).expect("key").expect("a key"));
        let token = resp.next_token.clone().filter(|t| !t.is_empty());
        out.push((page_rows(&resp), next, token.is_some()));
        match resp.next_start_primary_key {
            Some(k) if !k.is_empty() => {
                req.inclusive_start_primary_key = k;
                req.token = token;
            }
            _ => break,
        }
        assert!(out.len() < 100, "runaway paging");
    }
    out
}

/// Every version of a row by GetRow.
async fn whole_row(c: &OtsClient, pk: &[PkColumn]) -> Row {
    let resp = c
        .get_row(&get_req("w", pk, Some(5)))
        .await
        .expect("get row");
    decode_single_row(&resp.row).unwrap().unwrap().to_row()
}

#[tokio::test]
async fn wide_rows_come_in_parts_continued_by_token_in_both_directions() {
    let env = wide_table(PageLimits {
        wide_row_cells: Some(PART),
        ..PageLimits::default()
    })
    .await;
    let c = &env.client;
    let wide = whole_row(c, &key("a", 2)).await;
    assert_eq!(wide.cells.len(), 25);

    let parts = scan_parts(
        c,
        all_versions(range_req(
            "w",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        )),
    )
    .await;
    let shape: Vec<Shape> = parts
        .iter()
        .map(|(rows, next, token)| {
            (
                rows.iter()
                    .map(|r| (r.primary_key.clone(), r.cells.len()))
                    .collect(),
                next.clone(),
                *token,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            // The wide row's first part ends the page; the next key is its own key.
            (
                vec![(key("a", 1), 3), (key("a", 2), PART)],
                Some(key("a", 2)),
                true
            ),
            (vec![(key("a", 2), PART)], Some(key("a", 2)), true),
            // The rest of it, then the following rows as usual (a row of exactly PART is whole).
            (
                vec![(key("a", 2), 5), (key("a", 3), PART), (key("a", 4), 1)],
                None,
                false
            ),
        ]
    );
    // The parts are the row's cells in order: every version, timestamp and type.
    let merged: Vec<Cell> = parts
        .iter()
        .flat_map(|(rows, _, _)| rows.iter())
        .filter(|r| r.primary_key == key("a", 2))
        .flat_map(|r| r.cells.clone())
        .collect();
    assert_eq!(merged, wide.cells);

    // Backward: the same parts, rows in reverse order.
    let parts = scan_parts(
        c,
        all_versions(range_req(
            "w",
            pb::Direction::Backward,
            &inf_key(false),
            &inf_key(true),
            None,
        )),
    )
    .await;
    let counts: Vec<Vec<usize>> = parts
        .iter()
        .map(|(rows, _, _)| rows.iter().map(|r| r.cells.len()).collect())
        .collect();
    assert_eq!(counts, vec![vec![1, PART, PART], vec![PART], vec![5, 3]]);
    let merged: Vec<Cell> = parts
        .iter()
        .flat_map(|(rows, _, _)| rows.iter())
        .filter(|r| r.primary_key == key("a", 2))
        .flat_map(|r| r.cells.clone())
        .collect();
    assert_eq!(merged, wide.cells);

    // With the latest version only the row has 5 cells: whole, no token.
    let parts = scan_parts(
        c,
        range_req(
            "w",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ),
    )
    .await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0.len(), 4);
    assert!(!parts[0].2);

    // Primary keys only: every row, no cells, no token.
    let mut pk_only = all_versions(range_req(
        "w",
        pb::Direction::Forward,
        &inf_key(true),
        &inf_key(false),
        None,
    ));
    pk_only.columns_to_get = vec!["pk1".into()];
    let parts = scan_parts(c, pk_only).await;
    assert_eq!(parts.len(), 1);
    let keys: Vec<(Vec<PkColumn>, usize)> = parts[0]
        .0
        .iter()
        .map(|r| (r.primary_key.clone(), r.cells.len()))
        .collect();
    assert_eq!(keys, (1..=4).map(|i| (key("a", i), 0)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_token_continues_only_the_row_it_was_issued_for() {
    let env = wide_table(PageLimits {
        wide_row_cells: Some(PART),
        ..PageLimits::default()
    })
    .await;
    let c = &env.client;
    let mut req = all_versions(range_req(
        "w",
        pb::Direction::Forward,
        &key("a", 2),
        &inf_key(false),
        Some(1),
    ));
    let first = c.get_range(&req).await.unwrap();
    let token = first.next_token.clone().expect("a token");
    assert_eq!(page_rows(&first)[0].cells.len(), PART);
    assert_eq!(
        first.next_start_primary_key.as_deref(),
        Some(&req.inclusive_start_primary_key[..])
    );

    // The same token again continues from the same place (a retried request is repeatable).
    req.token = Some(token.clone());
    let second = c.get_range(&req).await.unwrap();
    let again = c.get_range(&req).await.unwrap();
    assert_eq!(second.rows, again.rows);
    assert_eq!(page_rows(&second)[0].primary_key, key("a", 2));

    let invalid = |r| assert_error(r, 400, "OTSParameterInvalid", "The token is invalid.");
    // A token with another start key.
    let mut other = req.clone();
    other.inclusive_start_primary_key = encode_primary_key(&key("a", 3)).into();
    invalid(c.get_range(&other).await);
    // Garbage, a truncated token and a token with offset 0.
    for bad in [
        b"garbage".to_vec(),
        token[..token.len() - 1].to_vec(),
        [&token[..8], &[0u8; 8][..], &token[16..]].concat(),
    ] {
        let mut r = req.clone();
        r.token = Some(bad.into());
        invalid(c.get_range(&r).await);
    }
    // GetRow never issues tokens, so it accepts none.
    let mut g = get_req("w", &key("a", 2), Some(5));
    g.token = Some(token.clone());
    assert_error(
        c.get_row(&g).await,
        400,
        "OTSParameterInvalid",
        "The token is invalid.",
    );
}

#[tokio::test]
async fn by_default_a_wide_row_is_whole_and_no_token_is_valid() {
    let env = wide_table(PageLimits {
        max_bytes: 0,
        ..PageLimits::default()
    })
    .await;
    let c = &env.client;
    let parts = scan_parts(
        c,
        all_versions(range_req(
            "w",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        )),
    )
    .await;
    let counts: Vec<Vec<usize>> = parts
        .iter()
        .map(|(rows, _, _)| rows.iter().map(|r| r.cells.len()).collect())
        .collect();
    // One whole row per page (the byte budget is 0, but a page holds at least one row).
    assert_eq!(counts, vec![vec![3], vec![25], vec![PART], vec![1]]);
    assert!(parts.iter().all(|(_, _, token)| !token));

    // A token the wide-row mode issued (for the same table, data and start key) is not valid here.
    let mut req = all_versions(range_req(
        "w",
        pb::Direction::Forward,
        &key("a", 2),
        &inf_key(false),
        None,
    ));
    let issued = {
        let e = wide_table(PageLimits {
            wide_row_cells: Some(PART),
            ..PageLimits::default()
        })
        .await;
        e.client.get_range(&req).await.unwrap().next_token.unwrap()
    };
    req.token = Some(issued);
    assert_error(
        c.get_range(&req).await,
        400,
        "OTSParameterInvalid",
        "The token is invalid.",
    );
}
