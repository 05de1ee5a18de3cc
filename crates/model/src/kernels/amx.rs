//! bf16 products on Intel AMX tiles, for the frozen projections of LoRA
//! training.
//!
//! In a LoRA step every base projection is frozen: the forward needs
//! `y = x·Wᵀ` and the backward only the input gradient `dx = g·W` (see
//! [`crate::kernels::frozen`]). With candle's f32 gemm these two products are about
//! half of a SmolLM2 step. AMX's `tdpbf16ps` multiplies a 16×32 bf16 tile
//! by a 32×16 one into a 16×16 f32 accumulator in one instruction (16× the
//! multiply-adds of an AVX-512 f32 FMA per cycle), so on CPUs that have it
//! (Sapphire Rapids and later) the frozen products run in bf16 with f32
//! accumulation: the weights are rounded to bf16 once, when training starts,
//! and the activations (or upstream gradients) are rounded to bf16 at the
//! product input. The LoRA matrices, their gradients, norms, softmax and the
//! optimiser stay f32, as in PyTorch's bf16 autocast or QLoRA's compute dtype.
//!
//! [`Bf16Weight`] holds each frozen weight twice, in the tile layouts of the
//! two products (forward: contraction over `in`; input gradient: contraction
//! over `out`), which is the memory of one f32 copy. Where AMX is absent (or
//! the kernel refuses the permission request, or `TRIB_AMX=off` is set), the
//! same bf16 numbers go through an emulation: the weight is widened back to
//! f32 (exact), the input is rounded to bf16 and widened, and candle's f32
//! gemm does the product. Both paths compute the same rounded products and
//! differ only in the order of the f32 sums; tests compare them.
//!
//! `unsafe` is allowed in this module only: the AMX instructions are issued
//! through `asm!` (the tile intrinsics are not stable Rust), with raw
//! pointers into buffers whose sizes are checked before each call, and the
//! Linux permission request is a raw `arch_prctl` system call.

#![allow(unsafe_code)]

use std::sync::OnceLock;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Tile edge in f32 accumulator columns (and rows of every tile).
const TILE: usize = 16;
/// bf16 values along the contraction in one tile row (64 bytes).
const DEPTH: usize = 32;
/// Rows and output columns of one kernel block (2×2 accumulator tiles).
const BLOCK: usize = 2 * TILE;
/// bf16 values in one 16×32 tile.
const TILE_VALUES: usize = TILE * DEPTH;
/// Bytes of A (all rows) per contraction chunk of the AMX kernel.
const A_CHUNK_BYTES: usize = 256 * 1024;

/// Which code computes the bf16 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bf16Kernel {
    /// AMX tiles (`tdpbf16ps`).
    Amx,
    /// bf16-rounded operands widened to f32, through candle's f32 gemm.
    Emulated,
}

impl Bf16Kernel {
    /// The kernel this process uses: AMX where the CPU has AMX-TILE and
    /// AMX-BF16, the OS grants the tile state, and `TRIB_AMX` is not `off`.
    pub(crate) fn detect() -> Self {
        if amx_usable() {
            Bf16Kernel::Amx
        } else {
            Bf16Kernel::Emulated
        }
    }

    /// A short name for metrics and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Amx => "amx-bf16",
            Bf16Kernel::Emulated => "bf16-emulated",
        }
    }
}

/// Whether AMX bf16 tiles can run in this process (checked once).
pub(crate) fn amx_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        if std::env::var("TRIB_AMX").is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
            tracing::info!(target: "trib::model", "TRIB_AMX=off: bf16 products run emulated");
            return false;
        }
        let ok = cpu_has_amx_bf16() && request_tile_permission();
        tracing::debug!(target: "trib::model", amx = ok, "AMX bf16 detection");
        ok
    })
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 0 gives the highest leaf; leaf 7 is only read when it exists.
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    let l7 = __cpuid_count(7, 0);
    // EDX bit 22: AMX-BF16, bit 24: AMX-TILE.
    (l7.edx >> 22) & 1 == 1 && (l7.edx >> 24) & 1 == 1
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx_bf16() -> bool {
    false
}

