//! Receipt and payout queries and answer-time attribution:
//!
//! - `GET /v1/receipts/{id}`: the on-chain inference receipt with its payout
//!   lines (public ledger data, to anyone), and the stored prompt, answer
//!   and evidence when this node served it, only to a request signed by the
//!   paying account, the adapter's owner or the operator (others get
//!   `answer: null` and `answer_withheld` saying why);
//! - `GET /v1/receipts/{id}/verify`: re-runs the answer's token attribution
//!   and checks it against the receipt (`{ok, problems}`);
//! - `GET /v1/payouts?contributor=ADDR` or `?receipt=ID`;
//! - `POST /v1/attribution/trace` `{model, text, prompt?, top?}`: the spans
//!   of `text` found in the datanet versions `model` was trained on, their
//!   rows and contributors, and the weights a paid answer with this text
//!   would get (with `prompt`, the words `text` repeats from it are masked
//!   first, as they are for a paid answer). Rows of a permissioned datanet
//!   the caller has no grant for show `"withheld"` for their contributors
//!   and snippets ([`withhold_permissioned_rows`]).

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

use super::auth::Caller;
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
    caller: Caller,
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
    withhold_permissioned_rows(&s.chain, caller.address().as_ref(), &mut out)?;
    Ok(Json(out))
}

/// The word that replaces what a caller may not see.
pub(crate) const WITHHELD: &str = "withheld";

/// Replaces, in an attribution view (a trace, the `attribution` field of
/// an answer), the contributor, contribution, row and snippet of every
/// span row, and the contributor and contribution of every weight, that
/// belong to a permissioned datanet `reader` has no grant for (anonymous
/// readers have none) with [`WITHHELD`]. The ledger says which datanet a
/// contribution belongs to and who may read it.
pub(crate) fn withhold_permissioned_rows(
    chain: &Chain,
    reader: Option<&Address>,
    view: &mut Value,
) -> Result<(), ApiError> {
    let ledger = chain.ledger();
    let mut hidden: std::collections::HashMap<String, bool> = Default::default();
    let mut is_hidden = |contribution: &Value| -> Result<bool, ApiError> {
        let Some(text) = contribution.as_str() else {
            return Ok(false);
        };
        if let Some(h) = hidden.get(text) {
            return Ok(*h);
        }
        let Ok(id) = text.parse::<trib_types::ContributionId>() else {
            return Ok(true);
        };
        let h = match ledger.contribution(&id)? {
            None => true,
            Some(c) => match reader {
                Some(r) => !ledger.has_access(&c.datanet, r)?,
                None => ledger
                    .datanet(trib_ledger::DatanetRef::Id(c.datanet))?
                    .is_none_or(|d| d.visibility != trib_types::Visibility::Public),
            },
        };
        hidden.insert(text.to_string(), h);
        Ok(h)
    };
    let mut withheld = 0usize;
    if let Some(spans) = view.get_mut("spans").and_then(Value::as_array_mut) {
        for span in spans {
            let Some(rows) = span.get_mut("rows").and_then(Value::as_array_mut) else {
                continue;
            };
            for row in rows {
                if is_hidden(&row["contribution"])? || is_hidden(&row["credited_contribution"])? {
                    for field in [
                        "row_hash",
                        "contribution",
                        "contributor",
                        "credited_contribution",
                        "credited_contributor",
                        "snippet",
                    ] {
                        row[field] = json!(WITHHELD);
                    }
                    withheld += 1;
                }
            }
        }
    }
    if let Some(weights) = view.get_mut("contributions").and_then(Value::as_array_mut) {
        for w in weights {
            if is_hidden(&w["contribution"])? {
                w["contribution"] = json!(WITHHELD);
                w["contributor"] = json!(WITHHELD);
                withheld += 1;
            }
        }
    }
    if withheld > 0 {
        view["withheld"] = json!(format!(
            "{withheld} rows and weights belong to permissioned datanets {} has no grant for: \
             their contributors, rows and snippets are withheld",
            reader.map_or("an anonymous caller".to_string(), |a| a.to_string())
        ));
    }
    Ok(())
}

fn parse_receipt(s: &str) -> Result<ReceiptId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request("invalid_id", format!("`{s}` is not a receipt id: {e}")))
}

async fn get_receipt(
    caller: Caller,
    State(s): State<ReceiptState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_receipt(&id)?;
    let receipt = s.chain.ledger().receipt(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no receipt {id} on the ledger (yet: receipts appear once their block commits)"
        ))
    })?;
    // The prompt and answer are the payer's: shown only to the payer, the
    // adapter's owner and the operator.
    let adapter_owner = match &receipt.adapter {
        Some(a) => s.chain.ledger().adapter(a)?.map(|a| a.owner),
        None => None,
    };
    let reader = caller.address();
    let may_read = caller.is_operator()
        || reader.is_some_and(|r| r == receipt.payer || Some(r) == adapter_owner);
    if !may_read {
        return Ok(Json(json!({
            "receipt": receipt,
            "answer": null,
            "answer_withheld": format!(
                "the prompt and answer are shown only to a request signed by the paying account ({}), \
                 the adapter's owner or the node's operator{}",
                receipt.payer,
                reader.map_or(String::new(), |r| format!("; {r} is none of them"))
            ),
        })));
    }
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
