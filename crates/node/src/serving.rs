//! The serving side of a node: the OpenLoRA engine over the configured base
//! model, the adapter store under the home, API keys and billing.
//!
//! The engine starts with the node when `base_model` is set in
//! `config.toml`. Adapters are looked up in `<home>/adapters/<ADAPTER_ID>/`
//! (PEFT files, the directory named by the ledger adapter id in hex); a
//! request's `model` is the base model's name or a registered adapter's id
//! or name. Each answer is settled on the ledger by the operator key (the
//! producer key) and its prompt and answer are kept in
//! `<home>/receipts/<RECEIPT_ID>.json` for `trib attribution verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trib_serve::{
    AdapterName, AdmissionInfo, Engine, EngineConfig, EngineHandle, LocalDirStore, ServedModel,
};
use trib_types::{AdapterId, Hash, ModelId, ReceiptId};

use crate::billing::{ApiKeys, Billing};
use crate::chain::Chain;
use crate::config::NodeConfig;
use crate::home::NodeHome;
use crate::node::NodeError;

/// What the engine serves and how requests are charged.
pub(crate) struct Serving {
    pub(crate) engine: EngineHandle,
    pub(crate) base_name: String,
    pub(crate) base_id: ModelId,
    pub(crate) chain: Arc<Chain>,
    pub(crate) billing: Arc<Billing>,
    pub(crate) keys: ApiKeys,
    receipts_dir: PathBuf,
}

/// A request's `model` resolved: the base alone, or a registered adapter.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) adapter: Option<(AdapterId, AdapterName)>,
}

/// The prompt and answer of one settled request, kept in the home so the
/// attribution can be re-run (`trib attribution verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The receipt.
    pub receipt: ReceiptId,
    /// The `model` asked for.
    pub model: String,
    /// The prompt as sent (text, or the chat messages as JSON).
    pub prompt: String,
    /// The generated answer.
    pub answer: String,
    /// Hash of prompt and answer (what the receipt's evidence commits to).
    pub evidence_hash: Hash,
}

impl StoredAnswer {
    /// The evidence hash of a prompt and answer.
    pub fn hash_of(prompt: &str, answer: &str) -> Hash {
        Hash::domain(
            "tributary answer evidence v1",
            &[prompt.as_bytes(), answer.as_bytes()],
        )
    }
}