/// Linux grants the 8 KiB tile-data state per process on request
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux 5.16+);
/// without it the first tile instruction faults.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with two integer arguments; it changes
    // only which xsave features this process may use.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if rc != 0 {
        tracing::warn!(
            target: "trib::model",
            error = %std::io::Error::last_os_error(),
            "the kernel refused AMX tile state: bf16 products run emulated"
        );
    }
    rc == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// Round-to-nearest-even f32 → bf16 (NaN stays a quiet NaN).
pub(crate) fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    // Branch-free (a select), so the conversion loops vectorize.
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((b >> 16) as u16) | 0x0040;
    if v.is_nan() {
        quiet_nan
    } else {
        rounded
    }
}

/// Rounds the rows of `a: [m, depth]` to bf16 into A tiles: the row
/// group `g` (16 rows) and contraction tile `t` (32 values) form one 1 KiB
/// tile at `(g·T + t)·512`, `T = depth_p / 32`, row-major inside. Contiguous
/// tiles load through a 64-byte stride; plain rows of a long contraction
/// (98 KiB apart for the LM head's input gradient) touched 16 pages per tile
/// load. `dst` holds `m_p·depth_p` zeros on entry. 16 lanes at a time where
/// the CPU has AVX-512 (every AMX CPU does): the x86-64 baseline build runs
/// the same code 4 lanes wide.
fn round_into_tiles(a: &[f32], depth: usize, depth_p: usize, dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512F/BW (checked just above).
        unsafe { round_into_tiles_avx512(a, depth, depth_p, dst) };
        return;
    }
    round_into_tiles_portable(a, depth, depth_p, dst);
}

#[inline(always)]
fn round_into_tiles_body(a: &[f32], depth: usize, depth_p: usize, dst: &mut [u16]) {
    let depth_tiles = depth_p / DEPTH;
    for (i, row) in a.chunks_exact(depth).enumerate() {
        let group = (i / TILE) * depth_tiles * TILE_VALUES + (i % TILE) * DEPTH;
        for (t, chunk) in row.chunks(DEPTH).enumerate() {
            let at = group + t * TILE_VALUES;
            for (d, &s) in dst[at..at + chunk.len()].iter_mut().zip(chunk) {
                *d = to_bf16(s);
            }
        }
    }
}

fn round_into_tiles_portable(a: &[f32], depth: usize, depth_p: usize, dst: &mut [u16]) {
    round_into_tiles_body(a, depth, depth_p, dst);
}

/// [`round_into_tiles_portable`] compiled with AVX-512 enabled (the same
/// code, so the same bits, in wider vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn round_into_tiles_avx512(a: &[f32], depth: usize, depth_p: usize, dst: &mut [u16]) {
    round_into_tiles_body(a, depth, depth_p, dst);
}

/// bf16 → f32 (exact).
pub(crate) fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// One cache line of bf16 values.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; DEPTH]);

/// bf16 values in 64-byte-aligned storage, so every 64-byte tile row is one
/// cache line (AMX loads of rows that straddle two lines run far slower, and
/// the allocator only promises 16-byte alignment for a `Vec<u16>`).
struct Bf16Buf(Vec<Line>);

impl Bf16Buf {
    /// `values` zeros (rounded up to whole lines).
    fn zeroed(values: usize) -> Self {
        Bf16Buf(vec![Line([0; DEPTH]); values.div_ceil(DEPTH)])
    }

    fn as_slice(&self) -> &[u16] {
        // SAFETY: `Line` is `repr(C)` over `[u16; 32]` with size 64 and no
        // padding, so the lines are `32·len` contiguous, initialised u16s.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u16>(), self.0.len() * DEPTH) }
    }

    fn as_mut_slice(&mut self) -> &mut [u16] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u16>(), self.0.len() * DEPTH)
        }
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// A frozen weight `W: [out, in]` rounded to bf16, stored for its kernel.
pub(crate) struct Bf16Weight {
    out: usize,
    inp: usize,
    store: Store,
}

/// How a [`Bf16Weight`] is held; the variant is the kernel.
enum Store {
    /// AMX tiles of both products.
    Tiles {
        /// `out` rounded up to [`BLOCK`].
        out_p: usize,
        /// `in` rounded up to [`BLOCK`].
        in_p: usize,
        /// Tiles of `x·Wᵀ`: output column tile `j` (16 of `out`) ×
        /// contraction tile `t` (32 of `in`), see [`pack_tiles`].
        fwd: Bf16Buf,
        /// Tiles of `g·W`: output column tile over `in` × contraction over
        /// `out`.
        bwd: Bf16Buf,
    },
    /// The emulation: the bf16 values widened to f32 once, `[out, in]`, for
    /// candle's f32 gemm.
    Widened(Tensor),
}

