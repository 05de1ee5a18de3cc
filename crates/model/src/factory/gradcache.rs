//! The gradient cache for attribution (DataInf, TracIn): per training example,
//! the gradient of its loss with respect to the LoRA parameters at the final
//! adapter, one vector per transformer layer, randomly projected when long.
//!
//! Per example `i` and layer `l`, `g_{i,l}` is the gradient of the mean
//! cross-entropy over the example's target tokens (no dropout, no packing:
//! one forward and one backward per example), flattened in this order: for
//! each adapted module in the order q, k, v, o, gate, up, down, `∂A` row-major
//! (`[r, in]`) then `∂B` row-major (`[out, r]`). Its length is
//! `d_l = Σ_modules r·(in + out)`.
//!
//! When `d_l > k` (`gradient_cache.projection_dim`), the layer's vectors are
//! stored as `S_l g` where `S_l` is a CountSketch (Charikar, Chen &
//! Farach-Colton 2002; the "feature hashing" JL transform of Weinberger et al.
//! 2009): coordinate `j` is added with sign `σ_l(j) ∈ {±1}` to bucket
//! `h_l(j) ∈ [0, k)`, both drawn from a generator seeded by `(seed, l)`. It
//! preserves inner products in expectation, `E⟨Sx, Sy⟩ = ⟨x, y⟩`, with
//! `Var⟨Sx, Sy⟩ = (‖x‖²‖y‖² + ⟨x,y⟩² − 2Σ_j x_j²y_j²) / k ≤ 2‖x‖²‖y‖² / k`,
//! the same bound as a dense Gaussian projection, at O(d_l) time and no stored
//! matrix. With k = 2048 the standard deviation of a cosine estimate is at most
//! √(2/2048) ≈ 0.031. The test gradient of an answer goes through the same
//! `S_l`, so DataInf's per-layer sums and TracIn's dot products are taken
//! between vectors projected identically.
//!
//! On disk, next to the adapter:
//!
//! ```text
//! gradient_cache/gradients.safetensors   "layer.<l>": f32 [n_examples, d'_l]
//! gradient_cache/index.json              the GradientCacheIndex below
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use trib_types::Hash;

use super::config::DataFormat;
use super::data::Provenance;
use super::error::{FactoryError, Result};
use super::rng::FactoryRng;
use crate::chat::ChatTemplate;

/// Current on-disk format version of the gradient cache.
pub const GRADIENT_CACHE_FORMAT: u32 = 1;

/// How one layer's vectors are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// The transformer layer.
    pub layer: usize,
    /// Adapted modules, in flattening order.
    pub modules: Vec<String>,
    /// Length of the raw gradient `d_l`.
    pub dim: usize,
    /// Length stored (`min(d_l, k)`).
    pub stored_dim: usize,
    /// Whether a CountSketch was applied (`d_l > k`).
    pub projected: bool,
}

/// One cached example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedExample {
    /// Where the training row came from.
    pub provenance: Provenance,
    /// The example's loss at the final adapter.
    pub loss: f64,
    /// Target tokens the loss averages over.
    pub target_tokens: u64,
}

/// `index.json` of a gradient cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientCacheIndex {
    /// [`GRADIENT_CACHE_FORMAT`].
    pub format: u32,
    /// `"count_sketch"`.
    pub projection: String,
    /// `k`.
    pub projection_dim: usize,
    /// Seed of the sketches (`h_l`, `σ_l` are drawn from `(seed, l)`).
    pub seed: u64,
    /// blake3 of `adapter_model.safetensors` the gradients were taken at.
    pub adapter_hash: Hash,
    /// How training rows were formatted; a test (prompt, answer) pair is
    /// formatted the same way before its gradient is taken.
    pub data_format: DataFormat,
    /// The chat template of `alpaca` / `messages` jobs.
    pub chat_template: ChatTemplate,
    /// The job's system prompt, if any.
    pub system_prompt: Option<String>,
    /// Per-layer storage, in layer order.
    pub layers: Vec<LayerEntry>,
    /// Row `i` of every layer matrix belongs to `examples[i]`.
    pub examples: Vec<CachedExample>,
}

/// A seeded CountSketch from `dim` to `k` coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CountSketch {
    k: usize,
    buckets: Vec<u32>,
    signs: Vec<f32>,
}

impl CountSketch {
    pub(crate) fn new(dim: usize, k: usize, seed: u64, layer: usize) -> Self {
        let mut rng = FactoryRng::new(seed, 0x4752_4144_0000_0000 ^ layer as u64);
        let mut buckets = Vec::with_capacity(dim);
        let mut signs = Vec::with_capacity(dim);
        for _ in 0..dim {
            buckets.push(rng.below(k as u64) as u32);
            signs.push(if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 });
        }
        CountSketch { k, buckets, signs }
    }

    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.buckets.len());
        let mut out = vec![0f32; self.k];
        for ((&v, &b), &s) in x.iter().zip(&self.buckets).zip(&self.signs) {
            out[b as usize] += s * v;
        }
        out
    }
}

/// Projects raw per-layer gradients as the index says.
#[derive(Debug, Clone)]
pub struct LayerProjector {
    sketches: Vec<Option<CountSketch>>,
}

impl LayerProjector {
    /// Builds the sketches for layers of raw lengths `dims`.
    pub fn new(dims: &[usize], k: usize, seed: u64) -> Self {
        let sketches = dims
            .iter()
            .enumerate()
            .map(|(l, &d)| (d > k).then(|| CountSketch::new(d, k, seed, l)))
            .collect();
        LayerProjector { sketches }
    }

