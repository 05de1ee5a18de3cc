//! Fused element-wise ops for the training forward, with hand-written
//! backward passes.
//!
//! Built from candle primitives, RMSNorm is seven ops forward (square,
//! mean, add, sqrt, recip and two broadcast multiplies) and about ten
//! backward, each allocating and filling a fresh `[rows, hidden]` buffer; the
//! training step of SmolLM2 runs 61 of them. [`rms_norm_frozen`] does the
//! forward in one pass per row and its backward in another, and returns no
//! gradient for the norm weight: in LoRA training every norm weight is
//! frozen.
//!
//! The same reasoning covers the rest of the step's element-wise work, each
//! op one forward pass and one backward pass over its rows, writing every
//! output element once (no zero-filled buffer, no broadcast temporaries):
//!
//! - [`to_heads`] / [`from_heads`]: the `[b·t, heads·hd]` ↔ `[b, heads, t,
//!   hd]` transposes around attention, with rotary embeddings (Su et al.
//!   2021, arXiv:2104.09864, "rotate_half" layout) applied on the way in; the
//!   backward is the inverse transpose and the rotation by −θ. Queries are
//!   written grouped by the kv head they share and keys transposed
//!   ([`HeadLayout`]), so attention needs no repeated k/v and no view nodes.
//! - [`causal_softmax`]: `softmax(scale·x + causal mask)` over the keys of
//!   each query row, with `dx = scale·y·(g − Σ g·y)`.
//! - [`swiglu`]: `silu(g)·u` (Shazeer 2020, arXiv:2002.05202) with both input
//!   gradients from one pass.
//! - [`cross_entropy_rows`]: log-softmax, gather and `softmax − onehot` in
//!   one pass per logit row; the gradient is kept from the forward.
//!
//! `exp` here is a branch-free polynomial ([`exp_slice`]) that the compiler
//! vectorizes, instead of one libm call per element.
//! See docs/factory.md ("Training speed decisions").

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::cpu_f32::{contiguous_f32, to_candle, with_f32};

/// RMSNorm `y = x / √(mean(x²) + ε) · w` over the last dim, `w` frozen.
struct RmsNormFrozen {
    /// The norm weight, one value per feature.
    w: Vec<f32>,
    eps: f32,
}

impl RmsNormFrozen {
    /// `1 / √(mean(x²) + ε)` of one row.
    fn inv_rms(&self, row: &[f32]) -> f32 {
        let ss: f32 = row.iter().map(|v| v * v).sum();
        1.0 / (ss / row.len() as f32 + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNormFrozen {
    fn name(&self) -> &'static str {
        "rms-norm-frozen"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = self.w.len();
        if l.dims().last() != Some(&n) {
            candle_core::bail!(
                "rms-norm-frozen: input {:?} does not end in the weight's {n} features",
                l.dims()
            );
        }
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("rms-norm-frozen: the input is not contiguous");
        };
        let x = &s.as_slice::<f32>()?[start..end];
        // Outputs are appended, never zero-filled first.
        let mut y = Vec::with_capacity(x.len());
        for xr in x.chunks_exact(n) {
            let inv = self.inv_rms(xr);
            y.extend(xr.iter().zip(&self.w).map(|(xv, wv)| xv * inv * wv));
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // With u = g·w and r = 1/√(mean(x²)+ε):
        // dx_j = r·u_j − x_j · r³ · (Σ_k u_k x_k) / n.
        let n = self.w.len();
        let to_candle = |e: ModelError| candle_core::Error::Msg(e.to_string());
        let dx = with_f32(arg, |x| {
            with_f32(grad, |g| {
                let mut dx = Vec::with_capacity(x.len());
                for (xr, gr) in x.chunks_exact(n).zip(g.chunks_exact(n)) {
                    let inv = self.inv_rms(xr);
                    let dot: f32 = xr
                        .iter()
                        .zip(gr)
                        .zip(&self.w)
                        .map(|((xv, gv), wv)| xv * gv * wv)
                        .sum();
                    let c = inv * inv * inv * dot / n as f32;
                    dx.extend(
                        xr.iter()
                            .zip(gr)
                            .zip(&self.w)
                            .map(|((xv, gv), wv)| inv * gv * wv - xv * c),
                    );
                }
                dx
            })
        })
        .map_err(to_candle)?
        .map_err(to_candle)?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// RMSNorm over the last dim of `x` (f32, CPU) with the frozen weight `w`
/// (`[hidden]`): forward and input gradient fused, no weight gradient.
pub(crate) fn rms_norm_frozen(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "fused RMSNorm needs f32 operands, got input {:?} and weight {:?}",
            x.dtype(),
            w.dtype()
        ))));
    }
    let w = w.flatten_all()?.to_vec1::<f32>()?;
    if x.dims().last() != Some(&w.len()) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "fused RMSNorm: input {:?} does not end in the weight's {} features",
            x.dims(),
            w.len()
        ))));
    }
    let op = RmsNormFrozen { w, eps: eps as f32 };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// `e^x` for every element of `xs`, in place: Cephes' `expf` (range
/// reduction `x = n·ln2 + r`, degree-6 polynomial in `r`, `2^n` through the
/// exponent bits), written without branches so that the loop vectorizes.
/// Within 2 ulp of `f32::exp` on `[-87, 88]`; inputs below `-87.3` give
/// `~1e-38` instead of 0 (callers that need exact zeros skip those
/// elements), inputs above 88 give `e^88`.
pub(crate) fn exp_slice(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = exp_f32(*x);
    }
}

