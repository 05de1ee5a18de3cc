//! The Tributary ledger.
//!
//! Every other part of Tributary (datanets, adapters, paid inference,
//! payouts) records itself here, so this crate is built to be audited: one
//! embedded redb file (crash-safe, one write transaction per block), an
//! authenticated state (a Jellyfish Merkle tree; any entry or its absence
//! can be proven against a block's state root with [`verify_proof`], which
//! touches no database), and a replay verifier ([`Ledger::verify_chain`])
//! that re-executes every block from genesis and names the first height
//! where anything differs.
//!
//! It owns transactions ([`Transaction`], [`SignedTransaction`]), blocks
//! ([`BlockHeader`]), execution by modules (bank, staking/gOPEN, governance,
//! the datanet registry, the model registry and inference settlement with
//! its stakers' reward accumulator), storage, the [`Mempool`], state proofs and
//! replay, and the mempool's crash journal ([`MempoolJournal`]). It depends only on `trib-types` (hashes, amounts, ZIP-215 keys,
//! canonical encoding); `trib-node` wires it to HTTP and a block-production
//! loop, and `trib-cli` exposes it as `trib tx`, `trib query` and
//! `trib ledger`.
//!
//! Design notes and formulas: `docs/ledger.md`.
//!
//! Deviations from the API first sketched for the node engineer:
//! - `TxRecord::receipt` has no status field: only successful transactions
//!   are committed; rejected ones are reported in [`BlockOutcome::rejected`].
//! - [`Supply`] has two more parts than `{open, gopen, unbonding}`:
//!   `deposits` (governance escrow) and `burned`.
//! - [`Params`] has two more fields: `gov_deposit_period_blocks` and
//!   `gov_veto_bps` (and [`VoteChoice::Veto`] exists).
//! - `height()`/`head()` are infallible (the head is cached in memory).
//! - [`Mempool::add`] takes the ledger (`&Ledger`) to read committed state;
//!   [`Mempool::recheck`] must be called after each block.
//! - [`SignedTransaction::decode_checked`] decodes external bytes with
//!   precise [`TxError`]s (oversize, unknown action, malformed).

mod block;
mod error;
mod exec;
mod genesis;
mod journal;
mod ledger;
mod mempool;
mod modules;
mod proof;
mod state;
mod store;
mod tx;
mod views;

pub use block::{
    tx_root, Block, BlockHeader, BlockOutcome, Event, PhaseTimings, Receipt, RejectedTx, TxRecord,
};
pub use error::{GenesisError, LedgerError, ProofError, TxError, VerifyError};
pub use genesis::{
    treasury_address, FeeSplit, Genesis, ParamChange, ParamChangeParseError, Params,
    BPS_DENOMINATOR,
};
pub use journal::{Durable, JournalError, MempoolJournal};
pub use ledger::{Ledger, VerifyReport};
pub use mempool::Mempool;
pub use proof::{verify_proof, StateProof, StateValue};
pub use state::{
    Account, Proposal, ProposalStatus, StateKey, StateKeyParseError, Supply, Tally, Unbonding,
};
pub use tx::{Action, SignedTransaction, Transaction, VoteChoice};

pub use modules::datanet::{
    datanet_id, AccessGrant, Contribution, ContributionStatus, CurationMode, CurationVote,
    DataType, Datanet, DatanetVersion, Reputation, Visibility,
};
pub use modules::registry::{Adapter, BaseModel};
pub use modules::settlement::{
    inference_fee, staking_pool_address, FeeParts, FeeSchedule, InferenceReceipt, PayoutLine,
    PayoutRef, PayoutRole, RewardPool, StakerRewards, MIN_REWARD_GOPEN, REWARD_SCALE,
};
pub use views::{DatanetRef, Page, Payout, PayoutPage, MAX_PAGE_LIMIT};
