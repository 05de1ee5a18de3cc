//! Settlement: paying for inference, and the stakers' reward accumulator.
//!
//! A payer approves a serving operator for an allowance
//! ([`Action::ApproveOperator`]); the operator then settles each paid
//! inference ([`Action::SettleInference`]). The fee is
//!
//! ```text
//! fee = ceil((prompt_tokens × price_in_per_1k + completion_tokens × price_out_per_1k) / 1000)
//! ```
//!
//! (one rounding, up, over the exact sum; [`FeeSchedule`], the one fee
//! computation that the node's admission and settlement call too), taken from the payer (checked
//! against the allowance and the balance) and paid out in lines: the
//! governed [`crate::FeeSplit`] by basis points with
//! [`trib_types::split_by_bps`] (contributors, adapter owner, base-model
//! owner, stakers, treasury, in that order), then the contributors' part by
//! attribution weight with [`trib_types::split_by_weight`]. Both are
//! largest-remainder splits, so every line is a whole number of base units
//! and the lines sum to the fee exactly.
//!
//! The stakers' part goes into a reward-per-share accumulator (Synthetix /
//! Cosmos F1 style): `acc += (part × SCALE + carry) / gOPEN`, keeping the
//! division remainder in `carry` for the next distribution; a staker's
//! rewards are `staked × (acc − checkpoint) / SCALE`, settled whenever its
//! stake changes and on [`Action::ClaimStakingRewards`]. Rules in
//! docs/ledger.md, "Settlement".

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::{
    split_by_bps, split_by_weight, AdapterId, Address, Amount, ContributionId, DatanetId, Hash,
    ModelId, ReceiptId,
};

use super::datanet::{load_contribution, load_datanet, load_version, reputation};
use super::registry::{load_adapter, load_base_model, Adapter};
use super::{require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::{treasury_address, FeeSplit, Params};
use crate::state::{add, sub, StateKey, TxBatch};
use crate::tx::{Action, Transaction};

/// Fixed-point scale of the reward-per-share accumulator (10^24): a
/// staker's per-distribution rounding loss is below one base unit for any
/// stake under 10^6 OPEN, and the accumulator holds up to ~3.4·10^14 OPEN
/// of cumulative rewards per whole staked OPEN.
pub const REWARD_SCALE: u128 = 1_000_000_000_000_000_000_000_000;
/// Below this much gOPEN in total the stakers' share goes to the treasury:
/// a near-empty stake set would make the reward per share overflow.
pub const MIN_REWARD_GOPEN: Amount = Amount(trib_types::ONE_OPEN);
/// Longest attribution method name, in bytes.
const MAX_METHOD_LEN: usize = 64;
/// Most attribution weights one settlement may carry.
const MAX_WEIGHTS: usize = 1_024;
/// Most datanet versions one settlement may name (an adapter lists at most 64).
const MAX_SETTLED_VERSIONS: usize = 64;

/// The pseudo-address that stands for "all gOPEN stakers" in payout lines.
/// Like the treasury, nobody holds a key for it: the OPEN of a `Stakers`
/// line is not in any balance but in `Supply::staking_rewards`, claimable
/// through the accumulator.
pub fn staking_pool_address() -> Address {
    let h = Hash::domain("tributary staking reward pool v1", &[]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h.0[..20]);
    Address(a)
}

/// Why a payout line was paid.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum PayoutRole {
    /// A data contributor, for one contribution.
    Contributor {
        /// The contribution.
        contribution: ContributionId,
    },
    /// The adapter's owner.
    AdapterOwner,
    /// The base model's owner.
    BaseModelOwner,
    /// All gOPEN stakers (recipient: [`staking_pool_address`]).
    Stakers,
    /// The treasury.
    Treasury,
}

/// One payout of a settled fee.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct PayoutLine {
    /// Who was paid.
    pub recipient: Address,
    /// Why.
    pub role: PayoutRole,
    /// How much.
    pub amount: Amount,
}

