//! The attribution part of an inference receipt, and its evidence hash.
//!
//! Everything that decides a payout is stored as integers (thresholds in
//! parts per million, credits in micro-units, weights in parts per billion) so
//! that the canonical (borsh) encoding, and hence `evidence_hash`, is the same
//! on every machine that re-runs the trace on the same answer and indexes.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Canonical, ContributionId, Hash, RowHash};

use crate::error::Result;
use crate::index::IndexSet;
use crate::trace::{ContributionWeight, PromptMask, SpanTracer, TokenText, Trace, TraceParams};
use crate::weights::{combine_weights, normalise_weights};

/// An attribution method named in a receipt.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub enum AttributionMethod {
    /// Verbatim span matching against the datanet token index (OLMoTrace procedure).
    TokenSpans,
    /// DataInf closed-form influence over LoRA gradients.
    DataInf,
    /// Gradient dot product.
    TracIn,
    /// Exact damped-Fisher influence.
    ExactInfluence,
}

/// Thresholds recorded in the receipt (integers: ppm = parts per million).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct EvidenceThresholds {
    /// `TraceParams::min_span_tokens`.
    pub min_span_tokens: u32,
    /// `TraceParams::max_span_count`.
    pub max_span_count: u64,
    /// `TraceParams::span_density` × 10⁶.
    pub span_density_ppm: u32,
    /// `TraceParams::rows_per_span`.
    pub rows_per_span: u32,
    /// `TraceParams::near_duplicate_jaccard` × 10⁶.
    pub near_duplicate_jaccard_ppm: u32,
    /// Share of the token method in the combined weights, ppm.
    pub token_share_ppm: u32,
    /// `TraceParams::require_letter` (format 2; always `false` in format 1).
    #[serde(default)]
    pub require_letter: bool,
}

/// One credited row of a span.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct EvidenceRow {
    /// Index within the receipt's `index_versions`.
    pub shard: u32,
    /// Document within that index.
    pub document: u64,
    /// The row holding the span.
    pub row: RowHash,
    /// The contribution credited (the first contributor of identical rows).
    pub credited: ContributionId,
    /// Credit in micro-units.
    pub credit_micros: u64,
}

/// One traced span of the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct EvidenceSpan {
    /// First answer token.
    pub start: u32,
    /// One past the last answer token.
    pub end: u32,
    /// Occurrences in the indexes.
    pub count: u64,
    /// Sum of unigram log-probabilities × 10⁶.
    pub log_prob_micros: i64,
    /// Rows holding it.
    pub rows: Vec<EvidenceRow>,
}

/// Gradient-method results supplied by the caller (the adapter's gradient cache owner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct GradientEvidence {
    /// Which gradient method.
    pub method: AttributionMethod,
    /// The adapter (its PEFT files' hash) whose gradient cache was used.
    pub adapter_version: Hash,
    /// Relative damping constant × 10⁶ (DataInf's 0.1 → 100 000).
    pub damping_ppm: u64,
    /// Per-contribution weights from [`crate::contribution_weights`].
    pub weights: Vec<ContributionWeight>,
}

/// The prompt an answer was traced with: its words were masked in the
/// answer ([`PromptMask`]), so the evidence commits to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct PromptEvidence {
    /// [`PromptMask::hash_prompt`] of the prompt text whose words were masked.
    pub prompt_hash: Hash,
    /// The masked answer tokens, as `[start, end)` ranges in order.
    pub masked: Vec<(u32, u32)>,
}

