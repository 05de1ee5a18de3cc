//! The Llama-family decoder: Touvron et al., "LLaMA: Open and Efficient
//! Foundation Language Models" (2023, arXiv:2302.13971) and "Llama 2"
//! (arXiv:2307.09288): pre-norm residual blocks with RMSNorm (Zhang & Sennrich
//! 2019), rotary position embeddings (Su et al. 2021, arXiv:2104.09864) in the
//! Hugging Face "rotate_half" layout, grouped-query attention (Ainslie et al.
//! 2023, arXiv:2305.13245) and a SwiGLU MLP (Shazeer 2020, arXiv:2002.05202).
//! Qwen2 adds q/k/v biases; Mistral is the same layout.
//!
//! The architecture, written for this project: the configuration
//! ([`LlamaConfig`]) gives the shapes, the layers are [`Block`]s of the
//! shared weight types ([`crate::kernels::weights`]), and the forward passes
//! below run them with the kernels ([`crate::kernels`]); no kernel imports
//! this file. Two execution modes over the same weights:
//!
//! - **inference** ([`Llama::forward_chunks`]): rows of many sequences are
//!   stacked so every projection runs once for the whole batch, attention runs
//!   per sequence against its own [`KvCache`], LoRA runs per adapter group
//!   (SGMV) or per row (BGMV) when a step has many adapters with few rows
//!   each ([`crate::kernels::multi_lora`]). Uses candle's fused `rms_norm`,
//!   `softmax_last_dim` and `rope`, and may keep GGUF weights quantized.
//!   Small decode steps (and every step over quantized-only weights) take
//!   the lean path instead ([`crate::kernels::decode`]).
//! - **training** ([`Llama::forward_train`]): only ops with a backward pass.
//!   candle's fused kernels above have none in candle 0.11 and silently drop
//!   gradients, and a quantized matmul has none either, so RMSNorm, softmax,
//!   rope and SwiGLU are fused ops with hand-written backward passes
//!   ([`crate::kernels::train`]) over dense f32 or bf16 weights. Base
//!   projections and the LM head go through [`frozen_linear`], whose
//!   backward skips the (discarded) weight gradient.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::kernels::amx::{Bf16Kernel, Bf16Weight};
use crate::kernels::decode::{DecoderView, LeanWeights, LEAN_MAX_ROWS};
use crate::kernels::frozen::frozen_linear;
use crate::kernels::multi_lora::{lora_plan, LoraPlan};
use crate::kernels::positions::{causal_mask, rope_tables};
use crate::kernels::train::{
    causal_softmax, from_heads, rms_norm_frozen, swiglu, to_heads, HeadLayout, RopeTables,
};
use crate::kernels::weights::{Block, Weight};
use crate::kv_cache::KvCache;
use crate::lora::{LoraAdapter, LoraDropout, LoraTarget};
use crate::step::SeqChunk;

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
        let built = Arc::new(LeanWeights::build(&self.decoder_view())?);
        Ok(self.lean.get_or_init(|| built))
    }

    /// The weights as the lean decode path packs them.
    fn decoder_view(&self) -> DecoderView<'_> {
        DecoderView {
            embed: &self.embed,
            blocks: &self.blocks,
            norm: &self.norm,
            lm_head: self.lm_head.as_ref(),
            cos: &self.cos,
            sin: &self.sin,
        }
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
    /// rounded to bf16 and packed for `kernel` ([`crate::kernels::amx`]), one
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
    /// The lean path (`crate::kernels::decode`) takes every step when its kernels
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
                return lean.forward(&self.cfg, chunks, all_positions);
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
        let plan = lora_plan(chunks, n_rows)?;
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

    /// Base projection for all rows, plus the LoRA term per adapter group.
    fn project(
        &self,
        layer: usize,
        block: &Block,
        target: LoraTarget,
        x: &Tensor,
        plan: &LoraPlan<'_>,
    ) -> Result<Tensor> {
        plan.add(layer, target, x, block.lin(target).forward(x)?)
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
        // The head is frozen: no weight gradient (see crate::kernels::frozen).
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
            // backward, crate::kernels::train). Query heads
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
