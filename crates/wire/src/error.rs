//! The one error type of the client: every failure names the action, and service errors carry the
//! Tablestore code, message, HTTP status and request id so that they can be reported and classified.

use std::time::Duration;

use crate::auth::ResponseVerifyError;

/// How a transport-level failure happened; decides whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    /// The connection broke while sending or receiving.
    Io,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum OtsError {
    /// The service answered with an error body (or a row-level error).
    #[error("{action}: {code}: {message} (HTTP {http_status}{})", fmt_request_id(.request_id))]
    Service {
        action: &'static str,
        code: String,
        message: String,
        http_status: u16,
        request_id: Option<String>,
    },
    #[error("{action}: {kind:?} error talking to the endpoint: {detail}")]
    Transport {
        action: &'static str,
        kind: TransportKind,
        detail: String,
    },
    /// The response failed the integrity checks the official SDK applies (§1.5).
    #[error("{action}: response rejected (HTTP {http_status}{}): {source}", fmt_request_id(.request_id))]
    ResponseVerification {
        action: &'static str,
        http_status: u16,
        request_id: Option<String>,
        #[source]
        source: ResponseVerifyError,
    },
    /// A well-signed response whose protobuf or PlainBuffer payload does not decode.
    #[error("{action}: malformed response{}: {detail}", fmt_request_id(.request_id))]
    MalformedResponse {
        action: &'static str,
        request_id: Option<String>,
        detail: String,
    },
    /// Retries stopped (attempt limit or deadline); `last` is the final attempt's error.
    #[error("{last} — gave up after {attempts} attempts in {:.1}s", .elapsed.as_secs_f64())]
    RetriesExhausted {
        attempts: u32,
        elapsed: Duration,
        last: Box<OtsError>,
    },
    /// The client was configured wrongly (bad endpoint URL, missing instance, …).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The endpoint could not be reached before the service had ever answered this client
    /// (connection refused, DNS failure, TLS or HTTP mismatch, connect timeout): most likely a
    /// wrong endpoint, so it is not retried. `hint` says what to fix.
    #[error("{action}: cannot connect to {} ({detail}): {hint}", endpoint_address(.endpoint))]
    Unreachable {
        action: &'static str,
        /// The endpoint URL as configured.
        endpoint: String,
        detail: String,
        hint: String,
    },
    /// `OTSObjectNotExist` for a request that names its table; `source` is the service's error.
    #[error(
        "table '{table}' does not exist in instance '{instance}' (endpoint {endpoint}; {source})"
    )]
    TableNotFound {
        table: String,
        instance: String,
        endpoint: String,
        source: Box<OtsError>,
    },
    /// `OTSAuthFailed` or `OTSNoPermissionAccess` (`source`, the service's error): the credentials,
    /// the instance or a permission was refused. `hint` names what to check, never a secret.
    #[error("{}", access_denied_text(.hint, .source))]
    AccessDenied { hint: String, source: Box<OtsError> },
}

/// `host:port` of an endpoint URL (the scheme's default port when it names none).
pub(crate) fn endpoint_address(endpoint: &str) -> String {
    let trimmed = endpoint.trim();
    let https = trimmed.starts_with("https://");
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let authority = rest.split('/').next().unwrap_or(rest);
    // A port follows the last ':' unless that ':' is inside an IPv6 literal's brackets.
    match authority.rsplit_once(':') {
        Some((_, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            authority.to_string()
        }
        _ => format!("{authority}:{}", if https { 443 } else { 80 }),
    }
}

fn access_denied_text(hint: &str, source: &OtsError) -> String {
    match source {
        OtsError::Service {
            action,
            code,
            message,
            http_status,
            request_id,
        } => format!(
            "{action}: {code}: {hint}; the server said: {message} (HTTP {http_status}{})",
            fmt_request_id(request_id)
        ),
        other => format!("{other}: {hint}"),
    }
}

fn fmt_request_id(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(", request id {id}"),
        None => String::new(),
    }
}

