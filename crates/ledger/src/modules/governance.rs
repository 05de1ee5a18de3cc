//! Governance: proposals with deposits, voting, quorum, threshold, veto,
//! timelock, and parameter changes executed by the ledger in `end_block`.
//!
//! Life of a proposal (heights are block heights, `h` = submission block):
//! 1. Deposit period until `h + gov_deposit_period_blocks`. As soon as the
//!    total deposit reaches `gov_min_deposit`, voting opens in that block and
//!    lasts `gov_voting_period_blocks` blocks.
//! 2. At the end of the last voting block the votes are tallied with the
//!    voting power at that moment (see `staking`). Quorum: voted power ×
//!    10,000 ≥ `gov_quorum_bps` × all gOPEN (and all gOPEN > 0). Veto: veto
//!    power × 10,000 > `gov_veto_bps` × voted power. Pass: yes × 10,000 >
//!    `gov_threshold_bps` × (yes + no + veto).
//! 3. A passed change executes at the end of block
//!    `voting end + gov_timelock_blocks`, if the resulting parameters are
//!    still valid (otherwise `ExecutionFailed`, nothing changes).
//!
//! Failed-deposit rule: Passed and Rejected proposals have their deposits
//! refunded (at the tally). Expired (deposit never reached), NoQuorum and
//! Vetoed proposals have them burned when `gov_deposit_burn_on_fail` is true
//! (into `Supply::burned`), refunded otherwise.

use trib_types::{Address, Amount};

