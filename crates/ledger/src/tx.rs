//! Transactions: what a user signs.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{
    AdapterId, Address, Amount, Canonical, ContributionId, DatanetId, DecodeError, Hash, ModelId,
    PublicKey, ReceiptId, SecretKey, Signature, TxHash,
};

use crate::error::TxError;
use crate::genesis::ParamChange;
use crate::modules::datanet::{CurationMode, DataType, Visibility};

/// Domain of the hash a sender signs (and the transaction's id).
const TX_DOMAIN: &str = "tributary transaction v1";

/// An unsigned transaction: chain id, sender, nonce, fee and one action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// Must equal the chain's genesis chain id (no cross-chain replay).
    pub chain_id: String,
    /// The signer; its address is the account that pays.
    pub sender: PublicKey,
    /// Must equal the sender account's next nonce (0 for a fresh account).
    pub nonce: u64,
    /// Paid to the treasury; at least [`crate::Params::min_fee`].
    pub fee: Amount,
    /// What the transaction does.
    pub action: Action,
}

/// A governance vote.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum VoteChoice {
    /// For the change.
    Yes,
    /// Against the change.
    No,
    /// Counts toward quorum only.
    Abstain,
    /// Against, and a veto share above `gov_veto_bps` rejects the proposal
    /// whatever the Yes share (and burns its deposits under the burn rule).
    Veto,
}

impl std::str::FromStr for VoteChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Ok(VoteChoice::Yes),
            "no" => Ok(VoteChoice::No),
            "abstain" => Ok(VoteChoice::Abstain),
            "veto" | "no_with_veto" => Ok(VoteChoice::Veto),
            other => Err(format!(
                "invalid vote {other:?}: expected yes, no, abstain or veto"
            )),
        }
    }
}

/// What a transaction does. Each action belongs to one module
/// ([`Action::module`]); later issues append variants (datanet, model
/// registry, settlement) at the end so existing encodings stay valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// Bank: move OPEN to another account.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount in base units (> 0).
        amount: Amount,
    },
    /// Staking: lock OPEN, receive gOPEN 1:1.
    Stake {
        /// Amount (> 0).
        amount: Amount,
    },
    /// Staking: burn gOPEN now; the OPEN is released after
    /// `unbonding_period_blocks`.
    Unstake {
        /// Amount (> 0).
        amount: Amount,
    },
    /// Staking: give the voting power of all your gOPEN to `to` (yourself
    /// included). Undelegated gOPEN votes for its holder.
    Delegate {
        /// The address that votes with your gOPEN.
        to: Address,
    },
    /// Governance: propose a parameter change, with an initial deposit.
    Propose {
        /// Short title (≤ 140 bytes).
        title: String,
        /// Longer text (≤ 4,096 bytes).
        description: String,
        /// The change executed if the proposal passes.
        change: ParamChange,
        /// Initial deposit (may be below the minimum; others can add).
        deposit: Amount,
    },
    /// Governance: add to a proposal's deposit during its deposit period.
    Deposit {
        /// Proposal id.
        proposal: u64,
        /// Amount (> 0).
        amount: Amount,
    },
    /// Governance: vote during the voting period (a later vote replaces an
    /// earlier one).
    Vote {
        /// Proposal id.
        proposal: u64,
        /// The choice.
        choice: VoteChoice,
    },
    /// Datanet: create a datanet owned by the sender. Its id is
    /// [`crate::datanet_id`]`(name)`, so names are unique.
    CreateDatanet {
        /// Unique name: 1 to 64 bytes of `[a-z0-9-]`, not starting or ending with `-`.
        name: String,
        /// blake3 of the off-chain descriptor (description markdown, tags).
        metadata_hash: Hash,
        /// Kind of rows, fixed at creation.
        data_type: DataType,
        /// Who decides on contributions.
        curation: CurationMode,
        /// OPEN each contribution locks until it is decided.
        stake_per_contribution: Amount,
        /// Who may train on it.
        visibility: Visibility,
    },
    /// Datanet: submit a contribution, escrowing the datanet's stake.
    Contribute {
        /// The datanet.
        datanet: DatanetId,
        /// The contribution's id (content hash computed off-chain; unique).
        contribution: ContributionId,
        /// Merkle root over its rows.
        rows_root: Hash,
        /// Rows it holds (> 0).
        rows: u32,
        /// Bytes it holds (> 0).
        bytes: u64,
    },
    /// Datanet: accept or reject a pending contribution (the owner, or a
    /// vote by a gOPEN holder, per the datanet's curation mode).
    Curate {
        /// The contribution.
        contribution: ContributionId,
        /// Accept (true) or reject (false).
        accept: bool,
        /// Why (≤ 256 bytes; required to reject).
        reason: String,
    },
    /// Datanet: publish the next immutable version (owner only).
    PublishVersion {
        /// The datanet.
        datanet: DatanetId,
        /// Merkle root over the version's rows.
        root: Hash,
        /// Rows in the version (1 ..= the listed contributions' rows).
        rows: u64,
        /// The accepted contributions it holds (no duplicates).
        contributions: Vec<ContributionId>,
    },
    /// Datanet: grant training access to a permissioned datanet (owner only).
    GrantAccess {
        /// The datanet.
        datanet: DatanetId,
        /// Who gets access.
        to: Address,
    },
    /// Datanet: revoke a training-access grant (owner only).
    RevokeAccess {
        /// The datanet.
        datanet: DatanetId,
        /// Whose access ends.
        to: Address,
    },
    /// Model registry: register a base model owned by the sender.
    RegisterBaseModel {
        /// Content hash of the weights.
        model: ModelId,
        /// Display name (1 to 128 bytes).
        name: String,
        /// Architecture (`llama`, …; 1 to 64 bytes).
        architecture: String,
        /// Licence (SPDX id or text, 1 to 128 bytes).
        licence: String,
    },
    /// Model registry: register a LoRA adapter owned by the sender.
    RegisterAdapter {
        /// Hash of the PEFT files.
        adapter: AdapterId,
        /// Its base model (must be registered).
        base: ModelId,
        /// Display name (1 to 128 bytes).
        name: String,
        /// Datanet versions it was trained on (must exist; permissioned ones
        /// need the sender's access grant).
        datanets: Vec<(DatanetId, u32)>,
        /// Hash of the training configuration.
        config_hash: Hash,
        /// Hash of the evaluation metrics.
        metrics_hash: Hash,
        /// Price per 1,000 prompt tokens (within the governed bounds).
        price_in_per_1k: Amount,
        /// Price per 1,000 completion tokens (within the governed bounds).
        price_out_per_1k: Amount,
    },
    /// Model registry: change an adapter's prices (owner only).
    SetAdapterPrice {
        /// The adapter.
        adapter: AdapterId,
        /// New price per 1,000 prompt tokens.
        price_in_per_1k: Amount,
        /// New price per 1,000 completion tokens.
        price_out_per_1k: Amount,
    },
    /// Settlement: let `operator` charge the sender up to `allowance` for
    /// inference (replaces any previous allowance; zero revokes).
    ApproveOperator {
        /// The serving operator.
        operator: Address,
        /// The most it may charge in total from now on.
        allowance: Amount,
    },
    /// Settlement: the operator (sender) charges `payer` for one inference
    /// and pays the fee out (see docs/ledger.md, Settlement).
    SettleInference {
        /// Unique receipt id.
        receipt: ReceiptId,
        /// Who pays (must have approved the sender).
        payer: Address,
        /// The adapter served, or `None` for the base model alone.
        adapter: Option<AdapterId>,
        /// The base model (the adapter's base when there is an adapter).
        base: ModelId,
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Completion tokens.
        completion_tokens: u32,
        /// Attribution weights over accepted contributions; empty or all
        /// zero falls back to the adapter's datanets pro rata by rows.
        weights: Vec<(ContributionId, u64)>,
        /// Attribution method (`token`, `datainf`, …; ≤ 64 bytes).
        method: String,
        /// Hash of the attribution evidence.
        evidence_hash: Hash,
        /// The datanet versions the answer was attributed against: each
        /// must be published and among the adapter's training versions
        /// (required when the adapter has any); none for the base model.
        #[serde(default)]
        datanets: Vec<(DatanetId, u32)>,
    },
    /// Settlement: move the sender's accrued staking rewards to its balance.
    ClaimStakingRewards,
}