/// One element of [`exp_slice`] (inlined into vectorized loops).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.0);
    // Round to nearest (even) by adding and subtracting 1.5·2²³: the sum's
    // ulp is 1. `round_ties_even` would be a libm `rintf` call per element
    // on the x86-64 baseline (no SSE4.1 `roundps`), which stops the loop
    // from vectorizing (9% of a training step when it did).
    // The same sum holds n in its low mantissa bits, read as an integer
    // (an `as i32` cast is saturating and compiles to scalar code).
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let n_int = (shifted.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// `Σ xs` in eight f64 lanes (vectorizes; exact enough that a 49,152-wide
/// softmax denominator does not drop its small terms, which a sequential
/// f32 sum does: the loss came out 7e-5 low against candle's sum).
fn sum_f64(xs: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Elements of work below which an op stays on the calling thread: waking
/// candle's workers costs more than the split saves.
const PAR_MIN_WORK: usize = 32 * 1024;

/// `rows` split into contiguous ranges, one per thread of candle's pool,
/// when there is at least [`PAR_MIN_WORK`] work (`rows · per_row` elements)
/// for each; a single range otherwise.
fn row_groups(rows: usize, per_row: usize) -> Vec<std::ops::Range<usize>> {
    let by_work = (rows * per_row) / PAR_MIN_WORK;
    let n = candle_core::utils::get_num_threads()
        .min(by_work)
        .min(rows)
        .max(1);
    let per = rows.div_ceil(n).max(1);
    (0..rows.div_ceil(per).max(1))
        .map(|g| g * per..((g + 1) * per).min(rows))
        .collect()
}

/// `f` over each row group on candle's barrier pool (the calling thread and
/// candle's workers, the pool the step's other CPU ops use), results in
/// group order. One group runs inline.
fn on_pool<T: Send>(
    groups: &[std::ops::Range<usize>],
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    if let [only] = groups {
        return vec![f(only.clone())];
    }
    let slots: Vec<Mutex<Option<T>>> = groups.iter().map(|_| Mutex::new(None)).collect();
    candle_core::utils::barrier_pool().execute_chunked(groups.len(), |ids| {
        for g in ids {
            let out = f(groups[g].clone());
            *slots[g].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every row group ran")
        })
        .collect()
}

/// The parts in order as one vector (no copy for a single part).
fn concat(parts: Vec<Vec<f32>>) -> Vec<f32> {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        all.extend_from_slice(&p);
    }
    all
}

/// Refuses operands that are not f32 (the public wrappers' first check).
fn check_f32(op: &str, xs: &[&Tensor]) -> Result<()> {
    if let Some(x) = xs.iter().find(|x| x.dtype() != DType::F32) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "{op} needs f32 operands, got {:?}",
            x.dtype()
        ))));
    }
    Ok(())
}

/// Rotary tables for positions `0..t`: `cos`, `sin` of `[t, hd/2]` angles.
#[derive(Debug)]
pub(crate) struct RopeTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTables {
    /// From `[≥t, hd/2]` cos and sin tables (the model's), first `t` rows.
    pub(crate) fn new(cos: &Tensor, sin: &Tensor, t: usize) -> Result<Arc<Self>> {
        let half = cos.dim(1)?;
        let take = |x: &Tensor| -> Result<Vec<f32>> {
            Ok(x.narrow(0, 0, t)?.flatten_all()?.to_vec1::<f32>()?)
        };
        Ok(Arc::new(RopeTables {
            cos: take(cos)?,
            sin: take(sin)?,
            half,
        }))
    }

    /// Appends one head vector at position `pos` rotated by `+θ`
    /// (`inverse = false`) or `−θ` to `dst`: with `[x1, x2]` its halves,
    /// `[x1·c − x2·s, x2·c + x1·s]`, or with `s` negated for `−θ`.
    #[inline]
    fn rotate_into(&self, pos: usize, src: &[f32], dst: &mut Vec<f32>, inverse: bool) {
        let h = self.half;
        let c = &self.cos[pos * h..(pos + 1) * h];
        let s = &self.sin[pos * h..(pos + 1) * h];
        let (x1, x2) = src.split_at(h);
        let sign = if inverse { -1.0 } else { 1.0 };
        let parts = x1.iter().zip(x2).zip(c).zip(s);
        dst.extend(parts.clone().map(|(((a, b), c), s)| a * c - sign * b * s));
        dst.extend(parts.map(|(((a, b), c), s)| b * c + sign * a * s));
    }
}

/// The shape of a head transpose: batch, tokens, heads, head dim.
#[derive(Clone, Copy, Debug)]
struct HeadDims {
    b: usize,
    t: usize,
    heads: usize,
    hd: usize,
}

impl HeadDims {
    fn len(&self) -> usize {
        self.b * self.t * self.heads * self.hd
    }

    /// Moves every head vector between the row layout `[b, t, heads, hd]`
    /// and the head layout `[b, heads, t, hd]` (`to_heads` says which way),
    /// rotating it by `+θ` (`Some(false)`), `−θ` (`Some(true)`) or not.
    fn permute(&self, src: &[f32], to_heads: bool, rope: Option<(&RopeTables, bool)>) -> Vec<f32> {
        let HeadDims { b, t, heads, hd } = *self;
        // Walk the destination in order and append (no zero-filled buffer).
        let mut dst = Vec::with_capacity(self.len());
        for bi in 0..b {
            for outer in 0..(if to_heads { heads } else { t }) {
                for inner in 0..(if to_heads { t } else { heads }) {
                    let (h, ti) = if to_heads {
                        (outer, inner)
                    } else {
                        (inner, outer)
                    };
                    let from = if to_heads {
                        ((bi * t + ti) * heads + h) * hd
                    } else {
                        ((bi * heads + h) * t + ti) * hd
                    };
                    let x = &src[from..from + hd];
                    match rope {
                        Some((tables, inverse)) => tables.rotate_into(ti, x, &mut dst, inverse),
                        None => dst.extend_from_slice(x),
                    }
                }
            }
        }
        dst
    }
}

/// How [`to_heads`] lays its output out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadLayout {
    /// `[b, heads/g, g·t, hd]`: consecutive groups of `g` heads stacked
    /// along the rows (the same memory as `[b, heads, t, hd]`; `g = 1` is
    /// that shape). Grouped queries multiply their shared kv head this way.
    Grouped(usize),
    /// `[b, heads, hd, t]`: every head transposed (the right operand of
    /// `q·kᵀ`, contiguous, so neither the product nor its backward sees a
    /// strided view).
    Transposed,
}

