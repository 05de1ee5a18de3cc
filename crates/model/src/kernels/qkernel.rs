//! Matrix–vector kernels for the single-token decode path, on weights kept
//! in ggml blocks.
//!
//! Decode multiplies a few activation rows by every weight matrix once per
//! token, so it is bound by how many weight bytes are read. Q4_1 holds a
//! weight in 5 bits (vs 32 for f32), but candle 0.11 only has SIMD Q4_1 code
//! under compile-time target features, and a portable build runs its scalar
//! fallback (docs/model.md). These kernels follow llama.cpp's scheme and pick
//! AVX2 + FMA at *run time* (`is_x86_feature_detected!`), with a scalar
//! fallback elsewhere:
//!
//! - **Q4_1 weights × q8_1 activations.** Each activation row is quantized
//!   once per projection input into blocks of 32: `d = max|x|/127`,
//!   `q = round(x/d)`, and `s = d·Σq`. A Q4_1 weight block is `w = d_w·n + m_w`
//!   (`n ∈ 0..16`), so `Σ w·x ≈ d_w·d_x·Σ n·q + m_w·s`: one `maddubs`
//!   (unsigned nibbles × signed bytes) per block, integer until the scale.
//! - **Q8_0 weights × f32 activations** (SmolLM2's embedding / tied LM
//!   head): each block is widened to f32 on the fly, `Σ d_w·q·x`. The result
//!   equals the dequantized f32 product up to summation order, so logits stay
//!   exact (a q8 activation flips near-tie tokens, docs/model.md).
//! - **f32 × f32** for everything else (Hugging Face checkpoints, other ggml
//!   types, which are dequantized when packed).
//!
//! Blocks keep ggml's byte layout (f16 scales, 20 bytes per Q4_1 block, 34
//! per Q8_0): decode is bound by memory bandwidth, so f32 scales (24 and 36
//! bytes) measured slower; the SIMD kernels convert scales with F16C.
//! The SIMD loops prefetch the weight bytes 2 KiB ahead of the block being
//! read (decode went from 23 to about 10.6 CPU ms per SmolLM2 token with it,
//! docs/model.md). For one activation row, four weight rows go through one
//! call. [`matmul_many`] splits the output rows of one or more projections
//! into exactly `rayon::current_num_threads()` contiguous ranges, one
//! fork–join per call, with results bit-identical to one thread.
//!
//! Many activation rows (decode batches, prompts) take 4-weight-row tiles:
//! with AVX-512 VNNI (detected at run time, `Kernel::Avx512Vnni`) four Q4_1
//! rows are unpacked once and multiplied against every q8_1 row with
//! `vpdpbusd`, two blocks per instruction; prompt rows
//! ([`Activations::exact`]) multiply f32 activations against the four rows
//! dequantized into an L1-sized buffer. One activation row stays on the AVX2
//! kernels, which measured faster for that memory-bound case (docs/model.md).
//!
//! `unsafe` is allowed in this module only, because `std::arch` intrinsics
//! are `unsafe fn`s: each call is behind a runtime feature check, and every
//! pointer read is inside a block whose length the safe wrapper checked first.
#![allow(unsafe_code)]

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::kernels::cpu_f32::with_f32;

/// Elements per quantization block (ggml's `QK4_1`, `QK8_0`, `QK8_1`).
pub(crate) const QK: usize = 32;

/// A Q4_1 weight block as ggml stores it: `w_i = d·n_i + m` with `dm = [d,
/// m]` as f16 bits, nibble `n_i` of element `i < 16` in the low half of
/// `qs[i]`, of `i + 16` in the high half.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct BlockQ4_1 {
    pub(crate) dm: [u16; 2],
    pub(crate) qs: [u8; 16],
}

/// A Q8_0 weight block as ggml stores it: `w_i = d·q_i`, `d` as f16 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct BlockQ8_0 {
    pub(crate) d: u16,
    pub(crate) qs: [i8; 32],
}

/// A q8_1 activation block: `x_i ≈ d·q_i`, `s = d·Σ q_i`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct BlockQ8_1 {
    pub(crate) d: f32,
    pub(crate) s: f32,
    pub(crate) qs: [i8; 32],
}

/// Which instruction set the dot products use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable Rust (also the reference the SIMD kernels are tested against).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C; only constructed after a runtime check.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with VNNI (`vpdpbusd`) on top of everything
    /// [`Kernel::Avx2`] needs; only constructed after a runtime check. Many
    /// activation rows (batched decode, prompts) use 512-bit tile kernels
    /// (two Q4_1 blocks per `vpdpbusd`, or f32 FMA on dequantized rows); one
    /// activation row stays on the AVX2 bodies, which measured faster for
    /// that memory-bound case (docs/model.md).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

/// Environment variable that caps the detected kernel (`scalar`, `avx2`),
/// for A/B measurements in one build; unset or anything else: the fastest.
pub(crate) const KERNEL_ENV: &str = "TRIB_DECODE_KERNEL";

impl Kernel {
    /// The fastest kernel this CPU supports, detected at run time, capped
    /// by [`KERNEL_ENV`] when set.
    pub(crate) fn detect() -> Self {
        let cap = std::env::var(KERNEL_ENV).unwrap_or_default();
        if cap == "scalar" {
            return Kernel::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let avx512 = avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            if avx512 && cap != "avx2" {
                return Kernel::Avx512Vnni;
            }
            if avx2 {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// Every kernel this CPU can run, slowest first (for tests and A/B runs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn available() -> Vec<Self> {
        let mut all = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                all.push(Kernel::Avx2);
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    all.push(Kernel::Avx512Vnni);
                }
            }
        }
        all
    }

    /// Whether many-row Q4_1 products on this kernel (the AVX-512 VNNI
    /// tile kernel) beat candle's f32 gemm over a dequantized copy, so a
    /// model that has both should multiply its blocks even for prefill and
    /// large batches (docs/model.md).
    pub(crate) fn batches_quantized(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512Vnni {
            return true;
        }
        false
    }

    /// A short name for logs and benchmark lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2+fma+f16c",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx512+vnni",
        }
    }
}

/// IEEE half → single precision (ggml stores block scales as f16).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as u32;
    match exp {
        0 => sign * man as f32 * f32::powi(2.0, -24),
        31 if man == 0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => f32::from_bits(
            (u32::from(h & 0x8000) << 16) | (((exp + 127 - 15) as u32) << 23) | (man << 13),
        ),
    }
}

/// A weight matrix `[rows, cols]` in the layout the decode kernels read.
#[derive(Debug)]
pub(crate) enum PackedMatrix {
    /// Q4_1 blocks, `cols / 32` per row.
    Q4_1 {
        rows: usize,
        cols: usize,
        blocks: Vec<BlockQ4_1>,
    },
    /// Q8_0 blocks, `cols / 32` per row.
    Q8_0 {
        rows: usize,
        cols: usize,
        blocks: Vec<BlockQ8_0>,
    },
    /// Dense f32, row-major: the model's own candle tensor (shared, not
    /// copied), read in place.
    F32 {
        rows: usize,
        cols: usize,
        data: Tensor,
    },
}

/// Bytes of one ggml Q4_1 / Q8_0 block in a GGUF file.
const Q4_1_BYTES: usize = 20;
const Q8_0_BYTES: usize = 34;

impl PackedMatrix {
    /// Reads raw ggml Q4_1 bytes (`d: f16, m: f16, qs: [u8; 16]` per block).
    pub(crate) fn from_q4_1(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        check_layout("Q4_1", bytes.len(), rows, cols, Q4_1_BYTES)?;
        let blocks = bytes
            .chunks_exact(Q4_1_BYTES)
            .map(|b| {
                let mut qs = [0u8; 16];
                qs.copy_from_slice(&b[4..20]);
                BlockQ4_1 {
                    dm: [
                        u16::from_le_bytes([b[0], b[1]]),
                        u16::from_le_bytes([b[2], b[3]]),
                    ],
                    qs,
                }
            })
            .collect();
        Ok(Self::Q4_1 { rows, cols, blocks })
    }

