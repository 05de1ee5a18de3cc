//! The node's ledger state: the ledger database, the mempool and the block
//! producer key, behind the locks the HTTP handlers and the producer share.
//!
//! Every ledger call the node makes goes through here, so the API handlers
//! stay free of locking and of the ledger's storage details. It knows
//! nothing of HTTP: reads return ledger types (or the small structs below
//! that join a ledger read with the mempool), failures are a [`ChainError`],
//! and `api/ledger.rs` builds the wire views and the status codes.
//!
//! It also keeps paid inference payable (docs/serving.md, admission):
//! [`Chain::submit`] refuses a transaction that would leave an account
//! unable to pay the fees this node's billing reserved for its requests in
//! flight ([`InferenceHolds`]): a transfer that drains the balance, an
//! allowance revoked or lowered below the reserved amount. And
//! [`Chain::with_spendable`] gives billing the matching view for
//! admission: committed balance and allowance *less* what the account's
//! pending transactions spend or revoke, settlements included, read with
//! the mempool locked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use trib_ledger::{
    Account, Action, Block, BlockHeader, BlockOutcome, DatanetRef, FeeSchedule, Genesis, Ledger,
    LedgerError, Mempool, Params, Proposal, SignedTransaction, StateKey, StateProof, Supply,
    TxError, TxRecord,
};
use trib_types::{AdapterId, Address, Amount, SecretKey, TxHash};

/// Why a read through the node's ledger state failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    /// The ledger could not answer (a storage error, or a height or
    /// proposal it does not hold); the ledger's message names which.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// No block at this height yet: heights run from 0 to the head.
    #[error("no block at height {height} (head is {head})")]
    NoSuchBlock {
        /// The height asked for.
        height: u64,
        /// The current head height.
        head: u64,
    },
    /// The supply parts add up past `u128` (a ledger invariant broken).
    #[error("total supply overflows u128")]
    SupplyOverflow,
}

/// Why a transaction was not accepted into the mempool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    /// The ledger's own admission refused it.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// Accepting it would leave the sender unable to pay for inference this
    /// node already served or is serving it.
    #[error(
        "{account} has {held} OPEN reserved by this node for its paid requests being answered \
         (charged through operator {operator}); this transaction would leave {left} OPEN of its \
         {what} to pay them: submit it again once those answers end"
    )]
    HeldForInference {
        /// The sender.
        account: Address,
        /// The operator the held fees are charged through.
        operator: Address,
        /// What is reserved, in OPEN.
        held: String,
        /// What the transaction would leave, in OPEN.
        left: String,
        /// `balance` or `allowance`.
        what: &'static str,
    },
}

/// What the node's billing has reserved against accounts beyond their
/// ledger state and mempool: the largest fees of the requests being
/// answered. Implemented by `billing.rs`; registered with
/// [`Chain::set_inference_holds`].
pub(crate) trait InferenceHolds: Send + Sync {
    /// The operator the fees are charged through (the allowance that
    /// matters is the one given to it).
    fn operator(&self) -> Address;
    /// The fees reserved for `account`'s requests in flight.
    fn reserved(&self, account: &Address) -> Amount;
}

/// An account's means to pay an operator for inference, read with the
/// mempool locked ([`Chain::with_spendable`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spendable {
    /// The committed balance.
    pub(crate) balance: Amount,
    /// What pending transactions take from the balance: its own fees,
    /// amounts and contribution stakes, and the fees of pending settlements
    /// charging it (any operator).
    pub(crate) pending_spend: Amount,
    /// The committed allowance for the operator.
    pub(crate) allowance: Amount,
    /// The lowest allowance a pending `ApproveOperator` for the operator
    /// sets (it replaces the committed one when its block commits).
    pub(crate) pending_allowance: Option<Amount>,
    /// The fees of pending settlements charging it through the operator
    /// (they use up the allowance).
    pub(crate) pending_settled: Amount,
}