/// Transposes each of `blocks` consecutive `[rows, cols]` blocks of `src`.
fn transpose_blocks(src: &[f32], blocks: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = Vec::with_capacity(src.len());
    for blk in src.chunks_exact(rows * cols).take(blocks) {
        for c in 0..cols {
            dst.extend(blk.iter().skip(c).step_by(cols));
        }
    }
    dst
}

/// `[b·t, heads·hd]` rows → heads in `layout`, optionally rotated.
struct ToHeads {
    dims: HeadDims,
    rope: Option<Arc<RopeTables>>,
    layout: HeadLayout,
}

impl CustomOp1 for ToHeads {
    fn name(&self) -> &'static str {
        "to-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s, l)?;
        let d = self.dims;
        let y = d.permute(x, true, self.rope.as_deref().map(|r| (r, false)));
        Ok(match self.layout {
            HeadLayout::Grouped(g) => (
                CpuStorage::F32(y),
                Shape::from((d.b, d.heads / g, g * d.t, d.hd)),
            ),
            HeadLayout::Transposed => (
                CpuStorage::F32(transpose_blocks(&y, d.b * d.heads, d.t, d.hd)),
                Shape::from((d.b, d.heads, d.hd, d.t)),
            ),
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = self.dims;
        let rope = self.rope.as_deref().map(|r| (r, true));
        let dx = with_f32(grad, |g| match self.layout {
            HeadLayout::Grouped(_) => d.permute(g, false, rope),
            HeadLayout::Transposed => {
                d.permute(&transpose_blocks(g, d.b * d.heads, d.hd, d.t), false, rope)
            }
        })
        .map_err(to_candle)?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `[b, heads, t, hd]` heads → `[b·t, heads·hd]` rows.
struct FromHeads {
    dims: HeadDims,
}

impl CustomOp1 for FromHeads {
    fn name(&self) -> &'static str {
        "from-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s, l)?;
        let d = self.dims;
        let y = d.permute(x, false, None);
        Ok((CpuStorage::F32(y), Shape::from((d.b * d.t, d.heads * d.hd))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = self.dims;
        let dx = with_f32(grad, |g| d.permute(g, true, None)).map_err(to_candle)?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `[b·t, heads·hd]` projection rows → attention heads in `layout`
/// (`[b, heads, t, hd]` for `Grouped(1)`), rotated by the rotary tables when
/// given (positions `0..t`). One copy forward, one backward (the inverse
/// rotation); no view node in between for the graph to zero-fill and add.
pub(crate) fn to_heads(
    x: &Tensor,
    b: usize,
    t: usize,
    heads: usize,
    rope: Option<&Arc<RopeTables>>,
    layout: HeadLayout,
) -> Result<Tensor> {
    check_f32("to_heads", &[x])?;
    let (rows, width) = x.dims2()?;
    if rows != b * t || heads == 0 || !width.is_multiple_of(heads) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "to_heads: [{rows}, {width}] is not [{b}·{t}, {heads}·head_dim]"
        ))));
    }
    if let HeadLayout::Grouped(g) = layout {
        if g == 0 || !heads.is_multiple_of(g) {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "to_heads: {heads} heads do not split into groups of {g}"
            ))));
        }
    }
    let hd = width / heads;
    if let Some(r) = rope {
        if 2 * r.half != hd || r.cos.len() < t * r.half {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "to_heads: rotary tables of {} positions × {} do not fit {t} positions of head dim {hd}",
                r.cos.len() / r.half.max(1),
                r.half
            ))));
        }
    }
    let op = ToHeads {
        dims: HeadDims { b, t, heads, hd },
        rope: rope.cloned(),
        layout,
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// `[b, heads, t, hd]` → `[b·t, heads·hd]`: [`to_heads`] undone (no rope).
/// Also takes the grouped shape `[b, heads/g, g·t, hd]` (the same memory).
pub(crate) fn from_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    check_f32("from_heads", &[x])?;
    let (b, outer, rows, hd) = x.dims4()?;
    if heads == 0 || !heads.is_multiple_of(outer) || !rows.is_multiple_of(heads / outer) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "from_heads: {:?} is not [b, {heads}/g, g·t, head_dim]",
            x.dims()
        ))));
    }
    let t = rows / (heads / outer);
    let op = FromHeads {
        dims: HeadDims { b, t, heads, hd },
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// `softmax(scale·x + causal mask)` over the last dim (the keys).
struct CausalSoftmax {
    scale: f32,
}

impl CausalSoftmax {
    /// Row `r` of scores whose last dim is `t` keys is query position `r % t`.
    fn visible(r: usize, t: usize) -> usize {
        r % t + 1
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s, l)?;
        let t = *l.dims().last().unwrap_or(&0);
        if t == 0 {
            return Ok((CpuStorage::F32(Vec::new()), l.shape().clone()));
        }
        let rows = x.len() / t;
        let parts = on_pool(&row_groups(rows, t / 2 + 1), |range| {
            let mut y = Vec::with_capacity(range.len() * t);
            for r in range {
                let xr = &x[r * t..(r + 1) * t];
                let n = Self::visible(r, t);
                let xv = &xr[..n];
                let m = xv.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) * self.scale;
                let start = y.len();
                y.extend(xv.iter().map(|&xx| xx * self.scale - m));
                let yv = &mut y[start..];
                exp_slice(yv);
                let inv = (1.0 / sum_f64(yv)) as f32;
                for yy in yv.iter_mut() {
                    *yy *= inv;
                }
                y.resize(start + t, 0.0);
            }
            y
        });
        Ok((CpuStorage::F32(concat(parts)), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let t = arg.dim(candle_core::D::Minus1)?;
        let dx = with_f32(res, |y| {
            with_f32(grad, |g| {
                let rows = if t == 0 { 0 } else { y.len() / t };
                let parts = on_pool(&row_groups(rows, t / 2 + 1), |range| {
                    let mut dx = Vec::with_capacity(range.len() * t);
                    for r in range {
                        let (yr, gr) = (&y[r * t..(r + 1) * t], &g[r * t..(r + 1) * t]);
                        let n = Self::visible(r, t);
                        let (yv, gv) = (&yr[..n], &gr[..n]);
                        let dot: f32 = yv.iter().zip(gv).map(|(a, b)| a * b).sum();
                        let start = dx.len();
                        dx.extend(
                            yv.iter()
                                .zip(gv)
                                .map(|(yy, gg)| self.scale * yy * (gg - dot)),
                        );
                        dx.resize(start + t, 0.0);
                    }
                    dx
                });
                concat(parts)
            })
        })
        .map_err(to_candle)?
        .map_err(to_candle)?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Causal attention probabilities `softmax(scale·x + mask)` over the last
/// dim of scores `x: [.., q, t]` whose rows are query positions `r % t`
/// over keys `0..t` (`q` a multiple of `t`: several query heads may share
/// one key head). Masked entries are exactly 0, forward and backward.
pub(crate) fn causal_softmax(x: &Tensor, scale: f64) -> Result<Tensor> {
    check_f32("causal_softmax", &[x])?;
    let dims = x.dims();
    let (q, t) = match dims {
        [.., q, t] => (*q, *t),
        _ => (0, 0),
    };
    if t == 0 || !q.is_multiple_of(t) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "causal_softmax: scores {dims:?} are not [.., k·t, t] query rows over t keys"
        ))));
    }
    // The row max is taken before scaling, which needs a positive scale.
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "causal_softmax: the score scale must be positive and finite, got {scale}"
        ))));
    }
    let op = CausalSoftmax {
        scale: scale as f32,
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// Elements per block of the SwiGLU passes (4 KiB of f32: a block of each
/// input and the exp block stay in L1).
const SWIGLU_BLOCK: usize = 1024;

/// `silu(g)·u` element-wise.
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(self.name(), s1, l1)?;
        let u = contiguous_f32(self.name(), s2, l2)?;
        // One pass over g and u in L1-sized blocks: e^−g into a stack
        // block, then silu(g)·u = g/(1+e^−g)·u appended to y.
        // Blocks of the flat tensors, split over candle's pool.
        let blocks = g.len().div_ceil(SWIGLU_BLOCK);
        let parts = on_pool(&row_groups(blocks, SWIGLU_BLOCK), |range| {
            let (lo, hi) = (
                range.start * SWIGLU_BLOCK,
                (range.end * SWIGLU_BLOCK).min(g.len()),
            );
            let (g, u) = (&g[lo..hi], &u[lo..hi]);
            let mut y = Vec::with_capacity(g.len());
            let mut e = [0f32; SWIGLU_BLOCK];
            for (gc, uc) in g.chunks(SWIGLU_BLOCK).zip(u.chunks(SWIGLU_BLOCK)) {
                let e = &mut e[..gc.len()];
                for (ev, gv) in e.iter_mut().zip(gc) {
                    *ev = -gv;
                }
                exp_slice(e);
                y.extend(
                    gc.iter()
                        .zip(uc)
                        .zip(e.iter())
                        .map(|((gv, uv), ev)| gv / (1.0 + ev) * uv),
                );
            }
            y
        });
        Ok((CpuStorage::F32(concat(parts)), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // σ = 1/(1+e^−g), silu = g·σ, silu' = σ·(1 + g·(1−σ)).
        let (dg, du) = with_f32(g, |gs| {
            with_f32(u, |us| {
                with_f32(grad, |dy| {
                    // Per L1-sized block: σ into a stack block, then du and
                    // dg appended (each input read once, no zeroed buffer).
                    let n_blocks = gs.len().div_ceil(SWIGLU_BLOCK);
                    let parts = on_pool(&row_groups(n_blocks, SWIGLU_BLOCK), |range| {
                        let lo = range.start * SWIGLU_BLOCK;
                        let hi = (range.end * SWIGLU_BLOCK).min(gs.len());
                        let (gs, us, dy) = (&gs[lo..hi], &us[lo..hi], &dy[lo..hi]);
                        let mut dg = Vec::with_capacity(gs.len());
                        let mut du = Vec::with_capacity(gs.len());
                        let mut sig = [0f32; SWIGLU_BLOCK];
                        let blocks = gs
                            .chunks(SWIGLU_BLOCK)
                            .zip(us.chunks(SWIGLU_BLOCK))
                            .zip(dy.chunks(SWIGLU_BLOCK));
                        for ((gc, uc), dc) in blocks {
                            let sig = &mut sig[..gc.len()];
                            for (sv, gv) in sig.iter_mut().zip(gc) {
                                *sv = -gv;
                            }
                            exp_slice(sig);
                            for sv in sig.iter_mut() {
                                *sv = 1.0 / (1.0 + *sv);
                            }
                            let parts = gc.iter().zip(uc).zip(dc).zip(sig.iter());
                            du.extend(parts.clone().map(|(((gv, _), dyv), sv)| dyv * (gv * sv)));
                            dg.extend(parts.map(|(((gv, uv), dyv), sv)| {
                                dyv * uv * sv * (1.0 + gv * (1.0 - sv))
                            }));
                        }
                        (dg, du)
                    });
                    let (dg, du): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
                    (concat(dg), concat(du))
                })
            })
        })
        .map_err(to_candle)?
        .map_err(to_candle)?
        .map_err(to_candle)?;
        Ok((
            Some(Tensor::from_vec(dg, g.shape(), g.device())?),
            Some(Tensor::from_vec(du, u.shape(), u.device())?),
        ))
    }
}

/// The SwiGLU gate `silu(g)·u` of two same-shaped f32 tensors, with both
/// input gradients from one backward pass.
pub(crate) fn swiglu(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    check_f32("swiglu", &[g, u])?;
    if g.dims() != u.dims() {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "swiglu: gate {:?} and up {:?} differ in shape",
            g.dims(),
            u.dims()
        ))));
    }
    Ok(g.contiguous()?.apply_op2(&u.contiguous()?, SwiGlu)?)
}

