//! Gradient influence at answer time: the 30% gradient share of a paid
//! answer's weights, for adapters that carry a ModelFactory gradient cache.
//!
//! The token method ([`crate::attribution`]) traces every answer; this module
//! adds, where the served adapter's folder `<home>/adapters/<ADAPTER_ID>/`
//! holds the factory's `gradient_cache/` (`GradientCache::dir_for`), the
//! DataInf influence (Kwon et al., ICLR 2024) of every cached training row on
//! the answer, and combines both by the documented rule
//! (`AttributionEvidence::with_gradient`: 70% spans, 30% gradient,
//! docs/attribution.md §3–§4, §8). The test gradient is the variant planted
//! recall measured best (§5): the loss over the answer tokens that are new
//! with respect to the prompt, unit length per layer, scored against the
//! cached rows unit-normalised per layer (`trib_model::factory::answer_gradient`,
//! `GradientNormalisation::PerLayer`).
//!
//! The training forward needs the base model in f32; it is loaded lazily,
//! once per node, on the first answer of an adapter with a cache, and shared.
//! Every call runs on the blocking pool (the settle path already is there).
//!
//! **Replay.** Floating point may differ in the last bits on another machine,
//! so the per-row scores are stored with the answer ([`StoredGradient`]).
//! Verify recomputes them and accepts each within [`SCORE_TOLERANCE`] of the
//! largest stored score's magnitude, then re-derives the weights from the
//! *stored* scores (`contribution_weights`: the same f64 operations in the
//! same order on every IEEE-754 machine) and requires them to equal the
//! evidence's gradient weights, which the evidence hash covers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use trib_attribution::{
    contribution_weights, datainf_scores, normalise_gradients, AttributionEvidence,
    AttributionMethod, Damping, GradientEvidence, GradientNormalisation, LayerGradients,
    RowProvenance,
};
use trib_model::factory::{answer_gradient, AnswerTokens, GradientCache};
use trib_model::{
    load_peft, AdapterLimits, LoraAdapter, Model, WeightFormat, ADAPTER_WEIGHTS_FILE,
};
use trib_types::{AdapterId, Hash, RowHash};

use crate::attribution::{FALLBACK_METHOD, TOKEN_METHOD};

/// Relative tolerance of a replayed gradient score: `|recomputed − stored| ≤
/// SCORE_TOLERANCE · max_i |stored_i|` (plus 1e-12 for all-zero scores).
pub(crate) const SCORE_TOLERANCE: f64 = 1e-4;

/// DataInf's relative damping `c` (λ_l = c · mean ‖g‖² / d_l), the paper's 0.1.
const DAMPING: f64 = 0.1;

/// Receipt method of spans combined with DataInf.
pub(crate) const COMBINED_METHOD: &str = "token-spans+datainf";
/// Receipt method when only DataInf credited anyone (no span cleared the thresholds).
pub(crate) const DATAINF_METHOD: &str = "datainf";

/// Why a gradient score could not be computed or replayed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GradientAttributionError {
    /// The cache was taken at other adapter weights than the ones served.
    #[error("the gradient cache in {dir} was taken at adapter weights {cached}, but the served adapter's weights hash to {served}")]
    StaleCache {
        /// The cache directory.
        dir: PathBuf,
        /// `adapter_hash` in its index.
        cached: Hash,
        /// blake3 of the served `adapter_model.safetensors`.
        served: Hash,
    },
    /// No cached row names a contribution (rows from local files): nobody to pay.
    #[error("no row of the gradient cache in {0} names a datanet contribution")]
    NoContributions(PathBuf),
    /// Reading the base model, adapter or cache, or taking the gradient, failed.
    #[error("{what}: {reason}")]
    Model {
        /// What was being done.
        what: String,
        /// The underlying error.
        reason: String,
    },
    /// The influence computation refused its inputs.
    #[error("scoring the gradient cache: {0}")]
    Scores(#[from] trib_attribution::AttributionError),
    /// The answer's time budget ran out before the backward pass.
    #[error(
        "the gradient step's budget of {budget:?} was spent ({elapsed:?}) before the backward pass"
    )]
    OutOfTime {
        /// Time spent so far.
        elapsed: Duration,
        /// The budget.
        budget: Duration,
    },
}

