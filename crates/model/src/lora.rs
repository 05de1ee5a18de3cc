//! LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
//! Models", arXiv:2106.09685): each adapted linear layer `W` gains a
//! low-rank update, `y = W·x + s · B·(A·x)` with `A ∈ R^{r×in}` initialised
//! Kaiming-uniform, `B ∈ R^{out×r}` initialised to zero (so the adapter starts
//! as the identity edit), and `s = alpha / r` (or `alpha / √r` with rsLoRA,
//! Kalajdzievski 2023, arXiv:2312.03732).
//!
//! The tensors are candle [`Var`]s so the same adapter object is trained by
//! the differentiable forward and served by the inference forward.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// A linear layer LoRA can adapt, named as in Hugging Face checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    /// Attention query projection.
    #[serde(rename = "q_proj")]
    QProj,
    /// Attention key projection.
    #[serde(rename = "k_proj")]
    KProj,
    /// Attention value projection.
    #[serde(rename = "v_proj")]
    VProj,
    /// Attention output projection.
    #[serde(rename = "o_proj")]
    OProj,
    /// MLP gate projection.
    #[serde(rename = "gate_proj")]
    GateProj,
    /// MLP up projection.
    #[serde(rename = "up_proj")]
    UpProj,
    /// MLP down projection.
    #[serde(rename = "down_proj")]
    DownProj,
}

