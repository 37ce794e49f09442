//! The HTTP layer: `POST /{Action}`, request verification, fault injection, signed responses
//! (fact sheet §1, §2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ots_wire::auth::{self, VerifiedRequest};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::{Engine, action_kind};
use crate::error::ApiError;
use crate::faults::{Counters, CuKind, FaultState, Injected, bump};

/// HTTP bodies above this are refused with 413 (fact sheet §5.1).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Allowed distance between `x-ots-date` and the server clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

pub(crate) struct Shared {
    pub instance: String,
    /// AccessKey id → secret.
    pub credentials: HashMap<String, String>,
    pub engine: Engine,
    pub faults: FaultState,
    pub counters: Counters,
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// Accepts connections until `shutdown` flips; each connection then ends at once.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE; back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}

fn request_id() -> String {
    let v: u128 = rand::random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A response with the four `x-ots-*` headers and, when the request verified, `Authorization`
/// signed over exactly those headers (fact sheet §1.5).
fn respond(
    status: u16,
    body: Vec<u8>,
    signer: Option<&VerifiedRequest>,
    action: &str,
) -> Response<Full<Bytes>> {
    let md5 = auth::content_md5(&body);
    let date = auth::format_ots_date_micros(SystemTime::now());
    let id = request_id();
    let xots: [(&str, &str); 4] = [
        (auth::HDR_CONTENT_MD5, &md5),
        (auth::HDR_CONTENT_TYPE, auth::CONTENT_TYPE_PROTOBUF),
        (auth::HDR_DATE, &date),
        (auth::HDR_REQUEST_ID, &id),
    ];
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    for (k, v) in xots {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(HeaderName::from_static(k), v);
        }
    }
    if let Some(signer) = signer
        && let Ok(v) = HeaderValue::from_str(&signer.sign_response(action, &xots))
    {
        headers.insert(hyper::header::AUTHORIZATION, v);
    }
    resp
}

/// The unread rest of an oversized body makes the connection unusable: say so, so that clients
/// (urllib3 in the official SDK) do not put it back in their pool.
fn closing(mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    resp.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}

fn error_response(
    shared: &Shared,
    e: &ApiError,
    signer: Option<&VerifiedRequest>,
    action: &str,
) -> Response<Full<Bytes>> {
    bump(&shared.counters.errors);
    tracing::debug!(action, code = e.code, message = %e.message, "error response");
    respond(e.status, e.to_pb().encode_to_vec(), signer, action)
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    bump(&shared.counters.requests);
    // The SDK posts to `prefix + /Action` but signs only `/Action`.
    let action = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    if req.method() != Method::POST {
        let e = ApiError::new(
            405,
            "OTSMethodNotAllowed",
            "Only the POST method is allowed.",
        );
        return Ok(error_response(&shared, &e, None, &action));
    }
    let too_large = ApiError::new(
        413,
        "OTSRequestBodyTooLarge",
        "The size of POST data is too large.",
    );
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Ok(closing(error_response(&shared, &too_large, None, &action)));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Ok(closing(error_response(&shared, &too_large, None, &action)));
        }
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(DropConnection),
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let lookup = |ak: &str| shared.credentials.get(ak).cloned();
    let verified = match auth::verify_request(
        &action,
        &headers,
        &body,
        &shared.instance,
        &lookup,
        SystemTime::now(),
        MAX_SKEW,
    ) {
        Ok(v) => v,
        Err(e) => {
            bump(&shared.counters.auth_failures);
            let e = ApiError::new(e.http_status(), e.code(), e.message());
            return Ok(error_response(&shared, &e, None, &action));
        }
    };
    shared.counters.count_action(&action);
    if crate::admin::is_admin(&action) {
        // Test hooks: never delayed or faulted.
        let (status, body) = crate::admin::dispatch(&shared.engine, &action, &body);
        return Ok(respond(status, body, Some(&verified), &action));
    }

    let latency = shared.faults.latency();
    if !latency.is_zero() {
        bump(&shared.counters.delayed);
        tokio::time::sleep(latency).await;
    }
    let kind = action_kind(&action);
    match shared.faults.roll_request(kind, &shared.counters) {
        Injected::None => {}
        Injected::Drop => return Err(DropConnection),
        Injected::Error(e) => {
            return Ok(error_response(&shared, &e, Some(&verified), &action));
        }
    }
    let row_faults =
        |keys: &[&[ots_wire::types::PkValue]]| shared.faults.roll_rows(keys, &shared.counters);
    match shared.engine.dispatch(&action, &body, &row_faults) {
        Ok(reply) => {
            shared.faults.charge(reply.read_cu, reply.write_cu);
            Ok(respond(200, reply.body, Some(&verified), &action))
        }
        Err(e) => {
            // Errors other than 5xx still cost capacity (fact sheet §5.8).
            match (kind, e.code) {
                (_, "OTSConditionCheckFail") => shared.faults.charge(1, 1),
                (CuKind::Read, _) => shared.faults.charge(1, 0),
                (CuKind::Write, _) => shared.faults.charge(0, 1),
                (CuKind::Table, _) => {}
            }
            Ok(error_response(&shared, &e, Some(&verified), &action))
        }
    }
}
