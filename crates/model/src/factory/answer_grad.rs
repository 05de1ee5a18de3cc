//! The test gradient of a served answer, in the gradient cache's space: what
//! answer-time attribution (DataInf / TracIn over the cached training rows)
//! scores against.
//!
//! The planted-recall evaluation (`docs/attribution.md` §5) measured which
//! test gradient credits the true source of an answer: the loss restricted to
//! the answer tokens that are **new** with respect to the prompt (an answer
//! token whose id also occurs among the prompt's token ids is not a target:
//! the island's name copied from the question otherwise points every method
//! at the question's subject), and the gradient scaled to **unit length per
//! layer** (each layer votes equally, as `GradientNormalisation::PerLayer`
//! in `trib-attribution` does to the training rows). Both choices lifted every
//! gradient method to recall@1 1.000 on borrowed answers. [`answer_gradient`]
//! computes exactly that; [`AnswerTokens::All`] keeps every answer token
//! (what [`super::test_gradient`] and the cached training rows use), so the
//! two spaces can be checked against each other.

use super::error::{FactoryError, Result};
use super::gradcache::GradientCache;
use super::train::{encode_pair, example_gradient};
use crate::lora::LoraAdapter;
use crate::Model;

/// Which answer tokens the test loss averages over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AnswerTokens {
    /// Every answer token (the training rows' loss mask).
    All,
    /// Only answer tokens whose id does not occur in the prompt's tokens
    /// (the variant measured best, the default).
    #[default]
    NewInAnswer,
}

/// The test gradient of one answer.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerGradient {
    /// Per cache layer, the projected gradient (`stored_dim` values), scaled
    /// to unit length when [`answer_gradient`] was asked to normalise (an
    /// all-zero layer stays zero).
    pub layers: Vec<Vec<f32>>,
    /// Target tokens the loss averaged over.
    pub target_tokens: usize,
    /// The mean loss over those tokens at the adapter.
    pub loss: f64,
}

/// Tokens and loss mask of `(prompt, answer)` formatted as the cache's
/// training rows, with the targets limited as `which` says.
pub fn answer_targets(
    model: &Model,
    cache: &GradientCache,
    prompt: &str,
    answer: &str,
    which: AnswerTokens,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let (tokens, mut targets) = encode_pair(model, &cache.index, prompt, answer)?;
    if which == AnswerTokens::NewInAnswer {
        let mut prompt_ids = model
            .encode(prompt)
            .map_err(|e| FactoryError::Tokenizer(e.to_string()))?;
        prompt_ids.sort_unstable();
        prompt_ids.dedup();
        for (t, tok) in targets.iter_mut().zip(&tokens) {
            if prompt_ids.binary_search(tok).is_ok() {
                *t = false;
            }
        }
    }
    Ok((tokens, targets))
}

/// The answer's test gradient at `adapter`, projected by the cache's own
/// CountSketch (so it lives in the same space as the cached training rows),
/// with the loss over `which` answer tokens, unit length per layer when
/// `unit_per_layer`. `Ok(None)` when no answer token qualifies (an empty
/// answer, or one made only of the prompt's tokens): there is nothing to
/// take a gradient of, and no gradient credit to give.
pub fn answer_gradient(
    model: &Model,
    adapter: &LoraAdapter,
    cache: &GradientCache,
    prompt: &str,
    answer: &str,
    which: AnswerTokens,
    unit_per_layer: bool,
) -> Result<Option<AnswerGradient>> {
    let (tokens, targets) = answer_targets(model, cache, prompt, answer, which)?;
    let target_tokens = targets.iter().filter(|&&t| t).count();
    if target_tokens == 0 {
        return Ok(None);
    }
    let (loss, raw) = example_gradient(model, adapter, &tokens, &targets)?;
    if raw.len() != cache.index.layers.len() {
        return Err(FactoryError::Model(format!(
            "the adapter has {} layers, the gradient cache {}",
            raw.len(),
            cache.index.layers.len()
        )));
    }
    let projector = cache.projector();
    let mut layers = Vec::with_capacity(raw.len());
    for (l, (g, e)) in raw.iter().zip(&cache.index.layers).enumerate() {
        if g.len() != e.dim {
            return Err(FactoryError::Model(format!(
                "layer {}: adapter gradient has {} coordinates, the cache was built from {}",
                e.layer,
                g.len(),
                e.dim
            )));
        }
        let mut p = projector.project(l, g);
        if unit_per_layer {
            unit(&mut p);
        }
        layers.push(p);
    }
    tracing::debug!(target: "trib::factory", target_tokens, tokens = tokens.len(), loss, "answer gradient");
    Ok(Some(AnswerGradient {
        layers,
        target_tokens,
        loss,
    }))
}