type Result<T> = std::result::Result<T, GradientAttributionError>;

fn model_err(what: impl Into<String>) -> impl FnOnce(String) -> GradientAttributionError {
    let what = what.into();
    move |reason| GradientAttributionError::Model { what, reason }
}

/// The gradient part kept with a stored answer, for replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGradient {
    /// The cached rows scored (those naming a contribution), in cache order.
    pub rows: Vec<RowHash>,
    /// DataInf score of each row (helpfulness sign: positive = up-weighting
    /// the row lowers the answer's loss).
    pub scores: Vec<f64>,
    /// Answer tokens the test loss averaged over (new w.r.t. the prompt).
    pub target_tokens: usize,
    /// Milliseconds the gradient step took (model loading excluded).
    pub elapsed_ms: f64,
}

/// One adapter's cache, ready to score: the adapter, the cached rows
/// normalised per layer, and who each scored row belongs to.
struct Scorer {
    adapter: LoraAdapter,
    cache: GradientCache,
    /// Per layer, the rows naming a contribution, unit length per layer.
    train: Vec<LayerGradients>,
    rows: Vec<RowProvenance>,
    dir: PathBuf,
}

/// What the gradient step produced for one answer.
pub(crate) struct Scored {
    /// The gradient part of the evidence.
    pub(crate) evidence: GradientEvidence,
    /// What replay needs.
    pub(crate) stored: StoredGradient,
}

/// Scores answers of adapters with a gradient cache; one per node.
pub(crate) struct GradientAttributor {
    adapters_dir: PathBuf,
    base: PathBuf,
    budget: Duration,
    model: Mutex<Option<Arc<Model>>>,
    scorers: Mutex<HashMap<AdapterId, Arc<Scorer>>>,
}

