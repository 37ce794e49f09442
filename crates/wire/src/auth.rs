//! Credentials, request signing (V2/V4), server-side request verification,
//! response signing and client-side response verification.
//!
//! Follows the fact sheet `tablestore-protocol.md` §1.2–§1.5, §2.2 and §7.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

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

/// Window the official Python SDK allows between the response date and local time.
pub const RESPONSE_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

// ---------------------------------------------------------------------------
// Secrets and credentials
// ---------------------------------------------------------------------------

/// A secret string whose Debug/Display print "***"; zeroing not required. Never log it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// AccessKey credentials, optionally with an STS token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish()
    }
}

/// Why credentials could not be read from the environment. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("environment variable {0} is not set or is empty")]
    Missing(&'static str),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(&'static str),
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret.into()),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token.into()));
        self
    }

    /// ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET / ALIBABA_CLOUD_SECURITY_TOKEN (optional)
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_source(|name| std::env::var(name))
    }

    // Separated from `from_env` so tests need not mutate the process environment.
    fn from_source(
        get: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, CredentialsError> {
        let read = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match get(name) {
                Ok(v) if v.is_empty() => Ok(None),
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(CredentialsError::NotUnicode(name)),
            }
        };
        let id = read(ENV_ACCESS_KEY_ID)?.ok_or(CredentialsError::Missing(ENV_ACCESS_KEY_ID))?;
        let secret =
            read(ENV_ACCESS_KEY_SECRET)?.ok_or(CredentialsError::Missing(ENV_ACCESS_KEY_SECRET))?;
        let mut creds = Credentials::new(id, secret);
        if let Some(token) = read(ENV_SECURITY_TOKEN)? {
            creds = creds.with_security_token(token);
        }
        Ok(creds)
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &Secret {
        &self.access_key_secret
    }

    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }
}

/// Which request signature to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureVersion {
    V2,
    V4 { region: String },
}

// ---------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().as_slice().to_vec()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().as_slice().to_vec()
}

/// Compares without an early exit so timing does not reveal the matching prefix.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// base64(MD5(body)), standard alphabet with padding.
pub fn content_md5(body: &[u8]) -> String {
    B64.encode(Md5::digest(body).as_slice())
}

/// base64(k4) of the §1.4 HMAC-SHA256 chain; its ASCII bytes are the V4 HMAC key.
pub fn v4_signing_key(secret: &str, sign_date: &str, region: &str) -> String {
    let mut first_key = String::with_capacity(9 + secret.len());
    first_key.push_str("aliyun_v4");
    first_key.push_str(secret);
    let k1 = hmac_sha256(first_key.as_bytes(), sign_date.as_bytes());
    let k2 = hmac_sha256(&k1, region.as_bytes());
    let k3 = hmac_sha256(&k2, b"ots");
    let k4 = hmac_sha256(&k3, b"aliyun_v4_request");
    B64.encode(k4)
}

// ---------------------------------------------------------------------------
// Dates (UTC, no external time crate)
// ---------------------------------------------------------------------------

/// A date string that does not match the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date format: {0}")]
pub struct DateError(pub String);

// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant's algorithm; eras of 400 years).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// Inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

// (seconds since epoch, nanoseconds 0..1e9), floor semantics for pre-epoch times.
fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

fn to_civil(t: SystemTime) -> Civil {
    let (secs, nanos) = split_time(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        nanos,
    }
}