/// The on-chain record of one settled inference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct InferenceReceipt {
    /// Id.
    pub id: ReceiptId,
    /// The operator that settled it.
    pub operator: Address,
    /// Who paid.
    pub payer: Address,
    /// The adapter served (`None`: base model only).
    pub adapter: Option<AdapterId>,
    /// The base model.
    pub base: ModelId,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Price per 1k prompt tokens applied.
    pub price_in_per_1k: Amount,
    /// Price per 1k completion tokens applied.
    pub price_out_per_1k: Amount,
    /// The fee.
    pub fee: Amount,
    /// Attribution method.
    pub method: String,
    /// Hash of the attribution evidence.
    pub evidence_hash: Hash,
    /// The datanet versions the answer was attributed against (checked:
    /// published, and among the adapter's training versions).
    #[serde(default)]
    pub datanets: Vec<(DatanetId, u32)>,
    /// The attribution weights as submitted.
    pub weights: Vec<(ContributionId, u64)>,
    /// Whether the contributors' share used the fallback rule.
    pub fallback: bool,
    /// Payout lines (zero-amount lines are left out); they sum to `fee`.
    pub lines: Vec<PayoutLine>,
    /// Block of settlement.
    pub height: u64,
}

/// Points at one payout line: `receipt.lines[line]`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct PayoutRef {
    /// The receipt.
    pub receipt: ReceiptId,
    /// Index into its lines.
    pub line: u32,
}

/// The stakers' reward-per-share accumulator.
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
pub struct RewardPool {
    /// Rewards per gOPEN base unit, times [`REWARD_SCALE`], since genesis.
    pub acc_per_share: u128,
    /// Division remainder carried to the next distribution, in units of
    /// base units × [`REWARD_SCALE`] (always below the gOPEN at that time).
    pub carry: u128,
    /// OPEN distributed to stakers since genesis.
    pub distributed: Amount,
}

/// A staker's checkpoint in the accumulator.
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
pub struct StakerRewards {
    /// `acc_per_share` when the rewards were last settled.
    pub checkpoint: u128,
    /// Settled, unclaimed rewards.
    pub accrued: Amount,
}

pub(crate) struct Settlement;

/// The one fee computation of a paid request: the prices that apply to it
/// and the governed split. Admission (the node's 402 check reserves
/// [`FeeSchedule::max_fee`]), settlement (the node signs for
/// [`FeeSchedule::fee`]; the settlement plan charges it and pays out its
/// [`FeeSchedule::parts`]) and verification (the contributors' part of a
/// receipt's fee) all call it, so they cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeSchedule {
    /// Price per 1k prompt tokens.
    pub price_in_per_1k: Amount,
    /// Price per 1k completion tokens.
    pub price_out_per_1k: Amount,
    /// The governed split of a fee.
    pub split: FeeSplit,
}

/// A fee split by [`FeeSplit`]'s basis points (largest remainder: the five
/// parts are whole base units and sum to the fee exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeParts {
    /// The data contributors' part (split further by attribution weight).
    pub contributors: Amount,
    /// The adapter owner's part.
    pub adapter_owner: Amount,
    /// The base-model owner's part.
    pub base_model_owner: Amount,
    /// The gOPEN stakers' part.
    pub stakers: Amount,
    /// The treasury's part.
    pub treasury: Amount,
}

impl FeeSplit {
    /// `fee` split into its five parts by these basis points, with
    /// [`trib_types::split_by_bps`]; `None` when the split cannot be made
    /// (all-zero basis points).
    pub fn parts(&self, fee: Amount) -> Option<FeeParts> {
        let p = split_by_bps(
            fee,
            &[
                self.contributors_bps,
                self.adapter_owner_bps,
                self.base_model_owner_bps,
                self.stakers_bps,
                self.treasury_bps,
            ],
        )
        .ok()?;
        Some(FeeParts {
            contributors: p[0],
            adapter_owner: p[1],
            base_model_owner: p[2],
            stakers: p[3],
            treasury: p[4],
        })
    }
}

