//! The genesis file and the governed parameters.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{Address, Amount, Hash, PublicKey};

use crate::error::GenesisError;

/// 100% in basis points.
pub const BPS_DENOMINATOR: u16 = 10_000;

/// The treasury account: it receives every transaction fee.
///
/// The address is the first 20 bytes of `Hash::domain("tributary treasury v1", [])`.
/// No ed25519 key is known to hash to it, so nobody can sign for it: OPEN leaves
/// the treasury only through module logic (later issues: governed spends).
pub fn treasury_address() -> Address {
    let h = Hash::domain("tributary treasury v1", &[]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h.0[..20]);
    Address(a)
}

/// How a settled inference fee is split, in basis points summing to 10,000.
///
/// Settlement (a later issue) uses it; it lives in [`Params`] now so that
/// governance can already change it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct FeeSplit {
    /// Data contributors (divided by attribution weight).
    pub contributors_bps: u16,
    /// The adapter's owner.
    pub adapter_owner_bps: u16,
    /// The base model's owner.
    pub base_model_owner_bps: u16,
    /// gOPEN stakers.
    pub stakers_bps: u16,
    /// The treasury.
    pub treasury_bps: u16,
}

impl Default for FeeSplit {
    fn default() -> Self {
        FeeSplit {
            contributors_bps: 5_000,
            adapter_owner_bps: 2_000,
            base_model_owner_bps: 1_000,
            stakers_bps: 1_000,
            treasury_bps: 1_000,
        }
    }
}

impl FeeSplit {
    /// Checks that the five parts sum to exactly 10,000 basis points.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let sum = [
            self.contributors_bps,
            self.adapter_owner_bps,
            self.base_model_owner_bps,
            self.stakers_bps,
            self.treasury_bps,
        ]
        .iter()
        .map(|b| u32::from(*b))
        .sum::<u32>();
        if sum != u32::from(BPS_DENOMINATOR) {
            return Err(GenesisError::InvalidParam {
                name: "fee_split",
                reason: format!("parts sum to {sum} basis points, expected 10000"),
            });
        }
        Ok(())
    }
}

/// The governed parameters. Changed only by a passed governance proposal,
/// executed by the ledger itself after the timelock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(default)]
pub struct Params {
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Largest accepted signed transaction, in canonical bytes.
    pub max_tx_bytes: u32,
    /// Smallest fee a transaction may pay.
    pub min_fee: Amount,
    /// Blocks between an `Unstake` and the release of its OPEN.
    pub unbonding_period_blocks: u64,
    /// Total deposit a proposal needs before voting opens.
    pub gov_min_deposit: Amount,
    /// Blocks a proposal may wait for its minimum deposit before it expires.
    pub gov_deposit_period_blocks: u64,
    /// Blocks a proposal is open for votes.
    pub gov_voting_period_blocks: u64,
    /// Share of all gOPEN that must vote (any choice) for the result to count.
    pub gov_quorum_bps: u16,
    /// Share of Yes among Yes + No + Veto needed to pass.
    pub gov_threshold_bps: u16,
    /// Share of Veto among all votes cast (abstain included) that rejects a
    /// proposal outright, whatever the Yes share.
    pub gov_veto_bps: u16,
    /// Blocks between the end of a passing vote and the execution of its change.
    pub gov_timelock_blocks: u64,
    /// Failed-deposit rule: when true, the deposits of a proposal that expires
    /// without its minimum deposit, misses quorum or is vetoed are burned;
    /// when false they are refunded. Passed and plainly rejected proposals are
    /// always refunded. See docs/ledger.md.
    pub gov_deposit_burn_on_fail: bool,
    /// Split of settled inference fees.
    pub fee_split: FeeSplit,
    /// Share of a rejected contribution's stake that is slashed (to the
    /// treasury); the rest returns to the contributor. See docs/ledger.md.
    pub datanet_slash_bps: u16,
    /// Blocks between a contribution's acceptance and the release of its
    /// stake (the challenge window).
    pub datanet_challenge_window_blocks: u64,
    /// Blocks a contribution may stay pending; at the end a validator vote is
    /// decided by the power cast, and an undecided one expires (stake returned).
    pub datanet_curation_period_blocks: u64,
    /// Lowest price per 1,000 tokens an adapter may set (input and output).
    pub model_min_price_per_1k: Amount,
    /// Highest price per 1,000 tokens an adapter may set (input and output).
    pub model_max_price_per_1k: Amount,
    /// Price per 1,000 prompt tokens of a base model served without adapter.
    pub base_price_in_per_1k: Amount,
    /// Price per 1,000 completion tokens of a base model served without adapter.
    pub base_price_out_per_1k: Amount,
}

