//! The datanet vocabulary every crate shares: what a datanet's rows are, who
//! curates them, who may train on them, where a contribution stands on the
//! ledger, a contributor's on-chain reputation, and how a datanet's id
//! derives from its name.
//!
//! These values are written in two places that must agree byte for byte:
//! the ledger's state and transactions (`trib-ledger`, whose state roots
//! commit to their borsh encoding) and the off-chain descriptor that
//! `trib-datanet` stores and whose hash the owner signs into
//! `CreateDatanet`. One definition here keeps them from drifting: the ledger
//! module, the datanet crate and the node all name these types. The borsh
//! encodings (variant order, field order and widths) are pinned by the tests
//! below; append variants at the end only.
//!
//! The datanet crate keeps its own, different record of a stored
//! contribution's curation (`trib_datanet::CurationStatus`): see
//! [`ContributionStatus`] for how the two relate.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::hash::Hash;
use crate::ids::DatanetId;

/// The domain under which [`datanet_id`] hashes a datanet's name.
const DATANET_ID_DOMAIN: &str = "tributary datanet id v1";

/// The id of the datanet named `name`: blake3 under the domain
/// `"tributary datanet id v1"` over the name's bytes. Names are unique
/// ledger-wide, so the id is known before creation, a datanet can be looked
/// up by name, and the id the node computes matches the one on chain.
pub fn datanet_id(name: &str) -> DatanetId {
    DatanetId(Hash::domain(DATANET_ID_DOMAIN, &[name.as_bytes()]))
}

/// What kind of rows a datanet holds; fixed at creation.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// Plain text rows (txt, md, csv, pdf, docx, and JSONL `text` records).
    Text,
    /// Instruction-tuning records (JSONL alpaca, prompt/response, messages).
    Instruction,
    /// Chat transcripts (JSONL `messages` records). Files are validated as
    /// for [`DataType::Instruction`]: JSONL records only.
    Chat,
}

impl DataType {
    /// Whether rows of this type are structured JSONL records (instruction
    /// and chat datanets), rather than text that any parser can produce.
    pub fn takes_records(self) -> bool {
        match self {
            DataType::Text => false,
            DataType::Instruction | DataType::Chat => true,
        }
    }
}

/// Who decides on pending contributions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum CurationMode {
    /// The datanet's owner accepts or rejects.
    OwnerApproval,
    /// gOPEN holders vote with their voting power; a side wins once its
    /// power reaches `quorum_bps` of all gOPEN.
    ValidatorVote {
        /// Share of all gOPEN (basis points, 1..=10,000) that decides.
        /// JSON written before the types were merged spelled it
        /// `quorum_bp`; that spelling is still read.
        #[serde(alias = "quorum_bp")]
        quorum_bps: u16,
    },
}

/// Who may train on a datanet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    Public,
    /// Only addresses the owner granted access to on the ledger (and the
    /// owner).
    Permissioned,
}

/// Where a contribution is in its on-chain life: the ledger's record of its
/// curation *and* of the stake it escrowed.
///
/// This is the source of truth. The datanet crate's store keeps a narrower
/// value per stored contribution, `trib_datanet::CurationStatus` (pending,
/// accepted, rejected): whether the contribution's rows go into the next
/// version. The node derives it from this one when it mirrors the ledger
/// (`Accepted` and `Released` become accepted, `Rejected` and `Expired`
/// become rejected); it has no notion of stakes, so the two stay separate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ContributionStatus {
    /// Waiting for curation; the stake is escrowed.
    Pending,
    /// Accepted; the stake returns at the end of the challenge window.
    Accepted,
    /// Rejected; part of the stake was slashed, the rest returned.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Accepted and its stake returned.
    Released,
    /// The curation period ended without a decision; the stake returned.
    Expired,
}

impl ContributionStatus {
    /// Whether the contribution counts as accepted data (may be published,
    /// attributed and paid).
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            ContributionStatus::Accepted | ContributionStatus::Released
        )
    }
}

/// The label the API and the ledger's errors show: `pending`, `accepted`,
/// `accepted (stake released)`, `rejected: REASON`, `expired`.
impl fmt::Display for ContributionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContributionStatus::Pending => f.write_str("pending"),
            ContributionStatus::Accepted => f.write_str("accepted"),
            ContributionStatus::Released => f.write_str("accepted (stake released)"),
            ContributionStatus::Rejected { reason } => write!(f, "rejected: {reason}"),
            ContributionStatus::Expired => f.write_str("expired"),
        }
    }
}