impl FeeSchedule {
    /// The schedule of a request to `adapter` (its registered prices) or to
    /// the base model alone (`None`: the governed base prices), under the
    /// governed split of `params`.
    pub fn new(adapter: Option<&Adapter>, params: &Params) -> Self {
        let (price_in_per_1k, price_out_per_1k) = match adapter {
            Some(a) => (a.price_in_per_1k, a.price_out_per_1k),
            None => (params.base_price_in_per_1k, params.base_price_out_per_1k),
        };
        FeeSchedule {
            price_in_per_1k,
            price_out_per_1k,
            split: params.fee_split,
        }
    }

    /// The fee of an answer ([`inference_fee`] at these prices); `None`
    /// on overflow.
    pub fn fee(&self, prompt_tokens: u32, completion_tokens: u32) -> Option<Amount> {
        inference_fee(
            prompt_tokens,
            completion_tokens,
            self.price_in_per_1k,
            self.price_out_per_1k,
        )
    }

    /// The largest fee of a request of `prompt_tokens` that may generate up
    /// to `max_tokens` (counts beyond `u32::MAX` count as `u32::MAX`): what
    /// admission reserves.
    pub fn max_fee(&self, prompt_tokens: usize, max_tokens: usize) -> Option<Amount> {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.fee(clamp(prompt_tokens), clamp(max_tokens))
    }

    /// The five parts of `fee` under the governed split.
    pub fn parts(&self, fee: Amount) -> Option<FeeParts> {
        self.split.parts(fee)
    }
}

/// `ceil((prompt × price_in + completion × price_out) / 1000)`.
pub fn inference_fee(
    prompt_tokens: u32,
    completion_tokens: u32,
    price_in_per_1k: Amount,
    price_out_per_1k: Amount,
) -> Option<Amount> {
    let a = u128::from(prompt_tokens).checked_mul(price_in_per_1k.0)?;
    let b = u128::from(completion_tokens).checked_mul(price_out_per_1k.0)?;
    let sum = a.checked_add(b)?;
    Some(Amount(sum.div_ceil(1_000)))
}

/// The staker's rewards up to now, without writing.
pub(crate) fn pending_rewards(
    state: &TxBatch<'_, '_>,
    addr: &Address,
) -> Result<StakerRewards, TxError> {
    let pool: RewardPool = state.get(&StateKey::StakingRewardPool)?.unwrap_or_default();
    let mut r: StakerRewards = state
        .get(&StateKey::StakerRewards(*addr))?
        .unwrap_or_default();
    let staked = state.account(addr)?.staked;
    let delta = pool
        .acc_per_share
        .checked_sub(r.checkpoint)
        .ok_or(TxError::Overflow {
            what: "staking reward checkpoint",
        })?;
    let earned = staked
        .mul_div_floor(delta, REWARD_SCALE)
        .ok_or(TxError::Overflow {
            what: "staking rewards",
        })?;
    r.accrued = add(r.accrued, earned, "staking rewards")?;
    r.checkpoint = pool.acc_per_share;
    Ok(r)
}

/// Settles the staker's rewards at the current accumulator. Must run before
/// its gOPEN changes (the staking module calls it on Stake and Unstake).
pub(crate) fn settle_staker(state: &mut TxBatch<'_, '_>, addr: Address) -> Result<(), TxError> {
    let r = pending_rewards(state, &addr)?;
    if r == StakerRewards::default() {
        state.delete(StateKey::StakerRewards(addr));
    } else {
        state.put(StateKey::StakerRewards(addr), &r);
    }
    Ok(())
}