impl Default for Params {
    /// Production-like defaults: 1-block-per-second chains get a 2-day
    /// unbonding period, a 2-day vote and a 1-day timelock.
    fn default() -> Self {
        Params {
            max_block_txs: 5_000,
            max_tx_bytes: 16 * 1024,
            min_fee: Amount(1_000_000_000_000), // 0.000001 OPEN
            unbonding_period_blocks: 172_800,
            gov_min_deposit: Amount::open(100),
            gov_deposit_period_blocks: 172_800,
            gov_voting_period_blocks: 172_800,
            gov_quorum_bps: 3_340,
            gov_threshold_bps: 5_000,
            gov_veto_bps: 3_340,
            gov_timelock_blocks: 86_400,
            gov_deposit_burn_on_fail: true,
            fee_split: FeeSplit::default(),
            datanet_slash_bps: 1_000,
            datanet_challenge_window_blocks: 17_280,
            datanet_curation_period_blocks: 172_800,
            model_min_price_per_1k: Amount::ZERO,
            model_max_price_per_1k: Amount::open(1_000),
            base_price_in_per_1k: Amount(trib_types::ONE_OPEN / 1_000),
            base_price_out_per_1k: Amount(trib_types::ONE_OPEN / 1_000),
        }
    }
}

impl Params {
    /// Short periods for demos and tests: unbonding 5 blocks, deposit period
    /// 10, voting 5, timelock 2, minimum deposit 10 OPEN, challenge window 3,
    /// curation period 10.
    pub fn dev() -> Self {
        Params {
            unbonding_period_blocks: 5,
            gov_min_deposit: Amount::open(10),
            gov_deposit_period_blocks: 10,
            gov_voting_period_blocks: 5,
            gov_timelock_blocks: 2,
            datanet_challenge_window_blocks: 3,
            datanet_curation_period_blocks: 10,
            ..Params::default()
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |name: &'static str, reason: &str| {
            Err(GenesisError::InvalidParam {
                name,
                reason: reason.to_string(),
            })
        };
        if self.max_block_txs == 0 {
            return bad("max_block_txs", "must be at least 1");
        }
        if self.max_tx_bytes < 128 {
            return bad("max_tx_bytes", "must be at least 128 bytes");
        }
        if self.unbonding_period_blocks == 0 {
            return bad("unbonding_period_blocks", "must be at least 1 block");
        }
        if self.gov_deposit_period_blocks == 0 {
            return bad("gov_deposit_period_blocks", "must be at least 1 block");
        }
        if self.gov_voting_period_blocks == 0 {
            return bad("gov_voting_period_blocks", "must be at least 1 block");
        }
        for (name, v) in [
            ("gov_quorum_bps", self.gov_quorum_bps),
            ("gov_threshold_bps", self.gov_threshold_bps),
            ("gov_veto_bps", self.gov_veto_bps),
        ] {
            if v > BPS_DENOMINATOR {
                return bad(name, "must be at most 10000 basis points");
            }
        }
        if self.gov_threshold_bps == 0 {
            return bad(
                "gov_threshold_bps",
                "must be above 0 (a proposal with no Yes votes would pass)",
            );
        }
        if self.datanet_slash_bps > BPS_DENOMINATOR {
            return bad("datanet_slash_bps", "must be at most 10000 basis points");
        }
        if self.datanet_challenge_window_blocks == 0 {
            return bad(
                "datanet_challenge_window_blocks",
                "must be at least 1 block",
            );
        }
        if self.datanet_curation_period_blocks == 0 {
            return bad("datanet_curation_period_blocks", "must be at least 1 block");
        }
        if self.model_min_price_per_1k > self.model_max_price_per_1k {
            return bad(
                "model_min_price_per_1k",
                "must not exceed model_max_price_per_1k",
            );
        }
        self.fee_split.validate()
    }