impl std::fmt::Debug for Bf16Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bf16Weight[{}, {}] ({})",
            self.out,
            self.inp,
            self.kernel().name()
        )
    }
}

/// Packs the zero-padded bf16 matrix `p: [rows_p, cols_p]` (row-major) into
/// B tiles for `tdpbf16ps`, contracting over its columns (`transpose`:
/// over its rows). With output column `o` and contraction index `c`, tile
/// `(j, t)` starts at `(j·T + t)·512` (`T` = contraction length / 32) and
/// its row `r`, column `i` hold the pair at `o = 16j+i`, `c = 32t+2r` and
/// `32t+2r+1` (the "VNNI" pairing). Output column tiles are packed in
/// parallel; each owns a contiguous run of tiles.
fn pack_tiles(p: &[u16], rows_p: usize, cols_p: usize, transpose: bool) -> Bf16Buf {
    use rayon::prelude::*;
    let (outs, depth) = if transpose {
        (cols_p, rows_p)
    } else {
        (rows_p, cols_p)
    };
    let depth_tiles = depth / DEPTH;
    let mut buf = Bf16Buf::zeroed(outs * depth);
    buf.as_mut_slice()
        .par_chunks_mut(depth_tiles * TILE_VALUES)
        .enumerate()
        .for_each(|(j, tiles)| {
            for i in 0..TILE {
                let o = j * TILE + i;
                for c in 0..depth {
                    let v = if transpose {
                        p[c * cols_p + o]
                    } else {
                        p[o * cols_p + c]
                    };
                    let (t, cc) = (c / DEPTH, c % DEPTH);
                    tiles[t * TILE_VALUES + (cc / 2) * DEPTH + 2 * i + cc % 2] = v;
                }
            }
        });
    buf
}

