//! The Stream API: what every write path logs, reading shards (limits, paging, iterators), shard
//! splits, trimming, enabling and disabling.

use std::collections::{BTreeMap, BTreeSet};

use ots_wire::types::{CellOp, RecordSequence};

use super::*;

const NOT_EXIST: &str = "OTSObjectNotExist";
const PARAM: &str = "OTSParameterInvalid";
const TRIMMED: &str = "Requested stream data is already trimmed or does not exist.";

fn spec(enable: bool, hours: Option<i32>) -> pb::StreamSpecification {
    pb::StreamSpecification {
        enable_stream: enable,
        expiration_time: hours,
        columns_to_get: vec![],
    }
}

/// `t(pk1 STRING, pk2 INTEGER)` with a stream of 24 hours.
async fn create_stream_table(c: &OtsClient, table: &str, max_versions: i32) {
    let mut req = create_req(
        table,
        vec![
            pk_schema("pk1", pb::PrimaryKeyType::String),
            pk_schema("pk2", pb::PrimaryKeyType::Integer),
        ],
        max_versions,
        -1,
    );
    req.stream_spec = Some(spec(true, Some(24)));
    c.create_table(&req).await.expect("create table");
}

async fn update_stream(
    c: &OtsClient,
    table: &str,
    s: pb::StreamSpecification,
) -> Result<pb::UpdateTableResponse, OtsError> {
    c.update_table(&pb::UpdateTableRequest {
        table_name: table.into(),
        reserved_throughput: None,
        table_options: None,
        stream_spec: Some(s),
    })
    .await
}

async fn stream_id(c: &OtsClient, table: &str) -> String {
    let streams = c.list_stream(table).await.expect("list stream");
    assert_eq!(streams.len(), 1, "one stream");
    assert_eq!(streams[0].table_name, table);
    streams[0].stream_id.clone()
}

/// Every shard, paging `per_page` at a time.
async fn shards(c: &OtsClient, id: &str, per_page: Option<i32>) -> Vec<pb::StreamShard> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let resp = c
            .describe_stream(&pb::DescribeStreamRequest {
                stream_id: id.into(),
                inclusive_start_shard_id: start,
                shard_limit: per_page,
            })
            .await
            .expect("describe stream");
        assert_eq!(resp.stream_id, id);
        assert_eq!(resp.stream_status, pb::StreamStatus::StreamActive as i32);
        assert_eq!(resp.expiration_time, 24);
        if let Some(n) = per_page {
            assert!(resp.shards.len() <= n as usize);
        }
        out.extend(resp.shards);
        match resp.next_shard_id {
            Some(n) => start = Some(n),
            None => return out,
        }
    }
}

/// A logged cell: (name, value, op, timestamp).
type LoggedCell = (String, Option<Value>, Option<CellOp>, Option<i64>);

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    action: pb::ActionType,
    pk: Vec<PkColumn>,
    cells: Vec<LoggedCell>,
    delete_marker: bool,
    seq: RecordSequence,
}

fn decode_record(r: &pb::get_stream_record_response::StreamRecord) -> Rec {
    let row = decode_single_row(&r.record)
        .expect("record decodes")
        .expect("one row");
    Rec {
        action: pb::ActionType::try_from(r.action_type).expect("action"),
        pk: row.to_row().primary_key,
        cells: row
            .cells
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.map(|v| v.to_owned()),
                    c.op,
                    c.timestamp,
                )
            })
            .collect(),
        delete_marker: row.delete_marker,
        seq: row.sequence.expect("a stream record has a sequence"),
    }
}

/// Reads a shard from its start to its end (closed) or until caught up (open). Returns the records
/// and whether the shard ended.
async fn read_shard(c: &OtsClient, id: &str, shard: &str, limit: Option<i32>) -> (Vec<Rec>, bool) {
    let mut it = c
        .get_shard_iterator(id, shard, None)
        .await
        .expect("shard iterator");
    let mut out = Vec::new();
    loop {
        let resp = c.get_stream_record(&it, limit).await.expect("records");
        let n = resp.stream_records.len();
        out.extend(resp.stream_records.iter().map(decode_record));
        match resp.next_shard_iterator {
            None => return (out, true),
            Some(next) if n == 0 => {
                assert_eq!(next, it, "caught up: the same iterator");
                return (out, false);
            }
            Some(next) => it = next,
        }
    }
}

