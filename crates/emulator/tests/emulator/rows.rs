//! Single-row and batch row operations.

use std::time::{SystemTime, UNIX_EPOCH};

use ots_wire::plainbuffer::encode_bare_value;
use ots_wire::types::ValueRef;
use prost::Message;

use super::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn single_filter(
    cmp: pb::ComparatorType,
    column: &str,
    v: ValueRef<'_>,
    filter_if_missing: bool,
) -> Vec<u8> {
    pb::Filter {
        r#type: pb::FilterType::FtSingleColumnValue as i32,
        filter: pb::SingleColumnValueFilter {
            comparator: cmp as i32,
            column_name: column.into(),
            column_value: encode_bare_value(v).into(),
            filter_if_missing,
            latest_version_only: true,
            value_trans_rule: None,
        }
        .encode_to_vec()
        .into(),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn put_get_every_type_and_replace() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    let all = vec![
        cell("b", Value::Boolean(true)),
        cell("bin", Value::Binary(vec![0, 1, 255])),
        cell("d", Value::Double(1.5)),
        cell("i", Value::Integer(-3)),
        cell("s", Value::String("héllo".into())),
    ];
    let resp = put(c, "t", key("a", 7), all.clone()).await;
    assert_eq!(resp.consumed.capacity_unit.read, Some(0));
    assert_eq!(resp.consumed.capacity_unit.write, Some(1));
    assert!(resp.row.is_none());
    let got = get(c, "t", &key("a", 7)).await.expect("row exists");
    assert_eq!(got.primary_key, key("a", 7));
    assert_eq!(
        values(&got),
        all.iter()
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect::<Vec<_>>()
    );
    // Server-assigned timestamps are "now".
    let now = now_ms();
    assert!(got.cells.iter().all(|c| {
        let ts = c.timestamp.unwrap();
        (now - 60_000..=now).contains(&ts)
    }));
    // PutRow replaces the whole row.
    put(c, "t", key("a", 7), vec![cell("z", Value::Integer(1))]).await;
    let got = get(c, "t", &key("a", 7)).await.unwrap();
    assert_eq!(values(&got), vec![("z".to_string(), Value::Integer(1))]);
    // Missing row.
    let resp = c
        .get_row(&get_req("t", &key("nope", 1), Some(1)))
        .await
        .unwrap();
    assert!(resp.row.is_empty());
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));
    assert_eq!(resp.consumed.capacity_unit.write, Some(0));
}

