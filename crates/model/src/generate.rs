//! Text generation: sampling (temperature, top-k, top-p, seed) and the
//! decode loop with a KV cache, streaming text through a callback.

use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::lora::LoraAdapter;
use crate::model::Model;
use crate::tokenizer;

/// Sampling parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set with cumulative probability ≥ `top_p` (1 = off).
    pub top_p: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 50,
            top_p: 0.9,
            seed: 42,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(ModelError::Generation(format!(
                "temperature {} must be ≥ 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ModelError::Generation(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Picks tokens from logits; one per sequence (it owns the RNG state).
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from the config.
    pub fn new(cfg: SamplingConfig) -> Result<Self> {
        cfg.validate()?;
        let rng = StdRng::seed_from_u64(cfg.seed);
        Ok(Self { cfg, rng })
    }

    /// Samples from a logits vector.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(ModelError::Generation("empty logits".into()));
        }
        if self.cfg.temperature == 0.0 {
            return Ok(argmax(logits));
        }
        let mut idx: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        if idx.is_empty() {
            return Err(ModelError::Generation("all logits are non-finite".into()));
        }
        idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if self.cfg.top_k > 0 {
            idx.truncate(self.cfg.top_k);
        }
        let t = self.cfg.temperature as f32;
        let max = logits[idx[0]];
        let mut probs: Vec<f32> = idx.iter().map(|&i| ((logits[i] - max) / t).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.cfg.top_p as f32 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut u = self.rng.gen::<f32>() * total;
        for (k, p) in probs.iter().enumerate() {
            if u < *p {
                return Ok(idx[k] as u32);
            }
            u -= p;
        }
        Ok(*idx.last().expect("non-empty") as u32)
    }

    /// Samples from a `[vocab]` logits tensor.
    pub fn sample_tensor(&mut self, logits: &Tensor) -> Result<u32> {
        let v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        self.sample(&v)
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Generation parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Sampling.
    pub sampling: SamplingConfig,
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Extra stop tokens beside the model's EOS / end-of-turn tokens.
    pub extra_stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            sampling: SamplingConfig::default(),
            max_new_tokens: 256,
            extra_stop_tokens: Vec::new(),
        }
    }
}

/// Why [`generate`] ended.
///
/// Not the serving engine's `trib_serve::FinishReason`, on purpose: a
/// [`generate`] call returns a [`Generation`] when its callback stops it
/// ([`FinishReason::Cancelled`]), while a served request that is cancelled
/// (its client went away) has nobody to receive a completion, so the
/// engine's enum holds only the values OpenAI's `finish_reason` defines
/// (`stop`, `length`) and is written to the wire as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An EOS / end-of-turn token was produced.
    Stop,
    /// `max_new_tokens` or the context window was reached.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

/// One streamed piece.
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    /// The new token id.
    pub token: u32,
    /// Text that became printable with this token (may be empty while a
    /// multi-byte character is incomplete).
    pub text: &'a str,
}

/// What generation returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (special tokens removed).
    pub text: String,
    /// Generated token ids (the stop token excluded).
    pub tokens: Vec<u32>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt processing time, seconds.
    pub prefill_secs: f64,
    /// Decode time, seconds.
    pub decode_secs: f64,
}

impl Generation {
    /// Decode speed in tokens per second.
    pub fn decode_tokens_per_sec(&self) -> f64 {
        if self.decode_secs > 0.0 {
            self.tokens.len() as f64 / self.decode_secs
        } else {
            0.0
        }
    }
}

/// Generates a continuation of `prompt` (token ids), calling `on_token` for
/// every new token; return `ControlFlow::Break(())` to stop early.
pub fn generate(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    prompt: &[u32],
    cfg: &GenerationConfig,
    mut on_token: impl FnMut(&TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    let _span =
        tracing::debug_span!(target: "trib::model", "generate", prompt = prompt.len()).entered();
    if prompt.is_empty() {
        return Err(ModelError::Generation("empty prompt".into()));
    }
    let mut sampler = Sampler::new(cfg.sampling.clone())?;
    let mut stops = model.stop_tokens();
    stops.extend(&cfg.extra_stop_tokens);
    let mut cache = model.new_cache();
    let start = Instant::now();
    let logits = model.prefill(prompt, &mut cache, adapter)?;
    let prefill_secs = start.elapsed().as_secs_f64();
    let mut next = sampler.sample_tensor(&logits)?;
    let mut tokens = Vec::new();
    let mut printed = 0usize;
    let mut finish = FinishReason::Length;
    let start = Instant::now();
    while tokens.len() < cfg.max_new_tokens {
        if stops.contains(&next) {
            finish = FinishReason::Stop;
            break;
        }
        tokens.push(next);
        let text = tokenizer::decode(model.tokenizer(), &tokens, true)?;
        let fresh = if text.ends_with('\u{FFFD}') || text.len() < printed {
            ""
        } else {
            &text[printed..]
        };
        let event = TokenEvent {
            token: next,
            text: fresh,
        };
        let flow = on_token(&event);
        printed += fresh.len();
        if flow.is_break() {
            finish = FinishReason::Cancelled;
            break;
        }
        if tokens.len() >= cfg.max_new_tokens || cache.len() + 1 > cache.max_len() {
            break;
        }
        let logits = model.prefill(&[next], &mut cache, adapter)?;
        next = sampler.sample_tensor(&logits)?;
    }
    let decode_secs = start.elapsed().as_secs_f64();
    let text = tokenizer::decode(model.tokenizer(), &tokens, true)?;
    tracing::debug!(target: "trib::model", new_tokens = tokens.len(), ?finish, decode_secs, "generation done");
    Ok(Generation {
        text,
        tokens,
        prompt_tokens: prompt.len(),
        finish_reason: finish,
        prefill_secs,
        decode_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_top_k_one_is_greedy_whatever_the_seed() {
        let logits = [0.1f32, 2.0, -1.0, 1.9];
        let mut g = Sampler::new(SamplingConfig::greedy()).unwrap();
        assert_eq!(g.sample(&logits).unwrap(), 1);
        for seed in 0..20 {
            let mut s = Sampler::new(SamplingConfig {
                temperature: 1.0,
                top_k: 1,
                top_p: 1.0,
                seed,
            })
            .unwrap();
            assert_eq!(s.sample(&logits).unwrap(), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ≈ [0.97, 0.018, 0.018, …]: top_p 0.5 leaves only token 0.
        let logits = [8.0f32, 4.0, 4.0, 0.0];
        for seed in 0..50 {
            let mut s = Sampler::new(SamplingConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.5,
                seed,
            })
            .unwrap();
            assert_eq!(s.sample(&logits).unwrap(), 0);
        }
    }

    #[test]
    fn same_seed_same_samples_and_bad_parameters_are_refused() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let cfg = SamplingConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            seed: 9,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..20).map(|_| s.sample(&logits).unwrap()).collect()
        };
        let mut s = Sampler::new(cfg).unwrap();
        let b: Vec<u32> = (0..20).map(|_| s.sample(&logits).unwrap()).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]), "temperature 1.5 should vary");
        let bad = SamplingConfig {
            top_p: 0.0,
            ..SamplingConfig::default()
        };
        assert!(Sampler::new(bad).is_err());
    }
}