    /// Reads raw ggml Q8_0 bytes (`d: f16, qs: [i8; 32]` per block).
    pub(crate) fn from_q8_0(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        check_layout("Q8_0", bytes.len(), rows, cols, Q8_0_BYTES)?;
        let blocks = bytes
            .chunks_exact(Q8_0_BYTES)
            .map(|b| {
                let mut qs = [0i8; 32];
                for (q, &byte) in qs.iter_mut().zip(&b[2..34]) {
                    *q = byte as i8;
                }
                BlockQ8_0 {
                    d: u16::from_le_bytes([b[0], b[1]]),
                    qs,
                }
            })
            .collect();
        Ok(Self::Q8_0 { rows, cols, blocks })
    }

    /// Wraps a dense f32 `[rows, cols]` tensor (made contiguous once here).
    pub(crate) fn from_tensor(t: &Tensor) -> Result<Self> {
        let (rows, cols) = t.dims2()?;
        if t.dtype() != DType::F32 {
            return Err(ModelError::Packing(format!(
                "a [{rows}, {cols}] {:?} matrix is not f32",
                t.dtype()
            )));
        }
        Ok(Self::F32 {
            rows,
            cols,
            data: t.contiguous()?,
        })
    }

    /// Output features.
    pub(crate) fn rows(&self) -> usize {
        match self {
            Self::Q4_1 { rows, .. } | Self::Q8_0 { rows, .. } | Self::F32 { rows, .. } => *rows,
        }
    }

    /// Input features.
    pub(crate) fn cols(&self) -> usize {
        match self {
            Self::Q4_1 { cols, .. } | Self::Q8_0 { cols, .. } | Self::F32 { cols, .. } => *cols,
        }
    }

    /// The storage name (`Q4_1`, `Q8_0`, `F32`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Q4_1 { .. } => "Q4_1",
            Self::Q8_0 { .. } => "Q8_0",
            Self::F32 { .. } => "F32",
        }
    }

    /// Writes row `r`, dequantized, into `out` (`cols` values): the
    /// embedding lookup.
    pub(crate) fn row_into(&self, r: usize, out: &mut [f32]) -> Result<()> {
        let (rows, cols) = (self.rows(), self.cols());
        if r >= rows || out.len() != cols {
            return Err(ModelError::Packing(format!(
                "row {r} into {} values of a [{rows}, {cols}] matrix",
                out.len()
            )));
        }
        let nb = cols / QK;
        match self {
            Self::Q4_1 { blocks, .. } => {
                for (b, o) in blocks[r * nb..(r + 1) * nb]
                    .iter()
                    .zip(out.chunks_exact_mut(QK))
                {
                    let (d, m) = (f16_to_f32(b.dm[0]), f16_to_f32(b.dm[1]));
                    for j in 0..16 {
                        o[j] = d * f32::from(b.qs[j] & 0x0f) + m;
                        o[j + 16] = d * f32::from(b.qs[j] >> 4) + m;
                    }
                }
            }
            Self::Q8_0 { blocks, .. } => {
                for (b, o) in blocks[r * nb..(r + 1) * nb]
                    .iter()
                    .zip(out.chunks_exact_mut(QK))
                {
                    let d = f16_to_f32(b.d);
                    for (v, &q) in o.iter_mut().zip(&b.qs) {
                        *v = d * f32::from(q);
                    }
                }
            }
            Self::F32 { data, .. } => {
                with_f32(data, |d| out.copy_from_slice(&d[r * cols..(r + 1) * cols]))?
            }
        }
        Ok(())
    }

    /// `out[i·rows + r] = Σ_c W[r, c]·x[i·cols + c]` for the `n` rows of `x`
    /// (`out = x·Wᵀ`, `[n, rows]`). One projection of [`matmul_many`].
    pub(crate) fn matmul(
        &self,
        x: &Activations<'_>,
        out: &mut [f32],
        kernel: Kernel,
    ) -> Result<()> {
        matmul_many(&mut [MatmulJob { w: self, x, out }], kernel)
    }

    /// Output rows `r0..r0 + outs[0].len()` of `x·Wᵀ`: `outs[i][k]` is row
    /// `r0 + k` for activation row `i`. Every output value is computed by
    /// the same code wherever the range starts, as long as `r0` is a
    /// multiple of [`GROUP`] (the grouped Q4_1 kernel's row groups then
    /// line up with a whole-matrix call).
    fn matmul_rows(
        &self,
        x: &Activations<'_>,
        r0: usize,
        outs: &mut [&mut [f32]],
        kernel: Kernel,
    ) -> Result<()> {
        let cols = self.cols();
        let nb = cols / QK;
        let len = outs.first().map_or(0, |o| o.len());
        match self {
            Self::Q4_1 { blocks, .. } if x.exact => {
                // f32 rows: dequantize four weight rows at a time into an
                // L1-sized buffer and run f32 dot products against every
                // activation row.
                let mut w4 = vec![0f32; GROUP * cols];
                for g in (0..len).step_by(GROUP) {
                    let rows = GROUP.min(len - g);
                    for (k, wr) in w4.chunks_exact_mut(cols).take(rows).enumerate() {
                        let r = r0 + g + k;
                        dequantize_q4_1(&blocks[r * nb..(r + 1) * nb], wr, kernel);
                    }
                    for (i, o) in outs.iter_mut().enumerate() {
                        let xi = &x.x[i * cols..(i + 1) * cols];
                        dot_f32_rows(&w4[..rows * cols], xi, &mut o[g..g + rows], kernel);
                    }
                }
            }
            Self::Q4_1 { blocks, .. } if outs.len() == 1 => {
                // One activation row (single-sequence decode): four weight
                // rows per call share the activation loads and scales.
                let q8 = x.q8_1()?;
                for (g, o) in outs[0].chunks_mut(GROUP).enumerate() {
                    let r = r0 + g * GROUP;
                    dot_q4_1_q8_1_rows(&blocks[r * nb..(r + o.len()) * nb], q8, o, kernel);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Q4_1 { blocks, .. } if kernel == Kernel::Avx512Vnni => {
                // Several rows, AVX-512 VNNI: each group of four weight rows
                // is unpacked once (nibbles to bytes, scales to f32) and
                // multiplied against every activation row while it sits in
                // L1, so the weights stream from memory once per call.
                let acts = x.wide()?;
                let mut nw = vec![0u8; GROUP * acts.pairs * 64];
                let mut dw = vec![0f32; GROUP * acts.pairs * 16];
                let mut mw = vec![0f32; GROUP * acts.nb16];
                for g in (0..len).step_by(GROUP) {
                    let rows = GROUP.min(len - g);
                    let w = &blocks[(r0 + g) * nb..(r0 + g + rows) * nb];
                    // SAFETY: `Kernel::Avx512Vnni` is only built after
                    // detecting its features; `w` holds `rows ≤ 4` rows of
                    // `nb` blocks and the scratch sizes follow `acts`.
                    unsafe {
                        x86v4::unpack_q4_1_x4(w, nb, acts, &mut nw, &mut dw, &mut mw);
                        x86v4::tile_q4_1(acts, &nw, &dw, &mw, |i, v| {
                            outs[i][g..g + rows].copy_from_slice(&v[..rows]);
                        });
                    }
                }
            }
            Self::Q4_1 { blocks, .. } => {
                // Several rows: each group of four weight rows is read once
                // from memory and stays in L1 for every activation row.
                let q8 = x.q8_1()?;
                for g in (0..len).step_by(GROUP) {
                    let rows = GROUP.min(len - g);
                    let w = &blocks[(r0 + g) * nb..(r0 + g + rows) * nb];
                    for (i, o) in outs.iter_mut().enumerate() {
                        let xi = &q8[i * nb..(i + 1) * nb];
                        dot_q4_1_q8_1_rows(w, xi, &mut o[g..g + rows], kernel);
                    }
                }
            }
            Self::Q8_0 { blocks, .. } if outs.len() > 1 => {
                // Several rows: widen each weight row to f32 once, then f32
                // dot products (the same exact-activation math as one row,
                // summed in another order).
                let mut w4 = vec![0f32; GROUP * cols];
                for g in (0..len).step_by(GROUP) {
                    let rows = GROUP.min(len - g);
                    for (k, wr) in w4.chunks_exact_mut(cols).take(rows).enumerate() {
                        let r = r0 + g + k;
                        for (b, o) in blocks[r * nb..(r + 1) * nb]
                            .iter()
                            .zip(wr.chunks_exact_mut(QK))
                        {
                            let d = f16_to_f32(b.d);
                            for (v, &q) in o.iter_mut().zip(&b.qs) {
                                *v = d * f32::from(q);
                            }
                        }
                    }
                    for (i, o) in outs.iter_mut().enumerate() {
                        let xi = &x.x[i * cols..(i + 1) * cols];
                        dot_f32_rows(&w4[..rows * cols], xi, &mut o[g..g + rows], kernel);
                    }
                }
            }
            Self::Q8_0 { blocks, .. } => {
                for k in 0..len {
                    let w = &blocks[(r0 + k) * nb..(r0 + k + 1) * nb];
                    for (i, o) in outs.iter_mut().enumerate() {
                        o[k] = dot_q8_0_f32(w, &x.x[i * cols..(i + 1) * cols], kernel);
                    }
                }
            }
            Self::F32 { data, .. } => with_f32(data, |data| {
                for k in 0..len {
                    let w = &data[(r0 + k) * cols..(r0 + k + 1) * cols];
                    for (i, o) in outs.iter_mut().enumerate() {
                        o[k] = dot_f32(w, &x.x[i * cols..(i + 1) * cols], kernel);
                    }
                }
            })?,
        }
        Ok(())
    }
}

fn check_layout(kind: &str, len: usize, rows: usize, cols: usize, block: usize) -> Result<()> {
    if cols % QK != 0 {
        return Err(ModelError::Packing(format!(
            "{kind}: {cols} input features are not a multiple of the block size {QK}"
        )));
    }
    if len != rows * (cols / QK) * block {
        return Err(ModelError::Packing(format!(
            "{kind}: {len} bytes cannot hold a [{rows}, {cols}] matrix ({} expected)",
            rows * (cols / QK) * block
        )));
    }
    Ok(())
}

/// Activation rows `[n, cols]`, with their q8_1 quantization made on first
/// use (once per projection input: q, k and v share it, so do gate and up).
pub(crate) struct Activations<'a> {
    x: &'a [f32],
    n: usize,
    cols: usize,
    q8: std::sync::OnceLock<Vec<BlockQ8_1>>,
    wide: std::sync::OnceLock<WideActs>,
    /// Multiply Q4_1 weights with the f32 rows (each group of weight rows
    /// dequantized once into an L1-sized buffer) instead of q8_1 rows:
    /// exact f32 math, for prompt rows (docs/model.md).
    exact: bool,
}

