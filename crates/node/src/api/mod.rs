//! The HTTP API (axum). One module per area: [`ledger`] now; datanets,
//! models, the OpenAI-compatible endpoints and attribution join as sibling
//! modules that each contribute a `routes()` to [`router`] and share
//! [`AppState`] and [`ApiError`].

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::chain::Chain;

pub(crate) mod attribution;
mod datanets;
mod error;
mod jobs;
mod ledger;
mod models;
pub(crate) mod openai;

#[cfg(test)]
mod tests;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(crate) chain: Arc<Chain>,
}

/// The datanet, model and job services (each route module carries its own
/// state, so [`AppState`] stays as the ledger routes know it).
#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) datanets: Arc<crate::datanets::DatanetService>,
    pub(crate) models: Arc<crate::models::ModelService>,
    pub(crate) jobs: crate::jobs::JobQueue,
}

/// The whole API: every area's routes, a typed 404 and 405, a request-body
/// limit that answers 413, and a tracing span per request.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn router(state: AppState, max_request_bytes: usize) -> Router {
    router_with(state, None, max_request_bytes)
}

/// [`router`] with the datanet, model and job routes when `services` is set.
pub(crate) fn router_with(
    state: AppState,
    services: Option<Services>,
    max_request_bytes: usize,
) -> Router {
    let mut r = Router::new().merge(ledger::routes());
    if let Some(s) = services {
        r = r
            .merge(datanets::routes(s.datanets, max_request_bytes))
            .merge(models::routes(s.models))
            .merge(jobs::routes(s.jobs));
    }
    r.fallback(|| async { ApiError::not_found("no such route: see docs/node.md for the API") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "method not allowed on this route".into(),
            }
        })
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
