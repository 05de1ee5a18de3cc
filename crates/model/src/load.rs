//! Loading base models from GGUF files and Hugging Face directories into the
//! one [`Llama`] representation.
//!
//! GGUF: weights stay quantized when asked (ggml blocks), the configuration
//! comes from `llama.*` metadata, the tokenizer from `tokenizer.ggml.*`.
//! llama.cpp's converter permutes the rows of `attn_q`/`attn_k` for its
//! interleaved rope; we undo that permutation at load (row moves on the
//! quantized bytes, exact) so the weights match the Hugging Face layout, the
//! standard "rotate_half" rope applies everywhere, and q/k LoRA adapters
//! trained here are valid for the original checkpoint (PEFT, vLLM).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use crate::chat::ChatTemplate;
use crate::config::{HfConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::kernels::weights::{is_quantized_dtype, Block, Linear, Weight};
use crate::llama::Llama;
use crate::lora::LoraTarget;
use crate::qk_permutation::{permute_bias, permute_qtensor};
use crate::tokenizer::{tokenizer_from_file, tokenizer_from_gguf};

/// How projection weights are held in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// The measured best (docs/model.md): quantized GGUF projections are
    /// kept both as ggml blocks, which the decode kernels (`qkernel`, SIMD
    /// chosen at run time) read for decode steps, and dequantized f32 for
    /// prefill, large batches and training, where f32 gemm is faster. The
    /// same as [`WeightFormat::Hybrid`]. Safetensors stay f32.
    #[default]
    Auto,
    /// Keep only ggml-quantized blocks: least memory, slow prefill, no
    /// training (GGUF only; safetensors are dense anyway).
    Quantized,
    /// Dequantize everything to dense f32.
    F32,
    /// Both: ggml blocks for decode steps, dequantized f32 for everything
    /// else (prefill, batches above the lean path's limit, training).
    Hybrid,
}

/// What a loader hands back besides the weights.
pub(crate) struct Loaded {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub name: String,
    pub license: Option<String>,
    pub file_dtype: String,
}

fn gguf_name(hf: &str) -> String {
    // model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        let (n, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let mapped = match tail {
            "input_layernorm.weight" => "attn_norm.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "self_attn.q_proj.bias" => "attn_q.bias",
            "self_attn.k_proj.bias" => "attn_k.bias",
            "self_attn.v_proj.bias" => "attn_v.bias",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            other => other,
        };
        return format!("blk.{n}.{mapped}");
    }
    match hf {
        "model.embed_tokens.weight" => "token_embd.weight",
        "model.norm.weight" => "output_norm.weight",
        "lm_head.weight" => "output.weight",
        other => other,
    }
    .to_string()
}

/// A source of named tensors in Hugging Face naming.
trait TensorSource {
    fn has(&self, hf_name: &str) -> bool;
    fn matrix(&mut self, hf_name: &str, out: usize, inp: usize) -> Result<Weight>;
    fn vector(&mut self, hf_name: &str, len: usize) -> Result<Tensor>;
}

fn check_shape(name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

struct GgufSource<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    content: &'a gguf_file::Content,
    format: WeightFormat,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufSource<'_> {
    fn read(&mut self, hf_name: &str) -> Result<QTensor> {
        let name = gguf_name(hf_name);
        if !self.content.tensor_infos.contains_key(&name) {
            return Err(ModelError::MissingTensor(format!("{name} ({hf_name})")));
        }
        self.content
            .tensor(&mut self.reader, &name, &Device::Cpu)
            .map_err(|e| ModelError::gguf(self.path, format!("reading `{name}`: {e}")))
    }

    fn heads_for(&self, hf_name: &str) -> Option<usize> {
        if hf_name.contains("self_attn.q_proj") {
            Some(self.num_heads)
        } else if hf_name.contains("self_attn.k_proj") {
            Some(self.num_kv_heads)
        } else {
            None
        }
    }
}

