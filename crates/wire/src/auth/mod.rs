//! Credentials, request signing (V2/V4), client-side response verification and, with the
//! `server` feature, server-side request verification and response signing.
//!
//! Follows the fact sheet `tablestore-protocol.md` §1.2–§1.5, §2.2 and §7. Everything is
//! re-exported here, so callers write `ots_wire::auth::sign_request` whatever the file:
//!
//! - `credentials.rs`: [`Secret`], [`Credentials`], [`CredentialsError`], [`SignatureVersion`].
//! - `headers.rs`: header names and fixed values ([`API_VERSION`], `HDR_*`).
//! - `sign.rs`: [`sign_request`], [`sign_hashed_request`], [`request_string_to_sign`], [`content_md5`],
//!   [`v4_signing_key`], and the HMAC primitives the other files share.
//! - `verify_response.rs`: [`verify_response`], [`verify_response_md5`], [`ResponseVerifyError`].
//! - `server.rs` (feature `server`): `verify_request`, `RequestAuthError`, `VerifiedRequest`,
//!   `sign_response`.
//!
//! Date formats live in [`crate::date`]; the ones signing uses are re-exported here too.

mod credentials;
mod headers;
#[cfg(feature = "server")]
mod server;
mod sign;
#[cfg(test)]
mod test_support;
mod verify_response;

pub use credentials::{Credentials, CredentialsError, Secret, SignatureVersion};
pub use headers::{
    API_VERSION, CONTENT_TYPE_PROTOBUF, HDR_ACCESS_KEY_ID, HDR_API_VERSION, HDR_AUTHORIZATION,
    HDR_CONTENT_MD5, HDR_CONTENT_TYPE, HDR_DATE, HDR_INSTANCE_NAME, HDR_REQUEST_ID, HDR_SIGN_DATE,
    HDR_SIGN_REGION, HDR_SIGNATURE, HDR_SIGNATURE_V4, HDR_STS_TOKEN,
};
#[cfg(feature = "server")]
pub use server::{RequestAuthError, VerifiedRequest, sign_response, verify_request};
pub use sign::{
    Md5Stream, content_md5, request_string_to_sign, sign_hashed_request, sign_request,
    v4_signing_key,
};
pub use verify_response::{
    RESPONSE_MAX_SKEW, ResponseVerifyError, verify_response, verify_response_md5,
};

pub use crate::date::{
    DateError, format_ots_date, format_ots_date_micros, format_sign_date, parse_ots_date,
};
