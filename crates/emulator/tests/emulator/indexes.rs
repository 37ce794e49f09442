//! Secondary indexes: `index_metas` in CreateTable and DescribeTable, CreateIndex, DropIndex, the
//! rules a table with indexes lives by, and index tables that cannot be written.

use super::*;

fn index(name: &str, pk: &[&str], defined: &[&str], local: bool) -> pb::IndexMeta {
    pb::IndexMeta {
        name: name.into(),
        primary_key: pk.iter().map(|s| s.to_string()).collect(),
        defined_column: defined.iter().map(|s| s.to_string()).collect(),
        index_update_mode: if local {
            pb::IndexUpdateMode::IumSyncIndex as i32
        } else {
            pb::IndexUpdateMode::IumAsyncIndex as i32
        },
        index_type: if local {
            pb::IndexType::ItLocalIndex as i32
        } else {
            pb::IndexType::ItGlobalIndex as i32
        },
        index_sync_phase: None,
    }
}

fn defined(name: &str, ty: pb::DefinedColumnType) -> pb::DefinedColumnSchema {
    pb::DefinedColumnSchema {
        name: name.into(),
        r#type: ty as i32,
    }
}

/// `name(pk1 STRING, pk2 INTEGER)` with defined columns `city STRING`, `age INTEGER`, `score
/// DOUBLE`, one version, no TTL, and `indexes`.
fn indexed_table(name: &str, indexes: Vec<pb::IndexMeta>) -> pb::CreateTableRequest {
    let mut req = create_req(
        name,
        vec![
            pk_schema("pk1", pb::PrimaryKeyType::String),
            pk_schema("pk2", pb::PrimaryKeyType::Integer),
        ],
        1,
        -1,
    );
    req.table_meta.defined_column = vec![
        defined("city", pb::DefinedColumnType::DctString),
        defined("age", pb::DefinedColumnType::DctInteger),
        defined("score", pb::DefinedColumnType::DctDouble),
    ];
    req.index_metas = indexes;
    req
}

/// Fields 1–5 of each index DescribeTable reports.
fn described(d: &pb::DescribeTableResponse) -> Vec<pb::IndexMeta> {
    d.index_metas
        .iter()
        .map(|m| pb::IndexMeta {
            index_sync_phase: None,
            ..m.clone()
        })
        .collect()
}

