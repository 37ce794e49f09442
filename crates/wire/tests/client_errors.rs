//! Errors that name their object and their fix: an endpoint that cannot be reached before it ever
//! answered fails at once (not retried) with a hint; once it has answered, connection failures are
//! retried as before; a missing table names the table and instance; refused credentials name where
//! they came from, never the secret.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ots_wire::error::TransportKind;
use ots_wire::{ClientConfig, Credentials, OtsClient, OtsError};

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client_for(endpoint: &str, attempts: u32) -> OtsClient {
    let mut cfg = ClientConfig::new(endpoint, INSTANCE, Credentials::new(AK, SK));
    cfg.retry = fast_retry(attempts);
    OtsClient::new(cfg).unwrap()
}

fn list_tables_resp() -> ots_wire::pb::ListTableResponse {
    ots_wire::pb::ListTableResponse {
        table_names: vec!["t".into()],
    }
}

#[tokio::test]
async fn first_request_is_not_retried_on_connection_refused() {
    let port = closed_port();
    let client = client_for(&format!("http://127.0.0.1:{port}"), 5);
    let err = client.list_table().await.unwrap_err();
    assert!(
        matches!(err, OtsError::Unreachable { .. }),
        "no retry, a typed error: {err:?}"
    );
    assert_eq!(err.attempts(), 1);
    assert_eq!(client.stats().requests, 1);
    assert_eq!(client.stats().retries, 0);
    assert!(err.is_unreachable() && err.is_usage());
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "cannot connect to 127.0.0.1:{port} (connection refused)"
        )),
        "{text}"
    );
    assert!(text.contains("--endpoint http://HOST:PORT"), "{text}");
    assert!(!text.contains(SK));
}

#[tokio::test]
async fn connection_refused_after_an_answer_is_retried() {
    let server = ScriptedServer::start(vec![Reply::ok(&list_tables_resp())]).await;
    let client = server.client(fast_retry(4));
    assert_eq!(client.list_table().await.unwrap(), vec!["t".to_string()]);
    server.stop().await;
    let err = client.list_table().await.unwrap_err();
    assert!(!err.is_unreachable(), "{err:?}");
    assert!(
        matches!(err, OtsError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(
        matches!(
            err.root(),
            OtsError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.stats().retries, 3);
}

#[tokio::test]
async fn https_against_plain_http_says_use_http() {
    let server = ScriptedServer::start(vec![]).await;
    let addr = server.addr;
    let client = client_for(&format!("https://{addr}"), 5);
    let started = Instant::now();
    let err = client.list_table().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(matches!(err, OtsError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the server at {addr} does not speak TLS: use http://{addr}"
        )),
        "{text}"
    );
    // The plain-http server never saw a request it could parse.
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_connection_closed_before_any_answer_suggests_https() {
    // What a TLS server does with a plain-http request: close without an HTTP answer.
    let server = ScriptedServer::start(vec![Reply::Drop, Reply::ok(&list_tables_resp())]).await;
    let addr = server.addr;
    let client = server.client(fast_retry(5));
    let err = client.list_table().await.unwrap_err();
    assert!(matches!(err, OtsError::Unreachable { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 1, "not retried");
    let text = err.to_string();
    assert!(
        text.contains("the connection was closed without an answer")
            && text.contains(&format!("if it speaks TLS, use https://{addr}")),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_host_is_named() {
    // `.invalid` never resolves (RFC 2606).
    let client = client_for("http://no-such-host.invalid:8080", 5);
    let err = client.list_table().await.unwrap_err();
    assert!(matches!(err, OtsError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.attempts(), 1);
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to no-such-host.invalid:8080")
            && text.contains("cannot resolve host 'no-such-host.invalid'"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_table_names_table_instance_and_endpoint() {
    let server = ScriptedServer::start(vec![Reply::error(
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    )])
    .await;
    let client = server.client(fast_retry(5));
    let err = client.describe_table("orders").await.unwrap_err();
    assert!(err.is_not_found() && err.is_usage(), "{err:?}");
    assert_eq!(err.code(), Some("OTSObjectNotExist"));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "table 'orders' does not exist in instance '{INSTANCE}' (endpoint {}",
            server.endpoint()
        )),
        "{text}"
    );
    assert!(text.contains("request id"), "{text}");
    assert_eq!(server.requests().len(), 1, "not retried");
}

#[tokio::test]
async fn refused_credentials_name_their_origin_not_the_secret() {
    let server = ScriptedServer::start(vec![
        Reply::error(403, "OTSAuthFailed", "Signature mismatch."),
        Reply::error(403, "OTSAuthFailed", "Signature mismatch."),
    ])
    .await;
    let client = server.client(fast_retry(5));
    let err = client.list_table().await.unwrap_err();
    assert!(err.is_access_denied() && err.is_usage(), "{err:?}");
    assert_eq!(err.code(), Some("OTSAuthFailed"));
    let text = err.to_string();
    assert!(
        text.contains(
            "check ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET \
             (and ALIBABA_CLOUD_SECURITY_TOKEN for STS); the server said: Signature mismatch."
        ),
        "{text}"
    );
    assert!(!text.contains(SK), "{text}");
    assert_eq!(server.requests().len(), 1, "not retried");

    // A caller that knows better names the origin itself.
    let mut cfg = ClientConfig::new(server.endpoint(), INSTANCE, Credentials::new(AK, SK));
    cfg.credentials_origin = "the credentials of profile 'prod'".into();
    let err = OtsClient::new(cfg).unwrap().list_table().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("check the credentials of profile 'prod';"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_permission_names_the_action() {
    let server = ScriptedServer::start(vec![Reply::error(
        403,
        "OTSNoPermissionAccess",
        "You have no permission to access the requested resource.",
    )])
    .await;
    let client = server.client(fast_retry(5));
    let err = client.describe_table("orders").await.unwrap_err();
    assert!(err.is_access_denied(), "{err:?}");
    assert!(
        err.to_string().contains("grant it ots:DescribeTable"),
        "{err}"
    );
}