/// A contributor's on-chain record in one datanet, kept by the ledger as
/// curation and settlement happen.
///
/// What the ledger cannot see (submissions rejected at validation, rows
/// rejected as duplicates) the node adds from its datanet store; the
/// datanet crate's `ReputationTally` recomputes a fuller record from
/// events.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Reputation {
    /// Contributions submitted.
    pub contributions: u64,
    /// Accepted.
    pub accepted: u64,
    /// Rejected.
    pub rejected: u64,
    /// Expired undecided.
    pub expired: u64,
    /// Rows of accepted contributions.
    pub rows_accepted: u64,
    /// Total slashed.
    pub slashed: Amount,
    /// Total paid by settlement for this datanet's contributions.
    pub earnings: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borsh<T: BorshSerialize>(v: &T) -> Vec<u8> {
        borsh::to_vec(v).unwrap()
    }

    /// The ledger's state roots and signed transactions commit to these
    /// bytes, and stored descriptors were written with them: they must not
    /// change.
    #[test]
    fn borsh_encodings_are_pinned() {
        assert_eq!(borsh(&DataType::Text), [0]);
        assert_eq!(borsh(&DataType::Instruction), [1]);
        assert_eq!(borsh(&DataType::Chat), [2]);
        assert_eq!(borsh(&CurationMode::OwnerApproval), [0]);
        assert_eq!(
            borsh(&CurationMode::ValidatorVote { quorum_bps: 0x1234 }),
            [1, 0x34, 0x12]
        );
        assert_eq!(borsh(&Visibility::Public), [0]);
        assert_eq!(borsh(&Visibility::Permissioned), [1]);
        assert_eq!(borsh(&ContributionStatus::Pending), [0]);
        assert_eq!(borsh(&ContributionStatus::Accepted), [1]);
        assert_eq!(
            borsh(&ContributionStatus::Rejected { reason: "x".into() }),
            [2, 1, 0, 0, 0, b'x']
        );
        assert_eq!(borsh(&ContributionStatus::Released), [3]);
        assert_eq!(borsh(&ContributionStatus::Expired), [4]);
        let r = Reputation {
            contributions: 1,
            accepted: 2,
            rejected: 3,
            expired: 4,
            rows_accepted: 5,
            slashed: Amount(6),
            earnings: Amount(7),
        };
        let mut want = Vec::new();
        for n in 1u64..=5 {
            want.extend(n.to_le_bytes());
        }
        want.extend(6u128.to_le_bytes());
        want.extend(7u128.to_le_bytes());
        assert_eq!(borsh(&r), want);
    }

    #[test]
    fn json_spellings_are_stable_and_the_old_quorum_name_still_reads() {
        let vote = CurationMode::ValidatorVote { quorum_bps: 3_340 };
        assert_eq!(
            serde_json::to_string(&vote).unwrap(),
            r#"{"mode":"validator_vote","quorum_bps":3340}"#
        );
        let old: CurationMode =
            serde_json::from_str(r#"{"mode":"validator_vote","quorum_bp":3340}"#).unwrap();
        assert_eq!(old, vote);
        assert_eq!(serde_json::to_string(&DataType::Chat).unwrap(), r#""chat""#);
        assert_eq!(
            serde_json::to_string(&Visibility::Permissioned).unwrap(),
            r#""permissioned""#
        );
        assert_eq!(
            serde_json::to_string(&ContributionStatus::Rejected {
                reason: "dup".into()
            })
            .unwrap(),
            r#"{"status":"rejected","reason":"dup"}"#
        );
    }

    #[test]
    fn labels_and_acceptance() {
        let rejected = ContributionStatus::Rejected {
            reason: "off topic".into(),
        };
        assert_eq!(rejected.to_string(), "rejected: off topic");
        assert_eq!(
            ContributionStatus::Released.to_string(),
            "accepted (stake released)"
        );
        assert!(ContributionStatus::Accepted.is_accepted());
        assert!(ContributionStatus::Released.is_accepted());
        assert!(!rejected.is_accepted());
        assert!(!ContributionStatus::Expired.is_accepted());
        assert!(!DataType::Text.takes_records());
        assert!(DataType::Chat.takes_records() && DataType::Instruction.takes_records());
    }

    #[test]
    fn datanet_ids_depend_on_the_name_only() {
        assert_eq!(datanet_id("a"), datanet_id("a"));
        assert_ne!(datanet_id("a"), datanet_id("b"));
        // Pinned: ids recorded on chain were derived this way.
        assert_eq!(
            datanet_id("us-law").0,
            Hash::domain("tributary datanet id v1", &[b"us-law"])
        );
    }
}
