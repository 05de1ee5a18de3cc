//! Random PEFT adapters for tests and benchmarks.
//!
//! trib-model's `LoraAdapter::init` starts `B` at zero (PEFT's init), which
//! makes an adapter a no-op; a serving test needs adapters that actually
//! change the output, so `B` is filled with random values too.

use std::path::Path;

use trib_model::{LlamaConfig, LoraAdapter, LoraConfig, LoraTarget, Tensor};
use trib_types::AdapterId;

use crate::model::ModelError;

/// Shape and seed of a random adapter.
#[derive(Debug, Clone)]
pub struct RandomAdapter {
    /// Rank.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Adapted modules.
    pub targets: Vec<LoraTarget>,
    /// `base_model_name_or_path` written into the config.
    pub base_model: String,
    /// `B` is drawn from `U(-b_scale, b_scale)`.
    pub b_scale: f32,
    /// Seed for `A` and `B`.
    pub seed: u64,
}

impl RandomAdapter {
    /// Rank 8 on q/v (alpha 16), for `base_model`, with a seed.
    pub fn qv_r8(base_model: &str, seed: u64) -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            targets: vec![LoraTarget::QProj, LoraTarget::VProj],
            base_model: base_model.to_owned(),
            b_scale: 0.05,
            seed,
        }
    }

    /// Builds the adapter in memory for a model of configuration `cfg`.
    pub fn build(&self, cfg: &LlamaConfig) -> Result<LoraAdapter, ModelError> {
        let lc = LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: 0.0,
            targets: self.targets.clone(),
            use_rslora: false,
        };
        let adapter = LoraAdapter::init(lc, cfg, self.base_model.clone(), self.seed)
            .map_err(ModelError::msg)?;
        let mut state = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for (_, _, pair) in adapter.iter_pairs() {
            let n = pair.b.as_tensor().elem_count();
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    // xorshift64*: deterministic, no extra dependency.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32
                        / (1u64 << 24) as f32;
                    (2.0 * u - 1.0) * self.b_scale
                })
                .collect();
            let cur = pair.b.as_tensor();
            let b = Tensor::from_vec(vals, cur.dims(), cur.device()).map_err(ModelError::msg)?;
            pair.b.set(&b).map_err(ModelError::msg)?;
        }
        Ok(adapter)
    }

    /// Writes the adapter as PEFT files into `dir`; returns its content id.
    pub fn write(&self, dir: &Path, cfg: &LlamaConfig) -> Result<AdapterId, ModelError> {
        let a = self.build(cfg)?;
        trib_model::save_peft(&a, dir).map_err(ModelError::msg)
    }
}
