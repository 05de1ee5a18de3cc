//! [`Model`]: a loaded base model (weights, tokenizer, chat template, facts)
//! and the entry points other crates call: prefill, batched decode, the
//! differentiable training forward, merging and export.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::config::{HfConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::info::{ModelFormat, ModelInfo};
use crate::kv_cache::KvCache;
use crate::llama::Llama;
use crate::load::{load_gguf, load_hf_dir, WeightFormat};
use crate::lora::{LoraAdapter, LoraDropout};
use crate::step::SeqChunk;
use crate::tokenizer;

/// One sequence's slot in a batched decode step.
pub struct DecodeSlot<'a> {
    /// The sequence's latest token (appended at `cache.len()`).
    pub token: u32,
    /// The sequence's cache; advanced by one on success.
    pub cache: &'a mut KvCache,
    /// The adapter for this sequence, if any.
    pub adapter: Option<&'a LoraAdapter>,
}

/// A loaded Llama-family base model.
#[derive(Clone)]
pub struct Model {
    llama: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    info: ModelInfo,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads a GGUF file or a Hugging Face directory, whichever `path` is.
    pub fn load(path: &Path, format: WeightFormat) -> Result<Self> {
        if path.is_dir() {
            Self::load_hf_dir(path)
        } else {
            Self::load_gguf(path, format)
        }
    }

