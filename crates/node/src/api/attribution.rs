//! Receipt and payout queries and answer-time attribution:
//!
//! - `GET /v1/receipts/{id}`: the on-chain inference receipt with its payout
//!   lines, and the stored prompt, answer and evidence when this node served it;
//! - `GET /v1/receipts/{id}/verify`: re-runs the answer's token attribution
//!   and checks it against the receipt (`{ok, problems}`);
//! - `GET /v1/payouts?contributor=ADDR` or `?receipt=ID`;
//! - `POST /v1/attribution/trace` `{model, text, prompt?, top?}`: the spans
//!   of `text` found in the datanet versions `model` was trained on, their
//!   rows and contributors, and the weights a paid answer with this text
//!   would get (with `prompt`, the words `text` repeats from it are masked
//!   first, as they are for a paid answer).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use trib_ledger::Page;
use trib_types::{Address, ReceiptId};

use super::ApiError;
use crate::chain::Chain;
use trib_attribution::answer::StoredAnswer;

use crate::serving::{answer_path, Serving};

/// Longest text `POST /v1/attribution/trace` accepts, in bytes.
pub(crate) const MAX_TRACE_TEXT_BYTES: usize = 16 * 1024;
/// Spans a trace response shows unless `top` says otherwise.
const DEFAULT_TOP_SPANS: usize = 10;

#[derive(Clone)]
pub(crate) struct ReceiptState {
    pub(crate) chain: Arc<Chain>,
    pub(crate) receipts_dir: PathBuf,
    /// The serving side (tokenizer and index catalog), when a model is served.
    pub(crate) serving: Option<Arc<Serving>>,
}

pub(crate) fn routes(state: ReceiptState) -> Router {
    Router::new()
        .route("/v1/receipts/{id}", get(get_receipt))
        .route("/v1/receipts/{id}/verify", get(verify_receipt))
        .route("/v1/payouts", get(get_payouts))
        .route("/v1/attribution/trace", post(trace))
        .with_state(state)
}

fn no_model() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "model_not_found",
        message: "this node serves no model (set `base_model` in config.toml): no tokenizer to trace with".into(),
    }
}

async fn verify_receipt(
    State(s): State<ReceiptState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_receipt(&id)?;
    let receipt = s.chain.ledger().receipt(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no receipt {id} on the ledger (yet: receipts appear once their block commits)"
        ))
    })?;
    let path = answer_path(&s.receipts_dir, &id);
    let raw = std::fs::read(&path).map_err(|e| {
        ApiError::not_found(format!(
            "this node keeps no answer for receipt {id} ({}: {e}): only the node that served it can re-run it",
            path.display()
        ))
    })?;
    let stored: StoredAnswer = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::internal(format!("{} is not a stored answer: {e}", path.display()))
    })?;
    let serving = s.serving.clone().ok_or_else(no_model)?;
    let r = receipt.clone();
    let outcome = tokio::task::spawn_blocking(move || serving.verify(&stored, &r))
        .await
        .map_err(|e| ApiError::internal(format!("the verify task failed: {e}")))?;
    let problems = outcome.err().unwrap_or_default();
    Ok(Json(json!({
        "receipt": id,
        "ok": problems.is_empty(),
        "problems": problems,
        "method": receipt.method,
        "datanets": receipt.datanets,
        "weights": receipt.weights,
        "evidence_hash": receipt.evidence_hash,
        "fee": receipt.fee,
        "lines": receipt.lines.len(),
    })))
}

#[derive(Debug, Deserialize)]
struct TraceBody {
    model: String,
    text: String,
    /// The question `text` answers: its words are masked in `text`.
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    top: Option<usize>,
}

async fn trace(
    State(s): State<ReceiptState>,
    body: Result<Json<TraceBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(|e| {
        let message = format!("malformed request body: {}", e.body_text());
        ApiError::json_rejection(&e, "invalid_request", message)
    })?;
    for (field, value) in [("text", Some(&b.text)), ("prompt", b.prompt.as_ref())] {
        let len = value.map_or(0, String::len);
        if len > MAX_TRACE_TEXT_BYTES {
            return Err(ApiError::bad_request(
                "text_too_long",
                format!(
                    "{field} is {len} bytes; the trace endpoint accepts at most {MAX_TRACE_TEXT_BYTES} bytes"
                ),
            ));
        }
    }
    let serving = s.serving.clone().ok_or_else(no_model)?;
    let target = serving
        .resolve(&b.model)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "model_not_found",
            message: format!(
                "the model `{}` does not exist: use the base model `{}` or a registered adapter's id or name (GET /v1/models)",
                b.model, serving.base_name
            ),
        })?;
    let top = b.top.unwrap_or(DEFAULT_TOP_SPANS);
    let view = tokio::task::spawn_blocking(move || {
        serving
            .attribution
            .catalog()
            .trace(
                &target.datanets,
                b.prompt.as_deref(),
                &b.text,
                serving.attribution.params(),
            )
            .map(|t| t.view(top))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(format!("the trace task failed: {e}")))?
    .map_err(ApiError::internal)?;
    let mut out = json!({ "model": b.model });
    if let (Value::Object(o), Value::Object(v)) = (&mut out, view) {
        o.extend(v);
    }
    Ok(Json(out))
}

fn parse_receipt(s: &str) -> Result<ReceiptId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request("invalid_id", format!("`{s}` is not a receipt id: {e}")))
}

async fn get_receipt(
    State(s): State<ReceiptState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_receipt(&id)?;
    let receipt = s.chain.ledger().receipt(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no receipt {id} on the ledger (yet: receipts appear once their block commits)"
        ))
    })?;
    let stored: Option<StoredAnswer> = std::fs::read(answer_path(&s.receipts_dir, &id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Json(json!({ "receipt": receipt, "answer": stored })))
}

#[derive(Debug, Deserialize)]
struct PayoutQuery {
    contributor: Option<String>,
    receipt: Option<String>,
    #[serde(default)]
    start: u64,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn get_payouts(
    State(s): State<ReceiptState>,
    q: Result<Query<PayoutQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let ledger = s.chain.ledger();
    match (q.contributor, q.receipt) {
        (Some(c), None) => {
            let addr: Address = c.parse().map_err(|e| {
                ApiError::bad_request("invalid_address", format!("`{c}` is not an address: {e}"))
            })?;
            let page = ledger.payouts_by_contributor(
                &addr,
                Page {
                    start: q.start,
                    limit: q.limit,
                },
            )?;
            Ok(Json(serde_json::to_value(page).expect("page serialises")))
        }
        (None, Some(r)) => {
            let id = parse_receipt(&r)?;
            let lines = ledger
                .payouts_by_receipt(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no receipt {id} on the ledger")))?;
            Ok(Json(json!({ "receipt": id, "items": lines })))
        }
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "give exactly one of `contributor=ADDRESS` or `receipt=ID`",
        )),
    }
}
