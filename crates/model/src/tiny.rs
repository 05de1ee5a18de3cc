//! Tiny random Llama models written in the real on-disk formats (GGUF with
//! llama.cpp's q/k row permutation and tokenizer metadata; a Hugging Face
//! directory with `config.json`, `model.safetensors`, `tokenizer.json`), so
//! unit tests here and in other crates exercise the real loaders without
//! the 98 MB demo model. The same `(spec, seed)` gives the same weights in
//! both formats.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Family, HfConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::lora::LoraTarget;
use crate::qk_permutation::{permute_bias, permute_qtensor};
use crate::tokenizer::{BpeSpec, PreTokenizerKind};

/// The ChatML template (SmolLM2's, with its default system prompt).
pub const TINY_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 14] = [
    "Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "o n", "Ġ a", "r e", "l l", "he ll", "hell o",
    "Ġ w", "1 2",
];

/// GPT-2's byte → printable character table.
pub(crate) fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(cs.iter()) {
        table[*b as usize] = char::from_u32(*c).expect("valid code point");
    }
    table
}

/// The tiny byte-level BPE: 3 special tokens, 256 byte tokens, 14 merges,
/// SmolLM2's pre-tokenizer (digits split individually).
pub(crate) fn tiny_bpe() -> BpeSpec {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_chars().into_iter().map(|c| c.to_string()));
    for m in MERGES {
        tokens.push(m.replace(' ', ""));
    }
    BpeSpec {
        tokens,
        merges: MERGES.iter().map(|m| m.to_string()).collect(),
        added: (0..SPECIALS.len() as u32).map(|i| (i, true)).collect(),
        pre: PreTokenizerKind::DigitsThenGpt2,
    }
}

/// Shape of a tiny test model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// Decoder layers.
    pub layers: usize,
    /// Residual width (a multiple of 32 so ggml quantization applies).
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Context window.
    pub max_seq_len: usize,
    /// Llama (no biases) or Qwen2 (q/k/v biases).
    pub family: Family,
    /// Whether the LM head is tied to the embedding.
    pub tie_embeddings: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            max_seq_len: 256,
            family: Family::Llama,
            tie_embeddings: true,
        }
    }
}

impl TinySpec {
    /// The runtime configuration of this spec.
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            family: self.family,
            vocab_size: tiny_bpe().tokens.len(),
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_layers: self.layers,
            num_heads: self.heads,
            num_kv_heads: self.kv_heads,
            head_dim: self.hidden / self.heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_seq_len: self.max_seq_len,
            tie_word_embeddings: self.tie_embeddings,
            attention_bias: self.family == Family::Qwen2,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// Random weights in Hugging Face naming and layout, deterministic in `seed`.
    pub fn weights(&self, seed: u64) -> Result<Vec<(String, Tensor)>> {
        let cfg = self.config();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut mat = |rows: usize, cols: usize, scale: f32| -> Result<Tensor> {
            let v: Vec<f32> = (0..rows * cols)
                .map(|_| rng.gen_range(-scale..scale))
                .collect();
            Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
        };
        let mut out = Vec::new();
        out.push((
            "model.embed_tokens.weight".to_string(),
            mat(cfg.vocab_size, cfg.hidden_size, 1.0)?,
        ));
        for i in 0..cfg.num_layers {
            let p = format!("model.layers.{i}");
            for t in LoraTarget::ALL {
                let (inp, o) = t.dims(&cfg);
                let name = format!("{p}.{}.{}", t.parent(), t.name());
                out.push((
                    format!("{name}.weight"),
                    mat(o, inp, 1.7 / (inp as f32).sqrt())?,
                ));
                if cfg.attention_bias
                    && matches!(t, LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj)
                {
                    out.push((format!("{name}.bias"), mat(1, o, 0.1)?.squeeze(0)?));
                }
            }
            for n in ["input_layernorm", "post_attention_layernorm"] {
                let w = (mat(1, cfg.hidden_size, 0.2)?.squeeze(0)? + 1.0)?;
                out.push((format!("{p}.{n}.weight"), w));
            }
        }
        out.push((
            "model.norm.weight".to_string(),
            (mat(1, cfg.hidden_size, 0.2)?.squeeze(0)? + 1.0)?,
        ));
        if !cfg.tie_word_embeddings {
            out.push((
                "lm_head.weight".to_string(),
                mat(cfg.vocab_size, cfg.hidden_size, 0.2)?,
            ));
        }
        Ok(out)
    }
}

/// Writes a tiny model as a Hugging Face directory.
pub fn write_tiny_hf_dir(dir: &Path, spec: &TinySpec, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tensors: HashMap<String, Tensor> = spec.weights(seed)?.into_iter().collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let mut hf = HfConfig::from_runtime(&spec.config());
    hf.extra
        .insert("_name_or_path".into(), serde_json::json!("tiny-llama"));
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).expect("json"))
            .map_err(|e| ModelError::io(&p, e))
    };
    write_json("config.json", &serde_json::to_value(&hf).expect("json"))?;
    write_json("tokenizer.json", &tiny_bpe().to_json())?;
    write_json(
        "tokenizer_config.json",
        &serde_json::json!({"chat_template": TINY_CHAT_TEMPLATE, "eos_token": "<|im_end|>"}),
    )?;
    Ok(())
}