    /// Loads a GGUF file (Llama family, byte-level BPE tokenizer).
    pub fn load_gguf(path: &Path, format: WeightFormat) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingFile(path.to_path_buf()));
        }
        let loaded = load_gguf(path, format)?;
        let info = ModelInfo::describe(&loaded, path, ModelFormat::Gguf)?;
        Ok(Self {
            llama: loaded.llama,
            tokenizer: loaded.tokenizer,
            template: loaded.template,
            info,
        })
    }

    /// Loads a Hugging Face directory (weights stay f32).
    pub fn load_hf_dir(dir: &Path) -> Result<Self> {
        let loaded = load_hf_dir(dir)?;
        let info = ModelInfo::describe(&loaded, dir, ModelFormat::HfDir)?;
        Ok(Self {
            llama: loaded.llama,
            tokenizer: loaded.tokenizer,
            template: loaded.template,
            info,
        })
    }

    /// The runtime configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.llama.cfg
    }

    /// Facts for `trib models show`.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Replaces the chat template (e.g. from a training job's config).
    pub fn set_chat_template(&mut self, template: ChatTemplate) {
        self.template = template;
    }

    /// Whether some weights are held only quantized (then training is
    /// refused; [`WeightFormat::Auto`] keeps a dense copy and trains).
    pub fn is_quantized(&self) -> bool {
        self.llama.is_quantized()
    }

    /// The same model with every weight dequantized to f32 (for training).
    pub fn to_f32(&self) -> Result<Self> {
        let mut m = self.clone();
        m.llama = self.llama.to_dense()?;
        m.info.weights_in_memory = "F32".into();
        Ok(m)
    }

    /// The training copy of a dense (f32) model with every projection and
    /// the LM head in bf16 tiles for `kernel` (docs/factory.md, "Training
    /// precision"); the f32 projections are not kept in the copy.
    pub(crate) fn to_bf16_training(&self, kernel: crate::kernels::amx::Bf16Kernel) -> Result<Self> {
        let mut m = self.clone();
        m.llama = self.llama.for_training_bf16(kernel)?;
        m.info.weights_in_memory = format!("BF16 ({})", kernel.name());
        Ok(m)
    }

    /// Encodes text (special tokens written literally become single ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        tokenizer::encode(&self.tokenizer, text)
    }

    /// Decodes ids, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        tokenizer::decode(&self.tokenizer, ids, true)
    }

    /// Renders a conversation with the chat template and encodes it.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.encode(&self.template.render(messages, true))
    }

    /// Token ids that end generation: the config's EOS ids and the template's
    /// end-of-turn tokens.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut ids = self.llama.cfg.eos_token_ids.clone();
        for s in self.template.stop_strings() {
            if let Some(id) = self.tokenizer.token_to_id(s) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.llama.cfg)
    }

    /// Runs a sequence's prompt (or a further chunk of it) through the model,
    /// filling `cache`; returns the logits `[vocab]` of the last position.
    pub fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let mut chunk = [SeqChunk {
            tokens,
            cache,
            adapter,
        }];
        Ok(self.llama.forward_chunks(&mut chunk, false)?.squeeze(0)?)
    }

    /// [`Model::prefill`] in chunks of at most `chunk` tokens, so a scheduler
    /// can interleave a long prompt with other sequences' decode steps.
    pub fn prefill_chunked(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
        chunk: usize,
    ) -> Result<Tensor> {
        let chunk = chunk.max(1);
        cache.check_room(tokens.len())?;
        let mut last = None;
        for part in tokens.chunks(chunk) {
            last = Some(self.prefill(part, cache, adapter)?);
        }
        last.ok_or_else(|| ModelError::Generation("empty prompt".into()))
    }

    /// Logits `[tokens, vocab]` at every position (inference mode, appended
    /// to `cache`): for evaluation and for checking the two forwards agree.
    pub fn forward_all(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let mut chunk = [SeqChunk {
            tokens,
            cache,
            adapter,
        }];
        self.llama.forward_chunks(&mut chunk, true)
    }

    /// One decode step for a batch of sequences, each with its own cache and
    /// adapter. Base projections run once over the stacked batch, LoRA once
    /// per adapter group. Returns logits `[batch, vocab]`, row `i` for slot `i`.
    pub fn decode_batch(&self, slots: &mut [DecodeSlot<'_>]) -> Result<Tensor> {
        let tokens: Vec<[u32; 1]> = slots.iter().map(|s| [s.token]).collect();
        let mut chunks: Vec<SeqChunk<'_>> = slots
            .iter_mut()
            .zip(tokens.iter())
            .map(|(s, t)| SeqChunk {
                tokens: t,
                cache: &mut *s.cache,
                adapter: s.adapter,
            })
            .collect();
        self.llama.forward_chunks(&mut chunks, false)
    }

    /// A general step mixing prefill chunks and decode tokens of different
    /// sequences; logits `[chunks, vocab]` for each chunk's last position.
    pub fn step(&self, chunks: &mut [SeqChunk<'_>]) -> Result<Tensor> {
        self.llama.forward_chunks(chunks, false)
    }

    /// The differentiable forward for training: `tokens` is `[batch, len]`
    /// (u32), from position 0, no cache. Returns logits `[batch, len, vocab]`.
    /// Gradients flow to the adapter's `Var`s. Needs f32 weights
    /// ([`Model::to_f32`] or [`WeightFormat::F32`]).
    pub fn forward_train(
        &self,
        tokens: &Tensor,
        adapter: Option<&LoraAdapter>,
        dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        self.llama.forward_train(tokens, adapter, dropout)
    }

    /// [`Model::forward_train`]'s logits at the flat positions `rows`
    /// (`batch_row · len + position`) only, `[rows.len(), vocab]`, with the
    /// LM head run over those positions alone (what a masked loss reads).
    pub(crate) fn forward_train_rows(
        &self,
        tokens: &Tensor,
        rows: &[u32],
        adapter: Option<&LoraAdapter>,
        dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        self.llama
            .forward_train_rows(tokens, rows, adapter, dropout)
    }

    /// A new model with the adapter merged into the weights (`W + s·B·A`, f32).
    pub fn merge_adapter(&self, adapter: &LoraAdapter) -> Result<Self> {
        let mut m = self.clone();
        m.llama = self.llama.merged(adapter)?;
        m.info.weights_in_memory = "F32".into();
        Ok(m)
    }

    /// Writes the model as a Hugging Face directory: `config.json`,
    /// `model.safetensors` (f32, q/k in the HF layout), `tokenizer.json`.
    /// Files are written to temporary names and renamed, so a failure leaves
    /// no half-written model.
    pub fn export_hf_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let tensors: std::collections::HashMap<String, Tensor> =
            self.llama.hf_tensors()?.into_iter().collect();
        let tmp = |n: &str| dir.join(format!(".{n}.tmp"));
        candle_core::safetensors::save(&tensors, tmp("model.safetensors"))?;
        let cfg = serde_json::to_vec_pretty(&HfConfig::from_runtime(&self.llama.cfg))
            .map_err(|e| ModelError::Config(e.to_string()))?;
        std::fs::write(tmp("config.json"), cfg)
            .map_err(|e| ModelError::io(tmp("config.json"), e))?;
        self.tokenizer
            .save(tmp("tokenizer.json"), false)
            .map_err(|e| ModelError::Tokenizer(format!("saving tokenizer.json: {e}")))?;
        for n in ["model.safetensors", "config.json", "tokenizer.json"] {
            std::fs::rename(tmp(n), dir.join(n)).map_err(|e| ModelError::io(dir.join(n), e))?;
        }
        tracing::info!(target: "trib::model", dir = %dir.display(), "exported Hugging Face directory");
        Ok(())
    }

    /// The instruction set of the decode kernels on this CPU (`avx2+fma+f16c` or
    /// `scalar`), detected at run time; for logs and benchmark lines.
    pub fn decode_kernel(&self) -> Result<&'static str> {
        Ok(self.llama.lean()?.kernel_name())
    }

    /// Turns the lean decode path on (the default) or off. Off, decode
    /// steps run as candle ops like prefill; for A/B benchmarks and checks
    /// (`examples/bench_generate.rs`), results agree within the tolerance
    /// in docs/model.md.
    pub fn set_lean_decode(&mut self, enabled: bool) {
        self.llama.lean_decode = enabled;
    }

    /// The decoder itself, for unit tests that compare its two paths.
    #[cfg(test)]
    pub(crate) fn llama_for_tests(&self) -> &Llama {
        &self.llama
    }

    /// Device all tensors live on (CPU).
    pub fn device(&self) -> Device {
        Device::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_across_threads<T: Send + Sync>() {}
    fn moved_across_threads<T: Send>() {}

    #[test]
    fn the_serving_engine_can_share_models_and_adapters_across_threads() {
        shared_across_threads::<Model>();
        shared_across_threads::<LoraAdapter>();
        moved_across_threads::<KvCache>();
    }
}
