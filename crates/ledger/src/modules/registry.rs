//! Model registry: base models and LoRA adapters, their owners and prices.
//!
//! A base model is identified by the content hash of its weights and owned by
//! whoever registers it first. An adapter names its base model and the
//! datanet versions it was trained on (each must exist; a permissioned one
//! needs the registering owner's access grant), and carries the owner's
//! prices per 1,000 prompt and completion tokens, bounded by the governed
//! `model_min_price_per_1k ..= model_max_price_per_1k`. Settlement reads
//! these records to price and pay out an inference.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Address, Amount, DatanetId, Hash, ModelId};

use super::datanet::{has_access, load_datanet, load_version};
use super::{require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::Params;
use crate::state::{StateKey, TxBatch};
use crate::tx::{Action, Transaction};

/// Longest model or adapter name, architecture or licence, in bytes.
const MAX_TEXT_LEN: usize = 128;
/// Most datanet versions one adapter may name.
const MAX_ADAPTER_DATANETS: usize = 64;

/// A registered base model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct BaseModel {
    /// Content hash of the weights.
    pub id: ModelId,
    /// Display name.
    pub name: String,
    /// Architecture (`llama`, …).
    pub architecture: String,
    /// Licence.
    pub licence: String,
    /// Who registered it (receives the base-model owner's share of fees).
    pub owner: Address,
    /// Block of registration.
    pub height: u64,
}

/// A registered LoRA adapter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Adapter {
    /// Hash of the PEFT files.
    pub id: AdapterId,
    /// Base model.
    pub base: ModelId,
    /// Display name.
    pub name: String,
    /// Owner (receives the adapter owner's share of fees).
    pub owner: Address,
    /// Datanet versions it was trained on.
    pub datanets: Vec<(DatanetId, u32)>,
    /// Hash of the training configuration.
    pub config_hash: Hash,
    /// Hash of the evaluation metrics.
    pub metrics_hash: Hash,
    /// Price per 1,000 prompt tokens.
    pub price_in_per_1k: Amount,
    /// Price per 1,000 completion tokens.
    pub price_out_per_1k: Amount,
    /// Block of registration.
    pub height: u64,
}

pub(crate) struct ModelRegistry;

fn text(field: &'static str, value: &str) -> Result<(), TxError> {
    if value.trim().is_empty() {
        return Err(TxError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(TxError::FieldTooLong {
            field,
            len: value.len(),
            max: MAX_TEXT_LEN,
        });
    }
    Ok(())
}

/// Checks both prices against the governed bounds.
fn check_prices(params: &Params, price_in: Amount, price_out: Amount) -> Result<(), TxError> {
    for (which, price) in [
        ("price_in_per_1k", price_in),
        ("price_out_per_1k", price_out),
    ] {
        if price < params.model_min_price_per_1k || price > params.model_max_price_per_1k {
            return Err(TxError::PriceOutOfBounds {
                which,
                price,
                min: params.model_min_price_per_1k,
                max: params.model_max_price_per_1k,
            });
        }
    }
    Ok(())
}

/// A list of (datanet, version) pairs on an action: at most `max` of them,
/// none listed twice (checked before any state is read).
pub(crate) fn check_datanet_versions(
    datanets: &[(DatanetId, u32)],
    max: usize,
) -> Result<(), TxError> {
    if datanets.len() > max {
        return Err(TxError::InvalidField {
            field: "datanets",
            reason: format!("{} datanet versions, at most {max}", datanets.len()),
        });
    }
    let mut seen = datanets.to_vec();
    seen.sort();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(TxError::InvalidField {
            field: "datanets",
            reason: format!("datanet {} version {} is listed twice", w[0].0, w[0].1),
        });
    }
    Ok(())
}

pub(crate) fn load_base_model(state: &TxBatch<'_, '_>, id: &ModelId) -> Result<BaseModel, TxError> {
    state
        .get(&StateKey::BaseModel(*id))?
        .ok_or(TxError::UnknownBaseModel { id: *id })
}

pub(crate) fn load_adapter(state: &TxBatch<'_, '_>, id: &AdapterId) -> Result<Adapter, TxError> {
    state
        .get(&StateKey::Adapter(*id))?
        .ok_or(TxError::UnknownAdapter { id: *id })
}