/// The attribution evidence of one answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct AttributionEvidence {
    /// Layout version: 1 = traced without a prompt and without
    /// `require_letter` (the hash covers the fields of format 1 only, so
    /// evidence sealed before those existed still verifies); 2 = traced with
    /// the prompt's words masked (`prompt` is `Some`) or with
    /// `thresholds.require_letter`, and the hash covers every field.
    pub format_version: u32,
    /// Methods that contributed weights.
    pub methods: Vec<AttributionMethod>,
    /// Content hashes of the token indexes, in set order.
    pub index_versions: Vec<Hash>,
    /// blake3 of the answer's token ids (u32 LE).
    pub answer_hash: Hash,
    /// Thresholds used.
    pub thresholds: EvidenceThresholds,
    /// Traced spans.
    pub spans: Vec<EvidenceSpan>,
    /// Token-method weights (ppb).
    pub token_weights: Vec<ContributionWeight>,
    /// Gradient-method inputs, when the adapter has a gradient cache.
    pub gradient: Option<GradientEvidence>,
    /// Final weights per contribution (ppb), sorted by contribution.
    pub weights: Vec<ContributionWeight>,
    /// True when nothing cleared the thresholds: the contributors' share
    /// goes to the datanets pro rata by rows.
    pub fallback_to_datanets: bool,
    /// The prompt whose words were masked before tracing (format 2); `None`
    /// when the answer was traced on its own (format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptEvidence>,
    /// blake3 (domain `attribution evidence`) of the canonical encoding of
    /// this struct with this field set to zero.
    pub evidence_hash: Hash,
}

impl Canonical for AttributionEvidence {
    const NAME: &'static str = "attribution evidence";
}

fn ppm(x: f64) -> u32 {
    (x * 1e6).round() as u32
}

impl AttributionEvidence {
    /// Assembles evidence from a trace and optional gradient results, and seals it.
    pub fn new(
        answer: &[u32],
        trace: &Trace,
        params: &TraceParams,
        index_versions: Vec<Hash>,
        gradient: Option<GradientEvidence>,
        token_share_ppm: u32,
    ) -> Result<Self> {
        Self::seal(
            answer,
            trace,
            params,
            index_versions,
            gradient,
            token_share_ppm,
            None,
        )
    }

    /// [`AttributionEvidence::new`] for a trace made with `mask`
    /// ([`SpanTracer::trace_masked`]): the evidence (format 2) records the
    /// prompt's hash and the masked tokens, and its hash covers both.
    pub fn new_masked(
        answer: &[u32],
        trace: &Trace,
        params: &TraceParams,
        index_versions: Vec<Hash>,
        gradient: Option<GradientEvidence>,
        token_share_ppm: u32,
        mask: &PromptMask,
    ) -> Result<Self> {
        Self::seal(
            answer,
            trace,
            params,
            index_versions,
            gradient,
            token_share_ppm,
            Some(mask),
        )
    }

    fn seal(
        answer: &[u32],
        trace: &Trace,
        params: &TraceParams,
        index_versions: Vec<Hash>,
        gradient: Option<GradientEvidence>,
        token_share_ppm: u32,
        mask: Option<&PromptMask>,
    ) -> Result<Self> {
        let token_weights = normalise_weights(&trace.weights);
        let grad_weights = gradient
            .as_ref()
            .map(|g| g.weights.clone())
            .unwrap_or_default();
        let weights = combine_weights(&token_weights, &grad_weights, token_share_ppm)?;
        let mut methods = Vec::new();
        if !token_weights.is_empty() {
            methods.push(AttributionMethod::TokenSpans);
        }
        if let Some(g) = &gradient {
            if !g.weights.is_empty() {
                methods.push(g.method);
            }
        }
        let mut answer_bytes = Vec::with_capacity(answer.len() * 4);
        for t in answer {
            answer_bytes.extend_from_slice(&t.to_le_bytes());
        }
        let spans = trace
            .spans
            .iter()
            .map(|s| EvidenceSpan {
                start: s.start as u32,
                end: s.end as u32,
                count: s.count,
                log_prob_micros: s.log_prob_micros,
                rows: s
                    .rows
                    .iter()
                    .map(|r| EvidenceRow {
                        shard: r.occurrence.shard,
                        document: r.occurrence.document,
                        row: r.provenance.row,
                        credited: r.credited.contribution,
                        credit_micros: r.credit_micros,
                    })
                    .collect(),
            })
            .collect();
        let prompt = mask.map(|m| PromptEvidence {
            prompt_hash: m.prompt_hash(),
            masked: m
                .ranges()
                .into_iter()
                .map(|(a, b)| (a as u32, b as u32))
                .collect(),
        });
        let mut ev = AttributionEvidence {
            format_version: if prompt.is_some() || params.require_letter {
                2
            } else {
                1
            },
            methods,
            index_versions,
            answer_hash: Hash::domain("answer tokens", &[&answer_bytes]),
            thresholds: EvidenceThresholds {
                min_span_tokens: params.min_span_tokens as u32,
                max_span_count: params.max_span_count,
                span_density_ppm: ppm(params.span_density),
                rows_per_span: params.rows_per_span as u32,
                near_duplicate_jaccard_ppm: ppm(params.near_duplicate_jaccard),
                token_share_ppm,
                require_letter: params.require_letter,
            },
            spans,
            token_weights,
            fallback_to_datanets: weights.is_empty(),
            weights,
            gradient,
            prompt,
            evidence_hash: Hash::ZERO,
        };
        ev.evidence_hash = ev.compute_hash();
        Ok(ev)
    }

