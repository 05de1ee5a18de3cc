//! Contributor reputation per datanet, computed from events.
//!
//! Events come from two places: the datanet store (submissions, curation
//! decisions, duplicates) and the ledger (slashes, attribution earnings).
//! The record is a pure fold over them, so anyone can recompute it.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Amount, ContributionId, DatanetId};

/// Something that changes a contributor's reputation in a datanet.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReputationEvent {
    /// A contribution passed validation and is pending curation.
    Submitted {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// Contribution.
        contribution: ContributionId,
        /// Rows it brought.
        rows: u32,
        /// Rows validation rejected as exact or near duplicates.
        duplicates_rejected: u32,
    },
    /// Curation accepted a contribution.
    Accepted {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// Contribution.
        contribution: ContributionId,
        /// Rows that joined the datanet.
        rows: u32,
    },
    /// Curation rejected a contribution.
    Rejected {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// Contribution.
        contribution: ContributionId,
    },
    /// Validation rejected the whole submission (all duplicates, bad
    /// format, quota, …): it never reached curation or the ledger.
    RejectedAtValidation {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// The id its report carried.
        contribution: ContributionId,
        /// Rows rejected as exact or near duplicates.
        duplicates_rejected: u32,
    },
    /// Stake was slashed (from the ledger).
    Slashed {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// Contribution.
        contribution: ContributionId,
        /// OPEN slashed.
        amount: Amount,
    },
    /// Attribution paid the contributor (from the ledger).
    Earned {
        /// Datanet.
        datanet: DatanetId,
        /// Contributor.
        contributor: Address,
        /// Contribution credited.
        contribution: ContributionId,
        /// OPEN earned.
        amount: Amount,
    },
}

impl ReputationEvent {
    fn key(&self) -> (DatanetId, Address) {
        match self {
            ReputationEvent::Submitted {
                datanet,
                contributor,
                ..
            }
            | ReputationEvent::Accepted {
                datanet,
                contributor,
                ..
            }
            | ReputationEvent::Rejected {
                datanet,
                contributor,
                ..
            }
            | ReputationEvent::RejectedAtValidation {
                datanet,
                contributor,
                ..
            }
            | ReputationEvent::Slashed {
                datanet,
                contributor,
                ..
            }
            | ReputationEvent::Earned {
                datanet,
                contributor,
                ..
            } => (*datanet, *contributor),
        }
    }
}

/// A contributor's standing in one datanet, recomputed by folding events:
/// the store's submissions and curation plus the ledger's slashes and
/// earnings.
///
/// A different record from the ledger's on-chain
/// [`trib_types::Reputation`]: it also counts what only the node sees
/// (submissions rejected at validation, duplicate rows) and the number of
/// slashes, and anyone holding the events can recompute it.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ReputationTally {
    /// Datanet.
    pub datanet: DatanetId,
    /// Contributor.
    pub contributor: Address,
    /// Contributions that passed validation.
    pub contributions_submitted: u64,
    /// Contributions accepted by curation.
    pub contributions_accepted: u64,
    /// Contributions rejected by curation.
    pub contributions_rejected: u64,
    /// Submissions rejected at validation (never curated).
    pub rejected_at_validation: u64,
    /// Rows accepted.
    pub rows_accepted: u64,
    /// Rows rejected as duplicates at validation.
    pub duplicates_rejected: u64,
    /// Number of slashes.
    pub slashes: u64,
    /// Total OPEN slashed.
    pub slashed: Amount,
    /// Total OPEN earned through attribution.
    pub earnings: Amount,
}

impl ReputationTally {
    /// Accepted / (accepted + rejected by curation + rejected at
    /// validation), in basis points; 0 before any decision.
    pub fn acceptance_rate_bp(&self) -> u16 {
        let decided =
            self.contributions_accepted + self.contributions_rejected + self.rejected_at_validation;
        (self.contributions_accepted * 10_000)
            .checked_div(decided)
            .unwrap_or(0) as u16
    }

