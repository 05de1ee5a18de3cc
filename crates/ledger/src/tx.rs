//! Transactions: what a user signs.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{
    Address, Amount, Canonical, DecodeError, Hash, PublicKey, SecretKey, Signature, TxHash,
};

use crate::error::TxError;
use crate::genesis::ParamChange;

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
}

/// Number of [`Action`] variants (their borsh tags are `0..ACTION_VARIANTS`).
pub(crate) const ACTION_VARIANTS: u8 = 7;

impl Action {
    /// The module that executes this action.
    pub fn module(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "bank",
            Action::Stake { .. } | Action::Unstake { .. } | Action::Delegate { .. } => "staking",
            Action::Propose { .. } | Action::Deposit { .. } | Action::Vote { .. } => "governance",
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
        // The last variant's tag must be ACTION_VARIANTS - 1.
        let last = Action::Vote {
            proposal: 0,
            choice: VoteChoice::Yes,
        };
        assert_eq!(borsh::to_vec(&last).unwrap()[0], ACTION_VARIANTS - 1);
    }
}