/// Number of [`Action`] variants (their borsh tags are `0..ACTION_VARIANTS`).
pub(crate) const ACTION_VARIANTS: u8 = 19;

impl Action {
    /// The module that executes this action.
    pub fn module(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "bank",
            Action::Stake { .. } | Action::Unstake { .. } | Action::Delegate { .. } => "staking",
            Action::Propose { .. } | Action::Deposit { .. } | Action::Vote { .. } => "governance",
            Action::CreateDatanet { .. }
            | Action::Contribute { .. }
            | Action::Curate { .. }
            | Action::PublishVersion { .. }
            | Action::GrantAccess { .. }
            | Action::RevokeAccess { .. } => "datanet",
            Action::RegisterBaseModel { .. }
            | Action::RegisterAdapter { .. }
            | Action::SetAdapterPrice { .. } => "model_registry",
            Action::ApproveOperator { .. }
            | Action::SettleInference { .. }
            | Action::ClaimStakingRewards => "settlement",
        }
    }

    /// A short name for logs and errors (`"transfer"`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
            Action::Stake { .. } => "stake",
            Action::Unstake { .. } => "unstake",
            Action::Delegate { .. } => "delegate",
            Action::Propose { .. } => "propose",
            Action::Deposit { .. } => "deposit",
            Action::Vote { .. } => "vote",
            Action::CreateDatanet { .. } => "create_datanet",
            Action::Contribute { .. } => "contribute",
            Action::Curate { .. } => "curate",
            Action::PublishVersion { .. } => "publish_version",
            Action::GrantAccess { .. } => "grant_access",
            Action::RevokeAccess { .. } => "revoke_access",
            Action::RegisterBaseModel { .. } => "register_base_model",
            Action::RegisterAdapter { .. } => "register_adapter",
            Action::SetAdapterPrice { .. } => "set_adapter_price",
            Action::ApproveOperator { .. } => "approve_operator",
            Action::SettleInference { .. } => "settle_inference",
            Action::ClaimStakingRewards => "claim_staking_rewards",
        }
    }
}