    /// Applies one event (of this datanet and contributor).
    pub fn apply(&mut self, event: &ReputationEvent) {
        let add = |a: Amount, b: Amount| a.checked_add(b).unwrap_or(Amount(u128::MAX));
        match event {
            ReputationEvent::Submitted {
                duplicates_rejected,
                ..
            } => {
                self.contributions_submitted += 1;
                self.duplicates_rejected += *duplicates_rejected as u64;
            }
            ReputationEvent::Accepted { rows, .. } => {
                self.contributions_accepted += 1;
                self.rows_accepted += *rows as u64;
            }
            ReputationEvent::Rejected { .. } => self.contributions_rejected += 1,
            ReputationEvent::RejectedAtValidation {
                duplicates_rejected,
                ..
            } => {
                self.rejected_at_validation += 1;
                self.duplicates_rejected += *duplicates_rejected as u64;
            }
            ReputationEvent::Slashed { amount, .. } => {
                self.slashes += 1;
                self.slashed = add(self.slashed, *amount);
            }
            ReputationEvent::Earned { amount, .. } => self.earnings = add(self.earnings, *amount),
        }
    }
}

/// Folds events into one record per (datanet, contributor), ordered by them.
pub fn compute_reputation<'a>(
    events: impl IntoIterator<Item = &'a ReputationEvent>,
) -> Vec<ReputationTally> {
    let mut map: BTreeMap<(DatanetId, Address), ReputationTally> = BTreeMap::new();
    for e in events {
        let (datanet, contributor) = e.key();
        map.entry((datanet, contributor))
            .or_insert_with(|| ReputationTally {
                datanet,
                contributor,
                ..ReputationTally::default()
            })
            .apply(e);
    }
    map.into_values().collect()
}

/// The leaderboard of one datanet: most rows accepted first, then higher
/// acceptance rate, higher earnings, fewer slashes, then address.
pub fn leaderboard(records: &[ReputationTally], datanet: &DatanetId) -> Vec<ReputationTally> {
    let mut v: Vec<ReputationTally> = records
        .iter()
        .filter(|r| r.datanet == *datanet)
        .cloned()
        .collect();
    v.sort_by(|a, b| {
        b.rows_accepted
            .cmp(&a.rows_accepted)
            .then(b.acceptance_rate_bp().cmp(&a.acceptance_rate_bp()))
            .then(b.earnings.cmp(&a.earnings))
            .then(a.slashes.cmp(&b.slashes))
            .then(a.contributor.cmp(&b.contributor))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_rates_and_totals() {
        let d = DatanetId::default();
        let (alice, bob) = (Address([1; 20]), Address([2; 20]));
        let c = ContributionId::default();
        let events = vec![
            ReputationEvent::Submitted {
                datanet: d,
                contributor: alice,
                contribution: c,
                rows: 10,
                duplicates_rejected: 2,
            },
            ReputationEvent::Accepted {
                datanet: d,
                contributor: alice,
                contribution: c,
                rows: 10,
            },
            ReputationEvent::Submitted {
                datanet: d,
                contributor: alice,
                contribution: c,
                rows: 3,
                duplicates_rejected: 0,
            },
            ReputationEvent::Rejected {
                datanet: d,
                contributor: alice,
                contribution: c,
            },
            ReputationEvent::Slashed {
                datanet: d,
                contributor: alice,
                contribution: c,
                amount: Amount::open(2),
            },
            ReputationEvent::Earned {
                datanet: d,
                contributor: alice,
                contribution: c,
                amount: Amount::open(5),
            },
            ReputationEvent::Accepted {
                datanet: d,
                contributor: bob,
                contribution: c,
                rows: 20,
            },
            ReputationEvent::RejectedAtValidation {
                datanet: d,
                contributor: alice,
                contribution: c,
                duplicates_rejected: 4,
            },
        ];
        let reps = compute_reputation(&events);
        let a = reps.iter().find(|r| r.contributor == alice).unwrap();
        // 1 accepted of 3 decided (one curation rejection, one at validation).
        assert_eq!(a.acceptance_rate_bp(), 3_333);
        assert_eq!(a.rejected_at_validation, 1);
        assert_eq!(
            (a.rows_accepted, a.duplicates_rejected, a.slashes),
            (10, 6, 1)
        );
        assert_eq!((a.slashed, a.earnings), (Amount::open(2), Amount::open(5)));
        let board = leaderboard(&reps, &d);
        assert_eq!(board[0].contributor, bob);
        assert_eq!(board[0].acceptance_rate_bp(), 10_000);
    }
}