/// Every record of the table's stream, shard by shard (parents first).
async fn read_all(c: &OtsClient, table: &str) -> Vec<Rec> {
    let id = stream_id(c, table).await;
    let mut out = Vec::new();
    for s in shards(c, &id, None).await {
        out.extend(read_shard(c, &id, &s.shard_id, None).await.0);
    }
    out
}

fn put_cell(
    name: &str,
    v: Value,
    ts: Option<i64>,
) -> (String, Option<Value>, Option<CellOp>, Option<i64>) {
    (name.into(), Some(v), None, ts)
}

fn is_now(ts: Option<i64>) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    ts.is_some_and(|t| (now - 60_000..=now).contains(&t))
}

fn batch_row(
    ty: pb::OperationType,
    row_change: Vec<u8>,
    e: pb::RowExistenceExpectation,
) -> pb::RowInBatchWriteRowRequest {
    pb::RowInBatchWriteRowRequest {
        r#type: ty as i32,
        row_change: row_change.into(),
        condition: condition(e),
        return_content: None,
    }
}

async fn batch(c: &OtsClient, table: &str, rows: Vec<pb::RowInBatchWriteRowRequest>) -> Vec<bool> {
    let resp = c
        .batch_write_row(
            &pb::BatchWriteRowRequest {
                tables: vec![pb::TableInBatchWriteRowRequest {
                    table_name: table.into(),
                    rows,
                }],
                transaction_id: None,
                is_atomic: None,
            },
            Idempotency::NotIdempotent,
        )
        .await
        .expect("batch write");
    resp.tables[0].rows.iter().map(|r| r.is_ok).collect()
}

#[tokio::test]
async fn every_write_path_logs_what_it_did() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 3).await;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 10_000;

    // PutRow: every written cell; the server-assigned timestamp filled in.
    put(
        c,
        "t",
        key("a", 1),
        vec![
            cell("s", Value::String("x".into())),
            Cell::new("i", Value::Integer(5), Some(ts)),
        ],
    )
    .await;
    // UpdateRow: cell operations in request order; an increment logs its result.
    update(
        c,
        "t",
        &key("a", 1),
        &[
            ColumnUpdate::Put {
                name: "s".into(),
                value: Value::String("y".into()),
                timestamp: Some(ts + 1),
            },
            ColumnUpdate::Increment {
                name: "i".into(),
                delta: 10,
            },
            ColumnUpdate::DeleteOneVersion {
                name: "old".into(),
                timestamp: ts - 5,
            },
            ColumnUpdate::DeleteAllVersions { name: "z".into() },
            ColumnUpdate::Put {
                name: "n".into(),
                value: Value::Boolean(true),
                timestamp: None,
            },
        ],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await
    .expect("update");
    // DeleteRow: the key and the delete marker.
    delete(c, "t", &key("a", 1), pb::RowExistenceExpectation::Ignore)
        .await
        .expect("delete");

    let recs = read_all(c, "t").await;
    assert_eq!(recs.len(), 3);
    let (p, u, d) = (&recs[0], &recs[1], &recs[2]);

    assert_eq!(p.action, pb::ActionType::PutRow);
    assert_eq!(p.pk, key("a", 1));
    assert!(!p.delete_marker);
    assert_eq!(p.cells.len(), 2);
    assert_eq!(p.cells[0].0, "s");
    assert_eq!(p.cells[0].1, Some(Value::String("x".into())));
    assert!(is_now(p.cells[0].3), "server timestamp: {:?}", p.cells[0].3);
    assert_eq!(p.cells[1], put_cell("i", Value::Integer(5), Some(ts)));

    assert_eq!(u.action, pb::ActionType::UpdateRow);
    assert_eq!(u.cells.len(), 5);
    assert_eq!(
        u.cells[0],
        put_cell("s", Value::String("y".into()), Some(ts + 1))
    );
    assert_eq!(u.cells[1].0, "i");
    assert_eq!(
        u.cells[1].1,
        Some(Value::Integer(15)),
        "the increment's result"
    );
    assert_eq!(u.cells[1].2, None, "logged as a put");
    assert!(is_now(u.cells[1].3));
    assert_eq!(
        u.cells[2],
        (
            "old".into(),
            None,
            Some(CellOp::DeleteOneVersion),
            Some(ts - 5)
        )
    );
    assert_eq!(
        u.cells[3],
        ("z".into(), None, Some(CellOp::DeleteAllVersions), None)
    );
    assert_eq!(u.cells[4].1, Some(Value::Boolean(true)));
    assert!(is_now(u.cells[4].3));
    // The logged increment result is what the table holds.
    let row = c
        .get_row(&get_req("t", &key("a", 1), Some(1)))
        .await
        .expect("get");
    assert!(row.row.is_empty(), "deleted");

    assert_eq!(d.action, pb::ActionType::DeleteRow);
    assert_eq!(d.pk, key("a", 1));
    assert!(d.cells.is_empty());
    assert!(d.delete_marker);

    // One write each: strictly increasing timestamps, row index 0, epoch 1.
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        recs.iter()
            .all(|r| r.seq.epoch == 1 && r.seq.row_index == 0)
    );
    assert_eq!(env.emu.stream_records("t"), Some(3));
}

