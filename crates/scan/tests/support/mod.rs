//! A fake Tablestore endpoint for scanner tests: it answers each GetRange with the next response of
//! a script (signed the way the service signs, so the real client accepts it) and keeps every
//! request it got, decoded, with the time it arrived.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ots_scan::{KeyPart, KeyValue, Split};
use ots_wire::plainbuffer::{encode_primary_key, encode_rows};
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
use ots_wire::{ClientConfig, Credentials, OtsClient, RetryPolicy, auth, pb};
use prost::Message;

const AK: &str = "fake-ak";
const SK: &str = "fake-secret";
const INSTANCE: &str = "fakeinst";

/// A GetRange request as the fake received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub request: pb::GetRangeRequest,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<pb::GetRangeResponse>>,
    received: Mutex<Vec<Received>>,
}

pub struct FakeOts {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOts {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeOts {
    /// Serves `script` in order; a request past its end gets a 500 (which the scanner reports as
    /// an error, never as the end of a split).
    pub async fn start(script: Vec<pb::GetRangeResponse>) -> FakeOts {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            received: Mutex::new(Vec::new()),
        });
        let for_conns = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = for_conns.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| answer(shared.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeOts {
            addr,
            shared,
            accept,
        }
    }

    /// A client of this endpoint that does not retry (so each scripted reply is seen once).
    pub fn client(&self) -> OtsClient {
        let mut cfg = ClientConfig::new(
            format!("http://{}", self.addr),
            INSTANCE,
            Credentials::new(AK, SK),
        );
        cfg.retry = RetryPolicy::none();
        cfg.request_timeout = Duration::from_secs(10);
        OtsClient::new(cfg).unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let action = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let reply = if action == "GetRange" {
        match pb::GetRangeRequest::decode(body) {
            Ok(request) => {
                shared.received.lock().unwrap().push(Received {
                    at: Instant::now(),
                    request,
                });
                shared.script.lock().unwrap().pop_front()
            }
            Err(_) => None,
        }
    } else {
        None
    };
    Ok(match reply {
        Some(resp) => signed(&action, 200, resp.encode_to_vec()),
        None => {
            let error = pb::Error {
                code: "OTSInternalServerError".into(),
                message: Some(format!("the fake has no reply for this {action}")),
                access_denied_detail: None,
            };
            signed(&action, 500, error.encode_to_vec())
        }
    })
}

/// A response with the headers and signature the client verifies (fact sheet §1.5).
fn signed(action: &str, status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let headers = [
        (auth::HDR_CONTENT_MD5, auth::content_md5(&body)),
        (
            auth::HDR_CONTENT_TYPE,
            auth::CONTENT_TYPE_PROTOBUF.to_string(),
        ),
        (
            auth::HDR_DATE,
            auth::format_ots_date_micros(SystemTime::now()),
        ),
        (auth::HDR_REQUEST_ID, "fake-request".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut resp = Response::builder().status(status).header(
        auth::HDR_AUTHORIZATION,
        auth::sign_response(AK, SK, action, &pairs),
    );
    for (k, v) in &headers {
        resp = resp.header(*k, v);
    }
    resp.body(Full::new(Bytes::from(body))).unwrap()
}

/// The key `(id)` of the fake's one-column table, PlainBuffer-encoded.
pub fn key(id: i64) -> Bytes {
    Bytes::from(encode_primary_key(&[PkColumn::new(
        "id",
        PkValue::Integer(id),
    )]))
}

/// A GetRange response holding rows with these ids, in the order given, and a next start key.
pub fn page(ids: &[i64], next: Option<i64>) -> pb::GetRangeResponse {
    let rows: Vec<Row> = ids
        .iter()
        .map(|&id| Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(id))],
            cells: vec![Cell::new("v", Value::Integer(id * 10), Some(1_000))],
        })
        .collect();
    pb::GetRangeResponse {
        rows: if rows.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(encode_rows(&rows))
        },
        next_start_primary_key: next.map(key),
        ..Default::default()
    }
}

/// The split `[start, end)` of the fake's table (`None` = INF_MIN / INF_MAX).
pub fn split(id: u32, start: Option<i64>, end: Option<i64>) -> Split {
    let part = |v: Option<i64>, inf: KeyValue| KeyPart {
        name: "id".into(),
        value: v.map_or(inf, KeyValue::Integer),
    };
    Split {
        id,
        start: vec![part(start, KeyValue::InfMin)],
        end: vec![part(end, KeyValue::InfMax)],
    }
}
