//! Server side (feature `server`): request verification and response signing, for the
//! emulator and test servers. A client never needs this.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::credentials::{Secret, SignatureVersion};
use super::headers::*;
use super::sign::{
    content_md5, ct_eq, request_string_to_sign, response_signature, v2_signature, v4_signature,
    v4_signing_key,
};
use crate::date::{abs_diff, parse_ots_date, parse_sign_date};

/// Why the server rejects a request; carries the exact Tablestore code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAuthError {
    /// A required header is absent (400 OTSParameterInvalid).
    MissingHeader(&'static str),
    /// `x-ots-date` or `x-ots-signdate` does not parse (400 OTSParameterInvalid).
    InvalidDate(String),
    /// `x-ots-apiversion` is not 2015-12-31 (400 OTSParameterInvalid).
    UnsupportedApiVersion(String),
    /// `x-ots-date` is too far from the server clock (403 OTSAuthFailed).
    DateSkew(String),
    /// 403 OTSAuthFailed.
    UnknownAccessKey,
    /// 403 OTSAuthFailed.
    InstanceNotFound,
    /// 403 OTSAuthFailed.
    BodyMd5Mismatch,
    /// 403 OTSAuthFailed.
    SignatureMismatch,
}

impl RequestAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestAuthError::MissingHeader(_)
            | RequestAuthError::InvalidDate(_)
            | RequestAuthError::UnsupportedApiVersion(_) => "OTSParameterInvalid",
            _ => "OTSAuthFailed",
        }
    }

    pub fn message(&self) -> String {
        match self {
            RequestAuthError::MissingHeader(name) => format!("Missing header: '{name}'."),
            RequestAuthError::InvalidDate(v) => format!("Invalid date format: {v}."),
            RequestAuthError::UnsupportedApiVersion(v) => {
                format!("Unsupported API version: '{v}'.")
            }
            RequestAuthError::DateSkew(d) => {
                format!("Mismatch between system time and x-ots-date: {d}.")
            }
            RequestAuthError::UnknownAccessKey => "The AccessKeyID does not exist.".to_string(),
            RequestAuthError::InstanceNotFound => "The instance is not found.".to_string(),
            RequestAuthError::BodyMd5Mismatch => {
                "Mismatch between MD5 value of request body and x-ots-contentmd5 in header."
                    .to_string()
            }
            RequestAuthError::SignatureMismatch => "Signature mismatch.".to_string(),
        }
    }

    pub fn http_status(&self) -> u16 {
        match self.code() {
            "OTSParameterInvalid" => 400,
            _ => 403,
        }
    }
}

impl fmt::Display for RequestAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.http_status(),
            self.code(),
            self.message()
        )
    }
}

impl std::error::Error for RequestAuthError {}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    pub access_key_id: String,
    pub signature_version: SignatureVersion,
    /// `x-ots-signdate` for V4 requests.
    pub sign_date: Option<String>,
    pub has_security_token: bool,
    // Secret (V2) or derived V4 key: what the response must be signed with.
    response_key: Secret,
}

impl VerifiedRequest {
    /// Key for `sign_response`: the secret (V2) or the V4 derived key of the request's sign date.
    pub fn response_signing_key(&self) -> &Secret {
        &self.response_key
    }

    /// `Authorization` value for a response with the given x-ots-* headers.
    pub fn sign_response(&self, action: &str, headers: &[(&str, &str)]) -> String {
        sign_response(
            &self.access_key_id,
            self.response_key.expose(),
            action,
            headers,
        )
    }
}