/// q8_1 activation rows in the layout of the AVX-512 tile kernel: the
/// quantized bytes of each row contiguous (two blocks per 64-byte load), each
/// block's `d` spread over the 8 lanes its products land in, and `s` per
/// block padded to a multiple of 16. Block counts are padded to even with
/// zero blocks, which add nothing.
pub(crate) struct WideActs {
    n: usize,
    /// Block pairs per row (`⌈blocks / 2⌉`).
    pairs: usize,
    /// `s` values per row (blocks rounded up to 16).
    nb16: usize,
    qs: Vec<i8>,
    dx: Vec<f32>,
    sx: Vec<f32>,
}

impl WideActs {
    fn from_q8_1(q8: &[BlockQ8_1], n: usize, nb: usize) -> Self {
        let pairs = nb.div_ceil(2);
        let nb16 = nb.next_multiple_of(16);
        let mut qs = vec![0i8; n * pairs * 64];
        let mut dx = vec![0f32; n * pairs * 16];
        let mut sx = vec![0f32; n * nb16];
        for (i, row) in q8.chunks_exact(nb.max(1)).enumerate().take(n) {
            for (j, b) in row.iter().enumerate() {
                let q0 = i * pairs * 64 + j * QK;
                qs[q0..q0 + QK].copy_from_slice(&b.qs);
                let d0 = i * pairs * 16 + j * 8;
                dx[d0..d0 + 8].fill(b.d);
                sx[i * nb16 + j] = b.s;
            }
        }
        Self {
            n,
            pairs,
            nb16,
            qs,
            dx,
            sx,
        }
    }
}

impl<'a> Activations<'a> {
    /// Wraps `n` rows of `cols` values.
    pub(crate) fn new(x: &'a [f32], n: usize, cols: usize) -> Self {
        debug_assert_eq!(x.len(), n * cols);
        Self {
            x,
            n,
            cols,
            q8: std::sync::OnceLock::new(),
            wide: std::sync::OnceLock::new(),
            exact: false,
        }
    }

    /// Like [`Activations::new`], but Q4_1 weights multiply the f32 rows
    /// (dequantized on the fly) rather than their q8_1 rounding.
    pub(crate) fn exact(x: &'a [f32], n: usize, cols: usize) -> Self {
        Self {
            exact: true,
            ..Self::new(x, n, cols)
        }
    }

    /// The q8_1 rows in the AVX-512 tile layout, made on first use.
    fn wide(&self) -> Result<&WideActs> {
        if let Some(w) = self.wide.get() {
            return Ok(w);
        }
        let q8 = self.q8_1()?;
        let nb = self.cols / QK;
        Ok(self
            .wide
            .get_or_init(|| WideActs::from_q8_1(q8, self.n, nb)))
    }

    /// The f32 rows, `[n, cols]`.
    pub(crate) fn rows(&self) -> &[f32] {
        self.x
    }

    fn q8_1(&self) -> Result<&[BlockQ8_1]> {
        if self.cols % QK != 0 {
            return Err(ModelError::Packing(format!(
                "q8_1: {} features are not a multiple of the block size {QK}",
                self.cols
            )));
        }
        Ok(self.q8.get_or_init(|| quantize_q8_1(self.x)))
    }
}

/// Quantizes f32 values (a multiple of 32) to q8_1 blocks.
pub(crate) fn quantize_q8_1(x: &[f32]) -> Vec<BlockQ8_1> {
    x.chunks_exact(QK)
        .map(|c| {
            let amax = c.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; 32];
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(c) {
                *q = (v * id).round() as i8;
                sum += i32::from(*q);
            }
            BlockQ8_1 {
                d,
                s: d * sum as f32,
                qs,
            }
        })
        .collect()
}

/// One projection of a [`matmul_many`] call: `out = x·wᵀ`, `[n, w.rows()]`.
pub(crate) struct MatmulJob<'a, 'x> {
    pub(crate) w: &'a PackedMatrix,
    pub(crate) x: &'a Activations<'x>,
    pub(crate) out: &'a mut [f32],
}

/// Below this many multiply-adds in one [`matmul_many`] call (all its
/// projections together), the call stays on the calling thread: waking a
/// second worker costs microseconds, about what 64k multiply-adds take.
/// SmolLM2's smallest call (o, 576×576) is 5× above it; the tiny test
/// models stay below it.
const MIN_PARALLEL_WORK: usize = 1 << 16;

/// Weight rows per call of the grouped single-row kernel.
const GROUP: usize = 4;

/// One thread's share of one job: output rows `r0..` of `w`, one slice per
/// activation row.
struct RowRange<'a, 'x> {
    w: &'a PackedMatrix,
    x: &'a Activations<'x>,
    r0: usize,
    outs: Vec<&'a mut [f32]>,
}

