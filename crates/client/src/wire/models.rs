//! JSON shapes of the base-model routes (`/v1/models/base`).

use serde::{Deserialize, Serialize};
use trib_ledger::BaseModel;
use trib_model::ModelInfo;
use utoipa::ToSchema;

/// A local base model and its ledger registration, if any.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BaseModelView {
    /// What the weights say (architecture, parameters, quantization,
    /// tokenizer, licence, content hash as `id`).
    #[schema(value_type = Object)]
    pub info: ModelInfo,
    /// The ledger's record when registered.
    #[schema(value_type = Option<Object>)]
    pub registered: Option<BaseModel>,
}
