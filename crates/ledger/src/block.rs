//! Blocks, receipts and events.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{
    AdapterId, Address, Amount, BlockHash, Canonical, ContributionId, DatanetId, Hash, ModelId,
    PublicKey, ReceiptId, SecretKey, Signature, TxHash,
};

use crate::error::TxError;
use crate::genesis::ParamChange;
use crate::state::ProposalStatus;
use crate::tx::{SignedTransaction, VoteChoice};

/// A block header. The producer signs [`BlockHeader::hash`], which covers
/// every field except the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    /// Height; the genesis block is 0.
    pub height: u64,
    /// Producer time, unix milliseconds (never before the parent's).
    pub time_ms: u64,
    /// Hash of the previous header; for the genesis block, the genesis file's hash.
    pub parent: BlockHash,
    /// Merkle root over the block's transaction hashes ([`tx_root`]).
    pub tx_root: Hash,
    /// JMT root of the state after this block (version = height).
    pub state_root: Hash,
    /// The producer's key (the genesis producer).
    pub producer: PublicKey,
    /// Producer signature over [`BlockHeader::hash`]; all zeros for the
    /// genesis block, which is fixed by the genesis file instead.
    pub signature: Signature,
}

#[derive(BorshSerialize)]
struct UnsignedHeader<'a> {
    height: u64,
    time_ms: u64,
    parent: &'a BlockHash,
    tx_root: &'a Hash,
    state_root: &'a Hash,
    producer: &'a PublicKey,
}

impl Canonical for BlockHeader {
    const NAME: &'static str = "block header";
}

impl BlockHeader {
    /// The block hash: blake3 over the header without its signature.
    pub fn hash(&self) -> BlockHash {
        let u = UnsignedHeader {
            height: self.height,
            time_ms: self.time_ms,
            parent: &self.parent,
            tx_root: &self.tx_root,
            state_root: &self.state_root,
            producer: &self.producer,
        };
        let bytes = borsh::to_vec(&u).expect("borsh encoding into a Vec cannot fail");
        BlockHash(Hash::domain("tributary block header v1", &[&bytes]))
    }

    /// Signs the header in place.
    pub(crate) fn sign(&mut self, key: &SecretKey) {
        self.signature = key.sign(self.hash().0.as_bytes());
    }