/// Per-row cross-entropy `−log softmax(x_i)[id_i]` over `[n, vocab]`
/// logits. The forward computes `softmax − onehot` for each row as it goes
/// and keeps it for the backward (one `exp` per logit, not two).
struct CrossEntropyRows {
    ids: Vec<u32>,
    /// `softmax(x_i) − onehot(id_i)`, filled by the forward.
    grad: Mutex<Option<Vec<f32>>>,
}

impl CustomOp1 for CrossEntropyRows {
    fn name(&self) -> &'static str {
        "cross-entropy-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s, l)?;
        let (n, v) = l.shape().dims2()?;
        if n != self.ids.len() {
            candle_core::bail!(
                "cross-entropy-rows: {n} logit rows for {} targets",
                self.ids.len()
            );
        }
        if let Some(&id) = self.ids.iter().find(|&&id| id as usize >= v) {
            candle_core::bail!("cross-entropy-rows: target {id} outside a vocabulary of {v}");
        }
        // Rows split over candle's pool; each part is its rows' softmax −
        // onehot and losses, in row order.
        let parts = on_pool(&row_groups(n, v), |range| {
            let mut p = Vec::with_capacity(range.len() * v);
            let mut loss = Vec::with_capacity(range.len());
            for i in range {
                let (xr, id) = (&x[i * v..(i + 1) * v], self.ids[i] as usize);
                let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let picked = xr[id] - m;
                let start = p.len();
                p.extend(xr.iter().map(|e| e - m));
                let row = &mut p[start..];
                exp_slice(row);
                let sum = sum_f64(row);
                loss.push((sum.ln() - picked as f64) as f32);
                let inv = (1.0 / sum) as f32;
                for e in row.iter_mut() {
                    *e *= inv;
                }
                row[id] -= 1.0;
            }
            (p, loss)
        });
        let (p, loss): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let (p, loss) = (concat(p), concat(loss));
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        Ok((CpuStorage::F32(loss), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (n, v) = arg.dims2()?;
        let g = grad.to_vec1::<f32>()?;
        let kept = self.grad.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut p) = kept else {
            candle_core::bail!("cross-entropy-rows: backward ran twice or before the forward");
        };
        for (row, gi) in p.chunks_exact_mut(v).zip(&g) {
            for e in row.iter_mut() {
                *e *= gi;
            }
        }
        debug_assert_eq!(p.len(), n * v);
        Ok(Some(Tensor::from_vec(p, (n, v), arg.device())?))
    }
}

