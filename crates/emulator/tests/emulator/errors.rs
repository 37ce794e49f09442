//! Bad requests: exact HTTP status, code and message, and no side effects.

use ots_wire::plainbuffer::{PlainBufferWriter, crc8, crc8_byte};
use ots_wire::types::{CellOp, ValueRef};

use super::*;

async fn setup() -> Env {
    let env = start().await;
    create_two_pk_table(&env.client, "t", 1).await;
    env
}

fn one_pk_table(name: &str, pk: Vec<pb::PrimaryKeySchema>) -> pb::CreateTableRequest {
    create_req(name, pk, 1, -1)
}

#[tokio::test]
async fn table_definition_errors() {
    let env = start().await;
    let c = &env.client;
    assert_error(
        c.create_table(&one_pk_table(
            "dup",
            vec![
                pk_schema("PK0", pb::PrimaryKeyType::String),
                pk_schema("PK0", pb::PrimaryKeyType::Integer),
            ],
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Duplicated primary key name: 'PK0'.",
    );
    assert_error(
        c.create_table(&one_pk_table(
            "b",
            vec![pk_schema("PK0", pb::PrimaryKeyType::PkBoolean)],
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "BOOLEAN is an invalid type for the primary key.",
    );
    assert_error(
        c.create_table(&one_pk_table(
            "1bad",
            vec![pk_schema("k", pb::PrimaryKeyType::String)],
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Invalid table name: '1bad'.",
    );
    assert_error(
        c.create_table(&one_pk_table(
            "t",
            vec![pk_schema("bad-name", pb::PrimaryKeyType::String)],
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Invalid column name: 'bad-name'.",
    );
    let five = (0..5)
        .map(|i| pk_schema(&format!("k{i}"), pb::PrimaryKeyType::Integer))
        .collect();
    assert_error(
        c.create_table(&one_pk_table("five", five)).await,
        400,
        "OTSParameterInvalid",
        "The number of primary key columns must be in range: [1, 4].",
    );
    let mut first_ai = pk_schema("id", pb::PrimaryKeyType::Integer);
    first_ai.option = Some(pb::PrimaryKeyOption::AutoIncrement as i32);
    let (s, code, _) = service_error(c.create_table(&one_pk_table("ai", vec![first_ai])).await);
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    let mut bad_ttl = one_pk_table("ttl", vec![pk_schema("k", pb::PrimaryKeyType::Integer)]);
    bad_ttl.table_options.as_mut().unwrap().time_to_live = Some(3600);
    let (s, code, _) = service_error(c.create_table(&bad_ttl).await);
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    // Nothing was created by any of these.
    assert!(c.list_table().await.unwrap().is_empty());
}

#[tokio::test]
async fn primary_key_errors_in_every_row_operation() {
    let env = setup().await;
    let c = &env.client;
    let wrong_name = vec![
        PkColumn::new("PK2", PkValue::String("blah".into())),
        PkColumn::new("pk2", PkValue::Integer(1)),
    ];
    let msg = "Validate PK name fail. Input: PK2, Meta: pk1.";
    assert_error(
        c.get_row(&get_req("t", &wrong_name, Some(1))).await,
        400,
        "OTSInvalidPK",
        msg,
    );
    assert_error(
        put_req(
            c,
            "t",
            wrong_name.clone(),
            vec![cell("v", Value::Integer(1))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSInvalidPK",
        msg,
    );
    assert_error(
        delete(c, "t", &wrong_name, pb::RowExistenceExpectation::Ignore).await,
        400,
        "OTSInvalidPK",
        msg,
    );
    let short = vec![PkColumn::new("pk1", PkValue::String("a".into()))];
    assert_error(
        update(
            c,
            "t",
            &short,
            &[ColumnUpdate::Put {
                name: "v".into(),
                value: Value::Integer(1),
                timestamp: None,
            }],
            condition(pb::RowExistenceExpectation::Ignore),
            None,
        )
        .await,
        400,
        "OTSInvalidPK",
        "Validate PK size fail. Input: 1, Meta: 2.",
    );
    let wrong_type = vec![
        PkColumn::new("pk1", PkValue::String("a".into())),
        PkColumn::new("pk2", PkValue::String("x".into())),
    ];
    assert_error(
        c.get_row(&get_req("t", &wrong_type, Some(1))).await,
        400,
        "OTSInvalidPK",
        "Validate PK type fail. Input: VT_STRING, Meta: VT_INTEGER.",
    );
    // INF bounds are only for ranges.
    assert_error(
        c.get_row(&get_req("t", &inf_key(true), Some(1))).await,
        400,
        "OTSInvalidPK",
        "Validate PK type fail. Input: VT_INF_MIN, Meta: VT_STRING.",
    );
    assert_error(
        c.get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &wrong_name,
            &inf_key(false),
            None,
        ))
        .await,
        400,
        "OTSInvalidPK",
        msg,
    );
    let long = vec![
        PkColumn::new("pk1", PkValue::String("x".repeat(1025))),
        PkColumn::new("pk2", PkValue::Integer(1)),
    ];
    assert_error(
        put_req(
            c,
            "t",
            long,
            vec![cell("v", Value::Integer(1))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "The length of primary key column: 'pk1' exceeded the MaxLength:1024 with CurrentLength:1025.",
    );
    // A DOUBLE value inside the PK section of a PlainBuffer.
    let mut buf = vec![0x75, 0, 0, 0, 0x01];
    let mut row_crc = 0u8;
    for (name, payload) in [
        ("pk1", {
            let mut p = vec![0x01];
            p.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
            p
        }),
        ("pk2", {
            let mut p = vec![0x00];
            p.extend_from_slice(&1i64.to_le_bytes());
            p
        }),
    ] {
        buf.extend_from_slice(&[0x03, 0x04]);
        buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.push(0x05);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        let cell_crc = crc8(crc8(0, name.as_bytes()), &payload);
        buf.extend_from_slice(&[0x0A, cell_crc]);
        row_crc = crc8_byte(row_crc, cell_crc);
    }
    buf.extend_from_slice(&[0x09, crc8_byte(row_crc, 0)]);
    let mut req = get_req("t", &key("a", 1), Some(1));
    req.primary_key = buf.into();
    assert_error(
        c.get_row(&req).await,
        400,
        "OTSParameterInvalid",
        "DOUBLE is an invalid type for the primary key.",
    );
}

#[tokio::test]
async fn read_parameter_errors() {
    let env = setup().await;
    let c = &env.client;
    assert_error(
        c.get_row(&get_req("t", &key("a", 1), None)).await,
        400,
        "OTSParameterInvalid",
        "No version condition is specified while querying row.",
    );
    assert_error(
        c.get_row(&get_req("missing", &key("a", 1), Some(1))).await,
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    );
    assert_error(
        c.get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &key("DDDD", 1),
            &key("AAA", 1),
            None,
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Begin key must less than end key in FORWARD",
    );
    assert_error(
        c.get_range(&range_req(
            "t",
            pb::Direction::Backward,
            &key("AAA", 1),
            &key("DDDD", 1),
            None,
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Begin key must more than end key in BACKWARD",
    );
    // Equal bounds are invalid in both directions.
    assert_error(
        c.get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &key("a", 1),
            &key("a", 1),
            None,
        ))
        .await,
        400,
        "OTSParameterInvalid",
        "Begin key must less than end key in FORWARD",
    );
    for limit in [0, -1] {
        assert_error(
            c.get_range(&range_req(
                "t",
                pb::Direction::Forward,
                &key("AAA", 1),
                &key("DDDD", 1),
                Some(limit),
            ))
            .await,
            400,
            "OTSParameterInvalid",
            "The limit must be greater than 0.",
        );
    }
    assert_error(
        c.batch_get_row(&pb::BatchGetRowRequest { tables: vec![] })
            .await,
        400,
        "OTSParameterInvalid",
        "No row specified in the request of BatchGetRow.",
    );
    let many = pb::BatchGetRowRequest {
        tables: vec![pb::TableInBatchGetRowRequest {
            table_name: "t".into(),
            primary_key: (0..101)
                .map(|i| encode_primary_key(&key("a", i)).into())
                .collect(),
            max_versions: Some(1),
            ..Default::default()
        }],
    };
    assert_error(
        c.batch_get_row(&many).await,
        400,
        "OTSParameterInvalid",
        "Rows count exceeds the upper limit: 100.",
    );
    let mut req = get_req("t", &key("a", 1), Some(1));
    req.transaction_id = Some("txn".into());
    assert_error(
        c.get_row(&req).await,
        400,
        "OTSParameterInvalid",
        "TransactionID is invalid.",
    );
}

#[tokio::test]
async fn write_errors_change_nothing() {
    let env = setup().await;
    let c = &env.client;
    put(c, "t", key("keep", 1), vec![cell("v", Value::Integer(1))]).await;
    assert_error(
        put_req(
            c,
            "t",
            key("a", 1),
            vec![],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Attribute column is missing.",
    );
    assert_error(
        put_req(
            c,
            "t",
            key("a", 1),
            vec![cell("1x", Value::Integer(1))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Invalid column name: '1x'.",
    );
    let (s, code, _) = service_error(
        put_req(
            c,
            "t",
            key("a", 1),
            vec![cell("d", Value::Double(f64::NAN))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    // DELETE_ONE_VERSION without a timestamp (our encoder cannot produce it; build it by hand).
    let mut w = PlainBufferWriter::new();
    w.pk("pk1", ots_wire::types::PkValueRef::String("keep"))
        .pk("pk2", ots_wire::types::PkValueRef::Integer(1))
        .cell("v", None, Some(CellOp::DeleteOneVersion), None)
        .end_row();
    let req = pb::UpdateRowRequest {
        table_name: "t".into(),
        row_change: w.into_bytes().into(),
        condition: condition(pb::RowExistenceExpectation::Ignore),
        return_content: None,
        transaction_id: None,
    };
    assert_error(
        c.update_row(&req, Idempotency::NotIdempotent).await,
        400,
        "OTSParameterInvalid",
        "Timestamp must be given when type is DELETE_ONE_VERSION.",
    );
    // BatchWriteRow request-level errors.
    let bw = |tables: Vec<pb::TableInBatchWriteRowRequest>| pb::BatchWriteRowRequest {
        tables,
        transaction_id: None,
        is_atomic: None,
    };
    let put_item = |k: Vec<PkColumn>, cells: Vec<Cell>, e: pb::RowExistenceExpectation| {
        pb::RowInBatchWriteRowRequest {
            r#type: pb::OperationType::Put as i32,
            row_change: encode_put_row(&Row {
                primary_key: k,
                cells,
            })
            .into(),
            condition: condition(e),
            return_content: None,
        }
    };
    assert_error(
        c.batch_write_row(&bw(vec![]), Idempotency::NotIdempotent)
            .await,
        400,
        "OTSParameterInvalid",
        "No row is specified in BatchWriteRow.",
    );
    assert_error(
        c.batch_write_row(
            &bw(vec![pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: vec![],
            }]),
            Idempotency::NotIdempotent,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "No operation is specified for table: 't'.",
    );
    let too_many = (0..201)
        .map(|i| {
            put_item(
                key("n", i),
                vec![cell("v", Value::Integer(i))],
                pb::RowExistenceExpectation::Ignore,
            )
        })
        .collect();
    assert_error(
        c.batch_write_row(
            &bw(vec![pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: too_many,
            }]),
            Idempotency::NotIdempotent,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Rows count exceeds the upper limit: 200.",
    );
    // One PUT without attributes fails the whole batch, so the valid first row is not written.
    assert_error(
        c.batch_write_row(
            &bw(vec![pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: vec![
                    put_item(
                        key("n", 1),
                        vec![cell("v", Value::Integer(1))],
                        pb::RowExistenceExpectation::Ignore,
                    ),
                    put_item(key("n", 2), vec![], pb::RowExistenceExpectation::Ignore),
                ],
            }]),
            Idempotency::NotIdempotent,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Attribute column is missing.",
    );
    // The same row twice with a condition.
    let (s, code, _) = service_error(
        c.batch_write_row(
            &bw(vec![pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: vec![
                    put_item(
                        key("n", 1),
                        vec![cell("v", Value::Integer(1))],
                        pb::RowExistenceExpectation::ExpectNotExist,
                    ),
                    put_item(
                        key("n", 1),
                        vec![cell("v", Value::Integer(2))],
                        pb::RowExistenceExpectation::Ignore,
                    ),
                ],
            }]),
            Idempotency::NotIdempotent,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    // Nothing of the above was written.
    let resp = c
        .get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ))
        .await
        .unwrap();
    let rows = page_rows(&resp);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].primary_key, key("keep", 1));
    assert_eq!(values(&rows[0]), vec![("v".to_string(), Value::Integer(1))]);
}

#[tokio::test]
async fn http_level_errors() {
    let env = setup().await;
    // Unknown and unimplemented actions, properly signed.
    let r = signed_post(&env.emu, "CreateSearchIndex", vec![]).await;
    assert_eq!(
        r.error(),
        (
            400,
            "OTSParameterInvalid".to_string(),
            "Unsupported operation: 'CreateSearchIndex'.".to_string()
        )
    );
    // A body that is not the protobuf it claims to be.
    let r = signed_post(&env.emu, "GetRow", vec![0xff, 0xff, 0xff]).await;
    let (s, code, m) = r.error();
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    assert!(
        m.starts_with("Failed to parse the GetRowRequest protobuf message"),
        "{m}"
    );
    // A PlainBuffer whose checksum is broken.
    let mut pk = encode_primary_key(&key("a", 1));
    let last = pk.len() - 1;
    pk[last] ^= 0x55;
    let body = get_req("t", &key("a", 1), Some(1));
    let body = pb::GetRowRequest {
        primary_key: pk.into(),
        ..body
    }
    .encode_to_vec();
    let (s, code, m) = signed_post(&env.emu, "GetRow", body).await.error();
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    assert!(
        m.starts_with("Cell data broken, checksum is mismatch"),
        "{m}"
    );
    // Only POST.
    let r = reqwest::Client::new()
        .get(format!("{}/ListTable", env.emu.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let e = pb::Error::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(e.code, "OTSMethodNotAllowed");
    // More than 5 MB.
    let big = vec![0u8; ots_emulator::MAX_BODY_BYTES + 1];
    let r = signed_post(&env.emu, "PutRow", big).await;
    assert_eq!(
        r.error(),
        (
            413,
            "OTSRequestBodyTooLarge".to_string(),
            "The size of POST data is too large.".to_string()
        )
    );
    // Error responses carry the x-ots headers too.
    assert!(r.header("x-ots-requestid").is_some());
    assert_eq!(
        r.header("x-ots-contentmd5"),
        Some(ots_wire::auth::content_md5(&r.body).as_str())
    );
}

#[tokio::test]
async fn value_type_of_filter_is_checked() {
    let env = setup().await;
    let mut req = get_req("t", &key("a", 1), Some(1));
    // A filter whose value is not a bare variant.
    req.filter = Some(
        pb::Filter {
            r#type: pb::FilterType::FtSingleColumnValue as i32,
            filter: pb::SingleColumnValueFilter {
                comparator: pb::ComparatorType::CtEqual as i32,
                column_name: "v".into(),
                column_value: vec![0x42].into(),
                filter_if_missing: false,
                latest_version_only: true,
                value_trans_rule: None,
            }
            .encode_to_vec()
            .into(),
        }
        .encode_to_vec()
        .into(),
    );
    let (s, code, m) = service_error(env.client.get_row(&req).await);
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    assert!(
        m.starts_with("Invalid column value in the filter on 'v'"),
        "{m}"
    );
    let _ = ValueRef::Integer(0);
}
