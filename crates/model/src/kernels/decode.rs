//! The lean decode path: one new token per sequence, as plain loops over
//! preallocated buffers instead of ~1,000 small candle ops per token.
//!
//! A decode step of SmolLM2 runs 211 matrix–vector products and a few
//! hundred tiny element-wise ops (norms, rope, softmax over a short context,
//! SiLU·mul, residual adds). In candle each is a tensor op with its own
//! allocation and dispatch, which cost about as much as the products
//! themselves (docs/model.md). Here a step is:
//!
//! - one `[rows, hidden]` residual buffer for all sequences in the step
//!   (`rows` = sequences, one token each), RMSNorm fused into one pass;
//! - every projection through [`matmul_many`] (Q4_1 × q8_1 or exact
//!   f32-activation kernels, SIMD chosen at run time), the weight row read
//!   once for all rows of the step; q, k and v go through one call, gate and
//!   up through one, so a step has four fork–joins per layer plus the head,
//!   each splitting output rows into one contiguous range per rayon thread,
//!   and the step itself runs on a pool worker;
//! - LoRA per row, `y_i += s·B·(A·x_i)` (BGMV), reading the adapter's
//!   tensors in place, so rows of different adapters share the base work;
//! - rope, attention over the sequence's cache (one query row against
//!   contiguous per-head key/value slices) and SiLU·mul as loops.
//!
//! It returns the same logits as the candle forward within the activation
//! quantization error of Q4_1 × q8_1 (exactly the same math for f32 and
//! Q8_0 weights, up to summation order); tests in this module and in
//! `tests/it/smollm2.rs` check it.

use std::fmt;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::kernels::cpu_f32::{dot, with_f32};
use crate::kernels::qkernel::{
    axpy, dot_f32, matmul_many, Activations, Kernel, MatmulJob, PackedMatrix,
};
use crate::kernels::weights::{Block, Weight};
use crate::kv_cache::HeadsView;
use crate::lora::{LoraAdapter, LoraTarget};
use crate::step::SeqChunk;

/// Up to this many sequences in one all-decode step, the architecture's
/// `forward_chunks` (`Llama::forward_chunks`) takes the lean path; above it, candle's f32 gemm, which is compute-bound
/// and wins once a weight row is reused by enough activation rows. Measured
/// (docs/model.md, "Decode path per batch size"), one thread, CPU ms per
/// token lean vs candle: 7.6 vs 15.5 at 8 sequences, 8.5 vs 7.1 at 32,
/// 8.6 vs 5.5 at 64.
pub(crate) const LEAN_MAX_ROWS: usize = 16;

/// One decoder block in the decode kernels' layout.
struct LeanLayer {
    attn_norm: Vec<f32>,
    mlp_norm: Vec<f32>,
    /// Indexed by [`LoraTarget::index`].
    proj: Vec<PackedMatrix>,
    bias: Vec<Option<Vec<f32>>>,
}

/// A decoder's weights as [`LeanWeights::build`] borrows them from an
/// architecture: the embedding, the pre-norm blocks, the final norm, the
/// head (`None` when tied to the embedding) and the rotary tables.
pub(crate) struct DecoderView<'a> {
    pub(crate) embed: &'a Weight,
    pub(crate) blocks: &'a [Block],
    pub(crate) norm: &'a Tensor,
    pub(crate) lm_head: Option<&'a Weight>,
    /// `[max_seq_len, head_dim / 2]` each.
    pub(crate) cos: &'a Tensor,
    pub(crate) sin: &'a Tensor,
}

/// The model's weights as the decode kernels read them, built once from a
/// [`DecoderView`] (quantized blocks repacked; f32 tensors shared, not
/// copied).
pub(crate) struct LeanWeights {
    layers: Vec<LeanLayer>,
    embed: PackedMatrix,
    /// `None` when the head is tied to the embedding.
    head: Option<PackedMatrix>,
    norm: Vec<f32>,
    /// `[max_seq_len, head_dim / 2]`, the same tables as the candle path.
    cos: Vec<f32>,
    sin: Vec<f32>,
    kernel: Kernel,
    /// Whether this path takes every step, prefill and large batches too
    /// ([`LeanWeights::takes_every_step`]).
    every_step: bool,
}

