//! Wire-level checks of the hand-written protobuf layer (`ots_wire::pb`):
//! byte-exact encoding against the vector produced by the official Python
//! SDK, proto2 `required` presence, unknown-field tolerance, zigzag.

use bytes::Bytes;
use ots_wire::pb;
use prost::Message;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/reference/plainbuffer-vectors.json"
);

fn vector(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("read {VECTORS}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("vectors JSON");
    json["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} not found"))
        .clone()
}

fn vector_hex(name: &str) -> Vec<u8> {
    hex::decode(vector(name)["hex"].as_str().expect("hex string")).expect("valid hex")
}

fn consumed(read: i32, write: i32) -> pb::ConsumedCapacity {
    pb::ConsumedCapacity {
        capacity_unit: pb::CapacityUnit {
            read: Some(read),
            write: Some(write),
        },
        capacity_data_size: None,
    }
}

#[test]
fn put_row_request_body_matches_python_sdk() {
    let row = vector_hex("put_row_request_row");
    let body_vector = vector("put_row_request_protobuf_body");
    let expected = hex::decode(body_vector["hex"].as_str().unwrap()).unwrap();

    let req = pb::PutRowRequest {
        table_name: "t".to_owned(),
        row: Bytes::from(row),
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        ..Default::default()
    };
    let body = req.encode_to_vec();
    assert_eq!(hex::encode(&body), hex::encode(&expected));
    assert_eq!(body.len() as u64, body_vector["length"].as_u64().unwrap());

    // Our Content-MD5 of our bytes equals the SDK's Content-MD5 of its bytes.
    let md5 = ots_wire::auth::content_md5(&body);
    assert_eq!(md5, body_vector["x_ots_contentmd5"].as_str().unwrap());

    // And it decodes back to the same message.
    assert_eq!(pb::PutRowRequest::decode(body.as_slice()).unwrap(), req);
}