use super::{nonzero, require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::{Params, BPS_DENOMINATOR};
use crate::state::{add, sub, Proposal, ProposalStatus, StateKey, Tally, TxBatch};
use crate::tx::{Action, Transaction, VoteChoice};

/// Longest proposal title, in bytes.
pub(crate) const MAX_TITLE: usize = 140;
/// Longest proposal description, in bytes.
pub(crate) const MAX_DESCRIPTION: usize = 4096;

pub(crate) struct Governance;

fn proposal(state: &TxBatch<'_, '_>, id: u64) -> Result<Proposal, TxError> {
    state
        .get(&StateKey::Proposal(id))?
        .ok_or(TxError::UnknownProposal { id })
}

fn phase(p: &Proposal, needed: ProposalStatus, name: &'static str) -> Result<(), TxError> {
    if p.status != needed {
        return Err(TxError::WrongProposalPhase {
            id: p.id,
            status: p.status.to_string(),
            needed: name,
        });
    }
    Ok(())
}

/// Adds a deposit, opening the vote when the minimum is reached.
fn add_deposit(
    state: &mut TxBatch<'_, '_>,
    p: &mut Proposal,
    depositor: Address,
    amount: Amount,
) -> Result<(), TxError> {
    let mut acc = state.account(&depositor)?;
    if acc.balance < amount {
        return Err(TxError::InsufficientBalance {
            address: depositor,
            have: acc.balance,
            need: amount,
        });
    }
    acc.balance = sub(acc.balance, amount, "balance")?;
    state.put_account(depositor, &acc);
    let mut supply = state.supply()?;
    supply.open = sub(supply.open, amount, "OPEN supply")?;
    supply.deposits = add(supply.deposits, amount, "deposit supply")?;
    state.put_supply(&supply);
    match p.deposits.iter_mut().find(|(a, _)| *a == depositor) {
        Some((_, d)) => *d = add(*d, amount, "deposit")?,
        None => p.deposits.push((depositor, amount)),
    }
    p.total_deposit = add(p.total_deposit, amount, "total deposit")?;
    state.emit(Event::DepositAdded {
        id: p.id,
        depositor,
        amount,
    });
    if p.total_deposit >= state.params().gov_min_deposit {
        let end = state
            .height()
            .checked_add(state.params().gov_voting_period_blocks)
            .ok_or(TxError::Overflow {
                what: "voting end height",
            })?;
        p.status = ProposalStatus::Voting;
        p.voting_start_height = Some(state.height());
        p.voting_end_height = Some(end);
        state.emit(Event::VotingStarted {
            id: p.id,
            voting_end_height: end,
        });
    }
    Ok(())
}

/// Refunds or burns all deposits of `p`.
fn settle_deposits(
    state: &mut TxBatch<'_, '_>,
    p: &mut Proposal,
    burn: bool,
) -> Result<(), TxError> {
    let mut supply = state.supply()?;
    supply.deposits = sub(supply.deposits, p.total_deposit, "deposit supply")?;
    if burn {
        supply.burned = add(supply.burned, p.total_deposit, "burned supply")?;
        p.deposits_burned = true;
        state.emit(Event::DepositBurned {
            id: p.id,
            amount: p.total_deposit,
        });
    } else {
        supply.open = add(supply.open, p.total_deposit, "OPEN supply")?;
        for (depositor, amount) in &p.deposits {
            let mut acc = state.account(depositor)?;
            acc.balance = add(acc.balance, *amount, "balance")?;
            state.put_account(*depositor, &acc);
            state.emit(Event::DepositRefunded {
                id: p.id,
                depositor: *depositor,
                amount: *amount,
            });
        }
    }
    state.put_supply(&supply);
    Ok(())
}

/// `a × 10,000 > bps × b` (or `>=` when `or_equal`), in 256-bit-safe form.
fn bps_compare(a: Amount, bps: u16, b: Amount, or_equal: bool) -> bool {
    // a * 10000 vs b * bps: both fit in u128 unless amounts exceed 2^114,
    // so compare through mul_div to stay exact for any amount.
    let lhs_whole = a.0.checked_mul(u128::from(BPS_DENOMINATOR));
    let rhs_whole = b.0.checked_mul(u128::from(bps));
    match (lhs_whole, rhs_whole) {
        (Some(l), Some(r)) => {
            if or_equal {
                l >= r
            } else {
                l > r
            }
        }
        _ => {
            // Compare a / b against bps / 10000 via floor division (exact enough
            // for amounts above 2^114 base units, far beyond any supply).
            let share = b
                .mul_div_floor(u128::from(bps), u128::from(BPS_DENOMINATOR))
                .unwrap_or(Amount(u128::MAX));
            if or_equal {
                a >= share
            } else {
                a > share
            }
        }
    }
}

fn tally(state: &TxBatch<'_, '_>, p: &Proposal) -> Result<Tally, TxError> {
    let mut t = Tally {
        total_power: state.supply()?.gopen,
        ..Tally::default()
    };
    for (voter, choice) in &p.votes {
        let power = state.voting_power(voter)?;
        let slot = match choice {
            VoteChoice::Yes => &mut t.yes,
            VoteChoice::No => &mut t.no,
            VoteChoice::Abstain => &mut t.abstain,
            VoteChoice::Veto => &mut t.veto,
        };
        *slot = add(*slot, power, "tally")?;
    }
    Ok(t)
}

/// The outcome of a finished vote.
fn decide(t: &Tally, params: &Params) -> Result<ProposalStatus, TxError> {
    let voted = add(
        add(add(t.yes, t.no, "tally")?, t.abstain, "tally")?,
        t.veto,
        "tally",
    )?;
    if t.total_power.is_zero()
        || voted.is_zero()
        || !bps_compare(voted, params.gov_quorum_bps, t.total_power, true)
    {
        return Ok(ProposalStatus::NoQuorum);
    }
    if bps_compare(t.veto, params.gov_veto_bps, voted, false) {
        return Ok(ProposalStatus::Vetoed);
    }
    let decisive = add(add(t.yes, t.no, "tally")?, t.veto, "tally")?;
    if !decisive.is_zero() && bps_compare(t.yes, params.gov_threshold_bps, decisive, false) {
        Ok(ProposalStatus::Passed)
    } else {
        Ok(ProposalStatus::Rejected)
    }
}

impl Module for Governance {
    fn name(&self) -> &'static str {
        "governance"
    }

    fn check_stateless(&self, action: &Action, params: &Params) -> Result<(), TxError> {
        match action {
            Action::Propose {
                title,
                description,
                change,
                deposit,
            } => {
                nonzero(*deposit, "proposal deposit")?;
                if title.is_empty() {
                    return Err(TxError::FieldTooLong {
                        field: "title (empty)",
                        len: 0,
                        max: MAX_TITLE,
                    });
                }
                if title.len() > MAX_TITLE {
                    return Err(TxError::FieldTooLong {
                        field: "title",
                        len: title.len(),
                        max: MAX_TITLE,
                    });
                }
                if description.len() > MAX_DESCRIPTION {
                    return Err(TxError::FieldTooLong {
                        field: "description",
                        len: description.len(),
                        max: MAX_DESCRIPTION,
                    });
                }
                params
                    .with_change(change)
                    .validate()
                    .map_err(|e| TxError::InvalidParamChange {
                        reason: e.to_string(),
                    })
            }
            Action::Deposit { amount, .. } => nonzero(*amount, "deposit"),
            _ => Ok(()),
        }
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)?;
        match &tx.action {
            Action::Deposit { proposal: id, .. } => phase(
                &proposal(state, *id)?,
                ProposalStatus::DepositPeriod,
                "in its deposit period",
            ),
            Action::Vote { proposal: id, .. } => {
                phase(&proposal(state, *id)?, ProposalStatus::Voting, "voting")
            }
            _ => Ok(()),
        }
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        match action {
            Action::Propose {
                title,
                description,
                change,
                deposit,
            } => {
                let id: u64 = state.get(&StateKey::NextProposalId)?.unwrap_or(0);
                let next = id.checked_add(1).ok_or(TxError::Overflow {
                    what: "proposal id",
                })?;
                state.put(StateKey::NextProposalId, &next);
                let deposit_end_height = state
                    .height()
                    .checked_add(state.params().gov_deposit_period_blocks)
                    .ok_or(TxError::Overflow {
                        what: "deposit end height",
                    })?;
                let mut p = Proposal {
                    id,
                    proposer: sender,
                    title: title.clone(),
                    description: description.clone(),
                    change: change.clone(),
                    status: ProposalStatus::DepositPeriod,
                    submit_height: state.height(),
                    deposit_end_height,
                    voting_start_height: None,
                    voting_end_height: None,
                    execute_height: None,
                    deposits: Vec::new(),
                    total_deposit: Amount::ZERO,
                    votes: Vec::new(),
                    tally: None,
                    deposits_burned: false,
                };
                state.emit(Event::ProposalSubmitted {
                    id,
                    proposer: sender,
                    change: change.clone(),
                });
                add_deposit(state, &mut p, sender, *deposit)?;
                state.put(StateKey::Proposal(id), &p);
                let mut active: Vec<u64> =
                    state.get(&StateKey::ActiveProposals)?.unwrap_or_default();
                active.push(id);
                state.put(StateKey::ActiveProposals, &active);
            }
            Action::Deposit {
                proposal: id,
                amount,
            } => {
                let mut p = proposal(state, *id)?;
                phase(&p, ProposalStatus::DepositPeriod, "in its deposit period")?;
                add_deposit(state, &mut p, sender, *amount)?;
                state.put(StateKey::Proposal(*id), &p);
            }
            Action::Vote {
                proposal: id,
                choice,
            } => {
                let mut p = proposal(state, *id)?;
                phase(&p, ProposalStatus::Voting, "voting")?;
                match p.votes.binary_search_by(|(a, _)| a.cmp(&sender)) {
                    Ok(i) => p.votes[i].1 = *choice,
                    Err(i) => p.votes.insert(i, (sender, *choice)),
                }
                state.put(StateKey::Proposal(*id), &p);
                state.emit(Event::Voted {
                    id: *id,
                    voter: sender,
                    choice: *choice,
                });
            }
            other => {
                return Err(TxError::UnknownModule {
                    module: "governance",
                    action: other.name(),
                })
            }
        }
        Ok(())
    }

    fn end_block(&self, state: &mut TxBatch<'_, '_>) -> Result<(), TxError> {
        let Some(active) = state.get::<Vec<u64>>(&StateKey::ActiveProposals)? else {
            return Ok(());
        };
        let height = state.height();
        let params = state.params().clone();
        let mut still_active = Vec::with_capacity(active.len());
        for id in active {
            let mut p = proposal(state, id)?;
            let before = p.status;
            if p.status == ProposalStatus::DepositPeriod && height >= p.deposit_end_height {
                p.status = ProposalStatus::Expired;
                settle_deposits(state, &mut p, params.gov_deposit_burn_on_fail)?;
            }
            if p.status == ProposalStatus::Voting
                && p.voting_end_height.is_some_and(|e| height >= e)
            {
                let t = tally(state, &p)?;
                p.tally = Some(t);
                p.status = decide(&t, &params)?;
                match p.status {
                    ProposalStatus::Passed => {
                        p.execute_height =
                            Some(height.checked_add(params.gov_timelock_blocks).ok_or(
                                TxError::Overflow {
                                    what: "execution height",
                                },
                            )?);
                        settle_deposits(state, &mut p, false)?;
                    }
                    ProposalStatus::Rejected => settle_deposits(state, &mut p, false)?,
                    _ => settle_deposits(state, &mut p, params.gov_deposit_burn_on_fail)?,
                }
            }
            if p.status == ProposalStatus::Passed && p.execute_height.is_some_and(|e| height >= e) {
                // Parameters in storage may differ from `params` if another
                // proposal executed earlier in this same loop.
                let current: Params = state.get(&StateKey::Params)?.unwrap_or(params.clone());
                let new = current.with_change(&p.change);
                if new.validate().is_ok() {
                    state.put(StateKey::Params, &new);
                    p.status = ProposalStatus::Executed;
                    state.emit(Event::ParamsChanged {
                        id,
                        change: p.change.clone(),
                    });
                } else {
                    p.status = ProposalStatus::ExecutionFailed;
                }
            }
            if p.status != before {
                state.emit(Event::ProposalFinished {
                    id,
                    status: p.status,
                });
                state.put(StateKey::Proposal(id), &p);
            }
            if matches!(
                p.status,
                ProposalStatus::DepositPeriod | ProposalStatus::Voting | ProposalStatus::Passed
            ) {
                still_active.push(id);
            }
        }
        if still_active.is_empty() {
            state.delete(StateKey::ActiveProposals);
        } else {
            state.put(StateKey::ActiveProposals, &still_active);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            gov_quorum_bps: 3_340,
            gov_threshold_bps: 5_000,
            gov_veto_bps: 3_340,
            ..Params::dev()
        }
    }

    fn t(yes: u128, no: u128, abstain: u128, veto: u128, total: u128) -> Tally {
        Tally {
            yes: Amount(yes),
            no: Amount(no),
            abstain: Amount(abstain),
            veto: Amount(veto),
            total_power: Amount(total),
        }
    }

    #[test]
    fn tally_rules() {
        let p = params();
        assert_eq!(
            decide(&t(60, 40, 0, 0, 100), &p).unwrap(),
            ProposalStatus::Passed
        );
        assert_eq!(
            decide(&t(50, 50, 0, 0, 100), &p).unwrap(),
            ProposalStatus::Rejected,
            "a tie does not pass"
        );
        assert_eq!(
            decide(&t(10, 0, 0, 0, 100), &p).unwrap(),
            ProposalStatus::NoQuorum
        );
        assert_eq!(
            decide(&t(0, 0, 40, 0, 100), &p).unwrap(),
            ProposalStatus::Rejected,
            "all abstain"
        );
        assert_eq!(
            decide(&t(60, 0, 0, 40, 100), &p).unwrap(),
            ProposalStatus::Vetoed
        );
        assert_eq!(
            decide(&t(0, 0, 0, 0, 0), &p).unwrap(),
            ProposalStatus::NoQuorum
        );
        // Quorum boundary: exactly 33.40% counts.
        assert_eq!(
            decide(&t(334, 0, 0, 0, 1000), &p).unwrap(),
            ProposalStatus::Passed
        );
        assert_eq!(
            decide(&t(333, 0, 0, 0, 1000), &p).unwrap(),
            ProposalStatus::NoQuorum
        );
        // Huge amounts do not overflow.
        let big = u128::MAX / 2;
        assert_eq!(
            decide(&t(big, 0, 0, 0, big), &p).unwrap(),
            ProposalStatus::Passed
        );
    }
}