impl fmt::Debug for LeanWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeanWeights")
            .field("layers", &self.layers.len())
            .field(
                "projections",
                &self.layers.first().map(|l| l.proj[0].kind()),
            )
            .field("head", &self.head().kind())
            .field("kernel", &self.kernel.name())
            .finish()
    }
}

fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Packs a projection for the kernels: Q4_1 and Q8_0 blocks are repacked,
/// other ggml types use the dense copy (or are dequantized), f32 is shared.
fn pack(w: &Weight) -> Result<PackedMatrix> {
    match w {
        Weight::Quantized(q) | Weight::Hybrid(q, _)
            if matches!(q.dtype(), GgmlDType::Q4_1 | GgmlDType::Q8_0) =>
        {
            let (rows, cols) = q.shape().dims2()?;
            let bytes = q.data()?;
            if q.dtype() == GgmlDType::Q4_1 {
                PackedMatrix::from_q4_1(&bytes, rows, cols)
            } else {
                PackedMatrix::from_q8_0(&bytes, rows, cols)
            }
        }
        Weight::Dense(t) | Weight::Hybrid(_, t) => PackedMatrix::from_tensor(t),
        Weight::Quantized(q) => PackedMatrix::from_tensor(&q.dequantize(&Device::Cpu)?),
        Weight::Bf16(w) => PackedMatrix::from_tensor(&w.to_tensor()?),
    }
}

/// Packs the LM head. Logits stay exact f32 math: Q8_0 blocks are read with
/// f32 activations; any other quantized head uses its dense copy when there
/// is one (a q8 activation flips near-tie tokens, docs/model.md).
fn pack_head(w: &Weight) -> Result<PackedMatrix> {
    match w {
        Weight::Hybrid(q, t) if q.dtype() != GgmlDType::Q8_0 => PackedMatrix::from_tensor(t),
        other => pack(other),
    }
}

