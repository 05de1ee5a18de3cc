//! The serving side of a node: the OpenLoRA engine over the configured base
//! model, the adapter store under the home, API keys and billing.
//!
//! The engine starts with the node when `base_model` is set in
//! `config.toml`. Adapters are looked up in `<home>/adapters/<ADAPTER_ID>/`
//! (PEFT files, the directory named by the ledger adapter id in hex); a
//! request's `model` is the base model's name or a registered adapter's id
//! or name. Each answer is attributed by `trib_attribution::answer`
//! (traced against the token indexes of the datanet versions its adapter
//! was trained on, plus the gradient share where the adapter has a
//! gradient cache), settled on the ledger by the operator key (the producer
//! key) with the per-contribution weights, and kept with its attribution
//! evidence in `<home>/receipts/<RECEIPT_ID>.json` for `trib attribution
//! verify`, which re-runs it ([`Serving::verify`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trib_attribution::answer::{
    answer_trace_params, AnswerAttributor, AnswerTrace, GradientAttributor, StoredAnswer,
    GRADIENT_BUDGET,
};
use trib_ledger::InferenceReceipt;
use trib_serve::{
    AdapterName, AdapterStore, Engine, EngineHandle, LocalDirStore, ObjectAdapterStore, ServedModel,
};
use trib_types::{AdapterId, Address, DatanetId, Hash, ModelId, ReceiptId};

use crate::attribution::{model_tokens, node_catalog};
use crate::attribution_gradient::ModelGradients;
use crate::billing::{ApiKeys, Billing, Charge, Settled};
use crate::chain::Chain;
use crate::config::NodeConfig;
use crate::datanets::DatanetService;
use crate::error::NodeError;
use crate::home::NodeHome;

/// What the engine serves and how requests are charged.
pub(crate) struct Serving {
    pub(crate) engine: EngineHandle,
    pub(crate) base_name: String,
    pub(crate) base_id: ModelId,
    pub(crate) chain: Arc<Chain>,
    pub(crate) billing: Arc<Billing>,
    pub(crate) keys: ApiKeys,
    /// The trace and gradient share of every answer, and verify
    /// (`trib_attribution::answer`, over the node's adapters).
    pub(crate) attribution: Arc<AnswerAttributor>,
    receipts_dir: PathBuf,
}

/// A request's `model` resolved: the base alone, or a registered adapter.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) adapter: Option<(AdapterId, AdapterName)>,
}

/// What settling one answer did: the receipt and the trace it paid by.
pub(crate) struct SettledAnswer {
    pub(crate) settled: Settled,
    pub(crate) evidence_hash: Hash,
    pub(crate) method: &'static str,
    /// `None` when the trace failed (then the fallback rule paid).
    pub(crate) trace: Option<AnswerTrace>,
    /// Why the trace failed.
    pub(crate) trace_error: Option<String>,
}

/// One answer to settle.
pub(crate) struct AnswerToSettle<'a> {
    pub(crate) payer: Address,
    pub(crate) target: &'a Target,
    pub(crate) model: &'a str,
    pub(crate) prompt: &'a str,
    pub(crate) answer: &'a str,
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
}