/// Scales `x` to unit length in place (f64 accumulation, as
/// `trib_attribution::normalise_gradients` does); zero stays zero.
fn unit(x: &mut [f32]) {
    let n2: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    if n2 > 0.0 {
        let s = 1.0 / n2.sqrt();
        x.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatTemplate;
    use crate::factory::gradcache::{GradientCacheIndex, LayerEntry, GRADIENT_CACHE_FORMAT};
    use crate::factory::DataFormat;
    use crate::lora::{LoraConfig, LoraTarget};
    use crate::{write_tiny_hf_dir, TinySpec, WeightFormat};
    use candle_core::{Device, Tensor};

    /// The tiny model, an adapter with non-zero `B` (a fresh PEFT adapter
    /// has `B = 0`, so `∂A` would vanish), and an empty cache index over it
    /// with a projection small enough that every layer is sketched.
    fn setup(dir: &std::path::Path) -> (Model, LoraAdapter, GradientCache) {
        write_tiny_hf_dir(dir, &TinySpec::default(), 3).unwrap();
        let model = Model::load(dir, WeightFormat::F32).unwrap();
        let cfg = LoraConfig {
            r: 2,
            alpha: 4.0,
            dropout: 0.0,
            targets: vec![LoraTarget::QProj, LoraTarget::VProj, LoraTarget::DownProj],
            use_rslora: false,
        };
        let adapter = LoraAdapter::init(cfg, model.config(), "tiny", 9).unwrap();
        for (i, (_, _, p)) in adapter.iter_pairs().enumerate() {
            let n = p.b.elem_count();
            let v: Vec<f32> = (0..n)
                .map(|j| ((i * 31 + j) as f32 * 0.713).sin() * 0.05)
                .collect();
            p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let mut layers = Vec::new();
        for l in 0..adapter.num_layers() {
            let dim: usize = adapter
                .iter_pairs()
                .filter(|(pl, _, _)| *pl == l)
                .map(|(_, _, p)| p.a.elem_count() + p.b.elem_count())
                .sum();
            layers.push(LayerEntry {
                layer: l,
                modules: vec!["q".into(), "v".into(), "down".into()],
                dim,
                stored_dim: 64,
                projected: true,
            });
        }
        let index = GradientCacheIndex {
            format: GRADIENT_CACHE_FORMAT,
            projection: "count_sketch".into(),
            projection_dim: 64,
            seed: 4,
            adapter_hash: trib_types::Hash::of(b"tiny adapter"),
            data_format: DataFormat::Text,
            chat_template: ChatTemplate::Plain,
            system_prompt: None,
            layers,
            examples: vec![],
        };
        (
            model,
            adapter,
            GradientCache {
                index,
                layers: vec![],
            },
        )
    }

    fn loss_at(model: &Model, adapter: &LoraAdapter, tokens: &[u32], targets: &[bool]) -> f64 {
        example_gradient(model, adapter, tokens, targets).unwrap().0
    }

    /// Moves every LoRA tensor by `eps · dir` (dir flattened as the
    /// gradient is: per layer, per module, A then B).
    fn shift(adapter: &LoraAdapter, dir: &[Vec<f32>], eps: f32) {
        let mut at = vec![0usize; dir.len()];
        for (l, _, p) in adapter.iter_pairs() {
            for v in [&p.a, &p.b] {
                let n = v.elem_count();
                let d = &dir[l][at[l]..at[l] + n];
                at[l] += n;
                let cur: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let new: Vec<f32> = cur.iter().zip(d).map(|(c, d)| c + eps * d).collect();
                v.set(&Tensor::from_vec(new, v.dims(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
    }

    #[test]
    fn the_new_token_gradient_matches_a_central_finite_difference_of_its_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (model, adapter, cache) = setup(dir.path());
        let prompt = "We the People of the United States";
        let answer = "the United States ordain this Constitution";
        let (tokens, targets) =
            answer_targets(&model, &cache, prompt, answer, AnswerTokens::NewInAnswer).unwrap();
        let (_, all) = answer_targets(&model, &cache, prompt, answer, AnswerTokens::All).unwrap();
        let new = targets.iter().filter(|&&t| t).count();
        assert!(new > 0 && new < all.iter().filter(|&&t| t).count());
        // Every dropped target is a token of the prompt; every kept one is not.
        let p = model.encode(prompt).unwrap();
        for ((tok, &t), &a) in tokens.iter().zip(&targets).zip(&all) {
            if a {
                assert_eq!(t, !p.contains(tok), "token {tok}");
            } else {
                assert!(!t);
            }
        }
        // d/dε L(θ + ε·ĝ) at 0 = ‖g‖: central difference along the unit gradient.
        let (_, g) = example_gradient(&model, &adapter, &tokens, &targets).unwrap();
        let norm = g
            .iter()
            .flatten()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        assert!(norm > 1e-3, "gradient norm {norm}");
        let unit_dir: Vec<Vec<f32>> = g
            .iter()
            .map(|l| l.iter().map(|&v| (v as f64 / norm) as f32).collect())
            .collect();
        let eps = 1e-2f32;
        shift(&adapter, &unit_dir, eps);
        let up = loss_at(&model, &adapter, &tokens, &targets);
        shift(&adapter, &unit_dir, -2.0 * eps);
        let down = loss_at(&model, &adapter, &tokens, &targets);
        shift(&adapter, &unit_dir, eps);
        let fd = (up - down) / (2.0 * eps as f64);
        assert!(
            (fd - norm).abs() <= 2e-2 * norm,
            "finite difference {fd} vs gradient norm {norm}"
        );
    }

    #[test]
    fn the_answer_gradient_is_the_projected_gradient_scaled_to_unit_length_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        let (model, adapter, cache) = setup(dir.path());
        let (prompt, answer) = (
            "Which island exports clay?",
            "Gordunia exports huxbre clay.",
        );
        let g = answer_gradient(
            &model,
            &adapter,
            &cache,
            prompt,
            answer,
            AnswerTokens::NewInAnswer,
            true,
        )
        .unwrap()
        .unwrap();
        let raw = answer_gradient(
            &model,
            &adapter,
            &cache,
            prompt,
            answer,
            AnswerTokens::NewInAnswer,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(g.layers.len(), cache.index.layers.len());
        assert_eq!(g.target_tokens, raw.target_tokens);
        for (u, r) in g.layers.iter().zip(&raw.layers) {
            assert_eq!(u.len(), 64);
            let n: f64 = u.iter().map(|&v| v as f64 * v as f64).sum();
            assert!((n - 1.0).abs() < 1e-5, "unit length: {n}");
            let rn: f64 = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            for (a, b) in u.iter().zip(r) {
                assert!((*a as f64 - *b as f64 / rn).abs() < 1e-6);
            }
        }
        // An answer made only of the prompt's tokens has no new token.
        assert!(answer_gradient(
            &model,
            &adapter,
            &cache,
            prompt,
            prompt,
            AnswerTokens::NewInAnswer,
            true
        )
        .unwrap()
        .is_none());
    }
}
