//! Ledger routes: transactions, accounts, blocks, governance, parameters,
//! supply, status and state proofs.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use trib_ledger::{Params, Proposal, SignedTransaction, StateKey, StateProof};
use trib_types::{Address, TxHash};

use super::{ApiError, AppState};
use crate::chain::{AccountState, ChainError, ChainTx};
use trib_client::wire::{
    AccountView, BlockView, StatusView, SubmitResponse, SupplyView, TxStatus, TxView,
};

impl From<ChainError> for ApiError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Ledger(e) => e.into(),
            e @ ChainError::NoSuchBlock { .. } => ApiError::not_found(e.to_string()),
            e @ ChainError::SupplyOverflow => ApiError::internal(e.to_string()),
        }
    }
}

fn tx_view(hash: TxHash, tx: ChainTx) -> TxView {
    match tx {
        ChainTx::Committed(rec) => TxView {
            hash,
            status: TxStatus::Committed,
            height: Some(rec.height),
            index: Some(rec.index),
            tx: rec.tx,
            receipt: Some(rec.receipt),
        },
        ChainTx::Pending(tx) => TxView {
            hash,
            status: TxStatus::Pending,
            height: None,
            index: None,
            tx,
            receipt: None,
        },
    }
}

fn account_view(address: Address, a: AccountState) -> AccountView {
    AccountView {
        address,
        balance: a.account.balance,
        staked: a.account.staked,
        unbonding: a.account.unbonding,
        delegate: a.account.delegate,
        voting_power: a.voting_power,
        staking_rewards: a.staking_rewards,
        nonce: a.account.nonce,
        next_nonce: a.next_nonce,
    }
}

fn block_view(block: trib_ledger::Block) -> BlockView {
    BlockView {
        hash: block.header.hash(),
        block,
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tx", post(submit_tx))
        .route("/v1/tx/{hash}", get(get_tx))
        .route("/v1/accounts/{address}", get(get_account))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{height}", get(get_block))
        .route("/v1/proposals", get(list_proposals))
        .route("/v1/proposals/{id}", get(get_proposal))
        .route("/v1/params", get(get_params))
        .route("/v1/supply", get(get_supply))
        .route("/v1/status", get(get_status))
        .route("/v1/proofs", get(get_proof))
}

/// `POST /v1/tx`. The body is the canonical encoding as hex (any content
/// type but JSON; `0x` and surrounding whitespace allowed), the raw canonical
/// bytes (`application/octet-stream`), or the transaction as JSON
/// (`application/json`, or a body starting with `{`).
async fn submit_tx(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let body = body?;
    let max = s.chain.max_tx_bytes();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let stx = if content_type.starts_with("application/octet-stream") {
        SignedTransaction::decode_checked(&body, max)?
    } else if content_type.contains("json")
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    {
        let stx: SignedTransaction = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "malformed_json",
                format!("body is not a JSON signed transaction: {e}"),
            )
        })?;
        let len = stx.encoded_len();
        if len > max {
            return Err(trib_ledger::TxError::Oversize { len, max }.into());
        }
        stx
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|_| {
                ApiError::bad_request("malformed_hex", "body is neither JSON nor hex text")
            })?
            .trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        if text.len() / 2 > max {
            return Err(trib_ledger::TxError::Oversize {
                len: text.len() / 2,
                max,
            }
            .into());
        }
        let bytes = hex::decode(text).map_err(|e| {
            ApiError::bad_request("malformed_hex", format!("body is not valid hex: {e}"))
        })?;
        SignedTransaction::decode_checked(&bytes, max)?
    };
    let hash = s.chain.submit(stx)?;
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { hash })))
}

async fn get_tx(
    State(s): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Json<TxView>, ApiError> {
    let hash: TxHash = hash.parse().map_err(|e: trib_types::HashParseError| {
        ApiError::bad_request("bad_hash", e.to_string())
    })?;
    let tx = s.chain.tx(&hash)?;
    tx.map(|t| Json(tx_view(hash, t))).ok_or_else(|| {
        ApiError::not_found(format!(
            "no transaction {hash} (neither pending nor committed)"
        ))
    })
}

async fn get_account(
    State(s): State<AppState>,
    Path(addr): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let addr: Address = addr.parse().map_err(|e: trib_types::AddressParseError| {
        ApiError::bad_request("bad_address", e.to_string())
    })?;
    Ok(Json(account_view(addr, s.chain.account(&addr)?)))
}

async fn latest_block(State(s): State<AppState>) -> Result<Json<BlockView>, ApiError> {
    let h = s.chain.height();
    Ok(Json(block_view(s.chain.block(h)?)))
}

async fn get_block(
    State(s): State<AppState>,
    Path(height): Path<String>,
) -> Result<Json<BlockView>, ApiError> {
    let height: u64 = height.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_height",
            format!("invalid block height {height:?}: expected a non-negative integer or 'latest'"),
        )
    })?;
    Ok(Json(block_view(s.chain.block(height)?)))
}

async fn list_proposals(State(s): State<AppState>) -> Result<Json<Vec<Proposal>>, ApiError> {
    Ok(Json(s.chain.proposals()?))
}

async fn get_proposal(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Proposal>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_proposal_id",
            format!("invalid proposal id {id:?}: expected a non-negative integer"),
        )
    })?;
    s.chain
        .proposal(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no proposal {id}")))
}

async fn get_params(State(s): State<AppState>) -> Result<Json<Params>, ApiError> {
    Ok(Json(s.chain.params()?))
}

async fn get_supply(State(s): State<AppState>) -> Result<Json<SupplyView>, ApiError> {
    let t = s.chain.supply()?;
    Ok(Json(SupplyView {
        supply: t.supply,
        total: t.total,
    }))
}

async fn get_status(State(s): State<AppState>) -> Json<StatusView> {
    let st = s.chain.status();
    Json(StatusView {
        chain_id: st.chain_id,
        height: st.head.height,
        head_hash: st.head.hash(),
        state_root: st.head.state_root,
        time_ms: st.head.time_ms,
        producer: st.head.producer.address(),
        mempool_size: st.pending,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[derive(Deserialize)]
struct ProofQuery {
    key: String,
    height: Option<u64>,
}

/// `GET /v1/proofs`: the [`StateProof`] (what `trib ledger prove` prints
/// and `trib ledger check-proof` reads) and `value_bytes`, the hex of the
/// value's canonical bytes (what the proof's leaf commits to), so a client
/// without the Rust decoders (the web app) can check the proof.
#[derive(Serialize)]
struct ProofView {
    #[serde(flatten)]
    proof: StateProof,
    value_bytes: Option<String>,
}

async fn get_proof(
    State(s): State<AppState>,
    q: Result<Query<ProofQuery>, QueryRejection>,
) -> Result<Json<ProofView>, ApiError> {
    let Query(q) = q?;
    let key: StateKey = q
        .key
        .parse()
        .map_err(|e: trib_ledger::StateKeyParseError| {
            ApiError::bad_request("bad_state_key", e.to_string())
        })?;
    let proof = s.chain.prove(&key, q.height)?;
    let value_bytes = proof.value.as_ref().map(|v| hex::encode(v.encode()));
    Ok(Json(ProofView { proof, value_bytes }))
}
