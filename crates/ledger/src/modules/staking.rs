//! Staking: OPEN ↔ gOPEN 1:1, unbonding, delegation of voting power.
//!
//! Voting-power rule: every gOPEN unit votes for exactly one address, its
//! holder's delegate, or the holder itself when it never delegated (an
//! undelegated staker votes for itself; OpenLedger instead requires an
//! explicit self-delegation). `voting_power/<addr>` holds the sum, updated on
//! every stake, unstake and delegation, so a tally never double-counts.

use trib_types::{Address, Amount};

use super::{nonzero, require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::Params;
use crate::state::{add, sub, StateKey, TxBatch, Unbonding};
use crate::tx::{Action, Transaction};

pub(crate) struct Staking;

impl Module for Staking {
    fn name(&self) -> &'static str {
        "staking"
    }

    fn check_stateless(&self, action: &Action, _params: &Params) -> Result<(), TxError> {
        match action {
            Action::Stake { amount } => nonzero(*amount, "stake"),
            Action::Unstake { amount } => nonzero(*amount, "unstake"),
            _ => Ok(()),
        }
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)?;
        if let Action::Unstake { amount } = &tx.action {
            let sender = tx.sender_address();
            let have = state.account(&sender)?.staked;
            if have < *amount {
                return Err(TxError::InsufficientStake {
                    address: sender,
                    have,
                    need: *amount,
                });
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        if matches!(action, Action::Stake { .. } | Action::Unstake { .. }) {
            // Rewards accrue per gOPEN held: settle them before it changes.
            super::settlement::settle_staker(state, sender)?;
        }
        let mut acc = state.account(&sender)?;
        let mut supply = state.supply()?;
        let voter = acc.voter(sender);
        match action {
            Action::Stake { amount } => {
                if acc.balance < *amount {
                    return Err(TxError::InsufficientBalance {
                        address: sender,
                        have: acc.balance,
                        need: *amount,
                    });
                }
                acc.balance = sub(acc.balance, *amount, "balance")?;
                acc.staked = add(acc.staked, *amount, "staked gOPEN")?;
                supply.open = sub(supply.open, *amount, "OPEN supply")?;
                supply.gopen = add(supply.gopen, *amount, "gOPEN supply")?;
                let power = add(state.voting_power(&voter)?, *amount, "voting power")?;
                state.put_voting_power(voter, power);
                state.emit(Event::Staked {
                    account: sender,
                    amount: *amount,
                });
            }
            Action::Unstake { amount } => {
                if acc.staked < *amount {
                    return Err(TxError::InsufficientStake {
                        address: sender,
                        have: acc.staked,
                        need: *amount,
                    });
                }
                let release_height = state
                    .height()
                    .checked_add(state.params().unbonding_period_blocks)
                    .ok_or(TxError::Overflow {
                        what: "release height",
                    })?;
                acc.staked = sub(acc.staked, *amount, "staked gOPEN")?;
                match acc.unbonding.last_mut() {
                    Some(u) if u.release_height == release_height => {
                        u.amount = add(u.amount, *amount, "unbonding entry")?
                    }
                    _ => acc.unbonding.push(Unbonding {
                        amount: *amount,
                        release_height,
                    }),
                }
                supply.gopen = sub(supply.gopen, *amount, "gOPEN supply")?;
                supply.unbonding = add(supply.unbonding, *amount, "unbonding supply")?;
                let power = sub(state.voting_power(&voter)?, *amount, "voting power")?;
                state.put_voting_power(voter, power);
                let qkey = StateKey::UnbondingQueue(release_height);
                let mut queue: Vec<Address> = state.get(&qkey)?.unwrap_or_default();
                if let Err(pos) = queue.binary_search(&sender) {
                    queue.insert(pos, sender);
                }
                state.put(qkey, &queue);
                state.emit(Event::UnstakeStarted {
                    account: sender,
                    amount: *amount,
                    release_height,
                });
            }
            Action::Delegate { to } => {
                let moved = acc.staked;
                if voter != *to && !moved.is_zero() {
                    let from_power = sub(state.voting_power(&voter)?, moved, "voting power")?;
                    state.put_voting_power(voter, from_power);
                    let to_power = add(state.voting_power(to)?, moved, "voting power")?;
                    state.put_voting_power(*to, to_power);
                }
                acc.delegate = if *to == sender { None } else { Some(*to) };
                state.emit(Event::Delegated {
                    account: sender,
                    from: voter,
                    to: *to,
                    power: moved,
                });
            }
            other => {
                return Err(TxError::UnknownModule {
                    module: "staking",
                    action: other.name(),
                })
            }
        }
        state.put_account(sender, &acc);
        state.put_supply(&supply);
        Ok(())
    }

    /// Releases the unbonding entries due at this height.
    fn end_block(&self, state: &mut TxBatch<'_, '_>) -> Result<(), TxError> {
        let height = state.height();
        let qkey = StateKey::UnbondingQueue(height);
        let Some(queue) = state.get::<Vec<Address>>(&qkey)? else {
            return Ok(());
        };
        let mut supply = state.supply()?;
        for addr in queue {
            let mut acc = state.account(&addr)?;
            let (due, keep): (Vec<Unbonding>, Vec<Unbonding>) = acc
                .unbonding
                .iter()
                .partition(|u| u.release_height <= height);
            let released = due
                .iter()
                .try_fold(Amount::ZERO, |sum, u| add(sum, u.amount, "released OPEN"))?;
            acc.unbonding = keep;
            acc.balance = add(acc.balance, released, "balance")?;
            supply.unbonding = sub(supply.unbonding, released, "unbonding supply")?;
            supply.open = add(supply.open, released, "OPEN supply")?;
            state.put_account(addr, &acc);
            state.emit(Event::Unbonded {
                account: addr,
                amount: released,
            });
        }
        state.put_supply(&supply);
        state.delete(qkey);
        Ok(())
    }
}
