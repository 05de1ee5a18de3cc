//! Proof of Attribution for Tributary.
//!
//! Every paid answer must say which data contributions shaped it, in a way an
//! auditor can re-run. This crate owns the two methods and the step from
//! scores to payable weights:
//!
//! - **Token attribution** ([`build_index`], [`IndexSet`], [`SpanTracer`]): a
//!   suffix array per datanet version in infini-gram's on-disk layout (built
//!   with libsais, memory-mapped for queries), and the OLMoTrace span procedure
//!   (Liu et al., arXiv 2504.07096) that finds long, rare verbatim spans of an
//!   answer in the training rows.
//! - **Gradient influence** ([`datainf_scores`], [`tracin_scores`],
//!   [`exact_influence_scores`]): DataInf's closed form (Kwon et al., ICLR 2024)
//!   over per-layer LoRA gradients, the TracIn dot product, and an exact
//!   damped-Fisher solve for small dimensions.
//! - **Weights and receipts** ([`contribution_weights`], [`combine_weights`],
//!   [`AttributionEvidence`], [`split_by_weight`]): per-contribution integer
//!   weights, a reproducible evidence hash and the exact largest-remainder
//!   split of the contributors' share.
//! - **Measurement** ([`quality`]): LDS, mislabel AUROC, planted recall.
//! - **Answer time** ([`answer`]): the index catalog per datanet version,
//!   the trace and gradient share of a paid answer, the receipt method
//!   names, the stored answer and its verification against the receipt.
//!
//! The crate works on token ids and plain `f32` matrices: tokenizers
//! (`trib-model`), row metadata (`trib-datanet`) and answer gradients reach
//! it through small traits ([`TokenText`], [`answer::AnswerTokenizer`],
//! [`answer::DatanetRows`], [`answer::AnswerGradients`]) and the
//! [`RowProvenance`] record, which the node implements; it depends on
//! `trib-types`, and on `trib-ledger` for the receipt and fee split that
//! [`answer::verify_stored_answer`] checks (never on candle). Formulas, rules
//! and measured quality are in `docs/attribution.md`.

pub mod answer;
mod combined;
mod dense;
mod error;
mod evidence;
mod index;
mod influence;
pub mod quality;
mod trace;
mod weights;

pub use dense::Cholesky;
pub use error::{AttributionError, Result};
pub use evidence::{
    attribute_answer, attribute_masked_answer, verify_evidence, AttributionEvidence,
    AttributionMethod, EvidenceRow, EvidenceSpan, EvidenceThresholds, GradientEvidence,
    PromptEvidence,
};
pub use index::{
    build_index, IndexBuildOptions, IndexDocument, IndexManifest, IndexSet, Occurrence, RowMatch,
    RowProvenance, ShardId, SuffixIndex,
};
pub use influence::{
    datainf_scores, exact_influence_scores, normalise_gradients, tracin_scores, Damping,
    GradientNormalisation, LayerGradients, ScoreMatrix,
};
pub use trace::{
    bm25_scores, bm25_terms, ContributionWeight, PieceTable, PromptMask, SpanRow, SpanTracer,
    TokenText, Trace, TraceParams, TracedSpan,
};
pub use weights::{
    combine_weights, contribution_weights, normalise_weights, split_by_weight,
    split_contributor_share, ContributorPayout, DEFAULT_TOKEN_SHARE_PPM, WEIGHT_SCALE,
};