/// Server side. `headers` are all request headers (any case names). `lookup_secret` maps an AK id to its secret.
///
/// Checks, in order: required headers, API version, date format, date skew, AK, instance,
/// body MD5, signature (V4 if `x-ots-signaturev4` is present, else V2).
pub fn verify_request(
    action: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    instance: &str,
    lookup_secret: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<VerifiedRequest, RequestAuthError> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let require = |name: &'static str| get(name).ok_or(RequestAuthError::MissingHeader(name));

    let ak_id = require(HDR_ACCESS_KEY_ID)?;
    let api_version = require(HDR_API_VERSION)?;
    let instance_header = require(HDR_INSTANCE_NAME)?;
    let md5_header = require(HDR_CONTENT_MD5)?;
    let date = require(HDR_DATE)?;
    let v4 = match get(HDR_SIGNATURE_V4) {
        Some(sig) => Some((sig, require(HDR_SIGN_DATE)?, require(HDR_SIGN_REGION)?)),
        None => None,
    };
    let v2_sig = match v4 {
        Some(_) => None,
        None => Some(require(HDR_SIGNATURE)?),
    };

    if api_version != API_VERSION {
        return Err(RequestAuthError::UnsupportedApiVersion(
            api_version.to_string(),
        ));
    }
    let sent = parse_ots_date(date).map_err(|_| RequestAuthError::InvalidDate(date.to_string()))?;
    if let Some((_, sign_date, _)) = v4
        && parse_sign_date(sign_date).is_err()
    {
        return Err(RequestAuthError::InvalidDate(sign_date.to_string()));
    }
    if abs_diff(now, sent) > max_skew {
        return Err(RequestAuthError::DateSkew(date.to_string()));
    }
    let secret = Secret::new(lookup_secret(ak_id).ok_or(RequestAuthError::UnknownAccessKey)?);
    if instance_header != instance {
        return Err(RequestAuthError::InstanceNotFound);
    }
    if !ct_eq(content_md5(body).as_bytes(), md5_header.as_bytes()) {
        return Err(RequestAuthError::BodyMd5Mismatch);
    }

    let string_to_sign = request_string_to_sign(action, headers);
    let (ok, signature_version, sign_date, response_key) = match (v4, v2_sig) {
        (Some((sig, sign_date, region)), _) => {
            let key = v4_signing_key(secret.expose(), sign_date, region);
            let expected = v4_signature(&key, &string_to_sign);
            (
                ct_eq(expected.as_bytes(), sig.as_bytes()),
                SignatureVersion::V4 {
                    region: region.to_string(),
                },
                Some(sign_date.to_string()),
                Secret::new(key),
            )
        }
        (None, Some(sig)) => {
            let expected = v2_signature(secret.expose(), &string_to_sign);
            (
                ct_eq(expected.as_bytes(), sig.as_bytes()),
                SignatureVersion::V2,
                None,
                secret,
            )
        }
        // Unreachable: one of the two signature headers was required above.
        (None, None) => return Err(RequestAuthError::MissingHeader(HDR_SIGNATURE)),
    };
    if !ok {
        return Err(RequestAuthError::SignatureMismatch);
    }
    Ok(VerifiedRequest {
        access_key_id: ak_id.to_string(),
        signature_version,
        sign_date,
        has_security_token: get(HDR_STS_TOKEN).is_some(),
        response_key,
    })
}