    /// The parameters after applying `change` (not validated).
    pub fn with_change(&self, change: &ParamChange) -> Params {
        let mut p = self.clone();
        match change {
            ParamChange::MaxBlockTxs(v) => p.max_block_txs = *v,
            ParamChange::MaxTxBytes(v) => p.max_tx_bytes = *v,
            ParamChange::MinFee(v) => p.min_fee = *v,
            ParamChange::UnbondingPeriodBlocks(v) => p.unbonding_period_blocks = *v,
            ParamChange::GovMinDeposit(v) => p.gov_min_deposit = *v,
            ParamChange::GovDepositPeriodBlocks(v) => p.gov_deposit_period_blocks = *v,
            ParamChange::GovVotingPeriodBlocks(v) => p.gov_voting_period_blocks = *v,
            ParamChange::GovQuorumBps(v) => p.gov_quorum_bps = *v,
            ParamChange::GovThresholdBps(v) => p.gov_threshold_bps = *v,
            ParamChange::GovVetoBps(v) => p.gov_veto_bps = *v,
            ParamChange::GovTimelockBlocks(v) => p.gov_timelock_blocks = *v,
            ParamChange::GovDepositBurnOnFail(v) => p.gov_deposit_burn_on_fail = *v,
            ParamChange::FeeSplit(v) => p.fee_split = *v,
            ParamChange::DatanetSlashBps(v) => p.datanet_slash_bps = *v,
            ParamChange::DatanetChallengeWindowBlocks(v) => p.datanet_challenge_window_blocks = *v,
            ParamChange::DatanetCurationPeriodBlocks(v) => p.datanet_curation_period_blocks = *v,
            ParamChange::ModelMinPricePer1k(v) => p.model_min_price_per_1k = *v,
            ParamChange::ModelMaxPricePer1k(v) => p.model_max_price_per_1k = *v,
            ParamChange::BasePriceInPer1k(v) => p.base_price_in_per_1k = *v,
            ParamChange::BasePriceOutPer1k(v) => p.base_price_out_per_1k = *v,
        }
        p
    }
}

/// One parameter change, the payload of a governance proposal.
///
/// Text form (for the CLI): `name=value`, e.g. `min_fee=0.01` (amounts in
/// human OPEN), `gov_quorum_bps=2500`, `gov_deposit_burn_on_fail=false`,
/// `fee_split=5000,2000,1000,1000,1000`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(rename_all = "snake_case", tag = "param", content = "value")]
pub enum ParamChange {
    /// Sets [`Params::max_block_txs`].
    MaxBlockTxs(u32),
    /// Sets [`Params::max_tx_bytes`].
    MaxTxBytes(u32),
    /// Sets [`Params::min_fee`].
    MinFee(Amount),
    /// Sets [`Params::unbonding_period_blocks`].
    UnbondingPeriodBlocks(u64),
    /// Sets [`Params::gov_min_deposit`].
    GovMinDeposit(Amount),
    /// Sets [`Params::gov_deposit_period_blocks`].
    GovDepositPeriodBlocks(u64),
    /// Sets [`Params::gov_voting_period_blocks`].
    GovVotingPeriodBlocks(u64),
    /// Sets [`Params::gov_quorum_bps`].
    GovQuorumBps(u16),
    /// Sets [`Params::gov_threshold_bps`].
    GovThresholdBps(u16),
    /// Sets [`Params::gov_veto_bps`].
    GovVetoBps(u16),
    /// Sets [`Params::gov_timelock_blocks`].
    GovTimelockBlocks(u64),
    /// Sets [`Params::gov_deposit_burn_on_fail`].
    GovDepositBurnOnFail(bool),
    /// Sets [`Params::fee_split`].
    FeeSplit(FeeSplit),
    /// Sets [`Params::datanet_slash_bps`].
    DatanetSlashBps(u16),
    /// Sets [`Params::datanet_challenge_window_blocks`].
    DatanetChallengeWindowBlocks(u64),
    /// Sets [`Params::datanet_curation_period_blocks`].
    DatanetCurationPeriodBlocks(u64),
    /// Sets [`Params::model_min_price_per_1k`].
    ModelMinPricePer1k(Amount),
    /// Sets [`Params::model_max_price_per_1k`].
    ModelMaxPricePer1k(Amount),
    /// Sets [`Params::base_price_in_per_1k`].
    BasePriceInPer1k(Amount),
    /// Sets [`Params::base_price_out_per_1k`].
    BasePriceOutPer1k(Amount),
}

