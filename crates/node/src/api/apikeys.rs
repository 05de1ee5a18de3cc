//! API-key routes: an account lists, creates and revokes its own keys.
//!
//! `GET /v1/apikeys`, `POST /v1/apikeys` and `DELETE /v1/apikeys/{id}` must
//! be signed requests ([`super::signed_read`]: the account's ed25519 key over
//! method, path, body hash, timestamp and nonce); the signer is the account
//! whose keys they read or change, so an unsigned request is 401 and no
//! account can see or revoke another's keys (another account's key id is
//! 404, like an unknown one). A key's text is shown once, in the answer to
//! its creation; lists show its id and first characters only. The service
//! is `crate::apikeys::ApiKeys`, shared through the key file with serving
//! and `trib apikey new`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{delete, get};
use axum::{Json, Router};
use trib_types::Address;

use super::signed_read::{self, ReplayGuard};
use super::{ApiError, AppState};
use crate::apikeys::{ApiKeyError, ApiKeyInfo, ApiKeys};
use crate::chain::Chain;
use trib_client::wire::{ApiKeyList, ApiKeyView, NewApiKeyView};

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            e @ ApiKeyError::NotFound { .. } => ApiError::not_found(e.to_string()),
            e @ (ApiKeyError::Io { .. } | ApiKeyError::Corrupt { .. }) => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// What the key routes share.
#[derive(Clone)]
pub(crate) struct KeyRoutes {
    /// The node's key file.
    pub(crate) keys: Arc<ApiKeys>,
    /// For the account's allowance.
    pub(crate) chain: Arc<Chain>,
    /// The operator that settles the node's answers, when it serves.
    pub(crate) operator: Option<Address>,
    /// Signatures already used.
    pub(crate) replays: Arc<ReplayGuard>,
}

pub(super) fn routes(state: KeyRoutes) -> Router<AppState> {
    Router::new()
        .route("/v1/apikeys", get(list).post(create))
        .route("/v1/apikeys/{id}", delete(revoke))
        .with_state(state)
}

fn view(k: ApiKeyInfo) -> ApiKeyView {
    ApiKeyView {
        id: k.id,
        prefix: k.prefix,
        created_ms: k.created_ms,
    }
}

/// The account that signed the request (over `body`); 401 when it is
/// unsigned.
fn signer(
    r: &KeyRoutes,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Address, ApiError> {
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    signed_read::verify(
        headers,
        method.as_str(),
        path_and_query,
        body,
        trib_client::signed_read::now(),
        &r.replays,
    )?
    .ok_or_else(|| ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "missing_signature",
        message: "API keys are managed only by their account: sign the request with the account's key (x-trib-* headers; `trib apikey list --key KEY` signs)".into(),
    })
}

/// Runs a key-file operation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiKeyError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("API key operation failed: {e}")))?
        .map_err(ApiError::from)
}

async fn list(
    State(r): State<KeyRoutes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<ApiKeyList>, ApiError> {
    let account = signer(&r, &method, &uri, &headers, b"")?;
    let allowance = match r.operator {
        Some(op) => Some(r.chain.ledger().allowance(&account, &op)?),
        None => None,
    };
    let keys = r.keys.clone();
    let keys = blocking(move || keys.list(&account)).await?;
    Ok(Json(ApiKeyList {
        account,
        operator: r.operator,
        allowance,
        keys: keys.into_iter().map(view).collect(),
    }))
}

async fn create(
    State(r): State<KeyRoutes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<NewApiKeyView>), ApiError> {
    let account = signer(&r, &method, &uri, &headers, &body)?;
    let keys = r.keys.clone();
    let new = blocking(move || keys.issue(account)).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewApiKeyView {
            api_key: new.key,
            account,
            key: view(new.info),
        }),
    ))
}

async fn revoke(
    State(r): State<KeyRoutes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    let account = signer(&r, &method, &uri, &headers, b"")?;
    let keys = r.keys.clone();
    let gone = blocking(move || keys.revoke(&account, &id)).await?;
    Ok(Json(view(gone)))
}