/// Adds `amount` to the accumulator: `acc += (amount·SCALE + carry) / gopen`
/// and `carry = (amount·SCALE + carry) mod gopen`, in 256-bit arithmetic.
/// The caller moves the OPEN into `Supply::staking_rewards`. Requires
/// `gopen ≥ MIN_REWARD_GOPEN`.
fn distribute(state: &mut TxBatch<'_, '_>, amount: Amount, gopen: Amount) -> Result<(), TxError> {
    let overflow = TxError::Overflow {
        what: "staking reward accumulator",
    };
    let mut pool: RewardPool = state.get(&StateKey::StakingRewardPool)?.unwrap_or_default();
    let (delta, carry) =
        mul_add_divrem(amount.0, REWARD_SCALE, pool.carry, gopen.0).ok_or(overflow.clone())?;
    pool.acc_per_share = pool.acc_per_share.checked_add(delta).ok_or(overflow)?;
    pool.carry = carry;
    pool.distributed = add(pool.distributed, amount, "distributed staking rewards")?;
    state.put(StateKey::StakingRewardPool, &pool);
    Ok(())
}

/// `(floor((a·b + c) / d), (a·b + c) mod d)` computed in 256 bits; `None`
/// if `d == 0`, `c ≥ d` or the quotient does not fit in 128 bits.
fn mul_add_divrem(a: u128, b: u128, c: u128, d: u128) -> Option<(u128, u128)> {
    if d == 0 || c >= d {
        return None;
    }
    const LO: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & LO);
    let (b_hi, b_lo) = (b >> 64, b & LO);
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 64) + (lh & LO) + (hl & LO);
    let lo = (ll & LO) | (mid << 64);
    let mut hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
    let (lo, carried) = lo.overflowing_add(c);
    if carried {
        hi = hi.checked_add(1)?;
    }
    if hi >= d {
        return None;
    }
    // Long division of (hi, lo) by d, one bit at a time; rem < d throughout.
    let mut rem = hi;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        let top = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if top == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            q |= 1;
        }
    }
    Some((q, rem))
}

/// Everything a settlement will do, computed without writing.
struct Plan {
    fee: Amount,
    price_in: Amount,
    price_out: Amount,
    fallback: bool,
    lines: Vec<PayoutLine>,
}

/// The accepted contributions an adapter was trained on, in version order
/// (first occurrence kept), with their rows.
fn adapter_contributions(
    state: &TxBatch<'_, '_>,
    adapter: &Adapter,
) -> Result<Vec<(ContributionId, u32, Address)>, TxError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (id, version) in &adapter.datanets {
        let d = load_datanet(state, id)?;
        let v = load_version(state, &d, *version)?;
        for c in v.contributions {
            if seen.insert(c) {
                let rec = load_contribution(state, &c)?;
                out.push((c, rec.rows, rec.contributor));
            }
        }
    }
    Ok(out)
}

