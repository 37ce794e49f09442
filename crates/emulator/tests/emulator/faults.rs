//! Fault injection: throttling, 5xx, row-level failures, latency, dropped connections, CU budget.

use std::time::{Duration, Instant};

use ots_emulator::FaultConfig;

use super::*;

const THROTTLES: [(u16, &str, &str); 3] = [
    (503, "OTSServerBusy", "Server is busy."),
    (
        403,
        "OTSNotEnoughCapacityUnit",
        "Remaining capacity unit is not enough.",
    ),
    (403, "OTSQuotaExhausted", "Too frequent table operations."),
];

#[tokio::test]
async fn throttle_rate_one_throttles_every_call_and_writes_nothing() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    env.emu
        .set_faults(FaultConfig {
            throttle_rate: 1.0,
            seed: Some(7),
            ..Default::default()
        })
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let r = put_req(
            c,
            "t",
            key("x", i),
            vec![cell("v", Value::Integer(i))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await;
        let (s, code, m) = service_error(r);
        assert!(
            THROTTLES.contains(&(s, code.as_str(), m.as_str())),
            "{s} {code} {m}"
        );
        seen.insert(code);
    }
    assert_eq!(
        seen.len(),
        3,
        "all three throttling errors appear: {seen:?}"
    );
    let (s, code, _) = service_error(c.list_table().await);
    assert!(THROTTLES.iter().any(|t| (t.0, t.1) == (s, code.as_str())));
    assert_eq!(env.emu.stats().injected_throttles, 31);
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let resp = c
        .get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ))
        .await
        .unwrap();
    assert!(resp.rows.is_empty(), "no throttled write was applied");
}

#[tokio::test]
async fn server_errors_are_5xx_and_the_client_retries_reads() {
    let env = start_with(builder().faults(FaultConfig {
        server_error_rate: 1.0,
        seed: Some(1),
        ..Default::default()
    }))
    .await;
    for _ in 0..10 {
        let (s, code, m) = service_error(env.client.list_table().await);
        assert!(
            [
                (500, "OTSInternalServerError", "Internal server error."),
                (503, "OTSServerUnavailable", "Server is not available."),
                (503, "OTSTimeout", "Operation timeout."),
            ]
            .contains(&(s, code.as_str(), m.as_str())),
            "{s} {code} {m}"
        );
    }
    // Half of the calls fail: a retrying client gets through.
    env.emu
        .set_faults(FaultConfig {
            server_error_rate: 0.5,
            seed: Some(3),
            ..Default::default()
        })
        .unwrap();
    let mut cfg = ClientConfig::new(env.emu.endpoint(), INSTANCE, Credentials::new(AK, SK));
    cfg.retry = RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let retrying = OtsClient::new(cfg).unwrap();
    for _ in 0..10 {
        retrying.list_table().await.expect("retries succeed");
    }
    assert!(env.emu.stats().injected_server_errors > 10);
}