impl Spendable {
    /// What the account can still pay the operator once its pending
    /// transactions commit: the smaller of its balance after their spend
    /// and its allowance after their approvals and settlements.
    pub(crate) fn payable(&self) -> Amount {
        let balance = self.balance.0.saturating_sub(self.pending_spend.0);
        let allowance = match self.pending_allowance {
            Some(a) => a.min(self.allowance),
            None => self.allowance,
        };
        let allowance = allowance.0.saturating_sub(self.pending_settled.0);
        Amount(balance.min(allowance))
    }
}

/// What pending transactions take from one account.
#[derive(Debug, Clone, Copy, Default)]
struct PendingCharges {
    /// From its balance.
    spend: Amount,
    /// From its allowance for the operator asked about (settlement fees).
    settled: Amount,
}

/// The mempool's depth for `/metrics`.
pub(crate) struct PendingCounts {
    /// Transactions waiting.
    pub(crate) transactions: usize,
    /// `SettleInference` transactions among them (the settlement lag).
    pub(crate) settlements: usize,
}

/// The chain head and the mempool size, read together.
pub(crate) struct ChainStatus {
    /// The chain id of the genesis.
    pub(crate) chain_id: String,
    /// The head block's header.
    pub(crate) head: BlockHeader,
    /// Transactions waiting in the mempool.
    pub(crate) pending: usize,
}

/// An account with what the mempool adds: the voting power it holds and
/// the nonce its next transaction must carry (after its pending ones).
pub(crate) struct AccountState {
    /// The account's state at the head.
    pub(crate) account: Account,
    /// gOPEN voting with this address (its own and delegated to it).
    pub(crate) voting_power: Amount,
    /// Staking rewards it could claim now.
    pub(crate) staking_rewards: Amount,
    /// The nonce of its next transaction, pending ones counted.
    pub(crate) next_nonce: u64,
}

/// A transaction the node knows: committed in a block, or still pending in
/// the mempool.
pub(crate) enum ChainTx {
    /// In a committed block, with its receipt.
    Committed(TxRecord),
    /// Accepted into the mempool, not yet in a block.
    Pending(SignedTransaction),
}

/// The total supply and its parts.
pub(crate) struct SupplyTotal {
    /// The parts (balances, stakes, escrows, …).
    pub(crate) supply: Supply,
    /// Their sum.
    pub(crate) total: Amount,
}

/// The mempool and the bodies of its transactions (for `GET /v1/tx` of a
/// pending one; `Mempool` answers only whether a hash is pending).
pub(crate) struct Pool {
    txs: Mempool,
    bodies: HashMap<TxHash, SignedTransaction>,
}

/// Ledger, mempool and producer key of one running node.
pub(crate) struct Chain {
    /// The ledger is `Sync`: reads run on redb snapshots concurrently with
    /// block production, which the ledger serialises itself.
    ledger: Ledger,
    mempool: Mutex<Pool>,
    producer: SecretKey,
    chain_id: String,
    /// Woken when the mempool holds a full block.
    pub(crate) full: Notify,
    /// What billing holds for paid inference (serving nodes only).
    holds: OnceLock<Arc<dyn InferenceHolds>>,
}

impl Chain {
    pub(crate) fn new(
        ledger: Ledger,
        genesis: &Genesis,
        producer: SecretKey,
        mempool_max_txs: usize,
    ) -> Self {
        Chain {
            ledger,
            mempool: Mutex::new(Pool {
                txs: Mempool::new(mempool_max_txs),
                bodies: HashMap::new(),
            }),
            producer,
            chain_id: genesis.chain_id.clone(),
            full: Notify::new(),
            holds: OnceLock::new(),
        }
    }

