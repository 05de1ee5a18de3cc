//! Receipt and payout queries: `GET /v1/receipts/{id}` (the on-chain
//! inference receipt with its payout lines, and the stored prompt and answer
//! when this node served it) and `GET /v1/payouts?contributor=ADDR` or
//! `?receipt=ID`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use trib_ledger::Page;
use trib_types::{Address, ReceiptId};

use super::ApiError;
use crate::chain::Chain;
use crate::serving::{answer_path, StoredAnswer};

#[derive(Clone)]
pub(crate) struct ReceiptState {
    pub(crate) chain: Arc<Chain>,
    pub(crate) receipts_dir: PathBuf,
}

pub(crate) fn routes(state: ReceiptState) -> Router {
    Router::new()
        .route("/v1/receipts/{id}", get(get_receipt))
        .route("/v1/payouts", get(get_payouts))
        .with_state(state)
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
