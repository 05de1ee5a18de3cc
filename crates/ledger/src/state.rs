//! State layout: typed keys and values, and the layered view that execution
//! writes into (base store → block overlay → per-transaction batch).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{AdapterId, Address, Amount, ContributionId, DatanetId, Hash, ModelId, ReceiptId};

use crate::block::Event;
use crate::error::TxError;
use crate::genesis::{ParamChange, Params};
use crate::tx::VoteChoice;

/// A key of the authenticated state. Its borsh encoding is the key of the
/// current-state table; its [`StateKey::key_hash`] is the JMT key.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StateKey {
    /// `account/<address>` → [`Account`].
    Account(Address),
    /// `params` → [`Params`].
    Params,
    /// `supply` → [`Supply`].
    Supply,
    /// `proposal/<id>` → [`Proposal`].
    Proposal(u64),
    /// `next_proposal_id` → `u64`.
    NextProposalId,
    /// `active_proposals` → `Vec<u64>`: proposals whose deposit, voting or
    /// timelock period is still running (end-block work list).
    ActiveProposals,
    /// `voting_power/<address>` → [`Amount`]: gOPEN delegated to the address
    /// (its own undelegated gOPEN included). Absent means zero.
    VotingPower(Address),
    /// `unbonding_queue/<height>` → `Vec<Address>`: accounts with an
    /// unbonding entry released at that height.
    UnbondingQueue(u64),
    /// `datanet/<id>` → [`crate::Datanet`].
    Datanet(DatanetId),
    /// `contribution/<id>` → [`crate::Contribution`].
    Contribution(ContributionId),
    /// `datanet_version/<datanet>/<n>` → [`crate::DatanetVersion`] (n from 1).
    DatanetVersion(DatanetId, u32),
    /// `datanet_access/<datanet>/<address>` → [`crate::AccessGrant`]: training
    /// access to a permissioned datanet. Absent means no access.
    DatanetAccess(DatanetId, Address),
    /// `reputation/<datanet>/<address>` → [`crate::Reputation`].
    Reputation(DatanetId, Address),
    /// `datanet_contributors/<datanet>` → `Vec<Address>` (sorted): everyone
    /// who ever contributed (the leaderboard's population).
    DatanetContributors(DatanetId),
    /// `curation_deadlines/<height>` → `Vec<ContributionId>`: contributions
    /// whose curation period ends at that height (end-block work list).
    CurationDeadlines(u64),
    /// `stake_releases/<height>` → `Vec<ContributionId>`: accepted
    /// contributions whose challenge window ends at that height.
    StakeReleases(u64),
    /// `base_model/<id>` → [`crate::BaseModel`].
    BaseModel(ModelId),
    /// `adapter/<id>` → [`crate::Adapter`].
    Adapter(AdapterId),
    /// `allowance/<payer>/<operator>` → [`Amount`]: what the operator may
    /// still charge the payer for inference. Absent means zero.
    Allowance(Address, Address),
    /// `receipt/<id>` → [`crate::InferenceReceipt`].
    Receipt(ReceiptId),
    /// `payout_count/<address>` → `u64`: payout lines indexed for the address.
    PayoutCount(Address),
    /// `payout_index/<address>/<n>` → [`crate::PayoutRef`]: the address's
    /// n-th payout line (from 0), pointing into a receipt.
    PayoutIndex(Address, u64),
    /// `staking_reward_pool` → [`crate::RewardPool`]: the stakers'
    /// reward-per-share accumulator.
    StakingRewardPool,
    /// `staker_rewards/<address>` → [`crate::StakerRewards`]: a staker's
    /// accumulator checkpoint and unclaimed rewards.
    StakerRewards(Address),
}

