//! Request verification (signature, MD5, date, AK, instance) and response signing.

use std::time::{Duration, SystemTime};

use ots_wire::SignatureVersion;
use ots_wire::auth;

use super::*;

fn put_body(v: i64) -> Vec<u8> {
    pb::PutRowRequest {
        table_name: "t".into(),
        row: encode_put_row(&Row {
            primary_key: key("victim", 1),
            cells: vec![cell("v", Value::Integer(v))],
        })
        .into(),
        condition: condition(pb::RowExistenceExpectation::Ignore),
        return_content: None,
        transaction_id: None,
    }
    .encode_to_vec()
}

fn auth_failed(message: &str) -> (u16, String, String) {
    (403, "OTSAuthFailed".to_string(), message.to_string())
}

#[tokio::test]
async fn refused_requests_change_nothing() {
    let env = start().await;
    create_two_pk_table(&env.client, "t", 1).await;
    let emu = &env.emu;

    // Wrong secret, through a real client: the error arrives unsigned and is still reported.
    let wrong = client_for(emu, AK, "not-the-secret");
    assert_error(
        put_req(
            &wrong,
            "t",
            key("victim", 1),
            vec![cell("v", Value::Integer(1))],
            pb::RowExistenceExpectation::Ignore,
        )
        .await,
        403,
        "OTSAuthFailed",
        "Signature mismatch.",
    );

    // Tampered body: signed for v=1, sent with v=2.
    let h = signed_headers(SK, "PutRow", &put_body(1), SystemTime::now());
    let r = raw_post(emu, "PutRow", &h, put_body(2)).await;
    assert_eq!(
        r.error(),
        auth_failed("Mismatch between MD5 value of request body and x-ots-contentmd5 in header.")
    );
    assert!(r.header("authorization").is_none());

    // Tampered body with a recomputed MD5 header: the signature no longer matches.
    let mut h2 = h.clone();
    for (k, v) in &mut h2 {
        if k == auth::HDR_CONTENT_MD5 {
            *v = auth::content_md5(&put_body(2));
        }
    }
    let r = raw_post(emu, "PutRow", &h2, put_body(2)).await;
    assert_eq!(r.error(), auth_failed("Signature mismatch."));

    // Stale date: 20 minutes ago, correctly signed.
    let at = SystemTime::now() - Duration::from_secs(20 * 60);
    let h = signed_headers(SK, "PutRow", &put_body(3), at);
    let date = h
        .iter()
        .find(|(k, _)| k == auth::HDR_DATE)
        .map(|(_, v)| v.clone())
        .unwrap();
    let r = raw_post(emu, "PutRow", &h, put_body(3)).await;
    assert_eq!(
        r.error(),
        auth_failed(&format!(
            "Mismatch between system time and x-ots-date: {date}."
        ))
    );

    // Signed for another action than the one posted to.
    let h = signed_headers(SK, "UpdateRow", &put_body(4), SystemTime::now());
    let r = raw_post(emu, "PutRow", &h, put_body(4)).await;
    assert_eq!(r.error(), auth_failed("Signature mismatch."));

    // Unknown AccessKey id and wrong instance.
    let unknown = client_for(emu, "nobody", SK);
    assert_error(
        unknown.list_table().await,
        403,
        "OTSAuthFailed",
        "The AccessKeyID does not exist.",
    );
    let mut cfg = ClientConfig::new(emu.endpoint(), "otherinst", Credentials::new(AK, SK));
    cfg.retry = RetryPolicy::none();
    let other = OtsClient::new(cfg).unwrap();
    assert_error(
        other.list_table().await,
        403,
        "OTSAuthFailed",
        "The instance is not found.",
    );

    // Missing header.
    let mut h = signed_headers(SK, "ListTable", &[], SystemTime::now());
    h.retain(|(k, _)| k != auth::HDR_DATE);
    let r = raw_post(emu, "ListTable", &h, vec![]).await;
    assert_eq!(
        r.error(),
        (
            400,
            "OTSParameterInvalid".to_string(),
            "Missing header: 'x-ots-date'.".to_string()
        )
    );

    // None of it wrote anything.
    assert!(get(&env.client, "t", &key("victim", 1)).await.is_none());
    let stats = emu.stats();
    assert_eq!(stats.auth_failures, 8);
    assert_eq!(stats.actions.get("PutRow"), None);
}

#[tokio::test]
async fn responses_are_signed_like_the_service() {
    let env = start().await;
    let r = signed_post(&env.emu, "ListTable", vec![]).await;
    assert_eq!(r.status, 200);
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ots-") || k == "authorization")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    for h in [
        "x-ots-contentmd5",
        "x-ots-requestid",
        "x-ots-date",
        "x-ots-contenttype",
        "authorization",
    ] {
        assert!(names.contains(&h), "{h} missing from {names:?}");
    }
    assert_eq!(r.header("x-ots-contenttype"), Some("protocol buffer"));
    // Six fraction digits, as the service writes them.
    let date = r.header("x-ots-date").unwrap();
    assert_eq!(date.len(), "2024-01-01T00:00:00.123456Z".len(), "{date}");
    let id = r.header("x-ots-requestid").unwrap();
    assert_eq!(
        id.split('-').map(str::len).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12]
    );
    // The official client's checks, reimplemented in our wire crate.
    auth::verify_response(
        &Credentials::new(AK, SK),
        &SignatureVersion::V2,
        "ListTable",
        200,
        &headers,
        &r.body,
        None,
        SystemTime::now(),
    )
    .expect("response verifies");
    // A wrong key does not verify it.
    assert!(
        auth::verify_response(
            &Credentials::new(AK, "other"),
            &SignatureVersion::V2,
            "ListTable",
            200,
            &headers,
            &r.body,
            None,
            SystemTime::now(),
        )
        .is_err()
    );
}

#[tokio::test]
async fn v4_signed_requests_work_end_to_end() {
    let env = start().await;
    let mut cfg = ClientConfig::new(env.emu.endpoint(), INSTANCE, Credentials::new(AK, SK));
    cfg.retry = RetryPolicy::none();
    cfg.signature = SignatureVersion::V4 {
        region: "cn-hangzhou".into(),
    };
    let v4 = OtsClient::new(cfg).unwrap();
    // The client verifies the response signature with the V4 derived key.
    create_two_pk_table(&v4, "t", 1).await;
    put(&v4, "t", key("a", 1), vec![cell("v", Value::Integer(1))]).await;
    assert!(get(&env.client, "t", &key("a", 1)).await.is_some());
    // Errors after verification are signed too, and the client accepts them.
    assert_error(
        v4.describe_table("nope").await,
        404,
        "OTSObjectNotExist",
        "Requested table does not exist.",
    );
}