/// Runs every job's `out = x·wᵀ`, splitting the output rows of each job
/// into exactly `rayon::current_num_threads()` contiguous ranges (multiples
/// of [`GROUP`] rows) and giving range `t` of every job to task `t`: one
/// fork–join per call however many projections it holds (q, k and v share
/// one; gate and up share one). With one thread, or less work than
/// [`MIN_PARALLEL_WORK`], everything runs here in order. Each output value
/// is computed by the same code whatever the split (ranges start on
/// [`GROUP`] boundaries), so results are bit-identical to one thread.
pub(crate) fn matmul_many(jobs: &mut [MatmulJob<'_, '_>], kernel: Kernel) -> Result<()> {
    let mut work = 0usize;
    for job in jobs.iter() {
        let (rows, cols, n) = (job.w.rows(), job.w.cols(), job.x.n);
        if job.x.cols != cols || job.out.len() != n * rows {
            return Err(ModelError::Packing(format!(
                "a [{rows}, {cols}] matrix times {n} rows of {} values into {} outputs",
                job.x.cols,
                job.out.len()
            )));
        }
        if matches!(job.w, PackedMatrix::Q4_1 { .. }) && !job.x.exact {
            // Quantize here, once, rather than racing to it in the tasks.
            job.x.q8_1()?;
            #[cfg(target_arch = "x86_64")]
            if kernel == Kernel::Avx512Vnni && n > 1 {
                job.x.wide()?;
            }
        }
        work += rows * cols * n;
    }
    let threads = if work >= MIN_PARALLEL_WORK {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let mut tasks: Vec<Vec<RowRange<'_, '_>>> = (0..threads).map(|_| Vec::new()).collect();
    for job in jobs.iter_mut() {
        let rows = job.w.rows();
        if rows == 0 {
            continue;
        }
        let per_task = rows.div_ceil(threads).next_multiple_of(GROUP);
        let mut per_row: Vec<_> = job
            .out
            .chunks_mut(rows)
            .map(|o| o.chunks_mut(per_task))
            .collect();
        for (t, task) in tasks.iter_mut().enumerate() {
            let outs: Vec<&mut [f32]> = per_row.iter_mut().filter_map(Iterator::next).collect();
            if outs.len() == job.x.n {
                task.push(RowRange {
                    w: job.w,
                    x: job.x,
                    r0: t * per_task,
                    outs,
                });
            }
        }
    }
    let run = |task: Vec<RowRange<'_, '_>>| -> Result<()> {
        for mut r in task {
            r.w.matmul_rows(r.x, r.r0, &mut r.outs, kernel)?;
        }
        Ok(())
    };
    if threads == 1 {
        tasks.into_iter().try_for_each(run)
    } else {
        tasks.into_par_iter().with_max_len(1).try_for_each(run)
    }
}

/// `Σ w·x` for one Q4_1 weight row and one q8_1 activation row.
pub(crate) fn dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1], kernel: Kernel) -> f32 {
    assert_eq!(w.len(), x.len(), "Q4_1 · q8_1: block counts differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` and `Kernel::Avx512Vnni` are only built after
        // detecting avx2, fma, f16c; the block counts are equal (asserted
        // above). One activation row stays on the AVX2 body: a 512-bit one
        // measured slower (docs/model.md, "AVX-512").
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe { x86::dot_q4_1_q8_1(w, x) },
        Kernel::Scalar => w
            .iter()
            .zip(x)
            .map(|(b, a)| {
                let mut sum = 0i32;
                for j in 0..16 {
                    sum += i32::from(b.qs[j] & 0x0f) * i32::from(a.qs[j])
                        + i32::from(b.qs[j] >> 4) * i32::from(a.qs[j + 16]);
                }
                f16_to_f32(b.dm[0]) * a.d * sum as f32 + f16_to_f32(b.dm[1]) * a.s
            })
            .sum(),
    }
}

/// `out[k] = Σ w_k·x` for the `out.len()` consecutive Q4_1 weight rows in
/// `w` (`x.len()` blocks each) and one q8_1 activation row.
pub(crate) fn dot_q4_1_q8_1_rows(
    w: &[BlockQ4_1],
    x: &[BlockQ8_1],
    out: &mut [f32],
    kernel: Kernel,
) {
    assert_eq!(
        w.len(),
        out.len() * x.len(),
        "Q4_1 rows · q8_1: block counts differ"
    );
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512Vnni if out.len() == GROUP => {
            // SAFETY: both kernels are only built after detecting avx2, fma,
            // f16c; `w` holds 4 rows of `x.len()` blocks (asserted above).
            let v = unsafe { x86::dot_q4_1_q8_1_x4(w, x) };
            out.copy_from_slice(&v);
        }
        _ => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
                *o = dot_q4_1_q8_1(row, x, kernel);
            }
        }
    }
}

/// `Σ w·x` for one Q8_0 weight row and f32 activations.
pub(crate) fn dot_q8_0_f32(w: &[BlockQ8_0], x: &[f32], kernel: Kernel) -> f32 {
    assert_eq!(w.len() * QK, x.len(), "Q8_0 · f32: lengths differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2, fma, f16c were detected; `x` holds 32 values per block
        // (asserted above).
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe { x86::dot_q8_0_f32(w, x) },
        Kernel::Scalar => w
            .iter()
            .zip(x.chunks_exact(QK))
            .map(|(b, xs)| {
                let mut acc = [0f32; 8];
                for (q, v) in b.qs.chunks_exact(8).zip(xs.chunks_exact(8)) {
                    for l in 0..8 {
                        acc[l] += f32::from(q[l]) * v[l];
                    }
                }
                f16_to_f32(b.d) * acc.iter().sum::<f32>()
            })
            .sum(),
    }
}

/// Dequantizes one Q4_1 row into `out` (`32 · w.len()` values).
pub(crate) fn dequantize_q4_1(w: &[BlockQ4_1], out: &mut [f32], kernel: Kernel) {
    assert_eq!(w.len() * QK, out.len(), "Q4_1 row: lengths differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-512 features were detected; `out` holds 32 values
        // per block (asserted above).
        Kernel::Avx512Vnni => unsafe { x86v4::dequantize_q4_1(w, out) },
        _ => {
            for (b, o) in w.iter().zip(out.chunks_exact_mut(QK)) {
                let (d, m) = (f16_to_f32(b.dm[0]), f16_to_f32(b.dm[1]));
                for j in 0..16 {
                    o[j] = d * f32::from(b.qs[j] & 0x0f) + m;
                    o[j + 16] = d * f32::from(b.qs[j] >> 4) + m;
                }
            }
        }
    }
}

/// `out[k] = Σ w_k·x` for the `out.len()` consecutive f32 rows in `w`.
pub(crate) fn dot_f32_rows(w: &[f32], x: &[f32], out: &mut [f32], kernel: Kernel) {
    assert_eq!(w.len(), out.len() * x.len(), "f32 rows: lengths differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni if out.len() == GROUP && x.len() % 16 == 0 => {
            // SAFETY: the AVX-512 features were detected; `w` holds four
            // rows of `x.len()` values, a multiple of 16 (checked above).
            let v = unsafe { x86v4::dot_f32_x4(w, x) };
            out.copy_from_slice(&v);
        }
        _ => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len().max(1))) {
                *o = dot_f32(row, x, kernel);
            }
        }
    }
}

/// `Σ w·x` over f32 slices of equal length.
pub(crate) fn dot_f32(w: &[f32], x: &[f32], kernel: Kernel) -> f32 {
    assert_eq!(w.len(), x.len(), "f32 dot: lengths differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2, fma, f16c were detected (also for Avx512Vnni); equal
        // lengths (asserted above).
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe { x86::dot_f32(w, x) },
        Kernel::Scalar => {
            let mut acc = [0f32; 8];
            let split = w.len() - w.len() % 8;
            for (a, b) in w[..split].chunks_exact(8).zip(x[..split].chunks_exact(8)) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l];
                }
            }
            let tail: f32 = w[split..].iter().zip(&x[split..]).map(|(a, b)| a * b).sum();
            acc.iter().sum::<f32>() + tail
        }
    }
}

