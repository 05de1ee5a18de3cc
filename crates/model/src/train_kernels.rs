//! Fused element-wise ops for the training forward, with hand-written
//! backward passes.
//!
//! Built from candle primitives, RMSNorm is seven ops forward (square,
//! mean, add, sqrt, recip and two broadcast multiplies) and about ten
//! backward, each allocating and filling a fresh `[rows, hidden]` buffer; the
//! training step of SmolLM2 runs 61 of them. [`rms_norm_frozen`] does the
//! forward in one pass per row and its backward in another, and returns no
//! gradient for the norm weight: in LoRA training every norm weight is
//! frozen. See docs/factory.md ("Training speed decisions").

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::with_f32;

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
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let inv = self.inv_rms(xr);
            for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(&self.w) {
                *yv = xv * inv * wv;
            }
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
                let mut dx = vec![0f32; x.len()];
                for ((xr, gr), dr) in x
                    .chunks_exact(n)
                    .zip(g.chunks_exact(n))
                    .zip(dx.chunks_exact_mut(n))
                {
                    let inv = self.inv_rms(xr);
                    let dot: f32 = xr
                        .iter()
                        .zip(gr)
                        .zip(&self.w)
                        .map(|((xv, gv), wv)| xv * gv * wv)
                        .sum();
                    let c = inv * inv * inv * dot / n as f32;
                    for (((d, xv), gv), wv) in dr.iter_mut().zip(xr).zip(gr).zip(&self.w) {
                        *d = inv * gv * wv - xv * c;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};
    use proptest::prelude::*;

    /// The composed candle ops the fused op replaces (crate::llama's
    /// `rms_norm_diff`).
    fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
        let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let inv = (ms + eps).unwrap().sqrt().unwrap().recip().unwrap();
        x.broadcast_mul(&inv).unwrap().broadcast_mul(w).unwrap()
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
}