fn gguf_tensor_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = map.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").expect("layer tensor");
    let (n, tail) = rest.split_once('.').expect("layer index");
    let tail = tail
        .replace("input_layernorm", "attn_norm")
        .replace("post_attention_layernorm", "ffn_norm")
        .replace("self_attn.q_proj", "attn_q")
        .replace("self_attn.k_proj", "attn_k")
        .replace("self_attn.v_proj", "attn_v")
        .replace("self_attn.o_proj", "attn_output")
        .replace("mlp.gate_proj", "ffn_gate")
        .replace("mlp.up_proj", "ffn_up")
        .replace("mlp.down_proj", "ffn_down");
    format!("blk.{n}.{tail}")
}

/// Writes a tiny model as GGUF the way llama.cpp's converter would: q/k rows
/// permuted for the interleaved rope, projections stored as `dtype` (F32,
/// Q8_0, Q4_1 …), norms as F32, tokenizer and chat template in metadata.
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec, seed: u64, dtype: GgmlDType) -> Result<()> {
    write_gguf(path, spec, seed, dtype, true)
}

fn write_gguf(
    path: &Path,
    spec: &TinySpec,
    seed: u64,
    dtype: GgmlDType,
    permute: bool,
) -> Result<()> {
    use gguf_file::Value as V;
    let cfg = spec.config();
    let arch = cfg.family.as_str();
    let bpe = tiny_bpe();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in spec.weights(seed)? {
        let gname = gguf_tensor_name(&name);
        let heads = if !permute {
            None
        } else if name.contains("q_proj") {
            Some(cfg.num_heads)
        } else if name.contains("k_proj") {
            Some(cfg.num_kv_heads)
        } else {
            None
        };
        let q = if t.rank() == 2 {
            let q = QTensor::quantize(&t, dtype)?;
            match heads {
                Some(h) => permute_qtensor(&q, h, true)?,
                None => q,
            }
        } else {
            let t = match heads {
                Some(h) => permute_bias(&t, h, true)?,
                None => t,
            };
            QTensor::quantize(&t, GgmlDType::F32)?
        };
        tensors.push((gname, q));
    }
    let k = |s: &str| format!("{arch}.{s}");
    let md: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String(arch.into())),
        ("general.name".into(), V::String("tiny-llama".into())),
        ("general.license".into(), V::String("apache-2.0".into())),
        (k("block_count"), V::U32(cfg.num_layers as u32)),
        (k("context_length"), V::U32(cfg.max_seq_len as u32)),
        (k("embedding_length"), V::U32(cfg.hidden_size as u32)),
        (
            k("feed_forward_length"),
            V::U32(cfg.intermediate_size as u32),
        ),
        (k("attention.head_count"), V::U32(cfg.num_heads as u32)),
        (
            k("attention.head_count_kv"),
            V::U32(cfg.num_kv_heads as u32),
        ),
        (k("rope.freq_base"), V::F32(cfg.rope_theta as f32)),
        (k("rope.dimension_count"), V::U32(cfg.head_dim as u32)),
        (
            k("attention.layer_norm_rms_epsilon"),
            V::F32(cfg.rms_norm_eps as f32),
        ),
        (k("vocab_size"), V::U32(cfg.vocab_size as u32)),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), V::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            V::Array(bpe.tokens.iter().map(|t| V::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(
                (0..bpe.tokens.len())
                    .map(|i| V::I32(if i < SPECIALS.len() { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            V::Array(bpe.merges.iter().map(|m| V::String(m.clone())).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(2)),
        (
            "tokenizer.chat_template".into(),
            V::String(TINY_CHAT_TEMPLATE.into()),
        ),
    ];
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let file = File::create(path).map_err(|e| ModelError::io(path, e))?;
    let mut w = BufWriter::new(file);
    gguf_file::write(&mut w, &md_refs, &t_refs)?;
    std::io::Write::flush(&mut w).map_err(|e| ModelError::io(path, e))?;
    Ok(())
}

/// The largest absolute element-wise difference of two tensors of one shape
/// (the tolerance checks of this crate's unit tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, WeightFormat};

    fn logits(m: &Model) -> Tensor {
        let toks = m.encode("hello there").unwrap();
        m.forward_all(&toks, &mut m.new_cache(), None).unwrap()
    }

    #[test]
    fn a_gguf_without_the_llama_cpp_permutation_loads_wrong_so_the_unpermutation_matters() {
        let dir = std::env::temp_dir().join(format!("trib-tiny-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = TinySpec::default();
        write_tiny_hf_dir(&dir.join("hf"), &spec, 11).unwrap();
        write_gguf(&dir.join("right.gguf"), &spec, 11, GgmlDType::F32, true).unwrap();
        write_gguf(&dir.join("wrong.gguf"), &spec, 11, GgmlDType::F32, false).unwrap();
        let hf = logits(&Model::load(&dir.join("hf"), WeightFormat::Auto).unwrap());
        let right = logits(&Model::load(&dir.join("right.gguf"), WeightFormat::Auto).unwrap());
        let wrong = logits(&Model::load(&dir.join("wrong.gguf"), WeightFormat::Auto).unwrap());
        let diff = max_abs_diff;
        assert!(diff(&hf, &right) < 1e-4);
        assert!(
            diff(&hf, &wrong) > 1e-2,
            "rope layout must matter for this test to mean anything"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
