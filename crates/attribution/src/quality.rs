//! Measuring attribution quality: the linear datamodeling score (LDS),
//! mislabel-detection AUROC, planted-contribution recall, and bootstrap
//! confidence intervals. Used by the `attr-eval` binary and by whoever runs
//! planted-fact experiments on real adapters.

use crate::error::{AttributionError, Result};
use crate::influence::{
    datainf_scores, exact_influence_scores, normalise_gradients, tracin_scores, Damping,
    GradientNormalisation, LayerGradients, ScoreMatrix,
};

/// A small deterministic generator (SplitMix64), so every experiment is
/// reproducible from its seed without depending on a crate's stream stability.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.next_f64().max(1e-300);
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// A uniformly random subset of `0..n` of size `k`, sorted.
    pub fn subset(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        let mut s = idx[..k.min(n)].to_vec();
        s.sort_unstable();
        s
    }
}

/// Ranks with ties averaged (1-based).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation (0 when either side is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Spearman rank correlation (ties averaged).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Area under the ROC curve of `scores` for `positives` (Mann–Whitney, ties count half).
pub fn auroc(scores: &[f64], positives: &[bool]) -> f64 {
    let r = ranks(scores);
    let np = positives.iter().filter(|p| **p).count() as f64;
    let nn = positives.len() as f64 - np;
    if np == 0.0 || nn == 0.0 {
        return 0.5;
    }
    let sum_pos: f64 = r
        .iter()
        .zip(positives)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (sum_pos - np * (np + 1.0) / 2.0) / (np * nn)
}

/// LDS per test point: `scores` is `tests × n` (attribution of each training
/// row to each test point), `subsets` the training subsets, `actual[s][t]` the
/// measured target of test `t` after retraining on subset `s`. Returns the
/// Spearman correlation, per test point, between the actual targets and the
/// predicted `Σ_{i∈S} score[t][i]` across subsets.
pub fn lds_per_test(
    scores: &ScoreMatrix,
    subsets: &[Vec<usize>],
    actual: &[Vec<f64>],
) -> Result<Vec<f64>> {
    if subsets.len() != actual.len() || actual.iter().any(|a| a.len() != scores.tests) {
        return Err(AttributionError::Shape(format!(
            "{} subsets, {} target rows, {} tests",
            subsets.len(),
            actual.len(),
            scores.tests
        )));
    }
    Ok((0..scores.tests)
        .map(|t| {
            let row = scores.test(t);
            let pred: Vec<f64> = subsets
                .iter()
                .map(|s| s.iter().map(|&i| row[i]).sum())
                .collect();
            let act: Vec<f64> = actual.iter().map(|a| a[t]).collect();
            spearman(&pred, &act)
        })
        .collect())
}

/// Mean and a 95% percentile bootstrap interval of the mean of `values`.
pub fn bootstrap_mean_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let lo = means[((resamples as f64) * 0.025) as usize];
    let hi = means[(((resamples as f64) * 0.975) as usize).min(resamples - 1)];
    (mean, lo, hi)
}

/// A gradient attribution method.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum GradientMethod {
    /// [`datainf_scores`].
    DataInf(Damping),
    /// [`tracin_scores`].
    TracIn,
    /// [`exact_influence_scores`].
    Exact(Damping),
}

impl GradientMethod {
    /// Scores `tests × rows` with this method.
    pub fn scores(&self, train: &[LayerGradients], test: &[LayerGradients]) -> Result<ScoreMatrix> {
        match *self {
            GradientMethod::DataInf(d) => datainf_scores(train, test, d),
            GradientMethod::TracIn => tracin_scores(train, test),
            GradientMethod::Exact(d) => exact_influence_scores(train, test, d),
        }
    }

    /// Scores after rescaling both the training and the test gradients with
    /// `how` ([`normalise_gradients`]); `GradientNormalisation::None` is
    /// [`GradientMethod::scores`].
    pub fn scores_normalised(
        &self,
        train: &[LayerGradients],
        test: &[LayerGradients],
        how: GradientNormalisation,
    ) -> Result<ScoreMatrix> {
        if how == GradientNormalisation::None {
            return self.scores(train, test);
        }
        self.scores(
            &normalise_gradients(train, how),
            &normalise_gradients(test, how),
        )
    }
}

/// Recall of planted contributions.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlantedRecall {
    /// Fraction of questions whose planted contribution is ranked first.
    pub at1: f64,
    /// Fraction ranked in the top five.
    pub at5: f64,
    /// Questions the fractions are over.
    pub questions: usize,
}

/// Per-contribution credit of one answer under the payout rule: row scores
/// clamped at zero and summed per contribution. `row_contribution[i]` is the
/// contribution (`0..contributions`) of row `i`.
pub fn contribution_credit(
    row_scores: &[f64],
    row_contribution: &[usize],
    contributions: usize,
) -> Result<Vec<f64>> {
    if row_scores.len() != row_contribution.len() {
        return Err(AttributionError::Shape(format!(
            "{} row scores for {} row labels",
            row_scores.len(),
            row_contribution.len()
        )));
    }
    let mut per = vec![0f64; contributions];
    for (&s, &c) in row_scores.iter().zip(row_contribution) {
        let slot = per.get_mut(c).ok_or_else(|| {
            AttributionError::Shape(format!(
                "row labelled contribution {c}, only {contributions} contributions"
            ))
        })?;
        *slot += s.max(0.0);
    }
    Ok(per)
}