impl Serving {
    /// Starts the engine when the configuration names a base model.
    pub(crate) fn start(
        home: &NodeHome,
        config: &NodeConfig,
        chain: Arc<Chain>,
        datanets: Arc<DatanetService>,
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
        let tokens = model_tokens(model.model().clone()).map_err(|e| bad(e.to_string()))?;
        let catalog = Arc::new(node_catalog(
            home.root().join("indexes"),
            datanets,
            chain.clone(),
            tokens,
        ));
        let gradient = GradientAttributor::new(
            Arc::new(ModelGradients::new(
                home.root().join("adapters"),
                base.clone(),
            )),
            GRADIENT_BUDGET,
        );
        let attribution = Arc::new(AnswerAttributor::new(
            catalog,
            Arc::new(gradient),
            answer_trace_params(),
        ));
        let store = adapter_store(home, &config.serving, std::env::vars()).map_err(bad)?;
        let genesis = home.load_genesis()?;
        let operator = home.load_producer(config, &genesis)?;
        let billing = Arc::new(Billing::new(
            chain.clone(),
            operator,
            genesis.chain_id.clone(),
        ));
        let keys = ApiKeys::open(ApiKeys::path_in(home.root()))
            .map_err(|e| NodeError::Services(e.to_string()))?;
        // The 402 check, reserving each request's largest fee (billing.rs).
        let check = crate::billing::FeeCheck::new(billing.clone());
        let adapters = store.describe();
        let engine = Engine::start_with_check(
            Arc::new(model),
            store,
            config.serving.engine_config(),
            Some(Arc::new(check)),
        );
        tracing::info!(target: "trib::serving", model = %info.name, id = %info.id, %adapters,
            operator = %billing.operator(), "serving engine started");
        Ok(Some(Arc::new(Serving {
            engine,
            base_name: info.name,
            base_id: info.id,
            chain,
            billing,
            keys,
            attribution,
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

    /// The datanet versions a target was trained on (none for the base model).
    pub(crate) fn versions_of(&self, target: &Target) -> Result<Vec<(DatanetId, u32)>, String> {
        match &target.adapter {
            None => Ok(Vec::new()),
            Some((id, _)) => Ok(self
                .chain
                .ledger()
                .adapter(id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("adapter {id} is not registered on the ledger"))?
                .datanets),
        }
    }

    /// Traces an answer, settles it on the ledger with the traced weights
    /// (empty weights, the ledger's fallback, when no span clears the
    /// thresholds) and keeps it with its evidence. Blocking: call it from
    /// `spawn_blocking`. The answer is charged once: a failed trace settles
    /// with the fallback rule instead of failing the request.
    pub(crate) fn settle_answer(&self, a: AnswerToSettle<'_>) -> Result<SettledAnswer, String> {
        let adapter = a.target.adapter.as_ref().map(|(id, _)| *id);
        let attributed = self.attribution.attribute(
            self.versions_of(a.target),
            adapter.as_ref(),
            a.prompt,
            a.answer,
        );
        let settled = self.billing.settle(Charge {
            payer: a.payer,
            adapter,
            base: self.base_id,
            prompt_tokens: a.prompt_tokens,
            completion_tokens: a.completion_tokens,
            weights: attributed.weights.clone(),
            method: attributed.method,
            evidence_hash: attributed.evidence_hash,
            datanets: attributed.datanets.clone(),
        })?;
        if let Some(t) = &attributed.trace {
            tracing::info!(target: "trib::attribution", receipt = %settled.receipt, method = attributed.method,
                spans = t.evidence.spans.len(), contributions = t.evidence.weights.len(),
                trace_us = t.elapsed.as_micros() as u64, "answer attributed");
        }
        let stored = attributed.stored(settled.receipt, a.model, a.prompt, a.answer);
        if let Err(e) = self.store_answer(&stored) {
            tracing::warn!(target: "trib::serving", receipt = %settled.receipt, error = %e, "answer not stored");
        }
        Ok(SettledAnswer {
            settled,
            evidence_hash: attributed.evidence_hash,
            method: attributed.method,
            trace: attributed.trace,
            trace_error: attributed.trace_error,
        })
    }

    /// Re-runs the attribution of a stored answer and checks it against
    /// `receipt` and the fee split read now
    /// ([`AnswerAttributor::verify`]). Blocking.
    pub(crate) fn verify(
        &self,
        stored: &StoredAnswer,
        receipt: &InferenceReceipt,
    ) -> Result<(), Vec<String>> {
        let split = self
            .chain
            .ledger()
            .params()
            .map(|p| p.fee_split)
            .map_err(|e| e.to_string());
        self.attribution.verify(stored, receipt, split)
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

/// The adapter store `[serving] adapter_store` names (an object store URL;
/// its options, as for the datanet content store, from
/// [`crate::config::store_options`]: the `AWS_*` variables in `vars`,
/// lower-cased, then `[serving] adapter_store_options`), or the home's
/// `adapters/` directory.
fn adapter_store(
    home: &NodeHome,
    serving: &crate::config::ServingConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Arc<dyn AdapterStore>, String> {
    let Some(url) = serving.adapter_store.as_deref() else {
        let dir = home.root().join("adapters");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        return Ok(Arc::new(LocalDirStore::new(dir)));
    };
    let options = crate::config::store_options(&serving.adapter_store_options, vars);
    let store = ObjectAdapterStore::from_url(url, options)
        .map_err(|e| format!("[serving] adapter_store: {e}"))?;
    tracing::info!(target: "trib::serving", url, "adapters come from an object store");
    Ok(Arc::new(store))
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