#[tokio::test]
async fn put_row_replaces_the_whole_row_and_logs_it() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    put(
        c,
        "t",
        key("a", 1),
        vec![cell("x", Value::Integer(1)), cell("y", Value::Integer(2))],
    )
    .await;
    put(c, "t", key("a", 1), vec![cell("z", Value::Integer(3))]).await;
    let got = get(c, "t", &key("a", 1)).await.expect("row");
    assert_eq!(values(&got), vec![("z".to_string(), Value::Integer(3))]);
    let recs = read_all(c, "t").await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.action == pb::ActionType::PutRow));
    assert_eq!(recs[1].cells.len(), 1);
    assert_eq!(recs[1].cells[0].0, "z");
}

#[tokio::test]
async fn failed_writes_log_nothing_and_batch_rows_are_indexed() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    put(c, "t", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    // Failed conditions.
    let r = put_req(
        c,
        "t",
        key("a", 1),
        vec![cell("v", Value::Integer(2))],
        pb::RowExistenceExpectation::ExpectNotExist,
    )
    .await;
    assert_eq!(service_error(r).1, "OTSConditionCheckFail");
    let r = update(
        c,
        "t",
        &key("nope", 1),
        &[ColumnUpdate::Put {
            name: "v".into(),
            value: Value::Integer(1),
            timestamp: None,
        }],
        condition(pb::RowExistenceExpectation::ExpectExist),
        None,
    )
    .await;
    assert_eq!(service_error(r).1, "OTSConditionCheckFail");
    let r = delete(
        c,
        "t",
        &key("nope", 1),
        pb::RowExistenceExpectation::ExpectExist,
    )
    .await;
    assert_eq!(service_error(r).1, "OTSConditionCheckFail");
    // A failed increment (wrong type) logs nothing either.
    put(
        c,
        "t",
        key("s", 1),
        vec![cell("v", Value::String("x".into()))],
    )
    .await;
    let r = update(
        c,
        "t",
        &key("s", 1),
        &[ColumnUpdate::Increment {
            name: "v".into(),
            delta: 1,
        }],
        condition(pb::RowExistenceExpectation::Ignore),
        None,
    )
    .await;
    assert_eq!(service_error(r).1, PARAM);
    assert_eq!(env.emu.stream_records("t"), Some(2));

    // BatchWriteRow: only the rows that succeeded, one timestamp, row_index 0, 1, 2.
    let put_bytes = |k: &str, v: i64| {
        encode_put_row(&Row {
            primary_key: key(k, 1),
            cells: vec![cell("v", Value::Integer(v))],
        })
    };
    let ok = batch(
        c,
        "t",
        vec![
            batch_row(
                pb::OperationType::Put,
                put_bytes("b", 1),
                pb::RowExistenceExpectation::Ignore,
            ),
            // Exists already: fails.
            batch_row(
                pb::OperationType::Put,
                put_bytes("a", 9),
                pb::RowExistenceExpectation::ExpectNotExist,
            ),
            batch_row(
                pb::OperationType::Update,
                encode_update_row(
                    &key("c", 1),
                    &[ColumnUpdate::Put {
                        name: "v".into(),
                        value: Value::Integer(3),
                        timestamp: None,
                    }],
                ),
                pb::RowExistenceExpectation::Ignore,
            ),
            batch_row(
                pb::OperationType::Delete,
                encode_delete_row(&key("s", 1)),
                pb::RowExistenceExpectation::Ignore,
            ),
        ],
    )
    .await;
    assert_eq!(ok, vec![true, false, true, true]);
    let recs = read_all(c, "t").await;
    assert_eq!(recs.len(), 5);
    let batch_recs = &recs[2..];
    let actions: Vec<_> = batch_recs.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            pb::ActionType::PutRow,
            pb::ActionType::UpdateRow,
            pb::ActionType::DeleteRow
        ]
    );
    let pks: Vec<_> = batch_recs.iter().map(|r| r.pk.clone()).collect();
    assert_eq!(pks, vec![key("b", 1), key("c", 1), key("s", 1)]);
    assert!(
        batch_recs
            .iter()
            .all(|r| r.seq.timestamp_us == batch_recs[0].seq.timestamp_us)
    );
    let idx: Vec<_> = batch_recs.iter().map(|r| r.seq.row_index).collect();
    assert_eq!(idx, vec![0, 1, 2]);
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn a_table_without_a_stream() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "plain", 1).await;
    assert!(c.list_stream("plain").await.expect("list").is_empty());
    let d = c.describe_table("plain").await.expect("describe");
    assert_eq!(d.stream_details.map(|s| s.enable_stream), Some(false));
    put(c, "plain", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    assert_eq!(env.emu.stream_records("plain"), None);
    assert_eq!(service_error(c.list_stream("nope").await).1, NOT_EXIST);
    let r = c
        .describe_stream(&pb::DescribeStreamRequest {
            stream_id: "no-such-stream".into(),
            inclusive_start_shard_id: None,
            shard_limit: None,
        })
        .await;
    assert_eq!(service_error(r).1, NOT_EXIST);
    assert_eq!(
        service_error(
            c.get_shard_iterator("no-such-stream", "shard-00000000", None)
                .await
        )
        .1,
        NOT_EXIST
    );
    assert!(env.emu.trim_stream("plain", 0).is_err());
    assert!(env.emu.split_stream_shards("plain").is_err());
}

