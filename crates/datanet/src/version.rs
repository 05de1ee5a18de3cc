//! Versions: a Merkle root over a datanet's accepted rows, inclusion proofs.
//!
//! Format (also in `docs/datanets.md`):
//!
//! - rows are in canonical order: ascending row hash (row hashes are unique
//!   within a datanet, exact duplicates being rejected);
//! - `leaf = H("tributary datanet leaf v1", row_hash ‖ contributor ‖ contribution)`;
//! - `node = H("tributary datanet node v1", left ‖ right)`;
//! - a level with an odd count promotes its last node unchanged (no
//!   duplication, so no second-preimage ambiguity à la CVE-2012-2459);
//! - the root of zero rows is `Hash::ZERO`.
//!
//! `H` is [`Hash::domain`]: blake3 key-derivation mode with length-prefixed parts.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Canonical, ContributionId, DatanetId, Hash, RowHash};

/// What a version commits to for one row.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct VersionLeaf {
    /// The row's content address.
    pub row_hash: RowHash,
    /// Its contributor.
    pub contributor: Address,
    /// Its contribution.
    pub contribution: ContributionId,
}

impl VersionLeaf {
    /// The leaf hash.
    pub fn hash(&self) -> Hash {
        Hash::domain(
            "tributary datanet leaf v1",
            &[
                self.row_hash.0.as_bytes(),
                &self.contributor.0,
                self.contribution.0.as_bytes(),
            ],
        )
    }
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Hash::domain(
        "tributary datanet node v1",
        &[left.as_bytes(), right.as_bytes()],
    )
}

/// The Merkle root of leaf hashes in the given order.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                if pair.len() == 2 {
                    node(&pair[0], &pair[1])
                } else {
                    pair[0]
                }
            })
            .collect();
    }
    level[0]
}

/// Sorts leaves into canonical order (ascending row hash) and drops repeated
/// row hashes, keeping the first.
pub fn canonical_order(mut leaves: Vec<VersionLeaf>) -> Vec<VersionLeaf> {
    leaves.sort_by_key(|l| l.row_hash);
    leaves.dedup_by(|a, b| a.row_hash == b.row_hash);
    leaves
}

/// A proof that a leaf is at `index` among `leaf_count` leaves under a root.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's position.
    pub index: u64,
    /// Leaves in the tree.
    pub leaf_count: u64,
    /// Sibling hashes from the bottom up (levels where the node was promoted
    /// have none).
    pub siblings: Vec<Hash>,
}

impl InclusionProof {
    /// Builds the proof for `index`. `None` when out of range.
    pub fn build(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
        if index >= leaves.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut level = leaves.to_vec();
        let mut i = index;
        while level.len() > 1 {
            let sib = i ^ 1;
            if sib < level.len() {
                siblings.push(level[sib]);
            }
            level = level
                .chunks(2)
                .map(|pair| {
                    if pair.len() == 2 {
                        node(&pair[0], &pair[1])
                    } else {
                        pair[0]
                    }
                })
                .collect();
            i /= 2;
        }
        Some(InclusionProof {
            index: index as u64,
            leaf_count: leaves.len() as u64,
            siblings,
        })
    }

    /// Whether `leaf` is at `self.index` under `root`. The path is derived
    /// from the index and the leaf count, not trusted from the proof.
    pub fn verify(&self, root: &Hash, leaf: &Hash) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        let (mut i, mut n) = (self.index, self.leaf_count);
        let mut acc = *leaf;
        let mut sibs = self.siblings.iter();
        while n > 1 {
            let sib = i ^ 1;
            if sib < n {
                let Some(s) = sibs.next() else { return false };
                acc = if i % 2 == 0 {
                    node(&acc, s)
                } else {
                    node(s, &acc)
                };
            }
            i /= 2;
            n = n.div_ceil(2);
        }
        sibs.next().is_none() && acc == *root
    }
}

/// An immutable datanet version, as recorded on the ledger.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DatanetVersion {
    /// The datanet.
    pub datanet: DatanetId,
    /// 1, 2, …
    pub number: u64,
    /// Merkle root over the rows.
    pub root: Hash,
    /// Rows in the version.
    pub row_count: u64,
    /// Root of the previous version (`Hash::ZERO` for the first).
    pub previous_root: Hash,
}

impl Canonical for DatanetVersion {
    const NAME: &'static str = "datanet version";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::of(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_small_tree_proves_and_nothing_else_does() {
        for n in 1..=17 {
            let l = leaves(n);
            let root = merkle_root(&l);
            for i in 0..n {
                let p = InclusionProof::build(&l, i).unwrap();
                assert!(p.verify(&root, &l[i]), "n={n} i={i}");
                assert!(!p.verify(&root, &Hash::of(b"other")));
                let mut moved = p.clone();
                moved.index = ((i + 1) % n) as u64;
                assert!(n == 1 || !moved.verify(&root, &l[i]), "n={n} i={i}");
            }
            assert!(InclusionProof::build(&l, n).is_none());
        }
    }

    #[test]
    fn root_commits_to_order_and_count() {
        let l = leaves(3);
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_eq!(merkle_root(&l[..1]), l[0]);
        assert_ne!(merkle_root(&l), merkle_root(&[l[1], l[0], l[2]]));
        // No duplication of the odd node: [a,b,c] differs from [a,b,c,c].
        assert_ne!(merkle_root(&l), merkle_root(&[l[0], l[1], l[2], l[2]]));
    }
}