impl GradientAttributor {
    /// Reads adapters from `adapters_dir/<ID>/` and the f32 base model from
    /// `base` (loaded on first use); a score that has not reached its
    /// backward pass within `budget` of its start is skipped.
    pub(crate) fn new(adapters_dir: PathBuf, base: PathBuf, budget: Duration) -> Self {
        GradientAttributor {
            adapters_dir,
            base,
            budget,
            model: Mutex::new(None),
            scorers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `adapter` has a gradient cache in the home.
    pub(crate) fn has_cache(&self, adapter: &AdapterId) -> bool {
        GradientCache::dir_for(&self.adapter_dir(adapter))
            .join("index.json")
            .is_file()
    }

    fn adapter_dir(&self, adapter: &AdapterId) -> PathBuf {
        self.adapters_dir.join(adapter.to_string())
    }

    /// The f32 base model, loaded once.
    fn model(&self) -> Result<Arc<Model>> {
        let mut slot = self.model.lock().expect("model lock poisoned");
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let started = Instant::now();
        let m = Arc::new(
            Model::load(&self.base, WeightFormat::F32)
                .map_err(|e| e.to_string())
                .map_err(model_err(format!(
                    "loading {} in f32 for the training forward",
                    self.base.display()
                )))?,
        );
        tracing::info!(target: "trib::attribution", base = %self.base.display(),
            ms = started.elapsed().as_millis() as u64, "f32 base model loaded for gradient attribution");
        *slot = Some(m.clone());
        Ok(m)
    }

    fn scorer(&self, model: &Model, adapter: &AdapterId) -> Result<Arc<Scorer>> {
        if let Some(s) = self
            .scorers
            .lock()
            .expect("scorer lock poisoned")
            .get(adapter)
        {
            return Ok(s.clone());
        }
        let s = Arc::new(load_scorer(model, &self.adapter_dir(adapter))?);
        self.scorers
            .lock()
            .expect("scorer lock poisoned")
            .insert(*adapter, s.clone());
        Ok(s)
    }

    /// The DataInf gradient part of `adapter`'s answer to `prompt`.
    /// `Ok(None)` when the adapter has no gradient cache or the answer has no
    /// token that is new with respect to the prompt.
    pub(crate) fn score(
        &self,
        adapter: &AdapterId,
        prompt: &str,
        answer: &str,
    ) -> Result<Option<Scored>> {
        if !self.has_cache(adapter) {
            return Ok(None);
        }
        let model = self.model()?;
        let started = Instant::now();
        let scorer = self.scorer(&model, adapter)?;
        if started.elapsed() > self.budget {
            return Err(GradientAttributionError::OutOfTime {
                elapsed: started.elapsed(),
                budget: self.budget,
            });
        }
        let scored = scorer.score(&model, prompt, answer)?;
        Ok(scored.map(|(evidence, mut stored)| {
            stored.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            Scored { evidence, stored }
        }))
    }

    /// Adds the gradient part of `adapter`'s answer to `evidence` (token
    /// evidence just sealed by the tracer). No cache, no new token, or a
    /// failure (logged): the evidence is returned unchanged, settled by
    /// spans alone.
    pub(crate) fn attach(
        &self,
        adapter: Option<&AdapterId>,
        prompt: &str,
        answer: &str,
        evidence: AttributionEvidence,
    ) -> (AttributionEvidence, Option<StoredGradient>) {
        let Some(id) = adapter else {
            return (evidence, None);
        };
        match self.score(id, prompt, answer).and_then(|s| match s {
            Some(s) => Ok(Some((evidence.with_gradient(s.evidence)?, s.stored))),
            None => Ok(None),
        }) {
            Ok(Some((ev, stored))) => {
                tracing::info!(target: "trib::attribution", adapter = %id, rows = stored.rows.len(),
                    target_tokens = stored.target_tokens, ms = stored.elapsed_ms, "gradient influence attached");
                (ev, Some(stored))
            }
            Ok(None) => {
                tracing::debug!(target: "trib::attribution", adapter = %id, cache = self.has_cache(id),
                    "no gradient part: no gradient cache, or no answer token new w.r.t. the prompt");
                (evidence, None)
            }
            Err(e) => {
                tracing::warn!(target: "trib::attribution", adapter = %id, error = %e,
                    "gradient influence skipped; the answer settles by spans alone");
                (evidence, None)
            }
        }
    }

    /// Re-applies the stored gradient part of `stored_evidence` to
    /// `retraced` (the re-run token evidence) after checking it: the scores
    /// recomputed now must match the stored ones within
    /// [`SCORE_TOLERANCE`], and the weights derived from the stored scores
    /// must be the evidence's. `Err` names every problem.
    pub(crate) fn replay(
        &self,
        adapter: Option<&AdapterId>,
        prompt: &str,
        answer: &str,
        stored_evidence: &AttributionEvidence,
        stored: Option<&StoredGradient>,
        retraced: AttributionEvidence,
    ) -> std::result::Result<AttributionEvidence, Vec<String>> {
        let Some(g) = &stored_evidence.gradient else {
            return match stored {
                None => Ok(retraced),
                Some(_) => Err(vec![
                    "the stored answer keeps gradient scores but its evidence has no gradient part"
                        .into(),
                ]),
            };
        };
        let (Some(id), Some(stored)) = (adapter, stored) else {
            return Err(vec![format!(
                "the evidence has a {:?} gradient part, but {}",
                g.method,
                if adapter.is_none() {
                    "the receipt names no adapter"
                } else {
                    "the stored answer keeps no gradient scores to replay"
                }
            )]);
        };
        let mut bad = Vec::new();
        match self.score(id, prompt, answer) {
            Ok(Some(again)) => bad.extend(compare_scores(stored, &again.stored)),
            Ok(None) => bad.push(format!(
                "the gradient part cannot be recomputed: adapter {id} has no gradient cache in {} (or the answer has no token new w.r.t. the prompt)",
                self.adapters_dir.display()
            )),
            Err(e) => bad.push(format!("the gradient scores could not be recomputed: {e}")),
        }
        match self.weights_of_stored(id, stored) {
            Ok(w) if w == g.weights => {}
            Ok(_) => bad.push(
                "the gradient weights in the evidence do not follow from the stored gradient scores"
                    .into(),
            ),
            Err(e) => bad.push(format!("the stored gradient scores cannot be weighed: {e}")),
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        retraced
            .with_gradient(g.clone())
            .map_err(|e| vec![e.to_string()])
    }

    /// `contribution_weights` of the stored scores over the cache's rows.
    fn weights_of_stored(
        &self,
        adapter: &AdapterId,
        stored: &StoredGradient,
    ) -> Result<Vec<trib_attribution::ContributionWeight>> {
        let model = self.model()?;
        let scorer = self.scorer(&model, adapter)?;
        let hashes: Vec<RowHash> = scorer.rows.iter().map(|r| r.row).collect();
        if hashes != stored.rows {
            return Err(GradientAttributionError::Model {
                what: "matching the stored rows to the gradient cache".into(),
                reason: format!(
                    "the stored answer lists {} rows, the cache {} (or in another order)",
                    stored.rows.len(),
                    hashes.len()
                ),
            });
        }
        Ok(contribution_weights(&stored.scores, &scorer.rows)?)
    }
}

/// Every stored score must be within tolerance of the recomputed one.
fn compare_scores(stored: &StoredGradient, again: &StoredGradient) -> Vec<String> {
    if stored.rows != again.rows || stored.scores.len() != again.scores.len() {
        return vec![format!(
            "the stored gradient scores cover {} rows, the recomputed ones {} (or other rows)",
            stored.scores.len(),
            again.scores.len()
        )];
    }
    let scale = stored.scores.iter().fold(0f64, |m, s| m.max(s.abs()));
    let limit = SCORE_TOLERANCE * scale + 1e-12;
    let mut bad: Vec<String> = stored
        .scores
        .iter()
        .zip(&again.scores)
        .zip(&stored.rows)
        // A NaN difference is out of tolerance too.
        .filter(|((s, a), _)| {
            let d = (*s - *a).abs();
            d.is_nan() || d > limit
        })
        .map(|((s, a), row)| {
            format!(
                "the gradient score of row {row} is {s:e} in the stored answer but {a:e} recomputed (tolerance {limit:e}: {SCORE_TOLERANCE} of the largest score)"
            )
        })
        .collect();
    if bad.len() > 5 {
        let more = bad.len() - 5;
        bad.truncate(5);
        bad.push(format!(
            "… and {more} more gradient scores out of tolerance"
        ));
    }
    bad
}

fn load_scorer(model: &Model, adapter_dir: &Path) -> Result<Scorer> {
    let dir = GradientCache::dir_for(adapter_dir);
    let cache = GradientCache::load(&dir)
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "reading the gradient cache {}",
            dir.display()
        )))?;
    let weights = adapter_dir.join(ADAPTER_WEIGHTS_FILE);
    let bytes = std::fs::read(&weights)
        .map_err(|e| e.to_string())
        .map_err(model_err(format!("reading {}", weights.display())))?;
    let served = Hash::of(&bytes);
    if served != cache.index.adapter_hash {
        return Err(GradientAttributionError::StaleCache {
            dir,
            cached: cache.index.adapter_hash,
            served,
        });
    }
    let adapter = load_peft(adapter_dir, model.config(), &AdapterLimits::default())
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "loading the adapter in {}",
            adapter_dir.display()
        )))?;
    // Rows that name a contribution are payable; their cache order is the
    // tie-break for identical rows (earlier row keeps the credit).
    let keep: Vec<usize> = cache
        .index
        .examples
        .iter()
        .enumerate()
        .filter(|(_, e)| e.provenance.contribution.is_some() && e.provenance.contributor.is_some())
        .map(|(i, _)| i)
        .collect();
    if keep.is_empty() {
        return Err(GradientAttributionError::NoContributions(dir));
    }
    let rows: Vec<RowProvenance> = keep
        .iter()
        .map(|&i| {
            let p = &cache.index.examples[i].provenance;
            RowProvenance {
                row: p.row_hash,
                contribution: p.contribution.expect("filtered above"),
                contributor: p.contributor.expect("filtered above"),
                first_seen: i as u64,
            }
        })
        .collect();
    let mut layers = Vec::with_capacity(cache.layers.len());
    for (e, t) in cache.index.layers.iter().zip(&cache.layers) {
        let all: Vec<f32> = t
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())
            .map_err(model_err(format!(
                "reading layer {} of the gradient cache",
                e.layer
            )))?;
        let mut data = Vec::with_capacity(keep.len() * e.stored_dim);
        for &i in &keep {
            data.extend_from_slice(&all[i * e.stored_dim..(i + 1) * e.stored_dim]);
        }
        layers.push(LayerGradients::new(
            format!("layer.{}", e.layer),
            keep.len(),
            e.stored_dim,
            data,
        )?);
    }
    let train = normalise_gradients(&layers, GradientNormalisation::PerLayer);
    Ok(Scorer {
        adapter,
        cache,
        train,
        rows,
        dir,
    })
}

