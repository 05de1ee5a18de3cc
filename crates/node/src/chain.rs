//! The node's ledger state: the ledger database, the mempool and the block
//! producer key, behind the locks the HTTP handlers and the producer share.
//!
//! Every ledger call the node makes goes through here, so the API handlers
//! stay free of locking and of the ledger's storage details.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use trib_ledger::{
    BlockOutcome, Genesis, Ledger, LedgerError, Mempool, Params, Proposal, SignedTransaction,
    StateKey, StateProof, TxError,
};
use trib_types::{Address, SecretKey, TxHash};

use crate::api::ApiError;
use trib_client::wire::{AccountView, BlockView, StatusView, SupplyView, TxStatus, TxView};

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
        }
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
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

    /// Checks `stx` against state plus pending transactions and queues it.
    pub(crate) fn submit(&self, stx: SignedTransaction) -> Result<TxHash, TxError> {
        let ledger = self.ledger();
        let mut pool = self.mempool();
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
        // would see their nonces twice.
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

    pub(crate) fn status(&self) -> Result<StatusView, ApiError> {
        let ledger = self.ledger();
        let head = ledger.head();
        Ok(StatusView {
            chain_id: self.chain_id.clone(),
            height: head.height,
            head_hash: head.hash(),
            state_root: head.state_root,
            time_ms: head.time_ms,
            producer: head.producer.address(),
            mempool_size: self.pending(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    pub(crate) fn account(&self, addr: &Address) -> Result<AccountView, ApiError> {
        let ledger = self.ledger();
        // Lock the pool before reading the account: `produce_block` commits
        // under this lock, so state and pending nonces are read as one view.
        // Reading the ledger first could see the nonce from before a block
        // whose transactions then leave the pool, and hand out a used nonce.
        let pool = self.mempool();
        let acc = ledger.account(addr)?;
        let voting_power = ledger.voting_power(addr)?;
        let next_nonce = pool
            .txs
            .next_nonce(addr)
            .unwrap_or(acc.nonce)
            .max(acc.nonce);
        drop(pool);
        Ok(AccountView {
            address: *addr,
            balance: acc.balance,
            staked: acc.staked,
            unbonding: acc.unbonding,
            delegate: acc.delegate,
            voting_power,
            nonce: acc.nonce,
            next_nonce,
        })
    }

    pub(crate) fn tx(&self, hash: &TxHash) -> Result<Option<TxView>, ApiError> {
        if let Some(rec) = self.ledger().tx(hash)? {
            return Ok(Some(TxView {
                hash: *hash,
                status: TxStatus::Committed,
                height: Some(rec.height),
                index: Some(rec.index),
                tx: rec.tx,
                receipt: Some(rec.receipt),
            }));
        }
        Ok(self.mempool().bodies.get(hash).map(|tx| TxView {
            hash: *hash,
            status: TxStatus::Pending,
            height: None,
            index: None,
            tx: tx.clone(),
            receipt: None,
        }))
    }

    pub(crate) fn block(&self, height: u64) -> Result<BlockView, ApiError> {
        let block = self.ledger().block(height)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no block at height {height} (head is {})",
                self.ledger().height()
            ))
        })?;
        Ok(BlockView {
            hash: block.header.hash(),
            block,
        })
    }

    pub(crate) fn proposals(&self) -> Result<Vec<Proposal>, ApiError> {
        Ok(self.ledger().proposals()?)
    }

    pub(crate) fn proposal(&self, id: u64) -> Result<Option<Proposal>, ApiError> {
        Ok(self.ledger().proposal(id)?)
    }

    pub(crate) fn params(&self) -> Result<Params, ApiError> {
        Ok(self.ledger().params()?)
    }

    pub(crate) fn supply(&self) -> Result<SupplyView, ApiError> {
        let supply = self.ledger().total_supply()?;
        let total = supply
            .total()
            .ok_or_else(|| ApiError::internal("total supply overflows u128"))?;
        Ok(SupplyView { supply, total })
    }

    pub(crate) fn prove(
        &self,
        key: &StateKey,
        height: Option<u64>,
    ) -> Result<StateProof, ApiError> {
        Ok(self.ledger().prove(key.clone(), height)?)
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