#[tokio::test]
async fn limits_caught_up_iterators_and_timestamps() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    for i in 0..25 {
        put(c, "t", key("k", i), vec![cell("v", Value::Integer(i))]).await;
    }
    let id = stream_id(c, "t").await;
    let all = shards(c, &id, None).await;
    assert_eq!(all.len(), 1);
    let shard = &all[0].shard_id;
    let mut it = c
        .get_shard_iterator(&id, shard, None)
        .await
        .expect("iterator");
    let mut sizes = Vec::new();
    let mut recs = Vec::new();
    loop {
        let resp = c.get_stream_record(&it, Some(10)).await.expect("read");
        let next = resp
            .next_shard_iterator
            .clone()
            .expect("open shard: always an iterator");
        sizes.push(resp.stream_records.len());
        recs.extend(resp.stream_records.iter().map(decode_record));
        if resp.stream_records.is_empty() {
            assert_eq!(next, it, "caught up: the same iterator");
            break;
        }
        it = next;
    }
    assert_eq!(sizes, vec![10, 10, 5, 0]);
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
    // New writes appear at the caught-up iterator.
    put(c, "t", key("k", 99), vec![cell("v", Value::Integer(99))]).await;
    let resp = c.get_stream_record(&it, None).await.expect("read");
    assert_eq!(resp.stream_records.len(), 1);
    assert_eq!(decode_record(&resp.stream_records[0]).pk, key("k", 99));

    // Default limit 100; a limit above 1000 is capped, not refused; non-positive is refused.
    let start_it = c
        .get_shard_iterator(&id, shard, None)
        .await
        .expect("iterator");
    let resp = c
        .get_stream_record(&start_it, Some(5000))
        .await
        .expect("read");
    assert_eq!(resp.stream_records.len(), 26);
    assert_eq!(
        service_error(c.get_stream_record(&start_it, Some(0)).await).1,
        PARAM
    );

    // By timestamp: the first record at or after it.
    let t = recs[7].seq.timestamp_us;
    let it = c
        .get_shard_iterator(&id, shard, Some(t))
        .await
        .expect("iterator");
    let resp = c.get_stream_record(&it, Some(1)).await.expect("read");
    assert_eq!(decode_record(&resp.stream_records[0]).seq, recs[7].seq);
    let it = c
        .get_shard_iterator(&id, shard, Some(recs[6].seq.timestamp_us + 1))
        .await
        .expect("iterator");
    let resp = c.get_stream_record(&it, Some(1)).await.expect("read");
    assert_eq!(decode_record(&resp.stream_records[0]).seq, recs[7].seq);

    // Malformed iterators.
    for bad in ["", "not an iterator", "00ff"] {
        assert_eq!(service_error(c.get_stream_record(bad, None).await).1, PARAM);
    }
    assert_eq!(
        service_error(c.get_shard_iterator(&id, "shard-99999999", None).await).1,
        NOT_EXIST
    );
}