/// The 0-based rank of contribution `want` when contributions are ordered by
/// credit (largest first, ties by index), or `None` when its credit is not
/// positive (a method that credits nothing has not found it).
pub fn planted_rank(credit: &[f64], want: usize) -> Option<usize> {
    let mine = *credit.get(want)?;
    if mine.is_nan() || mine <= 0.0 {
        return None;
    }
    Some(
        credit
            .iter()
            .enumerate()
            .filter(|&(c, &x)| x > mine || (x == mine && c < want))
            .count(),
    )
}

/// recall@1 and recall@5 from per-answer contribution credits: `credits[t]`
/// holds one credit per contribution for answer `t`, `truth[t]` the
/// contribution the answer depends on.
pub fn recall_from_credits(credits: &[Vec<f64>], truth: &[usize]) -> Result<PlantedRecall> {
    if credits.len() != truth.len() {
        return Err(AttributionError::Shape(format!(
            "{} credit vectors for {} answers",
            credits.len(),
            truth.len()
        )));
    }
    let (mut hit1, mut hit5) = (0usize, 0usize);
    for (c, &want) in credits.iter().zip(truth) {
        match planted_rank(c, want) {
            Some(0) => {
                hit1 += 1;
                hit5 += 1;
            }
            Some(r) if r < 5 => hit5 += 1,
            _ => {}
        }
    }
    let n = truth.len().max(1) as f64;
    Ok(PlantedRecall {
        at1: hit1 as f64 / n,
        at5: hit5 as f64 / n,
        questions: truth.len(),
    })
}

/// Planted-contribution recall of a gradient method: `row_contribution[i]`
/// is the contribution (any integer id) of training row `i`, `truth[t]` the
/// contribution that answer `t` depends on. Row scores are summed per
/// contribution after clamping negatives to zero (the payout rule),
/// contributions ranked by score (ties by id), and the planted one looked up.
pub fn planted_recall(
    method: GradientMethod,
    train: &[LayerGradients],
    test: &[LayerGradients],
    row_contribution: &[usize],
    truth: &[usize],
) -> Result<PlantedRecall> {
    let s = method.scores(train, test)?;
    recall_of_scores(&s, row_contribution, truth)
}

/// [`planted_recall`] over an already computed score matrix.
pub fn recall_of_scores(
    s: &ScoreMatrix,
    row_contribution: &[usize],
    truth: &[usize],
) -> Result<PlantedRecall> {
    if row_contribution.len() != s.rows || truth.len() != s.tests {
        return Err(AttributionError::Shape(format!(
            "{} row labels for {} rows, {} truths for {} answers",
            row_contribution.len(),
            s.rows,
            truth.len(),
            s.tests
        )));
    }
    let nc = row_contribution
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m + 1)
        .max(truth.iter().copied().max().map_or(0, |m| m + 1));
    let credits = (0..s.tests)
        .map(|t| contribution_credit(s.test(t), row_contribution, nc))
        .collect::<Result<Vec<_>>>()?;
    recall_from_credits(&credits, truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_maps_is_one() {
        let a = [1.0, 2.0, 3.0, 10.0];
        let b = [0.1, 0.2, 5.0, 7.0];
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c = [4.0, 3.0, 2.0, 1.0];
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn auroc_of_perfect_and_reversed_rankings() {
        let pos = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &pos), 1.0);
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &pos), 0.0);
        assert_eq!(auroc(&[1.0, 1.0, 1.0, 1.0], &pos), 0.5);
    }

    #[test]
    fn planted_rank_counts_strictly_better_and_earlier_ties() {
        let credit = [0.5, 2.0, 0.5, 0.0];
        assert_eq!(planted_rank(&credit, 1), Some(0));
        assert_eq!(planted_rank(&credit, 0), Some(1));
        assert_eq!(planted_rank(&credit, 2), Some(2));
        assert_eq!(planted_rank(&credit, 3), None, "zero credit is not found");
        assert_eq!(planted_rank(&credit, 9), None);
    }

    #[test]
    fn recall_from_credits_counts_hits_at_one_and_five() {
        let credits = vec![
            vec![3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            vec![7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            vec![7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            vec![0.0; 7],
        ];
        let r = recall_from_credits(&credits, &[0, 4, 6, 0]).unwrap();
        assert_eq!(r.questions, 4);
        assert_eq!(r.at1, 0.25);
        assert_eq!(r.at5, 0.5);
        assert!(recall_from_credits(&credits, &[0]).is_err());
    }

    #[test]
    fn contribution_credit_clamps_negatives_and_rejects_unknown_labels() {
        let c = contribution_credit(&[1.0, -5.0, 2.0], &[0, 0, 1], 2).unwrap();
        assert_eq!(c, vec![1.0, 2.0]);
        assert!(contribution_credit(&[1.0], &[3], 2).is_err());
        assert!(contribution_credit(&[1.0, 2.0], &[0], 2).is_err());
    }

    #[test]
    fn subsets_have_the_requested_size_and_no_repeats() {
        let mut r = SplitMix64::new(3);
        let s = r.subset(10, 5);
        assert_eq!(s.len(), 5);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
