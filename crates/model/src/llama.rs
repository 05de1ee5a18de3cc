//! The Llama-family decoder: Touvron et al., "LLaMA: Open and Efficient
//! Foundation Language Models" (2023, arXiv:2302.13971) and "Llama 2"
//! (arXiv:2307.09288): pre-norm residual blocks with RMSNorm (Zhang & Sennrich
//! 2019), rotary position embeddings (Su et al. 2021, arXiv:2104.09864) in the
//! Hugging Face "rotate_half" layout, grouped-query attention (Ainslie et al.
//! 2023, arXiv:2305.13245) and a SwiGLU MLP (Shazeer 2020, arXiv:2002.05202).
//! Qwen2 adds q/k/v biases; Mistral is the same layout.
//!
//! Written for this project, with two execution modes over the same weights:
//!
//! - **inference** ([`Llama::forward_chunks`]): rows of many sequences are
//!   stacked so every projection runs once for the whole batch, attention runs
//!   per sequence against its own [`KvCache`], LoRA runs per adapter group
//!   (gather rows, `x·Aᵀ·Bᵀ·s`, scatter-add: a CPU form of Punica's SGMV),
//!   or per row (BGMV) when a step has many adapters with few rows each.
//!   Uses candle's fused `rms_norm`, `softmax_last_dim` and `rope`, and may
//!   keep GGUF weights quantized.
//! - **training** ([`Llama::forward_train`]): only ops with a backward pass.
//!   The fused kernels above have none in candle 0.11 and silently drop
//!   gradients, and a quantized matmul has none either, so RMSNorm, softmax
//!   and rope are written from primitive ops over dense f32 weights. Base
//!   projections and the LM head go through [`frozen_linear`], whose
//!   backward skips the (discarded) weight gradient.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
#[cfg(test)]
use candle_core::D;
use candle_core::{DType, Device, Module, Tensor};

use crate::amx::{Bf16Kernel, Bf16Weight};
use crate::config::LlamaConfig;
use crate::decode::{LeanWeights, LEAN_MAX_ROWS};
use crate::error::{ModelError, Result};
use crate::frozen::{frozen_linear, FrozenWeight};
use crate::kv_cache::KvCache;
use crate::lora::{LoraAdapter, LoraDropout, LoraTarget};
use crate::train_kernels::{
    causal_softmax, from_heads, rms_norm_frozen, swiglu, to_heads, HeadLayout, RopeTables,
};

/// Up to this many rows, a [`Weight::Hybrid`] multiplies with the quantized
/// blocks (a memory-bound matrix-vector product, where reading 5 bits per
/// weight for Q4_1 instead of 32 can win when the kernels are SIMD); above
/// it, with the dense copy (a compute-bound matrix product, where candle's
/// f32 gemm with runtime-detected SIMD wins). Measured in docs/model.md.
pub(crate) const QUANTIZED_MAX_ROWS: usize = 1;

/// A projection matrix `[out, in]`, dense f32 or ggml-quantized.
#[derive(Clone, Debug)]
pub(crate) enum Weight {
    /// Quantized blocks, multiplied without dequantizing (no backward).
    Quantized(Arc<QTensor>),
    /// Dense f32.
    Dense(Tensor),
    /// Both: quantized for single-row decode, dense for everything else.
    Hybrid(Arc<QTensor>, Tensor),
    /// bf16 tiles for training's frozen products ([`Llama::for_training_bf16`]).
    Bf16(Arc<Bf16Weight>),
}

impl Weight {
    /// `x·Wᵀ` for `x: [n, in]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => QMatMul::QTensor(q.clone()).forward(x)?,
            Weight::Dense(w) => x.matmul(&w.t()?)?,
            Weight::Hybrid(q, w) => {
                if x.dim(0)? <= QUANTIZED_MAX_ROWS {
                    QMatMul::QTensor(q.clone()).forward(x)?
                } else {
                    x.matmul(&w.t()?)?
                }
            }
            Weight::Bf16(w) => frozen_linear(x, FrozenWeight::Bf16(w))?,
        })
    }

    /// Dense f32 copy (dequantizing if needed).
    pub(crate) fn to_dense(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => q.dequantize(&Device::Cpu)?,
            Weight::Dense(t) | Weight::Hybrid(_, t) => t.clone(),
            Weight::Bf16(w) => w.to_tensor()?,
        })
    }

    /// The weight as the training forward's frozen products take it.
    fn frozen(&self) -> Result<FrozenWeight<'_>> {
        match self {
            Weight::Dense(t) | Weight::Hybrid(_, t) => Ok(FrozenWeight::F32(t)),
            Weight::Bf16(w) => Ok(FrozenWeight::Bf16(w)),
            Weight::Quantized(_) => Err(ModelError::NeedsDenseWeights),
        }
    }

    /// Rows of an embedding matrix.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => q.embedding(ids)?,
            Weight::Dense(w) | Weight::Hybrid(_, w) => w.index_select(ids, 0)?,
            Weight::Bf16(w) => w.to_tensor()?.index_select(ids, 0)?,
        })
    }

    /// A short name of the storage type (`Q4_1`, `F32`).
    pub(crate) fn dtype_name(&self) -> String {
        match self {
            Weight::Quantized(q) => format!("{:?}", q.dtype()),
            Weight::Dense(_) => "F32".to_string(),
            Weight::Hybrid(q, _) => format!("{:?}+F32", q.dtype()),
            Weight::Bf16(w) => format!("BF16 ({})", w.kernel().name()),
        }
    }
}