impl TensorSource for GgufSource<'_> {
    fn has(&self, hf_name: &str) -> bool {
        self.content.tensor_infos.contains_key(&gguf_name(hf_name))
    }

    fn matrix(&mut self, hf_name: &str, out: usize, inp: usize) -> Result<Weight> {
        let mut q = self.read(hf_name)?;
        check_shape(hf_name, q.shape().dims(), &[out, inp])?;
        if let Some(heads) = self.heads_for(hf_name) {
            q = permute_qtensor(&q, heads, false)?;
        }
        if !is_quantized_dtype(q.dtype()) {
            return Ok(Weight::Dense(q.dequantize(&Device::Cpu)?));
        }
        Ok(match self.format {
            WeightFormat::Quantized => Weight::Quantized(Arc::new(q)),
            WeightFormat::F32 => Weight::Dense(q.dequantize(&Device::Cpu)?),
            WeightFormat::Hybrid | WeightFormat::Auto => {
                let dense = q.dequantize(&Device::Cpu)?;
                Weight::Hybrid(Arc::new(q), dense)
            }
        })
    }

    fn vector(&mut self, hf_name: &str, len: usize) -> Result<Tensor> {
        let q = self.read(hf_name)?;
        check_shape(hf_name, q.shape().dims(), &[len])?;
        let t = q.dequantize(&Device::Cpu)?;
        match self.heads_for(hf_name) {
            Some(heads) => permute_bias(&t, heads, false),
            None => Ok(t),
        }
    }
}

struct SafetensorsSource {
    tensors: HashMap<String, Tensor>,
}

impl SafetensorsSource {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        Ok(t.to_dtype(DType::F32)?)
    }
}

impl TensorSource for SafetensorsSource {
    fn has(&self, hf_name: &str) -> bool {
        self.tensors.contains_key(hf_name)
    }

    fn matrix(&mut self, hf_name: &str, out: usize, inp: usize) -> Result<Weight> {
        let t = self.take(hf_name)?;
        check_shape(hf_name, t.dims(), &[out, inp])?;
        Ok(Weight::Dense(t))
    }

    fn vector(&mut self, hf_name: &str, len: usize) -> Result<Tensor> {
        let t = self.take(hf_name)?;
        check_shape(hf_name, t.dims(), &[len])?;
        Ok(t)
    }
}

fn build(cfg: LlamaConfig, src: &mut dyn TensorSource) -> Result<Llama> {
    let h = cfg.hidden_size;
    let embed = src.matrix("model.embed_tokens.weight", cfg.vocab_size, h)?;
    // Not reserved from `num_layers`: that count is the file's claim, and a
    // layer only exists once its tensors are read.
    let mut blocks = Vec::new();
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        let mut lin = |t: LoraTarget| -> Result<Linear> {
            let (inp, out) = t.dims(&cfg);
            let base = format!("{p}.{}.{}", t.parent(), t.name());
            let weight = src.matrix(&format!("{base}.weight"), out, inp)?;
            let bias_name = format!("{base}.bias");
            let wants_bias = cfg.attention_bias
                && matches!(t, LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj);
            let bias = if wants_bias || src.has(&bias_name) {
                Some(src.vector(&bias_name, out)?)
            } else {
                None
            };
            Ok(Linear { weight, bias })
        };
        let linears = [
            lin(LoraTarget::QProj)?,
            lin(LoraTarget::KProj)?,
            lin(LoraTarget::VProj)?,
            lin(LoraTarget::OProj)?,
            lin(LoraTarget::GateProj)?,
            lin(LoraTarget::UpProj)?,
            lin(LoraTarget::DownProj)?,
        ];
        blocks.push(Block {
            attn_norm: src.vector(&format!("{p}.input_layernorm.weight"), h)?,
            mlp_norm: src.vector(&format!("{p}.post_attention_layernorm.weight"), h)?,
            linears,
        });
    }
    let norm = src.vector("model.norm.weight", h)?;
    let lm_head = if cfg.tie_word_embeddings && !src.has("lm_head.weight") {
        None
    } else {
        Some(src.matrix("lm_head.weight", cfg.vocab_size, h)?)
    };
    Llama::new(cfg, embed, blocks, norm, lm_head)
}

