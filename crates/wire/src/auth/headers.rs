//! Header names and fixed values of the protocol (§1.2).

/// The only API version of the protocol.
pub const API_VERSION: &str = "2015-12-31";

pub const HDR_ACCESS_KEY_ID: &str = "x-ots-accesskeyid";
pub const HDR_API_VERSION: &str = "x-ots-apiversion";
pub const HDR_CONTENT_MD5: &str = "x-ots-contentmd5";
pub const HDR_DATE: &str = "x-ots-date";
pub const HDR_INSTANCE_NAME: &str = "x-ots-instancename";
pub const HDR_STS_TOKEN: &str = "x-ots-ststoken";
pub const HDR_SIGNATURE: &str = "x-ots-signature";
pub const HDR_SIGNATURE_V4: &str = "x-ots-signaturev4";
pub const HDR_SIGN_DATE: &str = "x-ots-signdate";
pub const HDR_SIGN_REGION: &str = "x-ots-signregion";
pub const HDR_REQUEST_ID: &str = "x-ots-requestid";
pub const HDR_CONTENT_TYPE: &str = "x-ots-contenttype";
pub const HDR_AUTHORIZATION: &str = "authorization";

/// Value the service (and the emulator) sends in `x-ots-contenttype`.
pub const CONTENT_TYPE_PROTOBUF: &str = "protocol buffer";
