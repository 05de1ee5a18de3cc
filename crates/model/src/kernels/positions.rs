//! What attention knows about positions: the rotary embedding tables
//! (Su et al. 2021, "RoFormer", arXiv:2104.09864; angle `p·base^(−2i/hd)`
//! for position `p` and frequency `i`, `base` = `rope_theta`) and the
//! additive causal mask. Both are shared by the inference and training
//! forwards of every architecture.

use candle_core::{Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::Result;

/// `cos` and `sin` of every position's rotary angles, `[max_seq_len,
/// head_dim / 2]` each.
pub(crate) fn rope_tables(cfg: &LlamaConfig) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64)) as f32)
        .collect();
    let n = cfg.max_seq_len;
    let mut angles = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            angles.push(p as f32 * f);
        }
    }
    let a = Tensor::from_vec(angles, (n, half), &Device::Cpu)?;
    Ok((a.cos()?, a.sin()?))
}

/// `(tokens, tokens)` additive causal mask for a chunk of `n` queries at
/// absolute positions `past..past+n` over `past+n` keys.
pub(crate) fn causal_mask(n: usize, past: usize) -> Result<Tensor> {
    let t = past + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..t).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, t), &Device::Cpu)?)
}
