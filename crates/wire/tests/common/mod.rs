//! A scripted Tablestore-like HTTP server for client tests: it answers each request with the next
//! reply of a script, signs responses like the service, can tamper with them, and records requests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ots_wire::auth;
use ots_wire::{ClientConfig, Credentials, OtsClient, RetryPolicy};
use prost::Message;

pub const AK: &str = "test-ak";
pub const SK: &str = "test-secret-0123456789";
pub const INSTANCE: &str = "testinst";

/// How to damage an otherwise correct response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    None,
    WrongMd5,
    WrongSignature,
    OmitHeader(&'static str),
    DateWithoutFraction,
    OtherAccessKey,
}

#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this protobuf body.
    Ok(Vec<u8>),
    /// An error status with a Tablestore `Error` body.
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
    /// A correct 200 response, then damaged.
    Tampered(Vec<u8>, Tamper),
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    pub fn ok<M: Message>(m: &M) -> Reply {
        Reply::Ok(m.encode_to_vec())
    }

    pub fn error(status: u16, code: &'static str, message: &'static str) -> Reply {
        Reply::Error {
            status,
            code,
            message,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub action: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    log: Mutex<Vec<Recorded>>,
    /// The tasks serving accepted connections (aborted by `stop`).
    connections: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub struct ScriptedServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    pub async fn start(script: Vec<Reply>) -> ScriptedServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::new(script.into()),
            ..State::default()
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st2 = st.clone();
                let conn = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st2.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                st.connections.lock().unwrap().push(conn);
            }
        });
        ScriptedServer {
            addr,
            state,
            accept,
        }
    }

    /// Stops listening and closes every open connection: from now on connections are refused.
    pub async fn stop(&self) {
        self.accept.abort();
        while !self.accept.is_finished() {
            tokio::task::yield_now().await;
        }
        let conns: Vec<_> = self.state.connections.lock().unwrap().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn client(&self, retry: RetryPolicy) -> OtsClient {
        let mut cfg = ClientConfig::new(self.endpoint(), INSTANCE, Credentials::new(AK, SK));
        cfg.retry = retry;
        cfg.request_timeout = Duration::from_secs(5);
        OtsClient::new(cfg).unwrap()
    }
}

/// A fast policy for tests: real backoff, small delays.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        throttle_base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        deadline: Duration::from_secs(10),
    }
}

#[derive(Debug)]
struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted drop")
    }
}
impl std::error::Error for DropConnection {}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let action = req.uri().path().trim_start_matches('/').to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.log.lock().unwrap().push(Recorded {
        action: action.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::error(
            500,
            "OTSInternalServerError",
            "script exhausted",
        ));
    let (status, body, tamper) = match reply {
        Reply::Ok(body) => (200, body, Tamper::None),
        Reply::Tampered(body, t) => (200, body, t),
        Reply::Error {
            status,
            code,
            message,
        } => (
            status,
            ots_wire::pb::Error {
                code: code.into(),
                message: Some(message.into()),
                access_denied_detail: None,
            }
            .encode_to_vec(),
            Tamper::None,
        ),
        Reply::Drop => return Err(DropConnection),
    };
    Ok(signed_response(&action, status, body, tamper))
}

fn signed_response(
    action: &str,
    status: u16,
    body: Vec<u8>,
    tamper: Tamper,
) -> Response<Full<Bytes>> {
    let date = if tamper == Tamper::DateWithoutFraction {
        let d = auth::format_ots_date_micros(SystemTime::now());
        format!("{}Z", &d[..19])
    } else {
        auth::format_ots_date_micros(SystemTime::now())
    };
    let md5 = if tamper == Tamper::WrongMd5 {
        auth::content_md5(b"something else")
    } else {
        auth::content_md5(&body)
    };
    let mut headers: Vec<(&str, String)> = vec![
        (auth::HDR_CONTENT_MD5, md5),
        (auth::HDR_CONTENT_TYPE, auth::CONTENT_TYPE_PROTOBUF.into()),
        (auth::HDR_DATE, date),
        (
            auth::HDR_REQUEST_ID,
            "00000000-0000-0000-0000-00000000abcd".into(),
        ),
    ];
    if let Tamper::OmitHeader(name) = tamper {
        headers.retain(|(n, _)| *n != name);
    }
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key = if tamper == Tamper::WrongSignature {
        "not-the-secret"
    } else {
        SK
    };
    let ak = if tamper == Tamper::OtherAccessKey {
        "someone-else"
    } else {
        AK
    };
    let authorization = auth::sign_response(ak, key, action, &refs);
    let mut resp = Response::builder().status(status);
    for (k, v) in &headers {
        resp = resp.header(*k, v);
    }
    if tamper != Tamper::OmitHeader(auth::HDR_AUTHORIZATION) {
        resp = resp.header(auth::HDR_AUTHORIZATION, authorization);
    }
    resp.body(Full::new(Bytes::from(body))).unwrap()
}

#[allow(unused)]
fn _assert_infallible(_: Infallible) {}