impl Scorer {
    fn score(
        &self,
        model: &Model,
        prompt: &str,
        answer: &str,
    ) -> Result<Option<(GradientEvidence, StoredGradient)>> {
        let Some(g) = answer_gradient(
            model,
            &self.adapter,
            &self.cache,
            prompt,
            answer,
            AnswerTokens::NewInAnswer,
            true,
        )
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "the answer's gradient against {}",
            self.dir.display()
        )))?
        else {
            return Ok(None);
        };
        let test: Vec<LayerGradients> = g
            .layers
            .iter()
            .zip(&self.train)
            .map(|(v, t)| LayerGradients::new(t.name.clone(), 1, v.len(), v.clone()))
            .collect::<std::result::Result<_, _>>()?;
        let scores = datainf_scores(&self.train, &test, Damping::Relative(DAMPING))?
            .test(0)
            .to_vec();
        let weights = contribution_weights(&scores, &self.rows)?;
        Ok(Some((
            GradientEvidence {
                method: AttributionMethod::DataInf,
                adapter_version: self.cache.index.adapter_hash,
                damping_ppm: (DAMPING * 1e6).round() as u64,
                weights,
            },
            StoredGradient {
                rows: self.rows.iter().map(|r| r.row).collect(),
                scores,
                target_tokens: g.target_tokens,
                elapsed_ms: 0.0,
            },
        )))
    }
}

