//! The client against a scripted server: what is retried, how, and what is not.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use ots_wire::auth;
use ots_wire::pb;
use ots_wire::{Idempotency, OtsError, RetryPolicy};

fn get_range_req() -> pb::GetRangeRequest {
    pb::GetRangeRequest {
        table_name: "t".into(),
        direction: pb::Direction::Forward as i32,
        max_versions: Some(1),
        inclusive_start_primary_key: Bytes::from_static(b"start"),
        exclusive_end_primary_key: Bytes::from_static(b"end"),
        ..Default::default()
    }
}

fn get_range_resp() -> pb::GetRangeResponse {
    pb::GetRangeResponse {
        consumed: pb::ConsumedCapacity {
            capacity_unit: pb::CapacityUnit {
                read: Some(1),
                write: Some(0),
            },
            capacity_data_size: None,
        },
        rows: Bytes::new(),
        next_start_primary_key: None,
        ..Default::default()
    }
}

fn put_row_req() -> pb::PutRowRequest {
    pb::PutRowRequest {
        table_name: "t".into(),
        row: Bytes::from_static(b"row"),
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        ..Default::default()
    }
}

fn put_row_resp() -> pb::PutRowResponse {
    pb::PutRowResponse {
        consumed: get_range_resp().consumed,
        row: None,
    }
}

/// Every attempt must carry its own valid signature (a fresh date each time).
fn assert_every_attempt_signed(server: &ScriptedServer) {
    let reqs = server.requests();
    for r in &reqs {
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let lookup = |ak: &str| (ak == AK).then(|| SK.to_string());
        auth::verify_request(
            &r.action,
            &headers,
            &r.body,
            INSTANCE,
            &lookup,
            SystemTime::now(),
            Duration::from_secs(900),
        )
        .unwrap_or_else(|e| panic!("attempt not verifiable: {e}"));
    }
    let dates: Vec<&str> = reqs
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == auth::HDR_DATE)
                .map(|(_, v)| v.as_str())
        })
        .collect();
    let mut unique = dates.clone();
    unique.dedup();
    assert_eq!(unique.len(), dates.len(), "dates reused: {dates:?}");
}

#[tokio::test]
async fn throttling_is_retried_with_growing_backoff() {
    let server = ScriptedServer::start(vec![
        Reply::error(503, "OTSServerBusy", "Server is busy."),
        Reply::error(
            403,
            "OTSNotEnoughCapacityUnit",
            "Remaining capacity unit is not enough.",
        ),
        Reply::error(503, "OTSServerBusy", "Server is busy."),
        Reply::ok(&get_range_resp()),
    ])
    .await;
    let client = server.client(fast_retry(10));
    let resp = client.get_range(&get_range_req()).await.unwrap();
    assert_eq!(resp.consumed.capacity_unit.read, Some(1));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    // Throttle backoff starts at 20 ms (jitter ≥ 0.5×) and doubles: gaps ≥ 10, 20, 40 ms.
    let gaps: Vec<Duration> = reqs.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let min = Duration::from_millis(10 << i);
        assert!(*gap >= min, "gap {i} was {gap:?}, expected ≥ {min:?}");
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.retries, 3);
    assert_eq!(stats.throttled, 3);
    assert_every_attempt_signed(&server);
}

#[tokio::test]
async fn non_idempotent_write_is_not_retried_on_5xx() {
    let server = ScriptedServer::start(vec![
        Reply::error(500, "OTSInternalServerError", "Internal server error."),
        Reply::ok(&put_row_resp()),
    ])
    .await;
    let client = server.client(fast_retry(10));
    let err = client
        .put_row(&put_row_req(), Idempotency::NotIdempotent)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("OTSInternalServerError"));
    assert_eq!(err.http_status(), Some(500));
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn idempotent_write_is_retried_on_5xx() {
    let server = ScriptedServer::start(vec![
        Reply::error(503, "OTSServerUnavailable", "Server is not available."),
        Reply::error(500, "OTSInternalServerError", "Internal server error."),
        Reply::ok(&put_row_resp()),
    ])
    .await;
    let client = server.client(fast_retry(10));
    client
        .put_row(&put_row_req(), Idempotency::Idempotent)
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 3);
    assert_every_attempt_signed(&server);
}