/// `y += a·x` over f32 slices of equal length (attention's weighted sum of
/// values).
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32], kernel: Kernel) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2, fma, f16c were detected (also for Avx512Vnni); equal
        // lengths (asserted above).
        Kernel::Avx2 | Kernel::Avx512Vnni => unsafe { x86::axpy(a, x, y) },
        Kernel::Scalar => {
            for (v, u) in y.iter_mut().zip(x) {
                *v += a * u;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 + FMA + F16C bodies. Callers guarantee the features and the lengths.
    use std::arch::x86_64::*;

    use super::{BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Bytes ahead of the block being read that the kernels ask the cache
    /// to fetch: weights stream from memory once per token, and the
    /// hardware prefetcher alone left the loads waiting (docs/model.md).
    const PREFETCH_AHEAD: usize = 2048;

    /// Hints the cache line `PREFETCH_AHEAD` bytes after `block`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn prefetch<T>(block: &T) {
        // A prefetch never faults, so an address past the end of the
        // matrix is harmless; `wrapping_add` keeps the arithmetic defined.
        let p = (block as *const T)
            .cast::<i8>()
            .wrapping_add(PREFETCH_AHEAD);
        // Only a hint: reads nothing, so it is a safe intrinsic here.
        _mm_prefetch::<_MM_HINT_T0>(p);
    }

    /// `[f16(bits), 0, 0, 0]` → f32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn half_pair(bits: [u16; 2]) -> __m128 {
        let packed = i32::from(bits[0]) | (i32::from(bits[1]) << 16);
        _mm_cvtph_ps(_mm_cvtsi32_si128(packed))
    }

    /// # Safety
    /// avx2, fma and f16c must be available; `w.len() == x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        let low = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        // Lane 1 accumulates m_w·s_x (lane 0 holds junk d_w·d_x sums).
        let mut mins = _mm_setzero_ps();
        for (b, a) in w.iter().zip(x) {
            prefetch(b);
            // SAFETY: `qs` is 16 (weights) and 32 (activations) bytes;
            // unaligned loads of exactly those sizes.
            let (q, q8) = unsafe {
                (
                    _mm_loadu_si128(b.qs.as_ptr().cast()),
                    _mm256_loadu_si256(a.qs.as_ptr().cast()),
                )
            };
            // [d_w, m_w] · [d_x, s_x]
            let scales = _mm_mul_ps(half_pair(b.dm), _mm_setr_ps(a.d, a.s, 0.0, 0.0));
            // Elements 0..16 are the low nibbles, 16..32 the high ones.
            let lo = _mm_and_si128(q, low);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
            let q4 = _mm256_set_m128i(hi, lo);
            let p16 = _mm256_maddubs_epi16(q4, q8);
            let p32 = _mm256_madd_epi16(p16, ones);
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), _mm256_cvtepi32_ps(p32), acc);
            mins = _mm_add_ps(mins, scales);
        }
        hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(mins))
    }

    /// Four consecutive weight rows (`w = [row0 | row1 | row2 | row3]`, each
    /// `x.len()` blocks) against one activation row: the activation block
    /// and its scales are loaded once for the four, and the four `[d_w,
    /// m_w]` pairs convert in one F16C instruction.
    ///
    /// # Safety
    /// avx2, fma and f16c must be available; `w.len() == 4 · x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4_1_q8_1_x4(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> [f32; 4] {
        let nb = x.len();
        let (r0, rest) = w.split_at(nb);
        let (r1, rest) = rest.split_at(nb);
        let (r2, r3) = rest.split_at(nb);
        let low = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        // Odd lanes accumulate m_w·s_x of rows 0..4 (even lanes: junk).
        let mut mins = _mm256_setzero_ps();
        let lane = |i: i32| _mm256_set1_epi32(i);
        for j in 0..nb {
            let a = &x[j];
            let rows = [&r0[j], &r1[j], &r2[j], &r3[j]];
            for b in rows {
                prefetch(b);
            }
            let bits = |b: &BlockQ4_1| (i32::from(b.dm[0])) | (i32::from(b.dm[1]) << 16);
            let dm = _mm256_cvtph_ps(_mm_setr_epi32(
                bits(rows[0]),
                bits(rows[1]),
                bits(rows[2]),
                bits(rows[3]),
            ));
            // [d_x, s_x] four times, lined up with the four [d_w, m_w] pairs.
            let ds = _mm256_setr_ps(a.d, a.s, a.d, a.s, a.d, a.s, a.d, a.s);
            let scales = _mm256_mul_ps(dm, ds);
            mins = _mm256_add_ps(mins, scales);
            // SAFETY: activation `qs` is 32 bytes; an unaligned load of 32.
            let q8 = unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) };
            for (k, b) in rows.into_iter().enumerate() {
                // SAFETY: weight `qs` is 16 bytes; an unaligned load of 16.
                let q = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
                let lo = _mm_and_si128(q, low);
                let hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
                let p16 = _mm256_maddubs_epi16(_mm256_set_m128i(hi, lo), q8);
                let p32 = _mm256_madd_epi16(p16, ones);
                let d = _mm256_permutevar8x32_ps(scales, lane(2 * k as i32));
                acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p32), acc[k]);
            }
        }
        let mut m = [0f32; 8];
        // SAFETY: `m` holds 8 floats.
        unsafe { _mm256_storeu_ps(m.as_mut_ptr(), mins) };
        [
            hsum(acc[0]) + m[1],
            hsum(acc[1]) + m[3],
            hsum(acc[2]) + m[5],
            hsum(acc[3]) + m[7],
        ]
    }

    /// # Safety
    /// avx2, fma and f16c must be available; `x.len() == 32 · w.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q8_0_f32(w: &[BlockQ8_0], x: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (b, xs) in w.iter().zip(x.chunks_exact(QK)) {
            prefetch(b);
            let qp = b.qs.as_ptr();
            let xp = xs.as_ptr();
            // SAFETY: `qs` holds 32 bytes and `xs` 32 floats; each load reads
            // 8 of them at offsets 0, 8, 16, 24.
            let s = unsafe {
                let w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qp.cast())));
                let w1 =
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qp.add(8).cast())));
                let w2 =
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qp.add(16).cast())));
                let w3 =
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qp.add(24).cast())));
                let s = _mm256_mul_ps(w0, _mm256_loadu_ps(xp));
                let s = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(8)), s);
                let s = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xp.add(16)), s);
                _mm256_fmadd_ps(w3, _mm256_loadu_ps(xp.add(24)), s)
            };
            let d = _mm256_broadcastss_ps(half_pair([b.d, 0]));
            acc = _mm256_fmadd_ps(d, s, acc);
        }
        hsum(acc)
    }

    /// # Safety
    /// avx2, fma and f16c must be available; `w.len() == x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let split = w.len() - w.len() % 16;
        for (a, b) in w[..split].chunks_exact(16).zip(x[..split].chunks_exact(16)) {
            // SAFETY: both chunks hold 16 floats; loads at offsets 0 and 8.
            unsafe {
                acc0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr()),
                    _mm256_loadu_ps(b.as_ptr()),
                    acc0,
                );
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(8)),
                    _mm256_loadu_ps(b.as_ptr().add(8)),
                    acc1,
                );
            }
        }
        let tail: f32 = w[split..].iter().zip(&x[split..]).map(|(a, b)| a * b).sum();
        hsum(_mm256_add_ps(acc0, acc1)) + tail
    }

    /// # Safety
    /// avx2, fma and f16c must be available; `x.len() == y.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let av = _mm256_set1_ps(a);
        let split = x.len() - x.len() % 8;
        let (yv, yt) = y.split_at_mut(split);
        for (u, v) in x[..split].chunks_exact(8).zip(yv.chunks_exact_mut(8)) {
            // SAFETY: both chunks hold 8 floats.
            unsafe {
                let r =
                    _mm256_fmadd_ps(av, _mm256_loadu_ps(u.as_ptr()), _mm256_loadu_ps(v.as_ptr()));
                _mm256_storeu_ps(v.as_mut_ptr(), r);
            }
        }
        for (v, u) in yt.iter_mut().zip(&x[split..]) {
            *v += a * u;
        }
    }
}

