//! Model configuration: the Hugging Face `config.json` read as it is
//! ([`HfConfig`]) and GGUF metadata, both converted into the one runtime
//! [`LlamaConfig`] the architecture code uses.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The longest context a configuration may declare. The rotary tables are
/// built for every position when a model loads, so a file's
/// `context_length` (or `max_position_embeddings`) is a memory claim: at
/// this bound and a head width of 128 they take 256 MiB each.
const MAX_SEQ_LEN: usize = 1 << 20;

/// Which member of the Llama family a checkpoint belongs to. The forward pass
/// is the same; the flavour decides biases and naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 1/2/3, SmolLM, SmolLM2.
    Llama,
    /// Mistral (Llama layout, sliding-window attention).
    Mistral,
    /// Qwen2 (Llama layout with biases on q/k/v).
    Qwen2,
}

impl Family {
    /// The `model_type` string used by Hugging Face.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
        }
    }
}

/// The runtime configuration of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Architecture flavour.
    pub family: Family,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding base frequency.
    pub rope_theta: f64,
    /// Longest sequence the model runs (context window; the sliding window
    /// for Mistral when smaller).
    pub max_seq_len: usize,
    /// Whether the output projection reuses the token embedding.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2, Llama with `attention_bias`).
    pub attention_bias: bool,
    /// Beginning-of-sequence token, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (generation stops on any of them).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Checks the invariants the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ModelError::Config(m));
        if self.num_layers == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return fail("num_layers, hidden_size and vocab_size must be positive".into());
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0
        {
            return fail(format!(
                "num_heads {} must be a positive multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return fail(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        if self.max_seq_len == 0 {
            return fail("max_seq_len must be positive".into());
        }
        if self.max_seq_len > MAX_SEQ_LEN {
            return fail(format!(
                "max_seq_len {} is above the {MAX_SEQ_LEN} positions supported (rotary tables are built for every position)",
                self.max_seq_len
            ));
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.rms_norm_eps) || !positive(self.rope_theta) {
            return fail("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Query projection output width.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Key/value projection output width.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Total parameter count (tied embeddings counted once).
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let attn = h * self.q_dim() as u64 * 2 + h * self.kv_dim() as u64 * 2;
        let bias = if self.attention_bias {
            (self.q_dim() + 2 * self.kv_dim()) as u64
        } else {
            0
        };
        let mlp = 3 * h * self.intermediate_size as u64;
        let layer = attn + bias + mlp + 2 * h;
        let emb = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        self.num_layers as u64 * layer + emb + head + h
    }

    /// Reads the configuration from GGUF metadata (`llama.*` keys, or those
    /// of the file's `general.architecture`).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "llama".to_string());
        let family = match arch.as_str() {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "mistral" => Family::Mistral,
            other => {
                return Err(ModelError::gguf(
                    path,
                    format!("architecture `{other}` is not in the Llama family we run"),
                ))
            }
        };
        let get = |key: &str| -> Result<&gguf_file::Value> {
            md.get(&format!("{arch}.{key}"))
                .ok_or_else(|| ModelError::gguf(path, format!("missing metadata `{arch}.{key}`")))
        };
        let as_usize = |key: &str| -> Result<usize> {
            let v = get(key)?;
            let n = match v {
                gguf_file::Value::U8(x) => *x as u64,
                gguf_file::Value::U16(x) => *x as u64,
                gguf_file::Value::U32(x) => *x as u64,
                gguf_file::Value::U64(x) => *x,
                gguf_file::Value::I32(x) if *x >= 0 => *x as u64,
                gguf_file::Value::I64(x) if *x >= 0 => *x as u64,
                other => {
                    return Err(ModelError::gguf(
                        path,
                        format!("metadata `{arch}.{key}` is not an unsigned integer: {other:?}"),
                    ))
                }
            };
            Ok(n as usize)
        };
        let as_f64 = |key: &str| -> Result<Option<f64>> {
            match md.get(&format!("{arch}.{key}")) {
                None => Ok(None),
                Some(gguf_file::Value::F32(x)) => Ok(Some(*x as f64)),
                Some(gguf_file::Value::F64(x)) => Ok(Some(*x)),
                Some(other) => Err(ModelError::gguf(
                    path,
                    format!("metadata `{arch}.{key}` is not a float: {other:?}"),
                )),
            }
        };
        let hidden_size = as_usize("embedding_length")?;
        let num_heads = as_usize("attention.head_count")?;
        let num_kv_heads = as_usize("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = hidden_size.checked_div(num_heads).unwrap_or(0);
        let vocab_size = match as_usize("vocab_size") {
            Ok(v) => v,
            Err(_) => md
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len())
                .ok_or_else(|| {
                    ModelError::gguf(path, "no vocab_size and no tokenizer.ggml.tokens")
                })?,
        };
        let token_id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let cfg = LlamaConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size: as_usize("feed_forward_length")?,
            num_layers: as_usize("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: as_f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            rope_theta: as_f64("rope.freq_base")?.unwrap_or(10_000.0),
            max_seq_len: as_usize("context_length").unwrap_or(4096),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: token_id("tokenizer.ggml.eos_token_id")
                .into_iter()
                .collect(),
        };
        if let Ok(rope_dims) = as_usize("rope.dimension_count") {
            if rope_dims != head_dim {
                return Err(ModelError::gguf(
                    path,
                    format!("partial rotary embeddings ({rope_dims} of {head_dim} dims) are not supported"),
                ));
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A Hugging Face `config.json` for the Llama family, read as it is.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HfConfig {
    /// `model_type`: `llama`, `mistral` or `qwen2`.
    pub model_type: Option<String>,
    /// `architectures`, e.g. `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (defaults to the query heads).
    pub num_key_value_heads: Option<usize>,
    /// Explicit head width (defaults to hidden / heads).
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Rotary scaling (only `null` is supported).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Context window.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Mistral's sliding window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether the LM head is tied to the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's optional attention bias.
    #[serde(default)]
    pub attention_bias: bool,
    /// Activation (only `silu` is supported).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// BOS token id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// EOS token id(s): a number or a list.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Anything else in the file, kept for round trips.
    #[serde(flatten)]
    pub extra: HashMap<String, serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    4096
}
fn default_act() -> String {
    "silu".to_string()
}

impl HfConfig {
    /// Reads and parses `config.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Converts to the runtime configuration, refusing what we do not run.
    pub fn to_runtime(&self) -> Result<LlamaConfig> {
        let ty = self.model_type.clone().unwrap_or_else(|| {
            self.architectures
                .first()
                .map(|a| a.trim_end_matches("ForCausalLM").to_lowercase())
                .unwrap_or_else(|| "llama".to_string())
        });
        let family = match ty.as_str() {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(ModelError::Config(format!(
                    "model_type `{other}` is not in the Llama family (llama, mistral, qwen2)"
                )))
            }
        };
        if let Some(s) = &self.rope_scaling {
            if !s.is_null() {
                return Err(ModelError::Config(format!(
                    "rope_scaling {s} is not supported"
                )));
            }
        }
        if self.hidden_act != "silu" {
            return Err(ModelError::Config(format!(
                "hidden_act `{}` is not supported (only silu)",
                self.hidden_act
            )));
        }
        let eos_token_ids = match &self.eos_token_id {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|x| x as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|x| x as u32))
                .collect(),
            Some(other) => {
                return Err(ModelError::Config(format!(
                    "eos_token_id {other} is not an id"
                )))
            }
        };
        let heads = self.num_attention_heads;
        let max_seq_len = match (family, self.sliding_window) {
            (Family::Mistral, Some(w)) if w > 0 => w.min(self.max_position_embeddings),
            _ => self.max_position_embeddings,
        };
        let cfg = LlamaConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size.checked_div(heads).unwrap_or(0)),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_seq_len,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: family == Family::Qwen2 || self.attention_bias,
            bos_token_id: self.bos_token_id,
            eos_token_ids,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `config.json` that describes a runtime configuration (used when
    /// exporting merged weights).
    pub fn from_runtime(cfg: &LlamaConfig) -> Self {
        let arch = match cfg.family {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
        };
        let mut extra = HashMap::new();
        extra.insert("torch_dtype".to_string(), serde_json::json!("float32"));
        HfConfig {
            model_type: Some(cfg.family.as_str().to_string()),
            architectures: vec![arch.to_string()],
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_hidden_layers: cfg.num_layers,
            num_attention_heads: cfg.num_heads,
            num_key_value_heads: Some(cfg.num_kv_heads),
            head_dim: Some(cfg.head_dim),
            rms_norm_eps: cfg.rms_norm_eps,
            rope_theta: cfg.rope_theta,
            rope_scaling: None,
            max_position_embeddings: cfg.max_seq_len,
            sliding_window: None,
            tie_word_embeddings: cfg.tie_word_embeddings,
            attention_bias: cfg.attention_bias && cfg.family == Family::Llama,
            hidden_act: "silu".to_string(),
            bos_token_id: cfg.bos_token_id,
            eos_token_id: match cfg.eos_token_ids.as_slice() {
                [] => None,
                [one] => Some(serde_json::json!(one)),
                many => Some(serde_json::json!(many)),
            },
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_config_json_converts_with_tied_embeddings_and_gqa() {
        let json = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
            "vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
            "rms_norm_eps":1e-5,"rope_theta":100000,"max_position_embeddings":8192,
            "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,
            "rope_scaling":null,"torch_dtype":"bfloat16"}"#;
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        let cfg = hf.to_runtime().unwrap();
        assert_eq!(cfg.head_dim, 64);
        assert_eq!(cfg.num_kv_heads, 3);
        assert!(cfg.tie_word_embeddings);
        assert_eq!(cfg.eos_token_ids, vec![2]);
        // SmolLM2-135M has 134,515,008 parameters.
        assert_eq!(cfg.parameter_count(), 134_515_008);
    }

    #[test]
    fn qwen2_gets_qkv_biases_and_unknown_families_are_refused() {
        let base = r#""vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2"#;
        let q: HfConfig =
            serde_json::from_str(&format!(r#"{{"model_type":"qwen2",{base}}}"#)).unwrap();
        assert!(q.to_runtime().unwrap().attention_bias);
        let g: HfConfig =
            serde_json::from_str(&format!(r#"{{"model_type":"gpt2",{base}}}"#)).unwrap();
        assert!(matches!(g.to_runtime(), Err(ModelError::Config(m)) if m.contains("gpt2")));
        let s: HfConfig = serde_json::from_str(&format!(
            r#"{{"model_type":"llama","rope_scaling":{{"type":"yarn"}},{base}}}"#
        ))
        .unwrap();
        assert!(matches!(s.to_runtime(), Err(ModelError::Config(m)) if m.contains("rope_scaling")));
    }
}