fn format_with_fraction(t: SystemTime, digits: u32) -> String {
    let c = to_civil(t);
    let frac = c.nanos / 10u32.pow(9 - digits);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0width$}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        frac,
        width = digits as usize
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, real milliseconds (truncated).
pub fn format_ots_date(t: SystemTime) -> String {
    format_with_fraction(t, 3)
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` in UTC, as the service writes its response dates.
pub fn format_ots_date_micros(t: SystemTime) -> String {
    format_with_fraction(t, 6)
}

/// `YYYYMMDD` in UTC (V4 `x-ots-signdate`).
pub fn format_sign_date(t: SystemTime) -> String {
    let c = to_civil(t);
    format!("{:04}{:02}{:02}", c.year, c.month, c.day)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

fn time_from_parts(
    year: i64,
    month: u32,
    day: u32,
    secs_of_day: u32,
    nanos: u32,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + i64::from(secs_of_day);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f]Z` and returns the time and the number of fraction
/// digits, or `None` when there was no `.` at all.
fn parse_date_detailed(s: &str) -> Option<(SystemTime, Option<usize>)> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (nanos, frac_digits) = match &b[19..b.len() - 1] {
        [] => (0, None),
        [b'.', frac @ ..] if frac.len() <= 9 => {
            let mut nanos = 0u32;
            for (i, &c) in frac.iter().enumerate() {
                if !c.is_ascii_digit() {
                    return None;
                }
                nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
            }
            (nanos, Some(frac.len()))
        }
        _ => return None,
    };
    let t = time_from_parts(year, month, day, hour * 3600 + minute * 60 + second, nanos)?;
    Some((t, frac_digits))
}

/// Parses an `x-ots-date` value. Accepts no fraction or `.` followed by 0..=9 digits
/// (Go's SDK may send odd digit counts, §1.2).
pub fn parse_ots_date(s: &str) -> Result<SystemTime, DateError> {
    parse_date_detailed(s)
        .map(|(t, _)| t)
        .ok_or_else(|| DateError(s.to_string()))
}

fn parse_sign_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 8 {
        return None;
    }
    time_from_parts(
        i64::from(digits(&b[0..4])?),
        digits(&b[4..6])?,
        digits(&b[6..8])?,
        0,
        0,
    )
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    match a.duration_since(b) {
        Ok(d) => d,
        Err(e) => e.duration(),
    }
}

// ---------------------------------------------------------------------------
// Request signing
// ---------------------------------------------------------------------------