#[tokio::test]
async fn row_errors_leave_failed_rows_unwritten() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    env.emu
        .set_faults(FaultConfig {
            row_error_rate: 0.5,
            seed: Some(11),
            ..Default::default()
        })
        .unwrap();
    let req = pb::BatchWriteRowRequest {
        tables: vec![pb::TableInBatchWriteRowRequest {
            table_name: "t".into(),
            rows: (0..100)
                .map(|i| pb::RowInBatchWriteRowRequest {
                    r#type: pb::OperationType::Put as i32,
                    row_change: encode_put_row(&Row {
                        primary_key: key("r", i),
                        cells: vec![cell("v", Value::Integer(i))],
                    })
                    .into(),
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
        .expect("HTTP 200 with row-level failures");
    let rows = &resp.tables[0].rows;
    assert_eq!(rows.len(), 100);
    let failed: Vec<i64> = (0..100).filter(|&i| !rows[i as usize].is_ok).collect();
    assert!((20..=80).contains(&failed.len()), "{} failed", failed.len());
    for r in rows.iter().filter(|r| !r.is_ok) {
        let e = r.error.as_ref().unwrap();
        assert!(
            [
                ("OTSServerBusy", "Server is busy."),
                (
                    "OTSRowOperationConflict",
                    "Data is being modified by the other request."
                )
            ]
            .contains(&(e.code.as_str(), e.message.as_deref().unwrap_or(""))),
            "{e:?}"
        );
    }
    assert_eq!(env.emu.stats().injected_row_errors, failed.len() as u64);
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let stored = page_rows(
        &c.get_range(&range_req(
            "t",
            pb::Direction::Forward,
            &inf_key(true),
            &inf_key(false),
            None,
        ))
        .await
        .unwrap(),
    );
    let stored_ids: Vec<i64> = stored
        .iter()
        .map(|r| match r.primary_key[1].value {
            PkValue::Integer(i) => i,
            _ => unreachable!(),
        })
        .collect();
    let ok_ids: Vec<i64> = (0..100).filter(|i| !failed.contains(i)).collect();
    assert_eq!(stored_ids, ok_ids);

    // The client's row-level retry fills the gaps.
    env.emu
        .set_faults(FaultConfig {
            row_error_rate: 0.3,
            seed: Some(5),
            ..Default::default()
        })
        .unwrap();
    let mut cfg = ClientConfig::new(env.emu.endpoint(), INSTANCE, Credentials::new(AK, SK));
    cfg.retry = RetryPolicy {
        base_delay: Duration::from_millis(1),
        throttle_base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let retrying = OtsClient::new(cfg).unwrap();
    let out = retrying
        .batch_write_row_retrying(&req, Idempotency::Idempotent)
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
    assert!(out.row_retries > 0);
}

#[tokio::test]
async fn rows_of_one_key_fail_for_good_and_the_others_are_written() {
    let env = start().await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    env.emu
        .set_faults(FaultConfig {
            fail_rows_with_key: Some("bad".into()),
            ..Default::default()
        })
        .unwrap();
    let put = |user: &str, i: i64| pb::RowInBatchWriteRowRequest {
        r#type: pb::OperationType::Put as i32,
        row_change: encode_put_row(&Row {
            primary_key: key(user, i),
            cells: vec![cell("v", Value::Integer(i))],
        })
        .into(),
        condition: condition(pb::RowExistenceExpectation::Ignore),
        return_content: None,
    };
    let req = pb::BatchWriteRowRequest {
        tables: vec![pb::TableInBatchWriteRowRequest {
            table_name: "t".into(),
            rows: vec![put("good", 1), put("bad", 2), put("good", 3)],
        }],
        transaction_id: None,
        is_atomic: None,
    };
    // Not retryable: the retrying client gives up on that row at once.
    let out = c
        .batch_write_row_retrying(&req, Idempotency::Idempotent)
        .await
        .unwrap();
    let failed: Vec<_> = out
        .failures()
        .map(|(_, r, code, _)| (r, code.to_string()))
        .collect();
    assert_eq!(failed, [(1, "OTSParameterInvalid".to_string())]);
    assert_eq!(out.row_retries, 0);
    assert_eq!(env.emu.stats().injected_row_errors, 1);
    // Once the fault is removed the same row is written.
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let out = c
        .batch_write_row_retrying(&req, Idempotency::Idempotent)
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
}

#[tokio::test]
async fn same_seed_same_faults() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let env = start_with(builder().faults(FaultConfig {
            throttle_rate: 0.5,
            seed: Some(seed),
            ..Default::default()
        }))
        .await;
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(env.client.list_table().await.is_ok());
        }
        v
    }
    let a = outcomes(42).await;
    assert_eq!(a, outcomes(42).await);
    assert_ne!(a, outcomes(43).await);
    assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
}

#[tokio::test]
async fn latency_and_dropped_connections() {
    let env = start().await;
    create_two_pk_table(&env.client, "t", 1).await;
    env.emu
        .set_faults(FaultConfig {
            latency: Duration::from_millis(150),
            ..Default::default()
        })
        .unwrap();
    let t0 = Instant::now();
    env.client.list_table().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(env.emu.stats().delayed_requests, 1);

    env.emu
        .set_faults(FaultConfig {
            drop_connection_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let err = put_req(
        &env.client,
        "t",
        key("d", 1),
        vec![cell("v", Value::Integer(1))],
        pb::RowExistenceExpectation::Ignore,
    )
    .await
    .expect_err("dropped");
    assert!(
        matches!(err.root(), OtsError::Transport { .. }),
        "a dropped connection is a transport error: {err}"
    );
    assert_eq!(env.emu.stats().dropped_connections, 1);
    env.emu.set_faults(FaultConfig::default()).unwrap();
    assert!(get(&env.client, "t", &key("d", 1)).await.is_none());
}

#[tokio::test]
async fn capacity_budget_throttles_and_refills() {
    let env = start_with(builder().faults(FaultConfig {
        write_cu_per_sec: Some(5),
        read_cu_per_sec: Some(1000),
        ..Default::default()
    }))
    .await;
    let c = &env.client;
    create_two_pk_table(c, "t", 1).await;
    let mut ok = 0u64;
    let mut throttled = 0;
    let t0 = Instant::now();
    for i in 0..20 {
        match put_req(
            c,
            "t",
            key("w", i),
            vec![cell("v", Value::Integer(i))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Some("OTSNotEnoughCapacityUnit"));
                assert_eq!(e.http_status(), Some(403));
                throttled += 1;
            }
        }
    }
    // A full bucket of 5, plus what refilled while the loop ran (slow machines refill more).
    let refill = (t0.elapsed().as_secs_f64() * 5.0).ceil() as u64;
    assert!(
        (5..=6 + refill).contains(&ok),
        "{ok} writes within a 5 CU/s budget ({refill} refilled)"
    );
    assert!(throttled > 0);
    assert_eq!(env.emu.stats().cu_throttled, throttled);
    // Reads draw on their own budget.
    assert!(get(c, "t", &key("w", 0)).await.is_some());
    // After a second the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(c, "t", key("later", 1), vec![cell("v", Value::Integer(1))]).await;
}