impl Transaction {
    /// The hash the sender signs; it is also the transaction's id
    /// ([`SignedTransaction::hash`]). It covers every field, chain id included.
    pub fn signing_hash(&self) -> Hash {
        let bytes = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        Hash::domain(TX_DOMAIN, &[&bytes])
    }

    /// Signs the transaction. The key should be the sender's (a wrong key
    /// produces a transaction that every node rejects as a bad signature).
    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign(self.signing_hash().as_bytes());
        SignedTransaction {
            tx: self,
            signature,
        }
    }

    /// The sender's address.
    pub fn sender_address(&self) -> Address {
        self.sender.address()
    }
}

/// A transaction with its sender's signature: the unit of the mempool and of
/// blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    /// The signed content.
    pub tx: Transaction,
    /// ed25519 signature (ZIP-215) over [`Transaction::signing_hash`].
    pub signature: Signature,
}

impl Canonical for SignedTransaction {
    const NAME: &'static str = "signed transaction";
}

impl SignedTransaction {
    /// The transaction id: [`Transaction::signing_hash`]. It does not cover
    /// the signature, so a re-encoded signature cannot make a "new"
    /// transaction (the nonce stops replays anyway).
    pub fn hash(&self) -> TxHash {
        TxHash(self.tx.signing_hash())
    }

    /// Verifies the signature alone.
    pub fn verify_signature(&self) -> Result<(), TxError> {
        self.tx
            .sender
            .verify(self.tx.signing_hash().as_bytes(), &self.signature)
            .map_err(|_| TxError::BadSignature {
                sender: self.tx.sender_address(),
            })
    }

    /// The canonical encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        // chain id (4 + len) + key 32 + nonce 8 + fee 16 + action + sig 64
        self.encode().len()
    }

    /// Decodes a transaction received from outside (HTTP body, file), with
    /// precise errors: oversize, unknown action tag, or malformed bytes.
    pub fn decode_checked(bytes: &[u8], max_len: usize) -> Result<SignedTransaction, TxError> {
        match <SignedTransaction as Canonical>::decode(bytes, max_len) {
            Ok(tx) => Ok(tx),
            Err(DecodeError::Oversize { len, max, .. }) => Err(TxError::Oversize { len, max }),
            Err(DecodeError::Malformed { reason, .. }) => {
                if let Some(tag) = action_tag(bytes) {
                    if tag >= ACTION_VARIANTS {
                        return Err(TxError::UnknownAction { tag });
                    }
                }
                Err(TxError::Malformed { reason })
            }
        }
    }
}

/// The action's variant tag in an encoded signed transaction, if the bytes
/// are long enough to hold one.
fn action_tag(bytes: &[u8]) -> Option<u8> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    // chain id string, then sender (32), nonce (8), fee (16).
    let at = 4usize.checked_add(len)?.checked_add(32 + 8 + 16)?;
    bytes.get(at).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SecretKey) -> SignedTransaction {
        Transaction {
            chain_id: "c".into(),
            sender: key.public_key(),
            nonce: 3,
            fee: Amount(10),
            action: Action::Transfer {
                to: Address([9; 20]),
                amount: Amount(5),
            },
        }
        .sign(key)
    }

    #[test]
    fn signed_transaction_round_trips_and_verifies() {
        let key = SecretKey::from_seed([1; 32]);
        let stx = sample(&key);
        stx.verify_signature().unwrap();
        let bytes = stx.encode();
        assert_eq!(
            SignedTransaction::decode_checked(&bytes, 1024).unwrap(),
            stx
        );
        let mut other = stx.clone();
        other.tx.nonce = 4;
        assert!(matches!(
            other.verify_signature(),
            Err(TxError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_action_tag_is_named() {
        let key = SecretKey::from_seed([1; 32]);
        let mut bytes = sample(&key).encode();
        let at = 4 + 1 + 32 + 8 + 16;
        assert_eq!(bytes[at], 0);
        bytes[at] = 42;
        assert_eq!(
            SignedTransaction::decode_checked(&bytes, 1024),
            Err(TxError::UnknownAction { tag: 42 })
        );
        assert!(matches!(
            SignedTransaction::decode_checked(&bytes, 10),
            Err(TxError::Oversize { len: _, max: 10 })
        ));
    }

    #[test]
    fn action_variant_count_matches_the_enum() {
        // The last variant's tag must be ACTION_VARIANTS - 1, and the
        // original seven keep their tags (old encodings stay valid).
        let vote = Action::Vote {
            proposal: 0,
            choice: VoteChoice::Yes,
        };
        assert_eq!(borsh::to_vec(&vote).unwrap()[0], 6);
        let last = Action::ClaimStakingRewards;
        assert_eq!(borsh::to_vec(&last).unwrap()[0], ACTION_VARIANTS - 1);
    }
}