#[tokio::test]
async fn versions_timestamps_and_time_range() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 3).await;
    let base = now_ms() - 10_000;
    let cells: Vec<Cell> = (0..5)
        .map(|i| Cell::new("v", Value::Integer(i), Some(base + i)))
        .collect();
    put(c, "t", key("a", 1), cells).await;
    // Only the newest 3 versions survive max_versions = 3, newest first.
    let resp = c
        .get_row(&get_req("t", &key("a", 1), Some(10)))
        .await
        .unwrap();
    let row = decode_single_row(&resp.row).unwrap().unwrap().to_row();
    let ts: Vec<i64> = row.cells.iter().map(|c| c.timestamp.unwrap()).collect();
    assert_eq!(ts, vec![base + 4, base + 3, base + 2]);
    // time_range [base+2, base+4) without max_versions.
    let mut req = get_req("t", &key("a", 1), None);
    req.time_range = Some(pb::TimeRange {
        start_time: Some(base + 2),
        end_time: Some(base + 4),
        specific_time: None,
    });
    let row = decode_single_row(&c.get_row(&req).await.unwrap().row)
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(
        row.cells
            .iter()
            .map(|c| c.timestamp.unwrap())
            .collect::<Vec<_>>(),
        vec![base + 3, base + 2]
    );
    // specific_time, and a range holding no version means no row.
    req.time_range = Some(pb::TimeRange {
        start_time: None,
        end_time: None,
        specific_time: Some(base + 3),
    });
    let row = decode_single_row(&c.get_row(&req).await.unwrap().row)
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(row.cells.len(), 1);
    assert_eq!(row.cells[0].value, Value::Integer(3));
    req.time_range = Some(pb::TimeRange {
        start_time: Some(0),
        end_time: Some(base),
        specific_time: None,
    });
    assert!(c.get_row(&req).await.unwrap().row.is_empty());
    // Rewriting the same (column, ts) overwrites that version.
    update(
        c,
        "t",
        &key("a", 1),
        &[ColumnUpdate::Put {
            name: "v".into(),
            value: Value::String("new".into()),
            timestamp: Some(base + 4),
        }],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .unwrap();
    let row = get(c, "t", &key("a", 1)).await.unwrap();
    assert_eq!(row.cells[0].value, Value::String("new".into()));
    assert_eq!(row.cells[0].timestamp, Some(base + 4));
    // A timestamp beyond the deviation window is refused and changes nothing.
    let (s, code, m) = service_error(
        update(
            c,
            "t",
            &key("a", 1),
            &[ColumnUpdate::Put {
                name: "v".into(),
                value: Value::Integer(0),
                timestamp: Some(now_ms() - 3 * 86_400_000),
            }],
            condition(pb::RowExistenceExpectation::Ignore),
            None,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    assert!(m.starts_with("Invalid timestamp"), "{m}");
    assert_eq!(
        get(c, "t", &key("a", 1)).await.unwrap().cells[0].value,
        Value::String("new".into())
    );
}

#[tokio::test]
async fn ttl_hides_expired_cells_and_rows() {
    let env = start().await;
    let c = &env.client;
    c.create_table(&create_req(
        "ttl",
        vec![pk_schema("k", pb::PrimaryKeyType::Integer)],
        1,
        86400,
    ))
    .await
    .unwrap();
    let k = vec![PkColumn::new("k", PkValue::Integer(1))];
    // A cell 23 h old is inside the TTL; then lower... the TTL cannot go below a day, so write a
    // cell just inside it and check that one outside the window is refused.
    let day = 86_400_000;
    put(
        c,
        "ttl",
        k.clone(),
        vec![Cell::new(
            "old",
            Value::Integer(1),
            Some(now_ms() - day + 60_000),
        )],
    )
    .await;
    assert!(get(c, "ttl", &k).await.is_some());
    let (s, _, m) = service_error(
        put_req(
            c,
            "ttl",
            k.clone(),
            vec![Cell::new(
                "old",
                Value::Integer(1),
                Some(now_ms() - day - 60_000),
            )],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
    );
    assert_eq!(s, 400);
    assert!(m.starts_with("Invalid timestamp"), "{m}");
}

#[tokio::test]
async fn update_row_operations_and_return_content() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 5).await;
    let k = key("u", 1);
    let base = now_ms() - 1000;
    // UpdateRow creates the row.
    update(
        c,
        "t",
        &k,
        &[
            ColumnUpdate::Put {
                name: "a".into(),
                value: Value::Integer(1),
                timestamp: Some(base),
            },
            ColumnUpdate::Put {
                name: "a".into(),
                value: Value::Integer(2),
                timestamp: Some(base + 1),
            },
            ColumnUpdate::Put {
                name: "b".into(),
                value: Value::String("x".into()),
                timestamp: None,
            },
            ColumnUpdate::Put {
                name: "n".into(),
                value: Value::Integer(10),
                timestamp: None,
            },
        ],
        condition(pb::RowExistenceExpectation::ExpectNotExist),
        None,
    )
    .await
    .unwrap();
    // DELETE_ONE_VERSION, DELETE_ALL_VERSIONS, INCREMENT with RT_AFTER_MODIFY.
    let resp = update(
        c,
        "t",
        &k,
        &[
            ColumnUpdate::DeleteOneVersion {
                name: "a".into(),
                timestamp: base + 1,
            },
            ColumnUpdate::DeleteAllVersions { name: "b".into() },
            ColumnUpdate::Increment {
                name: "n".into(),
                delta: 5,
            },
        ],
        condition(pb::RowExistenceExpectation::ExpectExist),
        Some(pb::ReturnContent {
            return_type: Some(pb::ReturnType::RtAfterModify as i32),
            return_column_names: vec!["n".into()],
        }),
    )
    .await
    .unwrap();
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));
    let after = decode_single_row(resp.row.as_ref().unwrap())
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(values(&after), vec![("n".to_string(), Value::Integer(15))]);
    let row = get(c, "t", &k).await.unwrap();
    assert_eq!(
        values(&row),
        vec![
            ("a".to_string(), Value::Integer(1)),
            ("n".to_string(), Value::Integer(15))
        ]
    );
    // INCREMENT of a missing column starts from 0; of a STRING column it fails and changes nothing.
    update(
        c,
        "t",
        &k,
        &[ColumnUpdate::Increment {
            name: "m".into(),
            delta: -2,
        }],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .unwrap();
    update(
        c,
        "t",
        &k,
        &[ColumnUpdate::Put {
            name: "s".into(),
            value: Value::String("str".into()),
            timestamp: None,
        }],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .unwrap();
    let (s, code, _) = service_error(
        update(
            c,
            "t",
            &k,
            &[
                ColumnUpdate::Put {
                    name: "a".into(),
                    value: Value::Integer(99),
                    timestamp: None,
                },
                ColumnUpdate::Increment {
                    name: "s".into(),
                    delta: 1,
                },
            ],
            condition(pb::RowExistenceExpectation::Ignore),
            None,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    let row = get(c, "t", &k).await.unwrap();
    assert_eq!(
        values(&row),
        vec![
            ("a".to_string(), Value::Integer(1)),
            ("m".to_string(), Value::Integer(-2)),
            ("n".to_string(), Value::Integer(15)),
            ("s".to_string(), Value::String("str".into())),
        ]
    );
    // Deleting every column makes the row disappear.
    update(
        c,
        "t",
        &k,
        &["a", "m", "n", "s"].map(|n| ColumnUpdate::DeleteAllVersions { name: n.into() }),
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .unwrap();
    assert!(get(c, "t", &k).await.is_none());
    // An update made only of deletes on an absent row creates nothing.
    update(
        c,
        "t",
        &key("ghost", 1),
        &[ColumnUpdate::DeleteAllVersions { name: "x".into() }],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .unwrap();
    assert!(get(c, "t", &key("ghost", 1)).await.is_none());
}

#[tokio::test]
async fn conditions_on_existence_and_columns() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    let k = key("c", 1);
    assert_error(
        update(
            c,
            "t",
            &k,
            &[ColumnUpdate::Put {
                name: "v".into(),
                value: Value::Integer(1),
                timestamp: None,
            }],
            condition(pb::RowExistenceExpectation::ExpectExist),
            None,
        )
        .await,
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    );
    assert!(get(c, "t", &k).await.is_none());
    put_req(
        c,
        "t",
        k.clone(),
        vec![cell("v", Value::Integer(5))],
        pb::RowExistenceExpectation::ExpectNotExist,
    )
    .await
    .unwrap();
    assert_error(
        put_req(
            c,
            "t",
            k.clone(),
            vec![cell("v", Value::Integer(6))],
            pb::RowExistenceExpectation::ExpectNotExist,
        )
        .await,
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    );
    // Column condition v > 10 fails on v = 5; v == 5 passes.
    let cond = |f: Vec<u8>| pb::Condition {
        row_existence: pb::RowExistenceExpectation::ExpectExist as i32,
        column_condition: Some(f.into()),
    };
    let upd = [ColumnUpdate::Put {
        name: "v".into(),
        value: Value::Integer(7),
        timestamp: None,
    }];
    assert_error(
        update(
            c,
            "t",
            &k,
            &upd,
            cond(single_filter(
                pb::ComparatorType::CtGreaterThan,
                "v",
                ValueRef::Integer(10),
                false,
            )),
            None,
        )
        .await,
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    );
    update(
        c,
        "t",
        &k,
        &upd,
        cond(single_filter(
            pb::ComparatorType::CtEqual,
            "v",
            ValueRef::Integer(5),
            false,
        )),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        values(&get(c, "t", &k).await.unwrap()),
        vec![("v".to_string(), Value::Integer(7))]
    );
    // A missing column passes unless filter_if_missing.
    update(
        c,
        "t",
        &k,
        &upd,
        cond(single_filter(
            pb::ComparatorType::CtEqual,
            "absent",
            ValueRef::Integer(1),
            false,
        )),
        None,
    )
    .await
    .unwrap();
    assert_error(
        update(
            c,
            "t",
            &k,
            &upd,
            cond(single_filter(
                pb::ComparatorType::CtEqual,
                "absent",
                ValueRef::Integer(1),
                true,
            )),
            None,
        )
        .await,
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    );
    // DeleteRow with EXPECT_EXIST, then again on the absent row.
    let resp = delete(c, "t", &k, pb::RowExistenceExpectation::ExpectExist)
        .await
        .unwrap();
    assert_eq!(
        (
            resp.consumed.capacity_unit.read,
            resp.consumed.capacity_unit.write
        ),
        (Some(1), Some(1))
    );
    assert!(get(c, "t", &k).await.is_none());
    assert_error(
        delete(c, "t", &k, pb::RowExistenceExpectation::ExpectExist).await,
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    );
    delete(c, "t", &k, pb::RowExistenceExpectation::Ignore)
        .await
        .unwrap();
}

#[tokio::test]
async fn get_row_projection_and_filter() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    let k = key("p", 1);
    put(
        c,
        "t",
        k.clone(),
        vec![
            cell("a", Value::Integer(1)),
            cell("b", Value::String("x".repeat(5000))),
            cell("c", Value::Boolean(false)),
        ],
    )
    .await;
    let mut req = get_req("t", &k, Some(1));
    req.columns_to_get = vec!["c".into(), "a".into()];
    let resp = c.get_row(&req).await.unwrap();
    let row = decode_single_row(&resp.row).unwrap().unwrap().to_row();
    assert_eq!(row.primary_key, k);
    assert_eq!(
        values(&row),
        vec![
            ("a".to_string(), Value::Integer(1)),
            ("c".to_string(), Value::Boolean(false))
        ]
    );
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));
    // The whole row is > 4 KB: 2 read CU.
    let resp = c.get_row(&get_req("t", &k, Some(1))).await.unwrap();
    assert_eq!(resp.consumed.capacity_unit.read, Some(2));
    // Only absent columns: no row. Only PK columns: the PK alone.
    req.columns_to_get = vec!["nothing".into()];
    assert!(c.get_row(&req).await.unwrap().row.is_empty());
    req.columns_to_get = vec!["pk1".into()];
    let row = decode_single_row(&c.get_row(&req).await.unwrap().row)
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(row.primary_key, k);
    assert!(row.cells.is_empty());
    // A filter that rejects the row returns nothing.
    let mut req = get_req("t", &k, Some(1));
    req.filter = Some(
        single_filter(
            pb::ComparatorType::CtNotEqual,
            "a",
            ValueRef::Integer(1),
            false,
        )
        .into(),
    );
    assert!(c.get_row(&req).await.unwrap().row.is_empty());
    req.filter = Some(
        single_filter(
            pb::ComparatorType::CtLessEqual,
            "a",
            ValueRef::Integer(1),
            false,
        )
        .into(),
    );
    assert!(!c.get_row(&req).await.unwrap().row.is_empty());
}

#[tokio::test]
async fn batch_write_partial_failure_in_request_order() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    create_two_pk_table(c, "u", 1).await;
    put(c, "t", key("exists", 1), vec![cell("v", Value::Integer(0))]).await;
    put(c, "t", key("doomed", 1), vec![cell("v", Value::Integer(0))]).await;
    let row = |t: pb::OperationType, bytes: Vec<u8>, e: pb::RowExistenceExpectation| {
        pb::RowInBatchWriteRowRequest {
            r#type: t as i32,
            row_change: bytes.into(),
            condition: condition(e),
            return_content: None,
        }
    };
    let put_row = |k: Vec<PkColumn>| {
        encode_put_row(&Row {
            primary_key: k,
            cells: vec![cell("v", Value::Integer(1))],
        })
    };
    let req = pb::BatchWriteRowRequest {
        tables: vec![
            pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: vec![
                    row(
                        pb::OperationType::Put,
                        put_row(key("new", 1)),
                        pb::RowExistenceExpectation::Ignore,
                    ),
                    // Fails: the row exists.
                    row(
                        pb::OperationType::Put,
                        put_row(key("exists", 1)),
                        pb::RowExistenceExpectation::ExpectNotExist,
                    ),
                    // Fails: wrong PK name.
                    row(
                        pb::OperationType::Put,
                        encode_put_row(&Row {
                            primary_key: vec![
                                PkColumn::new("x", PkValue::String("a".into())),
                                PkColumn::new("pk2", PkValue::Integer(1)),
                            ],
                            cells: vec![cell("v", Value::Integer(1))],
                        }),
                        pb::RowExistenceExpectation::Ignore,
                    ),
                    row(
                        pb::OperationType::Delete,
                        encode_delete_row(&key("doomed", 1)),
                        pb::RowExistenceExpectation::ExpectExist,
                    ),
                ],
            },
            pb::TableInBatchWriteRowRequest {
                table_name: "u".into(),
                rows: vec![row(
                    pb::OperationType::Update,
                    encode_update_row(
                        &key("upd", 2),
                        &[ColumnUpdate::Put {
                            name: "w".into(),
                            value: Value::Double(2.5),
                            timestamp: None,
                        }],
                    ),
                    pb::RowExistenceExpectation::Ignore,
                )],
            },
            pb::TableInBatchWriteRowRequest {
                table_name: "missing".into(),
                rows: vec![row(
                    pb::OperationType::Put,
                    put_row(key("a", 1)),
                    pb::RowExistenceExpectation::Ignore,
                )],
            },
        ],
        transaction_id: None,
        is_atomic: None,
    };
    let resp = c
        .batch_write_row(&req, Idempotency::NotIdempotent)
        .await
        .unwrap();
    let names: Vec<&str> = resp.tables.iter().map(|t| t.table_name.as_str()).collect();
    assert_eq!(names, vec!["t", "u", "missing"]);
    let outcome: Vec<Vec<(bool, Option<String>)>> = resp
        .tables
        .iter()
        .map(|t| {
            t.rows
                .iter()
                .map(|r| (r.is_ok, r.error.as_ref().map(|e| e.code.clone())))
                .collect()
        })
        .collect();
    assert_eq!(
        outcome,
        vec![
            vec![
                (true, None),
                (false, Some("OTSConditionCheckFail".into())),
                (false, Some("OTSInvalidPK".into())),
                (true, None),
            ],
            vec![(true, None)],
            vec![(false, Some("OTSObjectNotExist".into()))],
        ]
    );
    let pk_err = resp.tables[0].rows[2].error.as_ref().unwrap();
    assert_eq!(
        pk_err.message.as_deref(),
        Some("Validate PK name fail. Input: x, Meta: pk1.")
    );
    // Each successful row has its own consumed with both fields.
    let cu = &resp.tables[0].rows[0]
        .consumed
        .as_ref()
        .unwrap()
        .capacity_unit;
    assert_eq!((cu.read, cu.write), (Some(0), Some(1)));
    let cu = &resp.tables[0].rows[3]
        .consumed
        .as_ref()
        .unwrap()
        .capacity_unit;
    assert_eq!((cu.read, cu.write), (Some(1), Some(1)));
    assert!(resp.tables[0].rows[1].consumed.is_none());
    // Effects: new row written, failed row untouched, row deleted by the 4th op, update applied.
    assert!(get(c, "t", &key("new", 1)).await.is_some());
    assert_eq!(
        values(&get(c, "t", &key("exists", 1)).await.unwrap()),
        vec![("v".to_string(), Value::Integer(0))]
    );
    assert!(get(c, "t", &key("doomed", 1)).await.is_none());
    assert_eq!(
        values(&get(c, "u", &key("upd", 2)).await.unwrap()),
        vec![("w".to_string(), Value::Double(2.5))]
    );
}

