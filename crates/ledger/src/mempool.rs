//! The mempool: admitted, not yet committed transactions.
//!
//! Admission runs the stateless checks and the signature, then checks the
//! nonce and the balance against the committed state *plus the sender's
//! pending transactions*: a sender may queue nonces n, n+1, … as long as the
//! balance covers the fees and amounts of all of them. Transactions leave in
//! arrival order, which also respects each sender's nonce order (a nonce is
//! only admitted after its predecessor).
//!
//! Use from the node: [`Mempool::take_block`] moves the next block's
//! transactions into an *in-flight* batch and releases nothing of the
//! sender accounting: while the block is executed and committed (without
//! the mempool's lock), admission still counts the in-flight nonces and
//! spends, so a nonce cannot be handed out twice and a balance cannot be
//! spent twice. [`Mempool::block_committed`] then forgets the batch and
//! rechecks the rest against the new state; [`Mempool::block_failed`] puts
//! it back in front. Between the block's commit and `block_committed` an
//! admission sees the new state *and* the in-flight spends: it may refuse a
//! transaction for balance that a moment later would fit, never the
//! reverse.
//!
//! Admission can also write the transaction somewhere before it is
//! inserted ([`Mempool::add_then`]): the node journals each accepted
//! transaction ([`crate::MempoolJournal`]) so that an acknowledged
//! transaction survives a crash.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use trib_types::{Address, Amount, TxHash};

use crate::block::RejectedTx;
use crate::error::TxError;
use crate::exec::check_stateless;
use crate::ledger::Ledger;
use crate::modules::{action_spend, route};
use crate::state::TxBatch;
use crate::tx::SignedTransaction;

/// Pending totals of one sender.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// The nonce the sender's next transaction must carry.
    next_nonce: u64,
    /// Transactions in the pool.
    count: usize,
    /// Fees plus amounts of those transactions.
    spend: Amount,
}

/// Pending transactions, ordered by arrival (and so by sender and nonce).
#[derive(Debug)]
pub struct Mempool {
    capacity: usize,
    seq: u64,
    queue: BTreeMap<u64, SignedTransaction>,
    /// Taken for the block being committed ([`Mempool::take_block`]):
    /// still counted in `by_hash` and `senders` until the block is done.
    in_flight: Vec<SignedTransaction>,
    by_hash: HashMap<TxHash, u64>,
    senders: HashMap<Address, Pending>,
}

fn cost(stx: &SignedTransaction) -> Result<Amount, TxError> {
    stx.tx
        .fee
        .checked_add(action_spend(&stx.tx.action))
        .ok_or(TxError::Overflow {
            what: "fee plus amount",
        })
}

