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

    /// The Tablestore error code, when the service sent one.
    pub fn code(&self) -> Option<&str> {
        match self.root() {
            OtsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self.root() {
            OtsError::Service { message, .. } => Some(message),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self.root() {
            OtsError::Service { http_status, .. }
            | OtsError::ResponseVerification { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self.root() {
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
        self.code() == Some("OTSObjectNotExist")
    }
}
