//! State proofs: one entry (or its absence) against a block's state root.

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use serde::{Deserialize, Serialize};
use trib_types::{Address, Amount, Hash};

use crate::error::ProofError;
use crate::genesis::Params;
use crate::modules::datanet::{AccessGrant, Contribution, Datanet, DatanetVersion, Reputation};
use crate::modules::registry::{Adapter, BaseModel};
use crate::modules::settlement::{InferenceReceipt, PayoutRef, RewardPool, StakerRewards};
use crate::state::{Account, Proposal, StateKey, Supply};
use trib_types::ContributionId;

/// A decoded state value. Its canonical bytes (borsh of the inner value) are
/// what the JMT leaf commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StateValue {
    /// For `account/<address>`.
    Account(Account),
    /// For `params`.
    Params(Params),
    /// For `supply`.
    Supply(Supply),
    /// For `proposal/<id>` (boxed: much larger than the other values).
    Proposal(Box<Proposal>),
    /// For `next_proposal_id`.
    NextProposalId(u64),
    /// For `active_proposals`.
    ActiveProposals(Vec<u64>),
    /// For `voting_power/<address>`.
    VotingPower(Amount),
    /// For `unbonding_queue/<height>`.
    UnbondingQueue(Vec<Address>),
    /// For `datanet/<id>`.
    Datanet(Box<Datanet>),
    /// For `contribution/<id>`.
    Contribution(Box<Contribution>),
    /// For `datanet_version/<id>/<n>`.
    DatanetVersion(Box<DatanetVersion>),
    /// For `datanet_access/<id>/<address>`.
    DatanetAccess(AccessGrant),
    /// For `reputation/<id>/<address>`.
    Reputation(Reputation),
    /// For `datanet_contributors/<id>`.
    DatanetContributors(Vec<Address>),
    /// For `curation_deadlines/<height>`.
    CurationDeadlines(Vec<ContributionId>),
    /// For `stake_releases/<height>`.
    StakeReleases(Vec<ContributionId>),
    /// For `base_model/<id>`.
    BaseModel(Box<BaseModel>),
    /// For `adapter/<id>`.
    Adapter(Box<Adapter>),
    /// For `allowance/<payer>/<operator>`.
    Allowance(Amount),
    /// For `receipt/<id>`.
    Receipt(Box<InferenceReceipt>),
    /// For `payout_count/<address>`.
    PayoutCount(u64),
    /// For `payout_index/<address>/<n>`.
    PayoutIndex(PayoutRef),
    /// For `staking_reward_pool`.
    StakingRewardPool(RewardPool),
    /// For `staker_rewards/<address>`.
    StakerRewards(StakerRewards),
}

