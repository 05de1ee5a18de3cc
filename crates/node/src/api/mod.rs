//! The HTTP API (axum): the only part of the node that speaks HTTP.
//!
//! One module per area, each contributing its routes to [`router_with`]:
//! [`ledger`] (transactions, accounts, blocks, governance, proofs),
//! `datanets`, `models`, `jobs`, `apikeys` (an account's API keys, signed
//! by it), [`openai`] (the OpenAI-compatible generation routes and the
//! adapter cache) and [`attribution`] (receipts, payouts, verify, trace),
//! and `web` serves the web app as the fallback of every other path. The
//! node services under them (`chain.rs`,
//! `datanets.rs`, `jobs.rs`, `models.rs`) return their own error enums and
//! domain types; the route modules build the wire views and [`error`] turns
//! every error into a typed response.
//!
//! Every router is assembled in [`router_with`] before the shared layers
//! are added, so every route gets the same tracing span, the same
//! request-body limit (`max_request_bytes`, 413 past it) and the same
//! authentication ([`auth`]: the signed-request middleware and the table
//! of who may call each route, `docs/security.md`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::chain::Chain;
use crate::serving::Serving;

mod apikeys;
pub(crate) mod attribution;
pub(crate) mod auth;
mod datanets;
mod error;
mod jobs;
mod ledger;
mod models;
pub(crate) mod openai;
mod web;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(crate) chain: Arc<Chain>,
}

/// The node's services beside the ledger: datanets, models and jobs, and
/// the receipt and serving side (each route module carries its own state,
/// so [`AppState`] stays as the ledger routes know it).
#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) datanets: Arc<crate::datanets::DatanetService>,
    pub(crate) models: Arc<crate::models::ModelService>,
    pub(crate) jobs: crate::jobs::JobQueue,
    /// Where the answers this node served are stored (receipt queries and
    /// verification read them).
    pub(crate) receipts_dir: PathBuf,
    /// The serving engine, when a base model is configured: the
    /// OpenAI-compatible routes exist only then.
    pub(crate) serving: Option<Arc<Serving>>,
    /// The node's API keys (`/v1/apikeys`).
    pub(crate) apikeys: Arc<crate::apikeys::ApiKeys>,
    /// Signatures accepted within the window (`<home>/signed-requests.log`),
    /// so a signed request cannot be replayed, even across a restart.
    pub(crate) replays: Arc<auth::ReplayGuard>,
}

/// The ledger routes alone (tests of the ledger API), with the same
/// fallbacks and layers as [`router_with`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn router(state: AppState, max_request_bytes: usize) -> Router {
    router_with(state, None, max_request_bytes)
}

/// The whole API: every area's routes (datanet, model, job, receipt and
/// attribution routes when `services` is set, the OpenAI-compatible routes
/// when it serves a model), then a typed 404 and 405, a request-body limit
/// that answers 413, and a tracing span per request, added once over all
/// of them.
pub(crate) fn router_with(
    state: AppState,
    services: Option<Services>,
    max_request_bytes: usize,
) -> Router {
    let chain = state.chain.clone();
    let mut replays = Arc::default();
    let mut r = Router::new().merge(ledger::routes());
    // The receipt and OpenAI routes carry their own state already.
    let mut own_state = Router::new();
    if let Some(s) = services {
        replays = s.replays.clone();
        r = r
            // The upload route streams its body past the extractors, so it
            // applies `max_request_bytes` itself (with the datanet's own
            // `max_file_bytes`, 16 MiB by default, whichever is smaller,
            // answering 413 `file_too_large` or `oversize`).
            .merge(datanets::routes(s.datanets, max_request_bytes))
            .merge(models::routes(s.models))
            .merge(jobs::routes(s.jobs))
            .merge(apikeys::routes(apikeys::KeyRoutes {
                keys: s.apikeys,
                chain: chain.clone(),
                operator: s.serving.as_ref().map(|v| v.billing.operator()),
            }));
        own_state = own_state.merge(attribution::routes(attribution::ReceiptState {
            chain: chain.clone(),
            receipts_dir: s.receipts_dir,
            serving: s.serving.clone(),
        }));
        if let Some(serving) = s.serving {
            own_state = own_state.merge(openai::routes(serving));
        }
    }
    r.with_state(state)
        .merge(own_state)
        // The web app at `/` (typed 404 under `/v1`).
        .fallback(web::fallback)
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "method not allowed on this route".into(),
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::Auth {
                operator: chain.operator(),
                replays,
                max_request_bytes,
            }),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(TraceLayer::new_for_http())
}
