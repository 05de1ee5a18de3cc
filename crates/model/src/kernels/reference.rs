//! Reference versions of the fused kernels, written from primitive candle
//! ops (each one differentiable by candle's autograd): RMSNorm, softmax,
//! "rotate_half" rope and the repeated kv heads of grouped-query attention.
//! Test builds only: the kernels in [`crate::kernels::train`] and the
//! candle fused ops are checked against them.

use candle_core::{Tensor, D};

use crate::error::Result;

/// RMSNorm from primitive ops (differentiable): `x / √(mean(x²) + ε) · w`.
/// The training forward uses the fused `rms_norm_frozen`; this stays as the
/// reference the fused kernels are tested against.
pub(crate) fn rms_norm_diff(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last dim from primitive ops. The max shift is detached:
/// it cancels mathematically and only keeps `exp` in range. The training
/// forward uses the fused `causal_softmax`; this stays as its reference.
pub(crate) fn softmax_diff(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// "rotate_half" rope from primitive ops: `x·cos + rot(x)·sin` with
/// `rot([x1, x2]) = [-x2, x1]`; `cos`, `sin` are `[t, hd]`. The training
/// forward uses the fused `to_heads`; this stays as its reference.
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
pub(crate) fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kvh, groups, t, hd))?
        .reshape((b, kvh * groups, t, hd))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::max_abs_diff;
    use candle_core::Device;

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
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-6);
        let a = rms_norm_diff(&x, &w, 1e-5).unwrap();
        let b = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-5);
    }
}
