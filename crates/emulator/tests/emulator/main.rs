//! End-to-end tests: the emulator runs in-process and is driven over real HTTP with signed requests,
//! mostly through our own wire client (which verifies every response like the official SDK does).

mod auth;
mod binary;
mod errors;
mod faults;
mod indexes;
mod range;
mod rows;
mod speed;
mod split;
mod stream;
mod tables;
mod wide;

use ots_emulator::{Emulator, EmulatorBuilder, EmulatorHandle};
use ots_wire::pb;
use ots_wire::plainbuffer::{
    decode_rows, decode_single_row, encode_delete_row, encode_primary_key, encode_put_row,
    encode_update_row,
};
use ots_wire::types::{Cell, ColumnUpdate, PkColumn, PkValue, Row, Value};
use ots_wire::{ClientConfig, Credentials, Idempotency, OtsClient, OtsError, RetryPolicy};
use prost::Message;

pub const AK: &str = "test-ak";
pub const SK: &str = "test-secret-0123456789";
pub const INSTANCE: &str = "testinst";

pub fn builder() -> EmulatorBuilder {
    Emulator::builder().instance(INSTANCE).credentials(AK, SK)
}

pub struct Env {
    pub emu: EmulatorHandle,
    pub client: OtsClient,
}

pub async fn start() -> Env {
    start_with(builder()).await
}

pub async fn start_with(b: EmulatorBuilder) -> Env {
    let emu = b.start().await.expect("emulator starts");
    let client = client_for(&emu, AK, SK);
    Env { emu, client }
}

/// A client without retries, so each call is exactly one HTTP exchange.
pub fn client_for(emu: &EmulatorHandle, ak: &str, sk: &str) -> OtsClient {
    let mut cfg = ClientConfig::new(emu.endpoint(), INSTANCE, Credentials::new(ak, sk));
    cfg.retry = RetryPolicy::none();
    OtsClient::new(cfg).expect("client")
}

/// (HTTP status, code, message) of a service error.
pub fn service_error<T: std::fmt::Debug>(r: Result<T, OtsError>) -> (u16, String, String) {
    let e = r.expect_err("expected a service error");
    match (e.http_status(), e.code(), e.message()) {
        (Some(s), Some(c), Some(m)) => (s, c.to_string(), m.to_string()),
        _ => panic!("not a service error: {e}"),
    }
}

pub fn assert_error<T: std::fmt::Debug>(
    r: Result<T, OtsError>,
    status: u16,
    code: &str,
    message: &str,
) {
    let (s, c, m) = service_error(r);
    assert_eq!((s, c.as_str(), m.as_str()), (status, code, message));
}

pub fn pk_schema(name: &str, ty: pb::PrimaryKeyType) -> pb::PrimaryKeySchema {
    pb::PrimaryKeySchema {
        name: name.into(),
        r#type: ty as i32,
        option: None,
    }
}