/// A projection with optional bias.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Weight,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// One decoder block.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) attn_norm: Tensor,
    pub(crate) mlp_norm: Tensor,
    /// q, k, v, o, gate, up, down, indexed by [`LoraTarget::index`].
    pub(crate) linears: [Linear; 7],
}

impl Block {
    fn lin(&self, t: LoraTarget) -> &Linear {
        &self.linears[t as usize]
    }
}

/// The decoder's weights and rotary tables.
#[derive(Clone, Debug)]
pub(crate) struct Llama {
    pub(crate) cfg: LlamaConfig,
    pub(crate) embed: Weight,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: Tensor,
    /// `None` when tied to the embedding.
    pub(crate) lm_head: Option<Weight>,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    /// The weights in the decode kernels' layout, packed on first use
    /// (eagerly when loaded, see [`Llama::new`]).
    lean: Arc<OnceLock<Arc<LeanWeights>>>,
    /// Whether decode steps take the lean path (default); off only for
    /// A/B measurements ([`crate::Model::set_lean_decode`]).
    pub(crate) lean_decode: bool,
}

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

/// Up to this many rows per adapter (on average over the adapters in a
/// step), the LoRA term runs per row (BGMV, [`add_lora_per_row`]); above
/// it, per adapter group with candle matmuls (SGMV, [`add_lora_grouped`]).
/// Decode steps with many distinct adapters have 1–4 rows per adapter;
/// prefill chunks and single-adapter batches have many. See docs/model.md.
pub(crate) const BGMV_MAX_ROWS_PER_ADAPTER: usize = 4;

/// How the LoRA terms of one inference step are computed.
enum LoraPlan<'a> {
    /// SGMV: per adapter, gather its rows, two matmuls, scatter-add.
    Grouped(Vec<AdapterGroup<'a>>),
    /// BGMV: one pass over the rows, each with its own adapter (or none).
    PerRow(Vec<Option<&'a LoraAdapter>>),
}

/// Rows of a stacked batch that share one adapter.
struct AdapterGroup<'a> {
    adapter: &'a LoraAdapter,
    /// Row indices (u32), `None` when the group covers every row.
    rows: Option<Tensor>,
}

fn rope_tables(cfg: &LlamaConfig) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64)) as f32)
        .collect();
    let n = cfg.max_seq_len;
    let mut angles = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            angles.push(p as f32 * f);
        }
    }
    let a = Tensor::from_vec(angles, (n, half), &Device::Cpu)?;
    Ok((a.cos()?, a.sin()?))
}

/// `(tokens, tokens)` additive causal mask for a chunk of `n` queries at
/// absolute positions `past..past+n` over `past+n` keys.
pub(crate) fn causal_mask(n: usize, past: usize) -> Result<Tensor> {
    let t = past + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..t).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, t), &Device::Cpu)?)
}