// The AVX-512 intrinsics are stable since Rust 1.89; the workspace's
// declared rust-version (1.85) predates them, and CI builds with a newer
// stable toolchain.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
mod x86v4 {
    //! AVX-512 (F, BW, VL) + VNNI bodies: two 32-element blocks per 512-bit
    //! register and one `vpdpbusd` (unsigned nibbles × signed activation
    //! bytes, summed in groups of four into 32-bit lanes) per pair, where the
    //! AVX2 bodies need `maddubs` + `madd` per block. Callers guarantee the
    //! features and the lengths.
    use std::arch::x86_64::*;

    use super::x86::prefetch;
    use super::{BlockQ4_1, WideActs, QK};

    /// Lanes 0..8 read element 0 and lanes 8..16 element 2 of a 128-bit
    /// `[dd_0, ms_0, dd_1, ms_1]` scale vector: one block's scale per half.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn spread_pair(sc: __m128) -> __m512 {
        let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(sc))
    }

    /// The nibbles of two Q4_1 blocks as 64 unsigned bytes, in activation
    /// element order: `[lo(a), hi(a), lo(b), hi(b)]`, 16 bytes each.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn nibbles2(a: &BlockQ4_1, b: &BlockQ4_1) -> __m512i {
        // SAFETY: each `qs` holds 16 bytes; two unaligned 16-byte loads.
        let q = unsafe { _mm256_loadu2_m128i(b.qs.as_ptr().cast(), a.qs.as_ptr().cast()) };
        let low = _mm256_set1_epi8(0x0f);
        let lo = _mm256_and_si256(q, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        // [lo(a), lo(b), hi(a), hi(b)] → [lo(a), hi(a), lo(b), hi(b)]
        let z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        _mm512_shuffle_i64x2(z, z, 0b11_01_10_00)
    }

    /// `[d_a, m_a, d_b, m_b]` of two Q4_1 blocks as f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn dm2(a: &BlockQ4_1, b: &BlockQ4_1) -> __m128 {
        let bits = |x: &BlockQ4_1| i32::from(x.dm[0]) | (i32::from(x.dm[1]) << 16);
        _mm_cvtph_ps(_mm_setr_epi32(bits(a), bits(b), 0, 0))
    }

    /// Horizontal sums of four vectors: `[Σa, Σb, Σc, Σd]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn hsum4(v: [__m512; 4]) -> [f32; 4] {
        let half = |a: __m512| {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
            _mm256_add_ps(_mm512_castps512_ps256(a), hi)
        };
        let h01 = _mm256_hadd_ps(half(v[0]), half(v[1]));
        let h23 = _mm256_hadd_ps(half(v[2]), half(v[3]));
        let h = _mm256_hadd_ps(h01, h23);
        let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        let mut out = [0f32; 4];
        // SAFETY: `out` holds 4 floats.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
        out
    }

    /// # Safety
    /// The AVX-512 features of [`Kernel::Avx512Vnni`] must be available;
    /// `out.len() == 32 · w.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dequantize_q4_1(w: &[BlockQ4_1], out: &mut [f32]) {
        let low = _mm_set1_epi8(0x0f);
        for (b, o) in w.iter().zip(out.chunks_exact_mut(QK)) {
            let dm = dm2(b, b);
            let d = _mm512_set1_ps(_mm_cvtss_f32(dm));
            let m = _mm512_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(dm)));
            // SAFETY: `qs` holds 16 bytes; `o` 32 floats, stored 16 at a time.
            unsafe {
                let q = _mm_loadu_si128(b.qs.as_ptr().cast());
                let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, low)));
                let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                    _mm_srli_epi16(q, 4),
                    low,
                )));
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_fmadd_ps(d, lo, m));
                _mm512_storeu_ps(o.as_mut_ptr().add(16), _mm512_fmadd_ps(d, hi, m));
            }
        }
    }

    /// Four f32 rows (`w = [row0 | row1 | row2 | row3]`) against `x`,
    /// sharing each load of `x`.
    ///
    /// # Safety
    /// The AVX-512 features of [`Kernel::Avx512Vnni`] must be available;
    /// `w.len() == 4 · x.len()` and `x.len()` is a multiple of 16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_f32_x4(w: &[f32], x: &[f32]) -> [f32; 4] {
        let c = x.len();
        let mut acc = [_mm512_setzero_ps(); 4];
        for j in (0..c).step_by(16) {
            // SAFETY: `j + 16 ≤ c`; row `k` starts at `k · c` in `w`.
            unsafe {
                let xv = _mm512_loadu_ps(x.as_ptr().add(j));
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(w.as_ptr().add(k * c + j)), xv, *a);
                }
            }
        }
        hsum4(acc)
    }

    /// Unpacks four Q4_1 weight rows (`w`, `nb` blocks each; fewer rows are
    /// padded with zeros) into the tile layout [`tile_q4_1`] reads: 64
    /// nibble bytes per block pair (`nw`), the pair's `d_w` spread over 16
    /// lanes (`dw`), and `m_w` per block (`mw`, `WideActs::nb16` per row).
    ///
    /// # Safety
    /// The AVX-512 features of [`Kernel::Avx512Vnni`] must be available;
    /// `w.len()` is a multiple of `nb` and at most `4 · nb`; the scratch
    /// slices hold `4 · pairs · 64`, `4 · pairs · 16` and `4 · nb16` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn unpack_q4_1_x4(
        w: &[BlockQ4_1],
        nb: usize,
        acts: &WideActs,
        nw: &mut [u8],
        dw: &mut [f32],
        mw: &mut [f32],
    ) {
        let (pairs, nb16) = (acts.pairs, acts.nb16);
        let zero = BlockQ4_1::default();
        let rows = w.len() / nb.max(1);
        for k in 0..4 {
            let row = if k < rows {
                &w[k * nb..(k + 1) * nb]
            } else {
                &[][..]
            };
            let block = |j: usize| row.get(j).unwrap_or(&zero);
            for p in 0..pairs {
                let (b0, b1) = (block(2 * p), block(2 * p + 1));
                prefetch(b0);
                let dm = dm2(b0, b1);
                let o = (k * pairs + p) * 64;
                let f = (k * pairs + p) * 16;
                // SAFETY: the scratch lengths were checked by the caller
                // (64 bytes and 16 floats per pair and row).
                unsafe {
                    _mm512_storeu_si512(nw[o..o + 64].as_mut_ptr().cast(), nibbles2(b0, b1));
                    _mm512_storeu_ps(dw[f..f + 16].as_mut_ptr(), spread_pair(dm));
                }
                let mut v = [0f32; 4];
                // SAFETY: `v` holds 4 floats.
                unsafe { _mm_storeu_ps(v.as_mut_ptr(), dm) };
                mw[k * nb16 + 2 * p] = v[1];
                if 2 * p + 1 < nb16 {
                    mw[k * nb16 + 2 * p + 1] = v[3];
                }
            }
            for j in 2 * pairs..nb16 {
                mw[k * nb16 + j] = 0.0;
            }
        }
    }

    /// Four unpacked weight rows against every activation row of `acts`:
    /// `out(i, k) = Σ_pairs d_w·d_x·(n·q) + Σ_blocks m_w·s_x`, written
    /// through `store(i, [four values])`.
    ///
    /// # Safety
    /// The AVX-512 features of [`Kernel::Avx512Vnni`] must be available;
    /// the scratch slices come from [`unpack_q4_1_x4`] for the same `acts`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn tile_q4_1(
        acts: &WideActs,
        nw: &[u8],
        dw: &[f32],
        mw: &[f32],
        mut store: impl FnMut(usize, [f32; 4]),
    ) {
        let (pairs, nb16) = (acts.pairs, acts.nb16);
        assert!(nw.len() >= 4 * pairs * 64 && dw.len() >= 4 * pairs * 16 && mw.len() >= 4 * nb16);
        for i in 0..acts.n {
            let qs = &acts.qs[i * pairs * 64..(i + 1) * pairs * 64];
            let dx = &acts.dx[i * pairs * 16..(i + 1) * pairs * 16];
            let sx = &acts.sx[i * nb16..(i + 1) * nb16];
            let mut acc = [_mm512_setzero_ps(); 4];
            for p in 0..pairs {
                // SAFETY: every slice read below holds the 64 bytes or 16
                // floats loaded (lengths from `WideActs` and the assert).
                unsafe {
                    let x = _mm512_loadu_si512(qs.as_ptr().add(p * 64).cast());
                    let d = _mm512_loadu_ps(dx.as_ptr().add(p * 16));
                    for (k, a) in acc.iter_mut().enumerate() {
                        let wv = _mm512_loadu_si512(nw.as_ptr().add((k * pairs + p) * 64).cast());
                        let prod = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, x);
                        let s = _mm512_mul_ps(
                            _mm512_loadu_ps(dw.as_ptr().add((k * pairs + p) * 16)),
                            d,
                        );
                        *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prod), s, *a);
                    }
                }
            }
            for c in (0..nb16).step_by(16) {
                // SAFETY: `nb16` is a multiple of 16; 16 floats at `c`.
                unsafe {
                    let s = _mm512_loadu_ps(sx.as_ptr().add(c));
                    for (k, a) in acc.iter_mut().enumerate() {
                        let m = _mm512_loadu_ps(mw.as_ptr().add(k * nb16 + c));
                        *a = _mm512_fmadd_ps(m, s, *a);
                    }
                }
            }
            store(i, hsum4(acc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;
    use proptest::prelude::*;

    /// Every kernel this CPU runs: scalar always, AVX2 and AVX-512 VNNI
    /// where present (CI machines may lack either).
    fn kernels() -> Vec<Kernel> {
        Kernel::available()
    }

    /// Random `[rows, cols]` weights quantized by candle (the ggml bytes a
    /// GGUF holds) and their dequantized f32 values.
    fn quantized(
        rows: usize,
        cols: usize,
        dtype: GgmlDType,
        seed: u64,
    ) -> (PackedMatrix, Vec<f32>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let t = Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let bytes = q.data().unwrap();
        let p = match dtype {
            GgmlDType::Q4_1 => PackedMatrix::from_q4_1(&bytes, rows, cols).unwrap(),
            GgmlDType::Q8_0 => PackedMatrix::from_q8_0(&bytes, rows, cols).unwrap(),
            _ => unreachable!(),
        };
        (p, deq)
    }

    fn activations(n: usize, cols: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        (0..n * cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect()
    }

    #[test]
    fn half_precision_scales_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8); // smallest subnormal
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000), 0.0);
    }

    #[test]
    fn repacked_rows_equal_candles_dequantization() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (p, deq) = quantized(5, 96, dtype, 7);
            let mut row = vec![0f32; 96];
            for r in 0..5 {
                p.row_into(r, &mut row).unwrap();
                assert_eq!(row, deq[r * 96..(r + 1) * 96], "{dtype:?} row {r}");
            }
        }
    }

    #[test]
    fn malformed_block_bytes_are_refused_with_the_shape() {
        let err = PackedMatrix::from_q4_1(&[0u8; 39], 2, 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("39 bytes") && err.contains("[2, 32]"), "{err}");
        let err = PackedMatrix::from_q8_0(&[0u8; 34], 1, 48)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }

    /// `matmul_many` splits output rows over the pool; each value must come
    /// out bit for bit as on one thread (same kernel calls, same row groups),
    /// for every storage, 1 and 3 activation rows, several jobs per call and
    /// row counts that leave the last range short or empty.
    #[test]
    fn matmul_many_on_two_threads_equals_one_thread_bit_for_bit() {
        let cols = 8 * QK;
        let (q4_big, _) = quantized(301, cols, GgmlDType::Q4_1, 1);
        let (q4_small, _) = quantized(3, cols, GgmlDType::Q4_1, 2);
        let (q8, deq) = quantized(261, cols, GgmlDType::Q8_0, 3);
        let dense =
            PackedMatrix::from_tensor(&Tensor::from_vec(deq, (261, cols), &Device::Cpu).unwrap())
                .unwrap();
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1), pool(2));
        for kernel in kernels() {
            for n in [1, 3] {
                let x = activations(n, cols, 9);
                let mats = [&q4_big, &q4_small, &q8, &dense];
                // Enough work to split (all four jobs in one call) and each
                // job alone: q4_big and q8 are above MIN_PARALLEL_WORK alone.
                let run = |pool: &rayon::ThreadPool, which: &[usize]| {
                    pool.install(|| {
                        let acts: Vec<Activations<'_>> = which
                            .iter()
                            .map(|_| Activations::new(&x, n, cols))
                            .collect();
                        let mut outs: Vec<Vec<f32>> = which
                            .iter()
                            .map(|&m| vec![f32::NAN; n * mats[m].rows()])
                            .collect();
                        let mut jobs: Vec<MatmulJob<'_, '_>> = which
                            .iter()
                            .zip(&acts)
                            .zip(outs.iter_mut())
                            .map(|((&m, x), out)| MatmulJob { w: mats[m], x, out })
                            .collect();
                        matmul_many(&mut jobs, kernel).unwrap();
                        outs
                    })
                };
                for which in [&[0usize, 1, 2, 3][..], &[0], &[2], &[3]] {
                    let (a, b) = (run(&one, which), run(&two, which));
                    for (ja, jb) in a.iter().zip(&b) {
                        assert!(
                            ja.iter().all(|v| v.is_finite()),
                            "{kernel:?} n={n} {which:?}"
                        );
                        let same = ja.iter().zip(jb).all(|(p, q)| p.to_bits() == q.to_bits());
                        assert!(
                            same,
                            "{kernel:?} n={n} jobs {which:?}: 2 threads differ from 1"
                        );
                    }
                }
            }
        }
        assert!(301 * cols >= MIN_PARALLEL_WORK && 261 * cols >= MIN_PARALLEL_WORK);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Q4_1 × q8_1 against the dequantized f32 product. The only error
        /// is the activation rounding, at most `d_x/2 = max|x_b|/254` per
        /// element of block `b`, so `|err| ≤ Σ_b Σ_{i∈b} |w_i| · max|x_b| / 254`
        /// (plus f32 summation noise).
        #[test]
        fn q4_1_matmul_matches_the_dequantized_product_within_the_q8_bound(
            rows in 1usize..70, blocks in 1usize..6, n in 1usize..4, seed in 0u64..1000,
        ) {
            let cols = blocks * QK;
            let (p, deq) = quantized(rows, cols, GgmlDType::Q4_1, seed);
            let x = activations(n, cols, seed);
            for kernel in kernels() {
                let mut out = vec![0f32; n * rows];
                p.matmul(&Activations::new(&x, n, cols), &mut out, kernel).unwrap();
                for i in 0..n {
                    for r in 0..rows {
                        let w = &deq[r * cols..(r + 1) * cols];
                        let xi = &x[i * cols..(i + 1) * cols];
                        let exact: f64 = w.iter().zip(xi).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                        let bound: f64 = w.chunks(QK).zip(xi.chunks(QK)).map(|(wb, xb)| {
                            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                            wb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * f64::from(amax) / 254.0
                        }).sum::<f64>() + 1e-4 * (1.0 + exact.abs());
                        let got = f64::from(out[i * rows + r]);
                        prop_assert!((got - exact).abs() <= bound,
                            "{kernel:?} row {r} of {rows}, x row {i}: {got} vs {exact} (bound {bound})");
                    }
                }
            }
        }

        /// Q4_1 weights with exact (f32) activations, the prompt path, equal
        /// the dequantized product up to f32 summation order, on every
        /// kernel, for one and many activation rows.
        #[test]
        fn q4_1_matmul_with_exact_activations_matches_the_dequantized_product(
            rows in 1usize..23, blocks in 1usize..6, n in 1usize..7, seed in 0u64..1000,
        ) {
            let cols = blocks * QK;
            let (p, deq) = quantized(rows, cols, GgmlDType::Q4_1, seed);
            let x = activations(n, cols, seed);
            for kernel in kernels() {
                let mut out = vec![f32::NAN; n * rows];
                p.matmul(&Activations::exact(&x, n, cols), &mut out, kernel).unwrap();
                matches_dequantized(&out, &deq, &x, (n, rows, cols), &format!("{kernel:?} Q4_1 exact"))?;
            }
        }

        /// Q8_0 and f32 weights with f32 activations equal the dequantized
        /// product up to f32 summation order (relative 1e-5 of Σ|w·x|).
        #[test]
        fn q8_0_and_f32_matmuls_match_the_dequantized_product(
            rows in 1usize..70, blocks in 1usize..6, n in 1usize..4, seed in 0u64..1000,
        ) {
            let cols = blocks * QK;
            let (p, deq) = quantized(rows, cols, GgmlDType::Q8_0, seed);
            let t = Tensor::from_vec(deq.clone(), (rows, cols), &Device::Cpu).unwrap();
            let dense = PackedMatrix::from_tensor(&t).unwrap();
            let x = activations(n, cols, seed);
            for kernel in kernels() {
                for m in [&p, &dense] {
                    let mut out = vec![0f32; n * rows];
                    m.matmul(&Activations::new(&x, n, cols), &mut out, kernel).unwrap();
                    matches_dequantized(&out, &deq, &x, (n, rows, cols), &format!("{kernel:?} {}", m.kind()))?;
                }
            }
        }

        /// The SIMD kernels agree with the scalar ones, block for block
        /// (odd block counts exercise the AVX-512 pair loops' tails).
        #[test]
        fn simd_and_scalar_kernels_agree(blocks in 1usize..40, seed in 0u64..1000) {
            for simd in kernels().into_iter().skip(1) {
                simd_matches_scalar(blocks, seed, simd)?;
            }
        }

        /// Many activation rows (the batched decode and prefill path: the
        /// AVX-512 tile kernel, or the 4-row kernel per activation row)
        /// equal one activation row at a time through the scalar kernel,
        /// within f32 summation noise, for row counts that leave the last
        /// group of four short.
        #[test]
        fn many_row_q4_1_matmul_equals_row_by_row_scalar(
            rows in 1usize..23, blocks in 1usize..7, n in 2usize..20, seed in 0u64..1000,
        ) {
            let cols = blocks * QK;
            let (p, _) = quantized(rows, cols, GgmlDType::Q4_1, seed);
            let x = activations(n, cols, seed);
            let mut want = vec![0f32; n * rows];
            for (i, o) in want.chunks_exact_mut(rows).enumerate() {
                let xi = &x[i * cols..(i + 1) * cols];
                p.matmul(&Activations::new(xi, 1, cols), o, Kernel::Scalar).unwrap();
            }
            for kernel in kernels() {
                let mut got = vec![f32::NAN; n * rows];
                p.matmul(&Activations::new(&x, n, cols), &mut got, kernel).unwrap();
                for (j, (a, b)) in want.iter().zip(&got).enumerate() {
                    prop_assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                        "{kernel:?} output {j} of {n}x{rows}: {b} vs scalar {a}");
                }
            }
        }
    }

    /// `out` (`[n, rows]`) equals `x·deqᵀ` up to f32 summation order:
    /// within `1e-5 · Σ|w·x|` of the f64 product, per output.
    fn matches_dequantized(
        out: &[f32],
        deq: &[f32],
        x: &[f32],
        (n, rows, cols): (usize, usize, usize),
        what: &str,
    ) -> Result<(), TestCaseError> {
        for i in 0..n {
            for r in 0..rows {
                let terms = deq[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(&x[i * cols..(i + 1) * cols])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b));
                let (exact, mag) = terms.fold((0f64, 0f64), |(s, m), t| (s + t, m + t.abs()));
                let got = f64::from(out[i * rows + r]);
                prop_assert!(
                    (got - exact).abs() <= 1e-5 * mag + 1e-6,
                    "{what}: row {r} of {rows}, x row {i}: {got} vs {exact}"
                );
            }
        }
        Ok(())
    }

    fn simd_matches_scalar(blocks: usize, seed: u64, simd: Kernel) -> Result<(), TestCaseError> {
        {
            let cols = blocks * QK;
            let (p, _) = quantized(1, cols, GgmlDType::Q4_1, seed);
            let x = activations(1, cols, seed);
            let PackedMatrix::Q4_1 { blocks: w, .. } = &p else {
                unreachable!()
            };
            let q8 = quantize_q8_1(&x);
            let scalar = dot_q4_1_q8_1(w, &q8, Kernel::Scalar);
            let simd_v = dot_q4_1_q8_1(w, &q8, simd);
            prop_assert!(
                (scalar - simd_v).abs() <= 1e-4 * (1.0 + scalar.abs()),
                "{simd:?}: {scalar} vs {simd_v}"
            );
            let (p4, _) = quantized(GROUP + 1, cols, GgmlDType::Q4_1, seed);
            let PackedMatrix::Q4_1 { blocks: w4, .. } = &p4 else {
                unreachable!()
            };
            for k in [GROUP, GROUP - 1, 1] {
                let (mut s4, mut v4) = (vec![0f32; k], vec![0f32; k]);
                dot_q4_1_q8_1_rows(&w4[..k * blocks], &q8, &mut s4, Kernel::Scalar);
                dot_q4_1_q8_1_rows(&w4[blocks..(k + 1) * blocks], &q8, &mut v4, simd);
                let mut s4b = vec![0f32; k];
                dot_q4_1_q8_1_rows(&w4[blocks..(k + 1) * blocks], &q8, &mut s4b, Kernel::Scalar);
                for (a, b) in s4b.iter().zip(&v4) {
                    prop_assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                        "{k} rows: {a} vs {b}"
                    );
                }
                prop_assert_eq!(s4[0], dot_q4_1_q8_1(&w4[..blocks], &q8, Kernel::Scalar));
            }
            let odd = &x[..cols - 3];
            let a = dot_f32(odd, &x[3..], Kernel::Scalar);
            let b = dot_f32(odd, &x[3..], simd);
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
            let (mut ys, mut yv) = (x[3..].to_vec(), x[3..].to_vec());
            axpy(0.37, odd, &mut ys, Kernel::Scalar);
            axpy(0.37, odd, &mut yv, simd);
            for (s, v) in ys.iter().zip(&yv) {
                prop_assert!((s - v).abs() <= 1e-5 * (1.0 + s.abs()), "axpy {s} vs {v}");
            }
            let (p8, _) = quantized(1, cols, GgmlDType::Q8_0, seed);
            let PackedMatrix::Q8_0 { blocks: w8, .. } = &p8 else {
                unreachable!()
            };
            let (a, b) = (
                dot_q8_0_f32(w8, &x, Kernel::Scalar),
                dot_q8_0_f32(w8, &x, simd),
            );
            prop_assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "{simd:?} Q8_0: {a} vs {b}"
            );
        }
        Ok(())
    }
}
