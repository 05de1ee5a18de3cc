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
//! request-body limit (`max_request_bytes`, 413 past it), the same
//! authentication ([`auth`]: the signed-request middleware and the table
//! of who may call each route, `docs/security.md`), the same CORS policy
//! (closed unless `cors_origins` lists origins) and
//! `X-Content-Type-Options: nosniff`. `/metrics` ([`metrics`]) is the
//! Prometheus page.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
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
mod metrics;
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
    router_with(state, None, max_request_bytes, &[])
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
    cors_origins: &[String],
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
            .merge(jobs::routes(s.jobs.clone()))
            .merge(apikeys::routes(apikeys::KeyRoutes {
                keys: s.apikeys,
                chain: chain.clone(),
                operator: s.serving.as_ref().map(|v| v.billing.operator()),
            }));
        own_state = own_state.merge(metrics::routes(
            chain.clone(),
            s.jobs.clone(),
            s.serving.clone(),
        ));
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
        .layer(cors(cors_origins))
        // Outside CORS, so its own answers to preflights carry them too.
        .layer(axum::middleware::map_response(security_headers))
        .layer(TraceLayer::new_for_http())
}

/// Cross-origin calls: none unless the operator lists origins
/// (`cors_origins`); then those origins may call with the methods and
/// headers the API uses (a preflight from another origin gets no
/// `Access-Control-Allow-Origin`, so the browser refuses the call).
fn cors(origins: &[String]) -> CorsLayer {
    // Origins are checked when the configuration is read.
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if allowed.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(AllowHeaders::mirror_request())
}

/// Headers every response carries: `X-Content-Type-Options: nosniff`, so
/// a browser never runs a JSON or text body as something else (HTML pages
/// add their own headers in their routes).
async fn security_headers(mut r: Response) -> Response {
    r.headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    r
}