#[tokio::test]
async fn split_shards_close_parents_and_keep_keys_in_one_child() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    let keys: Vec<String> = (0..16).map(|i| format!("key{i}")).collect();
    for k in &keys {
        put(c, "t", key(k, 1), vec![cell("v", Value::Integer(1))]).await;
    }
    let id = stream_id(c, "t").await;
    let first = shards(c, &id, None).await;
    let children = env.emu.split_stream_shards("t").expect("split");
    assert_eq!(children.len(), 2);
    for round in 2..5 {
        for k in &keys {
            put(c, "t", key(k, 1), vec![cell("v", Value::Integer(round))]).await;
        }
    }
    let grandchildren = env.emu.split_stream_shards("t").expect("split");
    assert_eq!(grandchildren.len(), 4);
    for k in &keys {
        put(c, "t", key(k, 1), vec![cell("v", Value::Integer(5))]).await;
    }

    // Paged one shard at a time: 1 + 2 + 4 shards, parents before children.
    let listed = shards(c, &id, Some(1)).await;
    assert_eq!(listed.len(), 7);
    assert_eq!(listed, shards(c, &id, None).await);
    assert_eq!(listed[0].shard_id, first[0].shard_id);
    let mut seen = BTreeSet::new();
    for s in &listed {
        if let Some(p) = &s.parent_id {
            assert!(seen.contains(p), "parent {p} listed before {}", s.shard_id);
        }
        assert!(s.parent_sibling_id.is_none());
        seen.insert(s.shard_id.clone());
    }
    for (s, parent) in listed[1..3].iter().zip([&first[0].shard_id; 2]) {
        assert_eq!(s.parent_id.as_ref(), Some(parent));
    }
    for s in &listed[3..] {
        assert!(children.contains(s.parent_id.as_ref().expect("a parent")));
    }

    // Closed shards end (no iterator); open ones are caught up. Each key's records after a split
    // sit in exactly one child; in all, every key has its 5 records in order.
    let mut by_key: BTreeMap<String, Vec<(usize, i64)>> = BTreeMap::new();
    for (i, s) in listed.iter().enumerate() {
        let (recs, ended) = read_shard(c, &id, &s.shard_id, Some(3)).await;
        assert_eq!(ended, i < 3, "shard {i} ended");
        assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
        for r in recs {
            let k = match &r.pk[0].value {
                PkValue::String(s) => s.clone(),
                other => panic!("{other:?}"),
            };
            let v = match &r.cells[0].1 {
                Some(Value::Integer(v)) => *v,
                other => panic!("{other:?}"),
            };
            by_key.entry(k).or_default().push((i, v));
        }
    }
    assert_eq!(by_key.len(), keys.len());
    for (k, recs) in &by_key {
        let values: Vec<i64> = recs.iter().map(|r| r.1).collect();
        assert_eq!(values, vec![1, 2, 3, 4, 5], "{k}");
        assert_eq!(recs[0].0, 0);
        let child: BTreeSet<usize> = recs[1..4].iter().map(|r| r.0).collect();
        assert_eq!(child.len(), 1, "{k}: one child after the first split");
        let c1 = *child.iter().next().expect("child");
        assert!((1..3).contains(&c1));
        let gc = recs[4].0;
        assert_eq!(
            listed[gc].parent_id.as_ref(),
            Some(&listed[c1].shard_id),
            "{k}: the grandchild descends from the child"
        );
    }
    // With 16 keys, both children got some.
    let used: BTreeSet<usize> = by_key.values().map(|r| r[1].0).collect();
    assert_eq!(used.len(), 2);
}