/// The datanet versions a settlement names: each published (it exists on
/// the ledger) and among the adapter's training versions; at least one when
/// the adapter has any; none without an adapter.
fn check_attributed_versions(
    state: &TxBatch<'_, '_>,
    adapter: Option<&Adapter>,
    datanets: &[(DatanetId, u32)],
) -> Result<(), TxError> {
    let Some(a) = adapter else {
        return match datanets.len() {
            0 => Ok(()),
            count => Err(TxError::VersionsWithoutAdapter { count }),
        };
    };
    if datanets.is_empty() && !a.datanets.is_empty() {
        return Err(TxError::MissingAttributedVersions {
            adapter: a.id,
            trained: a.datanets.len(),
        });
    }
    for (id, version) in datanets {
        let d = load_datanet(state, id)?;
        load_version(state, &d, *version)?;
        if !a.datanets.contains(&(*id, *version)) {
            return Err(TxError::NotAdapterVersion {
                datanet: *id,
                version: *version,
                adapter: a.id,
            });
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plan(
    state: &TxBatch<'_, '_>,
    operator: Address,
    reserved: Amount,
    receipt: &ReceiptId,
    payer: &Address,
    adapter: &Option<AdapterId>,
    base: &ModelId,
    prompt_tokens: u32,
    completion_tokens: u32,
    weights: &[(ContributionId, u64)],
    datanets: &[(DatanetId, u32)],
) -> Result<Plan, TxError> {
    if state
        .get::<InferenceReceipt>(&StateKey::Receipt(*receipt))?
        .is_some()
    {
        return Err(TxError::ReceiptExists { id: *receipt });
    }
    let params: &Params = state.params();
    let base_model = load_base_model(state, base)?;
    let adapter = match adapter {
        Some(id) => {
            let a = load_adapter(state, id)?;
            if a.base != *base {
                return Err(TxError::AdapterBaseMismatch {
                    adapter: a.id,
                    expected: a.base,
                });
            }
            Some(a)
        }
        None => None,
    };
    check_attributed_versions(state, adapter.as_ref(), datanets)?;
    let schedule = FeeSchedule::new(adapter.as_ref(), params);
    let (price_in, price_out) = (schedule.price_in_per_1k, schedule.price_out_per_1k);
    let fee = schedule
        .fee(prompt_tokens, completion_tokens)
        .ok_or(TxError::Overflow {
            what: "inference fee",
        })?;
    let allowance: Amount = state
        .get(&StateKey::Allowance(*payer, operator))?
        .unwrap_or_default();
    if fee > allowance {
        return Err(TxError::AllowanceExceeded {
            payer: *payer,
            operator,
            allowance,
            fee,
        });
    }
    let have = state.account(payer)?.balance;
    let need = add(fee, reserved, "fee plus transaction fee")?;
    if have < need {
        return Err(TxError::InsufficientBalance {
            address: *payer,
            have,
            need,
        });
    }

    // Validate every weighted contribution, zero weights included.
    let trained_on = match &adapter {
        Some(a) => Some(adapter_contributions(state, a)?),
        None => None,
    };
    let mut contributors = Vec::with_capacity(weights.len());
    for (id, _) in weights {
        let c = load_contribution(state, id)?;
        if !c.status.is_accepted() {
            return Err(TxError::NotAccepted {
                id: c.id,
                status: c.status.to_string(),
            });
        }
        if let (Some(a), Some(set)) = (&adapter, &trained_on) {
            if !set.iter().any(|(x, ..)| x == id) {
                return Err(TxError::NotInAdapterData {
                    contribution: *id,
                    adapter: a.id,
                });
            }
        }
        contributors.push(c.contributor);
    }

    let FeeParts {
        contributors: contrib,
        adapter_owner: adapter_part,
        base_model_owner: base_part,
        stakers,
        treasury,
    } = schedule
        .parts(fee)
        .ok_or(TxError::Overflow { what: "fee split" })?;
    let treasury_addr = treasury_address();
    let mut lines = Vec::new();
    let mut push = |recipient: Address, role: PayoutRole, amount: Amount| {
        if !amount.is_zero() {
            lines.push(PayoutLine {
                recipient,
                role,
                amount,
            });
        }
    };

    let w: Vec<u128> = weights.iter().map(|(_, w)| u128::from(*w)).collect();
    let fallback = w.iter().all(|x| *x == 0);
    if !fallback {
        let amounts = split_by_weight(contrib, &w).map_err(|_| TxError::Overflow {
            what: "weight split",
        })?;
        for (((id, _), who), amount) in weights.iter().zip(&contributors).zip(amounts) {
            push(*who, PayoutRole::Contributor { contribution: *id }, amount);
        }
    } else {
        let pool = trained_on.unwrap_or_default();
        let rows: Vec<u128> = pool.iter().map(|(_, r, _)| u128::from(*r)).collect();
        if rows.iter().any(|r| *r > 0) {
            let amounts = split_by_weight(contrib, &rows)
                .map_err(|_| TxError::Overflow { what: "row split" })?;
            for ((id, _, who), amount) in pool.iter().zip(amounts) {
                push(*who, PayoutRole::Contributor { contribution: *id }, amount);
            }
        } else {
            push(treasury_addr, PayoutRole::Treasury, contrib);
        }
    }
    match &adapter {
        Some(a) => {
            push(a.owner, PayoutRole::AdapterOwner, adapter_part);
            push(base_model.owner, PayoutRole::BaseModelOwner, base_part);
        }
        None => {
            let both = add(adapter_part, base_part, "base-model owner share")?;
            push(base_model.owner, PayoutRole::BaseModelOwner, both);
        }
    }
    if state.supply()?.gopen < MIN_REWARD_GOPEN {
        push(treasury_addr, PayoutRole::Treasury, stakers);
    } else {
        push(staking_pool_address(), PayoutRole::Stakers, stakers);
    }
    push(treasury_addr, PayoutRole::Treasury, treasury);
    Ok(Plan {
        fee,
        price_in,
        price_out,
        fallback,
        lines,
    })
}

impl Module for Settlement {
    fn name(&self) -> &'static str {
        "settlement"
    }

    fn check_stateless(&self, action: &Action, _params: &Params) -> Result<(), TxError> {
        if let Action::SettleInference {
            prompt_tokens,
            completion_tokens,
            weights,
            method,
            datanets,
            ..
        } = action
        {
            super::registry::check_datanet_versions(datanets, MAX_SETTLED_VERSIONS)?;
            if *prompt_tokens == 0 && *completion_tokens == 0 {
                return Err(TxError::InvalidField {
                    field: "tokens",
                    reason:
                        "an inference with no prompt and no completion tokens has nothing to charge"
                            .into(),
                });
            }
            if method.len() > MAX_METHOD_LEN {
                return Err(TxError::FieldTooLong {
                    field: "method",
                    len: method.len(),
                    max: MAX_METHOD_LEN,
                });
            }
            if weights.len() > MAX_WEIGHTS {
                return Err(TxError::InvalidField {
                    field: "weights",
                    reason: format!("{} entries, at most {MAX_WEIGHTS}", weights.len()),
                });
            }
            let mut ids: Vec<ContributionId> = weights.iter().map(|(c, _)| *c).collect();
            ids.sort();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(TxError::DuplicateContribution { id: w[0] });
            }
        }
        Ok(())
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)?;
        let sender = tx.sender_address();
        match &tx.action {
            Action::SettleInference {
                receipt,
                payer,
                adapter,
                base,
                prompt_tokens,
                completion_tokens,
                weights,
                datanets,
                ..
            } => {
                let reserved = if *payer == sender {
                    tx.fee
                } else {
                    Amount::ZERO
                };
                plan(
                    state,
                    sender,
                    reserved,
                    receipt,
                    payer,
                    adapter,
                    base,
                    *prompt_tokens,
                    *completion_tokens,
                    weights,
                    datanets,
                )?;
            }
            Action::ClaimStakingRewards if pending_rewards(state, &sender)?.accrued.is_zero() => {
                return Err(TxError::NothingToClaim { address: sender });
            }
            _ => {}
        }
        Ok(())
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        match action {
            Action::ApproveOperator {
                operator,
                allowance,
            } => {
                let key = StateKey::Allowance(sender, *operator);
                if allowance.is_zero() {
                    state.delete(key);
                } else {
                    state.put(key, allowance);
                }
                state.emit(Event::OperatorApproved {
                    payer: sender,
                    operator: *operator,
                    allowance: *allowance,
                });
            }
            Action::SettleInference {
                receipt,
                payer,
                adapter,
                base,
                prompt_tokens,
                completion_tokens,
                weights,
                method,
                evidence_hash,
                datanets,
            } => {
                // The transaction fee is already paid: nothing to reserve.
                let p = plan(
                    state,
                    sender,
                    Amount::ZERO,
                    receipt,
                    payer,
                    adapter,
                    base,
                    *prompt_tokens,
                    *completion_tokens,
                    weights,
                    datanets,
                )?;
                apply(state, sender, *payer, *receipt, &p)?;
                let r = InferenceReceipt {
                    id: *receipt,
                    operator: sender,
                    payer: *payer,
                    adapter: *adapter,
                    base: *base,
                    prompt_tokens: *prompt_tokens,
                    completion_tokens: *completion_tokens,
                    price_in_per_1k: p.price_in,
                    price_out_per_1k: p.price_out,
                    fee: p.fee,
                    method: method.clone(),
                    evidence_hash: *evidence_hash,
                    datanets: datanets.clone(),
                    weights: weights.clone(),
                    fallback: p.fallback,
                    lines: p.lines,
                    height: state.height(),
                };
                state.put(StateKey::Receipt(*receipt), &r);
                state.emit(Event::InferenceSettled {
                    receipt: *receipt,
                    payer: *payer,
                    operator: sender,
                    fee: p.fee,
                    fallback: p.fallback,
                });
                tracing::debug!(target: "trib::ledger::settlement", receipt = %receipt, fee = %p.fee, fallback = p.fallback, "inference settled");
            }
            Action::ClaimStakingRewards => {
                let mut r = pending_rewards(state, &sender)?;
                let amount = r.accrued;
                if amount.is_zero() {
                    return Err(TxError::NothingToClaim { address: sender });
                }
                r.accrued = Amount::ZERO;
                state.put(StateKey::StakerRewards(sender), &r);
                let mut acc = state.account(&sender)?;
                acc.balance = add(acc.balance, amount, "balance")?;
                state.put_account(sender, &acc);
                let mut supply = state.supply()?;
                supply.staking_rewards =
                    sub(supply.staking_rewards, amount, "staking rewards supply")?;
                supply.open = add(supply.open, amount, "OPEN supply")?;
                state.put_supply(&supply);
                state.emit(Event::StakingRewardsClaimed {
                    account: sender,
                    amount,
                });
            }
            other => {
                return Err(TxError::UnknownModule {
                    module: "settlement",
                    action: other.name(),
                })
            }
        }
        Ok(())
    }
}