impl Llama {
    pub(crate) fn new(
        cfg: LlamaConfig,
        embed: Weight,
        blocks: Vec<Block>,
        norm: Tensor,
        lm_head: Option<Weight>,
    ) -> Result<Self> {
        let (cos, sin) = rope_tables(&cfg)?;
        let llama = Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            cos,
            sin,
            lean: Arc::default(),
            lean_decode: true,
        };
        // Packed at load, so the first request does not pay for it.
        llama.lean()?;
        Ok(llama)
    }

    /// The decode kernels' layout of the weights (packed on first use).
    pub(crate) fn lean(&self) -> Result<&LeanWeights> {
        if let Some(l) = self.lean.get() {
            return Ok(l);
        }
        let built = Arc::new(LeanWeights::build(self)?);
        Ok(self.lean.get_or_init(|| built))
    }

    fn head(&self) -> &Weight {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Storage type of the projections (`Q4_1`, `F32`).
    pub(crate) fn weight_dtype(&self) -> String {
        self.blocks
            .first()
            .map(|b| b.linears[0].weight.dtype_name())
            .unwrap_or_else(|| "F32".into())
    }

    /// Whether any weight is held only in quantized form (no dense copy, so
    /// the training forward is refused).
    pub(crate) fn is_quantized(&self) -> bool {
        matches!(self.embed, Weight::Quantized(_))
            || self
                .blocks
                .iter()
                .flat_map(|b| b.linears.iter())
                .any(|l| matches!(l.weight, Weight::Quantized(_)))
    }

    /// The same model with every weight dequantized to dense f32.
    pub(crate) fn to_dense(&self) -> Result<Self> {
        let dense = |w: &Weight| -> Result<Weight> { Ok(Weight::Dense(w.to_dense()?)) };
        let lm_head = self.lm_head.as_ref().map(dense).transpose()?;
        self.with_projections(dense, dense(&self.embed)?, lm_head)
    }

    /// The training copy of a model: every projection and the LM head
    /// rounded to bf16 and packed for `kernel` ([`crate::amx`]), one
    /// dequantized weight at a time when the source is quantized. The
    /// embedding keeps its storage (rows are looked up, not multiplied: no
    /// 113 MiB f32 table for SmolLM2 when the source is quantized); a tied
    /// head gets its own bf16 copy. No f32 projection is kept.
    pub(crate) fn for_training_bf16(&self, kernel: Bf16Kernel) -> Result<Self> {
        let pack = |w: &Weight| -> Result<Weight> {
            Ok(Weight::Bf16(Arc::new(Bf16Weight::from_tensor(
                &w.to_dense()?,
                kernel,
            )?)))
        };
        let lm_head = Some(pack(self.head())?);
        self.with_projections(pack, self.embed.clone(), lm_head)
    }

    /// A copy with every block projection mapped through `f`, the given
    /// embedding and head, and the rest shared. The decode layout is packed
    /// lazily: a training copy never decodes, and `merged` changes the
    /// weights after `to_dense`.
    fn with_projections(
        &self,
        f: impl Fn(&Weight) -> Result<Weight>,
        embed: Weight,
        lm_head: Option<Weight>,
    ) -> Result<Self> {
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let mut linears = b.linears.clone();
            for l in linears.iter_mut() {
                l.weight = f(&l.weight)?;
            }
            blocks.push(Block {
                attn_norm: b.attn_norm.clone(),
                mlp_norm: b.mlp_norm.clone(),
                linears,
            });
        }
        Ok(Self {
            cfg: self.cfg.clone(),
            embed,
            blocks,
            norm: self.norm.clone(),
            lm_head,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            lean: Arc::default(),
            lean_decode: self.lean_decode,
        })
    }

    /// Dense copy with `W + s·B·A` merged into every adapted projection.
    pub(crate) fn merged(&self, adapter: &LoraAdapter) -> Result<Self> {
        adapter.check_fits(&self.cfg)?;
        let mut out = self.to_dense()?;
        for (l, t, _) in adapter.iter_pairs() {
            let delta = adapter.delta(l, t)?.expect("pair exists");
            let lin = &mut out.blocks[l].linears[t.index()];
            let w = lin.weight.to_dense()?;
            lin.weight = Weight::Dense((w + delta)?);
        }
        Ok(out)
    }

    /// Every tensor under its Hugging Face name, dense f32.
    pub(crate) fn hf_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            (
                "model.embed_tokens.weight".to_string(),
                self.embed.to_dense()?,
            ),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h.to_dense()?));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), b.attn_norm.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                b.mlp_norm.clone(),
            ));
            for t in LoraTarget::ALL {
                let lin = b.lin(t);
                let name = format!("{p}.{}.{}", t.parent(), t.name());
                out.push((format!("{name}.weight"), lin.weight.to_dense()?));
                if let Some(bias) = &lin.bias {
                    out.push((format!("{name}.bias"), bias.clone()));
                }
            }
        }
        Ok(out)
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.cfg.vocab_size,
            });
        }
        Ok(())
    }

    /// One inference step over several sequences. Returns logits `[rows,
    /// vocab]`: the last position of each chunk, or every position when
    /// `all_positions`. Caches advance only when the whole step succeeds.
    ///
    /// The lean path (`crate::decode`) takes every step when its kernels
    /// read quantized blocks that no dense copy beats (see
    /// `LeanWeights::takes_every_step`: prefill, large batches and mixed
    /// steps included); otherwise it takes decode steps of at most
    /// [`LEAN_MAX_ROWS`] sequences and the candle path (f32 gemm) the rest.
    pub(crate) fn forward_chunks(
        &self,
        chunks: &mut [SeqChunk<'_>],
        all_positions: bool,
    ) -> Result<Tensor> {
        self.validate(chunks)?;
        if self.lean_decode {
            let lean = self.lean()?;
            let rows: usize = chunks.iter().map(|c| c.tokens.len()).sum();
            let small_decode = !all_positions && rows <= LEAN_MAX_ROWS && rows == chunks.len();
            if small_decode || lean.takes_every_step() {
                return lean.forward(self, chunks, all_positions);
            }
        }
        self.forward_candle(chunks, all_positions)
    }

    fn validate(&self, chunks: &[SeqChunk<'_>]) -> Result<()> {
        if chunks.is_empty() || chunks.iter().any(|c| c.tokens.is_empty()) {
            return Err(ModelError::Generation(
                "a forward step needs at least one token per sequence".into(),
            ));
        }
        for c in chunks.iter() {
            self.check_tokens(c.tokens)?;
            c.cache.check_room(c.tokens.len())?;
            if let Some(a) = c.adapter {
                if a.num_layers() != self.cfg.num_layers {
                    a.check_fits(&self.cfg)?;
                }
            }
        }
        Ok(())
    }

    /// [`Llama::forward_chunks`] in candle ops (fused kernels, gemm),
    /// for inputs already validated.
    pub(crate) fn forward_candle(
        &self,
        chunks: &mut [SeqChunk<'_>],
        all_positions: bool,
    ) -> Result<Tensor> {
        let _span =
            tracing::trace_span!(target: "trib::model", "forward", chunks = chunks.len()).entered();
        let ids: Vec<u32> = chunks
            .iter()
            .flat_map(|c| c.tokens.iter().copied())
            .collect();
        let n_rows = ids.len();
        let ids = Tensor::from_vec(ids, n_rows, &Device::Cpu)?;
        let plan = Self::lora_plan(chunks, n_rows)?;
        let eps = self.cfg.rms_norm_eps as f32;
        let mut x = self.embed.embed(&ids)?;
        for (li, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, eps)?;
            let q = self.project(li, block, LoraTarget::QProj, &h, &plan)?;
            let k = self.project(li, block, LoraTarget::KProj, &h, &plan)?;
            let v = self.project(li, block, LoraTarget::VProj, &h, &plan)?;
            let mut outs = Vec::with_capacity(chunks.len());
            let mut row = 0;
            for c in chunks.iter_mut() {
                let n = c.tokens.len();
                outs.push(self.attend(
                    li,
                    &q.narrow(0, row, n)?,
                    &k.narrow(0, row, n)?,
                    &v.narrow(0, row, n)?,
                    c.cache,
                )?);
                row += n;
            }
            let attn = if outs.len() == 1 {
                outs.pop().expect("one")
            } else {
                Tensor::cat(&outs, 0)?
            };
            x = (x + self.project(li, block, LoraTarget::OProj, &attn, &plan)?)?;
            let h = candle_nn::ops::rms_norm(&x, &block.mlp_norm, eps)?;
            let g = self.project(li, block, LoraTarget::GateProj, &h, &plan)?;
            let u = self.project(li, block, LoraTarget::UpProj, &h, &plan)?;
            let m = (g.silu()? * u)?;
            x = (x + self.project(li, block, LoraTarget::DownProj, &m, &plan)?)?;
        }
        for c in chunks.iter_mut() {
            c.cache.advance(c.tokens.len());
        }
        let x = if all_positions {
            x
        } else {
            let mut last = Vec::with_capacity(chunks.len());
            let mut row = 0u32;
            for c in chunks.iter() {
                row += c.tokens.len() as u32;
                last.push(row - 1);
            }
            if last.len() == n_rows {
                x
            } else {
                let idx = Tensor::from_vec(last.clone(), last.len(), &Device::Cpu)?;
                x.index_select(&idx, 0)?
            }
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        match self.head() {
            // Logits stay exact f32 even in single-row decode: the q8
            // activations of a quantized head flip near-ties (SmolLM2's
            // first answer token to "What is the capital of France?" is one,
            // see docs/model.md).
            Weight::Hybrid(_, w) => Ok(x.matmul(&w.t()?)?),
            head => head.forward(&x),
        }
    }

    /// Picks BGMV or SGMV for a step by rows per adapter.
    fn lora_plan<'a>(chunks: &[SeqChunk<'a>], n_rows: usize) -> Result<LoraPlan<'a>> {
        let mut distinct: Vec<&LoraAdapter> = Vec::new();
        let mut adapted_rows = 0;
        for c in chunks {
            if let Some(a) = c.adapter {
                adapted_rows += c.tokens.len();
                if !distinct.iter().any(|d| std::ptr::eq(*d, a)) {
                    distinct.push(a);
                }
            }
        }
        if distinct.len() >= 2 && adapted_rows <= BGMV_MAX_ROWS_PER_ADAPTER * distinct.len() {
            let rows = chunks
                .iter()
                .flat_map(|c| std::iter::repeat_n(c.adapter, c.tokens.len()))
                .collect();
            return Ok(LoraPlan::PerRow(rows));
        }
        Ok(LoraPlan::Grouped(Self::adapter_groups(chunks, n_rows)?))
    }

    fn adapter_groups<'a>(chunks: &[SeqChunk<'a>], n_rows: usize) -> Result<Vec<AdapterGroup<'a>>> {
        let mut groups: Vec<(&'a LoraAdapter, Vec<u32>)> = Vec::new();
        let mut row = 0u32;
        for c in chunks {
            let n = c.tokens.len() as u32;
            if let Some(a) = c.adapter {
                match groups.iter_mut().find(|(g, _)| std::ptr::eq(*g, a)) {
                    Some((_, rows)) => rows.extend(row..row + n),
                    None => groups.push((a, (row..row + n).collect())),
                }
            }
            row += n;
        }
        groups
            .into_iter()
            .map(|(adapter, rows)| {
                let rows = if rows.len() == n_rows {
                    None
                } else {
                    let len = rows.len();
                    Some(Tensor::from_vec(rows, len, &Device::Cpu)?)
                };
                Ok(AdapterGroup { adapter, rows })
            })
            .collect()
    }

    /// Base projection for all rows, plus the LoRA term per adapter group.
    fn project(
        &self,
        layer: usize,
        block: &Block,
        target: LoraTarget,
        x: &Tensor,
        plan: &LoraPlan<'_>,
    ) -> Result<Tensor> {
        let y = block.lin(target).forward(x)?;
        match plan {
            LoraPlan::Grouped(groups) => add_lora_grouped(layer, target, x, y, groups),
            LoraPlan::PerRow(rows) => add_lora_per_row(layer, target, x, y, rows),
        }
    }

    /// Attention of one sequence's new rows against its cache.
    fn attend(
        &self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let n = q.dim(0)?;
        let pos = cache.len();
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        let q = q
            .reshape((n, h, hd))?
            .transpose(0, 1)?
            .contiguous()?
            .unsqueeze(0)?;
        let k = k
            .reshape((n, kvh, hd))?
            .transpose(0, 1)?
            .contiguous()?
            .unsqueeze(0)?;
        let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?.squeeze(0)?;
        let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?.squeeze(0)?;
        let v = v.reshape((n, kvh, hd))?.transpose(0, 1)?;
        let (k_all, v_all) = cache.append(layer, &k, &v)?;
        let groups = h / kvh;
        // Query heads j·groups..(j+1)·groups share kv head j (HF repeat_kv order).
        let q = q.reshape((kvh, groups * n, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = (q.matmul(&k_all.t()?)? * scale)?;
        if n > 1 {
            let t = pos + n;
            let mask = causal_mask(n, pos)?;
            scores = scores
                .reshape((kvh, groups, n, t))?
                .broadcast_add(&mask)?
                .reshape((kvh, groups * n, t))?;
        }
        let p = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = p.matmul(&v_all)?;
        Ok(out
            .reshape((h, n, hd))?
            .transpose(0, 1)?
            .reshape((n, h * hd))?)
    }

    /// Differentiable forward over a batch `tokens: [b, t]` (u32) from
    /// position 0, no cache. Returns logits `[b, t, vocab]`.
    pub(crate) fn forward_train(
        &self,
        tokens: &Tensor,
        adapter: Option<&LoraAdapter>,
        dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let x = self.forward_train_hidden(tokens, adapter, dropout)?;
        // The head is frozen: no weight gradient (see crate::frozen).
        let logits = frozen_linear(&x, self.head().frozen()?)?;
        Ok(logits.reshape((b, t, self.cfg.vocab_size))?)
    }

    /// [`Llama::forward_train`]'s logits at the flat positions `rows`
    /// (`r·t + i`) only, `[rows, vocab]`: the LM head (49,152 × 576 for
    /// SmolLM2, forward and backward) runs over the positions a masked loss
    /// reads, not over prompt tokens.
    pub(crate) fn forward_train_rows(
        &self,
        tokens: &Tensor,
        rows: &[u32],
        adapter: Option<&LoraAdapter>,
        dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= b * t) {
            return Err(ModelError::Generation(format!(
                "logit row {bad} is outside a [{b}, {t}] batch"
            )));
        }
        let x = self.forward_train_hidden(tokens, adapter, dropout)?;
        let idx = Tensor::from_vec(rows.to_vec(), rows.len(), x.device())?;
        let picked = x.index_select(&idx, 0)?;
        frozen_linear(&picked, self.head().frozen()?)
    }

    /// The training forward up to the final RMSNorm: `[b·t, hidden]`.
    fn forward_train_hidden(
        &self,
        tokens: &Tensor,
        adapter: Option<&LoraAdapter>,
        mut dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!(target: "trib::model", "forward_train").entered();
        let (b, t) = tokens.dims2()?;
        if t > self.cfg.max_seq_len {
            return Err(ModelError::ContextOverflow {
                needed: t,
                max: self.cfg.max_seq_len,
            });
        }
        if let Some(a) = adapter {
            a.check_fits(&self.cfg)?;
        }
        let flat = tokens.flatten_all()?.to_dtype(DType::U32)?;
        self.check_tokens(&flat.to_vec1::<u32>()?)?;
        let cfg = &self.cfg;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps;
        let mut x = self.embed.embed(&flat)?; // [b·t, hidden]
        let rope = RopeTables::new(&self.cos, &self.sin, t)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let groups = h / kvh;
        for (li, block) in self.blocks.iter().enumerate() {
            let hn = rms_norm_frozen(&x, &block.attn_norm, eps)?;
            let mut lin = |target: LoraTarget, input: &Tensor| -> Result<Tensor> {
                self.project_train(li, block, target, input, adapter, dropout.as_deref_mut())
            };
            let q = lin(LoraTarget::QProj, &hn)?;
            let k = lin(LoraTarget::KProj, &hn)?;
            let v = lin(LoraTarget::VProj, &hn)?;
            // Heads, rope'd on the way (fused ops with hand-written
            // backward, crate::train_kernels). Query heads
            // j·groups..(j+1)·groups share kv head j (HF repeat_kv order), so
            // q is laid out [b, kvh, groups·t, hd] and multiplies its kv head
            // (laid out transposed, [b, kvh, hd, t]) directly: no repeated k
            // and v, and no reshape or transpose views in the graph.
            let q = to_heads(&q, b, t, h, Some(&rope), HeadLayout::Grouped(groups))?;
            let kt = to_heads(&k, b, t, kvh, Some(&rope), HeadLayout::Transposed)?;
            let v = to_heads(&v, b, t, kvh, None, HeadLayout::Grouped(1))?;
            let p = causal_softmax(&q.matmul(&kt)?, scale)?;
            let o = from_heads(&p.matmul(&v)?, h)?;
            x = (x + lin(LoraTarget::OProj, &o)?)?;
            let hn = rms_norm_frozen(&x, &block.mlp_norm, eps)?;
            let g = lin(LoraTarget::GateProj, &hn)?;
            let u = lin(LoraTarget::UpProj, &hn)?;
            let m = swiglu(&g, &u)?;
            x = (x + lin(LoraTarget::DownProj, &m)?)?;
        }
        rms_norm_frozen(&x, &self.norm, eps)
    }

    fn project_train(
        &self,
        layer: usize,
        block: &Block,
        target: LoraTarget,
        x: &Tensor,
        adapter: Option<&LoraAdapter>,
        dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        let lin = block.lin(target);
        let mut y = frozen_linear(x, lin.weight.frozen()?)?;
        if let Some(b) = &lin.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(pair) = adapter.and_then(|a| a.pair(layer, target)) {
            let s = adapter.expect("pair implies adapter").scaling();
            let xd = match dropout {
                Some(d) => d.apply(x)?,
                None => x.clone(),
            };
            let d = xd.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)?;
            y = (y + (d * s)?)?;
        }
        Ok(y)
    }
}

