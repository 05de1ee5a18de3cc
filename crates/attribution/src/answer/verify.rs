//! What a paid answer keeps for audit ([`StoredAnswer`]: prompt, answer
//! and the sealed attribution evidence) and the checks of a stored answer
//! against its on-chain receipt ([`verify_stored_answer`]) and of the
//! receipt's contributor lines against the fee split
//! ([`check_contributors_part`]). The re-run itself is
//! [`super::AnswerAttributor::verify`].

use serde::{Deserialize, Serialize};
use trib_ledger::{FeeSplit, InferenceReceipt, PayoutRole};
use trib_types::{split_by_weight, Address, Amount, ContributionId, DatanetId, Hash, ReceiptId};

use super::gradient::StoredGradient;
use super::method::{receipt_method, DATANET_FALLBACK};
use crate::evidence::AttributionEvidence;
use crate::trace::TraceParams;

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

impl StoredAnswer {
    /// The evidence hash of a prompt and answer.
    pub fn hash_of(prompt: &str, answer: &str) -> Hash {
        Hash::domain(
            "tributary answer evidence v1",
            &[prompt.as_bytes(), answer.as_bytes()],
        )
    }
}

/// Checks a stored answer against its on-chain receipt and against a fresh
/// re-run of its token attribution (`retraced`, from
/// [`super::AnswerAttributor::verify`]).
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
            if receipt.method != DATANET_FALLBACK || !receipt.weights.is_empty() {
                bad.push(format!(
                    "an untraced answer must settle by {DATANET_FALLBACK:?} with no weights; the receipt says {:?} with {} weights",
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

/// The contributor lines of a weighted receipt must add up to the
/// contributors' part of the fee under `split`, the governed fee split
/// (read now: a split changed by governance after the receipt reads as a
/// mismatch, which the message says).
pub fn check_contributors_part(receipt: &InferenceReceipt, split: &FeeSplit) -> Option<String> {
    if receipt.weights.is_empty() {
        return None;
    }
    // The ledger's own split of a fee (the settlement plan pays by it).
    let part = split.parts(receipt.fee)?.contributors;
    let paid: u128 = receipt
        .lines
        .iter()
        .filter(|l| matches!(l.role, PayoutRole::Contributor { .. }))
        .map(|l| l.amount.0)
        .sum();
    (paid != part.0).then(|| {
        format!(
            "the contributor lines pay {} OPEN, but the contributors' part of the fee {} OPEN is {} OPEN under the current fee split ({} bps)",
            Amount(paid).to_open_string(),
            receipt.fee.to_open_string(),
            part.to_open_string(),
            split.contributors_bps
        )
    })
}
