//! A linear projection through a frozen weight, for the training forward.
//!
//! candle 0.11's `matmul` backward always computes the gradient of both
//! operands. In LoRA training every base projection (q, k, v, o, gate, up,
//! down in every layer, and the tied LM head) is frozen, so the weight
//! gradient `xᵀ·grad` — a matmul as large as the forward — is computed and
//! thrown away. [`frozen_linear`] runs the same forward `x·Wᵀ` as a
//! [`CustomOp1`] over `x` alone; its backward returns only the input
//! gradient `grad·W`.
//!
//! The weight is either f32 ([`FrozenWeight::F32`]: the forward calls
//! candle's own CPU matmul with the same operands and layouts as
//! `x.matmul(&w.t())`, so results are bit-identical to the standard path) or
//! bf16 ([`FrozenWeight::Bf16`]: both products on AMX tiles, or their
//! emulation, see [`crate::kernels::amx`]). See docs/model.md ("Frozen-weight
//! linear") and docs/factory.md ("Training precision").

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::amx::Bf16Weight;
use crate::kernels::cpu_f32::{contiguous_f32, to_candle};

/// A frozen weight `[out, in]` as the training forward multiplies with it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FrozenWeight<'a> {
    /// Dense f32, through candle's matmul.
    F32(&'a Tensor),
    /// bf16 tiles (AMX, or the emulation where AMX is absent).
    Bf16(&'a Arc<Bf16Weight>),
}

/// The weight a [`FrozenLinear`] op holds.
enum Held {
    /// `[out, in]`, f32, on the CPU, contiguous.
    F32(Tensor),
    Bf16(Arc<Bf16Weight>),
}

/// `x·Wᵀ` with `W: [out, in]` held outside the autograd graph.
struct FrozenLinear {
    w: Held,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (n, k_w) = match &self.w {
            Held::F32(w) => w.dims2()?,
            Held::Bf16(w) => w.dims(),
        };
        if k != k_w {
            candle_core::bail!("frozen-linear: input has {k} features, the weight expects {k_w}");
        }
        match &self.w {
            Held::F32(w) => {
                let wt = w.t()?;
                let (ws, wl) = wt.storage_and_layout();
                let Storage::Cpu(ws) = &*ws else {
                    candle_core::bail!("frozen-linear: the weight is not in CPU memory");
                };
                // Exactly what `x.matmul(&w.t())` runs on the CPU backend.
                let out = s.matmul(ws, (1, m, n, k), l, wl)?;
                Ok((out, Shape::from((m, n))))
            }
            Held::Bf16(w) => {
                let x = contiguous_f32("frozen-linear", s, l)?;
                let y = w.forward(x, m).map_err(to_candle)?;
                Ok((CpuStorage::F32(y), Shape::from((m, n))))
            }
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // d(x·Wᵀ)/dx = grad·W; no gradient for W (it is frozen).
        match &self.w {
            Held::F32(w) => Ok(Some(grad.matmul(w)?)),
            Held::Bf16(w) => Ok(Some(
                grad.contiguous()?
                    .apply_op1_no_bwd(&Bf16InputGrad(w.clone()))?,
            )),
        }
    }
}

/// `g·W` for the bf16 weight: the input gradient of [`FrozenLinear`].
struct Bf16InputGrad(Arc<Bf16Weight>);

impl CustomOp1 for Bf16InputGrad {
    fn name(&self) -> &'static str {
        "frozen-linear-input-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, n) = l.shape().dims2()?;
        let (n_w, k) = self.0.dims();
        if n != n_w {
            candle_core::bail!(
                "frozen-linear backward: gradient has {n} features, the weight has {n_w} outputs"
            );
        }
        let g = contiguous_f32("frozen-linear backward", s, l)?;
        let dx = self.0.input_grad(g, m).map_err(to_candle)?;
        Ok((CpuStorage::F32(dx), Shape::from((m, k))))
    }
}

