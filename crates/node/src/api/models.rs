//! Model routes: the base models in the node's models directory, with their
//! ledger registration.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiError, AppState};
use crate::models::{ModelService, ModelServiceError};
use trib_client::wire::BaseModelView;

impl From<ModelServiceError> for ApiError {
    fn from(e: ModelServiceError) -> Self {
        match e {
            ModelServiceError::Ledger(e) => e.into(),
        }
    }
}

pub(crate) fn routes(svc: Arc<ModelService>) -> Router<AppState> {
    Router::new()
        .route("/v1/models/base", get(list_base))
        .with_state(svc)
}

async fn list_base(
    State(s): State<Arc<ModelService>>,
) -> Result<Json<Vec<BaseModelView>>, ApiError> {
    let v = tokio::task::spawn_blocking(move || s.list())
        .await
        .map_err(|e| ApiError::internal(format!("model listing failed: {e}")))??;
    Ok(Json(v))
}