/// SGMV: `y + s·(x_g·Aᵀ)·Bᵀ` per adapter group `g` (gather, two matmuls,
/// scatter-add), about five candle ops per group.
fn add_lora_grouped(
    layer: usize,
    target: LoraTarget,
    x: &Tensor,
    mut y: Tensor,
    groups: &[AdapterGroup<'_>],
) -> Result<Tensor> {
    for g in groups {
        let Some(pair) = g.adapter.pair(layer, target) else {
            continue;
        };
        let s = g.adapter.scaling();
        match &g.rows {
            None => {
                let d = x.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)?;
                y = (y + (d * s)?)?;
            }
            Some(rows) => {
                let xs = x.index_select(rows, 0)?;
                let d = (xs.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)? * s)?;
                y = y.index_add(rows, &d, 0)?;
            }
        }
    }
    Ok(y)
}

/// The contiguous f32 elements of a CPU tensor, without copying.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::Generation(
            "the per-row LoRA and decode kernels need tensors in CPU memory".into(),
        ));
    };
    let all = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .expect("contiguous() gives a contiguous layout");
    Ok(f(&all[start..end]))
}

/// `Σ a[i]·b[i]` in eight independent lanes, so the loop vectorizes.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.split_at(a.len() - a.len() % 8);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// BGMV: `y_i + s_a·B_a·(A_a·x_i)` for each row `i` with adapter `a`, in one
/// pass over the rows: `O(rows·r·(in + out))` flops, one tensor built for
/// the whole delta, no per-adapter gathers or scatters.
fn add_lora_per_row(
    layer: usize,
    target: LoraTarget,
    x: &Tensor,
    y: Tensor,
    rows: &[Option<&LoraAdapter>],
) -> Result<Tensor> {
    let (n, k) = x.dims2()?;
    let out = y.dim(1)?;
    if rows.len() != n {
        return Err(ModelError::Generation(format!(
            "per-row LoRA: {} row adapters for {n} rows",
            rows.len()
        )));
    }
    let mut delta = vec![0f32; n * out];
    let mut any = false;
    with_f32(x, |xs| -> Result<()> {
        let mut tmp = Vec::new();
        for (i, a) in rows.iter().enumerate() {
            let Some(adapter) = a else { continue };
            let Some(pair) = adapter.pair(layer, target) else {
                continue;
            };
            any = true;
            let s = adapter.scaling() as f32;
            let r = pair.a.dim(0)?;
            if pair.a.dims() != [r, k] || pair.b.dims() != [out, r] {
                return Err(ModelError::AdapterMismatch(format!(
                    "layer {layer} {}: A {:?} and B {:?} do not fit a [{out}, {k}] projection",
                    target.name(),
                    pair.a.dims(),
                    pair.b.dims()
                )));
            }
            let xi = &xs[i * k..(i + 1) * k];
            with_f32(&pair.a, |a| {
                tmp.clear();
                tmp.extend(a.chunks_exact(k).map(|ar| dot(ar, xi) * s));
            })?;
            let di = &mut delta[i * out..(i + 1) * out];
            with_f32(&pair.b, |b| {
                for (d, br) in di.iter_mut().zip(b.chunks_exact(r)) {
                    *d = dot(br, &tmp);
                }
            })?;
        }
        Ok(())
    })??;
    if !any {
        return Ok(y);
    }
    Ok((y + Tensor::from_vec(delta, (n, out), &Device::Cpu)?)?)
}