impl LeanWeights {
    /// Builds the decode layout of a decoder's weights.
    pub(crate) fn build(weights: &DecoderView<'_>) -> Result<Self> {
        let _span = tracing::debug_span!(target: "trib::model", "pack_decode_weights").entered();
        let layers = weights
            .blocks
            .iter()
            .map(|b| {
                Ok(LeanLayer {
                    attn_norm: vec_of(&b.attn_norm)?,
                    mlp_norm: vec_of(&b.mlp_norm)?,
                    proj: b
                        .linears
                        .iter()
                        .map(|l| pack(&l.weight))
                        .collect::<Result<_>>()?,
                    bias: b
                        .linears
                        .iter()
                        .map(|l| l.bias.as_ref().map(vec_of).transpose())
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = match weights.lm_head {
            None => pack_head(weights.embed)?,
            Some(_) => pack(weights.embed)?,
        };
        let head = weights.lm_head.map(pack_head).transpose()?;
        let kernel = Kernel::detect();
        let quantized = layers.iter().all(|l| {
            l.proj
                .iter()
                .all(|p| matches!(p, PackedMatrix::Q4_1 { .. } | PackedMatrix::Q8_0 { .. }))
        });
        let dense_copy = weights
            .blocks
            .iter()
            .flat_map(|b| b.linears.iter())
            .any(|l| matches!(l.weight, Weight::Hybrid(..)));
        let every_step = quantized && (!dense_copy || kernel.batches_quantized());
        let lean = Self {
            layers,
            embed,
            head,
            norm: vec_of(weights.norm)?,
            cos: vec_of(weights.cos)?,
            sin: vec_of(weights.sin)?,
            kernel,
            every_step,
        };
        tracing::debug!(target: "trib::model", weights = ?lean, "packed weights for the decode kernels");
        Ok(lean)
    }

    fn head(&self) -> &PackedMatrix {
        self.head.as_ref().unwrap_or(&self.embed)
    }

    /// Whether `Llama::forward_chunks` sends every step here (prefill,
    /// any batch size): when all projections are quantized blocks and
    /// either there is no dense f32 copy to multiply instead (the weights
    /// were loaded [`crate::WeightFormat::Quantized`]) or the batched
    /// quantized kernel beats f32 gemm on this CPU (AVX-512 VNNI, measured
    /// in docs/model.md). Otherwise only decode steps of at most
    /// [`LEAN_MAX_ROWS`] sequences come here.
    pub(crate) fn takes_every_step(&self) -> bool {
        self.every_step
    }

    /// The kernel in use (`avx512+vnni`, `avx2+fma+f16c` or `scalar`).
    pub(crate) fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// One inference step: `chunks` hold one or more tokens each (decode
    /// steps one, prefill chunks a prompt), already validated (ids in
    /// range, room in every cache, adapters fit). Returns logits `[chunks,
    /// vocab]` of each chunk's last position, or `[tokens, vocab]` of every
    /// position when `all_positions`; caches advance only on success.
    pub(crate) fn forward(
        &self,
        cfg: &LlamaConfig,
        chunks: &mut [SeqChunk<'_>],
        all_positions: bool,
    ) -> Result<Tensor> {
        if rayon::current_num_threads() > 1 && rayon::current_thread_index().is_none() {
            // Called from outside the pool (a plain thread): run the whole
            // step on a pool worker, so that the ~120 fork–joins of a step
            // are joins between workers instead of each one injecting a job
            // into the pool and sleeping until a worker has finished it
            // (two thread wake-ups per projection; with them two threads
            // decoded no faster than one).
            return rayon::scope(|_| self.step(cfg, chunks, all_positions));
        }
        self.step(cfg, chunks, all_positions)
    }

    fn step(
        &self,
        cfg: &LlamaConfig,
        chunks: &mut [SeqChunk<'_>],
        all_positions: bool,
    ) -> Result<Tensor> {
        let n: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let _span = tracing::trace_span!(target: "trib::model", "decode_lean", sequences = chunks.len(), rows = n)
            .entered();
        let (hid, heads, kvh, hd) = (
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        );
        let inter = cfg.intermediate_size;
        let eps = cfg.rms_norm_eps as f32;
        if chunks.iter().any(|c| c.tokens.is_empty()) {
            return Err(ModelError::Generation(
                "the lean path needs at least one token per sequence".into(),
            ));
        }
        for c in chunks.iter_mut() {
            c.cache.reserve(c.tokens.len())?;
        }
        // One row per token: the adapter of its sequence.
        let adapters: Vec<Option<&LoraAdapter>> = chunks
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.adapter, c.tokens.len()))
            .collect();
        let mut x = vec![0f32; n * hid];
        let ids = chunks.iter().flat_map(|c| c.tokens.iter());
        for (&id, row) in ids.zip(x.chunks_exact_mut(hid)) {
            self.embed.row_into(id as usize, row)?;
        }
        let mut h = vec![0f32; n * hid];
        let mut q = vec![0f32; n * heads * hd];
        let mut k = vec![0f32; n * kvh * hd];
        let mut v = vec![0f32; n * kvh * hd];
        let mut attn = vec![0f32; n * heads * hd];
        let mut o = vec![0f32; n * hid];
        let mut g = vec![0f32; n * inter];
        let mut u = vec![0f32; n * inter];
        // Prompt rows multiply Q4_1 weights with f32 activations (exact, as
        // the f32 copy would); decode rows with q8_1 (docs/model.md).
        let prompt = all_positions || n > chunks.len();
        fn rows_of(x: &[f32], cols: usize, exact: bool) -> Activations<'_> {
            if exact {
                Activations::exact(x, x.len() / cols, cols)
            } else {
                Activations::new(x, x.len() / cols, cols)
            }
        }
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&x, &layer.attn_norm, eps, &mut h);
            let act = rows_of(&h, hid, prompt);
            self.project(
                li,
                layer,
                &mut [
                    (LoraTarget::QProj, &act, &mut q),
                    (LoraTarget::KProj, &act, &mut k),
                    (LoraTarget::VProj, &act, &mut v),
                ],
                &adapters,
            )?;
            self.attend_all(li, chunks, &mut q, &mut k, &v, &mut attn, (heads, kvh, hd));
            let act = rows_of(&attn, heads * hd, prompt);
            self.project(
                li,
                layer,
                &mut [(LoraTarget::OProj, &act, &mut o)],
                &adapters,
            )?;
            add_into(&mut x, &o);
            rms_norm_rows(&x, &layer.mlp_norm, eps, &mut h);
            let act = rows_of(&h, hid, prompt);
            self.project(
                li,
                layer,
                &mut [
                    (LoraTarget::GateProj, &act, &mut g),
                    (LoraTarget::UpProj, &act, &mut u),
                ],
                &adapters,
            )?;
            for (gv, uv) in g.iter_mut().zip(&u) {
                *gv = *gv / (1.0 + (-*gv).exp()) * uv;
            }
            let act = rows_of(&g, inter, prompt);
            self.project(
                li,
                layer,
                &mut [(LoraTarget::DownProj, &act, &mut o)],
                &adapters,
            )?;
            add_into(&mut x, &o);
        }
        // The head reads only the rows whose logits are returned.
        let out_rows = if all_positions || n == chunks.len() {
            x
        } else {
            let mut last = Vec::with_capacity(chunks.len() * hid);
            let mut end = 0;
            for c in chunks.iter() {
                end += c.tokens.len();
                last.extend_from_slice(&x[(end - 1) * hid..end * hid]);
            }
            last
        };
        let m = out_rows.len() / hid;
        h.truncate(m * hid);
        rms_norm_rows(&out_rows, &self.norm, eps, &mut h);
        let head = self.head();
        let mut logits = vec![0f32; m * head.rows()];
        head.matmul(&Activations::new(&h, m, hid), &mut logits, self.kernel)?;
        for c in chunks.iter_mut() {
            c.cache.advance(c.tokens.len());
        }
        Ok(Tensor::from_vec(logits, (m, head.rows()), &Device::Cpu)?)
    }

    /// Rope, cache writes and causal attention of every sequence's new rows
    /// (`q`, `k`, `v`: `[rows, ·]` in chunk order) into `attn`. Sequences
    /// are independent, so they run in parallel over the rayon pool when
    /// there are several; each sequence's result is the same either way.
    #[allow(clippy::too_many_arguments)]
    fn attend_all(
        &self,
        li: usize,
        chunks: &mut [SeqChunk<'_>],
        q: &mut [f32],
        k: &mut [f32],
        v: &[f32],
        attn: &mut [f32],
        (heads, kvh, hd): (usize, usize, usize),
    ) {
        let (qd, kd) = (heads * hd, kvh * hd);
        let mut work = Vec::with_capacity(chunks.len());
        let (mut q, mut k, mut v, mut attn) = (q, k, v, attn);
        for c in chunks.iter_mut() {
            let t = c.tokens.len();
            let (qc, qr) = std::mem::take(&mut q).split_at_mut(t * qd);
            let (kc, kr) = std::mem::take(&mut k).split_at_mut(t * kd);
            let (vc, vr) = v.split_at(t * kd);
            let (ac, ar) = std::mem::take(&mut attn).split_at_mut(t * qd);
            (q, k, v, attn) = (qr, kr, vr, ar);
            work.push((c, qc, kc, vc, ac));
        }
        let one = |(c, qc, kc, vc, ac): (
            &mut SeqChunk<'_>,
            &mut [f32],
            &mut [f32],
            &[f32],
            &mut [f32],
        )| {
            let pos0 = c.cache.len();
            let mut scores = Vec::new();
            for (j, (kj, vj)) in kc.chunks_exact_mut(kd).zip(vc.chunks_exact(kd)).enumerate() {
                self.rope(kj, pos0 + j, hd);
                c.cache.write_position(li, j, kj, vj);
            }
            for (j, (qj, aj)) in qc
                .chunks_exact_mut(qd)
                .zip(ac.chunks_exact_mut(qd))
                .enumerate()
            {
                self.rope(qj, pos0 + j, hd);
                attend_one(
                    c.cache.heads_view(li, pos0 + j + 1),
                    qj,
                    aj,
                    (heads, kvh, hd),
                    &mut scores,
                    self.kernel,
                );
            }
        };
        if work.len() > 1 && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            work.into_par_iter().with_max_len(1).for_each(one);
        } else {
            work.into_iter().for_each(one);
        }
    }

    /// For each `(target, x, out)`: `out = x·Wᵀ + b`, plus each adapted
    /// row's `s·B·(A·x_i)`. The base products of all of them run as one
    /// [`matmul_many`] call (one fork–join over the rayon pool).
    fn project(
        &self,
        li: usize,
        layer: &LeanLayer,
        jobs: &mut [(LoraTarget, &Activations<'_>, &mut [f32])],
        adapters: &[Option<&LoraAdapter>],
    ) -> Result<()> {
        let mut base: Vec<MatmulJob<'_, '_>> = jobs
            .iter_mut()
            .map(|(t, x, out)| MatmulJob {
                w: &layer.proj[t.index()],
                x,
                out,
            })
            .collect();
        matmul_many(&mut base, self.kernel)?;
        drop(base);
        for (target, act, out) in jobs.iter_mut() {
            self.add_bias_and_lora(li, layer, *target, act, out, adapters)?;
        }
        Ok(())
    }

    /// Adds the bias and each adapted row's `s·B·(A·x_i)` to a projection's
    /// base product `out`.
    fn add_bias_and_lora(
        &self,
        li: usize,
        layer: &LeanLayer,
        target: LoraTarget,
        act: &Activations<'_>,
        out: &mut [f32],
        adapters: &[Option<&LoraAdapter>],
    ) -> Result<()> {
        let w = &layer.proj[target.index()];
        let (rows, cols) = (w.rows(), w.cols());
        if let Some(b) = &layer.bias[target.index()] {
            for y in out.chunks_exact_mut(rows) {
                add_into(y, b);
            }
        }
        let mut t = Vec::new();
        for (i, a) in adapters.iter().enumerate() {
            let Some(adapter) = a else { continue };
            let Some(pair) = adapter.pair(li, target) else {
                continue;
            };
            let r = pair.a.dim(0)?;
            if pair.a.dims() != [r, cols] || pair.b.dims() != [rows, r] {
                return Err(ModelError::AdapterMismatch(format!(
                    "layer {li} {}: A {:?} and B {:?} do not fit a [{rows}, {cols}] projection",
                    target.name(),
                    pair.a.dims(),
                    pair.b.dims()
                )));
            }
            let s = adapter.scaling() as f32;
            let xi = &act.rows()[i * cols..(i + 1) * cols];
            with_f32(&pair.a, |a| {
                t.clear();
                t.extend(a.chunks_exact(cols).map(|ar| dot(ar, xi) * s));
            })?;
            let yi = &mut out[i * rows..(i + 1) * rows];
            with_f32(&pair.b, |b| {
                for (y, br) in yi.iter_mut().zip(b.chunks_exact(r)) {
                    *y += dot(br, &t);
                }
            })?;
        }
        Ok(())
    }

    /// "rotate_half" rope of every head in `x` (`[heads · hd]`) at `pos`:
    /// `(x₁, x₂) → (x₁·cos − x₂·sin, x₂·cos + x₁·sin)` per frequency.
    fn rope(&self, x: &mut [f32], pos: usize, hd: usize) {
        let half = hd / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for head in x.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// `x += y`, element-wise.
fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// RMSNorm of each row of `x` into `out`: `x / √(mean(x²) + ε) · w`.
fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = dot(xr, xr) / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, a), b) in or.iter_mut().zip(xr).zip(w) {
            *o = a * inv * b;
        }
    }
}

/// Attention of one query row (`[heads · hd]`, roped) over `len` cached
/// positions: query head `j` reads kv head `j / (heads / kv_heads)`
/// (Hugging Face `repeat_kv` order), softmax of `q·k/√hd`, weighted sum of
/// values into `out`.
fn attend_one(
    kv: HeadsView<'_>,
    q: &[f32],
    out: &mut [f32],
    (heads, kvh, hd): (usize, usize, usize),
    scores: &mut Vec<f32>,
    kernel: Kernel,
) {
    let groups = heads / kvh;
    let scale = 1.0 / (hd as f32).sqrt();
    for (j, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let (keys, values) = kv.heads[j / groups];
        scores.clear();
        scores.extend(
            keys.chunks_exact(hd)
                .map(|kp| dot_f32(qh, kp, kernel) * scale),
        );
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        oh.fill(0.0);
        let inv = 1.0 / sum;
        for (p, vp) in scores.iter().zip(values.chunks_exact(hd)) {
            axpy(p * inv, vp, oh, kernel);
        }
        debug_assert_eq!(scores.len(), kv.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvCache;
    use crate::lora::LoraConfig;
    use crate::tiny::{max_abs_diff, write_tiny_gguf, TinySpec};
    use crate::{Model, WeightFormat};
    use candle_core::quantized::GgmlDType;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// One chunk per sequence: `tokens[i]` into `caches[i]` with `adapters[i]`.
    fn chunks_of<'a, T: AsRef<[u32]>>(
        caches: &'a mut [KvCache],
        tokens: &'a [T],
        adapters: &[Option<&'a LoraAdapter>],
    ) -> Vec<SeqChunk<'a>> {
        caches
            .iter_mut()
            .zip(tokens)
            .zip(adapters)
            .map(|((cache, t), a)| SeqChunk {
                tokens: t.as_ref(),
                cache,
                adapter: *a,
            })
            .collect()
    }

    fn abs_max(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Prefills prompts of different lengths (every position's logits) and
    /// decodes `steps` tokens, once through the lean path and once through
    /// the candle path, with per-row adapters; returns the largest logit
    /// difference and the logit range.
    fn compare(model: &Model, adapters: &[Option<&LoraAdapter>], steps: usize) -> (f32, f32) {
        let llama = &model.llama_for_tests();
        let lean_path = llama.lean().unwrap();
        let prompts: Vec<Vec<u32>> = (0..adapters.len())
            .map(|i| {
                (0..3 + i as u32)
                    .map(|t| 5 + (t * 7 + i as u32) % 40)
                    .collect()
            })
            .collect();
        let mut lean_caches: Vec<KvCache> = adapters.iter().map(|_| model.new_cache()).collect();
        let mut ref_caches: Vec<KvCache> = adapters.iter().map(|_| model.new_cache()).collect();
        let mut chunks = chunks_of(&mut lean_caches, &prompts, adapters);
        let lean = lean_path.forward(&llama.cfg, &mut chunks, true).unwrap();
        let mut chunks = chunks_of(&mut ref_caches, &prompts, adapters);
        let reference = llama.forward_candle(&mut chunks, true).unwrap();
        let (mut worst, mut range) = (max_abs_diff(&lean, &reference), abs_max(&reference));
        for step in 0..steps {
            let tokens: Vec<[u32; 1]> = (0..adapters.len())
                .map(|i| [(11 + 3 * step + i) as u32 % 50])
                .collect();
            let mut chunks = chunks_of(&mut lean_caches, &tokens, adapters);
            let lean = lean_path.forward(&llama.cfg, &mut chunks, false).unwrap();
            let mut chunks = chunks_of(&mut ref_caches, &tokens, adapters);
            let reference = llama.forward_candle(&mut chunks, false).unwrap();
            worst = worst.max(max_abs_diff(&lean, &reference));
            range = range.max(abs_max(&reference));
        }
        // A second prompt chunk on top of the decoded tokens (chunked
        // prefill), last positions only.
        let more: Vec<Vec<u32>> = (0..adapters.len())
            .map(|i| vec![7, 9 + i as u32, 3])
            .collect();
        let mut chunks = chunks_of(&mut lean_caches, &more, adapters);
        let lean = lean_path.forward(&llama.cfg, &mut chunks, false).unwrap();
        let mut chunks = chunks_of(&mut ref_caches, &more, adapters);
        let reference = llama.forward_candle(&mut chunks, false).unwrap();
        assert_eq!(lean.dims(), reference.dims());
        worst = worst.max(max_abs_diff(&lean, &reference));
        for (a, b) in lean_caches.iter().zip(&ref_caches) {
            assert_eq!(a.len(), b.len());
        }
        (worst, range)
    }

    fn adapters(cfg: &crate::LlamaConfig) -> Vec<LoraAdapter> {
        (0..2u64)
            .map(|seed| {
                let lora = LoraConfig {
                    r: 4,
                    alpha: 8.0,
                    dropout: 0.0,
                    targets: LoraTarget::ALL.to_vec(),
                    use_rslora: seed == 1,
                };
                let a = LoraAdapter::init(lora, cfg, "tiny", seed).unwrap();
                let mut rng = StdRng::seed_from_u64(seed);
                for (_, _, p) in a.iter_pairs() {
                    let v: Vec<f32> = (0..p.b.elem_count())
                        .map(|_| rng.gen_range(-0.5..0.5))
                        .collect();
                    p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
                        .unwrap();
                }
                a
            })
            .collect()
    }

    #[test]
    fn lean_decode_equals_the_candle_forward_on_f32_weights_with_mixed_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TinySpec {
            family: crate::Family::Qwen2,
            ..TinySpec::default()
        };
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, &spec, 3, GgmlDType::F32).unwrap();
        let model = Model::load(&path, WeightFormat::F32).unwrap();
        let ad = adapters(model.config());
        let rows = [Some(&ad[0]), None, Some(&ad[1]), Some(&ad[0])];
        let (diff, range) = compare(&model, &rows, 5);
        assert!(
            range > 0.1,
            "logits are all near zero ({range}); the test would be vacuous"
        );
        // Same math, f32 summation order only.
        assert!(
            diff < 1e-4,
            "lean vs candle, f32 weights: max |Δlogit| {diff}"
        );
    }

    #[test]
    fn lean_decode_on_q4_1_blocks_stays_within_the_q8_activation_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TinySpec::default();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, &spec, 5, GgmlDType::Q4_1).unwrap();
        let model = Model::load(&path, WeightFormat::Hybrid).unwrap();
        let llama = model.llama_for_tests();
        assert_eq!(llama.lean().unwrap().layers[0].proj[0].kind(), "Q4_1");
        let ad = adapters(model.config());
        let (diff, range) = compare(&model, &[None, Some(&ad[1])], 6);
        eprintln!("Q4_1: max |Δlogit| {diff}, range {range}");
        assert!(range > 0.1, "logits are all near zero ({range})");
        // The candle path multiplies the dequantized f32 copy; the lean one
        // rounds activations to 8 bits (relative error ≤ 1/254 per block).
        assert!(
            diff < 0.02 * range,
            "lean vs candle, Q4_1: max |Δlogit| {diff} of range {range}"
        );
    }
}
