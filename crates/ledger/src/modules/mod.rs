//! Modules: the state machine, split by concern.
//!
//! Every [`Action`] belongs to exactly one module (named by
//! [`Action::module`]). A transaction runs in the phases of
//! [`Module`]: `check_stateless` (no state: run in parallel with signature
//! checks), `check_stateful` (against the state, nothing written), then
//! `execute` into a [`TxBatch`] that is dropped if anything fails. After the
//! transactions, every module's `end_block` hook runs in registration order
//! (staking releases unbonded OPEN, governance tallies and executes).
//!
//! The datanet registry, the model registry and settlement were added that
//! way: new `Action` variants (appended, so old encodings stay valid), a
//! `Module` implementation each, and one line each in [`MODULES`].

mod bank;
pub(crate) mod datanet;
mod governance;
pub(crate) mod registry;
pub(crate) mod settlement;
mod staking;

use trib_types::{Address, Amount};

use crate::error::TxError;
use crate::genesis::Params;
use crate::state::TxBatch;
use crate::tx::{Action, Transaction};

/// One part of the state machine.
pub(crate) trait Module: Sync {
    /// The name actions route by (`"bank"`).
    fn name(&self) -> &'static str;

    /// Checks that need no state (amount > 0, text lengths, valid change).
    fn check_stateless(&self, action: &Action, params: &Params) -> Result<(), TxError>;

    /// Checks against the state before anything is written: the sender can
    /// pay `tx.fee` plus what the action spends, the proposal exists, ….
    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError>;

    /// Applies the action (the fee is already paid and the nonce bumped).
    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError>;

    /// Runs once at the end of every block, after its transactions.
    fn end_block(&self, _state: &mut TxBatch<'_, '_>) -> Result<(), TxError> {
        Ok(())
    }
}

/// The registered modules, in end-block order.
pub(crate) static MODULES: &[&dyn Module] = &[
    &bank::Bank,
    &staking::Staking,
    &governance::Governance,
    &datanet::DatanetModule,
    &registry::ModelRegistry,
    &settlement::Settlement,
];

/// The module that handles `action`.
pub(crate) fn route(action: &Action) -> Result<&'static dyn Module, TxError> {
    let name = action.module();
    MODULES
        .iter()
        .copied()
        .find(|m| m.name() == name)
        .ok_or(TxError::UnknownModule {
            module: name,
            action: action.name(),
        })
}

/// OPEN the action takes from the sender's balance, on top of the fee.
pub(crate) fn action_spend(action: &Action) -> Amount {
    match action {
        Action::Transfer { amount, .. }
        | Action::Stake { amount }
        | Action::Deposit { amount, .. } => *amount,
        Action::Propose { deposit, .. } => *deposit,
        Action::Unstake { .. } | Action::Delegate { .. } | Action::Vote { .. } => Amount::ZERO,
        // A contribution's stake depends on the datanet (state): the
        // datanet module checks it; the operator of a settlement pays only
        // the transaction fee (the payer pays the inference fee).
        Action::CreateDatanet { .. }
        | Action::Contribute { .. }
        | Action::Curate { .. }
        | Action::PublishVersion { .. }
        | Action::GrantAccess { .. }
        | Action::RevokeAccess { .. }
        | Action::RegisterBaseModel { .. }
        | Action::RegisterAdapter { .. }
        | Action::SetAdapterPrice { .. }
        | Action::ApproveOperator { .. }
        | Action::SettleInference { .. }
        | Action::ClaimStakingRewards => Amount::ZERO,
    }
}

/// Fails unless the sender's balance covers `fee + spend`.
pub(crate) fn require_balance(tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
    let sender = tx.sender_address();
    let have = state.account(&sender)?.balance;
    let need = tx
        .fee
        .checked_add(action_spend(&tx.action))
        .ok_or(TxError::Overflow {
            what: "fee plus amount",
        })?;
    if have < need {
        return Err(TxError::InsufficientBalance {
            address: sender,
            have,
            need,
        });
    }
    Ok(())
}

pub(crate) fn nonzero(amount: Amount, action: &'static str) -> Result<(), TxError> {
    if amount.is_zero() {
        return Err(TxError::ZeroAmount { action });
    }
    Ok(())
}
