//! Access to the f32 elements of CPU tensors, shared by every kernel: a
//! borrowed slice of a tensor ([`with_f32`]) or of a custom op's storage
//! ([`contiguous_f32`]), the vectorizable dot product the per-row loops
//! use ([`dot`]), and the error conversion custom ops need ([`to_candle`]).
//!
//! The kernels read tensors as plain slices instead of through candle ops;
//! this module is the one place that reaches into candle's CPU storage for
//! them.

use candle_core::{CpuStorage, Layout, Tensor};

use crate::error::{ModelError, Result};

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

/// The contiguous f32 elements of a CPU storage under `l`, or an error
/// naming `op`.
pub(crate) fn contiguous_f32<'a>(
    op: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: the input is not contiguous");
    };
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// `ModelError` → candle error, for results computed inside `bwd`.
pub(crate) fn to_candle(e: ModelError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}
