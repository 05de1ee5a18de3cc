//! Gradient influence at answer time: the 30% gradient share of a paid
//! answer's weights, for adapters that carry a ModelFactory gradient cache.
//!
//! The token method ([`super::IndexCatalog`]) traces every answer; the
//! [`GradientAttributor`] adds, where the served adapter has a gradient
//! cache, the DataInf influence (Kwon et al., ICLR 2024) of every cached
//! training row on the answer, and combines both by the documented rule
//! ([`AttributionEvidence::with_gradient`]: 70% spans, 30% gradient,
//! docs/attribution.md §3–§4, §8). The test gradient is the variant planted
//! recall measured best (§5): the loss over the answer tokens that are new
//! with respect to the prompt, unit length per layer, scored against the
//! cached rows unit-normalised per layer ([`GradientNormalisation::PerLayer`]).
//!
//! The model side (loading the base model in f32, the adapter and its
//! cache, the backward pass) sits behind the [`AnswerGradients`] trait,
//! which the node implements over `trib-model`, so this crate stays free of
//! candle. Every call is blocking.
//!
//! **Replay.** Floating point may differ in the last bits on another machine,
//! so the per-row scores are stored with the answer ([`StoredGradient`]).
//! Verify recomputes them and accepts each within [`SCORE_TOLERANCE`] of the
//! largest stored score's magnitude, then re-derives the weights from the
//! *stored* scores ([`contribution_weights`]: the same f64 operations in the
//! same order on every IEEE-754 machine) and requires them to equal the
//! evidence's gradient weights, which the evidence hash covers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Address, ContributionId, Hash, RowHash};

use crate::error::AttributionError;
use crate::evidence::{AttributionEvidence, AttributionMethod, GradientEvidence};
use crate::index::RowProvenance;
use crate::influence::{
    datainf_scores, normalise_gradients, Damping, GradientNormalisation, LayerGradients,
};
use crate::trace::ContributionWeight;
use crate::weights::contribution_weights;

/// Relative tolerance of a replayed gradient score: `|recomputed − stored| ≤
/// SCORE_TOLERANCE · max_i |stored_i|` (plus 1e-12 for all-zero scores).
pub const SCORE_TOLERANCE: f64 = 1e-4;

/// DataInf's relative damping `c` (λ_l = c · mean ‖g‖² / d_l), the paper's 0.1.
const DAMPING: f64 = 0.1;

/// Time a paid answer's gradient step may spend before its backward pass
/// (adapter and cache loading included, base model loading not); past it
/// the answer settles by spans.
pub const GRADIENT_BUDGET: Duration = Duration::from_secs(60);

/// Why a gradient score could not be computed or replayed.
#[derive(Debug, thiserror::Error)]
pub enum GradientAttributionError {
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
    Scores(#[from] AttributionError),
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

/// One row of an adapter's gradient cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRow {
    /// The row's content hash.
    pub row: RowHash,
    /// The contribution it came from (`None`: a local file, not payable).
    pub contribution: Option<ContributionId>,
    /// Who contributed it.
    pub contributor: Option<Address>,
}

/// An adapter's gradient cache as the model side read it.
#[derive(Debug, Clone)]
pub struct CachedGradients {
    /// The cache directory (for messages).
    pub dir: PathBuf,
    /// blake3 of the adapter weights the cache was taken at (checked by the
    /// model side against the served weights).
    pub adapter_hash: Hash,
    /// Every cached row, in cache order (the tie-break for identical rows:
    /// the earlier row keeps the credit).
    pub rows: Vec<CachedRow>,
    /// Per layer, the gradients of every cached row (`rows.len()` rows).
    pub layers: Vec<LayerGradients>,
}

/// The gradient of one answer's loss, per layer, projected as the cache's
/// rows were.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerGradient {
    /// One vector per layer of the cache, in its order.
    pub layers: Vec<Vec<f32>>,
    /// Answer tokens the loss averaged over (new w.r.t. the prompt).
    pub target_tokens: usize,
}

