//! The serving side of a node: the OpenLoRA engine over the configured base
//! model, the adapter store under the home, API keys and billing.
//!
//! The engine starts with the node when `base_model` is set in
//! `config.toml`. Adapters are looked up in `<home>/adapters/<ADAPTER_ID>/`
//! (PEFT files, the directory named by the ledger adapter id in hex); a
//! request's `model` is the base model's name or a registered adapter's id
//! or name. Each answer is traced against the token indexes of the datanet
//! versions its adapter was trained on ([`crate::attribution`]), settled on
//! the ledger by the operator key (the producer key) with the traced
//! per-contribution weights, and kept with its attribution evidence in
//! `<home>/receipts/<RECEIPT_ID>.json` for `trib attribution verify`, which
//! re-runs the trace ([`Serving::verify`], [`verify_stored_answer`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trib_attribution::{AttributionEvidence, TraceParams};
use trib_ledger::{InferenceReceipt, PayoutRole};
use trib_serve::{
    AdapterName, AdapterStore, Engine, EngineHandle, LocalDirStore, ObjectAdapterStore, ServedModel,
};
use trib_types::{
    split_by_bps, split_by_weight, AdapterId, Address, Amount, ContributionId, DatanetId, Hash,
    ModelId, ReceiptId,
};

use crate::attribution::{
    answer_trace_params, prompt_words, AnswerTrace, IndexCatalog, Tokens, FALLBACK_METHOD,
};
use crate::attribution_gradient::{receipt_method, GradientAttributor, StoredGradient};
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
    pub(crate) catalog: Arc<IndexCatalog>,
    /// The span tracer's thresholds for every answer
    /// ([`answer_trace_params`]: 2-token minimum after prompt masking).
    pub(crate) trace_params: TraceParams,
    /// The gradient share of adapters with a factory gradient cache
    /// ([`crate::attribution_gradient`]).
    pub(crate) gradient: Arc<GradientAttributor>,
    receipts_dir: PathBuf,
}

/// A request's `model` resolved: the base alone, or a registered adapter.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) adapter: Option<(AdapterId, AdapterName)>,
}

/// The prompt and answer of one settled request, kept in the home so the
/// attribution can be re-run (`trib attribution verify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// The receipt.
    pub receipt: ReceiptId,
    /// The `model` asked for.
    pub model: String,
    /// The prompt as sent (text, or the chat messages as JSON).
    pub prompt: String,
    /// The generated answer.
    pub answer: String,
    /// The receipt's evidence hash: the attribution evidence's hash, or
    /// (when the answer could not be traced) [`StoredAnswer::hash_of`] the
    /// prompt and answer.
    pub evidence_hash: Hash,
    /// The token attribution the answer was settled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<StoredAttribution>,
}