impl LoraTarget {
    /// All targets, in layer order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// Hugging Face module name (`q_proj` …).
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "q_proj",
            LoraTarget::KProj => "k_proj",
            LoraTarget::VProj => "v_proj",
            LoraTarget::OProj => "o_proj",
            LoraTarget::GateProj => "gate_proj",
            LoraTarget::UpProj => "up_proj",
            LoraTarget::DownProj => "down_proj",
        }
    }

    /// The parent module in a Hugging Face layer (`self_attn` or `mlp`).
    pub fn parent(self) -> &'static str {
        match self {
            LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj | LoraTarget::OProj => {
                "self_attn"
            }
            _ => "mlp",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// `(in, out)` features of this layer in a model.
    pub fn dims(self, cfg: &LlamaConfig) -> (usize, usize) {
        let h = cfg.hidden_size;
        match self {
            LoraTarget::QProj => (h, cfg.q_dim()),
            LoraTarget::KProj | LoraTarget::VProj => (h, cfg.kv_dim()),
            LoraTarget::OProj => (cfg.q_dim(), h),
            LoraTarget::GateProj | LoraTarget::UpProj => (h, cfg.intermediate_size),
            LoraTarget::DownProj => (cfg.intermediate_size, h),
        }
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoraTarget {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                ModelError::LoraConfig(format!(
                    "unknown target module `{s}` (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                ))
            })
    }
}

/// LoRA hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Dropout probability on the LoRA branch input during training.
    pub dropout: f64,
    /// Adapted layers.
    pub targets: Vec<LoraTarget>,
    /// rsLoRA scaling (`alpha / √r`).
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec![LoraTarget::QProj, LoraTarget::VProj],
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor `s` in `y = W·x + s · B·A·x`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks rank, alpha, dropout and targets.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(ModelError::LoraConfig("rank r must be at least 1".into()));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(ModelError::LoraConfig(format!(
                "lora_alpha {} must be positive",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::LoraConfig(format!(
                "dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(ModelError::LoraConfig("no target modules".into()));
        }
        let mut seen = self.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.targets.len() {
            return Err(ModelError::LoraConfig("target modules listed twice".into()));
        }
        Ok(())
    }
}

/// The `A` and `B` matrices of one adapted layer.
#[derive(Clone, Debug)]
pub struct LoraPair {
    /// `A`, shape `[r, in]`.
    pub a: Var,
    /// `B`, shape `[out, r]`.
    pub b: Var,
}

/// A LoRA adapter for a Llama-family model: per layer, per target module, a
/// [`LoraPair`].
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    config: LoraConfig,
    base_model: String,
    layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    /// A fresh adapter: `A` Kaiming-uniform (PEFT's `kaiming_uniform_(a=√5)`,
    /// i.e. `U(-1/√in, 1/√in)`), `B` zero. Deterministic in `seed`.
    pub fn init(
        config: LoraConfig,
        model: &LlamaConfig,
        base_model: impl Into<String>,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut layers = Vec::with_capacity(model.num_layers);
        for _ in 0..model.num_layers {
            let mut slots: [Option<LoraPair>; 7] = Default::default();
            for &t in &config.targets {
                let (fan_in, out) = t.dims(model);
                let bound = 1.0 / (fan_in as f32).sqrt();
                let a: Vec<f32> = (0..config.r * fan_in)
                    .map(|_| rng.gen_range(-bound..bound))
                    .collect();
                let a = Tensor::from_vec(a, (config.r, fan_in), &Device::Cpu)?;
                let b = Tensor::zeros((out, config.r), DType::F32, &Device::Cpu)?;
                slots[t.index()] = Some(LoraPair {
                    a: Var::from_tensor(&a)?,
                    b: Var::from_tensor(&b)?,
                });
            }
            layers.push(slots);
        }
        Ok(Self {
            config,
            base_model: base_model.into(),
            layers,
        })
    }

    /// Builds an adapter from explicit tensors (after validation by the
    /// PEFT loader).
    pub(crate) fn from_parts(
        config: LoraConfig,
        base_model: String,
        layers: Vec<[Option<LoraPair>; 7]>,
    ) -> Self {
        Self {
            config,
            base_model,
            layers,
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The base model name recorded in `adapter_config.json`.
    pub fn base_model(&self) -> &str {
        &self.base_model
    }

    /// `s = alpha / r` (or `alpha / √r`).
    pub fn scaling(&self) -> f64 {
        self.config.scaling()
    }

    /// Number of layers the adapter covers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The pair of a layer and module, if adapted.
    pub fn pair(&self, layer: usize, target: LoraTarget) -> Option<&LoraPair> {
        self.layers.get(layer)?[target.index()].as_ref()
    }

    /// Every trainable tensor, for an optimiser (`A` then `B`, layer order).
    pub fn vars(&self) -> Vec<Var> {
        self.iter_pairs()
            .flat_map(|(_, _, p)| [p.a.clone(), p.b.clone()])
            .collect()
    }

    /// Iterates over `(layer, target, pair)`.
    pub fn iter_pairs(&self) -> impl Iterator<Item = (usize, LoraTarget, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(i, slots)| {
            LoraTarget::ALL
                .into_iter()
                .filter_map(move |t| slots[t.index()].as_ref().map(|p| (i, t, p)))
        })
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.iter_pairs()
            .map(|(_, _, p)| p.a.elem_count() + p.b.elem_count())
            .sum()
    }

    /// Bytes held in memory (f32).
    pub fn size_in_bytes(&self) -> usize {
        self.num_parameters() * 4
    }

    /// PEFT key prefix of a layer's module.
    pub fn peft_prefix(layer: usize, target: LoraTarget) -> String {
        format!(
            "base_model.model.model.layers.{layer}.{}.{}",
            target.parent(),
            target.name()
        )
    }

    /// The tensors under their PEFT names (`….lora_A.weight`, `….lora_B.weight`).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.iter_pairs()
            .flat_map(|(l, t, p)| {
                let prefix = Self::peft_prefix(l, t);
                [
                    (format!("{prefix}.lora_A.weight"), p.a.as_tensor().clone()),
                    (format!("{prefix}.lora_B.weight"), p.b.as_tensor().clone()),
                ]
            })
            .collect()
    }

    /// The dense update `s · B·A` (`[out, in]`) of one layer, for merging.
    pub fn delta(&self, layer: usize, target: LoraTarget) -> Result<Option<Tensor>> {
        match self.pair(layer, target) {
            None => Ok(None),
            Some(p) => Ok(Some(
                (p.b.as_tensor().matmul(p.a.as_tensor())? * self.scaling())?,
            )),
        }
    }

    /// Checks that every pair matches the model's layer count and shapes.
    pub fn check_fits(&self, model: &LlamaConfig) -> Result<()> {
        if self.layers.len() != model.num_layers {
            return Err(ModelError::AdapterMismatch(format!(
                "adapter has {} layers, the model {}",
                self.layers.len(),
                model.num_layers
            )));
        }
        for (l, t, p) in self.iter_pairs() {
            let (fan_in, out) = t.dims(model);
            let r = self.config.r;
            if p.a.dims() != [r, fan_in] || p.b.dims() != [out, r] {
                return Err(ModelError::AdapterMismatch(format!(
                    "layer {l} {t}: A {:?} / B {:?}, the model needs [{r}, {fan_in}] / [{out}, {r}]",
                    p.a.dims(),
                    p.b.dims()
                )));
            }
        }
        Ok(())
    }
}

/// Dropout on the LoRA branch input for the training forward, with its own
/// seeded generator (candle's CPU generator cannot be seeded).
#[derive(Debug)]
pub struct LoraDropout {
    p: f64,
    rng: StdRng,
}

impl LoraDropout {
    /// Dropout with probability `p` (no-op when 0), deterministic in `seed`.
    pub fn new(p: f64, seed: u64) -> Self {
        Self {
            p,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Applies inverted dropout with a fresh mask; differentiable (a product).
    pub(crate) fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if self.rng.gen_bool(keep) { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok(x.mul(&mask)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::TinySpec;

    #[test]
    fn init_is_kaiming_uniform_for_a_and_zero_for_b() {
        let cfg = TinySpec::default().config();
        let lora = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: LoraTarget::ALL.to_vec(),
            use_rslora: false,
        };
        let ad = LoraAdapter::init(lora, &cfg, "tiny", 7).unwrap();
        assert_eq!(ad.iter_pairs().count(), cfg.num_layers * 7);
        for (_, t, p) in ad.iter_pairs() {
            let (fan_in, _) = t.dims(&cfg);
            let a: Vec<f32> = p.a.flatten_all().unwrap().to_vec1().unwrap();
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(a.iter().all(|x| x.abs() <= bound));
            assert!(a.iter().any(|x| x.abs() > bound / 2.0));
            let b: Vec<f32> = p.b.flatten_all().unwrap().to_vec1().unwrap();
            assert!(b.iter().all(|x| *x == 0.0));
        }
        assert_eq!(ad.scaling(), 2.0);
    }

    #[test]
    fn rslora_scales_by_inverse_square_root_of_rank() {
        let c = LoraConfig {
            r: 16,
            alpha: 8.0,
            use_rslora: true,
            ..LoraConfig::default()
        };
        assert_eq!(c.scaling(), 2.0);
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let zero = LoraConfig {
            r: 0,
            ..LoraConfig::default()
        };
        assert!(matches!(zero.validate(), Err(ModelError::LoraConfig(m)) if m.contains("rank")));
        assert!("lm_head".parse::<LoraTarget>().is_err());
        let dup = LoraConfig {
            targets: vec![LoraTarget::QProj, LoraTarget::QProj],
            ..LoraConfig::default()
        };
        assert!(dup.validate().is_err());
    }
}
