//! Exact integer splits of an amount by weights.
//!
//! Settlement pays a fee out in parts (by basis points among roles, then by
//! attribution weight among contributions). Every part is a whole number of
//! base units and the parts must sum to the total exactly, so the split is:
//! floor each share `total · wᵢ / Σw`, then hand the leftover base units one
//! each to the largest fractional remainders, ties broken by lower index
//! (the "largest remainder" or Hamilton method). Deterministic, no floats.

use crate::amount::Amount;

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// All weights are zero (or there are none): there is nobody to pay.
    #[error("cannot split {0:?}: all weights are zero")]
    NoWeight(Amount),
    /// The sum of the weights overflows `u128`.
    #[error("weights sum overflows 128 bits")]
    WeightOverflow,
}

/// Splits `total` into `weights.len()` parts proportional to `weights`, summing
/// exactly to `total` (largest remainder, ties to the lower index).
pub fn split_by_weight(total: Amount, weights: &[u128]) -> Result<Vec<Amount>, SplitError> {
    let sum = weights
        .iter()
        .try_fold(0u128, |acc, w| acc.checked_add(*w))
        .ok_or(SplitError::WeightOverflow)?;
    if sum == 0 {
        return Err(SplitError::NoWeight(total));
    }
    let mut parts = Vec::with_capacity(weights.len());
    // Remainder of each share, in units of 1/sum: (total·w) mod sum, computed
    // without overflow as ((q·w) mod sum + (r·w) mod sum) mod sum where
    // total = q·sum + r. Only the ordering of remainders matters.
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    let mut given = 0u128;
    for (i, &w) in weights.iter().enumerate() {
        let share = total
            .mul_div_floor(w, sum)
            .expect("w <= sum, so the share is at most total");
        given += share.0;
        parts.push(share);
        remainders.push((frac_remainder(total.0, w, sum), i));
    }
    let mut leftover = total.0 - given;
    // leftover < number of non-zero weights, so each gets at most one unit.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if leftover == 0 {
            break;
        }
        if weights[i] == 0 {
            continue;
        }
        parts[i].0 += 1;
        leftover -= 1;
    }
    debug_assert_eq!(leftover, 0);
    Ok(parts)
}

/// Splits `total` by basis points (each in `0..=10_000`, summing to 10,000),
/// exactly, with the same largest-remainder rule.
pub fn split_by_bps(total: Amount, bps: &[u16]) -> Result<Vec<Amount>, SplitError> {
    let w: Vec<u128> = bps.iter().map(|b| *b as u128).collect();
    split_by_weight(total, &w)
}

/// `(t·w) mod s` for `w <= s`, without overflow.
fn frac_remainder(t: u128, w: u128, s: u128) -> u128 {
    mul_mod(t % s, w, s)
}

/// `(a·b) mod m` for `a, b < m` (or `b == m`), by double-and-add.
fn mul_mod(a: u128, b: u128, m: u128) -> u128 {
    let b = b % m;
    let (mut x, mut acc) = (a % m, 0u128);
    let mut y = b;
    while y > 0 {
        if y & 1 == 1 {
            acc = add_mod(acc, x, m);
        }
        x = add_mod(x, x, m);
        y >>= 1;
    }
    acc
}

fn add_mod(a: u128, b: u128, m: u128) -> u128 {
    // a, b < m: a + b may overflow u128; compare against m - b instead.
    if a >= m - b {
        a - (m - b)
    } else {
        a + b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thirds_go_to_lowest_index_on_ties() {
        let parts = split_by_weight(Amount(10), &[1, 1, 1]).unwrap();
        assert_eq!(parts, vec![Amount(4), Amount(3), Amount(3)]);
    }

    #[test]
    fn largest_remainder_wins() {
        // 7 split 1:2:4 of 7 → 1, 2, 4 exactly; 10 split 1:2:4 → 1.43, 2.86, 5.71
        assert_eq!(
            split_by_weight(Amount(7), &[1, 2, 4]).unwrap(),
            vec![Amount(1), Amount(2), Amount(4)]
        );
        assert_eq!(
            split_by_weight(Amount(10), &[1, 2, 4]).unwrap(),
            vec![Amount(1), Amount(3), Amount(6)]
        );
    }

    #[test]
    fn zero_weights_get_nothing_and_all_zero_is_an_error() {
        assert_eq!(
            split_by_weight(Amount(5), &[0, 3, 0]).unwrap(),
            vec![Amount(0), Amount(5), Amount(0)]
        );
        assert!(matches!(
            split_by_weight(Amount(5), &[0, 0]),
            Err(SplitError::NoWeight(_))
        ));
        assert!(matches!(
            split_by_weight(Amount(5), &[]),
            Err(SplitError::NoWeight(_))
        ));
        assert_eq!(
            split_by_weight(Amount(5), &[u128::MAX, 1]),
            Err(SplitError::WeightOverflow)
        );
    }

    #[test]
    fn bps_split_is_exact() {
        let parts = split_by_bps(Amount::open(1), &[6000, 2000, 1000, 500, 500]).unwrap();
        assert_eq!(parts.iter().map(|a| a.0).sum::<u128>(), Amount::open(1).0);
        assert_eq!(parts[0], Amount::parse_open("0.6").unwrap());
    }

    proptest! {
        #[test]
        fn parts_sum_to_total_and_are_within_one_unit_of_exact(
            total in any::<u128>(),
            weights in proptest::collection::vec(0u128..=u64::MAX as u128, 1..20),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let parts = split_by_weight(Amount(total), &weights).unwrap();
            let sum: u128 = parts.iter().map(|p| p.0).sum();
            prop_assert_eq!(sum, total);
            let wsum: u128 = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                let floor = Amount(total).mul_div_floor(*w, wsum).unwrap().0;
                prop_assert!(p.0 == floor || p.0 == floor + 1);
                if *w == 0 { prop_assert_eq!(p.0, 0); }
            }
        }

        #[test]
        fn mul_mod_matches_small_reference(a in 0u64.., b in 0u64.., m in 1u64..) {
            let (a, b, m) = (a as u128 % m as u128, b as u128 % m as u128, m as u128);
            prop_assert_eq!(mul_mod(a, b, m), a * b % m);
        }
    }
}