    /// Whether the signature verifies for `producer`.
    pub fn verify_signature(&self) -> bool {
        self.producer
            .verify(self.hash().0.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// Something a transaction or an end-block hook did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Event {
    /// A fee went to the treasury.
    FeePaid {
        /// Payer.
        payer: Address,
        /// Fee.
        amount: Amount,
    },
    /// OPEN moved between accounts.
    Transfer {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: Amount,
    },
    /// OPEN locked into gOPEN.
    Staked {
        /// Account.
        account: Address,
        /// Amount.
        amount: Amount,
    },
    /// gOPEN burned; OPEN unbonding.
    UnstakeStarted {
        /// Account.
        account: Address,
        /// Amount.
        amount: Amount,
        /// Release block.
        release_height: u64,
    },
    /// Unbonded OPEN returned to the balance (end-block).
    Unbonded {
        /// Account.
        account: Address,
        /// Amount.
        amount: Amount,
    },
    /// Voting power moved.
    Delegated {
        /// Delegator.
        account: Address,
        /// Previous voter.
        from: Address,
        /// New voter.
        to: Address,
        /// gOPEN moved.
        power: Amount,
    },
    /// A proposal was submitted.
    ProposalSubmitted {
        /// Id.
        id: u64,
        /// Proposer.
        proposer: Address,
        /// The change.
        change: ParamChange,
    },
    /// A deposit was added.
    DepositAdded {
        /// Proposal.
        id: u64,
        /// Depositor.
        depositor: Address,
        /// Amount.
        amount: Amount,
    },
    /// The minimum deposit was reached; voting is open.
    VotingStarted {
        /// Proposal.
        id: u64,
        /// Last block of voting.
        voting_end_height: u64,
    },
    /// A vote was cast (or replaced).
    Voted {
        /// Proposal.
        id: u64,
        /// Voter.
        voter: Address,
        /// Choice.
        choice: VoteChoice,
    },
    /// A proposal's period ended with this status (end-block).
    ProposalFinished {
        /// Proposal.
        id: u64,
        /// New status.
        status: ProposalStatus,
    },
    /// A passed proposal's change was applied (end-block).
    ParamsChanged {
        /// Proposal.
        id: u64,
        /// The change.
        change: ParamChange,
    },
    /// A deposit was returned.
    DepositRefunded {
        /// Proposal.
        id: u64,
        /// Depositor.
        depositor: Address,
        /// Amount.
        amount: Amount,
    },
    /// A proposal's deposits were burned.
    DepositBurned {
        /// Proposal.
        id: u64,
        /// Total burned.
        amount: Amount,
    },
    /// A datanet was created.
    DatanetCreated {
        /// Id.
        id: DatanetId,
        /// Name.
        name: String,
        /// Owner.
        owner: Address,
    },
    /// A contribution was submitted and its stake escrowed.
    ContributionSubmitted {
        /// Datanet.
        datanet: DatanetId,
        /// Contribution.
        contribution: ContributionId,
        /// Contributor.
        contributor: Address,
        /// Escrowed stake.
        stake: Amount,
    },
    /// A validator voted on a contribution.
    CurationVoted {
        /// Contribution.
        contribution: ContributionId,
        /// Voter.
        voter: Address,
        /// Accept or reject.
        accept: bool,
        /// The voter's power at the vote.
        power: Amount,
    },
    /// A contribution was accepted; its stake returns at `release_height`.
    ContributionAccepted {
        /// Contribution.
        contribution: ContributionId,
        /// End of the challenge window.
        release_height: u64,
    },
    /// A contribution was rejected and its stake slashed.
    ContributionRejected {
        /// Contribution.
        contribution: ContributionId,
        /// Slashed to the treasury.
        slashed: Amount,
        /// Returned to the contributor.
        returned: Amount,
        /// Why.
        reason: String,
    },
    /// A contribution's curation period ended undecided; its stake returned.
    ContributionExpired {
        /// Contribution.
        contribution: ContributionId,
        /// Returned to the contributor.
        returned: Amount,
    },
    /// An accepted contribution's stake returned after the challenge window.
    StakeReleased {
        /// Contribution.
        contribution: ContributionId,
        /// Contributor.
        contributor: Address,
        /// Amount.
        amount: Amount,
    },
    /// A datanet version was published.
    VersionPublished {
        /// Datanet.
        datanet: DatanetId,
        /// Version number (from 1).
        version: u32,
        /// Merkle root of its rows.
        root: Hash,
        /// Rows.
        rows: u64,
    },
    /// Training access granted.
    AccessGranted {
        /// Datanet.
        datanet: DatanetId,
        /// Grantee.
        to: Address,
    },
    /// Training access revoked.
    AccessRevoked {
        /// Datanet.
        datanet: DatanetId,
        /// Former grantee.
        to: Address,
    },
    /// A base model was registered.
    BaseModelRegistered {
        /// Model.
        model: ModelId,
        /// Owner.
        owner: Address,
    },
    /// An adapter was registered.
    AdapterRegistered {
        /// Adapter.
        adapter: AdapterId,
        /// Base model.
        base: ModelId,
        /// Owner.
        owner: Address,
    },
    /// An adapter's prices changed.
    AdapterPriceSet {
        /// Adapter.
        adapter: AdapterId,
        /// Per 1k prompt tokens.
        price_in_per_1k: Amount,
        /// Per 1k completion tokens.
        price_out_per_1k: Amount,
    },
    /// A payer set an operator's allowance.
    OperatorApproved {
        /// Payer.
        payer: Address,
        /// Operator.
        operator: Address,
        /// New allowance.
        allowance: Amount,
    },
    /// An inference was settled and its fee paid out (lines in the receipt).
    InferenceSettled {
        /// Receipt.
        receipt: ReceiptId,
        /// Payer.
        payer: Address,
        /// Operator.
        operator: Address,
        /// Fee.
        fee: Amount,
        /// Whether the contributors' share used the fallback rule.
        fallback: bool,
    },
    /// Staking rewards moved to a balance.
    StakingRewardsClaimed {
        /// Account.
        account: Address,
        /// Amount.
        amount: Amount,
    },
}

/// The result of one committed transaction. Only successful transactions are
/// committed (a rejected one is left out of the block and reported in
/// [`BlockOutcome::rejected`]), so a receipt's status is always success.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct Receipt {
    /// What the transaction did, in order.
    pub events: Vec<Event>,
}

/// A committed transaction, queryable by hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct TxRecord {
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
    /// The transaction.
    pub tx: SignedTransaction,
    /// Its receipt.
    pub receipt: Receipt,
}

