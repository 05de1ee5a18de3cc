//! The boundary between the engine and a model: [`BatchModel`].
//!
//! The scheduler only needs a handful of things from a model: tokenize and
//! detokenize, render a chat, load (and validate) an adapter, make an empty
//! per-sequence KV cache, prefill a chunk of prompt tokens into one sequence's
//! cache, and run one decode step over a *batch* of sequences that may each
//! use a different adapter (or none). Keeping that surface a trait lets the
//! scheduler be tested on a deterministic fake, and lets the real trib-model
//! implementation (see `trib_model_impl`) do the heterogeneous-batch work —
//! base matmuls once for the stacked batch, the LoRA term per adapter group —
//! where it belongs.

use crate::store::AdapterFiles;

/// A failure inside the model (a forward pass, the tokenizer, the template).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

impl ModelError {
    /// Wraps any displayable error.
    pub fn msg(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// One chat message (OpenAI `messages[i]`): trib-model's type, re-exported.
pub use trib_model::ChatMessage;

/// One running sequence's input to a batched decode step.
pub struct DecodeSlot<'a, C, A> {
    /// The token to feed (the one sampled at the previous step).
    pub token: u32,
    /// The sequence's KV cache; the step appends one position to it.
    pub cache: &'a mut C,
    /// The sequence's adapter, or `None` for the base model.
    pub adapter: Option<&'a A>,
}

/// What the engine needs from a model.
///
/// Logits are returned as plain `f32` vectors of length `vocab_size()` for the
/// last position only: the engine samples on the CPU anyway, and this keeps the
/// trait free of any tensor library.
pub trait BatchModel: Send + Sync + 'static {
    /// A loaded, validated adapter.
    type Adapter: Send + Sync + 'static;
    /// One sequence's KV cache.
    type Cache: Send + 'static;

    /// A short name of the base model (the OpenAI `model` id of the base).
    fn name(&self) -> &str;
    /// Maximum number of positions (prompt + completion) per sequence.
    fn context_len(&self) -> usize;
    /// Size of the vocabulary (length of each logits vector).
    fn vocab_size(&self) -> usize;
    /// Tokens that end a completion (end-of-sequence, end-of-turn).
    fn stop_tokens(&self) -> Vec<u32>;

    /// Tokenizes `text`; special-token markup (as produced by the chat
    /// template) is recognised.
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError>;
    /// Detokenizes `tokens`, skipping special tokens.
    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError>;
    /// Renders `messages` with the model's chat template, ending with the
    /// prompt for the assistant's turn.
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, ModelError>;

    /// Parses and validates an adapter's PEFT files against this base model.
    /// Any problem (wrong shapes, other base model, NaN/inf, rank above the
    /// limit, unsupported options) is an `Err` whose text says what is wrong.
    fn load_adapter(&self, files: &AdapterFiles) -> Result<Self::Adapter, String>;
    /// Bytes the adapter occupies in memory (what the cache budget counts).
    fn adapter_bytes(&self, adapter: &Self::Adapter) -> usize;

    /// An empty KV cache for a new sequence.
    fn new_cache(&self) -> Self::Cache;
    /// Appends `tokens` (a chunk of a prompt, at the cache's current position)
    /// to `cache` and returns the logits at the last of them.
    fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut Self::Cache,
        adapter: Option<&Self::Adapter>,
    ) -> Result<Vec<f32>, ModelError>;
    /// One decode step over a batch: feeds `slots[i].token` to sequence `i`
    /// and returns its next-token logits, in the same order. Sequences may use
    /// different adapters; their results must equal running each alone.
    fn decode_batch(
        &self,
        slots: &mut [DecodeSlot<'_, Self::Cache, Self::Adapter>],
    ) -> Result<Vec<Vec<f32>>, ModelError>;
}