#[tokio::test]
async fn batch_get_rows_in_order_with_missing_and_bad_keys() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    put(c, "t", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    put(c, "t", key("b", 2), vec![cell("v", Value::Integer(2))]).await;
    let req = pb::BatchGetRowRequest {
        tables: vec![
            pb::TableInBatchGetRowRequest {
                table_name: "t".into(),
                primary_key: vec![
                    encode_primary_key(&key("b", 2)).into(),
                    encode_primary_key(&key("zz", 0)).into(),
                    encode_primary_key(&[PkColumn::new("pk1", PkValue::String("a".into()))]).into(),
                    encode_primary_key(&key("a", 1)).into(),
                ],
                max_versions: Some(1),
                ..Default::default()
            },
            pb::TableInBatchGetRowRequest {
                table_name: "nope".into(),
                primary_key: vec![encode_primary_key(&key("a", 1)).into()],
                max_versions: Some(1),
                ..Default::default()
            },
        ],
    };
    let resp = c.batch_get_row(&req).await.unwrap();
    let t = &resp.tables[0];
    assert_eq!(t.table_name, "t");
    assert_eq!(t.rows.len(), 4);
    let first = decode_single_row(t.rows[0].row.as_ref().unwrap())
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(first.primary_key, key("b", 2));
    assert!(t.rows[1].is_ok && t.rows[1].row.as_ref().unwrap().is_empty());
    assert!(!t.rows[2].is_ok);
    let e = t.rows[2].error.as_ref().unwrap();
    assert_eq!(
        (e.code.as_str(), e.message.as_deref()),
        (
            "OTSInvalidPK",
            Some("Validate PK size fail. Input: 1, Meta: 2.")
        )
    );
    let last = decode_single_row(t.rows[3].row.as_ref().unwrap())
        .unwrap()
        .unwrap()
        .to_row();
    assert_eq!(values(&last), vec![("v".to_string(), Value::Integer(1))]);
    assert!(
        t.rows
            .iter()
            .filter(|r| r.is_ok)
            .all(|r| r.consumed.is_some())
    );
    assert_eq!(
        resp.tables[1].rows[0].error.as_ref().unwrap().code,
        "OTSObjectNotExist"
    );
}
