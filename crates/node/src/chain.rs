//! The node's ledger state: the ledger database, the mempool and the block
//! producer key, behind the locks the HTTP handlers and the producer share.
//!
//! Every ledger call the node makes goes through here, so the API handlers
//! stay free of locking and of the ledger's storage details. It knows
//! nothing of HTTP: reads return ledger types (or the small structs below
//! that join a ledger read with the mempool), failures are a [`ChainError`],
//! and `api/ledger.rs` builds the wire views and the status codes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use trib_ledger::{
    Account, Block, BlockHeader, BlockOutcome, Genesis, Ledger, LedgerError, Mempool, Params,
    Proposal, SignedTransaction, StateKey, StateProof, Supply, TxError, TxRecord,
};
use trib_types::{Address, Amount, SecretKey, TxHash};

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

impl ChainTx {
    /// Whether it still waits in the mempool.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self, ChainTx::Pending(_))
    }
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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
