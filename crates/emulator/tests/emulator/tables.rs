//! Table operations: CreateTable, DescribeTable, ListTable, UpdateTable, DeleteTable.

use super::*;

#[tokio::test]
async fn table_lifecycle() {
    let env = start().await;
    let c = &env.client;
    assert!(c.list_table().await.unwrap().is_empty());
    let mut req = create_req(
        "t1",
        vec![
            pk_schema("pk1", pb::PrimaryKeyType::String),
            pk_schema("pk2", pb::PrimaryKeyType::Integer),
            pk_schema("pk3", pb::PrimaryKeyType::Binary),
        ],
        3,
        86400 * 2,
    );
    req.reserved_throughput.capacity_unit = pb::CapacityUnit {
        read: Some(1),
        write: Some(2),
    };
    req.table_meta.defined_column = vec![pb::DefinedColumnSchema {
        name: "d".into(),
        r#type: pb::DefinedColumnType::DctDouble as i32,
    }];
    c.create_table(&req).await.unwrap();
    c.create_table(&create_req(
        "a0",
        vec![pk_schema("k", pb::PrimaryKeyType::Integer)],
        1,
        -1,
    ))
    .await
    .unwrap();
    // ListTable is sorted by name.
    assert_eq!(c.list_table().await.unwrap(), vec!["a0", "t1"]);

    let d = c.describe_table("t1").await.unwrap();
    assert_eq!(d.table_meta.table_name, "t1");
    let pks: Vec<(String, i32)> = d
        .table_meta
        .primary_key
        .iter()
        .map(|p| (p.name.clone(), p.r#type))
        .collect();
    assert_eq!(
        pks,
        vec![
            ("pk1".to_string(), pb::PrimaryKeyType::String as i32),
            ("pk2".to_string(), pb::PrimaryKeyType::Integer as i32),
            ("pk3".to_string(), pb::PrimaryKeyType::Binary as i32),
        ]
    );
    assert_eq!(d.table_meta.defined_column.len(), 1);
    assert_eq!(d.table_options.max_versions, Some(3));
    assert_eq!(d.table_options.time_to_live, Some(86400 * 2));
    assert_eq!(d.table_options.deviation_cell_version_in_sec, Some(86400));
    assert_eq!(d.table_status, Some(pb::TableStatus::Active as i32));
    let cu = &d.reserved_throughput_details.capacity_unit;
    assert_eq!((cu.read, cu.write), (Some(1), Some(2)));
    assert!(d.reserved_throughput_details.last_increase_time > 1_600_000_000);

    // UpdateTable changes only what it names.
    let u = c
        .update_table(&pb::UpdateTableRequest {
            table_name: "t1".into(),
            reserved_throughput: None,
            table_options: Some(pb::TableOptions {
                max_versions: Some(5),
                ..Default::default()
            }),
            stream_spec: None,
        })
        .await
        .unwrap();
    assert_eq!(u.table_options.max_versions, Some(5));
    assert_eq!(u.table_options.time_to_live, Some(86400 * 2));
    let d = c.describe_table("t1").await.unwrap();
    assert_eq!(d.table_options.max_versions, Some(5));

    assert_error(
        c.create_table(&req).await,
        409,
        "OTSObjectAlreadyExist",
        "Requested table already exists.",
    );
    c.delete_table("t1").await.unwrap();
    assert_eq!(c.list_table().await.unwrap(), vec!["a0"]);
    assert_error(
        c.describe_table("t1").await,
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    );
    assert_error(
        c.delete_table("t1").await,
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    );
}

#[tokio::test]
async fn defaults_when_options_are_absent() {
    let env = start().await;
    let mut req = create_req(
        "t",
        vec![pk_schema("k", pb::PrimaryKeyType::Integer)],
        1,
        -1,
    );
    req.table_options = None;
    env.client.create_table(&req).await.unwrap();
    let d = env.client.describe_table("t").await.unwrap();
    assert_eq!(
        (
            d.table_options.time_to_live,
            d.table_options.max_versions,
            d.table_options.deviation_cell_version_in_sec
        ),
        (Some(-1), Some(1), Some(86400))
    );
}

#[tokio::test]
async fn auto_increment_assigns_increasing_ids() {
    let env = start().await;
    let c = &env.client;
    let mut id = pk_schema("id", pb::PrimaryKeyType::Integer);
    id.option = Some(pb::PrimaryKeyOption::AutoIncrement as i32);
    c.create_table(&create_req(
        "ai",
        vec![pk_schema("part", pb::PrimaryKeyType::String), id],
        1,
        -1,
    ))
    .await
    .unwrap();
    let pk = vec![
        PkColumn::new("part", PkValue::String("p".into())),
        PkColumn::new("id", PkValue::AutoIncrement),
    ];
    let mut ids = Vec::new();
    for i in 0..5 {
        let row = Row {
            primary_key: pk.clone(),
            cells: vec![cell("v", Value::Integer(i))],
        };
        let resp = c
            .put_row(
                &pb::PutRowRequest {
                    table_name: "ai".into(),
                    row: encode_put_row(&row).into(),
                    condition: condition(pb::RowExistenceExpectation::Ignore),
                    return_content: Some(pb::ReturnContent {
                        return_type: Some(pb::ReturnType::RtPk as i32),
                        return_column_names: vec![],
                    }),
                    transaction_id: None,
                },
                Idempotency::NotIdempotent,
            )
            .await
            .unwrap();
        let returned = decode_single_row(resp.row.as_ref().expect("RT_PK returns the key"))
            .unwrap()
            .unwrap()
            .to_row();
        assert_eq!(returned.primary_key[0], pk[0]);
        assert!(returned.cells.is_empty());
        match returned.primary_key[1].value {
            PkValue::Integer(v) => ids.push(v),
            ref other => panic!("auto-increment value {other:?}"),
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The returned key reads the row back.
    let back = get(
        c,
        "ai",
        &[
            PkColumn::new("part", PkValue::String("p".into())),
            PkColumn::new("id", PkValue::Integer(ids[2])),
        ],
    )
    .await
    .unwrap();
    assert_eq!(values(&back), vec![("v".to_string(), Value::Integer(2))]);

    // PutRow with an explicit id is refused; the placeholder with a condition too.
    let explicit = vec![
        PkColumn::new("part", PkValue::String("p".into())),
        PkColumn::new("id", PkValue::Integer(7)),
    ];
    let (s, code, _) = service_error(
        put_req(
            c,
            "ai",
            explicit,
            vec![cell("v", Value::Integer(1))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    let (s, code, _) = service_error(
        put_req(
            c,
            "ai",
            pk.clone(),
            vec![cell("v", Value::Integer(1))],
            pb::RowExistenceExpectation::ExpectNotExist,
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (400, "OTSParameterInvalid"));
    // Reads cannot use the placeholder.
    let (s, code, m) = service_error(c.get_row(&get_req("ai", &pk, Some(1))).await);
    assert_eq!(
        (s, code.as_str(), m.as_str()),
        (
            400,
            "OTSParameterInvalid",
            "PKAutoIncr can't be used for read operations."
        )
    );
}