/// RMSNorm from primitive ops (differentiable): `x / √(mean(x²) + ε) · w`.
/// The training forward uses the fused `rms_norm_frozen`; this stays as the
/// reference the fused kernels are tested against.
#[cfg(test)]
fn rms_norm_diff(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last dim from primitive ops. The max shift is detached:
/// it cancels mathematically and only keeps `exp` in range. The training
/// forward uses the fused `causal_softmax`; this stays as its reference.
#[cfg(test)]
pub(crate) fn softmax_diff(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// "rotate_half" rope from primitive ops: `x·cos + rot(x)·sin` with
/// `rot([x1, x2]) = [-x2, x1]`; `cos`, `sin` are `[t, hd]`. The training
/// forward uses the fused `to_heads`; this stays as its reference.
#[cfg(test)]
pub(crate) fn rope_diff(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?)?)
}

/// `[b, kvh, t, hd]` → `[b, kvh·groups, t, hd]`, each kv head repeated for
/// its query group. The training forward multiplies grouped queries with
/// their shared kv head instead; this stays as the reference.
#[cfg(test)]
pub(crate) fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kvh, groups, t, hd))?
        .reshape((b, kvh * groups, t, hd))?)
}

/// Permutes the rows of a q or k projection between the Hugging Face layout
/// (per head: first half-dims, then second half-dims) and llama.cpp's GGUF
/// layout (per head: pairs interleaved). `to_gguf = false` undoes
/// llama.cpp's `permute(w, n_head)` from `convert_hf_to_gguf.py`:
/// GGUF row `h·hd + 2i + j` holds HF row `h·hd + j·hd/2 + i`.
pub(crate) fn permute_rows(data: &[u8], rows: usize, n_head: usize, to_gguf: bool) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * hd + 2 * i + j;
                let hf = h * hd + j * half + i;
                let (dst, src) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