impl StateValue {
    /// Decodes the stored bytes of `key`.
    pub fn decode(key: &StateKey, bytes: &[u8]) -> Result<StateValue, std::io::Error> {
        fn d<T: BorshDeserialize>(b: &[u8]) -> Result<T, std::io::Error> {
            borsh::from_slice(b)
        }
        Ok(match key {
            StateKey::Account(_) => StateValue::Account(d(bytes)?),
            StateKey::Params => StateValue::Params(d(bytes)?),
            StateKey::Supply => StateValue::Supply(d(bytes)?),
            StateKey::Proposal(_) => StateValue::Proposal(d(bytes)?),
            StateKey::NextProposalId => StateValue::NextProposalId(d(bytes)?),
            StateKey::ActiveProposals => StateValue::ActiveProposals(d(bytes)?),
            StateKey::VotingPower(_) => StateValue::VotingPower(d(bytes)?),
            StateKey::UnbondingQueue(_) => StateValue::UnbondingQueue(d(bytes)?),
            StateKey::Datanet(..) => StateValue::Datanet(d(bytes)?),
            StateKey::Contribution(..) => StateValue::Contribution(d(bytes)?),
            StateKey::DatanetVersion(..) => StateValue::DatanetVersion(d(bytes)?),
            StateKey::DatanetAccess(..) => StateValue::DatanetAccess(d(bytes)?),
            StateKey::Reputation(..) => StateValue::Reputation(d(bytes)?),
            StateKey::DatanetContributors(..) => StateValue::DatanetContributors(d(bytes)?),
            StateKey::CurationDeadlines(..) => StateValue::CurationDeadlines(d(bytes)?),
            StateKey::StakeReleases(..) => StateValue::StakeReleases(d(bytes)?),
            StateKey::BaseModel(..) => StateValue::BaseModel(d(bytes)?),
            StateKey::Adapter(..) => StateValue::Adapter(d(bytes)?),
            StateKey::Allowance(..) => StateValue::Allowance(d(bytes)?),
            StateKey::Receipt(..) => StateValue::Receipt(d(bytes)?),
            StateKey::PayoutCount(..) => StateValue::PayoutCount(d(bytes)?),
            StateKey::PayoutIndex(..) => StateValue::PayoutIndex(d(bytes)?),
            StateKey::StakingRewardPool => StateValue::StakingRewardPool(d(bytes)?),
            StateKey::StakerRewards(..) => StateValue::StakerRewards(d(bytes)?),
        })
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        fn e<T: BorshSerialize>(v: &T) -> Vec<u8> {
            borsh::to_vec(v).expect("borsh encoding into a Vec cannot fail")
        }
        match self {
            StateValue::Account(v) => e(v),
            StateValue::Params(v) => e(v),
            StateValue::Supply(v) => e(v),
            StateValue::Proposal(v) => e(v),
            StateValue::NextProposalId(v) => e(v),
            StateValue::ActiveProposals(v) => e(v),
            StateValue::VotingPower(v) => e(v),
            StateValue::UnbondingQueue(v) => e(v),
            StateValue::Datanet(v) => e(v),
            StateValue::Contribution(v) => e(v),
            StateValue::DatanetVersion(v) => e(v),
            StateValue::DatanetAccess(v) => e(v),
            StateValue::Reputation(v) => e(v),
            StateValue::DatanetContributors(v) => e(v),
            StateValue::CurationDeadlines(v) => e(v),
            StateValue::StakeReleases(v) => e(v),
            StateValue::BaseModel(v) => e(v),
            StateValue::Adapter(v) => e(v),
            StateValue::Allowance(v) => e(v),
            StateValue::Receipt(v) => e(v),
            StateValue::PayoutCount(v) => e(v),
            StateValue::PayoutIndex(v) => e(v),
            StateValue::StakingRewardPool(v) => e(v),
            StateValue::StakerRewards(v) => e(v),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            StateValue::Account(_) => "account",
            StateValue::Params(_) => "params",
            StateValue::Supply(_) => "supply",
            StateValue::Proposal(_) => "proposal",
            StateValue::NextProposalId(_) => "next_proposal_id",
            StateValue::ActiveProposals(_) => "active_proposals",
            StateValue::VotingPower(_) => "voting_power",
            StateValue::UnbondingQueue(_) => "unbonding_queue",
            StateValue::Datanet(_) => "datanet",
            StateValue::Contribution(_) => "contribution",
            StateValue::DatanetVersion(_) => "datanet_version",
            StateValue::DatanetAccess(_) => "datanet_access",
            StateValue::Reputation(_) => "reputation",
            StateValue::DatanetContributors(_) => "datanet_contributors",
            StateValue::CurationDeadlines(_) => "curation_deadlines",
            StateValue::StakeReleases(_) => "stake_releases",
            StateValue::BaseModel(_) => "base_model",
            StateValue::Adapter(_) => "adapter",
            StateValue::Allowance(_) => "allowance",
            StateValue::Receipt(_) => "receipt",
            StateValue::PayoutCount(_) => "payout_count",
            StateValue::PayoutIndex(_) => "payout_index",
            StateValue::StakingRewardPool(_) => "staking_reward_pool",
            StateValue::StakerRewards(_) => "staker_rewards",
        }
    }

