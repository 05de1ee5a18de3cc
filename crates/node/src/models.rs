//! Base models the node can see: the weight files in `<home>/models`
//! (GGUF files and Hugging Face directories) described by `trib-model`, and
//! whether each is registered on the ledger (by content hash).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use trib_client::wire::BaseModelView;
use trib_ledger::LedgerError;
use trib_model::{Model, ModelInfo, WeightFormat};

use crate::chain::Chain;

/// Why the base-model catalogue could not be listed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelServiceError {
    /// The ledger's base-model registrations could not be read (a storage
    /// error; the ledger's message names it).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Describes a model file or directory (loads it; quantized weights stay
/// quantized).
pub fn describe_model(path: &Path) -> Result<ModelInfo, trib_model::ModelError> {
    Ok(Model::load(path, WeightFormat::Quantized)?.info().clone())
}

/// The base-model catalogue of one node.
pub(crate) struct ModelService {
    dir: PathBuf,
    chain: Arc<Chain>,
    /// Descriptions by path and modification time (loading is slow).
    cache: Mutex<HashMap<PathBuf, (Option<SystemTime>, ModelInfo)>>,
}

impl ModelService {
    pub(crate) fn new(dir: PathBuf, chain: Arc<Chain>) -> Self {
        ModelService {
            dir,
            chain,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The models directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "gguf")
                    || (p.is_dir() && p.join("config.json").is_file())
            })
            .collect();
        out.sort();
        out
    }

    /// Every local base model, with its registration.
    pub(crate) fn list(&self) -> Result<Vec<BaseModelView>, ModelServiceError> {
        let registered = self.chain.ledger().base_models()?;
        let mut out = Vec::new();
        for path in self.candidates() {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let cached = {
                let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                c.get(&path)
                    .filter(|(t, _)| *t == mtime)
                    .map(|(_, i)| i.clone())
            };
            let info = match cached {
                Some(i) => i,
                None => match describe_model(&path) {
                    Ok(i) => {
                        self.cache
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(path.clone(), (mtime, i.clone()));
                        i
                    }
                    Err(e) => {
                        tracing::warn!(target: "trib::node::models", path = %path.display(), error = %e, "skipping unreadable model");
                        continue;
                    }
                },
            };
            let reg = registered.iter().find(|b| b.id == info.id).cloned();
            out.push(BaseModelView {
                info,
                registered: reg,
            });
        }
        Ok(out)
    }
}
