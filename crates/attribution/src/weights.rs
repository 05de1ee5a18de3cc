//! From scores to payable integer weights, and the exact split of an amount.
//!
//! Rules (also in `docs/attribution.md`):
//! - **Negative scores** (rows that made the answer *less* likely) are clamped
//!   to 0 before normalising: a payout cannot be negative.
//! - **Duplicates**: rows with the same row hash form one group; the group's
//!   score is the *largest* member score (duplicating a row adds nothing) and
//!   is credited to the member with the smallest `first_seen` (then row hash).
//! - **Normalisation**: weights are parts per billion of the method's total
//!   (`floor(10⁹ · s / Σ s)`), integers from then on.
//! - **Combination**: `w = (α · w_token + (10⁶ − α) · w_gradient) / 10⁶` with
//!   `α` in parts per million (default 700 000: span matching was more precise
//!   on planted facts); when one method has no weights the other is used alone.

use std::collections::BTreeMap;

use trib_types::{Amount, ContributionId};

use crate::error::{AttributionError, Result};
use crate::index::RowProvenance;
use crate::trace::ContributionWeight;

/// Weights are normalised to this total (parts per billion).
pub const WEIGHT_SCALE: u64 = 1_000_000_000;

/// Default share of the token method when combining, in parts per million.
pub const DEFAULT_TOKEN_SHARE_PPM: u32 = 700_000;