impl OtsError {
    /// The innermost error (through `RetriesExhausted`).
    pub fn root(&self) -> &OtsError {
        match self {
            OtsError::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    /// The service's own error under the context this crate adds (`TableNotFound`,
    /// `AccessDenied`), through `RetriesExhausted`.
    fn service(&self) -> &OtsError {
        match self.root() {
            OtsError::TableNotFound { source, .. } | OtsError::AccessDenied { source, .. } => {
                source.service()
            }
            other => other,
        }
    }

    /// The Tablestore error code, when the service sent one.
    pub fn code(&self) -> Option<&str> {
        match self.service() {
            OtsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self.service() {
            OtsError::Service { message, .. } => Some(message),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self.service() {
            OtsError::Service { http_status, .. }
            | OtsError::ResponseVerification { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self.service() {
            OtsError::Service { request_id, .. }
            | OtsError::ResponseVerification { request_id, .. }
            | OtsError::MalformedResponse { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Attempts made before this error was returned (1 when no retry happened).
    pub fn attempts(&self) -> u32 {
        match self {
            OtsError::RetriesExhausted { attempts, .. } => *attempts,
            _ => 1,
        }
    }

    /// True for "the table does not exist".
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(NOT_FOUND)
    }

    /// True when the service refused the credentials, the instance or a permission
    /// (`OTSAuthFailed`, `OTSNoPermissionAccess`).
    pub fn is_access_denied(&self) -> bool {
        matches!(self.code(), Some(AUTH_FAILED | NO_PERMISSION))
    }

    /// True when the endpoint could not be reached before the service ever answered.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.root(), OtsError::Unreachable { .. })
    }

    /// True when the user has to fix the input before anything can work: a wrong endpoint, refused
    /// credentials or permissions, a table that does not exist, a bad configuration. Callers map
    /// this to their "bad usage or input" kind (exit code 2).
    /// A stream read whose position is past the retention window (`OTSTrimmedDataAccess`).
    pub fn is_trimmed(&self) -> bool {
        self.code() == Some(crate::retry::TRIMMED_DATA_ACCESS)
    }

    pub fn is_usage(&self) -> bool {
        self.is_unreachable()
            || self.is_access_denied()
            || self.is_not_found()
            || matches!(self.root(), OtsError::Config(_))
    }
}

pub(crate) const NOT_FOUND: &str = "OTSObjectNotExist";
pub(crate) const AUTH_FAILED: &str = "OTSAuthFailed";
pub(crate) const NO_PERMISSION: &str = "OTSNoPermissionAccess";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses_carry_a_port() {
        for (endpoint, address) in [
            ("http://127.0.0.1:9", "127.0.0.1:9"),
            (
                "https://i.cn-hangzhou.ots.aliyuncs.com",
                "i.cn-hangzhou.ots.aliyuncs.com:443",
            ),
            ("http://h/prefix", "h:80"),
            ("http://[::1]:8080/", "[::1]:8080"),
            ("https://[::1]", "[::1]:443"),
        ] {
            assert_eq!(endpoint_address(endpoint), address, "{endpoint}");
        }
    }

    #[test]
    fn added_context_keeps_the_service_fields() {
        let service = OtsError::Service {
            action: "DescribeTable",
            code: AUTH_FAILED.into(),
            message: "Signature mismatch.".into(),
            http_status: 403,
            request_id: Some("r1".into()),
        };
        let e = OtsError::AccessDenied {
            hint: "check X".into(),
            source: Box::new(service),
        };
        assert_eq!(e.code(), Some(AUTH_FAILED));
        assert_eq!(e.http_status(), Some(403));
        assert_eq!(e.request_id(), Some("r1"));
        assert_eq!(
            e.to_string(),
            "DescribeTable: OTSAuthFailed: check X; the server said: Signature mismatch. \
             (HTTP 403, request id r1)"
        );
        assert!(e.is_access_denied() && e.is_usage() && !e.is_not_found());
    }
}