impl StateKey {
    /// The canonical bytes (the current-state table's key).
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// The JMT key: blake3 under the state-key domain over the canonical bytes.
    pub fn key_hash(&self) -> jmt::KeyHash {
        jmt::KeyHash(Hash::domain("tributary state key v1", &[&self.encode()]).0)
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Account(a) => write!(f, "account/{a}"),
            StateKey::Params => f.write_str("params"),
            StateKey::Supply => f.write_str("supply"),
            StateKey::Proposal(id) => write!(f, "proposal/{id}"),
            StateKey::NextProposalId => f.write_str("next_proposal_id"),
            StateKey::ActiveProposals => f.write_str("active_proposals"),
            StateKey::VotingPower(a) => write!(f, "voting_power/{a}"),
            StateKey::UnbondingQueue(h) => write!(f, "unbonding_queue/{h}"),
            StateKey::Datanet(id) => write!(f, "datanet/{id}"),
            StateKey::Contribution(id) => write!(f, "contribution/{id}"),
            StateKey::DatanetVersion(id, n) => write!(f, "datanet_version/{id}/{n}"),
            StateKey::DatanetAccess(id, a) => write!(f, "datanet_access/{id}/{a}"),
            StateKey::Reputation(id, a) => write!(f, "reputation/{id}/{a}"),
            StateKey::DatanetContributors(id) => write!(f, "datanet_contributors/{id}"),
            StateKey::CurationDeadlines(h) => write!(f, "curation_deadlines/{h}"),
            StateKey::StakeReleases(h) => write!(f, "stake_releases/{h}"),
            StateKey::BaseModel(id) => write!(f, "base_model/{id}"),
            StateKey::Adapter(id) => write!(f, "adapter/{id}"),
            StateKey::Allowance(p, o) => write!(f, "allowance/{p}/{o}"),
            StateKey::Receipt(id) => write!(f, "receipt/{id}"),
            StateKey::PayoutCount(a) => write!(f, "payout_count/{a}"),
            StateKey::PayoutIndex(a, n) => write!(f, "payout_index/{a}/{n}"),
            StateKey::StakingRewardPool => f.write_str("staking_reward_pool"),
            StateKey::StakerRewards(a) => write!(f, "staker_rewards/{a}"),
        }
    }
}

/// Text that is not a state key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid state key {0:?}: expected account/<address>, voting_power/<address>, proposal/<id>, unbonding_queue/<height>, params, supply, next_proposal_id, active_proposals, datanet/<id>, contribution/<id>, datanet_version/<id>/<n>, datanet_access/<id>/<address>, reputation/<id>/<address>, datanet_contributors/<id>, curation_deadlines/<height>, stake_releases/<height>, base_model/<id>, adapter/<id>, allowance/<payer>/<operator>, receipt/<id>, payout_count/<address>, payout_index/<address>/<n>, staking_reward_pool or staker_rewards/<address>")]
pub struct StateKeyParseError(pub String);

impl FromStr for StateKey {
    type Err = StateKeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StateKeyParseError(s.chars().take(120).collect());
        let (kind, arg) = match s.split_once('/') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("account", Some(a)) => a.parse().map(StateKey::Account).map_err(|_| err()),
            ("voting_power", Some(a)) => a.parse().map(StateKey::VotingPower).map_err(|_| err()),
            ("proposal", Some(id)) => id.parse().map(StateKey::Proposal).map_err(|_| err()),
            ("unbonding_queue", Some(h)) => {
                h.parse().map(StateKey::UnbondingQueue).map_err(|_| err())
            }
            ("params", None) => Ok(StateKey::Params),
            ("supply", None) => Ok(StateKey::Supply),
            ("next_proposal_id", None) => Ok(StateKey::NextProposalId),
            ("active_proposals", None) => Ok(StateKey::ActiveProposals),
            ("staking_reward_pool", None) => Ok(StateKey::StakingRewardPool),
            (kind, Some(arg)) => parse_registry_key(kind, arg).ok_or_else(err),
            _ => Err(err()),
        }
    }
}

/// Parses the `kind/arg[/arg2]` text of the datanet, model-registry and
/// settlement keys.
fn parse_registry_key(kind: &str, arg: &str) -> Option<StateKey> {
    fn two<A: FromStr, B: FromStr>(arg: &str) -> Option<(A, B)> {
        let (a, b) = arg.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
    Some(match kind {
        "datanet" => StateKey::Datanet(arg.parse().ok()?),
        "contribution" => StateKey::Contribution(arg.parse().ok()?),
        "datanet_version" => {
            let (d, n) = two(arg)?;
            StateKey::DatanetVersion(d, n)
        }
        "datanet_access" => {
            let (d, a) = two(arg)?;
            StateKey::DatanetAccess(d, a)
        }
        "reputation" => {
            let (d, a) = two(arg)?;
            StateKey::Reputation(d, a)
        }
        "datanet_contributors" => StateKey::DatanetContributors(arg.parse().ok()?),
        "curation_deadlines" => StateKey::CurationDeadlines(arg.parse().ok()?),
        "stake_releases" => StateKey::StakeReleases(arg.parse().ok()?),
        "base_model" => StateKey::BaseModel(arg.parse().ok()?),
        "adapter" => StateKey::Adapter(arg.parse().ok()?),
        "allowance" => {
            let (p, o) = two(arg)?;
            StateKey::Allowance(p, o)
        }
        "receipt" => StateKey::Receipt(arg.parse().ok()?),
        "payout_count" => StateKey::PayoutCount(arg.parse().ok()?),
        "payout_index" => {
            let (a, n) = two(arg)?;
            StateKey::PayoutIndex(a, n)
        }
        "staker_rewards" => StateKey::StakerRewards(arg.parse().ok()?),
        _ => return None,
    })
}

/// A pending release of unstaked OPEN.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct Unbonding {
    /// OPEN to release.
    pub amount: Amount,
    /// The block at whose end it returns to the balance.
    pub release_height: u64,
}