#[tokio::test]
async fn create_table_with_indexes_and_describe_them_verbatim() {
    let env = start().await;
    let c = &env.client;
    let indexes = vec![
        // An index key that leaves out the table's PK is kept as given.
        index("by_city", &["city"], &["age"], false),
        index("local_age", &["pk1", "age"], &["city", "score"], true),
    ];
    c.create_table(&indexed_table("t", indexes.clone()))
        .await
        .unwrap();
    let d = c.describe_table("t").await.unwrap();
    assert_eq!(described(&d), indexes);
    assert!(
        d.index_metas
            .iter()
            .all(|m| m.index_sync_phase == Some(pb::IndexSyncPhase::IspIncr as i32))
    );
    // The defined columns round-trip, names and types in order.
    let cols: Vec<(String, i32)> = d
        .table_meta
        .defined_column
        .iter()
        .map(|c| (c.name.clone(), c.r#type))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("city".into(), pb::DefinedColumnType::DctString as i32),
            ("age".into(), pb::DefinedColumnType::DctInteger as i32),
            ("score".into(), pb::DefinedColumnType::DctDouble as i32),
        ]
    );
    assert_eq!(d.table_options.max_versions, Some(1));
    // Index tables are not tables.
    assert_eq!(c.list_table().await.unwrap(), vec!["t"]);
    assert!(
        c.describe_table("by_city")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn create_index_and_drop_index() {
    let env = start().await;
    let c = &env.client;
    c.create_table(&indexed_table("t", vec![])).await.unwrap();
    assert!(c.describe_table("t").await.unwrap().index_metas.is_empty());
    let a = index("by_city", &["city", "pk1", "pk2"], &[], false);
    let b = index("local_score", &["pk1", "score"], &["age"], true);
    for m in [&a, &b] {
        c.create_index(&pb::CreateIndexRequest {
            main_table_name: "t".into(),
            index_meta: m.clone(),
            include_base_data: Some(true),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        described(&c.describe_table("t").await.unwrap()),
        vec![a.clone(), b.clone()]
    );
    c.drop_index("t", "by_city").await.unwrap();
    assert_eq!(described(&c.describe_table("t").await.unwrap()), vec![b]);
    assert_error(
        c.drop_index("t", "by_city").await,
        400,
        "OTSParameterInvalid",
        "Index 'by_city' does not exist on table 't'.",
    );
    assert!(
        c.drop_index("nope", "by_city")
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A dropped index's name is free again, and the index table goes with its table.
    c.create_index(&pb::CreateIndexRequest {
        main_table_name: "t".into(),
        index_meta: a,
        include_base_data: None,
    })
    .await
    .unwrap();
    c.delete_table("t").await.unwrap();
    c.create_table(&indexed_table("by_city", vec![]))
        .await
        .unwrap();
}

#[tokio::test]
async fn index_tables_cannot_be_written() {
    let env = start().await;
    let c = &env.client;
    c.create_table(&indexed_table(
        "t",
        vec![index("by_city", &["city"], &[], false)],
    ))
    .await
    .unwrap();
    // The main table takes writes as usual.
    put(
        c,
        "t",
        key("a", 1),
        vec![cell("city", Value::String("x".into()))],
    )
    .await;
    assert_error(
        put_req(
            c,
            "by_city",
            key("a", 1),
            vec![],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Can't write index table directly.",
    );
    assert_error(
        delete(
            c,
            "by_city",
            &key("a", 1),
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        400,
        "OTSParameterInvalid",
        "Can't write index table directly.",
    );
    // In a batch, the index table's rows fail one by one.
    let row = Row {
        primary_key: key("a", 2),
        cells: vec![],
    };
    let resp = c
        .batch_write_row(
            &pb::BatchWriteRowRequest {
                tables: vec![pb::TableInBatchWriteRowRequest {
                    table_name: "by_city".into(),
                    rows: vec![pb::RowInBatchWriteRowRequest {
                        r#type: pb::OperationType::Put as i32,
                        row_change: encode_put_row(&row).into(),
                        condition: condition(pb::RowExistenceExpectation::Ignore),
                        return_content: None,
                    }],
                }],
                transaction_id: None,
                is_atomic: None,
            },
            Idempotency::NotIdempotent,
        )
        .await
        .unwrap();
    let r = &resp.tables[0].rows[0];
    assert!(!r.is_ok);
    let e = r.error.as_ref().expect("row error");
    assert_eq!(
        (e.code.as_str(), e.message.as_deref()),
        (
            "OTSParameterInvalid",
            Some("Can't write index table directly.")
        )
    );
    // A table cannot take an index's name, nor an index a table's.
    assert_error(
        c.create_table(&indexed_table("by_city", vec![])).await,
        409,
        "OTSObjectAlreadyExist",
        "Requested table already exists.",
    );
    c.create_table(&indexed_table("u", vec![])).await.unwrap();
    for (name, message) in [
        (
            "by_city",
            "The index name 'by_city' is taken by an index of table 't'.",
        ),
        ("t", "The index name 't' is the name of a table."),
    ] {
        assert_error(
            c.create_index(&pb::CreateIndexRequest {
                main_table_name: "u".into(),
                index_meta: index(name, &["city"], &[], false),
                include_base_data: None,
            })
            .await,
            400,
            "OTSParameterInvalid",
            message,
        );
    }
}

#[tokio::test]
async fn invalid_indexes_are_refused() {
    let env = start().await;
    let c = &env.client;
    let cases: Vec<(pb::CreateTableRequest, &str)> = vec![
        (
            indexed_table("t", vec![index("i", &["nope"], &[], false)]),
            "The primary key column 'nope' of index 'i' is neither a primary key column nor a defined column of table 't'.",
        ),
        (
            indexed_table("t", vec![index("i", &["city"], &["pk2"], false)]),
            "The defined column 'pk2' of index 'i' is not a defined column of table 't'.",
        ),
        (
            indexed_table("t", vec![index("i", &["city"], &["city"], false)]),
            "Duplicated column in index 'i': 'city'.",
        ),
        (
            indexed_table("t", vec![index("i", &["city", "city"], &[], false)]),
            "Duplicated primary key column in index 'i': 'city'.",
        ),
        (
            indexed_table("t", vec![index("i", &[], &[], false)]),
            "Index 'i' has no primary key column.",
        ),
        (
            indexed_table(
                "t",
                vec![
                    index("i", &["city"], &[], false),
                    index("i", &["age"], &[], false),
                ],
            ),
            "Duplicated index name: 'i'.",
        ),
        (
            indexed_table(
                "t",
                (0..6)
                    .map(|i| index(&format!("i{i}"), &["city"], &[], false))
                    .collect(),
            ),
            "The number of indexes of table 't' exceeds the limit: 5.",
        ),
        (
            indexed_table("t", vec![index("t", &["city"], &[], false)]),
            "The index name 't' is the name of its table.",
        ),
        (
            indexed_table("t", vec![index("i", &["age", "pk1"], &[], true)]),
            "The first primary key column of local index 'i' must be the partition key of table 't'.",
        ),
        (
            indexed_table(
                "t",
                vec![pb::IndexMeta {
                    index_type: 5,
                    ..index("i", &["city"], &[], false)
                }],
            ),
            "Unknown index type: 5.",
        ),
        (
            indexed_table("t", vec![index("bad-name", &["city"], &[], false)]),
            "Invalid index name: 'bad-name'.",
        ),
        (
            {
                let mut r = indexed_table("t", vec![index("i", &["city"], &[], false)]);
                r.table_options.as_mut().unwrap().max_versions = Some(2);
                r
            },
            "A table with indexes must keep one version: table 't' has max_versions 2.",
        ),
        (
            {
                let mut r = indexed_table("t", vec![index("i", &["city"], &[], false)]);
                r.table_options.as_mut().unwrap().time_to_live = Some(86400 * 2);
                r
            },
            "A table with indexes must have time_to_live -1 or disallow updates: table 't' has time_to_live 172800 and allow_update true.",
        ),
    ];
    for (req, message) in cases {
        assert_error(
            c.create_table(&req).await,
            400,
            "OTSParameterInvalid",
            message,
        );
    }
    // Nothing was created.
    assert!(c.list_table().await.unwrap().is_empty());

    // A TTL is fine when updates are disallowed.
    let mut ok = indexed_table("t", vec![index("i", &["city"], &[], false)]);
    let o = ok.table_options.as_mut().unwrap();
    o.time_to_live = Some(86400 * 2);
    o.allow_update = Some(false);
    c.create_table(&ok).await.unwrap();
    let d = c.describe_table("t").await.unwrap();
    assert_eq!(d.table_options.allow_update, Some(false));
    assert_eq!(d.index_metas.len(), 1);

    // CreateIndex checks the same rules; UpdateTable cannot break them afterwards.
    c.create_table(&create_req(
        "multi",
        vec![pk_schema("pk1", pb::PrimaryKeyType::String)],
        3,
        -1,
    ))
    .await
    .unwrap();
    assert_error(
        c.create_index(&pb::CreateIndexRequest {
            main_table_name: "multi".into(),
            index_meta: index("j", &["pk1"], &[], false),
            include_base_data: None,
        })
        .await,
        400,
        "OTSParameterInvalid",
        "A table with indexes must keep one version: table 'multi' has max_versions 3.",
    );
    assert_error(
        c.update_table(&pb::UpdateTableRequest {
            table_name: "t".into(),
            reserved_throughput: None,
            table_options: Some(pb::TableOptions {
                max_versions: Some(2),
                ..Default::default()
            }),
            stream_spec: None,
        })
        .await,
        400,
        "OTSParameterInvalid",
        "A table with indexes must keep one version: table 't' has max_versions 2.",
    );
    assert_eq!(
        c.describe_table("t")
            .await
            .unwrap()
            .table_options
            .max_versions,
        Some(1)
    );
}
