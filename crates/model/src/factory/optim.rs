//! AdamW, the learning-rate schedule and gradient clipping.
//!
//! The update is candle-nn's `AdamW` (Loshchilov & Hutter, "Decoupled Weight
//! Decay Regularization", ICLR 2019) written out here because checkpoints must
//! save and restore the moment estimates, which candle-nn keeps private:
//!
//! ```text
//! m ← β₁m + (1−β₁)g          v ← β₂v + (1−β₂)g²
//! θ ← θ·(1 − lr·wd) − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
//! ```

use candle_core::{DType, Tensor, Var};

use super::config::{ScheduleKind, TrainSection};
use super::error::Result;

/// AdamW over a fixed list of variables, with exportable state.
#[derive(Debug)]
pub(crate) struct AdamW {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// First moments, one per variable.
    pub(crate) m: Vec<Tensor>,
    /// Second moments, one per variable.
    pub(crate) v: Vec<Tensor>,
    /// Updates applied so far (`t` in the bias corrections).
    pub(crate) t: u64,
}

impl AdamW {
    pub(crate) fn new(vars: &[Var], train: &TrainSection) -> Result<Self> {
        let zeros = |v: &Var| Tensor::zeros(v.shape(), DType::F32, v.device());
        Ok(AdamW {
            beta1: train.adam_beta1,
            beta2: train.adam_beta2,
            eps: train.adam_eps,
            weight_decay: train.weight_decay,
            m: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            v: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    /// One update of every variable with its gradient.
    pub(crate) fn step(&mut self, vars: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 / (1.0 - b1.powi(self.t as i32));
        let c2 = 1.0 / (1.0 - b2.powi(self.t as i32));
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&m * c1)?;
            let v_hat = (&v * c2)?;
            let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// The learning rate for optimiser step `step` (0-based) of `total`.
///
/// Linear warmup from `lr/W` to `lr` over the first `W` steps, then constant,
/// linear or cosine decay to `min_lr_ratio · lr` at the last step.
pub(crate) fn learning_rate(train: &TrainSection, step: u64, total: u64) -> f64 {
    let peak = train.learning_rate;
    let warmup = match train.warmup_ratio {
        Some(r) => (r * total as f64).round() as u64,
        None => train.warmup_steps,
    };
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).saturating_sub(1).max(1);
    let p = ((step - warmup) as f64 / decay_steps as f64).clamp(0.0, 1.0);
    let floor = train.min_lr_ratio;
    let factor = match train.schedule {
        ScheduleKind::Constant => 1.0,
        ScheduleKind::Linear => floor + (1.0 - floor) * (1.0 - p),
        ScheduleKind::Cosine => {
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    };
    peak * factor
}

/// The global L2 norm of a set of gradients.
pub(crate) fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads {
        sq += g
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(sq.sqrt())
}

/// Scales gradients so that their global norm is at most `max_norm` (0: off).
/// Returns the norm before clipping.
pub(crate) fn clip(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn train(schedule: ScheduleKind, warmup: u64) -> TrainSection {
        TrainSection {
            schedule,
            warmup_steps: warmup,
            learning_rate: 1.0,
            ..TrainSection::default()
        }
    }

    #[test]
    fn warmup_then_cosine_reaches_the_floor_at_the_last_step() {
        let t = train(ScheduleKind::Cosine, 4);
        assert!((learning_rate(&t, 0, 20) - 0.25).abs() < 1e-12);
        assert!((learning_rate(&t, 3, 20) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&t, 4, 20) - 1.0).abs() < 1e-12);
        assert!(learning_rate(&t, 19, 20).abs() < 1e-12);
        let mid = learning_rate(&t, 4 + 15 / 2, 20);
        assert!(mid > 0.4 && mid < 0.6, "{mid}");
    }

    #[test]
    fn linear_and_constant_schedules() {
        let l = TrainSection {
            min_lr_ratio: 0.1,
            ..train(ScheduleKind::Linear, 0)
        };
        assert!((learning_rate(&l, 0, 11) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&l, 10, 11) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&l, 5, 11) - 0.55).abs() < 1e-12);
        let c = train(ScheduleKind::Constant, 2);
        assert_eq!(learning_rate(&c, 7, 10), 1.0);
        let r = TrainSection {
            warmup_ratio: Some(0.5),
            ..train(ScheduleKind::Constant, 0)
        };
        assert!((learning_rate(&r, 0, 10) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() -> Result<()> {
        // After one step with gradient g, m̂ = g and v̂ = g², so the update is
        // lr · g / (|g| + ε) = lr · sign(g) (for |g| ≫ ε), plus decay.
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &dev)?)?;
        let t = TrainSection {
            weight_decay: 0.1,
            ..TrainSection::default()
        };
        let mut opt = AdamW::new(std::slice::from_ref(&var), &t)?;
        let g = Tensor::new(&[0.5f32, -4.0, 0.0], &dev)?;
        opt.step(std::slice::from_ref(&var), &[g], 0.01)?;
        let got = var.as_tensor().to_vec1::<f32>()?;
        let want = [1.0 * 0.999 - 0.01, -2.0 * 0.999 + 0.01, 3.0 * 0.999];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        Ok(())
    }

    #[test]
    fn clipping_bounds_the_global_norm() -> Result<()> {
        let dev = Device::Cpu;
        let mut g = vec![Tensor::new(&[3.0f32], &dev)?, Tensor::new(&[4.0f32], &dev)?];
        let n = clip(&mut g, 1.0)?;
        assert!((n - 5.0).abs() < 1e-6);
        assert!((global_norm(&g)? - 1.0).abs() < 1e-5);
        let mut small = vec![Tensor::new(&[0.3f32], &dev)?];
        clip(&mut small, 1.0)?;
        assert!((small[0].to_vec1::<f32>()?[0] - 0.3).abs() < 1e-7);
        Ok(())
    }
}