/// An account. Absent accounts read as the default (all zero, nonce 0).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct Account {
    /// Spendable OPEN.
    pub balance: Amount,
    /// Next expected transaction nonce.
    pub nonce: u64,
    /// gOPEN held (OPEN locked 1:1).
    pub staked: Amount,
    /// Unstaked OPEN waiting for its release height, oldest first.
    pub unbonding: Vec<Unbonding>,
    /// Who votes with this account's gOPEN; `None` means the account itself.
    pub delegate: Option<Address>,
}

impl Account {
    /// The address that holds this account's voting power.
    pub fn voter(&self, own: Address) -> Address {
        self.delegate.unwrap_or(own)
    }

    /// OPEN in unbonding entries.
    pub fn unbonding_total(&self) -> Option<Amount> {
        self.unbonding
            .iter()
            .try_fold(Amount::ZERO, |a, u| a.checked_add(u.amount))
    }

    /// Whether this is the default account (stored as absent).
    pub fn is_empty(&self) -> bool {
        *self == Account::default()
    }
}

/// Where OPEN is. The sum of the seven parts is constant (genesis total)
/// until a governed mint exists; burns move OPEN into `burned` explicitly.
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
pub struct Supply {
    /// Spendable OPEN in all balances (treasury included).
    pub open: Amount,
    /// gOPEN (staked OPEN).
    pub gopen: Amount,
    /// OPEN in unbonding entries.
    pub unbonding: Amount,
    /// OPEN held as governance deposits.
    pub deposits: Amount,
    /// OPEN burned (failed-proposal deposits).
    pub burned: Amount,
    /// OPEN escrowed as datanet contribution stakes (pending or in their
    /// challenge window).
    pub escrowed: Amount,
    /// OPEN paid to gOPEN stakers by settlement and not yet claimed
    /// (including the sub-unit dust the accumulator cannot attribute).
    pub staking_rewards: Amount,
}

impl Supply {
    /// `open + gopen + unbonding + deposits + burned + escrowed +
    /// staking_rewards`, or `None` on overflow.
    pub fn total(&self) -> Option<Amount> {
        self.open
            .checked_add(self.gopen)?
            .checked_add(self.unbonding)?
            .checked_add(self.deposits)?
            .checked_add(self.burned)?
            .checked_add(self.escrowed)?
            .checked_add(self.staking_rewards)
    }
}

/// Where a proposal is in its life.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for the minimum deposit.
    DepositPeriod,
    /// Open for votes.
    Voting,
    /// Passed; the change executes at `execute_height` (timelock).
    Passed,
    /// The change was applied.
    Executed,
    /// Quorum met, Yes share not above the threshold. Deposits refunded.
    Rejected,
    /// Quorum not met. Deposits burned or refunded by the failed-deposit rule.
    NoQuorum,
    /// Veto share above `gov_veto_bps`. Deposits burned or refunded by rule.
    Vetoed,
    /// The deposit period ended below the minimum deposit. Burned or refunded by rule.
    Expired,
    /// Passed, but at execution time the change no longer produced valid
    /// parameters (another change landed first); nothing changed.
    ExecutionFailed,
}

impl fmt::Display for ProposalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ProposalStatus::DepositPeriod => "in its deposit period",
            ProposalStatus::Voting => "voting",
            ProposalStatus::Passed => "passed (timelocked)",
            ProposalStatus::Executed => "executed",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::NoQuorum => "failed (no quorum)",
            ProposalStatus::Vetoed => "vetoed",
            ProposalStatus::Expired => "expired (deposit not reached)",
            ProposalStatus::ExecutionFailed => "failed at execution",
        };
        f.write_str(s)
    }
}