/// A stored block: its header, its transaction hashes and what the
/// end-block hooks did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// Header.
    pub header: BlockHeader,
    /// Transaction hashes in execution order (records via `Ledger::tx`).
    pub txs: Vec<TxHash>,
    /// Events of the end-block hooks (unbonding releases, governance).
    pub end_block_events: Vec<Event>,
}

/// A transaction left out of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedTx {
    /// Its hash.
    pub hash: TxHash,
    /// Why.
    pub error: TxError,
}

/// What `produce_block` committed.
#[derive(Clone, Debug)]
pub struct BlockOutcome {
    /// The committed header.
    pub header: BlockHeader,
    /// Committed transactions, in order.
    pub included: Vec<TxHash>,
    /// Transactions left out, with the reason.
    pub rejected: Vec<RejectedTx>,
    /// End-block events.
    pub end_block_events: Vec<Event>,
    /// Time spent per phase.
    pub timings: PhaseTimings,
}

/// Wall time of each phase of block production, for the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimings {
    /// Stateless checks (signatures, in parallel batches).
    pub stateless: std::time::Duration,
    /// Stateful checks and execution into the block overlay.
    pub execute: std::time::Duration,
    /// JMT update (new nodes, state root).
    pub state_tree: std::time::Duration,
    /// Writing tables and the durable commit (fsync).
    pub commit: std::time::Duration,
}

/// Merkle root over transaction hashes: a binary tree split at the largest
/// power of two below the length (RFC 6962 shape), with domain-separated
/// leaf and node hashes. The empty list has its own constant root.
pub fn tx_root(hashes: &[TxHash]) -> Hash {
    fn node(hashes: &[TxHash]) -> Hash {
        match hashes.len() {
            1 => Hash::domain("tributary tx root leaf v1", &[hashes[0].as_ref_bytes()]),
            n => {
                let k = n.next_power_of_two() / 2;
                let (l, r) = hashes.split_at(k);
                Hash::domain(
                    "tributary tx root node v1",
                    &[node(l).as_bytes(), node(r).as_bytes()],
                )
            }
        }
    }
    if hashes.is_empty() {
        return Hash::domain("tributary tx root empty v1", &[]);
    }
    node(hashes)
}

trait AsRefBytes {
    fn as_ref_bytes(&self) -> &[u8];
}

impl AsRefBytes for TxHash {
    fn as_ref_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_root_depends_on_order_and_content() {
        let hs: Vec<TxHash> = (0..5u8).map(|i| TxHash(Hash::of(&[i]))).collect();
        let r = tx_root(&hs);
        let mut swapped = hs.clone();
        swapped.swap(1, 2);
        assert_ne!(tx_root(&swapped), r);
        assert_ne!(tx_root(&hs[..4]), r);
        assert_ne!(tx_root(&[]), tx_root(&hs[..1]));
    }

    #[test]
    fn header_signature_covers_fields() {
        let key = SecretKey::from_seed([4; 32]);
        let mut h = BlockHeader {
            height: 1,
            time_ms: 5,
            parent: BlockHash(Hash::ZERO),
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            producer: key.public_key(),
            signature: Signature([0; 64]),
        };
        h.sign(&key);
        assert!(h.verify_signature());
        h.time_ms = 6;
        assert!(!h.verify_signature());
    }
}