/// The model side of answer-time gradient attribution: the node implements
/// it over `trib-model` (the base model in f32, the served adapter and the
/// factory's gradient cache in `<home>/adapters/<ADAPTER_ID>/`).
pub trait AnswerGradients: Send + Sync {
    /// Where the adapters and their caches live (for messages).
    fn location(&self) -> String;
    /// Whether `adapter` has a gradient cache.
    fn has_cache(&self, adapter: &AdapterId) -> bool;
    /// Makes the model ready (loaded once per node, not counted against
    /// the answer's budget).
    fn prepare(&self) -> Result<()>;
    /// Reads `adapter`'s gradient cache; [`GradientAttributionError::StaleCache`]
    /// when it was taken at other weights than the served ones.
    fn cache(&self, adapter: &AdapterId) -> Result<CachedGradients>;
    /// The gradient of `adapter`'s loss on `answer` to `prompt`, over the
    /// answer tokens new with respect to the prompt, unit length per layer;
    /// `None` when no answer token is new.
    fn answer_gradient(
        &self,
        adapter: &AdapterId,
        prompt: &str,
        answer: &str,
    ) -> Result<Option<AnswerGradient>>;
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

/// One adapter's cache, ready to score: the cached rows naming a
/// contribution, normalised per layer, and who each belongs to.
struct Scorer {
    /// Per layer, the rows naming a contribution, unit length per layer.
    train: Vec<LayerGradients>,
    rows: Vec<RowProvenance>,
    adapter_hash: Hash,
}

/// What the gradient step produced for one answer.
pub struct Scored {
    /// The gradient part of the evidence.
    pub evidence: GradientEvidence,
    /// What replay needs.
    pub stored: StoredGradient,
}

/// Scores answers of adapters with a gradient cache; one per node.
pub struct GradientAttributor {
    source: Arc<dyn AnswerGradients>,
    budget: Duration,
    scorers: Mutex<HashMap<AdapterId, Arc<Scorer>>>,
}

impl GradientAttributor {
    /// Scores with the gradients of `source`; a score that has not reached
    /// its backward pass within `budget` of its start is skipped.
    pub fn new(source: Arc<dyn AnswerGradients>, budget: Duration) -> Self {
        GradientAttributor {
            source,
            budget,
            scorers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `adapter` has a gradient cache.
    pub fn has_cache(&self, adapter: &AdapterId) -> bool {
        self.source.has_cache(adapter)
    }

    /// Loads the model and `adapter`'s cache, as its first answer would.
    pub fn preload(&self, adapter: &AdapterId) -> Result<()> {
        self.source.prepare()?;
        self.scorer(adapter).map(|_| ())
    }

    fn scorer(&self, adapter: &AdapterId) -> Result<Arc<Scorer>> {
        if let Some(s) = self
            .scorers
            .lock()
            .expect("scorer lock poisoned")
            .get(adapter)
        {
            return Ok(s.clone());
        }
        let s = Arc::new(Scorer::new(self.source.cache(adapter)?)?);
        self.scorers
            .lock()
            .expect("scorer lock poisoned")
            .insert(*adapter, s.clone());
        Ok(s)
    }

    /// The DataInf gradient part of `adapter`'s answer to `prompt`.
    /// `Ok(None)` when the adapter has no gradient cache or the answer has no
    /// token that is new with respect to the prompt.
    pub fn score(&self, adapter: &AdapterId, prompt: &str, answer: &str) -> Result<Option<Scored>> {
        if !self.has_cache(adapter) {
            return Ok(None);
        }
        self.source.prepare()?;
        let started = Instant::now();
        let scorer = self.scorer(adapter)?;
        if started.elapsed() > self.budget {
            return Err(GradientAttributionError::OutOfTime {
                elapsed: started.elapsed(),
                budget: self.budget,
            });
        }
        let Some(g) = self.source.answer_gradient(adapter, prompt, answer)? else {
            return Ok(None);
        };
        let (evidence, mut stored) = scorer.score(g)?;
        stored.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(Some(Scored { evidence, stored }))
    }

    /// Adds the gradient part of `adapter`'s answer to `evidence` (token
    /// evidence just sealed by the tracer). No cache, no new token, or a
    /// failure (logged): the evidence is returned unchanged, settled by
    /// spans alone.
    pub fn attach(
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
    pub fn replay(
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
                self.source.location()
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
    ) -> Result<Vec<ContributionWeight>> {
        self.source.prepare()?;
        let scorer = self.scorer(adapter)?;
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

/// The problems of `again` (recomputed scores) against `stored`: every
/// stored score must be within [`SCORE_TOLERANCE`] of the recomputed one
/// (at most five are named, then a count).
pub fn compare_scores(stored: &StoredGradient, again: &StoredGradient) -> Vec<String> {
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

impl Scorer {
    /// Keeps the cached rows that name a contribution (the payable ones)
    /// and normalises their gradients per layer.
    fn new(cache: CachedGradients) -> Result<Scorer> {
        let keep: Vec<usize> = cache
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.contribution.is_some() && r.contributor.is_some())
            .map(|(i, _)| i)
            .collect();
        if keep.is_empty() {
            return Err(GradientAttributionError::NoContributions(cache.dir));
        }
        let rows: Vec<RowProvenance> = keep
            .iter()
            .map(|&i| {
                let r = &cache.rows[i];
                RowProvenance {
                    row: r.row,
                    contribution: r.contribution.expect("filtered above"),
                    contributor: r.contributor.expect("filtered above"),
                    first_seen: i as u64,
                }
            })
            .collect();
        let mut layers = Vec::with_capacity(cache.layers.len());
        for l in &cache.layers {
            let mut data = Vec::with_capacity(keep.len() * l.cols);
            for &i in &keep {
                data.extend_from_slice(&l.data[i * l.cols..(i + 1) * l.cols]);
            }
            layers.push(LayerGradients::new(
                l.name.clone(),
                keep.len(),
                l.cols,
                data,
            )?);
        }
        Ok(Scorer {
            train: normalise_gradients(&layers, GradientNormalisation::PerLayer),
            rows,
            adapter_hash: cache.adapter_hash,
        })
    }

    fn score(&self, g: AnswerGradient) -> Result<(GradientEvidence, StoredGradient)> {
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
        Ok((
            GradientEvidence {
                method: AttributionMethod::DataInf,
                adapter_version: self.adapter_hash,
                damping_ppm: (DAMPING * 1e6).round() as u64,
                weights,
            },
            StoredGradient {
                rows: self.rows.iter().map(|r| r.row).collect(),
                scores,
                target_tokens: g.target_tokens,
                elapsed_ms: 0.0,
            },
        ))
    }
}