/// Loads a GGUF file.
pub(crate) fn load_gguf(path: &Path, format: WeightFormat) -> Result<Loaded> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = read_gguf_header(path, &mut reader)?;
    let cfg = LlamaConfig::from_gguf(&content, path)?;
    let tokenizer = tokenizer_from_gguf(&content, path)?;
    let md = |k: &str| {
        content
            .metadata
            .get(k)
            .and_then(|v| v.to_string().ok())
            .cloned()
    };
    let template = ChatTemplate::from_jinja(md("tokenizer.chat_template").as_deref());
    let file_dtype = content
        .tensor_infos
        .get("blk.0.attn_q.weight")
        .map(|t| format!("{:?}", t.ggml_dtype))
        .unwrap_or_else(|| "unknown".into());
    let mut src = GgufSource {
        path,
        reader,
        content: &content,
        format,
        num_heads: cfg.num_heads,
        num_kv_heads: cfg.num_kv_heads,
    };
    let llama = build(cfg, &mut src)?;
    tracing::info!(target: "trib::model", path = %path.display(), dtype = %file_dtype,
        quantized = llama.is_quantized(), "loaded GGUF model");
    Ok(Loaded {
        llama,
        tokenizer,
        template,
        name: md("general.name").unwrap_or_else(|| stem(path)),
        license: md("general.license"),
        file_dtype,
    })
}

/// Reads a GGUF file's header (metadata and tensor table, no tensor data)
/// the way the loader does: hostile values candle's reader does not check
/// are refused first. `path` names the file in errors.
pub fn read_gguf_header<R: Read + Seek>(path: &Path, reader: &mut R) -> Result<gguf_file::Content> {
    check_alignment(path, reader)?;
    let content = gguf_file::Content::read(reader)
        .map_err(|e| ModelError::gguf(path, format!("not a readable GGUF file: {e}")))?;
    let file_size = reader
        .seek(SeekFrom::End(0))
        .map_err(|e| ModelError::io(path, e))?;
    for (name, info) in &content.tensor_infos {
        check_tensor_extent(path, name, info, content.tensor_data_offset, file_size)?;
    }
    Ok(content)
}

/// Refuses a tensor table entry whose data cannot lie inside the file,
/// before candle's `TensorInfo::read` sees it: candle multiplies the
/// dimensions unchecked (an overflow panic in debug builds, a wrapped and
/// so wrong size in release builds). The element count and byte size are
/// computed with `checked_mul` and the bytes must fit between the entry's
/// offset and the end of the file.
fn check_tensor_extent(
    path: &Path,
    name: &str,
    info: &gguf_file::TensorInfo,
    data_offset: u64,
    file_size: u64,
) -> Result<()> {
    let dims = info.shape.dims();
    let refuse = |why: String| ModelError::gguf(path, format!("tensor `{name}` {dims:?}: {why}"));
    let elems = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| refuse("the product of its dimensions overflows 64 bits".into()))?;
    let block = info.ggml_dtype.block_size() as u64;
    if !elems.is_multiple_of(block) {
        return Err(refuse(format!(
            "{elems} elements are not a multiple of the {:?} block size {block}",
            info.ggml_dtype
        )));
    }
    let bytes = (elems / block)
        .checked_mul(info.ggml_dtype.type_size() as u64)
        .ok_or_else(|| refuse("its size in bytes overflows 64 bits".into()))?;
    let start = data_offset.saturating_add(info.offset);
    let remaining = file_size.saturating_sub(start);
    if bytes > remaining {
        return Err(refuse(format!(
            "needs {bytes} bytes at offset {start}, the file has {remaining} bytes from there"
        )));
    }
    Ok(())
}

/// Refuses `general.alignment = 0` before candle's reader sees it: candle
/// divides the header's end by that value unchecked (a panic). Walks the
/// metadata without keeping it; anything malformed is left for candle's
/// reader to report, and the reader is put back where it was.
fn check_alignment<R: Read + Seek>(path: &Path, reader: &mut R) -> Result<()> {
    let start = reader
        .stream_position()
        .map_err(|e| ModelError::io(path, e))?;
    let zero = GgufWalk {
        r: &mut *reader,
        wide: true,
    }
    .alignment_is_zero();
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| ModelError::io(path, e))?;
    if zero == Some(true) {
        return Err(ModelError::gguf(
            path,
            "general.alignment is 0 (tensor data must be aligned to a positive number of bytes)",
        ));
    }
    Ok(())
}

/// A forward walk over a GGUF header's metadata (`None`: malformed).
struct GgufWalk<'a, R> {
    r: &'a mut R,
    /// Lengths and counts are u64 from version 2 on, u32 in version 1.
    wide: bool,
}

