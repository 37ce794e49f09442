//! The one error type of the emulator: a Tablestore error code with its HTTP status and message,
//! sent as the `Error` protobuf body (fact sheet §2).

use ots_wire::pb;
use ots_wire::plainbuffer::DecodeError;

/// A Tablestore error as the service reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 OTSParameterInvalid.
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(400, "OTSParameterInvalid", message)
    }

    /// 400 OTSInvalidPK.
    pub fn invalid_pk(message: impl Into<String>) -> Self {
        Self::new(400, "OTSInvalidPK", message)
    }

    pub fn table_not_exist() -> Self {
        Self::new(404, "OTSObjectNotExist", "Requested table does not exist.")
    }

    pub fn table_already_exists() -> Self {
        Self::new(
            409,
            "OTSObjectAlreadyExist",
            "Requested table already exists.",
        )
    }

    pub fn condition_failed() -> Self {
        Self::new(403, "OTSConditionCheckFail", "Condition check failed.")
    }

    pub fn server_busy() -> Self {
        Self::new(503, "OTSServerBusy", "Server is busy.")
    }

    pub fn not_enough_cu() -> Self {
        Self::new(
            403,
            "OTSNotEnoughCapacityUnit",
            "Remaining capacity unit is not enough.",
        )
    }

    pub fn too_frequent() -> Self {
        Self::new(403, "OTSQuotaExhausted", "Too frequent table operations.")
    }

    pub fn internal() -> Self {
        Self::new(500, "OTSInternalServerError", "Internal server error.")
    }

    pub fn unavailable() -> Self {
        Self::new(503, "OTSServerUnavailable", "Server is not available.")
    }

    pub fn timeout() -> Self {
        Self::new(503, "OTSTimeout", "Operation timeout.")
    }

    pub fn row_conflict() -> Self {
        Self::new(
            409,
            "OTSRowOperationConflict",
            "Data is being modified by the other request.",
        )
    }

    pub fn to_pb(&self) -> pb::Error {
        pb::Error {
            code: self.code.to_string(),
            message: Some(self.message.clone()),
            access_denied_detail: None,
        }
    }

    /// A PlainBuffer field of the request that does not decode.
    pub fn plainbuffer(field: &str, e: &DecodeError) -> Self {
        match e {
            // The service's own wording for a DOUBLE/BOOLEAN PK value.
            DecodeError::InvalidPkType { type_name, .. } => Self::param(format!(
                "{type_name} is an invalid type for the primary key."
            )),
            DecodeError::CellChecksum { .. } | DecodeError::RowChecksum { .. } => Self::param(
                format!("Cell data broken, checksum is mismatch, in {field}: {e}."),
            ),
            _ => Self::param(format!("Invalid PlainBuffer in {field}: {e}.")),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;