#[tokio::test]
async fn always_retryable_codes_are_retried_for_writes() {
    let server = ScriptedServer::start(vec![
        Reply::error(
            409,
            "OTSRowOperationConflict",
            "Data is being modified by the other request.",
        ),
        Reply::error(403, "OTSQuotaExhausted", "Too frequent table operations."),
        Reply::ok(&put_row_resp()),
    ])
    .await;
    let client = server.client(fast_retry(10));
    client
        .put_row(&put_row_req(), Idempotency::NotIdempotent)
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn non_retryable_errors_stop_at_once() {
    for (status, code, message) in [
        (
            400,
            "OTSParameterInvalid",
            "The limit must be greater than 0.",
        ),
        (403, "OTSConditionCheckFail", "Condition check failed."),
        (404, "OTSObjectNotExist", "Requested table does not exist."),
        (
            403,
            "OTSQuotaExhausted",
            "Number of tables exceeded the quota.",
        ),
    ] {
        let server = ScriptedServer::start(vec![
            Reply::error(status, code, message),
            Reply::ok(&get_range_resp()),
        ])
        .await;
        let client = server.client(fast_retry(10));
        let err = client.get_range(&get_range_req()).await.unwrap_err();
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.message(), Some(message));
        assert_eq!(
            err.request_id(),
            Some("00000000-0000-0000-0000-00000000abcd")
        );
        assert_eq!(server.requests().len(), 1, "{code} must not be retried");
        let text = err.to_string();
        assert!(text.contains(code) && text.contains(message), "{text}");
    }
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_and_say_so() {
    let busy = Reply::error(503, "OTSServerBusy", "Server is busy.");
    let server = ScriptedServer::start(vec![busy.clone(), busy.clone(), busy.clone(), busy]).await;
    let client = server.client(fast_retry(3));
    let err = client.get_range(&get_range_req()).await.unwrap_err();
    assert!(
        matches!(err, OtsError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("OTSServerBusy"));
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let busy = Reply::error(503, "OTSServerBusy", "Server is busy.");
    let server = ScriptedServer::start(vec![busy; 50]).await;
    let client = server.client(RetryPolicy {
        max_attempts: 50,
        base_delay: Duration::from_millis(40),
        throttle_base_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(40),
        deadline: Duration::from_millis(300),
    });
    let err = client.get_range(&get_range_req()).await.unwrap_err();
    let attempts = err.attempts();
    // Delays are 20–40 ms each, so a 300 ms deadline allows roughly 8–16 attempts, never 50.
    assert!((2..=17).contains(&attempts), "{attempts} attempts");
    assert_eq!(server.requests().len() as u32, attempts);
}

#[tokio::test]
async fn dropped_connections_are_retried_for_reads_only() {
    // (Once the endpoint has answered: before that, see client_errors.rs.)
    let server = ScriptedServer::start(vec![
        Reply::ok(&get_range_resp()),
        Reply::Drop,
        Reply::ok(&get_range_resp()),
    ])
    .await;
    let client = server.client(fast_retry(5));
    client.get_range(&get_range_req()).await.unwrap();
    client.get_range(&get_range_req()).await.unwrap();
    assert_eq!(server.requests().len(), 3);

    let server = ScriptedServer::start(vec![
        Reply::ok(&put_row_resp()),
        Reply::Drop,
        Reply::ok(&put_row_resp()),
    ])
    .await;
    let client = server.client(fast_retry(5));
    client
        .put_row(&put_row_req(), Idempotency::NotIdempotent)
        .await
        .unwrap();
    let err = client
        .put_row(&put_row_req(), Idempotency::NotIdempotent)
        .await
        .unwrap_err();
    assert!(matches!(err, OtsError::Transport { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 2);
}

fn batch_req(rows: usize) -> pb::BatchWriteRowRequest {
    pb::BatchWriteRowRequest {
        tables: vec![pb::TableInBatchWriteRowRequest {
            table_name: "t".into(),
            rows: (0..rows)
                .map(|i| pb::RowInBatchWriteRowRequest {
                    r#type: pb::OperationType::Put as i32,
                    row_change: Bytes::from(vec![i as u8]),
                    condition: pb::Condition {
                        row_existence: pb::RowExistenceExpectation::Ignore as i32,
                        column_condition: None,
                    },
                    return_content: None,
                })
                .collect(),
        }],
        ..Default::default()
    }
}

fn row_ok() -> pb::RowInBatchWriteRowResponse {
    pb::RowInBatchWriteRowResponse {
        is_ok: true,
        error: None,
        consumed: Some(get_range_resp().consumed),
        row: None,
    }
}

fn row_err(code: &str, message: &str) -> pb::RowInBatchWriteRowResponse {
    pb::RowInBatchWriteRowResponse {
        is_ok: false,
        error: Some(pb::Error {
            code: code.into(),
            message: Some(message.into()),
            access_denied_detail: None,
        }),
        consumed: None,
        row: None,
    }
}

fn batch_resp(rows: Vec<pb::RowInBatchWriteRowResponse>) -> pb::BatchWriteRowResponse {
    pb::BatchWriteRowResponse {
        tables: vec![pb::TableInBatchWriteRowResponse {
            table_name: "t".into(),
            rows,
        }],
    }
}

#[tokio::test]
async fn batch_write_retries_only_retryable_failed_rows() {
    let server = ScriptedServer::start(vec![
        Reply::ok(&batch_resp(vec![
            row_ok(),
            row_err("OTSServerBusy", "Server is busy."),
            row_err("OTSConditionCheckFail", "Condition check failed."),
            row_err(
                "OTSRowOperationConflict",
                "Data is being modified by the other request.",
            ),
        ])),
        // Second round carries rows 1 and 3 only; row 3 conflicts again.
        Reply::ok(&batch_resp(vec![
            row_ok(),
            row_err(
                "OTSRowOperationConflict",
                "Data is being modified by the other request.",
            ),
        ])),
        Reply::ok(&batch_resp(vec![row_ok()])),
    ])
    .await;
    let client = server.client(fast_retry(10));
    let outcome = client
        .batch_write_row_retrying(&batch_req(4), Idempotency::Idempotent)
        .await
        .unwrap();
    let oks: Vec<bool> = outcome.rows[0].iter().map(|r| r.is_ok).collect();
    assert_eq!(oks, vec![true, true, false, true]);
    let failures: Vec<_> = outcome.failures().collect();
    assert_eq!(
        failures,
        vec![(0, 2, "OTSConditionCheckFail", "Condition check failed.")]
    );
    assert_eq!(outcome.row_retries, 3);

    // The re-sent requests hold exactly the failed rows, in order.
    use prost::Message;
    let sent: Vec<Vec<u8>> = server
        .requests()
        .iter()
        .map(|r| {
            let req = pb::BatchWriteRowRequest::decode(r.body.clone()).unwrap();
            req.tables[0]
                .rows
                .iter()
                .map(|row| row.row_change[0])
                .collect()
        })
        .collect();
    assert_eq!(sent, vec![vec![0, 1, 2, 3], vec![1, 3], vec![3]]);
}

#[tokio::test]
async fn batch_write_response_with_wrong_shape_is_rejected() {
    let server = ScriptedServer::start(vec![Reply::ok(&batch_resp(vec![row_ok()]))]).await;
    let client = server.client(fast_retry(3));
    let err = client
        .batch_write_row(&batch_req(2), Idempotency::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(err, OtsError::MalformedResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("2 rows"), "{err}");
}

#[tokio::test]
async fn undecodable_success_body_is_a_malformed_response() {
    let server = ScriptedServer::start(vec![Reply::Ok(vec![0xff, 0xff, 0xff])]).await;
    let client = server.client(fast_retry(3));
    let err = client.get_range(&get_range_req()).await.unwrap_err();
    assert!(matches!(err, OtsError::MalformedResponse { .. }), "{err:?}");
}
