//! The API's one error type: every failure leaves the server as
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.
//!
//! Only the HTTP layer turns errors into responses: the node services
//! return their own error enums, and this module (with the route modules'
//! conversions of their service's enum) maps each variant to a status and
//! a stable code.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use trib_client::wire::{ErrorBody, ErrorDetail};
use trib_ledger::{LedgerError, TxError};

/// A typed API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`insufficient_balance`, `not_found`…).
    pub code: &'static str,
    /// Human-readable explanation naming the problem.
    pub message: String,
}

impl ApiError {
    /// A 400 for input that does not parse.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// A 404 for something that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// A 500 for a failure on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(target: "trib::api", code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(target: "trib::api", status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            TxError::Malformed { .. } => (S::BAD_REQUEST, "malformed_tx"),
            TxError::Oversize { .. } => (S::PAYLOAD_TOO_LARGE, "oversize"),
            TxError::NonceGap { .. } => (S::CONFLICT, "nonce_gap"),
            TxError::NonceReplay { .. } => (S::CONFLICT, "nonce_replay"),
            TxError::Duplicate { .. } => (S::CONFLICT, "duplicate"),
            TxError::MempoolFull { .. } => (S::SERVICE_UNAVAILABLE, "mempool_full"),
            TxError::BlockFull { .. } => (S::SERVICE_UNAVAILABLE, "block_full"),
            TxError::Storage(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            TxError::BadSignature { .. } => (S::UNPROCESSABLE_ENTITY, "bad_signature"),
            TxError::WrongChainId { .. } => (S::UNPROCESSABLE_ENTITY, "wrong_chain_id"),
            TxError::InsufficientBalance { .. } => {
                (S::UNPROCESSABLE_ENTITY, "insufficient_balance")
            }
            TxError::InsufficientStake { .. } => (S::UNPROCESSABLE_ENTITY, "insufficient_stake"),
            TxError::FeeBelowMinimum { .. } => (S::UNPROCESSABLE_ENTITY, "fee_below_minimum"),
            TxError::Overflow { .. } => (S::UNPROCESSABLE_ENTITY, "overflow"),
            TxError::UnknownAction { .. } => (S::UNPROCESSABLE_ENTITY, "unknown_action"),
            TxError::UnknownModule { .. } => (S::UNPROCESSABLE_ENTITY, "unknown_module"),
            TxError::ZeroAmount { .. } => (S::UNPROCESSABLE_ENTITY, "zero_amount"),
            TxError::FieldTooLong { .. } => (S::UNPROCESSABLE_ENTITY, "field_too_long"),
            TxError::InvalidParamChange { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_param_change"),
            TxError::UnknownProposal { .. } => (S::UNPROCESSABLE_ENTITY, "unknown_proposal"),
            TxError::WrongProposalPhase { .. } => (S::UNPROCESSABLE_ENTITY, "wrong_proposal_phase"),
            // A variant added to the ledger later is a rejected transaction
            // until it gets its own code here.
            #[allow(unreachable_patterns)]
            _ => (S::UNPROCESSABLE_ENTITY, "rejected"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl From<crate::chain::SubmitError> for ApiError {
    fn from(e: crate::chain::SubmitError) -> Self {
        match e {
            crate::chain::SubmitError::Tx(e) => e.into(),
            // The account's funds are held for inference already served:
            // a conflict with the node's state, resolved by waiting.
            e @ crate::chain::SubmitError::HeldForInference { .. } => ApiError {
                status: StatusCode::CONFLICT,
                code: "held_for_inference",
                message: e.to_string(),
            },
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NoSuchBlock { .. } => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// A 413 for a request body over the router's `max_request_bytes`
    /// (`detail` is the extractor's explanation).
    fn oversize_body(detail: &str) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "oversize",
            message: format!("request body too large: {detail}"),
        }
    }

    /// A JSON body the extractor refused: a 413 `oversize` when it is over
    /// the request limit (whatever the route), else a 400 with the route's
    /// `code` and `message`.
    pub(crate) fn json_rejection(
        r: &JsonRejection,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::oversize_body(&r.body_text())
        } else {
            ApiError::bad_request(code, message)
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::json_rejection(&r, "malformed_json", r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::oversize_body(&r.body_text())
        } else {
            ApiError {
                status: r.status(),
                code: "bad_body",
                message: r.body_text(),
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("bad_query", r.body_text())
    }
}
