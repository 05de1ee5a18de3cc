//! The [`AnswerAttributor`]: one paid answer's attribution from end to
//! end. At settlement it traces the answer against the datanet versions its
//! adapter was trained on (with the prompt's words masked), adds the
//! gradient share where the adapter has a gradient cache, and says what the
//! receipt carries ([`Attributed`]); at verify it re-runs both over a stored
//! answer and checks them against the receipt.

use std::sync::Arc;

use trib_ledger::{FeeSplit, InferenceReceipt};
use trib_types::{AdapterId, ContributionId, DatanetId, Hash, ReceiptId};

use super::catalog::IndexCatalog;
use super::gradient::{GradientAttributor, StoredGradient};
use super::method::{receipt_method, DATANET_FALLBACK};
use super::params::prompt_words;
use super::verify::{
    check_contributors_part, verify_stored_answer, StoredAnswer, StoredAttribution,
};
use super::view::AnswerTrace;
use crate::trace::TraceParams;

/// Attributes paid answers and re-runs their attribution; one per node.
pub struct AnswerAttributor {
    catalog: Arc<IndexCatalog>,
    gradient: Arc<GradientAttributor>,
    params: TraceParams,
}

/// What attributing one answer gave: the trace (or why there is none), the
/// gradient scores kept for replay, and what the receipt carries.
#[derive(Debug, Clone)]
pub struct Attributed {
    /// The trace with its sealed evidence; `None` when the answer could not
    /// be traced (then the fallback rule pays).
    pub trace: Option<AnswerTrace>,
    /// Why the trace failed.
    pub trace_error: Option<String>,
    /// The per-row gradient scores behind the evidence's gradient part.
    pub gradient: Option<StoredGradient>,
    /// The datanet versions on the receipt: what the trace ran against (the
    /// adapter's training versions, also when the trace failed).
    pub datanets: Vec<(DatanetId, u32)>,
    /// The receipt's weights, parts per billion per contribution (empty:
    /// the ledger's fallback rule).
    pub weights: Vec<(ContributionId, u64)>,
    /// The receipt method ([`super::receipt_method`]).
    pub method: &'static str,
    /// The receipt's evidence hash: the evidence's, or
    /// [`StoredAnswer::hash_of`] the prompt and answer when untraced.
    pub evidence_hash: Hash,
}

impl Attributed {
    /// The record kept for `receipt` (the answer to `prompt` from `model`),
    /// for verify.
    pub fn stored(
        &self,
        receipt: ReceiptId,
        model: &str,
        prompt: &str,
        answer: &str,
    ) -> StoredAnswer {
        StoredAnswer {
            receipt,
            model: model.to_string(),
            prompt: prompt.to_string(),
            answer: answer.to_string(),
            evidence_hash: self.evidence_hash,
            attribution: self.trace.as_ref().map(|t| StoredAttribution {
                datanets: t.versions.clone(),
                params: t.params.clone(),
                evidence: t.evidence.clone(),
                gradient: self.gradient.clone(),
            }),
        }
    }
}

impl AnswerAttributor {
    /// Traces with `catalog` under `params` (paid answers:
    /// [`super::answer_trace_params`]) and adds `gradient`'s share.
    pub fn new(
        catalog: Arc<IndexCatalog>,
        gradient: Arc<GradientAttributor>,
        params: TraceParams,
    ) -> Self {
        AnswerAttributor {
            catalog,
            gradient,
            params,
        }
    }

    /// The index catalog.
    pub fn catalog(&self) -> &Arc<IndexCatalog> {
        &self.catalog
    }

    /// The span tracer's thresholds for every answer.
    pub fn params(&self) -> &TraceParams {
        &self.params
    }

    /// Attributes `answer` to `prompt` (text, or chat messages as JSON)
    /// from `adapter` (`None`: the base model), trained on `versions`. The words the answer repeats
    /// from the prompt are masked: the question's own words must not earn
    /// (docs/attribution.md §5, §8). Never fails: an answer that cannot be
    /// traced settles by the fallback rule, and says why. Blocking.
    pub fn attribute(
        &self,
        versions: &[(DatanetId, u32)],
        adapter: Option<&AdapterId>,
        prompt: &str,
        answer: &str,
    ) -> Attributed {
        let asked = prompt_words(prompt);
        let traced = self
            .catalog
            .trace(versions, Some(&asked), answer, &self.params)
            .map_err(|e| e.to_string());
        // The gradient share, for adapters with a gradient cache (§8).
        let mut gradient = None;
        let traced = traced.map(|mut t| {
            (t.evidence, gradient) = self.gradient.attach(adapter, &asked, answer, t.evidence);
            t
        });
        let (trace, trace_error) = match traced {
            Ok(t) => (Some(t), None),
            Err(e) => {
                tracing::warn!(target: "trib::attribution", error = %e,
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
                DATANET_FALLBACK,
                StoredAnswer::hash_of(prompt, answer),
            ),
        };
        Attributed {
            datanets: match &trace {
                Some(t) => t.versions.clone(),
                None => versions.to_vec(),
            },
            trace,
            trace_error,
            gradient,
            weights,
            method,
            evidence_hash,
        }
    }

    /// Re-runs the attribution of a stored answer (rebuilding the indexes
    /// from the datanet rows when needed, replaying the gradient part) and
    /// checks it, the receipt's weights and evidence hash and its payout
    /// lines ([`verify_stored_answer`], and [`check_contributors_part`]
    /// under `split`, the fee split read now, or why it could not be read).
    /// Blocking.
    pub fn verify(
        &self,
        stored: &StoredAnswer,
        receipt: &InferenceReceipt,
        split: Result<FeeSplit, String>,
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
        let problem = match split {
            Ok(split) => check_contributors_part(receipt, &split),
            Err(e) if !receipt.weights.is_empty() => {
                Some(format!("cannot read the fee split: {e}"))
            }
            Err(_) => None,
        };
        bad.extend(problem);
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad)
        }
    }
}
