//! Bank: OPEN transfers. (Fees are taken by the common transaction phase in
//! `exec`, which credits the treasury.)

use trib_types::Address;

use super::{nonzero, require_balance, Module};
use crate::block::Event;
use crate::error::TxError;
use crate::genesis::Params;
use crate::state::{add, sub, TxBatch};
use crate::tx::{Action, Transaction};

pub(crate) struct Bank;

impl Module for Bank {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn check_stateless(&self, action: &Action, _params: &Params) -> Result<(), TxError> {
        match action {
            Action::Transfer { amount, .. } => nonzero(*amount, "transfer"),
            _ => Ok(()),
        }
    }

    fn check_stateful(&self, tx: &Transaction, state: &TxBatch<'_, '_>) -> Result<(), TxError> {
        require_balance(tx, state)
    }

    fn execute(
        &self,
        sender: Address,
        action: &Action,
        state: &mut TxBatch<'_, '_>,
    ) -> Result<(), TxError> {
        let Action::Transfer { to, amount } = action else {
            return Err(TxError::UnknownModule {
                module: "bank",
                action: action.name(),
            });
        };
        let mut from_acc = state.account(&sender)?;
        if from_acc.balance < *amount {
            return Err(TxError::InsufficientBalance {
                address: sender,
                have: from_acc.balance,
                need: *amount,
            });
        }
        from_acc.balance = sub(from_acc.balance, *amount, "sender balance")?;
        state.put_account(sender, &from_acc);
        let mut to_acc = state.account(to)?;
        to_acc.balance = add(to_acc.balance, *amount, "recipient balance")?;
        state.put_account(*to, &to_acc);
        state.emit(Event::Transfer {
            from: sender,
            to: *to,
            amount: *amount,
        });
        Ok(())
    }
}
