//! JSON shapes of the attribution routes that clients send. The answers
//! (receipts, payout lines, traces, re-checks) are documents the node's
//! attribution routes build; clients read them as JSON values.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /v1/attribution/trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceRequest {
    /// The base model's name or a registered adapter's id or name.
    pub model: String,
    /// The text to trace (at most 16 KiB).
    pub text: String,
    /// The question `text` answers: its words are masked in `text` first,
    /// as for a paid answer.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Spans to show, rarest first (the node's default when absent).
    #[serde(default)]
    pub top: Option<usize>,
}