#[tokio::test]
async fn trimmed_records_are_reported_as_trimmed() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    for i in 0..5 {
        put(c, "t", key("k", i), vec![cell("v", Value::Integer(i))]).await;
    }
    let id = stream_id(c, "t").await;
    let shard = shards(c, &id, None).await[0].shard_id.clone();
    let old_it = c
        .get_shard_iterator(&id, &shard, None)
        .await
        .expect("iterator");
    let (recs, _) = read_shard(c, &id, &shard, None).await;
    assert_eq!(recs.len(), 5);

    assert_eq!(env.emu.trim_stream("t", recs[2].seq.timestamp_us), Ok(2));
    assert_eq!(env.emu.stream_records("t"), Some(3));
    let e = c
        .get_stream_record(&old_it, None)
        .await
        .expect_err("trimmed");
    assert!(e.is_trimmed(), "{e}");
    assert_error(
        c.get_stream_record(&old_it, None).await,
        400,
        "OTSTrimmedDataAccess",
        TRIMMED,
    );
    // By time: before the trim horizon is trimmed; after it works.
    let r = c
        .get_shard_iterator(&id, &shard, Some(recs[1].seq.timestamp_us))
        .await;
    assert!(r.expect_err("trimmed").is_trimmed());
    let it = c
        .get_shard_iterator(&id, &shard, Some(recs[1].seq.timestamp_us + 1))
        .await
        .expect("iterator");
    let resp = c.get_stream_record(&it, None).await.expect("read");
    assert_eq!(decode_record(&resp.stream_records[0]).seq, recs[2].seq);
    // A fresh iterator starts at the oldest kept record.
    let (kept, _) = read_shard(c, &id, &shard, None).await;
    assert_eq!(kept, recs[2..].to_vec());

    // A closed shard emptied by trimming is no longer listed; its iterators are trimmed.
    env.emu.split_stream_shards("t").expect("split");
    assert_eq!(env.emu.trim_stream("t", i64::MAX), Ok(3));
    let listed = shards(c, &id, None).await;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|s| s.parent_id.as_deref() == Some(shard.as_str()))
    );
    let e = c
        .get_shard_iterator(&id, &shard, None)
        .await
        .expect_err("gone");
    assert!(e.is_trimmed(), "{e}");
}

#[tokio::test]
async fn enabling_disabling_and_reenabling() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    // An expiration is required and must be positive.
    for hours in [None, Some(0), Some(-1)] {
        let r = update_stream(c, "t", spec(true, hours)).await;
        assert_eq!(service_error(r).1, PARAM);
    }
    let mut req = create_req(
        "t2",
        vec![pk_schema("pk1", pb::PrimaryKeyType::String)],
        1,
        -1,
    );
    req.stream_spec = Some(spec(true, Some(0)));
    assert_eq!(service_error(c.create_table(&req).await).1, PARAM);

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let resp = update_stream(c, "t", spec(true, Some(12)))
        .await
        .expect("enable");
    let details = resp.stream_details.expect("stream details");
    assert!(details.enable_stream);
    assert_eq!(details.expiration_time, Some(12));
    let first_id = details.stream_id.expect("stream id");
    assert!(details.last_enable_time.expect("enable time") >= before);
    let d = c.describe_table("t").await.expect("describe");
    assert_eq!(
        d.stream_details.and_then(|s| s.stream_id),
        Some(first_id.clone())
    );
    assert_eq!(stream_id(c, "t").await, first_id);

    put(c, "t", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    let shard = c
        .describe_stream(&pb::DescribeStreamRequest {
            stream_id: first_id.clone(),
            inclusive_start_shard_id: None,
            shard_limit: None,
        })
        .await
        .expect("describe")
        .shards[0]
        .shard_id
        .clone();
    let old_it = c
        .get_shard_iterator(&first_id, &shard, None)
        .await
        .expect("iterator");

    // Disabling drops the log.
    let resp = update_stream(c, "t", spec(false, None))
        .await
        .expect("disable");
    assert!(!resp.stream_details.expect("details").enable_stream);
    assert!(c.list_stream("t").await.expect("list").is_empty());
    assert_eq!(env.emu.stream_records("t"), None);
    put(c, "t", key("a", 2), vec![cell("v", Value::Integer(2))]).await;

    // Re-enabling: a new id, an empty log; the old stream is gone.
    let resp = update_stream(c, "t", spec(true, Some(24)))
        .await
        .expect("enable");
    let second_id = resp.stream_details.and_then(|d| d.stream_id).expect("id");
    assert_ne!(second_id, first_id);
    assert_eq!(env.emu.stream_records("t"), Some(0));
    assert_eq!(
        service_error(c.get_stream_record(&old_it, None).await).1,
        PARAM
    );
    let r = c
        .describe_stream(&pb::DescribeStreamRequest {
            stream_id: first_id,
            inclusive_start_shard_id: None,
            shard_limit: None,
        })
        .await;
    assert_eq!(service_error(r).1, NOT_EXIST);
    put(c, "t", key("a", 3), vec![cell("v", Value::Integer(3))]).await;
    let recs = read_all(c, "t").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].pk, key("a", 3));
}