impl Serving {
    /// Starts the engine when the configuration names a base model.
    pub(crate) fn start(
        home: &NodeHome,
        config: &NodeConfig,
        chain: Arc<Chain>,
    ) -> Result<Option<Arc<Serving>>, NodeError> {
        let Some(base) = config.base_model.as_ref() else {
            return Ok(None);
        };
        let bad =
            |e: String| NodeError::Services(format!("serving base model {}: {e}", base.display()));
        let info = crate::models::describe_model(base).map_err(|e| bad(e.to_string()))?;
        let model = ServedModel::load(base)
            .map_err(|e| bad(e.to_string()))?
            .accept_base_name(&info.name)
            .accept_base_name(&info.id.to_string())
            // Adapters trained by this node's ModelFactory name the weights
            // file they were trained from as their PEFT base model
            // (compared by file name).
            .accept_base_name(&base.display().to_string());
        let adapters = home.root().join("adapters");
        std::fs::create_dir_all(&adapters).map_err(|e| bad(e.to_string()))?;
        let genesis = home.load_genesis()?;
        let operator = home.load_producer(config, &genesis)?;
        let billing = Arc::new(Billing::new(
            chain.clone(),
            operator,
            genesis.chain_id.clone(),
        ));
        let keys = ApiKeys::open(ApiKeys::path_in(home.root()))
            .map_err(|e| NodeError::Services(e.to_string()))?;
        let check_billing = billing.clone();
        let check = move |i: &AdmissionInfo<'_>| -> Result<(), String> {
            let payer = i
                .rate_key
                .ok_or("no account for this request")?
                .parse()
                .map_err(|e| format!("bad account: {e}"))?;
            let adapter = match i.adapter {
                Some(n) => Some(
                    n.as_str()
                        .parse::<AdapterId>()
                        .map_err(|e| format!("adapter {n} is not a ledger id: {e}"))?,
                ),
                None => None,
            };
            let prices = check_billing.prices(adapter.as_ref())?;
            check_billing
                .precheck(&payer, prices, i.prompt_tokens, i.max_tokens)
                .map(|_| ())
        };
        let engine = Engine::start_with_check(
            Arc::new(model),
            Arc::new(LocalDirStore::new(&adapters)),
            EngineConfig::default(),
            Some(Arc::new(check)),
        );
        tracing::info!(target: "trib::serving", model = %info.name, id = %info.id, adapters = %adapters.display(),
            operator = %billing.operator(), "serving engine started");
        Ok(Some(Arc::new(Serving {
            engine,
            base_name: info.name,
            base_id: info.id,
            chain,
            billing,
            keys,
            receipts_dir: receipts_dir(home),
        })))
    }

    /// Resolves a request's `model`: the base model's name or id, or a
    /// registered adapter of this base by id or name. `None`: unknown.
    pub(crate) fn resolve(&self, model: &str) -> Result<Option<Target>, String> {
        if model == self.base_name || model == self.base_id.to_string() {
            return Ok(Some(Target { adapter: None }));
        }
        let ledger = self.chain.ledger();
        let found = match model.parse::<AdapterId>() {
            Ok(id) => ledger.adapter(&id).map_err(|e| e.to_string())?,
            Err(_) => ledger
                .adapters()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|a| a.name == model && a.base == self.base_id),
        };
        let Some(a) = found.filter(|a| a.base == self.base_id) else {
            return Ok(None);
        };
        let name = AdapterName::parse(&a.id.to_string()).map_err(|e| e.to_string())?;
        Ok(Some(Target {
            adapter: Some((a.id, name)),
        }))
    }

    /// Keeps the prompt and answer of a receipt.
    pub(crate) fn store_answer(&self, a: &StoredAnswer) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.receipts_dir)?;
        let path = answer_path(&self.receipts_dir, &a.receipt);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(a).expect("answer serialises"),
        )?;
        std::fs::rename(tmp, path)
    }
}

/// Where the prompt and answer of `receipt` are kept.
pub(crate) fn answer_path(receipts_dir: &Path, receipt: &ReceiptId) -> PathBuf {
    receipts_dir.join(format!("{receipt}.json"))
}

/// `<home>/receipts`: the prompt and answer of each receipt this node served.
pub(crate) fn receipts_dir(home: &NodeHome) -> PathBuf {
    home.root().join("receipts")
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;

/// Checks a stored prompt and answer against its on-chain receipt: the
/// answer hashes to the stored and the on-chain evidence hash, the receipt
/// is the one stored, its weights and method are what this node submits, and
/// its payout lines sum to its fee. `Err` lists every mismatch.
pub fn verify_stored_answer(
    stored: &StoredAnswer,
    receipt: &trib_ledger::InferenceReceipt,
) -> Result<(), Vec<String>> {
    let mut bad = Vec::new();
    let again = StoredAnswer::hash_of(&stored.prompt, &stored.answer);
    if again != stored.evidence_hash {
        bad.push(format!(
            "the stored answer hashes to {again}, not the stored evidence hash {}",
            stored.evidence_hash
        ));
    }
    if again != receipt.evidence_hash {
        bad.push(format!(
            "the stored answer hashes to {again}, not the receipt's evidence hash {}",
            receipt.evidence_hash
        ));
    }
    if receipt.id != stored.receipt {
        bad.push(format!(
            "receipt id {} != stored {}",
            receipt.id, stored.receipt
        ));
    }
    if receipt.method != crate::api::openai::FALLBACK_METHOD || !receipt.weights.is_empty() {
        bad.push(format!(
            "receipt method {:?} with {} weights is not what this node settles ({:?}, no weights)",
            receipt.method,
            receipt.weights.len(),
            crate::api::openai::FALLBACK_METHOD
        ));
    }
    let sum: u128 = receipt.lines.iter().map(|l| l.amount.0).sum();
    if sum != receipt.fee.0 {
        bad.push(format!(
            "payout lines sum to {sum}, fee is {}",
            receipt.fee.0
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}
