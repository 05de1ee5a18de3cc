//! The node's ledger state: the ledger database, the mempool (with its
//! crash journal) and the block producer key, behind the locks the HTTP
//! handlers and the producer share.
//!
//! Nothing acknowledged is lost: [`Chain::submit`] writes every admitted
//! transaction to `<home>/mempool.journal` and fsyncs it before it answers,
//! and [`Chain::open`] re-admits the journal's transactions that no block
//! holds yet (a transaction that became invalid meanwhile is dropped with a
//! log line naming the reason). Block production takes the block's
//! transactions under the mempool lock and executes and commits them
//! without it, so submissions never wait for a block; the in-flight batch
//! stays counted for nonces and pending spend, and its bodies stay in the
//! pool, until the block is done (see `trib_ledger::Mempool`).
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
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use trib_ledger::{
    Account, Action, Block, BlockHeader, BlockOutcome, DatanetRef, FeeSchedule, Genesis,
    JournalError, Ledger, LedgerError, Mempool, MempoolJournal, Params, Proposal,
    SignedTransaction, StateKey, StateProof, Supply, TxError, TxRecord,
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

/// Why the mempool could not be restored from its journal at start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// The journal cannot be opened, read or rewritten.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The ledger cannot tell which journaled transactions are committed.
    #[error("cannot look the journaled transactions up in the ledger: {0}")]
    Ledger(#[from] LedgerError),
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

/// The mempool, the bodies of its transactions (for `GET /v1/tx` of a
/// pending one; `Mempool` answers only whether a hash is pending) and the
/// journal that makes them survive a crash.
pub(crate) struct Pool {
    txs: Mempool,
    bodies: HashMap<TxHash, SignedTransaction>,
    journal: MempoolJournal,
}

impl Pool {
    /// Rewrites the journal with the queued transactions once it holds
    /// mostly committed ones (so it stays small without a rewrite per block).
    fn compact_journal(&mut self) {
        if self.journal.records() <= 2 * self.txs.len() + JOURNAL_SLACK {
            return;
        }
        if let Err(e) = self.journal.rewrite(self.txs.queued()) {
            // The old file is still complete and in use: nothing is lost,
            // it only keeps growing until a rewrite succeeds.
            tracing::warn!(target: "trib::mempool", error = %e, "cannot compact the mempool journal");
        }
    }
}

/// Committed records the journal may hold beyond twice the pending ones
/// before it is rewritten.
const JOURNAL_SLACK: usize = 256;

/// A hook run between taking a block's transactions and committing them
/// (tests hold a block there to show that submissions go on meanwhile).
#[cfg(test)]
type CommitHook = Box<dyn Fn() + Send + Sync>;

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
    #[cfg(test)]
    before_commit: Mutex<Option<CommitHook>>,
}

impl Chain {
    /// The node's ledger state, with the mempool journal at `journal`: the
    /// transactions it holds that no block committed are admitted again
    /// (in their original order); those that no longer pass admission are
    /// dropped with a log line. The journal is then rewritten to exactly
    /// the pending set.
    pub(crate) fn open(
        ledger: Ledger,
        genesis: &Genesis,
        producer: SecretKey,
        mempool_max_txs: usize,
        journal: &Path,
    ) -> Result<Self, RestoreError> {
        let (mut journal, logged) = MempoolJournal::open(journal)?;
        let mut txs = Mempool::new(mempool_max_txs);
        let mut bodies = HashMap::new();
        let (mut committed, mut dropped) = (0usize, 0usize);
        for stx in logged {
            let hash = stx.hash();
            if ledger.tx(&hash)?.is_some() {
                committed += 1;
                continue;
            }
            match txs.add(stx.clone(), &ledger) {
                Ok(_) => {
                    bodies.insert(hash, stx);
                }
                // Already re-admitted: the journal held it twice.
                Err(TxError::Duplicate { .. }) => {}
                Err(error) => {
                    dropped += 1;
                    tracing::warn!(target: "trib::mempool", %hash, %error,
                        "journaled transaction dropped at restart: it no longer passes admission");
                }
            }
        }
        journal.rewrite(txs.queued())?;
        tracing::info!(target: "trib::mempool", path = %journal.path().display(), pending = txs.len(),
            committed, dropped, "mempool restored from its journal");
        Ok(Chain {
            ledger,
            mempool: Mutex::new(Pool {
                txs,
                bodies,
                journal,
            }),
            producer,
            chain_id: genesis.chain_id.clone(),
            full: Notify::new(),
            holds: OnceLock::new(),
            #[cfg(test)]
            before_commit: Mutex::new(None),
        })
    }

    /// A chain over `ledger` with its journal beside the ledger file
    /// (tests that build a chain without a whole node).
    #[cfg(test)]
    pub(crate) fn new(
        ledger: Ledger,
        genesis: &Genesis,
        producer: SecretKey,
        mempool_max_txs: usize,
    ) -> Self {
        let journal = ledger.path().with_file_name("mempool.journal");
        Chain::open(ledger, genesis, producer, mempool_max_txs, &journal)
            .expect("the test chain's mempool journal opens")
    }

    /// Runs `hook` in each block production after the block's transactions
    /// are taken and before they are committed.
    #[cfg(test)]
    pub(crate) fn set_before_commit(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.before_commit.lock().unwrap() = Some(Box::new(hook));
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
    /// what billing holds for the sender's paid inference, writes it to the
    /// journal and queues it; returns once the journal is on stable
    /// storage, so an accepted transaction survives a crash. A journal
    /// that cannot be written refuses the transaction (`Storage`); one that
    /// cannot be flushed after the write is reported as `Storage` too, with
    /// the hash, since the transaction may still be committed.
    pub(crate) fn submit(&self, stx: SignedTransaction) -> Result<TxHash, SubmitError> {
        let ledger = self.ledger();
        let mut pool = self.mempool();
        self.keep_inference_payable(&pool, &stx)?;
        let Pool {
            txs,
            bodies,
            journal,
        } = &mut *pool;
        let mut durable = None;
        let hash = txs.add_then(stx.clone(), ledger, |stx| {
            durable = Some(
                journal
                    .append(stx)
                    .map_err(|e| TxError::Storage(format!("transaction not accepted: {e}")))?,
            );
            Ok(())
        })?;
        bodies.insert(hash, stx);
        // "Full" is a block's worth, or the whole pool if that is smaller.
        let max_block = ledger
            .params()
            .map(|p| p.max_block_txs as usize)
            .unwrap_or(usize::MAX);
        if txs.len() >= max_block.min(txs.capacity()) {
            self.full.notify_one();
        }
        let pending = txs.len();
        drop(pool);
        // Flush outside the lock: concurrent submissions share the flushes.
        if let Some(d) = durable {
            d.sync().map_err(|e| {
                TxError::Storage(format!(
                    "transaction {hash} was admitted but may not survive a crash: {e}"
                ))
            })?;
        }
        tracing::debug!(target: "trib::mempool", %hash, pending, "transaction accepted");
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
    /// is forgotten by the pool and no transaction enters in between (a
    /// block committing meanwhile is still counted pending, see
    /// [`Chain::produce_block`]): billing reserves a
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
    ///
    /// The mempool lock is held only to take the block's transactions and,
    /// after the commit, to forget them: submissions go on while the block
    /// executes and commits, counted against the in-flight batch (no nonce
    /// handed out twice, no balance spent twice). Paid admission
    /// (`with_spendable`) finds a settlement pending until its block is
    /// committed and forgotten: between the commit and that moment it counts
    /// twice (committed and pending), which can only refuse, never overdraw.
    pub(crate) fn produce_block(&self) -> Result<BlockOutcome, LedgerError> {
        let ledger = self.ledger();
        let max = ledger.params()?.max_block_txs as usize;
        let txs = self.mempool().txs.take_block(max);
        let included: Vec<TxHash> = txs.iter().map(|t| t.hash()).collect();
        #[cfg(test)]
        if let Some(hook) = &*self.before_commit.lock().unwrap() {
            hook();
        }
        let result = ledger.produce_taken_block(txs, now_ms(), &self.producer);
        let mut pool = self.mempool();
        match &result {
            Ok(_) => {
                // A transaction leaves `bodies` only now, so `tx()` finds it
                // pending or committed at every moment.
                for hash in &included {
                    pool.bodies.remove(hash);
                }
                for dropped in pool.txs.block_committed(ledger) {
                    tracing::debug!(target: "trib::mempool", hash = %dropped.hash, error = %dropped.error, "pending transaction dropped after block");
                    pool.bodies.remove(&dropped.hash);
                }
                pool.compact_journal();
            }
            Err(_) => pool.txs.block_failed(ledger),
        }
        result
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
        // Lock the pool before reading the account: a block's transactions
        // leave the pool's nonce accounting only after the block is
        // committed, so the pool's next nonce (or, with nothing pending, the
        // state's) is never one a committed or in-flight block used.
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
        // Lock the pool before reading the ledger: `produce_block` removes a
        // transaction's body only after its block is committed, and under
        // this lock, so it is found in one or the other. Reading the ledger first could
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

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use trib_ledger::{Action, Params, Transaction};
    use trib_types::Amount;

    use super::*;
    use crate::config::NodeConfig;
    use crate::home::NodeHome;

    struct Home {
        _dir: tempfile::TempDir,
        home: NodeHome,
        producer: SecretKey,
    }

    fn home() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let producer = crate::test_fixtures::init_dev_home(&root, NodeConfig::default());
        Home {
            _dir: dir,
            home: NodeHome::new(root),
            producer,
        }
    }

    /// Opens the home's chain the way a starting node does.
    fn open(h: &Home) -> Chain {
        let genesis = h.home.load_genesis().unwrap();
        Chain::open(
            h.home.open_ledger().unwrap(),
            &genesis,
            h.producer.clone(),
            100,
            &h.home.mempool_journal_path(),
        )
        .unwrap()
    }

    fn transfer(chain_id: &str, from: &SecretKey, nonce: u64, open: u64) -> SignedTransaction {
        Transaction {
            chain_id: chain_id.to_string(),
            sender: from.public_key(),
            nonce,
            fee: Params::dev().min_fee,
            action: Action::Transfer {
                to: SecretKey::from_seed([42; 32]).address(),
                amount: Amount::open(open),
            },
        }
        .sign(from)
    }

    #[test]
    fn an_accepted_transaction_survives_a_crash_before_its_block_and_an_invalidated_one_is_dropped()
    {
        let h = home();
        let chain = open(&h);
        let t0 = transfer(&chain.chain_id, &h.producer, 0, 1);
        let t1 = transfer(&chain.chain_id, &h.producer, 1, 2);
        chain.submit(t0.clone()).unwrap();
        chain.submit(t1.clone()).unwrap();
        // A crash: nothing runs after the answers (no block, no shutdown).
        drop(chain);

        let chain = open(&h);
        assert_eq!(chain.pending(), 2);
        assert!(matches!(
            chain.tx(&t1.hash()).unwrap(),
            Some(ChainTx::Pending(_))
        ));
        // Its next nonce counts the restored transactions.
        assert_eq!(chain.account(&h.producer.address()).unwrap().next_nonce, 2);
        let outcome = chain.produce_block().unwrap();
        assert_eq!(outcome.included, vec![t0.hash(), t1.hash()]);
        assert_eq!(chain.pending(), 0);

        // Committed ones are not restored a second time; one that a block
        // made invalid while the node was down is dropped.
        let t2 = transfer(&chain.chain_id, &h.producer, 2, 3);
        chain.submit(t2.clone()).unwrap();
        drop(chain);
        let ledger = h.home.open_ledger().unwrap();
        let rival = transfer(ledger.chain_id(), &h.producer, 2, 4);
        ledger
            .produce_block(vec![rival.clone()], now_ms(), &h.producer)
            .unwrap();
        drop(ledger);
        let chain = open(&h);
        assert_eq!(chain.pending(), 0, "t0, t1 committed; t2 lost its nonce");
        assert!(!chain
            .tx(&t2.hash())
            .unwrap()
            .is_some_and(|t| matches!(t, ChainTx::Pending(_))));
        drop(chain);
        // The journal was rewritten to the pending set (empty).
        let (_, logged) = MempoolJournal::open(h.home.mempool_journal_path()).unwrap();
        assert!(logged.is_empty(), "{} records left", logged.len());
    }

    #[test]
    fn submissions_proceed_while_a_block_commits_and_count_its_nonces() {
        let h = home();
        let chain = Arc::new(open(&h));
        let t0 = transfer(&chain.chain_id, &h.producer, 0, 1);
        chain.submit(t0.clone()).unwrap();
        // Hold the block between taking its transactions and committing them.
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        chain.set_before_commit(move || {
            let _ = entered_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        });
        let producing = {
            let c = chain.clone();
            std::thread::spawn(move || c.produce_block())
        };
        entered.recv().unwrap();

        // The block is in flight. Submissions run on another thread: if the
        // mempool lock were held across the commit they would never return.
        let (done_tx, done) = mpsc::channel();
        {
            let c = chain.clone();
            let in_flight = t0.hash();
            let (replay, next) = (
                transfer(&chain.chain_id, &h.producer, 0, 5),
                transfer(&chain.chain_id, &h.producer, 1, 1),
            );
            std::thread::spawn(move || {
                let status = c
                    .tx(&in_flight)
                    .map(|t| t.map(|t| matches!(t, ChainTx::Pending(_))));
                let replay = c.submit(replay);
                let next = c.submit(next.clone()).map(|_| next);
                let _ = done_tx.send((status, replay, next));
            });
        }
        let (status, replay, next) = done
            .recv_timeout(Duration::from_secs(60))
            .expect("a submission waited for the block being committed");
        assert!(
            matches!(status, Ok(Some(true))),
            "in flight is still pending"
        );
        assert!(
            matches!(
                replay,
                Err(SubmitError::Tx(TxError::NonceReplay {
                    expected: 1,
                    got: 0,
                    ..
                }))
            ),
            "{replay:?}"
        );
        let next = next.unwrap();
        assert_eq!(chain.pending(), 2);

        release.send(()).unwrap();
        let first = producing.join().unwrap().unwrap();
        assert_eq!(first.included, vec![t0.hash()]);
        assert_eq!(chain.pending(), 1);
        release.send(()).unwrap();
        let second = chain.produce_block().unwrap();
        assert_eq!(second.included, vec![next.hash()]);
    }
}