/// Text that is not a `name=value` parameter change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter change {input:?}: {reason}")]
pub struct ParamChangeParseError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for ParamChange {
    type Err = ParamChangeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParamChangeParseError {
            input: s.to_string(),
            reason,
        };
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| err("expected name=value".to_string()))?;
        let (name, value) = (name.trim(), value.trim());
        fn num<T: FromStr>(v: &str) -> Result<T, String> {
            v.parse::<T>()
                .map_err(|_| format!("{v:?} is not a valid number for this parameter"))
        }
        fn amount(v: &str) -> Result<Amount, String> {
            Amount::parse_open(v).map_err(|e| e.to_string())
        }
        let change = match name {
            "max_block_txs" => num(value).map(ParamChange::MaxBlockTxs),
            "max_tx_bytes" => num(value).map(ParamChange::MaxTxBytes),
            "min_fee" => amount(value).map(ParamChange::MinFee),
            "unbonding_period_blocks" => num(value).map(ParamChange::UnbondingPeriodBlocks),
            "gov_min_deposit" => amount(value).map(ParamChange::GovMinDeposit),
            "gov_deposit_period_blocks" => num(value).map(ParamChange::GovDepositPeriodBlocks),
            "gov_voting_period_blocks" => num(value).map(ParamChange::GovVotingPeriodBlocks),
            "gov_quorum_bps" => num(value).map(ParamChange::GovQuorumBps),
            "gov_threshold_bps" => num(value).map(ParamChange::GovThresholdBps),
            "gov_veto_bps" => num(value).map(ParamChange::GovVetoBps),
            "gov_timelock_blocks" => num(value).map(ParamChange::GovTimelockBlocks),
            "gov_deposit_burn_on_fail" => value
                .parse::<bool>()
                .map(ParamChange::GovDepositBurnOnFail)
                .map_err(|_| format!("{value:?} is not true or false")),
            "fee_split" => {
                let parts: Result<Vec<u16>, String> =
                    value.split(',').map(|p| num::<u16>(p.trim())).collect();
                match parts.map_err(err)?.as_slice() {
                    [c, a, b, s, t] => Ok(ParamChange::FeeSplit(FeeSplit {
                        contributors_bps: *c,
                        adapter_owner_bps: *a,
                        base_model_owner_bps: *b,
                        stakers_bps: *s,
                        treasury_bps: *t,
                    })),
                    _ => Err("fee_split takes five comma-separated basis points: contributors,adapter_owner,base_model_owner,stakers,treasury".to_string()),
                }
            }
            "datanet_slash_bps" => num(value).map(ParamChange::DatanetSlashBps),
            "datanet_challenge_window_blocks" => {
                num(value).map(ParamChange::DatanetChallengeWindowBlocks)
            }
            "datanet_curation_period_blocks" => {
                num(value).map(ParamChange::DatanetCurationPeriodBlocks)
            }
            "model_min_price_per_1k" => amount(value).map(ParamChange::ModelMinPricePer1k),
            "model_max_price_per_1k" => amount(value).map(ParamChange::ModelMaxPricePer1k),
            "base_price_in_per_1k" => amount(value).map(ParamChange::BasePriceInPer1k),
            "base_price_out_per_1k" => amount(value).map(ParamChange::BasePriceOutPer1k),
            other => Err(format!("unknown parameter {other:?}")),
        };
        change.map_err(err)
    }
}

impl fmt::Display for ParamChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamChange::MaxBlockTxs(v) => write!(f, "max_block_txs={v}"),
            ParamChange::MaxTxBytes(v) => write!(f, "max_tx_bytes={v}"),
            ParamChange::MinFee(v) => write!(f, "min_fee={}", v.to_open_string()),
            ParamChange::UnbondingPeriodBlocks(v) => write!(f, "unbonding_period_blocks={v}"),
            ParamChange::GovMinDeposit(v) => write!(f, "gov_min_deposit={}", v.to_open_string()),
            ParamChange::GovDepositPeriodBlocks(v) => write!(f, "gov_deposit_period_blocks={v}"),
            ParamChange::GovVotingPeriodBlocks(v) => write!(f, "gov_voting_period_blocks={v}"),
            ParamChange::GovQuorumBps(v) => write!(f, "gov_quorum_bps={v}"),
            ParamChange::GovThresholdBps(v) => write!(f, "gov_threshold_bps={v}"),
            ParamChange::GovVetoBps(v) => write!(f, "gov_veto_bps={v}"),
            ParamChange::GovTimelockBlocks(v) => write!(f, "gov_timelock_blocks={v}"),
            ParamChange::GovDepositBurnOnFail(v) => write!(f, "gov_deposit_burn_on_fail={v}"),
            ParamChange::FeeSplit(s) => write!(
                f,
                "fee_split={},{},{},{},{}",
                s.contributors_bps,
                s.adapter_owner_bps,
                s.base_model_owner_bps,
                s.stakers_bps,
                s.treasury_bps
            ),
            ParamChange::DatanetSlashBps(v) => write!(f, "datanet_slash_bps={v}"),
            ParamChange::DatanetChallengeWindowBlocks(v) => {
                write!(f, "datanet_challenge_window_blocks={v}")
            }
            ParamChange::DatanetCurationPeriodBlocks(v) => {
                write!(f, "datanet_curation_period_blocks={v}")
            }
            ParamChange::ModelMinPricePer1k(v) => {
                write!(f, "model_min_price_per_1k={}", v.to_open_string())
            }
            ParamChange::ModelMaxPricePer1k(v) => {
                write!(f, "model_max_price_per_1k={}", v.to_open_string())
            }
            ParamChange::BasePriceInPer1k(v) => {
                write!(f, "base_price_in_per_1k={}", v.to_open_string())
            }
            ParamChange::BasePriceOutPer1k(v) => {
                write!(f, "base_price_out_per_1k={}", v.to_open_string())
            }
        }
    }
}