    /// The hash this evidence should carry. Format 1 without a prompt is
    /// hashed over the format-1 field list (what evidence sealed before the
    /// `prompt` field existed was hashed over); anything else over every field.
    pub fn compute_hash(&self) -> Hash {
        if self.format_version == 1 && self.prompt.is_none() && !self.thresholds.require_letter {
            let t = &self.thresholds;
            let thresholds_v1 = (
                t.min_span_tokens,
                t.max_span_count,
                t.span_density_ppm,
                t.rows_per_span,
                t.near_duplicate_jaccard_ppm,
                t.token_share_ppm,
            );
            let v1 = (
                &self.format_version,
                &self.methods,
                &self.index_versions,
                &self.answer_hash,
                &thresholds_v1,
                &self.spans,
                &self.token_weights,
                &self.gradient,
                &self.weights,
                &self.fallback_to_datanets,
                &Hash::ZERO,
            );
            let bytes = borsh::to_vec(&v1).expect("borsh encoding into a Vec cannot fail");
            return Hash::domain(<Self as Canonical>::NAME, &[&bytes]);
        }
        let mut body = self.clone();
        body.evidence_hash = Hash::ZERO;
        body.canonical_hash()
    }

    /// Whether `evidence_hash` matches the content.
    pub fn hash_is_valid(&self) -> bool {
        self.compute_hash() == self.evidence_hash
    }
}

/// Traces `answer` and seals the evidence in one call: what a serving node
/// runs per paid answer and what `trib attribution verify` re-runs.
pub fn attribute_answer(
    index: &IndexSet,
    text: &dyn TokenText,
    answer: &[u32],
    params: &TraceParams,
    gradient: Option<GradientEvidence>,
    token_share_ppm: u32,
) -> Result<AttributionEvidence> {
    let trace = SpanTracer::new(index, text, params.clone())?.trace(answer)?;
    AttributionEvidence::new(
        answer,
        &trace,
        params,
        index.versions(),
        gradient,
        token_share_ppm,
    )
}

/// [`attribute_answer`] with the words `answer` repeats from `prompt`
/// masked ([`PromptMask`], [`SpanTracer::trace_masked`]); the evidence
/// (format 2) commits to the prompt. `decode` is the tokenizer's decoder.
#[allow(clippy::too_many_arguments)]
pub fn attribute_masked_answer<E: std::fmt::Display>(
    index: &IndexSet,
    text: &dyn TokenText,
    decode: impl FnMut(&[u32]) -> std::result::Result<String, E>,
    prompt: &str,
    answer: &[u32],
    params: &TraceParams,
    gradient: Option<GradientEvidence>,
    token_share_ppm: u32,
) -> Result<AttributionEvidence> {
    let mask = PromptMask::new(prompt, answer, text, decode).map_err(|e| {
        crate::error::AttributionError::InvalidParameter {
            name: "decode",
            reason: format!("the tokenizer could not decode an answer word: {e}"),
        }
    })?;
    let trace = SpanTracer::new(index, text, params.clone())?.trace_masked(answer, &mask)?;
    AttributionEvidence::new_masked(
        answer,
        &trace,
        params,
        index.versions(),
        gradient,
        token_share_ppm,
        &mask,
    )
}

