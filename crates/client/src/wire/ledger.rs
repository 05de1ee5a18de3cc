//! JSON shapes of the ledger routes (`/v1/status`, `/v1/accounts`,
//! `/v1/tx`, `/v1/blocks`, `/v1/supply`). Amounts are base-unit strings
//! (see `trib_types::Amount`); hashes and addresses are text.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use trib_ledger::{Block, Receipt, SignedTransaction, Supply, Unbonding};
use trib_types::{Address, Amount, BlockHash, Hash, TxHash};

/// Answer to `POST /v1/tx`: the transaction is in the mempool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The transaction id.
    #[schema(value_type = schema::Hash)]
    pub hash: TxHash,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// The chain id transactions must carry.
    pub chain_id: String,
    /// Height of the latest block.
    pub height: u64,
    /// Hash of the latest block.
    #[schema(value_type = schema::Hash)]
    pub head_hash: BlockHash,
    /// State root after the latest block.
    #[schema(value_type = schema::Hash)]
    pub state_root: Hash,
    /// Time of the latest block, unix milliseconds.
    pub time_ms: u64,
    /// The block producer's address.
    #[schema(value_type = schema::Address)]
    pub producer: Address,
    /// Transactions waiting in the mempool.
    pub mempool_size: usize,
    /// The node's software version.
    pub version: String,
}

/// `GET /v1/accounts/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The address.
    #[schema(value_type = schema::Address)]
    pub address: Address,
    /// Spendable OPEN.
    #[schema(value_type = schema::Amount)]
    pub balance: Amount,
    /// gOPEN held.
    #[schema(value_type = schema::Amount)]
    pub staked: Amount,
    /// Unstaked OPEN waiting for release.
    #[schema(value_type = Vec<Object>)]
    pub unbonding: Vec<Unbonding>,
    /// Who votes with this account's gOPEN (`None`: the account itself).
    #[schema(value_type = Option<schema::Address>)]
    pub delegate: Option<Address>,
    /// gOPEN voting power delegated to this address (its own included).
    #[schema(value_type = schema::Amount)]
    pub voting_power: Amount,
    /// Staking rewards it could claim now (`ClaimStakingRewards`): settled
    /// plus accrued since its last stake change, by the ledger's own rule
    /// (`Ledger::staking_rewards`, the computation the claim pays).
    #[serde(default)]
    #[schema(value_type = schema::Amount)]
    pub staking_rewards: Amount,
    /// Next nonce according to committed state.
    pub nonce: u64,
    /// Next nonce to sign with: committed nonce plus this sender's pending
    /// transactions in the mempool.
    pub next_nonce: u64,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Accepted into the mempool, not yet in a block.
    Pending,
    /// In a committed block.
    Committed,
}

/// `GET /v1/tx/{hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    /// The transaction id.
    #[schema(value_type = schema::Hash)]
    pub hash: TxHash,
    /// Pending or committed.
    pub status: TxStatus,
    /// Block height, when committed.
    pub height: Option<u64>,
    /// Index in the block, when committed.
    pub index: Option<u32>,
    /// The transaction.
    #[schema(value_type = Object)]
    pub tx: SignedTransaction,
    /// What it did, when committed.
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Receipt>,
}

/// `GET /v1/blocks/{height}` and `/v1/blocks/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// The block hash.
    #[schema(value_type = schema::Hash)]
    pub hash: BlockHash,
    /// The stored block (header, transaction hashes, end-block events).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub block: Block,
}

/// `GET /v1/supply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SupplyView {
    /// Where OPEN is.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub supply: Supply,
    /// The sum of all parts (constant without governed mint).
    #[schema(value_type = schema::Amount)]
    pub total: Amount,
}