impl<R: Read + Seek> GgufWalk<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).ok()?;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn len(&mut self) -> Option<u64> {
        if self.wide {
            self.bytes().map(u64::from_le_bytes)
        } else {
            self.u32().map(u64::from)
        }
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.r
            .seek(SeekFrom::Current(i64::try_from(n).ok()?))
            .ok()?;
        Some(())
    }

    /// Skips one value of GGUF type `ty`; returns it when it is an
    /// unsigned or signed integer of at most 32 bits (candle reads the
    /// alignment only from those).
    fn value(&mut self, ty: u32, depth: u32) -> Option<Option<i64>> {
        Some(match ty {
            0 => Some(i64::from(self.bytes::<1>()?[0])),
            1 => Some(i64::from(self.bytes::<1>()?[0] as i8)),
            2 => Some(i64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Some(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Some(i64::from(self.u32()?)),
            5 => Some(i64::from(i32::from_le_bytes(self.bytes()?))),
            7 => self.skip(1).map(|_| None)?,
            6 => self.skip(4).map(|_| None)?,
            10..=12 => self.skip(8).map(|_| None)?,
            8 => {
                let n = self.len()?;
                self.skip(n).map(|_| None)?
            }
            9 if depth < 8 => {
                let elem = self.u32()?;
                let n = self.len()?;
                let fixed = match elem {
                    0 | 1 | 7 => Some(1u64),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    Some(size) => self.skip(n.checked_mul(size)?)?,
                    None => {
                        for _ in 0..n {
                            self.value(elem, depth + 1)?;
                        }
                    }
                }
                None
            }
            _ => return None,
        })
    }

    fn alignment_is_zero(&mut self) -> Option<bool> {
        if &self.bytes::<4>()? != b"GGUF" {
            return None;
        }
        self.wide = self.u32()? >= 2;
        let _tensors = self.len()?;
        let kvs = self.len()?;
        let mut zero = false;
        for _ in 0..kvs {
            let key_len = self.len()?;
            let mut key = Vec::new();
            (&mut *self.r).take(key_len).read_to_end(&mut key).ok()?;
            if key.len() as u64 != key_len {
                return None;
            }
            let ty = self.u32()?;
            let value = self.value(ty, 0)?;
            if key == b"general.alignment" {
                zero = value == Some(0);
            }
        }
        Some(zero)
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The weight files of a Hugging Face directory: `model.safetensors`, or the
/// shards named by `model.safetensors.index.json`.
pub(crate) fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::MissingFile(single));
    }
    let bytes = std::fs::read(&index).map_err(|e| ModelError::io(&index, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
            path: index.clone(),
            source,
        })?;
    let mut files: Vec<String> = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Config(format!("{}: no weight_map", index.display())))?
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            if f.contains('/') || f.contains("..") {
                return Err(ModelError::Config(format!(
                    "shard name `{f}` escapes the directory"
                )));
            }
            Ok(dir.join(f))
        })
        .collect()
}

/// Loads a Hugging Face directory (`config.json`, `model.safetensors`,
/// `tokenizer.json`, optional `tokenizer_config.json` for the chat template).
pub(crate) fn load_hf_dir(dir: &Path) -> Result<Loaded> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ModelError::MissingFile(config_path));
    }
    let hf = HfConfig::read(&config_path)?;
    let cfg = hf.to_runtime()?;
    let tokenizer = tokenizer_from_file(&dir.join("tokenizer.json"))?;
    let mut tensors = HashMap::new();
    for f in hf_weight_files(dir)? {
        if !f.is_file() {
            return Err(ModelError::MissingFile(f));
        }
        let part = candle_core::safetensors::load(&f, &Device::Cpu).map_err(|e| {
            ModelError::Config(format!(
                "{}: not a readable safetensors file: {e}",
                f.display()
            ))
        })?;
        tensors.extend(part);
    }
    let template_src = std::fs::read(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("chat_template")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        });
    let template = ChatTemplate::from_jinja(template_src.as_deref());
    let mut src = SafetensorsSource { tensors };
    let llama = build(cfg, &mut src)?;
    tracing::info!(target: "trib::model", dir = %dir.display(), "loaded safetensors model");
    let name = hf
        .extra
        .get("_name_or_path")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| stem(dir));
    Ok(Loaded {
        llama,
        tokenizer,
        template,
        name,
        license: None,
        file_dtype: hf
            .extra
            .get("torch_dtype")
            .and_then(|v| v.as_str())
            .unwrap_or("float32")
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn hf_names_map_to_llama_cpp_names() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.weight"),
            "blk.3.attn_q.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight"),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(gguf_name("lm_head.weight"), "output.weight");
    }
}
