//! A linear projection through a frozen weight, for the training forward.
//!
//! candle 0.11's `matmul` backward always computes the gradient of both
//! operands. In LoRA training every base projection (q, k, v, o, gate, up,
//! down in every layer, and the tied LM head) is frozen, so the weight
//! gradient `xᵀ·grad` — a matmul as large as the forward — is computed and
//! thrown away. [`frozen_linear`] runs the same forward `x·Wᵀ` as a
//! [`CustomOp1`] over `x` alone; its backward returns only the input
//! gradient `grad·W`. The forward calls candle's own CPU matmul with the same
//! operands and layouts as `x.matmul(&w.t())`, so results are bit-identical
//! to the standard path. See docs/model.md ("Frozen-weight linear").

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};

use crate::error::{ModelError, Result};

/// `x·Wᵀ` with `W: [out, in]` held outside the autograd graph.
struct FrozenLinear {
    /// `[out, in]`, f32, on the CPU.
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (n, k_w) = self.w.dims2()?;
        if k != k_w {
            candle_core::bail!("frozen-linear: input has {k} features, the weight expects {k_w}");
        }
        let wt = self.w.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else {
            candle_core::bail!("frozen-linear: the weight is not in CPU memory");
        };
        // Exactly what `x.matmul(&w.t())` runs on the CPU backend.
        let out = s.matmul(ws, (1, m, n, k), l, wl)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // d(x·Wᵀ)/dx = grad·W; no gradient for W (it is frozen).
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x·Wᵀ` for `x: [.., in]` (f32) and a frozen `w: [out, in]` (f32), with a
/// backward pass that yields the gradient of `x` only. Leading dims of `x`
/// are flattened to rows and restored on the output.
pub(crate) fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "frozen-linear needs f32 operands, got input {:?} and weight {:?}",
            x.dtype(),
            w.dtype()
        ))));
    }
    let (out, _) = w.dims2()?;
    let dims = x.dims().to_vec();
    let Some((&k, lead)) = dims.split_last() else {
        return Err(ModelError::Candle(candle_core::Error::Msg(
            "frozen-linear needs an input of rank ≥ 1, got a scalar".into(),
        )));
    };
    let rows: usize = lead.iter().product();
    let x2 = if dims.len() == 2 {
        x.clone()
    } else {
        x.reshape((rows, k))?
    };
    let y = x2.apply_op1(FrozenLinear { w: w.contiguous()? })?;
    if dims.len() == 2 {
        return Ok(y);
    }
    let mut shape = lead.to_vec();
    shape.push(out);
    Ok(y.reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    use crate::tiny::max_abs_diff;

    #[test]
    fn frozen_linear_matches_matmul_forward_and_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
        // A fixed upstream gradient so the loss is not symmetric in rows.
        let up = Tensor::randn(0f32, 1.0, (5, 3), &dev)?;

        let y_frozen = frozen_linear(x.as_tensor(), &w)?;
        let y_std = x.as_tensor().matmul(&w.t()?)?;
        assert_eq!(
            max_abs_diff(&y_frozen, &y_std),
            0.0,
            "forward is bit-identical"
        );

        let g_frozen = (y_frozen * &up)?.sum_all()?.backward()?;
        let g_std = (y_std * &up)?.sum_all()?.backward()?;
        let gf = g_frozen.get(x.as_tensor()).expect("x has a gradient");
        let gs = g_std.get(x.as_tensor()).expect("x has a gradient");
        assert!(max_abs_diff(gf, gs) < 1e-5);
        // The analytic value: up·W.
        assert!(max_abs_diff(gf, &up.matmul(&w)?) < 1e-5);
        Ok(())
    }

    #[test]
    fn frozen_linear_gradient_matches_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let x0: Vec<f32> = (0..6).map(|i| (i as f32 * 0.37).sin()).collect();
        let w = Tensor::new(&[[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]], &dev)?;
        let loss = |x: &Tensor| -> Result<Tensor> { Ok(frozen_linear(x, &w)?.sqr()?.sum_all()?) };
        let x = Var::from_vec(x0.clone(), (2, 3), &dev)?;
        let g: Vec<f32> = loss(x.as_tensor())?
            .backward()?
            .get(x.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1()?;
        let h = 1e-2f32;
        for i in 0..x0.len() {
            let mut p = x0.clone();
            p[i] += h;
            let mut m = x0.clone();
            m[i] -= h;
            let lp: f32 = loss(&Tensor::from_vec(p, (2, 3), &dev)?)?.to_scalar()?;
            let lm: f32 = loss(&Tensor::from_vec(m, (2, 3), &dev)?)?.to_scalar()?;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-2 * (1.0 + fd.abs()),
                "i={i}: fd {fd} vs {}",
                g[i]
            );
        }
        Ok(())
    }

    #[test]
    fn frozen_linear_keeps_leading_dims_and_rejects_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 4, 7), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
        let y = frozen_linear(&x, &w)?;
        assert_eq!(y.dims(), &[2, 4, 3]);
        assert!(max_abs_diff(&y, &x.broadcast_matmul(&w.t()?)?) < 1e-5);
        let wrong = Tensor::randn(0f32, 1.0, (3, 6), &dev)?;
        let err = frozen_linear(&x, &wrong).unwrap_err().to_string();
        assert!(err.contains("7 features"), "{err}");
        let x64 = x.to_dtype(DType::F64)?;
        assert!(frozen_linear(&x64, &w)
            .unwrap_err()
            .to_string()
            .contains("f32"));
        Ok(())
    }
}
