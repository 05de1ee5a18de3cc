//! JSON shapes of the base-model routes (`/v1/models/base`).

use serde::{Deserialize, Serialize};
use trib_ledger::BaseModel;
use trib_model::ModelInfo;

/// A local base model and its ledger registration, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseModelView {
    /// What the weights say (architecture, parameters, quantization,
    /// tokenizer, licence, content hash as `id`).
    pub info: ModelInfo,
    /// The ledger's record when registered.
    pub registered: Option<BaseModel>,
}