pub fn create_req(
    table: &str,
    pk: Vec<pb::PrimaryKeySchema>,
    max_versions: i32,
    ttl: i32,
) -> pb::CreateTableRequest {
    pb::CreateTableRequest {
        table_meta: pb::TableMeta {
            table_name: table.into(),
            primary_key: pk,
            defined_column: vec![],
            table_id: None,
            global_table_id: None,
        },
        reserved_throughput: pb::ReservedThroughput {
            capacity_unit: pb::CapacityUnit {
                read: Some(0),
                write: Some(0),
            },
        },
        table_options: Some(pb::TableOptions {
            time_to_live: Some(ttl),
            max_versions: Some(max_versions),
            deviation_cell_version_in_sec: Some(86400),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Table `t(pk1 STRING, pk2 INTEGER)`.
pub async fn create_two_pk_table(c: &OtsClient, table: &str, max_versions: i32) {
    c.create_table(&create_req(
        table,
        vec![
            pk_schema("pk1", pb::PrimaryKeyType::String),
            pk_schema("pk2", pb::PrimaryKeyType::Integer),
        ],
        max_versions,
        -1,
    ))
    .await
    .expect("create table");
}

pub fn key(a: &str, b: i64) -> Vec<PkColumn> {
    vec![
        PkColumn::new("pk1", PkValue::String(a.into())),
        PkColumn::new("pk2", PkValue::Integer(b)),
    ]
}

pub fn condition(e: pb::RowExistenceExpectation) -> pb::Condition {
    pb::Condition {
        row_existence: e as i32,
        column_condition: None,
    }
}

pub async fn put(
    c: &OtsClient,
    table: &str,
    pk: Vec<PkColumn>,
    cells: Vec<Cell>,
) -> pb::PutRowResponse {
    put_req(c, table, pk, cells, pb::RowExistenceExpectation::Ignore)
        .await
        .expect("put row")
}

pub async fn put_req(
    c: &OtsClient,
    table: &str,
    pk: Vec<PkColumn>,
    cells: Vec<Cell>,
    e: pb::RowExistenceExpectation,
) -> Result<pb::PutRowResponse, OtsError> {
    let row = Row {
        primary_key: pk,
        cells,
    };
    c.put_row(
        &pb::PutRowRequest {
            table_name: table.into(),
            row: encode_put_row(&row).into(),
            condition: condition(e),
            return_content: None,
            transaction_id: None,
        },
        Idempotency::NotIdempotent,
    )
    .await
}

pub async fn update(
    c: &OtsClient,
    table: &str,
    pk: &[PkColumn],
    updates: &[ColumnUpdate],
    cond: pb::Condition,
    rc: Option<pb::ReturnContent>,
) -> Result<pb::UpdateRowResponse, OtsError> {
    c.update_row(
        &pb::UpdateRowRequest {
            table_name: table.into(),
            row_change: encode_update_row(pk, updates).into(),
            condition: cond,
            return_content: rc,
            transaction_id: None,
        },
        Idempotency::NotIdempotent,
    )
    .await
}

pub async fn delete(
    c: &OtsClient,
    table: &str,
    pk: &[PkColumn],
    e: pb::RowExistenceExpectation,
) -> Result<pb::DeleteRowResponse, OtsError> {
    c.delete_row(
        &pb::DeleteRowRequest {
            table_name: table.into(),
            primary_key: encode_delete_row(pk).into(),
            condition: condition(e),
            return_content: None,
            transaction_id: None,
        },
        Idempotency::NotIdempotent,
    )
    .await
}

pub fn get_req(table: &str, pk: &[PkColumn], max_versions: Option<i32>) -> pb::GetRowRequest {
    pb::GetRowRequest {
        table_name: table.into(),
        primary_key: encode_primary_key(pk).into(),
        max_versions,
        ..Default::default()
    }
}

/// GetRow with max_versions 1; `None` when the row is absent.
pub async fn get(c: &OtsClient, table: &str, pk: &[PkColumn]) -> Option<Row> {
    let resp = c
        .get_row(&get_req(table, pk, Some(1)))
        .await
        .expect("get row");
    decode_single_row(&resp.row)
        .expect("row decodes")
        .map(|r| r.to_row())
}

/// Attribute cells as (name, value) without timestamps.
pub fn values(row: &Row) -> Vec<(String, Value)> {
    row.cells
        .iter()
        .map(|c| (c.name.clone(), c.value.clone()))
        .collect()
}

pub fn cell(name: &str, v: Value) -> Cell {
    Cell::new(name, v, None)
}

pub fn range_req(
    table: &str,
    direction: pb::Direction,
    start: &[PkColumn],
    end: &[PkColumn],
    limit: Option<i32>,
) -> pb::GetRangeRequest {
    pb::GetRangeRequest {
        table_name: table.into(),
        direction: direction as i32,
        max_versions: Some(1),
        limit,
        inclusive_start_primary_key: encode_primary_key(start).into(),
        exclusive_end_primary_key: encode_primary_key(end).into(),
        ..Default::default()
    }
}

pub fn inf_key(min: bool) -> Vec<PkColumn> {
    let v = if min {
        PkValue::InfMin
    } else {
        PkValue::InfMax
    };
    vec![PkColumn::new("pk1", v.clone()), PkColumn::new("pk2", v)]
}

/// Rows of a GetRange page.
pub fn page_rows(resp: &pb::GetRangeResponse) -> Vec<Row> {
    decode_rows(&resp.rows)
        .expect("rows decode")
        .iter()
        .map(|r| r.to_row())
        .collect()
}

/// Writes rows through BatchWriteRow PUTs in chunks of 200.
pub async fn bulk_put(c: &OtsClient, table: &str, rows: &[Row]) {
    for chunk in rows.chunks(200) {
        let req = pb::BatchWriteRowRequest {
            tables: vec![pb::TableInBatchWriteRowRequest {
                table_name: table.into(),
                rows: chunk
                    .iter()
                    .map(|r| pb::RowInBatchWriteRowRequest {
                        r#type: pb::OperationType::Put as i32,
                        row_change: encode_put_row(r).into(),
                        condition: condition(pb::RowExistenceExpectation::Ignore),
                        return_content: None,
                    })
                    .collect(),
            }],
            transaction_id: None,
            is_atomic: None,
        };
        let resp = c
            .batch_write_row(&req, Idempotency::NotIdempotent)
            .await
            .expect("batch write");
        assert!(
            resp.tables[0].rows.iter().all(|r| r.is_ok),
            "all rows written"
        );
    }
}

/// A hand-made HTTP exchange, for requests our client would never send.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// (status, code, message) of an error body.
    pub fn error(&self) -> (u16, String, String) {
        let e = pb::Error::decode(&self.body[..]).expect("error body decodes");
        (self.status, e.code, e.message.unwrap_or_default())
    }
}

/// V2-signed headers for `body`, as the official SDK sends them.
pub fn signed_headers(
    sk: &str,
    action: &str,
    body: &[u8],
    at: std::time::SystemTime,
) -> Vec<(String, String)> {
    ots_wire::auth::sign_request(
        &Credentials::new(AK, sk),
        &ots_wire::SignatureVersion::V2,
        INSTANCE,
        action,
        body,
        at,
    )
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub async fn raw_post(
    emu: &EmulatorHandle,
    action: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> RawResponse {
    let mut req = reqwest::Client::new().post(format!("{}/{action}", emu.endpoint()));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.body(body).send().await.expect("HTTP exchange");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.bytes().await.expect("body").to_vec();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// A correctly signed raw request.
pub async fn signed_post(emu: &EmulatorHandle, action: &str, body: Vec<u8>) -> RawResponse {
    let h = signed_headers(SK, action, &body, std::time::SystemTime::now());
    raw_post(emu, action, &h, body).await
}