/// `−log softmax(logits_i)[ids_i]` for each row of `[n, vocab]` f32
/// logits: a `[n]` tensor whose backward is `softmax − onehot` per row.
/// The gradient is kept from the forward, so one backward pass per graph.
pub(crate) fn cross_entropy_rows(logits: &Tensor, ids: Vec<u32>) -> Result<Tensor> {
    check_f32("cross_entropy_rows", &[logits])?;
    let (n, v) = logits.dims2()?;
    if n != ids.len() {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "cross_entropy_rows: {n} logit rows for {} target ids",
            ids.len()
        ))));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "cross_entropy_rows: target id {bad} outside a vocabulary of {v}"
        ))));
    }
    let op = CrossEntropyRows {
        ids,
        grad: Mutex::new(None),
    };
    Ok(logits.contiguous()?.apply_op1(op)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};
    use proptest::prelude::*;

    /// The composed candle ops the fused op replaces.
    fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
        crate::kernels::reference::rms_norm_diff(x, w, eps).unwrap()
    }

    use crate::tiny::max_abs_diff;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn fused_rms_norm_matches_the_composed_ops_and_their_backward(
            rows in 1usize..6, n in 1usize..40, seed in 0u64..1000
        ) {
            let dev = Device::Cpu;
            let mk = |k: u64, len: usize| -> Vec<f32> {
                (0..len).map(|i| (((i as u64 * 7919 + k * 104_729 + seed * 31) % 1000) as f32 / 250.0) - 2.0).collect()
            };
            let x = Var::from_vec(mk(1, rows * n), (rows, n), &dev).unwrap();
            let w = Tensor::from_vec(mk(2, n), n, &dev).unwrap();
            let up = Tensor::from_vec(mk(3, rows * n), (rows, n), &dev).unwrap();
            let eps = 1e-5;
            let yf = rms_norm_frozen(x.as_tensor(), &w, eps).unwrap();
            let yc = composed(x.as_tensor(), &w, eps);
            prop_assert!(max_abs_diff(&yf, &yc) < 1e-4, "forward differs");
            let gf = (yf * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (yc * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gf = gf.get(x.as_tensor()).expect("fused gradient");
            let gc = gc.get(x.as_tensor()).expect("composed gradient");
            let scale = gc.abs().unwrap().max_keepdim(0).unwrap().max_keepdim(1).unwrap()
                .flatten_all().unwrap().to_vec1::<f32>().unwrap()[0].max(1.0);
            prop_assert!(max_abs_diff(gf, gc) < 1e-4 * scale, "input gradient differs");
        }
    }

    #[test]
    fn fused_rms_norm_keeps_leading_dims_and_rejects_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?;
        let w = Tensor::randn(0f32, 1.0, 8, &dev)?;
        let y = rms_norm_frozen(&x, &w, 1e-6)?;
        assert_eq!(y.dims(), &[2, 3, 8]);
        assert!(max_abs_diff(&y, &composed(&x, &w, 1e-6)) < 1e-5);
        // A transposed (non-contiguous) input is made contiguous first.
        let xt = Tensor::randn(0f32, 1.0, (8, 5), &dev)?.t()?;
        assert!(max_abs_diff(&rms_norm_frozen(&xt, &w, 1e-6)?, &composed(&xt, &w, 1e-6)) < 1e-5);
        let err = rms_norm_frozen(&x, &Tensor::ones(7, DType::F32, &dev)?, 1e-6)
            .unwrap_err()
            .to_string();
        assert!(err.contains("7 features"), "{err}");
        let err = rms_norm_frozen(&x.to_dtype(DType::F64)?, &w, 1e-6)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f32"), "{err}");
        Ok(())
    }

    /// Deterministic values in `[-2, 2)` from a seed and a stream id.
    fn vals(seed: u64, k: u64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u64 * 7919 + k * 104_729 + seed * 31) % 1000) as f32 / 250.0) - 2.0)
            .collect()
    }

    /// `max |a − b| ≤ tol · max(1, max |b|)`.
    fn close(a: &Tensor, b: &Tensor, tol: f32) -> bool {
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
        max_abs_diff(a, b) <= tol * scale
    }

    /// `Σ y·up` backpropagated: the gradient of `vars` for upstream `up`.
    fn grads(y: &Tensor, up: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
        let g = (y * up).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter()
            .map(|v| g.get(v.as_tensor()).expect("a gradient").clone())
            .collect()
    }

    fn rope_tables(t: usize, hd: usize) -> (Tensor, Tensor) {
        let half = hd / 2;
        let a: Vec<f32> = (0..t)
            .flat_map(|p| {
                (0..half).map(move |f| p as f32 * 10_000f32.powf(-2.0 * f as f32 / hd as f32))
            })
            .collect();
        let a = Tensor::from_vec(a, (t, half), &Device::Cpu).unwrap();
        (a.cos().unwrap(), a.sin().unwrap())
    }

    #[test]
    fn vectorized_exp_is_within_two_ulp_of_exp() {
        let mut xs: Vec<f32> = (0..175_000).map(|i| -87.0 + i as f32 * 0.001).collect();
        xs.extend([0.0, -0.0, 1e-8, -1e-8, 88.0]);
        let mut ys = xs.clone();
        exp_slice(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let want = (*x as f64).exp();
            let rel = ((*y as f64 - want) / want).abs();
            assert!(
                rel < 2.5e-7,
                "exp({x}) = {y}, want {want} (relative error {rel:e})"
            );
        }
        let mut low = [-100.0f32, f32::NEG_INFINITY];
        exp_slice(&mut low);
        assert!(low.iter().all(|v| (0.0..1e-37).contains(v)), "{low:?}");
    }

    #[test]
    fn row_groups_cover_every_row_once_in_order() {
        for rows in [0usize, 1, 2, 7, 64, 1000] {
            for per_row in [1usize, 100, PAR_MIN_WORK, 50_000] {
                let g = row_groups(rows, per_row);
                assert!(!g.is_empty());
                assert!(g.len() <= candle_core::utils::get_num_threads().max(1));
                let flat: Vec<usize> = g.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(
                    flat,
                    (0..rows).collect::<Vec<_>>(),
                    "{rows} rows × {per_row}"
                );
                if rows * per_row < 2 * PAR_MIN_WORK {
                    assert_eq!(g.len(), 1, "small work stays on one thread");
                }
            }
        }
    }

    /// Sizes large enough that the ops split their rows over candle's pool
    /// (on a machine with at least two threads), against the composed ops.
    #[test]
    fn fused_ops_split_over_the_pool_match_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        let threads = candle_core::utils::get_num_threads();
        // Cross-entropy: 40 rows of 2,000 logits.
        let (n, v) = (40, 2000);
        assert_eq!(row_groups(n, v).len(), threads.min(2).max(1));
        let x = Var::from_vec(
            vals(1, 1, n * v).iter().map(|a| a * 5.0).collect(),
            (n, v),
            &dev,
        )?;
        let ids: Vec<u32> = (0..n).map(|i| ((i * 37) % v) as u32).collect();
        let up = Tensor::from_vec(vals(1, 2, n), n, &dev)?;
        let yf = cross_entropy_rows(x.as_tensor(), ids.clone())?;
        let logp = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1)?;
        let idx = Tensor::from_vec(ids, (n, 1), &dev)?;
        let yc = logp.gather(&idx, 1)?.squeeze(1)?.neg()?;
        assert!(close(&yf, &yc, 1e-5), "cross-entropy forward differs");
        let (gf, gc) = (grads(&yf, &up, &[&x]), grads(&yc, &up, &[&x]));
        assert!(
            close(&gf[0], &gc[0], 1e-5),
            "cross-entropy gradient differs"
        );
        // SwiGLU: 4 rows of 20,000.
        let (rows, m) = (4, 20_000);
        let g = Var::from_vec(
            vals(2, 1, rows * m).iter().map(|a| a * 4.0).collect(),
            (rows, m),
            &dev,
        )?;
        let u = Var::from_vec(vals(2, 2, rows * m), (rows, m), &dev)?;
        let up = Tensor::from_vec(vals(2, 3, rows * m), (rows, m), &dev)?;
        let yf = swiglu(g.as_tensor(), u.as_tensor())?;
        let yc = (g.as_tensor().silu()? * u.as_tensor())?;
        assert!(close(&yf, &yc, 1e-5), "swiglu forward differs");
        let (gf, gc) = (grads(&yf, &up, &[&g, &u]), grads(&yc, &up, &[&g, &u]));
        assert!(
            close(&gf[0], &gc[0], 1e-5) && close(&gf[1], &gc[1], 1e-5),
            "swiglu gradients differ"
        );
        // Causal softmax: 4 × 2 query blocks of 128 keys.
        let (lead, k, t) = (4, 2, 128);
        let len = lead * k * t * t;
        let x = Var::from_vec(
            vals(3, 1, len).iter().map(|a| a * 6.0).collect(),
            (lead, k * t, t),
            &dev,
        )?;
        let up = Tensor::from_vec(vals(3, 2, len), (lead, k * t, t), &dev)?;
        let yf = causal_softmax(x.as_tensor(), 0.125)?;
        let mask = crate::kernels::positions::causal_mask(t, 0)?.repeat((k, 1))?;
        let sc = (x.as_tensor() * 0.125)?.broadcast_add(&mask)?;
        let yc = crate::kernels::reference::softmax_diff(&sc)?;
        assert!(close(&yf, &yc, 1e-5), "softmax forward differs");
        let (gf, gc) = (grads(&yf, &up, &[&x]), grads(&yc, &up, &[&x]));
        assert!(close(&gf[0], &gc[0], 1e-5), "softmax gradient differs");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn fused_swiglu_matches_silu_times_up_and_its_backward(
            rows in 1usize..5, n in 1usize..70, seed in 0u64..1000
        ) {
            let dev = Device::Cpu;
            let g = Var::from_vec(vals(seed, 1, rows * n).iter().map(|v| v * 4.0).collect(), (rows, n), &dev).unwrap();
            let u = Var::from_vec(vals(seed, 2, rows * n), (rows, n), &dev).unwrap();
            let up = Tensor::from_vec(vals(seed, 3, rows * n), (rows, n), &dev).unwrap();
            let yf = swiglu(g.as_tensor(), u.as_tensor()).unwrap();
            let yc = (g.as_tensor().silu().unwrap() * u.as_tensor()).unwrap();
            prop_assert!(close(&yf, &yc, 1e-5), "forward differs");
            let gf = grads(&yf, &up, &[&g, &u]);
            let gc = grads(&yc, &up, &[&g, &u]);
            prop_assert!(close(&gf[0], &gc[0], 1e-5), "gate gradient differs");
            prop_assert!(close(&gf[1], &gc[1], 1e-5), "up gradient differs");
        }

        #[test]
        fn fused_causal_softmax_matches_masked_softmax_and_its_backward(
            lead in 1usize..4, k in 1usize..4, t in 1usize..20, seed in 0u64..1000
        ) {
            let dev = Device::Cpu;
            let len = lead * k * t * t;
            let x = Var::from_vec(vals(seed, 1, len).iter().map(|v| v * 6.0).collect(), (lead, k * t, t), &dev).unwrap();
            let up = Tensor::from_vec(vals(seed, 2, len), (lead, k * t, t), &dev).unwrap();
            let scale = 0.125;
            let yf = causal_softmax(x.as_tensor(), scale).unwrap();
            // Composed: scale, the additive mask (the same for each of the
            // k query blocks), then the primitive-op softmax.
            let mask = crate::kernels::positions::causal_mask(t, 0).unwrap().repeat((k, 1)).unwrap();
            let s = (x.as_tensor() * scale).unwrap().broadcast_add(&mask).unwrap();
            let yc = crate::kernels::reference::softmax_diff(&s).unwrap();
            prop_assert!(close(&yf, &yc, 1e-5), "forward differs");
            let gf = grads(&yf, &up, &[&x]);
            let gc = grads(&yc, &up, &[&x]);
            prop_assert!(close(&gf[0], &gc[0], 1e-5), "gradient differs");
        }

        #[test]
        fn fused_rope_transpose_matches_the_composed_rope_and_its_backward(
            b in 1usize..3, t in 1usize..9, heads in 1usize..4, half in 1usize..6, seed in 0u64..1000
        ) {
            let dev = Device::Cpu;
            let hd = 2 * half;
            let len = b * t * heads * hd;
            let x = Var::from_vec(vals(seed, 1, len), (b * t, heads * hd), &dev).unwrap();
            let up = Tensor::from_vec(vals(seed, 2, len), (b, heads, t, hd), &dev).unwrap();
            let (cos, sin) = rope_tables(t + 3, hd);
            let tables = RopeTables::new(&cos, &sin, t).unwrap();
            let yf = to_heads(x.as_tensor(), b, t, heads, Some(&tables), HeadLayout::Grouped(1)).unwrap();
            let xh = x.as_tensor().reshape((b, t, heads, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let c = cos.narrow(0, 0, t).unwrap();
            let s = sin.narrow(0, 0, t).unwrap();
            let c = Tensor::cat(&[&c, &c], 1).unwrap();
            let s = Tensor::cat(&[&s, &s], 1).unwrap();
            let yc = crate::kernels::reference::rope_diff(&xh, &c, &s).unwrap();
            prop_assert!(close(&yf, &yc, 1e-5), "forward differs");
            let gf = grads(&yf, &up, &[&x]);
            let gc = grads(&yc, &up, &[&x]);
            prop_assert!(close(&gf[0], &gc[0], 1e-5), "gradient differs");
            // Without tables it is the plain transpose, and from_heads undoes it.
            let plain = to_heads(x.as_tensor(), b, t, heads, None, HeadLayout::Grouped(1)).unwrap();
            prop_assert!(max_abs_diff(&plain, &xh) == 0.0, "transpose differs");
            let back = from_heads(&plain, heads).unwrap();
            // The transposed layout is the same heads with the last two dims
            // swapped, forward and backward.
            let yt = to_heads(x.as_tensor(), b, t, heads, Some(&tables), HeadLayout::Transposed).unwrap();
            let yct = yc.t().unwrap();
            prop_assert!(max_abs_diff(&yt, &yct) == 0.0, "transposed forward differs");
            let upt = up.t().unwrap().contiguous().unwrap();
            let gt = grads(&yt, &upt, &[&x]);
            let gct = grads(&yct, &upt, &[&x]);
            prop_assert!(close(&gt[0], &gct[0], 1e-5), "transposed gradient differs");
            prop_assert!(max_abs_diff(&back, x.as_tensor()) == 0.0, "round trip differs");
        }

        #[test]
        fn fused_attention_core_matches_the_composed_grouped_query_attention(
            b in 1usize..3, t in 1usize..8, kvh in 1usize..3, groups in 1usize..4, seed in 0u64..1000
        ) {
            // The training attention as llama.rs runs it: rope'd heads, query
            // groups folded into rows against their shared key head, causal
            // softmax, heads back to rows. Against the composed original:
            // transposes, rope_diff, repeat_kv, scale + mask + softmax_diff.
            let dev = Device::Cpu;
            let (h, hd) = (kvh * groups, 4);
            let q = Var::from_vec(vals(seed, 1, b * t * h * hd), (b * t, h * hd), &dev).unwrap();
            let k = Var::from_vec(vals(seed, 2, b * t * kvh * hd), (b * t, kvh * hd), &dev).unwrap();
            let v = Var::from_vec(vals(seed, 3, b * t * kvh * hd), (b * t, kvh * hd), &dev).unwrap();
            let up = Tensor::from_vec(vals(seed, 4, b * t * h * hd), (b * t, h * hd), &dev).unwrap();
            let (cos, sin) = rope_tables(t, hd);
            let scale = 1.0 / (hd as f64).sqrt();
            let tables = RopeTables::new(&cos, &sin, t).unwrap();
            let qg = to_heads(q.as_tensor(), b, t, h, Some(&tables), HeadLayout::Grouped(groups)).unwrap();
            let kt = to_heads(k.as_tensor(), b, t, kvh, Some(&tables), HeadLayout::Transposed).unwrap();
            let vh = to_heads(v.as_tensor(), b, t, kvh, None, HeadLayout::Grouped(1)).unwrap();
            let p = causal_softmax(&qg.matmul(&kt).unwrap(), scale).unwrap();
            let of = from_heads(&p.matmul(&vh).unwrap(), h).unwrap();

            let heads = |x: &Tensor, n: usize| x.reshape((b, t, n, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let c = Tensor::cat(&[&cos, &cos], 1).unwrap();
            let s = Tensor::cat(&[&sin, &sin], 1).unwrap();
            let qc = crate::kernels::reference::rope_diff(&heads(q.as_tensor(), h), &c, &s).unwrap();
            let kc = crate::kernels::reference::rope_diff(&heads(k.as_tensor(), kvh), &c, &s).unwrap();
            let kc = crate::kernels::reference::repeat_kv(&kc, groups).unwrap();
            let vc = crate::kernels::reference::repeat_kv(&heads(v.as_tensor(), kvh), groups).unwrap();
            let mask = crate::kernels::positions::causal_mask(t, 0).unwrap();
            let sc = (qc.matmul(&kc.t().unwrap()).unwrap() * scale).unwrap().broadcast_add(&mask).unwrap();
            let pc = crate::kernels::reference::softmax_diff(&sc).unwrap();
            let oc = pc.matmul(&vc).unwrap().transpose(1, 2).unwrap().reshape((b * t, h * hd)).unwrap();
            prop_assert!(close(&of, &oc, 1e-5), "forward differs");
            let gf = grads(&of, &up, &[&q, &k, &v]);
            let gc = grads(&oc, &up, &[&q, &k, &v]);
            for (i, name) in ["q", "k", "v"].iter().enumerate() {
                prop_assert!(close(&gf[i], &gc[i], 1e-5), "{name} gradient differs");
            }
        }

        #[test]
        fn fused_cross_entropy_matches_log_softmax_gather_and_its_backward(
            n in 1usize..5, v in 2usize..300, seed in 0u64..1000
        ) {
            let dev = Device::Cpu;
            let x = Var::from_vec(vals(seed, 1, n * v).iter().map(|a| a * 5.0).collect(), (n, v), &dev).unwrap();
            let ids: Vec<u32> = (0..n).map(|i| ((seed as usize * 13 + i * 7) % v) as u32).collect();
            let up = Tensor::from_vec(vals(seed, 2, n), n, &dev).unwrap();
            let yf = cross_entropy_rows(x.as_tensor(), ids.clone()).unwrap();
            let logp = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1).unwrap();
            let idx = Tensor::from_vec(ids, (n, 1), &dev).unwrap();
            let yc = logp.gather(&idx, 1).unwrap().squeeze(1).unwrap().neg().unwrap();
            prop_assert!(close(&yf, &yc, 1e-5), "forward differs");
            let gf = grads(&yf, &up, &[&x]);
            let gc = grads(&yc, &up, &[&x]);
            prop_assert!(close(&gf[0], &gc[0], 1e-5), "gradient differs");
        }
    }

    #[test]
    fn fused_ops_name_bad_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((6, 8), DType::F32, &dev)?;
        let g1 = HeadLayout::Grouped(1);
        let err = to_heads(&x, 2, 2, 4, None, g1).unwrap_err().to_string();
        assert!(err.contains("[6, 8]"), "{err}");
        let err = to_heads(&x, 2, 3, 4, None, HeadLayout::Grouped(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("groups of 3"), "{err}");
        let (cos, sin) = rope_tables(4, 4);
        let tables = RopeTables::new(&cos, &sin, 3)?;
        let err = to_heads(&x, 2, 3, 4, Some(&tables), g1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("head dim 2"), "{err}");
        let err = from_heads(&Tensor::zeros((1, 2, 3, 4), DType::F32, &dev)?, 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[1, 2, 3, 4]"), "{err}");
        let err = causal_softmax(&Tensor::zeros((2, 5, 3), DType::F32, &dev)?, 1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[2, 5, 3]"), "{err}");
        let scores = Tensor::zeros((2, 3, 3), DType::F32, &dev)?;
        let err = causal_softmax(&scores, -0.5).unwrap_err().to_string();
        assert!(err.contains("positive"), "{err}");
        let err = swiglu(&x, &Tensor::zeros((8, 6), DType::F32, &dev)?)
            .unwrap_err()
            .to_string();
        assert!(err.contains("differ in shape"), "{err}");
        let err = cross_entropy_rows(&x, vec![0, 1, 2, 3, 4, 8])
            .unwrap_err()
            .to_string();
        assert!(err.contains("target id 8"), "{err}");
        let err = cross_entropy_rows(&x, vec![0]).unwrap_err().to_string();
        assert!(err.contains("6 logit rows for 1"), "{err}");
        let err = swiglu(&x.to_dtype(DType::F64)?, &x)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f32"), "{err}");
        Ok(())
    }
}