#[test]
fn decoded_bytes_fields_share_the_input_buffer() {
    let body = Bytes::from(
        hex::decode(
            vector("put_row_request_protobuf_body")["hex"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    );
    let req = pb::PutRowRequest::decode(body.clone()).unwrap();
    let range = body.as_ptr_range();
    assert!(
        range.contains(&req.row.as_ptr()),
        "row was copied, not sliced"
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let msg = pb::DeleteTableRequest {
        table_name: "t1".to_owned(),
    };
    let mut buf = msg.encode_to_vec();
    // field 99, wire type 0 (varint): tag = 99 << 3 = 792 = 0x98 0x06; value 5.
    buf.extend_from_slice(&[0x98, 0x06, 0x05]);
    // field 100, wire type 2 (length-delimited), 2 bytes.
    buf.extend_from_slice(&[0xa2, 0x06, 0x02, 0xaa, 0xbb]);
    let decoded = pb::DeleteTableRequest::decode(buf.as_slice()).unwrap();
    assert_eq!(decoded, msg);

    // Same inside a nested message (Error inside a batch row result).
    let row = pb::RowInBatchWriteRowResponse {
        is_ok: false,
        error: Some(pb::Error {
            code: "OTSConditionCheckFail".to_owned(),
            message: Some("Condition check failed.".to_owned()),
            access_denied_detail: None,
        }),
        consumed: None,
        row: None,
    };
    let mut buf = row.encode_to_vec();
    buf.extend_from_slice(&[0x98, 0x06, 0x01]);
    assert_eq!(
        pb::RowInBatchWriteRowResponse::decode(buf.as_slice()).unwrap(),
        row
    );
}

#[test]
fn describe_table_response_round_trips_with_table_status() {
    let resp = pb::DescribeTableResponse {
        table_meta: pb::TableMeta {
            table_name: "t".to_owned(),
            primary_key: vec![pb::PrimaryKeySchema {
                name: "pk1".to_owned(),
                r#type: pb::PrimaryKeyType::String as i32,
                option: None,
            }],
            ..Default::default()
        },
        reserved_throughput_details: pb::ReservedThroughputDetails {
            capacity_unit: pb::CapacityUnit {
                read: Some(0),
                write: Some(0),
            },
            last_increase_time: 1_700_000_000,
            last_decrease_time: None,
        },
        table_options: pb::TableOptions {
            time_to_live: Some(-1),
            max_versions: Some(1),
            ..Default::default()
        },
        table_status: Some(pb::TableStatus::Active as i32),
        ..Default::default()
    };
    let buf = resp.encode_to_vec();
    // Field 4, varint, value ACTIVE = 1.
    assert!(buf.windows(2).any(|w| w == [0x20, 0x01]));
    let back = pb::DescribeTableResponse::decode(buf.as_slice()).unwrap();
    assert_eq!(back, resp);
    assert_eq!(back.table_status(), pb::TableStatus::Active);
}

#[test]
fn empty_responses_encode_to_nothing() {
    assert!(pb::CreateTableResponse {}.encode_to_vec().is_empty());
    assert!(pb::DeleteTableResponse {}.encode_to_vec().is_empty());
    assert!(pb::ListTableRequest {}.encode_to_vec().is_empty());
}

#[test]
fn split_location_repeat_is_zigzag() {
    let loc = pb::SplitLocation {
        location: String::new(),
        repeat: 1,
    };
    // 0a 00 (location = ""), then tag 0x10 (field 2, varint), zigzag(1) = 2.
    assert_eq!(loc.encode_to_vec(), [0x0a, 0x00, 0x10, 0x02]);

    let neg = pb::SplitLocation {
        location: "x".to_owned(),
        repeat: -1,
    };
    assert_eq!(neg.encode_to_vec(), [0x0a, 0x01, b'x', 0x10, 0x01]);
    assert_eq!(
        pb::SplitLocation::decode(&[0x0a, 0x00, 0x10, 0x02][..])
            .unwrap()
            .repeat,
        1
    );
}

#[test]
fn required_fields_are_always_emitted() {
    let resp = pb::GetRowResponse {
        consumed: consumed(1, 0),
        row: Bytes::new(),
        next_token: None,
    };
    let buf = resp.encode_to_vec();
    // consumed (field 1) = { capacity_unit (1) = { read 1, write 0 } }
    // then row (field 2) as an empty bytes value: 0x12 0x00.
    assert_eq!(
        buf,
        [0x0a, 0x06, 0x0a, 0x04, 0x08, 0x01, 0x10, 0x00, 0x12, 0x00]
    );
    assert!(buf.windows(2).any(|w| w == [0x12, 0x00]));

    // Same for GetRangeResponse.rows.
    let range = pb::GetRangeResponse {
        consumed: consumed(1, 0),
        rows: Bytes::new(),
        ..Default::default()
    };
    assert!(range.encode_to_vec().ends_with(&[0x12, 0x00]));

    // A required enum with value 0 is still emitted (IGNORE).
    let cond = pb::Condition {
        row_existence: pb::RowExistenceExpectation::Ignore as i32,
        column_condition: None,
    };
    assert_eq!(cond.encode_to_vec(), [0x08, 0x00]);
}

#[test]
fn proto2_defaults() {
    let req = pb::GetRangeRequest::default();
    assert!(req.return_entire_primary_keys());
    assert!(req.cache_blocks());
    assert_eq!(
        req.data_block_type_hint(),
        pb::DataBlockType::DbtPlainBuffer
    );
    assert_eq!(req.compress_type_hint(), pb::CompressType::CptNone);
    // Unset optional fields are not put on the wire, defaults or not.
    assert_eq!(
        req.encode_to_vec(),
        [0x0a, 0x00, 0x10, 0x00, 0x3a, 0x00, 0x42, 0x00]
    );

    assert!(pb::TableOptions::default().allow_update());
    assert_eq!(
        pb::BulkExportRequest::default().data_block_type_hint(),
        pb::DataBlockType::DbtSimpleRowMatrix
    );
}

#[test]
fn filter_round_trip() {
    let single = pb::SingleColumnValueFilter {
        comparator: pb::ComparatorType::CtEqual as i32,
        column_name: "c".to_owned(),
        column_value: Bytes::from_static(&[0x00, 7, 0, 0, 0, 0, 0, 0, 0]),
        filter_if_missing: false,
        latest_version_only: true,
        value_trans_rule: None,
    };
    let filter = pb::Filter {
        r#type: pb::FilterType::FtSingleColumnValue as i32,
        filter: single.encode_to_vec().into(),
    };
    let back = pb::Filter::decode(filter.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.r#type(), pb::FilterType::FtSingleColumnValue);
    assert_eq!(
        pb::SingleColumnValueFilter::decode(back.filter).unwrap(),
        single
    );
}