    fn matches(&self, key: &StateKey) -> bool {
        matches!(
            (key, self),
            (StateKey::Account(_), StateValue::Account(_))
                | (StateKey::Params, StateValue::Params(_))
                | (StateKey::Supply, StateValue::Supply(_))
                | (StateKey::Proposal(_), StateValue::Proposal(_))
                | (StateKey::NextProposalId, StateValue::NextProposalId(_))
                | (StateKey::ActiveProposals, StateValue::ActiveProposals(_))
                | (StateKey::VotingPower(_), StateValue::VotingPower(_))
                | (StateKey::UnbondingQueue(_), StateValue::UnbondingQueue(_))
                | (StateKey::Datanet(..), StateValue::Datanet(_))
                | (StateKey::Contribution(..), StateValue::Contribution(_))
                | (StateKey::DatanetVersion(..), StateValue::DatanetVersion(_))
                | (StateKey::DatanetAccess(..), StateValue::DatanetAccess(_))
                | (StateKey::Reputation(..), StateValue::Reputation(_))
                | (
                    StateKey::DatanetContributors(..),
                    StateValue::DatanetContributors(_)
                )
                | (
                    StateKey::CurationDeadlines(..),
                    StateValue::CurationDeadlines(_)
                )
                | (StateKey::StakeReleases(..), StateValue::StakeReleases(_))
                | (StateKey::BaseModel(..), StateValue::BaseModel(_))
                | (StateKey::Adapter(..), StateValue::Adapter(_))
                | (StateKey::Allowance(..), StateValue::Allowance(_))
                | (StateKey::Receipt(..), StateValue::Receipt(_))
                | (StateKey::PayoutCount(..), StateValue::PayoutCount(_))
                | (StateKey::PayoutIndex(..), StateValue::PayoutIndex(_))
                | (
                    StateKey::StakingRewardPool,
                    StateValue::StakingRewardPool(_)
                )
                | (StateKey::StakerRewards(..), StateValue::StakerRewards(_))
        )
    }
}

/// A Merkle proof of one state entry (or of its absence) at a block.
///
/// Serialises to JSON (`trib ledger prove` prints it, `trib ledger
/// check-proof` reads it back). The proof is a JMT `SparseMerkleProof` with
/// SHA-256 node hashing (the `jmt` crate's standard hasher); the key's JMT
/// key is [`StateKey::key_hash`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateProof {
    /// The block whose state root the proof is against.
    pub height: u64,
    /// That block's state root (trust it only if it matches a header you trust).
    pub state_root: Hash,
    /// The proven key.
    pub key: StateKey,
    /// Its value at that block, or `None`: the proof then shows absence.
    pub value: Option<StateValue>,
    /// The Merkle path.
    pub proof: SparseMerkleProof<sha2::Sha256>,
}

/// Verifies `proof` against a trusted `state_root`, without any database:
/// recomputes the key hash from the key and the leaf from the value's
/// canonical bytes, and walks the Merkle path up to the root.
pub fn verify_proof(state_root: Hash, proof: &StateProof) -> Result<(), ProofError> {
    if proof.state_root != state_root {
        return Err(ProofError::RootMismatch {
            trusted: state_root,
            proof_root: proof.state_root,
        });
    }
    if let Some(v) = &proof.value {
        if !v.matches(&proof.key) {
            return Err(ProofError::KindMismatch {
                key: proof.key.to_string(),
                value: v.kind(),
            });
        }
    }
    let bytes = proof.value.as_ref().map(StateValue::encode);
    proof
        .proof
        .verify(jmt::RootHash(state_root.0), proof.key.key_hash(), bytes)
        .map_err(|e| ProofError::Invalid {
            key: proof.key.to_string(),
            reason: e.to_string(),
        })
}