impl Module for ModelRegistry {
    fn name(&self) -> &'static str {
        "model_registry"
    }

    fn check_stateless(&self, action: &Action, _params: &Params) -> Result<(), TxError> {
        match action {
            Action::RegisterBaseModel {
                name,
                architecture,
                licence,
                ..
            } => {
                text("name", name)?;
                text("architecture", architecture)?;
                text("licence", licence)
            }
            Action::RegisterAdapter { name, datanets, .. } => {
                text("name", name)?;
                check_datanet_versions(datanets, MAX_ADAPTER_DATANETS)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)?;
        let sender = tx.sender_address();
        let params = state.params();
        match &tx.action {
            Action::RegisterBaseModel { model, .. }
                if state
                    .get::<BaseModel>(&StateKey::BaseModel(*model))?
                    .is_some() =>
            {
                return Err(TxError::BaseModelExists { id: *model });
            }
            Action::RegisterAdapter {
                adapter,
                base,
                datanets,
                price_in_per_1k,
                price_out_per_1k,
                ..
            } => {
                if state
                    .get::<Adapter>(&StateKey::Adapter(*adapter))?
                    .is_some()
                {
                    return Err(TxError::AdapterExists { id: *adapter });
                }
                load_base_model(state, base)?;
                for (id, version) in datanets {
                    let d = load_datanet(state, id)?;
                    load_version(state, &d, *version)?;
                    if !has_access(state, &d, &sender)? {
                        return Err(TxError::NoDatanetAccess {
                            datanet: d.id,
                            name: d.name,
                            address: sender,
                        });
                    }
                }
                check_prices(params, *price_in_per_1k, *price_out_per_1k)?;
            }
            Action::SetAdapterPrice {
                adapter,
                price_in_per_1k,
                price_out_per_1k,
            } => {
                let a = load_adapter(state, adapter)?;
                if a.owner != sender {
                    return Err(TxError::NotAdapterOwner {
                        adapter: a.id,
                        owner: a.owner,
                    });
                }
                check_prices(params, *price_in_per_1k, *price_out_per_1k)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        let height = state.height();
        match action {
            Action::RegisterBaseModel {
                model,
                name,
                architecture,
                licence,
            } => {
                let m = BaseModel {
                    id: *model,
                    name: name.clone(),
                    architecture: architecture.clone(),
                    licence: licence.clone(),
                    owner: sender,
                    height,
                };
                state.put(StateKey::BaseModel(*model), &m);
                state.emit(Event::BaseModelRegistered {
                    model: *model,
                    owner: sender,
                });
            }
            Action::RegisterAdapter {
                adapter,
                base,
                name,
                datanets,
                config_hash,
                metrics_hash,
                price_in_per_1k,
                price_out_per_1k,
            } => {
                let a = Adapter {
                    id: *adapter,
                    base: *base,
                    name: name.clone(),
                    owner: sender,
                    datanets: datanets.clone(),
                    config_hash: *config_hash,
                    metrics_hash: *metrics_hash,
                    price_in_per_1k: *price_in_per_1k,
                    price_out_per_1k: *price_out_per_1k,
                    height,
                };
                state.put(StateKey::Adapter(*adapter), &a);
                state.emit(Event::AdapterRegistered {
                    adapter: *adapter,
                    base: *base,
                    owner: sender,
                });
            }
            Action::SetAdapterPrice {
                adapter,
                price_in_per_1k,
                price_out_per_1k,
            } => {
                let mut a = load_adapter(state, adapter)?;
                a.price_in_per_1k = *price_in_per_1k;
                a.price_out_per_1k = *price_out_per_1k;
                state.put(StateKey::Adapter(*adapter), &a);
                state.emit(Event::AdapterPriceSet {
                    adapter: *adapter,
                    price_in_per_1k: *price_in_per_1k,
                    price_out_per_1k: *price_out_per_1k,
                });
            }
            other => {
                return Err(TxError::UnknownModule {
                    module: "model_registry",
                    action: other.name(),
                })
            }
        }
        Ok(())
    }
}
