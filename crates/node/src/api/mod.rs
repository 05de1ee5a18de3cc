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

mod error;
mod ledger;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub use error::{ApiError, ErrorBody, ErrorDetail};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(crate) chain: Arc<Chain>,
}

/// The whole API: every area's routes, a typed 404 and 405, a request-body
/// limit that answers 413, and a tracing span per request.
pub(crate) fn router(state: AppState, max_request_bytes: usize) -> Router {
    Router::new()
        .merge(ledger::routes())
        .fallback(|| async { ApiError::not_found("no such route: see docs/node.md for the API") })
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