    /// The stored form of layer `l`'s raw gradient.
    pub fn project(&self, layer: usize, raw: &[f32]) -> Vec<f32> {
        match &self.sketches[layer] {
            Some(s) => s.apply(raw),
            None => raw.to_vec(),
        }
    }
}

/// A gradient cache loaded from disk.
#[derive(Debug, Clone)]
pub struct GradientCache {
    /// The index.
    pub index: GradientCacheIndex,
    /// Per layer, `[n_examples, stored_dim]`.
    pub layers: Vec<Tensor>,
}

impl GradientCache {
    /// The directory a cache lives in, given a run's adapter directory.
    pub fn dir_for(adapter_dir: &Path) -> PathBuf {
        adapter_dir.join("gradient_cache")
    }

    /// Reads `index.json` and `gradients.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<GradientCache> {
        let p = dir.join("index.json");
        let text = std::fs::read(&p).map_err(|e| FactoryError::io(&p, e))?;
        let index: GradientCacheIndex =
            serde_json::from_slice(&text).map_err(|e| FactoryError::format(&p, e))?;
        if index.format != GRADIENT_CACHE_FORMAT {
            return Err(FactoryError::format(
                &p,
                format!(
                    "format {} (this build reads {GRADIENT_CACHE_FORMAT})",
                    index.format
                ),
            ));
        }
        let p = dir.join("gradients.safetensors");
        let mut map = candle_core::safetensors::load(&p, &Device::Cpu)
            .map_err(|e| FactoryError::format(&p, e))?;
        let mut layers = Vec::with_capacity(index.layers.len());
        for e in &index.layers {
            let name = format!("layer.{}", e.layer);
            let t = map
                .remove(&name)
                .ok_or_else(|| FactoryError::format(&p, format!("tensor {name} is missing")))?;
            if t.dims() != [index.examples.len(), e.stored_dim] {
                return Err(FactoryError::format(
                    &p,
                    format!(
                        "{name} has shape {:?}, expected [{}, {}]",
                        t.dims(),
                        index.examples.len(),
                        e.stored_dim
                    ),
                ));
            }
            layers.push(t);
        }
        Ok(GradientCache { index, layers })
    }

    /// The projector that maps a raw test gradient into this cache's space.
    pub fn projector(&self) -> LayerProjector {
        let dims: Vec<usize> = self.index.layers.iter().map(|e| e.dim).collect();
        LayerProjector::new(&dims, self.index.projection_dim, self.index.seed)
    }
}

/// Writes a cache atomically (temporary directory, then rename).
pub(crate) fn write(dir: &Path, index: &GradientCacheIndex, rows: &[Vec<Vec<f32>>]) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| FactoryError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| FactoryError::io(&tmp, e))?;
    let n = rows.len();
    let mut tensors = HashMap::new();
    for (li, e) in index.layers.iter().enumerate() {
        let mut flat = Vec::with_capacity(n * e.stored_dim);
        for r in rows {
            flat.extend_from_slice(&r[li]);
        }
        tensors.insert(
            format!("layer.{}", e.layer),
            Tensor::from_vec(flat, (n, e.stored_dim), &Device::Cpu)?,
        );
    }
    let p = tmp.join("gradients.safetensors");
    candle_core::safetensors::save(&tensors, &p).map_err(|e| FactoryError::format(&p, e))?;
    let p = tmp.join("index.json");
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(index).expect("index serialises"),
    )
    .map_err(|e| FactoryError::io(&p, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| FactoryError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| FactoryError::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn sketches_are_deterministic_per_seed_and_layer() {
        let x: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin()).collect();
        let p1 = LayerProjector::new(&[5000, 5000, 100], 256, 7);
        let p2 = LayerProjector::new(&[5000, 5000, 100], 256, 7);
        assert_eq!(p1.project(0, &x), p2.project(0, &x));
        assert_ne!(p1.project(0, &x), p1.project(1, &x));
        assert_ne!(
            p1.project(0, &x),
            LayerProjector::new(&[5000], 256, 8).project(0, &x)
        );
        assert_eq!(
            p1.project(2, &x[..100]),
            x[..100].to_vec(),
            "short layers are stored raw"
        );
    }

    #[test]
    fn sketched_inner_products_are_within_the_variance_bound() {
        // Two correlated dense vectors; the estimate of <x, y> must fall
        // within 4 standard deviations of the bound sqrt(2/k)·|x||y| for
        // every one of 20 seeds.
        let d = 20_000;
        let k = 1024;
        let mut r = FactoryRng::new(1, 1);
        let x: Vec<f32> = (0..d).map(|_| r.next_f32() - 0.5).collect();
        let y: Vec<f32> = x.iter().map(|v| v + 0.5 * (r.next_f32() - 0.5)).collect();
        let exact = dot(&x, &y);
        let sd = (2.0 / k as f64).sqrt() * dot(&x, &x).sqrt() * dot(&y, &y).sqrt();
        let mut mean = 0.0;
        for seed in 0..20 {
            let s = CountSketch::new(d, k, seed, 0);
            let est = dot(&s.apply(&x), &s.apply(&y));
            assert!(
                (est - exact).abs() < 4.0 * sd,
                "seed {seed}: {est} vs {exact} (sd {sd})"
            );
            mean += est / 20.0;
        }
        assert!(
            (mean - exact).abs() < 2.0 * sd / (20f64).sqrt() + 1e-9,
            "unbiased: {mean} vs {exact}"
        );
    }
}