/// The genesis file (JSON): everything the chain starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: String,
    /// Genesis time, unix milliseconds.
    pub genesis_time: u64,
    /// The only key allowed to sign blocks (the sequencer).
    pub producer: PublicKey,
    /// Initial OPEN balances.
    pub allocations: Vec<(Address, Amount)>,
    /// Initial governed parameters.
    pub params: Params,
}

impl Genesis {
    /// A development genesis: chain id `tributary-dev`, time 0, [`Params::dev`].
    pub fn dev(producer: PublicKey, allocations: Vec<(Address, Amount)>) -> Genesis {
        Genesis {
            chain_id: "tributary-dev".to_string(),
            genesis_time: 0,
            producer,
            allocations,
            params: Params::dev(),
        }
    }

    /// Checks the chain id, the parameters and the allocations (no duplicate
    /// address, no overflow of the total).
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(GenesisError::InvalidChainId(self.chain_id.clone()));
        }
        self.params.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        for (addr, _) in &self.allocations {
            if !seen.insert(*addr) {
                return Err(GenesisError::DuplicateAllocation(*addr));
            }
        }
        self.total_allocated()?;
        Ok(())
    }

    /// The sum of all allocations.
    pub fn total_allocated(&self) -> Result<Amount, GenesisError> {
        self.allocations
            .iter()
            .try_fold(Amount::ZERO, |acc, (_, a)| acc.checked_add(*a))
            .ok_or(GenesisError::AllocationOverflow)
    }

    /// Parses a genesis JSON document and validates it.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis always serialises")
    }

    /// The hash the genesis block commits to (blake3 over the compact JSON).
    pub fn hash(&self) -> Hash {
        let json = serde_json::to_vec(self).expect("genesis always serialises");
        Hash::domain("tributary genesis v1", &[&json])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_change_text_round_trips() {
        for text in [
            "max_block_txs=100",
            "min_fee=0.5",
            "gov_quorum_bps=2500",
            "gov_deposit_burn_on_fail=false",
            "fee_split=4000,2000,2000,1000,1000",
            "datanet_slash_bps=2500",
            "datanet_challenge_window_blocks=7",
            "model_max_price_per_1k=2.5",
            "base_price_out_per_1k=0.001",
        ] {
            let c: ParamChange = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
        }
        assert!("nope=1"
            .parse::<ParamChange>()
            .unwrap_err()
            .reason
            .contains("unknown parameter"));
        assert!("max_block_txs=x".parse::<ParamChange>().is_err());
        assert!("fee_split=1,2".parse::<ParamChange>().is_err());
    }

    #[test]
    fn fee_split_must_sum_to_ten_thousand() {
        let mut p = Params::dev();
        p.validate().unwrap();
        p.fee_split.treasury_bps += 1;
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("10001"), "{e}");
    }

    #[test]
    fn genesis_json_round_trips() {
        let sk = trib_types::SecretKey::from_seed([3; 32]);
        let g = Genesis::dev(sk.public_key(), vec![(sk.address(), Amount::open(5))]);
        let back = Genesis::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
    }

    #[test]
    fn duplicate_allocations_are_refused() {
        let sk = trib_types::SecretKey::from_seed([3; 32]);
        let g = Genesis::dev(
            sk.public_key(),
            vec![
                (sk.address(), Amount::open(5)),
                (sk.address(), Amount::open(1)),
            ],
        );
        assert!(matches!(
            g.validate(),
            Err(GenesisError::DuplicateAllocation(_))
        ));
    }
}
