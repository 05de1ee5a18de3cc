//! The attribution routes: inference receipts, their re-check, payout
//! lines and the trace of a text against a model's datanet versions. The
//! answers are JSON documents whose shape `trib-node`'s attribution routes
//! own, so they come back as [`serde_json::Value`].

use serde_json::Value;
use trib_types::Address;

use super::{enc, enc_query, NodeClient, SERVICE_TIMEOUT};
use crate::error::ClientError;
use crate::wire::TraceRequest;

/// Which payout lines `GET /v1/payouts` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutFilter {
    /// Every line paid to this contributor (or owner).
    Contributor(Address),
    /// The lines of one receipt (id in hex).
    Receipt(String),
}

impl NodeClient {
    /// `GET /v1/receipts/{id}`: the receipt, and the stored answer when this
    /// client signs as the payer, the adapter's owner or the operator.
    pub async fn receipt(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v1/receipts/{}", enc(id)), SERVICE_TIMEOUT)
            .await
    }

    /// `GET /v1/receipts/{id}/verify`: the node re-runs the attribution of
    /// the stored answer and compares it with the receipt.
    pub async fn verify_receipt(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v1/receipts/{}/verify", enc(id)), SERVICE_TIMEOUT)
            .await
    }

    /// `GET /v1/payouts?contributor=…|receipt=…`.
    pub async fn payouts(&self, filter: &PayoutFilter) -> Result<Value, ClientError> {
        let q = match filter {
            PayoutFilter::Contributor(a) => format!("contributor={a}"),
            PayoutFilter::Receipt(r) => format!("receipt={}", enc_query(r)),
        };
        self.get(&format!("/v1/payouts?{q}"), SERVICE_TIMEOUT).await
    }

    /// `POST /v1/attribution/trace`: spans of `req.text` found in the
    /// datanet versions behind `req.model`, their rows and contributors.
    pub async fn trace(&self, req: &TraceRequest) -> Result<Value, ClientError> {
        self.post_json("/v1/attribution/trace", req, SERVICE_TIMEOUT)
            .await
    }
}
