//! Client-side response verification, as the official Python SDK does it (§1.5).

use std::time::{Duration, SystemTime};

use super::credentials::{Credentials, SignatureVersion};
use super::headers::*;
use super::sign::{content_md5, ct_eq, response_signature, v4_signing_key};
use crate::date::{abs_diff, format_sign_date, parse_date_detailed};

/// Window the official Python SDK allows between the response date and local time.
pub const RESPONSE_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why the client rejects a response. Never contains a secret or derived key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseVerifyError {
    #[error("\"{0}\" is missing in response header")]
    MissingHeader(&'static str),
    #[error("MD5 mismatch in response: header says {expected}, body has {actual}")]
    BodyMd5Mismatch { expected: String, actual: String },
    #[error("invalid date format in response: {0}")]
    InvalidDate(String),
    #[error("response date {date} differs from system time by more than 15 minutes")]
    DateSkew { date: String },
    #[error("\"Authorization\" is missing in response header")]
    MissingAuthorization,
    #[error("invalid Authorization in response")]
    MalformedAuthorization,
    #[error("access key id mismatch in response")]
    AccessKeyMismatch,
    #[error("signature mismatch in response")]
    SignatureMismatch,
}

/// Client side: verify as the official Python SDK does (§1.5 table): on 2xx require x-ots-contentmd5, x-ots-requestid, x-ots-date, x-ots-contenttype and Authorization; body MD5 must match whenever the header is present (any status); x-ots-date must parse and be within 15 minutes of `now`; Authorization must start "OTS ", carry our AK id, and verify. On non-2xx Authorization is optional but must verify if present, except 403 with error code OTSAuthFailed (caller passes `error_code: Option<&str>`).
#[allow(clippy::too_many_arguments)]
pub fn verify_response(
    creds: &Credentials,
    version: &SignatureVersion,
    action: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    error_code: Option<&str>,
    now: SystemTime,
) -> Result<(), ResponseVerifyError> {
    verify_response_md5(
        creds,
        version,
        action,
        status,
        headers,
        &content_md5(body),
        error_code,
        now,
    )
}

/// [`verify_response`] for a body whose MD5 (base64, as [`content_md5`] gives it) was computed
/// while it was received.
#[allow(clippy::too_many_arguments)]
pub fn verify_response_md5(
    creds: &Credentials,
    version: &SignatureVersion,
    action: &str,
    status: u16,
    headers: &[(&str, &str)],
    body_md5: &str,
    error_code: Option<&str>,
    now: SystemTime,
) -> Result<(), ResponseVerifyError> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let success = (200..300).contains(&status);

    if success {
        for name in [HDR_CONTENT_MD5, HDR_REQUEST_ID, HDR_DATE, HDR_CONTENT_TYPE] {
            if get(name).is_none() {
                return Err(ResponseVerifyError::MissingHeader(name));
            }
        }
    }
    if let Some(expected) = get(HDR_CONTENT_MD5)
        && body_md5 != expected
    {
        return Err(ResponseVerifyError::BodyMd5Mismatch {
            expected: expected.to_string(),
            actual: body_md5.to_string(),
        });
    }
    if let Some(date) = get(HDR_DATE) {
        // Python parses with `%S.%fZ`: a fraction is mandatory.
        let sent = match parse_date_detailed(date) {
            Some((t, Some(n))) if n > 0 => t,
            _ => return Err(ResponseVerifyError::InvalidDate(date.to_string())),
        };
        if abs_diff(now, sent) > RESPONSE_MAX_SKEW {
            return Err(ResponseVerifyError::DateSkew {
                date: date.to_string(),
            });
        }
    }

    let auth = match get(HDR_AUTHORIZATION) {
        Some(a) => a,
        None if success => return Err(ResponseVerifyError::MissingAuthorization),
        None => return Ok(()),
    };
    // The server cannot sign with a key it did not accept.
    if status == 403 && error_code == Some("OTSAuthFailed") {
        return Ok(());
    }
    let rest = auth
        .strip_prefix("OTS ")
        .ok_or(ResponseVerifyError::MalformedAuthorization)?;
    let (ak_id, signature) = rest
        .split_once(':')
        .ok_or(ResponseVerifyError::MalformedAuthorization)?;
    if signature.contains(':') {
        return Err(ResponseVerifyError::MalformedAuthorization);
    }
    if ak_id != creds.access_key_id() {
        return Err(ResponseVerifyError::AccessKeyMismatch);
    }
    let secret = creds.access_key_secret().expose();
    let verified = match version {
        SignatureVersion::V2 => ct_eq(
            response_signature(secret, action, headers).as_bytes(),
            signature.as_bytes(),
        ),
        SignatureVersion::V4 { region } => {
            // The server signs with the key of the request's sign date; a request sent just
            // before UTC midnight may be answered after it, so yesterday's key is accepted too.
            let today = format_sign_date(now);
            let yesterday = now
                .checked_sub(Duration::from_secs(86_400))
                .map(format_sign_date);
            std::iter::once(today).chain(yesterday).any(|sign_date| {
                let key = v4_signing_key(secret, &sign_date, region);
                ct_eq(
                    response_signature(&key, action, headers).as_bytes(),
                    signature.as_bytes(),
                )
            })
        }
    };
    if verified {
        Ok(())
    } else {
        Err(ResponseVerifyError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use crate::date::format_ots_date_micros;

    // The `Authorization` value a server sends (`sign_response` without needing the `server`
    // feature).
    fn authorization(ak: &str, key: &str, action: &str, headers: &[(&str, &str)]) -> String {
        format!("OTS {ak}:{}", response_signature(key, action, headers))
    }

    struct Resp {
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    }

    fn signed_response(version: &SignatureVersion, now: SystemTime, body: &[u8]) -> Resp {
        let mut headers = vec![
            (HDR_CONTENT_MD5, content_md5(body)),
            (HDR_CONTENT_TYPE, CONTENT_TYPE_PROTOBUF.to_string()),
            (HDR_DATE, format_ots_date_micros(now)),
            (
                HDR_REQUEST_ID,
                "0005aedd-5b9e-9b48-a5c1-720b12a7b4bb".to_string(),
            ),
        ];
        let key = match version {
            SignatureVersion::V2 => SECRET.to_string(),
            SignatureVersion::V4 { region } => {
                v4_signing_key(SECRET, &format_sign_date(now), region)
            }
        };
        let auth = authorization("testid", &key, "GetRow", &view(&headers));
        headers.push(("Authorization", auth));
        Resp {
            headers,
            body: body.to_vec(),
        }
    }

    fn check(
        r: &Resp,
        status: u16,
        code: Option<&str>,
        now: SystemTime,
    ) -> Result<(), ResponseVerifyError> {
        check_v(r, &SignatureVersion::V2, status, code, now)
    }

    fn check_v(
        r: &Resp,
        version: &SignatureVersion,
        status: u16,
        code: Option<&str>,
        now: SystemTime,
    ) -> Result<(), ResponseVerifyError> {
        verify_response(
            &creds(),
            version,
            "GetRow",
            status,
            &view(&r.headers),
            &r.body,
            code,
            now,
        )
    }

    fn set(r: &mut Resp, name: &str, value: &str) {
        for (n, v) in r.headers.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_string();
            }
        }
    }

    fn resign(r: &mut Resp) {
        r.headers.retain(|(n, _)| *n != "Authorization");
        let auth = authorization("testid", SECRET, "GetRow", &view(&r.headers));
        r.headers.push(("Authorization", auth));
    }

    #[test]
    fn response_accepts_well_formed() {
        let now = at(JAN1_2024, 500_000_000);
        let r = signed_response(&SignatureVersion::V2, now, b"payload");
        assert_eq!(check(&r, 200, None, now + Duration::from_secs(2)), Ok(()));
        let r = signed_response(&v4(), now, b"payload");
        assert_eq!(check_v(&r, &v4(), 200, None, now), Ok(()));
    }

    #[test]
    fn response_v4_accepts_previous_day_key() {
        // Request signed at 23:59:59.9 on Dec 31, response checked just after midnight.
        let signed = at(JAN1_2024 - 1, 900_000_000);
        let r = signed_response(&v4(), signed, b"");
        assert_eq!(
            check_v(&r, &v4(), 200, None, at(JAN1_2024, 100_000_000)),
            Ok(())
        );
        // A V2-keyed response does not verify in V4 mode.
        let r = signed_response(&SignatureVersion::V2, signed, b"");
        assert_eq!(
            check_v(&r, &v4(), 200, None, signed),
            Err(ResponseVerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn response_rejects_wrong_md5() {
        let now = at(JAN1_2024, 0);
        let mut r = signed_response(&SignatureVersion::V2, now, b"payload");
        r.body = b"payloaz".to_vec();
        let err = check(&r, 200, None, now).unwrap_err();
        assert_eq!(
            err,
            ResponseVerifyError::BodyMd5Mismatch {
                expected: content_md5(b"payload"),
                actual: content_md5(b"payloaz"),
            }
        );
        // Also on errors.
        assert!(matches!(
            check(&r, 500, None, now),
            Err(ResponseVerifyError::BodyMd5Mismatch { .. })
        ));
    }

    #[test]
    fn response_rejects_wrong_signature() {
        let now = at(JAN1_2024, 0);
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        set(&mut r, HDR_REQUEST_ID, "other");
        assert_eq!(
            check(&r, 200, None, now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
        // An unsigned extra x-ots-* header breaks it as well.
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        r.headers.push(("x-ots-extra", "1".into()));
        assert_eq!(
            check(&r, 200, None, now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
        // Signed with a different secret.
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        let auth = authorization("testid", "other", "GetRow", &view(&r.headers[..4]));
        set(&mut r, "Authorization", &auth);
        assert_eq!(
            check(&r, 200, None, now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn response_rejects_missing_headers() {
        let now = at(JAN1_2024, 0);
        for name in [HDR_CONTENT_MD5, HDR_REQUEST_ID, HDR_DATE, HDR_CONTENT_TYPE] {
            let mut r = signed_response(&SignatureVersion::V2, now, b"");
            r.headers.retain(|(n, _)| *n != name);
            resign(&mut r);
            assert_eq!(
                check(&r, 200, None, now),
                Err(ResponseVerifyError::MissingHeader(name))
            );
        }
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        r.headers.retain(|(n, _)| *n != "Authorization");
        assert_eq!(
            check(&r, 200, None, now),
            Err(ResponseVerifyError::MissingAuthorization)
        );
        // Non-2xx: headers and Authorization optional.
        assert_eq!(check(&r, 404, Some("OTSObjectNotExist"), now), Ok(()));
        let bare = Resp {
            headers: vec![],
            body: b"err".to_vec(),
        };
        assert_eq!(check(&bare, 503, Some("OTSServerBusy"), now), Ok(()));
    }

    #[test]
    fn response_rejects_bad_dates() {
        let now = at(JAN1_2024, 0);
        for date in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "Mon, 01 Jan 2024",
        ] {
            let mut r = signed_response(&SignatureVersion::V2, now, b"");
            set(&mut r, HDR_DATE, date);
            resign(&mut r);
            assert_eq!(
                check(&r, 200, None, now),
                Err(ResponseVerifyError::InvalidDate(date.to_string()))
            );
        }
        let r = signed_response(&SignatureVersion::V2, now, b"");
        let date = "2024-01-01T00:00:00.000000Z".to_string();
        for off in [
            now + Duration::from_secs(1200),
            now - Duration::from_secs(1200),
        ] {
            assert_eq!(
                check(&r, 200, None, off),
                Err(ResponseVerifyError::DateSkew { date: date.clone() })
            );
        }
        assert_eq!(
            check(&r, 200, None, now + Duration::from_secs(14 * 60)),
            Ok(())
        );
    }

    #[test]
    fn response_rejects_ak_mismatch_and_malformed_authorization() {
        let now = at(JAN1_2024, 0);
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        let auth = authorization("otherid", SECRET, "GetRow", &view(&r.headers[..4]));
        set(&mut r, "Authorization", &auth);
        assert_eq!(
            check(&r, 200, None, now),
            Err(ResponseVerifyError::AccessKeyMismatch)
        );
        for bad in ["Bearer x", "OTS testid", "OTS testid:a:b", "ots testid:abc"] {
            set(&mut r, "Authorization", bad);
            assert_eq!(
                check(&r, 200, None, now),
                Err(ResponseVerifyError::MalformedAuthorization)
            );
        }
    }

    #[test]
    fn response_error_statuses_and_authorization() {
        let now = at(JAN1_2024, 0);
        let mut r = signed_response(&SignatureVersion::V2, now, b"err");
        set(&mut r, "Authorization", "OTS testid:AAAA");
        // 403 OTSAuthFailed: the server could not have signed with our key.
        assert_eq!(check(&r, 403, Some("OTSAuthFailed"), now), Ok(()));
        // Any other error must verify if Authorization is present.
        assert_eq!(
            check(&r, 403, Some("OTSConditionCheckFail"), now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
        assert_eq!(
            check(&r, 404, Some("OTSAuthFailed"), now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
        assert_eq!(
            check(&r, 500, None, now),
            Err(ResponseVerifyError::SignatureMismatch)
        );
        let good = signed_response(&SignatureVersion::V2, now, b"err");
        assert_eq!(
            check(&good, 409, Some("OTSObjectAlreadyExist"), now),
            Ok(())
        );
    }

    #[test]
    fn errors_never_show_secrets() {
        let c = Credentials::new("myid", CANARY).with_security_token(format!("{CANARY}-tok"));
        let now = at(JAN1_2024, 0);
        let key = v4_signing_key(CANARY, "20240101", "cn-hangzhou");
        let mut texts = Vec::new();
        let mut r = signed_response(&SignatureVersion::V2, now, b"");
        for e in [
            ResponseVerifyError::MissingHeader(HDR_DATE),
            ResponseVerifyError::InvalidDate("x".into()),
            ResponseVerifyError::DateSkew { date: "x".into() },
            ResponseVerifyError::MissingAuthorization,
            ResponseVerifyError::MalformedAuthorization,
            ResponseVerifyError::AccessKeyMismatch,
        ] {
            texts.push(format!("{e:?} {e}"));
        }
        r.body = b"zz".to_vec();
        for (status, version) in [(200, SignatureVersion::V2), (500, v4())] {
            let res = verify_response(
                &c,
                &version,
                "GetRow",
                status,
                &view(&r.headers),
                &r.body,
                None,
                now,
            );
            let e = res.unwrap_err();
            texts.push(format!("{e:?} {e}"));
        }
        r.body.clear();
        for version in [SignatureVersion::V2, v4()] {
            let res = verify_response(
                &c,
                &version,
                "GetRow",
                200,
                &view(&r.headers),
                &r.body,
                None,
                now,
            );
            let e = res.unwrap_err();
            assert_eq!(e, ResponseVerifyError::AccessKeyMismatch);
            texts.push(format!("{e:?} {e}"));
        }
        assert_eq!(texts.len(), 10);
        for t in &texts {
            assert!(!t.contains(CANARY), "{t}");
            assert!(!t.contains(&key), "{t}");
        }
    }
}