/// Moves the fee from the payer to the payout lines and indexes them.
fn apply(
    state: &mut TxBatch<'_, '_>,
    operator: Address,
    payer: Address,
    receipt: ReceiptId,
    p: &Plan,
) -> Result<(), TxError> {
    let mut acc = state.account(&payer)?;
    if acc.balance < p.fee {
        return Err(TxError::InsufficientBalance {
            address: payer,
            have: acc.balance,
            need: p.fee,
        });
    }
    acc.balance = sub(acc.balance, p.fee, "payer balance")?;
    state.put_account(payer, &acc);
    let akey = StateKey::Allowance(payer, operator);
    let allowance: Amount = state.get(&akey)?.unwrap_or_default();
    let left = sub(allowance, p.fee, "allowance")?;
    if left.is_zero() {
        state.delete(akey);
    } else {
        state.put(akey, &left);
    }
    for (i, line) in p.lines.iter().enumerate() {
        match line.role {
            PayoutRole::Stakers => {
                let mut supply = state.supply()?;
                distribute(state, line.amount, supply.gopen)?;
                supply.open = sub(supply.open, line.amount, "OPEN supply")?;
                supply.staking_rewards = add(
                    supply.staking_rewards,
                    line.amount,
                    "staking rewards supply",
                )?;
                state.put_supply(&supply);
                continue;
            }
            PayoutRole::Treasury => {}
            PayoutRole::Contributor { contribution } => {
                let c = load_contribution(state, &contribution)?;
                let mut r = reputation(state, &c.datanet, &c.contributor)?;
                r.earnings = add(r.earnings, line.amount, "earnings")?;
                state.put(StateKey::Reputation(c.datanet, c.contributor), &r);
            }
            PayoutRole::AdapterOwner | PayoutRole::BaseModelOwner => {}
        }
        let mut to = state.account(&line.recipient)?;
        to.balance = add(to.balance, line.amount, "recipient balance")?;
        state.put_account(line.recipient, &to);
        if line.role != PayoutRole::Treasury {
            let ckey = StateKey::PayoutCount(line.recipient);
            let n: u64 = state.get(&ckey)?.unwrap_or(0);
            state.put(
                StateKey::PayoutIndex(line.recipient, n),
                &PayoutRef {
                    receipt,
                    line: i as u32,
                },
            );
            state.put(ckey, &(n + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_schedule_gives_the_admission_maximum_the_settled_fee_and_five_parts_that_sum_to_it() {
        let params = Params::default();
        let base = FeeSchedule::new(None, &params);
        assert_eq!(
            (base.price_in_per_1k, base.price_out_per_1k, base.split),
            (
                params.base_price_in_per_1k,
                params.base_price_out_per_1k,
                params.fee_split
            )
        );
        let s = FeeSchedule {
            price_in_per_1k: Amount(3),
            price_out_per_1k: Amount(5),
            split: FeeSplit::default(),
        };
        assert_eq!(s.fee(1000, 2000), Some(Amount(13)));
        assert_eq!(s.max_fee(1000, 2000), s.fee(1000, 2000));
        // Counts beyond u32 clamp, as the ledger's u32 token counts would.
        assert_eq!(s.max_fee(usize::MAX, 0), s.fee(u32::MAX, 0));
        let p = s.parts(Amount(1_001)).unwrap();
        assert_eq!(
            p.contributors.0
                + p.adapter_owner.0
                + p.base_model_owner.0
                + p.stakers.0
                + p.treasury.0,
            1_001
        );
        assert_eq!(p.contributors, Amount(501));
        assert_eq!(
            s.parts(Amount(1_001)),
            FeeSplit::default().parts(Amount(1_001))
        );
    }

    #[test]
    fn fee_rounds_up_once_over_the_exact_sum() {
        // 1 token at 1 base unit per 1k: 0.001 → 1.
        assert_eq!(inference_fee(1, 0, Amount(1), Amount(0)), Some(Amount(1)));
        // 500 × 1 + 500 × 1 = 1000 → exactly 1 (not 1 + 1 by rounding each).
        assert_eq!(
            inference_fee(500, 500, Amount(1), Amount(1)),
            Some(Amount(1))
        );
        assert_eq!(
            inference_fee(1000, 2000, Amount(3), Amount(5)),
            Some(Amount(13))
        );
        assert_eq!(inference_fee(0, 0, Amount(3), Amount(5)), Some(Amount(0)));
        assert_eq!(
            inference_fee(u32::MAX, 0, Amount(u128::MAX), Amount(0)),
            None
        );
    }

    #[test]
    fn wide_division_matches_narrow_arithmetic_and_refuses_overflow() {
        assert_eq!(mul_add_divrem(7, 3, 2, 5), Some((4, 3)));
        assert_eq!(
            mul_add_divrem(15_000, REWARD_SCALE, 0, 400 * trib_types::ONE_OPEN),
            Some((37_500_000, 0))
        );
        // (2^127)·4 + 1 = 2^129 + 1 over 2^2 → 2^127, remainder 1.
        assert_eq!(mul_add_divrem(1 << 127, 4, 1, 4), Some((1 << 127, 1)));
        assert_eq!(
            mul_add_divrem(u128::MAX, u128::MAX, 0, u128::MAX),
            Some((u128::MAX, 0))
        );
        assert_eq!(mul_add_divrem(u128::MAX, 2, 0, 1), None);
        assert_eq!(mul_add_divrem(1, 1, 5, 5), None);
        assert_eq!(mul_add_divrem(1, 1, 0, 0), None);
    }

    proptest::proptest! {
        #[test]
        fn wide_division_matches_a_u128_reference(a in 0u128..(1 << 64), b in 0u128..(1 << 63), d in 1u128.., c in 0u128..(1 << 126)) {
            let c = c % d;
            let n = a * b + c;
            proptest::prop_assert_eq!(mul_add_divrem(a, b, c, d), Some((n / d, n % d)));
        }
    }

    #[test]
    fn the_staking_pool_is_not_the_treasury() {
        assert_ne!(staking_pool_address(), treasury_address());
    }
}