impl Bf16Weight {
    /// Rounds `w: [out, in]` (row-major f32) to bf16 and packs it for
    /// `kernel`.
    pub(crate) fn pack(w: &[f32], out: usize, inp: usize, kernel: Bf16Kernel) -> Result<Self> {
        if w.len() != out * inp || out == 0 || inp == 0 {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "bf16 packing: a [{out}, {inp}] weight needs {} values, got {}",
                out * inp,
                w.len()
            ))));
        }
        let store = match kernel {
            Bf16Kernel::Amx => {
                let (out_p, in_p) = (round_up(out, BLOCK), round_up(inp, BLOCK));
                let mut padded = vec![0u16; out_p * in_p];
                for (dst, src) in padded.chunks_exact_mut(in_p).zip(w.chunks_exact(inp)) {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = to_bf16(v);
                    }
                }
                Store::Tiles {
                    out_p,
                    in_p,
                    fwd: pack_tiles(&padded, out_p, in_p, false),
                    bwd: pack_tiles(&padded, out_p, in_p, true),
                }
            }
            Bf16Kernel::Emulated => {
                let widened: Vec<f32> = w.iter().map(|&v| from_bf16(to_bf16(v))).collect();
                Store::Widened(Tensor::from_vec(widened, (out, inp), &Device::Cpu)?)
            }
        };
        Ok(Bf16Weight { out, inp, store })
    }

    /// Rounds the f32 tensor `w: [out, in]` to bf16 and packs it for
    /// `kernel`.
    pub(crate) fn from_tensor(w: &Tensor, kernel: Bf16Kernel) -> Result<Self> {
        let (out, inp) = w.dims2()?;
        // Read in place (no f32 copy: the LM head alone is 113 MiB).
        crate::kernels::cpu_f32::with_f32(&w.to_dtype(candle_core::DType::F32)?, |v| {
            Self::pack(v, out, inp, kernel)
        })?
    }

    /// The code that multiplies with this weight.
    pub(crate) fn kernel(&self) -> Bf16Kernel {
        match self.store {
            Store::Tiles { .. } => Bf16Kernel::Amx,
            Store::Widened(_) => Bf16Kernel::Emulated,
        }
    }

    /// `(out, in)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.out, self.inp)
    }

    /// The bf16 weight widened to an f32 tensor `[out, in]` (read back from
    /// the forward tiles, or the widened copy itself).
    pub(crate) fn to_tensor(&self) -> Result<Tensor> {
        let (in_p, fwd) = match &self.store {
            Store::Widened(w) => return Ok(w.clone()),
            Store::Tiles { in_p, fwd, .. } => (*in_p, fwd.as_slice()),
        };
        let depth_tiles = in_p / DEPTH;
        let mut w = vec![0f32; self.out * self.inp];
        for o in 0..self.out {
            let (j, i) = (o / TILE, o % TILE);
            for c in 0..self.inp {
                let (t, rr) = (c / DEPTH, c % DEPTH);
                let idx = (j * depth_tiles + t) * TILE_VALUES + (rr / 2) * DEPTH + 2 * i + rr % 2;
                w[o * self.inp + c] = from_bf16(fwd[idx]);
            }
        }
        Ok(Tensor::from_vec(w, (self.out, self.inp), &Device::Cpu)?)
    }

    /// `y = x·Wᵀ` for `x: [m, in]` row-major, giving `[m, out]`.
    pub(crate) fn forward(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.check_len("input", x.len(), m, self.inp)?;
        match &self.store {
            Store::Tiles {
                out_p, in_p, fwd, ..
            } => Ok(amx_product(
                x,
                m,
                self.inp,
                *in_p,
                fwd.as_slice(),
                self.out,
                *out_p,
            )),
            Store::Widened(w) => emulated_product(x, m, self.inp, &w.t()?),
        }
    }

    /// `dx = g·W` for `g: [m, out]` row-major, giving `[m, in]`.
    pub(crate) fn input_grad(&self, g: &[f32], m: usize) -> Result<Vec<f32>> {
        self.check_len("gradient", g.len(), m, self.out)?;
        match &self.store {
            Store::Tiles {
                out_p, in_p, bwd, ..
            } => Ok(amx_product(
                g,
                m,
                self.out,
                *out_p,
                bwd.as_slice(),
                self.inp,
                *in_p,
            )),
            Store::Widened(w) => emulated_product(g, m, self.out, w),
        }
    }

    fn check_len(&self, what: &str, len: usize, m: usize, cols: usize) -> Result<()> {
        if len != m * cols {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "bf16 product with a [{}, {}] weight: the {what} has {len} values, expected {m} × {cols}",
                self.out, self.inp
            ))));
        }
        Ok(())
    }
}

/// The emulation: `a: [m, depth]` rounded to bf16 and widened, times `w:
/// [depth, cols]` (the widened weight or its transposed view) through
/// candle's f32 gemm.
fn emulated_product(a: &[f32], m: usize, depth: usize, w: &Tensor) -> Result<Vec<f32>> {
    let ar: Vec<f32> = a.iter().map(|&v| from_bf16(to_bf16(v))).collect();
    let y = Tensor::from_vec(ar, (m, depth), &Device::Cpu)?.matmul(w)?;
    Ok(y.flatten_all()?.to_vec1::<f32>()?)
}

/// The 64-byte tile configuration: palette 1, all eight tiles 16 rows of
/// 64 bytes (tmm0–3: f32 accumulators, tmm4–5: A rows, tmm6–7: B tiles).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = TILE as u8;
        }
        TileConfig(c)
    }
}

