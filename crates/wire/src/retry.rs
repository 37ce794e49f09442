//! Which failures are worth another attempt, and how long to wait before it.
//!
//! The classification follows the official SDKs (fact sheet §2.3): a short list of codes means
//! "try again later" for every operation; server errors, timeouts and broken connections are retried
//! only when repeating the request cannot change the outcome (reads, and writes the caller declares
//! idempotent, such as restoring rows with explicit timestamps). Unlike the Python SDK, every attempt
//! is signed afresh, network errors are retried, and the whole call has a deadline. The client
//! applies this only once the endpoint has answered: before that, a failure to reach it is
//! reported at once as a wrong endpoint (`OtsError::Unreachable`, see `client.rs`).

use std::time::Duration;

use crate::error::{OtsError, TransportKind};

/// Whether repeating a request can change its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to repeat after an ambiguous failure (reads; puts with explicit timestamps).
    Idempotent,
    /// Repeating might apply the write twice (increments, server-assigned timestamps, conditions).
    NotIdempotent,
}

/// Codes that mean "not now" for any operation: nothing was applied.
const ALWAYS_RETRYABLE: &[&str] = &[
    "OTSRowOperationConflict",
    "OTSNotEnoughCapacityUnit",
    "OTSTableNotReady",
    "OTSPartitionUnavailable",
    "OTSServerBusy",
    "OTSOperationConflict",
    "OTSOperationThrottled",
    "OTSStorageServerBusy",
    "OTSFlowControl",
    "OTSCapacityUnitExhausted",
];

/// Codes whose outcome is unknown: retried only when the request is idempotent.
const RETRYABLE_IF_IDEMPOTENT: &[&str] = &[
    "OTSTimeout",
    "OTSInternalServerError",
    "OTSServerUnavailable",
    "OTSTunnelServerUnavailable",
    "OTSRequestTimeout",
];

const TOO_FREQUENT: &str = "Too frequent table operations.";

/// Codes that signal throttling: back off longer, and let rate controllers slow down.
pub fn is_throttling(code: &str, message: &str) -> bool {
    matches!(
        code,
        "OTSServerBusy"
            | "OTSNotEnoughCapacityUnit"
            | "OTSOperationThrottled"
            | "OTSFlowControl"
            | "OTSCapacityUnitExhausted"
    ) || (code == "OTSQuotaExhausted" && message == TOO_FREQUENT)
}

/// Whether a service error code (request-level or row-level) is worth retrying.
/// The Stream API's error for an iterator whose records are past the retention window.
pub const TRIMMED_DATA_ACCESS: &str = "OTSTrimmedDataAccess";

pub fn is_retryable_code(code: &str, message: &str, http_status: u16, idem: Idempotency) -> bool {
    // Trimmed stream data never comes back, whatever HTTP status carries the error.
    if code == TRIMMED_DATA_ACCESS {
        return false;
    }
    if ALWAYS_RETRYABLE.contains(&code) || (code == "OTSQuotaExhausted" && message == TOO_FREQUENT)
    {
        return true;
    }
    idem == Idempotency::Idempotent
        && (RETRYABLE_IF_IDEMPOTENT.contains(&code) || (500..600).contains(&http_status))
}

/// What a retry loop should do with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    Stop,
    Retry { throttled: bool },
}

pub fn classify(err: &OtsError, idem: Idempotency) -> RetryDecision {
    match err {
        OtsError::Service {
            code,
            message,
            http_status,
            ..
        } => {
            if is_retryable_code(code, message, *http_status, idem) {
                RetryDecision::Retry {
                    throttled: is_throttling(code, message),
                }
            } else {
                RetryDecision::Stop
            }
        }
        // A connection that was never made sent nothing: always safe to repeat.
        OtsError::Transport {
            kind: TransportKind::Connect,
            ..
        } => RetryDecision::Retry { throttled: false },
        OtsError::Transport { .. } if idem == Idempotency::Idempotent => {
            RetryDecision::Retry { throttled: false }
        }
        // A body that does not match its MD5 was damaged in transit; reading again is harmless.
        OtsError::ResponseVerification {
            source: crate::auth::ResponseVerifyError::BodyMd5Mismatch { .. },
            ..
        } if idem == Idempotency::Idempotent => RetryDecision::Retry { throttled: false },
        _ => RetryDecision::Stop,
    }
}

/// Exponential backoff with jitter, bounded by an attempt count and a deadline.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 disables retries.
    pub max_attempts: u32,
    /// First delay after an ordinary retryable error.
    pub base_delay: Duration,
    /// First delay after a throttling error (longer: the server asked us to slow down).
    pub throttle_base_delay: Duration,
    /// Cap on one delay.
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first one.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(200),
            throttle_base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Delay before retry number `retry` (0-based): min(base·2^retry, max) scaled by a random
    /// factor in [0.5, 1.0) so that many clients throttled together do not retry in lockstep.
    pub fn delay(&self, retry: u32, throttled: bool) -> Duration {
        let base = if throttled {
            self.throttle_base_delay
        } else {
            self.base_delay
        };
        let exp = base.saturating_mul(1u32 << retry.min(20));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + 0.5 * rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, message: &str, status: u16) -> OtsError {
        OtsError::Service {
            action: "GetRange",
            code: code.into(),
            message: message.into(),
            http_status: status,
            request_id: None,
        }
    }

    #[test]
    fn throttling_is_retried_for_writes_too() {
        let e = service("OTSServerBusy", "Server is busy.", 503);
        assert_eq!(
            classify(&e, Idempotency::NotIdempotent),
            RetryDecision::Retry { throttled: true }
        );
    }

    #[test]
    fn server_errors_only_for_idempotent_requests() {
        let e = service("OTSInternalServerError", "Internal server error.", 500);
        assert_eq!(
            classify(&e, Idempotency::NotIdempotent),
            RetryDecision::Stop
        );
        assert_eq!(
            classify(&e, Idempotency::Idempotent),
            RetryDecision::Retry { throttled: false }
        );
    }

    #[test]
    fn quota_exhausted_depends_on_message() {
        let frequent = service("OTSQuotaExhausted", TOO_FREQUENT, 403);
        let tables = service(
            "OTSQuotaExhausted",
            "Number of tables exceeded the quota.",
            403,
        );
        assert_eq!(
            classify(&frequent, Idempotency::NotIdempotent),
            RetryDecision::Retry { throttled: true }
        );
        assert_eq!(
            classify(&tables, Idempotency::Idempotent),
            RetryDecision::Stop
        );
    }

    #[test]
    fn client_errors_are_final() {
        for (code, status) in [
            ("OTSParameterInvalid", 400),
            ("OTSConditionCheckFail", 403),
            ("OTSAuthFailed", 403),
            ("OTSObjectNotExist", 404),
        ] {
            let e = service(code, "x", status);
            assert_eq!(classify(&e, Idempotency::Idempotent), RetryDecision::Stop);
        }
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::default();
        for retry in 0..30 {
            let d = p.delay(retry, false);
            let nominal = p
                .base_delay
                .saturating_mul(1 << retry.min(20))
                .min(p.max_delay);
            assert!(d >= nominal / 2 && d <= nominal, "retry {retry}: {d:?}");
        }
        assert!(p.delay(0, true) >= p.throttle_base_delay / 2);
    }
}