    /// Registers what billing holds for paid inference: from then on
    /// [`Chain::submit`] refuses a transaction that would leave an account
    /// unable to pay it. Set once (a second call is ignored).
    pub(crate) fn set_inference_holds(&self, holds: Arc<dyn InferenceHolds>) {
        let _ = self.holds.set(holds);
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The operator's address: the producer key's, which signs blocks and
    /// settlements; a request it signs is the operator's (`api/auth.rs`).
    pub(crate) fn operator(&self) -> Address {
        self.producer.address()
    }

    fn mempool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // The mempool holds no invariant a panicking holder could break
        // halfway that a later insert would trust, so a poisoned lock is usable.
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Largest accepted transaction, from the governed parameters.
    pub(crate) fn max_tx_bytes(&self) -> usize {
        self.ledger()
            .params()
            .map(|p| p.max_tx_bytes as usize)
            .unwrap_or(16 * 1024)
    }

    /// Checks `stx` against state plus pending transactions, and against
    /// what billing holds for the sender's paid inference, and queues it.
    pub(crate) fn submit(&self, stx: SignedTransaction) -> Result<TxHash, SubmitError> {
        let ledger = self.ledger();
        let mut pool = self.mempool();
        self.keep_inference_payable(&pool, &stx)?;
        let hash = pool.txs.add(stx.clone(), ledger)?;
        pool.bodies.insert(hash, stx);
        // "Full" is a block's worth, or the whole pool if that is smaller.
        let max_block = ledger
            .params()
            .map(|p| p.max_block_txs as usize)
            .unwrap_or(usize::MAX);
        if pool.txs.len() >= max_block.min(pool.txs.capacity()) {
            self.full.notify_one();
        }
        tracing::debug!(target: "trib::mempool", %hash, pending = pool.txs.len(), "transaction accepted");
        Ok(hash)
    }

    /// Refuses `stx` when, once it commits, its sender could no longer pay
    /// the fees billing reserved for its requests in flight: its balance
    /// after every pending charge and this transaction, or the allowance it
    /// sets for the billing operator, below the reserved amount.
    /// Settlements themselves are what the reservations pay, so they pass.
    fn keep_inference_payable(
        &self,
        pool: &Pool,
        stx: &SignedTransaction,
    ) -> Result<(), SubmitError> {
        let Some(holds) = self.holds.get() else {
            return Ok(());
        };
        if matches!(stx.tx.action, Action::SettleInference { .. }) {
            return Ok(());
        }
        let sender = stx.tx.sender_address();
        let held = holds.reserved(&sender);
        if held.is_zero() {
            return Ok(());
        }
        let operator = holds.operator();
        let refuse = |left: Amount, what| SubmitError::HeldForInference {
            account: sender,
            operator,
            held: held.to_open_string(),
            left: left.to_open_string(),
            what,
        };
        if let Action::ApproveOperator {
            operator: o,
            allowance,
        } = &stx.tx.action
        {
            if *o == operator && *allowance < held {
                return Err(refuse(*allowance, "allowance"));
            }
        }
        let storage = |e: LedgerError| TxError::Storage(e.to_string());
        let ledger = self.ledger();
        let spend = Mempool::spend_of(stx)?.0.saturating_add(
            contribution_stake(ledger, &stx.tx.action)
                .map_err(storage)?
                .0,
        );
        let balance = ledger.account(&sender).map_err(storage)?.balance;
        let pending = self
            .pending_charges(pool, &sender, &operator)
            .map_err(storage)?;
        let left = Amount(
            balance
                .0
                .saturating_sub(pending.spend.0)
                .saturating_sub(spend),
        );
        if left < held {
            return Err(refuse(left, "balance"));
        }
        Ok(())
    }

    /// What the pending transactions take from `account`: the mempool's
    /// count of its fees and amounts, the stakes of its contributions, and
    /// the fees of settlements charging it (those through `operator` also
    /// use up its allowance).
    fn pending_charges(
        &self,
        pool: &Pool,
        account: &Address,
        operator: &Address,
    ) -> Result<PendingCharges, LedgerError> {
        let ledger = self.ledger();
        let mut spend = pool.txs.pending_spend(account).0;
        let mut settled = 0u128;
        for stx in pool.bodies.values() {
            if stx.tx.sender_address() == *account {
                spend = spend.saturating_add(contribution_stake(ledger, &stx.tx.action)?.0);
            }
            if let Action::SettleInference {
                payer,
                adapter,
                prompt_tokens,
                completion_tokens,
                ..
            } = &stx.tx.action
            {
                if payer != account {
                    continue;
                }
                // An adapter gone from the ledger makes the settlement fail:
                // it then charges nothing.
                let fee = self
                    .fee_schedule(adapter.as_ref())?
                    .and_then(|s| s.fee(*prompt_tokens, *completion_tokens))
                    .unwrap_or(Amount::ZERO);
                spend = spend.saturating_add(fee.0);
                if stx.tx.sender_address() == *operator {
                    settled = settled.saturating_add(fee.0);
                }
            }
        }
        Ok(PendingCharges {
            spend: Amount(spend),
            settled: Amount(settled),
        })
    }

    /// The ledger's fee schedule of a request to `adapter` (its registered
    /// prices) or to the base model alone (the governed base prices);
    /// `None` when the adapter is not registered.
    pub(crate) fn fee_schedule(
        &self,
        adapter: Option<&AdapterId>,
    ) -> Result<Option<FeeSchedule>, LedgerError> {
        let ledger = self.ledger();
        let params = ledger.params()?;
        let adapter = match adapter {
            Some(id) => match ledger.adapter(id)? {
                Some(a) => Some(a),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(FeeSchedule::new(adapter.as_ref(), &params)))
    }

    /// Runs `f` on what `account` can pay `operator` (committed state less
    /// its pending transactions) with the mempool locked, so that no block
    /// commits and no transaction enters in between: billing reserves a
    /// request's fee inside `f`, and [`Chain::submit`] sees the reservation.
    pub(crate) fn with_spendable<R>(
        &self,
        account: &Address,
        operator: &Address,
        f: impl FnOnce(Spendable) -> R,
    ) -> Result<R, ChainError> {
        let pool = self.mempool();
        let ledger = self.ledger();
        let balance = ledger.account(account)?.balance;
        let allowance = ledger.allowance(account, operator)?;
        let pending = self.pending_charges(&pool, account, operator)?;
        let pending_allowance = pool
            .bodies
            .values()
            .filter(|stx| stx.tx.sender_address() == *account)
            .filter_map(|stx| match &stx.tx.action {
                Action::ApproveOperator {
                    operator: o,
                    allowance,
                } if o == operator => Some(*allowance),
                _ => None,
            })
            .min();
        Ok(f(Spendable {
            balance,
            pending_spend: pending.spend,
            allowance,
            pending_allowance,
            pending_settled: pending.settled,
        }))
    }

    /// Pending transactions, and the settlements among them (answers
    /// served and charged but not yet in a block), read together.
    pub(crate) fn pending_counts(&self) -> PendingCounts {
        let pool = self.mempool();
        let settlements = pool
            .bodies
            .values()
            .filter(|stx| matches!(stx.tx.action, Action::SettleInference { .. }))
            .count();
        PendingCounts {
            transactions: pool.txs.len(),
            settlements,
        }
    }

    /// Number of pending transactions.
    pub(crate) fn pending(&self) -> usize {
        self.mempool().txs.len()
    }

    /// Produces one block from the mempool (possibly empty: governance and
    /// unbonding periods count blocks). Blocking: run it off the async
    /// workers.
    pub(crate) fn produce_block(&self) -> Result<BlockOutcome, LedgerError> {
        let ledger = self.ledger();
        let max = ledger.params()?.max_block_txs as usize;
        // Submissions wait for the block: a transaction checked against the
        // new state while the mempool still held the block's transactions
        // would see their nonces twice. (Paid admission relies on this too:
        // `with_spendable` finds a settlement either pending or committed.)
        let mut pool = self.mempool();
        let txs = pool.txs.drain(max);
        for t in &txs {
            pool.bodies.remove(&t.hash());
        }
        let outcome = ledger.produce_block(txs, now_ms(), &self.producer)?;
        for dropped in pool.txs.recheck(ledger) {
            tracing::debug!(target: "trib::mempool", hash = %dropped.hash, error = %dropped.error, "pending transaction dropped after block");
            pool.bodies.remove(&dropped.hash);
        }
        Ok(outcome)
    }

    pub(crate) fn height(&self) -> u64 {
        self.ledger().height()
    }

    pub(crate) fn status(&self) -> ChainStatus {
        ChainStatus {
            chain_id: self.chain_id.clone(),
            head: self.ledger().head(),
            pending: self.pending(),
        }
    }

    pub(crate) fn account(&self, addr: &Address) -> Result<AccountState, ChainError> {
        let ledger = self.ledger();
        // Lock the pool before reading the account: `produce_block` commits
        // under this lock, so state and pending nonces are read as one view.
        // Reading the ledger first could see the nonce from before a block
        // whose transactions then leave the pool, and hand out a used nonce.
        let pool = self.mempool();
        let account = ledger.account(addr)?;
        let voting_power = ledger.voting_power(addr)?;
        let staking_rewards = ledger.staking_rewards(addr)?;
        let next_nonce = pool
            .txs
            .next_nonce(addr)
            .unwrap_or(account.nonce)
            .max(account.nonce);
        drop(pool);
        Ok(AccountState {
            account,
            voting_power,
            staking_rewards,
            next_nonce,
        })
    }

    pub(crate) fn tx(&self, hash: &TxHash) -> Result<Option<ChainTx>, ChainError> {
        // Lock the pool before reading the ledger: `produce_block` moves a
        // transaction from the pool into a committed block under this lock,
        // so it is found in one or the other. Reading the ledger first could
        // miss it there, then miss it in the pool it just left.
        let pool = self.mempool();
        if let Some(rec) = self.ledger().tx(hash)? {
            return Ok(Some(ChainTx::Committed(rec)));
        }
        Ok(pool.bodies.get(hash).map(|tx| ChainTx::Pending(tx.clone())))
    }

    pub(crate) fn block(&self, height: u64) -> Result<Block, ChainError> {
        self.ledger()
            .block(height)?
            .ok_or_else(|| ChainError::NoSuchBlock {
                height,
                head: self.ledger().height(),
            })
    }

    pub(crate) fn proposals(&self) -> Result<Vec<Proposal>, ChainError> {
        Ok(self.ledger().proposals()?)
    }

    pub(crate) fn proposal(&self, id: u64) -> Result<Option<Proposal>, ChainError> {
        Ok(self.ledger().proposal(id)?)
    }

    pub(crate) fn params(&self) -> Result<Params, ChainError> {
        Ok(self.ledger().params()?)
    }

    pub(crate) fn supply(&self) -> Result<SupplyTotal, ChainError> {
        let supply = self.ledger().total_supply()?;
        let total = supply.total().ok_or(ChainError::SupplyOverflow)?;
        Ok(SupplyTotal { supply, total })
    }

    pub(crate) fn prove(
        &self,
        key: &StateKey,
        height: Option<u64>,
    ) -> Result<StateProof, ChainError> {
        Ok(self.ledger().prove(key.clone(), height)?)
    }
}

/// The stake a `Contribute` escrows from its sender's balance (the
/// datanet's `stake_per_contribution`; zero for other actions or an unknown
/// datanet, which the ledger refuses anyway).
fn contribution_stake(ledger: &Ledger, action: &Action) -> Result<Amount, LedgerError> {
    let Action::Contribute { datanet, .. } = action else {
        return Ok(Amount::ZERO);
    };
    Ok(ledger
        .datanet(DatanetRef::Id(*datanet))?
        .map(|d| d.stake_per_contribution)
        .unwrap_or(Amount::ZERO))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