/// `a: [m, depth]` (f32) times the packed tiles `b` (contraction
/// `depth_p`, `cols_p` output columns), returning `[m, cols]` f32.
fn amx_product(
    a: &[f32],
    m: usize,
    depth: usize,
    depth_p: usize,
    b: &[u16],
    cols: usize,
    cols_p: usize,
) -> Vec<f32> {
    if m == 0 {
        return Vec::new();
    }
    assert_eq!(b.len(), cols_p * depth_p, "packed tiles match their dims");
    let m_p = round_up(m, BLOCK);
    // A in bf16 as 16×32 tiles (see `round_into_tiles`), zero-padded to
    // [m_p, depth_p] (padding must be zero: the padded B rows are zero, and
    // 0·NaN would poison the sums).
    let mut abf = Bf16Buf::zeroed(m_p * depth_p);
    round_into_tiles(a, depth, depth_p, abf.as_mut_slice());
    // Not zeroed: the tile stores write every element before `set_len`.
    let mut c: Vec<f32> = Vec::with_capacity(m_p * cols_p);
    let pairs = cols_p / BLOCK;
    // candle's own pool (the calling thread plus candle's workers): the
    // element-wise ops of the same step run there, and a second pool (rayon)
    // next to it over-subscribed the cores while candle's workers spin.
    let threads = candle_core::utils::get_num_threads().min(pairs).max(1);
    let c_addr = c.as_mut_ptr() as usize;
    let run = |lo: usize, hi: usize| {
        // SAFETY: `abf` is m_p/16 × depth_p/32 tiles, `b` is cols_p/16 × depth_p/32
        // tiles, `c` is [m_p, cols_p]; every index the kernel forms is
        // inside them (m_p, cols_p and depth_p are multiples of 32). Column
        // pairs [lo, hi) of `c` are written by this call only.
        unsafe {
            amx_block_range(
                abf.as_slice().as_ptr(),
                m_p,
                depth_p,
                b.as_ptr(),
                c_addr as *mut f32,
                cols_p,
                lo,
                hi,
            )
        }
    };
    if threads == 1 {
        run(0, pairs);
    } else {
        candle_core::utils::barrier_pool()
            .execute_chunked(pairs, |range| run(range.start, range.end));
    }
    // SAFETY: the column pairs 0..pairs cover all cols_p columns and each
    // pair stores every 32-row block of all m_p rows, so all m_p·cols_p
    // elements are initialised.
    unsafe { c.set_len(m_p * cols_p) };
    if cols == cols_p {
        c.truncate(m * cols);
        return c;
    }
    let mut y = Vec::with_capacity(m * cols);
    for row in c.chunks_exact(cols_p).take(m) {
        y.extend_from_slice(&row[..cols]);
    }
    y
}