impl Mempool {
    /// An empty pool holding at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Mempool {
            capacity,
            seq: 0,
            queue: BTreeMap::new(),
            in_flight: Vec::new(),
            by_hash: HashMap::new(),
            senders: HashMap::new(),
        }
    }

    /// Pending transactions: queued, plus those of a block being committed.
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the pool is at capacity.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Queued transactions in arrival order (not those in flight), e.g. to
    /// rewrite a journal of them.
    pub fn queued(&self) -> impl Iterator<Item = &SignedTransaction> {
        self.queue.values()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a transaction is pending.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// What `sender`'s pending transactions spend from its balance (fees
    /// plus amounts, as admission counts them; a contribution's stake,
    /// which depends on the datanet, is not included).
    pub fn pending_spend(&self, sender: &Address) -> Amount {
        self.senders
            .get(sender)
            .map(|p| p.spend)
            .unwrap_or_default()
    }

    /// What one transaction spends from its sender's balance, counted as
    /// [`Mempool::pending_spend`] counts it: its fee plus the amount its
    /// action moves.
    pub fn spend_of(stx: &SignedTransaction) -> Result<Amount, TxError> {
        cost(stx)
    }

    /// The nonce `sender`'s next transaction should carry, if it has pending
    /// transactions (otherwise use the committed account nonce).
    pub fn next_nonce(&self, sender: &Address) -> Option<u64> {
        self.senders.get(sender).map(|p| p.next_nonce)
    }

    /// Admits one transaction. Returns its hash, or the precise reason it was
    /// refused (the pool is then unchanged).
    pub fn add(&mut self, stx: SignedTransaction, ledger: &Ledger) -> Result<TxHash, TxError> {
        self.add_then(stx, ledger, |_| Ok(()))
    }

    /// Admits one transaction like [`Mempool::add`], calling `record` once
    /// every check has passed and before it is inserted: an error from
    /// `record` (a journal that cannot be written) refuses the transaction
    /// and leaves the pool unchanged.
    pub fn add_then(
        &mut self,
        stx: SignedTransaction,
        ledger: &Ledger,
        record: impl FnOnce(&SignedTransaction) -> Result<(), TxError>,
    ) -> Result<TxHash, TxError> {
        ledger
            .with_state(|state| Ok(self.admit_then(stx, None, ledger.chain_id(), state, record)))?
    }

    /// Admits many transactions, verifying their signatures in parallel
    /// batches first (ZIP-215 batch verification, so the verdicts are those
    /// of single verification). Returns one result per transaction, in order.
    pub fn add_batch(
        &mut self,
        txs: Vec<SignedTransaction>,
        ledger: &Ledger,
    ) -> Vec<Result<TxHash, TxError>> {
        let chunk = txs
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(64);
        let sig_ok: Vec<bool> = txs
            .par_chunks(chunk)
            .flat_map_iter(|c| {
                let hashes: Vec<_> = c.iter().map(|t| t.tx.signing_hash()).collect();
                let items: Vec<_> = c
                    .iter()
                    .zip(&hashes)
                    .map(|(t, h)| (t.tx.sender, h.as_bytes().as_slice(), t.signature))
                    .collect();
                trib_types::verify_batch(&items)
            })
            .collect();
        let n = txs.len();
        let results = ledger.with_state(|state| {
            Ok(txs
                .into_iter()
                .zip(sig_ok)
                .map(|(stx, good)| self.admit(stx, Some(good), ledger.chain_id(), state))
                .collect::<Vec<_>>())
        });
        match results {
            Ok(r) => r,
            Err(e) => vec![Err(e); n],
        }
    }

    /// All admission checks against one snapshot of committed state, then
    /// insertion. `sig_ok` is the batch verdict, or `None` to verify here.
    fn admit(
        &mut self,
        stx: SignedTransaction,
        sig_ok: Option<bool>,
        chain_id: &str,
        state: &TxBatch<'_, '_>,
    ) -> Result<TxHash, TxError> {
        self.admit_then(stx, sig_ok, chain_id, state, |_| Ok(()))
    }

    /// [`Mempool::admit`], with `record` called after the checks and before
    /// the insertion.
    fn admit_then(
        &mut self,
        stx: SignedTransaction,
        sig_ok: Option<bool>,
        chain_id: &str,
        state: &TxBatch<'_, '_>,
        record: impl FnOnce(&SignedTransaction) -> Result<(), TxError>,
    ) -> Result<TxHash, TxError> {
        if self.is_full() {
            return Err(TxError::MempoolFull {
                capacity: self.capacity,
            });
        }
        let hash = stx.hash();
        if self.by_hash.contains_key(&hash) {
            return Err(TxError::Duplicate { hash });
        }
        check_stateless(&stx, chain_id, state.params())?;
        match sig_ok {
            Some(true) => {}
            Some(false) => {
                return Err(TxError::BadSignature {
                    sender: stx.tx.sender_address(),
                })
            }
            None => stx.verify_signature()?,
        }
        let sender = stx.tx.sender_address();
        let pending = self.senders.get(&sender).copied();
        let spend = cost(&stx)?;
        let acc = state.account(&sender)?;
        let expected = match pending {
            Some(p) => p.next_nonce,
            None => acc.nonce,
        };
        if stx.tx.nonce < expected {
            return Err(TxError::NonceReplay {
                sender,
                expected,
                got: stx.tx.nonce,
            });
        }
        if stx.tx.nonce > expected {
            return Err(TxError::NonceGap {
                sender,
                expected,
                got: stx.tx.nonce,
            });
        }
        let already = pending.map(|p| p.spend).unwrap_or_default();
        let need = already.checked_add(spend).ok_or(TxError::Overflow {
            what: "pending spend",
        })?;
        if acc.balance < need {
            return Err(TxError::InsufficientBalance {
                address: sender,
                have: acc.balance,
                need,
            });
        }
        route(&stx.tx.action)?.check_stateful(&stx.tx, state)?;
        let next_nonce = stx
            .tx
            .nonce
            .checked_add(1)
            .ok_or(TxError::Overflow { what: "nonce" })?;
        record(&stx)?;
        self.count(sender, next_nonce, need);
        self.seq += 1;
        self.queue.insert(self.seq, stx);
        self.by_hash.insert(hash, self.seq);
        tracing::trace!(target: "trib::mempool", %hash, %sender, "transaction admitted");
        Ok(hash)
    }

    /// Counts one more pending transaction of `sender`: its next nonce and
    /// its pending spend, `spend` in total.
    fn count(&mut self, sender: Address, next_nonce: u64, spend: Amount) {
        let entry = self.senders.entry(sender).or_insert(Pending {
            next_nonce,
            count: 0,
            spend: Amount::ZERO,
        });
        entry.next_nonce = next_nonce;
        entry.count += 1;
        entry.spend = spend;
    }

    /// Moves up to `max` queued transactions, in arrival order, into the
    /// in-flight batch of the block about to be committed, and returns
    /// them. They stay counted (duplicates, nonces, pending spend) until
    /// [`Mempool::block_committed`] or [`Mempool::block_failed`]. Returns
    /// nothing while a batch is already in flight (one block at a time).
    pub fn take_block(&mut self, max: usize) -> Vec<SignedTransaction> {
        if !self.in_flight.is_empty() {
            return Vec::new();
        }
        while self.in_flight.len() < max {
            let Some((_, stx)) = self.queue.pop_first() else {
                break;
            };
            self.in_flight.push(stx);
        }
        self.in_flight.clone()
    }

    /// The in-flight block is committed: forgets its transactions and
    /// rechecks the queue against the new state, returning what it dropped.
    pub fn block_committed(&mut self, ledger: &Ledger) -> Vec<RejectedTx> {
        self.in_flight.clear();
        self.recheck(ledger)
    }

    /// The in-flight block could not be committed: its transactions go back
    /// in front of the queue, and the pool is rechecked.
    pub fn block_failed(&mut self, ledger: &Ledger) {
        let txs = std::mem::take(&mut self.in_flight);
        self.restore(txs, ledger);
    }

    /// Takes up to `max` transactions in arrival order, for the next block.
    pub fn drain(&mut self, max: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::with_capacity(max.min(self.queue.len()));
        while out.len() < max {
            let Some((_, stx)) = self.queue.pop_first() else {
                break;
            };
            self.forget(&stx);
            out.push(stx);
        }
        out
    }

    fn forget(&mut self, stx: &SignedTransaction) {
        self.by_hash.remove(&stx.hash());
        let sender = stx.tx.sender_address();
        if let Some(p) = self.senders.get_mut(&sender) {
            p.count -= 1;
            p.spend = p
                .spend
                .checked_sub(cost(stx).unwrap_or_default())
                .unwrap_or_default();
            if p.count == 0 {
                self.senders.remove(&sender);
            }
        }
    }

    /// Puts back transactions drained for a block that could not be
    /// committed, ahead of everything still pending, and rechecks the pool.
    fn restore(&mut self, txs: Vec<SignedTransaction>, ledger: &Ledger) {
        let rest = std::mem::take(&mut self.queue);
        let mut seq = 0;
        for stx in txs.into_iter().chain(rest.into_values()) {
            seq += 1;
            self.queue.insert(seq, stx);
        }
        self.seq = seq;
        self.recheck(ledger);
    }

    /// Re-checks every pending transaction against the committed state (call
    /// after each block) and drops the ones that can no longer execute,
    /// returning them with the reason.
    pub fn recheck(&mut self, ledger: &Ledger) -> Vec<RejectedTx> {
        let old = std::mem::take(&mut self.queue);
        self.by_hash.clear();
        self.senders.clear();
        // A batch still in flight stays counted ahead of the queue (its
        // transactions passed admission; the block decides their fate).
        for stx in std::mem::take(&mut self.in_flight) {
            let sender = stx.tx.sender_address();
            let spend = self
                .senders
                .get(&sender)
                .map(|p| p.spend)
                .unwrap_or_default()
                .checked_add(cost(&stx).unwrap_or_default())
                .unwrap_or(Amount(u128::MAX));
            self.count(sender, stx.tx.nonce.saturating_add(1), spend);
            self.by_hash.insert(stx.hash(), 0);
            self.in_flight.push(stx);
        }
        let mut dropped = Vec::new();
        let result = ledger.with_state(|state| {
            for (_, stx) in old {
                let hash = stx.hash();
                // Signatures were verified at admission and do not depend on state.
                if let Err(error) = self.admit(stx, Some(true), ledger.chain_id(), state) {
                    tracing::debug!(target: "trib::mempool", %hash, %error, "pending transaction dropped");
                    dropped.push(RejectedTx { hash, error });
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(target: "trib::mempool", error = %e, "recheck could not read the ledger; pending transactions dropped");
        }
        dropped
    }
}