/// Per-contribution weights from per-row scores (any method), under the
/// clamping, duplicate and normalisation rules of the module documentation.
/// Returns an empty vector when no row has a positive score.
pub fn contribution_weights(
    scores: &[f64],
    rows: &[RowProvenance],
) -> Result<Vec<ContributionWeight>> {
    if scores.len() != rows.len() {
        return Err(AttributionError::Shape(format!(
            "{} scores for {} rows",
            scores.len(),
            rows.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(AttributionError::Shape(format!(
            "score of row {i} is not finite"
        )));
    }
    // Group by row hash: max score, earliest owner.
    let mut groups: BTreeMap<trib_types::RowHash, (f64, RowProvenance)> = BTreeMap::new();
    for (s, p) in scores.iter().zip(rows) {
        let s = s.max(0.0);
        let e = groups.entry(p.row).or_insert((s, *p));
        e.0 = e.0.max(s);
        if (p.first_seen, p.row) < (e.1.first_seen, e.1.row) {
            e.1 = *p;
        }
    }
    let mut per: BTreeMap<ContributionId, (trib_types::Address, f64)> = BTreeMap::new();
    for (s, owner) in groups.values() {
        per.entry(owner.contribution)
            .or_insert((owner.contributor, 0.0))
            .1 += s;
    }
    let raw: Vec<(ContributionId, trib_types::Address, f64)> =
        per.into_iter().map(|(c, (a, s))| (c, a, s)).collect();
    Ok(normalise(&raw))
}

/// Normalises non-negative per-contribution credits to parts per billion.
pub(crate) fn normalise(
    raw: &[(ContributionId, trib_types::Address, f64)],
) -> Vec<ContributionWeight> {
    let total: f64 = raw.iter().map(|r| r.2.max(0.0)).sum();
    if total.is_nan() || total <= 0.0 {
        return Vec::new();
    }
    raw.iter()
        .map(|(c, a, s)| ContributionWeight {
            contribution: *c,
            contributor: *a,
            weight: ((s.max(0.0) / total) * WEIGHT_SCALE as f64).floor() as u64,
        })
        .filter(|w| w.weight > 0)
        .collect()
}

/// Normalises integer weights (for example a trace's micro-unit credits) to parts per billion.
pub fn normalise_weights(w: &[ContributionWeight]) -> Vec<ContributionWeight> {
    let total: u128 = w.iter().map(|x| x.weight as u128).sum();
    if total == 0 {
        return Vec::new();
    }
    w.iter()
        .map(|x| ContributionWeight {
            weight: (x.weight as u128 * WEIGHT_SCALE as u128 / total) as u64,
            ..*x
        })
        .filter(|x| x.weight > 0)
        .collect()
}

/// Combines normalised token and gradient weights: `token_share_ppm` of the
/// token method plus the rest of the gradient method (module documentation).
pub fn combine_weights(
    token: &[ContributionWeight],
    gradient: &[ContributionWeight],
    token_share_ppm: u32,
) -> Result<Vec<ContributionWeight>> {
    if token_share_ppm > 1_000_000 {
        return Err(AttributionError::InvalidParameter {
            name: "token_share_ppm",
            reason: format!("{token_share_ppm} is over 1 000 000"),
        });
    }
    let (t, g) = (normalise_weights(token), normalise_weights(gradient));
    if g.is_empty() {
        return Ok(t);
    }
    if t.is_empty() {
        return Ok(g);
    }
    let alpha = token_share_ppm as u128;
    let mut acc: BTreeMap<ContributionId, (trib_types::Address, u128)> = BTreeMap::new();
    for w in &t {
        acc.entry(w.contribution).or_insert((w.contributor, 0)).1 += alpha * w.weight as u128;
    }
    for w in &g {
        acc.entry(w.contribution).or_insert((w.contributor, 0)).1 +=
            (1_000_000 - alpha) * w.weight as u128;
    }
    Ok(acc
        .into_iter()
        .map(|(contribution, (contributor, v))| ContributionWeight {
            contribution,
            contributor,
            weight: (v / 1_000_000) as u64,
        })
        .filter(|w| w.weight > 0)
        .collect())
}

/// Splits `total` by integer weights exactly, keyed: each key gets
/// `floor(total · w / W)`, and the units left over go one each to the largest
/// remainders (ties to the earlier entry). The parts sum to `total`. The
/// arithmetic is `trib_types::split_by_weight`, the same rule the ledger's
/// settlement uses, so a receipt's preview and its payout lines agree.
///
/// Errors when `weights` is empty or all weights are zero.
pub fn split_by_weight<K: Copy>(total: Amount, weights: &[(K, u64)]) -> Result<Vec<(K, Amount)>> {
    let raw: Vec<u128> = weights.iter().map(|(_, w)| *w as u128).collect();
    let parts = trib_types::split_by_weight(total, &raw)
        .map_err(|e| AttributionError::Split(e.to_string()))?;
    Ok(weights.iter().map(|(k, _)| *k).zip(parts).collect())
}

/// Who receives the contributors' share of a fee.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContributorPayout {
    /// Split by attribution weight across contributions.
    Contributions(Vec<(ContributionId, Amount)>),
    /// Nothing cleared the thresholds: the share goes to the datanets the
    /// adapter was trained on, pro rata by their row counts.
    DatanetFallback(Vec<(trib_types::DatanetId, Amount)>),
}

/// Splits the contributors' share: by `weights` when any is positive,
/// otherwise to `datanets` (id, rows) pro rata by rows, marked as a fallback.
pub fn split_contributor_share(
    total: Amount,
    weights: &[ContributionWeight],
    datanets: &[(trib_types::DatanetId, u64)],
) -> Result<ContributorPayout> {
    let w: Vec<(ContributionId, u64)> =
        weights.iter().map(|w| (w.contribution, w.weight)).collect();
    if w.iter().any(|(_, x)| *x > 0) {
        return Ok(ContributorPayout::Contributions(split_by_weight(
            total, &w,
        )?));
    }
    Ok(ContributorPayout::DatanetFallback(split_by_weight(
        total, datanets,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use trib_types::{Address, Hash, RowHash};

    fn prov(row: u8, contribution: u8, seen: u64) -> RowProvenance {
        RowProvenance {
            row: RowHash(Hash([row; 32])),
            contribution: ContributionId(Hash([contribution; 32])),
            contributor: Address([contribution; 20]),
            first_seen: seen,
        }
    }

    #[test]
    fn split_hands_remainder_to_largest_remainders_then_earliest() {
        let parts = split_by_weight(Amount(10), &[(0u8, 1), (1, 1), (2, 1)]).unwrap();
        assert_eq!(parts, vec![(0, Amount(4)), (1, Amount(3)), (2, Amount(3))]);
        let parts = split_by_weight(Amount(7), &[(0u8, 1), (1, 2)]).unwrap();
        // 7/3 = 2.33, 14/3 = 4.67: the second has the larger remainder.
        assert_eq!(parts, vec![(0, Amount(2)), (1, Amount(5))]);
    }

    #[test]
    fn split_refuses_all_zero_weights() {
        assert!(split_by_weight(Amount(5), &[(0u8, 0)]).is_err());
        assert!(split_by_weight::<u8>(Amount(5), &[]).is_err());
    }

    #[test]
    fn nothing_cleared_goes_to_datanets_by_rows() {
        let d1 = trib_types::DatanetId(Hash([1; 32]));
        let d2 = trib_types::DatanetId(Hash([2; 32]));
        let p = split_contributor_share(Amount(100), &[], &[(d1, 30), (d2, 70)]).unwrap();
        assert_eq!(
            p,
            ContributorPayout::DatanetFallback(vec![(d1, Amount(30)), (d2, Amount(70))])
        );
    }

    #[test]
    fn negative_scores_are_clamped_and_duplicates_credit_the_first_contributor() {
        // Row 1 contributed first by contribution 10, copied later by contribution 20.
        let rows = [prov(1, 10, 5), prov(1, 20, 9), prov(2, 30, 1)];
        let w = contribution_weights(&[1.0, 3.0, -2.0], &rows).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].contribution, ContributionId(Hash([10; 32])));
        assert_eq!(w[0].weight, WEIGHT_SCALE);
    }

    #[test]
    fn combination_mixes_normalised_weights() {
        let a = ContributionWeight {
            contribution: ContributionId(Hash([1; 32])),
            contributor: Address([1; 20]),
            weight: 5,
        };
        let b = ContributionWeight {
            contribution: ContributionId(Hash([2; 32])),
            contributor: Address([2; 20]),
            weight: 7,
        };
        let w = combine_weights(&[a], &[b], 700_000).unwrap();
        assert_eq!(w[0].weight, 700_000_000);
        assert_eq!(w[1].weight, 300_000_000);
        assert_eq!(
            combine_weights(&[a], &[], 700_000).unwrap()[0].weight,
            WEIGHT_SCALE
        );
    }

    proptest! {
        #[test]
        fn split_sums_exactly_and_respects_floors(
            total in any::<u128>(),
            ws in proptest::collection::vec(0u64..=u64::MAX / 64, 1..40),
        ) {
            prop_assume!(ws.iter().any(|w| *w > 0));
            let weights: Vec<(usize, u64)> = ws.iter().copied().enumerate().collect();
            let parts = split_by_weight(Amount(total), &weights).unwrap();
            let sum: u128 = parts.iter().map(|p| p.1.0).sum();
            prop_assert_eq!(sum, total);
            let wsum: u128 = ws.iter().map(|w| *w as u128).sum();
            for ((_, a), w) in parts.iter().zip(&ws) {
                let floor = Amount(total).mul_div_floor(*w as u128, wsum).unwrap().0;
                prop_assert!(a.0 == floor || a.0 == floor + 1);
            }
        }
    }
}
