//! Responses that fail the official SDK's integrity checks are rejected with a clear error.

mod common;

use common::*;
use ots_wire::OtsError;
use ots_wire::auth::{self, ResponseVerifyError};
use ots_wire::pb;

fn list_resp() -> Vec<u8> {
    use prost::Message;
    pb::ListTableResponse {
        table_names: vec!["a".into()],
    }
    .encode_to_vec()
}

async fn rejected(tamper: Tamper) -> (OtsError, usize) {
    let server = ScriptedServer::start(vec![Reply::Tampered(list_resp(), tamper); 3]).await;
    let client = server.client(fast_retry(3));
    let err = client.list_table().await.unwrap_err();
    (err, server.requests().len())
}

#[tokio::test]
async fn untampered_response_is_accepted() {
    let server = ScriptedServer::start(vec![Reply::Tampered(list_resp(), Tamper::None)]).await;
    let client = server.client(fast_retry(1));
    assert_eq!(client.list_table().await.unwrap(), vec!["a".to_string()]);
}

#[tokio::test]
async fn wrong_body_md5_is_rejected_and_retried_for_reads() {
    let (err, attempts) = rejected(Tamper::WrongMd5).await;
    assert!(
        matches!(
            err.root(),
            OtsError::ResponseVerification {
                source: ResponseVerifyError::BodyMd5Mismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // A damaged body is a transit error: a read is repeated, and gives up at the limit.
    assert_eq!(attempts, 3);
    assert!(err.to_string().contains("MD5"), "{err}");
}

#[tokio::test]
async fn wrong_signature_is_rejected_without_retry() {
    let (err, attempts) = rejected(Tamper::WrongSignature).await;
    assert!(
        matches!(
            err,
            OtsError::ResponseVerification {
                source: ResponseVerifyError::SignatureMismatch,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(attempts, 1);
    let text = err.to_string();
    assert!(
        text.contains("ListTable") && text.contains("response rejected"),
        "{text}"
    );
    assert!(!text.contains(SK));
}

#[tokio::test]
async fn other_access_key_in_authorization_is_rejected() {
    let (err, _) = rejected(Tamper::OtherAccessKey).await;
    assert!(
        matches!(
            err,
            OtsError::ResponseVerification {
                source: ResponseVerifyError::AccessKeyMismatch,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn each_missing_required_header_is_named() {
    for header in [
        auth::HDR_CONTENT_MD5,
        auth::HDR_REQUEST_ID,
        auth::HDR_DATE,
        auth::HDR_CONTENT_TYPE,
    ] {
        let (err, _) = rejected(Tamper::OmitHeader(header)).await;
        match &err {
            OtsError::ResponseVerification {
                source: ResponseVerifyError::MissingHeader(name),
                ..
            } => assert_eq!(*name, header),
            other => panic!("{header}: {other:?}"),
        }
        assert!(err.to_string().contains(header), "{err}");
    }
    let (err, _) = rejected(Tamper::OmitHeader(auth::HDR_AUTHORIZATION)).await;
    assert!(
        matches!(
            err,
            OtsError::ResponseVerification {
                source: ResponseVerifyError::MissingAuthorization,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn date_without_fraction_is_rejected() {
    let (err, _) = rejected(Tamper::DateWithoutFraction).await;
    assert!(
        matches!(
            err,
            OtsError::ResponseVerification {
                source: ResponseVerifyError::InvalidDate(_),
                ..
            }
        ),
        "{err:?}"
    );
}