/// A vote count in voting power (gOPEN base units), taken when voting ends.
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
pub struct Tally {
    /// Yes power.
    pub yes: Amount,
    /// No power.
    pub no: Amount,
    /// Abstain power.
    pub abstain: Amount,
    /// Veto power.
    pub veto: Amount,
    /// All gOPEN at tally time (the quorum base).
    pub total_power: Amount,
}

/// A governance proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// Id (sequential from 0).
    pub id: u64,
    /// Who proposed it.
    pub proposer: Address,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The change it executes.
    pub change: ParamChange,
    /// Status.
    pub status: ProposalStatus,
    /// Block of submission.
    pub submit_height: u64,
    /// Last block of the deposit period.
    pub deposit_end_height: u64,
    /// Block at which voting opened.
    pub voting_start_height: Option<u64>,
    /// Last block of voting (tallied at its end).
    pub voting_end_height: Option<u64>,
    /// Block at whose end the change executes (after the timelock).
    pub execute_height: Option<u64>,
    /// Deposits per depositor, in order of first deposit.
    pub deposits: Vec<(Address, Amount)>,
    /// Sum of deposits.
    pub total_deposit: Amount,
    /// Votes, sorted by voter.
    pub votes: Vec<(Address, VoteChoice)>,
    /// Result, once voting ended.
    pub tally: Option<Tally>,
    /// Whether the deposits were burned (false: refunded or still held).
    pub deposits_burned: bool,
}

/// Read access to a base state (a redb table, or memory during replay).
pub(crate) trait StateRead {
    /// The stored bytes of `key`.
    fn get_raw(&self, key: &StateKey) -> Result<Option<Vec<u8>>, String>;
}

impl StateRead for HashMap<StateKey, Vec<u8>> {
    fn get_raw(&self, key: &StateKey) -> Result<Option<Vec<u8>>, String> {
        Ok(self.get(key).cloned())
    }
}

/// The writes of one block over a base state.
pub(crate) struct BlockState<'a> {
    base: &'a dyn StateRead,
    writes: HashMap<StateKey, Option<Vec<u8>>>,
    /// The block being built.
    pub height: u64,
    /// Parameters in force for this block (read at its start).
    pub params: Params,
}

impl<'a> BlockState<'a> {
    pub(crate) fn new(base: &'a dyn StateRead, height: u64, params: Params) -> Self {
        BlockState {
            base,
            writes: HashMap::new(),
            height,
            params,
        }
    }

    fn get_raw(&self, key: &StateKey) -> Result<Option<Vec<u8>>, TxError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get_raw(key).map_err(TxError::Storage),
        }
    }

    /// Starts a transaction's write batch.
    pub(crate) fn batch(&self) -> TxBatch<'_, 'a> {
        TxBatch {
            block: self,
            writes: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// Keeps a successful batch's writes.
    pub(crate) fn absorb(&mut self, writes: HashMap<StateKey, Option<Vec<u8>>>) {
        self.writes.extend(writes);
    }

    /// All writes of the block.
    pub(crate) fn into_writes(self) -> HashMap<StateKey, Option<Vec<u8>>> {
        self.writes
    }
}

/// One transaction's (or one end-block hook's) writes and events. Dropping it
/// discards everything: that is how a rejected transaction leaves no trace.
pub(crate) struct TxBatch<'b, 'a> {
    block: &'b BlockState<'a>,
    writes: HashMap<StateKey, Option<Vec<u8>>>,
    events: Vec<Event>,
}

impl TxBatch<'_, '_> {
    pub(crate) fn height(&self) -> u64 {
        self.block.height
    }

    pub(crate) fn params(&self) -> &Params {
        &self.block.params
    }

    fn get_raw(&self, key: &StateKey) -> Result<Option<Vec<u8>>, TxError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.block.get_raw(key),
        }
    }

    /// Reads and decodes a typed value.
    pub(crate) fn get<T: BorshDeserialize>(&self, key: &StateKey) -> Result<Option<T>, TxError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => borsh::from_slice(&bytes).map(Some).map_err(|e| {
                TxError::Storage(format!("stored value of {key} does not decode: {e}"))
            }),
        }
    }

    /// Writes a typed value.
    pub(crate) fn put<T: BorshSerialize>(&mut self, key: StateKey, value: &T) {
        let bytes = borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail");
        self.writes.insert(key, Some(bytes));
    }

    /// Deletes a key.
    pub(crate) fn delete(&mut self, key: StateKey) {
        self.writes.insert(key, None);
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub(crate) fn account(&self, addr: &Address) -> Result<Account, TxError> {
        Ok(self.get(&StateKey::Account(*addr))?.unwrap_or_default())
    }

    pub(crate) fn put_account(&mut self, addr: Address, account: &Account) {
        if account.is_empty() {
            self.delete(StateKey::Account(addr));
        } else {
            self.put(StateKey::Account(addr), account);
        }
    }

    pub(crate) fn supply(&self) -> Result<Supply, TxError> {
        Ok(self.get(&StateKey::Supply)?.unwrap_or_default())
    }

    pub(crate) fn put_supply(&mut self, supply: &Supply) {
        self.put(StateKey::Supply, supply);
    }

    pub(crate) fn voting_power(&self, addr: &Address) -> Result<Amount, TxError> {
        Ok(self.get(&StateKey::VotingPower(*addr))?.unwrap_or_default())
    }

    pub(crate) fn put_voting_power(&mut self, addr: Address, power: Amount) {
        if power.is_zero() {
            self.delete(StateKey::VotingPower(addr));
        } else {
            self.put(StateKey::VotingPower(addr), &power);
        }
    }

    /// Splits into writes and events (consumes the batch).
    pub(crate) fn finish(self) -> (HashMap<StateKey, Option<Vec<u8>>>, Vec<Event>) {
        (self.writes, self.events)
    }
}