/// Server side: sign a response. `headers` = the x-ots-* response headers the server will send. Returns the Authorization value "OTS {akid}:{sig}". key = secret (V2) or the V4 derived key string (V4); HMAC-SHA1 in both (§1.5).
pub fn sign_response(
    access_key_id: &str,
    signing_key: &str,
    action: &str,
    headers: &[(&str, &str)],
) -> String {
    format!(
        "OTS {access_key_id}:{}",
        response_signature(signing_key, action, headers)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use crate::auth::{Credentials, ResponseVerifyError, sign_request, verify_response};
    use crate::date::format_ots_date_micros;

    fn lookup(id: &str) -> Option<String> {
        (id == "testid").then(|| SECRET.to_string())
    }

    // ---- §1.5 response vectors -------------------------------------------------

    fn response_headers() -> Vec<(&'static str, String)> {
        vec![
            (HDR_CONTENT_MD5, MD5_EMPTY.to_string()),
            (HDR_CONTENT_TYPE, CONTENT_TYPE_PROTOBUF.to_string()),
            (HDR_DATE, "2024-01-01T00:00:00.123456Z".to_string()),
            (
                HDR_REQUEST_ID,
                "00000000-0000-0000-0000-000000000001".to_string(),
            ),
        ]
    }

    #[test]
    fn response_signature_examples() {
        let h = response_headers();
        assert_eq!(
            sign_response("testid", SECRET, "ListTable", &view(&h)),
            "OTS testid:0d4V9CQJ14actmDEdDdjedWumVo="
        );
        let key = v4_signing_key(SECRET, "20240101", "cn-hangzhou");
        assert_eq!(
            sign_response("testid", &key, "ListTable", &view(&h)),
            "OTS testid:Sjklff8RjbTDBQ2S4dFKMlMQBx4="
        );
        // Order of the input does not matter; non-x-ots headers are ignored.
        let mut shuffled = view(&h);
        shuffled.reverse();
        shuffled.push(("Connection", "keep-alive"));
        assert_eq!(
            sign_response("testid", SECRET, "ListTable", &shuffled),
            "OTS testid:0d4V9CQJ14actmDEdDdjedWumVo="
        );
    }

    // ---- verify_request ---------------------------------------------------------

    fn verify(
        h: &[(&str, &str)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedRequest, RequestAuthError> {
        verify_request(
            "PutRow",
            h,
            body,
            "inst",
            &lookup,
            now,
            Duration::from_secs(900),
        )
    }

    fn assert_err(
        r: Result<VerifiedRequest, RequestAuthError>,
        status: u16,
        code: &str,
        msg: &str,
    ) {
        let e = r.expect_err("expected rejection");
        assert_eq!(
            (e.http_status(), e.code(), e.message().as_str()),
            (status, code, msg)
        );
    }

    #[test]
    fn round_trip_v2() {
        let now = at(JAN1_2024 + 123, 456_000_000);
        let h = sign_request(
            &creds(),
            &SignatureVersion::V2,
            "inst",
            "PutRow",
            b"body",
            now,
        );
        let v = verify(&view(&h), b"body", now + Duration::from_secs(5)).expect("valid");
        assert_eq!(v.access_key_id, "testid");
        assert_eq!(v.signature_version, SignatureVersion::V2);
        assert_eq!(v.sign_date, None);
        assert!(!v.has_security_token);
        assert_eq!(v.response_signing_key().expose(), SECRET);
    }

    #[test]
    fn round_trip_v4_and_response_key() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(&creds(), &v4(), "inst", "PutRow", b"body", now);
        let v = verify(&view(&h), b"body", now).expect("valid");
        assert_eq!(v.signature_version, v4());
        assert_eq!(v.sign_date.as_deref(), Some("20240101"));
        assert_eq!(
            v.response_signing_key().expose(),
            "huHYf6fOinMwBCVcP/TJoXykdjWqb4GXDWHcrokQllo="
        );
    }

    #[test]
    fn round_trip_with_sts_token_and_mixed_case_names() {
        let c = creds().with_security_token("tok-123");
        let now = at(JAN1_2024, 0);
        for version in [SignatureVersion::V2, v4()] {
            let h = sign_request(&c, &version, "inst", "PutRow", b"x", now);
            assert_eq!(header(&h, HDR_STS_TOKEN), Some("tok-123"));
            let upper: Vec<(String, &str)> = h
                .iter()
                .map(|(n, v)| (n.to_ascii_uppercase(), v.as_str()))
                .collect();
            let mut hv: Vec<(&str, &str)> = upper.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            hv.push(("User-Agent", "test"));
            let v = verify(&hv, b"x", now).expect("valid");
            assert!(v.has_security_token);
            // The token is signed: changing it breaks the signature.
            let mut tampered = view(&h);
            for (n, v) in tampered.iter_mut() {
                if *n == HDR_STS_TOKEN {
                    *v = "tok-124";
                }
            }
            assert_err(
                verify(&tampered, b"x", now),
                403,
                "OTSAuthFailed",
                "Signature mismatch.",
            );
        }
    }

    #[test]
    fn rejects_wrong_secret() {
        let now = at(JAN1_2024, 0);
        for version in [SignatureVersion::V2, v4()] {
            let h = sign_request(
                &Credentials::new("testid", "other"),
                &version,
                "inst",
                "PutRow",
                b"",
                now,
            );
            assert_err(
                verify(&view(&h), b"", now),
                403,
                "OTSAuthFailed",
                "Signature mismatch.",
            );
        }
    }

    #[test]
    fn rejects_wrong_action() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(&creds(), &SignatureVersion::V2, "inst", "GetRow", b"", now);
        assert_err(
            verify(&view(&h), b"", now),
            403,
            "OTSAuthFailed",
            "Signature mismatch.",
        );
    }

    #[test]
    fn rejects_tampered_body() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(
            &creds(),
            &SignatureVersion::V2,
            "inst",
            "PutRow",
            b"body",
            now,
        );
        assert_err(
            verify(&view(&h), b"bodz", now),
            403,
            "OTSAuthFailed",
            "Mismatch between MD5 value of request body and x-ots-contentmd5 in header.",
        );
    }

    #[test]
    fn rejects_stale_date() {
        let sent = at(JAN1_2024, 0);
        let h = sign_request(&creds(), &SignatureVersion::V2, "inst", "PutRow", b"", sent);
        let late = sent + Duration::from_secs(901);
        assert_err(
            verify(&view(&h), b"", late),
            403,
            "OTSAuthFailed",
            "Mismatch between system time and x-ots-date: 2024-01-01T00:00:00.000Z.",
        );
        // Future dates too; exactly at the limit is fine.
        let early = sent - Duration::from_secs(901);
        assert_eq!(
            verify(&view(&h), b"", early).unwrap_err().code(),
            "OTSAuthFailed"
        );
        assert!(verify(&view(&h), b"", sent + Duration::from_secs(900)).is_ok());
    }

    #[test]
    fn rejects_unknown_ak_and_wrong_instance() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(
            &Credentials::new("nobody", SECRET),
            &SignatureVersion::V2,
            "inst",
            "PutRow",
            b"",
            now,
        );
        assert_err(
            verify(&view(&h), b"", now),
            403,
            "OTSAuthFailed",
            "The AccessKeyID does not exist.",
        );
        let h = sign_request(&creds(), &SignatureVersion::V2, "other", "PutRow", b"", now);
        assert_err(
            verify(&view(&h), b"", now),
            403,
            "OTSAuthFailed",
            "The instance is not found.",
        );
    }

    #[test]
    fn rejects_missing_headers() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(&creds(), &SignatureVersion::V2, "inst", "PutRow", b"", now);
        for (name, _) in &h {
            let without: Vec<(&str, &str)> =
                view(&h).into_iter().filter(|(n, _)| n != name).collect();
            assert_err(
                verify(&without, b"", now),
                400,
                "OTSParameterInvalid",
                &format!("Missing header: '{name}'."),
            );
        }
        let h = sign_request(&creds(), &v4(), "inst", "PutRow", b"", now);
        for name in [HDR_SIGN_DATE, HDR_SIGN_REGION] {
            let without: Vec<(&str, &str)> =
                view(&h).into_iter().filter(|(n, _)| *n != name).collect();
            assert_err(
                verify(&without, b"", now),
                400,
                "OTSParameterInvalid",
                &format!("Missing header: '{name}'."),
            );
        }
    }

    #[test]
    fn rejects_malformed_dates_and_version() {
        let now = at(JAN1_2024, 0);
        let h = sign_request(&creds(), &SignatureVersion::V2, "inst", "PutRow", b"", now);
        let mut bad = view(&h);
        for (n, v) in bad.iter_mut() {
            if *n == HDR_DATE {
                *v = "yesterday";
            }
        }
        assert_err(
            verify(&bad, b"", now),
            400,
            "OTSParameterInvalid",
            "Invalid date format: yesterday.",
        );

        let h = sign_request(&creds(), &v4(), "inst", "PutRow", b"", now);
        let mut bad = view(&h);
        for (n, v) in bad.iter_mut() {
            if *n == HDR_SIGN_DATE {
                *v = "20241301";
            }
        }
        assert_err(
            verify(&bad, b"", now),
            400,
            "OTSParameterInvalid",
            "Invalid date format: 20241301.",
        );

        let mut bad = view(&h);
        for (n, v) in bad.iter_mut() {
            if *n == HDR_API_VERSION {
                *v = "2014-08-08";
            }
        }
        assert_eq!(
            verify(&bad, b"", now).unwrap_err().code(),
            "OTSParameterInvalid"
        );
    }

    #[test]
    fn accepts_go_style_and_unsigned_non_ots_headers() {
        // Any number of fraction digits, as long as the client signed what it sent.
        let now = at(JAN1_2024, 0);
        let mut h: Vec<(&str, String)> = vec![
            (HDR_ACCESS_KEY_ID, "testid".into()),
            (HDR_API_VERSION, API_VERSION.into()),
            (HDR_CONTENT_MD5, MD5_EMPTY.into()),
            (HDR_DATE, "2024-01-01T00:00:00.1112Z".into()),
            (HDR_INSTANCE_NAME, "inst".into()),
            ("x-ots-sdk-traceid", "abc".into()),
        ];
        let hv: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let sig = v2_signature(SECRET, &request_string_to_sign("PutRow", &hv));
        h.push(("x-ots-signature", sig));
        h.push(("Content-Length", "0".into()));
        let hv: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert!(verify(&hv, b"", now).is_ok());
    }

    #[test]
    fn signed_responses_verify_on_the_client() {
        // What the emulator does: verify a request, then sign its response with the key of
        // that request; the client accepts it.
        let now = at(JAN1_2024, 250_000_000);
        for version in [SignatureVersion::V2, v4()] {
            let h = sign_request(&creds(), &version, "inst", "GetRow", b"req", now);
            let verified = verify_request(
                "GetRow",
                &view(&h),
                b"req",
                "inst",
                &lookup,
                now,
                Duration::from_secs(900),
            )
            .expect("valid");
            let mut resp = vec![
                (HDR_CONTENT_MD5, content_md5(b"resp")),
                (HDR_CONTENT_TYPE, CONTENT_TYPE_PROTOBUF.to_string()),
                (HDR_DATE, format_ots_date_micros(now)),
                (HDR_REQUEST_ID, "r-1".to_string()),
            ];
            let auth = verified.sign_response("GetRow", &view(&resp));
            resp.push((HDR_AUTHORIZATION, auth));
            let check = |action: &str| {
                verify_response(
                    &creds(),
                    &version,
                    action,
                    200,
                    &view(&resp),
                    b"resp",
                    None,
                    now,
                )
            };
            assert_eq!(check("GetRow"), Ok(()), "{version:?}");
            assert_eq!(
                check("PutRow"),
                Err(ResponseVerifyError::SignatureMismatch),
                "{version:?}"
            );
        }
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let c = Credentials::new("myid", CANARY).with_security_token(format!("{CANARY}-tok"));
        let now = at(JAN1_2024, 0);
        let lookup_canary = |_: &str| Some(CANARY.to_string());
        let check_req =
            |h: &[(&str, &str)], body: &[u8], inst: &str, now: SystemTime| match verify_request(
                "PutRow",
                h,
                body,
                inst,
                &lookup_canary,
                now,
                Duration::from_secs(900),
            ) {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("{e:?} {e} {}", e.message()),
            };
        let key = v4_signing_key(CANARY, "20240101", "cn-hangzhou");
        let mut texts = Vec::new();
        for version in [SignatureVersion::V2, v4()] {
            let h = sign_request(&c, &version, "inst", "PutRow", b"b", now);
            let hv = view(&h);
            texts.push(check_req(&hv, b"b", "inst", now)); // Ok: VerifiedRequest debug
            texts.push(check_req(&hv, b"x", "inst", now));
            texts.push(check_req(&hv, b"b", "other", now));
            texts.push(check_req(
                &hv,
                b"b",
                "inst",
                now + Duration::from_secs(3600),
            ));
            texts.push(check_req(&hv[1..], b"b", "inst", now));
            let wrong = sign_request(&creds(), &version, "inst", "PutRow", b"b", now);
            texts.push(check_req(&view(&wrong), b"b", "inst", now));
        }
        assert_eq!(texts.len(), 12);
        for t in &texts {
            assert!(!t.contains(CANARY), "{t}");
            assert!(!t.contains(&key), "{t}");
        }
    }
}