/// `x·Wᵀ` for `x: [.., in]` (f32) and a frozen `w: [out, in]`, with a
/// backward pass that yields the gradient of `x` only. Leading dims of `x`
/// are flattened to rows and restored on the output.
pub(crate) fn frozen_linear(x: &Tensor, w: FrozenWeight<'_>) -> Result<Tensor> {
    let (held, out) = match w {
        FrozenWeight::F32(t) => {
            if x.dtype() != DType::F32 || t.dtype() != DType::F32 {
                return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                    "frozen-linear needs f32 operands, got input {:?} and weight {:?}",
                    x.dtype(),
                    t.dtype()
                ))));
            }
            (Held::F32(t.contiguous()?), t.dims2()?.0)
        }
        FrozenWeight::Bf16(b) => {
            if x.dtype() != DType::F32 {
                return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                    "frozen-linear needs an f32 input, got {:?}",
                    x.dtype()
                ))));
            }
            (Held::Bf16(b.clone()), b.dims().0)
        }
    };
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
    let y = x2.apply_op1(FrozenLinear { w: held })?;
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

        let y_frozen = frozen_linear(x.as_tensor(), FrozenWeight::F32(&w))?;
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
        let loss = |x: &Tensor| -> Result<Tensor> {
            Ok(frozen_linear(x, FrozenWeight::F32(&w))?.sqr()?.sum_all()?)
        };
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

    /// The bf16 op against the f32 op on the bf16-rounded operands: the
    /// forward rounds `x`, the backward rounds the upstream gradient; only
    /// the f32 summation order differs. Both kernels where the CPU has AMX.
    #[test]
    fn bf16_frozen_linear_matches_f32_on_rounded_operands_forward_and_backward() -> Result<()> {
        use crate::kernels::amx::{amx_usable, from_bf16, to_bf16, Bf16Kernel};
        let dev = Device::Cpu;
        let round = |t: &Tensor| -> Result<Tensor> {
            let v: Vec<f32> = t.flatten_all()?.to_vec1::<f32>()?;
            let r: Vec<f32> = v.into_iter().map(|x| from_bf16(to_bf16(x))).collect();
            Ok(Tensor::from_vec(r, t.dims(), &Device::Cpu)?)
        };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 9, 40), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (24, 40), &dev)?;
        let up = Tensor::randn(0f32, 1.0, (2, 9, 24), &dev)?;
        let mut kernels = vec![Bf16Kernel::Emulated];
        if amx_usable() {
            kernels.push(Bf16Kernel::Amx);
        }
        for kernel in kernels {
            let b = Arc::new(Bf16Weight::from_tensor(&w, kernel)?);
            let wr = b.to_tensor()?;
            assert_eq!(
                max_abs_diff(&wr, &round(&w)?),
                0.0,
                "the weight is rounded once"
            );
            let y = frozen_linear(x.as_tensor(), FrozenWeight::Bf16(&b))?;
            assert_eq!(y.dims(), &[2, 9, 24]);
            let want = frozen_linear(&round(x.as_tensor())?, FrozenWeight::F32(&wr))?;
            let d = max_abs_diff(&y, &want);
            assert!(d < 1e-4, "{kernel:?} forward differs by {d}");
            let g = (y * &up)?.sum_all()?.backward()?;
            let gx = g.get(x.as_tensor()).expect("x has a gradient");
            let want = round(&up)?
                .reshape((18, 24))?
                .matmul(&wr)?
                .reshape((2, 9, 40))?;
            let d = max_abs_diff(gx, &want);
            assert!(d < 1e-4, "{kernel:?} input gradient differs by {d}");
            // And the bf16 answer is close to the exact f32 one.
            let exact = x.as_tensor().broadcast_matmul(&w.t()?)?;
            let y = frozen_linear(x.as_tensor(), FrozenWeight::Bf16(&b))?;
            let rel = max_abs_diff(&y, &exact) / exact.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                rel < 2e-2,
                "{kernel:?}: bf16 is {rel} off f32 (relative to the largest output)"
            );
        }
        let wrong = Tensor::randn(0f32, 1.0, (3, 6), &dev)?;
        let b = Arc::new(Bf16Weight::from_tensor(&wrong, Bf16Kernel::Emulated)?);
        let err = frozen_linear(x.as_tensor(), FrozenWeight::Bf16(&b))
            .unwrap_err()
            .to_string();
        assert!(err.contains("40 features, the weight expects 6"), "{err}");
        Ok(())
    }

    #[test]
    fn frozen_linear_keeps_leading_dims_and_rejects_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 4, 7), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
        let y = frozen_linear(&x, FrozenWeight::F32(&w))?;
        assert_eq!(y.dims(), &[2, 4, 3]);
        assert!(max_abs_diff(&y, &x.broadcast_matmul(&w.t()?)?) < 1e-5);
        let wrong = Tensor::randn(0f32, 1.0, (3, 6), &dev)?;
        let err = frozen_linear(&x, FrozenWeight::F32(&wrong))
            .unwrap_err()
            .to_string();
        assert!(err.contains("7 features"), "{err}");
        let x64 = x.to_dtype(DType::F64)?;
        assert!(frozen_linear(&x64, FrozenWeight::F32(&w))
            .unwrap_err()
            .to_string()
            .contains("f32"));
        Ok(())
    }
}