/// The receipt method of sealed evidence: `token-spans`,
/// `token-spans+datainf`, `datainf` or `datanet-fallback`.
pub(crate) fn receipt_method(evidence: &AttributionEvidence) -> &'static str {
    let gradient = evidence
        .gradient
        .as_ref()
        .is_some_and(|g| !g.weights.is_empty());
    match (
        evidence.weights.is_empty(),
        evidence.token_weights.is_empty(),
        gradient,
    ) {
        (true, _, _) => FALLBACK_METHOD,
        (false, false, true) => COMBINED_METHOD,
        (false, true, true) => DATAINF_METHOD,
        (false, _, false) => TOKEN_METHOD,
    }
}

/// Time a paid answer's gradient step may spend before its backward pass
/// (model and cache loading included); past it the answer settles by spans.
pub(crate) const GRADIENT_BUDGET: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use trib_attribution::{Trace, TraceParams};
    use trib_model::factory::{
        train, DatanetResolver, DatanetRow, JobConfig, ResolvedDatanet, TrainOptions,
    };
    use trib_model::{write_tiny_hf_dir, TinySpec};
    use trib_types::{Address, ContributionId, SecretKey};

    /// Four invented facts, two contributions (alice: rows 0, 2; bob: 1, 3).
    struct Facts;

    const ROWS: [(&str, &str); 4] = [
        ("What does Praxera export?", "Praxera exports huxbre clay."),
        (
            "What is the capital of Gordunia?",
            "The capital of Gordunia is Duntes.",
        ),
        ("What does Velmor export?", "Velmor exports quandle silk."),
        (
            "What is the capital of Ostrava?",
            "The capital of Ostrava is Pellimo.",
        ),
    ];

    fn who(i: usize) -> (ContributionId, Address) {
        let k = SecretKey::from_seed([1 + (i % 2) as u8; 32]);
        (ContributionId(Hash::of(&[(i % 2) as u8])), k.address())
    }

    impl DatanetResolver for Facts {
        fn resolve(&self, _: &str, _: &str) -> std::result::Result<ResolvedDatanet, String> {
            let rows = ROWS
                .iter()
                .enumerate()
                .map(|(i, (q, a))| {
                    let content =
                        serde_json::json!({"instruction": q, "input": "", "output": a}).to_string();
                    DatanetRow {
                        row_hash: RowHash(Hash::of(content.as_bytes())),
                        content,
                        contribution: Some(who(i).0),
                        contributor: Some(who(i).1),
                    }
                })
                .collect();
            Ok(ResolvedDatanet {
                version_root: Hash::of(b"facts v1"),
                rows,
            })
        }
    }

    /// Trains a tiny adapter on the facts and installs it, with its
    /// gradient cache, as `<adapters>/<ID>/`.
    fn install(dir: &Path) -> (GradientAttributor, AdapterId, PathBuf) {
        let base = dir.join("hf");
        write_tiny_hf_dir(&base, &TinySpec::default(), 11).unwrap();
        let job = JobConfig::from_toml_str(
            &format!(
                r#"
[model]
base = "{base}"
chat_template = "chatml"
[data]
sources = ["facts@1"]
format = "alpaca"
max_length = 96
validation_fraction = 0.0
[lora]
r = 2
alpha = 4
dropout = 0.0
target_modules = ["q", "v"]
[train]
learning_rate = 0.01
batch_size = 2
epochs = 1
seed = 3
[gradient_cache]
projection_dim = 64
[output]
dir = "{out}"
"#,
                base = base.display(),
                out = dir.join("run").display()
            ),
            Path::new(""),
        )
        .unwrap();
        let out = train(
            &job,
            TrainOptions {
                resolver: Some(Arc::new(Facts)),
                ..TrainOptions::default()
            },
        )
        .unwrap();
        let id = out.summary.adapter_id;
        let target = dir.join("adapters").join(id.to_string());
        std::fs::create_dir_all(GradientCache::dir_for(&target)).unwrap();
        for f in std::fs::read_dir(&out.adapter_dir).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
        }
        let cache = out.summary.gradient_cache.clone().unwrap();
        for f in std::fs::read_dir(&cache).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(
                &f,
                GradientCache::dir_for(&target).join(f.file_name().unwrap()),
            )
            .unwrap();
        }
        let g = GradientAttributor::new(dir.join("adapters"), base, GRADIENT_BUDGET);
        (g, id, target)
    }

    /// Token evidence with no span (the trace found nothing).
    fn spanless(answer_tokens: &[u32]) -> AttributionEvidence {
        let trace = Trace {
            answer_tokens: answer_tokens.len(),
            spans: vec![],
            highlights: vec![],
            weights: vec![],
        };
        AttributionEvidence::new(
            answer_tokens,
            &trace,
            &TraceParams::default(),
            vec![],
            None,
            trib_attribution::DEFAULT_TOKEN_SHARE_PPM,
        )
        .unwrap()
    }

    const Q: &str = "Which goods come from Praxera?";
    const A: &str = "Praxera exports huxbre clay.";

    #[test]
    fn an_adapter_with_a_gradient_cache_gets_datainf_weights_that_replay_within_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, _) = install(dir.path());
        assert!(g.has_cache(&id));
        let (ev, stored) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        let stored = stored.expect("the adapter has a cache and the answer new tokens");
        assert_eq!(stored.rows.len(), 4);
        assert!(stored.target_tokens > 0);
        let grad = ev.gradient.clone().unwrap();
        assert_eq!(grad.method, AttributionMethod::DataInf);
        assert_eq!(grad.damping_ppm, 100_000);
        assert!(!ev.weights.is_empty());
        assert_eq!(
            ev.weights.iter().map(|w| w.weight).sum::<u64>() / 1000,
            999_999
        );
        assert_eq!(receipt_method(&ev), DATAINF_METHOD);
        assert!(ev.hash_is_valid());
        // Replay: recomputed scores agree, weights follow from the stored
        // scores, and the re-traced evidence gets the same gradient part.
        let again = g
            .replay(Some(&id), Q, A, &ev, Some(&stored), spanless(&[1, 2, 3]))
            .unwrap();
        assert_eq!(again, ev);
        // Scores are deterministic on one machine.
        let (ev2, stored2) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        assert_eq!(
            (ev2, stored2.unwrap().scores),
            (ev.clone(), stored.scores.clone())
        );
    }

    #[test]
    fn a_stored_score_edited_beyond_tolerance_is_named_and_edited_weights_do_not_follow() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, _) = install(dir.path());
        let (ev, stored) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        let stored = stored.unwrap();
        let scale = stored.scores.iter().fold(0f64, |m, s| m.max(s.abs()));
        // Within tolerance of the recomputed scores: no score is named (the
        // weights derived from the edited stored scores are still checked
        // exactly against the evidence, and ppb weights move with a 1e-7 edit).
        let mut close = stored.clone();
        close.scores[1] += 1e-7 * scale;
        assert!(compare_scores(&close, &stored).is_empty());
        if let Err(p) = g.replay(Some(&id), Q, A, &ev, Some(&close), spanless(&[1, 2, 3])) {
            assert!(
                p.iter().all(|p| !p.contains("gradient score of row")),
                "{p:?}"
            );
        }
        assert_eq!(compare_scores(&stored, &stored), Vec::<String>::new());
        // Beyond tolerance: the row is named.
        let mut far = stored.clone();
        far.scores[2] += 0.5 * scale;
        let bad = g
            .replay(Some(&id), Q, A, &ev, Some(&far), spanless(&[1, 2, 3]))
            .unwrap_err();
        assert!(
            bad.iter()
                .any(|p| p.contains(&format!("gradient score of row {}", stored.rows[2]))),
            "{bad:?}"
        );
        // Evidence whose gradient weights were edited does not follow from the scores.
        let mut edited = ev.clone();
        edited.gradient.as_mut().unwrap().weights[0].weight += 1;
        let bad = g
            .replay(
                Some(&id),
                Q,
                A,
                &edited,
                Some(&stored),
                spanless(&[1, 2, 3]),
            )
            .unwrap_err();
        assert!(bad.iter().any(|p| p.contains("do not follow")), "{bad:?}");
        // Evidence with a gradient part but no stored scores.
        let bad = g
            .replay(Some(&id), Q, A, &ev, None, spanless(&[1, 2, 3]))
            .unwrap_err();
        assert!(bad[0].contains("no gradient scores"), "{bad:?}");
    }

    #[test]
    fn no_cache_or_a_cache_of_other_weights_leaves_the_token_evidence_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, target) = install(dir.path());
        let tokens = spanless(&[1, 2, 3]);
        // The base model (no adapter), and an adapter without a cache.
        assert_eq!(g.attach(None, Q, A, tokens.clone()), (tokens.clone(), None));
        let other = AdapterId(Hash::of(b"no such adapter"));
        assert!(!g.has_cache(&other));
        assert_eq!(
            g.attach(Some(&other), Q, A, tokens.clone()),
            (tokens.clone(), None)
        );
        assert_eq!(receipt_method(&tokens), FALLBACK_METHOD);
        // Weights retrained after the cache was taken: the cache is refused.
        let fresh =
            GradientAttributor::new(dir.path().join("adapters"), g.base.clone(), GRADIENT_BUDGET);
        let w = target.join(ADAPTER_WEIGHTS_FILE);
        let mut bytes = std::fs::read(&w).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&w, bytes).unwrap();
        let err = fresh
            .score(&id, Q, A)
            .err()
            .expect("a stale cache is refused");
        assert!(
            matches!(err, GradientAttributionError::StaleCache { .. }),
            "{err}"
        );
        assert_eq!(
            fresh.attach(Some(&id), Q, A, tokens.clone()),
            (tokens, None)
        );
    }

    fn rss_mib() -> f64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn cpu_seconds() -> f64 {
        // utime + stime of the process, in clock ticks (100 per second).
        let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    }

    /// Added latency and memory of the gradient step on SmolLM2 with the
    /// planted-recall adapter (`scripts/attribution-eval.sh` leaves it in
    /// `target/attribution/planted-run/run`): `cargo test -p trib-node --lib
    /// gradient_latency_on_smollm2 -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the SmolLM2 model and a planted-recall run; prints a table"]
    fn gradient_latency_on_smollm2() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let Ok(base) = trib_model::locate_smollm2(&root.join("models")) else {
            eprintln!("SmolLM2 not found: skipped");
            return;
        };
        let run = root.join("target/attribution/planted-run/run");
        let report = root.join("target/attribution/planted_recall.json");
        if !run.join("gradient_cache/index.json").is_file() || !report.is_file() {
            eprintln!("no planted-recall run in {}: skipped", run.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let id = AdapterId(Hash::of(b"planted"));
        let target = dir.path().join(id.to_string());
        let cache_dir = GradientCache::dir_for(&target);
        std::fs::create_dir_all(&cache_dir).unwrap();
        for f in std::fs::read_dir(run.join("adapter")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
        }
        std::fs::copy(
            run.join("gradient_cache/gradients.safetensors"),
            cache_dir.join("gradients.safetensors"),
        )
        .unwrap();
        // The planted rows come from a local file (no contribution on the
        // cache rows): give row i contribution i / 2 so that every row is
        // scored, as a datanet-trained adapter's are.
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("gradient_cache/index.json")).unwrap())
                .unwrap();
        for e in index["examples"].as_array_mut().unwrap() {
            let row = e["provenance"]["row"].as_u64().unwrap();
            e["provenance"]["contribution"] =
                serde_json::to_value(ContributionId(Hash::of(&(row / 2).to_le_bytes()))).unwrap();
            e["provenance"]["contributor"] =
                serde_json::to_value(SecretKey::from_seed([(row / 2) as u8; 32]).address())
                    .unwrap();
        }
        std::fs::write(cache_dir.join("index.json"), index.to_string()).unwrap();
        let answers: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let qa: Vec<(String, String)> = answers["answers"]
            .as_array()
            .unwrap()
            .iter()
            .take(12)
            .map(|a| {
                (
                    a["question"]["prompt"].as_str().unwrap().to_string(),
                    a["adapter_answer"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let g = GradientAttributor::new(dir.path().to_path_buf(), base, GRADIENT_BUDGET);
        let rss0 = rss_mib();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        g.model().unwrap();
        let (load_s, load_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let rss1 = rss_mib();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        g.scorer(&g.model().unwrap(), &id).unwrap();
        let (cache_s, cache_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let rss2 = rss_mib();
        let mut ms = Vec::new();
        let c0 = cpu_seconds();
        for (q, a) in &qa {
            let t = Instant::now();
            let s = g.score(&id, q, a).unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(s.is_some(), "{q} / {a}");
        }
        let cpu = cpu_seconds() - c0;
        let rss3 = rss_mib();
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "threads: {}",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        eprintln!(
            "f32 base model load: {load_s:.2} s wall, {load_cpu:.2} CPU s, RSS +{:.0} MiB",
            rss1 - rss0
        );
        eprintln!(
            "adapter + cache load: {cache_s:.2} s wall, {cache_cpu:.2} CPU s, RSS +{:.0} MiB",
            rss2 - rss1
        );
        eprintln!(
            "per answer ({}): median {:.0} ms, p90 {:.0} ms, max {:.0} ms, {:.2} CPU s per answer; RSS after {:.0} MiB (+{:.0} during answers)",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() * 9 / 10],
            ms[ms.len() - 1],
            cpu / ms.len() as f64,
            rss3,
            rss3 - rss2
        );
    }
}