/// Checked add with a named overflow error.
pub(crate) fn add(a: Amount, b: Amount, what: &'static str) -> Result<Amount, TxError> {
    a.checked_add(b).ok_or(TxError::Overflow { what })
}

/// Checked subtraction; underflow means an invariant broke (callers check
/// balances first), reported as an overflow of `what`.
pub(crate) fn sub(a: Amount, b: Amount, what: &'static str) -> Result<Amount, TxError> {
    a.checked_sub(b).ok_or(TxError::Overflow { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_key_text_round_trips() {
        let a = trib_types::SecretKey::from_seed([2; 32]).address();
        for k in [
            StateKey::Account(a),
            StateKey::VotingPower(a),
            StateKey::Proposal(7),
            StateKey::UnbondingQueue(99),
            StateKey::Params,
            StateKey::Supply,
            StateKey::NextProposalId,
            StateKey::ActiveProposals,
            StateKey::Datanet(DatanetId(Hash::of(b"d"))),
            StateKey::Contribution(ContributionId(Hash::of(b"c"))),
            StateKey::DatanetVersion(DatanetId(Hash::of(b"d")), 3),
            StateKey::DatanetAccess(DatanetId(Hash::of(b"d")), a),
            StateKey::Reputation(DatanetId(Hash::of(b"d")), a),
            StateKey::DatanetContributors(DatanetId(Hash::of(b"d"))),
            StateKey::CurationDeadlines(4),
            StateKey::StakeReleases(5),
            StateKey::BaseModel(ModelId(Hash::of(b"m"))),
            StateKey::Adapter(AdapterId(Hash::of(b"a"))),
            StateKey::Allowance(a, Address([7; 20])),
            StateKey::Receipt(ReceiptId(Hash::of(b"r"))),
            StateKey::PayoutCount(a),
            StateKey::PayoutIndex(a, 12),
            StateKey::StakingRewardPool,
            StateKey::StakerRewards(a),
        ] {
            assert_eq!(k.to_string().parse::<StateKey>().unwrap(), k);
        }
        assert!("account/xyz".parse::<StateKey>().is_err());
        assert!("params/1".parse::<StateKey>().is_err());
    }

    #[test]
    fn dropped_batch_leaves_no_writes() {
        let base: HashMap<StateKey, Vec<u8>> = HashMap::new();
        let mut block = BlockState::new(&base, 1, Params::dev());
        let a = Address([1; 20]);
        {
            let mut b = block.batch();
            b.put_account(
                a,
                &Account {
                    balance: Amount(5),
                    ..Account::default()
                },
            );
            assert_eq!(b.account(&a).unwrap().balance, Amount(5));
            // dropped without absorb
        }
        assert_eq!(block.batch().account(&a).unwrap().balance, Amount(0));
        let mut b = block.batch();
        b.put_account(
            a,
            &Account {
                balance: Amount(6),
                ..Account::default()
            },
        );
        let (w, _) = b.finish();
        block.absorb(w);
        assert_eq!(block.batch().account(&a).unwrap().balance, Amount(6));
    }
}