/// Applies [`permute_rows`] to a (possibly quantized) `[rows, in]` tensor
/// without dequantizing: ggml blocks run along rows, so rows move whole.
pub(crate) fn permute_qtensor(q: &QTensor, n_head: usize, to_gguf: bool) -> Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    let data = q.data()?;
    let permuted = permute_rows(&data, rows, n_head, to_gguf);
    let storage = QStorage::from_data(Cow::Owned(permuted), &Device::Cpu, q.dtype())?;
    Ok(QTensor::new(storage, dims)?)
}

/// Applies [`permute_rows`] to a 1-D f32 bias.
pub(crate) fn permute_bias(b: &Tensor, n_head: usize, to_gguf: bool) -> Result<Tensor> {
    let v: Vec<f32> = b.to_vec1()?;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = permute_rows(&bytes, v.len(), n_head, to_gguf);
    let out: Vec<f32> = p
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Tensor::from_vec(out, v.len(), &Device::Cpu)?)
}

/// Whether a ggml dtype is an actual quantization (not a float format).
pub(crate) fn is_quantized_dtype(d: GgmlDType) -> bool {
    !matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_rows_round_trips_and_matches_llama_cpp_for_one_head() {
        // One head of 4 rows: HF [r0, r1, r2, r3] (halves [r0 r1] [r2 r3])
        // becomes GGUF [r0, r2, r1, r3] (pairs interleaved).
        let data: Vec<u8> = (0..4u8).collect();
        let g = permute_rows(&data, 4, 1, true);
        assert_eq!(g, vec![0, 2, 1, 3]);
        assert_eq!(permute_rows(&g, 4, 1, false), data);
        let data: Vec<u8> = (0..48u8).collect();
        let rt = permute_rows(&permute_rows(&data, 12, 2, true), 12, 2, false);
        assert_eq!(rt, data);
    }

    #[test]
    fn differentiable_softmax_and_norm_match_the_fused_kernels() {
        let x = Tensor::new(
            &[[1.0f32, -2.0, 3.5, 0.25], [0.0, 0.1, -0.1, 9.0]],
            &Device::Cpu,
        )
        .unwrap();
        let w = Tensor::new(&[1.0f32, 0.5, 2.0, -1.0], &Device::Cpu).unwrap();
        let a = softmax_diff(&x).unwrap();
        let b = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6);
        let a = rms_norm_diff(&x, &w, 1e-5).unwrap();
        let b = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5);
    }

    #[test]
    fn per_row_lora_matches_grouped_lora_on_random_adapters() -> Result<()> {
        use crate::lora::LoraConfig;
        use crate::tiny::TinySpec;
        let cfg = TinySpec::default().config();
        let lora = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec![LoraTarget::QProj, LoraTarget::DownProj],
            use_rslora: false,
        };
        let adapters: Vec<LoraAdapter> = (0..3u64)
            .map(|seed| {
                let a = LoraAdapter::init(lora.clone(), &cfg, "tiny", seed)?;
                for (_, _, p) in a.iter_pairs() {
                    p.b.set(&Tensor::randn(0f32, 0.5, p.b.dims(), &Device::Cpu)?)?;
                }
                Ok(a)
            })
            .collect::<Result<_>>()?;
        // Seven rows: adapters 0, none, 1, 0, 2, 2, none.
        let rows: Vec<Option<&LoraAdapter>> =
            [Some(0), None, Some(1), Some(0), Some(2), Some(2), None]
                .iter()
                .map(|i| i.map(|i| &adapters[i]))
                .collect();
        let mut groups = Vec::new();
        for a in &adapters {
            let idx: Vec<u32> = (0..rows.len() as u32)
                .filter(|&i| rows[i as usize].is_some_and(|r| std::ptr::eq(r, a)))
                .collect();
            let len = idx.len();
            groups.push(AdapterGroup {
                adapter: a,
                rows: Some(Tensor::from_vec(idx, len, &Device::Cpu)?),
            });
        }
        for target in [LoraTarget::QProj, LoraTarget::DownProj, LoraTarget::UpProj] {
            let (inp, out) = target.dims(&cfg);
            let x = Tensor::randn(0f32, 1.0, (rows.len(), inp), &Device::Cpu)?;
            let y = Tensor::randn(0f32, 1.0, (rows.len(), out), &Device::Cpu)?;
            let sgmv = add_lora_grouped(1, target, &x, y.clone(), &groups)?;
            let bgmv = add_lora_per_row(1, target, &x, y.clone(), &rows)?;
            let diff: f32 = (&sgmv - &bgmv)?.abs()?.flatten_all()?.max(0)?.to_scalar()?;
            assert!(diff < 1e-4, "{target:?}: max diff {diff}");
            // Rows without an adapter are untouched.
            let untouched: f32 = (bgmv.get(1)? - y.get(1)?)?.abs()?.max(0)?.to_scalar()?;
            assert_eq!(untouched, 0.0);
            if target != LoraTarget::UpProj {
                let moved: f32 = (bgmv.get(0)? - y.get(0)?)?.abs()?.max(0)?.to_scalar()?;
                assert!(moved > 1e-3, "{target:?}: the adapter changed nothing");
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn unpermuting_undoes_the_llama_cpp_permutation(heads in 1usize..5, half in 1usize..5, row in 1usize..4, seed in 0u8..255) {
            let rows = heads * half * 2;
            let data: Vec<u8> = (0..rows * row).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let g = permute_rows(&data, rows, heads, true);
            proptest::prop_assert_eq!(permute_rows(&g, rows, heads, false), data);
        }
    }
}
