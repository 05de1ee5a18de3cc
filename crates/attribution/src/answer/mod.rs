//! Attribution at answer time: what a node does with every paid answer.
//!
//! The rest of this crate is the method (indexes, the span tracer, DataInf,
//! evidence and weights); this module applies it to served answers:
//!
//! - [`IndexCatalog`] (`catalog.rs`): one token index per published datanet
//!   version on disk, checksummed, built lazily or eagerly, and the trace of
//!   an answer against the versions its adapter was trained on
//!   ([`AnswerTrace`], `view.rs`). Rows come through the [`DatanetRows`]
//!   trait, the tokenizer through [`AnswerTokenizer`] (`tokens.rs`).
//! - [`GradientAttributor`] (`gradient.rs`): the DataInf share for adapters
//!   with a gradient cache; the model side comes through [`AnswerGradients`].
//! - [`AnswerAttributor`] (`attributor.rs`): both for one answer, at
//!   settlement ([`Attributed`]) and at verify.
//! - [`StoredAnswer`] and [`verify_stored_answer`] (`verify.rs`): what a
//!   paid answer keeps and its checks against the on-chain receipt.
//! - The receipt method names (`method.rs`) and the paid-answer rules
//!   ([`answer_trace_params`], [`prompt_words`], `params.rs`).
//!
//! The node (`trib-node`) implements the three traits over its datanet
//! store, the ledger and `trib-model`, so this crate stays free of candle,
//! tokenizers and HTTP. See `docs/attribution.md`, "Attribution at answer
//! time".

mod attributor;
mod catalog;
mod gradient;
mod method;
mod params;
#[cfg(test)]
mod tests;
mod tokens;
mod verify;
mod view;

pub use attributor::{AnswerAttributor, Attributed};
pub use catalog::{
    CatalogError, DatanetRows, IndexCatalog, PublishedDatanet, VersionRow, CHECKSUMS, INDEX_FILES,
};
pub use gradient::{
    compare_scores, AnswerGradient, AnswerGradients, CachedGradients, CachedRow,
    GradientAttributionError, GradientAttributor, Scored, StoredGradient, GRADIENT_BUDGET,
    SCORE_TOLERANCE,
};
pub use method::{receipt_method, DATAINF, DATANET_FALLBACK, TOKEN_SPANS, TOKEN_SPANS_DATAINF};
pub use params::{answer_trace_params, prompt_words};
pub use tokens::{AnswerTokenizer, Tokens};
pub use verify::{check_contributors_part, verify_stored_answer, StoredAnswer, StoredAttribution};
pub use view::{AnswerTrace, SpanRowView, SpanView};
