//! Models for Tributary: a Llama-family transformer written in candle, the
//! loaders for GGUF files and Hugging Face directories, the tokenizer and chat
//! templates, LoRA adapters in the PEFT format, generation, and the batched
//! multi-adapter decode step that OpenLoRA serving builds on.
//!
//! Why it exists: ModelFactory trains LoRA adapters on datanet versions,
//! OpenLoRA serves many adapters over one base model, and Proof of
//! Attribution needs gradients through the same network. All three share the
//! weights and the forward passes defined here. This crate depends on
//! `trib-types` only (never on the ledger); `trib-serve`, `trib-attribution`
//! and `trib-node` sit above it.
//!
//! Two forward passes run over the same weights (see `docs/model.md`):
//! the inference forward ([`Model::prefill`], [`Model::decode_batch`],
//! [`Model::step`]) may keep GGUF weights quantized and uses candle's fused
//! kernels; the training forward ([`Model::forward_train`]) uses only ops
//! with a backward pass, because candle's fused softmax / RMSNorm / rope and
//! quantized matmuls silently drop gradients.
//!
//! Inside, architectures sit above kernels: `llama.rs` (the architecture:
//! config, layers, forward passes) uses the numeric code in `kernels/`
//! (weight kinds, quantized and bf16 products, the lean decode step, the
//! training forward's fused ops, multi-adapter LoRA), and no kernel imports
//! an architecture (`tests/it/layering.rs` checks it; see `docs/model.md`,
//! "Kernels and architectures").

mod chat;
mod config;
mod error;
pub mod factory;
mod generate;
mod info;
mod kernels;
mod kv_cache;
mod llama;
mod load;
mod lora;
mod malloc_tuning;
mod model;
mod peft;
mod qk_permutation;
mod step;
mod tiny;
mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::{Family, HfConfig, LlamaConfig};
pub use error::{ModelError, Result};
pub use generate::{
    generate, FinishReason, Generation, GenerationConfig, Sampler, SamplingConfig, TokenEvent,
};
pub use info::{
    content_hash, locate_smollm2, sha256_file, ModelFormat, ModelInfo, SMOLLM2_FILE,
    SMOLLM2_LICENSE, SMOLLM2_SHA256,
};
pub use kv_cache::KvCache;
pub use load::{read_gguf_header, WeightFormat};
pub use lora::{LoraAdapter, LoraConfig, LoraDropout, LoraPair, LoraTarget};
pub use model::{DecodeSlot, Model};
pub use peft::{
    adapter_content_hash, load_peft, save_peft, AdapterLimits, ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
};
pub use step::SeqChunk;
pub use tiny::{write_tiny_gguf, write_tiny_hf_dir, TinySpec, TINY_CHAT_TEMPLATE};
pub use tokenizer::{decode, encode, token_id, tokenizer_from_file, tokenizer_from_gguf};

/// Re-exported so callers name tensors and quantization types without a
/// separate candle dependency.
pub use candle_core::{quantized::GgmlDType, Tensor, Var};