/// Output column pairs `[lo, hi)` (32 columns each) of `c = a·b` over all
/// `m_p` rows, on AMX tiles.
///
/// # Safety
/// The CPU must have AMX-TILE and AMX-BF16 with the tile state granted
/// ([`amx_usable`]); the pointers must cover the sizes stated in
/// [`amx_product`]; no other thread writes the same columns of `c`.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
unsafe fn amx_block_range(
    a: *const u16,
    m_p: usize,
    depth_p: usize,
    b: *const u16,
    c: *mut f32,
    cols_p: usize,
    lo: usize,
    hi: usize,
) {
    use std::arch::asm;
    if lo >= hi {
        return;
    }
    let cfg = TileConfig::full();
    let depth_tiles = depth_p / DEPTH;
    let c_stride = cols_p * 4; // bytes per C row
    let b_stride = DEPTH * 2; // 64 bytes per packed tile row
                              // The contraction runs in chunks whose A rows (all m_p of them) fit in
                              // about 256 KiB of L2: every column pair re-reads A, and a long
                              // contraction (the LM head's input gradient contracts over 49,152
                              // logits) otherwise streams all of A from memory once per pair. Partial
                              // sums go through C between chunks.
    let chunk = (A_CHUNK_BYTES / (m_p * DEPTH * 2)).clamp(1, depth_tiles);
    // SAFETY (all asm blocks): the caller guarantees AMX is usable and the
    // buffers cover every address formed; tile registers are used only here.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        for k0 in (0..depth_tiles).step_by(chunk) {
            let k1 = (k0 + chunk).min(depth_tiles);
            for pair in lo..hi {
                let b0 = b.add(2 * pair * depth_tiles * TILE_VALUES);
                let b1 = b.add((2 * pair + 1) * depth_tiles * TILE_VALUES);
                for mb in (0..m_p).step_by(BLOCK) {
                    let c00 = c.add(mb * cols_p + pair * BLOCK);
                    let c01 = c00.add(TILE);
                    let c10 = c.add((mb + TILE) * cols_p + pair * BLOCK);
                    let c11 = c10.add(TILE);
                    if k0 == 0 {
                        asm!(
                            "tilezero tmm0",
                            "tilezero tmm1",
                            "tilezero tmm2",
                            "tilezero tmm3",
                            options(nostack, nomem)
                        );
                    } else {
                        asm!(
                            "tileloadd tmm0, [{c00} + {sc}*1]",
                            "tileloadd tmm1, [{c01} + {sc}*1]",
                            "tileloadd tmm2, [{c10} + {sc}*1]",
                            "tileloadd tmm3, [{c11} + {sc}*1]",
                            c00 = in(reg) c00,
                            c01 = in(reg) c01,
                            c10 = in(reg) c10,
                            c11 = in(reg) c11,
                            sc = in(reg) c_stride,
                            options(nostack, readonly)
                        );
                    }
                    // Row groups mb/16 and mb/16 + 1 of A's tiles.
                    let a0 = a.add((mb / TILE) * depth_tiles * TILE_VALUES);
                    let a1 = a0.add(depth_tiles * TILE_VALUES);
                    for t in k0..k1 {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0.add(t * TILE_VALUES),
                            a1 = in(reg) a1.add(t * TILE_VALUES),
                            b0 = in(reg) b0.add(t * TILE_VALUES),
                            b1 = in(reg) b1.add(t * TILE_VALUES),
                            sa = in(reg) b_stride,
                            sb = in(reg) b_stride,
                            options(nostack, readonly)
                        );
                    }
                    asm!(
                        "tilestored [{c00} + {sc}*1], tmm0",
                        "tilestored [{c01} + {sc}*1], tmm1",
                        "tilestored [{c10} + {sc}*1], tmm2",
                        "tilestored [{c11} + {sc}*1], tmm3",
                        c00 = in(reg) c00,
                        c01 = in(reg) c01,
                        c10 = in(reg) c10,
                        c11 = in(reg) c11,
                        sc = in(reg) c_stride,
                        options(nostack)
                    );
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn amx_block_range(
    _a: *const u16,
    _m_p: usize,
    _depth_p: usize,
    _b: *const u16,
    _c: *mut f32,
    _cols_p: usize,
    _lo: usize,
    _hi: usize,
) {
    unreachable!("AMX is detected only on x86-64");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lcg(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// f64 reference of the bf16 product: both operands rounded to bf16.
    fn reference(a: &[f32], m: usize, w: &[f32], out: usize, inp: usize, fwd: bool) -> Vec<f64> {
        let r = |v: f32| from_bf16(to_bf16(v)) as f64;
        let (depth, cols) = if fwd { (inp, out) } else { (out, inp) };
        let mut y = vec![0f64; m * cols];
        for i in 0..m {
            for j in 0..cols {
                let mut s = 0f64;
                for c in 0..depth {
                    let wv = if fwd { w[j * inp + c] } else { w[c * inp + j] };
                    s += r(a[i * depth + c]) * r(wv);
                }
                y[i * cols + j] = s;
            }
        }
        y
    }

    /// `got` against [`reference`]: |got − want| within 1e-5 · Σ|a·w| per
    /// output (the f32 accumulation error bound is proportional to it).
    #[allow(clippy::too_many_arguments)]
    fn check(got: &[f32], a: &[f32], w: &[f32], m: usize, out: usize, inp: usize, fwd: bool) {
        let want = reference(a, m, w, out, inp, fwd);
        let (depth, cols) = if fwd { (inp, out) } else { (out, inp) };
        assert_eq!(got.len(), want.len());
        for i in 0..m {
            for j in 0..cols {
                let mut mag = 0f64;
                for c in 0..depth {
                    let wv = if fwd { w[j * inp + c] } else { w[c * inp + j] };
                    mag += (a[i * depth + c] as f64 * wv as f64).abs();
                }
                let d = (got[i * cols + j] as f64 - want[i * cols + j]).abs();
                assert!(
                    d <= 1e-5 * mag + 1e-30,
                    "[{i}, {j}]: got {} want {} (Σ|a·w| {mag})",
                    got[i * cols + j],
                    want[i * cols + j]
                );
            }
        }
    }

    /// Packs `w: [out, in]` for `kernel` and checks `x·Wᵀ` (`x: [m, in]`)
    /// and `g·W` (`g: [m, out]`) against the f64 reference.
    fn check_products(
        kernel: Bf16Kernel,
        (w, x, g): (&[f32], &[f32], &[f32]),
        m: usize,
        out: usize,
        inp: usize,
    ) -> Result<()> {
        let p = Bf16Weight::pack(w, out, inp, kernel)?;
        check(&p.forward(x, m)?, x, w, m, out, inp, true);
        check(&p.input_grad(g, m)?, g, w, m, out, inp, false);
        Ok(())
    }

    #[test]
    fn bf16_rounding_is_nearest_even_and_keeps_specials() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(
            from_bf16(to_bf16(f32::MAX)),
            f32::INFINITY,
            "rounds up past the largest bf16"
        );
    }

    #[test]
    fn the_wide_tile_rounding_equals_the_scalar_rounding_and_places_rows_in_tiles() {
        // 3 rows of 35 values: two contraction tiles (depth_p 64), one row group.
        let (m, depth, depth_p) = (3, 35, 64);
        let mut src = lcg(9, m * depth - 6, 3.0);
        src.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::MIN_POSITIVE / 3.0,
            -0.0,
            f32::MAX,
        ]);
        let mut wide = vec![0u16; 32 * depth_p];
        round_into_tiles(&src, depth, depth_p, &mut wide);
        let mut scalar = vec![0u16; 32 * depth_p];
        round_into_tiles_portable(&src, depth, depth_p, &mut scalar);
        assert_eq!(wide, scalar);
        for i in 0..m {
            for c in 0..depth_p {
                let at = (c / DEPTH) * TILE_VALUES + i * DEPTH + c % DEPTH;
                let want = if c < depth {
                    to_bf16(src[i * depth + c])
                } else {
                    0
                };
                assert_eq!(wide[at], want, "row {i}, column {c}");
            }
        }
    }

    #[test]
    fn packing_round_trips_through_the_bf16_weight() -> Result<()> {
        let (out, inp) = (37, 45);
        let w = lcg(3, out * inp, 1.0);
        // Both stores (packing tiles needs no AMX; only products do).
        for kernel in [Bf16Kernel::Amx, Bf16Kernel::Emulated] {
            let p = Bf16Weight::pack(&w, out, inp, kernel)?;
            assert_eq!(p.kernel(), kernel);
            let back = p.to_tensor()?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(back.len(), w.len());
            for (b, v) in back.iter().zip(&w) {
                assert_eq!(*b, from_bf16(to_bf16(*v)), "{kernel:?}");
            }
            assert_eq!(p.dims(), (37, 45));
        }
        let err = Bf16Weight::pack(&w[1..], out, inp, Bf16Kernel::Emulated)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[37, 45]"), "{err}");
        Ok(())
    }

    #[test]
    fn emulated_products_match_the_f64_reference_on_odd_shapes() -> Result<()> {
        for &(m, out, inp) in &[(1, 1, 1), (3, 17, 33), (33, 64, 40), (5, 96, 576)] {
            let w = lcg(m as u64 + 7, out * inp, 0.5);
            let x = lcg(out as u64, m * inp, 2.0);
            let g = lcg(inp as u64, m * out, 1.0);
            check_products(Bf16Kernel::Emulated, (&w, &x, &g), m, out, inp)?;
        }
        Ok(())
    }

    #[test]
    fn products_refuse_inputs_of_the_wrong_length() -> Result<()> {
        let p = Bf16Weight::pack(&[1.0; 6], 2, 3, Bf16Kernel::Emulated)?;
        let err = p.forward(&[1.0; 5], 2).unwrap_err().to_string();
        assert!(err.contains("input has 5 values, expected 2 × 3"), "{err}");
        let err = p.input_grad(&[1.0; 5], 2).unwrap_err().to_string();
        assert!(
            err.contains("gradient has 5 values, expected 2 × 2"),
            "{err}"
        );
        Ok(())
    }

    /// The AMX tiles against the f64 reference. On CPUs without AMX this
    /// says so and checks nothing: the emulation test above covers them.
    #[test]
    fn amx_products_match_the_f64_reference_where_the_cpu_has_amx() -> Result<()> {
        if !amx_usable() {
            eprintln!("no usable AMX on this machine: the AMX kernel is not exercised here");
            return Ok(());
        }
        for &(m, out, inp) in &[
            (1, 1, 1),
            (3, 17, 33),
            (33, 64, 40),
            (128, 192, 576),
            (7, 1536, 64),
        ] {
            let w = lcg(m as u64 + 11, out * inp, 0.5);
            let x = lcg(out as u64 + 1, m * inp, 2.0);
            let g = lcg(inp as u64 + 2, m * out, 1.0);
            check_products(Bf16Kernel::Amx, (&w, &x, &g), m, out, inp)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn both_kernels_agree_with_the_reference_on_random_shapes(
            m in 1usize..40, out in 1usize..70, inp in 1usize..70, seed in 0u64..1000
        ) {
            let w = lcg(seed, out * inp, 1.0);
            let x = lcg(seed + 1, m * inp, 1.0);
            let g = lcg(seed + 2, m * out, 1.0);
            let mut kernels = vec![Bf16Kernel::Emulated];
            if amx_usable() {
                kernels.push(Bf16Kernel::Amx);
            }
            for k in kernels {
                check_products(k, (&w, &x, &g), m, out, inp).unwrap();
            }
        }
    }
}

#[cfg(test)]
mod measure {
    use super::*;
    use std::time::Instant;

    /// Not a test: prints the AMX kernel's rate on SmolLM2-shaped products
    /// (`cargo test -p trib-model --lib amx::measure -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn amx_rate_on_smollm2_shapes() {
        if !amx_usable() {
            return;
        }
        let shapes = [
            (576, 576),
            (192, 576),
            (192, 576),
            (576, 576),
            (1536, 576),
            (1536, 576),
            (576, 1536),
        ];
        let m = 128;
        let layers: Vec<Vec<Bf16Weight>> = (0..30)
            .map(|l| {
                shapes
                    .iter()
                    .map(|&(o, i)| {
                        Bf16Weight::pack(&vec![0.01 * l as f32; o * i], o, i, Bf16Kernel::Amx)
                            .unwrap()
                    })
                    .collect()
            })
            .collect();
        let x576 = vec![0.5f32; m * 576];
        let x1536 = vec![0.5f32; m * 1536];
        for round in 0..3 {
            let t = Instant::now();
            let mut flops = 0f64;
            for layer in &layers {
                for w in layer {
                    let (o, i) = w.dims();
                    let x = if i == 576 { &x576 } else { &x1536 };
                    std::hint::black_box(w.forward(x, m).unwrap());
                    flops += 2.0 * (m * o * i) as f64;
                }
            }
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "round {round}: all layers forward {:.1} ms, {:.0} GFLOP/s (cold weights)",
                s * 1e3,
                flops / s / 1e9
            );
            for w in &layers[1] {
                let (o, i) = w.dims();
                let x = if i == 576 { &x576 } else { &x1536 };
                let t = Instant::now();
                for _ in 0..50 {
                    std::hint::black_box(w.forward(x, m).unwrap());
                }
                let fs = t.elapsed().as_secs_f64();
                let g = vec![0.5f32; m * o];
                let t = Instant::now();
                for _ in 0..50 {
                    std::hint::black_box(w.input_grad(&g, m).unwrap());
                }
                let bs = t.elapsed().as_secs_f64();
                let f = 50.0 * 2.0 * (m * o * i) as f64;
                eprintln!(
                    "  [{o}, {i}] hot: forward {:.0} GFLOP/s, input grad {:.0} GFLOP/s",
                    f / fs / 1e9,
                    f / bs / 1e9
                );
            }
            let head =
                Bf16Weight::pack(&vec![0.01f32; 49152 * 576], 49152, 576, Bf16Kernel::Amx).unwrap();
            let g = vec![0.5f32; m * 49152];
            let t = Instant::now();
            std::hint::black_box(head.forward(&x576, m).unwrap());
            let fs = t.elapsed().as_secs_f64();
            let t = Instant::now();
            std::hint::black_box(head.input_grad(&g, m).unwrap());
            let bs = t.elapsed().as_secs_f64();
            eprintln!(
                "  head [49152, 576]: forward {:.1} ms, input grad {:.1} ms",
                fs * 1e3,
                bs * 1e3
            );
            let w = &layers[0][4];
            let t = Instant::now();
            for _ in 0..100 {
                std::hint::black_box(w.forward(&x576, m).unwrap());
            }
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "round {round}: one gate product ×100 {:.1} ms, {:.0} GFLOP/s (hot weights)",
                s * 1e3,
                100.0 * 2.0 * (m * 1536 * 576) as f64 / s / 1e9
            );
        }
    }
}
