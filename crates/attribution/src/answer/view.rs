//! What a traced answer shows: the [`AnswerTrace`] (the sealed evidence,
//! the versions and thresholds it was traced with) and the spans and rows
//! for display, with the compact `attribution` field of a response.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use trib_types::{Address, ContributionId, DatanetId, RowHash};

use super::method::{DATANET_FALLBACK, TOKEN_SPANS};
use crate::evidence::AttributionEvidence;
use crate::trace::TraceParams;

/// One row holding a traced span, for display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRowView {
    /// The row holding the span.
    pub row_hash: RowHash,
    /// The contribution the row came from.
    pub contribution: ContributionId,
    /// Who contributed it.
    pub contributor: Address,
    /// The contribution credited for this row (the first of identical rows).
    pub credited_contribution: ContributionId,
    /// Who is credited for this row (the first contributor of identical rows).
    pub credited_contributor: Address,
    /// The row's credit for this span, in micro-units.
    pub credit_micros: u64,
    /// BM25 relevance of the row to the prompt and answer (display order:
    /// the most relevant rows of a span are shown first).
    pub bm25: f64,
    /// The span with some row context, decoded; `None` for rows of a
    /// permissioned datanet (traces are shown to any caller).
    pub snippet: Option<String>,
}

/// One traced span, for display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanView {
    /// The span's text, decoded from the answer's tokens.
    pub text: String,
    /// First answer token of the span.
    pub start: usize,
    /// One past its last answer token.
    pub end: usize,
    /// How often the span occurs in the indexes.
    pub count: u64,
    /// Sum of its unigram log-probabilities × 10⁶ (more negative: rarer).
    pub log_prob_micros: i64,
    /// Rows holding the span (before the cut to the rows shown).
    pub rows_total: usize,
    /// The rows shown, most relevant first.
    pub rows: Vec<SpanRowView>,
}

/// The trace of one answer: the sealed evidence and what to show.
#[derive(Debug, Clone)]
pub struct AnswerTrace {
    /// The datanet versions traced against.
    pub versions: Vec<(DatanetId, u32)>,
    /// The thresholds.
    pub params: TraceParams,
    /// Answer length in tokens.
    pub tokens: usize,
    /// The runs of answer words masked because the prompt holds them,
    /// decoded; `None` when traced without a prompt.
    pub masked_words: Option<Vec<String>>,
    /// The evidence (its hash goes into the receipt).
    pub evidence: AttributionEvidence,
    /// Kept spans, rarest first.
    pub spans: Vec<SpanView>,
    /// How long the trace took (index opening included).
    pub elapsed: Duration,
}

impl AnswerTrace {
    /// The receipt method of the token evidence alone
    /// ([`super::receipt_method`] counts a gradient part too).
    pub fn method(&self) -> &'static str {
        if self.evidence.weights.is_empty() {
            DATANET_FALLBACK
        } else {
            TOKEN_SPANS
        }
    }

    /// The ledger weights: parts per billion per contribution.
    pub fn ledger_weights(&self) -> Vec<(ContributionId, u64)> {
        self.evidence
            .weights
            .iter()
            .map(|w| (w.contribution, w.weight))
            .collect()
    }

    /// The compact `attribution` field of a response: method, the `top`
    /// rarest spans with up to three rows each, and the weights.
    pub fn view(&self, top: usize) -> serde_json::Value {
        let reason = if !self.evidence.weights.is_empty() {
            None
        } else if self.versions.is_empty() {
            Some("the model has no datanet version to trace against: the ledger's fallback rule applies")
        } else {
            Some("no span of the answer cleared the thresholds: the contributors' share goes to the adapter's datanets pro rata by rows")
        };
        serde_json::json!({
            "method": self.method(),
            "fallback": self.evidence.weights.is_empty(),
            "reason": reason,
            "datanets": self.versions.iter().map(|(d, v)| format!("{d}@{v}")).collect::<Vec<_>>(),
            "index_versions": self.evidence.index_versions,
            "answer_tokens": self.tokens,
            "prompt_masked": self.masked_words.is_some(),
            "masked_tokens": self.evidence.prompt.as_ref().map_or(0, |p| p.masked.iter().map(|(a, b)| b - a).sum::<u32>()),
            "masked_words": self.masked_words,
            "prompt_hash": self.evidence.prompt.as_ref().map(|p| p.prompt_hash),
            "spans_total": self.spans.len(),
            "spans": self.spans.iter().take(top).collect::<Vec<_>>(),
            "contributions": self.evidence.weights.iter().map(|w| serde_json::json!({
                "contribution": w.contribution,
                "contributor": w.contributor,
                "weight_ppb": w.weight,
            })).collect::<Vec<_>>(),
            "thresholds": self.evidence.thresholds,
            "evidence_hash": self.evidence.evidence_hash,
            "trace_ms": self.elapsed.as_secs_f64() * 1e3,
        })
    }
}
