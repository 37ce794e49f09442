//! `Capture` against the emulator's Stream API: a window holds exactly the records logged inside
//! it, in order per key, parents before children after a shard split; the end position continues
//! exactly where the window ended; a trimmed position is `StreamError::Trimmed`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ots_emulator::{Emulator, EmulatorHandle};
use ots_format::time::unix_micros;
use ots_format::{Change, ChangeOp, StreamPosition};
use ots_scan::stream::{Capture, CaptureOptions, StreamError, position_at, table_stream};
use ots_wire::plainbuffer::{encode_delete_row, encode_put_row, encode_update_row};
use ots_wire::types::{Cell, ColumnUpdate, PkColumn, PkValue, Row, Value};
use ots_wire::{ClientConfig, Credentials, Idempotency, OtsClient, pb};

const T: &str = "s";

async fn emulator() -> (EmulatorHandle, OtsClient) {
    let emu = Emulator::builder()
        .instance("streaminst")
        .credentials("ak", "sk")
        .start()
        .await
        .unwrap();
    let client = OtsClient::new(ClientConfig::new(
        emu.endpoint(),
        "streaminst",
        Credentials::new("ak", "sk"),
    ))
    .unwrap();
    let mut req = ots_datagen::create_table_request(T);
    req.table_meta.primary_key = vec![pb::PrimaryKeySchema {
        name: "id".into(),
        r#type: pb::PrimaryKeyType::Integer as i32,
        option: None,
    }];
    req.stream_spec = Some(pb::StreamSpecification {
        enable_stream: true,
        expiration_time: Some(24),
        columns_to_get: Vec::new(),
    });
    client.create_table(&req).await.unwrap();
    (emu, client)
}

fn key(i: i64) -> Vec<PkColumn> {
    vec![PkColumn::new("id", PkValue::Integer(i))]
}

fn ignore() -> pb::Condition {
    pb::Condition {
        row_existence: pb::RowExistenceExpectation::Ignore as i32,
        column_condition: None,
    }
}

async fn put(client: &OtsClient, i: i64, v: i64) {
    let row = Row {
        primary_key: key(i),
        cells: vec![Cell::new("v", Value::Integer(v), None)],
    };
    let req = pb::PutRowRequest {
        table_name: T.into(),
        row: Bytes::from(encode_put_row(&row)),
        condition: ignore(),
        ..Default::default()
    };
    client.put_row(&req, Idempotency::Idempotent).await.unwrap();
}

async fn update(client: &OtsClient, i: i64, ops: Vec<ColumnUpdate>) {
    let req = pb::UpdateRowRequest {
        table_name: T.into(),
        row_change: Bytes::from(encode_update_row(&key(i), &ops)),
        condition: ignore(),
        ..Default::default()
    };
    client
        .update_row(&req, Idempotency::Idempotent)
        .await
        .unwrap();
}

async fn delete(client: &OtsClient, i: i64) {
    let req = pb::DeleteRowRequest {
        table_name: T.into(),
        primary_key: Bytes::from(encode_delete_row(&key(i))),
        condition: ignore(),
        ..Default::default()
    };
    client
        .delete_row(&req, Idempotency::Idempotent)
        .await
        .unwrap();
}

fn now_us() -> i64 {
    unix_micros(SystemTime::now())
}

fn fast() -> CaptureOptions {
    CaptureOptions {
        limit: 7,
        settle: Duration::from_millis(50),
        poll: Duration::from_millis(10),
    }
}

async fn capture_all(
    client: &OtsClient,
    stream: &str,
    start: &StreamPosition,
    t_c: i64,
) -> Result<(Vec<Change>, StreamPosition, Vec<String>), StreamError> {
    let mut cap = Capture::open(client, stream, start, t_c, fast()).await?;
    let mut all = Vec::new();
    while let Some(batch) = cap.next_batch().await? {
        all.extend(batch);
    }
    Ok((all, cap.end_position(), cap.shards_read().to_vec()))
}

fn key_of(c: &Change) -> i64 {
    match c.primary_key[0].value {
        PkValue::Integer(i) => i,
        _ => panic!("integer keys"),
    }
}

