//! API-key routes: an account lists, creates and revokes its own keys.
//!
//! `GET /v1/apikeys`, `POST /v1/apikeys` and `DELETE /v1/apikeys/{id}` must
//! be signed requests (a [`SignedBy`] from [`super::auth`]: the account's
//! ed25519 key over method, path, body hash, timestamp and nonce); the signer is the account
//! whose keys they read or change, so an unsigned request is 401 and no
//! account can see or revoke another's keys (another account's key id is
//! 404, like an unknown one). A key's text is shown once, in the answer to
//! its creation; lists show its id and first characters only. The service
//! is `crate::apikeys::ApiKeys`, shared through the key file with serving
//! and `trib apikey new`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use trib_types::Address;

use super::auth::SignedBy;
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

/// Runs a key-file operation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiKeyError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("API key operation failed: {e}")))?
        .map_err(ApiError::from)
}

async fn list(signer: SignedBy, State(r): State<KeyRoutes>) -> Result<Json<ApiKeyList>, ApiError> {
    let account = signer.address();
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
    signer: SignedBy,
    State(r): State<KeyRoutes>,
) -> Result<(StatusCode, Json<NewApiKeyView>), ApiError> {
    let account = signer.address();
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
    signer: SignedBy,
    State(r): State<KeyRoutes>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    let account = signer.address();
    let keys = r.keys.clone();
    let gone = blocking(move || keys.revoke(&account, &id)).await?;
    Ok(Json(view(gone)))
}
