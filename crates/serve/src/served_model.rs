//! [`ServedModel`]: trib-model's transformer behind the [`BatchModel`] boundary.
//!
//! trib-model does the numerical work: `Model::decode_batch` runs the base
//! projections once over the stacked batch and the LoRA term once per adapter
//! group (a CPU form of Punica's SGMV), and `load_peft` validates untrusted
//! PEFT files (shapes against the base config, finite values, rank limit,
//! unsupported PEFT features). This wrapper adds what serving needs on top:
//! the base-model name check (an adapter trained for another base model of the
//! same shape is refused), a serving rank limit, and logits as plain vectors.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use trib_model::{AdapterLimits, KvCache, LoraAdapter, Model, WeightFormat};

use crate::model::{BatchModel, ChatMessage, DecodeSlot, ModelError};
use crate::store::{AdapterFiles, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};

/// Default highest adapter rank served (vLLM's default limit is 16, LoRAX's 64).
pub const DEFAULT_MAX_SERVED_RANK: usize = 64;

/// A trib-model base model prepared for serving.
pub struct ServedModel {
    model: Arc<Model>,
    name: String,
    /// Accepted `base_model_name_or_path` values (normalised); empty accepts any.
    base_names: Vec<String>,
    limits: AdapterLimits,
    stop: Vec<u32>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("base_names", &self.base_names)
            .finish()
    }
}

/// Lower-case alphanumerics of the last path segment: `HuggingFaceTB/SmolLM2-135M-Instruct`
/// and `SmolLM2 135M Instruct` both become `smollm2135minstruct`.
fn normalise_base_name(s: &str) -> String {
    let last = s.trim_end_matches('/').rsplit('/').next().unwrap_or(s);
    last.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl ServedModel {
    /// Wraps a loaded model. The model's own name (GGUF `general.name` or the
    /// HF `_name_or_path`) is an accepted base name for adapters.
    pub fn new(model: Model) -> Self {
        let name = model.info().name.clone();
        let stop = model.stop_tokens();
        let base_names = vec![normalise_base_name(&name)];
        Self {
            model: Arc::new(model),
            name,
            base_names,
            limits: AdapterLimits {
                max_rank: DEFAULT_MAX_SERVED_RANK,
                ..AdapterLimits::default()
            },
            stop,
        }
    }

    /// Loads a GGUF file or Hugging Face directory for serving. GGUF
    /// projections are kept as quantized blocks only
    /// ([`WeightFormat::Quantized`]): trib-model's lean path multiplies them
    /// for prompts and for decode batches of every size, so serving holds no
    /// dense f32 copy of the weights (docs/serving.md, "Memory").
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_as(path, WeightFormat::Quantized)
    }

    /// [`ServedModel::load`] with an explicit weight format (for A/B
    /// measurements such as `serve-bench --weights auto`).
    pub fn load_as(path: &Path, format: WeightFormat) -> Result<Self, ModelError> {
        Model::load(path, format)
            .map(Self::new)
            .map_err(ModelError::msg)
    }

    /// Also accept adapters whose `base_model_name_or_path` is `name` (e.g. the
    /// Hugging Face repository the GGUF was converted from).
    pub fn accept_base_name(mut self, name: &str) -> Self {
        let n = normalise_base_name(name);
        if !n.is_empty() && !self.base_names.contains(&n) {
            self.base_names.push(n);
        }
        self
    }

    /// Accept adapters whatever base model name they declare (shapes are still checked).
    pub fn accept_any_base_name(mut self) -> Self {
        self.base_names.clear();
        self
    }

    /// Highest adapter rank accepted.
    pub fn with_max_rank(mut self, rank: usize) -> Self {
        self.limits.max_rank = rank;
        self
    }

    /// The underlying trib-model model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    fn check_base_name(&self, declared: &str) -> Result<(), String> {
        let d = normalise_base_name(declared);
        if self.base_names.is_empty() || d.is_empty() || self.base_names.contains(&d) {
            return Ok(());
        }
        Err(format!(
            "the adapter was trained for base model {declared:?}, but this server serves {:?}",
            self.name
        ))
    }

    /// Parses PEFT bytes through trib-model's validating loader.
    fn parse(&self, files: &AdapterFiles) -> Result<LoraAdapter, String> {
        // trib-model's loader reads a directory; stage the fetched bytes in a
        // private temporary one (removed on every path).
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "trib-serve-adapter-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        struct Cleanup<'a>(&'a Path);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(self.0);
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("staging the adapter files: {e}"))?;
        let _cleanup = Cleanup(&dir);
        std::fs::write(dir.join(ADAPTER_CONFIG_FILE), &files.config_json)
            .and_then(|()| std::fs::write(dir.join(ADAPTER_WEIGHTS_FILE), &files.safetensors))
            .map_err(|e| format!("staging the adapter files: {e}"))?;
        let adapter =
            trib_model::load_peft(&dir, self.model.config(), &self.limits).map_err(|e| {
                // Name the adapter, not the temporary directory.
                e.to_string()
                    .replace(&dir.display().to_string(), files.name.as_str())
            })?;
        self.check_base_name(adapter.base_model())?;
        Ok(adapter)
    }
}

impl BatchModel for ServedModel {
    type Adapter = LoraAdapter;
    type Cache = KvCache;

    fn name(&self) -> &str {
        &self.name
    }

    fn context_len(&self) -> usize {
        self.model.config().max_seq_len
    }

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn stop_tokens(&self) -> Vec<u32> {
        self.stop.clone()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.model.encode(text).map_err(ModelError::msg)
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        self.model.decode(tokens).map_err(ModelError::msg)
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        Ok(self.model.chat_template().render(messages, true))
    }

    fn load_adapter(&self, files: &AdapterFiles) -> Result<LoraAdapter, String> {
        self.parse(files)
    }

    fn adapter_bytes(&self, adapter: &LoraAdapter) -> usize {
        adapter.size_in_bytes()
    }

    fn new_cache(&self) -> KvCache {
        self.model.new_cache()
    }

    fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Vec<f32>, ModelError> {
        let logits = self
            .model
            .prefill(tokens, cache, adapter)
            .map_err(ModelError::msg)?;
        logits.to_vec1::<f32>().map_err(ModelError::msg)
    }

    fn decode_batch(
        &self,
        slots: &mut [DecodeSlot<'_, KvCache, LoraAdapter>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut inner: Vec<trib_model::DecodeSlot<'_>> = slots
            .iter_mut()
            .map(|s| trib_model::DecodeSlot {
                token: s.token,
                cache: &mut *s.cache,
                adapter: s.adapter,
            })
            .collect();
        let logits = self
            .model
            .decode_batch(&mut inner)
            .map_err(ModelError::msg)?;
        logits.to_vec2::<f32>().map_err(ModelError::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_compare_by_their_last_segment_alphanumerics() {
        assert_eq!(
            normalise_base_name("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "smollm2135minstruct"
        );
        assert_eq!(
            normalise_base_name("SmolLM2 135M Instruct"),
            "smollm2135minstruct"
        );
        assert_eq!(normalise_base_name("/models/llama/"), "llama");
    }
}