#[tokio::test]
async fn a_window_holds_exactly_its_records_and_the_next_continues() {
    let (_emu, client) = emulator().await;
    put(&client, 0, 0).await;
    let stream = table_stream(&client, T).await.unwrap().expect("stream on");
    let start = position_at(&client, &stream, now_us()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    for i in 0..20 {
        put(&client, i, i * 10).await;
    }
    let ms = now_us() / 1000;
    update(
        &client,
        3,
        vec![
            ColumnUpdate::Put {
                name: "w".into(),
                value: Value::String("x".into()),
                timestamp: Some(ms),
            },
            ColumnUpdate::DeleteOneVersion {
                name: "w".into(),
                timestamp: ms - 1,
            },
            ColumnUpdate::DeleteAllVersions { name: "v".into() },
        ],
    )
    .await;
    delete(&client, 4).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let t_c = now_us();
    tokio::time::sleep(Duration::from_millis(2)).await;
    // After T_c: the next window's.
    for i in 100..105 {
        put(&client, i, i).await;
    }
    let (changes, end, _) = capture_all(&client, &stream, &start, t_c).await.unwrap();
    assert_eq!(changes.len(), 22, "20 puts, 1 update, 1 delete");
    assert!(changes.iter().all(|c| key_of(c) < 100));
    assert!(
        changes
            .iter()
            .all(|c| c.sequence.timestamp_us > start.t_us && c.sequence.timestamp_us <= t_c)
    );
    let ordinals: Vec<u64> = changes.iter().map(|c| c.ordinal).collect();
    assert_eq!(ordinals, (0..22).collect::<Vec<_>>());
    let upd = changes
        .iter()
        .find(|c| c.op == ChangeOp::UpdateRow)
        .unwrap();
    assert_eq!(key_of(upd), 3);
    assert!(
        matches!(upd.cells[1], ColumnUpdate::DeleteOneVersion { timestamp, .. } if timestamp == ms - 1)
    );
    assert!(matches!(
        upd.cells[2],
        ColumnUpdate::DeleteAllVersions { .. }
    ));
    let del = changes
        .iter()
        .find(|c| c.op == ChangeOp::DeleteRow)
        .unwrap();
    assert_eq!(key_of(del), 4);
    assert!(del.cells.is_empty());
    assert_eq!(end.t_us, t_c);

    // The next window from the end position: exactly the 5 later puts.
    let t_c2 = now_us();
    let (next, _, _) = capture_all(&client, &stream, &end, t_c2).await.unwrap();
    let keys: Vec<i64> = next.iter().map(key_of).collect();
    assert_eq!(keys, vec![100, 101, 102, 103, 104]);
}

#[tokio::test]
async fn parents_are_read_before_children_and_keys_stay_in_order() {
    let (emu, client) = emulator().await;
    let stream = table_stream(&client, T).await.unwrap().unwrap();
    let start = position_at(&client, &stream, now_us()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    // Each key gets increasing values across two shard splits.
    let mut v = 0;
    for _round in 0..3 {
        for i in 0..16 {
            v += 1;
            put(&client, i, v).await;
        }
        emu.split_stream_shards(T).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    let t_c = now_us();
    let (changes, end, order) = capture_all(&client, &stream, &start, t_c).await.unwrap();
    assert_eq!(changes.len(), 48);
    assert_eq!(order.len(), 15, "1 + 2 + 4 + 8 shards read: {order:?}");
    let mut last: HashMap<i64, i64> = HashMap::new();
    for c in &changes {
        let ColumnUpdate::Put {
            value: Value::Integer(x),
            ..
        } = c.cells[0]
        else {
            panic!("puts")
        };
        let prev = last.insert(key_of(c), x);
        assert!(prev.is_none_or(|p| p < x), "key {} out of order", key_of(c));
    }
    // Finished parents are kept as finished, open children with an iterator.
    let finished = end.checkpoints.iter().filter(|c| c.finished()).count();
    assert_eq!(finished, 7, "{end:?}");
    assert_eq!(end.checkpoints.len(), 15);
}

#[tokio::test]
async fn a_trimmed_position_is_a_typed_error() {
    let (emu, client) = emulator().await;
    let stream = table_stream(&client, T).await.unwrap().unwrap();
    let start = position_at(&client, &stream, now_us()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    for i in 0..5 {
        put(&client, i, i).await;
    }
    let cut = now_us() + 1;
    assert_eq!(emu.trim_stream(T, cut).unwrap(), 5);
    let err = ots_scan::stream::check_readable(&client, &start)
        .await
        .unwrap_err();
    assert!(err.is_trimmed(), "{err}");
    let err = capture_all(&client, &stream, &start, now_us())
        .await
        .unwrap_err();
    assert!(err.is_trimmed(), "{err}");
    assert!(err.to_string().contains("full snapshot"), "{err}");
}