#[tokio::test]
async fn admin_actions_and_automatic_splits() {
    let env = start_with(builder().stream_split_every(4)).await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    for i in 0..10 {
        put(c, "t", key("k", i), vec![cell("v", Value::Integer(i))]).await;
    }
    let id = stream_id(c, "t").await;
    // Splits after records 4 and 8: 1 + 2 + 4 shards.
    let listed = shards(c, &id, None).await;
    assert_eq!(listed.len(), 7);
    assert_eq!(read_all(c, "t").await.len(), 10);

    let json = |r: &RawResponse| -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("JSON body")
    };
    let r = signed_post(
        &env.emu,
        "AdminSplitStreamShards",
        br#"{"table_name": "t"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["shard_ids"].as_array().map(Vec::len), Some(8));
    let r = signed_post(
        &env.emu,
        "AdminTrimStream",
        br#"{"table_name": "t", "before_us": 9223372036854775807}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["trimmed"], 10);
    let r = signed_post(
        &env.emu,
        "AdminTrimStream",
        br#"{"table_name": "nope", "before_us": 0}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(json(&r)["error"].is_string());
    let r = signed_post(&env.emu, "AdminTrimStream", b"{".to_vec()).await;
    assert_eq!(r.status, 400);
    // Unsigned: refused like any other action.
    let r = raw_post(
        &env.emu,
        "AdminTrimStream",
        &[],
        br#"{"table_name": "t", "before_us": 0}"#.to_vec(),
    )
    .await;
    assert_ne!(r.status, 200);
}

#[tokio::test]
async fn a_response_holds_about_4_mib_of_records() {
    let env = start().await;
    let c = &env.client;
    create_stream_table(c, "t", 1).await;
    // Three records of 1.5 MiB each: 4 MiB holds two.
    let big = "x".repeat(1536 * 1024);
    for i in 0..3 {
        put(
            c,
            "t",
            key("k", i),
            vec![cell("v", Value::String(big.clone()))],
        )
        .await;
    }
    let id = stream_id(c, "t").await;
    let shard = shards(c, &id, None).await[0].shard_id.clone();
    let it = c
        .get_shard_iterator(&id, &shard, None)
        .await
        .expect("iterator");
    let resp = c.get_stream_record(&it, None).await.expect("read");
    assert_eq!(resp.stream_records.len(), 2);
    assert_eq!(resp.may_more_record, Some(true));
    let read_cu = resp.consumed.as_ref().and_then(|c| c.capacity_unit.read);
    assert!(
        read_cu.is_some_and(|r| r >= 768),
        "read CU by bytes: {read_cu:?}"
    );
    let it = resp.next_shard_iterator.expect("more");
    let resp = c.get_stream_record(&it, None).await.expect("read");
    assert_eq!(resp.stream_records.len(), 1);
}
