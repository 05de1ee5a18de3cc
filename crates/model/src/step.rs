//! The input of one batched inference step: each sequence's new tokens,
//! its cache and its adapter ([`SeqChunk`]). Shared by the architectures'
//! forwards and the kernels that run a step (the lean decode path, the
//! multi-adapter LoRA terms).

use crate::kv_cache::KvCache;
use crate::lora::LoraAdapter;

/// One sequence's share of an inference step: new tokens, its cache and its
/// optional adapter. A decode step is a chunk of one token; a prefill (or a
/// prefill chunk) is a chunk of many.
pub struct SeqChunk<'a> {
    /// Tokens appended at positions `cache.len()..`.
    pub tokens: &'a [u32],
    /// The sequence's cache; advanced by `tokens.len()` on success.
    pub cache: &'a mut KvCache,
    /// The adapter applied to this sequence, if any.
    pub adapter: Option<&'a LoraAdapter>,
}