/// Re-runs [`attribute_answer`] and reports whether it reproduces `evidence`
/// exactly (same spans, weights and hash).
pub fn verify_evidence(
    evidence: &AttributionEvidence,
    index: &IndexSet,
    text: &dyn TokenText,
    answer: &[u32],
    params: &TraceParams,
) -> Result<bool> {
    let again = attribute_answer(
        index,
        text,
        answer,
        params,
        evidence.gradient.clone(),
        evidence.thresholds.token_share_ppm,
    )?;
    Ok(again == *evidence && evidence.hash_is_valid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trib_types::Address;

    /// The field list of format-1 evidence as session 3 sealed it (before
    /// `prompt` existed), hashed the way it was then: receipts settled then
    /// must keep verifying.
    #[derive(BorshSerialize)]
    struct FormatOne {
        format_version: u32,
        methods: Vec<AttributionMethod>,
        index_versions: Vec<Hash>,
        answer_hash: Hash,
        thresholds: ThresholdsOne,
        spans: Vec<EvidenceSpan>,
        token_weights: Vec<ContributionWeight>,
        gradient: Option<GradientEvidence>,
        weights: Vec<ContributionWeight>,
        fallback_to_datanets: bool,
        evidence_hash: Hash,
    }

    /// `EvidenceThresholds` of format 1 (before `require_letter`).
    #[derive(BorshSerialize)]
    struct ThresholdsOne {
        min_span_tokens: u32,
        max_span_count: u64,
        span_density_ppm: u32,
        rows_per_span: u32,
        near_duplicate_jaccard_ppm: u32,
        token_share_ppm: u32,
    }

    #[test]
    fn format_1_evidence_hashes_as_it_did_before_the_prompt_field() {
        let w = ContributionWeight {
            contribution: ContributionId(Hash::of(b"c")),
            contributor: Address([3; 20]),
            weight: 1_000_000_000,
        };
        let ev = AttributionEvidence {
            format_version: 1,
            methods: vec![AttributionMethod::TokenSpans],
            index_versions: vec![Hash::of(b"index")],
            answer_hash: Hash::of(b"answer"),
            thresholds: EvidenceThresholds {
                min_span_tokens: 4,
                max_span_count: 16,
                span_density_ppm: 50_000,
                rows_per_span: 16,
                near_duplicate_jaccard_ppm: 800_000,
                token_share_ppm: 700_000,
                require_letter: false,
            },
            spans: vec![EvidenceSpan {
                start: 1,
                end: 5,
                count: 1,
                log_prob_micros: -9_000_000,
                rows: vec![EvidenceRow {
                    shard: 0,
                    document: 2,
                    row: RowHash(Hash::of(b"row")),
                    credited: w.contribution,
                    credit_micros: 9_000_000,
                }],
            }],
            token_weights: vec![w],
            gradient: None,
            weights: vec![w],
            fallback_to_datanets: false,
            prompt: None,
            evidence_hash: Hash::ZERO,
        };
        let then = FormatOne {
            format_version: 1,
            methods: ev.methods.clone(),
            index_versions: ev.index_versions.clone(),
            answer_hash: ev.answer_hash,
            thresholds: ThresholdsOne {
                min_span_tokens: 4,
                max_span_count: 16,
                span_density_ppm: 50_000,
                rows_per_span: 16,
                near_duplicate_jaccard_ppm: 800_000,
                token_share_ppm: 700_000,
            },
            spans: ev.spans.clone(),
            token_weights: ev.token_weights.clone(),
            gradient: None,
            weights: ev.weights.clone(),
            fallback_to_datanets: false,
            evidence_hash: Hash::ZERO,
        };
        let want = Hash::domain("attribution evidence", &[&borsh::to_vec(&then).unwrap()]);
        assert_eq!(ev.compute_hash(), want);
        // A format-2 body (with a prompt) is hashed over every field.
        let mut two = ev.clone();
        two.format_version = 2;
        two.prompt = Some(PromptEvidence {
            prompt_hash: Hash::of(b"prompt"),
            masked: vec![(0, 1)],
        });
        assert_ne!(two.compute_hash(), want);
        // So is one traced with `require_letter`, and claiming format 1 for
        // it does not re-seal it under the old layout.
        let mut letters = ev.clone();
        letters.thresholds.require_letter = true;
        assert_ne!(letters.compute_hash(), want);
        assert_ne!(letters.compute_hash(), ev.compute_hash());
        // Old stored JSON (no `prompt` key) still reads.
        let mut old = serde_json::to_value(&ev).unwrap();
        assert!(old.get("prompt").is_none());
        old["evidence_hash"] = serde_json::to_value(want).unwrap();
        let read: AttributionEvidence = serde_json::from_value(old).unwrap();
        assert!(read.hash_is_valid());
    }
}