/// What is needed to re-run an answer's token attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAttribution {
    /// The datanet versions traced against (the adapter's training data).
    pub datanets: Vec<(DatanetId, u32)>,
    /// The tracer's thresholds.
    pub params: TraceParams,
    /// The sealed evidence (spans, rows, weights, evidence hash).
    pub evidence: AttributionEvidence,
    /// The per-row gradient scores behind the evidence's gradient part
    /// (adapters with a gradient cache), for replay within tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient: Option<StoredGradient>,
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
        let tokens = Tokens::new(model.model().clone()).map_err(|e| bad(e.to_string()))?;
        let catalog = Arc::new(IndexCatalog::new(
            home.root().join("indexes"),
            datanets,
            chain.clone(),
            Arc::new(tokens),
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
            catalog,
            trace_params: answer_trace_params(),
            gradient: Arc::new(GradientAttributor::new(
                home.root().join("adapters"),
                base.clone(),
                crate::attribution_gradient::GRADIENT_BUDGET,
            )),
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
        // The words the answer repeats from the prompt are masked: the
        // question's own words must not earn (docs/attribution.md §5, §8).
        let asked = prompt_words(a.prompt);
        let versions = self.versions_of(a.target);
        let traced = versions.clone().and_then(|v| {
            self.catalog
                .trace(&v, Some(&asked), a.answer, &self.trace_params)
                .map_err(|e| e.to_string())
        });
        // The gradient share, for adapters with a gradient cache (§8).
        let mut gradient = None;
        let traced = traced.map(|mut t| {
            let adapter = a.target.adapter.as_ref().map(|(id, _)| id);
            (t.evidence, gradient) = self.gradient.attach(adapter, &asked, a.answer, t.evidence);
            t
        });
        let (trace, trace_error) = match traced {
            Ok(t) => (Some(t), None),
            Err(e) => {
                tracing::warn!(target: "trib::attribution", model = a.model, error = %e,
                    "answer not traced; settling with the fallback rule");
                (None, Some(e))
            }
        };
        let (weights, method, evidence_hash) = match &trace {
            Some(t) => (
                t.ledger_weights(),
                receipt_method(&t.evidence),
                t.evidence.evidence_hash,
            ),
            None => (
                Vec::new(),
                FALLBACK_METHOD,
                StoredAnswer::hash_of(a.prompt, a.answer),
            ),
        };
        let settled = self.billing.settle(Charge {
            payer: a.payer,
            adapter: a.target.adapter.as_ref().map(|(id, _)| *id),
            base: self.base_id,
            prompt_tokens: a.prompt_tokens,
            completion_tokens: a.completion_tokens,
            weights,
            method,
            evidence_hash,
            // The versions on the receipt: what the trace ran against (the
            // adapter's training versions, also when the trace failed).
            datanets: match &trace {
                Some(t) => t.versions.clone(),
                None => versions.unwrap_or_default(),
            },
        })?;
        if let Some(t) = &trace {
            tracing::info!(target: "trib::attribution", receipt = %settled.receipt, method,
                spans = t.evidence.spans.len(), contributions = t.evidence.weights.len(),
                trace_us = t.elapsed.as_micros() as u64, "answer attributed");
        }
        let stored = StoredAnswer {
            receipt: settled.receipt,
            model: a.model.to_string(),
            prompt: a.prompt.to_string(),
            answer: a.answer.to_string(),
            evidence_hash,
            attribution: trace.as_ref().map(|t| StoredAttribution {
                datanets: t.versions.clone(),
                params: t.params.clone(),
                evidence: t.evidence.clone(),
                gradient: gradient.clone(),
            }),
        };
        if let Err(e) = self.store_answer(&stored) {
            tracing::warn!(target: "trib::serving", receipt = %settled.receipt, error = %e, "answer not stored");
        }
        Ok(SettledAnswer {
            settled,
            evidence_hash,
            method,
            trace,
            trace_error,
        })
    }

    /// Re-runs the token attribution of a stored answer (rebuilding the
    /// indexes from the datanet rows when needed) and checks it, the
    /// receipt's weights and evidence hash and its payout lines
    /// ([`verify_stored_answer`]). Blocking.
    pub(crate) fn verify(
        &self,
        stored: &StoredAnswer,
        receipt: &InferenceReceipt,
    ) -> Result<(), Vec<String>> {
        let retraced = match &stored.attribution {
            None => None,
            Some(a) => match self.catalog.trace(
                &a.datanets,
                // Evidence sealed with a prompt (format 2) is re-run with the
                // stored prompt's words masked; an edited prompt then shows
                // as another prompt hash.
                a.evidence
                    .prompt
                    .is_some()
                    .then(|| prompt_words(&stored.prompt))
                    .as_deref(),
                &stored.answer,
                &a.params,
            ) {
                Ok(t) => match self.gradient.replay(
                    receipt.adapter.as_ref(),
                    &prompt_words(&stored.prompt),
                    &stored.answer,
                    &a.evidence,
                    a.gradient.as_ref(),
                    t.evidence,
                ) {
                    Ok(evidence) => Some(evidence),
                    Err(mut problems) => {
                        let mut bad = verify_stored_answer(stored, receipt, None)
                            .err()
                            .unwrap_or_default();
                        bad.append(&mut problems);
                        return Err(bad);
                    }
                },
                Err(e) => {
                    let mut bad = verify_stored_answer(stored, receipt, None)
                        .err()
                        .unwrap_or_default();
                    bad.push(format!("the answer could not be re-traced: {e}"));
                    return Err(bad);
                }
            },
        };
        let mut bad = verify_stored_answer(stored, receipt, retraced.as_ref())
            .err()
            .unwrap_or_default();
        if let Some(problem) = self.check_contributors_part(receipt) {
            bad.push(problem);
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad)
        }
    }

    /// The contributor lines of a weighted receipt must add up to the
    /// contributors' part of the fee under the governed fee split (read
    /// now: a split changed by governance after the receipt reads as a
    /// mismatch, which the message says).
    fn check_contributors_part(&self, receipt: &InferenceReceipt) -> Option<String> {
        if receipt.weights.is_empty() {
            return None;
        }
        let split = match self.chain.ledger().params() {
            Ok(p) => p.fee_split,
            Err(e) => return Some(format!("cannot read the fee split: {e}")),
        };
        let parts = split_by_bps(
            receipt.fee,
            &[
                split.contributors_bps,
                split.adapter_owner_bps,
                split.base_model_owner_bps,
                split.stakers_bps,
                split.treasury_bps,
            ],
        )
        .ok()?;
        let paid: u128 = receipt
            .lines
            .iter()
            .filter(|l| matches!(l.role, PayoutRole::Contributor { .. }))
            .map(|l| l.amount.0)
            .sum();
        (paid != parts[0].0).then(|| {
            format!(
                "the contributor lines pay {} OPEN, but the contributors' part of the fee {} OPEN is {} OPEN under the current fee split ({} bps)",
                Amount(paid).to_open_string(),
                receipt.fee.to_open_string(),
                parts[0].to_open_string(),
                split.contributors_bps
            )
        })
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

/// The adapter store `[serving] adapter_store` names (an object store URL,
/// its options from the `AWS_*` variables in `vars`, lower-cased), or the
/// home's `adapters/` directory.
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
    let options: Vec<(String, String)> = vars
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
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

/// Checks a stored answer against its on-chain receipt and against a fresh
/// re-run of its token attribution (`retraced`, from [`Serving::verify`]).
///
/// Checked: the receipt is the one stored; its payout lines sum to its fee;
/// the stored evidence is sealed (its hash matches its content) and is what
/// the receipt's evidence hash names; the receipt's method, weights and
/// fallback flag are the evidence's; the re-run over the stored answer text
/// reproduces the evidence exactly (a different answer hash means the
/// stored answer was edited); and each contributor payout line is the
/// largest-remainder split of the contributors' part by those weights, paid
/// to the contribution's contributor. An answer settled without a trace
/// (`attribution: None`) must carry the fallback method, no weights and the
/// prompt-and-answer hash. `Err` lists every mismatch, each naming what
/// differs.
pub fn verify_stored_answer(
    stored: &StoredAnswer,
    receipt: &InferenceReceipt,
    retraced: Option<&AttributionEvidence>,
) -> Result<(), Vec<String>> {
    let mut bad = Vec::new();
    if receipt.id != stored.receipt {
        bad.push(format!(
            "receipt id {} != stored {}",
            receipt.id, stored.receipt
        ));
    }
    let sum: u128 = receipt.lines.iter().map(|l| l.amount.0).sum();
    if sum != receipt.fee.0 {
        bad.push(format!(
            "payout lines sum to {sum}, fee is {}",
            receipt.fee.0
        ));
    }
    if stored.evidence_hash != receipt.evidence_hash {
        bad.push(format!(
            "the stored evidence hash {} is not the receipt's {}",
            stored.evidence_hash, receipt.evidence_hash
        ));
    }
    match &stored.attribution {
        None => {
            let again = StoredAnswer::hash_of(&stored.prompt, &stored.answer);
            if again != receipt.evidence_hash {
                bad.push(format!(
                    "the stored prompt and answer hash to {again}, not the receipt's evidence hash {} (answer edited)",
                    receipt.evidence_hash
                ));
            }
            if receipt.method != FALLBACK_METHOD || !receipt.weights.is_empty() {
                bad.push(format!(
                    "an untraced answer must settle by {FALLBACK_METHOD:?} with no weights; the receipt says {:?} with {} weights",
                    receipt.method,
                    receipt.weights.len()
                ));
            }
        }
        Some(a) => check_attribution(a, receipt, retraced, &mut bad),
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// `DATANET@VERSION, …` (or `none`).
fn versions_list(v: &[(DatanetId, u32)]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|(d, n)| format!("{d}@{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_attribution(
    a: &StoredAttribution,
    receipt: &InferenceReceipt,
    retraced: Option<&AttributionEvidence>,
    bad: &mut Vec<String>,
) {
    let ev = &a.evidence;
    if receipt.datanets != a.datanets {
        bad.push(format!(
            "the receipt names datanet versions {}, the stored answer was traced against {}",
            versions_list(&receipt.datanets),
            versions_list(&a.datanets)
        ));
    }
    if !ev.hash_is_valid() {
        bad.push(format!(
            "the stored evidence was edited: its content hashes to {}, it claims {}",
            ev.compute_hash(),
            ev.evidence_hash
        ));
    }
    if ev.evidence_hash != receipt.evidence_hash {
        bad.push(format!(
            "the stored evidence hash {} is not the receipt's evidence hash {}",
            ev.evidence_hash, receipt.evidence_hash
        ));
    }
    // Spans, DataInf or both (the gradient part counts, §8).
    let method = receipt_method(ev);
    if receipt.method != method {
        bad.push(format!(
            "the receipt's method is {:?}, the evidence gives {method:?}",
            receipt.method
        ));
    }
    let weights: Vec<(ContributionId, u64)> = ev
        .weights
        .iter()
        .map(|w| (w.contribution, w.weight))
        .collect();
    if receipt.weights != weights {
        bad.push(format!(
            "the receipt's weights {:?} are not the evidence's {:?}",
            receipt.weights, weights
        ));
    }
    if receipt.fallback != weights.is_empty() {
        bad.push(format!(
            "the receipt says fallback = {}, the evidence has {} weights",
            receipt.fallback,
            weights.len()
        ));
    }
    match retraced {
        None => bad.push("the answer's attribution was not re-run".into()),
        Some(again) if again.answer_hash != ev.answer_hash => bad.push(format!(
            "the stored answer text was edited: it tokenizes to answer hash {}, the answer behind the receipt's evidence hash had {}",
            again.answer_hash.short(),
            ev.answer_hash.short()
        )),
        Some(again)
            if again.prompt.as_ref().map(|p| p.prompt_hash)
                != ev.prompt.as_ref().map(|p| p.prompt_hash) =>
        {
            bad.push(format!(
                "the stored prompt was edited: its words hash to prompt hash {}, the evidence behind the receipt committed to {}",
                again.prompt.as_ref().map_or("none".into(), |p| p.prompt_hash.short()),
                ev.prompt.as_ref().map_or("none".into(), |p| p.prompt_hash.short())
            ))
        }
        Some(again) if again != ev => {
            if again.index_versions != ev.index_versions {
                bad.push(format!(
                    "the indexes rebuilt now have content hashes {:?}, the evidence used {:?}",
                    again.index_versions, ev.index_versions
                ));
            }
            if again.spans != ev.spans {
                bad.push(format!(
                    "re-tracing finds {} spans, the evidence has {} (or they differ)",
                    again.spans.len(),
                    ev.spans.len()
                ));
            }
            if again.weights != ev.weights {
                bad.push("re-tracing gives other weights than the evidence".into());
            }
            if again.index_versions == ev.index_versions
                && again.spans == ev.spans
                && again.weights == ev.weights
            {
                bad.push("re-tracing does not reproduce the evidence exactly".into());
            }
        }
        Some(_) => {}
    }
    // Contributor lines: the split of their total by the evidence's weights.
    if !ev.weights.is_empty() {
        let paid: Vec<(ContributionId, Address, Amount)> = receipt
            .lines
            .iter()
            .filter_map(|l| match l.role {
                PayoutRole::Contributor { contribution } => {
                    Some((contribution, l.recipient, l.amount))
                }
                _ => None,
            })
            .collect();
        let total = Amount(paid.iter().map(|p| p.2 .0).sum());
        let w: Vec<u128> = ev.weights.iter().map(|w| u128::from(w.weight)).collect();
        match split_by_weight(total, &w) {
            Err(e) => bad.push(format!(
                "the contributors' part cannot be split by the weights: {e}"
            )),
            Ok(amounts) => {
                let expected: Vec<(ContributionId, Address, Amount)> = ev
                    .weights
                    .iter()
                    .zip(amounts)
                    .filter(|(_, amt)| !amt.is_zero())
                    .map(|(w, amt)| (w.contribution, w.contributor, amt))
                    .collect();
                for e in &expected {
                    if !paid.contains(e) {
                        bad.push(format!(
                            "no payout line pays {} OPEN to {} for contribution {}, as the weights require",
                            e.2.to_open_string(),
                            e.1,
                            e.0
                        ));
                    }
                }
                for p in &paid {
                    if !expected.contains(p) {
                        bad.push(format!(
                            "the payout line of {} OPEN to {} for contribution {} is not what the weights give",
                            p.2.to_open_string(),
                            p.1,
                            p.0
                        ));
                    }
                }
            }
        }
    }
}