// `name:value\n` for every x-ots-* header not excluded, lowercase names, trimmed values,
// sorted by name (then value, so duplicates are deterministic) as Java/Go and the server do.
fn canonical_headers(headers: &[(&str, &str)], exclude: &[&str]) -> String {
    let mut picked: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            (name.starts_with("x-ots-") && !exclude.contains(&name.as_str()))
                .then(|| (name, value.trim()))
        })
        .collect();
    picked.sort();
    let mut out = String::new();
    for (name, value) in picked {
        out.push_str(&name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// The V2 string to sign (§1.3). For V4 the caller appends `"ots"`.
/// Both signature headers are excluded from the canonical headers.
pub fn request_string_to_sign(action: &str, headers: &[(&str, &str)]) -> String {
    let mut s = String::new();
    s.push('/');
    s.push_str(action);
    s.push_str("\nPOST\n\n");
    s.push_str(&canonical_headers(
        headers,
        &[HDR_SIGNATURE, HDR_SIGNATURE_V4],
    ));
    s
}

fn v2_signature(secret: &str, string_to_sign: &str) -> String {
    B64.encode(hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

fn v4_signature(signing_key: &str, v2_string: &str) -> String {
    let mut s = String::with_capacity(v2_string.len() + 3);
    s.push_str(v2_string);
    s.push_str("ots");
    B64.encode(hmac_sha256(signing_key.as_bytes(), s.as_bytes()))
}

/// Build every x-ots-* header of a request, including the signature header(s), for `action` and `body` at `now`.
/// Returns (lowercase name, value) pairs in a stable order. Includes x-ots-ststoken when the credentials have one.
pub fn sign_request(
    creds: &Credentials,
    version: &SignatureVersion,
    instance: &str,
    action: &str,
    body: &[u8],
    now: SystemTime,
) -> Vec<(&'static str, String)> {
    // Sorted by name; the signature header goes last.
    let mut headers: Vec<(&'static str, String)> = vec![
        (HDR_ACCESS_KEY_ID, creds.access_key_id.clone()),
        (HDR_API_VERSION, API_VERSION.to_string()),
        (HDR_CONTENT_MD5, content_md5(body)),
        (HDR_DATE, format_ots_date(now)),
        (HDR_INSTANCE_NAME, instance.to_string()),
    ];
    let v4_key = match version {
        SignatureVersion::V2 => None,
        SignatureVersion::V4 { region } => {
            let sign_date = format_sign_date(now);
            let key = v4_signing_key(creds.access_key_secret.expose(), &sign_date, region);
            headers.push((HDR_SIGN_DATE, sign_date));
            headers.push((HDR_SIGN_REGION, region.clone()));
            Some(key)
        }
    };
    if let Some(token) = &creds.security_token {
        headers.push((HDR_STS_TOKEN, token.expose().to_string()));
    }
    let view: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let string_to_sign = request_string_to_sign(action, &view);
    match v4_key {
        None => {
            let sig = v2_signature(creds.access_key_secret.expose(), &string_to_sign);
            headers.push((HDR_SIGNATURE, sig));
        }
        Some(key) => {
            headers.push((HDR_SIGNATURE_V4, v4_signature(&key, &string_to_sign)));
        }
    }
    headers
}

// ---------------------------------------------------------------------------
// Server side: request verification
// ---------------------------------------------------------------------------

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
        && parse_sign_date(sign_date).is_none()
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

// ---------------------------------------------------------------------------
// Response signing and verification
// ---------------------------------------------------------------------------

// §1.5: sorted `name:value\n` over every response x-ots-* header, then `/Action`.
fn response_signature(signing_key: &str, action: &str, headers: &[(&str, &str)]) -> String {
    let mut s = canonical_headers(headers, &[]);
    s.push('/');
    s.push_str(action);
    B64.encode(hmac_sha1(signing_key.as_bytes(), s.as_bytes()))
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
    if let Some(expected) = get(HDR_CONTENT_MD5) {
        let actual = content_md5(body);
        if actual != expected {
            return Err(ResponseVerifyError::BodyMd5Mismatch {
                expected: expected.to_string(),
                actual,
            });
        }
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
    if ak_id != creds.access_key_id {
        return Err(ResponseVerifyError::AccessKeyMismatch);
    }
    let secret = creds.access_key_secret.expose();
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

    const SECRET: &str = "testsecret";
    const MD5_EMPTY: &str = "1B2M2Y8AsgTpgAmY7PhCfg==";
    // 2024-01-01T00:00:00Z
    const JAN1_2024: u64 = 1_704_067_200;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn creds() -> Credentials {
        Credentials::new("testid", SECRET)
    }

    fn v4() -> SignatureVersion {
        SignatureVersion::V4 {
            region: "cn-hangzhou".to_string(),
        }
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn view<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
        h.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    fn lookup(id: &str) -> Option<String> {
        (id == "testid").then(|| SECRET.to_string())
    }

    // ---- §1.3 / §1.4 vectors --------------------------------------------------

    #[test]
    fn v2_worked_example() {
        let h = sign_request(
            &creds(),
            &SignatureVersion::V2,
            "testinst",
            "ListTable",
            b"",
            at(JAN1_2024, 0),
        );
        assert_eq!(header(&h, HDR_DATE), Some("2024-01-01T00:00:00.000Z"));
        assert_eq!(header(&h, HDR_CONTENT_MD5), Some(MD5_EMPTY));
        assert_eq!(
            request_string_to_sign("ListTable", &view(&h)),
            "/ListTable\nPOST\n\nx-ots-accesskeyid:testid\nx-ots-apiversion:2015-12-31\n\
             x-ots-contentmd5:1B2M2Y8AsgTpgAmY7PhCfg==\nx-ots-date:2024-01-01T00:00:00.000Z\n\
             x-ots-instancename:testinst\n"
        );
        assert_eq!(
            header(&h, HDR_SIGNATURE),
            Some("nY/WLHHXVS0B7efptY5JbW+bHkA=")
        );
        assert_eq!(header(&h, HDR_SIGNATURE_V4), None);
        let names: Vec<&str> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                HDR_ACCESS_KEY_ID,
                HDR_API_VERSION,
                HDR_CONTENT_MD5,
                HDR_DATE,
                HDR_INSTANCE_NAME,
                HDR_SIGNATURE
            ]
        );
    }

    #[test]
    fn v4_worked_example() {
        assert_eq!(
            v4_signing_key(SECRET, "20240101", "cn-hangzhou"),
            "huHYf6fOinMwBCVcP/TJoXykdjWqb4GXDWHcrokQllo="
        );
        let h = sign_request(
            &creds(),
            &v4(),
            "testinst",
            "ListTable",
            b"",
            at(JAN1_2024, 0),
        );
        assert_eq!(header(&h, HDR_SIGN_DATE), Some("20240101"));
        assert_eq!(header(&h, HDR_SIGN_REGION), Some("cn-hangzhou"));
        assert_eq!(header(&h, HDR_SIGNATURE), None);
        // Reproduces with the Python-style date `.000Z` and signdate/signregion signed.
        assert_eq!(
            request_string_to_sign("ListTable", &view(&h)),
            "/ListTable\nPOST\n\nx-ots-accesskeyid:testid\nx-ots-apiversion:2015-12-31\n\
             x-ots-contentmd5:1B2M2Y8AsgTpgAmY7PhCfg==\nx-ots-date:2024-01-01T00:00:00.000Z\n\
             x-ots-instancename:testinst\nx-ots-signdate:20240101\nx-ots-signregion:cn-hangzhou\n"
        );
        assert_eq!(
            header(&h, HDR_SIGNATURE_V4),
            Some("/dr+KlmrvOfFnBRX/jni50IYJBQc1Ih1a6yYQtCy7n0=")
        );
    }

    #[test]
    fn canonical_headers_lowercase_trim_sort_and_skip_others() {
        let h = [
            ("X-OTS-Date", "  d  "),
            ("Host", "x"),
            ("x-ots-AccessKeyId", "id"),
            ("x-ots-signature", "zzz"),
            ("x-ots-signaturev4", "yyy"),
        ];
        assert_eq!(
            request_string_to_sign("A", &h),
            "/A\nPOST\n\nx-ots-accesskeyid:id\nx-ots-date:d\n"
        );
    }

    #[test]
    fn content_md5_values() {
        assert_eq!(content_md5(b""), MD5_EMPTY);
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
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

    // ---- verify_response --------------------------------------------------------

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
        let auth = sign_response("testid", &key, "GetRow", &view(&headers));
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
        let auth = sign_response("testid", SECRET, "GetRow", &view(&r.headers));
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
        let auth = sign_response("testid", "other", "GetRow", &view(&r.headers[..4]));
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
        let auth = sign_response("otherid", SECRET, "GetRow", &view(&r.headers[..4]));
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

    // ---- dates ------------------------------------------------------------------

    #[test]
    fn format_dates() {
        let t = at(JAN1_2024 + 3661, 987_654_321);
        assert_eq!(format_ots_date(t), "2024-01-01T01:01:01.987Z");
        assert_eq!(format_ots_date_micros(t), "2024-01-01T01:01:01.987654Z");
        assert_eq!(format_sign_date(t), "20240101");
        assert_eq!(format_ots_date(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (leap day) and 2023-12-31 23:59:59.
        assert_eq!(
            format_ots_date(at(1_709_164_800, 0)),
            "2024-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_ots_date(at(JAN1_2024 - 1, 999_999_999)),
            "2023-12-31T23:59:59.999Z"
        );
        // Before the epoch.
        let pre = UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(format_ots_date(pre), "1969-12-31T23:59:58.500Z");
    }

    #[test]
    fn parse_round_trips_and_fraction_digits() {
        let base = at(JAN1_2024 + 45_296, 0); // 12:34:56
        for (s, nanos) in [
            ("2024-01-01T12:34:56Z", 0),
            ("2024-01-01T12:34:56.Z", 0),
            ("2024-01-01T12:34:56.1Z", 100_000_000),
            ("2024-01-01T12:34:56.123Z", 123_000_000),
            ("2024-01-01T12:34:56.123456Z", 123_456_000),
            ("2024-01-01T12:34:56.123456789Z", 123_456_789),
        ] {
            assert_eq!(
                parse_ots_date(s),
                Ok(base + Duration::from_nanos(nanos)),
                "{s}"
            );
        }
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            4_107_542_399,
            253_402_300_799,
        ] {
            let t = at(secs, 123_456_789);
            assert_eq!(
                parse_ots_date(&format_ots_date_micros(t)),
                Ok(at(secs, 123_456_000))
            );
            assert_eq!(
                parse_ots_date(&format_ots_date(t)),
                Ok(at(secs, 123_000_000))
            );
        }
        // Leap years: 2000 and 2024 have Feb 29; 1900, 2100 and 2023 do not.
        assert!(parse_ots_date("2000-02-29T00:00:00Z").is_ok());
        assert_eq!(
            parse_ots_date("2024-02-29T00:00:00Z"),
            Ok(at(1_709_164_800, 0))
        );
        assert_eq!(
            parse_ots_date("2024-03-01T00:00:00Z"),
            Ok(at(1_709_251_200, 0))
        );
        for s in [
            "1900-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
        ] {
            assert!(parse_ots_date(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_ots_date("1969-12-31T23:59:58.5Z"),
            Ok(UNIX_EPOCH - Duration::new(1, 500_000_000))
        );
    }

    #[test]
    fn civil_conversion_is_consistent() {
        // Every day over several centuries, including 400-year era boundaries.
        let mut expected = (1600i64, 1u32, 1u32);
        for days in days_from_civil(1600, 1, 1)..days_from_civil(2401, 1, 1) {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.000",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.0000000000Z",
            "2024-01-01T00:00:00.12a4Z",
            "2024-01-01T00:00:00+00:00",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:60Z",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000z",
            "2024-01-01T00:00:00.000ZZ",
            "２０２４-01-01T00:00:00Z",
            "2024-01-01T00:00:0é.0Z",
        ] {
            assert_eq!(parse_ots_date(s), Err(DateError(s.to_string())), "{s:?}");
        }
        assert!(parse_sign_date("2024011").is_none());
        assert!(parse_sign_date("20240230").is_none());
        assert_eq!(parse_sign_date("20240101"), Some(at(JAN1_2024, 0)));
    }

    // ---- secrets never leak -----------------------------------------------------

    const CANARY: &str = "s3cr3t-CANARY-zz9";

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let c = Credentials::new("myid", CANARY).with_security_token(format!("{CANARY}-tok"));
        let dbg = format!("{c:?}");
        assert!(dbg.contains("myid") && dbg.contains("***"), "{dbg}");
        assert!(!dbg.contains(CANARY), "{dbg}");
        assert_eq!(format!("{}", c.access_key_secret()), "***");
        assert_eq!(format!("{:?}", c.security_token()), "Some(***)");
        assert_eq!(c.access_key_secret().expose(), CANARY);

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
        texts.push(format!(
            "{:?}",
            CredentialsError::Missing(ENV_ACCESS_KEY_SECRET)
        ));
        assert!(texts.len() > 20);
        for t in &texts {
            assert!(!t.contains(CANARY), "{t}");
            assert!(!t.contains(&key), "{t}");
        }
    }

    #[test]
    fn credentials_from_source() {
        use std::env::VarError;
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
                    .ok_or(VarError::NotPresent)
            }
        };
        let c = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, CANARY),
        ]))
        .expect("complete");
        assert_eq!(
            (c.access_key_id(), c.access_key_secret().expose()),
            ("id", CANARY)
        );
        assert!(c.security_token().is_none());

        let c = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, CANARY),
            (ENV_SECURITY_TOKEN, "tok"),
        ]))
        .expect("complete");
        assert_eq!(c.security_token().map(Secret::expose), Some("tok"));

        let e = Credentials::from_source(env(&[(ENV_ACCESS_KEY_SECRET, CANARY)])).unwrap_err();
        assert_eq!(e, CredentialsError::Missing(ENV_ACCESS_KEY_ID));
        let e = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, ""),
        ]))
        .unwrap_err();
        assert_eq!(e, CredentialsError::Missing(ENV_ACCESS_KEY_SECRET));
        assert!(!e.to_string().contains(CANARY));
        assert!(e.to_string().contains(ENV_ACCESS_KEY_SECRET));
    }
}
